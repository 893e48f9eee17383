//! Writes to a local directory, done by cairn itself so that an object is
//! durable before its final name exists.
//!
//! A put writes the bytes to a staging file `<name>#<n>` in the object's own
//! directory (listings skip names ending in `#` and digits), fsyncs it,
//! renames it into place and fsyncs the directory. The entry of that
//! directory in its parent (and so on up to the repository directory) is
//! made durable too: when the put creates the directory (`data/<xx>/`, or
//! `keys/` at `init`), and otherwise once per process and directory.
//! Every failure, fsyncs included, is an error that names the object.
//!
//! Everything created here is private to the owner: directories 0700, files
//! 0600 (the umask can only take bits away from these), as restic does.
//! Existing files and directories keep their modes.

use std::collections::BTreeSet;
use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::error::{Error, ErrorKind, Result};

/// Mode of every directory cairn creates (repository and cache).
pub const DIR_MODE: u32 = 0o700;
/// Mode of every file cairn creates (repository objects and cache files).
pub const FILE_MODE: u32 = 0o600;

/// One failed step of storing `object` in the repository at `root`, as
/// one sentence: "cannot write data/ab/… on /srv/repo: no space left on
/// device (writing data/ab/…#1)". Paths inside the repository are given
/// relative to it.
fn failed(root: &Path, object: &Path, step: String, e: io::Error) -> Error {
    let rel = |p: &Path| p.strip_prefix(root).unwrap_or(p).display().to_string();
    let step = step.replace(&format!("{}/", root.display()), "");
    let reason = crate::error::io_reason(&e);
    let kind = if crate::error::io_is_transient(&e) { ErrorKind::Transient } else { ErrorKind::Io };
    let msg = format!("cannot write {} on {}: {reason} ({step})", rel(object), root.display());
    Error::with_source(kind, msg, e)
}

/// fsyncs a directory, so that the entries just made in it are durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The directory holding `path` (`.` for a bare relative name).
fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Creates a private directory (0700) and any missing parents, and fsyncs
/// the parent of each directory it created. An existing directory is left
/// as it is. For the repository root at `init` and the cache directory.
pub fn create_dir_all(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut missing = Vec::new();
    let mut d = dir;
    while std::fs::symlink_metadata(d).is_err() {
        missing.push(d);
        match d.parent() {
            Some(p) if !p.as_os_str().is_empty() => d = p,
            _ => break,
        }
    }
    DirBuilder::new().recursive(true).mode(DIR_MODE).create(dir)?;
    for d in missing.iter().rev() {
        sync_dir(parent_of(d))?;
    }
    Ok(())
}

/// Directories inside repositories whose entries in their parents this
/// process has made durable (fsynced the parent after seeing the entry).
static DURABLE_DIRS: Mutex<BTreeSet<PathBuf>> = Mutex::new(BTreeSet::new());

/// Makes durable the entry of `dir`, and of each directory between it and
/// `root`, in its parent: fsyncs the parents, top down. Each is done once per
/// process (and again with `force`, after creating directories). Another
/// put, maybe of another process, may have just created `dir` and not yet
/// fsynced its parent, so finding it is not enough.
fn sync_parents(root: &Path, dir: &Path, force: bool, object: &Path) -> Result<()> {
    let mut chain: Vec<&Path> = dir.ancestors().take_while(|d| *d != root && d.starts_with(root)).collect();
    chain.reverse();
    for d in chain {
        let known = || DURABLE_DIRS.lock().unwrap_or_else(|p| p.into_inner()).contains(d);
        if !force && known() {
            continue;
        }
        let parent = parent_of(d);
        sync_dir(parent)
            .map_err(|e| failed(root, object, format!("fsync of the directory {}", parent.display()), e))?;
        DURABLE_DIRS.lock().unwrap_or_else(|p| p.into_inner()).insert(d.to_path_buf());
    }
    Ok(())
}

