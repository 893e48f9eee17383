//! `diff`: what changed between two snapshots (or two directories of them).
//!
//! The two trees are walked side by side, in name order. A directory whose
//! tree id is the same on both sides is identical, all the way down, and is
//! skipped without being read: a diff of two snapshots of a large, mostly
//! unchanged tree reads only the trees along the changed paths
//! ([`DiffStats::trees_loaded`]). A directory present on one side only is
//! walked to list what it holds.
//!
//! Each change is reported once, as restic's `diff` does: `+` added, `-`
//! removed, `M` file content changed, `U` metadata only (mode, owner ids
//! and names, mtime, xattrs, a symlink's target, a device's number), `T`
//! type changed. ctime, inode, device and link count are not compared: they
//! change when a tree is copied or restored, not when its content does.
//!
//! The data counts are the blobs (data and tree) referenced by the changed
//! entries of one side and not by the changed entries of the other, sized
//! by their plaintext length in the index. Since identical subtrees are not
//! read, a blob that a changed entry shares with an unchanged subtree is
//! counted as added (or removed) all the same; restic reads every subtree
//! to tell.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::format::tree::{Content, Node, NodeKind};
use crate::id::{BlobId, BlobKind, TreeId};
use crate::repo::Repository;

/// How an entry changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Modifier {
    #[serde(rename = "+")]
    Added,
    #[serde(rename = "-")]
    Removed,
    /// A file's content.
    #[serde(rename = "M")]
    Modified,
    /// Metadata only.
    #[serde(rename = "U")]
    Metadata,
    /// The type (file, directory, symlink...).
    #[serde(rename = "T")]
    Type,
}

impl Modifier {
    pub fn symbol(self) -> &'static str {
        match self {
            Modifier::Added => "+",
            Modifier::Removed => "-",
            Modifier::Modified => "M",
            Modifier::Metadata => "U",
            Modifier::Type => "T",
        }
    }
}

/// One changed entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Change {
    /// Full path in the snapshot; a directory's ends in `/`.
    pub path: String,
    pub modifier: Modifier,
    /// For `M` and `U`: what differs (`content`, `mode`, `uid`, `gid`,
    /// `user`, `group`, `mtime`, `xattrs`, `target`, `device`); for `T`,
    /// `type`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub what: Vec<&'static str>,
}

/// Entries and blobs on one side (restic's `added`/`removed`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub files: u64,
    pub dirs: u64,
    pub others: u64,
    pub data_blobs: u64,
    pub tree_blobs: u64,
    /// Plaintext bytes of those blobs.
    pub bytes: u64,
}

impl Counts {
    fn entry(&mut self, kind: NodeKind) {
        match kind {
            NodeKind::File => self.files += 1,
            NodeKind::Dir => self.dirs += 1,
            _ => self.others += 1,
        }
    }
}

/// The summary of a diff.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DiffStats {
    /// Files whose content changed (`M`).
    pub changed_files: u64,
    /// Entries whose metadata alone changed (`U`).
    pub metadata_changed: u64,
    /// Entries whose type changed (`T`; also counted as removed and added).
    pub type_changed: u64,
    pub added: Counts,
    pub removed: Counts,
    /// Tree blobs read: identical subtrees are skipped unread.
    pub trees_loaded: u64,
}

/// What differs in the metadata of two nodes of the same kind (content,
/// and the fields that change on copy or restore, aside).
pub fn metadata_changes(a: &Node, b: &Node) -> Vec<&'static str> {
    let mut out = Vec::new();
    let mut check = |differs: bool, what| {
        if differs {
            out.push(what);
        }
    };
    check(a.mode != b.mode, "mode");
    check(a.uid != b.uid, "uid");
    check(a.gid != b.gid, "gid");
    check(a.user != b.user, "user");
    check(a.group != b.group, "group");
    check(a.mtime_ns != b.mtime_ns, "mtime");
    check(a.xattrs != b.xattrs, "xattrs");
    match (&a.content, &b.content) {
        (Content::Symlink(x), Content::Symlink(y)) => check(x != y, "target"),
        (Content::Device(x), Content::Device(y)) => check(x != y, "device"),
        _ => {}
    }
    out
}

