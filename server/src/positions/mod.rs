//! Positions: phones report fixes (tracking mode), or opt out entirely (location-less mode) and
//! follow areas by hand; operators see the last known positions they may see, and every such
//! read is logged for the person to read back.

pub mod access_log;
pub mod writer;

use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use vigil_geofences::{Fix, SubjectId, Transition};
use vigil_protocol::{
    GeofenceEvent, LiveEvent, PositionEvent, ServerMessage, SubjectKind,
    Transition as WireTransition,
};

use crate::areas::read_tracker;
use crate::db::{Db, Timestamp, now_ms};
use crate::error::{AppError, AppResult, Issue, Json, Query};
use crate::policy::{Action, Actor, listing_scope};
use crate::{AppState, in_tx, on_reader, on_writer};
pub use writer::{PositionWriter, Queued, StoredFix, WriteError};

/// Fixes may be at most this far in the future (device clocks drift).
const FUTURE_SKEW_MS: i64 = 5 * 60 * 1000;

/// Something that has a position: a person or an asset.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Subject {
    /// A person (user id).
    User(i64),
    /// A vehicle, satellite phone or radio (asset id).
    Asset(i64),
}

impl Subject {
    /// `(subject_kind, subject_id)` as stored.
    pub fn key(self) -> (&'static str, i64) {
        match self {
            Subject::User(id) => ("user", id),
            Subject::Asset(id) => ("asset", id),
        }
    }

    /// Reads a stored `(subject_kind, subject_id)`.
    pub fn from_key(kind: &str, id: i64) -> Option<Subject> {
        match kind {
            "user" => Some(Subject::User(id)),
            "asset" => Some(Subject::Asset(id)),
            _ => None,
        }
    }

    /// The id in the tracker, where people and assets share one space: assets are negative.
    pub fn tracker_id(self) -> SubjectId {
        match self {
            Subject::User(id) => id,
            Subject::Asset(id) => -id,
        }
    }
}

/// One fix as a phone sends it (the protocol's type: the socket and HTTP take the same fix).
pub use vigil_protocol::Fix as FixIn;

/// Body of `POST /positions`: fixes buffered on the phone, in any order.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FixBatch {
    /// The fixes.
    pub fixes: Vec<FixIn>,
}

/// Areas the caller entered or left because of the fixes.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AreaTransition {
    /// `entered` or `left`.
    pub event: String,
    /// The area.
    pub area_id: i64,
    /// Its name.
    pub name: String,
    /// Its kind.
    pub kind: String,
    /// Its UN security level.
    pub security_level: Option<i64>,
    /// Time of the fix that crossed the border.
    pub at: Timestamp,
}

/// What happened to a batch.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct FixReceipt {
    /// Fixes stored.
    pub accepted: usize,
    /// Fixes already stored (sent twice).
    pub duplicates: usize,
    /// Geofence transitions, oldest first.
    pub transitions: Vec<AreaTransition>,
}

/// Tracking (positions shared) or location-less (the server never holds a position).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum LocationMode {
    /// Positions are shared with the operations room.
    Tracking,
    /// No position is accepted or kept; the person follows areas by hand.
    LocationLess,
}

/// Body and answer of `PUT /me/location-mode`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ModeBody {
    /// The mode.
    pub mode: LocationMode,
}

/// Areas followed by hand.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FollowedAreas {
    /// Area ids.
    pub area_ids: Vec<i64>,
}

/// Filters of the operator view.
#[derive(Debug, Deserialize, IntoParams)]
pub struct PositionQuery {
    /// Only this organisation (default: all the caller may see).
    pub org_id: Option<i64>,
    /// Only subjects inside this area.
    pub area_id: Option<i64>,
    /// Only fixes at most this old.
    pub max_age_secs: Option<i64>,
}

/// A last known position as operators see it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PositionView {
    /// `user` or `asset`.
    pub subject: String,
    /// User or asset id.
    pub id: i64,
    /// Person's or asset's name.
    pub name: String,
    /// Organisation.
    pub org_id: i64,
    /// Latitude.
    pub lat: f64,
    /// Longitude.
    pub lon: f64,
    /// Accuracy radius in metres.
    pub accuracy_m: Option<f64>,
    /// When the fix was taken.
    pub recorded_at: Timestamp,
    /// Areas the subject is in.
    pub area_ids: Vec<i64>,
}

