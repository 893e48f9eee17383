//! The local index cache: a redb database per repository, under the XDG
//! cache directory, mapping every indexed blob to its place in a pack.
//!
//! A backup looks chunks up here instead of loading the whole index into
//! memory or re-reading it at start. The cache is never authoritative: it
//! records which index objects it has absorbed, and [`crate::repo`] syncs it
//! against the repository's `index/` listing on open, rebuilding it from
//! scratch when an index object it knew has gone. Deleting it is always safe.
//!
//! What cairn creates here is private: directories 0700, the database and
//! the scratch files ([`super::scratch`]) 0600, whatever the umask.

mod absorb;
pub mod filter;
mod guard;
mod reader;

pub use absorb::{Absorber, RUN_ENTRIES};
pub use reader::CacheReader;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use redb::{Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};

use crate::error::{Error, ErrorKind, Result};
use crate::id::{BlobId, BlobKind, IndexId, PackId, RepoId};

/// (kind, blob id) -> (pack ordinal, offset, sealed length, inner offset
/// (`u32::MAX`: the blob is sealed alone), raw length), five u32 LE: 53
/// bytes per entry instead of 81 with the pack's id.
const BLOBS: TableDefinition<[u8; 33], Loc> = TableDefinition::new("blobs");
/// A stored location's bytes.
type Loc = [u8; 20];
/// The cache file's name: its number changes with its tables' layout or
/// redb's file format, so that a cairn of another layout makes its own file
/// instead of failing on this one (3: inner offsets, format 2; 4: redb's
/// file format 3, redb 5; 5: each pack's keys, and a filter beside it).
const FILE_NAME: &str = "index-5.redb";
/// Names of earlier layouts' files, removed when the cache is opened.
const OLD_FILE_NAMES: [&str; 3] = ["index.redb", "index-3.redb", "index-4.redb"];
/// Pack ordinal -> pack id. Ordinals are dense from 0, given in the order
/// packs are first absorbed, and kept until the cache is cleared.
const PACKS: TableDefinition<u32, [u8; 32]> = TableDefinition::new("packs");
/// (pack ordinal, part) -> the keys of its entries (33 bytes each: kind,
/// id), in the order its index entry lists them, [`PART_KEYS`] per part
/// from part 0: the blobs a backup will likely ask for next when it finds
/// one of them ([`crate::index::Known`]). Parts fit a page: a whole pack's
/// keys in one value take a power-of-two run of pages, ~twice the bytes.
const PACK_BLOBS: TableDefinition<(u32, u16), &[u8]> = TableDefinition::new("pack_blobs");
/// Packs (ordinals) some of whose keys the blob map points elsewhere: a
/// blob stored twice, whose entry names the other copy. Their keys are not
/// used to answer lookups ([`CacheReader::pack_blobs`]): if the other copy's
/// pack is deleted, the map no longer knows the blob, and an answer from
/// this pack's keys would differ from the map's.
const DISPLACED: TableDefinition<u32, ()> = TableDefinition::new("displaced");
/// Keys per part of a pack's keys.
const PART_KEYS: usize = 120;
/// "tag" -> the tag of the filter file that holds every key of `blobs`
/// ([`filter`]).
const FILTER_TAG: TableDefinition<&str, [u8; 16]> = TableDefinition::new("filter");

/// Stores the keys of pack `ordinal` (33 bytes each), replacing any.
fn put_pack_keys(t: &mut redb::Table<(u32, u16), &[u8]>, ordinal: u32, keys: &[u8]) -> Result<()> {
    remove_pack_keys(t, ordinal)?;
    // Parts of equal size: no short last part alone in a page.
    let n = keys.len() / 33;
    let per = n.div_ceil(n.div_ceil(PART_KEYS).max(1)).max(1);
    for (part, chunk) in keys.chunks(per * 33).enumerate() {
        let part =
            u16::try_from(part).map_err(|_| Error::new(ErrorKind::Io, "index cache: a pack of too many blobs"))?;
        t.insert((ordinal, part), chunk)?;
    }
    Ok(())
}

