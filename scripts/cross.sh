#!/usr/bin/env bash
# Cross-builds applianced for aarch64-unknown-linux-gnu (the RK3588 and Jetson boards) with every
# feature the firmware ships (the workspace's default features: GStreamer source, rdkafka with
# ssl, ...), and runs it and the workspace's self-contained tests under qemu-aarch64 on this host.
#
#   scripts/cross.sh [all] [--release]   build, then test (the default)
#   scripts/cross.sh build [--release]   sysroot + cargo build -p applianced, checked with `file`
#   scripts/cross.sh test [--release]    `applianced version` and the tests under qemu
#   scripts/cross.sh run BINARY [ARGS]   run an aarch64 binary under qemu with the sysroot
#   scripts/cross.sh cargo ARGS...       any cargo command for aarch64 in the same environment,
#                                        e.g. `scripts/cross.sh cargo test -p appliance-sip`
#
# Host tools (scripts/setup-packages.sh): gcc-aarch64-linux-gnu, g++-aarch64-linux-gnu (rdkafka-sys
# runs librdkafka's own configure + make, which builds its C++ wrapper too), libc6-dev-arm64-cross,
# qemu-user, pkgconf, file, apt and dpkg-deb; rustup adds the Rust target.
#
# The sysroot: Debian 12's arm64 packages of the libraries the build links (GStreamer, OpenSSL,
# zlib) and the GStreamer plugins the media code loads at run time, with their whole dependency
# closure. apt resolves and downloads the closure with a private state (its own package lists, an
# empty dpkg status, arm64 as the only architecture), so the host's apt and dpkg state is neither
# read nor changed and packages installed on the host for amd64 are still fetched for arm64. The
# .debs are cached in .local/cross/debs and unpacked (dpkg-deb -x; no maintainer scripts, whose
# library alternatives are made by hand) into .local/cross/sysroot. Later runs reuse the sysroot
# without asking apt anything until the package lists below change; CROSS_REFRESH=1 resolves
# again (e.g. to pick up a Debian security update), downloading only the .debs not yet cached.
# The C runtime (libc6, libgcc-s1, libstdc++6, ...) is not unpacked: the cross toolchain links
# against its own copies and qemu runs with that toolchain's loader (-L /usr/aarch64-linux-gnu); a
# libc.so.6 from Debian's arm64 archive on LD_LIBRARY_PATH would not match that loader's build.
#
# Cargo builds into target/cross (CROSS_TARGET_DIR overrides). With --target, cargo locks the
# host artifact directory (<target-dir>/debug: build scripts, proc macros) as well as the aarch64
# one, so in the shared target/ a cross build waits ("Blocking waiting for file lock on artifact
# directory") for every host build anyone runs. A directory of its own never waits, at the price
# of building the host-side build scripts and proc macros once more there (~1.4 GB).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export PATH="$HOME/.cargo/bin:$PATH"

TARGET=aarch64-unknown-linux-gnu
TRIPLE=aarch64-linux-gnu # Debian's multiarch name and the GNU toolchain's prefix
CROSS=$ROOT/.local/cross
SYSROOT=$CROSS/sysroot
DEBS=$CROSS/debs
APT_DIR=$CROSS/apt
QEMU_PREFIX=/usr/$TRIPLE
export CARGO_TARGET_DIR=${CROSS_TARGET_DIR:-$ROOT/target/cross}

# The -dev packages the build links against.
DEV_PACKAGES=(
  libgstreamer1.0-dev # gstreamer (appliance-media's `source` feature)
  libgstreamer-plugins-base1.0-dev # gstreamer-app, gstreamer-video
  libssl-dev # openssl-sys, and librdkafka's --enable-ssl (rdkafka's `ssl` feature)
  zlib1g-dev # libz-sys, and librdkafka's gzip codec
)
# The plugins appliance-media's element tables name (source.rs, frames.rs, clip.rs), as
# scripts/setup-packages.sh installs them on the host.
RUN_PACKAGES=(
  gstreamer1.0-plugins-base # appsrc/appsink, videotestsrc, videoconvert, videoscale, parsebin
  gstreamer1.0-plugins-good # rtspsrc, rtph264depay, mp4mux, qtdemux
  gstreamer1.0-plugins-bad # h264parse, h265parse
  gstreamer1.0-plugins-ugly # x264enc: the test pattern's encoder
  gstreamer1.0-libav # avdec_h264, avdec_h265: the software decoders
)
# What the cross toolchain provides itself (libc6-arm64-cross, libc6-dev-arm64-cross,
# linux-libc-dev-arm64-cross, libgcc-s1-arm64-cross, libstdc++6-arm64-cross, ...): not unpacked.
TOOLCHAIN_PACKAGES=(
  libc6 libc6-dev libc-dev-bin linux-libc-dev libgcc-s1 gcc-12-base libstdc++6 libgomp1 libatomic1
)
# Bump to rebuild the sysroots that an older version of this script made.
SYSROOT_LAYOUT=2

