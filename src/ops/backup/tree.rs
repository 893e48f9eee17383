//! Backing up directory trees: walk, compare with the parent snapshot, chunk
//! what changed, and build one tree blob per directory, bottom-up.
//!
//! The root tree mirrors absolute paths: backing up `/srv/db` gives
//! root → `srv` → `db`, as restic does. Intermediate directories carry the
//! real directories' metadata.

use std::collections::{BTreeMap, HashMap};
use std::ffi::{OsStr, OsString};
use std::fs::{File, Metadata};
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use chrono::Local;

use super::progress::{Progress, Totals};
use super::{find_parent, hostname_or, write_snapshot, BackupOptions, BackupOutcome, Recheck};
use crate::chunker::{ChunkBuffer, Chunker};
use crate::error::{Error, ErrorKind, Result};
use crate::format::snapshot::Summary;
use crate::format::tree::{self, Content, Node, NodeKind};
use crate::id::{BlobKind, ChunkId, TreeId};
use crate::repo::Repository;
use crate::saver::Saver;
use crate::source::exclude::Excludes;
use crate::source::fsmeta::{node_from_metadata, node_from_metadata_since, OwnerNames};
use crate::source::prefetch::{list_dir, Claim, DirListing, Prefetch};

/// Absolute, lexically normalized path (symlinks are not resolved).
pub fn absolute(p: &Path) -> Result<PathBuf> {
    let abs = std::path::absolute(p).map_err(|e| Error::io(p.display(), e))?;
    let mut out = PathBuf::from("/");
    for c in abs.components() {
        match c {
            Component::Normal(x) => out.push(x),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    Ok(out)
}

/// The backup targets as a tree of path components.
#[derive(Default)]
struct Trie {
    target: bool,
    children: BTreeMap<Vec<u8>, Trie>,
}

impl Trie {
    fn insert(&mut self, path: &Path) {
        let mut t = self;
        for c in path.components() {
            if let Component::Normal(x) = c {
                if t.target {
                    return; // an ancestor is already backed up whole
                }
                t = t.children.entry(x.as_bytes().to_vec()).or_default();
            }
        }
        t.target = true;
        t.children.clear();
    }
}

struct Archiver<'r, 's> {
    repo: &'r Repository,
    saver: Saver<'s>,
    chunker: Arc<Chunker>,
    buf: Option<ChunkBuffer>,
    excludes: Excludes,
    one_file_system: bool,
    force: bool,
    owners: OwnerNames,
    /// (device, inode) of multiply-linked files already read.
    hardlinks: HashMap<(u64, u64), (Content, u64)>,
    /// Bytes chunked of the file being read.
    file_bytes: u64,
    summary: Summary,
    progress: Progress,
    /// Lists directories ahead of the walk.
    prefetch: Arc<Prefetch>,
}

fn find<'a>(nodes: &'a [Node], name: &[u8]) -> Option<&'a Node> {
    nodes.binary_search_by(|n| n.name.as_slice().cmp(name)).ok().map(|i| &nodes[i])
}

impl Archiver<'_, '_> {
    fn error(&mut self, path: &Path, e: impl std::fmt::Display) {
        let msg = format!("{}: {e}", path.display());
        eprintln!("error: {msg}");
        self.summary.errors.push(msg);
    }

    fn parent_nodes(&mut self, parent: Option<TreeId>) -> Vec<Node> {
        match parent {
            // A parent tree that cannot be read only costs re-reading files.
            Some(id) => self.repo.load_tree(&id).unwrap_or_default(),
            None => Vec::new(),
        }
    }

    fn save_tree(&mut self, nodes: &[Node]) -> Result<TreeId> {
        let enc = tree::encode(nodes)?;
        let id = self.repo.key.blob_id(&enc);
        self.saver.save(BlobKind::Tree, id, enc)?;
        Ok(TreeId(id))
    }

