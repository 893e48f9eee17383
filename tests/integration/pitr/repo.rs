//! The repository side of the PITR tests: [`PgRepo`], a repository whose
//! files and commands belong to the cluster's user, and helpers on what
//! cairn prints and stores.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use super::cluster::*;
use crate::common::{Out, Repo, Where};

// ----- the repository, as the cluster's user sees it

/// The cairn binary under test, where the cluster's user can run it: the
/// build's own path when every directory above it is open to others, else
/// a copy in a directory of its own under the system's temporary directory
/// (a checkout under a private home directory).
pub(super) fn cairn_bin() -> &'static str {
    use std::os::unix::fs::PermissionsExt;
    static BIN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        let built = Path::new(env!("CARGO_BIN_EXE_cairn"));
        let open = |p: &Path| std::fs::metadata(p).is_ok_and(|m| m.permissions().mode() & 0o001 != 0);
        if built.ancestors().all(|a| a.as_os_str().is_empty() || open(a)) {
            return built.display().to_string();
        }
        let dir = std::env::temp_dir().join(format!("cairn-pitr-bin-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a directory for the cairn binary");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod 755");
        let copy = dir.join("cairn");
        std::fs::copy(built, &copy).expect("copy the cairn binary");
        std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).expect("chmod 755");
        copy.display().to_string()
    })
}

/// A repository on `Where`, its password in a file, its cache directory:
/// all the cluster's user's. Its commands run as that user.
pub(super) struct PgRepo {
    pub(super) repo: Repo,
    pub(super) password_file: PathBuf,
}

impl PgRepo {
    pub(super) fn new(w: Where) -> PgRepo {
        let repo = Repo::uninit_on(w);
        give(repo.dir.path());
        let password_file = repo.dir.path().join("password");
        pg_write(&password_file, format!("{}\n", repo.password()).as_bytes());
        pg_dir(&repo.cache());
        let r = PgRepo { repo, password_file };
        r.run(&["init"]);
        r
    }

    pub(super) fn url(&self) -> &str {
        self.repo.url()
    }

    /// The environment of cairn: the test KDF, a home, and the `AWS_*`
    /// credentials for a repository on S3. Also the server's environment.
    pub(super) fn env(&self) -> Vec<(OsString, OsString)> {
        let mut v: Vec<(OsString, OsString)> =
            vec![("CAIRN_INSECURE_TEST_KDF".into(), "1".into()), ("HOME".into(), self.repo.dir.path().into())];
        if self.repo.on == Where::S3 {
            v.extend(std::env::vars_os().filter(|(k, _)| k.to_str().is_some_and(|k| k.starts_with("AWS_"))));
        }
        v
    }

    /// `cairn -r REPO --password-file F --cache-dir C` with global options
    /// ahead (one string; the paths hold no quotes or spaces).
    pub(super) fn cairn_prefix(&self) -> String {
        format!(
            "{} -r {} --password-file {} --cache-dir {}",
            cairn_bin(),
            self.url(),
            p(&self.password_file),
            p(&self.repo.cache())
        )
    }

    pub(super) fn archive_command(&self) -> String {
        format!("{} pg wal-push %p", self.cairn_prefix())
    }

    /// Cluster options archiving into this repository.
    pub(super) fn archiving(&self) -> Opts {
        Opts { archive_command: Some(self.archive_command()), env: self.env(), ..Opts::default() }
    }

    /// Cluster options for a restore from this repository (no archiving:
    /// a promoted restore must not push a new timeline that later restores
    /// in the same test would follow).
    pub(super) fn restoring(&self) -> Opts {
        Opts { env: self.env(), ..Opts::default() }
    }

    /// `cairn GLOBAL ARGS` as the cluster's user.
    pub(super) fn cmd(&self, args: &[&str]) -> Command {
        let mut c = as_pg(Path::new(cairn_bin()));
        c.envs(self.env())
            .args(["-r", self.url(), "--password-file", p(&self.password_file), "--cache-dir", p(&self.repo.cache())])
            .args(args);
        c
    }

    pub(super) fn out(&self, args: &[&str]) -> Out {
        let o = run(self.cmd(args));
        o.assert_no_panic(&format!("cairn {args:?}"));
        o
    }

    pub(super) fn run(&self, args: &[&str]) -> String {
        let o = self.out(args);
        assert_eq!(o.code, Some(0), "cairn {args:?} failed ({:?}):\n{}{}", o.code, o.stdout_str(), o.stderr);
        o.stdout_str()
    }

    pub(super) fn json(&self, args: &[&str]) -> Value {
        let s = self.run(args);
        serde_json::from_str(s.trim()).unwrap_or_else(|e| panic!("cairn {args:?}: not JSON ({e}):\n{s}"))
    }

    /// `pg wal-push`/`wal-fetch` as PostgreSQL runs them: from the data
    /// directory of `c`.
    pub(super) fn wal_cmd(&self, c: &Cluster, args: &[&str]) -> Out {
        let mut cmd = self.cmd(args);
        cmd.current_dir(&c.data);
        let o = run(cmd);
        o.assert_no_panic(&format!("cairn {args:?}"));
        o
    }

    /// `pg backup --json --fast` of a running cluster (libpq through the
    /// `PG*` variables); the JSON summary, checked for its fields.
    pub(super) fn base_backup(&self, c: &Cluster) -> Value {
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
    pub(super) fn restore(&self, into: &Cluster, args: &[&str]) -> Out {
        let mut a = vec!["pg", "restore", "--pgdata", p(&into.data)];
        a.extend_from_slice(args);
        self.out(&a)
    }

    pub(super) fn restore_ok(&self, into: &Cluster, args: &[&str]) -> String {
        let o = self.restore(into, args);
        assert_eq!(o.code, Some(0), "pg restore {args:?} failed:\n{}{}", o.stdout_str(), o.stderr);
        o.stdout_str()
    }

    /// A new cluster restored with `args`, started and promoted.
    pub(super) fn restored(&self, args: &[&str]) -> Cluster {
        let c = Cluster::empty(self.restoring());
        self.restore_ok(&c, args);
        c.start_promoted();
        c
    }

    /// The archived WAL objects (names relative to the repository).
    pub(super) fn wal_objects(&self) -> Vec<String> {
        self.repo.list("wal").into_iter().map(|(n, _)| n).collect()
    }

    /// Archived WAL segments: segment name -> object name. An object is a
    /// segment's when its last path component is the 24-hex-digit name,
    /// alone or with a suffix that is not `.partial` or `.backup`.
    pub(super) fn wal_segments(&self) -> std::collections::BTreeMap<String, String> {
        self.wal_objects().into_iter().filter_map(|o| Some((segment_of(&o)?, o))).collect()
    }

    pub(super) fn snapshots(&self) -> Vec<Value> {
        match self.json(&["snapshots", "--json"]) {
            Value::Array(a) => a,
            v => panic!("snapshots --json is not an array: {v}"),
        }
    }
}

/// The segment a WAL object holds, from its name (see [`PgRepo::wal_segments`]).
pub(super) fn segment_of(object: &str) -> Option<String> {
    let last = object.rsplit('/').next()?;
    let (head, rest) = last.split_at_checked(24)?;
    let seg = head.len() == 24 && head.bytes().all(|b| b.is_ascii_hexdigit());
    let plain = rest.is_empty() || (rest.starts_with('.') && !rest.contains("partial") && !rest.contains("backup"));
    (seg && plain).then(|| head.to_ascii_uppercase())
}

/// A JSON string or number as a string.
pub(super) fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}
