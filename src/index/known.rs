//! What a writer may reuse, asked the way a backup asks: chunk after chunk
//! of a stream or file, most of them stored before in the same order.
//!
//! A B-tree lookup per chunk costs more as the repository grows (at 10^8
//! entries the cache file is ~10 GB, and nearly every lookup reads pages
//! that redb's fixed page cache cannot hold). Two things answer most
//! questions without one:
//! - a **new** chunk: the cache's filter ([`super::cache::filter`]) says it
//!   is absent, one 64-byte read; about 1 % pass and are looked up;
//! - a chunk stored **next to the last one found**: when two lookups in a
//!   row find their blobs in the same pack, that pack's keys are loaded
//!   (one read of the cache's `pack_blobs` table) and the chunks that
//!   follow in the stream are found among them. The keys of the last
//!   [`NEAR_ENTRIES`] or so loaded are kept (the packs loaded last).
//!
//! Every answer is one the lookup would give: a pack's keys are loaded only
//! after a lookup found it live (not marked for deletion, not deleted), in
//! the same read transaction, and only if the cache's blob map points each
//! of them at that pack (a pack holding a blob also stored elsewhere, whose
//! entry names the other copy, is "displaced" and never loaded: were the
//! other copy's pack deleted, the map would no longer know the blob, and
//! this pack's keys would say otherwise).

use std::cell::RefCell;
use std::collections::{HashSet, VecDeque};

use super::CacheReader;
use crate::error::Result;
use crate::id::BlobId;

/// Keys kept from loaded packs, at most (one pack larger than this is kept
/// alone): ~5 MiB.
pub const NEAR_ENTRIES: usize = 1 << 16;
/// Packs remembered at most (loaded, or found displaced and not loaded).
const NEAR_PACKS: usize = 256;

/// Lookups answered, by how (for benchmarks and tests).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KnownStats {
    /// Found among the keys of packs loaded.
    pub near: u64,
    /// Called absent by the filter.
    pub filtered: u64,
    /// Looked up in the B-tree.
    pub looked_up: u64,
    /// Packs whose keys were loaded.
    pub packs_loaded: u64,
}

#[derive(Default)]
struct Near {
    /// The pack of the last blob a lookup found.
    last: Option<u32>,
    /// Packs loaded, oldest first, with their keys.
    packs: VecDeque<(u32, Vec<BlobId>)>,
    keys: HashSet<BlobId>,
    entries: usize,
    stats: KnownStats,
}

impl Near {
    fn loaded(&self, ordinal: u32) -> bool {
        self.packs.iter().any(|(o, _)| *o == ordinal)
    }

    fn load(&mut self, ordinal: u32, blobs: Vec<BlobId>) {
        while !self.packs.is_empty() && (self.entries + blobs.len() > NEAR_ENTRIES || self.packs.len() >= NEAR_PACKS) {
            if let Some((_, old)) = self.packs.pop_front() {
                self.entries -= old.len();
                for b in &old {
                    self.keys.remove(b);
                }
            }
        }
        // A blob also in a pack still loaded may have just been removed:
        // it is looked up again if asked, no harm done.
        self.keys.extend(blobs.iter().copied());
        self.entries += blobs.len();
        self.packs.push_back((ordinal, blobs));
        self.stats.packs_loaded += 1;
    }
}

/// A [`CacheReader`] asked for reusable blobs in a backup's order.
pub struct Known {
    reader: CacheReader,
    near: RefCell<Near>,
}

impl Known {
    pub fn new(reader: CacheReader) -> Self {
        Known { reader, near: RefCell::default() }
    }

