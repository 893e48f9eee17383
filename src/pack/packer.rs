//! The packer stage: gathers sealed blobs into packs, stores each pack in
//! the background, and writes an index object once its packs are stored.
//!
//! Write order (format-spec/10-write-order.md): a pack is named by an index
//! object only after its put has returned; the snapshot comes after all of
//! them (the caller's job).

use std::collections::VecDeque;

use crossbeam_channel::Receiver;

use super::{object_name, PackWriter};
use crate::backend::PendingPut;
use crate::error::Result;
use crate::format::index::IndexPack;
use crate::id::{BlobKind, IndexId};
use crate::repo::Repository;

/// A sealed unit ready to pack: one blob, or a group of blobs (their ids
/// and plaintext lengths, in the group's table order).
pub struct SealedBlob {
    pub kind: BlobKind,
    pub blobs: Vec<([u8; 32], u32)>,
    pub sealed: Vec<u8>,
    pub grouped: bool,
}

// Packs stored in the background at once: the backend's `connections()`
// (1 locally, 4 on S3 by default). Bounds memory to a few packs whatever
// the input's size.
/// An index object is written after this many packs, or once they hold
/// [`crate::index::ENTRIES_PER_OBJECT`] entries (small chunks: ~4 packs),
/// and at the end...
pub const PACKS_PER_INDEX: usize = 64;
/// ...or once stored packs have waited this long for one, so that an
/// interrupted backup or copy keeps (and the next run reuses) most of what
/// it stored.
pub const INDEX_EVERY: std::time::Duration = std::time::Duration::from_secs(20);

/// What the packer stored.
#[derive(Debug, Default)]
pub struct PackerResult {
    pub packs: u64,
    pub bytes: u64,
    pub indexes: Vec<IndexId>,
    /// Every pack stored, in order.
    pub pack_ids: Vec<crate::id::PackId>,
}

struct Packer<'a> {
    repo: &'a Repository,
    in_flight: VecDeque<(PendingPut, IndexPack, bytes::Bytes)>,
    stored: Vec<IndexPack>,
    last_index: std::time::Instant,
    result: PackerResult,
}

impl Packer<'_> {
    fn store(&mut self, w: PackWriter) -> Result<()> {
        let p = w.finish(&self.repo.key.enc);
        self.result.packs += 1;
        self.result.bytes += p.bytes.len() as u64;
        self.result.pack_ids.push(p.id);
        let put = self.repo.backend.spawn_put(&object_name(&p.id), p.bytes.clone());
        self.in_flight.push_back((put, IndexPack { id: p.id, blobs: p.entries }, p.bytes));
        while self.in_flight.len() > self.repo.backend.connections() {
            self.complete_one()?;
        }
        let entries: usize = self.stored.iter().map(|p| p.blobs.len()).sum();
        if self.stored.len() >= PACKS_PER_INDEX
            || entries >= crate::index::ENTRIES_PER_OBJECT
            || (!self.stored.is_empty() && self.last_index.elapsed() >= INDEX_EVERY)
        {
            self.write_index()?;
        }
        Ok(())
    }

    fn complete_one(&mut self) -> Result<()> {
        if let Some((put, ip, bytes)) = self.in_flight.pop_front() {
            put.wait()?;
            // Trees just stored go to the local tree cache, so the next
            // backup reads its parent's trees without a request.
            let trees = ip.blobs.iter().filter(|e| e.kind == BlobKind::Tree);
            let items: Vec<_> = trees
                .filter_map(|e| {
                    bytes.get(e.offset as usize..e.end() as usize).map(|s| (e.id, e.raw_length, e.inner, s))
                })
                .collect();
            if !items.is_empty() {
                self.repo.cache.put_trees(items)?;
            }
            self.stored.push(ip);
        }
        Ok(())
    }

    fn write_index(&mut self) -> Result<()> {
        if !self.stored.is_empty() {
            crate::steps::reached("store:before-index");
            let packs = std::mem::take(&mut self.stored);
            self.result.indexes.push(self.repo.save_index(packs)?);
            self.last_index = std::time::Instant::now();
        }
        Ok(())
    }
}

/// Runs the packer until `rx` closes, then stores the last packs and index.
pub fn run(repo: &Repository, rx: Receiver<SealedBlob>) -> Result<PackerResult> {
    let target = repo.config.pack_size as usize;
    let mut p = Packer {
        repo,
        in_flight: VecDeque::new(),
        stored: Vec::new(),
        last_index: std::time::Instant::now(),
        result: PackerResult::default(),
    };
    let mut data: Option<PackWriter> = None;
    let mut tree: Option<PackWriter> = None;
    let res = (|| {
        for b in rx.iter() {
            let slot = match b.kind {
                BlobKind::Data => &mut data,
                BlobKind::Tree => &mut tree,
            };
            let w = slot.get_or_insert_with(|| PackWriter::with_layout(repo.config.layout(), target + (4 << 20)));
            if b.grouped {
                w.add_group(b.kind, &b.blobs, &b.sealed);
            } else {
                for (id, raw_length) in &b.blobs {
                    w.add(b.kind, *id, &b.sealed, *raw_length);
                }
            }
            if w.len() >= target {
                let full = slot.take().expect("just used");
                p.store(full)?;
            }
        }
        for w in [data.take(), tree.take()].into_iter().flatten() {
            p.store(w)?;
        }
        while !p.in_flight.is_empty() {
            p.complete_one()?;
        }
        p.write_index()
    })();
    // On error, wait for puts already started so none is cut off mid-way.
    for (put, _, _) in p.in_flight.drain(..) {
        let _ = put.wait();
    }
    res.map(|()| p.result)
}
