//! `latest` and the snapshot filters (`--host`, `--tag`, `--path`, restic's
//! semantics) for `ls`, `restore`, `dump`, `diff` and `find`: the README's
//! stream layout (a `pg_dump` stream and a `redis.rdb` stream in one
//! repository), a repository shared by two hosts, and errors that name the
//! snapshot they looked in.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::common::{both_backends, Repo, Where};

both_backends!(dump_latest_takes_the_newest_snapshot_with_the_stream, filters_select_latest_on_a_shared_repository,);

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 test path")
}

/// Backs up a stream as of `time`; returns the snapshot id.
fn stream(repo: &Repo, name: &str, data: &[u8], time: &str, extra: &[&str]) -> String {
    let mut args = vec!["--stdin-filename", name, "--time", time];
    args.extend_from_slice(extra);
    repo.backup_json(&args, Some(data))["snapshot_id"].as_str().expect("snapshot_id").to_string()
}

/// Backs up `dir` as of `time` from `host`; returns the snapshot id.
fn tree(repo: &Repo, dir: &Path, time: &str, host: &str, tags: &str) -> String {
    let mut args = vec!["--time", time, "--host", host];
    if !tags.is_empty() {
        args.extend(["--tag", tags]);
    }
    args.push(p(dir));
    repo.backup_json(&args, None)["snapshot_id"].as_str().expect("snapshot_id").to_string()
}

/// stdout of `cairn ARGS`, which must succeed.
fn run_bytes(repo: &Repo, args: &[&str]) -> Vec<u8> {
    let o = repo.out(args);
    assert_eq!(o.code, Some(0), "cairn {args:?} failed:\n{}", o.stderr);
    o.stdout
}

fn short(id: &str) -> &str {
    &id[..8]
}

/// The error line of a failed command (exit 1, one line).
fn error(repo: &Repo, args: &[&str]) -> String {
    let o = repo.out(args);
    o.assert_failed(Some(1), &format!("{args:?}"));
    o.one_error_line(&format!("{args:?}"))
}

/// The id of the snapshot `ls --json ARGS` listed.
fn ls_id(repo: &Repo, args: &[&str]) -> String {
    let mut all = vec!["ls", "--json"];
    all.extend_from_slice(args);
    let out = repo.run(&all);
    let head: Value = serde_json::from_str(out.lines().next().expect("ls printed nothing")).expect("ls --json head");
    head["id"].as_str().expect("id").to_string()
}

