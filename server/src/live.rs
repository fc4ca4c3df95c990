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

/// Messages a connection may have queued before it counts as too slow. A phone uploading ten
/// fixes a message can be owed an ack and several border crossings per message, and a busy
/// server hands them over in bursts; 64 cut healthy phones at 50,000 fixes/s. The queue grows
/// in blocks of 32 as it fills, so an idle connection costs no more for the headroom.
pub const QUEUE_DEPTH: usize = 256;

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
    /// The message as sent on the socket. The payload is stored JSON and is spliced in as it
    /// is: an alert to 50,000 people must not be parsed 50,000 times.
    pub fn to_wire(&self) -> String {
        let kind = serde_json::Value::from(self.kind.as_str());
        let at = serde_json::Value::from(self.created_at.to_rfc3339());
        let payload = if self.payload.is_empty() {
            "null"
        } else {
            &self.payload
        };
        format!(
            r#"{{"type":"message","seq":{},"kind":{kind},"at":{at},"payload":{payload}}}"#,
            self.seq
        )
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
    /// Connections following alert delivery counts of an organisation (`None`: all).
    alert_watchers: HashMap<u64, Watcher>,
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
        inner.alert_watchers.remove(&self.id);
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

    /// The people among `ids` with at least one connection open on this node.
    pub fn connected_among(&self, ids: impl IntoIterator<Item = i64>) -> Vec<i64> {
        let inner = self.lock();
        ids.into_iter()
            .filter(|id| inner.by_user.contains_key(id))
            .collect()
    }

    /// Connections open for a person on this node.
    pub fn connections_of(&self, user_id: i64) -> usize {
        self.lock().by_user.get(&user_id).map_or(0, Vec::len)
    }

    /// Sends a live event (not stored, not numbered: chat receipts, typing) to every connection
    /// of a person on this node; returns how many took it. A full queue skips the event rather
    /// than cutting the connection: what it says can be read again (receipts) or is moot soon.
    pub fn notify(&self, user_id: i64, json: &Arc<str>) -> usize {
        let inner = self.lock();
        let Some(conns) = inner.by_user.get(&user_id) else {
            return 0;
        };
        conns
            .iter()
            .filter(|c| {
                let event = Outbound::Event {
                    about_user: None,
                    json: json.clone(),
                };
                c.tx.try_send(event).is_ok()
            })
            .count()
    }

    /// Pushes a stored message to every connection of its person, cutting off any that lag;
    /// returns how many connections took it.
    pub fn deliver(&self, user_id: i64, msg: Arc<StoredMessage>) -> usize {
        let mut inner = self.lock();
        let Inner {
            by_user,
            watchers,
            alert_watchers,
            ..
        } = &mut *inner;
        let Some(conns) = by_user.get_mut(&user_id) else {
            return 0;
        };
        conns.retain(|c| match c.tx.try_send(Outbound::Message(msg.clone())) {
            Ok(()) => true,
            Err(_) => {
                tracing::info!(
                    user_id,
                    conn = c.id,
                    "connection too slow; cut off to resume later"
                );
                watchers.remove(&c.id);
                alert_watchers.remove(&c.id);
                false
            }
        });
        conns.len()
    }

    /// Pushes one stored message per person (`(person, seq)`, same kind and payload) to their
    /// connections; returns the people at least one connection took it for.
    pub fn deliver_each(&self, kind: &str, payload: &str, seqs: &[(i64, i64)]) -> Vec<i64> {
        let created_at = Timestamp(now_ms());
        seqs.iter()
            .filter(|(user, seq)| {
                let msg = StoredMessage {
                    seq: *seq,
                    kind: kind.to_string(),
                    payload: payload.to_string(),
                    created_at,
                };
                self.deliver(*user, Arc::new(msg)) > 0
            })
            .map(|(user, _)| *user)
            .collect()
    }

    /// Makes a registered connection also receive alert delivery counts of `org` (`None`: all).
    pub fn watch_alerts(&self, reg: &Registration, org: Option<i64>) {
        let mut inner = self.lock();
        let tx = inner
            .by_user
            .get(&reg.user_id)
            .and_then(|conns| conns.iter().find(|c| c.id == reg.id))
            .map(|c| c.tx.clone());
        if let Some(tx) = tx {
            inner.alert_watchers.insert(reg.id, Watcher { org, tx });
        }
    }

    /// Sends an alert's delivery counts to the connections following `org`'s alerts. A watcher
    /// too slow for these is skipped, not cut: the next update supersedes this one.
    pub fn publish_alert_event(&self, org: i64, event: &serde_json::Value) {
        let inner = self.lock();
        if inner.alert_watchers.is_empty() {
            return;
        }
        let json: Arc<str> = event.to_string().into();
        for w in inner.alert_watchers.values() {
            if w.org.is_none_or(|o| o == org) {
                let _ = w.tx.try_send(Outbound::Event {
                    about_user: None,
                    json: json.clone(),
                });
            }
        }
    }

    /// Whether any operator connection follows `org`'s live positions (events are built only
    /// then: at tens of thousands of fixes a second, a JSON value per fix for nobody adds up).
    pub fn watched(&self, org: i64) -> bool {
        self.lock()
            .watchers
            .values()
            .any(|w| w.org.is_none_or(|o| o == org))
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

/// Stores one message of `kind` for every person in the sub-select `$set` (bound to `$bind`)
/// with their next sequence numbers, returning `(person, seq)`. `$1` is the set's parameter.
#[macro_export]
macro_rules! store_messages_for_set {
    ($tx:ident, $set:expr, $bind:expr, $kind:expr, $payload:expr, $now:expr) => {{
        let bump = format!(
            "UPDATE message_seqs SET seq = seq + 1 WHERE user_id IN ({}) RETURNING user_id, seq",
            $set
        );
        let seqs: Vec<(i64, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(bump))
            .bind($bind)
            .fetch_all(&mut *$tx)
            .await?;
        let insert = format!(
            "INSERT INTO user_messages (user_id, seq, kind, payload, created_at) \
             SELECT user_id, seq, $2, $3, $4 FROM message_seqs WHERE user_id IN ({})",
            $set
        );
        sqlx::query(sqlx::AssertSqlSafe(insert))
            .bind($bind)
            .bind($kind)
            .bind($payload)
            .bind($now)
            .execute(&mut *$tx)
            .await?;
        seqs
    }};
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
/// A fixed number of statements whatever the number of messages: one read of the advisories,
/// one counter update and one insert per 1,000 people or messages. Messages to someone the
/// database does not know are dropped.
pub async fn send_many(db: &Db, hub: &Hub, notes: Vec<Note>) -> Result<(), sqlx::Error> {
    /// Rows per statement: 5 parameters a row stays far below SQLite's 32,766.
    const CHUNK: usize = 1000;
    if notes.is_empty() {
        return Ok(());
    }
    let now = now_ms();
    let mut areas: Vec<i64> = notes.iter().filter_map(|n| n.advisory_of).collect();
    areas.sort_unstable();
    areas.dedup();
    let mut counts: std::collections::BTreeMap<i64, i64> = std::collections::BTreeMap::new();
    for n in &notes {
        *counts.entry(n.user_id).or_default() += 1;
    }
    let counts: Vec<(i64, i64)> = counts.into_iter().collect();
    let mut notes = notes;
    let stored: Vec<(i64, StoredMessage)> = in_tx!(db, tx => {
        let mut advisories: HashMap<i64, Option<String>> = HashMap::with_capacity(areas.len());
        for chunk in areas.chunks(CHUNK) {
            let mut qb = sqlx::QueryBuilder::new("SELECT id, advisory FROM areas WHERE id IN (");
            let mut ids = qb.separated(", ");
            for id in chunk {
                ids.push_bind(*id);
            }
            qb.push(")");
            let rows: Vec<(i64, Option<String>)> = qb.build_query_as().persistent(false).fetch_all(&mut *tx).await?;
            advisories.extend(rows);
        }
        // Each person's counter moves by their number of messages and stays locked until
        // commit, so numbers commit in order, without gaps; the first is `new - count + 1`.
        let mut next: HashMap<i64, i64> = HashMap::with_capacity(counts.len());
        for chunk in counts.chunks(CHUNK) {
            let mut qb = sqlx::QueryBuilder::new("UPDATE message_seqs SET seq = seq + v.column2 FROM (");
            qb.push_values(chunk, |mut row, (id, n)| {
                row.push_bind(*id).push_bind(*n);
            });
            qb.push(") AS v WHERE message_seqs.user_id = v.column1 RETURNING message_seqs.user_id, message_seqs.seq");
            let rows: Vec<(i64, i64)> = qb.build_query_as().persistent(false).fetch_all(&mut *tx).await?;
            let added: HashMap<i64, i64> = chunk.iter().copied().collect();
            next.extend(rows.into_iter().map(|(id, seq)| (id, seq - added.get(&id).copied().unwrap_or(1) + 1)));
        }
        let mut stored = Vec::with_capacity(notes.len());
        for note in &mut notes {
            let Some(seq) = next.get_mut(&note.user_id) else {
                continue;
            };
            if let Some(area) = note.advisory_of {
                note.payload["advisory"] = advisories.get(&area).cloned().flatten().into();
            }
            let msg = StoredMessage { seq: *seq, kind: note.kind.to_string(), payload: note.payload.to_string(), created_at: Timestamp(now) };
            *seq += 1;
            stored.push((note.user_id, msg));
        }
        for chunk in stored.chunks(CHUNK) {
            let mut qb = sqlx::QueryBuilder::new("INSERT INTO user_messages (user_id, seq, kind, payload, created_at) ");
            qb.push_values(chunk, |mut row, (user_id, m)| {
                row.push_bind(*user_id).push_bind(m.seq).push_bind(m.kind.as_str()).push_bind(m.payload.as_str()).push_bind(now);
            });
            qb.build().persistent(false).execute(&mut *tx).await?;
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
    // An alert's copy in the stream is its ledger row (one row per recipient, written once);
    // it comes out as a reference that `expand` replaces by the alert.
    let mut messages: Vec<StoredMessage> = crate::on_reader!(db, pool => sqlx::query_as(
        "SELECT seq, kind, payload, created_at FROM user_messages WHERE user_id = $1 AND seq > $2 \
         UNION ALL \
         SELECT r.seq, 'alert', '{\"alert_id\":' || CAST(r.alert_id AS TEXT) || '}', a.created_at \
         FROM alert_recipients r JOIN alerts a ON a.id = r.alert_id WHERE r.user_id = $1 AND r.seq > $2 \
         ORDER BY seq LIMIT $3")
        .bind(user_id).bind(after).bind(limit).fetch_all(pool).await)?;
    crate::alerts::store::expand(db, &mut messages).await?;
    Ok(messages)
}
