//! `cairn drill`: a restore test of each source's newest snapshot.
//!
//! - A tree snapshot is restored whole into a scratch directory (every
//!   blob authenticated and its id checked on the way), then a random
//!   sample of its files is compared with the live files, as borgmatic's
//!   spot check does: a file that differs although the live one was not
//!   modified since the backup started is a failure; one modified since is
//!   reported as changed.
//! - A stream snapshot's files are read back through the same path `dump`
//!   takes and checked against their recorded size and SHA-256.
//! - A PostgreSQL source's dump is also restored into a scratch database
//!   (`cairn_drill_<random>`, created and dropped through the `[drill]
//!   postgres-scratch` connection), where each configured query must
//!   return true ([`postgres`]).
//!
//! Nothing in the repository changes; the caller holds a shared lock.

pub mod postgres;

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use rand::seq::SliceRandom;

use crate::error::{Error, Result};
use crate::format::snapshot::Snapshot;
use crate::id::SnapshotId;
use crate::job::config::{Drill, SourceKind, SourceSpec};
use crate::repo::Repository;

/// What one source's drill found.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SourceDrill {
    pub name: String,
    /// The snapshot drilled (none found: a failure).
    pub snapshot: Option<String>,
    pub success: bool,
    /// What was verified, one line each.
    pub checks: Vec<String>,
    /// What failed, one line each.
    pub problems: Vec<String>,
    pub seconds: f64,
}

/// Where and how much.
pub struct DrillOptions<'a> {
    /// Scratch directories are made under it (and removed).
    pub scratch: PathBuf,
    /// Files compared with the live source per tree snapshot.
    pub sample: usize,
    pub config: &'a Drill,
}

/// The paths a source's snapshots record: how its snapshots are found.
pub fn source_paths(kind: &SourceKind) -> Vec<String> {
    let mut v: Vec<String> = match kind {
        SourceKind::Paths(p) => p.iter().map(|p| p.display().to_string()).collect(),
        SourceKind::Command { filename, .. } => vec![format!("/{filename}")],
        SourceKind::Postgres(pg) => pg.snapshot_files().iter().map(|f| format!("/{f}")).collect(),
        SourceKind::Redis(r) => vec![format!("/{}", r.filename.as_deref().unwrap_or("redis.rdb"))],
    };
    v.sort();
    v
}

/// The newest snapshot of `host` whose paths are exactly the source's.
pub fn newest<'s>(
    snaps: &'s [(SnapshotId, Snapshot)],
    host: &str,
    kind: &SourceKind,
) -> Option<&'s (SnapshotId, Snapshot)> {
    let want = source_paths(kind);
    snaps
        .iter()
        .filter(|(_, s)| {
            s.hostname == host && {
                let mut p = s.paths.clone();
                p.sort();
                p == want
            }
        })
        .max_by(|a, b| a.1.time.cmp(&b.1.time).then(a.0.cmp(&b.0)))
}

/// Drills one source, whose snapshots record `host`.
pub fn drill_source(
    repo: &Repository,
    snaps: &[(SnapshotId, Snapshot)],
    host: &str,
    spec: &SourceSpec,
    opts: &DrillOptions,
) -> SourceDrill {
    let t = Instant::now();
    let mut d = SourceDrill {
        name: spec.name.clone(),
        snapshot: None,
        success: false,
        checks: Vec::new(),
        problems: Vec::new(),
        seconds: 0.0,
    };
    match newest(snaps, host, &spec.kind) {
        None => d
            .problems
            .push(format!("no snapshot of host {host} with paths {} to drill", source_paths(&spec.kind).join(" "))),
        Some((id, snap)) => {
            d.snapshot = Some(id.to_string());
            let r = match &spec.kind {
                SourceKind::Paths(_) => tree(repo, id, snap, opts, &mut d),
                SourceKind::Command { .. } | SourceKind::Redis(_) => streams(repo, id, snap, &mut d),
                SourceKind::Postgres(pg) => postgres::drill(repo, id, snap, pg, opts.config, &mut d),
            };
            if let Err(e) = r {
                d.problems.push(e.to_string());
            }
        }
    }
    d.success = d.problems.is_empty();
    d.seconds = t.elapsed().as_secs_f64();
    d
}

