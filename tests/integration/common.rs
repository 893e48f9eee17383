//! Shared helpers: a temporary repository (in a local directory or under a
//! unique prefix on the S3 server named by `CAIRN_TEST_S3`) and a `cairn`
//! command bound to it.
//!
//! S3 tests: `CAIRN_TEST_S3` (e.g. `s3:http://127.0.0.1:7480/cairn-test`, as
//! `scripts/s3-server.sh start` prints it, with the `AWS_*` credentials)
//! names the server. Without it the S3 variants print a loud
//! "skipped: CAIRN_TEST_S3 not set" and pass, except when `CI` is set: CI
//! always has the server, so there they fail. Every S3 test holds the shared
//! side of a file lock ([`S3_LOCK`]); the tests that stop radosgw hold the
//! exclusive side, so they never run beside another S3 test.

#![allow(dead_code)]

use std::io::Write as _;
use std::path::{Path, PathBuf};

use assert_cmd::Command;
use tempfile::TempDir;

pub const PASSWORD: &str = "correct horse battery staple";

/// Where a test repository lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Where {
    /// A directory under the test's temporary directory.
    Local,
    /// A unique prefix under `$CAIRN_TEST_S3`.
    S3,
}

/// A temporary repository with its own cache directory.
pub struct Repo {
    pub dir: TempDir,
    pub on: Where,
    /// The `-r` value.
    url: String,
    password: String,
}

impl Repo {
    /// Creates and initializes a local repository.
    pub fn init() -> Self {
        Self::init_on(Where::Local)
    }

    /// A location for a local repository, not yet initialized.
    pub fn uninit() -> Self {
        Self::uninit_on(Where::Local)
    }

    /// Creates and initializes a repository on `w`.
    pub fn init_on(w: Where) -> Self {
        let r = Self::uninit_on(w);
        r.init_repo();
        r
    }

    /// Runs `init` (which must succeed) on an uninitialized repository.
    pub fn init_repo(&self) {
        let o = self.out(&["init"]);
        assert_eq!(o.code, Some(0), "init of {} failed:\n{}", self.url, o.stderr);
    }

