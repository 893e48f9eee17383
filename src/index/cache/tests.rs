use super::*;
use crate::format::index::{Index, IndexPack, MarkedPack};
use crate::format::pack::PackEntry;
use std::collections::HashMap;

fn sample() -> Index {
    Index {
        packs: vec![IndexPack {
            id: PackId([9; 32]),
            blobs: vec![PackEntry {
                kind: BlobKind::Data,
                id: [1; 32],
                offset: 13,
                length: 50,
                inner: None,
                raw_length: 40,
            }],
        }],
        ..Default::default()
    }
}

#[test]
fn marked_packs_are_read_but_not_reused() {
    let c = IndexCache::in_memory().unwrap();
    let blob = BlobId { kind: BlobKind::Data, id: [1; 32] };
    let other = BlobId { kind: BlobKind::Data, id: [2; 32] };
    let entry = |id| PackEntry { kind: BlobKind::Data, id, offset: 0, length: 9, inner: None, raw_length: 9 };
    let marked = Index {
        marked: vec![MarkedPack {
            run: [3; 16],
            pack: IndexPack { id: PackId([7; 32]), blobs: vec![entry([1; 32]), entry([2; 32])] },
        }],
        ..Default::default()
    };
    // The live copy (pack 9) stays the one read; blob 2 has only the marked copy.
    c.add_indexes(&[(IndexId([2; 32]), sample()), (IndexId([4; 32]), marked)]).unwrap();
    let r = c.reader().unwrap();
    assert_eq!(r.get(&blob).unwrap().unwrap().pack, PackId([9; 32]));
    assert_eq!(r.get_live(&blob).unwrap().unwrap().pack, PackId([9; 32]));
    assert_eq!(r.get(&other).unwrap().unwrap().pack, PackId([7; 32]));
    assert!(r.get_live(&other).unwrap().is_none());
    assert_eq!(c.marked_packs().unwrap(), HashSet::from([PackId([7; 32])]));

    // Prune deletes pack 7 and replaces index object 4 by 8: its entries
    // are ignored from then on, without a rebuild.
    let deleted = HashSet::from([PackId([7; 32])]);
    let sound = c.apply_prune(&[IndexId([4; 32])], &[(IndexId([8; 32]), 0)], &[], &deleted, |_| Ok(false)).unwrap();
    assert!(sound);
    let r = c.reader().unwrap();
    assert!(r.get(&other).unwrap().is_none());
    assert_eq!(r.get(&blob).unwrap().unwrap().pack, PackId([9; 32]));
    assert_eq!(c.len().unwrap(), 1);
    let mut seen = Vec::new();
    c.for_each(|b, _| {
        seen.push(b);
        Ok(())
    })
    .unwrap();
    assert_eq!(seen, vec![blob]);
    assert!(c.marked_packs().unwrap().is_empty());
    let files = c.known_index_files().unwrap();
    assert!(files.contains(&IndexId([8; 32])) && !files.contains(&IndexId([4; 32])));
    // A used blob whose cached copy was deleted: the cache cannot say
    // where its other copy is, so it asks for a rebuild.
    let sound = c.apply_prune(&[], &[], &[], &HashSet::from([PackId([9; 32])]), |_| Ok(true)).unwrap();
    assert!(!sound);
    c.clear().unwrap();
    assert!(c.marked_packs().unwrap().is_empty());
}

#[test]
fn add_lookup_clear_and_persist() {
    let dir = tempfile::tempdir().unwrap();
    let repo = RepoId([5; 32]);
    {
        let c = IndexCache::open(Some(dir.path()), &repo).unwrap();
        c.add_indexes(&[(IndexId([2; 32]), sample())]).unwrap();
        let r = c.reader().unwrap();
        let loc = r.get(&BlobId { kind: BlobKind::Data, id: [1; 32] }).unwrap().unwrap();
        assert_eq!(loc, Location { pack: PackId([9; 32]), offset: 13, length: 50, inner: None, raw_length: 40 });
        assert!(!r.contains(&BlobId { kind: BlobKind::Tree, id: [1; 32] }).unwrap());
    }
    let c = IndexCache::open(Some(dir.path()), &repo).unwrap();
    assert!(c.known_index_files().unwrap().contains(&IndexId([2; 32])));
    c.clear().unwrap();
    assert!(c.is_empty().unwrap());
    assert!(c.known_index_files().unwrap().is_empty());
}

