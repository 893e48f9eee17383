//! The mount's directory layout and its inode table.
//!
//! ```text
//! /snapshots/<time>/…      every snapshot, named by its time; `latest` links to the newest
//! /ids/<short id>/…        every snapshot, named by its id
//! /hosts/<host>/<time>/…   per host, with a `latest` link
//! /tags/<tag>/<time>/…     per tag, with a `latest` link
//! ```
//!
//! Inodes are made as the kernel looks names up: a directory's children
//! are listed (a snapshot's trees loaded) the first time it is read, and
//! each child gets its own inode, so one snapshot reached by two paths is
//! two distinct directories (the kernel does not allow directory aliases).

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::blobs::FileMap;
use crate::error::Result;
use crate::format::snapshot::Snapshot;
use crate::format::tree::{Node, NodeKind};
use crate::id::{SnapshotId, TreeId};
use crate::repo::Repository;

pub const ROOT: u64 = 1;

/// What an inode is.
#[derive(Clone, Debug)]
pub enum Item {
    /// A directory the mount makes up (root, snapshots, hosts/x, …): its
    /// children, and the time its attributes show.
    Virtual { children: Arc<Vec<(OsString, Item)>>, time_ns: i64 },
    /// A snapshot's root directory.
    Snapshot { tree: TreeId, time_ns: i64 },
    /// An entry of a snapshot (a directory's children come from its tree).
    Node(Arc<Node>),
    /// A link the mount makes up (`latest`).
    Link { target: OsString, time_ns: i64 },
}

impl Item {
    pub fn is_dir(&self) -> bool {
        match self {
            Item::Virtual { .. } | Item::Snapshot { .. } => true,
            Item::Node(n) => n.kind == NodeKind::Dir,
            Item::Link { .. } => false,
        }
    }
}

pub struct Inode {
    pub item: Item,
    pub parent: u64,
    /// The path in the mount, for messages.
    pub path: PathBuf,
    /// Children, sorted by name, once listed.
    pub children: Option<Children>,
    /// A file's chunk map, once opened.
    pub file: Option<Arc<FileMap>>,
}

/// A directory's entries (name, inode), sorted by name.
pub type Children = Arc<Vec<(OsString, u64)>>;

/// The inode table. Inode `n` is `inodes[n - 1]`.
pub struct Table {
    inodes: Mutex<Vec<Inode>>,
}

/// A snapshot's directory name: its time, made unique with the short id
/// when two snapshots share a second.
fn time_label(s: &Snapshot) -> String {
    s.time.format("%Y-%m-%dT%H:%M:%S%:z").to_string()
}

/// Whether a host or tag can be a directory name.
fn usable_name(s: &str) -> bool {
    !s.is_empty() && s != "." && s != ".." && !s.contains('/') && !s.contains('\0')
}

fn nanos(s: &Snapshot) -> i64 {
    s.time.timestamp_nanos_opt().unwrap_or(0)
}

/// A folder of snapshots (each under its label) with a `latest` link.
fn snapshot_folder(snaps: &[(&String, &Snapshot)], with_latest: bool) -> Item {
    let mut children: Vec<(OsString, Item)> = snaps
        .iter()
        .map(|(label, s)| (OsString::from(label.as_str()), Item::Snapshot { tree: s.tree, time_ns: nanos(s) }))
        .collect();
    let newest = snaps.iter().max_by_key(|(_, s)| s.time);
    if let (true, Some((label, s))) = (with_latest, newest) {
        children
            .push((OsString::from("latest"), Item::Link { target: OsString::from(label.as_str()), time_ns: nanos(s) }));
    }
    let time_ns = newest.map(|(_, s)| nanos(s)).unwrap_or(0);
    Item::Virtual { children: Arc::new(children), time_ns }
}

