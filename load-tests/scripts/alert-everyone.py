"""An alert to everyone in a deployment of N people: POST /alerts -> 201 time (the alert, its
ledger and every copy committed), 3 alerts. The N staff (no passwords) are written straight into
the database with SQL, as a roster import would leave them: the import itself is not what is
measured (and takes minutes at this size). Usage: alert-everyone.py ADMIN_URL NODE_URL N DB_URL"""
import json, sqlite3, subprocess, sys, time, urllib.request

base, node_url, n, db_url = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]

def call(method, url, body=None, token=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("content-type", "application/json")
    if token:
        req.add_header("authorization", "Bearer " + token)
    with urllib.request.urlopen(req, timeout=600) as r:
        return r.status, json.loads(r.read() or b"null")

_, t = call("POST", base + "/api/v1/auth/login", {"email": "admin@load.example", "password": "load-admin-password-1"})
admin = t["access_token"]
stamp = str(int(time.time()))
_, org = call("POST", base + "/api/v1/organisations", {"name": "Everyone " + stamp, "short_name": "E" + stamp[-6:]}, admin)
org = org["id"]
started = time.time()
now = int(time.time() * 1000)
statements = [
    f"INSERT INTO users (org_id, email, name, created_at, updated_at) SELECT {org}, 'p' || g || '@e{stamp}.example', 'Person ' || g, {now}, {now} FROM series AS s(g)",
    f"INSERT INTO user_roles (user_id, role, granted_at) SELECT id, 'staff', {now} FROM users WHERE org_id = {org}",
    f"INSERT INTO message_seqs (user_id, seq) SELECT id, 0 FROM users WHERE org_id = {org} ON CONFLICT (user_id) DO NOTHING",
]
if db_url.startswith("postgres"):
    series = f"generate_series(1, {n})"
    sql = ";\n".join(st.replace("series AS s(g)", f"{series} AS s(g)") for st in statements)
    subprocess.run(["psql", "-q", "-v", "ON_ERROR_STOP=1", db_url, "-c", "BEGIN; " + sql + "; COMMIT;"], check=True)
else:
    db = sqlite3.connect(db_url.removeprefix("sqlite://"), timeout=60)
    cte = f"WITH RECURSIVE series(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM series WHERE g < {n}) "
    with db:
        db.execute(cte + statements[0].replace("FROM series AS s(g)", "FROM series"))
        for st in statements[1:]:
            db.execute(st)
    db.close()
print(f"{n} staff written in {time.time() - started:.1f} s", flush=True)
_, adv = call("POST", f"{base}/api/v1/organisations/{org}/users", {"email": f"adv@e{stamp}.example", "name": "Adviser", "roles": ["adviser"], "password": "load-admin-password-1"}, admin)
_, t = call("POST", node_url + "/api/v1/auth/login", {"email": f"adv@e{stamp}.example", "password": "load-admin-password-1"})
adviser = t["access_token"]
target = {"organisations": [org], "roles": ["staff"]}
for r in range(3):
    t0 = time.time()
    _, p = call("POST", node_url + "/api/v1/alerts/preview", target, adviser)
    preview = time.time() - t0
    body = {"translations": {"en": {"title": f"Everyone {r}", "body": "Stay indoors until further notice."}}, "severity": "severe", "sms_fallback": False, "target": target}
    t0 = time.time()
    status, a = call("POST", node_url + "/api/v1/alerts", body, adviser)
    took = time.time() - t0
    print(f"alert {r + 1}/3: preview {p['total']} people in {preview * 1000:.0f} ms; POST -> {status} in {took * 1000:.0f} ms for {a['recipient_count']} recipients", flush=True)
    time.sleep(5)
