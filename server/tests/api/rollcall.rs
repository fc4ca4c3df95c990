//! Roll-calls: asking, answering (for oneself and dependants), the live board, accounting for
//! people by other means, reminders, closing and the frozen report.

use std::time::Duration;

use serde_json::{Value, json};
use vigil_server::policy::Role;

use crate::on_both_databases;
use crate::support::{Client, TestServer};
use crate::ws::{Ws, fix};

async fn board(client: &Client, id: i64) -> Value {
    client
        .get(&format!("/api/v1/rollcalls/{id}"))
        .await
        .expect(200)["board"]
        .clone()
}

fn counts(b: &Value) -> [i64; 4] {
    ["safe", "need_help", "no_answer", "unreachable"].map(|k| b[k].as_i64().unwrap_or(-1))
}

on_both_databases! {
    async fn a_rollcall_is_answered_accounted_for_and_closed(srv: TestServer) {
        let org = srv.org().await;
        let operator = srv.user(org, &[Role::Operator], false).await;
        let online = srv.user(org, &[Role::Staff], false).await;
        let parent = srv.user(org, &[Role::Staff], false).await;
        let silent = srv.user(org, &[Role::Staff], false).await;
        let phoned = srv.user(org, &[Role::Staff], false).await;
        let location_less = srv.user(org, &[Role::Staff], false).await;
        location_less.put("/api/v1/me/location-mode", json!({"mode": "location_less"})).await.expect(200);
        // The parent answers for a child too.
        let admin = srv.user(org, &[Role::OrgAdmin], false).await;
        admin.patch(&format!("/api/v1/users/{}", parent.user_id),
            json!({"dependants": [{"name": "Amani", "relationship": "child"}]})).await.expect(200);
        let dependant = parent.get("/api/v1/me").await.expect(200)["dependants"][0]["id"].as_i64().expect("dependant id");
        let (mut console, _) = Ws::hello(&srv, &operator, 0).await;
        console.send(json!({"type": "subscribe", "topic": "operations"})).await;
        console.next_of("subscribed").await;
        let (mut phone, _) = Ws::hello(&srv, &online, 0).await;

        let rc = operator.post("/api/v1/rollcalls", json!({"title": "Explosion near the market", "target": {"roles": ["staff"]}}))
            .await.expect(201);
        let id = rc["id"].as_i64().expect("id");
        assert_eq!(rc["people_count"], 6, "5 staff and one dependant: {rc}");
        assert_eq!(rc["message"], "Are you safe?");
        // The online phone got it at once; nobody else's device is known to have it.
        let m = phone.next_of("message").await;
        assert_eq!((m["kind"].as_str(), m["payload"]["rollcall_id"].as_i64()), (Some("rollcall"), Some(id)));
        assert_eq!(counts(&board(&operator, id).await), [0, 0, 1, 5]);

        // Answers: safe, need help with a one-off location (location-less too), a dependant,
        // and a double answer where the latest counts.
        online.post(&format!("/api/v1/rollcalls/{id}/answer"), json!({"status": "need_help", "note": "hurt leg"})).await.expect(204);
        online.post(&format!("/api/v1/rollcalls/{id}/answer"), json!({"status": "safe", "note": "ok now"})).await.expect(204);
        parent.post(&format!("/api/v1/rollcalls/{id}/answer"), json!({"status": "safe"})).await.expect(204);
        parent.post(&format!("/api/v1/rollcalls/{id}/answer"), json!({"status": "need_help", "dependant_id": dependant})).await.expect(204);
        location_less.post(&format!("/api/v1/rollcalls/{id}/answer"),
            json!({"status": "need_help", "position": fix(-1.28, 36.8, 0)})).await.expect(204);
        // Someone else's dependant, or a stranger, is not on this roll-call.
        silent.post(&format!("/api/v1/rollcalls/{id}/answer"), json!({"status": "safe", "dependant_id": dependant})).await.problem(404);
        let stranger = srv.user(srv.org().await, &[Role::Staff], false).await;
        stranger.post(&format!("/api/v1/rollcalls/{id}/answer"), json!({"status": "safe"})).await.problem(404);
        // An operator accounts for someone reached by phone.
        operator.post(&format!("/api/v1/rollcalls/{id}/account"),
            json!({"user_id": phoned.user_id, "status": "safe", "how": "phoned her at 14:05"})).await.expect(204);
        operator.post(&format!("/api/v1/rollcalls/{id}/account"),
            json!({"user_id": phoned.user_id, "status": "safe", "how": " "})).await.problem(422);
        online.post(&format!("/api/v1/rollcalls/{id}/account"),
            json!({"user_id": silent.user_id, "status": "safe", "how": "trust me"})).await.problem(403);

        // The live board catches up within a second.
        let live = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                let e = console.next_of("rollcall_board").await;
                if counts(&e["board"]) == [3, 2, 0, 1] {
                    return e;
                }
            }
        }).await.expect("the board is pushed");
        assert_eq!(live["rollcall_id"], id);
        let b = board(&operator, id).await;
        assert_eq!(counts(&b), [3, 2, 0, 1]);
        assert_eq!(b["by_organisation"][org.to_string()]["safe"], 3);
        let help = operator.get(&format!("/api/v1/rollcalls/{id}/people?status=need_help")).await.expect(200);
        let names: Vec<i64> = help.as_array().expect("rows").iter().map(|r| r["user_id"].as_i64().expect("id")).collect();
        assert_eq!(names.len(), 2);
        assert!(names.contains(&parent.user_id) && names.contains(&location_less.user_id));
        let ll = help.as_array().expect("rows").iter().find(|r| r["user_id"] == location_less.user_id).expect("row");
        assert_eq!(ll["lat"], -1.28);
        let unreachable = operator.get(&format!("/api/v1/rollcalls/{id}/people?status=unreachable")).await.expect(200);
        assert_eq!(unreachable[0]["user_id"], silent.user_id);
        let acc = operator.get(&format!("/api/v1/rollcalls/{id}/people?status=safe")).await.expect(200);
        let row = acc.as_array().expect("rows").iter().find(|r| r["user_id"] == phoned.user_id).expect("row");
        assert_eq!((row["accounted_by"].as_i64(), row["accounted_how"].as_str(), row["answered_via"].as_str()),
            (Some(operator.user_id), Some("phoned her at 14:05"), Some("operator")));
        // History keeps both of the double answer.
        let kept: i64 = vigil_server::on_reader!(&srv.state.db, pool => sqlx::query_scalar(
            "SELECT COUNT(*) FROM rollcall_answers WHERE rollcall_id = $1 AND user_id = $2")
            .bind(id).bind(online.user_id).fetch_one(pool).await).expect("count");
        assert_eq!(kept, 2);
        // The silent one opens the app: now they have it, and are "no answer", not unreachable.
        let mine = silent.get("/api/v1/me/rollcalls").await.expect(200);
        assert_eq!(mine[0]["id"], id);
        assert_eq!(counts(&board(&operator, id).await), [3, 2, 1, 0]);

        // Closing freezes the report.
        let closed = operator.post(&format!("/api/v1/rollcalls/{id}/close"), json!({})).await.expect(200);
        assert_eq!(counts(&closed["board"]), [3, 2, 1, 0]);
        silent.post(&format!("/api/v1/rollcalls/{id}/answer"), json!({"status": "safe"})).await.problem(409);
        operator.post(&format!("/api/v1/rollcalls/{id}/close"), json!({})).await.problem(409);
        assert_eq!(counts(&board(&operator, id).await), [3, 2, 1, 0]);
        let csv = operator.send(reqwest::Method::GET, &format!("/api/v1/rollcalls/{id}/export.csv"), None).await;
        assert_eq!(csv.status, 200);
        let text = csv.body.as_str().expect("csv text").to_string();
        assert_eq!(text.lines().count(), 7, "{text}");
        assert!(text.lines().any(|l| l.contains("Amani") && l.contains("need_help")), "{text}");
        assert!(text.lines().any(|l| l.contains("phoned her at 14:05")), "{text}");
    }

    async fn who_may_run_and_follow_rollcalls(srv: TestServer) {
        let a = srv.org().await;
        let b = srv.org().await;
        let staff = srv.user(a, &[Role::Staff], false).await;
        let adviser = srv.user(a, &[Role::Adviser], false).await;
        let admin_b = srv.user(b, &[Role::OrgAdmin], false).await;
        let oversight = srv.user(b, &[Role::Oversight], false).await;
        staff.post("/api/v1/rollcalls", json!({"title": "t", "target": {"everyone": true}})).await.problem(403);
        adviser.post("/api/v1/rollcalls", json!({"title": "t", "target": {"organisations": [b]}})).await.problem(403);
        let p = adviser.post("/api/v1/rollcalls", json!({"title": "", "target": {"everyone": true}, "reminder_every_secs": 5})).await.problem(422);
        let at: Vec<&str> = p["issues"].as_array().expect("issues").iter().filter_map(|i| i["at"].as_str()).collect();
        assert_eq!(at, ["title", "reminder_every_secs"]);
        let rc = adviser.post("/api/v1/rollcalls", json!({"title": "Check-in", "target": {"everyone": true}, "crisis_channel": true})).await.expect(201);
        let id = rc["id"].as_i64().expect("id");
        // The crisis channel has everyone asked.
        let channel = rc["conversation_id"].as_i64().expect("crisis channel");
        staff.post(&format!("/api/v1/conversations/{channel}/messages"), json!({"client_id": "c1", "body": "all fine here"})).await.expect(201);
        admin_b.get(&format!("/api/v1/conversations/{channel}/messages")).await.problem(403);
        admin_b.get(&format!("/api/v1/rollcalls/{id}")).await.problem(403);
        oversight.get(&format!("/api/v1/rollcalls/{id}")).await.expect(200);
        oversight.post(&format!("/api/v1/rollcalls/{id}/close"), json!({})).await.problem(403);
        staff.get(&format!("/api/v1/rollcalls/{id}")).await.problem(403);
        assert_eq!(staff.get("/api/v1/me/rollcalls").await.expect(200)[0]["rows"][0]["status"], "no_answer");
    }
}

