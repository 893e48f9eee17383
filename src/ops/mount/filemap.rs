//! Where a file's bytes are: the map a read at any offset needs.
//!
//! A file whose node holds its chunks ([`Content::File`], at most 256) is
//! mapped whole when it is opened: its chunks and where each starts.
//!
//! A file named by chunk lists ([`Content::Listed`], a dump of any size) is
//! mapped in bounded memory. Opening it reads only the lists above level 0
//! (one list blob per ~65,000 chunks) to learn its level-0 lists in order,
//! 32 bytes each (one per ~256 chunks, ~1 MiB of a dump at 4 KiB chunks).
//! Where each level-0 list starts in the file is learnt as reads get there:
//! a read at an offset maps every list before it once (one list blob read
//! and an index lookup per chunk), 8 bytes per list kept. The chunk maps
//! of the lists last read are kept in a small LRU. For a 100 GB dump in
//! 4 KiB chunks that is ~100,000 lists: ~4 MB for the whole file, against
//! 40 bytes per chunk (~1 GB) if its chunks were mapped one by one.

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

use lru::LruCache;

use super::blobs::{ChunkCache, Slice};
use crate::error::{Error, Result};
use crate::format::tree::Content;
use crate::id::{BlobId, ChunkId, ListId};
use crate::repo::Repository;

/// Chunk maps of level-0 lists kept per open listed file (~10 KiB each).
const LIST_MAPS: usize = 16;

/// A run of chunks and where each starts, from 0.
#[derive(Debug)]
pub struct Span {
    pub chunks: Vec<ChunkId>,
    /// `starts[i]` is the offset of chunk `i`; one more entry holds the
    /// span's length.
    pub starts: Vec<u64>,
}

impl Span {
    /// Maps `chunks` by the index's plaintext lengths; a chunk missing from
    /// the index is an error.
    pub fn build(repo: &Repository, chunks: Vec<ChunkId>) -> Result<Self> {
        let reader = repo.cache.reader()?;
        let mut starts = Vec::with_capacity(chunks.len() + 1);
        let mut at = 0u64;
        for c in &chunks {
            starts.push(at);
            let loc = reader
                .get(&BlobId::data(*c))?
                .ok_or_else(|| Error::corrupt(format!("chunk {} is not in the index", c.short())))?;
            at += u64::from(loc.raw_length);
        }
        starts.push(at);
        Ok(Self { chunks, starts })
    }

    pub fn len(&self) -> u64 {
        self.starts.last().copied().unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The index of the chunk holding `offset` (< len).
    pub fn chunk_at(&self, offset: u64) -> usize {
        self.starts.partition_point(|&s| s <= offset).saturating_sub(1)
    }
}

/// What is known of a listed file's level-0 lists.
struct Learnt {
    /// `starts[i]` is where list `i` starts; one more entry is where the
    /// last list learnt ends (so `starts.len() - 1` lists are learnt).
    starts: Vec<u64>,
    /// Chunk maps of lists read lately, by list number.
    maps: LruCache<usize, Arc<Span>>,
}

/// A listed file's map, learnt as it is read.
pub struct Listed {
    size: u64,
    lists: Vec<ListId>,
    learnt: Mutex<Learnt>,
}

/// A file's map.
pub enum FileMap {
    Whole(Arc<Span>),
    Listed(Listed),
}

impl FileMap {
    /// The map of a file of `size` bytes with `content`. A whole map whose
    /// chunks do not add up to `size` is an error now; a listed file's is
    /// found when a read gets there.
    pub fn build(repo: &Repository, content: &Content, size: u64) -> Result<Self> {
        match content {
            Content::Listed { level, lists } => {
                let mut leaves = Vec::new();
                let mut above = lists.clone();
                for l in (1..=*level).rev() {
                    let mut next = Vec::new();
                    for id in &above {
                        next.extend(repo.load_list(id, l)?.ids.into_iter().map(ListId));
                    }
                    above = next;
                }
                leaves.append(&mut above);
                let cap = NonZeroUsize::new(LIST_MAPS).unwrap_or(NonZeroUsize::MIN);
                Ok(Self::Listed(Listed {
                    size,
                    lists: leaves,
                    learnt: Mutex::new(Learnt { starts: vec![0], maps: LruCache::new(cap) }),
                }))
            }
            _ => {
                let span = Span::build(repo, repo.file_chunks(content)?.into_owned())?;
                if span.len() != size {
                    return Err(mismatch(span.len(), size));
                }
                Ok(Self::Whole(Arc::new(span)))
            }
        }
    }

