//! find, diff, stats and tag across snapshots (work in progress).
