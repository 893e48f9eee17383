#!/usr/bin/env bash
# scripts/s3-server.sh — a real S3 server for tests and benchmarks: single-node
# Ceph (one mon, one bluestore OSD on a sparse file, radosgw) on loopback only.
#
#   s3-server.sh start DIR PORT   start (or restart, or just check) the cluster
#                                 in DIR with radosgw on 127.0.0.1:PORT; makes
#                                 bucket cairn-test; prints `export` lines on
#                                 stdout, everything else goes to stderr:
#                                   eval "$(scripts/s3-server.sh start /var/tmp/cairn-s3 7480)"
#   s3-server.sh stop DIR         stop radosgw (kill -9), then OSD and mon
#   s3-server.sh rgw-stop DIR     kill -9 radosgw only, wait until its port is closed
#   s3-server.sh rgw-start DIR    start radosgw again, wait until it answers
#   s3-server.sh status DIR       which daemons run (exit 0 if radosgw answers)
#
# Calls on one DIR are serialized with flock on DIR.lock (beside DIR), so
# parallel test processes may all call `start`.
#
# Auth is off inside the cluster; S3 requests are SigV4-checked against the
# one user, key `test`, secret `testtesttest`, region us-east-1 (any region
# name is accepted by RGW). Paths are path-style: http://127.0.0.1:PORT/BUCKET/KEY.
#
# `start` is idempotent: if radosgw already answers on PORT it only ensures the
# bucket and prints the exports; a DIR whose cluster was stopped is restarted
# with its data (set FRESH=1 to wipe DIR and make a new cluster).
#
# Ports: radosgw PORT; mon MONPORT (default PORT+10000, or PORT-10000 when
# PORT > 55000); the OSD binds within MONPORT+1..MONPORT+40. Two clusters
# with PORTs at least 50 apart do not clash.
#
# Environment: MONPORT, BLOCK_GB=20 (sparse bluestore file; only what is
# written takes disk space), OSD_MEMORY_MB=1024, BUCKET=cairn-test, FRESH=0.
# Packages: radosgw ceph-mon ceph-osd ceph-common (apt-get installs them here
# when radosgw is missing; ~35 s).
#
# Timings measured here (Debian 12, Ceph 16.2.15, 2 cores; load 2-3 from a
# concurrent cargo build):
#   start, fresh DIR            7-10 s (mon ~1 s, OSD mkfs ~3 s, OSD boot ~2 s,
#                                       radosgw creating its pools ~4-6 s)
#   start, RGW already answers  0.05 s
#   start, DIR after stop       5.5 s (mon + OSD boot, radosgw)
#   rgw-stop                    0.02-0.06 s (kill -9; the port is closed at once)
#   rgw-start                   0.17-0.4 s until radosgw answers a signed GET
#   stop                        0.2-0.3 s
# After rgw-stop + rgw-start, object requests are fast at once, but a
# metadata write (bucket create) in the first ~6 s waits ~5 s for the killed
# radosgw's watches to expire (osd client watch timeout = 6 below; 30 s by
# default).
set -euo pipefail