/// Blobs of many packs, absorbed in several batches, across a reopen
/// and a clear: each is found in its own pack (ordinals map back).
#[test]
fn pack_ordinals_map_back_across_batches_reopen_and_clear() {
    let dir = tempfile::tempdir().unwrap();
    let repo = RepoId([4; 32]);
    let index = |batch: u8| Index {
        packs: (0..5u8)
            .map(|p| IndexPack {
                id: PackId([batch * 10 + p; 32]),
                blobs: (0..20u8)
                    .map(|b| PackEntry {
                        kind: BlobKind::Data,
                        id: [
                            batch, p, b, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
                            1, 1, 1,
                        ],
                        offset: u32::from(b) * 100,
                        length: 90,
                        inner: None,
                        raw_length: 80,
                    })
                    .collect(),
            })
            .collect(),
        ..Default::default()
    };
    let expect = |c: &IndexCache, batches: &[u8]| {
        let r = c.reader().unwrap();
        for &batch in batches {
            for p in index(batch).packs {
                for e in &p.blobs {
                    let loc = r.get(&BlobId { kind: e.kind, id: e.id }).unwrap().unwrap();
                    assert_eq!((loc.pack, loc.offset), (p.id, e.offset));
                    assert_eq!(c.get(&BlobId { kind: e.kind, id: e.id }).unwrap(), Some(loc));
                }
            }
        }
    };
    {
        let c = IndexCache::open(Some(dir.path()), &repo).unwrap();
        c.add_indexes(&[(IndexId([1; 32]), index(1)), (IndexId([2; 32]), index(2))]).unwrap();
        c.add_indexes(&[(IndexId([3; 32]), index(3)), (IndexId([2; 32]), index(2))]).unwrap();
        expect(&c, &[1, 2, 3]);
    }
    let c = IndexCache::open(Some(dir.path()), &repo).unwrap();
    expect(&c, &[1, 2, 3]);
    assert_eq!(c.len().unwrap(), 300);
    c.clear().unwrap();
    c.add_indexes(&[(IndexId([3; 32]), index(3))]).unwrap();
    expect(&c, &[3]);
    assert!(c
        .reader()
        .unwrap()
        .get(&BlobId { kind: BlobKind::Data, id: index(1).packs[0].blobs[0].id })
        .unwrap()
        .is_none());
}

/// A cache file under this layout's name whose tables have another
/// layout (blob values with the whole pack id) is started again, not
/// misread; the unnumbered file of older cairns is removed.
#[test]
fn cache_of_an_older_layout_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let repo = RepoId([8; 32]);
    let p = dir.path().join(repo.to_hex());
    std::fs::create_dir_all(&p).unwrap();
    std::fs::write(p.join("index.redb"), b"an older cairn's cache").unwrap();
    std::fs::write(p.join("index-3.redb"), b"a cache in redb 2's file format").unwrap();
    {
        const OLD: TableDefinition<[u8; 33], [u8; 44]> = TableDefinition::new("blobs");
        let db = Database::create(p.join(FILE_NAME)).unwrap();
        let tx = db.begin_write().unwrap();
        tx.open_table(OLD).unwrap().insert([1; 33], [2; 44]).unwrap();
        tx.open_table(INDEX_FILES).unwrap().insert([3; 32], 1).unwrap();
        tx.commit().unwrap();
    }
    let c = IndexCache::open(Some(dir.path()), &repo).unwrap();
    assert!(c.is_empty().unwrap());
    assert!(c.known_index_files().unwrap().is_empty(), "the old cache's index objects are not known");
    c.add_indexes(&[(IndexId([2; 32]), sample())]).unwrap();
    assert_eq!(c.reader().unwrap().get(&BlobId { kind: BlobKind::Data, id: [1; 32] }).unwrap().unwrap().offset, 13);
    assert!(!p.join("index.redb").exists(), "the older cairn's file is gone");
    assert!(!p.join("index-3.redb").exists(), "the file of redb 2's format is gone");
}

