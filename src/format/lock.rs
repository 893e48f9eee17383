//! Lock objects (`locks/<SHA-256 of the stored bytes>`): sealed JSON. See format-spec/08-locks.md.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
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
