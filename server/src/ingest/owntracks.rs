//! The OwnTracks app in HTTP mode (<https://owntracks.org/booklet/tech/http/>).
//!
//! The app POSTs each message as JSON, with the device credential as the HTTP Basic password.
//! `location` and `transition` messages carry a fix (`lat`, `lon`, `tst` in Unix seconds, and
//! `acc` unless it is zero: the app leaves zero-valued fields out); every other `_type` (`lwt`,
//! `waypoint`, `waypoints`, `beacon`, `card`, `steps`, …) and the empty body the app sends when
//! a friend is deleted are accepted and ignored.
//!
//! The app reads the `200` answer as a JSON array of messages to act on. After a fix, the array
//! holds one `cmd` `setWaypoints` (booklet, JSON, `_type=cmd`) carrying the circular security
//! areas near the tracker, so that the app's own geofencing notices the crossings and reports a
//! `transition` at once instead of at its next scheduled report. Polygons cannot be expressed as
//! OwnTracks waypoints; the server still geofences them from every fix.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{TrackerFix, authenticate, basic_password, finish, nearby_waypoints, number, record};
use crate::AppState;
use crate::error::{AppError, AppResult, Issue, Json};

/// The route `/ingest/owntracks`.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(ingest))
}

/// Receive one OwnTracks message (HTTP mode); answer with the messages the app should act on.
#[utoipa::path(post, path = "/ingest/owntracks", tag = "ingest", security(("device" = [])),
    request_body(content = Object, description = "An OwnTracks JSON message, e.g. `{\"_type\":\"location\",\"lat\":4.85,\"lon\":31.58,\"tst\":1700000000,\"tid\":\"am\"}`"),
    responses((status = 200, description = "A JSON array of OwnTracks messages: empty, or one `cmd` `setWaypoints` with the circular areas nearby", body = [Object]),
              (status = 401, description = "missing, unknown or revoked device credential"),
              (status = 403, description = "the person or asset is deactivated"),
              (status = 409, description = "the person is in location-less mode; nothing was stored"),
              (status = 422, description = "the fix is invalid (coordinates, a future or too old `tst`)")))]
async fn ingest(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    finish(handle(&state, &headers, &body).await)
}

async fn handle(state: &AppState, headers: &HeaderMap, body: &[u8]) -> AppResult<Response> {
    let secret = basic_password(headers)?.ok_or_else(|| {
        AppError::Unauthorized(
            "OwnTracks sends the device credential by HTTP Basic: enter the secret as the \
             password in the app's connection settings"
                .into(),
        )
    })?;
    let device = authenticate(state, &secret).await?;
    // The app POSTs an empty body when a friend is deleted; there is nothing in it for us.
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(answer(Vec::new()));
    }
    let message: Value = serde_json::from_slice(body)
        .map_err(|e| AppError::BadRequest(format!("the body is not JSON: {e}")))?;
    let kind = message.get("_type").and_then(Value::as_str).unwrap_or("");
    match kind {
        "location" | "transition" => {}
        "encrypted" => {
            // Refused rather than ignored: silently dropping every position would look like
            // a working tracker on the operators' map.
            return Err(AppError::invalid(
                "_type",
                "encrypted payloads are not supported: turn off encryption in the app; the \
                 connection is already protected by HTTPS",
            ));
        }
        _ => return Ok(answer(Vec::new())),
    }
    if kind == "transition" {
        let text = |k: &str| message.get(k).and_then(|v| v.as_str()).unwrap_or("");
        let (event, area) = (text("event"), text("desc"));
        tracing::debug!(device_id = device.id, event, area, "OwnTracks transition");
        // A transition names where it fired only optionally; without a place there is no fix.
        if message.get("lat").is_none() && message.get("lon").is_none() {
            return Ok(answer(Vec::new()));
        }
    }
    let fix = read_fix(&message)?;
    let (lat, lon) = (fix.lat, fix.lon);
    record(
        state,
        device,
        "owntracks",
        fix,
        ["lat", "lon", "acc", "tst"],
    )
    .await?;
    let waypoints = nearby_waypoints(state, lat, lon);
    let mut messages = Vec::new();
    if !waypoints.is_empty() {
        messages.push(json!({
            "_type": "cmd",
            "action": "setWaypoints",
            "waypoints": {"_type": "waypoints", "_creator": "vigil", "waypoints": waypoints},
        }));
    }
    Ok(answer(messages))
}

/// Reads `lat`, `lon`, `tst` (required) and `acc` (left out by the app when zero).
pub(crate) fn read_fix(m: &Value) -> AppResult<TrackerFix> {
    let mut issues = Vec::new();
    let mut required = |key: &str, what: &str| {
        let v = number(m.get(key)).filter(|v| v.is_finite());
        if v.is_none() {
            issues.push(Issue::new(key, format!("required: {what}")));
        }
        v.unwrap_or_default()
    };
    let lat = required("lat", "latitude in degrees");
    let lon = required("lon", "longitude in degrees");
    let tst = required("tst", "time of the fix in Unix seconds");
    if !issues.is_empty() {
        return Err(AppError::from_issues(issues));
    }
    Ok(TrackerFix {
        lat,
        lon,
        accuracy_m: number(m.get("acc")),
        // Saturates for absurd values, which the time checks then refuse.
        recorded_at_ms: (tst * 1000.0).round() as i64,
    })
}

fn answer(messages: Vec<Value>) -> Response {
    Json(messages).into_response()
}
