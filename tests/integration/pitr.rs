//! Point-in-time recovery against real PostgreSQL clusters: WAL archived by
//! `cairn pg wal-push` (PostgreSQL's `archive_command`), base backups by
//! `cairn pg backup`, restores by `cairn pg restore` (which writes the
//! `restore_command` calling `cairn pg wal-fetch`), then the restored
//! cluster started and its rows compared with what was committed at the
//! target.
//!
//! Every test makes its own throwaway clusters ([`Cluster`]): initdb in a
//! temporary directory, a unix socket in that directory only (no TCP), a
//! free port. Clusters run as the `postgres` OS user when the tests run as
//! root (PostgreSQL refuses root), else as the test's own user; so do the
//! cairn commands of these tests, since `archive_command` does: the
//! repository, its password file (`--password-file`) and its cache
//! (`--cache-dir`) belong to that user. The server is started with the
//! environment cairn needs (the test KDF, and the `AWS_*` credentials for a
//! repository on S3), which `archive_command` and `restore_command` inherit.
//! A cluster's `Drop` stops it (fast, then immediate, then SIGKILL), so a
//! failing test leaves no server behind.
//!
//! Gate: like `postgres.rs`, these tests need `CAIRN_TEST_PG` (they do not
//! use the shared server of `scripts/pg-server.sh`, only its binaries).
//! Without it they print a loud "skipped: CAIRN_TEST_PG not set" and pass,
//! except when `CI` is set: there they fail. The S3 variant also follows
//! `common::s3_shared`.

use std::ffi::OsString;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

use crate::common::{self, both_backends, is_root, Out, Repo, Where};

both_backends!(point_in_time_recovery_end_to_end);

/// How long a wait on the server (archiving, recovery, start) may take.
const WAIT: Duration = Duration::from_secs(120);

/// The OS user that runs the clusters and the cairn commands when the
/// tests run as root.
const PG_USER: &str = "postgres";

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 test path")
}

/// Whether the PITR tests may run: `CAIRN_TEST_PG` set, else a loud skip
/// (or a panic when `CI` is set).
fn pg_enabled(test: &str) -> bool {
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
fn wait_for<T>(what: &str, timeout: Duration, context: impl Fn() -> String, mut f: impl FnMut() -> Option<T>) -> T {
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
fn bindir() -> &'static Path {
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

fn pg_bin(name: &str) -> PathBuf {
    bindir().join(name)
}

/// (uid, gid) of [`PG_USER`].
fn pg_ids() -> (u32, u32) {
    let name = std::ffi::CString::new(PG_USER).expect("user name");
    // SAFETY: getpwnam reads a NUL-terminated name; the returned record is
    // read at once, before any other call could reuse its static buffer.
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    assert!(!pw.is_null(), "there is no {PG_USER} user (the postgresql package creates it)");
    // SAFETY: non-null, points to a valid passwd record (see above).
    unsafe { ((*pw).pw_uid, (*pw).pw_gid) }
}

/// Gives a path (not recursive) to the cluster's user, when root.
fn give(path: &Path) {
    if is_root() {
        let (uid, gid) = pg_ids();
        std::os::unix::fs::chown(path, Some(uid), Some(gid))
            .unwrap_or_else(|e| panic!("chown {PG_USER} {}: {e}", path.display()));
    }
}

/// `mkdir -p` (mode 0700) of a directory owned by the cluster's user.
fn pg_dir(path: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700)).expect("chmod 0700");
    give(path);
    path.to_path_buf()
}

/// A temporary directory owned by the cluster's user.
fn pg_tempdir() -> TempDir {
    let d = tempfile::tempdir().expect("tempdir");
    give(d.path());
    d
}

/// Writes a file owned by the cluster's user.
fn pg_write(path: &Path, data: &[u8]) {
    std::fs::write(path, data).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    give(path);
}

/// `program` run as the cluster's user (through `setpriv` when root), with
/// an empty environment but `PATH` and `LANG=C`.
fn as_pg(program: &Path) -> Command {
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
fn run(c: Command) -> Out {
    let mut c = assert_cmd::Command::from_std(c);
    c.timeout(WAIT);
    let o = c.output().expect("run a command");
    Out { code: o.status.code(), stdout: o.stdout, stderr: String::from_utf8_lossy(&o.stderr).into_owned() }
}

fn run_ok(c: Command, what: &str) -> String {
    let o = run(c);
    assert_eq!(o.code, Some(0), "{what} failed:\n{}{}", o.stdout_str(), o.stderr);
    o.stdout_str()
}

/// A port nobody listens on now (the clusters listen on no TCP port, but
/// the port names their socket, and a unique one keeps logs apart).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("bind a free port").port()
}

// ----- a throwaway cluster

/// How a [`Cluster`] is configured.
#[derive(Clone, Debug, Default)]
pub struct Opts {
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
pub struct Cluster {
    dir: TempDir,
    pub data: PathBuf,
    pub sock: PathBuf,
    pub port: u16,
    pub opts: Opts,
}

/// A row of `pg_stat_archiver`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Archiver {
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