/// One read of the caller's location by someone else.
#[derive(Debug, Serialize, Deserialize, ToSchema, sqlx::FromRow)]
pub struct AccessEntry {
    /// When.
    pub at: Timestamp,
    /// Who read it.
    pub viewer_id: i64,
    /// Their name.
    pub viewer_name: String,
    /// Their organisation.
    pub viewer_org_id: i64,
    /// Why, e.g. `operator_view`.
    pub purpose: String,
}

/// Routes for positions, location modes, followed areas and the access log.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(report, list))
        .routes(routes!(get_mode, set_mode))
        .routes(routes!(get_followed, set_followed))
        .routes(routes!(access_log))
}

/// Last known positions of tracked people and assets, for building the tracker at start-up
/// (after restoring the last positions a crash kept from being written behind).
pub async fn load_latest(db: &Db) -> anyhow::Result<Vec<(SubjectId, Fix)>> {
    let replayed = writer::replay_unflushed(db).await?;
    if replayed > 0 {
        tracing::info!(
            subjects = replayed,
            "last positions restored from history (not flushed before the previous stop)"
        );
    }
    let rows: Vec<(String, i64, f64, f64, Option<f64>, i64)> = on_reader!(db, pool => sqlx::query_as(
        "SELECT lp.subject_kind, lp.subject_id, lp.lat, lp.lon, lp.accuracy_m, lp.recorded_at FROM last_positions lp \
         WHERE lp.subject_kind = 'asset' OR EXISTS (SELECT 1 FROM users u WHERE u.id = lp.subject_id AND u.location_mode = 'tracking')")
        .fetch_all(pool).await?);
    Ok(rows
        .into_iter()
        .filter_map(|(kind, id, lat, lon, accuracy_m, at_ms)| {
            Subject::from_key(&kind, id).map(|s| {
                (
                    s.tracker_id(),
                    Fix {
                        lon,
                        lat,
                        accuracy_m,
                        at_ms,
                    },
                )
            })
        })
        .collect())
}

/// Checks every fix of a batch; all problems are reported at once and nothing is stored.
pub fn validate_fixes(
    fixes: &[FixIn],
    now: i64,
    retention_days: u64,
    max: usize,
) -> AppResult<Vec<StoredFix>> {
    if fixes.is_empty() {
        return Err(AppError::invalid("fixes", "the batch holds no fix"));
    }
    if fixes.len() > max {
        return Err(AppError::invalid(
            "fixes",
            format!(
                "{} fixes in one batch; the limit is {max}: send the rest in another",
                fixes.len()
            ),
        ));
    }
    let oldest = now - i64::try_from(retention_days).unwrap_or(14) * 86_400_000;
    let mut issues = Vec::new();
    let mut out = Vec::with_capacity(fixes.len());
    for (i, f) in fixes.iter().enumerate() {
        let before = issues.len();
        if !(-90.0..=90.0).contains(&f.lat) {
            issues.push(Issue::new(
                format!("fixes/{i}/lat"),
                format!("{} is not a latitude in [-90, 90]", f.lat),
            ));
        }
        if !(-180.0..=180.0).contains(&f.lon) {
            issues.push(Issue::new(
                format!("fixes/{i}/lon"),
                format!("{} is not a longitude in [-180, 180]", f.lon),
            ));
        }
        if let Some(a) = f.accuracy_m
            && !(0.0..=1_000_000.0).contains(&a)
        {
            issues.push(Issue::new(
                format!("fixes/{i}/accuracy_m"),
                "must be between 0 and 1,000,000 metres",
            ));
        }
        if f.recorded_at.0 > now + FUTURE_SKEW_MS {
            issues.push(Issue::new(
                format!("fixes/{i}/recorded_at"),
                format!(
                    "{} is in the future; check the device clock",
                    f.recorded_at.to_rfc3339()
                ),
            ));
        }
        if f.recorded_at.0 < oldest {
            issues.push(Issue::new(
                format!("fixes/{i}/recorded_at"),
                format!(
                    "{} is older than the {retention_days}-day retention period",
                    f.recorded_at.to_rfc3339()
                ),
            ));
        }
        if issues.len() == before {
            out.push(StoredFix {
                lat: f.lat,
                lon: f.lon,
                accuracy_m: f.accuracy_m,
                recorded_at: f.recorded_at.0,
            });
        }
    }
    if !issues.is_empty() {
        return Err(AppError::Invalid {
            detail: format!(
                "{} problem(s) in the batch; nothing was stored",
                issues.len()
            ),
            issues,
        });
    }
    out.sort_by_key(|f| f.recorded_at);
    // The same fix twice in one batch is a duplicate, like one sent again later.
    out.dedup_by_key(|f| f.recorded_at);
    Ok(out)
}

