//! The built `vigil-phone`, driven through its stdin and stdout as a script drives it, against
//! the real server on an ephemeral port (SQLite, and PostgreSQL when `VIGIL_TEST_POSTGRES_URL`
//! is set).

#[path = "../../sdk/tests/support/mod.rs"]
mod support;

use std::path::Path;
use std::process::{ExitStatus, Stdio};

use serde_json::{Value, json};
use support::{PASSWORD, PATIENCE, Server, alert, eventually, square};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};
use vigil_server::policy::Role;

/// One running `vigil-phone`.
struct Terminal {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Lines<BufReader<ChildStdout>>,
    /// Lines read but not yet waited for: what a wait looks for may have come first.
    unclaimed: Vec<Value>,
    /// Everything it printed, for the failure message.
    printed: Vec<String>,
}

impl Terminal {
    fn start(url: &str, store: &Path, json: bool) -> Terminal {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_vigil-phone"));
        cmd.arg("--server")
            .arg(url)
            .arg("--store")
            .arg(store)
            .env_remove("VIGIL_PHONE_PASSWORD")
            .env_remove("VIGIL_PHONE_JSON")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        if json {
            cmd.arg("--json");
        }
        let mut child = cmd.spawn().expect("vigil-phone starts");
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().expect("stdout")).lines();
        Terminal {
            child,
            stdin,
            stdout,
            unclaimed: Vec::new(),
            printed: Vec::new(),
        }
    }

    async fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .expect("write");
        stdin.flush().await.expect("flush");
    }

    /// The end of stdin, as when a script ends.
    fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// The next line it prints, as text.
    async fn next_line(&mut self) -> String {
        let line = tokio::time::timeout(PATIENCE, self.stdout.next_line())
            .await
            .unwrap_or_else(|_| panic!("nothing printed; so far: {:#?}", self.printed))
            .expect("read stdout")
            .unwrap_or_else(|| panic!("stdout ended; it printed: {:#?}", self.printed));
        self.printed.push(line.clone());
        line
    }

    /// The first printed line (already read or still to come) that `matches`; every line must
    /// be a JSON object.
    async fn until(&mut self, what: &str, matches: impl Fn(&Value) -> bool) -> Value {
        if let Some(i) = self.unclaimed.iter().position(&matches) {
            return self.unclaimed.remove(i);
        }
        let wait = async {
            loop {
                let line = self.next_line().await;
                let v: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
                assert!(v.is_object(), "not an object: {line}");
                if matches(&v) {
                    return v;
                }
                self.unclaimed.push(v);
            }
        };
        match tokio::time::timeout(PATIENCE, wait).await {
            Ok(v) => v,
            Err(_) => panic!(
                "timed out waiting for {what}; it printed: {:#?}",
                self.printed
            ),
        }
    }

    async fn reply(&mut self, reply: &str) -> Value {
        let what = format!("the reply to {reply}");
        self.until(&what, |v| {
            assert!(v.get("error").is_none(), "{what}: {v}");
            v["reply"] == reply
        })
        .await
    }

    async fn error(&mut self, starting: &str) -> String {
        let v = self
            .until(starting, |v| {
                v["error"].as_str().is_some_and(|e| e.starts_with(starting))
            })
            .await;
        v["error"].as_str().unwrap_or_default().to_string()
    }

    async fn message(&mut self, kind: &str, key: &str, id: i64) -> Value {
        self.until(&format!("the {kind} {id}"), |v| {
            v["event"] == "message" && v["kind"] == kind && v["payload"][key] == id
        })
        .await
    }

    async fn exit(&mut self) -> ExitStatus {
        tokio::time::timeout(PATIENCE, self.child.wait())
            .await
            .expect("it exits")
            .expect("exit status")
    }
}

fn id(v: &Value) -> i64 {
    v["id"].as_i64().unwrap_or_else(|| panic!("no id in {v}"))
}