    fn pg_ctl(&self, args: &[&str]) -> Command {
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
    fn wait_archived_since(&self, name: &str, failed_before: u64) {
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

// ----- the repository, as the cluster's user sees it

/// The cairn binary under test.
fn cairn_bin() -> &'static str {
    env!("CARGO_BIN_EXE_cairn")
}

/// A repository on `Where`, its password in a file, its cache directory:
/// all the cluster's user's. Its commands run as that user.
struct PgRepo {
    repo: Repo,
    password_file: PathBuf,
}

impl PgRepo {
    fn new(w: Where) -> PgRepo {
        let repo = Repo::uninit_on(w);
        give(repo.dir.path());
        let password_file = repo.dir.path().join("password");
        pg_write(&password_file, format!("{}\n", repo.password()).as_bytes());
        pg_dir(&repo.cache());
        let r = PgRepo { repo, password_file };
        r.run(&["init"]);
        r
    }

    fn url(&self) -> &str {
        self.repo.url()
    }

    /// The environment of cairn: the test KDF, a home, and the `AWS_*`
    /// credentials for a repository on S3. Also the server's environment.
    fn env(&self) -> Vec<(OsString, OsString)> {
        let mut v: Vec<(OsString, OsString)> =
            vec![("CAIRN_INSECURE_TEST_KDF".into(), "1".into()), ("HOME".into(), self.repo.dir.path().into())];
        if self.repo.on == Where::S3 {
            v.extend(std::env::vars_os().filter(|(k, _)| k.to_str().is_some_and(|k| k.starts_with("AWS_"))));
        }
        v
    }

    /// `cairn -r REPO --password-file F --cache-dir C` with global options
    /// ahead (one string; the paths hold no quotes or spaces).
    fn cairn_prefix(&self) -> String {
        format!(
            "{} -r {} --password-file {} --cache-dir {}",
            cairn_bin(),
            self.url(),
            p(&self.password_file),
            p(&self.repo.cache())
        )
    }

    fn archive_command(&self) -> String {
        format!("{} pg wal-push %p", self.cairn_prefix())
    }

    /// Cluster options archiving into this repository.
    fn archiving(&self) -> Opts {
        Opts { archive_command: Some(self.archive_command()), env: self.env(), ..Opts::default() }
    }

    /// Cluster options for a restore from this repository (no archiving:
    /// a promoted restore must not push a new timeline that later restores
    /// in the same test would follow).
    fn restoring(&self) -> Opts {
        Opts { env: self.env(), ..Opts::default() }
    }

    /// `cairn GLOBAL ARGS` as the cluster's user.
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = as_pg(Path::new(cairn_bin()));
        c.envs(self.env())
            .args(["-r", self.url(), "--password-file", p(&self.password_file), "--cache-dir", p(&self.repo.cache())])
            .args(args);
        c
    }

    fn out(&self, args: &[&str]) -> Out {
        let o = run(self.cmd(args));
        o.assert_no_panic(&format!("cairn {args:?}"));
        o
    }

    fn run(&self, args: &[&str]) -> String {
        let o = self.out(args);
        assert_eq!(o.code, Some(0), "cairn {args:?} failed ({:?}):\n{}{}", o.code, o.stdout_str(), o.stderr);
        o.stdout_str()
    }

    fn json(&self, args: &[&str]) -> Value {
        let s = self.run(args);
        serde_json::from_str(s.trim()).unwrap_or_else(|e| panic!("cairn {args:?}: not JSON ({e}):\n{s}"))
    }

    /// `pg wal-push`/`wal-fetch` as PostgreSQL runs them: from the data
    /// directory of `c`.
    fn wal_cmd(&self, c: &Cluster, args: &[&str]) -> Out {
        let mut cmd = self.cmd(args);
        cmd.current_dir(&c.data);
        let o = run(cmd);
        o.assert_no_panic(&format!("cairn {args:?}"));
        o
    }

    /// `pg backup --json --fast` of a running cluster (libpq through the
    /// `PG*` variables); the JSON summary, checked for its fields.
    fn base_backup(&self, c: &Cluster) -> Value {
        let mut cmd = self.cmd(&["pg", "backup", "--pgdata", p(&c.data), "--fast", "--json"]);
        cmd.envs(c.libpq_env());
        let o = run(cmd);
        assert_eq!(o.code, Some(0), "pg backup failed:\n{}\n{}", o.stderr, c.log_tail());
        let v: Value = serde_json::from_str(o.stdout_str().trim())
            .unwrap_or_else(|e| panic!("pg backup --json is not JSON ({e}):\n{}", o.stdout_str()));
        for k in ["id", "start_lsn", "stop_lsn", "timeline", "system_id"] {
            assert!(!v[k].is_null(), "pg backup --json lacks {k}: {v}");
        }
        assert_eq!(scalar(&v["system_id"]), c.system_id(), "pg backup --json: system_id");
        let (start, stop) = (scalar(&v["start_lsn"]), scalar(&v["stop_lsn"]));
        assert_eq!(c.q(&format!("SELECT '{start}'::pg_lsn <= '{stop}'::pg_lsn")), "t", "start_lsn after stop_lsn: {v}");
        v
    }

    /// `pg restore --pgdata DIR ARGS` into an empty cluster directory.
    fn restore(&self, into: &Cluster, args: &[&str]) -> Out {
        let mut a = vec!["pg", "restore", "--pgdata", p(&into.data)];
        a.extend_from_slice(args);
        self.out(&a)
    }

    fn restore_ok(&self, into: &Cluster, args: &[&str]) -> String {
        let o = self.restore(into, args);
        assert_eq!(o.code, Some(0), "pg restore {args:?} failed:\n{}{}", o.stdout_str(), o.stderr);
        o.stdout_str()
    }

    /// A new cluster restored with `args`, started and promoted.
    fn restored(&self, args: &[&str]) -> Cluster {
        let c = Cluster::empty(self.restoring());
        self.restore_ok(&c, args);
        c.start_promoted();
        c
    }

    /// The archived WAL objects (names relative to the repository).
    fn wal_objects(&self) -> Vec<String> {
        self.repo.list("wal").into_iter().map(|(n, _)| n).collect()
    }

    /// Archived WAL segments: segment name -> object name. An object is a
    /// segment's when its last path component is the 24-hex-digit name,
    /// alone or with a suffix that is not `.partial` or `.backup`.
    fn wal_segments(&self) -> std::collections::BTreeMap<String, String> {
        self.wal_objects().into_iter().filter_map(|o| Some((segment_of(&o)?, o))).collect()
    }

    fn snapshots(&self) -> Vec<Value> {
        match self.json(&["snapshots", "--json"]) {
            Value::Array(a) => a,
            v => panic!("snapshots --json is not an array: {v}"),
        }
    }
}

/// The segment a WAL object holds, from its name (see [`PgRepo::wal_segments`]).
fn segment_of(object: &str) -> Option<String> {
    let last = object.rsplit('/').next()?;
    let (head, rest) = last.split_at_checked(24)?;
    let seg = head.len() == 24 && head.bytes().all(|b| b.is_ascii_hexdigit());
    let plain = rest.is_empty() || (rest.starts_with('.') && !rest.contains("partial") && !rest.contains("backup"));
    (seg && plain).then(|| head.to_ascii_uppercase())
}

/// A JSON string or number as a string.
fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Row count and an MD5 of the sorted rows of a table, or "missing".
fn digest(c: &Cluster, table: &str) -> String {
    if c.q(&format!("SELECT to_regclass('public.{table}') IS NULL")) == "t" {
        return "missing".into();
    }
    c.q(&format!(
        "SELECT count(*) || ' ' || coalesce(md5(string_agg(t::text, ',' ORDER BY t::text)), '-') FROM public.{table} t"
    ))
}

/// `digest` of several tables.
fn digests(c: &Cluster, tables: &[&str]) -> Vec<(String, String)> {
    tables.iter().map(|t| (t.to_string(), digest(c, t))).collect()
}

/// Inserts rows `from..=to` into `t(id int, note text)`, one transaction.
fn insert(c: &Cluster, table: &str, from: u32, to: u32) {
    c.q(&format!("INSERT INTO {table} SELECT i, md5(i::text) FROM generate_series({from}, {to}) i"));
}

/// The ids in a table, as "count min max".
fn ids(c: &Cluster, table: &str) -> String {
    c.q(&format!("SELECT count(*) || ' ' || coalesce(min(id), 0) || ' ' || coalesce(max(id), 0) FROM {table}"))
}

/// The file names in a cluster's pg_wal (history files of a restore).
fn pg_wal_files(c: &Cluster) -> Vec<String> {
    c.q("SELECT name FROM pg_ls_waldir() ORDER BY 1").lines().map(String::from).collect()
}

// ----- the harness alone (no cairn pg commands)

/// Processes of the cluster's user whose command line names `dir`.
fn processes_under(dir: &Path) -> String {
    let mut c = Command::new("pgrep");
    if is_root() {
        c.args(["-u", PG_USER]);
    }
    c.args(["-a", "-f", p(dir)]);
    c.output().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string()).unwrap_or_default()
}

