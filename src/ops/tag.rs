//! `tag`: add, remove or set the tags of snapshots.
//!
//! A snapshot object never changes (its name is the hash of its bytes), so
//! a snapshot whose tags change is rewritten: the new object (same fields,
//! new tags, `original` set to the old id unless it already names one) is
//! stored first, and only then is the old object deleted. A crash between
//! the two leaves both, which `check` accepts and `forget` can tidy up.
//! Snapshots whose tags would not change are left alone. `original` lets
//! `copy` recognise a re-tagged snapshot it has already copied
//! (format-spec/09-snapshots.md).
//!
//! The caller holds the maintenance lock: `forget` and `prune` wait,
//! backups go on (they only add snapshots).

use crate::error::{Error, Result};
use crate::format::snapshot::Snapshot;
use crate::id::SnapshotId;
use crate::repo::Repository;

/// How tags change (restic's `--set`, `--add`, `--remove`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TagChange {
    /// Replace all tags with these (possibly none).
    pub set: Option<Vec<String>>,
    pub add: Vec<String>,
    pub remove: Vec<String>,
}

/// Splits `a,b` values and drops empty names.
fn split(values: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for t in values.iter().flat_map(|v| v.split(',')).map(str::trim).filter(|t| !t.is_empty()) {
        if !out.iter().any(|x| x == t) {
            out.push(t.to_string());
        }
    }
    out
}

impl TagChange {
    /// From option values (each may hold several tags separated by
    /// commas). `set` is `None` when `--set` was not given; `--set ""`
    /// removes every tag.
    pub fn new(set: Option<&[String]>, add: &[String], remove: &[String]) -> Result<Self> {
        let c = TagChange { set: set.map(split), add: split(add), remove: split(remove) };
        if c.set.is_some() && (!add.is_empty() || !remove.is_empty()) {
            return Err(Error::invalid("--set replaces all tags: it cannot be combined with --add or --remove"));
        }
        if c.set.is_none() && c.add.is_empty() && c.remove.is_empty() {
            return Err(Error::invalid("nothing to do: give --add, --remove or --set"));
        }
        Ok(c)
    }

    /// The tags after the change: with `set`, exactly those; otherwise the
    /// old tags in their order without the removed ones, then the added
    /// ones that were not there.
    pub fn apply(&self, tags: &[String]) -> Vec<String> {
        if let Some(set) = &self.set {
            return set.clone();
        }
        let mut out: Vec<String> = tags.iter().filter(|t| !self.remove.contains(t)).cloned().collect();
        for t in &self.add {
            if !out.contains(t) {
                out.push(t.clone());
            }
        }
        out
    }
}

/// One rewritten snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Retagged {
    pub old: SnapshotId,
    pub new: SnapshotId,
    pub tags: Vec<String>,
}

/// What `tag` did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TagReport {
    pub changed: Vec<Retagged>,
    /// Snapshots whose tags already were as asked.
    pub unchanged: Vec<SnapshotId>,
}

/// The snapshot with new tags, recording the id it replaces.
pub fn retagged(id: &SnapshotId, s: &Snapshot, tags: Vec<String>) -> Snapshot {
    Snapshot { tags, original: Some(s.original.unwrap_or(*id)), ..s.clone() }
}

