//! Push for native apps: an Android app registers its FCM token and an iOS app its APNs token;
//! when an alert goes unconfirmed, the fallback wakes each phone once through a real HTTP fake
//! of its service (Google's token endpoint and FCM v1; APNs over HTTP/2), and tokens the
//! service says are gone are forgotten.

use std::time::Duration;

use serde_json::{Value, json};
use vigil_server::Settings;
use vigil_server::policy::Role;
use vigil_server::push::NativePush;

use crate::fakes::{APNS_TOPIC, FakeApns, FakeFcm};
use crate::on_both_databases;
use crate::support::{Backend, Client, TestServer};

const IPHONE_TOKEN: &str = "5a1f0c3e9b7d2a4f6e8c0b1d3f5a7c9e2b4d6f8a0c1e3b5d7f9a2c4e6b8d0f1a";

fn alert(target: Value) -> Value {
    json!({
        "translations": {
            "en": {"title": "Shelter in place", "body": "Gunfire reported near the market."},
            "fr": {"title": "Restez à l'abri", "body": "Tirs signalés près du marché."}
        },
        "severity": "severe",
        "security_level": 4,
        "target": target
    })
}

/// Polls `check` every 50 ms for up to 10 s.
async fn eventually<T>(what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    for _ in 0..200 {
        if let Some(v) = check().await {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

fn device_ids(list: &Value) -> Vec<String> {
    list.as_array()
        .expect("a list")
        .iter()
        .map(|d| d["device_id"].as_str().expect("device_id").to_string())
        .collect()
}

fn fcm_token(name: &str) -> String {
    format!(
        "{name}:APA91bH-test-only-registration-token_{}",
        "x".repeat(100)
    )
}

async fn register(client: &Client, device: &str, body: Value) -> Value {
    client
        .put(&format!("/api/v1/me/devices/{device}"), body)
        .await
        .expect(201)
}

/// A server whose fallback pushes at once, to a fake FCM and a fake APNs.
async fn with_fakes(backend: Backend) -> Option<(FakeFcm, FakeApns, TestServer)> {
    let fcm = FakeFcm::start().await;
    let apns = FakeApns::start().await;
    let srv = TestServer::start_with(backend, |s| {
        fcm.configure(s);
        apns.configure(s);
        s.alert_push_after_secs = 0;
    })
    .await?;
    Some((fcm, apns, srv))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sleeping_fcm_and_apns_phones_each_get_exactly_one_push_for_an_unconfirmed_alert() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let Some((fcm, apns, srv)) = with_fakes(backend).await else {
            continue;
        };
        let org = srv.org().await;
        let adviser = srv.user(org, &[Role::Adviser], false).await;
        let android = srv.user(org, &[Role::Staff], false).await;
        let iphone = srv.user(org, &[Role::Staff], false).await;
        iphone
            .patch("/api/v1/me", json!({"preferred_language": "fr"}))
            .await
            .expect(200);
        let pixel = fcm_token("pixel");
        let body = json!({"platform": "fcm", "token": pixel, "app_id": "org.vigil.app"});
        let created = register(&android, "pixel-install-1", body.clone()).await;
        assert_eq!(
            (created["platform"].as_str(), created["app_id"].as_str()),
            (Some("fcm"), Some("org.vigil.app"))
        );
        assert!(created.get("token").is_none(), "tokens are not echoed");
        // Apps register again at every start: the same device, 200.
        android
            .put("/api/v1/me/devices/pixel-install-1", body)
            .await
            .expect(200);
        register(
            &iphone,
            "iphone-install-1",
            json!({"platform": "apns", "token": IPHONE_TOKEN.to_uppercase()}),
        )
        .await;
        assert_eq!(
            device_ids(&android.get("/api/v1/me/devices").await.expect(200)),
            ["pixel-install-1"]
        );

        let sent = adviser
            .post("/api/v1/alerts", alert(json!({"roles": ["staff"]})))
            .await
            .expect(201);
        let id = sent["id"].as_i64().expect("id");

        let to_pixel = eventually("the FCM message", async || {
            fcm.received().into_iter().next()
        })
        .await;
        let to_iphone = eventually("the APNs notification", async || {
            apns.received().into_iter().next()
        })
        .await;
        // Neither phone confirms (they are asleep); the fallback still sends no second push.
        tokio::time::sleep(Duration::from_millis(2_500)).await;
        assert!(
            fcm.rejected().is_empty(),
            "FCM refused: {:?}",
            fcm.rejected()
        );
        assert!(
            apns.rejected().is_empty(),
            "APNs refused: {:?}",
            apns.rejected()
        );
        assert_eq!(fcm.received().len(), 1, "one FCM message per copy");
        assert_eq!(apns.received().len(), 1, "one APNs notification per copy");
        assert_eq!(fcm.token_requests(), 1);

        assert_eq!(to_pixel.token, pixel);
        let data = &to_pixel.message["data"];
        assert_eq!(data["alert_id"], id.to_string());
        assert_eq!(data["title"], "Shelter in place");
        assert_eq!(data["body"], "Gunfire reported near the market.");
        assert_eq!(data["severity"], "severe");
        assert_eq!(to_pixel.message["android"]["priority"], "HIGH");

        assert_eq!(to_iphone.token, IPHONE_TOKEN, "stored in one spelling");
        assert_eq!(to_iphone.topic, APNS_TOPIC);
        assert_eq!(
            (to_iphone.push_type.as_str(), to_iphone.priority.as_str()),
            ("alert", "10")
        );
        assert_eq!(to_iphone.collapse_id, format!("alert-{id}"));
        let now = vigil_server::db::now_ms() / 1_000;
        assert!(
            to_iphone.expiration > now + 23 * 3600 && to_iphone.expiration <= now + 24 * 3600 + 5,
            "expires with the alert (24 h by default): {}",
            to_iphone.expiration
        );
        assert_eq!(
            to_iphone.payload["aps"]["alert"]["title"],
            "Restez à l'abri"
        );
        assert_eq!(to_iphone.payload["alert_id"], id);

        let rows = adviser
            .get(&format!("/api/v1/alerts/{id}/recipients"))
            .await
            .expect(200);
        for user in [android.user_id, iphone.user_id] {
            let row = rows
                .as_array()
                .expect("rows")
                .iter()
                .find(|r| r["user_id"] == user)
                .cloned()
                .expect("row");
            assert_eq!(row["channel"], "push", "{row}");
        }
        let mine = android.get("/api/v1/me/devices").await.expect(200);
        assert!(mine[0]["last_success_at"].is_string(), "{mine}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_the_services_say_are_gone_are_forgotten() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let Some((fcm, apns, srv)) = with_fakes(backend).await else {
            continue;
        };
        let org = srv.org().await;
        let adviser = srv.user(org, &[Role::Adviser], false).await;
        let person = srv.user(org, &[Role::Staff], false).await;
        let (uninstalled, current) = (fcm_token("old"), fcm_token("new"));
        let (old_iphone, bad_iphone) = ("ab".repeat(32), "cd".repeat(32));
        register(
            &person,
            "old-android",
            json!({"platform": "fcm", "token": uninstalled}),
        )
        .await;
        register(
            &person,
            "new-android",
            json!({"platform": "fcm", "token": current}),
        )
        .await;
        register(
            &person,
            "old-iphone",
            json!({"platform": "apns", "token": old_iphone}),
        )
        .await;
        register(
            &person,
            "sandbox-iphone",
            json!({"platform": "apns", "token": bad_iphone}),
        )
        .await;
        fcm.unregister(&uninstalled);
        apns.unregister(&old_iphone);
        apns.refuse_token(&bad_iphone);

        adviser
            .post("/api/v1/alerts", alert(json!({"roles": ["staff"]})))
            .await
            .expect(201);
        let left = eventually("the gone tokens forgotten", async || {
            let list = person.get("/api/v1/me/devices").await.expect(200);
            (device_ids(&list) == ["new-android"]).then_some(list)
        })
        .await;
        assert!(left[0]["last_success_at"].is_string(), "{left}");
        assert_eq!(fcm.received().len(), 2);
        assert_eq!(apns.received().len(), 2);
    }
}

on_both_databases! {
    async fn bad_device_registrations_are_refused_naming_the_field(srv: TestServer) {
        let org = srv.org().await;
        let staff = srv.user(org, &[Role::Staff], false).await;
        let at = |problem: &Value| -> Vec<String> {
            problem["issues"].as_array().expect("issues").iter()
                .map(|i| i["at"].as_str().expect("at").to_string()).collect()
        };
        let p = staff.put("/api/v1/me/devices/phone-1", json!({})).await.problem(422);
        assert_eq!(at(&p), ["platform", "token"]);
        let p = staff.put("/api/v1/me/devices/phone-1",
            json!({"platform": "webos", "token": "abc"})).await.problem(422);
        assert_eq!(at(&p), ["platform"]);
        let p = staff.put("/api/v1/me/devices/phone-1",
            json!({"platform": "apns", "token": "not-hex"})).await.problem(422);
        assert_eq!(at(&p), ["token"]);
        let p = staff.put("/api/v1/me/devices/phone-1",
            json!({"platform": "fcm", "token": "has a space"})).await.problem(422);
        assert_eq!(at(&p), ["token"]);
        let p = staff.put(&format!("/api/v1/me/devices/{}", "d".repeat(129)),
            json!({"platform": "fcm", "token": "t", "app_id": "bad app id!"})).await.problem(422);
        assert_eq!(at(&p), ["device_id", "app_id"]);
        assert!(device_ids(&staff.get("/api/v1/me/devices").await.expect(200)).is_empty());
        srv.anon().get("/api/v1/me/devices").await.problem(401);
    }

    async fn a_person_manages_only_their_own_devices(srv: TestServer) {
        let org = srv.org().await;
        let amina = srv.user(org, &[Role::Staff], false).await;
        let bashir = srv.user(org, &[Role::OrgAdmin], false).await;
        let token = fcm_token("shared");
        register(&amina, "phone-a", json!({"platform": "fcm", "token": token})).await;

        bashir.delete("/api/v1/me/devices/phone-a").await.problem(404);
        assert_eq!(device_ids(&amina.get("/api/v1/me/devices").await.expect(200)), ["phone-a"]);
        assert!(device_ids(&bashir.get("/api/v1/me/devices").await.expect(200)).is_empty());

        // Bashir signs in on the same phone: its token moves to him, Amina's alerts stop there.
        register(&bashir, "phone-b", json!({"platform": "fcm", "token": token})).await;
        assert!(device_ids(&amina.get("/api/v1/me/devices").await.expect(200)).is_empty());
        assert_eq!(device_ids(&bashir.get("/api/v1/me/devices").await.expect(200)), ["phone-b"]);

        bashir.delete("/api/v1/me/devices/phone-b").await.expect(204);
        bashir.delete("/api/v1/me/devices/phone-b").await.problem(404);
    }
}

#[test]
fn native_push_settings_are_checked_naming_the_setting() {
    let fails = |tweak: &dyn Fn(&mut Settings)| {
        let mut s = Settings::default();
        tweak(&mut s);
        NativePush::from_settings(&s)
            .expect_err("refused")
            .to_string()
    };
    assert!(NativePush::from_settings(&Settings::default()).is_ok_and(|n| !n.is_enabled()));
    assert!(fails(&|s| s.apns_key_id = "ABCDE12345".into()).starts_with("apns_key_file "));
    assert!(
        fails(&|s| s.fcm_service_account_json = "{}".into())
            .starts_with("fcm_service_account_json ")
    );
    assert!(
        fails(&|s| s.fcm_service_account_file = "/nonexistent/key.json".into())
            .starts_with("fcm_service_account_file ")
    );
    let key = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/push/TEST-ONLY-apns-AuthKey.p8"
    );
    let apns = |s: &mut Settings| {
        s.apns_key_file = key.into();
        s.apns_key_id = "ABCDE12345".into();
        s.apns_team_id = "TEAM123456".into();
        s.apns_topic = "org.vigil.app".into();
    };
    let mut ok = Settings::default();
    apns(&mut ok);
    assert!(NativePush::from_settings(&ok).is_ok_and(|n| n.is_enabled()));
    assert!(
        fails(&|s| {
            apns(s);
            s.apns_team_id = "short".into()
        })
        .starts_with("apns_team_id ")
    );
    assert!(
        fails(&|s| {
            apns(s);
            s.apns_topic = String::new()
        })
        .starts_with("apns_topic ")
    );
    assert!(
        fails(&|s| {
            apns(s);
            s.apns_key_file = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml").into()
        })
        .starts_with("apns_key_file ")
    );
}
