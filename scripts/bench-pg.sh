#!/usr/bin/env bash
# scripts/bench-pg.sh [WORKDIR] — PostgreSQL WAL archiving and point-in-time
# recovery: cairn beside pgBackRest, on the same cluster and the same WAL, in
# one run. WORKDIR defaults to /var/tmp/cairn-bench-pg; it is wiped at the
# start (only if it is empty or was made by this script), so a rerun starts
# afresh. Run as root (the cluster and both tools run as the `postgres` user).
#
# The cluster: a throwaway one in WORKDIR/pg/data, on 127.0.0.1:PORT and a
# unix socket in WORKDIR/pg, PostgreSQL's defaults otherwise (fsync,
# full_page_writes, synchronous_commit on; wal_level replica), archive_mode on.
#
# Steps, timed with bash's EPOCHREALTIME:
#  1. WAL push. `pgbench -i -s SCALE` and `pgbench -T LOAD_SECS` while
#     archive_command copies each finished segment to WORKDIR/staging. Then,
#     REPEAT rounds, each into fresh repositories: every staged segment is
#     pushed synchronously, one call per segment, from the data directory (as
#     PostgreSQL runs archive_command), with
#       pgbackrest --stanza=bench archive-push SEG
#       cairn -v -r REPO --password-file F pg wal-push SEG
#     Median and p90 seconds per segment over the warm calls of all rounds;
#     the first call of each round (cairn: empty cache dir, so it derives the
#     master key with argon2) is reported apart as "cold". cairn's -v request
#     counts give the requests per segment (the same count an S3 repository
#     would see). Bytes stored for the segments: pgBackRest's archive dir vs
#     cairn's repository growth over the pushes (round 1).
#     WAL fetch: every segment fetched back from round 1's repositories,
#     REPEAT times, one call per segment from the data directory (pgbackrest
#     archive-get SEG DEST / cairn pg wal-fetch SEG DEST, warm), each compared
#     with the staged copy; median and p90 s per segment.
#  2. Base backups into the main repositories, while archive_command pushes
#     every segment to both tools (pgbackrest archive-push && cairn wal-push):
#     `pgbackrest --type=full backup` vs `cairn pg backup --fast`. Then a
#     contiguous CHANGE_PCT % of pgbench_accounts is updated, and second
#     backups: pgBackRest incr (against full 1), pgBackRest full, cairn.
#     Bytes added = repository growth over the backup (pgBackRest: backup +
#     archive dirs; cairn: the whole repository; both include the WAL
#     archived meanwhile, i.e. the checkpoint and the change itself when the
#     change's WAL is archived during the backup; the TSV also has pgBackRest's
#     backup dir alone, *_backup_dir_bytes_added).
#  3. Restore to a time T: RESTORE_LOAD_SECS of pgbench, a marker row
#     'before', T = clock_timestamp(), a marker row 'after', more load, WAL
#     switched and archived; the cluster is stopped. Then, per tool, into a
#     fresh data directory: pgBackRest `--type=time --target=T
#     --target-action=promote restore` / `cairn pg restore --time T
#     --target-action promote`, start postgres (archive_mode off, port
#     PORT+1), until `select 1` answers and pg_is_in_recovery() is false.
#     Verified: the 'before' row is there, the 'after' row is not. cairn
#     restores with an empty cache dir, as on a fresh machine.
#
# Both repositories are encrypted: pgBackRest with repo1-cipher-type=
# aes-256-cbc (passphrase), cairn always; pgBackRest with compress-type=zst,
# compress-level=3, process-max=2, start-fast=y.
#
# Knobs (environment):
#   REPEAT=3            push rounds
#   SCALE=20            pgbench scale (20: 2M accounts, ~300 MB)
#   LOAD_SECS=30        pgbench run after init, for WAL of the push step
#   CLIENTS=2           pgbench clients (and threads)
#   SEGMENTS=0          push at most this many staged segments (0: all)
#   CHANGE_PCT=5        % of pgbench_accounts changed before the 2nd backups
#   RESTORE_LOAD_SECS=20  pgbench before T (and half of it after T)
#   PORT=54331          the cluster's port (restores use PORT+1)
#   TOOLS="pgbackrest cairn"   TOOLS=pgbackrest runs the pgBackRest half only
#   CAIRN=target/release/cairn (of this checkout; nothing is built here),
#                       copied to WORKDIR/bin/cairn at the start
#   DROP_CACHES=1       drop the page cache before each backup and restore
#   KEEP=0              keep the restored data directories
#   S3=0                S3=1: also push every round to a cairn repository on
#                       S3 (a single-node Ceph RGW of scripts/s3-server.sh in
#                       WORKDIR/s3 on 127.0.0.1:S3_PORT, default 7560; ~10 s
#                       to start, stopped at the end). pgBackRest speaks S3
#                       over TLS only, so it has no S3 row.
# pgbackrest is installed with apt-get when missing.
#
# Output: WORKDIR/results.tsv (tool, metric, value, unit), WORKDIR/results.md
# (the table: medians, cairn / pgBackRest), WORKDIR/push-samples.tsv and
# fetch-samples.tsv (every push and fetch call), logs in WORKDIR/logs. Servers started here are stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
W=${1:-/var/tmp/cairn-bench-pg}
REPEAT=${REPEAT:-3}
SCALE=${SCALE:-20}
LOAD_SECS=${LOAD_SECS:-30}
CLIENTS=${CLIENTS:-2}
SEGMENTS=${SEGMENTS:-0}
CHANGE_PCT=${CHANGE_PCT:-5}
RESTORE_LOAD_SECS=${RESTORE_LOAD_SECS:-20}
PORT=${PORT:-54331}
RPORT=$((PORT + 1))
TOOLS=${TOOLS:-pgbackrest cairn}
CAIRN=${CAIRN:-$ROOT/target/release/cairn}
DROP_CACHES=${DROP_CACHES:-1}
KEEP=${KEEP:-0}
S3=${S3:-0}
S3_PORT=${S3_PORT:-7560}
PASS=bench-pg-password-not-a-secret
PGBR_PASS=bench-pg-pgbackrest-passphrase-not-a-secret

