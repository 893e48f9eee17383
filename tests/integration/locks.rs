//! Lock liveness (format-spec/08-locks.md, "Liveness"): `cairn unlock`
//! removes the lock of a backup killed in this PID namespace, and keeps the
//! lock of a backup running in another one (another container on the same
//! host name), where its pid means nothing.
//!
//! The second test runs the backup under `unshare --pid --fork
//! --mount-proc`, which needs root. Without it the test skips loudly, and
//! fails when `CI` is set.

use std::io::Write as _;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use cairn::format::lock::Lock;
use cairn::repo::{CacheMode, Repository};

use crate::common::{self, noise, sha256_hex, Repo};

/// The locks of a repository, read through the library.
fn locks(repo: &Repo) -> Vec<(String, Lock)> {
    let r = Repository::open(repo.backend(), repo.password().as_bytes(), CacheMode::Memory).expect("open repository");
    r.list_locks().expect("list locks")
}

/// Waits until the repository holds a lock (the backup has started).
fn wait_for_lock(repo: &Repo, child: &mut Child) -> (String, Lock) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(l) = locks(repo).into_iter().next() {
            return l;
        }
        if let Some(status) = child.try_wait().expect("try_wait") {
            panic!("the backup ended ({status}) before it took its lock");
        }
        assert!(Instant::now() < deadline, "the backup took no lock within a minute");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A stream backup reading `x` from a pipe that the test holds open.
fn stream_backup(mut cmd: Command) -> (Child, ChildStdin) {
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn");
    let stdin = child.stdin.take().expect("stdin");
    (child, stdin)
}

fn backup_args(repo: &Repo) -> Command {
    let mut c = repo.std_cmd_via(repo.url());
    c.args(["backup", "--json", "--stdin-filename", "x"]);
    c
}

fn unlock(repo: &Repo) -> String {
    repo.run(&["unlock"]).trim().to_string()
}

#[test]
fn unlock_removes_the_lock_of_a_killed_backup_in_this_namespace() {
    let repo = Repo::init();
    let (mut child, mut stdin) = stream_backup(backup_args(&repo));
    stdin.write_all(&noise(1 << 20, 1)).expect("feed the backup");
    let (name, lock) = wait_for_lock(&repo, &mut child);
    assert_eq!(lock.pid, child.id(), "{lock:?}");
    assert!(lock.boot_id.is_some() && lock.pid_ns.is_some() && lock.start_time.is_some(), "{lock:?}");
    // Running: its lock stays.
    assert_eq!(unlock(&repo), "removed 0 lock(s)");
    assert_eq!(locks(&repo).len(), 1);

    child.kill().expect("kill -9 the backup");
    child.wait().expect("reap the backup");
    drop(stdin);
    assert_eq!(unlock(&repo), "removed 1 lock(s)", "the lock {name} of a killed backup stayed");
    assert!(locks(&repo).is_empty());
}

/// Whether `unshare --pid --fork --mount-proc` works here; else why not.
fn unshare_unavailable() -> Option<String> {
    if !common::is_root() {
        return Some("not root".into());
    }
    match Command::new("unshare").args(["--pid", "--fork", "--mount-proc", "true"]).output() {
        Ok(o) if o.status.success() => None,
        Ok(o) => Some(format!("unshare failed: {}", String::from_utf8_lossy(&o.stderr).trim())),
        Err(e) => Some(format!("no unshare: {e}")),
    }
}

fn pid_exists(pid: u32) -> bool {
    // SAFETY: kill with signal 0 only checks the pid.
    let r = unsafe { libc::kill(pid as i32, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

/// A pid free in this namespace (so that judging the other namespace's
/// pid here would find no process).
fn free_pid() -> u32 {
    let max: u32 = std::fs::read_to_string("/proc/sys/kernel/pid_max").unwrap().trim().parse().unwrap();
    (300..max - 100).rev().step_by(7).find(|p| !pid_exists(*p)).expect("a free pid")
}

#[test]
fn unlock_keeps_the_lock_of_a_backup_in_another_pid_namespace() {
    let test = "locks::unlock_keeps_the_lock_of_a_backup_in_another_pid_namespace";
    if let Some(why) = unshare_unavailable() {
        assert!(std::env::var_os("CI").is_none(), "{test}: cannot make a PID namespace in CI: {why}");
        let _ = writeln!(std::io::stderr(), "\n*** {test}: skipped: {why} ***");
        return;
    }
    let repo = Repo::init();
    let data = noise(3 << 20, 2);

    // In a new PID namespace, `sh` (pid 1 there) starts the backup with a
    // pid that no process has out here, as another container's would.
    let pid = free_pid();
    let inner = backup_args(&repo);
    let mut c = Command::new("unshare");
    c.env_clear();
    for (k, v) in inner.get_envs() {
        if let Some(v) = v {
            c.env(k, v);
        }
    }
    c.args(["--pid", "--fork", "--mount-proc", "sh", "-c"])
        .arg(r#"echo "$0" > /proc/sys/kernel/ns_last_pid && "$@"; exit $?"#)
        .arg((pid - 1).to_string())
        .arg(inner.get_program())
        .args(inner.get_args());
    let (mut child, mut stdin) = stream_backup(c);
    stdin.write_all(&data[..1 << 20]).expect("feed the backup");
    let (name, lock) = wait_for_lock(&repo, &mut child);
    let own_ns = std::fs::metadata("/proc/self/ns/pid").map(|m| std::os::unix::fs::MetadataExt::ino(&m)).ok();
    assert_eq!(lock.pid, pid, "the backup did not get the pid chosen for it: {lock:?}");
    assert!(lock.pid_ns.is_some() && lock.pid_ns != own_ns, "{lock:?}");
    assert!(!pid_exists(pid), "pid {pid} was taken out here meanwhile");

    // Its pid is free here, but it runs: the lock stays.
    assert_eq!(unlock(&repo), "removed 0 lock(s)");
    let after: Vec<String> = locks(&repo).into_iter().map(|(n, _)| n).collect();
    assert_eq!(after, vec![name], "cairn unlock removed the lock of a running backup in another PID namespace");

    stdin.write_all(&data[1 << 20..]).expect("feed the rest");
    drop(stdin);
    let out = child.wait_with_output().expect("wait for the backup");
    assert!(out.status.success(), "the backup failed: {}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("backup --json");
    let id = v["snapshot_id"].as_str().expect("snapshot_id").to_string();
    assert!(locks(&repo).is_empty(), "the backup left its lock behind");

    let target = repo.dir.path().join("restored");
    repo.run(&["restore", &id, "--target", target.to_str().unwrap()]);
    let got = std::fs::read(target.join("x")).expect("restored x");
    assert_eq!(sha256_hex(&got), sha256_hex(&data));
    repo.run(&["check", "--read-data"]);
}
