//! Carries out a [`PrunePlan`] in the spec's write order
//! (format-spec/10-write-order.md, rule 7):
//!
//! 1. repack: used blobs of partly used packs into new packs (indexed);
//! 2. new index objects: live packs, then marks with this run's id;
//! 3. delete the index objects the plan read;
//! 4. delete the packs whose marks were ripe and unused;
//! 5. list the writers' locks. None: this run's marks are ripe at once, so
//!    snapshots written meanwhile are read, the marks rewritten, and the
//!    unused packs deleted. Some: record them; a later prune deletes.

use std::collections::HashSet;

use serde::Serialize;

use super::usage::{self, CLAIMED, IN_MARKED, USED};
use super::{PackAction, PrunePlan, Stopwatch};
use crate::backend::local::Staging;
use crate::error::{ErrorKind, Result};
use crate::format::index::{Index, IndexPack, MarkedPack, RunId, RunRecord, SeenLock};
use crate::format::lock::LockKind;
use crate::id::{BlobId, IndexId, PackId};
use crate::index::scratch::BlobSet;
use crate::pack;
use crate::repo::lock::{liveness, session_of, Liveness};
use crate::repo::Repository;
use crate::saver::Saver;

use crate::index::ENTRIES_PER_OBJECT;

#[derive(Debug, Default, Serialize)]
pub struct PruneReport {
    pub repacked_packs: u64,
    pub repacked_blobs: u64,
    pub new_packs: u64,
    pub index_objects_written: u64,
    pub index_objects_deleted: u64,
    pub packs_marked: u64,
    pub packs_unmarked: u64,
    pub packs_deleted: u64,
    pub bytes_freed: u64,
    /// Marked packs left for a later prune, and their bytes.
    pub packs_pending: u64,
    pub bytes_pending: u64,
    /// Writers that were running when the marks were stored.
    pub waiting_for: Vec<String>,
    /// Staging files of killed puts removed (local directory), and bytes.
    pub staging_removed: u64,
    pub staging_bytes_removed: u64,
    /// Seconds spent per phase (plan and run), for `-v`.
    pub timings: Vec<(&'static str, f64)>,
    /// PostgreSQL WAL files deleted (rule P1 of format-spec/13-wal.md).
    pub wal_deleted: u64,
    pub wal_bytes_freed: u64,
}

/// Writes index objects in bounded batches: live packs and marks in
/// separate objects, so that settling the marks rewrites only theirs.
struct IndexWriter<'a> {
    repo: &'a Repository,
    live: Vec<IndexPack>,
    live_entries: usize,
    marked: Vec<MarkedPack>,
    marked_entries: usize,
    runs: Vec<RunRecord>,
    /// Objects written, with their entry counts.
    written: Vec<(IndexId, u64)>,
    /// The objects holding marks or run records.
    written_marks: Vec<IndexId>,
    /// Every mark written.
    marks: Vec<(PackId, RunId)>,
}

/// What an [`IndexWriter`] wrote.
struct Written {
    objects: Vec<(IndexId, u64)>,
    with_marks: Vec<IndexId>,
    marks: Vec<(PackId, RunId)>,
}

impl<'a> IndexWriter<'a> {
    fn new(repo: &'a Repository, runs: Vec<RunRecord>) -> Self {
        Self {
            repo,
            live: Vec::new(),
            live_entries: 0,
            marked: Vec::new(),
            marked_entries: 0,
            runs,
            written: Vec::new(),
            written_marks: Vec::new(),
            marks: Vec::new(),
        }
    }

    fn add(&mut self, p: IndexPack, mark: Option<RunId>) -> Result<()> {
        let n = p.blobs.len().max(1);
        match mark {
            Some(run) => {
                self.marks.push((p.id, run));
                self.marked.push(MarkedPack { run, pack: p });
                self.marked_entries += n;
                if self.marked_entries >= ENTRIES_PER_OBJECT {
                    self.flush_marks()?;
                }
            }
            None => {
                self.live.push(p);
                self.live_entries += n;
                if self.live_entries >= ENTRIES_PER_OBJECT {
                    self.flush_live()?;
                }
            }
        }
        Ok(())
    }

