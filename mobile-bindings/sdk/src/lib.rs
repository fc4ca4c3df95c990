//! Vigil's phone-side client core (`vigil-sdk`): what an Android and an iOS app share so that
//! every phone behaves the same in the field.
//!
//! - [`Client`]: sign-in with refresh, the WebSocket with `hello`, resume from the last stored
//!   sequence number, heartbeats and reconnection with backoff and jitter; the person's stream
//!   handed to the app once and in order, across restarts.
//! - [`store`]: the phone's SQLite storage, with the offline outbox and its policy.
//! - [`geofence`]: private on-device geofencing for location-less mode.
//!
//! No FFI types here: the UniFFI layer wraps this crate.

pub mod address;
mod client;
mod clock;
pub mod geofence;
mod on_device;
pub mod store;

pub use address::{AddressError, Problem, ProblemIssue, server_base_url};
pub use client::Client;
pub use geofence::{AlertPlaces, Placement, WatchRegion};
pub use vigil_protocol::{AlertReceiptState, Fix, StreamMessage, Timestamp};

/// What the client tells the app.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The connection is up and the stream has been replayed.
    Connected,
    /// The connection dropped; the client reconnects by itself.
    Disconnected {
        /// Why, for a log line.
        reason: String,
    },
    /// The session ended (revoked, expired): the person must sign in again. The outbox is kept.
    SignedOut,
    /// The next message of the person's stream (an alert, a roll-call, a chat message…).
    Message(StreamMessage),
    /// The server refused an outbox item for what it is; it was dropped.
    Refused {
        /// The server's reason.
        reason: String,
    },
    /// The outbox was full of fixes: this many of the oldest were dropped.
    FixesDropped {
        /// How many.
        count: u64,
    },
    /// Where the phone stands with an alert changed, decided on the phone (`None`: the alert
    /// no longer applies — cancelled or expired).
    Placement {
        /// The alert.
        alert_id: i64,
        /// Inside its place, only in the region, or everywhere.
        placement: Option<Placement>,
    },
}

/// Where the session's refresh token lives between app starts: the app's Keychain (iOS) or
/// Keystore-backed storage (Android). Without one, the token is kept in the SDK's SQLite file.
pub trait TokenKeeper: Send + Sync + std::fmt::Debug {
    /// The kept refresh token, if any.
    fn load(&self) -> Result<Option<String>, String>;
    /// Keeps `token`, or forgets the kept one (`None`: signed out).
    fn save(&self, token: Option<&str>) -> Result<(), String>;
}

/// Every error the SDK gives the app.
#[derive(Debug, thiserror::Error)]
pub enum SdkError {
    /// The server address is not acceptable.
    #[error(transparent)]
    Address(#[from] AddressError),
    /// The phone's storage failed (or the outbox is full).
    #[error(transparent)]
    Store(#[from] store::StoreError),
    /// The network, TLS or the connection failed; the client retries by itself.
    #[error("network: {0}")]
    Network(String),
    /// The server refused the request.
    #[error("{}", .0.detail)]
    Server(Problem),
    /// No session: sign in.
    #[error("signed out: sign in again")]
    SignedOut,
    /// The server sent something this SDK cannot read.
    #[error("unreadable server answer: {0}")]
    Protocol(String),
    /// An alert's place could not be used for on-device geofencing.
    #[error(transparent)]
    Place(#[from] geofence::PlaceError),
    /// The app's token keeper failed.
    #[error("token keeping: {0}")]
    Secrets(String),
}
