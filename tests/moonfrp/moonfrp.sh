#!/bin/bash
# The modules are sourced from the script's own directory at run time;
# shellcheck disable=SC1091
# Stand-in for MoonFRP's moonfrp.sh, written from the facts in
# shared/docs/moonfrp-integration.md: strict mode, then the modules in
# MoonFRP's order, several of which source moonfrp-services.sh again; the
# `service` CLI; and the main menu's Service Management entry.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

source "$SCRIPT_DIR/moonfrp-core.sh"
source "$SCRIPT_DIR/moonfrp-config.sh"
source "$SCRIPT_DIR/moonfrp-index.sh"
source "$SCRIPT_DIR/moonfrp-services.sh"
source "$SCRIPT_DIR/moonfrp-ui.sh"
source "$SCRIPT_DIR/moonfrp-templates.sh"
source "$SCRIPT_DIR/moonfrp-search.sh"
source "$SCRIPT_DIR/moonfrp-optimize.sh"
source "$SCRIPT_DIR/moonfrp-metrics.sh"
source "$SCRIPT_DIR/moonfrp-iac.sh"

# service start|stop|restart [NAME|all] [--tag=K:V]
service_cli() {
    local op="${1:-}" name="" tag="" arg
    shift || true
    for arg in "$@"; do
        case "$arg" in
            --tag=*) tag="${arg#--tag=}" ;;
            *) name="$arg" ;;
        esac
    done
    if [[ -n "$tag" ]]; then
        bulk_operation_filtered "$op" tag "$tag"
    elif [[ -z "$name" || "$name" == all ]]; then
        "${op}_all_services"
    else
        sctl "$op" "$name"
    fi
}

# service bulk --operation=OP [--filter=TYPE:VALUE] [--max-parallel=N] [--dry-run]
service_bulk() {
    local operation="" filter="" max_parallel=10 dry_run=false arg
    local -a services=()
    for arg in "$@"; do
        case "$arg" in
            --operation=*) operation="${arg#--operation=}" ;;
            --filter=*) filter="${arg#--filter=}" ;;
            --max-parallel=*) max_parallel="${arg#--max-parallel=}" ;;
            --dry-run) dry_run=true ;;
            *) log ERROR "Unknown option: $arg"; exit 1 ;;
        esac
    done
    if [[ "$dry_run" == true ]]; then
        mapfile -t services < <(get_moonfrp_services)
        printf '    - %s\n' "${services[@]}"
        exit 0
    fi
    if [[ -n "$filter" ]]; then
        bulk_operation_filtered "$operation" "${filter%%:*}" "${filter#*:}" "$max_parallel"
    else
        mapfile -t services < <(get_moonfrp_services)
        bulk_service_operation "$operation" "$max_parallel" "${services[@]}"
    fi
}

main() {
    case "${1:-}" in
        service)
            shift
            case "${1:-}" in
                start | stop | restart) service_cli "$@" ;;
                bulk) shift; service_bulk "$@" ;;
                *) echo "usage: moonfrp service start|stop|restart|bulk ..." >&2; exit 1 ;;
            esac
            ;;
        "") main_menu ;;
        *) echo "usage: moonfrp [service ...]" >&2; exit 1 ;;
    esac
}

main "$@"
