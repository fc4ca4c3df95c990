//! Web Push: a phone's service worker registers its subscription; Vigil encrypts and signs
//! messages for it, and a real push service (the fake, on 127.0.0.1) verifies the VAPID token
//! and decrypts them with the browser's private key.

use std::time::Duration;

use serde_json::{Value, json};
use vigil_server::policy::Role;
use vigil_server::push::{
    MAX_PAYLOAD_BYTES, PushError, PushOptions, Urgency, send_to_user, subscriptions_of,
};

use crate::fakes::{FakePushService, allow_local_push};
use crate::on_both_databases_with;
use crate::support::{Backend, Client, TestServer};

fn endpoints(list: &Value) -> Vec<String> {
    list.as_array()
        .expect("a list")
        .iter()
        .map(|s| s["endpoint"].as_str().expect("endpoint").to_string())
        .collect()
}

async fn staff(srv: &TestServer) -> Client {
    let org = srv.org().await;
    srv.user(org, &[Role::Staff], false).await
}

on_both_databases_with! { allow_local_push;
    async fn a_registered_phone_receives_an_encrypted_signed_push(srv: TestServer) {
        let push = FakePushService::start().await;
        let phone = push.browser();
        let amina = staff(&srv).await;

        let key = amina.get("/api/v1/push/vapid-public-key").await.expect(200);
        assert_eq!(key["public_key"], srv.state.keys.get().vapid.public_key.as_str());

        let mut body = phone.subscription();
        body["label"] = json!("work phone");
        let created = amina.post("/api/v1/push/subscriptions", body.clone()).await.expect(201);
        assert_eq!(created["endpoint"], phone.endpoint.as_str());
        assert_eq!(created["label"], "work phone");
        assert!(created.get("keys").is_none() && created.get("p256dh").is_none(), "keys are not echoed");
        // The app registers again at every start: same subscription, 200.
        let again = amina.post("/api/v1/push/subscriptions", body).await.expect(200);
        assert_eq!(again["id"], created["id"]);
        let mine = amina.get("/api/v1/push/subscriptions").await.expect(200);
        assert_eq!(endpoints(&mine), [phone.endpoint.as_str()]);

        let alert = json!({"type": "alert", "alert_id": 42, "title": "Shelter in place",
            "body": "Gunfire reported near the compound — stay indoors. ابقوا في الداخل"});
        let opts = PushOptions { ttl_secs: 600, urgency: Urgency::High, topic: Some("alert-42".into()) };
        let outcome = send_to_user(&srv.state, amina.user_id, &alert, opts).await.expect("push");
        assert_eq!((outcome.attempted, outcome.sent, outcome.gone_removed, outcome.failed), (1, 1, 0, 0));

        assert!(push.rejected().is_empty(), "refused: {:?}", push.rejected());
        let got = push.received();
        assert_eq!(got.len(), 1);
        let message = &got[0];
        assert_eq!(message.endpoint, phone.endpoint);
        assert_eq!(message.json.as_ref(), Some(&alert), "the browser decrypts exactly the payload");
        assert_eq!(message.claims.aud, push.url, "aud is the push service's origin, port included");
        assert_eq!(message.claims.sub, srv.state.settings.push_subject);
        let now = vigil_server::db::now_ms() as u64 / 1000;
        assert!(message.claims.exp > now && message.claims.exp <= now + 24 * 3600);
        assert_eq!(message.vapid_key, srv.state.keys.get().vapid.public_key);
        assert_eq!((message.ttl, message.urgency.as_deref(), message.topic.as_deref()),
            (600, Some("high"), Some("alert-42")));

        // A second message reuses the VAPID token but is encrypted afresh.
        send_to_user(&srv.state, amina.user_id, &json!({"n": 2}), PushOptions::default()).await.expect("push");
        let got = push.wait_for(2, Duration::from_secs(5)).await;
        assert_eq!(got[1].json, Some(json!({"n": 2})));
        assert_eq!(got[1].urgency.as_deref(), Some("normal"));
        assert_eq!(got[1].ttl, 24 * 3600);
    }

    async fn gone_subscriptions_are_forgotten_and_busy_services_are_retried(srv: TestServer) {
        let push = FakePushService::start().await;
        let (laptop, old_phone, tablet, new_phone) = (push.browser(), push.browser(), push.browser(), push.browser());
        let bashir = staff(&srv).await;
        for device in [&laptop, &old_phone, &tablet, &new_phone] {
            bashir.post("/api/v1/push/subscriptions", device.subscription()).await.expect(201);
        }
        // An endpoint the push service no longer knows at all answers 404.
        let forgotten = push.browser();
        let mut unknown = forgotten.subscription();
        unknown["endpoint"] = json!(push.unknown_endpoint());
        bashir.post("/api/v1/push/subscriptions", unknown.clone()).await.expect(201);
        push.answer(&old_phone.endpoint, 410);
        push.answer(&tablet.endpoint, 429);
        push.answer(&new_phone.endpoint, 500);

        let outcome = send_to_user(&srv.state, bashir.user_id, &json!({"roll_call": 7}), PushOptions::default())
            .await.expect("push");
        assert_eq!((outcome.attempted, outcome.sent, outcome.gone_removed, outcome.failed), (5, 1, 2, 2));
        assert!(outcome.retryable());
        assert_eq!(outcome.retry_after, Some(Duration::from_secs(30)));
        let mut kinds: Vec<String> = outcome.failures.iter().map(|f| match &f.error {
            PushError::RateLimited { retry_after } => format!("429 {retry_after:?}"),
            PushError::Unavailable { status, .. } => format!("{status}"),
            other => format!("unexpected {other}"),
        }).collect();
        kinds.sort();
        assert_eq!(kinds, ["429 Some(30s)", "500"]);

        let left = bashir.get("/api/v1/push/subscriptions").await.expect(200);
        assert_eq!(endpoints(&left), [laptop.endpoint.clone(), tablet.endpoint.clone(), new_phone.endpoint.clone()],
            "the 410 and the 404 subscriptions are gone");
        let failures: Vec<i64> = left.as_array().expect("list").iter()
            .map(|s| s["failures_in_a_row"].as_i64().expect("count")).collect();
        assert_eq!(failures, [0, 1, 1]);
        assert!(left[0]["last_success_at"].is_string());

        // The busy service recovers: the next message gets through and the count resets.
        push.answer(&tablet.endpoint, 201);
        push.answer(&new_phone.endpoint, 201);
        let outcome = send_to_user(&srv.state, bashir.user_id, &json!({"roll_call": 8}), PushOptions::default())
            .await.expect("push");
        assert_eq!((outcome.attempted, outcome.sent, outcome.failed), (3, 3, 0));
        let left = bashir.get("/api/v1/push/subscriptions").await.expect(200);
        assert!(left.as_array().expect("list").iter().all(|s| s["failures_in_a_row"] == 0));
        assert!(push.rejected().iter().all(|r| r.status == 404), "only the unknown endpoint was refused: {:?}", push.rejected());
    }

    async fn a_subscription_belongs_to_whoever_is_signed_in_on_that_browser(srv: TestServer) {
        let push = FakePushService::start().await;
        let shared_laptop = push.browser();
        let org = srv.org().await;
        let first = srv.user(org, &[Role::Staff], false).await;
        let second = srv.user(org, &[Role::Operator], false).await;

        first.post("/api/v1/push/subscriptions", shared_laptop.subscription()).await.expect(201);
        // The second person signs in on the same browser: the subscription moves to them, so
        // the first person's alerts stop appearing on a device someone else now uses.
        second.post("/api/v1/push/subscriptions", shared_laptop.subscription()).await.expect(200);
        assert!(endpoints(&first.get("/api/v1/push/subscriptions").await.expect(200)).is_empty());
        assert_eq!(endpoints(&second.get("/api/v1/push/subscriptions").await.expect(200)),
            [shared_laptop.endpoint.as_str()]);
        let nothing = send_to_user(&srv.state, first.user_id, &json!({}), PushOptions::default()).await.expect("push");
        assert_eq!(nothing.attempted, 0);

        // Nobody removes someone else's subscription: the call succeeds and changes nothing.
        let endpoint = json!({"endpoint": shared_laptop.endpoint});
        first.send(reqwest::Method::DELETE, "/api/v1/push/subscriptions", Some(endpoint.clone())).await.expect(204);
        assert_eq!(subscriptions_of(&srv.state.db, second.user_id).await.expect("db").len(), 1);
        second.send(reqwest::Method::DELETE, "/api/v1/push/subscriptions", Some(endpoint)).await.expect(204);
        assert!(subscriptions_of(&srv.state.db, second.user_id).await.expect("db").is_empty());

        // A person keeps at most ten devices: the eleventh replaces the least recently registered.
        let devices: Vec<_> = (0..11).map(|_| push.browser()).collect();
        for device in &devices {
            first.post("/api/v1/push/subscriptions", device.subscription()).await.expect(201);
        }
        let kept = endpoints(&first.get("/api/v1/push/subscriptions").await.expect(200));
        assert_eq!(kept.len(), 10);
        assert!(!kept.contains(&devices[0].endpoint));
        assert!(kept.contains(&devices[10].endpoint));
    }
}

