#!/usr/bin/env bash
# kv benchmark (DESIGN.md §14): a local 3-node geoul cluster (2 copies per key)
# against a Redis primary + replica in the same run, then memory per key.
# Installs redis-server (with redis-cli) if missing, without starting its system
# service, builds the release binary and runs
#   exec target/release/geoul bench kv --redis on "$@"
# e.g.  scripts/bench-kv.sh --clients 50 --duration 15s --memory-keys 1000000
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=lib/install-redis.sh
source scripts/lib/install-redis.sh

install_redis
cargo build --release -p geoul
exec target/release/geoul bench kv --redis on "$@"
