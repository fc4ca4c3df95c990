//! Alerts as OASIS CAP 1.2: each alert as a CAP document, an Atom index of them, and foreign
//! CAP alerts (a national alerting system, another security tool) imported as Vigil alerts.
//!
//! Import rules:
//! - only `Actual` messages reach people; Test, Exercise, System and Draft are refused (422);
//! - an alert already imported (same `sender` and `identifier`) is not sent again: the
//!   existing Vigil alert is returned with 200;
//! - an `Update` is sent as a new alert to its own areas, referencing the alert it updates,
//!   whose remaining fallbacks stop (devices replace it by the update);
//! - a `Cancel` cancels the alerts it references (their recipients are told); nothing new is
//!   sent;
//! - targets are the documents' polygons and circles (a radius of 0, which real senders use for
//!   "at this point", counts as 100 m); geocodes alone cannot be placed and are refused;
//! - recipients are limited to the importer's organisation, as for alerts they compose.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use time::OffsetDateTime;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use vigil_geofences::{Shape, ShapeGeometry};

use super::store::{self, NewAlert};
use super::target::{self, Target};
use super::{Alert, AlertQuery, Translation, ValidAlert};
use crate::cap::{self as capdoc, CapAlert, CapArea, CapCircle, CapInfo, MsgType, Scope, Status};
use crate::db::{Timestamp, now_ms};
use crate::error::{AppError, AppResult, Issue, Json, Path, Query};
use crate::policy::{Action, Actor, authorize};
use crate::{AppState, on_reader};

/// Radius given to CAP circles of radius 0 (a point).
const POINT_RADIUS_M: f64 = 100.0;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(cap_xml))
        .routes(routes!(feed))
        .merge(
            OpenApiRouter::new()
                .routes(routes!(import))
                .layer(DefaultBodyLimit::max(capdoc::MAX_DOCUMENT_BYTES + 1)),
        )
}

fn to_time(t: Timestamp) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(t.0) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

