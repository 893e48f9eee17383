//! The blobs that snapshots use, gathered into a [`BlobSet`] on disk.

use crate::error::{Error, Result};
use crate::format::snapshot::Snapshot;
use crate::format::tree::Content;
use crate::id::{BlobId, SnapshotId, TreeId};
use crate::index::scratch::{BlobSet, SetWriter};
use crate::repo::Repository;

/// Marks in the set. Used blobs start at [`USED`]; the index pass raises
/// them to [`IN_MARKED`] when a marked pack holds one, and to
/// [`CLAIMED`] + n when live pack number n is the one that keeps it.
pub const USED: u32 = 1;
pub const IN_MARKED: u32 = 2;
pub const CLAIMED: u32 = 3;

/// Adds every blob the snapshots reference (trees and chunks) to `set`.
/// Trees already in the set are not read again, so shared subtrees cost
/// one read. A tree that cannot be read stops prune: it must not decide
/// what is unused from an incomplete picture.
pub fn mark_used(repo: &Repository, snapshots: &[(SnapshotId, Snapshot)], set: &mut BlobSet) -> Result<()> {
    set.with_writer(|w| {
        for (id, s) in snapshots {
            walk(repo, s.tree, w).map_err(|e| {
                Error::new(
                    e.kind(),
                    format!("snapshot {}: {e}; prune stops (run `cairn check`, then `cairn repair`)", id.short()),
                )
            })?;
        }
        Ok(())
    })
}

fn walk(repo: &Repository, root: TreeId, w: &mut SetWriter) -> Result<()> {
    let mut stack = vec![root];
    while let Some(t) = stack.pop() {
        let tb = BlobId::tree(t);
        if w.get(&tb)? != 0 {
            continue;
        }
        w.set(&tb, USED)?;
        for n in repo.load_tree(&t)? {
            match &n.content {
                Content::File(chunks) => {
                    for c in chunks {
                        let b = BlobId::data(*c);
                        if w.get(&b)? == 0 {
                            w.set(&b, USED)?;
                        }
                    }
                }
                Content::Dir(sub) => stack.push(*sub),
                _ => {}
            }
        }
    }
    Ok(())
}
