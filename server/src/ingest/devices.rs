//! Device credentials: issued by an organisation's operators or org admins for a tracker bound to
//! one of its people (the OwnTracks app on a staff member's phone) or assets (a tracker in a
//! vehicle); listed without their secrets; revoked at once.

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{hash_secret, new_secret};
use crate::db::{Timestamp, now_ms};
use crate::error::{AppError, AppResult, Json, Path, Query};
use crate::policy::{Action, Actor, authorize};
use crate::positions::Subject;
use crate::{AppState, in_tx, on_reader};

/// A device credential as listed (its secret is never shown again after issue).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, sqlx::FromRow)]
pub struct DeviceCredential {
    /// Id.
    pub id: i64,
    /// The organisation of the person or asset.
    pub org_id: i64,
    /// What the tracker is, e.g. `OwnTracks on Amina's phone`.
    pub label: String,
    /// `user` or `asset`.
    pub subject_kind: String,
    /// The user or asset id its fixes belong to.
    pub subject_id: i64,
    /// That person's or asset's name.
    pub subject_name: String,
    /// Who issued it.
    pub created_by: Option<i64>,
    /// When it was issued.
    pub created_at: Timestamp,
    /// When a tracker last used it (to the minute).
    pub last_used_at: Option<Timestamp>,
    /// When it was revoked; a revoked credential is refused.
    pub revoked_at: Option<Timestamp>,
}

/// A newly issued credential, with the secret shown this once and how to set up each app.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct IssuedDevice {
    /// The credential.
    #[serde(flatten)]
    pub credential: DeviceCredential,
    /// The secret: OwnTracks' HTTP password, or OsmAnd's / Traccar Client's device identifier.
    /// Only its hash is stored; it cannot be shown again.
    pub secret: String,
    /// OwnTracks, mode HTTP: the URL; any username, the secret as password.
    pub owntracks_url: String,
    /// Traccar Client: the server URL; the secret is the device identifier.
    pub osmand_url: String,
    /// OsmAnd's online tracking: the whole URL to paste, the secret included.
    pub osmand_template: String,
}

/// Body of `POST /organisations/{id}/devices`: exactly one of `user_id` and `asset_id`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewDevice {
    /// What the tracker is (default: the person's or asset's name); at most 200 characters.
    pub label: Option<String>,
    /// The person whose phone runs the tracker.
    pub user_id: Option<i64>,
    /// The asset that carries the tracker.
    pub asset_id: Option<i64>,
}

/// Filters for listing credentials.
#[derive(Debug, Deserialize, IntoParams)]
pub struct DeviceQuery {
    /// Only revoked (true) or live (false) credentials.
    pub revoked: Option<bool>,
}

/// Routes under `/organisations/{id}/devices` and `/devices/{id}`.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, issue))
        .routes(routes!(revoke))
}

const DEVICE_SELECT: &str = "SELECT d.id, d.org_id, d.label, d.subject_kind, d.subject_id, \
    COALESCE(u.name, a.name, '') AS subject_name, d.created_by, d.created_at, d.last_used_at, d.revoked_at \
    FROM device_credentials d \
    LEFT JOIN users u ON d.subject_kind = 'user' AND u.id = d.subject_id \
    LEFT JOIN assets a ON d.subject_kind = 'asset' AND a.id = d.subject_id";

/// The organisation's device credentials, newest first, without their secrets.
#[utoipa::path(get, path = "/organisations/{id}/devices", tag = "devices", security(("bearer" = [])),
    params(("id" = i64, Path), DeviceQuery),
    responses((status = 200, body = [DeviceCredential]), (status = 403, description = "not an operator or org admin of this organisation, nor oversight")))]
async fn list(
    State(state): State<AppState>,
    actor: Actor,
    Path(org_id): Path<i64>,
    Query(q): Query<DeviceQuery>,
) -> AppResult<Json<Vec<DeviceCredential>>> {
    authorize(&actor, Action::ViewDevices { org_id })?;
    let rows = on_reader!(&state.db, pool => sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{DEVICE_SELECT} WHERE d.org_id = $1 AND ($2 IS NULL OR (d.revoked_at IS NOT NULL) = $2) ORDER BY d.id DESC")))
        .bind(org_id).bind(q.revoked).fetch_all(pool).await?);
    Ok(Json(rows))
}

/// Issue a credential for a tracker of one of the organisation's people or assets; the answer
/// holds the secret, which is never shown again.
#[utoipa::path(post, path = "/organisations/{id}/devices", tag = "devices", security(("bearer" = [])),
    params(("id" = i64, Path)), request_body = NewDevice,
    responses((status = 201, body = IssuedDevice),
              (status = 403, description = "not an operator or org admin of this organisation, or the person or asset belongs to another"),
              (status = 422, description = "no such person or asset, deactivated, or not exactly one of user_id and asset_id")))]
