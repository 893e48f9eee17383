//! Storage: every byte goes through an [`object_store::ObjectStore`].
//!
//! [`Backend`] wraps a store with the few operations the repository needs:
//! whole-object puts, ranged gets, listing by prefix and deletes. It blocks
//! the calling (non-async) thread on its own tokio runtime, and can also
//! start puts in the background so that reading overlaps storing.
//!
//! # Durability contract
//! - `put` makes an object visible whole or not at all: a reader never sees
//!   a partial object. When `put` returns `Ok`, the object is durable: the
//!   local backend fsyncs the file and its directory; S3 servers acknowledge
//!   only stored objects.
//! - Objects are immutable once written: names are content hashes, and
//!   `config` is written once, at init. A lock is refreshed by writing a new
//!   lock object and deleting the old one.
//! - A killed put leaves either nothing or the whole object. The local store
//!   stages writes in `name#N` files, which listing ignores. (object_store
//!   renames before cairn fsyncs, so after a *power loss* an object may be
//!   incomplete under its final name; it then fails its SHA-256 name check,
//!   and nothing references it yet: see format-spec/10-write-order.md.)
//! - `list` may miss an object put very recently on eventually consistent
//!   stores; the write order in format-spec/10-write-order.md makes that
//!   harmless.

use std::ops::Range;
use std::path::{Path as FsPath, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, PutPayload};

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

/// A repository's storage. Cloning is cheap and shares the runtime.
#[derive(Clone)]
pub struct Backend {
    store: Arc<dyn ObjectStore>,
    runtime: Arc<tokio::runtime::Runtime>,
    /// For the local backend: the directory, to fsync after puts.
    local_root: Option<PathBuf>,
    location: String,
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

fn map_err(local: bool, what: &str, e: object_store::Error) -> Error {
    use object_store::Error as E;
    let kind = match &e {
        E::NotFound { .. } => ErrorKind::NotFound,
        E::AlreadyExists { .. } | E::Precondition { .. } => ErrorKind::Corrupt,
        E::PermissionDenied { .. } | E::Unauthenticated { .. } => ErrorKind::Io,
        _ if local => ErrorKind::Io,
        _ => ErrorKind::Transient,
    };
    let msg = match kind {
        ErrorKind::NotFound => format!("{what}: object not found"),
        _ => format!("{what}: {e}"),
    };
    Error::with_source(kind, msg, e)
}

impl Backend {
    /// A repository in a local directory (created by `init` if missing).
    pub fn local(dir: &FsPath, create: bool) -> Result<Self> {
        if create {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir.display(), e))?;
        } else if !dir.is_dir() {
            return Err(Error::new(
                ErrorKind::NoRepository,
                format!("no repository at {}: directory does not exist", dir.display()),
            ));
        }
        let root = dir.canonicalize().map_err(|e| Error::io(dir.display(), e))?;
        let store =
            LocalFileSystem::new_with_prefix(&root).map_err(|e| map_err(true, &root.display().to_string(), e))?;
        Ok(Self {
            store: Arc::new(store),
            runtime: runtime()?,
            location: root.display().to_string(),
            local_root: Some(root),
            stats: Arc::default(),
        })
    }

    /// A repository in memory, for unit tests of the layers above.
    pub fn memory() -> Result<Self> {
        Self::from_store(Arc::new(InMemory::new()), "memory".into())
    }

    /// Any object store (S3 and others).
    pub fn from_store(store: Arc<dyn ObjectStore>, location: String) -> Result<Self> {
        Ok(Self { store, runtime: runtime()?, local_root: None, location, stats: Arc::default() })
    }

    /// Where the repository lives, for messages.
    pub fn location(&self) -> &str {
        &self.location
    }

    fn err(&self, what: &str, e: object_store::Error) -> Error {
        map_err(self.local_root.is_some(), what, e)
    }

    /// Writes a whole object; durable when it returns.
    pub fn put(&self, name: &str, data: Bytes) -> Result<()> {
        self.spawn_put(name, data).wait()
    }

    /// Starts a put on the I/O runtime and returns at once.
    pub fn spawn_put(&self, name: &str, data: Bytes) -> PendingPut {
        let store = self.store.clone();
        let path = Path::from(name);
        let name = name.to_string();
        let local = self.local_root.clone();
        let stats = self.stats.clone();
        PendingPut(self.runtime.spawn(async move {
            let len = data.len() as u64;
            store.put(&path, PutPayload::from_bytes(data)).await.map_err(|e| map_err(local.is_some(), &name, e))?;
            stats.puts.fetch_add(1, Ordering::Relaxed);
            stats.bytes_written.fetch_add(len, Ordering::Relaxed);
            if let Some(root) = local {
                tokio::task::spawn_blocking(move || sync_local(&root, &name))
                    .await
                    .map_err(|e| Error::new(ErrorKind::Io, format!("fsync task failed: {e}")))??;
            }
            Ok(())
        }))
    }

    /// Reads a whole object.
    pub fn get(&self, name: &str) -> Result<Bytes> {
        let path = Path::from(name);
        let b = self
            .runtime
            .block_on(async { self.store.get(&path).await?.bytes().await })
            .map_err(|e| self.err(name, e))?;
        self.stats.gets.fetch_add(1, Ordering::Relaxed);
        self.stats.bytes_read.fetch_add(b.len() as u64, Ordering::Relaxed);
        Ok(b)
    }

    /// Reads `range` of an object. A range past the end is an error.
    pub fn get_range(&self, name: &str, range: Range<u64>) -> Result<Bytes> {
        let path = Path::from(name);
        let want = range.end - range.start;
        let b = self.runtime.block_on(self.store.get_range(&path, range)).map_err(|e| self.err(name, e))?;
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
        let out = self.runtime.block_on(self.store.get_ranges(&path, ranges)).map_err(|e| self.err(name, e))?;
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
        let m = self.runtime.block_on(self.store.head(&path)).map_err(|e| self.err(name, e))?;
        self.stats.gets.fetch_add(1, Ordering::Relaxed);
        Ok(m.size)
    }

    /// Lists objects under `prefix` (a folder such as `snapshots`): each
    /// object's name relative to the repository root, and its size.
    pub fn list(&self, prefix: &str) -> Result<Vec<(String, u64)>> {
        let path = Path::from(prefix);
        let items: Vec<object_store::ObjectMeta> =
            self.runtime.block_on(self.store.list(Some(&path)).try_collect()).map_err(|e| self.err(prefix, e))?;
        self.stats.lists.fetch_add(1, Ordering::Relaxed);
        Ok(items.into_iter().map(|m| (m.location.to_string(), m.size)).collect())
    }

    pub fn delete(&self, name: &str) -> Result<()> {
        let path = Path::from(name);
        self.runtime.block_on(self.store.delete(&path)).map_err(|e| self.err(name, e))?;
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

/// fsync a freshly written local object and its directory.
fn sync_local(root: &FsPath, name: &str) -> Result<()> {
    let path = root.join(name);
    let f = std::fs::File::open(&path).map_err(|e| Error::io(path.display(), e))?;
    f.sync_all().map_err(|e| Error::io(path.display(), e))?;
    // The directory (its new entry), and its parent (for a new directory
    // such as data/ab/).
    for dir in path.ancestors().skip(1).take(2) {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