/// Reads every stream file of the snapshot back and checks it against its
/// record.
fn streams(repo: &Repository, id: &SnapshotId, snap: &Snapshot, d: &mut SourceDrill) -> Result<()> {
    for p in &snap.paths {
        let mut sink = std::io::sink();
        let n = crate::ops::dump::dump_snapshot(repo, id, snap, Path::new(p), &mut sink)?;
        d.checks.push(format!("{p}: {n} bytes read back, size and SHA-256 match the snapshot's record"));
    }
    Ok(())
}

/// Restores a tree snapshot into scratch space and compares a sample with
/// the live files.
fn tree(repo: &Repository, id: &SnapshotId, snap: &Snapshot, opts: &DrillOptions, d: &mut SourceDrill) -> Result<()> {
    std::fs::create_dir_all(&opts.scratch).map_err(|e| {
        Error::io_sentence(format!("cannot create the scratch directory {}", opts.scratch.display()), e)
    })?;
    let scratch = tempfile::Builder::new().prefix("cairn-drill-").tempdir_in(&opts.scratch).map_err(|e| {
        Error::io_sentence(format!("cannot create a scratch directory in {}", opts.scratch.display()), e)
    })?;
    let filter = crate::ops::restore::Filter::new(&[], &[])?;
    let meta = crate::target::MetaOptions { owners: false };
    let report = crate::ops::restore::run(repo, snap.tree, Path::new("/"), scratch.path(), &filter, &meta)?;
    for f in &report.failed {
        d.problems.push(format!("restore: {f}"));
    }
    d.checks.push(format!(
        "snapshot {} restored into scratch space: {} file(s), {} byte(s), every blob authenticated",
        id.short(),
        report.files,
        report.bytes
    ));
    // The sample: regular files of the restored tree.
    let mut files = Vec::new();
    collect_files(scratch.path(), scratch.path(), &mut files);
    files.shuffle(&mut rand::thread_rng());
    files.truncate(opts.sample);
    let started = snap.backup_start.timestamp();
    let (mut same, mut changed, mut gone) = (0, 0, 0);
    for rel in &files {
        let live = Path::new("/").join(rel);
        let restored = scratch.path().join(rel);
        match compare_files(&restored, &live) {
            Ok(true) => same += 1,
            Ok(false) => {
                let modified_since = std::fs::symlink_metadata(&live).map(|m| m.mtime() >= started).unwrap_or(true);
                if modified_since {
                    changed += 1;
                } else {
                    d.problems.push(format!(
                        "{} differs from the live file, which was not modified since the backup started",
                        live.display()
                    ));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => gone += 1,
            Err(e) => d.problems.push(format!("{}: cannot compare: {}", live.display(), crate::error::io_reason(&e))),
        }
    }
    d.checks.push(format!(
        "{} file(s) sampled and compared with the live source: {same} identical, {changed} modified since the backup, \
         {gone} gone since",
        files.len()
    ));
    Ok(())
}

/// Relative paths of the regular files under `dir`.
fn collect_files(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        let Ok(ft) = e.file_type() else { continue };
        let p = e.path();
        if ft.is_dir() {
            collect_files(root, &p, out);
        } else if ft.is_file() {
            if let Ok(rel) = p.strip_prefix(root) {
                out.push(rel.to_path_buf());
            }
        }
    }
}

/// Whether two files hold the same bytes.
fn compare_files(a: &Path, b: &Path) -> std::io::Result<bool> {
    let (ma, mb) = (std::fs::metadata(a)?, std::fs::symlink_metadata(b)?);
    if !mb.is_file() || ma.len() != mb.len() {
        return Ok(false);
    }
    let (mut fa, mut fb) = (std::fs::File::open(a)?, std::fs::File::open(b)?);
    let (mut ba, mut bb) = (vec![0u8; 1 << 16], vec![0u8; 1 << 16]);
    loop {
        let n = read_full(&mut fa, &mut ba)?;
        let m = read_full(&mut fb, &mut bb)?;
        if n != m || ba[..n] != bb[..m] {
            return Ok(false);
        }
        if n == 0 {
            return Ok(true);
        }
    }
}

fn read_full(f: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}
