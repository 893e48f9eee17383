#!/usr/bin/env bash
# scripts/bench-s3.sh [WORKDIR] — backup and restore to a real S3 server (the
# local Ceph RGW of scripts/s3-server.sh): restic, rustic and cairn side by
# side in one run. WORKDIR defaults to /var/tmp/bench-s3.
#
# Per tool and repetition, in a fresh bucket (repository under prefix `repo`):
#   init
#   day1          backup of the file DATA/dumps/day1.sql
#   tree          backup of DATA/tree
#   tree-again    the same tree, unchanged (parent snapshot / file cache)
#   restore       restore of the tree snapshot into WORKDIR/restore/TOOL
# then, untimed, `diff -rq` of the restored tree against DATA/tree (status
# column: ok / FAIL(rc=N) / VERIFY-FAIL), and the bucket is deleted
# (KEEP_BUCKETS=1 keeps it).
#
# Every step runs under /usr/bin/time -f '%e %M' (wall s, peak RSS KiB) after
# `sync; echo 3 > /proc/sys/vm/drop_caches` (skipped where not permitted:
# then the header says "warm"), and talks to S3 through its own
# scripts/s3-fault-proxy.py (no faults), whose --counts file gives the
# requests of that step by kind (GET HEAD PUT POST DELETE LIST OTHER) and the
# body bytes up/down. The proxy is Python and costs some CPU on 2 cores; it
# is the same for every tool (PROXY=0 talks to RGW directly, without counts).
#
# Output: WORKDIR/results.tsv (one line per tool, repetition and step),
# WORKDIR/results.md (the markdown table, medians over repetitions, also
# printed), logs in WORKDIR/logs/TOOL-rN/STEP.{cmd,out,err,time,counts.json}.
# TSV columns: tool rep step seconds max_rss_kib GET HEAD PUT POST DELETE LIST
# OTHER total_requests bytes_up bytes_down status load1_before.
# A tool that fails does not stop the others; the exit code is 1 if any step
# failed.
#
# Environment (defaults):
#   TOOLS="restic rustic cairn"  REPS=1  DATA=/var/tmp/bench-run/data
#   CAIRN=<repo>/target/release/cairn   (built by the caller; not built here)
#   S3_DIR=/var/tmp/cairn-s3 S3_PORT=7480   the RGW (started if not answering)
#   DROP_CACHES=1  VERIFY=1  KEEP_BUCKETS=0  PROXY=1  STEP_TIMEOUT=3600 (s)
# Settings: restic repository v2, --compression auto; rustic defaults;
# cairn defaults. Passwords via RESTIC_PASSWORD / RUSTIC_PASSWORD /
# CAIRN_PASSWORD; S3 credentials via AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY.
# rustic has no s3: URL; it is pointed at S3 with
#   RUSTIC_REPOSITORY=opendal:s3 RUSTIC_REPO_OPT_ENDPOINT=http://127.0.0.1:PORT
#   RUSTIC_REPO_OPT_BUCKET=B RUSTIC_REPO_OPT_ROOT=/repo RUSTIC_REPO_OPT_REGION=us-east-1
# (the RUSTIC_REPO_OPT_* variables are its [repository.options]; opendal
# reads the keys from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)

W=${1:-/var/tmp/bench-s3}
DATA=${DATA:-/var/tmp/bench-run/data}
TOOLS=${TOOLS:-restic rustic cairn}
REPS=${REPS:-1}
CAIRN=${CAIRN:-$ROOT/target/release/cairn}
S3_DIR=${S3_DIR:-/var/tmp/cairn-s3}
S3_PORT=${S3_PORT:-7480}
DROP_CACHES=${DROP_CACHES:-1}
VERIFY=${VERIFY:-1}
KEEP_BUCKETS=${KEEP_BUCKETS:-0}
PROXY=${PROXY:-1}
STEP_TIMEOUT=${STEP_TIMEOUT:-3600}
PASS=cairn-bench-password-not-a-secret
export PATH="$HOME/.cargo/bin:$PATH" LC_ALL=C