    /// Saves the virtual directories above the targets.
    fn save_virtual(&mut self, trie: &Trie, path: &Path, parent: Option<TreeId>) -> Result<TreeId> {
        if trie.target {
            // Only the root itself: `cairn backup /`.
            let dev = std::fs::symlink_metadata(path).map_err(|e| Error::io(path.display(), e))?.dev();
            return self
                .save_dir(path, parent, dev)?
                .ok_or_else(|| Error::new(ErrorKind::Io, format!("cannot list {}", path.display())));
        }
        let old = self.parent_nodes(parent);
        let mut nodes = Vec::with_capacity(trie.children.len());
        for (name, child) in &trie.children {
            let full = path.join(OsStr::from_bytes(name));
            let meta = std::fs::symlink_metadata(&full).map_err(|e| Error::io(full.display(), e))?;
            let prev = find(&old, name);
            let node = if child.target {
                let dev = meta.dev();
                self.save_entry(&full, name.clone(), &meta, prev, dev)?
            } else {
                let mut node = node_from_metadata(name.clone(), &full, &meta, &mut self.owners)
                    .map_err(|e| Error::io(full.display(), e))?;
                if node.kind != NodeKind::Dir {
                    return Err(Error::invalid(format!("{} is not a directory", full.display())));
                }
                let sub = self.save_virtual(child, &full, prev.and_then(Node::subtree))?;
                node.content = Content::Dir(sub);
                Some(node)
            };
            nodes.extend(node);
        }
        self.save_tree(&nodes)
    }

    /// One entry of any kind; `None` when it could not be read (recorded).
    fn save_entry(
        &mut self,
        path: &Path,
        name: Vec<u8>,
        meta: &Metadata,
        prev: Option<&Node>,
        root_dev: u64,
    ) -> Result<Option<Node>> {
        let mut node = match node_from_metadata_since(name, path, meta, &mut self.owners, prev) {
            Ok(n) => n,
            Err(e) => {
                self.error(path, e);
                return Ok(None);
            }
        };
        match node.kind {
            NodeKind::File => {
                if !self.save_file(path, &mut node, prev)? {
                    return Ok(None);
                }
                self.progress.file_done();
            }
            NodeKind::Dir => {
                self.summary.dirs += 1;
                let sub = if self.one_file_system && meta.dev() != root_dev {
                    self.save_tree(&[])?
                } else {
                    match self.save_dir(path, prev.and_then(Node::subtree), root_dev)? {
                        Some(t) => t,
                        None => return Ok(None),
                    }
                };
                node.content = Content::Dir(sub);
            }
            _ => {}
        }
        Ok(Some(node))
    }

    /// A directory's entries; `None` if it cannot be listed (recorded).
    fn save_dir(&mut self, path: &Path, parent: Option<TreeId>, root_dev: u64) -> Result<Option<TreeId>> {
        // Listed ahead by the prefetch threads, or here (sorted by name,
        // lstat relative to the open directory).
        let listing = match self.prefetch.claim(path) {
            Claim::Ready(l) => l,
            Claim::Mine => {
                let l = list_dir(path);
                if let Ok(l) = &l {
                    self.prefetch.queue_subdirs(path, l);
                }
                l
            }
        };
        let DirListing { entries, errors } = match listing {
            Ok(l) => l,
            Err(e) => {
                self.error(path, e);
                return Ok(None);
            }
        };
        for e in errors {
            self.error(path, e);
        }
        let old = self.parent_nodes(parent);
        let mut readahead = ReadAhead::new(path, &entries, &old, self.force);
        let mut nodes = Vec::with_capacity(entries.len());
        for (i, (name, meta)) in entries.into_iter().enumerate() {
            readahead.advance(i);
            let full = path.join(&name);
            if self.excludes.is_excluded(&full) {
                continue;
            }
            let meta = match meta {
                Ok(m) => m,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue, // vanished meanwhile
                Err(e) => {
                    self.error(&full, e);
                    continue;
                }
            };
            let prev = find(&old, name.as_bytes());
            if let Some(n) = self.save_entry(&full, name.as_bytes().to_vec(), &meta, prev, root_dev)? {
                nodes.push(n);
            }
        }
        Ok(Some(self.save_tree(&nodes)?))
    }

