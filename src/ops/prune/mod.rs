//! `prune`: reclaims the space of blobs that no snapshot uses, while
//! backups keep running, by two-phase deletion
//! (format-spec/10-write-order.md, rules 7 and 11).
//!
//! [`plan`] reads: the locks, the index, the snapshots (whose blobs go into
//! a set on disk), the pack listing. It decides for every pack: keep it,
//! repack it, mark it for deletion, leave a mark pending, unmark it (a
//! snapshot uses it again), or delete it (marked by a run whose writers
//! have all finished, and still unused). [`run`] carries that out in the
//! write order of the spec, and deletes its own marks at once when no
//! writer was running.

mod ripe;
mod run;
mod usage;

pub use ripe::{ripe_runs, Blocker};
pub use run::{run, PruneReport};

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::format::index::{RunId, RunRecord};
use crate::format::lock::Lock;
use crate::id::{BlobId, IndexId, PackId, SnapshotId};
use crate::index::scratch::BlobSet;
use crate::pack;
use crate::repo::Repository;
use usage::{CLAIMED, IN_MARKED, USED};

/// How much unused space prune leaves in partly used packs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum MaxUnused {
    /// Unused bytes at most this share (0–100) of the packs kept.
    Percent(f64),
    Bytes(u64),
    /// Never repack.
    Unlimited,
}

impl MaxUnused {
    /// `5%`, `10M`, `2G`, `0`, `unlimited`.
    pub fn parse(s: &str) -> Result<Self> {
        let bad = || {
            Error::invalid(format!(
                "invalid --max-unused {s:?}: use a percentage (5%), a size (500M, 2G) or `unlimited`"
            ))
        };
        let t = s.trim();
        if t == "unlimited" {
            return Ok(MaxUnused::Unlimited);
        }
        if let Some(p) = t.strip_suffix('%') {
            let v: f64 = p.trim().parse().map_err(|_| bad())?;
            if !(0.0..100.0).contains(&v) {
                return Err(bad());
            }
            return Ok(MaxUnused::Percent(v));
        }
        let (num, mult) = match t.char_indices().last() {
            Some((i, c)) if c.is_ascii_alphabetic() => {
                let m: u64 = match c.to_ascii_uppercase() {
                    'K' => 1 << 10,
                    'M' => 1 << 20,
                    'G' => 1 << 30,
                    'T' => 1 << 40,
                    'B' => 1,
                    _ => return Err(bad()),
                };
                (&t[..i], m)
            }
            _ => (t, 1),
        };
        let n: u64 = num.trim().parse().map_err(|_| bad())?;
        Ok(MaxUnused::Bytes(n.checked_mul(mult).ok_or_else(bad)?))
    }

    fn allowed(self, used: u64) -> u64 {
        match self {
            MaxUnused::Percent(p) => (used as f64 * p / (100.0 - p)) as u64,
            MaxUnused::Bytes(b) => b,
            MaxUnused::Unlimited => u64::MAX,
        }
    }
}

#[derive(Clone, Debug)]
pub struct PruneOptions {
    pub max_unused: MaxUnused,
    /// Where the used-blob set lives on disk (default: the system's temp dir).
    pub scratch_dir: Option<PathBuf>,
    /// Bytes of the used-blob set kept in memory before it moves to disk.
    pub scratch_memory: usize,
}

impl Default for PruneOptions {
    fn default() -> Self {
        Self {
            max_unused: MaxUnused::Percent(5.0),
            scratch_dir: None,
            scratch_memory: crate::index::scratch::DEFAULT_MEMORY,
        }
    }
}

/// What becomes of one pack.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PackAction {
    /// Every blob is used: stays as it is.
    Keep,
    /// Partly used: its used blobs go to new packs, then it is marked.
    Repack,
    /// No blob is used (or it is in no index): marked by this run.
    Mark,
    /// Marked earlier, and a writer that may use it is still running.
    Pending,
    /// Marked earlier, but a snapshot uses it: live again.
    Unmark,
    /// Marked by a run whose writers have all gone, and unused: deleted.
    Delete,
}

#[derive(Clone, Debug, Serialize)]
pub struct PackPlan {
    pub id: PackId,
    pub action: PackAction,
    /// Stored size (from the listing).
    pub size: u64,
    pub blobs: u32,
    pub used_blobs: u32,
    /// Sealed bytes of the used blobs.
    pub used_bytes: u64,
    /// Whether some index object names it.
    pub indexed: bool,
    /// The run whose mark it carries (Pending; Repack/Mark get this run's).
    #[serde(skip)]
    pub run: Option<RunId>,
    #[serde(skip)]
    ordinal: u32,
}

