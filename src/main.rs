//! The `cairn` binary: see `cairn --help` and README.md.

mod cli;

fn main() {
    // Print panics as one line, never a backtrace: a panic is a bug, but the
    // user still gets a clear message and a non-zero exit.
    std::panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown".into());
        let at = info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
        eprintln!("error: internal error (please report): {msg}{at}");
    }));
    // SAFETY: restoring the default SIGPIPE disposition before any thread
    // starts, so `cairn dump ... | head` ends quietly like other Unix tools.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let code = std::panic::catch_unwind(cli::main).unwrap_or(1);
    std::process::exit(code);
}
