//! Fakes of the two services outside this machine that Vigil delivers through — a Web Push
//! service and an SMS gateway — as real HTTP servers on 127.0.0.1 that check what they receive
//! the way the real ones do, and record it for the test to read.
//!
//! [`FakePushService`] plays both the push service and the browsers behind it: it hands out
//! browser subscriptions (a fresh P-256 key pair and auth secret each), verifies every message's
//! VAPID token (ES256 with the `k=` key, `aud` = its own origin, `exp` within 24 hours, a
//! `mailto:`/`https:` `sub`) and decrypts the aes128gcm body with the browser's private key.
//! [`FakeSmsGateway`] speaks Twilio's Messages API (Basic auth, form fields, Twilio's error
//! shape) and a generic JSON/form gateway (a bearer token). Either can be told to answer a
//! chosen endpoint or number with 404, 410, 429, 500…, or (SMS) not to answer in time, and to
//! take a while over every answer; both count the requests they are answering at once.

#![allow(dead_code)] // each test module uses part of the API; the alert tests use the rest

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, post};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use p256::elliptic_curve::sec1::ToEncodedPoint;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use vigil_server::Settings;
use vigil_server::config::{SmsBodyFormat, SmsProvider};

/// Runs each test body on SQLite and (when configured) PostgreSQL, like `on_both_databases!`,
/// with the server's settings adjusted by `$tweak` (a closure over `&mut Settings`).
#[macro_export]
macro_rules! on_both_databases_with {
    ($tweak:expr; $(async fn $name:ident($srv:ident: TestServer) $body:block)*) => {$(
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            use $crate::support::{Backend, TestServer};

            async fn run($srv: TestServer) $body

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let server = TestServer::start_with(Backend::Sqlite, $tweak).await.expect("SQLite server");
                run(server).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if let Some(server) = TestServer::start_with(Backend::Postgres, $tweak).await {
                    run(server).await;
                }
            }
        }
    )*};
}

/// Settings under which the server may push to a fake on 127.0.0.1.
pub fn allow_local_push(settings: &mut Settings) {
    settings.push_allow_insecure_localhost = true;
}

/// An HTTP server on an ephemeral loopback port, stopped when dropped.
struct Served {
    url: String,
    task: JoinHandle<()>,
}

impl Drop for Served {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(app: Router) -> Served {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind a fake");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Served { url, task }
}

/// Waits until `count()` reaches `n`, or panics after `timeout`.
async fn wait_until(notify: &Notify, timeout: Duration, mut ready: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let notified = notify.notified();
        if ready() {
            return;
        }
        if tokio::time::timeout_at(deadline, notified).await.is_err() {
            assert!(
                ready(),
                "the fake did not receive what was expected in {timeout:?}"
            );
            return;
        }
    }
}

/// Requests a fake is answering right now, and the most it ever answered at once.
#[derive(Default)]
struct InFlight {
    now: AtomicUsize,
    most: AtomicUsize,
}

impl InFlight {
    /// Counts a request until the returned guard is dropped (when its handler returns).
    fn enter(&self) -> InFlightGuard<'_> {
        let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(now, Ordering::SeqCst);
        InFlightGuard(self)
    }

    fn most(&self) -> usize {
        self.most.load(Ordering::SeqCst)
    }
}

struct InFlightGuard<'a>(&'a InFlight);

impl Drop for InFlightGuard<'_> {
    fn drop(&mut self) {
        self.0.now.fetch_sub(1, Ordering::SeqCst);
    }
}

// ------------------------------------------------------------------------------------------
// Web Push
// ------------------------------------------------------------------------------------------

/// A browser's push subscription, as its service worker would hand it to Vigil.
#[derive(Clone, Debug)]
pub struct Browser {
    /// The push service URL that wakes this browser.
    pub endpoint: String,
    /// Its P-256 public key, base64url (65 bytes).
    pub p256dh: String,
    /// Its auth secret, base64url (16 bytes).
    pub auth: String,
}

impl Browser {
    /// `PushSubscription.toJSON()`, the body of `POST /api/v1/push/subscriptions`.
    pub fn subscription(&self) -> Value {
        json!({
            "endpoint": self.endpoint,
            "expirationTime": null,
            "keys": {"p256dh": self.p256dh, "auth": self.auth},
        })
    }
}

/// The VAPID claims of a message, after the signature checked out.
#[derive(Clone, Debug, serde::Deserialize)]
pub struct VapidClaims {
    /// The audience: the push service's origin.
    pub aud: String,
    /// Expiry, seconds since the epoch.
    pub exp: u64,
    /// The sender's contact.
    pub sub: String,
}

/// A message the fake push service accepted as well-formed (whatever it then answered).
#[derive(Clone, Debug)]
pub struct PushReceived {
    /// The endpoint it was posted to.
    pub endpoint: String,
    /// The decrypted payload.
    pub plaintext: Vec<u8>,
    /// The payload as JSON, if it is.
    pub json: Option<Value>,
    /// The verified VAPID claims.
    pub claims: VapidClaims,
    /// The `k=` public key of the `Authorization` header, base64url.
    pub vapid_key: String,
    /// The `TTL` header.
    pub ttl: u64,
    /// The `Urgency` header.
    pub urgency: Option<String>,
    /// The `Topic` header.
    pub topic: Option<String>,
    /// The status the fake answered.
    pub answered: u16,
}

