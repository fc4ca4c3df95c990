//! The single writer of roll-call answers: whatever has queued up is committed in one
//! transaction, and each answer is acknowledged only after its commit.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::{AccountInput, AnswerInput, AnswerStatus, board};
use crate::AppState;
use crate::db::{Db, now_ms};
use crate::error::{AppError, AppResult};
use crate::live::Hub;
use crate::{in_tx, on_writer};

/// Most answers in one transaction.
const MAX_GROUP: usize = 5_000;
/// How often boards of roll-calls with new answers are pushed, at most.
const BOARD_EVERY: Duration = Duration::from_millis(250);

/// A checked answer, from the person or from an operator.
#[derive(Debug, Clone)]
pub struct Answer {
    user_id: i64,
    dependant_id: i64,
    status: AnswerStatus,
    note: Option<String>,
    position: Option<(f64, f64)>,
    via: &'static str,
    recorded_by: Option<i64>,
    how: Option<String>,
    at: i64,
}

fn checked_note(note: Option<&str>, at: &str) -> AppResult<Option<String>> {
    let note = note.map(str::trim).filter(|n| !n.is_empty());
    if note.is_some_and(|n| n.chars().count() > 2_000) {
        return Err(AppError::invalid(at, "at most 2,000 characters"));
    }
    Ok(note.map(str::to_string))
}

/// Checks a person's own answer.
pub fn checked(input: &AnswerInput, user_id: i64, now: i64) -> AppResult<Answer> {
    if let Some(p) = &input.position {
        AppError::check(crate::sos::checked_position(p, now))?;
    }
    Ok(Answer {
        user_id,
        dependant_id: input.dependant_id.unwrap_or(0),
        status: input.status,
        note: checked_note(input.note.as_deref(), "note")?,
        position: input.position.as_ref().map(|p| (p.lat, p.lon)),
        via: "app",
        recorded_by: None,
        how: None,
        at: now,
    })
}

/// Checks an operator's "accounted for by other means".
pub fn accounted(input: &AccountInput, operator: i64, now: i64) -> AppResult<Answer> {
    let how = input.how.trim();
    if how.is_empty() || how.chars().count() > 200 {
        return Err(AppError::invalid(
            "how",
            "required: how they were reached, 1 to 200 characters",
        ));
    }
    Ok(Answer {
        user_id: input.user_id,
        dependant_id: input.dependant_id.unwrap_or(0),
        status: input.status,
        note: checked_note(input.note.as_deref(), "note")?,
        position: None,
        via: "operator",
        recorded_by: Some(operator),
        how: Some(how.to_string()),
        at: now,
    })
}

/// Why an answer was not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refused {
    NotAsked,
    Closed,
    Failed,
}

/// An answer waiting for its commit: roll-call, answer, whom to tell.
type Pending = (i64, Answer, oneshot::Sender<Result<(), Refused>>);

#[derive(Debug)]
enum Job {
    Answer {
        rollcall_id: i64,
        answer: Answer,
        done: oneshot::Sender<Result<(), Refused>>,
    },
    Flush(oneshot::Sender<()>),
}

/// Handle to the answer writer; cheap to clone.
#[derive(Clone, Debug)]
pub struct AnswerWriter {
    tx: mpsc::Sender<Job>,
}

/// Jobs the writer's queue holds. A full queue makes the next answer wait for room (its
/// request slows down; nothing is dropped): 50,000 answers in a minute never come near it.
pub const QUEUE: usize = 2 * MAX_GROUP;