log() { printf '[bench-pg %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
has() { [[ " $TOOLS " == *" $1 "* ]]; }
exec < /dev/null
[[ $(id -u) == 0 ]] || die "run as root (the cluster and the tools run as the postgres user)"
[[ $REPEAT =~ ^[1-9][0-9]*$ ]] || die "REPEAT must be a positive integer"
for t in $TOOLS; do [[ $t == pgbackrest || $t == cairn ]] || die "unknown tool $t in TOOLS"; done

# ---------------------------------------------------------------- setup
BIN=
for c in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k5,5 -rn); do
  [[ -x $c/initdb && -x $c/pgbench ]] && { BIN=$c; break; }
done
[[ -n $BIN ]] || die "no PostgreSQL server binaries under /usr/lib/postgresql/*/bin (apt-get install postgresql)"
id postgres > /dev/null 2>&1 || die "there is no postgres user"
PG_HOME=$(getent passwd postgres | cut -d: -f6)
if ! command -v pgbackrest > /dev/null; then
  log "installing pgbackrest with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q pgbackrest >&2 \
    || { apt-get update -q >&2 && apt-get install -y -q pgbackrest >&2; } \
    || die "apt-get install pgbackrest failed"
fi
PGBR=$(command -v pgbackrest)

AS_PG=()
if p=$(PATH=$PATH:/usr/sbin:/sbin command -v runuser); then
  AS_PG=("$p" -u postgres --)
elif p=$(PATH=$PATH:/usr/sbin:/sbin command -v setpriv); then
  AS_PG=("$p" --reuid=postgres --regid=postgres --init-groups)
else
  die "neither runuser nor setpriv (util-linux) is installed"
fi
# Runs a command as postgres, from /, with a fixed environment: libpq aimed
# at the bench cluster's socket, cairn's cache in WORKDIR.
as_pg() {
  (cd / && "${AS_PG[@]}" env PATH="$BIN:/usr/local/bin:/usr/bin:/bin" HOME="$PG_HOME" \
    PGHOST="$W/pg" PGPORT="$PORT" PGUSER=postgres PGDATABASE=postgres \
    CAIRN_CACHE_DIR="${CACHE:-$W/cache/main}" \
    ${AWS_ACCESS_KEY_ID:+AWS_ACCESS_KEY_ID=$AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY=$AWS_SECRET_ACCESS_KEY AWS_DEFAULT_REGION=$AWS_DEFAULT_REGION} \
    "$@")
}
psql_q() { as_pg psql -X -q -v ON_ERROR_STOP=1 -tA "$@"; }

if has cairn; then
  [[ -x $CAIRN ]] || die "no cairn binary at $CAIRN (CAIRN=...), or TOOLS=pgbackrest"
  "${AS_PG[@]}" test -x "$CAIRN" || die "the postgres user cannot run $CAIRN"
  "$CAIRN" pg --help > /dev/null 2>&1 || die "$CAIRN has no 'pg' command ($("$CAIRN" pg --help 2>&1 | head -n 3 | tr '\n' ' '))"
fi

if [[ -e $W && ! -e $W/.cairn-bench-pg ]] && [[ -n $(ls -A "$W") ]]; then
  die "$W exists, is not empty and was not made by this script: choose another WORKDIR"