/// A request the fake push service refused as malformed, unauthorised or undecryptable.
#[derive(Clone, Debug)]
pub struct PushRejected {
    /// The path posted to.
    pub path: String,
    /// Why.
    pub reason: String,
    /// The status answered.
    pub status: u16,
}

struct BrowserKeys {
    endpoint: String,
    private: Vec<u8>,
    public: Vec<u8>,
    auth: Vec<u8>,
}

#[derive(Default)]
struct PushShared {
    origin: Mutex<String>,
    browsers: Mutex<HashMap<String, BrowserKeys>>,
    answers: Mutex<HashMap<String, u16>>,
    received: Mutex<Vec<PushReceived>>,
    rejected: Mutex<Vec<PushRejected>>,
    delay: Mutex<Duration>,
    in_flight: InFlight,
    notify: Notify,
}

/// A Web Push service (and the browsers subscribed to it) on 127.0.0.1.
pub struct FakePushService {
    /// `http://127.0.0.1:PORT`: the origin VAPID tokens must name.
    pub url: String,
    shared: Arc<PushShared>,
    _served: Served,
}

impl FakePushService {
    /// Starts the fake on an ephemeral port.
    pub async fn start() -> FakePushService {
        let shared = Arc::new(PushShared::default());
        let app = Router::new()
            .route("/push/{id}", post(push_message))
            .with_state(shared.clone());
        let served = serve(app).await;
        *lock(&shared.origin) = served.url.clone();
        FakePushService {
            url: served.url.clone(),
            shared,
            _served: served,
        }
    }

    /// A new browser subscribed at this service: fresh keys, a fresh endpoint.
    pub fn browser(&self) -> Browser {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let secret = p256::SecretKey::random(&mut rand::rngs::OsRng);
        let public = secret
            .public_key()
            .to_encoded_point(false)
            .as_bytes()
            .to_vec();
        let auth: [u8; 16] = rand::random();
        let endpoint = format!("{}/push/{id}", self.url);
        let browser = Browser {
            endpoint: endpoint.clone(),
            p256dh: URL_SAFE_NO_PAD.encode(&public),
            auth: URL_SAFE_NO_PAD.encode(auth),
        };
        lock(&self.shared.browsers).insert(
            id,
            BrowserKeys {
                endpoint,
                private: secret.to_bytes().to_vec(),
                public,
                auth: auth.to_vec(),
            },
        );
        browser
    }

    /// An endpoint on this service that no browser holds (answers 404, as for an unsubscribed
    /// browser).
    pub fn unknown_endpoint(&self) -> String {
        format!("{}/push/{}", self.url, uuid::Uuid::new_v4().simple())
    }

    /// From now on, well-formed messages to `endpoint` are answered with `status` (410 Gone,
    /// 404, 429 and 503 with `Retry-After: 30`, 500, 413…); 201 restores the default.
    pub fn answer(&self, endpoint: &str, status: u16) {
        lock(&self.shared.answers).insert(endpoint.to_string(), status);
    }

    /// From now on, every answer takes `delay` (a busy push service), so that messages overlap.
    pub fn delay(&self, delay: Duration) {
        *lock(&self.shared.delay) = delay;
    }

    /// The most messages the service was answering at once.
    pub fn most_in_flight(&self) -> usize {
        self.shared.in_flight.most()
    }

    /// Every well-formed message so far, in arrival order.
    pub fn received(&self) -> Vec<PushReceived> {
        lock(&self.shared.received).clone()
    }

    /// The well-formed messages posted to `endpoint`.
    pub fn received_at(&self, endpoint: &str) -> Vec<PushReceived> {
        self.received()
            .into_iter()
            .filter(|m| m.endpoint == endpoint)
            .collect()
    }

    /// Every refused request so far (a bad VAPID token, an undecryptable body, an unknown
    /// endpoint).
    pub fn rejected(&self) -> Vec<PushRejected> {
        lock(&self.shared.rejected).clone()
    }

    /// Waits until every endpoint of `endpoints` has received at least one well-formed message
    /// (panics after `timeout`).
    pub async fn wait_for_each(
        &self,
        endpoints: &[String],
        timeout: Duration,
    ) -> Vec<PushReceived> {
        wait_until(&self.shared.notify, timeout, || {
            let got = lock(&self.shared.received);
            endpoints
                .iter()
                .all(|e| got.iter().any(|m| &m.endpoint == e))
        })
        .await;
        self.received()
    }