    /// A location for a repository on `w`, not yet initialized. For S3, a
    /// prefix `t-<random hex>` under `$CAIRN_TEST_S3` (which must be set:
    /// S3 tests check [`s3_shared`] or [`s3_exclusive`] first).
    pub fn uninit_on(w: Where) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = match w {
            Where::Local => dir.path().join("repo").to_str().expect("utf-8 tempdir").to_string(),
            Where::S3 => format!("{}/{}", s3_base().expect("CAIRN_TEST_S3 is not set"), unique_name("t")),
        };
        Self { dir, on: w, url, password: PASSWORD.to_string() }
    }

    /// The same repository with another password for its commands.
    pub fn with_password(mut self, password: &str) -> Self {
        self.password = password.to_string();
        self
    }

    pub fn password(&self) -> &str {
        &self.password
    }

    /// The `-r` value: a directory, or `s3:http://host:port/bucket/prefix`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The directory of a local repository.
    pub fn path(&self) -> PathBuf {
        assert_eq!(self.on, Where::Local, "path() of a repository on S3 ({}): use list()", self.url);
        PathBuf::from(&self.url)
    }

    pub fn cache(&self) -> PathBuf {
        self.dir.path().join("cache")
    }

    /// `cairn -r REPO` with the password and a private cache, quiet KDF
    /// (and the `AWS_*` credentials for a repository on S3).
    pub fn cmd(&self) -> Command {
        self.cmd_via(&self.url)
    }

    /// Like [`Repo::cmd`], but with `-r url` (the same repository reached
    /// another way, e.g. through a fault-injecting proxy).
    pub fn cmd_via(&self, url: &str) -> Command {
        Command::from_std(self.std_cmd_via(url))
    }

    /// [`Repo::cmd_via`] as a `std::process::Command`, for a process the
    /// test starts and then stops, kills or waits for itself.
    pub fn std_cmd_via(&self, url: &str) -> std::process::Command {
        let mut c = std::process::Command::new(assert_cmd::cargo::cargo_bin("cairn"));
        c.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.dir.path())
            .env("CAIRN_PASSWORD", &self.password)
            .env("CAIRN_CACHE_DIR", self.cache())
            .env("CAIRN_INSECURE_TEST_KDF", "1");
        if self.on == Where::S3 || url.starts_with("s3:") {
            for (k, v) in aws_vars() {
                c.env(k, v);
            }
        }
        c.arg("-r").arg(url);
        c
    }

    /// Runs `cairn ARGS` and returns stdout; panics with stderr on failure.
    pub fn run(&self, args: &[&str]) -> String {
        let out = self.out(args);
        assert!(out.code == Some(0), "cairn {args:?} failed ({:?}):\n{}", out.code, out.stderr);
        String::from_utf8(out.stdout).expect("utf-8 stdout")
    }

    /// Total bytes stored in the repository.
    pub fn size(&self) -> u64 {
        match self.on {
            Where::Local => dir_size(&self.path()),
            Where::S3 => self.list("").iter().map(|(_, len)| len).sum(),
        }
    }

    /// Every object file under a folder (e.g. "data") of a local repository.
    pub fn objects(&self, folder: &str) -> Vec<PathBuf> {
        let mut out = Vec::new();
        walk(&self.path().join(folder), &mut out);
        out.sort();
        out
    }

    /// The repository's storage, through the library (either backend).
    pub fn backend(&self) -> cairn::backend::Backend {
        cairn::backend::Backend::open(&self.url, false, &Default::default())
            .unwrap_or_else(|e| panic!("opening {}: {e}", self.url))
    }

    /// The objects under `folder` ("" = all), through the library: names
    /// relative to the repository (e.g. `data/ab/abcd…`) and sizes, sorted.
    pub fn list(&self, folder: &str) -> Vec<(String, u64)> {
        let mut v = self.backend().list(folder).unwrap_or_else(|e| panic!("listing {folder} of {}: {e}", self.url));
        v.sort();
        v
    }

    /// The names (last path component) of the objects under `folder`.
    pub fn object_ids(&self, folder: &str) -> Vec<String> {
        self.list(folder).into_iter().map(|(n, _)| n.rsplit('/').next().unwrap_or(&n).to_string()).collect()
    }
}

impl Drop for Repo {
    /// A repository on S3 is deleted (best effort) when its test passed, and
    /// kept, with its URL printed, when it failed.
    fn drop(&mut self) {
        if self.on != Where::S3 {
            return;
        }
        if std::thread::panicking() {
            eprintln!("kept the S3 repository of the failed test: {}", self.url);
            return;
        }
        delete_s3_prefix(&self.url);
    }
}

/// Deletes every object under an S3 URL (best effort).
pub fn delete_s3_prefix(url: &str) {
    let Ok(b) = cairn::backend::Backend::open(url, false, &Default::default()) else { return };
    for (name, _) in b.list("").unwrap_or_default() {
        let _ = b.delete(&name);
    }
}

/// `PREFIX-<16 random hex digits>`.
pub fn unique_name(prefix: &str) -> String {
    format!("{prefix}-{:016x}", rand::random::<u64>())
}

// ----- the S3 server of the tests

/// The lock file that keeps the tests that stop radosgw apart from the
/// other S3 tests (in this process and in others).
pub const S3_LOCK: &str = "/tmp/cairn-s3-tests.lock";

/// `$CAIRN_TEST_S3` without a trailing slash, if set.
pub fn s3_base() -> Option<String> {
    std::env::var("CAIRN_TEST_S3").ok().filter(|s| !s.trim().is_empty()).map(|s| s.trim_end_matches('/').to_string())
}

