//! Storage: SQLite (embedded default) or PostgreSQL, chosen once at start-up by URL scheme.
//!
//! Queries are written once with `$n` placeholders, which both drivers bind by position, and
//! compiled twice through [`on_reader!`] / [`on_writer!`] / [`in_tx!`], which expand the same
//! body for each pool type. Where the dialects differ, a module matches on [`Db`] explicitly.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, SqlitePool};

/// The database handle every module queries through; cheap to clone.
#[derive(Clone, Debug)]
pub enum Db {
    /// SQLite: many readers, exactly one writer connection, so writers queue in the pool
    /// instead of failing with "database is locked".
    Sqlite {
        /// Read-only work.
        read: SqlitePool,
        /// Every write, one at a time.
        write: SqlitePool,
        /// The background checkpointer's connection (see [`Db::spawn_checkpointer`]).
        checkpoint: SqlitePool,
    },
    /// PostgreSQL: one pool; the server handles concurrent writers.
    Postgres(PgPool),
}

/// Why the database could not be opened or migrated.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The URL is neither `sqlite:` nor `postgres:`.
    #[error("unsupported database URL scheme in {0:?}: use sqlite://path or postgres://…")]
    UnsupportedScheme(String),
    /// The driver failed.
    #[error(transparent)]
    Sqlx(#[from] sqlx::Error),
    /// A migration failed.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// How often the checkpointer copies the WAL into the database file.
pub const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);
/// WAL pages (4 KiB) after which the writer checkpoints by itself (the checkpointer is late).
const WAL_BACKSTOP_PAGES: u32 = 16_384;
/// The writer's page cache, negative: KiB (64 MiB).
const WRITER_CACHE_KIB: i64 = -65_536;
/// Bytes the WAL file is truncated to after a checkpoint reset.
const WAL_SIZE_LIMIT: u64 = 64 * 1024 * 1024;

/// Which engine a [`Db`] talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// Embedded SQLite.
    Sqlite,
    /// PostgreSQL server.
    Postgres,
}

/// Runs `$body` with `$pool` bound to a pool suitable for reads.
#[macro_export]
macro_rules! on_reader {
    ($db:expr, $pool:ident => $body:expr) => {
        match $db {
            $crate::db::Db::Sqlite { read: $pool, .. } => $body,
            $crate::db::Db::Postgres($pool) => $body,
        }
    };
}

/// Runs `$body` with `$pool` bound to the pool that writes.
#[macro_export]
macro_rules! on_writer {
    ($db:expr, $pool:ident => $body:expr) => {
        match $db {
            $crate::db::Db::Sqlite { write: $pool, .. } => $body,
            $crate::db::Db::Postgres($pool) => $body,
        }
    };
}

/// Runs `$body` inside a write transaction bound to `$tx`; the body must commit.
/// SQLite transactions start with `BEGIN IMMEDIATE` so they take the write lock up front.
#[macro_export]
macro_rules! in_tx {
    ($db:expr, $tx:ident => $body:expr) => {
        match $db {
            $crate::db::Db::Sqlite { write, .. } => {
                #[allow(unused_mut)]
                let mut $tx = write.begin_with("BEGIN IMMEDIATE").await?;
                $body
            }
            $crate::db::Db::Postgres(pool) => {
                #[allow(unused_mut)]
                let mut $tx = pool.begin().await?;
                $body
            }
        }
    };
}

