//! Positions from third-party trackers: the OwnTracks app (HTTP mode) and the OsmAnd / Traccar
//! Client protocol, authenticated by per-device credentials that operators issue and revoke.
//!
//! Layout: [`devices`] issues, lists and revokes credentials; [`owntracks`] and [`osmand`] read
//! each app's payloads as the apps send them. Both end in [`record`], which checks the fix with
//! [`positions::validate_fixes`] and hands it to the one position writer, so a tracker's fix is
//! stored, deduplicated, geofenced and refused for location-less people exactly like a phone's.
//!
//! **Credentials.** A credential is one secret token, `vgd_` followed by 43 base64url characters
//! (256 random bits), bound to one person or one asset. It is shown once, when issued; the server
//! keeps only its SHA-256 hash, and finds the credential by that hash. A fast hash is enough
//! because the secret is random, not chosen by a person: there is nothing to guess from a
//! dictionary, and a slow hash (argon2) would cost tens of milliseconds of CPU on every fix of
//! every tracker. The token travels as:
//! - OwnTracks: the HTTP Basic password (the username is free; the app needs one for its topic);
//! - OsmAnd / Traccar Client: the device identifier (`id`, `deviceid` or the JSON `device_id`),
//!   because those apps have no other place for a secret; HTTP Basic is accepted too and wins.
//!
//! A credential stops working the moment it is revoked, and while its person or asset is
//! deactivated; every request reads it afresh.

pub mod devices;
pub mod osmand;
pub mod owntracks;

use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rand::RngCore;
use rand::rngs::OsRng;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa_axum::router::OpenApiRouter;

use crate::areas::read_tracker;
use crate::db::{Timestamp, now_ms};
use crate::error::{AppError, AppResult, Issue};
use crate::positions::{self, FixIn, Subject, writer::Recorded};
use crate::{AppState, on_reader, on_writer};

/// Prefix of every device secret, so that a leaked one is recognisable (e.g. by secret scanners).
const TOKEN_PREFIX: &str = "vgd_";

/// How far from a tracker a circular area may be and still be handed to the app: far enough
/// that a vehicle does not outrun the list between two reports.
const NEAR_M: f64 = 50_000.0;

/// Most circular areas handed to an app at once: iOS monitors at most 20 regions per app.
const MAX_WAYPOINTS: usize = 20;

/// `last_used_at` is written at most this often, to spare the single SQLite writer.
const TOUCH_EVERY_MS: i64 = 60_000;

/// Routes for device credentials and the tracker endpoints.
pub fn routes() -> OpenApiRouter<AppState> {
    let mut router = OpenApiRouter::new()
        .merge(devices::routes())
        .merge(owntracks::routes())
        .merge(osmand::routes());
    // The tracker endpoints take a device credential, not a bearer token.
    router
        .get_openapi_mut()
        .components
        .get_or_insert_with(Default::default)
        .add_security_scheme(
            "device",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Basic)
                    .description(Some(
                        "A device credential issued by POST /organisations/{id}/devices: \
                         any username, the secret as password.",
                    ))
                    .build(),
            ),
        );
    router
}

/// A new device secret.
fn new_secret() -> String {
    let mut buf = [0u8; 32];
    OsRng.fill_bytes(&mut buf);
    format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(buf))
}

/// What the database keeps of a secret.
fn hash_secret(secret: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(secret.as_bytes()))
}

/// The tracker a request authenticated as.
#[derive(Debug, Clone, Copy)]
pub struct Device {
    /// Credential id.
    pub id: i64,
    /// The person or asset its fixes belong to.
    pub subject: Subject,
    /// The organisation that issued it (the person's or asset's).
    pub org_id: i64,
    last_used_at: Option<i64>,
}

fn unknown_device() -> AppError {
    AppError::Unauthorized("unknown or revoked device credential".into())
}

/// The password of an HTTP Basic `Authorization` header, if there is one. A header that is
/// present but unreadable is an error, not an absence, so a misconfigured app hears about it.
fn basic_password(headers: &HeaderMap) -> AppResult<Option<String>> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let bad = || AppError::Unauthorized("the Authorization header is not HTTP Basic".into());
    let encoded = value
        .to_str()
        .ok()
        .and_then(|v| {
            v.strip_prefix("Basic ")
                .or_else(|| v.strip_prefix("basic "))
        })
        .ok_or_else(bad)?;
    let decoded = STANDARD.decode(encoded.trim()).map_err(|_| bad())?;
    let text = String::from_utf8(decoded).map_err(|_| bad())?;
    let (_user, password) = text.split_once(':').ok_or_else(bad)?;
    Ok(Some(password.to_string()))
}

