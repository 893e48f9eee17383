//! `repair index` and `repair snapshots`: save what can be saved.
//!
//! Both build a plan first (printed by `--dry-run`), then carry it out in
//! the write order of format-spec/10-write-order.md: every replacement is
//! stored before anything it replaces is deleted, so a repair that is
//! killed at any point leaves a repository no worse than before.

pub mod index;
pub mod snapshots;