    /// Waits until at least `n` well-formed messages arrived (panics after `timeout`).
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<PushReceived> {
        wait_until(&self.shared.notify, timeout, || {
            lock(&self.shared.received).len() >= n
        })
        .await;
        self.received()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

async fn push_message(
    State(shared): State<Arc<PushShared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let _answering = shared.in_flight.enter();
    let path = format!("/push/{id}");
    let refuse = |status: StatusCode, reason: String| {
        lock(&shared.rejected).push(PushRejected {
            path: path.clone(),
            reason: reason.clone(),
            status: status.as_u16(),
        });
        shared.notify.notify_waiters();
        (status, reason).into_response()
    };
    let origin = lock(&shared.origin).clone();
    let (endpoint, private, public, auth) = match lock(&shared.browsers).get(&id) {
        Some(b) => (
            b.endpoint.clone(),
            b.private.clone(),
            b.public.clone(),
            b.auth.clone(),
        ),
        None => {
            let endpoint = format!("{origin}{path}");
            let status = lock(&shared.answers).get(&endpoint).copied().unwrap_or(404);
            return refuse(
                StatusCode::from_u16(status).unwrap_or(StatusCode::NOT_FOUND),
                "no such subscription".into(),
            );
        }
    };
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    if text("content-encoding").as_deref() != Some("aes128gcm") {
        return refuse(
            StatusCode::BAD_REQUEST,
            format!(
                "Content-Encoding is {:?}, not aes128gcm",
                text("content-encoding")
            ),
        );
    }
    let Some(ttl) = text("ttl").and_then(|t| t.parse::<u64>().ok()) else {
        return refuse(StatusCode::BAD_REQUEST, "no TTL header".into());
    };
    let (claims, vapid_key) = match check_vapid(text("authorization").as_deref(), &origin) {
        Ok(ok) => ok,
        Err(reason) => return refuse(StatusCode::UNAUTHORIZED, reason),
    };
    let components = ece::EcKeyComponents::new(private, public);
    let plaintext = match ece::decrypt(&components, &auth, &body) {
        Ok(p) => p,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, format!("cannot decrypt: {e}")),
    };
    let delay = *lock(&shared.delay);
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let answered = lock(&shared.answers).get(&endpoint).copied().unwrap_or(201);
    lock(&shared.received).push(PushReceived {
        endpoint,
        json: serde_json::from_slice(&plaintext).ok(),
        plaintext,
        claims,
        vapid_key,
        ttl,
        urgency: text("urgency"),
        topic: text("topic"),
        answered,
    });
    shared.notify.notify_waiters();
    let status = StatusCode::from_u16(answered).unwrap_or(StatusCode::CREATED);
    let mut response = status.into_response();
    if matches!(answered, 429 | 503) {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("30"));
    }
    response
}

/// Checks `Authorization: vapid t=<JWT>, k=<public key>` as a push service does (RFC 8292).
fn check_vapid(header: Option<&str>, origin: &str) -> Result<(VapidClaims, String), String> {
    let header = header.ok_or("no Authorization header")?;
    let params = header
        .strip_prefix("vapid ")
        .ok_or_else(|| format!("Authorization is not the vapid scheme: {header}"))?;
    let mut token = None;
    let mut key = None;
    for part in params.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => token = Some(v.trim()),
            Some(("k", v)) => key = Some(v.trim()),
            _ => return Err(format!("unexpected vapid parameter {part:?}")),
        }
    }
    let (token, key) = token.zip(key).ok_or("vapid needs both t= and k=")?;
    let point = URL_SAFE_NO_PAD
        .decode(key)
        .map_err(|_| "k= is not base64url")?;
    if point.len() != 65 || point[0] != 4 {
        return Err(format!(
            "k= is not an uncompressed P-256 point ({} bytes)",
            point.len()
        ));
    }
    let x = URL_SAFE_NO_PAD.encode(&point[1..33]);
    let y = URL_SAFE_NO_PAD.encode(&point[33..]);
    let decoding = DecodingKey::from_ec_components(&x, &y).map_err(|e| e.to_string())?;
    let mut validation = Validation::new(Algorithm::ES256);
    validation.set_audience(&[origin]);
    validation.set_required_spec_claims(&["exp", "aud", "sub"]);
    validation.leeway = 0;
    let claims = jsonwebtoken::decode::<VapidClaims>(token, &decoding, &validation)
        .map_err(|e| format!("VAPID token refused: {e}"))?
        .claims;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    if claims.exp > now + 24 * 3600 {
        return Err(format!(
            "exp is {} s away; RFC 8292 allows 24 hours",
            claims.exp - now
        ));
    }
    if !(claims.sub.starts_with("mailto:") || claims.sub.starts_with("https:")) {
        return Err(format!(
            "sub {:?} is not a mailto: or https: URI",
            claims.sub
        ));
    }
    Ok((claims, key.to_string()))
}

// ------------------------------------------------------------------------------------------
// SMS
// ------------------------------------------------------------------------------------------

/// The Twilio account the fake gateway expects.
pub const TWILIO_SID: &str = "AC0123456789abcdef0123456789abcdef";
/// Its auth token.
pub const TWILIO_TOKEN: &str = "fake-twilio-auth-token";
/// The bearer token the fake generic gateway expects.
pub const GENERIC_TOKEN: &str = "fake-generic-api-key";
/// The sender both adapters are configured with.
pub const SMS_FROM: &str = "+15005550006";

/// Which API a text came through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SmsVia {
    /// `POST /2010-04-01/Accounts/{sid}/Messages.json`.
    Twilio,
    /// `/generic/send`, JSON or form body or query string.
    Generic,
}

/// A text the fake gateway accepted as well-formed (whatever it then answered).
#[derive(Clone, Debug)]
pub struct SmsReceived {
    /// Which API.
    pub via: SmsVia,
    /// The HTTP method.
    pub method: String,
    /// The `Content-Type` header, if any.
    pub content_type: Option<String>,
    /// The `Authorization` header.
    pub authorization: Option<String>,
    /// The fields as received: the JSON document, or an object of the form or query fields.
    pub body: Value,
    /// The recipient.
    pub to: String,
    /// The sender (Twilio: `From` or `MessagingServiceSid`).
    pub from: String,
    /// The text.
    pub text: String,
    /// The status the fake answered.
    pub answered: u16,
    /// When the fake's handler returned its answer (`None` while it is still answering).
    pub answered_at: Option<Instant>,
}

