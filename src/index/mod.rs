//! The index: which pack holds each blob.
//!
//! The repository's `index/` objects ([`crate::format::index`] encodes them)
//! are the authority; [`cache::IndexCache`] is a local redb copy that
//! lookups use, so that no command loads the whole index into memory.
//! [`sync`] keeps the copy in line with the repository (and reads and
//! writes index objects), [`read`] reads blobs through it ([`lists`]: a
//! file's chunk lists), finding a blob
//! again when a prune has moved it, and [`scratch`] is the on-disk blob set
//! that operations whose working set grows with the repository use;
//! [`units`] keeps the groups opened last; [`known`] answers a backup's
//! "is this chunk stored?" mostly without a lookup.

pub mod cache;
pub mod known;
mod lists;
mod read;
pub mod scratch;
mod sync;
pub mod units;

pub use cache::{default_root, CacheReader, IndexCache, Location};
pub use known::Known;
pub use lists::ListItem;

/// Entries per index object a writer stores at most (about 2 MiB of
/// plaintext, more for the one pack that crosses it): a reader holds one
/// object decoded at a time, so this bounds its memory whatever the
/// repository's size (backups, prune and `repair index` alike).
pub const ENTRIES_PER_OBJECT: usize = 50_000;
