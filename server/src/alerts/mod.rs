//! Alerts: what security advisers broadcast, to whom, and how far each copy got.
//!
//! Sending an alert is one transaction: the alert, its recipient snapshot (one ledger row per
//! person) and every recipient's stored message (with their next per-person sequence number)
//! commit together before the sender hears 201. Delivery then runs from what is stored:
//! - connected devices get the message at once over their WebSocket; a device that reconnects
//!   resumes from its last sequence number, so it gets every alert it missed, once;
//! - copies that no device has acknowledged after `alert_push_after_secs` go to the person's
//!   web-push subscriptions, and after `alert_sms_after_secs` to their phone by SMS (when the
//!   alert allows it); a restarted server carries on from the stored schedule ([`fallback`]);
//! - devices report delivered / read / acknowledged ([`ledger`]); the ledger only moves forward
//!   and its counts reach the sender's organisation live over the WebSocket.
//!
//! Message ids (the alert id) are what devices deduplicate on: a copy may arrive by socket and
//! push both, or twice after a crash between sending and recording, and shows once.

mod cap;
pub mod fallback;
pub mod ledger;
pub mod store;
pub mod target;
mod templates;

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::cap::{Category, Certainty, Severity, Urgency};
use crate::db::{Timestamp, now_ms};
use crate::error::{AppError, AppResult, Issue, Json, Path, Query};
use crate::policy::{Action, Actor, authorize, listing_scope};

pub use ledger::{LedgerWriter, Step};
pub use target::{Preview, Target};

/// Longest title, in characters.
pub const MAX_TITLE: usize = 200;
/// Longest body, in characters.
pub const MAX_BODY: usize = 5_000;
/// Longest instructions, in characters.
pub const MAX_INSTRUCTIONS: usize = 2_000;
/// Most languages one alert may carry.
pub const MAX_LANGUAGES: usize = 20;
/// Longest an alert may stay in force.
pub const MAX_EXPIRY_MS: i64 = 30 * 24 * 3_600_000;

/// One language's text of an alert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Translation {
    /// Headline, 1 to 200 characters.
    pub title: String,
    /// What is happening, 1 to 5,000 characters.
    pub body: String,
    /// What to do, at most 2,000 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instructions: Option<String>,
}

/// Body of `POST /alerts`, and the content of a template: every field may come from the
/// template named by `template_id`; fields given here win. (`POST /alerts/preview` takes the
/// `target` alone: a [`Target`].)
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AlertInput {
    /// Text per language tag (`en`, `fr`, `ar`, `pt-BR`…).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub translations: BTreeMap<String, Translation>,
    /// The language shown when the reader's is missing; default `en` when present, else the first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_language: Option<String>,
    /// CAP severity (required, here or in the template).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<Severity>,
    /// CAP urgency; default `immediate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urgency: Option<Urgency>,
    /// CAP certainty; default `observed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certainty: Option<Certainty>,
    /// CAP category; default `security`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<Category>,
    /// The security level (1 to 6) the alert concerns, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_level: Option<i64>,
    /// When the alert stops applying (RFC 3339); default `alert_default_expiry_hours` from now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// Who receives it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<Target>,
    /// Text people whose devices do not acknowledge in time (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sms_fallback: Option<bool>,
    /// Start from this template of the organisation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_id: Option<i64>,
}

/// A checked alert, ready to store.
#[derive(Debug, Clone)]
pub struct ValidAlert {
    /// Text per language.
    pub translations: BTreeMap<String, Translation>,
    /// The fallback language, one of `translations`.
    pub default_language: String,
    /// CAP severity.
    pub severity: Severity,
    /// CAP urgency.
    pub urgency: Urgency,
    /// CAP certainty.
    pub certainty: Certainty,
    /// CAP category.
    pub category: Category,
    /// Security level concerned.
    pub security_level: Option<i64>,
    /// Unix ms.
    pub expires_at: i64,
    /// Who receives it, as given.
    pub target: Target,
    /// Whether SMS may follow.
    pub sms_fallback: bool,
}

