//! The drill of a PostgreSQL source: its dump, restored into a scratch
//! database where the configured queries must return true.
//!
//! Steps, each named in the problem it reports:
//! 1. every file of the snapshot is read back and checked against its
//!    recorded size and SHA-256 (the dump while it is restored);
//! 2. `CREATE DATABASE cairn_drill_<random>` through `[drill]
//!    postgres-scratch`;
//! 3. the dump restored into it, streamed: `pg_restore --no-owner
//!    --no-privileges --exit-on-error` (custom format) or `psql -v
//!    ON_ERROR_STOP=1` (plain); roles are not restored (the globals file is
//!    verified, not applied);
//! 4. each query run there: it must return exactly `t`;
//! 5. `DROP DATABASE … WITH (FORCE)`, whatever happened in 3 and 4.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};

use super::SourceDrill;
use crate::error::{Error, ErrorKind, Result};
use crate::format::snapshot::Snapshot;
use crate::id::SnapshotId;
use crate::job::config::{Drill, PostgresSource};
use crate::pg::session::program;
use crate::repo::Repository;

pub fn drill(
    repo: &Repository,
    id: &SnapshotId,
    snap: &Snapshot,
    pg: &PostgresSource,
    cfg: &Drill,
    d: &mut SourceDrill,
) -> Result<()> {
    let [dump, globals] = pg.snapshot_files();
    // The globals file: read back and checked.
    let mut sink = std::io::sink();
    let n = crate::ops::dump::dump_snapshot(repo, id, snap, &Path::new("/").join(&globals), &mut sink)?;
    d.checks.push(format!("/{globals}: {n} bytes read back, size and SHA-256 match the snapshot's record"));
    let Some(scratch) = &cfg.postgres_scratch else {
        let n = crate::ops::dump::dump_snapshot(repo, id, snap, &Path::new("/").join(&dump), &mut sink)?;
        d.checks.push(format!(
            "/{dump}: {n} bytes read back, size and SHA-256 match (not restored: no [drill] postgres-scratch)"
        ));
        return Ok(());
    };
    let db = format!("cairn_drill_{}", hex::encode(rand::random::<[u8; 6]>()));
    psql(scratch, &format!("CREATE DATABASE {db}")).map_err(|e| e.context("creating the scratch database"))?;
    let target = with_dbname(scratch, &db);
    let result = restore_and_query(repo, id, snap, pg, &dump, &target, &db, cfg, d);
    let dropped = psql(scratch, &format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"));
    result?;
    dropped.map_err(|e| e.context(format!("dropping the scratch database {db}")))?;
    d.checks.push(format!("scratch database {db} dropped"));
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn restore_and_query(
    repo: &Repository,
    id: &SnapshotId,
    snap: &Snapshot,
    pg: &PostgresSource,
    dump: &str,
    target: &str,
    db: &str,
    cfg: &Drill,
    d: &mut SourceDrill,
) -> Result<()> {
    let mut cmd = if pg.format == "plain" {
        let mut c = Command::new(program("psql"));
        c.args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-o", "/dev/null"]).arg(format!("--dbname={target}"));
        c
    } else {
        let mut c = Command::new(program("pg_restore"));
        c.args(["--no-owner", "--no-privileges", "--exit-on-error"]).arg(format!("--dbname={target}"));
        c
    };
    let what = if pg.format == "plain" { "psql" } else { "pg_restore" };
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::io_sentence(format!("cannot run {what}"), e))?;
    let mut stderr = child.stderr.take();
    let err_thread = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(e) = stderr.as_mut() {
            let _ = e.read_to_string(&mut s);
        }
        s
    });
    let fed = {
        let mut stdin = child.stdin.take();
        let r = match stdin.as_mut() {
            Some(w) => crate::ops::dump::dump_snapshot(repo, id, snap, &Path::new("/").join(dump), w),
            None => Err(Error::invalid("no stdin for the restore")),
        };
        drop(stdin);
        r
    };
    let status = child.wait().map_err(|e| Error::io_sentence(format!("cannot wait for {what}"), e))?;
    let err = err_thread.join().unwrap_or_default();
    if !status.success() {
        return Err(Error::new(
            ErrorKind::Command,
            format!("{what} into the scratch database {db} failed ({status}): {}", tail(&err)),
        ));
    }
    let n = fed?;
    d.checks.push(format!("/{dump}: {n} bytes, size and SHA-256 match; restored by {what} into scratch database {db}"));
    for q in &cfg.postgres_queries {
        let out = psql(target, q).map_err(|e| e.context(format!("query `{q}`")))?;
        if out.trim() == "t" {
            d.checks.push(format!("query `{q}`: true"));
        } else {
            d.problems.push(format!("query `{q}` returned {:?}, not true", out.trim()));
        }
    }
    Ok(())
}

/// Runs one SQL command with psql on `conninfo`; returns its unaligned,
/// tuples-only output.
fn psql(conninfo: &str, sql: &str) -> Result<String> {
    let out = Command::new(program("psql"))
        .args(["-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1"])
        .arg(format!("--dbname={conninfo}"))
        .arg("-c")
        .arg(sql)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error::io_sentence("cannot run psql", e))?;
    if !out.status.success() {
        return Err(Error::new(
            ErrorKind::Command,
            format!("psql failed ({}): {}", out.status, tail(&String::from_utf8_lossy(&out.stderr))),
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The last lines of a program's stderr, on one line.
fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().filter(|l| !l.trim().is_empty()).collect();
    let t = lines[lines.len().saturating_sub(3)..].join(" / ");
    if t.is_empty() {
        "no message".into()
    } else {
        t
    }
}

/// `conninfo` (a `postgres://` URI or `key=value` pairs) with its database
/// replaced by `db`.
pub fn with_dbname(conninfo: &str, db: &str) -> String {
    for scheme in ["postgresql://", "postgres://"] {
        if let Some(rest) = conninfo.strip_prefix(scheme) {
            let (main, query) = match rest.find('?') {
                Some(i) => (&rest[..i], &rest[i..]),
                None => (rest, ""),
            };
            let authority = match main.find('/') {
                Some(i) => &main[..i],
                None => main,
            };
            return format!("{scheme}{authority}/{db}{query}");
        }
    }
    if conninfo.trim().is_empty() {
        format!("dbname={db}")
    } else {
        // libpq takes the last of repeated keywords.
        format!("{conninfo} dbname={db}")
    }
}

#[cfg(test)]
mod tests {
    use super::with_dbname;

    #[test]
    fn the_scratch_database_replaces_the_connections_own() {
        assert_eq!(with_dbname("postgres://localhost/postgres", "x"), "postgres://localhost/x");
        assert_eq!(with_dbname("postgresql://u:p@h:5433", "x"), "postgresql://u:p@h:5433/x");
        assert_eq!(with_dbname("postgres://h/db?sslmode=disable", "x"), "postgres://h/x?sslmode=disable");
        assert_eq!(
            with_dbname("host=/tmp port=5432 dbname=postgres", "x"),
            "host=/tmp port=5432 dbname=postgres dbname=x"
        );
        assert_eq!(with_dbname("", "x"), "dbname=x");
    }
}
