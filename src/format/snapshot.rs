//! Snapshot manifests (`snapshots/<id>`): sealed JSON. Field names follow
//! restic's where they mean the same. See format-spec/09-snapshots.md.

use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::id::{SnapshotId, TreeId};

/// A stream snapshot's record of what was read, one per stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamInfo {
    /// Name of the stream's file in the snapshot's root tree.
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
    /// The stream of a snapshot holding exactly one (use
    /// [`Snapshot::streams`] to read either form).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<StreamInfo>,
    /// The streams of a snapshot holding more than one, in the order they
    /// were read (`stream` is then absent).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub streams: Vec<StreamInfo>,
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
    /// Every stream this snapshot records: `streams` when present, else
    /// `stream` (empty for a snapshot of paths).
    pub fn streams(&self) -> &[StreamInfo] {
        match &self.stream {
            Some(st) if self.streams.is_empty() => std::slice::from_ref(st),
            _ => &self.streams,
        }
    }

    /// Whether this is a stream snapshot (one stream or several).
    pub fn is_stream(&self) -> bool {
        !self.streams().is_empty()
    }

    /// Sets the stream records as the format writes them: `stream` for one,
    /// `streams` for several.
    pub fn set_streams(&mut self, mut streams: Vec<StreamInfo>) {
        if streams.len() == 1 {
            self.stream = streams.pop();
            self.streams = Vec::new();
        } else {
            self.stream = None;
            self.streams = streams;
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("snapshot serializes")
    }

    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let s: Snapshot =
            serde_json::from_slice(bytes).map_err(|e| Error::corrupt(format!("snapshot does not decode: {e}")))?;
        if s.version != super::SNAPSHOT_VERSION {
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
            streams: Vec::new(),
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
                      secs in 0i64..4_000_000_000, nanos in 0u32..1_000_000_000, size in any::<u64>(),
                      more in proptest::collection::vec(("[a-z.]{1,12}", any::<u64>()), 0..3)) {
            let t = DateTime::from_timestamp(secs, nanos).unwrap().fixed_offset();
            let mut s = Snapshot {
                version: 1, time: t, hostname: host, username: "u".into(), paths: vec!["/a".into()],
                tags, parent: Some(SnapshotId([1; 32])), tree: TreeId([2; 32]), partial: false,
                excludes: vec![], stream: Some(StreamInfo { filename: "db.sql".into(), size, sha256: "00".into(), command: None }), streams: vec![],
                summary: Summary::default(), original: None, repaired: None, backup_start: t, backup_end: t, program_version: "x".into(), pg: None,
            };
            if !more.is_empty() {
                let mut all = vec![s.stream.clone().unwrap()];
                all.extend(more.into_iter().map(|(f, n)| StreamInfo { filename: f, size: n, sha256: "11".into(), command: Some(vec!["x".into()]) }));
                s.set_streams(all);
            }
            prop_assert_eq!(Snapshot::decode(&s.encode()).unwrap(), s);
        }
    }

    fn info(name: &str, size: u64, command: Option<Vec<String>>) -> StreamInfo {
        StreamInfo { filename: name.into(), size, sha256: format!("{size:064x}"), command }
    }

    #[test]
    fn one_stream_is_written_as_stream_several_as_streams() {
        let t = DateTime::from_timestamp(1_700_000_000, 0).unwrap().fixed_offset();
        let mut s = Snapshot::for_test(t, "h", &[]);
        assert!(s.streams().is_empty() && !s.is_stream());
        s.set_streams(vec![info("app.sql", 3, None)]);
        assert_eq!(s.streams(), &[info("app.sql", 3, None)]);
        let json: serde_json::Value = serde_json::from_slice(&s.encode()).unwrap();
        assert!(json.get("streams").is_none(), "{json}");
        assert_eq!(json["stream"]["filename"], "app.sql");

        let two = vec![info("app.dump", 5, Some(vec!["pg_dump".into()])), info("app-globals.sql", 0, None)];
        s.set_streams(two.clone());
        assert!(s.stream.is_none());
        assert_eq!(s.streams(), &two[..]);
        let bytes = s.encode();
        let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert!(json.get("stream").is_none(), "{json}");
        assert_eq!(json["streams"][0]["filename"], "app.dump");
        assert_eq!(json["streams"][1]["filename"], "app-globals.sql");
        let back = Snapshot::decode(&bytes).unwrap();
        assert_eq!(back, s);
        assert_eq!(back.streams(), &two[..], "read in the order they were read");
    }

    /// A snapshot as written before `streams` existed decodes and encodes
    /// back to the same bytes, and an old reader's view (no `streams`
    /// field) of a new multi-stream snapshot still decodes.
    #[test]
    fn old_single_stream_json_is_unchanged() {
        let old = r#"{"version":1,"time":"2023-11-15T03:00:00Z","hostname":"h","username":"u","paths":["/db.sql"],"tags":[],"tree":"0202020202020202020202020202020202020202020202020202020202020202","partial":false,"stream":{"filename":"db.sql","size":5,"sha256":"2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824","command":["pg_dump","app"]},"summary":{"files_new":1,"files_changed":0,"files_unchanged":0,"dirs":0,"data_blobs":1,"tree_blobs":1,"data_added":54,"total_files_processed":1,"total_bytes_processed":5},"backup_start":"2023-11-15T03:00:00Z","backup_end":"2023-11-15T03:00:01Z","program_version":"cairn 0.1.0"}"#;
        let s = Snapshot::decode(old.as_bytes()).unwrap();
        assert_eq!(s.streams().len(), 1);
        assert_eq!(String::from_utf8(s.encode()).unwrap(), old);
    }
}
