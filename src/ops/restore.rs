//! `restore`: build a plan from the snapshot's trees, then execute it.
//!
//! The plan lists every directory, file and special entry to create and,
//! grouped by pack, every blob to read with the file offsets it fills. The
//! executor reads each pack's blobs in a few ranged gets, verifies every blob
//! against its id, and writes it where the plan says. A file that any
//! damaged blob touches is removed and reported: wrong bytes are never left
//! in place as if they were good.
//!
//! A file named by chunk lists (format 3: more chunks than a node holds,
//! such as a large dump) is not split into pack reads: after the batch's
//! packs, it is written in order by walking its lists with every worker
//! ([`crate::ops::dump::write_file`]), so the plan's memory does not grow
//! with the size of a file.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

use crate::error::{Error, ErrorKind, Result};
use crate::format::pack::PackEntry;
use crate::format::tree::{Content, Node, NodeKind};
use crate::id::{BlobId, PackId, TreeId};
use crate::index::Location;
use crate::pack;
use crate::repo::Repository;
use crate::target::dirs::SafeDirs;
use crate::target::{self, MetaOptions};

/// Which paths to restore. Patterns match the snapshot path (`/srv/db/x`)
/// as in `--exclude`: without `/`, the file name; with `/`, the whole path.
#[derive(Default)]
pub struct Filter {
    include: Option<(GlobSet, GlobSet)>,
    exclude: Option<(GlobSet, GlobSet)>,
}

fn build(patterns: &[String]) -> Result<Option<(GlobSet, GlobSet)>> {
    if patterns.is_empty() {
        return Ok(None);
    }
    let (mut names, mut paths) = (GlobSetBuilder::new(), GlobSetBuilder::new());
    for p in patterns {
        let g = GlobBuilder::new(p.trim_end_matches('/'))
            .literal_separator(true)
            .build()
            .map_err(|e| Error::invalid(format!("bad pattern {p:?}: {e}")))?;
        if p.contains('/') {
            paths.add(g);
        } else {
            names.add(g);
        }
    }
    let b = |s: GlobSetBuilder| s.build().map_err(|e| Error::invalid(e.to_string()));
    Ok(Some((b(names)?, b(paths)?)))
}

fn matches(set: &(GlobSet, GlobSet), path: &Path) -> bool {
    path.file_name().is_some_and(|n| set.0.is_match(n)) || set.1.is_match(path)
}

impl Filter {
    pub fn new(include: &[String], exclude: &[String]) -> Result<Self> {
        Ok(Self { include: build(include)?, exclude: build(exclude)? })
    }

    /// Whether a file directly under the restored directory, at snapshot
    /// path `path`, is restored: not excluded, and included.
    pub fn selects(&self, path: &Path) -> bool {
        !self.excluded(path) && self.included(path)
    }

    fn excluded(&self, path: &Path) -> bool {
        self.exclude.as_ref().is_some_and(|s| matches(s, path))
    }

    /// Whether a path is included by itself (an included directory includes
    /// all it holds).
    fn included(&self, path: &Path) -> bool {
        self.include.as_ref().is_none_or(|s| matches(s, path))
    }
}

/// One file to write.
#[derive(Debug)]
pub struct FilePlan {
    pub path: PathBuf,
    pub node: Node,
    /// An earlier file (possibly of an earlier batch) this one is a hard
    /// link of.
    pub link_to: Option<PathBuf>,
    /// Written in order by walking its chunk lists (a file of format 3 with
    /// more chunks than a node holds), not through the pack reads: its
    /// chunks are never all in the plan, so a restore of a 100 GB dump
    /// holds no more than a small file's. `node` keeps its lists.
    pub streamed: bool,
}

/// One blob to read, and where its bytes go.
#[derive(Debug)]
pub struct BlobRead {
    pub entry: PackEntry,
    /// (file index, offset in the file).
    pub targets: Vec<(usize, u64)>,
}

/// Everything a restore will do, before it does anything.
#[derive(Debug, Default)]
pub struct RestorePlan {
    /// Directories, parents before children.
    pub dirs: Vec<(PathBuf, Node)>,
    pub files: Vec<FilePlan>,
    /// Symlinks, fifos, devices, sockets.
    pub specials: Vec<(PathBuf, Node)>,
    /// Blobs to read, grouped by pack.
    pub packs: BTreeMap<PackId, Vec<BlobRead>>,
    pub total_bytes: u64,
    /// The directory restored into.
    pub target: PathBuf,
}

