//! Assets: vehicles, satellite phones and radios, tracked on the same map as people.
//!
//! An asset belongs to one organisation. Its operators and org admins register, rename and
//! deactivate it (operators dispatch vehicles and hand out sat-phones day to day; org admins own
//! the inventory); its advisers and oversight read the list. Positions reach an asset through a
//! tracker's device credential (see [`crate::ingest`]) and show in `GET /positions`. Assets are
//! deactivated, never deleted, so that their history and audit entries keep a name.

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::db::{Db, Timestamp, now_ms};
use crate::error::{AppError, AppResult, Issue, Json, Path, Query};
use crate::policy::{Action, Actor, authorize};
use crate::{AppState, in_tx, on_reader};

/// What an asset is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AssetKind {
    /// A car, truck or boat.
    Vehicle,
    /// A satellite phone (Iridium, Thuraya…).
    SatellitePhone,
    /// A VHF/HF radio.
    Radio,
    /// Anything else worth tracking.
    Other,
}

impl AssetKind {
    /// The name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            AssetKind::Vehicle => "vehicle",
            AssetKind::SatellitePhone => "satellite_phone",
            AssetKind::Radio => "radio",
            AssetKind::Other => "other",
        }
    }

    /// Reads a stored kind; the database's CHECK constraint allows nothing else.
    pub fn parse(s: &str) -> Option<AssetKind> {
        [
            AssetKind::Vehicle,
            AssetKind::SatellitePhone,
            AssetKind::Radio,
            AssetKind::Other,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

/// An asset as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Asset {
    /// Id.
    pub id: i64,
    /// The owning organisation.
    pub org_id: i64,
    /// What it is.
    pub kind: AssetKind,
    /// Name shown on the map, e.g. `Land Cruiser UN-123`.
    pub name: String,
    /// Plate, IMEI or call sign, if any.
    pub identifier: Option<String>,
    /// False once deactivated: hidden from the map, its trackers refused.
    pub active: bool,
    /// When it was registered.
    pub created_at: Timestamp,
}

/// Body of `POST /organisations/{id}/assets`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewAsset {
    /// What it is.
    pub kind: AssetKind,
    /// Name, 1 to 200 characters.
    pub name: String,
    /// Plate, IMEI or call sign (at most 200 characters).
    pub identifier: Option<String>,
}

/// Body of `PATCH /assets/{id}`: only the fields present change.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AssetUpdate {
    /// New kind.
    pub kind: Option<AssetKind>,
    /// New name.
    pub name: Option<String>,
    /// New identifier; an empty string removes it.
    pub identifier: Option<String>,
    /// `false` deactivates (hidden from the map, its trackers refused); `true` reactivates.
    pub active: Option<bool>,
}

/// Filters for listing assets.
#[derive(Debug, Deserialize, IntoParams)]
pub struct AssetQuery {
    /// Only active (true) or deactivated (false) assets.
    pub active: Option<bool>,
}

#[derive(sqlx::FromRow)]
struct AssetRow {
    id: i64,
    org_id: i64,
    kind: String,
    name: String,
    identifier: Option<String>,
    active: bool,
    created_at: i64,
}

impl From<AssetRow> for Asset {
    fn from(r: AssetRow) -> Self {
        Asset {
            id: r.id,
            org_id: r.org_id,
            kind: AssetKind::parse(&r.kind).unwrap_or(AssetKind::Other),
            name: r.name,
            identifier: r.identifier,
            active: r.active,
            created_at: Timestamp(r.created_at),
        }
    }
}

const ASSET_COLUMNS: &str = "id, org_id, kind, name, identifier, active, created_at";

/// Routes for assets.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(get_one, update))
}

/// One asset, or 404.
pub async fn load(db: &Db, id: i64) -> AppResult<Asset> {
    let row: Option<AssetRow> = on_reader!(db, pool => sqlx::query_as(sqlx::AssertSqlSafe(
        format!("SELECT {ASSET_COLUMNS} FROM assets WHERE id = $1"))).bind(id).fetch_optional(pool).await?);
    row.map(Asset::from)
        .ok_or_else(|| AppError::NotFound(format!("asset {id} does not exist")))
}

/// Trims a name and checks its length.
fn checked_name(name: &str, issues: &mut Vec<Issue>) -> String {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 200 {
        issues.push(Issue::new("name", "required, 1 to 200 characters"));
    }
    name.to_string()
}

/// Trims an identifier; empty means none.
fn checked_identifier(identifier: Option<&str>, issues: &mut Vec<Issue>) -> Option<String> {
    let id = identifier.map(str::trim).filter(|s| !s.is_empty())?;
    if id.chars().count() > 200 {
        issues.push(Issue::new("identifier", "at most 200 characters"));
    }
    Some(id.to_string())
}

/// The organisation's assets, by name.
#[utoipa::path(get, path = "/organisations/{id}/assets", tag = "assets", security(("bearer" = [])),
    params(("id" = i64, Path), AssetQuery),
    responses((status = 200, body = [Asset]), (status = 403, description = "not an operator, adviser or org admin of this organisation, nor oversight")))]
