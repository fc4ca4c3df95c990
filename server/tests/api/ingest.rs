//! Third-party trackers: operators issue device credentials; the OwnTracks app and OsmAnd /
//! Traccar Client report with them, in the exact payloads those apps send.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use reqwest::Method;
use serde_json::{Value, json};
use vigil_server::db::{Db, Timestamp, now_ms};
use vigil_server::policy::Role;

use crate::on_both_databases;
use crate::support::{Client, Resp, TestServer};

const OWNTRACKS: &str = "/api/v1/ingest/owntracks";
const OSMAND: &str = "/api/v1/ingest/osmand";

fn now_s() -> i64 {
    now_ms() / 1000
}

/// Issues a credential for `subject` (`{"user_id": …}` or `{"asset_id": …}`); returns the
/// credential id and its secret.
async fn issue(by: &Client, org: i64, subject: Value) -> (i64, String) {
    let issued = by
        .post(&format!("/api/v1/organisations/{org}/devices"), subject)
        .await
        .expect(201);
    let secret = issued["secret"].as_str().expect("secret").to_string();
    (issued["id"].as_i64().expect("id"), secret)
}

async fn vehicle(by: &Client, org: i64, name: &str) -> i64 {
    by.post(
        &format!("/api/v1/organisations/{org}/assets"),
        json!({"kind": "vehicle", "name": name}),
    )
    .await
    .expect(201)["id"]
        .as_i64()
        .expect("id")
}

/// A circular area drawn by an adviser; returns its id.
async fn circle(adviser: &Client, name: &str, lon: f64, lat: f64, radius_m: f64) -> i64 {
    let feature = json!({"type": "Feature",
        "properties": {"name": name, "kind": "premises", "radius_m": radius_m},
        "geometry": {"type": "Point", "coordinates": [lon, lat]}});
    adviser.post("/api/v1/areas", feature).await.expect(201)["id"]
        .as_i64()
        .expect("id")
}

/// Sends a request as a tracker does: no bearer token, optionally HTTP Basic.
async fn tracker(
    srv: &TestServer,
    method: Method,
    path_and_query: &str,
    basic: Option<(&str, &str)>,
    body: Option<(&str, Vec<u8>)>,
) -> Resp {
    let mut req = reqwest::Client::new().request(method, format!("{}{path_and_query}", srv.url));
    if let Some((user, password)) = basic {
        let encoded = STANDARD.encode(format!("{user}:{password}"));
        req = req.header("authorization", format!("Basic {encoded}"));
    }
    if let Some((content_type, bytes)) = body {
        req = req.header("content-type", content_type).body(bytes);
    }
    Client::finish(req).await
}

/// POSTs one OwnTracks message with the secret as the Basic password, as the app does.
async fn owntracks(srv: &TestServer, secret: &str, message: &Value) -> Resp {
    let body = serde_json::to_vec(message).expect("json");
    tracker(
        srv,
        Method::POST,
        OWNTRACKS,
        Some(("amina", secret)),
        Some(("application/json", body)),
    )
    .await
}

/// An OwnTracks Android `location` report: zero-valued `acc`, `alt` and `vel` are left out.
fn ot_location(lat: f64, lon: f64, tst: i64) -> Value {
    json!({"_type": "location", "BSSID": "b8:27:eb:00:00:01", "SSID": "UNMISS-Guest", "batt": 81, "bs": 1,
           "conn": "w", "created_at": tst + 2, "lat": lat, "lon": lon, "m": 1, "t": "u", "tid": "am",
           "topic": "owntracks/amina/pixel", "tst": tst})
}

/// How many fixes of a subject the database holds.
async fn stored(db: &Db, kind: &str, id: i64) -> i64 {
    vigil_server::on_reader!(db, pool => sqlx::query_scalar(
        "SELECT COUNT(*) FROM position_history WHERE subject_kind = $1 AND subject_id = $2")
        .bind(kind).bind(id).fetch_one(pool).await.expect("count"))
}

fn issue_places(problem: &Value) -> Vec<String> {
    problem["issues"]
        .as_array()
        .expect("issues")
        .iter()
        .map(|i| i["at"].as_str().expect("at").to_string())
        .collect()
}

