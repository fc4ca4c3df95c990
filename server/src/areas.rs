//! Security areas: country outlines, security areas with UN levels, duty stations, premises and
//! assembly points. GeoJSON Features in and out; stored in the database and mirrored in the
//! node's [`Tracker`] (an R-tree of areas beside the R-tree of positions), which geofencing and
//! targeting query.
//!
//! Feature properties: `name` (required), `kind` (default `security_area`), `security_level`
//! (1–6), `parent_id`, `org_id` (owner; absent or null = shared), `valid_from` and
//! `valid_until` (RFC 3339), and `radius_m` for a circle given as a Point.

use std::sync::{Arc, RwLock};

use axum::extract::State;
use axum::http::StatusCode;
use geojson::{Feature, FeatureCollection, Geometry, JsonObject, JsonValue};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use vigil_geofences::{Area, AreaIndex, AreaKind, SecurityLevel, Shape, Tracker};

use crate::cluster::Track;
use crate::db::{Db, Timestamp, now_ms};
use crate::error::{AppError, AppResult, Issue, Json, Path, Query};
use crate::policy::{Action, Actor, authorize};
use crate::{AppState, in_tx, on_reader};

/// The node's tracker (areas, positions, memberships), in memory; shared by every request.
/// Held only for microseconds and never across an `.await`, so a std lock is right.
pub type SharedTracker = Arc<RwLock<Tracker>>;

#[derive(Debug, Clone, sqlx::FromRow)]
struct AreaRow {
    id: i64,
    org_id: Option<i64>,
    name: String,
    kind: String,
    security_level: Option<i64>,
    parent_id: Option<i64>,
    advisory: Option<String>,
    geometry: String,
    radius_m: Option<f64>,
    valid_from: Option<i64>,
    valid_until: Option<i64>,
    created_at: Timestamp,
    updated_at: Timestamp,
}

const AREA_COLUMNS: &str = "id, org_id, name, kind, security_level, parent_id, advisory, geometry, \
    radius_m, valid_from, valid_until, created_at, updated_at";

/// An area as the API receives it, checked.
#[derive(Debug, Clone)]
pub struct AreaInput {
    /// Owning organisation; `None` = shared.
    pub org_id: Option<i64>,
    /// Name.
    pub name: String,
    /// Kind.
    pub kind: AreaKind,
    /// UN security level.
    pub level: Option<SecurityLevel>,
    /// Enclosing area.
    pub parent_id: Option<i64>,
    /// Current advice to people in the area, sent to each person who enters it.
    pub advisory: Option<String>,
    /// Validated outline.
    pub shape: Shape,
    /// Start of validity (Unix ms).
    pub valid_from: Option<i64>,
    /// End of validity (Unix ms).
    pub valid_until: Option<i64>,
}

/// Filters for listing areas.
#[derive(Debug, Deserialize, IntoParams)]
pub struct AreaQuery {
    /// Only areas of this kind.
    pub kind: Option<String>,
    /// Only areas owned by this organisation.
    pub org_id: Option<i64>,
}

/// Routes under `/api/v1/areas`.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(get_one, replace, delete))
}

/// Loads every stored area into a fresh in-memory index.
pub async fn load_index(db: &Db) -> anyhow::Result<AreaIndex> {
    let rows: Vec<AreaRow> = on_reader!(db, pool => sqlx::query_as(sqlx::AssertSqlSafe(
        format!("SELECT {AREA_COLUMNS} FROM areas ORDER BY id"))).fetch_all(pool).await?);
    let mut areas = Vec::with_capacity(rows.len());
    for row in rows {
        match to_area(&row) {
            Ok(a) => areas.push(a),
            // A stored area was valid when written; if a stricter engine now refuses it,
            // keep serving the rest and say so loudly.
            Err(e) => {
                tracing::error!(area_id = row.id, error = %e, "stored area no longer valid; not indexed")
            }
        }
    }
    Ok(AreaIndex::from_areas(areas))
}

fn to_area(row: &AreaRow) -> Result<Area, String> {
    let geometry: Geometry = serde_json::from_str(&row.geometry).map_err(|e| e.to_string())?;
    let shape = Shape::from_geometry(&geometry, row.radius_m).map_err(|e| e.to_string())?;
    Ok(Area {
        id: row.id,
        name: row.name.clone(),
        kind: AreaKind::parse(&row.kind).unwrap_or(AreaKind::AdHoc),
        level: row
            .security_level
            .and_then(|l| SecurityLevel::try_from(l).ok()),
        parent: row.parent_id,
        valid_from: row.valid_from,
        valid_until: row.valid_until,
        shape,
    })
}

