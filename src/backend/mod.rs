//! Storage: through an [`object_store::ObjectStore`], except the puts to a
//! local directory, which cairn does itself ([`local`]) to make them durable.
//!
//! [`Backend`] wraps a store with the few operations the repository needs:
//! whole-object puts, ranged gets, listing by prefix and deletes. It blocks
//! the calling (non-async) thread on its own tokio runtime, and can also
//! start puts in the background so that reading overlaps storing.
//!
//! # Durability contract
//! - `put` makes an object visible whole or not at all: a reader never sees
//!   a partial object, not even after a power loss. When `put` returns `Ok`,
//!   the object is durable. The local backend ([`local`]) writes a staging
//!   file `name#N` in the object's directory, fsyncs it, renames it into
//!   place and fsyncs the directory (and its parent, for a directory such
//!   as `data/ab/` that it created, or that this process has not put into
//!   before); any failure, of an fsync too, is an error naming the object.
//!   S3 servers acknowledge only stored objects.
//! - Objects are immutable once written: names are content hashes, and
//!   `config` is written once, at init. A lock is refreshed by writing a new
//!   lock object and deleting the old one.
//! - A killed put, or a power loss during one, leaves either nothing, a
//!   staging file (which listing ignores), or the whole object.
//! - Local repositories are private: cairn creates directories 0700 and
//!   files 0600 whatever the umask (existing ones keep their modes).
//!   Reads, listings and deletes go through object_store's local store.
//! - `list` may miss an object put very recently on eventually consistent
//!   stores; the write order in format-spec/10-write-order.md makes that
//!   harmless.
//! - S3 (see [`s3`]): puts are atomic and durable when acknowledged;
//!   cairn needs read-after-write and list-after-write consistency (which
//!   AWS, Ceph RGW, MinIO and Garage give), and needs no conditional write:
//!   see format-spec/11-backends.md.

pub mod local;
pub mod s3;

use std::ops::Range;
use std::path::{Path as FsPath, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{GetResultPayload, ObjectStore, PutPayload, WriteMultipart};

pub use s3::{S3Location, S3Options};

use crate::error::{Error, ErrorKind, Result};

/// Request counters, for `--verbose` statistics and tests.
#[derive(Debug, Default)]
pub struct Stats {
    pub puts: AtomicU64,
    pub gets: AtomicU64,
    pub lists: AtomicU64,
    pub deletes: AtomicU64,
    pub bytes_written: AtomicU64,
    pub bytes_read: AtomicU64,
}

impl Stats {
    pub fn summary(&self) -> String {
        format!(
            "requests: {} put, {} get, {} list, {} delete; {} bytes written, {} bytes read",
            self.puts.load(Ordering::Relaxed),
            self.gets.load(Ordering::Relaxed),
            self.lists.load(Ordering::Relaxed),
            self.deletes.load(Ordering::Relaxed),
            self.bytes_written.load(Ordering::Relaxed),
            self.bytes_read.load(Ordering::Relaxed)
        )
    }
}

/// Objects larger than this go up as multipart uploads (S3 only). Default
/// packs (16 MiB) take one PUT; larger packs (`init --pack-size`) go in
/// parts, which S3 retries one by one.
pub const MULTIPART_THRESHOLD: usize = 48 << 20;
/// Part size of a multipart upload.
pub const MULTIPART_PART: usize = 16 << 20;

/// Options for opening a backend (`-o key=value` on the command line).
#[derive(Clone, Debug, Default)]
pub struct BackendOptions {
    pub s3: S3Options,
}

impl BackendOptions {
    /// Applies one `KEY=VALUE` option.
    pub fn set(&mut self, kv: &str) -> Result<()> {
        let (k, v) = kv.split_once('=').ok_or_else(|| Error::invalid(format!("option {kv:?}: expected KEY=VALUE")))?;
        if self.s3.set(k.trim(), v.trim())? {
            Ok(())
        } else {
            Err(Error::invalid(format!(
                "unknown option {k:?} (known: s3.connections, s3.max-retries, s3.retry-timeout, s3.timeout, s3.region)"
            )))
        }
    }
}

/// A listed object: its name, size and last-modified time.
pub type Listed = (String, u64, Option<chrono::DateTime<chrono::Utc>>);

/// A repository's storage. Cloning is cheap and shares the runtime.
/// The largest piece [`Backend::get_streamed`] reads from a local file.
pub const STREAM_PIECE: usize = 1 << 20;

#[derive(Clone)]
pub struct Backend {
    store: Arc<dyn ObjectStore>,
    runtime: Arc<tokio::runtime::Runtime>,
    /// For the local backend: the directory, whose puts cairn does itself
    /// ([`local::put`]).
    local_root: Option<PathBuf>,
    /// The local store, to map names to files exactly as reads do.
    local_fs: Option<Arc<LocalFileSystem>>,
    location: String,
    /// Puts that may run at once (packs in flight).
    connections: usize,
    /// Whether large puts use multipart uploads.
    multipart: bool,
    pub stats: Arc<Stats>,
}

/// A put running in the background.
pub struct PendingPut(tokio::task::JoinHandle<Result<()>>);

fn runtime() -> Result<Arc<tokio::runtime::Runtime>> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("cairn-io")
        .enable_all()
        .build()
        .map(Arc::new)
        .map_err(|e| Error::io("starting the I/O runtime", e))
}

