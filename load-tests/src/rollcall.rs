//! `rollcall`: an adviser starts a roll-call of the load organisation, N answers (self, then
//! dependants) arrive spread over a window over HTTP keep-alive connections, and the adviser's
//! console follows the board over its socket: answer latency, answers/s, errors, the board's
//! staleness (each answer's 204 → the first board counted after it), the last answer → the
//! board's final totals, and whether those totals are exactly what was sent.
//!
//! People and tokens come from `setup` and `login` (a token per person, prepared once: logging
//! in is an Argon2 verification on the server). With `setup --dependants K` each person also
//! answers for K dependants, each a row of its own on the board (`GET /me` gives their ids).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message;
use vigil_protocol::{Board, ClientMessage, ServerMessage, Timestamp, Topic};

use crate::client::{
    Fixture, Target, Ws, login, open_session, raise_nofile, source_addr, text_frame,
    tokens as get_tokens,
};
use crate::stats::{LatencyMs, ServerProbe, ServerUse, cpu_percent, mib, pct, publish, summarize};

/// Options of `rollcall`.
#[derive(Debug)]
pub struct RollcallOpts {
    pub target: Target,
    pub fixture: Fixture,
    pub tokens_file: Option<std::path::PathBuf>,
    /// N: answers to send (people first, then their dependants).
    pub answers: usize,
    /// People whose tokens are used (0: as many as N needs, at most every token).
    pub people: usize,
    /// The answers' starts are spread evenly over this window.
    pub window: Duration,
    /// Share of answers that are `need_help` with a note (the rest `safe`).
    pub need_help_share: f64,
    /// HTTP keep-alive connections (= answers in flight at most).
    pub connections: usize,
    pub sources: usize,
    /// Longest wait after the last answer for the board's final totals.
    pub settle: Duration,
    pub probe: ServerProbe,
    pub json: Option<std::path::PathBuf>,
}

/// One `rollcall_board` as the console received it.
#[derive(Debug, Clone, Copy)]
struct BoardSeen {
    at: Instant,
    counted_at_ms: i64,
    total: i64,
    safe: i64,
    need_help: i64,
    no_answer: i64,
    unreachable: i64,
}

/// The board's counts, for the report.
#[derive(Debug, Serialize, Clone, Copy, Default, PartialEq, Eq)]
pub struct BoardCounts {
    pub total: i64,
    pub safe: i64,
    pub need_help: i64,
    /// No answer, received or not (`no_answer` + `unreachable`).
    pub not_answered: i64,
}

impl BoardSeen {
    fn counts(&self) -> BoardCounts {
        BoardCounts {
            total: self.total,
            safe: self.safe,
            need_help: self.need_help,
            not_answered: self.no_answer + self.unreachable,
        }
    }
}

/// One acknowledged answer: when its 204 arrived (monotonic and wall clock).
#[derive(Debug, Clone, Copy)]
struct Acked {
    at: Instant,
    wall_ms: i64,
}

/// The report of a `rollcall` run.
#[derive(Debug, Serialize)]
pub struct RollcallReport {
    pub scenario: &'static str,
    pub target: String,
    pub rollcall_id: i64,
    /// People and dependants asked (`people_count` of the 201).
    pub people_asked: i64,
    /// Distinct people (tokens) who answered, and answers per person at most.
    pub people_answering: usize,
    pub rows_per_person: usize,
    /// POST /rollcalls → 201 (rows and stored messages for everyone asked).
    pub start_ms: f64,
    pub window_secs: f64,
    pub connections: usize,
    pub answers_planned: usize,
    pub answers_ok: usize,
    pub answers_safe: usize,
    pub answers_need_help: usize,
    pub errors: usize,
    pub first_errors: Vec<String>,
    /// First answer sent → last 204.
    pub send_span_secs: f64,
    /// Answers acknowledged per second over that span.
    pub answers_per_sec: f64,
    /// Answers that started more than 100 ms after their slot (all connections busy).
    pub late_starts: usize,
    pub answer_latency_ms: LatencyMs,
    /// Each answer's 204 → the console's receipt of the first board counted after it.
    pub board_staleness_ms: LatencyMs,
    /// Acknowledged answers no board counted within the settle time.
    pub answers_never_on_board: usize,
    /// Last 204 → the board showing the final totals.
    pub last_answer_to_final_board_ms: Option<f64>,
    pub board_updates: usize,
    /// Boards counted after some 204s but showing fewer answers than those (must be 0).
    pub boards_missing_acked: usize,
    pub expected: BoardCounts,
    pub final_board: Option<BoardCounts>,
    /// `GET /rollcalls/{id}` after the run (the stored board).
    pub stored_board: Option<BoardCounts>,
    pub totals_match: bool,
    #[serde(flatten)]
    pub server: ServerUse,
}

