//! The phone's own storage (SQLite, in the app's files): the person's stream as far as it was
//! received and handed to the app, and the offline outbox of what the phone still owes the
//! server. Everything is committed before the SDK answers, so killing the app loses nothing.
//!
//! Outbox policy:
//! - fixes go newest first (the operations room wants where the person is *now*), then the
//!   rest oldest first (the history fills in in time order);
//! - everything else (receipts, answers, SOS, chat) goes in the order it was made;
//! - an item the server refuses for what it is (`invalid`, `forbidden`, `location_less`) is
//!   dropped with its reason and reported, never retried forever: nothing queues behind it;
//! - at most [`MAX_FIXES`] fixes wait: beyond that the oldest are dropped (counted), because a
//!   week-old trail matters less than room for the next fix; other items are never dropped, and
//!   past [`MAX_OTHER`] of them a new one is refused with [`StoreError::Full`].

use std::path::Path;
use std::str::FromStr;

use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

/// Fixes the outbox keeps at most (a fix every 10 s for four days).
pub const MAX_FIXES: i64 = 35_000;
/// Other items the outbox keeps at most before refusing new ones.
pub const MAX_OTHER: i64 = 10_000;

/// Why the phone's storage failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite failed (disk full, file unreadable…).
    #[error("the phone's storage failed: {0}")]
    Sqlite(#[from] sqlx::Error),
    /// The outbox holds [`MAX_OTHER`] unsent items.
    #[error("the outbox is full ({0} unsent items); connect to send them")]
    Full(i64),
}

/// What an outbox item is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemKind {
    /// A position fix.
    Fix,
    /// Any other client message (receipt, chat, …).
    Message,
    /// An HTTP request (`{"path": …, "body": …}`, POSTed), for what the socket does not carry
    /// (roll-call answers).
    Request,
}

impl ItemKind {
    fn as_str(self) -> &'static str {
        match self {
            ItemKind::Fix => "fix",
            ItemKind::Message => "message",
            ItemKind::Request => "request",
        }
    }
}

/// One unsent item.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Item {
    /// The outbox's id for it, also the `ref` it is sent with.
    pub id: i64,
    /// What it is (`fix`, `message`).
    pub kind: String,
    /// The JSON to send (a fix, or a whole client message).
    pub body: String,
    /// When it was made (a fix: when it was taken), Unix ms.
    pub made_at: i64,
}

/// The phone's storage.
#[derive(Debug, Clone)]
pub struct Store {
    pool: SqlitePool,
}