fn assert_no_processes(dir: &Path) {
    wait_for(
        &format!("no process left under {}", dir.display()),
        Duration::from_secs(15),
        || processes_under(dir),
        || processes_under(dir).is_empty().then_some(()),
    );
}

#[test]
fn harness_clusters_archive_restore_and_leave_no_server_behind() {
    if !pg_enabled("pitr::harness_clusters_archive_restore_and_leave_no_server_behind") {
        return;
    }
    let archive = pg_tempdir();
    let arch = p(archive.path());
    let opts = Opts {
        archive_command: Some(format!("test ! -f {arch}/%f && cp %p {arch}/%f")),
        wal_segsize_mb: Some(1),
        ..Opts::default()
    };
    let a = Cluster::init(opts.clone());
    let a_dir = a.dir.path().to_path_buf();
    a.q("CREATE TABLE t (id int PRIMARY KEY, note text)");
    insert(&a, "t", 1, 100);

    // Two clusters side by side: their own ports and sockets.
    let b = Cluster::init(Opts { archive_command: Some("false".into()), ..opts.clone() });
    let b_dir = b.dir.path().to_path_buf();
    assert_ne!(a.port, b.port);
    assert_eq!(b.q("SELECT count(*) FROM pg_tables WHERE tablename = 't'"), "0", "b sees a's table");
    // A failing archive_command: failures are counted, nothing archived.
    let seg = b.switch_wal();
    let arch_b = b.wait_failures(1);
    assert_eq!(arch_b.last_failed_wal, seg);
    assert!(b.ready(&seg), "{seg} should still wait for archiving");
    // Drop on a panic: the server is stopped all the same.
    let panicked = std::thread::spawn(move || {
        let _b = b;
        panic!("a test failing with its cluster running");
    })
    .join();
    assert!(panicked.is_err());
    assert_no_processes(&b_dir);

    // A base backup (pg_basebackup, not cairn), then WAL archived by cp.
    let base = pg_tempdir();
    let mut bb = as_pg(&pg_bin("pg_basebackup"));
    bb.envs(a.libpq_env()).args(["-D", p(&base.path().join("data")), "-X", "none", "-c", "fast"]);
    run_ok(bb, "pg_basebackup");
    insert(&a, "t", 101, 200);
    let lsn = a.q("SELECT pg_current_wal_lsn()");
    insert(&a, "t", 201, 300);
    let seg1 = a.switch_wal();
    a.wait_archived(&seg1);
    assert!(archive.path().join(&seg1).is_file(), "{seg1} is not in the archive");
    assert_eq!(std::fs::metadata(archive.path().join(&seg1)).unwrap().len(), 1 << 20, "a 1 MB segment");
    let seg2 = a.switch_and_archive();
    assert!(seg2 > seg1, "{seg2} after {seg1}");
    let stats = a.archiver();
    assert_eq!((stats.failed_count, stats.last_archived_wal.as_str()), (0, seg2.as_str()), "{stats:?}");
    assert!(stats.archived_count >= 2, "{stats:?}");
    assert_eq!(a.timeline(), 1);

    // The restore side of the harness: a restored data directory is
    // reconfigured, started, and promoted at the target.
    let r = Cluster::empty(Opts { wal_segsize_mb: Some(1), ..Opts::default() });
    common::copy_dir(&base.path().join("data"), &r.data);
    let chown = Command::new("chown").args(["-R", &format!("{PG_USER}:"), p(&r.data)]).status();
    assert!(!is_root() || chown.is_ok_and(|s| s.success()), "chown -R the restored data");
    pg_write(&r.data.join("recovery.signal"), b"");
    let auto = std::fs::read_to_string(r.data.join("postgresql.auto.conf")).unwrap_or_default();
    let recovery = format!(
        "{auto}restore_command = 'cp {arch}/%f %p'\nrecovery_target_lsn = '{lsn}'\nrecovery_target_action = 'promote'\n"
    );
    pg_write(&r.data.join("postgresql.auto.conf"), recovery.as_bytes());
    r.start_promoted();
    assert_eq!(ids(&r, "t"), "200 1 200", "rows at the target LSN");
    assert_eq!(r.timeline(), 2);
    assert!(r.running());
    let r_dir = r.dir.path().to_path_buf();

    a.stop();
    assert!(!a.running());
    a.start();
    assert_eq!(ids(&a, "t"), "300 1 300");
    drop(a);
    drop(r);
    assert_no_processes(&a_dir);
    assert_no_processes(&r_dir);
}

