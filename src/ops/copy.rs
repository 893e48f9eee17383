//! `copy`: snapshots from another repository into this one (offsite sync).
//!
//! First a [`CopyPlan`]: which source snapshots match, and which of them the
//! destination already holds (a copied snapshot records its `original` id,
//! so a second run copies nothing). Then [`run`]:
//!
//! - **Same chunk ids** (the destination was made with
//!   `init --copy-chunker-params`, so it shares the chunk-id key and the
//!   chunker parameters): the source's trees are walked, and only the blobs
//!   the destination lacks are read (grouped by source pack, in ranged
//!   reads), verified, re-sealed with the destination's key and packed.
//! - **Different parameters**: every file is read back from the source and
//!   re-chunked with the destination's chunker; trees are rebuilt with the
//!   destination's ids. Unchanged subtrees are re-done once per run.
//!
//! Write order: packs, then index objects, then a read-back of every pack
//! written (each blob authenticated and re-hashed, and the index checked),
//! and only then the snapshots. An interrupted copy leaves stored, indexed
//! packs behind; the next run finds those blobs in the index and does not
//! send them again.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Read;

use crate::chunker::Chunker;
use crate::error::{Error, Result, ResultExt};
use crate::format::config::DataKind;
use crate::format::snapshot::Snapshot;
use crate::format::tree::{self, Content, Node};
use crate::id::{BlobId, BlobKind, ChunkId, PackId, SnapshotId, TreeId};
use crate::index::{ListItem, Location};
use crate::ops::snapshots::SnapshotFilter;
use crate::pack;
use crate::repo::Repository;
use crate::saver::Saver;

/// How blobs move between the two repositories.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CopyMode {
    /// Same chunk-id key and chunker: blobs keep their ids.
    SameIds,
    /// Different parameters: files are re-chunked, trees rebuilt.
    Rechunk,
}

/// One source snapshot and what happens to it.
#[derive(Clone, Debug)]
pub struct CopyItem {
    pub source_id: SnapshotId,
    pub snapshot: Snapshot,
    /// The destination snapshot that already is this one, if any.
    pub existing: Option<SnapshotId>,
}

/// What `copy` will do (printed by `--dry-run`).
#[derive(Clone, Debug)]
pub struct CopyPlan {
    pub mode: CopyMode,
    pub items: Vec<CopyItem>,
    /// Destination snapshots by the id of their original.
    pub dest_by_origin: HashMap<SnapshotId, SnapshotId>,
}

impl CopyPlan {
    pub fn to_copy(&self) -> impl Iterator<Item = &CopyItem> {
        self.items.iter().filter(|i| i.existing.is_none())
    }
}

/// What `copy` did.
#[derive(Debug, Default)]
pub struct CopyReport {
    /// (source id, new destination id) of each copied snapshot.
    pub copied: Vec<(SnapshotId, SnapshotId)>,
    pub skipped: usize,
    pub data_blobs: u64,
    pub tree_blobs: u64,
    /// Plaintext bytes of the blobs sent.
    pub raw_sent: u64,
    pub packs: u64,
    /// Packs read back and verified before the snapshots were written.
    pub packs_verified: u64,
}

/// The id of a snapshot in the repository where it was first made.
fn origin(id: &SnapshotId, s: &Snapshot) -> SnapshotId {
    s.original.unwrap_or(*id)
}

/// Whether blobs can keep their ids from `src` to `dst`: the same chunk-id
/// key and chunkers, and a destination that can hold what the source's
/// trees name (a source of format 3 may have chunk lists, which a
/// destination of an earlier format cannot: its trees are rebuilt).
pub fn mode(src: &Repository, dst: &Repository) -> CopyMode {
    let same = |k| src.config.chunker_for(k) == dst.config.chunker_for(k);
    let lists_fit = dst.config.has_lists() || !src.config.has_lists();
    if src.key.id == dst.key.id && same(DataKind::Files) && same(DataKind::Dump) && lists_fit {
        CopyMode::SameIds
    } else {
        CopyMode::Rechunk
    }
}

/// Picks the source snapshots: those named in `ids` (ids, prefixes or
/// `latest`), else all that match `filter`; marks those already copied.
pub fn plan(src: &Repository, dst: &Repository, filter: &SnapshotFilter, ids: &[String]) -> Result<CopyPlan> {
    let mut chosen: Vec<(SnapshotId, Snapshot)> = if ids.is_empty() {
        src.snapshots()?.into_iter().filter(|(_, s)| filter.matches(s)).collect()
    } else {
        let mut v = Vec::new();
        for spec in ids {
            let found = src.find_snapshot(spec).context("source")?;
            if !v.iter().any(|(id, _)| *id == found.0) {
                v.push(found);
            }
        }
        v
    };
    chosen.sort_by(|a, b| a.1.time.cmp(&b.1.time).then(a.0.cmp(&b.0)));
    let have: HashMap<SnapshotId, SnapshotId> =
        dst.snapshots()?.into_iter().map(|(id, s)| (origin(&id, &s), id)).collect();
    let items = chosen
        .into_iter()
        .map(|(id, s)| {
            let existing = have.get(&origin(&id, &s)).copied();
            CopyItem { source_id: id, snapshot: s, existing }
        })
        .collect();
    Ok(CopyPlan { mode: mode(src, dst), items, dest_by_origin: have })
}

