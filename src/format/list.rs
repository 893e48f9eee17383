//! Chunk lists (format 3): the chunk ids of a large file, cut into list
//! blobs that deduplicate like any blob. See format-spec/07-trees.md,
//! "Chunk lists".
//!
//! A file of more than [`INLINE_MAX`] chunks names its content by lists:
//! its chunk ids are cut into lists after every id whose last byte is 0
//! (and after [`MAX_IDS`] ids at most), each list is a blob of kind tree,
//! and the lists' ids are cut again the same way, level by level, until a
//! level has at most [`INLINE_MAX`] ids: those are the node's content.
//! Ids are keyed hashes, so the cuts fall where the content says, and an
//! unchanged stretch of a file gives the same lists every night.

use super::wire::{Reader, Writer};
use crate::error::{Error, Result};
use crate::id::{ChunkId, ListId};

/// Byte 0 of a list blob: never a tree's version byte.
pub const TAG: u8 = b'L';
/// Most ids a node holds itself; a file of more chunks is listed.
pub const INLINE_MAX: usize = 256;
/// Most ids a writer puts in one list (a cut is forced after them).
pub const MAX_IDS: usize = 2048;
/// Most ids a reader accepts in one list.
pub const READ_MAX_IDS: usize = 65_536;
/// Highest level: 256^8 chunks is far beyond any file.
pub const MAX_LEVEL: u8 = 7;

/// One list blob: at level 0 its ids are data chunks, at level `l > 0` they
/// are lists of level `l - 1`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChunkList {
    pub level: u8,
    pub ids: Vec<[u8; 32]>,
}

/// Whether a cut follows `id` (a chunk or list id).
pub fn is_boundary(id: &[u8; 32]) -> bool {
    id[31] == 0
}

/// Encodes a list: `TAG`, level u8, count u32, the ids.
pub fn encode(list: &ChunkList) -> Vec<u8> {
    let mut out = Vec::with_capacity(6 + 32 * list.ids.len());
    out.put_u8(TAG);
    out.put_u8(list.level);
    out.put_u32(list.ids.len() as u32);
    for id in &list.ids {
        out.put(id);
    }
    out
}

/// Decodes a list blob; `level` is the level its parent says it has.
pub fn decode(buf: &[u8], level: u8) -> Result<ChunkList> {
    let mut r = Reader::new(buf, "chunk list");
    let tag = r.u8()?;
    if tag != TAG {
        return Err(Error::corrupt(format!("chunk list: tag {tag:#04x}, not a chunk list")));
    }
    let l = r.u8()?;
    if l != level {
        return Err(Error::corrupt(format!("chunk list: level {l} where level {level} was named")));
    }
    let n = r.count(32)?;
    if n == 0 || n > READ_MAX_IDS {
        return Err(Error::corrupt(format!("chunk list: {n} ids (1 to {READ_MAX_IDS})")));
    }
    let mut ids = Vec::with_capacity(n);
    for _ in 0..n {
        ids.push(r.array()?);
    }
    if r.remaining() != 0 {
        return Err(Error::corrupt("chunk list: trailing bytes"));
    }
    Ok(ChunkList { level, ids })
}

/// Cuts a level's ids into lists: after every boundary id, and after
/// [`MAX_IDS`] ids at most.
pub fn cut(ids: &[[u8; 32]]) -> Vec<&[[u8; 32]]> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, id) in ids.iter().enumerate() {
        if is_boundary(id) || i + 1 - start == MAX_IDS {
            out.push(&ids[start..=i]);
            start = i + 1;
        }
    }
    if start < ids.len() {
        out.push(&ids[start..]);
    }
    out
}

/// A file's content as a node holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Listing {
    /// At most [`INLINE_MAX`] chunks: the node holds them.
    Inline(Vec<ChunkId>),
    /// The node holds lists of `level`.
    Listed { level: u8, lists: Vec<ListId> },
}

/// Builds the lists of a file's chunk ids: `store` gets each list blob's
/// encoding (the caller computes its id and stores it; the same bytes
/// always give the same id, so an unchanged list is stored once), and
/// returns its id.
pub fn build(chunks: Vec<ChunkId>, mut store: impl FnMut(Vec<u8>) -> Result<[u8; 32]>) -> Result<Listing> {
    let mut l = Lister::default();
    for c in chunks {
        l.push(c, &mut store)?;
    }
    l.finish(&mut store)
}

/// Builds a file's lists as its chunks arrive, in memory bounded by the
/// levels (at most [`MAX_IDS`] ids each), not by the file: a list is
/// stored as soon as it is cut. Gives exactly what [`build`] gives for the
/// same chunks: a level starts cutting only once it has more than
/// [`INLINE_MAX`] ids (fewer are what the node holds), and then cuts its
/// ids from the first.
#[derive(Default)]
pub struct Lister {
    /// Per level: the ids not cut into a list yet, and whether the level
    /// cuts (it has had more than [`INLINE_MAX`] ids).
    levels: Vec<(Vec<[u8; 32]>, bool)>,
}

