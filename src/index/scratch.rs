//! A scratch set of blob ids with a mark each, for operations whose working
//! set grows with the repository (prune's "used" set, stats' "seen" set).
//!
//! It lives in memory while it fits a budget ([`DEFAULT_MEMORY`], or the
//! one given to [`BlobSet::with_memory`]): a sorted vector of 20-byte
//! entries with a directory on the keys' leading bits (ids are uniformly
//! random, so a lookup searches ~16 entries), and the keys added since the
//! last merge in a hash map that is sorted and merged in when it reaches a
//! sixteenth of the vector (at least [`MERGE_EVERY`]), so merging costs
//! O(1) per key added, amortized. When the entries outgrow the budget, the set
//! moves, in key order, into a redb database in a temporary file (deleted
//! on drop), and from then on memory stays at redb's page cache
//! ([`CACHE_BYTES`]) whatever the repository's size.
//!
//! Keys are the first 15 bytes of the id and the blob kind. Two blobs that
//! share a key (2^-120 odds per pair for 15 bytes of two random ids) only
//! make the set answer "present" for both, which for prune means keeping a
//! blob it could have dropped.

use std::collections::HashMap;

use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, Table, TableDefinition,
    WriteTransaction,
};

use crate::error::Result;
use crate::id::BlobId;

const SET: TableDefinition<[u8; 16], u32> = TableDefinition::new("set");
/// redb's page cache once the set is on disk.
const CACHE_BYTES: usize = 32 << 20;
/// The memory budget of the in-memory form, in bytes of entries.
pub const DEFAULT_MEMORY: usize = 256 << 20;
/// Keys added before they are merged into the sorted vector.
const MERGE_EVERY: usize = 1 << 16;
const ENTRY_BYTES: usize = std::mem::size_of::<(Key, u32)>();

type Key = [u8; 16];

fn key(b: &BlobId) -> Key {
    let mut k = [0u8; 16];
    k[..15].copy_from_slice(&b.id[..15]);
    k[15] = b.kind as u8;
    k
}

/// The in-memory form.
#[derive(Default)]
struct MemSet {
    /// Sorted by key, keys unique.
    sorted: Vec<(Key, u32)>,
    /// Where each run of keys sharing their first `bits` bits starts in
    /// `sorted` (one more entry at the end): ids are uniformly random, so a
    /// lookup searches a few entries instead of the whole vector.
    dir: Vec<u32>,
    bits: u32,
    /// Keys not in `sorted`, added since the last merge.
    recent: HashMap<Key, u32>,
}

fn ord(k: &Key) -> u128 {
    u128::from_be_bytes(*k)
}

impl MemSet {
    fn find(&self, k: &Key) -> Result<usize, ()> {
        if self.sorted.is_empty() {
            return Err(());
        }
        let x = ord(k);
        let b = (x >> (128 - self.bits)) as usize;
        let (lo, hi) = (self.dir[b] as usize, self.dir[b + 1] as usize);
        match self.sorted[lo..hi].binary_search_by(|e| ord(&e.0).cmp(&x)) {
            Ok(i) => Ok(lo + i),
            Err(_) => Err(()),
        }
    }

    fn get(&self, k: &Key) -> u32 {
        match self.find(k) {
            Ok(i) => self.sorted[i].1,
            Err(()) => self.recent.get(k).copied().unwrap_or(0),
        }
    }

    /// Sets a mark; true when `recent` is due for a merge (at a size that
    /// grows with the set, so merging costs O(n) per n keys added).
    fn set(&mut self, k: Key, mark: u32) -> bool {
        match self.find(&k) {
            Ok(i) => self.sorted[i].1 = mark,
            Err(()) => {
                self.recent.insert(k, mark);
            }
        }
        self.recent.len() >= MERGE_EVERY.max(self.sorted.len() / 16)
    }

    /// Merges `recent` into `sorted`, from the back, in place.
    fn merge(&mut self) {
        if self.recent.is_empty() {
            return;
        }
        let mut add: Vec<(Key, u32)> = self.recent.drain().collect();
        self.recent.shrink_to(MERGE_EVERY);
        add.sort_unstable_by_key(|e| ord(&e.0));
        let old = self.sorted.len();
        self.sorted.reserve_exact(add.len());
        self.sorted.resize(old + add.len(), ([0; 16], 0));
        let (mut i, mut j, mut out) = (old, add.len(), old + add.len());
        while j > 0 {
            out -= 1;
            if i > 0 && ord(&self.sorted[i - 1].0) > ord(&add[j - 1].0) {
                self.sorted[out] = self.sorted[i - 1];
                i -= 1;
            } else {
                self.sorted[out] = add[j - 1];
                j -= 1;
            }
        }
        // About 16 entries per run of the directory.
        let n = self.sorted.len();
        self.bits = (usize::BITS - (n / 16).leading_zeros()).clamp(1, 28);
        self.dir.clear();
        self.dir.reserve_exact((1 << self.bits) + 1);
        let mut at = 0usize;
        for b in 0..(1u128 << self.bits) {
            while at < n && ord(&self.sorted[at].0) >> (128 - self.bits) < b {
                at += 1;
            }
            self.dir.push(at as u32);
        }
        self.dir.push(n as u32);
    }

