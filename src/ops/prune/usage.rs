//! The blobs that snapshots use, gathered into a [`BlobSet`] on disk.

use crate::error::{Error, Result};
use crate::format::snapshot::Snapshot;
use crate::format::tree::Content;
use crate::id::{BlobId, ChunkId, SnapshotId, TreeId};
use crate::index::scratch::{BlobSet, SetWriter};
use crate::index::ListItem;
use crate::repo::Repository;

/// Marks in the set. Used blobs start at [`USED`]; the index pass raises
/// them to [`IN_MARKED`] when a marked pack holds one, and to
/// [`CLAIMED`] + n when live pack number n is the one that keeps it.
pub const USED: u32 = 1;
pub const IN_MARKED: u32 = 2;
pub const CLAIMED: u32 = 3;

/// Adds every blob the snapshots reference (trees, chunk lists and chunks)
/// to `set`.
/// Trees already in the set are not read again, so shared subtrees cost
/// one read. A tree that cannot be read stops prune: it must not decide
/// what is unused from an incomplete picture.
pub fn mark_used(repo: &Repository, snapshots: &[(SnapshotId, Snapshot)], set: &mut BlobSet) -> Result<()> {
    set.with_writer(|w| {
        let mut chunks = Vec::new();
        for (id, s) in snapshots {
            walk(repo, s.tree, w, &mut chunks).map_err(|e| {
                Error::new(
                    e.kind(),
                    format!("snapshot {}: {e}; prune stops (run `cairn check`, then `cairn repair`)", id.short()),
                )
            })?;
        }
        add_chunks(w, &mut chunks)
    })
}

/// Chunk ids gathered before they go into the set together, in key order
/// (the set is a B-tree on disk, and ids are random).
const CHUNK_BATCH: usize = 1 << 18;

fn walk(repo: &Repository, root: TreeId, w: &mut SetWriter, chunks: &mut Vec<ChunkId>) -> Result<()> {
    let mut stack = vec![root];
    while let Some(t) = stack.pop() {
        let tb = BlobId::tree(t);
        if w.get(&tb)? != 0 {
            continue;
        }
        w.set(&tb, USED)?;
        for n in repo.load_tree(&t)? {
            match &n.content {
                Content::File(c) => {
                    chunks.extend_from_slice(c);
                    if chunks.len() >= CHUNK_BATCH {
                        add_chunks(w, chunks)?;
                    }
                }
                Content::Listed { level, lists } => {
                    // A list already in the set was walked with its
                    // chunks: an unchanged stretch of a file costs nothing.
                    repo.walk_lists(*level, lists, &mut |item| match item {
                        ListItem::List(l, _) => {
                            let b = BlobId::list(*l);
                            if w.get(&b)? != 0 {
                                return Ok(false);
                            }
                            w.set(&b, USED)?;
                            Ok(true)
                        }
                        ListItem::Chunks(c) => {
                            chunks.extend_from_slice(c);
                            if chunks.len() >= CHUNK_BATCH {
                                add_chunks(w, chunks)?;
                            }
                            Ok(true)
                        }
                    })?;
                }
                Content::Dir(sub) => stack.push(*sub),
                _ => {}
            }
        }
    }
    Ok(())
}

/// Marks the gathered chunks used (those not in the set yet) and empties
/// the batch.
fn add_chunks(w: &mut SetWriter, chunks: &mut Vec<ChunkId>) -> Result<()> {
    chunks.sort_unstable();
    chunks.dedup();
    for c in chunks.drain(..) {
        let b = BlobId::data(c);
        if w.get(&b)? == 0 {
            w.set(&b, USED)?;
        }
    }
    Ok(())
}
