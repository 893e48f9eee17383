//! The cluster side of the PITR tests: throwaway PostgreSQL clusters
//! ([`Cluster`], configured by [`Opts`]), running things as the cluster's
//! user, bounded waits, and the SQL helpers that compare rows.

use std::ffi::OsString;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::common::{is_root, Out};

/// How long a wait on the server (archiving, recovery, start) may take.
pub(super) const WAIT: Duration = Duration::from_secs(120);

/// The OS user that runs the clusters and the cairn commands when the
/// tests run as root.
pub(super) const PG_USER: &str = "postgres";

pub(super) fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 test path")
}

/// Whether the PITR tests may run: `CAIRN_TEST_PG` set, else a loud skip
/// (or a panic when `CI` is set).
pub(super) fn pg_enabled(test: &str) -> bool {
    if std::env::var("CAIRN_TEST_PG").is_ok_and(|v| !v.trim().is_empty()) {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!(
            "{test}: CAIRN_TEST_PG is not set, and CI is: CI must run the PostgreSQL tests (scripts/test.sh sets it)"
        );
    }
    let _ = writeln!(
        std::io::stderr(),
        "\n*** {test}: skipped: CAIRN_TEST_PG not set (PostgreSQL's server binaries must be installed; \
         set CAIRN_TEST_PG=1) ***"
    );
    false
}

/// Polls `f` every 50 ms until it gives `Some`, panicking with `what` (and
/// `context()`, e.g. a server log) after `timeout`.
pub(super) fn wait_for<T>(
    what: &str,
    timeout: Duration,
    context: impl Fn() -> String,
    mut f: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}\n{}", context());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ----- running things as the cluster's user

/// The directory of the PostgreSQL server binaries: that of `initdb` on
/// `PATH` (symlinks resolved: /usr/local/bin may hold links to a few of
/// them), else the newest /usr/lib/postgresql/*/bin.
pub(super) fn bindir() -> &'static Path {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let on_path = std::env::var_os("PATH")
            .and_then(|p| std::env::split_paths(&p).map(|d| d.join("initdb")).find(|f| f.is_file()))
            .and_then(|f| Some(f.canonicalize().ok()?.parent()?.to_path_buf()))
            .filter(|d| ["pg_ctl", "postgres", "psql"].iter().all(|t| d.join(t).is_file()));
        on_path
            .or_else(|| {
                let mut v: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
                    .into_iter()
                    .flatten()
                    .flatten()
                    .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
                    .filter(|(_, b)| b.join("initdb").is_file())
                    .collect();
                v.sort();
                v.pop().map(|(_, b)| b)
            })
            .expect("no initdb on PATH or in /usr/lib/postgresql/*/bin: install postgresql (scripts/pg-server.sh does)")
    })
}

pub(super) fn pg_bin(name: &str) -> PathBuf {
    bindir().join(name)
}

/// (uid, gid) of [`PG_USER`].
pub(super) fn pg_ids() -> (u32, u32) {
    let name = std::ffi::CString::new(PG_USER).expect("user name");
    // SAFETY: getpwnam reads a NUL-terminated name; the returned record is
    // read at once, before any other call could reuse its static buffer.
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    assert!(!pw.is_null(), "there is no {PG_USER} user (the postgresql package creates it)");
    // SAFETY: non-null, points to a valid passwd record (see above).
    unsafe { ((*pw).pw_uid, (*pw).pw_gid) }
}

/// Gives a path (not recursive) to the cluster's user, when root.
pub(super) fn give(path: &Path) {
    if is_root() {
        let (uid, gid) = pg_ids();
        std::os::unix::fs::chown(path, Some(uid), Some(gid))
            .unwrap_or_else(|e| panic!("chown {PG_USER} {}: {e}", path.display()));
    }
}

/// `mkdir -p` (mode 0700) of a directory owned by the cluster's user.
pub(super) fn pg_dir(path: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700)).expect("chmod 0700");
    give(path);
    path.to_path_buf()
}

/// A temporary directory owned by the cluster's user.
pub(super) fn pg_tempdir() -> TempDir {
    let d = tempfile::tempdir().expect("tempdir");
    give(d.path());
    d
}

