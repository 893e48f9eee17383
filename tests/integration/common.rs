//! Shared helpers: a temporary repository and a `cairn` command bound to it.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use tempfile::TempDir;

pub const PASSWORD: &str = "correct horse battery staple";

/// A temporary repository with its own cache directory.
pub struct Repo {
    pub dir: TempDir,
}

impl Repo {
    /// Creates and initializes a repository.
    pub fn init() -> Self {
        let r = Self::uninit();
        r.cmd().arg("init").assert().success();
        r
    }

    /// A location for a repository, not yet initialized.
    pub fn uninit() -> Self {
        Self { dir: tempfile::tempdir().expect("tempdir") }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().join("repo")
    }

    pub fn cache(&self) -> PathBuf {
        self.dir.path().join("cache")
    }

    /// `cairn -r REPO` with the password and a private cache, quiet KDF.
    pub fn cmd(&self) -> Command {
        let mut c = Command::cargo_bin("cairn").expect("binary");
        c.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.dir.path())
            .env("CAIRN_PASSWORD", PASSWORD)
            .env("CAIRN_CACHE_DIR", self.cache())
            .env("CAIRN_INSECURE_TEST_KDF", "1")
            .arg("-r")
            .arg(self.path());
        c
    }

    /// Runs `cairn ARGS` and returns stdout; panics with stderr on failure.
    pub fn run(&self, args: &[&str]) -> String {
        let out = self.cmd().args(args).output().expect("run cairn");
        assert!(
            out.status.success(),
            "cairn {args:?} failed ({:?}):\n{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8 stdout")
    }

    /// Total bytes stored in the repository.
    pub fn size(&self) -> u64 {
        dir_size(&self.path())
    }

    /// Every object file under a repository folder (e.g. "data").
    pub fn objects(&self, folder: &str) -> Vec<PathBuf> {
        let mut out = Vec::new();
        walk(&self.path().join(folder), &mut out);
        out.sort();
        out
    }
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

pub fn dir_size(dir: &Path) -> u64 {
    let mut files = Vec::new();
    walk(dir, &mut files);
    files.iter().map(|f| f.metadata().map(|m| m.len()).unwrap_or(0)).sum()
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
            .env("CAIRN_PASSWORD", PASSWORD)
            .env("CAIRN_CACHE_DIR", self.cache())
            .env("CAIRN_INSECURE_TEST_KDF", "1")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(bin)
            .arg("-r")
            .arg(self.path());
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
