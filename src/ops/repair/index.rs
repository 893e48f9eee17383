//! `repair index`: rebuild the index from the packs themselves.
//!
//! Every pack's header is read (or, with `read_data`, the whole pack, which
//! is then checked against its name and every blob authenticated). Packs
//! that pass are indexed afresh. A pack that does not pass is salvaged: its
//! frames are walked ([`crate::pack::salvage`]), every blob that still
//! authenticates and is not already held by a good pack is stored again in
//! a new pack, and only then is the damaged pack deleted.
//!
//! Order (format-spec/10-write-order.md, rule 10): new index objects for the
//! good packs; salvaged packs and their index objects; then the old index
//! objects are deleted; then the damaged packs.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use serde::Serialize;

use crate::error::{Error, ErrorKind, Result};
use crate::format::index::IndexPack;
use crate::format::pack::{PackEntry, TRAILER_LEN};
use crate::id::{IndexId, PackId};
use crate::pack::{self, salvage};
use crate::repo::{content_id, Repository};
use crate::saver::{worker_count, Saver};

use crate::index::ENTRIES_PER_OBJECT;

/// A pack that failed its scan, and why.
#[derive(Clone, Debug, Serialize)]
pub struct DamagedPack {
    pub id: PackId,
    pub size: u64,
    pub reason: String,
}

/// What `repair index` will do.
#[derive(Debug, Default, Serialize)]
pub struct IndexRepairPlan {
    /// Whether every pack was read whole (`--read-data`), not only its header.
    pub read_data: bool,
    /// Packs that passed, with their entries: indexed afresh.
    #[serde(skip)]
    pub good: Vec<IndexPack>,
    pub good_packs: usize,
    pub blobs: u64,
    /// Packs salvaged blob by blob, then deleted.
    pub damaged: Vec<DamagedPack>,
    /// Packs that the old index names but that do not exist.
    pub missing: Vec<PackId>,
    /// Good packs that no old index named (e.g. left by an interrupted
    /// backup): they are indexed.
    pub unindexed: Vec<PackId>,
    /// Old index objects (all of them, damaged ones included): deleted once
    /// the new ones are stored.
    pub old_indexes: Vec<IndexId>,
    /// Old index objects that did not load.
    pub damaged_indexes: Vec<(IndexId, String)>,
}

impl IndexRepairPlan {
    /// Whether the repository's index is already exactly right (nothing to
    /// salvage, nothing missing or unindexed, no damaged index object).
    pub fn is_clean(&self) -> bool {
        self.damaged.is_empty()
            && self.missing.is_empty()
            && self.unindexed.is_empty()
            && self.damaged_indexes.is_empty()
    }
}

/// What was done.
#[derive(Debug, Default, Serialize)]
pub struct IndexRepairReport {
    pub indexes_written: usize,
    pub salvaged_blobs: u64,
    /// Salvaged blobs that a good pack already held (not stored again).
    pub salvaged_duplicates: u64,
    /// Bytes of damaged packs that held nothing recoverable.
    pub lost_bytes: u64,
    pub packs_written: u64,
    pub packs_deleted: usize,
    pub indexes_deleted: usize,
}

