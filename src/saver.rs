//! The hash/dedup → seal → pack → backend stages of a backup.
//!
//! The caller (one thread: the walker or stream reader) chunks and hashes,
//! then hands each blob to [`Saver::save`]. A blob that the index or this
//! session already has is dropped at once; a new one goes to a pool of seal
//! workers (zstd + XChaCha20, one per core), then to the packer thread,
//! which stores packs in the background. Channels are bounded, so memory
//! stays at a few groups per worker plus a few packs in flight.
//!
//! Dedup within the session goes through [`recent::Recent`], a bounded set
//! of the blobs stored lately: a backup's memory does not grow with what
//! it stores. Dedup against earlier sessions goes through
//! [`crate::index::Known`], which answers most questions without a B-tree
//! lookup (the cache's filter for new chunks, a pack's keys for the chunks
//! stored after one found).
//!
//! In a format-2 repository new data chunks are gathered into groups of
//! consecutive chunks ([`GROUP_TARGET`] bytes) that are compressed and
//! sealed as one unit (format-spec/05-packs.md): small chunks then compress
//! as well as large ones. Trees, and a chunk as large as a group, are
//! sealed alone.

use std::thread::{Scope, ScopedJoinHandle};

use crossbeam_channel::{bounded, Sender};

use crate::error::{Error, ErrorKind, Result};
use crate::format::list::{Lister, Listing};
use crate::format::tree::Content;
use crate::id::ChunkId;
use crate::id::{BlobId, BlobKind};
use crate::index::Known;
use crate::pack::packer::{self, PackerResult, SealedBlob};
use crate::repo::Repository;
use crate::seal;

pub mod recent;

use recent::Recent;

/// Work for a seal worker: one blob, or a group of consecutive new data
/// blobs sealed as one unit.
enum Job {
    Single { kind: BlobKind, id: [u8; 32], data: Vec<u8> },
    Group { kind: BlobKind, blobs: Vec<([u8; 32], Vec<u8>)> },
}

/// A group is sealed once its plaintexts reach this many bytes (the
/// format allows up to [`crate::format::pack::MAX_GROUP`]): compression
/// then sees as much context as restic's 1 MiB chunks (256 KiB groups
/// stored 3.5 % more of a dump's first night), and a read of one blob
/// opens at most this much (plus one chunk), as a read of one of
/// restic's chunks does.
pub const GROUP_TARGET: usize = 1 << 20;

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
    repo: &'scope Repository,
    /// The index as the session started, asked in stream order.
    known: Known,
    /// Blobs this session stored lately (bounded).
    recent: Recent,
    jobs: Option<Sender<Job>>,
    workers: Vec<ScopedJoinHandle<'scope, ()>>,
    packer: Option<ScopedJoinHandle<'scope, Result<PackerResult>>>,
    pub stats: SaveStats,
    /// Store every blob once, even if the index has it (repack, rescue).
    fresh: bool,
    /// Whether new data blobs are grouped (format 2).
    grouping: bool,
    /// New data blobs waiting for their group to fill, and their bytes.
    group: Vec<([u8; 32], Vec<u8>)>,
    group_bytes: usize,
}

