//! Snapshot manifests (`snapshots/<id>`): sealed JSON. Field names follow
//! restic's where they mean the same. See format-spec/09-snapshots.md.

use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::id::{SnapshotId, TreeId};

/// A stream snapshot's record of what was read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamInfo {
    /// Name of the single file in the snapshot's root tree.
    pub filename: String,
    /// Exact number of bytes read.
    pub size: u64,
    /// SHA-256 of the bytes read, lower-case hex.
    pub sha256: String,
    /// The command that produced the stream, if `--stdin-from-command`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
}

/// Counts of one backup run.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub files_new: u64,
    pub files_changed: u64,
    pub files_unchanged: u64,
    pub dirs: u64,
    pub data_blobs: u64,
    pub tree_blobs: u64,
    /// Sealed bytes of the blobs this backup added.
    pub data_added: u64,
    pub total_files_processed: u64,
    pub total_bytes_processed: u64,
    /// Paths that could not be read, with the reason.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

/// What `repair snapshots` changed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Repaired {
    /// The snapshot this one replaces.
    pub from: SnapshotId,
    /// When the repair ran.
    pub time: DateTime<FixedOffset>,
    /// Each path left out, with the reason (`/dir/file: chunk … is not in
    /// the index`). A directory whose listing was lost ends in `/` and is
    /// kept, empty.
    pub dropped: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub version: u32,
    /// The snapshot's time (`--time` overrides it).
    pub time: DateTime<FixedOffset>,
    pub hostname: String,
    pub username: String,
    /// Absolute paths that were backed up; for a stream, `/` and the
    /// stream's filename (format-spec/09-snapshots.md).
    pub paths: Vec<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<SnapshotId>,
    /// Root tree.
    pub tree: TreeId,
    /// True when some files could not be read.
    #[serde(default)]
    pub partial: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub excludes: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<StreamInfo>,
    pub summary: Summary,
    /// Set by `copy`: the id of the snapshot in the repository where it was
    /// first made (kept through chains of copies).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original: Option<SnapshotId>,
    /// Set by `repair snapshots` on the snapshot it stores in place of a
    /// damaged one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repaired: Option<Repaired>,
    pub backup_start: DateTime<FixedOffset>,
    pub backup_end: DateTime<FixedOffset>,
    pub program_version: String,
    /// Set on a PostgreSQL base backup (`pg backup`, format-spec/13-wal.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pg: Option<PgInfo>,
}

/// What a base backup of a PostgreSQL cluster records.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PgInfo {
    /// The cluster's system identifier.
    pub system_id: u64,
    /// `server_version_num` (150004).
    pub version: u32,
    /// The data directory, as backed up (the snapshot's path).
    pub pgdata: String,
    pub timeline: u32,
    pub segment_size: u64,
    /// Where replay starts (`START WAL LOCATION`) and where the backup is
    /// consistent (`pg_backup_stop`'s LSN), in PostgreSQL's `X/Y` form.
    pub start_lsn: String,
    pub stop_lsn: String,
    /// The first and last WAL segments a restore needs.
    pub start_wal: String,
    pub stop_wal: String,
    /// The server's clock at `pg_backup_start` and after `pg_backup_stop`.
    pub start_time: DateTime<FixedOffset>,
    pub stop_time: DateTime<FixedOffset>,
    /// The next transaction id after `pg_backup_stop` (64-bit, with epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_xid: Option<u64>,
    /// The `backup_label` file a restore writes into the data directory.
    pub backup_label: String,
    /// The `tablespace_map`, when the cluster has tablespaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tablespace_map: Option<String>,
}

impl Snapshot {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("snapshot serializes")
    }

    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let s: Snapshot =
            serde_json::from_slice(bytes).map_err(|e| Error::corrupt(format!("snapshot does not decode: {e}")))?;
        if s.version != super::FORMAT_VERSION {
            return Err(Error::corrupt(format!("snapshot version {} is not supported", s.version)));
        }
        Ok(s)
    }
}

#[cfg(test)]
impl Snapshot {
    /// A plain snapshot for unit tests: path `/a`, user `u`, empty tree id,
    /// no parent, stream, summary counts or program version.
    pub fn for_test(time: DateTime<FixedOffset>, host: &str, tags: &[&str]) -> Self {
        Snapshot {
            version: 1,
            time,
            hostname: host.into(),
            username: "u".into(),
            paths: vec!["/a".into()],
            tags: tags.iter().map(|t| t.to_string()).collect(),
            parent: None,
            tree: TreeId([0; 32]),
            partial: false,
            excludes: vec![],
            stream: None,
            summary: Summary::default(),
            original: None,
            repaired: None,
            backup_start: time,
            backup_end: time,
            program_version: String::new(),
            pg: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn round_trip(host in ".{0,20}", tags in proptest::collection::vec("[a-z]{1,5}", 0..3),
                      secs in 0i64..4_000_000_000, nanos in 0u32..1_000_000_000, size in any::<u64>()) {
            let t = DateTime::from_timestamp(secs, nanos).unwrap().fixed_offset();
            let s = Snapshot {
                version: 1, time: t, hostname: host, username: "u".into(), paths: vec!["/a".into()],
                tags, parent: Some(SnapshotId([1; 32])), tree: TreeId([2; 32]), partial: false,
                excludes: vec![], stream: Some(StreamInfo { filename: "db.sql".into(), size, sha256: "00".into(), command: None }),
                summary: Summary::default(), original: None, repaired: None, backup_start: t, backup_end: t, program_version: "x".into(), pg: None,
            };
            prop_assert_eq!(Snapshot::decode(&s.encode()).unwrap(), s);
        }
    }
}
