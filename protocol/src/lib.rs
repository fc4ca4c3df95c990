//! Vigil's WebSocket protocol as types: every message a client sends ([`ClientMessage`]) and
//! every message the server sends ([`ServerMessage`]), shared by the server, the load generator
//! and the phone SDK so that none of them writes a message by hand.
//!
//! Layout: [`client`] and [`server`] hold the two directions; [`stream`] the numbered,
//! stored messages to a person (and the fast writer the server uses for them); [`events`] the
//! live, unnumbered events; [`shared`] the values both directions carry (fixes, timestamps,
//! receipt states, counts). [`json_schema`] is the JSON Schema the server publishes at
//! `GET /api/v1/ws/schema.json`. The prose contract is `docs/PROTOCOL.md`; a test in this crate
//! fails when the two disagree.

pub mod client;
pub mod events;
pub mod server;
pub mod shared;
pub mod stream;

pub use client::{AlertReceiptState, ChatReceiptState, ClientMessage, PositionMessage, Topic};
pub use events::{GeofenceEvent, LiveEvent, PositionEvent, SubjectKind, Transition};
pub use server::{ErrorCode, ServerMessage};
pub use shared::{
    AlertArea, AlertAreas, AlertCounts, AreaCounts, Board, Counts, Fix, Issue, Timestamp,
};
pub use stream::{MessageKind, StreamMessage};

/// Version of the message format, sent in `welcome`.
pub const VERSION: u32 = 1;

/// Largest text message a client may send; a larger one closes the socket with
/// [`close::MESSAGE_TOO_BIG`].
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;

/// How long a new connection has to send `hello`.
pub const HELLO_DEADLINE_SECS: u64 = 10;

/// How far in the future a fix's `recorded_at` may lie (device clocks drift), on every path that
/// takes positions: the socket, `POST /positions` and the tracker ingest routes.
pub const FUTURE_TOLERANCE_MS: i64 = 5 * 60 * 1000;

/// WebSocket close codes the server uses.
pub mod close {
    /// Server shutting down, or the connection was silent too long: reconnect with backoff.
    pub const GOING_AWAY: u16 = 1001;
    /// Protocol error before `hello`: fix the client.
    pub const PROTOCOL: u16 = 1002;
    /// A message over [`MAX_MESSAGE_BYTES`](crate::MAX_MESSAGE_BYTES).
    pub const MESSAGE_TOO_BIG: u16 = 1009;
    /// Server error during `hello` or a replay: reconnect with backoff.
    pub const SERVER_ERROR: u16 = 1011;
    /// Unauthorized, no `hello` in time, the session ended, or no longer allowed.
    pub const UNAUTHORIZED: u16 = 4001;
    /// Too slow: the connection's queue overflowed; reconnect and resume from the last `seq`.
    pub const TOO_SLOW: u16 = 4008;
}

/// The JSON Schema (draft 2020-12) of both directions: `anyOf` a client or a server message,
/// every type under `$defs`.
pub fn json_schema() -> serde_json::Value {
    let mut generator = schemars::generate::SchemaSettings::draft2020_12().into_generator();
    let client = generator.subschema_for::<ClientMessage>();
    let server = generator.subschema_for::<ServerMessage>();
    serde_json::json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "Vigil WebSocket protocol",
        "description": "Every message on GET /api/v1/ws: ClientMessage from phones and consoles, ServerMessage from the server. See docs/PROTOCOL.md.",
        "version": VERSION,
        "anyOf": [client, server],
        "$defs": generator.definitions(),
    })
}

/// The `type` values of every message in both directions, read from the JSON Schema (so that
/// the list can never drift from the types).
pub fn message_types() -> (Vec<String>, Vec<String>) {
    let schema = json_schema();
    let defs = &schema["$defs"];
    (
        tag_values(&defs["ClientMessage"], "type"),
        tag_values(&defs["ServerMessage"], "type"),
    )
}

/// The `event` values of live events, read from the JSON Schema.
pub fn event_names() -> Vec<String> {
    tag_values(&json_schema()["$defs"]["LiveEvent"], "event")
}

/// The `const` of property `tag` in each `oneOf` branch of an internally tagged enum's schema.
fn tag_values(schema: &serde_json::Value, tag: &str) -> Vec<String> {
    schema["oneOf"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|branch| branch["properties"][tag]["const"].as_str())
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schema_lists_every_message_type_of_both_directions() {
        let (client, server) = message_types();
        assert!(client.contains(&"hello".to_string()), "{client:?}");
        assert!(client.contains(&"chat_send".to_string()), "{client:?}");
        assert!(server.contains(&"welcome".to_string()), "{server:?}");
        assert!(server.contains(&"rollcall_board".to_string()), "{server:?}");
        assert_eq!(
            event_names(),
            ["position", "geofence", "chat_receipt", "typing"]
        );
    }
}