/// An alert's ledger counted by state (the protocol's type: the live `alert_progress`
/// and the REST answer are the same object).
pub use vigil_protocol::AlertCounts as LedgerCounts;

/// An alert as senders, oversight and the API see it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Alert {
    /// Id.
    pub id: i64,
    /// The sending organisation.
    pub org_id: i64,
    /// Who sent it (none for imported CAP alerts).
    pub sender_id: Option<i64>,
    /// CAP identifier.
    pub identifier: String,
    /// CAP sender.
    pub cap_sender: String,
    /// `vigil` or `cap_import`.
    pub source: String,
    /// `alert`, `update` or `cancel`.
    pub msg_type: String,
    /// The alert this one updates or cancels.
    pub references_id: Option<i64>,
    /// CAP severity.
    pub severity: Severity,
    /// CAP urgency.
    pub urgency: Urgency,
    /// CAP certainty.
    pub certainty: Certainty,
    /// CAP category.
    pub category: Category,
    /// Security level concerned.
    pub security_level: Option<i64>,
    /// Fallback language.
    pub default_language: String,
    /// Text per language.
    pub translations: BTreeMap<String, Translation>,
    /// Who it was sent to, as given.
    pub target: Target,
    /// Whether SMS may follow.
    pub sms_fallback: bool,
    /// People reached.
    pub recipient_count: i64,
    /// When it was sent.
    pub created_at: Timestamp,
    /// When it stops applying.
    pub expires_at: Timestamp,
    /// When it was cancelled, if it was.
    pub cancelled_at: Option<Timestamp>,
    /// Where delivery stands.
    pub counts: LedgerCounts,
}

/// An alert in a person's inbox, with how far their copy got.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct InboxItem {
    /// The alert as the person's device shows it (the same object as the socket's payload).
    #[schema(value_type = Object)]
    pub alert: serde_json::Value,
    /// The person's ledger state.
    pub state: String,
    /// Why they received it (`inside_area`, `following_area`, `organisation`…).
    pub reasons: Vec<String>,
}

/// Body of `POST /alerts/{id}/receipt`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReceiptBody {
    /// `delivered`, `read` or `acknowledged`.
    pub state: vigil_protocol::AlertReceiptState,
}

/// Filters for listing alerts.
#[derive(Debug, Deserialize, IntoParams)]
pub struct AlertQuery {
    /// Only this organisation's alerts (oversight and system admins may name any).
    pub org_id: Option<i64>,
    /// At most this many, newest first (default 50, at most 500).
    pub limit: Option<i64>,
    /// Only alerts older than this id (paging).
    pub before: Option<i64>,
}

/// Filters for an alert's ledger.
#[derive(Debug, Deserialize, IntoParams)]
pub struct RecipientQuery {
    /// Only copies in this state.
    pub state: Option<String>,
    /// At most this many (default 500, at most 5,000).
    pub limit: Option<i64>,
    /// Only people with a larger user id (paging).
    pub after: Option<i64>,
}

/// One person's copy of an alert.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, sqlx::FromRow)]
pub struct RecipientRow {
    /// The person.
    pub user_id: i64,
    /// Their name.
    pub name: String,
    /// Their organisation.
    pub org_id: i64,
    /// Why they received it, comma-separated.
    pub reasons: String,
    /// Ledger state.
    pub state: String,
    /// The channel last used (`ws`, `push`, `sms`).
    pub channel: Option<String>,
    /// Handed to a channel.
    pub sent_at: Option<Timestamp>,
    /// Confirmed by a device.
    pub delivered_at: Option<Timestamp>,
    /// Opened.
    pub read_at: Option<Timestamp>,
    /// Acknowledged by the person.
    pub acknowledged_at: Option<Timestamp>,
    /// Web-push attempts made.
    pub push_attempts: i64,
    /// SMS segments sent.
    pub sms_segments: i64,
    /// Why the last attempt failed, if it did.
    pub last_error: Option<String>,
}

