//! What the server sends.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::client::Topic;
use crate::events::LiveEvent;
use crate::shared::{AlertCounts, Board, Issue};
use crate::stream::StreamMessage;

/// A message from the server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    /// The answer to a good `hello`; stored messages after the client's `last_seq` follow.
    Welcome {
        /// Protocol version ([`VERSION`](crate::VERSION)).
        v: u32,
        /// The person.
        user_id: i64,
        /// Their organisation.
        org_id: i64,
        /// Their roles now.
        roles: Vec<String>,
        /// The person's newest sequence number on the server.
        last_seq: i64,
        /// The server pings this often and closes a connection silent for three times as long.
        heartbeat_secs: u64,
    },
    /// The answer to `ping`.
    Pong {
        /// The ping's `ref`.
        #[serde(rename = "ref")]
        reference: Option<String>,
    },
    /// A request was done: fixes committed (with their counts), or a receipt recorded.
    Ack {
        /// The request's `ref`.
        #[serde(rename = "ref")]
        reference: Option<String>,
        /// Fixes stored (positions only).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        accepted: Option<u64>,
        /// Fixes already stored before (positions only).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        duplicates: Option<u64>,
    },
    /// A request was refused, or could not be read.
    Error {
        /// What kind of refusal.
        code: ErrorCode,
        /// What went wrong, for a person.
        detail: String,
        /// The request's `ref`, when it could be read.
        #[serde(rename = "ref")]
        reference: Option<String>,
        /// Each bad field, as in an HTTP 422 (`invalid` only).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        issues: Vec<Issue>,
    },
    /// A subscription took effect.
    Subscribed {
        /// The topic (aliases answer with their canonical name).
        topic: Topic,
        /// Whose (`null`: every organisation).
        org_id: Option<i64>,
    },
    /// A numbered message of the person's stream.
    Message(StreamMessage),
    /// A live event.
    Event(LiveEvent),
    /// An alert's delivery counts changed (topic `operations`).
    AlertProgress {
        /// The alert.
        alert_id: i64,
        /// Its ledger now.
        counts: AlertCounts,
    },
    /// A roll-call's board changed (topic `operations`).
    RollcallBoard {
        /// The roll-call.
        rollcall_id: i64,
        /// Its board now, as `GET /api/v1/rollcalls/{id}` shows it.
        board: Board,
    },
    /// A chat message was stored.
    ChatAck {
        /// The request's `ref`.
        #[serde(rename = "ref")]
        reference: Option<String>,
        /// The conversation.
        conversation_id: i64,
        /// The message's place in it.
        seq: i64,
        /// The device's id for it.
        client_id: String,
        /// It had been stored before (a resend): `seq` is the original's.
        duplicate: bool,
    },
}

impl ServerMessage {
    /// An `error` answer.
    pub fn error(code: ErrorCode, detail: impl Into<String>, reference: Option<String>) -> Self {
        ServerMessage::Error {
            code,
            detail: detail.into(),
            reference,
            issues: Vec::new(),
        }
    }

    /// The answer to a request that needed only recording (a receipt), when it carried a
    /// `ref`: no `ref`, no answer.
    pub fn ack(reference: Option<String>) -> Option<Self> {
        reference.map(|r| ServerMessage::Ack {
            reference: Some(r),
            accepted: None,
            duplicates: None,
        })
    }

    /// The message as JSON text.
    pub fn to_json(&self) -> String {
        // Every field is a string, number, bool, list or map with string keys (or integer keys,
        // which serde_json writes as strings): serialising cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Why the server refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The token is wrong or expired, or the session has ended (the socket then closes 4001).
    Unauthorized,
    /// The first message was not `hello` (the socket then closes 1002).
    HelloExpected,
    /// The message could not be read, or is of an unknown type; the connection stays open.
    BadMessage,
    /// The content is invalid (`issues` say where).
    Invalid,
    /// The person is in location-less mode: positions are not taken.
    LocationLess,
    /// The person may not do this.
    Forbidden,
    /// No such thing, or not the person's.
    NotFound,
    /// The conversation takes no more messages.
    Closed,
    /// Too many requests of this kind for now; try again later.
    RateLimited,
    /// The server failed; send it again.
    ServerError,
}
