#!/usr/bin/env bash
# Local PostgreSQL and RabbitMQ for development and tests.
#
# Source it and call the functions:
#     source scripts/services.sh
#     ensure_postgres   # 127.0.0.1:5432 answers and `psql -h 127.0.0.1 -U postgres` works
#     ensure_rabbitmq   # 127.0.0.1:5672 accepts connections
#     ensure_chromium   # $CHROMIUM (/usr/bin/chromium) runs, for the browser test
#     ensure_promtool   # promtool, for the ops/ alert rule tests
#     ensure_docker_compose  # docker-compose, to check its observability profile
# or run it:  bash scripts/services.sh [postgres|rabbitmq|chromium|all]
# (`all` is PostgreSQL and RabbitMQ; Chromium only when asked.)
#
# Each function does nothing (and prints nothing) when its service already
# answers. Otherwise it installs the Debian package if it is missing
# (apt-get, with sudo when not root), starts the service without systemd and
# waits until it answers. SKIP_SERVICES=1 skips everything (services managed
# elsewhere, e.g. by docker compose).
#
# Environment: PG_HOST (127.0.0.1), PG_PORT (5432), PG_USER (postgres),
# PG_CLUSTER (main: the Debian cluster to start),
# AMQP_HOST (127.0.0.1), AMQP_PORT (5672), SERVICE_WAIT_SECONDS (90),
# CHROMIUM (/usr/bin/chromium).

PG_HOST="${PG_HOST:-127.0.0.1}"
PG_PORT="${PG_PORT:-5432}"
PG_USER="${PG_USER:-postgres}"
PG_CLUSTER="${PG_CLUSTER:-main}"
AMQP_HOST="${AMQP_HOST:-127.0.0.1}"
AMQP_PORT="${AMQP_PORT:-5672}"
SERVICE_WAIT_SECONDS="${SERVICE_WAIT_SECONDS:-90}"
CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"

_services_apt_updated=""

svc_log() { printf '==> %s\n' "$*" >&2; }
svc_die() { printf 'error: %s\n' "$*" >&2; return 1; }

# Runs a command as root: directly when root, with sudo otherwise.
as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        svc_die "need root for: $* (run as root or install sudo)"
    fi
}

apt_install() {
    command -v apt-get >/dev/null 2>&1 \
        || svc_die "apt-get not found; install $* yourself" || return 1
    if [ -z "$_services_apt_updated" ]; then
        svc_log "apt-get update"
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null || return 1
        _services_apt_updated=1
    fi
    svc_log "apt-get install -y $*"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" \
        >/dev/null || svc_die "apt-get install $* failed" || return 1
}

# tcp_open HOST PORT: true when something accepts TCP connections there.
tcp_open() {
    # shellcheck disable=SC2016 # expanded by the inner bash
    timeout 3 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$1" "$2" 2>/dev/null
}

# wait_until SECONDS DESCRIPTION COMMAND...: polls COMMAND once a second.
wait_until() {
    local seconds="$1" what="$2" i
    shift 2
    for ((i = 0; i < seconds; i++)); do
        if "$@"; then
            return 0
        fi
        sleep 1
    done
    svc_die "$what did not answer within ${seconds}s"
}

# --- PostgreSQL ---------------------------------------------------------------

_pg_psql_ok() {
    PGCONNECT_TIMEOUT=5 psql -X -w -q -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" -d postgres \
        -Atc 'select 1' >/dev/null 2>&1
}

_pg_isready() {
    pg_isready -q -h "$PG_HOST" -p "$PG_PORT" -t 3 >/dev/null 2>&1
}

# Newest version with cluster $PG_CLUSTER under /etc/postgresql (empty if none).
_pg_version() {
    local dir
    for dir in /etc/postgresql/*/"$PG_CLUSTER"; do
        [ -d "$dir" ] || continue
        dir="${dir%/"$PG_CLUSTER"}"
        printf '%s\n' "${dir##*/}"
    done | sort -V | tail -n 1
}

_pg_is_local() {
    case "$PG_HOST" in
        127.0.0.1 | localhost | ::1) return 0 ;;
        *) return 1 ;;
    esac
}

