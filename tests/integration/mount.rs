//! The FUSE mount (work in progress).