/// Creates a new staging file `<path>#<n>` (mode 0600) beside `path`,
/// creating the directory (0700) and missing parents if needed.
fn create_staging(root: &Path, path: &Path) -> Result<(File, PathBuf)> {
    let dir = parent_of(path);
    let mut made_dir = false;
    let mut n = 1u64;
    loop {
        let mut staging = path.as_os_str().to_owned();
        staging.push(format!("#{n}"));
        let staging = PathBuf::from(staging);
        match OpenOptions::new().write(true).create_new(true).mode(FILE_MODE).open(&staging) {
            Ok(f) => return Ok((f, staging)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => n += 1,
            Err(e) if e.kind() == io::ErrorKind::NotFound && !made_dir && dir != root && dir.starts_with(root) => {
                DirBuilder::new()
                    .recursive(true)
                    .mode(DIR_MODE)
                    .create(dir)
                    .map_err(|e| failed(root, path, format!("creating the directory {}", dir.display()), e))?;
                sync_parents(root, dir, true, path)?;
                made_dir = true;
            }
            Err(e) => return Err(failed(root, path, format!("creating the file {}", staging.display()), e)),
        }
    }
}

/// Stores `data` at `path` (a file inside `root`): staging file, fsync,
/// rename (or, with `replace` false, a hard link that fails if `path`
/// exists), fsync of the directory. Returns `false`, storing nothing, when
/// `replace` is false and `path` exists. When it returns `Ok`, the object is
/// durable; before, it is not visible under its name, in whole or in part.
pub fn put(root: &Path, path: &Path, data: &[u8], replace: bool) -> Result<bool> {
    let (mut file, staging) = create_staging(root, path)?;
    let staged = file
        .write_all(data)
        .map_err(|e| failed(root, path, format!("writing {}", staging.display()), e))
        .and_then(|()| file.sync_all().map_err(|e| failed(root, path, format!("fsync of {}", staging.display()), e)));
    drop(file);
    let placed = staged.and_then(|()| {
        if replace {
            return std::fs::rename(&staging, path)
                .map(|()| true)
                .map_err(|e| failed(root, path, format!("renaming {} into place", staging.display()), e));
        }
        let linked = match std::fs::hard_link(&staging, path) {
            Ok(()) => true,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => false,
            Err(e) => return Err(failed(root, path, format!("linking {} into place", staging.display()), e)),
        };
        std::fs::remove_file(&staging).map_err(|e| failed(root, path, format!("removing {}", staging.display()), e))?;
        Ok(linked)
    });
    let placed = match placed {
        Ok(p) => p,
        Err(e) => {
            // The first error is the one to report; a staging file that
            // stays behind is skipped by listings.
            let _ = std::fs::remove_file(&staging);
            return Err(e);
        }
    };
    if placed {
        let dir = parent_of(path);
        sync_dir(dir).map_err(|e| failed(root, path, format!("fsync of the directory {}", dir.display()), e))?;
        sync_parents(root, dir, false, path)?;
    }
    Ok(placed)
}

/// Whether a file name is a staging file's: `<name>#<digits>`.
pub fn is_staging_name(name: &str) -> bool {
    name.rsplit_once('#')
        .is_some_and(|(base, n)| !base.is_empty() && !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// A staging file: its path relative to the repository, size, and when it
/// was last written.
#[derive(Clone, Debug)]
pub struct Staging {
    pub name: String,
    pub size: u64,
    pub modified: std::time::SystemTime,
}

/// The staging files under `root` (left by puts that were killed, or of
/// puts running now).
pub fn staging_files(root: &Path) -> io::Result<Vec<Staging>> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        // An entry may vanish while it is read (a put renames its staging
        // file into place): it is skipped.
        let gone = |e: &io::Error| e.kind() == io::ErrorKind::NotFound;
        for e in entries {
            let e = e?;
            let ty = match e.file_type() {
                Ok(t) => t,
                Err(err) if gone(&err) => continue,
                Err(err) => return Err(err),
            };
            if ty.is_dir() {
                stack.push(e.path());
            } else if ty.is_file() && e.file_name().to_str().is_some_and(is_staging_name) {
                let m = match e.metadata() {
                    Ok(m) => m,
                    Err(err) if gone(&err) => continue,
                    Err(err) => return Err(err),
                };
                let name = e.path().strip_prefix(root).map(|p| p.to_string_lossy().into_owned()).unwrap_or_default();
                out.push(Staging { name, size: m.len(), modified: m.modified()? });
            }
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}
