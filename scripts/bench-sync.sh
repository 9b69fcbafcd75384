#!/usr/bin/env bash
# Sync benchmark (DESIGN.md §14): full sync of --keys entries to a new geoul node
# against a Redis full resync of the same data to a new replica, in the same
# run; then geoul's catch-up after a restart with 10 % new keys.
# Installs redis-server if missing (without starting its system service),
# builds the release binary and runs
#   exec target/release/geoul bench sync --redis on "$@"
# e.g.  scripts/bench-sync.sh --keys 1000000
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=lib/install-redis.sh
source scripts/lib/install-redis.sh

install_redis
cargo build --release -p geoul
exec target/release/geoul bench sync --redis on "$@"
