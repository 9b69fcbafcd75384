#!/usr/bin/env bash
# Instance directory measurement (issue 8), geoul and PostgreSQL in one run:
#   1. three local nodes hosting `instance-directory` with every entry on
#      every node (All): load INSTANCES live instances through the
#      ServiceRef, memory per entry (node RSS before/after, and the table's
#      own bytes), then closed-loop renewals, updates, the spectator search
#      and a range query (`geoul bench dir`, CLIENTS clients, DURATION_S each);
#   2. the same cluster with two copies per entry (Factor(2)): load, then the
#      two searches (scatter-gather);
#   3. PostgreSQL from the Debian packages (installed if missing), one local
#      server with the indexes we would give it, the same rows and the same
#      queries, renewals and updates through pgbench at the same client
#      count; p50/p99 from pgbench's per-transaction log.
# Builds the release binary first. Everything listens on loopback only.
#   scripts/bench-dir.sh [INSTANCES] [CLIENTS] [DURATION_S]
# e.g.  scripts/bench-dir.sh 1000000 8 15
set -euo pipefail
cd "$(dirname "$0")/.."

INSTANCES="${1:-1000000}"
CLIENTS="${2:-8}"
DURATION_S="${3:-15}"
BASE=7501
PG_PORT=7599

cargo build --release -p geoul
GEOUL="$PWD/target/release/geoul"
WORK="$(mktemp -d /tmp/geoul-bench-dir.XXXXXX)"
chmod 755 "$WORK"
PIDS=()
PG_BIN=""
cleanup() {
    for pid in "${PIDS[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
    if [ -n "$PG_BIN" ] && [ -d "$WORK/pg" ]; then
        runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$WORK/pg" -m immediate stop >/dev/null 2>&1 || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
head -c 32 /dev/urandom | base64 > "$WORK/secret"
SEEDS="127.0.0.1:$BASE,127.0.0.1:$((BASE + 1)),127.0.0.1:$((BASE + 2))"
ADMINS="http://127.0.0.1:$((BASE + 1000)),http://127.0.0.1:$((BASE + 1001)),http://127.0.0.1:$((BASE + 1002))"

start_cluster() {
    local config="$1"
    for i in 1 2 3; do
        "$GEOUL" node --config "$config" --name "node-$i" \
            --bind "127.0.0.1:$((BASE + i - 1))" --admin "127.0.0.1:$((BASE + 1000 + i - 1))" \
            --seeds "$SEEDS" --data-dir "$WORK/data/node-$i" \
            --cluster-secret-file "$WORK/secret" --services instance-directory \
            >> "$WORK/node-$i.log" 2>&1 &
        PIDS[$i]=$!
    done
    for _ in $(seq 1 120); do
        if "$GEOUL" status --admin "http://127.0.0.1:$((BASE + 1000))" --json 2>/dev/null |
            python3 2>/dev/null -c '
import json, sys
s = json.load(sys.stdin)
alive = [m for m in s.get("members", []) if m.get("state") == "alive"]
tables = s.get("tables", {})
synced = bool(tables) and all(t["slots"]["syncing"] == 0 for t in tables.values())
healthy = all(v["health"] == "healthy" for m in alive for v in m.get("services", {}).values())
sys.exit(0 if len(alive) == 3 and synced and healthy else 1)'; then
            return 0
        fi
        sleep 1
    done
    echo "cluster did not converge" >&2
    for i in 1 2 3; do tail -n 5 "$WORK/node-$i.log" >&2; done
    return 1
}

stop_cluster() {
    for i in 1 2 3; do kill "${PIDS[$i]}" 2>/dev/null || true; done
    for i in 1 2 3; do wait "${PIDS[$i]}" 2>/dev/null || true; done
    PIDS=()
    rm -rf "$WORK/data"
}

rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }

table_bytes() {
    curl -s "http://127.0.0.1:$((BASE + 1000))/metrics" |
        awk '/^geoul_table_bytes\{.*dir.instances/ {print $2}'
}

echo "== geoul, All (every entry on each of 3 nodes): $INSTANCES instances, $CLIENTS clients, ${DURATION_S}s per phase"
printf '[dir]\n' > "$WORK/all.toml"
start_cluster "$WORK/all.toml"
RSS_BEFORE=$(rss_kib "${PIDS[1]}")
"$GEOUL" bench dir --cluster "$SEEDS" --cluster-secret-file "$WORK/secret" \
    --instances "$INSTANCES" --clients "$CLIENTS" --duration "${DURATION_S}s" \
    --admins "$ADMINS" --copies 3 | tee "$WORK/geoul-all.txt"
RSS_AFTER=$(rss_kib "${PIDS[1]}")
BYTES=$(table_bytes)
python3 -c "
n = $INSTANCES
print(f'memory per entry (node-1): RSS {($RSS_AFTER - $RSS_BEFORE) * 1024 / n:.0f} B '
      f'({$RSS_BEFORE / 1024:.0f} -> {$RSS_AFTER / 1024:.0f} MiB); '
      f'key + document bytes {float(\"${BYTES:-0}\") / n:.0f} B')"
stop_cluster

