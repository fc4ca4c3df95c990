//! Several nodes on one PostgreSQL database, with NATS between them.
//!
//! PostgreSQL stays the record: every per-person message is numbered and stored in the
//! writing transaction, wherever it was written, and a socket on any node resumes from it.
//! NATS carries what each node's memory must learn from the others:
//!
//! - **hints** (core NATS, `<cluster>.hub`): what the [`Hub`](crate::live::Hub) of one node did
//!   for its sockets — stored messages, events, revocations, operations updates — played by
//!   every other node for its own ([`crate::live::Relay`]). A hint may be lost (NATS is
//!   at-most-once here, and a node may be cut off): every [`Settings::cluster_converge_secs`]
//!   a node compares its sockets' streams with storage ([`converge`]) and they read what they
//!   miss, as Centrifugo's and Synapse's position checks do.
//! - **wake-ups** (`<cluster>.wake`): work each node does for its own sockets from storage,
//!   such as handing a committed alert to its connected recipients ([`Wake`]).
//! - **tracker changes** (a JetStream stream, `<cluster>.track`): every accepted fix, location
//!   mode switch and area change, so that every node's R-trees hold everyone and targeting on
//!   any node sees the whole deployment. A geofence crossing is computed and stored once, by
//!   the node that accepted the fix; the others only move the subject ([`track`]). A starting
//!   node loads the database, replays the stream from a little before it did, and is ready
//!   (`/readyz`) only once caught up.
//!
//! Singleton work — fallback sweeps, roll-call reminders, retention — runs under leases in the
//! database ([`lease`]), which pass to a surviving node when their holder dies.

pub mod lease;
pub mod track;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::AppState;
use crate::config::Settings;
use crate::db::Db;
use crate::live::Relay;
use crate::metrics::ClusterMetrics;

pub use track::Track;

/// Largest NATS message we send: below the server's default `max_payload` (1 MiB).
const MAX_PAYLOAD: usize = 900 * 1024;
/// Messages queued for NATS before hints are dropped (and converged from storage instead).
const OUTBOX_DEPTH: usize = 65_536;

/// Why this node cannot join a cluster.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// A cluster needs a database every node reaches.
    #[error(
        "nats_url is set but the database is not PostgreSQL ({0}): an SQLite database serves \
         one node. Use a postgres:// database_url for a cluster, or unset nats_url (VIGIL_NATS_URL)."
    )]
    NotPostgres(String),
    /// The NATS URL or options were refused.
    #[error("cannot use nats_url {url}: {source}")]
    Nats {
        /// The URL, without credentials.
        url: String,
        /// What the client said.
        source: async_nats::ConnectError,
    },
}

/// Work a node does for its own sockets when another node asks.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Wake {
    /// An alert was committed: hand it to the recipients connected here.
    Alert {
        /// The alert.
        id: i64,
    },
}

/// What crosses between nodes: the sender's instance (to skip one's own) and the body.
#[derive(Debug, Serialize)]
struct Outgoing<'a, T> {
    from: &'a str,
    body: &'a T,
}

/// [`Outgoing`] as received.
#[derive(Debug, Deserialize)]
struct Incoming<T> {
    from: String,
    body: T,
}

/// The subjects and stream of one cluster.
#[derive(Debug, Clone)]
struct Names {
    hub: String,
    wake: String,
    track: String,
    stream: String,
}

impl Names {
    fn new(cluster: &str) -> Names {
        Names {
            hub: format!("vigil.{cluster}.hub"),
            wake: format!("vigil.{cluster}.wake"),
            track: format!("vigil.{cluster}.track"),
            stream: format!("VIGIL_{cluster}_TRACK"),
        }
    }
}

struct Node {
    id: String,
    /// `id` and a value of this start: after a restart, what the previous run published is
    /// not mistaken for what this one already applied.
    instance: String,
    names: Names,
    client: async_nats::Client,
    outbox: mpsc::Sender<(String, Vec<u8>)>,
    caught_up: AtomicBool,
    /// Set once the node has been ready: losing NATS after that degrades it, not stops it.
    was_ready: AtomicBool,
    metrics: ClusterMetrics,
    lease_secs: u64,
}

