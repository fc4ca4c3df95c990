//! Three real `vigil serve` nodes on this machine's PostgreSQL and NATS, as a deployment runs
//! them: phones and consoles on different nodes, a node killed with `kill -9` in the middle of
//! a broadcast, and one that comes back. Each test has its own database (and so its own NATS
//! subjects and stream, named after it), removed when it ends.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};
use sqlx::Connection;

use crate::crash::{Vigil, admin_on, alerts_after, asleep_with_push, organisation, person};
use crate::fakes::FakePushService;
use crate::support::{Client, PASSWORD, PgDatabase, skipped};
use crate::ws::{Ws, fix};

/// A cluster's database and NATS; dropping it removes both the database and the stream.
struct Deployment {
    db: String,
    admin_email: String,
    nats: String,
    pg: PgDatabase,
}

impl Deployment {
    /// A fresh database with a system admin, or `None` (loudly) without PostgreSQL or NATS.
    async fn new() -> Option<Deployment> {
        let Ok(nats) = std::env::var("VIGIL_TEST_NATS_URL") else {
            skipped("cluster test", "VIGIL_TEST_NATS_URL is not set");
            return None;
        };
        let pg = PgDatabase::create("vigil_cluster_", "cluster test").await?;
        let admin_email = admin_on(&pg.url);
        Some(Deployment {
            db: pg.url.clone(),
            admin_email,
            nats,
            pg,
        })
    }

    /// Starts node `id` and waits until it is ready (connected and caught up).
    async fn node(&self, id: &str, extra: &[(&str, &str)]) -> Vigil {
        let vigil = self.spawn(id, extra);
        assert!(
            vigil.ready_within(Duration::from_secs(90)).await,
            "node {id} did not become ready"
        );
        vigil
    }

    /// Starts node `id` without waiting for it.
    fn spawn(&self, id: &str, extra: &[(&str, &str)]) -> Vigil {
        let mut env: Vec<(&str, &str)> = vec![
            ("VIGIL_NATS_URL", &self.nats),
            ("VIGIL_NODE_ID", id),
            ("VIGIL_LEASE_SECS", "2"),
            // Live traffic must come by hints here; the convergence check has its own test.
            ("VIGIL_CLUSTER_CONVERGE_SECS", "3600"),
            ("VIGIL_DB_MAX_CONNECTIONS", "6"),
            ("VIGIL_PUSH_ALLOW_INSECURE_LOCALHOST", "true"),
            ("VIGIL_ALERT_PUSH_AFTER_SECS", "4"),
        ];
        env.extend_from_slice(extra);
        Vigil::spawn(&self.db, &env)
    }

    /// Who holds the lease `name` now.
    async fn lease_holder(&self) -> BTreeMap<String, String> {
        let mut conn = sqlx::PgConnection::connect(&self.db)
            .await
            .expect("connect");
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT name, holder FROM leases WHERE expires_at > (extract(epoch from now()) * 1000)::bigint",
        )
        .fetch_all(&mut conn)
        .await
        .expect("leases");
        rows.into_iter().collect()
    }
}

impl Drop for Deployment {
    fn drop(&mut self) {
        let (nats, stream) = (self.nats.clone(), format!("VIGIL_{}_TRACK", self.pg.name));
        crate::support::clean_up(move || async move {
            if let Ok(client) = async_nats::connect(nats).await {
                let _ = async_nats::jetstream::new(client)
                    .delete_stream(stream)
                    .await;
            }
        });
    }
}

/// What a socket to a killed node still delivers, until the connection is reset or closed.
async fn until_cut(ws: &mut Ws) -> Vec<Value> {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    let mut got = Vec::new();
    while let Ok(Some(Ok(frame))) =
        tokio::time::timeout(Duration::from_secs(10), ws.socket.next()).await
    {
        match frame {
            Message::Text(t) => got.push(serde_json::from_str(&t).expect("json")),
            Message::Close(_) => break,
            _ => {}
        }
    }
    got
}

