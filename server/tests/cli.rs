//! The `vigil` binary as a newcomer and an operator use it: `demo`, `migrate`,
//! `admin create-user`, `vapid-keys`, a clean stop on SIGTERM, and one server per database.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

#[path = "api/support.rs"]
#[allow(dead_code)]
mod support;

fn vigil(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vigil"));
    cmd.current_dir(dir)
        .env_remove("VIGIL_DATABASE_URL")
        .env_remove("VIGIL_BIND")
        .env("RUST_LOG", "warn");
    cmd
}

/// Reads the child's stdout until a line contains `marker`; returns that line.
fn wait_for_line(child: &mut Child, marker: &str) -> String {
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        match lines.next() {
            Some(Ok(line)) if line.contains(marker) => {
                // Keep draining so the server never writes into a closed pipe.
                std::thread::spawn(move || lines.for_each(drop));
                return line;
            }
            Some(Ok(_)) => continue,
            _ => break,
        }
    }
    panic!("the server never printed {marker:?}");
}

fn terminate(child: &mut Child) -> std::process::ExitStatus {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    child.wait().expect("exit status")
}

#[tokio::test]
async fn the_demo_command_serves_seeded_data_and_stops_cleanly() {
    let dir = tempfile::tempdir().expect("dir");
    let (mut child, url) = start_demo(dir.path());
    let info: Value = serde_json::from_slice(
        &std::fs::read(dir.path().join("vigil-demo.json")).expect("vigil-demo.json written"),
    )
    .expect("json");
    assert_eq!(info["url"], format!("{url}/"));
    let users = info["users"].as_array().expect("users");
    let roles: Vec<&str> = users
        .iter()
        .map(|u| u["role"].as_str().expect("role"))
        .collect();
    for role in [
        "staff",
        "operator",
        "adviser",
        "org_admin",
        "oversight",
        "admin",
    ] {
        assert!(roles.contains(&role), "a demo login for {role}");
    }
    let orgs: std::collections::HashSet<&str> = users
        .iter()
        .map(|u| u["org"].as_str().expect("org"))
        .collect();
    assert_eq!(orgs.len(), 2, "two organisations");

    let http = reqwest::Client::new();
    let oversight = users
        .iter()
        .find(|u| u["role"] == "oversight")
        .expect("oversight login");
    let tokens: Value = http
        .post(format!("{url}/api/v1/auth/login"))
        .json(&json!({"email": oversight["email"], "password": oversight["password"]}))
        .send()
        .await
        .expect("login")
        .json()
        .await
        .expect("tokens");
    let token = tokens["access_token"].as_str().expect("token");
    let get = |path: &str| http.get(format!("{url}{path}")).bearer_auth(token).send();
    let areas: Value = get("/api/v1/areas")
        .await
        .expect("areas")
        .json()
        .await
        .expect("json");
    let features = areas["features"].as_array().expect("features");
    let countries: Vec<&str> = features
        .iter()
        .filter(|f| f["properties"]["kind"] == "country")
        .map(|f| f["properties"]["name"].as_str().expect("name"))
        .collect();
    assert_eq!(countries.len(), 3, "{countries:?}");
    assert!(countries.contains(&"South Sudan"));
    assert!(
        features
            .iter()
            .filter(|f| f["properties"]["kind"] == "duty_station")
            .count()
            >= 9
    );
    let orgs: Value = get("/api/v1/organisations")
        .await
        .expect("orgs")
        .json()
        .await
        .expect("json");
    let mut staff = 0;
    for org in orgs.as_array().expect("orgs") {
        let people: Value = get(&format!("/api/v1/organisations/{}/users", org["id"]))
            .await
            .expect("people")
            .json()
            .await
            .expect("json");
        staff += people.as_array().expect("people").len();
    }
    assert!(staff >= 40, "a few dozen staff, got {staff}");

    let status = terminate(&mut child);
    assert!(
        status.success(),
        "SIGTERM stops the server cleanly: {status:?}"
    );

    // Started again on the same file, the demo reuses its data instead of failing.
    let mut again = vigil(dir.path())
        .arg("demo")
        .env("VIGIL_BIND", "127.0.0.1:0")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("second start");
    wait_for_line(&mut again, "Vigil demo is running at");
    assert!(terminate(&mut again).success());
}

/// Starts `vigil demo` in `dir` on an ephemeral port; returns the process and its base URL.
fn start_demo(dir: &Path) -> (Child, String) {
    let mut child = vigil(dir)
        .arg("demo")
        .env("VIGIL_BIND", "127.0.0.1:0")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("vigil demo starts");
    let line = wait_for_line(&mut child, "Vigil demo is running at");
    let url = line
        .rsplit(' ')
        .next()
        .expect("url")
        .trim_end_matches('/')
        .to_string();
    (child, url)
}