// ----- the cairn tests (need `cairn pg`)

/// 1: archive, base backup, load, time T, drop a table, more load; a
/// restore to T has exactly the rows of T, the dropped table included.
fn point_in_time_recovery_end_to_end(w: Where) {
    if !pg_enabled(&format!("pitr::point_in_time_recovery_end_to_end ({w:?})")) {
        return;
    }
    let repo = PgRepo::new(w);
    // PostgreSQL's default 16 MB segments here; 1 MB in the other tests.
    let src = Cluster::init(repo.archiving());
    src.q("CREATE TABLE kept (id int PRIMARY KEY, note text); CREATE TABLE dropped (id int PRIMARY KEY, note text)");
    insert(&src, "kept", 1, 1000);
    insert(&src, "dropped", 1, 500);

    let b = repo.base_backup(&src);
    assert_eq!(scalar(&b["timeline"]), "1");
    let id = scalar(&b["id"]);
    let snap = repo
        .snapshots()
        .into_iter()
        .find(|s| scalar(&s["id"]).starts_with(&id) || id.starts_with(&scalar(&s["id"])))
        .unwrap_or_else(|| panic!("the base backup {id} is not in snapshots --json"));
    let tags = snap["tags"].as_array().cloned().unwrap_or_default();
    assert!(tags.iter().any(|t| t == "pg-base"), "tags of a base backup: {snap}");
    assert!(snap["pg"].is_object(), "a base backup's snapshot has no pg object: {snap}");
    assert_eq!(scalar(&snap["pg"]["system_id"]), src.system_id(), "{snap}");

    insert(&src, "kept", 1001, 2000);
    insert(&src, "dropped", 501, 800);
    let t = src.now();
    let at_t = digests(&src, &["kept", "dropped"]);
    std::thread::sleep(Duration::from_millis(1100));
    src.q("DROP TABLE dropped");
    insert(&src, "kept", 2001, 3000);
    src.switch_and_archive();

    let dst = Cluster::empty(repo.restoring());
    repo.restore_ok(&dst, &["--time", &t, "--target-action", "promote"]);
    for f in ["backup_label", "recovery.signal"] {
        assert!(dst.data.join(f).is_file(), "pg restore wrote no {f}");
    }
    let auto = std::fs::read_to_string(dst.data.join("postgresql.auto.conf")).expect("postgresql.auto.conf");
    for want in ["restore_command", "wal-fetch", "recovery_target_time"] {
        assert!(auto.contains(want), "postgresql.auto.conf lacks {want:?}:\n{auto}");
    }
    // The target directory is no longer empty: a second restore is refused.
    let again = repo.restore(&dst, &["--time", &t]);
    again.assert_failed(None, "pg restore into a non-empty directory");

    dst.start_promoted();
    assert_eq!(digests(&dst, &["kept", "dropped"]), at_t, "rows after the restore to {t}");
    assert_eq!(ids(&dst, "kept"), "2000 1 2000");
    assert_eq!(ids(&dst, "dropped"), "800 1 800");
    assert_eq!(dst.timeline(), 2, "a promoted restore starts timeline 2");
}