/// Routes for alerts and their templates.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(preview))
        .routes(routes!(get_one))
        .routes(routes!(recipients))
        .routes(routes!(cancel))
        .routes(routes!(receipt))
        .routes(routes!(inbox))
        .routes(routes!(alert_areas))
        .routes(routes!(grants, set_grants))
        .merge(templates::routes())
        .merge(cap::routes())
}

/// Checks an alert's text and CAP fields (the target is checked by [`target::resolve`]).
pub fn validate(input: &AlertInput, now: i64, default_expiry_hours: u64) -> AppResult<ValidAlert> {
    let mut issues = Vec::new();
    if input.translations.is_empty() {
        issues.push(Issue::new(
            "translations",
            "required: at least one language with a title and a body",
        ));
    }
    if input.translations.len() > MAX_LANGUAGES {
        issues.push(Issue::new(
            "translations",
            format!("at most {MAX_LANGUAGES} languages"),
        ));
    }
    let mut translations = BTreeMap::new();
    for (lang, t) in &input.translations {
        let at = format!("translations/{lang}");
        if !is_language_tag(lang) {
            issues.push(Issue::new(
                &at,
                "not a language tag (e.g. en, fr, ar, pt-BR)",
            ));
        }
        let title = t.title.trim().to_string();
        let body = t.body.trim().to_string();
        let instructions = t
            .instructions
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string);
        check_len(&mut issues, &format!("{at}/title"), &title, MAX_TITLE);
        check_len(&mut issues, &format!("{at}/body"), &body, MAX_BODY);
        if let Some(i) = &instructions {
            check_len(
                &mut issues,
                &format!("{at}/instructions"),
                i,
                MAX_INSTRUCTIONS,
            );
        }
        translations.insert(
            lang.clone(),
            Translation {
                title,
                body,
                instructions,
            },
        );
    }
    let default_language = match &input.default_language {
        Some(l) if translations.contains_key(l) => l.clone(),
        Some(_) => {
            issues.push(Issue::new(
                "default_language",
                "must be one of the languages in translations",
            ));
            String::new()
        }
        None if translations.contains_key("en") => "en".into(),
        None => translations.keys().next().cloned().unwrap_or_default(),
    };
    let severity = input.severity.unwrap_or_else(|| {
        issues.push(Issue::new(
            "severity",
            "required: extreme, severe, moderate, minor or unknown",
        ));
        Severity::Unknown
    });
    if let Some(level) = input.security_level
        && !(1..=6).contains(&level)
    {
        issues.push(Issue::new("security_level", "between 1 and 6"));
    }
    let expires_at = match &input.expires_at {
        None => now + i64::try_from(default_expiry_hours).unwrap_or(24) * 3_600_000,
        Some(s) => match Timestamp::parse_rfc3339(s) {
            Some(Timestamp(t)) if t <= now => {
                issues.push(Issue::new("expires_at", "must be in the future"));
                t
            }
            Some(Timestamp(t)) if t > now + MAX_EXPIRY_MS => {
                issues.push(Issue::new("expires_at", "at most 30 days ahead"));
                t
            }
            Some(Timestamp(t)) => t,
            None => {
                issues.push(Issue::new(
                    "expires_at",
                    "not an RFC 3339 time with offset (e.g. 2026-11-22T18:00:00+03:00)",
                ));
                0
            }
        },
    };
    let target = input.target.clone().unwrap_or_else(|| {
        issues.push(Issue::new(
            "target",
            "required: areas, shapes, organisations, duty stations, roles or everyone",
        ));
        Target::default()
    });
    AppError::check(issues)?;
    Ok(ValidAlert {
        translations,
        default_language,
        severity,
        urgency: input.urgency.unwrap_or(Urgency::Immediate),
        certainty: input.certainty.unwrap_or(Certainty::Observed),
        category: input.category.unwrap_or(Category::Security),
        security_level: input.security_level,
        expires_at,
        target,
        sms_fallback: input.sms_fallback.unwrap_or(true),
    })
}

