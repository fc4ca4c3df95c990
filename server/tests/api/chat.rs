//! Chat: SOS case chats and crisis channels. Messages are numbered per conversation, a resend
//! appears once, a phone that was away catches up once, receipts only move forward, typing
//! reaches the others only, and nobody outside a conversation reads or writes in it.

use serde_json::{Value, json};
use vigil_server::chat::{Kind, NewConversation};
use vigil_server::policy::{Action, Actor, Role, authorize};

use crate::on_both_databases;
use crate::support::{Client, TestServer};
use crate::ws::Ws;

/// An operator's crisis channel with these members; returns its id.
async fn group(operator: &Client, members: &[i64]) -> i64 {
    let c = operator
        .post(
            "/api/v1/conversations",
            json!({"kind": "group", "title": "Juba wardens", "members": members}),
        )
        .await
        .expect(201);
    c["id"].as_i64().expect("conversation id")
}

/// The chat of an SOS case `person` opened, as the SOS module opens it.
async fn sos(srv: &TestServer, org: i64, person: &Client) -> i64 {
    vigil_server::chat::open(
        &srv.state,
        NewConversation {
            org_id: org,
            kind: Kind::Sos,
            ref_id: None,
            title: "SOS".into(),
            created_by: Some(person.user_id),
            members: vec![],
        },
    )
    .await
    .expect("SOS chat opens")
}

fn messages(c: i64) -> String {
    format!("/api/v1/conversations/{c}/messages")
}

async fn say(client: &Client, c: i64, client_id: &str, body: &str) -> crate::support::Resp {
    client
        .post(&messages(c), json!({"client_id": client_id, "body": body}))
        .await
}

/// Everything that arrives on a socket until it has answered two pings in turn. The server
/// serves a connection's queue and its incoming frames in no set order, so one pong proves
/// little; after the second, whatever was queued before the first has gone out.
async fn drain(ws: &mut Ws) -> Vec<Value> {
    let mut got = Vec::new();
    for round in ["drain-1", "drain-2"] {
        ws.send(json!({"type": "ping", "ref": round})).await;
        loop {
            let m = ws.next().await;
            if m["type"] == "pong" && m["ref"] == round {
                break;
            }
            assert_ne!(m["type"], "closed", "the socket closed: {m}");
            got.push(m);
        }
    }
    got
}

/// Everything that arrives until (and with) a message `wanted` picks, and then whatever
/// follows it at once.
async fn until(ws: &mut Ws, wanted: impl Fn(&Value) -> bool) -> Vec<Value> {
    let mut got = Vec::new();
    loop {
        let m = ws.next().await;
        assert_ne!(m["type"], "closed", "the socket closed: {m}");
        let done = wanted(&m);
        if m["type"] != "pong" {
            got.push(m);
        }
        if done {
            got.extend(drain(ws).await);
            return got;
        }
    }
}

/// Picks the stored `chat` message `seq` of conversation `c`.
fn chat_no(c: i64, seq: i64) -> impl Fn(&Value) -> bool {
    move |m| {
        m["kind"] == "chat" && m["payload"]["conversation_id"] == c && m["payload"]["seq"] == seq
    }
}

/// Picks a stored message of `kind`.
fn kind(kind: &'static str) -> impl Fn(&Value) -> bool {
    move |m| m["type"] == "message" && m["kind"] == kind
}

/// Picks a live event of `event`.
fn event(event: &'static str) -> impl Fn(&Value) -> bool {
    move |m| m["type"] == "event" && m["event"] == event
}

/// The `chat` stream messages among `got`, as `(conversation, seq, body)`.
fn chats(got: &[Value]) -> Vec<(i64, i64, String)> {
    got.iter()
        .filter(|m| m["type"] == "message" && m["kind"] == "chat")
        .map(|m| {
            let p = &m["payload"];
            (
                p["conversation_id"].as_i64().expect("conversation_id"),
                p["seq"].as_i64().expect("seq"),
                p["body"].as_str().expect("body").to_string(),
            )
        })
        .collect()
}

/// The next message that is not a stored message or an event.
async fn reply(ws: &mut Ws) -> Value {
    loop {
        let m = ws.next().await;
        if m["type"] != "message" && m["type"] != "event" {
            return m;
        }
    }
}

fn seqs(history: &Value) -> Vec<i64> {
    history
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["seq"].as_i64().expect("seq"))
        .collect()
}

