//! The OsmAnd protocol, as the OsmAnd app's online tracking and Traccar Client speak it
//! (<https://www.traccar.org/osmand/>).
//!
//! Two shapes, both by `GET` or `POST`:
//! - query or form parameters: `id` (or `deviceid`), `lat`, `lon` (or `location=lat,lon`),
//!   `timestamp` (Unix seconds, Unix milliseconds, ISO 8601, or `yyyy-MM-dd HH:mm:ss` in UTC;
//!   the time of arrival when absent), `accuracy`; `speed`, `bearing`, `heading`, `altitude`,
//!   `hdop`, `batt` and anything else are accepted and not kept. `valid=false` (the device's
//!   own verdict on the fix) is accepted and not stored;
//! - Traccar Client 9 and later POST JSON: `{"device_id": …, "location": {"timestamp": ISO 8601,
//!   "coords": {"latitude", "longitude", "accuracy", …}, …}}`.
//!
//! These apps have no field for a secret, so the device identifier *is* the credential: the
//! issued `vgd_…` secret goes in `id` / `device_id`. HTTP Basic (secret as password) is also
//! accepted and, when present, is the credential. The answer is `200` with an empty body, as the
//! apps expect; failures are problem+json.

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{TrackerFix, authenticate, basic_password, finish, number, record};
use crate::AppState;
use crate::db::{Timestamp, now_ms};
use crate::error::{AppError, AppResult, Issue};

/// Field names of the query/form shape, for problems.
const QUERY_NAMES: [&str; 4] = ["lat", "lon", "accuracy", "timestamp"];
/// Field names of the JSON shape, for problems.
const JSON_NAMES: [&str; 4] = [
    "location/coords/latitude",
    "location/coords/longitude",
    "location/coords/accuracy",
    "location/timestamp",
];

/// The route `/ingest/osmand`.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(ingest))
}

/// Receive one fix in the OsmAnd / Traccar Client protocol (query, form or JSON).
#[utoipa::path(method(get, post), path = "/ingest/osmand", tag = "ingest", security(("device" = []), ()),
    params(
        ("id" = Option<String>, Query, description = "the device secret (`vgd_…`); `deviceid` also works"),
        ("lat" = Option<f64>, Query, description = "latitude, degrees"),
        ("lon" = Option<f64>, Query, description = "longitude, degrees"),
        ("timestamp" = Option<String>, Query, description = "Unix seconds or milliseconds, or ISO 8601"),
        ("accuracy" = Option<f64>, Query, description = "accuracy radius, metres"),
    ),
    request_body(content = Object, description = "Traccar Client's JSON: `{\"device_id\": \"vgd_…\", \"location\": {\"timestamp\": \"…\", \"coords\": {\"latitude\": …, \"longitude\": …, \"accuracy\": …}}}`; or form parameters as in the query"),
    responses((status = 200, description = "stored (or a duplicate, or a fix the device marked invalid)"),
              (status = 401, description = "missing, unknown or revoked device credential"),
              (status = 403, description = "the person or asset is deactivated"),
              (status = 409, description = "the person is in location-less mode; nothing was stored"),
              (status = 422, description = "the fix is invalid (coordinates, time)")))]
async fn ingest(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    finish(handle(&state, &headers, query.as_deref(), &body).await)
}

async fn handle(
    state: &AppState,
    headers: &HeaderMap,
    query: Option<&str>,
    body: &[u8],
) -> AppResult<Response> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.contains("json"))
        || body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    let basic = basic_password(headers)?;
    let (claimed_id, fix, names) = if is_json {
        let message: Value = serde_json::from_slice(body)
            .map_err(|e| AppError::BadRequest(format!("the body is not JSON: {e}")))?;
        let id = match message.get("device_id") {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        };
        (id, Some(json_fix(&message)), JSON_NAMES)
    } else {
        // Like Traccar: parameters come in the query, or else in a form body.
        let text = match query.filter(|q| !q.is_empty()) {
            Some(q) => q.to_string(),
            None => String::from_utf8_lossy(body).into_owned(),
        };
        let params = parse_form(&text);
        let get = |k: &str| {
            params
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        let id = get("id").or_else(|| get("deviceid")).map(str::to_string);
        let valid = get("valid").is_none_or(|v| v == "true" || v == "1");
        (id, valid.then(|| query_fix(&get)), QUERY_NAMES)
    };
    let secret = basic.or(claimed_id).ok_or_else(|| {
        AppError::Unauthorized(
            "no device credential: set the device identifier (`id`) to the secret issued for \
             this tracker"
                .into(),
        )
    })?;
    let device = authenticate(state, &secret).await?;
    // The device itself says this fix is not one (no satellite lock): nothing to store.
    let Some(fix) = fix else {
        return Ok(StatusCode::OK.into_response());
    };
    record(state, device, "osmand", fix?, names).await?;
    Ok(StatusCode::OK.into_response())
}

/// Reads a fix from query or form parameters.
fn query_fix<'a>(get: &impl Fn(&str) -> Option<&'a str>) -> AppResult<TrackerFix> {
    let mut issues = Vec::new();
    let mut num = |key: &str, value: Option<&str>| -> Option<f64> {
        let v = value?;
        match v.trim().parse::<f64>() {
            Ok(n) if n.is_finite() => Some(n),
            _ => {
                issues.push(Issue::new(key, format!("{v:?} is not a number")));
                None
            }
        }
    };
    let (mut lat, mut lon) = (num("lat", get("lat")), num("lon", get("lon")));
    if let Some(location) = get("location")
        && lat.is_none()
        && lon.is_none()
    {
        let (a, b) = location.split_once(',').unwrap_or((location, ""));
        lat = num("location", Some(a));
        lon = num("location", Some(b));
    }
    let accuracy_m = num("accuracy", get("accuracy"));
    let recorded_at = match get("timestamp") {
        Some(t) => parse_time(t).or_else(|| {
            issues.push(Issue::new(
                "timestamp",
                format!("{t:?} is not Unix seconds or milliseconds, nor an ISO 8601 time"),
            ));
            None
        }),
        // Traccar takes the time of arrival too: the apps always send one, other senders may not.
        None => Some(now_ms()),
    };
    finish_fix(lat, lon, accuracy_m, recorded_at, QUERY_NAMES, issues)
}

