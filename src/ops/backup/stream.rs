//! Backing up one stream (stdin or a command's stdout) as a one-file snapshot.
//!
//! Nothing is committed until the stream has ended, its producer has exited
//! with status 0, and it was not empty (unless allowed): a failed or empty
//! dump never becomes a snapshot.

use std::io::Read;

use chrono::Local;

use super::progress::Progress;
use super::{find_parent, hostname_or, write_snapshot, BackupOptions, BackupOutcome, Recheck};
use crate::chunker::Chunker;
use crate::error::{Error, ErrorKind, Result};
use crate::format::snapshot::{StreamInfo, Summary};
use crate::format::tree::{self, Content, Node, NodeKind};
use crate::id::{BlobKind, ChunkId, TreeId};
use crate::repo::Repository;
use crate::saver::Saver;
use crate::source::stream::{CommandSource, ThreadedHashingReader};

/// Where the stream comes from.
pub enum StreamInput {
    Stdin,
    Command(Vec<String>),
}

fn check_filename(name: &str) -> Result<()> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') || name.contains('\0') || name.len() > 255 {
        return Err(Error::invalid(format!("--stdin-filename {name:?} must be a plain file name")));
    }
    Ok(())
}

/// Backs up a stream into a snapshot holding one file, `filename`.
pub fn backup_stream(
    repo: &Repository,
    input: StreamInput,
    filename: &str,
    allow_empty: bool,
    opts: &BackupOptions,
) -> Result<BackupOutcome> {
    check_filename(filename)?;
    let start = Local::now().fixed_offset();
    let host = hostname_or(&opts.host);
    let paths = vec![format!("/{filename}")];
    let parent = find_parent(repo, &host, &paths)?.map(|p| p.0);
    let (command, reader): (Option<CommandSource>, Box<dyn Read + Send>) = match &input {
        StreamInput::Stdin => {
            if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
                return Err(Error::invalid("stdin is a terminal: pipe the data in (or use --stdin-from-command)"));
            }
            (None, Box::new(std::io::stdin()))
        }
        StreamInput::Command(argv) => {
            let (src, out) = CommandSource::spawn(argv)?;
            (Some(src), Box::new(out))
        }
    };
    let chunker = Chunker::new(&repo.config.chunker)?;
    let mut progress = Progress::new(opts.progress, None);
    let mut command = command;
    let recheck = Recheck::start(repo)?;
    let result = std::thread::scope(|scope| -> Result<_> {
        let mut saver = Saver::start(scope, repo)?;
        let mut stream = chunker.stream(ThreadedHashingReader::new(reader));
        let mut chunks = Vec::new();
        while let Some(c) = stream.next_chunk().map_err(|e| Error::io("reading the stream", e))? {
            let id = repo.key.blob_id(&c);
            progress.bytes(c.len() as u64);
            saver.save(BlobKind::Data, id, c)?;
            chunks.push(ChunkId(id));
        }
        let (hashing, _) = stream.into_parts();
        let (size, sha256) = hashing.finish();
        // The producer's verdict comes before anything is committed. On an
        // error return, the saver still stores what it has (unreferenced).
        if let Some(cmd) = command.take() {
            cmd.wait()?;
        }
        if size == 0 && !allow_empty {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                "the stream was empty (0 bytes); no snapshot was written (use --allow-empty if that is expected)",
            ));
        }
        let node = stream_node(filename, size, chunks);
        let enc = tree::encode(std::slice::from_ref(&node))?;
        let tree_id = repo.key.blob_id(&enc);
        saver.save(BlobKind::Tree, tree_id, enc)?;
        let stats = saver.stats;
        let stored = saver.finish()?;
        Ok((TreeId(tree_id), size, sha256, stats, stored))
    });
    progress.finish();
    if let Some(cmd) = command {
        cmd.kill();
    }
    let (tree, size, sha256, stats, stored) = result?;
    let summary = Summary {
        files_new: 1,
        total_files_processed: 1,
        total_bytes_processed: size,
        data_blobs: stats.data_blobs,
        tree_blobs: stats.tree_blobs,
        data_added: stored.bytes,
        ..Default::default()
    };
    let stream = StreamInfo {
        filename: filename.to_string(),
        size,
        sha256,
        command: match input {
            StreamInput::Command(argv) => Some(argv),
            StreamInput::Stdin => None,
        },
    };
    let (id, snapshot) =
        write_snapshot(repo, opts, paths, Vec::new(), tree, parent, summary, start, Some(stream), (recheck, &stored))?;
    Ok(BackupOutcome { id, snapshot, stored })
}

/// The single file node of a stream snapshot.
fn stream_node(filename: &str, size: u64, chunks: Vec<ChunkId>) -> Node {
    let now = Local::now().timestamp_nanos_opt().unwrap_or(0);
    Node {
        name: filename.as_bytes().to_vec(),
        kind: NodeKind::File,
        mode: 0o644,
        uid: current_uid(),
        gid: current_gid(),
        user: String::new(),
        group: String::new(),
        mtime_ns: now,
        ctime_ns: now,
        size,
        inode: 0,
        device: 0,
        nlink: 1,
        content: Content::File(chunks),
        xattrs: Vec::new(),
    }
}

fn current_uid() -> u32 {
    // SAFETY: getuid has no preconditions and cannot fail.
    unsafe { libc::getuid() }
}

fn current_gid() -> u32 {
    // SAFETY: getgid has no preconditions and cannot fail.
    unsafe { libc::getgid() }
}
