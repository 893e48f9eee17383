#!/usr/bin/env bash
# scripts/pg-server.sh — a real PostgreSQL server for the tests: one throwaway
# cluster, owned by the `postgres` user, listening on loopback only.
#
#   pg-server.sh start DIR PORT   create (first time) and start the cluster in
#                                 DIR, listening on 127.0.0.1:PORT and on a unix
#                                 socket in DIR; wait until it accepts queries;
#                                 print `export` lines on stdout (everything
#                                 else goes to stderr):
#                                   eval "$(scripts/pg-server.sh start /var/tmp/cairn-pg 55432)"
#   pg-server.sh stop DIR         stop it (fast shutdown); no-op if not running
#   pg-server.sh status DIR       exit 0 if the cluster in DIR runs
#
# Layout: DIR/data (PGDATA, mode 0700), DIR/server.log, the socket
# DIR/.s.PGSQL.PORT; DIR itself is owned by postgres. Calls on one DIR are
# serialized with flock on DIR.lock (beside DIR), so parallel test processes
# may all call `start`.
#
# Auth: trust, for the unix socket and 127.0.0.1 only (nothing else is
# listened on). Superuser `postgres`, no password. Encoding UTF8, locale C.
# The cluster is for tests: fsync, synchronous_commit and full_page_writes
# are off (a crash of the machine may lose it; FRESH=1 makes a new one).
#
# `start` is idempotent: when the cluster in DIR already answers on PORT it
# only prints the exports; a stopped cluster is started with its data; a
# running one on another port is restarted on PORT.
#
# Packages: when no initdb is found (on PATH or /usr/lib/postgresql/*/bin)
# this runs `apt-get install postgresql` (Debian's, with pg_dump, psql,
# pg_restore and pgbench; its own `main` cluster on port 5432 may start too,
# unused here).
#
# Timings measured here (Debian 12, PostgreSQL 15.18, 2 cores, load ~2 from
# concurrent cargo builds):
#   start, fresh DIR              0.95-1.3 s (initdb ~0.7 s, ready ~0.2 s)
#   start, already answering      0.15-0.2 s
#   start, DIR after stop         0.3-0.35 s
#   start, after kill -9          0.2-1.3 s (crash recovery; waits for the
#                                 dead postmaster to be reaped)
#   start on another PORT         0.35-0.45 s (restart)
#   stop                          0.15 s
#   apt-get install postgresql    not measured (preinstalled here)
# The integration tests (`cargo test --test integration postgres::`, 5 tests,
# dumps of 1-28 MB) take ~23-25 s once built.
set -euo pipefail

log() { printf '[pg-server %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
usage() { sed -n '2,13p' "$0" >&2; exit 2; }

CMD=${1:-}; D=${2:-}; PORT=${3:-}
[[ -n $CMD && -n $D ]] || usage
[[ $CMD != start || $PORT =~ ^[0-9]+$ ]] || usage
exec < /dev/null
[[ $(id -u) == 0 ]] || die "run as root (the cluster is run as the postgres user)"
if [[ $CMD == start ]]; then mkdir -p "$D"; fi
[[ -d $D ]] || { [[ $CMD == status ]] && exit 1; echo "[pg-server] no $D: not running" >&2; exit 0; }
D=$(cd "$D" && pwd)
PGDATA=$D/data
# the postgres user may not be able to read the caller's working directory
cd /
exec 9> "${D%/}.lock"
flock -w 300 9 || die "timed out waiting for ${D%/}.lock"

# ---------------------------------------------------------------- helpers
# The directory of the server binaries (initdb, pg_ctl, postgres), or empty.
find_bindir() {
  local c
  if c=$(command -v initdb 2>/dev/null); then
    dirname "$(readlink -f "$c")"
    return
  fi
  # the newest version first
  for c in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k5,5 -rn); do
    [[ -x $c/initdb ]] && { echo "$c"; return; }
  done
  return 0
}

# Runs a command as postgres (util-linux's runuser, else setpriv; both may
# live in sbin, off a plain PATH), without fd 9: a server started from here
# must not hold the lock.
AS_PG=()
if p=$(PATH=$PATH:/usr/sbin:/sbin command -v runuser); then
  AS_PG=("$p" -u postgres --)
elif p=$(PATH=$PATH:/usr/sbin:/sbin command -v setpriv); then
  AS_PG=("$p" --reuid=postgres --regid=postgres --init-groups --reset-env)
else
  die "neither runuser nor setpriv (util-linux) is installed"
fi
as_pg() { "${AS_PG[@]}" "$@" 9>&-; }

# The pid of the cluster's postmaster if it runs (not a zombie), else empty.
server_pid() {
  local p st
  p=$(head -n 1 "$PGDATA/postmaster.pid" 2>/dev/null) || return 0
  [[ $p =~ ^[0-9]+$ ]] || return 0
  st=$(awk '{print $3}' "/proc/$p/stat" 2>/dev/null) || return 0
  [[ -n $st && $st != Z ]] || return 0
  tr '\0' ' ' < "/proc/$p/cmdline" 2>/dev/null | grep -qF -- "$PGDATA" && echo "$p"
  return 0
}

running() { [[ -n $(server_pid) ]]; }

# Stops the server: fast shutdown, else immediate (crash-like, recovered at
# the next start).
stop_server() {
  as_pg "$BIN/pg_ctl" -D "$PGDATA" -m fast -w -t 30 stop >&2 && return 0
  log "fast shutdown failed: immediate shutdown"
  as_pg "$BIN/pg_ctl" -D "$PGDATA" -m immediate -w -t 30 stop >&2
}

