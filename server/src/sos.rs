//! SOS: a person in danger presses one button and the operations room has a case within a
//! second — every operator of their organisation and every oversight officer (the roles
//! [`crate::policy::sos_receivers`] names) gets it as a stored message (so a console that reconnects still gets it), with the position attached.
//!
//! - In tracking mode the case carries the person's last known position (and the fix the phone
//!   sends with the press, which is fresher). In location-less mode the phone asks whether to
//!   share a position this once: it is kept on the case only, never in the position history.
//! - Pressing again while a case is open adds to that case (200), it does not open another.
//! - An operator claims the case (another operator may take it over explicitly), talks with the
//!   person in the case's chat, adds notes, and closes it with an outcome. Every step is on the
//!   case's timeline and reaches the operators and the person.
//! - Reading a case with a position is a read of that person's location and is logged.

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::db::{Db, Timestamp, now_ms};
use crate::error::{AppError, AppResult, Issue, Json, Path, Query};
use crate::policy::{Action, Actor, authorize};
use crate::positions::{FixIn, log_access};
use crate::{AppState, in_tx, on_reader};

/// Longest note or outcome, in characters.
pub const MAX_TEXT: usize = 4_000;
/// Message kind of a new case, for operators.
pub const KIND_SOS: &str = "sos";
/// Message kind of a change to a case, for operators and the person.
pub const KIND_SOS_UPDATE: &str = "sos_update";

/// Body of `POST /sos`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SosInput {
    /// The phone's current fix, if it has one.
    pub position: Option<FixIn>,
    /// Location-less mode: the person agreed to share `position` with this case, once.
    #[serde(default)]
    pub share_location: bool,
    /// Anything the person could type.
    pub note: Option<String>,
}

/// Where the person was, as attached to the case.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CasePosition {
    /// Latitude.
    pub lat: f64,
    /// Longitude.
    pub lon: f64,
    /// Accuracy radius, metres.
    pub accuracy_m: Option<f64>,
    /// When the fix was taken.
    pub at: Timestamp,
    /// `tracking` (the person shares positions) or `shared_once` (location-less, this case only).
    pub source: String,
}

/// An SOS case.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SosCase {
    /// Id.
    pub id: i64,
    /// The person's organisation.
    pub org_id: i64,
    /// The person in danger.
    pub user_id: i64,
    /// Their name.
    pub user_name: String,
    /// Their phone, to call back.
    pub phone: Option<String>,
    /// `open`, `claimed` or `closed`.
    pub status: String,
    /// Where they were, if known.
    pub position: Option<CasePosition>,
    /// The operator handling it.
    pub claimed_by: Option<i64>,
    /// When it was claimed.
    pub claimed_at: Option<Timestamp>,
    /// The case's chat.
    pub conversation_id: Option<i64>,
    /// When SOS was pressed.
    pub opened_at: Timestamp,
    /// When it was closed.
    pub closed_at: Option<Timestamp>,
    /// How it ended.
    pub outcome: Option<String>,
    /// What happened, in order (only in `GET /sos/{id}`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub timeline: Vec<SosEvent>,
}

/// One step on a case's timeline.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, sqlx::FromRow)]
pub struct SosEvent {
    /// When.
    pub at: Timestamp,
    /// Who (none for the system).
    pub actor_id: Option<i64>,
    /// `opened`, `pressed_again`, `claimed`, `released`, `note`, `closed`.
    pub kind: String,
    /// Details (JSON text: the note, the outcome, the position).
    pub detail: String,
}

/// Body of `POST /sos/{id}/claim`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClaimBody {
    /// Take over a case another operator holds.
    #[serde(default)]
    pub take_over: bool,
}

/// Body of `POST /sos/{id}/notes`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NoteBody {
    /// The note.
    pub text: String,
}

/// Body of `POST /sos/{id}/close`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CloseBody {
    /// How it ended (e.g. "safe, false alarm", "evacuated to hospital").
    pub outcome: String,
}

/// Filters for listing cases.
#[derive(Debug, Deserialize, IntoParams)]
pub struct SosQuery {
    /// Only this organisation (oversight and system admins may name any).
    pub org_id: Option<i64>,
    /// Only cases in this state; default: open and claimed.
    pub status: Option<String>,
}

