//! The location-access log's writer. Every time a viewer is first sent a person's position on a
//! connection, the read is logged for that person (`GET /me/location-access`). Under a burst of
//! positions, hundreds of consoles each meeting new people would otherwise each write a row
//! from inside their socket loop; instead entries queue here and one task writes whatever has
//! queued in one statement.

use tokio::sync::mpsc;

use crate::db::{Db, now_ms};
use crate::on_writer;

/// Entries the queue holds. A full queue makes the next viewer wait for room: an access log
/// entry is never dropped, and only the connection that reads so much waits.
pub const QUEUE: usize = 8192;
/// Most entries in one statement (4 parameters each, far below SQLite's limit).
const MAX_GROUP: usize = 2000;

#[derive(Debug)]
struct Entry {
    at: i64,
    viewer: i64,
    subject: i64,
    purpose: &'static str,
}

#[derive(Debug)]
enum Job {
    Log(Entry),
    /// Answered once everything queued before it is written.
    Flush(tokio::sync::oneshot::Sender<()>),
}

/// The writer stopped (the server is shutting down).
#[derive(Debug, thiserror::Error)]
#[error("the location-access log is not running")]
pub struct AccessLogClosed;

/// Handle to the access-log writer; cheap to clone.
#[derive(Clone, Debug)]
pub struct AccessLogWriter {
    tx: mpsc::Sender<Job>,
}

impl AccessLogWriter {
    /// Starts the writer; it ends once every handle is gone or `stop` is cancelled, after
    /// writing what is queued.
    pub fn spawn(db: Db, background: &crate::Background) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        background.tasks.spawn(run(db, rx, background.stop.clone()));
        Self { tx }
    }

    /// Logs that `viewer` was sent `subject`'s location, for `purpose`. Returns once queued
    /// (the entry carries this moment); it is written within a moment.
    pub async fn record(
        &self,
        viewer: i64,
        subject: i64,
        purpose: &'static str,
    ) -> Result<(), AccessLogClosed> {
        let entry = Entry {
            at: now_ms(),
            viewer,
            subject,
            purpose,
        };
        self.tx
            .send(Job::Log(entry))
            .await
            .map_err(|_| AccessLogClosed)
    }

    /// Waits until every entry queued before is written, so that a person reading their log
    /// sees every read up to now.
    pub async fn flush(&self) -> Result<(), AccessLogClosed> {
        let (done, wait) = tokio::sync::oneshot::channel();
        self.tx
            .send(Job::Flush(done))
            .await
            .map_err(|_| AccessLogClosed)?;
        wait.await.map_err(|_| AccessLogClosed)
    }
}

async fn run(db: Db, mut rx: mpsc::Receiver<Job>, stop: tokio_util::sync::CancellationToken) {
    while let Some(jobs) = crate::batch::next_group(&mut rx, &stop, MAX_GROUP).await {
        let stopping = stop.is_cancelled();
        let mut group = Vec::with_capacity(jobs.len());
        let mut flushes = Vec::new();
        for job in jobs {
            match job {
                Job::Log(e) => group.push(e),
                Job::Flush(done) => flushes.push(done),
            }
        }
        // A failed write is retried once the database answers again: the log is what a
        // person reads to learn who saw where they were, so entries are not given up — except
        // at shutdown, after a few seconds of retries, when the node cannot wait any longer
        // (the failure is logged with the number of entries).
        let mut delay = std::time::Duration::from_millis(100);
        while let Err(e) = write(&db, &group).await {
            tracing::error!(error = %e, entries = group.len(), "location-access log: write failed; retrying");
            if stopping && delay > std::time::Duration::from_secs(2) {
                break;
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(std::time::Duration::from_secs(5));
        }
        for done in flushes {
            let _ = done.send(());
        }
    }
}

async fn write(db: &Db, group: &[Entry]) -> Result<(), sqlx::Error> {
    if group.is_empty() {
        return Ok(());
    }
    on_writer!(db, pool => {
        let mut qb = sqlx::QueryBuilder::new("INSERT INTO location_access_log (at, viewer_id, subject_id, purpose) ");
        qb.push_values(group, |mut row, e| {
            row.push_bind(e.at).push_bind(e.viewer).push_bind(e.subject).push_bind(e.purpose);
        });
        qb.build().persistent(false).execute(pool).await.map(drop)
    })
}
