#!/bin/sh
# ExecStartPre of zlmediakit.service: MediaServer's configuration with this box's API secret.
#
# Usage: zlmediakit-config.sh TEMPLATE
#
# TEMPLATE (/etc/zlmediakit/config.ini, on the read-only root) holds no secret. The secret is made
# once per box (32 random bytes, hex) and kept in $STATE_DIRECTORY/api-secret, mode 0640: the
# daemon (group zlmediakit) reads it there to call the API. A factory reset erases it, and the next
# start makes a new one. $RUNTIME_DIRECTORY/config.ini is TEMPLATE with the secret added to its
# [api] section, and to [hook] as admin_params (URL parameters that skip the play and publish
# hooks: ZLMediaKit's default there is the well-known default secret). It is rendered at every
# start (MediaServer's setServerConfig writes there too; those changes last until the next start).
set -eu

if [ $# -ne 1 ]; then
	echo "usage: $0 TEMPLATE" >&2
	exit 64
fi
template=$1
state=${STATE_DIRECTORY:?is set by systemd from StateDirectory=}
runtime=${RUNTIME_DIRECTORY:?is set by systemd from RuntimeDirectory=}
secret_file=$state/api-secret

if grep -Eq '^[[:space:]]*(secret|admin_params)[[:space:]]*=' "$template"; then
	echo "$template sets a secret: secrets are made per box, never shipped" >&2
	exit 1
fi

if ! grep -qx '[0-9a-f]\{64\}' "$secret_file" 2>/dev/null; then
	# A temporary name first: a power cut leaves no secret or a whole one, never half of one.
	head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$secret_file.tmp"
	chmod 0640 "$secret_file.tmp"
	sync
	mv "$secret_file.tmp" "$secret_file"
	sync
fi
secret=$(cat "$secret_file")

awk -v secret="$secret" '
	{ print }
	/^\[api\][[:space:]]*$/ { print "secret=" secret; api = 1 }
	/^\[hook\][[:space:]]*$/ { print "admin_params=secret=" secret; hook = 1 }
	END { if (!api || !hook) exit 1 }
' "$template" >"$runtime/config.ini.tmp" || {
	echo "$template needs an [api] and a [hook] section to put the secret in" >&2
	exit 1
}
chmod 0600 "$runtime/config.ini.tmp"
mv "$runtime/config.ini.tmp" "$runtime/config.ini"
