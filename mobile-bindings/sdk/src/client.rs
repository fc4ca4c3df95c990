//! The client: sign-in, the WebSocket with resume and reconnection, and the outbox drained
//! over it.
//!
//! One task per client keeps the connection: `hello` with the last stored sequence number,
//! every numbered message stored before the app sees it and handed over once and in order
//! (across restarts: the store remembers how far the app got), heartbeats, and reconnection
//! with exponential backoff and jitter. Whatever the app records (fixes, receipts) goes to the
//! outbox first and leaves it only when the server has answered for it.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rand::Rng;
use tokio::sync::{Notify, broadcast};
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;
use vigil_protocol::{
    AlertAreas, AlertReceiptState, ClientMessage, ErrorCode, Fix, MessageKind, ServerMessage,
    StreamMessage,
};

use crate::address::{Problem, server_base_url};
use crate::clock::Clock;
use crate::on_device::OnDevice;
use crate::store::{ItemKind, Store};
use crate::{Event, SdkError, TokenKeeper};

/// The store's key for the refresh token when the app keeps none itself.
const REFRESH_TOKEN: &str = "refresh_token";
/// The store's key for the learned offset of the server's clock from the phone's.
const CLOCK_OFFSET: &str = "clock_offset_ms";
/// Longest wait between two reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Items sent per round while draining the outbox.
const DRAIN_BATCH: i64 = 64;
/// How long a request the server could not take now holds the outbox before it is tried again.
const REQUEST_RETRY: Duration = Duration::from_secs(5);

/// The tokens of a signed-in session.
#[derive(Debug, Clone, serde::Deserialize)]
struct Tokens {
    access_token: String,
    refresh_token: String,
}

#[derive(Debug)]
pub(crate) struct Inner {
    base: String,
    http: reqwest::Client,
    store: Store,
    tokens: Mutex<Option<Tokens>>,
    events: broadcast::Sender<Event>,
    /// Wakes the connection task when the outbox has something new.
    outbox: Notify,
    /// Ends the running connection task; each start has its own.
    stop: Mutex<CancellationToken>,
    /// The app's keeper of the refresh token; `None`: the store keeps it.
    keeper: Option<Arc<dyn TokenKeeper>>,
    /// The phone's own geofencing state.
    pub(crate) on_device: Mutex<OnDevice>,
    /// One hand-over at a time, so that the app never gets a message twice.
    handing: tokio::sync::Mutex<()>,
    /// The phone's clock and its offset from the server's.
    pub(crate) clock: Clock,
}

/// A phone's Vigil client; cheap to clone.
#[derive(Debug, Clone)]
pub struct Client {
    pub(crate) inner: Arc<Inner>,
}

impl Client {
    /// A client of the server at `server` (HTTPS, or HTTP to this device) keeping its state in
    /// the SQLite file `db_path`.
    pub async fn open(server: &str, db_path: &Path) -> Result<Client, SdkError> {
        Self::open_with(server, db_path, None).await
    }