    fn flush_live(&mut self) -> Result<()> {
        if !self.live.is_empty() {
            let ix = Index { packs: std::mem::take(&mut self.live), ..Default::default() };
            self.written.push((self.repo.save_index_uncached(&ix)?, self.live_entries as u64));
            self.live_entries = 0;
        }
        Ok(())
    }

    fn flush_marks(&mut self) -> Result<()> {
        if !self.marked.is_empty() || !self.runs.is_empty() {
            let ix = Index {
                marked: std::mem::take(&mut self.marked),
                runs: std::mem::take(&mut self.runs),
                ..Default::default()
            };
            let id = self.repo.save_index_uncached(&ix)?;
            self.written.push((id, self.marked_entries as u64));
            self.written_marks.push(id);
            self.marked_entries = 0;
        }
        Ok(())
    }

    fn finish(mut self) -> Result<Written> {
        self.flush_live()?;
        self.flush_marks()?;
        Ok(Written { objects: self.written, with_marks: self.written_marks, marks: self.marks })
    }
}

/// Runs the plan. `own_session` is the caller's lock (not a writer).
pub fn run(repo: &Repository, mut plan: PrunePlan, own_session: [u8; 16]) -> Result<PruneReport> {
    let mut timings = std::mem::take(&mut plan.timings);
    let wal = std::mem::take(&mut plan.wal);
    let mut sw = Stopwatch::new();
    let mut report = steps(repo, plan, own_session, &mut sw)?;
    // WAL older than every kept base backup: nothing refers to it, and a
    // base backup written meanwhile starts after it (rule P1).
    for name in &wal.delete {
        delete_if_present(repo, name)?;
        report.wal_deleted += 1;
    }
    report.wal_bytes_freed = wal.bytes;
    if !wal.delete.is_empty() {
        sw.lap("delete WAL");
    }
    timings.extend(sw.into_laps());
    report.timings = timings;
    Ok(report)
}

