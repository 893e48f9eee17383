//! `find`: where entries matching patterns appear across snapshots.
//!
//! Patterns are globs as in restic and `backup --exclude`: one without `/`
//! matches an entry's name at any depth (`*.conf`); one with `/` matches the
//! entry's whole path in the snapshot (`/etc/**/*.conf`). A path pattern
//! that does not start with `/` may match at any depth (`docs/*.txt` matches
//! `/home/a/docs/x.txt`), as restic's do. `*` and `?` do not cross `/`;
//! `**` does. Every directory is searched, whether it matches or not.
//!
//! When every pattern matches names only, whether a tree holds a match does
//! not depend on where it is, so a subtree found to hold none is not walked
//! again in later snapshots (most of a repository's trees are shared).
//!
//! Snapshots are picked by ids or filters with [`crate::ops::snapshots::select`].

use std::collections::HashSet;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::format::snapshot::Snapshot;
use crate::format::tree::{Content, Node, NodeKind};
use crate::id::{SnapshotId, TreeId};
use crate::repo::Repository;

/// What to look for.
#[derive(Clone, Debug, Default)]
pub struct FindOptions {
    pub patterns: Vec<String>,
    pub ignore_case: bool,
    /// Only entries modified at or before this time (ns since the epoch).
    pub newest: Option<i64>,
    /// Only entries modified at or after this time (ns since the epoch).
    pub oldest: Option<i64>,
}

/// Compiled patterns and time bounds.
pub struct Matcher {
    names: GlobSet,
    paths: GlobSet,
    newest: Option<i64>,
    oldest: Option<i64>,
}

impl Matcher {
    pub fn new(opts: &FindOptions) -> Result<Self> {
        if opts.patterns.is_empty() {
            return Err(Error::invalid("give at least one pattern"));
        }
        let (mut names, mut paths) = (GlobSetBuilder::new(), GlobSetBuilder::new());
        for p in &opts.patterns {
            let trimmed = p.trim_end_matches('/');
            if trimmed.is_empty() {
                return Err(Error::invalid(format!("bad pattern {p:?}: it matches nothing")));
            }
            let (set, pat) = if trimmed.contains('/') {
                let pat = if trimmed.starts_with('/') || trimmed.starts_with("**") {
                    trimmed.into()
                } else {
                    format!("**/{trimmed}")
                };
                (&mut paths, pat)
            } else {
                (&mut names, trimmed.to_string())
            };
            let g = GlobBuilder::new(&pat)
                .literal_separator(true)
                .backslash_escape(true)
                .case_insensitive(opts.ignore_case)
                .build()
                .map_err(|e| Error::invalid(format!("bad pattern {p:?}: {e}")))?;
            set.add(g);
        }
        let b = |s: GlobSetBuilder| s.build().map_err(|e| Error::invalid(format!("bad pattern: {e}")));
        Ok(Self { names: b(names)?, paths: b(paths)?, newest: opts.newest, oldest: opts.oldest })
    }

    /// Whether matches depend on names (and metadata) only, not on where
    /// an entry is.
    pub fn name_only(&self) -> bool {
        self.paths.is_empty()
    }

    /// Whether the entry `node` at `path` (absolute, in the snapshot) matches.
    pub fn matches(&self, path: &Path, node: &Node) -> bool {
        if self.newest.is_some_and(|t| node.mtime_ns > t) || self.oldest.is_some_and(|t| node.mtime_ns < t) {
            return false;
        }
        self.names.is_match(OsStr::from_bytes(&node.name)) || (!self.paths.is_empty() && self.paths.is_match(path))
    }
}

/// One matching entry (field names follow restic's `find --json`).
#[derive(Clone, Debug, Serialize)]
pub struct Hit {
    pub path: String,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: NodeKind,
    /// `-rw-r--r--`, as `ls -l` shows it.
    pub permissions: String,
    /// Permission bits with setuid/setgid/sticky.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub user: String,
    pub group: String,
    pub size: u64,
    /// RFC 3339.
    pub mtime: String,
    pub ctime: String,
    /// Nanoseconds since the epoch (for sorting and the text output).
    #[serde(skip)]
    pub mtime_ns: i64,
    pub inode: u64,
    pub device_id: u64,
    pub links: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub linktarget: Option<String>,
}

