//! `broadcast`: a geofenced alert to K of N connected devices (plus M people without a
//! connected phone), R times: the adviser's POST → 201 (the alert, its ledger and every copy
//! committed), the latency from the POST's start to each device's receipt of its copy, the
//! receipts acknowledged, the sender's console counts, and the server's memory and CPU. With
//! `--peer-mqtt` the same fan-out runs through Mosquitto afterwards (`mqtt.rs`).
//!
//! Each run draws its own polygon: a 0.02° square in one cell of a 100 × 100 grid of 0.05°
//! cells (latitude 6–11° N, longitude 30–35° E, away from `setup`'s areas), picked from the
//! clock, so that positions left by earlier runs are never inside it. The first K connected
//! devices report a position inside it over their socket, the others a position in the same
//! cell east of it; the M offline people's trackers report inside it over `/api/v1/ingest/osmand`.
//! Exactly the K connected devices inside must receive the alert: a copy on any other device,
//! a second copy, or a missing one counts as an error.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_tungstenite::tungstenite::Message;
use vigil_protocol::{
    AlertCounts, AlertReceiptState, ClientMessage, Fix, MessageKind, ServerMessage, Timestamp,
    Topic,
};

use crate::client::{
    Fixture, Target, Ws, login, open_session, raise_nofile, source_addr, text_frame,
    tokens as get_tokens,
};
use crate::mqtt::{MqttOpts, MqttReport};
use crate::stats::{LatencyMs, ServerProbe, cpu_percent, mib, pct, summarize, write_json};

/// Options of `broadcast`.
#[derive(Debug)]
pub struct BroadcastOpts {
    pub target: Target,
    /// Nodes of a cluster the devices connect to, round robin (empty: all to `target`).
    pub spread: Vec<Target>,
    pub fixture: Fixture,
    pub tokens_file: Option<std::path::PathBuf>,
    /// N: devices connected (each its own staff user).
    pub devices: usize,
    /// K: of those, the devices inside the polygon.
    pub inside: usize,
    /// M: people without a connected phone inside the polygon (from `setup --offline`).
    pub offline: usize,
    /// R: alerts sent.
    pub rounds: usize,
    /// The alert's `fresh_within_secs`.
    pub fresh_within_secs: i64,
    /// Pause between alerts (the fallback sweep of offline copies starts 5 s after each).
    pub pause: Duration,
    /// Longest wait for one alert's deliveries, receipts and counts.
    pub round_timeout: Duration,
    /// Handshakes in flight while connecting.
    pub concurrency: usize,
    /// Client source addresses 127.0.0.2… for the WebSockets (MQTT uses the next ones).
    pub sources: usize,
    /// The Mosquitto peer, e.g. 127.0.0.1:1883.
    pub peer_mqtt: Option<std::net::SocketAddr>,
    /// The broker's process id, for its RSS and CPU.
    pub peer_pid: Option<u32>,
    pub probe: ServerProbe,
    pub json: Option<std::path::PathBuf>,
}

/// Ledger counts as the console receives them.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Counts {
    #[serde(default)]
    pub queued: i64,
    #[serde(default)]
    pub sent: i64,
    #[serde(default)]
    pub delivered: i64,
    #[serde(default)]
    pub read: i64,
    #[serde(default)]
    pub acknowledged: i64,
}

impl From<AlertCounts> for Counts {
    fn from(c: AlertCounts) -> Counts {
        Counts {
            queued: c.queued,
            sent: c.sent,
            delivered: c.delivered,
            read: c.read,
            acknowledged: c.acknowledged,
        }
    }
}

impl Counts {
    /// Copies a device has confirmed (delivered or further).
    pub fn confirmed(&self) -> i64 {
        self.delivered + self.read + self.acknowledged
    }
}

/// One alert.
#[derive(Debug, Serialize, Clone)]
pub struct RoundReport {
    pub round: usize,
    pub alert_id: Option<i64>,
    /// `recipient_count` of the 201 (must equal K + M).
    pub recipient_count: Option<i64>,
    /// `POST /alerts/preview` of the same target just before (not timed with the alert): who
    /// it reaches, and how long finding them takes (the targeting part of the POST).
    pub preview_total: Option<i64>,
    pub preview_ms: Option<f64>,
    /// POST start → 201: the alert, its ledger and every copy committed (and handed to the
    /// connected devices' queues).
    pub post_ms: Option<f64>,
    /// Devices inside that received the alert (must equal K).
    pub reached: usize,
    pub missing: usize,
    /// Copies on devices outside the polygon (must be 0).
    pub wrong_deliveries: usize,
    /// Second copies on one device (must be 0).
    pub duplicates: usize,
    /// POST start → each inside device's receipt of the message.
    pub delivery_ms: LatencyMs,
    /// POST start → the last inside device's receipt (when all K got it).
    pub all_received_ms: Option<f64>,
    /// "delivered" receipts the server acknowledged.
    pub receipts_acked: usize,
    /// POST start → the last receipt's ack (when all K were acked).
    pub all_acked_ms: Option<f64>,
    /// POST start → the first `alert_progress` on the sender's console counting all K
    /// confirmed.
    pub console_all_delivered_ms: Option<f64>,
    /// The last counts the console saw for this alert.
    pub console_counts: Option<Counts>,
    /// Everything that went wrong in this round (wrong, duplicate and missing copies, server
    /// errors, lost sockets, a refused POST, a recipient count other than K + M).
    pub errors: usize,
    pub server_rss_before_kib: Option<u64>,
    pub server_rss_peak_kib: Option<u64>,
    pub server_cpu_percent: Option<f64>,
    pub server_cpu_secs: Option<f64>,
    pub client_cpu_percent: Option<f64>,
    /// POST start → end of the measurement.
    pub window_secs: f64,
}

/// All alerts together.
#[derive(Debug, Serialize, Clone, Default)]
pub struct Aggregate {
    /// POST → 201 over the R alerts.
    pub post_ms: LatencyMs,
    /// The previews (targeting alone) over the R alerts.
    pub preview_ms: LatencyMs,
    /// Every inside device's receipt of every alert.
    pub delivery_ms: LatencyMs,
    pub all_received_ms_max: Option<f64>,
    pub all_acked_ms_max: Option<f64>,
    pub console_all_delivered_ms_max: Option<f64>,
    pub reached: usize,
    pub expected: usize,
    pub wrong_deliveries: usize,
    pub errors: usize,
}

