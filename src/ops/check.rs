//! `check`: verify the repository's structure and, with `read_data`, every
//! byte. Problems name the damaged object, and the snapshots and files that
//! it affects.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Mutex;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::format::pack::{PackEntry, TRAILER_LEN};
use crate::id::{BlobId, IndexId, PackId, SnapshotId, TreeId};
use crate::pack;
use crate::pack::verify::PackVerifier;
use crate::repo::{keys, Repository};

mod walk;

/// Which packs `check` reads whole.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ReadData {
    /// None: structure only.
    None,
    /// Every pack (`--read-data`).
    All,
    /// Group `n` (1-based) of `m` (`--read-data-subset n/m`): the packs
    /// whose id, read as a little-endian u32 from its first four bytes, is
    /// `n - 1` modulo `m`. The m groups together are every pack.
    Group { n: u32, m: u32 },
    /// A random sample of this fraction of the packs, at least one
    /// (`--read-data-subset 10%`).
    Fraction(f64),
}

impl ReadData {
    /// Parses `n/m`, `day/m` (n = days since 1970-01-01 modulo m, plus 1:
    /// a nightly run covers every pack in m nights) or `x%`.
    pub fn parse_subset(s: &str, days_since_epoch: i64) -> Result<Self> {
        let bad = || {
            Error::invalid(format!(
                "--read-data-subset {s:?}: use n/m (1 <= n <= m), day/m, or a percentage such as 10%"
            ))
        };
        if let Some(p) = s.strip_suffix('%') {
            let x: f64 = p.trim().parse().map_err(|_| bad())?;
            if !(x > 0.0 && x <= 100.0) {
                return Err(bad());
            }
            return Ok(ReadData::Fraction(x / 100.0));
        }
        let (n, m) = s.split_once('/').ok_or_else(bad)?;
        let m: u32 = m.trim().parse().map_err(|_| bad())?;
        if m == 0 {
            return Err(bad());
        }
        let n: u32 = if n.trim() == "day" {
            (days_since_epoch.rem_euclid(m as i64) + 1) as u32
        } else {
            n.trim().parse().map_err(|_| bad())?
        };
        if n == 0 || n > m {
            return Err(bad());
        }
        Ok(ReadData::Group { n, m })
    }

    /// The packs to read, out of `all`.
    pub fn select<'a>(&self, all: &[&'a PackId]) -> Vec<&'a PackId> {
        match *self {
            ReadData::None => Vec::new(),
            ReadData::All => all.to_vec(),
            ReadData::Group { n, m } => all
                .iter()
                .copied()
                .filter(|id| u32::from_le_bytes([id.0[0], id.0[1], id.0[2], id.0[3]]) % m == n - 1)
                .collect(),
            ReadData::Fraction(f) => {
                if all.is_empty() {
                    return Vec::new();
                }
                let k = ((all.len() as f64 * f).ceil() as usize).clamp(1, all.len());
                let mut v = all.to_vec();
                rand::seq::SliceRandom::shuffle(v.as_mut_slice(), &mut rand::thread_rng());
                v.truncate(k);
                v
            }
        }
    }
}

#[derive(Debug, Default, Serialize)]
pub struct CheckReport {
    pub snapshots: usize,
    pub trees: usize,
    /// Chunk lists walked (format 3), each once.
    pub lists: usize,
    pub packs: usize,
    /// Packs read whole (all, a subset, or none).
    pub packs_read: usize,
    pub blobs_read: u64,
    /// Damage: each line names the object.
    pub problems: Vec<String>,
    /// The damaged (or missing) objects, by name: `keys/<id>`, `index/<id>`,
    /// `snapshots/<id>`, `data/<xx>/<id>`.
    pub damaged_objects: std::collections::BTreeSet<String>,
    /// Damaged blobs that another pack also holds: (blob, good copies).
    pub other_copies: Vec<(String, Vec<PackId>)>,
    /// Snapshot files that damaged or missing data affects.
    pub affected: Vec<String>,
    /// Harmless findings (e.g. unindexed packs from an interrupted backup).
    pub notes: Vec<String>,
    /// Packs that a prune marked for deletion and has not deleted yet
    /// (format-spec/10-write-order.md rule 11), and their bytes.
    pub marked_packs: usize,
    /// Staging files that killed puts left (local directory), and bytes.
    pub staging_files: usize,
    pub staging_bytes: u64,
    pub marked_bytes: u64,
    /// Archived PostgreSQL WAL files (format-spec/13-wal.md), and how many
    /// were read and verified (with --read-data).
    pub wal_files: usize,
    pub wal_read: usize,
}

