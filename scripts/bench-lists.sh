#!/usr/bin/env bash
# scripts/bench-lists.sh — what a dump's chunk list costs per night, inline
# (format 2) against chunk lists (format 3, format-spec/07-trees.md "Chunk
# lists"), on the dumps that scripts/bench-dump.sh made.
#
#   bash scripts/bench-dump.sh            # once, to make W/dumps (or REUSE_DUMPS=1)
#   W=/var/tmp/bench-dump bash scripts/bench-lists.sh
#
# For each format: a fresh repository; night 1 and night 2 of the plain dump
# (db.sql) and of the custom-format dump (db.dump) as streams, then night 2
# again (an unchanged dump); then BIG (default 4) copies of night 1 in one
# stream, twice (a large dump that did not change). Prints, per backup, the
# new tree blobs (the root tree and, in format 3, the lists), the bytes
# stored, and the backup's wall time and max RSS. cairn is not built here:
# `cargo build --release --locked` first, or point CAIRN at a binary.
set -euo pipefail
cd "$(dirname "$0")/.."
W=${W:-/var/tmp/bench-dump}
BIG=${BIG:-4}
CAIRN=${CAIRN:-$PWD/target/release/cairn}
[[ -f $W/dumps/night2.sql ]] || { echo "no dumps in $W/dumps: run scripts/bench-dump.sh first" >&2; exit 1; }
export CAIRN_PASSWORD=bench CAIRN_INSECURE_TEST_KDF=1
R=$W/lists
rm -rf "$R"
mkdir -p "$R"
printf '%-8s %-22s %10s %14s %8s %9s\n' format backup tree_blobs stored_bytes wall_s rss_mib
for fmt in 2 3; do
  export CAIRN_REPOSITORY=$R/repo-$fmt CAIRN_CACHE_DIR=$R/cache-$fmt
  "$CAIRN" init --format-version "$fmt" >/dev/null
  one() { # LABEL NAME FILE...
    local label=$1 name=$2
    shift 2
    cat "$@" | /usr/bin/time -f '%e %M' -o "$R/time" "$CAIRN" backup --json --stdin-filename "$name" >"$R/out.json"
    read -r wall rss <"$R/time"
    python3 - "$fmt" "$label" "$wall" "$rss" "$R/out.json" <<'PY'
import json, sys
fmt, label, wall, rss, path = sys.argv[1:6]
s = json.load(open(path))
print("%-8s %-22s %10d %14d %8s %9.0f" % (fmt, label, s["tree_blobs"], s["data_added"], wall, int(rss) / 1024))
PY
  }
  one "plain night 1" db.sql "$W/dumps/night1.sql"
  one "plain night 2" db.sql "$W/dumps/night2.sql"
  one "plain night 2 again" db.sql "$W/dumps/night2.sql"
  one "custom night 1" db.dump "$W/dumps/night1.dump"
  one "custom night 2" db.dump "$W/dumps/night2.dump"
  big=()
  for _ in $(seq "$BIG"); do big+=("$W/dumps/night1.sql"); done
  one "big ($BIG x night 1)" big.sql "${big[@]}"
  one "big again" big.sql "${big[@]}"
  printf '%-8s %-22s %s\n' "$fmt" "repository" "$(du -sb "$CAIRN_REPOSITORY" | cut -f1) bytes"
done
