#!/usr/bin/env bash
# scripts/test.sh — run every test of cairn: unit and property tests,
# the integration suite (which drives the real binary; its damage suite
# injects hundreds of seeded faults on both backends), the format-spec
# vectors, the demo's main job, the benches once each, and a short run of
# every fuzz target.
#
# The S3 tests need a real S3 server: this script starts one first with
# scripts/s3-server.sh (single-node Ceph with radosgw on 127.0.0.1; it
# installs the ceph packages with apt-get when they are missing, and reuses
# a cluster that already runs) and exports CAIRN_TEST_S3, CAIRN_S3_DIR and
# the AWS_* credentials for them. Without CAIRN_TEST_S3 the S3 tests skip
# loudly, and fail when CI is set. Environment: CAIRN_S3_DIR (the cluster's
# directory, default /var/tmp/cairn-s3), CAIRN_S3_PORT (radosgw's port,
# default 7480). The server keeps running afterwards (stop it with
# `bash scripts/s3-server.sh stop "$CAIRN_S3_DIR"`).
#
# The postgres:: tests need a real PostgreSQL: scripts/pg-server.sh starts
# one (CAIRN_PG_DIR, default /var/tmp/cairn-pg; CAIRN_PG_PORT, default 55432).
#
# The redis:: tests need a real Redis 7: scripts/redis-server.sh starts one
# (CAIRN_REDIS_DIR, default /var/tmp/cairn-redis; CAIRN_REDIS_PORT, default
# 56379) and exports CAIRN_TEST_REDIS.
# The status:: tests scrape a real node_exporter (Debian's
# prometheus-node-exporter, installed with apt-get when missing).
#
# Other tools: coreutils, python3 (the S3 fault-injecting proxy) and
# util-linux's setpriv (for the unreadable-file test run as `nobody`).
set -euo pipefail
cd "$(dirname "$0")/.."

for tool in mkfifo setpriv python3 sha256sum; do
  command -v "$tool" >/dev/null || echo "note: $tool is missing; the tests that use it skip" >&2
done

export CAIRN_S3_DIR=${CAIRN_S3_DIR:-/var/tmp/cairn-s3}
# Two steps, so that a failing start stops this script (set -e does not see
# a failure inside eval "$(...)").
#
# The servers' directories hold test data only. A directory left by another
# machine or a killed run (a copy of a cluster taken while it ran, say) may
# not start again; rather than stop every test on that, start_server makes
# that server anew (FRESH=1) once, saying so.
start_server() { # SCRIPT DIR PORT; prints the exports
  local out
  if out=$(bash "scripts/$1" start "$2" "$3"); then
    printf '%s\n' "$out"
    return 0
  fi
  echo "test.sh: $1 could not start the server in $2 again; making it anew (FRESH=1)" >&2
  FRESH=1 bash "scripts/$1" start "$2" "$3"
}
s3_exports=$(start_server s3-server.sh "$CAIRN_S3_DIR" "${CAIRN_S3_PORT:-7480}")
eval "$s3_exports"
# PostgreSQL for the postgres:: tests (scripts/pg-server.sh installs it with
# apt-get when initdb is missing; it listens on 127.0.0.1 only).
pg_exports=$(start_server pg-server.sh "${CAIRN_PG_DIR:-/var/tmp/cairn-pg}" "${CAIRN_PG_PORT:-55432}")
eval "$pg_exports"
export CAIRN_TEST_PG=1
# Redis for the redis:: tests (scripts/redis-server.sh installs Debian's
# redis-server with apt-get when it is missing; loopback and a unix socket
# only).
redis_exports=$(start_server redis-server.sh "${CAIRN_REDIS_DIR:-/var/tmp/cairn-redis}" "${CAIRN_REDIS_PORT:-56379}")
eval "$redis_exports"
# node_exporter for the status:: test that scrapes cairn's Prometheus
# textfile (the test starts its own instance on 127.0.0.1 and a free port;
# the package's own service is stopped and disabled if systemd started it).
if ! command -v prometheus-node-exporter >/dev/null && ! command -v node_exporter >/dev/null; then
  echo "prometheus-node-exporter not found: installing it with apt-get" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus-node-exporter >&2 \
    || { apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus-node-exporter >&2; } \
    || { echo "apt-get install prometheus-node-exporter failed" >&2; exit 1; }
  # Where systemd started the package's service (on all interfaces, port
  # 9100), stop it: the test needs only the binary.
  if [[ -d /run/systemd/system ]]; then
    systemctl disable --now prometheus-node-exporter >&2 || true
  fi
fi

export CARGO_TERM_COLOR=never
cargo build --release --locked
# --all-targets includes the criterion benches, each run once as a test.
cargo test --locked --all-targets
# The fuzz targets (fuzz/): built with coverage instrumentation and run
# briefly each (CAIRN_FUZZ_SECONDS, default 10; 0 only builds them).
if [[ ${CAIRN_FUZZ_SECONDS:-10} == 0 ]]; then
  cargo check --locked --manifest-path fuzz/Cargo.toml --bins
else
  bash scripts/fuzz.sh "${CAIRN_FUZZ_SECONDS:-10}"
fi
WORK=$(mktemp -d) bash scripts/demo.sh >/dev/null
echo "demo: ok"
