//! The chat's WebSocket messages (`chat_send`, `chat_receipt`, `typing`; see
//! `docs/PROTOCOL.md`): each handler returns what the connection answers, if anything.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use vigil_protocol::{ErrorCode, LiveEvent, ServerMessage};

use super::{ReceiptState, notify_online, post, record_receipt, store, writable};
use crate::AppState;
use crate::error::AppError;
use crate::policy::Actor;

/// A connection's typing hints go out at most this often per conversation.
pub const TYPING_EVERY: Duration = Duration::from_secs(2);

/// When a connection last sent a typing hint, per conversation.
#[derive(Debug, Default)]
pub struct TypingThrottle {
    last: HashMap<i64, Instant>,
}

impl TypingThrottle {
    /// True when a hint for `conversation_id` may go out now (and records it).
    fn allow(&mut self, conversation_id: i64) -> bool {
        let now = Instant::now();
        if self.last.len() > 64 {
            self.last
                .retain(|_, at| now.duration_since(*at) < TYPING_EVERY);
        }
        match self.last.get(&conversation_id) {
            Some(at) if now.duration_since(*at) < TYPING_EVERY => false,
            _ => {
                self.last.insert(conversation_id, now);
                true
            }
        }
    }
}

/// The socket's `error` message for a refused chat request (a 409 here is a closed
/// conversation).
fn error(e: &AppError, reference: Option<String>) -> ServerMessage {
    e.to_socket(ErrorCode::Closed, reference)
}

/// `chat_send`: stores the message, fans it out, and answers `chat_ack` once it is committed.
pub async fn send(
    state: &AppState,
    actor: &Actor,
    reference: Option<String>,
    conversation_id: i64,
    client_id: &str,
    body: &str,
) -> ServerMessage {
    let stored = match writable(state, actor, conversation_id).await {
        Ok(_) => post(state, conversation_id, actor.user_id, client_id, body).await,
        Err(e) => Err(e),
    };
    match stored {
        Ok((m, duplicate)) => ServerMessage::ChatAck {
            reference,
            conversation_id,
            seq: m.seq,
            client_id: m.client_id,
            duplicate,
        },
        Err(e) => error(&e, reference),
    }
}

/// `chat_receipt`: moves the sender's receipt forward; answers `ack` when the client gave a
/// `ref`, and an error when the receipt is refused.
pub async fn receipt(
    state: &AppState,
    actor: &Actor,
    reference: Option<String>,
    conversation_id: i64,
    seq: i64,
    step: ReceiptState,
) -> Option<ServerMessage> {
    match record_receipt(state, actor, conversation_id, seq, step).await {
        Ok(_) => ServerMessage::ack(reference),
        Err(e) => Some(error(&e, reference)),
    }
}

/// `typing`: a live hint to the other participants online, at most one per
/// [`TYPING_EVERY`] per conversation and connection; answers only when refused.
pub async fn typing(
    state: &AppState,
    actor: &Actor,
    throttle: &mut TypingThrottle,
    conversation_id: i64,
) -> Option<ServerMessage> {
    let s = match writable(state, actor, conversation_id).await {
        Ok(s) => s,
        Err(e) => return Some(error(&e, None)),
    };
    if s.closed || !throttle.allow(conversation_id) {
        return None;
    }
    let sent = async {
        let name = store::name_of(&state.db, actor.user_id).await?;
        let event = ServerMessage::Event(LiveEvent::Typing {
            conversation_id,
            user_id: actor.user_id,
            name,
        });
        notify_online(state, conversation_id, Some(actor.user_id), &event).await
    }
    .await;
    sent.err().map(|e| error(&e, None))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typing_hints_are_throttled_per_conversation() {
        let mut t = TypingThrottle::default();
        assert!(t.allow(1));
        assert!(!t.allow(1), "a second hint right away is dropped");
        assert!(t.allow(2), "another conversation is not held back");
    }
}