impl AnswerWriter {
    /// Starts the writer. When `stop` is cancelled it takes no new answers, commits every one
    /// already queued and ends; the boards it owes are pushed by then.
    pub fn spawn(
        db: Db,
        hub: std::sync::Arc<Hub>,
        tracker: crate::areas::SharedTracker,
        background: &crate::Background,
    ) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        background.tasks.spawn(run(
            db,
            hub,
            tracker,
            rx,
            background.tasks.clone(),
            background.stop.clone(),
        ));
        Self { tx }
    }

    /// Stores an answer; returns once it is committed.
    pub async fn submit(&self, rollcall_id: i64, answer: Answer) -> AppResult<()> {
        let (done, wait) = oneshot::channel();
        let (user, dependant) = (answer.user_id, answer.dependant_id);
        self.tx
            .send(Job::Answer {
                rollcall_id,
                answer,
                done,
            })
            .await
            .map_err(|_| AppError::Internal(anyhow::anyhow!("the answer writer has stopped")))?;
        match wait.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(Refused::NotAsked)) => Err(AppError::NotFound(if dependant == 0 {
                format!("person {user} was not asked in roll-call {rollcall_id}")
            } else {
                format!("dependant {dependant} of person {user} is not on roll-call {rollcall_id}")
            })),
            Ok(Err(Refused::Closed)) => Err(AppError::Conflict(format!(
                "roll-call {rollcall_id} is closed; its report is final"
            ))),
            _ => Err(AppError::Internal(anyhow::anyhow!(
                "storing an answer failed"
            ))),
        }
    }

    /// Waits until everything submitted before is committed.
    pub async fn flush(&self) -> AppResult<()> {
        let (done, wait) = oneshot::channel();
        self.tx
            .send(Job::Flush(done))
            .await
            .map_err(|_| AppError::Internal(anyhow::anyhow!("the answer writer has stopped")))?;
        wait.await
            .map_err(|_| AppError::Internal(anyhow::anyhow!("the answer writer has stopped")))
    }
}

async fn run(
    db: Db,
    hub: std::sync::Arc<Hub>,
    tracker: crate::areas::SharedTracker,
    mut rx: mpsc::Receiver<Job>,
    tasks: tokio_util::task::TaskTracker,
    stop: tokio_util::sync::CancellationToken,
) {
    // Boards are counted by a task of their own: counting a roll-call of 70,000 rows takes
    // ~100 ms, and answers arriving meanwhile would otherwise wait that long for their commit.
    // Its queue holds roll-call ids, each at most once per tick: unbounded is bounded by the
    // number of open roll-calls.
    let (dirty, dirty_rx) = mpsc::unbounded_channel();
    tasks.spawn(refresh_boards(db.clone(), hub, tracker, dirty_rx));
    while let Some(jobs) = crate::batch::next_group(&mut rx, &stop, MAX_GROUP).await {
        let mut answers = Vec::new();
        let mut flushes = Vec::new();
        for job in jobs {
            match job {
                Job::Answer {
                    rollcall_id,
                    answer,
                    done,
                } => answers.push((rollcall_id, answer, done)),
                Job::Flush(done) => flushes.push(done),
            }
        }
        let outcomes = match write(&db, &answers).await {
            Ok(o) => o,
            Err(e) => {
                tracing::error!(error = %e, answers = answers.len(), "roll-call answers: write failed");
                vec![Err(Refused::Failed); answers.len()]
            }
        };
        let mut changed = HashSet::new();
        for ((rollcall_id, _, done), outcome) in answers.into_iter().zip(outcomes) {
            if outcome.is_ok() {
                changed.insert(rollcall_id);
            }
            let _ = done.send(outcome);
        }
        for id in changed {
            let _ = dirty.send(id);
        }
        for done in flushes {
            let _ = done.send(());
        }
    }
}

/// Pushes the boards of roll-calls with new answers, at most every [`BOARD_EVERY`].
async fn refresh_boards(
    db: Db,
    hub: std::sync::Arc<Hub>,
    tracker: crate::areas::SharedTracker,
    mut changed: mpsc::UnboundedReceiver<i64>,
) {
    let mut dirty: HashSet<i64> = HashSet::new();
    let mut tick = tokio::time::interval(BOARD_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            id = changed.recv() => match id {
                Some(id) => {
                    dirty.insert(id);
                }
                None => break,
            },
            _ = tick.tick(), if !dirty.is_empty() => {
                for id in std::mem::take(&mut dirty) {
                    publish_board(&db, &hub, &tracker, id).await;
                }
            }
        }
    }
    // The writer has stopped: the last answers' boards still go out.
    for id in dirty {
        publish_board(&db, &hub, &tracker, id).await;
    }
}

