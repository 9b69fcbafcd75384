#!/usr/bin/env bash
# ServiceRef overhead benchmark (DESIGN.md §14: ServiceRef::call <= 10 % over a
# raw kv call): a local 3-node geoul cluster (2 copies per key), kv SET at
# quorum and GET through bare connections, ServiceRefs and ServiceRefs without
# a session. No peer system to install. Builds the release binary and runs
#   exec target/release/geoul bench call "$@"
# e.g.  scripts/bench-call.sh --clients 50 --duration 15s --rounds 3
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release -p geoul
exec target/release/geoul bench call "$@"
