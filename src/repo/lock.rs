//! Repository locks (format-spec/08-locks.md).
//!
//! A backup holds a shared lock; forget, prune and check hold a
//! maintenance lock (compatible with backups: prune deletes in two phases,
//! format-spec/10-write-order.md); repair holds an exclusive one. A lock is
//! refreshed every 5 minutes by a background thread and is stale after 30
//! minutes without refresh, or at once when it was taken on this host by a
//! process that no longer exists.

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{DateTime, Utc};

use super::{content_id, Repository};
use crate::backend::Backend;
use crate::crypto::aead::ObjectType;
use crate::error::{Error, ErrorKind, Result};
use crate::format::lock::{Lock, LockKind};
use crate::seal;

pub const REFRESH: Duration = Duration::from_secs(300);
pub const STALE_AFTER: Duration = Duration::from_secs(1800);
/// A holder whose lock was last written longer ago than this (by its own
/// monotonic clock: a suspended process, a failing backend) must not commit
/// a snapshot: others may soon take its lock for stale.
pub const LAPSE_AFTER: Duration = Duration::from_secs(1200);
/// How often a lock is retried under `--retry-lock`.
const RETRY_EVERY: Duration = Duration::from_secs(5);

/// The session a lock belongs to: its `session` field, or for locks that
/// have none, the first 16 bytes of its object id.
pub fn session_of(object: &[u8; 32], lock: &Lock) -> [u8; 16] {
    let mut s = [0u8; 16];
    match hex::decode(&lock.session) {
        Ok(v) if v.len() == 16 => s.copy_from_slice(&v),
        _ => s.copy_from_slice(&object[..16]),
    }
    s
}

fn this_host() -> String {
    hostname::get().map(|h| h.to_string_lossy().into_owned()).unwrap_or_default()
}

/// Whether the lock was taken on this host by a process that is gone.
pub fn holder_gone(lock: &Lock) -> bool {
    lock.hostname == this_host() && !process_alive(lock.pid)
}

/// Whether a lock can be ignored.
pub fn is_stale(lock: &Lock, now: DateTime<Utc>) -> bool {
    let Ok(t) = DateTime::parse_from_rfc3339(&lock.time) else {
        return true;
    };
    if now.signed_duration_since(t.with_timezone(&Utc)).to_std().unwrap_or_default() > STALE_AFTER {
        return true;
    }
    holder_gone(lock)
}

fn process_alive(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    // SAFETY: kill with signal 0 sends nothing; it only checks that the pid
    // exists. No memory is passed.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

struct Held {
    /// The current lock object; `None` once released.
    name: Option<String>,
    /// When it was last written successfully.
    written: Instant,
}

/// A held lock; released on drop.
pub struct LockGuard {
    state: Arc<(Mutex<Held>, Condvar)>,
    thread: Option<std::thread::JoinHandle<()>>,
    backend: Backend,
    session: [u8; 16],
}

impl std::fmt::Debug for LockGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LockGuard({})", hex::encode(self.session))
    }
}

impl LockGuard {
    pub fn session(&self) -> [u8; 16] {
        self.session
    }

    /// Fails if the lock may have lapsed (not written for [`LAPSE_AFTER`]):
    /// a writer calls this right before it commits a snapshot.
    pub fn ensure_fresh(&self) -> Result<()> {
        let held = self.state.0.lock().unwrap_or_else(|p| p.into_inner());
        let age = held.written.elapsed();
        if age > LAPSE_AFTER {
            return Err(Error::new(
                ErrorKind::Locked,
                format!(
                    "this process's lock was last refreshed {} minutes ago (suspended, or the repository was unreachable), so others may have taken it for stale; nothing was committed, run it again",
                    age.as_secs() / 60
                ),
            ));
        }
        Ok(())
    }
}

fn write_lock(backend: &Backend, key: &[u8; 32], lock: &Lock) -> Result<String> {
    let sealed = seal::seal(key, ObjectType::Lock, &lock.encode(), None);
    let name = format!("locks/{}", hex::encode(content_id(&sealed)));
    backend.put(&name, Bytes::from(sealed))?;
    Ok(name)
}

impl Repository {
    /// Every readable lock with its object name.
    pub fn list_locks(&self) -> Result<Vec<(String, Lock)>> {
        self.list_locks_except(None)
    }

    /// Every readable lock but `own` (which is not even read).
    fn list_locks_except(&self, own: Option<&str>) -> Result<Vec<(String, Lock)>> {
        let mut out = Vec::new();
        for id in self.list_ids("locks")? {
            if own == Some(format!("locks/{}", hex::encode(id)).as_str()) {
                continue;
            }
            // A lock removed meanwhile, or unreadable, does not count.
            if let Ok(plain) = self.load_object("locks", &id, ObjectType::Lock) {
                if let Ok(l) = Lock::decode(&plain) {
                    out.push((format!("locks/{}", hex::encode(id)), l));
                }
            }
        }
        Ok(out)
    }

    fn conflict(&self, kind: LockKind, own: Option<&str>) -> Result<Option<Lock>> {
        let now = Utc::now();
        Ok(self
            .list_locks_except(own)?
            .into_iter()
            .filter(|(_, l)| !kind.compatible(l.kind()) && !is_stale(l, now))
            .map(|(_, l)| l)
            .next())
    }

    /// Takes a lock, failing with [`ErrorKind::Locked`] if a conflicting one
    /// is held.
    pub fn lock(&self, kind: LockKind, operation: &str) -> Result<LockGuard> {
        self.lock_retrying(kind, operation, Duration::ZERO)
    }

