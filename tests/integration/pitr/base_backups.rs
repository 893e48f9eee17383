//! Base backups and restores beyond the happy path: tablespaces
//! (`--tablespace-map`), `pg backup`'s refusals (B4) and its wait for the
//! archive (B3), `pg status --json`, `pg restore --dry-run`, the choice of
//! base backup against a target (R1), and `--no-archive`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::cluster::*;
use super::repo::*;
use crate::common::{Out, Where};

/// Every file under `dir`, with its bytes (a small directory).
fn tree(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("read_dir {}: {e}", d.display())) {
            let path = e.expect("dir entry").path();
            if path.is_dir() {
                todo.push(path);
            } else {
                let data = std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
                out.insert(path.strip_prefix(dir).expect("under dir").to_path_buf(), data);
            }
        }
    }
    out
}

/// Whether a directory is absent or empty.
fn empty_or_absent(dir: &Path) -> bool {
    std::fs::read_dir(dir).map_or(true, |mut d| d.next().is_none())
}

/// The WAL segment names (24 hex digits) in a text.
fn segment_names(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_ascii_hexdigit()).filter(|w| w.len() == 24).map(|w| w.to_ascii_uppercase()).collect()
}

/// `pg backup` of `c` with extra arguments, as the cluster's user.
fn pg_backup(repo: &PgRepo, c: &Cluster, pgdata: &Path, extra: &[&str]) -> Out {
    let mut args = vec!["pg", "backup", "--pgdata", p(pgdata), "--fast"];
    args.extend_from_slice(extra);
    let mut cmd = repo.cmd(&args);
    cmd.envs(c.libpq_env());
    let o = run(cmd);
    o.assert_no_panic("pg backup");
    o
}

/// "YYYY-MM-DD HH:MM:SS" of a time as cairn prints it (RFC 3339 or
/// chrono's display form).
fn to_seconds(t: &str) -> String {
    t.replacen('T', " ", 1).chars().take(19).collect()
}

/// (a) A tablespace outside PGDATA: restored by `--tablespace-map` into a
/// new directory (every row back, `pg_tablespace_location` the new one, the
/// original untouched); without the map, a restore over the original's
/// non-empty directory is refused, naming the tablespace.
#[test]
fn a_tablespace_is_restored_where_the_map_says() {
    if !pg_enabled("pitr::base_backups::a_tablespace_is_restored_where_the_map_says") {
        return;
    }
    let repo = PgRepo::new(Where::Local);
    let src = Cluster::init(Opts { wal_segsize_mb: Some(1), ..repo.archiving() });
    let spaces = pg_tempdir();
    let ts = pg_dir(&spaces.path().join("ts"));
    src.q(&format!("CREATE TABLESPACE ts LOCATION '{}'", p(&ts)));
    let oid = src.q("SELECT oid FROM pg_tablespace WHERE spcname = 'ts'");
    src.q("CREATE TABLE tt (id int PRIMARY KEY, note text) TABLESPACE ts");
    src.q("CREATE TABLE t (id int PRIMARY KEY, note text)");
    insert(&src, "tt", 1, 100);
    insert(&src, "t", 1, 100);
    repo.base_backup(&src);
    insert(&src, "tt", 101, 200);
    insert(&src, "t", 101, 200);
    src.switch_and_archive();
    let want = digests(&src, &["tt", "t"]);
    src.stop();
    let original = tree(&ts);
    assert!(!original.is_empty(), "the tablespace directory {} is empty", ts.display());

    // Without --tablespace-map: the original location is not empty.
    let refused = Cluster::empty(repo.restoring());
    let o = repo.restore(&refused, &["--target-action", "promote"]);
    o.assert_failed(None, "pg restore over a non-empty tablespace directory");
    let said = format!("{}{}", o.stdout_str(), o.stderr);
    assert!(said.contains(&oid), "the refusal does not name tablespace {oid}:\n{said}");
    assert!(said.contains(p(&ts)), "the refusal does not name {}:\n{said}", ts.display());
    assert!(empty_or_absent(&refused.data), "the refused restore wrote into {}", refused.data.display());
    assert!(tree(&ts) == original, "the refused restore changed {}", ts.display());
    drop(refused);

    // With it: a new directory (absent; its parent the cluster's user's).
    let moved = pg_tempdir();
    let new_dir = moved.path().join("ts-restored");
    let dst = Cluster::empty(repo.restoring());
    repo.restore_ok(&dst, &["--tablespace-map", &format!("{oid}={}", p(&new_dir)), "--target-action", "promote"]);
    dst.start_promoted();
    assert_eq!(digests(&dst, &["tt", "t"]), want, "rows after the restore");
    assert_eq!(ids(&dst, "tt"), "200 1 200");
    assert_eq!(dst.q(&format!("SELECT pg_tablespace_location({oid})")), p(&new_dir), "pg_tablespace_location");
    let link = std::fs::read_link(dst.data.join("pg_tblspc").join(&oid)).expect("pg_tblspc link");
    assert_eq!(link, new_dir, "pg_tblspc/{oid} links elsewhere");
    assert!(!tree(&new_dir).is_empty(), "nothing in {}", new_dir.display());
    // A write into the tablespace lands in the new directory only.
    insert(&dst, "tt", 201, 300);
    dst.q("CHECKPOINT");
    assert!(tree(&ts) == original, "the original tablespace directory {} changed", ts.display());

    // R3: --delta over a running server is refused (its postmaster.pid).
    let o = repo.restore(&dst, &["--delta", "--tablespace-map", &format!("{oid}={}", p(&new_dir))]);
    o.assert_failed(None, "pg restore --delta over a running server");
    assert!(o.stderr.contains("postmaster.pid"), "the refusal does not name postmaster.pid:\n{}", o.stderr);
    assert_eq!(ids(&dst, "tt"), "300 1 300", "the refused restore changed the running server");
    drop(dst);

    // In place: --delta empties the original tablespace directory first.
    let in_place = Cluster::empty(repo.restoring());
    repo.restore_ok(&in_place, &["--delta", "--target-action", "promote"]);
    in_place.start_promoted();
    assert_eq!(digests(&in_place, &["tt", "t"]), want, "rows after the restore in place");
    assert_eq!(in_place.q(&format!("SELECT pg_tablespace_location({oid})")), p(&ts), "pg_tablespace_location");
}