/// Packs queued ahead of the readers, with their index entries: with the
/// readers' blobs in hand, this bounds check's memory whatever the
/// repository's and the packs' sizes.
const PACKS_QUEUED: usize = 8;

/// Checks the repository. Memory holds the pack list, which index object
/// names which pack, and the set of trees seen; blob lookups go through the
/// redb cache (synced with the index objects at open), and index entries are
/// streamed one index object at a time.
pub fn check(repo: &Repository, read_data: ReadData) -> Result<CheckReport> {
    check_with(repo, read_data, crate::index::scratch::DEFAULT_MEMORY)
}

/// [`check`], with the set of the chunks the snapshots name kept in memory
/// up to about `scratch_memory` bytes (20 per chunk) and in a file beside
/// the cache beyond (`check --scratch-memory`, as prune's).
pub fn check_with(repo: &Repository, read_data: ReadData, scratch_memory: usize) -> Result<CheckReport> {
    let mut r = CheckReport::default();
    for (id, kf) in keys::list_key_files(&repo.backend)? {
        if let Err(e) = kf {
            r.problems.push(format!("key {id}: {e}"));
            r.damaged_objects.insert(format!("keys/{id}"));
        }
    }
    // Packs present.
    let (packs, odd) = pack::list_packs(&repo.backend)?;
    let sizes: HashMap<PackId, u64> = packs.into_iter().collect();
    r.notes.extend(odd.into_iter().map(|name| format!("{name} is not a pack name; ignored")));
    r.packs = sizes.len();
    // Index objects, one at a time: each entry must point into an existing
    // pack. Only which index names which pack is kept.
    let mut named_by: HashMap<PackId, Vec<IndexId>> = HashMap::new();
    let mut indexes: Vec<IndexId> = repo.list_ids("index")?.into_iter().map(IndexId).collect();
    indexes.sort();
    let mut index_damaged = false;
    let mut absent: HashSet<PackId> = HashSet::new();
    for id in &indexes {
        let packs = match repo.load_index(id) {
            Ok(p) => p,
            Err(e) => {
                r.problems.push(format!("index/{id}: {e}"));
                r.damaged_objects.insert(format!("index/{id}"));
                index_damaged = true;
                continue;
            }
        };
        for p in packs {
            named_by.entry(p.id).or_default().push(*id);
            let Some(&size) = sizes.get(&p.id) else {
                r.problems.push(format!("index/{id} names pack {} which does not exist", p.id));
                r.damaged_objects.insert(pack::object_name(&p.id));
                absent.insert(p.id);
                continue;
            };
            for e in &p.blobs {
                if e.end() + TRAILER_LEN as u64 > size {
                    r.damaged_objects.insert(pack::object_name(&p.id));
                    r.problems.push(format!(
                        "index/{id}: blob {} lies beyond the end of pack {}",
                        hex::encode(e.id),
                        p.id
                    ));
                }
            }
        }
    }
    for id in sizes.keys() {
        if !named_by.contains_key(id) {
            r.notes.push(format!("pack {id} is not in any index (left by an interrupted backup; harmless)"));
        }
    }
    // The cache holds exactly the index objects that load; if one that it
    // absorbed earlier is damaged now, rebuild it without that one.
    if index_damaged {
        repo.rebuild_cache()?;
    }
    // Prune's marks still pending: not damage, but worth knowing.
    for p in repo.cache.marked_packs()? {
        r.marked_packs += 1;
        r.marked_bytes += sizes.get(&p).copied().unwrap_or(0);
    }
    if r.marked_packs > 0 {
        r.notes.push(format!(
            "{} pack(s), {} bytes, are marked for deletion by prune: the next prune deletes them once the backups that \
             ran beside the marking prune have ended (or unmarks them if a snapshot uses them)",
            r.marked_packs, r.marked_bytes
        ));
    }
    // Staging files of puts that were killed: not damage (no name refers to
    // them), but space that the next prune with no backup running frees.
    for f in repo.backend.staging_files()? {
        r.staging_files += 1;
        r.staging_bytes += f.size;
    }
    if r.staging_files > 0 {
        r.notes.push(format!(
            "{} staging file(s), {} bytes, left by interrupted writes or being written (`<name>#<n>` files); a prune \
             removes those untouched for 15 minutes while no backup runs",
            r.staging_files, r.staging_bytes
        ));
    }
    let index = repo.cache.reader()?;
    // Snapshots and the trees they reach.
    let mut snaps: Vec<(SnapshotId, crate::format::snapshot::Snapshot)> = Vec::new();
    for id in repo.list_ids("snapshots")? {
        let id = SnapshotId(id);
        match repo.fetch_snapshot(&id) {
            Ok(s) => snaps.push((id, s)),
            Err(e) => {
                r.problems.push(format!("snapshot {id}: {e}"));
                r.damaged_objects.insert(format!("snapshots/{id}"));
            }
        }
    }
    r.snapshots = snaps.len();
    let mut missing: HashSet<BlobId> = HashSet::new();
    walk::check_snapshots(
        &walk::Walk { repo, index: &index, absent: &absent, snaps: &snaps, scratch_memory },
        &mut r,
        &mut missing,
    )?;
    // Every byte.
    let mut damaged: HashSet<BlobId> = HashSet::new();
    if read_data != ReadData::None {
        let mut all: Vec<&PackId> = sizes.keys().collect();
        all.sort();
        let chosen = read_data.select(&all);
        r.packs_read = chosen.len();
        repo.progress.start(chosen.iter().filter_map(|p| sizes.get(*p)).sum());
        let (probs, bad, bad_packs, n) = read_packs(repo, &indexes, &named_by, &chosen, &sizes)?;
        r.problems.extend(probs);
        r.damaged_objects.extend(bad_packs.iter().map(pack::object_name));
        r.blobs_read = n;
        r.other_copies = other_copies(repo, &indexes, &bad, &bad_packs)?;
        damaged = bad;
    }
    check_wal(repo, read_data != ReadData::None, &snaps, &mut r)?;
    // Name what the damage affects, and whether another copy exists.
    let lost: HashSet<BlobId> = damaged.iter().chain(&missing).copied().collect();
    if !lost.is_empty() {
        for (b, packs) in &r.other_copies {
            let list: Vec<String> = packs.iter().map(|p| p.short()).collect();
            r.notes.push(format!(
                "damaged blob {b} has another copy in pack(s) {} (`cairn repair index --read-data` drops the damaged one)",
                list.join(", ")
            ));
        }
        for (sid, s) in &snaps {
            affected(repo, sid, s.tree, Path::new("/"), &lost, &mut r.affected);
        }
    }
    r.problems.sort();
    r.problems.dedup();
    Ok(r)
}

