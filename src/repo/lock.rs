//! Repository locks (format-spec/08-locks.md).
//!
//! A backup holds a shared lock; forget, prune and check hold a
//! maintenance lock (compatible with backups: prune deletes in two phases,
//! format-spec/10-write-order.md); repair holds an exclusive one. A lock is
//! refreshed every 5 minutes by a background thread and is stale after 30
//! minutes without refresh, or at once when its holder is known to be gone
//! ([`liveness`]: this host, boot and PID namespace, and no process with
//! that pid and start time).

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

/// What a reader can tell about the process holding a lock
/// (format-spec/08-locks.md, "Liveness").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Liveness {
    /// It runs here: same host, boot and PID namespace, and a process with
    /// its pid and its start time exists.
    Alive,
    /// It is gone: the lock was taken on this host, in an earlier boot, or
    /// in this boot and PID namespace by a process that no longer exists
    /// (or whose pid now belongs to a process started at another time).
    Dead,
    /// It cannot be told from here: another host, another PID namespace
    /// (another container), or a lock without the fields that tell. Only
    /// the refresh-time rule ([`STALE_AFTER`]) can make such a lock stale.
    Unknown,
}

/// Who the current process is, as far as locks tell, and what it can see.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Identity {
    pub hostname: String,
    pub machine_id: Option<String>,
    pub boot_id: Option<String>,
    /// Inode number of this process's PID namespace.
    pub pid_ns: Option<u64>,
    /// This process's start time, in clock ticks since boot.
    pub start_time: Option<u64>,
    /// When this boot began, in seconds since the epoch (`btime`).
    pub boot_time: Option<i64>,
    /// Whether `/proc` is the one of this process's PID namespace (its
    /// `self` is this process's pid), so that `/proc/<pid>` describes the
    /// process that `kill(pid, 0)` reaches.
    pub own_proc: bool,
}

impl Identity {
    /// The current process's identity (read once).
    pub fn current() -> &'static Identity {
        static ID: std::sync::OnceLock<Identity> = std::sync::OnceLock::new();
        ID.get_or_init(Identity::read)
    }

    fn read() -> Identity {
        use std::os::unix::fs::MetadataExt;
        let text = |p: &str| std::fs::read_to_string(p).ok().map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
        // A valid machine id is 32 hex digits ("uninitialized" and empty
        // files, seen in containers, are none).
        let machine_id = ["/etc/machine-id", "/var/lib/dbus/machine-id"]
            .into_iter()
            .filter_map(text)
            .find(|s| s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit()))
            .map(|s| s.to_ascii_lowercase());
        let boot_time = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|s| s.lines().find_map(|l| l.strip_prefix("btime ")).and_then(|v| v.trim().parse().ok()));
        let pid = std::process::id();
        Identity {
            hostname: this_host(),
            machine_id,
            boot_id: text("/proc/sys/kernel/random/boot_id"),
            pid_ns: std::fs::metadata("/proc/self/ns/pid").ok().map(|m| m.ino()),
            start_time: std::fs::read_to_string("/proc/self/stat").ok().and_then(|s| parse_stat(&s)).map(|(_, t)| t),
            boot_time,
            own_proc: std::fs::read_link("/proc/self").is_ok_and(|p| p.as_os_str() == pid.to_string().as_str()),
        }
    }
}

/// What `kill(pid, 0)` and `/proc/<pid>/stat` say about a pid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Process {
    /// No such process, or only a zombie waiting to be reaped.
    Gone,
    /// A process with that pid exists, started at this time (clock ticks
    /// since boot) if it could be read.
    Running { start_time: Option<u64> },
}