/// The parsed `$CAIRN_TEST_S3` (endpoint, bucket, prefix).
pub fn s3_location() -> cairn::backend::S3Location {
    let base = s3_base().expect("CAIRN_TEST_S3 is not set");
    cairn::backend::S3Location::parse(&base)
        .unwrap_or_else(|| panic!("CAIRN_TEST_S3={base} is not an s3: URL"))
        .unwrap_or_else(|e| panic!("CAIRN_TEST_S3={base}: {e}"))
}

/// `host:port` of the S3 endpoint of `$CAIRN_TEST_S3`.
pub fn s3_host_port() -> String {
    let loc = s3_location();
    let e = loc.endpoint.expect("CAIRN_TEST_S3 must name an endpoint: s3:http://host:port/bucket");
    e.trim_start_matches("http://").trim_start_matches("https://").to_string()
}

/// Adds the `AWS_*` variables of the test process to a command (which
/// cleared its environment).
pub fn aws_env(c: &mut Command) {
    for (k, v) in aws_vars() {
        c.env(k, v);
    }
}

fn aws_vars() -> Vec<(std::ffi::OsString, std::ffi::OsString)> {
    std::env::vars_os().filter(|(k, _)| k.to_str().is_some_and(|k| k.starts_with("AWS_"))).collect()
}

/// Whether an S3 test may run: with `CAIRN_TEST_S3` set, yes; without it,
/// a loud skip message (straight to stderr, past the test harness's
/// capture) and no, or a panic when `CI` is set.
pub fn s3_enabled(test: &str) -> bool {
    if s3_base().is_some() {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!(
            "{test}: CAIRN_TEST_S3 is not set, and CI is: CI must run the S3 tests (scripts/test.sh starts the server)"
        );
    }
    let _ = writeln!(
        std::io::stderr(),
        "\n*** {test}: skipped: CAIRN_TEST_S3 not set (eval \"$(bash scripts/s3-server.sh start /var/tmp/cairn-s3 7480)\" first) ***"
    );
    false
}

/// A held lock on [`S3_LOCK`]; released when dropped.
pub struct S3Lock(std::fs::File);

fn lock_s3(exclusive: bool) -> S3Lock {
    use std::os::unix::io::AsRawFd;
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(S3_LOCK)
        .unwrap_or_else(|e| panic!("opening {S3_LOCK}: {e}"));
    let op = if exclusive { libc::LOCK_EX } else { libc::LOCK_SH };
    loop {
        // SAFETY: flock on a file descriptor we own; no memory is involved.
        if unsafe { libc::flock(f.as_raw_fd(), op) } == 0 {
            return S3Lock(f);
        }
        let e = std::io::Error::last_os_error();
        assert_eq!(e.kind(), std::io::ErrorKind::Interrupted, "flock {S3_LOCK}: {e}");
    }
}

/// For an S3 test that keeps the server up: `None` (skip) without
/// `CAIRN_TEST_S3`, else the shared side of the S3 lock.
pub fn s3_shared(test: &str) -> Option<S3Lock> {
    s3_enabled(test).then(|| lock_s3(false))
}

/// For an S3 test that stops the server: the exclusive side of the lock.
pub fn s3_exclusive(test: &str) -> Option<S3Lock> {
    s3_enabled(test).then(|| lock_s3(true))
}

/// Runs a test function on a repository backend: the body of the tests
/// that [`both_backends`] generates.
pub fn run_on(w: Where, test: &str, f: fn(Where)) {
    match w {
        Where::Local => f(w),
        Where::S3 => {
            let Some(_lock) = s3_shared(test) else { return };
            f(w)
        }
    }
}

/// `both_backends!(name, ...)` makes, for each `fn name(w: Where)`, a
/// module `name` with two tests: `name::local` and `name::s3` (the latter
/// skipped without `CAIRN_TEST_S3`, see [`s3_enabled`]).
macro_rules! both_backends {
    ($($name:ident),+ $(,)?) => {$(
        mod $name {
            #[test]
            fn local() {
                $crate::common::run_on($crate::common::Where::Local, concat!(module_path!(), "::local"), super::$name);
            }

            #[test]
            fn s3() {
                $crate::common::run_on($crate::common::Where::S3, concat!(module_path!(), "::s3"), super::$name);
            }
        }
    )+};
}
pub(crate) use both_backends;

