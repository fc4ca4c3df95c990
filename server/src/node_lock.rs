//! One server per database, unless they form a cluster.
//!
//! Each node keeps live state of its own — the sockets, the tracker's R-trees, the writers'
//! queues — so two `vigil serve` processes on one database would each accept positions and
//! alerts the other never sees, and silently diverge. A node therefore holds a lock for its
//! whole life, taken before it migrates or replays anything, and a second node is refused at
//! start with a message that names the first:
//!
//! - PostgreSQL: a session advisory lock on a connection of its own (not a pool's, which could
//!   hand the session to a query and recycle it). Advisory locks belong to one database, so
//!   servers on other databases of the same PostgreSQL are not affected. The connection's TCP
//!   keepalives are short, so that when a node's host dies, PostgreSQL ends its session and
//!   frees the lock within [`DEAD_HOLDER_SECS`] instead of the two hours of the kernel default.
//! - SQLite: an exclusive lock on a file beside the database (`<file>-vigil.lock`), which the
//!   kernel releases when the process ends, `kill -9` included.
//!
//! Cluster nodes (`nats_url` set) share the lock instead (PostgreSQL's shared advisory lock):
//! any number of them run together, and a single server started beside them, or a node beside
//! a single server, is refused, as the two would still diverge.
//!
//! `vigil migrate`, `vigil admin …` and `vigil vapid-keys` take no lock: an operator may run
//! them beside a running server.

use std::future::Future;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::PgConnectOptions;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{Connection, PgConnection};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The advisory lock's key: "vigil" and a version, so that it does not collide with another
/// application's locks on a shared database.
pub const LOCK_KEY: i64 = 0x7669_6769_6c00_0001;
/// How long a starting node waits for the lock before it gives up: a predecessor just stopped
/// or killed on the same host releases it within milliseconds (its socket closes at once).
pub const WAIT_FOR_LOCK: Duration = Duration::from_secs(5);
/// Within about this many seconds of a node's host dying, PostgreSQL notices (TCP keepalives
/// of the lock's connection: 5 s idle, then 3 probes 2 s apart) and frees the lock.
pub const DEAD_HOLDER_SECS: u64 = 11;
/// How often the holder checks that its lock connection is still alive.
const HEARTBEAT: Duration = Duration::from_secs(10);

/// Why this node may not serve the database.
#[derive(Debug, thiserror::Error)]
pub enum NodeLockError {
    /// Another node holds the lock.
    #[error(
        "another Vigil server is already running on this database ({holder}). Without a \
         cluster (`nats_url` on every node, PostgreSQL only), one server serves a database, and \
         a cluster's nodes refuse a server that is not one of them: stop the other one first, \
         point this one at another database, or give both the same `nats_url`. If the other \
         server's host died, its lock is freed within about {DEAD_HOLDER_SECS} seconds \
         (PostgreSQL) or at once (SQLite)."
    )]
    Held {
        /// Who holds it, as far as the database tells.
        holder: String,
    },
    /// The database could not be asked.
    #[error("cannot take the single-server lock on the database: {0}")]
    Database(#[from] sqlx::Error),
    /// The SQLite lock file could not be opened.
    #[error("cannot take the single-server lock {path}: {source}")]
    File {
        /// The lock file.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
}

/// The lock a serving node holds; released by [`NodeLock::release`] or when the process ends.
#[derive(Debug)]
pub struct NodeLock {
    held: Held,
    /// Cancelled if another node took the lock while this one had lost its connection.
    lost: CancellationToken,
}

#[derive(Debug)]
enum Held {
    Postgres {
        stop: CancellationToken,
        task: JoinHandle<()>,
    },
    SqliteFile(std::fs::File),
    Nothing,
}

impl NodeLock {
    /// Takes the lock for the database at `url`, waiting up to [`WAIT_FOR_LOCK`]; `who`
    /// describes this node to the next one that is refused (PostgreSQL's `application_name`).
    /// A cluster node (`shared`) shares the lock with the other nodes.
    pub async fn acquire(url: &str, who: &str, shared: bool) -> Result<NodeLock, NodeLockError> {
        let lost = CancellationToken::new();
        let held = if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            let opts = PgConnectOptions::from_str(url)?.application_name(who);
            let conn = lock_postgres(&opts, WAIT_FOR_LOCK, shared).await?;
            let stop = CancellationToken::new();
            let task = tokio::spawn(hold_postgres(
                conn,
                opts,
                shared,
                stop.clone(),
                lost.clone(),
            ));
            Held::Postgres { stop, task }
        } else if url.starts_with("sqlite:") {
            match sqlite_lock_path(url)? {
                Some(path) => Held::SqliteFile(lock_file(path)?),
                None => Held::Nothing,
            }
        } else {
            // `Db::connect` refuses the URL with its own message.
            Held::Nothing
        };
        Ok(NodeLock { held, lost })
    }

    /// Resolves if another node took over the database: this node must stop.
    pub fn lost(&self) -> impl Future<Output = ()> + Send + 'static {
        self.lost.clone().cancelled_owned()
    }

    /// Whether another node took over the database.
    pub fn is_lost(&self) -> bool {
        self.lost.is_cancelled()
    }

    /// Releases the lock (after the server has closed the database).
    pub async fn release(self) {
        match self.held {
            Held::Postgres { stop, task } => {
                stop.cancel();
                let _ = task.await;
            }
            Held::SqliteFile(file) => drop(file),
            Held::Nothing => {}
        }
    }
}