/// Finds the live credential for `secret` and checks that its person or asset is active.
async fn authenticate(state: &AppState, secret: &str) -> AppResult<Device> {
    if !secret.starts_with(TOKEN_PREFIX) {
        return Err(unknown_device());
    }
    let row: Option<(i64, String, i64, Option<i64>, i64)> = on_reader!(&state.db, pool => sqlx::query_as(
        "SELECT id, subject_kind, subject_id, last_used_at, org_id FROM device_credentials \
         WHERE secret_hash = $1 AND revoked_at IS NULL")
        .bind(hash_secret(secret)).fetch_optional(pool).await?);
    let (id, kind, subject_id, last_used_at, org_id) = row.ok_or_else(unknown_device)?;
    let subject = Subject::from_key(&kind, subject_id).ok_or_else(unknown_device)?;
    let active: Option<bool> = on_reader!(&state.db, pool => match subject {
        Subject::User(uid) => sqlx::query_scalar("SELECT active FROM users WHERE id = $1")
            .bind(uid).fetch_optional(pool).await?,
        Subject::Asset(aid) => sqlx::query_scalar("SELECT active FROM assets WHERE id = $1")
            .bind(aid).fetch_optional(pool).await?,
    });
    if active != Some(true) {
        let what = match subject {
            Subject::User(_) => "the person this tracker reports for is deactivated",
            Subject::Asset(_) => "the asset this tracker reports for is deactivated",
        };
        return Err(AppError::Forbidden(what.into()));
    }
    Ok(Device {
        id,
        subject,
        org_id,
        last_used_at,
    })
}

/// Turns a handler's outcome into the response; a 401 carries the Basic challenge that tells an
/// app to send its credential.
fn finish(outcome: AppResult<Response>) -> Response {
    match outcome {
        Ok(res) => res,
        Err(e) => {
            let challenge = matches!(e, AppError::Unauthorized(_));
            let mut res = e.into_response();
            if challenge {
                res.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Basic realm=\"Vigil trackers\", charset=\"UTF-8\""),
                );
            }
            res
        }
    }
}

/// One fix as a tracker sent it, before checks.
pub(crate) struct TrackerFix {
    pub(crate) lat: f64,
    pub(crate) lon: f64,
    pub(crate) accuracy_m: Option<f64>,
    pub(crate) recorded_at_ms: i64,
}

