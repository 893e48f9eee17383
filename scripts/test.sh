#!/usr/bin/env bash
# scripts/test.sh — run every test of cairn: unit and property tests,
# the integration suite (which drives the real binary), the format-spec
# vectors, the demo's main job, and a check that benches and fuzz targets
# build.
set -euo pipefail
cd "$(dirname "$0")/.."

# The tests need only coreutils and util-linux's setpriv (for the
# unreadable-file test run as `nobody`), which Debian always has; no server
# is needed yet (S3, PostgreSQL and Redis arrive with the issues that use them).
for tool in mkfifo setpriv python3 sha256sum; do
  command -v "$tool" >/dev/null || echo "note: $tool is missing; the tests that use it skip" >&2
done

export CARGO_TERM_COLOR=never
cargo build --release --locked
# --all-targets includes the criterion benches, each run once as a test.
cargo test --locked --all-targets
# The cargo-fuzz targets (fuzz/) type-check against the current decoders.
cargo check --locked --manifest-path fuzz/Cargo.toml --bins
WORK=$(mktemp -d) bash scripts/demo.sh >/dev/null
echo "demo: ok"