/// Applies `change` to `snapshots`. The caller holds the maintenance lock.
pub fn run(repo: &Repository, snapshots: &[(SnapshotId, Snapshot)], change: &TagChange) -> Result<TagReport> {
    let mut report = TagReport::default();
    for (id, s) in snapshots {
        let tags = change.apply(&s.tags);
        if tags == s.tags {
            report.unchanged.push(*id);
            continue;
        }
        let done = report.changed.len();
        let context = |e: Error| {
            let e = e.context(format!("snapshot {}", id.short()));
            if done > 0 {
                e.context(format!("after re-tagging {done} snapshot(s)"))
            } else {
                e
            }
        };
        let new = repo.save_snapshot(&retagged(id, s, tags.clone())).map_err(context)?;
        // The new object is stored: the old one may go.
        super::repair::snapshots::delete_snapshot(repo, id)
            .map_err(|e| context(e.context(format!("stored {} but the old snapshot remains", new.short()))))?;
        report.changed.push(Retagged { old: *id, new, tags });
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::TreeId;

    fn v(x: &[&str]) -> Vec<String> {
        x.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn add_remove_and_set() {
        let c = TagChange::new(None, &v(&["b,c", "d"]), &v(&["a"])).unwrap();
        assert_eq!(c.add, v(&["b", "c", "d"]));
        assert_eq!(c.apply(&v(&["a", "b", "x"])), v(&["b", "x", "c", "d"]));
        // Already as asked: unchanged, order kept.
        assert_eq!(c.apply(&v(&["d", "c", "b"])), v(&["d", "c", "b"]));

        let c = TagChange::new(Some(&v(&["x,y"])), &[], &[]).unwrap();
        assert_eq!(c.apply(&v(&["a"])), v(&["x", "y"]));
        let clear = TagChange::new(Some(&v(&[""])), &[], &[]).unwrap();
        assert_eq!(clear.apply(&v(&["a", "b"])), Vec::<String>::new());

        // Removing and adding the same tag leaves it there.
        let c = TagChange::new(None, &v(&["a"]), &v(&["a"])).unwrap();
        assert_eq!(c.apply(&v(&["a"])), v(&["a"]));
    }

    #[test]
    fn refusals() {
        let e = TagChange::new(Some(&v(&["x"])), &v(&["y"]), &[]).unwrap_err();
        assert!(e.to_string().contains("cannot be combined"), "{e}");
        assert!(TagChange::new(Some(&v(&["x"])), &[], &v(&["y"])).is_err());
        let e = TagChange::new(None, &[], &[]).unwrap_err();
        assert!(e.to_string().contains("nothing to do"), "{e}");
        assert!(TagChange::new(None, &v(&[",", ""]), &[]).is_err());
    }

    #[test]
    fn retagging_records_the_first_id() {
        let t = chrono::DateTime::from_timestamp(0, 0).unwrap().fixed_offset();
        let s = Snapshot {
            parent: Some(SnapshotId([3; 32])),
            tree: TreeId([4; 32]),
            program_version: "x".into(),
            pg: None,
            ..Snapshot::for_test(t, "h", &["a"])
        };
        let first = SnapshotId([1; 32]);
        let r = retagged(&first, &s, v(&["b"]));
        assert_eq!(r.original, Some(first));
        assert_eq!(r.tags, v(&["b"]));
        assert_eq!(Snapshot { tags: s.tags.clone(), original: None, ..r.clone() }, s, "other fields changed");
        // Again: still the first id (as through chains of copies).
        let again = retagged(&SnapshotId([2; 32]), &r, v(&["c"]));
        assert_eq!(again.original, Some(first));
    }

    #[test]
    fn run_stores_the_new_snapshot_and_deletes_the_old() {
        let repo = crate::repo::memory_repo();
        let t = chrono::DateTime::from_timestamp(0, 0).unwrap().fixed_offset();
        let mk = |tags: &[&str]| Snapshot {
            tree: TreeId([4; 32]),
            program_version: "x".into(),
            pg: None,
            ..Snapshot::for_test(t, "h", tags)
        };
        let a = repo.save_snapshot(&mk(&["x"])).unwrap();
        let b = repo.save_snapshot(&mk(&["y"])).unwrap();
        let list = repo.snapshots().unwrap();
        let change = TagChange::new(None, &v(&["y"]), &[]).unwrap();
        let report = run(&repo, &list, &change).unwrap();
        assert_eq!(report.unchanged, vec![b]);
        assert_eq!(report.changed.len(), 1);
        assert_eq!(report.changed[0].old, a);
        let after = repo.snapshots().unwrap();
        let ids: Vec<SnapshotId> = after.iter().map(|x| x.0).collect();
        assert!(!ids.contains(&a) && ids.contains(&b) && ids.contains(&report.changed[0].new), "{ids:?}");
        let new = after.iter().find(|x| x.0 == report.changed[0].new).unwrap();
        assert_eq!(new.1.tags, v(&["x", "y"]));
        assert_eq!(new.1.original, Some(a));
    }
}
