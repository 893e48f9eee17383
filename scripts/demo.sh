#!/usr/bin/env bash
# scripts/demo.sh — build cairn and run its main job on a throwaway local
# repository: init, back up a folder and a database dump stream, list,
# restore, dump, and verify both round trips.
#
# The stream is `pg_dump` of $DEMO_PGDATABASE when that is set and reachable
# (any libpq environment: PGHOST, PGPORT, PGUSER...), else a generated SQL dump.
# WORK=<dir> keeps the repository and restore there (default: a temp dir).
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --locked
CAIRN=$PWD/target/release/cairn
WORK=${WORK:-$(mktemp -d)}
export CAIRN_REPOSITORY=$WORK/repo
export CAIRN_PASSWORD=${CAIRN_PASSWORD:-demo-password-change-me}
export CAIRN_CACHE_DIR=$WORK/cache
echo "== working in $WORK"

"$CAIRN" init
echo "== backing up the folder src/"
"$CAIRN" backup src --tag demo

if [[ -n ${DEMO_PGDATABASE:-} ]] && pg_dump --schema-only "$DEMO_PGDATABASE" >/dev/null 2>&1; then
  echo "== backing up pg_dump $DEMO_PGDATABASE as a stream"
  STREAM=(pg_dump "$DEMO_PGDATABASE")
else
  echo "== backing up a generated SQL dump as a stream (set DEMO_PGDATABASE to use pg_dump)"
  STREAM=(sh -c 'echo "CREATE TABLE t (id int, v text);"; seq 1 300000 | sed "s/.*/INSERT INTO t VALUES (&, '"'"'row &'"'"');/"')
fi
"$CAIRN" backup --tag demo --stdin-filename db.sql --stdin-from-command -- "${STREAM[@]}"

echo "== snapshots"
"$CAIRN" snapshots

echo "== restoring the folder snapshot"
FOLDER_SNAP=$("$CAIRN" snapshots --json --path "$PWD/src" | python3 -c 'import json,sys; print(json.load(sys.stdin)[-1]["short_id"])')
"$CAIRN" restore "$FOLDER_SNAP" --target "$WORK/restore"
diff -r src "$WORK/restore$PWD/src" && echo "folder restored byte for byte"

echo "== dumping the stream and checking its SHA-256"
want=$("$CAIRN" snapshots --json --path /db.sql | python3 -c 'import json,sys; print(json.load(sys.stdin)[-1]["stream"]["sha256"])')
got=$("$CAIRN" dump latest db.sql | sha256sum | cut -d' ' -f1)
[[ $want == "$got" ]] && echo "stream dump matches its recorded sha256 $got"

echo "== check --read-data"
"$CAIRN" check --read-data
echo "demo OK (repository in $WORK/repo)"
