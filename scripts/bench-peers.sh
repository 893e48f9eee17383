#!/usr/bin/env bash
# scripts/bench-peers.sh [WORKDIR] — cairn side by side with restic, rustic,
# borg and bupstash, in one run, with ../shared/bench (see its README).
# WORKDIR must be readable by the postgres user (not under /root), default
# /var/tmp/bench-run. Takes ~1 h the first time (peer builds, workloads),
# ~20 min after. Prints the table for README.md at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
W=${1:-/var/tmp/bench-run}
BENCH=$(cd ../shared/bench && pwd)
mkdir -p "$W" && chmod 755 "$W"
cargo build --release --locked
cp target/release/cairn "$W/cairn-bin"
"$BENCH/install-peers.sh"
"$BENCH/make-workloads.sh" "$W/data"
CAIRN=$W/cairn-bin TOOLS="restic rustic borg bupstash cairn" "$BENCH/run-peers.sh" "$W"
python3 scripts/bench-table.py "$W/results.tsv"
