//! The test harness: a real server on an ephemeral port, on a throwaway SQLite file or a
//! throwaway PostgreSQL database, and an HTTP client that talks to it as a browser would.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use reqwest::Method;
use serde_json::{Value, json};
use sqlx::Connection;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use vigil_server::policy::Role;
use vigil_server::users::NewPerson;
use vigil_server::{AppState, Settings};

/// Password of every user the harness creates.
pub const PASSWORD: &str = "correct horse battery staple";

/// Which database a test runs on.
#[derive(Clone, Copy, Debug)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs each test body twice: on SQLite, and on PostgreSQL when `VIGIL_TEST_POSTGRES_URL` is set.
#[macro_export]
macro_rules! on_both_databases {
    ($(async fn $name:ident($srv:ident: TestServer) $body:block)*) => {$(
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            use $crate::support::{Backend, TestServer};

            async fn run($srv: TestServer) $body

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let server = TestServer::start(Backend::Sqlite).await.expect("SQLite server");
                run(server).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if let Some(server) = TestServer::start(Backend::Postgres).await {
                    run(server).await;
                }
            }
        }
    )*};
}

/// Says loudly, past the test harness's output capture, that a test did not run; fails the
/// test instead when `VIGIL_TEST_REQUIRE_ALL=1` (as `.ci/run` sets it: CI has PostgreSQL and a
/// browser, so a skip there means a green run that did not test everything).
#[track_caller]
pub fn skipped(what: &str, why: &str) {
    if std::env::var("VIGIL_TEST_REQUIRE_ALL").is_ok_and(|v| v == "1") {
        panic!(
            "{what} did not run ({why}), and VIGIL_TEST_REQUIRE_ALL=1 requires every test to run"
        );
    }
    let _ = writeln!(std::io::stderr(), "\n*** SKIPPED {what}: {why} ***\n");
}

/// A running server and the database behind it; dropping it stops both.
pub struct TestServer {
    /// `http://127.0.0.1:PORT`
    pub url: String,
    /// The server's state, for the few checks that must look at storage directly.
    pub state: AppState,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    // Dropped after the server is told to stop (fields drop after `Drop::drop`).
    _pg: Option<PgDatabase>,
    _dir: Option<tempfile::TempDir>,
}

/// A throwaway database on `VIGIL_TEST_POSTGRES_URL`, dropped with this guard.
pub struct PgDatabase {
    /// The server's administrative URL (the variable's value).
    pub admin: String,
    /// The database's name.
    pub name: String,
    /// A URL of the new database.
    pub url: String,
}

