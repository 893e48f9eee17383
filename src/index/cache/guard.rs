//! Keeping a damaged cache file from failing cairn more than once.
//!
//! The cache is a copy of the index, so a file that redb finds damaged
//! (`Corrupted`), or that makes redb panic (a broken invariant: debug
//! builds assert them, a release build would go on with a wrong page map),
//! is never repaired in place: opening it starts a fresh file, and a
//! failure while it is in use fails that one command with an error naming
//! the file, which is then removed so that the next command rebuilds it
//! from the repository's index objects (format-spec/10-write-order.md,
//! rule 6).

use std::any::Any;
use std::cell::Cell;
use std::panic::AssertUnwindSafe;

use crate::error::{Error, ErrorKind, Result};

thread_local! {
    /// How many guarded cache calls this thread is inside.
    static CATCHING: Cell<u32> = const { Cell::new(0) };
}

/// Whether a panic raised now on this thread is one the index cache
/// catches and reports as an error of its own: the binary's panic hook
/// then prints nothing.
pub fn panic_is_caught() -> bool {
    CATCHING.with(|c| c.get() > 0)
}

/// Runs `f`, catching a panic out of it.
pub(super) fn catching<T>(f: impl FnOnce() -> T) -> std::thread::Result<T> {
    CATCHING.with(|c| c.set(c.get() + 1));
    let r = std::panic::catch_unwind(AssertUnwindSafe(f));
    CATCHING.with(|c| c.set(c.get() - 1));
    r
}

/// The text of a caught panic.
pub(super) fn panic_message(p: &(dyn Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".into())
}

/// Whether `e` says that the cache file itself is unsound: redb found it
/// corrupted, or an earlier failure left the database refusing writes.
pub(super) fn is_damage(e: &Error) -> bool {
    let Some(src) = std::error::Error::source(e) else { return false };
    src.downcast_ref::<redb::Error>().is_some_and(|e| {
        matches!(e, redb::Error::Corrupted(_) | redb::Error::PreviousIo | redb::Error::TransactionPoisoned)
    })
}

/// Runs a cache call `f` (`what` says what it does): a panic out of it
/// becomes an error, and on a panic or a damage error `condemn` is called
/// and says what becomes of the file.
pub(super) fn guarded<T>(what: &str, condemn: impl FnOnce() -> String, f: impl FnOnce() -> Result<T>) -> Result<T> {
    match catching(f) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) if is_damage(&e) => {
            let remedy = condemn();
            Err(e.context(format_args!("index cache ({remedy})")))
        }
        Ok(Err(e)) => Err(e),
        Err(p) => {
            let remedy = condemn();
            Err(Error::new(
                ErrorKind::Io,
                format!("index cache: redb failed while {what} ({}); {remedy}", panic_message(p.as_ref())),
            ))
        }
    }
}