impl Hit {
    pub fn new(path: &Path, n: &Node) -> Self {
        Hit {
            path: path.to_string_lossy().into_owned(),
            name: n.name_lossy(),
            kind: n.kind,
            permissions: mode_string(n.kind, n.mode),
            mode: n.mode,
            uid: n.uid,
            gid: n.gid,
            user: n.user.clone(),
            group: n.group.clone(),
            size: n.size,
            mtime: rfc3339(n.mtime_ns),
            ctime: rfc3339(n.ctime_ns),
            mtime_ns: n.mtime_ns,
            inode: n.inode,
            device_id: n.device,
            links: n.nlink,
            linktarget: match &n.content {
                Content::Symlink(t) => Some(String::from_utf8_lossy(t).into_owned()),
                _ => None,
            },
        }
    }
}

/// The matches in one snapshot (restic's `find --json` element).
#[derive(Debug, Serialize)]
pub struct SnapshotHits {
    pub snapshot: SnapshotId,
    pub hits: usize,
    pub matches: Vec<Hit>,
}

/// What a search did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FindStats {
    pub snapshots: usize,
    pub hits: usize,
    /// Tree blobs read (a subtree known to hold no match is not read again).
    pub trees_loaded: u64,
}

/// Searches `snapshots` in order and calls `f` for each one that holds a
/// match, with its matches in walk order (depth first, by name).
pub fn find(
    repo: &Repository,
    snapshots: &[(SnapshotId, Snapshot)],
    m: &Matcher,
    f: &mut dyn FnMut(&SnapshotId, &Snapshot, SnapshotHits) -> Result<()>,
) -> Result<FindStats> {
    let mut w = Walker { repo, m, empty: HashSet::new(), trees_loaded: 0 };
    let mut stats = FindStats::default();
    for (id, snap) in snapshots {
        let mut hits = Vec::new();
        w.walk(Path::new("/"), snap.tree, &mut hits)?;
        stats.snapshots += 1;
        if !hits.is_empty() {
            stats.hits += hits.len();
            f(id, snap, SnapshotHits { snapshot: *id, hits: hits.len(), matches: hits })?;
        }
    }
    stats.trees_loaded = w.trees_loaded;
    Ok(stats)
}

struct Walker<'a> {
    repo: &'a Repository,
    m: &'a Matcher,
    /// Trees known to hold no match (only used when matches depend on
    /// names alone). 32 bytes per tree without a match.
    empty: HashSet<TreeId>,
    trees_loaded: u64,
}

impl Walker<'_> {
    fn walk(&mut self, dir: &Path, tree: TreeId, out: &mut Vec<Hit>) -> Result<()> {
        let memo = self.m.name_only();
        if memo && self.empty.contains(&tree) {
            return Ok(());
        }
        let before = out.len();
        self.trees_loaded += 1;
        for n in self.repo.load_tree(&tree)? {
            let p = dir.join(OsStr::from_bytes(&n.name));
            if self.m.matches(&p, &n) {
                out.push(Hit::new(&p, &n));
            }
            if let Some(sub) = n.subtree() {
                self.walk(&p, sub, out)?;
            }
        }
        if memo && out.len() == before {
            self.empty.insert(tree);
        }
        Ok(())
    }
}

/// `drwxr-xr-x`, with `s`/`S`/`t`/`T` for setuid, setgid and sticky.
pub fn mode_string(kind: NodeKind, mode: u32) -> String {
    let mut s = String::with_capacity(10);
    s.push(match kind {
        NodeKind::File => '-',
        NodeKind::Dir => 'd',
        NodeKind::Symlink => 'l',
        NodeKind::Fifo => 'p',
        NodeKind::CharDev => 'c',
        NodeKind::BlockDev => 'b',
        NodeKind::Socket => 's',
    });
    for (shift, special, special_char) in [(6, 0o4000, 's'), (3, 0o2000, 's'), (0, 0o1000, 't')] {
        let bits = (mode >> shift) & 7;
        s.push(if bits & 4 != 0 { 'r' } else { '-' });
        s.push(if bits & 2 != 0 { 'w' } else { '-' });
        let x = bits & 1 != 0;
        s.push(match (mode & special != 0, x) {
            (true, true) => special_char,
            (true, false) => special_char.to_ascii_uppercase(),
            (false, true) => 'x',
            (false, false) => '-',
        });
    }
    s
}