fn steps(repo: &Repository, mut plan: PrunePlan, own_session: [u8; 16], sw: &mut Stopwatch) -> Result<PruneReport> {
    let mut report = PruneReport::default();
    if plan.is_noop() {
        report.packs_pending = plan.totals.pending.0;
        report.bytes_pending = plan.totals.pending.1;
        report.waiting_for = plan.waiting_for.clone();
        let staging = repo.backend.staging_files()?;
        if !staging.is_empty() && live_writers(repo, own_session)?.is_empty() {
            remove_staging(repo, &staging, &mut report)?;
        }
        return Ok(report);
    }
    let run_id = plan.run_id;
    // Pending marks whose run left no record are adopted by this run, whose
    // record covers them from now on.
    let recorded: HashSet<RunId> = plan.records.iter().map(|r| r.run).collect();
    for p in plan.packs.iter_mut().filter(|p| p.action == PackAction::Pending) {
        if !p.run.is_some_and(|r| recorded.contains(&r)) {
            p.run = Some(run_id);
        }
    }

    crate::steps::reached("prune:planned");
    // 1. Repack.
    let mut ours: HashSet<IndexId> = HashSet::new();
    let repack: Vec<(PackId, u32)> =
        plan.packs.iter().filter(|p| p.action == PackAction::Repack).map(|p| (p.id, p.ordinal)).collect();
    if !repack.is_empty() {
        let reader = plan.used.reader()?;
        let stored = std::thread::scope(|scope| -> Result<_> {
            let mut saver = Saver::start_fresh(scope, repo)?;
            for (id, ordinal) in &repack {
                let bytes = repo.backend.get(&pack::object_name(id))?;
                let entries = pack::header_from_bytes(&repo.key.enc, id, &bytes)?;
                let mut keep = Vec::new();
                for e in &entries {
                    if reader.get(&BlobId { kind: e.kind, id: e.id })? == CLAIMED + ordinal {
                        keep.push(e);
                    }
                }
                // Each group opened once for all the blobs kept from it.
                pack::each_blob_in_pack_bytes(&repo.key, &bytes, keep, |e, plain| {
                    let plain = plain.map_err(|err| err.context(format!("repacking pack {id}")))?;
                    saver.save(e.kind, e.id, plain.to_vec())?;
                    report.repacked_blobs += 1;
                    Ok(())
                })?;
                report.repacked_packs += 1;
            }
            saver.finish()
        })?;
        report.new_packs = stored.packs;
        report.index_objects_written += stored.indexes.len() as u64;
        ours.extend(stored.indexes.iter().copied());
    }
    crate::steps::reached("prune:repacked");

    sw.lap("repack");
    // 2. The new index: every pack the plan read, by its action.
    let mut w = IndexWriter::new(repo, plan.records.clone());
    let mut emitted: HashSet<PackId> = HashSet::new();
    for id in &plan.index_objects {
        let ix = repo.load_index_full(id)?;
        let items = ix.packs.into_iter().chain(ix.marked.into_iter().map(|m| m.pack));
        for p in items {
            let Some(pp) = plan.action(&p.id) else { continue };
            if p.blobs.is_empty() || !emitted.insert(p.id) {
                continue; // a copy with entries, or an entry-less mark below
            }
            match pp.action {
                PackAction::Keep | PackAction::Unmark => w.add(p, None)?,
                PackAction::Repack | PackAction::Mark => w.add(p, Some(run_id))?,
                PackAction::Pending => w.add(p, pp.run)?,
                PackAction::Delete => crate::steps::note(|| format!("prune plan deletes {}", pack_note(&p))),
            }
        }
    }
    // Packs with no entries anywhere: unindexed ones marked now, or marks of
    // unindexed packs still pending.
    for pp in plan.packs.iter().filter(|p| !emitted.contains(&p.id)) {
        let mark = match pp.action {
            PackAction::Mark | PackAction::Repack => Some(run_id),
            PackAction::Pending => pp.run,
            _ => None,
        };
        if mark.is_some() {
            w.add(IndexPack { id: pp.id, blobs: Vec::new() }, mark)?;
        }
    }
    let written = w.finish()?;
    report.index_objects_written += written.objects.len() as u64;
    ours.extend(written.objects.iter().map(|o| o.0));
    crate::steps::reached("prune:index-written");

    sw.lap("write index");
    // 3. The old index objects go; 4. then the packs ripe for deletion.
    for id in &plan.index_objects {
        delete_if_present(repo, &format!("index/{id}"))?;
        report.index_objects_deleted += 1;
    }
    repo.backend.sync_deletes("index")?;
    crate::steps::reached("prune:old-index-deleted");
    // A pack is deleted only if no index object but this run's names it
    // now (rule 11): one written since the plan names a pack its writer
    // stored, which is live.
    let foreign = foreign_packs(repo, &ours)?;
    let mut deleted: HashSet<PackId> = HashSet::new();
    for p in plan.packs.iter().filter(|p| p.action == PackAction::Delete) {
        if foreign.contains(&p.id) {
            report.packs_unmarked += 1;
            continue;
        }
        crate::steps::note(|| format!("prune deletes pack {} (step 4)", p.id.short()));
        delete_if_present(repo, &pack::object_name(&p.id))?;
        deleted.insert(p.id);
        report.packs_deleted += 1;
        report.bytes_freed += p.size;
    }
    update_cache(repo, &plan.index_objects, &written, &deleted, &mut plan.used)?;
    report.packs_unmarked += plan.totals.unmark.0;
    crate::steps::reached("prune:packs-deleted");

    sw.lap("delete");
    // 5. Who may still be writing with the old index?
    let mine: Vec<(PackId, u64)> = plan
        .packs
        .iter()
        .filter(|p| p.run == Some(run_id) || matches!(p.action, PackAction::Mark | PackAction::Repack))
        .map(|p| (p.id, p.size))
        .collect();
    report.packs_marked = plan.totals.mark.0 + plan.totals.repack.0;
    // Staging files listed before the locks: if no writer holds a lock at
    // the listing, none of them can belong to a put still running (a writer
    // writes its lock before its first put, and one that starts later
    // makes its staging files after this listing).
    let staging = repo.backend.staging_files()?;
    let mut seen = Vec::new();
    let mut writers = Vec::new();
    for (name, l) in repo.list_locks()? {
        let Some(object) = crate::repo::parse_object_name(name.rsplit('/').next().unwrap_or("")) else { continue };
        let session = session_of(&object, &l);
        crate::steps::note(|| format!("prune sees lock {} {:?} {:?}", super::describe(&l), l.kind(), liveness(&l)));
        if l.kind() == LockKind::Shared && session != own_session && liveness(&l) != Liveness::Dead {
            writers.push(super::describe(&l));
            seen.push(SeenLock { session, object });
        }
    }
    let pending_other: Vec<&super::PackPlan> =
        plan.packs.iter().filter(|p| p.action == PackAction::Pending && p.run != Some(run_id)).collect();
    report.packs_pending = pending_other.len() as u64;
    report.bytes_pending = pending_other.iter().map(|p| p.size).sum();
    report.waiting_for = plan.waiting_for.clone();
    crate::steps::reached("prune:writers-listed");
    if seen.is_empty() {
        remove_staging(repo, &staging, &mut report)?;
    }
    if mine.is_empty() {
        repo.sync_cache()?;
        return Ok(report);
    }
    if !seen.is_empty() {
        let time = chrono::Utc::now().timestamp();
        repo.save_index_full(Index { runs: vec![RunRecord { run: run_id, time, locks: seen }], ..Default::default() })?;
        report.index_objects_written += 1;
        report.packs_pending += mine.len() as u64;
        report.bytes_pending += mine.iter().map(|p| p.1).sum::<u64>();
        writers.sort();
        writers.dedup();
        report.waiting_for.extend(writers);
        report.waiting_for.sort();
        report.waiting_for.dedup();
        repo.sync_cache()?;
        return Ok(report);
    }

    // No writer was running once the marks were stored: every snapshot that
    // can use them exists now, and so does every index object naming a
    // pack such a writer stored. Read the new snapshots (then the index,
    // which holds their trees), then settle this run's marks: a pack that
    // an index object written since the plan names is its writer's and
    // goes live again; of the others, unused ones are deleted and used ones
    // go live again.
    let fresh: Vec<_> =
        repo.snapshots_strict()?.into_iter().filter(|(id, _)| !plan.snapshot_ids.contains(id)).collect();
    repo.sync_cache()?;
    usage::mark_used(repo, &fresh, &mut plan.used)?;
    let foreign = foreign_packs(repo, &ours)?;
    sw.lap("settle: sync, new snapshots");
    let reader = plan.used.reader()?;
    let mut w2 = IndexWriter::new(repo, Vec::new());
    let mut doomed: Vec<(PackId, u64)> = Vec::new();
    let mut rewritten = Vec::new();
    let mut rewritten_packs: Vec<PackId> = Vec::new();
    for id in &written.with_marks {
        let ix = repo.load_index_full(id)?;
        if ix.marked.iter().all(|m| m.run != run_id) {
            continue; // holds nothing of this run: stays
        }
        rewritten.push(*id);
        rewritten_packs.extend(ix.marked.iter().map(|m| m.pack.id));
        for p in ix.packs {
            w2.add(p, None)?;
        }
        for m in ix.marked {
            if m.run != run_id {
                w2.add(m.pack, Some(m.run))?;
                continue;
            }
            if foreign.contains(&m.pack.id) {
                // Named since the plan by its writer's own index object,
                // which keeps it live; an entry-less mark is dropped.
                report.packs_unmarked += 1;
                if !m.pack.blobs.is_empty() {
                    w2.add(m.pack, None)?;
                }
                continue;
            }
            // Blobs the plan already placed (claimed by a kept pack, or
            // repacked) are not needed here. Needed: those used and held
            // only by marked packs (a pending mark adopted by this run), and
            // those that a snapshot written meanwhile uses.
            let mut in_use = false;
            for e in &m.pack.blobs {
                let v = reader.get(&BlobId { kind: e.kind, id: e.id })?;
                in_use |= v == USED || v == IN_MARKED;
            }
            if in_use {
                report.packs_unmarked += 1;
                w2.add(m.pack, None)?;
            } else {
                let size = plan.action(&m.pack.id).map_or(0, |p| p.size);
                crate::steps::note(|| format!("prune settles, deletes {}", pack_note(&m.pack)));
                doomed.push((m.pack.id, size));
            }
        }
        w2.runs.extend(ix.runs);
    }
    let mut w2 = w2.finish()?;
    report.index_objects_written += w2.objects.len() as u64;
    crate::steps::reached("prune:settle-index-written");
    for id in &rewritten {
        delete_if_present(repo, &format!("index/{id}"))?;
        report.index_objects_deleted += 1;
    }
    repo.backend.sync_deletes("index")?;
    for (id, size) in &doomed {
        delete_if_present(repo, &pack::object_name(id))?;
        report.packs_deleted += 1;
        report.bytes_freed += size;
    }
    // The marks now: those of untouched objects, and those rewritten.
    let untouched: HashSet<PackId> = rewritten_packs.iter().copied().collect();
    w2.marks.extend(written.marks.into_iter().filter(|(p, _)| !untouched.contains(p)));
    drop(reader);
    let deleted: HashSet<PackId> = doomed.iter().map(|d| d.0).collect();
    update_cache(repo, &rewritten, &w2, &deleted, &mut plan.used)?;
    repo.sync_cache()?;
    Ok(report)
}

