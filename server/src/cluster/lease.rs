//! Leases on singleton work, in the database: one node holds each until it stops renewing.
//!
//! A holder renews at every run of the work it guards, well within the lease's time, so a
//! live holder keeps it; a dead one's lease expires and the next node to try takes it. Times
//! are the asking node's clock: nodes of one cluster keep time by NTP, and a skew of a second
//! only moves a takeover by a second.

use std::time::Duration;

use crate::db::{Db, now_ms};
use crate::on_writer;

/// Takes or renews the lease `name` for `holder` until `ttl` from now; true if `holder` has it.
pub async fn take(db: &Db, name: &str, holder: &str, ttl: Duration) -> Result<bool, sqlx::Error> {
    let now = now_ms();
    let until = now + i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX / 2);
    let held: Option<String> = on_writer!(db, pool => sqlx::query_scalar(
        "INSERT INTO leases (name, holder, expires_at) VALUES ($1, $2, $3) \
         ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at \
         WHERE leases.holder = excluded.holder OR leases.expires_at < $4 \
         RETURNING holder")
        .bind(name).bind(holder).bind(until).bind(now)
        .fetch_optional(pool).await)?;
    Ok(held.is_some())
}

/// Gives up every lease of `holder`.
pub async fn release(db: &Db, holder: &str) -> Result<u64, sqlx::Error> {
    on_writer!(db, pool => sqlx::query("DELETE FROM leases WHERE holder = $1")
        .bind(holder).execute(pool).await.map(|r| r.rows_affected()))
}
