//! The one task through which every position write passes.
//!
//! Ordering is the point: fixes, switches of location mode (both ways), retention purges and
//! last-position flushes are applied in the order they arrive, to the database and then to the
//! in-memory tracker, so a fix racing a switch to location-less mode can never leave a position
//! behind, in a row or in memory. Because every switch passes through here, the task keeps each
//! person's location mode in memory and never reads it per fix.
//!
//! Group commit: while one transaction commits, new fixes queue; the next transaction takes
//! every queued fix at once and stores it with a fixed number of statements (one duplicate
//! check and one multi-row insert per 2,048 fixes), whatever the group's size. On SQLite the
//! cost that counts is the hand-off to the driver's worker thread per statement, not the rows.
//! A fix is acknowledged only after its history row has committed, so an acknowledged fix is
//! never lost; a crash loses only fixes not yet acknowledged, which the phone still holds and
//! sends again (duplicates are recognised by `(subject, recorded_at)`).
//!
//! Write-behind: the newest fix of each subject (`last_positions`) is not written with every
//! group but every `position_flush_ms`, from the subjects moved since the last flush; the
//! tracker in memory is always current. A crash therefore loses at most that many
//! milliseconds of `last_positions` updates, and [`replay_unflushed`] restores them from the
//! history at the next start, so no acknowledged fix is missing there either. The operator
//! view reads positions from the tracker, so it needs no flush; a retention purge and shutdown
//! flush first.
//!
//! The tracker is shared with every request that reads it (previews, the operator view,
//! targeting) behind a std `RwLock`, so the writer never holds it for a whole group: it moves
//! subjects [`FIXES_PER_LOCK`] fixes at a time, working out each chunk's geometry under the
//! read lock ([`Tracker::prepare`]) and storing the result under the write lock
//! ([`Tracker::apply`]: bookkeeping only), and yields to the runtime every [`YIELD_EVERY`].
//! The order is unchanged: chunks are applied in commit order and a mode switch still waits
//! for the whole group, because both pass through this one task.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use tokio::time::MissedTickBehavior;
use vigil_geofences::{Fix, SubjectId, Transition};

use super::Subject;
use crate::areas::{SharedTracker, read_tracker, write_tracker};
use crate::cluster::Cluster;
use crate::cluster::track::{Track, TrackedFix};
use crate::db::{Backend, Db, now_ms};
use crate::live::Hub;
use crate::{in_tx, on_writer};

/// Most fix requests committed in one transaction. Large on purpose: a commit writes every
/// index page it touches — about one per subject in `position_history`'s unique index, however
/// many of that subject's fixes it holds — so a commit costs about the same for one fix per
/// phone as for ten, and under load the group must be able to grow until it keeps up.
const MAX_GROUP: usize = 32_768;
/// Most fixes committed in one transaction (a request may carry up to `max_fixes_per_batch`).
const MAX_GROUP_FIXES: usize = 131_072;
/// Rows per multi-row statement: at 8 parameters a row this stays far below SQLite's 32,766
/// and PostgreSQL's 65,535 bound parameters. A power of two (see [`cached_sizes`]).
const ROWS_PER_STATEMENT: usize = 2048;
/// Most fixes moved in the tracker per lock acquisition. At 2.6 µs a fix (BENCHMARKS.md: a
/// million subjects, every country) a chunk's geometry is under 1 ms, and it runs under the
/// read lock; the write lock that follows only stores it. So a reader never waits for more
/// than one chunk's bookkeeping.
const FIXES_PER_LOCK: usize = 256;
/// Longest run of tracker chunks between two yields to the runtime: a big group (131,072 fixes
/// can take a third of a second) shares its thread, a usual one (a few ms) does not wait
/// behind every ready connection task.
const YIELD_EVERY: Duration = Duration::from_millis(2);
/// History received this long before the newest flushed fix is replayed too at start-up, in
/// case the clock stepped back while fixes were waiting to be flushed.
const REPLAY_SLACK_MS: i64 = 10_000;

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

type Reply<T> = oneshot::Sender<Result<T, WriteError>>;

struct RecordReq {
    subject: Subject,
    /// The organisation of the subject (other nodes' operators are told by it).
    org_id: i64,
    source: &'static str,
    /// Sorted by time, without two of the same time (see `validate_fixes`).
    fixes: Vec<StoredFix>,
    reply: Reply<Recorded>,
}

enum Op {
    Record(RecordReq),
    Control(Control),
}

