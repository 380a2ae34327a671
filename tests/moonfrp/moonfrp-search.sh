# shellcheck shell=bash
# The modules are sourced from the script's own directory at run time;
# shellcheck disable=SC1091
# Stand-in for moonfrp-search.sh: sources core, index, services and ui.
source "$(dirname "${BASH_SOURCE[0]}")/moonfrp-core.sh"
source "$(dirname "${BASH_SOURCE[0]}")/moonfrp-index.sh"
source "$(dirname "${BASH_SOURCE[0]}")/moonfrp-services.sh"
source "$(dirname "${BASH_SOURCE[0]}")/moonfrp-ui.sh"