log() { printf '[s3-server %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
usage() { sed -n '2,13p' "$0" >&2; exit 2; }

KEY=test
SECRET=testtesttest
REGION=us-east-1
BUCKET=${BUCKET:-cairn-test}
EMPTY_SHA=e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855

CMD=${1:-}; D=${2:-}
[[ -n $CMD && -n $D ]] || usage
exec < /dev/null
[[ -d $D ]] && D=$(cd "$D" && pwd)
# one s3-server.sh at a time per DIR (parallel test processes may all call start)
mkdir -p "$(dirname "$D")"
exec 9> "${D%/}.lock"
flock -w 600 9 || die "timed out waiting for ${D%/}.lock"

# ---------------------------------------------------------------- helpers
# pid of daemon NAME (mon|osd|rgw) if it runs, else empty
daemon_pid() {
  local f=$D/run/$1.pid p
  [[ -s $f ]] || return 0
  p=$(cat "$f")
  if alive "$p" && tr '\0' ' ' < "/proc/$p/cmdline" 2>/dev/null | grep -q -- "-c $D/ceph.conf"; then
    echo "$p"
  fi
}

rgw_port() { sed -n 's/^rgw frontends = beast endpoint=127.0.0.1:\([0-9]*\).*$/\1/p' "$D/ceph.conf"; }

# HTTP status of GET / on radosgw (000 if nothing answers)
http_code() {
  curl -s -o /dev/null -m 3 -w '%{http_code}' "http://127.0.0.1:$1/" 2>/dev/null || true
}
answers() { local c; c=$(http_code "$1"); [[ $c != 000 && -n $c ]]; }

wait_answers() { # PORT SECONDS
  local i
  for ((i = 0; i < $2 * 10; i++)); do
    answers "$1" && return 0
    [[ -n $(daemon_pid rgw) ]] || { tail -n 20 "$D/log/rgw.out" "$D/log/client.rgw.a.log" >&2 2>/dev/null || true; die "radosgw exited"; }
    # a mon or OSD that cannot start (damaged data) leaves radosgw waiting
    [[ -n $(daemon_pid mon) ]] || { tail -n 20 "$D/log/mon.out" >&2 2>/dev/null || true; die "ceph-mon exited (logs in $D/log)"; }
    [[ -n $(daemon_pid osd) ]] || { tail -n 20 "$D/log/osd.out" >&2 2>/dev/null || true; die "ceph-osd exited (logs in $D/log)"; }
    sleep 0.1
  done
  die "radosgw on port $1 does not answer after $2 s (logs in $D/log)"
}

port_closed() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# start_daemon NAME CMD...: run CMD in the foreground mode of ceph, detached
# from our stdio and session, pid in run/NAME.pid
start_daemon() {
  local name=$1; shift
  setsid "$@" >> "$D/log/$name.out" 2>&1 < /dev/null 9>&- &
  echo $! > "$D/run/$name.pid"
}

# a killed daemon is reparented to PID 1, which may reap it late: a zombie is gone
alive() { local st; st=$(awk '/^State:/ {print $2}' "/proc/$1/status" 2>/dev/null) || true; [[ -n $st && $st != Z ]]; }

kill_wait() { # NAME SIGNAL SECONDS
  local p i
  p=$(daemon_pid "$1")
  [[ -n $p ]] || { rm -f "$D/run/$1.pid"; return 0; }
  kill -"$2" "$p" 2>/dev/null || true
  for ((i = 0; i < $3 * 20; i++)); do
    alive "$p" || { rm -f "$D/run/$1.pid"; return 0; }
    sleep 0.05
  done
  log "$1 (pid $p) still running after SIG$2 and $3 s; sending KILL"
  kill -9 "$p" 2>/dev/null || true
  while alive "$p"; do sleep 0.1; done
  rm -f "$D/run/$1.pid"
}

ensure_packages() {
  command -v radosgw > /dev/null && command -v ceph-mon > /dev/null &&
    command -v ceph-osd > /dev/null && command -v ceph > /dev/null && return 0
  log "installing ceph packages (radosgw ceph-mon ceph-osd ceph-common)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y --no-install-recommends radosgw ceph-mon ceph-osd ceph-common >&2 || {
    apt-get update >&2
    apt-get install -y --no-install-recommends radosgw ceph-mon ceph-osd ceph-common >&2
  }
  command -v curl > /dev/null || apt-get install -y --no-install-recommends curl >&2
}

write_conf() { # PORT MONPORT FSID
  local port=$1 mon=$2 fsid=$3
  cat > "$D/ceph.conf" <<CONF
[global]
fsid = $fsid
mon host = v2:127.0.0.1:$mon
mon initial members = a
public addr = 127.0.0.1
cluster addr = 127.0.0.1
paxos propose interval = 0.1
# a killed radosgw leaves its watches on the control objects; metadata writes
# (bucket create, ...) of the next one wait for them to expire (30 s default)
osd client watch timeout = 6
objecter tick interval = 1
ms bind ipv6 = false
ms bind msgr1 = false
ms bind port min = $((mon + 1))
ms bind port max = $((mon + 40))
auth cluster required = none
auth service required = none
auth client required = none
ms mon client mode = crc secure
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
mon allow pool size one = true
mon max pg per osd = 1000
mon warn on pool no redundancy = false
osd crush chooseleaf type = 0
run dir = $D/run
log file = $D/log/\$name.log
admin socket = $D/run/\$name.asok
mon data = $D/mon/\$cluster-\$id
osd data = $D/osd/\$cluster-\$id
[osd]
osd objectstore = bluestore
bluestore block create = true
bluestore block size = $((${BLOCK_GB:-20} * 1024 * 1024 * 1024))
osd memory target = $((${OSD_MEMORY_MB:-1024} * 1024 * 1024))
[client.rgw.a]
# tcp_nodelay: without it, every request after the first on a kept-alive
# connection waits ~40 ms (Nagle's algorithm against the client's delayed
# ACK), which would make request count, not bytes, rule every timing.
rgw frontends = beast endpoint=127.0.0.1:$port tcp_nodelay=1
rgw data = $D/rgw
rgw thread pool size = ${RGW_THREADS:-64}
CONF
}

