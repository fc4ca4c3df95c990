//! The load generator's scenarios, run small against the real server started in this process
//! (ephemeral port, throwaway SQLite file), through the same functions the binary calls:
//! setup → login → connect → positions → broadcast, with the Mosquitto peer when a broker
//! answers on 127.0.0.1:1883 → rollcall → sos-chat. It checks what the reports count (deliveries, errors), never how
//! fast, so that the harness cannot rot unnoticed.

use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use vigil_load::broadcast::{BroadcastOpts, broadcast};
use vigil_load::client::Target;
use vigil_load::connect::{ConnectOpts, connect};
use vigil_load::mqtt::broker_answers;
use vigil_load::positions::{PositionsOpts, positions};
use vigil_load::rollcall::{RollcallOpts, rollcall};
use vigil_load::setup::{SetupOpts, login_to_file, setup};
use vigil_load::sos_chat::{SosChatOpts, sos_chat};
use vigil_load::stats::ServerProbe;
use vigil_server::users::NewPerson;

const ADMIN_EMAIL: &str = "admin@harness.load.example";
const ADMIN_PASSWORD: &str = "harness-admin-password-1";
const MOSQUITTO: &str = "127.0.0.1:1883";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scenario_runs_small_against_a_real_server() {
    let dir = tempfile::tempdir().expect("temp dir");
    let settings = vigil_server::Settings {
        database_url: format!("sqlite://{}/vigil.db", dir.path().display()),
        ..vigil_server::Settings::default()
    };
    let state = vigil_server::start(settings).await.expect("server starts");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(vigil_server::serve(state.clone(), listener, async {
        let _ = stopped.await;
    }));
    // The first system admin, as `vigil admin create-user --system-admin` makes them.
    let home = vigil_server::orgs::find_or_create(&state.db, "LOAD", None)
        .await
        .expect("organisation");
    let admin = NewPerson {
        email: ADMIN_EMAIL.into(),
        name: "Load Admin".into(),
        password: Some(ADMIN_PASSWORD.into()),
        system_admin: true,
        ..NewPerson::default()
    };
    vigil_server::users::create_person(&state.db, home, admin, None)
        .await
        .expect("system admin");
    let target = Target::parse(&url).expect("target");
    // The server runs in this process: its RSS and CPU are this process's.
    let probe = ServerProbe {
        pid: Some(std::process::id()),
    };

    // setup: 20 staff, an adviser, 5 staff without phones, 2 areas.
    let users_file = dir.path().join("load-users.json");
    let fixture = setup(SetupOpts {
        target: target.clone(),
        admin_email: ADMIN_EMAIL.into(),
        admin_password: ADMIN_PASSWORD.into(),
        org_short: "HARNESS".into(),
        users: 20,
        areas: 2,
        offline: 5,
        operators: 2,
        dependants: 1,
        concurrency: 4,
        out: users_file.clone(),
    })
    .await
    .expect("setup");
    assert_eq!(fixture.users.len(), 20);
    assert_eq!(fixture.offline.len(), 5);
    assert!(fixture.adviser.is_some());
    assert_eq!(fixture.area_ids.len(), 2);
    assert!(
        fixture.area_ids.iter().all(|id| *id > 0),
        "{:?}",
        fixture.area_ids
    );
    let reread = vigil_load::client::Fixture::read(&users_file).expect("users file");
    assert_eq!(reread.offline, fixture.offline);

    // login: every staff member's token, written where the other scenarios read it.
    let tokens_file = dir.path().join("load-tokens.json");
    let tokens = login_to_file(&target, &fixture, 20, 4, &tokens_file)
        .await
        .expect("login");
    assert_eq!(tokens.len(), 20);
    let stored: Vec<String> =
        serde_json::from_str(&std::fs::read_to_string(&tokens_file).expect("tokens file"))
            .expect("tokens JSON");
    assert_eq!(stored, tokens);

    // connect: 20 authenticated sockets held for a second.
    let c = connect(ConnectOpts {
        target: target.clone(),
        fixture: fixture.clone(),
        connections: 20,
        logins: 20,
        tokens_file: Some(tokens_file.clone()),
        concurrency: 8,
        sources: 2,
        hold_secs: 1,
        probe,
        json: Some(dir.path().join("connect.json")),
    })
    .await
    .expect("connect");
    assert_eq!(
        (c.connections_open, c.errors),
        (20, 0),
        "{:?}",
        c.first_errors
    );
    assert_eq!(c.distinct_users, 20);
    assert!(c.server_rss_idle_kib.is_some_and(|k| k > 0));

    // positions: 10 devices walking across the areas for 2 s.
    let p = positions(PositionsOpts {
        spread: Vec::new(),
        target: target.clone(),
        fixture: fixture.clone(),
        devices: 10,
        tokens_file: Some(tokens_file.clone()),
        period: Duration::from_millis(500),
        duration: Duration::from_secs(2),
        fixes_per_message: 1,
        outside: false,
        sources: 2,
        probe,
        json: None,
    })
    .await
    .expect("positions");
    assert_eq!(p.devices_connected, 10);
    assert!(p.fixes_sent >= 10, "{} fixes sent", p.fixes_sent);
    assert_eq!(p.fixes_acked + p.duplicates, p.fixes_sent);
    assert_eq!((p.errors, p.unanswered, p.connections_lost), (0, 0, 0));
    assert!(
        p.transition_messages > 0,
        "walking across the areas enters some"
    );

    // broadcast: 20 devices, 8 inside the polygon, 5 offline; two alerts; the peer too.
    let broker: SocketAddr = MOSQUITTO.parse().expect("address");
    let peer = broker_answers(broker).await.then_some(broker);
    if peer.is_none() {
        skipped(
            "the Mosquitto peer of the broadcast scenario",
            &format!("no MQTT broker answers on {MOSQUITTO}"),
        );
    }
    let json = dir.path().join("broadcast.json");
    let b = broadcast(BroadcastOpts {
        spread: Vec::new(),
        target: target.clone(),
        fixture: fixture.clone(),
        tokens_file: Some(tokens_file.clone()),
        devices: 20,
        inside: 8,
        offline: 5,
        rounds: 2,
        fresh_within_secs: 600,
        pause: Duration::from_millis(200),
        round_timeout: Duration::from_secs(30),
        concurrency: 8,
        sources: 2,
        peer_mqtt: peer,
        peer_pid: None,
        probe,
        json: Some(json.clone()),
    })
    .await
    .expect("broadcast");
    assert_eq!(b.errors, 0, "{:?}", b.first_errors);
    assert_eq!(
        (b.devices_connected, b.inside_connected, b.outside_connected),
        (20, 8, 12)
    );
    assert_eq!((b.offline_recipients, b.expected_recipients), (5, 13));
    assert_eq!(b.rounds.len(), 2);
    let mut ids = Vec::new();
    for r in &b.rounds {
        assert_eq!(r.recipient_count, Some(13), "round {}", r.round);
        assert_eq!(r.preview_total, Some(13), "round {}", r.round);
        assert_eq!(
            (
                r.reached,
                r.missing,
                r.wrong_deliveries,
                r.duplicates,
                r.errors
            ),
            (8, 0, 0, 0, 0),
            "round {}",
            r.round
        );
        assert_eq!(r.receipts_acked, 8);
        assert!(r.post_ms.is_some() && r.all_received_ms.is_some() && r.all_acked_ms.is_some());
        assert!(r.console_all_delivered_ms.is_some());
        // The console counts the 8 confirmed copies; the 5 offline ones are still waiting.
        let counts = r.console_counts.expect("console counts");
        assert_eq!(counts.confirmed(), 8, "{counts:?}");
        assert_eq!(
            counts.queued + counts.sent + counts.confirmed(),
            13,
            "{counts:?}"
        );
        ids.push(r.alert_id.expect("alert id"));
    }
    assert!(ids[0] < ids[1], "{ids:?}");
    assert!(b.payload_bytes > 100, "{} bytes", b.payload_bytes);
    assert_eq!(b.aggregate.reached, 16);
    assert_eq!(b.aggregate.expected, 16);
    let written: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("report file")).expect("JSON");
    assert_eq!(written["scenario"], "broadcast");
    assert_eq!(written["rounds"][1]["reached"], 8);
    match (&b.mqtt, peer) {
        (Some(m), Some(_)) => {
            assert_eq!(
                (m.subscribers_connected, m.errors),
                (8, 0),
                "{:?}",
                m.first_errors
            );
            // The same alert body; the ids inside it differ by a digit or two between runs.
            assert!(
                m.payload_bytes.abs_diff(b.payload_bytes) <= 16,
                "{} vs {}",
                m.payload_bytes,
                b.payload_bytes
            );
            assert_eq!(m.rounds.len(), 2);
            for r in &m.rounds {
                assert_eq!((r.received, r.missing, r.duplicates), (8, 0, 0));
                assert!(r.puback_ms.is_some());
            }
            assert!(
                !m.retained_left,
                "the run left a retained message on {}",
                m.topic
            );
        }
        (None, None) => {}
        (m, p) => panic!("peer asked: {p:?}, peer report: {:?}", m.is_some()),
    }

    // rollcall: 30 answers (20 staff for themselves, then 10 for their dependant) in 2 s.
    let r = rollcall(RollcallOpts {
        target: target.clone(),
        fixture: fixture.clone(),
        tokens_file: Some(tokens_file.clone()),
        answers: 30,
        people: 0,
        window: Duration::from_secs(2),
        need_help_share: 0.1,
        connections: 8,
        sources: 2,
        settle: Duration::from_secs(10),
        probe,
        json: Some(dir.path().join("rollcall.json")),
    })
    .await
    .expect("rollcall");
    assert_eq!(r.errors, 0, "{:?}", r.first_errors);
    assert_eq!((r.people_answering, r.rows_per_person), (20, 2));
    // Everyone in the organisation is asked: 20 staff and their 20 dependants, the adviser,
    // 2 operators and 5 offline staff.
    assert_eq!(r.people_asked, 48);
    assert_eq!(
        (r.answers_ok, r.answers_safe, r.answers_need_help),
        (30, 27, 3)
    );
    assert!(r.totals_match, "{:?} vs {:?}", r.expected, r.final_board);
    assert_eq!(r.expected.not_answered, 18);
    assert_eq!(r.answers_never_on_board, 0);
    assert!(r.board_updates > 0 && r.last_answer_to_final_board_ms.is_some());

    // sos-chat: 4 staff × 3 messages with 2 operators while 10 devices stream positions.
    let c = sos_chat(SosChatOpts {
        target: target.clone(),
        fixture: fixture.clone(),
        tokens_file: Some(tokens_file.clone()),
        devices: 10,
        period: Duration::from_millis(500),
        outside: false,
        staff: 4,
        operators: 2,
        messages: 3,
        interval: Duration::from_millis(200),
        warmup: Duration::from_secs(1),
        reply_timeout: Duration::from_secs(10),
        sources: 2,
        probe,
        json: Some(dir.path().join("sos-chat.json")),
    })
    .await
    .expect("sos-chat");
    assert_eq!(c.errors, 0, "{:?}", c.first_errors);
    assert_eq!(c.devices_connected, 10);
    assert_eq!(
        (c.messages_sent, c.messages_acked, c.replies_received),
        (12, 12, 12)
    );
    assert_eq!((c.lost, c.duplicates), (0, 0));
    assert_eq!(c.operator_copies, c.operator_copies_expected);
    assert_eq!(c.operator_copies, 24);
    assert!(c.round_trip_ms.max > 0.0 && c.send_ack_ms.max > 0.0);
    assert!(c.positions_acked_per_sec_during_chat > 0.0);
    assert_eq!(c.positions_unanswered, 0);

    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(30), server).await;
}

/// Says loudly that a part did not run; fails instead under `VIGIL_TEST_REQUIRE_ALL=1` (CI,
/// which has the broker), like the server's tests.
#[track_caller]
fn skipped(what: &str, why: &str) {
    if std::env::var("VIGIL_TEST_REQUIRE_ALL").is_ok_and(|v| v == "1") {
        panic!(
            "{what} did not run ({why}), and VIGIL_TEST_REQUIRE_ALL=1 requires every test to run"
        );
    }
    let _ = writeln!(std::io::stderr(), "\n*** SKIPPED {what}: {why} ***\n");
}