/// A pack and its blobs' short ids, for the test trace.
fn pack_note(p: &IndexPack) -> String {
    let blobs: Vec<String> = p.blobs.iter().map(|e| hex::encode(&e.id[..4])).collect();
    format!("pack {} blobs [{}]", p.id.short(), blobs.join(","))
}

/// Tells the cache what changed (old index objects out, new in, the marks,
/// the deleted packs), or rebuilds it if that cannot be done exactly.
fn update_cache(
    repo: &Repository,
    old: &[IndexId],
    written: &Written,
    deleted: &HashSet<PackId>,
    used: &mut BlobSet,
) -> Result<()> {
    let reader = used.reader()?;
    let sound = repo.cache.apply_prune(old, &written.objects, &written.marks, deleted, |b| Ok(reader.get(b)? != 0))?;
    if !sound {
        repo.rebuild_cache()?;
    }
    Ok(())
}

/// The shared locks of other processes whose holders may be running.
fn live_writers(repo: &Repository, own_session: [u8; 16]) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for (name, l) in repo.list_locks()? {
        let Some(object) = crate::repo::parse_object_name(name.rsplit('/').next().unwrap_or("")) else { continue };
        if l.kind() == LockKind::Shared && session_of(&object, &l) != own_session && liveness(&l) != Liveness::Dead {
            out.push(super::describe(&l));
        }
    }
    Ok(out)
}