/// The report of a `broadcast` run.
#[derive(Debug, Serialize)]
pub struct BroadcastReport {
    pub scenario: &'static str,
    pub target: String,
    pub devices_requested: usize,
    /// N: WebSockets open.
    pub devices_connected: usize,
    /// K_connected: connected devices inside the polygon.
    pub inside_connected: usize,
    pub outside_connected: usize,
    /// M: recipients without a connected phone (copies stored, left to resume and fallbacks).
    pub offline_recipients: usize,
    /// K_total = K_connected + M: who the alert must reach.
    pub expected_recipients: usize,
    pub polygon: Vec<[f64; 2]>,
    pub fresh_within_secs: i64,
    pub source_addresses: String,
    pub nofile_limit: u64,
    pub connect_secs: f64,
    pub connect_errors: usize,
    pub positions_secs: f64,
    pub offline_reports_secs: f64,
    pub offline_reports_refused: usize,
    /// Size of the alert's WebSocket frame as devices received it.
    pub payload_bytes: usize,
    pub rounds: Vec<RoundReport>,
    pub aggregate: Aggregate,
    pub errors: usize,
    pub first_errors: Vec<String>,
    pub server_pid: Option<u32>,
    pub server_rss_connected_kib: Option<u64>,
    pub server_rss_end_kib: Option<u64>,
    pub client_rss_kib: Option<u64>,
    pub mqtt: Option<MqttReport>,
}

/// Side of a grid cell and of the polygon, in degrees.
const CELL: f64 = 0.05;
const SIDE: f64 = 0.02;

/// This run's place: the south-west corner of its cell.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Zone {
    pub lat0: f64,
    pub lon0: f64,
}

impl Zone {
    /// The cell for a run started at `unix_secs`.
    pub fn for_time(unix_secs: i64) -> Zone {
        let slot = unix_secs.rem_euclid(10_000);
        Zone {
            lat0: 6.0 + (slot / 100) as f64 * CELL,
            lon0: 30.0 + (slot % 100) as f64 * CELL,
        }
    }

    /// The polygon: a closed ring of `[lon, lat]`.
    pub fn ring(&self) -> Vec<[f64; 2]> {
        let (s, w) = (self.lat0 + 0.01, self.lon0 + 0.01);
        let (n, e) = (s + SIDE, w + SIDE);
        vec![[w, s], [e, s], [e, n], [w, n], [w, s]]
    }

    /// The `i`-th point inside the polygon (spread by a low-discrepancy sequence), `(lat, lon)`.
    pub fn inside(&self, i: usize) -> (f64, f64) {
        let (a, b) = spread(i);
        (self.lat0 + 0.011 + 0.018 * a, self.lon0 + 0.011 + 0.018 * b)
    }

    /// The `i`-th point of the cell east of the polygon (outside it, in no other run's).
    pub fn outside(&self, i: usize) -> (f64, f64) {
        let (a, b) = spread(i);
        (self.lat0 + 0.011 + 0.018 * a, self.lon0 + 0.035 + 0.01 * b)
    }

    /// Whether `(lat, lon)` lies inside the polygon.
    pub fn contains(&self, lat: f64, lon: f64) -> bool {
        let (s, w) = (self.lat0 + 0.01, self.lon0 + 0.01);
        lat > s && lat < s + SIDE && lon > w && lon < w + SIDE
    }
}

/// Two fractions in [0, 1) that fill the unit square evenly as `i` grows.
fn spread(i: usize) -> (f64, f64) {
    let x = i as f64 + 1.0;
    (
        (x * 0.618_033_988_749_895).fract(),
        (x * 0.754_877_666_246_693).fract(),
    )
}

/// What a device saw.
#[derive(Debug)]
enum Seen {
    PositionAcked,
    Alert {
        alert_id: i64,
        at: Instant,
        bytes: usize,
        frame: Option<String>,
    },
    ReceiptAcked {
        alert_id: i64,
        at: Instant,
    },
    Error(String),
    Lost,
}

#[derive(Debug)]
struct Event {
    device: usize,
    seen: Seen,
}

/// The fields of a server message a device looks at. Not a whole `ServerMessage`: that would
/// build the alert's payload as a `serde_json::Value` on every device, five times the CPU of
/// this (a test checks that both read the protocol's messages alike).
#[derive(Deserialize)]
struct Incoming {
    #[serde(rename = "type")]
    ty: String,
    kind: Option<MessageKind>,
    #[serde(rename = "ref")]
    reference: Option<String>,
    payload: Option<AlertRef>,
}

#[derive(Deserialize)]
struct AlertRef {
    alert_id: Option<i64>,
}

/// The `ref` of a device's position.
const POSITION_REF: &str = "pos";

/// The `ref` of a device's receipt of alert `alert_id`.
fn receipt_ref(alert_id: i64) -> String {
    format!("r{alert_id}")
}

/// The alert a receipt's `ref` names.
fn receipt_of(reference: &str) -> Option<i64> {
    reference.strip_prefix('r').and_then(|id| id.parse().ok())
}

/// One phone: reports its position, then confirms every alert it receives until stopped.
async fn device(
    index: usize,
    mut ws: Ws,
    (lat, lon): (f64, f64),
    events: mpsc::UnboundedSender<Event>,
    mut stop: watch::Receiver<bool>,
    keep_frame: bool,
) {
    let send = |seen| {
        let _ = events.send(Event {
            device: index,
            seen,
        });
    };
    let fix = ClientMessage::Position {
        reference: Some(POSITION_REF.into()),
        fixes: vec![Fix {
            lat,
            lon,
            accuracy_m: Some(10.0),
            recorded_at: Timestamp::now(),
        }],
    };
    if ws.send(text_frame(&fix)).await.is_err() {
        send(Seen::Lost);
        return;
    }
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            frame = ws.next() => match frame {
                Some(Ok(Message::Text(t))) => {
                    let at = Instant::now();
                    let Ok(m) = serde_json::from_str::<Incoming>(&t) else {
                        send(Seen::Error(format!("unreadable: {t}")));
                        continue;
                    };
                    match (m.ty.as_str(), m.kind) {
                        ("message", Some(MessageKind::Alert)) => {
                            let Some(alert_id) = m.payload.and_then(|p| p.alert_id) else {
                                send(Seen::Error(format!("alert without id: {t}")));
                                continue;
                            };
                            send(Seen::Alert { alert_id, at, bytes: t.len(), frame: keep_frame.then(|| t.to_string()) });
                            let receipt = ClientMessage::Receipt {
                                reference: Some(receipt_ref(alert_id)),
                                alert_id,
                                state: AlertReceiptState::Delivered,
                            };
                            if ws.send(text_frame(&receipt)).await.is_err() {
                                send(Seen::Lost);
                                return;
                            }
                        }
                        ("ack", _) => match m.reference.as_deref() {
                            Some(POSITION_REF) => send(Seen::PositionAcked),
                            Some(r) => {
                                if let Some(alert_id) = receipt_of(r) {
                                    send(Seen::ReceiptAcked { alert_id, at });
                                }
                            }
                            None => {}
                        },
                        ("error", _) => send(Seen::Error(t.to_string())),
                        _ => {}
                    }
                }
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => {
                    send(Seen::Lost);
                    return;
                }
                Some(Ok(_)) => {}
            },
        }
    }
    let _ = ws.close(None).await;
}

