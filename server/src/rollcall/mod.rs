//! Roll-calls: "are you safe?" to everyone a target reaches (the same targeting as alerts), a
//! live board of who answered what, reminders, SMS escalation, and a frozen report at the end.
//!
//! - Starting one stores the roll-call, one row per person asked and per dependant they answer
//!   for, and each person's stored message, in one transaction, before the 201.
//! - Answers (`safe` / `need_help`, a note, optionally a one-off location even in location-less
//!   mode) go through one writer that commits them in groups and acknowledges each only after
//!   its commit: an acknowledged answer survives a crash. The latest answer counts; every
//!   answer is kept.
//! - An operator can mark someone accounted for by other means (who, how, when are kept).
//! - The board: safe / need help / no answer / unreachable (no answer, and no device is known
//!   to have received the roll-call), by organisation and by area, pushed live to the
//!   organisation's operations consoles a few times a second at most.
//! - Reminders go to those who have not answered, every `reminder_every_secs`, at most
//!   `max_reminders` times, over the socket and web push; after `sms_after_secs`, by SMS.
//! - Closing freezes the report: answers are refused from then on; CSV export.

pub(crate) mod answers;
mod board;
mod reminders;

use crate::stream::{PersonSet, SetParam, store_for_set};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::alerts::target::{self, Purpose, Reason, Target};
use crate::db::{Db, Timestamp, now_ms};
use crate::error::{AppError, AppResult, Issue, Json, Path, Query};
use crate::policy::{Action, Actor, authorize};
use crate::positions::FixIn;
use crate::{AppState, in_tx, on_reader};

pub use answers::AnswerWriter;
pub use board::Board;
pub use reminders::spawn as spawn_reminders;

/// Message kind of a roll-call in a person's stream.
pub const KIND_ROLLCALL: &str = "rollcall";
/// Message kind of a reminder.
pub const KIND_REMINDER: &str = "rollcall_reminder";
/// Message kind of a closed roll-call.
pub const KIND_CLOSED: &str = "rollcall_closed";

/// Body of `POST /rollcalls`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RollcallInput {
    /// Short title ("Nairobi — explosion near Westlands").
    pub title: String,
    /// The question as people read it (default: "Are you safe?").
    pub message: Option<String>,
    /// Who is asked: the same targeting as alerts.
    pub target: Target,
    /// Remind those who have not answered this often (seconds, at least 30); none if absent.
    pub reminder_every_secs: Option<i64>,
    /// At most this many reminders (default 3, at most 20).
    pub max_reminders: Option<i64>,
    /// Text those who have not answered this many seconds after the start (if SMS is set up).
    pub sms_after_secs: Option<i64>,
    /// Open a crisis channel (group chat) with everyone asked and the starter.
    #[serde(default)]
    pub crisis_channel: bool,
}

/// A roll-call with its board.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Rollcall {
    /// Id.
    pub id: i64,
    /// The organisation that runs it.
    pub org_id: i64,
    /// Who started it.
    pub started_by: Option<i64>,
    /// Title.
    pub title: String,
    /// The question.
    pub message: String,
    /// Who was asked, as given.
    pub target: Target,
    /// People and dependants asked.
    pub people_count: i64,
    /// Reminder interval, seconds.
    pub reminder_every_secs: Option<i64>,
    /// Most reminders.
    pub max_reminders: i64,
    /// SMS escalation delay, seconds.
    pub sms_after_secs: Option<i64>,
    /// Started.
    pub created_at: Timestamp,
    /// Closed (the report is frozen from then on).
    pub closed_at: Option<Timestamp>,
    /// The crisis channel, if one was opened.
    pub conversation_id: Option<i64>,
    /// Where it stands (frozen once closed).
    pub board: Board,
}

