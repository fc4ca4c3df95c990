//! `GET /api/v1/ws`: the WebSocket every phone and console uses. The protocol is documented in
//! `docs/PROTOCOL.md`; in short: authenticate with the first message (or an `Authorization`
//! header), say the last sequence number seen, get what was missed in order, then live traffic;
//! send positions; operators subscribe to their organisation's live positions.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::http::HeaderMap;
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::alerts::Step;
use crate::auth::{Session, bearer_token, load_actor, verify_token};
use crate::live::{Outbound, Registration, StoredMessage, messages_after};
use crate::policy::{Action, Actor, Role, authorize};
use crate::positions::{FixIn, Subject, accept, log_access, validate_fixes};

/// Version of the message format; sent in `welcome`.
pub const PROTOCOL_VERSION: u32 = 1;
/// How long a new connection has to authenticate.
pub const AUTH_DEADLINE: Duration = Duration::from_secs(10);
/// Largest message a client may send.
pub const MAX_MESSAGE: usize = 256 * 1024;

/// Close codes beyond the standard ones.
mod close {
    pub const UNAUTHORIZED: u16 = 4001;
    pub const TOO_SLOW: u16 = 4008;
    pub const GOING_AWAY: u16 = 1001;
    pub const PROTOCOL: u16 = 1002;
    pub const SERVER_ERROR: u16 = 1011;
}

/// The route (under `/api/v1`).
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(upgrade))
}

/// Open the WebSocket (see docs/PROTOCOL.md): send `hello` with a token first.
#[utoipa::path(get, path = "/ws", tag = "live",
    responses((status = 101, description = "switching to the WebSocket protocol"),
              (status = 400, description = "not a WebSocket upgrade request")))]
async fn upgrade(
    ws: WebSocketUpgrade,
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Response {
    // A malformed header counts as none: the hello message may still carry a token.
    let header_token = bearer_token(&headers).ok().flatten().map(str::to_string);
    // tungstenite's default buffers are 128 KiB each way per connection: gigabytes at 100,000
    // phones. Messages here are small; 4 KiB reads and eager writes keep an idle phone cheap.
    ws.read_buffer_size(4 * 1024)
        .write_buffer_size(0)
        .max_write_buffer_size(512 * 1024)
        .max_message_size(MAX_MESSAGE)
        .max_frame_size(MAX_MESSAGE)
        .on_upgrade(move |socket| async move {
            let mut conn = Connection {
                socket,
                state,
                last_sent: 0,
                last_heard: Instant::now(),
                logged: HashSet::new(),
                watching: None,
                watching_alerts: None,
                typing: Default::default(),
            };
            conn.run(header_token).await;
        })
}

/// What a client sends.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum ClientMsg {
    /// First message: credentials (unless sent as a header) and the last sequence number seen.
    Hello {
        token: Option<String>,
        #[serde(default)]
        last_seq: i64,
    },
    /// Application-level ping; answered with `pong`.
    Ping {
        #[serde(rename = "ref")]
        reference: Option<String>,
    },
    /// Fixes from the phone.
    Position {
        #[serde(rename = "ref")]
        reference: Option<String>,
        fixes: Vec<FixIn>,
    },
    /// Operators: live positions and geofence events of an organisation (`None`: own, or all
    /// for oversight); or, with topic `alerts`, delivery counts of its alerts.
    Subscribe { topic: String, org_id: Option<i64> },
    /// The device received, showed, or the person acknowledged an alert.
    Receipt {
        #[serde(rename = "ref")]
        reference: Option<String>,
        alert_id: i64,
        state: Step,
    },
    /// A chat message; answered by `chat_ack` once stored (see `crate::chat`).
    ChatSend {
        #[serde(rename = "ref")]
        reference: Option<String>,
        conversation_id: i64,
        client_id: String,
        body: String,
    },
    /// A conversation's messages up to `seq` reached this device, or were read.
    ChatReceipt {
        #[serde(rename = "ref")]
        reference: Option<String>,
        conversation_id: i64,
        seq: i64,
        state: crate::chat::ReceiptState,
    },
    /// The person is typing in a conversation (a live hint, never stored).
    Typing { conversation_id: i64 },
}