/// How node `a` became node `b` (their own entries; a directory's content
/// aside), or `None` if it did not change.
pub fn classify(a: &Node, b: &Node) -> Option<(Modifier, Vec<&'static str>)> {
    if a.kind != b.kind {
        return Some((Modifier::Type, vec!["type"]));
    }
    let meta = metadata_changes(a, b);
    // The same chunks make the same lists, so comparing what the nodes
    // hold is comparing content (the differ expands a file listed on one
    // side only, [`Differ::nodes`]).
    if a.kind == NodeKind::File && a.content != b.content {
        let mut what = vec!["content"];
        what.extend(meta);
        return Some((Modifier::Modified, what));
    }
    (!meta.is_empty()).then_some((Modifier::Metadata, meta))
}

/// `path`, with a trailing `/` for a directory.
fn display(path: &Path, kind: NodeKind) -> String {
    let s = path.to_string_lossy();
    if kind == NodeKind::Dir && !s.ends_with('/') {
        format!("{s}/")
    } else {
        s.into_owned()
    }
}

/// What a path names in a snapshot.
enum At {
    /// The snapshot's root (which has no node of its own).
    Root(TreeId),
    Node(Node),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Before,
    After,
}

struct Differ<'a> {
    repo: &'a Repository,
    f: &'a mut dyn FnMut(Change) -> Result<()>,
    stats: DiffStats,
    /// Blobs of the changed entries on each side. Only the parts that
    /// differ are walked, so these stay as small as the change.
    before: HashSet<BlobId>,
    after: HashSet<BlobId>,
}

/// Compares `a_path` in the snapshot tree `a_root` with `b_path` in `b_root`
/// and calls `f` for each change, depth first in name order (a directory
/// before what it holds). Paths are shown as in `b_path`. A path missing
/// on one side is all added (or removed); missing on both is an error.
pub fn diff(
    repo: &Repository,
    a_root: TreeId,
    a_path: &Path,
    b_root: TreeId,
    b_path: &Path,
    f: &mut dyn FnMut(Change) -> Result<()>,
) -> Result<DiffStats> {
    let mut d = Differ { repo, f, stats: DiffStats::default(), before: HashSet::new(), after: HashSet::new() };
    let a = d.at(a_root, a_path)?;
    let b = d.at(b_root, b_path)?;
    let shown = Path::new("/").join(b_path);
    let tree_of = |at: &At| match at {
        At::Root(t) => Some(*t),
        At::Node(n) => n.subtree(),
    };
    match (a, b) {
        (None, None) => {
            return Err(Error::not_found(if a_path == b_path {
                format!("{} is in neither snapshot", a_path.display())
            } else {
                format!("neither {} nor {} is in its snapshot", a_path.display(), b_path.display())
            }))
        }
        (Some(At::Node(x)), Some(At::Node(y))) => d.nodes(&shown, &x, &y)?,
        // A snapshot's root, which has no metadata, and a directory.
        (Some(x), Some(y)) => match (tree_of(&x), tree_of(&y)) {
            (Some(tx), Some(ty)) => d.trees(&shown, tx, ty)?,
            _ => return Err(Error::invalid("cannot compare a snapshot's root with a file")),
        },
        (Some(At::Node(x)), None) => d.one_side(Side::Before, &shown, &x, true)?,
        (None, Some(At::Node(y))) => d.one_side(Side::After, &shown, &y, true)?,
        (Some(At::Root(x)), None) => d.tree_side(Side::Before, &shown, x)?,
        (None, Some(At::Root(y))) => d.tree_side(Side::After, &shown, y)?,
    }
    d.finish()
}