/// (c, d) `pg backup` refuses a data directory that is not the server's,
/// a standby, and a server with `archive_mode = off` (B4); with an `archive_command`
/// that does not reach this repository it fails after `--wal-timeout`,
/// names the segment, and writes no snapshot (B3); the server is left able
/// to take the next backup.
#[test]
fn pg_backup_refuses_what_it_cannot_restore() {
    if !pg_enabled("pitr::base_backups::pg_backup_refuses_what_it_cannot_restore") {
        return;
    }
    let repo = PgRepo::new(Where::Local);
    // Archiving "succeeds" without archiving anything.
    let mut src =
        Cluster::init(Opts { archive_command: Some("true".into()), wal_segsize_mb: Some(1), ..repo.archiving() });
    src.q("CREATE TABLE t (id int PRIMARY KEY, note text)");
    insert(&src, "t", 1, 100);

    // Another directory than the server's.
    let elsewhere = pg_tempdir();
    let other = pg_dir(&elsewhere.path().join("other"));
    let o = pg_backup(&repo, &src, &other, &[]);
    o.assert_failed(None, "pg backup --pgdata of another directory");
    for d in [&other, &src.data] {
        assert!(o.stderr.contains(p(d)), "the refusal does not name {}:\n{}", d.display(), o.stderr);
    }

    // The WAL never reaches this repository.
    let before = src.q("SELECT pg_walfile_name(pg_current_wal_lsn())");
    let t0 = std::time::Instant::now();
    let o = pg_backup(&repo, &src, &src.data, &["--wal-timeout", "5"]);
    let took = t0.elapsed();
    o.assert_failed(None, "pg backup whose WAL does not reach the repository");
    let after = src.q("SELECT pg_walfile_name(pg_current_wal_lsn())");
    let named = segment_names(&o.stderr);
    assert!(!named.is_empty(), "the failure names no WAL segment:\n{}", o.stderr);
    let archived = repo.wal_segments();
    for s in &named {
        assert!(
            s.as_str() >= before.as_str() && s.as_str() <= after.as_str(),
            "{s} is not a segment of the backup ({before} to {after}):\n{}",
            o.stderr
        );
        assert!(!archived.contains_key(s), "{s} is in the repository, yet named missing");
    }
    assert!(o.stderr.contains("archive"), "the failure does not say the WAL is not archived:\n{}", o.stderr);
    assert!(took >= Duration::from_secs(5), "failed after {took:?}, before --wal-timeout 5");
    assert!(repo.snapshots().is_empty(), "a snapshot was written: {:?}", repo.snapshots());
    let c = repo.out(&["check"]);
    assert_eq!(c.code, Some(0), "check after the failed base backup:\n{}", c.stderr);

    // Archiving into the repository: the next backup works (the failed one
    // left none in progress).
    src.opts.archive_command = Some(repo.archive_command());
    src.configure();
    src.q("SELECT pg_reload_conf()");
    std::thread::sleep(Duration::from_millis(500));
    let seg = src.switch_and_archive();
    assert!(repo.wal_segments().contains_key(&seg), "{seg} not archived after the reload");
    insert(&src, "t", 101, 200);
    let b = repo.base_backup(&src);
    let ids_now: Vec<String> = repo.snapshots().iter().map(|s| scalar(&s["id"])).collect();
    assert_eq!(ids_now.len(), 1, "{ids_now:?}");
    assert!(scalar(&b["id"]).starts_with(&ids_now[0]) || ids_now[0].starts_with(&scalar(&b["id"])));

    // A standby (streaming from src): refused.
    let standby = Cluster::empty(Opts { wal_segsize_mb: Some(1), ..repo.archiving() });
    let mut bb = as_pg(&pg_bin("pg_basebackup"));
    bb.envs(src.libpq_env()).args(["-D", p(&standby.data), "-R", "-X", "stream", "-c", "fast"]);
    run_ok(bb, "pg_basebackup -R");
    standby.configure();
    standby.start();
    assert_eq!(standby.q("SELECT pg_is_in_recovery()"), "t", "not a standby");
    let o = pg_backup(&repo, &standby, &standby.data, &["--wal-timeout", "5"]);
    o.assert_failed(None, "pg backup of a standby");
    assert!(o.stderr.contains("standby"), "the refusal does not say the server is a standby:\n{}", o.stderr);
    assert_eq!(repo.snapshots().len(), 1, "a snapshot was written from a standby");
    drop(standby);

    // archive_mode = off.
    src.opts.archive_command = None;
    src.configure();
    src.stop();
    src.start();
    assert_eq!(src.q("SHOW archive_mode"), "off");
    let o = pg_backup(&repo, &src, &src.data, &["--wal-timeout", "5"]);
    o.assert_failed(None, "pg backup with archive_mode = off");
    assert!(o.stderr.contains("archive_mode"), "the refusal does not name archive_mode:\n{}", o.stderr);
    assert_eq!(repo.snapshots().len(), 1, "a snapshot was written with archive_mode = off");
}

