#!/usr/bin/env bash
# An alert to everyone in a deployment of N people: 3 cluster nodes on PostgreSQL + NATS, then
# one node on the same PostgreSQL, then one node on SQLite (a new organisation of N each time,
# written with SQL by alert-everyone.py).
set -euo pipefail
cd "$(dirname "$0")/../.."
. load-tests/scripts/nodes.sh
N=${N:-600000}
fresh_pg vigil_bench_everyone
SQ=sqlite://$OUT/everyone/vigil.db
rm -rf "$OUT/everyone"; mkdir -p "$OUT/everyone"
for db in $PG $SQ; do
  VIGIL_DATABASE_URL=$db $B/vigil admin create-user --email admin@load.example --name Admin --org LOAD \
    --role org_admin --system-admin --password-env PW >/dev/null
done
export NODE_ENV="VIGIL_ROSTER_MAX_BYTES=67108864 VIGIL_REQUEST_TIMEOUT_SECS=600"
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
