//! The PostgreSQL dump source: a database's `pg_dump` and the cluster's
//! `pg_dumpall --globals-only` (roles, tablespaces), as two streams of one
//! snapshot ([`crate::ops::backup::backup_streams`]), named after the
//! database: `<db>.dump` (custom format, uncompressed so that chunks
//! deduplicate from one night to the next) or `<db>.sql` (plain), and
//! `<db>-globals.sql`. Streamed, no temporary files; a failing or empty
//! dump stores no snapshot.
//!
//! Connection settings the spec leaves unset come from libpq's own
//! environment (`PGHOST`, `PGPASSWORD`, ...), `~/.pgpass` and service
//! files; those it sets are passed to the commands as `PGHOST`, `PGPORT`
//! and `PGUSER`.

use std::path::{Path, PathBuf};

use crate::error::{Error, ErrorKind, Result};
use crate::ops::backup::{CommandSpec, NamedStream, StreamInput};

/// The format of the database's dump.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PgDumpFormat {
    /// `pg_dump -Fc -Z0`, restored with `pg_restore`: `<db>.dump`.
    #[default]
    Custom,
    /// `pg_dump -Fp`, restored with `psql`: `<db>.sql`.
    Plain,
}

impl std::str::FromStr for PgDumpFormat {
    type Err = Error;

    /// `custom` or `plain` (as a configuration file spells them).
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "custom" => Ok(PgDumpFormat::Custom),
            "plain" => Ok(PgDumpFormat::Plain),
            _ => Err(Error::invalid(format!("PostgreSQL dump format {s:?}: give custom or plain"))),
        }
    }
}

/// What to dump, and how to reach the server.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PgDumpSpec {
    pub database: String,
    /// Host name or socket directory (`PGHOST`).
    pub host: Option<String>,
    pub port: Option<u16>,
    pub user: Option<String>,
    pub format: PgDumpFormat,
    /// The `pg_dump` to run (its `pg_dumpall` is taken from the same
    /// directory when there is one); else found on `PATH` or in the newest
    /// `/usr/lib/postgresql/*/bin`.
    pub pg_dump: Option<PathBuf>,
    /// `pg_dumpall --no-role-passwords`: the globals without the roles'
    /// password hashes, which a user that is not a superuser cannot read
    /// (on PostgreSQL 15 such a user's `pg_dumpall` fails without it).
    pub no_role_passwords: bool,
}

impl PgDumpSpec {
    /// A custom-format dump of `database`, with libpq's defaults.
    pub fn new(database: impl Into<String>) -> Self {
        Self { database: database.into(), ..Default::default() }
    }
}

/// The two streams of a dump of `spec`'s database: the database's dump,
/// then the globals. Nothing runs until the streams are read.
pub fn dump_streams(spec: &PgDumpSpec) -> Result<Vec<NamedStream>> {
    Ok(commands(spec)?
        .into_iter()
        .map(|(name, cmd)| NamedStream::new(name, StreamInput::CommandWithEnv(cmd)))
        .collect())
}

/// File names and commands of [`dump_streams`].
fn commands(spec: &PgDumpSpec) -> Result<Vec<(String, CommandSpec)>> {
    let db = &spec.database;
    if db.is_empty() {
        return Err(Error::invalid("PostgreSQL dump: no database name"));
    }
    // libpq reads a database name with `=` or a URI prefix as a connection
    // string: it would connect somewhere else than the name says.
    if db.contains('=') || db.starts_with("postgres://") || db.starts_with("postgresql://") {
        return Err(Error::invalid(format!(
            "PostgreSQL dump: database name {db:?} reads as a connection string; give host, port and user apart"
        )));
    }
    if db.contains('/') || db.contains('\0') {
        return Err(Error::invalid(format!("PostgreSQL dump: database name {db:?} cannot name a file")));
    }
    let pg_dump = match &spec.pg_dump {
        Some(p) => p.clone(),
        None => find_program("pg_dump")?,
    };
    let sibling = pg_dump.with_file_name("pg_dumpall");
    let pg_dumpall = if spec.pg_dump.is_some() && sibling.is_file() { sibling } else { find_program("pg_dumpall")? };
    let mut env = Vec::new();
    if let Some(h) = &spec.host {
        env.push(("PGHOST".to_string(), h.clone()));
    }
    if let Some(p) = spec.port {
        env.push(("PGPORT".to_string(), p.to_string()));
    }
    if let Some(u) = &spec.user {
        env.push(("PGUSER".to_string(), u.clone()));
    }
    let (file, format_args): (String, &[&str]) = match spec.format {
        PgDumpFormat::Custom => (format!("{db}.dump"), &["-Fc", "-Z0"]),
        PgDumpFormat::Plain => (format!("{db}.sql"), &["-Fp"]),
    };
    let mut dump = vec![path_str(&pg_dump)?];
    dump.extend(format_args.iter().map(|s| s.to_string()));
    dump.push(format!("--dbname={db}"));
    let mut globals = vec![path_str(&pg_dumpall)?, "--globals-only".to_string(), format!("--database={db}")];
    if spec.no_role_passwords {
        globals.push("--no-role-passwords".to_string());
    }
    Ok(vec![
        (file, CommandSpec { argv: dump, env: env.clone() }),
        (format!("{db}-globals.sql"), CommandSpec { argv: globals, env }),
    ])
}

