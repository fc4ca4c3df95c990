//! The one task through which every position write passes.
//!
//! Ordering is the point: fixes, a switch to location-less mode and retention purges are applied
//! in the order they arrive, to the database and then to the in-memory tracker, so a fix racing a
//! switch to location-less mode can never leave a position behind, in a row or in memory.
//!
//! Group commit: while one transaction commits, new requests queue; the next transaction takes
//! everything queued at once. A request is answered only after its transaction has committed,
//! so an acknowledged fix is never lost; a crash loses only fixes not yet acknowledged, which
//! the phone still holds and sends again (duplicates are ignored by `(subject, recorded_at)`).

use tokio::sync::{mpsc, oneshot};
use vigil_geofences::{Fix, Transition};

use std::sync::Arc;

use super::Subject;
use crate::areas::{SharedTracker, write_tracker};
use crate::db::{Db, now_ms};
use crate::in_tx;
use crate::live::Hub;

/// Most operations committed in one transaction.
const MAX_GROUP: usize = 512;

/// Why a write was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The person is in location-less mode: their positions are neither accepted nor kept.
    #[error("you are in location-less mode: the server does not accept your position")]
    LocationLess,
    /// The database failed; the detail is logged.
    #[error("storing positions failed: {0}")]
    Failed(String),
    /// The writer task is gone (the server is stopping).
    #[error("the position writer has stopped")]
    Stopped,
}

/// One fix as stored.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StoredFix {
    /// Latitude.
    pub lat: f64,
    /// Longitude.
    pub lon: f64,
    /// Accuracy radius in metres.
    pub accuracy_m: Option<f64>,
    /// When the device took it (Unix ms).
    pub recorded_at: i64,
}

/// What recording a batch did.
#[derive(Debug, Default)]
pub struct Recorded {
    /// Fixes stored (the rest were duplicates).
    pub inserted: usize,
    /// Geofence transitions, with the time of the fix that caused each.
    pub transitions: Vec<(i64, Transition)>,
}

enum Op {
    Record {
        subject: Subject,
        source: &'static str,
        fixes: Vec<StoredFix>,
        reply: oneshot::Sender<Result<Recorded, WriteError>>,
    },
    GoLocationLess {
        user_id: i64,
        reply: oneshot::Sender<Result<(), WriteError>>,
    },
    Expire {
        cutoff_ms: i64,
        reply: oneshot::Sender<Result<u64, WriteError>>,
    },
}

/// Handle to the writer task; cheap to clone.
#[derive(Clone, Debug)]
pub struct PositionWriter {
    tx: mpsc::Sender<Op>,
}

impl PositionWriter {
    /// Starts the writer task.
    pub fn spawn(db: Db, tracker: SharedTracker, hub: Arc<Hub>) -> PositionWriter {
        let (tx, rx) = mpsc::channel(4096);
        tokio::spawn(run(db, tracker, hub, rx));
        PositionWriter { tx }
    }

    /// Stores fixes (sorted by time) and moves the subject; answers after the commit.
    pub async fn record(
        &self,
        subject: Subject,
        source: &'static str,
        fixes: Vec<StoredFix>,
    ) -> Result<Recorded, WriteError> {
        let (reply, answer) = oneshot::channel();
        self.send(Op::Record {
            subject,
            source,
            fixes,
            reply,
        })
        .await?;
        answer.await.map_err(|_| WriteError::Stopped)?
    }

    /// Switches a person to location-less mode, deleting every position of theirs.
    pub async fn go_location_less(&self, user_id: i64) -> Result<(), WriteError> {
        let (reply, answer) = oneshot::channel();
        self.send(Op::GoLocationLess { user_id, reply }).await?;
        answer.await.map_err(|_| WriteError::Stopped)?
    }

    /// Deletes fixes older than `cutoff_ms`; returns how many history rows went.
    pub async fn expire(&self, cutoff_ms: i64) -> Result<u64, WriteError> {
        let (reply, answer) = oneshot::channel();
        self.send(Op::Expire { cutoff_ms, reply }).await?;
        answer.await.map_err(|_| WriteError::Stopped)?
    }

    async fn send(&self, op: Op) -> Result<(), WriteError> {
        self.tx.send(op).await.map_err(|_| WriteError::Stopped)
    }
}

