//! The `vigil` binary as a newcomer and an operator use it: `demo`, `migrate`,
//! `admin create-user`, `vapid-keys`, and a clean stop on SIGTERM.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

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
    let mut child = vigil(dir.path())
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
