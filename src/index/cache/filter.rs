//! A Bloom filter of every blob the cache holds, in a file beside it: a
//! backup asks it first, so that a new chunk is known to be new without a
//! lookup in the B-tree, whose cost grows with the repository (at 10^8
//! entries nearly every lookup reads two or three pages that redb's page
//! cache cannot hold).
//!
//! The file is a 64-byte header and `blocks` blocks of 512 bits. A key
//! (blob kind + id, as the B-tree's) sets [`PROBES`] bits in one block: the
//! block is picked by the id's first 8 bytes (big-endian, scaled to the
//! block count, so keys in B-tree order visit blocks in file order and a
//! sync writes the file front to back), the bits by the next 16 bytes. Ids
//! are keyed BLAKE3 hashes, uniform to anyone without the repository's key.
//! At 10 bits per entry (a filter's capacity) about 1 % of absent keys pass.
//!
//! ```text
//! 0      8        12       16          24          32             48     64
//! | magic | version | 0 pad | blocks u64 | capacity u64 | tag 16 bytes | 0 |
//! ```
//!
//! **Only a superset is ever trusted.** Bits are only set, never cleared,
//! while the file lives: a key removed from the cache (a pack a prune
//! deleted) still passes, and then the B-tree answers. Bits are written and
//! synced before the redb transaction that adds the keys commits, so a
//! crash leaves bits for keys that never arrived (harmless), never keys
//! without bits. A torn write is harmless too: each byte is either the old
//! byte or the old byte with bits added. A file that does not belong to the
//! cache as it is (the `tag`, kept in the cache's `filter` table, differs:
//! it is missing, of another cache, or was replaced while a transaction
//! that failed was open) is built again from the B-tree when the cache is
//! opened. And a key the filter wrongly calls absent would only be stored
//! once more: only a backup asks it ([`super::CacheReader::maybe_contains`]).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, ErrorKind, Result};

const MAGIC: &[u8; 8] = b"cairnBF1";
const VERSION: u32 = 1;
const HEADER: u64 = 64;
/// Bytes per block.
pub const BLOCK: usize = 64;
/// Bits set per key, all in its block.
pub const PROBES: usize = 8;
/// Bits of filter per entry at capacity.
pub const BITS_PER_ENTRY: u64 = 10;
/// The smallest capacity a filter is made with (1.25 MiB of file).
pub const MIN_CAPACITY: u64 = 1 << 20;
/// Blocks written back at once by a [`Writer`] (a 4 KiB page).
const PAGE_BLOCKS: u64 = 4096 / BLOCK as u64;

/// An open filter file.
pub struct Filter {
    file: File,
    blocks: u64,
    capacity: u64,
    tag: [u8; 16],
}

fn io(what: &str) -> impl Fn(std::io::Error) -> Error + '_ {
    move |e| Error::new(ErrorKind::Io, format!("index cache filter: {what}: {e}"))
}

/// The block of `key` (kind byte + 32-byte id) in a filter of `blocks`.
fn block_of(key: &[u8; 33], blocks: u64) -> u64 {
    let x = u64::from_be_bytes(key[1..9].try_into().expect("8 bytes"));
    ((x as u128 * blocks as u128) >> 64) as u64
}

/// The bits of `key` in its block: 9 bits each, from the id's bytes
/// 8..24, the kind mixed into the first.
fn bits_of(key: &[u8; 33]) -> [u16; PROBES] {
    let mut out = [0u16; PROBES];
    for (i, b) in out.iter_mut().enumerate() {
        let v = u16::from_le_bytes([key[9 + 2 * i], key[10 + 2 * i]]);
        *b = (v ^ if i == 0 { key[0] as u16 } else { 0 }) & 511;
    }
    out
}

fn set_bits(block: &mut [u8], key: &[u8; 33]) {
    for b in bits_of(key) {
        block[(b / 8) as usize] |= 1 << (b % 8);
    }
}

fn has_bits(block: &[u8], key: &[u8; 33]) -> bool {
    bits_of(key).iter().all(|&b| block[(b / 8) as usize] & (1 << (b % 8)) != 0)
}

/// Blocks for `capacity` entries at [`BITS_PER_ENTRY`].
fn blocks_for(capacity: u64) -> u64 {
    (capacity * BITS_PER_ENTRY).div_ceil(BLOCK as u64 * 8).max(1)
}