async fn a_phone_from_a_shell_is_alerted_acknowledges_answers_presses_sos_and_chats(srv: Server) {
    let org = srv.org().await;
    let adviser = srv.adviser(org).await;
    let operator = srv.console(org, Role::Operator).await;
    let (user_id, email) = srv.person(org, Role::Staff).await;
    let dir = tempfile::tempdir().expect("phone dir");
    let store = dir.path().join("phone.db");
    let mut phone = Terminal::start(&srv.url, &store, true);

    // No session yet; bad input is one line of error and the terminal keeps going.
    phone
        .until("signed out", |v| v["event"] == "signed_out")
        .await;
    phone.send("launch rockets").await;
    phone.error("unknown command 'launch'").await;
    phone.send("ack twelve").await;
    phone.error("ALERT_ID must be a positive number").await;
    phone.send("pending").await;
    phone.reply("pending").await;
    phone.send(&format!("login {email}")).await;
    phone.error("no password").await;
    phone.send(&format!("login {email} not the password")).await;
    phone
        .until("a refused login", |v| v.get("error").is_some())
        .await;

    phone.send(&format!("login {email} {PASSWORD}")).await;
    assert_eq!(phone.reply("login").await["email"], email.as_str());
    phone
        .until("connected", |v| v["event"] == "connected")
        .await;

    // Tracking: the fix reaches the server, and the alert to the area reaches the terminal.
    let area = id(&adviser.post("/areas", square(10.0)).await);
    phone.send("fix 0.5 10.5 8").await;
    assert_eq!(phone.reply("fix").await["sent"], true);
    eventually("the fix put the phone in the area", async || {
        let preview = adviser
            .post("/alerts/preview", json!({"areas": [area]}))
            .await;
        (preview["by_reason"]["inside_area"] == 1).then_some(())
    })
    .await;
    let alert_id = id(&adviser
        .post("/alerts", alert(json!({"areas": [area]})))
        .await);
    let got = phone.message("alert", "alert_id", alert_id).await;
    assert_eq!(
        got["payload"]["translations"]["ar"]["title"], "ابقوا في أماكنكم",
        "right-to-left text untouched"
    );
    phone
        .until("inside the alert's place", |v| {
            v["event"] == "placement" && v["alert_id"] == alert_id && v["placement"] == "inside"
        })
        .await;
    phone.send(&format!("ack {alert_id}")).await;
    assert_eq!(phone.reply("receipt").await["state"], "acknowledged");
    eventually("the acknowledgement reached the ledger", async || {
        let rows = adviser.get(&format!("/alerts/{alert_id}/recipients")).await;
        (rows[0]["user_id"] == user_id && rows[0]["state"] == "acknowledged").then_some(())
    })
    .await;

    // A roll-call, answered from the shell.
    let rollcall = id(&operator
        .post(
            "/rollcalls",
            json!({"title": "Explosion near the market", "target": {"roles": ["staff"]}}),
        )
        .await);
    phone.message("rollcall", "rollcall_id", rollcall).await;
    phone
        .send(&format!(
            "answer {rollcall} need-help hurt leg, in the clinic"
        ))
        .await;
    assert_eq!(phone.reply("answer").await["status"], "need_help");
    eventually("the answer is on the board", async || {
        let board = operator.get(&format!("/rollcalls/{rollcall}")).await;
        (board["board"]["need_help"] == 1).then_some(())
    })
    .await;

    // SOS, with the last fix of a tracking phone, and its chat both ways.
    phone.send("sos car stopped at a roadblock").await;
    let case = phone.reply("sos").await["case"].clone();
    assert_eq!(case["position"]["lat"], 0.5, "{case}");
    let chat = case["conversation_id"].as_i64().expect("the case's chat");
    let open = operator.get("/sos").await;
    assert!(
        open.as_array().is_some_and(|cases| cases
            .iter()
            .any(|c| c["id"] == case["id"] && c["user_id"] == user_id && c["status"] == "open")),
        "the operator sees the case: {open}"
    );
    phone
        .send(&format!("chat {chat} they took my phone charger"))
        .await;
    phone.reply("chat").await;
    eventually("the operator reads the message", async || {
        let said = operator
            .get(&format!("/conversations/{chat}/messages"))
            .await
            .to_string();
        (said.matches("they took my phone charger").count() == 1).then_some(())
    })
    .await;
    operator
        .post(
            &format!("/conversations/{chat}/messages"),
            json!({"client_id": "ops-1", "body": "We are calling you now"}),
        )
        .await;
    phone
        .until("the operator's answer", |v| {
            v["kind"] == "chat" && v["payload"]["body"] == "We are calling you now"
        })
        .await;

    // Location-less: the followed region's alert arrives; where the phone is stays on it.
    let region = id(&adviser.post("/areas", square(20.0)).await);
    phone.send("mode location-less").await;
    assert_eq!(phone.reply("mode").await["location_less"], true);
    phone.send(&format!("follow {region}")).await;
    phone.reply("follow").await;
    let circle = json!({"shapes": [{"type": "Feature", "properties": {"radius_m": 5000.0},
        "geometry": {"type": "Point", "coordinates": [20.1, 0.1]}}]});
    let second = id(&adviser.post("/alerts", alert(circle)).await);
    phone.message("alert", "alert_id", second).await;
    phone.send("fix 0.1 20.1").await;
    assert_eq!(phone.reply("fix").await["sent"], false);
    phone
        .until("inside the circle, decided on the phone", |v| {
            v["event"] == "placement" && v["alert_id"] == second && v["placement"] == "inside"
        })
        .await;
    phone.send("pending").await;
    assert_eq!(phone.reply("pending").await["fixes"], 0);
    let leaked: i64 = vigil_server::on_reader!(&srv.state.db, pool => sqlx::query_scalar(
        "SELECT (SELECT COUNT(*) FROM position_history WHERE subject_kind = 'user' AND subject_id = $1 AND lon > 15) \
         + (SELECT COUNT(*) FROM last_positions WHERE subject_kind = 'user' AND subject_id = $1 AND lon > 15)")
        .bind(user_id).fetch_one(pool).await)
    .expect("scan");
    assert_eq!(leaked, 0, "the location-less fix never left the phone");

    phone.send("alerts").await;
    assert_eq!(phone.reply("alerts").await["count"], 2);

    // The script ends: the terminal stops cleanly.
    phone.close_stdin();
    phone.until("stopped", |v| v["event"] == "stopped").await;
    assert!(phone.exit().await.success());

    // Started again on the same storage it is still signed in, and `quit` ends it.
    let mut again = Terminal::start(&srv.url, &store, true);
    again
        .until("connected", |v| v["event"] == "connected")
        .await;
    again.send("quit").await;
    again.until("stopped", |v| v["event"] == "stopped").await;
    assert!(again.exit().await.success());
}