async fn issue(
    State(state): State<AppState>,
    actor: Actor,
    Path(org_id): Path<i64>,
    Json(new): Json<NewDevice>,
) -> AppResult<(StatusCode, Json<IssuedDevice>)> {
    authorize(&actor, Action::ManageDevices { org_id })?;
    let (subject, field) = match (new.user_id, new.asset_id) {
        (Some(id), None) => (Subject::User(id), "user_id"),
        (None, Some(id)) => (Subject::Asset(id), "asset_id"),
        _ => {
            return Err(AppError::invalid(
                "user_id",
                "name exactly one of user_id (a person's phone) and asset_id (an asset's tracker)",
            ));
        }
    };
    let found: Option<(i64, String, bool)> = on_reader!(&state.db, pool => match subject {
        Subject::User(id) => sqlx::query_as("SELECT org_id, name, active FROM users WHERE id = $1")
            .bind(id).fetch_optional(pool).await?,
        Subject::Asset(id) => sqlx::query_as("SELECT org_id, name, active FROM assets WHERE id = $1")
            .bind(id).fetch_optional(pool).await?,
    });
    let (kind, subject_id) = subject.key();
    let (subject_org, name, active) =
        found.ok_or_else(|| AppError::invalid(field, format!("no {kind} has id {subject_id}")))?;
    // Issuing a credential writes positions into the subject's organisation: the caller must be
    // allowed to do that there, whatever organisation the URL names.
    authorize(
        &actor,
        Action::ManageDevices {
            org_id: subject_org,
        },
    )?;
    if subject_org != org_id {
        return Err(AppError::invalid(
            field,
            format!("{kind} {subject_id} belongs to organisation {subject_org}, not {org_id}"),
        ));
    }
    if !active {
        return Err(AppError::invalid(
            field,
            format!("{kind} {subject_id} is deactivated"),
        ));
    }
    let label = new
        .label
        .as_deref()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .unwrap_or(&name)
        .to_string();
    if label.chars().count() > 200 {
        return Err(AppError::invalid("label", "at most 200 characters"));
    }
    let secret = new_secret();
    let now = now_ms();
    let id: i64 = in_tx!(&state.db, tx => {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO device_credentials (org_id, subject_kind, subject_id, label, secret_hash, created_by, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id")
            .bind(org_id).bind(kind).bind(subject_id).bind(&label).bind(hash_secret(&secret))
            .bind(actor.user_id).bind(now).fetch_one(&mut *tx).await?;
        crate::audit::record(&mut *tx, Some(actor.user_id), Some(org_id), "device.issue",
            &format!("device:{id}"), &format!("{kind}:{subject_id} {label}")).await?;
        id
    });
    tracing::info!(device_id = id, kind, subject_id, "device credential issued");
    let base = state.settings.public_url.trim_end_matches('/');
    let osmand_url = format!("{base}/api/v1/ingest/osmand");
    Ok((
        StatusCode::CREATED,
        Json(IssuedDevice {
            credential: DeviceCredential {
                id,
                org_id,
                label,
                subject_kind: kind.into(),
                subject_id,
                subject_name: name,
                created_by: Some(actor.user_id),
                created_at: Timestamp(now),
                last_used_at: None,
                revoked_at: None,
            },
            owntracks_url: format!("{base}/api/v1/ingest/owntracks"),
            osmand_template: format!(
                "{osmand_url}?id={secret}&lat={{0}}&lon={{1}}&timestamp={{2}}&hdop={{3}}&altitude={{4}}&speed={{5}}"
            ),
            osmand_url,
            secret,
        }),
    ))
}

/// Revoke a credential: its tracker is refused from the next request on.
#[utoipa::path(delete, path = "/devices/{id}", tag = "devices", security(("bearer" = [])),
    params(("id" = i64, Path)),
    responses((status = 204, description = "revoked (or already was)"),
              (status = 403, description = "not an operator or org admin of the credential's organisation"),
              (status = 404, description = "no such credential")))]
async fn revoke(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
) -> AppResult<StatusCode> {
    let org: Option<i64> = on_reader!(&state.db, pool => sqlx::query_scalar(
        "SELECT org_id FROM device_credentials WHERE id = $1")
        .bind(id).fetch_optional(pool).await?);
    let org_id =
        org.ok_or_else(|| AppError::NotFound(format!("device credential {id} does not exist")))?;
    authorize(&actor, Action::ManageDevices { org_id })?;
    in_tx!(&state.db, tx => {
        let done = sqlx::query(
            "UPDATE device_credentials SET revoked_at = $1, revoked_by = $2 WHERE id = $3 AND revoked_at IS NULL")
            .bind(now_ms()).bind(actor.user_id).bind(id).execute(&mut *tx).await?;
        if done.rows_affected() == 1 {
            crate::audit::record(&mut *tx, Some(actor.user_id), Some(org_id), "device.revoke",
                &format!("device:{id}"), "").await?;
        }
    });
    tracing::info!(device_id = id, "device credential revoked");
    Ok(StatusCode::NO_CONTENT)
}
