//! The loop: commands from stdin and the client's events, each printed as one line as it
//! happens.

use std::io::{BufRead, Write};

use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};
use vigil_sdk::{
    AlertReceiptState, Client, Event, Fix, Placement, SdkError, StreamMessage, Timestamp,
};

use crate::commands::{self, Command, HELP};

/// How many stored messages one read of the phone's store takes.
const PAGE: i64 = 500;

/// Runs until `quit` or the end of stdin, then stops the client; `Err` only when stdout is gone.
pub async fn run(client: Client, json: bool) -> std::io::Result<()> {
    let out = Printer { json };
    // Subscribed before the start, so that no message is handed to nobody.
    let mut events = client.events();
    let mut lines = stdin_lines();
    let mut phone = Phone {
        task: client.start(),
        client,
        location_less: false,
        last_fix: None,
        last_seq: None,
    };
    loop {
        tokio::select! {
            line = lines.recv() => match line {
                None => break,
                Some(None) => out.error("that line is not UTF-8 text")?,
                Some(Some(line)) => match commands::parse(&line) {
                    Ok(None) => {}
                    Ok(Some(Command::Quit)) => break,
                    Ok(Some(command)) => phone.execute(command, &out).await?,
                    Err(e) => out.error(&e)?,
                },
            },
            event = events.recv() => match event {
                Ok(event) => phone.event(event, &out).await?,
                Err(broadcast::error::RecvError::Lagged(missed)) => phone.reread(missed, &out).await?,
                Err(broadcast::error::RecvError::Closed) => break,
            },
        }
    }
    phone.client.stop();
    let _ = phone.task.await;
    out.print(json!({"event": "stopped"}), "stopped".into())
}

