//! `dump`: one file of a snapshot to a writer (stdout), in order, with a
//! few chunks fetched and verified ahead in parallel.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use crossbeam_channel::{bounded, Receiver, Sender};

use crate::error::{Error, Result};
use crate::format::snapshot::Snapshot;
use crate::format::tree::{Content, Node, NodeKind};
use crate::id::{BlobId, ChunkId, SnapshotId, TreeId};
use crate::index::ListItem;
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
    write_file(repo, &node, path, out)
}

/// Writes the content of the file `node` to `out`, in order, checking its
/// size; `path` names it in errors. Memory stays bounded whatever the
/// file's size (restore writes a listed file this way too).
pub fn write_file(repo: &Repository, node: &Node, path: &Path, out: &mut dyn Write) -> Result<u64> {
    // Windows of about WINDOW_BYTES of plaintext (at most 256 chunks),
    // cut by a producer as it walks the file's chunks (a listed file's
    // lists one at a time: its ids are never all in memory), read by every
    // worker at once (each window by one worker, the chunks of one group
    // opened once through the repository's unit cache) and written in
    // order. The producer takes a token per window and the writer gives it
    // back once the window is written, so at most `ahead` windows are in
    // flight and memory stays bounded whatever the file's size.
    let workers = crate::saver::worker_count().max(2);
    let ahead = workers * 2;
    let (work_tx, work_rx) = bounded::<(usize, Vec<ChunkId>)>(ahead);
    let (done_tx, done_rx) = bounded::<(usize, Result<Vec<Vec<u8>>>)>(ahead);
    let (token_tx, token_rx) = bounded::<()>(ahead);
    for _ in 0..ahead {
        let _ = token_tx.send(());
    }
    crate::steps::reached("dump:started");
    let written = std::thread::scope(|s| {
        let content = &node.content;
        let producer = s.spawn(move || windows(repo, content, &work_tx, &token_rx));
        for _ in 0..workers {
            let (done_tx, work_rx) = (done_tx.clone(), work_rx.clone());
            s.spawn(move || {
                for (i, window) in work_rx.iter() {
                    let res = window.iter().map(|c| repo.read_blob(&BlobId::data(*c))).collect();
                    if done_tx.send((i, res)).is_err() {
                        return;
                    }
                }
            });
        }
        drop((done_tx, work_rx));
        let written = write_in_order(done_rx, token_tx, path, out);
        let made = producer.join().unwrap_or_else(|_| Err(Error::corrupt("the dump's producer panicked")));
        // The producer's error first: it is why the windows stopped.
        let (made, (written, wrote)) = (made?, written?);
        if wrote != made {
            return Err(Error::corrupt(format!("{}: {wrote} of {made} windows written", path.display())));
        }
        Ok(written)
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

/// Cuts a file's chunks into windows and sends them, numbered, a token
/// each; returns how many it sent. Stops early (with `Ok`) when the writer
/// has gone.
fn windows(
    repo: &Repository,
    content: &Content,
    work: &Sender<(usize, Vec<ChunkId>)>,
    tokens: &Receiver<()>,
) -> Result<usize> {
    let reader = repo.cache.reader()?;
    let mut sent = 0usize;
    let mut window: Vec<ChunkId> = Vec::new();
    let mut bytes = 0usize;
    let mut gone = false;
    let mut flush = |window: &mut Vec<ChunkId>, bytes: &mut usize| -> bool {
        if window.is_empty() {
            return true;
        }
        if tokens.recv().is_err() || work.send((sent, std::mem::take(window))).is_err() {
            return false;
        }
        sent += 1;
        *bytes = 0;
        true
    };
    let mut add = |chunks: &[ChunkId]| -> Result<bool> {
        for c in chunks {
            // The chunk's size from the index (a chunk it lacks is
            // reported by the worker that reads it).
            let len = reader.get(&BlobId::data(*c))?.map_or(1, |l| l.raw_length as usize);
            window.push(*c);
            bytes += len;
            if (bytes >= WINDOW_BYTES || window.len() == 256) && !flush(&mut window, &mut bytes) {
                gone = true;
                return Ok(false);
            }
        }
        Ok(true)
    };
    match content {
        Content::Listed { level, lists } => repo.walk_lists(*level, lists, &mut |item| match item {
            ListItem::List(..) => Ok(true),
            ListItem::Chunks(c) => add(c),
        })?,
        c => {
            add(&repo.file_chunks(c)?)?;
        }
    }
    if !gone {
        flush(&mut window, &mut bytes);
    }
    Ok(sent)
}

/// Writes the windows as they arrive, in order, until the workers are
/// done; returns the bytes and the windows written. Takes the receiver and
/// the token sender by value: whenever it returns, dropping them stops the
/// producer and the workers.
fn write_in_order(
    done_rx: Receiver<(usize, Result<Vec<Vec<u8>>>)>,
    token_tx: Sender<()>,
    path: &Path,
    out: &mut dyn Write,
) -> Result<(u64, usize)> {
    let mut written = 0u64;
    let mut pending = BTreeMap::new();
    let mut want = 0;
    for (i, res) in done_rx.iter() {
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
    Ok((written, want))
}