/// Read source blobs in batches of about this many sealed bytes.
const FETCH_BATCH: u64 = 32 << 20;

/// Copies the plan's snapshots from `src` into `dst`.
pub fn run(src: &Repository, dst: &Repository, plan: &CopyPlan) -> Result<CopyReport> {
    let mut report = CopyReport { skipped: plan.items.len() - plan.to_copy().count(), ..Default::default() };
    let todo: Vec<&CopyItem> = plan.to_copy().collect();
    if todo.is_empty() {
        return Ok(report);
    }
    // What the destination's index holds now (read after its lock).
    let recheck = crate::ops::backup::recheck::Recheck::start(dst)?;
    // Stage 1: blobs (packs and index objects).
    let (roots, stored) = std::thread::scope(|scope| -> Result<_> {
        let mut saver = Saver::start(scope, dst)?;
        let mut roots = Vec::with_capacity(todo.len());
        let res = (|| match plan.mode {
            CopyMode::SameIds => {
                let mut c = SameIdCopier {
                    src,
                    saver: &mut saver,
                    batch: BTreeMap::new(),
                    pending: HashSet::new(),
                    batch_bytes: 0,
                };
                let mut seen = HashSet::new();
                for item in &todo {
                    c.copy_tree(item.snapshot.tree, &mut seen)?;
                    roots.push(item.snapshot.tree);
                }
                c.flush()
            }
            CopyMode::Rechunk => {
                let mut c = Rechunker {
                    src,
                    dst,
                    saver: &mut saver,
                    files: Chunker::new(&dst.config.chunker_for(DataKind::Files))?,
                    dumps: Chunker::new(&dst.config.chunker_for(DataKind::Dump))?,
                    dump: false,
                    done: HashMap::new(),
                };
                for item in &todo {
                    // A dump is cut again as the destination cuts dumps.
                    let s = &item.snapshot;
                    c.dump = s.is_stream() || s.pg.is_some();
                    roots.push(c.copy_tree(item.snapshot.tree)?);
                }
                Ok(())
            }
        })();
        let stats = saver.stats;
        let stored = saver.finish();
        res?;
        report.data_blobs = stats.data_blobs;
        report.tree_blobs = stats.tree_blobs;
        report.raw_sent = stats.raw_added;
        Ok((roots, stored?))
    })?;
    report.packs = stored.packs;
    // Stage 2: read back what was written.
    report.packs_verified = verify_packs(dst, &stored.pack_ids)?;
    // The second line of rule 11: blobs reused from packs a prune marked
    // meanwhile are stored again.
    recheck.finish(dst, &roots, &stored.pack_ids)?;
    crate::steps::reached("copy:verified");
    // Stage 3: the snapshots, each naming its original.
    // A parent maps to its copy: made in this run, or already there
    // (found by its original id); else it is dropped.
    let mut new_ids: HashMap<SnapshotId, SnapshotId> =
        plan.items.iter().filter_map(|i| i.existing.map(|d| (i.source_id, d))).collect();
    for (item, root) in todo.iter().zip(roots) {
        let mut s = item.snapshot.clone();
        s.original = Some(origin(&item.source_id, &item.snapshot));
        s.tree = root;
        s.parent = s.parent.and_then(|p| new_ids.get(&p).or_else(|| plan.dest_by_origin.get(&p)).copied());
        let mut committed = crate::interrupt::committing();
        let id = dst.save_snapshot(&s)?;
        *committed = Some(format!("snapshot {} was copied as {}", item.source_id.short(), id.short()));
        drop(committed);
        crate::steps::reached("copy:snapshot-written");
        new_ids.insert(item.source_id, id);
        report.copied.push((item.source_id, id));
    }
    Ok(report)
}

/// Same ids: walks source trees, sends the blobs the destination lacks.
struct SameIdCopier<'a, 'scope> {
    src: &'a Repository,
    saver: &'a mut Saver<'scope>,
    /// Data blobs to fetch, by source pack.
    batch: BTreeMap<PackId, Vec<(BlobId, Location)>>,
    pending: HashSet<BlobId>,
    batch_bytes: u64,
}

