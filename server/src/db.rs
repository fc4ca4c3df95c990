//! Storage: SQLite (embedded default) or PostgreSQL, chosen once at start-up by URL scheme.
//!
//! Queries are written once with `$n` placeholders, which both drivers bind by position, and
//! compiled twice through [`on_reader!`] / [`on_writer!`] / [`in_tx!`], which expand the same
//! body for each pool type. Where the dialects differ, a module matches on [`Db`] explicitly.
//! Every query and transaction those macros start first asks [`faults::pick`] for its pools,
//! which is how tests make a share of them fail ([`Db::inject_faults`]).

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
        match &*$crate::db::faults::pick(&$db) {
            $crate::db::Db::Sqlite { read: $pool, .. } => $body,
            $crate::db::Db::Postgres($pool) => $body,
        }
    };
}

/// Runs `$body` with `$pool` bound to the pool that writes.
#[macro_export]
macro_rules! on_writer {
    ($db:expr, $pool:ident => $body:expr) => {
        match &*$crate::db::faults::pick(&$db) {
            $crate::db::Db::Sqlite { write: $pool, .. } => $body,
            $crate::db::Db::Postgres($pool) => $body,
        }
    };
}

/// Runs `$body` inside a write transaction bound to `$tx` and commits once the body has
/// produced its value, which the macro then yields. Leaving the body early (`?`, `return`) rolls
/// back: that is how a body aborts. The body cannot commit (the transaction stays the macro's),
/// so no path through it can end without a commit and be rolled back unnoticed.
/// With `|value, committed| after` the commit's result is handed to `after` instead of being
/// returned with `?`, for callers that must undo something in memory when the commit fails.
/// SQLite transactions start with `BEGIN IMMEDIATE` so they take the write lock up front.
#[macro_export]
macro_rules! in_tx {
    ($db:expr, $tx:ident => $body:expr) => {
        $crate::in_tx!($db, $tx => $body, |value, committed| {
            committed?;
            value
        })
    };
    ($db:expr, $tx:ident => $body:expr, |$value:pat_param, $committed:ident| $after:expr) => {
        match &*$crate::db::faults::pick(&$db) {
            $crate::db::Db::Sqlite { write, .. } => {
                #[allow(unused_mut)]
                let mut $tx = write.begin_with("BEGIN IMMEDIATE").await?;
                let $value = $body;
                let $committed = $tx.commit().await;
                $after
            }
            $crate::db::Db::Postgres(pool) => {
                #[allow(unused_mut)]
                let mut $tx = pool.begin().await?;
                let $value = $body;
                let $committed = $tx.commit().await;
                $after
            }
        }
    };
}

