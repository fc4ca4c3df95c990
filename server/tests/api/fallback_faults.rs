//! The alert fallback when the database hiccups: with a share of all queries failing as a pool
//! timeout would, every unconfirmed copy still reaches web push and then SMS, once each; and an
//! alert the sweeper cannot read stays on the schedule instead of being taken for one that is
//! gone.

use std::time::Duration;

use serde_json::{Value, json};
use vigil_server::Settings;
use vigil_server::db::Db;
use vigil_server::policy::Role;

use crate::fakes::{Browser, FakePushService, FakeSmsGateway, allow_local_push};
use crate::support::{Backend, Client, TestServer};

/// Sleeping phones in the flaky-database story.
const STAFF: usize = 12;
/// Requests in flight toward the push service and toward the SMS gateway.
const BOUND: usize = 3;
/// Share of queries that fail while the fallback works.
const FAULTS: f64 = 0.25;
/// Long enough for a loaded machine; the waits end as soon as what they wait for happened.
const PATIENCE: Duration = Duration::from_secs(90);

fn evacuation() -> Value {
    json!({
        "translations": {"en": {"title": "Evacuate", "body": "Leave the compound by the north gate.",
            "instructions": "Go to assembly point B."}},
        "severity": "extreme",
        "target": {"roles": ["staff"]}
    })
}

/// One copy's row in the fallback schedule.
#[derive(Debug, sqlx::FromRow)]
struct Copy {
    user_id: i64,
    next_attempt_at: Option<i64>,
    push_attempts: i64,
    sms_messages: i64,
    last_error: Option<String>,
}

async fn copies(db: &Db, alert_id: i64) -> Vec<Copy> {
    vigil_server::on_reader!(db, pool => sqlx::query_as::<_, Copy>(
        "SELECT user_id, next_attempt_at, push_attempts, sms_messages, last_error \
         FROM alert_recipients WHERE alert_id = $1 ORDER BY user_id")
        .bind(alert_id).fetch_all(pool).await)
    .expect("read the schedule")
}