/// The state letter (field 3) and start time (field 22) of a
/// `/proc/<pid>/stat` line. The command name (field 2, in parentheses)
/// may hold spaces and parentheses: fields are counted after its last `)`.
fn parse_stat(s: &str) -> Option<(char, u64)> {
    let rest = &s[s.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace();
    let state = fields.next()?.chars().next()?;
    // Fields 4 to 21 lie between the state and the start time.
    let start = fields.nth(18)?.parse().ok()?;
    Some((state, start))
}

/// Looks up a pid of this PID namespace. `own_proc`: whether `/proc` is
/// this namespace's, so that its start time can be read.
pub fn probe(pid: u32, own_proc: bool) -> Process {
    let exists = |pid: i32| {
        // SAFETY: kill with signal 0 sends nothing; it only checks that the
        // pid exists. No memory is passed.
        let r = unsafe { libc::kill(pid, 0) };
        r == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
    };
    // Pid 0 and negative pids name process groups, not a process.
    let Some(p) = i32::try_from(pid).ok().filter(|p| *p > 0) else {
        return Process::Running { start_time: None };
    };
    if !exists(p) {
        return Process::Gone;
    }
    if !own_proc {
        return Process::Running { start_time: None };
    }
    match std::fs::read_to_string(format!("/proc/{p}/stat")).ok().as_deref().and_then(parse_stat) {
        Some(('Z' | 'X', _)) => Process::Gone,
        Some((_, t)) => Process::Running { start_time: Some(t) },
        // It ended meanwhile, or /proc hides other users' processes
        // (hidepid): ask kill again.
        None if !exists(p) => Process::Gone,
        None => Process::Running { start_time: None },
    }
}

/// Whether the process holding `lock` is alive, dead or cannot be told,
/// judged from this process ([`Identity::current`]). The one judgement of
/// a holder's liveness: `cairn unlock`, conflicts between locks and prune
/// all use it.
pub fn liveness(lock: &Lock) -> Liveness {
    let here = Identity::current();
    judge(lock, here, |pid| probe(pid, here.own_proc))
}

/// [`liveness`] as seen by `here`, which looks pids up with `probe`.
pub fn judge(lock: &Lock, here: &Identity, probe: impl Fn(u32) -> Process) -> Liveness {
    use Liveness::*;
    if lock.hostname != here.hostname {
        return Unknown;
    }
    if lock.machine_id.is_some() && lock.machine_id != here.machine_id {
        return Unknown;
    }
    // Locks without a boot id (older ones) cannot be placed: a container
    // elsewhere may have the same host name, and a pid means nothing
    // outside its namespace.
    let (Some(boot), Some(here_boot)) = (&lock.boot_id, &here.boot_id) else {
        return Unknown;
    };
    if boot != here_boot {
        // An earlier boot of this machine: its processes are all gone. The
        // machine id must say so (a container elsewhere may have the same
        // host name), and the lock must have been written before this boot
        // began (a clone of this machine, with its machine id and host
        // name, writes after it).
        let before_boot =
            DateTime::parse_from_rfc3339(&lock.time).ok().zip(here.boot_time).is_some_and(|(t, b)| t.timestamp() < b);
        return if lock.machine_id.is_some() && before_boot { Dead } else { Unknown };
    }
    if lock.pid_ns.is_none() || lock.pid_ns != here.pid_ns {
        return Unknown;
    }
    match (probe(lock.pid), lock.start_time) {
        (Process::Gone, _) => Dead,
        (Process::Running { start_time: Some(t) }, Some(s)) if t == s => Alive,
        // The pid was reused by a process started at another time.
        (Process::Running { start_time: Some(_) }, Some(_)) => Dead,
        (Process::Running { .. }, _) => Unknown,
    }
}

/// Whether a lock can be ignored: not refreshed for [`STALE_AFTER`] by
/// this host's clock, its time unreadable, or its holder [`Liveness::Dead`].
pub fn is_stale(lock: &Lock, now: DateTime<Utc>) -> bool {
    let Ok(t) = DateTime::parse_from_rfc3339(&lock.time) else {
        return true;
    };
    if now.signed_duration_since(t.with_timezone(&Utc)).to_std().unwrap_or_default() > STALE_AFTER {
        return true;
    }
    liveness(lock) == Liveness::Dead
}

/// Why a lock cannot be taken, and what will clear the lock that stands in
/// the way: its holder ending, the staleness rule (format-spec/08-locks.md)
/// or `cairn unlock --remove-all`.
pub fn locked_message(l: &Lock, live: Liveness) -> String {
    let how = match l.kind() {
        LockKind::Exclusive => " exclusively",
        LockKind::Maintenance => " for maintenance",
        LockKind::Shared => "",
    };
    let holder = format!("{} (pid {} on {}, lock written {})", l.operation, l.pid, l.hostname, l.time);
    let minutes = STALE_AFTER.as_secs() / 60;
    if live == Liveness::Alive {
        return format!(
            "repository is locked{how} by {holder}, which is running on this host: wait for it to end, \
             or pass --retry-lock (e.g. --retry-lock 30m) to wait for it"
        );
    }
    let expires = DateTime::parse_from_rfc3339(&l.time)
        .ok()
        .and_then(|t| chrono::Duration::from_std(STALE_AFTER).ok().map(|d| t.with_timezone(&Utc) + d))
        .map(|t| format!(" at {}", t.format("%Y-%m-%d %H:%M:%S UTC")))
        .unwrap_or_default();
    format!(
        "repository is locked{how} by {holder}; its holder refreshes it every {} minutes while it runs, so if it \
         is gone the lock goes stale{expires} ({minutes} minutes after it was written; --retry-lock waits for that), \
         or, once you are sure no cairn process uses the repository from {}, `cairn unlock --remove-all` removes it now",
        REFRESH.as_secs() / 60,
        l.hostname
    )
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
    /// Held while the lock object is deleted (release, or interruption),
    /// so that an exit on a signal waits for a delete in flight.
    releasing: Arc<Mutex<()>>,
    /// Deletes the lock object if the process is interrupted (SIGINT,
    /// SIGTERM, SIGHUP: [`crate::interrupt`]).
    _on_interrupt: crate::interrupt::Registration,
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
        let locked = |l: Lock| Error::new(ErrorKind::Locked, locked_message(&l, liveness(&l)));
        let session: [u8; 16] = rand::random();
        // Write first, then look for others (one listing instead of two; a
        // lock written by a process that then backs off is harmless).
        let me = Identity::current();
        let mut lock = Lock {
            time: Utc::now().to_rfc3339(),
            exclusive: kind == LockKind::Exclusive,
            hostname: me.hostname.clone(),
            username: crate::source::fsmeta::current_user(),
            pid: std::process::id(),
            operation: operation.to_string(),
            kind: kind.as_str().to_string(),
            session: hex::encode(session),
            machine_id: me.machine_id.clone(),
            boot_id: me.boot_id.clone(),
            pid_ns: me.pid_ns,
            start_time: me.start_time,
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
        let releasing = Arc::new(Mutex::new(()));
        let on_interrupt = {
            let (st, backend, releasing) = (state.clone(), self.backend.clone(), releasing.clone());
            crate::interrupt::on_interrupt(move || {
                // Waits for a release in progress to finish its delete.
                let _one = releasing.lock().unwrap_or_else(|p| p.into_inner());
                let (m, cv) = &*st;
                let name = m.lock().unwrap_or_else(|p| p.into_inner()).name.take();
                cv.notify_all();
                if let Some(name) = name {
                    let _ = backend.delete(&name);
                }
            })
        };
        Ok(LockGuard {
            state,
            releasing,
            thread: Some(thread),
            backend: self.backend.clone(),
            session,
            _on_interrupt: on_interrupt,
        })
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
        let releasing = self.releasing.clone();
        let _one = releasing.lock().unwrap_or_else(|p| p.into_inner());
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

    /// A lock as the current process would write it.
    fn own_lock() -> Lock {
        let me = Identity::current();
        Lock {
            time: Utc::now().to_rfc3339(),
            exclusive: true,
            hostname: me.hostname.clone(),
            pid: std::process::id(),
            operation: "x".into(),
            machine_id: me.machine_id.clone(),
            boot_id: me.boot_id.clone(),
            pid_ns: me.pid_ns,
            start_time: me.start_time,
            ..Default::default()
        }
    }

    #[test]
    fn a_lock_message_says_what_clears_it() {
        let mut l = own_lock();
        l.hostname = "db2".into();
        l.time = "2026-12-04T18:00:00+00:00".into();
        let m = locked_message(&l, Liveness::Unknown);
        assert!(m.contains("pid") && m.contains("db2"), "{m}");
        assert!(m.contains("stale at 2026-12-04 18:30:00 UTC"), "{m}");
        assert!(m.contains("30 minutes") && m.contains("`cairn unlock --remove-all`"), "{m}");
        assert!(!m.contains('\n'), "{m}");
        let m = locked_message(&l, Liveness::Alive);
        assert!(m.contains("running on this host") && m.contains("--retry-lock"), "{m}");
        assert!(!m.contains("--remove-all"), "{m}");
    }

    #[test]
    fn staleness() {
        let mut l = own_lock();
        assert!(!is_stale(&l, Utc::now()));
        l.time = (Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
        assert!(is_stale(&l, Utc::now()));
        l.time = "yesterday".into();
        assert!(is_stale(&l, Utc::now()));
        l.time = Utc::now().to_rfc3339();
        l.pid = 0x7fff_fff0;
        assert!(is_stale(&l, Utc::now()));
        // Another PID namespace: not stale until it misses its refreshes.
        l.pid_ns = l.pid_ns.map(|n| n + 1);
        assert!(!is_stale(&l, Utc::now()));
    }

    #[test]
    fn liveness_of_this_process_and_of_a_gone_one() {
        let me = Identity::current();
        assert!(me.boot_id.is_some() && me.pid_ns.is_some() && me.start_time.is_some(), "{me:?}");
        assert!(me.own_proc, "/proc is not this PID namespace's: {me:?}");
        let mut l = own_lock();
        assert_eq!(liveness(&l), Liveness::Alive);
        // A child that has exited and been reaped: its pid is free.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        l.pid = pid;
        assert_eq!(liveness(&l), Liveness::Dead);
        // This process, taken for one started at another time: a reused pid.
        l.pid = std::process::id();
        l.start_time = me.start_time.map(|t| t + 1);
        assert_eq!(liveness(&l), Liveness::Dead);
        // An old lock of this very process: nothing tells where it was taken.
        let old = Lock { machine_id: None, boot_id: None, pid_ns: None, start_time: None, ..own_lock() };
        assert_eq!(liveness(&old), Liveness::Unknown);
    }

    #[test]
    fn a_zombie_is_gone() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        // Not reaped yet: kill(pid, 0) still finds it, /proc says 'Z'.
        let deadline = Instant::now() + Duration::from_secs(10);
        while probe(pid, true) != Process::Gone {
            assert!(Instant::now() < deadline, "pid {pid} never became a zombie: {:?}", probe(pid, true));
            std::thread::sleep(Duration::from_millis(10));
        }
        // SAFETY: kill with signal 0 only checks the pid.
        assert_eq!(unsafe { libc::kill(pid as i32, 0) }, 0, "the zombie was reaped");
        child.wait().unwrap();
    }

    #[test]
    fn parse_stat_counts_fields_after_the_command_name() {
        let line = "4242 (a) b (c)) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 987654 20 21\n";
        assert_eq!(parse_stat(line), Some(('S', 987654)));
        assert_eq!(parse_stat("4242 (x) S 1 2"), None);
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn judge_table() {
        use Liveness::*;
        let now = Utc::now();
        let here = Identity {
            hostname: "h".into(),
            machine_id: Some("m".repeat(32)),
            boot_id: Some("boot-1".into()),
            pid_ns: Some(4026531836),
            start_time: Some(1),
            boot_time: Some((now - chrono::Duration::hours(2)).timestamp()),
            own_proc: true,
        };
        let base = Lock {
            time: now.to_rfc3339(),
            hostname: "h".into(),
            pid: 100,
            machine_id: here.machine_id.clone(),
            boot_id: here.boot_id.clone(),
            pid_ns: here.pid_ns,
            start_time: Some(5000),
            ..Default::default()
        };
        let before_boot = (now - chrono::Duration::hours(3)).to_rfc3339();
        let running = |t: u64| Process::Running { start_time: Some(t) };
        #[allow(clippy::type_complexity)]
        let cases: Vec<(&str, Box<dyn Fn(&mut Lock)>, Process, Liveness)> = vec![
            ("same namespace, running", Box::new(|_| {}), running(5000), Alive),
            ("same namespace, pid gone", Box::new(|_| {}), Process::Gone, Dead),
            ("pid reused by a later process", Box::new(|_| {}), running(7000), Dead),
            ("start time unreadable", Box::new(|_| {}), Process::Running { start_time: None }, Unknown),
            ("lock without a start time", Box::new(|l| l.start_time = None), running(5000), Unknown),
            ("other PID namespace, pid gone here", Box::new(|l| l.pid_ns = Some(4026532000)), Process::Gone, Unknown),
            ("other PID namespace, pid reused here", Box::new(|l| l.pid_ns = Some(4026532000)), running(1), Unknown),
            ("no PID namespace recorded", Box::new(|l| l.pid_ns = None), Process::Gone, Unknown),
            ("other host", Box::new(|l| l.hostname = "g".into()), Process::Gone, Unknown),
            ("other machine id", Box::new(|l| l.machine_id = Some("n".repeat(32))), Process::Gone, Unknown),
            ("no machine id recorded, same boot", Box::new(|l| l.machine_id = None), Process::Gone, Dead),
            (
                "earlier boot of this machine",
                Box::new(move |l| {
                    l.boot_id = Some("boot-0".into());
                    l.time = before_boot.clone();
                }),
                running(5000),
                Dead,
            ),
            (
                "other boot id, written after this boot began",
                Box::new(|l| l.boot_id = Some("boot-0".into())),
                Process::Gone,
                Unknown,
            ),
            (
                "other boot id, no machine id recorded",
                Box::new(|l| {
                    l.boot_id = Some("boot-0".into());
                    l.machine_id = None;
                    l.time = "2000-01-01T00:00:00+00:00".into();
                }),
                Process::Gone,
                Unknown,
            ),
            (
                "old lock without the fields",
                Box::new(|l| {
                    l.machine_id = None;
                    l.boot_id = None;
                    l.pid_ns = None;
                    l.start_time = None;
                }),
                Process::Gone,
                Unknown,
            ),
        ];
        for (what, edit, process, want) in cases {
            let mut l = base.clone();
            edit(&mut l);
            assert_eq!(judge(&l, &here, |_| process), want, "{what}");
        }
        // Where this process cannot read its own identity, nothing is dead.
        let blind = Identity { boot_id: None, pid_ns: None, machine_id: None, ..here.clone() };
        assert_eq!(judge(&base, &blind, |_| Process::Gone), Unknown);
        let other_ns = Identity { pid_ns: Some(1), ..here.clone() };
        assert_eq!(judge(&base, &other_ns, |_| Process::Gone), Unknown);
    }
}