#[derive(Default)]
struct SmsShared {
    answers: Mutex<HashMap<String, u16>>,
    stalled: Mutex<Vec<String>>,
    received: Mutex<Vec<SmsReceived>>,
    rejected: Mutex<Vec<String>>,
    next_id: Mutex<u64>,
    delay: Mutex<Duration>,
    in_flight: InFlight,
    notify: Notify,
}

/// An SMS gateway on 127.0.0.1: Twilio's API and a generic one.
pub struct FakeSmsGateway {
    /// `http://127.0.0.1:PORT`, the Twilio base URL.
    pub url: String,
    shared: Arc<SmsShared>,
    _served: Served,
}

impl FakeSmsGateway {
    /// Starts the fake on an ephemeral port.
    pub async fn start() -> FakeSmsGateway {
        let shared = Arc::new(SmsShared::default());
        let app = Router::new()
            .route(
                "/2010-04-01/Accounts/{sid}/Messages.json",
                post(twilio_message),
            )
            .route("/generic/send", any(generic_message))
            .with_state(shared.clone());
        let served = serve(app).await;
        FakeSmsGateway {
            url: served.url.clone(),
            shared,
            _served: served,
        }
    }

    /// Configures `settings` for this fake's Twilio API.
    pub fn twilio(&self, settings: &mut Settings) {
        settings.sms_provider = SmsProvider::Twilio;
        settings.sms_twilio_base_url = self.url.clone();
        settings.sms_twilio_account_sid = TWILIO_SID.into();
        settings.sms_twilio_auth_token = TWILIO_TOKEN.into();
        settings.sms_from = SMS_FROM.into();
    }

    /// Configures `settings` for this fake's generic API with a JSON body
    /// (`{"recipient": {"msisdn": …}, "sender": …, "message": …}`, id at `/result/message_id`).
    pub fn generic_json(&self, settings: &mut Settings) {
        settings.sms_provider = SmsProvider::Generic;
        settings.sms_generic_url = format!("{}/generic/send", self.url);
        settings.sms_generic_method = "POST".into();
        settings.sms_generic_auth_header = format!("Authorization: Bearer {GENERIC_TOKEN}");
        settings.sms_generic_format = SmsBodyFormat::Json;
        settings.sms_generic_body = r#"{"recipient": {"msisdn": "{to}"}, "sender": "{from}", "message": "{text}", "channel": "sms"}"#.into();
        settings.sms_generic_id_pointer = "/result/message_id".into();
        settings.sms_from = SMS_FROM.into();
    }

    /// Configures `settings` for this fake's generic API with form fields `to`, `from`, `text`
    /// sent by `method` (`GET` puts them in the query string, as Kannel expects).
    pub fn generic_form(&self, settings: &mut Settings, method: &str) {
        self.generic_json(settings);
        settings.sms_generic_method = method.into();
        settings.sms_generic_format = SmsBodyFormat::Form;
        settings.sms_generic_body =
            r#"{"to": "{to}", "from": "{from}", "text": "{text}", "dlr": "0"}"#.into();
    }

    /// From now on, texts to `number` are answered with `status` (400 is a bad number, 429 and
    /// 503 carry `Retry-After: 30`, 500…); 201 (Twilio) / 200 (generic) restore the default.
    pub fn answer(&self, number: &str, status: u16) {
        lock(&self.shared.answers).insert(number.to_string(), status);
    }

    /// From now on, texts to `number` get no answer for a minute (a gateway that hangs).
    pub fn stall(&self, number: &str) {
        lock(&self.shared.stalled).push(number.to_string());
    }

    /// From now on, every answer takes `delay` (a gateway under load), so that texts overlap.
    pub fn delay(&self, delay: Duration) {
        *lock(&self.shared.delay) = delay;
    }

    /// The most texts the gateway was answering at once.
    pub fn most_in_flight(&self) -> usize {
        self.shared.in_flight.most()
    }

    /// Every well-formed text so far, in arrival order.
    pub fn received(&self) -> Vec<SmsReceived> {
        lock(&self.shared.received).clone()
    }

    /// Waits until at least `n` texts have been answered (panics after `timeout`).
    pub async fn wait_for_answered(&self, n: usize, timeout: Duration) -> Vec<SmsReceived> {
        wait_until(&self.shared.notify, timeout, || {
            lock(&self.shared.received)
                .iter()
                .filter(|t| t.answered_at.is_some())
                .count()
                >= n
        })
        .await;
        self.received()
    }

    /// Waits until every number of `numbers` has received at least one text (panics after
    /// `timeout`).
    pub async fn wait_for_each(&self, numbers: &[String], timeout: Duration) -> Vec<SmsReceived> {
        wait_until(&self.shared.notify, timeout, || {
            let got = lock(&self.shared.received);
            numbers.iter().all(|n| got.iter().any(|t| &t.to == n))
        })
        .await;
        self.received()
    }

    /// Every refused request so far (bad credentials, a missing field), with why.
    pub fn rejected(&self) -> Vec<String> {
        lock(&self.shared.rejected).clone()
    }

    /// Waits until at least `n` well-formed texts arrived (panics after `timeout`).
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<SmsReceived> {
        wait_until(&self.shared.notify, timeout, || {
            lock(&self.shared.received).len() >= n
        })
        .await;
        self.received()
    }
}

