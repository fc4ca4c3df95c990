//! Positions: tracking and location-less staff, the operator view and its access log.

use serde_json::{Value, json};
use vigil_server::db::{Db, Timestamp, now_ms};
use vigil_server::policy::Role;

use crate::on_both_databases;
use crate::support::{Client, TestServer};

fn ago(ms_ago: i64) -> String {
    Timestamp(now_ms() - ms_ago).to_rfc3339()
}

fn fix(lat: f64, lon: f64, ms_ago: i64) -> Value {
    json!({"lat": lat, "lon": lon, "accuracy_m": 8.0, "recorded_at": ago(ms_ago)})
}

async fn juba_area(adviser: &Client) -> i64 {
    let area = json!({"type": "Feature", "properties": {"name": "Juba town", "security_level": 4},
        "geometry": {"type": "Polygon", "coordinates": [[[31.50, 4.80], [31.65, 4.80], [31.65, 4.92], [31.50, 4.92], [31.50, 4.80]]]}});
    adviser.post("/api/v1/areas", area).await.expect(201)["id"]
        .as_i64()
        .expect("id")
}

/// Every cell of every table, as text: what "no row anywhere" is checked against.
async fn every_stored_value(db: &Db) -> Vec<String> {
    use sqlx::Row;
    match db {
        Db::Sqlite { read, .. } => {
            let tables: Vec<String> =
                sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table'")
                    .fetch_all(read)
                    .await
                    .expect("tables");
            let mut out = Vec::new();
            for t in tables {
                let cols: Vec<String> = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT name FROM pragma_table_info('{t}')"
                )))
                .fetch_all(read)
                .await
                .expect("columns")
                .iter()
                .map(|r| r.get::<String, _>(0))
                .collect();
                let expr = cols.iter().map(|c| format!("COALESCE(CASE typeof(\"{c}\") WHEN 'blob' THEN hex(\"{c}\") ELSE CAST(\"{c}\" AS TEXT) END, '')")).collect::<Vec<_>>().join(" || '|' || ");
                let rows: Vec<String> =
                    sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT {expr} FROM \"{t}\"")))
                        .fetch_all(read)
                        .await
                        .expect("rows");
                out.extend(rows);
            }
            out
        }
        Db::Postgres(pool) => {
            let tables: Vec<String> = sqlx::query_scalar(
                "SELECT tablename::text FROM pg_tables WHERE schemaname = 'public'",
            )
            .fetch_all(pool)
            .await
            .expect("tables");
            let mut out = Vec::new();
            for t in tables {
                let rows: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                    "SELECT r::text FROM \"{t}\" r"
                )))
                .fetch_all(pool)
                .await
                .expect("rows");
                out.extend(rows);
            }
            out
        }
    }
}