/// What execution carries from one batch to the next.
struct WriteState {
    /// Directories made safe (never symlinks) under the target.
    dirs: SafeDirs,
    /// Files whose data failed, so hard links to them are not made.
    failed: std::collections::HashSet<PathBuf>,
}

impl WriteState {
    fn new(target: &Path) -> Self {
        Self { dirs: SafeDirs::new(target), failed: Default::default() }
    }
}

impl RestorePlan {
    /// Builds the plan for `tree` (the directory at `sub` in the snapshot)
    /// into `target`.
    pub fn build(repo: &Repository, root: TreeId, sub: &Path, target: &Path, filter: &Filter) -> Result<Self> {
        let mut b = Builder::new(repo, filter, None, target)?;
        b.walk(root, sub, target)?;
        Ok(b.plan)
    }

    pub fn blob_count(&self) -> usize {
        self.packs.values().map(Vec::len).sum()
    }
}

/// Files per batch when restoring: bounds the plan's memory whatever the
/// snapshot's size. Files of a batch are near each other in the tree, as
/// their blobs are in the packs, so batching costs few extra requests.
pub const BATCH_FILES: usize = 16_384;
/// On an object store, where a pack split across two batches costs a
/// request more, batches are larger (memory stays bounded all the same).
pub const BATCH_FILES_REMOTE: usize = 131_072;

/// Restores `sub` of the snapshot tree `root` into `target`, planning and
/// executing in batches of [`BATCH_FILES`] files.
pub fn run(
    repo: &Repository,
    root: TreeId,
    sub: &Path,
    target: &Path,
    filter: &Filter,
    opts: &MetaOptions,
) -> Result<RestoreReport> {
    let batch = Batch { opts, report: RestoreReport::default(), state: WriteState::new(target) };
    // The bar counts the bytes of the files written; each batch adds its own.
    repo.progress.start(0);
    let mut b = Builder::new(repo, filter, Some(batch), target)?;
    b.walk(root, sub, target)?;
    b.flush()?;
    let mut batch = b.batch.take().ok_or_else(|| Error::invalid("restore batch state lost"))?;
    finish(&b.plan, opts, &mut batch.report, &mut batch.state)?;
    Ok(batch.report)
}

struct Batch<'o> {
    opts: &'o MetaOptions,
    report: RestoreReport,
    state: WriteState,
}

impl<'a> Builder<'a> {
    fn new(repo: &'a Repository, filter: &'a Filter, batch: Option<Batch<'a>>, target: &Path) -> Result<Self> {
        Ok(Builder {
            repo,
            plan: RestorePlan { target: target.to_path_buf(), ..Default::default() },
            filter,
            links: HashMap::new(),
            reader: repo.cache.reader()?,
            batch,
        })
    }

    /// Executes the files planned so far and forgets them.
    fn flush(&mut self) -> Result<()> {
        if let Some(b) = &mut self.batch {
            crate::steps::reached("restore:planned");
            execute_files(self.repo, &self.plan, b.opts, &mut b.report, &mut b.state)?;
            self.plan.files.clear();
            self.plan.packs.clear();
        }
        Ok(())
    }

    fn walk(&mut self, root: TreeId, sub: &Path, target: &Path) -> Result<()> {
        match resolve(self.repo, root, sub)? {
            (Some(node), _) if node.kind != NodeKind::Dir => {
                let dest = target.join(OsStr::from_bytes(&node.name));
                if node.kind == NodeKind::File {
                    self.file(dest, node)?;
                } else {
                    self.plan.specials.push((dest, node));
                }
            }
            (_, tree) => {
                self.dir(tree, sub, target, false)?;
            }
        }
        Ok(())
    }
}

struct Builder<'a> {
    repo: &'a Repository,
    batch: Option<Batch<'a>>,
    plan: RestorePlan,
    filter: &'a Filter,
    links: HashMap<(u64, u64), PathBuf>,
    reader: crate::index::CacheReader,
}