impl SmsShared {
    fn refuse(&self, status: StatusCode, reason: String, body: Value) -> Response {
        lock(&self.rejected).push(reason);
        self.notify.notify_waiters();
        (status, axum::Json(body)).into_response()
    }

    /// Records a well-formed text and decides the answer: the configured status, or `success`.
    async fn accept(&self, mut text: SmsReceived, success: u16) -> u16 {
        let stalled = lock(&self.stalled).contains(&text.to);
        text.answered = lock(&self.answers)
            .get(&text.to)
            .copied()
            .unwrap_or(success);
        let answered = text.answered;
        let index = {
            let mut received = lock(&self.received);
            received.push(text);
            received.len() - 1
        };
        self.notify.notify_waiters();
        if stalled {
            tokio::time::sleep(Duration::from_secs(60)).await;
        }
        let delay = *lock(&self.delay);
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        lock(&self.received)[index].answered_at = Some(Instant::now());
        self.notify.notify_waiters();
        answered
    }

    fn next_id(&self) -> u64 {
        let mut n = lock(&self.next_id);
        *n += 1;
        *n
    }
}

fn with_retry_after(status: u16, body: Value) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, axum::Json(body)).into_response();
    if matches!(status.as_u16(), 429 | 503) {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("30"));
    }
    response
}

fn header_text(headers: &HeaderMap, name: header::HeaderName) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// `application/x-www-form-urlencoded` fields (a body or a query string), decoded by the `url`
/// crate's form parser, as an object of strings.
fn form_fields(raw: &[u8]) -> Value {
    let raw = String::from_utf8_lossy(raw);
    let Ok(url) = reqwest::Url::parse(&format!("http://form.invalid/?{raw}")) else {
        return json!({});
    };
    Value::Object(
        url.query_pairs()
            .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
            .collect(),
    )
}

async fn twilio_message(
    State(shared): State<Arc<SmsShared>>,
    Path(sid): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let _answering = shared.in_flight.enter();
    let expected = format!(
        "Basic {}",
        STANDARD.encode(format!("{TWILIO_SID}:{TWILIO_TOKEN}"))
    );
    let authorization = header_text(&headers, header::AUTHORIZATION);
    if sid != TWILIO_SID || authorization.as_deref() != Some(expected.as_str()) {
        return shared.refuse(
            StatusCode::UNAUTHORIZED,
            format!("Twilio credentials refused: account {sid}, {authorization:?}"),
            json!({"code": 20003, "message": "Authenticate", "more_info": "https://www.twilio.com/docs/errors/20003", "status": 401}),
        );
    }
    let content_type = header_text(&headers, header::CONTENT_TYPE);
    if content_type.as_deref() != Some("application/x-www-form-urlencoded") {
        return shared.refuse(
            StatusCode::BAD_REQUEST,
            format!("Twilio takes a form, not {content_type:?}"),
            json!({"code": 20001, "message": "Content-Type must be a form", "status": 400}),
        );
    }
    let fields = form_fields(&body);
    let field = |name: &str| fields[name].as_str().map(str::to_string);
    let from = field("From").or_else(|| field("MessagingServiceSid"));
    let (Some(to), Some(from), Some(text)) = (field("To"), from, field("Body")) else {
        return shared.refuse(
            StatusCode::BAD_REQUEST,
            format!("Twilio needs To, From (or MessagingServiceSid) and Body: {fields}"),
            json!({"code": 21604, "message": "A 'To' phone number is required.", "status": 400}),
        );
    };
    let received = SmsReceived {
        via: SmsVia::Twilio,
        method: "POST".into(),
        content_type,
        authorization,
        body: fields,
        to: to.clone(),
        from,
        text,
        answered: 0,
        answered_at: None,
    };
    let answered = shared.accept(received, 201).await;
    let id = shared.next_id();
    match answered {
        201 | 200 => with_retry_after(
            answered,
            json!({"sid": format!("SM{id:032x}"), "status": "queued", "to": to, "num_segments": "1"}),
        ),
        400 => with_retry_after(
            400,
            json!({"code": 21211, "message": format!("The 'To' number {to} is not a valid phone number."), "status": 400}),
        ),
        other => with_retry_after(
            other,
            json!({"code": 20500, "message": "Internal Server Error", "status": other}),
        ),
    }
}