/// Everything but fixes: each runs in a transaction of its own, after what was queued before.
enum Control {
    SetMode {
        user_id: i64,
        tracking: bool,
        reply: Reply<()>,
    },
    Expire {
        cutoff_ms: i64,
        reply: Reply<u64>,
    },
    Flush {
        reply: Reply<()>,
    },
    /// Another node committed a switch of location mode at `at`.
    Learn {
        user_id: i64,
        tracking: bool,
        at: i64,
        reply: Reply<()>,
    },
}

/// Handle to the writer task; cheap to clone.
#[derive(Clone, Debug)]
pub struct PositionWriter {
    tx: mpsc::Sender<Op>,
}

impl PositionWriter {
    /// Starts the writer task; `last_positions` is written every `flush_every`.
    pub fn spawn(
        db: Db,
        tracker: SharedTracker,
        hub: Arc<Hub>,
        cluster: Cluster,
        flush_every: Duration,
    ) -> PositionWriter {
        // Room for more than one full group, so the next one gathers while this one commits.
        let (tx, rx) = mpsc::channel(2 * MAX_GROUP);
        let writer = Writer {
            db,
            tracker,
            hub,
            cluster,
            tracking: HashMap::new(),
            accepted: HashMap::new(),
            dirty: HashMap::new(),
            last_received: 0,
        };
        tokio::spawn(run(writer, rx, flush_every.max(Duration::from_millis(1))));
        PositionWriter { tx }
    }

    /// Stores fixes (sorted by time) and moves the subject; answers after the commit.
    pub async fn record(
        &self,
        subject: Subject,
        org_id: i64,
        source: &'static str,
        fixes: Vec<StoredFix>,
    ) -> Result<Recorded, WriteError> {
        self.submit(subject, org_id, source, fixes)
            .await?
            .committed()
            .await
    }

    /// Queues fixes like [`PositionWriter::record`] without waiting for their commit, so that
    /// one connection can have several batches in the same group. Batches are applied in the
    /// order they were submitted, whoever waits for them.
    pub async fn submit(
        &self,
        subject: Subject,
        org_id: i64,
        source: &'static str,
        fixes: Vec<StoredFix>,
    ) -> Result<Queued, WriteError> {
        let (reply, answer) = oneshot::channel();
        self.send(Op::Record(RecordReq {
            subject,
            org_id,
            source,
            fixes,
            reply,
        }))
        .await?;
        Ok(Queued(answer))
    }

    /// Switches a person to location-less mode, deleting every position of theirs.
    pub async fn go_location_less(&self, user_id: i64) -> Result<(), WriteError> {
        self.set_mode(user_id, false).await
    }

    /// Switches a person back to tracking mode; fixes sent after the answer are accepted.
    pub async fn go_tracking(&self, user_id: i64) -> Result<(), WriteError> {
        self.set_mode(user_id, true).await
    }

    async fn set_mode(&self, user_id: i64, tracking: bool) -> Result<(), WriteError> {
        let (reply, answer) = oneshot::channel();
        self.send(Op::Control(Control::SetMode {
            user_id,
            tracking,
            reply,
        }))
        .await?;
        answer.await.map_err(|_| WriteError::Stopped)?
    }

    /// Applies a location-mode switch another node committed at `at`: this node stops (or
    /// starts) accepting the person's fixes, forgets their position, and deletes what it
    /// accepted from them since the switch, before it knew.
    pub async fn learn_mode(
        &self,
        user_id: i64,
        tracking: bool,
        at: i64,
    ) -> Result<(), WriteError> {
        let (reply, answer) = oneshot::channel();
        self.send(Op::Control(Control::Learn {
            user_id,
            tracking,
            at,
            reply,
        }))
        .await?;
        answer.await.map_err(|_| WriteError::Stopped)?
    }

    /// Deletes fixes older than `cutoff_ms`; returns how many history rows went.
    pub async fn expire(&self, cutoff_ms: i64) -> Result<u64, WriteError> {
        let (reply, answer) = oneshot::channel();
        self.send(Op::Control(Control::Expire { cutoff_ms, reply }))
            .await?;
        answer.await.map_err(|_| WriteError::Stopped)?
    }

    /// Writes the newest fix of every subject moved since the last flush to `last_positions`;
    /// answers when every fix acknowledged before the call is there.
    pub async fn flush(&self) -> Result<(), WriteError> {
        let (reply, answer) = oneshot::channel();
        self.send(Op::Control(Control::Flush { reply })).await?;
        answer.await.map_err(|_| WriteError::Stopped)?
    }

    async fn send(&self, op: Op) -> Result<(), WriteError> {
        self.tx.send(op).await.map_err(|_| WriteError::Stopped)
    }
}

