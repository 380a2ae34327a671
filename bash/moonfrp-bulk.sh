# shellcheck shell=bash
#
# moonfrp-bulk.sh: run MoonFRP's bulk service functions through moonfrp-bulk.
#
# In a MoonFRP install, `moonfrp-bulk integrate` sources it at the end of
# moonfrp-services.sh, so that it survives MoonFRP loading that file again
# and again. Elsewhere, source it after moonfrp-services.sh (by an
# absolute path, if the binary is to be found beside it):
#
#     source /usr/local/bin/moonfrp-services.sh
#     source /usr/local/share/moonfrp-bulk/moonfrp-bulk.sh
#
# It redefines get_moonfrp_services, bulk_service_operation,
# bulk_{start,stop,restart,reload}_services, bulk_operation_filtered,
# get_services_by_tag and {start,stop,restart}_all_services, with the same
# arguments, output and return values, so menus and `moonfrp service bulk`
# need no change. It assigns no global variable (MoonFRP declares many of
# them readonly), and leaves the caller's options, traps, IFS and working
# directory alone.
#
# Settings, all optional:
#   MOONFRP_BULK_BIN      the binary (default: moonfrp-bulk on PATH, else the
#                         one beside this file, else ../bin/moonfrp-bulk,
#                         when this file was sourced by an absolute path)
#   MOONFRP_BULK_ARGS     extra arguments for every call, e.g. "--user"
#   MOONFRP_MAX_PARALLEL  default parallelism (the binary's default: 10)
#   MOONFRP_BULK_MAX_FAIL stop launching after N (or N%) failed services,
#                         as --max-fail; the rest count as not started
#   MOONFRP_BULK_CANARY   act on N services of each phase first and go on
#                         only if all of them succeed, as --canary
#   MOONFRP_LOG_DIR, MOONFRP_DATA_DIR, MOONFRP_LOG_FORMAT as in MoonFRP
#   (MoonFRP's own LOG_DIR and DATA_DIR count too); unset ones take the
#   binary's defaults, which are defined there only.

# The originals come from moonfrp-services.sh; if they are not there yet,
# sourcing that file later would put them back over ours.
if ! declare -F __moonfrp_bulk_shim >/dev/null && ! declare -F bulk_service_operation >/dev/null; then
    printf '%s\n' "moonfrp-bulk.sh: warning: source it after moonfrp-services.sh, or the original bulk functions will replace these" >&2
fi

# Marks the shim as loaded, so a second source is quiet and harmless.
__moonfrp_bulk_shim() { :; }