async fn run(db: Db, tracker: SharedTracker, hub: Arc<Hub>, mut rx: mpsc::Receiver<Op>) {
    while let Some(first) = rx.recv().await {
        let mut ops = vec![first];
        while ops.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(op) => ops.push(op),
                Err(_) => break,
            }
        }
        apply(&db, &tracker, &hub, ops).await;
    }
}

/// What the transaction decided for one op, applied to memory after the commit.
enum Outcome {
    Recorded(usize),
    Refused,
    Forgot(Vec<i64>),
    Expired(u64, Vec<i64>),
}

async fn apply(db: &Db, tracker: &SharedTracker, hub: &Hub, ops: Vec<Op>) {
    let outcomes = commit(db, &ops).await;
    let outcomes = match outcomes {
        Ok(o) => o,
        Err(e) => {
            tracing::error!(error = %e, ops = ops.len(), "position write failed");
            let msg = e.to_string();
            for op in ops {
                let err = || WriteError::Failed(msg.clone());
                match op {
                    Op::Record { reply, .. } => drop(reply.send(Err(err()))),
                    Op::GoLocationLess { reply, .. } => drop(reply.send(Err(err()))),
                    Op::Expire { reply, .. } => drop(reply.send(Err(err()))),
                }
            }
            return;
        }
    };
    // Fixes are answered after the group's geofence messages are stored, so a phone that sees
    // its ack can rely on the message about the area it entered being there too.
    let (answers, notes) = move_subjects(tracker, ops, outcomes);
    if let Err(e) = crate::live::send_many(db, hub, notes).await {
        // The fixes are stored; only the people's notices of crossings are missing.
        tracing::error!(error = %e, "storing geofence messages failed");
    }
    for (reply, recorded) in answers {
        drop(reply.send(Ok(recorded)));
    }
}

type Answer = (oneshot::Sender<Result<Recorded, WriteError>>, Recorded);

/// Applies committed operations to the tracker; answers every op but recorded fixes, which are
/// returned to be answered once their geofence messages are stored.
fn move_subjects(
    tracker: &SharedTracker,
    ops: Vec<Op>,
    outcomes: Vec<Outcome>,
) -> (Vec<Answer>, Vec<crate::live::Note>) {
    let mut t = write_tracker(tracker);
    let mut answers = Vec::new();
    let mut notes = Vec::new();
    for (op, outcome) in ops.into_iter().zip(outcomes) {
        match (op, outcome) {
            (
                Op::Record {
                    subject,
                    fixes,
                    reply,
                    ..
                },
                Outcome::Recorded(inserted),
            ) => {
                let mut recorded = Recorded {
                    inserted,
                    transitions: Vec::new(),
                };
                for f in &fixes {
                    let fix = Fix {
                        lon: f.lon,
                        lat: f.lat,
                        accuracy_m: f.accuracy_m,
                        at_ms: f.recorded_at,
                    };
                    // Positions were validated before they were queued.
                    if let Ok(changes) = t.update(subject.tracker_id(), fix) {
                        recorded.transitions.extend(
                            changes
                                .left
                                .into_iter()
                                .map(|a| (f.recorded_at, Transition::Left(a))),
                        );
                        recorded.transitions.extend(
                            changes
                                .entered
                                .into_iter()
                                .map(|a| (f.recorded_at, Transition::Entered(a))),
                        );
                    }
                }
                if let Subject::User(user_id) = subject {
                    notes.extend(recorded.transitions.iter().filter_map(|(at, tr)| {
                        super::transition_note(t.areas(), user_id, *at, *tr)
                    }));
                }
                answers.push((reply, recorded));
            }
            (Op::Record { reply, .. }, _) => drop(reply.send(Err(WriteError::LocationLess))),
            (Op::GoLocationLess { reply, .. }, Outcome::Forgot(ids)) => {
                for id in ids {
                    t.forget(id);
                }
                drop(reply.send(Ok(())));
            }
            (Op::Expire { reply, .. }, Outcome::Expired(n, ids)) => {
                for id in ids {
                    t.forget(id);
                }
                drop(reply.send(Ok(n)));
            }
            (Op::GoLocationLess { reply, .. }, _) => drop(reply.send(Err(WriteError::Stopped))),
            (Op::Expire { reply, .. }, _) => drop(reply.send(Err(WriteError::Stopped))),
        }
    }
    (answers, notes)
}

