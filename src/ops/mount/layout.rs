//! The mount's directory layout.
//!
//! ```text
//! /snapshots/<time>/…      every snapshot, named by its time; `latest` links to the newest
//! /ids/<short id>/…        every snapshot, named by its id
//! /hosts/<host>/<time>/…   per host, with a `latest` link
//! /tags/<tag>/<time>/…     per tag, with a `latest` link
//! ```
//!
//! The inodes that stand for these entries are in [`super::inodes`].

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::sync::Arc;

use crate::format::snapshot::Snapshot;
use crate::format::tree::{Node, NodeKind};
use crate::id::{SnapshotId, TreeId};

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

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::DateTime;

    fn snap(time: &str, host: &str, tags: &[&str]) -> Snapshot {
        Snapshot::for_test(DateTime::parse_from_rfc3339(time).unwrap(), host, tags)
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
