//! `vigil-load`: the load generator (see README.md for what it does today and what comes).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use tokio::sync::Semaphore;

#[derive(Parser)]
#[command(name = "vigil-load", about = "Load generator for a running Vigil server")]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand)]
enum Scenario {
    /// Requests to /healthz: throughput and latency percentiles.
    Probe {
        /// Server base URL (loopback only).
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        url: String,
        /// Requests to send.
        #[arg(long, default_value_t = 2000)]
        requests: usize,
        /// Requests in flight at once.
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
    },
}

/// Latency summary of a run.
#[derive(Debug, PartialEq)]
struct Summary {
    p50: Duration,
    p95: Duration,
    p99: Duration,
    max: Duration,
}

/// Nearest-rank percentiles of the samples (sorted in place).
fn summarize(samples: &mut [Duration]) -> Option<Summary> {
    if samples.is_empty() {
        return None;
    }
    samples.sort_unstable();
    let rank = |p: f64| {
        let idx = ((p / 100.0) * samples.len() as f64).ceil() as usize;
        samples[idx.clamp(1, samples.len()) - 1]
    };
    Some(Summary {
        p50: rank(50.0),
        p95: rank(95.0),
        p99: rank(99.0),
        max: samples[samples.len() - 1],
    })
}

fn ensure_loopback(url: &str) -> anyhow::Result<()> {
    let rest = url.split_once("://").map_or("", |(_, rest)| rest);
    let host = if rest.starts_with("[::1]") {
        "[::1]"
    } else {
        rest.split(['/', ':']).next().unwrap_or("")
    };
    if host == "localhost" || host.starts_with("127.") || host == "[::1]" {
        Ok(())
    } else {
        bail!("{url} is not a loopback address; vigil-load only targets servers on this machine")
    }
}

async fn probe(url: String, requests: usize, concurrency: usize) -> anyhow::Result<()> {
    ensure_loopback(&url)?;
    let client = reqwest::Client::new();
    let limit = Arc::new(Semaphore::new(concurrency.max(1)));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(requests);
    for _ in 0..requests {
        let permit = limit.clone().acquire_owned().await?;
        let client = client.clone();
        let target = format!("{url}/healthz");
        tasks.push(tokio::spawn(async move {
            let _permit = permit;
            let t = Instant::now();
            let ok = client
                .get(&target)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            (ok, t.elapsed())
        }));
    }
    let mut samples = Vec::with_capacity(requests);
    let mut errors = 0usize;
    for (done, task) in tasks.into_iter().enumerate() {
        let (ok, took) = task.await.context("request task")?;
        if ok {
            samples.push(took);
        } else {
            errors += 1;
        }
        if (done + 1) % 1000 == 0 {
            eprintln!("  {}/{requests} requests done", done + 1);
        }
    }
    let elapsed = started.elapsed();
    let s = summarize(&mut samples).context("no request succeeded")?;
    println!(
        "probe: {requests} requests, {errors} errors, {:.0} req/s; latency p50 {:?} p95 {:?} p99 {:?} max {:?}",
        requests as f64 / elapsed.as_secs_f64(),
        s.p50,
        s.p95,
        s.p99,
        s.max
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().scenario {
        Scenario::Probe {
            url,
            requests,
            concurrency,
        } => probe(url, requests, concurrency).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let mut samples: Vec<Duration> = (1..=100).rev().map(Duration::from_millis).collect();
        let s = summarize(&mut samples).expect("samples");
        assert_eq!(s.p50, Duration::from_millis(50));
        assert_eq!(s.p95, Duration::from_millis(95));
        assert_eq!(s.p99, Duration::from_millis(99));
        assert_eq!(s.max, Duration::from_millis(100));
        assert_eq!(summarize(&mut []), None);
    }

    #[test]
    fn only_loopback_is_a_target() {
        assert!(ensure_loopback("http://127.0.0.1:8080").is_ok());
        assert!(ensure_loopback("http://localhost:8080").is_ok());
        assert!(ensure_loopback("http://[::1]:8080").is_ok());
        assert!(ensure_loopback("http://10.0.0.5:8080").is_err());
    }
}