/// 2: restores to an LSN, to a named restore point and to the latest WAL.
#[test]
fn restores_to_an_lsn_a_restore_point_and_the_latest_wal() {
    if !pg_enabled("pitr::restores_to_an_lsn_a_restore_point_and_the_latest_wal") {
        return;
    }
    let repo = PgRepo::new(Where::Local);
    let src = Cluster::init(Opts { wal_segsize_mb: Some(1), ..repo.archiving() });
    src.q("CREATE TABLE t (id int PRIMARY KEY, note text)");
    insert(&src, "t", 1, 100);
    repo.base_backup(&src);
    insert(&src, "t", 101, 200);
    let lsn = src.q("SELECT pg_current_wal_lsn()");
    insert(&src, "t", 201, 300);
    src.q("SELECT pg_create_restore_point('after_300')");
    insert(&src, "t", 301, 400);
    src.switch_and_archive();
    let all = digest(&src, "t");

    let at_lsn = repo.restored(&["--lsn", &lsn, "--target-action", "promote"]);
    assert_eq!(ids(&at_lsn, "t"), "200 1 200", "restore to LSN {lsn}");
    drop(at_lsn);
    let at_name = repo.restored(&["--name", "after_300", "--target-action", "promote"]);
    assert_eq!(ids(&at_name, "t"), "300 1 300", "restore to the restore point");
    drop(at_name);
    let latest = repo.restored(&[]);
    assert_eq!(ids(&latest, "t"), "400 1 400", "restore to the latest WAL");
    assert_eq!(digest(&latest, "t"), all);
}

/// 3: a promoted restore starts timeline 2, which is archived into the same
/// repository; a restore to latest follows it (its `.history` fetched) and
/// starts timeline 3.
#[test]
fn a_restore_follows_the_timeline_of_an_earlier_promoted_restore() {
    if !pg_enabled("pitr::a_restore_follows_the_timeline_of_an_earlier_promoted_restore") {
        return;
    }
    let repo = PgRepo::new(Where::Local);
    let src = Cluster::init(Opts { wal_segsize_mb: Some(1), ..repo.archiving() });
    src.q("CREATE TABLE t (id int PRIMARY KEY, note text)");
    insert(&src, "t", 1, 100);
    repo.base_backup(&src);
    insert(&src, "t", 101, 200);
    let lsn = src.q("SELECT pg_current_wal_lsn()");
    insert(&src, "t", 201, 300); // timeline 1 only
    src.switch_and_archive();
    drop(src);

    // Timeline 2: restored to the LSN, promoted, written to, archived.
    let tl2 = Cluster::empty(repo.archiving());
    repo.restore_ok(&tl2, &["--lsn", &lsn, "--target-action", "promote"]);
    tl2.start_promoted();
    assert_eq!(tl2.timeline(), 2);
    assert_eq!(ids(&tl2, "t"), "200 1 200");
    tl2.q("INSERT INTO t SELECT i, 'timeline 2' FROM generate_series(1001, 1100) i");
    let seg = tl2.switch_and_archive();
    assert!(seg.starts_with("00000002"), "{seg}");
    assert_eq!(tl2.archiver().failed_count, 0, "{}", tl2.log_tail());
    let want = digest(&tl2, "t");
    drop(tl2);
    let objects = repo.wal_objects();
    assert!(objects.iter().any(|o| o.contains("00000002.history")), "no 00000002.history archived: {objects:?}");

    // From the same repository, to latest: timeline 2's rows, timeline 3.
    let tl3 = repo.restored(&[]);
    assert_eq!(digest(&tl3, "t"), want, "rows of timeline 2");
    assert_eq!(ids(&tl3, "t"), "300 1 1100");
    assert_eq!(tl3.q("SELECT count(*) FROM t WHERE id BETWEEN 201 AND 300"), "0", "timeline 1's rows past the fork");
    assert_eq!(tl3.timeline(), 3);
    let files = pg_wal_files(&tl3);
    assert!(files.iter().any(|f| f == "00000002.history"), "00000002.history not fetched: {files:?}");
    let hist = tl3.q("SELECT pg_read_file('pg_wal/00000003.history')");
    assert_eq!(hist.lines().filter(|l| !l.trim().is_empty()).count(), 2, "timeline 3's history:\n{hist}");
}

