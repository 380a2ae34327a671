#!/usr/bin/env bats
# The bash shim against a real systemd user manager. Driven by
# tests/shim_test.go, which starts the sandbox with moonfrp-server and
# moonfrp-client-1..5 and sets SHIM, SERVICES_SH, MOONFRP_BULK_BIN,
# MOONFRP_BULK_ARGS=--user, MOONFRP_DATA_DIR and XDG_RUNTIME_DIR.
#
# The callers below are bash -c scripts in single quotes on purpose: they
# expand SHIM and friends themselves. bats assigns $stderr in run.
# shellcheck disable=SC2016,SC2154

bats_require_minimum_version 1.5.0

# bats runs each test's commands with set -e; run with bash -c where the
# caller's own options are what is being tested.
caller() {
    bash -c "source \"\$SERVICES_SH\"; source \"\$SHIM\"; $1"
}

@test "get_moonfrp_services lists every service, without .service" {
    run --separate-stderr caller 'get_moonfrp_services'
    [ "$status" -eq 0 ]
    [ "$output" = "$(printf '%s\n' moonfrp-client-1 moonfrp-client-2 moonfrp-client-3 moonfrp-client-4 moonfrp-client-5 moonfrp-server)" ]
    [[ "$stderr" != *ORIGINAL* ]]
}

@test "bulk_service_operation OP MAX SERVICE... (MoonFRP's callers)" {
    run --separate-stderr caller 'bulk_service_operation restart 2 moonfrp-client-1 moonfrp-client-2'
    [ "$status" -eq 0 ]
    [ -z "$output" ]
    [[ "$stderr" == *"up to 2 at a time"* ]]
    [[ "$stderr" == *"Progress: 2/2 services..."* ]]
    [[ "$stderr" == *"Bulk restart complete: 2 succeeded, 0 failed"* ]]
}

@test "bulk_service_operation OP 0 SERVICE... and OP '' SERVICE...: MoonFRP's MAX position, the default" {
    run --separate-stderr caller 'bulk_service_operation restart 0 moonfrp-client-1'
    [ "$status" -eq 0 ]
    [[ "$stderr" == *"Restarting 1 service(s), up to 10 at a time"* ]]
    [[ "$stderr" == *"Bulk restart complete: 1 succeeded, 0 failed"* ]]
    run --separate-stderr caller 'bulk_service_operation restart "" moonfrp-client-2'
    [ "$status" -eq 0 ]
    [[ "$stderr" == *"Bulk restart complete: 1 succeeded, 0 failed"* ]]
}

@test "bulk_service_operation OP SERVICE... (the story's form)" {
    run --separate-stderr caller 'bulk_service_operation stop moonfrp-client-3'
    [ "$status" -eq 0 ]
    [[ "$stderr" == *"Bulk stop complete: 1 succeeded, 0 failed"* ]]
    [ "$(systemctl --user is-active moonfrp-client-3)" = inactive ]
    caller 'bulk_service_operation start moonfrp-client-3'
    [ "$(systemctl --user is-active moonfrp-client-3)" = active ]
}

@test "returns the number of failed services: 0, 3, and 100 for 300" {
    run caller 'bulk_service_operation restart 5 moonfrp-client-1'
    [ "$status" -eq 0 ]
    [[ "$output" == *"Bulk restart complete: 1 succeeded, 0 failed"* ]]
    run caller 'bulk_service_operation restart 5 moonfrp-client-1 moonfrp-nosuch-1 moonfrp-nosuch-2 moonfrp-nosuch-3'
    [ "$status" -eq 3 ]
    [[ "$output" == *"Bulk restart complete: 1 succeeded, 3 failed"* ]]
    [[ "$output" == *"  - moonfrp-nosuch-2: "*"not found"* ]]

    local -a many=()
    local i
    for i in $(seq 1 300); do many+=("moonfrp-nosuch-$i"); done
    run caller "bulk_service_operation start 50 ${many[*]}"
    [ "$status" -eq 100 ]
    [[ "$output" == *"Bulk start complete: 0 succeeded, 300 failed"* ]]
}

