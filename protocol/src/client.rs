//! What phones and consoles send.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::shared::Fix;

/// A message from a client. The first one on a connection must be [`ClientMessage::Hello`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientMessage {
    /// First message: credentials (unless sent as an `Authorization` header) and the highest
    /// sequence number the client has stored (0 on first use).
    Hello {
        /// The access token.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token: Option<String>,
        /// The highest `seq` the client has handled.
        #[serde(default)]
        last_seq: i64,
    },
    /// Application-level ping; answered with `pong`.
    Ping {
        /// Echoed in the answer.
        #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
        reference: Option<String>,
    },
    /// Fixes from the phone; answered with `ack` once committed, or `error`.
    Position {
        /// Echoed in the answer.
        #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
        reference: Option<String>,
        /// The fixes, in any order.
        fixes: Vec<Fix>,
    },
    /// Operators: follow a live topic of an organisation (`org_id` omitted: their own, or every
    /// organisation for oversight).
    Subscribe {
        /// What to follow.
        topic: Topic,
        /// Whose.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        org_id: Option<i64>,
    },
    /// The device received, showed, or the person acknowledged an alert.
    Receipt {
        /// Echoed in the answer (no answer without it).
        #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
        reference: Option<String>,
        /// The alert.
        alert_id: i64,
        /// How far the person got.
        state: AlertReceiptState,
    },
    /// A chat message; answered by `chat_ack` once stored.
    ChatSend {
        /// Echoed in the answer.
        #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
        reference: Option<String>,
        /// The conversation.
        conversation_id: i64,
        /// The device's id for the message (1 to 64 of `A-Z a-z 0-9 _ -`), unique per sender
        /// within the conversation: a resend with the same id is stored once.
        client_id: String,
        /// 1 to 4,000 characters.
        body: String,
    },
    /// A conversation's messages up to `seq` reached this device, or were read.
    ChatReceipt {
        /// Echoed in the answer (no answer without it).
        #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
        reference: Option<String>,
        /// The conversation.
        conversation_id: i64,
        /// Everything up to this conversation sequence number.
        seq: i64,
        /// Delivered or read.
        state: ChatReceiptState,
    },
    /// The person is typing in a conversation (a live hint, never stored).
    Typing {
        /// The conversation.
        conversation_id: i64,
    },
}

/// The `position` message read on its own, for [`ClientMessage::parse`]: the message phones send
/// most, many thousands a second. serde reads an internally tagged enum such as
/// [`ClientMessage`] by first copying the whole object into a tree of its own (it cannot know
/// the variant before it has found `type`), then reading the variant from that copy; a plain
/// struct is read straight from the text. It accepts exactly what `ClientMessage::Position`
/// accepts or less (unknown fields refused, the same field types); whatever it refuses is read
/// again as a `ClientMessage`, which then decides.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PositionMessage {
    #[serde(rename = "type")]
    kind: PositionTag,
    /// Echoed in the answer.
    #[serde(rename = "ref", default)]
    pub reference: Option<String>,
    /// The fixes, in any order.
    pub fixes: Vec<Fix>,
}

/// The one value of `type` that [`PositionMessage`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum PositionTag {
    Position,
}

impl ClientMessage {
    /// Reads a client message from JSON text: the same result, value or error, as
    /// `serde_json::from_str::<ClientMessage>`, faster for `position` (see [`PositionMessage`]).
    pub fn parse(text: &str) -> serde_json::Result<ClientMessage> {
        match serde_json::from_str::<PositionMessage>(text) {
            Ok(PositionMessage {
                reference, fixes, ..
            }) => Ok(ClientMessage::Position { reference, fixes }),
            // Another type, or a position the fast path does not take: the enum decides, and
            // its error is the one the client sees.
            Err(_) => serde_json::from_str(text),
        }
    }
}

/// A live topic an operator's console follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Topic {
    /// Live positions and geofence crossings.
    Positions,
    /// Alert delivery counts and roll-call boards (also accepted as `alerts` or `rollcalls`).
    #[serde(alias = "alerts", alias = "rollcalls")]
    Operations,
}

impl Topic {
    /// Every topic.
    pub const ALL: [Topic; 2] = [Topic::Positions, Topic::Operations];

    /// The name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Topic::Positions => "positions",
            Topic::Operations => "operations",
        }
    }
}

/// How far a person got with an alert (the ledger only moves forward).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum AlertReceiptState {
    /// The device has it.
    Delivered,
    /// It was shown to the person.
    Read,
    /// The person confirmed it.
    Acknowledged,
}

