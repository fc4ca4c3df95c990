//! The WebSocket: authentication, positions, stored messages with resume, slow consumers,
//! operators' live feed.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use vigil_server::db::{Timestamp, now_ms};
use vigil_server::policy::Role;

use crate::on_both_databases;
use crate::support::{Client, TestServer};

pub type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A phone's or console's WebSocket.
pub struct Ws {
    pub socket: Socket,
}

impl Ws {
    pub async fn open(srv: &TestServer) -> Ws {
        Ws::open_at(&srv.url).await
    }

    /// Opens a socket to the server at `base` (`http://…`).
    pub async fn open_at(base: &str) -> Ws {
        let url = format!("{}/api/v1/ws", base.replace("http://", "ws://"));
        let (socket, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("websocket connects");
        Ws { socket }
    }

    /// Opens, says hello with the client's token and `last_seq`, and returns the welcome.
    pub async fn hello(srv: &TestServer, client: &Client, last_seq: i64) -> (Ws, Value) {
        Ws::hello_at(&srv.url, client, last_seq).await
    }

    /// Like [`Ws::hello`], to the server at `base`.
    pub async fn hello_at(base: &str, client: &Client, last_seq: i64) -> (Ws, Value) {
        let mut ws = Ws::open_at(base).await;
        ws.send(json!({"type": "hello", "token": client.token, "last_seq": last_seq}))
            .await;
        let welcome = ws.next().await;
        assert_eq!(welcome["type"], "welcome", "{welcome}");
        (ws, welcome)
    }

    pub async fn send(&mut self, v: Value) {
        self.socket
            .send(Message::Text(v.to_string().into()))
            .await
            .expect("send");
    }

    /// The next JSON message (pings are answered by the library).
    pub async fn next(&mut self) -> Value {
        loop {
            let frame = tokio::time::timeout(Duration::from_secs(10), self.socket.next())
                .await
                .expect("a message within 10 s")
                .expect("socket open")
                .expect("frame");
            match frame {
                Message::Text(t) => return serde_json::from_str(&t).expect("json"),
                Message::Close(c) => {
                    return json!({"type": "closed", "code": c.map(|c| u16::from(c.code))});
                }
                _ => continue,
            }
        }
    }

    /// The next message of a given type, skipping others.
    pub async fn next_of(&mut self, kind: &str) -> Value {
        loop {
            let m = self.next().await;
            if m["type"] == kind || m["type"] == "closed" {
                return m;
            }
        }
    }
}

/// Stores and pushes one message to a person, as the server does for its own messages.
async fn send(srv: &TestServer, user_id: i64, payload: Value) -> Result<(), sqlx::Error> {
    let note = vigil_server::stream::Note {
        user_id,
        kind: "test",
        payload,
        advisory_of: None,
    };
    vigil_server::stream::send_many(&srv.state.db, &srv.state.hub, vec![note]).await
}

pub fn fix(lat: f64, lon: f64, ms_ago: i64) -> Value {
    json!({"lat": lat, "lon": lon, "accuracy_m": 5.0, "recorded_at": Timestamp(now_ms() - ms_ago).to_rfc3339()})
}

async fn area(adviser: &Client, name: &str, lon0: f64) -> i64 {
    let f = json!({"type": "Feature", "properties": {"name": name, "security_level": 5, "advisory": format!("{name}: stay indoors after dark")},
        "geometry": {"type": "Polygon", "coordinates": [[[lon0, 0.0], [lon0 + 1.0, 0.0], [lon0 + 1.0, 1.0], [lon0, 1.0], [lon0, 0.0]]]}});
    adviser.post("/api/v1/areas", f).await.expect(201)["id"]
        .as_i64()
        .expect("id")
}

on_both_databases! {
    async fn a_phone_authenticates_pings_and_survives_bad_messages(srv: TestServer) {
        let org = srv.org().await;
        let staff = srv.user(org, &[Role::Staff], false).await;
        let (mut ws, welcome) = Ws::hello(&srv, &staff, 0).await;
        assert_eq!(welcome["v"], 1);
        assert_eq!(welcome["user_id"], staff.user_id);
        assert_eq!(welcome["last_seq"], 0);
        ws.send(json!({"type": "ping", "ref": "p1"})).await;
        assert_eq!(ws.next().await, json!({"type": "pong", "ref": "p1"}));
        ws.send(json!({"type": "teleport", "ref": "t1"})).await;
        let err = ws.next().await;
        assert_eq!((err["type"].as_str(), err["code"].as_str(), err["ref"].as_str()), (Some("error"), Some("bad_message"), Some("t1")));
        ws.socket.send(Message::Text("{not json".into())).await.expect("send");
        assert_eq!(ws.next().await["code"], "bad_message");
        ws.send(json!({"type": "position", "ref": "f1", "fixes": [fix(95.0, 0.0, 0)]})).await;
        let bad = ws.next().await;
        assert_eq!((bad["code"].as_str(), bad["ref"].as_str()), (Some("invalid"), Some("f1")));
        assert!(bad["detail"].as_str().expect("detail").contains("nothing was stored"));
        ws.send(json!({"type": "ping", "ref": "p2"})).await;
        assert_eq!(ws.next().await["ref"], "p2", "the connection survived");

        let mut stranger = Ws::open(&srv).await;
        stranger.send(json!({"type": "hello", "token": "forged"})).await;
        assert_eq!(stranger.next().await["code"], "unauthorized");
        assert_eq!(stranger.next().await["code"], 4001);
        let mut rude = Ws::open(&srv).await;
        rude.send(json!({"type": "ping"})).await;
        assert_eq!(rude.next().await["code"], "hello_expected");
    }

    async fn entering_an_area_sends_its_advisory_and_level_as_a_stored_message(srv: TestServer) {
        let org = srv.org().await;
        let adviser = srv.user(org, &[Role::Adviser], false).await;
        let staff = srv.user(org, &[Role::Staff], false).await;
        let red = area(&adviser, "Red zone", 10.0).await;
        let (mut ws, _) = Ws::hello(&srv, &staff, 0).await;
        ws.send(json!({"type": "position", "ref": "a", "fixes": [fix(0.5, 10.5, 1000)]})).await;
        let mut got = [ws.next().await, ws.next().await];
        got.sort_by_key(|m| m["type"].as_str().map(str::to_string));
        let (ack, msg) = (&got[0], &got[1]);
        assert_eq!((ack["type"].as_str(), ack["ref"].as_str(), ack["accepted"].as_i64()), (Some("ack"), Some("a"), Some(1)));
        assert_eq!((msg["type"].as_str(), msg["seq"].as_i64(), msg["kind"].as_str()), (Some("message"), Some(1), Some("area_entered")));
        assert_eq!(msg["payload"]["area_id"], red);
        assert_eq!(msg["payload"]["security_level"], 5);
        assert_eq!(msg["payload"]["security_level_name"], "high");
        assert_eq!(msg["payload"]["advisory"], "Red zone: stay indoors after dark");
        ws.send(json!({"type": "position", "ref": "b", "fixes": [fix(0.5, 30.5, 0)]})).await;
        let left = ws.next_of("message").await;
        assert_eq!((left["seq"].as_i64(), left["kind"].as_str()), (Some(2), Some("area_left")));
    }

    async fn a_reconnecting_phone_gets_everything_it_missed_in_order_once(srv: TestServer) {
        let org = srv.org().await;
        let adviser = srv.user(org, &[Role::Adviser], false).await;
        let staff = srv.user(org, &[Role::Staff], false).await;
        for (i, lon) in [10.0, 12.0, 14.0].iter().enumerate() {
            area(&adviser, &format!("Zone {i}"), *lon).await;
        }
        let (mut ws, _) = Ws::hello(&srv, &staff, 0).await;
        staff.post("/api/v1/positions", json!({"fixes": [fix(0.5, 10.5, 5000)]})).await.expect(200);
        assert_eq!(ws.next_of("message").await["seq"], 1);
        drop(ws);
        // Offline: the phone crosses three borders (left 0, entered 1, left 1, entered 2).
        staff.post("/api/v1/positions", json!({"fixes": [fix(0.5, 12.5, 4000)]})).await.expect(200);
        staff.post("/api/v1/positions", json!({"fixes": [fix(0.5, 14.5, 3000)]})).await.expect(200);
        let (mut ws, welcome) = Ws::hello(&srv, &staff, 1).await;
        assert_eq!(welcome["last_seq"], 5);
        let seqs: Vec<i64> = [ws.next().await, ws.next().await, ws.next().await, ws.next().await]
            .iter().map(|m| m["seq"].as_i64().expect("seq")).collect();
        assert_eq!(seqs, [2, 3, 4, 5]);
        // Live traffic continues after the replay, with no repeat.
        staff.post("/api/v1/positions", json!({"fixes": [fix(0.5, 40.0, 1000)]})).await.expect(200);
        assert_eq!(ws.next_of("message").await["seq"], 6);
        let (mut fresh, _) = Ws::hello(&srv, &staff, 0).await;
        let first = fresh.next().await;
        assert_eq!((first["seq"].as_i64(), first["kind"].as_str()), (Some(1), Some("area_entered")));
    }

    async fn a_slow_phone_is_cut_off_without_slowing_others_and_catches_up(srv: TestServer) {
        let org = srv.org().await;
        let slow_user = srv.user(org, &[Role::Staff], false).await;
        let fast_user = srv.user(org, &[Role::Staff], false).await;
        let (slow, _) = Ws::hello(&srv, &slow_user, 0).await; // never reads again
        let (mut fast, _) = Ws::hello(&srv, &fast_user, 0).await;
        let filler = "x".repeat(32 * 1024);
        let total = 600;
        for i in 1..=total {
            send(&srv, slow_user.user_id, json!({"i": i, "filler": filler}))
                .await.expect("store");
        }
        assert_eq!(srv.state.hub.connections_of(slow_user.user_id), 0, "the slow connection was cut off");
        let started = std::time::Instant::now();
        send(&srv, fast_user.user_id, json!({"hello": true}))
            .await.expect("store");
        assert_eq!(fast.next_of("message").await["payload"]["hello"], true);
        assert!(started.elapsed() < Duration::from_secs(2), "others are not slowed down");
        drop(slow);
        let (mut back, _) = Ws::hello(&srv, &slow_user, 0).await;
        for expected in 1..=total {
            let m = back.next_of("message").await;
            assert_eq!(m["seq"], expected);
            assert_eq!(m["payload"]["i"], expected);
        }
    }

    async fn operators_watch_their_organisation_live_and_reads_are_logged(srv: TestServer) {
        let a = srv.org().await;
        let b = srv.org().await;
        let adviser = srv.user(a, &[Role::Adviser], false).await;
        let operator = srv.user(a, &[Role::Operator], false).await;
        let staff_a = srv.user(a, &[Role::Staff], false).await;
        let staff_b = srv.user(b, &[Role::Staff], false).await;
        let zone = area(&adviser, "Zone A", 10.0).await;
        let (mut console, _) = Ws::hello(&srv, &operator, 0).await;
        console.send(json!({"type": "subscribe", "topic": "positions", "org_id": b})).await;
        assert_eq!(console.next().await["code"], "forbidden");
        console.send(json!({"type": "subscribe", "topic": "positions"})).await;
        assert_eq!(console.next().await["type"], "subscribed");
        staff_b.post("/api/v1/positions", json!({"fixes": [fix(0.5, 10.5, 0)]})).await.expect(200);
        staff_a.post("/api/v1/positions", json!({"fixes": [fix(0.5, 10.5, 0)]})).await.expect(200);
        let mut events = [console.next().await, console.next().await];
        events.sort_by_key(|e| e["event"].as_str().map(str::to_string));
        assert_eq!((events[0]["event"].as_str(), events[0]["area_id"].as_i64(), events[0]["id"].as_i64()), (Some("geofence"), Some(zone), Some(staff_a.user_id)));
        assert_eq!((events[1]["event"].as_str(), events[1]["id"].as_i64(), events[1]["lat"].as_f64()), (Some("position"), Some(staff_a.user_id), Some(0.5)));
        let log = staff_a.get("/api/v1/me/location-access").await.expect(200);
        assert!(log.as_array().expect("log").iter().any(|e| e["viewer_id"] == operator.user_id && e["purpose"] == "live_feed"), "{log}");
        let staff_ws = Ws::hello(&srv, &staff_a, 0).await.0;
        drop(staff_ws);
        let (mut phone, _) = Ws::hello(&srv, &staff_a, 0).await;
        phone.send(json!({"type": "subscribe", "topic": "positions"})).await;
        assert_eq!(phone.next_of("error").await["code"], "forbidden");
    }

    async fn shutdown_closes_sockets_with_going_away(srv: TestServer) {
        let org = srv.org().await;
        let staff = srv.user(org, &[Role::Staff], false).await;
        let (mut ws, _) = Ws::hello(&srv, &staff, 0).await;
        srv.state.shutdown.cancel();
        assert_eq!(ws.next_of("closed").await["code"], 1001);
    }
}

/// A server with the default 25-second heartbeat: a revocation that reaches a socket within
/// [`Ws::next`]'s 10 seconds came through the hub, not a heartbeat's re-read
/// (storage-independent logic, so SQLite covers it).
async fn quick_heartbeat_server() -> TestServer {
    TestServer::start_with(crate::support::Backend::Sqlite, |s| {
        s.ws_heartbeat_secs = 25
    })
    .await
    .expect("server")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logged_out_session_loses_its_socket_even_if_another_session_lives() {
    let srv = quick_heartbeat_server().await;
    let org = srv.org().await;
    let console = srv.user(org, &[Role::Operator], false).await;
    let email = console.get("/api/v1/me").await.expect(200)["email"]
        .as_str()
        .expect("email")
        .to_string();
    let phone = srv.anon().login(&email, crate::support::PASSWORD).await;
    let (mut ws, _) = Ws::hello(&srv, &console, 0).await;
    console
        .post("/api/v1/auth/logout", json!({}))
        .await
        .expect(204);
    assert_eq!(ws.next_of("closed").await["code"], 4001);
    phone.get("/api/v1/me").await.expect(200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_operator_stops_receiving_the_live_feed() {
    let srv = quick_heartbeat_server().await;
    let org = srv.org().await;
    let admin = srv.user(org, &[Role::OrgAdmin], false).await;
    let operator = srv.user(org, &[Role::Staff, Role::Operator], false).await;
    let (mut feed, _) = Ws::hello(&srv, &operator, 0).await;
    feed.send(json!({"type": "subscribe", "topic": "positions"}))
        .await;
    assert_eq!(feed.next().await["type"], "subscribed");
    let (mut other, _) = Ws::hello(&srv, &operator, 0).await;
    admin
        .delete(&format!(
            "/api/v1/users/{}/roles/operator",
            operator.user_id
        ))
        .await
        .expect(200);
    assert_eq!(feed.next_of("closed").await["code"], 4001);
    other
        .send(json!({"type": "subscribe", "topic": "positions"}))
        .await;
    assert_eq!(other.next_of("error").await["code"], "forbidden");
}

/// Native clients may authenticate with a header instead of the token in `hello`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_native_client_authenticates_with_a_bearer_header() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let srv = TestServer::start(crate::support::Backend::Sqlite)
        .await
        .expect("server");
    let org = srv.org().await;
    let staff = srv.user(org, &[Role::Staff], false).await;
    let url = format!("{}/api/v1/ws", srv.url.replace("http://", "ws://"));
    let mut request = url.into_client_request().expect("request");
    let bearer = format!("Bearer {}", staff.token.as_deref().expect("token"));
    request
        .headers_mut()
        .insert("authorization", bearer.parse().expect("header"));
    let (socket, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("connects");
    let mut ws = Ws { socket };
    ws.send(json!({"type": "hello", "last_seq": 0})).await;
    let welcome = ws.next().await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    assert_eq!(welcome["user_id"], staff.user_id);
}

fn alert_to_everyone() -> Value {
    json!({"translations": {"en": {"title": "Shelter in place", "body": "Gunfire near the market."}},
           "severity": "severe", "security_level": 4, "target": {"everyone": true}})
}

on_both_databases! {
    async fn an_invalid_fix_over_the_socket_names_its_issues_as_http_does(srv: TestServer) {
        let org = srv.org().await;
        let staff = srv.user(org, &[Role::Staff], false).await;
        let (mut ws, _) = Ws::hello(&srv, &staff, 0).await;
        let fixes = json!([fix(95.0, 0.0, 0), fix(0.0, 200.0, 0)]);
        ws.send(json!({"type": "position", "ref": "f1", "fixes": fixes})).await;
        let refused = ws.next().await;
        assert_eq!((refused["code"].as_str(), refused["ref"].as_str()), (Some("invalid"), Some("f1")));
        let http = staff.post("/api/v1/positions", json!({"fixes": fixes})).await.problem(422);
        assert_eq!(refused["issues"], http["issues"], "socket {refused} vs http {http}");
        assert_eq!(refused["issues"].as_array().map(Vec::len), Some(2), "{refused}");
        assert!(serde_json::from_value::<vigil_protocol::ServerMessage>(refused).is_ok());
    }

    async fn a_receipt_from_someone_without_a_copy_is_refused_and_the_ledger_moves_for_the_rest(srv: TestServer) {
        let a = srv.org().await;
        let b = srv.org().await;
        let adviser = srv.user(a, &[Role::Adviser], false).await;
        let staff = srv.user(a, &[Role::Staff], false).await;
        let outsider = srv.user(b, &[Role::Staff], false).await;
        let sent = adviser.post("/api/v1/alerts", alert_to_everyone()).await.expect(201);
        let id = sent["id"].as_i64().expect("id");
        let (mut phone, _) = Ws::hello(&srv, &staff, 0).await;
        let (mut stranger, _) = Ws::hello(&srv, &outsider, 0).await;
        // Sent together, so that the writer takes both in one group.
        stranger.send(json!({"type": "receipt", "ref": "s", "alert_id": id, "state": "acknowledged"})).await;
        phone.send(json!({"type": "receipt", "ref": "p", "alert_id": id, "state": "acknowledged"})).await;
        let refused = stranger.next_of("error").await;
        assert_eq!((refused["code"].as_str(), refused["ref"].as_str()), (Some("not_found"), Some("s")));
        assert_eq!(phone.next_of("ack").await["ref"], "p");
        stranger.send(json!({"type": "receipt", "ref": "x", "alert_id": id, "state": "sent"})).await;
        assert_eq!(stranger.next_of("error").await["code"], "bad_message");
        let rows = adviser.get(&format!("/api/v1/alerts/{id}/recipients")).await.expect(200);
        let states: Vec<(i64, String)> = rows.as_array().expect("rows").iter()
            .map(|r| (r["user_id"].as_i64().expect("id"), r["state"].as_str().expect("state").to_string()))
            .collect();
        assert!(states.contains(&(staff.user_id, "acknowledged".into())), "{rows}");
        assert!(!states.iter().any(|(u, _)| *u == outsider.user_id), "{rows}");
        outsider.post(&format!("/api/v1/alerts/{id}/receipt"), json!({"state": "read"})).await.problem(404);
    }

    async fn when_serve_returns_every_task_has_ended_and_acknowledged_work_is_committed(srv: TestServer) {
        let org = srv.org().await;
        let adviser = srv.user(org, &[Role::Adviser], false).await;
        let staff = srv.user(org, &[Role::Staff], false).await;
        let id = adviser.post("/api/v1/alerts", alert_to_everyone()).await.expect(201)["id"].as_i64().expect("id");
        let (mut phone, _) = Ws::hello(&srv, &staff, 0).await;
        phone.send(json!({"type": "receipt", "ref": "r", "alert_id": id, "state": "acknowledged"})).await;
        assert_eq!(phone.next_of("ack").await["ref"], "r");
        let state = srv.state.clone();
        let mut srv = srv;
        srv.shutdown().await;
        assert!(state.background.tasks.is_closed());
        assert_eq!(state.background.tasks.len(), 0, "every background task was joined");
        // The pools are closed now: read the file as the next start would.
        let reopened = vigil_server::db::Db::connect(&state.settings.database_url, 2).await.expect("reopen");
        let got: String = vigil_server::on_reader!(&reopened, pool => sqlx::query_scalar(
            "SELECT state FROM alert_recipients WHERE alert_id = $1 AND user_id = $2")
            .bind(id).bind(staff.user_id).fetch_one(pool).await).expect("ledger row");
        assert_eq!(got, "acknowledged");
        reopened.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_over_the_limit_closes_the_socket_with_1009() {
    let srv = TestServer::start(crate::support::Backend::Sqlite)
        .await
        .expect("server");
    let org = srv.org().await;
    let staff = srv.user(org, &[Role::Staff], false).await;
    let (mut ws, _) = Ws::hello(&srv, &staff, 0).await;
    let huge = "x".repeat(vigil_protocol::MAX_MESSAGE_BYTES + 1);
    // The server may close while the frame is still going out: a failed send is fine.
    let _ = ws
        .socket
        .send(Message::Text(
            json!({"type": "ping", "ref": huge}).to_string().into(),
        ))
        .await;
    assert_eq!(ws.next_of("closed").await["code"], 1009);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_json_schema_of_every_message_is_served_without_a_token() {
    let srv = TestServer::start(crate::support::Backend::Sqlite)
        .await
        .expect("server");
    let schema = srv.anon().get("/api/v1/ws/schema.json").await.expect(200);
    assert_eq!(schema, vigil_protocol::json_schema());
    let defs = schema["$defs"].as_object().expect("$defs");
    for name in [
        "ClientMessage",
        "ServerMessage",
        "LiveEvent",
        "Fix",
        "Board",
    ] {
        assert!(defs.contains_key(name), "{name} missing");
    }
}

/// Opens a socket whose receive buffer is a few KiB, so that a client that stops reading
/// backs up into the server's queue quickly, as a frozen browser tab's does.
async fn open_small_window(base: &str) -> Ws {
    let addr = base
        .trim_start_matches("http://")
        .parse::<std::net::SocketAddr>()
        .expect("address");
    let tcp = tokio::net::TcpSocket::new_v4().expect("socket");
    tcp.set_recv_buffer_size(2048)
        .expect("small receive buffer");
    let stream = tcp.connect(addr).await.expect("connects");
    let url = format!("ws://{addr}/api/v1/ws");
    let (socket, _) =
        tokio_tungstenite::client_async(url, tokio_tungstenite::MaybeTlsStream::Plain(stream))
            .await
            .expect("websocket");
    Ws { socket }
}

on_both_databases! {
    async fn a_console_that_stops_reading_during_a_burst_is_cut_resumes_and_gets_the_sos(srv: TestServer) {
        let org = srv.org().await;
        let operator = srv.user(org, &[Role::Operator], false).await;
        let person = srv.user(org, &[Role::Staff], false).await;
        let mut console = open_small_window(&srv.url).await;
        console.send(json!({"type": "hello", "token": operator.token, "last_seq": 0})).await;
        let welcome = console.next().await;
        let last_seq = welcome["last_seq"].as_i64().expect("last_seq");
        for topic in ["positions", "operations"] {
            console.send(json!({"type": "subscribe", "topic": topic})).await;
            assert_eq!(console.next().await["type"], "subscribed");
        }
        // The console freezes. Phones stream positions until the hub cuts it off.
        let mut phones = Vec::new();
        for _ in 0..6 {
            let staff = srv.user(org, &[Role::Staff], false).await;
            let (ws, _) = Ws::hello(&srv, &staff, 0).await;
            phones.push(ws);
        }
        let cut = async {
            let mut round = 0i64;
            while srv.state.hub.connections_of(operator.user_id) > 0 {
                round += 1;
                assert!(round < 20_000, "the frozen console was never cut off");
                for phone in &mut phones {
                    let lat = 0.1 + (round % 1000) as f64 * 1e-4;
                    phone.send(json!({"type": "position", "ref": round.to_string(), "fixes": [fix(lat, 10.5, 600_000 - round)]})).await;
                }
                for phone in &mut phones {
                    phone.next_of("ack").await;
                }
            }
        };
        cut.await;
        // While it is away, someone presses SOS.
        let case = person.post("/api/v1/sos", json!({"note": "vehicle stopped at a checkpoint"})).await.expect(201);
        // The console, reading again, is told to resume: everything queued, then close 4008 —
        // or, when the socket's own write buffer filled before the hub's queue did, the
        // connection ends. Either way it is never left open and deaf.
        let ended = loop {
            match tokio::time::timeout(Duration::from_secs(30), console.socket.next()).await {
                Ok(Some(Ok(Message::Close(c)))) => break c.map(|c| u16::from(c.code)),
                Ok(Some(Ok(_))) => continue,
                Ok(Some(Err(_)) | None) => break None,
                Err(_) => panic!("the frozen console was left open and silent"),
            }
        };
        assert!(matches!(ended, Some(4008) | None), "{ended:?}");
        let (mut back, _) = Ws::hello(&srv, &operator, last_seq).await;
        let sos = back.next_of("message").await;
        assert_eq!((sos["kind"].as_str(), sos["payload"]["case"]["id"].as_i64()), (Some("sos"), case["id"].as_i64()), "{sos}");
    }
}

on_both_databases! {
    async fn one_tolerance_for_a_clock_running_ahead_on_every_path(srv: TestServer) {
        let org = srv.org().await;
        let staff = srv.user(org, &[Role::Staff], false).await;
        let tolerance = vigil_protocol::FUTURE_TOLERANCE_MS;
        let ahead = |ms: i64| fix(0.5, 10.5, -ms);
        let (mut ws, _) = Ws::hello(&srv, &staff, 0).await;
        ws.send(json!({"type": "position", "ref": "in", "fixes": [ahead(tolerance - 60_000)]})).await;
        assert_eq!(ws.next_of("ack").await["accepted"], 1);
        ws.send(json!({"type": "position", "ref": "out", "fixes": [ahead(tolerance + 60_000)]})).await;
        let refused = ws.next_of("error").await;
        assert_eq!(refused["issues"][0]["at"], "fixes/0/recorded_at", "{refused}");
        staff.post("/api/v1/positions", json!({"fixes": [ahead(tolerance - 30_000)]})).await.expect(200);
        staff.post("/api/v1/positions", json!({"fixes": [ahead(tolerance + 60_000)]})).await.problem(422);
        staff.post("/api/v1/sos", json!({"position": ahead(tolerance + 60_000)})).await.problem(422);
        staff.post("/api/v1/sos", json!({"position": ahead(tolerance - 60_000)})).await.expect(201);
    }
}