/// (e, f, b) `pg status --json` after a base backup and a few segments;
/// `--max-lag`; `pg restore --dry-run` writes nothing and names the backup;
/// targets before every base backup are refused (R1), as is `--snapshot` of
/// a backup that ends after the target; a restore with `--no-archive`
/// does not archive.
#[test]
fn status_dry_runs_target_refusals_and_a_restore_without_archiving() {
    if !pg_enabled("pitr::base_backups::status_dry_runs_target_refusals_and_a_restore_without_archiving") {
        return;
    }
    let repo = PgRepo::new(Where::Local);
    let src = Cluster::init(Opts { wal_segsize_mb: Some(1), ..repo.archiving() });
    src.q("CREATE TABLE t (id int PRIMARY KEY, note text)");
    let t0 = src.now();
    let lsn0 = src.q("SELECT pg_current_wal_lsn()");
    let xid0 = src.q("SELECT txid_current()");
    insert(&src, "t", 1, 100);
    let b = repo.base_backup(&src);
    // The backup's end, in another zone: exactly it, and 1 µs before.
    let stop_time = scalar(&repo.snapshots()[0]["pg"]["stop_time"]);
    let in_zone = |shift: &str| {
        src.q(&format!(
            "SELECT to_char(('{stop_time}'::timestamptz {shift}) AT TIME ZONE 'Asia/Kolkata', \
             'YYYY-MM-DD HH24:MI:SS.US') || '+05:30'"
        ))
    };
    let (at_stop, before_stop) = (in_zone(""), in_zone("- interval '1 microsecond'"));
    let xid1 = src.q("SELECT txid_current()");
    let mut last = String::new();
    for i in 1..=3u32 {
        insert(&src, "t", i * 100 + 1, i * 100 + 100);
        last = src.switch_and_archive();
    }
    let sysid = src.system_id();
    let want = digest(&src, "t");
    drop(src);

    // pg status --json
    let o = repo.out(&["pg", "status", "--json"]);
    assert_eq!(o.code, Some(0), "pg status --json:\n{}{}", o.stdout_str(), o.stderr);
    let v: serde_json::Value = serde_json::from_str(o.stdout_str().trim()).expect("pg status --json is JSON");
    let systems = v.as_array().unwrap_or_else(|| panic!("pg status --json is not an array: {v}"));
    assert_eq!(systems.len(), 1, "{v}");
    let s = &systems[0];
    assert_eq!(scalar(&s["system_id"]), sysid, "{s}");
    let backups = s["base_backups"].as_array().expect("base_backups");
    assert_eq!(backups.len(), 1, "{s}");
    let short = scalar(&backups[0]["snapshot"]);
    let id = scalar(&b["id"]);
    assert!(!short.is_empty() && id.starts_with(&short), "status names {short}, the backup is {id}");
    let tls = s["timelines"].as_array().expect("timelines");
    assert_eq!(tls.len(), 1, "{s}");
    assert_eq!(tls[0]["timeline"], 1, "{s}");
    assert_eq!(tls[0]["gaps"].as_array().map(Vec::len), Some(0), "gaps: {s}");
    assert_eq!(scalar(&s["reachable"]), last, "reachable: {s}");
    assert_eq!(s["problems"].as_array().map(Vec::len), Some(0), "problems: {s}");

    std::thread::sleep(Duration::from_secs(2));
    let o = repo.out(&["pg", "status", "--json", "--max-lag", "1s"]);
    assert_eq!(o.code, Some(1), "pg status --max-lag 1s, 2 s after the last WAL:\n{}{}", o.stdout_str(), o.stderr);
    let v: serde_json::Value = serde_json::from_str(o.stdout_str().trim()).expect("pg status --json is JSON");
    let problems = v[0]["problems"].to_string();
    assert!(problems.contains("lag") || problems.contains("ago"), "no problem about the lag: {v}");

    // --dry-run: into an absent and into an empty directory.
    let scratch = pg_tempdir();
    let absent = scratch.path().join("absent");
    let empty = pg_dir(&scratch.path().join("empty"));
    for dir in [&absent, &empty] {
        let o = repo.out(&["pg", "restore", "--pgdata", p(dir), "--dry-run"]);
        assert_eq!(o.code, Some(0), "pg restore --dry-run:\n{}{}", o.stdout_str(), o.stderr);
        assert!(o.stdout_str().contains(&short), "the dry run does not name {short}:\n{}", o.stdout_str());
        assert!(empty_or_absent(dir), "pg restore --dry-run wrote into {}", dir.display());
    }
    assert!(!absent.exists(), "pg restore --dry-run created {}", absent.display());

    // R1 at its edges: a target at the backup's end takes it; 1 µs before,
    // or an xid before it, is refused; an xid after it takes it.
    let dry = |target: &[&str]| {
        let mut a = vec!["pg", "restore", "--pgdata", p(&absent), "--dry-run"];
        a.extend_from_slice(target);
        repo.out(&a)
    };
    for ok in [["--time", at_stop.as_str()], ["--xid", xid1.as_str()]] {
        let o = dry(&ok);
        assert_eq!(
            o.code,
            Some(0),
            "pg restore --dry-run {ok:?} (stop_time {stop_time}):\n{}{}",
            o.stdout_str(),
            o.stderr
        );
        assert!(o.stdout_str().contains(&short), "{ok:?}: the dry run does not name {short}:\n{}", o.stdout_str());
    }
    for refused in [["--time", before_stop.as_str()], ["--xid", xid0.as_str()]] {
        dry(&refused).assert_failed(None, &format!("pg restore --dry-run {refused:?} (stop_time {stop_time})"));
    }
    let o = repo.out(&["pg", "restore", "--pgdata", p(&absent), "--dry-run", "--json"]);
    assert_eq!(o.code, Some(0), "pg restore --dry-run --json:\n{}", o.stderr);
    let plan: serde_json::Value = serde_json::from_str(o.stdout_str().trim()).expect("--dry-run --json is JSON");
    assert!(id.starts_with(&scalar(&plan["snapshot"])) || scalar(&plan["snapshot"]).starts_with(&id), "{plan}");
    assert!(!absent.exists(), "pg restore --dry-run --json created {}", absent.display());

    // R1: a time before the oldest base backup's end.
    let snap = repo.snapshots().into_iter().next().expect("the base backup");
    let stop = to_seconds(&scalar(&snap["pg"]["stop_time"]));
    let o = repo.out(&["pg", "restore", "--pgdata", p(&absent), "--time", &t0]);
    o.assert_failed(None, &format!("pg restore --time {t0}, before the only base backup"));
    let said = format!("{}{}", o.stdout_str(), o.stderr);
    assert!(said.contains(&stop), "the refusal does not give the oldest backup's end {stop}:\n{said}");
    assert!(!absent.exists(), "the refused restore created {}", absent.display());
    // --snapshot of a backup that ends after --lsn.
    let o = repo.out(&["pg", "restore", "--pgdata", p(&absent), "--lsn", &lsn0, "--snapshot", &short]);
    o.assert_failed(None, &format!("pg restore --snapshot {short} --lsn {lsn0} (before its end)"));
    let said = format!("{}{}", o.stdout_str(), o.stderr);
    assert!(said.contains(&short), "the refusal does not name {short}:\n{said}");
    assert!(!absent.exists(), "the refused restore created {}", absent.display());

    // --no-archive: the harness turns archiving on; the restore turns it off.
    let dst = Cluster::empty(repo.archiving());
    repo.restore_ok(&dst, &["--no-archive"]);
    dst.start_promoted();
    assert_eq!(digest(&dst, "t"), want);
    assert_eq!(dst.q("SHOW archive_mode"), "off", "archive_mode of a restore with --no-archive");
    assert_eq!(dst.timeline(), 2);
    dst.switch_wal();
    std::thread::sleep(Duration::from_millis(1500));
    let tl2: Vec<String> = repo.wal_objects().into_iter().filter(|o| o.contains("/00000002")).collect();
    assert!(tl2.is_empty(), "the restore with --no-archive archived timeline 2: {tl2:?}");
}

