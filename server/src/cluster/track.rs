//! Every node's tracker holds everyone: the changes each node commits go through a JetStream
//! stream that every node follows.
//!
//! The node that accepts a fix computes its geofence crossings and stores the people's
//! messages about them; the others only move the subject (and tell their own operators, with
//! the crossings as computed there). A stream, not plain NATS, because a node that starts or
//! comes back must catch up: it loads the database, then replays the stream from a while
//! before (longer than the write-behind of last positions), which covers whatever the load
//! missed; replaying a fix twice changes nothing, as the tracker keeps the newest.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use vigil_geofences::{Fix, Transition};

use super::{MAX_PAYLOAD, Node, decode};
use crate::AppState;
use crate::areas::write_tracker;
use crate::db::now_ms;
use crate::positions::Subject;
use crate::positions::writer::{Recorded, StoredFix};

/// How long the stream keeps changes: far longer than a restart takes.
const KEEP: Duration = Duration::from_secs(15 * 60);
/// Fixes moved per lock of the tracker when applying another node's group.
const FIXES_PER_LOCK: usize = 256;

/// A change to the spatial state that one node committed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Track {
    /// A committed group's newest fix per subject, with the crossings they caused there.
    Fixes {
        /// The fixes.
        fixes: Vec<TrackedFix>,
    },
    /// A person switched location mode at `at` (ms).
    Mode {
        /// The person.
        user: i64,
        /// True: tracking; false: location-less (their positions are gone).
        tracking: bool,
        /// When the switch committed.
        at: i64,
    },
    /// Subjects whose last position went (retention).
    Forget {
        /// `(kind, id)` as [`Subject::key`].
        subjects: Vec<(String, i64)>,
    },
    /// An area was created, changed or deleted: read it again.
    Area {
        /// The area.
        id: i64,
    },
}

/// A subject's newest fix of a group, as another node learns it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TrackedFix {
    /// `user` or `asset`.
    pub kind: String,
    /// The person's or asset's id.
    pub id: i64,
    /// The organisation whose operators see it.
    pub org: i64,
    /// Latitude.
    pub lat: f64,
    /// Longitude.
    pub lon: f64,
    /// Accuracy, metres.
    pub accuracy_m: Option<f64>,
    /// When it was measured (ms).
    pub recorded_at: i64,
    /// Crossings of the group: `(at, entered, area)`.
    pub crossings: Vec<(i64, bool, i64)>,
}

impl TrackedFix {
    /// A subject's fix and the crossings its group caused, as sent.
    pub fn new(
        subject: Subject,
        org: i64,
        fix: StoredFix,
        crossings: &[(i64, Transition)],
    ) -> Self {
        let (kind, id) = subject.key();
        TrackedFix {
            kind: kind.into(),
            id,
            org,
            lat: fix.lat,
            lon: fix.lon,
            accuracy_m: fix.accuracy_m,
            recorded_at: fix.recorded_at,
            crossings: crossings
                .iter()
                .map(|(at, tr)| match tr {
                    Transition::Entered(a) => (*at, true, *a),
                    Transition::Left(a) => (*at, false, *a),
                })
                .collect(),
        }
    }
}

impl Track {
    /// The change cut into parts that each fit in a NATS message.
    pub(super) fn split_to_fit(self) -> Vec<Track> {
        match self {
            Track::Fixes { fixes } => {
                // About 200 bytes a fix: a few thousand a message.
                let per = (MAX_PAYLOAD / 400).max(1);
                fixes
                    .chunks(per)
                    .map(|c| Track::Fixes { fixes: c.to_vec() })
                    .collect()
            }
            Track::Forget { subjects } => subjects
                .chunks(10_000)
                .map(|c| Track::Forget {
                    subjects: c.to_vec(),
                })
                .collect(),
            other => vec![other],
        }
    }
}

/// Follows the stream for as long as the node runs: from a while before start, then on; after
/// a NATS outage, from the last change applied.
pub(super) async fn follow(state: AppState, node: Arc<Node>) {
    let window = Duration::from_millis(state.settings.position_flush_ms.saturating_mul(10))
        .max(Duration::from_secs(120));
    let from_ms = now_ms() - i64::try_from(window.as_millis()).unwrap_or(120_000);
    let mut next: Option<u64> = None;
    let mut failures = 0u32;
    loop {
        let run = follow_once(&state, &node, from_ms, &mut next);
        let result = tokio::select! {
            r = run => r,
            () = state.shutdown.cancelled() => return,
        };
        if let Err(e) = result {
            failures += 1;
            // Loud at first, then once in a while: an outage is reported, not a log flood.
            if failures == 1 || failures.is_multiple_of(30) {
                tracing::error!(error = %e, stream = %node.names.stream, "cluster: cannot follow the tracker stream; not ready until it can");
            }
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
            () = state.shutdown.cancelled() => return,
        }
    }
}