@test "MOONFRP_BULK_MAX_FAIL, even unexported, halts the run; not started ones count in the return" {
    run caller 'MOONFRP_BULK_MAX_FAIL=1; bulk_service_operation restart 1 moonfrp-nosuch-1 moonfrp-nosuch-2 moonfrp-nosuch-3 moonfrp-client-1'
    [ "$status" -eq 4 ]
    [[ "$output" == *"Bulk restart halted: 0 succeeded, 1 failed, 3 not started (failure limit of 1 reached) in "* ]]
    run caller 'MOONFRP_BULK_MAX_FAIL=none; bulk_restart_services'
    [ "$status" -eq 125 ]
    [[ "$output" == *"--max-fail: must be a number of units"* ]]
}

@test "an empty service list warns and returns 0" {
    run --separate-stderr caller 'bulk_service_operation restart 10'
    [ "$status" -eq 0 ]
    [[ "$stderr" == *"No services provided for bulk operation"* ]]
    [[ "$stderr" != *"Bulk restart complete"* ]]
}

@test "bulk_{start,stop,restart,reload}_services act on every service" {
    run --separate-stderr caller 'bulk_restart_services 3'
    [ "$status" -eq 0 ]
    [[ "$stderr" == *"Restarting 6 service(s), up to 3 at a time"* ]]
    [[ "$stderr" == *"Bulk restart complete: 6 succeeded, 0 failed"* ]]
    # The stand-in units run "frpc -c" with configs that do not exist: frp
    # units that frp cannot reload in place. They are left running, never
    # signalled, and reported; nothing failed.
    run --separate-stderr caller 'bulk_reload_services'
    [ "$status" -eq 0 ]
    [[ "$stderr" == *"Bulk reload complete: 0 succeeded, 0 failed, 6 need a restart"* ]]
    run --separate-stderr caller 'bulk_stop_services'
    [ "$status" -eq 0 ]
    [ "$(systemctl --user is-active moonfrp-server)" = inactive ]
    run --separate-stderr caller 'bulk_start_services'
    [ "$status" -eq 0 ]
    [[ "$stderr" == *"up to 10 at a time"* ]]
    [ "$(systemctl --user is-active moonfrp-server)" = active ]
}

@test "MOONFRP_MAX_PARALLEL sets the default parallelism" {
    run --separate-stderr caller 'MOONFRP_MAX_PARALLEL=4 bulk_restart_services'
    [ "$status" -eq 0 ]
    [[ "$stderr" == *"up to 4 at a time"* ]]
}

@test "bulk_operation_filtered: name and status work, a bad TYPE is a clear error" {
    run --separate-stderr caller 'bulk_operation_filtered restart name moonfrp-client-[12] 5'
    [ "$status" -eq 0 ]
    [[ "$stderr" == *"Bulk restart complete: 2 succeeded, 0 failed"* ]]
    run --separate-stderr caller 'bulk_operation_filtered restart status active'
    [ "$status" -eq 0 ]
    [[ "$stderr" == *"Bulk restart complete: 6 succeeded, 0 failed"* ]]
    run --separate-stderr caller 'bulk_operation_filtered restart colour blue'
    [ "$status" -ne 0 ]
    [[ "$stderr" == *"unknown filter type 'colour'; use tag, status or name"* ]]
    run --separate-stderr caller 'bulk_operation_filtered restart status sleeping'
    [ "$status" -eq 125 ]
    [[ "$stderr" == *'invalid filter "status:sleeping"'* ]]
}

@test "get_services_by_tag and tag filters read MoonFRP's config index" {
    run --separate-stderr caller 'get_services_by_tag env:prod'
    [ "$status" -eq 0 ]
    [ "$output" = "$(printf '%s\n' moonfrp-client-1 moonfrp-client-3 moonfrp-client-5)" ]
    run --separate-stderr caller 'get_services_by_tag region'
    [ "$output" = "moonfrp-client-5" ]
    run --separate-stderr caller 'bulk_operation_filtered restart tag env:prod'
    [ "$status" -eq 0 ]
    [[ "$stderr" == *"Bulk restart complete: 3 succeeded, 0 failed"* ]]
}

