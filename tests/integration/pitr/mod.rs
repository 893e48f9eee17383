//! Point-in-time recovery against real PostgreSQL clusters: WAL archived by
//! `cairn pg wal-push` (PostgreSQL's `archive_command`), base backups by
//! `cairn pg backup`, restores by `cairn pg restore` (which writes the
//! `restore_command` calling `cairn pg wal-fetch`), then the restored
//! cluster started and its rows compared with what was committed at the
//! target.
//!
//! Every test makes its own throwaway clusters ([`Cluster`]): initdb in a
//! temporary directory, a unix socket in that directory only (no TCP), a
//! free port. Clusters run as the `postgres` OS user when the tests run as
//! root (PostgreSQL refuses root), else as the test's own user; so do the
//! cairn commands of these tests, since `archive_command` does: the
//! repository, its password file (`--password-file`) and its cache
//! (`--cache-dir`) belong to that user. The server is started with the
//! environment cairn needs (the test KDF, and the `AWS_*` credentials for a
//! repository on S3), which `archive_command` and `restore_command` inherit.
//! A cluster's `Drop` stops it (fast, then immediate, then SIGKILL), so a
//! failing test leaves no server behind.
//!
//! Gate: like `postgres.rs`, these tests need `CAIRN_TEST_PG` (they do not
//! use the shared server of `scripts/pg-server.sh`, only its binaries).
//! Without it they print a loud "skipped: CAIRN_TEST_PG not set" and pass,
//! except when `CI` is set: there they fail. The S3 variants also follow
//! `common::s3_shared`.
//!
//! Files: `cluster.rs` (the cluster harness), `repo.rs` (the repository
//! and cairn commands as the cluster's user); the core tests here,
//! `base_backups.rs` (tablespaces, `pg backup`'s refusals, `pg status`,
//! dry runs and target refusals, `--no-archive`) and `concurrency.rs`
//! (`pg backup` and `wal-push` paused beside prune, `copy`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::common::{self, both_backends, is_root, Where};

mod base_backups;
mod cluster;
mod concurrency;
mod repo;

use cluster::*;
use repo::*;

both_backends!(point_in_time_recovery_end_to_end);

#[test]
fn harness_clusters_archive_restore_and_leave_no_server_behind() {
    if !pg_enabled("pitr::harness_clusters_archive_restore_and_leave_no_server_behind") {
        return;
    }
    let archive = pg_tempdir();
    let arch = p(archive.path());
    let opts = Opts {
        archive_command: Some(format!("test ! -f {arch}/%f && cp %p {arch}/%f")),
        wal_segsize_mb: Some(1),
        ..Opts::default()
    };
    let a = Cluster::init(opts.clone());
    let a_dir = a.dir.path().to_path_buf();
    a.q("CREATE TABLE t (id int PRIMARY KEY, note text)");
    insert(&a, "t", 1, 100);

    // Two clusters side by side: their own ports and sockets.
    let b = Cluster::init(Opts { archive_command: Some("false".into()), ..opts.clone() });
    let b_dir = b.dir.path().to_path_buf();
    assert_ne!(a.port, b.port);
    assert_eq!(b.q("SELECT count(*) FROM pg_tables WHERE tablename = 't'"), "0", "b sees a's table");
    // A failing archive_command: failures are counted, nothing archived.
    let seg = b.switch_wal();
    let arch_b = b.wait_failures(1);
    assert_eq!(arch_b.last_failed_wal, seg);
    assert!(b.ready(&seg), "{seg} should still wait for archiving");
    // Drop on a panic: the server is stopped all the same.
    let panicked = std::thread::spawn(move || {
        let _b = b;
        panic!("a test failing with its cluster running");
    })
    .join();
    assert!(panicked.is_err());
    assert_no_processes(&b_dir);

    // A base backup (pg_basebackup, not cairn), then WAL archived by cp.
    let base = pg_tempdir();
    let mut bb = as_pg(&pg_bin("pg_basebackup"));
    bb.envs(a.libpq_env()).args(["-D", p(&base.path().join("data")), "-X", "none", "-c", "fast"]);
    run_ok(bb, "pg_basebackup");
    insert(&a, "t", 101, 200);
    let lsn = a.q("SELECT pg_current_wal_lsn()");
    insert(&a, "t", 201, 300);
    let seg1 = a.switch_wal();
    a.wait_archived(&seg1);
    assert!(archive.path().join(&seg1).is_file(), "{seg1} is not in the archive");
    assert_eq!(std::fs::metadata(archive.path().join(&seg1)).unwrap().len(), 1 << 20, "a 1 MB segment");
    let seg2 = a.switch_and_archive();
    assert!(seg2 > seg1, "{seg2} after {seg1}");
    let stats = a.archiver();
    assert_eq!((stats.failed_count, stats.last_archived_wal.as_str()), (0, seg2.as_str()), "{stats:?}");
    assert!(stats.archived_count >= 2, "{stats:?}");
    assert_eq!(a.timeline(), 1);

    // The restore side of the harness: a restored data directory is
    // reconfigured, started, and promoted at the target.
    let r = Cluster::empty(Opts { wal_segsize_mb: Some(1), ..Opts::default() });
    common::copy_dir(&base.path().join("data"), &r.data);
    let chown = Command::new("chown").args(["-R", &format!("{PG_USER}:"), p(&r.data)]).status();
    assert!(!is_root() || chown.is_ok_and(|s| s.success()), "chown -R the restored data");
    pg_write(&r.data.join("recovery.signal"), b"");
    let auto = std::fs::read_to_string(r.data.join("postgresql.auto.conf")).unwrap_or_default();
    let recovery = format!(
        "{auto}restore_command = 'cp {arch}/%f %p'\nrecovery_target_lsn = '{lsn}'\nrecovery_target_action = 'promote'\n"
    );
    pg_write(&r.data.join("postgresql.auto.conf"), recovery.as_bytes());
    r.start_promoted();
    assert_eq!(ids(&r, "t"), "200 1 200", "rows at the target LSN");
    assert_eq!(r.timeline(), 2);
    assert!(r.running());
    let r_dir = r.dir.path().to_path_buf();

    a.stop();
    assert!(!a.running());
    a.start();
    assert_eq!(ids(&a, "t"), "300 1 300");
    drop(a);
    drop(r);
    assert_no_processes(&a_dir);
    assert_no_processes(&r_dir);
}