impl Builder<'_> {
    /// Adds the entries of one directory. `inside` is true when an ancestor
    /// matched `--include` already.
    fn dir(&mut self, tree: TreeId, snap_path: &Path, dest: &Path, inside: bool) -> Result<bool> {
        let nodes = self.repo.load_tree(&tree)?;
        let mut any = false;
        for node in nodes {
            let name = OsStr::from_bytes(&node.name);
            let sp = snap_path.join(name);
            let dp = dest.join(name);
            if self.filter.excluded(&sp) {
                continue;
            }
            let inc = inside || self.filter.included(&sp);
            match node.kind {
                NodeKind::Dir => {
                    let sub = node.subtree().ok_or_else(|| Error::corrupt("directory without a tree"))?;
                    let at = self.plan.dirs.len();
                    self.plan.dirs.push((dp.clone(), node));
                    if self.dir(sub, &sp, &dp, inc)? || inc {
                        any = true;
                    } else {
                        self.plan.dirs.truncate(at);
                    }
                }
                _ if !inc => {}
                NodeKind::File => {
                    self.file(dp, node)?;
                    any = true;
                }
                _ => {
                    self.plan.specials.push((dp, node));
                    any = true;
                }
            }
        }
        Ok(any)
    }

    fn file(&mut self, path: PathBuf, mut node: Node) -> Result<()> {
        let limit = if self.repo.backend.is_local() { BATCH_FILES } else { BATCH_FILES_REMOTE };
        if self.batch.is_some() && self.plan.files.len() >= limit {
            self.flush()?;
        }
        let idx = self.plan.files.len();
        if node.nlink > 1 && node.inode != 0 {
            if let Some(first) = self.links.get(&(node.device, node.inode)) {
                let link_to = Some(first.clone());
                self.plan.files.push(FilePlan { path, node: strip(node), link_to, streamed: false });
                return Ok(());
            }
            self.links.insert((node.device, node.inode), path.clone());
        }
        if matches!(node.content, Content::Listed { .. }) {
            self.plan.total_bytes += node.size;
            node.name = Vec::new();
            self.plan.files.push(FilePlan { path, node, link_to: None, streamed: true });
            return Ok(());
        }
        let mut offset = 0u64;
        for c in self.repo.file_chunks(&node.content)?.iter() {
            let blob = BlobId::data(*c);
            let loc: Location = self
                .reader
                .get(&blob)?
                .ok_or_else(|| Error::corrupt(format!("{}: chunk {c} is not in the index", path.display())))?;
            let reads = self.plan.packs.entry(loc.pack).or_default();
            // The same chunk twice in one pack list: add a target to it.
            match reads.iter_mut().rev().take(8).find(|r| r.entry.id == c.0) {
                Some(r) => r.targets.push((idx, offset)),
                None => reads.push(BlobRead { entry: loc.entry(&blob), targets: vec![(idx, offset)] }),
            }
            offset += loc.raw_length as u64;
        }
        if offset != node.size {
            return Err(Error::corrupt(format!(
                "{}: chunks add up to {offset} bytes, the tree says {}",
                path.display(),
                node.size
            )));
        }
        self.plan.total_bytes += node.size;
        node = strip(node);
        self.plan.files.push(FilePlan { path, node, link_to: None, streamed: false });
        Ok(())
    }
}

/// Drops what a planned file no longer needs (its name is in its path, its
/// chunks in the pack reads), to keep the plan small.
fn strip(mut node: Node) -> Node {
    node.name = Vec::new();
    node.content = Content::File(Vec::new());
    node
}

/// What a restore did.
#[derive(Debug, Default)]
pub struct RestoreReport {
    pub files: usize,
    pub dirs: usize,
    pub specials: usize,
    pub bytes: u64,
    /// Files that could not be restored correctly (removed), with the reason.
    pub failed: Vec<String>,
    /// Metadata that could not be applied.
    pub warnings: Vec<String>,
}

/// Largest span read in one request, and the gap between blobs still read
/// through rather than split: modest on a local disk; on an object store,
/// where each request costs a round trip (and money), up to a whole pack
/// (16-20 MiB by default). Reading through larger gaps saved one request
/// in 50 on the S3 benchmark and cost 20 MiB more memory.
fn span_limits(repo: &Repository) -> (u64, u64) {
    if repo.backend.is_local() {
        (4 << 20, 256 << 10)
    } else {
        (24 << 20, 2 << 20)
    }
}

