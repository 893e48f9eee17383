//! Several streams in one snapshot (format-spec/09-snapshots.md,
//! `streams`): written through the library (`backup_streams`; no command
//! of the binary makes one yet), then read, restored and checked through
//! the binary, each stream verified against its own record. A failing or
//! empty stream stores no snapshot; the PostgreSQL dump source with a
//! stand-in `pg_dump` (the real server is in `pg_source`).

use std::io::Cursor;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use cairn::error::ErrorKind;
use cairn::id::SnapshotId;
use cairn::ops::backup::{backup_streams, BackupOptions, BackupOutcome, CommandSpec, NamedStream, StreamInput};
use cairn::repo::{CacheMode, Repository};
use cairn::source::postgres::{dump_streams, PgDumpSpec};

use crate::common::{both_backends, noise, sha256_hex, Repo, Where};

both_backends!(two_streams_dump_restore_and_check_each_against_its_record,);

pub fn open(repo: &Repo) -> Repository {
    Repository::open(repo.backend(), repo.password().as_bytes(), CacheMode::Memory).expect("open repository")
}

/// `backup_streams` through the library, with default options.
pub fn lib_backup(repo: &Repo, inputs: Vec<NamedStream>, allow_empty: bool) -> cairn::error::Result<BackupOutcome> {
    backup_streams(&open(repo), inputs, allow_empty, &BackupOptions::default())
}

fn reader(data: &[u8]) -> StreamInput {
    StreamInput::Reader(Box::new(Cursor::new(data.to_vec())))
}

fn sh(script: &str) -> StreamInput {
    StreamInput::Command(vec!["sh".into(), "-c".into(), script.into()])
}

/// Replaces snapshot `id` by a copy whose stream `index` records `sha256`;
/// returns the new id.
fn rewrite_hash(repo: &Repo, id: &str, index: usize, sha256: &str) -> String {
    let r = open(repo);
    let old = r.find_snapshot(id).expect("snapshot").0;
    let mut s = r.load_snapshot(&old).expect("load snapshot");
    s.streams[index].sha256 = sha256.to_string();
    let new: SnapshotId = r.save_snapshot(&s).expect("save snapshot");
    r.backend.delete(&format!("snapshots/{old}")).expect("delete the old snapshot");
    new.to_string()
}

