#!/usr/bin/env bash
# 100,000 idle WebSocket sessions across six cluster nodes on PostgreSQL + NATS: one
# `vigil-load connect` per node (one process may hold 20,000 files here), all at once; each
# measures its own node's RSS per session. Uses the users of run.sh's database.
set -euo pipefail
mkdir -p "${OUT:-/tmp/vbc}"
cd "$(dirname "$0")/../.."
B=./target/release
PER=${PER:-16667}
ulimit -n "$(ulimit -Hn)"
DB=vigil_bench_cluster
PG=postgres://postgres@127.0.0.1:5432/$DB
NATS=nats://127.0.0.1:4222
node() { # id port
  VIGIL_DATABASE_URL=$PG VIGIL_BIND=127.0.0.1:$2 VIGIL_NODE_ID=$1 VIGIL_NATS_URL=$NATS \
    VIGIL_ACCESS_TOKEN_TTL_SECS=14400 VIGIL_DB_MAX_CONNECTIONS=8 RUST_LOG=warn \
    $B/vigil serve >${OUT:-/tmp/vbc}/$1.log 2>&1 & echo $! >${OUT:-/tmp/vbc}/$1.pid
}
ready() { for _ in $(seq 600); do curl -sf http://127.0.0.1:$1/readyz >/dev/null && return 0; sleep 0.2; done; echo "not ready $1"; exit 1; }
stopall() { for f in ${OUT:-/tmp/vbc}/*.pid; do kill "$(cat "$f")" 2>/dev/null || true; rm -f "$f"; done; sleep 4; }
for i in 1 2 3 4 5 6; do node s$i 1871$i; done
for i in 1 2 3 4 5 6; do ready 1871$i; done
$B/vigil-load login --url http://127.0.0.1:18711 --users-file ${OUT:-/tmp/vbc}/users.json --count 600 --out ${OUT:-/tmp/vbc}/tokens-600.json >${OUT:-/tmp/vbc}/login-600.log 2>&1
echo "== connecting $((PER * 6)) sessions"; date
loads=()
for i in 1 2 3 4 5 6; do
  $B/vigil-load connect --url http://127.0.0.1:1871$i --users-file ${OUT:-/tmp/vbc}/users.json \
    --tokens-file ${OUT:-/tmp/vbc}/tokens-600.json -n $PER --concurrency 100 --hold-secs 30 \
    --server-pid "$(cat ${OUT:-/tmp/vbc}/s$i.pid)" --json ${OUT:-/tmp/vbc}/sessions-$i.json >${OUT:-/tmp/vbc}/sessions-$i.md 2>${OUT:-/tmp/vbc}/sessions-$i.err &
  loads+=($!)
done
wait "${loads[@]}"
stopall
echo "== done"; date
