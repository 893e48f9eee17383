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
