//! The live hub: which WebSocket connections belong to whom, per-person messages that are
//! stored before they are pushed (so a reconnecting client resumes without loss), and live
//! events (positions, geofence crossings) for the operators watching an organisation.
//!
//! Every connection has a small bounded queue. The hub never waits on a connection: if a queue
//! is full the hub drops that connection's sender, the connection closes with code 4008, and the
//! client reconnects and resumes from its last sequence number. A slow phone therefore costs
//! nobody else anything, and loses nothing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tokio::sync::mpsc;

use crate::db::{Db, Timestamp, now_ms};
use crate::in_tx;

/// Messages a connection may have queued before it counts as too slow.
pub const QUEUE_DEPTH: usize = 64;

/// A message stored for one person, with its per-person sequence number.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct StoredMessage {
    /// Per-person sequence number, from 1, without gaps.
    pub seq: i64,
    /// What it is: `area_entered`, `area_left`, later `alert`, `rollcall`, `chat`…
    pub kind: String,
    /// The message itself (JSON text as stored).
    #[serde(skip)]
    pub payload: String,
    /// When it was stored.
    pub created_at: Timestamp,
}

impl StoredMessage {
    /// The message as sent on the socket.
    pub fn to_wire(&self) -> String {
        let payload: serde_json::Value =
            serde_json::from_str(&self.payload).unwrap_or(serde_json::Value::Null);
        serde_json::json!({
            "type": "message", "seq": self.seq, "kind": self.kind,
            "at": self.created_at, "payload": payload,
        })
        .to_string()
    }
}

/// What the hub hands a connection.
#[derive(Debug, Clone)]
pub enum Outbound {
    /// A stored message for the connection's person.
    Message(Arc<StoredMessage>),
    /// A live event for an operator; `about_user` names the person whose location it carries.
    Event {
        /// The person located by the event, for the location-access log.
        about_user: Option<i64>,
        /// The event, serialised once for every watcher.
        json: Arc<str>,
    },
}

#[derive(Debug)]
struct Conn {
    id: u64,
    tx: mpsc::Sender<Outbound>,
}

#[derive(Debug)]
struct Watcher {
    /// `None`: every organisation (oversight).
    org: Option<i64>,
    tx: mpsc::Sender<Outbound>,
}

#[derive(Debug, Default)]
struct Inner {
    next_id: u64,
    by_user: HashMap<i64, Vec<Conn>>,
    watchers: HashMap<u64, Watcher>,
}

/// The registry of live connections on this node.
#[derive(Debug, Default)]
pub struct Hub {
    inner: Mutex<Inner>,
}

/// A connection's place in the hub; dropping it removes the connection.
#[derive(Debug)]
pub struct Registration {
    hub: Arc<Hub>,
    user_id: i64,
    /// Connection id, unique on this node.
    pub id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut inner = self.hub.lock();
        if let Some(conns) = inner.by_user.get_mut(&self.user_id) {
            conns.retain(|c| c.id != self.id);
            if conns.is_empty() {
                inner.by_user.remove(&self.user_id);
            }
        }
        inner.watchers.remove(&self.id);
    }
}

impl Hub {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Every critical section is a few map operations that cannot panic half-way.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a connection of `user_id`; returns its registration and its queue.
    pub fn register(self: &Arc<Self>, user_id: i64) -> (Registration, mpsc::Receiver<Outbound>) {
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        let mut inner = self.lock();
        inner.next_id += 1;
        let id = inner.next_id;
        inner
            .by_user
            .entry(user_id)
            .or_default()
            .push(Conn { id, tx });
        (
            Registration {
                hub: self.clone(),
                user_id,
                id,
            },
            rx,
        )
    }

    /// Makes a registered connection also receive live events of `org` (`None`: all).
    pub fn watch(&self, reg: &Registration, org: Option<i64>) {
        let mut inner = self.lock();
        let tx = inner
            .by_user
            .get(&reg.user_id)
            .and_then(|conns| conns.iter().find(|c| c.id == reg.id))
            .map(|c| c.tx.clone());
        if let Some(tx) = tx {
            inner.watchers.insert(reg.id, Watcher { org, tx });
        }
    }

    /// Connections open for a person on this node.
    pub fn connections_of(&self, user_id: i64) -> usize {
        self.lock().by_user.get(&user_id).map_or(0, Vec::len)
    }