# pg_ctl start, with the reason on failure. A killed postmaster that is
# still a zombie (its pid in postmaster.pid) would make the new one refuse to
# start: wait (up to 30 s) until it is reaped.
start_server() {
  local p
  p=$(head -n 1 "$PGDATA/postmaster.pid" 2>/dev/null || true)
  if [[ $p =~ ^[0-9]+$ ]]; then
    for _ in $(seq 1 150); do
      [[ $(awk '{print $3}' "/proc/$p/stat" 2>/dev/null) == Z ]] || break
      sleep 0.2
    done
  fi
  as_pg "$BIN/pg_ctl" -D "$PGDATA" -l "$D/server.log" -w -t 60 start >&2 \
    || { log_tail; die "the server did not start (see $D/server.log; is port $PORT taken?)"; }
}

# Whether the server accepts a query on 127.0.0.1:PORT.
answers() {
  as_pg env PGCONNECT_TIMEOUT=3 "$BIN/psql" -X -q -h 127.0.0.1 -p "$1" -U postgres -d postgres \
    -tAc 'SELECT 1' 2>/dev/null | grep -qx 1
}

log_tail() { [[ -f $D/server.log ]] && tail -n 20 "$D/server.log" >&2 || true; }

# ---------------------------------------------------------------- commands
setup_bin() {
  BIN=$(find_bindir)
  if [[ -z $BIN ]]; then
    [[ $CMD == start ]] || die "no PostgreSQL server binaries (initdb) found"
    log "initdb not found: installing postgresql with apt-get"
    local t0=$SECONDS
    export DEBIAN_FRONTEND=noninteractive
    # (the package lists may be stale or missing on a fresh machine: then
    # update them and try again)
    apt-get install -y -q --no-install-recommends postgresql >&2 \
      || { apt-get update -q >&2 && apt-get install -y -q --no-install-recommends postgresql >&2; } \
      || die "apt-get install postgresql failed"
    log "installed postgresql in $((SECONDS - t0)) s"
    BIN=$(find_bindir)
    [[ -n $BIN ]] || die "postgresql installed, but no initdb under /usr/lib/postgresql/*/bin"
  fi
  for t in pg_ctl postgres psql; do [[ -x $BIN/$t ]] || die "$BIN/$t is missing"; done
  id postgres >/dev/null 2>&1 || die "there is no postgres user (the postgresql package creates it)"
}

# The settings `start` owns, rewritten on every start (PORT may change).
write_conf() {
  cat > "$PGDATA/cairn-test.conf" <<EOF
# written by scripts/pg-server.sh start; edits are lost on the next start
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = '$D'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 50
shared_buffers = 64MB
log_min_messages = warning
EOF
  chown postgres: "$PGDATA/cairn-test.conf"
}

do_init() {
  if [[ ${FRESH:-0} == 1 && -e $PGDATA ]]; then
    if running; then stop_server; fi
    log "FRESH=1: wiping $PGDATA"
    rm -rf "$PGDATA" "$D/server.log"
  fi
  chown postgres: "$D"
  chmod 0755 "$D"
  # postgres must be able to reach DIR (every ancestor searchable)
  as_pg test -w "$D" || die "the postgres user cannot write to $D: make its parent directories searchable (o+x)"
  [[ -f $PGDATA/PG_VERSION ]] && return 0
  rm -rf "$PGDATA"
  log "initdb $PGDATA ($("$BIN/postgres" --version))"
  as_pg "$BIN/initdb" -D "$PGDATA" -U postgres --auth=trust -E UTF8 --locale=C --no-sync >"$D/initdb.log" 2>&1 \
    || { tail -n 20 "$D/initdb.log" >&2; die "initdb failed (see $D/initdb.log)"; }
  cat > "$PGDATA/pg_hba.conf" <<'EOF'
# written by scripts/pg-server.sh: trust on the unix socket and loopback only
# TYPE  DATABASE  USER  ADDRESS       METHOD
local   all       all                 trust
host    all       all   127.0.0.1/32  trust
EOF
  echo "include_if_exists = 'cairn-test.conf'" >> "$PGDATA/postgresql.conf"
  chown postgres: "$PGDATA/pg_hba.conf" "$PGDATA/postgresql.conf"
}

cmd_start() {
  local t0 ms
  t0=$(date +%s%N)
  setup_bin
  do_init
  write_conf
  if running; then
    if answers "$PORT"; then
      log "already running on 127.0.0.1:$PORT"
    else
      log "running, but not answering on 127.0.0.1:$PORT: restarting"
      stop_server
      start_server
    fi
  else
    log "starting the server on 127.0.0.1:$PORT"
    start_server
  fi
  # pg_ctl -w waits for the socket; wait for a real query over TCP too
  for _ in $(seq 1 100); do
    answers "$PORT" && break
    sleep 0.1
  done
  answers "$PORT" || { log_tail; die "the server runs but does not answer on 127.0.0.1:$PORT"; }
  ms=$(( ($(date +%s%N) - t0) / 1000000 ))
  log "ready on 127.0.0.1:$PORT in ${ms} ms ($(as_pg "$BIN/psql" -X -h 127.0.0.1 -p "$PORT" -U postgres -d postgres -tAc 'SHOW server_version'))"
  echo "export PGHOST=127.0.0.1 PGPORT=$PORT PGUSER=postgres"
}

cmd_stop() {
  BIN=$(find_bindir)
  [[ -n $BIN ]] || { log "no PostgreSQL installed: nothing to stop"; return 0; }
  if running; then
    stop_server
    log "stopped"
  else
    log "not running"
  fi
}

case $CMD in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status)
    BIN=$(find_bindir)
    [[ -n $BIN ]] && running && { log "running"; exit 0; }
    log "not running"; exit 1 ;;
  *) usage ;;
esac