@test "works under set -euo pipefail and leaves options, traps, IFS and cwd alone" {
    run bash -c '
        set -euo pipefail
        source "$SERVICES_SH"
        trap "echo EXIT-trap-fired" EXIT
        IFS=:
        cd /tmp
        before="$(set -o) $(shopt -p) $(trap -p) [$IFS] $PWD"
        source "$SHIM"
        bulk_restart_services 5
        if ! bulk_service_operation restart 5 moonfrp-client-1 moonfrp-nosuch; then echo "failure noticed"; fi
        get_moonfrp_services >/dev/null
        after="$(set -o) $(shopt -p) $(trap -p) [$IFS] $PWD"
        [ "$before" = "$after" ] && echo "state unchanged"
        echo "reached the end"'
    [ "$status" -eq 0 ]
    [[ "$output" == *"failure noticed"* ]]
    [[ "$output" == *"state unchanged"* ]]
    [[ "$output" == *"reached the end"* ]]
    [[ "$output" == *"EXIT-trap-fired"* ]]
}

@test "works under set +e; failures and could-not-run never share a return value" {
    run bash -c 'set +e; source "$SERVICES_SH"; source "$SHIM"
        bulk_service_operation restart 5 moonfrp-nosuch-a moonfrp-nosuch-b 2>/dev/null; echo "rc=$?"'
    [ "$output" = "rc=2" ] # two services failed
    run bash -c 'set +e; source "$SERVICES_SH"; source "$SHIM"
        bulk_operation_filtered restart status sleeping 2>/dev/null; echo "rc=$?"'
    [ "$output" = "rc=125" ] # bad arguments
    run bash -c 'set +e; source "$SERVICES_SH"; source "$SHIM"
        MOONFRP_SYSTEMCTL=/bin/false bulk_restart_services 2>/dev/null; echo "rc=$?"'
    [ "$output" = "rc=126" ] # the manager could not be used
}

@test "readonly MoonFRP globals do not break sourcing or calls" {
    run bash -c 'set -euo pipefail
        readonly FRP_DIR=/opt/frp CONFIG_DIR=/etc/frp LOG_DIR=/var/log/frp DATA_DIR=/opt/moonfrp/data
        readonly SERVER_SERVICE=moonfrp-server CLIENT_SERVICE_PREFIX=moonfrp-client
        readonly MOONFRP_INSTALL_DIR=/opt/frp MOONFRP_CONFIG_DIR=/etc/frp MOONFRP_LOG_DIR=/var/log/frp
        readonly MOONFRP_DATA_DIR MOONFRP_LOG_FORMAT=text
        source "$SERVICES_SH"; source "$SHIM"
        bulk_service_operation restart 2 moonfrp-client-1 2>/dev/null
        get_moonfrp_services | sed -n 1p # reads it all: no SIGPIPE under pipefail
        echo done'
    [ "$status" -eq 0 ]
    [ "${lines[0]}" = "moonfrp-client-1" ]
    [ "${lines[1]}" = "done" ]
}

@test "the binary missing: a clear error from every function, never silence" {
    local dir
    dir=$(mktemp -d)
    cp "$SHIM" "$dir/moonfrp-bulk.sh"
    local fn
    for fn in get_moonfrp_services "bulk_service_operation restart 1 moonfrp-client-1" bulk_start_services \
        bulk_stop_services bulk_restart_services bulk_reload_services "bulk_operation_filtered restart name x" \
        "get_services_by_tag env" start_all_services stop_all_services restart_all_services; do
        run -127 --separate-stderr env -u MOONFRP_BULK_BIN PATH=/usr/bin:/bin bash -c "source \"\$SERVICES_SH\"; source \"$dir/moonfrp-bulk.sh\"; $fn"
        [ "$status" -ne 0 ]
        [[ "$stderr" == *"moonfrp-bulk: binary not found; install it"* ]]
        [[ "$stderr" != *ORIGINAL* ]]
    done
    rm -rf "$dir"
}

@test "the binary missing, and a caller's function named moonfrp-bulk: still the install hint" {
    local dir
    dir=$(mktemp -d)
    cp "$SHIM" "$dir/moonfrp-bulk.sh"
    run -127 --separate-stderr env -u MOONFRP_BULK_BIN PATH=/usr/bin:/bin bash -c "moonfrp-bulk() { echo CALLER; }; source \"\$SERVICES_SH\"; source \"$dir/moonfrp-bulk.sh\"; bulk_restart_services"
    [ "$status" -eq 127 ]
    [[ "$stderr" == *"moonfrp-bulk: binary not found; install it"* ]]
    [[ "$output" != *CALLER* ]]
    rm -rf "$dir"
}

