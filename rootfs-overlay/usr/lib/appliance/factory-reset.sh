#!/bin/sh
# Factory reset (appliance-factory-reset.service): erase the contents of each DIR, then MARKER.
#
# Usage: factory-reset.sh MARKER DIR...
#
# The directories themselves stay (their services' StateDirectory= owns them); everything in
# them goes, hidden files included. MARKER goes last, after the erasure is on disk, so that a
# power cut in the middle leaves the marker and the reset runs again at the next boot.
set -eu

if [ $# -lt 2 ]; then
	echo "usage: $0 MARKER DIR..." >&2
	exit 64
fi
marker=$1
shift
# Run by hand without a request, it would erase the box: refuse.
if [ ! -e "$marker" ]; then
	echo "$marker does not exist: no factory reset was requested" >&2
	exit 1
fi

for dir in "$@"; do
	[ -d "$dir" ] || continue
	find "$dir" -mindepth 1 -maxdepth 1 ! -path "$marker" -exec rm -rf -- {} +
	echo "factory reset: erased $dir"
done
sync
rm -f -- "$marker"
sync