/// How many people an adviser's alert to the named demo area would reach, as the composer's
/// preview counts them.
async fn preview_of_area(url: &str, adviser: &str, area_name: &str) -> Value {
    let http = reqwest::Client::new();
    let tokens: Value = http
        .post(format!("{url}/api/v1/auth/login"))
        .json(&json!({"email": adviser, "password": vigil_server::demo::DEMO_PASSWORD}))
        .send()
        .await
        .expect("login")
        .json()
        .await
        .expect("tokens");
    let token = tokens["access_token"].as_str().expect("token");
    let areas: Value = http
        .get(format!("{url}/api/v1/areas"))
        .bearer_auth(token)
        .send()
        .await
        .expect("areas")
        .json()
        .await
        .expect("json");
    let area = areas["features"]
        .as_array()
        .expect("features")
        .iter()
        .find(|f| f["properties"]["name"] == area_name)
        .unwrap_or_else(|| panic!("the demo has {area_name:?}"));
    let res = http
        .post(format!("{url}/api/v1/alerts/preview"))
        .bearer_auth(token)
        .json(&json!({"areas": [area["id"]]}))
        .send()
        .await
        .expect("preview");
    assert_eq!(res.status(), 200);
    res.json().await.expect("preview json")
}

#[tokio::test]
async fn a_newcomers_first_alert_to_a_demo_area_reaches_the_staff_seeded_there() {
    let dir = tempfile::tempdir().expect("dir");
    // The very first start: the demo is seeded in this process.
    let (mut first, url) = start_demo(dir.path());
    let fresh = preview_of_area(&url, "adviser@rca.example", "Malakal duty station").await;
    assert!(terminate(&mut first).success());
    // Four RCA staff have positions around Malakal.
    assert_eq!(fresh["total"], 4, "on the first start: {fresh}");
    assert_eq!(fresh["by_reason"]["inside_area"], 4, "{fresh}");

    // A restart reads the same people back from storage: the same count.
    let (mut again, url) = start_demo(dir.path());
    let restarted = preview_of_area(&url, "adviser@rca.example", "Malakal duty station").await;
    assert!(terminate(&mut again).success());
    assert_eq!(restarted, fresh, "the same audience after a restart");
}

#[test]
fn an_operator_sets_up_a_deployment_from_the_command_line() {
    let dir = tempfile::tempdir().expect("dir");
    let db = format!("sqlite://{}/prod.db", dir.path().display());
    let out = vigil(dir.path())
        .arg("migrate")
        .env("VIGIL_DATABASE_URL", &db)
        .output()
        .expect("migrate");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let create = |email: &str| {
        vigil(dir.path())
            .args([
                "admin",
                "create-user",
                "--email",
                email,
                "--name",
                "First Admin",
            ])
            .args([
                "--org",
                "UNDSS",
                "--org-name",
                "Department of Safety and Security",
            ])
            .args([
                "--role",
                "org_admin",
                "--system-admin",
                "--password-env",
                "FIRST_PW",
            ])
            .env("VIGIL_DATABASE_URL", &db)
            .env("FIRST_PW", "a long first password")
            .output()
            .expect("create-user")
    };
    let out = create("first@undss.example");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("created user"));
    let again = create("FIRST@undss.example");
    assert!(!again.status.success(), "the same email twice is refused");
    assert!(String::from_utf8_lossy(&again.stderr).contains("already registered"));

    let key = |args: &[&str]| {
        let out = vigil(dir.path())
            .args(args)
            .env("VIGIL_DATABASE_URL", &db)
            .output()
            .expect("vapid-keys");
        assert!(out.status.success());
        String::from_utf8(out.stdout)
            .expect("utf8")
            .trim()
            .to_string()
    };
    let stored = key(&["vapid-keys"]);
    assert_eq!(stored.len(), 87, "a base64url P-256 point: {stored}");
    assert_eq!(key(&["vapid-keys"]), stored, "the key pair is persisted");
    assert_ne!(key(&["vapid-keys", "--new"]), stored);

    let bad = vigil(dir.path())
        .arg("migrate")
        .env("VIGIL_DATABASE_URL", "mysql://nope")
        .output()
        .expect("bad url");
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unsupported database URL"));
}

/// A `vigil serve` process on a free port.
struct Serve {
    child: Child,
    url: String,
}

impl Serve {
    /// Spawns `vigil serve` on `db`; does not wait for it.
    fn spawn(dir: &Path, db: &str) -> Serve {
        Serve::spawn_with(dir, db, &[])
    }