/// Stdin on its own thread: a blocked read must not keep the process alive after `quit`.
/// `Some(None)` is a line that was not UTF-8.
fn stdin_lines() -> mpsc::Receiver<Option<String>> {
    let (tx, rx) = mpsc::channel(16);
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let line = match line {
                Ok(l) => Some(l),
                Err(e) if e.kind() == std::io::ErrorKind::InvalidData => None,
                Err(_) => return,
            };
            if tx.blocking_send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// Prints one line per thing said, as text or as a JSON object.
#[derive(Debug)]
struct Printer {
    json: bool,
}

impl Printer {
    fn print(&self, json: Value, text: String) -> std::io::Result<()> {
        let mut stdout = std::io::stdout().lock();
        if self.json {
            writeln!(stdout, "{json}")?;
        } else {
            writeln!(stdout, "{text}")?;
        }
        stdout.flush()
    }

    fn reply(&self, reply: &str, mut fields: Value, text: String) -> std::io::Result<()> {
        fields["reply"] = json!(reply);
        self.print(fields, text)
    }

    fn error(&self, error: &str) -> std::io::Result<()> {
        self.print(json!({"error": error}), format!("error: {error}"))
    }
}

/// The client and what the terminal remembers beside it.
#[derive(Debug)]
struct Phone {
    client: Client,
    task: tokio::task::JoinHandle<()>,
    /// As last set here: the SDK does not say which mode the server holds.
    location_less: bool,
    /// The last `fix` typed, attached to an SOS pressed while tracking.
    last_fix: Option<Fix>,
    /// The last stream message printed, so that a re-read after falling behind prints none twice.
    last_seq: Option<i64>,
}

impl Phone {
    async fn execute(&mut self, command: Command, out: &Printer) -> std::io::Result<()> {
        match self.try_execute(command, out).await {
            Ok(()) => Ok(()),
            Err(Failure::Sdk(e)) => out.error(&e.to_string()),
            Err(Failure::Usage(e)) => out.error(&e),
            Err(Failure::Stdout(e)) => Err(e),
        }
    }

    async fn try_execute(&mut self, command: Command, out: &Printer) -> Result<(), Failure> {
        let c = &self.client;
        match command {
            Command::Login { email, password } => {
                let password = match password {
                    Some(p) => p,
                    None => std::env::var("VIGIL_PHONE_PASSWORD").map_err(|_| {
                        Failure::Usage(
                            "no password: type it after the email or set VIGIL_PHONE_PASSWORD"
                                .into(),
                        )
                    })?,
                };
                c.login(&email, &password).await?;
                self.task = c.start();
                out.reply(
                    "login",
                    json!({"email": email}),
                    format!("signed in as {email}; connecting"),
                )?;
            }
            Command::Follow(areas) => {
                c.follow_areas(&areas).await?;
                out.reply(
                    "follow",
                    json!({"area_ids": areas}),
                    format!("following areas {areas:?}"),
                )?;
            }
            Command::Mode { location_less } => {
                c.set_location_less(location_less).await?;
                self.location_less = location_less;
                let mode = if location_less {
                    "location-less: positions stay on this phone"
                } else {
                    "tracking: positions are shared"
                };
                out.reply(
                    "mode",
                    json!({"location_less": location_less}),
                    format!("mode {mode}"),
                )?;
            }
            Command::Fix {
                lat,
                lon,
                accuracy_m,
            } => {
                if self.location_less {
                    // Only the phone learns where it is; placements print as events.
                    c.device_moved(lat, lon);
                    out.reply(
                        "fix",
                        json!({"lat": lat, "lon": lon, "sent": false}),
                        format!("at {lat}, {lon}: kept on the phone"),
                    )?;
                } else {
                    let fix = Fix {
                        lat,
                        lon,
                        accuracy_m,
                        recorded_at: Timestamp::now(),
                    };
                    c.record_fix(fix).await?;
                    self.last_fix = Some(fix);
                    out.reply(
                        "fix",
                        json!({"lat": lat, "lon": lon, "sent": true}),
                        format!("at {lat}, {lon}: queued for the server"),
                    )?;
                }
            }
            Command::Receipt { alert_id, state } => {
                c.receipt(alert_id, state).await?;
                let state = receipt_name(state);
                out.reply(
                    "receipt",
                    json!({"alert_id": alert_id, "state": state}),
                    format!("alert #{alert_id} {state}: queued"),
                )?;
            }
            Command::Answer {
                rollcall_id,
                status,
                dependant_id,
                note,
            } => {
                c.answer_rollcall(rollcall_id, status, note.as_deref(), dependant_id)
                    .await?;
                let whom = dependant_id.map_or_else(String::new, |d| format!(" for person #{d}"));
                out.reply(
                    "answer",
                    json!({"rollcall_id": rollcall_id, "status": status, "dependant_id": dependant_id}),
                    format!("roll-call #{rollcall_id}: {status}{whom}, queued"),
                )?;
            }
            Command::Sos { position, note } => {
                let typed = position.map(|(lat, lon)| Fix {
                    lat,
                    lon,
                    accuracy_m: None,
                    recorded_at: Timestamp::now(),
                });
                // A typed position is the person's consent to share it; a tracking phone
                // shares its last fix anyway.
                let share = typed.is_some();
                let position = match typed {
                    Some(f) => Some(f),
                    None if !self.location_less => self.last_fix,
                    None => None,
                };
                let case = c.press_sos(note.as_deref(), position, share).await?;
                let chat = text(&case["conversation_id"]);
                let said = format!(
                    "SOS case #{} {}; its chat: {chat} (chat {chat} TEXT...)",
                    text(&case["id"]),
                    text(&case["status"]),
                );
                out.reply("sos", json!({"case": case}), said)?;
            }
            Command::Chat {
                conversation_id,
                text,
            } => {
                let client_id = c.send_chat(conversation_id, &text).await?;
                out.reply(
                    "chat",
                    json!({"conversation_id": conversation_id, "client_id": client_id}),
                    format!("chat #{conversation_id}: queued"),
                )?;
            }
            Command::Alerts => self.alerts(out).await?,
            Command::Pending => {
                let (fixes, other) = c.pending().await?;
                out.reply(
                    "pending",
                    json!({"fixes": fixes, "other": other}),
                    format!("outbox: {fixes} fixes, {other} other"),
                )?;
            }
            Command::Help => {
                for line in HELP {
                    out.reply("help", json!({"line": line}), (*line).to_string())?;
                }
            }
            // The loop ends on quit before it gets here.
            Command::Quit => {}
        }
        Ok(())
    }

    /// Every stored alert, oldest first, each line saying whether it was cancelled since.
    async fn alerts(&self, out: &Printer) -> Result<(), Failure> {
        let mut alerts = Vec::new();
        let mut cancelled = std::collections::BTreeSet::new();
        let mut after = 0;
        loop {
            let page = self.client.stored_messages(after, PAGE).await?;
            let Some(last) = page.last() else { break };
            after = last.seq;
            for m in page {
                match kind(&m).as_str() {
                    "alert" => alerts.push(m),
                    "alert_cancelled" => {
                        cancelled.insert(m.payload["alert_id"].as_i64());
                    }
                    _ => {}
                }
            }
        }
        for m in &alerts {
            let id = m.payload["alert_id"].as_i64();
            let gone = cancelled.contains(&id);
            let (title, _) = title_and_body(&m.payload);
            let said = format!(
                "alert #{} [{}] {title}{}",
                text(&m.payload["alert_id"]),
                text(&m.payload["severity"]),
                if gone { " (cancelled)" } else { "" }
            );
            out.reply(
                "alert",
                json!({"seq": m.seq, "alert_id": id, "title": title, "cancelled": gone, "payload": m.payload}),
                said,
            )?;
        }
        out.reply(
            "alerts",
            json!({"count": alerts.len()}),
            format!("{} alerts stored", alerts.len()),
        )?;
        Ok(())
    }

    async fn event(&mut self, event: Event, out: &Printer) -> std::io::Result<()> {
        match event {
            Event::Connected => out.print(json!({"event": "connected"}), "connected".into()),
            Event::Disconnected { reason } => out.print(
                json!({"event": "disconnected", "reason": reason}),
                format!("disconnected ({reason}); reconnecting"),
            ),
            Event::SignedOut => out.print(
                json!({"event": "signed_out"}),
                "signed out: login EMAIL PASSWORD".into(),
            ),
            Event::Message(m) => self.message(m, out).await,
            Event::Refused { reason } => out.print(
                json!({"event": "refused", "reason": reason}),
                format!("refused by the server and dropped: {reason}"),
            ),
            Event::FixesDropped { count } => out.print(
                json!({"event": "fixes_dropped", "count": count}),
                format!("outbox full: the {count} oldest fixes dropped"),
            ),
            Event::Placement {
                alert_id,
                placement,
            } => {
                let (name, text) = match placement {
                    Some(Placement::Inside) => ("inside", "you are inside its place"),
                    Some(Placement::InRegion) => (
                        "in_region",
                        "sent to the region you follow, not where you are",
                    ),
                    Some(Placement::Everywhere) => ("everywhere", "it applies wherever you are"),
                    None => ("none", "it no longer applies"),
                };
                let name = placement.map(|_| name);
                out.print(
                    json!({"event": "placement", "alert_id": alert_id, "placement": name}),
                    format!("alert #{alert_id}: {text}"),
                )
            }
        }
    }

    async fn message(&mut self, m: StreamMessage, out: &Printer) -> std::io::Result<()> {
        if self.last_seq.is_some_and(|last| m.seq <= last) {
            return Ok(());
        }
        self.last_seq = Some(m.seq);
        let kind = kind(&m);
        if kind == "alert"
            && let Some(id) = m.payload["alert_id"].as_i64()
        {
            // As a phone does: the ledger learns the alert reached the device.
            if let Err(e) = self.client.receipt(id, AlertReceiptState::Delivered).await {
                out.error(&format!("alert #{id}: delivery receipt not queued: {e}"))?;
            }
        }
        let said = describe(&kind, &m);
        let mut line = serde_json::to_value(&m).unwrap_or_else(|_| json!({"seq": m.seq}));
        line["event"] = json!("message");
        out.print(line, said)
    }

    /// The broadcast fell behind: print from the store what was missed.
    async fn reread(&mut self, missed: u64, out: &Printer) -> std::io::Result<()> {
        let Some(mut after) = self.last_seq else {
            return out.error(&format!(
                "{missed} events missed before the first message; `alerts` lists the stored alerts"
            ));
        };
        loop {
            let page = match self.client.stored_messages(after, PAGE).await {
                Ok(p) => p,
                Err(e) => return out.error(&format!("re-reading the stored messages: {e}")),
            };
            let Some(last) = page.last() else {
                return Ok(());
            };
            after = last.seq;
            for m in page {
                self.message(m, out).await?;
            }
        }
    }
}

/// Why a command did not happen.
#[derive(Debug)]
enum Failure {
    Sdk(SdkError),
    Usage(String),
    Stdout(std::io::Error),
}

impl From<SdkError> for Failure {
    fn from(e: SdkError) -> Self {
        Failure::Sdk(e)
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Self {
        Failure::Stdout(e)
    }
}

fn receipt_name(state: AlertReceiptState) -> &'static str {
    match state {
        AlertReceiptState::Delivered => "delivered",
        AlertReceiptState::Read => "read",
        AlertReceiptState::Acknowledged => "acknowledged",
    }
}

fn kind(m: &StreamMessage) -> String {
    serde_json::to_value(m.kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// The alert's title and body in its default language (else English, else any).
fn title_and_body(alert: &Value) -> (String, String) {
    let translations = &alert["translations"];
    let chosen = alert["default_language"]
        .as_str()
        .map(|l| &translations[l])
        .filter(|t| t.is_object())
        .or_else(|| Some(&translations["en"]).filter(|t| t.is_object()))
        .or_else(|| translations.as_object().and_then(|o| o.values().next()));
    let field = |name: &str| {
        chosen
            .and_then(|t| t[name].as_str())
            .unwrap_or("")
            .to_string()
    };
    (field("title"), field("body"))
}

/// A JSON value as a person reads it: strings unquoted, nothing for null.
fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// One line of text for a stream message.
fn describe(kind: &str, m: &StreamMessage) -> String {
    let p = &m.payload;
    let s = text;
    match kind {
        "alert" => {
            let (title, body) = title_and_body(p);
            format!(
                "ALERT #{} [{}] {title}: {body} (ack {})",
                s(&p["alert_id"]),
                s(&p["severity"]),
                s(&p["alert_id"])
            )
        }
        "alert_cancelled" => format!("alert #{} cancelled", s(&p["alert_id"])),
        "rollcall" => {
            let message = s(&p["message"]);
            let message = if message.is_empty() {
                String::new()
            } else {
                format!(": {message}")
            };
            format!(
                "ROLL-CALL #{} {}{message} (answer {} safe|need-help)",
                s(&p["rollcall_id"]),
                s(&p["title"]),
                s(&p["rollcall_id"])
            )
        }
        "rollcall_reminder" => format!("roll-call #{} still waits for you", s(&p["rollcall_id"])),
        "rollcall_closed" => format!("roll-call #{} closed", s(&p["rollcall_id"])),
        "sos" | "sos_update" => format!(
            "SOS case #{} {} ({})",
            s(&p["case"]["id"]),
            s(&p["event"]),
            s(&p["case"]["status"])
        ),
        "chat" => format!(
            "chat #{} {}: {}",
            s(&p["conversation_id"]),
            s(&p["sender_name"]),
            s(&p["body"])
        ),
        "chat_added" => format!(
            "added to chat #{} {}",
            s(&p["conversation_id"]),
            s(&p["title"])
        ),
        "chat_removed" => format!("removed from chat #{}", s(&p["conversation_id"])),
        "chat_closed" => format!("chat #{} closed", s(&p["conversation_id"])),
        other => format!("{other} (#{}): {p}", m.seq),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_alert_reads_in_its_default_language() {
        let alert = json!({"default_language": "ar", "translations": {
            "en": {"title": "Shelter", "body": "Gunfire."},
            "ar": {"title": "ابقوا في أماكنكم", "body": "إطلاق نار"}}});
        assert_eq!(
            title_and_body(&alert),
            ("ابقوا في أماكنكم".into(), "إطلاق نار".into())
        );
        let english =
            json!({"translations": {"fr": {"title": "Abri"}, "en": {"title": "Shelter"}}});
        assert_eq!(title_and_body(&english).0, "Shelter");
        let other = json!({"translations": {"fr": {"title": "Abri"}}});
        assert_eq!(title_and_body(&other).0, "Abri");
        assert_eq!(title_and_body(&json!({})), (String::new(), String::new()));
    }

    fn message(kind: &str, payload: Value) -> String {
        let m: StreamMessage = serde_json::from_value(
            json!({"seq": 7, "kind": kind, "at": "2026-12-03T10:00:00Z", "payload": payload}),
        )
        .expect("a stream message");
        describe(kind, &m)
    }

    #[test]
    fn each_message_is_one_readable_line() {
        assert_eq!(
            message(
                "alert",
                json!({"alert_id": 12, "severity": "severe",
                "translations": {"en": {"title": "Shelter in place", "body": "Gunfire."}}})
            ),
            "ALERT #12 [severe] Shelter in place: Gunfire. (ack 12)"
        );
        assert_eq!(
            message(
                "rollcall",
                json!({"rollcall_id": 5, "title": "Explosion", "message": null})
            ),
            "ROLL-CALL #5 Explosion (answer 5 safe|need-help)"
        );
        assert_eq!(
            message(
                "chat",
                json!({"conversation_id": 9, "sender_name": "Ops", "body": "Calling you"})
            ),
            "chat #9 Ops: Calling you"
        );
        assert_eq!(
            message(
                "sos_update",
                json!({"case": {"id": 3, "status": "claimed"}, "event": "claimed"})
            ),
            "SOS case #3 claimed (claimed)"
        );
        assert_eq!(
            message("area_entered", json!({"area_id": 4})),
            "area_entered (#7): {\"area_id\":4}"
        );
    }
}
