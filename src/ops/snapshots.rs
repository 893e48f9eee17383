//! `snapshots`: list and filter snapshots; the JSON uses restic's field
//! names where they mean the same thing.

use serde::Serialize;

use crate::error::{Error, Result};
use crate::format::snapshot::{Snapshot, StreamInfo, Summary};
use crate::id::{SnapshotId, TreeId};
use crate::repo::Repository;

/// Filters shared by commands that pick snapshots.
#[derive(Clone, Debug, Default)]
pub struct SnapshotFilter {
    pub hosts: Vec<String>,
    /// Each entry is a comma-separated set; a snapshot matches if it has
    /// all tags of any one entry (restic's `--tag a,b --tag c`).
    pub tags: Vec<String>,
    pub paths: Vec<String>,
}

impl SnapshotFilter {
    pub fn matches(&self, s: &Snapshot) -> bool {
        let host = self.hosts.is_empty() || self.hosts.contains(&s.hostname);
        let tags = self.tags.is_empty()
            || self
                .tags
                .iter()
                .any(|set| set.split(',').filter(|t| !t.is_empty()).all(|t| s.tags.iter().any(|x| x == t)));
        let paths = self.paths.is_empty() || self.paths.iter().all(|p| s.paths.iter().any(|x| x == p));
        host && tags && paths
    }
}

/// Matching snapshots, oldest first.
pub fn list(repo: &Repository, filter: &SnapshotFilter) -> Result<Vec<(SnapshotId, Snapshot)>> {
    Ok(repo.snapshots()?.into_iter().filter(|(_, s)| filter.matches(s)).collect())
}

/// The snapshots named by `ids` (ids, unique prefixes, `latest` = the
/// newest snapshot the filter matches), or, without ids, all that match
/// `filter` (as restic: explicit ids are not filtered). Oldest first, each
/// once.
pub fn select(repo: &Repository, ids: &[String], filter: &SnapshotFilter) -> Result<Vec<(SnapshotId, Snapshot)>> {
    let all = repo.snapshots()?;
    if ids.is_empty() {
        return Ok(all.into_iter().filter(|(_, s)| filter.matches(s)).collect());
    }
    let mut out: Vec<(SnapshotId, Snapshot)> = Vec::new();
    for spec in ids {
        let found = if spec == "latest" {
            all.iter()
                .rev()
                .find(|(_, s)| filter.matches(s))
                .cloned()
                .ok_or_else(|| Error::not_found("no snapshot matches the filters for 'latest'"))?
        } else {
            repo.find_snapshot(spec)?
        };
        if !out.iter().any(|(id, _)| *id == found.0) {
            out.push(found);
        }
    }
    out.sort_by(|a, b| a.1.time.cmp(&b.1.time).then(a.0.cmp(&b.0)));
    Ok(out)
}

/// A snapshot as `snapshots --json` prints it.
#[derive(Serialize)]
pub struct SnapshotJson<'a> {
    pub id: SnapshotId,
    pub short_id: String,
    pub time: String,
    pub hostname: &'a str,
    pub username: &'a str,
    pub paths: &'a [String],
    pub tags: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent: Option<SnapshotId>,
    pub tree: TreeId,
    pub partial: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream: Option<&'a StreamInfo>,
    pub summary: &'a Summary,
    pub program_version: &'a str,
}

pub fn to_json<'a>(id: &SnapshotId, s: &'a Snapshot) -> SnapshotJson<'a> {
    SnapshotJson {
        id: *id,
        short_id: id.short(),
        time: s.time.to_rfc3339_opts(chrono::SecondsFormat::Nanos, false),
        hostname: &s.hostname,
        username: &s.username,
        paths: &s.paths,
        tags: &s.tags,
        parent: s.parent,
        tree: s.tree,
        partial: s.partial,
        stream: s.stream.as_ref(),
        summary: &s.summary,
        program_version: &s.program_version,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_filter_semantics() {
        let t = chrono::DateTime::from_timestamp(0, 0).unwrap().fixed_offset();
        let s = Snapshot::for_test(t, "h", &["db", "nightly"]);
        let f =
            |tags: &[&str]| SnapshotFilter { tags: tags.iter().map(|x| x.to_string()).collect(), ..Default::default() };
        assert!(f(&["db"]).matches(&s));
        assert!(f(&["db,nightly"]).matches(&s));
        assert!(!f(&["db,weekly"]).matches(&s));
        assert!(f(&["db,weekly", "nightly"]).matches(&s));
        assert!(SnapshotFilter { hosts: vec!["h".into()], paths: vec!["/a".into()], ..Default::default() }.matches(&s));
        assert!(!SnapshotFilter { hosts: vec!["x".into()], ..Default::default() }.matches(&s));
    }
}