async fn follow_once(
    state: &AppState,
    node: &Node,
    from_ms: i64,
    next: &mut Option<u64>,
) -> anyhow::Result<()> {
    let js = jetstream::new(node.client.clone());
    let stream = js
        .get_or_create_stream(stream::Config {
            name: node.names.stream.clone(),
            subjects: vec![node.names.track.clone()],
            max_age: KEEP,
            max_bytes: 1 << 30,
            storage: stream::StorageType::File,
            ..Default::default()
        })
        .await?;
    let deliver_policy = match *next {
        Some(start_sequence) => consumer::DeliverPolicy::ByStartSequence { start_sequence },
        None => consumer::DeliverPolicy::ByStartTime {
            start_time: time::OffsetDateTime::from_unix_timestamp_nanos(
                i128::from(from_ms) * 1_000_000,
            )?,
        },
    };
    let consumer = stream
        .create_consumer(consumer::pull::OrderedConfig {
            filter_subject: node.names.track.clone(),
            deliver_policy,
            ..Default::default()
        })
        .await?;
    let pending = consumer.cached_info().num_pending;
    node.metrics
        .track_lag
        .set(i64::try_from(pending).unwrap_or(i64::MAX));
    if pending == 0 {
        caught_up(node);
    }
    let mut messages = consumer.messages().await?;
    while let Some(msg) = messages.next().await {
        let msg = msg?;
        let (seq, left) = match msg.info() {
            Ok(info) => (info.stream_sequence, info.pending),
            Err(e) => return Err(anyhow::anyhow!("reading a stream message's position: {e}")),
        };
        if let Some(change) = decode::<Track>(node, &msg.payload) {
            apply(state, change).await;
            node.metrics.track_applied.inc();
        }
        *next = Some(seq + 1);
        node.metrics
            .track_lag
            .set(i64::try_from(left).unwrap_or(i64::MAX));
        if left == 0 {
            caught_up(node);
        }
    }
    Err(anyhow::anyhow!("the tracker stream ended"))
}

fn caught_up(node: &Node) {
    node.was_ready.store(true, Ordering::Release);
    if !node.caught_up.swap(true, Ordering::AcqRel) {
        node.metrics.caught_up.set(1);
        tracing::info!(node = %node.id, "cluster: caught up with the tracker stream; ready");
    }
}

/// Applies another node's change to this node's tracker (and tells this node's operators).
async fn apply(state: &AppState, change: Track) {
    match change {
        Track::Fixes { fixes } => {
            for chunk in fixes.chunks(FIXES_PER_LOCK) {
                let mut t = write_tracker(&state.tracker);
                for f in chunk {
                    if let Some(subject) = Subject::from_key(&f.kind, f.id) {
                        let fix = Fix {
                            lon: f.lon,
                            lat: f.lat,
                            accuracy_m: f.accuracy_m,
                            at_ms: f.recorded_at,
                        };
                        // Checked by the node that accepted it.
                        let _ = t.update(subject.tracker_id(), fix);
                    }
                }
            }
            for f in fixes {
                if !state.hub.watched(f.org) {
                    continue;
                }
                let Some(subject) = Subject::from_key(&f.kind, f.id) else {
                    continue;
                };
                let recorded = Recorded {
                    inserted: 1,
                    transitions: f
                        .crossings
                        .iter()
                        .map(|&(at, entered, area)| {
                            let tr = if entered {
                                Transition::Entered(area)
                            } else {
                                Transition::Left(area)
                            };
                            (at, tr)
                        })
                        .collect(),
                };
                let newest = StoredFix {
                    lat: f.lat,
                    lon: f.lon,
                    accuracy_m: f.accuracy_m,
                    recorded_at: f.recorded_at,
                };
                crate::positions::announce_live(state, subject, f.org, Some(newest), &recorded);
            }
        }
        Track::Mode { user, tracking, at } => {
            if let Err(e) = state.positions.learn_mode(user, tracking, at).await {
                tracing::error!(user, error = %e, "cluster: applying another node's location-mode switch");
            }
        }
        Track::Forget { subjects } => {
            let mut t = write_tracker(&state.tracker);
            for (kind, id) in subjects {
                if let Some(s) = Subject::from_key(&kind, id) {
                    t.forget(s.tracker_id());
                }
            }
        }
        Track::Area { id } => {
            if let Err(e) = crate::areas::reload(state, id).await {
                tracing::error!(area_id = id, error = %e, "cluster: reading an area another node changed");
            }
        }
    }
}