/// Scans the repository and plans the rebuild. Writes nothing.
pub fn plan(repo: &Repository, read_data: bool) -> Result<IndexRepairPlan> {
    let mut plan = IndexRepairPlan { read_data, ..Default::default() };
    // The old index, as far as it loads.
    let mut indexed: HashSet<PackId> = HashSet::new();
    for id in repo.list_ids("index")? {
        let id = IndexId(id);
        plan.old_indexes.push(id);
        match repo.load_index(&id) {
            Ok(packs) => indexed.extend(packs.into_iter().map(|p| p.id)),
            Err(e) if is_damage(&e) => plan.damaged_indexes.push((id, e.to_string())),
            Err(e) => return Err(e),
        }
    }
    plan.old_indexes.sort();
    let (packs, _) = pack::list_packs(&repo.backend)?;
    let present: HashSet<PackId> = packs.iter().map(|p| p.0).collect();
    plan.missing = indexed.difference(&present).copied().collect();
    plan.missing.sort();

    // Scan every pack, in parallel.
    let next = AtomicUsize::new(0);
    let out = Mutex::new(Vec::<(PackId, u64, Result<Vec<PackEntry>>)>::new());
    std::thread::scope(|s| {
        for _ in 0..worker_count().max(repo.backend.connections()) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(&(id, size)) = packs.get(i) else { return };
                let r = scan_pack(repo, &id, read_data);
                out.lock().unwrap_or_else(|p| p.into_inner()).push((id, size, r));
            });
        }
    });
    let mut scanned = out.into_inner().unwrap_or_else(|p| p.into_inner());
    scanned.sort_by_key(|x| x.0);
    for (id, size, r) in scanned {
        match r {
            Ok(entries) => {
                if !indexed.contains(&id) {
                    plan.unindexed.push(id);
                }
                plan.blobs += entries.len() as u64;
                plan.good.push(IndexPack { id, blobs: entries });
            }
            Err(e) if is_damage(&e) => plan.damaged.push(DamagedPack { id, size, reason: e.to_string() }),
            // Gone since the listing: it was not ours to index.
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    plan.good_packs = plan.good.len();
    Ok(plan)
}

fn is_damage(e: &Error) -> bool {
    matches!(e.kind(), ErrorKind::Corrupt | ErrorKind::Crypto)
}

/// A pack's entries, if it passes: its header opens and points inside it;
/// with `read_data`, also its bytes match its name and every blob opens.
fn scan_pack(repo: &Repository, id: &PackId, read_data: bool) -> Result<Vec<PackEntry>> {
    if !read_data {
        return pack::read_header(&repo.backend, &repo.key.enc, id);
    }
    let bytes = repo.backend.get(&pack::object_name(id))?;
    if content_id(&bytes) != id.0 {
        return Err(Error::corrupt(format!("pack {id} does not match its name")));
    }
    let entries = pack::header_from_bytes(&repo.key.enc, id, &bytes)?;
    if entries.iter().any(|e| e.end() + TRAILER_LEN as u64 > bytes.len() as u64) {
        return Err(Error::corrupt(format!("pack {id}: header points past the end")));
    }
    pack::each_blob_in_pack_bytes(&repo.key, &bytes, &entries, |e, plain| {
        plain.map(drop).map_err(|err| err.context(format!("pack {id}: blob {}", hex::encode(e.id))))
    })?;
    Ok(entries)
}

/// Carries out the plan. The caller holds the exclusive lock.
pub fn run(repo: &Repository, plan: &IndexRepairPlan) -> Result<IndexRepairReport> {
    let mut report = IndexRepairReport::default();
    // 1. The good packs, indexed afresh; the cache then holds exactly them,
    //    so salvage stores only what no good pack has.
    repo.cache.clear()?;
    let mut new_indexes: HashSet<IndexId> = HashSet::new();
    let mut batch: Vec<IndexPack> = Vec::new();
    let mut entries = 0;
    for p in &plan.good {
        entries += p.blobs.len();
        batch.push(p.clone());
        if entries >= ENTRIES_PER_OBJECT {
            new_indexes.insert(repo.save_index(std::mem::take(&mut batch))?);
            entries = 0;
        }
    }
    if !batch.is_empty() {
        new_indexes.insert(repo.save_index(batch)?);
    }
    // 2. Salvage: blob by blob, into new packs (and their index objects).
    if !plan.damaged.is_empty() {
        let stored = std::thread::scope(|scope| -> Result<_> {
            let mut saver = Saver::start(scope, repo)?;
            let res = (|| -> Result<()> {
                for d in &plan.damaged {
                    let bytes = match repo.backend.get(&pack::object_name(&d.id)) {
                        Ok(b) => b,
                        Err(e) if e.kind() == ErrorKind::NotFound => continue,
                        Err(e) => return Err(e),
                    };
                    let stats = salvage::salvage(&repo.key, &bytes, |b| {
                        report.salvaged_blobs += 1;
                        if !saver.save(b.kind, b.id, b.plain)? {
                            report.salvaged_duplicates += 1;
                        }
                        Ok(())
                    })?;
                    report.lost_bytes += stats.lost_bytes;
                }
                Ok(())
            })();
            let stored = saver.finish();
            res?;
            stored
        })?;
        report.packs_written = stored.packs;
        new_indexes.extend(stored.indexes);
    }
    report.indexes_written = new_indexes.len();
    crate::steps::reached("repair:replacements-stored");
    // 3. Only now: the old index objects, then the damaged packs.
    for id in &plan.old_indexes {
        if !new_indexes.contains(id) {
            delete_if_present(repo, &format!("index/{id}"))?;
            report.indexes_deleted += 1;
        }
    }
    repo.backend.sync_deletes("index")?;
    for d in &plan.damaged {
        delete_if_present(repo, &pack::object_name(&d.id))?;
        report.packs_deleted += 1;
    }
    repo.sync_cache()?;
    Ok(report)
}

fn delete_if_present(repo: &Repository, name: &str) -> Result<()> {
    match repo.backend.delete(name) {
        Err(e) if e.kind() != ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}