fn wall_ms() -> i64 {
    Timestamp::now().0
}

/// A board as seen at `at` (none without its `counted_at`).
fn seen(b: &Board, at: Instant) -> Option<BoardSeen> {
    Some(BoardSeen {
        at,
        counted_at_ms: b.counted_at?.0,
        total: b.total,
        safe: b.safe,
        need_help: b.need_help,
        no_answer: b.no_answer,
        unreachable: b.unreachable,
    })
}

/// The part of `GET /api/v1/rollcalls/{id}` read here: the same board as the live one.
#[derive(Deserialize)]
struct Stored {
    board: Board,
}

/// Which answers to send, in order: every person for themselves, then every person's first
/// dependant, and so on (a person's answers are spread over the window). `None` = oneself.
fn plan(dependants: &[Vec<i64>], n: usize) -> Vec<(usize, Option<i64>)> {
    let rounds = dependants.iter().map(Vec::len).max().unwrap_or(0) + 1;
    let mut out = Vec::with_capacity(n);
    for round in 0..rounds {
        for (person, deps) in dependants.iter().enumerate() {
            if out.len() == n {
                return out;
            }
            match round {
                0 => out.push((person, None)),
                r => {
                    if let Some(d) = deps.get(r - 1) {
                        out.push((person, Some(*d)));
                    }
                }
            }
        }
    }
    out
}

/// Whether answer `i` of `n` is `need_help`: spread evenly, `share` of them.
fn needs_help(i: usize, share: f64) -> bool {
    let share = share.clamp(0.0, 1.0);
    ((i + 1) as f64 * share).floor() > (i as f64 * share).floor()
}

/// For each acknowledged answer, the first board (in receipt order) counted after its 204:
/// returns the staleness samples and how many answers no board counted.
fn staleness(acked: &[Acked], boards: &[BoardSeen]) -> (Vec<Duration>, usize) {
    // The latest counted_at seen so far, per board in receipt order: the first board counted
    // after a 204 is the first whose running maximum passes it.
    let mut running = Vec::with_capacity(boards.len());
    let mut max = i64::MIN;
    for b in boards {
        max = max.max(b.counted_at_ms);
        running.push(max);
    }
    let mut samples = Vec::with_capacity(acked.len());
    let mut never = 0;
    for a in acked {
        // Strictly later: a board counted in the same millisecond may have started before.
        let i = running.partition_point(|m| *m <= a.wall_ms);
        match boards[i..].iter().find(|b| b.counted_at_ms > a.wall_ms) {
            Some(b) => samples.push(b.at.saturating_duration_since(a.at)),
            None => never += 1,
        }
    }
    (samples, never)
}

/// Boards that were counted after some answers' 204s yet show fewer answers than those.
fn boards_missing_acked(acked: &[Acked], boards: &[BoardSeen]) -> usize {
    let mut walls: Vec<i64> = acked.iter().map(|a| a.wall_ms).collect();
    walls.sort_unstable();
    boards
        .iter()
        .filter(|b| {
            let before = walls.partition_point(|w| *w < b.counted_at_ms) as i64;
            b.safe + b.need_help < before
        })
        .count()
}

