#!/usr/bin/env bash
# Post-image script of every appliance defconfig (BR2_ROOTFS_POST_IMAGE_SCRIPT). Buildroot runs
# it from its own tree, with BINARIES_DIR and HOST_DIR set, as
# `post-image.sh BINARIES_DIR BOARD BOARD_DIR` (BR2_ROOTFS_POST_SCRIPT_ARGS). It makes boot.scr
# from the board's bootargs.cmd and board/common/boot.cmd, then disk.img from the board's
# genimage.cfg. A board is a folder with those three files and its U-Boot fragment.
set -euo pipefail

[ $# -eq 3 ] || {
  echo "usage: post-image.sh BINARIES_DIR BOARD BOARD_DIR" >&2
  exit 1
}
board_dir=$3
common_dir=$(dirname "$(readlink -f "$0")")

cat "$board_dir/bootargs.cmd" "$common_dir/boot.cmd" >"$BINARIES_DIR/boot.cmd"
"$HOST_DIR/bin/mkimage" -A arm64 -O linux -T script -C none -n "appliance A/B boot" \
  -d "$BINARIES_DIR/boot.cmd" "$BINARIES_DIR/boot.scr"
support/scripts/genimage.sh -c "$board_dir/genimage.cfg"
