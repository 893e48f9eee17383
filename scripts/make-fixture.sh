#!/usr/bin/env bash
# scripts/make-fixture.sh OUT_DIR [FORMAT] — how tests/fixtures/repo-vN was
# made (FORMAT: the repository format version, 3 by default; repo-v1 was
# made with format 1 by the cairn of its time, whose init had no flag).
#
# DOCUMENTATION ONLY: the checked-in fixture is frozen and never
# regenerated (format-spec/README.md, "Fixture repositories"). Run this to
# see how it was made, or to make the fixture of a *new* format version
# (tests/fixtures/repo-vN, a new directory beside the old ones).
#
# It writes OUT_DIR/repo (the repository) and OUT_DIR/manifest.json (what
# tests/integration/fixtures.rs checks it against), with a cairn built with
# the `test-hooks` feature (CAIRN_BIN, default: built here), so that:
# - the key files use the cheap test KDF (CAIRN_INSECURE_TEST_KDF=1: argon2id
#   m = 64 KiB, t = 1, p = 1), which is recorded in each key file, so any
#   cairn opens them, quickly;
# - a backup can be paused holding its lock (CAIRN_TEST_PAUSE_AT) while a
#   prune runs, so that the prune leaves a mark and a run record (an index
#   object of version 2, format-spec/06-index.md and 10-write-order.md
#   rule 11).
#
# What it stores: two key files (two passwords); snapshot 1 (tree, later
# forgotten), snapshot 2 (tree: regular, empty, executable and multi-chunk
# files, directories, symlinks, a dangling symlink, hard links, a FIFO,
# extended attributes), a stream snapshot (format 3: 1.6 MB of SQL, cut by
# the 4 KiB chunker for dumps into more than 256 chunks, so its node names
# chunk lists), then, while snapshot 3's backup
# is paused with its lock held, `forget` of snapshot 1 and
# `prune --max-unused 0`, then snapshot 3 completes.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:?usage: make-fixture.sh OUT_DIR [FORMAT]}
FORMAT=${2:-3}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
if [[ -z ${CAIRN_BIN:-} ]]; then
  cargo build --features test-hooks --bin cairn
  CAIRN_BIN=${CARGO_TARGET_DIR:-target}/debug/cairn
fi
PW1='fixture password one'
PW2='fixture password two'
export CAIRN_INSECURE_TEST_KDF=1 CAIRN_REPOSITORY="$OUT/repo" CAIRN_CACHE_DIR="$OUT/cache"
export CAIRN_PASSWORD="$PW1"
SRC="$OUT/src"
rm -rf "$OUT/repo" "$OUT/cache" "$SRC" "$OUT/src3"
cairn() { "$CAIRN_BIN" "$@"; }

# The source tree (python: xattrs, exact modes and times).
python3 - "$SRC" "$OUT/src3" <<'EOF'
import os, sys
src, src3 = sys.argv[1], sys.argv[2]
def write(path, data, mode=0o644, mtime=1_700_000_000):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    os.chmod(path, mode)
    os.utime(path, ns=(mtime * 10**9 + 123456789, mtime * 10**9 + 123456789))
write(f"{src}/hello.txt", b"hello, cairn fixture\n")
os.setxattr(f"{src}/hello.txt", "user.comment", b"kept by the fixture")
os.setxattr(f"{src}/hello.txt", "user.empty", b"")
write(f"{src}/empty", b"")
write(f"{src}/run.sh", b"#!/bin/sh\necho fixture\n", 0o755)
write(f"{src}/private", b"only the owner reads this\n", 0o600)
# Many chunks that compress to almost nothing: zeros, then a tail.
write(f"{src}/zeros.bin", bytes(2_500_000) + b"tail\n")
# Text that only partly compresses, so packs hold more than zstd frames of zeros.
write(f"{src}/dir/nested/words.txt", b"".join(b"%06d cairn fixture line\n" % (i * 7919 % 1000003) for i in range(600)))
os.chmod(f"{src}/dir/nested", 0o750)
write(f"{src}/dir/hard-a", b"one inode, two names\n")
os.link(f"{src}/dir/hard-a", f"{src}/hard-b")
os.symlink("hello.txt", f"{src}/link")
os.symlink("dir/nested/../../nowhere", f"{src}/dangling")
os.mkfifo(f"{src}/fifo", 0o640)
os.makedirs(f"{src}/dir/empty-dir", exist_ok=True)
# Only in snapshot 1: prune marks the pack that held it.
write(f"{src}/gone.bin", b"".join(b"%08x forgotten\n" % (i * 2654435761 % 2**32) for i in range(300)))
# Snapshot 3's source.
write(f"{src3}/later.txt", b"written by the backup that was paused while prune ran\n")
EOF