fn to_feature(row: &AreaRow) -> Feature {
    let mut props = JsonObject::new();
    props.insert("name".into(), row.name.clone().into());
    props.insert("kind".into(), row.kind.clone().into());
    props.insert("security_level".into(), row.security_level.into());
    if let Some(level) = row
        .security_level
        .and_then(|l| SecurityLevel::try_from(l).ok())
    {
        props.insert("security_level_name".into(), level.name().into());
    }
    props.insert("parent_id".into(), row.parent_id.into());
    props.insert("org_id".into(), row.org_id.into());
    props.insert("advisory".into(), row.advisory.clone().into());
    let rfc = |ms: Option<i64>| ms.map(|m| Timestamp(m).to_rfc3339());
    props.insert("valid_from".into(), rfc(row.valid_from).into());
    props.insert("valid_until".into(), rfc(row.valid_until).into());
    if let Some(r) = row.radius_m {
        props.insert("radius_m".into(), r.into());
    }
    props.insert("created_at".into(), row.created_at.to_rfc3339().into());
    props.insert("updated_at".into(), row.updated_at.to_rfc3339().into());
    Feature {
        bbox: None,
        geometry: serde_json::from_str(&row.geometry).ok(),
        id: Some(geojson::feature::Id::Number(row.id.into())),
        properties: Some(props),
        foreign_members: None,
    }
}

/// Reads and checks an area Feature, reporting every bad property at once.
pub fn parse_feature(feature: &Feature, default_org: Option<i64>) -> AppResult<AreaInput> {
    let empty = JsonObject::new();
    let props = feature.properties.as_ref().unwrap_or(&empty);
    let mut issues = Vec::new();
    let text = |k: &str| match props.get(k) {
        Some(JsonValue::String(s)) => Ok(Some(s.trim().to_string())),
        None | Some(JsonValue::Null) => Ok(None),
        Some(other) => Err(format!("expected a string, got {other}")),
    };
    let int = |k: &str| match props.get(k) {
        Some(JsonValue::Number(n)) => n
            .as_i64()
            .map(Some)
            .ok_or_else(|| format!("expected an integer, got {n}")),
        None | Some(JsonValue::Null) => Ok(None),
        Some(other) => Err(format!("expected an integer, got {other}")),
    };
    let name = match text("name") {
        Ok(Some(n)) if !n.is_empty() && n.chars().count() <= 200 => n,
        Ok(_) => {
            issues.push(Issue::new(
                "properties/name",
                "required, 1 to 200 characters",
            ));
            String::new()
        }
        Err(e) => {
            issues.push(Issue::new("properties/name", e));
            String::new()
        }
    };
    let kind = match text("kind") {
        Ok(None) => AreaKind::SecurityArea,
        Ok(Some(k)) => AreaKind::parse(&k).unwrap_or_else(|| {
            issues.push(Issue::new(
                "properties/kind",
                format!("unknown kind {k:?}; use country, security_area, duty_station, premises, assembly_point or ad_hoc"),
            ));
            AreaKind::SecurityArea
        }),
        Err(e) => {
            issues.push(Issue::new("properties/kind", e));
            AreaKind::SecurityArea
        }
    };
    let level = match int("security_level") {
        Ok(None) => None,
        Ok(Some(l)) => SecurityLevel::try_from(l).map(Some).unwrap_or_else(|_| {
            issues.push(Issue::new(
                "properties/security_level",
                format!("{l} is not a UN security level (1 minimal … 6 extreme)"),
            ));
            None
        }),
        Err(e) => {
            issues.push(Issue::new("properties/security_level", e));
            None
        }
    };
    let mut opt_int = |k: &str| {
        int(k).unwrap_or_else(|e| {
            issues.push(Issue::new(format!("properties/{k}"), e));
            None
        })
    };
    let parent_id = opt_int("parent_id");
    let org_id = if props.contains_key("org_id") {
        opt_int("org_id")
    } else {
        default_org
    };
    let advisory = match text("advisory") {
        Ok(a) if a.as_ref().is_none_or(|t| t.chars().count() <= 4000) => {
            a.filter(|t| !t.is_empty())
        }
        Ok(_) => {
            issues.push(Issue::new("properties/advisory", "at most 4000 characters"));
            None
        }
        Err(e) => {
            issues.push(Issue::new("properties/advisory", e));
            None
        }
    };
    let mut time = |k: &str| match text(k) {
        Ok(None) => None,
        Ok(Some(s)) => Timestamp::parse_rfc3339(&s).map(|t| t.0).or_else(|| {
            issues.push(Issue::new(
                format!("properties/{k}"),
                format!("{s:?} is not an RFC 3339 time"),
            ));
            None
        }),
        Err(e) => {
            issues.push(Issue::new(format!("properties/{k}"), e));
            None
        }
    };
    let valid_from = time("valid_from");
    let valid_until = time("valid_until");
    if let (Some(f), Some(u)) = (valid_from, valid_until)
        && u <= f
    {
        issues.push(Issue::new(
            "properties/valid_until",
            "must be after valid_from",
        ));
    }
    let radius_m = match props.get("radius_m") {
        Some(JsonValue::Number(n)) => n.as_f64(),
        None | Some(JsonValue::Null) => None,
        Some(other) => {
            issues.push(Issue::new(
                "properties/radius_m",
                format!("expected metres as a number, got {other}"),
            ));
            None
        }
    };
    let shape = match &feature.geometry {
        None => {
            issues.push(Issue::new(
                "geometry",
                "required: Polygon, MultiPolygon, or Point with radius_m",
            ));
            None
        }
        Some(g) => Shape::from_geometry(g, radius_m)
            .map_err(|e| issues.push(Issue::new("geometry", e.to_string())))
            .ok(),
    };
    match shape {
        Some(shape) if issues.is_empty() => Ok(AreaInput {
            org_id,
            name,
            kind,
            level,
            parent_id,
            advisory,
            shape,
            valid_from,
            valid_until,
        }),
        _ => Err(AppError::from_issues(issues)),
    }
}