fn check_len(issues: &mut Vec<Issue>, at: &str, text: &str, max: usize) {
    let n = text.chars().count();
    if n == 0 {
        issues.push(Issue::new(at, "required, not empty"));
    } else if n > max {
        issues.push(Issue::new(
            at,
            format!("at most {max} characters (got {n})"),
        ));
    }
}

/// A BCP 47 tag of the simple kind people use: a 2–3 letter language, then subtags.
fn is_language_tag(tag: &str) -> bool {
    let mut parts = tag.split('-');
    let lang_ok = parts
        .next()
        .is_some_and(|l| (2..=3).contains(&l.len()) && l.bytes().all(|b| b.is_ascii_lowercase()));
    lang_ok
        && parts.all(|p| (1..=8).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// Applies the template named in `input` under the fields given.
async fn with_template(
    state: &AppState,
    actor: &Actor,
    input: AlertInput,
) -> AppResult<AlertInput> {
    let Some(id) = input.template_id else {
        return Ok(input);
    };
    let template = templates::load(&state.db, id).await?;
    authorize(
        actor,
        Action::ViewAlerts {
            org_id: Some(template.org_id),
        },
    )?;
    let base = template.content;
    Ok(AlertInput {
        translations: if input.translations.is_empty() {
            base.translations
        } else {
            input.translations
        },
        default_language: input.default_language.or(base.default_language),
        severity: input.severity.or(base.severity),
        urgency: input.urgency.or(base.urgency),
        certainty: input.certainty.or(base.certainty),
        category: input.category.or(base.category),
        security_level: input.security_level.or(base.security_level),
        expires_at: input.expires_at.or(base.expires_at),
        target: input.target.or(base.target),
        sms_fallback: input.sms_fallback.or(base.sms_fallback),
        template_id: None,
    })
}

/// An alert the caller may see, or 404 / 403.
pub async fn visible(state: &AppState, actor: &Actor, id: i64) -> AppResult<Alert> {
    let alert = store::load(&state.db, id).await?;
    authorize(
        actor,
        Action::ViewAlerts {
            org_id: Some(alert.org_id),
        },
    )?;
    Ok(alert)
}

/// Alerts the caller may see, newest first.
#[utoipa::path(get, path = "/alerts", tag = "alerts", security(("bearer" = [])), params(AlertQuery),
    responses((status = 200, body = [Alert]), (status = 403, description = "not an operator, adviser or org admin of that organisation, nor oversight")))]
async fn list(
    State(state): State<AppState>,
    actor: Actor,
    Query(q): Query<AlertQuery>,
) -> AppResult<Json<Vec<Alert>>> {
    let org = listing_scope(&actor, q.org_id, |org_id| Action::ViewAlerts { org_id })?;
    let limit = q.limit.unwrap_or(50).clamp(1, 500);
    Ok(Json(store::list(&state.db, org, q.before, limit).await?))
}

/// Send an alert. The alert and its recipient snapshot are stored before this answers 201.
#[utoipa::path(post, path = "/alerts", tag = "alerts", security(("bearer" = [])), request_body = AlertInput,
    responses((status = 201, body = Alert), (status = 403, description = "not an adviser, or a target outside the organisations the sender may alert"),
              (status = 404, description = "unknown area, organisation, duty station or template"),
              (status = 422, description = "invalid field, or a target that reaches nobody (the reason says why)")))]
async fn create(
    State(state): State<AppState>,
    actor: Actor,
    Json(input): Json<AlertInput>,
) -> AppResult<(StatusCode, Json<Alert>)> {
    let input = with_template(&state, &actor, input).await?;
    let now = now_ms();
    let valid = validate(&input, now, state.settings.alert_default_expiry_hours)?;
    let scope = target::scope_of(&state.db, &actor).await?;
    let audience = target::resolve(&state, &actor, &scope, &valid.target, now).await?;
    audience.preview.refuse_if_empty()?;
    let alert = store::send(&state, &actor, valid, audience, now).await?;
    Ok((StatusCode::CREATED, Json(alert)))
}

