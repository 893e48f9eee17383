//! Database dumps as streams against a real PostgreSQL server:
//! `backup --stdin-from-command -- pg_dump DB`, restored through a pipe into
//! `psql` or `pg_restore`, and compared with the source database.
//!
//! The server: `eval "$(bash scripts/pg-server.sh start /var/tmp/cairn-pg 55432)"`
//! exports `PGHOST`, `PGPORT` and `PGUSER`; `CAIRN_TEST_PG=1` then enables
//! these tests. Without `CAIRN_TEST_PG` they print a loud
//! "skipped: CAIRN_TEST_PG not set" and pass, except when `CI` is set (CI
//! always has the server): there they fail. Every test makes its own
//! uniquely named databases and drops them when it ends.

use std::collections::BTreeMap;
use std::io::{Read as _, Seek as _, Write as _};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{output, sha256_hex, unique_name, Out, Repo};

/// The libpq variables that `scripts/pg-server.sh start` exports; passed on
/// to cairn (whose test command starts from an empty environment) so the
/// `pg_dump` it runs reaches the test server.
const PG_VARS: [&str; 3] = ["PGHOST", "PGPORT", "PGUSER"];

/// How long one client program (psql, pg_dump, pgbench...) may take.
const PG_TIMEOUT: Duration = Duration::from_secs(300);

/// Whether the PostgreSQL tests may run: with `CAIRN_TEST_PG` set, yes
/// (and the `PG*` variables must be set too); without it, a loud skip
/// message (straight to stderr, past the harness's capture) and no, or a
/// panic when `CI` is set.
pub(crate) fn pg_enabled(test: &str) -> bool {
    if std::env::var("CAIRN_TEST_PG").is_ok_and(|v| !v.trim().is_empty()) {
        for v in PG_VARS {
            assert!(
                std::env::var_os(v).is_some(),
                "{test}: CAIRN_TEST_PG is set but {v} is not: \
                 eval \"$(bash scripts/pg-server.sh start /var/tmp/cairn-pg 55432)\" first"
            );
        }
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!(
            "{test}: CAIRN_TEST_PG is not set, and CI is: CI must run the PostgreSQL tests \
             (scripts/test.sh starts the server)"
        );
    }
    let _ = writeln!(
        std::io::stderr(),
        "\n*** {test}: skipped: CAIRN_TEST_PG not set (eval \"$(bash scripts/pg-server.sh start /var/tmp/cairn-pg 55432)\" \
         and set CAIRN_TEST_PG=1 first) ***"
    );
    false
}

// ----- the PostgreSQL client programs

/// The path of a PostgreSQL client program: on `PATH` (Debian's wrappers in
/// /usr/bin), else in the newest /usr/lib/postgresql/*/bin.
pub(crate) fn tool(name: &str) -> String {
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join(name)).find(|p| p.is_file()))
        .unwrap_or_default();
    let found = on_path.or_else(|| {
        let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let v = e.file_name().to_str()?.parse().ok()?;
                Some((v, e.path().join("bin").join(name)))
            })
            .filter(|(_, p)| p.is_file())
            .collect();
        versions.sort();
        versions.pop().map(|(_, p)| p)
    });
    let p = found.unwrap_or_else(|| {
        panic!("{name} is neither on PATH nor in /usr/lib/postgresql/*/bin (scripts/pg-server.sh installs postgresql)")
    });
    p.to_str().expect("utf-8 path").to_string()
}