    /// As [`Client::open`], with the refresh token kept by the app's `keeper` (Keychain,
    /// Keystore) instead of the SDK's file.
    pub async fn open_with(
        server: &str,
        db_path: &Path,
        keeper: Option<Arc<dyn TokenKeeper>>,
    ) -> Result<Client, SdkError> {
        let base = server_base_url(server)?;
        let store = Store::open(db_path).await?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| SdkError::Network(e.to_string()))?;
        let kept = match &keeper {
            Some(k) => k.load().map_err(SdkError::Secrets)?,
            None => store.get(REFRESH_TOKEN).await?,
        };
        let offset = store
            .get(CLOCK_OFFSET)
            .await?
            .and_then(|v| v.parse::<i64>().ok());
        let tokens = kept.map(|refresh_token| Tokens {
            access_token: String::new(),
            refresh_token,
        });
        let (events, _) = broadcast::channel(1024);
        Ok(Client {
            inner: Arc::new(Inner {
                base,
                http,
                store,
                tokens: Mutex::new(tokens),
                events,
                outbox: Notify::new(),
                stop: Mutex::new(CancellationToken::new()),
                keeper,
                on_device: Mutex::new(OnDevice::default()),
                handing: tokio::sync::Mutex::new(()),
                clock: Clock::new(offset),
            }),
        })
    }

    /// What the client tells the app, from now on.
    pub fn events(&self) -> broadcast::Receiver<Event> {
        self.inner.events.subscribe()
    }

    /// Signs in; the refresh token is kept in the store so the next start needs no password.
    pub async fn login(&self, email: &str, password: &str) -> Result<(), SdkError> {
        let body = serde_json::json!({"email": email, "password": password});
        let tokens: Tokens = self.post_json("/api/v1/auth/login", &body, None).await?;
        self.keep(tokens).await
    }

    async fn keep(&self, tokens: Tokens) -> Result<(), SdkError> {
        match &self.inner.keeper {
            Some(k) => k
                .save(Some(&tokens.refresh_token))
                .map_err(SdkError::Secrets)?,
            None => {
                self.inner
                    .store
                    .set(REFRESH_TOKEN, &tokens.refresh_token)
                    .await?;
            }
        }
        *self.lock_tokens() = Some(tokens);
        Ok(())
    }

    /// Forgets the session (the server ended it): the next start needs a sign-in.
    async fn forget(&self) -> Result<(), SdkError> {
        *self.lock_tokens() = None;
        match &self.inner.keeper {
            Some(k) => k.save(None).map_err(SdkError::Secrets),
            None => Ok(self.inner.store.unset(REFRESH_TOKEN).await?),
        }
    }

    fn lock_tokens(&self) -> std::sync::MutexGuard<'_, Option<Tokens>> {
        self.inner
            .tokens
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A fresh access token from the refresh token (each refresh token works once).
    async fn refresh(&self) -> Result<String, SdkError> {
        let refresh = self
            .lock_tokens()
            .as_ref()
            .map(|t| t.refresh_token.clone())
            .ok_or(SdkError::SignedOut)?;
        let body = serde_json::json!({"refresh_token": refresh});
        let tokens: Tokens = match self.post_json("/api/v1/auth/refresh", &body, None).await {
            Err(SdkError::Server(p)) if p.needs_login() => {
                self.forget().await?;
                return Err(SdkError::SignedOut);
            }
            other => other?,
        };
        let access = tokens.access_token.clone();
        self.keep(tokens).await?;
        Ok(access)
    }

    /// The access token, refreshed when there is none yet.
    async fn access_token(&self) -> Result<String, SdkError> {
        let current = self.lock_tokens().as_ref().map(|t| t.access_token.clone());
        match current {
            Some(t) if !t.is_empty() => Ok(t),
            Some(_) => self.refresh().await,
            None => Err(SdkError::SignedOut),
        }
    }

    async fn post_json<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: &serde_json::Value,
        token: Option<&str>,
    ) -> Result<T, SdkError> {
        let mut req = self
            .inner
            .http
            .post(format!("{}{path}", self.inner.base))
            .json(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        read_json(self.observed(req.send().await).await?).await
    }

    /// A server answer, its `Date` noted to learn how far off the phone's clock is.
    async fn observed(
        &self,
        sent: Result<reqwest::Response, reqwest::Error>,
    ) -> Result<reqwest::Response, SdkError> {
        let resp = sent.map_err(|e| SdkError::Network(e.to_string()))?;
        if let Some(offset) = self.inner.clock.observe(resp.headers()) {
            // Kept so that fixes recorded offline after a restart are still put right; an
            // unkept offset only costs that, so the answer is not failed for it.
            if let Err(e) = self
                .inner
                .store
                .set(CLOCK_OFFSET, &offset.to_string())
                .await
            {
                tracing::warn!(error = %e, "clock offset not kept");
            }
        }
        Ok(resp)
    }

    /// The server's time as this phone best knows it: its own clock put right by the offset
    /// learned from the server's answers. Stamp fixes with it when the operating system gives
    /// none.
    pub fn now(&self) -> vigil_protocol::Timestamp {
        vigil_protocol::Timestamp(self.inner.clock.now())
    }

    /// Makes the phone's clock read `ms` off from the real time, for tests and field
    /// diagnostics of a phone whose clock is wrong; 0 restores it.
    pub fn set_device_clock_error(&self, ms: i64) {
        self.inner.clock.set_device_error(ms);
    }

    /// Sends a request as the signed-in person, refreshing the access token once if it expired.
    async fn authed<T: serde::de::DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<T, SdkError> {
        let url = format!("{}{path}", self.inner.base);
        let attempt = async |token: String| {
            let mut req = self
                .inner
                .http
                .request(method.clone(), &url)
                .bearer_auth(token);
            if let Some(b) = body {
                req = req.json(b);
            }
            read_json(self.observed(req.send().await).await?).await
        };
        match attempt(self.access_token().await?).await {
            Err(SdkError::Server(p)) if p.needs_login() => attempt(self.refresh().await?).await,
            other => other,
        }
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T, SdkError> {
        self.authed(reqwest::Method::GET, path, None).await
    }

    async fn put_json(&self, path: &str, body: &serde_json::Value) -> Result<(), SdkError> {
        self.authed::<serde_json::Value>(reqwest::Method::PUT, path, Some(body))
            .await
            .map(drop)
    }

    /// Switches between tracking and location-less mode (the server then refuses fixes, and
    /// the SDK stops sending them: those still queued are dropped by the server's refusal).
    pub async fn set_location_less(&self, location_less: bool) -> Result<(), SdkError> {
        let mode = if location_less {
            "location_less"
        } else {
            "tracking"
        };
        self.put_json(
            "/api/v1/me/location-mode",
            &serde_json::json!({ "mode": mode }),
        )
        .await
    }

    /// The areas a location-less person follows (they receive what is sent there).
    pub async fn follow_areas(&self, area_ids: &[i64]) -> Result<(), SdkError> {
        self.put_json(
            "/api/v1/me/followed-areas",
            &serde_json::json!({ "area_ids": area_ids }),
        )
        .await
    }

    /// Presses SOS: the case as the server stored it (with its `conversation_id`). A phone in
    /// location-less mode shares `position` only with `share_location`. Sent at once, never
    /// queued: an SOS that cannot reach the server must say so to the person (call instead).
    pub async fn press_sos(
        &self,
        note: Option<&str>,
        position: Option<Fix>,
        share_location: bool,
    ) -> Result<serde_json::Value, SdkError> {
        let body = serde_json::json!({"note": note, "position": position, "share_location": share_location});
        self.authed(reqwest::Method::POST, "/api/v1/sos", Some(&body))
            .await
    }

    /// The person's alerts in force with their places, for on-device geofencing.
    pub async fn alert_areas(&self) -> Result<Vec<AlertAreas>, SdkError> {
        self.get_json("/api/v1/me/alert-areas").await
    }

    /// Records a fix; it is sent when the phone is connected (newest first).
    pub async fn record_fix(&self, fix: Fix) -> Result<(), SdkError> {
        // Put right now, while the phone's clock at the time of the fix is known: sent hours
        // off, it would be refused (future) or taken as a stale position (past).
        let fix = Fix {
            recorded_at: vigil_protocol::Timestamp(self.inner.clock.fix_time(fix.recorded_at.0)),
            ..fix
        };
        let body = serde_json::to_string(&fix).map_err(|e| SdkError::Protocol(e.to_string()))?;
        let (_, dropped) = self
            .inner
            .store
            .push(ItemKind::Fix, &body, fix.recorded_at.0)
            .await?;
        if dropped > 0 {
            self.emit(Event::FixesDropped { count: dropped });
        }
        self.inner.outbox.notify_one();
        self.device_moved(fix.lat, fix.lon);
        Ok(())
    }

    /// Records how far the person got with an alert; sent when connected.
    pub async fn receipt(&self, alert_id: i64, state: AlertReceiptState) -> Result<(), SdkError> {
        self.queue(ClientMessage::Receipt {
            reference: None,
            alert_id,
            state,
        })
        .await
    }

    /// Queues a chat message; returns its client id, with which a resend after a lost answer
    /// is stored once by the server.
    pub async fn send_chat(&self, conversation_id: i64, body: &str) -> Result<String, SdkError> {
        let client_id = format!(
            "{:016x}{:08x}",
            self.inner.clock.now(),
            rand::thread_rng().r#gen::<u32>()
        );
        self.queue(ClientMessage::ChatSend {
            reference: None,
            conversation_id,
            client_id: client_id.clone(),
            body: body.to_string(),
        })
        .await?;
        Ok(client_id)
    }

    /// Answers a roll-call for the person (`dependant_id`: for one of their dependants) with
    /// `status` (`safe`, `need_help`); kept in the outbox until the server has it, so an answer
    /// given offline arrives on reconnect.
    pub async fn answer_rollcall(
        &self,
        rollcall_id: i64,
        status: &str,
        note: Option<&str>,
        dependant_id: Option<i64>,
    ) -> Result<(), SdkError> {
        let request = serde_json::json!({
            "path": format!("/api/v1/rollcalls/{rollcall_id}/answer"),
            "body": {"status": status, "note": note, "dependant_id": dependant_id},
        });
        self.inner
            .store
            .push(
                ItemKind::Request,
                &request.to_string(),
                self.inner.clock.now(),
            )
            .await?;
        self.inner.outbox.notify_one();
        Ok(())
    }

    /// Sends a queued request: `Ok(true)` done, `Ok(false)` refused for what it is (dropped),
    /// `Err` to try again later.
    async fn send_request(&self, item: &crate::store::Item) -> Result<bool, SdkError> {
        #[derive(serde::Deserialize)]
        struct Request {
            path: String,
            body: serde_json::Value,
        }
        let request: Request = serde_json::from_str(&item.body)
            .map_err(|e| SdkError::Protocol(format!("outbox item {}: {e}", item.id)))?;
        let url = format!("{}{}", self.inner.base, request.path);
        let attempt = async |token: String| {
            let sent = self
                .inner
                .http
                .post(&url)
                .bearer_auth(token)
                .json(&request.body)
                .send()
                .await;
            Ok::<_, SdkError>(self.observed(sent).await?.status().as_u16())
        };
        let mut status = attempt(self.access_token().await?).await?;
        if status == 401 {
            status = attempt(self.refresh().await?).await?;
        }
        match status {
            200..=299 => Ok(true),
            // Too early, too many, or the server's own trouble: the same request can succeed.
            408 | 425 | 429 | 500.. => Err(SdkError::Network(format!("HTTP {status}; retrying"))),
            _ => Ok(false),
        }
    }

    async fn queue(&self, msg: ClientMessage) -> Result<(), SdkError> {
        let body = serde_json::to_string(&msg).map_err(|e| SdkError::Protocol(e.to_string()))?;
        self.inner
            .store
            .push(ItemKind::Message, &body, self.inner.clock.now())
            .await?;
        self.inner.outbox.notify_one();
        Ok(())
    }

    /// Unsent items in the outbox: (fixes, others).
    pub async fn pending(&self) -> Result<(i64, i64), SdkError> {
        Ok(self.inner.store.pending().await?)
    }

    /// Starts keeping the connection (until [`Client::stop`]); returns at once.
    pub fn start(&self) -> tokio::task::JoinHandle<()> {
        let stop = CancellationToken::new();
        let previous = std::mem::replace(&mut *self.lock_stop(), stop.clone());
        previous.cancel();
        let client = self.clone();
        tokio::spawn(async move { client.run(stop).await })
    }

    /// Ends the connection task (the outbox keeps what is unsent).
    pub fn stop(&self) {
        self.lock_stop().cancel();
    }

    fn lock_stop(&self) -> std::sync::MutexGuard<'_, CancellationToken> {
        self.inner
            .stop
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn emit(&self, event: Event) {
        // Nobody listening is fine: the stream stays in the store.
        let _ = self.inner.events.send(event);
    }

    async fn run(&self, stop: CancellationToken) {
        let mut failures: u32 = 0;
        loop {
            let outcome = tokio::select! {
                () = stop.cancelled() => return,
                outcome = self.session() => outcome,
            };
            match outcome {
                Ok(()) => failures = 0,
                Err(SdkError::SignedOut) => {
                    self.emit(Event::SignedOut);
                    return;
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    self.emit(Event::Disconnected {
                        reason: e.to_string(),
                    });
                }
            }
            let wait = backoff(failures);
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// One connection, from `hello` until it ends.
    async fn session(&self) -> Result<(), SdkError> {
        let token = self.access_token().await?;
        let ws_url = format!("{}/api/v1/ws", self.inner.base.replacen("http", "ws", 1));
        let (mut socket, _) = match tokio_tungstenite::connect_async(&ws_url).await {
            Ok(s) => s,
            Err(e) => return Err(SdkError::Network(e.to_string())),
        };
        let store = &self.inner.store;
        let hello = ClientMessage::Hello {
            token: Some(token),
            last_seq: store.last_seq().await?,
        };
        send(&mut socket, &hello).await?;
        let welcome = next_server_message(&mut socket).await?;
        let heartbeat = match welcome {
            ServerMessage::Welcome { heartbeat_secs, .. } => heartbeat_secs.max(5),
            ServerMessage::Error {
                code: ErrorCode::Unauthorized,
                ..
            } => {
                // The access token expired: the next attempt refreshes it.
                if let Some(t) = self.lock_tokens().as_mut() {
                    t.access_token.clear();
                }
                return Err(SdkError::Network("session expired; refreshing".into()));
            }
            other => {
                return Err(SdkError::Protocol(format!(
                    "expected welcome, got {other:?}"
                )));
            }
        };
        self.emit(Event::Connected);
        self.places_changed();
        self.catch_up().await?;
        let mut ping = tokio::time::interval(Duration::from_secs(heartbeat));
        let mut in_flight: Vec<i64> = Vec::new();
        // A request that failed for now holds the outbox (in order) until this instant.
        let mut held_until: Option<tokio::time::Instant> = None;
        loop {
            if in_flight.is_empty() && held_until.is_none() {
                for item in store.next(DRAIN_BATCH).await? {
                    if item.kind == "request" {
                        match self.send_request(&item).await {
                            Ok(true) => store.done(item.id).await?,
                            Ok(false) => {
                                store.done(item.id).await?;
                                self.emit(Event::Refused {
                                    reason: format!("request {} refused", item.id),
                                });
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, "outbox request held");
                                held_until = Some(tokio::time::Instant::now() + REQUEST_RETRY);
                                break;
                            }
                        }
                        continue;
                    }
                    let msg = outbox_message(&item)?;
                    send(&mut socket, &msg).await?;
                    in_flight.push(item.id);
                }
            }
            let hold = held_until.unwrap_or_else(tokio::time::Instant::now);
            tokio::select! {
                () = tokio::time::sleep_until(hold), if held_until.is_some() => held_until = None,
                () = self.inner.outbox.notified() => {}
                _ = ping.tick() => send(&mut socket, &ClientMessage::Ping { reference: None }).await?,
                frame = socket.next() => {
                    let text = match frame {
                        Some(Ok(Message::Text(t))) => t,
                        Some(Ok(Message::Close(c))) => {
                            return Err(SdkError::Network(format!("closed by the server: {c:?}")));
                        }
                        Some(Ok(_)) => continue,
                        Some(Err(e)) => return Err(SdkError::Network(e.to_string())),
                        None => return Err(SdkError::Network("connection ended".into())),
                    };
                    let msg = match serde_json::from_str::<ServerMessage>(&text) {
                        Ok(m) => m,
                        Err(e) => {
                            // A newer server's message this SDK cannot read: skip it, say so.
                            tracing::warn!(error = %e, "unreadable server message skipped");
                            continue;
                        }
                    };
                    self.handle(msg, &mut in_flight).await?;
                }
            }
        }
    }

    async fn handle(&self, msg: ServerMessage, in_flight: &mut Vec<i64>) -> Result<(), SdkError> {
        let store = &self.inner.store;
        match msg {
            ServerMessage::Message(m) => {
                let payload = m.payload.to_string();
                store
                    .receive(m.seq, m.kind.as_str(), &payload, m.at.0)
                    .await?;
                self.catch_up().await?;
                if matches!(m.kind, MessageKind::Alert | MessageKind::AlertCancelled) {
                    self.places_changed();
                }
            }
            ServerMessage::Ack { reference, .. } | ServerMessage::ChatAck { reference, .. } => {
                if let Some(id) = item_id(reference.as_deref()) {
                    store.done(id).await?;
                    in_flight.retain(|i| *i != id);
                }
            }
            ServerMessage::Error {
                code,
                detail,
                reference,
                ..
            } => {
                let Some(id) = item_id(reference.as_deref()) else {
                    return Ok(());
                };
                in_flight.retain(|i| *i != id);
                if matches!(
                    code,
                    ErrorCode::Invalid
                        | ErrorCode::Forbidden
                        | ErrorCode::NotFound
                        | ErrorCode::LocationLess
                        | ErrorCode::Closed
                        | ErrorCode::BadMessage
                ) {
                    // Refused for what it is: resending would be refused again and hold up
                    // everything behind it.
                    store.done(id).await?;
                    self.emit(Event::Refused {
                        reason: format!("{code:?}: {detail}"),
                    });
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// The person's alerts may have changed: fetch their places again, in the background (a
    /// failure is logged; the next connect or alert tries again).
    fn places_changed(&self) {
        let client = self.clone();
        tokio::spawn(async move {
            if let Err(e) = client.refresh_places().await {
                tracing::warn!(error = %e, "alert places not refreshed");
            }
        });
    }

    /// Hands the app every stored message it has not had, in order. Nothing is handed while
    /// nobody listens: the messages wait in the store for the app's first listener.
    pub async fn catch_up(&self) -> Result<(), SdkError> {
        let _one = self.inner.handing.lock().await;
        if self.inner.events.receiver_count() == 0 {
            return Ok(());
        }
        let store = &self.inner.store;
        for (seq, kind, payload, at) in store.unhanded().await? {
            self.emit(Event::Message(stream_message(seq, &kind, &payload, at)));
            store.set_handed(seq).await?;
        }
        Ok(())
    }

    /// The stored messages of the person's stream after `after_seq` (at most `limit`), in
    /// order: for an app that lost track (it crashed while handling one, or fell behind) to
    /// read again what the phone holds.
    pub async fn stored_messages(
        &self,
        after_seq: i64,
        limit: i64,
    ) -> Result<Vec<StreamMessage>, SdkError> {
        Ok(self
            .inner
            .store
            .messages_after(after_seq, limit)
            .await?
            .into_iter()
            .map(|(seq, kind, payload, at)| stream_message(seq, &kind, &payload, at))
            .collect())
    }
}

fn stream_message(seq: i64, kind: &str, payload: &str, at: i64) -> StreamMessage {
    StreamMessage {
        seq,
        kind: MessageKind::from_name(kind),
        at: vigil_protocol::Timestamp(at),
        payload: serde_json::from_str(payload).unwrap_or(serde_json::Value::Null),
    }
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn send(socket: &mut Socket, msg: &ClientMessage) -> Result<(), SdkError> {
    let text = serde_json::to_string(msg).map_err(|e| SdkError::Protocol(e.to_string()))?;
    socket
        .send(Message::text(text))
        .await
        .map_err(|e| SdkError::Network(e.to_string()))
}

async fn next_server_message(socket: &mut Socket) -> Result<ServerMessage, SdkError> {
    loop {
        match socket.next().await {
            Some(Ok(Message::Text(t))) => {
                return serde_json::from_str(&t).map_err(|e| SdkError::Protocol(e.to_string()));
            }
            Some(Ok(Message::Close(c))) => {
                return Err(SdkError::Network(format!("closed by the server: {c:?}")));
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(SdkError::Network(e.to_string())),
            None => return Err(SdkError::Network("connection ended".into())),
        }
    }
}

/// The client message an outbox item is sent as, with the item's id as its `ref`.
fn outbox_message(item: &crate::store::Item) -> Result<ClientMessage, SdkError> {
    let reference = Some(format!("o{}", item.id));
    let bad = |e: serde_json::Error| SdkError::Protocol(format!("outbox item {}: {e}", item.id));
    Ok(if item.kind == "fix" {
        ClientMessage::Position {
            reference,
            fixes: vec![serde_json::from_str(&item.body).map_err(bad)?],
        }
    } else {
        match serde_json::from_str(&item.body).map_err(bad)? {
            ClientMessage::Receipt {
                alert_id, state, ..
            } => ClientMessage::Receipt {
                reference,
                alert_id,
                state,
            },
            ClientMessage::ChatSend {
                conversation_id,
                client_id,
                body,
                ..
            } => ClientMessage::ChatSend {
                reference,
                conversation_id,
                client_id,
                body,
            },
            other => other,
        }
    })
}

fn item_id(reference: Option<&str>) -> Option<i64> {
    reference?.strip_prefix('o')?.parse().ok()
}

/// 1 s, 2 s, 4 s… up to [`MAX_BACKOFF`], each with up to half again of random jitter, so that
/// a thousand phones cut by one outage do not come back in the same second.
fn backoff(failures: u32) -> Duration {
    if failures == 0 {
        return Duration::from_millis(200);
    }
    let base = Duration::from_secs(1u64 << failures.min(6).saturating_sub(1)).min(MAX_BACKOFF);
    let jitter = rand::thread_rng().gen_range(0.0..0.5);
    base.mul_f64(1.0 + jitter)
}

async fn read_json<T: serde::de::DeserializeOwned>(resp: reqwest::Response) -> Result<T, SdkError> {
    let status = resp.status().as_u16();
    let bytes = resp
        .bytes()
        .await
        .map_err(|e| SdkError::Network(e.to_string()))?;
    if !(200..300).contains(&status) {
        return Err(SdkError::Server(Problem::from_body(status, &bytes)));
    }
    serde_json::from_slice(&bytes).map_err(|e| SdkError::Protocol(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnection_backs_off_with_jitter_up_to_a_minute() {
        assert!(backoff(1) >= Duration::from_secs(1) && backoff(1) <= Duration::from_millis(1500));
        assert!(backoff(3) >= Duration::from_secs(4));
        assert!(backoff(40) <= MAX_BACKOFF.mul_f64(1.5));
        assert_eq!(item_id(Some("o42")), Some(42));
        assert_eq!(item_id(Some("x")), None);
    }
}