/// A console's view of one alert's counts.
#[derive(Debug)]
struct Progress {
    alert_id: i64,
    counts: Counts,
    at: Instant,
}

/// The sender's console: follows the organisation's alert counts.
async fn console(
    mut ws: Ws,
    out: mpsc::UnboundedSender<Progress>,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let subscribe = ClientMessage::Subscribe {
        topic: Topic::Operations,
        org_id: None,
    };
    ws.send(text_frame(&subscribe)).await?;
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            frame = ws.next() => match frame {
                Some(Ok(Message::Text(t))) => {
                    let at = Instant::now();
                    match serde_json::from_str::<ServerMessage>(&t).with_context(|| format!("reading {t}"))? {
                        ServerMessage::AlertProgress { alert_id, counts } => {
                            let _ = out.send(Progress { alert_id, counts: counts.into(), at });
                        }
                        ServerMessage::Error { .. } => bail!("the console's subscription was refused: {t}"),
                        _ => {}
                    }
                }
                Some(Ok(Message::Close(f))) => bail!("the console was closed: {f:?}"),
                Some(Err(e)) => return Err(e.into()),
                None => bail!("the console was closed"),
                Some(Ok(_)) => {}
            },
        }
    }
    let _ = ws.close(None).await;
    Ok(())
}

/// The alert sent in every round: three languages, as advisers write them.
pub fn alert_body(zone: &Zone, fresh_within_secs: i64, round: usize) -> serde_json::Value {
    serde_json::json!({
        "translations": {
            "en": {"title": format!("Shelter in place (load test {round})"),
                   "body": "Armed clashes reported near the market and the main road north of the compound. \
                            Movement in the area is suspended until further notice.",
                   "instructions": "Stay indoors, away from windows. Confirm you are safe in the app. \
                                    Call the security focal point if you need assistance."},
            "fr": {"title": format!("Restez à l'abri (test de charge {round})"),
                   "body": "Affrontements armés signalés près du marché et de la route principale au nord de l'enceinte. \
                            Les déplacements dans la zone sont suspendus jusqu'à nouvel ordre."},
            "ar": {"title": format!("ابقوا في أماكنكم (اختبار الحمل {round})"),
                   "body": "أُبلغ عن اشتباكات مسلحة قرب السوق والطريق الرئيسي شمال المجمع. تُعلَّق التنقلات في المنطقة حتى إشعار آخر."}
        },
        "severity": "severe",
        "urgency": "immediate",
        "certainty": "observed",
        "security_level": 4,
        "sms_fallback": false,
        "target": {
            "shapes": [{"type": "Feature", "properties": {"name": "load-test polygon"},
                        "geometry": {"type": "Polygon", "coordinates": [zone.ring()]}}],
            "fresh_within_secs": fresh_within_secs
        }
    })
}

/// What one round has seen so far.
struct Round {
    inside: usize,
    received: Vec<Option<Instant>>,
    acked: Vec<Option<Instant>>,
    n_received: usize,
    n_acked: usize,
    wrong: usize,
    duplicates: usize,
    errors: usize,
    console_done: Option<Instant>,
    console_counts: Option<Counts>,
}

impl Round {
    fn new(inside: usize) -> Round {
        Round {
            inside,
            received: vec![None; inside],
            acked: vec![None; inside],
            n_received: 0,
            n_acked: 0,
            wrong: 0,
            duplicates: 0,
            errors: 0,
            console_done: None,
            console_counts: None,
        }
    }

    fn complete(&self) -> bool {
        self.n_received == self.inside && self.n_acked == self.inside && self.console_done.is_some()
    }

    fn progress(&mut self, p: &Progress, alert_id: i64) {
        if p.alert_id != alert_id {
            return;
        }
        self.console_counts = Some(p.counts);
        if self.console_done.is_none() && p.counts.confirmed() >= self.inside as i64 {
            self.console_done = Some(p.at);
        }
    }
}

/// Collects errors: how many, and the first few.
#[derive(Default)]
struct Errors {
    n: usize,
    first: Vec<String>,
}

impl Errors {
    fn add(&mut self, e: String) {
        self.n += 1;
        if self.first.len() < 8 {
            eprintln!("  error: {e}");
            self.first.push(e);
        }
    }
}

