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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Backend;
    use crate::crypto::MasterKey;

    fn base(system_id: u64, start_wal: &str) -> Snapshot {
        let t = chrono::DateTime::parse_from_rfc3339("2026-12-05T08:00:00+00:00").unwrap();
        let mut s = Snapshot::for_test(t, "db1", &[BASE_TAG]);
        s.pg = Some(crate::format::snapshot::PgInfo {
            system_id,
            version: 150000,
            pgdata: "/d".into(),
            timeline: 1,
            segment_size: 16 << 20,
            start_lsn: "0/0".into(),
            stop_lsn: "0/0".into(),
            start_wal: start_wal.into(),
            stop_wal: start_wal.into(),
            start_time: t,
            stop_time: t,
            next_xid: None,
            backup_label: String::new(),
            tablespace_map: None,
        });
        s
    }

    #[test]
    fn wal_before_the_oldest_base_backup_goes_and_the_rest_stays() {
        let backend = Backend::memory().unwrap();
        let key = MasterKey::generate();
        let a = Archive { backend: &backend, key: &key, level: 1 };
        // History files carry no header; the others are filed by name only
        // here (push checks headers only for segments, so use history-like
        // content through the object layer directly).
        let names = [
            "000000010000000000000003",
            "000000010000000000000004",
            "000000010000000000000004.00000028.backup",
            "000000010000000000000005",
            "000000020000000000000004.partial",
            "00000002.history",
        ];
        for n in names {
            let f = WalFile::parse(n).unwrap();
            let obj = crate::format::wal::WalObject { name: n.into(), system_id: 9, content: b"x".to_vec() };
            let sealed = crate::seal::seal(&key.enc, crate::crypto::aead::ObjectType::WalFile, &obj.encode(), None);
            backend.put(&object_name(9, &f), bytes::Bytes::from(sealed)).unwrap();
        }
        // A second system with no base backup keeps everything.
        let obj =
            crate::format::wal::WalObject { name: "000000010000000000000001".into(), system_id: 8, content: vec![] };
        let f8 = WalFile::parse("000000010000000000000001").unwrap();
        let sealed = crate::seal::seal(&key.enc, crate::crypto::aead::ObjectType::WalFile, &obj.encode(), None);
        backend.put(&object_name(8, &f8), bytes::Bytes::from(sealed)).unwrap();

        let id = |b: u8| SnapshotId([b; 32]);
        let snaps = vec![(id(1), base(9, "000000010000000000000005")), (id(2), base(9, "000000010000000000000007"))];
        let r = plan(&a, &snaps).unwrap();
        let mut deleted: Vec<&str> = r.delete.iter().map(|n| n.rsplit('/').next().unwrap()).collect();
        deleted.sort();
        assert_eq!(
            deleted,
            [
                "000000010000000000000003",
                "000000010000000000000004",
                "000000010000000000000004.00000028.backup",
                "000000020000000000000004.partial",
            ]
        );
        assert_eq!(r.kept_from, [(9, "000000010000000000000005".to_string())]);
        // No base backup at all: nothing goes.
        assert!(plan(&a, &[]).unwrap().delete.is_empty());
    }
}