on_both_databases! {
    async fn buffered_fixes_arrive_out_of_order_and_the_newest_wins(srv: TestServer) {
        let org = srv.org().await;
        let adviser = srv.user(org, &[Role::Adviser], false).await;
        let operator = srv.user(org, &[Role::Operator], false).await;
        let staff = srv.user(org, &[Role::Staff], false).await;
        let juba = juba_area(&adviser).await;

        // Offline for an hour, the phone uploads what it buffered, newest first and one twice.
        let newest = fix(4.85, 31.58, 60_000);
        let batch = json!({"fixes": [newest.clone(), fix(4.60, 31.20, 3_600_000), newest]});
        let receipt = staff.post("/api/v1/positions", batch).await.expect(200);
        assert_eq!(receipt["accepted"], 2);
        assert_eq!(receipt["duplicates"], 1);
        let t = &receipt["transitions"][0];
        assert_eq!((t["event"].as_str(), t["area_id"].as_i64(), t["security_level"].as_i64()), (Some("entered"), Some(juba), Some(4)));
        assert_eq!(t["name"], "Juba town");

        // A late, older fix outside Juba is history, not the current position.
        let late_fix = fix(4.0, 30.0, 1_800_000);
        let late = staff.post("/api/v1/positions", json!({"fixes": [late_fix.clone()]})).await.expect(200);
        assert_eq!(late["accepted"], 1);
        assert_eq!(late["transitions"], json!([]));
        let again = staff.post("/api/v1/positions", json!({"fixes": [late_fix]})).await.expect(200);
        assert_eq!((again["accepted"].as_i64(), again["duplicates"].as_i64()), (Some(0), Some(1)));

        let seen = operator.get(&format!("/api/v1/positions?area_id={juba}")).await.expect(200);
        let me = seen.as_array().expect("list").iter().find(|p| p["id"] == staff.user_id).expect("staff in Juba");
        assert_eq!((me["lat"].as_f64(), me["lon"].as_f64()), (Some(4.85), Some(31.58)));
        assert_eq!(me["area_ids"], json!([juba]));

        // Leaving Juba.
        let out = staff.post("/api/v1/positions", json!({"fixes": [fix(5.5, 32.5, 1_000)]})).await.expect(200);
        assert_eq!(out["transitions"][0]["event"], "left");
        let in_juba = operator.get(&format!("/api/v1/positions?area_id={juba}")).await.expect(200);
        assert!(in_juba.as_array().expect("list").iter().all(|p| p["id"] != staff.user_id));
    }

    async fn bad_fixes_are_refused_whole_with_each_reason(srv: TestServer) {
        let org = srv.org().await;
        let staff = srv.user(org, &[Role::Staff], false).await;
        let body = staff.post("/api/v1/positions", json!({"fixes": [
            fix(91.0, 0.0, 0), fix(0.0, 181.0, 0), fix(0.0, 0.0, -3_600_000), fix(0.0, 0.0, 20 * 86_400_000), fix(1.0, 1.0, 0)
        ]})).await.problem(422);
        let at: Vec<&str> = body["issues"].as_array().expect("issues").iter().map(|i| i["at"].as_str().expect("at")).collect();
        assert_eq!(at, ["fixes/0/lat", "fixes/1/lon", "fixes/2/recorded_at", "fixes/3/recorded_at"]);
        staff.post("/api/v1/positions", json!({"fixes": []})).await.problem(422);
        let many: Vec<Value> = (0..1001).map(|i| fix(1.0, 1.0, i * 1000)).collect();
        staff.post("/api/v1/positions", json!({"fixes": many})).await.problem(422);
        staff.post("/api/v1/positions", json!({"fixes": [{"lat": "north", "lon": 1.0, "recorded_at": ago(0)}]})).await.problem(422);
        staff.post("/api/v1/positions", json!({"fixes": [{"lat": 1.0, "lon": 1.0, "recorded_at": "yesterday"}]})).await.problem(422);
        let operator = srv.user(org, &[Role::Operator], false).await;
        let seen = operator.get("/api/v1/positions").await.expect(200);
        assert!(seen.as_array().expect("list").iter().all(|p| p["id"] != staff.user_id), "nothing was stored");
    }

    async fn a_location_less_day_leaves_no_position_anywhere(srv: TestServer) {
        let org = srv.org().await;
        let adviser = srv.user(org, &[Role::Adviser], false).await;
        let operator = srv.user(org, &[Role::Operator], false).await;
        let staff = srv.user(org, &[Role::Staff], false).await;
        let juba = juba_area(&adviser).await;
        // Distinctive coordinates, so that finding them anywhere would be no coincidence.
        let (lat, lon) = (4.871_234_5, 31.601_234_5);

        // Morning: still tracking, the phone reports; then she opts out.
        staff.post("/api/v1/positions", json!({"fixes": [fix(lat, lon, 7_200_000), fix(lat, lon, 3_600_000)]})).await.expect(200);
        operator.get("/api/v1/positions").await.expect(200);
        // The scan below would see them: while tracking, her position is stored.
        assert!(every_stored_value(&srv.state.db).await.iter().any(|v| v.contains("4.8712345")));
        assert_eq!(staff.put("/api/v1/me/location-mode", json!({"mode": "location_less"})).await.expect(200)["mode"], "location_less");
        assert_eq!(staff.get("/api/v1/me").await.expect(200)["location_mode"], "location_less");

        // The day: she follows Juba by hand, her phone keeps trying to send positions, she
        // reads areas and her profile, operators look at the map.
        staff.put("/api/v1/me/followed-areas", json!({"area_ids": [juba, juba]})).await.expect(200);
        assert_eq!(staff.get("/api/v1/me/followed-areas").await.expect(200)["area_ids"], json!([juba]));
        staff.put("/api/v1/me/followed-areas", json!({"area_ids": [juba, 999_999]})).await.problem(422);
        for hour in 0..8 {
            let refused = staff.post("/api/v1/positions", json!({"fixes": [fix(lat, lon, hour * 60_000)]})).await.problem(409);
            assert!(refused["detail"].as_str().expect("detail").contains("location-less"));
        }
        staff.get("/api/v1/areas").await.expect(200);
        staff.patch("/api/v1/me", json!({"phone": "+211 912 345 678"})).await.expect(200);
        let map = operator.get("/api/v1/positions").await.expect(200);
        assert!(map.as_array().expect("list").iter().all(|p| p["id"] != staff.user_id));

        // Proof: no row of any table, and nothing in memory, holds her position.
        let needles = [format!("{lat}"), format!("{lon}"), "4.8712345".to_string(), "31.6012345".to_string()];
        for value in every_stored_value(&srv.state.db).await {
            for n in &needles {
                assert!(!value.contains(n.as_str()), "found {n} in a stored row: {value}");
            }
        }
        {
            let tracker = vigil_server::areas::read_tracker(&srv.state.tracker);
        assert!(tracker.last_fix(staff.user_id).is_none());
        assert!(!tracker.members_of(juba).contains(&staff.user_id));
        }

        // Back to tracking: positions are accepted again.
        staff.put("/api/v1/me/location-mode", json!({"mode": "tracking"})).await.expect(200);
        staff.post("/api/v1/positions", json!({"fixes": [fix(4.85, 31.58, 0)]})).await.expect(200);
    }

    async fn a_fix_racing_the_switch_to_location_less_never_survives_it(srv: TestServer) {
        let org = srv.org().await;
        let staff = srv.user(org, &[Role::Staff], false).await;
        let mut sends = Vec::new();
        for i in 0..20 {
            let c = staff.clone();
            sends.push(tokio::spawn(async move {
                c.post("/api/v1/positions", json!({"fixes": [fix(3.0, 30.0 + f64::from(i) / 100.0, i64::from(i) * 1000)]})).await.status
            }));
        }
        staff.put("/api/v1/me/location-mode", json!({"mode": "location_less"})).await.expect(200);
        for s in sends {
            let status = s.await.expect("task");
            assert!(status == 200 || status == 409, "each fix is stored before the switch or refused after it");
        }
        let left: i64 = vigil_server::on_reader!(&srv.state.db, pool => sqlx::query_scalar(
            "SELECT COUNT(*) FROM position_history WHERE subject_kind = 'user' AND subject_id = $1")
            .bind(staff.user_id).fetch_one(pool).await.expect("count"));
        assert_eq!(left, 0);
        assert!(vigil_server::areas::read_tracker(&srv.state.tracker).last_fix(staff.user_id).is_none());
    }

    async fn operators_see_their_organisation_and_every_read_is_logged(srv: TestServer) {
        let a = srv.org().await;
        let b = srv.org().await;
        let staff_a = srv.user(a, &[Role::Staff], false).await;
        let staff_b = srv.user(b, &[Role::Staff], false).await;
        let operator_a = srv.user(a, &[Role::Operator], false).await;
        let oversight = srv.user(a, &[Role::Oversight], false).await;
        staff_a.post("/api/v1/positions", json!({"fixes": [fix(2.04, 45.31, 600_000)]})).await.expect(200);
        staff_b.post("/api/v1/positions", json!({"fixes": [fix(2.05, 45.32, 7_200_000)]})).await.expect(200);

        let ids = |v: Value| -> Vec<i64> { v.as_array().expect("list").iter().map(|p| p["id"].as_i64().expect("id")).collect() };
        let mine = ids(operator_a.get("/api/v1/positions").await.expect(200));
        assert!(mine.contains(&staff_a.user_id) && !mine.contains(&staff_b.user_id));
        operator_a.get(&format!("/api/v1/positions?org_id={b}")).await.problem(403);
        staff_a.get("/api/v1/positions").await.problem(403);
        let all = ids(oversight.get("/api/v1/positions").await.expect(200));
        assert!(all.contains(&staff_a.user_id) && all.contains(&staff_b.user_id));
        let fresh = ids(oversight.get("/api/v1/positions?max_age_secs=3600").await.expect(200));
        assert!(fresh.contains(&staff_a.user_id) && !fresh.contains(&staff_b.user_id));
        oversight.get("/api/v1/positions?area_id=424242").await.problem(404);

        let log = staff_a.get("/api/v1/me/location-access").await.expect(200);
        let viewers: Vec<i64> = log.as_array().expect("log").iter().map(|e| e["viewer_id"].as_i64().expect("viewer")).collect();
        assert!(viewers.contains(&operator_a.user_id) && viewers.contains(&oversight.user_id), "{log}");
        assert_eq!(log[0]["purpose"], "operator_view");
        let log_b = staff_b.get("/api/v1/me/location-access").await.expect(200);
        assert!(log_b.as_array().expect("log").iter().all(|e| e["viewer_id"] != operator_a.user_id));
    }

    async fn history_past_the_retention_period_is_purged(srv: TestServer) {
        let org = srv.org().await;
        let staff = srv.user(org, &[Role::Staff], false).await;
        staff.post("/api/v1/positions", json!({"fixes": [fix(1.0, 1.0, 86_400_000), fix(1.0, 1.0, 60_000)]})).await.expect(200);
        let deleted = srv.state.positions.expire(now_ms() - 3_600_000).await.expect("expire");
        assert_eq!(deleted, 1, "only the day-old fix is past a one-hour cutoff");
        let deleted = srv.state.positions.expire(now_ms()).await.expect("expire");
        assert_eq!(deleted, 1);
        assert!(vigil_server::areas::read_tracker(&srv.state.tracker).last_fix(staff.user_id).is_none(),
            "an expired last position is forgotten in memory too");
    }
}