struct Connection {
    socket: WebSocket,
    state: AppState,
    /// Highest sequence number sent on this connection.
    last_sent: i64,
    last_heard: Instant,
    /// People whose location this viewer has been sent on this connection (logged once each).
    logged: HashSet<i64>,
    /// The organisation watched (`Some(None)`: all), re-authorised at every heartbeat.
    watching: Option<Option<i64>>,
    /// The organisation whose alert counts are followed, re-authorised likewise.
    watching_alerts: Option<Option<i64>>,
    /// When this connection last sent a typing hint, per conversation.
    typing: crate::chat::socket::TypingThrottle,
}

enum Flow {
    Continue,
    Stop,
}

impl Connection {
    async fn send_json(&mut self, value: serde_json::Value) -> Flow {
        self.send_text(value.to_string()).await
    }

    async fn reply(&mut self, reply: Option<serde_json::Value>) -> Flow {
        match reply {
            Some(v) => self.send_json(v).await,
            None => Flow::Continue,
        }
    }

    async fn send_text(&mut self, text: String) -> Flow {
        match self.socket.send(Message::Text(text.into())).await {
            Ok(()) => Flow::Continue,
            Err(_) => Flow::Stop,
        }
    }

    async fn error(&mut self, code: &str, detail: String, reference: Option<String>) -> Flow {
        self.send_json(json!({"type": "error", "code": code, "detail": detail, "ref": reference}))
            .await
    }

    async fn close(&mut self, code: u16, reason: &'static str) {
        let frame = CloseFrame {
            code,
            reason: Utf8Bytes::from_static(reason),
        };
        let _ = self.socket.send(Message::Close(Some(frame))).await;
    }