/// The first I/O error among the causes of `e`, if any.
fn io_cause<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a std::io::Error> {
    let mut cur = Some(e);
    while let Some(c) = cur {
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            return Some(io);
        }
        cur = c.source();
    }
    None
}

/// One sentence for a failed request: `op` ("read", "write", "list",
/// "delete") of `what` (an object name or folder) in the repository at
/// `location`. Its kind decides the exit code: [`ErrorKind::Transient`]
/// (75) when the storage stayed unreachable or kept failing after the
/// retries.
fn map_err(local: bool, location: &str, op: &str, what: &str, e: object_store::Error) -> Error {
    use object_store::Error as E;
    let text = e.to_string();
    // S3 names the real cause in its XML error code.
    if text.contains("NoSuchBucket") {
        return Error::with_source(
            ErrorKind::NoRepository,
            format!("no repository at {location}: the bucket does not exist (create it first)"),
            e,
        );
    }
    let denied = ["InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "403 Forbidden"];
    let denied = denied.into_iter().find(|d| text.contains(d)).or(match e {
        E::PermissionDenied { .. } => Some("PermissionDenied"),
        _ => None,
    });
    if let Some(code) = denied {
        let msg = format!(
            "{location}: access denied ({code}) reading or writing {what}; check the credentials \
             (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY or the profile)"
        );
        return Error::with_source(ErrorKind::Io, msg, e);
    }
    // A range past the end: the object is shorter than its index says
    // (truncated or emptied). That is damage, not a reason to retry.
    if text.contains("InvalidRange") || text.contains("416 Range Not Satisfiable") {
        return Error::with_source(
            ErrorKind::Corrupt,
            format!("{what}: the object is shorter than the range read (truncated or damaged)"),
            e,
        );
    }
    let io = io_cause(&e);
    let kind = match &e {
        E::NotFound { .. } => ErrorKind::NotFound,
        E::AlreadyExists { .. } | E::Precondition { .. } => ErrorKind::Corrupt,
        E::Unauthenticated { .. } => ErrorKind::Io,
        _ if local && io.is_some_and(crate::error::io_is_transient) => ErrorKind::Transient,
        _ if local => ErrorKind::Io,
        _ => ErrorKind::Transient,
    };
    let msg = match (kind, io) {
        (ErrorKind::NotFound, _) => format!("{what}: object not found"),
        // Connection refused, timeouts, a name that does not resolve.
        (ErrorKind::Transient, Some(io)) if !local => {
            format!("cannot reach {location} to {op} {what}: {}, even after retries", crate::error::io_reason(io))
        }
        (ErrorKind::Transient, None) => format!(
            "cannot {op} {what} on {location}: the storage server did not answer successfully, even after retries: {}",
            one_line(&text)
        ),
        (_, Some(io)) => format!("cannot {op} {what} on {location}: {}", crate::error::io_reason(io)),
        _ => format!("cannot {op} {what} on {location}: {}", one_line(&text)),
    };
    Error::with_source(kind, msg, e)
}

/// Error texts from HTTP clients span lines; errors here are one line.
fn one_line(s: &str) -> String {
    let s: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if s.len() > 400 {
        let mut end = 400;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}…", &s[..end])
    } else {
        s
    }
}