# The tests that run under qemu. Everything whose tests need nothing but this build and the
# sysroot runs whole (unit, integration and doc tests).
TEST_PACKAGES=(
  appliance-model
  appliance-config
  appliance-sip
  appliance-manscdp
  appliance-gb28181
  appliance-store # sled on tempdirs, fdatasync included: fine under qemu
  appliance-skills
  appliance-media # its tests/ run real GStreamer (x264enc, avdec_h264) from the sysroot
)
# Only the unit tests (--lib --bins) of these; what their tests/ need is not here:
#   appliance-uplink: tests/ start mosquitto, tansu and s3s-fs as brokers and S3 server.
#   appliance-vision: tests/ load libonnxruntime (setup installs the x86_64 build only) and the
#     models in .local/models.
#   applianced: no tests/ (its end-to-end tests are in the appliance-tests package).
UNIT_TEST_PACKAGES=(
  appliance-uplink
  appliance-vision
  applianced
)
# Not run: appliance-tests (tests/: end-to-end, starting the host-built binaries, sipp, brokers)
# and appliance-bench (benchmark binaries, no tests).

die() {
  echo "cross: $*" >&2
  exit 1
}
log() { echo "cross: $*" >&2; }

usage() {
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
}
bad_usage() {
  echo "cross: unknown argument '$1'" >&2
  usage | sed -n '/^  scripts/p' >&2
  exit 2
}

