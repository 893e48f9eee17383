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
    // reads
    "restore:planned",
    "dump:started",
    "read:locked",
];

fn wanted() -> &'static [String] {
    static W: OnceLock<Vec<String>> = OnceLock::new();
    W.get_or_init(|| {
        std::env::var("CAIRN_TEST_PAUSE_AT")
            .map(|v| v.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect())
            .unwrap_or_default()
    })
}

/// Marks that the process has reached `step`; stops it there, the first
/// time, when the schedule tests ask for it.
pub fn reached(step: &str) {
    debug_assert!(ALL.contains(&step), "unknown step {step}");
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