# Prints the moonfrp-bulk binary to use, or one error line and returns 127.
__moonfrp_bulk_bin() {
    local __mfb_here __mfb_candidate
    if [[ -n "${MOONFRP_BULK_BIN:-}" ]]; then
        if [[ -f "$MOONFRP_BULK_BIN" && -x "$MOONFRP_BULK_BIN" ]]; then
            printf '%s\n' "$MOONFRP_BULK_BIN"
            return 0
        fi
        printf '%s\n' "moonfrp-bulk: MOONFRP_BULK_BIN=$MOONFRP_BULK_BIN is not an executable file; fix or unset it" >&2
        return 127
    fi
    # type -P: a file on PATH only, never a caller's function or alias of
    # that name.
    if __mfb_candidate=$(type -P moonfrp-bulk 2>/dev/null) && [[ -n "$__mfb_candidate" ]]; then
        printf '%s\n' "$__mfb_candidate"
        return 0
    fi
    # Beside the shim, only where bash knows the shim's own path: in a
    # child shell that got these functions through the environment,
    # BASH_SOURCE is the word "environment", and a relative path would
    # search the caller's working directory: for a root tool, "." in PATH.
    __mfb_here="${BASH_SOURCE[0]:-}"
    if [[ "$__mfb_here" == /* && -f "$__mfb_here" ]]; then
        __mfb_here=${__mfb_here%/*}
        for __mfb_candidate in "$__mfb_here/moonfrp-bulk" "$__mfb_here/../bin/moonfrp-bulk"; do
            if [[ -f "$__mfb_candidate" && -x "$__mfb_candidate" ]]; then
                printf '%s\n' "$__mfb_candidate"
                return 0
            fi
        done
    fi
    printf '%s\n' "moonfrp-bulk: binary not found; install it on PATH (make build && install -m 755 bin/moonfrp-bulk /usr/local/bin/) or set MOONFRP_BULK_BIN" >&2
    return 127
}

# Runs the binary with MoonFRP's settings: those the caller has (its
# MOONFRP_* variables, or MoonFRP's own LOG_DIR and DATA_DIR) are passed
# on; the defaults are the binary's alone, never repeated here. stdout and
# stderr pass through untouched, so the live progress line still sees the
# terminal.
__moonfrp_bulk_exec() {
    local __mfb_bin __mfb_rc=0 __mfb_v
    local -a __mfb_extra=() __mfb_env=()
    __mfb_bin=$(__moonfrp_bulk_bin) || return $?
    IFS=' ' read -r -a __mfb_extra <<<"${MOONFRP_BULK_ARGS:-}"
    __mfb_v="${MOONFRP_LOG_DIR:-${LOG_DIR:-}}"
    [[ -z "$__mfb_v" ]] || __mfb_env+=("MOONFRP_LOG_DIR=$__mfb_v")
    __mfb_v="${MOONFRP_DATA_DIR:-${DATA_DIR:-}}"
    [[ -z "$__mfb_v" ]] || __mfb_env+=("MOONFRP_DATA_DIR=$__mfb_v")
    [[ -z "${MOONFRP_LOG_FORMAT:-}" ]] || __mfb_env+=("MOONFRP_LOG_FORMAT=$MOONFRP_LOG_FORMAT")
    [[ -z "${MOONFRP_MAX_PARALLEL:-}" ]] || __mfb_env+=("MOONFRP_MAX_PARALLEL=$MOONFRP_MAX_PARALLEL")
    [[ -z "${MOONFRP_BULK_MAX_FAIL:-}" ]] || __mfb_env+=("MOONFRP_BULK_MAX_FAIL=$MOONFRP_BULK_MAX_FAIL")
    [[ -z "${MOONFRP_BULK_CANARY:-}" ]] || __mfb_env+=("MOONFRP_BULK_CANARY=$MOONFRP_BULK_CANARY")
    # env, not VAR=value prefixes: those fail on a readonly variable.
    env "${__mfb_env[@]}" "$__mfb_bin" "${__mfb_extra[@]}" "$@" || __mfb_rc=$?
    return "$__mfb_rc"
}

# Runs an operation and returns, so that a caller can tell failed services
# from a run that could not happen:
#   0        every service succeeded (or there was none to act on)
#   1-100    that many services failed or were not started (100: 100 or
#            more; a count never wraps to 0)
#   124      busy: another moonfrp-bulk run holds some of the services
#   125      bad arguments (the binary's usage error, exit 2)
#   126      could not run: systemctl or the service manager unusable, or
#            lost mid-run (exit 3)
#   127      the moonfrp-bulk binary is missing
#   130      interrupted before any operation ran
__moonfrp_bulk_op() {
    local __mfb_status="" __mfb_rc=0 __mfb_failed __mfb_not_started
    # fd 3 carries the counts back; stdout goes where it was going (fd 4).
    { __mfb_status=$(__moonfrp_bulk_exec --status-fd=3 "$@" 3>&1 1>&4 4>&-) || __mfb_rc=$?; } 4>&1
    case "$__mfb_rc" in
        # 6: the output was lost, 7: a reload left frp units that need a
        # restart running; the counts still say what failed.
        0 | 1 | 6 | 7 | 130) ;;
        2) return 125 ;;
        4) return 124 ;;
        127) return 127 ;;
        *) return 126 ;;
    esac
    if [[ "$__mfb_status" != *"failed="*"not_started="* ]]; then
        # Interrupted before anything ran (waiting for another run's
        # locks): say so, as the interrupted shell would.
        ((__mfb_rc != 130)) || return 130
        ((__mfb_rc == 0)) || return 126
        return 0
    fi
    # Cut fields out by pattern: no word splitting, so the caller's IFS
    # cannot matter.
    __mfb_failed=${__mfb_status#*" failed="}
    __mfb_failed=${__mfb_failed%% *}
    __mfb_not_started=${__mfb_status#*"not_started="}
    __mfb_not_started=${__mfb_not_started%% *}
    __mfb_failed=$((__mfb_failed + __mfb_not_started))
    if ((__mfb_failed > 100)); then
        __mfb_failed=100
    fi
    return "$__mfb_failed"
}

# Whole positive number?
# MoonFRP's MAX position: digits, or empty (its callers pass
# "$max_parallel", which may be unset); 0 or empty mean the default, as
# MoonFRP's own ${2:-10} does for empty.
__moonfrp_bulk_is_count() {
    [[ "${1-}" =~ ^[0-9]*$ ]]
}

# Prints the flag for MAX, or nothing for the default (0 or empty).
__moonfrp_bulk_jobs_flag() {
    if [[ "${1-}" =~ ^0*$ ]]; then
        return 0
    fi
    printf '%s\n' "--max-parallel=$1"
}

# Runs an operation for people: a live line on a terminal, plain lines
# otherwise. With MOONFRP_LOG_FORMAT=json the JSON lines go to stderr, as
# MoonFRP's own log does, so that stdout stays what callers expect.
__moonfrp_bulk_human() {
    if [[ "${MOONFRP_LOG_FORMAT:-text}" == json ]]; then
        __moonfrp_bulk_op --output=json "$@" 1>&2
    else
        __moonfrp_bulk_op --output=auto "$@"
    fi
}

# Runs an operation over every MoonFRP service, with an optional MAX.
__moonfrp_bulk_all() {
    local __mfb_op="$1" __mfb_max="${2:-}"
    local -a __mfb_jobs=()
    mapfile -t __mfb_jobs < <(__moonfrp_bulk_jobs_flag "$__mfb_max")
    __moonfrp_bulk_human "$__mfb_op" "${__mfb_jobs[@]}"
}

get_moonfrp_services() {
    __moonfrp_bulk_exec list --names
}

# bulk_service_operation OP MAX SERVICE...  (MoonFRP's callers)
# bulk_service_operation OP SERVICE...      (the story's form)
bulk_service_operation() {
    local __mfb_op="${1:-}" __mfb_max=""
    local -a __mfb_services=()
    if (($# < 1)); then
        printf '%s\n' "bulk_service_operation: usage: bulk_service_operation start|stop|restart|reload [MAX] SERVICE..." >&2
        return 125
    fi
    shift
    if (($# >= 1)) && __moonfrp_bulk_is_count "$1"; then
        __mfb_max="$1"
        shift
    fi
    __mfb_services=("$@")
    if ((${#__mfb_services[@]} == 0)); then
        printf '%s\n' "Warning: No services provided for bulk operation" >&2
        return 0
    fi
    local -a __mfb_jobs=()
    mapfile -t __mfb_jobs < <(__moonfrp_bulk_jobs_flag "$__mfb_max")
    __moonfrp_bulk_human "$__mfb_op" "${__mfb_jobs[@]}" -- "${__mfb_services[@]}"
}

bulk_start_services() { __moonfrp_bulk_all start "${1:-}"; }
bulk_stop_services() { __moonfrp_bulk_all stop "${1:-}"; }
bulk_restart_services() { __moonfrp_bulk_all restart "${1:-}"; }
bulk_reload_services() { __moonfrp_bulk_all reload "${1:-}"; }

# bulk_operation_filtered OP TYPE VALUE [MAX]; TYPE is tag, status or name.
bulk_operation_filtered() {
    local __mfb_op="${1:-}" __mfb_type="${2:-}" __mfb_value="${3:-}" __mfb_max="${4:-}"
    local -a __mfb_jobs=()
    case "$__mfb_type" in
        tag | status | name) ;;
        *)
            printf '%s\n' "bulk_operation_filtered: unknown filter type '$__mfb_type'; use tag, status or name (e.g. bulk_operation_filtered restart tag env:prod)" >&2
            return 125
            ;;
    esac
    if [[ -z "$__mfb_value" ]]; then
        printf '%s\n' "bulk_operation_filtered: missing filter value after '$__mfb_type'" >&2
        return 125
    fi
    mapfile -t __mfb_jobs < <(__moonfrp_bulk_jobs_flag "$__mfb_max")
    __moonfrp_bulk_human "$__mfb_op" "${__mfb_jobs[@]}" --filter="$__mfb_type:$__mfb_value"
}

get_services_by_tag() {
    local __mfb_rc=0
    if [[ -z "${1:-}" ]]; then
        printf '%s\n' "get_services_by_tag: usage: get_services_by_tag KEY or KEY:VALUE" >&2
        return 125
    fi
    __moonfrp_bulk_exec list --names --filter="tag:$1" || __mfb_rc=$?
    return "$__mfb_rc"
}

# The menus' "all" actions: one parallel operation each, server ordering
# and verification included. Restart is a single parallel restart, not
# stop-all, sleep 2, start-all. They return the number of services that
# failed (0 when all came up), so `if ! start_all_services` now notices.
start_all_services() { __moonfrp_bulk_all start; }
stop_all_services() { __moonfrp_bulk_all stop; }
restart_all_services() { __moonfrp_bulk_all restart; }

# Exported, as MoonFRP exports its own service functions: its background
# subshells and `bash -c` children call them. In such a child the binary
# is found through MOONFRP_BULK_BIN (which `moonfrp-bulk integrate` sets)
# or PATH, never relative to the caller's working directory.
export -f __moonfrp_bulk_shim __moonfrp_bulk_bin __moonfrp_bulk_exec __moonfrp_bulk_op \
    __moonfrp_bulk_is_count __moonfrp_bulk_jobs_flag __moonfrp_bulk_human __moonfrp_bulk_all \
    get_moonfrp_services bulk_service_operation bulk_start_services bulk_stop_services \
    bulk_restart_services bulk_reload_services bulk_operation_filtered get_services_by_tag \
    start_all_services stop_all_services restart_all_services
