#!/usr/bin/env bash
# Post-build script of every appliance defconfig (BR2_ROOTFS_POST_BUILD_SCRIPT). Buildroot runs
# it after the rootfs overlays are copied, as `post-build.sh TARGET_DIR BOARD BOARD_DIR`
# (BR2_ROOTFS_POST_SCRIPT_ARGS, shared with post-image.sh, which uses BOARD_DIR). It
#  - makes RAUC's system.conf (from rootfs-overlay/) name this board: compatible=appliance-BOARD,
#    which update bundles for this board must carry;
#  - installs the keyring bundles are verified with (BR2_PACKAGE_APPLIANCE_RAUC_KEYRING,
#    expanded by appliance.mk into APPLIANCE_RAUC_KEYRING);
#  - installs the unit drop-ins for this board only (systemd/boards/BOARD/, if any);
#  - refuses an image where any account has an empty password.
set -euo pipefail

die() {
  echo "post-build: $*" >&2
  exit 1
}

[ $# -eq 3 ] || die "usage: post-build.sh TARGET_DIR BOARD BOARD_DIR"
target=$1
board=$2
compatible=appliance-$board

conf=$target/etc/rauc/system.conf
[ -f "$conf" ] || die "$conf is missing: rootfs-overlay/etc/rauc/system.conf provides it"
sed -i "s/@APPLIANCE_COMPATIBLE@/$compatible/g" "$conf"
grep -Eq "^compatible *= *$compatible\$" "$conf" ||
  die "$conf has no 'compatible=$compatible' line (expected compatible=@APPLIANCE_COMPATIBLE@)"

keyring=${APPLIANCE_RAUC_KEYRING:?APPLIANCE_RAUC_KEYRING is not set: is the appliance package enabled?}
[ -f "$keyring" ] || die "RAUC keyring $keyring not found: \`just bundle\` creates the development CA" \
  "there, or set BR2_PACKAGE_APPLIANCE_RAUC_KEYRING to the production CA certificate"
grep -q -- '-----BEGIN CERTIFICATE-----' "$keyring" || die "$keyring is not a PEM certificate"
install -D -m 0644 "$keyring" "$target/etc/rauc/keyring.pem"

# Drop-ins such as the device nodes applianced may open on this board's hardware.
units=$(dirname "$(readlink -f "$0")")/../../../systemd
if [ -d "$units/boards/$board" ]; then
  cp -r "$units/boards/$board/." "$target/usr/lib/systemd/system/"
fi

# Buildroot locks root (password "*") when BR2_TARGET_ENABLE_ROOT_LOGIN is off; an overlay or
# package could still ship an account with an empty password, which would log in with none.
empty=$(awk -F: '$2 == "" { print $1 }' "$target/etc/shadow")
[ -z "$empty" ] || die "accounts with an empty password in /etc/shadow: $empty"
