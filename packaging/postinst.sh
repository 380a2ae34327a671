#!/bin/sh
# moonfrp-bulk postinst: wire moonfrp-bulk into MoonFRP's menus and
# `moonfrp service` commands when MoonFRP is installed here.
#   fresh install: integrate if MoonFRP is there (integrate --check: 1).
#   upgrade: refresh the shim only where it was integrated (--check: 0),
#     so that an operator's `integrate --undo` stays undone.
#   abort-remove: prerm undid it; put it back.
# A host without MoonFRP (--check: 2) is left alone. integrate turns on
# the watch (moonfrp-bulk-integrate.path) that wires moonfrp-bulk in again
# after a MoonFRP upgrade; where it is not integrated, the watch stays off.
set -e
bin=/usr/bin/moonfrp-bulk
# The watch's unit files are new or changed: integrate enables the watch.
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || true
fi
shim=/usr/local/share/moonfrp-bulk
integrate() {
    "$bin" integrate --shim-dir "$shim" ||
        echo "moonfrp-bulk: could not wire into MoonFRP; run 'moonfrp-bulk integrate' to see why" >&2
}
state=0
"$bin" integrate --check --shim-dir "$shim" >/dev/null 2>&1 || state=$?
case "$1" in
configure)
    if [ -z "${2:-}" ] && [ "$state" = 1 ]; then
        integrate
    elif [ -n "${2:-}" ] && [ "$state" = 0 ]; then
        integrate
    fi
    ;;
abort-remove)
    [ "$state" = 1 ] && integrate
    ;;
esac
exit 0
