# Sourced by the cluster scripts here: start `vigil serve` nodes in the background, wait for
# them, stop them all. Reports and logs go to $OUT (default /tmp/vbc).
OUT=${OUT:-/tmp/vbc}
mkdir -p "$OUT"
B=./target/release
NATS=${NATS:-nats://127.0.0.1:4222}

# node ID PORT DATABASE_URL [NATS_URL]: more VIGIL_* settings in NODE_ENV ("K=V K=V").
node() {
  # shellcheck disable=SC2086
  env VIGIL_DATABASE_URL="$3" VIGIL_BIND="127.0.0.1:$2" VIGIL_NODE_ID="$1" VIGIL_NATS_URL="${4:-}" \
    VIGIL_ACCESS_TOKEN_TTL_SECS=14400 RUST_LOG=warn ${NODE_ENV:-} \
    "$B/vigil" serve >"$OUT/$1.log" 2>&1 &
  echo $! >"$OUT/$1.pid"
}

# ready PORT: waits for /readyz (two minutes at most).
ready() {
  for _ in $(seq 600); do
    curl -sf "http://127.0.0.1:$1/readyz" >/dev/null && return 0
    sleep 0.2
  done
  echo "node on port $1 not ready; see $OUT/*.log" >&2
  exit 1
}

# stopall: SIGTERM to every node started, then a moment to drain.
stopall() {
  for f in "$OUT"/*.pid; do
    [ -e "$f" ] || continue
    kill "$(cat "$f")" 2>/dev/null || true
    rm -f "$f"
  done
  sleep 4
}

# fresh_pg NAME: (re)creates the PostgreSQL database NAME on 127.0.0.1 and sets PG to its URL.
fresh_pg() {
  psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS $1 WITH (FORCE)" postgres
  psql -h 127.0.0.1 -U postgres -qc "CREATE DATABASE $1" postgres
  PG=postgres://postgres@127.0.0.1:5432/$1
}

ulimit -n "$(ulimit -Hn)"
export PW=load-admin-password-1