/// Counts a board whole (`by_area` too, as the REST answer has it) and pushes it.
async fn publish_board(db: &Db, hub: &Hub, tracker: &crate::areas::SharedTracker, id: i64) {
    match board::compute(db, tracker, id).await {
        Ok((org, b)) => board::publish_to(hub, org, id, &b),
        Err(e) => tracing::error!(error = %e, rollcall = id, "roll-call board refresh failed"),
    }
}

async fn write(db: &Db, answers: &[Pending]) -> Result<Vec<Result<(), Refused>>, sqlx::Error> {
    if answers.is_empty() {
        return Ok(Vec::new());
    }
    in_tx!(db, tx => {
        // Per roll-call: None = unknown, Some(true) = closed.
        let mut closed: HashMap<i64, Option<bool>> = HashMap::new();
        let mut out = Vec::with_capacity(answers.len());
        for (rollcall_id, a, _) in answers {
            if !closed.contains_key(rollcall_id) {
                let c: Option<Option<i64>> = sqlx::query_scalar("SELECT closed_at FROM rollcalls WHERE id = $1")
                    .bind(*rollcall_id).fetch_optional(&mut *tx).await?;
                closed.insert(*rollcall_id, c.map(|c| c.is_some()));
            }
            match closed.get(rollcall_id).copied().flatten() {
                None => {
                    out.push(Err(Refused::NotAsked));
                    continue;
                }
                Some(true) => {
                    out.push(Err(Refused::Closed));
                    continue;
                }
                Some(false) => {}
            }
            let (lat, lon) = a.position.map_or((None, None), |(lat, lon)| (Some(lat), Some(lon)));
            let changed = sqlx::query(
                "UPDATE rollcall_people SET status = $4, note = $5, lat = $6, lon = $7, answered_at = $8, answered_via = $9, \
                 accounted_by = $10, accounted_how = $11, next_reminder_at = NULL, delivered_at = COALESCE(delivered_at, $8) \
                 WHERE rollcall_id = $1 AND user_id = $2 AND dependant_id = $3")
                .bind(*rollcall_id).bind(a.user_id).bind(a.dependant_id).bind(a.status.as_str()).bind(&a.note)
                .bind(lat).bind(lon).bind(a.at).bind(a.via).bind(a.recorded_by).bind(&a.how)
                .execute(&mut *tx).await?.rows_affected();
            if changed == 0 {
                out.push(Err(Refused::NotAsked));
                continue;
            }
            sqlx::query(
                "INSERT INTO rollcall_answers (rollcall_id, user_id, dependant_id, status, note, lat, lon, via, recorded_by, at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)")
                .bind(*rollcall_id).bind(a.user_id).bind(a.dependant_id).bind(a.status.as_str()).bind(&a.note)
                .bind(lat).bind(lon).bind(a.via).bind(a.recorded_by).bind(a.at)
                .execute(&mut *tx).await?;
            out.push(Ok(()));
        }
        Ok(out)
    })
}

/// Records that devices of `users` received the roll-call (handed to a live connection, or
/// fetched by the app).
pub async fn mark_delivered(state: &AppState, rollcall_id: i64, users: &[i64]) -> AppResult<()> {
    if users.is_empty() {
        return Ok(());
    }
    let sql = format!(
        "UPDATE rollcall_people SET delivered_at = $2 WHERE rollcall_id = $3 AND delivered_at IS NULL AND user_id IN ({})",
        state.db.json_ints(1)
    );
    let ids = serde_json::to_string(users).unwrap_or_default();
    on_writer!(&state.db, pool => sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
        .bind(&ids).bind(now_ms()).bind(rollcall_id).execute(pool).await.map(drop))?;
    Ok(())
}