/// Writes a file owned by the cluster's user.
pub(super) fn pg_write(path: &Path, data: &[u8]) {
    std::fs::write(path, data).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    give(path);
}

/// `program` run as the cluster's user (through `setpriv` when root), with
/// an empty environment but `PATH` and `LANG=C`.
pub(super) fn as_pg(program: &Path) -> Command {
    let mut c = if is_root() {
        let mut c = Command::new("setpriv");
        c.args([&format!("--reuid={PG_USER}"), &format!("--regid={PG_USER}"), "--init-groups", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    };
    c.env_clear().env("PATH", std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into())).env("LANG", "C");
    // the cluster's user may not be allowed into the test's working directory
    c.current_dir("/");
    c
}

/// Runs a command to its end (bounded by [`WAIT`]) and captures it.
pub(super) fn run(c: Command) -> Out {
    let mut c = assert_cmd::Command::from_std(c);
    c.timeout(WAIT);
    let o = c.output().expect("run a command");
    Out { code: o.status.code(), stdout: o.stdout, stderr: String::from_utf8_lossy(&o.stderr).into_owned() }
}

pub(super) fn run_ok(c: Command, what: &str) -> String {
    let o = run(c);
    assert_eq!(o.code, Some(0), "{what} failed:\n{}{}", o.stdout_str(), o.stderr);
    o.stdout_str()
}

/// A port nobody listens on now (the clusters listen on no TCP port, but
/// the port names their socket, and a unique one keeps logs apart).
pub(super) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("bind a free port").port()
}

// ----- a throwaway cluster

/// How a [`Cluster`] is configured.
#[derive(Clone, Debug, Default)]
pub(super) struct Opts {
    /// `archive_command`; `None`: `archive_mode = off`.
    pub archive_command: Option<String>,
    /// `archive_timeout` in seconds (0 or unset: off).
    pub archive_timeout: Option<u32>,
    /// initdb's `--wal-segsize` in MB (unset: PostgreSQL's 16).
    pub wal_segsize_mb: Option<u32>,
    /// The server's environment (inherited by archive and restore commands).
    pub env: Vec<(OsString, OsString)>,
}

/// A PostgreSQL cluster in a temporary directory: `DIR/data` (PGDATA),
/// `DIR/sock` (the unix socket), `DIR/server.log`. Stopped when dropped.
pub(super) struct Cluster {
    pub(super) dir: TempDir,
    pub data: PathBuf,
    pub sock: PathBuf,
    pub port: u16,
    pub opts: Opts,
}

/// A row of `pg_stat_archiver`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Archiver {
    pub archived_count: u64,
    pub last_archived_wal: String,
    pub failed_count: u64,
    pub last_failed_wal: String,
}

impl Cluster {
    /// A new cluster (initdb, trust, locale C), configured and started.
    pub fn init(opts: Opts) -> Cluster {
        let c = Cluster::empty(opts);
        let mut initdb = as_pg(&pg_bin("initdb"));
        initdb.args(["-D", p(&c.data), "-U", PG_USER, "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync"]);
        if let Some(mb) = c.opts.wal_segsize_mb {
            initdb.arg(format!("--wal-segsize={mb}"));
        }
        run_ok(initdb, "initdb");
        c.configure();
        c.start();
        c
    }