impl From<WriteError> for AppError {
    fn from(e: WriteError) -> Self {
        match e {
            WriteError::LocationLess => AppError::Conflict(e.to_string()),
            WriteError::Failed(_) | WriteError::Stopped => AppError::Internal(anyhow::anyhow!(e)),
        }
    }
}

/// Records fixes of a subject belonging to `org_id`, then tells the operators watching the
/// organisation about the new position and any border crossing. (The person's own messages —
/// an entered area's advisory and security level — are stored by the writer with the group.)
/// Every source of positions (app, WebSocket, third-party trackers) goes through here.
pub async fn accept(
    state: &AppState,
    subject: Subject,
    org_id: i64,
    source: &'static str,
    fixes: Vec<StoredFix>,
) -> AppResult<(writer::Recorded, Vec<AreaTransition>)> {
    let newest = newest_fix(&fixes);
    let recorded = state
        .positions
        .record(subject, org_id, source, fixes)
        .await?;
    let transitions = announce(state, subject, org_id, newest, &recorded);
    Ok((recorded, transitions))
}

/// The newest of a batch's fixes, kept before the batch goes to the writer for [`announce`].
pub fn newest_fix(fixes: &[StoredFix]) -> Option<StoredFix> {
    fixes.iter().copied().max_by_key(|f| f.recorded_at)
}

/// The second half of [`accept`], for callers that hand fixes to the writer themselves (the
/// socket keeps several batches in flight): once `recorded` is committed, tells the operators
/// watching `org_id` about the subject's new position (if `newest` is still its latest) and
/// its border crossings, and returns those crossings described.
pub fn announce(
    state: &AppState,
    subject: Subject,
    org_id: i64,
    newest: Option<StoredFix>,
    recorded: &writer::Recorded,
) -> Vec<AreaTransition> {
    let transitions = describe(state, &recorded.transitions);
    if state.hub.watched(org_id) {
        publish(state, subject, org_id, newest, &transitions);
    }
    transitions
}

/// [`announce`] for a caller that does not need the crossings described (the socket): when
/// nobody watches the organisation, as for most fixes, it does nothing at all.
pub fn announce_live(
    state: &AppState,
    subject: Subject,
    org_id: i64,
    newest: Option<StoredFix>,
    recorded: &writer::Recorded,
) {
    if state.hub.watched(org_id) {
        let transitions = describe(state, &recorded.transitions);
        publish(state, subject, org_id, newest, &transitions);
    }
}

/// Tells the operators watching `org_id` (there are some) about the subject's new position
/// and crossings.
fn publish(
    state: &AppState,
    subject: Subject,
    org_id: i64,
    newest: Option<StoredFix>,
    transitions: &[AreaTransition],
) {
    let (_, id) = subject.key();
    let about_user = matches!(subject, Subject::User(_)).then_some(id);
    let is_latest = newest.filter(|n| {
        read_tracker(&state.tracker)
            .last_fix(subject.tracker_id())
            .is_some_and(|f| f.at_ms == n.recorded_at)
    });
    let subject_kind = match subject {
        Subject::User(_) => SubjectKind::User,
        Subject::Asset(_) => SubjectKind::Asset,
    };
    if let Some(f) = is_latest {
        let event = LiveEvent::Position(PositionEvent {
            subject: subject_kind,
            id,
            org_id,
            lat: f.lat,
            lon: f.lon,
            accuracy_m: f.accuracy_m,
            recorded_at: Timestamp(f.recorded_at),
        });
        state
            .hub
            .publish_position(org_id, about_user, &ServerMessage::Event(event));
    }
    for t in transitions {
        let event = LiveEvent::Geofence(GeofenceEvent {
            transition: if t.event == "entered" {
                WireTransition::Entered
            } else {
                WireTransition::Left
            },
            subject: subject_kind,
            id,
            org_id,
            area_id: t.area_id,
            area_name: t.name.clone(),
            at: t.at,
        });
        state
            .hub
            .publish_position(org_id, about_user, &ServerMessage::Event(event));
    }
}