impl Filter {
    /// Opens the filter at `path` if it is one and carries `tag`.
    pub fn open(path: &Path, tag: &[u8; 16]) -> Option<Filter> {
        let file = std::fs::OpenOptions::new().read(true).write(true).open(path).ok()?;
        let mut h = [0u8; HEADER as usize];
        file.read_exact_at(&mut h, 0).ok()?;
        let u64_at = |i: usize| u64::from_le_bytes(h[i..i + 8].try_into().expect("8 bytes"));
        let (blocks, capacity) = (u64_at(16), u64_at(24));
        let version = u32::from_le_bytes(h[8..12].try_into().expect("4 bytes"));
        let len = file.metadata().ok()?.len();
        let fits = blocks > 0 && blocks.checked_mul(BLOCK as u64).and_then(|b| b.checked_add(HEADER)) == Some(len);
        if &h[..8] != MAGIC || version != VERSION || !fits || &h[32..48] != tag {
            return None;
        }
        Some(Filter { file, blocks, capacity, tag: *tag })
    }

    /// Creates an empty filter for `capacity` entries at `path` (replacing
    /// what is there), with a fresh tag; not synced.
    pub fn create(path: &Path, capacity: u64) -> Result<Filter> {
        let capacity = capacity.max(MIN_CAPACITY);
        let blocks = blocks_for(capacity);
        let tag: [u8; 16] = rand::random();
        let file = {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .mode(crate::backend::local::FILE_MODE)
                .open(path)
                .map_err(io("creating it"))?
        };
        let mut h = [0u8; HEADER as usize];
        h[..8].copy_from_slice(MAGIC);
        h[8..12].copy_from_slice(&VERSION.to_le_bytes());
        h[16..24].copy_from_slice(&blocks.to_le_bytes());
        h[24..32].copy_from_slice(&capacity.to_le_bytes());
        h[32..48].copy_from_slice(&tag);
        file.write_all_at(&h, 0).map_err(io("writing it"))?;
        // The blocks are zero: a sparse file until bits are set.
        file.set_len(HEADER + blocks * BLOCK as u64).map_err(io("sizing it"))?;
        Ok(Filter { file, blocks, capacity, tag })
    }

    pub fn tag(&self) -> &[u8; 16] {
        &self.tag
    }

    /// Entries the filter was sized for.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Whether `key` may be in the cache (`false`: it is not).
    pub fn maybe_contains(&self, key: &[u8; 33]) -> Result<bool> {
        let mut block = [0u8; BLOCK];
        let at = HEADER + block_of(key, self.blocks) * BLOCK as u64;
        self.file.read_exact_at(&mut block, at).map_err(io("reading it"))?;
        Ok(has_bits(&block, key))
    }

    /// A writer that sets the bits of keys given in B-tree order (any order
    /// works; that one writes each page once).
    pub fn writer(&self) -> Writer<'_> {
        Writer { filter: self, page: None, buf: vec![0u8; PAGE_BLOCKS as usize * BLOCK] }
    }

    /// Makes what was written durable.
    pub fn sync(&self) -> Result<()> {
        self.file.sync_all().map_err(io("syncing it"))
    }
}

/// Sets bits page by page ([`Filter::writer`]); [`Writer::finish`] writes
/// the last page back.
pub struct Writer<'f> {
    filter: &'f Filter,
    /// The page held in `buf`.
    page: Option<u64>,
    buf: Vec<u8>,
}

impl Writer<'_> {
    pub fn add(&mut self, key: &[u8; 33]) -> Result<()> {
        let block = block_of(key, self.filter.blocks);
        let page = block / PAGE_BLOCKS;
        if self.page != Some(page) {
            self.flush()?;
            let len = self.page_len(page);
            let at = self.offset(page);
            self.filter.file.read_exact_at(&mut self.buf[..len], at).map_err(io("reading it"))?;
            self.page = Some(page);
        }
        let at = (block % PAGE_BLOCKS) as usize * BLOCK;
        set_bits(&mut self.buf[at..at + BLOCK], key);
        Ok(())
    }

    fn offset(&self, page: u64) -> u64 {
        HEADER + page * PAGE_BLOCKS * BLOCK as u64
    }

    /// Bytes of `page` (the last one may be short).
    fn page_len(&self, page: u64) -> usize {
        let blocks = (self.filter.blocks - page * PAGE_BLOCKS).min(PAGE_BLOCKS);
        blocks as usize * BLOCK
    }

    fn flush(&mut self) -> Result<()> {
        if let Some(page) = self.page.take() {
            let len = self.page_len(page);
            self.filter.file.write_all_at(&self.buf[..len], self.offset(page)).map_err(io("writing it"))?;
        }
        Ok(())
    }

    /// Writes the last page back (not synced: [`Filter::sync`]).
    pub fn finish(mut self) -> Result<()> {
        self.flush()
    }
}

/// The filter's path beside the cache file `db`.
pub fn path_beside(db: &Path) -> PathBuf {
    db.with_extension("filter")
}

