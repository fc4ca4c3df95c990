//! `sos-chat`: while D devices stream positions (the `positions` walk, `positions.rs`), S staff
//! press SOS, operators claim the cases, and each staff member chats with the operator holding
//! their case: the round trip staff `chat_send` → the operator's socket receives it → the
//! operator replies → the staff member's socket receives the reply, and staff send →
//! `chat_ack`; lost or duplicated messages are errors; positions acked/s during the chat, and
//! the server's memory and CPU.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::bail;
use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use tokio::sync::watch;
use tokio::time::MissedTickBehavior;
use tokio_tungstenite::tungstenite::Message;
use vigil_protocol::{ClientMessage, MessageKind, ServerMessage, StreamMessage};

use crate::client::{
    Fixture, Target, Ws, login, open_session, raise_nofile, source_addr, text_frame,
    tokens as get_tokens,
};
use crate::positions::{Counters, Walk, connect_devices, spawn_devices};
use crate::stats::{LatencyMs, ServerProbe, ServerUse, cpu_percent, mib, pct, publish, summarize};

/// Options of `sos-chat`.
#[derive(Debug)]
pub struct SosChatOpts {
    pub target: Target,
    pub fixture: Fixture,
    pub tokens_file: Option<std::path::PathBuf>,
    /// D: devices streaming positions (users 0..D).
    pub devices: usize,
    /// T: seconds between a device's fixes.
    pub period: Duration,
    /// Walk north of the areas: no geofence transitions (and no stored transition messages).
    pub outside: bool,
    /// S: staff pressing SOS (users D..D+S).
    pub staff: usize,
    /// Operators consoles (from `setup --operators`), claiming cases round-robin.
    pub operators: usize,
    /// Messages each staff member sends.
    pub messages: usize,
    /// Seconds between a staff member's messages.
    pub interval: Duration,
    /// Positions before the first SOS.
    pub warmup: Duration,
    /// Longest wait for a reply after the last message.
    pub reply_timeout: Duration,
    pub sources: usize,
    pub probe: ServerProbe,
    pub json: Option<std::path::PathBuf>,
}

/// The report of a `sos-chat` run.
#[derive(Debug, Serialize)]
pub struct SosChatReport {
    pub scenario: &'static str,
    pub target: String,
    pub devices: usize,
    pub devices_connected: usize,
    pub period_secs: f64,
    pub walk_outside_areas: bool,
    pub offered_fixes_per_sec: f64,
    /// Fixes acknowledged per second between the first and the last chat message.
    pub positions_acked_per_sec_during_chat: f64,
    pub positions_ack_latency_ms: LatencyMs,
    pub positions_errors: u64,
    pub positions_unanswered: u64,
    pub staff: usize,
    pub operators: usize,
    /// POST /sos → 201 (the case, its stored messages, its chat).
    pub sos_press_ms: LatencyMs,
    /// POST /sos/{id}/claim → 200.
    pub claim_ms: LatencyMs,
    pub chat_secs: f64,
    pub messages_sent: u64,
    pub messages_acked: u64,
    pub replies_received: u64,
    /// Staff messages whose reply never came (or that the operator never got).
    pub lost: u64,
    /// A conversation message seen twice on one socket.
    pub duplicates: u64,
    /// Error frames, refused requests, failed presses or claims.
    pub refused: u64,
    pub errors: u64,
    pub first_errors: Vec<String>,
    /// Every operator gets every SOS chat message: copies received of messages × operators.
    pub operator_copies: u64,
    pub operator_copies_expected: u64,
    /// staff `chat_send` → operator receives → replies → staff receives the reply.
    pub round_trip_ms: LatencyMs,
    /// staff `chat_send` → `chat_ack`.
    pub send_ack_ms: LatencyMs,
    #[serde(flatten)]
    pub server: ServerUse,
}

/// Counts every chat party adds to.
#[derive(Debug, Default)]
struct Chat {
    sent: AtomicU64,
    acked: AtomicU64,
    replies: AtomicU64,
    duplicates: AtomicU64,
    refused: AtomicU64,
    operator_copies: AtomicU64,
    first_errors: Mutex<Vec<String>>,
}

