//! The blobs a save session stored lately: dedup within one backup, in
//! bounded memory.
//!
//! The index cache only knows what earlier sessions stored (a backup reads
//! it through one read transaction); what this session stores is known
//! here until the next command's sync absorbs its index objects. Keeping
//! every such blob would cost ~50 bytes of memory per new chunk: 1.3 GB for
//! the first backup of a 100 GB dump at 4 KiB chunks. So the set is
//! bounded: two generations of at most [`GENERATION`] blobs each. A blob
//! is inserted into the young one; when it is full, the old one is dropped
//! and the young one becomes old. A blob found in the old generation moves
//! back to the young one, so a chunk that recurs (zeroed pages, a repeated
//! record) stays known however long the backup.
//!
//! Forgetting is safe: a blob this set no longer knows is stored once more
//! (a second copy in the index, which prune counts as unused and reclaims,
//! format-spec/10-write-order.md). Knowing a blob that was not stored is
//! what would lose data, and the set only holds blobs handed to the packer.

use std::collections::HashSet;

use crate::id::BlobId;

/// Blobs per generation: a hash table of 2^18 buckets (34 bytes each,
/// ~9 MiB) holds this many at hashbrown's load factor, so the set never
/// takes more than ~18 MiB. Two generations cover the last 458,752 new
/// blobs at least: ~1.8 GiB of new data at 4 KiB chunks, far more at the
/// 512 KiB of files.
pub const GENERATION: usize = 7 << 15;

pub struct Recent {
    young: HashSet<BlobId>,
    old: HashSet<BlobId>,
    generation: usize,
}

impl Recent {
    pub fn new() -> Self {
        Self::with_generation(GENERATION)
    }

    /// A set whose generations hold `generation` blobs (at least 1).
    pub fn with_generation(generation: usize) -> Self {
        Recent { young: HashSet::new(), old: HashSet::new(), generation: generation.max(1) }
    }

    /// Whether the set knows `blob`.
    pub fn contains(&self, blob: &BlobId) -> bool {
        self.young.contains(blob) || self.old.contains(blob)
    }

    /// Whether the set knows `blob`; if it does, it is kept as if new.
    pub fn touch(&mut self, blob: &BlobId) -> bool {
        if self.young.contains(blob) {
            return true;
        }
        if self.old.remove(blob) {
            self.insert(*blob);
            return true;
        }
        false
    }

    /// Records a blob handed to the packer.
    pub fn insert(&mut self, blob: BlobId) {
        self.young.insert(blob);
        if self.young.len() >= self.generation {
            self.old = std::mem::take(&mut self.young);
        }
    }

    /// Blobs known now.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.young.len() + self.old.len()
    }
}

impl Default for Recent {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(i: u32) -> BlobId {
        let mut id = [0u8; 32];
        id[..4].copy_from_slice(&i.to_le_bytes());
        BlobId::data(crate::id::ChunkId(id))
    }

    #[test]
    fn knows_the_last_generation_at_least_and_never_more_than_two() {
        let mut r = Recent::with_generation(4);
        for i in 0..100 {
            r.insert(b(i));
            assert!(r.len() <= 8, "{} blobs held", r.len());
            // The last `generation` blobs inserted are always known.
            for j in i.saturating_sub(3)..=i {
                assert!(r.contains(&b(j)), "{j} forgotten after {i}");
            }
        }
        // Long forgotten.
        assert!(!r.contains(&b(0)));
        assert!(!r.touch(&b(0)));
    }

    #[test]
    fn a_blob_that_recurs_is_kept() {
        let mut r = Recent::with_generation(4);
        r.insert(b(1_000));
        for i in 0..100 {
            r.insert(b(i));
            assert!(r.touch(&b(1_000)), "recurring blob forgotten at {i}");
        }
        // Without being touched it goes within two generations.
        for i in 100..108 {
            r.insert(b(i));
        }
        assert!(!r.contains(&b(1_000)));
    }

    #[test]
    fn the_default_generation_fits_its_table() {
        // hashbrown keeps a table at most 7/8 full: GENERATION blobs fit
        // 2^18 buckets exactly, so a full generation did not double.
        let mut s: HashSet<BlobId> = HashSet::with_capacity(GENERATION);
        let cap = s.capacity();
        assert!((GENERATION..2 * GENERATION).contains(&cap), "{cap}");
        s.insert(b(0));
        assert_eq!(s.capacity(), cap);
    }
}
