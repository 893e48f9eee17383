//! Dedup lookups against the index cache as the repository grows
//! (issue 18: "dedup lookups at 10^8 entries run at >= 50% of their rate at
//! 10^6, and a backup's RSS stays flat").
//!
//! For each size N in `INDEX_SIZES` (default `1000000,10000000`), a fresh
//! on-disk cache is filled the way a sync fills it (index objects of 64
//! packs x 512 blobs, random ids, absorbed in one transaction in key
//! order), then timed:
//! - hits: lookups of ids that are present, in random order (a nightly
//!   dump whose chunks are mostly known);
//! - misses: lookups of fresh random ids (new data);
//!
//! each a B-tree lookup, and then the lookups a backup makes
//! ([`cairn::index::Known`]: the filter first, a loaded pack's keys, then
//! the B-tree):
//! - night: a night's dump after the first, in the order it comes: the
//!   stored ids from a random place on, in the order they were stored,
//!   one in 50 left out (a deleted row) and one new id after every 7
//!   (changed rows);
//! - new: fresh ids only (a first night, or new data);
//! - scattered: present ids in random order (the worst case: no locality);
//!
//! and the cache file's bytes per entry and the process's peak RSS are
//! printed, one line per size, so that sizes compare within one run.
//! The caches live under `CAIRN_BENCH_DIR` (default
//! /var/tmp/cairn-bench-index) and are removed after each size.
//!
//! `cargo bench --bench index_scale` (or `scripts/bench-index.sh`);
//! `cargo test --benches` runs it once at 20,000 entries.

use std::time::Instant;

use cairn::format::index::{Index, IndexPack};
use cairn::format::pack::PackEntry;
use cairn::id::{BlobId, BlobKind, IndexId, PackId, RepoId};
use cairn::index::{IndexCache, Known};

const BLOBS_PER_PACK: usize = 512;
const PACKS_PER_INDEX: usize = 64;
const LOOKUPS: usize = 400_000;

/// A fast deterministic generator (xorshift64*), so that the ids of a run
/// can be regenerated for the hit lookups without keeping them in memory.
struct Ids(u64);

impl Ids {
    fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn id(&mut self) -> [u8; 32] {
        let mut out = [0u8; 32];
        for c in out.chunks_mut(8) {
            c.copy_from_slice(&self.next_u64().to_le_bytes());
        }
        out
    }
}

