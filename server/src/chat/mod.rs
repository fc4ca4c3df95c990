//! Chat that never loses a word: SOS case chats and crisis channels (a roll-call's, an area's,
//! a duty station's, or any group an operator or adviser gathers).
//!
//! A message is stored once, in `chat_messages`, with its conversation's next sequence number
//! (taken in the same transaction, so numbers have no gaps), unless its sender stored one with
//! the same client-generated id before: a phone that resends after a network drop gets the
//! original back. Only then is it acknowledged. It is then fanned out to every participant —
//! the sender's other devices included — as a stored per-person message of kind `chat`
//! ([`stream::send_many`]), so the socket's resume brings back whatever a phone missed while
//! offline, and `GET /conversations/{id}/messages?after=SEQ` fills in a conversation's history.
//! A crash between storing and fanning out leaves the message marked `fanout_pending`; a sweep
//! ([`spawn_fanout_sweep`]) finishes it at the next start, so a participant may then see a
//! message twice in their stream: clients key chat messages by `(conversation_id, seq)`.
//!
//! Who takes part ([`policy`](crate::policy) decides, from the facts given here):
//! - the conversation's listed members read and write;
//! - an SOS chat (kind `sos`) also has every operator of its organisation, unlisted, so that
//!   any operator on duty sees a new case at once; org admins and advisers do not read SOS
//!   chats (they may be added as members);
//! - oversight reads every conversation and writes in none unless listed as a member;
//! - a system admin may do anything;
//! - operators and advisers of an organisation open its crisis channels, change their members
//!   and close them (SOS chats are opened and closed by their case, through [`open`] and
//!   [`close`]).
//!
//! Receipts (delivered, read) only move forward and reach the other online participants as
//! live events; typing hints are live only. Presence is read, not pushed: the participants in
//! `GET /conversations/{id}` say who is connected to this node now.

pub mod socket;
pub mod store;

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use vigil_protocol::{LiveEvent, ServerMessage};

use crate::AppState;
use crate::db::{Timestamp, now_ms};
use crate::error::{AppError, AppResult, Issue, Json, Path, Query};
use crate::policy::{Action, Actor, authorize};
use crate::stream::{self, Note};

/// Stored message kind of a chat message in a person's stream.
pub const KIND_CHAT: &str = "chat";
/// Stored message kind telling a person they were added to a conversation.
pub const KIND_ADDED: &str = "chat_added";
/// Stored message kind telling a person they were taken off a conversation.
pub const KIND_REMOVED: &str = "chat_removed";
/// Stored message kind telling the participants a conversation was closed.
pub const KIND_CLOSED: &str = "chat_closed";
/// Longest message body, in characters.
pub const MAX_BODY: usize = 4_000;
/// Longest client-generated id, in characters.
pub const MAX_CLIENT_ID: usize = 64;
/// Longest conversation title, in characters.
pub const MAX_TITLE: usize = 200;
/// Most people one request may add or remove.
pub const MAX_MEMBERS_PER_REQUEST: usize = 10_000;
/// How long a message may wait for its fan-out before the sweep takes it over.
const FANOUT_GRACE: Duration = Duration::from_secs(5);

/// What a conversation is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// An SOS case's chat between the person and the operators.
    Sos,
    /// A roll-call's crisis channel.
    Rollcall,
    /// An area's crisis channel (first members: who is inside it and who follows it).
    Area,
    /// A duty station's channel (its wardens, everyone assigned there).
    DutyStation,
    /// Any group of people.
    Group,
}