/// How long a staging file must have gone unwritten before prune removes
/// it: a put writes its staging file in one go and renames it at once, so
/// one this old belongs to a put that was killed (or to a process
/// suspended so long that its put will fail, harmlessly, at the rename).
pub const STAGING_STALE_AFTER: std::time::Duration = std::time::Duration::from_secs(15 * 60);

/// Removes staging files of killed puts: listed before a lock listing that
/// found no writer (so no put of a writer can be running on them), and
/// untouched for [`STAGING_STALE_AFTER`] (which also covers the puts of
/// lock objects themselves, which precede their lock).
fn remove_staging(repo: &Repository, staging: &[Staging], report: &mut PruneReport) -> Result<()> {
    let now = std::time::SystemTime::now();
    for f in staging {
        if now.duration_since(f.modified).unwrap_or_default() < STAGING_STALE_AFTER {
            continue;
        }
        repo.backend.delete_staging(&f.name)?;
        report.staging_removed += 1;
        report.staging_bytes_removed += f.size;
    }
    Ok(())
}

/// The packs named by index objects other than `ours` (this run's): those
/// written since the plan, by writers that finished meanwhile. Loads only
/// those objects; one that vanished meanwhile names nothing.
fn foreign_packs(repo: &Repository, ours: &HashSet<IndexId>) -> Result<HashSet<PackId>> {
    let mut out = HashSet::new();
    for id in repo.list_ids("index")?.into_iter().map(IndexId) {
        if ours.contains(&id) {
            continue;
        }
        match repo.load_index_full(&id) {
            Ok(ix) => out.extend(ix.packs.iter().map(|p| p.id).chain(ix.marked.iter().map(|m| m.pack.id))),
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(e.context("prune: reading an index object written meanwhile")),
        }
    }
    Ok(out)
}

/// Deletes an object; one already gone is fine (a killed run may have
/// deleted it before).
fn delete_if_present(repo: &Repository, name: &str) -> Result<()> {
    match repo.backend.delete(name) {
        Err(e) if e.kind() != ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}