/// Drops the keys of pack `ordinal`.
fn remove_pack_keys(t: &mut redb::Table<(u32, u16), &[u8]>, ordinal: u32) -> Result<()> {
    let mut part = 0u16;
    while t.remove((ordinal, part))?.is_some() {
        part = match part.checked_add(1) {
            Some(p) => p,
            None => break,
        };
    }
    Ok(())
}
/// Pack id -> its ordinal.
const PACK_ORDINALS: TableDefinition<[u8; 32], u32> = TableDefinition::new("pack_ordinals");
/// Tree id -> `raw length u32 LE`, `inner offset u32 LE` (`u32::MAX`: sealed
/// alone) + the sealed unit holding it, as stored in its pack. Opened and
/// verified against the id like any blob read.
const TREES: TableDefinition<[u8; 32], &[u8]> = TableDefinition::new("trees");
/// Snapshot id -> the sealed snapshot object, as stored. Checked against
/// its name (SHA-256) and opened like a fresh download on every use.
const SNAPSHOTS: TableDefinition<[u8; 32], &[u8]> = TableDefinition::new("snapshots");
/// Packs that a prune has marked for deletion -> the run that marked them.
/// Their blobs stay readable but are not reused (format-spec/06-index.md).
const MARKED: TableDefinition<[u8; 32], [u8; 16]> = TableDefinition::new("marked");
/// Packs that a prune deleted -> how many entries still point at them.
/// Those entries are ignored (not removed: rewriting half of a large table
/// costs far more than the prune itself); a rebuild drops them.
const GONE: TableDefinition<[u8; 32], u64> = TableDefinition::new("gone");
/// Index objects absorbed, with their entry counts.
const INDEX_FILES: TableDefinition<[u8; 32], u64> = TableDefinition::new("index_files");

/// redb's page cache. Lookups are by random key, so a large cache buys
/// little; a small one keeps peak memory flat (the OS page cache still
/// holds the file).
const CACHE_BYTES: usize = 24 << 20;

/// Where a blob is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Location {
    pub pack: PackId,
    pub offset: u32,
    pub length: u32,
    /// Where the blob starts in its group's plaintext; `None`: sealed alone.
    pub inner: Option<u32>,
    pub raw_length: u32,
}

impl Location {
    /// The location of `e` in `pack`.
    pub fn of(pack: PackId, e: &crate::format::pack::PackEntry) -> Self {
        Location { pack, offset: e.offset, length: e.length, inner: e.inner, raw_length: e.raw_length }
    }

    /// The pack entry of `blob` at this location.
    pub fn entry(&self, blob: &BlobId) -> crate::format::pack::PackEntry {
        crate::format::pack::PackEntry {
            kind: blob.kind,
            id: blob.id,
            offset: self.offset,
            length: self.length,
            inner: self.inner,
            raw_length: self.raw_length,
        }
    }

    /// The bytes of the pack to read: the sealed unit.
    pub fn range(&self) -> std::ops::Range<u64> {
        self.offset as u64..self.offset as u64 + self.length as u64
    }
}

const NO_INNER: u32 = u32::MAX;

/// A tree held in the cache, as stored in its pack.
pub struct CachedTree {
    pub raw_length: u32,
    pub inner: Option<u32>,
    pub sealed: Vec<u8>,
}

fn inner_to_u32(inner: Option<u32>) -> u32 {
    inner.unwrap_or(NO_INNER)
}

fn inner_from_u32(v: u32) -> Option<u32> {
    (v != NO_INNER).then_some(v)
}

fn key(b: &BlobId) -> [u8; 33] {
    let mut k = [0u8; 33];
    k[0] = b.kind as u8;
    k[1..].copy_from_slice(&b.id);
    k
}

