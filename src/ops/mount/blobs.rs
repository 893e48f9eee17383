//! The mount's chunk cache: a bounded LRU of decrypted, verified chunks,
//! shared by every reader, with a few workers that fetch ahead.
//!
//! A chunk is read through [`Repository::read_blob`], the reader `dump`
//! uses, which verifies it against its id. Two readers asking for the same
//! chunk wait for one fetch. Fetching ahead overlaps the backend and the
//! decryption with the kernel's sequential reads; fetches that fail are not
//! cached, so the reader that needs the chunk fetches it again and sees the
//! error itself.

use std::collections::HashSet;
use std::sync::{Arc, Condvar, Mutex};

use lru::LruCache;

use crate::error::{Error, Result};
use crate::id::{BlobId, ChunkId};
use crate::repo::Repository;

/// Chunks waiting to be fetched ahead, at most.
const AHEAD_QUEUE: usize = 16;

struct State {
    lru: LruCache<ChunkId, Arc<Vec<u8>>>,
    /// Bytes held by `lru`.
    bytes: usize,
    /// Chunks being fetched now.
    loading: HashSet<ChunkId>,
}

/// The shared cache of decrypted chunks.
pub struct ChunkCache {
    repo: Arc<Repository>,
    budget: usize,
    state: Mutex<State>,
    loaded: Condvar,
    ahead: Mutex<Option<crossbeam_channel::Sender<ChunkId>>>,
}

impl ChunkCache {
    /// A cache of at most `budget` bytes of chunks (it always holds the one
    /// chunk being read), with `workers` threads fetching ahead.
    pub fn new(repo: Arc<Repository>, budget: usize, workers: usize) -> Arc<Self> {
        let cache = Arc::new(Self {
            repo,
            budget,
            state: Mutex::new(State { lru: LruCache::unbounded(), bytes: 0, loading: HashSet::new() }),
            loaded: Condvar::new(),
            ahead: Mutex::new(None),
        });
        if workers > 0 {
            let (tx, rx) = crossbeam_channel::bounded::<ChunkId>(AHEAD_QUEUE);
            for _ in 0..workers {
                let rx = rx.clone();
                // The workers hold only a weak reference, so dropping the
                // cache ends them.
                let weak = Arc::downgrade(&cache);
                std::thread::spawn(move || {
                    while let Ok(c) = rx.recv() {
                        let Some(cache) = weak.upgrade() else { break };
                        let _ = cache.get(&c);
                    }
                });
            }
            *cache.ahead.lock().unwrap_or_else(|p| p.into_inner()) = Some(tx);
        }
        cache
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The chunk's plaintext: from the cache, or fetched and verified.
    pub fn get(&self, chunk: &ChunkId) -> Result<Arc<Vec<u8>>> {
        {
            let mut st = self.lock();
            loop {
                if let Some(d) = st.lru.get(chunk) {
                    return Ok(d.clone());
                }
                if !st.loading.contains(chunk) {
                    st.loading.insert(*chunk);
                    break;
                }
                st = self.loaded.wait(st).unwrap_or_else(|p| p.into_inner());
            }
        }
        let fetched = self.repo.read_blob(&BlobId::data(*chunk)).map(Arc::new);
        let mut st = self.lock();
        st.loading.remove(chunk);
        if let Ok(d) = &fetched {
            st.bytes += d.len();
            if let Some(old) = st.lru.put(*chunk, d.clone()) {
                st.bytes -= old.len();
            }
            while st.bytes > self.budget && st.lru.len() > 1 {
                match st.lru.pop_lru() {
                    Some((_, old)) => st.bytes -= old.len(),
                    None => break,
                }
            }
        }
        self.loaded.notify_all();
        fetched
    }

    /// Asks the workers to fetch chunks that are neither cached nor being
    /// fetched. Never blocks: a full queue drops the request.
    pub fn fetch_ahead(&self, chunks: &[ChunkId]) {
        let want: Vec<ChunkId> = {
            let st = self.lock();
            chunks.iter().filter(|c| !st.lru.contains(*c) && !st.loading.contains(*c)).copied().collect()
        };
        let ahead = self.ahead.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tx) = ahead.as_ref() {
            for c in want {
                if tx.try_send(c).is_err() {
                    break;
                }
            }
        }
    }

    /// Bytes of chunks held now.
    pub fn held(&self) -> usize {
        self.lock().bytes
    }
}

/// Bytes read from a file: `buf[range]`.
pub type Slice = (Arc<Vec<u8>>, std::ops::Range<usize>);

/// Where a file's chunks start: the map a read at any offset needs.
#[derive(Debug)]
pub struct FileMap {
    pub chunks: Vec<ChunkId>,
    /// `starts[i]` is the file offset of chunk `i`; one more entry holds the
    /// file's length.
    pub starts: Vec<u64>,
}

impl FileMap {
    /// Builds the map from the index's plaintext lengths. A chunk missing
    /// from the index, or lengths that do not add up to the recorded size,
    /// are errors.
    pub fn build(repo: &Repository, chunks: &[ChunkId], size: u64) -> Result<Self> {
        let reader = repo.cache.reader()?;
        let mut starts = Vec::with_capacity(chunks.len() + 1);
        let mut at = 0u64;
        for c in chunks {
            starts.push(at);
            let loc = reader
                .get(&BlobId::data(*c))?
                .ok_or_else(|| Error::corrupt(format!("chunk {} is not in the index", c.short())))?;
            at += u64::from(loc.raw_length);
        }
        starts.push(at);
        if at != size {
            return Err(Error::corrupt(format!("its chunks hold {at} bytes, the snapshot records {size}")));
        }
        Ok(Self { chunks: chunks.to_vec(), starts })
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

    /// Reads up to `size` bytes at `offset` through the cache and asks for
    /// the next `ahead` chunks to be fetched. The bytes are `buf[range]`:
    /// the cached chunk itself when they lie in one chunk (the common case,
    /// no copy), else a buffer put together.
    pub fn read(&self, cache: &ChunkCache, offset: u64, size: usize, ahead: usize) -> Result<Slice> {
        let end = self.len().min(offset.saturating_add(size as u64));
        if offset >= end {
            return Ok((Arc::new(Vec::new()), 0..0));
        }
        let mut out: Vec<u8> = Vec::new();
        let mut at = offset;
        while at < end {
            let i = self.chunk_at(at);
            let (start, stop) = (self.starts[i], self.starts[i + 1]);
            if i + 1 < self.chunks.len() && ahead > 0 {
                let last = (i + 1 + ahead).min(self.chunks.len());
                cache.fetch_ahead(&self.chunks[i + 1..last]);
            }
            let data = cache.get(&self.chunks[i])?;
            if data.len() as u64 != stop - start {
                return Err(Error::corrupt(format!(
                    "chunk {} holds {} bytes, the index records {}",
                    self.chunks[i].short(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_at_finds_the_chunk_holding_an_offset() {
        let m =
            FileMap { chunks: vec![ChunkId([1; 32]), ChunkId([2; 32]), ChunkId([3; 32])], starts: vec![0, 10, 25, 30] };
        assert_eq!(m.len(), 30);
        assert_eq!(m.chunk_at(0), 0);
        assert_eq!(m.chunk_at(9), 0);
        assert_eq!(m.chunk_at(10), 1);
        assert_eq!(m.chunk_at(24), 1);
        assert_eq!(m.chunk_at(25), 2);
        assert_eq!(m.chunk_at(29), 2);
    }
}