    /// Whether the index has the blob in a pack a writer may reuse from
    /// (as [`CacheReader::get_live`] answers).
    pub fn has_live(&self, blob: &BlobId) -> Result<bool> {
        let mut near = self.near.borrow_mut();
        if near.keys.contains(blob) {
            near.stats.near += 1;
            return Ok(true);
        }
        if !self.reader.maybe_contains(blob) {
            near.stats.filtered += 1;
            return Ok(false);
        }
        near.stats.looked_up += 1;
        let Some((ordinal, _)) = self.reader.get_live_at(blob)? else {
            return Ok(false);
        };
        if near.last == Some(ordinal) && !near.loaded(ordinal) {
            // A displaced pack is remembered as loaded with no keys: its
            // blobs are looked up one by one.
            let blobs = self.reader.pack_blobs(ordinal)?.unwrap_or_default();
            near.load(ordinal, blobs);
        }
        near.last = Some(ordinal);
        Ok(true)
    }

    /// How lookups were answered so far.
    pub fn stats(&self) -> KnownStats {
        self.near.borrow().stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::index::{Index, IndexPack, MarkedPack};
    use crate::format::pack::PackEntry;
    use crate::id::{BlobKind, IndexId, PackId, RepoId};
    use crate::index::IndexCache;

    fn id(i: u64) -> [u8; 32] {
        *blake3::hash(&i.to_le_bytes()).as_bytes()
    }

    fn pack(p: u8, ids: std::ops::Range<u64>) -> IndexPack {
        let blobs = ids
            .enumerate()
            .map(|(n, i)| PackEntry {
                kind: BlobKind::Data,
                id: id(i),
                offset: n as u32 * 10,
                length: 10,
                inner: None,
                raw_length: 10,
            })
            .collect();
        IndexPack { id: PackId([p; 32]), blobs }
    }

    fn data(i: u64) -> BlobId {
        BlobId { kind: BlobKind::Data, id: id(i) }
    }

    #[test]
    fn a_stream_in_stored_order_is_answered_from_its_packs() {
        let dir = tempfile::tempdir().unwrap();
        let c = IndexCache::open(Some(dir.path()), &RepoId([1; 32])).unwrap();
        let ix = Index { packs: vec![pack(1, 0..100), pack(2, 100..200), pack(3, 200..300)], ..Default::default() };
        c.add_indexes(&[(IndexId([1; 32]), ix)]).unwrap();
        let k = Known::new(c.reader().unwrap());
        // Packs 1 and 2 in order, with new chunks between.
        for i in 0..200 {
            assert!(k.has_live(&data(i)).unwrap(), "{i}");
            assert!(!k.has_live(&data(1_000_000 + i)).unwrap());
        }
        let s = k.stats();
        assert_eq!(s.packs_loaded, 2);
        // Two lookups per pack before it is loaded, the rest from memory.
        assert_eq!(s.near, 196);
        assert!(s.filtered >= 190, "{s:?}");
        assert_eq!(s.looked_up + s.filtered + s.near, 400);
    }

    #[test]
    fn random_order_loads_no_pack_and_answers_the_same() {
        let c = IndexCache::in_memory().unwrap();
        let ix = Index {
            packs: (0..50).map(|p| pack(p, p as u64 * 10..p as u64 * 10 + 10)).collect(),
            ..Default::default()
        };
        c.add_indexes(&[(IndexId([1; 32]), ix)]).unwrap();
        let k = Known::new(c.reader().unwrap());
        // Every tenth blob: never two in a row from one pack.
        for i in (0..500).step_by(10) {
            assert!(k.has_live(&data(i)).unwrap());
        }
        assert_eq!(k.stats().packs_loaded, 0);
        // No filter in memory: every absent blob is looked up.
        assert!(!k.has_live(&data(9_999)).unwrap());
        assert_eq!(k.stats().looked_up, 51);
    }

    #[test]
    fn a_marked_pack_is_neither_reused_nor_loaded() {
        let c = IndexCache::in_memory().unwrap();
        let ix = Index {
            packs: vec![pack(1, 0..10)],
            marked: vec![MarkedPack { run: [3; 16], pack: pack(2, 10..20) }],
            ..Default::default()
        };
        c.add_indexes(&[(IndexId([1; 32]), ix)]).unwrap();
        let k = Known::new(c.reader().unwrap());
        for i in 10..20 {
            assert!(!k.has_live(&data(i)).unwrap(), "a marked pack's blob is not reusable");
        }
        for i in 0..10 {
            assert!(k.has_live(&data(i)).unwrap());
        }
        assert_eq!(k.stats().packs_loaded, 1);
    }

    #[test]
    fn a_deleted_pack_is_not_loaded_and_its_keys_are_dropped() {
        let c = IndexCache::in_memory().unwrap();
        let ix = Index { packs: vec![pack(1, 0..10), pack(2, 10..20)], ..Default::default() };
        c.add_indexes(&[(IndexId([1; 32]), ix)]).unwrap();
        let deleted = std::collections::HashSet::from([PackId([2; 32])]);
        assert!(c.apply_prune(&[], &[], &[], &deleted, |_| Ok(false)).unwrap());
        let r = c.reader().unwrap();
        assert!(r.pack_blobs(1).unwrap().unwrap().is_empty(), "the deleted pack's keys are gone");
        assert_eq!(r.pack_blobs(0).unwrap().unwrap().len(), 10);
        let k = Known::new(r);
        for i in 10..20 {
            assert!(!k.has_live(&data(i)).unwrap());
        }
        assert_eq!(k.stats().packs_loaded, 0);
    }

    #[test]
    fn a_pack_whose_blob_the_map_points_elsewhere_is_not_loaded() {
        let c = IndexCache::in_memory().unwrap();
        // Blob 5 is in pack 1 and, stored again, in pack 2, whose entry
        // the map keeps; then a prune deletes pack 2 (blob 5 unused there).
        let mut again = pack(2, 100..110);
        again.blobs.push(pack(1, 5..6).blobs.remove(0));
        c.add_indexes(&[(IndexId([1; 32]), Index { packs: vec![pack(1, 0..10)], ..Default::default() })]).unwrap();
        c.add_indexes(&[(IndexId([2; 32]), Index { packs: vec![again], ..Default::default() })]).unwrap();
        let r = c.reader().unwrap();
        assert_eq!(r.pack_blobs(0).unwrap(), None, "pack 1 is displaced");
        assert_eq!(r.pack_blobs(1).unwrap().unwrap().len(), 11);
        let deleted = std::collections::HashSet::from([PackId([2; 32])]);
        assert!(c.apply_prune(&[], &[], &[], &deleted, |_| Ok(false)).unwrap());
        // Pack 1's stream: the map no longer knows blob 5, and neither
        // does a backup (it stores it once more).
        let k = Known::new(c.reader().unwrap());
        for i in 0..10 {
            assert_eq!(k.has_live(&data(i)).unwrap(), i != 5, "{i}");
        }
        assert_eq!(k.stats().near, 0);
        // A marked pack whose blobs have live copies is displaced too: if
        // its mark is lifted, its keys stay unused.
        let c = IndexCache::in_memory().unwrap();
        let ix = Index {
            packs: vec![pack(1, 0..10)],
            marked: vec![MarkedPack { run: [3; 16], pack: pack(2, 5..15) }],
            ..Default::default()
        };
        c.add_indexes(&[(IndexId([1; 32]), ix)]).unwrap();
        let r = c.reader().unwrap();
        assert!(r.pack_blobs(0).unwrap().is_some());
        assert_eq!(r.pack_blobs(1).unwrap(), None);
    }

    #[test]
    fn loaded_keys_stay_bounded() {
        let c = IndexCache::in_memory().unwrap();
        let per = NEAR_ENTRIES as u64 / 2 + 1;
        let ix = Index {
            packs: (0..3).map(|p| pack(p, p as u64 * per..(p as u64 + 1) * per)).collect(),
            ..Default::default()
        };
        c.add_indexes(&[(IndexId([1; 32]), ix)]).unwrap();
        let k = Known::new(c.reader().unwrap());
        for i in 0..3 * per {
            assert!(k.has_live(&data(i)).unwrap());
        }
        let near = k.near.borrow();
        assert_eq!(near.stats.packs_loaded, 3);
        assert_eq!(near.packs.len(), 1, "two such packs do not fit together");
        assert!(near.entries <= NEAR_ENTRIES && near.keys.len() == near.entries);
    }
}
