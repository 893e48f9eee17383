//! What cairn creates is private to its owner, whatever the umask: the
//! repository's directories 0700 and files 0600, and the same for the
//! cache (format-spec/11-backends.md, "Local directory").

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

use crate::common::{noise, output, Repo};

/// `path` and everything under it, each with its permission bits.
fn modes(path: &Path) -> Vec<(PathBuf, u32)> {
    let meta = std::fs::symlink_metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut out = vec![(path.to_path_buf(), meta.permissions().mode() & 0o7777)];
    if meta.is_dir() {
        for e in std::fs::read_dir(path).unwrap() {
            out.extend(modes(&e.unwrap().path()));
        }
    }
    out
}

/// Runs `cairn ARGS` on `repo` under umask `mask` (which must succeed).
fn run_with_umask(repo: &Repo, mask: libc::mode_t, args: &[&str]) {
    let mut c = repo.std_cmd_via(repo.url());
    // SAFETY: umask is async-signal-safe and touches only the child.
    unsafe {
        c.pre_exec(move || {
            libc::umask(mask);
            Ok(())
        });
    }
    c.args(args);
    let o = output(assert_cmd::Command::from_std(c));
    assert_eq!(o.code, Some(0), "cairn {args:?} under umask {mask:03o} failed:\n{}", o.stderr);
}

#[test]
fn init_and_backup_create_private_files_whatever_the_umask() {
    let repo = Repo::uninit();
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("a.bin"), noise(300_000, 7)).unwrap();
    std::fs::write(src.join("sub/b.txt"), b"hello").unwrap();
    // A permissive umask would give 0777 directories and 0666 files.
    run_with_umask(&repo, 0o000, &["init"]);
    run_with_umask(&repo, 0o000, &["backup", src.to_str().unwrap()]);
    run_with_umask(&repo, 0o022, &["backup", src.to_str().unwrap()]);

    let root = repo.path();
    let all = modes(&root);
    for (path, mode) in &all {
        let want = if path.is_dir() { 0o700 } else { 0o600 };
        assert_eq!(*mode, want, "{} has mode {mode:03o}, not {want:03o}", path.display());
        assert!(!path.to_string_lossy().contains('#'), "a staging file was left behind: {}", path.display());
    }
    // What was checked is a whole repository.
    for folder in ["keys", "data", "index", "snapshots"] {
        let n = all.iter().filter(|(p, _)| p.is_file() && p.starts_with(root.join(folder))).count();
        assert!(n > 0, "no files under {folder}/");
    }
    assert!(all.iter().any(|(p, _)| p == &root.join("config")), "no config");
    assert!(all.iter().any(|(p, _)| p.is_dir() && p.parent() == Some(&root.join("data"))), "no data/<xx>/");

    let cache = modes(&repo.cache());
    for (path, mode) in &cache {
        let want = if path.is_dir() { 0o700 } else { 0o600 };
        assert_eq!(*mode, want, "{} has mode {mode:03o}, not {want:03o}", path.display());
    }
    assert!(cache.iter().any(|(p, _)| p.ends_with("index-5.redb")), "no cache database in {cache:?}");
    assert!(cache.iter().any(|(p, _)| p.ends_with("index-5.filter")), "no cache filter in {cache:?}");
}