/// The app's names for latitude, longitude, accuracy and time, so that problems point at the
/// fields the app's user can see.
type FieldNames = [&'static str; 4];

/// Checks one fix and stores it through the position writer.
async fn record(
    state: &AppState,
    device: Device,
    source: &'static str,
    fix: TrackerFix,
    names: FieldNames,
) -> AppResult<Recorded> {
    let now = now_ms();
    let fixes = positions::validate_fixes(
        &[FixIn {
            lat: fix.lat,
            lon: fix.lon,
            accuracy_m: fix.accuracy_m,
            recorded_at: Timestamp(fix.recorded_at_ms),
        }],
        now,
        state.settings.position_retention_days,
        1,
    )
    .map_err(|e| rename_issues(e, names))?;
    // Through the same path as the app's own fixes: operators see the position live and the
    // person gets the advisory of an area entered.
    let (recorded, _) = positions::accept(state, device.subject, device.org_id, source, fixes)
        .await
        .map_err(|e| match e {
            AppError::Conflict(_) => AppError::Conflict(
                "the person this tracker reports for is in location-less mode: the server \
                 accepts no position for them; turn the tracker off or switch back to tracking"
                    .into(),
            ),
            other => other,
        })?;
    touch(state, device, now).await?;
    Ok(recorded)
}

/// Rewrites `fixes/0/lat`-style issue locations into the app's own field names.
fn rename_issues(e: AppError, names: FieldNames) -> AppError {
    let [lat, lon, acc, time] = names;
    match e {
        AppError::Invalid { issues, .. } => {
            let issues: Vec<Issue> = issues
                .into_iter()
                .map(|i| {
                    let at = match i.at.rsplit('/').next() {
                        Some("lat") => lat,
                        Some("lon") => lon,
                        Some("accuracy_m") => acc,
                        Some("recorded_at") => time,
                        _ => "body",
                    };
                    Issue::new(at, i.reason)
                })
                .collect();
            AppError::from_issues(issues)
        }
        other => other,
    }
}

/// Notes when a credential was last used, at most once a minute.
async fn touch(state: &AppState, device: Device, now: i64) -> AppResult<()> {
    if device
        .last_used_at
        .is_some_and(|t| now - t < TOUCH_EVERY_MS)
    {
        return Ok(());
    }
    on_writer!(&state.db, pool => sqlx::query(
        "UPDATE device_credentials SET last_used_at = $1 WHERE id = $2")
        .bind(now).bind(device.id).execute(pool).await.map(drop))?;
    Ok(())
}

/// The circular areas within [`NEAR_M`] of a point, nearest border first, as OwnTracks
/// `waypoint` messages. `tst`, which the apps use as a waypoint's identity and echo as `wtst`
/// in transitions, is the area id: stable across edits and unique.
fn nearby_waypoints(state: &AppState, lat: f64, lon: f64) -> Vec<Value> {
    let now = now_ms();
    let tracker = read_tracker(&state.tracker);
    let mut near: Vec<(f64, i64, String, f64, f64, f64)> = tracker
        .areas()
        .iter()
        .filter(|a| a.is_valid_at(now))
        .filter_map(|a| match a.shape.geometry() {
            vigil_geofences::ShapeGeometry::Circle {
                lon: c_lon,
                lat: c_lat,
                radius_m,
            } => {
                let to_border = distance_m(lat, lon, *c_lat, *c_lon) - radius_m;
                (to_border <= NEAR_M).then(|| {
                    (
                        to_border.max(0.0),
                        a.id,
                        a.name.clone(),
                        *c_lat,
                        *c_lon,
                        *radius_m,
                    )
                })
            }
            vigil_geofences::ShapeGeometry::Polygons(_) => None,
        })
        .collect();
    drop(tracker);
    near.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    near.truncate(MAX_WAYPOINTS);
    let names: Vec<&str> = near.iter().map(|w| w.2.as_str()).collect();
    near.iter()
        .map(|(_, id, name, c_lat, c_lon, radius_m)| {
            // iOS keys waypoints by `desc`: two areas of the same name would overwrite each other.
            let desc = if names.iter().filter(|n| **n == name.as_str()).count() > 1 {
                format!("{name} ({id})")
            } else {
                name.clone()
            };
            json!({
                "_type": "waypoint",
                "desc": desc,
                "lat": c_lat,
                "lon": c_lon,
                // The apps take whole metres; rounding up never shrinks an area.
                "rad": radius_m.ceil() as i64,
                "tst": id,
            })
        })
        .collect()
}

/// Great-circle distance in metres (spherical Earth: ample for "is this area nearby").
fn distance_m(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    const EARTH_RADIUS_M: f64 = 6_371_008.8;
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let dp = p2 - p1;
    let dl = (lon2 - lon1).to_radians();
    let h = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_M * h.sqrt().min(1.0).asin()
}

/// Reads a number the apps may send as a JSON number or as a numeric string.
fn number(v: Option<&Value>) -> Option<f64> {
    match v? {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_long_random_and_hash_stably() {
        let a = new_secret();
        let b = new_secret();
        assert_ne!(a, b);
        assert!(a.starts_with(TOKEN_PREFIX) && a.len() == TOKEN_PREFIX.len() + 43);
        assert_eq!(hash_secret(&a), hash_secret(&a));
        assert_ne!(hash_secret(&a), hash_secret(&b));
    }

    #[test]
    fn distances_are_about_right() {
        // One degree of latitude is about 111 km.
        let d = distance_m(4.0, 31.0, 5.0, 31.0);
        assert!((d - 111_195.0).abs() < 200.0, "{d}");
        assert!(distance_m(4.85, 31.58, 4.85, 31.58) < 1e-6);
    }

    #[test]
    fn basic_credentials_are_read_and_garbage_refused() {
        let mut h = HeaderMap::new();
        assert!(matches!(basic_password(&h), Ok(None)));
        let encoded = STANDARD.encode("jane:vgd_secret:with:colons");
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Basic {encoded}")).expect("header"),
        );
        assert_eq!(
            basic_password(&h).ok().flatten().as_deref(),
            Some("vgd_secret:with:colons")
        );
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer x"));
        assert!(basic_password(&h).is_err());
    }
}
