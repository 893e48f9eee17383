//! What a night would cost if each changed chunk were stored as a zstd
//! delta against the old bytes it replaces (a design not built: README,
//! "Next: deltas against what a changed region replaces"), measured on real
//! chunk boundaries rather than as a whole-file patch.
//!
//! For each pair (the night before, the night) and each average chunk size:
//! both are cut with cairn's chunker (the same seed), a chunk of the night
//! that the night before also has is deduplicated, and each other chunk is
//! compressed twice at the same level: alone (what a store of whole chunks
//! pays) and with a window of the old stream as zstd's dictionary (its
//! base). The base is found the way a backup could find it: the chunk is cut
//! again in 4 KiB pieces (an eighth of smaller chunks), a piece that the old stream also has (an anchor)
//! says where the chunk sits in the old stream, and the base is the old
//! bytes there, a quarter of the chunk's length wider on each side. Printed
//! per pair and size: new chunks, bytes stored whole and as deltas, the
//! base bytes a backup would read back, and the compression time of each.
//!
//! `cargo bench --bench delta_estimate` with `DELTA_PAIRS=old:new,...`
//! (default: the dumps scripts/bench-dump.sh leaves in
//! /var/tmp/bench-dump/dumps), `DELTA_AVG_KIB` (default `4,64,512`),
//! `DELTA_LEVEL` (default 3). Run as a test (no `--bench`), it measures a
//! small synthetic pair.

use std::collections::HashMap;
use std::time::Instant;

use cairn::chunker::Chunker;
use cairn::format::config::ChunkerParams;

/// Bytes of a chunk's ids in a repository (pack header, index, list).
const IDS_PER_CHUNK: u64 = 104;

fn chunker(avg: u32) -> Chunker {
    Chunker::new(&ChunkerParams { min_size: (avg / 4).max(256), avg_size: avg, max_size: avg * 4, seed: 5 })
        .expect("chunker")
}

/// `(offset, length)` of each chunk of `data`.
fn cut(c: &Chunker, data: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < data.len() {
        let n = c.cut(&data[at..]).max(1);
        out.push((at, n));
        at += n;
    }
    out
}

fn id(b: &[u8]) -> [u8; 32] {
    *blake3::hash(b).as_bytes()
}

#[derive(Default)]
struct Night {
    chunks: u64,
    new_chunks: u64,
    anchored: u64,
    whole: u64,
    delta: u64,
    base_read: u64,
    whole_s: f64,
    delta_s: f64,
    /// Runs of new chunks, each compressed as one with the old bytes
    /// between its unchanged neighbours as dictionary ([`between`]).
    runs: u64,
    between: u64,
    between_read: u64,
}

fn night(old: &[u8], new: &[u8], avg: u32, level: i32) -> Night {
    let big = chunker(avg);
    // Pieces for anchors: 4 KiB, or an eighth of smaller chunks.
    let fine = chunker((avg / 8).clamp(512, 4096));
    let old_chunks = cut(&big, old);
    // Each old chunk's place (its first, if it repeats).
    let old_at: HashMap<[u8; 32], (usize, usize)> =
        old_chunks.iter().rev().map(|&(o, n)| (id(&old[o..o + n]), (o, n))).collect();
    let mut stored: HashMap<[u8; 32], ()> = old_at.keys().map(|k| (*k, ())).collect();
    let anchors: HashMap<[u8; 32], usize> =
        cut(&fine, old).iter().rev().map(|&(o, n)| (id(&old[o..o + n]), o)).collect();
    let mut r = Night::default();
    // The run of new chunks under way: its start in `new`, and where the
    // unchanged chunk before it ended in `old` (0 at the start).
    let mut run: Option<usize> = None;
    let mut old_end = 0usize;
    let new_chunks = cut(&big, new);
    for (o, n) in new_chunks.iter().copied() {
        let chunk = &new[o..o + n];
        r.chunks += 1;
        let cid = id(chunk);
        if stored.insert(cid, ()).is_some() {
            if let Some(start) = run.take() {
                let next = old_at.get(&cid).map(|&(oo, _)| oo);
                between(&mut r, old, &new[start..o], old_end, next, level);
            }
            if let Some(&(oo, on)) = old_at.get(&cid) {
                old_end = oo + on;
            }
            continue;
        }
        run.get_or_insert(o);
        r.new_chunks += 1;
        let t = Instant::now();
        r.whole += zstd::bulk::compress(chunk, level).expect("zstd").len() as u64;
        r.whole_s += t.elapsed().as_secs_f64();
        // Where the chunk sits in the old stream: its first piece found there.
        let at = cut(&fine, chunk)
            .iter()
            .find_map(|&(po, pn)| anchors.get(&id(&chunk[po..po + pn])).map(|&old_at| old_at as i64 - po as i64));
        let t = Instant::now();
        let size = match at {
            Some(at) => {
                r.anchored += 1;
                let margin = (n / 4) as i64;
                let from = (at - margin).clamp(0, old.len() as i64) as usize;
                let to = (at + n as i64 + margin).clamp(0, old.len() as i64) as usize;
                let base = &old[from..to.max(from)];
                r.base_read += base.len() as u64;
                let mut z = zstd::bulk::Compressor::with_dictionary(level, base).expect("zstd dictionary");
                z.compress(chunk).expect("zstd").len()
            }
            None => zstd::bulk::compress(chunk, level).expect("zstd").len(),
        };
        r.delta += size as u64;
        r.delta_s += t.elapsed().as_secs_f64();
    }
    if let Some(start) = run {
        between(&mut r, old, &new[start..], old_end, Some(old.len()), level);
    }
    r
}

