//! Unit tests of [`FileMap`]: whole and listed files, reads at any offset,
//! lists learnt only as far as reads go, sizes that do not add up.

use super::*;
use crate::backend::Backend;
use crate::format::list::{encode, ChunkList};
use crate::id::BlobKind;
use crate::repo::{CacheMode, InitOptions};
use crate::saver::Saver;

fn repo() -> Arc<Repository> {
    std::env::set_var("CAIRN_INSECURE_TEST_KDF", "1");
    Arc::new(Repository::init(Backend::memory().unwrap(), b"pw", &InitOptions::default(), CacheMode::Memory).unwrap())
}

/// Chunk `n`: 100 to 399 bytes, each different.
fn chunk(n: usize) -> Vec<u8> {
    (0..100 + (n * 37) % 300).map(|i| (n * 131 + i * 7) as u8).collect()
}

/// Stores `leaves` level-0 lists of `per` chunks each under one level-1
/// list; the content naming it, and the file's bytes.
fn listed_file(repo: &Repository, leaves: usize, per: usize) -> (Content, Vec<u8>) {
    let mut bytes = Vec::new();
    let top = std::thread::scope(|s| {
        let mut saver = Saver::start(s, repo).unwrap();
        let mut leaf_ids = Vec::new();
        for l in 0..leaves {
            let mut ids = Vec::new();
            for c in 0..per {
                let data = chunk(l * per + c);
                let id = repo.key.blob_id(&data);
                bytes.extend_from_slice(&data);
                saver.save(BlobKind::Data, id, data).unwrap();
                ids.push(id);
            }
            let enc = encode(&ChunkList { level: 0, ids });
            let id = repo.key.blob_id(&enc);
            saver.save(BlobKind::Tree, id, enc).unwrap();
            leaf_ids.push(id);
        }
        let enc = encode(&ChunkList { level: 1, ids: leaf_ids });
        let top = repo.key.blob_id(&enc);
        saver.save(BlobKind::Tree, top, enc).unwrap();
        saver.finish().unwrap();
        top
    });
    (Content::Listed { level: 1, lists: vec![ListId(top)] }, bytes)
}

fn read_all(map: &FileMap, cache: &ChunkCache, offset: u64, size: usize) -> Vec<u8> {
    let (buf, range) = map.read(cache, offset, size, 4).unwrap();
    buf[range].to_vec()
}

#[test]
fn chunk_at_finds_the_chunk_holding_an_offset() {
    let s = Span { chunks: vec![ChunkId([1; 32]), ChunkId([2; 32]), ChunkId([3; 32])], starts: vec![0, 10, 25, 30] };
    assert_eq!(s.len(), 30);
    for (offset, want) in [(0, 0), (9, 0), (10, 1), (24, 1), (25, 2), (29, 2)] {
        assert_eq!(s.chunk_at(offset), want, "{offset}");
    }
}

#[test]
fn a_listed_file_reads_exactly_and_learns_its_lists_only_as_far_as_reads_go() {
    let repo = repo();
    let (content, bytes) = listed_file(&repo, 6, 40);
    let map = FileMap::build(&repo, &content, bytes.len() as u64).unwrap();
    let cache = ChunkCache::new(repo.clone(), 1 << 20, 2);
    assert_eq!(map.len(), bytes.len() as u64);
    assert_eq!(map.lists_learnt(), 0, "opening reads no level-0 list");

    // A read in the first list learns that one only (and, fetching ahead
    // near its end, the next).
    assert_eq!(read_all(&map, &cache, 10, 100), bytes[10..110]);
    assert_eq!(map.lists_learnt(), 1);
    // A read in the middle learns every list before it.
    let mid = bytes.len() / 2;
    assert_eq!(read_all(&map, &cache, mid as u64, 5000), bytes[mid..mid + 5000]);
    assert!((3..=4).contains(&map.lists_learnt()), "{}", map.lists_learnt());

    // Reads of every size at offsets across the whole file, list
    // boundaries included, and past its end.
    let n = bytes.len();
    for (offset, size) in [(0, n), (0, 1), (n - 1, 10), (n, 10), (n + 5, 10), (3_333, 40_000), (n - 7_000, 7_000)] {
        let want = &bytes[offset.min(n)..(offset + size).min(n)];
        assert_eq!(read_all(&map, &cache, offset as u64, size), want, "at {offset}, {size} bytes");
    }
    for offset in (0..n).step_by(997) {
        assert_eq!(read_all(&map, &cache, offset as u64, 4096), bytes[offset..(offset + 4096).min(n)]);
    }
    assert_eq!(map.lists_learnt(), 6);
}

#[test]
fn a_listed_file_whose_chunks_do_not_add_up_is_an_error_where_a_read_finds_it() {
    let repo = repo();
    let (content, bytes) = listed_file(&repo, 3, 10);
    let cache = ChunkCache::new(repo.clone(), 1 << 20, 0);
    // The snapshot records more than the chunks hold.
    let map = FileMap::build(&repo, &content, bytes.len() as u64 + 50).unwrap();
    assert_eq!(read_all(&map, &cache, 0, 100), bytes[..100], "the start reads");
    let e = map.read(&cache, bytes.len() as u64 + 10, 10, 0).unwrap_err();
    assert!(e.to_string().contains("the snapshot records"), "{e}");
    // ... or less.
    let map = FileMap::build(&repo, &content, bytes.len() as u64 - 50).unwrap();
    let e = map.read(&cache, 0, bytes.len(), 0).unwrap_err();
    assert!(e.to_string().contains("more than the"), "{e}");
    // A whole file's map checks at once.
    let whole = Content::File((0..3).map(|c| ChunkId(repo.key.blob_id(&chunk(c)))).collect());
    let size: u64 = (0..3).map(|c| chunk(c).len() as u64).sum();
    assert!(FileMap::build(&repo, &whole, size).is_ok());
    let e = FileMap::build(&repo, &whole, size + 1).err().unwrap();
    assert!(e.to_string().contains("the snapshot records"), "{e}");
}