/// The WAL archive: every object's name, each system's record, the WAL
/// every base backup needs to be consistent, and with `read` every byte.
fn check_wal(
    repo: &Repository,
    read: bool,
    snaps: &[(crate::id::SnapshotId, crate::format::snapshot::Snapshot)],
    r: &mut CheckReport,
) -> Result<()> {
    use crate::ops::pg::archive::{self, Archive};
    use crate::pg::wal::WalFile;
    let a = Archive { backend: &repo.backend, key: &repo.key, level: repo.config.compression };
    let listed = repo.backend.list("wal")?;
    let mut per_system: std::collections::BTreeMap<u64, Vec<WalFile>> = Default::default();
    for (name, _) in &listed {
        let sys = name.strip_prefix("wal/").and_then(|n| n.split('/').next()).and_then(|s| s.parse::<u64>().ok());
        let file = sys.and_then(|s| archive::parse_object_name(s, name).map(|f| (s, f)));
        match (sys, file) {
            (Some(s), Some((_, f))) => per_system.entry(s).or_default().push(f),
            (Some(s), None) if *name == archive::record_name(s) => {
                per_system.entry(s).or_default();
            }
            _ => r.notes.push(format!("{name} is not a WAL archive object (ignored)")),
        }
    }
    for (sys, files) in &per_system {
        if let Err(e) = a.record(*sys) {
            r.problems.push(format!("{}: {e}", archive::record_name(*sys)));
            r.damaged_objects.insert(archive::record_name(*sys));
        }
        r.wal_files += files.len();
        if read {
            for f in files {
                let name = archive::object_name(*sys, f);
                let res = repo.backend.get(&name).and_then(|b| a.open(*sys, f, &b).map(|_| ()));
                if let Err(e) = res {
                    r.problems.push(format!("{name}: {e}"));
                    r.damaged_objects.insert(name);
                }
                r.wal_read += 1;
            }
        }
    }
    // A base backup whose own WAL is missing cannot be restored.
    for (id, s) in snaps {
        let Some(pg) = s.pg.as_ref() else { continue };
        let (Some(start), Some(stop)) = (WalFile::parse(&pg.start_wal), WalFile::parse(&pg.stop_wal)) else {
            r.problems.push(format!("snapshot {}: its WAL names do not parse", id.short()));
            continue;
        };
        let have = per_system.get(&pg.system_id);
        let (Some(x), Some(y)) = (start.segno(pg.segment_size), stop.segno(pg.segment_size)) else { continue };
        for n in x..=y {
            let f = WalFile::segment(start.timeline(), n, pg.segment_size);
            if !have.is_some_and(|v| v.contains(&f)) {
                r.problems.push(format!(
                    "base backup {} needs WAL segment {f}, which is not in the archive (it cannot be restored)",
                    id.short()
                ));
            }
        }
    }
    Ok(())
}