    /// Fills a file node's chunks. Returns false if the file was unreadable.
    fn save_file(&mut self, path: &Path, node: &mut Node, prev: Option<&Node>) -> Result<bool> {
        self.summary.total_files_processed += 1;
        self.summary.total_bytes_processed += node.size;
        if let Some(p) = prev.filter(|p| !self.force && unchanged(p, node)) {
            // The parent's content is reused as it is (inline chunks or
            // chunk lists) when every chunk it names is still indexed.
            let mut all_present = true;
            if let Content::Listed { level, lists } = &p.content {
                for l in lists {
                    all_present &= self.saver.has(&crate::id::BlobId::list(*l))?;
                }
                if all_present {
                    let saver = &self.saver;
                    self.repo.walk_lists(*level, lists, &mut |item| {
                        if let crate::index::ListItem::Chunks(chunks) = item {
                            for c in chunks {
                                all_present &= saver.has(&crate::id::BlobId::data(*c))?;
                            }
                        }
                        Ok(true)
                    })?;
                }
            } else {
                for c in p.inline_chunks() {
                    all_present &= self.saver.has(&crate::id::BlobId::data(*c))?;
                }
            }
            if all_present {
                node.content = p.content.clone();
                self.summary.files_unchanged += 1;
                self.progress.bytes(node.size);
                return Ok(true);
            }
        }
        let link_key = (node.device, node.inode);
        if node.nlink > 1 {
            if let Some((content, size)) = self.hardlinks.get(&link_key) {
                node.content = content.clone();
                node.size = *size;
                self.count_read(prev.is_some());
                return Ok(true);
            }
        }
        self.file_bytes = 0;
        match self.read_file(path, node.size) {
            Ok(chunks) => {
                // The size is what was read, which restore will write, even
                // if the file changed while it was being read.
                node.size = self.file_bytes;
                node.content = self.saver.file_content(chunks)?;
                if node.nlink > 1 {
                    self.hardlinks.insert(link_key, (node.content.clone(), node.size));
                }
                self.count_read(prev.is_some());
                Ok(true)
            }
            Err(e) if e.kind() == ErrorKind::Io => {
                self.error(path, e.message());
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    fn count_read(&mut self, had_parent: bool) {
        if had_parent {
            self.summary.files_changed += 1;
        } else {
            self.summary.files_new += 1;
        }
    }

    /// Reads and chunks a file. I/O errors are [`ErrorKind::Io`]; pipeline
    /// errors are anything else.
    fn read_file(&mut self, path: &Path, size: u64) -> Result<Vec<ChunkId>> {
        let io = |e: std::io::Error| Error::io("read", e);
        let mut f = open_noatime(path).map_err(io)?;
        let mut chunks = Vec::new();
        if size as usize <= self.chunker.min_size() {
            // Small file: one read, one chunk (if it has not grown meanwhile).
            let mut data = Vec::with_capacity(size as usize + 1);
            (&mut f).take(self.chunker.min_size() as u64 + 1).read_to_end(&mut data).map_err(io)?;
            if data.len() <= self.chunker.min_size() {
                if !data.is_empty() {
                    chunks.push(self.save_chunk(data)?);
                }
                return Ok(chunks);
            }
            return self.chunk_reader(std::io::Cursor::new(data).chain(f), chunks);
        }
        self.chunk_reader(f, chunks)
    }

    fn chunk_reader<R: Read>(&mut self, r: R, mut chunks: Vec<ChunkId>) -> Result<Vec<ChunkId>> {
        let buf = self.buf.take().unwrap_or_default();
        let chunker = self.chunker.clone();
        let mut stream = chunker.stream_with(r, buf);
        let res = (|| {
            while let Some(c) = stream.next_chunk().map_err(|e| Error::io("read", e))? {
                chunks.push(self.save_chunk(c)?);
            }
            Ok(())
        })();
        let (_, buf) = stream.into_parts();
        self.buf = Some(buf);
        res.map(|()| chunks)
    }

    fn save_chunk(&mut self, data: Vec<u8>) -> Result<ChunkId> {
        let id = self.repo.key.blob_id(&data);
        self.file_bytes += data.len() as u64;
        self.progress.bytes(data.len() as u64);
        self.saver.save(BlobKind::Data, id, data)?;
        Ok(ChunkId(id))
    }
}

/// Bytes of a directory's files to be read that are hinted to the kernel
/// ahead of the reader.
const READAHEAD_BYTES: u64 = 32 << 20;

/// Read-ahead over the files of one directory that will be read (new or
/// changed): `POSIX_FADV_WILLNEED` a window ahead, so that many small cold
/// files are fetched from disk concurrently instead of one at a time.
struct ReadAhead {
    /// (entry index, path, size) of files to read, in order.
    files: Vec<(usize, PathBuf, u64)>,
    /// Files before this one have been read.
    done: usize,
    /// Files before this one have been hinted.
    next: usize,
    hinted: u64,
    consumed: u64,
}

impl ReadAhead {
    fn new(dir: &Path, entries: &[(OsString, std::io::Result<Metadata>)], old: &[Node], force: bool) -> Self {
        let mut files = Vec::new();
        for (i, (name, m)) in entries.iter().enumerate() {
            let Ok(m) = m else { continue };
            if !m.is_file() {
                continue;
            }
            let unchanged = !force && find(old, name.as_bytes()).is_some_and(|p| unchanged_meta(p, m));
            if !unchanged && m.len() > 0 {
                files.push((i, dir.join(name), m.len()));
            }
        }
        Self { files, done: 0, next: 0, hinted: 0, consumed: 0 }
    }

    /// Called before entry `i` is processed: files before it have been
    /// read; hint the kernel about the next ones, up to the window.
    fn advance(&mut self, i: usize) {
        use std::os::fd::AsRawFd;
        while self.done < self.files.len() && self.files[self.done].0 < i {
            if self.done < self.next {
                self.consumed += self.files[self.done].2;
            }
            self.done += 1;
        }
        self.next = self.next.max(self.done);
        while self.next < self.files.len() && self.hinted - self.consumed < READAHEAD_BYTES {
            let (_, path, size) = &self.files[self.next];
            if let Ok(f) = open_noatime(path) {
                // SAFETY: posix_fadvise takes the open descriptor (f outlives
                // the call) and plain integers; it only schedules reads.
                unsafe {
                    libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_WILLNEED);
                }
            }
            self.hinted += size;
            self.next += 1;
        }
    }
}

fn unchanged_meta(prev: &Node, m: &Metadata) -> bool {
    prev.kind == NodeKind::File
        && prev.size == m.len()
        && prev.mtime_ns == m.mtime() * 1_000_000_000 + m.mtime_nsec()
        && prev.ctime_ns == m.ctime() * 1_000_000_000 + m.ctime_nsec()
        && prev.inode == m.ino()
}

fn open_noatime(path: &Path) -> std::io::Result<File> {
    match std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NOATIME).open(path) {
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => File::open(path),
        r => r,
    }
}

/// The incremental rule: same size, mtime, ctime and inode.
fn unchanged(prev: &Node, now: &Node) -> bool {
    prev.kind == NodeKind::File
        && prev.size == now.size
        && prev.mtime_ns == now.mtime_ns
        && prev.ctime_ns == now.ctime_ns
        && prev.inode == now.inode
}

/// Counts files and bytes beside the backup, for the progress ETA.
fn scan(roots: Vec<PathBuf>, totals: Arc<Totals>) {
    let mut stack = roots;
    while let Some(p) = stack.pop() {
        let Ok(m) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        if m.is_dir() {
            if let Ok(rd) = std::fs::read_dir(&p) {
                stack.extend(rd.flatten().map(|e| e.path()));
            }
        } else if m.is_file() {
            totals.files.fetch_add(1, Ordering::Relaxed);
            totals.bytes.fetch_add(m.len(), Ordering::Relaxed);
        }
    }
    totals.done.store(true, Ordering::Relaxed);
}

/// Backs up `paths` into a new snapshot.
pub fn backup_paths(repo: &Repository, paths: &[PathBuf], opts: &BackupOptions) -> Result<BackupOutcome> {
    if paths.is_empty() {
        return Err(Error::invalid("nothing to back up: give at least one path"));
    }
    let start = Local::now().fixed_offset();
    // A path that cannot be read is skipped, as restic does: the snapshot
    // holds the others and is partial (exit 3). None readable: no snapshot.
    let mut abs = Vec::with_capacity(paths.len());
    let mut skipped = Vec::new();
    for p in paths {
        let a = absolute(p)?;
        match std::fs::symlink_metadata(&a) {
            Ok(_) => abs.push(a),
            Err(e) => {
                skipped.push(format!("{}: {} (skipped)", p.display(), crate::error::io_reason(&e)));
            }
        }
    }
    if abs.is_empty() {
        return Err(Error::invalid(format!(
            "nothing to back up: {}; no snapshot was written",
            skipped.iter().map(|m| m.trim_end_matches(" (skipped)")).collect::<Vec<_>>().join(", ")
        )));
    }
    for msg in &skipped {
        eprintln!("warning: {msg}");
    }
    abs.sort();
    abs.dedup();
    let mut trie = Trie::default();
    for a in &abs {
        trie.insert(a);
    }
    let path_strings: Vec<String> = abs.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    let host = hostname_or(&opts.host);
    let parent = match &opts.parent {
        Some(id) => Some((*id, repo.load_snapshot(id)?)),
        None => find_parent(repo, &host, &path_strings)?,
    };
    let excludes = Excludes::new(&opts.excludes, &opts.exclude_files)?;
    let totals = opts.progress.then(|| {
        let t = Arc::new(Totals::default());
        let (roots, t2) = (abs.clone(), t.clone());
        std::thread::spawn(move || scan(roots, t2));
        t
    });
    let prefetch = opts.prefetch.clone().unwrap_or_else(|| Arc::new(Prefetch::start(abs.clone())));
    let chunker = Arc::new(Chunker::new(&repo.config.chunker_for(opts.data))?);
    let exclude_patterns = excludes.patterns().to_vec();
    let recheck = Recheck::start(repo)?;
    let (root, mut summary, stored) = std::thread::scope(|scope| -> Result<_> {
        let saver = Saver::start(scope, repo)?;
        let mut a = Archiver {
            repo,
            saver,
            chunker,
            buf: None,
            excludes,
            one_file_system: opts.one_file_system,
            force: opts.force,
            owners: OwnerNames::new(),
            hardlinks: HashMap::new(),
            file_bytes: 0,
            summary: Summary { errors: skipped, ..Summary::default() },
            progress: Progress::new(opts.progress, totals),
            prefetch,
        };
        let root = a.save_virtual(&trie, Path::new("/"), parent.as_ref().map(|p| p.1.tree))?;
        a.progress.finish();
        let stats = a.saver.stats;
        let stored = a.saver.finish()?;
        let mut summary = a.summary;
        summary.data_blobs = stats.data_blobs;
        summary.tree_blobs = stats.tree_blobs;
        Ok((root, summary, stored))
    })?;
    summary.data_added = stored.bytes;
    let (id, snapshot) = write_snapshot(
        repo,
        opts,
        path_strings,
        exclude_patterns,
        root,
        parent.map(|p| p.0),
        summary,
        start,
        Vec::new(),
        (recheck, &stored),
    )?;
    Ok(BackupOutcome { id, snapshot, stored })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trie_merges_nested_targets() {
        let mut t = Trie::default();
        t.insert(Path::new("/a/b/c"));
        t.insert(Path::new("/a/b"));
        t.insert(Path::new("/a/b/d"));
        let b = &t.children[&b"a".to_vec()].children[&b"b".to_vec()];
        assert!(b.target);
        assert!(b.children.is_empty());
    }

    #[test]
    fn absolute_normalizes() {
        assert_eq!(absolute(Path::new("/x/./y/../z")).unwrap(), PathBuf::from("/x/z"));
    }
}