// ----- the cairn tests (need `cairn pg`)

/// 1: archive, base backup, load, time T, drop a table, more load; a
/// restore to T has exactly the rows of T, the dropped table included.
fn point_in_time_recovery_end_to_end(w: Where) {
    if !pg_enabled(&format!("pitr::point_in_time_recovery_end_to_end ({w:?})")) {
        return;
    }
    let repo = PgRepo::new(w);
    // PostgreSQL's default 16 MB segments here; 1 MB in the other tests.
    let src = Cluster::init(repo.archiving());
    src.q("CREATE TABLE kept (id int PRIMARY KEY, note text); CREATE TABLE dropped (id int PRIMARY KEY, note text)");
    insert(&src, "kept", 1, 1000);
    insert(&src, "dropped", 1, 500);

    let b = repo.base_backup(&src);
    assert_eq!(scalar(&b["timeline"]), "1");
    let id = scalar(&b["id"]);
    let snap = repo
        .snapshots()
        .into_iter()
        .find(|s| scalar(&s["id"]).starts_with(&id) || id.starts_with(&scalar(&s["id"])))
        .unwrap_or_else(|| panic!("the base backup {id} is not in snapshots --json"));
    let tags = snap["tags"].as_array().cloned().unwrap_or_default();
    assert!(tags.iter().any(|t| t == "pg-base"), "tags of a base backup: {snap}");
    assert!(snap["pg"].is_object(), "a base backup's snapshot has no pg object: {snap}");
    assert_eq!(scalar(&snap["pg"]["system_id"]), src.system_id(), "{snap}");

    insert(&src, "kept", 1001, 2000);
    insert(&src, "dropped", 501, 800);
    let t = src.now();
    let at_t = digests(&src, &["kept", "dropped"]);
    std::thread::sleep(Duration::from_millis(1100));
    src.q("DROP TABLE dropped");
    insert(&src, "kept", 2001, 3000);
    src.switch_and_archive();

    let dst = Cluster::empty(repo.restoring());
    repo.restore_ok(&dst, &["--time", &t, "--target-action", "promote"]);
    for f in ["backup_label", "recovery.signal"] {
        assert!(dst.data.join(f).is_file(), "pg restore wrote no {f}");
    }
    let auto = std::fs::read_to_string(dst.data.join("postgresql.auto.conf")).expect("postgresql.auto.conf");
    for want in ["restore_command", "wal-fetch", "recovery_target_time"] {
        assert!(auto.contains(want), "postgresql.auto.conf lacks {want:?}:\n{auto}");
    }
    // The target directory is no longer empty: a second restore is refused.
    let again = repo.restore(&dst, &["--time", &t]);
    again.assert_failed(None, "pg restore into a non-empty directory");

    dst.start_promoted();
    assert_eq!(digests(&dst, &["kept", "dropped"]), at_t, "rows after the restore to {t}");
    assert_eq!(ids(&dst, "kept"), "2000 1 2000");
    assert_eq!(ids(&dst, "dropped"), "800 1 800");
    assert_eq!(dst.timeline(), 2, "a promoted restore starts timeline 2");
}

