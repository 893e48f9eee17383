//! `dump`: one file of a snapshot to a writer (stdout), in order, with a
//! few chunks fetched and verified ahead in parallel.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use crossbeam_channel::{bounded, Receiver, Sender};

use crate::error::{Error, Result};
use crate::format::snapshot::Snapshot;
use crate::format::tree::NodeKind;
use crate::id::{BlobId, ChunkId, SnapshotId, TreeId};
use crate::ops::restore::resolve;
use crate::ops::stream;
use crate::repo::Repository;

/// Plaintext read as one piece of work (one window): 4 MiB, at most 256
/// chunks.
const WINDOW_BYTES: usize = 4 << 20;

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
    let chunks = repo.file_chunks(&node.content)?;
    // Windows of about WINDOW_BYTES of plaintext, read by every worker at
    // once (each window by one worker, the chunks of one group opened once
    // through the repository's unit cache) and written in order; at most
    // `ahead` windows are in flight, so memory stays bounded.
    // (The file's own average chunk: a dump's are small, a file's large.)
    let avg = (node.size / chunks.len().max(1) as u64).max(1) as usize;
    let per = (WINDOW_BYTES / avg).clamp(1, 256);
    let windows: Vec<&[ChunkId]> = chunks.chunks(per).collect();
    let workers = crate::saver::worker_count().max(2);
    let ahead = workers * 2;
    let next = AtomicUsize::new(0);
    let (done_tx, done_rx) = bounded::<(usize, Result<Vec<Vec<u8>>>)>(ahead);
    let (token_tx, token_rx) = bounded::<()>(ahead);
    for _ in 0..ahead {
        let _ = token_tx.send(());
    }
    crate::steps::reached("dump:started");
    let written = std::thread::scope(|s| {
        for _ in 0..workers.min(windows.len()) {
            let (done_tx, token_rx, windows, next) = (done_tx.clone(), token_rx.clone(), &windows, &next);
            s.spawn(move || {
                while token_rx.recv().is_ok() {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(window) = windows.get(i) else { return };
                    let res = window.iter().map(|c| repo.read_blob(&BlobId::data(*c))).collect();
                    if done_tx.send((i, res)).is_err() {
                        return;
                    }
                }
            });
        }
        drop((done_tx, token_rx));
        write_in_order(done_rx, token_tx, windows.len(), path, out)
    })?;
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

/// Writes the windows as they arrive, in order; returns the bytes written.
/// Takes the receiver and the token sender by value: whenever it returns,
/// dropping them stops the workers.
fn write_in_order(
    done_rx: Receiver<(usize, Result<Vec<Vec<u8>>>)>,
    token_tx: Sender<()>,
    windows: usize,
    path: &Path,
    out: &mut dyn Write,
) -> Result<u64> {
    let mut written = 0u64;
    let mut pending = BTreeMap::new();
    let mut want = 0;
    while want < windows {
        let (i, res) = done_rx.recv().map_err(|_| Error::corrupt("a dump worker stopped"))?;
        pending.insert(i, res);
        while let Some(res) = pending.remove(&want) {
            for data in res.map_err(|e| e.context(format!("{}", path.display())))? {
                out.write_all(&data).map_err(|e| Error::io("writing output", e))?;
                written += data.len() as u64;
            }
            want += 1;
            let _ = token_tx.send(());
        }
    }
    Ok(written)
}