fn dump_latest_takes_the_newest_snapshot_with_the_stream(w: Where) {
    let repo = Repo::init_on(w);
    let sql1 = stream(&repo, "app.sql", b"-- dump 1\n", "2026-01-01 01:00:00", &["--tag", "nightly"]);
    let rdb1 = stream(&repo, "redis.rdb", b"REDIS0011 one", "2026-01-01 01:30:00", &[]);
    let sql2 = stream(&repo, "app.sql", b"-- dump 2\n", "2026-01-02 01:00:00", &[]);
    let rdb2 = stream(&repo, "redis.rdb", b"REDIS0011 two", "2026-01-02 01:30:00", &[]);

    // Redis backed up last: `dump latest app.sql` goes back to the newest
    // snapshot that has app.sql, with or without the leading slash.
    assert_eq!(repo.dump("latest", "app.sql"), b"-- dump 2\n");
    assert_eq!(repo.dump("latest", "/app.sql"), b"-- dump 2\n");
    assert_eq!(repo.dump("latest", "redis.rdb"), b"REDIS0011 two");
    // Filters narrow it further: the newest nightly app.sql, the stream by --path.
    assert_eq!(run_bytes(&repo, &["dump", "--tag", "nightly", "latest", "app.sql"]), b"-- dump 1\n");
    assert_eq!(run_bytes(&repo, &["dump", "--path", "/redis.rdb", "latest", "redis.rdb"]), b"REDIS0011 two");
    // --path on its own selects the stream's snapshots for the other commands.
    assert_eq!(ls_id(&repo, &["--path", "app.sql", "latest"]), sql2);
    assert_eq!(ls_id(&repo, &["latest"]), rdb2);
    // An explicit id is used as given (restic: ids are not filtered).
    assert_eq!(repo.dump(&sql1, "app.sql"), b"-- dump 1\n");
    assert_eq!(run_bytes(&repo, &["dump", "--host", "nope", &rdb1, "redis.rdb"]), b"REDIS0011 one");

    // Errors say which snapshot they looked in, or what matched nothing.
    let e = error(&repo, &["dump", &rdb2, "app.sql"]);
    assert!(e.contains("/app.sql is not in snapshot") && e.contains(short(&rdb2)), "{e}");
    assert!(e.contains("2026-01-02 01:30:00") && e.contains("host "), "{e}");
    let e = error(&repo, &["dump", "latest", "missing.sql"]);
    assert_eq!(e, "error: no snapshot has /missing.sql");
    let e = error(&repo, &["dump", "--tag", "nightly", "latest", "redis.rdb"]);
    assert_eq!(e, "error: no snapshot matching --tag nightly has /redis.rdb");
    let e = error(&repo, &["dump", "--host", "db1", "--tag", "nightly", "latest", "app.sql"]);
    assert_eq!(e, "error: no snapshot matches --host db1 --tag nightly");
    let e = error(&repo, &["restore", &format!("{rdb1}:/app.sql"), "--target", p(&repo.dir.path().join("t"))]);
    assert!(e.contains("/app.sql is not in snapshot") && e.contains(short(&rdb1)), "{e}");
}

