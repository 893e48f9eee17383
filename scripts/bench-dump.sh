#!/usr/bin/env bash
# scripts/bench-dump.sh — bytes added per night for a nightly database dump
# (issue 18): a realistic application database in a real PostgreSQL 15,
# changed night by night, dumped plain and with `pg_dump -Fc -Z0`, plus a
# base backup of its data directory; backed up night after night by restic,
# rustic and cairn (several average chunk sizes), side by side in one run.
#
#   bash scripts/bench-dump.sh            # everything at the default scale
#   SCALE=4 NIGHTS=3 TOOLS="restic cairn" CAIRN_CHUNK_SIZES="default 16" bash scripts/bench-dump.sh
#   python3 scripts/bench-dump-table.py /var/tmp/bench-dump    # the table again
#
# Run as root (the cluster runs as the postgres user, via scripts/pg-server.sh,
# in W/pg on 127.0.0.1:PORT; stopped at the end). cairn is not built here:
# `cargo build --release --locked` first, or point CAIRN at a binary.
#
# Workload (deterministic: setseed, generate_series, a pseudo-word vocabulary
# with a skewed distribution, md5): database `bench` with
#   customers  10,000 x SCALE  name, email, phone, street, city, country,
#              created/updated timestamptz, balance numeric(12,2), jsonb prefs
#              with varied keys, optional notes text
#   orders     30,000 x SCALE  customer ref, status, currency, total
#              numeric(12,2), jsonb line items (1-4), timestamps, optional note
#   events     40,000 x SCALE  audit log: time, kind, refs, jsonb payload
#              (ip, agent, session md5, ...), text message, acked_at
# plus indexes on orders.customer_id and events.occurred_at. SCALE=1 gives
# a ~23 MB plain dump (zstd -3: ~3x); the default 12 about 275 MB.
# Night 1 is the initial data. Each later night, per table: UPDATE ~0.5% of
# the rows picked at random (status/total/updated_at/json field), DELETE
# ~0.1% at random, INSERT 2.5% new rows, then VACUUM ANALYZE. After each night:
#   W/dumps/nightK.sql    pg_dump plain
#   W/dumps/nightK.dump   pg_dump -Fc -Z0
# and after nights 1 and 2 a base backup, W/dumps/baseK
# (`pg_basebackup -Fp -X none -c fast`: 8 KiB pages in 1 GiB segment files).
#
# Runs: per tool/variant and workload (plain, custom, base) a fresh
# repository in W/repos; nights 1..NIGHTS in order (streams via stdin under a
# fixed name, db.sql / db.dump, so parent snapshots and dedup apply; base:
# the directory W/vol, updated from base1 to base2 in place, unchanged files
# left alone, as a live data directory). Each backup timed with /usr/bin/time
# (wall s, max RSS); repository size `du -sb` after each. Then the last night
# is restored (dump to a file / restore into a directory), timed, and compared
# (sha256) with the source: a mismatch fails the run (exit 1) loudly.
# Settings as ../shared/bench/run-peers.sh: restic repository v2 with
# --compression auto, rustic defaults, cairn defaults except --chunk-size.
# The page cache is not dropped: inputs are pre-read before each step (warm).
#
# Output: W/results.tsv (tool, variant, workload, night, repo_bytes,
# added_bytes, wall_s, rss_kb, raw_bytes, status; night 0 = init, night
# "restore" = the restore of the last night), W/results.md (the table from
# scripts/bench-dump-table.py, also printed), logs in W/logs/.
#
# Knobs (environment, defaults):
#   W=/var/tmp/bench-dump   work directory: must be reachable by the postgres
#                           user (not under /root); needs ~15 x the dump size
#   SCALE=12                database size (see above)
#   NIGHTS=4                nights (>= 2)
#   TOOLS="restic cairn rustic"   a tool that is not installed is skipped
#                           (and said so); rustic is looked for in
#                           ~/.cargo/bin too
#   CAIRN_CHUNK_SIZES="default 64 16 8 4"   cairn variants: average chunk
#                           KiB for dumps, `cairn init --dump-chunk-size`
#                           (default: none, i.e. cairn's default, 4 KiB);
#                           `files` cuts the dumps with the files chunker
#                           (512 KiB, as before the dump chunker existed);
#                           `v1:SIZE` makes a format-1 repository (every
#                           chunk compressed alone), e.g. "v1:4 4";
#                           `zN` the default chunker with groups at zstd
#                           level N (`init --group-compression N`).
#                           cairn backs the base backup up with
#                           `--chunker dump`, as `cairn pg backup` does
#   WORKLOADS="plain custom base"
#   CAIRN=<target>/release/cairn   (CARGO_TARGET_DIR or ./target)
#   PORT=55439              the cluster's port
#   KEEP=0                  1: keep the repositories (else each is deleted
#                           after its restore check)
#   REUSE_DUMPS=0           1: reuse W/dumps if it is complete for the same
#                           SCALE and NIGHTS (no PostgreSQL needed then)
#   DUMPS_ONLY=0            1: only make the workload (W/dumps), run no tool
set -euo pipefail
export LC_ALL=C
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
W=${W:-/var/tmp/bench-dump}
SCALE=${SCALE:-12}
NIGHTS=${NIGHTS:-4}
TOOLS=${TOOLS:-restic cairn rustic}
CAIRN_CHUNK_SIZES=${CAIRN_CHUNK_SIZES:-default 64 16 8 4}
WORKLOADS=${WORKLOADS:-plain custom base}
CAIRN=${CAIRN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/cairn}
PORT=${PORT:-55439}
KEEP=${KEEP:-0}
REUSE_DUMPS=${REUSE_DUMPS:-0}
DUMPS_ONLY=${DUMPS_ONLY:-0}
PASS=cairn-bench-password-not-a-secret
export PATH="$PATH:$HOME/.cargo/bin"