fi
# a previous run killed before its trap: stop its servers
for d in "$W/pg/data" "$W"/restore/*/data; do
  [[ -f $d/postmaster.pid ]] && as_pg pg_ctl -D "$d" -m immediate -w -t 30 stop > /dev/null 2>&1 || true
done
[[ -d $W/s3 ]] && bash "$ROOT/scripts/s3-server.sh" stop "$W/s3" 2> /dev/null || true
rm -rf "$W"
mkdir -p "$W"
touch "$W/.cairn-bench-pg"
W=$(cd "$W" && pwd)
mkdir -p "$W"/{pg,staging,logs/pgbackrest,run,spool,cache,push,repo,restore,bin}
echo "$PASS" > "$W/cairn.pass"
chmod 0600 "$W/cairn.pass"
chown -R postgres: "$W"
chmod 0755 "$W"
if has cairn; then
  # a copy: a rebuild of the checkout during the run changes nothing here
  cp "$CAIRN" "$W/bin/cairn"
  log "cairn: $CAIRN ($(stat -c %y "$CAIRN" | cut -d. -f1), sha256 $(sha256sum "$CAIRN" | cut -c1-12)), copied to $W/bin/cairn"
  CAIRN=$W/bin/cairn
  chmod 0755 "$CAIRN"
fi
"${AS_PG[@]}" test -w "$W/pg" || die "the postgres user cannot write to $W (make its parents searchable)"
PGDATA=$W/pg/data
RESULTS=$W/results.tsv
printf 'tool\tmetric\tvalue\tunit\n' > "$RESULTS"
rec() { printf '%s\t%s\t%s\t%s\n' "$@" >> "$RESULTS"; log "result: $1 $2 = $3 $4"; }
now() { echo "$EPOCHREALTIME"; }
since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.3f", b - a }'; }
bytes() { du -sb "$1" | cut -f1; }
drop() {
  [[ $DROP_CACHES == 1 ]] || return 0
  sync
  { echo 3 > /proc/sys/vm/drop_caches; } 2> /dev/null || log "cannot drop the page cache: warm runs"
}

# pgBackRest's configuration: one stanza on the bench cluster; the push
# rounds override repo1-path on the command line.
PGBR_CONF=$W/pgbackrest.conf
cat > "$PGBR_CONF" <<EOF
[global]
repo1-path=$W/repo/pgbackrest
repo1-cipher-type=aes-256-cbc
repo1-cipher-pass=$PGBR_PASS
repo1-retention-full=99
compress-type=zst
compress-level=3
process-max=2
start-fast=y
log-path=$W/logs/pgbackrest
lock-path=$W/run
spool-path=$W/spool
log-level-console=warn
log-level-file=info

[bench]
pg1-path=$PGDATA
pg1-port=$PORT
pg1-socket-path=$W/pg
pg1-user=postgres
EOF
chown postgres: "$PGBR_CONF"
chmod 0600 "$PGBR_CONF"
pgbr() { as_pg "$PGBR" --config="$PGBR_CONF" --stanza=bench "$@"; }
cairn() { # repo args...
  local repo=$1; shift
  as_pg "$CAIRN" -r "$repo" --password-file "$W/cairn.pass" "$@"
}

# ---------------------------------------------------------------- servers
STARTED=()
pg_start() { # datadir port [postgres options]
  local d=$1 port=$2; shift 2
  as_pg pg_ctl -D "$d" -l "$d.log" -W -o "-c port=$port $*" start > /dev/null
  STARTED+=("$d")
}
pg_stop() {
  as_pg pg_ctl -D "$1" -m fast -w -t 60 stop > /dev/null 2>&1 \
    || as_pg pg_ctl -D "$1" -m immediate -w -t 30 stop > /dev/null 2>&1 || true
}
cleanup() {
  local rc=$?
  for d in "${STARTED[@]}"; do
    [[ -f $d/postmaster.pid ]] && pg_stop "$d"
  done
  [[ $S3 == 1 && -d $W/s3 ]] && bash "$ROOT/scripts/s3-server.sh" stop "$W/s3" > /dev/null 2>&1 || true
  [[ $rc == 0 ]] || log "failed (exit $rc); logs in $W/logs, server logs in $W/pg/data.log, $W/restore/*/data.log"
}
trap cleanup EXIT
wait_ready() { # port seconds
  local i
  for ((i = 0; i < $2 * 10; i++)); do
    psql_q -h "$(dirname "$PGDATA")" -p "$1" -c 'select 1' > /dev/null 2>&1 && return 0
    sleep 0.1
  done
  return 1
}

# The segment just finished by a WAL switch is archived (all tools in
# archive_command succeeded), else die.
switch_and_wait() {
  local seg last failed i
  seg=$(psql_q -c 'select pg_walfile_name(pg_switch_wal())')
  for ((i = 0; i < 3000; i++)); do
    IFS='|' read -r last failed < <(psql_q -c 'select coalesce(last_archived_wal, $$$$), coalesce(last_failed_wal, $$$$) from pg_stat_archiver')
    [[ -n $last && ! $last < $seg ]] && return 0
    if [[ -n $failed && ! $failed < $seg && $i -gt 50 ]]; then
      tail -n 20 "$PGDATA.log" >&2
      die "archive_command fails for $failed (see $PGDATA.log)"
    fi
    sleep 0.1
  done
  die "segment $seg not archived after 300 s (see $PGDATA.log)"
}
set_archive_command() {
  psql_q -c "alter system set archive_command = '$1'" -c 'select pg_reload_conf()' > /dev/null
  sleep 0.5
}

