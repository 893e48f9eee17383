//! `backup`: a directory tree or a stream into a new snapshot.
//!
//! The snapshot is written last, after [`crate::saver::Saver::finish`] has
//! stored every pack and index object (format-spec/10-write-order.md).

mod progress;
pub(crate) mod recheck;
mod stream;
mod tree;

pub use stream::{backup_stream, backup_streams, CommandSpec, NamedStream, StreamInput};
pub use tree::{absolute, backup_paths};

use recheck::Recheck;

use chrono::{DateTime, FixedOffset, Local};

use crate::error::Result;
use crate::format::snapshot::{Snapshot, Summary};
use crate::id::{SnapshotId, TreeId};
use crate::pack::packer::PackerResult;
use crate::repo::Repository;

/// Options shared by tree and stream backups.
#[derive(Clone, Debug, Default)]
pub struct BackupOptions {
    pub tags: Vec<String>,
    /// Overrides the hostname recorded (and used to find the parent).
    pub host: Option<String>,
    /// Overrides the snapshot's time (imports, tests of retention).
    pub time: Option<DateTime<FixedOffset>>,
    pub excludes: Vec<String>,
    pub exclude_files: Vec<std::path::PathBuf>,
    pub one_file_system: bool,
    /// Re-read every file even when the parent says it is unchanged.
    pub force: bool,
    /// Use this parent instead of the latest matching snapshot.
    pub parent: Option<SnapshotId>,
    /// Show a progress bar (the CLI sets it when on a terminal).
    pub progress: bool,
    /// A directory prefetch the caller started already (the CLI does,
    /// before opening the repository, for a head start); else the backup
    /// starts one.
    pub prefetch: Option<std::sync::Arc<crate::source::prefetch::Prefetch>>,
    /// The lock this backup holds: checked to be fresh before the snapshot
    /// is committed (format-spec/10-write-order.md, rule 11).
    pub lock: Option<std::sync::Arc<crate::repo::lock::LockGuard>>,
    /// Called once every file is read and stored, before the snapshot is
    /// committed: a PostgreSQL base backup ends the backup on the server
    /// there and returns what the snapshot records of it.
    pub before_commit: Option<BeforeCommit>,
    /// What the paths hold, which picks the chunker: files, or a dump
    /// (a PostgreSQL base backup sets it).
    pub data: crate::format::config::DataKind,
}

/// See [`BackupOptions::before_commit`].
#[derive(Clone)]
pub struct BeforeCommit(pub std::sync::Arc<dyn Fn() -> Result<crate::format::snapshot::PgInfo> + Send + Sync>);

impl std::fmt::Debug for BeforeCommit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BeforeCommit(..)")
    }
}

/// What a backup did.
#[derive(Debug)]
pub struct BackupOutcome {
    pub id: SnapshotId,
    pub snapshot: Snapshot,
    pub stored: PackerResult,
}

pub fn hostname_or(host: &Option<String>) -> String {
    host.clone().unwrap_or_else(|| {
        hostname::get().map(|h| h.to_string_lossy().into_owned()).unwrap_or_else(|_| "unknown".into())
    })
}

/// The latest snapshot of the same host and the same set of paths.
pub fn find_parent(repo: &Repository, host: &str, paths: &[String]) -> Result<Option<(SnapshotId, Snapshot)>> {
    let mut want: Vec<&String> = paths.iter().collect();
    want.sort();
    Ok(repo.snapshots()?.into_iter().rev().find(|(_, s)| {
        let mut have: Vec<&String> = s.paths.iter().collect();
        have.sort();
        s.hostname == host && have == want
    }))
}

/// Assembles and stores the snapshot, after all data is stored.
#[allow(clippy::too_many_arguments)]
fn write_snapshot(
    repo: &Repository,
    opts: &BackupOptions,
    paths: Vec<String>,
    excludes: Vec<String>,
    tree: TreeId,
    parent: Option<SnapshotId>,
    summary: Summary,
    start: DateTime<FixedOffset>,
    streams: Vec<crate::format::snapshot::StreamInfo>,
    (recheck, stored): (Recheck, &PackerResult),
) -> Result<(SnapshotId, Snapshot)> {
    crate::steps::reached("backup:data-stored");
    let pg = match &opts.before_commit {
        Some(hook) => Some((hook.0)()?),
        None => None,
    };
    recheck.finish(repo, &[tree], &stored.pack_ids)?;
    if let Some(lock) = &opts.lock {
        lock.ensure_fresh()?;
    }
    crate::steps::reached("backup:rechecked");
    let end = Local::now().fixed_offset();
    let mut tags = opts.tags.clone();
    tags.sort();
    tags.dedup();
    let mut s = Snapshot {
        version: crate::format::SNAPSHOT_VERSION,
        time: opts.time.unwrap_or(start),
        hostname: hostname_or(&opts.host),
        username: crate::source::fsmeta::current_user(),
        paths,
        tags,
        parent,
        tree,
        partial: !summary.errors.is_empty(),
        excludes,
        stream: None,
        streams: Vec::new(),
        summary,
        original: None,
        repaired: None,
        backup_start: start,
        backup_end: end,
        program_version: format!("cairn {}", env!("CARGO_PKG_VERSION")),
        pg,
    };
    s.set_streams(streams);
    // Written whole or not at all, and not after an interruption removed
    // the lock (crate::interrupt).
    let mut committed = crate::interrupt::committing();
    let id = repo.save_snapshot(&s)?;
    *committed = Some(format!("snapshot {} was saved", id.short()));
    drop(committed);
    crate::steps::reached("backup:snapshot-written");
    Ok((id, s))
}