/// Reads a fix from Traccar Client's JSON.
pub(crate) fn json_fix(m: &Value) -> AppResult<TrackerFix> {
    let mut issues = Vec::new();
    let location = match m.get("location") {
        Some(l @ Value::Object(_)) => l,
        Some(Value::Array(_)) => {
            return Err(AppError::invalid(
                "location",
                "one location per request: turn off batch upload",
            ));
        }
        _ => return Err(AppError::invalid("location", "required: an object")),
    };
    let coords = location.get("coords");
    let coord = |k: &str| {
        coords
            .and_then(|c| number(c.get(k)))
            .filter(|v| v.is_finite())
    };
    let (lat, lon) = (coord("latitude"), coord("longitude"));
    let recorded_at = match location.get("timestamp") {
        Some(Value::String(s)) => parse_time(s),
        Some(Value::Number(n)) => n.as_i64().map(epoch_ms),
        _ => None,
    };
    if recorded_at.is_none() {
        issues.push(Issue::new(
            JSON_NAMES[3],
            "required: the time of the fix, ISO 8601",
        ));
    }
    finish_fix(lat, lon, coord("accuracy"), recorded_at, JSON_NAMES, issues)
}

fn finish_fix(
    lat: Option<f64>,
    lon: Option<f64>,
    accuracy_m: Option<f64>,
    recorded_at: Option<i64>,
    names: [&str; 4],
    mut issues: Vec<Issue>,
) -> AppResult<TrackerFix> {
    if lat.is_none()
        && !issues
            .iter()
            .any(|i| i.at == names[0] || i.at == "location")
    {
        issues.push(Issue::new(names[0], "required: latitude in degrees"));
    }
    if lon.is_none()
        && !issues
            .iter()
            .any(|i| i.at == names[1] || i.at == "location")
    {
        issues.push(Issue::new(names[1], "required: longitude in degrees"));
    }
    match (lat, lon, recorded_at) {
        (Some(lat), Some(lon), Some(recorded_at_ms)) if issues.is_empty() => Ok(TrackerFix {
            lat,
            lon,
            accuracy_m,
            recorded_at_ms,
        }),
        _ => Err(AppError::from_issues(issues)),
    }
}

/// Unix seconds below 2³¹ (until 2038), milliseconds above, as Traccar reads them.
fn epoch_ms(t: i64) -> i64 {
    if t < i64::from(i32::MAX) {
        t.saturating_mul(1000)
    } else {
        t
    }
}

/// Unix seconds or milliseconds, ISO 8601 (RFC 3339; UTC when it names no offset), or
/// `yyyy-MM-dd HH:mm:ss` in UTC.
fn parse_time(s: &str) -> Option<i64> {
    let s = s.trim();
    if let Ok(t) = s.parse::<i64>() {
        return Some(epoch_ms(t));
    }
    if let Ok(t) = s.parse::<f64>() {
        // Fractional seconds ("1700000000.5"); saturating casts end in the range checks.
        let ms = if t < 2_147_483_647.0 { t * 1000.0 } else { t };
        return t.is_finite().then_some(ms.round() as i64);
    }
    let iso = s.replacen(' ', "T", 1);
    Timestamp::parse_rfc3339(&iso)
        .or_else(|| Timestamp::parse_rfc3339(&format!("{iso}Z")))
        .map(|t| t.0)
}

/// Decodes `application/x-www-form-urlencoded` text (a query string or a form body).
pub(crate) fn parse_form(text: &str) -> Vec<(String, String)> {
    text.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_in_every_form_the_apps_send() {
        assert_eq!(parse_time("1609459200"), Some(1_609_459_200_000));
        assert_eq!(parse_time("1609459200000"), Some(1_609_459_200_000));
        assert_eq!(parse_time("1609459200.5"), Some(1_609_459_200_500));
        assert_eq!(parse_time("2021-01-01T00:00:00Z"), Some(1_609_459_200_000));
        assert_eq!(
            parse_time("2021-01-01T03:00:00.000+03:00"),
            Some(1_609_459_200_000)
        );
        assert_eq!(parse_time("2021-01-01T00:00:00"), Some(1_609_459_200_000));
        assert_eq!(parse_time("2021-01-01 00:00:00"), Some(1_609_459_200_000));
        assert_eq!(parse_time("yesterday"), None);
    }

    #[test]
    fn forms_decode() {
        assert_eq!(
            parse_form("id=vgd_a-b&lat=4.85&timestamp=2021-01-01T00%3A00%3A00Z&x=a+b&bad=%zz&e"),
            vec![
                ("id".to_string(), "vgd_a-b".to_string()),
                ("lat".to_string(), "4.85".to_string()),
                ("timestamp".to_string(), "2021-01-01T00:00:00Z".to_string()),
                ("x".to_string(), "a b".to_string()),
                ("bad".to_string(), "%zz".to_string()),
                ("e".to_string(), String::new()),
            ]
        );
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%4"), "%4");
    }
}