# ---------------------------------------------------------------- cluster
log "load: $(cut -d' ' -f1-3 /proc/loadavg); $("$BIN/postgres" --version); $("$PGBR" version)$(has cairn && echo "; cairn $CAIRN")"
rec all loadavg_at_start "$(cut -d' ' -f1 /proc/loadavg)" ""
log "initdb $PGDATA"
as_pg initdb -D "$PGDATA" -U postgres --auth=trust -E UTF8 --locale=C > "$W/logs/initdb.log" 2>&1 \
  || { tail -n 20 "$W/logs/initdb.log" >&2; die "initdb failed"; }
cat >> "$PGDATA/postgresql.conf" <<EOF
# scripts/bench-pg.sh (everything else at PostgreSQL's defaults)
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = '$W/pg'
archive_mode = on
archive_command = 'test ! -f $W/staging/%f && cp %p $W/staging/%f'
max_wal_size = 1GB
EOF
pg_start "$PGDATA" "$PORT"
wait_ready "$PORT" 60 || { tail -n 20 "$PGDATA.log" >&2; die "the cluster did not start"; }

# ---------------------------------------------------------------- 1. WAL push
log "pgbench -i -s $SCALE, then pgbench -T $LOAD_SECS -c $CLIENTS (WAL staged by cp)"
t0=$(now)
as_pg pgbench -i -s "$SCALE" -q > "$W/logs/pgbench-init.log" 2>&1 || { tail "$W/logs/pgbench-init.log" >&2; die "pgbench -i failed"; }
as_pg pgbench -T "$LOAD_SECS" -c "$CLIENTS" -j "$CLIENTS" -n > "$W/logs/pgbench-load1.log" 2>&1 || die "pgbench failed"
switch_and_wait
log "WAL generated in $(since "$t0") s"
mapfile -t SEGS < <(ls "$W/staging" | grep -E '^[0-9A-F]{24}$' | sort)
if [[ $SEGMENTS -gt 0 && ${#SEGS[@]} -gt $SEGMENTS ]]; then SEGS=("${SEGS[@]:0:$SEGMENTS}"); fi
NSEG=${#SEGS[@]}
[[ $NSEG -ge 2 ]] || die "only $NSEG segments staged"
rec all push_segments "$NSEG" segments
rec all push_segments_raw_bytes "$(( NSEG * 16777216 ))" B
printf '%s\n' "${SEGS[@]}" > "$W/staging.list"

# The push loop, run as postgres from the data directory: one call per
# segment named on stdin; prints segment, seconds, exit code and cairn's -v
# request counts (put get list delete).
cat > "$W/bin/push-loop.sh" <<'EOF'
#!/bin/bash
set -uo pipefail
pgdata=$1 segdir=$2 outdir=$3; shift 3
cd "$pgdata" || exit 1
while read -r seg; do
  t0=${EPOCHREALTIME/./}
  "$@" "$segdir/$seg" > "$outdir/$seg.out" 2>&1
  rc=$?
  t1=${EPOCHREALTIME/./}
  req=$(sed -n 's/.*requests: \([0-9]*\) put, \([0-9]*\) get, \([0-9]*\) list, \([0-9]*\) delete.*/\1\t\2\t\3\t\4/p' "$outdir/$seg.out" | tail -n 1)
  [[ -n $req ]] || req=$'\t\t\t'
  printf '%s\t%d.%06d\t%s\t%s\n' "$seg" $(( (t1 - t0) / 1000000 )) $(( (t1 - t0) % 1000000 )) "$rc" "$req"
  [[ $rc == 0 ]] || exit "$rc"
done
EOF
chmod 0755 "$W/bin/push-loop.sh"

SAMPLES=$W/push-samples.tsv
printf 'tool\tround\tsegment\tseconds\trc\tput\tget\tlist\tdelete\n' > "$SAMPLES"
push_round() { # tool round
  local tool=$1 r=$2 out=$W/logs/push-$1-r$2 rc=0 size0=0
  mkdir -p "$out"
  chown postgres: "$out"
  case $tool in
    pgbackrest)
      pgbr --repo1-path="$W/push/pgbackrest-r$r" stanza-create > "$out/stanza-create.log" 2>&1 \
        || { cat "$out/stanza-create.log" >&2; die "pgbackrest stanza-create failed"; }
      size0=$(bytes "$W/push/pgbackrest-r$r")
      as_pg "$W/bin/push-loop.sh" "$PGDATA" "$W/staging" "$out" \
        "$PGBR" --config="$PGBR_CONF" --stanza=bench --repo1-path="$W/push/pgbackrest-r$r" archive-push \
        < "$W/staging.list" > "$out/samples.tsv" || rc=$?
      ;;
    cairn-s3)
      CACHE=$W/cache/push-init-s3-r$r cairn "$S3_URL/push-r$r" init > "$out/init.log" 2>&1 \
        || { cat "$out/init.log" >&2; die "cairn init on S3 failed"; }
      CACHE=$W/cache/push-s3-r$r as_pg "$W/bin/push-loop.sh" "$PGDATA" "$W/staging" "$out" \
        "$CAIRN" -v -r "$S3_URL/push-r$r" --password-file "$W/cairn.pass" pg wal-push \
        < "$W/staging.list" > "$out/samples.tsv" || rc=$?
      ;;
    cairn)
      # init with its own cache dir: the pushes start with an empty one (cold)
      CACHE=$W/cache/push-init-r$r cairn "$W/push/cairn-r$r" init > "$out/init.log" 2>&1 \
        || { cat "$out/init.log" >&2; die "cairn init failed"; }
      size0=$(bytes "$W/push/cairn-r$r")
      CACHE=$W/cache/push-r$r as_pg "$W/bin/push-loop.sh" "$PGDATA" "$W/staging" "$out" \
        "$CAIRN" -v -r "$W/push/cairn-r$r" --password-file "$W/cairn.pass" pg wal-push \
        < "$W/staging.list" > "$out/samples.tsv" || rc=$?
      ;;
  esac
  if [[ $rc != 0 ]]; then
    local bad
    bad=$(tail -n 1 "$out/samples.tsv" | cut -f1)
    log "$tool push of $bad failed (exit $rc):"
    cat "$out/$bad.out" >&2 || true
    die "$tool push failed"
  fi
  sed "s/^/$tool\t$r\t/" "$out/samples.tsv" >> "$SAMPLES"
  if [[ $r == 1 && $tool != cairn-s3 ]]; then
    local dir=$W/push/$tool-r$r
    if [[ $tool == pgbackrest ]]; then
      rec pgbackrest wal_stored_bytes "$(bytes "$dir/archive")" B
    else
      rec cairn wal_stored_bytes "$(( $(bytes "$dir") - size0 ))" B
      CACHE=$W/cache/push-r$r cairn "$dir" stats > "$out/stats.log" 2>&1 || true
    fi
  fi
}
PUSH_TOOLS=$TOOLS
if [[ $S3 == 1 ]] && has cairn; then
  log "starting the S3 server (Ceph RGW) in $W/s3 on 127.0.0.1:$S3_PORT"
  eval "$(bash "$ROOT/scripts/s3-server.sh" start "$W/s3" "$S3_PORT")"
  S3_URL=$CAIRN_TEST_S3
  PUSH_TOOLS="$TOOLS cairn-s3"
fi
for ((r = 1; r <= REPEAT; r++)); do
  for tool in $PUSH_TOOLS; do
    log "push round $r/$REPEAT: $tool, $NSEG segments"
    t0=$(now)
    push_round "$tool" "$r"
    log "push round $r: $tool took $(since "$t0") s"
  done
done

# WAL fetch: every segment of round 1's repositories fetched back, REPEAT
# times, one call per segment from the data directory (as restore_command
# runs), warm (cairn's key cache of round 1), and compared with the staged
# copy.
cat > "$W/bin/fetch-loop.sh" <<'EOF'
#!/bin/bash
set -uo pipefail
pgdata=$1 dest=$2 outdir=$3; shift 3
cd "$pgdata" || exit 1
while read -r seg; do
  t0=${EPOCHREALTIME/./}
  "$@" "$seg" "$dest/$seg" > "$outdir/$seg.out" 2>&1
  rc=$?
  t1=${EPOCHREALTIME/./}
  printf '%s\t%d.%06d\t%s\n' "$seg" $(( (t1 - t0) / 1000000 )) $(( (t1 - t0) % 1000000 )) "$rc"
  [[ $rc == 0 ]] || exit "$rc"
done
EOF
chmod 0755 "$W/bin/fetch-loop.sh"
FETCH=$W/fetch-samples.tsv
printf 'tool\tround\tsegment\tseconds\trc\n' > "$FETCH"
for ((r = 1; r <= REPEAT; r++)); do
  for tool in $TOOLS; do
    out=$W/logs/fetch-$tool-r$r dest=$W/fetch/$tool
    rm -rf "$dest"
    mkdir -p "$out" "$dest"
    chown postgres: "$out" "$dest"
    log "fetch round $r/$REPEAT: $tool, $NSEG segments"
    rc=0
    case $tool in
      pgbackrest)
        as_pg "$W/bin/fetch-loop.sh" "$PGDATA" "$dest" "$out" \
          "$PGBR" --config="$PGBR_CONF" --stanza=bench --repo1-path="$W/push/pgbackrest-r1" archive-get \
          < "$W/staging.list" > "$out/samples.tsv" || rc=$? ;;
      cairn)
        CACHE=$W/cache/push-r1 as_pg "$W/bin/fetch-loop.sh" "$PGDATA" "$dest" "$out" \
          "$CAIRN" -r "$W/push/cairn-r1" --password-file "$W/cairn.pass" pg wal-fetch \
          < "$W/staging.list" > "$out/samples.tsv" || rc=$? ;;
    esac
    if [[ $rc != 0 ]]; then
      bad=$(tail -n 1 "$out/samples.tsv" | cut -f1)
      cat "$out/$bad.out" >&2 || true
      die "$tool fetch of $bad failed (exit $rc)"
    fi
    while read -r seg; do
      cmp -s "$dest/$seg" "$W/staging/$seg" || die "$tool fetched $seg, but it differs from the pushed segment"
    done < "$W/staging.list"
    sed "s/^/$tool\t$r\t/" "$out/samples.tsv" >> "$FETCH"
  done
