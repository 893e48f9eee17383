//! `repair snapshots`: rewrite snapshots without what cannot be read.
//!
//! A file is unreadable when one of its chunks is not in the index (run
//! `repair index --read-data` first: it drops damaged blobs from the index).
//! A directory whose tree blob is not in the index, or does not open, is
//! kept as an empty directory. Each snapshot that loses something is stored
//! again with the new tree, the tag `repaired`, and a `repaired` record that
//! names the original and every path dropped (format-spec/09). Originals are
//! deleted only with `forget`, and only after their replacement is stored.
//!
//! A snapshot object that is itself damaged is put back from the local
//! cache when the cache holds a copy that matches its name and opens (its
//! name is its SHA-256, so the copy is the original, byte for byte).
//! Without such a copy it is reported and left alone.

use std::collections::{BTreeSet, HashMap};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use serde::Serialize;

use crate::error::{ErrorKind, Result};
use crate::format::snapshot::{Repaired, Snapshot};
use crate::format::tree::{self, Content, Node};
use crate::id::{BlobId, BlobKind, SnapshotId, TreeId};
use crate::index::CacheReader;
use crate::repo::Repository;
use crate::saver::Saver;

/// The tag that every rewritten snapshot gets.
pub const REPAIRED_TAG: &str = "repaired";

/// One path a rewrite leaves out.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Dropped {
    pub path: String,
    pub reason: String,
}

/// A snapshot to rewrite.
#[derive(Clone, Debug, Serialize)]
pub struct SnapshotFix {
    pub id: SnapshotId,
    #[serde(skip)]
    pub snapshot: Snapshot,
    pub dropped: Vec<Dropped>,
}

/// What `repair snapshots` will do.
#[derive(Debug, Default, Serialize)]
pub struct SnapshotRepairPlan {
    /// Snapshots whose trees lose files or directories.
    pub rewrite: Vec<SnapshotFix>,
    /// Damaged snapshot objects that the cache holds a verified copy of.
    pub put_back: Vec<SnapshotId>,
    /// Damaged snapshot objects with no copy: left alone and reported.
    pub unreadable: Vec<(SnapshotId, String)>,
    /// Snapshots that an earlier repair already replaced: (original,
    /// replacement). Not rewritten again; with `forget`, deleted.
    pub already_replaced: Vec<(SnapshotId, SnapshotId)>,
    /// Trees that the index lacks and the local cache holds, verified:
    /// stored again.
    pub trees_from_cache: Vec<TreeId>,
    /// Snapshots that need nothing (once those trees are stored again).
    pub intact: usize,
    /// Whether originals are deleted once their replacements are stored.
    pub forget: bool,
}

/// What was done.
#[derive(Debug, Default, Serialize)]
pub struct SnapshotRepairReport {
    pub put_back: usize,
    /// (original, replacement).
    pub rewritten: Vec<(SnapshotId, SnapshotId)>,
    pub deleted: usize,
    pub trees_written: u64,
}

/// Per tree: what under it is unreadable, relative to it. Empty: intact.
struct Walker<'a> {
    repo: &'a Repository,
    reader: CacheReader,
    damage: HashMap<TreeId, Vec<Dropped>>,
    /// Trees the index lacks but the local cache holds (verified against
    /// their ids): stored again, so nothing under them is lost.
    from_cache: BTreeSet<TreeId>,
}