/// Waits for a child, killing it (and failing the test) after [`PG_TIMEOUT`].
pub(crate) fn wait_or_kill(child: &mut Child, what: &str) -> ExitStatus {
    let deadline = Instant::now() + PG_TIMEOUT;
    loop {
        if let Some(s) = child.try_wait().unwrap_or_else(|e| panic!("waiting for {what}: {e}")) {
            return s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not finish within {PG_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub(crate) fn read_all(mut f: std::fs::File) -> Vec<u8> {
    let mut v = Vec::new();
    f.rewind().and_then(|_| f.read_to_end(&mut v)).expect("read captured output");
    v
}

/// Runs `argv` (with the test's environment, so the `PG*` variables) fed
/// `stdin` (or `stdin_from`, a pipe), with stdout and stderr captured in
/// files; panics unless it exits 0. Returns stdout.
pub(crate) fn run_pg(argv: &[&str], stdin: &[u8], stdin_from: Option<Stdio>) -> Vec<u8> {
    let what = format!("{argv:?}");
    let out = tempfile::tempfile().expect("tempfile");
    let err = tempfile::tempfile().expect("tempfile");
    let mut c = Command::new(argv[0]);
    c.args(&argv[1..])
        .current_dir(std::env::temp_dir())
        .stdout(out.try_clone().expect("dup"))
        .stderr(err.try_clone().expect("dup"))
        .stdin(stdin_from.unwrap_or_else(Stdio::piped));
    let mut child = c.spawn().unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    if let Some(mut i) = child.stdin.take() {
        i.write_all(stdin).unwrap_or_else(|e| panic!("writing the input of {what}: {e}"));
    }
    let status = wait_or_kill(&mut child, &what);
    let (out, err) = (read_all(out), read_all(err));
    assert!(status.success(), "{what} failed ({status}):\n{}", String::from_utf8_lossy(&err));
    out
}

/// Runs SQL in `db` through `psql` (stopping at the first error) and
/// returns the unaligned, tuples-only output.
pub(crate) fn psql(db: &str, sql: &str) -> String {
    let psql = tool("psql");
    let out = run_pg(&[&psql, "-X", "-q", "-tA", "-v", "ON_ERROR_STOP=1", "-d", db], sql.as_bytes(), None);
    String::from_utf8(out).expect("utf-8 psql output").trim().to_string()
}

/// A plain-format `pg_dump` of `db`, taken by the test itself.
pub(crate) fn pg_dump(db: &str) -> Vec<u8> {
    run_pg(&[&tool("pg_dump"), db], b"", None)
}

/// A database of the test server, dropped (with its connections) when the
/// guard goes out of scope.
pub(crate) struct Db(String);

impl Db {
    /// `CREATE DATABASE cairn_TAG_<16 hex digits>`.
    pub(crate) fn create(tag: &str) -> Db {
        let name = unique_name(&format!("cairn_{tag}")).replace('-', "_");
        psql("postgres", &format!("CREATE DATABASE {name}"));
        Db(name)
    }

    pub(crate) fn name(&self) -> &str {
        &self.0
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        let r = Command::new(tool("psql"))
            .args(["-X", "-q", "-d", "postgres", "-c"])
            .arg(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.0))
            .current_dir(std::env::temp_dir())
            .output();
        match r {
            Ok(o) if o.status.success() => {}
            Ok(o) => eprintln!("dropping database {}: {}", self.0, String::from_utf8_lossy(&o.stderr)),
            Err(e) => eprintln!("dropping database {}: {e}", self.0),
        }
    }
}

/// A table of assorted types and awkward values, and a large object.
pub(crate) const MISC_SQL: &str = r#"
CREATE TABLE misc (
    id serial PRIMARY KEY,
    label text NOT NULL,
    uni text,
    data bytea,
    amount numeric(20, 6),
    at timestamptz,
    doc jsonb,
    nums int[],
    flag boolean,
    maybe text
);
INSERT INTO misc (label, uni, data, amount, at, doc, nums, flag, maybe)
SELECT 'row ' || i,
       'ünïcødé ✓ 日本語 🦀 ' || i,
       decode(md5(i::text) || '00ff0a0d5c2e', 'hex'),
       i * 3.141593,
       timestamptz '2024-01-01 00:00:00+00' + i * interval '1 minute',
       jsonb_build_object('i', i, 'q', E'a "quote" and a\nnewline'),
       ARRAY[i, -i, NULL],
       i % 2 = 0,
       CASE WHEN i % 3 = 0 THEN NULL ELSE E'tab\there, newline\nand a backslash \\ ' || i END
FROM generate_series(1, 5000) AS i;
-- COPY's end-of-data marker, a literal \N (not NULL), empties and NULLs
INSERT INTO misc (label, uni, data, maybe) VALUES
    (E'\\.', E'\\.', '\x', E'\\N'),
    ('', '', '\x00', ''),
    ('nulls', NULL, NULL, NULL);
CREATE INDEX misc_uni ON misc (uni);
CREATE VIEW misc_even AS SELECT id, label FROM misc WHERE flag;
SELECT lo_from_bytea(424242, decode(repeat('00ff5c0a', 25000), 'hex'));
"#;

/// Per table of the public schema (and the large objects): the row count and
/// an MD5 of the rows in text form, sorted, so independent of physical order.
pub(crate) fn table_digests(db: &str) -> BTreeMap<String, String> {
    let tables = psql(db, "SELECT quote_ident(tablename) FROM pg_tables WHERE schemaname = 'public' ORDER BY 1");
    let mut out = BTreeMap::new();
    for t in tables.lines() {
        let sql = format!(
            "SELECT count(*) || ' ' || coalesce(md5(string_agg(t::text, E'\\n' ORDER BY t::text)), '-') FROM public.{t} t"
        );
        out.insert(t.to_string(), psql(db, &sql));
    }
    let lo = "SELECT count(*) || ' ' || coalesce(md5(string_agg(oid::text || ':' || md5(lo_get(oid)), ',' ORDER BY oid)), '-') \
              FROM pg_largeobject_metadata";
    out.insert("(large objects)".to_string(), psql(db, lo));
    out
}

/// A plain dump without the `\restrict KEY` and `\unrestrict KEY` lines that
/// pg_dump (15.14 and later minor releases) wraps every plain dump in, with
/// a random KEY: two dumps of one database differ only there. At most those
/// two lines are removed.
fn normalized(dump: &[u8]) -> Vec<u8> {
    let lines: Vec<&[u8]> = dump.split(|&b| b == b'\n').collect();
    let kept: Vec<&[u8]> =
        lines.iter().copied().filter(|l| !l.starts_with(b"\\restrict ") && !l.starts_with(b"\\unrestrict ")).collect();
    assert!(lines.len() - kept.len() <= 2, "more than two \\restrict/\\unrestrict lines in a dump");
    kept.join(&b'\n')
}

/// Asserts that two plain dumps are the same (but for the restrict key),
/// naming the first differing line.
pub(crate) fn assert_same_dump(a: &[u8], b: &[u8], what: &str) {
    let (na, nb) = (normalized(a), normalized(b));
    if na == nb {
        return;
    }
    let la: Vec<&[u8]> = na.split(|&c| c == b'\n').collect();
    let lb: Vec<&[u8]> = nb.split(|&c| c == b'\n').collect();
    let i = la.iter().zip(&lb).position(|(x, y)| x != y).unwrap_or(la.len().min(lb.len()));
    let line = |v: &[&[u8]]| v.get(i).map(|l| String::from_utf8_lossy(&l[..l.len().min(200)]).into_owned());
    panic!(
        "{what}: the dumps differ ({} vs {} bytes, {} vs {} lines); first at line {}:\n  {:?}\n  {:?}",
        a.len(),
        b.len(),
        la.len(),
        lb.len(),
        i + 1,
        line(&la),
        line(&lb)
    );
}

// ----- cairn

/// `cairn ARGS` on `repo`, with the `PG*` variables.
fn cairn(repo: &Repo, args: &[&str]) -> Out {
    let mut c = repo.cmd();
    for v in PG_VARS {
        if let Some(x) = std::env::var_os(v) {
            c.env(v, x);
        }
    }
    c.args(args);
    output(c)
}

/// `backup --json --stdin-filename FILENAME --stdin-from-command -- ARGV`.
fn backup_cmd(repo: &Repo, filename: &str, extra: &[&str], argv: &[&str]) -> Out {
    let mut args = vec!["backup", "--json", "--stdin-filename", filename];
    args.extend_from_slice(extra);
    args.push("--stdin-from-command");
    args.push("--");
    args.extend_from_slice(argv);
    cairn(repo, &args)
}

/// Like [`backup_cmd`], which must succeed; returns the JSON summary.
fn backup_ok(repo: &Repo, filename: &str, argv: &[&str]) -> Value {
    let o = backup_cmd(repo, filename, &[], argv);
    assert_eq!(o.code, Some(0), "backup of {argv:?} failed:\n{}", o.stderr);
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("backup --json is not JSON ({e}): {}", o.stdout_str()))
}

/// `cairn dump SNAPSHOT FILE | RESTORER...` through a real pipe; both must
/// succeed.
pub(crate) fn dump_into(repo: &Repo, snapshot: &str, file: &str, restorer: &[&str]) {
    let err = tempfile::tempfile().expect("tempfile");
    let mut dump = repo.std_cmd_via(repo.url());
    dump.args(["dump", snapshot, file]).stdout(Stdio::piped()).stderr(err.try_clone().expect("dup"));
    let mut d = dump.spawn().expect("run cairn dump");
    let pipe = d.stdout.take().expect("stdout pipe");
    run_pg(restorer, b"", Some(Stdio::from(pipe)));
    let status = wait_or_kill(&mut d, "cairn dump");
    assert!(
        status.success(),
        "cairn dump {snapshot} {file} | {restorer:?}: cairn failed ({status}):\n{}",
        String::from_utf8_lossy(&read_all(err))
    );
}

/// `psql` restoring a plain dump into `db` in one transaction, stopping at
/// the first error.
pub(crate) fn psql_restorer(db: &str) -> Vec<String> {
    [tool("psql").as_str(), "-X", "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction", "-d", db]
        .map(String::from)
        .to_vec()
}

pub(crate) fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

pub(crate) fn u64_of(v: &Value, what: &str) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("{what} is not a number: {v}"))
}