impl PgDatabase {
    /// A new database named from `prefix`; `None`, with a loud notice that `what` did not run,
    /// when `VIGIL_TEST_POSTGRES_URL` is not set.
    pub async fn create(prefix: &str, what: &str) -> Option<PgDatabase> {
        let Ok(admin) = std::env::var("VIGIL_TEST_POSTGRES_URL") else {
            skipped(what, "VIGIL_TEST_POSTGRES_URL is not set");
            return None;
        };
        let name = unique(prefix);
        let mut conn = sqlx::PgConnection::connect(&admin)
            .await
            .expect("connect to VIGIL_TEST_POSTGRES_URL");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .expect("create test database");
        let url = replace_db_name(&admin, &name);
        Some(PgDatabase { admin, name, url })
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        drop_pg_database(self.admin.clone(), self.name.clone());
    }
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A name no other call in this test run returns.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}{}x{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

impl TestServer {
    /// Starts a server on a fresh database; `None` (with a loud notice) if PostgreSQL is not
    /// configured.
    pub async fn start(backend: Backend) -> Option<TestServer> {
        Self::start_with(backend, |_| {}).await
    }

    /// Like [`start`](Self::start), with settings adjusted by `tweak`.
    pub async fn start_with(
        backend: Backend,
        tweak: impl FnOnce(&mut Settings),
    ) -> Option<TestServer> {
        let mut settings = Settings::default();
        let mut dir = None;
        let mut pg = None;
        match backend {
            Backend::Sqlite => {
                let d = tempfile::tempdir().expect("temp dir");
                settings.database_url = format!("sqlite://{}/vigil.db", d.path().display());
                dir = Some(d);
            }
            Backend::Postgres => {
                let db = PgDatabase::create("vigil_test_", "PostgreSQL variant").await?;
                settings.database_url = db.url.clone();
                settings.db_max_connections = 5;
                pg = Some(db);
            }
        }
        tweak(&mut settings);
        let state = vigil_server::start(settings).await.expect("server starts");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let (stop, stopped) = oneshot::channel::<()>();
        let serving = state.clone();
        let task = tokio::spawn(async move {
            let _ = vigil_server::serve(serving, listener, async {
                let _ = stopped.await;
            })
            .await;
        });
        Some(TestServer {
            url,
            state,
            stop: Some(stop),
            task: Some(task),
            _pg: pg,
            _dir: dir,
        })
    }

    /// A client with no credentials.
    pub fn anon(&self) -> Client {
        Client::at(&self.url)
    }

    /// Creates a user directly in storage (as `vigil admin create-user` does) and logs in.
    pub async fn user(&self, org_id: i64, roles: &[Role], system_admin: bool) -> Client {
        let email = format!("{}@test.example", unique("u"));
        let person = NewPerson {
            email: email.clone(),
            name: format!("Test {email}"),
            password: Some(PASSWORD.into()),
            roles: roles.to_vec(),
            system_admin,
            ..NewPerson::default()
        };
        let id = vigil_server::users::create_person(&self.state.db, org_id, person, None)
            .await
            .expect("create user");
        let mut client = self.anon().login(&email, PASSWORD).await;
        client.user_id = id;
        client
    }

    /// A fresh organisation; returns its id.
    pub async fn org(&self) -> i64 {
        vigil_server::orgs::find_or_create(&self.state.db, &unique("O"), None)
            .await
            .expect("org")
    }

    /// Stops the server and waits for it to finish.
    pub async fn stop(mut self) {
        self.shutdown().await;
    }

    /// Stops the server and waits until `serve` has returned, keeping the database.
    pub async fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

fn replace_db_name(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let host_part = match base[scheme_end..].find('/') {
        Some(slash) => &base[..scheme_end + slash],
        None => base,
    };
    match query {
        Some(q) => format!("{host_part}/{name}?{q}"),
        None => format!("{host_part}/{name}"),
    }
}

/// An HTTP client, optionally signed in.
#[derive(Clone)]
pub struct Client {
    base: String,
    http: reqwest::Client,
    /// The access token, once signed in.
    pub token: Option<String>,
    /// The refresh token, once signed in.
    pub refresh: Option<String>,
    /// The signed-in user's id (set by [`TestServer::user`]).
    pub user_id: i64,
}

impl Client {
    /// A client with no credentials for the server at `base` (e.g. a spawned `vigil` process).
    pub fn at(base: &str) -> Client {
        Client {
            base: base.to_string(),
            http: reqwest::Client::new(),
            token: None,
            refresh: None,
            user_id: 0,
        }
    }

    /// The same credentials against another server process on the same database.
    pub fn rebased(&self, base: &str) -> Client {
        Client {
            base: base.to_string(),
            ..self.clone()
        }
    }
}

/// A response: status, headers and body (JSON if it parses, else a string).
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Resp {
    /// Panics with the body unless the status is `expected`.
    #[track_caller]
    pub fn expect(self, expected: u16) -> Value {
        assert_eq!(
            self.status, expected,
            "unexpected status; body: {}",
            self.body
        );
        self.body
    }

    /// Asserts an RFC 9457 problem with this status and returns its body.
    #[track_caller]
    pub fn problem(self, expected: u16) -> Value {
        assert_eq!(
            self.status, expected,
            "unexpected status; body: {}",
            self.body
        );
        let ct = self
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        assert_eq!(ct, "application/problem+json", "errors are problem+json");
        assert_eq!(self.body["status"], expected);
        assert!(self.body["title"].is_string() && self.body["detail"].is_string());
        self.body
    }
}

impl Client {
    /// Logs in and keeps the tokens; panics on failure.
    pub async fn login(mut self, email: &str, password: &str) -> Client {
        let body = self
            .post(
                "/api/v1/auth/login",
                json!({ "email": email, "password": password }),
            )
            .await
            .expect(200);
        self.token = body["access_token"].as_str().map(str::to_string);
        self.refresh = body["refresh_token"].as_str().map(str::to_string);
        self
    }

    /// The same client with another bearer token.
    pub fn with_token(&self, token: &str) -> Client {
        Client {
            token: Some(token.into()),
            ..self.clone()
        }
    }

    /// Sends any request with an optional JSON body.
    pub async fn send(&self, method: Method, path: &str, body: Option<Value>) -> Resp {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        Self::finish(req).await
    }

    /// Sends a raw body with the given content type.
    pub async fn send_raw(
        &self,
        method: Method,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Resp {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("content-type", content_type)
            .body(body);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        Self::finish(req).await
    }

    /// Sends a request built elsewhere and reads the response.
    pub async fn finish(req: reqwest::RequestBuilder) -> Resp {
        let res = req.send().await.expect("request reaches the server");
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let text = res.text().await.expect("body");
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Resp {
            status,
            headers,
            body,
        }
    }

    /// GET.
    pub async fn get(&self, path: &str) -> Resp {
        self.send(Method::GET, path, None).await
    }

    /// POST with JSON.
    pub async fn post(&self, path: &str, body: Value) -> Resp {
        self.send(Method::POST, path, Some(body)).await
    }

    /// PUT with JSON.
    pub async fn put(&self, path: &str, body: Value) -> Resp {
        self.send(Method::PUT, path, Some(body)).await
    }

    /// PATCH with JSON.
    pub async fn patch(&self, path: &str, body: Value) -> Resp {
        self.send(Method::PATCH, path, Some(body)).await
    }

    /// DELETE.
    pub async fn delete(&self, path: &str) -> Resp {
        self.send(Method::DELETE, path, None).await
    }
}

/// Runs async clean-up from a `Drop` impl: outside any async context, on a short-lived runtime
/// of its own thread, so that it happens even if the test panicked.
pub fn clean_up<F>(work: impl FnOnce() -> F + Send + 'static)
where
    F: std::future::Future<Output = ()>,
{
    let _ = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(work());
    })
    .join();
}

/// Drops a throwaway PostgreSQL database, from a `Drop` impl (see [`clean_up`]).
pub fn drop_pg_database(admin_url: String, name: String) {
    clean_up(move || async move {
        if let Ok(mut conn) = sqlx::PgConnection::connect(&admin_url).await {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
            )))
            .execute(&mut conn)
            .await;
        }
    });
}