impl SameIdCopier<'_, '_> {
    fn copy_tree(&mut self, root: TreeId, seen: &mut HashSet<TreeId>) -> Result<()> {
        let mut stack = vec![root];
        while let Some(t) = stack.pop() {
            if !seen.insert(t) {
                continue;
            }
            // Every subtree is walked even when the destination has the
            // tree: an interrupted copy may have stored a tree before all
            // of its chunks were indexed.
            let plain = self.src.read_tree_blob(&t).context("source")?;
            let nodes = tree::decode(&plain).context(format!("source tree {t}"))?;
            for n in &nodes {
                match &n.content {
                    Content::Dir(sub) => stack.push(*sub),
                    Content::File(chunks) => {
                        for c in chunks {
                            self.want(BlobId::data(*c))?;
                        }
                    }
                    Content::Listed { level, lists } => {
                        // Lists are sent like trees, each walked whole
                        // for the same reason as subtrees.
                        let src = self.src;
                        src.walk_lists(*level, lists, &mut |item| {
                            match item {
                                ListItem::List(l, _) => {
                                    let plain = src.read_tree_blob(&TreeId(l.0)).context("source")?;
                                    self.saver.save(BlobKind::Tree, l.0, plain)?;
                                }
                                ListItem::Chunks(c) => {
                                    for c in c {
                                        self.want(BlobId::data(*c))?;
                                    }
                                }
                            }
                            Ok(true)
                        })
                        .context(format!("source file {}", n.name_lossy()))?;
                    }
                    _ => {}
                }
            }
            self.saver.save(BlobKind::Tree, t.0, plain)?;
        }
        Ok(())
    }

    fn want(&mut self, blob: BlobId) -> Result<()> {
        if self.pending.contains(&blob) || self.saver.has(&blob)? {
            return Ok(());
        }
        let loc = self
            .src
            .locate(&blob)?
            .ok_or_else(|| Error::corrupt(format!("source: chunk {} is not in the index", hex::encode(blob.id))))?;
        self.pending.insert(blob);
        self.batch.entry(loc.pack).or_default().push((blob, loc));
        // A grouped blob shares its unit's bytes: count its own share.
        self.batch_bytes += if loc.inner.is_some() { loc.raw_length as u64 } else { loc.length as u64 };
        if self.batch_bytes >= FETCH_BATCH {
            self.flush()?;
        }
        Ok(())
    }

    /// Fetches the batch: one ranged request per source pack.
    fn flush(&mut self) -> Result<()> {
        for (pack_id, mut blobs) in std::mem::take(&mut self.batch) {
            blobs.sort_by_key(|(_, l)| (l.offset, l.inner));
            // One range per unit: the blobs of a group share theirs.
            let mut ranges: Vec<std::ops::Range<u64>> = blobs.iter().map(|(_, l)| l.range()).collect();
            ranges.dedup();
            let bytes = self.src.backend.get_ranges(&pack::object_name(&pack_id), &ranges).context("source")?;
            let mut units = ranges.iter().zip(bytes).peekable();
            let mut open: Option<(crate::format::pack::UnitKey, Vec<u8>)> = None;
            for (blob, loc) in &blobs {
                let entry = loc.entry(blob);
                let what = |e: crate::error::Error| {
                    e.context(format!("source: chunk {} in pack {pack_id}", hex::encode(blob.id)))
                };
                if open.as_ref().is_none_or(|(at, _)| *at != entry.unit_key()) {
                    while units.peek().is_some_and(|(r, _)| r.start < loc.offset as u64) {
                        units.next();
                    }
                    let (_, sealed) = units.next().ok_or_else(|| Error::corrupt("copy: a unit went missing"))?;
                    open = Some((entry.unit_key(), pack::open_unit(&self.src.key, &entry, &sealed).map_err(what)?));
                }
                let (_, unit) = open.as_ref().expect("just opened");
                let plain = pack::blob_in_unit(&self.src.key, &entry, unit).map_err(what)?;
                self.saver.save(blob.kind, blob.id, plain.to_vec())?;
            }
        }
        self.batch_bytes = 0;
        self.pending.clear();
        Ok(())
    }
}

/// Different parameters: re-chunks file contents, rebuilds trees.
struct Rechunker<'a, 'scope> {
    src: &'a Repository,
    dst: &'a Repository,
    saver: &'a mut Saver<'scope>,
    /// The destination's chunkers for files and for dumps, and which one
    /// the snapshot being copied takes.
    files: Chunker,
    dumps: Chunker,
    dump: bool,
    /// Source tree -> destination tree, for subtrees shared by snapshots
    /// (keyed by the chunker too: a tree copied as files is cut otherwise
    /// as a dump).
    done: HashMap<(TreeId, bool), TreeId>,
}

