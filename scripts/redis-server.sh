#!/usr/bin/env bash
# scripts/redis-server.sh — a real Redis server for the tests: one throwaway
# instance (Debian's redis-server, 7.0.x), run as the `redis` user,
# listening on loopback and on a unix socket only.
#
#   redis-server.sh start DIR PORT   start (first time: set up) the server in
#                                    DIR, listening on 127.0.0.1:PORT and on
#                                    DIR/redis.sock; wait until it answers
#                                    PING; print `export` lines on stdout
#                                    (everything else goes to stderr):
#                                      eval "$(scripts/redis-server.sh start /var/tmp/cairn-redis 56379)"
#   redis-server.sh stop DIR         stop it (SHUTDOWN NOSAVE); no-op if not running
#   redis-server.sh status DIR       exit 0 if the server in DIR runs
#
# Exports: CAIRN_TEST_REDIS=redis://127.0.0.1:PORT,
# CAIRN_TEST_REDIS_SOCKET=DIR/redis.sock, CAIRN_TEST_REDIS_DIR=DIR.
#
# Layout: DIR/data (the server's `dir`: dump.rdb, owned by redis), DIR/redis.pid,
# DIR/server.log, DIR/redis.sock (mode 0770). Calls on one DIR are
# serialized with flock on DIR.lock (beside DIR), so parallel test processes
# may all call `start`.
#
# Settings for tests: no password (the tests make ACL users), no automatic
# saves (--save ''), no AOF, repl-diskless-sync yes (Redis 7's default) with
# repl-diskless-sync-delay 0 (the default 5 s would slow every replica-method
# test), and enable-protected-configs / enable-debug-command `local`, so the
# tests may CONFIG SET dir and dbfilename (to make a BGSAVE fail) from
# loopback. Tests may change settings; `start` on a running server only sets
# the delay and diskless sync back.
#
# `start` is idempotent: when the server in DIR already answers on PORT it
# only prints the exports; a stopped one is started (with DIR/data/dump.rdb,
# if a test left one); one running on another port is restarted on PORT.
# FRESH=1 wipes DIR/data first.
#
# Packages: when no redis-server is on PATH this runs `apt-get install
# redis-server` (Debian's; it brings redis-cli, and may start its own
# service on port 6379 where an init system runs, unused here).
#
# Timings measured here (Debian 12, Redis 7.0.15, 2 cores, load ~1.5 from
# concurrent cargo builds):
#   apt-get install redis-server  5.7 s
#   start, fresh DIR              0.10-0.11 s (ready ~0.1 s after the fork)
#   start, already answering      0.12 s
#   start, DIR after stop         0.10 s
#   start on another PORT         0.12 s (restart)
#   stop                          0.06 s
# The integration tests (`cargo test --test integration redis::`, 6 tests,
# RDBs of 125 KB and 34 MB) take ~6 s once built.
set -euo pipefail

