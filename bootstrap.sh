#!/usr/bin/env bash
# Usage: ./bootstrap.sh [RECIPE [ARGS…]]   e.g. ./bootstrap.sh run, ./bootstrap.sh test
#
# Installs what the Justfile needs on a fresh Debian 12 / Ubuntu machine: a C toolchain and
# pkg-config (for -sys crates), Rust (rustup, if no cargo is present), `just` and cargo-nextest;
# then runs `just RECIPE`. Idempotent: anything already present is left alone. Project-specific
# packages (brokers, GStreamer, models, …) are installed by `just setup`, which `just run` and
# `just test` call first.
set -euo pipefail
cd "$(dirname "$0")"

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
for pkg in build-essential pkg-config ca-certificates curl; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "bootstrap: installing ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi

export PATH="$HOME/.cargo/bin:$PATH"
if ! command -v cargo >/dev/null; then
  echo "bootstrap: installing Rust with rustup"
  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --component clippy,rustfmt
fi

if ! command -v just >/dev/null; then
  echo "bootstrap: installing just"
  cargo install --locked just
fi
if ! cargo nextest --version >/dev/null 2>&1; then
  echo "bootstrap: installing cargo-nextest"
  cargo install --locked cargo-nextest
fi

if (($#)); then
  exec just "$@"
fi