/// Backend request counts, from a `-v` line `[LABEL ]requests: N put, N get,
/// N list, N delete; N bytes written, N bytes read`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Requests {
    pub put: u64,
    pub get: u64,
    pub list: u64,
    pub delete: u64,
    pub written: u64,
    pub read: u64,
}

/// The request counts printed by `-v` on the line starting with `label`
/// ("" for a one-repository command, "source " or "destination " for copy).
pub fn requests(stderr: &str, label: &str) -> Requests {
    let want = format!("{label}requests: ");
    let line = stderr
        .lines()
        .find_map(|l| l.strip_prefix(want.as_str()))
        .unwrap_or_else(|| panic!("no `{want}` line in the -v output:\n{stderr}"));
    let nums: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().expect("number"))
        .collect();
    assert_eq!(nums.len(), 6, "unexpected request line: {line}");
    Requests { put: nums[0], get: nums[1], list: nums[2], delete: nums[3], written: nums[4], read: nums[5] }
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            walk(&p, out);
        } else {
            out.push(p);
        }
    }
}

/// Copies a directory tree (regular files and directories).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), &dest).unwrap();
        }
    }
}

pub fn dir_size(dir: &Path) -> u64 {
    let mut files = Vec::new();
    walk(dir, &mut files);
    files.iter().map(|f| f.metadata().map(|m| m.len()).unwrap_or(0)).sum()
}

/// `len` bytes from /dev/urandom (incompressible, fast to make).
pub fn random_bytes(len: usize) -> Vec<u8> {
    use std::io::Read as _;
    let mut v = vec![0; len];
    std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut v)).expect("read /dev/urandom");
    v
}

/// Deterministic pseudo-random bytes.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

// ----- helpers added for the backup/restore, dedup, cli and fault tests

/// Whether the tests run as root (device nodes, ownership, setpriv).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Lowercase hex SHA-256.
pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}

/// `path` with its leading `/` removed, for joining under a restore target.
pub fn rel(path: &Path) -> &Path {
    path.strip_prefix("/").unwrap_or(path)
}

/// Where `restore latest --target target` puts the backed-up `source`.
pub fn restored(target: &Path, source: &Path) -> PathBuf {
    target.join(rel(source))
}

/// Flips every bit of the byte at `offset` of a file.
pub fn flip_byte(path: &Path, offset: u64) {
    let mut b = std::fs::read(path).expect("read file to damage");
    let i = usize::try_from(offset).expect("offset");
    assert!(i < b.len(), "offset {i} beyond {} ({} bytes)", path.display(), b.len());
    b[i] ^= 0xff;
    std::fs::write(path, b).expect("write damaged file");
}

/// Flips the byte in the middle of a file.
pub fn flip_middle(path: &Path) {
    let len = std::fs::metadata(path).expect("stat").len();
    flip_byte(path, len / 2);
}

/// The largest file of a list (by size).
pub fn largest(files: &[PathBuf]) -> PathBuf {
    files.iter().max_by_key(|f| f.metadata().map(|m| m.len()).unwrap_or(0)).expect("at least one file").clone()
}

/// The file name of a path, as a string (object ids are file names).
pub fn file_name(path: &Path) -> String {
    path.file_name().expect("file name").to_string_lossy().into_owned()
}