    /// Pushes a stored message to every connection of its person, cutting off any that lag.
    pub fn deliver(&self, user_id: i64, msg: Arc<StoredMessage>) {
        let mut inner = self.lock();
        let Inner {
            by_user, watchers, ..
        } = &mut *inner;
        if let Some(conns) = by_user.get_mut(&user_id) {
            conns.retain(|c| match c.tx.try_send(Outbound::Message(msg.clone())) {
                Ok(()) => true,
                Err(_) => {
                    tracing::info!(
                        user_id,
                        conn = c.id,
                        "connection too slow; cut off to resume later"
                    );
                    watchers.remove(&c.id);
                    false
                }
            });
        }
    }

    /// Sends a live event to the operators watching `org`.
    pub fn publish(&self, org: i64, about_user: Option<i64>, event: &serde_json::Value) {
        let mut inner = self.lock();
        if inner.watchers.is_empty() {
            return;
        }
        let json: Arc<str> = event.to_string().into();
        let Inner {
            by_user, watchers, ..
        } = &mut *inner;
        let mut cut = Vec::new();
        for (id, w) in watchers.iter() {
            if w.org.is_some_and(|o| o != org) {
                continue;
            }
            let out = Outbound::Event {
                about_user,
                json: json.clone(),
            };
            if w.tx.try_send(out).is_err() {
                cut.push(*id);
            }
        }
        for id in cut {
            tracing::info!(conn = id, "operator connection too slow; cut off");
            watchers.remove(&id);
            for conns in by_user.values_mut() {
                conns.retain(|c| c.id != id);
            }
        }
    }
}

/// A message to store and push to one person.
#[derive(Debug, Clone)]
pub struct Note {
    /// The person.
    pub user_id: i64,
    /// The message kind.
    pub kind: &'static str,
    /// The message.
    pub payload: serde_json::Value,
    /// Fill `payload.advisory` with this area's current advisory, read in the same transaction.
    pub advisory_of: Option<i64>,
}

/// Stores many messages in one transaction (each with its person's next sequence number), then
/// pushes them live. The position writer sends a whole group's geofence messages this way.
pub async fn send_many(db: &Db, hub: &Hub, notes: Vec<Note>) -> Result<(), sqlx::Error> {
    if notes.is_empty() {
        return Ok(());
    }
    let now = now_ms();
    // Each person's counter row is locked until commit, so numbers commit in order, without gaps.
    let stored: Vec<(i64, StoredMessage)> = in_tx!(db, tx => {
        let mut stored = Vec::with_capacity(notes.len());
        for mut note in notes {
            if let Some(area) = note.advisory_of {
                let advisory: Option<Option<String>> = sqlx::query_scalar("SELECT advisory FROM areas WHERE id = $1")
                    .bind(area).fetch_optional(&mut *tx).await?;
                note.payload["advisory"] = advisory.flatten().into();
            }
            let text = note.payload.to_string();
            let seq: i64 = sqlx::query_scalar("UPDATE users SET msg_seq = msg_seq + 1 WHERE id = $1 RETURNING msg_seq")
                .bind(note.user_id).fetch_one(&mut *tx).await?;
            sqlx::query("INSERT INTO user_messages (user_id, seq, kind, payload, created_at) VALUES ($1, $2, $3, $4, $5)")
                .bind(note.user_id).bind(seq).bind(note.kind).bind(&text).bind(now).execute(&mut *tx).await?;
            stored.push((note.user_id, StoredMessage { seq, kind: note.kind.to_string(), payload: text, created_at: Timestamp(now) }));
        }
        tx.commit().await?;
        stored
    });
    for (user_id, msg) in stored {
        hub.deliver(user_id, Arc::new(msg));
    }
    Ok(())
}

/// Stored messages of a person after `after`, oldest first, at most `limit`.
pub async fn messages_after(
    db: &Db,
    user_id: i64,
    after: i64,
    limit: i64,
) -> Result<Vec<StoredMessage>, sqlx::Error> {
    crate::on_reader!(db, pool => sqlx::query_as(
        "SELECT seq, kind, payload, created_at FROM user_messages WHERE user_id = $1 AND seq > $2 ORDER BY seq LIMIT $3")
        .bind(user_id).bind(after).bind(limit).fetch_all(pool).await)
}