/// 4: pushing an archived file again: the same bytes succeed, other bytes
/// under that name fail; a fetch of a missing file exits 1.
#[test]
fn pushing_a_wal_file_again_succeeds_only_with_the_same_content() {
    if !pg_enabled("pitr::pushing_a_wal_file_again_succeeds_only_with_the_same_content") {
        return;
    }
    let repo = PgRepo::new(Where::Local);
    let src = Cluster::init(Opts { wal_segsize_mb: Some(1), ..repo.archiving() });
    src.q("CREATE TABLE t (id int PRIMARY KEY, note text)");
    insert(&src, "t", 1, 1000);
    let seg = src.switch_and_archive();
    let work = pg_tempdir();
    let original = std::fs::read(src.data.join("pg_wal").join(&seg)).expect("read the archived segment in pg_wal");

    // wal-fetch gives the bytes back.
    let fetched = work.path().join("fetched");
    let o = repo.wal_cmd(&src, &["pg", "wal-fetch", &seg, p(&fetched)]);
    assert_eq!(o.code, Some(0), "wal-fetch {seg}:\n{}", o.stderr);
    assert!(std::fs::read(&fetched).expect("fetched file") == original, "wal-fetch of {seg} gave other bytes");

    // Same name, same content: success.
    let dir = pg_dir(&work.path().join("again"));
    let copy = dir.join(&seg);
    pg_write(&copy, &original);
    let o = repo.wal_cmd(&src, &["pg", "wal-push", p(&copy)]);
    assert_eq!(o.code, Some(0), "a second push of {seg} with the same content:\n{}", o.stderr);

    // Same name, other content: refused, and the stored file is unchanged.
    common::flip_middle(&copy);
    let o = repo.wal_cmd(&src, &["pg", "wal-push", p(&copy)]);
    o.assert_failed(None, "a push of a changed file under an archived name");
    assert!(o.stderr.to_lowercase().contains("differ"), "the refusal does not say the content differs:\n{}", o.stderr);
    let fetched2 = work.path().join("fetched2");
    let o = repo.wal_cmd(&src, &["pg", "wal-fetch", &seg, p(&fetched2)]);
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    assert!(std::fs::read(&fetched2).unwrap() == original, "the refused push changed the stored {seg}");

    // A file never archived: exit 1, nothing written.
    let missing = work.path().join("missing");
    let o = repo.wal_cmd(&src, &["pg", "wal-fetch", "0000000100000000000000FE", p(&missing)]);
    assert_eq!(o.code, Some(1), "wal-fetch of a missing file: {}", o.stderr);
    assert!(!missing.exists(), "wal-fetch of a missing file wrote {}", missing.display());
    assert_eq!(src.archiver().failed_count, 0);
}

/// 5: a WAL object deleted from the repository: `pg status` names the gap,
/// and a restore past it does not reach its target (bounded waits).
#[test]
fn a_missing_wal_segment_is_reported_and_stops_recovery() {
    if !pg_enabled("pitr::a_missing_wal_segment_is_reported_and_stops_recovery") {
        return;
    }
    let repo = PgRepo::new(Where::Local);
    let src = Cluster::init(Opts { wal_segsize_mb: Some(1), ..repo.archiving() });
    src.q("CREATE TABLE t (id int PRIMARY KEY, note text)");
    insert(&src, "t", 1, 100);
    repo.base_backup(&src);
    let mut segs = Vec::new();
    for i in 1..=3u32 {
        insert(&src, "t", i * 100 + 1, i * 100 + 100);
        segs.push(src.switch_and_archive());
    }
    let lsn = src.q("SELECT pg_current_wal_lsn()");
    src.switch_and_archive();
    let o = repo.out(&["pg", "status"]);
    assert_eq!(o.code, Some(0), "pg status before the damage:\n{}{}", o.stdout_str(), o.stderr);

    let gone = &segs[1];
    let sysid = src.system_id();
    let object = repo
        .wal_segments()
        .get(gone)
        .cloned()
        .unwrap_or_else(|| panic!("no object for {gone} under wal/ (by name): {:?}", repo.wal_objects()));
    assert!(object.starts_with(&format!("wal/{sysid}/")), "{object} is not under wal/{sysid}/");
    std::fs::remove_file(repo.repo.path().join(&object)).expect("delete the WAL object");

    let o = repo.out(&["pg", "status"]);
    o.assert_failed(None, "pg status with a missing segment");
    let said = format!("{}{}", o.stdout_str(), o.stderr);
    assert!(said.contains(gone.as_str()), "pg status does not name the missing {gone}:\n{said}");

    let dst = Cluster::empty(repo.restoring());
    let o = repo.restore(&dst, &["--lsn", &lsn, "--target-action", "promote"]);
    if o.code != Some(0) {
        // cairn may refuse up front; then it must say why.
        let said = format!("{}{}", o.stdout_str(), o.stderr);
        assert!(said.contains(gone.as_str()), "pg restore failed without naming {gone}:\n{said}");
        eprintln!("pg restore refused the restore past the missing {gone}:\n{said}");
        return;
    }
    dst.configure();
    let outcome = dst.try_start().and_then(|()| dst.wait_promoted(WAIT));
    let err = outcome.expect_err("a recovery past a missing segment reached its target");
    assert!(
        err.contains("recovery ended before configured recovery target was reached")
            || err.contains("WAL ends before")
            || err.contains(gone.as_str()),
        "the recovery failed, but not on the missing WAL:\n{err}"
    );
    assert!(!dst.running(), "the failed recovery left a server running");
    eprintln!("the recovery past the missing {gone} failed:\n{err}");
}