    pub fn len(&self) -> u64 {
        match self {
            Self::Whole(s) => s.len(),
            Self::Listed(l) => l.size,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Level-0 lists whose place in the file is known (a listed file), for
    /// tests and the memory argument above.
    pub fn lists_learnt(&self) -> usize {
        match self {
            Self::Whole(_) => 0,
            Self::Listed(l) => l.lock().starts.len() - 1,
        }
    }

    /// The span holding `offset` (< len) and where it starts in the file.
    fn span_at(&self, repo: &Repository, offset: u64) -> Result<(u64, Arc<Span>)> {
        match self {
            Self::Whole(s) => Ok((0, s.clone())),
            Self::Listed(l) => l.span_at(repo, offset),
        }
    }

    /// Reads up to `size` bytes at `offset` through the cache and asks for
    /// the next `ahead` chunks to be fetched. The bytes are `buf[range]`:
    /// the cached chunk itself when they lie in one chunk (the common case,
    /// no copy), else a buffer put together.
    pub fn read(&self, cache: &ChunkCache, offset: u64, size: usize, ahead: usize) -> Result<Slice> {
        let end = self.len().min(offset.saturating_add(size as u64));
        if offset >= end {
            return Ok((Arc::new(Vec::new()), 0..0));
        }
        let repo = cache.repo();
        let mut out: Vec<u8> = Vec::new();
        let mut at = offset;
        while at < end {
            let (base, span) = self.span_at(repo, at)?;
            let i = span.chunk_at(at - base);
            let (start, stop) = (base + span.starts[i], base + span.starts[i + 1]);
            if ahead > 0 {
                let last = (i + 1 + ahead).min(span.chunks.len());
                cache.fetch_ahead(&span.chunks[i + 1..last]);
                // Near a span's end, the next span's first chunks.
                let short = ahead - (last - (i + 1));
                if short > 0 && base + span.len() < self.len() {
                    let (_, next) = self.span_at(repo, base + span.len())?;
                    cache.fetch_ahead(&next.chunks[..short.min(next.chunks.len())]);
                }
            }
            let data = cache.get(&span.chunks[i])?;
            if data.len() as u64 != stop - start {
                return Err(Error::corrupt(format!(
                    "chunk {} holds {} bytes, the index records {}",
                    span.chunks[i].short(),
                    data.len(),
                    stop - start
                )));
            }
            let from = (at - start) as usize;
            let to = (end.min(stop) - start) as usize;
            if at == offset && end <= stop {
                return Ok((data, from..to));
            }
            out.extend_from_slice(&data[from..to]);
            at = start + to as u64;
        }
        let n = out.len();
        Ok((Arc::new(out), 0..n))
    }
}

impl Listed {
    fn lock(&self) -> std::sync::MutexGuard<'_, Learnt> {
        self.learnt.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The level-0 list holding `offset` (< size) as a span, and where it
    /// starts; learns the lists before it first.
    fn span_at(&self, repo: &Repository, offset: u64) -> Result<(u64, Arc<Span>)> {
        let mut st = self.lock();
        while st.starts.last().is_some_and(|&end| end <= offset) {
            let (i, end) = (st.starts.len() - 1, st.starts[st.starts.len() - 1]);
            let Some(id) = self.lists.get(i) else {
                return Err(mismatch(end, self.size));
            };
            let span = Arc::new(self.read_list(repo, id)?);
            let now = end + span.len();
            let last = i + 1 == self.lists.len();
            if now > self.size || (last && now != self.size) {
                return Err(mismatch(now, self.size));
            }
            st.starts.push(now);
            st.maps.put(i, span);
        }
        let i = st.starts.partition_point(|&s| s <= offset).saturating_sub(1);
        let base = st.starts[i];
        if let Some(span) = st.maps.get(&i) {
            return Ok((base, span.clone()));
        }
        let span = Arc::new(self.read_list(repo, &self.lists[i])?);
        if base + span.len() != st.starts[i + 1] {
            return Err(Error::corrupt(format!(
                "chunk list {} holds {} bytes, {} when first read",
                self.lists[i],
                span.len(),
                st.starts[i + 1] - base
            )));
        }
        st.maps.put(i, span.clone());
        Ok((base, span))
    }

    fn read_list(&self, repo: &Repository, id: &ListId) -> Result<Span> {
        let chunks = repo.load_list(id, 0)?.ids.into_iter().map(ChunkId).collect();
        Span::build(repo, chunks)
    }
}

fn mismatch(held: u64, size: u64) -> Error {
    if held > size {
        Error::corrupt(format!("its chunks hold more than the {size} bytes the snapshot records"))
    } else {
        Error::corrupt(format!("its chunks hold {held} bytes, the snapshot records {size}"))
    }
}

#[cfg(test)]
#[path = "filemap_tests.rs"]
mod tests;
