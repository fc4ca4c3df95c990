//! The records and enums that cross the boundary, and their conversions from the core's types.

use std::collections::BTreeMap;

use vigil_protocol::{AlertReceiptState, Fix, StreamMessage, Timestamp};
use vigil_sdk::{Placement, WatchRegion};

/// A position fix from the phone's location service.
#[derive(Debug, Clone, Copy, uniffi::Record)]
pub struct GeoFix {
    /// Latitude, degrees.
    pub lat: f64,
    /// Longitude, degrees.
    pub lon: f64,
    /// Accuracy radius in metres, if the OS gives one.
    pub accuracy_m: Option<f64>,
    /// When the fix was taken, Unix milliseconds.
    pub recorded_at_ms: i64,
}

impl From<GeoFix> for Fix {
    fn from(f: GeoFix) -> Self {
        Fix {
            lat: f.lat,
            lon: f.lon,
            accuracy_m: f.accuracy_m,
            recorded_at: Timestamp(f.recorded_at_ms),
        }
    }
}

/// How far the person got with an alert (only moves forward).
#[derive(Debug, Clone, Copy, uniffi::Enum)]
pub enum ReceiptState {
    /// The phone has it.
    Delivered,
    /// It was shown.
    Read,
    /// The person confirmed it.
    Acknowledged,
}

impl From<ReceiptState> for AlertReceiptState {
    fn from(s: ReceiptState) -> Self {
        match s {
            ReceiptState::Delivered => AlertReceiptState::Delivered,
            ReceiptState::Read => AlertReceiptState::Read,
            ReceiptState::Acknowledged => AlertReceiptState::Acknowledged,
        }
    }
}

/// A roll-call answer.
#[derive(Debug, Clone, Copy, uniffi::Enum)]
pub enum RollcallAnswer {
    /// Safe.
    Safe,
    /// Needs help.
    NeedHelp,
}

impl RollcallAnswer {
    /// The name the server takes.
    pub fn as_str(self) -> &'static str {
        match self {
            RollcallAnswer::Safe => "safe",
            RollcallAnswer::NeedHelp => "need_help",
        }
    }
}

/// Where the phone stands with an alert, decided on the phone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum AlertPlacement {
    /// Inside the alert's place: "you are inside this alert's area".
    Inside,
    /// The alert concerns the region the person follows, not where they are.
    InRegion,
    /// The alert was not sent to a place: it applies wherever the person is.
    Everywhere,
}

/// One alert and where the phone stands with it.
#[derive(Debug, Clone, Copy, uniffi::Record)]
pub struct PlacementOf {
    /// The alert.
    pub alert_id: i64,
    /// Where the phone stands.
    pub placement: AlertPlacement,
}

/// The core's placements as a list ordered by alert.
pub(crate) fn placements(map: BTreeMap<i64, Placement>) -> Vec<PlacementOf> {
    map.into_iter()
        .map(|(alert_id, p)| PlacementOf {
            alert_id,
            placement: p.into(),
        })
        .collect()
}

/// The operating system whose geofence limit applies.
#[derive(Debug, Clone, Copy, uniffi::Enum)]
pub enum Platform {
    /// iOS: 18 monitored regions.
    Ios,
    /// Android: 90 geofences.
    Android,
}

/// A circle for the operating system to watch.
#[derive(Debug, Clone, Copy, uniffi::Record)]
pub struct WatchCircle {
    /// The alert whose place it bounds.
    pub alert_id: i64,
    /// Centre latitude.
    pub lat: f64,
    /// Centre longitude.
    pub lon: f64,
    /// Radius, metres.
    pub radius_m: f64,
    /// Metres from the last position to the circle's edge (0 inside).
    pub distance_m: f64,
}

impl From<WatchRegion> for WatchCircle {
    fn from(r: WatchRegion) -> Self {
        WatchCircle {
            alert_id: r.alert_id,
            lat: r.lat,
            lon: r.lon,
            radius_m: r.radius_m,
            distance_m: r.distance_m,
        }
    }
}

/// One message of the person's stream.
#[derive(Debug, Clone, uniffi::Record)]
pub struct StreamItem {
    /// Its number in the person's stream (1, 2, 3… without gaps).
    pub seq: i64,
    /// What it is (`alert`, `alert_cancelled`, `rollcall`, `sos_update`, `chat`…).
    pub kind: String,
    /// When the server stored it, Unix milliseconds.
    pub at_ms: i64,
    /// The message as the server sent it (docs/PROTOCOL.md), text untouched.
    pub payload_json: String,
}

impl From<StreamMessage> for StreamItem {
    fn from(m: StreamMessage) -> Self {
        StreamItem {
            seq: m.seq,
            kind: m.kind.as_str().to_string(),
            at_ms: m.at.0,
            payload_json: m.payload.to_string(),
        }
    }
}

/// What the client tells the app.
#[derive(Debug, Clone, uniffi::Enum)]
pub enum ClientEvent {
    /// Connected, and the stream replayed.
    Connected,
    /// The connection dropped; the client reconnects by itself.
    Disconnected {
        /// Why, for a log line.
        reason: String,
    },
    /// The session ended: sign in again (the outbox is kept).
    SignedOut,
    /// The next message of the person's stream.
    Message {
        /// The message.
        message: StreamItem,
    },
    /// The server refused an outbox item for what it is; it was dropped.
    Refused {
        /// The server's reason.
        reason: String,
    },
    /// The outbox was full of fixes; this many of the oldest were dropped.
    FixesDropped {
        /// How many.
        count: u64,
    },
    /// Where the phone stands with an alert changed (`None`: it no longer applies).
    Placement {
        /// The alert.
        alert_id: i64,
        /// Where the phone stands now.
        placement: Option<AlertPlacement>,
    },
    /// The listener fell behind and missed this many events: read the stream again with
    /// `stored_messages` from the last `seq` handled.
    Lagged {
        /// How many.
        missed: u64,
    },
}

/// Outbox contents.
#[derive(Debug, Clone, Copy, uniffi::Record)]
pub struct Pending {
    /// Fixes waiting.
    pub fixes: i64,
    /// Other items waiting (receipts, chat, answers).
    pub others: i64,
}

/// An SOS case as the server stored it.
#[derive(Debug, Clone, uniffi::Record)]
pub struct SosCase {
    /// The case.
    pub id: i64,
    /// Its chat with the operations room.
    pub conversation_id: Option<i64>,
    /// `open`, `claimed`, `closed`.
    pub status: String,
    /// The whole case as JSON (docs/PROTOCOL.md).
    pub json: String,
}

impl From<serde_json::Value> for SosCase {
    fn from(v: serde_json::Value) -> Self {
        SosCase {
            id: v["id"].as_i64().unwrap_or_default(),
            conversation_id: v["conversation_id"].as_i64(),
            status: v["status"].as_str().unwrap_or_default().to_string(),
            json: v.to_string(),
        }
    }
}