impl Differ<'_> {
    fn load(&mut self, tree: TreeId) -> Result<Vec<Node>> {
        self.stats.trees_loaded += 1;
        self.repo.load_tree(&tree)
    }

    fn emit(&mut self, path: &Path, kind: NodeKind, modifier: Modifier, what: Vec<&'static str>) -> Result<()> {
        (self.f)(Change { path: display(path, kind), modifier, what })
    }

    /// What `path` names under `root`; `None` if it is not there.
    fn at(&mut self, root: TreeId, path: &Path) -> Result<Option<At>> {
        let mut tree = root;
        let mut node: Option<Node> = None;
        for c in path.components() {
            let Component::Normal(name) = c else { continue };
            if let Some(n) = &node {
                match n.subtree() {
                    Some(t) => tree = t,
                    None => return Ok(None), // a file in the middle of the path
                }
            }
            let found = self.load(tree)?.into_iter().find(|n| n.name == name.as_bytes());
            match found {
                Some(n) => node = Some(n),
                None => return Ok(None),
            }
        }
        Ok(Some(match node {
            Some(n) => At::Node(n),
            None => At::Root(tree),
        }))
    }

    fn set(&mut self, side: Side) -> &mut HashSet<BlobId> {
        match side {
            Side::Before => &mut self.before,
            Side::After => &mut self.after,
        }
    }

    /// Two directories' contents.
    fn trees(&mut self, dir: &Path, a: TreeId, b: TreeId) -> Result<()> {
        if a == b {
            return Ok(());
        }
        self.before.insert(BlobId::tree(a));
        self.after.insert(BlobId::tree(b));
        let (na, nb) = (self.load(a)?, self.load(b)?);
        let (mut ia, mut ib) = (na.iter().peekable(), nb.iter().peekable());
        loop {
            let order = match (ia.peek(), ib.peek()) {
                (None, None) => break,
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (Some(x), Some(y)) => x.name.cmp(&y.name),
            };
            match order {
                std::cmp::Ordering::Less => {
                    if let Some(x) = ia.next() {
                        self.one_side(Side::Before, &dir.join(OsStr::from_bytes(&x.name)), x, true)?;
                    }
                }
                std::cmp::Ordering::Greater => {
                    if let Some(y) = ib.next() {
                        self.one_side(Side::After, &dir.join(OsStr::from_bytes(&y.name)), y, true)?;
                    }
                }
                std::cmp::Ordering::Equal => {
                    if let (Some(x), Some(y)) = (ia.next(), ib.next()) {
                        self.nodes(&dir.join(OsStr::from_bytes(&y.name)), x, y)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// The same name on both sides.
    fn nodes(&mut self, path: &Path, a: &Node, b: &Node) -> Result<()> {
        // A file listed on one side only (backed up before and after the
        // repository adopted chunk lists): compare the chunks themselves.
        let listed = |n: &Node| matches!(n.content, Content::Listed { .. });
        let expanded;
        let (a, b) = if a.kind == NodeKind::File && b.kind == NodeKind::File && listed(a) != listed(b) {
            let mut x = a.clone();
            let mut y = b.clone();
            x.content = Content::File(self.repo.file_chunks(&a.content)?.into_owned());
            y.content = Content::File(self.repo.file_chunks(&b.content)?.into_owned());
            expanded = (x, y);
            (&expanded.0, &expanded.1)
        } else {
            (a, b)
        };
        let Some((modifier, what)) = classify(a, b) else {
            // Unchanged entry; a directory may still differ inside.
            if let (Some(x), Some(y)) = (a.subtree(), b.subtree()) {
                self.trees(path, x, y)?;
            }
            return Ok(());
        };
        match modifier {
            Modifier::Type => {
                self.stats.type_changed += 1;
                self.emit(path, b.kind, modifier, what)?;
                self.one_side(Side::Before, path, a, false)?;
                self.one_side(Side::After, path, b, false)?;
            }
            Modifier::Modified => {
                self.stats.changed_files += 1;
                self.emit(path, b.kind, modifier, what)?;
                self.before.extend(self.repo.content_blobs(&a.content)?);
                self.after.extend(self.repo.content_blobs(&b.content)?);
            }
            _ => {
                self.stats.metadata_changed += 1;
                self.emit(path, b.kind, modifier, what)?;
                if let (Some(x), Some(y)) = (a.subtree(), b.subtree()) {
                    self.trees(path, x, y)?;
                }
            }
        }
        Ok(())
    }

    /// An entry on one side only (with `emit`: reported, and counted), and
    /// all it holds.
    fn one_side(&mut self, side: Side, path: &Path, n: &Node, emit: bool) -> Result<()> {
        if emit {
            let modifier = if side == Side::Before { Modifier::Removed } else { Modifier::Added };
            self.emit(path, n.kind, modifier, vec![])?;
        }
        match side {
            Side::Before => self.stats.removed.entry(n.kind),
            Side::After => self.stats.added.entry(n.kind),
        }
        let blobs = self.repo.content_blobs(&n.content)?;
        self.set(side).extend(blobs);
        if let Some(t) = n.subtree() {
            self.tree_side(side, path, t)?;
        }
        Ok(())
    }

    /// The content of a directory on one side only.
    fn tree_side(&mut self, side: Side, dir: &Path, tree: TreeId) -> Result<()> {
        self.set(side).insert(BlobId::tree(tree));
        for n in self.load(tree)? {
            self.one_side(side, &dir.join(OsStr::from_bytes(&n.name)), &n, true)?;
        }
        Ok(())
    }

    /// Counts and sizes the blobs of each side that the other lacks.
    fn finish(mut self) -> Result<DiffStats> {
        let reader = self.repo.cache.reader()?;
        for (mine, other, counts) in
            [(&self.after, &self.before, &mut self.stats.added), (&self.before, &self.after, &mut self.stats.removed)]
        {
            for b in mine.difference(other) {
                match b.kind {
                    BlobKind::Data => counts.data_blobs += 1,
                    BlobKind::Tree => counts.tree_blobs += 1,
                }
                if let Some(loc) = reader.get(b)? {
                    counts.bytes += u64::from(loc.raw_length);
                }
            }
        }
        Ok(self.stats)
    }
}

/// `SNAPSHOT[:PATH]` split; the path defaults to `/`.
pub fn split_spec(spec: &str) -> (&str, Option<PathBuf>) {
    match spec.split_once(':') {
        Some((s, p)) => (s, Some(PathBuf::from(if p.is_empty() { "/" } else { p }))),
        None => (spec, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::ChunkId;

    fn file(chunks: &[u8]) -> Node {
        let content = Content::File(chunks.iter().map(|c| ChunkId([*c; 32])).collect());
        Node {
            uid: 1000,
            gid: 1000,
            user: "alice".into(),
            group: "users".into(),
            mtime_ns: 1_000,
            ctime_ns: 2_000,
            size: chunks.len() as u64,
            inode: 7,
            device: 1,
            ..Node::for_test("f", NodeKind::File, content)
        }
    }

    #[test]
    fn unchanged_nodes_ignore_copy_artifacts() {
        let a = file(&[1, 2]);
        let mut b = a.clone();
        (b.ctime_ns, b.inode, b.device, b.nlink) = (9, 99, 9, 3);
        assert_eq!(classify(&a, &b), None);
    }

    #[test]
    fn content_wins_over_metadata() {
        let a = file(&[1, 2]);
        let mut b = file(&[1, 3]);
        b.mtime_ns += 1;
        assert_eq!(classify(&a, &b), Some((Modifier::Modified, vec!["content", "mtime"])));
        let b = file(&[1, 2, 3]);
        assert_eq!(classify(&a, &b), Some((Modifier::Modified, vec!["content"])));
    }

    #[test]
    fn metadata_only_changes_are_named() {
        let a = file(&[1]);
        let mut b = a.clone();
        b.mode = 0o600;
        b.uid = 0;
        b.group = "staff".into();
        b.xattrs = vec![(b"user.x".to_vec(), b"1".to_vec())];
        assert_eq!(classify(&a, &b), Some((Modifier::Metadata, vec!["mode", "uid", "group", "xattrs"])));

        let mut l1 = file(&[]);
        l1.kind = NodeKind::Symlink;
        l1.content = Content::Symlink(b"x".to_vec());
        let mut l2 = l1.clone();
        l2.content = Content::Symlink(b"y".to_vec());
        assert_eq!(classify(&l1, &l2), Some((Modifier::Metadata, vec!["target"])));

        let mut d1 = file(&[]);
        d1.kind = NodeKind::CharDev;
        d1.content = Content::Device(1);
        let mut d2 = d1.clone();
        d2.content = Content::Device(2);
        assert_eq!(classify(&d1, &d2), Some((Modifier::Metadata, vec!["device"])));
    }

    #[test]
    fn type_change() {
        let a = file(&[1]);
        let mut b = a.clone();
        b.kind = NodeKind::Symlink;
        b.content = Content::Symlink(b"f".to_vec());
        assert_eq!(classify(&a, &b), Some((Modifier::Type, vec!["type"])));
        let mut d = a.clone();
        d.kind = NodeKind::Dir;
        d.content = Content::Dir(TreeId([1; 32]));
        assert_eq!(classify(&a, &d).map(|c| c.0), Some(Modifier::Type));
        // A directory whose own entry is unchanged is not itself a change.
        let mut d2 = d.clone();
        d2.content = Content::Dir(TreeId([2; 32]));
        assert_eq!(classify(&d, &d2), None);
    }

    #[test]
    fn display_marks_directories() {
        assert_eq!(display(Path::new("/a/b"), NodeKind::Dir), "/a/b/");
        assert_eq!(display(Path::new("/"), NodeKind::Dir), "/");
        assert_eq!(display(Path::new("/a/b"), NodeKind::File), "/a/b");
    }

    #[test]
    fn specs_split_at_the_first_colon() {
        assert_eq!(split_spec("abc"), ("abc", None));
        assert_eq!(split_spec("abc:/x/y"), ("abc", Some(PathBuf::from("/x/y"))));
        assert_eq!(split_spec("latest:"), ("latest", Some(PathBuf::from("/"))));
    }
}