fn path_str(p: &Path) -> Result<String> {
    p.to_str().map(String::from).ok_or_else(|| Error::invalid(format!("{} is not UTF-8", p.display())))
}

/// A PostgreSQL client program: on `PATH`, else in the newest
/// `/usr/lib/postgresql/<version>/bin` (Debian's layout).
pub fn find_program(name: &str) -> Result<PathBuf> {
    let on_path =
        std::env::var_os("PATH").and_then(|p| std::env::split_paths(&p).map(|d| d.join(name)).find(|p| p.is_file()));
    on_path.or_else(|| newest_in(Path::new("/usr/lib/postgresql"), name)).ok_or_else(|| {
        Error::new(ErrorKind::Command, format!("{name} is neither on PATH nor in /usr/lib/postgresql/*/bin"))
    })
}

/// `<root>/<version>/bin/<name>` of the highest version that has it.
fn newest_in(root: &Path, name: &str) -> Option<PathBuf> {
    let version = |s: &str| -> Option<Vec<u32>> { s.split('.').map(|p| p.parse().ok()).collect() };
    let mut found: Vec<(Vec<u32>, PathBuf)> = std::fs::read_dir(root)
        .ok()?
        .flatten()
        .filter_map(|e| Some((version(e.file_name().to_str()?)?, e.path().join("bin").join(name))))
        .filter(|(_, p)| p.is_file())
        .collect();
    found.sort();
    found.pop().map(|(_, p)| p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn custom_dump_and_globals_with_the_connection_in_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let (dump, all) = (dir.path().join("pg_dump"), dir.path().join("pg_dumpall"));
        std::fs::write(&dump, "").unwrap();
        std::fs::write(&all, "").unwrap();
        let spec = PgDumpSpec {
            host: Some("/run/pg".into()),
            port: Some(5433),
            user: Some("backup".into()),
            pg_dump: Some(dump.clone()),
            ..PgDumpSpec::new("app")
        };
        let c = commands(&spec).unwrap();
        assert_eq!(c[0].0, "app.dump");
        let d = dump.to_str().unwrap();
        assert_eq!(c[0].1.argv, [d, "-Fc", "-Z0", "--dbname=app"]);
        assert_eq!(c[1].0, "app-globals.sql");
        assert_eq!(c[1].1.argv, [all.to_str().unwrap(), "--globals-only", "--database=app"]);
        let env = [("PGHOST", "/run/pg"), ("PGPORT", "5433"), ("PGUSER", "backup")]
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .to_vec();
        assert_eq!(c[0].1.env, env);
        assert_eq!(c[1].1.env, env);
        let c = commands(&PgDumpSpec { no_role_passwords: true, ..spec }).unwrap();
        assert_eq!(c[1].1.argv, [all.to_str().unwrap(), "--globals-only", "--database=app", "--no-role-passwords"]);

        let plain = PgDumpSpec { format: PgDumpFormat::Plain, pg_dump: Some(dump), ..PgDumpSpec::new("app") };
        let c = commands(&plain).unwrap();
        assert_eq!(c[0].0, "app.sql");
        assert_eq!(c[0].1.argv[1..], ["-Fp", "--dbname=app"]);
        assert!(c[0].1.env.is_empty(), "libpq's own environment applies");
    }

    #[test]
    fn formats_by_name() {
        assert_eq!("custom".parse::<PgDumpFormat>().unwrap(), PgDumpFormat::Custom);
        assert_eq!("plain".parse::<PgDumpFormat>().unwrap(), PgDumpFormat::Plain);
        assert_eq!("tar".parse::<PgDumpFormat>().unwrap_err().kind(), ErrorKind::InvalidInput);
    }

    #[test]
    fn names_that_are_connection_strings_or_paths_are_refused() {
        for db in ["", "host=evil dbname=x", "postgresql://h/x", "a/b"] {
            let spec = PgDumpSpec { pg_dump: Some("/bin/true".into()), ..PgDumpSpec::new(db) };
            assert_eq!(commands(&spec).unwrap_err().kind(), ErrorKind::InvalidInput, "{db:?}");
        }
    }

    #[test]
    fn the_newest_version_directory_wins() {
        let dir = tempfile::tempdir().unwrap();
        for v in ["9.6", "13", "15", "16"] {
            std::fs::create_dir_all(dir.path().join(v).join("bin")).unwrap();
        }
        for v in ["9.6", "13", "15"] {
            std::fs::write(dir.path().join(v).join("bin/pg_dump"), "").unwrap();
        }
        assert_eq!(newest_in(dir.path(), "pg_dump"), Some(dir.path().join("15/bin/pg_dump")));
        assert_eq!(newest_in(dir.path(), "pg_restore"), None);
    }
}
