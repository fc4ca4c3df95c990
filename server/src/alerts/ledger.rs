//! The delivery ledger's single writer.
//!
//! Fifty thousand devices confirming an alert within a second would be fifty thousand
//! transactions on SQLite's one write connection; instead every step (sent, delivered, read,
//! acknowledged) goes through this task, which takes whatever has queued up and writes it as
//! one statement per alert and step. A step only moves a copy forward. Counts per alert are
//! refreshed a few times a second at most and pushed to the organisation's watchers.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use utoipa::ToSchema;
use vigil_protocol::{AlertReceiptState, ServerMessage};

use super::LedgerCounts;
use crate::db::{Db, now_ms};
use crate::live::Hub;
use crate::{in_tx, on_reader};

/// How far a copy of an alert got.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// Handed to a channel.
    Sent,
    /// A device confirmed receipt.
    Delivered,
    /// Opened on a device.
    Read,
    /// Acknowledged by the person.
    Acknowledged,
}

impl Step {
    /// The state name stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Sent => "sent",
            Step::Delivered => "delivered",
            Step::Read => "read",
            Step::Acknowledged => "acknowledged",
        }
    }

    /// The order of a stored state (`queued` is 0), or `None` for an unknown name.
    pub fn rank_of(state: &str) -> Option<i64> {
        ["queued", "sent", "delivered", "read", "acknowledged"]
            .iter()
            .position(|s| *s == state)
            .and_then(|p| i64::try_from(p).ok())
    }

    fn rank(self) -> i64 {
        Step::rank_of(self.as_str()).unwrap_or(0)
    }
}

impl From<AlertReceiptState> for Step {
    fn from(s: AlertReceiptState) -> Self {
        match s {
            AlertReceiptState::Delivered => Step::Delivered,
            AlertReceiptState::Read => Step::Read,
            AlertReceiptState::Acknowledged => Step::Acknowledged,
        }
    }
}

/// A receipt could not be recorded.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// The writer stopped (the server is shutting down).
    #[error("the alert ledger is not running")]
    Closed,
    /// The group holding the receipt failed to commit; the device should send it again.
    #[error("the alert ledger could not commit the receipt")]
    Failed,
}

/// What became of a receipt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Receipt {
    /// Committed (or already further along: the ledger only moves forward).
    Recorded,
    /// The person has no copy of that alert; nothing was written.
    NotRecipient,
}

struct Entry {
    alert_id: i64,
    users: Vec<i64>,
    step: Option<Step>,
    channel: Option<&'static str>,
    at: i64,
    done: Option<oneshot::Sender<Result<Receipt, LedgerError>>>,
}

/// Handle to the ledger writer; cheap to clone.
#[derive(Clone, Debug)]
pub struct LedgerWriter {
    tx: mpsc::Sender<Entry>,
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry")
            .field("alert_id", &self.alert_id)
            .field("users", &self.users.len())
            .field("step", &self.step)
            .finish()
    }
}

/// Most entries written in one transaction.
const MAX_GROUP: usize = 20_000;
/// Entries the writer's queue holds. A receipt waits for room (the device's request slows
/// down, nothing is lost); a `sent` mark finding it full is dropped, which costs nothing, since
/// the device's `delivered` implies it and the fallback re-sends an unconfirmed copy anyway.
pub const QUEUE: usize = 2 * MAX_GROUP;
/// How often counts are refreshed and published, at most.
const COUNTS_EVERY: Duration = Duration::from_millis(250);

