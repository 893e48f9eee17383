#!/usr/bin/env bash
# scripts/test.sh — run every test of cairn: unit and property tests,
# the integration suite (which drives the real binary), the format-spec
# vectors, the demo's main job, and a check that benches and fuzz targets
# build. Installs what it needs (Debian packages, as root) first.
set -euo pipefail
cd "$(dirname "$0")/.."

need_pkgs=()
command -v mkfifo >/dev/null || need_pkgs+=(coreutils)
command -v getfattr >/dev/null || need_pkgs+=(attr)
if ((${#need_pkgs[@]})) && [[ $(id -u) == 0 ]]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi

export CARGO_TERM_COLOR=never
cargo build --release --locked
# --all-targets includes the criterion benches, each run once as a test.
cargo test --locked --all-targets
WORK=$(mktemp -d) bash scripts/demo.sh >/dev/null
echo "demo: ok"
