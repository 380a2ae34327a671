# shellcheck shell=bash
# The modules are sourced from the script's own directory at run time;
# shellcheck disable=SC1091
# Stand-in for moonfrp-ui.sh: like MoonFRP's, it sources core, config,
# index and services again when it loads, which redefines every service
# function; and it holds the main menu.
source "$(dirname "${BASH_SOURCE[0]}")/moonfrp-core.sh"
source "$(dirname "${BASH_SOURCE[0]}")/moonfrp-config.sh"
source "$(dirname "${BASH_SOURCE[0]}")/moonfrp-index.sh"
source "$(dirname "${BASH_SOURCE[0]}")/moonfrp-services.sh"

main_menu() {
    local choice
    while true; do
        echo "MoonFRP main menu: 1) Quick Setup  2) Service Management  0) Exit"
        read -r -p "Enter your choice: " choice || return 0
        case "$choice" in
            2) service_management_menu ;;
            0) echo "Goodbye"; return 0 ;;
            *) echo "Invalid choice" ;;
        esac
    done
}