/// A panic in redb while the cache is in use (a broken invariant: debug
/// builds assert them) is one error naming the file, which is removed when
/// the cache is dropped; a corruption error does the same; other errors
/// leave the file alone. The next open starts a fresh file.
#[test]
fn a_failing_cache_is_reported_and_removed() {
    let dir = tempfile::tempdir().unwrap();
    let repo = RepoId([3; 32]);
    let file = dir.path().join(repo.to_hex()).join(FILE_NAME);
    let c = IndexCache::open(Some(dir.path()), &repo).unwrap();
    c.add_indexes(&[(IndexId([2; 32]), sample())]).unwrap();
    let e = c.guard("testing", || -> Result<()> { Err(Error::new(ErrorKind::Io, "not about the file")) }).unwrap_err();
    assert_eq!(e.to_string(), "not about the file");
    assert!(!c.damaged.load(Ordering::Relaxed));
    let e = c.guard("testing", || -> Result<()> { panic!("assertion failed: page allocated twice") }).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("redb failed while testing (assertion failed: page allocated twice)"), "{msg}");
    assert!(msg.contains(&file.display().to_string()) && msg.contains("rebuilds it"), "{msg}");
    assert!(!panic_is_caught(), "the guard is left");
    assert!(file.exists(), "removed only when the cache is dropped");
    drop(c);
    assert!(!file.exists());
    let c = IndexCache::open(Some(dir.path()), &repo).unwrap();
    assert!(c.is_empty().unwrap());
    c.add_indexes(&[(IndexId([2; 32]), sample())]).unwrap();
    let e = c
        .guard("testing", || -> Result<()> { Err(redb::StorageError::Corrupted("bad page".into()).into()) })
        .unwrap_err();
    assert!(e.to_string().contains("bad page") && e.to_string().contains("rebuilds it"), "{e}");
    drop(c);
    assert!(!file.exists());
}

#[test]
fn damaged_cache_file_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let repo = RepoId([6; 32]);
    let p = dir.path().join(repo.to_hex());
    std::fs::create_dir_all(&p).unwrap();
    std::fs::write(p.join(FILE_NAME), b"garbage garbage garbage").unwrap();
    let c = IndexCache::open(Some(dir.path()), &repo).unwrap();
    assert!(c.is_empty().unwrap());
}

/// What the writer child absorbs in step `i`: its index object's id
/// carries `i`, and its packs and blob ids are derived from it.
fn kill_index(i: u64) -> (IndexId, Index) {
    let mut id = [0xab; 32];
    id[..8].copy_from_slice(&i.to_le_bytes());
    let packs = (0..3u64)
        .map(|p| {
            let pack = *blake3::hash(&[i.to_le_bytes(), p.to_le_bytes()].concat()).as_bytes();
            let n = 50 + (i * 37 + p * 11) % 400;
            IndexPack {
                id: PackId(pack),
                blobs: (0..n)
                    .map(|b| PackEntry {
                        kind: BlobKind::Data,
                        id: *blake3::hash(&[pack.as_slice(), &b.to_le_bytes()].concat()).as_bytes(),
                        offset: b as u32 * 100,
                        length: 90,
                        inner: (b % 3 == 0).then_some(b as u32),
                        raw_length: 80 + p as u32,
                    })
                    .collect(),
            }
        })
        .collect();
    (IndexId(id), Index { packs, ..Default::default() })
}

/// The step an absorbed index object's id names.
fn kill_step(id: &IndexId) -> u64 {
    u64::from_le_bytes(id.0[..8].try_into().unwrap())
}