impl Chat {
    fn refuse(&self, what: String) {
        if self.refused.fetch_add(1, Ordering::Relaxed) < 5
            && let Ok(mut f) = self.first_errors.lock()
        {
            f.push(what);
        }
    }
}

/// A `chat` message of a person's stream: (conversation, seq, client_id).
fn chat_of(msg: &ServerMessage) -> Option<(i64, i64, &str)> {
    let ServerMessage::Message(StreamMessage {
        kind: MessageKind::Chat,
        payload: p,
        ..
    }) = msg
    else {
        return None;
    };
    Some((
        p["conversation_id"].as_i64()?,
        p["seq"].as_i64()?,
        p["client_id"].as_str()?,
    ))
}

/// One staff member: sends `messages` on their case's chat, times acks and replies.
struct Staff {
    ws: Ws,
    index: usize,
    conversation: i64,
    first: Instant,
    interval: Duration,
    messages: usize,
    reply_timeout: Duration,
    chat: Arc<Chat>,
}

/// What a staff member measured: round trips and send → ack times.
type StaffSamples = (Vec<Duration>, Vec<Duration>);

impl Staff {
    async fn run(mut self) -> StaffSamples {
        let mut tick = tokio::time::interval_at(self.first.into(), self.interval);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut sent_at: HashMap<String, Instant> = HashMap::new();
        let mut unacked: HashSet<String> = HashSet::new();
        let mut seen: HashSet<i64> = HashSet::new();
        let (mut trips, mut acks) = (Vec::new(), Vec::new());
        let (mut next, mut replied) = (0usize, 0usize);
        let mut deadline = tokio::time::Instant::from(
            self.first + self.interval * self.messages as u32 + self.reply_timeout,
        );
        loop {
            if next == self.messages && replied == self.messages && unacked.is_empty() {
                break;
            }
            tokio::select! {
                _ = tick.tick(), if next < self.messages => {
                    let id = format!("m-{}-{next}", self.index);
                    let msg = ClientMessage::ChatSend {
                        reference: Some(id.clone()),
                        conversation_id: self.conversation,
                        client_id: id.clone(),
                        body: format!("Load SOS chat: staff {} message {next}", self.index),
                    };
                    sent_at.insert(id.clone(), Instant::now());
                    unacked.insert(id);
                    next += 1;
                    self.chat.sent.fetch_add(1, Ordering::Relaxed);
                    if self.ws.send(text_frame(&msg)).await.is_err() {
                        self.chat.refuse(format!("staff {}: socket lost while sending", self.index));
                        break;
                    }
                    if next == self.messages {
                        deadline = tokio::time::Instant::now() + self.reply_timeout;
                    }
                }
                frame = self.ws.next() => {
                    let Some(Ok(frame)) = frame else {
                        self.chat.refuse(format!("staff {}: socket closed", self.index));
                        break;
                    };
                    let Message::Text(t) = frame else { continue };
                    let Ok(msg) = serde_json::from_str::<ServerMessage>(&t) else { continue };
                    match &msg {
                        ServerMessage::ChatAck { reference, .. } => {
                            let r = reference.as_deref().unwrap_or_default();
                            if unacked.remove(r) {
                                if let Some(at) = sent_at.get(r) {
                                    acks.push(at.elapsed());
                                }
                                self.chat.acked.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        ServerMessage::Error { .. } => self.chat.refuse(format!("staff {}: {t}", self.index)),
                        _ => {
                            let Some((conversation, seq, client_id)) = chat_of(&msg) else { continue };
                            if conversation != self.conversation {
                                continue;
                            }
                            if !seen.insert(seq) {
                                self.chat.duplicates.fetch_add(1, Ordering::Relaxed);
                                continue;
                            }
                            // The operator's reply to one of ours (our own copies come back too).
                            if let Some(at) = client_id.strip_prefix("re-").and_then(|orig| sent_at.get(orig)) {
                                trips.push(at.elapsed());
                                replied += 1;
                                self.chat.replies.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                }
                () = tokio::time::sleep_until(deadline) => break,
            }
        }
        let _ = self.ws.close(None).await;
        (trips, acks)
    }
}

/// One operator's console: answers at once every staff message on the cases it holds, and
/// counts every SOS chat message it receives (every operator gets every one).
async fn operator(
    mut ws: Ws,
    index: usize,
    holds: Arc<Mutex<HashSet<i64>>>,
    chat: Arc<Chat>,
    mut stop: watch::Receiver<bool>,
) {
    let mut seen: HashSet<(i64, i64)> = HashSet::new();
    let mut replies = 0u64;
    loop {
        tokio::select! {
            frame = ws.next() => {
                let Some(Ok(frame)) = frame else {
                    chat.refuse(format!("operator {index}: socket closed"));
                    break;
                };
                let Message::Text(t) = frame else { continue };
                let Ok(msg) = serde_json::from_str::<ServerMessage>(&t) else { continue };
                if let ServerMessage::Error { .. } = msg {
                    chat.refuse(format!("operator {index}: {t}"));
                    continue;
                }
                let Some((conversation, seq, client_id)) = chat_of(&msg) else { continue };
                if !seen.insert((conversation, seq)) {
                    chat.duplicates.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                if !client_id.starts_with("m-") {
                    continue;
                }
                chat.operator_copies.fetch_add(1, Ordering::Relaxed);
                let mine = holds.lock().is_ok_and(|h| h.contains(&conversation));
                if mine {
                    replies += 1;
                    let reply = ClientMessage::ChatSend {
                        reference: Some(format!("r-{replies}")),
                        conversation_id: conversation,
                        client_id: format!("re-{client_id}"),
                        body: format!("Operator {index} here: received {client_id}, stay where you are"),
                    };
                    if ws.send(text_frame(&reply)).await.is_err() {
                        chat.refuse(format!("operator {index}: socket lost while replying"));
                        break;
                    }
                }
            }
            _ = stop.changed() => break,
        }
    }
    let _ = ws.close(None).await;
}

/// POSTs `body` with the token; returns the JSON answer and the time to it.
async fn post(
    http: &reqwest::Client,
    url: String,
    token: &str,
    body: serde_json::Value,
    expect: &[u16],
) -> anyhow::Result<(serde_json::Value, Duration)> {
    let t = Instant::now();
    let resp = http
        .post(&url)
        .bearer_auth(token)
        .json(&body)
        .send()
        .await?;
    let status = resp.status();
    let v: serde_json::Value = resp.json().await.unwrap_or_default();
    if !expect.contains(&status.as_u16()) {
        bail!("{url}: {status}: {v}");
    }
    Ok((v, t.elapsed()))
}

pub async fn sos_chat(o: SosChatOpts) -> anyhow::Result<SosChatReport> {
    let nofile = raise_nofile((o.devices + o.staff + o.operators) as u64 + 1024)?;
    let sources = o.sources.clamp(1, 250);
    if o.fixture.operators.is_empty() {
        bail!("the users file has no operators: run `vigil-load setup --operators 4`");
    }
    let operators = o.operators.clamp(1, o.fixture.operators.len());
    let tokens = get_tokens(
        &o.target,
        &o.fixture.users,
        o.devices + o.staff,
        o.tokens_file.as_deref(),
    )
    .await?;
    if tokens.len() < o.devices + o.staff {
        bail!(
            "{} tokens for {} devices and {} staff: log more people in",
            tokens.len(),
            o.devices,
            o.staff
        );
    }
    eprintln!(
        "sos-chat: {} devices (a fix every {:?}), {} staff, {operators} operators; open-file limit {nofile}",
        o.devices, o.period, o.staff
    );
    let http = reqwest::Client::new();
    let mut op_tokens = Vec::with_capacity(operators);
    for op in &o.fixture.operators[..operators] {
        op_tokens.push(login(&http, &o.target, &op.email, &op.password).await?);
    }
    let device_tokens = Arc::new(tokens[..o.devices].to_vec());
    let sockets = connect_devices(
        std::slice::from_ref(&o.target),
        device_tokens,
        o.devices,
        sources,
    )
    .await?;
    let connected = sockets.len();
    eprintln!("{connected}/{} devices connected", o.devices);
    let mut staff_ws = Vec::with_capacity(o.staff);
    for (k, t) in tokens[o.devices..o.devices + o.staff].iter().enumerate() {
        staff_ws.push(open_session(&o.target, source_addr(o.devices + k, sources), t).await?);
    }
    let chat = Arc::new(Chat::default());
    let (stop, stopped) = watch::channel(false);
    let holds: Vec<Arc<Mutex<HashSet<i64>>>> = (0..operators).map(|_| Arc::default()).collect();
    let mut consoles = Vec::with_capacity(operators);
    for (j, t) in op_tokens.iter().enumerate() {
        let ws = open_session(&o.target, source_addr(o.devices + o.staff + j, sources), t).await?;
        consoles.push(tokio::spawn(operator(
            ws,
            j,
            holds[j].clone(),
            chat.clone(),
            stopped.clone(),
        )));
    }

    // Positions for the whole run: warm-up, presses and claims, the chat, the replies.
    let before = o.probe.sample();
    let client_probe = ServerProbe {
        pid: Some(std::process::id()),
    };
    let client_before = client_probe.sample();
    let counters = Arc::new(Counters::default());
    let start = Instant::now() + Duration::from_millis(200);
    let chat_len = o.interval * o.messages as u32 + o.interval;
    let until = start + o.warmup + Duration::from_secs(5) + chat_len + Duration::from_secs(2);
    let walk = Walk {
        grid: o.fixture.grid,
        period: o.period,
        fixes_per_message: 1,
        outside: o.outside,
    };
    let devices = spawn_devices(sockets, walk, start, until, &counters);
    let peaks: Arc<Mutex<(Option<f64>, Option<u64>)>> = Arc::default();
    let progress = {
        let (c, chat, probe, peaks) = (counters.clone(), chat.clone(), o.probe, peaks.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.tick().await;
            let (mut last, mut last_acked) = (probe.sample(), 0);
            loop {
                tick.tick().await;
                let s = probe.sample();
                let cpu = cpu_percent(&last, &s);
                if let Ok(mut p) = peaks.lock() {
                    p.0 = match (p.0, cpu) {
                        (Some(a), Some(b)) => Some(a.max(b)),
                        (a, b) => a.or(b),
                    };
                    p.1 = p.1.max(s.rss_kib);
                }
                let acked = c.acked_fixes.load(Ordering::Relaxed);
                eprintln!(
                    "  [{:>5.1}s] fixes acked {acked} ({:.0}/s) | chat sent {}, acked {}, replies {}, refused {}, duplicates {} | server RSS {}, CPU {}",
                    start.elapsed().as_secs_f64(),
                    (acked - last_acked) as f64 / s.at.duration_since(last.at).as_secs_f64(),
                    chat.sent.load(Ordering::Relaxed),
                    chat.acked.load(Ordering::Relaxed),
                    chat.replies.load(Ordering::Relaxed),
                    chat.refused.load(Ordering::Relaxed),
                    chat.duplicates.load(Ordering::Relaxed),
                    mib(s.rss_kib),
                    pct(cpu)
                );
                (last, last_acked) = (s, acked);
            }
        })
    };
    tokio::time::sleep_until((start + o.warmup).into()).await;

    // Every staff member presses SOS at once; operators claim round-robin.
    let (lat, lon) = (o.fixture.grid.lat_min - 0.01, o.fixture.grid.lon_min);
    let mut presses = Vec::with_capacity(o.staff);
    for k in 0..o.staff {
        let (http, token) = (http.clone(), tokens[o.devices + k].clone());
        let url = format!("{}/api/v1/sos", o.target.base);
        let recorded_at = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        let body = serde_json::json!({"note": format!("Load test SOS {k}"),
            "position": {"lat": lat, "lon": lon + k as f64 * 1e-4, "accuracy_m": 10.0, "recorded_at": recorded_at}});
        presses.push(tokio::spawn(async move {
            post(&http, url, &token, body, &[200, 201]).await
        }));
    }
    let (mut press_ms, mut claim_ms) = (Vec::new(), Vec::new());
    let mut cases = Vec::with_capacity(o.staff);
    for (k, p) in presses.into_iter().enumerate() {
        match p.await? {
            Ok((case, took)) => {
                press_ms.push(took);
                match (case["id"].as_i64(), case["conversation_id"].as_i64()) {
                    (Some(id), Some(conv)) => cases.push((k, id, conv)),
                    _ => chat.refuse(format!("staff {k}: a case without a chat: {case}")),
                }
            }
            Err(e) => chat.refuse(format!("staff {k}: SOS: {e:#}")),
        }
    }
    for &(k, id, conv) in &cases {
        let j = k % operators;
        let url = format!("{}/api/v1/sos/{id}/claim", o.target.base);
        match post(
            &http,
            url,
            &op_tokens[j],
            serde_json::json!({"take_over": true}),
            &[200],
        )
        .await
        {
            Ok((_, took)) => {
                claim_ms.push(took);
                if let Ok(mut h) = holds[j].lock() {
                    h.insert(conv);
                }
            }
            Err(e) => chat.refuse(format!("operator {j}: claim: {e:#}")),
        }
    }
    eprintln!(
        "{} SOS cases opened and claimed; chatting",
        cases.len().min(claim_ms.len())
    );

    // The chat: staff spread their first messages over one interval.
    let chat_start = Instant::now();
    let acked_at_chat_start = counters.acked_fixes.load(Ordering::Relaxed);
    let mut staff_tasks = Vec::with_capacity(cases.len());
    let mut by_staff: HashMap<usize, (i64, i64)> =
        cases.iter().map(|&(k, id, conv)| (k, (id, conv))).collect();
    for (k, ws) in staff_ws.into_iter().enumerate() {
        let Some(&(_, conversation)) = by_staff.get(&k) else {
            continue;
        };
        let s = Staff {
            ws,
            index: k,
            conversation,
            first: chat_start + o.interval.mul_f64(k as f64 / o.staff.max(1) as f64),
            interval: o.interval,
            messages: o.messages,
            reply_timeout: o.reply_timeout,
            chat: chat.clone(),
        };
        staff_tasks.push(tokio::spawn(s.run()));
    }
    let (mut trips, mut acks) = (Vec::new(), Vec::new());
    for t in staff_tasks {
        let (tr, ac) = t.await?;
        trips.extend(tr);
        acks.extend(ac);
    }
    let chat_secs = chat_start.elapsed().as_secs_f64();
    let acked_during_chat = counters.acked_fixes.load(Ordering::Relaxed) - acked_at_chat_start;
    let window_end = o.probe.sample();
    let client_end = client_probe.sample();
    // Let the last copies reach every console before counting them.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _ = stop.send(true);
    for c in consoles {
        c.await?;
    }
    // Close the cases (and their chats), so that the next run opens new ones.
    for (k, (id, _)) in by_staff.drain() {
        let url = format!("{}/api/v1/sos/{id}/close", o.target.base);
        let body = serde_json::json!({"outcome": "load test over"});
        if let Err(e) = post(&http, url, &op_tokens[k % operators], body, &[200]).await {
            eprintln!("  closing case {id}: {e:#}");
        }
    }
    let mut fix_samples = Vec::new();
    let mut unanswered = 0;
    for d in devices {
        let (s, u) = d.await?;
        fix_samples.extend(s);
        unanswered += u;
    }
    progress.abort();
    let after = o.probe.sample();
    let (peak_cpu, peak_rss) = peaks.lock().map(|p| *p).unwrap_or_default();
    let sent = chat.sent.load(Ordering::Relaxed);
    let replies = chat.replies.load(Ordering::Relaxed);
    let (duplicates, refused) = (
        chat.duplicates.load(Ordering::Relaxed),
        chat.refused.load(Ordering::Relaxed),
    );
    let missing_staff = o.staff - cases.len().min(claim_ms.len());
    let lost = (sent - replies.min(sent)) + (o.messages * missing_staff) as u64;
    let messages_acked = chat.acked.load(Ordering::Relaxed);
    let report = SosChatReport {
        scenario: "sos-chat",
        target: o.target.base.clone(),
        devices: o.devices,
        devices_connected: connected,
        period_secs: o.period.as_secs_f64(),
        walk_outside_areas: o.outside,
        offered_fixes_per_sec: connected as f64 / o.period.as_secs_f64(),
        positions_acked_per_sec_during_chat: acked_during_chat as f64 / chat_secs.max(1e-3),
        positions_ack_latency_ms: summarize(&mut fix_samples)
            .map(LatencyMs::from)
            .unwrap_or_default(),
        positions_errors: counters.errors.load(Ordering::Relaxed)
            + counters.dropped.load(Ordering::Relaxed),
        positions_unanswered: unanswered,
        staff: o.staff,
        operators,
        sos_press_ms: summarize(&mut press_ms)
            .map(LatencyMs::from)
            .unwrap_or_default(),
        claim_ms: summarize(&mut claim_ms)
            .map(LatencyMs::from)
            .unwrap_or_default(),
        chat_secs,
        messages_sent: sent,
        messages_acked,
        replies_received: replies,
        lost,
        duplicates,
        refused,
        errors: lost + duplicates + refused + (sent - messages_acked.min(sent)),
        first_errors: chat
            .first_errors
            .lock()
            .map(|f| f.clone())
            .unwrap_or_default(),
        operator_copies: chat.operator_copies.load(Ordering::Relaxed),
        operator_copies_expected: sent * operators as u64,
        round_trip_ms: summarize(&mut trips)
            .map(LatencyMs::from)
            .unwrap_or_default(),
        send_ack_ms: summarize(&mut acks)
            .map(LatencyMs::from)
            .unwrap_or_default(),
        server: ServerUse::between(
            o.probe.pid,
            (&before, &window_end, &after),
            (peak_cpu, peak_rss),
            (&client_before, &client_end),
        ),
    };
    publish(report, print_markdown, o.json.as_deref())
}

fn print_markdown(r: &SosChatReport) {
    println!(
        "## sos-chat: {} staff × {} messages with {} operators while {} devices send a fix every {} s{}\n",
        r.staff,
        r.messages_sent / r.staff.max(1) as u64,
        r.operators,
        r.devices,
        r.period_secs,
        if r.walk_outside_areas {
            ", outside the areas"
        } else {
            ", across the areas"
        }
    );
    println!("| measure | value |\n| --- | --- |");
    println!(
        "| **chat round trip** (staff send → operator → reply → staff) | **{}** |",
        r.round_trip_ms
    );
    println!("| staff send → chat_ack | {} |", r.send_ack_ms);
    println!(
        "| messages sent / acked / replies received / lost / duplicates / refused | {} / {} / {} / {} / {} / {} |",
        r.messages_sent, r.messages_acked, r.replies_received, r.lost, r.duplicates, r.refused
    );
    println!(
        "| copies on the operators' consoles (every operator gets every message) | {} of {} |",
        r.operator_copies, r.operator_copies_expected
    );
    println!(
        "| SOS press → 201 / claim → 200 | {} / {} |",
        r.sos_press_ms, r.claim_ms
    );
    println!(
        "| devices connected / offered | {} / {:.0} fixes/s |",
        r.devices_connected, r.offered_fixes_per_sec
    );
    println!(
        "| **positions acked during the chat** | **{:.0} fixes/s** (ack {}) ; errors {}, unanswered {} |",
        r.positions_acked_per_sec_during_chat,
        r.positions_ack_latency_ms,
        r.positions_errors,
        r.positions_unanswered
    );
    r.server.print_rows();
    println!("| errors | {} |", r.errors);
    for e in &r.first_errors {
        println!("\nfirst errors: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_protocol::Timestamp;

    #[test]
    fn chat_messages_are_read_from_the_stream() {
        let message = |seq, kind, payload| {
            ServerMessage::Message(StreamMessage {
                seq,
                kind,
                at: Timestamp(1_795_354_802_118),
                payload,
            })
        };
        let chat = message(
            9,
            MessageKind::Chat,
            serde_json::json!({"conversation_id": 4, "seq": 2, "client_id": "m-1-0", "body": "x"}),
        );
        assert_eq!(chat_of(&chat), Some((4, 2, "m-1-0")));
        let other = message(10, MessageKind::Sos, serde_json::json!({}));
        assert_eq!(chat_of(&other), None);
        let ack = ServerMessage::ChatAck {
            reference: None,
            conversation_id: 4,
            seq: 2,
            client_id: "m-1-0".into(),
            duplicate: false,
        };
        assert_eq!(chat_of(&ack), None);
    }
}