ceph_cli() { ceph -c "$D/ceph.conf" --connect-timeout 60 "$@"; }

start_mon() {
  [[ -n $(daemon_pid mon) ]] && return 0
  start_daemon mon ceph-mon -c "$D/ceph.conf" -i a -f
}

start_osd() {
  [[ -n $(daemon_pid osd) ]] && return 0
  start_daemon osd ceph-osd -c "$D/ceph.conf" -i "$(cat "$D/osd-id")" -f
}

start_rgw() {
  [[ -n $(daemon_pid rgw) ]] && return 0
  start_daemon rgw radosgw -c "$D/ceph.conf" -n client.rgw.a -f
}

# a new cluster in the empty DIR
mkfs_cluster() {
  local port=$1 mon=$2 fsid osduuid id
  fsid=$(cat /proc/sys/kernel/random/uuid)
  mkdir -p "$D"/{run,log,mon,osd,rgw}
  write_conf "$port" "$mon" "$fsid"
  monmaptool --create --addv a "[v2:127.0.0.1:$mon]" --fsid "$fsid" "$D/monmap" > /dev/null
  ceph-mon -c "$D/ceph.conf" --mkfs -i a --monmap "$D/monmap" >> "$D/log/mon-mkfs.out" 2>&1 ||
    die "ceph-mon --mkfs failed (see $D/log/mon-mkfs.out)"
  start_mon
  log "mon up on 127.0.0.1:$mon; making the OSD"
  osduuid=$(cat /proc/sys/kernel/random/uuid)
  # `ceph` retries until the mon answers
  id=$(ceph_cli osd new "$osduuid") || die "ceph osd new failed (see $D/log)"
  echo "$id" > "$D/osd-id"
  mkdir -p "$D/osd/ceph-$id"
  ceph-osd -c "$D/ceph.conf" -i "$id" --mkfs --osd-uuid "$osduuid" >> "$D/log/osd-mkfs.out" 2>&1 ||
    die "ceph-osd --mkfs failed (see $D/log/osd-mkfs.out)"
  start_osd
  log "OSD $id started; starting radosgw"
  start_rgw
  wait_answers "$port" 120
  radosgw-admin -c "$D/ceph.conf" user create --uid test --display-name test \
    --access-key "$KEY" --secret "$SECRET" > "$D/log/user-create.out" 2>&1 ||
    die "radosgw-admin user create failed (see $D/log/user-create.out)"
  touch "$D/.initialized"
}

ensure_bucket() { # PORT BUCKET
  local code
  code=$(curl -s -o "$D/log/bucket.out" -w '%{http_code}' -m 30 \
    --aws-sigv4 "aws:amz:$REGION:s3" --user "$KEY:$SECRET" \
    -H "x-amz-content-sha256: $EMPTY_SHA" -X PUT "http://127.0.0.1:$1/$2") || true
  case $code in
    200) ;;
    409) grep -q BucketAlreadyOwnedByYou "$D/log/bucket.out" ||
           die "bucket $2: $(cat "$D/log/bucket.out")" ;;
    *) die "creating bucket $2 gave HTTP $code: $(cat "$D/log/bucket.out" 2>/dev/null)" ;;
  esac
}