/// Builds a filter for `capacity` entries from `keys` into a temporary
/// file beside `path`, synced; [`install`] puts it in place.
pub fn build(
    path: &Path,
    capacity: u64,
    keys: impl FnOnce(&mut dyn FnMut(&[u8; 33]) -> Result<()>) -> Result<()>,
) -> Result<(Filter, PathBuf)> {
    let tmp = path.with_extension("filter.new");
    let f = Filter::create(&tmp, capacity)?;
    {
        let mut w = f.writer();
        keys(&mut |k| w.add(k))?;
        w.finish()?;
    }
    f.sync()?;
    Ok((f, tmp))
}

/// Moves a filter built by [`build`] to `path`.
pub fn install(tmp: &Path, path: &Path) -> Result<()> {
    std::fs::rename(tmp, path).map_err(io("putting it in place"))?;
    if let Some(dir) = path.parent() {
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u64) -> [u8; 33] {
        let mut k = [0u8; 33];
        k[1..].copy_from_slice(blake3::hash(&i.to_le_bytes()).as_bytes());
        k
    }

    #[test]
    fn every_key_added_passes_and_few_others_do() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f.filter");
        let n = 200_000u64;
        let f = Filter::create(&p, n).unwrap();
        assert_eq!(f.capacity(), MIN_CAPACITY);
        let mut keys: Vec<[u8; 33]> = (0..n).map(key).collect();
        keys.sort();
        let mut w = f.writer();
        for k in &keys {
            w.add(k).unwrap();
        }
        w.finish().unwrap();
        assert!(keys.iter().all(|k| f.maybe_contains(k).unwrap()), "no key added is called absent");
        // Filled to capacity: about 1 % of absent keys pass.
        let f = Filter::create(&p, 0).unwrap();
        let keys: Vec<[u8; 33]> = (0..MIN_CAPACITY).map(key).collect();
        let mut w = f.writer();
        for k in &keys {
            w.add(k).unwrap();
        }
        w.finish().unwrap();
        let passed = (0..100_000u64).filter(|i| f.maybe_contains(&key(u64::MAX - i)).unwrap()).count();
        assert!(passed < 2_000, "{passed} of 100,000 absent keys passed");
        assert!(keys.iter().all(|k| f.maybe_contains(k).unwrap()));
    }

    #[test]
    fn the_kind_is_part_of_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let f = Filter::create(&dir.path().join("f"), 0).unwrap();
        let data = key(1);
        let mut tree = data;
        tree[0] = 1;
        let mut w = f.writer();
        w.add(&data).unwrap();
        w.finish().unwrap();
        assert!(f.maybe_contains(&data).unwrap());
        // The first probe differs; the rest of the block is empty.
        assert!(!f.maybe_contains(&tree).unwrap());
    }

    #[test]
    fn keys_in_btree_order_visit_blocks_in_file_order() {
        let mut keys: Vec<[u8; 33]> = (0..10_000).map(key).collect();
        keys.sort();
        let blocks: Vec<u64> = keys.iter().map(|k| block_of(k, 12_345)).collect();
        assert!(blocks.windows(2).all(|w| w[0] <= w[1]));
        assert!(*blocks.last().unwrap() < 12_345);
    }

    #[test]
    fn reopened_only_with_its_tag_and_whole() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f.filter");
        let f = Filter::create(&p, 5).unwrap();
        let tag = *f.tag();
        let mut w = f.writer();
        w.add(&key(3)).unwrap();
        w.finish().unwrap();
        drop(f);
        let f = Filter::open(&p, &tag).expect("its own tag opens it");
        assert!(f.maybe_contains(&key(3)).unwrap());
        assert!(Filter::open(&p, &[0; 16]).is_none(), "another tag");
        let len = std::fs::metadata(&p).unwrap().len();
        std::fs::OpenOptions::new().write(true).open(&p).unwrap().set_len(len - 1).unwrap();
        assert!(Filter::open(&p, &tag).is_none(), "a short file");
        assert!(Filter::open(&dir.path().join("none"), &tag).is_none(), "no file");
    }

    #[test]
    fn a_build_replaces_the_file_only_when_installed() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f.filter");
        let old = Filter::create(&p, 0).unwrap();
        let old_tag = *old.tag();
        let (new, tmp) = build(&p, 3 * MIN_CAPACITY, |add| {
            for i in 0..1000 {
                add(&key(i))?;
            }
            Ok(())
        })
        .unwrap();
        assert!(Filter::open(&p, &old_tag).is_some(), "not installed yet");
        install(&tmp, &p).unwrap();
        let f = Filter::open(&p, new.tag()).unwrap();
        assert_eq!(f.capacity(), 3 * MIN_CAPACITY);
        assert!((0..1000).all(|i| f.maybe_contains(&key(i)).unwrap()));
        // The old handle still reads its own (unlinked) file.
        assert!(!old.maybe_contains(&key(1)).unwrap());
    }
}