/// Body of `POST /rollcalls/{id}/answer`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AnswerInput {
    /// `safe` or `need_help`.
    pub status: AnswerStatus,
    /// Anything to add (at most 2,000 characters).
    pub note: Option<String>,
    /// A location to share with this answer only (allowed in location-less mode too).
    pub position: Option<FixIn>,
    /// Answer for this dependant instead of oneself.
    pub dependant_id: Option<i64>,
}

/// Body of `POST /rollcalls/{id}/account`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AccountInput {
    /// The person.
    pub user_id: i64,
    /// Or one of their dependants.
    pub dependant_id: Option<i64>,
    /// `safe` or `need_help`.
    pub status: AnswerStatus,
    /// How they were reached ("phoned", "seen at the compound", "via their manager").
    pub how: String,
    /// Details.
    pub note: Option<String>,
}

/// An answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AnswerStatus {
    /// Safe.
    Safe,
    /// Needs help.
    NeedHelp,
}

impl AnswerStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            AnswerStatus::Safe => "safe",
            AnswerStatus::NeedHelp => "need_help",
        }
    }
}

/// One person (or dependant) on a roll-call, as operators see them.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, sqlx::FromRow)]
pub struct PersonRow {
    /// The person asked.
    pub user_id: i64,
    /// 0 for the person; otherwise the dependant this row is for.
    pub dependant_id: i64,
    /// Name (the dependant's, for a dependant's row).
    pub name: String,
    /// The person's phone, to call.
    pub phone: Option<String>,
    /// The person's organisation.
    pub org_id: i64,
    /// Why they were asked.
    pub reasons: String,
    /// `safe`, `need_help` or `no_answer`.
    pub status: String,
    /// Their note.
    pub note: Option<String>,
    /// Location shared with the answer.
    pub lat: Option<f64>,
    /// Location shared with the answer.
    pub lon: Option<f64>,
    /// When they (or an operator for them) answered.
    pub answered_at: Option<Timestamp>,
    /// `app`, `web`, or `operator`.
    pub answered_via: Option<String>,
    /// The operator who accounted for them by other means.
    pub accounted_by: Option<i64>,
    /// How.
    pub accounted_how: Option<String>,
    /// When a device is known to have received the roll-call.
    pub delivered_at: Option<Timestamp>,
    /// Reminders sent.
    pub reminders_sent: i64,
    /// SMS sent.
    pub sms_sent: i64,
}

/// A roll-call asked of the caller, with their rows (themselves and dependants).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MyRollcall {
    /// Id.
    pub id: i64,
    /// Title.
    pub title: String,
    /// The question.
    pub message: String,
    /// Started.
    pub created_at: Timestamp,
    /// Closed.
    pub closed_at: Option<Timestamp>,
    /// The caller's row first, then their dependants'.
    pub rows: Vec<PersonRow>,
}

/// Filters of roll-call lists.
#[derive(Debug, Deserialize, IntoParams)]
pub struct RollcallQuery {
    /// Only this organisation (oversight and system admins may name any).
    pub org_id: Option<i64>,
    /// Only open (true) or closed (false) roll-calls.
    pub open: Option<bool>,
}

/// Filters of a roll-call's people.
#[derive(Debug, Deserialize, IntoParams)]
pub struct PeopleQuery {
    /// `safe`, `need_help`, `no_answer` or `unreachable`.
    pub status: Option<String>,
}

#[derive(sqlx::FromRow)]
struct Row {
    id: i64,
    org_id: i64,
    started_by: Option<i64>,
    title: String,
    message: String,
    target: String,
    people_count: i64,
    reminder_every_secs: Option<i64>,
    max_reminders: i64,
    sms_after_secs: Option<i64>,
    conversation_id: Option<i64>,
    created_at: i64,
    closed_at: Option<i64>,
    report: Option<String>,
}

const COLUMNS: &str = "id, org_id, started_by, title, message, target, people_count, reminder_every_secs, \
    max_reminders, sms_after_secs, conversation_id, created_at, closed_at, report";

