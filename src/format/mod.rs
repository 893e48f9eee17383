//! On-disk encodings. Encodes and decodes only: no I/O, no crypto.
//!
//! Each submodule matches one chapter of format-spec/. All integers are
//! little-endian. Decoders never panic on any input: malformed bytes are
//! [`crate::error::ErrorKind::Corrupt`].

pub mod config;
pub mod index;
pub mod keyfile;
pub mod lock;
pub mod pack;
pub mod snapshot;
pub mod tree;
pub mod wal;
pub mod wire;

/// The repository format version this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;