print_exports() {
  printf 'export AWS_ACCESS_KEY_ID=%s\n' "$KEY"
  printf 'export AWS_SECRET_ACCESS_KEY=%s\n' "$SECRET"
  printf 'export AWS_DEFAULT_REGION=%s\n' "$REGION"
  printf 'export CAIRN_TEST_S3=s3:http://127.0.0.1:%s/%s\n' "$1" "$BUCKET"
}

# ---------------------------------------------------------------- commands
cmd_start() {
  local port=${1:?usage: s3-server.sh start DIR PORT} mon t0=$SECONDS
  [[ $port =~ ^[0-9]+$ ]] || die "bad port $port"
  if ((port > 55000)); then mon=$((port - 10000)); else mon=$((port + 10000)); fi
  mon=${MONPORT:-$mon}
  mkdir -p "$D"; D=$(cd "$D" && pwd)
  if [[ ${FRESH:-0} == 1 && -e $D/ceph.conf ]]; then
    cmd_stop
    log "FRESH=1: wiping $D"
    rm -rf "${D:?}"/{run,log,mon,osd,rgw,ceph.conf,monmap,osd-id,.initialized}
  fi
  if answers "$port" && { [[ ! -f $D/ceph.conf ]] || [[ $(rgw_port) == "$port" ]]; }; then
    [[ -f $D/ceph.conf ]] || log "something already answers on port $port (not from $D); using it"
  else
    ensure_packages
    command -v curl > /dev/null || die "curl missing"
    if [[ -f $D/.initialized ]]; then
      [[ $(rgw_port) == "$port" ]] || die "$D is a cluster for port $(rgw_port), not $port (FRESH=1 to wipe it)"
      port_closed "$port" || die "port $port is taken by something that is not an S3 server"
      log "restarting the cluster in $D"
      mkdir -p "$D/run" "$D/log"
      start_mon; start_osd; start_rgw
      wait_answers "$port" 120
    else
      port_closed "$port" || die "port $port is taken"
      port_closed "$mon" || die "mon port $mon is taken (set MONPORT)"
      [[ -z $(ls -A "$D" 2>/dev/null) ]] || [[ -f $D/ceph.conf ]] ||
        die "$D is not empty and holds no cluster; give an empty or new DIR"
      # a half-made cluster from an interrupted start: begin again
      [[ -f $D/ceph.conf ]] && { cmd_stop; rm -rf "${D:?}"/{run,log,mon,osd,rgw,ceph.conf,monmap,osd-id}; }
      log "new cluster in $D (radosgw port $port, mon port $mon)"
      mkfs_cluster "$port" "$mon"
    fi
  fi
  ensure_bucket "$port" "$BUCKET"
  log "S3 ready at http://127.0.0.1:$port/$BUCKET (key $KEY / $SECRET) in $((SECONDS - t0)) s"
  print_exports "$port"
}

cmd_stop() {
  [[ -d $D ]] || return 0
  kill_wait rgw 9 10
  kill_wait osd TERM 30
  kill_wait mon TERM 30
  log "stopped the cluster in $D"
}

cmd_rgw_stop() {
  [[ -f $D/ceph.conf ]] || die "no cluster in $D"
  local port; port=$(rgw_port)
  kill_wait rgw 9 10
  local i
  for ((i = 0; i < 100; i++)); do port_closed "$port" && break; sleep 0.1; done
  port_closed "$port" || die "port $port still open after radosgw was killed"
  log "radosgw stopped (port $port closed)"
}

cmd_rgw_start() {
  [[ -f $D/.initialized ]] || die "no cluster in $D (use start)"
  [[ -n $(daemon_pid mon) && -n $(daemon_pid osd) ]] || die "mon/OSD of $D not running (use start)"
  local port; port=$(rgw_port)
  start_rgw
  wait_answers "$port" 120
  log "radosgw answers on port $port"
}

cmd_status() {
  local n
  for n in mon osd rgw; do printf '%s\t%s\n' "$n" "$(daemon_pid $n)"; done >&2
  [[ -f $D/ceph.conf ]] && answers "$(rgw_port)"
}

case $CMD in
  start) cmd_start "${3:-}" ;;
  stop) cmd_stop ;;
  rgw-stop) cmd_rgw_stop ;;
  rgw-start) cmd_rgw_start ;;
  status) cmd_status ;;
  *) usage ;;
esac
