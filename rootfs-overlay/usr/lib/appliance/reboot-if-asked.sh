#!/bin/sh
# ExecStopPost of applianced.service, run as root (`+`): the daemon has no privilege to reboot
# the box, so when an admin (POST /api/v1/system/reboot) or the cloud (`reboot` command) asks
# for one it stops in order and exits with 76, and this reboots. systemd passes the daemon's
# exit in EXIT_CODE/EXIT_STATUS; any other ending (a stop, a crash, a restart) does nothing here.
set -eu

if [ "${EXIT_CODE:-}" = exited ] && [ "${EXIT_STATUS:-}" = 76 ]; then
    echo "applianced asked for a reboot"
    exec systemctl reboot --no-block
fi
