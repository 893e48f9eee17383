//! Lock objects (`locks/<SHA-256 of the stored bytes>`): sealed JSON. See format-spec/08-locks.md.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lock {
    /// RFC 3339 time the lock was written or last refreshed.
    pub time: String,
    pub exclusive: bool,
    pub hostname: String,
    pub username: String,
    pub pid: u32,
    /// What holds it: "backup", "prune"...
    pub operation: String,
    /// `shared`, `maintenance` or `exclusive`. Absent in locks written
    /// before version 1.1: then `exclusive` decides.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    /// 32 hex digits, the same in every refresh of one holder's lock.
    /// Absent in older locks: then the object's name stands for it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub session: String,
    /// What tells the holder's process apart from every other one, so that
    /// a reader can judge whether it is gone (`repo::lock::liveness`). All
    /// four are optional: absent in older locks, and each is left out when
    /// the holder could not read it.
    ///
    /// The holder's machine id (`/etc/machine-id`), 32 hex digits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine_id: Option<String>,
    /// The holder's kernel boot id (`/proc/sys/kernel/random/boot_id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_id: Option<String>,
    /// The inode number of the holder's PID namespace (`/proc/self/ns/pid`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid_ns: Option<u64>,
    /// The holder's start time, in clock ticks since boot (field 22 of
    /// `/proc/self/stat`): tells a reused pid from the holder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<u64>,
}

/// What a lock allows others to do at the same time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockKind {
    /// Adds objects (backup, copy): compatible with shared and maintenance.
    Shared,
    /// Marks and deletes with two-phase deletion (forget, prune, check):
    /// compatible with shared locks only.
    Maintenance,
    /// Deletes or rewrites without regard for writers (repair): compatible
    /// with nothing.
    Exclusive,
}

impl LockKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LockKind::Shared => "shared",
            LockKind::Maintenance => "maintenance",
            LockKind::Exclusive => "exclusive",
        }
    }

    /// Whether a holder of `self` and one of `other` may run together.
    pub fn compatible(self, other: LockKind) -> bool {
        use LockKind::*;
        matches!((self, other), (Shared, Shared) | (Shared, Maintenance) | (Maintenance, Shared))
    }
}

impl Lock {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("lock serializes")
    }

    pub fn kind(&self) -> LockKind {
        match self.kind.as_str() {
            "maintenance" => LockKind::Maintenance,
            "shared" if !self.exclusive => LockKind::Shared,
            "" if !self.exclusive => LockKind::Shared,
            // Unknown kinds are taken as exclusive: the safe reading.
            _ => LockKind::Exclusive,
        }
    }

    pub fn decode(bytes: &[u8]) -> Result<Self> {
        serde_json::from_slice(bytes).map_err(|e| Error::corrupt(format!("lock does not decode: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_liveness_fields_are_optional() {
        // A lock as cairn 0.1 wrote it, and one with a field from the future.
        let old = br#"{"time":"2026-11-21T23:55:02+00:00","exclusive":false,"hostname":"h","username":"u","pid":7,"operation":"backup","later":1}"#;
        let l = Lock::decode(old).unwrap();
        assert_eq!((l.machine_id, l.boot_id, l.pid_ns, l.start_time), (None, None, None, None));
        let new = Lock {
            machine_id: Some("3d1219c7c4c5404aaa1f6d2a48adfda4".into()),
            boot_id: Some("87da67fc-0351-4f0d-9455-bc51a8e64213".into()),
            pid_ns: Some(4026531836),
            start_time: Some(123456),
            ..Lock::decode(old).unwrap()
        };
        let bytes = new.encode();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(text.contains(r#""pid_ns":4026531836"#) && text.contains(r#""start_time":123456"#), "{text}");
        assert_eq!(Lock::decode(&bytes).unwrap(), new);
        // Absent fields are not written.
        let bare = Lock::decode(old).unwrap().encode();
        assert!(!String::from_utf8(bare).unwrap().contains("boot_id"));
    }
}
