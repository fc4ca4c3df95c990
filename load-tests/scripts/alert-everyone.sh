#!/usr/bin/env bash
# An alert to everyone in a deployment of N people: 3 cluster nodes on PostgreSQL + NATS, then
# one node on the same PostgreSQL, then one node on SQLite (a new organisation of N each time,
# written with SQL by alert-everyone.py).
set -euo pipefail
OUT=${OUT:-/tmp/vbc}; mkdir -p "$OUT"
cd "$(dirname "$0")/../.."
B=./target/release
N=${N:-600000}
ulimit -n "$(ulimit -Hn)"
export PW=load-admin-password-1
DB=vigil_bench_everyone
psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" postgres
psql -h 127.0.0.1 -U postgres -qc "CREATE DATABASE $DB" postgres
PG=postgres://postgres@127.0.0.1:5432/$DB
SQ=sqlite://$OUT/everyone/vigil.db
rm -rf "$OUT/everyone"; mkdir -p "$OUT/everyone"
for db in $PG $SQ; do
  VIGIL_DATABASE_URL=$db $B/vigil admin create-user --email admin@load.example --name Admin --org LOAD \
    --role org_admin --system-admin --password-env PW >/dev/null
done
node() { # id port db [nats]
  VIGIL_DATABASE_URL=$3 VIGIL_BIND=127.0.0.1:$2 VIGIL_NODE_ID=$1 VIGIL_NATS_URL=${4:-} \
    VIGIL_ROSTER_MAX_BYTES=67108864 VIGIL_REQUEST_TIMEOUT_SECS=600 RUST_LOG=warn \
    $B/vigil serve >"$OUT/$1.log" 2>&1 & echo $! >"$OUT/$1.pid"
}
ready() { for _ in $(seq 600); do curl -sf http://127.0.0.1:$1/readyz >/dev/null && return 0; sleep 0.2; done; echo "not ready $1"; exit 1; }
stopall() { for f in "$OUT"/*.pid; do kill "$(cat "$f")" 2>/dev/null || true; rm -f "$f"; done; sleep 4; }
NATS=nats://127.0.0.1:4222
echo "== 3 nodes, PostgreSQL + NATS"; date
node e1 18721 $PG $NATS; ready 18721; node e2 18722 $PG $NATS; node e3 18723 $PG $NATS; ready 18722; ready 18723
python3 load-tests/scripts/alert-everyone.py http://127.0.0.1:18721 http://127.0.0.1:18722 $N $PG
stopall
echo "== 1 node, PostgreSQL"; date
node e1 18721 $PG; ready 18721
python3 load-tests/scripts/alert-everyone.py http://127.0.0.1:18721 http://127.0.0.1:18721 $N $PG
stopall
echo "== 1 node, SQLite"; date
node e4 18724 $SQ; ready 18724
python3 load-tests/scripts/alert-everyone.py http://127.0.0.1:18724 http://127.0.0.1:18724 $N $SQ
stopall
echo "== done"; date
