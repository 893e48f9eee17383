//! `stats`: how large snapshots are, in restic's three modes.
//!
//! - **restore-size**: the files a restore of each snapshot would write,
//!   counted per snapshot and summed (hard links to one inode count once
//!   per snapshot, as restore writes them once).
//! - **raw-data**: the blobs (data and tree) the snapshots reference, each
//!   once, with their plaintext and stored (sealed) sizes from the index;
//!   with the restore size, the deduplication ratio (restore size / unique
//!   plaintext data) and the compression ratio (plaintext / stored).
//! - **files-by-contents**: files with distinct content (the same chunk
//!   list), each once, and their size.
//!
//! Each distinct tree is read once for all snapshots: its totals are kept
//! in memory by tree id (a few dozen bytes per tree, plus its hard-linked
//! inodes). The distinct chunks (raw-data) and chunk lists
//! (files-by-contents) go into a scratch set on disk, as prune's used
//! blobs do, so they do not grow memory with the repository.

use std::collections::HashMap;
use std::path::Path;
use std::rc::Rc;
use std::str::FromStr;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::format::snapshot::Snapshot;
use crate::format::tree::{Content, NodeKind};
use crate::id::{BlobId, ChunkId, ListId, SnapshotId, TreeId};
use crate::index::scratch::{BlobSet, SetWriter};
use crate::index::{CacheReader, ListItem};
use crate::repo::Repository;

/// What to count.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    #[default]
    RestoreSize,
    RawData,
    FilesByContents,
}

impl FromStr for Mode {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "restore-size" => Ok(Mode::RestoreSize),
            "raw-data" => Ok(Mode::RawData),
            "files-by-contents" | "files" => Ok(Mode::FilesByContents),
            _ => Err(Error::invalid(format!("unknown mode {s:?}: use restore-size, raw-data or files-by-contents"))),
        }
    }
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::RestoreSize => "restore-size",
            Mode::RawData => "raw-data",
            Mode::FilesByContents => "files-by-contents",
        }
    }
}

/// The raw-data mode's figures.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct RawData {
    pub total_blob_count: u64,
    pub data_blob_count: u64,
    pub tree_blob_count: u64,
    /// Plaintext bytes of the distinct blobs (data and tree).
    pub total_uncompressed_size: u64,
    /// Plaintext bytes of the distinct data blobs.
    pub data_uncompressed_size: u64,
    /// What a restore of every snapshot would write (restore-size mode's
    /// `total_size`).
    pub restore_size: u64,
    /// `restore_size / data_uncompressed_size`; `None` without data.
    pub dedup_ratio: Option<f64>,
    /// `total_uncompressed_size / total_size`; `None` without blobs.
    pub compression_ratio: Option<f64>,
    /// Share of the plaintext that compression saved, in percent (negative
    /// when sealing added more than compression saved).
    pub compression_space_saving: Option<f64>,
    /// Referenced blobs the index does not know (not sized; see `check`).
    pub missing_blobs: u64,
}

/// The result (restic's field names where they mean the same).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct StatsReport {
    pub mode: Mode,
    pub snapshots_count: u64,
    /// restore-size and raw-data: files in each snapshot, summed;
    /// files-by-contents: distinct contents.
    pub total_file_count: u64,
    /// restore-size: bytes a restore writes; files-by-contents: size of the
    /// distinct contents; raw-data: stored bytes of the distinct blobs.
    pub total_size: u64,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub raw: Option<RawData>,
    /// Tree blobs read (each distinct tree once).
    pub trees_loaded: u64,
}

/// File totals of a tree and all it holds.
#[derive(Debug, Default)]
struct Totals {
    /// Files with one link, and their bytes.
    files: u64,
    size: u64,
    /// Files with several links: (device, inode, size), sorted, each
    /// inode once, so that links in different directories count once.
    links: Vec<(u64, u64, u64)>,
}

impl Totals {
    /// Adds a subtree's totals.
    fn absorb(&mut self, sub: &Totals) {
        self.files += sub.files;
        self.size += sub.size;
        self.links.extend_from_slice(&sub.links);
    }

    /// Keeps each inode of `links` once.
    fn settle(&mut self) {
        self.links.sort_unstable();
        self.links.dedup_by_key(|l| (l.0, l.1));
    }

    fn count(&self) -> u64 {
        self.files + self.links.len() as u64
    }

    fn bytes(&self) -> u64 {
        self.size + self.links.iter().map(|l| l.2).sum::<u64>()
    }
}

struct Walker<'a, 'w, 't> {
    repo: &'a Repository,
    mode: Mode,
    /// Each distinct tree's totals: the trees already read.
    memo: HashMap<TreeId, Rc<Totals>>,
    /// raw-data: the distinct chunks seen; files-by-contents: the distinct
    /// chunk lists (by [`content_key`]). On disk, so memory does not grow
    /// with the repository.
    seen: &'w mut SetWriter<'t>,
    index: CacheReader,
    /// raw-data: the distinct data blobs, sized as they are first seen.
    raw: RawData,
    stored: u64,
    /// files-by-contents: distinct contents and their bytes.
    contents: u64,
    content_bytes: u64,
}