/// Settings with a bound of three web-push requests in flight.
fn three_at_a_time(settings: &mut vigil_server::Settings) {
    allow_local_push(settings);
    settings.push_concurrency = 3;
}

on_both_databases_with! { three_at_a_time;
    async fn pushes_beyond_the_bound_wait_their_turn_at_the_push_service(srv: TestServer) {
        let push = FakePushService::start().await;
        // A busy push service: each answer takes a while, so messages sent together overlap.
        push.delay(Duration::from_millis(200));
        let org = srv.org().await;
        let mut people = Vec::new();
        for _ in 0..4 {
            let person = srv.user(org, &[Role::Staff], false).await;
            for _ in 0..3 {
                person.post("/api/v1/push/subscriptions", push.browser().subscription()).await.expect(201);
            }
            people.push(person);
        }
        let alert = json!({"type": "alert", "alert_id": 9, "title": "Evacuate"});
        let outcomes = futures_util::future::join_all(people.iter().map(|p| {
            send_to_user(&srv.state, p.user_id, &alert, PushOptions::default())
        }))
        .await;
        for outcome in outcomes {
            assert_eq!(outcome.expect("push").sent, 3);
        }
        assert_eq!(push.received().len(), 12);
        let most = push.most_in_flight();
        assert!((2..=3).contains(&most), "the push service saw {most} messages at once; the bound is 3");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_payload_is_refused_before_anything_is_sent() {
    let srv = TestServer::start_with(Backend::Sqlite, allow_local_push)
        .await
        .expect("server");
    let push = FakePushService::start().await;
    let phone = push.browser();
    let chidi = staff(&srv).await;
    chidi
        .post("/api/v1/push/subscriptions", phone.subscription())
        .await
        .expect(201);
    let huge = json!({"body": "x".repeat(MAX_PAYLOAD_BYTES)});
    let err = send_to_user(&srv.state, chidi.user_id, &huge, PushOptions::default())
        .await
        .expect_err("too large");
    assert!(
        matches!(err, PushError::PayloadTooLarge { max: MAX_PAYLOAD_BYTES, len } if len > MAX_PAYLOAD_BYTES),
        "{err}"
    );
    let just_fits = json!({"b": "x".repeat(MAX_PAYLOAD_BYTES - 8)});
    assert_eq!(
        serde_json::to_vec(&just_fits).expect("json").len(),
        MAX_PAYLOAD_BYTES
    );
    let outcome = send_to_user(
        &srv.state,
        chidi.user_id,
        &just_fits,
        PushOptions::default(),
    )
    .await
    .expect("fits");
    assert_eq!(outcome.sent, 1);
    let got = push.received();
    assert_eq!(got.len(), 1, "only the payload that fits was sent");
    assert_eq!(got[0].plaintext.len(), MAX_PAYLOAD_BYTES);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_subscriptions_are_422_naming_the_field() {
    // Default settings: plain-http endpoints on this machine are refused.
    let srv = TestServer::start(Backend::Sqlite).await.expect("server");
    let push = FakePushService::start().await;
    let phone = push.browser();
    let dawit = staff(&srv).await;

    let local = dawit
        .post("/api/v1/push/subscriptions", phone.subscription())
        .await
        .problem(422);
    assert_eq!(local["issues"][0]["at"], "endpoint");

    let https = |endpoint: &str, p256dh: Value, auth: Value| json!({"endpoint": endpoint, "keys": {"p256dh": p256dh, "auth": auth}});
    let ok_key = json!(phone.p256dh);
    let ok_auth = json!(phone.auth);
    let cases = [
        (
            https("https://push.example/x", json!("AAAA"), ok_auth.clone()),
            vec!["keys/p256dh"],
        ),
        (
            https("https://push.example/x", ok_key.clone(), json!("AAAA")),
            vec!["keys/auth"],
        ),
        (
            https("https://push.example/x", json!("not base64!"), json!(null)),
            vec!["keys/p256dh", "keys/auth"],
        ),
        (
            https("http://push.example/x", ok_key.clone(), ok_auth.clone()),
            vec!["endpoint"],
        ),
        (
            https("https://10.1.2.3/x", ok_key.clone(), ok_auth.clone()),
            vec!["endpoint"],
        ),
        (
            json!({"keys": {"p256dh": phone.p256dh, "auth": phone.auth}}),
            vec!["endpoint"],
        ),
        (
            json!({"endpoint": "https://push.example/x"}),
            vec!["keys/p256dh", "keys/auth"],
        ),
        (
            json!({"endpoint": "https://push.example/x", "keys": {"p256dh": phone.p256dh, "auth": phone.auth}, "label": "x".repeat(101)}),
            vec!["label"],
        ),
    ];
    for (body, fields) in cases {
        let problem = dawit
            .post("/api/v1/push/subscriptions", body.clone())
            .await
            .problem(422);
        let named: Vec<&str> = problem["issues"]
            .as_array()
            .expect("issues")
            .iter()
            .map(|i| i["at"].as_str().expect("at"))
            .collect();
        assert_eq!(named, fields, "{body}");
    }
    let typo = dawit
        .post(
            "/api/v1/push/subscriptions",
            json!({"endpoint": "https://push.example/x", "kyes": {}}),
        )
        .await
        .problem(422);
    assert!(
        typo["detail"].as_str().expect("detail").contains("kyes"),
        "{typo}"
    );
    assert!(
        dawit
            .get("/api/v1/push/subscriptions")
            .await
            .expect(200)
            .as_array()
            .expect("list")
            .is_empty()
    );
}