const KILL_REPO: RepoId = RepoId([0x4b; 32]);

/// The writer that `killed_writers_leave_a_cache_that_opens_whole` runs
/// and kills: it absorbs index objects, caches trees and snapshots of
/// varied sizes, applies prunes and clears, as backups and prunes do, and
/// never stops by itself (20 s at most).
#[test]
#[ignore = "a child process of killed_writers_leave_a_cache_that_opens_whole"]
fn cache_writer_child() {
    let Some(root) = std::env::var_os("CAIRN_TEST_CACHE_WRITER") else { return };
    let c = IndexCache::open(Some(Path::new(&root)), &KILL_REPO).unwrap();
    let mut i = c.known_index_files().unwrap().iter().map(kill_step).max().map_or(0, |m| m + 1);
    let start = std::time::Instant::now();
    while start.elapsed() < std::time::Duration::from_secs(20) {
        c.add_indexes(&[kill_index(i)]).unwrap();
        let tree = vec![i as u8; (i as usize * 7919) % 30_000];
        c.put_trees([(*blake3::hash(&tree).as_bytes(), 5, None, tree.as_slice())]).unwrap();
        c.put_snapshot(&[i as u8; 32], &tree[..tree.len() / 3]).unwrap();
        if i % 5 == 4 {
            // A prune drops the object of four steps back and its packs.
            let (old, ix) = kill_index(i - 4);
            let deleted = ix.packs.iter().map(|p| p.id).collect();
            c.apply_prune(&[old], &[], &[], &deleted, |_| Ok(false)).unwrap();
            c.retain_snapshots(&[[i as u8; 32]].into_iter().collect()).unwrap();
        }
        if i % 60 == 59 {
            c.clear().unwrap();
        }
        i += 1;
    }
}

/// Checks a copy of the cache file the way a fresh process meets it:
/// redb opens it (repairing an unclean file), its integrity check passes,
/// and every absorbed index object's entries are there, at their places.
fn verify_kill_cache(path: &Path) {
    let copy = path.with_extension("copy");
    std::fs::copy(path, &copy).unwrap();
    let mut db = create_db(&copy).unwrap_or_else(|e| panic!("the killed writer's cache does not open: {e}"));
    assert!(db.check_integrity().unwrap(), "the killed writer's cache needed repair after opening");
    // The copy's filter path is the killed writer's filter (same stem).
    let c = IndexCache { db, path: Some(copy.clone()), filter: Mutex::new(None), damaged: Default::default() };
    let tag = {
        let tx = c.db.begin_read().unwrap();
        let tag = tx.open_table(FILTER_TAG).unwrap().get("tag").unwrap().map(|v| v.value());
        tag
    };
    // A filter the cache's tag names holds every key of it; one it does
    // not name is built again on open.
    let as_left = tag.and_then(|t| filter::Filter::open(&filter::path_beside(&copy), &t));
    let r = c.reader().unwrap();
    for id in c.known_index_files().unwrap() {
        let (_, ix) = kill_index(kill_step(&id));
        for p in &ix.packs {
            for e in &p.blobs {
                let blob = BlobId { kind: e.kind, id: e.id };
                assert_eq!(r.get(&blob).unwrap(), Some(Location::of(p.id, e)), "step {}", kill_step(&id));
                if let Some(f) = &as_left {
                    assert!(f.maybe_contains(&key(&blob)).unwrap(), "the filter lacks a key, step {}", kill_step(&id));
                }
            }
        }
    }
    eprintln!("{} index objects", c.known_index_files().unwrap().len());
    drop((r, c));
    std::fs::remove_file(&copy).unwrap();
}