@test "MOONFRP_BULK_BIN pointing at a non-executable file is an error" {
    local f
    f=$(mktemp)
    run -127 --separate-stderr env MOONFRP_BULK_BIN="$f" bash -c 'source "$SERVICES_SH"; source "$SHIM"; bulk_restart_services'
    [ "$status" -eq 127 ]
    [[ "$stderr" == *"MOONFRP_BULK_BIN=$f is not an executable file"* ]]
    rm -f "$f"
}

@test "sourcing twice is harmless; sourcing first warns" {
    run --separate-stderr bash -c 'source "$SERVICES_SH"; source "$SHIM"; source "$SHIM"; bulk_service_operation restart 2 moonfrp-client-2'
    [ "$status" -eq 0 ]
    [[ "$stderr" != *warning* ]]
    [[ "$stderr" == *"Bulk restart complete: 1 succeeded"* ]]
    run --separate-stderr bash -c 'source "$SHIM"'
    [[ "$stderr" == *"source it after moonfrp-services.sh"* ]]
}

@test "a menu-style caller now runs through the binary" {
    run bash -c 'source "$SERVICES_SH"; source "$SHIM"; printf "4\n3\n0\n" | service_menu 2>&1'
    [ "$status" -eq 0 ]
    [[ "$output" != *ORIGINAL* ]]
    [[ "$output" == *"Restarting 6 service(s), up to 10 at a time"* ]]
    [ "$(grep -c 'Bulk restart complete: 6 succeeded, 0 failed' <<<"$output")" -eq 2 ]
}

@test "start/stop/restart_all_services: one parallel operation each, failures returned" {
    run --separate-stderr bash -c 'set -euo pipefail; source "$SERVICES_SH"; source "$SHIM"
        stop_all_services; echo "stopped: $(systemctl --user is-active moonfrp-server)"
        start_all_services; echo "started: $(systemctl --user is-active moonfrp-server)"
        restart_all_services; echo restarted'
    [ "$status" -eq 0 ]
    [ "${lines[0]}" = "stopped: inactive" ]
    [ "${lines[1]}" = "started: active" ]
    [ "${lines[2]}" = "restarted" ]
    [[ "$stderr" == *"Bulk stop complete: 6 succeeded, 0 failed"* ]]
    [[ "$stderr" == *"Bulk restart complete: 6 succeeded, 0 failed"* ]]
    [[ "$stderr" != *ORIGINAL* ]]
}

@test "MOONFRP_LOG_FORMAT=json keeps stdout clean and logs JSON lines on stderr" {
    run --separate-stderr bash -c 'source "$SERVICES_SH"; source "$SHIM"; MOONFRP_LOG_FORMAT=json bulk_service_operation restart 2 moonfrp-client-4'
    [ "$status" -eq 0 ]
    [ -z "$output" ]
    [[ "$stderr" == *'{"schema_version":2,"event":"summary"'* ]]
}

@test "the bulk subcommand takes moonfrp service bulk's flags" {
    run --separate-stderr "$MOONFRP_BULK_BIN" --user bulk --operation=restart --filter=name:moonfrp-client-1 --max-parallel=3 --dry-run
    [ "$status" -eq 0 ]
    [[ "$output" == *"Dry run: would restart 1 service(s) on the user manager, up to 3 at a time"* ]]
    [[ "$output" == *"  moonfrp-client-1"* ]]
    run --separate-stderr "$MOONFRP_BULK_BIN" --user bulk --operation=restart --max-parallel=many
    [ "$status" -eq 2 ]
    [[ "$stderr" == *"--max-parallel: must be a whole number from 1 to 1000"* ]]
}

@test "in a child shell the shim never runs a moonfrp-bulk from the caller's working directory" {
    local dir
    dir=$(mktemp -d)
    printf '#!/bin/sh\necho PLANTED\n' >"$dir/moonfrp-bulk"
    chmod +x "$dir/moonfrp-bulk"
    run --separate-stderr bash -c 'source "$SERVICES_SH"; source "$SHIM"; unset MOONFRP_BULK_BIN; cd "$1" && bash -c get_moonfrp_services' _ "$dir"
    rm -rf "$dir"
    [ "$status" -eq 127 ]
    [[ "$output$stderr" != *PLANTED* ]]
    [[ "$stderr" == *"binary not found"* ]]
}