on_both_databases! {
    async fn messages_are_numbered_in_order_and_a_resend_appears_once(srv: TestServer) {
        let org = srv.org().await;
        let operator = srv.user(org, &[Role::Operator], false).await;
        let warden = srv.user(org, &[Role::Staff], false).await;
        let c = group(&operator, &[warden.user_id]).await;
        let (mut phone, _) = Ws::hello(&srv, &warden, 0).await;

        for (i, text) in ["Road to the airport closed", "Stay in the compound", "Next update 18:00"].iter().enumerate() {
            let m = say(&operator, c, &format!("op-{i}"), text).await.expect(201);
            assert_eq!(m["seq"], i + 1);
            assert_eq!(m["sender_id"], operator.user_id);
            assert_eq!(m["body"], *text);
        }
        // The network dropped before the answer: the operator's console sends it again.
        let again = say(&operator, c, "op-1", "Stay in the compound").await.expect(200);
        assert_eq!(again["seq"], 2, "a resend is answered with the original");

        phone.send(json!({"type": "chat_send", "ref": "r1", "conversation_id": c, "client_id": "ph-1", "body": "Understood, staying"})).await;
        let ack = reply(&mut phone).await;
        assert_eq!(ack, json!({"type": "chat_ack", "ref": "r1", "conversation_id": c, "seq": 4, "client_id": "ph-1", "duplicate": false}));
        phone.send(json!({"type": "chat_send", "ref": "r2", "conversation_id": c, "client_id": "ph-1", "body": "Understood, staying"})).await;
        let ack = reply(&mut phone).await;
        assert_eq!((ack["type"].as_str(), ack["seq"].as_i64(), ack["duplicate"].as_bool()), (Some("chat_ack"), Some(4), Some(true)));

        let history = warden.get(&format!("{}?after=0", messages(c))).await.expect(200);
        assert_eq!(seqs(&history), vec![1, 2, 3, 4]);
        let ids: Vec<&str> = history.as_array().expect("messages").iter().map(|m| m["client_id"].as_str().expect("id")).collect();
        assert_eq!(ids, vec!["op-0", "op-1", "op-2", "ph-1"]);
        assert_eq!(history[3]["sender_name"].as_str().map(|n| n.starts_with("Test ")), Some(true));
        assert_eq!(seqs(&warden.get(&format!("{}?after=2&limit=1", messages(c))).await.expect(200)), vec![3]);

        // The phone's stream: told it was added, then every message once, in order, its own too
        // (for the person's other devices).
        let (mut other_device, _) = Ws::hello(&srv, &warden, 0).await;
        let got = drain(&mut other_device).await;
        let added = got.iter().find(|m| m["kind"] == "chat_added").expect("chat_added");
        assert_eq!(added["payload"]["conversation_id"], c);
        assert_eq!(added["payload"]["title"], "Juba wardens");
        let bodies: Vec<(i64, i64, String)> = chats(&got);
        assert_eq!(bodies.iter().map(|(conv, s, _)| (*conv, *s)).collect::<Vec<_>>(), vec![(c, 1), (c, 2), (c, 3), (c, 4)]);
        assert_eq!(bodies[3].2, "Understood, staying");

        // Bad input is refused whole, over HTTP and the socket.
        let bad = say(&operator, c, "has spaces", "x").await.problem(422);
        assert_eq!(bad["issues"][0]["at"], "client_id");
        say(&operator, c, "ok-1", "   ").await.problem(422);
        say(&operator, c, "ok-2", &"x".repeat(4_001)).await.problem(422);
        say(&operator, c, &"a".repeat(65), "x").await.problem(422);
        phone.send(json!({"type": "chat_send", "ref": "r3", "conversation_id": c, "client_id": "", "body": "x"})).await;
        let err = reply(&mut phone).await;
        assert_eq!((err["code"].as_str(), err["ref"].as_str()), (Some("invalid"), Some("r3")));
        assert_eq!(seqs(&warden.get(&messages(c)).await.expect(200)).len(), 4, "nothing was stored");
    }

    async fn a_phone_that_was_away_gets_what_it_missed_once(srv: TestServer) {
        let org = srv.org().await;
        let operator = srv.user(org, &[Role::Operator], false).await;
        let staff = srv.user(org, &[Role::Staff], false).await;
        let c = group(&operator, &[staff.user_id]).await;
        let (mut phone, _) = Ws::hello(&srv, &staff, 0).await;
        say(&operator, c, "a", "First").await.expect(201);
        let got = until(&mut phone, chat_no(c, 1)).await;
        let last_seen = got.iter().filter_map(|m| m["seq"].as_i64()).max().expect("a stored message");
        drop(phone);

        // Offline: two messages, one of them resent.
        say(&operator, c, "b", "Second").await.expect(201);
        say(&operator, c, "c", "Third").await.expect(201);
        say(&operator, c, "c", "Third").await.expect(200);

        let (mut phone, welcome) = Ws::hello(&srv, &staff, last_seen).await;
        let got = drain(&mut phone).await;
        assert_eq!(chats(&got), vec![(c, 2, "Second".into()), (c, 3, "Third".into())]);
        let newest = got.iter().filter_map(|m| m["seq"].as_i64()).max().expect("seq");
        assert_eq!(welcome["last_seq"], newest);
        drop(phone);
        let (mut phone, _) = Ws::hello(&srv, &staff, newest).await;
        assert!(drain(&mut phone).await.is_empty(), "nothing twice");
        // The conversation's own catch-up says the same.
        assert_eq!(seqs(&staff.get(&format!("{}?after=1", messages(c))).await.expect(200)), vec![2, 3]);
    }

    async fn an_sos_chat_reaches_every_operator_and_works_without_location(srv: TestServer) {
        let org = srv.org().await;
        let person = srv.user(org, &[Role::Staff], false).await;
        person.put("/api/v1/me/location-mode", json!({"mode": "location_less"})).await.expect(200);
        let op1 = srv.user(org, &[Role::Operator], false).await;
        let op2 = srv.user(org, &[Role::Operator], false).await;
        let c = sos(&srv, org, &person).await;
        let (mut ops1, _) = Ws::hello(&srv, &op1, 0).await;
        let (mut ops2, _) = Ws::hello(&srv, &op2, 0).await;
        let (mut phone, _) = Ws::hello(&srv, &person, 0).await;

        phone.send(json!({"type": "chat_send", "ref": "s1", "conversation_id": c, "client_id": "sos-1", "body": "Car stopped at a checkpoint, they took my phone's SIM"})).await;
        assert_eq!(reply(&mut phone).await["seq"], 1);
        // Every operator of the organisation has it, without being listed as a member.
        for ops in [&mut ops1, &mut ops2] {
            assert_eq!(chats(&until(ops, chat_no(c, 1)).await), vec![(c, 1, "Car stopped at a checkpoint, they took my phone's SIM".into())]);
        }
        let answer = say(&op2, c, "op2-1", "We see you. Stay with the car; a team is on the way.").await.expect(201);
        assert_eq!(answer["seq"], 2);
        assert_eq!(chats(&until(&mut phone, chat_no(c, 2)).await).last().map(|m| m.1), Some(2));
        assert_eq!(chats(&until(&mut ops1, chat_no(c, 2)).await), vec![(c, 2, "We see you. Stay with the car; a team is on the way.".into())]);

        // The operators appear as participants by role; the person as a member.
        let detail = op1.get(&format!("/api/v1/conversations/{c}")).await.expect(200);
        assert_eq!(detail["kind"], "sos");
        let parts = detail["participants"].as_array().expect("participants");
        let via = |id: i64| parts.iter().find(|p| p["user_id"] == id).map(|p| (p["via"].clone(), p["online"].clone()));
        assert_eq!(via(person.user_id), Some((json!("member"), json!(true))));
        assert_eq!(via(op1.user_id), Some((json!("operator"), json!(true))));
        assert_eq!(via(op2.user_id), Some((json!("operator"), json!(true))));
        // Operators list it among their conversations, with what they have not read.
        let mine = op1.get("/api/v1/conversations").await.expect(200);
        let listed = mine.as_array().expect("list").iter().find(|x| x["id"] == c).expect("listed").clone();
        assert_eq!((listed["unread"].as_i64(), listed["last_seq"].as_i64()), (Some(2), Some(2)));
        let mine = op2.get("/api/v1/conversations").await.expect(200);
        assert_eq!(mine[0]["unread"], 0, "writing reads everything before: their own message is not unread");

        // Nobody else reads or writes: advisers and org admins of the organisation, staff who
        // are not in it, another organisation's operator. Oversight reads, never writes.
        let other_org = srv.org().await;
        let strangers = [
            srv.user(org, &[Role::Adviser], false).await,
            srv.user(org, &[Role::OrgAdmin], false).await,
            srv.user(org, &[Role::Staff], false).await,
            srv.user(other_org, &[Role::Operator], false).await,
        ];
        for s in &strangers {
            s.get(&format!("/api/v1/conversations/{c}")).await.problem(403);
            s.get(&messages(c)).await.problem(403);
            say(s, c, "x-1", "hello?").await.problem(403);
            assert!(s.get("/api/v1/conversations").await.expect(200).as_array().expect("list").iter().all(|x| x["id"] != c));
        }
        let oversight = srv.user(other_org, &[Role::Oversight], false).await;
        assert_eq!(seqs(&oversight.get(&messages(c)).await.expect(200)), vec![1, 2]);
        say(&oversight, c, "o-1", "Noted").await.problem(403);
        assert_eq!(oversight.get(&format!("/api/v1/conversations?org_id={org}")).await.expect(200)[0]["id"], c);
        op1.get(&format!("/api/v1/conversations?org_id={org}")).await.problem(403);

        let (mut stranger, _) = Ws::hello(&srv, &strangers[3], 0).await;
        stranger.send(json!({"type": "chat_send", "ref": "x", "conversation_id": c, "client_id": "x-2", "body": "hello?"})).await;
        let err = reply(&mut stranger).await;
        assert_eq!((err["type"].as_str(), err["code"].as_str(), err["ref"].as_str()), (Some("error"), Some("forbidden"), Some("x")));
        stranger.send(json!({"type": "chat_send", "ref": "y", "conversation_id": c + 1000, "client_id": "x-3", "body": "hello?"})).await;
        assert_eq!(reply(&mut stranger).await["code"], "not_found");
        strangers[0].get(&format!("/api/v1/conversations/{}", c + 1000)).await.problem(404);
        assert!(chats(&drain(&mut phone).await).is_empty(), "nothing from strangers reached the person");
        assert_eq!(seqs(&person.get(&messages(c)).await.expect(200)), vec![1, 2]);
    }

    // Who takes part in an SOS chat without being listed is found by a query on roles; the
    // policy says who may write in it unlisted. Every role, of the chat's organisation and of
    // another, alone or combined, is shown among its participants, lists it among their
    // conversations and gets its messages exactly when the policy lets them write in it.
    // System admins may write anywhere but are found by no role.
    async fn an_sos_chat_takes_in_exactly_those_the_policy_lets_write_in_it_unlisted(srv: TestServer) {
        let org = srv.org().await;
        let other = srv.org().await;
        let mut people = crate::sos::one_of_each_role(&srv, org).await;
        people.extend(crate::sos::one_of_each_role(&srv, other).await);
        let both = srv.user(org, &[Role::Adviser, Role::Operator], false).await;
        let both_actor = Actor { user_id: both.user_id, org_id: org, roles: vec![Role::Adviser, Role::Operator], system_admin: false };
        people.push((both, both_actor));
        let admin = srv.user(org, &[Role::Staff], true).await;
        let admin_actor = Actor { user_id: admin.user_id, org_id: org, roles: vec![Role::Staff], system_admin: true };
        people.push((admin.clone(), admin_actor));
        let person = srv.user(org, &[Role::Staff], false).await;
        let case = person.post("/api/v1/sos", json!({})).await.expect(201);
        let c = case["conversation_id"].as_i64().expect("the case's chat");
        say(&person, c, "p-1", "I am in the white car by the market").await.expect(201);
        let detail = admin.get(&format!("/api/v1/conversations/{c}")).await.expect(200);
        let parts = detail["participants"].as_array().expect("participants").clone();
        let via = |id: i64| parts.iter().find(|p| p["user_id"] == id).map(|p| p["via"].clone());
        assert_eq!(via(person.user_id), Some(json!("member")));
        let mut wrong = Vec::new();
        for (client, actor) in &people {
            let unlisted = Action::WriteConversation { org_id: org, sos: true, member: false };
            let takes_part = !actor.system_admin && authorize(actor, unlisted).is_ok();
            let shown = via(actor.user_id);
            let lists_it = client.get("/api/v1/conversations").await.expect(200).as_array().expect("list").iter().any(|x| x["id"] == c);
            let got = crate::sos::stored_messages(&srv, client).await.iter()
                .filter(|m| m["kind"] == "chat" && m["payload"]["conversation_id"] == c).count();
            // Shown by a role they hold, or not at all.
            let by_their_role = shown.as_ref().and_then(Value::as_str).is_some_and(|v| actor.roles.iter().any(|r| r.as_str() == v));
            if (shown.is_some(), by_their_role) != (takes_part, takes_part) || lists_it != takes_part || got != usize::from(takes_part) {
                wrong.push(format!("{:?} of {} (system admin: {}): shown as {shown:?}, lists it: {lists_it}, got {got} messages; the policy says {takes_part}",
                    actor.roles, if actor.org_id == org { "the organisation" } else { "another" }, actor.system_admin));
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
        assert_eq!(parts.len(), 1 + people.iter().filter(|(_, a)| !a.system_admin && authorize(a, Action::WriteConversation { org_id: org, sos: true, member: false }).is_ok()).count(),
            "each participant appears once: {parts:?}");
    }

    async fn receipts_only_move_forward_and_reach_the_sender(srv: TestServer) {
        let org = srv.org().await;
        let person = srv.user(org, &[Role::Staff], false).await;
        let operator = srv.user(org, &[Role::Operator], false).await;
        let c = sos(&srv, org, &person).await;
        let (mut phone, _) = Ws::hello(&srv, &person, 0).await;
        let (mut console, _) = Ws::hello(&srv, &operator, 0).await;
        for i in 1..=3 {
            say(&person, c, &format!("p{i}"), &format!("message {i}")).await.expect(201);
        }
        until(&mut phone, chat_no(c, 3)).await;
        until(&mut console, chat_no(c, 3)).await;

        console.send(json!({"type": "chat_receipt", "ref": "d", "conversation_id": c, "seq": 3, "state": "delivered"})).await;
        assert_eq!(reply(&mut console).await, json!({"type": "ack", "ref": "d"}));
        let receipt = json!({"type": "event", "event": "chat_receipt", "conversation_id": c, "user_id": operator.user_id, "delivered_seq": 3, "read_seq": 0});
        assert_eq!(until(&mut phone, event("chat_receipt")).await, vec![receipt.clone()]);
        operator.post(&format!("/api/v1/conversations/{c}/read"), json!({"seq": 2})).await.expect(204);
        let read = json!({"type": "event", "event": "chat_receipt", "conversation_id": c, "user_id": operator.user_id, "delivered_seq": 3, "read_seq": 2});
        assert_eq!(until(&mut phone, event("chat_receipt")).await, vec![read.clone()]);
        // The reader's own devices hear it too (an unread badge clears everywhere).
        let own = until(&mut console, |m| m["event"] == "chat_receipt" && m["read_seq"] == 2).await;
        assert_eq!(own, vec![receipt, read]);
        // An older receipt arriving late changes nothing and tells nobody.
        console.send(json!({"type": "chat_receipt", "conversation_id": c, "seq": 1, "state": "read"})).await;
        operator.post(&format!("/api/v1/conversations/{c}/read"), json!({"seq": 1, "state": "delivered"})).await.expect(204);
        assert!(drain(&mut phone).await.is_empty());
        assert!(drain(&mut console).await.is_empty());
        // Nothing past the newest message.
        operator.post(&format!("/api/v1/conversations/{c}/read"), json!({"seq": 4})).await.problem(422);
        console.send(json!({"type": "chat_receipt", "ref": "z", "conversation_id": c, "seq": 9, "state": "read"})).await;
        assert_eq!(reply(&mut console).await["code"], "invalid");

        let detail = person.get(&format!("/api/v1/conversations/{c}")).await.expect(200);
        let me = |id: i64| detail["participants"].as_array().expect("participants").iter()
            .find(|p| p["user_id"] == id).map(|p| (p["last_delivered_seq"].as_i64(), p["last_read_seq"].as_i64()));
        assert_eq!(me(operator.user_id), Some((Some(3), Some(2))));
        assert_eq!(me(person.user_id), Some((Some(3), Some(3))), "a sender has read what they wrote");
        let mine = operator.get("/api/v1/conversations").await.expect(200);
        assert_eq!((mine[0]["unread"].as_i64(), mine[0]["my_last_read_seq"].as_i64()), (Some(1), Some(2)));

        // Oversight reads but leaves no receipts.
        let oversight = srv.user(org, &[Role::Oversight], false).await;
        oversight.post(&format!("/api/v1/conversations/{c}/read"), json!({"seq": 3})).await.problem(403);
    }

    async fn typing_reaches_the_others_only(srv: TestServer) {
        let org = srv.org().await;
        let person = srv.user(org, &[Role::Staff], false).await;
        let op1 = srv.user(org, &[Role::Operator], false).await;
        let op2 = srv.user(org, &[Role::Operator], false).await;
        let c = sos(&srv, org, &person).await;
        let (mut phone, _) = Ws::hello(&srv, &person, 0).await;
        let (mut console1, _) = Ws::hello(&srv, &op1, 0).await;
        let (mut console2, _) = Ws::hello(&srv, &op2, 0).await;
        drain(&mut phone).await;

        console1.send(json!({"type": "typing", "conversation_id": c})).await;
        assert!(drain(&mut console1).await.is_empty(), "not back to the one typing");
        for ws in [&mut phone, &mut console2] {
            let got = until(ws, event("typing")).await;
            assert_eq!(got.len(), 1, "{got:?}");
            assert_eq!((got[0]["event"].as_str(), got[0]["conversation_id"].as_i64(), got[0]["user_id"].as_i64()),
                (Some("typing"), Some(c), Some(op1.user_id)));
            assert!(got[0]["name"].as_str().is_some_and(|n| n.starts_with("Test ")));
        }
        // Hints are never stored: a later resume holds no trace of them.
        let (mut again, _) = Ws::hello(&srv, &person, 0).await;
        assert!(drain(&mut again).await.iter().all(|m| m["type"] == "message" && m["kind"] != "typing"));

        let stranger = srv.user(org, &[Role::Staff], false).await;
        let (mut ws, _) = Ws::hello(&srv, &stranger, 0).await;
        ws.send(json!({"type": "typing", "conversation_id": c})).await;
        assert_eq!(reply(&mut ws).await["code"], "forbidden");
        assert!(drain(&mut phone).await.is_empty());
    }

    async fn a_closed_conversation_refuses_messages_and_keeps_its_history(srv: TestServer) {
        let org = srv.org().await;
        let adviser = srv.user(org, &[Role::Adviser], false).await;
        let staff = srv.user(org, &[Role::Staff], false).await;
        let c = group(&adviser, &[staff.user_id]).await;
        say(&staff, c, "s1", "Are we moving tonight?").await.expect(201);
        let (mut phone, _) = Ws::hello(&srv, &staff, 0).await;
        drain(&mut phone).await;

        staff.post(&format!("/api/v1/conversations/{c}/close"), json!({})).await.problem(403);
        let closed = adviser.post(&format!("/api/v1/conversations/{c}/close"), json!({})).await.expect(200);
        assert!(closed["closed_at"].is_string());
        let got = until(&mut phone, kind("chat_closed")).await;
        assert_eq!(got.len(), 1);
        assert_eq!((got[0]["kind"].as_str(), got[0]["payload"]["conversation_id"].as_i64()), (Some("chat_closed"), Some(c)));

        say(&staff, c, "s2", "Hello?").await.problem(409);
        say(&staff, c, "s1", "Are we moving tonight?").await.expect(200);
        phone.send(json!({"type": "chat_send", "ref": "late", "conversation_id": c, "client_id": "s3", "body": "Hello?"})).await;
        let err = reply(&mut phone).await;
        assert_eq!((err["code"].as_str(), err["ref"].as_str()), (Some("closed"), Some("late")));
        adviser.post(&format!("/api/v1/conversations/{c}/close"), json!({})).await.problem(409);
        adviser.post(&format!("/api/v1/conversations/{c}/members"), json!({"user_ids": [adviser.user_id]})).await.problem(409);
        assert_eq!(seqs(&staff.get(&messages(c)).await.expect(200)), vec![1]);
        let listed = staff.get("/api/v1/conversations").await.expect(200);
        assert!(listed[0]["closed_at"].is_string());

        // An SOS chat closes with its case, not from the channel routes; the case closes it.
        let operator = srv.user(org, &[Role::Operator], false).await;
        let case = sos(&srv, org, &staff).await;
        operator.post(&format!("/api/v1/conversations/{case}/close"), json!({})).await.problem(409);
        vigil_server::chat::close(&srv.state, case).await.expect("the case closes its chat");
        say(&operator, case, "o1", "Closing").await.problem(409);
    }

    async fn an_area_channel_gathers_who_is_inside_and_who_follows_it(srv: TestServer) {
        let org = srv.org().await;
        let adviser = srv.user(org, &[Role::Adviser], false).await;
        let operator = srv.user(org, &[Role::Operator], false).await;
        let area = json!({"type": "Feature", "properties": {"name": crate::support::unique("Bor "), "security_level": 5},
            "geometry": {"type": "Polygon", "coordinates": [[[31.50, 6.15], [31.60, 6.15], [31.60, 6.25], [31.50, 6.25], [31.50, 6.15]]]}});
        let area = adviser.post("/api/v1/areas", area).await.expect(201)["id"].as_i64().expect("area");
        let fix = |lat: f64, lon: f64| json!({"fixes": [{"lat": lat, "lon": lon, "accuracy_m": 10.0,
            "recorded_at": vigil_server::db::Timestamp(vigil_server::db::now_ms() - 60_000)}]});
        let inside = srv.user(org, &[Role::Staff], false).await;
        inside.post("/api/v1/positions", fix(6.20, 31.55)).await.expect(200);
        let outside = srv.user(org, &[Role::Staff], false).await;
        outside.post("/api/v1/positions", fix(6.40, 31.55)).await.expect(200);
        let follower = srv.user(org, &[Role::Staff], false).await;
        follower.put("/api/v1/me/location-mode", json!({"mode": "location_less"})).await.expect(200);
        follower.put("/api/v1/me/followed-areas", json!({"area_ids": [area]})).await.expect(200);
        let other_org = srv.org().await;
        let foreigner = srv.user(other_org, &[Role::Staff], false).await;
        foreigner.post("/api/v1/positions", fix(6.21, 31.56)).await.expect(200);

        let created = operator.post("/api/v1/conversations", json!({"kind": "area", "ref_id": area, "title": "Bor: shelter now"}))
            .await.expect(201);
        let c = created["id"].as_i64().expect("id");
        let mut ids: Vec<i64> = created["participants"].as_array().expect("participants").iter()
            .map(|p| p["user_id"].as_i64().expect("id")).collect();
        ids.sort_unstable();
        let mut expected = vec![operator.user_id, inside.user_id, follower.user_id];
        expected.sort_unstable();
        assert_eq!(ids, expected, "the operator, the one inside and the follower; not the one outside nor another organisation's");
        say(&follower, c, "f1", "Sheltering at the compound").await.expect(201);
        say(&outside, c, "x1", "Me?").await.problem(403);
    }

    async fn crisis_channels_gather_a_duty_station_and_change_members(srv: TestServer) {
        let org = srv.org().await;
        let admin = srv.user(org, &[Role::OrgAdmin], true).await;
        let operator = srv.user(org, &[Role::Operator], false).await;
        let station = admin.post("/api/v1/duty-stations", json!({"name": crate::support::unique("Malakal "), "country_code": "SS"}))
            .await.expect(201)["id"].as_i64().expect("station");
        let warden = srv.user(org, &[Role::Staff], false).await;
        let elsewhere = srv.user(org, &[Role::Staff], false).await;
        let other_org = srv.org().await;
        let foreigner = srv.user(other_org, &[Role::Staff], false).await;
        let foreign_warden = srv.user(other_org, &[Role::Staff], false).await;
        for w in [&warden, &foreign_warden] {
            admin.patch(&format!("/api/v1/users/{}", w.user_id), json!({"duty_station_id": station})).await.expect(200);
        }

        let created = operator.post("/api/v1/conversations",
            json!({"kind": "duty_station", "ref_id": station, "title": "Malakal wardens"})).await.expect(201);
        let c = created["id"].as_i64().expect("id");
        let ids: Vec<i64> = created["participants"].as_array().expect("participants").iter()
            .map(|p| p["user_id"].as_i64().expect("id")).collect();
        assert!(ids.contains(&operator.user_id) && ids.contains(&warden.user_id), "{ids:?}");
        assert!(!ids.contains(&elsewhere.user_id) && !ids.contains(&foreign_warden.user_id), "{ids:?}");
        say(&warden, c, "w1", "Curfew from 19:00").await.expect(201);
        say(&elsewhere, c, "e1", "Me too?").await.problem(403);

        // Members come and go; each is told, and one who left reads no more.
        let (mut phone, _) = Ws::hello(&srv, &elsewhere, 0).await;
        operator.post(&format!("/api/v1/conversations/{c}/members"), json!({"user_ids": [elsewhere.user_id]})).await.expect(204);
        let got = until(&mut phone, kind("chat_added")).await;
        assert_eq!(got.iter().map(|m| m["kind"].as_str()).collect::<Vec<_>>(), vec![Some("chat_added")]);
        assert_eq!(seqs(&elsewhere.get(&messages(c)).await.expect(200)), vec![1]);
        say(&elsewhere, c, "e2", "Joined").await.expect(201);
        operator.send(reqwest::Method::DELETE, &format!("/api/v1/conversations/{c}/members"),
            Some(json!({"user_ids": [elsewhere.user_id]}))).await.expect(204);
        let got = until(&mut phone, kind("chat_removed")).await;
        assert_eq!(got.iter().map(|m| m["kind"].as_str()).collect::<Vec<_>>(), vec![Some("chat"), Some("chat_removed")]);
        elsewhere.get(&messages(c)).await.problem(403);
        say(&elsewhere, c, "e3", "Still here?").await.problem(403);

        // Bad channels are refused: staff may not open one, members from another
        // organisation, unknown subjects, SOS chats opened by hand.
        warden.post("/api/v1/conversations", json!({"kind": "group", "title": "Mine"})).await.problem(403);
        let bad = operator.post("/api/v1/conversations",
            json!({"kind": "group", "title": "Mixed", "members": [warden.user_id, foreigner.user_id]})).await.problem(422);
        assert_eq!(bad["issues"][0]["at"], "members/1");
        operator.post(&format!("/api/v1/conversations/{c}/members"), json!({"user_ids": [foreigner.user_id]})).await.problem(422);
        operator.post("/api/v1/conversations", json!({"kind": "area", "ref_id": 999_999, "title": "Nowhere"})).await.problem(404);
        operator.post("/api/v1/conversations", json!({"kind": "area", "title": "No area"})).await.problem(422);
        operator.post("/api/v1/conversations", json!({"kind": "sos", "title": "By hand"})).await.problem(422);
        operator.post("/api/v1/conversations", json!({"kind": "group", "title": " "})).await.problem(422);
        operator.post("/api/v1/conversations", json!({"kind": "group", "title": "Theirs", "org_id": other_org})).await.problem(403);

        // The channel list shows what each member has not read.
        say(&operator, c, "o1", "Wardens: check in by 18:00").await.expect(201);
        let mine = warden.get("/api/v1/conversations").await.expect(200);
        let listed = mine.as_array().expect("list").iter().find(|x| x["id"] == c).expect("listed").clone();
        assert_eq!((listed["unread"].as_i64(), listed["kind"].as_str(), listed["ref_id"].as_i64()), (Some(2), Some("duty_station"), Some(station)));
    }
}

/// The server died after storing a message and before copying it to the participants'
/// streams (the message was never acknowledged, so its phone would also resend it): the next
/// start finishes the fan-out, and the resend finds the original.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fan_out_cut_short_is_finished_at_the_next_start() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}/vigil.db", dir.path().display());
    let same_db = |s: &mut vigil_server::Settings| s.database_url = url.clone();
    let srv = TestServer::start_with(crate::support::Backend::Sqlite, same_db)
        .await
        .expect("server");
    let org = srv.org().await;
    let operator = srv.user(org, &[Role::Operator], false).await;
    let person = srv.user(org, &[Role::Staff], false).await;
    let c = sos(&srv, org, &person).await;
    // Stored, as the first half of a send does, and then nothing more.
    let stored = vigil_server::chat::store::insert_message(
        &srv.state.db,
        c,
        person.user_id,
        "cut-1",
        "Shots near the gate",
    )
    .await
    .expect("stored");
    assert!(!stored.duplicate);
    let (mut console, _) = Ws::hello(&srv, &operator, 0).await;
    assert!(
        chats(&drain(&mut console).await).is_empty(),
        "not fanned out yet"
    );
    drop(console);
    srv.stop().await;

    let srv = TestServer::start_with(crate::support::Backend::Sqlite, same_db)
        .await
        .expect("server again");
    let operator = operator.rebased(&srv.url);
    let person = person.rebased(&srv.url);
    let mut got = Vec::new();
    for _ in 0..100 {
        let (mut console, _) = Ws::hello(&srv, &operator, 0).await;
        got = chats(&drain(&mut console).await);
        if !got.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(got, vec![(c, 1, "Shots near the gate".to_string())]);
    let again = say(&person, c, "cut-1", "Shots near the gate")
        .await
        .expect(200);
    assert_eq!(again["seq"], 1);
    let (mut phone, _) = Ws::hello(&srv, &person, 0).await;
    assert_eq!(
        chats(&drain(&mut phone).await),
        vec![(c, 1, "Shots near the gate".to_string())]
    );
}