fn snapshot_ids(repo: &Repo) -> Vec<String> {
    repo.snapshots().iter().map(|s| s["id"].as_str().expect("snapshot id").to_string()).collect()
}

/// The last non-empty stderr line, which must be cairn's `error: ` line.
fn error_line(o: &Out, what: &str) -> String {
    let line = o.stderr_lines().last().map(|l| l.to_string()).unwrap_or_default();
    assert!(line.starts_with("error: "), "{what}: the last stderr line is not cairn's error:\n{}", o.stderr);
    line
}

// ----- the tests

#[test]
fn pg_dump_stream_round_trip_restores_an_identical_database() {
    if !pg_enabled("postgres::pg_dump_stream_round_trip_restores_an_identical_database") {
        return;
    }
    let src = Db::create("rt");
    run_pg(&[&tool("pgbench"), "-i", "-s", "2", "-q", src.name()], b"", None);
    psql(src.name(), MISC_SQL);
    let pg_dump_bin = tool("pg_dump");

    let repo = Repo::init();
    let summary = backup_ok(&repo, "db.sql", &[&pg_dump_bin, src.name()]);

    // The snapshot records the stream: name, size, SHA-256 and command.
    let snaps = repo.snapshots();
    assert_eq!(snaps.len(), 1);
    let st = &snaps[0]["stream"];
    assert_eq!(st["filename"], "db.sql");
    assert_eq!(st["command"], serde_json::json!([pg_dump_bin, src.name()]));
    let size = u64_of(&st["size"], "stream.size");
    assert_eq!(summary["total_bytes_processed"], size);
    assert_eq!(summary["stream"], *st, "backup --json and snapshots --json disagree on the stream");
    assert!(size > 15 << 20, "a pgbench scale-2 dump is ~19 MB, the stream has {size} bytes");

    // `dump` gives back exactly that stream, and it is the database's dump.
    let dumped = repo.dump("latest", "db.sql");
    assert_eq!(dumped.len() as u64, size, "dump length vs recorded size");
    assert_eq!(st["sha256"], sha256_hex(&dumped), "dump SHA-256 vs the recorded one");
    let text = String::from_utf8_lossy(&dumped);
    for want in ["PostgreSQL database dump", "COPY public.pgbench_accounts", "ünïcødé ✓ 日本語 🦀 4999"] {
        assert!(text.contains(want), "the dump lacks {want:?}");
    }
    assert_same_dump(&pg_dump(src.name()), &dumped, "a fresh pg_dump vs the backed-up stream");

    // `cairn dump latest db.sql | psql NEWDB` restores the same database.
    let dst = Db::create("rt_restored");
    dump_into(&repo, "latest", "db.sql", &strs(&psql_restorer(dst.name())));
    let (want, got) = (table_digests(src.name()), table_digests(dst.name()));
    assert_eq!(got, want, "table contents after the restore");
    assert!(want["pgbench_accounts"].starts_with("200000 "), "pgbench_accounts: {}", want["pgbench_accounts"]);
    assert!(want["misc"].starts_with("5003 "), "misc: {}", want["misc"]);
    assert!(want["(large objects)"].starts_with("1 "), "large objects: {}", want["(large objects)"]);
    assert_same_dump(&pg_dump(src.name()), &pg_dump(dst.name()), "pg_dump of the source vs of the restored database");
}