log() { printf '[bench-s3 %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
exec < /dev/null

DUMP=$DATA/dumps/day1.sql
TREE=$DATA/tree
[[ -f $DUMP && -d $TREE ]] || die "workloads missing in $DATA (see ../shared/bench: make-workloads.sh)"
if [[ ! -x /usr/bin/time ]]; then
  log "installing time"
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends time >&2 ||
    { apt-get update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends time >&2; }
fi
mkdir -p "$W"; W=$(cd "$W" && pwd)

# ---------------------------------------------------------------- S3 server
eval "$(bash "$HERE/s3-server.sh" start "$S3_DIR" "$S3_PORT")"
export AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_DEFAULT_REGION
EMPTY_SHA=e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855
s3curl() { curl -s -m 60 --aws-sigv4 "aws:amz:$AWS_DEFAULT_REGION:s3" --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" \
  -H "x-amz-content-sha256: $EMPTY_SHA" "$@"; }
make_bucket() {
  local code; code=$(s3curl -o /dev/null -w '%{http_code}' -X PUT "http://127.0.0.1:$S3_PORT/$1")
  [[ $code == 200 ]] || die "creating bucket $1: HTTP $code"
}
drop_bucket() {
  ((KEEP_BUCKETS)) && return 0
  if [[ -f $S3_DIR/ceph.conf ]] &&
     radosgw-admin -c "$S3_DIR/ceph.conf" bucket rm --bucket="$1" --purge-objects --bypass-gc > "$LOGT/bucket-rm.log" 2>&1; then
    return 0
  fi
  log "could not delete bucket $1 (see $LOGT/bucket-rm.log); left in place"
}

# ---------------------------------------------------------------- caches
CACHE_MODE=warm
if [[ $DROP_CACHES == 1 ]] && sync && { echo 3 > /proc/sys/vm/drop_caches; } 2>/dev/null; then
  CACHE_MODE=cold
fi
drop_caches() {
  if [[ $CACHE_MODE == cold ]]; then sync; { echo 3 > /proc/sys/vm/drop_caches; } 2>/dev/null || true; fi
}
log "page cache: $CACHE_MODE"

# ---------------------------------------------------------------- proxy
PROXY_PID=
PPORT=$S3_PORT
proxy_start() { # COUNTS_FILE LOGBASE
  PPORT=$S3_PORT PROXY_PID=
  ((PROXY)) || return 0
  local out=$2.proxy.port i
  python3 "$HERE/s3-fault-proxy.py" --listen 127.0.0.1:0 --upstream "127.0.0.1:$S3_PORT" \
    --counts "$1" > "$out" 2> "$2.proxy.err" &
  PROXY_PID=$!
  for ((i = 0; i < 100; i++)); do
    PPORT=$(sed -n 's/^port=//p' "$out")
    [[ -n $PPORT ]] && return 0
    kill -0 "$PROXY_PID" 2>/dev/null || break
    sleep 0.05
  done
  die "s3-fault-proxy.py did not start (see $2.proxy.err)"
}
proxy_stop() {
  [[ -n $PROXY_PID ]] || return 0
  kill "$PROXY_PID" 2>/dev/null || true
  wait "$PROXY_PID" 2>/dev/null || true
  PROXY_PID=
}
trap 'proxy_stop' EXIT

# ---------------------------------------------------------------- tools
# TOOL_cmd OP [ARG]: fill CMD (and tool env) for OP = init | backup PATH |
# restore DEST, with the S3 endpoint at 127.0.0.1:$PPORT, bucket $BUCKET.
restic_bin() { command -v restic || true; }
restic_version() { restic version | head -n 1; }
restic_cmd() {
  export RESTIC_PASSWORD=$PASS RESTIC_CACHE_DIR=$CACHE
  local c=(restic -r "s3:http://127.0.0.1:$PPORT/$BUCKET/repo")
  case $1 in
    init)    CMD=("${c[@]}" init --repository-version 2) ;;
    backup)  CMD=("${c[@]}" backup --host bench --compression auto "$2") ;;
    restore) CMD=("${c[@]}" restore latest --host bench --path "$TREE" --target "$2") ;;
  esac
}