done
rm -rf "$W/fetch"

# ---------------------------------------------------------------- 2. backups
AC=()
if has pgbackrest; then
  pgbr stanza-create > "$W/logs/stanza-create.log" 2>&1 || { cat "$W/logs/stanza-create.log" >&2; die "stanza-create failed"; }
  AC+=("$PGBR --config=$PGBR_CONF --stanza=bench archive-push %p")
fi
if has cairn; then
  cairn "$W/repo/cairn" init > "$W/logs/cairn-init.log" 2>&1 || { cat "$W/logs/cairn-init.log" >&2; die "cairn init failed"; }
  AC+=("CAIRN_CACHE_DIR=$W/cache/main $CAIRN -r $W/repo/cairn --password-file $W/cairn.pass pg wal-push %p")
fi
ac=$(printf ' && %s' "${AC[@]}")
ac=${ac# && }
log "archive_command = '$ac'"
set_archive_command "$ac"
switch_and_wait

# repository bytes: pgBackRest backup+archive, cairn whole repository
repo_bytes() {
  case $1 in
    pgbackrest) bytes "$W/repo/pgbackrest" ;;
    cairn) bytes "$W/repo/cairn" ;;
  esac
}
backup() { # tool label [pgbackrest type]
  local tool=$1 label=$2 type=${3:-full} b0 bb0=0 t0 secs
  drop
  b0=$(repo_bytes "$tool")
  [[ $tool == pgbackrest ]] && bb0=$(bytes "$W/repo/pgbackrest/backup")
  log "backup $label: $tool${3:+ --type=$type}"
  t0=$(now)
  case $tool in
    pgbackrest) pgbr --type="$type" backup > "$W/logs/$tool-$label.log" 2>&1 ;;
    cairn) cairn "$W/repo/cairn" pg backup --pgdata "$PGDATA" --fast > "$W/logs/$tool-$label.log" 2>&1 ;;
  esac || { cat "$W/logs/$tool-$label.log" >&2; die "$tool backup $label failed"; }
  secs=$(since "$t0")
  rec "$tool" "${label}_seconds" "$secs" s
  rec "$tool" "${label}_bytes_added" "$(( $(repo_bytes "$tool") - b0 ))" B
  if [[ $tool == pgbackrest ]]; then
    rec "$tool" "${label}_backup_dir_bytes_added" "$(( $(bytes "$W/repo/pgbackrest/backup") - bb0 ))" B
  fi
}
DB_BYTES=$(psql_q -c 'select sum(pg_database_size(oid)) from pg_database')
rec all cluster_bytes "$DB_BYTES" B
has pgbackrest && backup pgbackrest backup1
has cairn && backup cairn backup1

