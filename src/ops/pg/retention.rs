//! WAL retention (format-spec/13-wal.md, rule P1): the archive keeps every
//! WAL file from the start of the oldest base backup that still exists,
//! so that every kept base backup can be restored to any point up to the
//! next one (and beyond, to the end of the archive). Older segments,
//! partial segments and backup history files are deleted by prune;
//! timeline history files and the system's record are always kept. A
//! system with no base backup keeps all its WAL (it may be archiving
//! ahead of its first base backup).

use std::collections::BTreeMap;

use super::archive::{object_name, Archive};
use super::backup::BASE_TAG;
use crate::error::Result;
use crate::format::snapshot::Snapshot;
use crate::id::SnapshotId;
use crate::pg::wal::WalFile;

/// What prune deletes from the WAL archive.
#[derive(Debug, Default)]
pub struct WalRetention {
    /// Object names to delete.
    pub delete: Vec<String>,
    pub bytes: u64,
    /// Per system: the first segment kept.
    pub kept_from: Vec<(u64, String)>,
}

/// Plans the deletions for the snapshots that remain.
pub fn plan(archive: &Archive, snapshots: &[(SnapshotId, Snapshot)]) -> Result<WalRetention> {
    let mut cutoff: BTreeMap<u64, (u64, WalFile, u64)> = BTreeMap::new();
    for (_, s) in snapshots {
        let Some(pg) = s.pg.as_ref().filter(|_| s.tags.iter().any(|t| t == BASE_TAG)) else { continue };
        let Some(start) = WalFile::parse(&pg.start_wal) else { continue };
        let Some(segno) = start.segno(pg.segment_size) else { continue };
        let e = cutoff.entry(pg.system_id).or_insert((segno, start, pg.segment_size));
        if segno < e.0 {
            *e = (segno, start, pg.segment_size);
        }
    }
    let mut out = WalRetention::default();
    for (sys, (segno, first, seg)) in cutoff {
        for l in archive.list(sys)? {
            let old = match l.file {
                WalFile::History { .. } => false,
                _ => l.file.segno(seg).is_some_and(|n| n < segno),
            };
            if old {
                out.delete.push(object_name(sys, &l.file));
                out.bytes += l.size;
            }
        }
        out.kept_from.push((sys, first.to_string()));
    }
    Ok(out)
}