/// 2: restores to an LSN, to a named restore point and to the latest WAL.
#[test]
fn restores_to_an_lsn_a_restore_point_and_the_latest_wal() {
    if !pg_enabled("pitr::restores_to_an_lsn_a_restore_point_and_the_latest_wal") {
        return;
    }
    let repo = PgRepo::new(Where::Local);
    let src = Cluster::init(Opts { wal_segsize_mb: Some(1), ..repo.archiving() });
    src.q("CREATE TABLE t (id int PRIMARY KEY, note text)");
    insert(&src, "t", 1, 100);
    repo.base_backup(&src);
    insert(&src, "t", 101, 200);
    let lsn = src.q("SELECT pg_current_wal_lsn()");
    insert(&src, "t", 201, 300);
    src.q("SELECT pg_create_restore_point('after_300')");
    insert(&src, "t", 301, 400);
    src.switch_and_archive();
    let all = digest(&src, "t");

    let at_lsn = repo.restored(&["--lsn", &lsn, "--target-action", "promote"]);
    assert_eq!(ids(&at_lsn, "t"), "200 1 200", "restore to LSN {lsn}");
    drop(at_lsn);
    let at_name = repo.restored(&["--name", "after_300", "--target-action", "promote"]);
    assert_eq!(ids(&at_name, "t"), "300 1 300", "restore to the restore point");
    drop(at_name);
    let latest = repo.restored(&[]);
    assert_eq!(ids(&latest, "t"), "400 1 400", "restore to the latest WAL");
    assert_eq!(digest(&latest, "t"), all);
}

/// 3: a promoted restore starts timeline 2, which is archived into the same
/// repository; a restore to latest follows it (its `.history` fetched) and
/// starts timeline 3.
#[test]
fn a_restore_follows_the_timeline_of_an_earlier_promoted_restore() {
    if !pg_enabled("pitr::a_restore_follows_the_timeline_of_an_earlier_promoted_restore") {
        return;
    }
    let repo = PgRepo::new(Where::Local);
    let src = Cluster::init(Opts { wal_segsize_mb: Some(1), ..repo.archiving() });
    src.q("CREATE TABLE t (id int PRIMARY KEY, note text)");
    insert(&src, "t", 1, 100);
    repo.base_backup(&src);
    insert(&src, "t", 101, 200);
    let lsn = src.q("SELECT pg_current_wal_lsn()");
    insert(&src, "t", 201, 300); // timeline 1 only
    src.switch_and_archive();
    drop(src);

    // Timeline 2: restored to the LSN, promoted, written to, archived.
    let tl2 = Cluster::empty(repo.archiving());
    repo.restore_ok(&tl2, &["--lsn", &lsn, "--target-action", "promote"]);
    tl2.start_promoted();
    assert_eq!(tl2.timeline(), 2);
    assert_eq!(ids(&tl2, "t"), "200 1 200");
    tl2.q("INSERT INTO t SELECT i, 'timeline 2' FROM generate_series(1001, 1100) i");
    let seg = tl2.switch_and_archive();
    assert!(seg.starts_with("00000002"), "{seg}");
    assert_eq!(tl2.archiver().failed_count, 0, "{}", tl2.log_tail());
    let want = digest(&tl2, "t");
    drop(tl2);
    let objects = repo.wal_objects();
    assert!(objects.iter().any(|o| o.contains("00000002.history")), "no 00000002.history archived: {objects:?}");

    // From the same repository, to latest: timeline 2's rows, timeline 3.
    let tl3 = repo.restored(&[]);
    assert_eq!(digest(&tl3, "t"), want, "rows of timeline 2");
    assert_eq!(ids(&tl3, "t"), "300 1 1100");
    assert_eq!(tl3.q("SELECT count(*) FROM t WHERE id BETWEEN 201 AND 300"), "0", "timeline 1's rows past the fork");
    assert_eq!(tl3.timeline(), 3);
    let files = pg_wal_files(&tl3);
    assert!(files.iter().any(|f| f == "00000002.history"), "00000002.history not fetched: {files:?}");
    let hist = tl3.q("SELECT pg_read_file('pg_wal/00000003.history')");
    assert_eq!(hist.lines().filter(|l| !l.trim().is_empty()).count(), 2, "timeline 3's history:\n{hist}");
}

