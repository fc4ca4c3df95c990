//! A person's stream: messages stored for them with a per-person sequence number (1, 2, 3…
//! without gaps), replayed after `last_seq` on every reconnect.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::shared::Timestamp;

/// One numbered message (`{"type": "message", …}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StreamMessage {
    /// Per-person sequence number.
    pub seq: i64,
    /// What it is.
    pub kind: MessageKind,
    /// When it was stored.
    pub at: Timestamp,
    /// The message itself; its shape depends on `kind` (docs/PROTOCOL.md lists them).
    pub payload: serde_json::Value,
}

/// The kinds of numbered message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum MessageKind {
    /// The person's position crossed into an area.
    AreaEntered,
    /// The person's position crossed out of an area.
    AreaLeft,
    /// An alert that reaches the person.
    Alert,
    /// An alert the person received was cancelled.
    AlertCancelled,
    /// A roll-call asks the person.
    Rollcall,
    /// A reminder of a roll-call the person has not answered.
    RollcallReminder,
    /// A roll-call closed.
    RollcallClosed,
    /// An SOS was raised (to operators and oversight).
    Sos,
    /// An SOS case changed (to operators, oversight and the person).
    SosUpdate,
    /// A chat message in a conversation the person takes part in.
    Chat,
    /// The person was listed as a member of a conversation.
    ChatAdded,
    /// The person was taken off a conversation's members.
    ChatRemoved,
    /// A conversation the person takes part in was closed.
    ChatClosed,
    /// A kind this version of the protocol does not know (from a newer server): skip it, but
    /// store its `seq` so the stream resumes after it.
    #[serde(other)]
    Unknown,
}

impl MessageKind {
    /// Every kind a server sends.
    pub const ALL: [MessageKind; 13] = [
        MessageKind::AreaEntered,
        MessageKind::AreaLeft,
        MessageKind::Alert,
        MessageKind::AlertCancelled,
        MessageKind::Rollcall,
        MessageKind::RollcallReminder,
        MessageKind::RollcallClosed,
        MessageKind::Sos,
        MessageKind::SosUpdate,
        MessageKind::Chat,
        MessageKind::ChatAdded,
        MessageKind::ChatRemoved,
        MessageKind::ChatClosed,
    ];

    /// The name on the wire and in storage.
    pub fn as_str(self) -> &'static str {
        match self {
            MessageKind::AreaEntered => "area_entered",
            MessageKind::AreaLeft => "area_left",
            MessageKind::Alert => "alert",
            MessageKind::AlertCancelled => "alert_cancelled",
            MessageKind::Rollcall => "rollcall",
            MessageKind::RollcallReminder => "rollcall_reminder",
            MessageKind::RollcallClosed => "rollcall_closed",
            MessageKind::Sos => "sos",
            MessageKind::SosUpdate => "sos_update",
            MessageKind::Chat => "chat",
            MessageKind::ChatAdded => "chat_added",
            MessageKind::ChatRemoved => "chat_removed",
            MessageKind::ChatClosed => "chat_closed",
            MessageKind::Unknown => "unknown",
        }
    }

    /// The kind named `name` ([`MessageKind::Unknown`] for any other name).
    pub fn from_name(name: &str) -> MessageKind {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == name)
            .unwrap_or(MessageKind::Unknown)
    }
}

/// Writes a [`StreamMessage`] as [`ServerMessage::Message`](crate::ServerMessage::Message)
/// from a payload that is already JSON text. The server keeps payloads as stored text and
/// splices them in: an alert to 50,000 people must not be parsed 50,000 times. A test checks
/// that the result reads back as the typed message.
pub fn write_message(seq: i64, kind: &str, at: Timestamp, payload_json: &str) -> String {
    let kind = serde_json::Value::from(kind);
    let at = serde_json::Value::from(at.to_rfc3339());
    let payload = if payload_json.is_empty() {
        "null"
    } else {
        payload_json
    };
    format!(r#"{{"type":"message","seq":{seq},"kind":{kind},"at":{at},"payload":{payload}}}"#)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ServerMessage;

    #[test]
    fn the_fast_writer_produces_the_typed_message() {
        let text = write_message(
            45,
            "area_entered",
            Timestamp(1_795_354_802_118),
            r#"{"area_id": 12, "name": "Juba \"duty\" station"}"#,
        );
        let msg: ServerMessage = serde_json::from_str(&text).expect("typed message");
        let ServerMessage::Message(m) = msg else {
            panic!("not a message: {text}");
        };
        assert_eq!(m.seq, 45);
        assert_eq!(m.kind, MessageKind::AreaEntered);
        assert_eq!(m.at, Timestamp(1_795_354_802_118));
        assert_eq!(m.payload["name"], "Juba \"duty\" station");
    }

    #[test]
    fn every_kind_reads_back_by_its_name_and_a_new_one_is_unknown() {
        for kind in MessageKind::ALL {
            let json = serde_json::to_string(&kind).expect("serialises");
            assert_eq!(json, format!("\"{}\"", kind.as_str()));
            assert_eq!(MessageKind::from_name(kind.as_str()), kind);
        }
        let later: MessageKind = serde_json::from_str(r#""incident""#).expect("tolerated");
        assert_eq!(later, MessageKind::Unknown);
    }
}