impl LedgerWriter {
    /// Starts the writer.
    /// Starts the writer. When `stop` is cancelled it takes no new entries, commits every one
    /// already queued, publishes the last counts and ends.
    pub fn spawn(db: Db, hub: std::sync::Arc<Hub>, background: &crate::Background) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        background
            .tasks
            .spawn(run(db, hub, rx, background.stop.clone()));
        Self { tx }
    }

    /// Records a device's receipt and waits until it is committed. Whether the person is a
    /// recipient at all is found in the same group write, not by a read of its own.
    pub async fn record(
        &self,
        alert_id: i64,
        user_id: i64,
        state: AlertReceiptState,
    ) -> Result<Receipt, LedgerError> {
        let (done, wait) = oneshot::channel();
        self.tx
            .send(Entry {
                alert_id,
                users: vec![user_id],
                step: Some(state.into()),
                channel: None,
                at: now_ms(),
                done: Some(done),
            })
            .await
            .map_err(|_| LedgerError::Closed)?;
        wait.await.unwrap_or(Err(LedgerError::Closed))
    }

    /// Records a step for many people without waiting (a lost "sent" is made good by the
    /// device's "delivered", which implies it).
    pub fn mark(&self, alert_id: i64, users: Vec<i64>, step: Step, channel: Option<&'static str>) {
        let _ = self.tx.try_send(Entry {
            alert_id,
            users,
            step: Some(step),
            channel,
            at: now_ms(),
            done: None,
        });
    }

    /// Asks for the alert's counts to be refreshed and published (after SMS or push costs were
    /// written elsewhere).
    pub fn touch(&self, alert_id: i64) {
        let _ = self.tx.try_send(Entry {
            alert_id,
            users: Vec::new(),
            step: None,
            channel: None,
            at: 0,
            done: None,
        });
    }
}