    /// Waits for `hello`, authenticates, registers, replays what was missed, then serves.
    async fn run(&mut self, header_token: Option<String>) {
        let (session, mut actor, last_seq) = match Box::pin(self.handshake(header_token)).await {
            Some(ok) => ok,
            None => return,
        };
        let (registration, mut queue) = self.state.hub.register(actor.user_id);
        let current: i64 = match crate::on_reader!(&self.state.db, pool => sqlx::query_scalar(
            "SELECT seq FROM message_seqs WHERE user_id = $1").bind(actor.user_id).fetch_one(pool).await)
        {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "ws: reading sequence");
                self.close(1011, "server error").await;
                return;
            }
        };
        let welcome = json!({
            "type": "welcome", "v": PROTOCOL_VERSION, "user_id": actor.user_id, "org_id": actor.org_id,
            "roles": actor.roles, "last_seq": current, "heartbeat_secs": self.state.settings.ws_heartbeat_secs.max(1),
        });
        if let Flow::Stop = self.send_json(welcome).await {
            return;
        }
        // Registered before replaying, so nothing stored meanwhile can slip between the two;
        // anything both replayed and queued is skipped by sequence number.
        self.last_sent = last_seq.max(0).min(current);
        if let Flow::Stop = Box::pin(self.catch_up(actor.user_id, i64::MAX)).await {
            return;
        }
        self.serve(&session, &mut actor, &registration, &mut queue)
            .await;
    }

    async fn handshake(&mut self, header_token: Option<String>) -> Option<(Session, Actor, i64)> {
        let first = tokio::time::timeout(AUTH_DEADLINE, self.socket.recv()).await;
        let text = match first {
            Ok(Some(Ok(Message::Text(t)))) => t,
            Ok(Some(Ok(_))) => {
                self.close(
                    close::PROTOCOL,
                    "the first message must be a hello text message",
                )
                .await;
                return None;
            }
            Ok(_) => return None,
            Err(_) => {
                self.close(close::UNAUTHORIZED, "no hello within 10 seconds")
                    .await;
                return None;
            }
        };
        let (token, last_seq) = match serde_json::from_str::<ClientMsg>(&text) {
            Ok(ClientMsg::Hello { token, last_seq }) => (token.or(header_token), last_seq),
            Ok(_) => {
                let _ = self
                    .error(
                        "hello_expected",
                        "the first message must be hello".into(),
                        None,
                    )
                    .await;
                self.close(close::PROTOCOL, "hello expected").await;
                return None;
            }
            Err(e) => {
                let _ = self
                    .error("bad_message", format!("unreadable hello: {e}"), None)
                    .await;
                self.close(close::PROTOCOL, "hello expected").await;
                return None;
            }
        };
        let Some(token) = token else {
            let _ = self
                .error(
                    "unauthorized",
                    "hello carries no token and no Authorization header was sent".into(),
                    None,
                )
                .await;
            self.close(close::UNAUTHORIZED, "unauthorized").await;
            return None;
        };
        let actor = match verify_token(&self.state, &token) {
            Ok(session) => load_actor(&self.state, &session)
                .await
                .map(|a| (a, session)),
            Err(e) => Err(e),
        };
        match actor {
            Ok((actor, session)) => Some((session, actor, last_seq)),
            Err(e) if e.status().is_server_error() => {
                tracing::error!(error = %e, "ws: authenticating");
                let _ = self
                    .error(
                        "server_error",
                        "the server could not check your session; reconnect".into(),
                        None,
                    )
                    .await;
                self.close(close::SERVER_ERROR, "server error").await;
                None
            }
            Err(e) => {
                let _ = self.error("unauthorized", e.to_string(), None).await;
                self.close(close::UNAUTHORIZED, "unauthorized").await;
                None
            }
        }
    }

    /// Sends stored messages after `last_sent` up to `until`, in order.
    async fn catch_up(&mut self, user_id: i64, until: i64) -> Flow {
        loop {
            let batch = match messages_after(&self.state.db, user_id, self.last_sent, 500).await {
                Ok(b) => b,
                Err(e) => {
                    tracing::error!(error = %e, "ws: replaying messages");
                    self.close(1011, "server error").await;
                    return Flow::Stop;
                }
            };
            let done = batch.len() < 500;
            for m in batch {
                if m.seq > until {
                    return Flow::Continue;
                }
                if let Flow::Stop = self.send_message(&m).await {
                    return Flow::Stop;
                }
            }
            if done {
                return Flow::Continue;
            }
        }
    }

    async fn send_message(&mut self, m: &StoredMessage) -> Flow {
        let flow = self.send_text(m.to_wire()).await;
        self.last_sent = m.seq;
        flow
    }

    async fn serve(
        &mut self,
        session: &Session,
        actor: &mut Actor,
        registration: &Registration,
        queue: &mut tokio::sync::mpsc::Receiver<Outbound>,
    ) {
        // The branches below are boxed: the future of a connection that sits idle then holds
        // only the select itself, not the largest branch inline (memory per idle phone).
        let every = Duration::from_secs(self.state.settings.ws_heartbeat_secs.max(1));
        let mut heartbeat = tokio::time::interval(every);
        heartbeat.tick().await;
        let shutdown = self.state.shutdown.clone();
        loop {
            let flow = tokio::select! {
                frame = self.socket.recv() => match frame {
                    Some(Ok(frame)) => {
                        self.last_heard = Instant::now();
                        Box::pin(self.on_frame(session, actor, registration, frame)).await
                    }
                    _ => Flow::Stop,
                },
                out = queue.recv() => match out {
                    Some(Outbound::Message(m)) => Box::pin(self.on_message(actor.user_id, &m)).await,
                    Some(Outbound::Event { about_user, json }) => Box::pin(self.on_event(actor.user_id, about_user, &json)).await,
                    None => {
                        self.close(close::TOO_SLOW, "too slow: reconnect and resume from your last seq").await;
                        Flow::Stop
                    }
                },
                _ = heartbeat.tick() => Box::pin(self.on_heartbeat(session, actor)).await,
                () = shutdown.cancelled() => {
                    self.close(close::GOING_AWAY, "server shutting down: reconnect and resume").await;
                    Flow::Stop
                }
            };
            if let Flow::Stop = flow {
                return;
            }
        }
    }

    async fn on_message(&mut self, user_id: i64, m: &StoredMessage) -> Flow {
        if m.seq <= self.last_sent {
            return Flow::Continue;
        }
        if m.seq > self.last_sent + 1 {
            // Another message committed first but reached the hub later: fill the gap from
            // storage so the client sees every number in order.
            if let Flow::Stop = self.catch_up(user_id, m.seq - 1).await {
                return Flow::Stop;
            }
        }
        self.send_message(m).await
    }

    async fn on_event(&mut self, viewer: i64, about_user: Option<i64>, json: &str) -> Flow {
        if let Some(person) = about_user
            && self.logged.insert(person)
            && let Err(e) = log_access(&self.state.db, viewer, &[person], "live_feed").await
        {
            tracing::error!(error = %e, "ws: writing the location-access log");
            return Flow::Stop;
        }
        self.send_text(json.to_string()).await
    }

    /// Pings, and re-reads the session and roles: a logout, a deactivation or a revoked role
    /// since the handshake takes effect here, within one heartbeat.
    async fn on_heartbeat(&mut self, session: &Session, actor: &mut Actor) -> Flow {
        // Silence for three heartbeats (pongs count) means the peer is gone.
        let dead_after = Duration::from_secs(3 * self.state.settings.ws_heartbeat_secs.max(1));
        if self.last_heard.elapsed() > dead_after {
            self.close(close::GOING_AWAY, "no traffic for too long")
                .await;
            return Flow::Stop;
        }
        match load_actor(&self.state, session).await {
            Ok(fresh) => *actor = fresh,
            Err(e) if e.status().is_server_error() => {
                tracing::error!(error = %e, "ws: re-checking a session");
            }
            Err(_) => {
                self.close(close::UNAUTHORIZED, "the session has ended")
                    .await;
                return Flow::Stop;
            }
        }
        if let Some(org) = self.watching
            && authorize(actor, Action::ViewPositions { org_id: org }).is_err()
        {
            self.close(
                close::UNAUTHORIZED,
                "you may no longer watch these positions",
            )
            .await;
            return Flow::Stop;
        }
        if let Some(org) = self.watching_alerts
            && authorize(actor, Action::ViewAlerts { org_id: org }).is_err()
        {
            self.close(close::UNAUTHORIZED, "you may no longer follow these alerts")
                .await;
            return Flow::Stop;
        }
        match self.socket.send(Message::Ping(Default::default())).await {
            Ok(()) => Flow::Continue,
            Err(_) => Flow::Stop,
        }
    }

    async fn on_frame(
        &mut self,
        session: &Session,
        actor: &Actor,
        registration: &Registration,
        frame: Message,
    ) -> Flow {
        let text = match frame {
            Message::Text(t) => t,
            Message::Close(_) => return Flow::Stop,
            Message::Ping(_) | Message::Pong(_) => return Flow::Continue,
            Message::Binary(_) => {
                return self
                    .error("bad_message", "messages are JSON text".into(), None)
                    .await;
            }
        };
        let msg = match serde_json::from_str::<ClientMsg>(&text) {
            Ok(m) => m,
            Err(e) => {
                let reference = serde_json::from_str::<serde_json::Value>(&text)
                    .ok()
                    .and_then(|v| v.get("ref").and_then(|r| r.as_str()).map(str::to_string));
                return self.error("bad_message", e.to_string(), reference).await;
            }
        };
        match msg {
            ClientMsg::Hello { .. } => {
                self.error("bad_message", "already authenticated".into(), None)
                    .await
            }
            ClientMsg::Ping { reference } => {
                self.send_json(json!({"type": "pong", "ref": reference}))
                    .await
            }
            ClientMsg::Position { reference, fixes } => {
                self.on_position(actor, reference, fixes).await
            }
            ClientMsg::Subscribe { topic, org_id } => {
                self.on_subscribe(session, registration, &topic, org_id)
                    .await
            }
            ClientMsg::Receipt {
                reference,
                alert_id,
                state,
            } => Box::pin(self.on_receipt(actor.user_id, reference, alert_id, state)).await,
            ClientMsg::ChatSend {
                reference,
                conversation_id,
                client_id,
                body,
            } => {
                let reply = Box::pin(crate::chat::socket::send(
                    &self.state,
                    actor,
                    reference,
                    conversation_id,
                    &client_id,
                    &body,
                ))
                .await;
                self.send_json(reply).await
            }
            ClientMsg::ChatReceipt {
                reference,
                conversation_id,
                seq,
                state,
            } => {
                let reply = Box::pin(crate::chat::socket::receipt(
                    &self.state,
                    actor,
                    reference,
                    conversation_id,
                    seq,
                    state,
                ))
                .await;
                self.reply(reply).await
            }
            ClientMsg::Typing { conversation_id } => {
                let state = self.state.clone();
                let reply = Box::pin(crate::chat::socket::typing(
                    &state,
                    actor,
                    &mut self.typing,
                    conversation_id,
                ))
                .await;
                self.reply(reply).await
            }
        }
    }

    async fn on_position(
        &mut self,
        actor: &Actor,
        reference: Option<String>,
        fixes: Vec<FixIn>,
    ) -> Flow {
        let s = &self.state.settings;
        let checked = validate_fixes(
            &fixes,
            crate::db::now_ms(),
            s.position_retention_days,
            s.max_fixes_per_batch,
        );
        let result = match checked {
            Ok(valid) => {
                accept(
                    &self.state,
                    Subject::User(actor.user_id),
                    actor.org_id,
                    "app",
                    valid,
                )
                .await
            }
            Err(e) => Err(e),
        };
        match result {
            Ok((recorded, _)) => {
                let duplicates = fixes.len().saturating_sub(recorded.inserted);
                self.send_json(json!({"type": "ack", "ref": reference, "accepted": recorded.inserted, "duplicates": duplicates}))
                    .await
            }
            Err(e) => {
                let code = match e.status().as_u16() {
                    409 => "location_less",
                    422 => "invalid",
                    _ => "server_error",
                };
                let detail = if e.status().is_server_error() {
                    "storing positions failed; send them again".into()
                } else {
                    e.to_string()
                };
                self.error(code, detail, reference).await
            }
        }
    }

    async fn on_receipt(
        &mut self,
        user_id: i64,
        reference: Option<String>,
        alert_id: i64,
        step: Step,
    ) -> Flow {
        if step == Step::Sent {
            return self
                .error(
                    "invalid",
                    "a receipt's state is delivered, read or acknowledged".into(),
                    reference,
                )
                .await;
        }
        match crate::alerts::store::is_recipient(&self.state.db, alert_id, user_id).await {
            Ok(true) => {}
            Ok(false) => {
                return self
                    .error(
                        "not_found",
                        format!("you did not receive alert {alert_id}"),
                        reference,
                    )
                    .await;
            }
            Err(e) => {
                tracing::error!(error = %e, "ws: checking a receipt");
                return self
                    .error("server_error", "try again".into(), reference)
                    .await;
            }
        }
        if self
            .state
            .ledger
            .record(alert_id, user_id, step, None)
            .await
            .is_err()
        {
            return self
                .error("server_error", "try again".into(), reference)
                .await;
        }
        match reference {
            Some(r) => self.send_json(json!({"type": "ack", "ref": r})).await,
            None => Flow::Continue,
        }
    }

    async fn on_subscribe(
        &mut self,
        session: &Session,
        registration: &Registration,
        topic: &str,
        org_id: Option<i64>,
    ) -> Flow {
        // Roles are read afresh: one revoked since the handshake must not open the feed.
        let actor = match load_actor(&self.state, session).await {
            Ok(a) => a,
            Err(_) => {
                self.close(close::UNAUTHORIZED, "the session has ended")
                    .await;
                return Flow::Stop;
            }
        };
        let actor = &actor;
        let all = actor.system_admin || actor.has(Role::Oversight);
        let org = org_id.or(if all { None } else { Some(actor.org_id) });
        // One stream of an organisation's operations: alert delivery counts and roll-call boards.
        if matches!(topic, "alerts" | "rollcalls" | "operations") {
            if let Err(denied) = authorize(actor, Action::ViewAlerts { org_id: org }) {
                return self.error("forbidden", denied.to_string(), None).await;
            }
            self.state.hub.watch_alerts(registration, org);
            self.watching_alerts = Some(org);
            return self
                .send_json(json!({"type": "subscribed", "topic": topic, "org_id": org}))
                .await;
        }
        if topic != "positions" {
            return self
                .error(
                    "bad_message",
                    format!("unknown topic {topic:?}; the topics are positions and operations (alias alerts, rollcalls)"),
                    None,
                )
                .await;
        }
        if let Err(denied) = authorize(actor, Action::ViewPositions { org_id: org }) {
            return self.error("forbidden", denied.to_string(), None).await;
        }
        self.state.hub.watch(registration, org);
        self.watching = Some(org);
        self.send_json(json!({"type": "subscribed", "topic": topic, "org_id": org}))
            .await
    }
}
