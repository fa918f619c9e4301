#!/usr/bin/env bash
# avscan's local stack on loopback, without Docker: clamd (Debian's clamav-daemon) with the
# project's test signatures and a daily database freshclam fetched from a local mirror directory,
# and an emulator as S3/SQS/SNS, with the buckets, queues, topic and notifications created. Also
# installs the tools the tests use (sigtool, faketime, promtool).
# Idempotent: installs what is missing, starts what is not running, refreshes the daily database
# when it is a day old (avscan refuses definitions older than DEFINITIONS_MAX_AGE, 7 days).
#
# EMULATOR picks the emulator (each on a port of its own, so both can run at once and a URL names
# the emulator behind it; tests/common/environment.rs knows the same ports):
#   moto       (default) moto's server, `moto[server]` in .venv, on 127.0.0.1:4566
#   ministack  ministack, pinned, in .venv/ministack (it pins a botocore of its own), on 127.0.0.1:4567
#
#   compose/stack.sh up      install + start + create resources (writes .stack/avscan.env for
#                            the emulator it brought up: what `make run` uses)
#   compose/stack.sh reset   empty the emulator and create the resources again
#   compose/stack.sh down    stop clamd and both emulators
#   compose/stack.sh status
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
state="$repo/.stack"
venv="$repo/.venv"
emulator="${EMULATOR:-moto}"
case "$emulator" in
    moto) emulator_port=4566 ;;
    ministack) emulator_port=4567 ;;
    *)
        echo "EMULATOR=$emulator: the local stack runs moto or ministack" >&2
        exit 2
        ;;
esac
endpoint="http://127.0.0.1:$emulator_port"
ministack_version=1.5.33
mkdir -p "$state"

log() { printf 'stack: %s\n' "$*" >&2; }

install_clamd() {
    if command -v clamd >/dev/null 2>&1 || [ -x /usr/sbin/clamd ]; then return; fi
    log "installing clamav-daemon (apt)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends clamav-daemon >/dev/null
}

install_tools() {
    # sigtool (clamav) builds test definitions, freshclam fetches them, faketime ages them,
    # promtool (prometheus) tests the alert rules.
    if command -v sigtool >/dev/null && command -v freshclam >/dev/null && command -v faketime >/dev/null \
        && command -v promtool >/dev/null; then return; fi
    log "installing clamav (sigtool), clamav-freshclam, faketime, prometheus (promtool) (apt)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends clamav clamav-freshclam faketime prometheus >/dev/null
    # Only their tools are wanted: on a machine with systemd the packages start a Prometheus on
    # :9090 (avscan's OPS_ADDRESS) and a freshclam daemon fetching from the internet.
    if command -v systemctl >/dev/null 2>&1; then
        systemctl disable --now prometheus prometheus-node-exporter clamav-freshclam >/dev/null 2>&1 || true
    fi
}

