//! Backing up streams (stdin, a command's stdout, any reader) as a snapshot
//! holding one file per stream.
//!
//! Streams are read one after another, each through the chunker and the
//! saver, each with its own size and SHA-256. Nothing is committed until
//! every stream has ended, every producer has exited with status 0, and no
//! stream was empty (unless allowed): a failed or empty dump never becomes
//! a snapshot (packs already stored stay unreferenced, for prune).

use std::io::Read;

use chrono::Local;

use super::progress::Progress;
use super::{find_parent, hostname_or, write_snapshot, BackupOptions, BackupOutcome, Recheck};
use crate::chunker::Chunker;
use crate::error::{Error, ErrorKind, Result};
use crate::format::config::DataKind;
use crate::format::snapshot::{StreamInfo, Summary};
use crate::format::tree::{self, Content, Node, NodeKind};
use crate::id::{BlobKind, ChunkId, TreeId};
use crate::repo::Repository;
use crate::saver::{ContentBuilder, Saver};
use crate::source::stream::{CommandSource, ThreadedHashingReader};

/// Where a stream comes from.
pub enum StreamInput {
    /// Standard input (at most one stream of a snapshot).
    Stdin,
    /// The stdout of a command (`--stdin-from-command`), run with cairn's
    /// environment.
    Command(Vec<String>),
    /// The stdout of a command run with extra environment variables.
    CommandWithEnv(CommandSpec),
    /// Any reader (a Redis RDB transfer, ...). Read to its end; an error
    /// it returns fails the backup.
    Reader(Box<dyn Read + Send>),
}

impl std::fmt::Debug for StreamInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StreamInput::Stdin => f.write_str("Stdin"),
            StreamInput::Command(argv) => f.debug_tuple("Command").field(argv).finish(),
            StreamInput::CommandWithEnv(spec) => f.debug_tuple("CommandWithEnv").field(spec).finish(),
            StreamInput::Reader(_) => f.write_str("Reader(..)"),
        }
    }
}

/// A command and the environment variables it gets on top of cairn's.
/// The snapshot records `argv` only (the environment may hold secrets).
#[derive(Clone, PartialEq, Eq, Default)]
pub struct CommandSpec {
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
}

impl std::fmt::Debug for CommandSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Names only: values may be passwords.
        let names: Vec<&str> = self.env.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("CommandSpec").field("argv", &self.argv).field("env", &names).finish()
    }
}

/// One stream of a snapshot: its file's name in the root tree, and where
/// its bytes come from.
#[derive(Debug)]
pub struct NamedStream {
    pub filename: String,
    pub input: StreamInput,
}

impl NamedStream {
    pub fn new(filename: impl Into<String>, input: StreamInput) -> Self {
        Self { filename: filename.into(), input }
    }
}

impl StreamInput {
    /// The command recorded in the snapshot, if any.
    fn argv(&self) -> Option<&[String]> {
        match self {
            StreamInput::Command(argv) => Some(argv),
            StreamInput::CommandWithEnv(spec) => Some(&spec.argv),
            StreamInput::Stdin | StreamInput::Reader(_) => None,
        }
    }
}

fn check_filename(name: &str) -> Result<()> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') || name.contains('\0') || name.len() > 255 {
        return Err(Error::invalid(format!("stream file name {name:?} (--stdin-filename) must be a plain file name")));
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
    backup_streams(repo, vec![NamedStream::new(filename, input)], allow_empty, opts)
}