/// Fixes in the writer's queue; dropping this does not withdraw them.
#[derive(Debug)]
pub struct Queued(oneshot::Receiver<Result<Recorded, WriteError>>);

impl Queued {
    /// What the writer did, once the fixes' group (and its geofence messages) committed.
    pub async fn committed(self) -> Result<Recorded, WriteError> {
        self.0.await.map_err(|_| WriteError::Stopped)?
    }

    /// [`Queued::committed`] if the group has committed already, without waiting (and without
    /// leaving a waker behind).
    pub fn try_committed(&mut self) -> Option<Result<Recorded, WriteError>> {
        match self.0.try_recv() {
            Ok(result) => Some(result),
            Err(oneshot::error::TryRecvError::Empty) => None,
            Err(oneshot::error::TryRecvError::Closed) => Some(Err(WriteError::Stopped)),
        }
    }

    /// Polls for [`Queued::committed`], so that a connection can wait for the oldest of its
    /// queued batches in place, without a future of its own per batch.
    pub fn poll_committed(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<Recorded, WriteError>> {
        std::pin::Pin::new(&mut self.0)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(WriteError::Stopped)))
    }
}

/// A subject's newest fix, waiting to be written to `last_positions`.
#[derive(Clone, Copy, Debug)]
struct Latest {
    fix: StoredFix,
    received_at: i64,
    source: &'static str,
}

/// A row of `last_positions`.
struct LastRow<'a> {
    subject: Subject,
    fix: StoredFix,
    received_at: i64,
    source: &'a str,
}

impl Latest {
    fn row(&self, subject: Subject) -> LastRow<'static> {
        LastRow {
            subject,
            fix: self.fix,
            received_at: self.received_at,
            source: self.source,
        }
    }
}