#[derive(sqlx::FromRow)]
struct Row {
    id: i64,
    org_id: i64,
    user_id: i64,
    user_name: String,
    phone: Option<String>,
    status: String,
    lat: Option<f64>,
    lon: Option<f64>,
    accuracy_m: Option<f64>,
    position_at: Option<i64>,
    location_source: Option<String>,
    claimed_by: Option<i64>,
    claimed_at: Option<i64>,
    conversation_id: Option<i64>,
    opened_at: i64,
    closed_at: Option<i64>,
    outcome: Option<String>,
}

impl From<Row> for SosCase {
    fn from(r: Row) -> Self {
        let position = match (r.lat, r.lon, r.position_at) {
            (Some(lat), Some(lon), Some(at)) => Some(CasePosition {
                lat,
                lon,
                accuracy_m: r.accuracy_m,
                at: Timestamp(at),
                source: r.location_source.unwrap_or_default(),
            }),
            _ => None,
        };
        SosCase {
            id: r.id,
            org_id: r.org_id,
            user_id: r.user_id,
            user_name: r.user_name,
            phone: r.phone,
            status: r.status,
            position,
            claimed_by: r.claimed_by,
            claimed_at: r.claimed_at.map(Timestamp),
            conversation_id: r.conversation_id,
            opened_at: Timestamp(r.opened_at),
            closed_at: r.closed_at.map(Timestamp),
            outcome: r.outcome,
            timeline: Vec::new(),
        }
    }
}

const SELECT: &str = "SELECT c.id, c.org_id, c.user_id, u.name AS user_name, u.phone, c.status, c.lat, c.lon, \
    c.accuracy_m, c.position_at, c.location_source, c.claimed_by, c.claimed_at, c.conversation_id, c.opened_at, \
    c.closed_at, c.outcome FROM sos_cases c JOIN users u ON u.id = c.user_id";

/// Routes for SOS cases.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, press))
        .routes(routes!(get_one))
        .routes(routes!(claim))
        .routes(routes!(note))
        .routes(routes!(close))
}

/// One case, or 404.
pub async fn load(db: &Db, id: i64) -> AppResult<SosCase> {
    let row: Option<Row> = on_reader!(db, pool => sqlx::query_as(sqlx::AssertSqlSafe(
        format!("{SELECT} WHERE c.id = $1"))).bind(id).fetch_optional(pool).await?);
    row.map(SosCase::from)
        .ok_or_else(|| AppError::NotFound(format!("SOS case {id} does not exist")))
}

/// Who may see a case: the person, or the policy.
fn may_view(actor: &Actor, case: &SosCase) -> Result<(), crate::policy::Denied> {
    if actor.user_id == case.user_id {
        return Ok(());
    }
    authorize(
        actor,
        Action::ViewSos {
            org_id: Some(case.org_id),
        },
    )
}

fn checked_text(at: &str, text: &str) -> AppResult<String> {
    let t = text.trim();
    if t.is_empty() || t.chars().count() > MAX_TEXT {
        return Err(AppError::invalid(at, format!("1 to {MAX_TEXT} characters")));
    }
    Ok(t.to_string())
}

/// Checks a position a person shares once (with an SOS or a roll-call answer).
pub fn checked_position(p: &FixIn, now: i64) -> Vec<Issue> {
    let mut issues = Vec::new();
    if !(p.lat.is_finite() && (-90.0..=90.0).contains(&p.lat)) {
        issues.push(Issue::new("position/lat", "between -90 and 90"));
    }
    if !(p.lon.is_finite() && (-180.0..=180.0).contains(&p.lon)) {
        issues.push(Issue::new("position/lon", "between -180 and 180"));
    }
    if p.accuracy_m.is_some_and(|a| !(a.is_finite() && a >= 0.0)) {
        issues.push(Issue::new(
            "position/accuracy_m",
            "a non-negative number of metres",
        ));
    }
    if p.recorded_at.0 > now + vigil_protocol::FUTURE_TOLERANCE_MS {
        issues.push(Issue::new("position/recorded_at", "in the future"));
    }
    issues
}

/// One step of a case's timeline, as [`record_and_notify`] stores it.
struct Step<'a> {
    /// Who took the step (the person, an operator; none for the system).
    actor: Option<i64>,
    /// The timeline event's name (`opened`, `claimed`, …).
    event: &'a str,
    /// The event's JSON detail.
    detail: &'a str,
    /// The stored message's kind (`sos`, `sos_update`).
    kind: &'a str,
    /// When.
    now: i64,
}