async fn generic_message(
    State(shared): State<Arc<SmsShared>>,
    method: Method,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let _answering = shared.in_flight.enter();
    let authorization = header_text(&headers, header::AUTHORIZATION);
    if authorization.as_deref() != Some(format!("Bearer {GENERIC_TOKEN}").as_str()) {
        return shared.refuse(
            StatusCode::UNAUTHORIZED,
            format!("generic gateway: bad credentials {authorization:?}"),
            json!({"error": "unauthorised"}),
        );
    }
    let content_type = header_text(&headers, header::CONTENT_TYPE);
    let (fields, to, from, text) = match content_type.as_deref() {
        Some("application/json") => {
            let Ok(doc) = serde_json::from_slice::<Value>(&body) else {
                return shared.refuse(
                    StatusCode::BAD_REQUEST,
                    "generic gateway: the JSON does not parse".into(),
                    json!({"error": "bad json"}),
                );
            };
            let at = |p: &str| doc.pointer(p).and_then(Value::as_str).map(str::to_string);
            let parts = (at("/recipient/msisdn"), at("/sender"), at("/message"));
            (doc.clone(), parts.0, parts.1, parts.2)
        }
        _ => {
            let raw = if method == Method::GET {
                query.unwrap_or_default().into_bytes()
            } else {
                body.to_vec()
            };
            let fields = form_fields(&raw);
            let at = |k: &str| fields[k].as_str().map(str::to_string);
            let parts = (at("to"), at("from"), at("text"));
            (fields.clone(), parts.0, parts.1, parts.2)
        }
    };
    let (Some(to), Some(from), Some(text)) = (to, from, text) else {
        return shared.refuse(
            StatusCode::BAD_REQUEST,
            format!("generic gateway: recipient, sender or text missing in {fields}"),
            json!({"error": "missing field"}),
        );
    };
    let received = SmsReceived {
        via: SmsVia::Generic,
        method: method.to_string(),
        content_type,
        authorization,
        body: fields,
        to,
        from,
        text,
        answered: 0,
        answered_at: None,
    };
    let answered = shared.accept(received, 200).await;
    let id = shared.next_id();
    match answered {
        200..=299 => with_retry_after(
            answered,
            json!({"result": {"message_id": format!("gen-{id}"), "parts": 1}}),
        ),
        other => with_retry_after(other, json!({"error": format!("failed with {other}")})),
    }
}

// ------------------------------------------------------------------------------------------
// Firebase Cloud Messaging (HTTP v1) and Google's OAuth2 token endpoint
// ------------------------------------------------------------------------------------------

/// The Firebase project the fake service account belongs to.
pub const FCM_PROJECT: &str = "vigil-test-project";
const FCM_CLIENT_EMAIL: &str = "vigil-push@vigil-test-project.iam.gserviceaccount.com";
const FCM_KEY_ID: &str = "test-only-key-1";

fn fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/push/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A message the fake FCM accepted as well-formed (whatever it then answered).
#[derive(Clone, Debug)]
pub struct FcmReceived {
    /// `message.token`.
    pub token: String,
    /// The whole `message` object.
    pub message: Value,
}

#[derive(Default)]
struct FcmShared {
    origin: Mutex<String>,
    issued: Mutex<Vec<String>>,
    token_requests: AtomicUsize,
    received: Mutex<Vec<FcmReceived>>,
    rejected: Mutex<Vec<String>>,
    unregistered: Mutex<std::collections::HashSet<String>>,
    notify: Notify,
}

/// Google's token endpoint and the FCM v1 send API on 127.0.0.1. The token endpoint verifies
/// each RS256 assertion with the public half of the test service account's key (`iss`,
/// `scope`, `aud` = its own URL, `exp` within the hour, the key id) and issues an access token;
/// the send API checks that bearer token, the project in the path and the message's shape.
pub struct FakeFcm {
    /// Base URL.
    pub url: String,
    shared: Arc<FcmShared>,
    _served: Served,
}

impl FakeFcm {
    /// Starts the fake on an ephemeral port.
    pub async fn start() -> FakeFcm {
        let shared = Arc::new(FcmShared::default());
        let app = Router::new()
            .route("/token", post(fcm_token))
            .route("/v1/projects/{project}/messages:send", post(fcm_send))
            .with_state(shared.clone());
        let served = serve(app).await;
        *lock(&shared.origin) = served.url.clone();
        FakeFcm {
            url: served.url.clone(),
            shared,
            _served: served,
        }
    }

    /// The service account's JSON key, as the Firebase console downloads it, pointing at this
    /// fake's token endpoint.
    pub fn service_account_json(&self) -> String {
        json!({
            "type": "service_account",
            "project_id": FCM_PROJECT,
            "private_key_id": FCM_KEY_ID,
            "private_key": fixture("TEST-ONLY-fcm-service-account-key.pem"),
            "client_email": FCM_CLIENT_EMAIL,
            "client_id": "100000000000000000001",
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": format!("{}/token", self.url),
        })
        .to_string()
    }

    /// Points the server's FCM settings at this fake.
    pub fn configure(&self, settings: &mut Settings) {
        settings.fcm_service_account_json = self.service_account_json();
        settings.fcm_base_url = self.url.clone();
    }

    /// From now on, messages to `token` are answered 404 `UNREGISTERED` (the app was removed).
    pub fn unregister(&self, token: &str) {
        lock(&self.shared.unregistered).insert(token.to_string());
    }

    /// Access tokens asked for so far.
    pub fn token_requests(&self) -> usize {
        self.shared.token_requests.load(Ordering::SeqCst)
    }

    /// Every well-formed message so far.
    pub fn received(&self) -> Vec<FcmReceived> {
        lock(&self.shared.received).clone()
    }

    /// Why each refused request was refused.
    pub fn rejected(&self) -> Vec<String> {
        lock(&self.shared.rejected).clone()
    }
}

#[derive(serde::Deserialize)]
struct GoogleAssertion {
    iss: String,
    scope: String,
    iat: u64,
    exp: u64,
}