    /// A cluster with an empty data directory (mode 0700, owned by the
    /// cluster's user), for a restore to fill; then [`Cluster::configure`]
    /// and [`Cluster::start`] it.
    pub fn empty(opts: Opts) -> Cluster {
        let dir = pg_tempdir();
        let data = pg_dir(&dir.path().join("data"));
        let sock = pg_dir(&dir.path().join("sock"));
        Cluster { dir, data, sock, port: free_port(), opts }
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    /// The last 40 lines of the server log.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        format!(
            "--- server log ({}), last lines:\n{}",
            self.log_path().display(),
            lines[lines.len().saturating_sub(40)..].join("\n")
        )
    }

    /// (Re)writes `cairn-test.conf` in PGDATA with this cluster's settings
    /// and makes `postgresql.conf` include it (once). A restored data
    /// directory carries the source's file: this replaces it. Settings that
    /// a restore writes to `postgresql.auto.conf` still win (read last).
    pub fn configure(&self) {
        let conf = self.data.join("postgresql.conf");
        let text = std::fs::read_to_string(&conf).unwrap_or_else(|e| panic!("read {}: {e}", conf.display()));
        let include = "include_if_exists = 'cairn-test.conf'";
        if !text.lines().any(|l| l.trim() == include) {
            pg_write(&conf, format!("{text}\n{include}\n").as_bytes());
        }
        let q = |s: &str| s.replace('\'', "''");
        let mut s = format!(
            "# written by the pitr tests\nport = {}\nlisten_addresses = ''\nunix_socket_directories = '{}'\n\
             fsync = off\nmax_connections = 20\nshared_buffers = 32MB\nwal_level = replica\n\
             log_min_messages = info\nlog_line_prefix = '%m [%p] '\n",
            self.port,
            q(p(&self.sock)),
        );
        match &self.opts.archive_command {
            Some(cmd) => s += &format!("archive_mode = on\narchive_command = '{}'\n", q(cmd)),
            None => s += "archive_mode = off\n",
        }
        s += &format!("archive_timeout = {}\n", self.opts.archive_timeout.unwrap_or(0));
        pg_write(&self.data.join("cairn-test.conf"), s.as_bytes());
    }

    pub(super) fn pg_ctl(&self, args: &[&str]) -> Command {
        let mut c = as_pg(&pg_bin("pg_ctl"));
        c.envs(self.opts.env.iter().map(|(k, v)| (k, v))).args(["-D", p(&self.data)]).args(args);
        c
    }

    /// `pg_ctl -w start`; `Err` (with the log) when the server does not
    /// come up, e.g. a recovery that fails.
    pub fn try_start(&self) -> Result<(), String> {
        let o = run(self.pg_ctl(&["-l", p(&self.log_path()), "-w", "-t", "120", "start"]));
        if o.code == Some(0) {
            Ok(())
        } else {
            Err(format!("pg_ctl start failed ({:?}):\n{}{}\n{}", o.code, o.stdout_str(), o.stderr, self.log_tail()))
        }
    }

    pub fn start(&self) {
        if let Err(e) = self.try_start() {
            panic!("{e}");
        }
    }

    /// Fast shutdown, waiting for it (and so for the archiver's last round).
    pub fn stop(&self) {
        let o = run(self.pg_ctl(&["-m", "fast", "-w", "-t", "60", "stop"]));
        assert_eq!(o.code, Some(0), "pg_ctl stop failed:\n{}{}\n{}", o.stdout_str(), o.stderr, self.log_tail());
    }

    /// The postmaster's pid, if it runs (not a zombie).
    pub fn pid(&self) -> Option<i32> {
        let pid: i32 =
            std::fs::read_to_string(self.data.join("postmaster.pid")).ok()?.lines().next()?.trim().parse().ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let state = stat.rsplit_once(')').map(|(_, r)| r.trim_start().chars().next())?;
        (state != Some('Z')).then_some(pid)
    }

    pub fn running(&self) -> bool {
        self.pid().is_some()
    }

    /// `PGHOST`, `PGPORT`, `PGUSER` and `PGDATABASE` for a libpq client.
    pub fn libpq_env(&self) -> Vec<(OsString, OsString)> {
        [
            ("PGHOST", p(&self.sock).to_string()),
            ("PGPORT", self.port.to_string()),
            ("PGUSER", PG_USER.into()),
            ("PGDATABASE", "postgres".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.into(), v.into()))
        .collect()
    }

    /// Runs SQL in `db` through psql (stopping at the first error): the
    /// unaligned, tuples-only output, trimmed; `Err` with psql's stderr.
    pub fn try_sql(&self, db: &str, query: &str) -> Result<String, String> {
        let mut c = Command::new(pg_bin("psql"));
        c.env_clear()
            .env("PGCONNECT_TIMEOUT", "10")
            .args(["-X", "-q", "-tA", "-v", "ON_ERROR_STOP=1", "-h", p(&self.sock), "-p", &self.port.to_string()])
            .args(["-U", PG_USER, "-d", db, "-c", query]);
        let o = run(c);
        match o.code {
            Some(0) => Ok(o.stdout_str().trim().to_string()),
            _ => Err(format!("psql {query:?} failed ({:?}): {}", o.code, o.stderr)),
        }
    }

    pub fn sql(&self, db: &str, query: &str) -> String {
        self.try_sql(db, query).unwrap_or_else(|e| panic!("{e}\n{}", self.log_tail()))
    }

    /// `sql` on the `postgres` database.
    pub fn q(&self, query: &str) -> String {
        self.sql("postgres", query)
    }

    /// The system identifier, as PostgreSQL prints it (decimal).
    pub fn system_id(&self) -> String {
        self.q("SELECT system_identifier FROM pg_control_system()")
    }

    /// The timeline of the WAL now written, from the current segment's name.
    pub fn timeline(&self) -> u32 {
        let seg = self.q("SELECT pg_walfile_name(pg_current_wal_lsn())");
        u32::from_str_radix(&seg[..8], 16).expect("hex timeline")
    }

    /// Writes a WAL record, then switches to a new segment; returns the
    /// name of the segment it closed.
    pub fn switch_wal(&self) -> String {
        self.q("SELECT pg_logical_emit_message(false, 'cairn-test', 'switch')");
        self.q("SELECT pg_walfile_name(pg_switch_wal())")
    }

    pub fn archiver(&self) -> Archiver {
        let row = self
            .q("SELECT archived_count, coalesce(last_archived_wal, ''), failed_count, coalesce(last_failed_wal, '') \
             FROM pg_stat_archiver");
        let f: Vec<&str> = row.split('|').collect();
        assert_eq!(f.len(), 4, "pg_stat_archiver: {row:?}");
        Archiver {
            archived_count: f[0].parse().expect("archived_count"),
            last_archived_wal: f[1].to_string(),
            failed_count: f[2].parse().expect("failed_count"),
            last_failed_wal: f[3].to_string(),
        }
    }

    /// Whether `name` (a WAL file name) waits for archiving (`.ready`).
    pub fn ready(&self, name: &str) -> bool {
        self.q(&format!("SELECT count(*) FROM pg_ls_archive_statusdir() WHERE name = '{name}.ready'")) != "0"
    }

    /// Waits until `name` and every WAL file before it are archived: the
    /// archiver works oldest first, so `last_archived_wal >= name` with no
    /// `.ready` left for it. Panics after [`WAIT`], or as soon as
    /// `archive_command` has failed three more times (PostgreSQL's retries
    /// of one round: a command that keeps failing), with the archiver's
    /// row and the log (which holds the command's stderr).
    pub fn wait_archived(&self, name: &str) {
        self.wait_archived_since(name, self.archiver().failed_count)
    }

    /// [`Cluster::wait_archived`], counting failures from `failed_before`.
    pub(super) fn wait_archived_since(&self, name: &str, failed_before: u64) {
        wait_for(
            &format!("{name} to be archived"),
            WAIT,
            || format!("pg_stat_archiver: {:?}\n{}", self.archiver(), self.log_tail()),
            || {
                let a = self.archiver();
                assert!(
                    a.failed_count < failed_before + 3,
                    "archive_command failed {} times while waiting for {name}: {a:?}\n{}",
                    a.failed_count - failed_before,
                    self.log_tail()
                );
                (a.last_archived_wal.as_str() >= name && !self.ready(name)).then_some(())
            },
        )
    }

    /// [`Cluster::switch_wal`], then [`Cluster::wait_archived`]; the segment.
    pub fn switch_and_archive(&self) -> String {
        let failed_before = self.archiver().failed_count;
        let seg = self.switch_wal();
        self.wait_archived_since(&seg, failed_before);
        seg
    }

    /// Waits until `failed_count` reaches `n`; the archiver row then.
    pub fn wait_failures(&self, n: u64) -> Archiver {
        wait_for(
            &format!("{n} failed archive attempts"),
            WAIT,
            || format!("pg_stat_archiver: {:?}\n{}", self.archiver(), self.log_tail()),
            || Some(self.archiver()).filter(|a| a.failed_count >= n),
        )
    }

    /// The end of recovery, polled: `Ok` once `pg_is_in_recovery()` is
    /// false (a promoted cluster), `Err` with the log once the server has
    /// stopped (a failed recovery). Panics after `timeout`.
    pub fn wait_promoted(&self, timeout: Duration) -> Result<(), String> {
        wait_for(
            "the end of recovery",
            timeout,
            || self.log_tail(),
            || {
                if !self.running() {
                    return Some(Err(format!("the server stopped during recovery\n{}", self.log_tail())));
                }
                match self.try_sql("postgres", "SELECT pg_is_in_recovery()") {
                    Ok(r) if r == "f" => Some(Ok(())),
                    _ => None,
                }
            },
        )
    }

    /// A restored cluster: configured, started, promoted (or a panic).
    pub fn start_promoted(&self) {
        self.configure();
        self.start();
        if let Err(e) = self.wait_promoted(WAIT) {
            panic!("{e}");
        }
    }

    /// The commit time of everything committed so far, as the restore's
    /// `--time` wants it: a `now()` taken after the last commit, in UTC.
    pub fn now(&self) -> String {
        self.q("SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00'")
    }
}