ROWS=$(( SCALE * 100000 ))
CHG=$(( ROWS * CHANGE_PCT / 100 ))
log "changing $CHANGE_PCT %: update pgbench_accounts where aid <= $CHG (of $ROWS)"
psql_q -c "update pgbench_accounts set abalance = abalance + 1, filler = md5(aid::text) where aid <= $CHG" -c checkpoint > /dev/null
# the change's WAL archived now, not charged to the next backup
switch_and_wait
has pgbackrest && backup pgbackrest backup2_incr incr
has pgbackrest && backup pgbackrest backup2 full
has cairn && backup cairn backup2
has pgbackrest && pgbr info > "$W/logs/pgbackrest-info.log" 2>&1 || true
has cairn && cairn "$W/repo/cairn" stats > "$W/logs/cairn-stats.log" 2>&1 || true

# ---------------------------------------------------------------- 3. restore
log "restore target: pgbench -T $RESTORE_LOAD_SECS, marker, T, marker, pgbench -T $(( RESTORE_LOAD_SECS / 2 + 1 ))"
psql_q -c 'create table bench_marker (tag text primary key, at timestamptz default clock_timestamp())' > /dev/null
as_pg pgbench -T "$RESTORE_LOAD_SECS" -c "$CLIENTS" -j "$CLIENTS" -n > "$W/logs/pgbench-load2.log" 2>&1 || die "pgbench failed"
psql_q -c "insert into bench_marker (tag) values ('before')" > /dev/null
T=$(psql_q -c "select to_char(clock_timestamp() at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00'")
sleep 1
psql_q -c "insert into bench_marker (tag) values ('after')" > /dev/null
as_pg pgbench -T "$(( RESTORE_LOAD_SECS / 2 + 1 ))" -c "$CLIENTS" -j "$CLIENTS" -n > "$W/logs/pgbench-load3.log" 2>&1 || die "pgbench failed"
switch_and_wait
log "T = $T"
rec all restore_target_time "$T" ""
pg_stop "$PGDATA"

