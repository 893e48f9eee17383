//! Directory prefetch: a few threads walk the backup's trees ahead of the
//! archiver, list each directory and `lstat` every entry (`fstatat` on the
//! open directory), and hand the finished listings to the archiver. On a
//! cold cache one thread waits for one inode read at a time, and several
//! keep the disk busy; on a warm cache the archiver's thread is spared the
//! system calls. Each directory is listed once: by a prefetch thread, or by
//! the archiver when it gets there first ([`Prefetch::claim`]).
//!
//! Memory is bounded: the threads pause while listings holding more than
//! [`MAX_AHEAD`] entries wait for the archiver.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::Metadata;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

/// Threads listing directories.
pub const THREADS: usize = 4;
/// Entries in finished listings not yet taken, at most (a few MiB).
pub const MAX_AHEAD: usize = 8_192;

/// One directory: its entries sorted by name bytes, each with its `lstat`
/// result, and errors met while reading the directory itself.
#[derive(Debug)]
pub struct DirListing {
    pub entries: Vec<(OsString, std::io::Result<Metadata>)>,
    pub errors: Vec<std::io::Error>,
}

impl DirListing {
    fn subdirs(&self, dir: &Path) -> impl DoubleEndedIterator<Item = PathBuf> + '_ {
        let dir = dir.to_path_buf();
        self.entries.iter().filter(|(_, m)| m.as_ref().is_ok_and(|m| m.is_dir())).map(move |(name, _)| dir.join(name))
    }
}

/// Lists `dir`: entries sorted by name bytes, `lstat`ed relative to the
/// open directory (no walk of the whole path per entry).
pub fn list_dir(dir: &Path) -> std::io::Result<DirListing> {
    let mut raw = Vec::new();
    let mut errors = Vec::new();
    for e in std::fs::read_dir(dir)? {
        match e {
            Ok(e) => raw.push(e),
            Err(e) => errors.push(e),
        }
    }
    raw.sort_by(|a, b| a.file_name().as_bytes().cmp(b.file_name().as_bytes()));
    let entries = raw.into_iter().map(|e| (e.file_name(), e.metadata())).collect();
    Ok(DirListing { entries, errors })
}

enum State {
    Queued,
    InProgress,
    Done(std::io::Result<DirListing>),
    /// The archiver lists it itself.
    Claimed,
}

struct Inner {
    /// Directories to list, popped from the end (sorted depth-first order,
    /// as the archiver walks).
    stack: Vec<PathBuf>,
    state: HashMap<PathBuf, State>,
    /// Entries in `Done` listings.
    ahead: usize,
}

struct Shared {
    inner: Mutex<Inner>,
    /// Signalled on every change.
    changed: Condvar,
    stop: AtomicBool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn wait<'a>(&self, g: MutexGuard<'a, Inner>) -> MutexGuard<'a, Inner> {
        self.changed.wait(g).unwrap_or_else(|p| p.into_inner())
    }
}

/// Queues `dirs` (in sorted order) so that the smallest is listed first.
fn push_sorted(inner: &mut Inner, dirs: impl DoubleEndedIterator<Item = PathBuf>) {
    for d in dirs.rev() {
        if let std::collections::hash_map::Entry::Vacant(v) = inner.state.entry(d.clone()) {
            v.insert(State::Queued);
            inner.stack.push(d);
        }
    }
}

/// What [`Prefetch::claim`] gives the archiver.
pub enum Claim {
    /// A listing made ahead.
    Ready(std::io::Result<DirListing>),
    /// Not listed yet: the archiver lists it, then calls
    /// [`Prefetch::queue_subdirs`].
    Mine,
}

/// Running prefetch; stops on drop.
pub struct Prefetch {
    shared: Arc<Shared>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for Prefetch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Prefetch(..)")
    }
}

impl Prefetch {
    pub fn start(mut roots: Vec<PathBuf>) -> Self {
        roots.sort();
        roots.dedup();
        let mut inner = Inner { stack: Vec::new(), state: HashMap::new(), ahead: 0 };
        push_sorted(&mut inner, roots.into_iter());
        let shared =
            Arc::new(Shared { inner: Mutex::new(inner), changed: Condvar::new(), stop: AtomicBool::new(false) });
        let threads = (0..THREADS)
            .map(|_| {
                let s = shared.clone();
                std::thread::spawn(move || worker(&s))
            })
            .collect();
        Self { shared, threads }
    }