/// A table of 200,000 rows of random hex (~28 MB as a dump; it compresses
/// only ~2:1, so what a backup stores tracks what it did not deduplicate).
pub(crate) const DOCS_SQL: &str = "
CREATE TABLE docs (id int PRIMARY KEY, rev int NOT NULL DEFAULT 0, body text NOT NULL);
INSERT INTO docs
SELECT i, 0, md5(random()::text) || md5(random()::text) || md5(random()::text) || md5(random()::text)
FROM generate_series(1, 200000) AS i;
";

/// The second night: 1% of the rows change, in runs (an UPDATE moves the
/// new row versions to the end of the table, so of the dump too). Updates
/// spread evenly (every 100th row) would touch every ~512 KiB chunk of the
/// dump, and nothing could be deduplicated.
const NIGHT2_SQL: &str = "
UPDATE docs SET rev = rev + 1, body = md5(random()::text) || substr(body, 33) WHERE id BETWEEN 100001 AND 101000;
DELETE FROM docs WHERE id BETWEEN 150001 AND 150500;
INSERT INTO docs
SELECT i, 0, md5(random()::text) || md5(random()::text) || md5(random()::text) || md5(random()::text)
FROM generate_series(200001, 200500) AS i;
";

#[test]
fn second_night_dump_adds_little_and_both_snapshots_restore() {
    if !pg_enabled("postgres::second_night_dump_adds_little_and_both_snapshots_restore") {
        return;
    }
    let src = Db::create("inc");
    psql(src.name(), DOCS_SQL);
    let pg_dump_bin = tool("pg_dump");
    let repo = Repo::init();

    let night1 = table_digests(src.name());
    let s1 = backup_ok(&repo, "db.sql", &[&pg_dump_bin, src.name()]);
    psql(src.name(), NIGHT2_SQL);
    let night2 = table_digests(src.name());
    assert_ne!(night1["docs"], night2["docs"], "the second night changed nothing");
    let s2 = backup_ok(&repo, "db.sql", &[&pg_dump_bin, src.name()]);

    let size1 = u64_of(&s1["total_bytes_processed"], "size 1");
    let size2 = u64_of(&s2["total_bytes_processed"], "size 2");
    let (added1, added2) = (u64_of(&s1["data_added"], "data_added 1"), u64_of(&s2["data_added"], "data_added 2"));
    let (blobs1, blobs2) = (u64_of(&s1["data_blobs"], "data_blobs 1"), u64_of(&s2["data_blobs"], "data_blobs 2"));
    eprintln!(
        "night 1: {size1} bytes streamed, {added1} stored in {blobs1} new blobs; \
         night 2: {size2} bytes streamed, {added2} stored in {blobs2} new blobs"
    );
    assert!(size1 > 25 << 20, "the first dump has only {size1} bytes");
    // Without deduplication the second night would store about what the
    // first did, ~half its size. It changed four places of the dump (the
    // restrict key at the top, two holes, the end): measured 5-8 new chunks
    // of ~40, 1.4-2.9 MB stored.
    assert!(added1 * 4 > size1, "the random rows should compress only ~2:1: {added1} stored of {size1}");
    assert!(added2 * 5 < size2, "night 2 stored {added2} bytes of a {size2}-byte dump (not < 20%)");
    assert!(added2 * 3 < added1, "night 2 stored {added2} bytes, night 1 {added1} (not < 1/3)");
    assert!(blobs2 * 3 < blobs1, "night 2 added {blobs2} data blobs, night 1 {blobs1} (not < 1/3)");

    // Both snapshots are there, the second one's parent is the first.
    let id1 = s1["snapshot_id"].as_str().expect("snapshot_id").to_string();
    let id2 = s2["snapshot_id"].as_str().expect("snapshot_id").to_string();
    let snaps = repo.snapshots();
    assert_eq!(snaps.len(), 2);
    let snap2 = snaps.iter().find(|s| s["id"] == id2.as_str()).expect("snapshot 2 listed");
    assert_eq!(snap2["parent"], id1.as_str(), "the second night's parent");

    // Each restores to its night's database.
    for (id, summary, want, night) in [(&id1, &s1, &night1, 1), (&id2, &s2, &night2, 2)] {
        let dumped = repo.dump(id, "db.sql");
        assert_eq!(summary["stream"]["sha256"], sha256_hex(&dumped), "night {night}: dump SHA-256");
        let dst = Db::create(&format!("inc_restored{night}"));
        dump_into(&repo, id, "db.sql", &strs(&psql_restorer(dst.name())));
        assert_eq!(&table_digests(dst.name()), want, "night {night}: table contents after the restore");
        assert_same_dump(&dumped, &pg_dump(dst.name()), &format!("night {night}: the stream vs a dump of its restore"));
    }
    assert_same_dump(&repo.dump("latest", "db.sql"), &pg_dump(src.name()), "latest vs the source now");
}

