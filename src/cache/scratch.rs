//! A scratch set of blob ids on disk, for operations whose working set
//! grows with the repository (prune's "used" set): a redb database in a
//! temporary file, deleted on drop. Memory stays at redb's page cache.
//!
//! Keys are the blob kind and the first 16 bytes of the id. Two blobs that
//! share a prefix (2^-64 odds per pair) only make the set answer "present"
//! for both, which for prune means keeping a blob it could have dropped.

use redb::{Database, Durability, ReadableTable, Table, TableDefinition};

use crate::error::Result;
use crate::id::BlobId;

const SET: TableDefinition<[u8; 17], u32> = TableDefinition::new("set");
const CACHE_BYTES: usize = 32 << 20;
/// Inserts per write transaction.
const BATCH: usize = 50_000;

fn key(b: &BlobId) -> [u8; 17] {
    let mut k = [0u8; 17];
    k[0] = b.kind as u8;
    k[1..].copy_from_slice(&b.id[..16]);
    k
}

pub struct BlobSet {
    db: Database,
    _file: Option<tempfile::NamedTempFile>,
    pending: Vec<([u8; 17], u32)>,
}

/// Reads and writes inside one transaction ([`BlobSet::with_writer`]).
pub struct SetWriter<'t> {
    table: Table<'t, [u8; 17], u32>,
}

impl SetWriter<'_> {
    pub fn get(&self, b: &BlobId) -> Result<u32> {
        Ok(self.table.get(key(b))?.map(|v| v.value()).unwrap_or(0))
    }

    pub fn set(&mut self, b: &BlobId, mark: u32) -> Result<()> {
        self.table.insert(key(b), mark)?;
        Ok(())
    }
}

impl BlobSet {
    /// A set in a temporary file under `dir` (the system's temp dir if none).
    pub fn new(dir: Option<&std::path::Path>) -> Result<Self> {
        let file = match dir {
            Some(d) => tempfile::Builder::new().prefix("scratch").suffix(".redb").tempfile_in(d),
            None => tempfile::Builder::new().prefix("cairn-scratch").suffix(".redb").tempfile(),
        }
        .map_err(|e| crate::error::Error::io("creating a scratch file", e))?;
        let db = Database::builder().set_cache_size(CACHE_BYTES).create(file.path())?;
        let tx = db.begin_write()?;
        tx.open_table(SET)?;
        tx.commit()?;
        Ok(Self { db, _file: Some(file), pending: Vec::new() })
    }

    /// An in-memory set (tests).
    pub fn in_memory() -> Result<Self> {
        let db = Database::builder().create_with_backend(redb::backends::InMemoryBackend::new())?;
        let tx = db.begin_write()?;
        tx.open_table(SET)?;
        tx.commit()?;
        Ok(Self { db, _file: None, pending: Vec::new() })
    }

    /// Sets a blob's mark (any non-zero value), replacing an earlier one.
    pub fn set(&mut self, b: &BlobId, mark: u32) -> Result<()> {
        self.pending.push((key(b), mark));
        if self.pending.len() >= BATCH {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let mut tx = self.db.begin_write()?;
        tx.set_durability(Durability::None);
        {
            let mut t = tx.open_table(SET)?;
            self.pending.sort_unstable();
            for (k, v) in self.pending.drain(..) {
                t.insert(k, v)?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// A blob's mark, 0 if absent.
    pub fn get(&mut self, b: &BlobId) -> Result<u32> {
        let k = key(b);
        if let Some((_, v)) = self.pending.iter().rev().find(|(pk, _)| *pk == k) {
            return Ok(*v);
        }
        self.flush_if_any()?;
        let tx = self.db.begin_read()?;
        let t = tx.open_table(SET)?;
        Ok(t.get(k)?.map(|v| v.value()).unwrap_or(0))
    }

    fn flush_if_any(&mut self) -> Result<()> {
        if !self.pending.is_empty() {
            self.flush()?;
        }
        Ok(())
    }

    /// Runs `f` with reads and writes in one transaction, committed after.
    pub fn with_writer<R>(&mut self, f: impl FnOnce(&mut SetWriter) -> Result<R>) -> Result<R> {
        self.flush_if_any()?;
        let mut tx = self.db.begin_write()?;
        tx.set_durability(Durability::None);
        let r = {
            let mut w = SetWriter { table: tx.open_table(SET)? };
            f(&mut w)?
        };
        tx.commit()?;
        Ok(r)
    }

    /// A read view for many lookups (flushes pending inserts first).
    pub fn reader(&mut self) -> Result<BlobSetReader> {
        self.flush_if_any()?;
        let tx = self.db.begin_read()?;
        Ok(BlobSetReader { table: tx.open_table(SET)? })
    }

    /// Counts the entries whose mark is `mark`.
    pub fn count(&mut self, mark: u32) -> Result<u64> {
        self.flush_if_any()?;
        let tx = self.db.begin_read()?;
        let t = tx.open_table(SET)?;
        let mut n = 0;
        for r in t.iter()? {
            if r?.1.value() == mark {
                n += 1;
            }
        }
        Ok(n)
    }
}

pub struct BlobSetReader {
    table: redb::ReadOnlyTable<[u8; 17], u32>,
}

impl BlobSetReader {
    pub fn get(&self, b: &BlobId) -> Result<u32> {
        Ok(self.table.get(key(b))?.map(|v| v.value()).unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::BlobKind;

    #[test]
    fn set_get_across_batches() {
        let mut s = BlobSet::new(None).unwrap();
        let b = |i: u32, kind| {
            let mut id = [0u8; 32];
            id[..4].copy_from_slice(&i.to_le_bytes());
            BlobId { kind, id }
        };
        for i in 0..(BATCH as u32 + 10) {
            s.set(&b(i, BlobKind::Data), 1).unwrap();
        }
        s.set(&b(3, BlobKind::Data), 2).unwrap();
        assert_eq!(s.get(&b(3, BlobKind::Data)).unwrap(), 2);
        assert_eq!(s.get(&b(3, BlobKind::Tree)).unwrap(), 0);
        let r = s.reader().unwrap();
        assert_eq!(r.get(&b(BATCH as u32 + 9, BlobKind::Data)).unwrap(), 1);
        assert_eq!(r.get(&b(BATCH as u32 + 10, BlobKind::Data)).unwrap(), 0);
        drop(r);
        assert_eq!(s.count(2).unwrap(), 1);
    }
}