impl Kind {
    /// The name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Sos => "sos",
            Kind::Rollcall => "rollcall",
            Kind::Area => "area",
            Kind::DutyStation => "duty_station",
            Kind::Group => "group",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Kind> {
        [
            Kind::Sos,
            Kind::Rollcall,
            Kind::Area,
            Kind::DutyStation,
            Kind::Group,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

impl TryFrom<String> for Kind {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        Kind::parse(&s).ok_or_else(|| format!("unknown conversation kind {s:?}"))
    }
}

/// A conversation about to be opened (by the SOS and roll-call modules, or an operator).
#[derive(Debug, Clone)]
pub struct NewConversation {
    /// The organisation it belongs to.
    pub org_id: i64,
    /// What it is about.
    pub kind: Kind,
    /// The case, roll-call, area or duty station it is about (none for a group).
    pub ref_id: Option<i64>,
    /// Shown in lists.
    pub title: String,
    /// Who opened it; listed as a member too.
    pub created_by: Option<i64>,
    /// Listed members (ids that name nobody are skipped).
    pub members: Vec<i64>,
}

/// A conversation, with the caller's own unread count.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, sqlx::FromRow)]
pub struct Conversation {
    /// Id.
    pub id: i64,
    /// Its organisation.
    pub org_id: i64,
    /// What it is about.
    #[sqlx(try_from = "String")]
    pub kind: Kind,
    /// The case, roll-call, area or duty station it is about.
    pub ref_id: Option<i64>,
    /// Title.
    pub title: String,
    /// Who opened it.
    pub created_by: Option<i64>,
    /// When.
    pub created_at: Timestamp,
    /// When it was closed, if it was.
    pub closed_at: Option<Timestamp>,
    /// Sequence number of the newest message (0: none yet). Numbers have no gaps.
    pub last_seq: i64,
    /// The caller has read up to here.
    pub my_last_read_seq: i64,
    /// Messages from others after `my_last_read_seq`.
    pub unread: i64,
}

/// Someone taking part in a conversation.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Participant {
    /// The person.
    pub user_id: i64,
    /// Their name.
    pub name: String,
    /// `member` (listed) or `operator` (an SOS chat's operators take part by role).
    pub via: String,
    /// Highest sequence number one of their devices received.
    pub last_delivered_seq: i64,
    /// Highest sequence number they read.
    pub last_read_seq: i64,
    /// Connected to this server now.
    pub online: bool,
}

/// A conversation with everyone in it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ConversationDetail {
    /// The conversation.
    #[serde(flatten)]
    pub conversation: Conversation,
    /// Who takes part, by name.
    pub participants: Vec<Participant>,
}

/// A chat message; also the payload of a `chat` message in a person's stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema, sqlx::FromRow)]
pub struct ChatMessage {
    /// The conversation.
    pub conversation_id: i64,
    /// Its number in the conversation: 1, 2, 3… without gaps.
    pub seq: i64,
    /// Who wrote it.
    pub sender_id: i64,
    /// Their name.
    pub sender_name: String,
    /// The id the sender's device gave it.
    pub client_id: String,
    /// The text.
    pub body: String,
    /// When the server stored it.
    pub sent_at: Timestamp,
}

/// How far a person got with a conversation's messages (the protocol's type).
pub use vigil_protocol::ChatReceiptState as ReceiptState;

/// Body of `POST /conversations`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateBody {
    /// `group`, `area`, `duty_station` or `rollcall` (SOS chats are opened by their case).
    pub kind: Kind,
    /// The area, duty station or roll-call (required for those kinds; none for a group).
    #[serde(default)]
    pub ref_id: Option<i64>,
    /// 1 to 200 characters.
    pub title: String,
    /// Members besides the caller: active people of the organisation. A duty station's channel
    /// also gets everyone assigned to the station now.
    #[serde(default)]
    pub members: Vec<i64>,
    /// The organisation (default: the caller's).
    #[serde(default)]
    pub org_id: Option<i64>,
}

/// Body of `POST` and `DELETE /conversations/{id}/members`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MembersBody {
    /// The people.
    pub user_ids: Vec<i64>,
}

/// Body of `POST /conversations/{id}/messages`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendBody {
    /// The device's id for the message, 1 to 64 of `A-Z a-z 0-9 _ -`; a resend uses the same.
    pub client_id: String,
    /// The text, 1 to 4,000 characters.
    pub body: String,
}

/// Body of `POST /conversations/{id}/read`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReadBody {
    /// Everything up to this sequence number.
    pub seq: i64,
    /// `read` (default) or `delivered`.
    #[serde(default)]
    pub state: Option<ReceiptState>,
}

/// Paging through a conversation's messages.
#[derive(Debug, Deserialize, IntoParams)]
pub struct MessagesQuery {
    /// Only messages after this sequence number (default 0). Numbers have no gaps, so the
    /// newest 50 are `after = last_seq - 50`.
    pub after: Option<i64>,
    /// At most this many, oldest first (default 100, at most 1,000).
    pub limit: Option<i64>,
}

/// Which conversations to list.
#[derive(Debug, Deserialize, IntoParams)]
pub struct ListQuery {
    /// Every conversation of this organisation (oversight and system admins); default: the
    /// caller's own.
    pub org_id: Option<i64>,
    /// At most this many (default 200, at most 1,000).
    pub limit: Option<i64>,
}