#[tokio::test]
async fn without_json_it_speaks_text_and_survives_bad_lines() {
    let dir = tempfile::tempdir().expect("phone dir");
    // Nothing listens on the discard port: the terminal works offline, signed out.
    let mut phone = Terminal::start("http://127.0.0.1:9", &dir.path().join("p.db"), false);
    phone.send("help").await;
    phone.send("fix 91 0").await;
    phone.send("answer 5 fine").await;
    phone.send("dance").await;
    // The sign-out notice comes from the client's task, in no set order with the replies.
    let mut said = String::new();
    while !(said.contains("error: unknown command 'dance'")
        && said.contains("signed out: login EMAIL PASSWORD"))
    {
        said.push('\n');
        said.push_str(&phone.next_line().await);
    }
    assert!(said.contains("\nlogin EMAIL [PASSWORD]"), "{said}");
    assert!(
        said.contains("error: LAT must be a number from -90 to 90, not '91'"),
        "{said}"
    );
    assert!(said.contains("error: usage: answer"), "{said}");
    phone.close_stdin();
    loop {
        if phone.next_line().await == "stopped" {
            break;
        }
    }
    assert!(phone.exit().await.success());
}

mod story {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        super::a_phone_from_a_shell_is_alerted_acknowledges_answers_presses_sos_and_chats(
            crate::support::server(false).await.expect("SQLite"),
        )
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        if let Some(srv) = crate::support::server(true).await {
            super::a_phone_from_a_shell_is_alerted_acknowledges_answers_presses_sos_and_chats(srv)
                .await;
        }
    }
}
