#!/usr/bin/env bash
# Crash-detection benchmark (DESIGN.md §6, §14): geoul against Redis Cluster in
# the same run. Installs redis-server (with redis-cli) if missing, without starting
# its system service, builds the release binary and runs
#   exec target/release/geoul bench detect --redis on "$@"
# e.g.  scripts/bench-detect.sh --kills 20 --hog-seconds 60
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=lib/install-redis.sh
source scripts/lib/install-redis.sh

install_redis
cargo build --release -p geoul
exec target/release/geoul bench detect --redis on "$@"
