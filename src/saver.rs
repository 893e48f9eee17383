//! The hash/dedup → seal → pack → backend stages of a backup.
//!
//! The caller (one thread: the walker or stream reader) chunks and hashes,
//! then hands each blob to [`Saver::save`]. A blob that the index or this
//! session already has is dropped at once; a new one goes to a pool of seal
//! workers (zstd + XChaCha20, one per core), then to the packer thread,
//! which stores packs in the background. Channels are bounded, so memory
//! stays at a few chunks per worker plus a few packs in flight.

use std::collections::HashSet;
use std::thread::{Scope, ScopedJoinHandle};

use crossbeam_channel::{bounded, Sender};

use crate::crypto::aead::ObjectType;
use crate::error::{Error, ErrorKind, Result};
use crate::id::{BlobId, BlobKind};
use crate::index::CacheReader;
use crate::pack::packer::{self, PackerResult, SealedBlob};
use crate::repo::Repository;
use crate::seal;

struct Job {
    kind: BlobKind,
    id: [u8; 32],
    data: Vec<u8>,
}

/// Counts of what was saved.
#[derive(Debug, Default, Clone, Copy)]
pub struct SaveStats {
    pub data_blobs: u64,
    pub tree_blobs: u64,
    /// Plaintext bytes of new blobs.
    pub raw_added: u64,
}

/// Front of the save pipeline, used from one thread.
pub struct Saver<'scope> {
    reader: CacheReader,
    seen: HashSet<BlobId>,
    jobs: Option<Sender<Job>>,
    workers: Vec<ScopedJoinHandle<'scope, ()>>,
    packer: Option<ScopedJoinHandle<'scope, Result<PackerResult>>>,
    pub stats: SaveStats,
    /// Store every blob once, even if the index has it (repack, rescue).
    fresh: bool,
}

/// Number of seal workers: one per core.
pub fn worker_count() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2).clamp(1, 16)
}