#[test]
fn failing_pg_dump_writes_no_snapshot_and_quotes_its_error() {
    if !pg_enabled("postgres::failing_pg_dump_writes_no_snapshot_and_quotes_its_error") {
        return;
    }
    let src = Db::create("fail");
    psql(
        src.name(),
        "CREATE TABLE t (id int, v text); INSERT INTO t SELECT i, 'v' || i FROM generate_series(1, 1000) i;",
    );
    let pg_dump_bin = tool("pg_dump");
    let repo = Repo::init();
    backup_ok(&repo, "db.sql", &[&pg_dump_bin, src.name()]);
    let before = snapshot_ids(&repo);
    assert_eq!(before.len(), 1);

    // A database that does not exist: pg_dump fails before writing anything.
    let missing = unique_name("cairn_missing").replace('-', "_");
    let o = backup_cmd(&repo, "db.sql", &[], &[&pg_dump_bin, &missing]);
    o.assert_failed(None, "pg_dump of a missing database");
    let err = error_line(&o, "pg_dump of a missing database");
    assert!(err.contains(&format!("database \"{missing}\" does not exist")), "pg_dump's error is not quoted: {err}");
    assert!(err.contains("no snapshot was written"), "{err}");
    assert!(o.stdout.is_empty(), "a failed backup printed a summary: {}", o.stdout_str());
    assert_eq!(snapshot_ids(&repo), before, "a snapshot was written for the failed pg_dump");

    // The whole dump is streamed, then the command fails: still no snapshot.
    let script = "\"$1\" \"$2\" && echo 'pg_dump: error: simulated failure after the data' >&2 && exit 3";
    let o = backup_cmd(&repo, "db.sql", &[], &["sh", "-c", script, "sh", &pg_dump_bin, src.name()]);
    o.assert_failed(None, "a dump that fails after its data");
    let err = error_line(&o, "a dump that fails after its data");
    assert!(err.contains("status 3") && err.contains("simulated failure after the data"), "{err}");
    assert_eq!(snapshot_ids(&repo), before, "a snapshot was written for a dump that exited 3");

    // Killed by a signal after the data: no snapshot either.
    let script = "\"$1\" \"$2\" && kill -KILL $$";
    let o = backup_cmd(&repo, "db.sql", &[], &["sh", "-c", script, "sh", &pg_dump_bin, src.name()]);
    o.assert_failed(None, "a dump killed by a signal");
    let err = error_line(&o, "a dump killed by a signal");
    assert!(err.contains("killed by a signal"), "{err}");
    assert_eq!(snapshot_ids(&repo), before, "a snapshot was written for a killed dump");

    // The repository is still sound, and its one snapshot still restores.
    let o = cairn(&repo, &["check"]);
    assert_eq!(o.code, Some(0), "check after the failed dumps:\n{}", o.stderr);
    assert_same_dump(&repo.dump("latest", "db.sql"), &pg_dump(src.name()), "the first snapshot after the failures");
}