/// Upserts rows into `last_positions`, a statement per [`ROWS_PER_STATEMENT`]; the newest fix
/// time wins, so a late flush never overwrites a newer position.
async fn upsert_latest<E, DB>(exec: &mut E, rows: &[LastRow<'_>]) -> Result<(), sqlx::Error>
where
    for<'e> &'e mut E: sqlx::Executor<'e, Database = DB>,
    DB: sqlx::Database + sqlx::database::HasStatementCache,
    <DB as sqlx::Database>::Arguments: sqlx::IntoArguments<DB> + Default,
    for<'q> i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> f64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> Option<f64>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    // In one order everywhere: the nodes of a cluster upsert overlapping rows at once (each
    // replays the same unflushed history at start), and rows locked in different orders
    // deadlocked six nodes started together.
    let mut sorted: Vec<&LastRow<'_>> = rows.iter().collect();
    sorted.sort_unstable_by_key(|r| r.subject.key());
    for chunk in sorted.chunks(ROWS_PER_STATEMENT) {
        let mut qb = sqlx::QueryBuilder::<DB>::new(
            "INSERT INTO last_positions (subject_kind, subject_id, lat, lon, accuracy_m, recorded_at, received_at, source) ",
        );
        qb.push_values(chunk, |mut row, r| {
            let (kind, id) = r.subject.key();
            row.push_bind(kind)
                .push_bind(id)
                .push_bind(r.fix.lat)
                .push_bind(r.fix.lon)
                .push_bind(r.fix.accuracy_m)
                .push_bind(r.fix.recorded_at)
                .push_bind(r.received_at)
                .push_bind(r.source);
        });
        qb.push(
            " ON CONFLICT (subject_kind, subject_id) DO UPDATE SET lat = excluded.lat, lon = excluded.lon, \
             accuracy_m = excluded.accuracy_m, recorded_at = excluded.recorded_at, \
             received_at = excluded.received_at, source = excluded.source \
             WHERE excluded.recorded_at > last_positions.recorded_at",
        );
        qb.build().persistent(false).execute(&mut *exec).await?;
    }
    Ok(())
}

struct Writer {
    db: Db,
    tracker: SharedTracker,
    hub: Arc<Hub>,
    /// Where committed changes go for the other nodes' trackers (nowhere on a single node).
    cluster: Cluster,
    /// When this node last accepted a fix of each person (`received_at`), so that a switch
    /// to location-less committed elsewhere also removes what raced it here.
    accepted: HashMap<i64, i64>,
    /// Location mode (true: tracking) of every person who has sent a fix since start, as
    /// committed; exact because every switch passes through this task.
    tracking: HashMap<i64, bool>,
    /// Newest fix of every subject moved since the last flush.
    dirty: HashMap<Subject, Latest>,
    /// The `received_at` of the last group: each group takes a later one, even within one
    /// millisecond, so that its own rows are told from those stored before it.
    last_received: i64,
}

async fn run(mut w: Writer, mut rx: mpsc::Receiver<Op>, flush_every: Duration) {
    let mut tick = tokio::time::interval(flush_every);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    // A control op that ended the previous group; it runs next, on its own.
    let mut next: Option<Control> = None;
    loop {
        let first = match next.take() {
            Some(control) => Op::Control(control),
            // The timer first: a steady stream of fixes must not postpone flushes forever.
            None => tokio::select! {
                biased;
                _ = tick.tick() => {
                    if let Err(e) = w.flush().await {
                        tracing::error!(error = %e, pending = w.dirty.len(), "flushing last positions failed; retrying later");
                    }
                    continue;
                }
                op = rx.recv() => match op {
                    Some(op) => op,
                    None => break,
                },
            },
        };
        let first = match first {
            Op::Record(req) => req,
            Op::Control(control) => {
                w.control(control).await;
                continue;
            }
        };
        let mut fixes = first.fixes.len();
        let mut group = vec![first];
        while group.len() < MAX_GROUP && fixes < MAX_GROUP_FIXES {
            match rx.try_recv() {
                Ok(Op::Record(req)) => {
                    fixes += req.fixes.len();
                    group.push(req);
                }
                Ok(Op::Control(control)) => {
                    next = Some(control);
                    break;
                }
                Err(_) => break,
            }
        }
        w.record_group(group).await;
    }
    // Every handle is gone. Normally shutdown has flushed already, before closing the pool.
    if !w.dirty.is_empty()
        && !on_writer!(&w.db, pool => pool.is_closed())
        && let Err(e) = w.flush().await
    {
        tracing::error!(error = %e, "final flush of last positions failed");
    }
}

/// What the group's transaction found.
struct Stored {
    /// Location modes read for people not yet known to the writer.
    modes: Vec<(i64, String)>,
    /// Fixes of the group already stored before it: `(tracker id, recorded_at)`.
    existing: HashSet<(i64, i64)>,
}

type Answer = (Reply<Recorded>, Recorded);

impl Writer {
    async fn record_group(&mut self, group: Vec<RecordReq>) {
        let mut unknown: Vec<i64> = group
            .iter()
            .filter_map(|r| match r.subject {
                Subject::User(id) if !self.tracking.contains_key(&id) => Some(id),
                _ => None,
            })
            .collect();
        unknown.sort_unstable();
        unknown.dedup();
        let received = now_ms().max(self.last_received + 1);
        self.last_received = received;
        let stored = store_group(&self.db, &unknown, &self.tracking, &group, received).await;
        let stored = match stored {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, requests = group.len(), "position write failed");
                let msg = e.to_string();
                for r in group {
                    drop(r.reply.send(Err(WriteError::Failed(msg.clone()))));
                }
                return;
            }
        };
        for (id, mode) in stored.modes {
            self.tracking.insert(id, mode == "tracking");
        }
        // Fixes are answered after the group's geofence messages are stored, so a phone that
        // sees its ack can rely on the message about the area it entered being there too.
        let (answers, notes, tracked) = self.move_subjects(group, &stored.existing, received).await;
        if let Err(e) = crate::stream::send_many(&self.db, &self.hub, notes).await {
            // The fixes are stored; only the people's notices of crossings are missing.
            tracing::error!(error = %e, "storing geofence messages failed");
        }
        if !tracked.is_empty() {
            self.cluster.track(Track::Fixes { fixes: tracked });
        }
        for (reply, recorded) in answers {
            drop(reply.send(Ok(recorded)));
        }
    }

    /// Applies a committed group to the tracker and the write-behind set; answers refused
    /// requests and returns the rest to be answered once their geofence messages are stored.
    async fn move_subjects(
        &mut self,
        group: Vec<RecordReq>,
        existing: &HashSet<(i64, i64)>,
        received: i64,
    ) -> (Vec<Answer>, Vec<crate::stream::Note>, Vec<TrackedFix>) {
        struct Moving {
            reply: Reply<Recorded>,
            subject: Subject,
            org_id: i64,
            newest: Option<StoredFix>,
            recorded: Recorded,
        }
        let mut moving: Vec<Moving> = Vec::with_capacity(group.len());
        // Every fix of the group in order, and the request it came with.
        let mut fixes: Vec<(SubjectId, Fix)> = Vec::new();
        let mut owners: Vec<u32> = Vec::new();
        let mut claimed: HashSet<(i64, i64)> = HashSet::new();
        for req in group {
            if !is_tracked(&self.tracking, req.subject) {
                drop(req.reply.send(Err(WriteError::LocationLess)));
                continue;
            }
            let tid = req.subject.tracker_id();
            if let Subject::User(id) = req.subject
                && self.cluster.is_clustered()
            {
                self.accepted.insert(id, received);
            }
            // The first request of the group to carry a fix stored it; a later one is a duplicate.
            let inserted = req
                .fixes
                .iter()
                .filter(|f| {
                    let key = (tid, f.recorded_at);
                    !existing.contains(&key) && claimed.insert(key)
                })
                .count();
            if let Some(newest) = req.fixes.last() {
                // The newest fix time wins, whatever order fixes arrive in.
                let latest = Latest {
                    fix: *newest,
                    received_at: received,
                    source: req.source,
                };
                self.dirty
                    .entry(req.subject)
                    .and_modify(|l| {
                        if latest.fix.recorded_at > l.fix.recorded_at {
                            *l = latest;
                        }
                    })
                    .or_insert(latest);
            }
            let owner = u32::try_from(moving.len()).unwrap_or(u32::MAX);
            for f in &req.fixes {
                fixes.push((
                    tid,
                    Fix {
                        lon: f.lon,
                        lat: f.lat,
                        accuracy_m: f.accuracy_m,
                        at_ms: f.recorded_at,
                    },
                ));
                owners.push(owner);
            }
            moving.push(Moving {
                reply: req.reply,
                subject: req.subject,
                org_id: req.org_id,
                newest: req.fixes.last().copied(),
                recorded: Recorded {
                    inserted,
                    transitions: Vec::new(),
                },
            });
        }

        // Chunks under short locks (see FIXES_PER_LOCK), giving the runtime thread back once
        // a chunk ends more than YIELD_EVERY after the last time. Not after every chunk: under
        // load thousands of connection tasks are ready, and each yield puts this task, which
        // all of them wait for, behind them. Not `spawn_blocking`: the work is split finely
        // enough for a runtime thread, and a hand-off to another thread per group is the cost
        // this writer is built to avoid; and not `block_in_place`, which would keep the write
        // lock for the whole group (readers wait) and panics on a current-thread runtime.
        let mut notes = Vec::new();
        let mut since_yield = Instant::now();
        for (chunk, owners) in fixes
            .chunks(FIXES_PER_LOCK)
            .zip(owners.chunks(FIXES_PER_LOCK))
        {
            if since_yield.elapsed() >= YIELD_EVERY {
                tokio::task::yield_now().await;
                since_yield = Instant::now();
            }
            let prepared = read_tracker(&self.tracker).prepare(chunk);
            let results = write_tracker(&self.tracker).apply(prepared);
            let mut crossings: Vec<(Subject, i64, Transition)> = Vec::new();
            for ((result, (_, fix)), &owner) in results.into_iter().zip(chunk).zip(owners) {
                // Positions were validated before they were queued.
                let Ok(changes) = result else { continue };
                let Some(m) = moving.get_mut(owner as usize) else {
                    continue;
                };
                let at = fix.at_ms;
                let left = changes.left.into_iter().map(Transition::Left);
                for tr in left.chain(changes.entered.into_iter().map(Transition::Entered)) {
                    m.recorded.transitions.push((at, tr));
                    crossings.push((m.subject, at, tr));
                }
            }
            if !crossings.is_empty() {
                // The people's messages about this chunk's crossings, in the order they happened.
                let t = read_tracker(&self.tracker);
                notes.extend(
                    crossings
                        .into_iter()
                        .filter_map(|(subject, at, tr)| match subject {
                            Subject::User(user_id) => {
                                super::transition_note(t.areas(), user_id, at, tr)
                            }
                            Subject::Asset(_) => None,
                        }),
                );
            }
        }
        let tracked = if self.cluster.is_clustered() {
            moving
                .iter()
                .filter_map(|m| {
                    let newest = m.newest?;
                    Some(TrackedFix::new(
                        m.subject,
                        m.org_id,
                        newest,
                        &m.recorded.transitions,
                    ))
                })
                .collect()
        } else {
            Vec::new()
        };
        let answers = moving.into_iter().map(|m| (m.reply, m.recorded)).collect();
        (answers, notes, tracked)
    }

    /// Runs a mode switch, purge or flush on its own, after everything queued before it.
    async fn control(&mut self, op: Control) {
        match op {
            Control::SetMode {
                user_id,
                tracking,
                reply,
            } => {
                let at = now_ms();
                let result = set_mode(&self.db, user_id, tracking).await;
                if result.is_ok() {
                    self.switched(user_id, tracking);
                    self.cluster.track(Track::Mode {
                        user: user_id,
                        tracking,
                        at,
                    });
                }
                drop(reply.send(result.map_err(failed)));
            }
            Control::Expire { cutoff_ms, reply } => {
                // Written first, so that only positions really older than the cutoff go.
                let pending: Vec<LastRow<'_>> = self.dirty.iter().map(|(s, l)| l.row(*s)).collect();
                let result = expire(&self.db, &pending, cutoff_ms).await;
                let result = result.map(|(n, gone)| {
                    self.dirty.clear();
                    {
                        let mut t = write_tracker(&self.tracker);
                        for s in &gone {
                            t.forget(s.tracker_id());
                        }
                    }
                    if !gone.is_empty() {
                        let subjects = gone
                            .iter()
                            .map(|s| {
                                let (k, id) = s.key();
                                (k.to_string(), id)
                            })
                            .collect();
                        self.cluster.track(Track::Forget { subjects });
                    }
                    n
                });
                drop(reply.send(result.map_err(failed)));
            }
            Control::Flush { reply } => {
                drop(reply.send(self.flush().await.map_err(failed)));
            }
            Control::Learn {
                user_id,
                tracking,
                at,
                reply,
            } => {
                let raced = !tracking && self.accepted.get(&user_id).is_some_and(|r| *r >= at);
                let result = if raced {
                    purge_since(&self.db, user_id, at).await
                } else {
                    Ok(())
                };
                self.switched(user_id, tracking);
                drop(reply.send(result.map_err(failed)));
            }
        }
    }

    /// Memory after a committed switch of location mode (here or on another node).
    fn switched(&mut self, user_id: i64, tracking: bool) {
        self.tracking.insert(user_id, tracking);
        if !tracking {
            let subject = Subject::User(user_id);
            self.dirty.remove(&subject);
            self.accepted.remove(&user_id);
            write_tracker(&self.tracker).forget(subject.tracker_id());
        }
    }

    async fn flush(&mut self) -> Result<(), sqlx::Error> {
        if self.dirty.is_empty() {
            return Ok(());
        }
        let pending: Vec<LastRow<'_>> = self.dirty.iter().map(|(s, l)| l.row(*s)).collect();
        in_tx!(&self.db, tx => {
            upsert_latest(&mut *tx, &pending).await?;
        });
        self.dirty.clear();
        Ok(())
    }
}

