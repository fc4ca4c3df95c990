#!/usr/bin/env bash
# Cross-node geofenced broadcast: 3 nodes on PostgreSQL + NATS, then 1 node on the same
# PostgreSQL, then 1 node on SQLite; the same N, K, R; Mosquitto beside each.
set -euo pipefail
mkdir -p "${OUT:-/tmp/vbc}"
cd "$(dirname "$0")/../.."
B=./target/release
N=${N:-3000}; K=${K:-2000}; R=${R:-3}
ulimit -n "$(ulimit -Hn)"
export PW=load-admin-password-1
DB=vigil_bench_cluster
psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" postgres
psql -h 127.0.0.1 -U postgres -qc "CREATE DATABASE $DB" postgres
PG=postgres://postgres@127.0.0.1:5432/$DB
VIGIL_DATABASE_URL=$PG $B/vigil admin create-user --email admin@load.example --name Admin --org LOAD \
  --role org_admin --system-admin --password-env PW >/dev/null
node() { # id port [nats]
  VIGIL_DATABASE_URL=$PG VIGIL_BIND=127.0.0.1:$2 VIGIL_NODE_ID=$1 VIGIL_NATS_URL=${3:-} \
    VIGIL_ACCESS_TOKEN_TTL_SECS=14400 VIGIL_DB_MAX_CONNECTIONS=10 RUST_LOG=warn \
    $B/vigil serve >${OUT:-/tmp/vbc}/$1.log 2>&1 & echo $! >${OUT:-/tmp/vbc}/$1.pid
}
ready() { for _ in $(seq 600); do curl -sf http://127.0.0.1:$1/readyz >/dev/null && return 0; sleep 0.2; done; echo "not ready $1"; exit 1; }
stopall() { for f in ${OUT:-/tmp/vbc}/*.pid; do kill "$(cat "$f")" 2>/dev/null || true; rm -f "$f"; done; sleep 4; }
NATS=nats://127.0.0.1:4222
node n1 18701 $NATS; ready 18701; node n2 18702 $NATS; node n3 18703 $NATS; ready 18702; ready 18703
echo "== setup $N staff"; date
$B/vigil-load setup --url http://127.0.0.1:18701 --admin-email admin@load.example --admin-password-env PW \
  --org LOADORG --users $N --areas 4 --concurrency 8 --out ${OUT:-/tmp/vbc}/users.json >${OUT:-/tmp/vbc}/setup.log 2>&1
$B/vigil-load login --url http://127.0.0.1:18701 --users-file ${OUT:-/tmp/vbc}/users.json --count $N --out ${OUT:-/tmp/vbc}/tokens.json >${OUT:-/tmp/vbc}/login.log 2>&1
stopall
echo "== cluster of 3"; date
node n1 18701 $NATS; ready 18701; node n2 18702 $NATS; node n3 18703 $NATS; ready 18702; ready 18703
$B/vigil-load broadcast --url http://127.0.0.1:18701 --spread http://127.0.0.1:18701,http://127.0.0.1:18702,http://127.0.0.1:18703 \
  --users-file ${OUT:-/tmp/vbc}/users.json --tokens-file ${OUT:-/tmp/vbc}/tokens.json -n $N -k $K -r $R \
  --peer-mqtt 127.0.0.1:1883 --peer-pid "$(pgrep -x mosquitto)" --server-pid "$(cat ${OUT:-/tmp/vbc}/n1.pid)" \
  --json ${OUT:-/tmp/vbc}/cluster.json >${OUT:-/tmp/vbc}/cluster.md 2>${OUT:-/tmp/vbc}/cluster.err
for n in n1 n2 n3; do echo "$n RSS: $(grep VmRSS /proc/$(cat ${OUT:-/tmp/vbc}/$n.pid)/status)"; curl -s http://127.0.0.1:1870${n#n}/metrics | grep -E "^vigil_cluster_(hints|track|caught_up_from)" ; done > ${OUT:-/tmp/vbc}/cluster-nodes.txt
stopall
echo "== one node, PostgreSQL"; date
node solo 18701; ready 18701
$B/vigil-load broadcast --url http://127.0.0.1:18701 \
  --users-file ${OUT:-/tmp/vbc}/users.json --tokens-file ${OUT:-/tmp/vbc}/tokens.json -n $N -k $K -r $R \
  --peer-mqtt 127.0.0.1:1883 --peer-pid "$(pgrep -x mosquitto)" --server-pid "$(cat ${OUT:-/tmp/vbc}/solo.pid)" \
  --json ${OUT:-/tmp/vbc}/pg.json >${OUT:-/tmp/vbc}/pg.md 2>${OUT:-/tmp/vbc}/pg.err
stopall
echo "== one node, SQLite"; date
rm -rf ${OUT:-/tmp/vbc}/sq; mkdir -p ${OUT:-/tmp/vbc}/sq
SQ=sqlite://${OUT:-/tmp/vbc}/sq/vigil.db
VIGIL_DATABASE_URL=$SQ $B/vigil admin create-user --email admin@load.example --name Admin --org LOAD \
  --role org_admin --system-admin --password-env PW >/dev/null
PG=$SQ node sq 18704; ready 18704
$B/vigil-load setup --url http://127.0.0.1:18704 --admin-email admin@load.example --admin-password-env PW \
  --org LOADORG --users $N --areas 4 --concurrency 8 --out ${OUT:-/tmp/vbc}/users-sq.json >${OUT:-/tmp/vbc}/setup-sq.log 2>&1
$B/vigil-load login --url http://127.0.0.1:18704 --users-file ${OUT:-/tmp/vbc}/users-sq.json --count $N --out ${OUT:-/tmp/vbc}/tokens-sq.json >${OUT:-/tmp/vbc}/login-sq.log 2>&1
stopall; PG=$SQ node sq 18704; ready 18704
$B/vigil-load broadcast --url http://127.0.0.1:18704 \
  --users-file ${OUT:-/tmp/vbc}/users-sq.json --tokens-file ${OUT:-/tmp/vbc}/tokens-sq.json -n $N -k $K -r $R \
  --peer-mqtt 127.0.0.1:1883 --peer-pid "$(pgrep -x mosquitto)" --server-pid "$(cat ${OUT:-/tmp/vbc}/sq.pid)" \
  --json ${OUT:-/tmp/vbc}/sqlite.json >${OUT:-/tmp/vbc}/sqlite.md 2>${OUT:-/tmp/vbc}/sqlite.err
stopall
echo "== done"; date