/// The output of a finished command, decoded for assertions.
pub struct Out {
    pub code: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl Out {
    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Non-empty stderr lines.
    pub fn stderr_lines(&self) -> Vec<&str> {
        self.stderr.lines().filter(|l| !l.trim().is_empty()).collect()
    }

    /// Asserts the command failed with `code` (any non-zero if `None`), with
    /// no panic message and no backtrace hint on stderr.
    pub fn assert_failed(&self, code: Option<i32>, what: &str) {
        match code {
            Some(c) => assert_eq!(self.code, Some(c), "{what}: exit code; stderr:\n{}", self.stderr),
            None => assert!(
                self.code.is_some_and(|c| c != 0),
                "{what}: expected a non-zero exit, got {:?}; stderr:\n{}",
                self.code,
                self.stderr
            ),
        }
        self.assert_no_panic(what);
    }

    pub fn assert_no_panic(&self, what: &str) {
        for bad in ["panicked", "RUST_BACKTRACE", "internal error"] {
            assert!(!self.stderr.contains(bad), "{what}: stderr shows a panic ({bad}):\n{}", self.stderr);
        }
    }

    /// Asserts stderr is exactly one line starting with `error:` and returns it.
    pub fn one_error_line(&self, what: &str) -> String {
        let lines = self.stderr_lines();
        assert_eq!(lines.len(), 1, "{what}: expected exactly one stderr line, got:\n{}", self.stderr);
        assert!(lines[0].starts_with("error: "), "{what}: stderr does not start with `error: `: {:?}", lines[0]);
        assert_eq!(self.stderr.matches('\n').count(), 1, "{what}: stderr is not one line: {:?}", self.stderr);
        lines[0].to_string()
    }
}

/// Runs a prepared command (with a generous timeout, so a hang fails the
/// test instead of stalling the suite) and captures everything.
pub fn output(mut cmd: Command) -> Out {
    cmd.timeout(std::time::Duration::from_secs(120));
    let o = cmd.output().expect("run cairn");
    Out { code: o.status.code(), stdout: o.stdout, stderr: String::from_utf8_lossy(&o.stderr).into_owned() }
}

/// A `cairn` command with the test environment but no `-r`.
pub fn bare_cmd(home: &Path) -> Command {
    let mut c = Command::cargo_bin("cairn").expect("binary");
    c.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("CAIRN_PASSWORD", PASSWORD)
        .env("CAIRN_CACHE_DIR", home.join("cache"))
        .env("CAIRN_INSECURE_TEST_KDF", "1");
    c
}

impl Repo {
    /// Runs `cairn ARGS` and captures the result, whatever it is.
    pub fn out(&self, args: &[&str]) -> Out {
        let mut c = self.cmd();
        c.args(args);
        output(c)
    }

    /// Runs `cairn ARGS` (which must succeed) and parses stdout as JSON.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let s = self.run(args);
        serde_json::from_str(s.trim()).unwrap_or_else(|e| panic!("cairn {args:?}: not JSON ({e}):\n{s}"))
    }

    /// `backup --json ARGS` fed `stdin`; must succeed. Returns the summary.
    pub fn backup_json(&self, args: &[&str], stdin: Option<&[u8]>) -> serde_json::Value {
        let mut c = self.cmd();
        c.arg("backup").arg("--json").args(args);
        if let Some(data) = stdin {
            c.write_stdin(data.to_vec());
        }
        let o = output(c);
        assert_eq!(o.code, Some(0), "backup {args:?} failed:\n{}", o.stderr);
        serde_json::from_slice(&o.stdout)
            .unwrap_or_else(|e| panic!("backup --json output is not JSON ({e}): {}", o.stdout_str()))
    }

    /// `snapshots --json` as a list.
    pub fn snapshots(&self) -> Vec<serde_json::Value> {
        match self.json(&["snapshots", "--json"]) {
            serde_json::Value::Array(a) => a,
            v => panic!("snapshots --json is not an array: {v}"),
        }
    }

    /// The bytes of `dump SNAPSHOT PATH` (which must succeed).
    pub fn dump(&self, snapshot: &str, path: &str) -> Vec<u8> {
        let o = self.out(&["dump", snapshot, path]);
        assert_eq!(o.code, Some(0), "dump {snapshot} {path} failed:\n{}", o.stderr);
        o.stdout
    }

    /// Every pack file under data/.
    pub fn packs(&self) -> Vec<PathBuf> {
        self.objects("data")
    }