async fn commit(db: &Db, ops: &[Op]) -> Result<Vec<Outcome>, sqlx::Error> {
    let received = now_ms();
    in_tx!(db, tx => {
        let mut outcomes = Vec::with_capacity(ops.len());
        for op in ops {
            let outcome = match op {
                Op::Record { subject, source, fixes, .. } => {
                    let (kind, id) = subject.key();
                    let tracking = match subject {
                        Subject::User(uid) => {
                            let mode: Option<String> = sqlx::query_scalar("SELECT location_mode FROM users WHERE id = $1")
                                .bind(uid).fetch_optional(&mut *tx).await?;
                            mode.as_deref() == Some("tracking")
                        }
                        Subject::Asset(_) => true,
                    };
                    if !tracking {
                        outcomes.push(Outcome::Refused);
                        continue;
                    }
                    let mut inserted = 0;
                    for chunk in fixes.chunks(200) {
                        let mut qb = sqlx::QueryBuilder::new(
                            "INSERT INTO position_history (subject_kind, subject_id, lat, lon, accuracy_m, recorded_at, received_at, source) ");
                        qb.push_values(chunk, |mut row, f| {
                            row.push_bind(kind).push_bind(id).push_bind(f.lat).push_bind(f.lon)
                                .push_bind(f.accuracy_m).push_bind(f.recorded_at).push_bind(received).push_bind(*source);
                        });
                        qb.push(" ON CONFLICT (subject_kind, subject_id, recorded_at) DO NOTHING");
                        inserted += qb.build().execute(&mut *tx).await?.rows_affected();
                    }
                    if let Some(newest) = fixes.iter().max_by_key(|f| f.recorded_at) {
                        // The newest fix time wins, whatever order fixes arrive in.
                        sqlx::query(
                            "INSERT INTO last_positions (subject_kind, subject_id, lat, lon, accuracy_m, recorded_at, received_at, source) \
                             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                             ON CONFLICT (subject_kind, subject_id) DO UPDATE SET lat = excluded.lat, lon = excluded.lon, \
                             accuracy_m = excluded.accuracy_m, recorded_at = excluded.recorded_at, \
                             received_at = excluded.received_at, source = excluded.source \
                             WHERE excluded.recorded_at > last_positions.recorded_at")
                            .bind(kind).bind(id).bind(newest.lat).bind(newest.lon).bind(newest.accuracy_m)
                            .bind(newest.recorded_at).bind(received).bind(*source)
                            .execute(&mut *tx).await?;
                    }
                    Outcome::Recorded(usize::try_from(inserted).unwrap_or(usize::MAX))
                }
                Op::GoLocationLess { user_id, .. } => {
                    sqlx::query("UPDATE users SET location_mode = 'location_less', updated_at = $1 WHERE id = $2")
                        .bind(received).bind(user_id).execute(&mut *tx).await?;
                    sqlx::query("DELETE FROM position_history WHERE subject_kind = 'user' AND subject_id = $1")
                        .bind(user_id).execute(&mut *tx).await?;
                    sqlx::query("DELETE FROM last_positions WHERE subject_kind = 'user' AND subject_id = $1")
                        .bind(user_id).execute(&mut *tx).await?;
                    Outcome::Forgot(vec![Subject::User(*user_id).tracker_id()])
                }
                Op::Expire { cutoff_ms, .. } => {
                    let n = sqlx::query("DELETE FROM position_history WHERE recorded_at < $1")
                        .bind(cutoff_ms).execute(&mut *tx).await?.rows_affected();
                    let gone: Vec<(String, i64)> = sqlx::query_as(
                        "DELETE FROM last_positions WHERE recorded_at < $1 RETURNING subject_kind, subject_id")
                        .bind(cutoff_ms).fetch_all(&mut *tx).await?;
                    let ids = gone.into_iter().filter_map(|(k, id)| Subject::from_key(&k, id)).map(|s| s.tracker_id()).collect();
                    Outcome::Expired(n, ids)
                }
            };
            outcomes.push(outcome);
        }
        tx.commit().await?;
        Ok(outcomes)
    })
}
