#!/usr/bin/env bash
# scripts/bench-prune.sh [WORKDIR] — forget half of the snapshots and prune,
# on a synthetic repository of >= 1M blobs: cairn beside restic and rustic,
# in one run, each timed with /usr/bin/time (wall seconds, peak RSS).
#
# Workload: SNAPS batches of FILES small files each (200..700 random
# bytes: one blob per file, every blob unique), so SNAPS x FILES data blobs
# plus the trees. Each batch is moved into WORKDIR/vol and backed up from
# there (same path every time, like a nightly job), then moved out again:
# snapshot i holds batch i only. Then, timed: `forget --keep-last SNAPS/2`
# (grouping off) and `prune` (restic: default --max-unused 5%; rustic:
# --instant-delete, since by default it only marks and deletes a day later;
# cairn deletes at once when no backup is running). The page cache is
# dropped before each timed step. Knobs: SNAPS (200), FILES (5000),
# TOOLS ("cairn restic rustic"). Backing up takes a while (3 x SNAPS runs);
# the repositories are kept in WORKDIR/repos for another look.
set -euo pipefail
cd "$(dirname "$0")/.."
W=${1:-/var/tmp/bench-prune}
SNAPS=${SNAPS:-200}
FILES=${FILES:-5000}
TOOLS=${TOOLS:-cairn restic rustic}
PASS=bench-prune-password-not-a-secret
mkdir -p "$W"
cargo build --release --locked -q
mkdir -p "$W"
# A copy of the binary, so that a rebuild during the run does not change it.
cp target/release/cairn "$W/cairn"
CAIRN=$W/cairn

if [[ ! -f $W/batches/.done-$SNAPS-$FILES ]]; then
  rm -rf "$W/batches"
  python3 - "$W/batches" "$SNAPS" "$FILES" <<'PY'
import os, random, sys
root, snaps, files = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(42)
for s in range(snaps):
    d = os.path.join(root, f"{s:04d}")
    for sub in range(files // 500 + 1):
        os.makedirs(os.path.join(d, f"d{sub:02d}"), exist_ok=True)
    for f in range(files):
        with open(os.path.join(d, f"d{f // 500:02d}", f"f{f:05d}"), "wb") as out:
            out.write(rng.randbytes(rng.randint(200, 700)))
PY
  touch "$W/batches/.done-$SNAPS-$FILES"
fi

drop() { sync; { echo 3 > /proc/sys/vm/drop_caches; } 2>/dev/null || true; }

run() { # tool args...
  local tool=$1; shift
  case $tool in
    cairn)  CAIRN_PASSWORD=$PASS CAIRN_CACHE_DIR=$W/cache/cairn "$CAIRN" -q -r "$W/repos/cairn" "$@" ;;
    restic) RESTIC_PASSWORD=$PASS RESTIC_CACHE_DIR=$W/cache/restic restic -q -r "$W/repos/restic" "$@" ;;
    rustic) RUSTIC_PASSWORD=$PASS rustic --no-progress --cache-dir "$W/cache/rustic" -r "$W/repos/rustic" "$@" ;;
  esac
}

backup() { # tool
  case $1 in
    cairn)  run cairn backup --host bench "$W/vol" ;;
    restic) run restic backup --host bench "$W/vol" ;;
    rustic) run rustic backup --host bench "$W/vol" 2>> "$W/logs/rustic-backups.log" ;;
  esac
}

timed() { # label tool args...
  local label=$1 tool=$2; shift 2
  drop
  /usr/bin/time -f "%e %M" -o "$W/time.tmp" bash -c "$(declare -f run); W='$W' PASS='$PASS' CAIRN='$CAIRN'; run $tool $*" > "$W/logs/$tool-$label.log" 2>&1
  read -r secs kb < <(tail -n 1 "$W/time.tmp")
  printf '%s\t%s\t%s\t%s\n' "$tool" "$label" "$secs" "$((kb / 1024))" | tee -a "$W/results.tsv"
}

mkdir -p "$W/logs"
: > "$W/results.tsv"
keep=$((SNAPS / 2))
for tool in $TOOLS; do
  rm -rf "$W/repos/$tool" "$W/cache/$tool" "$W/vol"
  mkdir -p "$W/repos" "$W/cache/$tool"
  run "$tool" init > /dev/null
  start=$(date +%s)
  for ((s = 0; s < SNAPS; s++)); do
    b=$(printf '%04d' "$s")
    mv "$W/batches/$b" "$W/vol"
    backup "$tool" > /dev/null
    mv "$W/vol" "$W/batches/$b"
  done
  echo "$tool: $SNAPS backups in $(( $(date +%s) - start )) s; repository $(du -sh "$W/repos/$tool" | cut -f1)"
  case $tool in
    cairn)  timed forget cairn forget --keep-last "$keep" --group-by "''"
            timed prune cairn prune ;;
    restic) timed forget restic forget --keep-last "$keep" --group-by "''"
            timed prune restic prune ;;
    rustic) timed forget rustic forget --keep-last "$keep" --group-by "''"
            timed prune rustic prune --instant-delete ;;
  esac
  echo "$tool: after prune $(du -sh "$W/repos/$tool" | cut -f1)"
done
echo
echo "| tool | forget s | forget MiB | prune s | prune MiB |"
echo "|---|---|---|---|---|"
awk -F'\t' '{v[$1,$2,"s"]=$3; v[$1,$2,"m"]=$4; t[$1]=1} END {for (x in t) printf "| %s | %s | %s | %s | %s |\n", x, v[x,"forget","s"], v[x,"forget","m"], v[x,"prune","s"], v[x,"prune","m"]}' "$W/results.tsv"
