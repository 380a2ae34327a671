#!/bin/sh
# moonfrp-bulk postrm: the watch's unit files are gone; let systemd forget
# them.
set -e
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || true
fi
exit 0
