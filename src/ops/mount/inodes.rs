//! The mount's inode table.
//!
//! An entry gets an inode when the kernel looks its name up, and loses it
//! when the kernel forgets it (FUSE `forget`: the kernel dropped it from its
//! own cache), so the table holds what the kernel holds, not everything a
//! walk ever visited. A directory's listing (a snapshot's tree, loaded on
//! first read) lives with its inode and goes with it.
//!
//! Inode numbers are a hash of the parent's number and the name, so an
//! entry forgotten and looked up again gets its number back, and `readdir`
//! can give the number `stat` will show without making an inode. Each path
//! is its own inode: one snapshot reached by two paths is two directories
//! (the kernel does not allow directory aliases).

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::hash::{Hash, Hasher};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use super::filemap::FileMap;
use super::layout::Item;
use crate::error::Result;
use crate::format::tree::NodeKind;
use crate::id::TreeId;
use crate::repo::Repository;

pub const ROOT: u64 = 1;

/// A directory's entries, sorted by name.
pub type Children = Arc<Vec<(OsString, Item)>>;

pub struct Inode {
    pub item: Item,
    pub parent: u64,
    pub name: OsString,
    /// Lookups the kernel has not forgotten yet.
    lookups: u64,
    /// A directory's entries, once listed.
    pub children: Option<Children>,
    /// A file's chunk map, once opened.
    pub file: Option<Arc<FileMap>>,
}

pub struct Table {
    inodes: Mutex<HashMap<u64, Inode>>,
    /// The most inodes held at once.
    most: std::sync::atomic::AtomicUsize,
}

/// The number an entry gets: never 0 or [`ROOT`].
fn hashed(parent: u64, name: &OsStr) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    parent.hash(&mut h);
    name.as_bytes().hash(&mut h);
    h.finish().max(ROOT + 1)
}

/// The live inode of `name` in `parent`, if any; else the number it would
/// get (the hash, or the next free one after a collision).
fn slot(t: &HashMap<u64, Inode>, parent: u64, name: &OsStr) -> (u64, bool) {
    let mut ino = hashed(parent, name);
    loop {
        match t.get(&ino) {
            Some(i) if i.parent == parent && i.name == name => return (ino, true),
            Some(_) => ino = ino.wrapping_add(1).max(ROOT + 1),
            None => return (ino, false),
        }
    }
}

/// Whether an inode may keep standing for a new layout entry (and keep
/// its listing).
fn same_entry(old: &Item, new: &Item) -> bool {
    match (old, new) {
        (Item::Virtual { .. }, Item::Virtual { .. }) | (Item::Link { .. }, Item::Link { .. }) => true,
        (Item::Snapshot { tree: a, .. }, Item::Snapshot { tree: b, .. }) => a == b,
        (Item::Node(a), Item::Node(b)) => a == b,
        _ => false,
    }
}

/// Gives a live inode a new layout entry. A made-up directory is listed
/// again from it, and its live children get their new entries too.
fn update(t: &mut HashMap<u64, Inode>, ino: u64, item: Item) {
    let Some(i) = t.get_mut(&ino) else { return };
    if !same_entry(&i.item, &item) {
        i.children = None;
        i.file = None;
    }
    let specs = match &item {
        Item::Virtual { children, .. } => Some(children.clone()),
        _ => None,
    };
    i.item = item;
    if let Some(specs) = specs {
        i.children = None;
        for (name, spec) in specs.iter() {
            if let (child, true) = slot(t, ino, name) {
                update(t, child, spec.clone());
            }
        }
    }
}