impl Walker<'_, '_, '_> {
    /// Counts a chunk the first time it is seen.
    fn chunk(&mut self, c: ChunkId) -> Result<()> {
        let b = BlobId::data(c);
        if self.seen.get(&b)? != 0 {
            return Ok(());
        }
        self.seen.set(&b, 1)?;
        match self.index.get(&b)? {
            Some(loc) => {
                self.raw.data_blob_count += 1;
                self.raw.data_uncompressed_size += u64::from(loc.raw_length);
                self.stored += self.unit_bytes(&loc)?;
            }
            None => self.raw.missing_blobs += 1,
        }
        Ok(())
    }

    /// Counts a file's chunk lists (as tree blobs) and their chunks, each
    /// list the first time it is seen (with the chunks below it).
    fn lists(&mut self, level: u8, lists: &[ListId]) -> Result<()> {
        let repo = self.repo;
        repo.walk_lists(level, lists, &mut |item| match item {
            ListItem::List(l, _) => {
                let b = BlobId::list(*l);
                if self.seen.get(&b)? != 0 {
                    return Ok(false);
                }
                self.seen.set(&b, 1)?;
                match self.index.get(&b)? {
                    Some(loc) => {
                        self.raw.tree_blob_count += 1;
                        self.raw.total_uncompressed_size += u64::from(loc.raw_length);
                        self.stored += self.unit_bytes(&loc)?;
                    }
                    None => self.raw.missing_blobs += 1,
                }
                Ok(true)
            }
            ListItem::Chunks(chunks) => {
                for c in chunks {
                    self.chunk(*c)?;
                }
                Ok(true)
            }
        })
    }

    /// The stored bytes a blob at `loc` adds: its unit's the first time a
    /// blob of that unit is counted (the blobs of a group share one sealed
    /// unit, kept as long as any of them is used), else nothing.
    fn unit_bytes(&mut self, loc: &crate::index::Location) -> Result<u64> {
        if loc.inner.is_none() {
            return Ok(u64::from(loc.length));
        }
        // Units go into the set under a key of their own: a tree-kind key,
        // which no chunk has, hashed from the unit's pack and offset.
        let mut h = blake3::Hasher::new();
        h.update(&loc.pack.0);
        h.update(&loc.offset.to_le_bytes());
        let key = BlobId::tree(TreeId(*h.finalize().as_bytes()));
        if self.seen.get(&key)? != 0 {
            return Ok(0);
        }
        self.seen.set(&key, 1)?;
        Ok(u64::from(loc.length))
    }

    fn tree(&mut self, id: TreeId) -> Result<Rc<Totals>> {
        if let Some(t) = self.memo.get(&id) {
            return Ok(t.clone());
        }
        let mut t = Totals::default();
        for n in self.repo.load_tree(&id)? {
            match n.kind {
                NodeKind::File => {
                    if n.nlink > 1 {
                        t.links.push((n.device, n.inode, n.size));
                    } else {
                        t.files += 1;
                        t.size += n.size;
                    }
                    match self.mode {
                        Mode::RawData => match &n.content {
                            Content::Listed { level, lists } => self.lists(*level, lists)?,
                            c => {
                                for c in self.repo.file_chunks(c)?.iter() {
                                    self.chunk(*c)?;
                                }
                            }
                        },
                        Mode::FilesByContents => {
                            let key = BlobId::data(ChunkId(content_key(&self.repo.file_chunks(&n.content)?)));
                            if self.seen.get(&key)? == 0 {
                                self.seen.set(&key, 1)?;
                                self.contents += 1;
                                self.content_bytes += n.size;
                            }
                        }
                        Mode::RestoreSize => {}
                    }
                }
                NodeKind::Dir => {
                    if let Some(sub) = n.subtree() {
                        let s = self.tree(sub)?;
                        t.absorb(&s);
                    }
                }
                _ => {}
            }
        }
        t.settle();
        let t = Rc::new(t);
        self.memo.insert(id, t.clone());
        Ok(t)
    }
}

/// A file's identity by content: the hash of its chunk list.
pub fn content_key(chunks: &[ChunkId]) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    for c in chunks {
        h.update(&c.0);
    }
    *h.finalize().as_bytes()
}

