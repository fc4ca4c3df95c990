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
use vigil_protocol::{ServerMessage, Topic};

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
        vigil_protocol::stream::write_message(self.seq, &self.kind, self.created_at, &self.payload)
    }
}

/// What the hub hands a connection.
#[derive(Debug, Clone)]
pub enum Outbound {
    /// A stored message for the connection's person.
    Message(Arc<StoredMessage>),
    /// A live event; `about_user` names the person whose location it carries (for the
    /// location-access log).
    Event {
        /// The person located by the event, for the location-access log.
        about_user: Option<i64>,
        /// The event, serialised once for every watcher.
        json: Arc<str>,
    },
    /// The person's session or roles changed (logout, deactivation, a role removed): the
    /// connection re-reads them at once and closes, or drops feeds, as they now allow.
    Recheck,
}

/// One connection: its queue and every subscription it holds. It is the only place that holds
/// the queue's sender, so removing it (in [`Inner::remove`], the one place that does) is what
/// closes the queue, and the connection then closes with 4008 and the client resumes.
#[derive(Debug)]
struct Conn {
    user_id: i64,
    tx: mpsc::Sender<Outbound>,
}

#[derive(Debug, Default)]
struct Inner {
    next_id: u64,
    conns: HashMap<u64, Conn>,
    /// Connection ids per person.
    by_user: HashMap<i64, Vec<u64>>,
    /// Connections following a topic, with the organisation followed (`None`: all). Ids only:
    /// the sender stays in `conns`.
    topics: HashMap<Topic, HashMap<u64, Option<i64>>>,
}

impl Inner {
    /// Removes a connection and every subscription it holds.
    fn remove(&mut self, id: u64) {
        let Some(conn) = self.conns.remove(&id) else {
            return;
        };
        if let Some(ids) = self.by_user.get_mut(&conn.user_id) {
            ids.retain(|c| *c != id);
            if ids.is_empty() {
                self.by_user.remove(&conn.user_id);
            }
        }
        for watchers in self.topics.values_mut() {
            watchers.remove(&id);
        }
    }

    /// Cuts a connection whose queue is full.
    fn cut(&mut self, id: u64, why: &'static str) {
        tracing::info!(
            conn = id,
            why,
            "connection too slow; cut off to resume later"
        );
        self.remove(id);
    }

    /// Hands `out` to every connection of `user_id`; a full queue cuts that connection.
    /// Returns how many took it.
    fn deliver(&mut self, user_id: i64, out: &Outbound) -> usize {
        let Some(ids) = self.by_user.get(&user_id) else {
            return 0;
        };
        let mut full = Vec::new();
        let mut took = 0;
        for id in ids {
            match self.conns.get(id).map(|c| c.tx.try_send(out.clone())) {
                Some(Ok(())) => took += 1,
                _ => full.push(*id),
            }
        }
        for id in full {
            self.cut(id, "person's queue full");
        }
        took
    }
}

/// The registry of live connections on this node.
#[derive(Debug, Default)]
pub struct Hub {
    inner: Mutex<Inner>,
}

