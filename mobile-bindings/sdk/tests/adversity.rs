//! The phone in the field's worst moments, against the real server on an ephemeral port
//! (SQLite, and PostgreSQL when `VIGIL_TEST_POSTGRES_URL` is set): the server restarted in the
//! middle of a roll-call, a phone clock hours off, and a server answering garbage (a local
//! impostor here, since the real one never does).

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::json;
use support::{PASSWORD, Server, alert, eventually, square};
use vigil_sdk::{AlertReceiptState, Client, Event, Fix, Placement, SdkError, Timestamp};
use vigil_server::policy::Role;

const THREE_HOURS: i64 = 3 * 3_600_000;

/// Everything a phone told its app, as it happened.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<Event>>>);

impl Seen {
    fn of(phone: &Client) -> Seen {
        let seen = Seen::default();
        let mut events = phone.events();
        let log = seen.clone();
        tokio::spawn(async move {
            loop {
                match events.recv().await {
                    Ok(e) => log.0.lock().expect("log").push(e),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        seen
    }

    fn count(&self, pick: impl Fn(&Event) -> bool) -> usize {
        self.0
            .lock()
            .expect("log")
            .iter()
            .filter(|e| pick(e))
            .count()
    }

    /// Waits until `pick` has matched `n` events in all.
    async fn until(&self, what: &str, n: usize, pick: impl Fn(&Event) -> bool) {
        eventually(what, async || (self.count(&pick) >= n).then_some(())).await;
    }

    fn all(&self) -> Vec<Event> {
        self.0.lock().expect("log").clone()
    }
}

fn connected(e: &Event) -> bool {
    matches!(e, Event::Connected)
}

fn disconnected(e: &Event) -> bool {
    matches!(e, Event::Disconnected { .. })
}

fn refused(e: &Event) -> bool {
    matches!(e, Event::Refused { .. })
}

fn rollcall(e: &Event) -> bool {
    matches!(e, Event::Message(m) if serde_json::to_value(m.kind).ok() == Some(json!("rollcall")))
}

/// The app's keeper of the refresh token, counting how often it was handed a new one: once at
/// sign-in, once per refresh.
#[derive(Debug, Default)]
struct Keeper {
    token: Mutex<Option<String>>,
    saves: AtomicUsize,
}

impl vigil_sdk::TokenKeeper for Keeper {
    fn load(&self) -> Result<Option<String>, String> {
        Ok(self.token.lock().map_err(|e| e.to_string())?.clone())
    }

    fn save(&self, token: Option<&str>) -> Result<(), String> {
        self.saves.fetch_add(1, Ordering::SeqCst);
        *self.token.lock().map_err(|e| e.to_string())? = token.map(str::to_string);
        Ok(())
    }
}

// --- The server restarted mid-roll-call ---------------------------------------------------

async fn a_rollcall_answered_while_the_server_restarts_arrives_once_when_it_is_back(
    mut srv: Server,
) {
    let org = srv.org().await;
    let operator = srv.console(org, Role::Operator).await;
    let (user_id, _dir, phone) = srv.phone(org).await;
    let seen = Seen::of(&phone);
    let task = phone.start();
    seen.until("connected", 1, connected).await;
    let rc = operator
        .post(
            "/rollcalls",
            json!({"title": "Shelling in the north", "target": {"roles": ["staff"]}}),
        )
        .await;
    let id = rc["id"].as_i64().expect("id");
    seen.until("the roll-call on the phone", 1, rollcall).await;

    srv.stop().await;
    seen.until("the phone saw the server go", 1, disconnected)
        .await;
    phone
        .answer_rollcall(id, "need_help", Some("in the basement, two of us"), None)
        .await
        .expect("kept on the phone");
    assert_eq!(phone.pending().await.expect("pending"), (0, 1));

    srv.restart().await;
    // Nobody tells the phone: it finds the server back by itself.
    seen.until("reconnected", 2, connected).await;
    eventually("the answer left the outbox", async || {
        (phone.pending().await.ok() == Some((0, 0))).then_some(())
    })
    .await;
    let board = operator.get(&format!("/rollcalls/{id}")).await;
    assert_eq!(board["board"]["need_help"], 1, "{board}");
    let answers = vigil_server::on_reader!(&srv.state.db, pool => sqlx::query_scalar::<_, i64>(
        "SELECT COUNT(*) FROM rollcall_answers WHERE rollcall_id = $1 AND user_id = $2")
        .bind(id).bind(user_id).fetch_one(pool).await)
    .expect("answers");
    assert_eq!(answers, 1, "the answer was stored exactly once");
    assert_eq!(
        seen.count(rollcall),
        1,
        "the roll-call replayed on reconnect is not handed to the app again"
    );
    phone.stop();
    task.await.expect("the client's task ended cleanly");
}

// --- A phone clock hours off --------------------------------------------------------------

/// With the phone's clock `error_ms` off: its fixes (stamped by that clock, or by satellites)
/// are stored at the real time, an alert that the wrong clock would take as ended is still in
/// force on the phone, and the session is not refreshed for nothing.
async fn a_phone_clock_hours_off_still_stores_fixes_at_the_right_time(srv: Server, error_ms: i64) {
    let org = srv.org().await;
    let adviser = srv.adviser(org).await;
    let area = adviser.post("/areas", square(30.0)).await["id"]
        .as_i64()
        .expect("area");
    let (user_id, email) = srv.person(org, Role::Staff).await;
    let dir = tempfile::tempdir().expect("phone dir");
    let keeper = Arc::new(Keeper::default());
    let phone = Client::open_with(&srv.url, &dir.path().join("phone.db"), Some(keeper.clone()))
        .await
        .expect("open");
    phone.set_device_clock_error(error_ms);
    phone.login(&email, PASSWORD).await.expect("login");
    let off = (phone.now().0 - Timestamp::now().0).abs();
    assert!(
        off < 5_000,
        "the server's time learned at sign-in ({off} ms off)"
    );
    let seen = Seen::of(&phone);
    let task = phone.start();
    seen.until("connected", 1, connected).await;

    // As iOS does, the app stamps a fix with the phone's own (wrong) clock…
    let stamped = Timestamp::now().0 + error_ms - 1_000;
    phone
        .record_fix(Fix {
            lat: 0.5,
            lon: 30.5,
            accuracy_m: Some(8.0),
            recorded_at: Timestamp(stamped),
        })
        .await
        .expect("fix");
    // …and a fix carrying satellite time is right as it is.
    let satellite = Timestamp::now().0 - 20_000;
    phone
        .record_fix(Fix {
            lat: 0.5,
            lon: 30.6,
            accuracy_m: Some(8.0),
            recorded_at: Timestamp(satellite),
        })
        .await
        .expect("fix");
    eventually("the fixes were sent", async || {
        (phone.pending().await.ok() == Some((0, 0))).then_some(())
    })
    .await;
    assert_eq!(seen.count(refused), 0, "{:?}", seen.all());
    let times: Vec<i64> = vigil_server::on_reader!(&srv.state.db, pool => sqlx::query_scalar(
        "SELECT recorded_at FROM position_history WHERE subject_kind = 'user' AND subject_id = $1 \
         ORDER BY recorded_at")
        .bind(user_id).fetch_all(pool).await)
    .expect("history");
    assert_eq!(times.len(), 2, "{times:?}");
    assert_eq!(times[0], satellite, "satellite time is kept as it was");
    let real = stamped - error_ms;
    assert!(
        (times[1] - real).abs() < 5_000,
        "the phone-stamped fix is stored at the real time: {} ms off",
        times[1] - real
    );
    let preview = adviser
        .post("/alerts/preview", json!({"areas": [area]}))
        .await;
    assert_eq!(
        preview["by_reason"]["inside_area"], 1,
        "the position counts as current: {preview}"
    );

    // An alert in force for one more hour: a clock three hours fast would end it on the phone.
    let mut body = alert(json!({"areas": [area]}));
    body["expires_at"] = json!(Timestamp(Timestamp::now().0 + 3_600_000).to_rfc3339());
    let id = adviser.post("/alerts", body).await["id"]
        .as_i64()
        .expect("id");
    seen.until(
        "the alert on the phone",
        1,
        |e| matches!(e, Event::Message(m) if m.payload["alert_id"] == id),
    )
    .await;
    phone.refresh_places().await.expect("places");
    assert_eq!(
        phone.device_moved(0.5, 30.5).get(&id),
        Some(&Placement::Inside),
        "the alert is in force on the phone"
    );
    phone
        .receipt(id, AlertReceiptState::Acknowledged)
        .await
        .expect("receipt");
    support::until_acknowledged(&adviser, id).await;
    assert_eq!(
        keeper.saves.load(Ordering::SeqCst),
        1,
        "signed in once and never refreshed: the token's life is the server's to judge"
    );
    phone.stop();
    task.await.expect("the client's task ended cleanly");
}

async fn a_phone_clock_three_hours_fast(srv: Server) {
    a_phone_clock_hours_off_still_stores_fixes_at_the_right_time(srv, THREE_HOURS).await;
}

async fn a_phone_clock_three_hours_slow(srv: Server) {
    a_phone_clock_hours_off_still_stores_fixes_at_the_right_time(srv, -THREE_HOURS).await;
}

/// A clock three hours slow thinks every token young: the server's 401 is what makes the
/// phone refresh, once, on HTTP and on the socket.
async fn a_slow_clock_refreshes_when_the_server_says_the_token_expired(srv: Server) {
    let org = srv.org().await;
    let (_, email) = srv.person(org, Role::Staff).await;
    let dir = tempfile::tempdir().expect("phone dir");
    let keeper = Arc::new(Keeper::default());
    let phone = Client::open_with(&srv.url, &dir.path().join("phone.db"), Some(keeper.clone()))
        .await
        .expect("open");
    phone.set_device_clock_error(-THREE_HOURS);
    phone.login(&email, PASSWORD).await.expect("login");
    // A token issued after the phone's: once the server refuses it, the phone's has expired.
    until_tokens_expire(&srv, &email, "the access tokens expired on the server").await;
    assert_eq!(keeper.saves.load(Ordering::SeqCst), 1);
    phone
        .alert_areas()
        .await
        .expect("refreshed on the server's 401");
    assert_eq!(
        keeper.saves.load(Ordering::SeqCst),
        2,
        "exactly one refresh"
    );
    // The fresh token expires in turn; the socket's hello meets the same refusal and refreshes.
    until_tokens_expire(&srv, &email, "the refreshed token expired too").await;
    let seen = Seen::of(&phone);
    let task = phone.start();
    seen.until("connected", 1, connected).await;
    assert!(keeper.saves.load(Ordering::SeqCst) >= 3, "refreshed again");
    phone.stop();
    task.await.expect("the client's task ended cleanly");
}

// --- A server answering garbage -----------------------------------------------------------

/// An impostor at the server's address: every answer is garbage of some kind.
#[derive(Default)]
struct Impostor {
    logins: AtomicUsize,
    sockets: AtomicUsize,
    /// Outbox items the phone sent over the socket (each with its `ref`).
    items: AtomicUsize,
    answers: AtomicUsize,
}

/// The sign-in answers, in turn; the last is a good one, so that the socket is tried.
const LOGINS: &[(u16, &str, &str)] = &[
    (
        200,
        "text/html",
        "<html><body>Welcome to the hotel Wi-Fi</body></html>",
    ),
    (
        200,
        "application/json",
        r#"{"access_token": 42, "refresh_token": null}"#,
    ),
    (200, "application/json", r#"{"access_token": "a", "refre"#),
    (500, "text/plain", "Internal Server Error"),
    (
        401,
        "application/problem+json",
        r#"{"status": "no", "title": 5}"#,
    ),
    (
        200,
        "application/json",
        r#"{"access_token": "a", "refresh_token": "r", "expires_in": 900}"#,
    ),
];

async fn impostor() -> (String, Arc<Impostor>) {
    use axum::extract::State;
    use axum::extract::ws::{Message, WebSocketUpgrade};
    use axum::response::IntoResponse;
    use axum::routing::{get, post};

    let seen = Arc::new(Impostor::default());
    let app = axum::Router::new()
        .route(
            "/api/v1/auth/login",
            post(async |State(s): State<Arc<Impostor>>| {
                let (status, kind, body) =
                    LOGINS[s.logins.fetch_add(1, Ordering::SeqCst) % LOGINS.len()];
                (
                    axum::http::StatusCode::from_u16(status).expect("status"),
                    [(axum::http::header::CONTENT_TYPE, kind)],
                    body,
                )
            }),
        )
        .route(
            "/api/v1/me/alert-areas",
            get(async || r#"[{"alert_id": "seven", "areas": {}}]"#),
        )
        .route(
            "/api/v1/ws",
            get(
                async |State(s): State<Arc<Impostor>>, ws: WebSocketUpgrade| {
                    let n = s.sockets.fetch_add(1, Ordering::SeqCst);
                    ws.on_upgrade(async move |mut socket| {
                        let _hello = socket.recv().await;
                        let frames: Vec<Message> = match n % 4 {
                            0 => vec![Message::Text("}{ not json".into())],
                            1 => vec![Message::Text(r#"{"type": "welcome"}"#.into())],
                            2 => vec![
                                Message::Binary(vec![0xff, 0xfe, 0].into()),
                                Message::Close(None),
                            ],
                            // A welcome, then nonsense on a connection the phone thinks good.
                            _ => vec![
                                Message::Text(
                                    json!({"type": "welcome", "v": 1, "user_id": 1, "org_id": 1,
                                        "roles": ["staff"], "last_seq": 0, "heartbeat_secs": 25})
                                    .to_string()
                                    .into(),
                                ),
                                Message::Text(r#"{"type": "message", "seq": "one"}"#.into()),
                                Message::Text(r#"{"type": "ack", "ref": "o99999999"}"#.into()),
                                Message::Text(r#"{"type": "launch_missiles"}"#.into()),
                                Message::Text("\u{0}\u{1}".into()),
                            ],
                        };
                        for f in frames {
                            if socket.send(f).await.is_err() {
                                return;
                            }
                        }
                        if n % 4 != 3 {
                            return;
                        }
                        // Take what the phone sends and answer for none of it.
                        while let Some(Ok(m)) = socket.recv().await {
                            if let Message::Text(t) = m
                                && t.contains(r#""ref":"o"#)
                            {
                                s.items.fetch_add(1, Ordering::SeqCst);
                            }
                        }
                    })
                },
            ),
        )
        .fallback(
            async |State(s): State<Arc<Impostor>>, uri: axum::http::Uri| {
                if uri.path().ends_with("/answer") {
                    s.answers.fetch_add(1, Ordering::SeqCst);
                }
                (
                    axum::http::StatusCode::BAD_GATEWAY,
                    "<html>502 Bad Gateway</html>",
                )
                    .into_response()
            },
        )
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_answering_garbage_gets_typed_errors_and_loses_nothing_from_the_outbox() {
    let (url, impostor) = impostor().await;
    let dir = tempfile::tempdir().expect("phone dir");
    let phone = Client::open(&url, &dir.path().join("phone.db"))
        .await
        .expect("open");
    // What the person did before the phone found this "server".
    for i in 0..3 {
        phone
            .record_fix(Fix {
                lat: 1.0,
                lon: 2.0 + f64::from(i) * 0.01,
                accuracy_m: Some(5.0),
                recorded_at: Timestamp(Timestamp::now().0 - 60_000 + i64::from(i) * 1_000),
            })
            .await
            .expect("fix");
    }
    phone
        .receipt(7, AlertReceiptState::Read)
        .await
        .expect("receipt");
    phone
        .answer_rollcall(3, "safe", None, None)
        .await
        .expect("answer");
    let before = phone.pending().await.expect("pending");
    assert_eq!(before, (3, 2));

    let protocol = |r: Result<(), SdkError>| matches!(r, Err(SdkError::Protocol(_)));
    let server = |r: Result<(), SdkError>, status: u16| matches!(r, Err(SdkError::Server(ref p)) if p.status == status);
    assert!(
        protocol(phone.login("a@b.example", "pw").await),
        "a captive portal's page"
    );
    assert!(
        protocol(phone.login("a@b.example", "pw").await),
        "the wrong shape"
    );
    assert!(
        protocol(phone.login("a@b.example", "pw").await),
        "cut-off JSON"
    );
    let r = phone.login("a@b.example", "pw").await;
    assert!(
        matches!(&r, Err(SdkError::Server(p)) if p.status == 500 && p.detail.contains("Internal")),
        "{r:?}"
    );
    assert!(
        server(phone.login("a@b.example", "pw").await, 401),
        "a problem that is not one"
    );
    assert!(
        matches!(phone.alert_areas().await, Err(SdkError::SignedOut)),
        "no session yet"
    );
    phone
        .login("a@b.example", "pw")
        .await
        .expect("a good-looking sign-in");
    assert!(
        matches!(phone.alert_areas().await, Err(SdkError::Protocol(_))),
        "alert places of the wrong shape"
    );
    let sos = phone.press_sos(Some("help"), None, false).await;
    assert!(
        matches!(&sos, Err(SdkError::Server(p)) if p.status == 502),
        "an SOS that did not get through says so: {sos:?}"
    );
    assert_eq!(phone.pending().await.expect("pending"), before);

    let seen = Seen::of(&phone);
    let task = phone.start();
    // Every kind of bad socket in turn, then a "welcome" followed by nonsense…
    eventually("the phone tried each bad socket", async || {
        (impostor.sockets.load(Ordering::SeqCst) >= 4).then_some(())
    })
    .await;
    seen.until("the bad sockets were reported", 3, disconnected)
        .await;
    // …over which the phone sent its outbox, to be answered for by nobody.
    eventually("the phone offered its fixes and its receipt", async || {
        (impostor.items.load(Ordering::SeqCst) >= 4).then_some(())
    })
    .await;
    eventually("the phone offered its answer", async || {
        (impostor.answers.load(Ordering::SeqCst) >= 1).then_some(())
    })
    .await;
    let reasons: Vec<String> = seen
        .all()
        .into_iter()
        .filter_map(|e| match e {
            Event::Disconnected { reason } => Some(reason),
            _ => None,
        })
        .collect();
    assert!(
        reasons
            .iter()
            .any(|r| r.starts_with("unreadable server answer")),
        "{reasons:?}"
    );
    assert_eq!(seen.count(refused), 0, "nothing was refused by nonsense");
    assert_eq!(
        phone.pending().await.expect("pending"),
        before,
        "nothing left the outbox without an answer for it"
    );
    phone.stop();
    task.await.expect("no panic in the client's task");
    // The phone's storage is whole: a restart finds the same outbox.
    drop(phone);
    let again = Client::open(&url, &dir.path().join("phone.db"))
        .await
        .expect("reopen");
    assert_eq!(again.pending().await.expect("pending"), before);
}

macro_rules! on_both {
    ($($name:ident $(with $tweak:expr)?),*) => {$(
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let srv = crate::support::server_with(false, |_s| { $(($tweak)(_s);)? }).await;
                super::$name(srv.expect("SQLite")).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if let Some(srv) = crate::support::server_with(true, |_s| { $(($tweak)(_s);)? }).await {
                    super::$name(srv).await;
                }
            }
        }
    )*};
}

on_both!(
    a_rollcall_answered_while_the_server_restarts_arrives_once_when_it_is_back with
        |s: &mut vigil_server::Settings| s.shutdown_grace_secs = 5,
    a_phone_clock_three_hours_fast,
    a_phone_clock_three_hours_slow,
    a_slow_clock_refreshes_when_the_server_says_the_token_expired with
        |s: &mut vigil_server::Settings| s.access_token_ttl_secs = 1
);

/// Signs in afresh and waits until the server refuses that token: any token issued before it
/// has expired by then.
async fn until_tokens_expire(srv: &Server, email: &str, what: &str) {
    let probe = srv.login(email).await;
    eventually(what, async || {
        let r = probe
            .http
            .get(format!("{}/api/v1/me/alert-areas", probe.url))
            .bearer_auth(&probe.token)
            .send()
            .await
            .ok()?;
        (r.status() == 401).then_some(())
    })
    .await;
}
