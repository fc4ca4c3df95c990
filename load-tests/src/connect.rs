//! `connect`: a storm of N authenticated WebSockets, then an idle hold: connections/s,
//! handshake percentiles, and the server's memory per idle connection.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::Semaphore;

use crate::client::{
    Fixture, Target, Ws, open_session, raise_nofile, source_addr, tokens as get_tokens,
};
use crate::stats::{LatencyMs, ServerProbe, cpu_percent, mib, pct, summarize, write_json};

/// Options of `connect`.
#[derive(Debug)]
pub struct ConnectOpts {
    pub target: Target,
    pub fixture: Fixture,
    pub connections: usize,
    pub logins: usize,
    pub tokens_file: Option<std::path::PathBuf>,
    pub concurrency: usize,
    pub sources: usize,
    pub hold_secs: u64,
    pub probe: ServerProbe,
    pub json: Option<std::path::PathBuf>,
}

/// The report of a `connect` run.
#[derive(Debug, Serialize)]
pub struct ConnectReport {
    pub scenario: &'static str,
    pub target: String,
    pub connections_requested: usize,
    pub connections_open: usize,
    pub errors: usize,
    pub first_errors: Vec<String>,
    pub distinct_users: usize,
    pub source_addresses: String,
    pub nofile_limit: u64,
    pub concurrency: usize,
    pub connect_secs: f64,
    pub connections_per_sec: f64,
    pub handshake_ms: LatencyMs,
    pub server_pid: Option<u32>,
    pub server_rss_before_kib: Option<u64>,
    pub server_rss_connected_kib: Option<u64>,
    pub server_rss_idle_kib: Option<u64>,
    pub server_rss_after_close_kib: Option<u64>,
    pub server_rss_per_idle_connection_kib: Option<f64>,
    pub server_cpu_secs_connecting: Option<f64>,
    pub server_cpu_percent_connecting: Option<f64>,
    pub server_cpu_percent_idle: Option<f64>,
    pub hold_secs: u64,
    pub client_rss_kib: Option<u64>,
}

