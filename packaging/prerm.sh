#!/bin/sh
# moonfrp-bulk prerm: on removal, take moonfrp-bulk out of MoonFRP again,
# so that its menus fall back to MoonFRP's own service functions. An
# upgrade keeps it (the new postinst refreshes the shim).
set -e
if [ "$1" = remove ]; then
    # The watch first: undoing writes the file it watches.
    if [ -d /run/systemd/system ]; then
        systemctl disable --now moonfrp-bulk-integrate.path >/dev/null 2>&1 || true
    fi
    # Not integrated, or no MoonFRP here: nothing to undo.
    if [ -x /usr/bin/moonfrp-bulk ] &&
        /usr/bin/moonfrp-bulk integrate --check --shim-dir /usr/local/share/moonfrp-bulk >/dev/null 2>&1; then
        /usr/bin/moonfrp-bulk integrate --undo --shim-dir /usr/local/share/moonfrp-bulk || true
    fi
fi
exit 0