impl Drop for Cluster {
    /// Stops the server: fast, else immediate, else SIGKILL to the
    /// postmaster (its children exit when they notice it gone).
    fn drop(&mut self) {
        if !self.running() {
            return;
        }
        for mode in ["fast", "immediate"] {
            let _ = run(self.pg_ctl(&["-m", mode, "-w", "-t", "30", "stop"]));
            if !self.running() {
                return;
            }
        }
        if let Some(pid) = self.pid() {
            // SAFETY: kill has no memory effects; pid is our postmaster.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.running() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Row count and an MD5 of the sorted rows of a table, or "missing".
pub(super) fn digest(c: &Cluster, table: &str) -> String {
    if c.q(&format!("SELECT to_regclass('public.{table}') IS NULL")) == "t" {
        return "missing".into();
    }
    c.q(&format!(
        "SELECT count(*) || ' ' || coalesce(md5(string_agg(t::text, ',' ORDER BY t::text)), '-') FROM public.{table} t"
    ))
}

/// `digest` of several tables.
pub(super) fn digests(c: &Cluster, tables: &[&str]) -> Vec<(String, String)> {
    tables.iter().map(|t| (t.to_string(), digest(c, t))).collect()
}

/// Inserts rows `from..=to` into `t(id int, note text)`, one transaction.
pub(super) fn insert(c: &Cluster, table: &str, from: u32, to: u32) {
    c.q(&format!("INSERT INTO {table} SELECT i, md5(i::text) FROM generate_series({from}, {to}) i"));
}

/// The ids in a table, as "count min max".
pub(super) fn ids(c: &Cluster, table: &str) -> String {
    c.q(&format!("SELECT count(*) || ' ' || coalesce(min(id), 0) || ' ' || coalesce(max(id), 0) FROM {table}"))
}

/// The file names in a cluster's pg_wal (history files of a restore).
pub(super) fn pg_wal_files(c: &Cluster) -> Vec<String> {
    c.q("SELECT name FROM pg_ls_waldir() ORDER BY 1").lines().map(String::from).collect()
}

// ----- the harness alone (no cairn pg commands)

/// Processes of the cluster's user whose command line names `dir`.
pub(super) fn processes_under(dir: &Path) -> String {
    let mut c = Command::new("pgrep");
    if is_root() {
        c.args(["-u", PG_USER]);
    }
    c.args(["-a", "-f", p(dir)]);
    c.output().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string()).unwrap_or_default()
}

pub(super) fn assert_no_processes(dir: &Path) {
    wait_for(
        &format!("no process left under {}", dir.display()),
        Duration::from_secs(15),
        || processes_under(dir),
        || processes_under(dir).is_empty().then_some(()),
    );
}