/// Polls `check` until it answers, for up to [`PATIENCE`].
async fn eventually<T>(what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A sleeping phone: a person whose web app has a push subscription and who has a number.
struct Sleeper {
    staff: Client,
    browser: Browser,
    number: String,
}

async fn through_a_flaky_database(backend: Backend) {
    let push = FakePushService::start().await;
    let sms = FakeSmsGateway::start().await;
    let Some(srv) = TestServer::start_with(backend, |s: &mut Settings| {
        allow_local_push(s);
        sms.twilio(s);
        s.alert_push_after_secs = 1;
        s.alert_sms_after_secs = 1;
        s.push_concurrency = BOUND;
        s.sms_concurrency = BOUND;
        s.push_timeout_secs = 2;
        s.sms_timeout_secs = 2;
    })
    .await
    else {
        return;
    };
    // Busy services: requests overlap, so a missing bound would show.
    push.delay(Duration::from_millis(50));
    sms.delay(Duration::from_millis(50));
    let org = srv.org().await;
    let adviser = srv.user(org, &[Role::Adviser], false).await;
    let mut sleepers = Vec::new();
    for i in 0..STAFF {
        let staff = srv.user(org, &[Role::Staff], false).await;
        let browser = push.browser();
        staff
            .post("/api/v1/push/subscriptions", browser.subscription())
            .await
            .expect(201);
        let number = format!("+25470010{i:04}");
        staff
            .patch("/api/v1/me", json!({"phone": number}))
            .await
            .expect(200);
        sleepers.push(Sleeper {
            staff,
            browser,
            number,
        });
    }
    let sent = adviser
        .post("/api/v1/alerts", evacuation())
        .await
        .expect(201);
    let id = sent["id"].as_i64().expect("id");
    assert_eq!(sent["recipient_count"], STAFF);

    // The database starts failing a quarter of its queries before the fallback is due.
    let faults = srv
        .state
        .db
        .inject_faults(FAULTS)
        .await
        .expect("inject faults");
    let endpoints: Vec<String> = sleepers
        .iter()
        .map(|s| s.browser.endpoint.clone())
        .collect();
    push.wait_for_each(&endpoints, PATIENCE).await;
    let numbers: Vec<String> = sleepers.iter().map(|s| s.number.clone()).collect();
    sms.wait_for_each(&numbers, PATIENCE).await;
    let injected = faults.injected();
    drop(faults);
    assert!(
        injected > 0,
        "the database failed no query: the test proved nothing"
    );

    // Every copy's outcome gets recorded, and none is left on the schedule or given up.
    let done = eventually("every SMS recorded", async || {
        let rows = copies(&srv.state.db, id).await;
        rows.iter()
            .all(|c| c.sms_messages >= 1 && c.next_attempt_at.is_none())
            .then_some(rows)
    })
    .await;
    assert_eq!(done.len(), STAFF);
    for copy in &done {
        assert!(
            copy.push_attempts >= 1 && copy.sms_messages == 1,
            "{copy:?}"
        );
    }
    for sleeper in &sleepers {
        let pushes = push.received_at(&sleeper.browser.endpoint);
        assert_eq!(pushes.len(), 1, "one push to {}", sleeper.staff.user_id);
        assert_eq!(pushes[0].json.as_ref().expect("json")["alert_id"], id);
        let texts: Vec<_> = sms
            .received()
            .into_iter()
            .filter(|t| t.to == sleeper.number)
            .collect();
        assert_eq!(texts.len(), 1, "one text to {}", sleeper.number);
        assert!(
            texts[0]
                .text
                .starts_with("Evacuate: Go to assembly point B."),
            "{}",
            texts[0].text
        );
    }
    assert!(
        push.most_in_flight() <= BOUND,
        "the push service saw {} requests at once",
        push.most_in_flight()
    );
    assert!(
        sms.most_in_flight() <= BOUND,
        "the gateway saw {} texts at once",
        sms.most_in_flight()
    );
    println!(
        "{backend:?}: {injected} queries failed on purpose; {STAFF} copies pushed and texted once each"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_unconfirmed_copy_reaches_push_and_sms_through_a_flaky_database_sqlite() {
    through_a_flaky_database(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_unconfirmed_copy_reaches_push_and_sms_through_a_flaky_database_postgres() {
    through_a_flaky_database(Backend::Postgres).await;
}

async fn an_unreadable_alert_is_not_a_gone_one(backend: Backend) {
    let push = FakePushService::start().await;
    // The fallback comes only when the test says so (below), never on its own.
    let Some(srv) = TestServer::start_with(backend, |s: &mut Settings| {
        allow_local_push(s);
        s.alert_push_after_secs = 3_600;
    })
    .await
    else {
        return;
    };
    let org = srv.org().await;
    let adviser = srv.user(org, &[Role::Adviser], false).await;
    let staff = srv.user(org, &[Role::Staff], false).await;
    let browser = push.browser();
    staff
        .post("/api/v1/push/subscriptions", browser.subscription())
        .await
        .expect(201);
    let id = adviser
        .post("/api/v1/alerts", evacuation())
        .await
        .expect(201)["id"]
        .as_i64()
        .expect("id");

    // The stored alert becomes unreadable (as a failing read would leave it) just as its
    // fallback falls due.
    let db = &srv.state.db;
    let content: String = vigil_server::on_reader!(db, pool => sqlx::query_scalar(
        "SELECT content FROM alerts WHERE id = $1").bind(id).fetch_one(pool).await)
    .expect("content");
    vigil_server::on_writer!(db, pool => sqlx::query(
        "UPDATE alerts SET content = 'not JSON', fallback_at = $2 WHERE id = $1")
        .bind(id).bind(vigil_server::db::now_ms()).execute(pool).await.map(drop))
    .expect("make the alert unreadable");

    // The sweeper arms the copy and tries it; it must keep it on the schedule.
    let copy = eventually("the sweeper to try the copy", async || {
        let armed: Option<i64> = vigil_server::on_reader!(db, pool => sqlx::query_scalar(
            "SELECT fallback_at FROM alerts WHERE id = $1").bind(id).fetch_one(pool).await)
        .expect("fallback_at");
        let copy = copies(db, id).await.pop().expect("one copy");
        let tried = copy.next_attempt_at.is_none() || copy.last_error.is_some();
        (armed.is_none() && tried).then_some(copy)
    })
    .await;
    assert_eq!(copy.user_id, staff.user_id);
    assert!(
        copy.next_attempt_at.is_some(),
        "an alert that could not be read was taken for one that is gone: {copy:?}"
    );
    assert!(
        copy.last_error
            .as_deref()
            .is_some_and(|e| e.starts_with("could not read the alert")),
        "{copy:?}"
    );
    assert_eq!(copy.push_attempts, 0);
    assert!(push.received().is_empty());

    // Once the alert can be read again, the phone is woken after all.
    vigil_server::on_writer!(db, pool => sqlx::query("UPDATE alerts SET content = $2 WHERE id = $1")
        .bind(id).bind(&content).execute(pool).await.map(drop))
    .expect("repair the alert");
    let got = push.wait_for(1, PATIENCE).await;
    assert_eq!(got[0].endpoint, browser.endpoint);
    assert_eq!(got[0].json.as_ref().expect("json")["alert_id"], id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_that_cannot_be_read_stays_on_the_schedule_sqlite() {
    an_unreadable_alert_is_not_a_gone_one(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_that_cannot_be_read_stays_on_the_schedule_postgres() {
    an_unreadable_alert_is_not_a_gone_one(Backend::Postgres).await;
}
