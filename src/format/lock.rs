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
}

impl Lock {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("lock serializes")
    }

    pub fn decode(bytes: &[u8]) -> Result<Self> {
        serde_json::from_slice(bytes).map_err(|e| Error::corrupt(format!("lock does not decode: {e}")))
    }
}