/// The top of the mount for a list of snapshots (oldest first).
pub fn root_item(snapshots: &[(SnapshotId, Snapshot)]) -> Item {
    let mut labels: Vec<String> = snapshots.iter().map(|(_, s)| time_label(s)).collect();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for l in &labels {
        *seen.entry(l.clone()).or_default() += 1;
    }
    for (l, (id, _)) in labels.iter_mut().zip(snapshots) {
        if seen[l.as_str()] > 1 {
            l.push('-');
            l.push_str(&id.short());
        }
    }
    let all: Vec<(&String, &Snapshot)> = labels.iter().zip(snapshots.iter().map(|(_, s)| s)).collect();
    let newest = snapshots.iter().map(|(_, s)| nanos(s)).max().unwrap_or(0);

    let mut shorts: BTreeMap<String, usize> = BTreeMap::new();
    for (id, _) in snapshots {
        *shorts.entry(id.short()).or_default() += 1;
    }
    let ids: Vec<(String, &Snapshot)> = snapshots
        .iter()
        .map(|(id, s)| (if shorts[&id.short()] > 1 { id.to_string() } else { id.short() }, s))
        .collect();
    let ids: Vec<(&String, &Snapshot)> = ids.iter().map(|(l, s)| (l, *s)).collect();

    let hosts: BTreeSet<&str> = snapshots.iter().map(|(_, s)| s.hostname.as_str()).filter(|h| usable_name(h)).collect();
    let hosts = hosts
        .into_iter()
        .map(|h| {
            let mine: Vec<_> = all.iter().filter(|(_, s)| s.hostname == h).copied().collect();
            (OsString::from(h), snapshot_folder(&mine, true))
        })
        .collect();
    let tags: BTreeSet<&str> =
        snapshots.iter().flat_map(|(_, s)| s.tags.iter().map(String::as_str)).filter(|t| usable_name(t)).collect();
    let tags = tags
        .into_iter()
        .map(|t| {
            let mine: Vec<_> = all.iter().filter(|(_, s)| s.tags.iter().any(|x| x == t)).copied().collect();
            (OsString::from(t), snapshot_folder(&mine, true))
        })
        .collect();
    let virt = |children| Item::Virtual { children: Arc::new(children), time_ns: newest };
    virt(vec![
        (OsString::from("hosts"), virt(hosts)),
        (OsString::from("ids"), snapshot_folder(&ids, false)),
        (OsString::from("snapshots"), snapshot_folder(&all, true)),
        (OsString::from("tags"), virt(tags)),
    ])
}