/// Validity windows do not depend on the database, so SQLite alone covers them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn people_inside_are_told_when_an_area_expires_without_moving() {
    let srv = TestServer::start_with(crate::support::Backend::Sqlite, |s| {
        s.area_validity_check_secs = 1
    })
    .await
    .expect("server");
    let org = srv.org().await;
    let adviser = srv.user(org, &[Role::Adviser], false).await;
    let staff = srv.user(org, &[Role::Staff], false).await;
    let until = Timestamp(now_ms() + 1500).to_rfc3339();
    let area = json!({"type": "Feature", "properties": {"name": "Curfew zone", "valid_until": until},
        "geometry": {"type": "Polygon", "coordinates": [[[31.50, 4.80], [31.65, 4.80], [31.65, 4.92], [31.50, 4.92], [31.50, 4.80]]]}});
    let id = adviser.post("/api/v1/areas", area).await.expect(201)["id"]
        .as_i64()
        .expect("id");
    let r = staff
        .post("/api/v1/positions", json!({"fixes": [fix(4.85, 31.58, 0)]}))
        .await
        .expect(200);
    assert_eq!(r["transitions"][0]["area_id"], id);
    tokio::time::sleep(std::time::Duration::from_millis(3500)).await;
    let left: Vec<String> = vigil_server::on_reader!(&srv.state.db, pool => sqlx::query_scalar(
        "SELECT kind FROM user_messages WHERE user_id = $1 ORDER BY seq")
        .bind(staff.user_id).fetch_all(pool).await.expect("messages"));
    assert_eq!(left, ["area_entered", "area_left"]);
    assert!(
        vigil_server::areas::read_tracker(&srv.state.tracker)
            .members_of(id)
            .is_empty()
    );
}

