//! How far a long operation has got, for a caller that shows it.
//!
//! The library only counts (atomics, no I/O): `check --read-data` sets a
//! total (bytes stored), `restore` grows one batch by batch (bytes of the
//! files it writes), and both add to the amount done on
//! [`crate::repo::Repository::progress`]. The CLI draws a bar from it on a
//! terminal, and nothing reads it otherwise.

use std::sync::atomic::{AtomicU64, Ordering};

/// A total and the amount done so far, in bytes.
#[derive(Debug, Default)]
pub struct Meter {
    total: AtomicU64,
    done: AtomicU64,
}

impl Meter {
    /// Starts counting towards `total` from 0.
    pub fn start(&self, total: u64) {
        self.done.store(0, Ordering::Relaxed);
        self.total.store(total, Ordering::Relaxed);
    }

    /// Adds `n` to the total, keeping what is done (an operation that
    /// learns its work in batches, as restore does).
    pub fn grow(&self, n: u64) {
        self.total.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts `n` more done.
    pub fn add(&self, n: u64) {
        self.done.fetch_add(n, Ordering::Relaxed);
    }

    /// (done, total); done never shows more than the total.
    pub fn get(&self) -> (u64, u64) {
        let total = self.total.load(Ordering::Relaxed);
        (self.done.load(Ordering::Relaxed).min(total), total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_meter_counts_towards_its_total() {
        let m = Meter::default();
        assert_eq!(m.get(), (0, 0));
        m.start(100);
        m.add(30);
        m.add(30);
        assert_eq!(m.get(), (60, 100));
        m.add(100);
        assert_eq!(m.get(), (100, 100));
        m.start(10);
        assert_eq!(m.get(), (0, 10));
        m.add(4);
        m.grow(20);
        assert_eq!(m.get(), (4, 30));
    }
}