restore() { # tool
  local tool=$1 d=$W/restore/$1/data t0 t1 secs total state i ok
  # as on a fresh machine: cairn starts with an empty cache (the key is derived again)
  local CACHE=$W/cache/restore
  mkdir -p "$d"
  chown -R postgres: "$W/restore/$tool"
  chmod 0700 "$d"
  drop
  log "restore to T: $tool"
  t0=$(now)
  case $tool in
    pgbackrest) pgbr --pg1-path="$d" --type=time "--target=$T" --target-action=promote restore ;;
    cairn) cairn "$W/repo/cairn" pg restore --pgdata "$d" --time "$T" --target-action promote ;;
  esac > "$W/logs/$tool-restore.log" 2>&1 || { cat "$W/logs/$tool-restore.log" >&2; die "$tool restore failed"; }
  secs=$(since "$t0")
  t1=$(now)
  # archive_mode off: the restored cluster must not archive into the repositories
  pg_start "$d" "$RPORT" "-c archive_mode=off -c unix_socket_directories=$W/restore/$tool"
  state=
  for ((i = 0; i < 6000; i++)); do
    state=$(psql_q -h "$W/restore/$tool" -p "$RPORT" -c 'select pg_is_in_recovery()' 2> /dev/null) || state=
    [[ $state == f ]] && break
    if [[ $i -gt 20 && ! -f $d/postmaster.pid ]]; then break; fi
    sleep 0.1
  done
  total=$(since "$t0")
  if [[ $state != f ]]; then
    tail -n 30 "$d.log" >&2
    die "$tool: the restored server is not up and promoted (see $d.log)"
  fi
  rec "$tool" restore_command_seconds "$secs" s
  rec "$tool" restore_start_to_promoted_seconds "$(since "$t1")" s
  rec "$tool" restore_total_seconds "$total" s
  ok=$(psql_q -h "$W/restore/$tool" -p "$RPORT" -c "select string_agg(tag, ',' order by tag) from bench_marker")
  [[ $ok == before ]] && rec "$tool" restore_verified ok "" || rec "$tool" restore_verified "WRONG(markers: ${ok:-none})" ""
  cp "$d.log" "$W/logs/$tool-restore-server.log"
  pg_stop "$d"
  [[ $KEEP == 1 ]] || rm -rf "$d"
}
for tool in $TOOLS; do restore "$tool"; done

# ---------------------------------------------------------------- summary
python3 - "$RESULTS" "$SAMPLES" "$FETCH" > "$W/results.md" <<'PY'
import sys, statistics
from collections import defaultdict

res, samp, fetch = sys.argv[1], sys.argv[2], sys.argv[3]
val = {}
for line in open(res).read().splitlines()[1:]:
    t, m, v, u = line.split("\t")
    val[(t, m)] = v
pushes = defaultdict(list)
cold = defaultdict(list)
reqs = defaultdict(list)
first = {}
for line in open(samp).read().splitlines()[1:]:
    tool, rnd, seg, secs, rc, put, get, lst, dele = (line.split("\t") + [""] * 9)[:9]
    secs = float(secs)
    if (tool, rnd) not in first:
        first[(tool, rnd)] = seg
        cold[tool].append(secs)
    else:
        pushes[tool].append(secs)
        if put != "":
            reqs[tool].append(int(put) + int(get) + int(lst) + int(dele or 0))

fetches = defaultdict(list)
for line in open(fetch).read().splitlines()[1:]:
    tool, rnd, seg, secs, rc = line.split("\t")[:5]
    fetches[tool].append(float(secs))

def pct(xs, p):
    xs = sorted(xs)
    if not xs:
        return None
    k = (len(xs) - 1) * p
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)

