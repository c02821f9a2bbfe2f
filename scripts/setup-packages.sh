#!/usr/bin/env bash
# Installs the Debian packages the appliance and its tests use, if missing. Each issue that adds a
# runtime or test peer (mosquitto, sipp, GStreamer, …) adds its packages here.
set -euo pipefail

packages=(
  sip-tester # sipp: the SIP peer of tests/sip.rs
  strace # tests/store_durability.rs checks the fdatasync behind every durable commit
)

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
for pkg in "${packages[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if ((${#missing[@]})); then
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi
