//! Alerts: targeting and its preview, permissions, live delivery with receipts, resume, web
//! push and SMS fallbacks, templates, cancellation and bad input.

use std::time::Duration;

use serde_json::{Value, json};
use vigil_server::policy::Role;

use crate::fakes::{FakePushService, FakeSmsGateway, allow_local_push};
use crate::on_both_databases;
use crate::support::{Backend, Client, TestServer};
use crate::ws::{Ws, fix};

/// A square area of one degree with its south-west corner at (`lon0`, 0).
async fn square_area(adviser: &Client, name: &str, lon0: f64) -> i64 {
    let f = json!({"type": "Feature", "properties": {"name": name, "security_level": 4},
        "geometry": {"type": "Polygon", "coordinates": [[[lon0, 0.0], [lon0 + 1.0, 0.0], [lon0 + 1.0, 1.0], [lon0, 1.0], [lon0, 0.0]]]}});
    adviser.post("/api/v1/areas", f).await.expect(201)["id"]
        .as_i64()
        .expect("id")
}

async fn report(client: &Client, lat: f64, lon: f64, ms_ago: i64) {
    client
        .post(
            "/api/v1/positions",
            json!({"fixes": [fix(lat, lon, ms_ago)]}),
        )
        .await
        .expect(200);
}

