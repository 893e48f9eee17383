//! A `psql` session kept open across a base backup.
//!
//! PostgreSQL's non-exclusive backup API needs `pg_backup_start` and
//! `pg_backup_stop` in one session. cairn drives `psql` over a pipe rather
//! than speaking the protocol itself, so that every libpq setting a user
//! relies on works unchanged: PGHOST, PGPORT, PGUSER, PGPASSWORD,
//! PGPASSFILE and `~/.pgpass`, PGSERVICE, PGSSLMODE, or a `--dbname`
//! connection string or URI.
//!
//! Each query's result is printed unaligned and tuples-only, one row per
//! line, fields separated by a unit separator (0x1F), and followed by an
//! end marker that cairn echoes after it: a query's rows are everything
//! before the marker. `ON_ERROR_STOP` makes psql exit at the first error,
//! which ends the session (and, for a backup, aborts it on the server).

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex};

use crate::error::{Error, ErrorKind, Result};

const SEP: char = '\u{1f}';
const END: &str = "\u{1e}cairn-end";

/// An open `psql` session.
pub struct Session {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    stderr: Arc<Mutex<String>>,
}

/// The `psql` to run: `$CAIRN_PSQL`, else [`program`]`("psql")`.
fn psql_program() -> std::path::PathBuf {
    if let Some(p) = std::env::var_os("CAIRN_PSQL").filter(|p| !p.is_empty()) {
        return p.into();
    }
    program("psql")
}

/// A PostgreSQL client program (`psql`, `pg_restore`, …) as
/// [`crate::source::postgres::find_program`] finds it, else its bare name
/// (whose failure to start then names it).
pub fn program(name: &str) -> std::path::PathBuf {
    crate::source::postgres::find_program(name).unwrap_or_else(|_| name.into())
}

impl Session {
    /// Connects with the libpq environment, or `dbname` (a connection
    /// string or URI) when given.
    pub fn connect(dbname: Option<&str>) -> Result<Self> {
        let program = psql_program();
        let mut cmd = Command::new(&program);
        cmd.args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-P", "pager=off"])
            .arg("-F")
            .arg(SEP.to_string())
            .env("PGAPPNAME", "cairn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(d) = dbname {
            cmd.arg("-d").arg(d);
        }
        let mut child = cmd.spawn().map_err(|e| {
            Error::with_source(
                ErrorKind::InvalidInput,
                format!(
                    "cannot run {}: {} (PostgreSQL's client psql is needed; set CAIRN_PSQL to its path)",
                    program.display(),
                    crate::error::io_reason(&e)
                ),
                e,
            )
        })?;
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err_pipe = child.stderr.take().expect("piped");
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = std::io::Read::read_to_string(&mut err_pipe, &mut s);
            if let Ok(mut g) = sink.lock() {
                g.push_str(&s);
            }
        });
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().expect("piped"));
        let mut s = Session { child, stdin, stdout, stderr };
        // Fails here, with psql's message, if the server cannot be reached.
        s.query("SELECT 1")?;
        Ok(s)
    }

    /// Runs one SQL statement and returns its rows (fields split).
    pub fn query(&mut self, sql: &str) -> Result<Vec<Vec<String>>> {
        let script = format!("{sql};\n\\echo '{END}'\n");
        let sent = match self.stdin.as_mut() {
            Some(w) => w.write_all(script.as_bytes()).and_then(|()| w.flush()),
            None => Err(std::io::Error::other("session closed")),
        };
        let mut rows = Vec::new();
        let mut line = String::new();
        loop {
            line.clear();
            let n = self.stdout.read_line(&mut line).map_err(|e| Error::io("reading from psql", e))?;
            if n == 0 || sent.is_err() {
                return Err(self.failure(sql));
            }
            let l = line.trim_end_matches(['\n', '\r']);
            if l == END {
                return Ok(rows);
            }
            rows.push(l.split(SEP).map(str::to_string).collect());
        }
    }

    /// A single value.
    pub fn value(&mut self, sql: &str) -> Result<String> {
        let rows = self.query(sql)?;
        rows.into_iter()
            .next()
            .and_then(|r| r.into_iter().next())
            .ok_or_else(|| Error::new(ErrorKind::Io, format!("PostgreSQL returned no row for: {sql}")))
    }

    /// psql ended: its exit status and error message.
    fn failure(&mut self, sql: &str) -> Error {
        self.stdin = None;
        let status = self.child.wait().ok();
        // Give the stderr reader a moment to collect the last words.
        for _ in 0..50 {
            if self.stderr.lock().map(|s| !s.is_empty()).unwrap_or(true) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
        let msg = self.stderr.lock().map(|s| s.trim().replace('\n', "; ")).unwrap_or_default();
        let what = sql.split_whitespace().take(3).collect::<Vec<_>>().join(" ");
        let status = status.map(|s| s.to_string()).unwrap_or_default();
        Error::new(
            ErrorKind::Io,
            if msg.is_empty() {
                format!("psql ended ({status}) during `{what}`")
            } else {
                format!("PostgreSQL: {msg} (during `{what}`)")
            },
        )
    }

    /// Ends the session.
    pub fn close(mut self) {
        self.stdin = None;
        let _ = self.child.wait();
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.stdin = None;
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Quotes a string as an SQL literal.
pub fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}