    /// [`Self::lock`], trying again every few seconds for up to `wait`
    /// while a conflicting lock is held (`--retry-lock`).
    pub fn lock_retrying(&self, kind: LockKind, operation: &str, wait: Duration) -> Result<LockGuard> {
        let start = Instant::now();
        loop {
            match self.try_lock(kind, operation) {
                Err(e) if e.kind() == ErrorKind::Locked && start.elapsed() + RETRY_EVERY <= wait => {
                    std::thread::sleep(RETRY_EVERY)
                }
                r => return r,
            }
        }
    }

    fn try_lock(&self, kind: LockKind, operation: &str) -> Result<LockGuard> {
        let locked = |l: Lock| {
            let how = match l.kind() {
                LockKind::Exclusive => " exclusively",
                LockKind::Maintenance => " for maintenance",
                LockKind::Shared => "",
            };
            Error::new(
                ErrorKind::Locked,
                format!(
                    "repository is locked{how} by {} (pid {} on {}, since {}); if that process is gone, run `cairn unlock`",
                    l.operation, l.pid, l.hostname, l.time
                ),
            )
        };
        let session: [u8; 16] = rand::random();
        // Write first, then look for others (one listing instead of two; a
        // lock written by a process that then backs off is harmless).
        let mut lock = Lock {
            time: Utc::now().to_rfc3339(),
            exclusive: kind == LockKind::Exclusive,
            hostname: this_host(),
            username: std::env::var("USER").unwrap_or_default(),
            pid: std::process::id(),
            operation: operation.to_string(),
            kind: kind.as_str().to_string(),
            session: hex::encode(session),
        };
        let name = write_lock(&self.backend, &self.key.enc, &lock)?;
        // Two processes may write at the same moment: each sees the other.
        if let Some(l) = self.conflict(kind, Some(&name))? {
            let _ = self.backend.delete(&name);
            return Err(locked(l));
        }
        let state = Arc::new((Mutex::new(Held { name: Some(name), written: Instant::now() }), Condvar::new()));
        let (st, backend, key) = (state.clone(), self.backend.clone(), self.key.enc);
        let thread = std::thread::spawn(move || {
            let (m, cv) = &*st;
            let mut guard = m.lock().unwrap_or_else(|p| p.into_inner());
            // The flag is checked under the mutex before every wait, so a
            // release cannot be missed.
            while let Some(old) = guard.name.clone() {
                let (g, timeout) = cv.wait_timeout(guard, REFRESH).unwrap_or_else(|p| p.into_inner());
                guard = g;
                if guard.name.is_none() || !timeout.timed_out() {
                    continue;
                }
                lock.time = Utc::now().to_rfc3339();
                // A new object first, then the old one goes: a listing
                // always sees at least one lock of this session.
                if let Ok(new) = write_lock(&backend, &key, &lock) {
                    let _ = backend.delete(&old);
                    guard.name = Some(new);
                    guard.written = Instant::now();
                }
            }
        });
        Ok(LockGuard { state, thread: Some(thread), backend: self.backend.clone(), session })
    }

    /// Removes stale locks (all locks with `all`). Returns how many.
    pub fn unlock(&self, all: bool) -> Result<usize> {
        let now = Utc::now();
        let mut n = 0;
        for (name, l) in self.list_locks()? {
            if all || is_stale(&l, now) {
                self.backend.delete(&name)?;
                n += 1;
            }
        }
        Ok(n)
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        let (m, cv) = &*self.state;
        let name = m.lock().unwrap_or_else(|p| p.into_inner()).name.take();
        cv.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if let Some(name) = name {
            let _ = self.backend.delete(&name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::{CacheMode, InitOptions};

    #[test]
    fn exclusive_blocks_and_release_frees() {
        std::env::set_var("CAIRN_INSECURE_TEST_KDF", "1");
        let r =
            Repository::init(Backend::memory().unwrap(), b"pw", &InitOptions::default(), CacheMode::Memory).unwrap();
        let a = r.lock(LockKind::Shared, "backup").unwrap();
        let b = r.lock(LockKind::Shared, "backup").unwrap();
        assert_ne!(a.session(), b.session());
        assert_eq!(r.lock(LockKind::Exclusive, "repair").err().unwrap().kind(), ErrorKind::Locked);
        // Maintenance runs beside backups, but not beside another one.
        let m = r.lock(LockKind::Maintenance, "prune").unwrap();
        assert_eq!(r.lock(LockKind::Maintenance, "prune").err().unwrap().kind(), ErrorKind::Locked);
        let c = r.lock(LockKind::Shared, "backup").unwrap();
        a.ensure_fresh().unwrap();
        drop((a, b, c, m));
        let x = r.lock(LockKind::Exclusive, "repair").unwrap();
        assert_eq!(r.lock(LockKind::Shared, "backup").err().unwrap().kind(), ErrorKind::Locked);
        assert_eq!(r.lock(LockKind::Maintenance, "prune").err().unwrap().kind(), ErrorKind::Locked);
        drop(x);
        assert!(r.list_locks().unwrap().is_empty());
    }

    #[test]
    fn staleness() {
        let mut l = Lock {
            time: Utc::now().to_rfc3339(),
            exclusive: true,
            hostname: this_host(),
            username: String::new(),
            pid: std::process::id(),
            operation: "x".into(),
            kind: String::new(),
            session: String::new(),
        };
        assert!(!is_stale(&l, Utc::now()));
        l.time = (Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
        assert!(is_stale(&l, Utc::now()));
        l.time = Utc::now().to_rfc3339();
        l.pid = 0x7fff_fff0;
        assert!(is_stale(&l, Utc::now()));
    }
}
