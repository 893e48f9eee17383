//! The `cairn` binary: see `cairn --help` and README.md.

mod cli;

/// Exit code when stdout's reader went away: 128 + SIGPIPE, as if the
/// signal had ended the process.
const EXIT_BROKEN_PIPE: i32 = 141;

fn main() {
    // Print panics as one line, never a backtrace: a panic is a bug, but the
    // user still gets a clear message and a non-zero exit.
    std::panic::set_hook(Box::new(|info| {
        // The index cache catches redb's panics and reports them as its
        // own error (it then drops the damaged file).
        if cairn::index::cache::panic_is_caught() {
            return;
        }
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown".into());
        // `println!` to a closed pipe (`cairn snapshots | head -1`): the
        // reader has what it wanted; end quietly, as a shell tool would.
        if msg.starts_with("failed printing to stdout") && msg.contains("Broken pipe") {
            std::process::exit(EXIT_BROKEN_PIPE);
        }
        let at = info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
        eprintln!("error: internal error (please report): {msg}{at}");
    }));
    // SIGPIPE stays ignored (Rust's default): a socket whose server died
    // must give an error that cairn reports, not kill it silently (the HTTP
    // client writes with writev, which cannot ask for MSG_NOSIGNAL). A
    // closed stdout is handled where it is written instead.
    // A file size limit (`ulimit -f`) makes a write that passes it fail
    // with EFBIG, reported as an error naming the file, instead of killing
    // cairn with SIGXFSZ halfway through.
    // SAFETY: sets the disposition of one valid signal to "ignore"; no
    // handler code runs, no memory is passed.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
    let code = std::panic::catch_unwind(cli::main).unwrap_or(1);
    std::process::exit(code);
}
