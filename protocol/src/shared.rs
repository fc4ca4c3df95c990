//! Values both directions carry: timestamps, fixes, validation issues, delivery counts and the
//! roll-call board (the REST API returns the same types, so the two cannot drift apart).

use std::borrow::Cow;
use std::collections::BTreeMap;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch that reads and writes as RFC 3339 (UTC, millisecond
/// precision) on the wire; stored as a 64-bit integer on both databases.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "sqlx", derive(sqlx::Type), sqlx(transparent))]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema), schema(value_type = String, format = DateTime))]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// The timestamp as RFC 3339 (UTC, millisecond precision).
    pub fn to_rfc3339(self) -> String {
        let nanos = i128::from(self.0) * 1_000_000;
        time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_default()
    }

    /// Parses RFC 3339 with any offset.
    pub fn parse_rfc3339(s: &str) -> Option<Self> {
        let t =
            time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()?;
        i64::try_from(t.unix_timestamp_nanos() / 1_000_000)
            .ok()
            .map(Timestamp)
    }

    /// Now, by this machine's clock.
    pub fn now() -> Self {
        let now = time::OffsetDateTime::now_utc();
        Timestamp(i64::try_from(now.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX))
    }
}

impl Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_rfc3339())
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = Cow::<str>::deserialize(d)?;
        Timestamp::parse_rfc3339(&s)
            .ok_or_else(|| serde::de::Error::custom(format!("{s:?} is not an RFC 3339 timestamp")))
    }
}

impl JsonSchema for Timestamp {
    fn schema_name() -> Cow<'static, str> {
        "Timestamp".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({"type": "string", "format": "date-time"})
    }
}

/// One fix as a phone sends it (over the socket, or `POST /api/v1/positions`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Fix {
    /// Latitude, degrees.
    pub lat: f64,
    /// Longitude, degrees.
    pub lon: f64,
    /// Accuracy radius in metres (the device's 68 % circle).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accuracy_m: Option<f64>,
    /// When the device took the fix (RFC 3339).
    pub recorded_at: Timestamp,
}

/// One specific thing wrong with a request: a field, a row of an upload, a coordinate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct Issue {
    /// Where: a JSON pointer (`fixes/0/lat`), a field name or `line 12`.
    pub at: String,
    /// What is wrong there.
    pub reason: String,
}

impl Issue {
    /// An issue at `at`.
    pub fn new(at: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            at: at.into(),
            reason: reason.into(),
        }
    }
}

/// An alert's delivery ledger counted by state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct AlertCounts {
    /// Not yet handed to any channel.
    pub queued: i64,
    /// Handed to a channel (socket, push service or SMS gateway), not yet confirmed.
    pub sent: i64,
    /// A device confirmed receipt.
    pub delivered: i64,
    /// Opened on a device.
    pub read: i64,
    /// The person acknowledged it.
    pub acknowledged: i64,
    /// SMS messages sent for this alert.
    pub sms_messages: i64,
    /// SMS segments those messages took (what the gateway bills).
    pub sms_segments: i64,
}

/// Counts by status (`safe`, `need_help`, `no_answer`, `unreachable`).
pub type Counts = BTreeMap<String, i64>;

/// Where a roll-call stands: the same on the live board and in `GET /api/v1/rollcalls/{id}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct Board {
    /// People and dependants asked.
    pub total: i64,
    /// Answered safe (or accounted for as safe).
    pub safe: i64,
    /// Need help.
    pub need_help: i64,
    /// Received it and have not answered.
    pub no_answer: i64,
    /// Have not answered, and no device is known to have received it.
    pub unreachable: i64,
    /// The same counts per organisation id.
    #[cfg_attr(feature = "utoipa", schema(value_type = Object))]
    #[serde(deserialize_with = "int_keys")]
    pub by_organisation: BTreeMap<i64, Counts>,
    /// The same counts per area the people are in now (from their last known positions);
    /// people without a known position are under `null`.
    pub by_area: Vec<AreaCounts>,
    /// When this was counted.
    pub counted_at: Option<Timestamp>,
}

/// Reads a map whose keys are integers written as strings. serde_json does this itself, but not
/// inside an internally tagged message, which is buffered with its keys as plain strings.
fn int_keys<'de, D: serde::Deserializer<'de>>(d: D) -> Result<BTreeMap<i64, Counts>, D::Error> {
    BTreeMap::<String, Counts>::deserialize(d)?
        .into_iter()
        .map(|(k, v)| {
            k.parse()
                .map(|k| (k, v))
                .map_err(|_| serde::de::Error::custom(format!("{k:?} is not an organisation id")))
        })
        .collect()
}

/// Counts of one area on a roll-call board.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct AreaCounts {
    /// The area (`null`: no known position).
    pub area_id: Option<i64>,
    /// Its name.
    pub name: String,
    /// Counts by status.
    #[cfg_attr(feature = "utoipa", schema(value_type = Object))]
    pub counts: Counts,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timestamp_reads_any_offset_and_writes_utc_milliseconds() {
        let t: Timestamp = serde_json::from_str(r#""2026-11-22T16:40:02.118+03:00""#)
            .expect("RFC 3339 with an offset");
        assert_eq!(
            serde_json::to_string(&t).expect("serialises"),
            r#""2026-11-22T13:40:02.118Z""#
        );
        assert!(serde_json::from_str::<Timestamp>(r#""yesterday""#).is_err());
    }
}

/// The area an alert was sent to, as a phone needs it to decide by itself whether it is inside:
/// a GeoJSON geometry (Polygon, MultiPolygon, or a Point with `radius_m`: a circle).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct AlertArea {
    /// The GeoJSON geometry.
    #[cfg_attr(feature = "utoipa", schema(value_type = Object))]
    pub geometry: serde_json::Value,
    /// The circle's radius in metres, when `geometry` is a Point.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub radius_m: Option<f64>,
}

/// One of a person's active alerts with where it applies (`GET /api/v1/me/alert-areas`): what a
/// phone in location-less mode checks its own fix against, so that no position leaves it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct AlertAreas {
    /// The alert.
    pub alert_id: i64,
    /// When it stops applying.
    pub expires_at: Timestamp,
    /// Why the person received it (`inside_area`, `following_area`, `organisation`…).
    pub reasons: Vec<String>,
    /// The areas it was sent to; empty when it was not sent to a place (an organisation, a
    /// role, everyone): then it applies wherever the person is.
    pub areas: Vec<AlertArea>,
}