impl Rechunker<'_, '_> {
    fn copy_tree(&mut self, t: TreeId) -> Result<TreeId> {
        if let Some(d) = self.done.get(&(t, self.dump)) {
            return Ok(*d);
        }
        let mut nodes: Vec<Node> = self.src.load_tree(&t).context("source")?;
        for n in &mut nodes {
            match &n.content {
                Content::Dir(sub) => n.content = Content::Dir(self.copy_tree(*sub)?),
                Content::File(_) | Content::Listed { .. } => {
                    let chunks = self.src.file_chunks(&n.content).context("source")?.into_owned();
                    let copied = self.copy_file(&chunks, &n.name_lossy())?;
                    n.content = self.saver.file_content(copied)?;
                }
                _ => {}
            }
        }
        let enc = tree::encode(&nodes)?;
        let id = TreeId(self.dst.key.blob_id(&enc));
        self.saver.save(BlobKind::Tree, id.0, enc)?;
        self.done.insert((t, self.dump), id);
        Ok(id)
    }

    fn copy_file(&mut self, chunks: &[ChunkId], name: &str) -> Result<Vec<ChunkId>> {
        let reader = BlobReader { src: self.src, chunks, next: 0, buf: Vec::new(), at: 0, error: None };
        let chunker = if self.dump { &self.dumps } else { &self.files };
        let mut stream = chunker.stream(reader);
        let mut out = Vec::new();
        loop {
            let c = match stream.next_chunk() {
                Ok(Some(c)) => c,
                Ok(None) => break,
                Err(e) => {
                    let (r, _) = stream.into_parts();
                    return Err(r.error.unwrap_or_else(|| Error::io(format!("source file {name}"), e)));
                }
            };
            let id = self.dst.key.blob_id(&c);
            self.saver.save(BlobKind::Data, id, c)?;
            out.push(ChunkId(id));
        }
        Ok(out)
    }
}

/// A file's content read chunk by chunk from the source, verified.
struct BlobReader<'a> {
    src: &'a Repository,
    chunks: &'a [ChunkId],
    next: usize,
    buf: Vec<u8>,
    at: usize,
    /// The real error behind an I/O error handed to the chunker.
    error: Option<Error>,
}

impl Read for BlobReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.at == self.buf.len() {
            let Some(c) = self.chunks.get(self.next) else { return Ok(0) };
            self.next += 1;
            match self.src.read_blob(&BlobId::data(*c)) {
                Ok(b) => {
                    self.buf = b;
                    self.at = 0;
                }
                Err(e) => {
                    let msg = format!("source: {e}");
                    self.error = Some(e.context("source"));
                    return Err(std::io::Error::other(msg));
                }
            }
        }
        let n = out.len().min(self.buf.len() - self.at);
        out[..n].copy_from_slice(&self.buf[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// Reads back every pack written: its name matches its content, its header
/// opens, every blob authenticates and hashes to its id, and the index
/// agrees with the header. Two packs are checked at a time.
pub fn verify_packs(dst: &Repository, packs: &[PackId]) -> Result<u64> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let check = || -> Result<u64> {
        let mut n = 0;
        loop {
            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let Some(id) = packs.get(i) else { return Ok(n) };
            verify_pack(dst, id)?;
            n += 1;
        }
    };
    let results: Vec<Result<u64>> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..2).map(|_| s.spawn(check)).collect();
        hs.into_iter().map(|h| h.join().unwrap_or_else(|_| Err(Error::corrupt("pack verification panicked")))).collect()
    });
    results.into_iter().sum()
}

fn verify_pack(dst: &Repository, id: &PackId) -> Result<()> {
    let fail = |what: String| Error::corrupt(format!("verifying the copy: pack {id} {what}"));
    let bytes = dst.backend.get(&pack::object_name(id))?;
    if crate::repo::content_id(&bytes) != id.0 {
        return Err(fail("does not match its name after upload".into()));
    }
    let entries = pack::header_from_bytes(&dst.key.enc, id, &bytes).map_err(|e| fail(e.to_string()))?;
    pack::each_blob_in_pack_bytes(&dst.key, &bytes, &entries, |e, plain| {
        plain.map(drop).map_err(|err| fail(format!("blob {}: {err}", hex::encode(e.id))))
    })?;
    for e in &entries {
        let want = Location::of(*id, e);
        // The index must name the blob: here, or in another pack that
        // already held it (a concurrent backup may have stored it too).
        match dst.locate(&BlobId { kind: e.kind, id: e.id })? {
            Some(l) if l == want || l.pack != *id => {}
            _ => return Err(fail(format!("blob {}: the index does not agree with the pack", hex::encode(e.id)))),
        }
    }
    Ok(())
}
