//! The groups opened last, so that reading the chunks of one group one by
//! one (`dump`, `mount`, a restore that re-reads a moved blob) fetches and
//! opens the group once, not once per chunk (format-spec/05-packs.md,
//! layout 2).
//!
//! A few units are kept (their authenticated plaintext, at most
//! [`UNITS`] × (1 MiB + one chunk)); each blob taken from one is still
//! checked against its id. Several threads wanting the same unit wait for
//! the one that opens it. A pack's id names its bytes forever, so a unit
//! kept after a prune deleted its pack is still those bytes.

use std::sync::{Arc, Mutex, OnceLock};

use crate::error::{Error, ErrorKind, Result};
use crate::format::pack::UnitKey;
use crate::id::PackId;

/// Units kept.
const UNITS: usize = 16;

/// An opened unit, or why it could not be opened.
type Opened = std::result::Result<Arc<Vec<u8>>, (ErrorKind, String)>;
/// A unit's place and its (possibly still opening) plaintext.
type Slot = ((PackId, UnitKey), Arc<OnceLock<Opened>>);

#[derive(Default)]
pub struct UnitCache {
    /// (pack, offset) -> the unit, most recently used last.
    slots: Mutex<Vec<Slot>>,
}

impl UnitCache {
    /// The plaintext of the unit `unit` of `pack`, opened by `open` unless
    /// it is held; failures are not kept.
    pub fn get(&self, pack: PackId, unit: UnitKey, open: impl FnOnce() -> Result<Vec<u8>>) -> Result<Arc<Vec<u8>>> {
        let key = (pack, unit);
        let cell = {
            let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            let cell = match slots.iter().position(|(k, _)| *k == key) {
                Some(i) => slots.remove(i).1,
                None => Arc::new(OnceLock::new()),
            };
            slots.push((key, cell.clone()));
            if slots.len() > UNITS {
                slots.remove(0);
            }
            cell
        };
        let opened = cell.get_or_init(|| open().map(Arc::new).map_err(|e| (e.kind(), e.to_string())));
        match opened {
            Ok(u) => Ok(u.clone()),
            Err((kind, msg)) => {
                let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
                slots.retain(|(_, c)| !Arc::ptr_eq(c, &cell));
                Err(Error::new(*kind, msg.clone()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn opens_a_unit_once_and_keeps_a_few() {
        let c = UnitCache::default();
        let opened = AtomicUsize::new(0);
        let open = |n: u8| {
            opened.fetch_add(1, Ordering::Relaxed);
            Ok(vec![n; 4])
        };
        for _ in 0..3 {
            assert_eq!(*c.get(PackId([1; 32]), (8, 1, 1, true), || open(1)).unwrap(), vec![1; 4]);
        }
        assert_eq!(opened.load(Ordering::Relaxed), 1);
        for i in 0..UNITS as u32 + 1 {
            c.get(PackId([2; 32]), (i, 1, 1, true), || open(2)).unwrap();
        }
        // The first unit was dropped to make room.
        c.get(PackId([1; 32]), (8, 1, 1, true), || open(1)).unwrap();
        assert_eq!(opened.load(Ordering::Relaxed), 1 + UNITS + 2);
    }

    #[test]
    fn failures_are_not_kept_and_keep_their_kind() {
        let c = UnitCache::default();
        let e = c.get(PackId([3; 32]), (8, 1, 1, true), || Err(Error::not_found("gone"))).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert_eq!(*c.get(PackId([3; 32]), (8, 1, 1, true), || Ok(vec![7])).unwrap(), vec![7]);
    }

    #[test]
    fn threads_wanting_one_unit_open_it_once() {
        let c = UnitCache::default();
        let opened = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    c.get(PackId([4; 32]), (8, 1, 1, true), || {
                        opened.fetch_add(1, Ordering::Relaxed);
                        std::thread::sleep(std::time::Duration::from_millis(20));
                        Ok(vec![1])
                    })
                    .unwrap();
                });
            }
        });
        assert_eq!(opened.load(Ordering::Relaxed), 1);
    }
}