/// Connects and takes the advisory lock, retrying for up to `wait`.
async fn lock_postgres(
    opts: &PgConnectOptions,
    wait: Duration,
    shared: bool,
) -> Result<PgConnection, NodeLockError> {
    let mut conn = PgConnection::connect_with(opts).await?;
    // The server's side of the keepalives: how soon PostgreSQL ends the session of a dead host.
    for (name, value) in [
        ("tcp_keepalives_idle", 5),
        ("tcp_keepalives_interval", 2),
        ("tcp_keepalives_count", 3),
    ] {
        if let Err(e) = sqlx::query(sqlx::AssertSqlSafe(format!("SET {name} = {value}")))
            .execute(&mut conn)
            .await
        {
            tracing::warn!(error = %e, name, "cannot shorten the lock connection's keepalives");
        }
    }
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let take = if shared {
            "SELECT pg_try_advisory_lock_shared($1)"
        } else {
            "SELECT pg_try_advisory_lock($1)"
        };
        let got: bool = sqlx::query_scalar(take)
            .bind(LOCK_KEY)
            .fetch_one(&mut conn)
            .await?;
        if got {
            return Ok(conn);
        }
        if tokio::time::Instant::now() >= deadline {
            let holder = describe_holder(&mut conn).await;
            let _ = conn.close().await;
            return Err(NodeLockError::Held { holder });
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// A lock holder's session: pid, application name, client address, connected since.
type HolderRow = (i32, Option<String>, Option<String>, Option<String>);

/// Who holds the advisory lock on this database, as far as this role may see.
async fn describe_holder(conn: &mut PgConnection) -> String {
    // A bigint key is stored as classid (high 32 bits) and objid (low 32 bits), objsubid 1.
    let row: Result<Option<HolderRow>, _> = sqlx::query_as(
        "SELECT a.pid, NULLIF(a.application_name, ''), host(a.client_addr), \
                    to_char(a.backend_start AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS \"UTC\"') \
             FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
             WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 \
               AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
               AND l.classid::bigint = $1 AND l.objid::bigint = $2",
    )
    .bind(LOCK_KEY >> 32)
    .bind(LOCK_KEY & 0xFFFF_FFFF)
    .fetch_optional(&mut *conn)
    .await;
    match row {
        Ok(Some((pid, app, addr, since))) => {
            let mut s = format!("PostgreSQL session {pid}");
            if let Some(app) = app {
                s.push_str(&format!(" of \"{app}\""));
            }
            s.push_str(&format!(
                " from {}",
                addr.as_deref().unwrap_or("a local socket")
            ));
            if let Some(since) = since {
                s.push_str(&format!(", connected since {since}"));
            }
            format!("it holds the advisory lock {LOCK_KEY}: {s}")
        }
        _ => format!("a PostgreSQL session holds the advisory lock {LOCK_KEY}"),
    }
}

/// Keeps the lock's connection alive until `stop`; if the connection is lost, takes the lock
/// again, and cancels `lost` if another node got it meanwhile.
async fn hold_postgres(
    mut conn: PgConnection,
    opts: PgConnectOptions,
    shared: bool,
    stop: CancellationToken,
    lost: CancellationToken,
) {
    let mut tick = tokio::time::interval(HEARTBEAT);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        let Err(e) = sqlx::query("SELECT 1").execute(&mut conn).await else {
            continue;
        };
        tracing::error!(error = %e, "lost the connection that holds the single-server lock; taking it again");
        let mut backoff = Duration::from_secs(1);
        loop {
            let attempt = tokio::select! {
                () = stop.cancelled() => return,
                r = lock_postgres(&opts, Duration::ZERO, shared) => r,
            };
            match attempt {
                Ok(c) => {
                    tracing::info!("single-server lock taken again");
                    conn = c;
                    break;
                }
                Err(NodeLockError::Held { holder }) => {
                    tracing::error!(%holder, "another server took over this database while the lock was lost; stopping this one");
                    lost.cancel();
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, ?backoff, "cannot take the single-server lock again yet");
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
    }
    // Closing the session releases the lock at once (rather than when the socket times out).
    let _ = conn.close().await;
}

/// The lock file of an SQLite database, or `None` for an in-memory one.
fn sqlite_lock_path(url: &str) -> Result<Option<PathBuf>, NodeLockError> {
    let opts = SqliteConnectOptions::from_str(url)?;
    let file = opts.get_filename();
    let name = file.to_string_lossy();
    if name.is_empty() || name == ":memory:" || url.contains("mode=memory") {
        return Ok(None);
    }
    let mut lock = file.as_os_str().to_owned();
    lock.push("-vigil.lock");
    Ok(Some(PathBuf::from(lock)))
}

/// Opens (creating) and exclusively locks `path`. No waiting: the kernel releases the lock of
/// a process the moment it ends.
fn lock_file(path: PathBuf) -> Result<std::fs::File, NodeLockError> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| NodeLockError::File {
            path: path.clone(),
            source,
        })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(NodeLockError::Held {
            holder: format!("another process holds {}", path.display()),
        }),
        Err(std::fs::TryLockError::Error(source)) => Err(NodeLockError::File { path, source }),
    }
}