/// Nanoseconds since the epoch as RFC 3339 (UTC); empty if out of range.
pub fn rfc3339(ns: i64) -> String {
    chrono::DateTime::from_timestamp(ns.div_euclid(1_000_000_000), ns.rem_euclid(1_000_000_000) as u32)
        .map(|t| t.to_rfc3339())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, mtime_ns: i64) -> Node {
        Node { mtime_ns, ..Node::for_test(name, NodeKind::File, Content::File(vec![])) }
    }

    fn matcher(patterns: &[&str], ignore_case: bool) -> Matcher {
        Matcher::new(&FindOptions {
            patterns: patterns.iter().map(|p| p.to_string()).collect(),
            ignore_case,
            ..Default::default()
        })
        .unwrap()
    }

    fn hit(m: &Matcher, path: &str) -> bool {
        let p = Path::new(path);
        m.matches(p, &node(&p.file_name().unwrap().to_string_lossy(), 0))
    }

    #[test]
    fn name_and_path_patterns() {
        let m = matcher(&["*.conf"], false);
        assert!(m.name_only());
        assert!(hit(&m, "/etc/a.conf") && hit(&m, "/a/b/c/x.conf"));
        assert!(!hit(&m, "/etc/a.conf.bak") && !hit(&m, "/etc/A.CONF"));
        assert!(hit(&matcher(&["*.conf"], true), "/etc/A.CONF"));

        let m = matcher(&["/etc/*.conf"], false);
        assert!(!m.name_only());
        assert!(hit(&m, "/etc/a.conf"));
        assert!(!hit(&m, "/etc/sub/a.conf"), "* crosses /");
        assert!(hit(&matcher(&["/etc/**/*.conf"], false), "/etc/sub/a.conf"));

        // Relative path patterns match at any depth, on whole components.
        let m = matcher(&["docs/*.txt"], false);
        assert!(hit(&m, "/home/a/docs/x.txt") && hit(&m, "/docs/x.txt"));
        assert!(!hit(&m, "/home/a/mydocs/x.txt") && !hit(&m, "/home/docs/a/x.txt"));

        // A trailing / is ignored; several patterns are alternatives.
        let m = matcher(&["cache/", "*.log"], false);
        assert!(hit(&m, "/var/cache") && hit(&m, "/var/x.log") && !hit(&m, "/var/x"));

        assert!(Matcher::new(&FindOptions { patterns: vec!["a[".into()], ..Default::default() }).is_err());
        assert!(Matcher::new(&FindOptions::default()).is_err());
        assert!(Matcher::new(&FindOptions { patterns: vec!["/".into()], ..Default::default() }).is_err());
    }

    #[test]
    fn time_bounds_are_inclusive() {
        let m = Matcher::new(&FindOptions {
            patterns: vec!["*".into()],
            newest: Some(200),
            oldest: Some(100),
            ..Default::default()
        })
        .unwrap();
        let at = |t| m.matches(Path::new("/x"), &node("x", t));
        assert!(at(100) && at(150) && at(200));
        assert!(!at(99) && !at(201));
    }

    #[test]
    fn mode_strings() {
        assert_eq!(mode_string(NodeKind::File, 0o644), "-rw-r--r--");
        assert_eq!(mode_string(NodeKind::Dir, 0o755), "drwxr-xr-x");
        assert_eq!(mode_string(NodeKind::Symlink, 0o777), "lrwxrwxrwx");
        assert_eq!(mode_string(NodeKind::File, 0o4755), "-rwsr-xr-x");
        assert_eq!(mode_string(NodeKind::File, 0o2644), "-rw-r-Sr--");
        assert_eq!(mode_string(NodeKind::Dir, 0o1777), "drwxrwxrwt");
        assert_eq!(mode_string(NodeKind::Dir, 0o1776), "drwxrwxrwT");
        assert_eq!(mode_string(NodeKind::Fifo, 0), "p---------");
    }

    #[test]
    fn times_format_as_rfc3339() {
        assert_eq!(rfc3339(1_500_000_000_000_000_000), "2017-07-14T02:40:00+00:00");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59.999999999+00:00");
    }
}