# Lets the postgres user in over TCP from the loopback addresses without a
# password. Only called when `psql -h 127.0.0.1 -U postgres` fails.
_pg_trust_loopback() {
    local version="$1" hba
    hba="/etc/postgresql/$version/$PG_CLUSTER/pg_hba.conf"
    [ -f "$hba" ] || svc_die "cannot find $hba to allow local connections" || return 1
    if as_root grep -q 'identity-dev-scripts' "$hba"; then
        svc_die "PostgreSQL still refuses $PG_USER@$PG_HOST although $hba trusts loopback; check the server log" \
            || return 1
    fi
    svc_log "allowing passwordless TCP connections from 127.0.0.1/::1 in $hba (development setting)"
    # Rules match first-come, so the new ones go to the top. Rewriting in
    # place keeps the file's owner and mode.
    # shellcheck disable=SC2016 # expanded by the inner bash
    as_root bash -c '
        hba="$1"
        tmp="$(mktemp)"
        {
            echo "# identity-dev-scripts: local development, trust loopback TCP (added by scripts/services.sh)"
            echo "host    all    all    127.0.0.1/32    trust"
            echo "host    all    all    ::1/128         trust"
            cat "$hba"
        } >"$tmp"
        cat "$tmp" >"$hba"
        rm -f "$tmp"
    ' _ "$hba" || return 1
    as_root pg_ctlcluster --skip-systemctl-redirect "$version" "$PG_CLUSTER" reload || return 1
    sleep 1
}

ensure_postgres() {
    [ "${SKIP_SERVICES:-0}" = 1 ] && return 0
    local version

    # Fast path: client installed, server up, login works.
    if command -v psql >/dev/null 2>&1 && command -v pg_isready >/dev/null 2>&1 \
        && _pg_psql_ok; then
        return 0
    fi

    if ! _pg_is_local; then
        # Not ours to install or start: only make sure the client exists.
        if ! command -v psql >/dev/null 2>&1 || ! command -v pg_isready >/dev/null 2>&1; then
            apt_install postgresql-client || return 1
        fi
        wait_until "$SERVICE_WAIT_SECONDS" "PostgreSQL at $PG_HOST:$PG_PORT" _pg_isready || return 1
        _pg_psql_ok || svc_die "cannot log in to PostgreSQL as $PG_USER at $PG_HOST:$PG_PORT" || return 1
        return 0
    fi

    version="$(_pg_version)"
    if [ -z "$version" ] && ! tcp_open "$PG_HOST" "$PG_PORT"; then
        svc_log "PostgreSQL is not installed; installing it from Debian's packages"
        apt_install postgresql || return 1
        version="$(_pg_version)"
        [ -n "$version" ] || svc_die "postgresql installed but no cluster under /etc/postgresql" || return 1
    elif ! command -v psql >/dev/null 2>&1 || ! command -v pg_isready >/dev/null 2>&1; then
        apt_install postgresql-client || return 1
    fi

    if ! _pg_isready; then
        if [ -z "$version" ]; then
            svc_die "PostgreSQL does not answer on $PG_HOST:$PG_PORT and no local cluster was found" || return 1
        fi
        svc_log "starting PostgreSQL $version (cluster $PG_CLUSTER)"
        as_root pg_ctlcluster --skip-systemctl-redirect "$version" "$PG_CLUSTER" start \
            || _pg_isready \
            || svc_die "pg_ctlcluster $version $PG_CLUSTER start failed; see /var/log/postgresql/postgresql-$version-$PG_CLUSTER.log" \
            || return 1
        wait_until "$SERVICE_WAIT_SECONDS" "PostgreSQL on $PG_HOST:$PG_PORT" _pg_isready || return 1
        svc_log "PostgreSQL is up on $PG_HOST:$PG_PORT"
    fi

    if ! _pg_psql_ok; then
        [ -n "$version" ] \
            || svc_die "cannot log in as $PG_USER at $PG_HOST:$PG_PORT and no local cluster to configure" \
            || return 1
        _pg_trust_loopback "$version" || return 1
        _pg_psql_ok || svc_die "still cannot run: psql -h $PG_HOST -p $PG_PORT -U $PG_USER -c 'select 1'" \
            || return 1
    fi
}