/// The stored last position of a person, read from the table itself.
async fn last_position_row(db: &Db, user_id: i64) -> Option<(f64, f64, i64)> {
    vigil_server::on_reader!(db, pool => sqlx::query_as(
        "SELECT lat, lon, recorded_at FROM last_positions WHERE subject_kind = 'user' AND subject_id = $1")
        .bind(user_id).fetch_optional(pool).await.expect("last position"))
}

/// A server crashes after acknowledging fixes but before writing its last positions behind:
/// the next server on the same database knows the newest acknowledged position anyway.
async fn a_crash_before_the_flush_loses_no_acknowledged_position(backend: crate::support::Backend) {
    let never = |s: &mut vigil_server::Settings| s.position_flush_ms = 3_600_000;
    let Some(first) = TestServer::start_with(backend, never).await else {
        return;
    };
    let org = first.org().await;
    let adviser = first.user(org, &[Role::Adviser], false).await;
    let staff = first.user(org, &[Role::Staff], false).await;
    let juba = juba_area(&adviser).await;
    let before_crash = staff
        .post(
            "/api/v1/positions",
            json!({"fixes": [fix(4.85, 31.58, 60_000)]}),
        )
        .await
        .expect(200);
    assert_eq!(before_crash["accepted"], 1);
    // The buffered fixes of an hour offline, newest first; then one more over the socket path.
    staff
        .post(
            "/api/v1/positions",
            json!({"fixes": [fix(4.86, 31.59, 30_000), fix(4.0, 30.0, 3_600_000)]}),
        )
        .await
        .expect(200);
    assert_eq!(
        last_position_row(&first.state.db, staff.user_id).await,
        None,
        "written behind: nothing in the table yet, only in memory and in the history"
    );

    // "Crash": the first server never flushes; a second one starts on the same database.
    let url = first.state.settings.database_url.clone();
    let second = TestServer::start_with(backend, |s| s.database_url = url)
        .await
        .expect("second server");
    let newest = {
        let t = vigil_server::areas::read_tracker(&second.state.tracker);
        assert_eq!(
            t.members_of(juba),
            [staff.user_id],
            "the restarted server places her in Juba"
        );
        t.last_fix(staff.user_id)
            .expect("her last fix is known after the restart")
    };
    assert_eq!((newest.lat, newest.lon), (4.86, 31.59));
    let (lat, lon, _) = last_position_row(&second.state.db, staff.user_id)
        .await
        .expect("restored into last_positions");
    assert_eq!((lat, lon), (4.86, 31.59));
    drop(second);
    drop(first);
}

