//! The SDK as a phone uses it, against the real server on an ephemeral port (SQLite, and
//! PostgreSQL when `VIGIL_TEST_POSTGRES_URL` is set).

mod support;

use serde_json::{Value, json};
use support::{PASSWORD, PATIENCE, Server, alert, eventually, square};
use tokio::sync::broadcast;
use vigil_sdk::{AlertPlaces, AlertReceiptState, Client, Event, Fix, Placement, Timestamp};
use vigil_server::policy::Role;

fn fix(lat: f64, lon: f64, ms_ago: i64) -> Fix {
    Fix {
        lat,
        lon,
        accuracy_m: Some(10.0),
        recorded_at: Timestamp(Timestamp::now().0 - ms_ago),
    }
}

/// The next stream message of `kind`, skipping other events.
async fn next_message(events: &mut broadcast::Receiver<Event>, kind: &str) -> Value {
    let wait = async {
        loop {
            match events.recv().await {
                Ok(Event::Message(m)) if serde_json::to_value(m.kind).ok() == Some(json!(kind)) => {
                    return m.payload;
                }
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => panic!("events closed"),
            }
        }
    };
    tokio::time::timeout(PATIENCE, wait)
        .await
        .expect("the message came")
}

async fn a_tracked_phone_offline_then_killed_delivers_its_fixes_gets_the_alert_and_acknowledges(
    srv: Server,
) {
    let org = srv.org().await;
    let adviser = srv.adviser(org).await;
    let area = adviser.post("/areas", square(10.0)).await["id"]
        .as_i64()
        .expect("area");
    let (user_id, email) = srv.person(org, Role::Staff).await;
    let dir = tempfile::tempdir().expect("phone dir");
    let db = dir.path().join("phone.db");
    {
        // Offline: fixes wait in the outbox; then the app is killed.
        let phone = Client::open(&srv.url, &db).await.expect("open");
        phone.login(&email, PASSWORD).await.expect("login");
        for i in 0..5 {
            phone
                .record_fix(fix(
                    0.5,
                    10.1 + 0.1 * f64::from(i),
                    60_000 - i64::from(i) * 1_000,
                ))
                .await
                .expect("fix");
        }
        assert_eq!(phone.pending().await.expect("pending"), (5, 0));
    }
    // Restarted, with the session kept in its storage: everything goes out.
    let phone = Client::open(&srv.url, &db).await.expect("reopen");
    let mut events = phone.events();
    let task = phone.start();
    eventually("the outbox drained", async || {
        (phone.pending().await.ok() == Some((0, 0))).then_some(())
    })
    .await;
    let preview = adviser
        .post("/alerts/preview", json!({"areas": [area]}))
        .await;
    assert_eq!(
        preview["by_reason"]["inside_area"], 1,
        "the phone is inside: {preview}"
    );
    let stored: i64 = vigil_server::on_reader!(&srv.state.db, pool => sqlx::query_scalar(
        "SELECT COUNT(*) FROM position_history WHERE subject_kind = 'user' AND subject_id = $1")
        .bind(user_id).fetch_one(pool).await)
    .expect("history");
    assert_eq!(
        stored, 5,
        "every fix recorded offline is in the history, once"
    );

    let sent = adviser
        .post("/alerts", alert(json!({"areas": [area]})))
        .await;
    let id = sent["id"].as_i64().expect("id");
    let got = next_message(&mut events, "alert").await;
    assert_eq!(got["alert_id"], id);
    assert_eq!(
        got["translations"]["ar"]["title"], "ابقوا في أماكنكم",
        "right-to-left text untouched"
    );
    phone
        .receipt(id, AlertReceiptState::Acknowledged)
        .await
        .expect("receipt");
    support::until_acknowledged(&adviser, id).await;
    phone.stop();
    let _ = task.await;
}