rustic_bin() { command -v rustic || true; }
rustic_version() { rustic --version | head -n 1; }
rustic_cmd() {
  export RUSTIC_PASSWORD=$PASS RUSTIC_REPOSITORY=opendal:s3
  export RUSTIC_REPO_OPT_ENDPOINT=http://127.0.0.1:$PPORT RUSTIC_REPO_OPT_BUCKET=$BUCKET
  export RUSTIC_REPO_OPT_ROOT=/repo RUSTIC_REPO_OPT_REGION=$AWS_DEFAULT_REGION
  local c=(rustic --no-progress --cache-dir "$CACHE")
  case $1 in
    init)    CMD=("${c[@]}" init) ;;
    backup)  CMD=("${c[@]}" backup --host bench "$2") ;;
    restore) CMD=("${c[@]}" restore --filter-host bench --filter-paths "$TREE" latest "$2") ;;
  esac
}

cairn_bin() { [[ -x $CAIRN ]] && echo "$CAIRN" || true; }
cairn_version() { "$CAIRN" --version 2>&1 | head -n 1; }
cairn_cmd() {
  export CAIRN_PASSWORD=$PASS CAIRN_CACHE_DIR=$CACHE
  local c=("$CAIRN" -r "s3:http://127.0.0.1:$PPORT/$BUCKET/repo")
  case $1 in
    init)    CMD=("${c[@]}" init) ;;
    backup)  CMD=("${c[@]}" backup "$2") ;;
    restore) CMD=("${c[@]}" restore latest --target "$2") ;;
  esac
}

# where a tool put the restored tree inside DEST
restored_root() {
  local c
  for c in "$1$TREE" "$1/$(basename "$TREE")"; do [[ -d $c ]] && { echo "$c"; return; }; done
  echo "$1"
}

KINDS="GET HEAD PUT POST DELETE LIST OTHER"
TSV=$W/results.tsv
FAILED=0

# step NAME OP [ARG]
step() {
  local name=$1 op=$2 arg=${3:-}
  local tf=$LOGT/$name.time counts=$LOGT/$name.counts.json
  local rc=0 secs rss status=ok load1
  drop_caches
  load1=$(cut -d' ' -f1 /proc/loadavg)
  proxy_start "$counts" "$LOGT/$name"
  CMD=()
  "${TOOL}_cmd" "$op" "$arg"
  printf '%q ' "${CMD[@]}" > "$LOGT/$name.cmd"; echo >> "$LOGT/$name.cmd"
  /usr/bin/time -f '%e %M' -o "$tf" timeout -k 10 "$STEP_TIMEOUT" "${CMD[@]}" \
    > "$LOGT/$name.out" 2> "$LOGT/$name.err" || rc=$?
  proxy_stop
  read -r secs rss < <(tail -n 1 "$tf") || true
  [[ $secs =~ ^[0-9.]+$ ]] || secs=NA
  [[ $rss =~ ^[0-9]+$ ]] || rss=NA
  if ((rc != 0)); then
    status="FAIL(rc=$rc)"; FAILED=1; TOOL_FAILED=1
    tail -n 3 "$LOGT/$name.err" | sed 's/^/    /' >&2
  fi
  if [[ $op == restore && $rc == 0 && $VERIFY == 1 ]]; then
    local root; root=$(restored_root "$arg")
    if ! diff -rq --no-dereference "$TREE" "$root" > "$LOGT/verify.diff" 2>&1; then
      status=VERIFY-FAIL; FAILED=1
      log "restore of $TOOL differs from $TREE ($(wc -l < "$LOGT/verify.diff") lines in $LOGT/verify.diff)"
    fi
  fi
  local req
  req=$(python3 - "$counts" "$KINDS" <<'EOF'
import json, sys
try:
    c = json.load(open(sys.argv[1]))
except Exception:
    c = None
kinds = sys.argv[2].split()
if c is None:
    print("\t".join(["NA"] * (len(kinds) + 3)))
else:
    print("\t".join([str(c.get(k, 0)) for k in kinds] +
                    [str(c.get("total", 0)), str(c.get("bytes_up", 0)), str(c.get("bytes_down", 0))]))
EOF
)
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$TOOL" "$REP" "$name" "$secs" "$rss" "$req" "$status" "$load1" >> "$TSV"
  log "$(printf '%-7s r%s %-11s %8ss  rss %8s KiB  requests %6s  %s' "$TOOL" "$REP" "$name" "$secs" "$rss" \
    "$(cut -f$(($(wc -w <<< "$KINDS") + 1)) <<< "$req")" "$status")"
}

