#!/bin/bash
# A stand-in MoonFRP menu session, as moonfrp.sh runs one: strict mode, the
# services module, then the shim, then the service menu's read loop.
set -euo pipefail
# shellcheck source=tests/bash/moonfrp-services.sh
source "$SERVICES_SH"
# shellcheck source=bash/moonfrp-bulk.sh
source "$SHIM"
service_menu
echo "menu closed"