/// The blob a key names ([`key`]'s inverse); `None` for an unknown kind.
fn unkey(k: &[u8; 33]) -> Option<BlobId> {
    BlobKind::from_u8(k[0]).map(|kind| BlobId { kind, id: k[1..].try_into().expect("32 bytes") })
}

fn encode_loc(ordinal: u32, e: &crate::format::pack::PackEntry) -> Loc {
    let mut v = [0u8; 20];
    v[..4].copy_from_slice(&ordinal.to_le_bytes());
    v[4..8].copy_from_slice(&e.offset.to_le_bytes());
    v[8..12].copy_from_slice(&e.length.to_le_bytes());
    v[12..16].copy_from_slice(&inner_to_u32(e.inner).to_le_bytes());
    v[16..20].copy_from_slice(&e.raw_length.to_le_bytes());
    v
}

fn ordinal_of(v: &Loc) -> u32 {
    u32::from_le_bytes(v[..4].try_into().expect("4 bytes"))
}

fn unknown_ordinal(v: &Loc) -> Error {
    Error::new(ErrorKind::Io, format!("index cache: pack ordinal {} unknown (delete the cache)", ordinal_of(v)))
}

/// A stored location in `pack` (the pack its ordinal names).
fn location(v: &Loc, pack: PackId) -> Location {
    let u = |r: std::ops::Range<usize>| u32::from_le_bytes(v[r].try_into().expect("4 bytes"));
    Location { pack, offset: u(4..8), length: u(8..12), inner: inner_from_u32(u(12..16)), raw_length: u(16..20) }
}

/// A stored location, its pack ordinal looked up in `packs`.
fn decode_loc(v: &Loc, packs: &[PackId]) -> Result<Location> {
    let pack = *packs.get(ordinal_of(v) as usize).ok_or_else(|| unknown_ordinal(v))?;
    Ok(location(v, pack))
}

/// Every pack id by ordinal.
fn load_packs(tx: &redb::ReadTransaction) -> Result<Vec<PackId>> {
    let t = tx.open_table(PACKS)?;
    let mut out = Vec::with_capacity(t.len()? as usize);
    for r in t.iter()? {
        let (k, v) = r?;
        if k.value() as usize != out.len() {
            return Err(Error::new(ErrorKind::Io, "index cache: pack ordinals not dense (delete the cache)"));
        }
        out.push(PackId(v.value()));
    }
    Ok(out)
}

/// The default cache root: `$CAIRN_CACHE_DIR`, else `$XDG_CACHE_HOME/cairn`,
/// else `$HOME/.cache/cairn`.
pub fn default_root() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("CAIRN_CACHE_DIR").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(d));
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(d).join("cairn"));
    }
    std::env::var_os("HOME").filter(|d| !d.is_empty()).map(|h| PathBuf::from(h).join(".cache").join("cairn"))
}

/// Opens or creates the cache database at `path`; a new file is private
/// (0600, whatever the umask), like everything cairn creates.
fn create_db(path: &Path) -> std::result::Result<Database, redb::DatabaseError> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(crate::backend::local::FILE_MODE)
        .open(path)?;
    Database::builder().set_cache_size(CACHE_BYTES).create_with_backend(redb::backends::FileBackend::new(file))
}

pub struct IndexCache {
    db: Database,
    path: Option<PathBuf>,
    /// The filter of every key in `blobs` (none in memory): replaced when
    /// a sync outgrows it; readers keep the one they started with.
    filter: Mutex<Option<Arc<filter::Filter>>>,
    /// Set when redb found the file damaged or panicked on it: the file is
    /// removed when the cache is dropped ([`guard`]).
    damaged: Arc<AtomicBool>,
}

/// How an open of the cache file went wrong.
enum OpenFailure {
    /// Another cairn process has it open.
    Busy,
    /// It cannot be used as it is: damaged (what redb said), or of another
    /// layout (`None`: nothing to tell the user).
    Unusable(Option<String>),
}

