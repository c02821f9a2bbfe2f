# Recipes for developers and CI. `./bootstrap.sh RECIPE` installs just and Rust first.

set shell := ["bash", "-euo", "pipefail", "-c"]
export PATH := env("HOME") + "/.cargo/bin:" + env("PATH")

# List the recipes.
default:
    @just --list

# Install what building and running need (idempotent).
setup:
    scripts/setup-packages.sh
    scripts/setup-vision.sh

# Install that and the test peers (idempotent; the first time builds tansu, ~10 minutes).
setup-test:
    scripts/setup-packages.sh --test
    scripts/setup-vision.sh

# Build and run the appliance on embedded defaults: data in ./var, API on 127.0.0.1:8080.
run *ARGS: setup
    cargo build --release -p applianced
    ./target/release/applianced run {{ ARGS }}

# Format check, lints, then every test (unit, end-to-end with the real binaries, crash cycles).
test: setup-test lint
    cargo build --workspace --bins
    cargo nextest run --workspace --no-fail-fast

# Benchmarks that print tables: `just bench store` (against SQLite), `just bench sip`, `just bench uplink`, `just bench vision`.
bench WHAT: setup
    cargo build --release -p appliance-bench -p applianced
    just bench-{{ WHAT }}

[private]
bench-store *ARGS:
    ./target/release/store-bench run {{ ARGS }}

[private]
bench-sip:
    scripts/bench-sip.sh

[private]
bench-uplink *ARGS:
    ./target/release/store-bench uplink {{ ARGS }}

[private]
bench-vision *ARGS:
    ./target/release/vision-bench {{ ARGS }}

# Fuzz the SIP, MANSCDP, SDP, digest and media parsers (nightly + cargo-fuzz), SECONDS per target.
fuzz SECONDS="60" *TARGETS:
    scripts/fuzz.sh {{ SECONDS }} {{ TARGETS }}

# cargo fmt --check and clippy with warnings as errors.
lint:
    cargo fmt --all --check
    cargo clippy --workspace --all-targets --locked -- -D warnings

# Format the code.
fmt:
    cargo fmt --all
