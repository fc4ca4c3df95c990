//! `positions`: D devices each send a fix every T seconds for S seconds, walking east across a
//! row of square areas so that geofence transitions happen; acks/s, ack latency, errors, and
//! the server's memory and CPU.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use tokio::sync::Semaphore;
use tokio::time::MissedTickBehavior;
use tokio_tungstenite::tungstenite::Message;
use vigil_protocol::{Fix, ServerMessage, Timestamp};

use crate::client::{
    Fixture, Grid, Target, Ws, open_session, raise_nofile, source_addr, tokens as get_tokens,
};
use crate::stats::{
    LatencyMs, ServerProbe, ServerUse, cpu_percent, mib, pct, summarize, write_json,
};

/// Options of `positions`.
#[derive(Debug)]
pub struct PositionsOpts {
    pub target: Target,
    /// Nodes of a cluster the devices connect to, round robin (empty: all to `target`).
    pub spread: Vec<Target>,
    pub fixture: Fixture,
    pub devices: usize,
    pub tokens_file: Option<std::path::PathBuf>,
    pub period: Duration,
    pub duration: Duration,
    pub fixes_per_message: usize,
    pub outside: bool,
    pub sources: usize,
    pub probe: ServerProbe,
    pub json: Option<std::path::PathBuf>,
}

/// What the devices count as they go (shared by every device task).
#[derive(Debug, Default)]
pub struct Counters {
    pub sent_fixes: AtomicU64,
    pub acked_fixes: AtomicU64,
    pub acked_in_window: AtomicU64,
    pub duplicates: AtomicU64,
    pub errors: AtomicU64,
    pub messages: AtomicU64,
    pub dropped: AtomicU64,
}

/// How connected devices stream their fixes (`positions`, and `sos-chat`'s background load).
#[derive(Debug, Clone, Copy)]
pub struct Walk {
    pub grid: Grid,
    pub period: Duration,
    pub fixes_per_message: usize,
    pub outside: bool,
}

/// Opens one authenticated socket per device, 64 handshakes at a time, device `i` to
/// `targets[i % targets.len()]` with token `i % tokens.len()` from source address
/// `source_addr(i, sources)`; devices that cannot connect are reported and left out.
pub async fn connect_devices(
    targets: &[Target],
    tokens: Arc<Vec<String>>,
    devices: usize,
    sources: usize,
) -> anyhow::Result<Vec<Ws>> {
    let limit = Arc::new(Semaphore::new(64));
    let mut opening = Vec::with_capacity(devices);
    for i in 0..devices {
        let permit = limit.clone().acquire_owned().await?;
        let (target, tokens) = (targets[i % targets.len()].clone(), tokens.clone());
        opening.push(tokio::spawn(async move {
            let _permit = permit;
            open_session(&target, source_addr(i, sources), &tokens[i % tokens.len()]).await
        }));
    }
    let mut sockets = Vec::with_capacity(devices);
    for t in opening {
        match t.await? {
            Ok(ws) => sockets.push(ws),
            Err(e) => eprintln!("  a device could not connect: {e:#}"),
        }
    }
    Ok(sockets)
}

/// Starts one task per socket sending fixes from `start` (first fixes spread evenly over one
/// period) until `until`; each task returns its ack latencies and its unanswered fixes.
pub fn spawn_devices(
    sockets: Vec<Ws>,
    walk: Walk,
    start: Instant,
    until: Instant,
    counters: &Arc<Counters>,
) -> Vec<tokio::task::JoinHandle<(Vec<Duration>, u64)>> {
    let connected = sockets.len();
    let mut devices = Vec::with_capacity(connected);
    for (i, ws) in sockets.into_iter().enumerate() {
        // Spread the devices' first fixes evenly over one period.
        let phase = walk.period.mul_f64(i as f64 / connected.max(1) as f64);
        let d = Device {
            index: i,
            devices: connected,
            grid: walk.grid,
            ws,
            first: start + phase,
            period: walk.period,
            until,
            fixes_per_message: walk.fixes_per_message.max(1),
            outside: walk.outside,
            counters: counters.clone(),
        };
        devices.push(tokio::spawn(d.run()));
    }
    devices
}

