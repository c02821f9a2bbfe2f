#!/usr/bin/env bash
# Builds a signed RAUC update bundle (verity format) of a root file system image: `just bundle`.
#
# Usage: scripts/bundle.sh [--rootfs IMG] [--out FILE] [--version V] [--compatible C]
#        scripts/bundle.sh --init-pki
#   --rootfs IMG      the root file system image (default: the one Buildroot image in
#                     buildroot/output/<board>/images/rootfs.squashfs)
#   --compatible C    must be the target boxes' RAUC compatible (default, for a Buildroot image:
#                     appliance-<board>; required with --rootfs)
#   --version V       the bundle's version (default: <workspace version>-<git describe>)
#   --out FILE        where to write the bundle (default: <compatible>-<version>.raucb next to
#                     the image)
#   --init-pki        only make sure the development PKI exists and print its keyring (an image
#                     build installs that keyring as /etc/rauc/keyring.pem)
#
# Signing: a development PKI in $BUNDLE_PKI_DIR (default .local/rauc/, git-ignored), made with
# openssl on first use: ca.key.pem and ca.cert.pem (the CA; ca.cert.pem is the keyring images
# built here trust), signing.key.pem and signing.cert.pem (a code-signing certificate the CA
# issued). Bundles signed with it install only on images built with its ca.cert.pem; it is for
# development boxes, never for production ones. Nothing of it is ever committed.
#
# The bundle is checked before it is written to --out: its signature against the keyring, with
# RAUC configured as the box is (rootfs-overlay/etc/rauc/system.conf).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
pki=${BUNDLE_PKI_DIR:-$repo/.local/rauc}
system_conf=$repo/rootfs-overlay/etc/rauc/system.conf

die() {
	echo "bundle: $*" >&2
	exit 1
}

rootfs='' out='' version='' compatible='' init_pki=false
while [[ $# -gt 0 ]]; do
	case $1 in
	--rootfs | --out | --version | --compatible)
		[[ $# -ge 2 ]] || die "$1 needs a value"
		declare "${1#--}=$2"
		shift 2
		;;
	--init-pki)
		init_pki=true
		shift
		;;
	-h | --help)
		sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
		exit 0
		;;
	*) die "unknown argument $1 (see --help)" ;;
	esac
done

for tool in openssl rauc mksquashfs; do
	command -v "$tool" >/dev/null || die "$tool is missing: run \`just setup\`"
done

# The development PKI: made once, never overwritten.
pki_files=(ca.key.pem ca.cert.pem signing.key.pem signing.cert.pem)
init_pki() {
	local present=0 file
	for file in "${pki_files[@]}"; do
		[[ -e $pki/$file ]] && present=$((present + 1))
	done
	if [[ $present -eq ${#pki_files[@]} ]]; then
		return
	fi
	if [[ $present -ne 0 ]]; then
		die "$pki holds only part of a PKI (${pki_files[*]}): complete or remove it"
	fi
	mkdir -p "$pki"
	(
		umask 077
		cd "$pki"
		openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
			-keyout ca.key.pem -out ca.cert.pem -days 3650 -subj "/CN=appliance development CA" \
			-addext "basicConstraints=critical,CA:TRUE" \
			-addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
		openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
			-keyout signing.key.pem -subj "/CN=appliance development bundle signer" 2>/dev/null |
			openssl x509 -req -CA ca.cert.pem -CAkey ca.key.pem -set_serial "0x$(openssl rand -hex 8)" \
				-days 3650 -out signing.cert.pem -extfile <(
					# RAUC checks the purpose (system.conf: check-purpose=codesign).
					printf '%s\n' "basicConstraints=critical,CA:FALSE" \
						"keyUsage=critical,digitalSignature" \
						"extendedKeyUsage=critical,codeSigning" \
						"subjectKeyIdentifier=hash" "authorityKeyIdentifier=keyid"
				) 2>/dev/null
		# The keyring is public: images carry it.
		chmod 0644 ca.cert.pem signing.cert.pem
	)
	echo "bundle: made a development PKI in $pki (for development boxes only)" >&2
}

if $init_pki; then
	init_pki
	echo "$pki/ca.cert.pem"
	exit 0
fi

if [[ -z $rootfs ]]; then
	shopt -s nullglob
	images=("$repo"/buildroot/output/*/images/rootfs.squashfs)
	shopt -u nullglob
	case ${#images[@]} in
	0) die "no --rootfs given and no Buildroot image in buildroot/output/<board>/images/rootfs.squashfs: build the image first, or pass --rootfs IMG --compatible C" ;;
	1) rootfs=${images[0]} ;;
	*) die "several Buildroot images, pick one with --rootfs: ${images[*]}" ;;
	esac
	board=$(basename "$(dirname "$(dirname "$rootfs")")")
	compatible=${compatible:-appliance-$board}
fi
[[ -f $rootfs && -s $rootfs ]] || die "$rootfs is not a non-empty file"
[[ -n $compatible ]] || die "--compatible is required with --rootfs: the target boxes' RAUC compatible (appliance-<board>)"
if [[ -z $version ]]; then
	workspace_version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' "$repo/Cargo.toml")
	described=$(git -C "$repo" describe --always --dirty --tags 2>/dev/null) ||
		die "not a git checkout: pass --version"
	version=$workspace_version-$described
fi
out=${out:-$(dirname "$rootfs")/$compatible-$version.raucb}
init_pki

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/content"
cp --reflink=auto "$rootfs" "$work/content/rootfs.img"
cat >"$work/content/manifest.raucm" <<EOF
[update]
compatible=$compatible
version=$version

[bundle]
format=verity

[image.rootfs]
filename=rootfs.img
EOF
rauc bundle --cert="$pki/signing.cert.pem" --key="$pki/signing.key.pem" \
	"$work/content" "$work/bundle.raucb" >&2

# RAUC as the box runs it: its system.conf with this compatible, its status kept out of /var.
sed -e "s|@APPLIANCE_COMPATIBLE@|$compatible|" -e "s|^data-directory=.*|data-directory=$work/rauc|" \
	"$system_conf" >"$work/system.conf"
rauc --conf="$work/system.conf" --keyring="$pki/ca.cert.pem" info "$work/bundle.raucb" >&2 ||
	die "the bundle does not verify against $pki/ca.cert.pem"

mkdir -p "$(dirname "$out")"
mv "$work/bundle.raucb" "$out"
echo "$out"