fn www_authenticate(resp: &Resp) -> String {
    resp.headers
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

on_both_databases! {
    async fn an_issued_credential_works_until_it_is_revoked_and_not_a_moment_longer(srv: TestServer) {
        let org = srv.org().await;
        let operator = srv.user(org, &[Role::Operator], false).await;
        let car = vehicle(&operator, org, "Land Cruiser 7").await;
        let (device, secret) = issue(&operator, org, json!({"asset_id": car, "label": "OwnTracks on the dashboard phone"})).await;
        assert!(secret.starts_with("vgd_") && secret.len() >= 40, "a long unguessable secret: {secret}");

        // The phone on the dashboard reports; no accuracy, as OwnTracks leaves zero fields out.
        let tst = now_s() - 30;
        let answer = owntracks(&srv, &secret, &ot_location(4.8512, 31.5823, tst)).await;
        assert_eq!(answer.headers.get("content-type").and_then(|v| v.to_str().ok()), Some("application/json"));
        assert_eq!(answer.expect(200), json!([]), "no circular area nearby: nothing for the app to do");

        // The operator sees the vehicle on the map where the tracker put it.
        let map = operator.get("/api/v1/positions").await.expect(200);
        let seen = map.as_array().expect("list").iter().find(|p| p["subject"] == "asset" && p["id"] == car).expect("vehicle on the map");
        assert_eq!((seen["lat"].as_f64(), seen["lon"].as_f64(), seen["name"].as_str()), (Some(4.8512), Some(31.5823), Some("Land Cruiser 7")));
        assert_eq!(seen["recorded_at"], Timestamp(tst * 1000).to_rfc3339());
        assert_eq!(seen["accuracy_m"], Value::Null);

        // The list shows the credential, its use, and never the secret.
        let list = operator.get(&format!("/api/v1/organisations/{org}/devices")).await.expect(200);
        assert!(!list.to_string().contains(&secret[4..]), "the secret is shown only once");
        let listed = &list[0];
        assert_eq!((listed["id"].as_i64(), listed["subject_kind"].as_str(), listed["subject_id"].as_i64()), (Some(device), Some("asset"), Some(car)));
        assert_eq!((listed["label"].as_str(), listed["subject_name"].as_str()), (Some("OwnTracks on the dashboard phone"), Some("Land Cruiser 7")));
        assert!(listed["last_used_at"].is_string() && listed["revoked_at"].is_null() && listed.get("secret").is_none());

        operator.delete(&format!("/api/v1/devices/{device}")).await.expect(204);
        let refused = owntracks(&srv, &secret, &ot_location(4.86, 31.59, tst + 10)).await;
        assert!(www_authenticate(&refused).starts_with("Basic "), "401 carries the Basic challenge");
        assert!(refused.problem(401)["detail"].as_str().expect("detail").contains("revoked"));
        tracker(&srv, Method::GET, &format!("{OSMAND}?id={secret}&lat=4.86&lon=31.59&timestamp={}", tst + 20), None, None).await.problem(401);
        assert_eq!(stored(&srv.state.db, "asset", car).await, 1, "nothing after the revocation");
        operator.delete(&format!("/api/v1/devices/{device}")).await.expect(204);
        let revoked = operator.get(&format!("/api/v1/organisations/{org}/devices?revoked=true")).await.expect(200);
        assert!(revoked[0]["revoked_at"].is_string());
        assert_eq!(operator.get(&format!("/api/v1/organisations/{org}/devices?revoked=false")).await.expect(200), json!([]));
    }

    async fn a_location_less_persons_owntracks_is_refused_and_nothing_is_stored(srv: TestServer) {
        let org = srv.org().await;
        let operator = srv.user(org, &[Role::Operator], false).await;
        let staff = srv.user(org, &[Role::Staff], false).await;
        let (_, secret) = issue(&operator, org, json!({"user_id": staff.user_id})).await;
        staff.put("/api/v1/me/location-mode", json!({"mode": "location_less"})).await.expect(200);

        let refused = owntracks(&srv, &secret, &ot_location(4.871_234_5, 31.601_234_5, now_s())).await.problem(409);
        assert!(refused["detail"].as_str().expect("detail").contains("location-less"));
        let transition = json!({"_type": "transition", "acc": 14, "desc": "Juba compound", "event": "leave", "lat": 4.871_234_5,
            "lon": 31.601_234_5, "t": "c", "tid": "am", "tst": now_s(), "wtst": 1});
        owntracks(&srv, &secret, &transition).await.problem(409);
        tracker(&srv, Method::GET, &format!("{OSMAND}?id={secret}&lat=4.8712345&lon=31.6012345&timestamp={}", now_s()), None, None).await.problem(409);

        assert_eq!(stored(&srv.state.db, "user", staff.user_id).await, 0);
        let last: i64 = vigil_server::on_reader!(&srv.state.db, pool => sqlx::query_scalar(
            "SELECT COUNT(*) FROM last_positions WHERE subject_kind = 'user' AND subject_id = $1")
            .bind(staff.user_id).fetch_one(pool).await.expect("count"));
        assert_eq!(last, 0);
        assert!(vigil_server::areas::read_tracker(&srv.state.tracker).last_fix(staff.user_id).is_none());
        let map = operator.get("/api/v1/positions").await.expect(200);
        assert!(map.as_array().expect("list").iter().all(|p| p["id"] != staff.user_id));
    }

    async fn owntracks_is_handed_the_circle_near_its_person_and_its_leave_transition_is_stored(srv: TestServer) {
        let org = srv.org().await;
        let operator = srv.user(org, &[Role::Operator], false).await;
        let adviser = srv.user(org, &[Role::Adviser], false).await;
        let staff = srv.user(org, &[Role::Staff], false).await;
        let compound = circle(&adviser, "Juba compound", 31.5823, 4.8512, 400.0).await;
        let nairobi = circle(&adviser, "Nairobi office", 36.8219, -1.2921, 300.0).await;
        // Polygons cannot be OwnTracks waypoints; the server geofences them itself.
        adviser.post("/api/v1/areas", json!({"type": "Feature", "properties": {"name": "Juba town", "security_level": 4},
            "geometry": {"type": "Polygon", "coordinates": [[[31.50, 4.80], [31.65, 4.80], [31.65, 4.92], [31.50, 4.92], [31.50, 4.80]]]}})).await.expect(201);
        let (_, secret) = issue(&operator, org, json!({"user_id": staff.user_id})).await;

        // Inside the compound.
        let tst = now_s() - 120;
        let answer = owntracks(&srv, &secret, &ot_location(4.8514, 31.5821, tst)).await.expect(200);
        assert_eq!(answer.as_array().map(Vec::len), Some(1), "{answer}");
        let cmd = &answer[0];
        assert_eq!((cmd["_type"].as_str(), cmd["action"].as_str(), cmd["waypoints"]["_type"].as_str()), (Some("cmd"), Some("setWaypoints"), Some("waypoints")));
        let waypoints = cmd["waypoints"]["waypoints"].as_array().expect("waypoints");
        assert_eq!(waypoints.len(), 1, "the compound, not Nairobi (1,000 km away), nor the polygon: {answer}");
        let w = &waypoints[0];
        assert_eq!(w["_type"], "waypoint");
        assert_eq!(w["desc"], "Juba compound");
        assert_eq!((w["lat"].as_f64(), w["lon"].as_f64(), w["rad"].as_i64(), w["tst"].as_i64()), (Some(4.8512), Some(31.5823), Some(400), Some(compound)));
        assert!(!answer.to_string().contains("Nairobi") && nairobi != compound);

        // She walks out; the app's own geofence fires `leave` (OwnTracks says leave, not exit).
        let leave = json!({"_type": "transition", "acc": 12.5, "desc": "Juba compound", "event": "leave",
            "lat": 4.8601, "lon": 31.5902, "rid": "a1b2c3", "t": "c", "tid": "am", "tst": tst + 60, "wtst": compound});
        owntracks(&srv, &secret, &leave).await.expect(200);
        assert_eq!(stored(&srv.state.db, "user", staff.user_id).await, 2);
        let map = operator.get("/api/v1/positions").await.expect(200);
        let me = map.as_array().expect("list").iter().find(|p| p["id"] == staff.user_id).expect("on the map");
        assert_eq!((me["lat"].as_f64(), me["lon"].as_f64(), me["accuracy_m"].as_f64()), (Some(4.8601), Some(31.5902), Some(12.5)));
        assert!(!me["area_ids"].as_array().expect("areas").contains(&json!(compound)), "the server saw her leave too");

        // Other messages the app sends are accepted and ignored, and so is an empty body.
        for other in [
            json!({"_type": "lwt", "tst": tst}),
            json!({"_type": "waypoint", "desc": "Home", "lat": 4.9, "lon": 31.6, "rad": 50, "tst": tst}),
            json!({"_type": "card", "name": "Amina", "tid": "am"}),
            json!({"_type": "beacon", "desc": "Office", "uuid": "CA271EAE-5FA8-4E80-8F08-2A302A95A959", "major": 1, "minor": 1, "tst": tst, "acc": 2, "rssi": -60, "prox": 1}),
        ] {
            assert_eq!(owntracks(&srv, &secret, &other).await.expect(200), json!([]), "{other}");
        }
        let empty = tracker(&srv, Method::POST, OWNTRACKS, Some(("amina", &secret)), Some(("application/json", Vec::new()))).await;
        assert_eq!(empty.expect(200), json!([]));
        assert_eq!(stored(&srv.state.db, "user", staff.user_id).await, 2);
    }

    async fn traccar_client_and_osmand_report_in_each_of_their_shapes(srv: TestServer) {
        let org = srv.org().await;
        let operator = srv.user(org, &[Role::Operator], false).await;
        let truck = vehicle(&operator, org, "Truck 3").await;
        let (_, secret) = issue(&operator, org, json!({"asset_id": truck})).await;
        let t = now_s();

        // Traccar Client (before 9.0) and most hardware: query parameters, time in Unix seconds.
        let query = format!("{OSMAND}?id={secret}&timestamp={}&lat=4.8512&lon=31.5823&speed=12.3&bearing=270.5&altitude=455.0&accuracy=8.0&hdop=0.9&batt=76.0", t - 300);
        let r = tracker(&srv, Method::GET, &query, None, None).await;
        assert_eq!(r.expect(200), Value::String(String::new()), "an empty 200, as the apps expect");
        // The same by POST, time in milliseconds.
        tracker(&srv, Method::POST, &format!("{OSMAND}?id={secret}&lat=4.8520&lon=31.5830&timestamp={}", (t - 240) * 1000), None, None).await.expect(200);
        // OsmAnd's online tracking with an ISO 8601 time.
        let iso = Timestamp((t - 180) * 1000).to_rfc3339();
        tracker(&srv, Method::GET, &format!("{OSMAND}?deviceid={secret}&lat=4.8530&lon=31.5840&timestamp={}&hdop=1.2&altitude=450&speed=3", iso.replace(':', "%3A")), None, None).await.expect(200);
        // Parameters in a form body.
        let form = format!("id={secret}&lat=4.8540&lon=31.5850&timestamp={}&accuracy=5", t - 120);
        tracker(&srv, Method::POST, OSMAND, None, Some(("application/x-www-form-urlencoded", form.into_bytes()))).await.expect(200);
        // Traccar Client 9 and later: JSON.
        let traccar = json!({
            "location": {
                "timestamp": Timestamp((t - 60) * 1000).to_rfc3339(),
                "coords": {"latitude": 4.8550, "longitude": 31.5860, "accuracy": 6.5, "speed": 4.1, "heading": 87.0, "altitude": 452.0},
                "is_moving": true, "odometer": 1532.2, "event": "motionchange",
                "battery": {"level": 0.74, "is_charging": false}, "activity": {"type": "in_vehicle"}, "extras": {}
            },
            "device_id": secret,
        });
        tracker(&srv, Method::POST, OSMAND, None, Some(("application/json", serde_json::to_vec(&traccar).expect("json")))).await.expect(200);
        // HTTP Basic is accepted too, and wins over `id`.
        tracker(&srv, Method::GET, &format!("{OSMAND}?id=truck3&lat=4.8560&lon=31.5870&timestamp={}", t - 30), Some(("truck3", &secret)), None).await.expect(200);
        // The device's own verdict "not a fix" stores nothing; a repeat is a duplicate.
        tracker(&srv, Method::GET, &format!("{OSMAND}?id={secret}&lat=0&lon=0&valid=false&timestamp={t}"), None, None).await.expect(200);
        tracker(&srv, Method::GET, &query, None, None).await.expect(200);

        assert_eq!(stored(&srv.state.db, "asset", truck).await, 6);
        // Last positions are written behind; reading the table directly needs a flush first.
        srv.state.positions.flush().await.expect("flush");
        let (lat, accuracy, source): (f64, Option<f64>, String) = vigil_server::on_reader!(&srv.state.db, pool => sqlx::query_as(
            "SELECT lat, accuracy_m, source FROM last_positions WHERE subject_kind = 'asset' AND subject_id = $1")
            .bind(truck).fetch_one(pool).await.expect("last"));
        assert_eq!((lat, accuracy, source.as_str()), (4.8560, None, "osmand"));
        let json_fix: Option<f64> = vigil_server::on_reader!(&srv.state.db, pool => sqlx::query_scalar(
            "SELECT accuracy_m FROM position_history WHERE subject_kind = 'asset' AND subject_id = $1 AND recorded_at = $2")
            .bind(truck).bind((t - 60) * 1000).fetch_one(pool).await.expect("json fix"));
        assert_eq!(json_fix, Some(6.5));
    }

    async fn bad_fixes_and_credentials_are_refused_clearly(srv: TestServer) {
        let org = srv.org().await;
        let operator = srv.user(org, &[Role::Operator], false).await;
        let car = vehicle(&operator, org, "Hilux").await;
        let (_, secret) = issue(&operator, org, json!({"asset_id": car})).await;
        let t = now_s();
        let get = |q: String| { let srv = &srv; async move { tracker(srv, Method::GET, &format!("{OSMAND}?{q}"), None, None).await } };

        let p = get(format!("id={secret}&lat=91.5&lon=181&timestamp={t}")).await.problem(422);
        assert_eq!(issue_places(&p), ["lat", "lon"]);
        let p = get(format!("id={secret}&lat=4.85&lon=31.58&timestamp={}", t + 3600)).await.problem(422);
        assert_eq!(issue_places(&p), ["timestamp"]);
        assert!(p["detail"].as_str().expect("detail").contains("future"));
        let p = get(format!("id={secret}&lat=4.85&lon=31.58&timestamp=2001-09-11T08:46:00Z")).await.problem(422);
        assert!(p["detail"].as_str().expect("detail").contains("retention"));
        let p = get(format!("id={secret}&lat=north&lon=31.58&timestamp=yesterday")).await.problem(422);
        assert_eq!(issue_places(&p), ["lat", "timestamp"]);
        let p = get(format!("id={secret}&timestamp={t}")).await.problem(422);
        assert_eq!(issue_places(&p), ["lat", "lon"]);
        let json_body = json!({"device_id": secret, "location": {"timestamp": "2021-13-45T00:00:00Z", "coords": {"latitude": -95.0}}});
        let p = tracker(&srv, Method::POST, OSMAND, None, Some(("application/json", serde_json::to_vec(&json_body).expect("json")))).await.problem(422);
        assert_eq!(issue_places(&p), ["location/timestamp", "location/coords/longitude"]);

        // Credentials: unknown, guessed, absent, or of the wrong kind.
        get(format!("id=vgd_{}&lat=4.85&lon=31.58&timestamp={t}", "A".repeat(43))).await.problem(401);
        get(format!("id=12345&lat=4.85&lon=31.58&timestamp={t}")).await.problem(401);
        get(format!("lat=4.85&lon=31.58&timestamp={t}")).await.problem(401);
        let no_basic = tracker(&srv, Method::POST, OWNTRACKS, None, Some(("application/json", serde_json::to_vec(&ot_location(4.85, 31.58, t)).expect("json")))).await;
        assert!(www_authenticate(&no_basic).starts_with("Basic "));
        no_basic.problem(401);
        owntracks(&srv, "not-a-secret", &ot_location(4.85, 31.58, t)).await.problem(401);
        operator.send(Method::POST, OWNTRACKS, Some(ot_location(4.85, 31.58, t))).await.problem(401);

        // OwnTracks payloads: fields named as the app names them.
        let p = owntracks(&srv, &secret, &json!({"_type": "location", "lat": 4.85, "tst": t})).await.problem(422);
        assert_eq!(issue_places(&p), ["lon"]);
        let p = owntracks(&srv, &secret, &ot_location(4.85, 31.58, t - 40 * 365 * 86_400)).await.problem(422);
        assert_eq!(issue_places(&p), ["tst"]);
        let p = owntracks(&srv, &secret, &json!({"_type": "location", "lat": 4.85, "lon": 31.58, "tst": t, "acc": -3})).await.problem(422);
        assert_eq!(issue_places(&p), ["acc"]);
        owntracks(&srv, &secret, &json!({"_type": "encrypted", "data": "c2VjcmV0"})).await.problem(422);
        tracker(&srv, Method::POST, OWNTRACKS, Some(("amina", &secret)), Some(("application/json", b"{not json".to_vec()))).await.problem(400);

        assert_eq!(stored(&srv.state.db, "asset", car).await, 0, "nothing was stored");

        // A deactivated asset's tracker is refused, and the asset leaves the map.
        owntracks(&srv, &secret, &ot_location(4.85, 31.58, t)).await.expect(200);
        operator.patch(&format!("/api/v1/assets/{car}"), json!({"active": false})).await.expect(200);
        owntracks(&srv, &secret, &ot_location(4.86, 31.59, t + 1)).await.problem(403);
        let map = operator.get("/api/v1/positions").await.expect(200);
        assert!(map.as_array().expect("list").iter().all(|p| !(p["subject"] == "asset" && p["id"] == car)));
    }

    async fn operators_issue_and_revoke_only_for_their_own_organisation(srv: TestServer) {
        let a = srv.org().await;
        let b = srv.org().await;
        let operator_a = srv.user(a, &[Role::Operator], false).await;
        let admin_a = srv.user(a, &[Role::OrgAdmin], false).await;
        let adviser_a = srv.user(a, &[Role::Adviser], false).await;
        let staff_a = srv.user(a, &[Role::Staff], false).await;
        let oversight = srv.user(a, &[Role::Oversight], false).await;
        let operator_b = srv.user(b, &[Role::Operator], false).await;
        let staff_b = srv.user(b, &[Role::Staff], false).await;
        let truck_b = vehicle(&operator_b, b, "B's truck").await;
        let devices = |org: i64| format!("/api/v1/organisations/{org}/devices");

        // Not for B's person or asset, whichever organisation the URL names.
        operator_a.post(&devices(a), json!({"user_id": staff_b.user_id})).await.problem(403);
        operator_a.post(&devices(a), json!({"asset_id": truck_b})).await.problem(403);
        operator_a.post(&devices(b), json!({"user_id": staff_b.user_id})).await.problem(403);
        operator_a.get(&devices(b)).await.problem(403);
        // In A, only operators and org admins issue.
        adviser_a.post(&devices(a), json!({"user_id": staff_a.user_id})).await.problem(403);
        staff_a.post(&devices(a), json!({"user_id": staff_a.user_id})).await.problem(403);
        oversight.post(&devices(a), json!({"user_id": staff_a.user_id})).await.problem(403);
        srv.anon().post(&devices(a), json!({"user_id": staff_a.user_id})).await.problem(401);
        let (a_device, _) = issue(&admin_a, a, json!({"user_id": staff_a.user_id, "label": "OwnTracks on Amina's phone"})).await;
        let issued = operator_a.post(&devices(a), json!({"user_id": staff_a.user_id})).await.expect(201);
        assert_eq!(issued["owntracks_url"], format!("{}/api/v1/ingest/owntracks", srv.state.settings.public_url.trim_end_matches('/')));
        assert!(issued["osmand_template"].as_str().expect("template").contains(issued["secret"].as_str().expect("secret")));
        // A body that names no one, or both, or no one who exists.
        operator_a.post(&devices(a), json!({"label": "spare"})).await.problem(422);
        operator_a.post(&devices(a), json!({"user_id": staff_a.user_id, "asset_id": truck_b})).await.problem(422);
        let p = operator_a.post(&devices(a), json!({"asset_id": 999_999})).await.problem(422);
        assert_eq!(issue_places(&p), ["asset_id"]);

        // Oversight reads every organisation's list; B cannot revoke A's credential; A can.
        let listed = oversight.get(&devices(a)).await.expect(200);
        assert_eq!(listed.as_array().map(Vec::len), Some(2));
        assert!(listed.as_array().expect("list").iter().any(|d| d["label"] == "OwnTracks on Amina's phone"));
        adviser_a.get(&devices(a)).await.problem(403);
        operator_b.delete(&format!("/api/v1/devices/{a_device}")).await.problem(403);
        oversight.delete(&format!("/api/v1/devices/{a_device}")).await.problem(403);
        operator_a.delete("/api/v1/devices/999999").await.problem(404);
        operator_a.delete(&format!("/api/v1/devices/{a_device}")).await.expect(204);

        let audit = admin_a.get(&format!("/api/v1/organisations/{a}/audit")).await.expect(200);
        let actions: Vec<&str> = audit.as_array().expect("audit").iter()
            .filter(|e| e["target"] == format!("device:{a_device}")).map(|e| e["action"].as_str().expect("action")).collect();
        assert_eq!(actions, ["device.revoke", "device.issue"]);
    }
}