/// The message telling a person they entered an area (with its advisory and security level,
/// the advisory read when the message is stored) or left it.
pub fn transition_note(
    areas: &vigil_geofences::AreaIndex,
    user_id: i64,
    at_ms: i64,
    transition: Transition,
) -> Option<crate::stream::Note> {
    let (entered, id) = match transition {
        Transition::Entered(id) => (true, id),
        Transition::Left(id) => (false, id),
    };
    let area = areas.get(id)?;
    let at = Timestamp(at_ms);
    Some(if entered {
        crate::stream::Note {
            user_id,
            kind: "area_entered",
            payload: serde_json::json!({
                "area_id": id, "name": area.name, "kind": area.kind.as_str(),
                "security_level": area.level.map(|l| l.as_i64()),
                "security_level_name": area.level.map(|l| l.name()), "advisory": null, "at": at,
            }),
            advisory_of: Some(id),
        }
    } else {
        crate::stream::Note {
            user_id,
            kind: "area_left",
            payload: serde_json::json!({ "area_id": id, "name": area.name, "at": at }),
            advisory_of: None,
        }
    })
}

/// Describes transitions with the areas' names and levels.
pub fn describe(state: &AppState, transitions: &[(i64, Transition)]) -> Vec<AreaTransition> {
    // Most fixes cross nothing: no lock for them.
    if transitions.is_empty() {
        return Vec::new();
    }
    let t = read_tracker(&state.tracker);
    transitions
        .iter()
        .filter_map(|(at, tr)| {
            let (event, id) = match tr {
                Transition::Entered(id) => ("entered", *id),
                Transition::Left(id) => ("left", *id),
            };
            t.areas().get(id).map(|a| AreaTransition {
                event: event.into(),
                area_id: id,
                name: a.name.clone(),
                kind: a.kind.as_str().into(),
                security_level: a.level.map(|l| l.as_i64()),
                at: Timestamp(*at),
            })
        })
        .collect()
}

/// Report the caller's own fixes (tracking mode); buffered fixes may arrive late and in any order.
#[utoipa::path(post, path = "/positions", tag = "positions", security(("bearer" = [])), request_body = FixBatch,
    responses((status = 200, body = FixReceipt), (status = 409, description = "the caller is in location-less mode"),
              (status = 422, description = "a fix is invalid; nothing was stored")))]
async fn report(
    State(state): State<AppState>,
    actor: Actor,
    Json(batch): Json<FixBatch>,
) -> AppResult<Json<FixReceipt>> {
    let s = &state.settings;
    let fixes = validate_fixes(
        &batch.fixes,
        now_ms(),
        s.position_retention_days,
        s.max_fixes_per_batch,
    )?;
    let (recorded, transitions) = accept(
        &state,
        Subject::User(actor.user_id),
        actor.org_id,
        "app",
        fixes,
    )
    .await?;
    Ok(Json(FixReceipt {
        accepted: recorded.inserted,
        duplicates: batch.fixes.len().saturating_sub(recorded.inserted),
        transitions,
    }))
}

/// The caller's location mode.
#[utoipa::path(get, path = "/me/location-mode", tag = "positions", security(("bearer" = [])),
    responses((status = 200, body = ModeBody)))]
async fn get_mode(State(state): State<AppState>, actor: Actor) -> AppResult<Json<ModeBody>> {
    let mode: String = on_reader!(&state.db, pool => sqlx::query_scalar("SELECT location_mode FROM users WHERE id = $1")
        .bind(actor.user_id).fetch_one(pool).await?);
    Ok(Json(ModeBody {
        mode: if mode == "location_less" {
            LocationMode::LocationLess
        } else {
            LocationMode::Tracking
        },
    }))
}

/// Switch between tracking and location-less mode; going location-less deletes every position
/// the server held for the caller.
#[utoipa::path(put, path = "/me/location-mode", tag = "positions", security(("bearer" = [])), request_body = ModeBody,
    responses((status = 200, body = ModeBody)))]
async fn set_mode(
    State(state): State<AppState>,
    actor: Actor,
    Json(body): Json<ModeBody>,
) -> AppResult<Json<ModeBody>> {
    match body.mode {
        LocationMode::LocationLess => state.positions.go_location_less(actor.user_id).await?,
        LocationMode::Tracking => state.positions.go_tracking(actor.user_id).await?,
    }
    tracing::info!(user_id = actor.user_id, mode = ?body.mode, "location mode changed");
    Ok(Json(body))
}