impl Backend {
    /// A repository in a local directory (created by `init` if missing).
    pub fn local(dir: &FsPath, create: bool) -> Result<Self> {
        if create {
            local::create_dir_all(dir).map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        } else if !dir.is_dir() {
            return Err(Error::new(
                ErrorKind::NoRepository,
                format!("no repository at {}: directory does not exist", dir.display()),
            ));
        }
        let root = dir.canonicalize().map_err(|e| Error::io(dir.display(), e))?;
        let store = Arc::new(
            LocalFileSystem::new_with_prefix(&root)
                .map_err(|e| map_err(true, &root.display().to_string(), "open", "the directory", e))?,
        );
        Ok(Self {
            store: store.clone(),
            runtime: runtime()?,
            location: root.display().to_string(),
            local_root: Some(root),
            local_fs: Some(store),
            connections: 1,
            multipart: false,
            stats: Arc::default(),
        })
    }

    /// Opens the repository at `url`: `s3:…` (see [`s3`]) or a local
    /// directory (optionally written `local:DIR`).
    pub fn open(url: &str, create: bool, opts: &BackendOptions) -> Result<Self> {
        if let Some(loc) = S3Location::parse(url) {
            let loc = loc?;
            let mut b = Self::from_store(s3::build(&loc, &opts.s3)?, loc.display())?;
            b.connections = opts.s3.connections;
            b.multipart = true;
            return Ok(b);
        }
        let path = url.strip_prefix("local:").unwrap_or(url);
        if let Some((scheme, _)) = path.split_once(':') {
            if matches!(scheme, "sftp" | "rest" | "b2" | "azure" | "gs" | "swift" | "rclone") {
                return Err(Error::invalid(format!(
                    "repository scheme {scheme:?} is not supported; use a local directory or s3:"
                )));
            }
        }
        Self::local(FsPath::new(path), create)
    }

    /// A repository in memory, for unit tests of the layers above.
    pub fn memory() -> Result<Self> {
        Self::from_store(Arc::new(InMemory::new()), "memory".into())
    }

    /// Any object store (S3 and others).
    pub fn from_store(store: Arc<dyn ObjectStore>, location: String) -> Result<Self> {
        Ok(Self {
            store,
            runtime: runtime()?,
            local_root: None,
            local_fs: None,
            location,
            connections: 2,
            multipart: false,
            stats: Arc::default(),
        })
    }

    /// Staging files that killed puts left in a local directory (relative
    /// names, sizes); none on S3, where an upload that did not complete
    /// leaves no object.
    pub fn staging_files(&self) -> Result<Vec<local::Staging>> {
        match &self.local_root {
            Some(root) => local::staging_files(root).map_err(|e| Error::io(root.display(), e)),
            None => Ok(Vec::new()),
        }
    }