/// Routes for conversations.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(get_one))
        .routes(routes!(history, send))
        .routes(routes!(read))
        .routes(routes!(add, remove))
        .routes(routes!(close_route))
}

/// Checks a message's client id and body.
pub fn validate_message(client_id: &str, body: &str) -> AppResult<()> {
    let mut issues = Vec::new();
    let n = client_id.chars().count();
    if n == 0 || n > MAX_CLIENT_ID {
        issues.push(Issue::new(
            "client_id",
            format!("1 to {MAX_CLIENT_ID} characters (got {n})"),
        ));
    } else if !client_id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        issues.push(Issue::new(
            "client_id",
            "only letters A-Z a-z, digits, _ and -",
        ));
    }
    let n = body.chars().count();
    if body.trim().is_empty() {
        issues.push(Issue::new("body", "required, not empty"));
    } else if n > MAX_BODY {
        issues.push(Issue::new(
            "body",
            format!("at most {MAX_BODY} characters (got {n})"),
        ));
    }
    AppError::check(issues)
}

fn check_title(title: &str) -> AppResult<String> {
    let title = title.trim();
    let n = title.chars().count();
    if n == 0 || n > MAX_TITLE {
        return Err(AppError::invalid(
            "title",
            format!("1 to {MAX_TITLE} characters (got {n})"),
        ));
    }
    Ok(title.to_string())
}

/// Opens a conversation and tells its listed members (`chat_added`); returns its id. No
/// authorisation here: callers decide who may open what. A title longer than 200 characters
/// is cut (an SOS chat must not fail over a long name); an empty one is 422.
pub async fn open(state: &AppState, new: NewConversation) -> AppResult<i64> {
    let cut: String = new.title.trim().chars().take(MAX_TITLE).collect();
    let title = check_title(&cut)?;
    let mut members = new.members;
    members.extend(new.created_by);
    members.sort_unstable();
    members.dedup();
    let id = store::insert(
        &state.db,
        store::Insert {
            org_id: new.org_id,
            kind: new.kind,
            ref_id: new.ref_id,
            title: &title,
            created_by: new.created_by,
            members: &members,
        },
    )
    .await?;
    tell_added(state, id, &members).await?;
    Ok(id)
}

/// Stores a message from `sender_id` (unless the sender stored one with this `client_id`
/// before: then the original comes back with `true`) and fans it out to every participant.
/// No authorisation here: callers check [`may_write`] first. A closed conversation refuses
/// new messages (409); invalid input is 422.
pub async fn post(
    state: &AppState,
    conversation_id: i64,
    sender_id: i64,
    client_id: &str,
    body: &str,
) -> AppResult<(ChatMessage, bool)> {
    validate_message(client_id, body)?;
    let stored =
        store::insert_message(&state.db, conversation_id, sender_id, client_id, body).await?;
    if !stored.duplicate {
        fan_out(state, &stored.message).await?;
    }
    Ok((stored.message, stored.duplicate))
}

/// Copies a stored message into every participant's stream, then marks it done.
async fn fan_out(state: &AppState, message: &ChatMessage) -> AppResult<()> {
    let people = store::participant_ids(&state.db, message.conversation_id).await?;
    let payload = serde_json::to_value(message).map_err(|e| AppError::Internal(e.into()))?;
    let notes = people
        .into_iter()
        .map(|user_id| Note {
            user_id,
            kind: KIND_CHAT,
            payload: payload.clone(),
            advisory_of: None,
        })
        .collect();
    stream::send_many(&state.db, &state.hub, notes).await?;
    store::mark_fanned_out(&state.db, message.conversation_id, message.seq).await
}

/// Finishes the fan-out of messages a crash or a failed fan-out left behind: everything
/// pending at start, then every few seconds whatever has waited longer than a live request
/// would.
pub fn spawn_fanout_sweep(state: &AppState) {
    let state = state.clone();
    // What was stored before this start cannot be in flight any more on one node; in a
    // cluster another node may be fanning it out right now.
    let grace = i64::try_from(FANOUT_GRACE.as_millis()).unwrap_or(5_000);
    let mut cutoff = if state.cluster.is_clustered() {
        now_ms() - grace
    } else {
        now_ms()
    };
    tokio::spawn(async move {
        loop {
            let ttl = FANOUT_GRACE + state.cluster.lease_ttl();
            let sweep = async {
                if state.cluster.holds(&state.db, "chat fan-out", ttl).await {
                    sweep_once(&state, cutoff).await
                } else {
                    Ok(0)
                }
            };
            match sweep.await {
                Ok(n) if n > 0 => tracing::info!(messages = n, "chat: finished pending fan-outs"),
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "chat: sweeping pending fan-outs"),
            }
            tokio::select! {
                () = tokio::time::sleep(FANOUT_GRACE) => {}
                () = state.shutdown.cancelled() => return,
            }
            cutoff = now_ms() - grace;
        }
    });
}

