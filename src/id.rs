//! Typed 32-byte identifiers.
//!
//! Blob ids ([`ChunkId`], [`TreeId`]) are keyed BLAKE3 hashes of the plaintext
//! (see format-spec/03-ids-and-sealing.md). Object ids ([`PackId`],
//! [`SnapshotId`], [`IndexId`], [`KeyId`]) are the SHA-256 of the stored
//! bytes, so an object's name proves its integrity without a key.

use std::fmt;

use crate::error::{Error, Result};

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
        pub struct $name(pub [u8; 32]);

        impl $name {
            /// Lower-case hex, 64 characters.
            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }

            /// The first 8 hex characters, as shown in tables.
            pub fn short(&self) -> String {
                hex::encode(&self.0[..4])
            }

            /// Parses a full 64-character hex id.
            pub fn from_hex(s: &str) -> Result<Self> {
                let mut out = [0u8; 32];
                hex::decode_to_slice(s, &mut out).map_err(|_| {
                    Error::invalid(format!("not a valid {} id: {s:?}", stringify!($name)))
                })?;
                Ok(Self(out))
            }

            pub fn as_bytes(&self) -> &[u8; 32] {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.short())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                s.serialize_str(&self.to_hex())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
                let s = <String as serde::Deserialize>::deserialize(d)?;
                Self::from_hex(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

id_type!(
    /// Id of a data chunk: keyed BLAKE3 of its plaintext.
    ChunkId
);
id_type!(
    /// Id of a tree blob: keyed BLAKE3 of its encoding.
    TreeId
);
id_type!(
    /// Id of a chunk-list blob (a blob of kind tree, format 3): keyed BLAKE3
    /// of its encoding.
    ListId
);
id_type!(
    /// Name of a pack object: SHA-256 of the pack's bytes.
    PackId
);
id_type!(
    /// Name of a snapshot object: SHA-256 of its stored bytes.
    SnapshotId
);
id_type!(
    /// Name of an index object: SHA-256 of its stored bytes.
    IndexId
);
id_type!(
    /// Name of a key file: SHA-256 of its bytes.
    KeyId
);
id_type!(
    /// Random repository id, chosen at init.
    RepoId
);

/// The kind of a blob inside a pack.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BlobKind {
    Data = 1,
    Tree = 2,
}

impl BlobKind {
    pub fn from_u8(v: u8) -> Option<Self> {
        match v {
            1 => Some(Self::Data),
            2 => Some(Self::Tree),
            _ => None,
        }
    }
}

/// A blob's id with its kind: what the index is keyed by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlobId {
    pub kind: BlobKind,
    pub id: [u8; 32],
}

impl BlobId {
    pub fn data(id: ChunkId) -> Self {
        Self { kind: BlobKind::Data, id: id.0 }
    }
    pub fn tree(id: TreeId) -> Self {
        Self { kind: BlobKind::Tree, id: id.0 }
    }
    /// A chunk list is stored as a blob of kind tree.
    pub fn list(id: ListId) -> Self {
        Self { kind: BlobKind::Tree, id: id.0 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn hex_round_trip(bytes in proptest::array::uniform32(any::<u8>())) {
            let id = PackId(bytes);
            prop_assert_eq!(PackId::from_hex(&id.to_hex()).unwrap(), id);
            let json = serde_json::to_string(&id).unwrap();
            prop_assert_eq!(serde_json::from_str::<PackId>(&json).unwrap(), id);
        }
    }

    #[test]
    fn bad_hex_is_invalid_input() {
        let err = SnapshotId::from_hex("xyz").unwrap_err();
        assert_eq!(err.kind(), crate::error::ErrorKind::InvalidInput);
    }
}
