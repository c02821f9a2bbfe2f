#!/usr/bin/env bash
# Puts the appliance onto a Jetson Linux (L4T) root filesystem, for flashing with NVIDIA's
# tools (Linux_for_Tegra/tools/kernel_flash, ROOTFS_AB=1 for the A/B slots RAUC updates):
#
#   apply-to-l4t.sh L4T_ROOTFS BUILDROOT_OUTPUT [KEYRING]
#
# L4T_ROOTFS is Linux_for_Tegra/rootfs with NVIDIA's sample root filesystem extracted and
# apply_binaries.sh run (Ubuntu 22.04: GStreamer with NVIDIA's nvv4l2decoder, CUDA, TensorRT).
# BUILDROOT_OUTPUT is the output folder of appliance_jetson_orin_defconfig (`just image
# jetson_orin`), whose toolchain has L4T's glibc 2.35, so its programs run on that userland.
# KEYRING defaults to the development CA that `just bundle` makes. Run as root (the rootfs is
# owned by root). Not tried: no L4T BSP or Jetson was available where this was written.
set -euo pipefail

die() {
  echo "apply-to-l4t: $*" >&2
  exit 1
}

case $# in
  2 | 3) ;;
  *) die "usage: apply-to-l4t.sh L4T_ROOTFS BUILDROOT_OUTPUT [KEYRING]" ;;
esac
rootfs=$1
target=$2/target
board_dir=$(dirname "$(readlink -f "$0")")
repo=$(readlink -f "$board_dir/../../../..")
keyring=${3:-$repo/.local/rauc/ca.cert.pem}
[ -x "$rootfs/usr/sbin/nvbootctrl" ] || die "$rootfs has no usr/sbin/nvbootctrl: not an L4T rootfs"
[ -x "$target/usr/bin/applianced" ] || die "$target has no usr/bin/applianced: build jetson_orin first"
[ -f "$keyring" ] || die "RAUC keyring $keyring not found (\`just bundle\` creates the development CA)"

# Our programs and data from the Buildroot build. Everything they link that L4T has (GStreamer,
# GLib, OpenSSL, D-Bus) is left to L4T's own packages; ONNX Runtime is JetPack's build with the
# CUDA and TensorRT providers, which the box's configuration points applianced at.
for path in usr/bin/applianced usr/bin/MediaServer usr/bin/rauc \
  usr/share/appliance usr/share/zlmediakit \
  usr/share/dbus-1/system.d/de.pengutronix.rauc.conf \
  usr/share/dbus-1/system-services/de.pengutronix.rauc.service \
  usr/lib/systemd/system/rauc.service; do
  [ -e "$target/$path" ] || die "$target/$path is missing from the Buildroot build"
  mkdir -p "$rootfs/$(dirname "$path")"
  cp -a "$target/$path" "$rootfs/$path"
done
# The units and their drop-ins, as appliance.mk and post-build.sh install them on the other
# boards, with this board's (systemd/boards/jetson-orin/: the GPU and decoder device nodes).
(
  cd "$repo/systemd"
  for unit in *.service *.mount *.d/*.conf; do
    [ -e "$unit" ] || continue
    install -D -m 0644 "$unit" "$rootfs/usr/lib/systemd/system/$unit"
  done
)
cp -r "$repo/systemd/boards/jetson-orin/." "$rootfs/usr/lib/systemd/system/"

# The shared overlay, then this board's (RAUC on nvbootctrl instead of U-Boot).
cp -a "$repo/rootfs-overlay/." "$rootfs/"
cp -a "$board_dir/rootfs-overlay/." "$rootfs/"
# appliance-<board>, <board> as in the defconfig's name and scripts/bundle.sh's default.
sed -i "s/@APPLIANCE_COMPATIBLE@/appliance-jetson_orin/" "$rootfs/etc/rauc/system.conf"
install -D -m 0644 "$keyring" "$rootfs/etc/rauc/keyring.pem"

# The users of appliance.mk and zlmediakit.mk, with the same fixed ids and locked passwords.
add_user() {
  local name=$1 id=$2 home=$3 groups=$4
  grep -q "^$name:" "$rootfs/etc/group" || echo "$name:x:$id:" >>"$rootfs/etc/group"
  grep -q "^$name:" "$rootfs/etc/gshadow" || echo "$name:!::" >>"$rootfs/etc/gshadow"
  if ! grep -q "^$name:" "$rootfs/etc/passwd"; then
    echo "$name:x:$id:$id::$home:/usr/sbin/nologin" >>"$rootfs/etc/passwd"
    echo "$name:*:1::::::" >>"$rootfs/etc/shadow"
  fi
  local group
  for group in $groups; do
    grep -q "^$group:" "$rootfs/etc/group" || die "group $group missing from the L4T rootfs"
    grep -Eq "^$group:.*[:,]$name(,|\$)" "$rootfs/etc/group" ||
      sed -i -E "s/^($group:[^:]*:[^:]*:)(.+)\$/\1\2,$name/; s/^($group:[^:]*:[^:]*:)\$/\1$name/" \
        "$rootfs/etc/group"
  done
}
add_user appliance 950 /var/lib/appliance "video render"
add_user zlmediakit 951 /var/lib/zlmediakit ""

# Start our units as their [Install] sections say (RAUC itself starts on D-Bus activation).
# L4T's own service confirms every boot (`nvbootctrl verify`); RAUC does that now, once
# appliance-mark-good.service is satisfied.
for unit in "$repo"/systemd/*.service "$repo"/systemd/*.mount; do
  if [ -e "$unit" ] && grep -q '^\[Install\]' "$unit"; then
    systemctl --root="$rootfs" enable "${unit##*/}"
  fi
done
systemctl --root="$rootfs" disable nv-l4t-bootloader-config.service
echo "apply-to-l4t: $rootfs is ready for Linux_for_Tegra's flash tools (ROOTFS_AB=1)"
