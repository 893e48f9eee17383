//! `--exclude` and `--exclude-file` patterns.
//!
//! A pattern without `/` matches a file name at any depth (`*.tmp`,
//! `node_modules`); a pattern with `/` matches the whole absolute path
//! (`/var/cache/**`, `/home/*/.cache`). `*` and `?` do not cross `/`;
//! `**` does. As in restic, excluding a directory excludes all it holds.

use std::path::Path;

use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};

use crate::error::{Error, Result};

#[derive(Default)]
pub struct Excludes {
    names: Option<GlobSet>,
    paths: Option<GlobSet>,
    patterns: Vec<String>,
}

fn glob(p: &str) -> Result<Glob> {
    GlobBuilder::new(p)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
        .map_err(|e| Error::invalid(format!("bad exclude pattern {p:?}: {e}")))
}

impl Excludes {
    /// Builds from patterns and files of patterns (one per line; blank lines
    /// and lines starting with `#` are ignored).
    pub fn new(patterns: &[String], files: &[std::path::PathBuf]) -> Result<Self> {
        let mut all: Vec<String> = patterns.to_vec();
        for f in files {
            let text = std::fs::read_to_string(f).map_err(|e| Error::io(format!("exclude file {}", f.display()), e))?;
            all.extend(text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(String::from));
        }
        let (mut names, mut paths) = (GlobSetBuilder::new(), GlobSetBuilder::new());
        let (mut n_names, mut n_paths) = (0, 0);
        for p in &all {
            if p.contains('/') {
                paths.add(glob(p.trim_end_matches('/'))?);
                n_paths += 1;
            } else {
                names.add(glob(p)?);
                n_names += 1;
            }
        }
        let build = |b: GlobSetBuilder| b.build().map_err(|e| Error::invalid(format!("bad exclude pattern: {e}")));
        Ok(Self {
            names: if n_names > 0 { Some(build(names)?) } else { None },
            paths: if n_paths > 0 { Some(build(paths)?) } else { None },
            patterns: all,
        })
    }

    /// Whether `path` (absolute) is excluded.
    pub fn is_excluded(&self, path: &Path) -> bool {
        if let (Some(set), Some(name)) = (&self.names, path.file_name()) {
            if set.is_match(name) {
                return true;
            }
        }
        self.paths.as_ref().is_some_and(|set| set.is_match(path))
    }

    /// The patterns, as recorded in the snapshot.
    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_paths() {
        let e = Excludes::new(&["*.tmp".into(), "/data/cache/**".into(), "/home/*/.cache".into()], &[]).unwrap();
        assert!(e.is_excluded(Path::new("/a/b/x.tmp")));
        assert!(!e.is_excluded(Path::new("/a/b/x.tmpl")));
        assert!(e.is_excluded(Path::new("/data/cache/a/b")));
        assert!(e.is_excluded(Path::new("/home/bob/.cache")));
        assert!(!e.is_excluded(Path::new("/home/bob/x/.cache")));
        assert!(!e.is_excluded(Path::new("/data/other")));
        assert!(Excludes::new(&["a[".into()], &[]).is_err());
    }
}
