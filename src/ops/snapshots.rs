//! `snapshots`: list and filter snapshots; the JSON uses restic's field
//! names where they mean the same thing.

use std::path::Path;

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
        let paths = self.paths.is_empty()
            || self.paths.iter().all(|p| {
                let p = clean_path(p);
                s.paths.iter().any(|x| clean_path(x) == p)
            });
        host && tags && paths
    }

    /// Whether no filter is set (every snapshot matches).
    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty() && self.tags.is_empty() && self.paths.is_empty()
    }
}

/// The filter as options (`--host db1 --tag nightly`), for messages.
impl std::fmt::Display for SnapshotFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let opts = self.hosts.iter().map(|h| ("host", h)).chain(self.tags.iter().map(|t| ("tag", t)));
        let mut sep = "";
        for (name, v) in opts.chain(self.paths.iter().map(|p| ("path", p))) {
            write!(f, "{sep}--{name} {v}")?;
            sep = " ";
        }
        Ok(())
    }
}

/// A path as `--path` compares it: absolute (a relative one is taken from
/// `/`, so `--path app.sql` names the stream snapshot `/app.sql`), without
/// `.`, `..`, repeated or trailing slashes.
pub fn clean_path(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    format!("/{}", parts.join("/"))
}

/// How messages name a snapshot: `1a2b3c4d (2026-12-04 03:00:00, host db1)`.
pub fn label(id: &SnapshotId, s: &Snapshot) -> String {
    format!("{} ({}, host {})", id.short(), s.time.format("%Y-%m-%d %H:%M:%S"), s.hostname)
}

/// Why `latest` names nothing in `all` under `filter`.
fn no_latest(filter: &SnapshotFilter) -> Error {
    if filter.is_empty() {
        Error::not_found("the repository has no snapshots")
    } else {
        Error::not_found(format!("no snapshot matches {filter}"))
    }
}

/// One snapshot: an id, a unique prefix, or `latest`, the newest snapshot
/// the filter matches (restic's semantics: an explicit id is not
/// filtered).
pub fn find(repo: &Repository, spec: &str, filter: &SnapshotFilter) -> Result<(SnapshotId, Snapshot)> {
    if spec != "latest" {
        return repo.find_snapshot(spec);
    }
    repo.snapshots()?.into_iter().rev().find(|(_, s)| filter.matches(s)).ok_or_else(|| no_latest(filter))
}

/// Whether a snapshot holds `path` (`/` always; a stream snapshot its
/// files, decided from the snapshot alone unless it was repaired).
pub fn has_path(repo: &Repository, s: &Snapshot, path: &Path) -> Result<bool> {
    let clean = clean_path(&path.to_string_lossy());
    if s.is_stream() {
        if clean != "/" && !s.streams().iter().any(|st| clean == clean_path(&st.filename)) {
            return Ok(false);
        }
        // `repair snapshots` may have dropped the file (its data was lost).
        if s.repaired.is_none() {
            return Ok(true);
        }
    }
    Ok(crate::ops::restore::lookup(repo, s.tree, path)?.is_some())
}

/// An error naming the snapshot unless it holds `path`.
pub fn require_path(repo: &Repository, id: &SnapshotId, s: &Snapshot, path: &Path) -> Result<()> {
    if has_path(repo, s, path).map_err(|e| e.context(format!("snapshot {}", label(id, s))))? {
        Ok(())
    } else {
        Err(Error::not_found(format!("{} is not in snapshot {}", clean_path(&path.to_string_lossy()), label(id, s))))
    }
}

/// `latest` for a command that reads one path (`dump latest app.sql`): the
/// newest snapshot the filter matches that holds `path`, and how many
/// newer matching snapshots do not (so that the caller can say it went
/// back).
pub fn latest_with_path(
    repo: &Repository,
    filter: &SnapshotFilter,
    path: &Path,
) -> Result<(SnapshotId, Snapshot, usize)> {
    let mut skipped = 0;
    for (id, s) in repo.snapshots()?.into_iter().rev().filter(|(_, s)| filter.matches(s)) {
        if has_path(repo, &s, path).map_err(|e| e.context(format!("snapshot {}", label(&id, &s))))? {
            return Ok((id, s, skipped));
        }
        skipped += 1;
    }
    let path = clean_path(&path.to_string_lossy());
    Err(match (skipped, filter.is_empty()) {
        (0, _) => no_latest(filter),
        (_, true) => Error::not_found(format!("no snapshot has {path}")),
        (_, false) => Error::not_found(format!("no snapshot matching {filter} has {path}")),
    })
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
            all.iter().rev().find(|(_, s)| filter.matches(s)).cloned().ok_or_else(|| no_latest(filter))?
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
    /// The streams of a snapshot holding several, in the order read.
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub streams: &'a [StreamInfo],
    pub summary: &'a Summary,
    pub program_version: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pg: Option<&'a crate::format::snapshot::PgInfo>,
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
        streams: &s.streams,
        summary: &s.summary,
        program_version: &s.program_version,
        pg: s.pg.as_ref(),
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

    #[test]
    fn path_filter_compares_clean_absolute_paths() {
        let t = chrono::DateTime::from_timestamp(0, 0).unwrap().fixed_offset();
        let mut s = Snapshot::for_test(t, "h", &[]);
        s.paths = vec!["/srv/db".into(), "/app.sql".into()];
        let f = |paths: &[&str]| SnapshotFilter {
            paths: paths.iter().map(|x| x.to_string()).collect(),
            ..Default::default()
        };
        assert!(f(&["/srv/db/"]).matches(&s));
        assert!(f(&["/srv//./db", "app.sql"]).matches(&s));
        assert!(!f(&["/srv/db", "/srv"]).matches(&s), "every --path must be among the snapshot's");
        assert!(!f(&["/srv/db/x"]).matches(&s));
        assert_eq!(clean_path("a/../b/"), "/b");
        assert_eq!(clean_path("/"), "/");
    }

    #[test]
    fn filters_read_as_their_options() {
        let f = SnapshotFilter {
            hosts: vec!["db1".into()],
            tags: vec!["a,b".into(), "c".into()],
            paths: vec!["/x".into()],
        };
        assert_eq!(f.to_string(), "--host db1 --tag a,b --tag c --path /x");
        assert!(!f.is_empty());
        assert!(SnapshotFilter::default().is_empty());
    }

    #[test]
    fn latest_follows_the_filter_and_says_what_matched_nothing() {
        let repo = crate::repo::memory_repo();
        let t = |h: i64| chrono::DateTime::from_timestamp(h * 3600, 0).unwrap().fixed_offset();
        let a = repo.save_snapshot(&Snapshot::for_test(t(1), "db1", &["nightly"])).unwrap();
        let b = repo.save_snapshot(&Snapshot::for_test(t(2), "web1", &[])).unwrap();
        let host = |h: &str| SnapshotFilter { hosts: vec![h.into()], ..Default::default() };
        assert_eq!(find(&repo, "latest", &SnapshotFilter::default()).unwrap().0, b);
        assert_eq!(find(&repo, "latest", &host("db1")).unwrap().0, a);
        let e = find(&repo, "latest", &host("db9")).unwrap_err();
        assert_eq!(e.to_string(), "no snapshot matches --host db9");
        assert_eq!(e.kind(), crate::error::ErrorKind::NotFound);
        // An explicit id is not filtered (restic).
        assert_eq!(find(&repo, &b.to_string(), &host("db1")).unwrap().0, b);
    }
}
