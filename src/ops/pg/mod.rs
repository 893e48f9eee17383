//! PostgreSQL continuous archiving and point-in-time recovery
//! (format-spec/13-wal.md): `pg wal-push`, `pg wal-fetch`, `pg backup`,
//! `pg restore` and `pg status`. WAL retention is prune's
//! ([`retention`]).

pub mod archive;
pub mod backup;
pub mod restore;
pub mod retention;
pub mod status;

use std::path::Path;

use crate::error::{Error, Result};
use crate::format::wal::ClusterRecord;
use crate::pg::wal::{SegmentHeader, WalFile};
use crate::repo::keycache::Unlocked;
use archive::{system_of, Archive, Pushed};

/// `pg wal-push PATH`: archives the file at `path` (`%p`, relative to the
/// data directory `pgdata`, the working directory PostgreSQL gives).
pub fn wal_push(un: &Unlocked, path: &Path, pgdata: &Path) -> Result<(WalFile, Pushed)> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| Error::invalid(format!("{}: not a WAL file name", path.display())))?;
    let file = WalFile::parse(name).ok_or_else(|| {
        Error::invalid(format!("{name}: not a WAL file name (a segment, .partial, .backup or .history file)"))
    })?;
    let content = std::fs::read(path).map_err(|e| Error::io(path.display(), e))?;
    let system_id = system_of(&file, &content, pgdata)?;
    let archive = Archive { backend: &un.backend, key: &un.key, level: un.config.compression };
    // The record is written once per system; a marker beside the cached
    // key saves its request on every later push.
    let marker = format!("record-{system_id}");
    if file.has_header() && !un.marked(&marker) {
        let h = SegmentHeader::decode(&content)?;
        let record = ClusterRecord {
            system_id,
            segment_size: u64::from(h.seg_size),
            version: h.version().unwrap_or(0),
            created: chrono::Local::now().fixed_offset(),
            hostname: crate::ops::backup::hostname_or(&None),
        };
        archive.ensure_record(&record)?;
        un.mark(&marker);
    }
    let pushed = archive.push(system_id, &file, content)?;
    Ok((file, pushed))
}

/// The WAL files a base backup needs to be consistent (`start_wal` to
/// `stop_wal`), by system.
pub fn backup_wal(pg: &crate::format::snapshot::PgInfo) -> Vec<(u64, WalFile)> {
    let (Some(a), Some(b)) = (WalFile::parse(&pg.start_wal), WalFile::parse(&pg.stop_wal)) else { return Vec::new() };
    let (Some(x), Some(y)) = (a.segno(pg.segment_size), b.segno(pg.segment_size)) else { return Vec::new() };
    (x..=y).map(|n| (pg.system_id, WalFile::segment(a.timeline(), n, pg.segment_size))).collect()
}

/// `copy`'s part: every archived WAL file and system record of `src` that
/// `dst` lacks, opened and verified with the source's key and sealed anew
/// with the destination's. Runs before the snapshots are copied, so that a
/// base backup in the destination finds its WAL there (rule B3).
///
/// A name both hold is compared (W2) when it is a timeline history file or
/// in `compare` (the WAL of the base backups being copied): a different
/// content is an error and nothing is copied over it. Other names both hold
/// are not read again (each repository wrote its copy once, W2).
/// Returns (files copied, bytes).
pub fn copy_wal(
    src: &crate::repo::Repository,
    dst: &crate::repo::Repository,
    compare: &std::collections::HashSet<(u64, WalFile)>,
) -> Result<(u64, u64)> {
    let from = Archive { backend: &src.backend, key: &src.key, level: src.config.compression };
    let to = Archive { backend: &dst.backend, key: &dst.key, level: dst.config.compression };
    let (mut files, mut bytes) = (0, 0);
    for sys in from.systems()? {
        if let Some(r) = from.record(sys)? {
            to.ensure_record(&r)?;
        }
        let have: std::collections::HashSet<WalFile> = to.list(sys)?.into_iter().map(|l| l.file).collect();
        for l in from.list(sys)? {
            let check = matches!(l.file, WalFile::History { .. }) || compare.contains(&(sys, l.file));
            if have.contains(&l.file) && !check {
                continue;
            }
            let Some(content) = from.fetch(sys, &l.file)? else { continue };
            let n = content.len() as u64;
            if let Pushed::Stored { .. } = to.push(sys, &l.file, content)? {
                files += 1;
                bytes += n;
            }
        }
    }
    Ok((files, bytes))
}

/// What `pg wal-fetch` found.
#[derive(Debug, PartialEq, Eq)]
pub enum Fetched {
    Restored { bytes: u64 },
    NotInArchive,
}

/// `pg wal-fetch NAME DEST`: restores the archived file `name` to `dest`
/// (`%p`) for the cluster whose data directory is `pgdata`.
pub fn wal_fetch(
    backend: &crate::backend::Backend,
    key: &crate::crypto::MasterKey,
    name: &str,
    dest: &Path,
    pgdata: &Path,
    system_id: Option<u64>,
) -> Result<Fetched> {
    let file = WalFile::parse(name).ok_or_else(|| Error::invalid(format!("{name}: not a WAL file name")))?;
    let archive = Archive { backend, key, level: 0 };
    let system_id = match system_id {
        Some(s) => s,
        None => match crate::pg::wal::control_system_id(pgdata) {
            Ok(s) => s,
            Err(e) => match archive.systems()?.as_slice() {
                [one] => *one,
                _ => {
                    return Err(Error::invalid(format!(
                        "cannot tell which cluster to fetch for: reading {}: {} (run from the data directory, or pass --system-id)",
                        pgdata.join("global/pg_control").display(),
                        crate::error::io_reason(&e)
                    )))
                }
            },
        },
    };
    match archive.fetch(system_id, &file)? {
        None => Ok(Fetched::NotInArchive),
        Some(content) => {
            archive::write_file(dest, &content)?;
            Ok(Fetched::Restored { bytes: content.len() as u64 })
        }
    }
}