/// A cairn process killed (SIGKILL) while it writes its index cache
/// leaves a file that the next process opens and goes on writing: the
/// writer is killed at random moments, again and again, each time after
/// opening (and repairing) what the last one left; a writer that panics
/// (a redb assertion: debug builds check them) fails the test, and so does
/// a file that does not open whole. `CAIRN_TEST_CACHE_KILLS` sets the
/// rounds (40).
#[test]
fn killed_writers_leave_a_cache_that_opens_whole() {
    use rand::{Rng, SeedableRng};
    use std::os::unix::process::ExitStatusExt;
    let rounds: u32 = std::env::var("CAIRN_TEST_CACHE_KILLS").ok().and_then(|v| v.parse().ok()).unwrap_or(40);
    let seed: u64 = std::env::var("CAIRN_TEST_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or_else(rand::random);
    eprintln!("seed {seed} (CAIRN_TEST_SEED)");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(KILL_REPO.to_hex()).join(FILE_NAME);
    for round in 0..rounds {
        let child = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "index::cache::tests::cache_writer_child",
                "--ignored",
                "--test-threads=1",
                "--nocapture",
            ])
            .env("CAIRN_TEST_CACHE_WRITER", dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(rng.gen_range(40..400)));
        // SAFETY: kill(2) with the pid of our own child, not yet reaped
        // (wait_with_output below reaps it), and a plain signal number.
        unsafe {
            libc::kill(child.id() as libc::pid_t, libc::SIGKILL);
        }
        let out = child.wait_with_output().unwrap();
        assert_eq!(
            out.status.signal(),
            Some(libc::SIGKILL),
            "round {round} (seed {seed}): the writer ended by itself ({:?}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        // A file that redb could not open or repair is started again with
        // a warning: that too is a failure here.
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("warning"), "round {round} (seed {seed}): {stderr}");
        if path.exists() {
            verify_kill_cache(&path);
        }
    }
}

