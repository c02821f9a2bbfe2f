#!/usr/bin/env bash
# Builds the firmware image of a board with Buildroot and this repository's external tree:
# `just image BOARD`.
#
#   scripts/image.sh BOARD
#
# BOARD is one of buildroot/configs/appliance_<BOARD>_defconfig: rk3588, qemu_aarch64_virt,
# jetson_orin. Everything goes under buildroot/output/ (git-ignored): the Buildroot release named
# in buildroot/BUILDROOT_VERSION (cloned once), the downloads shared by all boards (dl/), and
# the board's build (BOARD/, images in BOARD/images/). Needs the network (Buildroot, sources,
# crates) and, for a first build, about an hour and 20 GB.
#
# Before building it checks what scripts/check-buildroot.sh cannot without a Buildroot tree:
# that every symbol in buildroot/upstream-symbols.txt exists in the pinned release, that every
# Buildroot path the defconfig names exists there, that the release's Rust is new enough for
# the workspace, and, after `make defconfig`, that Kconfig kept every line of the defconfig (it
# drops options whose dependencies are not met, silently).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
br=$repo/buildroot
url=https://gitlab.com/buildroot.org/buildroot.git

die() {
  echo "image: $*" >&2
  exit 1
}

boards() {
  local defconfig
  for defconfig in "$br"/configs/appliance_*_defconfig; do
    defconfig=${defconfig##*/appliance_}
    printf ' %s' "${defconfig%_defconfig}"
  done
}

[ $# -eq 1 ] || die "usage: scripts/image.sh BOARD (one of:$(boards))"
board=$1
defconfig=$br/configs/appliance_${board}_defconfig
[ -f "$defconfig" ] || die "no board '$board' (one of:$(boards))"

version=$(grep -Ev '^[[:space:]]*(#|$)' "$br/BUILDROOT_VERSION" | head -n1)
src=$br/output/buildroot-$version
out=$br/output/$board
export BR2_DL_DIR=$br/output/dl

# --- The pinned Buildroot ------------------------------------------------------------------

if [ ! -d "$src/.git" ]; then
  echo "image: cloning Buildroot $version from $url"
  rm -rf "$src.tmp"
  git clone --quiet --depth 1 --branch "$version" "$url" "$src.tmp" ||
    die "could not clone Buildroot $version from $url: building an image needs network access" \
      "(Buildroot, every package's sources and the crates)"
  mv "$src.tmp" "$src"
fi
[ "$(git -C "$src" describe --tags --exact-match 2>/dev/null)" = "$version" ] ||
  die "$src is not Buildroot $version: remove it and run again"

# --- Checks against that tree --------------------------------------------------------------

# Symbols: defined by a `config`/`menuconfig` line of a Config.in file. Config.in.legacy only
# lists removed options (to warn about them), so a symbol found only there is gone.
find "$src" -name 'Config.in*' ! -name Config.in.legacy -print0 |
  xargs -0 sed -nE 's/^[[:space:]]*(menu)?config[[:space:]]+(BR2_[A-Za-z0-9_]+).*/\2/p' |
  LC_ALL=C sort -u >"$br/output/.symbols-$version"
missing=$(grep -Ev '^[[:space:]]*(#|$)' "$br/upstream-symbols.txt" |
  LC_ALL=C comm -23 - "$br/output/.symbols-$version")
[ -z "$missing" ] || die "symbols of buildroot/upstream-symbols.txt that Buildroot $version" \
  "does not define (renamed or removed: update the defconfigs and Config.in files):" \
  "$(tr '\n' ' ' <<<"$missing")"

# Paths inside the Buildroot tree (board files of the upstream boards we start from).
for path in $(grep -oE '"[^"]*"' "$defconfig" | tr -d '"' | tr ' ' '\n' |
  grep -E '^(board|boot|configs|linux|package|support)/' | sort -u); do
  [ -e "$src/$path" ] || die "$(basename "$defconfig") names $path, which Buildroot $version lacks"
done

# Rust: the host toolchain Buildroot builds crates with against the workspace's rust-version.
needed=$(sed -n '/^\[workspace.package\]/,/^\[/s/^rust-version = "\(.*\)"/\1/p' "$repo/Cargo.toml")
have=$(sed -n 's/^RUST_BIN_VERSION = //p' "$src/package/rust-bin/rust-bin.mk")
if [ -z "$needed" ] || [ -z "$have" ]; then
  die "cannot read the workspace's rust-version or Buildroot's RUST_BIN_VERSION"
fi
[ "$(printf '%s\n%s\n' "$needed" "$have" | sort -V | head -n1)" = "$needed" ] ||
  die "Buildroot $version has Rust $have; the workspace needs $needed (pin a newer Buildroot)"

# --- Inputs from this checkout -------------------------------------------------------------

[ -d "$repo/.local/models" ] ||
  die "no models in .local/models: run \`just setup\` (scripts/setup-vision.sh) first"
# The development CA that bundles are signed under, unless the defconfig names a keyring.
if ! grep -q '^BR2_PACKAGE_APPLIANCE_RAUC_KEYRING=' "$defconfig"; then
  "$repo/scripts/bundle.sh" --init-pki >/dev/null
fi

# --- Configure, check, build ---------------------------------------------------------------

make -C "$src" O="$out" BR2_EXTERNAL="$br" "appliance_${board}_defconfig" >/dev/null
dropped=$(grep -E '^(BR2_[A-Za-z0-9_]+=|# BR2_[A-Za-z0-9_]+ is not set$)' "$defconfig" |
  grep -Fvx -f "$out/.config" || true)
[ -z "$dropped" ] || die "make defconfig did not keep these lines of $(basename "$defconfig")" \
  "(unmet dependencies, or a changed default format):$(printf '\n  %s' "$dropped")"

make -C "$src" O="$out" BR2_EXTERNAL="$br"

described=$(git -C "$repo" describe --always --dirty --tags 2>/dev/null || echo "not a git checkout")
echo "image: $board built from $described with Buildroot $version: $out/images"
if [ "$board" = jetson_orin ]; then
  echo "image: next, as root: buildroot/board/nvidia/jetson-orin/apply-to-l4t.sh" \
    "Linux_for_Tegra/rootfs $out"
fi