/// Executes a whole plan.
pub fn execute(repo: &Repository, plan: &RestorePlan, opts: &MetaOptions) -> Result<RestoreReport> {
    let mut report = RestoreReport::default();
    let mut state = WriteState::new(&plan.target);
    repo.progress.start(0);
    execute_files(repo, plan, opts, &mut report, &mut state)?;
    finish(plan, opts, &mut report, &mut state)?;
    Ok(report)
}

/// Writes the plan's files: data, then metadata and hard links.
fn execute_files(
    repo: &Repository,
    plan: &RestorePlan,
    opts: &MetaOptions,
    report: &mut RestoreReport,
    state: &mut WriteState,
) -> Result<()> {
    let io = |p: &Path, e| Error::io(p.display(), e);
    for f in plan.files.iter().filter(|f| f.link_to.is_none()) {
        // Whatever is at the path (a symlink, an old file) is replaced, not
        // written through.
        state.dirs.prepare_entry(&f.path).map_err(|e| io(&f.path, e))?;
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&f.path)
            .map_err(|e| io(&f.path, e))?;
        file.set_len(f.node.size).map_err(|e| io(&f.path, e))?;
    }
    // Data: packs in parallel, one worker per core.
    let packs: Vec<(&PackId, &Vec<BlobRead>)> = plan.packs.iter().collect();
    // Progress in bytes of the files: every file of the batch (streamed
    // ones count as they are written), each read once per place it goes to.
    let written = |reads: &[BlobRead]| -> u64 {
        reads.iter().map(|r| u64::from(r.entry.raw_length) * r.targets.len() as u64).sum()
    };
    repo.progress.grow(plan.files.iter().filter(|f| f.link_to.is_none()).map(|f| f.node.size).sum());
    let next = AtomicUsize::new(0);
    let failed: Mutex<HashMap<usize, String>> = Mutex::new(HashMap::new());
    let fatal: Mutex<Option<Error>> = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..crate::saver::worker_count().max(2) {
            s.spawn(|| {
                let mut open = OpenFiles::default();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some((id, reads)) = packs.get(i) else {
                        return;
                    };
                    if let Err(e) = restore_pack(repo, plan, id, reads, &failed, &mut open) {
                        *fatal.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                        return;
                    }
                    repo.progress.add(written(reads));
                }
            });
        }
    });
    let mut fatal = fatal.into_inner().unwrap_or_else(|p| p.into_inner());
    let mut failed = failed.into_inner().unwrap_or_else(|p| p.into_inner());
    if fatal.is_none() {
        fatal = write_streamed(repo, plan, &mut failed).err();
    }
    if let Some(e) = fatal {
        // Files were created at full length before their data arrived: none
        // may stay behind looking restored.
        for f in plan.files.iter().filter(|f| f.link_to.is_none()) {
            let _ = std::fs::remove_file(&f.path);
        }
        return Err(e);
    }
    let mut bad: Vec<(&usize, &String)> = failed.iter().collect();
    bad.sort();
    for (idx, why) in bad {
        let p = &plan.files[*idx].path;
        let _ = std::fs::remove_file(p);
        report.failed.push(format!("{}: {why}", p.display()));
        state.failed.insert(p.clone());
    }
    for (i, f) in plan.files.iter().enumerate() {
        if failed.contains_key(&i) || f.link_to.as_ref().is_some_and(|p| state.failed.contains(p)) {
            continue;
        }
        if let Some(first) = &f.link_to {
            state.dirs.prepare_entry(&f.path).map_err(|e| io(&f.path, e))?;
            std::fs::hard_link(first, &f.path).map_err(|e| io(&f.path, e))?;
        } else {
            report.bytes += f.node.size;
            report
                .warnings
                .extend(target::apply_metadata(&f.path, &f.node, opts).map_err(|e| Error::io(f.path.display(), e))?);
        }
        report.files += 1;
    }
    Ok(())
}

/// Writes the plan's streamed files one after another (each with every
/// worker: [`crate::ops::dump::write_file`]). Damage fails the file; a
/// transient or local error stops the restore.
fn write_streamed(repo: &Repository, plan: &RestorePlan, failed: &mut HashMap<usize, String>) -> Result<()> {
    for (i, f) in plan.files.iter().enumerate().filter(|(_, f)| f.streamed && f.link_to.is_none()) {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&f.path)
            .map_err(|e| Error::io(f.path.display(), e))?;
        let mut out = WriteFailures {
            inner: std::io::BufWriter::with_capacity(1 << 20, file),
            failed: false,
            progress: &repo.progress,
        };
        match crate::ops::dump::write_file(repo, &f.node, &f.path, &mut out) {
            Ok(_) => {}
            // Writing the target (a full disk) stops the restore, as in
            // `write_targets`; what the repository gave is the file's damage.
            Err(e) if e.kind().is_transient() || out.failed => return Err(e),
            Err(e) => {
                failed.insert(i, e.to_string());
            }
        }
    }
    Ok(())
}