/// The report of a `positions` run.
#[derive(Debug, Serialize)]
pub struct PositionsReport {
    pub scenario: &'static str,
    pub target: String,
    pub devices: usize,
    pub devices_connected: usize,
    pub distinct_users: usize,
    pub areas: usize,
    pub period_secs: f64,
    pub duration_secs: f64,
    pub fixes_per_message: usize,
    pub walk_outside_areas: bool,
    pub offered_fixes_per_sec: f64,
    pub fixes_sent: u64,
    pub fixes_acked: u64,
    pub fixes_acked_in_window: u64,
    pub acked_fixes_per_sec: f64,
    pub peak_acked_fixes_per_sec: f64,
    pub duplicates: u64,
    pub errors: u64,
    pub connections_lost: u64,
    pub unanswered: u64,
    pub transition_messages: u64,
    pub ack_latency_ms: LatencyMs,
    pub server_pid: Option<u32>,
    pub server_rss_before_kib: Option<u64>,
    pub server_rss_peak_kib: Option<u64>,
    pub server_rss_after_kib: Option<u64>,
    pub server_cpu_percent: Option<f64>,
    pub server_cpu_secs: Option<f64>,
    pub server_cpu_percent_peak: Option<f64>,
    pub client_cpu_percent: Option<f64>,
}

/// Where device `i` is after `step` fixes: walking east across the band, wrapping around.
fn position(grid: &Grid, i: usize, devices: usize, step: u64, outside: bool) -> (f64, f64) {
    let frac = (i as f64 + 0.5) / devices.max(1) as f64;
    let mut lat = grid.lat_min + (grid.lat_max - grid.lat_min) * (0.1 + 0.8 * frac);
    if outside {
        // The same walk a band further north: never inside an area.
        lat += grid.lat_max - grid.lat_min + 0.01;
    }
    // A third of a square per fix: a transition every two or three fixes.
    let stride = grid.side / 3.0;
    let offset = frac * grid.span();
    let lon = grid.west() + (offset + stride * step as f64).rem_euclid(grid.span());
    (lat, lon)
}

struct Device {
    index: usize,
    devices: usize,
    grid: Grid,
    ws: Ws,
    first: Instant,
    period: Duration,
    until: Instant,
    fixes_per_message: usize,
    outside: bool,
    counters: Arc<Counters>,
}

/// The busiest second seen by the progress line.
#[derive(Debug, Default, Clone, Copy)]
struct Peaks {
    rate: f64,
    cpu: Option<f64>,
    rss: Option<u64>,
}

const GRACE: Duration = Duration::from_secs(10);

