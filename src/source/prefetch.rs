//! Metadata prefetch: a few threads walk the backup's trees ahead of the
//! archiver and `lstat` every entry, so that the archiver's own `lstat`s
//! hit a warm inode cache. On a cold cache, one thread waits for one inode
//! read at a time; several keep the disk busy. Nothing is returned: this is
//! only a hint to the kernel, and it stops when the backup ends.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};

/// Threads issuing `lstat`s.
pub const THREADS: usize = 4;

struct Shared {
    queue: Mutex<Vec<PathBuf>>,
    ready: Condvar,
    /// Directories queued or being read.
    pending: AtomicUsize,
    stop: AtomicBool,
}

/// Running prefetch; stops on drop.
pub struct Prefetch {
    shared: Arc<Shared>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Prefetch {
    pub fn start(roots: Vec<PathBuf>) -> Self {
        let shared = Arc::new(Shared {
            pending: AtomicUsize::new(roots.len()),
            queue: Mutex::new(roots),
            ready: Condvar::new(),
            stop: AtomicBool::new(false),
        });
        let threads = (0..THREADS)
            .map(|_| {
                let s = shared.clone();
                std::thread::spawn(move || worker(&s))
            })
            .collect();
        Self { shared, threads }
    }
}

fn worker(s: &Shared) {
    loop {
        let dir = {
            let mut q = s.queue.lock().unwrap_or_else(|p| p.into_inner());
            loop {
                if s.stop.load(Ordering::Relaxed) || s.pending.load(Ordering::Acquire) == 0 {
                    s.ready.notify_all();
                    return;
                }
                if let Some(d) = q.pop() {
                    break d;
                }
                q = s.ready.wait(q).unwrap_or_else(|p| p.into_inner());
            }
        };
        let mut subdirs = Vec::new();
        if let Ok(rd) = std::fs::read_dir(&dir) {
            for e in rd.flatten() {
                if s.stop.load(Ordering::Relaxed) {
                    break;
                }
                // fstatat on the open directory: no full path walk.
                if let Ok(m) = e.metadata() {
                    if m.is_dir() {
                        subdirs.push(e.path());
                    }
                }
            }
        }
        s.pending.fetch_add(subdirs.len(), Ordering::AcqRel);
        {
            let mut q = s.queue.lock().unwrap_or_else(|p| p.into_inner());
            q.extend(subdirs);
        }
        s.pending.fetch_sub(1, Ordering::AcqRel);
        s.ready.notify_all();
    }
}

impl Drop for Prefetch {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        self.shared.ready.notify_all();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_and_stops() {
        let d = tempfile::tempdir().unwrap();
        for i in 0..20 {
            std::fs::create_dir_all(d.path().join(format!("a{i}/b/c"))).unwrap();
            std::fs::write(d.path().join(format!("a{i}/b/f")), b"x").unwrap();
        }
        let p = Prefetch::start(vec![d.path().to_path_buf()]);
        // Finishes on its own; drop joins the threads.
        drop(p);
        let p = Prefetch::start(vec![d.path().join("missing")]);
        drop(p);
    }
}
