//! Creating restore paths without following anything already in the
//! target: a symlink (or file) where the snapshot has a directory is
//! replaced, never written through, so a restore cannot touch anything
//! outside its target.

use std::collections::HashSet;
use std::io;
use std::path::{Path, PathBuf};

/// Directories known to be real directories under a restore root.
pub struct SafeDirs {
    root: PathBuf,
    done: HashSet<PathBuf>,
}

impl SafeDirs {
    /// `root` itself is the user's choice and is created (and followed) as given.
    pub fn new(root: &Path) -> Self {
        Self { root: root.to_path_buf(), done: HashSet::new() }
    }

    /// Makes `dir` and every directory between the root and it a real
    /// directory, replacing symlinks and other non-directories.
    pub fn ensure(&mut self, dir: &Path) -> io::Result<()> {
        if self.done.contains(dir) {
            return Ok(());
        }
        if !self.done.contains(&self.root) {
            std::fs::create_dir_all(&self.root)?;
            self.done.insert(self.root.clone());
        }
        let rel = dir.strip_prefix(&self.root).map_err(|_| {
            io::Error::new(io::ErrorKind::InvalidInput, format!("{} is outside the restore target", dir.display()))
        })?;
        let mut cur = self.root.clone();
        for c in rel.components() {
            cur.push(c);
            if self.done.contains(&cur) {
                continue;
            }
            match std::fs::symlink_metadata(&cur) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => {
                    std::fs::remove_file(&cur)?;
                    std::fs::create_dir(&cur)?;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => std::fs::create_dir(&cur)?,
                Err(e) => return Err(e),
            }
            self.done.insert(cur.clone());
        }
        Ok(())
    }

    /// Makes `path`'s parent safe and removes a non-directory at `path`, so
    /// that a new entry can be created there.
    pub fn prepare_entry(&mut self, path: &Path) -> io::Result<()> {
        if let Some(parent) = path.parent() {
            self.ensure(parent)?;
        }
        match std::fs::symlink_metadata(path) {
            Ok(m) if m.is_dir() => Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} is a directory in the target", path.display()),
            )),
            Ok(_) => std::fs::remove_file(path),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_symlinks_instead_of_following_them() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("target");
        let outside = t.path().join("outside");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("d")).unwrap();
        std::os::unix::fs::symlink(outside.join("f"), root.join("f")).unwrap();
        let mut s = SafeDirs::new(&root);
        s.ensure(&root.join("d/e")).unwrap();
        assert!(std::fs::symlink_metadata(root.join("d")).unwrap().is_dir());
        assert!(root.join("d/e").is_dir());
        assert!(!outside.join("e").exists());
        s.prepare_entry(&root.join("f")).unwrap();
        assert!(std::fs::symlink_metadata(root.join("f")).is_err());
        assert!(s.ensure(&t.path().join("elsewhere")).is_err());
    }
}