pub async fn broadcast(o: BroadcastOpts) -> anyhow::Result<BroadcastReport> {
    if o.inside == 0 || o.inside > o.devices {
        bail!("--inside must be between 1 and --devices ({})", o.devices);
    }
    if o.offline > o.fixture.offline.len() {
        bail!(
            "--offline {} but the users file has {} offline staff (run setup with --offline)",
            o.offline,
            o.fixture.offline.len()
        );
    }
    let adviser = o
        .fixture
        .adviser
        .clone()
        .context("the users file has no adviser: run `vigil-load setup` again")?;
    let nofile = raise_nofile(o.devices.max(o.inside) as u64 + 1024)?;
    let sources = o.sources.clamp(1, 124);
    let source_text = format!("127.0.0.2–127.0.0.{} ({sources} addresses)", 1 + sources);
    if nofile < o.devices as u64 + 256 {
        eprintln!(
            "warning: the open-file limit {nofile} is below the {} sockets asked for",
            o.devices
        );
    }
    let zone = Zone::for_time(OffsetDateTime::now_utc().unix_timestamp());
    let run_id = format!(
        "{}-{}",
        std::process::id(),
        OffsetDateTime::now_utc().unix_timestamp()
    );
    eprintln!(
        "broadcast: {} devices ({} inside the polygon), {} offline recipients, {} alerts; polygon at {:.2}° N {:.2}° E; \
         sockets from {source_text}; open-file limit {nofile}",
        o.devices, o.inside, o.offline, o.rounds, zone.lat0, zone.lon0
    );
    let tokens = get_tokens(
        &o.target,
        &o.fixture.users,
        o.devices,
        o.tokens_file.as_deref(),
    )
    .await?;
    if tokens.len() < o.devices {
        bail!(
            "broadcast needs a distinct staff user per device: {} tokens for {} devices",
            tokens.len(),
            o.devices
        );
    }
    let http = reqwest::Client::new();
    let adviser_token = login(&http, &o.target, &adviser.email, &adviser.password)
        .await
        .context("logging the adviser in")?;
    let mut errors = Errors::default();

    // Connect every device, then the console.
    let started = Instant::now();
    let limit = Arc::new(Semaphore::new(o.concurrency.max(1)));
    let opened = Arc::new(AtomicUsize::new(0));
    let progress = {
        let (opened, probe, n) = (opened.clone(), o.probe, o.devices);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.tick().await;
            loop {
                tick.tick().await;
                eprintln!(
                    "  [{:>5.1}s] devices connected {}/{n} | server RSS {}",
                    started.elapsed().as_secs_f64(),
                    opened.load(Ordering::Relaxed),
                    mib(probe.sample().rss_kib)
                );
            }
        })
    };
    let mut opening = Vec::with_capacity(o.devices);
    for (i, token) in tokens.into_iter().enumerate().take(o.devices) {
        let permit = limit.clone().acquire_owned().await?;
        let target = match o.spread.len() {
            0 => o.target.clone(),
            n => o.spread[i % n].clone(),
        };
        let opened = opened.clone();
        opening.push(tokio::spawn(async move {
            let _permit = permit;
            let r = open_session(&target, source_addr(i, sources), &token).await;
            if r.is_ok() {
                opened.fetch_add(1, Ordering::Relaxed);
            }
            r
        }));
    }
    let mut sockets = Vec::with_capacity(o.devices);
    let mut connect_errors = 0;
    for t in opening {
        match t.await? {
            Ok(ws) => sockets.push(ws),
            Err(e) => {
                connect_errors += 1;
                errors.add(format!("a device could not connect: {e:#}"));
            }
        }
    }
    progress.abort();
    let connect_secs = started.elapsed().as_secs_f64();
    let connected = sockets.len();
    let inside = o.inside.min(connected);
    eprintln!(
        "{connected}/{} devices connected in {connect_secs:.1} s; {inside} of them inside",
        o.devices
    );
    let console_ws = open_session(&o.target, source_addr(o.devices, sources), &adviser_token)
        .await
        .context("the adviser's console")?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let (progress_tx, progress_rx) = mpsc::unbounded_channel();
    let console_task = tokio::spawn(console(console_ws, progress_tx, stop_rx.clone()));

    // Positions: inside or outside over each socket, then the offline trackers.
    let started = Instant::now();
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let mut devices = Vec::with_capacity(connected);
    for (i, ws) in sockets.into_iter().enumerate() {
        let at = if i < inside {
            zone.inside(i)
        } else {
            zone.outside(i)
        };
        devices.push(tokio::spawn(device(
            i,
            ws,
            at,
            events_tx.clone(),
            stop_rx.clone(),
            i == 0,
        )));
    }
    drop(events_tx);
    let mut positioned = 0;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while positioned < connected {
        tokio::select! {
            e = events.recv() => match e {
                Some(Event { seen: Seen::PositionAcked, .. }) => positioned += 1,
                Some(Event { device, seen: Seen::Error(t) }) => errors.add(format!("device {device}: {t}")),
                Some(Event { device, seen: Seen::Lost }) => errors.add(format!("device {device} lost its connection")),
                Some(_) => {}
                None => break,
            },
            _ = tick.tick() => eprintln!("  [{:>5.1}s] positions acked {positioned}/{connected}", started.elapsed().as_secs_f64()),
            () = tokio::time::sleep_until(deadline) => {
                errors.add(format!("only {positioned}/{connected} positions acknowledged within 120 s"));
                break;
            }
        }
    }
    let positions_secs = started.elapsed().as_secs_f64();
    eprintln!("{positioned} device positions acknowledged in {positions_secs:.1} s");
    let started = Instant::now();
    let offline_refused = crate::offline::report_positions(
        &o.target,
        &o.fixture.offline[..o.offline],
        |i| zone.inside(1_000_000 + i),
        64,
    )
    .await?;
    let offline_reports_secs = started.elapsed().as_secs_f64();
    if offline_refused > 0 {
        errors.add(format!(
            "{offline_refused} offline tracker reports were refused"
        ));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;

    // The alerts.
    let expected = inside + o.offline;
    let connected_sample = o.probe.sample();
    let mut session = Session {
        o: &o,
        url: format!("{}/api/v1/alerts", o.target.base),
        http,
        adviser_token,
        zone,
        inside,
        expected,
        events,
        progress: progress_rx,
        client: ServerProbe {
            pid: Some(std::process::id()),
        },
        errors,
        frame: None,
        payload_bytes: 0,
        delivery_samples: Vec::new(),
        post_samples: Vec::new(),
        preview_samples: Vec::new(),
    };
    let mut rounds = Vec::with_capacity(o.rounds);
    for r in 1..=o.rounds {
        let report = alert_round(&mut session, r).await;
        rounds.push(report);
        if r < o.rounds {
            tokio::time::sleep(o.pause).await;
        }
    }

    let Session {
        mut errors,
        frame,
        payload_bytes,
        delivery_samples: mut all_samples,
        mut post_samples,
        mut preview_samples,
        ..
    } = session;

    // Hang up every device and the console.
    let server_rss_end_kib = o.probe.sample().rss_kib;
    let client_rss_kib = crate::stats::rss_kib(std::process::id());
    let _ = stop_tx.send(true);
    for d in devices {
        let _ = d.await;
    }
    match console_task.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => errors.add(format!("console: {e:#}")),
        Err(e) => errors.add(format!("console task: {e}")),
    }

    // The peer: the same fan-out (K subscribers, one QoS 1 publish of the same size) through
    // Mosquitto, after Vigil's sockets are closed (one process holds 20,000 files at most).
    let mqtt = match o.peer_mqtt {
        Some(broker) => {
            let payload = frame
                .clone()
                .map(String::into_bytes)
                .unwrap_or_else(|| vec![b'x'; payload_bytes.max(1)]);
            let report = crate::mqtt::run(MqttOpts {
                broker,
                subscribers: inside,
                rounds: o.rounds,
                payload,
                sources,
                first_source: sources,
                concurrency: 64,
                pause: Duration::from_secs(1),
                round_timeout: o.round_timeout,
                run_id: run_id.clone(),
                broker_probe: ServerProbe { pid: o.peer_pid },
            })
            .await?;
            for e in &report.first_errors {
                errors.add(format!("mqtt: {e}"));
            }
            Some(report)
        }
        None => None,
    };

    let aggregate = Aggregate {
        post_ms: summarize(&mut post_samples)
            .map(LatencyMs::from)
            .unwrap_or_default(),
        preview_ms: summarize(&mut preview_samples)
            .map(LatencyMs::from)
            .unwrap_or_default(),
        delivery_ms: summarize(&mut all_samples)
            .map(LatencyMs::from)
            .unwrap_or_default(),
        all_received_ms_max: max_all(rounds.iter().map(|r| r.all_received_ms)),
        all_acked_ms_max: max_all(rounds.iter().map(|r| r.all_acked_ms)),
        console_all_delivered_ms_max: max_all(rounds.iter().map(|r| r.console_all_delivered_ms)),
        reached: rounds.iter().map(|r| r.reached).sum(),
        expected: inside * rounds.len(),
        wrong_deliveries: rounds.iter().map(|r| r.wrong_deliveries).sum(),
        errors: rounds.iter().map(|r| r.errors).sum(),
    };
    let target = if o.spread.is_empty() {
        o.target.base.clone()
    } else {
        let nodes: Vec<&str> = o.spread.iter().map(|t| t.base.as_str()).collect();
        format!(
            "{} (devices over {} nodes: {})",
            o.target.base,
            nodes.len(),
            nodes.join(", ")
        )
    };
    let report = BroadcastReport {
        scenario: "broadcast",
        target,
        devices_requested: o.devices,
        devices_connected: connected,
        inside_connected: inside,
        outside_connected: connected - inside,
        offline_recipients: o.offline,
        expected_recipients: expected,
        polygon: zone.ring(),
        fresh_within_secs: o.fresh_within_secs,
        source_addresses: source_text,
        nofile_limit: nofile,
        connect_secs,
        connect_errors,
        positions_secs,
        offline_reports_secs,
        offline_reports_refused: offline_refused,
        payload_bytes,
        aggregate,
        rounds,
        errors: errors.n,
        first_errors: errors.first,
        server_pid: o.probe.pid,
        server_rss_connected_kib: connected_sample.rss_kib,
        server_rss_end_kib,
        client_rss_kib,
        mqtt,
    };
    print_markdown(&report);
    if let Some(path) = &o.json {
        write_json(path, &report)?;
    }
    Ok(report)
}

