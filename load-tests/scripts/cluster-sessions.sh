#!/usr/bin/env bash
# 100,000 idle WebSocket sessions across six cluster nodes on PostgreSQL + NATS: one
# `vigil-load connect` per node (one process may hold 20,000 files here), all at once; each
# measures its own node's RSS per session. Uses the database and users that cluster-broadcast.sh left.
set -euo pipefail
cd "$(dirname "$0")/../.."
. load-tests/scripts/nodes.sh
PER=${PER:-16667}
DB=vigil_bench_cluster
PG=postgres://postgres@127.0.0.1:5432/$DB
export NODE_ENV="VIGIL_DB_MAX_CONNECTIONS=8"
for i in 1 2 3 4 5 6; do node s$i 1871$i $PG $NATS; done
for i in 1 2 3 4 5 6; do ready 1871$i; done
$B/vigil-load login --url http://127.0.0.1:18711 --users-file $OUT/users.json --count 600 --out $OUT/tokens-600.json >$OUT/login-600.log 2>&1
echo "== connecting $((PER * 6)) sessions"; date
loads=()
for i in 1 2 3 4 5 6; do
  $B/vigil-load connect --url http://127.0.0.1:1871$i --users-file $OUT/users.json \
    --tokens-file $OUT/tokens-600.json -n $PER --concurrency 100 --hold-secs 30 \
    --server-pid "$(cat $OUT/s$i.pid)" --json $OUT/sessions-$i.json >$OUT/sessions-$i.md 2>$OUT/sessions-$i.err &
  loads+=($!)
done
wait "${loads[@]}"
stopall
echo "== done"; date
