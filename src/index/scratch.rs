//! A scratch set of blob ids on disk, for operations whose working set
//! grows with the repository (prune's "used" set): a redb database in a
//! temporary file, deleted on drop. Memory stays at redb's page cache.
//!
//! Keys are the blob kind and the first 16 bytes of the id. Two blobs that
//! share a prefix (2^-64 odds per pair) only make the set answer "present"
//! for both, which for prune means keeping a blob it could have dropped.

use redb::{Database, Durability, ReadableTable, ReadableTableMetadata, Table, TableDefinition};

use crate::error::Result;
use crate::id::BlobId;

const SET: TableDefinition<[u8; 17], u32> = TableDefinition::new("set");
const CACHE_BYTES: usize = 32 << 20;

fn key(b: &BlobId) -> [u8; 17] {
    let mut k = [0u8; 17];
    k[0] = b.kind as u8;
    k[1..].copy_from_slice(&b.id[..16]);
    k
}

/// Blob ids, each with a non-zero mark.
pub struct BlobSet {
    db: Database,
    _file: tempfile::NamedTempFile,
}

/// Reads and writes inside one transaction ([`BlobSet::with_writer`]).
pub struct SetWriter<'t> {
    table: Table<'t, [u8; 17], u32>,
}

impl SetWriter<'_> {
    /// A blob's mark, 0 if absent.
    pub fn get(&self, b: &BlobId) -> Result<u32> {
        Ok(self.table.get(key(b))?.map(|v| v.value()).unwrap_or(0))
    }

    /// Sets a blob's mark (non-zero), replacing an earlier one.
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
        Ok(Self { db, _file: file })
    }

    /// Runs `f` with reads and writes in one transaction, committed after.
    pub fn with_writer<R>(&mut self, f: impl FnOnce(&mut SetWriter) -> Result<R>) -> Result<R> {
        let mut tx = self.db.begin_write()?;
        tx.set_durability(Durability::None);
        let r = {
            let mut w = SetWriter { table: tx.open_table(SET)? };
            f(&mut w)?
        };
        tx.commit()?;
        Ok(r)
    }

    /// A read view for many lookups.
    pub fn reader(&mut self) -> Result<BlobSetReader> {
        let tx = self.db.begin_read()?;
        Ok(BlobSetReader { table: tx.open_table(SET)? })
    }

    /// Number of blobs in the set.
    pub fn len(&self) -> Result<u64> {
        Ok(self.db.begin_read()?.open_table(SET)?.len()?)
    }

    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Counts the entries whose mark is `mark`.
    pub fn count(&mut self, mark: u32) -> Result<u64> {
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
    /// A blob's mark, 0 if absent.
    pub fn get(&self, b: &BlobId) -> Result<u32> {
        Ok(self.table.get(key(b))?.map(|v| v.value()).unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::BlobKind;

    #[test]
    fn scratch_file_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let s = BlobSet::new(Some(dir.path())).unwrap();
        let mode = std::fs::metadata(s._file.path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{} has mode {mode:o}", s._file.path().display());
    }

    #[test]
    fn set_get_count() {
        let mut s = BlobSet::new(None).unwrap();
        let b = |i: u32, kind| {
            let mut id = [0u8; 32];
            id[..4].copy_from_slice(&i.to_le_bytes());
            BlobId { kind, id }
        };
        s.with_writer(|w| {
            for i in 0..60_000 {
                w.set(&b(i, BlobKind::Data), 1)?;
            }
            w.set(&b(3, BlobKind::Data), 2)?;
            assert_eq!(w.get(&b(3, BlobKind::Data))?, 2);
            assert_eq!(w.get(&b(3, BlobKind::Tree))?, 0);
            Ok(())
        })
        .unwrap();
        let r = s.reader().unwrap();
        assert_eq!(r.get(&b(59_999, BlobKind::Data)).unwrap(), 1);
        assert_eq!(r.get(&b(60_000, BlobKind::Data)).unwrap(), 0);
        drop(r);
        assert_eq!(s.count(2).unwrap(), 1);
        assert_eq!(s.len().unwrap(), 60_000);
    }
}