/// How far a person got with a conversation's messages.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ChatReceiptState {
    /// A device of theirs received them.
    Delivered,
    /// They read them (implies delivered).
    Read,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_old_topic_names_still_subscribe_to_operations() {
        for name in ["operations", "alerts", "rollcalls"] {
            let text = format!(r#"{{"type": "subscribe", "topic": "{name}"}}"#);
            let msg: ClientMessage = serde_json::from_str(&text).expect("a subscribe");
            assert_eq!(
                msg,
                ClientMessage::Subscribe {
                    topic: Topic::Operations,
                    org_id: None
                }
            );
        }
    }

    #[test]
    fn a_receipt_cannot_claim_the_server_side_state_sent() {
        let err = serde_json::from_str::<ClientMessage>(
            r#"{"type": "receipt", "alert_id": 3, "state": "sent"}"#,
        );
        assert!(err.is_err());
    }

    /// Every input, valid or not, reads the same through [`ClientMessage::parse`] as through
    /// the enum alone; and whatever the fast path takes, the enum takes with the same value.
    #[test]
    fn the_position_fast_path_reads_what_the_enum_reads() {
        let fix = r#"{"lat": 4.81, "lon": 31.5, "accuracy_m": 12.0, "recorded_at": "2026-12-03T10:00:00Z"}"#;
        let inputs: Vec<String> = vec![
            format!(r#"{{"type":"position","ref":"7","fixes":[{fix}]}}"#),
            format!(r#"{{"fixes":[{fix}],"ref":"7","type":"position"}}"#),
            format!(r#"{{"ref":"7","type":"position","fixes":[{fix},{fix}]}}"#),
            format!(r#"{{"type":"position","fixes":[{fix}]}}"#),
            format!(r#"{{"type":"position","ref":null,"fixes":[{fix}]}}"#),
            format!(r#"{{"type":"position","ref":"a\"b\u00e9\n","fixes":[{fix}]}}"#),
            r#"{"type":"position","ref":"1","fixes":[{"lat":4,"lon":-31,"recorded_at":"2026-12-03T10:00:00.123+02:00"}]}"#.into(),
            r#"{"type":"position","ref":"1","fixes":[{"lat":4e0,"lon":1E2,"accuracy_m":null,"recorded_at":"2026-12-03T10:00:00Z"}]}"#.into(),
            r#"{"type":"position","ref":"1","fixes":[]}"#.into(),
            r#"  {"type" : "position" , "fixes" : [ ] }  "#.into(),
            // Refused by both, for the same reason.
            format!(r#"{{"type":"position","ref":"7","fixes":[{fix}],"extra":1}}"#),
            format!(r#"{{"type":"position","ref":7,"fixes":[{fix}]}}"#),
            format!(r#"{{"type":"position","ref":"7","ref":"8","fixes":[{fix}]}}"#),
            format!(r#"{{"type":"position","type":"position","fixes":[{fix}]}}"#),
            format!(r#"{{"type":"position","fixes":[{fix}],"fixes":[{fix}]}}"#),
            format!(r#"{{"type":"Position","fixes":[{fix}]}}"#),
            format!(r#"{{"type":"position","fixes":[{fix}]}} x"#),
            format!(r#"{{"fixes":[{fix}]}}"#),
            r#"{"type":"position","ref":"1"}"#.into(),
            r#"{"type":"position","fixes":null}"#.into(),
            r#"{"type":"position","fixes":[{"lat":"4","lon":1,"recorded_at":"2026-12-03T10:00:00Z"}]}"#.into(),
            r#"{"type":"position","fixes":[{"lat":4,"lon":1,"recorded_at":"yesterday"}]}"#.into(),
            r#"{"type":"position","fixes":[{"lat":4,"lon":1,"recorded_at":1764756000000}]}"#.into(),
            r#"{"type":"position","fixes":[{"lat":4,"lon":1,"alt":3,"recorded_at":"2026-12-03T10:00:00Z"}]}"#.into(),
            r#"{"type":"position","fixes":[{"lat":4,"recorded_at":"2026-12-03T10:00:00Z"}]}"#.into(),
            r#"["position"]"#.into(),
            r#"{"type":"position","#.into(),
            "".into(),
            "null".into(),
            // Other messages still go through the enum.
            r#"{"type":"ping","ref":"p"}"#.into(),
            r#"{"type":"hello","token":"t","last_seq":5}"#.into(),
            r#"{"type":"subscribe","topic":"alerts"}"#.into(),
            r#"{"type":"typing","conversation_id":3}"#.into(),
            r#"{"type":"ping","rfe":"x"}"#.into(),
            r#"{"type":"nope"}"#.into(),
        ];
        let mut fast = 0;
        for text in &inputs {
            let by_enum = serde_json::from_str::<ClientMessage>(text);
            let parsed = ClientMessage::parse(text);
            match (&by_enum, &parsed) {
                (Ok(a), Ok(b)) => assert_eq!(a, b, "{text}"),
                (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string(), "{text}"),
                _ => panic!("{text}: the enum read {by_enum:?}, parse read {parsed:?}"),
            }
            if let Ok(p) = serde_json::from_str::<PositionMessage>(text) {
                fast += 1;
                let expected = ClientMessage::Position {
                    reference: p.reference,
                    fixes: p.fixes,
                };
                assert_eq!(by_enum.ok(), Some(expected), "{text}");
            }
        }
        assert_eq!(fast, 10, "the valid positions above take the fast path");
    }

    #[test]
    fn unknown_fields_are_refused() {
        let err = serde_json::from_str::<ClientMessage>(r#"{"type": "ping", "rfe": "x"}"#);
        assert!(err.is_err());
    }
}
