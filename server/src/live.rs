//! The live hub: which WebSocket connections belong to whom, what each of them follows, and
//! handing them per-person messages (stored first by [`crate::stream`], so a reconnecting
//! client resumes without loss) and live events (positions, geofence crossings, operations
//! updates) for the operators watching an organisation. It knows no table and no domain.
//!
//! Every connection has a small bounded queue. The hub never waits on a connection: if a queue
//! is full the hub drops that connection's sender, the connection closes with code 4008, and the
//! client reconnects and resumes from its last sequence number. A slow phone therefore costs
//! nobody else anything, and loses nothing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use vigil_protocol::{ServerMessage, Topic};

use crate::db::{Timestamp, now_ms};

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
    /// The person's stream reaches this number in storage: a connection that has sent less
    /// reads the rest from storage (a cluster node's check that no hint was missed).
    Behind(i64),
}

/// What the hub did for people on this node that the other nodes of a cluster must do for
/// theirs: the cluster carries it, and [`Hub::apply`] plays it on the receiving node.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Relay {
    /// Stored messages, each for its person.
    Deliver {
        /// `(person, message)`, in the order they were stored.
        messages: Vec<(i64, RelayedMessage)>,
    },
    /// One stored message (same kind and payload) for many people, each with their number.
    DeliverEach {
        /// The message kind.
        kind: String,
        /// The stored payload.
        payload: String,
        /// When it was stored.
        created_at: i64,
        /// `(person, seq)`.
        seqs: Vec<(i64, i64)>,
        /// What the receiving node records for the people its connections took it for (see
        /// [`Hub::on_reached`]).
        reach: Option<String>,
    },
    /// A live event for these people's connections.
    Notify {
        /// The people.
        users: Vec<i64>,
        /// The event as sent.
        json: String,
    },
    /// Re-read this person's session and roles.
    Recheck {
        /// The person.
        user: i64,
    },
    /// Every connection re-reads its session and roles.
    RecheckAll,
    /// An operations update for those following an organisation's operations.
    Operations {
        /// The organisation.
        org: i64,
        /// The update as sent.
        json: String,
    },
}

/// A stored message as it crosses to another node.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RelayedMessage {
    /// Per-person sequence number.
    pub seq: i64,
    /// Message kind.
    pub kind: String,
    /// Stored payload.
    pub payload: String,
    /// When it was stored.
    pub created_at: i64,
}

impl From<&StoredMessage> for RelayedMessage {
    fn from(m: &StoredMessage) -> Self {
        RelayedMessage {
            seq: m.seq,
            kind: m.kind.clone(),
            payload: m.payload.clone(),
            created_at: m.created_at.0,
        }
    }
}

impl From<RelayedMessage> for StoredMessage {
    fn from(m: RelayedMessage) -> Self {
        StoredMessage {
            seq: m.seq,
            kind: m.kind,
            payload: m.payload,
            created_at: Timestamp(m.created_at),
        }
    }
}

