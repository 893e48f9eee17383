#!/usr/bin/env bash
# scripts/bench-prune-scale.sh [BLOBS] [WORKDIR] — prune and check of a
# repository of BLOBS data blobs (default 1000000; 10000000 for issue 18's
# 10^7 figure), cairn alone, each step timed with /usr/bin/time (wall
# seconds, peak RSS). scripts/bench-prune.sh compares with restic and rustic
# at 10^6; this one reaches sizes whose backups through files would take
# hours.
#
# Workload: a repository made with `init --chunk-size 1 --dump-chunk-size 1`
# (streams are cut by the chunker for dumps; chunks of about
# 1 KiB), SNAPS (10) stream snapshots of random data, each of BLOBS/SNAPS
# chunks, all unique. Timed: `forget --keep-last SNAPS/2 --prune` (half of
# the blobs become unused: their packs are deleted or repacked), then
# `check` (PRUNE_ARGS set: `forget` untimed, then `prune PRUNE_ARGS` timed).
# The page cache is dropped before each timed step when possible.
# The repository is kept in WORKDIR/repo (default /var/tmp/bench-prune-scale)
# for another look; KEEP_REPO=1 reuses one already built for BLOBS.
set -euo pipefail
cd "$(dirname "$0")/.."
BLOBS=${1:-1000000}
W=${2:-/var/tmp/bench-prune-scale}
SNAPS=${SNAPS:-10}
export CAIRN_PASSWORD=bench-prune-scale-not-a-secret
export CAIRN_CACHE_DIR=$W/cache
cargo build --release --locked -q
R=$W/repo
mkdir -p "$W"
# A copy of the binary, so that a rebuild during the run does not change it.
cp target/release/cairn "$W/cairn"
CAIRN=$W/cairn
drop() { sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true; }
if [[ ${KEEP_REPO:-0} != 1 || ! -f $W/.built-$BLOBS ]]; then
  rm -rf "$R" "$W/repo.orig" "$W/cache" "$W"/.built-*
  "$CAIRN" -q -r "$R" init --chunk-size 1 --dump-chunk-size 1
  per=$((BLOBS / SNAPS))
  t0=$(date +%s)
  for i in $(seq 1 "$SNAPS"); do
    # ~1.2 KiB per chunk on average (min 256, average 1024, max 4096).
    head -c $((per * 1230)) /dev/urandom | "$CAIRN" -q -r "$R" backup --stdin-filename part.bin --tag "part-$i"
  done
  echo "built $BLOBS-blob repository in $(( $(date +%s) - t0 )) s"
  cp -a "$R" "$W/repo.orig" 2>/dev/null || true
  touch "$W/.built-$BLOBS"
else
  rm -rf "$R" "$W/cache" && cp -a "$W/repo.orig" "$R"
fi
blobs=$("$CAIRN" -r "$R" stats --mode raw-data --json | python3 -c 'import json,sys; print(json.load(sys.stdin).get("total_blob_count", "?"))')
echo "data+tree blobs: $blobs; repository: $(du -sh "$R" | cut -f1)"
timed() {
  local name=$1; shift
  drop
  /usr/bin/time -f "%e %M" -o "$W/time.$name" "$@" > "$W/out.$name" 2>&1 || { cat "$W/out.$name"; exit 1; }
  read -r s kb < "$W/time.$name"
  printf '| %s | %s | %.0f |\n' "$name" "$s" "$((kb / 1024))"
}
echo "| step ($BLOBS blobs) | wall s | peak RSS MiB |"
echo "|---|---|---|"
if [[ -n ${PRUNE_ARGS:-} ]]; then
  # prune on its own, with these flags (e.g. --scratch-memory 64M to time
  # the used-blob set on disk).
  "$CAIRN" -q -r "$R" forget --keep-last $((SNAPS / 2))
  timed "prune $PRUNE_ARGS" "$CAIRN" -r "$R" -v prune $PRUNE_ARGS
else
  timed "forget --prune" "$CAIRN" -r "$R" -v forget --keep-last $((SNAPS / 2)) --prune
fi
timed check "$CAIRN" -r "$R" check
grep -hE "deleted|repacked|freed|phases" "$W"/out.*prune* | head -5 || true