impl Walker<'_> {
    fn new(repo: &Repository) -> Result<Walker<'_>> {
        Ok(Walker { repo, reader: repo.cache.reader()?, damage: HashMap::new(), from_cache: BTreeSet::new() })
    }

    /// Why a tree cannot be used, if it cannot.
    fn tree_problem(&mut self, t: &TreeId) -> Result<Option<String>> {
        let indexed = self.reader.contains(&BlobId::tree(*t))?;
        if !indexed && self.repo.cache.tree(&t.0)?.is_none() {
            return Ok(Some(format!("tree {} is not in the index", t.short())));
        }
        match self.repo.load_tree(t) {
            Ok(_) => {
                if !indexed {
                    self.from_cache.insert(*t);
                }
                Ok(None)
            }
            Err(e) if matches!(e.kind(), ErrorKind::Corrupt | ErrorKind::Crypto | ErrorKind::NotFound) => {
                Ok(Some(format!("tree {}: {e}", t.short())))
            }
            Err(e) => Err(e),
        }
    }

    /// What is unreadable under a loadable tree (memoized).
    fn walk(&mut self, t: TreeId) -> Result<Vec<Dropped>> {
        if let Some(d) = self.damage.get(&t) {
            return Ok(d.clone());
        }
        let mut out = Vec::new();
        for n in self.repo.load_tree(&t)? {
            let name = PathBuf::from(OsStr::from_bytes(&n.name));
            if let Some(why) = missing_chunk(self.repo, &self.reader, &n)? {
                out.push(Dropped { path: name.display().to_string(), reason: why });
            }
            if let Some(sub) = n.subtree() {
                if let Some(why) = self.tree_problem(&sub)? {
                    out.push(Dropped { path: format!("{}/", name.display()), reason: why });
                } else {
                    for d in self.walk(sub)? {
                        out.push(Dropped { path: name.join(&d.path).display().to_string(), reason: d.reason });
                    }
                }
            }
        }
        self.damage.insert(t, out.clone());
        Ok(out)
    }

    /// Rewrites a tree without its unreadable parts; returns the new id.
    fn rewrite(&mut self, t: TreeId, saver: &mut Saver<'_>, done: &mut HashMap<TreeId, TreeId>) -> Result<TreeId> {
        if self.walk(t)?.is_empty() {
            return Ok(t);
        }
        if let Some(id) = done.get(&t) {
            return Ok(*id);
        }
        let mut nodes = Vec::new();
        for mut n in self.repo.load_tree(&t)? {
            if missing_chunk(self.repo, &self.reader, &n)?.is_some() {
                continue;
            }
            if let Some(sub) = n.subtree() {
                let new = if self.tree_problem(&sub)?.is_some() {
                    empty_tree(self.repo, saver)?
                } else {
                    self.rewrite(sub, saver, done)?
                };
                n.content = Content::Dir(new);
            }
            nodes.push(n);
        }
        let id = save_tree(self.repo, saver, &nodes)?;
        done.insert(t, id);
        Ok(id)
    }
}

/// Why a file's content cannot be read: a chunk or a chunk list that the
/// index does not have, or a chunk list that does not load.
fn missing_chunk(repo: &Repository, reader: &CacheReader, n: &Node) -> Result<Option<String>> {
    if let Content::Listed { level, lists } = &n.content {
        for l in lists {
            if !reader.contains(&BlobId::list(*l))? {
                return Ok(Some(format!("chunk list {l} is not in the index")));
            }
        }
        let blobs = match repo.content_blobs(&n.content) {
            Ok(b) => b,
            Err(e) => return Ok(Some(format!("a chunk list (level {level} or below) does not load: {e}"))),
        };
        for b in blobs {
            if !reader.contains(&b)? {
                let what = if b.kind == BlobKind::Data { "chunk" } else { "chunk list" };
                return Ok(Some(format!("{what} {} is not in the index", hex::encode(b.id))));
            }
        }
        return Ok(None);
    }
    for c in n.inline_chunks() {
        if !reader.contains(&BlobId::data(*c))? {
            return Ok(Some(format!("chunk {c} is not in the index")));
        }
    }
    Ok(None)
}

fn save_tree(repo: &Repository, saver: &mut Saver<'_>, nodes: &[Node]) -> Result<TreeId> {
    let enc = tree::encode(nodes)?;
    let id = TreeId(repo.key.blob_id(&enc));
    saver.save(BlobKind::Tree, id.0, enc)?;
    Ok(id)
}

fn empty_tree(repo: &Repository, saver: &mut Saver<'_>) -> Result<TreeId> {
    save_tree(repo, saver, &[])
}