impl Device {
    /// Sends on schedule until `until`, then waits (at most GRACE) for the last acks.
    async fn run(mut self) -> (Vec<Duration>, u64) {
        let mut tick = tokio::time::interval_at(self.first.into(), self.period);
        tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
        let mut pending: HashMap<u64, (Instant, u64)> = HashMap::new();
        let mut samples = Vec::new();
        let (mut next_ref, mut step, mut last_ms) = (0u64, 0u64, 0i64);
        // One timer for the whole run: a `sleep_until` made inside the select would be
        // registered and cancelled again at every message.
        let stop = tokio::time::sleep_until(tokio::time::Instant::from(self.until + GRACE));
        tokio::pin!(stop);
        loop {
            let sending = Instant::now() < self.until;
            if !sending && pending.is_empty() {
                break;
            }
            tokio::select! {
                _ = tick.tick(), if sending => {
                    let mut fixes = Vec::with_capacity(self.fixes_per_message);
                    for _ in 0..self.fixes_per_message {
                        let (lat, lon) = position(&self.grid, self.index, self.devices, step, self.outside);
                        step += 1;
                        last_ms = Timestamp::now().0.max(last_ms + 1);
                        fixes.push(Fix { lat, lon, accuracy_m: Some(12.0), recorded_at: Timestamp(last_ms) });
                    }
                    next_ref += 1;
                    let n = self.fixes_per_message as u64;
                    pending.insert(next_ref, (Instant::now(), n));
                    if self.ws.send(Message::text(position_text(next_ref, &fixes))).await.is_err() {
                        self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                    self.counters.sent_fixes.fetch_add(n, Ordering::Relaxed);
                }
                frame = self.ws.next() => match frame {
                    Some(Ok(Message::Text(t))) => self.on_text(&t, &mut pending, &mut samples),
                    Some(Ok(_)) => {}
                    _ => {
                        self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                },
                () = &mut stop => break,
            }
        }
        let _ = self.ws.close(None).await;
        let unanswered = pending.values().map(|(_, n)| n).sum();
        (samples, unanswered)
    }

    fn on_text(
        &self,
        text: &str,
        pending: &mut HashMap<u64, (Instant, u64)>,
        samples: &mut Vec<Duration>,
    ) {
        let our_ref = |r: Option<String>| r.and_then(|r| r.parse::<u64>().ok());
        if let Some(ack) = read_ack(text) {
            if let Some((sent, _)) = ack
                .reference
                .and_then(|r| r.parse::<u64>().ok())
                .and_then(|r| pending.remove(&r))
            {
                samples.push(sent.elapsed());
            }
            self.count_ack(ack.accepted, ack.duplicates);
            return;
        }
        let Ok(msg) = serde_json::from_str::<ServerMessage>(text) else {
            return;
        };
        match msg {
            ServerMessage::Ack {
                reference,
                accepted,
                duplicates,
            } => {
                if let Some((sent, _)) = our_ref(reference).and_then(|r| pending.remove(&r)) {
                    samples.push(sent.elapsed());
                }
                self.count_ack(accepted, duplicates);
            }
            ServerMessage::Error { reference, .. } => {
                if let Some(r) = our_ref(reference) {
                    pending.remove(&r);
                }
                if self.counters.errors.fetch_add(1, Ordering::Relaxed) < 3 {
                    eprintln!("  server error: {text}");
                }
            }
            ServerMessage::Message(_) => {
                self.counters.messages.fetch_add(1, Ordering::Relaxed);
            }
            _ => {}
        }
    }

    fn count_ack(&self, accepted: Option<u64>, duplicates: Option<u64>) {
        let c = &self.counters;
        let accepted = accepted.unwrap_or(0);
        c.acked_fixes.fetch_add(accepted, Ordering::Relaxed);
        if Instant::now() <= self.until {
            c.acked_in_window.fetch_add(accepted, Ordering::Relaxed);
        }
        c.duplicates
            .fetch_add(duplicates.unwrap_or(0), Ordering::Relaxed);
    }
}

/// A `position` message as JSON, written directly: the generator shares the machine's cores
/// with the server it measures, so every microsecond it spends per message is taken from the
/// server. Reads as the same `ClientMessage` as `client::text_frame` writes (a test checks).
fn position_text(reference: u64, fixes: &[Fix]) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(48 + 96 * fixes.len());
    let _ = write!(out, r#"{{"type":"position","ref":"{reference}","fixes":["#);
    for (i, f) in fixes.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        // `{:?}` of an f64 is its shortest exact form and always has a decimal point or an
        // exponent, as a JSON number may.
        let _ = write!(out, r#"{{"lat":{:?},"lon":{:?}"#, f.lat, f.lon);
        if let Some(a) = f.accuracy_m {
            let _ = write!(out, r#","accuracy_m":{a:?}"#);
        }
        let _ = write!(out, r#","recorded_at":"{}"}}"#, f.recorded_at.to_rfc3339());
    }
    out.push_str("]}");
    out
}

/// An `ack` as the server writes it (`type` first), read without building a whole
/// `ServerMessage`: serde reads that internally tagged enum through a copy of the whole object.
/// A `ref` with escapes does not read as `&str`; such an ack takes the slow path.
#[derive(Debug, serde::Deserialize)]
struct AckIn<'a> {
    #[serde(rename = "type")]
    _kind: serde::de::IgnoredAny,
    #[serde(rename = "ref", borrow)]
    reference: Option<&'a str>,
    accepted: Option<u64>,
    duplicates: Option<u64>,
}

fn read_ack(text: &str) -> Option<AckIn<'_>> {
    if !text.starts_with(r#"{"type":"ack","#) {
        return None;
    }
    serde_json::from_str(text).ok()
}

pub async fn positions(o: PositionsOpts) -> anyhow::Result<PositionsReport> {
    let nofile = raise_nofile(o.devices as u64 + 1024)?;
    let sources = o.sources.clamp(1, 250);
    eprintln!(
        "positions: {} devices, a message of {} fix(es) every {:?} each for {:?} ({:.0} fixes/s offered), \
         from 127.0.0.2–127.0.0.{} ; open-file limit {nofile}",
        o.devices,
        o.fixes_per_message,
        o.period,
        o.duration,
        o.devices as f64 * o.fixes_per_message as f64 / o.period.as_secs_f64(),
        1 + sources
    );
    let tokens = Arc::new(
        get_tokens(
            &o.target,
            &o.fixture.users,
            o.devices,
            o.tokens_file.as_deref(),
        )
        .await?,
    );

    // Connect every device first.
    let targets = if o.spread.is_empty() {
        std::slice::from_ref(&o.target)
    } else {
        o.spread.as_slice()
    };
    let sockets = connect_devices(targets, tokens.clone(), o.devices, sources).await?;
    let connected = sockets.len();
    eprintln!("{connected}/{} devices connected", o.devices);
    tokio::time::sleep(Duration::from_secs(1)).await;

    let before = o.probe.sample();
    let client = ServerProbe {
        pid: Some(std::process::id()),
    };
    let client_before = client.sample();
    let counters = Arc::new(Counters::default());
    let start = Instant::now() + Duration::from_millis(200);
    let until = start + o.duration;
    let walk = Walk {
        grid: o.fixture.grid,
        period: o.period,
        fixes_per_message: o.fixes_per_message,
        outside: o.outside,
    };
    let devices = spawn_devices(sockets, walk, start, until, &counters);

    // Progress once a second; remembers the peak second.
    let peaks = Arc::new(std::sync::Mutex::new(Peaks::default()));
    let progress = {
        let (c, probe, peaks) = (counters.clone(), o.probe, peaks.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.tick().await;
            let (mut last, mut last_acked) = (probe.sample(), 0u64);
            loop {
                tick.tick().await;
                let s = probe.sample();
                let acked =
                    c.acked_fixes.load(Ordering::Relaxed) + c.duplicates.load(Ordering::Relaxed);
                let dt = s.at.duration_since(last.at).as_secs_f64();
                let rate = (acked - last_acked) as f64 / dt;
                let cpu = cpu_percent(&last, &s);
                if let Ok(mut p) = peaks.lock() {
                    if Instant::now() <= until {
                        p.rate = p.rate.max(rate);
                        p.cpu = match (p.cpu, cpu) {
                            (Some(a), Some(b)) => Some(a.max(b)),
                            (a, b) => a.or(b),
                        };
                    }
                    p.rss = p.rss.max(s.rss_kib);
                }
                let sent = c.sent_fixes.load(Ordering::Relaxed);
                eprintln!(
                    "  [{:>5.1}s] sent {sent}, acked {acked} ({rate:.0}/s), in flight {}, transitions {}, errors {}, lost {} | server RSS {}, CPU {}",
                    start.elapsed().as_secs_f64(),
                    sent.saturating_sub(acked),
                    c.messages.load(Ordering::Relaxed),
                    c.errors.load(Ordering::Relaxed),
                    c.dropped.load(Ordering::Relaxed),
                    mib(s.rss_kib),
                    pct(cpu)
                );
                (last, last_acked) = (s, acked);
            }
        })
    };

    // The server's CPU over the sending window exactly.
    let at_end = {
        let probe = o.probe;
        tokio::spawn(async move {
            tokio::time::sleep_until(until.into()).await;
            (probe.sample(), client.sample())
        })
    };
    let mut samples = Vec::new();
    let mut unanswered = 0;
    for d in devices {
        let (s, u) = d.await?;
        samples.extend(s);
        unanswered += u;
    }
    let (window_end, client_end) = at_end.await?;
    progress.abort();
    let peaks = peaks.lock().map(|p| *p).unwrap_or_default();
    let acked_in_window = counters.acked_in_window.load(Ordering::Relaxed);
    let after = o.probe.sample();
    let c = &counters;
    let secs = o.duration.as_secs_f64();
    let report = PositionsReport {
        scenario: "positions",
        target: o.target.ws_url(),
        devices: o.devices,
        devices_connected: connected,
        distinct_users: tokens.len(),
        areas: o.fixture.area_ids.len(),
        period_secs: o.period.as_secs_f64(),
        duration_secs: secs,
        fixes_per_message: o.fixes_per_message,
        walk_outside_areas: o.outside,
        offered_fixes_per_sec: connected as f64 * o.fixes_per_message as f64
            / o.period.as_secs_f64(),
        fixes_sent: c.sent_fixes.load(Ordering::Relaxed),
        fixes_acked: c.acked_fixes.load(Ordering::Relaxed),
        fixes_acked_in_window: acked_in_window,
        acked_fixes_per_sec: acked_in_window as f64 / secs,
        peak_acked_fixes_per_sec: peaks.rate,
        duplicates: c.duplicates.load(Ordering::Relaxed),
        errors: c.errors.load(Ordering::Relaxed),
        connections_lost: c.dropped.load(Ordering::Relaxed),
        unanswered,
        transition_messages: c.messages.load(Ordering::Relaxed),
        ack_latency_ms: summarize(&mut samples)
            .map(LatencyMs::from)
            .unwrap_or_default(),
        server_pid: o.probe.pid,
        server_rss_before_kib: before.rss_kib,
        server_rss_peak_kib: peaks.rss.max(window_end.rss_kib),
        server_rss_after_kib: after.rss_kib,
        server_cpu_percent: cpu_percent(&before, &window_end),
        server_cpu_secs: before.cpu_secs.zip(window_end.cpu_secs).map(|(a, b)| b - a),
        server_cpu_percent_peak: peaks.cpu,
        client_cpu_percent: cpu_percent(&client_before, &client_end),
    };
    print_markdown(&report);
    if let Some(path) = &o.json {
        write_json(path, &report)?;
    }
    Ok(report)
}

fn print_markdown(r: &PositionsReport) {
    println!(
        "## positions: {} devices × {} fix(es) every {} s for {} s{}\n",
        r.devices,
        r.fixes_per_message,
        r.period_secs,
        r.duration_secs,
        if r.walk_outside_areas {
            ", outside the areas (no transitions)"
        } else {
            ", across the areas"
        }
    );
    println!("| measure | value |\n| --- | --- |");
    println!(
        "| devices connected / distinct users / areas | {} / {} / {} |",
        r.devices_connected, r.distinct_users, r.areas
    );
    println!("| offered | {:.0} fixes/s |", r.offered_fixes_per_sec);
    println!(
        "| **acked (committed) in the window** | **{:.0} fixes/s** ({} of {} sent; peak second {:.0}/s) |",
        r.acked_fixes_per_sec, r.fixes_acked_in_window, r.fixes_sent, r.peak_acked_fixes_per_sec
    );
    let l = r.ack_latency_ms;
    println!(
        "| ack latency | p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms, max {:.2} ms |",
        l.p50, l.p95, l.p99, l.max
    );
    println!(
        "| acked in all / duplicates / errors / unanswered / connections lost | {} / {} / {} / {} / {} |",
        r.fixes_acked, r.duplicates, r.errors, r.unanswered, r.connections_lost
    );
    println!(
        "| geofence transition messages received | {} |",
        r.transition_messages
    );
    ServerUse {
        server_pid: r.server_pid,
        server_rss_before_kib: r.server_rss_before_kib,
        server_rss_peak_kib: r.server_rss_peak_kib,
        server_rss_after_kib: r.server_rss_after_kib,
        server_cpu_percent: r.server_cpu_percent,
        server_cpu_percent_peak: r.server_cpu_percent_peak,
        client_cpu_percent: r.client_cpu_percent,
    }
    .print_rows();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::text_frame;
    use vigil_protocol::ClientMessage;

    #[test]
    fn devices_walk_in_and_out_of_areas() {
        let g = Grid {
            lat_min: 4.80,
            lat_max: 4.84,
            lon_min: 31.50,
            side: 0.02,
            gap: 0.01,
            areas: 4,
        };
        let inside = |lon: f64| {
            (0..g.areas).any(|a| {
                let w = g.lon_min + a as f64 * (g.side + g.gap);
                lon > w && lon < w + g.side
            })
        };
        let walk: Vec<bool> = (0..40)
            .map(|s| inside(position(&g, 3, 10, s, false).1))
            .collect();
        let crossings = walk.windows(2).filter(|w| w[0] != w[1]).count();
        assert!(crossings >= 10, "{crossings} crossings in 40 fixes");
        let (lat, _) = position(&g, 9, 10, 0, false);
        assert!(lat > g.lat_min && lat < g.lat_max);
        let (lat, _) = position(&g, 0, 10, 0, true);
        assert!(lat > g.lat_max);
    }

    #[test]
    fn the_fast_messages_read_as_the_typed_ones() {
        let fixes = [
            Fix {
                lat: 4.81,
                lon: 31.5,
                accuracy_m: Some(12.0),
                recorded_at: Timestamp(1_764_756_000_123),
            },
            Fix {
                lat: -0.000_123_456_789,
                lon: 1e-7,
                accuracy_m: None,
                recorded_at: Timestamp(0),
            },
        ];
        let text = position_text(42, &fixes);
        assert_eq!(
            serde_json::from_str::<ClientMessage>(&text).expect("a position"),
            ClientMessage::Position {
                reference: Some("42".into()),
                fixes: fixes.to_vec()
            }
        );
        let ack = ServerMessage::Ack {
            reference: Some("42".into()),
            accepted: Some(1),
            duplicates: Some(0),
        }
        .to_json();
        let read = read_ack(&ack).expect("the server's ack takes the fast path");
        assert_eq!(
            (read.reference, read.accepted, read.duplicates),
            (Some("42"), Some(1), Some(0))
        );
        assert!(read_ack(r#"{"type":"error","code":"bad_message","detail":"x"}"#).is_none());
    }

    #[test]
    fn a_position_goes_out_as_the_protocol_writes_it() {
        let fix = Fix {
            lat: 4.81,
            lon: 31.5,
            accuracy_m: Some(12.0),
            recorded_at: Timestamp(0),
        };
        let msg = ClientMessage::Position {
            reference: Some("7".into()),
            fixes: vec![fix],
        };
        assert_eq!(
            text_frame(&msg).into_text().expect("text").as_str(),
            r#"{"type":"position","ref":"7","fixes":[{"lat":4.81,"lon":31.5,"accuracy_m":12.0,"recorded_at":"1970-01-01T00:00:00Z"}]}"#
        );
    }
}
