# shellcheck shell=bash
# Stand-in for MoonFRP's moonfrp-services.sh: the serial originals, whose
# output is marked SERIAL so that a test can tell who ran, and the service
# management menu (options 1-3 call the *_all_services functions).

# MoonFRP runs systemctl against the system manager; in the sandbox the
# stand-in follows moonfrp-bulk to the user manager (MOONFRP_BULK_ARGS).
sctl() {
    if [[ "${MOONFRP_BULK_ARGS:-}" == *--user* ]]; then
        systemctl --user "$@"
    else
        systemctl "$@"
    fi
}

get_moonfrp_services() {
    sctl list-units --type=service --all --plain --no-legend 'moonfrp-*' | awk '{print $1}' | sed 's/\.service$//'
}

bulk_service_operation() {
    local op="$1" max="$2" s fail_count=0
    shift 2
    echo "SERIAL bulk_service_operation $op $max"
    for s in "$@"; do
        sctl "$op" "$s" || fail_count=$((fail_count + 1))
    done
    return $fail_count
}

bulk_start_services() { echo "SERIAL bulk_start_services"; }
bulk_stop_services() { echo "SERIAL bulk_stop_services"; }
bulk_restart_services() { echo "SERIAL bulk_restart_services"; }
bulk_reload_services() { echo "SERIAL bulk_reload_services"; }
bulk_operation_filtered() { echo "SERIAL bulk_operation_filtered $*"; }
get_services_by_tag() { echo "SERIAL get_services_by_tag $*"; }

start_all_services() {
    local s
    local -a services=()
    mapfile -t services < <(get_moonfrp_services)
    echo "Starting ${#services[@]} service(s)..."
    for s in "${services[@]}"; do
        if sctl start "$s"; then echo "  ✓ $s"; else echo "  ✗ $s"; fi
    done
    echo "SERIAL start_all_services done"
    return 0
}

stop_all_services() {
    local s
    local -a services=()
    mapfile -t services < <(get_moonfrp_services | sort -r)
    echo "Stopping ${#services[@]} service(s)..."
    for s in "${services[@]}"; do
        if sctl stop "$s"; then echo "  ✓ $s"; else echo "  ✗ $s"; fi
    done
    echo "SERIAL stop_all_services done"
    return 0
}

restart_all_services() {
    echo "Restarting all MoonFRP services..."
    stop_all_services
    sleep 2
    start_all_services
}

service_management_menu() {
    local choice
    while true; do
        echo "MoonFRP Services: 1) Start All Services  2) Stop All Services  3) Restart All Services  0) Back"
        read -r -p "Enter your choice: " choice || return 0
        case "$choice" in
            1) if ! start_all_services; then log WARN "Start operation reported failures. Review service logs for details."; fi ;;
            2) if ! stop_all_services; then log WARN "Stop operation reported failures. Check service status for details."; fi ;;
            3) if ! restart_all_services; then log WARN "Restart operation reported failures. Review service logs for more information."; fi ;;
            0) return 0 ;;
            *) echo "Invalid choice"; continue ;;
        esac
        echo
        read -r -p "Press Enter to continue..." _ || return 0
    done
}

export -f get_moonfrp_services bulk_service_operation bulk_start_services bulk_stop_services \
    bulk_restart_services bulk_reload_services bulk_operation_filtered start_all_services \
    stop_all_services restart_all_services