log() { printf '[redis-server %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
usage() { sed -n '2,14p' "$0" >&2; exit 2; }

CMD=${1:-}; D=${2:-}; PORT=${3:-}
[[ -n $CMD && -n $D ]] || usage
[[ $CMD != start || $PORT =~ ^[0-9]+$ ]] || usage
exec < /dev/null
[[ $(id -u) == 0 ]] || die "run as root (the server is run as the redis user)"
if [[ $CMD == start ]]; then mkdir -p "$D"; fi
[[ -d $D ]] || { [[ $CMD == status ]] && exit 1; echo "[redis-server] no $D: not running" >&2; exit 0; }
D=$(cd "$D" && pwd)
# the redis user may not be able to read the caller's working directory
cd /
exec 9> "${D%/}.lock"
flock -w 300 9 || die "timed out waiting for ${D%/}.lock"

# Runs a command as redis (util-linux's runuser, else setpriv), without
# fd 9: a server started from here must not hold the lock.
AS_REDIS=()
if p=$(PATH=$PATH:/usr/sbin:/sbin command -v runuser); then
  AS_REDIS=("$p" -u redis --)
elif p=$(PATH=$PATH:/usr/sbin:/sbin command -v setpriv); then
  AS_REDIS=("$p" --reuid=redis --regid=redis --init-groups --reset-env)
else
  die "neither runuser nor setpriv (util-linux) is installed"
fi
as_redis() { "${AS_REDIS[@]}" "$@" 9>&-; }

# The pid of the server if it runs (not a zombie), else empty.
server_pid() {
  local p st
  p=$(head -n 1 "$D/redis.pid" 2>/dev/null) || return 0
  [[ $p =~ ^[0-9]+$ ]] || return 0
  st=$(awk '{print $3}' "/proc/$p/stat" 2>/dev/null) || return 0
  [[ -n $st && $st != Z ]] || return 0
  [[ $(readlink "/proc/$p/exe" 2>/dev/null) == *redis* ]] && echo "$p"
  return 0
}

running() { [[ -n $(server_pid) ]]; }

# Whether the server answers PING on 127.0.0.1:PORT.
answers() { [[ $(timeout 5 redis-cli -h 127.0.0.1 -p "$1" PING 2>/dev/null) == PONG ]]; }

log_tail() { [[ -f $D/server.log ]] && tail -n 20 "$D/server.log" >&2 || true; }

stop_server() {
  local p
  p=$(server_pid)
  [[ -n $p ]] || return 0
  timeout 10 redis-cli -s "$D/redis.sock" SHUTDOWN NOSAVE >/dev/null 2>&1 || kill "$p" 2>/dev/null || true
  for _ in $(seq 1 100); do
    [[ -d /proc/$p && $(awk '{print $3}' "/proc/$p/stat" 2>/dev/null) != Z ]] || return 0
    sleep 0.05
  done
  log "SHUTDOWN did not stop pid $p: kill -9"
  kill -9 "$p" 2>/dev/null || true
  sleep 0.1
}

setup_bin() {
  if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
    [[ $CMD == start ]] || die "no redis-server found"
    log "redis-server not found: installing redis-server with apt-get"
    local t0=$SECONDS
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q --no-install-recommends redis-server >&2 \
      || { apt-get update -q >&2 && apt-get install -y -q --no-install-recommends redis-server >&2; } \
      || die "apt-get install redis-server failed"
    log "installed redis-server in $((SECONDS - t0)) s"
    command -v redis-server >/dev/null || die "redis-server installed, but not on PATH"
  fi
  id redis >/dev/null 2>&1 || die "there is no redis user (the redis-server package creates it)"
}

start_server() {
  if [[ ${FRESH:-0} == 1 ]]; then
    log "FRESH=1: wiping $D/data"
    rm -rf "$D/data" "$D/server.log"
  fi
  mkdir -p "$D/data"
  chown redis: "$D" "$D/data"
  chmod 0755 "$D"
  as_redis test -w "$D/data" || die "the redis user cannot write to $D/data: make its parent directories searchable (o+x)"
  rm -f "$D/redis.pid"
  as_redis redis-server --daemonize yes --bind 127.0.0.1 --port "$PORT" --protected-mode yes \
    --unixsocket "$D/redis.sock" --unixsocketperm 770 --dir "$D/data" --dbfilename dump.rdb \
    --pidfile "$D/redis.pid" --logfile "$D/server.log" --loglevel notice \
    --save '' --appendonly no --repl-diskless-sync yes --repl-diskless-sync-delay 0 \
    --enable-protected-configs local --enable-debug-command local >&2 \
    || { log_tail; die "redis-server did not start (see $D/server.log)"; }
}

cmd_start() {
  local t0 ms
  t0=$(date +%s%N)
  setup_bin
  if running; then
    if answers "$PORT"; then
      log "already running on 127.0.0.1:$PORT"
      redis-cli -h 127.0.0.1 -p "$PORT" CONFIG SET repl-diskless-sync yes repl-diskless-sync-delay 0 >/dev/null
    else
      log "running, but not answering on 127.0.0.1:$PORT: restarting"
      stop_server
      start_server
    fi
  else
    log "starting the server on 127.0.0.1:$PORT"
    start_server
  fi
  for _ in $(seq 1 200); do
    answers "$PORT" && break
    sleep 0.05
  done
  answers "$PORT" || { log_tail; die "the server does not answer on 127.0.0.1:$PORT (is the port taken?)"; }
  ms=$(( ($(date +%s%N) - t0) / 1000000 ))
  log "ready on 127.0.0.1:$PORT in ${ms} ms ($(redis-server --version | cut -d' ' -f1-3))"
  echo "export CAIRN_TEST_REDIS=redis://127.0.0.1:$PORT CAIRN_TEST_REDIS_SOCKET=$D/redis.sock CAIRN_TEST_REDIS_DIR=$D"
}

cmd_stop() {
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
    running && { log "running"; exit 0; }
    log "not running"; exit 1 ;;
  *) usage ;;
esac