/// Stores a timeline event and a numbered copy of the case for everyone who hears of it, in
/// the caller's transaction (the one that changed the case); returns the copies and their
/// payload for delivery after the commit.
async fn record_and_notify<DB>(
    db: &Db,
    tx: &mut sqlx::Transaction<'_, DB>,
    case: &SosCase,
    step: Step<'_>,
) -> Result<(Vec<(i64, i64)>, String), sqlx::Error>
where
    DB: sqlx::Database,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    DB::Arguments: sqlx::IntoArguments<DB>,
    for<'q> i64: sqlx::Encode<'q, DB> + sqlx::Decode<'q, DB> + sqlx::Type<DB>,
    for<'q> Option<i64>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> String: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    usize: sqlx::ColumnIndex<DB::Row>,
{
    sqlx::query(
        "INSERT INTO sos_events (case_id, at, actor_id, kind, detail) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(case.id)
    .bind(step.now)
    .bind(step.actor)
    .bind(step.event)
    .bind(step.detail)
    .execute(&mut **tx)
    .await?;
    let payload = json!({"case": case, "event": step.event, "actor_id": step.actor}).to_string();
    let receivers = crate::policy::sos_receivers();
    let ids: Vec<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(receivers_sql(db)))
        .bind(case.user_id)
        .bind(case.org_id)
        .bind(receivers.own_org_json())
        .bind(receivers.every_org_json())
        .fetch_all(&mut **tx)
        .await?;
    let ids = serde_json::to_string(&ids).unwrap_or_else(|_| "[]".into());
    let set = crate::stream::PersonSet::new(db.json_ints(1), crate::stream::SetParam::Text(ids));
    let seqs = crate::stream::store_for_set(tx, &set, step.kind, &payload, step.now).await?;
    Ok((seqs, payload))
}

/// Who hears of a case of organisation `$2` opened by person `$1`: the person, and everyone
/// active whom the policy's SOS receivers reach by role (`$3`: the roles within the
/// organisation, `$4`: the roles in every organisation, JSON arrays of names). They are found
/// from the role (a few people), never by walking the organisation: `CROSS JOIN` keeps SQLite
/// to that order.
fn receivers_sql(db: &Db) -> String {
    format!(
        "SELECT u.id FROM users u WHERE u.active AND (u.id = $1 OR u.id IN ( \
           SELECT ur.user_id FROM user_roles ur CROSS JOIN users o WHERE ur.role IN ({}) AND o.id = ur.user_id AND o.org_id = $2 \
           UNION SELECT ur.user_id FROM user_roles ur WHERE ur.role IN ({})))",
        db.json_texts(3),
        db.json_texts(4)
    )
}

/// Cases the caller may see: an operator's organisation's, oversight's all, a person's own.
#[utoipa::path(get, path = "/sos", tag = "sos", security(("bearer" = [])), params(SosQuery),
    responses((status = 200, body = [SosCase]), (status = 403, description = "not an operator of that organisation, nor oversight")))]
async fn list(
    State(state): State<AppState>,
    actor: Actor,
    Query(q): Query<SosQuery>,
) -> AppResult<Json<Vec<SosCase>>> {
    let statuses = match q.status.as_deref() {
        None => vec!["open", "claimed"],
        Some(s @ ("open" | "claimed" | "closed")) => vec![s],
        Some(_) => return Err(AppError::invalid("status", "open, claimed or closed")),
    };
    let statuses = serde_json::to_string(&statuses).unwrap_or_default();
    let everyone = authorize(&actor, Action::ViewSos { org_id: None }).is_ok();
    let own_org = authorize(
        &actor,
        Action::ViewSos {
            org_id: Some(actor.org_id),
        },
    )
    .is_ok();
    // Staff (and anyone else) see their own cases only.
    let (org, only_user) = match q.org_id {
        Some(o) => {
            authorize(&actor, Action::ViewSos { org_id: Some(o) })?;
            (Some(o), None)
        }
        None if everyone => (None, None),
        None if own_org => (Some(actor.org_id), None),
        None => (None, Some(actor.user_id)),
    };
    let sql = format!(
        "{SELECT} WHERE ($1 IS NULL OR c.org_id = $1) AND ($2 IS NULL OR c.user_id = $2) AND c.status IN ({}) \
         ORDER BY c.opened_at DESC LIMIT 500",
        state.db.json_texts(3)
    );
    let rows: Vec<Row> = on_reader!(&state.db, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()))
        .bind(org).bind(only_user).bind(&statuses).fetch_all(pool).await?);
    let cases: Vec<SosCase> = rows.into_iter().map(SosCase::from).collect();
    let located: Vec<i64> = cases
        .iter()
        .filter(|c| c.position.is_some() && c.user_id != actor.user_id)
        .map(|c| c.user_id)
        .collect();
    log_access(&state.db, actor.user_id, &located, "sos").await?;
    Ok(Json(cases))
}

