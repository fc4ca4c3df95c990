//! `GET /api/v1/ws`: the WebSocket every phone and console uses. The protocol is documented in
//! `docs/PROTOCOL.md`; in short: authenticate with the first message (or an `Authorization`
//! header), say the last sequence number seen, get what was missed in order, then live traffic;
//! send positions; operators subscribe to their organisation's live positions.

use std::collections::{HashMap, HashSet, VecDeque};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::http::HeaderMap;
use axum::response::Response;
use futures_util::SinkExt;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::alerts::ledger::Receipt;
use crate::auth::{Session, bearer_token, load_actor, verify_token};
use crate::error::AppError;
use crate::live::{Outbound, Registration, StoredMessage};
use crate::policy::{Action, Actor, authorize, listing_scope};
use crate::positions::writer::{Queued, Recorded};
use crate::positions::{StoredFix, Subject, WriteError, announce_live, newest_fix, validate_fixes};
use vigil_protocol::{
    AlertReceiptState, ClientMessage, ErrorCode, Fix, MAX_MESSAGE_BYTES, ServerMessage, Topic,
    close,
};

/// Every this many heartbeats a socket re-reads its session and roles (about every ten minutes
/// at the default 25 s), in case a revocation did not come through the hub.
const RECHECK_EVERY: u64 = 24;

/// Most position messages of one connection waiting for their commit at once. A phone that
/// streams one fix per message must have several in one group commit, or its rate is one
/// message per commit; past this the socket is not read until an answer goes out, so one
/// connection cannot fill the writer's queue.
const MAX_IN_FLIGHT: usize = 64;

/// Frames fed without a flush are written out once this many bytes wait: a burst of acks
/// leaves in one write instead of one each, and the buffer stays small for an idle phone.
const WRITE_COALESCE_BYTES: usize = 8 * 1024;

/// How long a new connection has to authenticate.
pub const AUTH_DEADLINE: Duration = Duration::from_secs(vigil_protocol::HELLO_DEADLINE_SECS);

/// The route (under `/api/v1`).
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(upgrade))
        .routes(routes!(schema))
}

/// The JSON Schema of every WebSocket message in both directions (the `vigil-protocol` types).
#[utoipa::path(get, path = "/ws/schema.json", tag = "live",
    responses((status = 200, description = "JSON Schema (draft 2020-12) of the WebSocket messages", content_type = "application/schema+json")))]
async fn schema() -> Response {
    use axum::response::IntoResponse;
    static SCHEMA: std::sync::LazyLock<String> =
        std::sync::LazyLock::new(|| vigil_protocol::json_schema().to_string());
    (
        [(axum::http::header::CONTENT_TYPE, "application/schema+json")],
        SCHEMA.as_str(),
    )
        .into_response()
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
    // phones. Messages here are small; 4 KiB reads and a write buffer that only gathers a
    // burst of acks (see WRITE_COALESCE_BYTES) keep an idle phone cheap.
    ws.read_buffer_size(4 * 1024)
        .write_buffer_size(WRITE_COALESCE_BYTES)
        .max_write_buffer_size(512 * 1024)
        .max_message_size(MAX_MESSAGE_BYTES)
        .max_frame_size(MAX_MESSAGE_BYTES)
        .on_upgrade(move |socket| async move {
            let mut conn = Connection {
                socket,
                state,
                last_sent: 0,
                last_heard: Instant::now(),
                logged: HashSet::new(),
                subscribed: HashMap::new(),
                heartbeats: 0,
                typing: Default::default(),
                in_flight: VecDeque::new(),
            };
            conn.run(header_token).await;
        })
}

struct Connection {
    socket: WebSocket,
    state: AppState,
    /// Highest sequence number sent on this connection.
    last_sent: i64,
    last_heard: Instant,
    /// People whose location this viewer has been sent on this connection (logged once each).
    logged: HashSet<i64>,
    /// The topics followed, with the organisation (`None`: all); re-authorised at every
    /// recheck.
    subscribed: HashMap<Topic, Option<i64>>,
    /// Heartbeats so far (every [`RECHECK_EVERY`]th re-reads the session).
    heartbeats: u64,
    /// When this connection last sent a typing hint, per conversation.
    typing: crate::chat::socket::TypingThrottle,
    /// Position messages not yet answered, in the order they came (that is the order the
    /// writer applies them in, and the order their acks go out). Only the oldest is waited
    /// for: the writer answers in order, so the rest are ready by the time it is, and a burst
    /// of messages costs no future or task of its own each.
    in_flight: VecDeque<InFlight>,
}

