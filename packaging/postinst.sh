#!/bin/sh
# moonfrp-bulk postinst: when MoonFRP is installed on this host, make its
# menus and `moonfrp service` commands run through moonfrp-bulk. A host
# without MoonFRP is left alone; `moonfrp-bulk integrate` does it later.
set -e
if [ "$1" = configure ] && command -v moonfrp >/dev/null 2>&1; then
    /usr/bin/moonfrp-bulk integrate --shim-dir /usr/local/share/moonfrp-bulk ||
        echo "moonfrp-bulk: could not wire into MoonFRP; run 'moonfrp-bulk integrate' to see why" >&2
fi
exit 0
