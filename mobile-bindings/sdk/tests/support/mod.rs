//! What the SDK's tests and the FFI's Python stories share: the real server on an ephemeral
//! port (SQLite, or PostgreSQL when `VIGIL_TEST_POSTGRES_URL` is set), its people, and a
//! console over plain HTTP.

#![allow(dead_code)]

use std::time::Duration;

use serde_json::{Value, json};
use vigil_sdk::Client;
use vigil_server::Settings;
use vigil_server::policy::Role;
use vigil_server::users::NewPerson;

pub const PASSWORD: &str = "correct horse battery staple";
/// Long enough for a loaded machine; every wait ends as soon as what it waits for happened.
pub const PATIENCE: Duration = Duration::from_secs(60);

pub struct Server {
    pub url: String,
    pub state: vigil_server::AppState,
    _dir: tempfile::TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
    pg: Option<(String, String)>,
    /// What it was started with, to start it again on the same database.
    settings: Settings,
    /// The serving task, joined when the server is stopped.
    serving: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some((admin, name)) = self.pg.take() {
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build();
                if let Ok(rt) = rt {
                    rt.block_on(async {
                        use sqlx::Connection;
                        if let Ok(mut c) = sqlx::PgConnection::connect(&admin).await {
                            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                            )))
                            .execute(&mut c)
                            .await;
                        }
                    });
                }
            })
            .join();
        }
    }
}

/// Starts the server; `None` (loudly, or failing under `VIGIL_TEST_REQUIRE_ALL=1`) when
/// PostgreSQL is asked for and not configured.
pub async fn server(postgres: bool) -> Option<Server> {
    server_with(postgres, |_| {}).await
}

/// As [`server`], with `tweak` applied to its settings first.
pub async fn server_with(postgres: bool, tweak: impl FnOnce(&mut Settings)) -> Option<Server> {
    let dir = tempfile::tempdir().expect("dir");
    let mut settings = Settings {
        database_url: format!("sqlite://{}/vigil.db", dir.path().display()),
        ..Settings::default()
    };
    let mut pg = None;
    if postgres {
        let Ok(admin) = std::env::var("VIGIL_TEST_POSTGRES_URL") else {
            assert!(
                std::env::var("VIGIL_TEST_REQUIRE_ALL").as_deref() != Ok("1"),
                "the PostgreSQL variant must run (VIGIL_TEST_REQUIRE_ALL=1)"
            );
            eprintln!(
                "\n*** SKIPPED the PostgreSQL variant: VIGIL_TEST_POSTGRES_URL is not set ***\n"
            );
            return None;
        };
        use sqlx::Connection;
        let name = format!("vigil_sdk_{}_{}", std::process::id(), rand_suffix());
        let mut c = sqlx::PgConnection::connect(&admin).await.expect("connect");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut c)
            .await
            .expect("create database");
        let base = admin
            .rsplit_once('/')
            .map_or(admin.as_str(), |(b, _)| b)
            .to_string();
        settings.database_url = format!("{base}/{name}");
        settings.db_max_connections = 5;
        pg = Some((admin, name));
    }
    tweak(&mut settings);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let (state, stop, serving) = serve(&settings, listener).await;
    Some(Server {
        url,
        state,
        _dir: dir,
        _stop: stop,
        pg,
        settings,
        serving: Some(serving),
    })
}

