//! Signals and kills, as cron and `timeout` deliver them: SIGTERM and
//! SIGINT remove the lock, stop a `--stdin-from-command` child (also one
//! that ignores SIGTERM), commit nothing half done and exit 143/130; a
//! signal after the snapshot was written says so. kill -9 leaves staging
//! files of puts in flight: `check` notes them and a prune with no backup
//! running removes them.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::{both_backends, noise, Repo, Where};

both_backends!(sigint_or_sigterm_during_a_backup_removes_the_lock_and_commits_nothing);

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 test path")
}

fn alive(pid: i32) -> bool {
    // A zombie is as good as gone (its parent has not reaped it yet).
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => s.rsplit_once(')').is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

fn wait_exit(child: &mut std::process::Child, what: &str) -> (Option<i32>, String) {
    let t0 = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                use std::io::Read;
                let _ = e.read_to_string(&mut err);
            }
            return (s.code(), err);
        }
        assert!(t0.elapsed() < Duration::from_secs(60), "{what}: cairn did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn signal(pid: u32, sig: i32) {
    // SAFETY: a signal to our own child (not yet reaped).
    assert_eq!(unsafe { libc::kill(pid as i32, sig) }, 0);
}

/// `backup --stdin-from-command` of a command that never ends (one that
/// ignores SIGTERM, too): SIGTERM ends cairn with 143, its lock is gone,
/// the child is stopped and no snapshot is written. The signal thread is
/// held a second between its clean-ups and its exit (a test hook): the
/// backup, which sees its child die meanwhile, must not report that as its
/// own failure (it did, with exit 1, once in CI under load).
#[test]
fn sigterm_stops_the_stdin_command_removes_the_lock_and_exits_143() {
    let repo = Repo::init();
    for (script, what) in [
        ("echo $$ > \"$0\"; head -c 3000000 /dev/urandom; exec sleep 1000", "a plain command"),
        (
            "trap '' TERM; echo $$ > \"$0\"; head -c 3000000 /dev/urandom; while :; do sleep 1; done",
            "one ignoring SIGTERM",
        ),
    ] {
        let pidfile = repo.dir.path().join("child.pid");
        let _ = std::fs::remove_file(&pidfile);
        let mut c = repo.std_cmd_via(repo.url());
        c.env("CAIRN_TEST_SIGNAL_EXIT_DELAY_MS", "1000");
        c.args(["backup", "--stdin-filename", "db.sql", "--stdin-from-command", "--", "sh", "-c", script, p(&pidfile)])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = c.spawn().unwrap();
        let t0 = Instant::now();
        while !pidfile.exists() || repo.list("locks").is_empty() {
            assert!(t0.elapsed() < Duration::from_secs(60), "{what}: the backup never got going");
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(300));
        let grandchild: i32 = std::fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
        assert!(alive(grandchild));
        signal(child.id(), libc::SIGTERM);
        let (code, err) = wait_exit(&mut child, what);
        assert_eq!(code, Some(143), "{what}: exit code; stderr:\n{err}");
        assert!(err.contains("interrupted by SIGTERM"), "{what}: {err}");
        assert!(!err.contains("panicked"), "{what}: {err}");
        assert!(repo.list("locks").is_empty(), "{what}: the lock stayed: {:?}", repo.list("locks"));
        assert!(repo.list("snapshots").is_empty(), "{what}: a snapshot was written");
        let t1 = Instant::now();
        while alive(grandchild) {
            assert!(t1.elapsed() < Duration::from_secs(10), "{what}: the command {grandchild} kept running");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let o = repo.out(&["check", "--read-data"]);
    assert_eq!(o.code, Some(0), "{}\n{}", o.stdout_str(), o.stderr);
}

/// SIGINT (Ctrl-C) with the packs stored and the snapshot not written:
/// 130, no lock, no snapshot, check passes, the next backup works. SIGTERM
/// after the snapshot was written: 143, and the message says it was saved.
fn sigint_or_sigterm_during_a_backup_removes_the_lock_and_commits_nothing(w: Where) {
    let repo = Repo::init_on(w);
    let src = tempfile::tempdir().unwrap();
    std::fs::write(src.path().join("f"), noise(2_000_000, 5)).unwrap();
    for (step, sig, code, saved) in
        [("backup:data-stored", libc::SIGINT, 130, false), ("backup:snapshot-written", libc::SIGTERM, 143, true)]
    {
        let before = repo.list("snapshots").len();
        let mut c = repo.std_cmd_via(repo.url());
        c.args(["backup", p(src.path())])
            .env("CAIRN_TEST_PAUSE_AT", step)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = c.spawn().unwrap();
        let t0 = Instant::now();
        loop {
            let st = std::fs::read_to_string(format!("/proc/{}/stat", child.id())).unwrap_or_default();
            if st.rsplit_once(')').is_some_and(|(_, r)| r.trim_start().starts_with('T')) {
                break;
            }
            assert!(child.try_wait().unwrap().is_none(), "{step}: backup ended before its step");
            assert!(t0.elapsed() < Duration::from_secs(60), "{step}: never reached");
            std::thread::sleep(Duration::from_millis(10));
        }
        signal(child.id(), sig);
        signal(child.id(), libc::SIGCONT);
        let (got, err) = wait_exit(&mut child, step);
        assert_eq!(got, Some(code), "{step}: exit code; stderr:\n{err}");
        assert!(repo.list("locks").is_empty(), "{step}: the lock stayed");
        assert_eq!(repo.list("snapshots").len(), before + usize::from(saved), "{step}: snapshots");
        assert_eq!(err.contains("was saved"), saved, "{step}: {err}");
        let o = repo.out(&["check", "--read-data"]);
        assert_eq!(o.code, Some(0), "{step}: {}\n{}", o.stdout_str(), o.stderr);
    }
    repo.run(&["backup", p(src.path())]);
}

/// kill -9 in the middle of a put leaves `<name>#<n>`: check notes it; a
/// prune keeps it while it is fresh (a put may be writing it) or while a
/// backup runs (it could be that backup's); a prune with no backup running
/// removes it once it has been left untouched for 15 minutes.
#[test]
fn staging_files_of_killed_puts_are_noted_by_check_and_removed_by_prune() {
    let repo = Repo::init();
    let src = tempfile::tempdir().unwrap();
    std::fs::write(src.path().join("f"), b"data\n").unwrap();
    repo.run(&["backup", p(src.path())]);
    let pack = repo.packs().into_iter().next().unwrap();
    let staging = pack.with_file_name(format!("{}#1", pack.file_name().unwrap().to_str().unwrap()));
    std::fs::write(&staging, noise(100_000, 1)).unwrap();
    // A fresh one could be a put in progress: no prune touches it.
    let o = repo.out(&["prune"]);
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    assert!(staging.exists(), "prune removed a staging file written just now");
    let hour_ago = filetime::FileTime::from_system_time(std::time::SystemTime::now() - Duration::from_secs(3600));
    filetime::set_file_mtime(&staging, hour_ago).unwrap();
    let o = repo.out(&["check", "--json"]);
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["staging_files"], 1, "{v}");
    assert_eq!(v["staging_bytes"], 100_000, "{v}");

    // A backup holding its lock (paused): the staging file may be its own.
    let mut c = repo.std_cmd_via(repo.url());
    c.args(["backup", p(src.path())])
        .env("CAIRN_TEST_PAUSE_AT", "backup:locked")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut b = c.spawn().unwrap();
    let t0 = Instant::now();
    while !std::fs::read_to_string(format!("/proc/{}/stat", b.id()))
        .unwrap_or_default()
        .rsplit_once(')')
        .is_some_and(|(_, r)| r.trim_start().starts_with('T'))
    {
        assert!(t0.elapsed() < Duration::from_secs(60), "backup never paused");
        std::thread::sleep(Duration::from_millis(10));
    }
    let o = repo.out(&["prune", "--json"]);
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    assert!(staging.exists(), "prune removed a staging file while a backup ran");
    signal(b.id(), libc::SIGCONT);
    assert_eq!(b.wait().unwrap().code(), Some(0));

    let o = repo.out(&["prune", "--json"]);
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["report"]["staging_removed"], 1, "{v}");
    assert!(!staging.exists(), "the staging file stayed");
    let o = repo.out(&["check", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["staging_files"], 0, "{v}");
}