/// Areas the caller follows by hand.
#[utoipa::path(get, path = "/me/followed-areas", tag = "positions", security(("bearer" = [])),
    responses((status = 200, body = FollowedAreas)))]
async fn get_followed(
    State(state): State<AppState>,
    actor: Actor,
) -> AppResult<Json<FollowedAreas>> {
    let area_ids = on_reader!(&state.db, pool => sqlx::query_scalar(
        "SELECT area_id FROM followed_areas WHERE user_id = $1 ORDER BY area_id")
        .bind(actor.user_id).fetch_all(pool).await?);
    Ok(Json(FollowedAreas { area_ids }))
}

/// Replace the areas the caller follows (location-less staff receive what targets them).
#[utoipa::path(put, path = "/me/followed-areas", tag = "positions", security(("bearer" = [])), request_body = FollowedAreas,
    responses((status = 200, body = FollowedAreas), (status = 422, description = "an area does not exist")))]
async fn set_followed(
    State(state): State<AppState>,
    actor: Actor,
    Json(body): Json<FollowedAreas>,
) -> AppResult<Json<FollowedAreas>> {
    let mut ids: Vec<i64> = body.area_ids.clone();
    ids.sort_unstable();
    ids.dedup();
    if ids.len() > 500 {
        return Err(AppError::invalid("area_ids", "at most 500 areas"));
    }
    let unknown: Vec<i64> = {
        let t = read_tracker(&state.tracker);
        ids.iter()
            .copied()
            .filter(|id| t.areas().get(*id).is_none())
            .collect()
    };
    if !unknown.is_empty() {
        return Err(AppError::invalid(
            "area_ids",
            format!("no such area: {unknown:?}"),
        ));
    }
    let now = now_ms();
    let result: Result<(), sqlx::Error> = async {
        in_tx!(&state.db, tx => {
            sqlx::query("DELETE FROM followed_areas WHERE user_id = $1").bind(actor.user_id).execute(&mut *tx).await?;
            for id in &ids {
                sqlx::query("INSERT INTO followed_areas (user_id, area_id, since) VALUES ($1, $2, $3)")
                    .bind(actor.user_id).bind(id).bind(now).execute(&mut *tx).await?;
            }
            Ok(())
        })
    }
    .await;
    result.map_err(|e| match &e {
        // An area deleted between the check and the insert.
        sqlx::Error::Database(d) if d.is_foreign_key_violation() => {
            AppError::invalid("area_ids", "an area no longer exists")
        }
        _ => AppError::from(e),
    })?;
    Ok(Json(FollowedAreas { area_ids: ids }))
}

/// A person or asset the caller may see, with their stored last position if there is one.
#[derive(sqlx::FromRow)]
struct LastRow {
    subject_kind: String,
    subject_id: i64,
    name: String,
    org_id: i64,
    lat: Option<f64>,
    lon: Option<f64>,
    accuracy_m: Option<f64>,
    recorded_at: Option<i64>,
}

impl LastRow {
    /// The row as operators see it, with the newer of the stored and the tracked position;
    /// `None` without a position, with one older than `min_time`, or outside `area`.
    fn view(
        self,
        t: &vigil_geofences::Tracker,
        area: Option<i64>,
        min_time: i64,
    ) -> Option<PositionView> {
        let subject = Subject::from_key(&self.subject_kind, self.subject_id)?;
        let tid = subject.tracker_id();
        let stored = match (self.lat, self.lon, self.recorded_at) {
            (Some(lat), Some(lon), Some(at)) => Some((lat, lon, self.accuracy_m, at)),
            _ => None,
        };
        let tracked = t
            .last_fix(tid)
            .map(|f| (f.lat, f.lon, f.accuracy_m, f.at_ms));
        let (lat, lon, accuracy_m, at) = match (stored, tracked) {
            (Some(s), Some(m)) if m.3 > s.3 => m,
            (Some(s), _) => s,
            (None, m) => m?,
        };
        let areas = t.areas_of(tid).unwrap_or_default();
        if at < min_time || area.is_some_and(|a| areas.binary_search(&a).is_err()) {
            return None;
        }
        Some(PositionView {
            subject: self.subject_kind,
            id: self.subject_id,
            name: self.name,
            org_id: self.org_id,
            lat,
            lon,
            accuracy_m,
            recorded_at: Timestamp(at),
            area_ids: areas.to_vec(),
        })
    }
}

