//! A read view of the cache: one read transaction's tables, for many
//! fast lookups (a backup's, a restore's, a check's).

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use redb::{ReadOnlyTable, ReadableTable};

use super::{decode_loc, filter, guard, key, ordinal_of, unkey, Loc, Location};
use crate::error::{Error, ErrorKind, Result};
use crate::id::{BlobId, PackId};

/// A read view of the cache.
pub struct CacheReader {
    pub(super) table: ReadOnlyTable<[u8; 33], Loc>,
    pub(super) pack_blobs: ReadOnlyTable<(u32, u16), &'static [u8]>,
    pub(super) displaced: ReadOnlyTable<u32, ()>,
    /// The filter as it was when the reader started (a superset of the
    /// table's keys then, and later).
    pub(super) filter: Option<Arc<filter::Filter>>,
    /// Pack ids by ordinal (32 bytes per pack: a few MiB at most).
    pub(super) packs: Vec<PackId>,
    /// Packs marked for deletion (few: a prune's leftovers).
    pub(super) marked: HashSet<PackId>,
    /// Packs deleted, whose entries are ignored.
    pub(super) gone: HashSet<PackId>,
    /// The cache's mark for a damaged file.
    pub(super) damaged: Arc<AtomicBool>,
}

impl CacheReader {
    /// A redb error, the file marked for removal if it is damage.
    fn fail(&self, e: impl Into<Error>) -> Error {
        let e = e.into();
        if guard::is_damage(&e) {
            self.damaged.store(true, Ordering::Relaxed);
            return e.context("index cache (removed when this command ends; the next one rebuilds it)");
        }
        e
    }

    /// Where to read a blob: a live pack if it has one, else a marked pack.
    pub fn get(&self, blob: &BlobId) -> Result<Option<Location>> {
        Ok(self.get_at(blob)?.map(|(_, l)| l))
    }

    /// [`Self::get`], with the pack's ordinal in the cache.
    fn get_at(&self, blob: &BlobId) -> Result<Option<(u32, Location)>> {
        let found = self.table.get(key(blob)).map_err(|e| self.fail(e))?;
        match found {
            Some(v) => {
                let v = v.value();
                let l = decode_loc(&v, &self.packs)?;
                Ok((!self.gone.contains(&l.pack)).then_some((ordinal_of(&v), l)))
            }
            None => Ok(None),
        }
    }

    /// Whether the blob may be indexed: `false` means it is not, known
    /// from the filter without a lookup (always `true` without a filter,
    /// or when the filter cannot be read). Only writers ask: a wrong
    /// `false` would make them store a blob once more, nothing worse.
    pub fn maybe_contains(&self, blob: &BlobId) -> bool {
        match &self.filter {
            Some(f) => f.maybe_contains(&key(blob)).unwrap_or(true),
            None => true,
        }
    }

    /// [`Self::get_live`], with the pack's ordinal: the handle for
    /// [`Self::pack_blobs`].
    pub fn get_live_at(&self, blob: &BlobId) -> Result<Option<(u32, Location)>> {
        Ok(self.get_at(blob)?.filter(|(_, l)| !self.marked.contains(&l.pack)))
    }

    /// Every blob of the pack with ordinal `ordinal`, in the order its
    /// index entry lists them, when the blob map points each of them at
    /// this pack; `None` for a pack some of whose blobs it points elsewhere
    /// (a pack the cache no longer has: empty). So for a live pack, a blob
    /// among these is one [`Self::get_live`] finds.
    pub fn pack_blobs(&self, ordinal: u32) -> Result<Option<Vec<BlobId>>> {
        if self.displaced.get(ordinal).map_err(|e| self.fail(e))?.is_some() {
            return Ok(None);
        }
        let mut v = Vec::new();
        for r in self.pack_blobs.range((ordinal, 0)..=(ordinal, u16::MAX)).map_err(|e| self.fail(e))? {
            v.extend_from_slice(r.map_err(|e| self.fail(e))?.1.value());
        }
        if v.len() % 33 != 0 {
            self.damaged.store(true, Ordering::Relaxed);
            return Err(Error::new(
                ErrorKind::Io,
                "index cache: a pack's key list is cut short (the cache is removed when this command ends)",
            ));
        }
        v.chunks_exact(33)
            .map(|k| {
                unkey(k.try_into().expect("33 bytes"))
                    .ok_or_else(|| Error::new(ErrorKind::Io, "index cache: bad blob kind in a pack's key list"))
            })
            .collect::<Result<Vec<_>>>()
            .map(Some)
    }

    /// Whether the index has the blob (in any pack, marked or not).
    pub fn contains(&self, blob: &BlobId) -> Result<bool> {
        Ok(self.get(blob)?.is_some())
    }

    /// Where a writer may reuse a blob from: only a pack that no prune has
    /// marked for deletion.
    pub fn get_live(&self, blob: &BlobId) -> Result<Option<Location>> {
        Ok(self.get_live_at(blob)?.map(|(_, l)| l))
    }
}