/// A writer that remembers whether writing itself failed, to tell the
/// target's errors from the repository's, and counts what it wrote on the
/// restore's progress.
struct WriteFailures<'p, W> {
    inner: W,
    failed: bool,
    progress: &'p crate::progress::Meter,
}

impl<W: std::io::Write> std::io::Write for WriteFailures<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf).inspect_err(|_| self.failed = true)?;
        self.progress.add(n as u64);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush().inspect_err(|_| self.failed = true)
    }
}

/// Creates special entries and applies directory metadata, deepest first
/// so that directory times stick.
fn finish(plan: &RestorePlan, opts: &MetaOptions, report: &mut RestoreReport, state: &mut WriteState) -> Result<()> {
    for (p, _) in &plan.dirs {
        state.dirs.ensure(p).map_err(|e| Error::io(p.display(), e))?;
    }
    for (p, n) in &plan.specials {
        if let Err(e) = state.dirs.prepare_entry(p) {
            report.warnings.push(format!("{}: {e}", p.display()));
            continue;
        }
        match target::create_special(p, n) {
            Ok(()) => {
                report.warnings.extend(target::apply_metadata(p, n, opts).map_err(|e| Error::io(p.display(), e))?);
                report.specials += 1;
            }
            Err(e) => report.warnings.push(format!("{}: {e}", p.display())),
        }
    }
    // Directories last, deepest first, so their times stick.
    for (p, n) in plan.dirs.iter().rev() {
        report.warnings.extend(target::apply_metadata(p, n, opts).map_err(|e| Error::io(p.display(), e))?);
        report.dirs += 1;
    }
    Ok(())
}

/// Reads one pack's blobs in a few spans and writes them out.
fn restore_pack(
    repo: &Repository,
    plan: &RestorePlan,
    id: &PackId,
    reads: &[BlobRead],
    failed: &Mutex<HashMap<usize, String>>,
    open: &mut OpenFiles,
) -> Result<()> {
    let name = pack::object_name(id);
    let (max_span, max_gap) = span_limits(repo);
    let mut order: Vec<&BlobRead> = reads.iter().collect();
    order.sort_by_key(|r| (r.entry.offset, r.entry.inner));
    let mut i = 0;
    while i < order.len() {
        let start = order[i].entry.offset as u64;
        let mut end = order[i].entry.end();
        let mut j = i + 1;
        while j < order.len()
            && order[j].entry.offset as u64 <= end + max_gap
            && order[j].entry.end() - start <= max_span
        {
            end = end.max(order[j].entry.end());
            j += 1;
        }
        let span = match repo.backend.get_range(&name, start..end) {
            Ok(b) => Some(b),
            Err(e) if e.kind().is_transient() => return Err(e),
            Err(e) if e.kind() == ErrorKind::NotFound => {
                // Moved, not lost: a prune repacked it (rule 11). The index
                // is read again and each blob looked up anew; only a blob
                // that is then still missing is damage.
                for r in &order[i..j] {
                    let blob = BlobId { kind: r.entry.kind, id: r.entry.id };
                    match repo.read_blob(&blob) {
                        Ok(plain) => write_targets(plan, r, &plain, failed, open)?,
                        Err(e) if e.kind().is_transient() => return Err(e),
                        Err(e) => fail_targets(r, format!("chunk {}: {e}", hex::encode(r.entry.id)), failed),
                    }
                }
                i = j;
                continue;
            }
            Err(e) => {
                for r in &order[i..j] {
                    fail_targets(r, format!("pack {id}: {e}"), failed);
                }
                None
            }
        };
        if let Some(span) = span {
            // The unit opened last: the blobs of a group come one after
            // another, and the group is opened once for all of them.
            let mut unit: Option<(crate::format::pack::UnitKey, Result<Vec<u8>>)> = None;
            for r in &order[i..j] {
                let a = (r.entry.offset as u64 - start) as usize;
                let sealed = &span[a..a + r.entry.length as usize];
                if unit.as_ref().is_none_or(|(at, _)| *at != r.entry.unit_key()) {
                    unit = Some((r.entry.unit_key(), pack::open_unit(&repo.key, &r.entry, sealed)));
                }
                let Some((_, res)) = &unit else { continue };
                let opened = match res {
                    Ok(u) => pack::blob_in_unit(&repo.key, &r.entry, u),
                    Err(e) => Err(Error::new(e.kind(), e.to_string())),
                };
                match opened {
                    Ok(plain) => write_targets(plan, r, plain, failed, open)?,
                    Err(e) => fail_targets(r, format!("chunk {} in pack {id}: {e}", hex::encode(r.entry.id)), failed),
                }
            }
        }
        i = j;
    }
    Ok(())
}