run_tool() {
  TOOL=$1
  if [[ -z $("${TOOL}_bin") ]]; then
    log "== $TOOL: not installed, skipped"
    return
  fi
  log "== $TOOL: $("${TOOL}_version" 2>&1 || true)"
  for ((REP = 1; REP <= REPS; REP++)); do
    BUCKET=bench-$TOOL-r$REP-$(date +%Y%m%d%H%M%S)
    LOGT=$W/logs/$TOOL-r$REP
    CACHE=$W/cache/$TOOL
    RESTORE=$W/restore/$TOOL
    TOOL_FAILED=0
    rm -rf "$LOGT" "$CACHE" "$RESTORE"
    mkdir -p "$LOGT" "$CACHE" "$RESTORE"
    make_bucket "$BUCKET"
    log "$TOOL r$REP: bucket $BUCKET"
    step init init
    step day1 backup "$DUMP"
    step tree backup "$TREE"
    step tree-again backup "$TREE"
    step restore restore "$RESTORE"
    rm -rf "$RESTORE"
    drop_bucket "$BUCKET"
  done
}

printf 'tool\trep\tstep\tseconds\tmax_rss_kib' > "$TSV"
for k in $KINDS; do printf '\t%s' "$k" >> "$TSV"; done
printf '\ttotal_requests\tbytes_up\tbytes_down\tstatus\tload1_before\n' >> "$TSV"

VERSIONS=()
for t in $TOOLS; do
  declare -F "${t}_cmd" > /dev/null || die "unknown tool $t"
  run_tool "$t" || { FAILED=1; log "$t: aborted"; }
  [[ -n $("${t}_bin") ]] && VERSIONS+=("$t: $("${t}_version" 2>&1 || true)")
done

# ---------------------------------------------------------------- report
{
  echo "S3 backup benchmark: Ceph RGW $(radosgw --version 2>/dev/null | awk '{print $3}') on 127.0.0.1, $(nproc) cores," \
    "$(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo); page cache $CACHE_MODE;" \
    "each tool through s3-fault-proxy.py$( ((PROXY)) || echo ' (off: no request counts)'); REPS=$REPS (medians)."
  echo "Data: $(basename "$DUMP") $(du -sh "$DUMP" | cut -f1), tree $(du -sh "$TREE" | cut -f1) in $(find "$TREE" -type f | wc -l) files."
  printf 'Versions: %s.\n\n' "$(IFS=';'; echo "${VERSIONS[*]}" | sed 's/;/; /g')"
  python3 - "$TSV" <<'EOF'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
kinds = ["GET", "HEAD", "PUT", "POST", "DELETE", "LIST", "OTHER"]
def med(vals):
    vals = [float(v) for v in vals if v not in ("", "NA")]
    return statistics.median(vals) if vals else None
groups = {}
for r in rows:
    groups.setdefault((r["step"], r["tool"]), []).append(r)
steps = list(dict.fromkeys(r["step"] for r in rows))
tools = list(dict.fromkeys(r["tool"] for r in rows))
shown = [k for k in kinds if any(r[k] not in ("0", "NA", "") for r in rows)] or ["GET", "PUT"]
print("| step | tool | wall s | peak RSS MiB | " + " | ".join(shown) + " | requests | up MiB | down MiB | status |")
print("|---|---|---:|---:|" + "---:|" * len(shown) + "---:|---:|---:|---|")
def fmt(v, f):
    return "–" if v is None else f % v
for s in steps:
    for t in tools:
        g = groups.get((s, t))
        if not g:
            continue
        status = ",".join(sorted(set(r["status"] for r in g)))
        rss = med(r["max_rss_kib"] for r in g)
        cells = [s, t, fmt(med(r["seconds"] for r in g), "%.1f"),
                 fmt(None if rss is None else rss / 1024, "%.0f")]
        cells += [fmt(med(r[k] for r in g), "%.0f") for k in shown]
        cells += [fmt(med(r["total_requests"] for r in g), "%.0f")]
        for k in ("bytes_up", "bytes_down"):
            v = med(r[k] for r in g)
            cells.append(fmt(None if v is None else v / 1048576, "%.1f"))
        cells.append(status)
        print("| " + " | ".join(cells) + " |")
EOF
} > "$W/results.md"
cat "$W/results.md"
log "results: $TSV, $W/results.md"
exit $FAILED
