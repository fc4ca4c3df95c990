//! Duty stations: the places staff are assigned to (Juba, Mogadishu, Nairobi…), shared by every
//! organisation of the deployment.

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::db::{Db, now_ms};
use crate::error::{AppError, AppResult, Issue, Json, is_unique_violation};
use crate::policy::{Action, Actor, authorize};
use crate::{AppState, on_reader, on_writer};

/// A duty station.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, sqlx::FromRow)]
pub struct DutyStation {
    /// Id.
    pub id: i64,
    /// Name, e.g. "Juba".
    pub name: String,
    /// ISO 3166-1 alpha-2 country code, e.g. "SS".
    pub country_code: String,
    /// Latitude of the station, if known.
    pub lat: Option<f64>,
    /// Longitude of the station, if known.
    pub lon: Option<f64>,
}

/// Body of `POST /duty-stations`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewDutyStation {
    /// Name.
    pub name: String,
    /// ISO 3166-1 alpha-2 country code.
    pub country_code: String,
    /// Latitude.
    pub lat: Option<f64>,
    /// Longitude.
    pub lon: Option<f64>,
}

/// Routes under `/api/v1/duty-stations`.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list, create))
}

/// Every duty station.
#[utoipa::path(get, path = "/duty-stations", tag = "duty stations", security(("bearer" = [])),
    responses((status = 200, body = [DutyStation])))]
async fn list(State(state): State<AppState>, _actor: Actor) -> AppResult<Json<Vec<DutyStation>>> {
    let rows = on_reader!(&state.db, pool => sqlx::query_as(
        "SELECT id, name, country_code, lat, lon FROM duty_stations ORDER BY country_code, name")
        .fetch_all(pool).await?);
    Ok(Json(rows))
}

/// Add a duty station (system admin).
#[utoipa::path(post, path = "/duty-stations", tag = "duty stations", security(("bearer" = [])),
    request_body = NewDutyStation,
    responses((status = 201, body = DutyStation), (status = 403, description = "not a system admin"), (status = 409, description = "exists"),
              (status = 422, description = "invalid field")))]
async fn create(
    State(state): State<AppState>,
    actor: Actor,
    Json(new): Json<NewDutyStation>,
) -> AppResult<(StatusCode, Json<DutyStation>)> {
    authorize(&actor, Action::ManageDutyStations)?;
    Ok((StatusCode::CREATED, Json(insert(&state.db, &new).await?)))
}

/// Validates and inserts a duty station.
pub async fn insert(db: &Db, new: &NewDutyStation) -> AppResult<DutyStation> {
    let mut issues = Vec::new();
    let name = new.name.trim();
    if name.is_empty() || name.chars().count() > 120 {
        issues.push(Issue::new("name", "must be 1 to 120 characters"));
    }
    let cc = new.country_code.trim().to_uppercase();
    if cc.len() != 2 || !cc.chars().all(|c| c.is_ascii_uppercase()) {
        issues.push(Issue::new(
            "country_code",
            "must be an ISO 3166-1 alpha-2 code such as SS",
        ));
    }
    match (new.lat, new.lon) {
        (Some(lat), Some(lon)) => {
            if !(-90.0..=90.0).contains(&lat) {
                issues.push(Issue::new("lat", "must be between -90 and 90"));
            }
            if !(-180.0..=180.0).contains(&lon) {
                issues.push(Issue::new("lon", "must be between -180 and 180"));
            }
        }
        (None, None) => {}
        _ => issues.push(Issue::new("lat", "give both lat and lon, or neither")),
    }
    if !issues.is_empty() {
        return Err(AppError::Invalid {
            detail: "the duty station is invalid".into(),
            issues,
        });
    }
    let result: Result<DutyStation, sqlx::Error> = on_writer!(db, pool => sqlx::query_as(
        "INSERT INTO duty_stations (name, country_code, lat, lon, created_at) VALUES ($1, $2, $3, $4, $5) \
         RETURNING id, name, country_code, lat, lon")
        .bind(name).bind(&cc).bind(new.lat).bind(new.lon).bind(now_ms())
        .fetch_one(pool).await);
    result.map_err(|e| {
        if is_unique_violation(&e) {
            AppError::Conflict(format!("{name} ({cc}) exists"))
        } else {
            e.into()
        }
    })
}
