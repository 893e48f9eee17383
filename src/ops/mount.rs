//! `mount`: a read-only FUSE view of the repository (work in progress).