#[test]
fn empty_dump_is_refused_unless_allowed() {
    if !pg_enabled("postgres::empty_dump_is_refused_unless_allowed") {
        return;
    }
    let src = Db::create("empty");
    psql(src.name(), "CREATE TABLE t (id int);");
    let repo = Repo::init();
    let tmp = tempfile::tempdir().expect("tempdir");
    let marker = tmp.path().join("pg_dump-succeeded");
    let marker = marker.to_str().expect("utf-8 path");
    // pg_dump runs and succeeds, but its output goes elsewhere: 0 bytes, exit 0.
    let script = "\"$1\" --schema-only \"$2\" > /dev/null && touch \"$3\"";
    let argv = ["sh", "-c", script, "sh", &tool("pg_dump"), src.name(), marker];

    let o = backup_cmd(&repo, "db.sql", &[], &argv);
    o.assert_failed(None, "an empty dump");
    assert!(std::path::Path::new(marker).exists(), "pg_dump did not run or failed:\n{}", o.stderr);
    let err = error_line(&o, "an empty dump");
    assert!(err.contains("empty") && err.contains("no snapshot was written"), "{err}");
    assert!(repo.snapshots().is_empty(), "a snapshot was written for an empty dump");

    // --allow-empty: a snapshot of an empty file.
    std::fs::remove_file(marker).expect("rm marker");
    let o = backup_cmd(&repo, "db.sql", &["--allow-empty"], &argv);
    assert_eq!(o.code, Some(0), "backup --allow-empty of an empty dump:\n{}", o.stderr);
    assert!(std::path::Path::new(marker).exists(), "pg_dump did not run the second time");
    let snaps = repo.snapshots();
    assert_eq!(snaps.len(), 1);
    assert_eq!(snaps[0]["stream"]["size"], 0);
    assert_eq!(snaps[0]["stream"]["sha256"], sha256_hex(b""));
    assert!(repo.dump("latest", "db.sql").is_empty(), "the empty stream dumps to something");
}