/// Alert number `n` to every staff member of the adviser's organisation; returns its id.
async fn evacuate(adviser: &Client, n: usize) -> i64 {
    let alert = json!({"translations": {"en": {"title": format!("Evacuate {n}"), "body": "Leave the compound now."}},
        "severity": "extreme", "target": {"roles": ["staff"]}});
    adviser.post("/api/v1/alerts", alert).await.expect(201)["id"]
        .as_i64()
        .expect("id")
}

/// Waits until `done` holds, polling; panics with `what` after a minute.
async fn eventually<F, Fut>(what: &str, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..600 {
        if done().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what}: not within a minute");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_mid_broadcast_loses_no_copy_and_doubles_none() {
    let Some(cluster) = Deployment::new().await else {
        return;
    };
    let push = FakePushService::start().await;
    // A starts first, so the fallback sweeps are its: they must move when it dies.
    let a = cluster.node("a", &[]).await;
    let deployment = &cluster;
    eventually("node a holds the fallback lease", || async move {
        let holders = deployment.lease_holder().await;
        holders
            .get("alert fallback")
            .is_some_and(|h| h.starts_with("a#"))
    })
    .await;
    let b = cluster.node("b", &[]).await;
    let c = cluster.node("c", &[]).await;
    let admin = Client::at(&b.url)
        .login(&cluster.admin_email, PASSWORD)
        .await;
    let org = organisation(&admin).await;
    let adviser = person(&admin, &b.url, org, &["adviser"]).await;
    // Phones on A (to be killed) and C, and some asleep with only web push.
    let mut on_a = Vec::new();
    let mut on_c = Vec::new();
    let mut asleep = Vec::new();
    for i in 0..10 {
        let staff = person(&admin, &b.url, org, &["staff"]).await;
        if i < 4 {
            let (ws, _) = Ws::hello_at(&a.url, &staff, 0).await;
            on_a.push((staff, ws));
        } else if i < 7 {
            let (ws, _) = Ws::hello_at(&c.url, &staff, 0).await;
            on_c.push((staff, ws));
        } else {
            asleep.push(asleep_with_push(&staff, &push).await);
        }
    }
    // Sent on B, the alert reaches the phones on A and on C live.
    let first_id = evacuate(&adviser, 0).await;
    let mut seen: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    let mut last_seq: BTreeMap<i64, i64> = BTreeMap::new();
    for (staff, ws) in on_a.iter_mut().chain(on_c.iter_mut()) {
        let m = ws.next_of("message").await;
        assert_eq!(
            (m["kind"].as_str(), m["payload"]["alert_id"].as_i64()),
            (Some("alert"), Some(first_id)),
            "{m}"
        );
        seen.entry(staff.user_id).or_default().push(first_id);
        last_seq.insert(staff.user_id, m["seq"].as_i64().expect("seq"));
    }

    // A broadcast of five more alerts, from B; A dies after the second.
    let mut ids = vec![first_id];
    for n in 1..=2 {
        ids.push(evacuate(&adviser, n).await);
    }
    a.kill_9();
    for n in 3..=5 {
        ids.push(evacuate(&adviser, n).await);
    }
    // What the phones on A read before it died, as far as it reached them.
    for (staff, ws) in &mut on_a {
        for m in until_cut(ws).await {
            if m["type"] == "message" && m["kind"] == "alert" {
                seen.entry(staff.user_id)
                    .or_default()
                    .push(m["payload"]["alert_id"].as_i64().expect("id"));
                last_seq.insert(staff.user_id, m["seq"].as_i64().expect("seq"));
            }
        }
    }
    // They reconnect to B or C and resume: every copy, exactly once, in order.
    let phones: Vec<Client> = on_a.iter().map(|(s, _)| s.clone()).collect();
    drop(on_a);
    for (i, staff) in phones.iter().enumerate() {
        let node = if i % 2 == 0 { &b.url } else { &c.url };
        let staff = staff.rebased(node);
        let resumed = alerts_after(node, &staff, last_seq[&staff.user_id]).await;
        let got = seen.entry(staff.user_id).or_default();
        got.extend(
            resumed
                .iter()
                .map(|m| m["payload"]["alert_id"].as_i64().expect("id")),
        );
        assert_eq!(
            *got, ids,
            "phone {} from A, resumed on {node}",
            staff.user_id
        );
    }
    // The phones on C were never cut: they have every one live, once.
    for (staff, ws) in &mut on_c {
        let got = seen.entry(staff.user_id).or_default();
        while got.len() < ids.len() {
            let m = ws.next_of("message").await;
            assert_eq!(m["kind"], "alert", "{m}");
            got.push(m["payload"]["alert_id"].as_i64().expect("id"));
        }
        assert_eq!(*got, ids, "phone {} on C", staff.user_id);
        ws.send(json!({"type": "ping", "ref": "end"})).await;
        assert_eq!(
            ws.next_of("pong").await["type"],
            "pong",
            "nothing more, nothing twice"
        );
    }
    // The fallback for the phones asleep goes on: the sweeps moved to B or C.
    let (sleepers, service, expected) = (&asleep, &push, ids.len());
    eventually("every sleeping phone pushed every alert", || async move {
        sleepers
            .iter()
            .all(|b| service.received_at(&b.endpoint).len() >= expected)
    })
    .await;
    for browser in &asleep {
        let mut pushed: Vec<i64> = push
            .received_at(&browser.endpoint)
            .iter()
            .map(|p| {
                p.json.as_ref().expect("json")["alert_id"]
                    .as_i64()
                    .expect("id")
            })
            .collect();
        pushed.sort_unstable();
        assert_eq!(pushed, ids, "one push per alert, none twice");
    }
    let holder = cluster.lease_holder().await;
    assert!(
        holder
            .get("alert fallback")
            .is_some_and(|h| h.starts_with("b#") || h.starts_with("c#")),
        "{holder:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sos_chat_goes_on_when_the_operators_node_dies() {
    let Some(cluster) = Deployment::new().await else {
        return;
    };
    let a = cluster.node("a", &[]).await;
    let b = cluster.node("b", &[]).await;
    let c = cluster.node("c", &[]).await;
    let admin = Client::at(&c.url)
        .login(&cluster.admin_email, PASSWORD)
        .await;
    let org = organisation(&admin).await;
    let operator = person(&admin, &a.url, org, &["operator"]).await;
    let staff = person(&admin, &c.url, org, &["staff"]).await;
    let (mut console, _) = Ws::hello_at(&a.url, &operator, 0).await;
    let (mut phone, _) = Ws::hello_at(&c.url, &staff, 0).await;

    // SOS pressed on C; the operator's console on A has it at once and claims it there.
    let case = staff
        .post("/api/v1/sos", json!({"note": "stopped at a checkpoint"}))
        .await
        .expect(201);
    let id = case["id"].as_i64().expect("id");
    let chat = case["conversation_id"].as_i64().expect("chat");
    let alarm = console.next_of("message").await;
    assert_eq!(
        (
            alarm["kind"].as_str(),
            alarm["payload"]["case"]["id"].as_i64()
        ),
        (Some("sos"), Some(id)),
        "{alarm}"
    );
    operator
        .post(&format!("/api/v1/sos/{id}/claim"), json!({}))
        .await
        .expect(200);
    let said = |n: usize| json!({"client_id": format!("m{n}"), "body": format!("message {n}")});
    staff
        .post(&format!("/api/v1/conversations/{chat}/messages"), said(1))
        .await
        .expect(201);
    let mut console_seq = 0;
    loop {
        let m = console.next_of("message").await;
        console_seq = m["seq"].as_i64().unwrap_or(console_seq);
        if m["kind"] == "chat" {
            assert_eq!(m["payload"]["body"], "message 1", "{m}");
            break;
        }
    }

    // A dies; the operator's console reconnects to B where it left off.
    a.kill_9();
    let operator = operator.rebased(&b.url);
    let (mut console, _) = Ws::hello_at(&b.url, &operator, console_seq).await;
    staff
        .post(&format!("/api/v1/conversations/{chat}/messages"), said(2))
        .await
        .expect(201);
    let mut bodies = Vec::new();
    while bodies.is_empty() {
        let m = console.next_of("message").await;
        if m["kind"] == "chat" {
            bodies.push(m["payload"]["body"].as_str().expect("body").to_string());
        }
    }
    assert_eq!(
        bodies,
        ["message 2"],
        "the next message, not the first again"
    );
    operator
        .post(
            &format!("/api/v1/conversations/{chat}/messages"),
            json!({"client_id": "op1", "body": "help is coming"}),
        )
        .await
        .expect(201);
    let mut heard = Vec::new();
    while !heard.contains(&"help is coming".to_string()) {
        let m = phone.next_of("message").await;
        if m["kind"] == "chat" {
            heard.push(m["payload"]["body"].as_str().expect("body").to_string());
        }
    }
    assert_eq!(heard.iter().filter(|b| *b == "help is coming").count(), 1);
    let case = operator.get(&format!("/api/v1/sos/{id}")).await.expect(200);
    assert_eq!(case["status"], "claimed", "{case}");
    drop(c);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_comes_back_has_caught_up_when_it_says_ready() {
    let Some(cluster) = Deployment::new().await else {
        return;
    };
    // Last positions are written only at shutdown here: a node learns them from the stream.
    let slow_flush = [("VIGIL_POSITION_FLUSH_MS", "3600000")];
    let a = cluster.node("a", &slow_flush).await;
    let b = cluster.node("b", &slow_flush).await;
    let admin = Client::at(&b.url)
        .login(&cluster.admin_email, PASSWORD)
        .await;
    let org = organisation(&admin).await;
    let adviser = person(&admin, &b.url, org, &["adviser"]).await;
    let operator = person(&admin, &b.url, org, &["operator"]).await;
    let staff = person(&admin, &b.url, org, &["staff"]).await;
    a.kill_9();

    // While A is down, the phone reports a position to B.
    let (mut phone, _) = Ws::hello_at(&b.url, &staff, 0).await;
    phone
        .send(json!({"type": "position", "ref": "p1", "fixes": [fix(9.5, 12.5, 1_000)]}))
        .await;
    assert_eq!(phone.next_of("ack").await["ref"], "p1");

    // A comes back; once ready, targeting there sees the position it never received.
    let a = cluster.node("a", &slow_flush).await;
    let adviser_a = adviser.rebased(&a.url);
    let circle = json!({"shapes": [{"type": "Feature", "properties": {"radius_m": 2000.0},
        "geometry": {"type": "Point", "coordinates": [12.5, 9.5]}}]});
    let preview = adviser_a
        .post("/api/v1/alerts/preview", circle.clone())
        .await
        .expect(200);
    assert_eq!(
        preview["total"], 1,
        "A caught up before it said ready: {preview}"
    );

    // An operator watching on A sees the phone's next move on B, live.
    let operator_a = operator.rebased(&a.url);
    let (mut feed, _) = Ws::hello_at(&a.url, &operator_a, 0).await;
    feed.send(json!({"type": "subscribe", "topic": "positions"}))
        .await;
    assert_eq!(feed.next_of("subscribed").await["type"], "subscribed");
    phone
        .send(json!({"type": "position", "ref": "p2", "fixes": [fix(9.51, 12.51, 500)]}))
        .await;
    assert_eq!(phone.next_of("ack").await["ref"], "p2");
    loop {
        let m = feed.next_of("event").await;
        if m["event"] == "position" && m["id"] == staff.user_id {
            assert_eq!(m["lat"], 9.51, "{m}");
            break;
        }
    }

    // Location-less, switched on A: B forgets the position too.
    staff
        .rebased(&a.url)
        .put("/api/v1/me/location-mode", json!({"mode": "location_less"}))
        .await
        .expect(200);
    let (on_b, drawn) = (&adviser, &circle);
    eventually(
        "B forgets a location-less person's position",
        || async move {
            on_b.post("/api/v1/alerts/preview", drawn.clone())
                .await
                .expect(200)["total"]
                == 0
        },
    )
    .await;

    // Logging out on A closes the phone's socket on B at once.
    staff
        .rebased(&a.url)
        .post("/api/v1/auth/logout", json!({}))
        .await
        .expect(204);
    assert_eq!(phone.next_of("closed").await["code"], 4001);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_nats_says_it_is_not_ready_and_why() {
    let Some(cluster) = Deployment::new().await else {
        return;
    };
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let nowhere = format!("nats://127.0.0.1:{closed}");
    let node = cluster.spawn("lonely", &[("VIGIL_NATS_URL", &nowhere)]);
    let http = reqwest::Client::new();
    let url = format!("{}/readyz", node.url);
    let (client, readyz) = (&http, &url);
    eventually("the node answers /readyz", || async move {
        client.get(readyz).send().await.is_ok()
    })
    .await;
    let r = http.get(&url).send().await.expect("readyz");
    assert_eq!(r.status(), 503);
    let body: Value = r.json().await.expect("problem");
    assert!(
        body["detail"].as_str().expect("detail").contains("NATS"),
        "{body}"
    );
    // It still serves what it can on its own: the database answers through it.
    Client::at(&node.url)
        .login(&cluster.admin_email, PASSWORD)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_whose_hint_was_lost_still_arrives() {
    let Some(cluster) = Deployment::new().await else {
        return;
    };
    let b = cluster
        .node("b", &[("VIGIL_CLUSTER_CONVERGE_SECS", "1")])
        .await;
    let admin = Client::at(&b.url)
        .login(&cluster.admin_email, PASSWORD)
        .await;
    let org = organisation(&admin).await;
    let staff = person(&admin, &b.url, org, &["staff"]).await;
    let (mut phone, welcome) = Ws::hello_at(&b.url, &staff, 0).await;
    let last = welcome["last_seq"].as_i64().expect("last_seq");
    // Stored as another node stores it (the number taken in the writing transaction), but
    // its hint never sent: B's check against the database must bring it.
    let mut conn = sqlx::PgConnection::connect(&cluster.db)
        .await
        .expect("connect");
    let mut tx = conn.begin().await.expect("tx");
    let seq: i64 = sqlx::query_scalar(
        "UPDATE message_seqs SET seq = seq + 1 WHERE user_id = $1 RETURNING seq",
    )
    .bind(staff.user_id)
    .fetch_one(&mut *tx)
    .await
    .expect("bump");
    sqlx::query("INSERT INTO user_messages (user_id, seq, kind, payload, created_at) VALUES ($1, $2, 'note', '{\"text\": \"lost hint\"}', $3)")
        .bind(staff.user_id)
        .bind(seq)
        .bind(chrono_now_ms())
        .execute(&mut *tx)
        .await
        .expect("insert");
    tx.commit().await.expect("commit");
    assert_eq!(seq, last + 1);
    let m = phone.next_of("message").await;
    assert_eq!(
        (m["seq"].as_i64(), m["payload"]["text"].as_str()),
        (Some(seq), Some("lost hint")),
        "{m}"
    );
    let metrics = reqwest::get(format!("{}/metrics", b.url))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.lines().any(
            |l| l.starts_with("vigil_cluster_caught_up_from_storage_total ") && !l.ends_with(" 0")
        ),
        "counted in the metrics"
    );
}

fn chrono_now_ms() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_millis(),
    )
    .expect("ms")
}

/// A NATS server of the test's own, so that it can be stopped and started again.
struct OwnNats {
    child: std::process::Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl OwnNats {
    async fn start() -> OwnNats {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let dir = tempfile::tempdir().expect("dir");
        let child = OwnNats::spawn(port, dir.path()).await;
        OwnNats { child, port, dir }
    }

    async fn spawn(port: u16, store: &std::path::Path) -> std::process::Child {
        let mut child = std::process::Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(store)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("nats-server (Debian's nats-server package) starts");
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return child;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("nats-server did not listen on {port}");
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    async fn restart(&mut self) {
        self.child = OwnNats::spawn(self.port, self.dir.path()).await;
    }
}

impl Drop for OwnNats {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `/readyz` on `base`: its status and body, as `200 ready`.
async fn readyz(base: &str) -> String {
    let Ok(r) = reqwest::get(format!("{base}/readyz")).await else {
        return "no answer".into();
    };
    let status = r.status().as_u16();
    format!("{status} {}", r.text().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_that_lose_nats_keep_serving_from_the_database_and_recover() {
    let Some(cluster) = Deployment::new().await else {
        return;
    };
    let mut nats = OwnNats::start().await;
    let url = nats.url();
    let env = [
        ("VIGIL_NATS_URL", url.as_str()),
        ("VIGIL_CLUSTER_CONVERGE_SECS", "1"),
    ];
    let a = cluster.node("a", &env).await;
    let b = cluster.node("b", &env).await;
    let admin = Client::at(&b.url)
        .login(&cluster.admin_email, PASSWORD)
        .await;
    let org = organisation(&admin).await;
    let adviser = person(&admin, &b.url, org, &["adviser"]).await;
    let staff = person(&admin, &a.url, org, &["staff"]).await;
    let (mut phone, _) = Ws::hello_at(&a.url, &staff, 0).await;

    nats.stop();
    let nodes = [a.url.as_str(), b.url.as_str()];
    let urls = &nodes;
    // Ready still (taking every node out together would leave nobody to connect to), and
    // saying what is missing.
    eventually("both nodes say they are degraded", || async move {
        readyz(urls[0]).await.contains("degraded") && readyz(urls[1]).await.contains("degraded")
    })
    .await;
    // Sent on B without NATS, the alert still reaches the phone on A, from the database.
    let id = evacuate(&adviser, 1).await;
    let m = phone.next_of("message").await;
    assert_eq!(m["payload"]["alert_id"], id, "{m}");

    nats.restart().await;
    eventually("both nodes fully ready again", || async move {
        readyz(urls[0]).await == "200 ready" && readyz(urls[1]).await == "200 ready"
    })
    .await;
    let id = evacuate(&adviser, 2).await;
    let m = phone.next_of("message").await;
    assert_eq!(m["payload"]["alert_id"], id, "{m}");
    phone.send(json!({"type": "ping", "ref": "end"})).await;
    assert_eq!(
        phone.next_of("pong").await["type"],
        "pong",
        "each alert once"
    );
}

/// Every node replays the unflushed history into `last_positions` when it starts; six nodes
/// started together deadlocked on it (the same rows, locked in each node's own order) and died.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_starting_together_replay_the_same_history_without_deadlocking() {
    let Some(srv) =
        crate::support::TestServer::start_with(crate::support::Backend::Postgres, |s| {
            s.db_max_connections = 8
        })
        .await
    else {
        return;
    };
    let vigil_server::db::Db::Postgres(pool) = &srv.state.db else {
        panic!("a PostgreSQL server");
    };
    let now = chrono_now_ms();
    sqlx::query(
        "INSERT INTO position_history (subject_kind, subject_id, lat, lon, accuracy_m, recorded_at, received_at, source) \
         SELECT 'asset', g, 1.0, 2.0, NULL, $1, $1, 'test' FROM generate_series(1, 12000) AS g",
    )
    .bind(now)
    .execute(pool)
    .await
    .expect("history");
    let replays = (0..6).map(|_| vigil_server::positions::writer::replay_unflushed(&srv.state.db));
    for replayed in futures_util::future::join_all(replays).await {
        assert_eq!(replayed.expect("no deadlock"), 12_000);
    }
    let stored: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM last_positions WHERE source = 'test'")
            .fetch_one(pool)
            .await
            .expect("count");
    assert_eq!(stored, 12_000);
}