/// Reads every snapshot and its trees and plans the rewrite. Writes nothing.
pub fn plan(repo: &Repository, forget: bool) -> Result<SnapshotRepairPlan> {
    let mut plan = SnapshotRepairPlan { forget, ..Default::default() };
    let mut w = Walker::new(repo)?;
    let mut ids = repo.list_ids("snapshots")?;
    ids.sort();
    let mut replaced: HashMap<SnapshotId, SnapshotId> = HashMap::new();
    let mut readable = Vec::new();
    for id in ids.into_iter().map(SnapshotId) {
        let snapshot = match repo.fetch_snapshot(&id) {
            Ok(s) => s,
            Err(e) if matches!(e.kind(), ErrorKind::Corrupt | ErrorKind::Crypto) => match repo.cached_snapshot(&id)? {
                Some((_, s)) => {
                    plan.put_back.push(id);
                    s
                }
                None => {
                    plan.unreadable.push((id, e.to_string()));
                    continue;
                }
            },
            Err(e) if e.kind() == ErrorKind::NotFound => continue, // removed meanwhile
            Err(e) => return Err(e),
        };
        if let Some(r) = &snapshot.repaired {
            replaced.insert(r.from, id);
        }
        readable.push((id, snapshot));
    }
    for (id, snapshot) in readable {
        let dropped = match w.tree_problem(&snapshot.tree)? {
            Some(why) => vec![Dropped { path: "/".into(), reason: why }],
            None => w
                .walk(snapshot.tree)?
                .into_iter()
                .map(|d| Dropped { path: format!("/{}", d.path), reason: d.reason })
                .collect(),
        };
        if dropped.is_empty() {
            plan.intact += 1;
        } else if let Some(new) = replaced.get(&id) {
            plan.already_replaced.push((id, *new));
        } else {
            plan.rewrite.push(SnapshotFix { id, snapshot, dropped });
        }
    }
    plan.trees_from_cache = w.from_cache.into_iter().collect();
    Ok(plan)
}

/// Carries out the plan. The caller holds the exclusive lock.
pub fn run(repo: &Repository, plan: &SnapshotRepairPlan) -> Result<SnapshotRepairReport> {
    let mut report = SnapshotRepairReport::default();
    for id in &plan.put_back {
        if let Some((sealed, _)) = repo.cached_snapshot(id)? {
            repo.backend.put(&format!("snapshots/{id}"), sealed)?;
            report.put_back += 1;
        }
    }
    if plan.forget {
        for (old, _) in &plan.already_replaced {
            delete_snapshot(repo, old)?;
            report.deleted += 1;
        }
        // Damaged objects with no verified copy: nothing can replace them,
        // and with --forget the user asked for what is lost to go.
        for (id, _) in &plan.unreadable {
            delete_snapshot(repo, id)?;
            report.deleted += 1;
        }
    }
    if plan.rewrite.is_empty() && plan.trees_from_cache.is_empty() {
        return Ok(report);
    }
    // Trees first (packs, then index objects), then the snapshots.
    let mut w = Walker::new(repo)?;
    let roots = std::thread::scope(|scope| -> Result<Vec<TreeId>> {
        let mut saver = Saver::start(scope, repo)?;
        for t in &plan.trees_from_cache {
            if let Err(e) = repo.read_tree_blob(t).and_then(|plain| saver.save(BlobKind::Tree, t.0, plain)) {
                saver.finish()?;
                return Err(e);
            }
        }
        let mut done = HashMap::new();
        let res = plan
            .rewrite
            .iter()
            .map(|f| {
                if w.tree_problem(&f.snapshot.tree)?.is_some() {
                    empty_tree(repo, &mut saver)
                } else {
                    w.rewrite(f.snapshot.tree, &mut saver, &mut done)
                }
            })
            .collect::<Result<Vec<_>>>();
        report.trees_written = saver.stats.tree_blobs;
        saver.finish()?;
        res
    })?;
    let now = chrono::Local::now().fixed_offset();
    let mut new_ids: HashMap<SnapshotId, SnapshotId> = HashMap::new();
    for (f, root) in plan.rewrite.iter().zip(roots) {
        let mut s = f.snapshot.clone();
        s.tree = root;
        if !s.tags.iter().any(|t| t == REPAIRED_TAG) {
            s.tags.push(REPAIRED_TAG.to_string());
        }
        s.parent = s.parent.map(|p| new_ids.get(&p).copied().unwrap_or(p));
        s.repaired = Some(Repaired {
            from: f.id,
            time: now,
            dropped: f.dropped.iter().map(|d| format!("{}: {}", d.path, d.reason)).collect(),
        });
        let id = repo.save_snapshot(&s)?;
        new_ids.insert(f.id, id);
        report.rewritten.push((f.id, id));
        if plan.forget {
            // The replacement is stored: the original may go.
            delete_snapshot(repo, &f.id)?;
            report.deleted += 1;
        }
    }
    Ok(report)
}

/// Deletes `snapshots/<id>`; one already gone is not an error (also used
/// by `forget`).
pub(crate) fn delete_snapshot(repo: &Repository, id: &SnapshotId) -> Result<()> {
    match repo.backend.delete(&format!("snapshots/{id}")) {
        Err(e) if e.kind() != ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}
