//! The WAL archive's objects (format-spec/13-wal.md): one sealed object per
//! archived WAL file, and one cluster record per PostgreSQL system.
//!
//! ```text
//! WAL file plaintext (sealed, type 8):
//!   version u8 (=1) | name_len u8 | name [name_len] | system_id u64 | size u64 | content [size]
//! cluster record (sealed JSON, type 9): {"system_id": …, "segment_size": …, …}
//! ```

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

pub const WAL_FILE_VERSION: u8 = 1;

/// The longest WAL file name (a backup history file: 40 characters).
const MAX_NAME: usize = 64;

/// One archived WAL file, as sealed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WalObject {
    /// The file's name as PostgreSQL gave it (`%f`).
    pub name: String,
    /// The system identifier of the cluster that wrote it.
    pub system_id: u64,
    pub content: Vec<u8>,
}

impl WalObject {
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.content.len() + self.name.len() + 18);
        v.push(WAL_FILE_VERSION);
        v.push(self.name.len() as u8);
        v.extend_from_slice(self.name.as_bytes());
        v.extend_from_slice(&self.system_id.to_le_bytes());
        v.extend_from_slice(&(self.content.len() as u64).to_le_bytes());
        v.extend_from_slice(&self.content);
        v
    }

    /// Encodes without copying the content: the header to put before it.
    pub fn header(name: &str, system_id: u64, size: u64) -> Vec<u8> {
        let mut v = Vec::with_capacity(name.len() + 18);
        v.push(WAL_FILE_VERSION);
        v.push(name.len() as u8);
        v.extend_from_slice(name.as_bytes());
        v.extend_from_slice(&system_id.to_le_bytes());
        v.extend_from_slice(&size.to_le_bytes());
        v
    }

    pub fn decode(b: &[u8]) -> Result<Self> {
        Self::decode_owned(b.to_vec())
    }

    /// Decodes without copying the content (a segment is 16 MiB or more).
    pub fn decode_owned(mut b: Vec<u8>) -> Result<Self> {
        let bad = |why: &str| Error::corrupt(format!("WAL object does not decode: {why}"));
        let (&version, rest) = b.split_first().ok_or_else(|| bad("empty"))?;
        if version != WAL_FILE_VERSION {
            return Err(bad(&format!("unknown version {version}")));
        }
        let (&len, rest) = rest.split_first().ok_or_else(|| bad("truncated"))?;
        let len = usize::from(len);
        if len == 0 || len > MAX_NAME || rest.len() < len + 16 {
            return Err(bad("bad name length"));
        }
        let name = std::str::from_utf8(&rest[..len]).map_err(|_| bad("name is not UTF-8"))?.to_string();
        let rest = &rest[len..];
        let system_id = u64::from_le_bytes(rest[..8].try_into().expect("8 bytes"));
        let size = u64::from_le_bytes(rest[8..16].try_into().expect("8 bytes"));
        if rest.len() as u64 - 16 != size {
            return Err(bad("content length differs from its recorded size"));
        }
        b.drain(..2 + len + 16);
        Ok(WalObject { name, system_id, content: b })
    }

    /// Checks a name's length before encoding.
    pub fn valid_name(name: &str) -> bool {
        !name.is_empty() && name.len() <= MAX_NAME && name.is_ascii()
    }
}

/// What the repository records of a PostgreSQL system, written by the
/// first push or base backup of that system.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterRecord {
    /// The system identifier (`pg_controldata`'s "Database system
    /// identifier"), also the folder name under `wal/`.
    pub system_id: u64,
    /// WAL segment size in bytes.
    pub segment_size: u64,
    /// PostgreSQL major version as `server_version_num` (150000).
    pub version: u32,
    /// When and from which host it was recorded.
    pub created: chrono::DateTime<chrono::FixedOffset>,
    pub hostname: String,
}

impl ClusterRecord {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("cluster record serializes")
    }

    pub fn decode(b: &[u8]) -> Result<Self> {
        let r: ClusterRecord =
            serde_json::from_slice(b).map_err(|e| Error::corrupt(format!("cluster record does not decode: {e}")))?;
        if !crate::pg::wal::valid_segment_size(r.segment_size) {
            return Err(Error::corrupt(format!("cluster record: invalid segment size {}", r.segment_size)));
        }
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wal_objects_round_trip_and_reject_damage() {
        let o = WalObject { name: "000000010000000000000003".into(), system_id: 42, content: vec![7; 100] };
        let b = o.encode();
        assert_eq!(WalObject::decode(&b).unwrap(), o);
        let mut h = WalObject::header(&o.name, 42, 100);
        h.extend_from_slice(&o.content);
        assert_eq!(h, b);
        for cut in [0, 1, 2, 20, b.len() - 1] {
            assert!(WalObject::decode(&b[..cut]).is_err(), "{cut}");
        }
        let mut longer = b.clone();
        longer.push(0);
        assert!(WalObject::decode(&longer).is_err());
        let mut v2 = b.clone();
        v2[0] = 2;
        assert!(WalObject::decode(&v2).is_err());
    }

    #[test]
    fn cluster_records_check_the_segment_size() {
        let r = ClusterRecord {
            system_id: u64::MAX,
            segment_size: 16 << 20,
            version: 150000,
            created: chrono::DateTime::parse_from_rfc3339("2026-12-05T08:00:00+00:00").unwrap(),
            hostname: "db1".into(),
        };
        assert_eq!(ClusterRecord::decode(&r.encode()).unwrap(), r);
        let bad = ClusterRecord { segment_size: 3 << 20, ..r };
        assert!(ClusterRecord::decode(&bad.encode()).is_err());
    }
}
