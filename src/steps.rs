//! Named steps of the safety-critical sequences, for the schedule tests.
//!
//! Every operation that may overlap another (backup, copy, prune, repair,
//! restore, dump, mount) calls [`reached`] at the steps that
//! format-spec/10-write-order.md names (rules 3, 7, 8, 10, 11). With
//! `CAIRN_TEST_PAUSE_AT=STEP[,STEP...]` the process prints
//! `cairn: paused at STEP` on stderr and stops itself with SIGSTOP there,
//! so that a test can run another operation to completion before it sends
//! SIGCONT (tests/integration/schedule.rs): the narrow windows a random
//! loop misses are each tried on purpose. Unset, a step costs one read of
//! a static.
//!
//! With `CAIRN_TEST_TRACE=FILE` every step, and every [`note`] (locks
//! taken, index listings, what prune judged and deleted), is appended to
//! FILE as `NANOS PID EVENT`, one line per write, so that the soak
//! (tests/integration/soak.rs) can keep the interleaving of all its
//! processes around a failure.
//!
//! Both hooks exist only in builds with the `test-hooks` feature (which
//! `cargo test` turns on, Cargo.toml): in a release build [`reached`] and
//! [`note`] do nothing and read no environment variable.

#[cfg(any(test, feature = "test-hooks"))]
use std::sync::OnceLock;

/// Every step name, in the order of each operation (the tests iterate it).
pub const ALL: &[&str] = &[
    // backup (rule 3, rule 11 second line)
    // any writer (backup, copy, prune's repack, repair): packs stored, the
    // index object naming them not yet (rule 3)
    "store:before-index",
    "backup:opened",
    "backup:locked",
    "backup:data-stored",
    "backup:rechecked",
    "backup:snapshot-written",
    // copy (rule 8)
    "copy:locked",
    "copy:verified",
    "copy:snapshot-written",
    // prune (rules 7 and 11)
    "prune:planned",
    "prune:repacked",
    "prune:index-written",
    "prune:old-index-deleted",
    "prune:packs-deleted",
    "prune:writers-listed",
    "prune:settle-index-written",
    // repair (rule 10)
    "repair:locked",
    "repair:replacements-stored",
    // PostgreSQL (format-spec/13-wal.md, rules W1 and B1-B3)
    "wal-push:before-put",
    "pg-backup:started",
    "pg-backup:stopped",
    // reads
    "restore:planned",
    "dump:started",
    "read:locked",
];

#[cfg(any(test, feature = "test-hooks"))]
fn wanted() -> &'static [String] {
    static W: OnceLock<Vec<String>> = OnceLock::new();
    W.get_or_init(|| {
        std::env::var("CAIRN_TEST_PAUSE_AT")
            .map(|v| v.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect())
            .unwrap_or_default()
    })
}

#[cfg(any(test, feature = "test-hooks"))]
fn trace_file() -> Option<&'static std::sync::Mutex<std::fs::File>> {
    static T: OnceLock<Option<std::sync::Mutex<std::fs::File>>> = OnceLock::new();
    T.get_or_init(|| {
        let path = std::env::var_os("CAIRN_TEST_TRACE")?;
        std::fs::OpenOptions::new().create(true).append(true).open(path).ok().map(std::sync::Mutex::new)
    })
    .as_ref()
}

/// Appends an event to the trace file, if one is asked for (`what` is only
/// called then).
#[cfg(not(any(test, feature = "test-hooks")))]
pub fn note(_what: impl FnOnce() -> String) {}

/// Appends an event to the trace file, if one is asked for (`what` is only
/// called then).
#[cfg(any(test, feature = "test-hooks"))]
pub fn note(what: impl FnOnce() -> String) {
    let Some(f) = trace_file() else { return };
    use std::io::Write;
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let line = format!("{nanos} {} {}\n", std::process::id(), what());
    let mut f = f.lock().unwrap_or_else(|e| e.into_inner());
    let _ = f.write_all(line.as_bytes());
}

/// Marks that the process has reached `step`; stops it there, the first
/// time, when the schedule tests ask for it.
#[cfg(not(any(test, feature = "test-hooks")))]
pub fn reached(step: &str) {
    debug_assert!(ALL.contains(&step), "unknown step {step}");
}

/// Marks that the process has reached `step`; stops it there, the first
/// time, when the schedule tests ask for it.
#[cfg(any(test, feature = "test-hooks"))]
pub fn reached(step: &str) {
    debug_assert!(ALL.contains(&step), "unknown step {step}");
    note(|| step.to_string());
    static PAUSED: std::sync::Mutex<Vec<&'static str>> = std::sync::Mutex::new(Vec::new());
    let Some(w) = wanted().iter().find(|w| *w == step) else { return };
    // The first time only: a step reached again (a second index object,
    // a rescue's packs) runs on, so that one SIGCONT resumes the process.
    let first = {
        let mut p = PAUSED.lock().unwrap_or_else(|e| e.into_inner());
        let known = ALL.iter().find(|s| **s == w.as_str()).copied().unwrap_or("?");
        let first = !p.contains(&known);
        p.push(known);
        first
    };
    if first {
        eprintln!("cairn: paused at {step}");
        // SAFETY: raise only sends a signal to this process; SIGSTOP stops
        // every thread until SIGCONT. No memory is involved.
        unsafe {
            libc::raise(libc::SIGSTOP);
        }
    }
}
