#!/usr/bin/env bash
# kv benchmark (DESIGN.md §14): a local 3-node geoul cluster (2 copies per key)
# against a Redis primary + replica in the same run, then memory per key.
# Installs redis-server (with redis-cli) if missing, without starting its system
# service, builds the release binary and runs
#   exec target/release/geoul bench kv --redis on "$@"
# e.g.  scripts/bench-kv.sh --clients 50 --duration 15s --memory-keys 1000000
set -euo pipefail
cd "$(dirname "$0")/.."

POLICY=/usr/sbin/policy-rc.d
SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    SUDO=(sudo)
fi

remove_policy() {
    "${SUDO[@]}" rm -f "$POLICY"
}

install_redis() {
    if command -v redis-server >/dev/null && command -v redis-cli >/dev/null; then
        return
    fi
    echo "bench-kv: installing redis-server (apt-get)" >&2
    # A policy-rc.d that exits 101 tells invoke-rc.d / deb-systemd-invoke not to
    # start the packaged service; ours is created only if none exists.
    local created=0
    if [ ! -e "$POLICY" ]; then
        trap remove_policy EXIT
        printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee "$POLICY" >/dev/null
        "${SUDO[@]}" chmod 755 "$POLICY"
        created=1
    fi
    "${SUDO[@]}" apt-get update -q
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q redis-server
    if [ "$created" -eq 1 ]; then
        remove_policy
        trap - EXIT
    fi
    if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
        echo "bench-kv: redis-server or redis-cli still missing after install" >&2
        exit 1
    fi
}

install_redis
cargo build --release -p geoul
exec target/release/geoul bench kv --redis on "$@"