impl<'scope> Saver<'scope> {
    /// Starts the workers and the packer inside `scope`.
    pub fn start<'env>(scope: &'scope Scope<'scope, 'env>, repo: &'env Repository) -> Result<Self> {
        let n = worker_count();
        let (job_tx, job_rx) = bounded::<Job>(n * 2);
        let (blob_tx, blob_rx) = bounded::<SealedBlob>(n * 2);
        let level = repo.config.compression;
        let key = repo.key.enc;
        let mut workers = Vec::with_capacity(n);
        for _ in 0..n {
            let (rx, tx) = (job_rx.clone(), blob_tx.clone());
            workers.push(scope.spawn(move || {
                for j in rx.iter() {
                    let ty = match j.kind {
                        BlobKind::Data => ObjectType::DataBlob,
                        BlobKind::Tree => ObjectType::TreeBlob,
                    };
                    let sealed = seal::seal(&key, ty, &j.data, Some(level));
                    let b = SealedBlob { kind: j.kind, id: j.id, sealed, raw_length: j.data.len() as u32 };
                    if tx.send(b).is_err() {
                        return; // the packer stopped: its error is reported by finish()
                    }
                }
            }));
        }
        drop(blob_tx);
        let packer = scope.spawn(move || packer::run(repo, blob_rx));
        Ok(Self {
            reader: repo.cache.reader()?,
            seen: HashSet::new(),
            jobs: Some(job_tx),
            workers,
            packer: Some(packer),
            stats: SaveStats::default(),
            fresh: false,
        })
    }

    /// A saver that ignores the index: it stores every blob given (once),
    /// for prune's repacking and a backup's rescue of blobs in marked packs.
    pub fn start_fresh<'env>(scope: &'scope Scope<'scope, 'env>, repo: &'env Repository) -> Result<Self> {
        let mut s = Self::start(scope, repo)?;
        s.fresh = true;
        Ok(s)
    }

    /// Whether the repository (or this session) already has the blob, in a
    /// pack that may be reused: not one a prune has marked for deletion.
    pub fn has(&self, blob: &BlobId) -> Result<bool> {
        Ok(self.seen.contains(blob) || (!self.fresh && self.reader.get_live(blob)?.is_some()))
    }

    /// Saves a blob unless it exists. Returns whether it was new.
    pub fn save(&mut self, kind: BlobKind, id: [u8; 32], data: Vec<u8>) -> Result<bool> {
        let blob = BlobId { kind, id };
        if self.has(&blob)? {
            return Ok(false);
        }
        if data.len() > u32::MAX as usize {
            return Err(Error::invalid("blob larger than 4 GiB"));
        }
        self.seen.insert(blob);
        match kind {
            BlobKind::Data => self.stats.data_blobs += 1,
            BlobKind::Tree => self.stats.tree_blobs += 1,
        }
        self.stats.raw_added += data.len() as u64;
        let jobs = self.jobs.as_ref().ok_or_else(|| Error::new(ErrorKind::Io, "saver already finished"))?;
        if jobs.send(Job { kind, id, data }).is_err() {
            // The pipeline stopped; finish() returns the real error.
            return Err(self.stop_with_error());
        }
        Ok(true)
    }

    fn stop_with_error(&mut self) -> Error {
        match self.join() {
            Err(e) => e,
            Ok(_) => Error::new(ErrorKind::Io, "the save pipeline stopped unexpectedly"),
        }
    }

    fn join(&mut self) -> Result<PackerResult> {
        self.jobs = None;
        for w in self.workers.drain(..) {
            w.join().map_err(|_| Error::new(ErrorKind::Io, "a seal worker panicked"))?;
        }
        match self.packer.take() {
            Some(p) => p.join().map_err(|_| Error::new(ErrorKind::Io, "the packer panicked"))?,
            None => Err(Error::new(ErrorKind::Io, "the save pipeline already stopped")),
        }
    }

    /// Flushes everything: when this returns `Ok`, every saved blob is in a
    /// stored pack named by a stored index object.
    pub fn finish(mut self) -> Result<PackerResult> {
        self.join()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Backend;
    use crate::chunker::Chunker;
    use crate::repo::{CacheMode, InitOptions};
    use proptest::prelude::*;

    fn repo(pack_size: u32) -> Repository {
        std::env::set_var("CAIRN_INSECURE_TEST_KDF", "1");
        let opts = InitOptions {
            pack_size,
            chunker: Some(crate::format::config::ChunkerParams {
                min_size: 256,
                avg_size: 1024,
                max_size: 4096,
                seed: 11,
            }),
            ..Default::default()
        };
        Repository::init(Backend::memory().unwrap(), b"pw", &opts, CacheMode::Memory).unwrap()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(16))]
        /// chunk -> seal -> pack -> index -> read back, through the real
        /// pipeline, with packs small enough that several are written.
        #[test]
        fn chunk_pack_index_read_back(data in proptest::collection::vec(any::<u8>(), 0..40_000), dup in any::<bool>()) {
            let r = repo(1 << 20);
            let chunker = Chunker::new(&r.config.chunker).unwrap();
            let chunks: Vec<Vec<u8>> = chunker.stream(&data[..]).map(|c| c.unwrap()).collect();
            let (ids, stored) = std::thread::scope(|s| {
                let mut saver = Saver::start(s, &r).unwrap();
                let mut ids = Vec::new();
                for c in chunks.iter().chain(if dup { chunks.iter() } else { [].iter() }) {
                    let id = r.key.blob_id(c);
                    saver.save(BlobKind::Data, id, c.clone()).unwrap();
                    ids.push(id);
                }
                (ids, saver.finish().unwrap())
            });
            // Every blob is stored once, is indexed, and reads back verified.
            let unique: HashSet<[u8; 32]> = ids.iter().copied().collect();
            prop_assert_eq!(r.cache.len().unwrap() as usize, unique.len());
            prop_assert_eq!(stored.indexes.len(), usize::from(!unique.is_empty()));
            let mut back = Vec::new();
            for id in &ids[..chunks.len()] {
                back.extend(r.read_blob(&BlobId { kind: BlobKind::Data, id: *id }).unwrap());
            }
            prop_assert_eq!(back, data);
            // A fresh open (empty cache) finds the same through index objects.
            let again = Repository::open(r.backend.clone(), b"pw", CacheMode::Memory).unwrap();
            prop_assert_eq!(again.cache.len().unwrap() as usize, unique.len());
        }
    }
}
