#!/usr/bin/env bash
# scripts/fuzz.sh [SECONDS] [TARGET...] — build the libFuzzer targets in
# fuzz/ with coverage instrumentation (stable Rust: the same -C flags that
# cargo-fuzz passes, without AddressSanitizer, which safe Rust does not
# need) and run each for SECONDS (default 15). Exits non-zero if a target
# finds a crash; the input is kept under fuzz/artifacts/<target>/.
#
# Long runs: `cargo install cargo-fuzz`, then
#   cd fuzz && cargo +nightly fuzz run -O <target> -- -max_total_time=600
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs=${1:-15}
shift || true
targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=(keyfile config pack_header index tree snapshot open_sealed chunker salvage pack_verify wal list)
export RUSTFLAGS="--cfg fuzzing -Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares -Cdebug-assertions -Coverflow-checks"
export CARGO_TARGET_DIR=target/short
# An explicit --target keeps RUSTFLAGS off the build scripts (as cargo-fuzz does).
host=$(rustc -vV | sed -n 's/^host: //p')
# opt-level 1: these are smoke runs, and the build is most of their time.
cargo build --release --locked --bins --target "$host" --config profile.release.opt-level=1
bin=target/short/$host/release
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t" "artifacts/$t"
  log=$(mktemp)
  if ! "$bin/$t" "corpus/$t" -max_total_time="$secs" -rss_limit_mb=2048 \
      -artifact_prefix="artifacts/$t/" -print_final_stats=1 >"$log" 2>&1; then
    tail -40 "$log" >&2
    echo "fuzz: $t FAILED (input in fuzz/artifacts/$t/)" >&2
    exit 1
  fi
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1)
  echo "fuzz: $t ok: ${runs:-?} runs in ${secs}s, ${cov:-cov: ?}"
  rm -f "$log"
done
