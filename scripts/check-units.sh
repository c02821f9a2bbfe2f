#!/usr/bin/env bash
# Checks the firmware's systemd units as the image loads them: `systemd-analyze verify` on every
# unit, and `systemd-analyze security --offline` on every service, printing each exposure and
# failing when a network-facing service goes above its limit (below). Each board's drop-ins
# (systemd/boards/<board>/) are checked applied to the units they extend.
#
# Usage: scripts/check-units.sh [--units DIR] [--overlay DIR]
#   --units DIR    the units to check (default: systemd/)
#   --overlay DIR  the root file system overlay (default: rootfs-overlay/)
#
# How: the units are checked inside a scratch root (`--root=`), never against this machine's
# own /usr/bin. It holds this machine's systemd units (the targets and services the image's
# systemd ships too, such as sysinit.target and systemd-fsck@.service), ours, the overlay (so
# the overlay's scripts the units run must exist under the path the unit names), and stubs for
# the executables other packages of the image install (list below). `verify` then fails on a
# mistyped ExecStart= path. It reports unknown keys and bad values as warnings with exit status
# 0, so any output from it counts as a failure here.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
units=$repo/systemd
overlay=$repo/rootfs-overlay
while [[ $# -gt 0 ]]; do
	case $1 in
	--units)
		units=$2
		shift 2
		;;
	--overlay)
		overlay=$2
		shift 2
		;;
	-h | --help)
		sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
		exit 0
		;;
	*)
		echo "check-units: unknown argument $1 (see --help)" >&2
		exit 64
		;;
	esac
done

# Highest `systemd-analyze security` exposure, in tenths (its --threshold unit: 25 is 2.5), for
# the services that face the network. Other services are printed, not judged.
declare -A max_exposure=(
	[applianced.service]=25
	[zlmediakit.service]=25
)

# Executables the units run that other packages of the image install.
package_executables=(
	/usr/bin/applianced
	/usr/bin/MediaServer
	/usr/bin/rauc
	/usr/bin/systemctl
)

# Where this machine's systemd keeps its own units (both layouts of /usr).
host_units=/usr/lib/systemd/system
[[ -d $host_units ]] || host_units=/lib/systemd/system

if ! command -v systemd-analyze >/dev/null; then
	echo "check-units: systemd-analyze is missing (Debian: apt-get install systemd)" >&2
	exit 1
fi
for dir in "$units" "$overlay" "$host_units"; do
	if [[ ! -d $dir ]]; then
		echo "check-units: $dir is not a directory" >&2
		exit 1
	fi
done

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
system=$root/usr/lib/systemd/system

# A merged /usr, as the image has: absolute links such as /lib/systemd/... resolve inside it.
mkdir -p "$root/usr/lib/systemd" "$root/usr/bin" "$root/usr/sbin"
ln -s usr/lib "$root/lib"
ln -s usr/bin "$root/bin"
ln -s usr/sbin "$root/sbin"
cp -a "$host_units" "$system"
cp -a "$overlay/." "$root/"
for exe in "${package_executables[@]}"; do
	if [[ ! -e $root$exe ]]; then
		printf '#!/bin/sh\nexit 0\n' >"$root$exe"
		chmod 0755 "$root$exe"
	fi
done
# RAUC's own unit (as RAUC installs it), for our drop-in to extend when this machine has none.
if [[ ! -e $system/rauc.service ]]; then
	cat >"$system/rauc.service" <<'EOF'
[Unit]
Description=Rauc Update Service

[Service]
Type=dbus
BusName=de.pengutronix.rauc
ExecStart=/usr/bin/rauc --mount=/run/rauc service
RuntimeDirectory=rauc
EOF
fi

# Our units and drop-in directories, where the image's packages install them.
names=()
extended=()
for path in "$units"/*; do
	name=$(basename "$path")
	case $name in
	*.service | *.mount | *.socket | *.timer | *.target | *.path)
		cp "$path" "$system/$name"
		names+=("$name")
		;;
	*.d)
		cp -r "$path" "$system/$name"
		extended+=("${name%.d}")
		;;
	esac
done
if [[ ${#names[@]} -eq 0 ]]; then
	echo "check-units: no units in $units" >&2
	exit 1
fi

problems=()

# verify NAME...: verify must run clean.
verify() {
	local out
	if ! out=$(systemd-analyze verify --root="$root" --man=no --generators=no "$@" 2>&1) ||
		[[ -n $out ]]; then
		problems+=("systemd-analyze verify $*: ${out:-failed}")
	fi
}

# security NAME [LABEL]: prints the exposure; judges it when NAME has a limit.
security() {
	local name=$1 label=${2:-$1} limit=${max_exposure[$1]:-100} out status=0 level
	out=$(systemd-analyze security --offline=true --root="$root" --threshold="$limit" "$name" 2>&1) ||
		status=$?
	level=$(sed -n "s/^→ Overall exposure level for $name: \([0-9.]*\).*/\1/p" <<<"$out")
	if [[ -z $level ]]; then
		problems+=("systemd-analyze security $label printed no exposure level: $out")
		return
	fi
	if [[ -v max_exposure[$name] ]]; then
		local max=$((limit / 10)).$((limit % 10))
		printf '%-52s exposure %s (limit %s)\n' "$label" "$level" "$max"
		if [[ $status -ne 0 ]]; then
			problems+=("$label: exposure $level is above the limit of $max")
		fi
	else
		printf '%-52s exposure %s\n' "$label" "$level"
	fi
}

verify "${names[@]}" "${extended[@]}"
for name in "${names[@]}"; do
	[[ $name == *.service ]] && security "$name"
done

# Each board's drop-ins, applied to the units they extend, one board at a time.
for board in "$units"/boards/*/; do
	[[ -d $board ]] || continue
	board_name=$(basename "$board")
	for dropin in "$board"*.d; do
		[[ -d $dropin ]] || continue
		unit=$(basename "$dropin" .d)
		target=$system/$unit.d
		mkdir -p "$target"
		added=()
		for conf in "$dropin"/*.conf; do
			cp "$conf" "$target/"
			added+=("$target/$(basename "$conf")")
		done
		verify "$unit"
		[[ $unit == *.service ]] && security "$unit" "$unit + boards/$board_name"
		rm -f "${added[@]}"
	done
done

if [[ ${#problems[@]} -gt 0 ]]; then
	printf 'check-units: %s\n' "${problems[@]}" >&2
	exit 1
fi
echo "check-units: ${#names[@]} units OK"