impl IndexCache {
    /// Opens (or creates) the cache for `repo` under `root`; `None` keeps it
    /// in memory. A cache file that another process has open makes this
    /// one work from memory; a damaged one (or one of another layout) is
    /// started again: the cache is only a copy.
    pub fn open(root: Option<&Path>, repo: &RepoId) -> Result<Self> {
        let Some(root) = root else {
            return Self::in_memory();
        };
        let dir = root.join(repo.to_hex());
        if let Err(e) = crate::backend::local::create_dir_all(&dir) {
            eprintln!("warning: cache dir {} unusable ({e}); using memory", dir.display());
            return Self::in_memory();
        }
        // The files of earlier layouts (unnumbered: cairn up to format 1;
        // 3: the file format of redb 2) are not read by this cairn: their
        // space is given back.
        for old in OLD_FILE_NAMES {
            let _ = std::fs::remove_file(dir.join(old));
        }
        let path = dir.join(FILE_NAME);
        for attempt in 0..2 {
            match Self::open_file(&path) {
                Ok(c) => return Ok(c),
                Err(OpenFailure::Busy) => break,
                Err(OpenFailure::Unusable(why)) => {
                    if let Some(why) = why {
                        let then = if attempt == 0 { "starting it again" } else { "using memory" };
                        eprintln!("warning: index cache {} is damaged ({why}); {then}", path.display());
                    }
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        // Busy, or a fresh file failed too: work from memory.
        Self::in_memory()
    }

    /// Opens the file at `path` (redb repairs a file that was not closed
    /// cleanly) and makes sure its tables have this cairn's layout.
    fn open_file(path: &Path) -> std::result::Result<Self, OpenFailure> {
        let opened = guard::catching(|| {
            let db = match create_db(path) {
                Ok(db) => db,
                Err(redb::DatabaseError::DatabaseAlreadyOpen | redb::DatabaseError::LockProtocolMismatch) => {
                    return Err(OpenFailure::Busy)
                }
                Err(e) => return Err(OpenFailure::Unusable(Some(e.to_string()))),
            };
            let c = Self { db, path: Some(path.to_path_buf()), filter: Mutex::new(None), damaged: Arc::default() };
            match c.ensure_tables() {
                Ok(()) => {
                    // The filter only saves lookups: without it the cache
                    // still answers everything.
                    if let Err(e) = c.ensure_filter() {
                        eprintln!("warning: index cache filter beside {}: {e}; going without it", path.display());
                    }
                    Ok(c)
                }
                // Tables of another layout (a cache written by an older cairn).
                Err(e) if !guard::is_damage(&e) => Err(OpenFailure::Unusable(None)),
                Err(e) => Err(OpenFailure::Unusable(Some(e.to_string()))),
            }
        });
        let c = opened.unwrap_or_else(|p| Err(OpenFailure::Unusable(Some(guard::panic_message(p.as_ref())))))?;
        advise_willneed(path);
        Ok(c)
    }

    pub fn in_memory() -> Result<Self> {
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create_with_backend(redb::backends::InMemoryBackend::new())?;
        let c = Self { db, path: None, filter: Mutex::new(None), damaged: Arc::default() };
        c.ensure_tables()?;
        Ok(c)
    }

    /// Runs the cache call `f` ([`guard::guarded`]): a panic in redb is an
    /// error, and a damaged file is removed when the cache is dropped.
    fn guard<T>(&self, what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
        guard::guarded(what, || self.condemn(), f)
    }

    /// Marks the file for removal; says so.
    fn condemn(&self) -> String {
        self.damaged.store(true, Ordering::Relaxed);
        match &self.path {
            Some(p) => {
                format!("{} is removed, and the next command rebuilds it from the repository's index", p.display())
            }
            None => "it was in memory".into(),
        }
    }

    /// The cache file, if on disk.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    fn ensure_tables(&self) -> Result<()> {
        let tx = self.db.begin_write()?;
        tx.open_table(BLOBS)?;
        tx.open_table(PACKS)?;
        tx.open_table(PACK_ORDINALS)?;
        tx.open_table(INDEX_FILES)?;
        tx.open_table(TREES)?;
        tx.open_table(SNAPSHOTS)?;
        tx.open_table(MARKED)?;
        tx.open_table(GONE)?;
        tx.open_table(PACK_BLOBS)?;
        tx.open_table(DISPLACED)?;
        tx.open_table(FILTER_TAG)?;
        tx.commit()?;
        Ok(())
    }

    /// The filter file's path (none in memory).
    fn filter_path(&self) -> Option<PathBuf> {
        self.path.as_deref().map(filter::path_beside)
    }

    /// The filter in use, if any.
    fn current_filter(&self) -> Option<Arc<filter::Filter>> {
        self.filter.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set_filter(&self, f: Option<filter::Filter>) {
        *self.filter.lock().unwrap_or_else(|p| p.into_inner()) = f.map(Arc::new);
    }

    /// Opens the filter beside the file, building it again from the
    /// B-tree when it is not the one the cache's tag names.
    fn ensure_filter(&self) -> Result<()> {
        let Some(path) = self.filter_path() else { return Ok(()) };
        let _ = std::fs::remove_file(path.with_extension("filter.new"));
        let tag = {
            let tx = self.db.begin_read()?;
            let t = tx.open_table(FILTER_TAG)?;
            let tag = t.get("tag")?.map(|v| v.value());
            tag
        };
        if let Some(f) = tag.and_then(|t| filter::Filter::open(&path, &t)) {
            self.set_filter(Some(f));
            return Ok(());
        }
        let tx = self.db.begin_write()?;
        let (f, tmp) = {
            let blobs = tx.open_table(BLOBS)?;
            filter::build(&path, 2 * blobs.len()?, |add| {
                for r in blobs.iter()? {
                    add(&r?.0.value())?;
                }
                Ok(())
            })?
        };
        tx.open_table(FILTER_TAG)?.insert("tag", f.tag())?;
        filter::install(&tmp, &path)?;
        tx.commit()?;
        self.set_filter(Some(f));
        Ok(())
    }

    /// A cached sealed snapshot object.
    pub fn snapshot(&self, id: &[u8; 32]) -> Result<Option<Vec<u8>>> {
        self.guard("reading a cached snapshot", || {
            let tx = self.db.begin_read()?;
            let t = tx.open_table(SNAPSHOTS)?;
            let v = t.get(id)?.map(|v| v.value().to_vec());
            Ok(v)
        })
    }

    /// Caches a sealed snapshot object.
    pub fn put_snapshot(&self, id: &[u8; 32], sealed: &[u8]) -> Result<()> {
        self.guard("caching a snapshot", || {
            let mut tx = self.db.begin_write()?;
            tx.set_durability(Durability::None)?;
            tx.open_table(SNAPSHOTS)?.insert(id, sealed)?;
            tx.commit()?;
            Ok(())
        })
    }

    /// Drops cached snapshots that are no longer in the repository (or that
    /// turned out damaged).
    pub fn retain_snapshots(&self, keep: &HashSet<[u8; 32]>) -> Result<()> {
        self.guard("dropping cached snapshots", || {
            let stale: Vec<[u8; 32]> = {
                let tx = self.db.begin_read()?;
                let t = tx.open_table(SNAPSHOTS)?;
                let mut v = Vec::new();
                for r in t.iter()? {
                    let k = r?.0.value();
                    if !keep.contains(&k) {
                        v.push(k);
                    }
                }
                v
            };
            if stale.is_empty() {
                return Ok(());
            }
            let mut tx = self.db.begin_write()?;
            tx.set_durability(Durability::None)?;
            {
                let mut t = tx.open_table(SNAPSHOTS)?;
                for k in &stale {
                    t.remove(k)?;
                }
            }
            tx.commit()?;
            Ok(())
        })
    }

    /// A cached tree: its raw length, inner offset and sealed unit.
    pub fn tree(&self, id: &[u8; 32]) -> Result<Option<CachedTree>> {
        self.guard("reading a cached tree", || {
            let tx = self.db.begin_read()?;
            let t = tx.open_table(TREES)?;
            let Some(v) = t.get(id)? else { return Ok(None) };
            let v = v.value();
            if v.len() < 8 {
                return Ok(None);
            }
            let u = |i: usize| u32::from_le_bytes(v[i..i + 4].try_into().expect("4 bytes"));
            Ok(Some(CachedTree { raw_length: u(0), inner: inner_from_u32(u(4)), sealed: v[8..].to_vec() }))
        })
    }

    /// Caches sealed tree units: (id, raw length, inner offset, sealed unit).
    pub fn put_trees<'a>(&self, items: impl IntoIterator<Item = ([u8; 32], u32, Option<u32>, &'a [u8])>) -> Result<()> {
        self.guard("caching trees", || {
            let mut tx = self.db.begin_write()?;
            tx.set_durability(Durability::None)?;
            {
                let mut t = tx.open_table(TREES)?;
                let mut buf = Vec::new();
                for (id, raw, inner, sealed) in items {
                    buf.clear();
                    buf.extend_from_slice(&raw.to_le_bytes());
                    buf.extend_from_slice(&inner_to_u32(inner).to_le_bytes());
                    buf.extend_from_slice(sealed);
                    t.insert(id, buf.as_slice())?;
                }
            }
            tx.commit()?;
            Ok(())
        })
    }

    /// Forgets one cached tree (found damaged).
    pub fn forget_tree(&self, id: &[u8; 32]) -> Result<()> {
        self.guard("forgetting a cached tree", || {
            let tx = self.db.begin_write()?;
            tx.open_table(TREES)?.remove(id)?;
            tx.commit()?;
            Ok(())
        })
    }

    /// Index objects already absorbed.
    pub fn known_index_files(&self) -> Result<HashSet<IndexId>> {
        self.guard("listing the index objects it holds", || {
            let tx = self.db.begin_read()?;
            let t = tx.open_table(INDEX_FILES)?;
            let mut out = HashSet::new();
            for r in t.iter()? {
                let (k, _) = r?;
                out.insert(IndexId(k.value()));
            }
            Ok(out)
        })
    }

    /// Gives the file's free pages back (after a rebuild): redb leaves
    /// the pages of replaced B-tree nodes free inside the file.
    pub fn compact(&mut self) -> Result<()> {
        self.db
            .compact(redb::CompactionMode::Balanced)
            .map_err(|e| Error::new(ErrorKind::Io, format!("compacting the index cache: {e}")))?;
        Ok(())
    }

    /// Brings the cache in line with an index rewritten by prune, without
    /// reading it again: the entries of kept packs are unchanged, so only
    /// the absorbed index objects (`old` out, `new` in, with entry counts),
    /// the marked packs (replaced by `marked`) and the entries of `deleted`
    /// packs change. `used` says whether a snapshot uses a blob: when an
    /// entry of a deleted pack is one (its cached copy was a duplicate that
    /// prune dropped), returns `false` and the caller rebuilds.
    pub fn apply_prune(
        &self,
        old: &[IndexId],
        new: &[(IndexId, u64)],
        marked: &[(PackId, [u8; 16])],
        deleted: &HashSet<PackId>,
        mut used: impl FnMut(&BlobId) -> Result<bool>,
    ) -> Result<bool> {
        self.guard("applying a prune", || {
            let tx = self.db.begin_write()?;
            let mut sound = true;
            {
                let mut files = tx.open_table(INDEX_FILES)?;
                for id in old {
                    files.remove(id.0)?;
                }
                for (id, n) in new {
                    files.insert(id.0, n)?;
                }
                tx.delete_table(MARKED)?;
                let mut m = tx.open_table(MARKED)?;
                for (p, run) in marked {
                    m.insert(p.0, run)?;
                }
                if !deleted.is_empty() {
                    let blobs = tx.open_table(BLOBS)?;
                    let ordinals = tx.open_table(PACK_ORDINALS)?;
                    let mut stale: std::collections::HashMap<u32, (PackId, u64)> = std::collections::HashMap::new();
                    for p in deleted {
                        if let Some(o) = ordinals.get(p.0)? {
                            stale.insert(o.value(), (*p, 0));
                        }
                    }
                    for r in blobs.iter()? {
                        let (k, v) = r?;
                        let Some((_, n)) = stale.get_mut(&ordinal_of(&v.value())) else { continue };
                        *n += 1;
                        let blob = unkey(&k.value());
                        // A used blob whose cached copy was in a deleted pack
                        // has another copy, which the cache does not know.
                        if blob.map_or(Ok(true), |b| used(&b))? {
                            sound = false;
                        }
                    }
                    let mut gone = tx.open_table(GONE)?;
                    let mut pack_blobs = tx.open_table(PACK_BLOBS)?;
                    for (o, (p, n)) in stale {
                        gone.insert(p.0, n)?;
                        remove_pack_keys(&mut pack_blobs, o)?;
                    }
                    let total: u64 = gone.iter()?.map(|r| r.map(|(_, v)| v.value()).unwrap_or(0)).sum();
                    // Mostly stale: worth a rebuild.
                    if total > 2 * blobs.len()?.saturating_sub(total) {
                        sound = false;
                    }
                }
            }
            tx.commit()?;
            Ok(sound)
        })
    }

    /// Packs marked for deletion by some absorbed index object.
    pub fn marked_packs(&self) -> Result<HashSet<PackId>> {
        self.pack_ids(MARKED)
    }

    /// The keys of a table keyed by pack id.
    fn pack_ids<V: redb::Value + 'static>(&self, table: TableDefinition<[u8; 32], V>) -> Result<HashSet<PackId>> {
        self.guard("listing packs", || {
            let tx = self.db.begin_read()?;
            let t = tx.open_table(table)?;
            let mut out = HashSet::new();
            for r in t.iter()? {
                out.insert(PackId(r?.0.value()));
            }
            Ok(out)
        })
    }

