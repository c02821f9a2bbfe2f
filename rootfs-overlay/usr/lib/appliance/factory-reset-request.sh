#!/bin/sh
# Factory reset from a reset button. The board's button handler (for example a gpio-keys
# KEY_RESTART held for ten seconds) runs this as root. It does what the API's factory reset does:
# with the daemon stopped, it writes the marker; starting the daemon pulls in
# appliance-factory-reset.service, which erases the data before the daemon and the media server
# start again.
#
# It waits for the daemon to stop (up to its TimeoutStopSec, 30 s): a handler that must return
# at once runs it as `systemd-run --no-block /usr/lib/appliance/factory-reset-request.sh`.
set -eu

systemctl stop applianced.service
# The daemon's StateDirectory= gives the directory back to its user at the next start.
# The daemon's own request: writes the marker durably (fsync of file and directory).
applianced factory-reset --config /etc/appliance/appliance.toml
systemctl start --no-block applianced.service