/// What every alert of a run shares.
struct Session<'a> {
    o: &'a BroadcastOpts,
    http: reqwest::Client,
    url: String,
    adviser_token: String,
    zone: Zone,
    /// K_connected.
    inside: usize,
    /// K_total.
    expected: usize,
    events: mpsc::UnboundedReceiver<Event>,
    progress: mpsc::UnboundedReceiver<Progress>,
    client: ServerProbe,
    errors: Errors,
    /// The alert's frame as device 0 received it (the Mosquitto peer publishes its size).
    frame: Option<String>,
    payload_bytes: usize,
    delivery_samples: Vec<Duration>,
    post_samples: Vec<Duration>,
    preview_samples: Vec<Duration>,
}

/// Sends alert `r` and follows it until every inside device has it and has had its receipt
/// acknowledged, and the console counts them all (or the round times out).
async fn alert_round(s: &mut Session<'_>, r: usize) -> RoundReport {
    let inside = s.inside;
    let mut round = Round::new(inside);
    let before = s.o.probe.sample();
    let client_before = s.client.sample();
    let body = alert_body(&s.zone, s.o.fresh_within_secs, r);
    let (preview_total, preview_ms) = match preview(s, &body["target"]).await {
        Ok((total, took)) => {
            s.preview_samples.push(took);
            if total != s.expected as i64 {
                s.errors.add(format!(
                    "round {r}: the preview counts {total} recipients, expected {}",
                    s.expected
                ));
            }
            (Some(total), Some(ms(took)))
        }
        Err(e) => {
            s.errors.add(format!("round {r}: preview: {e:#}"));
            (None, None)
        }
    };
    let t0 = Instant::now();
    let mut post = {
        let (http, url, token) = (s.http.clone(), s.url.clone(), s.adviser_token.clone());
        tokio::spawn(async move {
            let resp = http
                .post(&url)
                .bearer_auth(&token)
                .json(&body)
                .send()
                .await?;
            let took = t0.elapsed();
            let status = resp.status();
            let text = resp.text().await.unwrap_or_default();
            anyhow::Ok((status, text, took))
        })
    };
    let mut posted = false;
    let mut alert: Option<i64> = None;
    let mut recipient_count = None;
    let mut post_ms = None;
    let mut early: VecDeque<Event> = VecDeque::new();
    let mut early_progress: Vec<Progress> = Vec::new();
    let mut peak_rss = before.rss_kib;
    let deadline = tokio::time::Instant::from(t0 + s.o.round_timeout);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    let mut timed_out = false;
    loop {
        if (alert.is_some() && round.complete()) || (posted && alert.is_none()) {
            break;
        }
        tokio::select! {
            res = &mut post, if !posted => {
                posted = true;
                match res {
                    Ok(Ok((status, text, took))) if status.as_u16() == 201 => {
                        let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
                        alert = v["id"].as_i64();
                        recipient_count = v["recipient_count"].as_i64();
                        post_ms = Some(ms(took));
                        s.post_samples.push(took);
                        if alert.is_none() {
                            round.errors += 1;
                            s.errors.add(format!("round {r}: a 201 without an id: {text}"));
                        }
                        if recipient_count != Some(s.expected as i64) {
                            round.errors += 1;
                            s.errors.add(format!("round {r}: the alert reached {recipient_count:?} people, expected {} (K {} + M {})", s.expected, s.inside, s.o.offline));
                        }
                        if let Some(id) = alert {
                            while let Some(e) = early.pop_front() {
                                apply(&mut round, e, id, r, &mut s.errors, &mut s.frame, &mut s.payload_bytes);
                            }
                            for p in early_progress.drain(..) {
                                round.progress(&p, id);
                            }
                        }
                    }
                    Ok(Ok((status, text, _))) => {
                        round.errors += 1;
                        s.errors.add(format!("round {r}: POST /alerts answered {status}: {text}"));
                    }
                    Ok(Err(e)) => { round.errors += 1; s.errors.add(format!("round {r}: POST /alerts: {e:#}")); }
                    Err(e) => { round.errors += 1; s.errors.add(format!("round {r}: POST task: {e}")); }
                }
            }
            e = s.events.recv() => match (e, alert) {
                (Some(e), Some(id)) => apply(&mut round, e, id, r, &mut s.errors, &mut s.frame, &mut s.payload_bytes),
                (Some(e), None) => early.push_back(e),
                (None, _) => break,
            },
            p = s.progress.recv() => match (p, alert) {
                (Some(p), Some(id)) => round.progress(&p, id),
                (Some(p), None) => early_progress.push(p),
                (None, _) => {
                    round.errors += 1;
                    s.errors.add("the console stopped".into());
                    break;
                }
            },
            _ = tick.tick() => {
                let now = s.o.probe.sample();
                peak_rss = peak_rss.max(now.rss_kib);
                eprintln!(
                    "  [{:>5.1}s] alert {r}/{}: {}; received {}/{inside}, receipts acked {}, console confirmed {}, wrong {}, errors {} | server RSS {}, CPU {}",
                    t0.elapsed().as_secs_f64(), s.o.rounds,
                    post_ms.map_or_else(|| "POST pending".to_string(), |m| format!("201 after {m:.0} ms")),
                    round.n_received, round.n_acked,
                    round.console_counts.map_or(0, |c| c.confirmed()),
                    round.wrong, s.errors.n, mib(now.rss_kib), pct(cpu_percent(&before, &now)));
            }
            () = tokio::time::sleep_until(deadline) => { timed_out = true; break; }
        }
    }
    let after = s.o.probe.sample();
    let client_after = s.client.sample();
    peak_rss = peak_rss.max(after.rss_kib);
    let window_secs = t0.elapsed().as_secs_f64();
    // Late or stray copies (e.g. on devices outside) still count against this round.
    if let Some(id) = alert {
        let settle = tokio::time::Instant::now() + Duration::from_millis(300);
        while let Ok(Some(e)) = tokio::time::timeout_at(settle, s.events.recv()).await {
            apply(
                &mut round,
                e,
                id,
                r,
                &mut s.errors,
                &mut s.frame,
                &mut s.payload_bytes,
            );
        }
    }
    let missing = s.inside - round.n_received;
    if missing > 0 {
        s.errors.add(format!(
            "round {r}: {missing} devices inside never received the alert{}",
            if timed_out { " (timed out)" } else { "" }
        ));
    }
    if round.n_acked < round.n_received {
        s.errors.add(format!(
            "round {r}: {} receipts were not acknowledged",
            round.n_received - round.n_acked
        ));
    }
    if alert.is_some() && round.console_done.is_none() {
        s.errors.add(format!(
            "round {r}: the console never counted all {inside} confirmed (last: {:?})",
            round.console_counts
        ));
    }
    let mut samples: Vec<Duration> = round.received.iter().flatten().map(|at| *at - t0).collect();
    s.delivery_samples.extend_from_slice(&samples);
    let summary = summarize(&mut samples);
    let last_ack = round.acked.iter().flatten().max().map(|at| ms(*at - t0));
    let report = RoundReport {
        round: r,
        alert_id: alert,
        recipient_count,
        preview_total,
        preview_ms,
        post_ms,
        reached: round.n_received,
        missing,
        wrong_deliveries: round.wrong,
        duplicates: round.duplicates,
        delivery_ms: summary.map(LatencyMs::from).unwrap_or_default(),
        all_received_ms: (missing == 0).then(|| summary.map(|x| ms(x.max))).flatten(),
        receipts_acked: round.n_acked,
        all_acked_ms: (round.n_acked == s.inside).then_some(last_ack).flatten(),
        console_all_delivered_ms: round.console_done.map(|at| ms(at - t0)),
        console_counts: round.console_counts,
        errors: round.errors
            + round.wrong
            + round.duplicates
            + missing
            + (round.n_received - round.n_acked.min(round.n_received))
            + usize::from(alert.is_some() && round.console_done.is_none()),
        server_rss_before_kib: before.rss_kib,
        server_rss_peak_kib: peak_rss,
        server_cpu_percent: cpu_percent(&before, &after),
        server_cpu_secs: before.cpu_secs.zip(after.cpu_secs).map(|(a, b)| b - a),
        client_cpu_percent: cpu_percent(&client_before, &client_after),
        window_secs,
    };
    eprintln!(
        "alert {r}/{}: 201 after {} for {} recipients; {}/{inside} devices reached, p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms; \
         all receipts acked after {}; console after {}; {} errors",
        s.o.rounds,
        opt_ms(report.post_ms),
        recipient_count.unwrap_or(0),
        report.reached,
        report.delivery_ms.p50,
        report.delivery_ms.p99,
        report.delivery_ms.max,
        opt_ms(report.all_acked_ms),
        opt_ms(report.console_all_delivered_ms),
        report.errors
    );
    report
}