echo "== geoul, Factor(2) (two copies per entry, searches scatter-gather)"
printf '[dir]\ncopies = 2\n' > "$WORK/f2.toml"
start_cluster "$WORK/f2.toml"
"$GEOUL" bench dir --cluster "$SEEDS" --cluster-secret-file "$WORK/secret" \
    --instances "$INSTANCES" --clients "$CLIENTS" --duration "${DURATION_S}s" \
    --admins "$ADMINS" --copies 2 --skip renew,update | tee "$WORK/geoul-f2.txt"
stop_cluster

echo "== PostgreSQL (one local server, same rows and queries, pgbench with $CLIENTS clients)"
PG_BIN="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
if [ -z "$PG_BIN" ] || ! command -v pgbench >/dev/null; then
    echo "installing PostgreSQL from the Debian packages"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql postgresql-contrib >/dev/null
    PG_BIN="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)"
fi
mkdir -p "$WORK/pg" "$WORK/pgsock" "$WORK/pglog"
chown postgres "$WORK/pg" "$WORK/pgsock" "$WORK/pglog"
runuser -u postgres -- "$PG_BIN/initdb" -D "$WORK/pg" --auth=trust -U postgres >/dev/null
cat >> "$WORK/pg/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$WORK/pgsock'
shared_buffers = 1GB
synchronous_commit = off
max_connections = 100
EOF
runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$WORK/pg" -l "$WORK/pgsock/server.log" -w start >/dev/null
PSQL=(psql -X -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -v ON_ERROR_STOP=1)
"$GEOUL" bench dir --cluster "$SEEDS" --admins x --instances "$INSTANCES" --emit-csv "$WORK/instances.csv"
"${PSQL[@]}" <<EOF
CREATE TABLE instances (
    id text PRIMARY KEY, addr text NOT NULL, mode text NOT NULL, region text NOT NULL,
    map text, players int NOT NULL, max_players int NOT NULL, spectators int NOT NULL,
    state text NOT NULL, rating double precision, started_at bigint NOT NULL,
    expires_at bigint NOT NULL);
\copy instances FROM '$WORK/instances.csv' CSV
CREATE INDEX instances_search ON instances (mode, region, state, rating DESC);
CREATE INDEX instances_rating ON instances (rating);
CREATE INDEX instances_expires ON instances (expires_at);
VACUUM ANALYZE instances;
EOF
"${PSQL[@]}" -t -c "SELECT 'memory per entry: table + indexes ' ||
    round(pg_total_relation_size('instances')::numeric / $INSTANCES) || ' B (heap ' ||
    round(pg_relation_size('instances')::numeric / $INSTANCES) || ' B)'"
NOW=$(( $(date +%s) * 1000 ))
COLS="id, addr, mode, region, map, players, max_players, spectators, state, rating, started_at, expires_at"
cat > "$WORK/search.sql" <<EOF
SELECT $COLS FROM instances WHERE mode = 'ranked' AND region = 'eu' AND state = 'playing' AND spectators < 50 AND expires_at > $NOW ORDER BY rating DESC LIMIT 20;
EOF
cat > "$WORK/search_range.sql" <<EOF
SELECT $COLS FROM instances WHERE rating >= 1500 AND rating < 1510 AND expires_at > $NOW ORDER BY rating DESC LIMIT 20;
EOF
cat > "$WORK/renew.sql" <<EOF
\set i random(0, $((INSTANCES - 1)))
UPDATE instances SET expires_at = expires_at + 1000 WHERE id = 'inst-' || lpad(:i::text, 7, '0');
EOF
cat > "$WORK/update.sql" <<EOF
\set i random(0, $((INSTANCES - 1)))
\set p random(0, 10)
\set s random(0, 199)
UPDATE instances SET players = :p, spectators = :s WHERE id = 'inst-' || lpad(:i::text, 7, '0');
EOF
printf '%-14s %10s %10s %9s %9s %9s\n' PHASE OK OPS/S "P50 MS" "P99 MS" "MAX MS"
for phase in renew update search search_range; do
    rm -f "$WORK/pglog/"*
    if ! (cd "$WORK/pglog" && pgbench -n -h 127.0.0.1 -p "$PG_PORT" -U postgres \
        -c "$CLIENTS" -j 2 -T "$DURATION_S" -f "$WORK/$phase.sql" -l --log-prefix=pg postgres \
        > "$WORK/pgbench-$phase.out" 2>&1); then
        echo "pgbench $phase failed:" >&2
        tail -n 5 "$WORK/pgbench-$phase.out" >&2
        exit 1
    fi
    python3 - "$phase" "$DURATION_S" "$WORK"/pglog/pg* <<'EOF'
import sys
phase, secs, files = sys.argv[1], float(sys.argv[2]), sys.argv[3:]
lat = []
for f in files:
    for line in open(f):
        parts = line.split()
        if len(parts) >= 3:
            lat.append(int(parts[2]) / 1000.0)
lat.sort()
if not lat:
    print(f"{phase:<14} no transactions")
    sys.exit(0)
pick = lambda p: lat[min(len(lat) - 1, int(len(lat) * p))]
print(f"{phase:<14} {len(lat):>10} {len(lat) / secs:>10.0f} {pick(0.50):>9.2f} {pick(0.99):>9.2f} {lat[-1]:>9.2f}")
EOF
done
