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

# Format check, lints, every test (unit, end-to-end with the real binaries, crash cycles, the firmware checks), then the aarch64 build and its tests under qemu.
test: setup-test lint
    cargo build --workspace --bins
    cargo nextest run --workspace --no-fail-fast
    scripts/cross.sh all

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

# Build applianced for aarch64 (every shipped feature, Debian arm64 sysroot in .local/cross, into target/cross), then run it and the self-contained tests under qemu-aarch64; `just cross --release` for a release build.
cross *ARGS: setup
    scripts/cross.sh all {{ ARGS }}

# Build the firmware image of BOARD (rk3588, qemu_aarch64_virt, jetson_orin) with Buildroot into buildroot/output/BOARD/images: needs the network, ~1 h and 20 GB the first time.
image BOARD: setup
    scripts/image.sh {{ BOARD }}

# Sign a RAUC update bundle of the Buildroot image (development PKI in .local/rauc/, made on first use): [--rootfs IMG] [--out FILE] [--version V] [--compatible C].
bundle *ARGS:
    scripts/bundle.sh {{ ARGS }}

# Write the RK3588 image (`just image rk3588`) to DEVICE, an SD card or eMMC: erases all of DEVICE.
[confirm]
flash DEVICE:
    test -b {{ DEVICE }} || { echo "flash: {{ DEVICE }} is not a block device" >&2; exit 1; }
    [ -z "$(lsblk -nro MOUNTPOINT {{ DEVICE }})" ] || { echo "flash: {{ DEVICE }} has mounted partitions: unmount them" >&2; exit 1; }
    $(test "$(id -u)" = 0 || echo sudo) dd if=buildroot/output/rk3588/images/disk.img of={{ DEVICE }} bs=4M conv=fsync status=progress

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
