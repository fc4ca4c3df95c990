//! Organisations: the entities whose staff Vigil protects, each deciding who holds which role.

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::db::{Timestamp, now_ms};
use crate::error::{AppError, AppResult, Json, Path, is_unique_violation};
use crate::policy::{Action, Actor, authorize};
use crate::{AppState, in_tx, on_reader};

/// An organisation.
#[derive(Debug, Serialize, Deserialize, ToSchema, sqlx::FromRow)]
pub struct Organisation {
    /// Id.
    pub id: i64,
    /// Full name, e.g. "World Food Programme".
    pub name: String,
    /// Short name, e.g. "WFP".
    pub short_name: String,
    /// When it was created.
    pub created_at: Timestamp,
}

/// Body of `POST /organisations`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct NewOrganisation {
    /// Full name.
    pub name: String,
    /// Short name.
    pub short_name: String,
}

/// Routes under `/api/v1/organisations`.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(get_one))
}

/// Organisations the caller may see: their own, or all for oversight.
#[utoipa::path(get, path = "/organisations", tag = "organisations", security(("bearer" = [])),
    responses((status = 200, body = [Organisation])))]
async fn list(State(state): State<AppState>, actor: Actor) -> AppResult<Json<Vec<Organisation>>> {
    let all = authorize(&actor, Action::ListOrganisations).is_ok();
    let rows = on_reader!(&state.db, pool => sqlx::query_as(
        "SELECT id, name, short_name, created_at FROM organisations WHERE $1 OR id = $2 ORDER BY name")
        .bind(all).bind(actor.org_id).fetch_all(pool).await?);
    Ok(Json(rows))
}

/// One organisation.
#[utoipa::path(get, path = "/organisations/{id}", tag = "organisations", security(("bearer" = [])),
    params(("id" = i64, Path)),
    responses((status = 200, body = Organisation), (status = 403, description = "another organisation, and not oversight"),
              (status = 404, description = "no such organisation")))]
async fn get_one(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
) -> AppResult<Json<Organisation>> {
    authorize(&actor, Action::ViewOrganisation { org_id: id })?;
    let row = on_reader!(&state.db, pool => sqlx::query_as(
        "SELECT id, name, short_name, created_at FROM organisations WHERE id = $1")
        .bind(id).fetch_optional(pool).await?);
    row.map(Json)
        .ok_or_else(|| AppError::NotFound(format!("organisation {id} does not exist")))
}

/// Create an organisation (system admin).
#[utoipa::path(post, path = "/organisations", tag = "organisations", security(("bearer" = [])),
    request_body = NewOrganisation,
    responses((status = 201, body = Organisation), (status = 403, description = "not a system admin"), (status = 409, description = "name taken")))]
async fn create(
    State(state): State<AppState>,
    actor: Actor,
    Json(new): Json<NewOrganisation>,
) -> AppResult<(StatusCode, Json<Organisation>)> {
    authorize(&actor, Action::CreateOrganisation)?;
    let org = insert(&state.db, &new, Some(actor.user_id)).await?;
    Ok((StatusCode::CREATED, Json(org)))
}

/// Inserts an organisation (shared by the API, the CLI and the demo).
pub async fn insert(
    db: &crate::db::Db,
    new: &NewOrganisation,
    actor_id: Option<i64>,
) -> AppResult<Organisation> {
    let name = new.name.trim();
    let short = new.short_name.trim();
    if name.is_empty() || name.len() > 200 {
        return Err(AppError::invalid("name", "must be 1 to 200 characters"));
    }
    if short.is_empty() || short.len() > 32 {
        return Err(AppError::invalid(
            "short_name",
            "must be 1 to 32 characters",
        ));
    }
    let result: Result<Organisation, sqlx::Error> = async { in_tx!(db, tx => {
        let org: Organisation = sqlx::query_as(
            "INSERT INTO organisations (name, short_name, created_at) VALUES ($1, $2, $3) \
             RETURNING id, name, short_name, created_at")
            .bind(name).bind(short).bind(now_ms()).fetch_one(&mut *tx).await?;
        crate::audit::record(&mut *tx, actor_id, Some(org.id), "organisation.create", &format!("organisation:{}", org.id), name).await?;
        Ok(org)
    }) }
    .await;
    result.map_err(|e| {
        if is_unique_violation(&e) {
            AppError::Conflict(format!(
                "an organisation named {name:?} or {short:?} exists"
            ))
        } else {
            e.into()
        }
    })
}

/// The id of the organisation with this short name, created if missing (for the CLI).
pub async fn find_or_create(
    db: &crate::db::Db,
    short_name: &str,
    name: Option<&str>,
) -> AppResult<i64> {
    let existing: Option<i64> = on_reader!(db, pool => sqlx::query_scalar(
        "SELECT id FROM organisations WHERE short_name = $1")
        .bind(short_name).fetch_optional(pool).await?);
    match existing {
        Some(id) => Ok(id),
        None => {
            let new = NewOrganisation {
                name: name.unwrap_or(short_name).to_string(),
                short_name: short_name.to_string(),
            };
            Ok(insert(db, &new, None).await?.id)
        }
    }
}
