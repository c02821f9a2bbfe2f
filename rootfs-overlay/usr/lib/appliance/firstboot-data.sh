#!/bin/sh
# First boot (appliance-firstboot.service): give the data partition its file system.
#
# Usage: firstboot-data.sh DEVICE
#
# DEVICE (/dev/disk/by-partlabel/data on the box) is left alone when it holds any file system or
# other signature blkid knows: only a blank partition is formatted, so a box never loses its data
# to this script. A blank partition is first grown over the free space behind it, when there is
# some (an image written to storage larger than the image), so the box uses all of its storage.
set -eu

if [ $# -ne 1 ]; then
	echo "usage: $0 DEVICE" >&2
	exit 64
fi
dev=$(readlink -f "$1")

# blkid -p answers 2 both for "nothing found" and for a device it cannot open: read the device
# first so that 2 can only mean blank.
if ! dd if="$dev" of=/dev/null bs=4096 count=1 2>/dev/null; then
	echo "cannot read $dev: not formatting it" >&2
	exit 1
fi
set +e
found=$(blkid -p -o export "$dev" 2>&1)
probe=$?
set -e
case $probe in
0 | 2) ;;
*)
	echo "cannot probe $dev (blkid exit $probe): not formatting it" >&2
	exit 1
	;;
esac
# On a partition blkid always reports its GPT entry (PART_ENTRY_*): only a file system, RAID,
# encryption or partition table signature (TYPE or PTTYPE) means content.
if printf '%s\n' "$found" | grep -Eq '^(PT)?TYPE='; then
	echo "$dev already holds a file system or other content: left alone"
	exit 0
fi

# Grows partition DEVICE to the end of the free space behind it. Not a partition (a disk image
# file, a whole disk): nothing to do.
grow() {
	part=$(basename "$1")
	sys=/sys/class/block/$part
	[ -r "$sys/partition" ] || return 0
	number=$(cat "$sys/partition") || return 1
	disk=/dev/$(basename "$(readlink -f "$sys/..")") || return 1
	# An image's GPT keeps its backup header where the image ended; moved to the end of the disk,
	# the space behind it becomes usable.
	if sfdisk --dump "$disk" 2>/dev/null | grep -q '^label: gpt'; then
		sfdisk --quiet --relocate gpt-bak-std "$disk" || return 1
	fi
	# ", +": same start, as large as the free space allows. The disk is in use (the root file
	# system is on it), so the kernel learns the new size from partx rather than a re-read.
	echo ", +" | sfdisk --quiet --no-reread --no-tell-kernel -N "$number" "$disk" || return 1
	partx --update --nr "$number" "$disk" || return 1
}

if ! grow "$dev"; then
	echo "could not grow $dev: formatting it at its current size" >&2
fi
mkfs.ext4 -q -L data "$dev"
echo "$dev formatted: ext4, label data"