    /// Forgets the index (blob locations and the index objects absorbed).
    /// Cached trees and snapshots stay: they are checked against their ids
    /// on every use, so an index rebuild cannot make them wrong, and a
    /// verified copy of a snapshot is what `repair snapshots` puts back when
    /// the repository's object is damaged.
    pub fn clear(&self) -> Result<()> {
        self.guard("clearing the index", || {
            let tx = self.db.begin_write()?;
            tx.delete_table(BLOBS)?;
            tx.delete_table(PACKS)?;
            tx.delete_table(PACK_ORDINALS)?;
            tx.delete_table(INDEX_FILES)?;
            tx.delete_table(MARKED)?;
            tx.delete_table(GONE)?;
            tx.delete_table(PACK_BLOBS)?;
            tx.open_table(PACK_BLOBS)?;
            tx.delete_table(DISPLACED)?;
            tx.open_table(DISPLACED)?;
            tx.open_table(GONE)?;
            tx.open_table(BLOBS)?;
            tx.open_table(PACKS)?;
            tx.open_table(PACK_ORDINALS)?;
            tx.open_table(INDEX_FILES)?;
            tx.open_table(MARKED)?;
            // An empty filter: the sync that follows sizes its own.
            let fresh = match self.filter_path() {
                Some(path) => {
                    let (f, tmp) = filter::build(&path, 0, |_| Ok(()))?;
                    tx.open_table(FILTER_TAG)?.insert("tag", f.tag())?;
                    filter::install(&tmp, &path)?;
                    Some(f)
                }
                None => None,
            };
            tx.commit()?;
            if fresh.is_some() {
                self.set_filter(fresh);
            }
            Ok(())
        })
    }

