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

use crate::error::Result;
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

    /// The repository chunks are read from.
    pub fn repo(&self) -> &Repository {
        &self.repo
    }

    /// Bytes of chunks held now.
    pub fn held(&self) -> usize {
        self.lock().bytes
    }
}

/// Bytes read from a file: `buf[range]`.
pub type Slice = (Arc<Vec<u8>>, std::ops::Range<usize>);