    /// A `cairn -r REPO` command run as user and group `nobody` (65534)
    /// through `setpriv`, with the same environment as [`Repo::cmd`]. The
    /// repository's temporary directory is made world-writable first.
    /// `None` if `setpriv` is missing or we are not root.
    pub fn cmd_as_nobody(&self) -> Option<Command> {
        if !is_root() {
            return None;
        }
        let setpriv = ["/usr/bin/setpriv", "/bin/setpriv", "/usr/sbin/setpriv"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.exists())?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(self.dir.path(), std::fs::Permissions::from_mode(0o777)).ok()?;
        let bin = assert_cmd::cargo::cargo_bin("cairn");
        let mut c = Command::new(setpriv);
        c.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.dir.path())
            .env("CAIRN_PASSWORD", &self.password)
            .env("CAIRN_CACHE_DIR", self.cache())
            .env("CAIRN_INSECURE_TEST_KDF", "1")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(bin)
            .arg("-r")
            .arg(&self.url);
        Some(c)
    }
}

// ----- comparing directory trees

/// What [`assert_trees_equal`] records about one entry.
#[derive(Debug)]
struct Entry {
    kind: &'static str,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: (i64, i64),
    rdev: u64,
    ino: (u64, u64),
    nlink: u64,
    link: Option<PathBuf>,
    xattrs: Vec<(std::ffi::OsString, Option<Vec<u8>>)>,
}

fn kind_of(ft: std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if ft.is_symlink() {
        "symlink"
    } else if ft.is_dir() {
        "dir"
    } else if ft.is_file() {
        "file"
    } else if ft.is_fifo() {
        "fifo"
    } else if ft.is_char_device() {
        "chardev"
    } else if ft.is_block_device() {
        "blockdev"
    } else if ft.is_socket() {
        "socket"
    } else {
        "unknown"
    }
}

fn entry(path: &Path) -> Entry {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::symlink_metadata(path).unwrap_or_else(|e| panic!("lstat {}: {e}", path.display()));
    let kind = kind_of(m.file_type());
    let link = (kind == "symlink").then(|| std::fs::read_link(path).expect("readlink"));
    // Security labels belong to the machine, not to the backup.
    let mut xattrs: Vec<_> = xattr::list(path)
        .map(|it| it.filter(|n| !n.to_string_lossy().starts_with("security.")).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|n| {
            let v = xattr::get(path, &n).ok().flatten();
            (n, v)
        })
        .collect();
    xattrs.sort();
    Entry {
        kind,
        mode: m.mode() & 0o7777,
        uid: m.uid(),
        gid: m.gid(),
        mtime: (m.mtime(), m.mtime_nsec()),
        rdev: m.rdev(),
        ino: (m.dev(), m.ino()),
        nlink: m.nlink(),
        link,
        xattrs,
    }
}

/// Every entry under `root` (itself included, as ""), by relative path.
fn collect(root: &Path) -> std::collections::BTreeMap<PathBuf, Entry> {
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let full = if rel.as_os_str().is_empty() { root.to_path_buf() } else { root.join(&rel) };
        let e = entry(&full);
        if e.kind == "dir" {
            for d in std::fs::read_dir(&full).unwrap_or_else(|e| panic!("read_dir {}: {e}", full.display())) {
                stack.push(rel.join(d.expect("dir entry").file_name()));
            }
        }
        out.insert(rel, e);
    }
    out
}

/// Asserts that two directory trees hold the same entries: same names, kinds,
/// file bytes, permission bits (with setuid/setgid/sticky), owners,
/// modification times to the nanosecond (a symlink's own), symlink targets,
/// device numbers, extended attributes (except `security.*`), and the same
/// hard-link groups (entries sharing an inode in `a` share one in `b`, and
/// only those).
pub fn assert_trees_equal(a: &Path, b: &Path) {
    compare_trees(a, b, true);
}