/// A position message waiting for its answer.
enum InFlight {
    /// Known without the writer (an invalid batch, a stopped writer).
    Ready(ServerMessage),
    /// With the writer.
    Queued { message: SentFixes, queued: Queued },
}

/// What the answer to a position message needs to know of it.
struct SentFixes {
    reference: Option<String>,
    org_id: i64,
    subject: Subject,
    /// Fixes in the message as sent, duplicates within it included.
    sent: usize,
    newest: Option<StoredFix>,
}

enum Answer {
    /// Known without the writer (an invalid batch, a stopped writer).
    Ready(ServerMessage),
    Committed {
        message: SentFixes,
        result: Result<Recorded, WriteError>,
    },
}

enum Flow {
    Continue,
    Stop,
}

/// Takes the oldest position message's answer off `in_flight` if it is known; with `cx`, the
/// task is woken when it becomes known, without it nothing is left behind.
fn next_answer(in_flight: &mut VecDeque<InFlight>, cx: Option<&mut Context<'_>>) -> Option<Answer> {
    let result = match in_flight.front_mut()? {
        InFlight::Ready(_) => None,
        InFlight::Queued { queued, .. } => Some(match cx {
            Some(cx) => match queued.poll_committed(cx) {
                Poll::Ready(r) => r,
                Poll::Pending => return None,
            },
            None => queued.try_committed()?,
        }),
    };
    Some(match in_flight.pop_front()? {
        InFlight::Ready(m) => Answer::Ready(m),
        InFlight::Queued { message, .. } => Answer::Committed {
            message,
            // Always `Some` for a queued message (looked at just above).
            result: result.unwrap_or(Err(WriteError::Stopped)),
        },
    })
}

/// Waits for the oldest position message's answer (pending for ever when none is in flight).
async fn oldest_answer(in_flight: &mut VecDeque<InFlight>) -> Answer {
    std::future::poll_fn(|cx| match next_answer(in_flight, Some(cx)) {
        Some(a) => Poll::Ready(a),
        None => Poll::Pending,
    })
    .await
}

impl Connection {
    async fn send(&mut self, msg: ServerMessage) -> Flow {
        self.send_text(msg.to_json()).await
    }

    async fn reply(&mut self, reply: Option<ServerMessage>) -> Flow {
        match reply {
            Some(m) => self.send(m).await,
            None => Flow::Continue,
        }
    }

    async fn send_text(&mut self, text: String) -> Flow {
        match self.socket.send(Message::Text(text.into())).await {
            Ok(()) => Flow::Continue,
            Err(_) => Flow::Stop,
        }
    }

