//! Operations beside one another, on real clusters: `pg backup` stopped at
//! each of its steps (`CAIRN_TEST_PAUSE_AT`, src/steps.rs; see
//! tests/integration/schedule.rs) while `forget --prune` removes an older
//! base backup and its WAL; a `wal-push` stopped before its PUT (S3 only:
//! a local push links the object into place atomically) while prune runs;
//! and `copy` of a repository holding base backups and WAL.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::cluster::*;
use super::repo::*;
use crate::common::{self, both_backends, Out, Where};

both_backends!(a_copied_repository_restores_to_a_point_in_time);

/// A cairn process stopped at a step.
struct Paused {
    child: Child,
    what: String,
    out: tempfile::NamedTempFile,
    err: tempfile::NamedTempFile,
}

fn state(pid: u32) -> Option<char> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    s.rsplit_once(')')?.1.trim_start().chars().next()
}

impl Paused {
    /// Starts `cmd` with `CAIRN_TEST_PAUSE_AT=step`; waits until it has
    /// stopped there (panics if it ends first: the step was not reached).
    fn start(mut cmd: Command, step: &str, what: &str) -> Paused {
        let (out, err) = (tempfile::NamedTempFile::new().unwrap(), tempfile::NamedTempFile::new().unwrap());
        cmd.env("CAIRN_TEST_PAUSE_AT", step)
            .stdin(Stdio::null())
            .stdout(out.reopen().unwrap())
            .stderr(err.reopen().unwrap());
        let child = cmd.spawn().expect("spawn cairn");
        let mut p = Paused { child, what: format!("{what} paused at {step}"), out, err };
        let t0 = Instant::now();
        loop {
            if p.child.try_wait().unwrap().is_some() {
                let o = p.collect();
                panic!("{}: ended ({:?}) without reaching its step:\n{}{}", p.what, o.code, o.stdout_str(), o.stderr);
            }
            if state(p.child.id()) == Some('T') {
                let e = std::fs::read_to_string(p.err.path()).unwrap_or_default();
                assert!(e.contains(&format!("paused at {step}")), "{}: stopped, but not at its step:\n{e}", p.what);
                return p;
            }
            assert!(t0.elapsed() < Duration::from_secs(120), "{}: never reached its step", p.what);
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn collect(&mut self) -> Out {
        let t0 = Instant::now();
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            if t0.elapsed() > Duration::from_secs(180) {
                let _ = self.child.kill();
                panic!("{}: did not finish after being resumed", self.what);
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        Out {
            code: status.code(),
            stdout: std::fs::read(self.out.path()).unwrap_or_default(),
            stderr: std::fs::read_to_string(self.err.path()).unwrap_or_default(),
        }
    }

    /// SIGCONT, then waits for it to end.
    fn resume(mut self) -> Out {
        // SAFETY: a signal to our own child, not reaped yet (its pid is ours).
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGCONT);
        }
        let o = self.collect();
        o.assert_no_panic(&self.what);
        o
    }
}

impl Drop for Paused {
    /// A failing test leaves no stopped process behind.
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            // SAFETY: as in resume: our own unreaped child.
            unsafe {
                libc::kill(self.child.id() as i32, libc::SIGCONT);
            }
            let _ = self.child.wait();
        }
    }
}

/// `forget` of every base backup but the newest, with `--prune`.
fn forget_all_but_newest(repo: &PgRepo) {
    repo.run(&["forget", "--tag", "pg-base", "--group-by", "", "--keep-last", "1", "--prune"]);
}

fn snapshot_ids(repo: &PgRepo) -> Vec<String> {
    repo.snapshots().iter().map(|s| scalar(&s["id"])).collect()
}

fn same_id(a: &str, b: &str) -> bool {
    !a.is_empty() && !b.is_empty() && (a.starts_with(b) || b.starts_with(a))
}