/// 6: while the repository is unreachable, pushes fail and PostgreSQL
/// retries; once it is back, archiving catches up and nothing is lost.
#[test]
fn archiving_catches_up_after_the_repository_was_unreachable() {
    if !pg_enabled("pitr::archiving_catches_up_after_the_repository_was_unreachable") {
        return;
    }
    let repo = PgRepo::new(Where::Local);
    let src = Cluster::init(Opts { wal_segsize_mb: Some(1), ..repo.archiving() });
    src.q("CREATE TABLE t (id int PRIMARY KEY, note text)");
    insert(&src, "t", 1, 100);
    repo.base_backup(&src);
    insert(&src, "t", 101, 200);
    src.switch_and_archive();

    let path = repo.repo.path();
    let away = path.with_extension("away");
    std::fs::rename(&path, &away).expect("move the repository away");
    let before = src.archiver().failed_count;
    insert(&src, "t", 201, 300);
    let stuck = src.switch_wal();
    let a = src.wait_failures(before + 2);
    assert_eq!(a.last_failed_wal, stuck, "{a:?}");
    assert!(src.ready(&stuck), "{stuck} was archived without a repository");
    // The same push by hand: a non-zero exit and a reason.
    let copy = pg_dir(&repo.repo.dir.path().join("copy")).join(&stuck);
    pg_write(&copy, &std::fs::read(src.data.join("pg_wal").join(&stuck)).expect("read the stuck segment"));
    let o = repo.wal_cmd(&src, &["pg", "wal-push", p(&copy)]);
    o.assert_failed(None, "wal-push without the repository");
    assert!(o.stderr.contains("error"), "no error message:\n{}", o.stderr);

    std::fs::rename(&away, &path).expect("bring the repository back");
    insert(&src, "t", 301, 400);
    let last = src.switch_and_archive();
    assert!(!src.ready(&stuck));
    let segs = repo.wal_segments();
    for s in [&stuck, &last] {
        assert!(segs.contains_key(s.as_str()), "{s} is not in the repository: {:?}", segs.keys());
    }
    let o = repo.out(&["pg", "status"]);
    assert_eq!(o.code, Some(0), "pg status after the catch-up:\n{}{}", o.stdout_str(), o.stderr);
    let want = digest(&src, "t");
    drop(src);
    let latest = repo.restored(&[]);
    assert_eq!(ids(&latest, "t"), "400 1 400");
    assert_eq!(digest(&latest, "t"), want);
}

/// 7: `wal-push` killed (SIGKILL) before each of its writes in turn; the
/// retry succeeds, and the repository checks with `--read-data`.
#[test]
fn a_killed_wal_push_is_retried_and_the_repository_checks() {
    if !pg_enabled("pitr::a_killed_wal_push_is_retried_and_the_repository_checks") {
        return;
    }
    let repo = PgRepo::new(Where::Local);
    // Real segments, archived by cp to a staging directory; pushed by hand.
    let stage = pg_tempdir();
    let st = p(stage.path());
    let src = Cluster::init(Opts {
        archive_command: Some(format!("test ! -f {st}/%f && cp %p {st}/%f")),
        wal_segsize_mb: Some(1),
        ..Opts::default()
    });
    src.q("CREATE TABLE t (id int PRIMARY KEY, note text)");
    for i in 0..8u32 {
        insert(&src, "t", i * 100 + 1, i * 100 + 100);
        src.switch_and_archive();
    }
    let mut staged: Vec<PathBuf> = std::fs::read_dir(stage.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|f| segment_of(&common::file_name(f)).is_some())
        .collect();
    staged.sort();
    assert!(staged.len() >= 8, "{staged:?}");

    let mut k = 1;
    let mut kills = 0;
    for f in &staged {
        let mut cmd = repo.cmd(&["pg", "wal-push", p(f)]);
        cmd.current_dir(&src.data);
        if k > 0 {
            cmd.env("CAIRN_TEST_KILL_BEFORE_WRITE", k.to_string());
        }
        let o = run(cmd);
        o.assert_no_panic("a killed wal-push");
        match o.code {
            None => {
                kills += 1;
                k += 1;
                let o = repo.wal_cmd(&src, &["pg", "wal-push", p(f)]);
                assert_eq!(o.code, Some(0), "the retry of a push killed before write {}:\n{}", k - 1, o.stderr);
                let c = repo.out(&["check", "--read-data"]);
                assert_eq!(c.code, Some(0), "check after a push killed before write {}:\n{}", k - 1, c.stderr);
            }
            Some(0) => k = 0, // fewer writes than k: every point is done
            other => panic!("wal-push with a kill before write {k}: exit {other:?}\n{}", o.stderr),
        }
    }
    assert!(
        kills >= 1,
        "CAIRN_TEST_KILL_BEFORE_WRITE=1 killed no wal-push: a binary without the test-hooks feature, \
         or a wal-push whose writes bypass the hooked backend"
    );
    eprintln!("wal-push killed before each of its writes 1..={kills}");
    let o = repo.out(&["check", "--read-data"]);
    assert_eq!(o.code, Some(0), "check --read-data:\n{}", o.stderr);
    let o = repo.out(&["pg", "status"]);
    assert_eq!(o.code, Some(0), "pg status:\n{}{}", o.stdout_str(), o.stderr);
    let out = pg_tempdir();
    for f in &staged {
        let name = common::file_name(f);
        let to = out.path().join(&name);
        let o = repo.wal_cmd(&src, &["pg", "wal-fetch", &name, p(&to)]);
        assert_eq!(o.code, Some(0), "wal-fetch {name}: {}", o.stderr);
        assert!(std::fs::read(&to).unwrap() == std::fs::read(f).unwrap(), "{name} fetched with other bytes");
    }
}