async fn fcm_token(
    State(shared): State<Arc<FcmShared>>,
    axum::Form(form): axum::Form<HashMap<String, String>>,
) -> Response {
    shared.token_requests.fetch_add(1, Ordering::SeqCst);
    let refuse = |why: String| {
        lock(&shared.rejected).push(format!("token: {why}"));
        (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": "invalid_grant", "error_description": why})),
        )
            .into_response()
    };
    if form.get("grant_type").map(String::as_str)
        != Some("urn:ietf:params:oauth:grant-type:jwt-bearer")
    {
        return refuse(format!("grant_type {:?}", form.get("grant_type")));
    }
    let Some(assertion) = form.get("assertion") else {
        return refuse("no assertion".into());
    };
    let key =
        DecodingKey::from_rsa_pem(fixture("TEST-ONLY-fcm-service-account-key.pub.pem").as_bytes())
            .expect("the test key's public half");
    let mut validation = Validation::new(Algorithm::RS256);
    let audience = format!("{}/token", lock(&shared.origin));
    validation.set_audience(&[audience]);
    validation.set_issuer(&[FCM_CLIENT_EMAIL]);
    let claims = match jsonwebtoken::decode::<GoogleAssertion>(assertion, &key, &validation) {
        Ok(data) => {
            if data.header.kid.as_deref() != Some(FCM_KEY_ID) {
                return refuse(format!("kid {:?}", data.header.kid));
            }
            data.claims
        }
        Err(e) => return refuse(format!("assertion: {e}")),
    };
    if claims.iss != FCM_CLIENT_EMAIL
        || claims.scope != "https://www.googleapis.com/auth/firebase.messaging"
        || claims.exp <= claims.iat
        || claims.exp - claims.iat > 3600
    {
        return refuse(format!(
            "claims iss={} scope={} iat={} exp={}",
            claims.iss, claims.scope, claims.iat, claims.exp
        ));
    }
    let token = format!("ya29.test-only-{}", uuid::Uuid::new_v4().simple());
    lock(&shared.issued).push(token.clone());
    axum::Json(json!({"access_token": token, "expires_in": 3599, "token_type": "Bearer"}))
        .into_response()
}

async fn fcm_send(
    State(shared): State<Arc<FcmShared>>,
    Path(project): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let refuse = |status: StatusCode, why: String| {
        lock(&shared.rejected).push(format!("send: {why}"));
        let code = status.as_u16();
        (
            status,
            axum::Json(
                json!({"error": {"code": code, "message": why, "status": "INVALID_ARGUMENT"}}),
            ),
        )
            .into_response()
    };
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
        .to_string();
    if !lock(&shared.issued).contains(&bearer) {
        return refuse(
            StatusCode::UNAUTHORIZED,
            format!("unknown access token {bearer:?}"),
        );
    }
    if project != FCM_PROJECT {
        return refuse(StatusCode::NOT_FOUND, format!("project {project}"));
    }
    let Ok(json) = serde_json::from_slice::<Value>(&body) else {
        return refuse(StatusCode::BAD_REQUEST, "body is not JSON".into());
    };
    let message = &json["message"];
    let Some(token) = message["token"].as_str() else {
        return refuse(StatusCode::BAD_REQUEST, "message.token".into());
    };
    // FCM refuses data whose values are not all strings.
    let data_ok = message["data"]
        .as_object()
        .is_some_and(|d| d.values().all(Value::is_string));
    if !data_ok {
        return refuse(
            StatusCode::BAD_REQUEST,
            format!("message.data {}", message["data"]),
        );
    }
    lock(&shared.received).push(FcmReceived {
        token: token.to_string(),
        message: message.clone(),
    });
    shared.notify.notify_waiters();
    if lock(&shared.unregistered).contains(token) {
        return (
            StatusCode::NOT_FOUND,
            axum::Json(json!({"error": {"code": 404, "message": "Requested entity was not found.",
                "status": "NOT_FOUND", "details": [{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError",
                "errorCode": "UNREGISTERED"}]}})),
        )
            .into_response();
    }
    axum::Json(json!({"name": format!("projects/{FCM_PROJECT}/messages/{}", uuid::Uuid::new_v4().simple())}))
        .into_response()
}

// ------------------------------------------------------------------------------------------
// Apple Push Notification service
// ------------------------------------------------------------------------------------------

/// The test team's APNs key id.
pub const APNS_KEY_ID: &str = "TESTKEY001";
/// The test developer team.
pub const APNS_TEAM_ID: &str = "TESTTEAM01";
/// The test app's bundle id.
pub const APNS_TOPIC: &str = "org.vigil.test";

/// A notification the fake APNs accepted as well-formed (whatever it then answered).
#[derive(Clone, Debug)]
pub struct ApnsReceived {
    /// The device token in the path.
    pub token: String,
    /// `apns-topic`.
    pub topic: String,
    /// `apns-push-type`.
    pub push_type: String,
    /// `apns-priority`.
    pub priority: String,
    /// `apns-expiration`, Unix seconds.
    pub expiration: i64,
    /// `apns-collapse-id`.
    pub collapse_id: String,
    /// The JSON payload.
    pub payload: Value,
}

#[derive(Default)]
struct ApnsShared {
    received: Mutex<Vec<ApnsReceived>>,
    rejected: Mutex<Vec<String>>,
    answers: Mutex<HashMap<String, (u16, &'static str)>>,
    notify: Notify,
}

/// APNs on 127.0.0.1, speaking HTTP/2 only (h2c): it verifies each provider token (ES256 with
/// the public half of the test `.p8` key, `kid`, `iss` = the team, `iat` within the hour), the
/// `apns-*` headers and the payload's `aps.alert`.
pub struct FakeApns {
    /// Base URL.
    pub url: String,
    shared: Arc<ApnsShared>,
    _served: Served,
}

impl FakeApns {
    /// Starts the fake on an ephemeral port.
    pub async fn start() -> FakeApns {
        let shared = Arc::new(ApnsShared::default());
        let app = Router::new()
            .route("/3/device/{token}", post(apns_push))
            .with_state(shared.clone());
        let served = serve(app).await;
        FakeApns {
            url: served.url.clone(),
            shared,
            _served: served,
        }
    }