/// (g) `pg backup` stopped right after `pg_backup_start`, then (a second
/// run) right after `pg_backup_stop`, while `forget --prune` removes the
/// older of two base backups and the WAL before the kept one; resumed,
/// each backup commits; the repository checks with `--read-data`, and a
/// restore of the newest backup to the latest WAL has every row.
#[test]
fn pg_backup_paused_at_each_step_while_forget_prunes() {
    if !pg_enabled("pitr::concurrency::pg_backup_paused_at_each_step_while_forget_prunes") {
        return;
    }
    let repo = PgRepo::new(Where::Local);
    let src = Cluster::init(Opts { wal_segsize_mb: Some(1), ..repo.archiving() });
    src.q("CREATE TABLE t (id int PRIMARY KEY, note text)");
    insert(&src, "t", 1, 100);
    repo.base_backup(&src);
    insert(&src, "t", 101, 200);
    src.switch_and_archive();
    repo.base_backup(&src);
    let mut next = 201;
    let mut newest = String::new();
    for step in ["pg-backup:started", "pg-backup:stopped"] {
        insert(&src, "t", next, next + 99);
        next += 100;
        src.switch_and_archive();
        let before = snapshot_ids(&repo);
        assert_eq!(before.len(), 2, "two base backups before the schedule at {step}: {before:?}");
        let wal_before = repo.wal_segments();

        let mut cmd = repo.cmd(&["pg", "backup", "--pgdata", p(&src.data), "--fast", "--json"]);
        cmd.envs(src.libpq_env());
        let paused = Paused::start(cmd, step, "pg backup");
        // Rows committed while the backup is stopped (in progress at
        // "started"; after its end at "stopped").
        insert(&src, "t", next, next + 99);
        next += 100;
        forget_all_but_newest(&repo);
        let left = snapshot_ids(&repo);
        assert!(left.len() == 1 && same_id(&left[0], &before[1]), "forget kept {left:?}, not {}", before[1]);
        let pruned = wal_before.keys().filter(|s| !repo.wal_segments().contains_key(*s)).count();
        assert!(pruned > 0, "forget --prune at {step} pruned no WAL");

        let o = paused.resume();
        assert_eq!(o.code, Some(0), "pg backup resumed at {step}:\n{}{}\n{}", o.stdout_str(), o.stderr, src.log_tail());
        let v: serde_json::Value = serde_json::from_str(o.stdout_str().trim()).expect("pg backup --json");
        newest = scalar(&v["id"]);
        let after = snapshot_ids(&repo);
        assert_eq!(after.len(), 2, "{after:?}");
        assert!(after.iter().any(|i| same_id(i, &newest)), "the resumed backup {newest} is not listed: {after:?}");
        let c = repo.out(&["check", "--read-data"]);
        assert_eq!(c.code, Some(0), "check --read-data after the schedule at {step}:\n{}", c.stderr);
    }
    insert(&src, "t", next, next + 99);
    src.switch_and_archive();
    let want = digest(&src, "t");
    let count = ids(&src, "t");
    drop(src);

    let dst = Cluster::empty(repo.restoring());
    let said = repo.restore_ok(&dst, &[]);
    let short: String = newest.chars().take(8).collect();
    assert!(said.contains(&short), "the restore to latest did not take the newest backup {newest}:\n{said}");
    dst.start_promoted();
    assert_eq!(ids(&dst, "t"), count);
    assert_eq!(digest(&dst, "t"), want);
}