async fn serve(
    settings: &Settings,
    listener: tokio::net::TcpListener,
) -> (
    vigil_server::AppState,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let state = vigil_server::start(settings.clone())
        .await
        .expect("server starts");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = state.clone();
    let task = tokio::spawn(async move {
        let _ = vigil_server::serve(serving, listener, async {
            let _ = stopped.await;
        })
        .await;
    });
    (state, stop, task)
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

impl Server {
    /// Stops the server as a deploy or a crash-restart would: it closes every connection, writes
    /// what it holds and closes its database; returns once it has.
    pub async fn stop(&mut self) {
        let (spare, _) = tokio::sync::oneshot::channel();
        let _ = std::mem::replace(&mut self._stop, spare).send(());
        if let Some(task) = self.serving.take() {
            tokio::time::timeout(PATIENCE, task)
                .await
                .expect("the server stopped")
                .expect("the server's task");
        }
    }

    /// Starts the stopped server again on the same database and the same address, so that
    /// phones find it at the URL they know.
    pub async fn restart(&mut self) {
        assert!(self.serving.is_none(), "stop the server first");
        let addr = self.url.trim_start_matches("http://").to_string();
        // The port was just released: an attempt can meet it still held by the old socket.
        let listener = eventually("the port is free again", async || {
            tokio::net::TcpListener::bind(&addr).await.ok()
        })
        .await;
        let (state, stop, serving) = serve(&self.settings, listener).await;
        self.state = state;
        self._stop = stop;
        self.serving = Some(serving);
    }

    pub async fn person(&self, org: i64, role: Role) -> (i64, String) {
        let email = format!("p{}x{}@test.example", std::process::id(), rand_suffix());
        let person = NewPerson {
            email: email.clone(),
            name: format!("Test {email}"),
            password: Some(PASSWORD.into()),
            roles: vec![role],
            ..NewPerson::default()
        };
        let id = vigil_server::users::create_person(&self.state.db, org, person, None)
            .await
            .expect("person");
        (id, email)
    }

    pub async fn org(&self) -> i64 {
        let name = format!("O{}x{}", std::process::id(), rand_suffix());
        vigil_server::orgs::find_or_create(&self.state.db, &name, None)
            .await
            .expect("org")
    }

    /// An adviser's token, over plain HTTP as the console would.
    pub async fn adviser(&self, org: i64) -> Adviser {
        self.console(org, Role::Adviser).await
    }

    /// A new person of `org` with `role`, signed in at a console.
    pub async fn console(&self, org: i64, role: Role) -> Adviser {
        let (_, email) = self.person(org, role).await;
        self.login(&email).await
    }

    /// A new staff member of `org` and their phone, signed in, not yet connected; the phone's
    /// storage lives as long as the directory returned with it.
    pub async fn phone(&self, org: i64) -> (i64, tempfile::TempDir, Client) {
        let (user_id, email) = self.person(org, Role::Staff).await;
        let dir = tempfile::tempdir().expect("phone dir");
        let phone = Client::open(&self.url, &dir.path().join("phone.db"))
            .await
            .expect("open");
        phone.login(&email, PASSWORD).await.expect("login");
        (user_id, dir, phone)
    }

    /// Someone's console, signed in over plain HTTP.
    pub async fn login(&self, email: &str) -> Adviser {
        let http = reqwest::Client::new();
        let tokens: Value = http
            .post(format!("{}/api/v1/auth/login", self.url))
            .json(&json!({"email": email, "password": PASSWORD}))
            .send()
            .await
            .expect("login")
            .json()
            .await
            .expect("tokens");
        Adviser {
            http,
            url: self.url.clone(),
            token: tokens["access_token"].as_str().expect("token").into(),
        }
    }
}

pub struct Adviser {
    pub http: reqwest::Client,
    pub url: String,
    pub token: String,
}

impl Adviser {
    pub async fn post(&self, path: &str, body: Value) -> Value {
        let r = self
            .http
            .post(format!("{}/api/v1{path}", self.url))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .expect("post");
        assert!(r.status().is_success(), "{path}: {}", r.status());
        r.json().await.expect("json")
    }

    pub async fn get(&self, path: &str) -> Value {
        self.http
            .get(format!("{}/api/v1{path}", self.url))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("get")
            .json()
            .await
            .expect("json")
    }
}

pub fn square(lon0: f64) -> Value {
    json!({"type": "Feature", "properties": {"name": "Market", "security_level": 4},
        "geometry": {"type": "Polygon", "coordinates": [[[lon0, 0.0], [lon0 + 1.0, 0.0], [lon0 + 1.0, 1.0], [lon0, 1.0], [lon0, 0.0]]]}})
}

pub fn alert(target: Value) -> Value {
    json!({"translations": {"en": {"title": "Shelter in place", "body": "Gunfire near the market."},
        "ar": {"title": "ابقوا في أماكنكم", "body": "إطلاق نار قرب السوق."}},
        "severity": "severe", "target": target})
}

/// Waits until the alert's ledger shows its first recipient's acknowledgement.
pub async fn until_acknowledged(adviser: &Adviser, alert_id: i64) {
    eventually("the acknowledgement reached the ledger", async || {
        let rows = adviser.get(&format!("/alerts/{alert_id}/recipients")).await;
        (rows[0]["state"] == "acknowledged").then_some(())
    })
    .await;
}

/// Polls `check` until it answers (each try is cheap), for up to [`PATIENCE`].
pub async fn eventually<T>(what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