/// Where the hub hands what other nodes must repeat; set once, by the cluster.
type Relayer = Box<dyn Fn(Relay) + Send + Sync>;
/// What records the people a tagged delivery reached (see [`Hub::on_reached`]).
type ReachHook = Box<dyn Fn(&str, Vec<i64>) + Send + Sync>;

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
#[derive(Default)]
pub struct Hub {
    inner: Mutex<Inner>,
    relay: OnceLock<Relayer>,
    reach: OnceLock<ReachHook>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("relayed", &self.relay.get().is_some())
            .finish_non_exhaustive()
    }
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

    /// Makes every delivery also go to `relayer` (the cluster, which carries it to the other
    /// nodes); a second call is ignored.
    pub fn relay_to(&self, relayer: impl Fn(Relay) + Send + Sync + 'static) {
        let _ = self.relay.set(Box::new(relayer));
    }

    /// Sets what records the people reached by a tagged delivery
    /// ([`deliver_each_reaching`](Self::deliver_each_reaching)) on this node when it was
    /// started on another; a second call is ignored.
    pub fn on_reached(&self, hook: impl Fn(&str, Vec<i64>) + Send + Sync + 'static) {
        let _ = self.reach.set(Box::new(hook));
    }

    /// Whether deliveries are relayed to other nodes.
    pub fn is_relayed(&self) -> bool {
        self.relay.get().is_some()
    }

    fn relay(&self, make: impl FnOnce() -> Relay) {
        if let Some(relayer) = self.relay.get() {
            relayer(make());
        }
    }

    /// Plays on this node's connections what another node relayed; nothing is relayed again.
    pub fn apply(&self, relay: Relay) {
        match relay {
            Relay::Deliver { messages } => {
                let messages = messages.into_iter().map(|(u, m)| (u, Arc::new(m.into())));
                self.deliver_many_local(messages);
            }
            Relay::DeliverEach {
                kind,
                payload,
                created_at,
                seqs,
                reach,
            } => {
                let reached =
                    self.deliver_each_local(&kind, &payload, Timestamp(created_at), &seqs);
                if let (Some(tag), Some(hook)) = (reach, self.reach.get())
                    && !reached.is_empty()
                {
                    hook(&tag, reached);
                }
            }
            Relay::Notify { users, json } => {
                self.notify_local(&users, json.into());
            }
            Relay::Recheck { user } => self.recheck_local(user),
            Relay::RecheckAll => self.recheck_all_local(),
            Relay::Operations { org, json } => self.publish_operations_local(org, json.into()),
        }
    }

    /// Connections open on this node.
    pub fn connection_count(&self) -> usize {
        self.lock().conns.len()
    }

    /// Every person with a connection open on this node.
    pub fn local_people(&self) -> Vec<i64> {
        self.lock().by_user.keys().copied().collect()
    }

    /// Tells the connections of `user_id` on this node that their stream reaches `seq` in
    /// storage. A full queue skips it: the queue holds newer messages already.
    pub fn nudge(&self, user_id: i64, seq: i64) {
        let inner = self.lock();
        for id in inner.by_user.get(&user_id).into_iter().flatten() {
            if let Some(conn) = inner.conns.get(id) {
                let _ = conn.tx.try_send(Outbound::Behind(seq));
            }
        }
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
        let json: Arc<str> = event.to_json().into();
        self.relay(|| Relay::Notify {
            users: users.to_vec(),
            json: json.to_string(),
        });
        self.notify_local(users, json)
    }

    fn notify_local(&self, users: &[i64], json: Arc<str>) -> usize {
        let inner = self.lock();
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
        self.deliver_many(vec![(user_id, msg)])
    }

    /// Pushes stored messages, each to its person's connections, in order; returns how many
    /// connections took one.
    pub fn deliver_many(&self, messages: Vec<(i64, Arc<StoredMessage>)>) -> usize {
        self.relay(|| Relay::Deliver {
            messages: messages
                .iter()
                .map(|(user, m)| (*user, m.as_ref().into()))
                .collect(),
        });
        self.deliver_many_local(messages)
    }

    fn deliver_many_local(
        &self,
        messages: impl IntoIterator<Item = (i64, Arc<StoredMessage>)>,
    ) -> usize {
        let mut inner = self.lock();
        messages
            .into_iter()
            .map(|(user, m)| inner.deliver(user, &Outbound::Message(m)))
            .sum()
    }

    /// Pushes one stored message per person (`(person, seq)`, same kind and payload) to their
    /// connections; returns the people at least one connection took it for on this node.
    pub fn deliver_each(&self, kind: &str, payload: &str, seqs: &[(i64, i64)]) -> Vec<i64> {
        self.deliver_each_tagged(kind, payload, seqs, None)
    }

    /// [`deliver_each`](Self::deliver_each) whose reach on other nodes is recorded there under
    /// `reach` (see [`on_reached`](Self::on_reached)); on this node the caller records it from
    /// the answer.
    pub fn deliver_each_reaching(
        &self,
        kind: &str,
        payload: &str,
        seqs: &[(i64, i64)],
        reach: String,
    ) -> Vec<i64> {
        self.deliver_each_tagged(kind, payload, seqs, Some(reach))
    }

    fn deliver_each_tagged(
        &self,
        kind: &str,
        payload: &str,
        seqs: &[(i64, i64)],
        reach: Option<String>,
    ) -> Vec<i64> {
        let created_at = Timestamp(now_ms());
        self.relay(|| Relay::DeliverEach {
            kind: kind.to_string(),
            payload: payload.to_string(),
            created_at: created_at.0,
            seqs: seqs.to_vec(),
            reach,
        });
        self.deliver_each_local(kind, payload, created_at, seqs)
    }

    /// [`deliver_each`](Self::deliver_each) to this node's connections only, for work that
    /// every node of a cluster does for its own (an alert's copies, read from storage).
    pub fn deliver_each_here(&self, kind: &str, payload: &str, seqs: &[(i64, i64)]) -> Vec<i64> {
        self.deliver_each_local(kind, payload, Timestamp(now_ms()), seqs)
    }

    fn deliver_each_local(
        &self,
        kind: &str,
        payload: &str,
        created_at: Timestamp,
        seqs: &[(i64, i64)],
    ) -> Vec<i64> {
        let mut inner = self.lock();
        seqs.iter()
            .filter(|(user, seq)| {
                let msg = StoredMessage {
                    seq: *seq,
                    kind: kind.to_string(),
                    payload: payload.to_string(),
                    created_at,
                };
                inner.deliver(*user, &Outbound::Message(Arc::new(msg))) > 0
            })
            .map(|(user, _)| *user)
            .collect()
    }

    /// Tells every connection of a person on this node to re-read their session and roles now
    /// (after a logout, a deactivation or a role change). A connection too slow to take it is
    /// cut, which is as safe: it must authenticate again to come back.
    pub fn recheck(&self, user_id: i64) {
        self.relay(|| Relay::Recheck { user: user_id });
        self.recheck_local(user_id);
    }

    fn recheck_local(&self, user_id: i64) {
        self.lock().deliver(user_id, &Outbound::Recheck);
    }

    /// Like [`recheck`](Self::recheck), for every connection on this node (a change that may
    /// concern anyone, such as a deactivated organisation).
    pub fn recheck_all(&self) {
        self.relay(|| Relay::RecheckAll);
        self.recheck_all_local();
    }

    fn recheck_all_local(&self) {
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
        let watched_here = self
            .lock()
            .topics
            .get(&Topic::Operations)
            .is_some_and(|w| !w.is_empty());
        // Encoded only for someone: counts go out after every ledger batch.
        if !watched_here && !self.is_relayed() {
            return;
        }
        let json: Arc<str> = update.to_json().into();
        self.relay(|| Relay::Operations {
            org,
            json: json.to_string(),
        });
        self.publish_operations_local(org, json);
    }

    fn publish_operations_local(&self, org: i64, json: Arc<str>) {
        let inner = self.lock();
        let Some(watchers) = inner
            .topics
            .get(&Topic::Operations)
            .filter(|w| !w.is_empty())
        else {
            return;
        };
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

    /// A tag and the people it reached.
    type Reached = (String, Vec<i64>);

    /// Two nodes' hubs joined as the cluster joins them (JSON in between): what one delivers,
    /// revokes or tags reaches the other's connections, and the tag is recorded there.
    #[tokio::test]
    async fn what_one_hub_delivers_reaches_the_connections_of_another() {
        let (a, b) = (Arc::new(Hub::default()), Arc::new(Hub::default()));
        let carried: Arc<Mutex<Vec<String>>> = Arc::default();
        let wire = carried.clone();
        a.relay_to(move |r| {
            wire.lock()
                .expect("lock")
                .push(serde_json::to_string(&r).expect("json"))
        });
        let reached: Arc<Mutex<Vec<Reached>>> = Arc::default();
        let record = reached.clone();
        b.on_reached(move |tag, people| {
            record.lock().expect("lock").push((tag.to_string(), people))
        });
        let (_phone, mut queue) = b.register(7);
        let msg = StoredMessage {
            seq: 3,
            kind: "note".into(),
            payload: "{}".into(),
            created_at: Timestamp(1),
        };
        assert_eq!(a.deliver(7, Arc::new(msg)), 0, "nobody on the sending node");
        a.deliver_each_reaching(
            "rollcall",
            "{\"x\":1}",
            &[(7, 4), (8, 1)],
            "rollcall:9".into(),
        );
        a.recheck(7);
        for json in carried.lock().expect("lock").drain(..) {
            b.apply(serde_json::from_str(&json).expect("relay"));
        }
        let Ok(Outbound::Message(first)) = queue.try_recv() else {
            panic!("the message")
        };
        let Ok(Outbound::Message(second)) = queue.try_recv() else {
            panic!("the roll-call")
        };
        assert_eq!(
            (first.seq, second.seq, second.kind.as_str()),
            (3, 4, "rollcall")
        );
        assert!(matches!(queue.try_recv(), Ok(Outbound::Recheck)));
        assert_eq!(
            *reached.lock().expect("lock"),
            vec![("rollcall:9".to_string(), vec![7])]
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