fn failed(e: sqlx::Error) -> WriteError {
    tracing::error!(error = %e, "position write failed");
    WriteError::Failed(e.to_string())
}

fn is_tracked(tracking: &HashMap<i64, bool>, subject: Subject) -> bool {
    match subject {
        // Someone unknown to the database is refused, as before they were cached.
        Subject::User(id) => tracking.get(&id).copied().unwrap_or(false),
        Subject::Asset(_) => true,
    }
}

/// One transaction: the modes of people not yet known, one multi-row insert of the group's
/// fixes, and which of them were stored already.
async fn store_group(
    db: &Db,
    unknown: &[i64],
    known: &HashMap<i64, bool>,
    group: &[RecordReq],
    received: i64,
) -> Result<Stored, sqlx::Error> {
    let backend = db.backend();
    in_tx!(db, tx => {
        let mut modes: Vec<(i64, String)> = Vec::new();
        for chunk in unknown.chunks(ROWS_PER_STATEMENT) {
            let mut qb = sqlx::QueryBuilder::new("SELECT id, location_mode FROM users WHERE id IN (");
            let mut ids = qb.separated(", ");
            for id in chunk {
                ids.push_bind(*id);
            }
            qb.push(")");
            modes.extend(qb.build_query_as::<(i64, String)>().persistent(false).fetch_all(&mut *tx).await?);
        }
        let found: HashMap<i64, bool> = modes.iter().map(|(id, m)| (*id, m == "tracking")).collect();
        let tracked = |s: Subject| match s {
            Subject::User(id) => known.get(&id).or(found.get(&id)).copied().unwrap_or(false),
            Subject::Asset(_) => true,
        };
        // Each fix once, from the first request that carries it.
        let mut seen: HashSet<(i64, i64)> = HashSet::new();
        let rows: Vec<(Subject, &'static str, StoredFix)> = group
            .iter()
            .filter(|r| tracked(r.subject))
            .flat_map(|r| r.fixes.iter().map(move |f| (r.subject, r.source, *f)))
            .filter(|(s, _, f)| seen.insert((s.tracker_id(), f.recorded_at)))
            .collect();
        // Insert first and look for duplicates only if some row was not inserted: they are
        // rare (a resend after a lost ack). SQLite's `OR IGNORE` (rather than `ON CONFLICT DO
        // NOTHING`) lets it skip the statement journal it otherwise keeps for every multi-row
        // insert, in case a CHECK failed halfway; our rows always pass those checks.
        let insert = match backend {
            Backend::Sqlite => "INSERT OR IGNORE INTO position_history ",
            Backend::Postgres => "INSERT INTO position_history ",
        };
        let mut inserted: u64 = 0;
        for chunk in cached_sizes(&rows) {
            let mut qb = sqlx::QueryBuilder::new(insert);
            qb.push("(subject_kind, subject_id, lat, lon, accuracy_m, recorded_at, received_at, source) ");
            qb.push_values(chunk, |mut row, (s, source, f)| {
                let (kind, id) = s.key();
                row.push_bind(kind).push_bind(id).push_bind(f.lat).push_bind(f.lon)
                    .push_bind(f.accuracy_m).push_bind(f.recorded_at).push_bind(received).push_bind(*source);
            });
            if backend == Backend::Postgres {
                qb.push(" ON CONFLICT (subject_kind, subject_id, recorded_at) DO NOTHING");
            }
            inserted += qb.build().execute(&mut *tx).await?.rows_affected();
        }
        // The rows stored before this group are the ones received at another time: each group
        // has a `received` of its own (see `Writer::last_received`).
        let mut existing: HashSet<(i64, i64)> = HashSet::new();
        if inserted < rows.len() as u64 {
            for chunk in rows.chunks(ROWS_PER_STATEMENT) {
                let mut qb = sqlx::QueryBuilder::new("SELECT h.subject_kind, h.subject_id, h.recorded_at FROM (");
                qb.push_values(chunk, |mut row, (s, _, f)| {
                    let (kind, id) = s.key();
                    row.push_bind(kind).push_bind(id).push_bind(f.recorded_at);
                });
                qb.push(") AS k JOIN position_history h ON h.subject_kind = k.column1 AND h.subject_id = k.column2 \
                         AND h.recorded_at = k.column3 AND h.received_at <> ");
                qb.push_bind(received);
                let found: Vec<(String, i64, i64)> = qb.build_query_as().persistent(false).fetch_all(&mut *tx).await?;
                existing.extend(found.into_iter().filter_map(|(kind, id, at)| {
                    Subject::from_key(&kind, id).map(|s| (s.tracker_id(), at))
                }));
            }
        }
        Ok(Stored { modes, existing })
    })
}

/// Splits `rows` into statements of [`ROWS_PER_STATEMENT`] rows, then of powers of two, largest
/// first. A statement of each of these dozen sizes is prepared once per connection and kept in
/// sqlx's statement cache; a statement of the group's own size would be parsed afresh for every
/// group, at a cost that grows with its rows (6 % of the server's CPU time at one fix per
/// message under `perf`, 2026-12-03). The price is a few more statements per group, at most one
/// per bit of the group's size.
fn cached_sizes<T>(rows: &[T]) -> impl Iterator<Item = &[T]> {
    let mut rest = rows;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let n = rest
            .len()
            .min(ROWS_PER_STATEMENT)
            .checked_ilog2()
            .map_or(1, |bits| 1 << bits);
        let (head, tail) = rest.split_at(n);
        rest = tail;
        Some(head)
    })
}