/// Count who an alert would reach, by reason, without sending it.
#[utoipa::path(post, path = "/alerts/preview", tag = "alerts", security(("bearer" = [])), request_body = Target,
    responses((status = 200, body = Preview), (status = 403, description = "not an adviser, or a target outside the organisations the sender may alert"),
              (status = 404, description = "unknown area, organisation or duty station"), (status = 422, description = "invalid target")))]
async fn preview(
    State(state): State<AppState>,
    actor: Actor,
    Json(target): Json<Target>,
) -> AppResult<Json<Preview>> {
    let scope = target::scope_of(&state.db, &actor).await?;
    let audience = target::resolve(&state, &actor, &scope, &target, now_ms()).await?;
    Ok(Json(audience.preview))
}

/// One alert with its delivery counts.
#[utoipa::path(get, path = "/alerts/{id}", tag = "alerts", security(("bearer" = [])), params(("id" = i64, Path)),
    responses((status = 200, body = Alert), (status = 403, description = "not allowed to see this organisation's alerts"), (status = 404, description = "no such alert")))]
async fn get_one(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
) -> AppResult<Json<Alert>> {
    let alert = visible(&state, &actor, id).await?;
    Ok(Json(alert))
}

/// The delivery ledger: every person's copy, by user id.
#[utoipa::path(get, path = "/alerts/{id}/recipients", tag = "alerts", security(("bearer" = [])), params(("id" = i64, Path), RecipientQuery),
    responses((status = 200, body = [RecipientRow]), (status = 403, description = "not allowed to see this organisation's alerts"), (status = 404, description = "no such alert"),
              (status = 422, description = "unknown state")))]
async fn recipients(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
    Query(q): Query<RecipientQuery>,
) -> AppResult<Json<Vec<RecipientRow>>> {
    visible(&state, &actor, id).await?;
    if let Some(s) = &q.state
        && Step::rank_of(s).is_none()
    {
        return Err(AppError::invalid(
            "state",
            "one of queued, sent, delivered, read, acknowledged",
        ));
    }
    let limit = q.limit.unwrap_or(500).clamp(1, 5_000);
    Ok(Json(
        store::recipients(
            &state.db,
            id,
            q.state.as_deref(),
            q.after.unwrap_or(0),
            limit,
        )
        .await?,
    ))
}

/// Cancel an alert: every recipient gets a cancellation, fallbacks stop.
#[utoipa::path(post, path = "/alerts/{id}/cancel", tag = "alerts", security(("bearer" = [])), params(("id" = i64, Path)),
    responses((status = 200, body = Alert), (status = 403, description = "not an adviser of the sending organisation"), (status = 404, description = "no such alert"),
              (status = 409, description = "already cancelled or expired")))]
async fn cancel(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
) -> AppResult<Json<Alert>> {
    let alert = store::load(&state.db, id).await?;
    authorize(
        &actor,
        Action::SendAlert {
            org_id: alert.org_id,
            granted: false,
        },
    )?;
    Ok(Json(store::cancel(&state, &actor, alert).await?))
}

/// A device or person reports their copy delivered, read or acknowledged (the web app's
/// service worker uses this when a push wakes it; the socket has a `receipt` message).
#[utoipa::path(post, path = "/alerts/{id}/receipt", tag = "alerts", security(("bearer" = [])), params(("id" = i64, Path)), request_body = ReceiptBody,
    responses((status = 204, description = "recorded"), (status = 404, description = "the caller did not receive this alert"), (status = 422, description = "unknown state")))]