async fn console(target: &Target, token: &str, org_id: i64) -> anyhow::Result<Ws> {
    let mut ws = open_session(target, source_addr(0, 1), token).await?;
    let sub = ClientMessage::Subscribe {
        topic: Topic::Operations,
        org_id: Some(org_id),
    };
    ws.send(text_frame(&sub)).await?;
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .context("no answer to subscribe within 10 s")?;
        if let Some(Ok(Message::Text(t))) = frame {
            match serde_json::from_str::<ServerMessage>(&t)
                .with_context(|| format!("reading {t}"))?
            {
                ServerMessage::Subscribed { .. } => return Ok(ws),
                ServerMessage::Error { .. } => bail!("subscribe refused: {t}"),
                _ => {}
            }
        } else {
            bail!("the console's socket closed before subscribed");
        }
    }
}

/// Each person's dependants' ids, from `GET /me`.
async fn dependants_of(
    http: &reqwest::Client,
    target: &Target,
    tokens: &[String],
) -> anyhow::Result<Vec<Vec<i64>>> {
    let limit = Arc::new(Semaphore::new(32));
    let mut tasks = Vec::with_capacity(tokens.len());
    for t in tokens.iter().cloned() {
        let permit = limit.clone().acquire_owned().await?;
        let (http, url) = (http.clone(), format!("{}/api/v1/me", target.base));
        tasks.push(tokio::spawn(async move {
            let _permit = permit;
            let me: serde_json::Value = http
                .get(url)
                .bearer_auth(t)
                .send()
                .await?
                .error_for_status()?
                .json()
                .await?;
            let ids: Vec<i64> = me["dependants"]
                .as_array()
                .map(|a| a.iter().filter_map(|d| d["id"].as_i64()).collect())
                .unwrap_or_default();
            anyhow::Ok(ids)
        }));
    }
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        out.push(t.await??);
    }
    Ok(out)
}

#[derive(Debug, Default)]
struct Tally {
    sent: AtomicUsize,
    ok: AtomicUsize,
    errors: AtomicUsize,
    late: AtomicUsize,
    in_flight: AtomicU64,
}