# The local stack's definitions, as a deployment gets them: the project's signature files, plus a
# daily database (compose/clamav/daily, built with sigtool into .stack/mirror) that freshclam
# fetches into clamd's DatabaseDirectory. Rebuilt with a new version once the one loaded is a
# day old; a running clamd reloads.
refresh_definitions() {
    local db="$state/db" mirror="$state/mirror"
    mkdir -p "$db"
    cp "$repo"/compose/clamav/db/* "$db/"
    if [ -n "$(find "$db/daily.cud" -mmin -1440 2>/dev/null)" ]; then return; fi
    log "building the daily database and fetching it with freshclam"
    bash "$repo/compose/clamav/build-definitions.sh" "$mirror" "$(( $(date +%s) / 60 ))" \
        "$repo"/compose/clamav/daily/*.ndb
    cat > "$state/freshclam.conf" <<EOF
DatabaseDirectory $db
DatabaseOwner $(id -un)
UpdateLogFile $state/freshclam.log
# Never asked: --update-db=custom fetches only the custom URL below.
DatabaseMirror 127.0.0.1
DNSDatabaseInfo no
DatabaseCustomURL file://$mirror/daily.cud
EOF
    freshclam --config-file="$state/freshclam.conf" --update-db=custom >/dev/null
    chmod 0644 "$db/daily.cud"
    if clamd_ping; then clamd_command RELOAD >/dev/null; fi
}

# The stack's own Python (resources.py, demo.py): boto3 in .venv, whichever emulator runs.
install_venv() {
    if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c 'import boto3' 2>/dev/null; then return; fi
    log "installing boto3 into .venv (pip)"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check boto3
}

install_moto() {
    if [ -x "$venv/bin/moto_server" ]; then return; fi
    log "installing moto[server] into .venv (pip)"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check 'moto[server]>=5.1,<6'
}

# A venv of its own: ministack pins botocore exactly, moto needs its own range.
install_ministack() {
    if [ -x "$venv/ministack/bin/ministack" ] \
        && [ "$("$venv/ministack/bin/pip" show ministack 2>/dev/null | sed -n 's/^Version: //p')" = "$ministack_version" ]; then
        return
    fi
    log "installing ministack $ministack_version into .venv/ministack (pip)"
    python3 -m venv "$venv/ministack"
    "$venv/ministack/bin/pip" install -q --disable-pip-version-check "ministack==$ministack_version"
}

# Sends one command to the stack's clamd and prints its reply; fails if clamd does not answer.
clamd_command() {
    python3 - "$1" <<'PY'
import socket, sys
try:
    s = socket.create_connection(("127.0.0.1", 3310), timeout=1)
    s.sendall(b"z" + sys.argv[1].encode() + b"\0")
    s.settimeout(5)
    print(s.recv(256).rstrip(b"\0").decode())
except OSError:
    sys.exit(1)
PY
}

clamd_ping() {
    [ "$(clamd_command PING 2>/dev/null)" = PONG ]
}

start_clamd() {
    if clamd_ping; then
        # A clamd from an older checkout (its databases elsewhere) names no daily database.
        case "$(clamd_command VERSION)" in
            */*/*) return ;;
        esac
        log "the running clamd names no daily database; restarting it with the stack's"
        kill "$(cat "$state/clamd.pid" 2>/dev/null)" 2>/dev/null || true
        for _ in $(seq 1 50); do clamd_ping || break; sleep 0.2; done
    fi
    log "starting clamd on 127.0.0.1:3310"
    sed -e "s|@STATE@|$state|g" -e "s|@DB@|$state/db|g" \
        "$repo/compose/clamav/clamd.conf" > "$state/clamd.conf"
    local clamd_bin
    clamd_bin=$(command -v clamd || echo /usr/sbin/clamd)
    # clamd prints its definitions' build time in its own time zone, which avscan reads as UTC.
    TZ=UTC "$clamd_bin" --config-file="$state/clamd.conf"
    for _ in $(seq 1 100); do
        clamd_ping && return
        sleep 0.2
    done
    log "clamd did not answer PING; see $state/clamd.log"
    exit 1
}

# Answers 200 only when the emulator EMULATOR names listens on its port.
emulator_up() {
    local path
    case "$emulator" in
        # The dashboard page: cheap however much state moto holds (data.json is not).
        moto) path=/moto-api/ ;;
        ministack) path=/_ministack/health ;;
    esac
    python3 -c "import urllib.request,sys; urllib.request.urlopen(sys.argv[1], timeout=5)" \
        "$endpoint$path" >/dev/null 2>&1
}

start_emulator() {
    if emulator_up; then return; fi
    log "starting $emulator on 127.0.0.1:$emulator_port"
    case "$emulator" in
        moto)
            nohup "$venv/bin/moto_server" -H 127.0.0.1 -p "$emulator_port" > "$state/moto.log" 2>&1 &
            ;;
        ministack)
            # In memory only; warnings and errors logged (at INFO it logs every SNS message whole).
            BIND_HOST=127.0.0.1 GATEWAY_PORT="$emulator_port" LOG_LEVEL=WARNING \
                nohup "$venv/ministack/bin/ministack" > "$state/ministack.log" 2>&1 &
            ;;
    esac
    echo $! > "$state/$emulator.pid"
    for _ in $(seq 1 150); do
        emulator_up && return
        sleep 0.1
    done
    log "$emulator did not start; see $state/$emulator.log"
    exit 1
}

reset_emulator() {
    local path
    case "$emulator" in
        moto) path=/moto-api/reset ;;
        ministack) path=/_ministack/reset ;;
    esac
    python3 -c "import urllib.request,sys; urllib.request.urlopen(urllib.request.Request(sys.argv[1], method='POST'), timeout=60)" \
        "$endpoint$path" >/dev/null
}

create_resources() {
    "$venv/bin/python" "$repo/compose/resources.py" --endpoint "$endpoint" --env-file "$state/avscan.env"
}

case "${1:-up}" in
    up)
        install_clamd
        install_tools
        install_venv
        "install_$emulator"
        refresh_definitions
        start_clamd
        start_emulator
        create_resources
        log "up: clamd tcp://127.0.0.1:3310, $emulator $endpoint"
        ;;
    reset)
        # Forgets everything the tests left in the emulator (a 10,000-object soak leaves GBs),
        # then creates the local stack's resources again.
        reset_emulator
        create_resources
        log "reset: $emulator emptied, resources created again"
        ;;
    down)
        for service in clamd moto ministack; do
            [ -f "$state/$service.pid" ] && kill "$(cat "$state/$service.pid")" 2>/dev/null || true
            rm -f "$state/$service.pid"
        done
        log "down"
        ;;
    status)
        clamd_ping && log "clamd: up" || log "clamd: down"
        emulator_up && log "$emulator: up at $endpoint" || log "$emulator: down"
        ;;
    *)
        echo "usage: [EMULATOR=moto|ministack] $0 up|reset|down|status" >&2
        exit 2
        ;;
esac
