# shellcheck shell=bash
# A stand-in for MoonFRP's moonfrp-services.sh, written from the contract in
# shared/docs/moonfrp-integration.md: the original serial functions, which
# mark their output with ORIGINAL so a test can tell who ran, and a
# menu-style caller that uses them the way MoonFRP's menus do.

get_moonfrp_services() {
    echo "ORIGINAL get_moonfrp_services" >&2
    systemctl --user list-units --type=service --all --no-legend 'moonfrp-*' | awk '{print $1}' | sed 's/\.service$//'
}

bulk_service_operation() {
    local op="$1" max="$2"
    shift 2
    echo "ORIGINAL bulk_service_operation $op $max" >&2
    local s fail_count=0
    for s in "$@"; do
        systemctl --user "$op" "$s" || fail_count=$((fail_count + 1))
    done
    return $fail_count
}

bulk_start_services() { echo "ORIGINAL bulk_start_services" >&2; return 0; }
bulk_stop_services() { echo "ORIGINAL bulk_stop_services" >&2; return 0; }
bulk_restart_services() { echo "ORIGINAL bulk_restart_services" >&2; return 0; }
bulk_reload_services() { echo "ORIGINAL bulk_reload_services" >&2; return 0; }
bulk_operation_filtered() { echo "ORIGINAL bulk_operation_filtered" >&2; return 0; }
get_services_by_tag() { echo "ORIGINAL get_services_by_tag" >&2; return 0; }

start_all_services() {
    local services s
    mapfile -t services < <(get_moonfrp_services)
    echo "Starting ${#services[@]} service(s)..."
    for s in "${services[@]}"; do
        if systemctl --user start "$s"; then echo "✓ $s"; else echo "✗ $s"; fi
    done
    echo "ORIGINAL start_all_services"
    return 0
}

stop_all_services() {
    echo "ORIGINAL stop_all_services"
    return 0
}

restart_all_services() {
    stop_all_services
    sleep 2
    start_all_services
}

export -f get_moonfrp_services bulk_service_operation bulk_start_services bulk_stop_services \
    bulk_restart_services bulk_reload_services bulk_operation_filtered get_services_by_tag \
    start_all_services stop_all_services restart_all_services

# The menu's shape: a read -r choice loop calling the functions above.
service_menu() {
    local choice
    while true; do
        echo "Service management: 1) Start all  2) Stop all  3) Restart all  4) Bulk restart  0) Back"
        read -r -p "Choice: " choice || return 0
        case "$choice" in
            1) if ! start_all_services; then echo "Some services failed to start"; fi ;;
            2) if ! stop_all_services; then echo "Some services failed to stop"; fi ;;
            3) if ! restart_all_services; then echo "Some services failed to restart"; fi ;;
            4) bulk_restart_services 10 || echo "bulk restart: $? failed" ;;
            0) return 0 ;;
            *) echo "Invalid choice" ;;
        esac
    done
}