/// `POST /alerts/preview` of `target`: who it reaches and how long that took.
async fn preview(s: &Session<'_>, target: &serde_json::Value) -> anyhow::Result<(i64, Duration)> {
    let started = Instant::now();
    let resp = s
        .http
        .post(format!("{}/preview", s.url))
        .bearer_auth(&s.adviser_token)
        .json(target)
        .send()
        .await?;
    let took = started.elapsed();
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    if !status.is_success() {
        bail!("{status}: {text}");
    }
    let v: serde_json::Value = serde_json::from_str(&text)?;
    Ok((
        v["total"].as_i64().context("a preview without total")?,
        took,
    ))
}

/// Counts one device event against the round of alert `id`.
fn apply(
    round: &mut Round,
    e: Event,
    id: i64,
    r: usize,
    errors: &mut Errors,
    frame: &mut Option<String>,
    payload_bytes: &mut usize,
) {
    match e.seen {
        Seen::Alert {
            alert_id,
            at,
            bytes,
            frame: f,
        } if alert_id == id => {
            *payload_bytes = bytes;
            if frame.is_none() {
                *frame = f;
            }
            if e.device >= round.inside {
                round.wrong += 1;
                errors.add(format!(
                    "round {r}: device {} outside the polygon received alert {id}",
                    e.device
                ));
                return;
            }
            match &mut round.received[e.device] {
                Some(_) => {
                    round.duplicates += 1;
                    errors.add(format!(
                        "round {r}: device {} received alert {id} twice",
                        e.device
                    ));
                }
                slot => {
                    *slot = Some(at);
                    round.n_received += 1;
                }
            }
        }
        Seen::ReceiptAcked { alert_id, at } if alert_id == id => {
            if let Some(slot @ None) = round.acked.get_mut(e.device) {
                *slot = Some(at);
                round.n_acked += 1;
            }
        }
        Seen::Alert { alert_id, .. } | Seen::ReceiptAcked { alert_id, .. } => {
            round.errors += 1;
            errors.add(format!(
                "round {r}: device {} saw alert {alert_id} during alert {id}",
                e.device
            ));
        }
        Seen::Error(t) => {
            round.errors += 1;
            errors.add(format!("round {r}: device {}: {t}", e.device));
        }
        Seen::Lost => {
            round.errors += 1;
            errors.add(format!(
                "round {r}: device {} lost its connection",
                e.device
            ));
        }
        Seen::PositionAcked => {}
    }
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e5).round() / 100.0
}

