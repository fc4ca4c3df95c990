//! What an idle connected phone costs, and how fast an hour offline drains:
//! `cargo run --release -p vigil-sdk --example idle` (about three minutes; `IDLE_SECS`,
//! default 150, sets the idle window; `IDLE_CLIENTS`, default 100, the clients for memory).
//!
//! The real server runs in a child process (this same program, `VIGIL_IDLE_ROLE=server`,
//! SQLite in a temporary directory), so that this process holds nothing but SDK clients:
//! - **wake-ups**: one client connected and idle; the voluntary context switches of every
//!   thread of this process (`/proc/self/task/*/status`) over the window, scaled to an hour.
//!   Each is a thread that slept until woken (a timer, a heartbeat, a frame, the SQLite worker
//!   asked something): the battery proxy. Preemptions (involuntary) are printed, not counted.
//! - **memory**: this process's RSS (`VmRSS`) before and after `IDLE_CLIENTS` more clients are
//!   signed in and connected, divided by their number (each has its own SQLite file, as a phone).
//! - **drain**: 360 fixes recorded offline, their times 10 s apart over the past hour, then the
//!   client connects: the time until `pending()` is empty, and until the server has stored all
//!   360 (its own count of `position_history`).

use std::io::{BufRead, Write};
use std::time::{Duration, Instant};

use vigil_sdk::{Client, Event, Fix, Timestamp};