cairn init --format-version "$FORMAT"
CAIRN_NEW_PASSWORD="$PW2" cairn key add --label "fixture second key"
cairn backup --host fixture-host --tag first --time "2024-01-02 03:04:05" "$SRC"
rm "$SRC/gone.bin"
cairn backup --host fixture-host --tag second --time "2024-01-03 03:04:05" "$SRC"
if ((FORMAT >= 3)); then
  python3 -c 'import sys
sys.stdout.write("CREATE TABLE fixture (id int, tag text);\n")
for i in range(35000):
    sys.stdout.write("INSERT INTO fixture VALUES (%d, %sfixture row%s);\n" % (i, chr(39), chr(39)))'
else
  printf 'CREATE TABLE fixture (id int);\nINSERT INTO fixture VALUES (1), (2), (3);\n'
fi | cairn backup --host fixture-host --tag stream --time "2024-01-04 03:04:05" --stdin-filename db.sql

# Snapshot 3's backup holds its lock, stopped, while prune marks.
CAIRN_TEST_PAUSE_AT=backup:locked "$CAIRN_BIN" backup --host fixture-host --tag third \
  --time "2024-01-05 03:04:05" "$OUT/src3" 2>"$OUT/paused.err" &
paused=$!
for _ in $(seq 600); do
  [[ $(awk '{print $3}' "/proc/$paused/stat" 2>/dev/null) == T ]] && break
  sleep 0.1
done
[[ $(awk '{print $3}' "/proc/$paused/stat") == T ]] || { echo "backup never paused" >&2; exit 1; }
first=$(cairn snapshots --json --tag first | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])')
cairn forget "$first"
cairn prune --max-unused 0
kill -CONT "$paused"
wait "$paused"

cairn check --read-data
cairn snapshots --json >"$OUT/snapshots.json"
rm -rf "$OUT/cache"
ls "$OUT/repo/locks" | grep -q . && { echo "a lock was left behind" >&2; exit 1; }

# The manifest: every entry of each snapshot, as the source had it.
python3 - "$OUT" "$SRC" "$OUT/src3" "$PW1" "$PW2" "$("$CAIRN_BIN" --version)" "$FORMAT" <<'EOF'
import hashlib, json, os, stat, sys
out, src, src3, pw1, pw2, version, fmt = sys.argv[1:8]
def entries(root):
    # Sorted by path; a file with several names records the first of them
    # in that order as "hardlink" (tests/integration/fixtures.rs: describe).
    paths = sorted(os.path.relpath(os.path.join(d, n), root) for d, ds, fs in os.walk(root) for n in ds + fs)
    res, first = [], {}
    for rel in paths:
        path = os.path.join(root, rel)
        st = os.lstat(path)
        e = {"path": rel, "mode": "%04o" % stat.S_IMODE(st.st_mode)}
        if stat.S_ISREG(st.st_mode):
            data = open(path, "rb").read()
            e.update(type="file", size=len(data), sha256=hashlib.sha256(data).hexdigest(), mtime_ns=st.st_mtime_ns)
            if st.st_nlink > 1:
                e["hardlink"] = first.setdefault(st.st_ino, rel)
            xs = {x: os.getxattr(path, x).decode() for x in sorted(os.listxattr(path)) if x.startswith("user.")}
            if xs:
                e["xattrs"] = xs
        elif stat.S_ISDIR(st.st_mode):
            e["type"] = "dir"
        elif stat.S_ISLNK(st.st_mode):
            e.update(type="symlink", target=os.readlink(path))
            del e["mode"]
        elif stat.S_ISFIFO(st.st_mode):
            e["type"] = "fifo"
        res.append(e)
    return res
snaps = json.load(open(f"{out}/snapshots.json"))
by_tag = {s["tags"][0]: s for s in snaps}
manifest = {
    "format_version": int(fmt),
    "written_by": version,
    "passwords": [pw1, pw2],
    "snapshots": [
        {"id": by_tag["second"]["id"], "tag": "second", "path": src, "entries": entries(src)},
        {"id": by_tag["third"]["id"], "tag": "third", "path": src3, "entries": entries(src3)},
    ],
    "stream": {"id": by_tag["stream"]["id"], "tag": "stream", "filename": "db.sql",
               "size": by_tag["stream"]["stream"]["size"], "sha256": by_tag["stream"]["stream"]["sha256"]},
}
repo = f"{out}/repo"
objects = sorted(os.path.relpath(os.path.join(d, n), repo) for d, _, ns in os.walk(repo) for n in ns)
manifest["objects"] = objects
manifest["config_sha256"] = hashlib.sha256(open(f"{repo}/config", "rb").read()).hexdigest()
json.dump(manifest, open(f"{out}/manifest.json", "w"), indent=1, sort_keys=True)
open(f"{out}/manifest.json", "a").write("\n")
EOF
echo "made $OUT/repo and $OUT/manifest.json"