async fn sweep_once(state: &AppState, before: i64) -> AppResult<usize> {
    let mut done = 0;
    loop {
        let batch = store::pending_fanout(&state.db, before, 200).await?;
        if batch.is_empty() {
            return Ok(done);
        }
        for message in &batch {
            fan_out(state, message).await?;
            done += 1;
        }
    }
}

/// Lists people as members of a conversation and tells the new ones (`chat_added`). A closed
/// conversation takes no new members (409); ids that name nobody are skipped.
pub async fn add_members(state: &AppState, conversation_id: i64, users: &[i64]) -> AppResult<()> {
    add_members_as(state, conversation_id, users, None).await
}

async fn add_members_as(
    state: &AppState,
    conversation_id: i64,
    users: &[i64],
    actor_id: Option<i64>,
) -> AppResult<()> {
    let c = store::standing(&state.db, conversation_id, 0).await?;
    if c.closed {
        return Err(AppError::Conflict(format!(
            "conversation {conversation_id} is closed"
        )));
    }
    let added = store::add_members(&state.db, conversation_id, users, actor_id, c.org_id).await?;
    tell_added(state, conversation_id, &added).await
}

async fn tell_added(state: &AppState, conversation_id: i64, users: &[i64]) -> AppResult<()> {
    if users.is_empty() {
        return Ok(());
    }
    let c = store::load(&state.db, conversation_id, 0).await?;
    let payload = json!({"conversation_id": c.id, "kind": c.kind, "ref_id": c.ref_id, "title": c.title,
        "org_id": c.org_id, "last_seq": c.last_seq});
    let notes = users
        .iter()
        .map(|&user_id| Note {
            user_id,
            kind: KIND_ADDED,
            payload: payload.clone(),
            advisory_of: None,
        })
        .collect();
    stream::send_many(&state.db, &state.hub, notes).await?;
    Ok(())
}

/// Closes a conversation (409 if it is closed already) and tells its participants
/// (`chat_closed`). Its history stays readable.
pub async fn close(state: &AppState, conversation_id: i64) -> AppResult<()> {
    close_as(state, conversation_id, None).await
}

async fn close_as(state: &AppState, conversation_id: i64, actor_id: Option<i64>) -> AppResult<()> {
    let closed_at = store::close(&state.db, conversation_id, actor_id).await?;
    let people = store::participant_ids(&state.db, conversation_id).await?;
    let payload = json!({"conversation_id": conversation_id, "closed_at": Timestamp(closed_at)});
    let notes = people
        .into_iter()
        .map(|user_id| Note {
            user_id,
            kind: KIND_CLOSED,
            payload: payload.clone(),
            advisory_of: None,
        })
        .collect();
    stream::send_many(&state.db, &state.hub, notes).await?;
    Ok(())
}

/// Whether `actor` may read a conversation (404 if it does not exist).
pub async fn may_read(state: &AppState, actor: &Actor, conversation_id: i64) -> AppResult<bool> {
    let s = store::standing(&state.db, conversation_id, actor.user_id).await?;
    Ok(authorize(actor, read_action(&s)).is_ok())
}

/// Whether `actor` may write in a conversation, open or closed (404 if it does not exist).
pub async fn may_write(state: &AppState, actor: &Actor, conversation_id: i64) -> AppResult<bool> {
    let s = store::standing(&state.db, conversation_id, actor.user_id).await?;
    Ok(authorize(actor, write_action(&s)).is_ok())
}

fn read_action(s: &store::Standing) -> Action {
    Action::ReadConversation {
        org_id: s.org_id,
        sos: s.kind == Kind::Sos,
        member: s.member,
    }
}

fn write_action(s: &store::Standing) -> Action {
    Action::WriteConversation {
        org_id: s.org_id,
        sos: s.kind == Kind::Sos,
        member: s.member,
    }
}

