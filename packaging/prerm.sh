#!/bin/sh
# moonfrp-bulk prerm: on removal, take moonfrp-bulk out of MoonFRP again,
# so that its menus fall back to MoonFRP's own service functions. An
# upgrade keeps it (the new postinst refreshes the shim).
set -e
if [ "$1" = remove ] && [ -x /usr/bin/moonfrp-bulk ]; then
    # Not integrated, or no MoonFRP here: nothing to undo.
    if /usr/bin/moonfrp-bulk integrate --check --shim-dir /usr/local/share/moonfrp-bulk >/dev/null 2>&1; then
        /usr/bin/moonfrp-bulk integrate --undo --shim-dir /usr/local/share/moonfrp-bulk || true
    fi
fi
exit 0