/// The system's record (`wal/<system id>/cluster`, which holds the segment
/// size that listing, gaps and retention need) is written by the first
/// push of a system into a repository, "only if absent" (format-spec
/// 13-wal.md). A repository deleted and created anew at the same location
/// gets it too: the key cache (and its "record written" marker) belongs to
/// the old one.
#[test]
fn a_repository_created_anew_at_the_same_location_gets_the_system_record() {
    if !pg_enabled("pitr::base_backups::a_repository_created_anew_at_the_same_location_gets_the_system_record") {
        return;
    }
    let repo = PgRepo::new(Where::Local);
    let src = Cluster::init(Opts { wal_segsize_mb: Some(1), ..repo.archiving() });
    let record = format!("wal/{}/cluster", src.system_id());
    src.switch_and_archive();
    assert!(repo.wal_objects().contains(&record), "no {record} after the first push: {:?}", repo.wal_objects());

    // The same location, a new repository (same cache directory, as a
    // user's default one would be).
    std::fs::remove_dir_all(repo.repo.path()).expect("remove the repository");
    repo.run(&["init"]);
    src.switch_and_archive();
    let seg = src.switch_and_archive();
    assert!(repo.wal_segments().contains_key(&seg), "{seg} not archived into the new repository");
    let o = repo.out(&["pg", "status", "--json"]);
    let v: serde_json::Value = serde_json::from_str(o.stdout_str().trim()).expect("pg status --json is JSON");
    assert_eq!(v[0]["segment_size"], 1 << 20, "pg status of the new repository: {v}");
    assert!(repo.wal_objects().contains(&record), "no {record} in the new repository: {:?}", repo.wal_objects());
}