/// `pg status`'s `reachable` ("the last segment a restore of the newest
/// base backup can replay without a gap") after a promoted restore forked
/// timeline 2 off timeline 1, which then went on archiving further: a
/// restore follows timeline 2 (R5), so the point it reaches is timeline
/// 2's last segment, not timeline 1's.
#[test]
fn pg_status_reachable_follows_the_timeline_a_restore_takes() {
    if !pg_enabled("pitr::pg_status_reachable_follows_the_timeline_a_restore_takes") {
        return;
    }
    let repo = PgRepo::new(Where::Local);
    let src = Cluster::init(Opts { wal_segsize_mb: Some(1), ..repo.archiving() });
    src.q("CREATE TABLE t (id int PRIMARY KEY, note text)");
    insert(&src, "t", 1, 100);
    repo.base_backup(&src);
    insert(&src, "t", 101, 200);
    let lsn = src.q("SELECT pg_current_wal_lsn()");
    let mut tl1_last = String::new();
    for i in 2..=5u32 {
        insert(&src, "t", i * 100 + 1, i * 100 + 100);
        tl1_last = src.switch_and_archive();
    }
    drop(src);

    let tl2 = Cluster::empty(repo.archiving());
    repo.restore_ok(&tl2, &["--lsn", &lsn, "--target-action", "promote"]);
    tl2.start_promoted();
    assert_eq!(tl2.timeline(), 2);
    let tl2_last = tl2.switch_and_archive();
    drop(tl2);
    assert!(tl2_last.starts_with("00000002") && tl2_last[8..] < tl1_last[8..], "{tl2_last} vs {tl1_last}");

    // Where a restore goes: timeline 2.
    let scratch = pg_tempdir();
    let o = repo.out(&["pg", "restore", "--pgdata", p(&scratch.path().join("d")), "--dry-run"]);
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    assert!(
        o.stdout_str().contains("recovery_target_timeline = '2'"),
        "the restore does not follow timeline 2:\n{}",
        o.stdout_str()
    );
    let o = repo.out(&["pg", "status", "--json"]);
    assert_eq!(o.code, Some(0), "pg status:\n{}{}", o.stdout_str(), o.stderr);
    let v: Value = serde_json::from_str(o.stdout_str().trim()).expect("pg status --json is JSON");
    assert_eq!(scalar(&v[0]["reachable"]), tl2_last, "reachable, with timeline 1 archived up to {tl1_last}: {v}");
}

/// 4: pushing an archived file again: the same bytes succeed, other bytes
/// under that name fail; a fetch of a missing file exits 1.
#[test]
fn pushing_a_wal_file_again_succeeds_only_with_the_same_content() {
    if !pg_enabled("pitr::pushing_a_wal_file_again_succeeds_only_with_the_same_content") {
        return;
    }
    let repo = PgRepo::new(Where::Local);
    let src = Cluster::init(Opts { wal_segsize_mb: Some(1), ..repo.archiving() });
    src.q("CREATE TABLE t (id int PRIMARY KEY, note text)");
    insert(&src, "t", 1, 1000);
    let seg = src.switch_and_archive();
    let work = pg_tempdir();
    let original = std::fs::read(src.data.join("pg_wal").join(&seg)).expect("read the archived segment in pg_wal");

    // wal-fetch gives the bytes back.
    let fetched = work.path().join("fetched");
    let o = repo.wal_cmd(&src, &["pg", "wal-fetch", &seg, p(&fetched)]);
    assert_eq!(o.code, Some(0), "wal-fetch {seg}:\n{}", o.stderr);
    assert!(std::fs::read(&fetched).expect("fetched file") == original, "wal-fetch of {seg} gave other bytes");

    // Same name, same content: success.
    let dir = pg_dir(&work.path().join("again"));
    let copy = dir.join(&seg);
    pg_write(&copy, &original);
    let o = repo.wal_cmd(&src, &["pg", "wal-push", p(&copy)]);
    assert_eq!(o.code, Some(0), "a second push of {seg} with the same content:\n{}", o.stderr);

    // Same name, other content: refused, and the stored file is unchanged.
    common::flip_middle(&copy);
    let o = repo.wal_cmd(&src, &["pg", "wal-push", p(&copy)]);
    o.assert_failed(None, "a push of a changed file under an archived name");
    assert!(o.stderr.to_lowercase().contains("differ"), "the refusal does not say the content differs:\n{}", o.stderr);
    let fetched2 = work.path().join("fetched2");
    let o = repo.wal_cmd(&src, &["pg", "wal-fetch", &seg, p(&fetched2)]);
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    assert!(std::fs::read(&fetched2).unwrap() == original, "the refused push changed the stored {seg}");

    // A file never archived: exit 1, nothing written.
    let missing = work.path().join("missing");
    let o = repo.wal_cmd(&src, &["pg", "wal-fetch", "0000000100000000000000FE", p(&missing)]);
    assert_eq!(o.code, Some(1), "wal-fetch of a missing file: {}", o.stderr);
    assert!(!missing.exists(), "wal-fetch of a missing file wrote {}", missing.display());
    assert!(o.stderr.trim().is_empty(), "wal-fetch of a missing segment is not quiet (W4):\n{}", o.stderr);
    // PostgreSQL asks for the history files of timelines that never were.
    let o = repo.wal_cmd(&src, &["pg", "wal-fetch", "00000009.history", p(&missing)]);
    assert_eq!(o.code, Some(1), "wal-fetch of a missing history file: {}", o.stderr);
    assert!(o.stderr.trim().is_empty(), "wal-fetch of a missing history file is not quiet (W4):\n{}", o.stderr);
    assert!(!missing.exists(), "wal-fetch of a missing history file wrote {}", missing.display());
    // Every other failure exits 255, so that recovery stops (W4): a wrong
    // password, a destination that cannot be written.
    let wrong = work.path().join("wrong-password");
    pg_write(&wrong, b"not the password\n");
    let mut cmd = as_pg(Path::new(repo::cairn_bin()));
    cmd.envs(repo.env()).current_dir(&src.data);
    cmd.args(["-r", repo.url(), "--password-file", p(&wrong), "--cache-dir", p(&repo.repo.cache())]);
    cmd.args(["pg", "wal-fetch", &seg, p(&work.path().join("w"))]);
    let o = run(cmd);
    assert_eq!(o.code, Some(255), "wal-fetch with a wrong password:\n{}", o.stderr);
    assert!(!work.path().join("w").exists(), "wal-fetch with a wrong password wrote its file");
    let o = repo.wal_cmd(&src, &["pg", "wal-fetch", &seg, p(&work.path().join("no-such-dir").join("x"))]);
    assert_eq!(o.code, Some(255), "wal-fetch into a missing directory:\n{}", o.stderr);
    assert_eq!(src.archiver().failed_count, 0);
}