impl Store {
    /// Opens (creating) the store at `path`.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        let opts = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // An acknowledged outbox item must survive the phone losing power, not only the
            // app being killed: a phone's writes are few.
            .synchronous(SqliteSynchronous::Full);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(opts)
            .await?;
        for ddl in [
            "CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
            "CREATE TABLE IF NOT EXISTS inbox (seq INTEGER PRIMARY KEY, kind TEXT NOT NULL, \
             payload TEXT NOT NULL, at INTEGER NOT NULL)",
            "CREATE TABLE IF NOT EXISTS outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, \
             body TEXT NOT NULL, made_at INTEGER NOT NULL)",
            "CREATE INDEX IF NOT EXISTS outbox_by_kind ON outbox (kind, made_at)",
        ] {
            sqlx::query(ddl).execute(&pool).await?;
        }
        Ok(Store { pool })
    }

    /// A stored setting.
    pub async fn get(&self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query_scalar("SELECT value FROM kv WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?)
    }

    /// Stores a setting.
    pub async fn set(&self, key: &str, value: &str) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO kv (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = $2")
            .bind(key)
            .bind(value)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Forgets a setting.
    pub async fn unset(&self, key: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM kv WHERE key = $1")
            .bind(key)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Stored stream messages after `seq`, in order, at most `limit`.
    pub async fn messages_after(
        &self,
        seq: i64,
        limit: i64,
    ) -> Result<Vec<(i64, String, String, i64)>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT seq, kind, payload, at FROM inbox WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
        .bind(seq)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    /// The highest stream number received (stored), 0 at first.
    pub async fn last_seq(&self) -> Result<i64, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM inbox")
                .fetch_one(&self.pool)
                .await?,
        )
    }

    /// The highest stream number handed to the app.
    pub async fn handed(&self) -> Result<i64, StoreError> {
        Ok(self
            .get("handed_seq")
            .await?
            .and_then(|v| v.parse().ok())
            .unwrap_or(0))
    }

    /// Records that the app has everything up to `seq`.
    pub async fn set_handed(&self, seq: i64) -> Result<(), StoreError> {
        self.set("handed_seq", &seq.to_string()).await
    }

    /// Stores a stream message; `false` if it was stored before (a replay).
    pub async fn receive(
        &self,
        seq: i64,
        kind: &str,
        payload: &str,
        at: i64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO inbox (seq, kind, payload, at) VALUES ($1, $2, $3, $4) ON CONFLICT (seq) DO NOTHING",
        )
        .bind(seq)
        .bind(kind)
        .bind(payload)
        .bind(at)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Stream messages stored but not yet handed to the app, in order.
    pub async fn unhanded(&self) -> Result<Vec<(i64, String, String, i64)>, StoreError> {
        self.messages_after(self.handed().await?, i64::MAX).await
    }

    /// Queues an item; returns its id and how many old fixes were dropped to make room.
    pub async fn push(
        &self,
        kind: ItemKind,
        body: &str,
        made_at: i64,
    ) -> Result<(i64, u64), StoreError> {
        let mut tx = self.pool.begin().await?;
        if kind != ItemKind::Fix {
            let waiting: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM outbox WHERE kind <> 'fix'")
                    .fetch_one(&mut *tx)
                    .await?;
            if waiting >= MAX_OTHER {
                return Err(StoreError::Full(waiting));
            }
        }
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO outbox (kind, body, made_at) VALUES ($1, $2, $3) RETURNING id",
        )
        .bind(kind.as_str())
        .bind(body)
        .bind(made_at)
        .fetch_one(&mut *tx)
        .await?;
        let mut dropped = 0;
        if kind == ItemKind::Fix {
            dropped = sqlx::query(
                "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox WHERE kind = 'fix' \
                 ORDER BY made_at DESC, id DESC LIMIT -1 OFFSET $1)",
            )
            .bind(MAX_FIXES)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        }
        tx.commit().await?;
        Ok((id, dropped))
    }

    /// The next items to send, at most `limit`: the newest fix first, then the other fixes
    /// oldest first, then the other items in order.
    pub async fn next(&self, limit: i64) -> Result<Vec<Item>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT id, kind, body, made_at FROM ( \
               SELECT id, kind, body, made_at, 0 AS lane, -made_at AS k FROM outbox WHERE id = \
                 (SELECT id FROM outbox WHERE kind = 'fix' ORDER BY made_at DESC, id DESC LIMIT 1) \
               UNION ALL SELECT id, kind, body, made_at, CASE kind WHEN 'fix' THEN 1 ELSE 2 END, \
                 CASE kind WHEN 'fix' THEN made_at ELSE id END FROM outbox WHERE id <> \
                 COALESCE((SELECT id FROM outbox WHERE kind = 'fix' ORDER BY made_at DESC, id DESC LIMIT 1), -1) \
             ) ORDER BY lane, k, id LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Removes a sent (or refused) item.
    pub async fn done(&self, id: i64) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM outbox WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Unsent items: (fixes, others).
    pub async fn pending(&self) -> Result<(i64, i64), StoreError> {
        Ok(sqlx::query_as(
            "SELECT COALESCE(SUM(kind = 'fix'), 0), COALESCE(SUM(kind <> 'fix'), 0) FROM outbox",
        )
        .fetch_one(&self.pool)
        .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_newest_fix_goes_first_then_the_trail_in_time_order_then_the_rest() {
        let dir = tempfile::tempdir().expect("dir");
        let store = Store::open(&dir.path().join("phone.db"))
            .await
            .expect("open");
        store.push(ItemKind::Fix, "b", 200).await.expect("push");
        store
            .push(ItemKind::Message, "receipt", 50)
            .await
            .expect("push");
        store.push(ItemKind::Fix, "c", 300).await.expect("push");
        store.push(ItemKind::Fix, "a", 100).await.expect("push");
        let order: Vec<String> = store
            .next(10)
            .await
            .expect("next")
            .into_iter()
            .map(|i| i.body)
            .collect();
        assert_eq!(order, ["c", "a", "b", "receipt"]);
        assert_eq!(store.pending().await.expect("count"), (3, 1));
    }

    #[tokio::test]
    async fn the_outbox_survives_a_restart_and_a_replayed_message_is_stored_once() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("phone.db");
        {
            let store = Store::open(&path).await.expect("open");
            store.push(ItemKind::Fix, "f", 1).await.expect("push");
            assert!(store.receive(1, "alert", "{}", 5).await.expect("store"));
        }
        let store = Store::open(&path).await.expect("reopen");
        assert_eq!(store.pending().await.expect("count"), (1, 0));
        assert!(!store.receive(1, "alert", "{}", 5).await.expect("replay"));
        assert_eq!(store.last_seq().await.expect("seq"), 1);
        assert_eq!(store.unhanded().await.expect("unhanded").len(), 1);
        store.set_handed(1).await.expect("hand");
        assert!(store.unhanded().await.expect("unhanded").is_empty());
    }
}