/// Last known positions of the people and assets the caller may see; each person's read is
/// written to their location-access log.
#[utoipa::path(get, path = "/positions", tag = "positions", security(("bearer" = [])), params(PositionQuery),
    responses((status = 200, body = [PositionView]), (status = 403, description = "not allowed to see this organisation's positions")))]
async fn list(
    State(state): State<AppState>,
    actor: Actor,
    Query(q): Query<PositionQuery>,
) -> AppResult<Json<Vec<PositionView>>> {
    let org = listing_scope(&actor, q.org_id, |org_id| Action::ViewPositions { org_id })?;
    // Positions come from the tracker, which the writer moves before it acknowledges a fix, so
    // every acknowledged fix shows without flushing `last_positions` (written behind every
    // `position_flush_ms`) and without waiting behind the writer's queue. The table still counts
    // for what it holds and memory does not (positions stored by other means, e.g. seeded); of
    // the two the newer wins, which is what a flush would leave there.
    let min_time = q
        .max_age_secs
        .map_or(i64::MIN, |s| now_ms() - s.max(0).saturating_mul(1000));
    let rows: Vec<LastRow> = on_reader!(&state.db, pool => sqlx::query_as(
        "SELECT 'user' AS subject_kind, u.id AS subject_id, u.name, u.org_id, lp.lat, lp.lon, lp.accuracy_m, lp.recorded_at \
         FROM users u LEFT JOIN last_positions lp ON lp.subject_kind = 'user' AND lp.subject_id = u.id \
         WHERE u.location_mode = 'tracking' AND u.active AND ($1 IS NULL OR u.org_id = $1) \
         UNION ALL \
         SELECT 'asset' AS subject_kind, a.id AS subject_id, a.name, a.org_id, lp.lat, lp.lon, lp.accuracy_m, lp.recorded_at \
         FROM assets a LEFT JOIN last_positions lp ON lp.subject_kind = 'asset' AND lp.subject_id = a.id \
         WHERE a.active AND ($1 IS NULL OR a.org_id = $1)")
        .bind(org).fetch_all(pool).await?);
    if let Some(area) = q.area_id
        && read_tracker(&state.tracker).areas().get(area).is_none()
    {
        return Err(AppError::NotFound(format!("area {area} does not exist")));
    }
    // A read lock per `LOOKUPS_PER_LOCK` subjects, not one for the whole organisation: the
    // position writer waits for readers, and readers behind it wait too.
    const LOOKUPS_PER_LOCK: usize = 4_096;
    let mut views: Vec<PositionView> = Vec::new();
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let t = read_tracker(&state.tracker);
        views.extend(
            rows.by_ref()
                .take(LOOKUPS_PER_LOCK)
                .filter_map(|r| r.view(&t, q.area_id, min_time)),
        );
    }
    let people: Vec<i64> = views
        .iter()
        .filter(|v| v.subject == "user")
        .map(|v| v.id)
        .collect();
    log_access(&state.db, actor.user_id, &people, "operator_view").await?;
    Ok(Json(views))
}

/// Records that `viewer` read the locations of `subjects`.
pub async fn log_access(db: &Db, viewer: i64, subjects: &[i64], purpose: &str) -> AppResult<()> {
    let now = now_ms();
    for chunk in subjects.chunks(500) {
        on_writer!(db, pool => {
            let mut qb = sqlx::QueryBuilder::new("INSERT INTO location_access_log (at, viewer_id, subject_id, purpose) ");
            qb.push_values(chunk, |mut row, id| {
                row.push_bind(now).push_bind(viewer).push_bind(*id).push_bind(purpose);
            });
            qb.build().execute(pool).await.map(drop)
        })?;
    }
    Ok(())
}

/// Who has read the caller's location, newest first.
#[utoipa::path(get, path = "/me/location-access", tag = "positions", security(("bearer" = [])),
    responses((status = 200, body = [AccessEntry])))]