/// Loads where `actor` stands in a conversation and checks they may read it (403 otherwise).
async fn readable(state: &AppState, actor: &Actor, id: i64) -> AppResult<store::Standing> {
    let s = store::standing(&state.db, id, actor.user_id).await?;
    authorize(actor, read_action(&s))?;
    Ok(s)
}

/// Loads where `actor` stands in a conversation and checks they may write in it.
async fn writable(state: &AppState, actor: &Actor, id: i64) -> AppResult<store::Standing> {
    let s = store::standing(&state.db, id, actor.user_id).await?;
    authorize(actor, write_action(&s))?;
    Ok(s)
}

/// Moves a participant's receipt forward and tells the other online participants; returns
/// the receipt when it moved. `seq` may not pass the conversation's newest message.
pub async fn record_receipt(
    state: &AppState,
    actor: &Actor,
    conversation_id: i64,
    seq: i64,
    step: ReceiptState,
) -> AppResult<Option<store::Receipt>> {
    let s = writable(state, actor, conversation_id).await?;
    if seq < 0 || seq > s.last_seq {
        return Err(AppError::invalid(
            "seq",
            format!(
                "between 0 and the conversation's newest message, {}",
                s.last_seq
            ),
        ));
    }
    let read = if step == ReceiptState::Read { seq } else { 0 };
    let moved =
        store::advance_receipt(&state.db, conversation_id, actor.user_id, seq, read).await?;
    if let Some(r) = moved {
        let event = ServerMessage::Event(LiveEvent::ChatReceipt {
            conversation_id,
            user_id: actor.user_id,
            delivered_seq: r.delivered_seq,
            read_seq: r.read_seq,
        });
        notify_online(state, conversation_id, None, &event).await?;
    }
    Ok(moved)
}

/// Sends a live event to the participants connected to this node, except `except`.
async fn notify_online(
    state: &AppState,
    conversation_id: i64,
    except: Option<i64>,
    event: &ServerMessage,
) -> AppResult<()> {
    let mut people = store::participant_ids(&state.db, conversation_id).await?;
    people.retain(|u| Some(*u) != except);
    state.hub.notify(&people, event);
    Ok(())
}

/// The caller's conversations (or, for oversight, an organisation's), open ones first.
#[utoipa::path(get, path = "/conversations", tag = "chat", security(("bearer" = [])), params(ListQuery),
    responses((status = 200, body = [Conversation]), (status = 403, description = "listing an organisation's conversations needs oversight")))]
async fn list(
    State(state): State<AppState>,
    actor: Actor,
    Query(q): Query<ListQuery>,
) -> AppResult<Json<Vec<Conversation>>> {
    let limit = q.limit.unwrap_or(200).clamp(1, 1_000);
    let found = match q.org_id {
        Some(org_id) => {
            authorize(&actor, Action::ListConversations { org_id })?;
            store::list_org(&state.db, actor.user_id, org_id, limit).await?
        }
        None => store::list_mine(&state.db, &actor, limit).await?,
    };
    Ok(Json(found))
}

/// Open a crisis channel: a group, or the channel of an area, a duty station or a roll-call.
/// The caller is listed as a member.
#[utoipa::path(post, path = "/conversations", tag = "chat", security(("bearer" = [])), request_body = CreateBody,
    responses((status = 201, body = ConversationDetail), (status = 403, description = "not an operator or adviser of that organisation"),
              (status = 404, description = "no such area, duty station or roll-call"),
              (status = 422, description = "invalid kind, title, reference or member")))]
