#!/usr/bin/env bash
# Installs the Debian packages the appliance and its tests use, if missing. Each issue that adds a
# runtime or test peer (mosquitto, sipp, GStreamer, …) adds its packages here. With `--test` it
# also installs the test peers that take long to build (tansu, s3s-fs): `just test` passes it,
# `just run` does not.
set -euo pipefail

packages=(
  sip-tester # sipp: the SIP peer of tests/sip.rs
  strace # tests/store_durability.rs checks the fdatasync behind every durable commit
  # GStreamer 1.22 for appliance-media's H.264 source (gstreamer-rs links the -dev libraries)
  # and its tests, which decode our MPEG-PS with GStreamer's own demuxer and decoder.
  libgstreamer1.0-dev # gstreamer-rs links libgstreamer-1.0 (build dependency)
  libgstreamer-plugins-base1.0-dev # gstreamer-app links libgstapp-1.0 (build dependency)
  gstreamer1.0-tools # gst-launch-1.0 and gst-inspect-1.0, to try pipelines by hand
  gstreamer1.0-plugins-base # videotestsrc, appsrc/appsink, parsebin
  gstreamer1.0-plugins-good # qtdemux and mp4mux: MP4 files for the looping file source
  gstreamer1.0-plugins-bad # h264parse, mpegpsdemux (the independent PS check in the tests)
  gstreamer1.0-plugins-ugly # x264enc: the test pattern's encoder
  gstreamer1.0-libav # avdec_h264: decodes what we mux, in the tests
  libssl-dev # rdkafka's bundled librdkafka links OpenSSL for TLS and SASL/SCRAM (build dependency)
  python3-pip # pip downloads the onnxruntime wheel (scripts/setup-vision.sh)
  zlib1g-dev # librdkafka's gzip support, found by its configure script (build dependency)
  mosquitto # MQTT broker: appliance-uplink's tests start one per test on a loopback port
  mosquitto-clients # mosquitto_sub/mosquitto_pub: the cloud side of tests/uplink.rs, and by hand
  socat # TLS terminator in front of tansu (no TLS of its own): the Kafka-over-TLS tests
  # Firmware (issue 6): bundles, image layouts, units and the aarch64 build, checked on this host.
  rauc # signs and verifies update bundles (just bundle, tests/firmware.rs); `rauc service` in tests
  squashfs-tools # mksquashfs: the root filesystem inside a RAUC bundle
  fdisk # sfdisk: the Buildroot lint reads the partition table genimage wrote
  genimage # builds the disk image layout (A/B root slots, data partition) from genimage.cfg
  dosfstools # mkfs.vfat for genimage's boot partition
  mtools # mcopy: genimage fills the boot partition without mounting it
  shellcheck # lints every shell script (scripts/, buildroot/, rootfs-overlay/)
  dbus-daemon # a private bus for tests that talk to `rauc service` over D-Bus
  gcc-aarch64-linux-gnu # linker for `just cross` (aarch64-unknown-linux-gnu)
  libc6-dev-arm64-cross # the aarch64 C runtime the cross linker links against
  g++-aarch64-linux-gnu # librdkafka's bundled build also compiles its C++ wrapper
  argon2 # the reference argon2 CLI: tests/device.rs makes provisioning hashes with it
  qemu-user # qemu-aarch64: runs the aarch64 unit tests and `applianced version` on this host
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

# tansu: the Kafka-protocol broker of appliance-uplink's Kafka tests (a single binary, in-memory
# storage). No Debian package provides a Kafka broker, so it comes from crates.io; the in-memory
# storage needs the `dynostore` feature. The build takes about 10 minutes on 2 cores, hence once
# per machine, not per test run. Pinned: the tests use its 0.6 command line.
export PATH="$HOME/.cargo/bin:$PATH"
if [ "${1:-}" = --test ] && ! command -v tansu >/dev/null; then
  echo "setup: installing tansu (cargo install, ~10 minutes)"
  cargo install --locked tansu@0.6.0 --features dynostore
fi

# s3s-fs: the S3-compatible server of appliance-uplink's S3 media tests (a single binary serving a
# directory). It checks every request's SigV4 signature against the one access key it is given,
# which moto (no signature check by default) and s3rver (none at all) do not; MinIO has no Debian
# package. About 5 minutes on 2 cores. Pinned: the tests use its 0.14 command line.
if [ "${1:-}" = --test ] && ! command -v s3s-fs >/dev/null; then
  echo "setup: installing s3s-fs (cargo install, ~5 minutes)"
  cargo install --locked s3s-fs@0.14.1 --features binary
fi