/// 5: a WAL object deleted from the repository: `pg status` names the gap,
/// and a restore past it does not reach its target (bounded waits).
#[test]
fn a_missing_wal_segment_is_reported_and_stops_recovery() {
    if !pg_enabled("pitr::a_missing_wal_segment_is_reported_and_stops_recovery") {
        return;
    }
    let repo = PgRepo::new(Where::Local);
    let src = Cluster::init(Opts { wal_segsize_mb: Some(1), ..repo.archiving() });
    src.q("CREATE TABLE t (id int PRIMARY KEY, note text)");
    insert(&src, "t", 1, 100);
    repo.base_backup(&src);
    let mut segs = Vec::new();
    for i in 1..=3u32 {
        insert(&src, "t", i * 100 + 1, i * 100 + 100);
        segs.push(src.switch_and_archive());
    }
    let lsn = src.q("SELECT pg_current_wal_lsn()");
    src.switch_and_archive();
    let o = repo.out(&["pg", "status"]);
    assert_eq!(o.code, Some(0), "pg status before the damage:\n{}{}", o.stdout_str(), o.stderr);

    let gone = &segs[1];
    let sysid = src.system_id();
    let object = repo
        .wal_segments()
        .get(gone)
        .cloned()
        .unwrap_or_else(|| panic!("no object for {gone} under wal/ (by name): {:?}", repo.wal_objects()));
    assert!(object.starts_with(&format!("wal/{sysid}/")), "{object} is not under wal/{sysid}/");
    std::fs::remove_file(repo.repo.path().join(&object)).expect("delete the WAL object");

    let o = repo.out(&["pg", "status"]);
    o.assert_failed(None, "pg status with a missing segment");
    let said = format!("{}{}", o.stdout_str(), o.stderr);
    assert!(said.contains(gone.as_str()), "pg status does not name the missing {gone}:\n{said}");

    let dst = Cluster::empty(repo.restoring());
    let o = repo.restore(&dst, &["--lsn", &lsn, "--target-action", "promote"]);
    if o.code != Some(0) {
        // cairn may refuse up front; then it must say why.
        let said = format!("{}{}", o.stdout_str(), o.stderr);
        assert!(said.contains(gone.as_str()), "pg restore failed without naming {gone}:\n{said}");
        eprintln!("pg restore refused the restore past the missing {gone}:\n{said}");
        return;
    }
    dst.configure();
    let outcome = dst.try_start().and_then(|()| dst.wait_promoted(WAIT));
    let err = outcome.expect_err("a recovery past a missing segment reached its target");
    assert!(
        err.contains("recovery ended before configured recovery target was reached")
            || err.contains("WAL ends before")
            || err.contains(gone.as_str()),
        "the recovery failed, but not on the missing WAL:\n{err}"
    );
    assert!(!dst.running(), "the failed recovery left a server running");
    eprintln!("the recovery past the missing {gone} failed:\n{err}");
}