    async fn error(&mut self, code: ErrorCode, detail: String, reference: Option<String>) -> Flow {
        self.send(ServerMessage::error(code, detail, reference))
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
                self.close(close::SERVER_ERROR, "server error").await;
                return;
            }
        };
        let welcome = ServerMessage::Welcome {
            v: vigil_protocol::VERSION,
            user_id: actor.user_id,
            org_id: actor.org_id,
            roles: actor.roles.iter().map(|r| r.as_str().to_string()).collect(),
            last_seq: current,
            heartbeat_secs: self.state.settings.ws_heartbeat_secs.max(1),
        };
        if let Flow::Stop = self.send(welcome).await {
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
        let (token, last_seq) = match serde_json::from_str::<ClientMessage>(&text) {
            Ok(ClientMessage::Hello { token, last_seq }) => (token.or(header_token), last_seq),
            Ok(_) => {
                let _ = self
                    .error(
                        ErrorCode::HelloExpected,
                        "the first message must be hello".into(),
                        None,
                    )
                    .await;
                self.close(close::PROTOCOL, "hello expected").await;
                return None;
            }
            Err(e) => {
                let _ = self
                    .error(
                        ErrorCode::BadMessage,
                        format!("unreadable hello: {e}"),
                        None,
                    )
                    .await;
                self.close(close::PROTOCOL, "hello expected").await;
                return None;
            }
        };
        let Some(token) = token else {
            let _ = self
                .error(
                    ErrorCode::Unauthorized,
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
                        ErrorCode::ServerError,
                        "the server could not check your session; reconnect".into(),
                        None,
                    )
                    .await;
                self.close(close::SERVER_ERROR, "server error").await;
                None
            }
            Err(e) => {
                let _ = self
                    .error(ErrorCode::Unauthorized, e.to_string(), None)
                    .await;
                self.close(close::UNAUTHORIZED, "unauthorized").await;
                None
            }
        }
    }

    /// Sends stored messages after `last_sent` up to `until`, in order.
    async fn catch_up(&mut self, user_id: i64, until: i64) -> Flow {
        loop {
            let batch = match self
                .state
                .stream
                .messages_after(&self.state.db, user_id, self.last_sent, 500)
                .await
            {
                Ok(b) => b,
                Err(e) => {
                    tracing::error!(error = %e, "ws: replaying messages");
                    self.close(close::SERVER_ERROR, "server error").await;
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
                // Answers first: the writer hands a group's geofence messages to the hub just
                // before its acks, and the ack should usually precede what it caused, as it
                // did when a connection waited for each commit.
                biased;
                answer = oldest_answer(&mut self.in_flight), if !self.in_flight.is_empty() => {
                    self.send_answers(answer).await
                }
                frame = self.socket.recv(), if self.in_flight.len() < MAX_IN_FLIGHT => match frame {
                    Some(Ok(frame)) => {
                        self.last_heard = Instant::now();
                        Box::pin(self.on_frame(session, actor, registration, frame)).await
                    }
                    Some(Err(e)) => Box::pin(self.on_read_error(actor.user_id, e)).await,
                    None => Flow::Stop,
                },
                out = queue.recv() => match out {
                    Some(Outbound::Message(m)) => Box::pin(self.on_message(actor.user_id, &m)).await,
                    Some(Outbound::Event { about_user, json }) => Box::pin(self.on_event(actor.user_id, about_user, &json)).await,
                    Some(Outbound::Recheck) => Box::pin(self.recheck(session, actor)).await,
                    Some(Outbound::Behind(seq)) if seq > self.last_sent => {
                        // Stored on another node and its hint lost (or not yet here).
                        self.state.metrics.cluster.caught_up_from_storage.inc();
                        Box::pin(self.catch_up(actor.user_id, seq)).await
                    }
                    Some(Outbound::Behind(_)) => Flow::Continue,
                    None => {
                        self.close(close::TOO_SLOW, "too slow: reconnect and resume from your last seq").await;
                        Flow::Stop
                    }
                },
                _ = heartbeat.tick() => Box::pin(self.on_heartbeat(session, actor)).await,
                () = shutdown.cancelled() => {
                    // Fixes already with the writer are committed anyway; say so.
                    let _ = self.settle().await;
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

    /// A frame the socket could not read. One over the size limit is said so with close 1009
    /// (and logged), rather than a bare reset the client cannot tell from a network failure.
    async fn on_read_error(&mut self, user_id: i64, e: axum::Error) -> Flow {
        let too_big = e
            .into_inner()
            .downcast::<tungstenite::Error>()
            .is_ok_and(|e| matches!(*e, tungstenite::Error::Capacity(_)));
        if too_big {
            tracing::warn!(
                user_id,
                limit = MAX_MESSAGE_BYTES,
                "ws: a message over the size limit; closing with 1009"
            );
            self.close(
                close::MESSAGE_TOO_BIG,
                "message over 256 KiB: send smaller messages",
            )
            .await;
        }
        Flow::Stop
    }

    async fn on_event(&mut self, viewer: i64, about_user: Option<i64>, json: &str) -> Flow {
        if let Some(person) = about_user
            && self.logged.insert(person)
            && let Err(e) = self
                .state
                .access_log
                .record(viewer, person, "live_feed")
                .await
        {
            tracing::error!(error = %e, "ws: writing the location-access log");
            return Flow::Stop;
        }
        self.send_text(json.to_string()).await
    }

    /// Pings, and closes a connection silent for three heartbeats. Revocations reach the
    /// socket through the hub at once ([`Outbound::Recheck`]); the session and roles are also
    /// re-read every [`RECHECK_EVERY`] heartbeats, as a safety net for changes made outside the
    /// server (a database edited by hand), without a query per connection per heartbeat.
    async fn on_heartbeat(&mut self, session: &Session, actor: &mut Actor) -> Flow {
        // Silence for three heartbeats (pongs count) means the peer is gone.
        let dead_after = Duration::from_secs(3 * self.state.settings.ws_heartbeat_secs.max(1));
        if self.last_heard.elapsed() > dead_after {
            self.close(close::GOING_AWAY, "no traffic for too long")
                .await;
            return Flow::Stop;
        }
        self.heartbeats += 1;
        if self.heartbeats.is_multiple_of(RECHECK_EVERY)
            && let Flow::Stop = self.recheck(session, actor).await
        {
            return Flow::Stop;
        }
        match self.socket.send(Message::Ping(Default::default())).await {
            Ok(()) => Flow::Continue,
            Err(_) => Flow::Stop,
        }
    }

    /// Re-reads the session and roles: after a logout, a deactivation or a revoked role the
    /// socket closes (4001), and so does a feed the roles no longer allow.
    async fn recheck(&mut self, session: &Session, actor: &mut Actor) -> Flow {
        match load_actor(&self.state, session).await {
            Ok(fresh) => *actor = fresh,
            Err(e) if e.status().is_server_error() => {
                // The database is unwell, not the session: try again at the next heartbeat.
                tracing::error!(error = %e, "ws: re-checking a session");
                self.heartbeats = RECHECK_EVERY - 1;
                return Flow::Continue;
            }
            Err(_) => {
                self.close(close::UNAUTHORIZED, "the session has ended")
                    .await;
                return Flow::Stop;
            }
        }
        let refused = self
            .subscribed
            .iter()
            .any(|(topic, org)| authorize(actor, Action::watch(*topic, *org)).is_err());
        if refused {
            self.close(close::UNAUTHORIZED, "you may no longer follow this feed")
                .await;
            return Flow::Stop;
        }
        Flow::Continue
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
            Message::Close(_) => {
                let _ = self.settle().await;
                return Flow::Stop;
            }
            Message::Ping(_) | Message::Pong(_) => return Flow::Continue,
            Message::Binary(_) => {
                if let Flow::Stop = self.settle().await {
                    return Flow::Stop;
                }
                return self
                    .error(ErrorCode::BadMessage, "messages are JSON text".into(), None)
                    .await;
            }
        };
        let msg = ClientMessage::parse(&text);
        // Every other answer goes out after those of the positions sent before it, as when
        // each message was answered before the next was read.
        if !matches!(msg, Ok(ClientMessage::Position { .. }))
            && let Flow::Stop = self.settle().await
        {
            return Flow::Stop;
        }
        let msg = match msg {
            Ok(m) => m,
            Err(e) => {
                let reference = serde_json::from_str::<serde_json::Value>(&text)
                    .ok()
                    .and_then(|v| v.get("ref").and_then(|r| r.as_str()).map(str::to_string));
                return self
                    .error(ErrorCode::BadMessage, e.to_string(), reference)
                    .await;
            }
        };
        match msg {
            ClientMessage::Hello { .. } => {
                self.error(ErrorCode::BadMessage, "already authenticated".into(), None)
                    .await
            }
            ClientMessage::Ping { reference } => self.send(ServerMessage::Pong { reference }).await,
            ClientMessage::Position { reference, fixes } => {
                self.on_position(actor, reference, fixes).await
            }
            ClientMessage::Subscribe { topic, org_id } => {
                self.on_subscribe(session, registration, topic, org_id)
                    .await
            }
            ClientMessage::Receipt {
                reference,
                alert_id,
                state,
            } => Box::pin(self.on_receipt(actor.user_id, reference, alert_id, state)).await,
            ClientMessage::ChatSend {
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
                self.send(reply).await
            }
            ClientMessage::ChatReceipt {
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
            ClientMessage::Typing { conversation_id } => {
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

    /// Validates the fixes and hands them to the writer; the ack goes out from the serve loop
    /// once they are committed, so the next message can join the same group meanwhile.
    async fn on_position(
        &mut self,
        actor: &Actor,
        reference: Option<String>,
        fixes: Vec<Fix>,
    ) -> Flow {
        let s = &self.state.settings;
        let checked = validate_fixes(
            &fixes,
            crate::db::now_ms(),
            s.position_retention_days,
            s.max_fixes_per_batch,
        );
        let valid = match checked {
            Ok(valid) => valid,
            Err(e) => {
                let refused = e.to_socket(ErrorCode::LocationLess, reference);
                self.in_flight.push_back(InFlight::Ready(refused));
                return Flow::Continue;
            }
        };
        let subject = Subject::User(actor.user_id);
        let newest = newest_fix(&valid);
        let waiting = match self
            .state
            .positions
            .submit(subject, actor.org_id, "app", valid)
            .await
        {
            Ok(queued) => InFlight::Queued {
                message: SentFixes {
                    reference,
                    org_id: actor.org_id,
                    subject,
                    sent: fixes.len(),
                    newest,
                },
                queued,
            },
            Err(e) => {
                InFlight::Ready(AppError::from(e).to_socket(ErrorCode::LocationLess, reference))
            }
        };
        self.in_flight.push_back(waiting);
        Flow::Continue
    }

    fn answer(&self, answer: Answer) -> ServerMessage {
        match answer {
            Answer::Ready(m) => m,
            Answer::Committed {
                message,
                result: Err(e),
            } => AppError::from(e).to_socket(ErrorCode::LocationLess, message.reference),
            Answer::Committed {
                message,
                result: Ok(recorded),
            } => {
                let SentFixes {
                    reference,
                    org_id,
                    subject,
                    sent,
                    newest,
                } = message;
                announce_live(&self.state, subject, org_id, newest, &recorded);
                ServerMessage::Ack {
                    reference,
                    accepted: Some(recorded.inserted as u64),
                    duplicates: Some(sent.saturating_sub(recorded.inserted) as u64),
                }
            }
        }
    }

    /// Sends `first` and every other answer already committed after it, then flushes once.
    async fn send_answers(&mut self, first: Answer) -> Flow {
        let mut next = Some(first);
        while let Some(answer) = next {
            let text = self.answer(answer).to_json();
            if self.socket.feed(Message::Text(text.into())).await.is_err() {
                return Flow::Stop;
            }
            next = next_answer(&mut self.in_flight, None);
        }
        match self.socket.flush().await {
            Ok(()) => Flow::Continue,
            Err(_) => Flow::Stop,
        }
    }

    /// Waits for every position message in flight and sends its answer.
    async fn settle(&mut self) -> Flow {
        while !self.in_flight.is_empty() {
            let answer = oldest_answer(&mut self.in_flight).await;
            if let Flow::Stop = self.send_answers(answer).await {
                return Flow::Stop;
            }
        }
        Flow::Continue
    }

    async fn on_receipt(
        &mut self,
        user_id: i64,
        reference: Option<String>,
        alert_id: i64,
        state: AlertReceiptState,
    ) -> Flow {
        let reply = match self.state.ledger.record(alert_id, user_id, state).await {
            Ok(Receipt::Recorded) => ServerMessage::ack(reference),
            Ok(Receipt::NotRecipient) => Some(ServerMessage::error(
                ErrorCode::NotFound,
                format!("you did not receive alert {alert_id}"),
                reference,
            )),
            Err(e) => {
                tracing::error!(error = %e, "ws: recording a receipt");
                Some(ServerMessage::error(
                    ErrorCode::ServerError,
                    "send it again",
                    reference,
                ))
            }
        };
        self.reply(reply).await
    }

    async fn on_subscribe(
        &mut self,
        session: &Session,
        registration: &Registration,
        topic: Topic,
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
        // Without `org_id`: every organisation for those who may follow all, else one's own.
        let org = match listing_scope(&actor, org_id, |org| Action::watch(topic, org)) {
            Ok(org) => org,
            Err(denied) => {
                return self
                    .error(ErrorCode::Forbidden, denied.to_string(), None)
                    .await;
            }
        };
        self.state.hub.watch(registration, topic, org);
        self.subscribed.insert(topic, org);
        self.send(ServerMessage::Subscribed { topic, org_id: org })
            .await
    }
}