    /// Where one blob is, as [`CacheReader::get`] answers, by point lookups
    /// (a reader loads every pack id first: for many lookups).
    pub fn get(&self, blob: &BlobId) -> Result<Option<Location>> {
        self.guard("looking a blob up", || {
            let tx = self.db.begin_read()?;
            let Some(v) = tx.open_table(BLOBS)?.get(key(blob))?.map(|v| v.value()) else {
                return Ok(None);
            };
            let pack = tx
                .open_table(PACKS)?
                .get(ordinal_of(&v))?
                .map(|p| PackId(p.value()))
                .ok_or_else(|| unknown_ordinal(&v))?;
            if tx.open_table(GONE)?.get(pack.0)?.is_some() {
                return Ok(None);
            }
            Ok(Some(location(&v, pack)))
        })
    }

    /// A snapshot of the cache for many fast lookups.
    pub fn reader(&self) -> Result<CacheReader> {
        self.guard("opening a reader", || {
            let marked = self.marked_packs()?;
            let gone = self.gone_packs()?;
            let tx = self.db.begin_read()?;
            let packs = load_packs(&tx)?;
            Ok(CacheReader {
                packs,
                table: tx.open_table(BLOBS)?,
                pack_blobs: tx.open_table(PACK_BLOBS)?,
                displaced: tx.open_table(DISPLACED)?,
                filter: self.current_filter(),
                marked,
                gone,
                damaged: self.damaged.clone(),
            })
        })
    }