async fn receipt(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
    Json(body): Json<ReceiptBody>,
) -> AppResult<StatusCode> {
    let recorded = state
        .ledger
        .record(id, actor.user_id, body.state)
        .await
        .map_err(|e| AppError::Internal(e.into()))?;
    if recorded == ledger::Receipt::NotRecipient {
        return Err(AppError::NotFound(format!(
            "you did not receive alert {id}"
        )));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// The caller's own alerts, newest first, with their ledger state (readable offline once fetched).
#[utoipa::path(get, path = "/me/alerts", tag = "alerts", security(("bearer" = [])), params(AlertQuery),
    responses((status = 200, body = [InboxItem])))]
async fn inbox(
    State(state): State<AppState>,
    actor: Actor,
    Query(q): Query<AlertQuery>,
) -> AppResult<Json<Vec<InboxItem>>> {
    let limit = q.limit.unwrap_or(50).clamp(1, 500);
    Ok(Json(
        store::inbox(&state.db, actor.user_id, q.before, limit).await?,
    ))
}

/// Alerts in force at once for one phone: enough for a year of alerts in one region.
const MAX_IN_FORCE: i64 = 500;

/// The caller's alerts in force with the places they were sent to, so that a phone in
/// location-less mode decides on the device whether it is inside one (nothing about where it is
/// reaches the server). Fetched again when an `alert` or `alert_cancelled` message arrives.
#[utoipa::path(get, path = "/me/alert-areas", tag = "alerts", security(("bearer" = [])),
    responses((status = 200, body = [vigil_protocol::AlertAreas])))]
async fn alert_areas(
    State(state): State<AppState>,
    actor: Actor,
) -> AppResult<Json<Vec<vigil_protocol::AlertAreas>>> {
    let alerts = store::in_force(&state.db, actor.user_id, now_ms(), MAX_IN_FORCE).await?;
    let tracker = crate::areas::read_tracker(&state.tracker);
    Ok(Json(
        alerts
            .into_iter()
            .map(|(alert, reasons)| vigil_protocol::AlertAreas {
                alert_id: alert.id,
                expires_at: alert.expires_at,
                reasons,
                areas: target::places(&alert.target, &tracker),
            })
            .collect(),
    ))
}

/// The organisations an adviser may alert beyond their own; granted by a system admin.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BroadcastGrants {
    /// Every organisation.
    #[serde(default)]
    pub all: bool,
    /// These organisations.
    #[serde(default)]
    pub org_ids: Vec<i64>,
}

/// Which organisations the person may alert (and start roll-calls in) beyond their own.
#[utoipa::path(get, path = "/users/{id}/broadcast-grants", tag = "alerts", security(("bearer" = [])), params(("id" = i64, Path)),
    responses((status = 200, body = BroadcastGrants), (status = 403, description = "only a system admin manages broadcast grants")))]
async fn grants(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
) -> AppResult<Json<BroadcastGrants>> {
    authorize(&actor, Action::GrantBroadcast)?;
    let rows: Vec<Option<i64>> = crate::on_reader!(&state.db, pool => sqlx::query_scalar(
        "SELECT org_id FROM broadcast_grants WHERE user_id = $1 ORDER BY org_id").bind(id).fetch_all(pool).await?);
    Ok(Json(BroadcastGrants {
        all: rows.contains(&None),
        org_ids: rows.into_iter().flatten().collect(),
    }))
}

/// Replace the organisations the person may alert beyond their own.
#[utoipa::path(put, path = "/users/{id}/broadcast-grants", tag = "alerts", security(("bearer" = [])), params(("id" = i64, Path)),
    request_body = BroadcastGrants,
    responses((status = 200, body = BroadcastGrants), (status = 403, description = "only a system admin manages broadcast grants"),
              (status = 404, description = "no such person or organisation")))]