async fn create(
    State(state): State<AppState>,
    actor: Actor,
    Json(body): Json<CreateBody>,
) -> AppResult<(StatusCode, Json<ConversationDetail>)> {
    let org_id = body.org_id.unwrap_or(actor.org_id);
    authorize(&actor, Action::ManageConversations { org_id })?;
    let title = check_title(&body.title)?;
    let mut members = check_members(&state, &body.members, org_id).await?;
    match (body.kind, body.ref_id) {
        (Kind::Sos, _) => {
            return Err(AppError::invalid(
                "kind",
                "an SOS chat is opened by its case; here: group, area, duty_station or rollcall",
            ));
        }
        (Kind::Group, Some(_)) => {
            return Err(AppError::invalid(
                "ref_id",
                "a group is about nothing: leave ref_id out",
            ));
        }
        (Kind::Group, None) => {}
        (kind, None) => {
            return Err(AppError::invalid(
                "ref_id",
                format!(
                    "required: the {} the channel is for",
                    kind.as_str().replace('_', " ")
                ),
            ));
        }
        (kind, Some(ref_id)) => {
            let what = kind.as_str().replace('_', " ");
            match store::subject_org(&state.db, kind, ref_id).await? {
                None => {
                    return Err(AppError::NotFound(format!(
                        "{what} {ref_id} does not exist"
                    )));
                }
                Some(Some(owner)) if owner != org_id => {
                    return Err(AppError::invalid(
                        "ref_id",
                        format!("{what} {ref_id} belongs to another organisation"),
                    ));
                }
                Some(_) => {}
            }
            match kind {
                Kind::DutyStation => {
                    members.extend(store::assigned_to(&state.db, org_id, ref_id).await?);
                }
                Kind::Area => {
                    let inside = people_inside(&state, ref_id);
                    members.extend(store::area_people(&state.db, org_id, ref_id, &inside).await?);
                }
                _ => {}
            }
        }
    }
    let id = open(
        &state,
        NewConversation {
            org_id,
            kind: body.kind,
            ref_id: body.ref_id,
            title,
            created_by: Some(actor.user_id),
            members,
        },
    )
    .await?;
    Ok((StatusCode::CREATED, Json(detail(&state, &actor, id).await?)))
}

/// People whose last known position is inside an area (whatever its age: a channel for a
/// crisis there should reach whoever was last seen there).
fn people_inside(state: &AppState, area: i64) -> Vec<i64> {
    let tracker = crate::areas::read_tracker(&state.tracker);
    let Some(a) = tracker.areas().get(area) else {
        return Vec::new();
    };
    tracker
        .positions()
        .within_shape(&a.shape)
        .into_iter()
        // People are positive ids in the tracker; assets are negative.
        .filter(|id| *id > 0)
        .collect()
}

/// Checks that every id names an active person of `org`.
async fn check_members(state: &AppState, ids: &[i64], org: i64) -> AppResult<Vec<i64>> {
    if ids.len() > MAX_MEMBERS_PER_REQUEST {
        return Err(AppError::invalid(
            "members",
            format!("at most {MAX_MEMBERS_PER_REQUEST} at a time"),
        ));
    }
    let unknown = store::unknown_users(&state.db, ids, Some(org)).await?;
    let issues: Vec<Issue> = ids
        .iter()
        .enumerate()
        .filter(|(_, id)| unknown.contains(id))
        .map(|(i, id)| {
            Issue::new(
                format!("members/{i}"),
                format!("user {id} is not an active member of organisation {org}"),
            )
        })
        .collect();
    AppError::check(issues)?;
    Ok(ids.to_vec())
}

async fn detail(state: &AppState, actor: &Actor, id: i64) -> AppResult<ConversationDetail> {
    let conversation = store::load(&state.db, id, actor.user_id).await?;
    let mut participants = store::participants(&state.db, id).await?;
    for p in &mut participants {
        p.online = state.hub.connections_of(p.user_id) > 0;
    }
    Ok(ConversationDetail {
        conversation,
        participants,
    })
}

/// One conversation with its participants, their receipts and who is online now.
#[utoipa::path(get, path = "/conversations/{id}", tag = "chat", security(("bearer" = [])), params(("id" = i64, Path)),
    responses((status = 200, body = ConversationDetail), (status = 403, description = "not taking part, nor oversight"), (status = 404, description = "no such conversation")))]
async fn get_one(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
) -> AppResult<Json<ConversationDetail>> {
    readable(&state, &actor, id).await?;
    Ok(Json(detail(&state, &actor, id).await?))
}

/// A conversation's messages after a sequence number, oldest first (history and catch-up).
#[utoipa::path(get, path = "/conversations/{id}/messages", tag = "chat", security(("bearer" = [])), params(("id" = i64, Path), MessagesQuery),
    responses((status = 200, body = [ChatMessage]), (status = 403, description = "not taking part, nor oversight"), (status = 404, description = "no such conversation")))]
async fn history(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
    Query(q): Query<MessagesQuery>,
) -> AppResult<Json<Vec<ChatMessage>>> {
    readable(&state, &actor, id).await?;
    let limit = q.limit.unwrap_or(100).clamp(1, 1_000);
    Ok(Json(
        store::messages_after(&state.db, id, q.after.unwrap_or(0).max(0), limit).await?,
    ))
}