fn two_streams_dump_restore_and_check_each_against_its_record(w: Where) {
    let repo = Repo::init_on(w);
    let dump = noise(3 << 20, 21);
    let globals = noise(300 << 10, 22);
    let tmp = tempfile::tempdir().expect("tempdir");
    let globals_file = tmp.path().join("globals");
    std::fs::write(&globals_file, &globals).expect("write");
    let globals_cmd = CommandSpec {
        argv: vec!["sh".into(), "-c".into(), "cat \"$CAIRN_T_SRC\"".into()],
        env: vec![("CAIRN_T_SRC".into(), globals_file.to_str().expect("utf-8").into())],
    };
    let inputs = |d: &[u8]| {
        vec![
            NamedStream::new("app.dump", reader(d)),
            NamedStream::new("app-globals.sql", StreamInput::CommandWithEnv(globals_cmd.clone())),
        ]
    };
    let out = lib_backup(&repo, inputs(&dump), false).expect("backup_streams");
    let s = &out.snapshot;
    assert!(s.stream.is_none(), "two streams are recorded in `streams`");
    assert_eq!(s.paths, ["/app-globals.sql", "/app.dump"], "paths: one per stream, sorted");
    let names: Vec<&str> = s.streams().iter().map(|st| st.filename.as_str()).collect();
    assert_eq!(names, ["app.dump", "app-globals.sql"], "records in the order read");
    assert_eq!(s.streams[0].sha256, sha256_hex(&dump));
    assert_eq!(s.streams[0].command, None);
    assert_eq!(s.streams[1].sha256, sha256_hex(&globals));
    assert_eq!(s.streams[1].size, globals.len() as u64);
    assert_eq!(s.streams[1].command.as_deref(), Some(&globals_cmd.argv[..]), "argv recorded, not the environment");
    assert_eq!(s.summary.files_new, 2);
    assert_eq!(s.summary.total_bytes_processed, (dump.len() + globals.len()) as u64);
    let id = out.id.to_string();

    // The binary lists, dumps, restores and checks it.
    let snaps = repo.snapshots();
    assert_eq!(snaps.len(), 1);
    assert!(snaps[0].get("stream").is_none(), "{}", snaps[0]);
    assert_eq!(snaps[0]["streams"][0]["filename"], "app.dump");
    assert_eq!(snaps[0]["streams"][1]["sha256"], sha256_hex(&globals).as_str());
    let table = repo.run(&["snapshots"]);
    assert!(table.contains("/app-globals.sql /app.dump"), "{table}");
    let ls = repo.run(&["ls", "latest"]);
    assert!(ls.contains("/app.dump") && ls.contains("/app-globals.sql"), "{ls}");
    assert_eq!(repo.dump("latest", "app.dump"), dump);
    assert_eq!(repo.dump(&id, "/app-globals.sql"), globals);
    let target = repo.dir.path().join("ok");
    repo.run(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert_eq!(std::fs::read(target.join("app.dump")).unwrap(), dump);
    assert_eq!(std::fs::read(target.join("app-globals.sql")).unwrap(), globals);
    let one = repo.dir.path().join("one");
    repo.run(&["restore", "latest:/app-globals.sql", "--target", one.to_str().unwrap()]);
    assert_eq!(std::fs::read(one.join("app-globals.sql")).unwrap(), globals);
    assert!(!one.join("app.dump").exists());
    let excl = repo.dir.path().join("excl");
    repo.run(&["restore", "latest", "--exclude", "app-globals.sql", "--target", excl.to_str().unwrap()]);
    assert_eq!(std::fs::read(excl.join("app.dump")).unwrap(), dump);
    assert!(!excl.join("app-globals.sql").exists());
    let out = repo.run(&["check", "--read-data"]);
    assert!(out.contains("note: 1 stream snapshot(s) (2 streams) verified"), "{out}");
    let out = repo.run(&["check", "--verify-streams"]);
    assert!(out.contains("note: 1 stream snapshot(s) (2 streams) verified"), "{out}");

    // The second stream's record is wrong: the first still dumps, the
    // second fails, restore renames only the second, check names it.
    let wrong = sha256_hex(b"not the globals");
    let right = sha256_hex(&globals);
    let id = rewrite_hash(&repo, &id, 1, &wrong);
    let short = &id[..8];
    assert_eq!(repo.dump("latest", "app.dump"), dump);
    let o = repo.out(&["dump", "latest", "app-globals.sql"]);
    o.assert_failed(Some(4), "dump of a stream with a wrong hash");
    let e = o.one_error_line("dump");
    assert!(e.contains(&format!("stream app-globals.sql of snapshot {short}")), "{e}");
    assert!(e.contains(&format!("expected SHA-256 {wrong}, got {right}")), "{e}");
    assert_eq!(o.stdout, globals, "dump writes the stream, then fails");

    let bad = repo.dir.path().join("bad");
    let o = repo.out(&["restore", "latest", "--target", bad.to_str().unwrap()]);
    o.assert_failed(Some(4), "restore of a snapshot with a wrong hash for its second stream");
    let e = o.one_error_line("restore");
    assert!(e.contains(short) && e.contains(&wrong) && e.contains("app-globals.sql.sha256-mismatch"), "{e}");
    assert!(!e.contains("app.dump"), "the first stream matched: {e}");
    assert_eq!(std::fs::read(bad.join("app.dump")).unwrap(), dump, "the intact stream keeps its name");
    assert!(!bad.join("app-globals.sql").exists());
    assert_eq!(std::fs::read(bad.join("app-globals.sql.sha256-mismatch")).unwrap(), globals);

    let o = repo.out(&["check", "--read-data"]);
    o.assert_failed(Some(4), "check --read-data");
    let out = o.stdout_str();
    assert!(out.contains(&format!("error: stream app-globals.sql of snapshot {short}")), "{out}");
    assert!(!out.contains("error: stream app.dump"), "{out}");
    repo.run(&["check"]);

    // A second night: the parent is found by host and paths, little is
    // added, and --read-data verifies only the newest of each stream.
    let out2 = lib_backup(&repo, inputs(&dump), false).expect("second backup_streams");
    assert_eq!(out2.snapshot.parent.map(|p| p.to_string()), Some(id.clone()), "parent by host + paths");
    assert!(out2.snapshot.summary.data_added < 64 << 10, "night 2 added {}", out2.snapshot.summary.data_added);
    let out = repo.run(&["check", "--read-data"]);
    assert!(out.contains("note: 1 stream snapshot(s) (2 streams) verified"), "{out}");
    let o = repo.out(&["check", "--verify-streams"]);
    o.assert_failed(Some(4), "check --verify-streams");
    let out = o.stdout_str();
    assert!(out.contains(&format!("error: stream app-globals.sql of snapshot {short}")), "{out}");
    assert!(!out.contains(&out2.id.to_string()[..8]), "{out}");
}

#[test]
fn a_failing_second_command_stores_no_snapshot_and_starts_no_third() {
    let repo = Repo::init();
    let tmp = tempfile::tempdir().expect("tempdir");
    let marker = tmp.path().join("third-ran");
    let inputs = vec![
        NamedStream::new("a.dump", reader(&noise(2 << 20, 31))),
        NamedStream::new(
            "b.sql",
            sh("echo partial; echo 'pg_dumpall: error: connection to server failed' >&2; exit 3"),
        ),
        NamedStream::new("c.sql", sh(&format!("echo x; touch '{}'", marker.display()))),
    ];
    let e = lib_backup(&repo, inputs, false).expect_err("a failing command");
    assert_eq!(e.kind(), ErrorKind::Command);
    let msg = e.to_string();
    assert!(msg.contains("status 3") && msg.contains("connection to server failed"), "{msg}");
    assert!(msg.starts_with("stream b.sql: command") && msg.contains("no snapshot was written"), "{msg}");
    assert!(!marker.exists(), "the stream after the failed one was started");
    assert!(repo.snapshots().is_empty(), "a snapshot was written");
    repo.run(&["check"]);

    // A reader that fails: no snapshot either.
    struct Failing(usize);
    impl std::io::Read for Failing {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.0 == 0 {
                return Err(std::io::Error::other("the RDB transfer broke"));
            }
            let n = buf.len().min(self.0);
            buf[..n].fill(7);
            self.0 -= n;
            Ok(n)
        }
    }
    let inputs = vec![
        NamedStream::new("a.dump", sh("head -c 100000 /dev/zero")),
        NamedStream::new("dump.rdb", StreamInput::Reader(Box::new(Failing(3 << 20)))),
    ];
    let e = lib_backup(&repo, inputs, false).expect_err("a failing reader");
    assert!(e.to_string().contains("the RDB transfer broke"), "{e}");
    assert!(repo.snapshots().is_empty(), "a snapshot was written");
}