    /// Number of blobs indexed.
    pub fn len(&self) -> Result<u64> {
        self.guard("counting blobs", || {
            let tx = self.db.begin_read()?;
            let stale: u64 = tx.open_table(GONE)?.iter()?.map(|r| r.map(|(_, v)| v.value()).unwrap_or(0)).sum();
            Ok(tx.open_table(BLOBS)?.len()?.saturating_sub(stale))
        })
    }

    fn gone_packs(&self) -> Result<HashSet<PackId>> {
        self.pack_ids(GONE)
    }

    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Every indexed blob, in key order (for check and stats).
    pub fn for_each(&self, mut f: impl FnMut(BlobId, Location) -> Result<()>) -> Result<()> {
        self.guard("listing blobs", || {
            let gone = self.gone_packs()?;
            let tx = self.db.begin_read()?;
            let packs = load_packs(&tx)?;
            let t = tx.open_table(BLOBS)?;
            for r in t.iter()? {
                let (k, v) = r?;
                let blob = unkey(&k.value()).ok_or_else(|| Error::new(ErrorKind::Io, "cache: bad blob kind"))?;
                let loc = decode_loc(&v.value(), &packs)?;
                if !gone.contains(&loc.pack) {
                    f(blob, loc)?;
                }
            }
            Ok(())
        })
    }
}

impl Drop for IndexCache {
    /// Removes a file found damaged: the next command starts a fresh one
    /// (the database itself closes after this, on the unlinked file).
    fn drop(&mut self) {
        if self.damaged.load(Ordering::Relaxed) {
            if let Some(p) = &self.path {
                let _ = std::fs::remove_file(p);
            }
        }
    }
}

pub use guard::panic_is_caught;

/// Asks the kernel to read the cache file ahead, in the background: lookups
/// are random, and one sequential read beats thousands of random ones on a
/// cold page cache.
fn advise_willneed(path: &Path) {
    use std::os::fd::AsRawFd;
    if let Ok(f) = std::fs::File::open(path) {
        // SAFETY: posix_fadvise only takes a valid open descriptor (f lives
        // across the call) and plain integers; it is advisory.
        unsafe {
            libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_WILLNEED);
        }
    }
}

#[cfg(test)]
mod tests;
