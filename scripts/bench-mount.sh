#!/usr/bin/env bash
# scripts/bench-mount.sh [WORKDIR] — reading a large file sequentially
# through `cairn mount` against `cairn dump` of the same file, in one run.
#
# Workload: one file of SIZE_MIB MiB (default 1024) of random bytes
# (incompressible, so zstd stores the chunks raw), backed up into a local
# repository under WORKDIR (default /var/tmp/bench-mount). Timed, ROUNDS
# times each (default 3), with the page cache dropped before every round:
#   dump:  cairn dump latest FILE > /dev/null
#   mount: cat MOUNT/snapshots/latest/FILE > /dev/null   (mount kept running)
# Two settings: "cold" (the repository's files are read from disk) and
# "warm" (they are read into the page cache after the drop, so the time is
# cairn's own work: decryption, verification and, for the mount, FUSE).
# Prints the medians and their ratio (the issue's bound: mount <= 2x dump).
# Needs root (drop_caches, and mounting without fusermount3).
set -euo pipefail
cd "$(dirname "$0")/.."
W=${1:-/var/tmp/bench-mount}
SIZE_MIB=${SIZE_MIB:-1024}
ROUNDS=${ROUNDS:-3}
cargo build --release --locked -q
CAIRN=$(pwd)/target/release/cairn
export CAIRN_PASSWORD=bench-mount-not-a-secret CAIRN_CACHE_DIR=$W/cache
mkdir -p "$W"
FILE=$W/big.bin
if [[ ! -f $W/.done-$SIZE_MIB ]]; then
  rm -rf "$W/repo" "$W/cache" "$W"/.done-*
  head -c "${SIZE_MIB}M" /dev/urandom >"$FILE"
  "$CAIRN" -q -r "$W/repo" init
  "$CAIRN" -q -r "$W/repo" backup "$FILE"
  touch "$W/.done-$SIZE_MIB"
fi
SETTING=cold
drop() {
  sync
  echo 3 >/proc/sys/vm/drop_caches
  if [[ $SETTING == warm ]]; then find "$W/repo" -type f -exec cat {} + >/dev/null; fi
}
secs() { local t0 t1; t0=$(date +%s%N); "$@"; t1=$(date +%s%N); awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f\n", (b - a) / 1e9}'; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

run_setting() {
  dumps=()
  for _ in $(seq "$ROUNDS"); do
    drop
    dumps+=("$(secs sh -c "\"$CAIRN\" -r \"$W/repo\" dump latest \"$FILE\" >/dev/null")")
  done
  mounts=()
  for _ in $(seq "$ROUNDS"); do
    drop
    mounts+=("$(secs sh -c "cat \"$IN_MOUNT\" >/dev/null")")
  done
  d=$(printf '%s\n' "${dumps[@]}" | median)
  m=$(printf '%s\n' "${mounts[@]}" | median)
  printf '%s  dump: %.2f s (%s)  mount: %.2f s (%s)  ' "$SETTING" "$d" "${dumps[*]}" "$m" "${mounts[*]}"
  awk -v m="$m" -v d="$d" 'BEGIN {printf "mount / dump: %.2fx\n", m / d}'
}

MNT=$W/mnt
mkdir -p "$MNT"
"$CAIRN" -q -r "$W/repo" mount "$MNT" &
PID=$!
trap 'kill $PID 2>/dev/null || true; wait $PID 2>/dev/null || true' EXIT
for _ in $(seq 600); do [[ -e $MNT/snapshots/latest ]] && break; sleep 0.1; done
IN_MOUNT=$MNT/snapshots/latest$FILE
echo "file: ${SIZE_MIB} MiB of random bytes; medians of $ROUNDS rounds, page cache dropped before each"
for SETTING in cold warm; do run_setting; done
echo "mount process RSS afterwards: $(($(ps -o rss= -p $PID) / 1024)) MiB"
kill $PID
wait $PID || true
trap - EXIT