async fn list(
    State(state): State<AppState>,
    actor: Actor,
    Path(org_id): Path<i64>,
    Query(q): Query<AssetQuery>,
) -> AppResult<Json<Vec<Asset>>> {
    authorize(&actor, Action::ViewAssets { org_id })?;
    let rows: Vec<AssetRow> = on_reader!(&state.db, pool => sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {ASSET_COLUMNS} FROM assets WHERE org_id = $1 AND ($2 IS NULL OR active = $2) ORDER BY name, id")))
        .bind(org_id).bind(q.active).fetch_all(pool).await?);
    Ok(Json(rows.into_iter().map(Asset::from).collect()))
}

/// Register an asset of the organisation.
#[utoipa::path(post, path = "/organisations/{id}/assets", tag = "assets", security(("bearer" = [])),
    params(("id" = i64, Path)), request_body = NewAsset,
    responses((status = 201, body = Asset), (status = 403, description = "not an operator or org admin of this organisation"),
              (status = 422, description = "invalid field")))]
async fn create(
    State(state): State<AppState>,
    actor: Actor,
    Path(org_id): Path<i64>,
    Json(new): Json<NewAsset>,
) -> AppResult<(StatusCode, Json<Asset>)> {
    authorize(&actor, Action::ManageAssets { org_id })?;
    let mut issues = Vec::new();
    let name = checked_name(&new.name, &mut issues);
    let identifier = checked_identifier(new.identifier.as_deref(), &mut issues);
    AppError::check(issues)?;
    let result: Result<AssetRow, sqlx::Error> = async {
        in_tx!(&state.db, tx => {
            let row: AssetRow = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "INSERT INTO assets (org_id, kind, name, identifier, active, created_at) \
                 VALUES ($1, $2, $3, $4, TRUE, $5) RETURNING {ASSET_COLUMNS}")))
                .bind(org_id).bind(new.kind.as_str()).bind(&name).bind(&identifier).bind(now_ms())
                .fetch_one(&mut *tx).await?;
            crate::audit::record(&mut *tx, Some(actor.user_id), Some(org_id), "asset.create",
                &format!("asset:{}", row.id), &row.name).await?;
            Ok(row)
        })
    }
    .await;
    let row = result.map_err(|e| match &e {
        // Only a system admin can name an organisation that does not exist.
        sqlx::Error::Database(d) if d.is_foreign_key_violation() => {
            AppError::NotFound(format!("organisation {org_id} does not exist"))
        }
        _ => AppError::from(e),
    })?;
    Ok((StatusCode::CREATED, Json(row.into())))
}

/// One asset.
#[utoipa::path(get, path = "/assets/{id}", tag = "assets", security(("bearer" = [])),
    params(("id" = i64, Path)),
    responses((status = 200, body = Asset), (status = 403, description = "not allowed to see this organisation's assets"),
              (status = 404, description = "no such asset")))]
async fn get_one(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
) -> AppResult<Json<Asset>> {
    let asset = load(&state.db, id).await?;
    authorize(
        &actor,
        Action::ViewAssets {
            org_id: asset.org_id,
        },
    )?;
    Ok(Json(asset))
}

/// Rename, reclassify, deactivate or reactivate an asset.
#[utoipa::path(patch, path = "/assets/{id}", tag = "assets", security(("bearer" = [])),
    params(("id" = i64, Path)), request_body = AssetUpdate,
    responses((status = 200, body = Asset), (status = 403, description = "not an operator or org admin of the asset's organisation"),
              (status = 404, description = "no such asset"), (status = 422, description = "invalid field")))]
async fn update(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
    Json(change): Json<AssetUpdate>,
) -> AppResult<Json<Asset>> {
    let current = load(&state.db, id).await?;
    let org_id = current.org_id;
    authorize(&actor, Action::ManageAssets { org_id })?;
    let mut issues = Vec::new();
    let name = change.name.as_deref().map(|n| checked_name(n, &mut issues));
    let identifier = change
        .identifier
        .as_deref()
        .and_then(|i| checked_identifier(Some(i), &mut issues));
    AppError::check(issues)?;
    // An empty identifier clears it.
    let clear_identifier = change
        .identifier
        .as_deref()
        .is_some_and(|i| i.trim().is_empty());
    let action = match change.active {
        Some(false) => "asset.deactivate",
        Some(true) if !current.active => "asset.reactivate",
        _ => "asset.update",
    };
    // Only the fields sent change, in one statement, so two concurrent edits cannot undo
    // each other (a deactivation lost to a rename would keep a vehicle on the map).
    let row: AssetRow = in_tx!(&state.db, tx => {
        let row: AssetRow = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "UPDATE assets SET kind = COALESCE($1, kind), name = COALESCE($2, name), \
             identifier = CASE WHEN $6 THEN NULL ELSE COALESCE($3, identifier) END, \
             active = COALESCE($4, active) WHERE id = $5 \
             RETURNING {ASSET_COLUMNS}")))
            .bind(change.kind.map(|k| k.as_str())).bind(&name).bind(&identifier).bind(change.active).bind(id)
            .bind(clear_identifier)
            .fetch_one(&mut *tx).await?;
        crate::audit::record(&mut *tx, Some(actor.user_id), Some(org_id), action,
            &format!("asset:{id}"), &row.name).await?;
        row
    });
    Ok(Json(row.into()))
}