/// Send a message. 201 once stored; a resend with the same `client_id` is 200 with the
/// original (its body is not looked at again).
#[utoipa::path(post, path = "/conversations/{id}/messages", tag = "chat", security(("bearer" = [])), params(("id" = i64, Path)), request_body = SendBody,
    responses((status = 201, body = ChatMessage), (status = 200, body = ChatMessage, description = "already stored under this client_id"),
              (status = 403, description = "not taking part"), (status = 404, description = "no such conversation"),
              (status = 409, description = "the conversation is closed"), (status = 422, description = "invalid client_id or body")))]
async fn send(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
    Json(body): Json<SendBody>,
) -> AppResult<(StatusCode, Json<ChatMessage>)> {
    validate_message(&body.client_id, &body.body)?;
    writable(&state, &actor, id).await?;
    let (message, duplicate) = post(&state, id, actor.user_id, &body.client_id, &body.body).await?;
    let status = if duplicate {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(message)))
}

/// Mark a conversation read (or delivered) up to a sequence number. Receipts never move back.
#[utoipa::path(post, path = "/conversations/{id}/read", tag = "chat", security(("bearer" = [])), params(("id" = i64, Path)), request_body = ReadBody,
    responses((status = 204, description = "recorded"), (status = 403, description = "not taking part"), (status = 404, description = "no such conversation"),
              (status = 422, description = "seq beyond the newest message")))]
async fn read(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
    Json(body): Json<ReadBody>,
) -> AppResult<StatusCode> {
    let step = body.state.unwrap_or(ReceiptState::Read);
    record_receipt(&state, &actor, id, body.seq, step).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Loads a conversation and checks `actor` may manage its organisation's conversations.
async fn manageable(state: &AppState, actor: &Actor, id: i64) -> AppResult<store::Standing> {
    let s = store::standing(&state.db, id, actor.user_id).await?;
    authorize(actor, Action::ManageConversations { org_id: s.org_id })?;
    Ok(s)
}

/// Add members (active people of the conversation's organisation); each new one is told.
#[utoipa::path(post, path = "/conversations/{id}/members", tag = "chat", security(("bearer" = [])), params(("id" = i64, Path)), request_body = MembersBody,
    responses((status = 204, description = "listed"), (status = 403, description = "not an operator or adviser of the conversation's organisation"),
              (status = 404, description = "no such conversation"), (status = 409, description = "the conversation is closed"),
              (status = 422, description = "someone who is not an active member of the organisation")))]
async fn add(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
    Json(body): Json<MembersBody>,
) -> AppResult<StatusCode> {
    let s = manageable(&state, &actor, id).await?;
    let users = check_members(&state, &body.user_ids, s.org_id)
        .await
        .map_err(|e| rename_issues(e, "members", "user_ids"))?;
    add_members_as(&state, id, &users, Some(actor.user_id)).await?;
    Ok(StatusCode::NO_CONTENT)
}

fn rename_issues(e: AppError, from: &str, to: &str) -> AppError {
    match e {
        AppError::Invalid { issues, .. } => AppError::from_issues(
            issues
                .into_iter()
                .map(|i| Issue::new(i.at.replacen(from, to, 1), i.reason))
                .collect(),
        ),
        other => other,
    }
}

/// Take people off the members (those not listed are ignored); each one removed is told.
#[utoipa::path(delete, path = "/conversations/{id}/members", tag = "chat", security(("bearer" = [])), params(("id" = i64, Path)), request_body = MembersBody,
    responses((status = 204, description = "no longer listed"), (status = 403, description = "not an operator or adviser of the conversation's organisation"),
              (status = 404, description = "no such conversation"), (status = 422, description = "too many at once")))]
async fn remove(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
    Json(body): Json<MembersBody>,
) -> AppResult<StatusCode> {
    let s = manageable(&state, &actor, id).await?;
    if body.user_ids.len() > MAX_MEMBERS_PER_REQUEST {
        return Err(AppError::invalid(
            "user_ids",
            format!("at most {MAX_MEMBERS_PER_REQUEST} at a time"),
        ));
    }
    let removed =
        store::remove_members(&state.db, id, &body.user_ids, Some(actor.user_id), s.org_id).await?;
    let payload = json!({"conversation_id": id});
    let notes = removed
        .into_iter()
        .map(|user_id| Note {
            user_id,
            kind: KIND_REMOVED,
            payload: payload.clone(),
            advisory_of: None,
        })
        .collect();
    stream::send_many(&state.db, &state.hub, notes).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Close a crisis channel: it takes no more messages; its history stays. An SOS chat closes
/// with its case.
#[utoipa::path(post, path = "/conversations/{id}/close", tag = "chat", security(("bearer" = [])), params(("id" = i64, Path)),
    responses((status = 200, body = ConversationDetail), (status = 403, description = "not an operator or adviser of the conversation's organisation"),
              (status = 404, description = "no such conversation"), (status = 409, description = "closed already, or an SOS chat")))]