/// Sums per action.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Totals {
    pub keep: (u64, u64),
    pub repack: (u64, u64),
    pub mark: (u64, u64),
    pub pending: (u64, u64),
    pub unmark: (u64, u64),
    pub delete: (u64, u64),
    /// Bytes the repacks write again.
    pub repack_used_bytes: u64,
}

/// The whole decision, before anything is written.
#[derive(Serialize)]
pub struct PrunePlan {
    pub run: String,
    #[serde(skip)]
    pub run_id: RunId,
    pub snapshots: usize,
    #[serde(skip)]
    pub snapshot_ids: HashSet<SnapshotId>,
    pub used_blobs: u64,
    pub index_objects: Vec<IndexId>,
    pub packs: Vec<PackPlan>,
    pub totals: Totals,
    /// Writers whose running keeps earlier marks from being deleted.
    pub waiting_for: Vec<String>,
    /// Earlier runs' records that pending marks still need.
    #[serde(skip)]
    pub records: Vec<RunRecord>,
    #[serde(skip)]
    pub used: BlobSet,
    /// Seconds spent per phase, for `-v`.
    pub timings: Vec<(&'static str, f64)>,
    /// PostgreSQL WAL that no kept base backup needs (format-spec/13-wal.md, rule P1).
    pub wal: WalPlan,
}

/// The WAL part of a prune plan.
#[derive(Debug, Default, Serialize)]
pub struct WalPlan {
    /// Object names to delete.
    pub delete: Vec<String>,
    pub bytes: u64,
    /// Per system id, the first WAL segment kept.
    pub kept_from: Vec<(u64, String)>,
}

/// Records how long each phase took.
pub(crate) struct Stopwatch(std::time::Instant, Vec<(&'static str, f64)>);

impl Stopwatch {
    pub(crate) fn new() -> Self {
        Self(std::time::Instant::now(), Vec::new())
    }

    pub(crate) fn lap(&mut self, what: &'static str) {
        self.1.push((what, self.0.elapsed().as_secs_f64()));
        self.0 = std::time::Instant::now();
    }

    pub(crate) fn into_laps(self) -> Vec<(&'static str, f64)> {
        self.1
    }
}

impl PrunePlan {
    /// Nothing to write or delete.
    pub fn is_noop(&self) -> bool {
        self.packs.iter().all(|p| matches!(p.action, PackAction::Keep | PackAction::Pending))
            && self.packs.iter().filter_map(|p| p.run).all(|r| self.records.iter().any(|x| x.run == r))
    }

    pub fn action(&self, id: &PackId) -> Option<&PackPlan> {
        self.packs.binary_search_by(|p| p.id.cmp(id)).ok().map(|i| &self.packs[i])
    }
}

fn describe(l: &Lock) -> String {
    format!("{} (pid {} on {}, lock time {})", l.operation, l.pid, l.hostname, l.time)
}

#[derive(Default)]
struct Stat {
    /// Every run that marked it (a killed prune can leave two marks).
    marked: Vec<RunId>,
    has_entries: bool,
    blobs: u32,
    used: u32,
    used_bytes: u64,
    ordinal: u32,
}

/// Decides what to do; reads only. `own` is the session of the caller's
/// lock, which is not a writer to wait for.
pub fn plan(repo: &Repository, opts: &PruneOptions) -> Result<PrunePlan> {
    let now = chrono::Utc::now().timestamp();
    let mut sw = Stopwatch::new();
    // Locks before the index and the snapshots: whatever the writers seen
    // here wrote before finishing is then visible below.
    let locks: Vec<([u8; 32], Lock)> = repo
        .list_locks()?
        .into_iter()
        .filter_map(|(name, l)| crate::repo::parse_object_name(name.rsplit('/').next().unwrap_or("")).map(|o| (o, l)))
        .collect();
    // Snapshots before the index: every index object a listed snapshot
    // needs was stored before it (rule 3), so the sync and the listing
    // below see its trees. Index objects of snapshots written later are
    // harmless extras (their writers are handled at step 5).
    let snapshots = repo.snapshots_strict()?;
    let mut index_objects: Vec<IndexId> = repo.list_ids("index")?.into_iter().map(IndexId).collect();
    index_objects.sort();
    // The cache absorbs every object listed (and perhaps newer ones): the
    // index objects this run writes name the packs of all of them, and the
    // cache is updated in place on the premise that it knows their entries.
    repo.sync_cache()?;
    if let Some((id, why)) = repo.damaged_indexes().first() {
        return Err(Error::invalid(format!(
            "index/{id} is damaged ({why}); prune needs a sound index: run `cairn repair index` first"
        )));
    }
    sw.lap("list locks, snapshots, index");
    let mut used = BlobSet::with_memory(opts.scratch_dir.as_deref(), opts.scratch_memory)?;
    usage::mark_used(repo, &snapshots, &mut used)?;
    sw.lap("walk snapshots");
    let (listed, _) = pack::list_packs(&repo.backend)?;
    sw.lap("list packs");
    let sizes: HashMap<PackId, u64> = listed.into_iter().collect();

    // One pass over the index: per pack, how much is used. A used blob is
    // claimed by the first live pack that holds it; other copies count as
    // unused there.
    let mut stats: HashMap<PackId, Stat> = HashMap::new();
    let mut records: HashMap<RunId, RunRecord> = HashMap::new();
    let mut next_ordinal = 0u32;
    // Every pack some index object marks (the cache absorbed every object
    // listed above): a pack's live record and its mark may come in
    // different objects, in either order.
    let marked_packs = repo.cache.marked_packs()?;
    used.with_writer(|w| {
        for id in &index_objects {
            let ix = repo.load_index_full(id)?;
            for r in ix.runs {
                records.insert(r.run, r);
            }
            // The entries to judge, in key order: the used set is a B-tree
            // on disk, and ids are random. The outcome does not depend on
            // the order (a used blob is claimed by whichever live pack
            // comes first; a marked pack counts every used blob it holds).
            let mut work: Vec<(BlobId, PackId, bool, u32)> = Vec::new();
            let items =
                ix.packs.into_iter().map(|p| (None, p)).chain(ix.marked.into_iter().map(|m| (Some(m.run), m.pack)));
            for (mark, p) in items {
                let st = stats.entry(p.id).or_insert_with(|| {
                    next_ordinal += 1;
                    Stat { ordinal: next_ordinal, ..Default::default() }
                });
                if let Some(run) = mark.filter(|r| !st.marked.contains(r)) {
                    st.marked.push(run);
                }
                if st.has_entries || p.blobs.is_empty() {
                    continue;
                }
                st.has_entries = true;
                st.blobs += p.blobs.len() as u32;
                // A pack that any index object marks is marked, whichever
                // record brought its entries (rule 11: the safe reading):
                // its blobs are never claimed as if it were kept.
                let marked = mark.is_some() || marked_packs.contains(&p.id);
                let shares = crate::format::pack::stored_shares(&p.blobs);
                work.extend(
                    p.blobs
                        .iter()
                        .zip(shares)
                        .map(|(e, share)| (BlobId { kind: e.kind, id: e.id }, p.id, marked, share)),
                );
            }
            work.sort_unstable_by_key(|w| u128::from_be_bytes(w.0.id[..16].try_into().expect("16 bytes")));
            for (b, pack, mark, length) in work {
                let st = stats.get_mut(&pack).expect("stat made above");
                let v = w.get(&b)?;
                let mine = CLAIMED + st.ordinal;
                let counts = match (mark, v) {
                    (_, 0) => false,
                    (true, USED) => {
                        w.set(&b, IN_MARKED)?;
                        true
                    }
                    (true, _) => true,
                    (false, USED | IN_MARKED) => {
                        w.set(&b, mine)?;
                        true
                    }
                    (false, v) => v == mine,
                };
                if counts {
                    st.used += 1;
                    st.used_bytes += length as u64;
                }
            }
        }
        Ok(())
    })?;
    sw.lap("read index");
    let missing = used.count(USED)?;
    if missing > 0 {
        return Err(Error::corrupt(format!(
            "{missing} blob(s) that snapshots use are in no pack of the index; prune stops (run `cairn check`)"
        )));
    }
    let mut absent: Vec<&PackId> = stats.keys().filter(|p| !sizes.contains_key(p)).collect();
    absent.sort();
    if let Some(p) = absent.first() {
        return Err(Error::corrupt(format!(
            "pack {p} is named by the index but missing ({} such); prune stops (run `cairn check`, then `cairn repair index`)",
            absent.len()
        )));
    }

    let (ripe, blockers) = ripe_runs(&records, &locks, now, crate::repo::lock::liveness);
    let run_id: RunId = rand::random();
    let mut packs: Vec<PackPlan> = Vec::with_capacity(sizes.len());
    for (id, size) in &sizes {
        let st = stats.remove(id);
        let indexed = st.is_some();
        let st = st.unwrap_or_default();
        let all_used = st.has_entries && st.used == st.blobs;
        // Marked: acted on only when every run that marked it is ripe.
        let unripe = st.marked.iter().find(|r| !ripe.contains(*r)).copied();
        let action = match (st.marked.is_empty(), unripe) {
            (false, Some(_)) => PackAction::Pending,
            (false, None) if st.used > 0 => PackAction::Unmark,
            (false, None) => PackAction::Delete,
            (true, _) if !indexed || st.used == 0 => PackAction::Mark,
            (true, _) if all_used => PackAction::Keep,
            (true, _) => PackAction::Repack, // narrowed below
        };
        let run = match action {
            PackAction::Pending => unripe,
            _ => None,
        };
        packs.push(PackPlan {
            id: *id,
            action,
            size: *size,
            blobs: st.blobs,
            used_blobs: st.used,
            used_bytes: st.used_bytes,
            indexed,
            run,
            ordinal: st.ordinal,
        });
    }
    packs.sort_by_key(|p| p.id);

    // Repack the partly used packs with the most waste until what is left
    // unused fits within --max-unused.
    let kept_used: u64 = packs
        .iter()
        .filter(|p| matches!(p.action, PackAction::Keep | PackAction::Repack | PackAction::Unmark))
        .map(|p| p.used_bytes)
        .sum();
    let mut unused: u64 = packs
        .iter()
        .filter(|p| matches!(p.action, PackAction::Repack | PackAction::Unmark))
        .map(|p| p.size.saturating_sub(p.used_bytes))
        .sum();
    let allowed = opts.max_unused.allowed(kept_used);
    let mut partial: Vec<usize> = (0..packs.len()).filter(|&i| packs[i].action == PackAction::Repack).collect();
    partial.sort_by(|&a, &b| {
        let ratio = |p: &PackPlan| p.used_bytes as f64 / p.size.max(1) as f64;
        ratio(&packs[a]).total_cmp(&ratio(&packs[b]))
    });
    for i in partial {
        if unused > allowed {
            unused -= packs[i].size.saturating_sub(packs[i].used_bytes);
        } else {
            packs[i].action = PackAction::Keep;
        }
    }

    let mut totals = Totals::default();
    for p in &packs {
        let slot = match p.action {
            PackAction::Keep => &mut totals.keep,
            PackAction::Repack => {
                totals.repack_used_bytes += p.used_bytes;
                &mut totals.repack
            }
            PackAction::Mark => &mut totals.mark,
            PackAction::Pending => &mut totals.pending,
            PackAction::Unmark => &mut totals.unmark,
            PackAction::Delete => &mut totals.delete,
        };
        slot.0 += 1;
        slot.1 += p.size;
    }
    let pending_runs: HashSet<RunId> = packs.iter().filter_map(|p| p.run).collect();
    let mut waiting_for: Vec<String> =
        blockers.iter().filter(|b| pending_runs.contains(&b.run)).map(|b| describe(&b.lock)).collect();
    waiting_for.sort();
    waiting_for.dedup();
    let records = records.into_values().filter(|r| pending_runs.contains(&r.run)).collect();
    Ok(PrunePlan {
        run: hex::encode(run_id),
        run_id,
        snapshots: snapshots.len(),
        snapshot_ids: snapshots.iter().map(|(id, _)| *id).collect(),
        used_blobs: used.len()?,
        index_objects,
        packs,
        totals,
        waiting_for,
        records,
        used,
        wal: {
            let archive = crate::ops::pg::archive::Archive {
                backend: &repo.backend,
                key: &repo.key,
                level: repo.config.compression,
            };
            let r = crate::ops::pg::retention::plan(&archive, &snapshots)?;
            WalPlan { delete: r.delete, bytes: r.bytes, kept_from: r.kept_from }
        },
        timings: {
            sw.lap("decide");
            sw.into_laps()
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_unused_parses_like_restic() {
        assert_eq!(MaxUnused::parse("5%").unwrap(), MaxUnused::Percent(5.0));
        assert_eq!(MaxUnused::parse("0").unwrap(), MaxUnused::Bytes(0));
        assert_eq!(MaxUnused::parse("500M").unwrap(), MaxUnused::Bytes(500 << 20));
        assert_eq!(MaxUnused::parse("2g").unwrap(), MaxUnused::Bytes(2 << 30));
        assert_eq!(MaxUnused::parse("unlimited").unwrap(), MaxUnused::Unlimited);
        for bad in ["", "-1", "5%%", "100%", "x", "5Q", "99999999999999T"] {
            let e = MaxUnused::parse(bad).unwrap_err().to_string();
            assert!(e.contains("--max-unused"), "{bad:?}: {e}");
        }
        // 5% of the total: unused / (used + unused) <= 5%.
        assert_eq!(MaxUnused::Percent(5.0).allowed(95_000), 5_000);
    }
}