pub(crate) const PEOPLE_SELECT: &str = "SELECT p.user_id, p.dependant_id, COALESCE(d.name, u.name) AS name, u.phone, u.org_id, \
    p.reasons, p.status, p.note, p.lat, p.lon, p.answered_at, p.answered_via, p.accounted_by, p.accounted_how, \
    p.delivered_at, p.reminders_sent, p.sms_sent \
    FROM rollcall_people p JOIN users u ON u.id = p.user_id LEFT JOIN dependants d ON d.id = p.dependant_id";

/// Routes for roll-calls.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, start))
        .routes(routes!(get_one))
        .routes(routes!(people))
        .routes(routes!(answer))
        .routes(routes!(account))
        .routes(routes!(close))
        .routes(routes!(export))
        .routes(routes!(mine))
}

async fn load_row(db: &Db, id: i64) -> AppResult<Row> {
    let row: Option<Row> = on_reader!(db, pool => sqlx::query_as(sqlx::AssertSqlSafe(
        format!("SELECT {COLUMNS} FROM rollcalls WHERE id = $1"))).bind(id).fetch_optional(pool).await?);
    row.ok_or_else(|| AppError::NotFound(format!("roll-call {id} does not exist")))
}

/// One roll-call with its board (the frozen one once closed).
pub async fn load(state: &AppState, id: i64) -> AppResult<Rollcall> {
    let row = load_row(&state.db, id).await?;
    let board = match &row.report {
        Some(frozen) => serde_json::from_str(frozen).unwrap_or_default(),
        None => board::compute(&state.db, &state.tracker, id).await?.1,
    };
    Ok(Rollcall {
        target: serde_json::from_str(&row.target).unwrap_or_default(),
        id: row.id,
        org_id: row.org_id,
        started_by: row.started_by,
        title: row.title,
        message: row.message,
        people_count: row.people_count,
        reminder_every_secs: row.reminder_every_secs,
        max_reminders: row.max_reminders,
        sms_after_secs: row.sms_after_secs,
        created_at: Timestamp(row.created_at),
        closed_at: row.closed_at.map(Timestamp),
        conversation_id: row.conversation_id,
        board,
    })
}

/// A roll-call the caller may follow, or 404 / 403.
async fn followed(state: &AppState, actor: &Actor, id: i64) -> AppResult<Row> {
    let row = load_row(&state.db, id).await?;
    authorize(
        actor,
        Action::ViewRollcalls {
            org_id: Some(row.org_id),
        },
    )?;
    Ok(row)
}

fn checked(input: &RollcallInput) -> AppResult<(String, String)> {
    let mut issues = Vec::new();
    let title = input.title.trim().to_string();
    if title.is_empty() || title.chars().count() > 200 {
        issues.push(Issue::new("title", "1 to 200 characters"));
    }
    let message = input
        .message
        .as_deref()
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .unwrap_or("Are you safe?")
        .to_string();
    if message.chars().count() > 2_000 {
        issues.push(Issue::new("message", "at most 2,000 characters"));
    }
    if input
        .reminder_every_secs
        .is_some_and(|s| !(30..=86_400).contains(&s))
    {
        issues.push(Issue::new(
            "reminder_every_secs",
            "between 30 and 86,400 seconds",
        ));
    }
    if input.max_reminders.is_some_and(|m| !(0..=20).contains(&m)) {
        issues.push(Issue::new("max_reminders", "between 0 and 20"));
    }
    if input
        .sms_after_secs
        .is_some_and(|s| !(0..=7 * 86_400).contains(&s))
    {
        issues.push(Issue::new(
            "sms_after_secs",
            "between 0 and 604,800 seconds",
        ));
    }
    AppError::check(issues)?;
    Ok((title, message))
}

/// Roll-calls the caller may follow, newest first.
#[utoipa::path(get, path = "/rollcalls", tag = "rollcalls", security(("bearer" = [])), params(RollcallQuery),
    responses((status = 200, body = [Rollcall]), (status = 403, description = "not an operator, adviser or org admin of that organisation, nor oversight")))]