async fn run(
    db: Db,
    hub: std::sync::Arc<Hub>,
    mut rx: mpsc::Receiver<Entry>,
    stop: tokio_util::sync::CancellationToken,
) {
    let mut dirty: HashSet<i64> = HashSet::new();
    let mut tick = tokio::time::interval(COUNTS_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut stopping = false;
    loop {
        tokio::select! {
            // Closing refuses new entries; those queued still come out of `recv` below.
            () = stop.cancelled(), if !stopping => {
                stopping = true;
                rx.close();
            }
            first = rx.recv() => {
                let Some(first) = first else { break };
                let mut group = vec![first];
                while group.len() < MAX_GROUP {
                    match rx.try_recv() {
                        Ok(e) => group.push(e),
                        Err(_) => break,
                    }
                }
                dirty.extend(group.iter().map(|e| e.alert_id));
                let matched = match write(&db, &group).await {
                    Ok(m) => Ok(m),
                    Err(e) => {
                        tracing::error!(error = %e, entries = group.len(), "alert ledger: write failed");
                        Err(())
                    }
                };
                for e in group {
                    let Some(done) = e.done else { continue };
                    let outcome = match &matched {
                        Ok(m) if e.users.iter().all(|u| m.contains(&(e.alert_id, *u))) => Ok(Receipt::Recorded),
                        Ok(_) => Ok(Receipt::NotRecipient),
                        Err(()) => Err(LedgerError::Failed),
                    };
                    let _ = done.send(outcome);
                }
            }
            _ = tick.tick(), if !dirty.is_empty() => {
                for alert_id in std::mem::take(&mut dirty) {
                    if let Err(e) = publish_counts(&db, &hub, alert_id).await {
                        tracing::error!(error = %e, alert_id, "alert ledger: refreshing counts");
                    }
                }
            }
        }
    }
    for alert_id in dirty {
        let _ = publish_counts(&db, &hub, alert_id).await;
    }
}

/// One UPDATE statement's worth: alert, step, channel.
type GroupKey = (i64, Step, Option<&'static str>);

/// Writes a group; returns the `(alert, person)` copies it found (a receipt naming any other
/// pair is from someone who has no copy).
async fn write(db: &Db, group: &[Entry]) -> Result<HashSet<(i64, i64)>, sqlx::Error> {
    // One statement per (alert, step, channel); the moment recorded is the earliest.
    let mut merged: HashMap<GroupKey, (i64, Vec<i64>)> = HashMap::new();
    for e in group {
        if let Some(step) = e.step {
            let slot = merged
                .entry((e.alert_id, step, e.channel))
                .or_insert((e.at, Vec::new()));
            slot.0 = slot.0.min(e.at);
            slot.1.extend_from_slice(&e.users);
        }
    }
    if merged.is_empty() {
        return Ok(HashSet::new());
    }
    let sql = format!(
        "UPDATE alert_recipients SET \
           state = CASE WHEN (CASE state WHEN 'queued' THEN 0 WHEN 'sent' THEN 1 WHEN 'delivered' THEN 2 \
                                WHEN 'read' THEN 3 ELSE 4 END) < $3 THEN $4 ELSE state END, \
           sent_at = COALESCE(sent_at, $5), \
           delivered_at = CASE WHEN $3 >= 2 THEN COALESCE(delivered_at, $5) ELSE delivered_at END, \
           read_at = CASE WHEN $3 >= 3 THEN COALESCE(read_at, $5) ELSE read_at END, \
           acknowledged_at = CASE WHEN $3 >= 4 THEN COALESCE(acknowledged_at, $5) ELSE acknowledged_at END, \
           channel = COALESCE($6, channel), \
           next_attempt_at = CASE WHEN $3 >= 2 THEN NULL ELSE next_attempt_at END \
         WHERE alert_id = $2 AND user_id IN ({}) RETURNING alert_id, user_id",
        db.json_ints(1)
    );
    in_tx!(db, tx => {
        let mut found = HashSet::new();
        for ((alert_id, step, channel), (at, users)) in &merged {
            let users = serde_json::to_string(users).unwrap_or_default();
            let rows: Vec<(i64, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()))
                .bind(&users).bind(*alert_id).bind(step.rank()).bind(step.as_str()).bind(*at).bind(*channel)
                .fetch_all(&mut *tx).await?;
            found.extend(rows);
        }
        Ok(found)
    })
}

/// Current counts of one alert, straight from its ledger.
pub async fn counts(db: &Db, alert_id: i64) -> Result<LedgerCounts, sqlx::Error> {
    let rows: Vec<(String, i64, i64, i64)> = on_reader!(db, pool => sqlx::query_as(
        // PostgreSQL sums bigints as numeric: cast back so both backends decode an i64.
        "SELECT state, COUNT(*), CAST(COALESCE(SUM(sms_messages), 0) AS BIGINT), CAST(COALESCE(SUM(sms_segments), 0) AS BIGINT) \
         FROM alert_recipients WHERE alert_id = $1 GROUP BY state")
        .bind(alert_id).fetch_all(pool).await?);
    let mut c = LedgerCounts::default();
    for (state, n, sms, segments) in rows {
        match state.as_str() {
            "queued" => c.queued = n,
            "sent" => c.sent = n,
            "delivered" => c.delivered = n,
            "read" => c.read = n,
            _ => c.acknowledged = n,
        }
        c.sms_messages += sms;
        c.sms_segments += segments;
    }
    Ok(c)
}

async fn publish_counts(db: &Db, hub: &Hub, alert_id: i64) -> Result<(), sqlx::Error> {
    let c = counts(db, alert_id).await?;
    let text = serde_json::to_string(&c).unwrap_or_default();
    let org: Option<i64> = in_tx!(db, tx => {
        sqlx::query_scalar("UPDATE alerts SET counts = $2 WHERE id = $1 RETURNING org_id")
            .bind(alert_id).bind(&text).fetch_optional(&mut *tx).await?
    });
    if let Some(org) = org {
        hub.publish_operations(
            org,
            &ServerMessage::AlertProgress {
                alert_id,
                counts: c,
            },
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_ordered_as_stored() {
        assert_eq!(Step::rank_of("queued"), Some(0));
        assert!(Step::Sent.rank() < Step::Delivered.rank());
        assert!(Step::Read.rank() < Step::Acknowledged.rank());
        assert_eq!(Step::rank_of("lost"), None);
        assert_eq!(Step::Acknowledged.rank(), 4);
    }
}
