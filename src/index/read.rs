//! Reading blobs through the index: where a blob is, reading and verifying
//! it, and finding it again when a prune moved it (rule 6).

use crate::error::{Error, ErrorKind, Result, ResultExt};
use crate::format::tree::{self, Node};
use crate::id::{BlobId, BlobKind, TreeId};
use crate::index::Location;
use crate::pack;
use crate::repo::Repository;

impl Repository {
    /// Where a blob is, per the cache.
    pub fn locate(&self, blob: &BlobId) -> Result<Option<Location>> {
        self.cache.get(blob)
    }

    /// Reads one blob and verifies it against its id. A missing pack makes
    /// the cache rebuild once before the blob is declared lost.
    pub fn read_blob(&self, blob: &BlobId) -> Result<Vec<u8>> {
        let what = match blob.kind {
            BlobKind::Data => "chunk",
            BlobKind::Tree => "tree",
        };
        // Not in the cache: index objects written since it was synced (a
        // backup that committed meanwhile, a prune's repack) may name it.
        let loc = match self.locate(blob)? {
            Some(loc) => loc,
            None => {
                self.sync_cache()?;
                self.locate(blob)?
                    .ok_or_else(|| Error::corrupt(format!("{what} {} is not in the index", hex::encode(blob.id))))?
            }
        };
        match self.read_blob_at(blob, &loc) {
            Err(e) if e.kind() == ErrorKind::NotFound => {
                // One rebuild at a time; a reader that waited finds the
                // blob moved by the rebuild another one did.
                let _one = self.relocating.lock().unwrap_or_else(|p| p.into_inner());
                if self.locate(blob)?.is_none_or(|now| now.pack == loc.pack) {
                    self.rebuild_cache()?;
                }
                let loc = self
                    .locate(blob)?
                    .ok_or_else(|| Error::corrupt(format!("{what} {} is not in the index", hex::encode(blob.id))))?;
                self.read_blob_at(blob, &loc).map_err(|e| {
                    if e.kind() == ErrorKind::NotFound {
                        Error::corrupt(format!("pack {} holding {what} {} is missing", loc.pack, hex::encode(blob.id)))
                    } else {
                        e
                    }
                })
            }
            r => r,
        }
    }

    /// Reads a blob from a known location.
    /// A blob in a group is taken from the group opened last when it is
    /// one of the few kept ([`crate::index::units`]), and checked against
    /// its id all the same.
    pub fn read_blob_at(&self, blob: &BlobId, loc: &Location) -> Result<Vec<u8>> {
        let entry = loc.entry(blob);
        let what = |e: Error| e.context(format!("blob {} in pack {}", hex::encode(blob.id), loc.pack));
        let fetch = || self.backend.get_range(&pack::object_name(&loc.pack), loc.range());
        if loc.inner.is_none() {
            return pack::open_blob(&self.key, &entry, &fetch()?).map_err(what);
        }
        let unit = self
            .units
            .get(loc.pack, entry.unit_key(), || pack::open_unit(&self.key, &entry, &fetch()?).map_err(what))?;
        Ok(pack::blob_in_unit(&self.key, &entry, &unit).map_err(what)?.to_vec())
    }

    /// Loads a tree: from the local tree cache when it has it (verified like
    /// any blob), else by fetching its whole tree pack once and caching every
    /// tree in it, so walking a snapshot costs one request per tree pack.
    pub fn load_tree(&self, id: &TreeId) -> Result<Vec<Node>> {
        let plain = self.read_tree_blob(id)?;
        tree::decode(&plain).context(format!("tree {id}"))
    }

    /// The cached tree `id`, opened and verified; `None` if it is not
    /// cached or does not verify (then it is dropped from the cache).
    fn cached_tree(&self, id: &TreeId) -> Result<Option<Vec<u8>>> {
        let Some(t) = self.cache.tree(&id.0)? else { return Ok(None) };
        let entry = crate::format::pack::PackEntry {
            kind: BlobKind::Tree,
            id: id.0,
            offset: 0,
            length: t.sealed.len() as u32,
            inner: t.inner,
            raw_length: t.raw_length,
        };
        match pack::open_blob(&self.key, &entry, &t.sealed) {
            Ok(plain) => Ok(Some(plain)),
            Err(_) => {
                self.cache.forget_tree(&id.0)?; // never trusted
                Ok(None)
            }
        }
    }

    pub fn read_tree_blob(&self, id: &TreeId) -> Result<Vec<u8>> {
        let blob = BlobId::tree(*id);
        if let Some(plain) = self.cached_tree(id)? {
            return Ok(plain);
        }
        if let Some(loc) = self.locate(&blob)? {
            if let Ok(bytes) = self.backend.get(&pack::object_name(&loc.pack)) {
                if let Ok(header) = pack::header_from_bytes(&self.key.enc, &loc.pack, &bytes) {
                    let trees = header.iter().filter(|e| e.kind == BlobKind::Tree);
                    let items = trees.filter_map(|e| {
                        bytes.get(e.offset as usize..e.end() as usize).map(|s| (e.id, e.raw_length, e.inner, s))
                    });
                    self.cache.put_trees(items)?;
                    if let Some(plain) = self.cached_tree(id)? {
                        return Ok(plain);
                    }
                }
            }
        }
        // The direct path, with its own error reporting and cache rebuild.
        self.read_blob(&blob)
    }
}