/// 6: while the repository is unreachable, pushes fail and PostgreSQL
/// retries; once it is back, archiving catches up and nothing is lost.
#[test]
fn archiving_catches_up_after_the_repository_was_unreachable() {
    if !pg_enabled("pitr::archiving_catches_up_after_the_repository_was_unreachable") {
        return;
    }
    let repo = PgRepo::new(Where::Local);
    let src = Cluster::init(Opts { wal_segsize_mb: Some(1), ..repo.archiving() });
    src.q("CREATE TABLE t (id int PRIMARY KEY, note text)");
    insert(&src, "t", 1, 100);
    repo.base_backup(&src);
    insert(&src, "t", 101, 200);
    src.switch_and_archive();

    let path = repo.repo.path();
    let away = path.with_extension("away");
    std::fs::rename(&path, &away).expect("move the repository away");
    let before = src.archiver().failed_count;
    insert(&src, "t", 201, 300);
    let stuck = src.switch_wal();
    let a = src.wait_failures(before + 2);
    assert_eq!(a.last_failed_wal, stuck, "{a:?}");
    assert!(src.ready(&stuck), "{stuck} was archived without a repository");
    // The same push by hand: a non-zero exit and a reason.
    let copy = pg_dir(&repo.repo.dir.path().join("copy")).join(&stuck);
    pg_write(&copy, &std::fs::read(src.data.join("pg_wal").join(&stuck)).expect("read the stuck segment"));
    let o = repo.wal_cmd(&src, &["pg", "wal-push", p(&copy)]);
    o.assert_failed(None, "wal-push without the repository");
    assert!(o.stderr.contains("error"), "no error message:\n{}", o.stderr);

    std::fs::rename(&away, &path).expect("bring the repository back");
    insert(&src, "t", 301, 400);
    let last = src.switch_and_archive();
    assert!(!src.ready(&stuck));
    let segs = repo.wal_segments();
    for s in [&stuck, &last] {
        assert!(segs.contains_key(s.as_str()), "{s} is not in the repository: {:?}", segs.keys());
    }
    let o = repo.out(&["pg", "status"]);
    assert_eq!(o.code, Some(0), "pg status after the catch-up:\n{}{}", o.stdout_str(), o.stderr);
    let want = digest(&src, "t");
    drop(src);
    let latest = repo.restored(&[]);
    assert_eq!(ids(&latest, "t"), "400 1 400");
    assert_eq!(digest(&latest, "t"), want);
}

/// 7: `wal-push` killed (SIGKILL) before each of its writes in turn; the
/// retry succeeds, and the repository checks with `--read-data`.
#[test]
fn a_killed_wal_push_is_retried_and_the_repository_checks() {
    if !pg_enabled("pitr::a_killed_wal_push_is_retried_and_the_repository_checks") {
        return;
    }
    let repo = PgRepo::new(Where::Local);
    // Real segments, archived by cp to a staging directory; pushed by hand.
    let stage = pg_tempdir();
    let st = p(stage.path());
    let src = Cluster::init(Opts {
        archive_command: Some(format!("test ! -f {st}/%f && cp %p {st}/%f")),
        wal_segsize_mb: Some(1),
        ..Opts::default()
    });
    src.q("CREATE TABLE t (id int PRIMARY KEY, note text)");
    for i in 0..8u32 {
        insert(&src, "t", i * 100 + 1, i * 100 + 100);
        src.switch_and_archive();
    }
    let mut staged: Vec<PathBuf> = std::fs::read_dir(stage.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|f| segment_of(&common::file_name(f)).is_some())
        .collect();
    staged.sort();
    assert!(staged.len() >= 8, "{staged:?}");

    let mut k = 1;
    let mut kills = 0;
    for f in &staged {
        let mut cmd = repo.cmd(&["pg", "wal-push", p(f)]);
        cmd.current_dir(&src.data);
        if k > 0 {
            cmd.env("CAIRN_TEST_KILL_BEFORE_WRITE", k.to_string());
        }
        let o = run(cmd);
        o.assert_no_panic("a killed wal-push");
        match o.code {
            None => {
                kills += 1;
                k += 1;
                let o = repo.wal_cmd(&src, &["pg", "wal-push", p(f)]);
                assert_eq!(o.code, Some(0), "the retry of a push killed before write {}:\n{}", k - 1, o.stderr);
                let c = repo.out(&["check", "--read-data"]);
                assert_eq!(c.code, Some(0), "check after a push killed before write {}:\n{}", k - 1, c.stderr);
            }
            Some(0) => k = 0, // fewer writes than k: every point is done
            other => panic!("wal-push with a kill before write {k}: exit {other:?}\n{}", o.stderr),
        }
    }
    assert!(
        kills >= 1,
        "CAIRN_TEST_KILL_BEFORE_WRITE=1 killed no wal-push: a binary without the test-hooks feature, \
         or a wal-push whose writes bypass the hooked backend"
    );
    eprintln!("wal-push killed before each of its writes 1..={kills}");
    let o = repo.out(&["check", "--read-data"]);
    assert_eq!(o.code, Some(0), "check --read-data:\n{}", o.stderr);
    let o = repo.out(&["pg", "status"]);
    assert_eq!(o.code, Some(0), "pg status:\n{}{}", o.stdout_str(), o.stderr);
    let out = pg_tempdir();
    for f in &staged {
        let name = common::file_name(f);
        let to = out.path().join(&name);
        let o = repo.wal_cmd(&src, &["pg", "wal-fetch", &name, p(&to)]);
        assert_eq!(o.code, Some(0), "wal-fetch {name}: {}", o.stderr);
        assert!(std::fs::read(&to).unwrap() == std::fs::read(f).unwrap(), "{name} fetched with other bytes");
    }
}