    fn bytes(&self) -> usize {
        self.sorted.capacity() * ENTRY_BYTES + self.dir.capacity() * 4 + self.recent.capacity() * (ENTRY_BYTES + 1)
    }
}

/// Blob ids, each with a non-zero mark.
pub struct BlobSet {
    /// `Some` while the set is in memory; `None` once it moved to `db`.
    mem: Option<MemSet>,
    memory: usize,
    db: Database,
    _file: tempfile::NamedTempFile,
}

/// Reads and writes inside one transaction ([`BlobSet::with_writer`]).
pub struct SetWriter<'t> {
    mem: &'t mut Option<MemSet>,
    memory: usize,
    tx: &'t WriteTransaction,
    table: Option<Table<'t, Key, u32>>,
}

impl SetWriter<'_> {
    /// A blob's mark, 0 if absent.
    pub fn get(&self, b: &BlobId) -> Result<u32> {
        let k = key(b);
        match (&*self.mem, &self.table) {
            (Some(m), _) => Ok(m.get(&k)),
            (None, Some(t)) => Ok(t.get(k)?.map(|v| v.value()).unwrap_or(0)),
            (None, None) => unreachable!("a set moved to disk has its table open"),
        }
    }

    /// Sets a blob's mark (non-zero), replacing an earlier one.
    pub fn set(&mut self, b: &BlobId, mark: u32) -> Result<()> {
        let k = key(b);
        if let Some(m) = self.mem.as_mut() {
            if m.set(k, mark) {
                m.merge();
                if m.bytes() > self.memory {
                    self.spill()?;
                }
            }
            return Ok(());
        }
        self.table.as_mut().expect("a set moved to disk has its table open").insert(k, mark)?;
        Ok(())
    }

    /// Moves the in-memory set into the database, in key order.
    fn spill(&mut self) -> Result<()> {
        let Some(mut m) = self.mem.take() else { return Ok(()) };
        m.merge();
        let mut t = self.tx.open_table(SET)?;
        for (k, v) in m.sorted.drain(..) {
            t.insert(k, v)?;
        }
        self.table = Some(t);
        Ok(())
    }
}

impl BlobSet {
    /// A set with the default memory budget, spilling to a temporary file
    /// under `dir` (the system's temp dir if none).
    pub fn new(dir: Option<&std::path::Path>) -> Result<Self> {
        Self::with_memory(dir, DEFAULT_MEMORY)
    }

    /// A set that keeps at most about `memory` bytes of entries in memory.
    pub fn with_memory(dir: Option<&std::path::Path>, memory: usize) -> Result<Self> {
        let file = match dir {
            Some(d) => tempfile::Builder::new().prefix("scratch").suffix(".redb").tempfile_in(d),
            None => tempfile::Builder::new().prefix("cairn-scratch").suffix(".redb").tempfile(),
        }
        .map_err(|e| crate::error::Error::io("creating a scratch file", e))?;
        let db = Database::builder().set_cache_size(CACHE_BYTES).create(file.path())?;
        let tx = db.begin_write()?;
        tx.open_table(SET)?;
        tx.commit()?;
        Ok(Self { mem: Some(MemSet::default()), memory, db, _file: file })
    }

    /// Whether the set has moved to disk.
    pub fn on_disk(&self) -> bool {
        self.mem.is_none()
    }

    /// Runs `f` with reads and writes in one transaction, committed after.
    pub fn with_writer<R>(&mut self, f: impl FnOnce(&mut SetWriter) -> Result<R>) -> Result<R> {
        let mut tx = self.db.begin_write()?;
        tx.set_durability(Durability::None)?;
        let r = {
            let table = if self.mem.is_none() { Some(tx.open_table(SET)?) } else { None };
            let mut w = SetWriter { mem: &mut self.mem, memory: self.memory, tx: &tx, table };
            let r = f(&mut w)?;
            if w.mem.as_ref().is_some_and(|m| m.bytes() > w.memory) {
                w.spill()?;
            }
            r
        };
        tx.commit()?;
        if let Some(m) = self.mem.as_mut() {
            m.merge();
        }
        Ok(r)
    }

