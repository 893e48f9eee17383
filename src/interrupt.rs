//! SIGINT, SIGTERM and SIGHUP (Ctrl-C, `timeout 2h cairn backup`, a closed
//! session): stop cleanly instead of dying where the signal lands.
//!
//! [`install`] starts a thread that waits for those signals. On one, it
//! waits for a snapshot write in flight to end ([`committing`]: a snapshot
//! is written whole or not at all, and never after the lock is gone), then
//! runs the registered clean-ups (stop a `--stdin-from-command` child,
//! delete the lock objects this process holds), and exits with 128 + the
//! signal's number (130, 143, 129). Nothing is left half committed: the
//! write order (format-spec/10-write-order.md) makes any point safe to stop
//! at, so the clean-ups only spare others the wait for a stale lock and an
//! orphaned child. Without [`install`] (the library, `mount`, which
//! unmounts on these signals itself) nothing changes.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

type Cleanup = Box<dyn Fn() + Send + Sync>;

fn cleanups() -> &'static Mutex<BTreeMap<u64, Cleanup>> {
    static C: OnceLock<Mutex<BTreeMap<u64, Cleanup>>> = OnceLock::new();
    C.get_or_init(|| Mutex::new(BTreeMap::new()))
}

static NEXT: AtomicU64 = AtomicU64::new(1);
static COMMIT: Mutex<Option<String>> = Mutex::new(None);

/// A registered clean-up; dropping it unregisters it.
pub struct Registration(u64);

impl Drop for Registration {
    fn drop(&mut self) {
        cleanups().lock().unwrap_or_else(|p| p.into_inner()).remove(&self.0);
    }
}

/// Runs `f` if the process is interrupted while the registration lives.
/// Clean-ups run in the order registered, newest last.
pub fn on_interrupt(f: impl Fn() + Send + Sync + 'static) -> Registration {
    let id = NEXT.fetch_add(1, Ordering::Relaxed);
    cleanups().lock().unwrap_or_else(|p| p.into_inner()).insert(id, Box::new(f));
    Registration(id)
}

fn interrupted() -> &'static Arc<AtomicBool> {
    static F: OnceLock<Arc<AtomicBool>> = OnceLock::new();
    F.get_or_init(|| Arc::new(AtomicBool::new(false)))
}

/// Held while a snapshot is written: an interruption waits for the write
/// to end. Record what was committed in the guard (`Some(description)`)
/// so that the exit message says it. Once a signal has arrived (the flag
/// is set in the signal handler itself), no commit starts: the caller
/// waits here for the signal thread to end the process.
pub fn committing() -> MutexGuard<'static, Option<String>> {
    let guard = COMMIT.lock().unwrap_or_else(|p| p.into_inner());
    if interrupted().load(Ordering::SeqCst) {
        drop(guard);
        loop {
            std::thread::park();
        }
    }
    guard
}

/// Called before a command reports its error: once a signal has arrived,
/// the failure is most likely the clean-ups' own doing (a stopped
/// `--stdin-from-command` child, a removed lock), and the signal thread is
/// about to end the process with 128 + the signal and its one line; this
/// waits for it (up to a minute, should a clean-up hang) instead of
/// reporting that failure with another exit code.
pub fn yield_to_signal() {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while interrupted().load(Ordering::SeqCst) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Starts the signal thread (once).
pub fn install() -> std::io::Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    static DONE: OnceLock<()> = OnceLock::new();
    if DONE.get().is_some() {
        return Ok(());
    }
    for sig in [SIGINT, SIGTERM, SIGHUP] {
        signal_hook::flag::register(sig, interrupted().clone())?;
    }
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])?;
    let _ = DONE.set(());
    std::thread::Builder::new().name("signals".into()).spawn(move || {
        if let Some(sig) = signals.forever().next() {
            // No snapshot is written after this, and none is cut short.
            let committed = COMMIT.lock().unwrap_or_else(|p| p.into_inner()).take();
            let list = std::mem::take(&mut *cleanups().lock().unwrap_or_else(|p| p.into_inner()));
            for f in list.values() {
                f();
            }
            exit_delay();
            let name = match sig {
                SIGINT => "SIGINT",
                SIGTERM => "SIGTERM",
                _ => "SIGHUP",
            };
            match committed {
                Some(what) => eprintln!("cairn: interrupted by {name} after {what}; lock removed"),
                None => eprintln!("cairn: interrupted by {name}; lock removed"),
            }
            std::process::exit(128 + sig);
        }
    })?;
    Ok(())
}

/// Test builds: `CAIRN_TEST_SIGNAL_EXIT_DELAY_MS` holds the signal thread
/// between its clean-ups and the exit, so that a test sees the window in
/// which the command's own failure (a child the clean-up stopped) could
/// otherwise be reported first (tests/integration/signals.rs).
#[cfg(any(test, feature = "test-hooks"))]
fn exit_delay() {
    if let Some(ms) = std::env::var("CAIRN_TEST_SIGNAL_EXIT_DELAY_MS").ok().and_then(|v| v.parse::<u64>().ok()) {
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
}

#[cfg(not(any(test, feature = "test-hooks")))]
fn exit_delay() {}