/// A connection's place in the hub; dropping it removes the connection and its subscriptions.
#[derive(Debug)]
pub struct Registration {
    hub: Arc<Hub>,
    /// Connection id, unique on this node.
    pub id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.hub.lock().remove(self.id);
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
        inner.conns.insert(id, Conn { user_id, tx });
        inner.by_user.entry(user_id).or_default().push(id);
        (
            Registration {
                hub: self.clone(),
                id,
            },
            rx,
        )
    }

    /// Makes a registered connection follow `topic` of `org` (`None`: every organisation);
    /// false if the connection was cut meanwhile.
    pub fn watch(&self, reg: &Registration, topic: Topic, org: Option<i64>) -> bool {
        let mut inner = self.lock();
        if !inner.conns.contains_key(&reg.id) {
            return false;
        }
        inner.topics.entry(topic).or_default().insert(reg.id, org);
        true
    }

    /// Stops a registered connection following `topic`.
    pub fn unwatch(&self, reg: &Registration, topic: Topic) {
        if let Some(watchers) = self.lock().topics.get_mut(&topic) {
            watchers.remove(&reg.id);
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
    /// of these people on this node; returns how many took it. A full queue skips the event
    /// rather than cutting the connection: what it says can be read again (receipts) or is moot
    /// soon.
    pub fn notify(&self, users: &[i64], event: &ServerMessage) -> usize {
        let inner = self.lock();
        let json: Arc<str> = event.to_json().into();
        users
            .iter()
            .filter_map(|u| inner.by_user.get(u))
            .flatten()
            .filter_map(|id| inner.conns.get(id))
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
        self.lock().deliver(user_id, &Outbound::Message(msg))
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

    /// Tells every connection of a person on this node to re-read their session and roles now
    /// (after a logout, a deactivation or a role change). A connection too slow to take it is
    /// cut, which is as safe: it must authenticate again to come back.
    pub fn recheck(&self, user_id: i64) {
        self.lock().deliver(user_id, &Outbound::Recheck);
    }

    /// Like [`recheck`](Self::recheck), for every connection on this node (a change that may
    /// concern anyone, such as a deactivated organisation).
    pub fn recheck_all(&self) {
        let mut inner = self.lock();
        let users: Vec<i64> = inner.by_user.keys().copied().collect();
        for user in users {
            inner.deliver(user, &Outbound::Recheck);
        }
    }

    /// Sends an operations update (alert counts, a roll-call board) to the connections
    /// following `org`'s operations. A watcher too slow for it is skipped, not cut: the next
    /// update supersedes this one.
    pub fn publish_operations(&self, org: i64, update: &ServerMessage) {
        let inner = self.lock();
        let Some(watchers) = inner
            .topics
            .get(&Topic::Operations)
            .filter(|w| !w.is_empty())
        else {
            return;
        };
        let json: Arc<str> = update.to_json().into();
        for (id, followed) in watchers {
            if followed.is_none_or(|o| o == org)
                && let Some(conn) = inner.conns.get(id)
            {
                let _ = conn.tx.try_send(Outbound::Event {
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
            .topics
            .get(&Topic::Positions)
            .is_some_and(|w| w.values().any(|o| o.is_none_or(|o| o == org)))
    }

    /// Sends a live position or geofence event to the operators watching `org`; a watcher
    /// whose queue is full is cut (it reloads the picture when it reconnects).
    pub fn publish_position(&self, org: i64, about_user: Option<i64>, event: &ServerMessage) {
        let mut inner = self.lock();
        let Some(watchers) = inner
            .topics
            .get(&Topic::Positions)
            .filter(|w| !w.is_empty())
        else {
            return;
        };
        let json: Arc<str> = event.to_json().into();
        let mut full = Vec::new();
        for (id, followed) in watchers {
            if followed.is_some_and(|o| o != org) {
                continue;
            }
            let out = Outbound::Event {
                about_user,
                json: json.clone(),
            };
            if inner
                .conns
                .get(id)
                .is_none_or(|c| c.tx.try_send(out).is_err())
            {
                full.push(*id);
            }
        }
        for id in full {
            inner.cut(id, "operator's queue full");
        }
    }
}

/// A set of people chosen by a sub-select of `user_id`s, whose one parameter is `$1`.
#[derive(Debug, Clone)]
pub struct PersonSet {
    select: String,
    param: SetParam,
}

/// The value bound to a [`PersonSet`]'s `$1`.
#[derive(Debug, Clone)]
pub enum SetParam {
    /// An id (an alert's, a roll-call's).
    Int(i64),
    /// Text, such as a JSON array of ids (see [`Db::json_ints`]).
    Text(String),
}

impl PersonSet {
    /// The people `select` returns (one `user_id` column) with `$1` bound to `param`.
    pub fn new(select: impl Into<String>, param: SetParam) -> Self {
        Self {
            select: select.into(),
            param,
        }
    }
}

/// Stores one message of `kind` for every person in `set`, each with their next sequence
/// number, inside the caller's transaction; returns `(person, seq)`. Two statements whatever
/// the number of people.
pub async fn store_for_set<DB>(
    tx: &mut sqlx::Transaction<'_, DB>,
    set: &PersonSet,
    kind: &str,
    payload: &str,
    now: i64,
) -> Result<Vec<(i64, i64)>, sqlx::Error>
where
    DB: sqlx::Database,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    DB::Arguments: sqlx::IntoArguments<DB>,
    for<'q> i64: sqlx::Encode<'q, DB> + sqlx::Decode<'q, DB> + sqlx::Type<DB>,
    for<'q> String: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    usize: sqlx::ColumnIndex<DB::Row>,
{
    fn bind<'q, DB, O>(
        q: sqlx::query::QueryAs<'q, DB, O, DB::Arguments>,
        p: &SetParam,
    ) -> sqlx::query::QueryAs<'q, DB, O, DB::Arguments>
    where
        DB: sqlx::Database,
        for<'a> i64: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
        for<'a> String: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    {
        match p {
            SetParam::Int(v) => q.bind(*v),
            SetParam::Text(v) => q.bind(v.clone()),
        }
    }
    let bump = format!(
        "UPDATE message_seqs SET seq = seq + 1 WHERE user_id IN ({}) RETURNING user_id, seq",
        set.select
    );
    let seqs: Vec<(i64, i64)> = bind(sqlx::query_as(sqlx::AssertSqlSafe(bump)), &set.param)
        .fetch_all(&mut **tx)
        .await?;
    let insert = format!(
        "INSERT INTO user_messages (user_id, seq, kind, payload, created_at) \
         SELECT user_id, seq, $2, $3, $4 FROM message_seqs WHERE user_id IN ({})",
        set.select
    );
    let insert = sqlx::query(sqlx::AssertSqlSafe(insert));
    let insert = match &set.param {
        SetParam::Int(v) => insert.bind(*v),
        SetParam::Text(v) => insert.bind(v.clone()),
    };
    insert
        .bind(kind.to_string())
        .bind(payload.to_string())
        .bind(now)
        .execute(&mut **tx)
        .await?;
    Ok(seqs)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn position_event() -> ServerMessage {
        ServerMessage::Event(vigil_protocol::LiveEvent::Position(
            vigil_protocol::PositionEvent {
                subject: vigil_protocol::SubjectKind::User,
                id: 7,
                org_id: 1,
                lat: 0.5,
                lon: 10.5,
                accuracy_m: None,
                recorded_at: Timestamp(0),
            },
        ))
    }

    /// The defect this guards against: a console following both feeds, cut for lagging on
    /// positions, kept its queue open through its operations subscription, so it was never
    /// told to reconnect and silently stopped receiving live SOS messages.
    #[tokio::test]
    async fn a_console_cut_for_lagging_on_one_feed_is_cut_from_all_and_told_to_resume() {
        let hub = Arc::new(Hub::default());
        let (console, mut queue) = hub.register(42);
        assert!(hub.watch(&console, Topic::Positions, Some(1)));
        assert!(hub.watch(&console, Topic::Operations, Some(1)));
        for _ in 0..=QUEUE_DEPTH {
            hub.publish_position(1, Some(7), &position_event());
        }
        assert_eq!(
            hub.connections_of(42),
            0,
            "cut from the person's connections"
        );
        assert!(!hub.watched(1), "cut from the positions feed");
        hub.publish_operations(
            1,
            &ServerMessage::AlertProgress {
                alert_id: 1,
                counts: Default::default(),
            },
        );
        let mut drained = 0;
        while let Some(out) = queue.recv().await {
            assert!(matches!(out, Outbound::Event { .. }));
            drained += 1;
        }
        // `recv` ending is what makes the connection close with 4008 and the client resume.
        assert_eq!(drained, QUEUE_DEPTH, "nothing reached it after the cut");
        assert!(
            !hub.watch(&console, Topic::Operations, None),
            "a cut connection cannot resubscribe"
        );
    }

    #[tokio::test]
    async fn a_revocation_reaches_every_connection_of_the_person() {
        let hub = Arc::new(Hub::default());
        let (_phone, mut phone_queue) = hub.register(7);
        let (_console, mut console_queue) = hub.register(7);
        let (_other, mut other_queue) = hub.register(8);
        hub.recheck(7);
        assert!(matches!(phone_queue.try_recv(), Ok(Outbound::Recheck)));
        assert!(matches!(console_queue.try_recv(), Ok(Outbound::Recheck)));
        assert!(
            other_queue.try_recv().is_err(),
            "someone else's sockets are left alone"
        );
    }
}
