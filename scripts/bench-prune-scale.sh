#!/usr/bin/env bash
# scripts/bench-prune-scale.sh [BLOBS] [WORKDIR] — prune and check of a
# repository of BLOBS data blobs (default 1000000; 10000000 for issue 18's
# 10^7 figure): cairn, and rustic beside it when it is installed
# (../shared/bench/install-peers.sh), in one run, each step timed with
# /usr/bin/time (wall seconds, peak RSS). scripts/bench-prune.sh compares
# with restic and rustic at 10^6 through files; this one reaches sizes
# whose backups through files would take hours.
#
# Workload, the same for each tool: SNAPS (10) stream snapshots of random
# data, each of BLOBS/SNAPS chunks of ~1.2 KiB, all unique. cairn: `init
# --chunk-size 1 --dump-chunk-size 1` (streams cut by the chunker for
# dumps: min 256 B, average 1 KiB, max 4 KiB; ~1,230 bytes per chunk on
# random data). rustic: `init --set-chunker fixed_size --set-chunk-size
# 1230` (its content-defined chunker has a 512 KiB minimum), each backup
# `--force` (otherwise rustic takes the stream as unchanged from its
# parent). Timed: `forget --keep-last SNAPS/2 --prune` (rustic:
# `--instant-delete`, since by default it only marks and deletes a day
# later; cairn deletes at once when no backup is running): half of the
# blobs become unused, their packs are deleted; then `check` (structure:
# index, packs, trees; no data read). Before each timed step the page
# cache is dropped when possible, and before `forget` each tool's local
# cache is deleted (a host that does not back up, or the worst case: both
# read the whole index from the repository). PRUNE_ARGS set (cairn only):
# `forget` untimed, then `prune PRUNE_ARGS` timed.
# The repositories are kept in WORKDIR (default /var/tmp/bench-prune-scale)
# for another look; KEEP_REPO=1 reuses ones already built for BLOBS.
# TOOLS (default: "cairn rustic", rustic only if on PATH).
set -euo pipefail
cd "$(dirname "$0")/.."
BLOBS=${1:-1000000}
W=${2:-/var/tmp/bench-prune-scale}
SNAPS=${SNAPS:-10}
PASS=bench-prune-scale-not-a-secret
TOOLS=${TOOLS:-cairn rustic}
cargo build --release --locked -q
mkdir -p "$W"
# A copy of the binary, so that a rebuild during the run does not change it.
cp target/release/cairn "$W/cairn"
CAIRN=$W/cairn
drop() { sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true; }
per=$((BLOBS / SNAPS))

run() { # tool args...
  local tool=$1; shift
  case $tool in
    cairn) CAIRN_PASSWORD=$PASS CAIRN_CACHE_DIR=$W/cache/cairn "$CAIRN" -r "$W/repo" "$@" ;;
    rustic) RUSTIC_PASSWORD=$PASS rustic --no-progress --cache-dir "$W/cache/rustic" -r "$W/repo-rustic" "$@" ;;
  esac
}
repo_of() { [[ $1 == cairn ]] && echo "$W/repo" || echo "$W/repo-$1"; }

build() { # tool
  local tool=$1 r
  r=$(repo_of "$tool")
  rm -rf "$r" "$r.orig" "$W/cache/$tool" "$W/.built-$tool-"*
  case $tool in
    cairn) run cairn -q init --chunk-size 1 --dump-chunk-size 1 ;;
    rustic) run rustic init --set-chunker fixed_size --set-chunk-size 1230 > /dev/null 2>&1 ;;
  esac
  local t0 i
  t0=$(date +%s)
  for i in $(seq 1 "$SNAPS"); do
    case $tool in
      cairn) head -c $((per * 1230)) /dev/urandom | run cairn -q backup --stdin-filename part.bin --tag "part-$i" ;;
      rustic) head -c $((per * 1230)) /dev/urandom \
        | run rustic backup --force --stdin-filename part.bin --tag "part-$i" - > /dev/null 2>&1 ;;
    esac
  done
  echo "$tool: built a $BLOBS-blob repository in $(($(date +%s) - t0)) s: $(du -sh "$r" | cut -f1)"
  cp -a "$r" "$r.orig"
  touch "$W/.built-$tool-$BLOBS"
}

timed() { # tool step args...
  local tool=$1 name=$2; shift 2
  drop
  /usr/bin/time -f "%e %M" -o "$W/time.$tool.$name" bash -c "$(declare -f run); W='$W' PASS='$PASS' CAIRN='$CAIRN'; run $tool $*" \
    > "$W/out.$tool.$name" 2>&1 || { cat "$W/out.$tool.$name"; exit 1; }
  read -r s kb < <(tail -n 1 "$W/time.$tool.$name")
  printf '| %s | %s | %s | %.0f |\n' "$tool" "$name" "$s" "$((kb / 1024))" >> "$W/table.md"
}

: > "$W/table.md"
for tool in $TOOLS; do
  if [[ $tool == rustic ]] && ! command -v rustic > /dev/null; then
    echo "rustic: not installed (../shared/bench/install-peers.sh), skipped"
    continue
  fi
  r=$(repo_of "$tool")
  if [[ ${KEEP_REPO:-0} != 1 || ! -f $W/.built-$tool-$BLOBS ]]; then
    build "$tool"
  else
    rm -rf "$r" && cp -a "$r.orig" "$r"
  fi
  rm -rf "$W/cache/$tool"
  keep=$((SNAPS / 2))
  if [[ $tool == cairn ]]; then
    blobs=$(run cairn stats --mode raw-data --json | python3 -c 'import json,sys; print(json.load(sys.stdin).get("total_blob_count", "?"))')
    echo "cairn: data+tree blobs $blobs; repository $(du -sh "$r" | cut -f1)"
    rm -rf "$W/cache/$tool"
    if [[ -n ${PRUNE_ARGS:-} ]]; then
      # prune on its own, with these flags (e.g. --scratch-memory 64M to
      # time the used-blob set on disk).
      run cairn -q forget --keep-last "$keep"
      timed cairn "prune $PRUNE_ARGS" -v prune $PRUNE_ARGS
    else
      timed cairn "forget --prune" -v forget --keep-last "$keep" --prune
    fi
    timed cairn check check
  else
    timed rustic "forget --prune" forget --keep-last "$keep" --prune --instant-delete
    timed rustic check check
  fi
  echo "$tool: after prune $(du -sh "$r" | cut -f1)"
done
echo
echo "| tool | step ($BLOBS blobs) | wall s | peak RSS MiB |"
echo "|---|---|---:|---:|"
cat "$W/table.md"
grep -hE "deleted|repacked|freed|phases" "$W"/out.cairn.*prune* 2> /dev/null | head -5 || true