async fn list(
    State(state): State<AppState>,
    actor: Actor,
    Query(q): Query<RollcallQuery>,
) -> AppResult<Json<Vec<Rollcall>>> {
    let org =
        crate::policy::listing_scope(&actor, q.org_id, |org_id| Action::ViewRollcalls { org_id })?;
    let ids: Vec<i64> = on_reader!(&state.db, pool => sqlx::query_scalar(
        "SELECT id FROM rollcalls WHERE ($1 IS NULL OR org_id = $1) AND ($2 IS NULL OR (closed_at IS NULL) = $2) \
         ORDER BY id DESC LIMIT 100")
        .bind(org).bind(q.open).fetch_all(pool).await?);
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        out.push(load(&state, id).await?);
    }
    Ok(Json(out))
}

/// Start a roll-call: everyone the target reaches is asked "are you safe?" at once.
#[utoipa::path(post, path = "/rollcalls", tag = "rollcalls", security(("bearer" = [])), request_body = RollcallInput,
    responses((status = 201, body = Rollcall), (status = 403, description = "not an operator or adviser, or a target outside the organisations the starter may reach"),
              (status = 404, description = "unknown area, organisation or duty station"), (status = 422, description = "invalid field, or a target that reaches nobody")))]
async fn start(
    State(state): State<AppState>,
    actor: Actor,
    Json(input): Json<RollcallInput>,
) -> AppResult<(StatusCode, Json<Rollcall>)> {
    let (title, message) = checked(&input)?;
    let now = now_ms();
    let scope = target::scope_for(&state.db, &actor, Purpose::Rollcall).await?;
    let audience = target::resolve_for(
        &state,
        &actor,
        Purpose::Rollcall,
        &scope,
        &input.target,
        now,
    )
    .await?;
    audience.preview.refuse_if_empty()?;
    let db = &state.db;
    let ids: Vec<i64> = audience.recipients.iter().map(|(id, _)| *id).collect();
    let ids = serde_json::to_string(&ids).unwrap_or_default();
    let pairs: Vec<(i64, String)> = audience
        .recipients
        .iter()
        .map(|(id, bits)| (*id, Reason::names(*bits)))
        .collect();
    let pairs = serde_json::to_string(&pairs).unwrap_or_default();
    let target_json = serde_json::to_string(&input.target).unwrap_or_default();
    let max_reminders = input.max_reminders.unwrap_or(3);
    let first_due = [input.reminder_every_secs, input.sms_after_secs]
        .into_iter()
        .flatten()
        .min()
        .map(|s| now + s * 1_000);
    let (ints, pair_set) = (db.json_ints(1), db.json_pairs(1));
    let (id, seqs) = in_tx!(db, tx => {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO rollcalls (org_id, started_by, title, message, target, people_count, reminder_every_secs, max_reminders, \
             sms_after_secs, created_at) VALUES ($1, $2, $3, $4, $5, 0, $6, $7, $8, $9) RETURNING id")
            .bind(actor.org_id).bind(actor.user_id).bind(&title).bind(&message).bind(&target_json)
            .bind(input.reminder_every_secs).bind(max_reminders).bind(input.sms_after_secs).bind(now)
            .fetch_one(&mut *tx).await?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO rollcall_people (rollcall_id, user_id, dependant_id, reasons, status, next_reminder_at) \
             SELECT $2, r.id, 0, r.tag, 'no_answer', $3 FROM ({pair_set}) AS r")))
            .bind(&pairs).bind(id).bind(first_due).execute(&mut *tx).await?;
        // Staff account for their dependants too: one row each, answered by the staff member.
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO rollcall_people (rollcall_id, user_id, dependant_id, reasons, status) \
             SELECT $2, d.user_id, d.id, 'dependant', 'no_answer' FROM dependants d WHERE d.user_id IN ({ints})")))
            .bind(&ids).bind(id).execute(&mut *tx).await?;
        sqlx::query("UPDATE rollcalls SET people_count = (SELECT COUNT(*) FROM rollcall_people WHERE rollcall_id = $1) WHERE id = $1")
            .bind(id).execute(&mut *tx).await?;
        let payload = json!({"rollcall_id": id, "title": title, "message": message, "org_id": actor.org_id}).to_string();
        let set = PersonSet::new(ints.clone(), SetParam::Text(ids.clone()));
        let seqs = store_for_set(&mut tx, &set, KIND_ROLLCALL, &payload, now).await?;
        crate::audit::record(&mut *tx, Some(actor.user_id), Some(actor.org_id), "rollcall.start", &format!("rollcall:{id}"),
            &format!("{} people; {title}", audience.recipients.len())).await?;
        (id, seqs)
    });
    let payload =
        json!({"rollcall_id": id, "title": title, "message": message, "org_id": actor.org_id})
            .to_string();
    // Other nodes record who their sockets took it for (see `crate::cluster`).
    let reached =
        state
            .hub
            .deliver_each_reaching(KIND_ROLLCALL, &payload, &seqs, format!("rollcall:{id}"));
    answers::mark_delivered(&state, id, &reached).await?;
    if input.crisis_channel {
        let new = crate::chat::NewConversation {
            org_id: actor.org_id,
            kind: crate::chat::Kind::Rollcall,
            ref_id: Some(id),
            title,
            created_by: Some(actor.user_id),
            members: audience.recipients.iter().map(|(user, _)| *user).collect(),
        };
        let conversation = crate::chat::open(&state, new).await?;
        crate::on_writer!(&state.db, pool => sqlx::query("UPDATE rollcalls SET conversation_id = $2 WHERE id = $1")
            .bind(id).bind(conversation).execute(pool).await.map(drop))?;
    }
    Ok((StatusCode::CREATED, Json(load(&state, id).await?)))
}

