//! `dump`: one file of a snapshot to a writer (stdout), in order, with a
//! few chunks fetched and verified ahead in parallel.

use std::io::Write;
use std::path::Path;

use crate::error::{Error, Result};
use crate::format::snapshot::Snapshot;
use crate::format::tree::NodeKind;
use crate::id::{BlobId, SnapshotId, TreeId};
use crate::ops::restore::resolve;
use crate::ops::stream;
use crate::repo::Repository;

/// Chunks fetched ahead of the writer.
const WINDOW: usize = 8;

/// Writes the file at `path` of snapshot `snap` to `out`; for the file of a
/// stream snapshot, hashes what it writes and fails at the end when the
/// size or SHA-256 differ from the snapshot's record (the bytes are
/// written all the same: the caller's exit status tells).
pub fn dump_snapshot(
    repo: &Repository,
    id: &SnapshotId,
    snap: &Snapshot,
    path: &Path,
    out: &mut dyn Write,
) -> Result<u64> {
    let Some(st) = stream::stream_at(snap, path) else { return dump(repo, snap.tree, path, out) };
    let mut h = stream::HashingWriter::new(out);
    dump(repo, snap.tree, path, &mut h)?;
    let (size, sha) = h.finish();
    stream::compare(id, snap, st, size, &sha)?;
    Ok(size)
}

/// Writes the file at `path` in the snapshot tree `root` to `out`.
/// Returns the number of bytes written.
pub fn dump(repo: &Repository, root: TreeId, path: &Path, out: &mut dyn Write) -> Result<u64> {
    let (node, _) = resolve(repo, root, path)?;
    let node = node.ok_or_else(|| Error::invalid("give the path of a file to dump"))?;
    if node.kind != NodeKind::File {
        return Err(Error::invalid(format!("{} is not a regular file ({:?})", path.display(), node.kind)));
    }
    let chunks = node.chunks();
    let workers = crate::saver::worker_count().clamp(2, WINDOW);
    let mut written = 0u64;
    crate::steps::reached("dump:started");
    for window in chunks.chunks(WINDOW) {
        let mut results: Vec<Option<Result<Vec<u8>>>> = (0..window.len()).map(|_| None).collect();
        std::thread::scope(|s| {
            let per = window.len().div_ceil(workers);
            for (part, slots) in window.chunks(per).zip(results.chunks_mut(per)) {
                s.spawn(move || {
                    for (c, slot) in part.iter().zip(slots.iter_mut()) {
                        *slot = Some(repo.read_blob(&BlobId::data(*c)));
                    }
                });
            }
        });
        for r in results {
            let data = r
                .ok_or_else(|| Error::corrupt("missing chunk result"))?
                .map_err(|e| e.context(format!("{}", path.display())))?;
            out.write_all(&data).map_err(|e| Error::io("writing output", e))?;
            written += data.len() as u64;
        }
    }
    out.flush().map_err(|e| Error::io("writing output", e))?;
    if written != node.size {
        return Err(Error::corrupt(format!(
            "{}: wrote {written} bytes, the snapshot records {}",
            path.display(),
            node.size
        )));
    }
    Ok(written)
}
