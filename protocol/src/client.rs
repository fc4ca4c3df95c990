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

    #[test]
    fn unknown_fields_are_refused() {
        let err = serde_json::from_str::<ClientMessage>(r#"{"type": "ping", "rfe": "x"}"#);
        assert!(err.is_err());
    }
}
