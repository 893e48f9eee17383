//! The PostgreSQL dump source (`cairn::source::postgres`) against the real
//! test server (see `postgres` for how it is started): one snapshot
//! holding `<db>.dump` (or `<db>.sql`) and `<db>-globals.sql`, restored
//! with `pg_restore` (or `psql`) into a new database and compared row by
//! row; a second night of an unchanged database adds almost nothing; a
//! refused connection stores nothing and says why.

use cairn::source::postgres::{dump_streams, PgDumpFormat, PgDumpSpec};

use crate::common::{sha256_hex, Repo};
use crate::multi_stream::lib_backup;
use crate::postgres::{dump_into, pg_enabled, psql, psql_restorer, strs, table_digests, tool, Db, DOCS_SQL, MISC_SQL};

/// A spec for `db` with the connection of the test server, passed through
/// the spec (so through the commands' environment).
fn spec(db: &str) -> PgDumpSpec {
    let var = |v: &str| std::env::var(v).ok();
    PgDumpSpec {
        host: var("PGHOST"),
        port: var("PGPORT").map(|p| p.parse().expect("PGPORT is a port number")),
        user: var("PGUSER"),
        ..PgDumpSpec::new(db)
    }
}

#[test]
fn pg_source_custom_dump_restores_and_a_second_night_adds_almost_nothing() {
    if !pg_enabled("pg_source::pg_source_custom_dump_restores_and_a_second_night_adds_almost_nothing") {
        return;
    }
    let src = Db::create("src");
    psql(src.name(), MISC_SQL);
    psql(src.name(), DOCS_SQL);
    let (dump_name, globals_name) = (format!("{}.dump", src.name()), format!("{}-globals.sql", src.name()));
    let repo = Repo::init();

    let night1 = lib_backup(&repo, dump_streams(&spec(src.name())).expect("dump_streams"), false).expect("night 1");
    let s = &night1.snapshot;
    let names: Vec<&str> = s.streams().iter().map(|st| st.filename.as_str()).collect();
    assert_eq!(names, [dump_name.as_str(), globals_name.as_str()]);
    let argv = s.streams[0].command.clone().expect("the command is recorded");
    assert!(
        argv[0].ends_with("pg_dump") && argv[1..] == ["-Fc", "-Z0", &format!("--dbname={}", src.name())],
        "{argv:?}"
    );

    let dumped = repo.dump("latest", &dump_name);
    assert!(dumped.starts_with(b"PGDMP"), "not a custom-format archive");
    assert_eq!(s.streams[0].sha256, sha256_hex(&dumped));
    let globals = String::from_utf8(repo.dump("latest", &globals_name)).expect("utf-8 globals");
    assert!(globals.contains("CREATE ROLE postgres"), "{globals}");

    // `cairn dump latest DB.dump | pg_restore -d NEWDB`: the same rows.
    let dst = Db::create("src_restored");
    dump_into(&repo, "latest", &dump_name, &[&tool("pg_restore"), "--exit-on-error", "-d", dst.name()]);
    let (want, got) = (table_digests(src.name()), table_digests(dst.name()));
    assert_eq!(got, want, "table contents after pg_restore");
    assert!(want["docs"].starts_with("200000 ") && want["misc"].starts_with("5003 "), "{want:?}");

    // The second night, nothing changed: uncompressed, the archive's chunks
    // are those of the first night but for its header.
    let night2 = lib_backup(&repo, dump_streams(&spec(src.name())).expect("dump_streams"), false).expect("night 2");
    let (m1, m2) = (&night1.snapshot.summary, &night2.snapshot.summary);
    eprintln!(
        "night 1: {} bytes streamed, {} stored in {} blobs; night 2: {} bytes, {} stored in {} blobs",
        m1.total_bytes_processed, m1.data_added, m1.data_blobs, m2.total_bytes_processed, m2.data_added, m2.data_blobs
    );
    assert!(m1.total_bytes_processed > 25 << 20, "the first dump has only {} bytes", m1.total_bytes_processed);
    assert!(m2.data_added * 20 < m2.total_bytes_processed, "night 2 stored {} bytes (not < 5%)", m2.data_added);
    assert!(m2.data_blobs <= 4, "night 2 added {} data blobs", m2.data_blobs);
    assert_eq!(night2.snapshot.parent, Some(night1.id), "the second night's parent");

    let out = repo.run(&["check", "--read-data", "--verify-streams"]);
    assert!(out.contains("note: 2 stream snapshot(s) (4 streams) verified"), "{out}");
}

#[test]
fn pg_source_plain_dump_and_a_refused_connection() {
    if !pg_enabled("pg_source::pg_source_plain_dump_and_a_refused_connection") {
        return;
    }
    let src = Db::create("plain");
    psql(src.name(), "CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT i, 'v' || i FROM generate_series(1, 1000) i;");
    let repo = Repo::init();
    let plain = PgDumpSpec { format: PgDumpFormat::Plain, ..spec(src.name()) };
    let out = lib_backup(&repo, dump_streams(&plain).expect("dump_streams"), false).expect("plain dump");
    let file = format!("{}.sql", src.name());
    assert_eq!(out.snapshot.streams[0].filename, file);
    let dst = Db::create("plain_restored");
    dump_into(&repo, "latest", &file, &strs(&psql_restorer(dst.name())));
    assert_eq!(table_digests(dst.name()), table_digests(src.name()));

    // Nothing listens on the port: pg_dump's own words end the error.
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let refused = PgDumpSpec { host: Some("127.0.0.1".into()), port: Some(port), ..spec(src.name()) };
    let e = lib_backup(&repo, dump_streams(&refused).expect("dump_streams"), false).expect_err("refused");
    let msg = e.to_string();
    assert!(msg.contains("pg_dump") && msg.contains("no snapshot was written"), "{msg}");
    assert!(msg.contains(&format!("port {port} failed")) && msg.contains("Connection refused"), "{msg}");
    assert_eq!(repo.snapshots().len(), 1, "a snapshot was written for a refused connection");
}