    /// Points the server's APNs settings at this fake.
    pub fn configure(&self, settings: &mut Settings) {
        settings.apns_key_file = format!(
            "{}/tests/fixtures/push/TEST-ONLY-apns-AuthKey.p8",
            env!("CARGO_MANIFEST_DIR")
        );
        settings.apns_key_id = APNS_KEY_ID.into();
        settings.apns_team_id = APNS_TEAM_ID.into();
        settings.apns_topic = APNS_TOPIC.into();
        settings.apns_base_url = self.url.clone();
    }

    /// From now on, notifications to `token` are answered 410 `Unregistered`.
    pub fn unregister(&self, token: &str) {
        lock(&self.shared.answers).insert(token.to_string(), (410, "Unregistered"));
    }

    /// From now on, notifications to `token` are answered 400 `BadDeviceToken`.
    pub fn refuse_token(&self, token: &str) {
        lock(&self.shared.answers).insert(token.to_string(), (400, "BadDeviceToken"));
    }

    /// Every well-formed notification so far.
    pub fn received(&self) -> Vec<ApnsReceived> {
        lock(&self.shared.received).clone()
    }

    /// Why each refused request was refused.
    pub fn rejected(&self) -> Vec<String> {
        lock(&self.shared.rejected).clone()
    }
}

#[derive(serde::Deserialize)]
struct ApnsClaims {
    iss: String,
    iat: u64,
}

async fn apns_push(
    State(shared): State<Arc<ApnsShared>>,
    Path(token): Path<String>,
    request: axum::extract::Request,
) -> Response {
    let refuse = |status: StatusCode, reason: String| {
        lock(&shared.rejected).push(reason.clone());
        (status, axum::Json(json!({"reason": reason}))).into_response()
    };
    if request.version() != axum::http::Version::HTTP_2 {
        return refuse(
            StatusCode::BAD_REQUEST,
            format!("HTTP version {:?}", request.version()),
        );
    }
    let (parts, body) = request.into_parts();
    let headers = parts.headers;
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let bearer = text("authorization");
    let Some(jwt) = bearer
        .strip_prefix("bearer ")
        .or_else(|| bearer.strip_prefix("Bearer "))
    else {
        return refuse(StatusCode::FORBIDDEN, "MissingProviderToken".into());
    };
    let key = DecodingKey::from_ec_pem(fixture("TEST-ONLY-apns-AuthKey.pub.pem").as_bytes())
        .expect("the test key's public half");
    let mut validation = Validation::new(Algorithm::ES256);
    validation.validate_exp = false;
    validation.set_required_spec_claims(&["iss"]);
    let data = match jsonwebtoken::decode::<ApnsClaims>(jwt, &key, &validation) {
        Ok(data) => data,
        Err(e) => return refuse(StatusCode::FORBIDDEN, format!("InvalidProviderToken: {e}")),
    };
    let now = jsonwebtoken::get_current_timestamp();
    if data.header.kid.as_deref() != Some(APNS_KEY_ID)
        || data.claims.iss != APNS_TEAM_ID
        || data.claims.iat > now + 60
        || now.saturating_sub(data.claims.iat) > 3600
    {
        return refuse(
            StatusCode::FORBIDDEN,
            format!(
                "InvalidProviderToken: kid {:?} iss {} iat {}",
                data.header.kid, data.claims.iss, data.claims.iat
            ),
        );
    }
    if text("apns-topic").is_empty() {
        return refuse(StatusCode::BAD_REQUEST, "MissingTopic".into());
    }
    let Ok(expiration) = text("apns-expiration").parse::<i64>() else {
        return refuse(StatusCode::BAD_REQUEST, "BadExpirationDate".into());
    };
    let collapse_id = text("apns-collapse-id");
    if collapse_id.len() > 64 {
        return refuse(StatusCode::BAD_REQUEST, "BadCollapseId".into());
    }
    let Ok(bytes) = axum::body::to_bytes(body, 4096).await else {
        return refuse(StatusCode::PAYLOAD_TOO_LARGE, "PayloadTooLarge".into());
    };
    let Ok(payload) = serde_json::from_slice::<Value>(&bytes) else {
        return refuse(StatusCode::BAD_REQUEST, "PayloadEmpty".into());
    };
    if !payload["aps"]["alert"]["title"].is_string() {
        return refuse(
            StatusCode::BAD_REQUEST,
            format!("no aps.alert.title in {payload}"),
        );
    }
    lock(&shared.received).push(ApnsReceived {
        token: token.clone(),
        topic: text("apns-topic"),
        push_type: text("apns-push-type"),
        priority: text("apns-priority"),
        expiration,
        collapse_id,
        payload,
    });
    shared.notify.notify_waiters();
    if let Some((status, reason)) = lock(&shared.answers).get(&token).copied() {
        let status = StatusCode::from_u16(status).expect("status");
        return (
            status,
            axum::Json(json!({"reason": reason, "timestamp": now * 1000})),
        )
            .into_response();
    }
    (
        StatusCode::OK,
        [("apns-id", uuid::Uuid::new_v4().to_string())],
    )
        .into_response()
}