#[test]
fn an_empty_stream_stores_nothing_unless_allowed() {
    let repo = Repo::init();
    let dump = noise(1 << 20, 41);
    let inputs = || vec![NamedStream::new("app.dump", reader(&dump)), NamedStream::new("app-globals.sql", reader(b""))];
    let e = lib_backup(&repo, inputs(), false).expect_err("an empty stream");
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(e.to_string().contains("stream app-globals.sql was empty"), "{e}");
    assert!(repo.snapshots().is_empty(), "a snapshot was written");

    let out = lib_backup(&repo, inputs(), true).expect("allow_empty");
    assert_eq!(out.snapshot.streams[1].size, 0);
    assert_eq!(out.snapshot.streams[1].sha256, sha256_hex(b""));
    assert!(repo.dump("latest", "app-globals.sql").is_empty());
    assert_eq!(repo.dump("latest", "app.dump"), dump);
    repo.run(&["check", "--read-data"]);

    // Names: two alike, or not a plain file name.
    for names in [["x", "x"], ["x", "a/b"]] {
        let inputs = names.iter().map(|n| NamedStream::new(*n, reader(b"1"))).collect();
        assert_eq!(lib_backup(&repo, inputs, false).expect_err("bad names").kind(), ErrorKind::InvalidInput);
    }
}

