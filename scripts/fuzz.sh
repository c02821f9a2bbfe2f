#!/usr/bin/env bash
# Fuzzes the parsers that read network input (fuzz/fuzz_targets/*.rs) with cargo-fuzz/libFuzzer.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET (default 30)] [TARGET...]   (default: every target)
#
# Needs the nightly toolchain (`cargo +nightly`: cargo-fuzz passes unstable -Z flags to rustc);
# installs cargo-fuzz if it is missing. fuzz/ is a package of its own outside the workspace, so
# the product's stable build never sees it.
#
# Each target starts from its committed seeds (fuzz/seeds/<target>, copied into the corpus) plus
# whatever earlier runs kept in fuzz/corpus/<target> (ignored by git). The script runs every
# target, prints a line per target with libFuzzer's execution count, and exits non-zero if any
# target crashed (panic, failed property assert, timeout, out of memory), printing the artifact.
#
# A finding becomes a regression test before it is fixed: a #[test] in the crate that owns the
# code, feeding it the artifact's bytes (e.g. `Message::parse(b"...")` in
# appliance/sip/src/message.rs) and asserting the property the target checks. Reproduce with
#   cargo +nightly fuzz run --fuzz-dir fuzz <target> fuzz/artifacts/<target>/<file>
# and shrink with `cargo +nightly fuzz tmin --fuzz-dir fuzz <target> <artifact>`.
set -euo pipefail

cd "$(dirname "$0")/.."

seconds=${1:-30}
if ! [[ $seconds =~ ^[0-9]+$ ]] || ((seconds == 0)); then
  echo "usage: $0 [SECONDS_PER_TARGET] [TARGET...]" >&2
  exit 2
fi
shift $(($# > 0 ? 1 : 0))

if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "fuzz.sh: the nightly toolchain is missing: rustup toolchain install nightly" >&2
  exit 2
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  cargo +nightly install cargo-fuzz --locked
fi

# FUZZ_SANITIZER=none runs about 4x more executions per second. The crates under test are safe
# Rust (unsafe_code is denied), so AddressSanitizer only watches their dependencies' unsafe code;
# for short local runs the extra executions can be worth more.
sanitizer=${FUZZ_SANITIZER:-address}
fuzz() { cargo +nightly fuzz "$1" --fuzz-dir fuzz --sanitizer "$sanitizer" "${@:2}"; }

if (($#)); then
  targets=("$@")
else
  mapfile -t targets < <(cargo +nightly fuzz list --fuzz-dir fuzz)
fi

# One build up front, so that a compile error is reported as such and not as a crash.
mkdir -p fuzz/artifacts
if ! fuzz build >fuzz/artifacts/build.log 2>&1; then
  cat fuzz/artifacts/build.log >&2
  exit 2
fi

summary=()
failed=0
for target in "${targets[@]}"; do
  corpus=fuzz/corpus/$target
  seeds=fuzz/seeds/$target
  mkdir -p "$corpus"
  if [ -d "$seeds" ]; then cp -n "$seeds"/* "$corpus"/ 2>/dev/null || true; fi
  log=fuzz/artifacts/$target.log
  echo "=== $target: ${seconds}s (log: $log)"
  # -timeout: an input taking seconds is a denial-of-service finding, not something to wait for.
  status=0
  fuzz run "$target" "$corpus" "$seeds" -- \
    -max_total_time="$seconds" -timeout=10 -print_final_stats=1 2>&1 | tee "$log" >/dev/null ||
    status=$?
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n 1)
  if ((status == 0)); then
    summary+=("$target: ok, ${runs:-?} executions")
  else
    failed=1
    if [ -n "$artifact" ]; then
      summary+=("$target: FOUND A CRASH after ${runs:-?} executions: $artifact")
      grep -m 1 -A 3 "panicked at" "$log" || true
    else
      summary+=("$target: FAILED (exit $status) without an artifact, see $log")
    fi
  fi
  echo "${summary[-1]}"
done

echo
echo "=== summary (${seconds}s per target)"
printf '%s\n' "${summary[@]}"
exit "$failed"