/// Index objects with random ids, repeated ids across objects (live twice,
/// live and marked, marked only), absorbed once in memory and once spilled
/// in runs of 7 entries: both caches hold the same entries, each as the
/// in-memory rule says (a live copy wins over a marked one).
#[test]
fn a_spilled_absorption_equals_an_in_memory_one() {
    let dir = tempfile::tempdir().unwrap();
    let entry = |id: [u8; 32], off: u32| PackEntry {
        kind: if id[0] % 5 == 0 { BlobKind::Tree } else { BlobKind::Data },
        id,
        offset: off,
        length: 9,
        inner: None,
        raw_length: 9,
    };
    let id = |n: u32| *blake3::hash(&n.to_le_bytes()).as_bytes();
    let mut objects = Vec::new();
    for o in 0..12u32 {
        // Entries 0..30 of object o: fresh ids, plus ids of object o-1.
        let blobs: Vec<PackEntry> = (0..30).map(|i| entry(id(o * 100 + i), i)).collect();
        // Copies of the first ids of the two objects before, and (in the
        // marked packs) ids no live pack holds.
        let mut again: Vec<PackEntry> = (0..5).map(|i| entry(id(o.saturating_sub(1) * 100 + i), 1000 + i)).collect();
        again.extend((0..3).map(|i| entry(id(o.saturating_sub(2) * 100 + i), 2000 + i)));
        if o % 3 == 2 {
            again.extend((0..3).map(|i| entry(id(o * 100 + 50 + i), 3000 + i)));
        }
        let pack = |n: u32| PackId(id(1_000_000 + n));
        let ix = if o % 3 == 2 {
            Index {
                packs: vec![IndexPack { id: pack(o), blobs }],
                marked: vec![MarkedPack { run: [o as u8; 16], pack: IndexPack { id: pack(100 + o), blobs: again } }],
                ..Default::default()
            }
        } else {
            Index {
                packs: vec![IndexPack { id: pack(o), blobs }, IndexPack { id: pack(100 + o), blobs: again }],
                ..Default::default()
            }
        };
        objects.push((IndexId(id(2_000_000 + o)), ix));
    }
    let memory = IndexCache::in_memory().unwrap();
    memory.add_indexes(&objects).unwrap();
    let disk = IndexCache::open(Some(dir.path()), &RepoId([3; 32])).unwrap();
    let mut a = disk.begin_absorb().unwrap();
    a.set_run_limit(7);
    for (i, ix) in &objects {
        a.add(i, ix).unwrap();
    }
    assert_eq!(a.runs_spilled(), objects.len(), "a run spilled after each object");
    a.finish().unwrap();

    let all = |c: &IndexCache| {
        let mut v = Vec::new();
        c.for_each(|b, l| {
            v.push((b, l));
            Ok(())
        })
        .unwrap();
        v
    };
    // Where each blob may be read from: a live copy if there is one, else
    // a marked one (two live copies may be chosen either way).
    let mut may: HashMap<BlobId, (Vec<Location>, Vec<Location>)> = HashMap::new();
    for (_, ix) in &objects {
        for (p, live) in ix.packs.iter().map(|p| (p, true)).chain(ix.marked.iter().map(|m| (&m.pack, false))) {
            for e in &p.blobs {
                let at = may.entry(BlobId { kind: e.kind, id: e.id }).or_default();
                let loc = Location::of(p.id, e);
                if live {
                    at.0.push(loc)
                } else {
                    at.1.push(loc)
                }
            }
        }
    }
    for (name, c) in [("in memory", &memory), ("spilled", &disk)] {
        let got = all(c);
        assert_eq!(got.len(), may.len(), "{name}");
        for (b, loc) in got {
            let (live, marked) = &may[&b];
            let ok = if live.is_empty() { marked.contains(&loc) } else { live.contains(&loc) };
            assert!(ok, "{name}: {b:?} read from {loc:?}");
        }
    }
    assert!(may.values().any(|(l, m)| l.len() > 1 && !m.is_empty()), "the test has a blob live twice and marked");
    assert!(may.values().any(|(l, m)| l.is_empty() && !m.is_empty()), "the test has a blob only marked");
    // An unfinished absorption absorbs nothing.
    let again = IndexCache::open(Some(tempfile::tempdir().unwrap().path()), &RepoId([4; 32])).unwrap();
    {
        let mut a = again.begin_absorb().unwrap();
        a.add(&objects[0].0, &objects[0].1).unwrap();
    }
    assert_eq!(again.len().unwrap(), 0);
    assert!(again.known_index_files().unwrap().is_empty());
}

/// A sync whose filter file fails (here: cut short under it) still
/// absorbs everything; the cache drops the filter, answers without it, and
/// builds it again, whole, when next opened.
#[test]
fn a_failing_filter_does_not_fail_a_sync() {
    let dir = tempfile::tempdir().unwrap();
    let repo = RepoId([8; 32]);
    let (_, ix) = kill_index(7);
    let keys: Vec<BlobId> =
        ix.packs.iter().flat_map(|p| p.blobs.iter().map(|e| BlobId { kind: e.kind, id: e.id })).collect();
    {
        let c = IndexCache::open(Some(dir.path()), &repo).unwrap();
        let path = c.filter_path().unwrap();
        assert!(c.current_filter().is_some());
        std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(64).unwrap();
        c.add_indexes(&[(IndexId([7; 32]), ix.clone())]).unwrap();
        assert!(c.current_filter().is_none(), "the failed filter is dropped");
        let r = c.reader().unwrap();
        for b in &keys {
            assert!(r.get(b).unwrap().is_some());
        }
        assert!(
            r.maybe_contains(&BlobId { kind: BlobKind::Data, id: [0xee; 32] }),
            "no filter: every key may be there"
        );
    }
    let c = IndexCache::open(Some(dir.path()), &repo).unwrap();
    let f = c.current_filter().expect("built again on open");
    assert!(keys.iter().all(|b| f.maybe_contains(&key(b)).unwrap()), "the rebuilt filter lacks a key");
    let r = c.reader().unwrap();
    assert!(!r.maybe_contains(&BlobId { kind: BlobKind::Data, id: [0xee; 32] }));
}