async fn set_mode(db: &Db, user_id: i64, tracking: bool) -> Result<(), sqlx::Error> {
    let now = now_ms();
    if tracking {
        return on_writer!(db, pool => sqlx::query(
            "UPDATE users SET location_mode = 'tracking', updated_at = $1 WHERE id = $2")
            .bind(now).bind(user_id).execute(pool).await.map(drop));
    }
    in_tx!(db, tx => {
        sqlx::query("UPDATE users SET location_mode = 'location_less', updated_at = $1 WHERE id = $2")
            .bind(now).bind(user_id).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM position_history WHERE subject_kind = 'user' AND subject_id = $1")
            .bind(user_id).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM last_positions WHERE subject_kind = 'user' AND subject_id = $1")
            .bind(user_id).execute(&mut *tx).await?;
        Ok(())
    })
}

/// Deletes the positions of a person received since `since`: those this node accepted after
/// another node had switched them to location-less, before it learned of it.
async fn purge_since(db: &Db, user_id: i64, since: i64) -> Result<(), sqlx::Error> {
    in_tx!(db, tx => {
        sqlx::query("DELETE FROM position_history WHERE subject_kind = 'user' AND subject_id = $1 AND received_at >= $2")
            .bind(user_id).bind(since).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM last_positions WHERE subject_kind = 'user' AND subject_id = $1")
            .bind(user_id).execute(&mut *tx).await?;
        Ok(())
    })
}