impl Lister {
    /// Adds the file's next chunk.
    pub fn push(&mut self, chunk: ChunkId, store: &mut dyn FnMut(Vec<u8>) -> Result<[u8; 32]>) -> Result<()> {
        self.add(0, chunk.0, store)
    }

    /// Adds an id at level `l` (chunk ids at 0; lists of level `l - 1` above).
    fn add(&mut self, l: usize, id: [u8; 32], store: &mut dyn FnMut(Vec<u8>) -> Result<[u8; 32]>) -> Result<()> {
        if self.levels.len() == l {
            self.levels.push((Vec::new(), false));
        }
        if self.levels[l].1 {
            return self.cut_after(l, id, store);
        }
        self.levels[l].0.push(id);
        if self.levels[l].0.len() <= INLINE_MAX {
            return Ok(());
        }
        // From now on this level cuts, from its first id.
        self.levels[l].1 = true;
        for id in std::mem::take(&mut self.levels[l].0) {
            self.cut_after(l, id, store)?;
        }
        Ok(())
    }

    /// Appends `id` to the open list of level `l` (which cuts), and cuts
    /// the list after it if it is a boundary or the list is full.
    fn cut_after(&mut self, l: usize, id: [u8; 32], store: &mut dyn FnMut(Vec<u8>) -> Result<[u8; 32]>) -> Result<()> {
        self.levels[l].0.push(id);
        if is_boundary(&id) || self.levels[l].0.len() == MAX_IDS {
            self.emit(l, store)?;
        }
        Ok(())
    }

    /// Stores the open list of level `l` and adds its id one level up.
    fn emit(&mut self, l: usize, store: &mut dyn FnMut(Vec<u8>) -> Result<[u8; 32]>) -> Result<()> {
        if l > MAX_LEVEL as usize {
            return Err(Error::invalid("chunk list: more levels than a file can need"));
        }
        let ids = std::mem::take(&mut self.levels[l].0);
        let id = store(encode(&ChunkList { level: l as u8, ids }))?;
        self.add(l + 1, id, store)
    }