    /// A read view for many lookups.
    pub fn reader(&self) -> Result<BlobSetReader<'_>> {
        Ok(BlobSetReader(match &self.mem {
            Some(m) => Reader::Mem(m),
            None => Reader::Disk(self.db.begin_read()?.open_table(SET)?),
        }))
    }

    /// Number of blobs in the set.
    pub fn len(&self) -> Result<u64> {
        Ok(match &self.mem {
            Some(m) => (m.sorted.len() + m.recent.len()) as u64,
            None => self.db.begin_read()?.open_table(SET)?.len()?,
        })
    }

    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Counts the entries whose mark is `mark`.
    pub fn count(&mut self, mark: u32) -> Result<u64> {
        if let Some(m) = &self.mem {
            let n = m.sorted.iter().map(|e| e.1).chain(m.recent.values().copied()).filter(|&v| v == mark).count();
            return Ok(n as u64);
        }
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

/// Lookups outside a writer ([`BlobSet::reader`]).
pub struct BlobSetReader<'s>(Reader<'s>);

enum Reader<'s> {
    Mem(&'s MemSet),
    Disk(redb::ReadOnlyTable<Key, u32>),
}

impl BlobSetReader<'_> {
    /// A blob's mark, 0 if absent.
    pub fn get(&self, b: &BlobId) -> Result<u32> {
        let k = key(b);
        match &self.0 {
            Reader::Mem(m) => Ok(m.get(&k)),
            Reader::Disk(t) => Ok(t.get(k)?.map(|v| v.value()).unwrap_or(0)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::BlobKind;
    use proptest::prelude::*;

    #[test]
    fn scratch_file_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let s = BlobSet::new(Some(dir.path())).unwrap();
        let mode = std::fs::metadata(s._file.path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{} has mode {mode:o}", s._file.path().display());
    }

    fn blob(i: u32, kind: BlobKind) -> BlobId {
        let mut id = [0u8; 32];
        id[..4].copy_from_slice(&i.to_le_bytes());
        BlobId { kind, id }
    }

    fn set_get_count(memory: usize, spills: bool) {
        let mut s = BlobSet::with_memory(None, memory).unwrap();
        s.with_writer(|w| {
            for i in 0..200_000 {
                w.set(&blob(i, BlobKind::Data), 1)?;
            }
            w.set(&blob(3, BlobKind::Data), 2)?;
            assert_eq!(w.get(&blob(3, BlobKind::Data))?, 2);
            assert_eq!(w.get(&blob(3, BlobKind::Tree))?, 0);
            Ok(())
        })
        .unwrap();
        assert_eq!(s.on_disk(), spills);
        s.with_writer(|w| {
            w.set(&blob(3, BlobKind::Tree), 5)?;
            w.set(&blob(7, BlobKind::Data), 2)
        })
        .unwrap();
        let r = s.reader().unwrap();
        assert_eq!(r.get(&blob(199_999, BlobKind::Data)).unwrap(), 1);
        assert_eq!(r.get(&blob(200_000, BlobKind::Data)).unwrap(), 0);
        assert_eq!(r.get(&blob(3, BlobKind::Tree)).unwrap(), 5);
        drop(r);
        assert_eq!(s.count(2).unwrap(), 2);
        assert_eq!(s.len().unwrap(), 200_001);
    }

    #[test]
    fn in_memory() {
        set_get_count(DEFAULT_MEMORY, false);
    }

    #[test]
    fn moved_to_disk() {
        set_get_count(1 << 20, true);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]
        /// Any sequence of sets, in memory, across the move to disk, and on
        /// disk, answers like a map: every key's last mark, 0 for others.
        #[test]
        fn answers_like_a_map(ops in proptest::collection::vec((0u32..300_000, any::<bool>(), 1u32..6), 1..200_000),
                              memory in 0usize..3_000_000) {
            let mut s = BlobSet::with_memory(None, memory).unwrap();
            let mut model: HashMap<(u32, bool), u32> = HashMap::new();
            let kind = |t: bool| if t { BlobKind::Tree } else { BlobKind::Data };
            let half = ops.len() / 2;
            for part in [&ops[..half], &ops[half..]] {
                s.with_writer(|w| {
                    for &(i, t, m) in part {
                        w.set(&blob(i, kind(t)), m)?;
                        model.insert((i, t), m);
                        assert_eq!(w.get(&blob(i, kind(t)))?, m);
                    }
                    Ok(())
                }).unwrap();
            }
            prop_assert_eq!(s.len().unwrap(), model.len() as u64);
            for m in 1..6 {
                prop_assert_eq!(s.count(m).unwrap(), model.values().filter(|&&v| v == m).count() as u64);
            }
            let r = s.reader().unwrap();
            for &(i, t, _) in ops.iter().take(2000) {
                prop_assert_eq!(r.get(&blob(i, kind(t))).unwrap(), model[&(i, t)]);
                prop_assert_eq!(r.get(&blob(i + 300_000, kind(t))).unwrap(), 0);
            }
        }
    }
}
