# shellcheck shell=bash
# Stand-in for moonfrp-core.sh: settings declared readonly, and log.
[[ -z "${FRP_DIR:-}" ]] && readonly FRP_DIR="${MOONFRP_INSTALL_DIR:-/opt/frp}"
[[ -z "${CONFIG_DIR:-}" ]] && readonly CONFIG_DIR="${MOONFRP_CONFIG_DIR:-/etc/frp}"
[[ -z "${LOG_DIR:-}" ]] && readonly LOG_DIR="${MOONFRP_LOG_DIR:-/var/log/frp}"
[[ -z "${DATA_DIR:-}" ]] && readonly DATA_DIR="${MOONFRP_DATA_DIR:-/opt/moonfrp/data}"
[[ -z "${SERVER_SERVICE:-}" ]] && readonly SERVER_SERVICE="moonfrp-server"
[[ -z "${CLIENT_SERVICE_PREFIX:-}" ]] && readonly CLIENT_SERVICE_PREFIX="moonfrp-client"

log() {
    local level="$1"
    shift
    echo "[$level] $*"
}