fn opt_ms(m: Option<f64>) -> String {
    m.map_or_else(|| "—".into(), |m| format!("{m:.0} ms"))
}

/// The largest value, or `None` if any is missing (not every round completed).
fn max_all(mut values: impl Iterator<Item = Option<f64>>) -> Option<f64> {
    values.try_fold(0.0_f64, |m, v| v.map(|v| m.max(v)))
}

fn lat(l: LatencyMs) -> String {
    format!(
        "p50 {:.1} / p95 {:.1} / p99 {:.1} / max {:.1} ms",
        l.p50, l.p95, l.p99, l.max
    )
}

fn verdict(ok: bool) -> &'static str {
    if ok { "✔" } else { "✘" }
}

fn print_markdown(r: &BroadcastReport) {
    println!(
        "## broadcast: {} alerts to a polygon holding K_connected = {} of N = {} connected devices, + M = {} offline → K_total = {} recipients\n",
        r.rounds.len(),
        r.inside_connected,
        r.devices_connected,
        r.offline_recipients,
        r.expected_recipients
    );
    println!("| measure | value |\n| --- | --- |");
    println!(
        "| devices connected (N) / inside (K_connected) / outside | {} / {} / {} ({} connect errors, {:.1} s to connect) |",
        r.devices_connected,
        r.inside_connected,
        r.outside_connected,
        r.connect_errors,
        r.connect_secs
    );
    println!(
        "| recipients without a connected phone (M; copies stored for resume and fallback) | {} (tracker reports {:.1} s, {} refused) |",
        r.offline_recipients, r.offline_reports_secs, r.offline_reports_refused
    );
    println!(
        "| K_total = recipients of each alert (ledger rows, stored copies) | {} |",
        r.expected_recipients
    );
    println!(
        "| client source addresses / open-file limit | {} / {} |",
        r.source_addresses, r.nofile_limit
    );
    println!("| alert frame on the socket | {} bytes |", r.payload_bytes);
    let a = &r.aggregate;
    println!(
        "| **POST → 201** (alert + ledger + {} copies committed) over {} alerts | **{}** |",
        r.expected_recipients,
        r.rounds.len(),
        lat(a.post_ms)
    );
    println!(
        "| of which targeting (`POST /alerts/preview` of the same target, just before) | {} |",
        lat(a.preview_ms)
    );
    println!(
        "| **delivery latency** (POST start → device receipt), {} receipts | **{}** |",
        a.reached,
        lat(a.delivery_ms)
    );
    println!(
        "| devices reached / expected / wrong deliveries / errors | {} / {} / {} / {} |",
        a.reached, a.expected, a.wrong_deliveries, r.errors
    );
    println!(
        "| slowest alert: all K received / all receipts acked / console shows all K | {} / {} / {} |",
        opt_ms(a.all_received_ms_max),
        opt_ms(a.all_acked_ms_max),
        opt_ms(a.console_all_delivered_ms_max)
    );
    println!(
        "| server RSS with N connected / at the end | {} / {} |",
        mib(r.server_rss_connected_kib),
        mib(r.server_rss_end_kib)
    );
    println!("| load generator RSS | {} |", mib(r.client_rss_kib));
    if let Some(m) = &r.mqtt {
        println!(
            "| **Mosquitto peer** ({}, QoS 1, one topic, {} subscribers, {} bytes, {} publishes) | **{}** ({} errors; retained message left: {}) |",
            m.broker,
            m.subscribers_connected,
            m.payload_bytes,
            m.rounds.len(),
            lat(m.delivery_ms),
            m.errors,
            m.retained_left
        );
    }
    println!();
    println!(
        "| alert | id | recipients | preview | POST→201 | reached / wrong / dup | delivery p50 / p95 / p99 / max | all received | all acked | console all | server CPU | server RSS before → peak | load-gen CPU | errors |"
    );
    println!(
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
    );
    for x in &r.rounds {
        let l = x.delivery_ms;
        println!(
            "| {} | {} | {} | {} | {} | {} / {} / {} | {:.0} / {:.0} / {:.0} / {:.0} ms | {} | {} | {} | {} | {} → {} | {} | {} |",
            x.round,
            x.alert_id.map_or_else(|| "—".into(), |i| i.to_string()),
            x.recipient_count.unwrap_or(0),
            opt_ms(x.preview_ms),
            opt_ms(x.post_ms),
            x.reached,
            x.wrong_deliveries,
            x.duplicates,
            l.p50,
            l.p95,
            l.p99,
            l.max,
            opt_ms(x.all_received_ms),
            opt_ms(x.all_acked_ms),
            opt_ms(x.console_all_delivered_ms),
            pct(x.server_cpu_percent),
            mib(x.server_rss_before_kib),
            mib(x.server_rss_peak_kib),
            pct(x.client_cpu_percent),
            x.errors
        );
    }
    if let Some(m) = &r.mqtt {
        println!(
            "\n| Mosquitto publish | received / missing / dup | delivery p50 / p95 / p99 / max | all received | PUBACK | broker CPU | load-gen CPU |"
        );
        println!("| --- | --- | --- | --- | --- | --- | --- |");
        for x in &m.rounds {
            let l = x.delivery_ms;
            println!(
                "| {} | {} / {} / {} | {:.1} / {:.1} / {:.1} / {:.1} ms | {} | {} | {} | {} |",
                x.round,
                x.received,
                x.missing,
                x.duplicates,
                l.p50,
                l.p95,
                l.p99,
                l.max,
                opt_ms(x.all_received_ms),
                opt_ms(x.puback_ms),
                pct(x.broker_cpu_percent),
                pct(x.client_cpu_percent)
            );
        }
    }
    println!("\nGoals (issues #5, #8):");
    println!(
        "- POST → 201 under 300 ms for {} recipients: worst {} {}",
        r.expected_recipients,
        opt_ms(Some(a.post_ms.max)),
        verdict(a.post_ms.max > 0.0 && a.post_ms.max < 300.0)
    );
    println!(
        "- delivery p99 under 1 s to {} connected devices: {} {}",
        r.inside_connected,
        opt_ms(Some(a.delivery_ms.p99)),
        verdict(a.reached > 0 && a.delivery_ms.p99 < 1000.0)
    );
    if let Some(m) = &r.mqtt {
        println!(
            "- no slower than Mosquitto's fan-out to the same {} subscribers: p99 {} vs {} {}",
            m.subscribers_connected,
            opt_ms(Some(a.delivery_ms.p99)),
            opt_ms(Some(m.delivery_ms.p99)),
            verdict(a.reached > 0 && a.delivery_ms.p99 <= m.delivery_ms.p99)
        );
    }
    println!(
        "- exactly the K_connected inside reached, none outside: {}",
        verdict(a.reached == a.expected && a.wrong_deliveries == 0)
    );
    for e in &r.first_errors {
        println!("- error: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_protocol::{ErrorCode, StreamMessage, stream::write_message};

    #[test]
    fn a_device_reads_the_protocols_messages_as_the_types_write_them() {
        let read = |text: &str| serde_json::from_str::<Incoming>(text).expect("readable");
        let payload = serde_json::json!({"alert_id": 7, "severity": "severe", "translations": {}});
        let typed = ServerMessage::Message(StreamMessage {
            seq: 12,
            kind: MessageKind::Alert,
            at: Timestamp(1_795_354_802_118),
            payload: payload.clone(),
        })
        .to_json();
        // The server splices stored payloads in with the protocol's fast writer.
        let spliced = write_message(
            12,
            MessageKind::Alert.as_str(),
            Timestamp(1_795_354_802_118),
            &payload.to_string(),
        );
        for text in [typed, spliced] {
            let m = read(&text);
            assert_eq!(
                (m.ty.as_str(), m.kind),
                ("message", Some(MessageKind::Alert))
            );
            assert_eq!(m.payload.and_then(|p| p.alert_id), Some(7));
        }
        let ack = |reference: String| ServerMessage::Ack {
            reference: Some(reference),
            accepted: None,
            duplicates: None,
        };
        let m = read(&ack(POSITION_REF.into()).to_json());
        assert_eq!(
            (m.ty.as_str(), m.reference.as_deref()),
            ("ack", Some(POSITION_REF))
        );
        let m = read(&ack(receipt_ref(7)).to_json());
        assert_eq!(m.reference.as_deref().and_then(receipt_of), Some(7));
        let error = ServerMessage::error(ErrorCode::NotFound, "no such alert", None).to_json();
        assert_eq!(read(&error).ty, "error");
    }

    #[test]
    fn points_fall_inside_and_outside_the_polygon() {
        let z = Zone::for_time(1_790_000_123);
        let ring = z.ring();
        assert_eq!(ring.first(), ring.last());
        for i in 0..2000 {
            let (lat, lon) = z.inside(i);
            assert!(z.contains(lat, lon), "inside {i}: {lat} {lon}");
            let (lat, lon) = z.outside(i);
            assert!(!z.contains(lat, lon), "outside {i}: {lat} {lon}");
            // Still within this run's cell, so never inside another run's polygon.
            assert!(lon < z.lon0 + CELL && lat < z.lat0 + CELL);
        }
        // Consecutive runs use different cells; every cell stays on the map.
        assert_ne!(Zone::for_time(5), Zone::for_time(6));
        let far = Zone::for_time(9_999);
        assert!(far.lat0 < 11.0 && far.lon0 < 35.0);
    }

    #[test]
    fn rounds_complete_only_with_every_copy_receipt_and_count() {
        let mut r = Round::new(2);
        let (mut errs, mut frame, mut bytes) = (Errors::default(), None, 0);
        let now = Instant::now();
        let alert = |device, alert_id| Event {
            device,
            seen: Seen::Alert {
                alert_id,
                at: now,
                bytes: 10,
                frame: None,
            },
        };
        apply(&mut r, alert(0, 7), 7, 1, &mut errs, &mut frame, &mut bytes);
        apply(&mut r, alert(0, 7), 7, 1, &mut errs, &mut frame, &mut bytes);
        apply(&mut r, alert(2, 7), 7, 1, &mut errs, &mut frame, &mut bytes);
        apply(&mut r, alert(1, 6), 7, 1, &mut errs, &mut frame, &mut bytes);
        assert_eq!(
            (r.n_received, r.duplicates, r.wrong, r.errors),
            (1, 1, 1, 1)
        );
        apply(&mut r, alert(1, 7), 7, 1, &mut errs, &mut frame, &mut bytes);
        for device in [0, 1] {
            let e = Event {
                device,
                seen: Seen::ReceiptAcked {
                    alert_id: 7,
                    at: now,
                },
            };
            apply(&mut r, e, 7, 1, &mut errs, &mut frame, &mut bytes);
        }
        assert!(!r.complete(), "the console has not counted them yet");
        let counts = Counts {
            delivered: 1,
            read: 1,
            ..Counts::default()
        };
        r.progress(
            &Progress {
                alert_id: 7,
                counts,
                at: now,
            },
            7,
        );
        assert!(r.complete());
        assert_eq!(bytes, 10);
        assert_eq!(max_all([Some(1.0), Some(3.0)].into_iter()), Some(3.0));
        assert_eq!(max_all([Some(1.0), None].into_iter()), None);
    }
}