async fn close_route(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
) -> AppResult<Json<ConversationDetail>> {
    let s = manageable(&state, &actor, id).await?;
    if s.kind == Kind::Sos {
        return Err(AppError::Conflict(
            "an SOS chat closes when its case is closed".into(),
        ));
    }
    close_as(&state, id, Some(actor.user_id)).await?;
    Ok(Json(detail(&state, &actor, id).await?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Role;

    #[test]
    fn client_ids_and_bodies_are_checked() {
        assert!(validate_message("m-1_A", "hello").is_ok());
        assert!(validate_message(&"a".repeat(64), &"é".repeat(4_000)).is_ok());
        for (client_id, body) in [
            ("", "hello"),
            (&"a".repeat(65) as &str, "hello"),
            ("has space", "hello"),
            ("ünïcode", "hello"),
            ("ok", ""),
            ("ok", " \n "),
            ("ok", &"x".repeat(4_001) as &str),
        ] {
            assert!(
                validate_message(client_id, body).is_err(),
                "{client_id:?} / {} chars",
                body.len()
            );
        }
    }

    fn actor(org_id: i64, roles: &[Role]) -> Actor {
        Actor {
            user_id: 7,
            org_id,
            roles: roles.to_vec(),
            system_admin: false,
        }
    }

    #[test]
    fn who_takes_part() {
        let sos = |member| Action::ReadConversation {
            org_id: 1,
            sos: true,
            member,
        };
        let write_sos = |member| Action::WriteConversation {
            org_id: 1,
            sos: true,
            member,
        };
        let write_group = |member| Action::WriteConversation {
            org_id: 1,
            sos: false,
            member,
        };
        // An SOS chat: every operator of the organisation, nobody else unless listed.
        assert!(authorize(&actor(1, &[Role::Operator]), write_sos(false)).is_ok());
        assert!(authorize(&actor(2, &[Role::Operator]), sos(false)).is_err());
        for roles in [[Role::Adviser], [Role::OrgAdmin], [Role::Staff]] {
            assert!(authorize(&actor(1, &roles), sos(false)).is_err());
            assert!(authorize(&actor(1, &roles), write_sos(true)).is_ok());
        }
        // A channel: its members only; an operator is not a member by role.
        assert!(authorize(&actor(1, &[Role::Operator]), write_group(false)).is_err());
        assert!(authorize(&actor(1, &[Role::Staff]), write_group(true)).is_ok());
        // Oversight reads everything, and writes only where it was listed.
        let o = actor(3, &[Role::Oversight]);
        assert!(authorize(&o, sos(false)).is_ok());
        assert!(authorize(&o, write_sos(false)).is_err());
        assert!(authorize(&o, write_group(true)).is_ok());
        assert!(authorize(&o, Action::ListConversations { org_id: 1 }).is_ok());
        assert!(authorize(&o, Action::ManageConversations { org_id: 1 }).is_err());
        for roles in [[Role::Operator], [Role::Adviser]] {
            assert!(
                authorize(&actor(1, &roles), Action::ManageConversations { org_id: 1 }).is_ok()
            );
            assert!(
                authorize(&actor(1, &roles), Action::ManageConversations { org_id: 2 }).is_err()
            );
        }
        assert!(
            authorize(
                &actor(1, &[Role::OrgAdmin]),
                Action::ManageConversations { org_id: 1 }
            )
            .is_err()
        );
    }

    #[test]
    fn kinds_round_trip() {
        for k in [
            Kind::Sos,
            Kind::Rollcall,
            Kind::Area,
            Kind::DutyStation,
            Kind::Group,
        ] {
            assert_eq!(Kind::parse(k.as_str()), Some(k));
            assert_eq!(
                serde_json::to_value(k).expect("json"),
                json!(k.as_str()),
                "the wire name is the stored name"
            );
        }
        assert_eq!(Kind::parse("channel"), None);
    }
}
