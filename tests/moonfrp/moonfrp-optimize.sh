# shellcheck shell=bash
# The modules are sourced from the script's own directory at run time;
# shellcheck disable=SC1091
# Stand-in for moonfrp-optimize.sh: sources core and ui (and so services).
source "$(dirname "${BASH_SOURCE[0]}")/moonfrp-core.sh"
source "$(dirname "${BASH_SOURCE[0]}")/moonfrp-ui.sh"