impl Db {
    /// Opens the database named by `url`, creating an SQLite file if needed.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, DbError> {
        if url.starts_with("sqlite:") {
            let opts = SqliteConnectOptions::from_str(url)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .foreign_keys(true)
                .busy_timeout(Duration::from_secs(10))
                // Checkpoints run beside the writer (`spawn_checkpointer`), not inside its
                // commits; the writer only checkpoints itself if the WAL outgrows this many
                // pages because the checkpointer fell behind.
                .pragma("wal_autocheckpoint", WAL_BACKSTOP_PAGES.to_string())
                .pragma("journal_size_limit", WAL_SIZE_LIMIT.to_string());
            // The single writer touches the hot index pages of every table it appends to; the
            // default 2 MiB cache made it re-read them from the OS at every commit once the
            // position history grew past a few million rows.
            let write = SqlitePoolOptions::new()
                .max_connections(1)
                .connect_with(
                    opts.clone()
                        .pragma("cache_size", WRITER_CACHE_KIB.to_string()),
                )
                .await?;
            let checkpoint = SqlitePoolOptions::new()
                .max_connections(1)
                .connect_with(opts.clone())
                .await?;
            let read = SqlitePoolOptions::new()
                .max_connections(max_connections.max(2))
                .connect_with(opts.read_only(true))
                .await?;
            Ok(Db::Sqlite {
                read,
                write,
                checkpoint,
            })
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            let opts = PgConnectOptions::from_str(url)?;
            let pool = PgPoolOptions::new()
                .max_connections(max_connections)
                .acquire_timeout(Duration::from_secs(10))
                .connect_with(opts)
                .await?;
            Ok(Db::Postgres(pool))
        } else {
            Err(DbError::UnsupportedScheme(crate::config::redact_url(url)))
        }
    }

    /// Which engine this is.
    pub fn backend(&self) -> Backend {
        match self {
            Db::Sqlite { .. } => Backend::Sqlite,
            Db::Postgres(_) => Backend::Postgres,
        }
    }

    /// Applies the embedded migrations for this backend.
    pub async fn migrate(&self) -> Result<(), DbError> {
        match self {
            Db::Sqlite { write, .. } => sqlx::migrate!("./migrations/sqlite").run(write).await?,
            Db::Postgres(pool) => sqlx::migrate!("./migrations/postgres").run(pool).await?,
        }
        Ok(())
    }

    /// A sub-select of the integers in the JSON array bound at `$n` (column `value`): how one
    /// statement takes a set of ids of any size on both backends.
    pub fn json_ints(&self, n: usize) -> String {
        match self {
            Db::Sqlite { .. } => format!("SELECT value FROM json_each(${n})"),
            Db::Postgres(_) => {
                format!("SELECT value::bigint AS value FROM jsonb_array_elements_text(${n}::jsonb)")
            }
        }
    }

    /// A sub-select of the strings in the JSON array bound at `$n` (column `value`).
    pub fn json_texts(&self, n: usize) -> String {
        match self {
            Db::Sqlite { .. } => format!("SELECT value FROM json_each(${n})"),
            Db::Postgres(_) => format!("SELECT value FROM jsonb_array_elements_text(${n}::jsonb)"),
        }
    }

    /// A sub-select of `[integer, text]` pairs in the JSON array bound at `$n` (columns `id`,
    /// `tag`).
    pub fn json_pairs(&self, n: usize) -> String {
        match self {
            Db::Sqlite { .. } => format!(
                "SELECT json_extract(value, '$[0]') AS id, json_extract(value, '$[1]') AS tag FROM json_each(${n})"
            ),
            Db::Postgres(_) => format!(
                "SELECT (e->>0)::bigint AS id, e->>1 AS tag FROM jsonb_array_elements(${n}::jsonb) AS e"
            ),
        }
    }

    /// SQLite: copies the write-ahead log into the database file every
    /// [`CHECKPOINT_EVERY`] on a connection of its own, so that the page writes and fsync of a
    /// checkpoint happen beside the single writer instead of inside one of its commits (they
    /// cost a large broadcast or a burst of positions 100–300 ms). PASSIVE never waits for
    /// readers or the writer. Nothing to do on PostgreSQL. Stops with `shutdown`.
    pub fn spawn_checkpointer(&self, shutdown: tokio_util::sync::CancellationToken) {
        let Db::Sqlite { checkpoint, .. } = self else {
            return;
        };
        let pool = checkpoint.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(CHECKPOINT_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    _ = tick.tick() => {}
                }
                if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                    .execute(&pool)
                    .await
                {
                    tracing::warn!(error = %e, "WAL checkpoint failed; retrying");
                }
            }
        });
    }

    /// True when the database answers a trivial query.
    pub async fn ping(&self) -> bool {
        on_reader!(self, pool => sqlx::query("SELECT 1").execute(pool).await.is_ok())
    }

    /// Closes every pool, waiting for checked-out connections to return.
    pub async fn close(&self) {
        match self {
            Db::Sqlite {
                read,
                write,
                checkpoint,
            } => {
                read.close().await;
                write.close().await;
                checkpoint.close().await;
            }
            Db::Postgres(pool) => pool.close().await,
        }
    }
}

/// Milliseconds since the Unix epoch: every timestamp column holds this, on both backends.
pub fn now_ms() -> i64 {
    let now = time::OffsetDateTime::now_utc();
    i64::try_from(now.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

/// A stored Unix-milliseconds timestamp that reads and writes as RFC 3339 in JSON.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, sqlx::Type, utoipa::ToSchema)]
#[sqlx(transparent)]
#[schema(value_type = String, format = DateTime)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// The timestamp as RFC 3339 (UTC, millisecond precision).
    pub fn to_rfc3339(self) -> String {
        let nanos = i128::from(self.0) * 1_000_000;
        time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_default()
    }

    /// Parses RFC 3339 with any offset.
    pub fn parse_rfc3339(s: &str) -> Option<Self> {
        let t =
            time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()?;
        i64::try_from(t.unix_timestamp_nanos() / 1_000_000)
            .ok()
            .map(Timestamp)
    }
}

impl serde::Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_rfc3339())
    }
}

impl<'de> serde::Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Timestamp::parse_rfc3339(&s)
            .ok_or_else(|| serde::de::Error::custom(format!("{s:?} is not an RFC 3339 timestamp")))
    }
}
