//! The administrative audit trail: who granted which role, imported which roster, changed which
//! area. Written in the same transaction as the change it records.

use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::db::{Timestamp, now_ms};
use crate::error::{AppResult, Json, Path, Query};
use crate::policy::{Action, Actor, authorize};
use crate::{AppState, on_reader};

/// One audited change.
#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct AuditEntry {
    /// Entry id.
    pub id: i64,
    /// When it happened.
    pub at: Timestamp,
    /// Who did it (absent for the CLI and the demo seeder).
    pub actor_id: Option<i64>,
    /// The organisation concerned.
    pub org_id: Option<i64>,
    /// What was done, e.g. `role.grant`.
    pub action: String,
    /// What it was done to, e.g. `user:42`.
    pub target: String,
    /// Details, e.g. the role.
    pub detail: String,
}

/// Records a change inside the caller's transaction.
pub async fn record<'c, E, DB>(
    exec: E,
    actor_id: Option<i64>,
    org_id: Option<i64>,
    action: &str,
    target: &str,
    detail: &str,
) -> Result<(), sqlx::Error>
where
    E: sqlx::Executor<'c, Database = DB>,
    DB: sqlx::Database,
    for<'q> <DB as sqlx::Database>::Arguments: sqlx::IntoArguments<DB>,
    for<'q> i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> Option<i64>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    sqlx::query(
        "INSERT INTO audit_log (at, actor_id, org_id, action, target, detail) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(now_ms())
    .bind(actor_id)
    .bind(org_id)
    .bind(action)
    .bind(target)
    .bind(detail)
    .execute(exec)
    .await?;
    Ok(())
}

/// Paging of the audit log.
#[derive(Debug, Deserialize, IntoParams)]
pub struct AuditQuery {
    /// Newest entries first; at most this many (default 100, max 1000).
    pub limit: Option<i64>,
}

/// Routes under `/api/v1/organisations/{id}/audit`.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list))
}

/// The organisation's audit trail, newest first.
#[utoipa::path(get, path = "/organisations/{id}/audit", tag = "organisations", security(("bearer" = [])),
    params(("id" = i64, Path), AuditQuery),
    responses((status = 200, body = [AuditEntry]), (status = 403, description = "not an org admin of this organisation or oversight")))]
async fn list(
    State(state): State<AppState>,
    actor: Actor,
    Path(org_id): Path<i64>,
    Query(q): Query<AuditQuery>,
) -> AppResult<Json<Vec<AuditEntry>>> {
    authorize(&actor, Action::ViewOrgReports { org_id })?;
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let rows = on_reader!(&state.db, pool => sqlx::query_as(
        "SELECT id, at, actor_id, org_id, action, target, detail FROM audit_log \
         WHERE org_id = $1 ORDER BY id DESC LIMIT $2")
        .bind(org_id).bind(limit).fetch_all(pool).await?);
    Ok(Json(rows))
}
