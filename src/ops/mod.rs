//! One module per operation. Each takes an opened [`crate::repo::Repository`]
//! and plain option values; none knows the command line.

pub mod backup;
pub mod cat;
pub mod check;
pub mod copy;
pub mod diff;
pub mod drill;
pub mod dump;
pub mod find;
pub mod forget;
pub mod ls;
pub mod migrate;
pub mod mount;
pub mod pg;
pub mod prune;
pub mod repair;
pub mod restore;
pub mod snapshots;
pub mod stats;
pub mod status;
pub mod stream;
pub mod tag;