    /// Makes the deletions done so far in `folder` durable before the
    /// deletions that rely on them (format-spec/10-write-order.md, rule 7):
    /// on a local directory an fsync of the folder, so that after a power
    /// loss a pack is never gone while the index object naming it is back;
    /// on S3 a DELETE is durable once acknowledged.
    pub fn sync_deletes(&self, folder: &str) -> Result<()> {
        let Some(root) = &self.local_root else { return Ok(()) };
        let dir = root.join(folder);
        match std::fs::File::open(&dir).and_then(|f| f.sync_all()) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(Error::io(format!("fsync of {} after deleting", dir.display()), e))
            }
            _ => Ok(()),
        }
    }

    /// Removes one staging file that [`Self::staging_files`] listed.
    pub fn delete_staging(&self, name: &str) -> Result<()> {
        let Some(root) = &self.local_root else { return Ok(()) };
        if !name.rsplit('/').next().is_some_and(local::is_staging_name) || name.split('/').any(|c| c == "..") {
            return Err(Error::invalid(format!("{name} is not a staging file")));
        }
        crash_point();
        let path = root.join(name);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(path.display(), e)),
            _ => Ok(()),
        }
    }

    /// Whether this is a local directory (requests are cheap).
    pub fn is_local(&self) -> bool {
        self.local_root.is_some()
    }

    /// How many puts (packs) may be in flight at once.
    pub fn connections(&self) -> usize {
        self.connections
    }

    /// Where the repository lives, for messages.
    pub fn location(&self) -> &str {
        &self.location
    }

    fn err(&self, op: &str, what: &str, e: object_store::Error) -> Error {
        map_err(self.local_root.is_some(), &self.location, op, what, e)
    }

    /// Writes a whole object; durable when it returns.
    ///
    /// Every put and delete first passes [`crash_point`].
    pub fn put(&self, name: &str, data: Bytes) -> Result<()> {
        self.spawn_put(name, data).wait()
    }

    /// Writes an object only if no object has that name (`If-None-Match: *`
    /// on S3). Returns `false` if one exists. A server that does not support
    /// the condition (object_store reports that) gets a plain put; servers
    /// that silently ignore it are covered in format-spec/11-backends.md:
    /// nothing in cairn's correctness depends on this condition.
    pub fn put_new(&self, name: &str, data: Bytes) -> Result<bool> {
        crash_point();
        if let Some((root, file)) = self.local_file(name)? {
            let stored = local::put(&root, &file, &data, false)?;
            if stored {
                self.stats.puts.fetch_add(1, Ordering::Relaxed);
                self.stats.bytes_written.fetch_add(data.len() as u64, Ordering::Relaxed);
            }
            return Ok(stored);
        }
        let path = Path::from(name);
        let opts = object_store::PutOptions { mode: object_store::PutMode::Create, ..Default::default() };
        let payload = PutPayload::from_bytes(data.clone());
        match self.runtime.block_on(self.store.put_opts(&path, payload, opts)) {
            Ok(_) => {}
            Err(object_store::Error::AlreadyExists { .. }) | Err(object_store::Error::Precondition { .. }) => {
                return Ok(false)
            }
            Err(object_store::Error::NotImplemented) => return self.put(name, data).map(|()| true),
            Err(e) => return Err(self.err("write", name, e)),
        }
        self.stats.puts.fetch_add(1, Ordering::Relaxed);
        self.stats.bytes_written.fetch_add(data.len() as u64, Ordering::Relaxed);
        Ok(true)
    }

    /// For the local backend: the repository directory and the file that
    /// holds object `name` (mapped as object_store's reads map it). A name
    /// with `#` in its last part is refused: it could be, or look like, a
    /// staging file, which listings skip.
    fn local_file(&self, name: &str) -> Result<Option<(PathBuf, PathBuf)>> {
        let (Some(root), Some(fs)) = (&self.local_root, &self.local_fs) else { return Ok(None) };
        if name.rsplit('/').next().is_some_and(|last| last.contains('#')) {
            return Err(Error::invalid(format!("{name}: '#' is reserved for staging files in a local repository")));
        }
        let file = fs.path_to_filesystem(&Path::from(name)).map_err(|e| self.err("write", name, e))?;
        Ok(Some((root.clone(), file)))
    }

    /// Starts a put on the I/O runtime and returns at once.
    /// On a local directory, the put is [`local::put`] on a blocking thread.
    pub fn spawn_put(&self, name: &str, data: Bytes) -> PendingPut {
        crash_point();
        let local = match self.local_file(name) {
            Ok(local) => local,
            Err(e) => return PendingPut(self.runtime.spawn(async move { Err(e) })),
        };
        let store = self.store.clone();
        let path = Path::from(name);
        let name = name.to_string();
        let location = self.location.clone();
        let stats = self.stats.clone();
        let multipart = self.multipart && data.len() > MULTIPART_THRESHOLD;
        PendingPut(self.runtime.spawn(async move {
            let len = data.len() as u64;
            if let Some((root, file)) = local {
                tokio::task::spawn_blocking(move || local::put(&root, &file, &data, true))
                    .await
                    .map_err(|e| Error::new(ErrorKind::Io, format!("{name}: the write task failed: {e}")))??;
            } else if multipart {
                put_multipart(&*store, &path, data, &stats)
                    .await
                    .map_err(|e| map_err(false, &location, "write", &name, e))?;
            } else {
                store
                    .put(&path, PutPayload::from_bytes(data))
                    .await
                    .map_err(|e| map_err(false, &location, "write", &name, e))?;
            }
            stats.puts.fetch_add(1, Ordering::Relaxed);
            stats.bytes_written.fetch_add(len, Ordering::Relaxed);
            Ok(())
        }))
    }

    /// Reads a whole object.
    pub fn get(&self, name: &str) -> Result<Bytes> {
        let path = Path::from(name);
        // A request is counted whether or not the object was there.
        self.stats.gets.fetch_add(1, Ordering::Relaxed);
        let b = self
            .runtime
            .block_on(async { self.store.get(&path).await?.bytes().await })
            .map_err(|e| self.err("read", name, e))?;
        self.stats.bytes_read.fetch_add(b.len() as u64, Ordering::Relaxed);
        Ok(b)
    }

    /// Reads a whole object in order, a piece at a time, handing each piece
    /// to `visit`: memory holds one piece (at most [`STREAM_PIECE`] bytes
    /// from a local file; what the connection delivers from S3), never the
    /// whole object. Returns the bytes read. One request, like [`get`](Self::get).
    pub fn get_streamed(&self, name: &str, mut visit: impl FnMut(&[u8])) -> Result<u64> {
        use std::io::{Read, Seek, SeekFrom};
        let path = Path::from(name);
        let got = self.runtime.block_on(self.store.get(&path)).map_err(|e| self.err("read", name, e))?;
        self.stats.gets.fetch_add(1, Ordering::Relaxed);
        let mut n = 0u64;
        match got.payload {
            GetResultPayload::File(mut file, fs_path) => {
                // A local file: read it here, on the caller's thread.
                let io = |e| Error::io(fs_path.display(), e);
                file.seek(SeekFrom::Start(got.range.start)).map_err(io)?;
                let mut left = got.range.end - got.range.start;
                let mut buf = vec![0u8; STREAM_PIECE.min(left as usize)];
                while left > 0 {
                    let want = (left as usize).min(buf.len());
                    let k = file.read(&mut buf[..want]).map_err(io)?;
                    if k == 0 {
                        break;
                    }
                    visit(&buf[..k]);
                    n += k as u64;
                    left -= k as u64;
                }
            }
            GetResultPayload::Stream(mut stream) => {
                while let Some(piece) = self.runtime.block_on(stream.next()) {
                    let piece = piece.map_err(|e| self.err("read", name, e))?;
                    visit(&piece);
                    n += piece.len() as u64;
                }
            }
        }
        self.stats.bytes_read.fetch_add(n, Ordering::Relaxed);
        Ok(n)
    }

    /// Reads `range` of an object. A range past the end is an error.
    pub fn get_range(&self, name: &str, range: Range<u64>) -> Result<Bytes> {
        let path = Path::from(name);
        let want = range.end - range.start;
        let b = self.runtime.block_on(self.store.get_range(&path, range)).map_err(|e| self.err("read", name, e))?;
        self.stats.gets.fetch_add(1, Ordering::Relaxed);
        self.stats.bytes_read.fetch_add(b.len() as u64, Ordering::Relaxed);
        if b.len() as u64 != want {
            return Err(Error::corrupt(format!("{name}: short read ({} of {want} bytes)", b.len())));
        }
        Ok(b)
    }

    /// Several ranges of one object, in one call where the store allows.
    pub fn get_ranges(&self, name: &str, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        let path = Path::from(name);
        let out = self.runtime.block_on(self.store.get_ranges(&path, ranges)).map_err(|e| self.err("read", name, e))?;
        self.stats.gets.fetch_add(1, Ordering::Relaxed);
        for (b, r) in out.iter().zip(ranges) {
            self.stats.bytes_read.fetch_add(b.len() as u64, Ordering::Relaxed);
            if b.len() as u64 != r.end - r.start {
                return Err(Error::corrupt(format!("{name}: short read")));
            }
        }
        Ok(out)
    }

    /// Size of an object.
    pub fn size(&self, name: &str) -> Result<u64> {
        let path = Path::from(name);
        self.stats.gets.fetch_add(1, Ordering::Relaxed);
        let m = self.runtime.block_on(self.store.head(&path)).map_err(|e| self.err("read", name, e))?;
        Ok(m.size)
    }

    /// Lists objects under `prefix` (a folder such as `snapshots`): each
    /// object's name relative to the repository root, and its size.
    pub fn list(&self, prefix: &str) -> Result<Vec<(String, u64)>> {
        let path = Path::from(prefix);
        let items: Vec<object_store::ObjectMeta> = self
            .runtime
            .block_on(self.store.list(Some(&path)).try_collect())
            .map_err(|e| self.err("list", prefix, e))?;
        self.stats.lists.fetch_add(1, Ordering::Relaxed);
        Ok(items.into_iter().map(|m| (m.location.to_string(), m.size)).collect())
    }

    /// Lists like [`Self::list`], with each object's last-modified time.
    pub fn list_with_times(&self, prefix: &str) -> Result<Vec<Listed>> {
        let path = Path::from(prefix);
        let items: Vec<object_store::ObjectMeta> = self
            .runtime
            .block_on(self.store.list(Some(&path)).try_collect())
            .map_err(|e| self.err("list", prefix, e))?;
        self.stats.lists.fetch_add(1, Ordering::Relaxed);
        Ok(items.into_iter().map(|m| (m.location.to_string(), m.size, Some(m.last_modified))).collect())
    }

    pub fn delete(&self, name: &str) -> Result<()> {
        crash_point();
        let path = Path::from(name);
        self.runtime.block_on(self.store.delete(&path)).map_err(|e| self.err("delete", name, e))?;
        self.stats.deletes.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

impl PendingPut {
    /// Waits for the put to finish.
    pub fn wait(self) -> Result<()> {
        futures::executor::block_on(self.0)
            .map_err(|e| Error::new(ErrorKind::Io, format!("upload task failed: {e}")))?
    }

    pub fn is_finished(&self) -> bool {
        self.0.is_finished()
    }
}

/// Uploads `data` in parts, several at once; aborts the upload on failure
/// so no parts are left behind. The object appears only at completion.
async fn put_multipart(store: &dyn ObjectStore, path: &Path, data: Bytes, stats: &Stats) -> object_store::Result<()> {
    let upload = store.put_multipart(path).await?;
    let mut w = WriteMultipart::new_with_chunk_size(upload, MULTIPART_PART);
    let mut at = 0;
    let res = async {
        while at < data.len() {
            let end = (at + MULTIPART_PART).min(data.len());
            w.wait_for_capacity(4).await?;
            w.put(data.slice(at..end));
            stats.puts.fetch_add(1, Ordering::Relaxed);
            at = end;
        }
        Ok(())
    }
    .await;
    match res {
        Ok(()) => w.finish().await.map(|_| ()),
        Err(e) => {
            let _ = w.abort().await;
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests;

/// Fault injection for the crash tests: with `CAIRN_TEST_KILL_BEFORE_WRITE=N`
/// the process kills itself with SIGKILL just before its Nth put or delete
/// (counting from 1), so that a seeded sweep can stop an operation at every
/// point of its write sequence. Unset, it costs one atomic increment. Only
/// in builds with the `test-hooks` feature (tests): a release build has no
/// such hook.
#[cfg(not(any(test, feature = "test-hooks")))]
fn crash_point() {}

#[cfg(any(test, feature = "test-hooks"))]
fn crash_point() {
    use std::sync::atomic::AtomicU64;
    use std::sync::OnceLock;
    static LIMIT: OnceLock<Option<u64>> = OnceLock::new();
    static WRITES: AtomicU64 = AtomicU64::new(0);
    let limit = LIMIT.get_or_init(|| std::env::var("CAIRN_TEST_KILL_BEFORE_WRITE").ok().and_then(|v| v.parse().ok()));
    if let Some(n) = limit {
        if WRITES.fetch_add(1, Ordering::SeqCst) + 1 >= *n {
            // SAFETY: kill with this process's own pid and a valid signal
            // number; no memory is involved.
            unsafe {
                libc::kill(libc::getpid(), libc::SIGKILL);
            }
        }
    }
}