/// This node's place in a cluster, or nothing (a single node): cheap to clone.
#[derive(Clone, Default)]
pub struct Cluster {
    node: Option<Arc<Node>>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.node {
            None => f.write_str("Cluster(single node)"),
            Some(n) => f
                .debug_struct("Cluster")
                .field("node", &n.id)
                .field("stream", &n.names.stream)
                .finish(),
        }
    }
}

/// The name of a cluster's subjects: the setting, or the database's name.
pub fn cluster_name(settings: &Settings) -> String {
    let name = if settings.cluster_name.is_empty() {
        let path = settings.database_url.split('?').next().unwrap_or("");
        path.rsplit('/').next().unwrap_or("vigil").to_string()
    } else {
        settings.cluster_name.clone()
    };
    let clean: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if clean.is_empty() {
        "vigil".into()
    } else {
        clean
    }
}

/// This node's id: the setting, or the host name and the port it listens on.
pub fn node_id(settings: &Settings) -> String {
    if !settings.node_id.is_empty() {
        return settings.node_id.clone();
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let host = host.trim();
    let host = if host.is_empty() { "vigil" } else { host };
    format!("{host}:{}", settings.bind.port())
}

impl Cluster {
    /// Joins the cluster of `settings.nats_url` (nothing when unset). Connecting goes on in
    /// the background: a NATS that is down at start leaves the node unready, not stopped.
    pub async fn join(
        settings: &Settings,
        metrics: &ClusterMetrics,
    ) -> Result<Cluster, ClusterError> {
        if settings.nats_url.is_empty() {
            return Ok(Cluster::default());
        }
        let url = &settings.database_url;
        if !(url.starts_with("postgres:") || url.starts_with("postgresql:")) {
            return Err(ClusterError::NotPostgres(
                url.split(':').next().unwrap_or("").to_string(),
            ));
        }
        let id = node_id(settings);
        let connected = metrics.nats_connected.clone();
        let nats_url = crate::config::redact_url(&settings.nats_url);
        let logged_url = nats_url.clone();
        let client = async_nats::ConnectOptions::new()
            .name(format!("vigil {id}"))
            .retry_on_initial_connect()
            .connection_timeout(Duration::from_secs(3))
            .event_callback(move |event| {
                let connected = connected.clone();
                let url = logged_url.clone();
                async move {
                    match event {
                        async_nats::Event::Connected => {
                            connected.set(1);
                            tracing::info!(%url, "cluster: connected to NATS");
                        }
                        async_nats::Event::Disconnected => {
                            connected.set(0);
                            tracing::error!(%url, "cluster: lost NATS; serving this node's sockets from the database until it is back");
                        }
                        // The client retries on its own; the outage itself is logged above
                        // and by the tracker stream's follower, not once per retry.
                        async_nats::Event::ClientError(e) => {
                            tracing::debug!(%url, error = %e, "cluster: NATS client");
                        }
                        other => tracing::warn!(%url, event = %other, "cluster: NATS"),
                    }
                }
            })
            .connect(&settings.nats_url)
            .await
            .map_err(|source| ClusterError::Nats {
                url: nats_url,
                source,
            })?;
        let (outbox, queued) = mpsc::channel(OUTBOX_DEPTH);
        tokio::spawn(publish(client.clone(), queued));
        let instance = format!("{id}#{}", uuid::Uuid::new_v4().simple());
        tracing::info!(node = %id, cluster = %cluster_name(settings), "cluster node");
        Ok(Cluster {
            node: Some(Arc::new(Node {
                id,
                instance,
                names: Names::new(&cluster_name(settings)),
                client,
                outbox,
                caught_up: AtomicBool::new(false),
                was_ready: AtomicBool::new(false),
                metrics: metrics.clone(),
                lease_secs: settings.lease_secs.max(1),
            })),
        })
    }

    /// Whether this node is one of several.
    pub fn is_clustered(&self) -> bool {
        self.node.is_some()
    }

    /// Whether this node may take clients, and what it lacks: `Err` until it has reached NATS
    /// and caught up with the cluster; then `Ok`, with a note while NATS is away.
    ///
    /// A node that was ready stays ready without NATS: every node loses NATS together, and a
    /// load balancer that took them all out would leave an emergency system unreachable, while
    /// each node still serves its sockets from the database (messages of other nodes within
    /// `cluster_converge_secs`; their positions once NATS is back).
    pub fn readiness(&self) -> Result<Option<String>, String> {
        let Some(node) = self.node.as_ref() else {
            return Ok(None);
        };
        let connected = node.client.connection_state() == async_nats::connection::State::Connected;
        let caught_up = node.caught_up.load(Ordering::Acquire);
        if connected && caught_up {
            node.was_ready.store(true, Ordering::Release);
            return Ok(None);
        }
        if node.was_ready.load(Ordering::Acquire) {
            return Ok(Some(
                "degraded: not connected to NATS; messages from other nodes arrive from the \
                 database, positions they accept once NATS is back"
                    .into(),
            ));
        }
        if !connected {
            return Err("not connected to NATS (nats_url)".into());
        }
        Err("catching up with the cluster's positions and areas".into())
    }

    /// Asks every other node to do `wake` for its own sockets.
    pub fn wake(&self, wake: Wake) {
        if let Some(node) = &self.node {
            node.send(&node.names.wake, &wake);
        }
    }

    /// Tells every other node's tracker about a change this node committed.
    pub fn track(&self, change: Track) {
        if let Some(node) = &self.node {
            for part in change.split_to_fit() {
                node.metrics.track_published.inc();
                node.send(&node.names.track, &part);
            }
        }
    }

    /// Whether this node holds (or has just taken) the lease on `name` for `ttl`; always true
    /// on a single node. A database error counts as not holding it: another node may.
    pub async fn holds(&self, db: &Db, name: &str, ttl: Duration) -> bool {
        let Some(node) = &self.node else {
            return true;
        };
        let ttl = ttl.max(Duration::from_secs(node.lease_secs));
        match lease::take(db, name, &node.instance, ttl).await {
            Ok(held) => held,
            Err(e) => {
                tracing::warn!(error = %e, lease = name, "cluster: cannot renew a lease; leaving the work to others");
                false
            }
        }
    }

    /// How long a lease on a sweep that runs every second lasts.
    pub fn lease_ttl(&self) -> Duration {
        Duration::from_secs(self.node.as_ref().map_or(10, |n| n.lease_secs))
    }

    /// Gives up this node's leases (at shutdown), so that others take the work at once.
    pub async fn release(&self, db: &Db) {
        if let Some(node) = &self.node
            && let Err(e) = lease::release(db, &node.instance).await
        {
            tracing::warn!(error = %e, "cluster: releasing leases");
        }
    }

    /// Starts relaying this node's hub and following the others: hints, wake-ups, the tracker
    /// stream and the convergence check.
    pub fn start(state: &AppState) {
        let Some(node) = state.cluster.node.clone() else {
            return;
        };
        let relay_node = node.clone();
        state.hub.relay_to(move |relay| relay_node.relay(relay));
        let reach_state = state.clone();
        state
            .hub
            .on_reached(move |tag, reached| reached_elsewhere(&reach_state, tag, reached));
        let tasks = &state.background.tasks;
        let (hub, wake) = (node.names.hub.clone(), node.names.wake.clone());
        tasks.spawn(follow(
            state.clone(),
            node.clone(),
            hub,
            |state, relay: Relay| {
                state.hub.apply(relay);
            },
        ));
        tasks.spawn(follow(state.clone(), node.clone(), wake, woken));
        tasks.spawn(track::follow(state.clone(), node.clone()));
        tasks.spawn(converge(state.clone()));
    }
}

impl Node {
    fn send<T: Serialize>(&self, subject: &str, body: &T) {
        let envelope = Outgoing {
            from: self.instance.as_str(),
            body,
        };
        let bytes = match serde_json::to_vec(&envelope) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "cluster: encoding a hint");
                return;
            }
        };
        match self.outbox.try_send((subject.to_string(), bytes)) {
            Ok(()) => self.metrics.hints_sent.inc(),
            Err(_) => self.metrics.hints_dropped.inc(),
        };
    }

    fn relay(&self, relay: Relay) {
        for part in split_relay(relay) {
            self.send(&self.names.hub, &part);
        }
    }
}