/// 8: two base backups; `forget --keep-last 1 --prune` on `pg-base` drops
/// the older one and the WAL only it needed; PITR from the kept one works.
#[test]
fn forget_prunes_the_wal_before_the_kept_base_backup() {
    if !pg_enabled("pitr::forget_prunes_the_wal_before_the_kept_base_backup") {
        return;
    }
    let repo = PgRepo::new(Where::Local);
    let src = Cluster::init(Opts { wal_segsize_mb: Some(1), ..repo.archiving() });
    src.q("CREATE TABLE t (id int PRIMARY KEY, note text)");
    insert(&src, "t", 1, 100);
    let b1 = repo.base_backup(&src);
    for i in 1..=3u32 {
        insert(&src, "t", i * 100 + 1, i * 100 + 100);
        src.switch_and_archive();
    }
    let b2 = repo.base_backup(&src);
    let keep_from = src.q(&format!("SELECT pg_walfile_name('{}')", scalar(&b2["start_lsn"])));
    insert(&src, "t", 401, 500);
    let t = src.now();
    std::thread::sleep(Duration::from_millis(1100));
    insert(&src, "t", 501, 600);
    src.switch_and_archive();

    let before = repo.wal_segments();
    let (older, newer): (Vec<&String>, Vec<&String>) = before.keys().partition(|s| s.as_str() < keep_from.as_str());
    assert!(!older.is_empty(), "no WAL before the second backup's start {keep_from}: {:?}", before.keys());
    repo.run(&["forget", "--tag", "pg-base", "--group-by", "", "--keep-last", "1", "--prune"]);

    let ids_left: Vec<String> = repo.snapshots().iter().map(|s| scalar(&s["id"])).collect();
    let (id1, id2) = (scalar(&b1["id"]), scalar(&b2["id"]));
    assert_eq!(ids_left.len(), 1, "{ids_left:?}");
    assert!(
        ids_left[0].starts_with(&id2) || id2.starts_with(&ids_left[0]),
        "kept {ids_left:?}, not {id2} (older: {id1})"
    );
    let after = repo.wal_segments();
    for s in &older {
        assert!(!after.contains_key(s.as_str()), "{s} (before {keep_from}) survived the prune");
    }
    for s in &newer {
        assert!(after.contains_key(s.as_str()), "{s} (from {keep_from} on) was pruned");
    }
    let o = repo.out(&["check", "--read-data"]);
    assert_eq!(o.code, Some(0), "check after forget --prune:\n{}", o.stderr);

    drop(src);
    let dst = repo.restored(&["--time", &t, "--target-action", "promote"]);
    assert_eq!(ids(&dst, "t"), "500 1 500", "restore to {t} from the kept backup");
}

