//! Live events: not stored, not numbered. After a reconnect a client reloads the picture over
//! HTTP instead of resuming them.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::shared::Timestamp;

/// A live event (`{"type": "event", "event": …}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum LiveEvent {
    /// Operators following `positions`: a person's or asset's newest position.
    Position(PositionEvent),
    /// Operators following `positions`: a person or asset crossed an area's border.
    Geofence(GeofenceEvent),
    /// A participant's chat receipts moved.
    ChatReceipt {
        /// The conversation.
        conversation_id: i64,
        /// Whose receipts.
        user_id: i64,
        /// Everything up to here reached one of their devices.
        delivered_seq: i64,
        /// Everything up to here was read.
        read_seq: i64,
    },
    /// Someone is typing in a conversation.
    Typing {
        /// The conversation.
        conversation_id: i64,
        /// Who.
        user_id: i64,
        /// Their name, to show.
        name: String,
    },
}

/// What a position or geofence event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SubjectKind {
    /// A person.
    User,
    /// A vehicle, satellite phone, radio…
    Asset,
}

/// A subject's newest position.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PositionEvent {
    /// Person or asset.
    pub subject: SubjectKind,
    /// Its id.
    pub id: i64,
    /// Its organisation.
    pub org_id: i64,
    /// Latitude, degrees.
    pub lat: f64,
    /// Longitude, degrees.
    pub lon: f64,
    /// Accuracy radius, metres.
    pub accuracy_m: Option<f64>,
    /// When the fix was taken.
    pub recorded_at: Timestamp,
}

/// Entered or left.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Transition {
    /// Crossed into the area.
    Entered,
    /// Crossed out of it.
    Left,
}

/// A border crossing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct GeofenceEvent {
    /// Entered or left.
    pub transition: Transition,
    /// Person or asset.
    pub subject: SubjectKind,
    /// Its id.
    pub id: i64,
    /// Its organisation.
    pub org_id: i64,
    /// The area.
    pub area_id: i64,
    /// Its name.
    pub area_name: String,
    /// When (the fix's time).
    pub at: Timestamp,
}
