#!/usr/bin/env bash
# Cross-node geofenced broadcast: 3 nodes on PostgreSQL + NATS, then 1 node on the same
# PostgreSQL, then 1 node on SQLite; the same N, K, R; Mosquitto beside each.
set -euo pipefail
cd "$(dirname "$0")/../.."
. load-tests/scripts/nodes.sh
N=${N:-3000}; K=${K:-2000}; R=${R:-3}
fresh_pg vigil_bench_cluster
VIGIL_DATABASE_URL=$PG $B/vigil admin create-user --email admin@load.example --name Admin --org LOAD \
  --role org_admin --system-admin --password-env PW >/dev/null
export NODE_ENV="VIGIL_DB_MAX_CONNECTIONS=10"
node n1 18701 $PG $NATS; ready 18701; node n2 18702 $PG $NATS; node n3 18703 $PG $NATS; ready 18702; ready 18703
echo "== setup $N staff"; date
$B/vigil-load setup --url http://127.0.0.1:18701 --admin-email admin@load.example --admin-password-env PW \
  --org LOADORG --users $N --areas 4 --concurrency 8 --out $OUT/users.json >$OUT/setup.log 2>&1
$B/vigil-load login --url http://127.0.0.1:18701 --users-file $OUT/users.json --count $N --out $OUT/tokens.json >$OUT/login.log 2>&1
stopall
echo "== cluster of 3"; date
node n1 18701 $PG $NATS; ready 18701; node n2 18702 $PG $NATS; node n3 18703 $PG $NATS; ready 18702; ready 18703
$B/vigil-load broadcast --url http://127.0.0.1:18701 --spread http://127.0.0.1:18701,http://127.0.0.1:18702,http://127.0.0.1:18703 \
  --users-file $OUT/users.json --tokens-file $OUT/tokens.json -n $N -k $K -r $R \
  --peer-mqtt 127.0.0.1:1883 --peer-pid "$(pgrep -x mosquitto)" --server-pid "$(cat $OUT/n1.pid)" \
  --json $OUT/cluster.json >$OUT/cluster.md 2>$OUT/cluster.err
for n in n1 n2 n3; do echo "$n RSS: $(grep VmRSS /proc/$(cat $OUT/$n.pid)/status)"; curl -s http://127.0.0.1:1870${n#n}/metrics | grep -E "^vigil_cluster_(hints|track|caught_up_from)" ; done > $OUT/cluster-nodes.txt
stopall
echo "== one node, PostgreSQL"; date
node solo 18701 $PG; ready 18701
$B/vigil-load broadcast --url http://127.0.0.1:18701 \
  --users-file $OUT/users.json --tokens-file $OUT/tokens.json -n $N -k $K -r $R \
  --peer-mqtt 127.0.0.1:1883 --peer-pid "$(pgrep -x mosquitto)" --server-pid "$(cat $OUT/solo.pid)" \
  --json $OUT/pg.json >$OUT/pg.md 2>$OUT/pg.err
stopall
echo "== one node, SQLite"; date
rm -rf $OUT/sq; mkdir -p $OUT/sq
SQ=sqlite://$OUT/sq/vigil.db
VIGIL_DATABASE_URL=$SQ $B/vigil admin create-user --email admin@load.example --name Admin --org LOAD \
  --role org_admin --system-admin --password-env PW >/dev/null
node sq 18704 $SQ; ready 18704
$B/vigil-load setup --url http://127.0.0.1:18704 --admin-email admin@load.example --admin-password-env PW \
  --org LOADORG --users $N --areas 4 --concurrency 8 --out $OUT/users-sq.json >$OUT/setup-sq.log 2>&1
$B/vigil-load login --url http://127.0.0.1:18704 --users-file $OUT/users-sq.json --count $N --out $OUT/tokens-sq.json >$OUT/login-sq.log 2>&1
stopall; node sq 18704 $SQ; ready 18704
$B/vigil-load broadcast --url http://127.0.0.1:18704 \
  --users-file $OUT/users-sq.json --tokens-file $OUT/tokens-sq.json -n $N -k $K -r $R \
  --peer-mqtt 127.0.0.1:1883 --peer-pid "$(pgrep -x mosquitto)" --server-pid "$(cat $OUT/sq.pid)" \
  --json $OUT/sqlite.json >$OUT/sqlite.md 2>$OUT/sqlite.err
stopall
echo "== done"; date
