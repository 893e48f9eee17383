#!/usr/bin/env bash
# scripts/s3-selftest.sh [DIR PORT] — checks the S3 test tooling itself:
# s3-server.sh (start, idempotent start, rgw-stop/rgw-start) and
# s3-fault-proxy.py (byte-exact forwarding with SigV4, keep-alive, counts,
# injected 503/500/drop, the control endpoint, an upstream that dies and
# comes back). Uses the RGW in DIR on PORT (default /var/tmp/cairn-s3-selftest
# 7490: it kills radosgw for a moment, so do not point it at a server that
# others are using); a cluster it started is stopped again at the end
# (KEEP=1 keeps it). Needs curl and python3. Prints "N passed, M failed" and
# exits non-zero on any failure. ~3 s with the RGW up, ~13 s without.
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
D=${1:-/var/tmp/cairn-s3-selftest}; PORT=${2:-7490}
T=$(mktemp -d); PROXY_PID=; STARTED=0
curl -s -o /dev/null -m 3 "http://127.0.0.1:$PORT/" || STARTED=1
cleanup() {
  [[ -n $PROXY_PID ]] && kill "$PROXY_PID" 2>/dev/null
  rm -rf "$T"
  if ((STARTED)) && [[ ${KEEP:-0} != 1 ]]; then bash "$HERE/s3-server.sh" stop "$D"; fi
}
trap cleanup EXIT
pass=0; fail=0
ok() { echo "ok   $1"; pass=$((pass + 1)); }
bad() { echo "FAIL $1"; fail=$((fail + 1)); }
check() { local name=$1; shift; if "$@"; then ok "$name"; else bad "$name"; fi; }

eval "$(bash "$HERE/s3-server.sh" start "$D" "$PORT")" || { echo "0 passed, 1 failed"; exit 1; }
check "start prints CAIRN_TEST_S3" test "$CAIRN_TEST_S3" = "s3:http://127.0.0.1:$PORT/cairn-test"
out=$(bash "$HERE/s3-server.sh" start "$D" "$PORT" 2>/dev/null)
check "start again is idempotent" grep -q "^export CAIRN_TEST_S3=" <<< "$out"

S=(--aws-sigv4 "aws:amz:us-east-1:s3" --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY")
U="x-amz-content-sha256: UNSIGNED-PAYLOAD"
start_proxy() {
  [[ -n $PROXY_PID ]] && { kill "$PROXY_PID" 2>/dev/null; wait "$PROXY_PID" 2>/dev/null; }
  python3 "$HERE/s3-fault-proxy.py" --listen 127.0.0.1:0 --upstream "127.0.0.1:$PORT" --counts "$T/counts.json" "$@" \
    > "$T/proxy.out" 2> "$T/proxy.err" &
  PROXY_PID=$!
  for _ in $(seq 100); do P=$(sed -n 's/^port=//p' "$T/proxy.out"); [[ -n $P ]] && return; sleep 0.05; done
  echo "proxy did not start"; cat "$T/proxy.err"; exit 1
}
count() { python3 -c "import json,sys; print(json.load(open('$T/counts.json'))['$1'])"; }
KEY=selftest-$$-$RANDOM

start_proxy
head -c 3000000 /dev/urandom > "$T/obj"
SHA=$(sha256sum "$T/obj" | cut -d' ' -f1)
code=$(curl -s -o /dev/null -w '%{http_code}' "${S[@]}" -H "x-amz-content-sha256: $SHA" -T "$T/obj" "http://127.0.0.1:$P/cairn-test/$KEY/a")
check "signed PUT (3 MB, Expect: 100-continue) through the proxy" test "$code" = 200
code=$(curl -s -o "$T/got" -w '%{http_code}' "${S[@]}" -H "$U" "http://127.0.0.1:$P/cairn-test/$KEY/a")
check "signed GET through the proxy" test "$code" = 200
check "GET body is byte-exact" cmp -s "$T/obj" "$T/got"
code=$(curl -s -o "$T/list" -w '%{http_code}' "${S[@]}" -H "$U" "http://127.0.0.1:$P/cairn-test?list-type=2&prefix=$KEY%2F")
check "signed LIST through the proxy" grep -q "<Key>$KEY/a</Key>" "$T/list"
n=$(curl -sv "${S[@]}" -H "$U" -o /dev/null "http://127.0.0.1:$P/cairn-test/$KEY/a" -o /dev/null "http://127.0.0.1:$P/cairn-test/$KEY/a" 2>&1 | grep -c 'Re-using existing connection')
check "client keep-alive through the proxy" test "$n" = 1
check "counts PUT=1 GET=3 LIST=1" test "$(count PUT) $(count GET) $(count LIST) $(count injected)" = "1 3 1 0"

start_proxy --fail-every 2 --status 503
c1=$(curl -s -o /dev/null -w '%{http_code}' "${S[@]}" -H "$U" "http://127.0.0.1:$P/cairn-test/$KEY/a")
c2=$(curl -s -o "$T/err" -w '%{http_code}' "${S[@]}" -H "$U" "http://127.0.0.1:$P/cairn-test/$KEY/a")
check "--fail-every 2: 200 then 503" test "$c1 $c2" = "200 503"
check "injected 503 has S3 SlowDown XML" grep -q '<Code>SlowDown</Code>' "$T/err"
check "counts injected=1" test "$(count injected)" = 1

start_proxy
curl -s -X PUT "http://127.0.0.1:$P/__proxy/fail-next?n=1&status=500" > /dev/null
codes=$(curl -sv "${S[@]}" -H "$U" -w '%{http_code} ' -o "$T/err" "http://127.0.0.1:$P/cairn-test/$KEY/a" -o /dev/null "http://127.0.0.1:$P/cairn-test/$KEY/a" 2> "$T/curl.err")
check "fail-next 500 then 200" test "$codes" = "500 200 "
check "keep-alive kept across an injected error" grep -q 'Re-using existing connection' "$T/curl.err"
check "injected 500 has InternalError XML" grep -q '<Code>InternalError</Code>' "$T/err"
curl -s -X PUT "http://127.0.0.1:$P/__proxy/fail-next?n=1&status=0" > /dev/null
curl -s "${S[@]}" -H "$U" -o /dev/null "http://127.0.0.1:$P/cairn-test/$KEY/a"; rc=$?
check "status 0 drops the connection (curl exit 52)" test "$rc" = 52

bash "$HERE/s3-server.sh" rgw-stop "$D" 2>/dev/null
curl -s -o /dev/null "http://127.0.0.1:$P/"; rc=$?
check "RGW down: proxy closes without a response" test "$rc" = 52
t0=$(date +%s.%N)
bash "$HERE/s3-server.sh" rgw-start "$D" 2>/dev/null
echo "     rgw-start took $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }') s"
code=$(curl -s -o /dev/null -w '%{http_code}' "${S[@]}" -H "$U" "http://127.0.0.1:$P/cairn-test/$KEY/a")
check "after rgw-start: signed GET through the same proxy" test "$code" = 200

curl -s -o /dev/null "${S[@]}" -H "$U" -X DELETE "http://127.0.0.1:$P/cairn-test/$KEY/a"
echo "$pass passed, $fail failed"
((fail == 0))