check_tools() {
  local missing=() entry tool
  for entry in "$TRIPLE-gcc:gcc-aarch64-linux-gnu" "$TRIPLE-g++:g++-aarch64-linux-gnu" \
    "$TRIPLE-ar:binutils-aarch64-linux-gnu" "qemu-aarch64:qemu-user" "pkg-config:pkgconf" \
    "file:file" "apt-get:apt" "dpkg-deb:dpkg" "rustup:rustup, https://rustup.rs" \
    "cargo:rustup, https://rustup.rs"; do
    tool=${entry%%:*}
    command -v "$tool" >/dev/null || missing+=("$tool (${entry#*:})")
  done
  [ -e "$QEMU_PREFIX/lib/ld-linux-aarch64.so.1" ] ||
    missing+=("$QEMU_PREFIX/lib/ld-linux-aarch64.so.1 (libc6-dev-arm64-cross)")
  if ((${#missing[@]})); then
    printf 'cross: missing %s\n' "${missing[@]}" >&2
    die "install them (scripts/setup-packages.sh installs the Debian packages), then run again"
  fi
  case $ROOT in
  *[[:space:]]*) die "the checkout's path '$ROOT' has whitespace, on which cargo splits the rustflags and runner variables" ;;
  esac
}

# apt with a private state: its own lists, an empty dpkg status, arm64 only. The sources,
# keyrings and proxy settings are the host's.
apt_cross() {
  apt-get -q \
    -o Dir::State="$APT_DIR/state" \
    -o Dir::State::status="$APT_DIR/state/status" \
    -o Dir::Cache="$APT_DIR/cache" \
    -o Dir::Cache::archives="$DEBS" \
    -o APT::Architecture=arm64 \
    -o APT::Architectures::=arm64 \
    -o APT::Install-Recommends=false \
    -o APT::Sandbox::User="$(id -un)" \
    -o Acquire::Languages=none \
    -o Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false \
    -o Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled=false \
    -o Acquire::IndexTargets::deb::DEP-11-icons-small::DefaultEnabled=false \
    -o Acquire::IndexTargets::deb::DEP-11-icons-hidpi::DefaultEnabled=false \
    -o Acquire::IndexTargets::deb::Contents-deb::DefaultEnabled=false \
    "$@"
}

# What maintainer scripts would have done that the libraries need: update-alternatives links
# (libblas.so.3 and liblapack.so.3, which libavfilter and so gstreamer1.0-libav load, exist only
# as alternatives). Reads the packages' postinst scripts on stdin and makes each literal
# `update-alternatives --install LINK NAME PATH PRIORITY` link whose PATH was unpacked, the
# highest priority winning, as a relative link inside the sysroot.
link_alternatives() {
  local root=$1 link path
  sed -e ':a' -e '/\\$/{N;s/\\\n/ /;ta' -e '}' |
    awk '{
      for (i = 1; i + 4 <= NF; i++) if ($i == "--install") {
        link = $(i + 1); path = $(i + 3); prio = $(i + 4)
        if (link ~ /^\/[^$"]*$/ && path ~ /^\/[^$"]*$/ && prio ~ /^[0-9]+$/ &&
            (!(link in best) || prio + 0 > best[link])) { best[link] = prio + 0; target[link] = path }
      }
    } END { for (l in target) print l, target[l] }' |
    while read -r link path; do
      if [ -e "$root$path" ] && [ ! -e "$root$link" ]; then
        mkdir -p "$(dirname "$root$link")"
        ln -s "$(realpath -m -s --relative-to="$(dirname "$root$link")" "$root$path")" "$root$link"
      fi
    done
}

sysroot_key() {
  printf '%s\n' "layout $SYSROOT_LAYOUT" "${DEV_PACKAGES[*]}" "${RUN_PACKAGES[*]}" \
    "${TOOLCHAIN_PACKAGES[*]}" | sha256sum | cut -d' ' -f1
}

build_sysroot() {
  local key
  key=$(sysroot_key)
  if [ "${CROSS_REFRESH:-0}" != 1 ] && [ -f "$SYSROOT/.complete" ] &&
    [ "$(cat "$SYSROOT/.complete")" = "$key" ]; then
    return
  fi
  mkdir -p "$APT_DIR/state/lists/partial" "$APT_DIR/cache" "$DEBS/partial"
  # One assembly at a time (two builds started together would share the staging directory).
  exec 9>"$CROSS/lock"
  flock 9

  log "resolving the arm64 closure of ${DEV_PACKAGES[*]} ${RUN_PACKAGES[*]}"
  : >"$APT_DIR/state/status"
  apt_cross update >/dev/null ||
    die "apt-get update for arm64 failed: are the Debian mirrors of /etc/apt/sources.list(.d) reachable?"
  # Everything an install into an empty system would unpack, as: name version architecture.
  local plan
  plan=$(apt_cross -s install "${DEV_PACKAGES[@]}" "${RUN_PACKAGES[@]}" |
    sed -n 's/^Inst \([^ ]*\) (\([^ ]*\) .*\[\([a-z0-9]*\)\])$/\1 \2 \3/p')
  [ -n "$plan" ] || die "apt resolved nothing for ${DEV_PACKAGES[*]} ${RUN_PACKAGES[*]}"
  log "fetching what ${DEBS#"$ROOT"/} lacks of the $(wc -l <<<"$plan") packages"
  apt_cross install --download-only -y "${DEV_PACKAGES[@]}" "${RUN_PACKAGES[@]}" >/dev/null ||
    die "downloading the arm64 packages failed"

  local staging=$SYSROOT.new name version arch deb count=0
  rm -rf "$staging" "$staging.postinst"
  mkdir -p "$staging"
  while read -r name version arch; do
    name=${name%:arm64}
    if printf '%s\n' "${TOOLCHAIN_PACKAGES[@]}" | grep -qxF "$name"; then
      continue
    fi
    deb=$DEBS/${name}_${version//:/%3a}_$arch.deb # apt escapes the epoch's colon
    [ -f "$deb" ] || die "$deb is missing after the download"
    dpkg-deb -x "$deb" "$staging"
    dpkg-deb -I "$deb" postinst >>"$staging.postinst" 2>/dev/null || true
    count=$((count + 1))
  done <<<"$plan"
  link_alternatives "$staging" <"$staging.postinst"
  rm -f "$staging.postinst"
  rm -rf "$staging/usr/share/doc" "$staging/usr/share/man" "$staging/usr/share/locale" \
    "$staging/usr/share/info"

  # Absolute symlinks point into the host's / (usr/lib/.../libz.so -> /lib/.../libz.so.1.2.13):
  # make them relative, inside the sysroot.
  local link
  while IFS= read -r -d '' link; do
    ln -sfn "$(realpath -m -s --relative-to="$(dirname "$link")" "$staging$(readlink "$link")")" "$link"
  done < <(find "$staging" -type l -lname '/*' -print0)

  echo "$key" >"$staging/.complete"
  rm -rf "$SYSROOT"
  mv "$staging" "$SYSROOT"
  log "sysroot: $count packages in ${SYSROOT#"$ROOT"/} ($(du -sh "$SYSROOT" | cut -f1))"
}

# The environment of every cargo call: pkg-config answers from the sysroot; C code (ring,
# mimalloc, openssl-sys' header probe, libz-sys, librdkafka) compiles with the aarch64 toolchain
# and the sysroot's headers; rustc links with aarch64-linux-gnu-gcc and finds the shared
# libraries' own dependencies (-rpath-link); test binaries run under qemu (this script's `run`).
cross_env() {
  local includes="-isystem $SYSROOT/usr/include/$TRIPLE -isystem $SYSROOT/usr/include"
  local libdir=$SYSROOT/usr/lib/$TRIPLE
  local rpath_link="-Wl,-rpath-link,$libdir -Wl,-rpath-link,$SYSROOT/lib/$TRIPLE"
  local target_var=${TARGET//-/_}

  export PKG_CONFIG_ALLOW_CROSS=1
  export PKG_CONFIG_SYSROOT_DIR=$SYSROOT
  export PKG_CONFIG_LIBDIR=$libdir/pkgconfig:$SYSROOT/usr/share/pkgconfig
  unset PKG_CONFIG_PATH

  # cc-rs takes CC_<target> first. Debian's .pc files leave /usr/include out of Cflags (it is the
  # system's), and OpenSSL's configuration.h lives in the multiarch include directory: CFLAGS
  # names both.
  export "CC_$target_var=$TRIPLE-gcc" "CXX_$target_var=$TRIPLE-g++" "AR_$target_var=$TRIPLE-ar"
  # rdkafka-sys runs librdkafka's mklove ./configure and make with no --host (mklove's is a
  # no-op): they take the tools and flags from the plain variables, and pkg-config (above) for
  # OpenSSL and zlib. cc-rs adds plain CFLAGS to host compiles too, but nothing here compiles C
  # for the host (`cargo tree --target aarch64-unknown-linux-gnu -i cc -e normal,build` shows
  # target crates only); HOST_CC keeps such a compile on the host compiler if one comes.
  export CC=$TRIPLE-gcc CXX=$TRIPLE-g++ AR=$TRIPLE-ar RANLIB=$TRIPLE-ranlib NM=$TRIPLE-nm
  export LD=$TRIPLE-ld STRIP=$TRIPLE-strip
  export CFLAGS=$includes CXXFLAGS=$includes
  export LDFLAGS="-L$libdir $rpath_link"
  export HOST_CC=cc HOST_CXX=c++ HOST_AR=ar

  local upper=${target_var^^}
  export "CARGO_TARGET_${upper}_LINKER=$TRIPLE-gcc"
  export "CARGO_TARGET_${upper}_RUSTFLAGS=${rpath_link//-Wl/-C link-arg=-Wl}"
  export "CARGO_TARGET_${upper}_RUNNER=$ROOT/scripts/cross.sh run"
  # RUSTFLAGS would take the place of the target's rustflags (cargo reads one source only).
  unset RUSTFLAGS CARGO_ENCODED_RUSTFLAGS
  # Disk: with full debug info and incremental caches the debug build and its test binaries take
  # ~7.5 GB; line tables (file:line in backtraces, as in the release profile) and no incremental
  # cache keep it under 3 GB. Either variable, set, wins.
  export CARGO_PROFILE_DEV_DEBUG=${CARGO_PROFILE_DEV_DEBUG:-line-tables-only}
  export CARGO_INCREMENTAL=${CARGO_INCREMENTAL:-0}
}

# Runs an aarch64 binary under qemu with the sysroot's libraries and plugins; the variables are
# the emulated process's (-E), not the host's. GStreamer scans the plugins in-process (a forked
# gst-plugin-scanner would start outside qemu's -L) into a registry of its own.
run_qemu() {
  [ $# -ge 1 ] || die "usage: $0 run BINARY [ARGS...]"
  [ -f "$SYSROOT/.complete" ] || die "no sysroot in ${SYSROOT#"$ROOT"/}: run $0 build first"
  mkdir -p "$CROSS/gstreamer"
  exec qemu-aarch64 -L "$QEMU_PREFIX" \
    -E "LD_LIBRARY_PATH=$SYSROOT/usr/lib/$TRIPLE:$SYSROOT/lib/$TRIPLE" \
    -E "GST_PLUGIN_SYSTEM_PATH=$SYSROOT/usr/lib/$TRIPLE/gstreamer-1.0" \
    -E "GST_REGISTRY_FORK=no" \
    -E "GST_REGISTRY=$CROSS/gstreamer/registry.aarch64.bin" \
    "$@"
}

profile_args=()
profile_dir=debug
cargo_cross() {
  cargo "$@" --locked --target "$TARGET" "${profile_args[@]}"
}

cmd_build() {
  check_tools
  if ! rustup target list --installed | grep -qx "$TARGET"; then
    log "adding the Rust target $TARGET"
    rustup target add "$TARGET" || die "rustup target add $TARGET failed"
  fi
  build_sysroot
  cross_env
  log "cargo build -p applianced --target $TARGET ${profile_args[*]} (into ${CARGO_TARGET_DIR#"$ROOT"/})"
  cargo_cross build -p applianced
  local bin=$CARGO_TARGET_DIR/$TARGET/$profile_dir/applianced kind
  kind=$(file -b "$bin")
  case $kind in
  "ELF 64-bit LSB "*", ARM aarch64,"*) log "${bin#"$ROOT"/}: $kind" ;;
  *) die "${bin#"$ROOT"/} is not an aarch64 executable: $kind" ;;
  esac
}

cmd_test() {
  check_tools
  [ -f "$SYSROOT/.complete" ] || die "no sysroot in ${SYSROOT#"$ROOT"/}: run $0 build first"
  cross_env
  local bin=$CARGO_TARGET_DIR/$TARGET/$profile_dir/applianced
  [ -x "$bin" ] || die "${bin#"$ROOT"/} is missing: run $0 build ${profile_args[*]} first"

  local out want pkgid
  pkgid=$(cargo pkgid --locked -p applianced)
  want="applianced ${pkgid##*[#@]}"
  out=$("$ROOT/scripts/cross.sh" run "$bin" version) || die "applianced version failed under qemu"
  [ "$out" = "$want" ] || die "applianced version under qemu printed '$out', not '$want'"
  log "applianced version under qemu: $out"
  local config status=0
  config=$(mktemp --suffix=.toml)
  "$ROOT/scripts/cross.sh" run "$bin" default-config >"$config" &&
    "$ROOT/scripts/cross.sh" run "$bin" check-config "$config" >/dev/null || status=$?
  rm -f "$config"
  ((status == 0)) || die "applianced default-config | check-config failed under qemu"
  log "applianced default-config | check-config under qemu: ok"

  local args=() package
  for package in "${TEST_PACKAGES[@]}"; do args+=(-p "$package"); done
  log "tests under qemu: ${TEST_PACKAGES[*]}"
  cargo_cross test --no-fail-fast "${args[@]}"
  args=()
  for package in "${UNIT_TEST_PACKAGES[@]}"; do args+=(-p "$package"); done
  log "unit tests under qemu: ${UNIT_TEST_PACKAGES[*]}"
  cargo_cross test --no-fail-fast "${args[@]}" --lib --bins
}

cmd=${1:-all}
[ $# -gt 0 ] && shift
case $cmd in
run) run_qemu "$@" ;; # in the caller's directory: cargo runs tests in their package's
cargo)
  [ -f "$SYSROOT/.complete" ] || die "no sysroot in ${SYSROOT#"$ROOT"/}: run $0 build first"
  cross_env
  CARGO_BUILD_TARGET=$TARGET exec cargo "$@"
  ;;
esac
cd "$ROOT"
for arg in "$@"; do
  case $arg in
  --release)
    profile_args=(--release)
    profile_dir=release
    ;;
  *) bad_usage "$arg" ;;
  esac
done

case $cmd in
all)
  cmd_build
  cmd_test
  ;;
build) cmd_build ;;
test) cmd_test ;;
help | -h | --help) usage ;;
*) bad_usage "$cmd" ;;
esac