fn alert(target: Value) -> Value {
    json!({
        "translations": {
            "en": {"title": "Shelter in place", "body": "Gunfire reported near the market.", "instructions": "Stay indoors."},
            "fr": {"title": "Restez à l'abri", "body": "Tirs signalés près du marché."},
            "ar": {"title": "ابقوا في أماكنكم", "body": "أُبلغ عن إطلاق نار قرب السوق."}
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

on_both_databases! {
    async fn an_area_alert_reaches_who_is_inside_who_follows_and_who_is_named(srv: TestServer) {
        let org = srv.org().await;
        let other_org = srv.org().await;
        let adviser = srv.user(org, &[Role::Adviser], false).await;
        let area = square_area(&adviser, "Market district", 10.0).await;
        let inside = srv.user(org, &[Role::Staff], false).await;
        report(&inside, 0.5, 10.5, 60_000).await;
        let stale = srv.user(org, &[Role::Staff], false).await;
        report(&stale, 0.5, 10.6, 3 * 3_600_000).await;
        let outside = srv.user(org, &[Role::Staff], false).await;
        report(&outside, 0.5, 30.5, 60_000).await;
        let follower = srv.user(org, &[Role::Staff], false).await;
        follower.put("/api/v1/me/location-mode", json!({"mode": "location_less"})).await.expect(200);
        follower.put("/api/v1/me/followed-areas", json!({"area_ids": [area]})).await.expect(200);
        // Another organisation's staff inside the area: not the adviser's to alert.
        let foreigner = srv.user(other_org, &[Role::Staff], false).await;
        report(&foreigner, 0.5, 10.4, 60_000).await;
        let operator = srv.user(org, &[Role::Operator], false).await;

        let target = json!({"areas": [area], "roles": ["operator"], "fresh_within_secs": 3600});
        let preview = adviser.post("/api/v1/alerts/preview", target.clone()).await.expect(200);
        assert_eq!(preview["total"], 3, "{preview}");
        assert_eq!(preview["by_reason"], json!({"inside_area": 1, "following_area": 1, "role": 1}));
        assert_eq!(preview["stale_positions"], 1);
        assert_eq!(preview["by_organisation"], json!({org.to_string(): 3}));

        let sent = adviser.post("/api/v1/alerts", alert(target)).await.expect(201);
        assert_eq!(sent["recipient_count"], 3);
        assert_eq!(sent["translations"]["ar"]["title"], "ابقوا في أماكنكم");
        let id = sent["id"].as_i64().expect("id");
        let ledger = adviser.get(&format!("/api/v1/alerts/{id}/recipients")).await.expect(200);
        let mut reached: Vec<(i64, String)> = ledger.as_array().expect("rows").iter()
            .map(|r| (r["user_id"].as_i64().expect("id"), r["reasons"].as_str().expect("reasons").to_string()))
            .collect();
        reached.sort();
        let mut expected = vec![(inside.user_id, "inside_area".to_string()), (follower.user_id, "following_area".to_string()),
            (operator.user_id, "role".to_string())];
        expected.sort();
        assert_eq!(reached, expected);
        for nobody in [&stale, &outside, &foreigner] {
            assert_eq!(nobody.get("/api/v1/me/alerts").await.expect(200), json!([]));
        }
        let inbox = follower.get("/api/v1/me/alerts").await.expect(200);
        assert_eq!(inbox[0]["alert"]["alert_id"], id);
        assert_eq!(inbox[0]["reasons"], json!(["following_area"]));

        // A drawn circle over part of the area reaches the area's followers too; a circle
        // far away reaches nobody, and says so instead of sending to no one.
        let circle = json!({"shapes": [{"type": "Feature", "properties": {"radius_m": 5000.0},
            "geometry": {"type": "Point", "coordinates": [10.99, 0.5]}}]});
        let p = adviser.post("/api/v1/alerts/preview", circle).await.expect(200);
        assert_eq!(p["by_reason"], json!({"following_area": 1}), "{p}");
        let far = json!({"shapes": [{"type": "Feature", "properties": {"radius_m": 1000.0},
            "geometry": {"type": "Point", "coordinates": [50.0, 50.0]}}]});
        let refused = adviser.post("/api/v1/alerts", alert(far)).await.problem(422);
        assert_eq!(refused["issues"][0]["at"], "target");
        assert!(refused["issues"][0]["reason"].as_str().expect("reason").contains("reaches nobody"), "{refused}");
        // Widening freshness brings the stale position in.
        let wide = adviser.post("/api/v1/alerts/preview", json!({"areas": [area], "fresh_within_secs": 86400})).await.expect(200);
        assert_eq!(wide["by_reason"]["inside_area"], 2);
    }

    async fn who_may_send_and_see_alerts(srv: TestServer) {
        let a = srv.org().await;
        let b = srv.org().await;
        let adviser_a = srv.user(a, &[Role::Adviser], false).await;
        let staff_a = srv.user(a, &[Role::Staff], false).await;
        let operator_b = srv.user(b, &[Role::Operator], false).await;
        let adviser_b = srv.user(b, &[Role::Adviser], false).await;
        let oversight = srv.user(a, &[Role::Oversight], false).await;
        let admin = srv.user(a, &[], true).await;
        staff_a.post("/api/v1/alerts", alert(json!({"everyone": true}))).await.problem(403);
        oversight.post("/api/v1/alerts", alert(json!({"everyone": true}))).await.problem(403);
        adviser_a.post("/api/v1/alerts", alert(json!({"organisations": [b]}))).await.problem(403);
        // "Everyone" for an adviser means everyone in their organisation.
        let sent = adviser_a.post("/api/v1/alerts", alert(json!({"everyone": true}))).await.expect(201);
        assert_eq!(sent["recipient_count"], 4, "{sent}");
        let id = sent["id"].as_i64().expect("id");
        operator_b.get(&format!("/api/v1/alerts/{id}")).await.problem(403);
        assert_eq!(operator_b.get("/api/v1/alerts").await.expect(200), json!([]));
        // Oversight sees every organisation's alerts, so no operations room is blind.
        let b_sent = adviser_b.post("/api/v1/alerts", alert(json!({"organisations": [b]}))).await.expect(201);
        let all = oversight.get("/api/v1/alerts").await.expect(200);
        let ids: Vec<i64> = all.as_array().expect("list").iter().filter_map(|x| x["id"].as_i64()).collect();
        assert!(ids.contains(&id) && ids.contains(&b_sent["id"].as_i64().expect("id")), "{all}");
        oversight.get(&format!("/api/v1/alerts/{id}/recipients")).await.expect(200);
        // A system admin may let an adviser alert another organisation too.
        adviser_a.put(&format!("/api/v1/users/{}/broadcast-grants", adviser_a.user_id), json!({"org_ids": [b]})).await.problem(403);
        let granted = admin.put(&format!("/api/v1/users/{}/broadcast-grants", adviser_a.user_id), json!({"org_ids": [b]})).await.expect(200);
        assert_eq!(granted, json!({"all": false, "org_ids": [b]}));
        adviser_a.post("/api/v1/alerts/preview", json!({"organisations": [b]})).await.expect(200);
        admin.put(&format!("/api/v1/users/{}/broadcast-grants", adviser_a.user_id), json!({"org_ids": []})).await.expect(200);
        adviser_a.post("/api/v1/alerts/preview", json!({"organisations": [b]})).await.problem(403);
        admin.put(&format!("/api/v1/users/{}/broadcast-grants", adviser_a.user_id), json!({"org_ids": [999_999]})).await.problem(404);
        // A system admin reaches across organisations.
        let both = admin.post("/api/v1/alerts", alert(json!({"organisations": [a, b]}))).await.expect(201);
        assert_eq!(both["recipient_count"], 6);
        // Staff cannot confirm an alert they did not receive.
        let staff_b = srv.user(b, &[Role::Staff], false).await;
        staff_b.post(&format!("/api/v1/alerts/{id}/receipt"), json!({"state": "read"})).await.problem(404);
    }

    async fn bad_alerts_are_refused_naming_the_field(srv: TestServer) {
        let org = srv.org().await;
        let adviser = srv.user(org, &[Role::Adviser], false).await;
        let mut empty = alert(json!({"everyone": true}));
        empty["translations"]["en"]["title"] = json!("  ");
        empty["translations"]["fr"]["body"] = json!("x".repeat(5_001));
        let p = adviser.post("/api/v1/alerts", empty).await.problem(422);
        let at: Vec<&str> = p["issues"].as_array().expect("issues").iter().filter_map(|i| i["at"].as_str()).collect();
        assert!(at.contains(&"translations/en/title") && at.contains(&"translations/fr/body"), "{p}");
        let bowtie = json!({"shapes": [{"type": "Feature", "properties": {},
            "geometry": {"type": "Polygon", "coordinates": [[[0.0, 0.0], [1.0, 1.0], [1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]]}}]});
        let p = adviser.post("/api/v1/alerts", alert(bowtie)).await.problem(422);
        assert_eq!(p["issues"][0]["at"], "target/shapes/0/geometry", "{p}");
        adviser.post("/api/v1/alerts", alert(json!({"areas": [999_999]}))).await.problem(404);
        let p = adviser.post("/api/v1/alerts", alert(json!({}))).await.problem(422);
        assert_eq!(p["issues"][0]["at"], "target");
        let p = adviser.post("/api/v1/alerts", json!({"translations": {}, "target": {"everyone": true}, "severity": "apocalyptic"})).await.problem(422);
        assert!(p["detail"].as_str().expect("detail").contains("severity"), "{p}");
    }

    async fn connected_phones_get_it_live_and_the_sender_watches_the_ledger_fill(srv: TestServer) {
        let org = srv.org().await;
        let adviser = srv.user(org, &[Role::Adviser], false).await;
        let staff = srv.user(org, &[Role::Staff], false).await;
        let (mut console, _) = Ws::hello(&srv, &adviser, 0).await;
        console.send(json!({"type": "subscribe", "topic": "alerts"})).await;
        // `alerts` is an older name of the operations feed: the answer gives the feed's name.
        assert_eq!(console.next_of("subscribed").await["topic"], "operations");
        let (mut phone, _) = Ws::hello(&srv, &staff, 0).await;
        let sent = adviser.post("/api/v1/alerts", alert(json!({"everyone": true}))).await.expect(201);
        let id = sent["id"].as_i64().expect("id");
        let m = phone.next_of("message").await;
        assert_eq!((m["kind"].as_str(), m["payload"]["alert_id"].as_i64()), (Some("alert"), Some(id)), "{m}");
        assert_eq!(m["payload"]["translations"]["ar"]["body"], "أُبلغ عن إطلاق نار قرب السوق.");
        assert_eq!(m["payload"]["severity"], "severe");
        for (i, step) in ["delivered", "read", "acknowledged"].iter().enumerate() {
            phone.send(json!({"type": "receipt", "ref": format!("r{i}"), "alert_id": id, "state": step})).await;
            assert_eq!(phone.next_of("ack").await["ref"], format!("r{i}"));
        }
        // A late, out-of-order "delivered" does not move the copy backwards.
        phone.send(json!({"type": "receipt", "ref": "late", "alert_id": id, "state": "delivered"})).await;
        phone.next_of("ack").await;
        let progress = loop {
            let p = console.next_of("alert_progress").await;
            if p["counts"]["acknowledged"] == 1 {
                break p;
            }
        };
        assert_eq!(progress["alert_id"], id);
        let row = &adviser.get(&format!("/api/v1/alerts/{id}/recipients?state=acknowledged")).await.expect(200)[0];
        assert_eq!((row["user_id"].as_i64(), row["channel"].as_str()), (Some(staff.user_id), Some("ws")));
        for t in ["sent_at", "delivered_at", "read_at", "acknowledged_at"] {
            assert!(row[t].is_string(), "{t} missing in {row}");
        }
        let counts = eventually("counts stored", async || {
            let a = adviser.get(&format!("/api/v1/alerts/{id}")).await.expect(200);
            (a["counts"]["acknowledged"] == 1).then_some(a["counts"].clone())
        }).await;
        assert_eq!(counts["queued"].as_i64().unwrap_or(0) + counts["sent"].as_i64().unwrap_or(0), 1, "the adviser's own copy: {counts}");
        phone.send(json!({"type": "receipt", "ref": "x", "alert_id": id + 1000, "state": "read"})).await;
        assert_eq!(phone.next_of("error").await["code"], "not_found");
    }

    async fn an_offline_phone_resumes_and_gets_each_alert_once(srv: TestServer) {
        let org = srv.org().await;
        let adviser = srv.user(org, &[Role::Adviser], false).await;
        let staff = srv.user(org, &[Role::Staff], false).await;
        let first = adviser.post("/api/v1/alerts", alert(json!({"everyone": true}))).await.expect(201);
        let second = adviser.post("/api/v1/alerts", alert(json!({"everyone": true}))).await.expect(201);
        let (mut phone, welcome) = Ws::hello(&srv, &staff, 0).await;
        assert_eq!(welcome["last_seq"], 2);
        let a = phone.next_of("message").await;
        let b = phone.next_of("message").await;
        assert_eq!((a["seq"].as_i64(), a["payload"]["alert_id"].clone()), (Some(1), first["id"].clone()));
        assert_eq!((b["seq"].as_i64(), b["payload"]["alert_id"].clone()), (Some(2), second["id"].clone()));
        assert_eq!(a["payload"]["translations"]["fr"]["title"], "Restez à l'abri");
        drop(phone);
        // Cancelling tells everyone, in order, after what they already have.
        adviser.post(&format!("/api/v1/alerts/{}/cancel", first["id"]), json!({})).await.expect(200);
        adviser.post(&format!("/api/v1/alerts/{}/cancel", first["id"]), json!({})).await.problem(409);
        let (mut phone, _) = Ws::hello(&srv, &staff, 2).await;
        let c = phone.next_of("message").await;
        assert_eq!((c["seq"].as_i64(), c["kind"].as_str(), c["payload"]["alert_id"].clone()), (Some(3), Some("alert_cancelled"), first["id"].clone()));
        phone.send(json!({"type": "ping", "ref": "end"})).await;
        assert_eq!(phone.next().await["type"], "pong", "nothing replayed twice");
    }

    async fn templates_fill_in_what_the_adviser_leaves_out(srv: TestServer) {
        let org = srv.org().await;
        let adviser = srv.user(org, &[Role::Adviser], false).await;
        let operator = srv.user(org, &[Role::Operator], false).await;
        let mut content = alert(json!({"everyone": true}));
        content["category"] = json!("health");
        let t = adviser.post("/api/v1/alert-templates", json!({"name": "Curfew", "content": content})).await.expect(201);
        adviser.post("/api/v1/alert-templates", json!({"name": "Curfew", "content": {}})).await.problem(409);
        operator.post("/api/v1/alert-templates", json!({"name": "Other", "content": {}})).await.problem(403);
        assert_eq!(operator.get("/api/v1/alert-templates").await.expect(200)[0]["name"], "Curfew");
        let sent = adviser.post("/api/v1/alerts", json!({"template_id": t["id"], "severity": "extreme"})).await.expect(201);
        assert_eq!((sent["severity"].as_str(), sent["category"].as_str()), (Some("extreme"), Some("health")));
        assert_eq!(sent["translations"]["en"]["instructions"], "Stay indoors.");
        adviser.delete(&format!("/api/v1/alert-templates/{}", t["id"])).await.expect(204);
        adviser.post("/api/v1/alerts", json!({"template_id": t["id"]})).await.problem(404);
    }

    async fn a_template_with_a_broken_target_is_refused_when_stored(srv: TestServer) {
        let org = srv.org().await;
        let adviser = srv.user(org, &[Role::Adviser], false).await;
        let broken = json!({"name": "Broken", "content": {"target": {"shapes": [[], 1, "x", null]}}});
        let p = adviser.post("/api/v1/alert-templates", broken).await.problem(422);
        let at: Vec<&str> = p["issues"].as_array().expect("issues").iter().filter_map(|i| i["at"].as_str()).collect();
        assert_eq!(at, ["content/target/shapes/0", "content/target/shapes/1", "content/target/shapes/2", "content/target/shapes/3"]);
        let good = adviser.post("/api/v1/alert-templates", json!({"name": "Good", "content": {}})).await.expect(201);
        let open_polygon = json!({"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1]]]}});
        let p = adviser.put(&format!("/api/v1/alert-templates/{}", good["id"]),
            json!({"name": "Good", "content": {"target": {"shapes": [open_polygon], "fresh_within_secs": 0}}})).await.problem(422);
        let at: Vec<&str> = p["issues"].as_array().expect("issues").iter().filter_map(|i| i["at"].as_str()).collect();
        assert_eq!(at, ["content/target/fresh_within_secs", "content/target/shapes/0/geometry"]);
        // Nothing broken was stored: the list still reads.
        let list = adviser.get("/api/v1/alert-templates").await.expect(200);
        assert_eq!(list.as_array().map(Vec::len), Some(1));
        assert_eq!(list[0]["content"], json!({}));
    }
}

#[tokio::test]
async fn unconfirmed_copies_go_to_web_push_and_then_by_sms() {
    let push = FakePushService::start().await;
    let sms = FakeSmsGateway::start().await;
    let Some(srv) = TestServer::start_with(Backend::Sqlite, |s| {
        allow_local_push(s);
        sms.twilio(s);
        s.alert_push_after_secs = 0;
        s.alert_sms_after_secs = 1;
    })
    .await
    else {
        return;
    };
    let org = srv.org().await;
    let adviser = srv.user(org, &[Role::Adviser], false).await;
    // One phone with the web app (push), one feature phone (SMS only).
    let with_app = srv.user(org, &[Role::Staff], false).await;
    let browser = push.browser();
    with_app
        .post("/api/v1/push/subscriptions", browser.subscription())
        .await
        .expect(201);
    with_app
        .patch("/api/v1/me", json!({"phone": "+254700000001"}))
        .await
        .expect(200);
    let feature_phone = srv.user(org, &[Role::Staff], false).await;
    feature_phone
        .patch("/api/v1/me", json!({"phone": "+254700000002"}))
        .await
        .expect(200);
    let sent = adviser
        .post("/api/v1/alerts", alert(json!({"roles": ["staff"]})))
        .await
        .expect(201);
    let id = sent["id"].as_i64().expect("id");

    let got = eventually("the push", async || {
        push.received_at(&browser.endpoint).into_iter().next()
    })
    .await;
    let payload = got.json.expect("decrypted JSON");
    assert_eq!(
        (payload["alert_id"].as_i64(), payload["title"].as_str()),
        (Some(id), Some("Shelter in place"))
    );
    assert_eq!(got.urgency.as_deref(), Some("high"));
    // The web app's service worker confirms over HTTP: no SMS for this person.
    with_app
        .post(
            &format!("/api/v1/alerts/{id}/receipt"),
            json!({"state": "delivered"}),
        )
        .await
        .expect(204);
    let text = eventually("the SMS", async || sms.received().into_iter().next()).await;
    assert_eq!(text.to, "+254700000002");
    assert!(
        text.text.starts_with("Shelter in place: Stay indoors."),
        "{}",
        text.text
    );
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert_eq!(sms.received().len(), 1, "the confirmed copy was not texted");
    assert_eq!(
        push.received_at(&browser.endpoint).len(),
        1,
        "one push per copy"
    );
    let counts = eventually("SMS counted", async || {
        let a = adviser
            .get(&format!("/api/v1/alerts/{id}"))
            .await
            .expect(200);
        (a["counts"]["sms_messages"] == 1).then_some(a["counts"].clone())
    })
    .await;
    assert_eq!(
        (
            counts["sms_segments"].as_i64(),
            counts["delivered"].as_i64()
        ),
        (Some(1), Some(1)),
        "{counts}"
    );
    let rows = adviser
        .get(&format!("/api/v1/alerts/{id}/recipients"))
        .await
        .expect(200);
    let row = |user: i64| {
        rows.as_array()
            .expect("rows")
            .iter()
            .find(|r| r["user_id"] == user)
            .cloned()
            .expect("row")
    };
    assert_eq!(row(feature_phone.user_id)["channel"], "sms");
    assert_eq!(
        row(feature_phone.user_id)["last_error"],
        "no web-push subscription"
    );
    assert_eq!(row(with_app.user_id)["state"], "delivered");
}

/// A real NWS tornado warning (English and Spanish), with its expiry moved into the future so
/// that it still applies; everything else is as published.
fn tornado_warning() -> String {
    let xml = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/cap/nws-tornado-warning-en-es.xml"
    ))
    .expect("fixture");
    let tomorrow =
        vigil_server::cap::format_time(time::OffsetDateTime::now_utc() + time::Duration::days(1));
    xml.replace(
        "<expires>2020-01-23T08:28:00-06:00</expires>",
        &format!("<expires>{tomorrow}</expires>"),
    )
}

async fn post_cap(client: &Client, xml: &str) -> crate::support::Resp {
    client
        .send_raw(
            reqwest::Method::POST,
            "/api/v1/cap/import",
            "application/cap+xml",
            xml.as_bytes().to_vec(),
        )
        .await
}

on_both_databases! {
    async fn a_national_cap_alert_is_imported_deduplicated_and_cancelled(srv: TestServer) {
        let org = srv.org().await;
        let adviser = srv.user(org, &[Role::Adviser], false).await;
        // The warning's polygon lies in Louisiana, around (31.7 N, 92.1 W).
        let inside = srv.user(org, &[Role::Staff], false).await;
        report(&inside, 31.75, -92.1, 60_000).await;
        let outside = srv.user(org, &[Role::Staff], false).await;
        report(&outside, 30.0, -90.0, 60_000).await;
        let xml = tornado_warning();
        let imported = post_cap(&adviser, &xml).await.expect(201);
        assert_eq!((imported["source"].as_str(), imported["recipient_count"].as_i64()), (Some("cap_import"), Some(1)), "{imported}");
        assert_eq!((imported["severity"].as_str(), imported["urgency"].as_str()), (Some("extreme"), Some("immediate")));
        let langs: Vec<&str> = imported["translations"].as_object().expect("translations").keys().map(String::as_str).collect();
        assert_eq!(langs, ["en-US", "es-US"]);
        assert_eq!(imported["identifier"], "NWS-IDP-DEV-3889295-3321272");
        assert_eq!(inside.get("/api/v1/me/alerts").await.expect(200)[0]["alert"]["alert_id"], imported["id"]);
        assert_eq!(outside.get("/api/v1/me/alerts").await.expect(200), json!([]));
        // The same document again (a feed polled twice) is not sent twice.
        let again = post_cap(&adviser, &xml).await.expect(200);
        assert_eq!(again["id"], imported["id"]);
        // The sender cancels it: recipients are told, the alert is marked cancelled.
        let cancel = format!(r#"<?xml version="1.0" encoding="UTF-8"?>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">
  <identifier>NWS-IDP-DEV-3889295-3321272-cancel</identifier>
  <sender>w-nws.webmaster@noaa.gov</sender>
  <sent>{}</sent>
  <status>Actual</status>
  <msgType>Cancel</msgType>
  <scope>Public</scope>
  <references>w-nws.webmaster@noaa.gov,NWS-IDP-DEV-3889295-3321272,2020-01-23T08:23:00-06:00</references>
</alert>"#, vigil_server::cap::format_time(time::OffsetDateTime::now_utc()));
        let cancelled = post_cap(&adviser, &cancel).await.expect(200);
        assert_eq!(cancelled["id"], imported["id"]);
        assert!(cancelled["cancelled_at"].is_string(), "{cancelled}");
        let (mut phone, _) = Ws::hello(&srv, &inside, 1).await;
        let m = phone.next_of("message").await;
        assert_eq!((m["kind"].as_str(), m["payload"]["alert_id"].clone()), (Some("alert_cancelled"), imported["id"].clone()));
        // Broken CAP is refused naming the element; a test message reaches nobody.
        let broken = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/cap/broken-circle-metres.xml")).expect("fixture");
        let p = adviser.send_raw(reqwest::Method::POST, "/api/v1/cap/import", "application/cap+xml", broken).await.problem(422);
        assert_eq!(p["issues"][0]["at"], "info[0].area[0].circle[0]", "{p}");
        let test = xml.replace("<status>Actual</status>", "<status>Test</status>").replace("3321272<", "3321273<");
        let p = post_cap(&adviser, &test).await.problem(422);
        assert_eq!(p["issues"][0]["at"], "status");
        adviser.send_raw(reqwest::Method::POST, "/api/v1/cap/import", "application/json", b"{}".to_vec()).await.problem(415);
        let staff = srv.user(org, &[Role::Staff], false).await;
        post_cap(&staff, &xml).await.problem(403);
    }

    async fn every_alert_is_published_as_cap_and_in_an_atom_feed(srv: TestServer) {
        let org = srv.org().await;
        let adviser = srv.user(org, &[Role::Adviser], false).await;
        let area = square_area(&adviser, "Old town", 20.0).await;
        let staff = srv.user(org, &[Role::Staff], false).await;
        report(&staff, 0.5, 20.5, 1_000).await;
        let sent = adviser.post("/api/v1/alerts", alert(json!({"areas": [area]}))).await.expect(201);
        let id = sent["id"].as_i64().expect("id");
        let resp = adviser.send(reqwest::Method::GET, &format!("/api/v1/alerts/{id}/cap.xml"), None).await;
        assert_eq!(resp.status, 200);
        assert_eq!(resp.headers["content-type"], "application/cap+xml");
        let text = resp.body.as_str().expect("XML text").to_string();
        let doc = vigil_server::cap::parse(text.as_bytes()).expect("our CAP is valid CAP");
        assert_eq!(doc.identifier, sent["identifier"].as_str().expect("identifier"));
        let ar = doc.infos.iter().find(|i| i.language == "ar").expect("Arabic block");
        assert_eq!(ar.headline.as_deref(), Some("ابقوا في أماكنكم"));
        assert_eq!(ar.areas[0].desc, "Old town");
        assert_eq!(ar.areas[0].polygons[0].exterior().0.len(), 5);
        let feed = adviser.send(reqwest::Method::GET, "/api/v1/cap/feed.atom", None).await;
        assert_eq!(feed.headers["content-type"], "application/atom+xml");
        let feed = feed.body.as_str().expect("Atom text").to_string();
        assert!(feed.contains(&format!("/api/v1/alerts/{id}/cap.xml")) && feed.contains("Shelter in place"), "{feed}");
        let other = srv.org().await;
        let stranger = srv.user(other, &[Role::Operator], false).await;
        stranger.get(&format!("/api/v1/alerts/{id}/cap.xml")).await.problem(403);
    }
}

/// The OpenAPI document says what `POST /alerts/preview` accepts: a bare target, as a client
/// written from the document sends it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_preview_accepts_the_body_its_openapi_document_describes() {
    let srv = TestServer::start(crate::support::Backend::Sqlite)
        .await
        .expect("server");
    let doc = srv.anon().get("/api/openapi.json").await.expect(200);
    let body = &doc["paths"]["/api/v1/alerts/preview"]["post"]["requestBody"]["content"]["application/json"]
        ["schema"];
    assert_eq!(body["$ref"], "#/components/schemas/Target", "{body}");
    let target = &doc["components"]["schemas"]["Target"]["properties"];
    for field in [
        "areas",
        "shapes",
        "organisations",
        "duty_stations",
        "roles",
        "everyone",
        "fresh_within_secs",
    ] {
        assert!(target.get(field).is_some(), "Target documents {field}");
    }
    let org = srv.org().await;
    let adviser = srv.user(org, &[Role::Adviser], false).await;
    srv.user(org, &[Role::Staff], false).await;
    let preview = adviser
        .post(
            "/api/v1/alerts/preview",
            json!({"everyone": true, "fresh_within_secs": 600}),
        )
        .await
        .expect(200);
    assert_eq!(preview["fresh_within_secs"], 600);
    // The body of POST /alerts is not what the preview takes, and says so.
    let wrapped = adviser
        .post(
            "/api/v1/alerts/preview",
            json!({"target": {"everyone": true}}),
        )
        .await
        .problem(422);
    assert!(
        wrapped["detail"]
            .as_str()
            .expect("detail")
            .contains("target"),
        "{wrapped}"
    );
}

on_both_databases! {
    async fn a_location_less_phone_is_given_the_places_of_its_alerts_in_force(srv: TestServer) {
        let org = srv.org().await;
        let adviser = srv.user(org, &[Role::Adviser], false).await;
        let region = square_area(&adviser, "Upper Nile", 20.0).await;
        let follower = srv.user(org, &[Role::Staff], false).await;
        follower.put("/api/v1/me/location-mode", json!({"mode": "location_less"})).await.expect(200);
        follower.put("/api/v1/me/followed-areas", json!({"area_ids": [region]})).await.expect(200);
        assert_eq!(follower.get("/api/v1/me/alert-areas").await.expect(200), json!([]));

        // A circle drawn inside the followed region, and an alert to the whole organisation.
        let circle = json!({"shapes": [{"type": "Feature", "properties": {"radius_m": 2000.0},
            "geometry": {"type": "Point", "coordinates": [20.5, 0.5]}}]});
        let local = adviser.post("/api/v1/alerts", alert(circle)).await.expect(201)["id"].as_i64().expect("id");
        let everywhere = adviser.post("/api/v1/alerts", alert(json!({"organisations": [org]}))).await.expect(201)["id"]
            .as_i64().expect("id");
        let given = follower.get("/api/v1/me/alert-areas").await.expect(200);
        let given = given.as_array().expect("array");
        assert_eq!(given.len(), 2, "{given:?}");
        // Newest first: the organisation-wide one applies wherever the phone is.
        assert_eq!((given[0]["alert_id"].as_i64(), given[0]["areas"].as_array().map(Vec::len)), (Some(everywhere), Some(0)));
        assert_eq!(given[0]["reasons"], json!(["organisation"]));
        assert_eq!(given[1]["alert_id"].as_i64(), Some(local));
        assert_eq!(given[1]["reasons"], json!(["following_area"]));
        let place = &given[1]["areas"][0];
        assert_eq!((place["geometry"]["type"].as_str(), place["radius_m"].as_f64()), (Some("Point"), Some(2000.0)), "{place}");
        assert_eq!(place["geometry"]["coordinates"], json!([20.5, 0.5]));

        // A cancelled alert no longer applies.
        adviser.post(&format!("/api/v1/alerts/{local}/cancel"), json!({})).await.expect(200);
        let given = follower.get("/api/v1/me/alert-areas").await.expect(200);
        assert_eq!(given.as_array().map(|a| a.iter().map(|g| g["alert_id"].as_i64()).collect::<Vec<_>>()), Some(vec![Some(everywhere)]));
        // Nobody else's alerts, and never without signing in.
        let stranger = srv.user(org, &[Role::Staff], false).await;
        let theirs = stranger.get("/api/v1/me/alert-areas").await.expect(200);
        assert_eq!(theirs, json!([]), "joined after both alerts were sent");
        srv.anon().get("/api/v1/me/alert-areas").await.problem(401);
    }
}