/// Stores a new area (or replaces `replace`) and updates the in-memory index.
pub async fn save(
    db: &Db,
    tracker: &SharedTracker,
    input: AreaInput,
    replace: Option<i64>,
    actor_id: Option<i64>,
) -> AppResult<Feature> {
    let geometry = serde_json::to_string(&input.shape.to_geometry())
        .map_err(|e| anyhow::anyhow!("encoding geometry: {e}"))?;
    let radius = input.shape.radius_m();
    let now = now_ms();
    let result: Result<AreaRow, sqlx::Error> = async {
        in_tx!(db, tx => {
            let row: AreaRow = match replace {
                None => sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "INSERT INTO areas (org_id, name, kind, security_level, parent_id, geometry, radius_m, valid_from, \
                     valid_until, created_by, created_at, updated_at, advisory) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11, $12) RETURNING {AREA_COLUMNS}")))
                    .bind(input.org_id).bind(&input.name).bind(input.kind.as_str())
                    .bind(input.level.map(|l| l.as_i64())).bind(input.parent_id).bind(&geometry).bind(radius)
                    .bind(input.valid_from).bind(input.valid_until).bind(actor_id).bind(now).bind(&input.advisory)
                    .fetch_one(&mut *tx).await?,
                Some(id) => sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "UPDATE areas SET org_id = $1, name = $2, kind = $3, security_level = $4, parent_id = $5, \
                     geometry = $6, radius_m = $7, valid_from = $8, valid_until = $9, updated_at = $10, advisory = $12 \
                     WHERE id = $11 RETURNING {AREA_COLUMNS}")))
                    .bind(input.org_id).bind(&input.name).bind(input.kind.as_str())
                    .bind(input.level.map(|l| l.as_i64())).bind(input.parent_id).bind(&geometry).bind(radius)
                    .bind(input.valid_from).bind(input.valid_until).bind(now).bind(id).bind(&input.advisory)
                    .fetch_one(&mut *tx).await?,
            };
            let action = if replace.is_some() { "area.update" } else { "area.create" };
            crate::audit::record(&mut *tx, actor_id, input.org_id, action, &format!("area:{}", row.id), &row.name).await?;
            // Memory changes while the row is still locked (SQLite: the one writer), so two
            // writers of one area reach the tracker in the order they commit.
            let area = Area {
                id: row.id,
                name: input.name.clone(),
                kind: input.kind,
                level: input.level,
                parent: input.parent_id,
                valid_from: input.valid_from,
                valid_until: input.valid_until,
                shape: input.shape.clone(),
            };
            let previous = read_tracker(tracker).areas().get(row.id).cloned();
            let changes = write_tracker(tracker).upsert_area(area, now);
            (row, previous, changes.len())
        }, |(row, previous, changes), committed| {
            if let Err(e) = committed {
                // Put memory back as it was before this write.
                let mut t = write_tracker(tracker);
                match previous {
                    Some(old) => drop(t.upsert_area(old, now)),
                    None => drop(t.remove_area(row.id)),
                }
                return Err(e);
            }
            if changes > 0 {
                tracing::debug!(area_id = row.id, changes, "area change moved subjects");
            }
            Ok(row)
        })
    }
    .await;
    let row = result.map_err(|e| match &e {
        sqlx::Error::RowNotFound => AppError::NotFound("no such area".into()),
        sqlx::Error::Database(d) if d.is_foreign_key_violation() => AppError::invalid(
            "properties",
            "parent_id or org_id names nothing that exists",
        ),
        _ => e.into(),
    })?;
    Ok(to_feature(&row))
}

