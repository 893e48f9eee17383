//! cairn: a content-addressed, encrypted, deduplicating backup repository.
//!
//! The backup pipeline, as folders:
//!
//! ```text
//! source  ->  chunker  ->  hash/dedup  ->  seal (zstd + XChaCha20)  ->  pack  ->  backend
//! (source/)   (chunker/)   (repo/, cache/)  (seal.rs, crypto/)        (pack/)    (backend/)
//! ```
//!
//! Restore, dump and cat read back through the same pieces. `format/`
//! encodes and decodes the on-disk bytes (format-spec/ describes them),
//! `ops/` holds one file per operation and `cli/` is the only place that
//! knows the command line.

pub mod backend;
pub mod chunker;
pub mod crypto;
pub mod error;
pub mod format;
pub mod id;
pub mod index;
pub mod interrupt;
pub mod job;
pub mod monitor;
pub mod ops;
pub mod pack;
pub mod pg;
pub mod progress;
pub mod repo;
pub mod saver;
pub mod seal;
pub mod source;
pub mod steps;
pub mod target;

pub use error::{Error, ErrorKind, Result};