pub async fn rollcall(o: RollcallOpts) -> anyhow::Result<RollcallReport> {
    let nofile = raise_nofile(o.connections as u64 + 1024)?;
    let sources = o.sources.clamp(1, 250);
    let connections = o
        .connections
        .clamp(1, nofile.saturating_sub(512).max(1) as usize);
    let adviser = o
        .fixture
        .adviser
        .clone()
        .context("the users file has no adviser: run `vigil-load setup` again")?;
    let want_people = if o.people == 0 { o.answers } else { o.people };
    let tokens = get_tokens(
        &o.target,
        &o.fixture.users,
        want_people,
        o.tokens_file.as_deref(),
    )
    .await?;
    // One keep-alive pool per source address: `connections` sockets spread over them.
    let per_source = connections.div_ceil(sources);
    let mut clients = Vec::with_capacity(sources);
    for s in 0..sources {
        clients.push(
            reqwest::Client::builder()
                .local_address(source_addr(s, sources))
                .pool_max_idle_per_host(per_source)
                .tcp_nodelay(true)
                .timeout(Duration::from_secs(60))
                .build()?,
        );
    }
    let http = clients[0].clone();
    let dependants = if o.answers > tokens.len() {
        eprintln!(
            "{} answers from {} people: reading their dependants (GET /me)",
            o.answers,
            tokens.len()
        );
        dependants_of(&http, &o.target, &tokens).await?
    } else {
        vec![Vec::new(); tokens.len().min(o.answers)]
    };
    let plan = plan(&dependants, o.answers);
    if plan.len() < o.answers {
        bail!(
            "{} people with {} dependants give {} answers, not {}: use more tokens or `setup --dependants`",
            dependants.len(),
            dependants.iter().map(Vec::len).sum::<usize>(),
            plan.len(),
            o.answers
        );
    }
    let rows_per_person = dependants.iter().map(Vec::len).max().unwrap_or(0) + 1;
    eprintln!(
        "rollcall: {} answers from {} people over {:?}, {connections} keep-alive connections from 127.0.0.2–127.0.0.{}",
        plan.len(),
        dependants.len(),
        o.window,
        1 + sources
    );

    // The adviser's console, subscribed to the organisation's boards.
    let adviser_token = login(&http, &o.target, &adviser.email, &adviser.password)
        .await
        .context("logging the adviser in")?;
    let mut ws = console(&o.target, &adviser_token, o.fixture.org_id).await?;
    let boards: Arc<Mutex<Vec<BoardSeen>>> = Arc::default();
    let rollcall_id = Arc::new(std::sync::atomic::AtomicI64::new(0));

    let before = o.probe.sample();
    let client_probe = ServerProbe {
        pid: Some(std::process::id()),
    };
    let client_before = client_probe.sample();
    let started = Instant::now();
    let resp = http
        .post(format!("{}/api/v1/rollcalls", o.target.base))
        .bearer_auth(&adviser_token)
        .json(&serde_json::json!({
            "title": format!("Load roll-call {}", wall_ms()),
            "message": "Load test: are you safe?",
            "target": {"organisations": [o.fixture.org_id]},
        }))
        .send()
        .await?;
    let status = resp.status();
    let rc: serde_json::Value = resp.json().await?;
    let start_ms = started.elapsed().as_secs_f64() * 1e3;
    if status.as_u16() != 201 {
        bail!("starting the roll-call: {status}: {rc}");
    }
    let id = rc["id"].as_i64().context("roll-call without id")?;
    let people_asked = rc["people_count"].as_i64().unwrap_or(0);
    rollcall_id.store(id, Ordering::Relaxed);
    eprintln!(
        "roll-call {id} started in {start_ms:.0} ms: {people_asked} people and dependants asked"
    );

    let reader = {
        let boards = boards.clone();
        tokio::spawn(async move {
            while let Some(frame) = ws.next().await {
                let Ok(Message::Text(t)) = frame else {
                    if frame.is_err() {
                        break;
                    }
                    continue;
                };
                let at = Instant::now();
                let Ok(msg) = serde_json::from_str::<ServerMessage>(&t) else {
                    continue;
                };
                if let ServerMessage::RollcallBoard { rollcall_id, board } = msg
                    && rollcall_id == id
                    && let (Some(b), Ok(mut all)) = (seen(&board, at), boards.lock())
                {
                    all.push(b);
                }
            }
        })
    };

    // The answers, each started at its slot (or as soon as a connection is free).
    let tally = Arc::new(Tally::default());
    let acked: Arc<Mutex<Vec<Acked>>> = Arc::default();
    let latencies: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let first_errors: Arc<Mutex<Vec<String>>> = Arc::default();
    let (mut need_help_sent, mut safe_sent) = (Vec::new(), Vec::new());
    let peaks: Arc<Mutex<(Option<f64>, Option<u64>)>> = Arc::default();
    let progress = {
        let (tally, probe, boards, peaks) = (tally.clone(), o.probe, boards.clone(), peaks.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.tick().await;
            let (mut last, mut peak_cpu, mut peak_rss) = (probe.sample(), None::<f64>, None);
            let mut last_ok = 0;
            loop {
                tick.tick().await;
                let s = probe.sample();
                let cpu = cpu_percent(&last, &s);
                peak_cpu = match (peak_cpu, cpu) {
                    (Some(a), Some(b)) => Some(a.max(b)),
                    (a, b) => a.or(b),
                };
                peak_rss = peak_rss.max(s.rss_kib);
                let ok = tally.ok.load(Ordering::Relaxed);
                let board = boards.lock().ok().and_then(|b| b.last().copied());
                eprintln!(
                    "  [{:>5.1}s] sent {}, answered {ok} ({}/s), in flight {}, errors {}, late {} | board: {} | server RSS {}, CPU {}",
                    started.elapsed().as_secs_f64(),
                    tally.sent.load(Ordering::Relaxed),
                    ok - last_ok,
                    tally.in_flight.load(Ordering::Relaxed),
                    tally.errors.load(Ordering::Relaxed),
                    tally.late.load(Ordering::Relaxed),
                    board.map_or_else(
                        || "none yet".into(),
                        |b| format!(
                            "safe {} need help {} not answered {}",
                            b.safe,
                            b.need_help,
                            b.no_answer + b.unreachable
                        )
                    ),
                    mib(s.rss_kib),
                    pct(cpu)
                );
                (last, last_ok) = (s, ok);
                if let Ok(mut p) = peaks.lock() {
                    *p = (peak_cpu, peak_rss);
                }
            }
        })
    };
    let limit = Arc::new(Semaphore::new(connections));
    let tokens = Arc::new(tokens);
    let first = Instant::now() + Duration::from_millis(200);
    let n = plan.len();
    let mut tasks = Vec::with_capacity(n);
    for (i, (person, dependant)) in plan.into_iter().enumerate() {
        let slot = first + o.window.mul_f64(i as f64 / n as f64);
        tokio::time::sleep_until(slot.into()).await;
        let permit = limit.clone().acquire_owned().await?;
        if Instant::now() > slot + Duration::from_millis(100) {
            tally.late.fetch_add(1, Ordering::Relaxed);
        }
        let help = needs_help(i, o.need_help_share);
        if help {
            need_help_sent.push(i);
        } else {
            safe_sent.push(i);
        }
        let body = if help {
            serde_json::json!({"status": "need_help", "note": format!("load test: answer {i} needs help"), "dependant_id": dependant})
        } else {
            serde_json::json!({"status": "safe", "dependant_id": dependant})
        };
        let http = clients[i % sources].clone();
        let url = format!("{}/api/v1/rollcalls/{id}/answer", o.target.base);
        let (tokens, tally, acked, latencies, first_errors) = (
            tokens.clone(),
            tally.clone(),
            acked.clone(),
            latencies.clone(),
            first_errors.clone(),
        );
        tally.sent.fetch_add(1, Ordering::Relaxed);
        tally.in_flight.fetch_add(1, Ordering::Relaxed);
        tasks.push(tokio::spawn(async move {
            let _permit = permit;
            let t0 = Instant::now();
            let sent = http
                .post(url)
                .bearer_auth(&tokens[person])
                .json(&body)
                .send()
                .await;
            tally.in_flight.fetch_sub(1, Ordering::Relaxed);
            let failure = match sent {
                Ok(r) if r.status().as_u16() == 204 => {
                    let a = Acked {
                        at: Instant::now(),
                        wall_ms: wall_ms(),
                    };
                    if let (Ok(mut l), Ok(mut all)) = (latencies.lock(), acked.lock()) {
                        l.push(a.at - t0);
                        all.push(a);
                    }
                    tally.ok.fetch_add(1, Ordering::Relaxed);
                    return true;
                }
                Ok(r) => {
                    let status = r.status();
                    format!("{status}: {}", r.text().await.unwrap_or_default())
                }
                Err(e) => format!("{e:#}"),
            };
            if tally.errors.fetch_add(1, Ordering::Relaxed) < 5
                && let Ok(mut f) = first_errors.lock()
            {
                f.push(failure);
            }
            false
        }));
    }
    let mut ok_flags = Vec::with_capacity(n);
    for t in tasks {
        ok_flags.push(t.await?);
    }
    let window_end = o.probe.sample();
    let client_end = client_probe.sample();
    let answers_safe = safe_sent.iter().filter(|i| ok_flags[**i]).count();
    let answers_need_help = need_help_sent.iter().filter(|i| ok_flags[**i]).count();
    let expected = BoardCounts {
        total: people_asked,
        safe: answers_safe as i64,
        need_help: answers_need_help as i64,
        not_answered: people_asked - (answers_safe + answers_need_help) as i64,
    };

    // Wait for the board to show exactly what was sent.
    let acked = acked.lock().map(|a| a.clone()).unwrap_or_default();
    let last_ack = acked.iter().map(|a| a.at).max();
    let settle_until = Instant::now() + o.settle;
    let mut final_seen = None;
    while Instant::now() < settle_until {
        let done = boards
            .lock()
            .ok()
            .and_then(|b| b.iter().find(|b| b.counts() == expected).copied());
        if done.is_some() {
            final_seen = done;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A last board, so that answers near the end are matched against a later count too.
    tokio::time::sleep(Duration::from_millis(600)).await;
    reader.abort();
    progress.abort();
    let boards = boards.lock().map(|b| b.clone()).unwrap_or_default();
    let (mut stale, never) = staleness(&acked, &boards);
    let missing = boards_missing_acked(&acked, &boards);
    let final_board = final_seen
        .or_else(|| boards.last().copied())
        .map(|b| b.counts());
    let stored: Option<BoardCounts> = async {
        let stored: Stored = http
            .get(format!("{}/api/v1/rollcalls/{id}", o.target.base))
            .bearer_auth(&adviser_token)
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        let b = seen(&stored.board, Instant::now())?;
        Some(b.counts())
    }
    .await;
    let totals_match = final_seen.is_some() && stored == Some(expected);
    // Close it: the report is frozen and no reminder will ever run for it.
    let closed = http
        .post(format!("{}/api/v1/rollcalls/{id}/close", o.target.base))
        .bearer_auth(&adviser_token)
        .send()
        .await
        .map(|r| r.status().as_u16());
    if closed.as_ref().ok() != Some(&200) {
        eprintln!("  closing roll-call {id}: {closed:?}");
    }
    let after = o.probe.sample();
    let (peak_cpu, peak_rss) = peaks.lock().map(|p| *p).unwrap_or_default();
    let first_send = first;
    let send_span = last_ack
        .map(|l| l.saturating_duration_since(first_send))
        .unwrap_or_default();
    let ok = tally.ok.load(Ordering::Relaxed);
    let mut latencies = latencies.lock().map(|l| l.clone()).unwrap_or_default();
    let errors =
        tally.errors.load(Ordering::Relaxed) + usize::from(!totals_match) + never + missing;
    let report = RollcallReport {
        scenario: "rollcall",
        target: o.target.base.clone(),
        rollcall_id: id,
        people_asked,
        people_answering: dependants.len(),
        rows_per_person,
        start_ms: (start_ms * 100.0).round() / 100.0,
        window_secs: o.window.as_secs_f64(),
        connections,
        answers_planned: n,
        answers_ok: ok,
        answers_safe,
        answers_need_help,
        errors,
        first_errors: first_errors.lock().map(|f| f.clone()).unwrap_or_default(),
        send_span_secs: send_span.as_secs_f64(),
        answers_per_sec: ok as f64 / send_span.as_secs_f64().max(1e-3),
        late_starts: tally.late.load(Ordering::Relaxed),
        answer_latency_ms: summarize(&mut latencies)
            .map(LatencyMs::from)
            .unwrap_or_default(),
        board_staleness_ms: summarize(&mut stale)
            .map(LatencyMs::from)
            .unwrap_or_default(),
        answers_never_on_board: never,
        last_answer_to_final_board_ms: final_seen
            .zip(last_ack)
            .map(|(b, l)| b.at.saturating_duration_since(l).as_secs_f64() * 1e3),
        board_updates: boards.len(),
        boards_missing_acked: missing,
        expected,
        final_board,
        stored_board: stored,
        totals_match,
        server: ServerUse::between(
            o.probe.pid,
            (&before, &window_end, &after),
            (peak_cpu, peak_rss),
            (&client_before, &client_end),
        ),
    };
    publish(report, print_markdown, o.json.as_deref())
}

fn print_markdown(r: &RollcallReport) {
    println!(
        "## rollcall {}: {} answers from {} people over {} s\n",
        r.rollcall_id, r.answers_planned, r.people_answering, r.window_secs
    );
    println!("| measure | value |\n| --- | --- |");
    println!(
        "| people and dependants asked / POST /rollcalls → 201 | {} / {:.0} ms |",
        r.people_asked, r.start_ms
    );
    println!(
        "| **answers acknowledged** | **{} of {}** ({} safe, {} need help; {:.0}/s over {:.1} s; {} late starts) |",
        r.answers_ok,
        r.answers_planned,
        r.answers_safe,
        r.answers_need_help,
        r.answers_per_sec,
        r.send_span_secs,
        r.late_starts
    );
    println!("| answer POST → 204 | {} |", r.answer_latency_ms);
    let s = r.board_staleness_ms;
    println!(
        "| **board staleness** (204 → first board counted after it) | p50 {:.0} ms, p95 {:.0} ms, **p99 {:.0} ms**, max {:.0} ms ({} boards) |",
        s.p50, s.p95, s.p99, s.max, r.board_updates
    );
    println!(
        "| last answer → board with the final totals | {} |",
        r.last_answer_to_final_board_ms
            .map_or_else(|| "never".into(), |ms| format!("{ms:.0} ms"))
    );
    let show = |b: Option<BoardCounts>| {
        b.map_or_else(
            || "none".into(),
            |b| {
                format!(
                    "{} total: {} safe, {} need help, {} no answer",
                    b.total, b.safe, b.need_help, b.not_answered
                )
            },
        )
    };
    println!(
        "| expected / console's final / stored board | {} / {} / {} → **{}** |",
        show(Some(r.expected)),
        show(r.final_board),
        show(r.stored_board),
        if r.totals_match { "match" } else { "MISMATCH" }
    );
    println!(
        "| errors (failed answers, answers never on a board, boards missing acknowledged answers, totals) | {} ({}, {}, {}, {}) |",
        r.errors,
        r.answers_planned - r.answers_ok,
        r.answers_never_on_board,
        r.boards_missing_acked,
        usize::from(!r.totals_match)
    );
    r.server.print_rows();
    for e in &r.first_errors {
        println!("\nfirst errors: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_go_self_first_then_dependants() {
        let deps = vec![vec![10, 11], vec![], vec![30]];
        assert_eq!(
            plan(&deps, 10),
            vec![
                (0, None),
                (1, None),
                (2, None),
                (0, Some(10)),
                (2, Some(30)),
                (0, Some(11))
            ]
        );
        assert_eq!(plan(&deps, 2), vec![(0, None), (1, None)]);
    }

    #[test]
    fn need_help_is_spread_at_its_share() {
        let n = (0..1000).filter(|i| needs_help(*i, 0.05)).count();
        assert_eq!(n, 50);
        assert_eq!((0..10).filter(|i| needs_help(*i, 0.0)).count(), 0);
        assert!(needs_help(19, 0.05) && !needs_help(18, 0.05));
    }

    #[test]
    fn staleness_waits_for_a_board_counted_after_the_answer() {
        let t = Instant::now();
        let ms = Duration::from_millis;
        let board = |at: u64, counted: i64, safe: i64| BoardSeen {
            at: t + ms(at),
            counted_at_ms: counted,
            total: 10,
            safe,
            need_help: 0,
            no_answer: 10 - safe,
            unreachable: 0,
        };
        // Boards counted at 1000 and 1250 (the second one counted in the answer's millisecond
        // does not count), received 5 ms later.
        let boards = [board(5, 1000, 1), board(255, 1250, 2), board(505, 1500, 3)];
        let acked = [
            Acked {
                at: t,
                wall_ms: 999,
            },
            Acked {
                at: t + ms(250),
                wall_ms: 1250,
            },
            Acked {
                at: t + ms(600),
                wall_ms: 1600,
            },
        ];
        let (samples, never) = staleness(&acked, &boards);
        assert_eq!(samples, vec![ms(5), ms(255)]);
        assert_eq!(never, 1);
        // Counted at 1500 after three 204s, yet showing three: complete. Showing two: not.
        assert_eq!(boards_missing_acked(&acked[..2], &boards), 0);
        let short = [board(505, 1500, 1)];
        assert_eq!(boards_missing_acked(&acked[..2], &short), 1);
    }
}