pub async fn connect(o: ConnectOpts) -> anyhow::Result<ConnectReport> {
    let nofile = raise_nofile(o.connections as u64 + 1024)?;
    let sources = o.sources.clamp(1, 250);
    let source_text = format!("127.0.0.2–127.0.0.{} ({sources} addresses)", 1 + sources);
    eprintln!(
        "connect: {} WebSockets to {} from {source_text}, {} at a time; open-file limit {nofile}",
        o.connections,
        o.target.ws_url(),
        o.concurrency
    );
    if nofile < o.connections as u64 + 64 {
        eprintln!(
            "warning: the open-file limit {nofile} is below the {} sockets asked for",
            o.connections
        );
    }
    let tokens = Arc::new(
        get_tokens(
            &o.target,
            &o.fixture.users,
            o.logins,
            o.tokens_file.as_deref(),
        )
        .await?,
    );

    // Let the server settle after the logins before the baseline.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = o.probe.sample();
    eprintln!("server RSS before: {}", mib(before.rss_kib));

    let limit = Arc::new(Semaphore::new(o.concurrency.max(1)));
    let done = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let progress = {
        let (done, failed, probe, n) = (done.clone(), failed.clone(), o.probe, o.connections);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.tick().await;
            loop {
                tick.tick().await;
                let s = probe.sample();
                eprintln!(
                    "  [{:>5.1}s] open {}/{n}, errors {}, server RSS {}",
                    started.elapsed().as_secs_f64(),
                    done.load(Ordering::Relaxed),
                    failed.load(Ordering::Relaxed),
                    mib(s.rss_kib)
                );
            }
        })
    };
    let mut tasks = Vec::with_capacity(o.connections);
    for i in 0..o.connections {
        let permit = limit.clone().acquire_owned().await?;
        let (target, tokens, done, failed) = (
            o.target.clone(),
            tokens.clone(),
            done.clone(),
            failed.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let _permit = permit;
            let t = Instant::now();
            let token = &tokens[i % tokens.len()];
            let r = open_session(&target, source_addr(i, sources), token).await;
            match &r {
                Ok(_) => done.fetch_add(1, Ordering::Relaxed),
                Err(_) => failed.fetch_add(1, Ordering::Relaxed),
            };
            r.map(|ws| (ws, t.elapsed()))
        }));
    }
    let mut open: Vec<Ws> = Vec::with_capacity(o.connections);
    let mut samples = Vec::with_capacity(o.connections);
    let mut first_errors = Vec::new();
    let mut errors = 0;
    for t in tasks {
        match t.await? {
            Ok((ws, took)) => {
                open.push(ws);
                samples.push(took);
            }
            Err(e) => {
                errors += 1;
                if first_errors.len() < 5 {
                    first_errors.push(format!("{e:#}"));
                }
            }
        }
    }
    let connect_secs = started.elapsed().as_secs_f64();
    let connected = o.probe.sample();
    progress.abort();

    eprintln!(
        "{} open, {errors} errors in {connect_secs:.1} s; holding them idle for {} s",
        open.len(),
        o.hold_secs
    );
    let hold_start = o.probe.sample();
    tokio::time::sleep(Duration::from_secs(o.hold_secs)).await;
    let idle = o.probe.sample();
    let client_rss_kib = crate::stats::rss_kib(std::process::id());
    let n_open = open.len();
    drop(open);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let closed = o.probe.sample();

    let per_conn = match (before.rss_kib, idle.rss_kib) {
        (Some(b), Some(a)) if n_open > 0 => Some((a as f64 - b as f64) / n_open as f64),
        _ => None,
    };
    let handshake = summarize(&mut samples)
        .map(LatencyMs::from)
        .unwrap_or_default();
    let report = ConnectReport {
        scenario: "connect",
        target: o.target.ws_url(),
        connections_requested: o.connections,
        connections_open: n_open,
        errors,
        first_errors,
        distinct_users: tokens.len(),
        source_addresses: source_text,
        nofile_limit: nofile,
        concurrency: o.concurrency,
        connect_secs,
        connections_per_sec: n_open as f64 / connect_secs,
        handshake_ms: handshake,
        server_pid: o.probe.pid,
        server_rss_before_kib: before.rss_kib,
        server_rss_connected_kib: connected.rss_kib,
        server_rss_idle_kib: idle.rss_kib,
        server_rss_after_close_kib: closed.rss_kib,
        server_rss_per_idle_connection_kib: per_conn,
        server_cpu_secs_connecting: before.cpu_secs.zip(connected.cpu_secs).map(|(a, b)| b - a),
        server_cpu_percent_connecting: cpu_percent(&before, &connected),
        server_cpu_percent_idle: cpu_percent(&hold_start, &idle),
        hold_secs: o.hold_secs,
        client_rss_kib,
    };
    print_markdown(&report);
    if let Some(path) = &o.json {
        write_json(path, &report)?;
    }
    Ok(report)
}

fn print_markdown(r: &ConnectReport) {
    let kib = |k: Option<f64>| k.map_or_else(|| "n/a".into(), |k| format!("{k:.1} KiB"));
    println!(
        "## connect: {} WebSockets to {}\n",
        r.connections_requested, r.target
    );
    println!("| measure | value |\n| --- | --- |");
    println!(
        "| connections open / errors | {} / {} |",
        r.connections_open, r.errors
    );
    println!("| distinct users (tokens) | {} |", r.distinct_users);
    println!("| client source addresses | {} |", r.source_addresses);
    println!("| client open-file limit | {} |", r.nofile_limit);
    println!("| handshakes in flight | {} |", r.concurrency);
    println!(
        "| connect phase | {:.2} s, **{:.0} connections/s** |",
        r.connect_secs, r.connections_per_sec
    );
    let h = r.handshake_ms;
    println!(
        "| handshake (TCP + upgrade + hello→welcome) | p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms, max {:.2} ms |",
        h.p50, h.p95, h.p99, h.max
    );
    println!(
        "| server RSS before / connected / idle after {} s / 3 s after close | {} / {} / {} / {} |",
        r.hold_secs,
        mib(r.server_rss_before_kib),
        mib(r.server_rss_connected_kib),
        mib(r.server_rss_idle_kib),
        mib(r.server_rss_after_close_kib)
    );
    println!(
        "| **server RSS per idle connection** | **{}** |",
        kib(r.server_rss_per_idle_connection_kib)
    );
    println!(
        "| server CPU while connecting / idle | {} ({}) / {} |",
        pct(r.server_cpu_percent_connecting),
        r.server_cpu_secs_connecting
            .map_or_else(|| "n/a".into(), |s| format!("{s:.2} CPU-s")),
        pct(r.server_cpu_percent_idle)
    );
    println!("| client RSS | {} |", mib(r.client_rss_kib));
    for e in &r.first_errors {
        println!("\nerror: {e}");
    }
}