/// Press SOS: opens a case (201), or adds to the caller's open case (200).
#[utoipa::path(post, path = "/sos", tag = "sos", security(("bearer" = [])), request_body = SosInput,
    responses((status = 201, body = SosCase, description = "a new case"), (status = 200, body = SosCase, description = "the caller's open case, pressed again"),
              (status = 422, description = "invalid position, or a location-less person's position without share_location")))]
async fn press(
    State(state): State<AppState>,
    actor: Actor,
    Json(input): Json<SosInput>,
) -> AppResult<(StatusCode, Json<SosCase>)> {
    let now = now_ms();
    let note = input
        .note
        .as_deref()
        .map(|n| checked_text("note", n))
        .transpose()?;
    if let Some(p) = &input.position {
        AppError::check(checked_position(p, now))?;
    }
    let mode: String = on_reader!(&state.db, pool => sqlx::query_scalar(
        "SELECT location_mode FROM users WHERE id = $1").bind(actor.user_id).fetch_one(pool).await?);
    let location_less = mode == "location_less";
    let position = match (&input.position, location_less) {
        (Some(_), true) if !input.share_location => {
            return Err(AppError::invalid(
                "share_location",
                "you are in location-less mode: set share_location to true to share this position with the operations room, once",
            ));
        }
        (Some(p), true) => Some(CasePosition {
            lat: p.lat,
            lon: p.lon,
            accuracy_m: p.accuracy_m,
            at: p.recorded_at,
            source: "shared_once".into(),
        }),
        (None, true) => None,
        (given, false) => {
            // The freshest of the press's fix and the tracker's last one.
            let last = crate::areas::read_tracker(&state.tracker).last_fix(actor.user_id);
            let from_tracker = last.map(|f| CasePosition {
                lat: f.lat,
                lon: f.lon,
                accuracy_m: f.accuracy_m,
                at: Timestamp(f.at_ms),
                source: "tracking".into(),
            });
            let from_press = given.as_ref().map(|p| CasePosition {
                lat: p.lat,
                lon: p.lon,
                accuracy_m: p.accuracy_m,
                at: p.recorded_at,
                source: "tracking".into(),
            });
            match (from_press, from_tracker) {
                (Some(a), Some(b)) => Some(if a.at >= b.at { a } else { b }),
                (a, b) => a.or(b),
            }
        }
    };
    let open: Option<i64> = on_reader!(&state.db, pool => sqlx::query_scalar(
        "SELECT id FROM sos_cases WHERE user_id = $1 AND status <> 'closed' ORDER BY id DESC LIMIT 1")
        .bind(actor.user_id).fetch_optional(pool).await?);
    let detail = json!({"note": note, "position": position}).to_string();
    let (status, id, seqs, payload) = match open {
        Some(id) => {
            let mut case = load(&state.db, id).await?;
            if position.is_some() {
                case.position = position.clone();
            }
            let (seqs, payload) = in_tx!(&state.db, tx => {
                if let Some(p) = &position {
                    sqlx::query("UPDATE sos_cases SET lat = $2, lon = $3, accuracy_m = $4, position_at = $5, location_source = $6 WHERE id = $1")
                        .bind(id).bind(p.lat).bind(p.lon).bind(p.accuracy_m).bind(p.at.0).bind(&p.source).execute(&mut *tx).await?;
                }
                let step = Step { actor: Some(actor.user_id), event: "pressed_again", detail: &detail, kind: KIND_SOS_UPDATE, now };
                record_and_notify(&state.db, &mut tx, &case, step).await?
            });
            (StatusCode::OK, id, seqs, payload)
        }
        None => {
            // The chat exists before the case, so that the case is stored and announced to
            // the operators with its conversation.
            let conversation = open_chat(&state, &actor).await;
            let p = position.as_ref();
            let stored: AppResult<_> = async {
                Ok(in_tx!(&state.db, tx => {
                    let id: i64 = sqlx::query_scalar(
                        "INSERT INTO sos_cases (org_id, user_id, status, lat, lon, accuracy_m, position_at, location_source, opened_at, conversation_id) \
                         VALUES ($1, $2, 'open', $3, $4, $5, $6, $7, $8, $9) RETURNING id")
                        .bind(actor.org_id).bind(actor.user_id).bind(p.map(|p| p.lat)).bind(p.map(|p| p.lon))
                        .bind(p.and_then(|p| p.accuracy_m)).bind(p.map(|p| p.at.0)).bind(p.map(|p| p.source.clone())).bind(now)
                        .bind(conversation)
                        .fetch_one(&mut *tx).await?;
                    if let Some(c) = conversation {
                        sqlx::query("UPDATE conversations SET ref_id = $2 WHERE id = $1")
                            .bind(c).bind(id).execute(&mut *tx).await?;
                    }
                    let row: Row = sqlx::query_as(sqlx::AssertSqlSafe(format!("{SELECT} WHERE c.id = $1"))).bind(id).fetch_one(&mut *tx).await?;
                    let case = SosCase::from(row);
                    let step = Step { actor: Some(actor.user_id), event: "opened", detail: &detail, kind: KIND_SOS, now };
                    let (seqs, payload) = record_and_notify(&state.db, &mut tx, &case, step).await?;
                    crate::audit::record(&mut *tx, Some(actor.user_id), Some(actor.org_id), "sos.open", &format!("sos:{id}"), "").await?;
                    (id, seqs, payload)
                }))
            }
            .await;
            let (id, seqs, payload) = match stored {
                Ok(done) => done,
                Err(e) => {
                    if let Some(c) = conversation {
                        // No case holds this chat: close it rather than leave it open unowned.
                        if let Err(closing) = crate::chat::close(&state, c).await {
                            tracing::error!(error = %closing, conversation = c, "closing an SOS chat without a case failed");
                        }
                    }
                    return Err(e);
                }
            };
            (StatusCode::CREATED, id, seqs, payload)
        }
    };
    let kind = if status == StatusCode::CREATED {
        KIND_SOS
    } else {
        KIND_SOS_UPDATE
    };
    state.hub.deliver_each(kind, &payload, &seqs);
    tracing::warn!(case = id, user = actor.user_id, "SOS pressed");
    Ok((status, Json(load(&state.db, id).await?)))
}