log() { printf '[bench-dump %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[[ $SCALE =~ ^[0-9]+$ && $SCALE -ge 1 ]] || die "SCALE must be a positive integer"
[[ $NIGHTS =~ ^[0-9]+$ && $NIGHTS -ge 2 ]] || die "NIGHTS must be >= 2"
[[ $W == /root || $W == /root/* ]] && die "W=$W: the postgres user cannot reach /root"
[[ -x /usr/bin/time ]] || die "/usr/bin/time missing (apt-get install time)"
exec < /dev/null
mkdir -p "$W"
W=$(cd "$W" && pwd)
D=$W/dumps
mkdir -p "$W/logs"
T_START=$SECONDS

# ---------------------------------------------------------------- workload
SQL_INIT=$(cat <<'EOF'
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
SET max_parallel_workers_per_gather = 0;
DROP TABLE IF EXISTS events, orders, customers;
-- a pseudo-word from a 4096-word vocabulary, skewed (frequent short words)
CREATE OR REPLACE FUNCTION bd_word() RETURNS text LANGUAGE plpgsql VOLATILE AS $f$
DECLARE
  s CONSTANT text[] := '{a,e,o,ka,lo,mi,ne,ri,ta,su,po,de,ga,bu,le,ro,an,en,in,on,ar,er,or,el,al,ti,sa,ve,na,co,ma,pe,di,fu,he,ja,li,mo,nu,qu,ra,se,to,vi,wa,ze,ch,st}';
  w int := floor(4096 * power(random(), 3))::int;
BEGIN
  RETURN s[1 + w % 48] || s[1 + (w / 48) % 48] || CASE WHEN w >= 300 THEN s[1 + (w / 7) % 48] ELSE '' END;
END $f$;
CREATE OR REPLACE FUNCTION bd_text(n int) RETURNS text LANGUAGE plpgsql VOLATILE AS $f$
DECLARE r text := initcap(bd_word()); i int;
BEGIN
  FOR i IN 2..n LOOP
    r := r || CASE WHEN random() < 0.07 THEN ', ' ELSE ' ' END || bd_word();
  END LOOP;
  RETURN r || '.';
END $f$;
CREATE OR REPLACE FUNCTION bd_pick(a text[]) RETURNS text LANGUAGE sql VOLATILE AS
$f$ SELECT a[1 + floor(power(random(), 1.5) * array_length(a, 1))::int] $f$;

CREATE TABLE customers (
  id bigint PRIMARY KEY, name text NOT NULL, email text NOT NULL, phone text,
  street text, city text, country char(2), created_at timestamptz NOT NULL,
  updated_at timestamptz NOT NULL, balance numeric(12,2) NOT NULL, prefs jsonb NOT NULL, notes text);
CREATE TABLE orders (
  id bigint PRIMARY KEY, customer_id bigint NOT NULL, status text NOT NULL, currency char(3) NOT NULL,
  total numeric(12,2) NOT NULL, items jsonb NOT NULL, created_at timestamptz NOT NULL,
  updated_at timestamptz NOT NULL, note text);
CREATE TABLE events (
  id bigint PRIMARY KEY, occurred_at timestamptz NOT NULL, kind text NOT NULL, customer_id bigint,
  order_id bigint, payload jsonb NOT NULL, message text NOT NULL, acked_at timestamptz);

-- row makers (night 1 and every later night's new rows): ids first..first+n-1,
-- created in [t0, t0 + span) in id order
CREATE OR REPLACE FUNCTION bd_add_customers(first bigint, n bigint, t0 timestamptz, span interval) RETURNS void LANGUAGE sql AS $f$
INSERT INTO customers
SELECT g, nm, lower(replace(nm, ' ', '.')) || (g % 997) || '@' || bd_pick('{mail.example,post.example,corp.example,inbox.example,web.example}'),
  '+' || (10 + g % 89) || ' ' || lpad((floor(random() * 1e9))::bigint::text, 9, '0'),
  (1 + floor(random() * 400))::int || ' ' || initcap(bd_word()) || ' ' || bd_pick('{Street,Road,Lane,Avenue,Way,Place}'),
  initcap(bd_word() || bd_word()), bd_pick('{DE,US,FR,GB,NL,SE,IT,ES,PL,CH,AT,BE,DK,NO,FI}'),
  c, c + random() * interval '30 days', round((random() * random() * 5000)::numeric, 2),
  jsonb_strip_nulls(jsonb_build_object(
    'lang', bd_pick('{en,de,fr,nl,sv,it,es,pl}'), 'newsletter', random() < 0.3,
    'theme', CASE WHEN random() < 0.4 THEN bd_pick('{dark,light,system}') END,
    'tz', CASE WHEN random() < 0.5 THEN bd_pick('{Europe/Berlin,America/New_York,Europe/Paris,Europe/London,Asia/Tokyo}') END,
    'tags', CASE WHEN random() < 0.3 THEN jsonb_build_array(bd_word(), bd_word()) END,
    'limits', CASE WHEN random() < 0.2 THEN jsonb_build_object('daily', (random() * 1000)::int, 'monthly', (random() * 20000)::int) END)),
  CASE WHEN random() < 0.4 THEN bd_text(4 + (g % 17)::int) END
FROM (SELECT g, initcap(bd_word()) || ' ' || initcap(bd_word() || bd_word()) AS nm,
             t0 + (g - first) * span / n + random() * interval '1 hour' AS c
      FROM generate_series(first, first + n - 1) g) s
$f$;
CREATE OR REPLACE FUNCTION bd_add_orders(first bigint, n bigint, ncust bigint, t0 timestamptz, span interval) RETURNS void LANGUAGE sql AS $f$
INSERT INTO orders
SELECT g, 1 + floor(random() * ncust)::bigint, bd_pick('{delivered,shipped,paid,new,cancelled,refunded}'),
  bd_pick('{EUR,USD,GBP,SEK,CHF}'), round((random() * 400 + 5)::numeric, 2),
  (SELECT jsonb_agg(jsonb_build_object('sku', 'SKU-' || lpad((floor(power(random(), 2) * 60000))::int::text, 6, '0'),
          'qty', 1 + floor(power(random(), 3) * 5)::int, 'price', round((random() * 150 + 1)::numeric, 2),
          'name', initcap(bd_text((2 + i % 3)::int)))) FROM generate_series(1, 1 + (g * 7 + i0) % 4) i),
  c, c + random() * interval '5 days',
  CASE WHEN random() < 0.25 THEN bd_text(5 + (g % 13)::int) END
FROM (SELECT g, (random() * 3)::int AS i0, t0 + (g - first) * span / n + random() * interval '1 hour' AS c
      FROM generate_series(first, first + n - 1) g) s
$f$;
CREATE OR REPLACE FUNCTION bd_add_events(first bigint, n bigint, ncust bigint, nord bigint, t0 timestamptz, span interval) RETURNS void LANGUAGE sql AS $f$
INSERT INTO events
SELECT g, t0 + (g - first) * span / n + random() * interval '1 second', k,
  1 + floor(random() * ncust)::bigint, CASE WHEN k LIKE 'order%' THEN 1 + floor(random() * nord)::bigint END,
  jsonb_strip_nulls(jsonb_build_object('ip', '10.' || (g % 251) || '.' || floor(random() * 255)::int || '.' || floor(random() * 255)::int,
    'agent', bd_pick('{Mozilla/5.0 (X11; Linux x86_64),Mozilla/5.0 (Macintosh; Intel Mac OS X 14_2),Mozilla/5.0 (iPhone; CPU iPhone OS 17_1),okhttp/4.12.0,python-requests/2.31}'),
    'session', md5(g::text || 'bench'), 'ms', floor(random() * 900)::int,
    'amount', CASE WHEN k LIKE 'order%' THEN round((random() * 400)::numeric, 2) END,
    'path', CASE WHEN k LIKE 'page%' THEN '/' || bd_word() || '/' || bd_word() END,
    'ref', CASE WHEN random() < 0.2 THEN upper(substr(md5(random()::text), 1, 10)) END)),
  bd_text(6 + (g % 11)::int), CASE WHEN random() < 0.5 THEN t0 + (g - first) * span / n + random() * interval '1 hour' END
FROM (SELECT g, bd_pick('{page.view,login,order.created,order.paid,page.search,logout,order.shipped,password.reset,api.call}') AS k
      FROM generate_series(first, first + n - 1) g) s
$f$;

SELECT setseed(0.42);
SELECT bd_add_customers(1, 10000 * :scale, '2023-01-01', '3 years');
SELECT bd_add_orders(1, 30000 * :scale, 10000 * :scale, '2023-01-01', '3 years');
SELECT bd_add_events(1, 40000 * :scale, 10000 * :scale, 30000 * :scale, '2025-06-01', '7 months');
CREATE INDEX orders_customer ON orders (customer_id);
CREATE INDEX events_time ON events (occurred_at);
VACUUM ANALYZE;
EOF
)

# one night: psql -v seed=S -v ts=TIMESTAMP
SQL_NIGHT=$(cat <<'EOF'
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
SET max_parallel_workers_per_gather = 0;
SELECT setseed(:seed);
SELECT max(id) AS cmax, count(*) AS cn FROM customers \gset
SELECT max(id) AS omax, count(*) AS onr FROM orders \gset
SELECT max(id) AS emax, count(*) AS en FROM events \gset
-- ~0.5% of the rows updated, picked at random (ids of deleted rows miss)
UPDATE customers SET updated_at = :'ts'::timestamptz + random() * interval '1 day',
    balance = round((balance + random() * 100 - 40)::numeric, 2),
    prefs = prefs || jsonb_build_object('last_login', (:'ts'::timestamptz + random() * interval '1 day')::text)
  WHERE id IN (SELECT 1 + floor(random() * :cmax)::bigint FROM generate_series(1, (:cn * 0.005)::int));
UPDATE orders SET status = bd_pick('{delivered,shipped,paid,cancelled,refunded}'),
    total = round((total * (0.8 + random() * 0.4))::numeric, 2),
    updated_at = :'ts'::timestamptz + random() * interval '1 day',
    items = jsonb_set(items, '{0,qty}', to_jsonb(1 + floor(random() * 5)::int))
  WHERE id IN (SELECT 1 + floor(random() * :omax)::bigint FROM generate_series(1, (:onr * 0.005)::int));
UPDATE events SET acked_at = :'ts'::timestamptz + random() * interval '1 day',
    payload = payload || jsonb_build_object('acked_by', bd_word(), 'ack_ms', floor(random() * 5000)::int)
  WHERE id IN (SELECT 1 + floor(random() * :emax)::bigint FROM generate_series(1, (:en * 0.005)::int));
-- ~0.1% deleted at random
DELETE FROM customers WHERE id IN (SELECT 1 + floor(random() * :cmax)::bigint FROM generate_series(1, (:cn * 0.001)::int));
DELETE FROM orders WHERE id IN (SELECT 1 + floor(random() * :omax)::bigint FROM generate_series(1, (:onr * 0.001)::int));
DELETE FROM events WHERE id IN (SELECT 1 + floor(random() * :emax)::bigint FROM generate_series(1, (:en * 0.001)::int));
-- 2.5% new rows, created during the day
SELECT bd_add_customers(:cmax + 1, (:cn * 0.025)::bigint, :'ts', '1 day');
SELECT bd_add_orders(:omax + 1, (:onr * 0.025)::bigint, :cmax + (:cn * 0.025)::bigint, :'ts', '1 day');
SELECT bd_add_events(:emax + 1, (:en * 0.025)::bigint, :cmax + (:cn * 0.025)::bigint, :omax + (:onr * 0.025)::bigint, :'ts', '1 day');
VACUUM ANALYZE;
EOF
)

PG_STARTED=0
cleanup() {
  if ((PG_STARTED)); then bash "$HERE/pg-server.sh" stop "$W/pg" || true; fi
  rm -rf "$W/vol" "$W/restore"
}
trap cleanup EXIT

# base backup after night K: online, consistent copy of the data directory
base_backup() {
  local k=$1
  rm -rf "$D/base$k"
  pg_basebackup -D "$D/base$k" -Fp -X none -c fast
  log "base$k: $(du -sb "$D/base$k" | cut -f1) bytes, $(find "$D/base$k" -type f | wc -l) files"
}

dump_night() {
  local k=$1
  pg_dump -d bench -f "$D/night$k.sql"
  pg_dump -d bench -Fc -Z0 -f "$D/night$k.dump"
  log "night $k: night$k.sql $(stat -c %s "$D/night$k.sql") bytes, night$k.dump $(stat -c %s "$D/night$k.dump") bytes"
}

make_dumps() {
  local stamp="scale=$SCALE nights=$NIGHTS"
  if [[ $REUSE_DUMPS == 1 && -f $D/.complete && $(cat "$D/.complete") == "$stamp" ]]; then
    log "REUSE_DUMPS=1: reusing $D ($stamp)"
    return
  fi
  rm -rf "$D"
  mkdir -p "$D"
  local t0=$SECONDS k
  log "PostgreSQL cluster in $W/pg, port $PORT (FRESH)"
  eval "$(FRESH=1 bash "$HERE/pg-server.sh" start "$W/pg" "$PORT")"
  PG_STARTED=1
  export PGHOST PGPORT PGUSER
  command -v pg_basebackup > /dev/null || die "pg_basebackup not on PATH"
  # replication connections for pg_basebackup (pg-server.sh allows only
  # normal ones)
  printf 'local replication all trust\nhost replication all 127.0.0.1/32 trust\n' >> "$W/pg/data/pg_hba.conf"
  psql -X -q -d postgres -c 'SELECT pg_reload_conf()' > /dev/null
  psql -X -q -d postgres -c 'CREATE DATABASE bench' > /dev/null
  log "night 1: building the database (SCALE=$SCALE)"
  psql -X -q -d bench -v scale="$SCALE" -f <(printf '%s\n' "$SQL_INIT") > "$W/logs/sql-night1.log"
  log "night 1: $(psql -X -d bench -tAc "SELECT pg_size_pretty(pg_database_size('bench'))") database, built in $((SECONDS - t0)) s"
  dump_night 1
  base_backup 1
  for ((k = 2; k <= NIGHTS; k++)); do
    psql -X -q -d bench -v seed="0.$((k * 7))" -v ts="$(date -u -d "2026-01-01 +$((k - 1)) days" +%F)" \
      -f <(printf '%s\n' "$SQL_NIGHT") > "$W/logs/sql-night$k.log"
    log "night $k: $(psql -X -d bench -tAc "SELECT string_agg(relname || ' ' || n_live_tup, ', ' ORDER BY relname) FROM pg_stat_user_tables")"
    dump_night "$k"
    ((k == 2)) && base_backup 2
  done
  bash "$HERE/pg-server.sh" stop "$W/pg"
  PG_STARTED=0
  # sizes: workload night raw_bytes (zstd -3 of night 1 in zstd.tsv)
  {
    for ((k = 1; k <= NIGHTS; k++)); do
      printf 'plain\t%s\t%s\n' "$k" "$(stat -c %s "$D/night$k.sql")"
      printf 'custom\t%s\t%s\n' "$k" "$(stat -c %s "$D/night$k.dump")"
    done
    for k in 1 2; do printf 'base\t%s\t%s\n' "$k" "$(du -sb "$D/base$k" | cut -f1)"; done
  } > "$D/sizes.tsv"
  {
    printf 'plain\t%s\t%s\n' "$(stat -c %s "$D/night1.sql")" "$(zstd -3 -c "$D/night1.sql" | wc -c)"
    printf 'custom\t%s\t%s\n' "$(stat -c %s "$D/night1.dump")" "$(zstd -3 -c "$D/night1.dump" | wc -c)"
    printf 'base\t%s\t%s\n' "$(du -sb "$D/base1" | cut -f1)" "$(tar -C "$D/base1" -cf - . | zstd -3 -c | wc -c)"
  } > "$D/zstd.tsv"
  awk -F'\t' '{ printf "zstd -3 of night 1, %s: %d -> %d bytes (%.2fx)\n", $1, $2, $3, $2 / $3 }' "$D/zstd.tsv" |
    while read -r l; do log "$l"; done
  echo "$stamp" > "$D/.complete"
  log "workload made in $((SECONDS - t0)) s"
}

# ---------------------------------------------------------------- tools
have_tool() {
  case $1 in
    cairn) [[ -x $CAIRN ]] ;;
    *) command -v "$1" > /dev/null ;;
  esac
}

tool_version() {
  case $1 in
    restic) restic version | head -n 1 ;;
    rustic) rustic --version | head -n 1 ;;
    cairn) "$CAIRN" --version | head -n 1 ;;
  esac
}

# tool_env: per-repository environment for TOOL/VARIANT (REPO, CACHE set)
tool_env() {
  case $TOOL in
    restic) export RESTIC_REPOSITORY=$REPO RESTIC_PASSWORD=$PASS RESTIC_CACHE_DIR=$CACHE ;;
    rustic) export RUSTIC_REPOSITORY=$REPO RUSTIC_PASSWORD=$PASS RUSTIC_CACHE_DIR=$CACHE ;;
    cairn) export CAIRN_PASSWORD=$PASS CAIRN_CACHE_DIR=$CACHE ;;
  esac
}

# tool_cmd OP [ARG]: fills CMD. OP: init | stdin NAME | backup DIR |
# dump NAME (to stdout) | restore DEST
tool_cmd() {
  local op=$1 arg=${2:-}
  case $TOOL in
    restic)
      case $op in
        init)    CMD=(restic init --repository-version 2) ;;
        stdin)   CMD=(restic backup --host bench --compression auto --stdin --stdin-filename "$arg") ;;
        backup)  CMD=(restic backup --host bench --compression auto "$arg") ;;
        dump)    CMD=(restic dump latest "/$arg") ;;
        restore) CMD=(restic restore latest --target "$arg") ;;
      esac ;;
    rustic)
      local c=(rustic --no-progress --cache-dir "$CACHE")
      case $op in
        init)    CMD=("${c[@]}" init) ;;
        # --force: without it rustic 0.11 takes an unchanged-looking stdin
        # node from the parent snapshot and reads nothing (its restore then
        # gives the first night back).
        stdin)   CMD=("${c[@]}" backup --host bench --force --stdin-filename "$arg" -) ;;
        backup)  CMD=("${c[@]}" backup --host bench "$arg") ;;
        # (the path of a stdin snapshot: NAME or /NAME, by version)
        dump)    # shellcheck disable=SC2016
                 CMD=(sh -c '"$@" "latest:$0" || "$@" "latest:/$0"' "$arg" "${c[@]}" dump) ;;
        restore) CMD=("${c[@]}" restore latest "$arg") ;;
      esac ;;
    cairn)
      local c=("$CAIRN" -r "$REPO")
      case $op in
        init)    CMD=("${c[@]}" init)
                 local size=${VARIANT#v1:}
                 [[ $VARIANT == v1:* ]] && CMD+=(--format-version 1)
                 if [[ $size == z* ]]; then
                   CMD+=(--group-compression "${size#z}"); size=default
                 fi
                 case $size in
                   default) ;;
                   # dumps cut with the files chunker: a config without
                   # dump_chunker, as an older cairn wrote (512 KiB)
                   files) CMD+=(--dump-chunk-size 512) ;;
                   *) CMD+=(--dump-chunk-size "$size") ;;
                 esac ;;
        stdin)   CMD=("${c[@]}" backup --stdin-filename "$arg") ;;
        backup)  CMD=("${c[@]}" backup --chunker dump "$arg") ;;
        dump)    CMD=("${c[@]}" dump latest "$arg") ;;
        restore) CMD=("${c[@]}" restore latest --target "$arg") ;;
      esac ;;
  esac
}

# timed NAME [< input] [> output]: runs CMD under /usr/bin/time; sets SECS
# RSS; on failure says so, sets FAILED=1 and returns 1
timed() {
  local name=$1 tf=$LOGT/$1.time rc=0
  printf '%q ' "${CMD[@]}" > "$LOGT/$name.cmd"
  /usr/bin/time -f '%e %M' -o "$tf" "${CMD[@]}" 2> "$LOGT/$name.err" || rc=$?
  read -r SECS RSS < <(grep -E '^[0-9.]+ [0-9]+$' "$tf" | tail -n 1) || { SECS=0 RSS=0; }
  if ((rc != 0)); then
    FAILED=1
    log "!!!!! $TOOL/$VARIANT $name FAILED (rc=$rc; see $LOGT/$name.err):"
    tail -n 5 "$LOGT/$name.err" | sed 's/^/    /' >&2
    return 1
  fi
}

repo_bytes() { du -sb "$REPO" | cut -f1; }
row() { printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$TOOL" "$VARIANT" "$@" >> "$W/results.tsv"; }
raw_of() { awk -F'\t' -v w="$1" -v n="$2" '$1 == w && $2 == n { print $3 }' "$D/sizes.tsv"; }

# tree_sum DIR: one sha256 over the relative paths and contents of the files
tree_sum() {
  (cd "$1" && find . -type f -print0 | sort -z | xargs -0 -r sha256sum) | sha256sum | cut -d' ' -f1
}

# sync_vol SRC: make W/vol equal to SRC; files that did not change are left
# alone (same inode, mtime, ctime), changed ones are replaced (new inode),
# as a live data directory after a night
sync_vol() {
  python3 - "$1" "$W/vol" <<'PY'
import filecmp, os, shutil, sys
src, dst = sys.argv[1], sys.argv[2]
os.makedirs(dst, exist_ok=True)
for root, dirs, files in os.walk(dst, topdown=False):
    rel = os.path.relpath(root, dst)
    for f in files:
        if not os.path.isfile(os.path.join(src, rel, f)):
            os.remove(os.path.join(root, f))
    if rel != "." and not os.path.isdir(os.path.join(src, rel)):
        os.rmdir(root)
for root, dirs, files in os.walk(src):
    rel = os.path.relpath(root, src)
    os.makedirs(os.path.join(dst, rel), exist_ok=True)
    for f in files:
        s, d = os.path.join(root, f), os.path.join(dst, rel, f)
        if not (os.path.isfile(d) and filecmp.cmp(s, d, shallow=False)):
            if os.path.exists(d):
                os.remove(d)
            shutil.copy2(s, d)
for root, dirs, files in os.walk(src):
    shutil.copystat(root, os.path.join(dst, os.path.relpath(root, src)))
PY
}

run_workload() {
  local wl=$1 k n prev cur raw name sum_src sum_out
  REPO=$W/repos/$TOOL-$VARIANT-$wl
  CACHE=$W/cache/$TOOL-$VARIANT-$wl
  LOGT=$W/logs/$TOOL-$VARIANT-$wl
  rm -rf "$REPO" "$CACHE" "$LOGT" "$W/vol" "$W/restore"
  mkdir -p "$CACHE" "$LOGT" "$W/repos"
  tool_env
  tool_cmd init
  timed init > "$LOGT/init.out" || { row "$wl" 0 0 0 0 0 0 FAIL; return 0; }
  prev=$(repo_bytes)
  row "$wl" 0 "$prev" "$prev" "$SECS" "$RSS" 0 ok
  n=$NIGHTS; [[ $wl == base ]] && n=2
  case $wl in plain) name=db.sql ;; custom) name=db.dump ;; base) name= ;; esac
  for ((k = 1; k <= n; k++)); do
    raw=$(raw_of "$wl" "$k")
    if [[ $wl == base ]]; then
      sync_vol "$D/base$k"
      find "$W/vol" -type f -exec cat {} + > /dev/null
      tool_cmd backup "$W/vol"
      timed "night$k" < /dev/null > "$LOGT/night$k.out" || { row "$wl" "$k" 0 0 0 0 "$raw" FAIL; return 0; }
    else
      local src=$D/night$k.${name#db.}
      cat "$src" > /dev/null
      tool_cmd stdin "$name"
      timed "night$k" < "$src" > "$LOGT/night$k.out" || { row "$wl" "$k" 0 0 0 0 "$raw" FAIL; return 0; }
    fi
    cur=$(repo_bytes)
    row "$wl" "$k" "$cur" "$((cur - prev))" "$SECS" "$RSS" "$raw" ok
    log "$(printf '%-6s %-7s %-6s night %d: %6.1fs %7d KB rss, repo %12d B (+%d)' \
      "$TOOL" "$VARIANT" "$wl" "$k" "$SECS" "$RSS" "$cur" "$((cur - prev))")"
    prev=$cur
  done
  # restore the last night and compare
  mkdir -p "$W/restore"
  if [[ $wl == base ]]; then
    tool_cmd restore "$W/restore"
    timed restore < /dev/null > "$LOGT/restore.out" || { row "$wl" restore 0 0 0 0 0 FAIL; return 0; }
    local root=$W/restore
    [[ -d $W/restore$W/vol ]] && root=$W/restore$W/vol
    sum_src=$(tree_sum "$D/base$n"); sum_out=$(tree_sum "$root")
  else
    tool_cmd dump "$name"
    timed restore > "$W/restore/$name" || { row "$wl" restore 0 0 0 0 0 FAIL; return 0; }
    sum_src=$(sha256sum < "$D/night$n.${name#db.}" | cut -d' ' -f1)
    sum_out=$(sha256sum < "$W/restore/$name" | cut -d' ' -f1)
  fi
  local status=pass
  if [[ $sum_src != "$sum_out" ]]; then
    status=FAIL
    FAILED=1
    log "!!!!! $TOOL/$VARIANT $wl: the restore of night $n DIFFERS from the source ($sum_out != $sum_src)"
  fi
  row "$wl" restore "$(repo_bytes)" 0 "$SECS" "$RSS" "$(raw_of "$wl" "$n")" "$status"
  log "$(printf '%-6s %-7s %-6s restore: %6.1fs, sha256 %s' "$TOOL" "$VARIANT" "$wl" "$SECS" "$status")"
  rm -rf "$W/restore" "$W/vol"
  ((KEEP == 1)) || rm -rf "$REPO" "$CACHE"
}

# ---------------------------------------------------------------- main
make_dumps
((DUMPS_ONLY == 1)) && { log "DUMPS_ONLY=1: workload in $D"; exit 0; }
printf 'tool\tvariant\tworkload\tnight\trepo_bytes\tadded_bytes\twall_s\trss_kb\traw_bytes\tstatus\n' > "$W/results.tsv"
: > "$W/versions.txt"
FAILED=0
for TOOL in $TOOLS; do
  case $TOOL in restic | rustic | cairn) ;; *) die "unknown tool $TOOL (known: restic rustic cairn)" ;; esac
  if ! have_tool "$TOOL"; then
    log "== $TOOL: not installed, SKIPPED"
    printf '%s\tskipped (not installed)\n' "$TOOL" >> "$W/versions.txt"
    continue
  fi
  printf '%s\t%s\n' "$TOOL" "$(tool_version "$TOOL")" >> "$W/versions.txt"
  variants=default
  [[ $TOOL == cairn ]] && variants=$CAIRN_CHUNK_SIZES
  for VARIANT in $variants; do
    log "== $TOOL $VARIANT ($(tool_version "$TOOL")); load: $(cut -d' ' -f1-3 /proc/loadavg)"
    for wl in $WORKLOADS; do run_workload "$wl"; done
  done
done
python3 "$HERE/bench-dump-table.py" "$W" | tee "$W/results.md"
log "done in $((SECONDS - T_START)) s: $W/results.tsv, $W/results.md"
((FAILED == 0)) || die "some steps FAILED or restores did not match their source (see the log above)"