/// Records every file that needs `r` as not restorable, for `why` (the
/// first reason a file gets is kept).
fn fail_targets(r: &BlobRead, why: String, failed: &Mutex<HashMap<usize, String>>) {
    let mut f = failed.lock().unwrap_or_else(|p| p.into_inner());
    for (file, _) in &r.targets {
        f.entry(*file).or_insert_with(|| why.clone());
    }
}

/// The target files a restore worker has open: a file's chunks of one
/// pack come one after another, and small chunks would otherwise cost an
/// open and a close each (45,000 of them for a 176 MiB dump at 4 KiB).
/// Bounded, so a tree of many files holds at most [`OpenFiles::MAX`]
/// descriptors per worker.
#[derive(Default)]
struct OpenFiles {
    files: HashMap<usize, std::fs::File>,
    /// Indices in the order they were opened, oldest first.
    order: std::collections::VecDeque<usize>,
}

impl OpenFiles {
    const MAX: usize = 32;

    fn get(&mut self, plan: &RestorePlan, file: usize) -> std::io::Result<&std::fs::File> {
        if !self.files.contains_key(&file) {
            if self.order.len() >= Self::MAX {
                if let Some(old) = self.order.pop_front() {
                    self.files.remove(&old);
                }
            }
            let f =
                std::fs::OpenOptions::new().write(true).custom_flags(libc::O_NOFOLLOW).open(&plan.files[file].path)?;
            self.files.insert(file, f);
            self.order.push_back(file);
        }
        Ok(&self.files[&file])
    }
}

/// Writes one blob's plaintext at each place the plan wants it.
fn write_targets(
    plan: &RestorePlan,
    r: &BlobRead,
    plain: &[u8],
    failed: &Mutex<HashMap<usize, String>>,
    open: &mut OpenFiles,
) -> Result<()> {
    for (file, off) in &r.targets {
        if failed.lock().unwrap_or_else(|p| p.into_inner()).contains_key(file) {
            continue;
        }
        let res = open.get(plan, *file).and_then(|f| f.write_all_at(plain, *off));
        if let Err(e) = res {
            return Err(Error::io(plan.files[*file].path.display(), e));
        }
    }
    Ok(())
}

/// Finds the tree of the directory at `sub` inside a snapshot's root tree.
/// Returns the node at that path (None for the root).
pub fn resolve(repo: &Repository, root: TreeId, sub: &Path) -> Result<(Option<Node>, TreeId)> {
    lookup(repo, root, sub)?.ok_or_else(|| Error::not_found(format!("{} is not in the snapshot", sub.display())))
}

/// [`resolve`], with `None` when the snapshot has no entry at `sub`
/// (including a path that continues below a file).
pub fn lookup(repo: &Repository, root: TreeId, sub: &Path) -> Result<Option<(Option<Node>, TreeId)>> {
    // The tree of the last directory on the path (for a file, its parent's).
    let mut tree = root;
    let mut node: Option<Node> = None;
    for c in sub.components() {
        let name = match c {
            std::path::Component::Normal(n) => n.as_bytes(),
            _ => continue,
        };
        // A component below a file or other non-directory.
        if node.as_ref().is_some_and(|n| n.subtree().is_none()) {
            return Ok(None);
        }
        let Some(n) = repo.load_tree(&tree)?.into_iter().find(|n| n.name == name) else { return Ok(None) };
        if let Some(t) = n.subtree() {
            tree = t;
        }
        node = Some(n);
    }
    Ok(Some((node, tree)))
}

#[cfg(test)]
#[path = "restore_tests.rs"]
mod tests;