fn to_ms(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

/// The CAP areas of an alert's geographic targets.
fn cap_areas(state: &AppState, target: &Target) -> Vec<CapArea> {
    let mut areas = Vec::new();
    let mut add = |desc: String, shape: &Shape| {
        let mut area = CapArea::new(desc);
        match shape.geometry() {
            ShapeGeometry::Polygons(mp) => {
                // CAP polygons have no holes: the outline is what warns people.
                area.polygons =
                    mp.0.iter()
                        .map(|p| geo::Polygon::new(p.exterior().clone(), Vec::new()))
                        .collect();
            }
            ShapeGeometry::Circle { lon, lat, radius_m } => area.circles.push(CapCircle {
                lon: *lon,
                lat: *lat,
                radius_m: *radius_m,
            }),
        }
        areas.push(area);
    };
    {
        let tracker = crate::areas::read_tracker(&state.tracker);
        for id in &target.areas {
            if let Some(a) = tracker.areas().get(*id) {
                add(a.name.clone(), &a.shape);
            }
        }
    }
    for (i, value) in target.shapes.iter().enumerate() {
        let Ok(feature) = serde_json::from_value::<geojson::Feature>(value.clone()) else {
            continue;
        };
        let radius = feature
            .properties
            .as_ref()
            .and_then(|p| p.get("radius_m"))
            .and_then(serde_json::Value::as_f64);
        if let Some(shape) = feature
            .geometry
            .as_ref()
            .and_then(|g| Shape::from_geometry(g, radius).ok())
        {
            add(format!("Area drawn for this alert ({})", i + 1), &shape);
        }
    }
    areas
}

/// A Vigil alert as a CAP message: one `info` per language.
pub fn to_cap(state: &AppState, alert: &Alert, org_name: &str) -> CapAlert {
    let areas = cap_areas(state, &alert.target);
    let infos = alert
        .translations
        .iter()
        .map(|(lang, t)| {
            let mut info = CapInfo::new(
                vec![alert.category],
                t.title.clone(),
                alert.urgency,
                alert.severity,
                alert.certainty,
            );
            info.language = lang.clone();
            info.expires = Some(to_time(alert.expires_at));
            info.sender_name = Some(org_name.to_string());
            info.headline = Some(t.title.clone());
            info.description = Some(t.body.clone());
            info.instruction = t.instructions.clone();
            if let Some(level) = alert.security_level {
                info.parameters
                    .push(("security_level".into(), level.to_string()));
            }
            info.areas = areas.clone();
            info
        })
        .collect();
    CapAlert {
        identifier: alert.identifier.clone(),
        sender: alert.cap_sender.clone(),
        sent: to_time(alert.created_at),
        status: Status::Actual,
        msg_type: match alert.msg_type.as_str() {
            "update" => MsgType::Update,
            "cancel" => MsgType::Cancel,
            _ => MsgType::Alert,
        },
        source: Some("Vigil".into()),
        scope: Scope::Restricted,
        restriction: Some(format!("Personnel of {org_name}")),
        addresses: Vec::new(),
        codes: Vec::new(),
        note: alert
            .cancelled_at
            .map(|t| format!("Cancelled at {}", t.to_rfc3339())),
        references: Vec::new(),
        incidents: Vec::new(),
        infos,
    }
}

async fn org_name(state: &AppState, org_id: i64) -> AppResult<String> {
    let name: Option<String> = on_reader!(&state.db, pool => sqlx::query_scalar(
        "SELECT name FROM organisations WHERE id = $1").bind(org_id).fetch_optional(pool).await?);
    Ok(name.unwrap_or_else(|| format!("organisation {org_id}")))
}

fn xml(content_type: &'static str, body: String) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

/// The alert as an OASIS CAP 1.2 document.
#[utoipa::path(get, path = "/alerts/{id}/cap.xml", tag = "alerts", security(("bearer" = [])), params(("id" = i64, Path)),
    responses((status = 200, description = "CAP 1.2", content_type = "application/cap+xml", body = String),
              (status = 403, description = "not allowed to see this organisation's alerts"), (status = 404, description = "no such alert")))]
async fn cap_xml(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
) -> AppResult<Response> {
    let alert = super::visible(&state, &actor, id).await?;
    let name = org_name(&state, alert.org_id).await?;
    Ok(xml(
        capdoc::MEDIA_TYPE,
        capdoc::to_xml(&to_cap(&state, &alert, &name)),
    ))
}

/// An Atom index of the alerts the caller may see, newest first, linking each CAP document.
#[utoipa::path(get, path = "/cap/feed.atom", tag = "alerts", security(("bearer" = [])), params(AlertQuery),
    responses((status = 200, description = "Atom 1.0", content_type = "application/atom+xml", body = String),
              (status = 403, description = "not an operator, adviser or org admin of that organisation, nor oversight")))]
async fn feed(
    State(state): State<AppState>,
    actor: Actor,
    Query(q): Query<AlertQuery>,
) -> AppResult<Response> {
    let org =
        crate::policy::listing_scope(&actor, q.org_id, |org_id| Action::ViewAlerts { org_id })?;
    let alerts = store::list(
        &state.db,
        org,
        q.before,
        q.limit.unwrap_or(50).clamp(1, 500),
    )
    .await?;
    let base = state.settings.public_url.trim_end_matches('/');
    let entries: Vec<capdoc::FeedEntry> = alerts
        .iter()
        .map(|a| {
            let t = a
                .translations
                .get(&a.default_language)
                .or_else(|| a.translations.values().next());
            capdoc::FeedEntry {
                id: format!("urn:uuid:{}", a.identifier),
                title: t.map(|t| t.title.clone()).unwrap_or_default(),
                updated: to_time(a.cancelled_at.unwrap_or(a.created_at)),
                published: Some(to_time(a.created_at)),
                summary: Some(format!(
                    "{:?} · {} recipients",
                    a.severity, a.recipient_count
                )),
                cap_url: format!("{base}/api/v1/alerts/{}/cap.xml", a.id),
            }
        })
        .collect();
    let updated = entries
        .first()
        .map_or(OffsetDateTime::UNIX_EPOCH, |e| e.updated);
    let scope = org.map_or_else(|| "all".to_string(), |o| o.to_string());
    let body = capdoc::atom_feed(
        &format!("{base}/api/v1/cap/feed.atom?org={scope}"),
        "Vigil alerts",
        "Vigil",
        &format!("{base}/api/v1/cap/feed.atom"),
        updated,
        &entries,
    );
    Ok(xml("application/atom+xml", body))
}