# --- RabbitMQ -----------------------------------------------------------------

_rabbitmq_up() {
    tcp_open "$AMQP_HOST" "$AMQP_PORT"
}

ensure_rabbitmq() {
    [ "${SKIP_SERVICES:-0}" = 1 ] && return 0
    _rabbitmq_up && return 0

    case "$AMQP_HOST" in
        127.0.0.1 | localhost | ::1) ;;
        *)
            wait_until "$SERVICE_WAIT_SECONDS" "RabbitMQ at $AMQP_HOST:$AMQP_PORT" _rabbitmq_up
            return
            ;;
    esac

    if [ ! -x /usr/sbin/rabbitmq-server ] && ! command -v rabbitmq-server >/dev/null 2>&1; then
        svc_log "RabbitMQ is not installed; installing it from Debian's packages"
        apt_install rabbitmq-server || return 1
        # The package may have started it already.
        if wait_until 15 "RabbitMQ (started by the package)" _rabbitmq_up 2>/dev/null; then
            svc_log "RabbitMQ is up on $AMQP_HOST:$AMQP_PORT"
            return 0
        fi
    fi

    svc_log "starting RabbitMQ (rabbitmq-server -detached)"
    # A node that is still booting makes this fail with "already running";
    # the wait below is what counts.
    as_root env PATH="/usr/sbin:/usr/bin:/sbin:/bin:$PATH" rabbitmq-server -detached >/dev/null 2>&1 || true
    wait_until "$SERVICE_WAIT_SECONDS" "RabbitMQ on $AMQP_HOST:$AMQP_PORT (see /var/log/rabbitmq/)" _rabbitmq_up \
        || return 1
    # The AMQP listener opens at the end of the node's boot, so an open port
    # means the broker is ready.
    svc_log "RabbitMQ is up on $AMQP_HOST:$AMQP_PORT"
}

# --- Chromium -------------------------------------------------------------------

# The api's browser test (api/tests/it/browser.rs) drives the example page in
# headless Chromium from Debian's `chromium` package. Not a service: nothing
# to start, only the binary to install when it is missing.
ensure_chromium() {
    [ -x "$CHROMIUM" ] && return 0
    if [ "$CHROMIUM" != /usr/bin/chromium ]; then
        svc_die "CHROMIUM=$CHROMIUM is not an executable" || return 1
    fi
    svc_log "Chromium is not installed; installing it from Debian's packages"
    apt_install chromium || return 1
    [ -x "$CHROMIUM" ] || svc_die "chromium installed but $CHROMIUM is missing" || return 1
}

# --- Operations tools ------------------------------------------------------------

# infra/tests/it/ops.rs checks ops/ with promtool (Debian's `prometheus`
# package; only the tool is used, no server is started) and docker-compose's
# `observability` profile with Debian's `docker-compose`.
ensure_promtool() {
    command -v promtool >/dev/null 2>&1 && return 0
    svc_log "promtool is not installed; installing Debian's prometheus package"
    apt_install prometheus || return 1
    command -v promtool >/dev/null 2>&1 || svc_die "prometheus installed but promtool is missing"
}

ensure_docker_compose() {
    command -v docker-compose >/dev/null 2>&1 && return 0
    svc_log "docker-compose is not installed; installing it from Debian's packages"
    apt_install docker-compose || return 1
    command -v docker-compose >/dev/null 2>&1 || svc_die "docker-compose installed but missing"
}

ensure_services() {
    ensure_postgres && ensure_rabbitmq
}

# Cargo from rustup may live in ~/.cargo/bin without being on PATH.
require_cargo() {
    if ! command -v cargo >/dev/null 2>&1 && [ -x "${CARGO_HOME:-$HOME/.cargo}/bin/cargo" ]; then
        PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
        export PATH
    fi
    command -v cargo >/dev/null 2>&1 || svc_die "cargo not found. Install the Rust toolchain with rustup \
(https://rustup.rs; needs internet access), then run this again."
}