#[tokio::test]
async fn people_who_do_not_answer_are_reminded_and_then_texted() {
    let sms = crate::fakes::FakeSmsGateway::start().await;
    let Some(srv) =
        TestServer::start_with(crate::support::Backend::Sqlite, |s| sms.twilio(s)).await
    else {
        return;
    };
    let org = srv.org().await;
    let operator = srv.user(org, &[Role::Operator], false).await;
    let quiet = srv.user(org, &[Role::Staff], false).await;
    quiet
        .patch("/api/v1/me", json!({"phone": "+254700000009"}))
        .await
        .expect(200);
    let answers = srv.user(org, &[Role::Staff], false).await;
    let rc = operator
        .post(
            "/api/v1/rollcalls",
            json!({"title": "Curfew check", "target": {"roles": ["staff"]},
            "reminder_every_secs": 30, "max_reminders": 1, "sms_after_secs": 1}),
        )
        .await
        .expect(201);
    let id = rc["id"].as_i64().expect("id");
    answers
        .post(
            &format!("/api/v1/rollcalls/{id}/answer"),
            json!({"status": "safe"}),
        )
        .await
        .expect(204);
    let text = sms.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(text[0].to, "+254700000009");
    assert!(text[0].text.contains("Curfew check"), "{}", text[0].text);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        sms.received().len(),
        1,
        "one text, and none for the person who answered"
    );
    let rows = operator
        .get(&format!("/api/v1/rollcalls/{id}/people"))
        .await
        .expect(200);
    let row = rows
        .as_array()
        .expect("rows")
        .iter()
        .find(|r| r["user_id"] == quiet.user_id)
        .expect("row");
    assert_eq!(
        (row["sms_sent"].as_i64(), row["reminders_sent"].as_i64()),
        (Some(1), Some(0))
    );
}