    /// The archiver is at `dir`: its listing if a thread made it (waiting
    /// for one in progress), else [`Claim::Mine`].
    pub fn claim(&self, dir: &Path) -> Claim {
        let s = &self.shared;
        let mut g = s.lock();
        loop {
            match g.state.remove(dir) {
                Some(State::Done(l)) => {
                    g.ahead -= l.as_ref().map_or(0, |l| l.entries.len());
                    g.state.insert(dir.to_path_buf(), State::Claimed);
                    s.changed.notify_all();
                    return Claim::Ready(l);
                }
                Some(State::InProgress) => {
                    g.state.insert(dir.to_path_buf(), State::InProgress);
                    g = s.wait(g);
                }
                Some(State::Claimed) | Some(State::Queued) | None => {
                    g.state.insert(dir.to_path_buf(), State::Claimed);
                    return Claim::Mine;
                }
            }
        }
    }

    /// After listing `dir` itself, the archiver queues its subdirectories
    /// for the threads.
    pub fn queue_subdirs(&self, dir: &Path, listing: &DirListing) {
        let mut g = self.shared.lock();
        push_sorted(&mut g, listing.subdirs(dir));
        self.shared.changed.notify_all();
    }
}

fn worker(s: &Shared) {
    loop {
        let dir = {
            let mut g = s.lock();
            // Idle threads wait for more (the archiver may queue some)
            // until the prefetch is dropped.
            loop {
                if s.stop.load(Ordering::Relaxed) {
                    return;
                }
                if g.ahead < MAX_AHEAD {
                    if let Some(d) = g.stack.pop() {
                        if matches!(g.state.get(&d), Some(State::Queued)) {
                            g.state.insert(d.clone(), State::InProgress);
                            break d;
                        }
                        continue; // claimed by the archiver meanwhile
                    }
                }
                g = s.wait(g);
            }
        };
        let listing = list_dir(&dir);
        let mut g = s.lock();
        if let Ok(l) = &listing {
            g.ahead += l.entries.len();
            push_sorted(&mut g, l.subdirs(&dir));
        }
        g.state.insert(dir, State::Done(listing));
        s.changed.notify_all();
    }
}

impl Drop for Prefetch {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        self.shared.changed.notify_all();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        for i in 0..20 {
            std::fs::create_dir_all(d.path().join(format!("a{i}/b/c"))).unwrap();
            std::fs::write(d.path().join(format!("a{i}/b/f")), b"x").unwrap();
        }
        d
    }

    /// Walks like the archiver: every directory exactly once, each listing
    /// complete and sorted, whether made ahead or by the walker.
    fn walk(p: &Prefetch, dir: &Path, seen: &mut Vec<PathBuf>) {
        let l = match p.claim(dir) {
            Claim::Ready(l) => l.unwrap(),
            Claim::Mine => {
                let l = list_dir(dir).unwrap();
                p.queue_subdirs(dir, &l);
                l
            }
        };
        let names: Vec<_> = l.entries.iter().map(|(n, _)| n.clone()).collect();
        let mut sorted = names.clone();
        sorted.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        assert_eq!(names, sorted);
        assert_eq!(names.len(), std::fs::read_dir(dir).unwrap().count());
        seen.push(dir.to_path_buf());
        for (n, m) in &l.entries {
            if m.as_ref().unwrap().is_dir() {
                walk(p, &dir.join(n), seen);
            }
        }
    }

    #[test]
    fn every_directory_listed_once_and_complete() {
        let d = tree();
        for _ in 0..20 {
            let p = Prefetch::start(vec![d.path().to_path_buf()]);
            let mut seen = Vec::new();
            walk(&p, d.path(), &mut seen);
            assert_eq!(seen.len(), 1 + 20 * 3);
            let mut dedup = seen.clone();
            dedup.sort();
            dedup.dedup();
            assert_eq!(dedup.len(), seen.len());
        }
    }

    #[test]
    fn missing_root_and_early_drop() {
        let p = Prefetch::start(vec![PathBuf::from("/nonexistent/cairn-prefetch")]);
        match p.claim(Path::new("/nonexistent/cairn-prefetch")) {
            Claim::Ready(r) => assert!(r.is_err()),
            Claim::Mine => {}
        }
        drop(p);
        let d = tree();
        drop(Prefetch::start(vec![d.path().to_path_buf()]));
    }
}