async fn set_grants(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
    Json(body): Json<BroadcastGrants>,
) -> AppResult<Json<BroadcastGrants>> {
    authorize(&actor, Action::GrantBroadcast)?;
    let person = crate::users::store::load_person(&state.db, id).await?;
    let now = now_ms();
    let mut orgs: Vec<Option<i64>> = body.org_ids.iter().copied().map(Some).collect();
    if body.all {
        orgs.push(None);
    }
    orgs.sort_unstable();
    orgs.dedup();
    let result: Result<(), sqlx::Error> = async {
        crate::in_tx!(&state.db, tx => {
            sqlx::query("DELETE FROM broadcast_grants WHERE user_id = $1").bind(id).execute(&mut *tx).await?;
            for org in &orgs {
                sqlx::query("INSERT INTO broadcast_grants (user_id, org_id, granted_by, granted_at) VALUES ($1, $2, $3, $4)")
                    .bind(id).bind(*org).bind(actor.user_id).bind(now).execute(&mut *tx).await?;
            }
            crate::audit::record(&mut *tx, Some(actor.user_id), Some(person.org_id), "user.broadcast_grants",
                &format!("user:{id}"), &serde_json::to_string(&body).unwrap_or_default()).await?;
            Ok(())
        })
    }
    .await;
    result.map_err(|e| match &e {
        sqlx::Error::Database(d) if d.is_foreign_key_violation() => {
            AppError::NotFound("an organisation in org_ids does not exist".into())
        }
        _ => AppError::from(e),
    })?;
    grants(State(state), actor, Path(id)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> AlertInput {
        let mut translations = BTreeMap::new();
        translations.insert(
            "en".to_string(),
            Translation {
                title: "Shelter in place".into(),
                body: "Gunfire reported near the market.".into(),
                instructions: None,
            },
        );
        translations.insert(
            "ar".to_string(),
            Translation {
                title: "ابقوا في أماكنكم".into(),
                body: "أُبلغ عن إطلاق نار قرب السوق.".into(),
                instructions: Some("  ".into()),
            },
        );
        AlertInput {
            translations,
            severity: Some(Severity::Severe),
            target: Some(Target {
                everyone: true,
                ..Target::default()
            }),
            ..AlertInput::default()
        }
    }

    #[test]
    fn defaults_fill_what_cap_needs() {
        let v = validate(&input(), 1_000, 24).expect("valid");
        assert_eq!(v.default_language, "en");
        assert_eq!(v.urgency, Urgency::Immediate);
        assert_eq!(v.certainty, Certainty::Observed);
        assert_eq!(v.category, Category::Security);
        assert_eq!(v.expires_at, 1_000 + 24 * 3_600_000);
        assert!(v.sms_fallback);
        // Blank instructions are dropped, Arabic is kept as given.
        assert_eq!(v.translations["ar"].instructions, None);
        assert_eq!(v.translations["ar"].title, "ابقوا في أماكنكم");
    }

    #[test]
    fn every_bad_field_is_named() {
        let mut bad = input();
        bad.translations.get_mut("en").expect("en").title = "x".repeat(MAX_TITLE + 1);
        bad.translations.get_mut("ar").expect("ar").body = " ".into();
        bad.translations.insert(
            "English".into(),
            Translation {
                title: "t".into(),
                body: "b".into(),
                instructions: None,
            },
        );
        bad.severity = None;
        bad.security_level = Some(7);
        bad.expires_at = Some("tomorrow".into());
        bad.default_language = Some("de".into());
        let AppError::Invalid { issues, .. } = validate(&bad, 1_000, 24).expect_err("invalid")
        else {
            panic!("expected a 422");
        };
        let at: Vec<&str> = issues.iter().map(|i| i.at.as_str()).collect();
        for field in [
            "translations/en/title",
            "translations/ar/body",
            "translations/English",
            "severity",
            "security_level",
            "expires_at",
            "default_language",
        ] {
            assert!(at.contains(&field), "{field} not named in {at:?}");
        }
    }

    #[test]
    fn language_tags() {
        for ok in ["en", "fr", "ar", "pt-BR", "zh-Hant-TW", "ber"] {
            assert!(is_language_tag(ok), "{ok}");
        }
        for bad in ["", "e", "EN", "english", "en_US", "fr-", "ar-toolongsubtag"] {
            assert!(!is_language_tag(bad), "{bad}");
        }
    }
}
