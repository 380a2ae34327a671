#!/bin/sh
# moonfrp-bulk prerm: on removal, take moonfrp-bulk out of MoonFRP again,
# so that its menus fall back to MoonFRP's own service functions.
set -e
if [ "$1" = remove ] && [ -x /usr/bin/moonfrp-bulk ] && command -v moonfrp >/dev/null 2>&1; then
    /usr/bin/moonfrp-bulk integrate --undo --shim-dir /usr/local/share/moonfrp-bulk || true
fi
exit 0