type ReadOutcome = (Vec<String>, HashSet<BlobId>, HashSet<PackId>, u64);

/// Reads the chosen packs whole, in parallel. One thread streams the index
/// objects and queues each chosen pack with its expected entries; the
/// readers verify as the bytes stream in. Memory: a blob per reader, the
/// queued packs' index entries, and one index object at a time.
fn read_packs(
    repo: &Repository,
    indexes: &[IndexId],
    named_by: &HashMap<PackId, Vec<IndexId>>,
    chosen: &[&PackId],
    sizes: &HashMap<PackId, u64>,
) -> Result<ReadOutcome> {
    let chosen: HashSet<PackId> = chosen.iter().map(|p| **p).collect();
    let out = Mutex::new((Vec::<String>::new(), HashSet::<BlobId>::new(), HashSet::<PackId>::new(), 0u64));
    let (tx, rx) = crossbeam_channel::bounded::<(PackId, Vec<PackEntry>)>(PACKS_QUEUED);
    let feed = std::thread::scope(|s| -> Result<()> {
        for _ in 0..crate::saver::worker_count().max(repo.backend.connections()) {
            let rx = rx.clone();
            let out = &out;
            s.spawn(move || {
                for (id, expected) in rx.iter() {
                    let (probs, bad, n) = read_pack(repo, &id, expected);
                    repo.progress.add(sizes.get(&id).copied().unwrap_or_default());
                    let mut o = out.lock().unwrap_or_else(|p| p.into_inner());
                    if !probs.is_empty() {
                        o.2.insert(id);
                    }
                    o.0.extend(probs);
                    o.1.extend(bad);
                    o.3 += n;
                }
            });
        }
        drop(rx);
        let mut queued: HashSet<PackId> = HashSet::new();
        for id in indexes {
            let Ok(packs) = repo.load_index(id) else { continue }; // reported above
            for p in packs {
                if !chosen.contains(&p.id) || !queued.insert(p.id) {
                    continue;
                }
                let mut expected = p.blobs;
                // Rare: another index object names the same pack too.
                for other in named_by.get(&p.id).into_iter().flatten().filter(|o| *o != id) {
                    if let Ok(more) = repo.load_index(other) {
                        expected.extend(more.into_iter().filter(|q| q.id == p.id).flat_map(|q| q.blobs));
                    }
                }
                if tx.send((p.id, expected)).is_err() {
                    return Ok(());
                }
            }
        }
        // Packs that no index names are read too (header and name).
        let mut rest: Vec<&PackId> = chosen.iter().filter(|p| !queued.contains(p)).collect();
        rest.sort();
        for p in rest {
            if tx.send((*p, Vec::new())).is_err() {
                break;
            }
        }
        drop(tx);
        Ok(())
    });
    feed?;
    Ok(out.into_inner().unwrap_or_else(|p| p.into_inner()))
}