/// R2: a base backup whose own WAL (`start_wal` to `stop_wal`) is not in
/// the archive is refused before anything is written, naming the segment.
#[test]
fn a_base_backup_without_its_own_wal_is_refused_before_anything_is_written() {
    if !pg_enabled("pitr::base_backups::a_base_backup_without_its_own_wal_is_refused_before_anything_is_written") {
        return;
    }
    let repo = PgRepo::new(Where::Local);
    let src = Cluster::init(Opts { wal_segsize_mb: Some(1), ..repo.archiving() });
    src.q("CREATE TABLE t (id int PRIMARY KEY, note text)");
    insert(&src, "t", 1, 100);
    let b = repo.base_backup(&src);
    src.switch_and_archive();
    drop(src);
    let start = scalar(&b["start_wal"]);
    let object = repo.wal_segments().get(&start).cloned().unwrap_or_else(|| panic!("{start} is not archived"));
    std::fs::remove_file(repo.repo.path().join(&object)).expect("delete the backup's first segment");

    let dst = Cluster::empty(repo.restoring());
    let o = repo.restore(&dst, &[]);
    o.assert_failed(None, &format!("pg restore of a base backup without its {start}"));
    assert!(o.stderr.contains(&start), "the refusal does not name {start}:\n{}", o.stderr);
    assert!(empty_or_absent(&dst.data), "the refused restore wrote into {}", dst.data.display());
    let o = repo.out(&["pg", "status"]);
    o.assert_failed(Some(1), "pg status with the base backup's first segment gone");
    assert!(o.stdout_str().contains(&start), "pg status does not name {start}:\n{}", o.stdout_str());
}
