#!/usr/bin/env bash
# scripts/bench-index.sh [SIZES] — dedup lookups against the index cache at
# growing sizes, in one run (benches/index_scale.rs): per size N, the time to
# fill a fresh cache as a sync does, its bytes per entry on disk, lookups
# per second of present ids (random order) and of fresh ids, and the
# process's peak RSS. SIZES is a comma-separated list of entry counts,
# default 1000000,10000000 (10^8 takes about 3 minutes and ~13 GB of disk
# under CAIRN_BENCH_DIR, default /var/tmp/cairn-bench-index: the 7 GB cache
# and the fill's sorted runs). COMPACT=1
# compacts the cache after the fill, as a rebuild does, before measuring it.
set -euo pipefail
cd "$(dirname "$0")/.."
INDEX_SIZES=${1:-${INDEX_SIZES:-1000000,10000000}} cargo bench --locked --bench index_scale 2>&1 | grep '^index_scale'
