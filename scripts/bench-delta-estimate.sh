#!/usr/bin/env bash
# scripts/bench-delta-estimate.sh [DUMPS] — how small a night could be if a
# changed region were stored as a delta against what it replaces, not as
# new chunks: `zstd --patch-from` of each night's dump (plain and custom)
# against the night before, and of the second base backup's changed files
# against the first's. DUMPS is the `dumps` directory scripts/bench-dump.sh
# leaves behind (default /var/tmp/bench-dump/dumps). A whole-file patch is
# the best case for a delta design (any match anywhere in the old file is
# found); a design that deltas each changed chunk against the chunks it
# replaces would pay per-chunk frames and ids on top. Prints bytes per
# night; compare with the bytes added per night in the README's tables.
set -euo pipefail
D=${1:-/var/tmp/bench-dump/dumps}
LEVEL=${LEVEL:-3}
command -v zstd > /dev/null || { echo "zstd (the command) is needed" >&2; exit 2; }
[[ -f $D/night1.sql && -f $D/night2.sql ]] || { echo "no dumps in $D: run scripts/bench-dump.sh first" >&2; exit 2; }
echo "| workload | night | delta bytes (zstd -$LEVEL --patch-from the night before) | whole night compressed |"
echo "|---|---:|---:|---:|"
for ext in sql dump; do
  n=2
  while [[ -f $D/night$n.$ext ]]; do
    prev=$D/night$((n - 1)).$ext cur=$D/night$n.$ext
    delta=$(zstd -q -"$LEVEL" -c --patch-from="$prev" "$cur" 2> /dev/null | wc -c)
    whole=$(zstd -q -"$LEVEL" -c "$cur" 2> /dev/null | wc -c)
    echo "| $([[ $ext == sql ]] && echo plain || echo custom) | $n | $delta | $whole |"
    n=$((n + 1))
  done
done
if [[ -d $D/base1 && -d $D/base2 ]]; then
  python3 - "$D/base1" "$D/base2" "$LEVEL" <<'PY'
import filecmp, os, subprocess, sys
b1, b2, level = sys.argv[1], sys.argv[2], sys.argv[3]
delta = whole = 0
for root, _, files in os.walk(b2):
    for f in files:
        p2 = os.path.join(root, f)
        p1 = os.path.join(b1, os.path.relpath(p2, b2))
        if os.path.exists(p1) and filecmp.cmp(p1, p2, shallow=False):
            continue
        full = len(subprocess.run(["zstd", "-q", f"-{level}", "-c", p2], capture_output=True, check=True).stdout)
        whole += full
        if os.path.exists(p1) and os.path.getsize(p1) > 0:
            out = subprocess.run(["zstd", "-q", f"-{level}", "-c", f"--patch-from={p1}", p2], capture_output=True)
            delta += len(out.stdout) if out.returncode == 0 else full
        else:
            delta += full
print(f"| base backup (changed files) | 2 | {delta} | {whole} |")
PY
fi