#[test]
fn custom_format_dump_round_trips_through_pg_restore() {
    if !pg_enabled("postgres::custom_format_dump_round_trips_through_pg_restore") {
        return;
    }
    let src = Db::create("fc");
    run_pg(&[&tool("pgbench"), "-i", "-s", "1", "-q", src.name()], b"", None);
    psql(src.name(), MISC_SQL);
    let pg_dump_bin = tool("pg_dump");
    let repo = Repo::init();
    let summary = backup_ok(&repo, "db.dump", &[&pg_dump_bin, "-Fc", src.name()]);

    let dumped = repo.dump("latest", "db.dump");
    assert!(dumped.starts_with(b"PGDMP"), "not a custom-format archive: {:?}", &dumped[..dumped.len().min(16)]);
    assert_eq!(summary["stream"]["size"], dumped.len() as u64);
    assert_eq!(summary["stream"]["sha256"], sha256_hex(&dumped));
    assert_eq!(summary["stream"]["command"], serde_json::json!([pg_dump_bin, "-Fc", src.name()]));
    // The archive's table of contents lists the data and the large object.
    let tmp = tempfile::tempdir().expect("tempdir");
    let archive = tmp.path().join("db.dump");
    std::fs::write(&archive, &dumped).expect("write the archive");
    let list = run_pg(&[&tool("pg_restore"), "--list", archive.to_str().expect("utf-8 path")], b"", None);
    let list = String::from_utf8_lossy(&list);
    for want in ["TABLE DATA public misc", "TABLE DATA public pgbench_accounts", "BLOB - 424242"] {
        assert!(list.contains(want), "pg_restore --list lacks {want:?}:\n{list}");
    }

    // `cairn dump latest db.dump | pg_restore -d NEWDB`.
    let dst = Db::create("fc_restored");
    let pg_restore = tool("pg_restore");
    dump_into(&repo, "latest", "db.dump", &[&pg_restore, "--exit-on-error", "-d", dst.name()]);
    let (want, got) = (table_digests(src.name()), table_digests(dst.name()));
    assert_eq!(got, want, "table contents after pg_restore");
    assert!(want["pgbench_accounts"].starts_with("100000 "), "pgbench_accounts: {}", want["pgbench_accounts"]);
    assert_same_dump(&pg_dump(src.name()), &pg_dump(dst.name()), "pg_dump of the source vs of the restored database");
}
