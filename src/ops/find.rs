//! `find` (work in progress).
