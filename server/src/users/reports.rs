//! Reports for org admins: profiles nobody has used for a while, so that rosters stay current.

use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::db::{Timestamp, now_ms};
use crate::error::{AppError, AppResult, Json, Path, Query};
use crate::policy::{Action, Actor, authorize};
use crate::{AppState, on_reader};

/// A profile that has not been used recently.
#[derive(Debug, Serialize, Deserialize, ToSchema, sqlx::FromRow)]
pub struct StaleProfile {
    /// User id.
    pub id: i64,
    /// Email.
    pub email: String,
    /// Name.
    pub name: String,
    /// Last login or refresh; absent if the person never logged in.
    pub last_seen_at: Option<Timestamp>,
    /// When the profile was created.
    pub created_at: Timestamp,
}

/// Which profiles count as stale.
#[derive(Debug, Deserialize, IntoParams)]
pub struct StaleQuery {
    /// Unused for at least this many days (default 90).
    pub days: Option<i64>,
}

/// Report routes.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(stale_profiles))
}

/// Active profiles not used for `days` days (never-used profiles count from their creation).
#[utoipa::path(get, path = "/organisations/{id}/reports/stale-profiles", tag = "people", security(("bearer" = [])),
    params(("id" = i64, Path), StaleQuery),
    responses((status = 200, body = [StaleProfile]), (status = 403, description = "not an org admin of this organisation or oversight")))]
async fn stale_profiles(
    State(state): State<AppState>,
    actor: Actor,
    Path(org_id): Path<i64>,
    Query(q): Query<StaleQuery>,
) -> AppResult<Json<Vec<StaleProfile>>> {
    authorize(&actor, Action::ViewOrgReports { org_id })?;
    let days = q.days.unwrap_or(90);
    if !(0..=3650).contains(&days) {
        return Err(AppError::invalid("days", "must be between 0 and 3650"));
    }
    let cutoff = now_ms() - days * 86_400_000;
    let rows = on_reader!(&state.db, pool => sqlx::query_as(
        "SELECT id, email, name, last_seen_at, created_at FROM users \
         WHERE org_id = $1 AND active AND COALESCE(last_seen_at, created_at) <= $2 \
         ORDER BY COALESCE(last_seen_at, created_at), id")
        .bind(org_id).bind(cutoff).fetch_all(pool).await?);
    Ok(Json(rows))
}