/// The Vigil alert a CAP message describes: text per language, CAP fields of the first block,
/// the union of its polygons and circles as the target.
fn from_cap(doc: &CapAlert, now: i64, default_fresh_secs: i64) -> AppResult<ValidAlert> {
    let mut issues = Vec::new();
    if doc.status != Status::Actual {
        issues.push(Issue::new(
            "status",
            format!(
                "{}: only Actual alerts are sent to people",
                doc.status.as_cap()
            ),
        ));
    }
    let Some(first) = doc.infos.first() else {
        return Err(AppError::from_issues(vec![Issue::new(
            "info",
            "the alert has no info block to send",
        )]));
    };
    let mut translations = BTreeMap::new();
    let mut shapes = Vec::new();
    for (i, info) in doc.infos.iter().enumerate() {
        let title: String = info
            .headline
            .clone()
            .unwrap_or_else(|| info.event.clone())
            .chars()
            .take(super::MAX_TITLE)
            .collect();
        let body: String = info
            .description
            .clone()
            .unwrap_or_else(|| info.event.clone())
            .chars()
            .take(super::MAX_BODY)
            .collect();
        let instructions = info
            .instruction
            .as_ref()
            .map(|s| s.chars().take(super::MAX_INSTRUCTIONS).collect());
        let lang = info.language.clone();
        translations.entry(lang).or_insert(Translation {
            title,
            body,
            instructions,
        });
        for (j, area) in info.areas.iter().enumerate() {
            for polygon in &area.polygons {
                let coordinates: Vec<Vec<f64>> = polygon
                    .exterior()
                    .0
                    .iter()
                    .map(|c| vec![c.x, c.y])
                    .collect();
                shapes.push(json!({"type": "Feature", "properties": {"name": area.desc},
                    "geometry": {"type": "Polygon", "coordinates": [coordinates]}}));
            }
            for c in &area.circles {
                shapes.push(json!({"type": "Feature", "properties": {"name": area.desc, "radius_m": c.radius_m.max(POINT_RADIUS_M)},
                    "geometry": {"type": "Point", "coordinates": [c.lon, c.lat]}}));
            }
            if area.polygons.is_empty() && area.circles.is_empty() {
                issues.push(Issue::new(
                    format!("info[{i}].area[{j}]"),
                    "only geocodes: Vigil targets polygons and circles",
                ));
            }
        }
    }
    if shapes.is_empty() {
        issues.push(Issue::new("info.area", "no polygon or circle to target"));
    }
    let expires = first.expires.map(to_ms).unwrap_or(now + 24 * 3_600_000);
    if expires <= now {
        issues.push(Issue::new(
            "info[0].expires",
            "the alert has already expired",
        ));
    }
    AppError::check(issues)?;
    let default_language = if translations.contains_key(&first.language) {
        first.language.clone()
    } else {
        translations.keys().next().cloned().unwrap_or_default()
    };
    Ok(ValidAlert {
        translations,
        default_language,
        severity: first.severity,
        urgency: first.urgency,
        certainty: first.certainty,
        category: first
            .categories
            .first()
            .copied()
            .unwrap_or(crate::cap::Category::Other),
        security_level: None,
        expires_at: expires.min(now + super::MAX_EXPIRY_MS),
        target: Target {
            shapes,
            fresh_within_secs: Some(default_fresh_secs),
            ..Target::default()
        },
        sms_fallback: true,
    })
}