/// (g) On S3 a `wal-push` checks that the name is free (HEAD), then PUTs:
/// stopped between the two while `forget --prune` runs, it still archives
/// its segment, and the repository checks.
#[test]
fn wal_push_paused_before_its_put_while_forget_prunes_on_s3() {
    if !pg_enabled("pitr::concurrency::wal_push_paused_before_its_put_while_forget_prunes_on_s3") {
        return;
    }
    let Some(_lock) = common::s3_shared("pitr::concurrency::wal_push_paused_before_its_put_while_forget_prunes_on_s3")
    else {
        return;
    };
    let repo = PgRepo::new(Where::S3);
    let mut src = Cluster::init(Opts { wal_segsize_mb: Some(1), ..repo.archiving() });
    src.q("CREATE TABLE t (id int PRIMARY KEY, note text)");
    insert(&src, "t", 1, 100);
    repo.base_backup(&src);
    insert(&src, "t", 101, 200);
    src.switch_and_archive();
    repo.base_backup(&src);
    let before = snapshot_ids(&repo);

    // The next segment goes to a staging directory; pushed by hand.
    let stage = pg_tempdir();
    let st = p(stage.path());
    src.opts.archive_command = Some(format!("test ! -f {st}/%f && cp %p {st}/%f"));
    src.configure();
    src.q("SELECT pg_reload_conf()");
    std::thread::sleep(Duration::from_millis(500));
    insert(&src, "t", 201, 300);
    let seg = src.switch_and_archive();
    let staged = stage.path().join(&seg);
    assert!(staged.is_file(), "{seg} was not archived to the staging directory");
    assert!(!repo.wal_segments().contains_key(&seg), "{seg} is in the repository before the push");

    let mut cmd = repo.cmd(&["pg", "wal-push", p(&staged)]);
    cmd.current_dir(&src.data);
    let paused = Paused::start(cmd, "wal-push:before-put", "pg wal-push");
    forget_all_but_newest(&repo);
    let left = snapshot_ids(&repo);
    assert!(left.len() == 1 && same_id(&left[0], &before[1]), "forget kept {left:?}, not {}", before[1]);
    let o = paused.resume();
    assert_eq!(o.code, Some(0), "wal-push resumed:\n{}", o.stderr);
    assert!(repo.wal_segments().contains_key(&seg), "{seg} is not in the repository after the push");
    let c = repo.out(&["check", "--read-data"]);
    assert_eq!(c.code, Some(0), "check --read-data after the push beside prune:\n{}", c.stderr);

    // Archiving into the repository again: no gap, every row restored.
    src.opts.archive_command = Some(repo.archive_command());
    src.configure();
    src.q("SELECT pg_reload_conf()");
    std::thread::sleep(Duration::from_millis(500));
    insert(&src, "t", 301, 400);
    src.switch_and_archive();
    let o = repo.out(&["pg", "status"]);
    assert_eq!(o.code, Some(0), "pg status after the push beside prune:\n{}{}", o.stdout_str(), o.stderr);
    let fetched = stage.path().join("fetched");
    let o = repo.wal_cmd(&src, &["pg", "wal-fetch", &seg, p(&fetched)]);
    assert_eq!(o.code, Some(0), "wal-fetch {seg}:\n{}", o.stderr);
    assert!(std::fs::read(&fetched).unwrap() == std::fs::read(&staged).unwrap(), "{seg} fetched with other bytes");
}

/// (h) `cairn -r DST copy --from-repo SRC` of a repository with a base
/// backup and its WAL; with the source gone, a restore from the copy to a
/// time after the backup has exactly the rows of that time.
fn a_copied_repository_restores_to_a_point_in_time(w: Where) {
    if !pg_enabled(&format!("pitr::concurrency::a_copied_repository_restores_to_a_point_in_time ({w:?})")) {
        return;
    }
    let src_repo = PgRepo::new(Where::Local);
    let src = Cluster::init(Opts { wal_segsize_mb: Some(1), ..src_repo.archiving() });
    src.q("CREATE TABLE t (id int PRIMARY KEY, note text)");
    insert(&src, "t", 1, 100);
    src_repo.base_backup(&src);
    insert(&src, "t", 101, 200);
    let t = src.now();
    let at_t = digest(&src, "t");
    std::thread::sleep(Duration::from_millis(1100));
    insert(&src, "t", 201, 300);
    src.switch_and_archive();
    drop(src);

    let dst_repo = PgRepo::new(w);
    let o = dst_repo.out(&["copy", "--from-repo", src_repo.url(), "--from-password-file", p(&src_repo.password_file)]);
    assert_eq!(o.code, Some(0), "copy:\n{}{}", o.stdout_str(), o.stderr);
    assert_eq!(dst_repo.snapshots().len(), 1, "snapshots in the copy");
    let (from, to) = (src_repo.wal_segments(), dst_repo.wal_segments());
    assert!(from.keys().eq(to.keys()), "WAL segments: source {:?}, copy {:?}", from.keys(), to.keys());
    let o = dst_repo.out(&["check", "--read-data"]);
    assert_eq!(o.code, Some(0), "check --read-data of the copy:\n{}", o.stderr);
    // Again: nothing new, and nothing refused.
    let o = dst_repo.out(&["copy", "--from-repo", src_repo.url(), "--from-password-file", p(&src_repo.password_file)]);
    assert_eq!(o.code, Some(0), "a second copy:\n{}{}", o.stdout_str(), o.stderr);
    assert_eq!(dst_repo.snapshots().len(), 1, "snapshots in the copy after a second copy");
    assert!(dst_repo.wal_segments().keys().eq(from.keys()), "WAL segments after a second copy");
    std::fs::remove_dir_all(src_repo.repo.path()).expect("remove the source repository");

    let dst = dst_repo.restored(&["--time", &t, "--target-action", "promote"]);
    assert_eq!(ids(&dst, "t"), "200 1 200", "restore from the copy to {t}");
    assert_eq!(digest(&dst, "t"), at_t);
}

