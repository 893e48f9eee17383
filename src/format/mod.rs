//! On-disk encodings. Encodes and decodes only: no I/O, no crypto.
//!
//! Each submodule matches one chapter of format-spec/. All integers are
//! little-endian. Decoders never panic on any input: malformed bytes are
//! [`crate::error::ErrorKind::Corrupt`].

pub mod config;
pub mod index;
pub mod keyfile;
pub mod list;
pub mod lock;
pub mod pack;
pub mod snapshot;
pub mod tree;
pub mod wal;
pub mod wire;

/// The repository format version `init` writes by default: 3 (a large
/// file's chunks are named by chunk lists; format 2: packs may hold groups
/// of blobs compressed together, index objects version 3).
pub const FORMAT_VERSION: u32 = 3;
/// The repository format versions this build reads and writes.
pub const FORMAT_VERSIONS: std::ops::RangeInclusive<u32> = 1..=3;
/// The version of snapshot objects (their own: unchanged by format 2).
pub const SNAPSHOT_VERSION: u32 = 1;
