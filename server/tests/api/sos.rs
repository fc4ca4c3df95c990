//! SOS: a case reaches the operations room at once, with the position in tracking mode and
//! only a shared-once position in location-less mode; claim, notes, close, timeline.

use serde_json::{Value, json};
use vigil_server::db::{Timestamp, now_ms};
use vigil_server::policy::{Action, Actor, Role, authorize};

use crate::on_both_databases;
use crate::support::{Client, TestServer};
use crate::ws::{Ws, fix};

/// Everything stored for `client`, replayed over a fresh socket from the start.
pub async fn stored_messages(srv: &TestServer, client: &Client) -> Vec<Value> {
    let (mut ws, welcome) = Ws::hello(srv, client, 0).await;
    let last = welcome["last_seq"].as_i64().expect("last_seq");
    let mut got: Vec<Value> = Vec::new();
    while got.last().map_or(0, |m| m["seq"].as_i64().unwrap_or(0)) < last {
        let m = ws.next_of("message").await;
        assert_eq!(
            m["type"], "message",
            "the replay stopped short of {last}: {m}"
        );
        got.push(m);
    }
    got
}

/// One person for every role of `org`, holding that role alone, with how the policy sees them.
pub async fn one_of_each_role(srv: &TestServer, org: i64) -> Vec<(Client, Actor)> {
    let mut people = Vec::new();
    for role in Role::ALL {
        let client = srv.user(org, &[role], false).await;
        let actor = Actor {
            user_id: client.user_id,
            org_id: org,
            roles: vec![role],
            system_admin: false,
        };
        people.push((client, actor));
    }
    people
}