/// Counts `snapshots` in `mode`. The distinct chunks (or contents) are
/// kept in a scratch set under `scratch_dir` (the system's temp dir if
/// `None`), as prune keeps its used blobs.
pub fn stats(
    repo: &Repository,
    snapshots: &[(SnapshotId, Snapshot)],
    mode: Mode,
    scratch_dir: Option<&Path>,
) -> Result<StatsReport> {
    let mut set = BlobSet::new(scratch_dir)?;
    let index = repo.cache.reader()?;
    let (w, files, bytes) = set.with_writer(|seen| {
        let mut w = Walker {
            repo,
            mode,
            memo: HashMap::new(),
            seen,
            index,
            raw: RawData::default(),
            stored: 0,
            contents: 0,
            content_bytes: 0,
        };
        let (mut files, mut bytes) = (0u64, 0u64);
        for (_, s) in snapshots {
            let t = w.tree(s.tree)?;
            files += t.count();
            bytes += t.bytes();
        }
        Ok((Finished::from(w), files, bytes))
    })?;
    let mut r = StatsReport {
        mode,
        snapshots_count: snapshots.len() as u64,
        total_file_count: files,
        total_size: bytes,
        raw: None,
        trees_loaded: w.trees.len() as u64,
    };
    match mode {
        Mode::RestoreSize => {}
        Mode::FilesByContents => {
            r.total_file_count = w.contents;
            r.total_size = w.content_bytes;
        }
        Mode::RawData => {
            let reader = repo.cache.reader()?;
            let (mut raw, mut stored) = (w.raw, w.stored);
            raw.restore_size = bytes;
            // (Chunk lists are already in it, and in the tree blobs.)
            raw.total_uncompressed_size += raw.data_uncompressed_size;
            let mut tree_units = std::collections::HashSet::new();
            for t in &w.trees {
                match reader.get(&BlobId::tree(*t))? {
                    Some(loc) => {
                        raw.tree_blob_count += 1;
                        raw.total_uncompressed_size += u64::from(loc.raw_length);
                        // Trees grouped by another writer: each unit once.
                        if loc.inner.is_none() || tree_units.insert((loc.pack, loc.offset)) {
                            stored += u64::from(loc.length);
                        }
                    }
                    None => raw.missing_blobs += 1,
                }
            }
            raw.total_blob_count = raw.data_blob_count + raw.tree_blob_count;
            raw.dedup_ratio = ratio(bytes, raw.data_uncompressed_size);
            raw.compression_ratio = ratio(raw.total_uncompressed_size, stored);
            raw.compression_space_saving = (raw.total_uncompressed_size > 0)
                .then(|| (1.0 - stored as f64 / raw.total_uncompressed_size as f64) * 100.0);
            r.total_size = stored;
            r.raw = Some(raw);
        }
    }
    Ok(r)
}

/// What the walk leaves, once its borrow of the scratch set ends.
struct Finished {
    trees: Vec<TreeId>,
    raw: RawData,
    stored: u64,
    contents: u64,
    content_bytes: u64,
}

impl From<Walker<'_, '_, '_>> for Finished {
    fn from(w: Walker<'_, '_, '_>) -> Self {
        Self {
            trees: w.memo.into_keys().collect(),
            raw: w.raw,
            stored: w.stored,
            contents: w.contents,
            content_bytes: w.content_bytes,
        }
    }
}

fn ratio(a: u64, b: u64) -> Option<f64> {
    (b > 0).then(|| a as f64 / b as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_with_aliases() {
        assert_eq!("restore-size".parse::<Mode>().unwrap(), Mode::RestoreSize);
        assert_eq!("raw-data".parse::<Mode>().unwrap(), Mode::RawData);
        assert_eq!("files".parse::<Mode>().unwrap(), Mode::FilesByContents);
        assert_eq!("files-by-contents".parse::<Mode>().unwrap(), Mode::FilesByContents);
        let e = "blobs".parse::<Mode>().unwrap_err();
        assert!(e.to_string().contains("restore-size"), "{e}");
        assert_eq!(serde_json::to_value(Mode::RawData).unwrap(), "raw-data");
    }

    #[test]
    fn hard_links_count_once_across_directories() {
        let mut a = Totals { files: 2, size: 10, links: vec![(1, 5, 100), (1, 6, 7)] };
        let b = Totals { files: 1, size: 1, links: vec![(1, 5, 100), (2, 5, 3)] };
        a.absorb(&b);
        a.settle();
        assert_eq!(a.count(), 3 + 3);
        assert_eq!(a.bytes(), 11 + 100 + 7 + 3);
    }

    #[test]
    fn content_keys_follow_the_chunk_list() {
        let (x, y) = (ChunkId([1; 32]), ChunkId([2; 32]));
        assert_eq!(content_key(&[x, y]), content_key(&[x, y]));
        assert_ne!(content_key(&[x, y]), content_key(&[y, x]));
        assert_ne!(content_key(&[x]), content_key(&[]));
    }

    #[test]
    fn ratios_need_a_denominator() {
        assert_eq!(ratio(10, 5), Some(2.0));
        assert_eq!(ratio(10, 0), None);
    }
}