const PASSWORD: &str = "correct horse battery staple";
const OFFLINE_FIXES: i64 = 360;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::var("VIGIL_IDLE_ROLE").as_deref() == Ok("server") {
        return server();
    }
    let clients: usize = env_or("IDLE_CLIENTS", 100);
    let idle_secs: u64 = env_or("IDLE_SECS", 150);
    let mut child = std::process::Command::new(std::env::current_exe()?)
        .env("VIGIL_IDLE_ROLE", "server")
        .env("IDLE_CLIENTS", (clients + 2).to_string())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    let mut to_server = child.stdin.take().ok_or("no stdin")?;
    let mut from_server = std::io::BufReader::new(child.stdout.take().ok_or("no stdout")?);
    let mut line = String::new();
    from_server.read_line(&mut line)?;
    let hello: serde_json::Value = serde_json::from_str(&line)?;
    let url = hello["url"].as_str().ok_or("no url")?.to_string();
    let people: Vec<(i64, String)> = hello["people"]
        .as_array()
        .ok_or("no people")?
        .iter()
        .filter_map(|p| Some((p["id"].as_i64()?, p["email"].as_str()?.to_string())))
        .collect();
    let mut stored = move |user_id: i64| -> Result<i64, Box<dyn std::error::Error>> {
        writeln!(to_server, "{user_id}")?;
        let mut line = String::new();
        from_server.read_line(&mut line)?;
        Ok(line.trim().parse()?)
    };

    // One thread runs every client: what a phone's app gives the SDK.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let dir = tempfile::tempdir()?;
    let (wakeups, per_client, rss_before, rss_after, threads) = rt.block_on(async {
        let (first, mut first_events) = connected(&url, &people[0].1, &dir, 0).await?;
        // Let the first connect's background work (places, hand-over) settle before counting.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let before = context_switches()?;
        let t = Instant::now();
        tokio::time::sleep(Duration::from_secs(idle_secs)).await;
        let after = context_switches()?;
        let (mut switches, mut preempted) = (0, 0);
        for (tid, (name, woken, forced)) in &after {
            let (w0, f0) = before.get(tid).map_or((0, 0), |(_, w, f)| (*w, *f));
            if *woken > w0 || *forced > f0 {
                eprintln!(
                    "thread {tid} ({name}): {} woken, {} preempted",
                    woken - w0,
                    forced - f0
                );
            }
            switches += woken - w0;
            preempted += forced - f0;
        }
        eprintln!("preempted (the machine's load, not counted): {preempted}");
        let window = t.elapsed().as_secs_f64();
        // Nothing may have dropped meanwhile, or the window measured reconnections.
        while let Ok(e) = first_events.try_recv() {
            if let Event::Disconnected { reason } = e {
                return Err(format!("disconnected during the idle window: {reason}").into());
            }
        }
        let wakeups = switches as f64 * 3600.0 / window;

        let rss_before = rss_kib()?;
        let mut many = Vec::with_capacity(clients);
        for (i, (_, email)) in people[2..2 + clients].iter().enumerate() {
            many.push(connected(&url, email, &dir, i + 2).await?);
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
        let rss_after = rss_kib()?;
        let threads = std::fs::read_dir("/proc/self/task")?.count();
        let per_client = (rss_after - rss_before) as f64 / clients as f64;
        for (c, _) in &many {
            c.stop();
        }
        first.stop();
        Ok::<_, Box<dyn std::error::Error>>((wakeups, per_client, rss_before, rss_after, threads))
    })?;

    // An hour offline: a fix every 10 s, then the network comes back.
    let (drain_id, drain_email) = people[1].clone();
    let (drained, all_stored) = rt
        .block_on(async {
            let phone = Client::open(&url, &dir.path().join("drain.db")).await?;
            phone.login(&drain_email, PASSWORD).await?;
            let now = Timestamp::now().0;
            for i in 0..OFFLINE_FIXES {
                phone
                    .record_fix(Fix {
                        lat: 0.5 + i as f64 * 1e-4,
                        lon: 10.5,
                        accuracy_m: Some(10.0),
                        recorded_at: Timestamp(now - 3_600_000 + i * 10_000),
                    })
                    .await?;
            }
            assert_eq!(phone.pending().await?, (OFFLINE_FIXES, 0));
            let t = Instant::now();
            phone.start();
            while phone.pending().await? != (0, 0) {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let drained = t.elapsed();
            Ok::<_, Box<dyn std::error::Error>>((phone, drained, t))
        })
        .map(|(phone, drained, t)| {
            // Acknowledged means committed: the count is there already; checked, not assumed.
            let mut all = None;
            while t.elapsed() < Duration::from_secs(60) {
                if stored(drain_id).ok() == Some(OFFLINE_FIXES) {
                    all = Some(t.elapsed());
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            phone.stop();
            (drained, all)
        })?;
    let all_stored = all_stored.ok_or("the server did not store all 360 fixes")?;
    drop(stored);
    let _ = child.wait();

    println!(
        "| idle window | wake-ups per hour (1 client) | RSS per idle connected client ({clients}) | threads | offline hour drained (pending 0) | all 360 stored | drain rate |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    println!(
        "| {idle_secs} s | {wakeups:.0} | {:.0} KiB ({rss_before} → {rss_after} KiB) | {threads} | {:.2} s | {:.2} s | {:.0} fixes/s |",
        per_client,
        drained.as_secs_f64(),
        all_stored.as_secs_f64(),
        OFFLINE_FIXES as f64 / drained.as_secs_f64()
    );
    Ok(())
}

/// A client signed in as `email`, started, and connected.
async fn connected(
    url: &str,
    email: &str,
    dir: &tempfile::TempDir,
    i: usize,
) -> Result<(Client, tokio::sync::broadcast::Receiver<Event>), Box<dyn std::error::Error>> {
    let phone = Client::open(url, &dir.path().join(format!("phone{i}.db"))).await?;
    phone.login(email, PASSWORD).await?;
    let mut events = phone.events();
    phone.start();
    tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            match events.recv().await {
                Ok(Event::Connected) => return Ok(()),
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(e) => return Err(e),
            }
        }
    })
    .await??;
    Ok((phone, events))
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Context switches of each thread of this process so far, by thread id: (name, voluntary,
/// involuntary). A voluntary one is the thread sleeping until something wakes it: a wake-up.
/// An involuntary one is the scheduler preempting it, which measures the machine's load.
type Switches = std::collections::BTreeMap<String, (String, u64, u64)>;

fn context_switches() -> Result<Switches, Box<dyn std::error::Error>> {
    let mut threads = std::collections::BTreeMap::new();
    for task in std::fs::read_dir("/proc/self/task")? {
        let task = task?;
        let status = std::fs::read_to_string(task.path().join("status"))?;
        let mut name = String::new();
        let (mut woken, mut forced) = (0, 0);
        for line in status.lines() {
            if let Some(n) = line.strip_prefix("Name:") {
                name = n.trim().to_string();
            } else if let Some(v) = line.strip_prefix("voluntary_ctxt_switches:") {
                woken = v.trim().parse::<u64>()?;
            } else if let Some(v) = line.strip_prefix("nonvoluntary_ctxt_switches:") {
                forced = v.trim().parse::<u64>()?;
            }
        }
        threads.insert(
            task.file_name().to_string_lossy().into_owned(),
            (name, woken, forced),
        );
    }
    Ok(threads)
}

fn rss_kib() -> Result<i64, Box<dyn std::error::Error>> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .ok_or("no VmRSS")?;
    Ok(line
        .trim_start_matches("VmRSS:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()?)
}

/// The child: the real server with its people; answers "how many fixes of user N" on stdin.
fn server() -> Result<(), Box<dyn std::error::Error>> {
    let people: usize = env_or("IDLE_CLIENTS", 102);
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let dir = tempfile::tempdir()?;
        let settings = vigil_server::Settings {
            database_url: format!("sqlite://{}/vigil.db", dir.path().display()),
            ..vigil_server::Settings::default()
        };
        let state = vigil_server::start(settings).await?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let org = vigil_server::orgs::find_or_create(&state.db, "Idle", None).await?;
        let mut list = Vec::with_capacity(people);
        for i in 0..people {
            let email = format!("idle{i}@test.example");
            let id = vigil_server::users::create_person(
                &state.db,
                org,
                vigil_server::users::NewPerson {
                    email: email.clone(),
                    name: format!("Idle {i}"),
                    password: Some(PASSWORD.into()),
                    roles: vec![vigil_server::policy::Role::Staff],
                    ..vigil_server::users::NewPerson::default()
                },
                None,
            )
            .await?;
            list.push(serde_json::json!({"id": id, "email": email}));
        }
        let serving = state.clone();
        tokio::spawn(async move {
            let _ = vigil_server::serve(serving, listener, std::future::pending()).await;
        });
        println!("{}", serde_json::json!({"url": url, "people": list}));
        std::io::stdout().flush()?;
        let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(
            tokio::io::stdin(),
        ));
        while let Some(line) = lines.next_line().await? {
            let user_id: i64 = line.trim().parse()?;
            let n: i64 = vigil_server::on_reader!(&state.db, pool => sqlx::query_scalar(
                "SELECT COUNT(*) FROM position_history WHERE subject_kind = 'user' AND subject_id = $1")
                .bind(user_id).fetch_one(pool).await)?;
            println!("{n}");
            std::io::stdout().flush()?;
        }
        Ok(())
    })
}