/// Splits what would not fit in one NATS message (an alert to tens of thousands).
fn split_relay(relay: Relay) -> Vec<Relay> {
    let size = serde_json::to_vec(&relay).map_or(0, |b| b.len());
    if size <= MAX_PAYLOAD {
        return vec![relay];
    }
    let halves = match relay {
        Relay::Deliver { mut messages } if messages.len() > 1 => {
            let rest = messages.split_off(messages.len() / 2);
            (
                Relay::Deliver { messages },
                Relay::Deliver { messages: rest },
            )
        }
        Relay::DeliverEach {
            kind,
            payload,
            created_at,
            mut seqs,
            reach,
        } if seqs.len() > 1 => {
            let rest = seqs.split_off(seqs.len() / 2);
            (
                Relay::DeliverEach {
                    kind: kind.clone(),
                    payload: payload.clone(),
                    created_at,
                    seqs,
                    reach: reach.clone(),
                },
                Relay::DeliverEach {
                    kind,
                    payload,
                    created_at,
                    seqs: rest,
                    reach,
                },
            )
        }
        Relay::Notify { mut users, json } if users.len() > 1 => {
            let rest = users.split_off(users.len() / 2);
            (
                Relay::Notify {
                    users,
                    json: json.clone(),
                },
                Relay::Notify { users: rest, json },
            )
        }
        // One message too big for NATS is too big for a phone too: the sockets read it
        // from storage at the next convergence check.
        other => {
            tracing::warn!(
                bytes = size,
                "cluster: a hint too large for NATS; left to convergence"
            );
            drop(other);
            return Vec::new();
        }
    };
    let mut parts = split_relay(halves.0);
    parts.extend(split_relay(halves.1));
    parts
}