impl Table {
    pub fn new(root: Item) -> Self {
        let inode = Inode { item: root, parent: ROOT, name: OsString::new(), lookups: 1, children: None, file: None };
        Self { inodes: Mutex::new(HashMap::from([(ROOT, inode)])), most: 1.into() }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Inode>> {
        self.inodes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on a live inode.
    pub fn with<T>(&self, ino: u64, f: impl FnOnce(&Inode) -> T) -> Option<T> {
        self.lock().get(&ino).map(f)
    }

    pub fn item(&self, ino: u64) -> Option<Item> {
        self.with(ino, |i| i.item.clone())
    }

    pub fn parent(&self, ino: u64) -> Option<u64> {
        self.with(ino, |i| i.parent)
    }

    /// Live inodes (for tests and messages).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most inodes held at once so far.
    pub fn most(&self) -> usize {
        self.most.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The path of an inode in the mount, for messages.
    pub fn path(&self, ino: u64) -> PathBuf {
        let t = self.lock();
        let mut names = Vec::new();
        let mut at = ino;
        while at != ROOT {
            match t.get(&at) {
                Some(i) => {
                    names.push(i.name.clone());
                    at = i.parent;
                }
                None => {
                    names.push(OsString::from("…"));
                    break;
                }
            }
        }
        let mut p = PathBuf::from("/");
        p.extend(names.iter().rev());
        p
    }

    /// A directory's entries, listing it first if needed (trees are loaded
    /// outside the table's lock).
    pub fn children(&self, repo: &Repository, ino: u64) -> Result<Option<Children>> {
        let Some((item, known)) = self.with(ino, |i| (i.item.clone(), i.children.clone())) else {
            return Ok(None);
        };
        if let Some(c) = known {
            return Ok(Some(c));
        }
        let mut listed: Vec<(OsString, Item)> = match &item {
            Item::Virtual { children, .. } => children.as_ref().clone(),
            Item::Snapshot { tree, .. } => tree_children(repo, tree)?,
            Item::Node(n) => match n.subtree() {
                Some(t) => tree_children(repo, &t)?,
                None => return Ok(None),
            },
            Item::Link { .. } => return Ok(None),
        };
        listed.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        let listed = Arc::new(listed);
        let mut t = self.lock();
        match t.get_mut(&ino) {
            Some(i) if same_entry(&i.item, &item) => Ok(Some(i.children.get_or_insert(listed).clone())),
            _ => Ok(Some(listed)), // changed or forgotten meanwhile: not kept
        }
    }

    /// Looks a name up in a directory: the entry's inode, made live (or
    /// its lookup count raised) for the kernel, which will forget it.
    pub fn lookup(&self, repo: &Repository, parent: u64, name: &OsStr) -> Result<Option<u64>> {
        let Some(children) = self.children(repo, parent)? else { return Ok(None) };
        let Ok(at) = children.binary_search_by(|(n, _)| n.as_bytes().cmp(name.as_bytes())) else {
            return Ok(None);
        };
        let spec = children[at].1.clone();
        let mut t = self.lock();
        if !t.contains_key(&parent) {
            return Ok(None);
        }
        let (ino, live) = slot(&t, parent, name);
        if live {
            update(&mut t, ino, spec);
            if let Some(i) = t.get_mut(&ino) {
                i.lookups += 1;
            }
        } else {
            let name = name.to_os_string();
            t.insert(ino, Inode { item: spec, parent, name, lookups: 1, children: None, file: None });
            self.most.fetch_max(t.len(), std::sync::atomic::Ordering::Relaxed);
        }
        Ok(Some(ino))
    }

    /// The inode number `readdir` shows for an entry: its live inode, or
    /// the one a lookup would give it.
    pub fn number(&self, parent: u64, name: &OsStr) -> u64 {
        slot(&self.lock(), parent, name).0
    }

    /// The kernel forgot `n` lookups of an inode; at none left it goes
    /// (with its listing and chunk map). The root never goes.
    pub fn forget(&self, ino: u64, n: u64) {
        let mut t = self.lock();
        if let Some(i) = t.get_mut(&ino) {
            i.lookups = i.lookups.saturating_sub(n);
            if i.lookups == 0 && ino != ROOT {
                t.remove(&ino);
            }
        }
    }

    /// Takes in a new snapshot list's layout (`root_item` of it): the root
    /// and every live made-up directory under it are listed again from it;
    /// entries still there keep their inodes.
    pub fn refresh(&self, root: Item) {
        update(&mut self.lock(), ROOT, root);
    }

    /// A file's chunk map, built on first use.
    pub fn file_map(&self, repo: &Repository, ino: u64) -> Result<Option<Arc<FileMap>>> {
        let Some((item, known)) = self.with(ino, |i| (i.item.clone(), i.file.clone())) else { return Ok(None) };
        if let Some(m) = known {
            return Ok(Some(m));
        }
        let Item::Node(n) = item else { return Ok(None) };
        if n.kind != NodeKind::File {
            return Ok(None);
        }
        let map = Arc::new(FileMap::build(repo, &n.content, n.size)?);
        let mut t = self.lock();
        match t.get_mut(&ino) {
            Some(i) => Ok(Some(i.file.get_or_insert(map).clone())),
            None => Ok(Some(map)),
        }
    }
}

fn tree_children(repo: &Repository, tree: &TreeId) -> Result<Vec<(OsString, Item)>> {
    Ok(repo
        .load_tree(tree)?
        .into_iter()
        .map(|n| (OsStr::from_bytes(&n.name).to_os_string(), Item::Node(Arc::new(n))))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::snapshot::Snapshot;
    use crate::id::SnapshotId;
    use crate::ops::mount::layout::root_item;
    use crate::repo::memory_repo;
    use chrono::DateTime;

    fn snap(time: &str) -> Snapshot {
        Snapshot::for_test(DateTime::parse_from_rfc3339(time).unwrap(), "db1", &[])
    }

    fn look(t: &Table, r: &Repository, parent: u64, name: &str) -> Option<u64> {
        t.lookup(r, parent, OsStr::new(name)).unwrap()
    }

    #[test]
    fn forgotten_entries_go_and_come_back_with_the_same_number() {
        let r = memory_repo();
        let t = Table::new(root_item(&[(SnapshotId([1; 32]), snap("2026-11-20T01:00:00+00:00"))]));
        let hosts = look(&t, &r, ROOT, "hosts").unwrap();
        assert_eq!(t.number(ROOT, OsStr::new("hosts")), hosts);
        let db1 = look(&t, &r, hosts, "db1").unwrap();
        assert_eq!(look(&t, &r, hosts, "db1"), Some(db1), "a second lookup is the same inode");
        assert_eq!(look(&t, &r, ROOT, "nothing"), None);
        assert_eq!(t.len(), 3);
        assert_eq!(t.path(db1), PathBuf::from("/hosts/db1"));
        t.forget(db1, 1);
        assert_eq!(t.len(), 3, "one lookup is left");
        t.forget(db1, 1);
        assert_eq!(t.len(), 2, "forgotten: gone");
        t.forget(ROOT, 5);
        assert_eq!(t.len(), 2, "the root stays");
        assert_eq!(look(&t, &r, hosts, "db1"), Some(db1), "the same number again");
        assert_eq!(t.number(hosts, OsStr::new("db1")), db1);
    }

    #[test]
    fn refresh_keeps_inodes_of_entries_still_there_and_relists() {
        let r = memory_repo();
        let one = vec![(SnapshotId([1; 32]), snap("2026-11-20T01:00:00+00:00"))];
        let mut two = one.clone();
        two.push((SnapshotId([2; 32]), snap("2026-11-21T01:00:00+00:00")));
        let t = Table::new(root_item(&one));
        let hosts = look(&t, &r, ROOT, "hosts").unwrap();
        let db1 = look(&t, &r, hosts, "db1").unwrap();
        let first = look(&t, &r, db1, "2026-11-20T01:00:00+00:00").unwrap();
        let latest = look(&t, &r, db1, "latest").unwrap();
        assert_eq!(look(&t, &r, db1, "2026-11-21T01:00:00+00:00"), None);

        t.refresh(root_item(&two));
        // db1 was not looked up again, yet lists the new snapshot.
        let names: Vec<_> = t.children(&r, db1).unwrap().unwrap().iter().map(|(n, _)| n.clone()).collect();
        assert_eq!(names, ["2026-11-20T01:00:00+00:00", "2026-11-21T01:00:00+00:00", "latest"]);
        assert_eq!(look(&t, &r, db1, "2026-11-20T01:00:00+00:00"), Some(first), "a kept snapshot changed inode");
        assert!(look(&t, &r, db1, "2026-11-21T01:00:00+00:00").is_some());
        match t.item(latest).unwrap() {
            Item::Link { target, .. } => assert_eq!(target, "2026-11-21T01:00:00+00:00", "latest not updated"),
            other => panic!("{other:?}"),
        }
        t.refresh(root_item(&one));
        assert_eq!(look(&t, &r, db1, "2026-11-21T01:00:00+00:00"), None, "a forgotten snapshot is still listed");
    }
}