async fn access_log(
    State(state): State<AppState>,
    actor: Actor,
) -> AppResult<Json<Vec<AccessEntry>>> {
    // Live-feed reads are written behind: the person sees every one up to now.
    state
        .access_log
        .flush()
        .await
        .map_err(|e| AppError::Internal(e.into()))?;
    let rows = on_reader!(&state.db, pool => sqlx::query_as(
        "SELECT l.at, l.viewer_id, u.name AS viewer_name, u.org_id AS viewer_org_id, l.purpose \
         FROM location_access_log l JOIN users u ON u.id = l.viewer_id \
         WHERE l.subject_id = $1 ORDER BY l.id DESC LIMIT 500")
        .bind(actor.user_id).fetch_all(pool).await?);
    Ok(Json(rows))
}

/// Re-evaluates memberships when an area's validity window opens or closes, so people inside
/// learn of it (entered / left) without waiting for their next fix.
pub fn spawn_validity_watch(state: &AppState) {
    let state = state.clone();
    tokio::spawn(async move {
        let secs = state.settings.area_validity_check_secs.max(1);
        let mut every = tokio::time::interval(std::time::Duration::from_secs(secs));
        let mut since = now_ms();
        loop {
            tokio::select! {
                _ = every.tick() => {}
                () = state.shutdown.cancelled() => return,
            }
            let now = now_ms();
            let mut changes = Vec::new();
            {
                let mut t = crate::areas::write_tracker(&state.tracker);
                let due: Vec<i64> = t
                    .areas()
                    .iter()
                    .filter(|a| {
                        [a.valid_from, a.valid_until]
                            .into_iter()
                            .flatten()
                            .any(|edge| edge > since && edge <= now)
                    })
                    .map(|a| a.id)
                    .collect();
                for id in due {
                    changes.extend(t.area_changed(id, now));
                }
            }
            since = now;
            // Every node moves its own tracker; one tells the people (and stores it once).
            let ttl = std::time::Duration::from_secs(secs + state.settings.lease_secs);
            if changes.is_empty() || !state.cluster.holds(&state.db, "area validity", ttl).await {
                continue;
            }
            let notes: Vec<crate::stream::Note> = {
                let t = read_tracker(&state.tracker);
                changes
                    .into_iter()
                    // Assets have negative ids in the tracker; only people are told.
                    .filter(|(subject, _)| *subject > 0)
                    .filter_map(|(subject, tr)| transition_note(t.areas(), subject, now, tr))
                    .collect()
            };
            if let Err(e) = crate::stream::send_many(&state.db, &state.hub, notes).await {
                tracing::error!(error = %e, "telling people about an area's validity change");
            }
        }
    });
}

/// Deletes fixes older than the retention period, now and then every hour.
pub fn spawn_retention(state: &AppState) {
    let days = i64::try_from(state.settings.position_retention_days).unwrap_or(14);
    crate::sweeper::every(
        state,
        "position retention",
        std::time::Duration::from_secs(3600),
        move |state| async move { state.positions.expire(now_ms() - days * 86_400_000).await },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fix(lat: f64, lon: f64, at: i64) -> FixIn {
        FixIn {
            lat,
            lon,
            accuracy_m: Some(10.0),
            recorded_at: Timestamp(at),
        }
    }

    #[test]
    fn batches_are_checked_whole_and_sorted() {
        let now = 1_800_000_000_000;
        let ok = validate_fixes(
            &[
                fix(1.0, 2.0, now - 10),
                fix(1.0, 2.0, now - 20),
                fix(1.0, 2.0, now - 10),
            ],
            now,
            14,
            10,
        )
        .expect("valid");
        assert_eq!(
            ok.iter().map(|f| f.recorded_at).collect::<Vec<_>>(),
            [now - 20, now - 10]
        );
        let err = validate_fixes(
            &[
                fix(91.0, 0.0, now),
                fix(0.0, 0.0, now + 3_600_000),
                fix(0.0, 0.0, now - 15 * 86_400_000),
            ],
            now,
            14,
            10,
        )
        .expect_err("invalid");
        let AppError::Invalid { issues, .. } = err else {
            panic!("422 expected")
        };
        let at: Vec<&str> = issues.iter().map(|i| i.at.as_str()).collect();
        assert_eq!(
            at,
            ["fixes/0/lat", "fixes/1/recorded_at", "fixes/2/recorded_at"]
        );
        assert!(validate_fixes(&[], now, 14, 10).is_err());
        assert!(validate_fixes(&vec![fix(0.0, 0.0, now); 11], now, 14, 10).is_err());
    }
}
