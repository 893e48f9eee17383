//! `diff` (work in progress).