/// Opens an SOS chat between the person and the operators, for the case about to be stored.
/// A case stands even if this fails (it is logged): operators still have the person's phone
/// number and the case.
async fn open_chat(state: &AppState, actor: &Actor) -> Option<i64> {
    let name = crate::chat::store::name_of(&state.db, actor.user_id)
        .await
        .unwrap_or_default();
    let new = crate::chat::NewConversation {
        org_id: actor.org_id,
        kind: crate::chat::Kind::Sos,
        ref_id: None,
        title: format!("SOS: {name}"),
        created_by: Some(actor.user_id),
        members: vec![actor.user_id],
    };
    match crate::chat::open(state, new).await {
        Ok(conversation) => Some(conversation),
        Err(e) => {
            tracing::error!(error = %e, user = actor.user_id, "opening the SOS chat failed");
            None
        }
    }
}

/// One case with its timeline.
#[utoipa::path(get, path = "/sos/{id}", tag = "sos", security(("bearer" = [])), params(("id" = i64, Path)),
    responses((status = 200, body = SosCase), (status = 403, description = "neither the person nor an operator of their organisation, nor oversight"),
              (status = 404, description = "no such case")))]
async fn get_one(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
) -> AppResult<Json<SosCase>> {
    let mut case = load(&state.db, id).await?;
    may_view(&actor, &case)?;
    case.timeline = on_reader!(&state.db, pool => sqlx::query_as(
        "SELECT at, actor_id, kind, detail FROM sos_events WHERE case_id = $1 ORDER BY id")
        .bind(id).fetch_all(pool).await?);
    if case.position.is_some() && case.user_id != actor.user_id {
        log_access(&state.db, actor.user_id, &[case.user_id], "sos").await?;
    }
    Ok(Json(case))
}