/// Write access to the tracker. A panic while it was held cannot have left it half-updated
/// (each change is one call), so a poisoned lock is safe to keep using.
pub fn write_tracker(tracker: &SharedTracker) -> std::sync::RwLockWriteGuard<'_, Tracker> {
    tracker.write().unwrap_or_else(|p| p.into_inner())
}

/// Read access to the tracker (see [`write_tracker`] on poisoning).
pub fn read_tracker(tracker: &SharedTracker) -> std::sync::RwLockReadGuard<'_, Tracker> {
    tracker.read().unwrap_or_else(|p| p.into_inner())
}

/// Reads an area that another node of the cluster created, changed or deleted into this
/// node's tracker. Crossings it causes were stored by that node; here they are only applied.
pub async fn reload(state: &AppState, id: i64) -> AppResult<()> {
    let row: Option<AreaRow> = on_reader!(&state.db, pool => sqlx::query_as(sqlx::AssertSqlSafe(
        format!("SELECT {AREA_COLUMNS} FROM areas WHERE id = $1"))).bind(id).fetch_optional(pool).await?);
    let area = row
        .map(|r| to_area(&r))
        .transpose()
        .map_err(|e| anyhow::anyhow!("stored area {id}: {e}"))?;
    let mut t = write_tracker(&state.tracker);
    match area {
        Some(area) => drop(t.upsert_area(area, now_ms())),
        None => drop(t.remove_area(id)),
    }
    Ok(())
}

async fn fetch_row(db: &Db, id: i64) -> AppResult<AreaRow> {
    let row: Option<AreaRow> = on_reader!(db, pool => sqlx::query_as(sqlx::AssertSqlSafe(
        format!("SELECT {AREA_COLUMNS} FROM areas WHERE id = $1"))).bind(id).fetch_optional(pool).await?);
    row.ok_or_else(|| AppError::NotFound(format!("area {id} does not exist")))
}

/// A GeoJSON answer, served as `application/geo+json` (RFC 7946) as the document says.
#[derive(Debug)]
pub struct GeoJson<T>(pub T);

impl<T: serde::Serialize> axum::response::IntoResponse for GeoJson<T> {
    fn into_response(self) -> axum::response::Response {
        let mut response = axum::Json(self.0).into_response();
        response.headers_mut().insert(
            axum::http::header::CONTENT_TYPE,
            axum::http::HeaderValue::from_static("application/geo+json"),
        );
        response
    }
}

/// Every area, as a GeoJSON FeatureCollection.
#[utoipa::path(get, path = "/areas", tag = "areas", security(("bearer" = [])), params(AreaQuery),
    responses((status = 200, description = "GeoJSON FeatureCollection", content_type = "application/geo+json", body = Object),
              (status = 403, description = "may not see areas")))]
async fn list(
    State(state): State<AppState>,
    actor: Actor,
    Query(q): Query<AreaQuery>,
) -> AppResult<GeoJson<FeatureCollection>> {
    authorize(&actor, Action::ViewAreas)?;
    let rows: Vec<AreaRow> = on_reader!(&state.db, pool => sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {AREA_COLUMNS} FROM areas WHERE ($1 IS NULL OR kind = $1) AND ($2 IS NULL OR org_id = $2) ORDER BY id")))
        .bind(q.kind.as_deref()).bind(q.org_id).fetch_all(pool).await?);
    Ok(GeoJson(FeatureCollection {
        bbox: None,
        features: rows.iter().map(to_feature).collect(),
        foreign_members: None,
    }))
}

/// One area as a GeoJSON Feature.
#[utoipa::path(get, path = "/areas/{id}", tag = "areas", security(("bearer" = [])), params(("id" = i64, Path)),
    responses((status = 200, description = "GeoJSON Feature", content_type = "application/geo+json", body = Object),
              (status = 403, description = "may not see areas"), (status = 404, description = "no such area")))]