/// For each damaged blob, the packs that read clean (or were not read)
/// and also hold it. Streams the index objects once more; only runs when
/// something is damaged.
fn other_copies(
    repo: &Repository,
    indexes: &[IndexId],
    damaged: &HashSet<BlobId>,
    bad_packs: &HashSet<PackId>,
) -> Result<Vec<(String, Vec<PackId>)>> {
    if damaged.is_empty() {
        return Ok(Vec::new());
    }
    let mut copies: HashMap<BlobId, Vec<PackId>> = HashMap::new();
    for id in indexes {
        let Ok(packs) = repo.load_index(id) else { continue };
        for p in packs.iter().filter(|p| !bad_packs.contains(&p.id)) {
            for e in &p.blobs {
                let b = BlobId { kind: e.kind, id: e.id };
                if damaged.contains(&b) {
                    copies.entry(b).or_default().push(p.id);
                }
            }
        }
    }
    let mut v: Vec<(String, Vec<PackId>)> = copies.into_iter().map(|(b, p)| (hex::encode(b.id), p)).collect();
    v.sort();
    Ok(v)
}

/// Reads one pack and checks it against its name, its header and the
/// index, as its bytes stream in ([`PackVerifier`]: memory holds a blob,
/// not the pack).
fn read_pack(repo: &Repository, id: &PackId, expected: Vec<PackEntry>) -> (Vec<String>, Vec<BlobId>, u64) {
    let all: Vec<BlobId> = expected.iter().map(|e| BlobId { kind: e.kind, id: e.id }).collect();
    let mut v = PackVerifier::new(&repo.key, *id, expected);
    match repo.backend.get_streamed(&pack::object_name(id), |piece| v.feed(piece)) {
        Ok(_) => {
            let verdict = v.finish();
            (verdict.problems, verdict.bad, verdict.blobs_read)
        }
        // Not read (missing, or the read failed part way): every blob is
        // in doubt, and the error says why.
        Err(e) => (vec![format!("pack {id}: {e}")], all, 0),
    }
}

/// Files (and trees) of a snapshot that need a lost blob.
fn affected(
    repo: &Repository,
    sid: &SnapshotId,
    tree: TreeId,
    path: &Path,
    lost: &HashSet<BlobId>,
    out: &mut Vec<String>,
) {
    if lost.contains(&BlobId::tree(tree)) {
        out.push(format!("snapshot {}: {} (directory listing lost)", sid.short(), path.display()));
        return;
    }
    let Ok(nodes) = repo.load_tree(&tree) else {
        return;
    };
    for n in nodes {
        let p = path.join(OsStr::from_bytes(&n.name));
        let hit = repo.content_blobs(&n.content).map_or(true, |blobs| blobs.iter().any(|b| lost.contains(b)));
        if hit {
            out.push(format!("snapshot {}: {}", sid.short(), p.display()));
        }
        if let Some(t) = n.subtree() {
            affected(repo, sid, t, &p, lost, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subsets_parse_and_bad_ones_are_refused() {
        assert_eq!(ReadData::parse_subset("2/7", 0).unwrap(), ReadData::Group { n: 2, m: 7 });
        assert_eq!(ReadData::parse_subset("day/7", 15).unwrap(), ReadData::Group { n: 2, m: 7 });
        assert_eq!(ReadData::parse_subset("day/7", 20).unwrap(), ReadData::Group { n: 7, m: 7 });
        assert_eq!(ReadData::parse_subset("10%", 0).unwrap(), ReadData::Fraction(0.1));
        for bad in ["0/3", "4/3", "1/0", "x/3", "3", "0%", "101%", "-5%", "", "day/0"] {
            assert!(ReadData::parse_subset(bad, 0).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn groups_partition_the_packs_and_fractions_round_up() {
        let ids: Vec<PackId> = (0u32..200).map(|i| PackId(*blake3::hash(&i.to_le_bytes()).as_bytes())).collect();
        let all: Vec<&PackId> = ids.iter().collect();
        let mut seen = std::collections::HashSet::new();
        for n in 1..=7 {
            for id in (ReadData::Group { n, m: 7 }).select(&all) {
                assert!(seen.insert(*id), "pack {id} in two groups");
            }
        }
        assert_eq!(seen.len(), ids.len(), "the 7 groups together are every pack");
        assert_eq!(ReadData::Fraction(0.1).select(&all).len(), 20);
        assert_eq!(ReadData::Fraction(0.001).select(&all).len(), 1);
        assert_eq!(ReadData::All.select(&all).len(), 200);
        assert!(ReadData::None.select(&all).is_empty());
    }
}