/// One roll-call and its board.
#[utoipa::path(get, path = "/rollcalls/{id}", tag = "rollcalls", security(("bearer" = [])), params(("id" = i64, Path)),
    responses((status = 200, body = Rollcall), (status = 403, description = "not allowed to follow this organisation's roll-calls"), (status = 404, description = "no such roll-call")))]
async fn get_one(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
) -> AppResult<Json<Rollcall>> {
    followed(&state, &actor, id).await?;
    Ok(Json(load(&state, id).await?))
}

/// Everyone on the roll-call, by name, with their answer: every name reachable in one click.
#[utoipa::path(get, path = "/rollcalls/{id}/people", tag = "rollcalls", security(("bearer" = [])), params(("id" = i64, Path), PeopleQuery),
    responses((status = 200, body = [PersonRow]), (status = 403, description = "not allowed to follow this organisation's roll-calls"),
              (status = 404, description = "no such roll-call"), (status = 422, description = "unknown status")))]
async fn people(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
    Query(q): Query<PeopleQuery>,
) -> AppResult<Json<Vec<PersonRow>>> {
    followed(&state, &actor, id).await?;
    let filter = match q.status.as_deref() {
        None => "",
        Some("safe") => " AND p.status = 'safe'",
        Some("need_help") => " AND p.status = 'need_help'",
        Some("no_answer") => " AND p.status = 'no_answer' AND p.delivered_at IS NOT NULL",
        Some("unreachable") => " AND p.status = 'no_answer' AND p.delivered_at IS NULL",
        Some(_) => {
            return Err(AppError::invalid(
                "status",
                "safe, need_help, no_answer or unreachable",
            ));
        }
    };
    let rows: Vec<PersonRow> = on_reader!(&state.db, pool => sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{PEOPLE_SELECT} WHERE p.rollcall_id = $1{filter} ORDER BY name, p.user_id, p.dependant_id")))
        .bind(id).fetch_all(pool).await?);
    Ok(Json(rows))
}