/// Applies an operator's step to a case: `update` (SQL with `$1` = case id, `$2` = now,
/// `$3` = operator, `$4` = `text`) must change exactly one row, else `conflict` is the answer.
/// The timeline event carries `text` (a note, an outcome).
async fn operator_step(
    state: &AppState,
    actor: &Actor,
    id: i64,
    update: &str,
    text: Option<&str>,
    event: &str,
    conflict: impl FnOnce(&SosCase) -> AppError,
) -> AppResult<SosCase> {
    let case = load(&state.db, id).await?;
    authorize(
        actor,
        Action::HandleSos {
            org_id: case.org_id,
        },
    )?;
    let now = now_ms();
    let detail = json!({ "text": text }).to_string();
    let seqs_payload: Option<(Vec<(i64, i64)>, String)> = in_tx!(&state.db, tx => {
        let changed = sqlx::query(sqlx::AssertSqlSafe(update.to_string()))
            .bind(id).bind(now).bind(actor.user_id).bind(text).execute(&mut *tx).await?.rows_affected();
        if changed == 1 {
            let row: Row = sqlx::query_as(sqlx::AssertSqlSafe(format!("{SELECT} WHERE c.id = $1"))).bind(id).fetch_one(&mut *tx).await?;
            let fresh = SosCase::from(row);
            let step = Step { actor: Some(actor.user_id), event, detail: &detail, kind: KIND_SOS_UPDATE, now };
            Some(record_and_notify(&state.db, &mut tx, &fresh, step).await?)
        } else {
            None
        }
    });
    let Some((seqs, payload)) = seqs_payload else {
        return Err(conflict(&case));
    };
    state.hub.deliver_each(KIND_SOS_UPDATE, &payload, &seqs);
    load(&state.db, id).await
}

/// Claim a case: the operator takes it on (`take_over` to take it from another operator).
#[utoipa::path(post, path = "/sos/{id}/claim", tag = "sos", security(("bearer" = [])), params(("id" = i64, Path)), request_body = ClaimBody,
    responses((status = 200, body = SosCase), (status = 403, description = "not an operator of the person's organisation"), (status = 404, description = "no such case"),
              (status = 409, description = "closed, or held by another operator (use take_over)")))]
async fn claim(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
    Json(body): Json<ClaimBody>,
) -> AppResult<Json<SosCase>> {
    let update = if body.take_over {
        "UPDATE sos_cases SET status = 'claimed', claimed_by = $3, claimed_at = $2 WHERE id = $1 AND status <> 'closed'"
    } else {
        "UPDATE sos_cases SET status = 'claimed', claimed_by = $3, claimed_at = $2 \
         WHERE id = $1 AND (status = 'open' OR (status = 'claimed' AND claimed_by = $3))"
    };
    let event = if body.take_over {
        "taken_over"
    } else {
        "claimed"
    };
    let case = operator_step(&state, &actor, id, update, None, event, |c| {
        if c.status == "closed" {
            AppError::Conflict(format!("SOS case {id} is closed"))
        } else {
            AppError::Conflict(format!(
                "SOS case {id} is held by operator {}; take it over explicitly if you must",
                c.claimed_by.unwrap_or_default()
            ))
        }
    })
    .await?;
    Ok(Json(case))
}

/// Add a note to a case's timeline.
#[utoipa::path(post, path = "/sos/{id}/notes", tag = "sos", security(("bearer" = [])), params(("id" = i64, Path)), request_body = NoteBody,
    responses((status = 200, body = SosCase), (status = 403, description = "not an operator of the person's organisation"), (status = 404, description = "no such case"),
              (status = 409, description = "closed"), (status = 422, description = "empty or too long")))]
async fn note(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
    Json(body): Json<NoteBody>,
) -> AppResult<Json<SosCase>> {
    let text = checked_text("text", &body.text)?;
    let update = "UPDATE sos_cases SET status = status WHERE id = $1 AND status <> 'closed'";
    let case = operator_step(&state, &actor, id, update, Some(&text), "note", |_| {
        AppError::Conflict(format!("SOS case {id} is closed"))
    })
    .await?;
    Ok(Json(case))
}

/// Close a case with its outcome.
#[utoipa::path(post, path = "/sos/{id}/close", tag = "sos", security(("bearer" = [])), params(("id" = i64, Path)), request_body = CloseBody,
    responses((status = 200, body = SosCase), (status = 403, description = "not an operator of the person's organisation"), (status = 404, description = "no such case"),
              (status = 409, description = "already closed"), (status = 422, description = "no outcome")))]
async fn close(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
    Json(body): Json<CloseBody>,
) -> AppResult<Json<SosCase>> {
    let outcome = checked_text("outcome", &body.outcome)?;
    let update = "UPDATE sos_cases SET status = 'closed', closed_at = $2, closed_by = $3, outcome = $4 \
                  WHERE id = $1 AND status <> 'closed'";
    let case = operator_step(&state, &actor, id, update, Some(&outcome), "closed", |_| {
        AppError::Conflict(format!("SOS case {id} is already closed"))
    })
    .await?;
    if let Some(conversation) = case.conversation_id {
        crate::chat::close(&state, conversation).await?;
    }
    Ok(Json(case))
}