/// A stand-in `pg_dump` and `pg_dumpall` in `dir`: shell scripts.
fn fake_pg(dir: &Path, dump: &str, dumpall: &str) -> std::path::PathBuf {
    for (name, body) in [("pg_dump", dump), ("pg_dumpall", dumpall)] {
        let p = dir.join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).expect("write script");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    // A script just written may be "busy" while another test thread forks
    // with the write descriptor open: wait until it runs.
    for name in ["pg_dump", "pg_dumpall"] {
        for _ in 0..100 {
            match std::process::Command::new(dir.join(name)).stdout(std::process::Stdio::null()).status() {
                Err(e) if e.raw_os_error() == Some(26) => std::thread::sleep(std::time::Duration::from_millis(20)),
                _ => break,
            }
        }
    }
    dir.join("pg_dump")
}

#[test]
fn pg_source_with_a_stand_in_pg_dump() {
    let repo = Repo::init();
    let tmp = tempfile::tempdir().expect("tempdir");
    // The connection settings reach the commands through their environment.
    let env = "echo \"host=$PGHOST port=$PGPORT user=$PGUSER args=$*\"";
    let pg_dump = fake_pg(tmp.path(), &format!("{env}; head -c 2000000 /dev/zero"), env);
    let spec = PgDumpSpec {
        host: Some("/run/pg".into()),
        port: Some(5499),
        user: Some("nightly".into()),
        pg_dump: Some(pg_dump.clone()),
        ..PgDumpSpec::new("app")
    };
    let out = lib_backup(&repo, dump_streams(&spec).expect("dump_streams"), false).expect("backup");
    let names: Vec<&str> = out.snapshot.streams().iter().map(|s| s.filename.as_str()).collect();
    assert_eq!(names, ["app.dump", "app-globals.sql"]);
    let d = repo.dump("latest", "app.dump");
    let head = b"host=/run/pg port=5499 user=nightly args=-Fc -Z0 --dbname=app\n";
    assert!(d.starts_with(head), "{:?}", &d[..80]);
    assert_eq!(d.len(), head.len() + 2_000_000);
    let g = String::from_utf8(repo.dump("latest", "app-globals.sql")).expect("utf-8");
    assert_eq!(g, "host=/run/pg port=5499 user=nightly args=--globals-only --database=app\n");

    // A failing connection: pg_dump's stderr is in the error.
    fake_pg(tmp.path(), "echo 'pg_dump: error: connection to server on socket failed: No such file' >&2; exit 1", env);
    let e = lib_backup(&repo, dump_streams(&spec).expect("dump_streams"), false).expect_err("failing pg_dump");
    assert!(e.to_string().contains("connection to server on socket failed"), "{e}");
    // An empty dump, or empty globals: nothing stored.
    fake_pg(tmp.path(), "exit 0", env);
    let e = lib_backup(&repo, dump_streams(&spec).expect("dump_streams"), false).expect_err("empty pg_dump");
    assert!(e.to_string().contains("stream app.dump was empty"), "{e}");
    fake_pg(tmp.path(), env, "exit 0");
    let e = lib_backup(&repo, dump_streams(&spec).expect("dump_streams"), false).expect_err("empty globals");
    assert!(e.to_string().contains("stream app-globals.sql was empty"), "{e}");
    assert_eq!(repo.snapshots().len(), 1, "a failed or empty dump stored a snapshot");
}