/// Like [`assert_trees_equal`], but the metadata of `a` and `b` themselves
/// is not compared, only what they hold (for a restore of
/// `SNAPSHOT:SUBPATH`, whose target directory is not part of the snapshot).
pub fn assert_dir_contents_equal(a: &Path, b: &Path) {
    compare_trees(a, b, false);
}

fn compare_trees(a: &Path, b: &Path, with_root: bool) {
    let mut ea = collect(a);
    let mut eb = collect(b);
    if !with_root {
        ea.remove(Path::new(""));
        eb.remove(Path::new(""));
    }
    let names_a: Vec<&PathBuf> = ea.keys().collect();
    let names_b: Vec<&PathBuf> = eb.keys().collect();
    let only_a: Vec<_> = names_a.iter().filter(|p| !eb.contains_key(**p)).collect();
    let only_b: Vec<_> = names_b.iter().filter(|p| !ea.contains_key(**p)).collect();
    assert!(
        only_a.is_empty() && only_b.is_empty(),
        "the trees differ: only in {}: {only_a:?}; only in {}: {only_b:?}",
        a.display(),
        b.display()
    );
    let mut groups_a: Groups = Default::default();
    let mut groups_b: Groups = Default::default();
    for (p, x) in &ea {
        let y = &eb[p];
        let at = || format!("{:?}", p);
        assert_eq!(x.kind, y.kind, "kind of {}", at());
        assert_eq!(x.mode, y.mode, "mode of {} ({:o} vs {:o})", at(), x.mode, y.mode);
        assert_eq!((x.uid, x.gid), (y.uid, y.gid), "owner of {}", at());
        assert_eq!(x.mtime, y.mtime, "mtime (s, ns) of {}", at());
        assert_eq!(x.link, y.link, "symlink target of {}", at());
        if matches!(x.kind, "chardev" | "blockdev") {
            assert_eq!(x.rdev, y.rdev, "device number of {}", at());
        }
        assert_eq!(x.xattrs, y.xattrs, "xattrs of {}", at());
        if x.kind == "file" {
            let da = std::fs::read(a.join(p)).expect("read a");
            let db = std::fs::read(b.join(p)).expect("read b");
            assert!(da == db, "content of {} differs ({} vs {} bytes)", at(), da.len(), db.len());
            if x.nlink > 1 {
                groups_a.entry(x.ino).or_default().push(p.clone());
            }
            if y.nlink > 1 {
                groups_b.entry(y.ino).or_default().push(p.clone());
            }
        }
    }
    assert_eq!(norm(groups_a), norm(groups_b), "hard-link groups differ");
}

type Groups = std::collections::HashMap<(u64, u64), Vec<PathBuf>>;

/// Hard-link groups as sorted lists of sorted paths.
fn norm(g: Groups) -> Vec<Vec<PathBuf>> {
    let mut v: Vec<Vec<PathBuf>> = g
        .into_values()
        .map(|mut v| {
            v.sort();
            v
        })
        .collect();
    v.sort();
    v
}

/// Every object of a repository but its locks: name -> bytes.
pub fn all_objects(repo: &Repo) -> std::collections::BTreeMap<String, bytes::Bytes> {
    let b = repo.backend();
    let names = b.list("").unwrap().into_iter().filter(|(n, _)| !n.starts_with("locks/"));
    names.map(|(n, _)| (n.clone(), b.get(&n).unwrap())).collect()
}

/// A new repository on `w` holding `objects`, with a copy of `cache_of`'s
/// local cache.
pub fn repo_with_objects(
    objects: &std::collections::BTreeMap<String, bytes::Bytes>,
    cache_of: &Repo,
    w: Where,
) -> Repo {
    let repo = Repo::uninit_on(w);
    if w == Where::Local {
        std::fs::create_dir_all(repo.path()).unwrap();
    }
    let b = cairn::backend::Backend::open(repo.url(), true, &Default::default()).unwrap();
    for (name, bytes) in objects {
        b.put(name, bytes.clone()).unwrap();
    }
    copy_dir(&cache_of.cache(), &repo.cache());
    repo
}
