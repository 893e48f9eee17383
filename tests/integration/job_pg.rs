//! `cairn run` and `cairn drill` with a PostgreSQL source, against the real
//! PostgreSQL server of scripts/pg-server.sh (see postgres.rs for how the
//! tests find it and skip without it).

use crate::common::unique_name;
use crate::job::Job;
use crate::postgres::{pg_enabled, psql};

/// A database with an `orders` table of `rows` rows.
pub(crate) fn database(rows: u32) -> String {
    let db = unique_name("jobpg").replace('-', "_");
    psql("postgres", &format!("CREATE DATABASE {db}"));
    psql(
        &db,
        &format!(
            "CREATE TABLE orders (id int primary key, customer text, total numeric, created_at timestamptz);
             INSERT INTO orders SELECT i, 'customer ' || (i % 97), i * 1.25, now() - i * interval '1 minute'
               FROM generate_series(1, {rows}) i;"
        ),
    );
    db
}

pub(crate) fn drop_database(db: &str) {
    psql("postgres", &format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"));
}

fn scratch_databases() -> String {
    psql("postgres", "SELECT string_agg(datname, ',') FROM pg_database WHERE datname LIKE 'cairn_drill_%'")
}

fn config(db: &str, queries: &[&str]) -> String {
    let host = std::env::var("PGHOST").unwrap();
    let port = std::env::var("PGPORT").unwrap();
    let user = std::env::var("PGUSER").unwrap();
    let q: Vec<String> = queries.iter().map(|q| format!("{q:?}")).collect();
    format!(
        r#"
[backup]
host = "db1"

[[backup.snapshots]]
postgres = {{ database = "{db}", host = "{host}", port = {port}, user = "{user}" }}

[drill]
postgres-scratch = "host={host} port={port} user={user} dbname=postgres"
postgres-queries = [{}]
"#,
        q.join(", ")
    )
}

#[test]
fn run_dumps_a_database_and_drill_restores_it_into_a_scratch_database() {
    if !pg_enabled("run_dumps_a_database_and_drill_restores_it_into_a_scratch_database") {
        return;
    }
    let db = database(200_000);
    let job = Job::new(&config(&db, &["select count(*) = 200000 from orders", "select sum(total) > 0 from orders"]));
    let (code, out, err) = job.out(&["run"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains(&format!("{db}: snapshot ")), "{out}");
    let snaps = job.snapshots();
    assert_eq!(snaps.len(), 1);
    let paths: Vec<&str> = snaps[0]["paths"].as_array().unwrap().iter().map(|p| p.as_str().unwrap()).collect();
    assert_eq!(paths, [format!("/{db}-globals.sql"), format!("/{db}.dump")]);
    // The dump is custom format and restores with pg_restore.
    let (code, dump, _) = job.out(&["dump", "latest", &format!("{db}.dump")]);
    assert_eq!(code, 0);
    assert!(dump.as_bytes().starts_with(b"PGDMP"), "custom format");
    let (code, globals, _) = job.out(&["dump", "latest", &format!("{db}-globals.sql")]);
    assert_eq!(code, 0);
    assert!(globals.contains("CREATE ROLE postgres"), "{globals}");

    // A second night of an unchanged database adds little.
    let (code, out, err) = job.out(&["run", "--json"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let added = v["sources"][0]["data_added"].as_u64().unwrap();
    let total = v["sources"][0]["total_bytes_processed"].as_u64().unwrap();
    assert!(added * 10 < total, "second night added {added} of {total}");

    let (code, out, err) = job.out(&["drill"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("restored by pg_restore into scratch database cairn_drill_"), "{out}");
    assert!(out.contains("query `select count(*) = 200000 from orders`: true"), "{out}");
    assert!(out.contains("dropped"), "{out}");
    assert_eq!(scratch_databases(), "", "the scratch database is dropped");

    // A query that is false fails the drill; the scratch database still goes.
    std::fs::write(&job.config, std::fs::read_to_string(&job.config).unwrap().replace("= 200000", "= 199999")).unwrap();
    let (code, out, _) = job.out(&["drill"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("FAILED: query `select count(*) = 199999 from orders` returned \"f\", not true"), "{out}");
    assert_eq!(scratch_databases(), "");
    drop_database(&db);
}

#[test]
fn a_failing_dump_fails_its_source_and_stores_nothing() {
    if !pg_enabled("a_failing_dump_fails_its_source_and_stores_nothing") {
        return;
    }
    let job = Job::new(&config("no_such_database_here", &[]));
    let (code, out, err) = job.out(&["run"]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(out.contains("no_such_database_here: FAILED: ") && out.contains("does not exist"), "{out}");
    assert!(job.snapshots().is_empty());
}

#[test]
fn a_user_that_is_not_a_superuser_needs_no_role_passwords() {
    if !pg_enabled("a_user_that_is_not_a_superuser_needs_no_role_passwords") {
        return;
    }
    let role = unique_name("jobrole").replace('-', "_");
    psql("postgres", &format!("CREATE ROLE {role} LOGIN"));
    let db = database(100);
    psql("postgres", &format!("ALTER DATABASE {db} OWNER TO {role}"));
    psql(&db, &format!("ALTER TABLE orders OWNER TO {role}"));
    let host = std::env::var("PGHOST").unwrap();
    let port = std::env::var("PGPORT").unwrap();
    let entry = |extra: &str| {
        format!(
            "[[backup.snapshots]]\npostgres = {{ database = \"{db}\", host = \"{host}\", port = {port}, user = \"{role}\"{extra} }}\n"
        )
    };
    let job = Job::new(&entry(""));
    let (code, out, _) = job.out(&["run"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("pg_authid"), "pg_dumpall's own reason: {out}");
    assert!(job.snapshots().is_empty());
    std::fs::write(
        &job.config,
        std::fs::read_to_string(&job.config).unwrap().replace("\" }", "\", no-role-passwords = true }"),
    )
    .unwrap();
    let (code, out, err) = job.out(&["run"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let (code, globals, _) = job.out(&["dump", "latest", &format!("{db}-globals.sql")]);
    assert_eq!(code, 0);
    assert!(globals.contains(&format!("CREATE ROLE {role}")), "{globals}");
    drop_database(&db);
    psql("postgres", &format!("DROP ROLE {role}"));
}