    /// Spawns `vigil serve` on `db` with more `VIGIL_*` settings; does not wait for it.
    fn spawn_with(dir: &Path, db: &str, env: &[(&str, &str)]) -> Serve {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = vigil(dir)
            .arg("serve")
            .env("VIGIL_DATABASE_URL", db)
            .env("VIGIL_BIND", format!("127.0.0.1:{port}"))
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("vigil serve starts");
        Serve {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    /// Spawns `vigil serve` and waits until it answers `/readyz`.
    async fn ready(dir: &Path, db: &str) -> Serve {
        Serve::ready_with(dir, db, &[]).await
    }

    /// Like [`Serve::ready`], with more `VIGIL_*` settings.
    async fn ready_with(dir: &Path, db: &str, env: &[(&str, &str)]) -> Serve {
        let mut serve = Serve::spawn_with(dir, db, env);
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Ok(r) = http.get(format!("{}/readyz", serve.url)).send().await
                && r.status().is_success()
            {
                return serve;
            }
            if let Ok(Some(status)) = serve.child.try_wait() {
                panic!("vigil serve exited ({status}): {}", serve.stderr());
            }
            assert!(Instant::now() < deadline, "vigil serve never became ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits for the process to end by itself; returns its status and what it wrote to stderr.
    async fn exited(mut self) -> (std::process::ExitStatus, String) {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return (status, self.stderr());
            }
            assert!(Instant::now() < deadline, "the second server never gave up");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn stderr(&mut self) -> String {
        let mut text = String::new();
        if let Some(mut err) = self.child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut err, &mut text);
        }
        text
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The story on either database: a second server is refused while the first runs, and a
/// replacement starts at once after the first was killed.
async fn one_server_per_database(dir: &Path, db: &str) {
    let first = Serve::ready(dir, db).await;

    let (status, stderr) = Serve::spawn(dir, db).exited().await;
    assert!(!status.success(), "the second server is refused: {status}");
    assert!(
        stderr.contains("another Vigil server is already running on this database"),
        "it says why: {stderr}"
    );
    assert!(
        stderr.contains("nats_url"),
        "and what would allow it: {stderr}"
    );
    let http = reqwest::Client::new();
    let still = http
        .get(format!("{}/readyz", first.url))
        .send()
        .await
        .expect("the first server still answers");
    assert!(still.status().is_success());

    // kill -9 leaves no time to unlock: the database or the kernel frees the lock.
    drop(first);
    let mut replacement = Serve::ready(dir, db).await;
    let status = terminate(&mut replacement.child);
    assert!(status.success(), "a clean stop: {status:?}");
    // After a clean stop the next one starts too.
    let _again = Serve::ready(dir, db).await;
}

#[tokio::test]
async fn a_second_server_on_the_same_postgresql_database_is_refused_at_start() {
    let Some(pg) =
        support::PgDatabase::create("vigil_cli_", "the PostgreSQL single-server lock test").await
    else {
        return;
    };
    let dir = tempfile::tempdir().expect("dir");
    one_server_per_database(dir.path(), &pg.url).await;
}

#[tokio::test]
async fn a_second_server_on_the_same_sqlite_file_is_refused_at_start() {
    let dir = tempfile::tempdir().expect("dir");
    let db = format!("sqlite://{}/one.db", dir.path().display());
    one_server_per_database(dir.path(), &db).await;
}

#[tokio::test]
async fn a_cluster_on_sqlite_is_refused_at_start_and_says_why() {
    let dir = tempfile::tempdir().expect("dir");
    let db = format!("sqlite://{}/one.db", dir.path().display());
    let env = [("VIGIL_NATS_URL", "nats://127.0.0.1:4222")];
    let (status, stderr) = Serve::spawn_with(dir.path(), &db, &env).exited().await;
    assert!(!status.success(), "refused: {status}");
    assert!(
        stderr.contains("SQLite database serves one node") && stderr.contains("postgres://"),
        "it says why and what to do: {stderr}"
    );
}

/// A cluster's nodes share the database; a server that is not one of them would diverge from
/// them, so it is refused while they run, and the other way round.
#[tokio::test]
async fn a_server_outside_the_cluster_is_refused_beside_its_nodes() {
    let Some(pg) =
        support::PgDatabase::create("vigil_cli_", "the PostgreSQL single-server lock test").await
    else {
        return;
    };
    let Ok(nats) = std::env::var("VIGIL_TEST_NATS_URL") else {
        support::skipped("the cluster lock test", "VIGIL_TEST_NATS_URL is not set");
        return;
    };
    let dir = tempfile::tempdir().expect("dir");
    let node = |id: &'static str| [("VIGIL_NATS_URL", nats.as_str()), ("VIGIL_NODE_ID", id)];
    let first = Serve::ready_with(dir.path(), &pg.url, &node("one")).await;
    let second = Serve::ready_with(dir.path(), &pg.url, &node("two")).await;
    let (status, stderr) = Serve::spawn(dir.path(), &pg.url).exited().await;
    assert!(!status.success(), "a lone server is refused: {status}");
    assert!(
        stderr.contains("another Vigil server is already running"),
        "{stderr}"
    );
    drop((first, second));
    let lone = Serve::ready(dir.path(), &pg.url).await;
    let (status, stderr) = Serve::spawn_with(dir.path(), &pg.url, &node("three"))
        .exited()
        .await;
    assert!(
        !status.success(),
        "a node beside a lone server is refused: {status}"
    );
    assert!(
        stderr.contains("another Vigil server is already running"),
        "{stderr}"
    );
    drop(lone);
}