impl Db {
    /// Opens the database named by `url`, creating an SQLite file if needed, with the default
    /// `sqlite_synchronous`.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, DbError> {
        let default = crate::config::Settings::default().sqlite_synchronous;
        Self::connect_with(url, max_connections, default).await
    }

    /// Like [`Db::connect`], with SQLite's commit durability chosen (`sqlite_synchronous`).
    pub async fn connect_with(
        url: &str,
        max_connections: u32,
        synchronous: crate::config::SqliteSynchronous,
    ) -> Result<Self, DbError> {
        if url.starts_with("sqlite:") {
            let synchronous = match synchronous {
                crate::config::SqliteSynchronous::Normal => SqliteSynchronous::Normal,
                crate::config::SqliteSynchronous::Full => SqliteSynchronous::Full,
            };
            let opts = SqliteConnectOptions::from_str(url)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(synchronous)
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

/// A stored Unix-milliseconds timestamp that reads and writes as RFC 3339 in JSON: the
/// protocol's type, so that the socket and the REST API write times the same way.
pub use vigil_protocol::Timestamp;

/// Fault injection for tests, after Zed's collab server: a database can be told to fail a share
/// of the queries and transactions started through [`on_reader!`], [`on_writer!`] and
/// [`in_tx!`], so that tests prove a hiccup (a pool timeout, a restarted database) delays work
/// and never loses it.
///
/// A failing query is handed a *starved* pool instead of the real one: a pool whose only
/// connection is held by the injector, so the query fails as it starts with
/// [`sqlx::Error::PoolTimedOut`], the error an overloaded database gives. Nothing else changes:
/// the body runs as written and meets the error where it would meet a real one.
///
/// Production pays one relaxed atomic load per query: no database has faults until a test asks.
pub mod faults {
    use std::borrow::Cow;
    use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex, MutexGuard};
    use std::time::Duration;

    use sqlx::pool::PoolConnection;
    use sqlx::postgres::PgPoolOptions;
    use sqlx::sqlite::SqlitePoolOptions;
    use sqlx::{Postgres, Sqlite};

    use super::Db;

    /// How long a query on the starved pool waits before it fails.
    const STARVED_WAIT: Duration = Duration::from_millis(1);

    /// Databases with faults injected now; while it is zero, [`pick`] looks no further.
    static ARMED: AtomicUsize = AtomicUsize::new(0);
    /// The injections in force, by the identity of the database they affect.
    static INJECTIONS: Mutex<Vec<(usize, Arc<Injection>)>> = Mutex::new(Vec::new());

    struct Injection {
        /// The failure probability, as `f64` bits.
        probability: AtomicU64,
        /// Queries failed so far.
        injected: AtomicU64,
        /// Pools that answer every query with a pool timeout.
        starved: Db,
        /// The only connection the starved pools could borrow, kept out of their reach.
        _held: Held,
    }

    /// A connection held only so that its pool has none to give.
    struct Held {
        _sqlite: Option<PoolConnection<Sqlite>>,
        _postgres: Option<PoolConnection<Postgres>>,
    }

    fn injections() -> MutexGuard<'static, Vec<(usize, Arc<Injection>)>> {
        INJECTIONS
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// One database's identity, shared by all its clones: the address of its (writer) pool's
    /// options, which live as long as the pool.
    fn identity(db: &Db) -> usize {
        match db {
            Db::Sqlite { write, .. } => std::ptr::from_ref(write.options()).addr(),
            Db::Postgres(pool) => std::ptr::from_ref(pool.options()).addr(),
        }
    }

    /// The pools a query about to start on `db` runs on: `db` itself, or, when a fault is
    /// injected for this query, pools on which it fails at once.
    #[inline]
    pub fn pick(db: &Db) -> Cow<'_, Db> {
        if ARMED.load(Ordering::Relaxed) == 0 {
            return Cow::Borrowed(db);
        }
        pick_under_faults(db)
    }

    #[cold]
    fn pick_under_faults(db: &Db) -> Cow<'_, Db> {
        let key = identity(db);
        let injection = injections()
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, i)| i.clone());
        match injection {
            Some(i)
                if rand::random::<f64>()
                    < f64::from_bits(i.probability.load(Ordering::Relaxed)) =>
            {
                i.injected.fetch_add(1, Ordering::Relaxed);
                Cow::Owned(i.starved.clone())
            }
            _ => Cow::Borrowed(db),
        }
    }

    /// Faults injected into one database (every clone of it) until this is dropped.
    pub struct FaultInjection {
        key: usize,
        injection: Arc<Injection>,
        /// Keeps the database's pools, and so its identity, alive while faults are keyed to it.
        _db: Db,
    }

    impl FaultInjection {
        /// Fails each query from now on with `probability` (0 to 1; 0 stops the faults).
        pub fn set_probability(&self, probability: f64) {
            self.injection
                .probability
                .store(probability.clamp(0.0, 1.0).to_bits(), Ordering::Relaxed);
        }

        /// How many queries were failed so far.
        pub fn injected(&self) -> u64 {
            self.injection.injected.load(Ordering::Relaxed)
        }
    }

    impl Drop for FaultInjection {
        fn drop(&mut self) {
            let mut all = injections();
            let before = all.len();
            all.retain(|(k, i)| !(*k == self.key && Arc::ptr_eq(i, &self.injection)));
            if all.len() < before {
                ARMED.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }

    impl std::fmt::Debug for FaultInjection {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("FaultInjection")
                .field(
                    "probability",
                    &f64::from_bits(self.injection.probability.load(Ordering::Relaxed)),
                )
                .field("injected", &self.injected())
                .finish_non_exhaustive()
        }
    }

    impl Db {
        /// For tests: from now until the returned guard is dropped, each query or transaction
        /// started on this database (through any clone) fails with `probability`, as with a
        /// pool timeout. Opens one extra connection, which the guard holds.
        pub async fn inject_faults(&self, probability: f64) -> Result<FaultInjection, sqlx::Error> {
            // The starved pool may only borrow connections from a parent whose one connection
            // is held here, so it has none to give and times out at once.
            let (starved, held) = match self {
                Db::Sqlite { read, .. } => {
                    let options = (*read.connect_options()).clone();
                    let parent = SqlitePoolOptions::new()
                        .max_connections(1)
                        .connect_with(options.clone())
                        .await?;
                    let held = Held {
                        _sqlite: Some(parent.acquire().await?),
                        _postgres: None,
                    };
                    let pool = SqlitePoolOptions::new()
                        .max_connections(1)
                        .acquire_timeout(STARVED_WAIT)
                        .idle_timeout(None)
                        .max_lifetime(None)
                        .parent(parent)
                        .connect_lazy_with(options);
                    let starved = Db::Sqlite {
                        read: pool.clone(),
                        write: pool.clone(),
                        checkpoint: pool,
                    };
                    (starved, held)
                }
                Db::Postgres(real) => {
                    let options = (*real.connect_options()).clone();
                    let parent = PgPoolOptions::new()
                        .max_connections(1)
                        .connect_with(options.clone())
                        .await?;
                    let held = Held {
                        _sqlite: None,
                        _postgres: Some(parent.acquire().await?),
                    };
                    let pool = PgPoolOptions::new()
                        .max_connections(1)
                        .acquire_timeout(STARVED_WAIT)
                        .idle_timeout(None)
                        .max_lifetime(None)
                        .parent(parent)
                        .connect_lazy_with(options);
                    (Db::Postgres(pool), held)
                }
            };
            let injection = Arc::new(Injection {
                probability: AtomicU64::new(probability.clamp(0.0, 1.0).to_bits()),
                injected: AtomicU64::new(0),
                starved,
                _held: held,
            });
            let key = identity(self);
            injections().push((key, injection.clone()));
            ARMED.fetch_add(1, Ordering::Relaxed);
            Ok(FaultInjection {
                key,
                injection,
                _db: self.clone(),
            })
        }
    }
}
