#!/usr/bin/env bash
# Auth service measurement (issue 7): three local nodes hosting `auth`, driven
# by `geoul load auth`, in four runs:
#   1. logins: argon2id at its defaults (19 MiB, t=2, p=1: OWASP's
#      recommendation), PLAYERS players re-logging in every ~5 s;
#   2. logins: the same at the light parameters the simulation uses
#      (8 MiB, t=1);
#   3. validations: defaults, 500 players logged in once (first logins spread
#      over 10 s), each validating 200 times a second (a server move each);
#   4. run 3 again with node-3 killed (-9) a third into the run and restarted
#      (same data dir) at two thirds;
#   5. validations at a moderate rate (500 players, 10 a second each): the
#      latency below saturation.
# Each run registers its players first (one argon2id hash each, like a
# login: its ops/s is the cluster's hashing capacity). Builds the release
# binary first.
#   scripts/bench-auth.sh [PLAYERS] [DURATION_S]
# e.g.  scripts/bench-auth.sh 2000 30
set -euo pipefail
cd "$(dirname "$0")/.."

PLAYERS="${1:-2000}"
DURATION_S="${2:-30}"
VALIDATORS=500

cargo build --release -p geoul
GEOUL="$PWD/target/release/geoul"
WORK="$(mktemp -d /tmp/geoul-bench-auth.XXXXXX)"
BASE=7301
PIDS=()
cleanup() {
    [ -s "$WORK/node-3.pid" ] && kill -9 "$(cat "$WORK/node-3.pid")" 2>/dev/null
    for pid in "${PIDS[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT
head -c 32 /dev/urandom | base64 > "$WORK/secret"
SEEDS="127.0.0.1:$BASE,127.0.0.1:$((BASE + 1)),127.0.0.1:$((BASE + 2))"

# start_node I CONFIG: node-I on port BASE+I-1, admin BASE+1000+I-1.
start_node() {
    local i="$1" config="$2"
    "$GEOUL" node --config "$config" --name "node-$i" \
        --bind "127.0.0.1:$((BASE + i - 1))" --admin "127.0.0.1:$((BASE + 1000 + i - 1))" \
        --seeds "$SEEDS" --data-dir "$WORK/data/node-$i" \
        --cluster-secret-file "$WORK/secret" --services auth \
        >> "$WORK/node-$i.log" 2>&1 &
    PIDS[$i]=$!
}

wait_synced() {
    for _ in $(seq 1 120); do
        if "$GEOUL" status --admin "http://127.0.0.1:$((BASE + 1000))" --json 2>/dev/null |
            python3 2>/dev/null -c '
import json, sys
s = json.load(sys.stdin)
members = s.get("members", [])
alive = [m for m in members if m.get("state") == "alive"]
tables = s.get("tables", {})
synced = bool(tables) and all(
    t["slots"]["syncing"] == 0 and t["slots"]["synced"] > 0 for t in tables.values())
healthy = all(v["health"] == "healthy" for m in alive for v in m.get("services", {}).values())
sys.exit(0 if len(alive) == 3 and synced and healthy else 1)'; then
            return 0
        fi
        sleep 1
    done
    echo "cluster did not converge; last node log lines:" >&2
    for i in 1 2 3; do tail -n 5 "$WORK/node-$i.log" >&2; done
    return 1
}

stop_all() {
    if [ -s "$WORK/node-3.pid" ]; then PIDS[3]="$(cat "$WORK/node-3.pid")"; rm -f "$WORK/node-3.pid"; fi
    for i in 1 2 3; do kill "${PIDS[$i]}" 2>/dev/null || true; done
    for i in 1 2 3; do wait "${PIDS[$i]}" 2>/dev/null || true; done
    rm -rf "$WORK/data"
}

# run NAME MEMORY_KIB ITERATIONS FAILOVER(yes|no) LOAD-FLAGS...
run() {
    local name="$1" mem="$2" iters="$3" failover="$4"
    shift 4
    [ "$failover" = yes ] || failover=""
    local config="$WORK/$name.toml"
    # Every simulated player logs in from this one address: lift the
    # per-source login limit (meant for one attacker's address) for the run.
    printf '[auth]\n[auth.argon2]\nmemory_kib = %s\niterations = %s\nparallelism = 1\n[auth.source_limit]\nburst = 1000000\nper_second = 1000000.0\n' \
        "$mem" "$iters" > "$config"
    for i in 1 2 3; do start_node "$i" "$config"; done
    wait_synced
    echo
    echo "== $name: argon2id m=${mem} KiB t=${iters} p=1${failover:+; node-3 killed (-9) at 1/3, restarted at 2/3}"
    if [ -n "$failover" ]; then
        (
            # Registration takes a while: wait for the lifecycle phase's
            # progress line.
            until grep -q "players:" "$WORK/load.err" 2>/dev/null; do sleep 0.2; done
            sleep $((DURATION_S / 3))
            kill -9 "${PIDS[3]}"
            echo "   [$(date +%T)] killed node-3" >&2
            sleep $((DURATION_S / 3))
            start_node 3 "$config"
            # This subshell's PIDS is a copy: tell the parent.
            echo "${PIDS[3]}" > "$WORK/node-3.pid"
            echo "   [$(date +%T)] restarted node-3" >&2
        ) &
        local chaos=$!
    fi
    : > "$WORK/load.err"
    "$GEOUL" load auth --cluster "$SEEDS" --cluster-secret-file "$WORK/secret" \
        --duration "${DURATION_S}s" "$@" 2> "$WORK/load.err"
    # The last progress line of each phase.
    tr '\r' '\n' < "$WORK/load.err" | grep -E "^(register|players):" | awk -F: '{last[$1]=$0} END {print "   " last["register"]; print "   " last["players"]}'
    if [ -n "$failover" ]; then wait "$chaos" || true; fi
    stop_all
}

echo "geoul auth benchmark: 3 nodes and the load generator on $(nproc) cores, ${DURATION_S}s lifecycle per run"
LOGINS=(--players "$PLAYERS" --session-length 5s --refresh-every 3s)
VALIDATIONS=(--players "$VALIDATORS" --moves-per-min 12000 --session-length 1h --refresh-every 1h --ramp 10s)
run logins-defaults 19456 2 no "${LOGINS[@]}"
run logins-light 8192 1 no "${LOGINS[@]}"
run validations 19456 2 no "${VALIDATIONS[@]}"
run validations-failover 19456 2 yes "${VALIDATIONS[@]}"
run validations-moderate 19456 2 no --players "$VALIDATORS" --moves-per-min 600 \
    --session-length 1h --refresh-every 1h --ramp 10s