/// The id of blob number `i` of a run seeded with `seed`.
fn nth_id(seed: u64, i: u64) -> [u8; 32] {
    *blake3::hash(&[seed.to_le_bytes(), i.to_le_bytes()].concat()).as_bytes()
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn run(n: u64, dir: &std::path::Path, lookups: usize) {
    let root = dir.join(format!("n{n}"));
    let _ = std::fs::remove_dir_all(&root);
    let mut cache = IndexCache::open(Some(&root), &RepoId([7; 32])).expect("open cache");
    let seed = 42;
    let t = Instant::now();
    let mut i = 0u64;
    let mut pack_no = 0u64;
    // One absorption, as a sync of a fresh cache does.
    let mut absorber = cache.begin_absorb().expect("begin");
    while i < n {
        let mut packs = Vec::with_capacity(PACKS_PER_INDEX);
        for _ in 0..PACKS_PER_INDEX {
            if i >= n {
                break;
            }
            pack_no += 1;
            let mut blobs = Vec::with_capacity(BLOBS_PER_PACK);
            let mut offset = 8u32;
            while blobs.len() < BLOBS_PER_PACK && i < n {
                let length = 16_000 + (i % 1000) as u32;
                blobs.push(PackEntry {
                    kind: BlobKind::Data,
                    id: nth_id(seed, i),
                    offset,
                    length,
                    inner: None,
                    raw_length: length,
                });
                offset += length + 5;
                i += 1;
            }
            packs.push(IndexPack { id: PackId(nth_id(seed ^ 1, pack_no)), blobs });
        }
        let ix = Index { packs, ..Default::default() };
        let id = IndexId(nth_id(seed ^ 2, pack_no));
        absorber.add(&id, &ix).expect("add index");
    }
    absorber.finish().expect("commit");
    let build = t.elapsed().as_secs_f64();
    if std::env::var_os("COMPACT").is_some() {
        cache.compact().expect("compact");
    }
    // The cache file (its name carries its layout's number) and its filter.
    let bytes: u64 = std::fs::read_dir(root.join(RepoId([7; 32]).to_hex()))
        .expect("cache dir")
        .filter_map(|e| e.ok())
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.ends_with(".redb") || name.ends_with(".filter")
        })
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum();
    assert!(bytes > 0, "no cache file found");

    // Looked up as a later backup does: a process that opens the file.
    drop(cache);
    let cache = IndexCache::open(Some(&root), &RepoId([7; 32])).expect("open cache again");
    let mut pick = Ids(0x9E37_79B9_7F4A_7C15);
    let reader = cache.reader().expect("reader");
    let t = Instant::now();
    let mut found = 0usize;
    for _ in 0..lookups {
        let k = pick.next_u64() % n;
        found += reader.get(&BlobId { kind: BlobKind::Data, id: nth_id(seed, k) }).expect("lookup").is_some() as usize;
    }
    let hits = lookups as f64 / t.elapsed().as_secs_f64();
    assert_eq!(found, lookups, "every present id is found");
    let t = Instant::now();
    let mut found = 0usize;
    for _ in 0..lookups {
        found += reader.get(&BlobId { kind: BlobKind::Data, id: pick.id() }).expect("lookup").is_some() as usize;
    }
    let misses = lookups as f64 / t.elapsed().as_secs_f64();
    assert_eq!(found, 0, "no fresh id is found");
    drop(reader);

    // A backup's lookups.
    let known = Known::new(cache.reader().expect("reader"));
    let t = Instant::now();
    let (mut found, mut fresh) = (0usize, 0usize);
    let mut k = pick.next_u64() % n;
    for i in 0..lookups {
        let present = i % 8 != 7;
        let id = if present {
            k = (k + 1 + (pick.next_u64() % 50 == 0) as u64) % n;
            nth_id(seed, k)
        } else {
            fresh += 1;
            pick.id()
        };
        found += known.has_live(&BlobId { kind: BlobKind::Data, id }).expect("lookup") as usize;
    }
    let night = lookups as f64 / t.elapsed().as_secs_f64();
    assert_eq!(found, lookups - fresh, "every present id is found, no fresh one");
    let stats = known.stats();
    let t = Instant::now();
    for _ in 0..lookups {
        assert!(!known.has_live(&BlobId { kind: BlobKind::Data, id: pick.id() }).expect("lookup"));
    }
    let new = lookups as f64 / t.elapsed().as_secs_f64();
    let known = Known::new(cache.reader().expect("reader"));
    let t = Instant::now();
    for _ in 0..lookups / 4 {
        let k = pick.next_u64() % n;
        assert!(known.has_live(&BlobId { kind: BlobKind::Data, id: nth_id(seed, k) }).expect("lookup"));
    }
    let scattered = (lookups / 4) as f64 / t.elapsed().as_secs_f64();
    println!(
        "index_scale n={n} build_s={build:.1} cache_bytes_per_entry={:.1} hits_per_s={hits:.0} misses_per_s={misses:.0} night_per_s={night:.0} new_per_s={new:.0} scattered_per_s={scattered:.0} night_looked_up={:.3} peak_rss_mib={:.1}",
        bytes as f64 / n as f64,
        stats.looked_up as f64 / lookups as f64,
        peak_rss_kib() as f64 / 1024.0
    );
    drop(known);
    drop(cache);
    let _ = std::fs::remove_dir_all(&root);
}

fn main() {
    let benching = std::env::args().any(|a| a == "--bench");
    let dir = std::path::PathBuf::from(
        std::env::var("CAIRN_BENCH_DIR").unwrap_or_else(|_| "/var/tmp/cairn-bench-index".to_string()),
    );
    if !benching {
        let tmp = tempfile::tempdir().expect("tempdir");
        run(20_000, tmp.path(), 20_000);
        return;
    }
    let sizes = std::env::var("INDEX_SIZES").unwrap_or_else(|_| "1000000,10000000".to_string());
    for n in sizes.split(',').filter_map(|s| s.trim().parse::<u64>().ok()) {
        run(n, &dir, LOOKUPS);
    }
}