async fn a_location_less_phone_decides_on_the_device_and_its_positions_never_leave_it(srv: Server) {
    let org = srv.org().await;
    let adviser = srv.adviser(org).await;
    let region = adviser.post("/areas", square(20.0)).await["id"]
        .as_i64()
        .expect("area");
    let (user_id, _dir, phone) = srv.phone(org).await;
    phone.set_location_less(true).await.expect("location-less");
    phone.follow_areas(&[region]).await.expect("follow");
    let mut events = phone.events();
    let task = phone.start();
    // A circle in one corner of the followed region.
    let circle = json!({"shapes": [{"type": "Feature", "properties": {"radius_m": 5000.0},
        "geometry": {"type": "Point", "coordinates": [20.1, 0.1]}}]});
    let id = adviser.post("/alerts", alert(circle)).await["id"]
        .as_i64()
        .expect("id");
    assert_eq!(next_message(&mut events, "alert").await["alert_id"], id);
    let places = AlertPlaces::new(&phone.alert_areas().await.expect("places")).expect("usable");
    let now = Timestamp::now().0;
    // The phone walks into the circle and out again; only the phone knows.
    assert_eq!(
        places.placements(0.5, 20.5, now).get(&id),
        Some(&Placement::InRegion)
    );
    assert_eq!(
        places.placements(0.1, 20.11, now).get(&id),
        Some(&Placement::Inside)
    );
    assert_eq!(
        places.placements(0.9, 20.9, now).get(&id),
        Some(&Placement::InRegion)
    );
    phone
        .receipt(id, AlertReceiptState::Read)
        .await
        .expect("receipt");
    eventually("the receipt was sent", async || {
        (phone.pending().await.ok() == Some((0, 0))).then_some(())
    })
    .await;
    // Nothing about where the phone was reached the server.
    let stored: i64 = vigil_server::on_reader!(&srv.state.db, pool => sqlx::query_scalar(
        "SELECT (SELECT COUNT(*) FROM position_history WHERE subject_kind = 'user' AND subject_id = $1) \
         + (SELECT COUNT(*) FROM last_positions WHERE subject_kind = 'user' AND subject_id = $1)")
        .bind(user_id).fetch_one(pool).await).expect("scan");
    assert_eq!(stored, 0);
    let tracked = vigil_server::areas::read_tracker(&srv.state.tracker).len();
    assert_eq!(tracked, 0, "the tracker holds no subject");
    phone.stop();
    let _ = task.await;
}

async fn an_sos_and_its_chat_survive_a_network_cut_with_nothing_twice(srv: Server) {
    let org = srv.org().await;
    let operator = srv.console(org, Role::Operator).await;
    let (_, _dir, phone) = srv.phone(org).await;
    let task = phone.start();
    let case = phone
        .press_sos(Some("car stopped at a roadblock"), None, false)
        .await
        .expect("sos");
    let chat = case["conversation_id"].as_i64().expect("the case's chat");
    phone
        .send_chat(chat, "they took my phone charger")
        .await
        .expect("queued");
    eventually("the first message was stored", async || {
        (phone.pending().await.ok() == Some((0, 0))).then_some(())
    })
    .await;
    // The network drops; the person types on; the connection comes back.
    phone.stop();
    let _ = task.await;
    phone
        .send_chat(chat, "I am in a shop by the road")
        .await
        .expect("queued offline");
    assert_eq!(phone.pending().await.expect("pending"), (0, 1));
    let task = phone.start();
    eventually("the second message was stored", async || {
        (phone.pending().await.ok() == Some((0, 0))).then_some(())
    })
    .await;
    let said = operator
        .get(&format!("/conversations/{chat}/messages"))
        .await
        .to_string();
    assert_eq!(
        said.matches("they took my phone charger").count(),
        1,
        "{said}"
    );
    assert_eq!(
        said.matches("I am in a shop by the road").count(),
        1,
        "{said}"
    );
    phone.stop();
    let _ = task.await;
}

async fn a_rollcall_answered_offline_is_counted_on_reconnect(srv: Server) {
    let org = srv.org().await;
    let operator = srv.console(org, Role::Operator).await;
    let (_, _dir, phone) = srv.phone(org).await;
    let mut events = phone.events();
    let task = phone.start();
    let rc = operator
        .post(
            "/rollcalls",
            json!({"title": "Explosion near the market", "target": {"roles": ["staff"]}}),
        )
        .await;
    let id = rc["id"].as_i64().expect("id");
    assert_eq!(
        next_message(&mut events, "rollcall").await["rollcall_id"],
        id
    );
    // The network drops before the person answers.
    phone.stop();
    let _ = task.await;
    phone
        .answer_rollcall(id, "need_help", Some("hurt leg, in the clinic"), None)
        .await
        .expect("queued");
    // A roll-call that does not exist is refused and dropped, and holds nothing up behind it.
    phone
        .answer_rollcall(id + 1_000, "safe", None, None)
        .await
        .expect("queued");
    assert_eq!(phone.pending().await.expect("pending"), (0, 2));
    let board = operator.get(&format!("/rollcalls/{id}")).await;
    assert_eq!(board["board"]["need_help"], 0, "{board}");
    let task = phone.start();
    eventually("the answers left the outbox", async || {
        (phone.pending().await.ok() == Some((0, 0))).then_some(())
    })
    .await;
    let board = operator.get(&format!("/rollcalls/{id}")).await;
    assert_eq!(board["board"]["need_help"], 1, "{board}");
    phone.stop();
    let _ = task.await;
}

macro_rules! on_both {
    ($($name:ident),*) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name(crate::support::server(false).await.expect("SQLite")).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if let Some(srv) = crate::support::server(true).await {
                    super::$name(srv).await;
                }
            }
        }
    )*};
}

on_both!(
    a_rollcall_answered_offline_is_counted_on_reconnect,
    an_sos_and_its_chat_survive_a_network_cut_with_nothing_twice,
    a_tracked_phone_offline_then_killed_delivers_its_fixes_gets_the_alert_and_acknowledges,
    a_location_less_phone_decides_on_the_device_and_its_positions_never_leave_it
);
