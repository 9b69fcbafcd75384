#!/usr/bin/env bash
# Distributed query benchmark (DESIGN.md §14: spectator search on 1M entries,
# p99 <= 10 ms): a local 5-node geoul cluster with indexed kv documents, loaded
# with --docs game-instance documents, then eq / range / search / top-k query
# phases. No peer system to install. Builds the release binary and runs
#   exec target/release/geoul bench query "$@"
# e.g.  scripts/bench-query.sh --docs 1000000 --clients 8 --duration 15s
#       scripts/bench-query.sh --docs 20000 --duration 3s     (a quick smoke test)
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release -p geoul
exec target/release/geoul bench query "$@"