async fn find(state: &AppState, sender: &str, identifier: &str) -> AppResult<Option<i64>> {
    Ok(on_reader!(&state.db, pool => sqlx::query_scalar(
        "SELECT id FROM alerts WHERE cap_sender = $1 AND identifier = $2")
        .bind(sender).bind(identifier).fetch_optional(pool).await?))
}

/// Import a foreign CAP 1.2 alert: it is sent to the importer's organisation's people inside
/// its polygons and circles (see the module documentation for Update and Cancel).
#[utoipa::path(post, path = "/cap/import", tag = "alerts", security(("bearer" = [])),
    request_body(content = String, description = "a CAP 1.2 document", content_type = "application/cap+xml"),
    responses((status = 201, body = Alert, description = "sent"), (status = 200, body = Alert, description = "already imported, or the alert a Cancel cancelled"),
              (status = 403, description = "not an adviser"), (status = 404, description = "a Cancel for an alert never imported"),
              (status = 415, description = "not XML"), (status = 422, description = "not valid CAP 1.2, or reaches nobody (the issues say where and why)")))]
async fn import(
    State(state): State<AppState>,
    actor: Actor,
    headers: HeaderMap,
    body: Bytes,
) -> AppResult<(StatusCode, Json<Alert>)> {
    let scope = target::scope_of(&state.db, &actor).await?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !["application/cap+xml", "application/xml", "text/xml"]
        .iter()
        .any(|t| content_type.starts_with(t))
    {
        return Err(AppError::UnsupportedMediaType(
            "send the CAP document as application/cap+xml".into(),
        ));
    }
    let doc = capdoc::parse(&body).map_err(AppError::from_issues)?;
    if let Some(existing) = find(&state, &doc.sender, &doc.identifier).await? {
        return Ok((
            StatusCode::OK,
            Json(store::load(&state.db, existing).await?),
        ));
    }
    let mut referenced = Vec::new();
    for r in &doc.references {
        if let Some(id) = find(&state, &r.sender, &r.identifier).await? {
            referenced.push(store::load(&state.db, id).await?);
        }
    }
    for r in &referenced {
        authorize(
            &actor,
            Action::SendAlert {
                org_id: r.org_id,
                granted: false,
            },
        )?;
    }
    if doc.msg_type == MsgType::Cancel {
        let Some(first) = referenced.into_iter().next() else {
            return Err(AppError::NotFound(
                "the Cancel references no alert imported here".into(),
            ));
        };
        let id = first.id;
        if first.cancelled_at.is_none() && first.expires_at.0 > now_ms() {
            store::cancel(&state, &actor, first).await?;
        }
        return Ok((StatusCode::OK, Json(store::load(&state.db, id).await?)));
    }
    if !matches!(doc.msg_type, MsgType::Alert | MsgType::Update) {
        return Err(AppError::invalid(
            "msgType",
            format!(
                "{}: only Alert, Update and Cancel are acted on",
                doc.msg_type.as_cap()
            ),
        ));
    }
    let now = now_ms();
    let valid = from_cap(&doc, now, state.settings.alert_position_max_age_secs)?;
    let audience = target::resolve(&state, &actor, &scope, &valid.target, now).await?;
    audience.preview.refuse_if_empty()?;
    let references_id = referenced.first().map(|a| a.id);
    let new = NewAlert {
        org_id: actor.org_id,
        sender_id: Some(actor.user_id),
        identifier: doc.identifier.clone(),
        cap_sender: doc.sender.clone(),
        cap_sent: Some(capdoc::format_time(doc.sent)),
        source: "cap_import",
        msg_type: if doc.msg_type == MsgType::Update {
            "update"
        } else {
            "alert"
        },
        references_id,
        valid,
    };
    let alert = store::insert_and_deliver(&state, new, &audience, now).await?;
    for old in referenced {
        store::supersede(&state.db, old.id, now).await?;
    }
    Ok((StatusCode::CREATED, Json(alert)))
}