    /// The node's content: the chunks, if there are at most
    /// [`INLINE_MAX`]; else the lists of the first level that fits.
    pub fn finish(mut self, store: &mut dyn FnMut(Vec<u8>) -> Result<[u8; 32]>) -> Result<Listing> {
        let mut l = 0;
        loop {
            if l == self.levels.len() {
                return Ok(Listing::Inline(Vec::new()));
            }
            if !self.levels[l].1 {
                let ids = std::mem::take(&mut self.levels[l].0);
                return Ok(if l == 0 {
                    Listing::Inline(ids.into_iter().map(ChunkId).collect())
                } else {
                    Listing::Listed { level: (l - 1) as u8, lists: ids.into_iter().map(ListId).collect() }
                });
            }
            if !self.levels[l].0.is_empty() {
                self.emit(l, store)?;
            }
            l += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u32, last: u8) -> [u8; 32] {
        let mut a = *blake3::hash(&n.to_le_bytes()).as_bytes();
        a[31] = last;
        a
    }

    /// The definition, level by level over the whole file (what the spec
    /// says), against which the streaming [`Lister`] is checked.
    fn reference(chunks: Vec<ChunkId>, store: &mut dyn FnMut(Vec<u8>) -> Result<[u8; 32]>) -> Listing {
        if chunks.len() <= INLINE_MAX {
            return Listing::Inline(chunks);
        }
        let mut ids: Vec<[u8; 32]> = chunks.into_iter().map(|c| c.0).collect();
        let mut level = 0u8;
        loop {
            let up: Vec<[u8; 32]> =
                cut(&ids).into_iter().map(|p| store(encode(&ChunkList { level, ids: p.to_vec() })).unwrap()).collect();
            if up.len() <= INLINE_MAX {
                return Listing::Listed { level, lists: up.into_iter().map(ListId).collect() };
            }
            ids = up;
            level += 1;
        }
    }

    /// Streaming gives what the definition gives, storing the same lists,
    /// for sizes around every threshold (ids with many boundaries, so that
    /// levels fill fast).
    #[test]
    fn streaming_matches_the_definition() {
        for (n, every) in
            [(0, 2), (1, 2), (256, 2), (257, 2), (600, 2), (257, 1000), (3000, 3), (70_000, 4), (140_000, 2)]
        {
            let chunks: Vec<ChunkId> = (0..n as u32)
                .map(|i| {
                    let mut id = *blake3::hash(&i.to_le_bytes()).as_bytes();
                    if i % every != 0 {
                        id[31] |= 1;
                    } else {
                        id[31] = 0;
                    }
                    ChunkId(id)
                })
                .collect();
            let mut a = Vec::new();
            let want = reference(chunks.clone(), &mut |e| {
                a.push(e.clone());
                Ok(*blake3::hash(&e).as_bytes())
            });
            let mut b = Vec::new();
            let got = build(chunks, |e| {
                b.push(e.clone());
                Ok(*blake3::hash(&e).as_bytes())
            })
            .unwrap();
            assert_eq!(got, want, "{n} chunks, a cut every {every}");
            a.sort();
            b.sort();
            assert_eq!(a, b, "{n} chunks: the same lists stored");
        }
    }

    #[test]
    fn cuts_after_boundaries_and_at_the_maximum() {
        let ids: Vec<[u8; 32]> = (0..10).map(|n| id(n, if n == 3 || n == 9 { 0 } else { 1 })).collect();
        let parts = cut(&ids);
        assert_eq!(parts.iter().map(|p| p.len()).collect::<Vec<_>>(), vec![4, 6]);
        let long: Vec<[u8; 32]> = (0..(MAX_IDS as u32 * 2 + 5)).map(|n| id(n, 1)).collect();
        assert_eq!(cut(&long).iter().map(|p| p.len()).collect::<Vec<_>>(), vec![MAX_IDS, MAX_IDS, 5]);
        assert!(cut(&[]).is_empty());
    }

    #[test]
    fn encodes_and_refuses_what_is_not_a_list() {
        let l = ChunkList { level: 2, ids: vec![[7; 32], [8; 32]] };
        let e = encode(&l);
        assert_eq!(&e[..6], &[b'L', 2, 2, 0, 0, 0]);
        assert_eq!(e.len(), 6 + 64);
        assert_eq!(decode(&e, 2).unwrap(), l);
        assert!(decode(&e, 1).unwrap_err().to_string().contains("level 2 where level 1"));
        let mut t = e.clone();
        t[0] = 1; // a tree's version byte
        assert!(decode(&t, 2).is_err());
        let mut t = e.clone();
        t.push(0);
        assert!(decode(&t, 2).is_err());
        assert!(decode(&e[..e.len() - 1], 2).is_err());
        assert!(decode(&[b'L', 0, 0, 0, 0, 0], 0).is_err(), "an empty list");
        assert!(decode(&[b'L', 0, 255, 255, 255, 255], 0).is_err(), "a count beyond the bytes");
    }

    /// Small files stay inline; large ones get levels until a level fits
    /// a node; a change in one chunk stores one new list per level.
    #[test]
    fn builds_levels_and_a_change_touches_one_list_per_level() {
        let small: Vec<ChunkId> = (0..INLINE_MAX as u32).map(|n| ChunkId(id(n, 5))).collect();
        assert_eq!(build(small.clone(), |_| unreachable!()).unwrap(), Listing::Inline(small));

        let chunks: Vec<ChunkId> =
            (0..200_000u32).map(|n| ChunkId(*blake3::hash(&n.to_le_bytes()).as_bytes())).collect();
        let mut stored = std::collections::HashMap::new();
        let mut store = |enc: Vec<u8>| -> Result<[u8; 32]> {
            let i = *blake3::hash(&enc).as_bytes();
            stored.insert(i, enc);
            Ok(i)
        };
        let first = build(chunks.clone(), &mut store).unwrap();
        let Listing::Listed { level, lists } = &first else { panic!("not listed") };
        // 200,000 ids / 256 per list = ~780 lists at level 0, ~3 at level 1.
        assert_eq!(*level, 1);
        assert!((1..=10).contains(&lists.len()), "{}", lists.len());
        // Expanding gives the chunks back.
        fn expand(
            stored: &std::collections::HashMap<[u8; 32], Vec<u8>>,
            level: u8,
            ids: &[[u8; 32]],
            out: &mut Vec<[u8; 32]>,
        ) {
            for i in ids {
                let l = decode(&stored[i], level).unwrap();
                if level == 0 {
                    out.extend(l.ids);
                } else {
                    expand(stored, level - 1, &l.ids, out);
                }
            }
        }
        let mut back = Vec::new();
        expand(&stored, *level, &lists.iter().map(|l| l.0).collect::<Vec<_>>(), &mut back);
        assert_eq!(back, chunks.iter().map(|c| c.0).collect::<Vec<_>>());

        let before = stored.len();
        let mut changed = chunks.clone();
        changed[100_000] = ChunkId([9; 32]);
        let mut new = 0;
        let second = build(changed, |enc| {
            let i = *blake3::hash(&enc).as_bytes();
            if stored.insert(i, enc).is_none() {
                new += 1;
            }
            Ok(i)
        })
        .unwrap();
        assert_ne!(first, second);
        assert_eq!(new, 2, "one new list at each of the two levels ({before} before)");
    }
}
