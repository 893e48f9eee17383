//! `tag` (work in progress).