/// Answer a roll-call for oneself or a dependant. Answered only after it is stored.
#[utoipa::path(post, path = "/rollcalls/{id}/answer", tag = "rollcalls", security(("bearer" = [])), params(("id" = i64, Path)), request_body = AnswerInput,
    responses((status = 204, description = "stored"), (status = 404, description = "the caller (or that dependant) was not asked"),
              (status = 409, description = "the roll-call is closed"), (status = 422, description = "invalid note or position")))]
async fn answer(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
    Json(input): Json<AnswerInput>,
) -> AppResult<StatusCode> {
    let a = answers::checked(&input, actor.user_id, now_ms())?;
    state.answers.submit(id, a).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Mark someone accounted for by other means: who, how and when are recorded.
#[utoipa::path(post, path = "/rollcalls/{id}/account", tag = "rollcalls", security(("bearer" = [])), params(("id" = i64, Path)), request_body = AccountInput,
    responses((status = 204, description = "stored"), (status = 403, description = "not an operator or adviser of the roll-call's organisation"),
              (status = 404, description = "no such roll-call, or that person was not asked"), (status = 409, description = "closed"), (status = 422, description = "no how")))]
async fn account(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
    Json(input): Json<AccountInput>,
) -> AppResult<StatusCode> {
    let row = load_row(&state.db, id).await?;
    authorize(&actor, Action::RunRollcall { org_id: row.org_id })?;
    let a = answers::accounted(&input, actor.user_id, now_ms())?;
    state.answers.submit(id, a).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Close the roll-call: its report is frozen and answers are refused from now on.
#[utoipa::path(post, path = "/rollcalls/{id}/close", tag = "rollcalls", security(("bearer" = [])), params(("id" = i64, Path)),
    responses((status = 200, body = Rollcall), (status = 403, description = "not an operator or adviser of the roll-call's organisation"),
              (status = 404, description = "no such roll-call"), (status = 409, description = "already closed")))]
async fn close(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
) -> AppResult<Json<Rollcall>> {
    let row = load_row(&state.db, id).await?;
    authorize(&actor, Action::RunRollcall { org_id: row.org_id })?;
    // Answers already acknowledged are in; the writer refuses later ones once closed_at is set.
    state.answers.flush().await?;
    let board = board::compute(&state.db, &state.tracker, id).await?.1;
    let report = serde_json::to_string(&board).unwrap_or_default();
    let now = now_ms();
    let set = PersonSet::new(
        "SELECT DISTINCT user_id FROM rollcall_people WHERE rollcall_id = $1",
        SetParam::Int(id),
    );
    let payload = json!({"rollcall_id": id, "closed_at": Timestamp(now)}).to_string();
    let seqs = in_tx!(&state.db, tx => {
        let changed = sqlx::query("UPDATE rollcalls SET closed_at = $2, closed_by = $3, report = $4 WHERE id = $1 AND closed_at IS NULL")
            .bind(id).bind(now).bind(actor.user_id).bind(&report).execute(&mut *tx).await?.rows_affected();
        if changed == 0 {
            return Err(AppError::Conflict(format!("roll-call {id} is already closed")));
        }
        sqlx::query("UPDATE rollcall_people SET next_reminder_at = NULL WHERE rollcall_id = $1 AND next_reminder_at IS NOT NULL")
            .bind(id).execute(&mut *tx).await?;
        let seqs = store_for_set(&mut tx, &set, KIND_CLOSED, &payload, now).await?;
        crate::audit::record(&mut *tx, Some(actor.user_id), Some(row.org_id), "rollcall.close", &format!("rollcall:{id}"), &report).await?;
        seqs
    });
    state.hub.deliver_each(KIND_CLOSED, &payload, &seqs);
    board::publish(&state, row.org_id, id, &board);
    Ok(Json(load(&state, id).await?))
}