/// A clean stop writes the pending last positions before it closes the database. (SQLite:
/// the file outlives the server here, where the harness's PostgreSQL database does not.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_stop_writes_pending_last_positions() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}/kept.db", dir.path().display());
    let srv = TestServer::start_with(crate::support::Backend::Sqlite, |s| {
        s.database_url = url.clone();
        s.position_flush_ms = 3_600_000;
    })
    .await
    .expect("server");
    let org = srv.org().await;
    let staff = srv.user(org, &[Role::Staff], false).await;
    staff
        .post(
            "/api/v1/positions",
            json!({"fixes": [fix(2.04, 45.31, 5_000)]}),
        )
        .await
        .expect(200);
    assert_eq!(last_position_row(&srv.state.db, staff.user_id).await, None);
    srv.stop().await;
    // The table itself, without starting a server (which would replay the history).
    let db = Db::connect(&url, 1).await.expect("database");
    let row = last_position_row(&db, staff.user_id)
        .await
        .expect("flushed at shutdown");
    assert_eq!((row.0, row.1), (2.04, 45.31));
    db.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_before_the_flush_loses_no_acknowledged_position_sqlite() {
    a_crash_before_the_flush_loses_no_acknowledged_position(crate::support::Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_before_the_flush_loses_no_acknowledged_position_postgres() {
    a_crash_before_the_flush_loses_no_acknowledged_position(crate::support::Backend::Postgres)
        .await;
}

on_both_databases! {
    async fn switching_back_and_forth_while_the_phone_sends_keeps_only_acknowledged_fixes(srv: TestServer) {
        let org = srv.org().await;
        let staff = srv.user(org, &[Role::Staff], false).await;
        let times: Vec<i64> = (0..30).map(|i| 10_000 + i * 1000).collect();
        let mut sends = Vec::new();
        for (i, ago_ms) in times.iter().copied().enumerate() {
            let c = staff.clone();
            let at = Timestamp(now_ms() - ago_ms);
            sends.push(tokio::spawn(async move {
                let body = json!({"fixes": [{"lat": 3.0, "lon": 30.0 + i as f64 / 100.0, "recorded_at": at.to_rfc3339()}]});
                (at.0, c.post("/api/v1/positions", body).await.status)
            }));
        }
        // She opts out and straight back in while the phone is still sending.
        staff.put("/api/v1/me/location-mode", json!({"mode": "location_less"})).await.expect(200);
        staff.put("/api/v1/me/location-mode", json!({"mode": "tracking"})).await.expect(200);
        let mut acked = Vec::new();
        for s in sends {
            let (at, status) = s.await.expect("task");
            assert!(status == 200 || status == 409, "stored before a switch or refused while location-less: {status}");
            if status == 200 {
                acked.push(at);
            }
        }
        let stored: Vec<i64> = vigil_server::on_reader!(&srv.state.db, pool => sqlx::query_scalar(
            "SELECT recorded_at FROM position_history WHERE subject_kind = 'user' AND subject_id = $1")
            .bind(staff.user_id).fetch_all(pool).await.expect("history"));
        assert!(stored.iter().all(|at| acked.contains(at)), "a refused fix was stored: {stored:?} vs {acked:?}");

        // Tracking again: a fix is accepted and kept; opting out removes every trace again.
        let r = staff.post("/api/v1/positions", json!({"fixes": [fix(3.5, 30.5, 0)]})).await.expect(200);
        assert_eq!(r["accepted"], 1);
        staff.put("/api/v1/me/location-mode", json!({"mode": "location_less"})).await.expect(200);
        staff.post("/api/v1/positions", json!({"fixes": [fix(3.6, 30.6, 0)]})).await.problem(409);
        srv.state.positions.flush().await.expect("flush");
        let left: i64 = vigil_server::on_reader!(&srv.state.db, pool => sqlx::query_scalar(
            "SELECT (SELECT COUNT(*) FROM position_history WHERE subject_kind = 'user' AND subject_id = $1) \
                  + (SELECT COUNT(*) FROM last_positions WHERE subject_kind = 'user' AND subject_id = $1)")
            .bind(staff.user_id).fetch_one(pool).await.expect("count"));
        assert_eq!(left, 0, "no row survives the switch, not even one written behind");
        assert!(vigil_server::areas::read_tracker(&srv.state.tracker).last_fix(staff.user_id).is_none());
    }

    async fn one_group_of_many_phones_stores_each_fix_once_and_counts_duplicates(srv: TestServer) {
        let org = srv.org().await;
        let adviser = srv.user(org, &[Role::Adviser], false).await;
        let juba = juba_area(&adviser).await;
        let mut phones = Vec::new();
        for _ in 0..6 {
            phones.push(srv.user(org, &[Role::Staff], false).await);
        }
        // Every phone sends the same two fixes three times at once: within one group, across
        // groups, or both; each is stored once and the rest are counted as duplicates.
        let mut sends = Vec::new();
        for phone in &phones {
            let batch = json!({"fixes": [fix(4.0, 30.0, 120_000), fix(4.85, 31.58, 60_000)]});
            for _ in 0..3 {
                let (c, b) = (phone.clone(), batch.clone());
                sends.push(tokio::spawn(async move { (c.user_id, c.post("/api/v1/positions", b).await.expect(200)) }));
            }
        }
        let mut accepted: std::collections::HashMap<i64, (i64, i64)> = std::collections::HashMap::new();
        for s in sends {
            let (user, r) = s.await.expect("task");
            let e = accepted.entry(user).or_default();
            e.0 += r["accepted"].as_i64().expect("accepted");
            e.1 += r["duplicates"].as_i64().expect("duplicates");
        }
        for phone in &phones {
            assert_eq!(accepted[&phone.user_id], (2, 4), "two fixes stored once each, four duplicates");
            let n: i64 = vigil_server::on_reader!(&srv.state.db, pool => sqlx::query_scalar(
                "SELECT COUNT(*) FROM position_history WHERE subject_kind = 'user' AND subject_id = $1")
                .bind(phone.user_id).fetch_one(pool).await.expect("count"));
            assert_eq!(n, 2);
            // One crossing into Juba each, so one message each, numbered from 1.
            let kinds: Vec<(i64, String)> = vigil_server::on_reader!(&srv.state.db, pool => sqlx::query_as(
                "SELECT seq, kind FROM user_messages WHERE user_id = $1 ORDER BY seq")
                .bind(phone.user_id).fetch_all(pool).await.expect("messages"));
            assert_eq!(kinds, [(1, "area_entered".to_string())]);
        }
        let members = vigil_server::areas::read_tracker(&srv.state.tracker).members_of(juba);
        assert_eq!(members.len(), phones.len());
    }
}

/// The operator's map answers from memory: a fix shows as soon as it is acknowledged, though
/// `last_positions` is written behind and no flush has run (a GET used to force one, waiting
/// behind the writer's queue); a position only the table holds (seeded) shows too.
async fn the_operator_map_shows_acknowledged_fixes_without_a_flush(
    backend: crate::support::Backend,
) {
    let never = |s: &mut vigil_server::Settings| s.position_flush_ms = 3_600_000;
    let Some(srv) = TestServer::start_with(backend, never).await else {
        return;
    };
    let org = srv.org().await;
    let adviser = srv.user(org, &[Role::Adviser], false).await;
    let operator = srv.user(org, &[Role::Operator], false).await;
    let walker = srv.user(org, &[Role::Staff], false).await;
    let seeded = srv.user(org, &[Role::Staff], false).await;
    let juba = juba_area(&adviser).await;
    let at = now_ms() - 120_000;
    vigil_server::on_writer!(&srv.state.db, pool => sqlx::query(
        "INSERT INTO last_positions (subject_kind, subject_id, lat, lon, accuracy_m, recorded_at, received_at, source) \
         VALUES ('user', $1, 2.5, 45.5, 12.0, $2, $2, 'demo')")
        .bind(seeded.user_id).bind(at).execute(pool).await.map(drop).expect("seeded position"));

    walker
        .post(
            "/api/v1/positions",
            json!({"fixes": [fix(4.0, 30.0, 60_000)]}),
        )
        .await
        .expect(200);
    let find = |list: &Value, id: i64| {
        list.as_array()
            .expect("list")
            .iter()
            .find(|p| p["id"] == id)
            .cloned()
    };
    let map = operator.get("/api/v1/positions").await.expect(200);
    let me = find(&map, walker.user_id).expect("the walker is on the map at once");
    assert_eq!(
        (
            me["lat"].as_f64(),
            me["lon"].as_f64(),
            me["area_ids"].clone()
        ),
        (Some(4.0), Some(30.0), json!([]))
    );
    let other = find(&map, seeded.user_id).expect("the seeded position is on the map");
    assert_eq!(
        (
            other["lat"].as_f64(),
            other["lon"].as_f64(),
            other["accuracy_m"].as_f64()
        ),
        (Some(2.5), Some(45.5), Some(12.0))
    );

    // She walks into Juba: the map and its area filter follow, the table still has nothing.
    walker
        .post(
            "/api/v1/positions",
            json!({"fixes": [fix(4.85, 31.58, 10_000)]}),
        )
        .await
        .expect(200);
    let in_juba = operator
        .get(&format!("/api/v1/positions?area_id={juba}"))
        .await
        .expect(200);
    let me = find(&in_juba, walker.user_id).expect("the walker is in Juba");
    assert_eq!(
        (
            me["lat"].as_f64(),
            me["lon"].as_f64(),
            me["area_ids"].clone()
        ),
        (Some(4.85), Some(31.58), json!([juba]))
    );
    assert!(find(&in_juba, seeded.user_id).is_none());
    let fresh = operator
        .get("/api/v1/positions?max_age_secs=60")
        .await
        .expect(200);
    assert!(find(&fresh, walker.user_id).is_some() && find(&fresh, seeded.user_id).is_none());
    assert_eq!(
        last_position_row(&srv.state.db, walker.user_id).await,
        None,
        "no flush ran for the readers"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_map_shows_acknowledged_fixes_without_a_flush_sqlite() {
    the_operator_map_shows_acknowledged_fixes_without_a_flush(crate::support::Backend::Sqlite)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_map_shows_acknowledged_fixes_without_a_flush_postgres() {
    the_operator_map_shows_acknowledged_fixes_without_a_flush(crate::support::Backend::Postgres)
        .await;
}

on_both_databases! {
    // A phone uploads a huge buffer (one group of 100,000 fixes): while the writer moves it
    // through the tracker, the operator's map keeps answering, and shows her partway along
    // her walk. (The writer used to hold the tracker's write lock for the whole group, so a
    // reader saw her either before the walk or at its end.)
    async fn the_map_answers_while_the_writer_moves_a_huge_group(srv: TestServer) {
        use vigil_server::positions::{StoredFix, Subject};
        const FIXES: i64 = 100_000;
        let org = srv.org().await;
        let operator = srv.user(org, &[Role::Operator], false).await;
        let walker = srv.user(org, &[Role::Staff], false).await;
        let start = now_ms() - 3_600_000;
        // A day's walk east, a fix a few metres apart.
        let fixes: Vec<StoredFix> = (0..FIXES)
            .map(|i| StoredFix { lat: 3.0, lon: 30.0 + i as f64 * 1e-5, accuracy_m: Some(5.0), recorded_at: start + i * 10 })
            .collect();
        let last = start + (FIXES - 1) * 10;
        let writer = srv.state.positions.clone();
        let upload = tokio::spawn(async move { writer.record(Subject::User(walker.user_id), org, "app", fixes).await });

        let mut partway = Vec::new();
        loop {
            let done = upload.is_finished();
            let map = operator.get("/api/v1/positions").await.expect(200);
            let seen = map.as_array().expect("list").iter().find(|p| p["id"] == walker.user_id).map(|p| p["lon"].as_f64().expect("lon"));
            if let Some(lon) = seen.filter(|lon| *lon < 30.0 + (FIXES - 1) as f64 * 1e-5) {
                partway.push(lon);
            }
            if done {
                break;
            }
        }
        let recorded = upload.await.expect("task").expect("stored");
        assert_eq!(recorded.inserted, FIXES as usize);
        assert!(!partway.is_empty(), "no reader got in while the group moved through the tracker");
        let newest = vigil_server::areas::read_tracker(&srv.state.tracker).last_fix(walker.user_id).expect("tracked");
        assert_eq!(newest.at_ms, last);
    }
}
