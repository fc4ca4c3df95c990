//! `vigil-load`: the load generator (see README.md for the scenarios and the exact commands).

// The scenarios live in the library (src/lib.rs) so that the in-suite test runs them too.
use vigil_load::{broadcast, client, connect, positions, rollcall, setup, sos_chat, stats};

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio::sync::Semaphore;

use crate::client::{Fixture, Target, ensure_loopback};
use crate::stats::{ServerProbe, summarize};

#[derive(Parser)]
#[command(
    name = "vigil-load",
    about = "Load generator for a running Vigil server (loopback addresses only)"
)]
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
    /// As a system admin: create an organisation, K staff and a row of areas; write the users file.
    Setup {
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        url: String,
        /// The system admin's email.
        #[arg(long)]
        admin_email: String,
        /// Environment variable holding the admin's password.
        #[arg(long, default_value = "PW")]
        admin_password_env: String,
        /// Short name of the organisation to create (or reuse).
        #[arg(long, default_value = "LOADORG")]
        org: String,
        /// Staff to create.
        #[arg(long, default_value_t = 500)]
        users: usize,
        /// Square security areas to draw.
        #[arg(long, default_value_t = 4)]
        areas: usize,
        /// Staff without passwords whose trackers report for them: alert recipients beyond
        /// the sockets one process can hold (`broadcast --offline`).
        #[arg(long, default_value_t = 0)]
        offline: usize,
        /// Operators to create (`sos-chat`'s operations room; they can run roll-calls too).
        #[arg(long, default_value_t = 0)]
        operators: usize,
        /// Dependants listed on each staff member (roll-call rows their staff member answers).
        #[arg(long, default_value_t = 0)]
        dependants: usize,
        /// Users created at once.
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
        /// Where to write the users file.
        #[arg(long, default_value = "load-users.json")]
        out: PathBuf,
    },
    /// Log the first K users of the users file in and write their access tokens to a file.
    Login {
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        url: String,
        /// The users file written by `setup`.
        #[arg(long, default_value = "load-users.json")]
        users_file: PathBuf,
        /// Users to log in.
        #[arg(long, default_value_t = 2000)]
        count: usize,
        /// Logins at once.
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
        /// Where to write the tokens (a JSON array).
        #[arg(long, default_value = "load-tokens.json")]
        out: PathBuf,
    },
    /// Connect storm: N authenticated WebSockets, then held idle; memory per idle connection.
    Connect {
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        url: String,
        /// The users file written by `setup`.
        #[arg(long, default_value = "load-users.json")]
        users_file: PathBuf,
        /// WebSockets to open.
        #[arg(long, short = 'n', default_value_t = 1000)]
        connections: usize,
        /// Users to log in; connections share their tokens round-robin.
        #[arg(long, default_value_t = 200)]
        logins: usize,
        /// Tokens written by `vigil-load login` (default: log in now).
        #[arg(long)]
        tokens_file: Option<PathBuf>,
        /// Handshakes in flight at once.
        #[arg(long, default_value_t = 200)]
        concurrency: usize,
        /// Client source addresses 127.0.0.2… to spread sockets over.
        #[arg(long, default_value_t = 8)]
        sources: usize,
        /// Seconds to hold the connections idle before measuring.
        #[arg(long, default_value_t = 10)]
        hold_secs: u64,
        /// The server's process id, to read its RSS and CPU time from /proc.
        #[arg(long)]
        server_pid: Option<u32>,
        /// Also write the report as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Steady state: D devices each send fixes every T seconds for S seconds across the areas.
    Positions {
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        url: String,
        /// Cluster nodes (comma-separated URLs) to spread the devices over, round robin.
        #[arg(long, value_delimiter = ',')]
        spread: Vec<String>,
        /// The users file written by `setup`.
        #[arg(long, default_value = "load-users.json")]
        users_file: PathBuf,
        /// Devices (each logs in as its own user while there are enough users).
        #[arg(long, short = 'd', default_value_t = 2000)]
        devices: usize,
        /// Tokens written by `vigil-load login` (default: log in now).
        #[arg(long)]
        tokens_file: Option<PathBuf>,
        /// Seconds between a device's messages (fractions allowed).
        #[arg(long, short = 't', default_value_t = 2.0)]
        period: f64,
        /// Seconds to send for.
        #[arg(long, short = 's', default_value_t = 30)]
        duration: u64,
        /// Fixes per position message (phones batch what they buffered).
        #[arg(long, default_value_t = 1)]
        fixes_per_message: usize,
        /// Walk a band north of the areas instead of across them: no geofence transitions.
        #[arg(long)]
        outside: bool,
        /// Client source addresses 127.0.0.2… to spread sockets over.
        #[arg(long, default_value_t = 8)]
        sources: usize,
        /// The server's process id, to read its RSS and CPU time from /proc.
        #[arg(long)]
        server_pid: Option<u32>,
        /// Also write the report as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Geofenced broadcast: an adviser's alert to a polygon holding K of N connected devices
    /// (+ M offline recipients), R times; POST→201, delivery latency, receipts, console counts;
    /// with --peer-mqtt the same fan-out through Mosquitto.
    Broadcast {
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        url: String,
        /// Cluster nodes (comma-separated URLs) to spread the devices' WebSockets over, round
        /// robin; the adviser and the console stay on --url. Default: every device on --url.
        #[arg(long, value_delimiter = ',')]
        spread: Vec<String>,
        /// The users file written by `setup` (with its adviser and offline staff).
        #[arg(long, default_value = "load-users.json")]
        users_file: PathBuf,
        /// Tokens written by `vigil-load login` (default: log in now), one per device.
        #[arg(long)]
        tokens_file: Option<PathBuf>,
        /// N: devices to connect, each its own staff user.
        #[arg(long, short = 'n', default_value_t = 1000)]
        devices: usize,
        /// K_connected: of those, devices whose position is inside the alert's polygon.
        #[arg(long, short = 'k', default_value_t = 500)]
        inside: usize,
        /// M: offline staff (from `setup --offline`) inside the polygon; K_total = K + M.
        #[arg(long, default_value_t = 0)]
        offline: usize,
        /// R: alerts to send, one after the other.
        #[arg(long, short = 'r', default_value_t = 3)]
        rounds: usize,
        /// The alert's fresh_within_secs (positions older than this are not inside).
        #[arg(long, default_value_t = 900)]
        fresh_within_secs: i64,
        /// Seconds between alerts.
        #[arg(long, default_value_t = 10.0)]
        pause_secs: f64,
        /// Longest wait, in seconds, for one alert's copies, receipts and counts.
        #[arg(long, default_value_t = 60)]
        round_timeout_secs: u64,
        /// Handshakes in flight while connecting.
        #[arg(long, default_value_t = 200)]
        concurrency: usize,
        /// Client source addresses 127.0.0.2… for the WebSockets (MQTT uses the next ones).
        #[arg(long, default_value_t = 8)]
        sources: usize,
        /// The Mosquitto peer (loopback), e.g. 127.0.0.1:1883: the same fan-out, measured after.
        #[arg(long)]
        peer_mqtt: Option<std::net::SocketAddr>,
        /// The broker's process id, for its RSS and CPU.
        #[arg(long)]
        peer_pid: Option<u32>,
        /// The server's process id, to read its RSS and CPU time from /proc.
        #[arg(long)]
        server_pid: Option<u32>,
        /// Also write the report as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Roll-call at scale: an adviser's roll-call of the organisation, N answers spread over a
    /// window; answer latency, answers/s, the console board's staleness and final totals.
    Rollcall {
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        url: String,
        /// The users file written by `setup` (with its adviser).
        #[arg(long, default_value = "load-users.json")]
        users_file: PathBuf,
        /// Tokens written by `vigil-load login` (default: log in now), one per person.
        #[arg(long)]
        tokens_file: Option<PathBuf>,
        /// N: answers to send (people for themselves first, then for their dependants).
        #[arg(long, short = 'n', default_value_t = 1000)]
        answers: usize,
        /// People (tokens) answering; 0: one per answer, as far as the tokens go.
        #[arg(long, default_value_t = 0)]
        people: usize,
        /// Seconds over which the answers' starts are spread.
        #[arg(long, short = 'w', default_value_t = 60.0)]
        window_secs: f64,
        /// Share of answers that are need_help with a note.
        #[arg(long, default_value_t = 0.05)]
        need_help_share: f64,
        /// HTTP keep-alive connections (answers in flight at most).
        #[arg(long, default_value_t = 256)]
        connections: usize,
        /// Client source addresses 127.0.0.2… to spread connections over.
        #[arg(long, default_value_t = 8)]
        sources: usize,
        /// Longest wait, in seconds, after the last answer for the board's final totals.
        #[arg(long, default_value_t = 30)]
        settle_secs: u64,
        /// The server's process id, to read its RSS and CPU time from /proc.
        #[arg(long)]
        server_pid: Option<u32>,
        /// Also write the report as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// SOS chat under load: S staff press SOS, operators claim and chat with them while D
    /// devices stream positions; chat round trip, send→ack, lost/duplicated messages.
    SosChat {
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        url: String,
        /// The users file written by `setup --operators K`.
        #[arg(long, default_value = "load-users.json")]
        users_file: PathBuf,
        /// Tokens written by `vigil-load login` (default: log in now): D + S of them.
        #[arg(long)]
        tokens_file: Option<PathBuf>,
        /// D: devices streaming positions (users 0..D).
        #[arg(long, short = 'd', default_value_t = 10_000)]
        devices: usize,
        /// T: seconds between a device's fixes.
        #[arg(long, short = 't', default_value_t = 5.0)]
        period: f64,
        /// Devices walk north of the areas: no geofence transitions.
        #[arg(long)]
        outside: bool,
        /// S: staff pressing SOS (users D..D+S).
        #[arg(long, short = 's', default_value_t = 20)]
        staff: usize,
        /// Operators' consoles (at most those `setup --operators` made).
        #[arg(long, default_value_t = 4)]
        operators: usize,
        /// Messages each staff member sends.
        #[arg(long, short = 'm', default_value_t = 20)]
        messages: usize,
        /// Seconds between a staff member's messages.
        #[arg(long, default_value_t = 1.0)]
        interval_secs: f64,
        /// Seconds of positions before the first SOS.
        #[arg(long, default_value_t = 5.0)]
        warmup_secs: f64,
        /// Longest wait, in seconds, for the replies after the last message.
        #[arg(long, default_value_t = 10)]
        reply_timeout_secs: u64,
        /// Client source addresses 127.0.0.2… to spread sockets over.
        #[arg(long, default_value_t = 8)]
        sources: usize,
        /// The server's process id, to read its RSS and CPU time from /proc.
        #[arg(long)]
        server_pid: Option<u32>,
        /// Also write the report as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
    },
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
        Scenario::Setup {
            url,
            admin_email,
            admin_password_env,
            org,
            users,
            areas,
            offline,
            operators,
            dependants,
            concurrency,
            out,
        } => {
            let admin_password = std::env::var(&admin_password_env).with_context(|| {
                format!("the admin password is read from ${admin_password_env}")
            })?;
            setup::setup(setup::SetupOpts {
                target: Target::parse(&url)?,
                admin_email,
                admin_password,
                org_short: org,
                users,
                areas,
                offline,
                operators,
                dependants,
                concurrency,
                out,
            })
            .await
            .map(drop)
        }
        Scenario::Login {
            url,
            users_file,
            count,
            concurrency,
            out,
        } => {
            let target = Target::parse(&url)?;
            let fixture = Fixture::read(&users_file)?;
            setup::login_to_file(&target, &fixture, count, concurrency, &out)
                .await
                .map(drop)
        }
        Scenario::Connect {
            url,
            users_file,
            connections,
            logins,
            tokens_file,
            concurrency,
            sources,
            hold_secs,
            server_pid,
            json,
        } => connect::connect(connect::ConnectOpts {
            target: Target::parse(&url)?,
            fixture: Fixture::read(&users_file)?,
            connections,
            logins,
            tokens_file,
            concurrency,
            sources,
            hold_secs,
            probe: ServerProbe { pid: server_pid },
            json,
        })
        .await
        .map(drop),
        Scenario::Positions {
            url,
            spread,
            users_file,
            devices,
            tokens_file,
            period,
            duration,
            fixes_per_message,
            outside,
            sources,
            server_pid,
            json,
        } => positions::positions(positions::PositionsOpts {
            target: Target::parse(&url)?,
            spread: spread
                .iter()
                .map(|u| Target::parse(u))
                .collect::<anyhow::Result<_>>()?,
            fixture: Fixture::read(&users_file)?,
            devices,
            tokens_file,
            period: Duration::from_secs_f64(period.max(0.001)),
            duration: Duration::from_secs(duration),
            fixes_per_message,
            outside,
            sources,
            probe: ServerProbe { pid: server_pid },
            json,
        })
        .await
        .map(drop),
        Scenario::Broadcast {
            url,
            spread,
            users_file,
            tokens_file,
            devices,
            inside,
            offline,
            rounds,
            fresh_within_secs,
            pause_secs,
            round_timeout_secs,
            concurrency,
            sources,
            peer_mqtt,
            peer_pid,
            server_pid,
            json,
        } => broadcast::broadcast(broadcast::BroadcastOpts {
            target: Target::parse(&url)?,
            spread: spread
                .iter()
                .map(|u| Target::parse(u))
                .collect::<anyhow::Result<_>>()?,
            fixture: Fixture::read(&users_file)?,
            tokens_file,
            devices,
            inside,
            offline,
            rounds,
            fresh_within_secs,
            pause: Duration::from_secs_f64(pause_secs.max(0.0)),
            round_timeout: Duration::from_secs(round_timeout_secs),
            concurrency,
            sources,
            peer_mqtt,
            peer_pid,
            probe: ServerProbe { pid: server_pid },
            json,
        })
        .await
        .map(drop),
        Scenario::Rollcall {
            url,
            users_file,
            tokens_file,
            answers,
            people,
            window_secs,
            need_help_share,
            connections,
            sources,
            settle_secs,
            server_pid,
            json,
        } => rollcall::rollcall(rollcall::RollcallOpts {
            target: Target::parse(&url)?,
            fixture: Fixture::read(&users_file)?,
            tokens_file,
            answers,
            people,
            window: Duration::from_secs_f64(window_secs.max(0.0)),
            need_help_share,
            connections,
            sources,
            settle: Duration::from_secs(settle_secs),
            probe: ServerProbe { pid: server_pid },
            json,
        })
        .await
        .map(drop),
        Scenario::SosChat {
            url,
            users_file,
            tokens_file,
            devices,
            period,
            outside,
            staff,
            operators,
            messages,
            interval_secs,
            warmup_secs,
            reply_timeout_secs,
            sources,
            server_pid,
            json,
        } => sos_chat::sos_chat(sos_chat::SosChatOpts {
            target: Target::parse(&url)?,
            fixture: Fixture::read(&users_file)?,
            tokens_file,
            devices,
            period: Duration::from_secs_f64(period.max(0.001)),
            outside,
            staff,
            operators,
            messages,
            interval: Duration::from_secs_f64(interval_secs.max(0.001)),
            warmup: Duration::from_secs_f64(warmup_secs.max(0.0)),
            reply_timeout: Duration::from_secs(reply_timeout_secs),
            sources,
            probe: ServerProbe { pid: server_pid },
            json,
        })
        .await
        .map(drop),
    }
}