/// A file's content being built, chunk by chunk ([`Saver::content`]).
pub struct ContentBuilder {
    /// Whether the repository's format has chunk lists.
    lists: bool,
    lister: Lister,
    /// Without lists: every chunk, for the node.
    inline: Vec<ChunkId>,
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
        let group_level = repo.config.group_level();
        let key = repo.key.enc;
        let mut workers = Vec::with_capacity(n);
        for _ in 0..n {
            let (rx, tx) = (job_rx.clone(), blob_tx.clone());
            workers.push(scope.spawn(move || {
                for j in rx.iter() {
                    let b = match j {
                        Job::Single { kind, id, data } => {
                            let ty = crate::pack::unit_type(kind, false);
                            let sealed = seal::seal(&key, ty, &data, Some(level));
                            SealedBlob { kind, blobs: vec![(id, data.len() as u32)], sealed, grouped: false }
                        }
                        Job::Group { kind, blobs } => {
                            let plain =
                                crate::format::pack::encode_group(&blobs.iter().map(|b| &b.1).collect::<Vec<_>>());
                            let sealed =
                                seal::seal(&key, crate::pack::unit_type(kind, true), &plain, Some(group_level));
                            let blobs = blobs.iter().map(|(id, d)| (*id, d.len() as u32)).collect();
                            SealedBlob { kind, blobs, sealed, grouped: true }
                        }
                    };
                    if tx.send(b).is_err() {
                        return; // the packer stopped: its error is reported by finish()
                    }
                }
            }));
        }
        drop(blob_tx);
        let packer = scope.spawn(move || packer::run(repo, blob_rx));
        Ok(Self {
            repo,
            known: Known::new(repo.cache.reader()?),
            recent: Recent::new(),
            jobs: Some(job_tx),
            workers,
            packer: Some(packer),
            stats: SaveStats::default(),
            fresh: false,
            grouping: repo.config.layout() == crate::format::pack::PackLayout::V2,
            group: Vec::new(),
            group_bytes: 0,
        })
    }

    /// A saver that ignores the index: it stores every blob given (once),
    /// for prune's repacking and a backup's rescue of blobs in marked packs.
    pub fn start_fresh<'env>(scope: &'scope Scope<'scope, 'env>, repo: &'env Repository) -> Result<Self> {
        let mut s = Self::start(scope, repo)?;
        s.fresh = true;
        Ok(s)
    }

    /// Whether the repository (or this session, lately) already has the
    /// blob, in a pack that may be reused: not one a prune has marked for
    /// deletion. `false` for a blob that this session stored long ago and
    /// [`Recent`] forgot: storing it again is safe.
    pub fn has(&self, blob: &BlobId) -> Result<bool> {
        Ok(self.recent.contains(blob) || self.indexed(blob)?)
    }

    /// Whether an earlier session stored the blob in a pack that may be
    /// reused.
    fn indexed(&self, blob: &BlobId) -> Result<bool> {
        Ok(!self.fresh && self.known.has_live(blob)?)
    }

    /// A file's content for its node, given its chunks (already saved): in
    /// a repository of format 3, a file of more chunks than a node holds
    /// is named by chunk lists, saved here as blobs of kind tree
    /// (format-spec/07-trees.md, "Chunk lists"); otherwise the node holds
    /// the chunks.
    pub fn file_content(&mut self, chunks: Vec<ChunkId>) -> Result<Content> {
        let mut c = self.content();
        for id in chunks {
            self.add_chunk(&mut c, id)?;
        }
        self.finish_content(c)
    }

    /// Starts a file's content, to which its chunks are added as they are
    /// saved ([`Saver::add_chunk`]): lists are saved as soon as they are
    /// cut, so a large file's chunk ids are never all in memory.
    pub fn content(&self) -> ContentBuilder {
        ContentBuilder { lists: self.repo.config.has_lists(), lister: Lister::default(), inline: Vec::new() }
    }

    /// Adds the file's next chunk (already saved).
    pub fn add_chunk(&mut self, c: &mut ContentBuilder, id: ChunkId) -> Result<()> {
        if !c.lists {
            c.inline.push(id);
            return Ok(());
        }
        c.lister.push(id, &mut |enc| self.save_list(enc))
    }

    /// Saves a chunk list's encoding as a blob of kind tree; its id.
    fn save_list(&mut self, enc: Vec<u8>) -> Result<[u8; 32]> {
        let id = self.repo.key.blob_id(&enc);
        self.save(BlobKind::Tree, id, enc)?;
        Ok(id)
    }

    /// The node's content of a file whose chunks were all added.
    pub fn finish_content(&mut self, c: ContentBuilder) -> Result<Content> {
        if !c.lists {
            return Ok(Content::File(c.inline));
        }
        let listing = c.lister.finish(&mut |enc| self.save_list(enc))?;
        Ok(match listing {
            Listing::Inline(c) => Content::File(c),
            Listing::Listed { level, lists } => Content::Listed { level, lists },
        })
    }

    /// Saves a blob unless it exists. Returns whether it was new.
    pub fn save(&mut self, kind: BlobKind, id: [u8; 32], data: Vec<u8>) -> Result<bool> {
        let blob = BlobId { kind, id };
        if self.recent.touch(&blob) || self.indexed(&blob)? {
            return Ok(false);
        }
        if data.len() > u32::MAX as usize {
            return Err(Error::invalid("blob larger than 4 GiB"));
        }
        self.recent.insert(blob);
        match kind {
            BlobKind::Data => self.stats.data_blobs += 1,
            BlobKind::Tree => self.stats.tree_blobs += 1,
        }
        self.stats.raw_added += data.len() as u64;
        if self.grouping && kind == BlobKind::Data && !(self.group.is_empty() && data.len() >= GROUP_TARGET) {
            self.group_bytes += data.len();
            self.group.push((id, data));
            if self.group_bytes >= GROUP_TARGET {
                self.send_group()?;
            }
            return Ok(true);
        }
        self.send(Job::Single { kind, id, data })?;
        Ok(true)
    }

    /// Sends the waiting group (if any) to the seal workers.
    fn send_group(&mut self) -> Result<()> {
        if self.group.is_empty() {
            return Ok(());
        }
        self.group_bytes = 0;
        let blobs = std::mem::take(&mut self.group);
        self.send(Job::Group { kind: BlobKind::Data, blobs })
    }

    fn send(&mut self, job: Job) -> Result<()> {
        let jobs = self.jobs.as_ref().ok_or_else(|| Error::new(ErrorKind::Io, "saver already finished"))?;
        if jobs.send(job).is_err() {
            // The pipeline stopped; finish() returns the real error.
            return Err(self.stop_with_error());
        }
        Ok(())
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
        self.send_group()?;
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
    use std::collections::HashSet;

    fn repo(pack_size: u32, format_version: u32) -> Repository {
        std::env::set_var("CAIRN_INSECURE_TEST_KDF", "1");
        let opts = InitOptions {
            pack_size,
            format_version,
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
        fn chunk_pack_index_read_back(data in proptest::collection::vec(any::<u8>(), 0..40_000), dup in any::<bool>(),
                                      format_version in 1u32..=2) {
            let r = repo(1 << 20, format_version);
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
            // Format 2 groups small chunks (here ~1 KiB: all of them, as
            // long as a group is open); format 1 never does.
            let reader = r.cache.reader().unwrap();
            let grouped = unique.iter().filter(|id| {
                reader.get(&BlobId { kind: BlobKind::Data, id: **id }).unwrap().unwrap().inner.is_some()
            }).count();
            if format_version == 1 {
                prop_assert_eq!(grouped, 0);
            } else {
                prop_assert_eq!(grouped, unique.len());
            }
        }
    }

    /// A blob repeated after the session's set forgot it is stored again:
    /// two copies, both indexed, the data exact, and check finds nothing
    /// wrong; a repeat within the set's reach is not stored.
    #[test]
    fn a_blob_forgotten_by_the_session_is_stored_again_and_reads_back() {
        let r = repo(1 << 20, 2);
        let blobs: Vec<Vec<u8>> = (0..8u8).map(|i| vec![i; 3000]).collect();
        let ids: Vec<[u8; 32]> = blobs.iter().map(|b| r.key.blob_id(b)).collect();
        let (again, stored) = std::thread::scope(|s| {
            let mut saver = Saver::start(s, &r).unwrap();
            saver.recent = Recent::with_generation(2);
            for (id, b) in ids.iter().zip(&blobs) {
                assert!(saver.save(BlobKind::Data, *id, b.clone()).unwrap());
            }
            // 6 and 7 are in reach; 0 was forgotten.
            assert!(!saver.save(BlobKind::Data, ids[7], blobs[7].clone()).unwrap());
            assert!(saver.has(&BlobId { kind: BlobKind::Data, id: ids[6] }).unwrap());
            assert!(!saver.has(&BlobId { kind: BlobKind::Data, id: ids[0] }).unwrap());
            let again = saver.save(BlobKind::Data, ids[0], blobs[0].clone()).unwrap();
            (again, saver.finish().unwrap())
        });
        assert!(again, "a forgotten blob is stored again");
        assert_eq!(stored.indexes.len(), 1);
        let ix = r.load_index_full(&stored.indexes[0]).unwrap();
        let copies = ix.packs.iter().flat_map(|p| &p.blobs).filter(|e| e.id == ids[0]).count();
        assert_eq!(copies, 2, "both copies are indexed");
        assert_eq!(r.cache.len().unwrap(), 8);
        for (id, b) in ids.iter().zip(&blobs) {
            assert_eq!(&r.read_blob(&BlobId { kind: BlobKind::Data, id: *id }).unwrap(), b);
        }
        let report = crate::ops::check::check(&r, crate::ops::check::ReadData::All).unwrap();
        assert!(report.problems.is_empty(), "{:?}", report.problems);
        assert_eq!(report.blobs_read, 9, "every copy read and verified");
    }
}