/// P1 per system: forgetting the older of two base backups of system A
/// prunes A's segments and backup history files below the kept backup's
/// start, but keeps A's timeline history and record, and every segment of
/// system B, which has no base backup.
#[test]
fn prune_keeps_history_files_and_the_wal_of_a_system_without_base_backup() {
    if !pg_enabled("pitr::prune_keeps_history_files_and_the_wal_of_a_system_without_base_backup") {
        return;
    }
    let repo = PgRepo::new(Where::Local);
    let a = Cluster::init(Opts { wal_segsize_mb: Some(1), ..repo.archiving() });
    let b = Cluster::init(Opts { wal_segsize_mb: Some(1), ..repo.archiving() });
    let (sys_a, sys_b) = (a.system_id(), b.system_id());
    assert_ne!(sys_a, sys_b);
    for c in [&a, &b] {
        c.q("CREATE TABLE t (id int PRIMARY KEY, note text)");
        for i in 0..3u32 {
            insert(c, "t", i * 100 + 1, i * 100 + 100);
            c.switch_and_archive();
        }
    }
    let b1 = repo.base_backup(&a);
    insert(&a, "t", 301, 400);
    a.switch_and_archive();
    let b2 = repo.base_backup(&a);
    a.switch_and_archive();
    // A timeline history file of A (as a promotion would archive it).
    let scratch = pg_tempdir();
    let hist = scratch.path().join("00000002.history");
    pg_write(&hist, format!("1\t{}\tno recovery target specified\n", scalar(&b2["stop_lsn"])).as_bytes());
    let o = repo.wal_cmd(&a, &["pg", "wal-push", p(&hist)]);
    assert_eq!(o.code, Some(0), "wal-push of a history file:\n{}", o.stderr);

    let under = |sys: &str| -> Vec<String> {
        repo.wal_objects().into_iter().filter(|o| o.starts_with(&format!("wal/{sys}/"))).collect()
    };
    let (a_before, b_before) = (under(&sys_a), under(&sys_b));
    let keep_from = scalar(&b2["start_wal"]);
    let first_a = scalar(&b1["start_wal"]);
    let backup_file = |objs: &[String], wal: &str| objs.iter().any(|o| o.contains(wal) && o.ends_with(".backup"));
    assert!(backup_file(&a_before, &first_a), "no backup history file of {first_a}: {a_before:?}");
    repo.run(&["forget", "--tag", "pg-base", "--group-by", "", "--keep-last", "1", "--prune"]);
    let (a_after, b_after) = (under(&sys_a), under(&sys_b));

    assert_eq!(b_after, b_before, "system {sys_b} (no base backup) lost WAL");
    for o in &a_before {
        let name = o.rsplit('/').next().unwrap_or(o);
        let below = name.len() >= 24 && !name.ends_with(".history") && name[..24] < keep_from[..];
        assert_eq!(
            a_after.contains(o),
            !below,
            "{o}: kept should be {} (the kept backup starts at {keep_from})",
            !below
        );
    }
    for want in ["cluster", "00000002.history"] {
        assert!(a_after.iter().any(|o| o.ends_with(want)), "{want} of {sys_a} was pruned: {a_after:?}");
    }
    assert!(!backup_file(&a_after, &first_a), "the forgotten backup's history file survived: {a_after:?}");
    assert!(backup_file(&a_after, &keep_from), "the kept backup's history file was pruned: {a_after:?}");
    let o = repo.out(&["check", "--read-data"]);
    assert_eq!(o.code, Some(0), "check --read-data after the prune:\n{}", o.stderr);
}

/// A WAL object that exists but cannot be read (here: mode 000 for the
/// cluster's user) must stop recovery, not end it: PostgreSQL takes any
/// `restore_command` exit status up to 125 for "not archived" and then
/// promotes at that point, silently dropping everything after it (and
/// forking a timeline). So `wal-fetch` must keep exit 1 for "not archived"
/// only and exit above 125 on every other failure, which makes recovery
/// stop with FATAL (the server can be started again once the repository
/// reads): format-spec/13-wal.md, rule W4.
#[test]
fn a_wal_read_error_stops_recovery_instead_of_promoting() {
    if !pg_enabled("pitr::a_wal_read_error_stops_recovery_instead_of_promoting") {
        return;
    }
    let repo = PgRepo::new(Where::Local);
    let src = Cluster::init(Opts { wal_segsize_mb: Some(1), ..repo.archiving() });
    src.q("CREATE TABLE t (id int PRIMARY KEY, note text)");
    insert(&src, "t", 1, 100);
    repo.base_backup(&src);
    let mut segs = Vec::new();
    for i in 1..=3u32 {
        insert(&src, "t", i * 100 + 1, i * 100 + 100);
        segs.push(src.switch_and_archive());
    }
    let bad = &segs[1];
    let object = repo.wal_segments().get(bad).cloned().unwrap_or_else(|| panic!("no object for {bad}"));
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(repo.repo.path().join(&object), std::fs::Permissions::from_mode(0o000))
        .expect("chmod 000 the WAL object");

    let scratch = pg_tempdir();
    let o = repo.wal_cmd(&src, &["pg", "wal-fetch", bad, p(&scratch.path().join("x"))]);
    assert!(o.code.is_none_or(|c| c > 125), "wal-fetch of an unreadable {bad}: exit {:?} ({})", o.code, o.stderr);

    let dst = Cluster::empty(repo.restoring());
    repo.restore_ok(&dst, &[]);
    dst.configure();
    let outcome = dst.try_start().and_then(|()| dst.wait_promoted(WAIT));
    if outcome.is_ok() {
        panic!("recovery promoted past an unreadable {bad}: rows {} on timeline {}", ids(&dst, "t"), dst.timeline());
    }
}