/// Flushes `pending`, then deletes history and last positions older than the cutoff; returns
/// the history rows deleted and the subjects whose last position went.
async fn expire(
    db: &Db,
    pending: &[LastRow<'_>],
    cutoff_ms: i64,
) -> Result<(u64, Vec<Subject>), sqlx::Error> {
    in_tx!(db, tx => {
        upsert_latest(&mut *tx, pending).await?;
        let n = sqlx::query("DELETE FROM position_history WHERE recorded_at < $1")
            .bind(cutoff_ms).execute(&mut *tx).await?.rows_affected();
        let gone: Vec<(String, i64)> = sqlx::query_as(
            "DELETE FROM last_positions WHERE recorded_at < $1 RETURNING subject_kind, subject_id")
            .bind(cutoff_ms).fetch_all(&mut *tx).await?;
        Ok((n, gone.into_iter().filter_map(|(k, id)| Subject::from_key(&k, id)).collect()))
    })
}

type HistoryRow = (i64, String, i64, f64, f64, Option<f64>, i64, i64, String);

/// At start-up, before the tracker is loaded: writes to `last_positions` the fixes a crash
/// kept from being flushed. They are the history rows received since the newest flushed fix
/// (ids grow in commit order: one writer), read newest first a page at a time. Returns how
/// many subjects were brought up to date.
pub async fn replay_unflushed(db: &Db) -> Result<usize, sqlx::Error> {
    let flushed: Option<i64> = on_writer!(db, pool => sqlx::query_scalar(
        "SELECT MAX(received_at) FROM last_positions").fetch_one(pool).await?);
    let since = flushed.map_or(i64::MIN, |t| t.saturating_sub(REPLAY_SLACK_MS));
    let mut newest: HashMap<Subject, HistoryRow> = HashMap::new();
    let mut before = i64::MAX;
    loop {
        let page: Vec<HistoryRow> = on_writer!(db, pool => sqlx::query_as(
            "SELECT id, subject_kind, subject_id, lat, lon, accuracy_m, recorded_at, received_at, source \
             FROM position_history WHERE id < $1 ORDER BY id DESC LIMIT 1000")
            .bind(before).fetch_all(pool).await?);
        let mut done = page.len() < 1000;
        for row in page {
            before = row.0;
            if row.7 < since {
                done = true;
                break;
            }
            let Some(subject) = Subject::from_key(&row.1, row.2) else {
                continue;
            };
            match newest.get(&subject) {
                Some(seen) if seen.6 >= row.6 => {}
                _ => {
                    newest.insert(subject, row);
                }
            }
        }
        if done {
            break;
        }
    }
    if newest.is_empty() {
        return Ok(0);
    }
    let rows: Vec<LastRow<'_>> = newest
        .iter()
        .map(|(subject, r)| LastRow {
            subject: *subject,
            fix: StoredFix {
                lat: r.3,
                lon: r.4,
                accuracy_m: r.5,
                recorded_at: r.6,
            },
            received_at: r.7,
            source: &r.8,
        })
        .collect();
    in_tx!(db, tx => {
        upsert_latest(&mut *tx, &rows).await?;
    });
    Ok(rows.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_is_inserted_in_statements_of_a_few_sizes() {
        assert!(ROWS_PER_STATEMENT.is_power_of_two());
        for n in [0, 1, 2, 3, 7, 64, 1000, 2047, 2048, 2049, 5000] {
            let rows: Vec<usize> = (0..n).collect();
            let chunks: Vec<&[usize]> = cached_sizes(&rows).collect();
            let flat: Vec<usize> = chunks.concat();
            assert_eq!(flat, rows, "{n}: every row once, in order");
            assert!(
                chunks
                    .iter()
                    .all(|c| c.len().is_power_of_two() && c.len() <= ROWS_PER_STATEMENT)
            );
            let full = n / ROWS_PER_STATEMENT;
            let rest = (n % ROWS_PER_STATEMENT).count_ones() as usize;
            assert_eq!(chunks.len(), full + rest, "{n}");
        }
    }
}