impl Table {
    pub fn new(root: Item) -> Self {
        let inode = Inode { item: root, parent: ROOT, path: PathBuf::from("/"), children: None, file: None };
        Self { inodes: Mutex::new(vec![inode]) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Inode>> {
        self.inodes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on an inode, if it exists.
    pub fn with<T>(&self, ino: u64, f: impl FnOnce(&Inode) -> T) -> Option<T> {
        let t = self.lock();
        let i = usize::try_from(ino).ok()?.checked_sub(1)?;
        t.get(i).map(f)
    }

    /// The item and path of an inode.
    pub fn item(&self, ino: u64) -> Option<(Item, PathBuf)> {
        self.with(ino, |i| (i.item.clone(), i.path.clone()))
    }

    pub fn parent(&self, ino: u64) -> Option<u64> {
        self.with(ino, |i| i.parent)
    }

    /// A directory's children (name, inode), listing it first if needed.
    /// Loading trees happens outside the table's lock.
    pub fn children(&self, repo: &Repository, ino: u64) -> Result<Option<Children>> {
        let Some((item, path, known)) = self.with(ino, |i| (i.item.clone(), i.path.clone(), i.children.clone())) else {
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
        let mut t = self.lock();
        let i = (ino - 1) as usize;
        if let Some(c) = &t[i].children {
            return Ok(Some(c.clone())); // another thread listed it meanwhile
        }
        let mut names = Vec::with_capacity(listed.len());
        for (name, item) in listed {
            let child = t.len() as u64 + 1;
            t.push(Inode { item, parent: ino, path: path.join(&name), children: None, file: None });
            names.push((name, child));
        }
        let names = Arc::new(names);
        t[i].children = Some(names.clone());
        Ok(Some(names))
    }

    /// Takes in a new snapshot list's layout (`root_item` of it). Listed
    /// directories keep the inodes of entries that are still there (a
    /// snapshot directory stays the same inode while its tree is the same),
    /// gain inodes for new entries and drop vanished ones from their
    /// listing; old inodes stay valid for whoever still holds them.
    pub fn refresh(&self, root: Item) {
        let mut t = self.lock();
        update(&mut t, ROOT, root);
    }

    /// Looks a name up in a directory.
    pub fn lookup(&self, repo: &Repository, parent: u64, name: &OsStr) -> Result<Option<u64>> {
        let Some(children) = self.children(repo, parent)? else { return Ok(None) };
        Ok(children.binary_search_by(|(n, _)| n.as_bytes().cmp(name.as_bytes())).ok().map(|i| children[i].1))
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
        let map = Arc::new(FileMap::build(repo, n.chunks(), n.size)?);
        let mut t = self.lock();
        let slot = &mut t[(ino - 1) as usize].file;
        Ok(Some(slot.get_or_insert(map).clone()))
    }

    /// The path of an inode, for messages.
    pub fn path(&self, ino: u64) -> PathBuf {
        self.with(ino, |i| i.path.clone()).unwrap_or_else(|| Path::new("?").to_path_buf())
    }
}

/// Whether an inode may keep standing for a new layout entry.
fn same_entry(old: &Item, new: &Item) -> bool {
    match (old, new) {
        (Item::Virtual { .. }, Item::Virtual { .. }) | (Item::Link { .. }, Item::Link { .. }) => true,
        (Item::Snapshot { tree: a, .. }, Item::Snapshot { tree: b, .. }) => a == b,
        _ => false,
    }
}

fn update(t: &mut Vec<Inode>, ino: u64, item: Item) {
    let i = (ino - 1) as usize;
    let specs = match &item {
        Item::Virtual { children, .. } => Some(children.clone()),
        _ => None,
    };
    t[i].item = item;
    let (Some(specs), Some(old)) = (specs, t[i].children.clone()) else {
        return; // not a listed made-up directory: it lists from the new item when asked
    };
    let mut specs = specs.as_ref().clone();
    specs.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let path = t[i].path.clone();
    let mut names = Vec::with_capacity(specs.len());
    for (name, spec) in specs {
        let kept = old.iter().find(|(n, c)| *n == name && same_entry(&t[(*c - 1) as usize].item, &spec));
        let child = match kept {
            Some((_, c)) => {
                let c = *c;
                update(t, c, spec);
                c
            }
            None => {
                t.push(Inode { item: spec, parent: ino, path: path.join(&name), children: None, file: None });
                t.len() as u64
            }
        };
        names.push((name, child));
    }
    t[i].children = Some(Arc::new(names));
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
    use chrono::DateTime;

    fn snap(time: &str, host: &str, tags: &[&str]) -> Snapshot {
        let t = DateTime::parse_from_rfc3339(time).unwrap();
        Snapshot {
            version: 1,
            time: t,
            hostname: host.into(),
            username: "u".into(),
            paths: vec!["/a".into()],
            tags: tags.iter().map(|t| t.to_string()).collect(),
            parent: None,
            tree: TreeId([0; 32]),
            partial: false,
            excludes: vec![],
            stream: None,
            summary: Default::default(),
            original: None,
            repaired: None,
            backup_start: t,
            backup_end: t,
            program_version: String::new(),
        }
    }

    fn names(item: &Item) -> Vec<String> {
        match item {
            Item::Virtual { children, .. } => children.iter().map(|(n, _)| n.to_string_lossy().into_owned()).collect(),
            _ => panic!("not a virtual dir"),
        }
    }

    fn child<'a>(item: &'a Item, name: &str) -> &'a Item {
        match item {
            Item::Virtual { children, .. } => &children.iter().find(|(n, _)| n == name).expect(name).1,
            _ => panic!("not a virtual dir"),
        }
    }

    #[test]
    fn refresh_keeps_inodes_of_entries_still_there_and_adds_new_ones() {
        let one = vec![(SnapshotId([1; 32]), snap("2026-11-20T01:00:00+00:00", "db1", &[]))];
        let mut two = one.clone();
        two.push((SnapshotId([2; 32]), snap("2026-11-21T01:00:00+00:00", "db1", &[])));
        let repo_less = |t: &Table, parent: u64, name: &str| -> Option<u64> {
            let c = t.with(parent, |i| i.children.clone()).flatten()?;
            c.iter().find(|(n, _)| n == name).map(|(_, i)| *i)
        };
        let t = Table::new(root_item(&one));
        // List root, hosts and hosts/db1 by hand (no repository needed for
        // made-up directories).
        let list = |ino: u64| {
            let item = t.item(ino).unwrap().0;
            let Item::Virtual { children, .. } = item else { panic!() };
            let mut tt = t.lock();
            let path = tt[(ino - 1) as usize].path.clone();
            let mut names = Vec::new();
            let mut sorted = children.as_ref().clone();
            sorted.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            for (n, it) in sorted {
                tt.push(Inode { item: it, parent: ino, path: path.join(&n), children: None, file: None });
                names.push((n, tt.len() as u64));
            }
            tt[(ino - 1) as usize].children = Some(Arc::new(names));
        };
        list(ROOT);
        let hosts = repo_less(&t, ROOT, "hosts").unwrap();
        list(hosts);
        let db1 = repo_less(&t, hosts, "db1").unwrap();
        list(db1);
        let first = repo_less(&t, db1, "2026-11-20T01:00:00+00:00").unwrap();
        t.refresh(root_item(&two));
        assert_eq!(repo_less(&t, ROOT, "hosts"), Some(hosts));
        assert_eq!(repo_less(&t, hosts, "db1"), Some(db1));
        assert_eq!(repo_less(&t, db1, "2026-11-20T01:00:00+00:00"), Some(first), "a kept snapshot changed inode");
        let second = repo_less(&t, db1, "2026-11-21T01:00:00+00:00").expect("the new snapshot is listed");
        assert!(second > first);
        let latest = repo_less(&t, db1, "latest").unwrap();
        match t.item(latest).unwrap().0 {
            Item::Link { target, .. } => assert_eq!(target, "2026-11-21T01:00:00+00:00"),
            other => panic!("{other:?}"),
        }
        // And back: the second snapshot is forgotten.
        t.refresh(root_item(&one));
        assert_eq!(repo_less(&t, db1, "2026-11-21T01:00:00+00:00"), None);
        assert_eq!(repo_less(&t, db1, "2026-11-20T01:00:00+00:00"), Some(first));
    }

    #[test]
    fn layout_has_snapshots_ids_hosts_and_tags_with_latest_links() {
        let snaps = vec![
            (SnapshotId([1; 32]), snap("2026-11-20T01:00:00+00:00", "db1", &["nightly"])),
            (SnapshotId([2; 32]), snap("2026-11-21T01:00:00+00:00", "db2", &[])),
            (SnapshotId([3; 32]), snap("2026-11-21T01:00:00+00:00", "db1", &["nightly", "a/b"])),
        ];
        let root = root_item(&snaps);
        assert_eq!(names(&root), ["hosts", "ids", "snapshots", "tags"]);
        let all = child(&root, "snapshots");
        assert_eq!(
            names(all),
            [
                "2026-11-20T01:00:00+00:00",
                &format!("2026-11-21T01:00:00+00:00-{}", SnapshotId([2; 32]).short()),
                &format!("2026-11-21T01:00:00+00:00-{}", SnapshotId([3; 32]).short()),
                "latest"
            ]
        );
        assert_eq!(names(child(&root, "hosts")), ["db1", "db2"]);
        let db1 = child(child(&root, "hosts"), "db1");
        assert_eq!(names(db1).len(), 3);
        match child(db1, "latest") {
            Item::Link { target, .. } => {
                assert_eq!(
                    target,
                    &OsString::from(format!("2026-11-21T01:00:00+00:00-{}", SnapshotId([3; 32]).short()))
                )
            }
            other => panic!("latest is {other:?}"),
        }
        // A tag with a slash cannot be a directory name and is left out.
        assert_eq!(names(child(&root, "tags")), ["nightly"]);
        assert_eq!(names(child(&root, "ids")).len(), 3);
    }
}
