#!/usr/bin/env bash
# scripts/soak.sh [SECONDS] [local|s3|both] — the randomized soak of
# tests/integration/soak.rs run long: three writers backing up in a loop,
# `forget --keep-last 3 --prune` in a loop, restores beside them, each
# process killed with SIGKILL at random moments; at the end check
# --read-data and an exact restore of every snapshot. Prints the figures
# (backups saved and killed, prunes, restores verified) and the seed
# (CAIRN_SOAK_SEED=N replays a run). CI runs it for 20 s per backend.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-600}
which=${2:-local}
if [[ $which != local ]]; then
  export CAIRN_S3_DIR=${CAIRN_S3_DIR:-/var/tmp/cairn-s3}
  s3_exports=$(bash scripts/s3-server.sh start "$CAIRN_S3_DIR" "${CAIRN_S3_PORT:-7480}")
  eval "$s3_exports"
fi
case $which in
  local) filter=soak::soak_writers_pruner_readers_and_random_kills::local ;;
  s3) filter=soak::soak_writers_pruner_readers_and_random_kills::s3 ;;
  both) filter=soak:: ;;
  *) echo "usage: $0 [SECONDS] [local|s3|both]" >&2; exit 2 ;;
esac
CAIRN_SOAK_SECONDS=$seconds cargo test --locked --test integration "$filter" -- --nocapture 2>&1 |
  grep -E '^(soak|test result)|panicked|CAIRN_SOAK_SEED'