/// Sends what the node queued, in order.
async fn publish(client: async_nats::Client, mut queued: mpsc::Receiver<(String, Vec<u8>)>) {
    while let Some((subject, bytes)) = queued.recv().await {
        if let Err(e) = client.publish(subject, bytes.into()).await {
            tracing::warn!(error = %e, "cluster: publishing to NATS");
        }
    }
}

/// Decodes a message of another node (`None`: one's own, or unreadable).
fn decode<T: serde::de::DeserializeOwned>(node: &Node, payload: &[u8]) -> Option<T> {
    match serde_json::from_slice::<Incoming<T>>(payload) {
        Ok(e) if e.from == node.instance => None,
        Ok(e) => Some(e.body),
        Err(e) => {
            tracing::warn!(error = %e, "cluster: an unreadable message; ignored");
            None
        }
    }
}

/// Subscribes to `subject`, retrying while NATS is away.
async fn subscribe(node: &Node, subject: &str, state: &AppState) -> Option<async_nats::Subscriber> {
    loop {
        match node.client.subscribe(subject.to_string()).await {
            Ok(s) => return Some(s),
            Err(e) => {
                tracing::warn!(error = %e, subject, "cluster: cannot subscribe yet");
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    () = state.shutdown.cancelled() => return None,
                }
            }
        }
    }
}