/// The roll-call's people as CSV (frozen once closed).
#[utoipa::path(get, path = "/rollcalls/{id}/export.csv", tag = "rollcalls", security(("bearer" = [])), params(("id" = i64, Path)),
    responses((status = 200, description = "CSV", content_type = "text/csv", body = String), (status = 403, description = "not allowed to follow this organisation's roll-calls"),
              (status = 404, description = "no such roll-call")))]
async fn export(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
) -> AppResult<Response> {
    followed(&state, &actor, id).await?;
    let rows: Vec<PersonRow> = on_reader!(&state.db, pool => sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{PEOPLE_SELECT} WHERE p.rollcall_id = $1 ORDER BY name, p.user_id, p.dependant_id"))).bind(id).fetch_all(pool).await?);
    let mut csv = crate::export::Csv::new([
        "user_id",
        "dependant_id",
        "name",
        "phone",
        "organisation",
        "status",
        "answered_at",
        "via",
        "accounted_by",
        "accounted_how",
        "note",
        "lat",
        "lon",
        "delivered_at",
        "reminders_sent",
        "sms_sent",
    ])?;
    let ts = |t: Option<Timestamp>| t.map(|t| t.to_rfc3339()).unwrap_or_default();
    let opt = |v: Option<String>| v.unwrap_or_default();
    for p in rows {
        let status = if p.status == "no_answer" && p.delivered_at.is_none() {
            "unreachable".to_string()
        } else {
            p.status
        };
        csv.row([
            p.user_id.to_string(),
            p.dependant_id.to_string(),
            p.name,
            opt(p.phone),
            p.org_id.to_string(),
            status,
            ts(p.answered_at),
            opt(p.answered_via),
            p.accounted_by.map(|a| a.to_string()).unwrap_or_default(),
            opt(p.accounted_how),
            opt(p.note),
            p.lat.map(|v| v.to_string()).unwrap_or_default(),
            p.lon.map(|v| v.to_string()).unwrap_or_default(),
            ts(p.delivered_at),
            p.reminders_sent.to_string(),
            p.sms_sent.to_string(),
        ])?;
    }
    csv.attachment(&format!("rollcall-{id}.csv"))
}

/// Roll-calls asked of the caller (open ones first), with their own and their dependants' rows.
/// Fetching them counts as the caller's device having received them.
#[utoipa::path(get, path = "/me/rollcalls", tag = "rollcalls", security(("bearer" = [])),
    responses((status = 200, body = [MyRollcall])))]
async fn mine(State(state): State<AppState>, actor: Actor) -> AppResult<Json<Vec<MyRollcall>>> {
    let calls: Vec<(i64, String, String, i64, Option<i64>)> = on_reader!(&state.db, pool => sqlx::query_as(
        "SELECT r.id, r.title, r.message, r.created_at, r.closed_at FROM rollcalls r \
         WHERE r.id IN (SELECT rollcall_id FROM rollcall_people WHERE user_id = $1) \
         ORDER BY (r.closed_at IS NULL) DESC, r.id DESC LIMIT 50")
        .bind(actor.user_id).fetch_all(pool).await?);
    let mut out = Vec::with_capacity(calls.len());
    let mut open = Vec::new();
    for (id, title, message, created_at, closed_at) in calls {
        let rows: Vec<PersonRow> = on_reader!(&state.db, pool => sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "{PEOPLE_SELECT} WHERE p.rollcall_id = $1 AND p.user_id = $2 ORDER BY p.dependant_id")))
            .bind(id).bind(actor.user_id).fetch_all(pool).await?);
        if closed_at.is_none() {
            open.push(id);
        }
        out.push(MyRollcall {
            id,
            title,
            message,
            created_at: Timestamp(created_at),
            closed_at: closed_at.map(Timestamp),
            rows,
        });
    }
    for id in open {
        answers::mark_delivered(&state, id, &[actor.user_id]).await?;
    }
    Ok(Json(out))
}

/// Counts by status, grouped as the board shows them.
pub(crate) use vigil_protocol::Counts;