fn wall_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

on_both_databases! {
    async fn a_board_counts_every_answer_acknowledged_before_its_counted_at(srv: TestServer) {
        // A console times how stale the board is from `counted_at`: every answer whose 204 came
        // before it must be in the counts, even while answers are committed during the count.
        let org = srv.org().await;
        let operator = srv.user(org, &[Role::Operator], false).await;
        let mut staff = Vec::new();
        for _ in 0..6 {
            staff.push(srv.user(org, &[Role::Staff], false).await);
        }
        let rc = operator.post("/api/v1/rollcalls", json!({"title": "Counted at", "target": {"roles": ["staff"]}}))
            .await.expect(201);
        let id = rc["id"].as_i64().expect("id");
        let path = format!("/api/v1/rollcalls/{id}/answer");
        let answering = futures_util::future::join_all(staff.iter().map(|s| {
            let path = path.clone();
            async move {
                s.post(&path, json!({"status": "safe"})).await.expect(204);
                wall_ms()
            }
        }));
        let reading = async {
            let mut boards = Vec::new();
            for _ in 0..10 {
                boards.push(board(&operator, id).await);
            }
            boards
        };
        let (acked, mut boards) = tokio::join!(answering, reading);
        boards.push(board(&operator, id).await);
        for b in &boards {
            let counted = b["counted_at"].as_str().expect("counted_at");
            let counted = time::OffsetDateTime::parse(counted, &time::format_description::well_known::Rfc3339)
                .expect("RFC 3339");
            let counted = (counted.unix_timestamp_nanos() / 1_000_000) as i64;
            let before = acked.iter().filter(|at| **at < counted).count() as i64;
            assert!(b["safe"].as_i64().unwrap_or(-1) >= before, "{before} answers acknowledged before {b}");
        }
        assert_eq!(counts(boards.last().expect("a board")), [6, 0, 0, 0]);
    }
}