fn filters_select_latest_on_a_shared_repository(w: Where) {
    let repo = Repo::init_on(w);
    let db = repo.dir.path().join("db");
    let web = repo.dir.path().join("web");
    std::fs::create_dir_all(&db).unwrap();
    std::fs::create_dir_all(&web).unwrap();
    let write = |dir: &Path, text: &str| std::fs::write(dir.join("data.txt"), text).unwrap();

    write(&db, "db monday");
    let db1 = tree(&repo, &db, "2026-02-02 03:00:00", "db1", "nightly,pg");
    write(&db, "db tuesday");
    let db2 = tree(&repo, &db, "2026-02-03 03:00:00", "db1", "pg");
    write(&web, "web tuesday");
    let web1 = tree(&repo, &web, "2026-02-03 04:00:00", "web1", "nightly");

    // Without filters, latest is whichever host backed up last.
    assert_eq!(ls_id(&repo, &["latest"]), web1);
    // --host: any of the hosts given.
    assert_eq!(ls_id(&repo, &["--host", "db1", "latest"]), db2);
    assert_eq!(ls_id(&repo, &["--host", "db1", "--host", "web1", "latest"]), web1);
    // --tag a,b: both tags; repeated: either group.
    assert_eq!(ls_id(&repo, &["--tag", "nightly,pg", "latest"]), db1);
    assert_eq!(ls_id(&repo, &["--tag", "nightly,pg", "--tag", "pg", "latest"]), db2);
    assert_eq!(ls_id(&repo, &["--tag", "pg,nightly", "--tag", "nightly", "latest"]), web1);
    // --path: every path given must be among the snapshot's (trailing slash ignored).
    assert_eq!(ls_id(&repo, &["--path", &format!("{}/", p(&db)), "latest"]), db2);
    assert_eq!(ls_id(&repo, &["--path", p(&db), "--host", "db1", "--tag", "nightly", "latest"]), db1);

    // restore: latest of db1 is Tuesday's database.
    let target = repo.dir.path().join("restored");
    repo.run(&["restore", "--host", "db1", "latest", "--target", p(&target)]);
    let restored: PathBuf = target.join(p(&db).trim_start_matches('/')).join("data.txt");
    assert_eq!(std::fs::read_to_string(&restored).unwrap(), "db tuesday");
    // restore with SNAPSHOT:SUBPATH and a filter.
    let sub = repo.dir.path().join("sub");
    repo.run(&["restore", "--tag", "nightly,pg", &format!("latest:{}", p(&db)), "--target", p(&sub)]);
    assert_eq!(std::fs::read_to_string(sub.join("data.txt")).unwrap(), "db monday");

    // dump: the file of the newest snapshot the filters select.
    let file = format!("{}/data.txt", p(&db));
    assert_eq!(run_bytes(&repo, &["dump", "--host", "db1", "latest", &file]), b"db tuesday");
    assert_eq!(run_bytes(&repo, &["dump", "--tag", "nightly", "--path", p(&db), "latest", &file]), b"db monday");
    // Without filters, the newest snapshot that has the file (web1's has not).
    assert_eq!(repo.dump("latest", &file), b"db tuesday");

    // diff: both `latest`s are the newest db1 snapshot; against Monday's.
    let v = repo.json(&["diff", "--json", "--host", "db1", &db1, "latest"]);
    assert_eq!(v["source_snapshot"], db1.as_str());
    assert_eq!(v["target_snapshot"], db2.as_str());
    let changes: Vec<&str> = v["changes"].as_array().unwrap().iter().map(|c| c["path"].as_str().unwrap()).collect();
    assert!(changes.contains(&file.as_str()), "{changes:?}");
    let v = repo.json(&["diff", "--json", "--tag", "nightly", &db1, "latest"]);
    assert_eq!(v["target_snapshot"], web1.as_str());

    // find: -s latest follows the filters; without -s, the filters select.
    let found = |args: &[&str]| -> Vec<String> {
        let mut all = vec!["find", "--json"];
        all.extend_from_slice(args);
        let v = repo.json(&all);
        v.as_array().unwrap().iter().map(|s| s["snapshot"].as_str().unwrap().to_string()).collect()
    };
    assert_eq!(found(&["--host", "db1", "-s", "latest", "data.txt"]), [db2.as_str()]);
    assert_eq!(found(&["--host", "web1", "-s", "latest", "data.txt"]), [web1.as_str()]);
    assert_eq!(found(&["--tag", "pg", "data.txt"]), [db1.as_str(), db2.as_str()]);
    assert_eq!(found(&["--path", p(&web), "data.txt"]), [web1.as_str()]);

    // A filter that matches nothing is one clear line, for every command.
    let none = ["--host", "db9", "--tag", "nightly"];
    let msg = "error: no snapshot matches --host db9 --tag nightly";
    let with = |cmd: &[&str], rest: &[&str]| -> Vec<String> {
        cmd.iter().chain(none.iter()).chain(rest.iter()).map(|s| s.to_string()).collect()
    };
    let t = repo.dir.path().join("never");
    for args in [
        with(&["ls"], &["latest"]),
        with(&["restore"], &["latest", "--target", p(&t)]),
        with(&["dump"], &["latest", &file]),
        with(&["diff"], &[&db1, "latest"]),
        with(&["find"], &["-s", "latest", "data.txt"]),
    ] {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        assert_eq!(error(&repo, &args), msg, "{args:?}");
    }
    assert!(!t.exists(), "restore with no matching snapshot created its target");

    // Paths missing from the snapshot: the error names it.
    let e = error(&repo, &["ls", "--host", "web1", "latest", &file]);
    assert!(e.contains(&format!("{file} is not in snapshot {}", short(&web1))) && e.contains("host web1"), "{e}");
    let e = error(&repo, &["dump", &web1, &file]);
    assert!(e.contains(short(&web1)) && e.contains("2026-02-03 04:00:00, host web1"), "{e}");
    let e = error(&repo, &["diff", &web1, &web1, "/nowhere"]);
    assert!(e.contains("/nowhere is in neither snapshot") && e.contains(short(&web1)), "{e}");
}