num = {}
for t in ("pgbackrest", "cairn", "cairn-s3"):
    if pushes[t]:
        num[(t, "push_median")] = pct(pushes[t], 0.5)
        num[(t, "push_p90")] = pct(pushes[t], 0.9)
        num[(t, "push_cold")] = statistics.median(cold[t])
    if fetches[t]:
        num[(t, "fetch_median")] = pct(fetches[t], 0.5)
        num[(t, "fetch_p90")] = pct(fetches[t], 0.9)
    if reqs[t]:
        num[(t, "push_requests")] = statistics.median(reqs[t])
    for m, v in val.items():
        if m[0] == t:
            try:
                num[(t, m[1])] = float(v)
            except ValueError:
                pass
nseg = val.get(("all", "push_segments"), "?")
raw = float(val.get(("all", "push_segments_raw_bytes"), "0") or 0)
MiB = 1048576.0
rows = [
    ("WAL push, median s / segment (warm)", "push_median", "push_median", 1, "{:.3f}"),
    ("WAL push, p90 s / segment (warm)", "push_p90", "push_p90", 1, "{:.3f}"),
    ("WAL push, first call s (cold; cairn: argon2)", "push_cold", "push_cold", 1, "{:.3f}"),
    ("WAL push, requests / segment (warm, cairn -v)", None, "push_requests", 1, "{:.0f}"),
    ("WAL push to S3 (local Ceph RGW), median s / segment (warm)", None, "s3:push_median", 1, "{:.3f}"),
    ("WAL push to S3, p90 s / segment (warm)", None, "s3:push_p90", 1, "{:.3f}"),
    ("WAL push to S3, first call s (cold)", None, "s3:push_cold", 1, "{:.3f}"),
    ("WAL push to S3, requests / segment (cairn -v)", None, "s3:push_requests", 1, "{:.0f}"),
    ("WAL fetch, median s / segment (warm, compared)", "fetch_median", "fetch_median", 1, "{:.3f}"),
    ("WAL fetch, p90 s / segment", "fetch_p90", "fetch_p90", 1, "{:.3f}"),
    (f"WAL stored for {nseg} segments ({raw / MiB:.0f} MiB raw), MiB", "wal_stored_bytes", "wal_stored_bytes", MiB, "{:.1f}"),
    ("Backup 1 (full), wall s", "backup1_seconds", "backup1_seconds", 1, "{:.1f}"),
    ("Backup 1 (full), MiB added", "backup1_bytes_added", "backup1_bytes_added", MiB, "{:.1f}"),
    ("Backup 2 after the change, wall s (pgBackRest incr)", "backup2_incr_seconds", "backup2_seconds", 1, "{:.1f}"),
    ("Backup 2 after the change, MiB added (pgBackRest incr)", "backup2_incr_bytes_added", "backup2_bytes_added", MiB, "{:.1f}"),
    ("Backup 2 after the change, wall s (pgBackRest full)", "backup2_seconds", "backup2_seconds", 1, "{:.1f}"),
    ("Backup 2 after the change, MiB added (pgBackRest full)", "backup2_bytes_added", "backup2_bytes_added", MiB, "{:.1f}"),
    ("Restore to T: restore command, s", "restore_command_seconds", "restore_command_seconds", 1, "{:.1f}"),
    ("Restore to T: server start to promoted, s", "restore_start_to_promoted_seconds", "restore_start_to_promoted_seconds", 1, "{:.1f}"),
    ("Restore to T: total until queries and not in recovery, s", "restore_total_seconds", "restore_total_seconds", 1, "{:.1f}"),
]
print("| measure | pgBackRest | cairn | cairn / pgBackRest |")
print("|---|---:|---:|---:|")
for label, pm, cm, div, fmt in rows:
    p = num.get(("pgbackrest", pm)) if pm else None
    c = num.get(("cairn-s3", cm[3:])) if cm.startswith("s3:") else num.get(("cairn", cm))
    if p is None and c is None:
        continue
    cell = lambda x: fmt.format(x / div) if x is not None else ""
    ratio = f"{c / p:.2f}" if p and c is not None else ""
    print(f"| {label} | {cell(p)} | {cell(c)} | {ratio} |")
ver = [f"{t} {val[(t, 'restore_verified')]}" for t in ("pgbackrest", "cairn") if (t, "restore_verified") in val]
print()
print(f"Restore to T = {val.get(('all', 'restore_target_time'), '?')} verified (row 'before' there, 'after' not): {', '.join(ver) or 'not run'}.")
cl = float(val.get(("all", "cluster_bytes"), "0") or 0)
print(f"Cluster {cl / MiB:.0f} MiB; push medians over the warm calls of all rounds "
      f"({len(pushes.get('pgbackrest', []) or pushes.get('cairn', []))} per tool); load average at start {val.get(('all', 'loadavg_at_start'), '?')}.")
print("Both repositories encrypted (pgBackRest repo1-cipher-type=aes-256-cbc; cairn always); "
      "pgBackRest compress-type=zst compress-level=3 process-max=2 start-fast=y.")
PY
echo
cat "$W/results.md"
log "done: $W/results.md, $RESULTS, $SAMPLES"