# --- Process helpers for dev-up / dev-down ----------------------------------

# Loads KEY=VALUE lines from .env when it exists; variables already set in
# the environment win. One pair of surrounding quotes is removed; nothing is
# expanded.
load_dotenv() {
    local file="${1:-.env}" line key value
    [ -f "$file" ] || return 0
    while IFS= read -r line || [ -n "$line" ]; do
        line="${line%$'\r'}"
        case "$line" in '' | '#'*) continue ;; esac
        line="${line#export }"
        key="${line%%=*}"
        value="${line#*=}"
        [[ "$key" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || continue
        [ "$key" != "$line" ] || continue
        if [[ "$value" =~ ^\"(.*)\"$ ]] || [[ "$value" =~ ^\'(.*)\'$ ]]; then
            value="${BASH_REMATCH[1]}"
        fi
        if [ -z "${!key+set}" ]; then
            export "$key=$value"
        fi
    done <"$file"
}

# pid_alive PIDFILE NAME: true when PIDFILE names a live (non-zombie) process
# whose command is NAME; prints the pid.
pid_alive() {
    local file="$1" name="$2" pid state comm
    [ -f "$file" ] || return 1
    pid="$(cat "$file" 2>/dev/null)"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    [ -r "/proc/$pid/stat" ] || return 1
    comm="$(cat "/proc/$pid/comm" 2>/dev/null)" || return 1
    [ "$comm" = "$name" ] || return 1
    state="$(sed -E 's/^.*\) ([A-Za-z]).*$/\1/' "/proc/$pid/stat" 2>/dev/null)" || return 1
    [ "$state" != Z ] && [ "$state" != X ] || return 1
    printf '%s\n' "$pid"
}

# Turns a listen address into one to connect to: 0.0.0.0 -> 127.0.0.1, [::] -> [::1].
connect_addr() {
    local addr="$1"
    case "$addr" in
        0.0.0.0:*) printf '127.0.0.1:%s\n' "${addr##*:}" ;;
        '[::]:'*) printf '[::1]:%s\n' "${addr##*:}" ;;
        *) printf '%s\n' "$addr" ;;
    esac
}

# http_ok URL: true on a 2xx answer. Uses curl, or bash's /dev/tcp without it.
http_ok() {
    local url="$1"
    if command -v curl >/dev/null 2>&1; then
        curl -fsS -o /dev/null --max-time 3 "$url" 2>/dev/null
        return
    fi
    local rest="${url#http://}" hostport path host port
    hostport="${rest%%/*}"
    path="/${rest#*/}"
    host="${hostport%:*}"
    port="${hostport##*:}"
    host="${host#[}"
    host="${host%]}"
    # shellcheck disable=SC2016 # expanded by the inner bash
    timeout 3 bash -c '
        exec 3<>"/dev/tcp/$1/$2" || exit 1
        printf "GET %s HTTP/1.0\r\nHost: %s\r\nConnection: close\r\n\r\n" "$3" "$1" >&3
        IFS= read -r status <&3 || exit 1
        case "$status" in "HTTP/1."?" 2"*) exit 0 ;; *) exit 1 ;; esac
    ' _ "$host" "$port" "$path" 2>/dev/null
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    set -euo pipefail
    case "${1:-all}" in
        postgres) ensure_postgres && echo "PostgreSQL $PG_HOST:$PG_PORT is up." ;;
        rabbitmq) ensure_rabbitmq && echo "RabbitMQ $AMQP_HOST:$AMQP_PORT is up." ;;
        chromium) ensure_chromium && echo "Chromium: $("$CHROMIUM" --version 2>/dev/null || echo "$CHROMIUM")" ;;
        all)
            ensure_services
            echo "PostgreSQL $PG_HOST:$PG_PORT and RabbitMQ $AMQP_HOST:$AMQP_PORT are up."
            ;;
        *)
            echo "usage: $0 [postgres|rabbitmq|chromium|all]" >&2
            exit 2
            ;;
    esac
fi