/// Backs up `inputs`, read one after another in that order, into one
/// snapshot holding one file per stream (format-spec/09-snapshots.md:
/// `stream` for one, `streams` for several). Fails, writing no snapshot,
/// when a command exits non-zero, a reader fails, or a stream is empty and
/// `allow_empty` is false; the streams after a failed one are not started.
pub fn backup_streams(
    repo: &Repository,
    inputs: Vec<NamedStream>,
    allow_empty: bool,
    opts: &BackupOptions,
) -> Result<BackupOutcome> {
    if inputs.is_empty() {
        return Err(Error::invalid("a stream backup needs at least one stream"));
    }
    let mut names: Vec<&str> = Vec::with_capacity(inputs.len());
    for s in &inputs {
        check_filename(&s.filename)?;
        if names.contains(&s.filename.as_str()) {
            return Err(Error::invalid(format!("two streams are named {:?}", s.filename)));
        }
        names.push(&s.filename);
    }
    if inputs.iter().filter(|s| matches!(s.input, StreamInput::Stdin)).count() > 1 {
        return Err(Error::invalid("standard input can be read as one stream only"));
    }
    if inputs.iter().any(|s| matches!(s.input, StreamInput::Stdin))
        && std::io::IsTerminal::is_terminal(&std::io::stdin())
    {
        return Err(Error::invalid("stdin is a terminal: pipe the data in (or use --stdin-from-command)"));
    }
    let start = Local::now().fixed_offset();
    let host = hostname_or(&opts.host);
    let mut paths: Vec<String> = inputs.iter().map(|s| format!("/{}", s.filename)).collect();
    paths.sort();
    let parent = find_parent(repo, &host, &paths)?.map(|p| p.0);
    let chunker = Chunker::new(&repo.config.chunker_for(DataKind::Dump))?;
    let mut progress = Progress::new(opts.progress, None);
    let single = inputs.len() == 1;
    let recheck = Recheck::start(repo)?;
    let result = std::thread::scope(|scope| -> Result<_> {
        let mut saver = Saver::start(scope, repo)?;
        let mut nodes = Vec::with_capacity(inputs.len());
        let mut infos = Vec::with_capacity(inputs.len());
        for NamedStream { filename, input } in inputs {
            let command = input.argv().map(<[String]>::to_vec);
            let (content, size, sha256) = read_stream(repo, &chunker, &mut saver, &mut progress, input)
                .map_err(|e| if single { e } else { e.context(format!("stream {filename}")) })?;
            if size == 0 && !allow_empty {
                return Err(Error::new(
                    ErrorKind::InvalidInput,
                    if single {
                        "the stream was empty (0 bytes); no snapshot was written (use --allow-empty if that is expected)"
                            .to_string()
                    } else {
                        format!("stream {filename} was empty (0 bytes); no snapshot was written")
                    },
                ));
            }
            nodes.push(stream_node(&filename, size, saver.finish_content(content)?));
            infos.push(StreamInfo { filename, size, sha256, command });
        }
        nodes.sort_by(|a, b| a.name.cmp(&b.name));
        let enc = tree::encode(&nodes)?;
        let tree_id = repo.key.blob_id(&enc);
        saver.save(BlobKind::Tree, tree_id, enc)?;
        let stats = saver.stats;
        let stored = saver.finish()?;
        Ok((TreeId(tree_id), infos, stats, stored))
    });
    progress.finish();
    let (tree, infos, stats, stored) = result?;
    let size: u64 = infos.iter().map(|s| s.size).sum();
    let summary = Summary {
        files_new: infos.len() as u64,
        total_files_processed: infos.len() as u64,
        total_bytes_processed: size,
        data_blobs: stats.data_blobs,
        tree_blobs: stats.tree_blobs,
        data_added: stored.bytes,
        ..Default::default()
    };
    let (id, snapshot) =
        write_snapshot(repo, opts, paths, Vec::new(), tree, parent, summary, start, infos, (recheck, &stored))?;
    Ok(BackupOutcome { id, snapshot, stored })
}

/// Reads one stream to its end through the chunker into the saver; for a
/// command, waits for it and fails on a non-zero exit (quoting its
/// stderr), and kills it when reading fails first. Returns the chunks,
/// the size and the SHA-256 of what was read.
fn read_stream(
    repo: &Repository,
    chunker: &Chunker,
    saver: &mut Saver<'_>,
    progress: &mut Progress,
    input: StreamInput,
) -> Result<(ContentBuilder, u64, String)> {
    let (mut command, reader): (Option<CommandSource>, Box<dyn Read + Send>) = match input {
        StreamInput::Stdin => (None, Box::new(std::io::stdin())),
        StreamInput::Reader(r) => (None, r),
        StreamInput::Command(argv) => {
            let (src, out) = CommandSource::spawn(&argv)?;
            (Some(src), Box::new(out))
        }
        StreamInput::CommandWithEnv(spec) => {
            let (src, out) = CommandSource::spawn_with_env(&spec.argv, &spec.env)?;
            (Some(src), Box::new(out))
        }
    };
    // The chunk ids go into lists as they come (format 3): a dump's ids
    // are never all in memory.
    let mut content = saver.content();
    let mut stream = chunker.stream(ThreadedHashingReader::new(reader));
    let read = (|| -> Result<()> {
        while let Some(c) = stream.next_chunk().map_err(|e| Error::io("reading the stream", e))? {
            let id = repo.key.blob_id(&c);
            progress.bytes(c.len() as u64);
            saver.save(BlobKind::Data, id, c)?;
            saver.add_chunk(&mut content, ChunkId(id))?;
        }
        Ok(())
    })();
    if let Err(e) = read {
        if let Some(cmd) = command.take() {
            cmd.kill();
        }
        return Err(e);
    }
    let (hashing, _) = stream.into_parts();
    let (size, sha256) = hashing.finish();
    // The producer's verdict comes before anything is committed (and
    // before an empty stream is reported: a failed pg_dump writes nothing).
    if let Some(cmd) = command.take() {
        cmd.wait()?;
    }
    Ok((content, size, sha256))
}

/// The file node of one stream.
fn stream_node(filename: &str, size: u64, content: Content) -> Node {
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
        content,
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