/// B3: a `pg backup` that dies between `pg_backup_start` and
/// `pg_backup_stop` (SIGKILL while stopped at `pg-backup:started`) ends its
/// session, so the server has no backup in progress; no snapshot is
/// written, and the next `pg backup` works.
#[test]
fn a_pg_backup_killed_after_the_start_leaves_no_backup_behind() {
    if !pg_enabled("pitr::concurrency::a_pg_backup_killed_after_the_start_leaves_no_backup_behind") {
        return;
    }
    let repo = PgRepo::new(Where::Local);
    let src = Cluster::init(Opts { wal_segsize_mb: Some(1), ..repo.archiving() });
    src.q("CREATE TABLE t (id int PRIMARY KEY, note text)");
    insert(&src, "t", 1, 100);
    let mut cmd = repo.cmd(&["pg", "backup", "--pgdata", p(&src.data), "--fast", "--json"]);
    cmd.envs(src.libpq_env());
    let mut paused = Paused::start(cmd, "pg-backup:started", "pg backup");
    let sessions = "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'cairn'";
    assert_eq!(src.q(sessions), "1", "the stopped pg backup has no session on the server");
    paused.child.kill().expect("SIGKILL the stopped pg backup");
    let o = paused.collect();
    assert_eq!(o.code, None, "pg backup was not killed: {:?}\n{}", o.code, o.stderr);
    let t0 = Instant::now();
    while src.q(sessions) != "0" {
        assert!(
            t0.elapsed() < Duration::from_secs(15),
            "the killed pg backup's session is still open 15 s later (its psql outlived it?): {}",
            src.q("SELECT pid, state, query FROM pg_stat_activity WHERE application_name = 'cairn'")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(repo.snapshots().is_empty(), "the killed backup wrote a snapshot");

    insert(&src, "t", 101, 200);
    repo.base_backup(&src);
    assert_eq!(repo.snapshots().len(), 1, "snapshots after the next backup");
    let c = repo.out(&["check", "--read-data"]);
    assert_eq!(c.code, Some(0), "check --read-data after the killed backup:\n{}", c.stderr);
}

/// W2 through `copy`: a destination that holds another content under the
/// name of one of the source's WAL files keeps it, and `copy` fails naming
/// the file, as `wal-push` does (format-spec/13-wal.md, Concurrency:
/// "copy ... pushed with the destination's [key], with W2's comparison").
#[test]
fn copy_refuses_a_wal_file_whose_name_the_destination_holds_with_other_content() {
    if !pg_enabled("pitr::concurrency::copy_refuses_a_wal_file_whose_name_the_destination_holds_with_other_content") {
        return;
    }
    let src_repo = PgRepo::new(Where::Local);
    let src = Cluster::init(Opts { wal_segsize_mb: Some(1), ..src_repo.archiving() });
    src.q("CREATE TABLE t (id int PRIMARY KEY, note text)");
    insert(&src, "t", 1, 100);
    let b = src_repo.base_backup(&src);
    let seg = scalar(&b["stop_wal"]);
    insert(&src, "t", 101, 200);
    src.switch_and_archive();

    // The destination holds `seg` with one byte changed.
    let dst_repo = PgRepo::new(Where::Local);
    let scratch = pg_tempdir();
    let other = scratch.path().join(&seg);
    let o = src_repo.wal_cmd(&src, &["pg", "wal-fetch", &seg, p(&other)]);
    assert_eq!(o.code, Some(0), "wal-fetch {seg}:\n{}", o.stderr);
    common::flip_middle(&other);
    let o = dst_repo.wal_cmd(&src, &["pg", "wal-push", p(&other)]);
    assert_eq!(o.code, Some(0), "wal-push of the changed {seg} into the destination:\n{}", o.stderr);

    let o = dst_repo.out(&["copy", "--from-repo", src_repo.url(), "--from-password-file", p(&src_repo.password_file)]);
    let kept = scratch.path().join("kept");
    let f = dst_repo.wal_cmd(&src, &["pg", "wal-fetch", &seg, p(&kept)]);
    assert_eq!(f.code, Some(0), "wal-fetch {seg} from the destination:\n{}", f.stderr);
    assert!(std::fs::read(&kept).unwrap() == std::fs::read(&other).unwrap(), "copy replaced the destination's {seg}");
    o.assert_failed(None, &format!("copy into a destination holding another {seg}"));
    assert!(o.stderr.contains(&seg), "the failure does not name {seg}:\n{}", o.stderr);
}