async fn get_one(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
) -> AppResult<GeoJson<Feature>> {
    authorize(&actor, Action::ViewAreas)?;
    Ok(GeoJson(to_feature(&fetch_row(&state.db, id).await?)))
}

/// Draw a new area (GeoJSON Feature).
#[utoipa::path(post, path = "/areas", tag = "areas", security(("bearer" = [])),
    request_body(content = Object, description = "GeoJSON Feature", content_type = "application/json"),
    responses((status = 201, description = "the stored Feature", content_type = "application/geo+json", body = Object),
              (status = 403, description = "may not draw areas for this organisation"), (status = 422, description = "invalid geometry or property")))]
async fn create(
    State(state): State<AppState>,
    actor: Actor,
    Json(feature): Json<Feature>,
) -> AppResult<(StatusCode, GeoJson<Feature>)> {
    // Refuse callers who may draw no area at all before telling them what is wrong with it.
    authorize(
        &actor,
        Action::ManageArea {
            org_id: Some(actor.org_id),
        },
    )?;
    let input = parse_feature(&feature, Some(actor.org_id))?;
    authorize(
        &actor,
        Action::ManageArea {
            org_id: input.org_id,
        },
    )?;
    let saved = save(&state.db, &state.tracker, input, None, Some(actor.user_id)).await?;
    if let Some(geojson::feature::Id::Number(id)) = &saved.id
        && let Some(id) = id.as_i64()
    {
        state.cluster.track(Track::Area { id });
    }
    Ok((StatusCode::CREATED, GeoJson(saved)))
}

/// Replace an area's outline and properties.
#[utoipa::path(put, path = "/areas/{id}", tag = "areas", security(("bearer" = [])), params(("id" = i64, Path)),
    request_body(content = Object, description = "GeoJSON Feature", content_type = "application/json"),
    responses((status = 200, description = "the stored Feature", content_type = "application/geo+json", body = Object),
              (status = 403, description = "may not change this area"), (status = 404, description = "no such area"),
              (status = 422, description = "invalid geometry or property")))]
async fn replace(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
    Json(feature): Json<Feature>,
) -> AppResult<GeoJson<Feature>> {
    let current = fetch_row(&state.db, id).await?;
    authorize(
        &actor,
        Action::ManageArea {
            org_id: current.org_id,
        },
    )?;
    let input = parse_feature(&feature, current.org_id)?;
    authorize(
        &actor,
        Action::ManageArea {
            org_id: input.org_id,
        },
    )?;
    if input.parent_id == Some(id) {
        return Err(AppError::invalid(
            "properties/parent_id",
            "an area cannot be its own parent",
        ));
    }
    let saved = save(
        &state.db,
        &state.tracker,
        input,
        Some(id),
        Some(actor.user_id),
    )
    .await?;
    state.cluster.track(Track::Area { id });
    Ok(GeoJson(saved))
}

/// Delete an area (refused while other areas name it as their parent).
#[utoipa::path(delete, path = "/areas/{id}", tag = "areas", security(("bearer" = [])), params(("id" = i64, Path)),
    responses((status = 204), (status = 403, description = "may not change this area"), (status = 404, description = "no such area"),
              (status = 409, description = "other areas name it as parent")))]
async fn delete(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
) -> AppResult<StatusCode> {
    let current = fetch_row(&state.db, id).await?;
    authorize(
        &actor,
        Action::ManageArea {
            org_id: current.org_id,
        },
    )?;
    let result: Result<(), sqlx::Error> = async {
        in_tx!(&state.db, tx => {
            sqlx::query("DELETE FROM areas WHERE id = $1").bind(id).execute(&mut *tx).await?;
            crate::audit::record(&mut *tx, Some(actor.user_id), current.org_id, "area.delete", &format!("area:{id}"), &current.name).await?;
            // As in `save`: memory changes while the row is locked, and is restored on failure.
            write_tracker(&state.tracker).remove_area(id).0
        }, |removed, committed| {
            if let Err(e) = committed {
                if let Some(area) = removed {
                    drop(write_tracker(&state.tracker).upsert_area(area, now_ms()));
                }
                return Err(e);
            }
            Ok(())
        })
    }
    .await;
    result.map_err(|e| match &e {
        sqlx::Error::Database(d) if d.is_foreign_key_violation() => AppError::Conflict(
            "other areas name this one as their parent; move or delete them first".into(),
        ),
        _ => AppError::from(e),
    })?;
    state.cluster.track(Track::Area { id });
    Ok(StatusCode::NO_CONTENT)
}