/// Design point (a): a run of new chunks compressed as one, with the old
/// bytes between the unchanged chunks around it as dictionary (what the
/// parent snapshot's list alone locates: no fingerprints, no anchors), when
/// that stretch is in order and at most 4x the run plus 64 KiB; else alone.
fn between(r: &mut Night, old: &[u8], run: &[u8], old_end: usize, next: Option<usize>, level: i32) {
    r.runs += 1;
    let base = match next {
        Some(next) if next >= old_end && next - old_end <= 4 * run.len() + (64 << 10) => &old[old_end..next],
        _ => &[][..],
    };
    r.between_read += base.len() as u64;
    let size = if base.is_empty() {
        zstd::bulk::compress(run, level).expect("zstd").len()
    } else {
        let mut z = zstd::bulk::Compressor::with_dictionary(level, base).expect("zstd dictionary");
        z.compress(run).expect("zstd").len()
    };
    r.between += size as u64;
}

fn report(name: &str, old: &[u8], new: &[u8], sizes: &[u32], level: i32) {
    for &avg in sizes {
        let r = night(old, new, avg, level);
        let ids = r.new_chunks * IDS_PER_CHUNK;
        println!(
            "delta_estimate pair={name} avg_kib={} chunks={} new={} anchored={} whole_bytes={} delta_bytes={} \
             ids_bytes={} base_read_bytes={} whole_s={:.2} delta_s={:.2} runs={} between_bytes={} \
             between_read_bytes={}",
            avg / 1024,
            r.chunks,
            r.new_chunks,
            r.anchored,
            r.whole,
            r.delta,
            ids,
            r.base_read,
            r.whole_s,
            r.delta_s,
            r.runs,
            r.between,
            r.between_read,
        );
    }
}

/// A small synthetic pair: lines of text, then the same with some lines
/// changed, some removed and some appended.
fn synthetic() -> (Vec<u8>, Vec<u8>) {
    let mut old = Vec::new();
    let mut new = Vec::new();
    for i in 0..40_000u64 {
        let line = format!("{i}\tcustomer {}\t{{\"city\": \"c{}\", \"n\": {}}}\n", i * 7919 % 10007, i % 97, i * 31);
        old.extend_from_slice(line.as_bytes());
        match i % 5003 {
            0 => new.extend_from_slice(format!("{i}\tchanged {}\n", i * 3).as_bytes()),
            1 => {}
            _ => new.extend_from_slice(line.as_bytes()),
        }
    }
    new.extend_from_slice(b"appended row\n".repeat(100).as_slice());
    (old, new)
}

fn main() {
    let benching = std::env::args().any(|a| a == "--bench");
    let level: i32 = std::env::var("DELTA_LEVEL").ok().and_then(|v| v.parse().ok()).unwrap_or(3);
    if !benching {
        let (old, new) = synthetic();
        let r = night(&old, &new, 65536, level);
        assert!(r.new_chunks > 0 && r.new_chunks < r.chunks, "some chunks change, not all");
        assert!(r.anchored > 0, "changed chunks find their place in the old stream");
        assert!(r.delta < r.whole, "a delta is smaller than the chunk alone: {} vs {}", r.delta, r.whole);
        assert!(r.runs > 0 && r.between < r.whole, "runs between unchanged chunks: {} vs {}", r.between, r.whole);
        report("synthetic", &old, &new, &[4096, 65536], level);
        return;
    }
    let sizes: Vec<u32> = std::env::var("DELTA_AVG_KIB")
        .unwrap_or_else(|_| "4,64,512".to_string())
        .split(',')
        .filter_map(|s| s.trim().parse::<u32>().ok())
        .map(|k| k * 1024)
        .collect();
    let d = "/var/tmp/bench-dump/dumps";
    let pairs = std::env::var("DELTA_PAIRS")
        .unwrap_or_else(|_| format!("{d}/night1.sql:{d}/night2.sql,{d}/night1.dump:{d}/night2.dump"));
    for pair in pairs.split(',') {
        let Some((a, b)) = pair.split_once(':') else { continue };
        let (Ok(old), Ok(new)) = (std::fs::read(a), std::fs::read(b)) else {
            eprintln!("delta_estimate: cannot read {a} or {b} (run scripts/bench-dump.sh first)");
            continue;
        };
        let name = std::path::Path::new(b).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        report(&name, &old, &new, &sizes, level);
    }
}
