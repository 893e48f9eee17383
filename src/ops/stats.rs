//! `stats` (work in progress).