/// Plays every other node's message of `T` on `subject` with `handle`, until shutdown.
async fn follow<T, H>(state: AppState, node: Arc<Node>, subject: String, handle: H)
where
    T: serde::de::DeserializeOwned,
    H: Fn(&AppState, T),
{
    let Some(mut messages) = subscribe(&node, &subject, &state).await else {
        return;
    };
    loop {
        let msg = tokio::select! {
            m = messages.next() => m,
            () = state.shutdown.cancelled() => return,
        };
        let Some(msg) = msg else { return };
        if let Some(body) = decode::<T>(&node, &msg.payload) {
            node.metrics.hints_received.inc();
            handle(&state, body);
        }
    }
}

/// Does what another node asked this one to do for its own sockets.
fn woken(state: &AppState, wake: Wake) {
    let state = state.clone();
    match wake {
        Wake::Alert { id } => {
            tokio::spawn(async move {
                if let Err(e) = crate::alerts::store::deliver_here(&state, id).await {
                    tracing::warn!(alert_id = id, error = %e, "cluster: live delivery failed; devices get it on resume");
                }
            });
        }
    }
}

/// Records, on this node, who a delivery started elsewhere reached here.
fn reached_elsewhere(state: &AppState, tag: &str, reached: Vec<i64>) {
    let Some(id) = tag
        .strip_prefix("rollcall:")
        .and_then(|id| id.parse::<i64>().ok())
    else {
        tracing::warn!(tag, "cluster: a delivery tag this node does not know");
        return;
    };
    let state = state.clone();
    tokio::spawn(async move {
        if let Err(e) = crate::rollcall::answers::mark_delivered(&state, id, &reached).await {
            tracing::warn!(rollcall = id, error = %e, "cluster: recording roll-call deliveries");
        }
    });
}

/// Every `cluster_converge_secs`: the newest number of each local person's stream, from
/// storage, to their sockets, which read what no hint brought them.
async fn converge(state: AppState) {
    let period = Duration::from_secs(state.settings.cluster_converge_secs.max(1));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = state.shutdown.cancelled() => return,
        }
        let people = state.hub.local_people();
        for chunk in people.chunks(1000) {
            match stream_heads(&state.db, chunk).await {
                Ok(heads) => {
                    for (user, seq) in heads {
                        state.hub.nudge(user, seq);
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cluster: reading stream heads; trying again later");
                    break;
                }
            }
        }
    }
}

/// The newest sequence number of each of `people`'s streams.
async fn stream_heads(db: &Db, people: &[i64]) -> Result<Vec<(i64, i64)>, sqlx::Error> {
    let sql = format!(
        "SELECT user_id, seq FROM message_seqs WHERE user_id IN ({})",
        db.json_ints(1)
    );
    let ids = serde_json::to_string(people).unwrap_or_else(|_| "[]".into());
    crate::on_reader!(db, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()))
        .bind(&ids).fetch_all(pool).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_relay_too_big_for_nats_is_split_and_nothing_is_lost() {
        let seqs: Vec<(i64, i64)> = (0..120_000).map(|u| (u, u + 1)).collect();
        let relay = Relay::DeliverEach {
            kind: "alert".into(),
            payload: "{}".into(),
            created_at: 1,
            seqs: seqs.clone(),
            reach: Some("x".into()),
        };
        let parts = split_relay(relay);
        assert!(parts.len() > 1);
        let mut back = Vec::new();
        for p in parts {
            assert!(serde_json::to_vec(&p).expect("json").len() <= MAX_PAYLOAD);
            let Relay::DeliverEach { seqs, reach, .. } = p else {
                panic!("kind kept")
            };
            assert_eq!(reach.as_deref(), Some("x"));
            back.extend(seqs);
        }
        assert_eq!(back, seqs);
    }

    #[test]
    fn the_cluster_is_named_after_the_database_unless_told() {
        let mut s = Settings {
            database_url: "postgres://u:p@db:5432/vigil_prod?sslmode=require".into(),
            ..Settings::default()
        };
        assert_eq!(cluster_name(&s), "vigil_prod");
        s.cluster_name = "east.1".into();
        assert_eq!(cluster_name(&s), "east_1");
    }
}