on_both_databases! {
    // The people an SOS is stored for are found by a query on roles; the policy says who may
    // see a case. Every role, of the person's organisation and of another, combined or alone,
    // hears of the case exactly when the policy lets them see it. System admins may read any
    // case but are found by no role: they are nobody's duty.
    async fn an_sos_reaches_exactly_those_the_policy_lets_see_it(srv: TestServer) {
        let org = srv.org().await;
        let other = srv.org().await;
        let mut people = one_of_each_role(&srv, org).await;
        people.extend(one_of_each_role(&srv, other).await);
        let both = srv.user(org, &[Role::Adviser, Role::Operator], false).await;
        let both_actor = Actor { user_id: both.user_id, org_id: org, roles: vec![Role::Adviser, Role::Operator], system_admin: false };
        people.push((both, both_actor));
        let admin = srv.user(org, &[Role::Staff], true).await;
        let admin_actor = Actor { user_id: admin.user_id, org_id: org, roles: vec![Role::Staff], system_admin: true };
        people.push((admin, admin_actor));
        let person = srv.user(org, &[Role::Staff], false).await;
        let case = person.post("/api/v1/sos", json!({"note": "stopped at a checkpoint"})).await.expect(201);
        let id = case["id"].as_i64().expect("id");
        let opened = |m: &&Value| m["kind"] == "sos" && m["payload"]["case"]["id"] == id;
        let mut wrong = Vec::new();
        for (client, actor) in &people {
            let on_duty = !actor.system_admin && authorize(actor, Action::ViewSos { org_id: Some(org) }).is_ok();
            let stored = stored_messages(&srv, client).await;
            let heard = stored.iter().filter(opened).count();
            if heard != usize::from(on_duty) {
                wrong.push(format!("{:?} of {} (system admin: {}): heard {heard} times, the policy says {on_duty}",
                    actor.roles, if actor.org_id == org { "the organisation" } else { "another" }, actor.system_admin));
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
        assert_eq!(stored_messages(&srv, &person).await.iter().filter(opened).count(), 1, "the person hears of their own case");
    }

    async fn an_sos_reaches_every_operator_and_oversight_at_once_with_the_position(srv: TestServer) {
        let org = srv.org().await;
        let other = srv.org().await;
        let staff = srv.user(org, &[Role::Staff], false).await;
        let op1 = srv.user(org, &[Role::Operator], false).await;
        let op2 = srv.user(org, &[Role::Operator], false).await;
        let oversight = srv.user(other, &[Role::Oversight], false).await;
        let foreign_op = srv.user(other, &[Role::Operator], false).await;
        let adviser = srv.user(org, &[Role::Adviser], false).await;
        staff.post("/api/v1/positions", json!({"fixes": [fix(-1.29, 36.82, 30_000)]})).await.expect(200);
        let (mut console1, _) = Ws::hello(&srv, &op1, 0).await;
        let (mut watcher, _) = Ws::hello(&srv, &oversight, 0).await;
        let case = staff.post("/api/v1/sos", json!({"note": "car stopped at a roadblock"})).await.expect(201);
        let id = case["id"].as_i64().expect("id");
        assert_eq!((case["status"].as_str(), case["position"]["source"].as_str()), (Some("open"), Some("tracking")));
        assert_eq!(case["position"]["lat"], -1.29);
        let chat = case["conversation_id"].as_i64().expect("the case's chat");
        for ws in [&mut console1, &mut watcher] {
            let m = ws.next_of("message").await;
            assert_eq!((m["kind"].as_str(), m["payload"]["case"]["id"].as_i64()), (Some("sos"), Some(id)), "{m}");
            assert_eq!(m["payload"]["case"]["user_id"], staff.user_id);
            // The console can open the case's chat from the alarm itself.
            assert_eq!(m["payload"]["case"]["conversation_id"], chat, "{m}");
        }
        // An operator who was offline gets it when the console reconnects.
        let (mut console2, _) = Ws::hello(&srv, &op2, 0).await;
        assert_eq!(console2.next_of("message").await["payload"]["case"]["id"], id);
        // The case has a chat between the person and the operators.
        staff.post(&format!("/api/v1/conversations/{chat}/messages"), json!({"client_id": "m1", "body": "please call"})).await.expect(201);
        let said = op2.get(&format!("/api/v1/conversations/{chat}/messages")).await.expect(200);
        assert_eq!(said.to_string().matches("please call").count(), 1, "{said}");
        foreign_op.get(&format!("/api/v1/conversations/{chat}/messages")).await.problem(403);
        // Pressing again adds to the open case.
        let again = staff.post("/api/v1/sos", json!({"position": fix(-1.30, 36.83, 0)})).await.expect(200);
        assert_eq!(again["id"], id);
        assert_eq!(again["position"]["lat"], -1.30);
        // Who sees it.
        foreign_op.get(&format!("/api/v1/sos/{id}")).await.problem(403);
        adviser.get(&format!("/api/v1/sos/{id}")).await.problem(403);
        oversight.get(&format!("/api/v1/sos/{id}")).await.expect(200);
        assert_eq!(op2.get("/api/v1/sos").await.expect(200)[0]["id"], id);
        assert_eq!(staff.get("/api/v1/sos").await.expect(200)[0]["id"], id);
        assert_eq!(foreign_op.get("/api/v1/sos").await.expect(200), json!([]));
        // Claim, take-over rules, notes, close.
        op1.post(&format!("/api/v1/sos/{id}/claim"), json!({})).await.expect(200);
        op2.post(&format!("/api/v1/sos/{id}/claim"), json!({})).await.problem(409);
        oversight.post(&format!("/api/v1/sos/{id}/claim"), json!({})).await.problem(403);
        let taken = op2.post(&format!("/api/v1/sos/{id}/claim"), json!({"take_over": true})).await.expect(200);
        assert_eq!(taken["claimed_by"], op2.user_id);
        op2.post(&format!("/api/v1/sos/{id}/notes"), json!({"text": "called her: safe in a shop"})).await.expect(200);
        op2.post(&format!("/api/v1/sos/{id}/notes"), json!({"text": "   "})).await.problem(422);
        let (mut phone, _) = Ws::hello(&srv, &staff, 0).await;
        let closed = op2.post(&format!("/api/v1/sos/{id}/close"), json!({"outcome": "safe; driver released"})).await.expect(200);
        assert_eq!((closed["status"].as_str(), closed["outcome"].as_str()), (Some("closed"), Some("safe; driver released")));
        op1.post(&format!("/api/v1/sos/{id}/close"), json!({"outcome": "again"})).await.problem(409);
        op1.post(&format!("/api/v1/sos/{id}/notes"), json!({"text": "late"})).await.problem(409);
        staff.post(&format!("/api/v1/conversations/{chat}/messages"), json!({"client_id": "m2", "body": "thanks"})).await.problem(409);
        // The person hears every step of their case.
        let mut events = Vec::new();
        while events.last().map(String::as_str) != Some("closed") {
            let m = phone.next_of("message").await;
            if m["kind"] == "sos_update" {
                events.push(m["payload"]["event"].as_str().expect("event").to_string());
            }
        }
        assert_eq!(events, ["pressed_again", "claimed", "taken_over", "note", "closed"]);
        let full = op1.get(&format!("/api/v1/sos/{id}")).await.expect(200);
        let kinds: Vec<&str> = full["timeline"].as_array().expect("timeline").iter().filter_map(|e| e["kind"].as_str()).collect();
        assert_eq!(kinds, ["opened", "pressed_again", "claimed", "taken_over", "note", "closed"]);
        // Reading the case is a read of her location, and she can see who read it.
        let log = staff.get("/api/v1/me/location-access").await.expect(200);
        assert!(log.as_array().expect("log").iter().any(|e| e["viewer_id"] == op1.user_id && e["purpose"] == "sos"), "{log}");
        // A new press after closing opens a new case.
        let next = staff.post("/api/v1/sos", json!({})).await.expect(201);
        assert_ne!(next["id"], id);
    }

    async fn location_less_staff_share_a_position_only_when_they_say_so(srv: TestServer) {
        let org = srv.org().await;
        let staff = srv.user(org, &[Role::Staff], false).await;
        let operator = srv.user(org, &[Role::Operator], false).await;
        staff.put("/api/v1/me/location-mode", json!({"mode": "location_less"})).await.expect(200);
        let here = fix(4.85, 31.6, 0);
        let p = staff.post("/api/v1/sos", json!({"position": here})).await.problem(422);
        assert_eq!(p["issues"][0]["at"], "share_location");
        let case = staff.post("/api/v1/sos", json!({})).await.expect(201);
        assert!(case["position"].is_null(), "{case}");
        let again = staff.post("/api/v1/sos", json!({"position": here, "share_location": true})).await.expect(200);
        assert_eq!((again["position"]["source"].as_str(), again["position"]["lat"].as_f64()), (Some("shared_once"), Some(4.85)));
        // The shared position is on the case only: never in the position history or the map.
        let history: i64 = vigil_server::on_reader!(&srv.state.db, pool => sqlx::query_scalar(
            "SELECT COUNT(*) FROM position_history WHERE subject_kind = 'user' AND subject_id = $1")
            .bind(staff.user_id).fetch_one(pool).await).expect("count");
        assert_eq!(history, 0);
        let map = operator.get("/api/v1/positions").await.expect(200);
        assert!(!map.as_array().expect("list").iter().any(|p| p["subject"] == "user" && p["id"] == staff.user_id), "{map}");
        let bad = json!({"position": {"lat": 91.0, "lon": 0.0, "recorded_at": Timestamp(now_ms()).to_rfc3339()}, "share_location": true});
        assert_eq!(staff.post("/api/v1/sos", bad).await.problem(422)["issues"][0]["at"], "position/lat");
    }
}