/// 8: two base backups; `forget --keep-last 1 --prune` on `pg-base` drops
/// the older one and the WAL only it needed; PITR from the kept one works.
#[test]
fn forget_prunes_the_wal_before_the_kept_base_backup() {
    if !pg_enabled("pitr::forget_prunes_the_wal_before_the_kept_base_backup") {
        return;
    }
    let repo = PgRepo::new(Where::Local);
    let src = Cluster::init(Opts { wal_segsize_mb: Some(1), ..repo.archiving() });
    src.q("CREATE TABLE t (id int PRIMARY KEY, note text)");
    insert(&src, "t", 1, 100);
    let b1 = repo.base_backup(&src);
    for i in 1..=3u32 {
        insert(&src, "t", i * 100 + 1, i * 100 + 100);
        src.switch_and_archive();
    }
    let b2 = repo.base_backup(&src);
    let keep_from = src.q(&format!("SELECT pg_walfile_name('{}')", scalar(&b2["start_lsn"])));
    insert(&src, "t", 401, 500);
    let t = src.now();
    std::thread::sleep(Duration::from_millis(1100));
    insert(&src, "t", 501, 600);
    src.switch_and_archive();

    let before = repo.wal_segments();
    let (older, newer): (Vec<&String>, Vec<&String>) = before.keys().partition(|s| s.as_str() < keep_from.as_str());
    assert!(!older.is_empty(), "no WAL before the second backup's start {keep_from}: {:?}", before.keys());
    repo.run(&["forget", "--tag", "pg-base", "--group-by", "", "--keep-last", "1", "--prune"]);

    let ids_left: Vec<String> = repo.snapshots().iter().map(|s| scalar(&s["id"])).collect();
    let (id1, id2) = (scalar(&b1["id"]), scalar(&b2["id"]));
    assert_eq!(ids_left.len(), 1, "{ids_left:?}");
    assert!(
        ids_left[0].starts_with(&id2) || id2.starts_with(&ids_left[0]),
        "kept {ids_left:?}, not {id2} (older: {id1})"
    );
    let after = repo.wal_segments();
    for s in &older {
        assert!(!after.contains_key(s.as_str()), "{s} (before {keep_from}) survived the prune");
    }
    for s in &newer {
        assert!(after.contains_key(s.as_str()), "{s} (from {keep_from} on) was pruned");
    }
    let o = repo.out(&["check", "--read-data"]);
    assert_eq!(o.code, Some(0), "check after forget --prune:\n{}", o.stderr);

    drop(src);
    let dst = repo.restored(&["--time", &t, "--target-action", "promote"]);
    assert_eq!(ids(&dst, "t"), "500 1 500", "restore to {t} from the kept backup");
}

/// A WAL object that exists but cannot be read (here: mode 000 for the
/// cluster's user) must stop recovery, not end it: PostgreSQL takes any
/// `restore_command` exit status up to 125 for "not archived" and then
/// promotes at that point, silently dropping everything after it (and
/// forking a timeline). So `wal-fetch` must keep exit 1 for "not archived"
/// only and exit above 125 on every other failure, which makes recovery
/// stop with FATAL (the server can be started again once the repository
/// reads): format-spec/13-wal.md, rule W4.
#[test]
fn a_wal_read_error_stops_recovery_instead_of_promoting() {
    if !pg_enabled("pitr::a_wal_read_error_stops_recovery_instead_of_promoting") {
        return;
    }
    let repo = PgRepo::new(Where::Local);
    let src = Cluster::init(Opts { wal_segsize_mb: Some(1), ..repo.archiving() });
    src.q("CREATE TABLE t (id int PRIMARY KEY, note text)");
    insert(&src, "t", 1, 100);
    repo.base_backup(&src);
    let mut segs = Vec::new();
    for i in 1..=3u32 {
        insert(&src, "t", i * 100 + 1, i * 100 + 100);
        segs.push(src.switch_and_archive());
    }
    let bad = &segs[1];
    let object = repo.wal_segments().get(bad).cloned().unwrap_or_else(|| panic!("no object for {bad}"));
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(repo.repo.path().join(&object), std::fs::Permissions::from_mode(0o000))
        .expect("chmod 000 the WAL object");

    let scratch = pg_tempdir();
    let o = repo.wal_cmd(&src, &["pg", "wal-fetch", bad, p(&scratch.path().join("x"))]);
    assert!(o.code.is_none_or(|c| c > 125), "wal-fetch of an unreadable {bad}: exit {:?} ({})", o.code, o.stderr);

    let dst = Cluster::empty(repo.restoring());
    repo.restore_ok(&dst, &[]);
    dst.configure();
    let outcome = dst.try_start().and_then(|()| dst.wait_promoted(WAIT));
    if outcome.is_ok() {
        panic!("recovery promoted past an unreadable {bad}: rows {} on timeline {}", ids(&dst, "t"), dst.timeline());
    }
}
