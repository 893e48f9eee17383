//! Keeping the local cache in line with the repository's `index/` objects
//! (format-spec/10-write-order.md, rule 6), and reading and writing index
//! objects.

use std::collections::HashSet;

use crate::crypto::aead::ObjectType;
use crate::error::{Error, ErrorKind, Result, ResultExt};
use crate::format::index::{self, Index, IndexPack};
use crate::id::IndexId;
use crate::repo::Repository;

impl Repository {
    /// Brings the cache in line with `index/`: absorbs new index objects;
    /// rebuilds from scratch if one it knew has disappeared.
    ///
    /// An object that vanishes between the listing and its reading was
    /// replaced by a prune, which stores the replacing objects before it
    /// deletes (rule 7): the sync lists again, so that the cache never
    /// lacks what both the old and the new objects name.
    pub fn sync_cache(&self) -> Result<()> {
        for _ in 0..8 {
            if !self.sync_once()? {
                return Ok(());
            }
        }
        Err(Error::new(ErrorKind::Transient, "the index kept changing while it was read; run the command again"))
    }

    /// One listing and absorption; whether some listed object vanished.
    fn sync_once(&self) -> Result<bool> {
        let listed: HashSet<IndexId> = self.list_ids("index")?.into_iter().map(IndexId).collect();
        let known = self.cache.known_index_files()?;
        let shorts = |s: &HashSet<IndexId>| {
            let mut v: Vec<String> = s.iter().map(|i| i.short()).collect();
            v.sort();
            v.join(",")
        };
        if !known.is_subset(&listed) {
            crate::steps::note(|| format!("sync rebuild listed [{}] known [{}]", shorts(&listed), shorts(&known)));
            self.cache.clear()?;
            let vanished = self.absorb(listed.iter().copied().collect())?;
            crate::steps::note(|| format!("sync absorbed, vanished {vanished}"));
            return Ok(vanished);
        }
        let mut new: Vec<IndexId> = listed.difference(&known).copied().collect();
        new.sort();
        crate::steps::note(|| format!("sync add listed [{}] known [{}]", shorts(&listed), shorts(&known)));
        let vanished = self.absorb(new)?;
        crate::steps::note(|| format!("sync absorbed, vanished {vanished}"));
        Ok(vanished)
    }

    /// Drops the cache and reads every index object again.
    pub fn rebuild_cache(&self) -> Result<()> {
        self.cache.clear()?;
        self.sync_cache()
    }

    /// Loads index objects into the cache. One that is damaged (or vanished
    /// since the listing) is skipped and recorded, not fatal: the rest of the
    /// repository stays usable, `check` names it, and `repair index`
    /// rebuilds what it held from the pack headers.
    fn absorb(&self, ids: Vec<IndexId>) -> Result<bool> {
        let mut damaged = self.damaged_indexes.lock().unwrap_or_else(|p| p.into_inner());
        damaged.clear();
        let mut vanished = false;
        // One transaction, entries inserted in global key order
        // ([`crate::index::cache::Absorber`]): memory stays at one sorted
        // run whatever the size, and each B-tree leaf is written about once.
        let mut absorber = self.cache.begin_absorb()?;
        for id in &ids {
            match self.load_index_full(id) {
                Ok(ix) => absorber.add(id, &ix)?,
                Err(e) if e.kind() == ErrorKind::NotFound => vanished = true,
                Err(e) if matches!(e.kind(), ErrorKind::Corrupt | ErrorKind::Crypto) => {
                    damaged.push((*id, e.to_string()))
                }
                Err(e) => return Err(e),
            }
        }
        absorber.finish()?;
        Ok(vanished)
    }

    /// Index objects skipped at the last sync because they did not load.
    pub fn damaged_indexes(&self) -> Vec<(IndexId, String)> {
        self.damaged_indexes.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Every pack an index object names, live or marked for deletion (both
    /// exist until a prune deletes them).
    pub fn load_index(&self, id: &IndexId) -> Result<Vec<IndexPack>> {
        let ix = self.load_index_full(id)?;
        Ok(ix.packs.into_iter().chain(ix.marked.into_iter().map(|m| m.pack)).collect())
    }

    /// An index object with its marks and prune run records.
    pub fn load_index_full(&self, id: &IndexId) -> Result<Index> {
        let plain = self.load_object("index", &id.0, ObjectType::Index)?;
        index::decode_index(&plain).context(format!("index/{id}"))
    }

    /// Stores an index object for packs already stored and adds it to the cache.
    pub fn save_index(&self, packs: Vec<IndexPack>) -> Result<IndexId> {
        self.save_index_full(Index { packs, ..Default::default() })
    }

    /// Stores an index object without adding it to the cache (prune updates
    /// the cache itself, [`IndexCache::apply_prune`]).
    pub fn save_index_uncached(&self, ix: &Index) -> Result<IndexId> {
        Ok(IndexId(self.save_object("index", ObjectType::Index, &index::encode_index_as(self.config.layout(), ix))?))
    }

    /// Stores an index object (with marks and records) and adds it to the cache.
    pub fn save_index_full(&self, ix: Index) -> Result<IndexId> {
        let id = IndexId(self.save_object(
            "index",
            ObjectType::Index,
            &index::encode_index_as(self.config.layout(), &ix),
        )?);
        self.cache.add_indexes(&[(id, ix)])?;
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use crate::format::index::IndexPack;
    use crate::repo::memory_repo;

    #[test]
    fn cache_rebuilds_when_an_index_disappears() {
        let r = memory_repo();
        let p = IndexPack { id: crate::id::PackId([1; 32]), blobs: vec![] };
        let a = r.save_index(vec![p.clone()]).unwrap();
        let b = r.save_index(vec![p]).unwrap();
        r.backend.delete(&format!("index/{a}")).unwrap();
        r.sync_cache().unwrap();
        let known = r.cache.known_index_files().unwrap();
        assert_eq!(known.into_iter().collect::<Vec<_>>(), vec![b]);
    }
}
