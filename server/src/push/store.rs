//! Storage of push subscriptions.

use crate::db::{Db, now_ms};
use crate::{on_reader, on_writer};

use super::{MAX_SUBSCRIPTIONS_PER_USER, PushSubscriptionView, ValidSubscription};

const VIEW_COLUMNS: &str = "id, endpoint, label, expires_at, created_at, updated_at, \
                            last_success_at, last_failure_at, failures_in_a_row";

/// What sending to one subscription needs.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Subscription {
    /// Id.
    pub id: i64,
    /// The person it wakes.
    pub user_id: i64,
    /// The push service URL.
    pub endpoint: String,
    /// The browser's P-256 public key, base64url.
    pub p256dh: String,
    /// The browser's auth secret, base64url.
    pub auth: String,
    /// Last accepted message (Unix ms), to keep bookkeeping writes rare.
    pub last_success_at: Option<i64>,
    /// Failures since the last success.
    pub failures_in_a_row: i64,
}

/// Registers (or re-registers) a subscription for `user_id`; true when it is new. Keeps the
/// person's newest [`MAX_SUBSCRIPTIONS_PER_USER`].
pub async fn upsert(
    db: &Db,
    user_id: i64,
    s: &ValidSubscription,
) -> Result<(PushSubscriptionView, bool), sqlx::Error> {
    let now = now_ms();
    let previous_owner: Option<i64> = on_reader!(db, pool => {
        sqlx::query_scalar("SELECT user_id FROM push_subscriptions WHERE endpoint = $1")
            .bind(&s.endpoint).fetch_optional(pool).await
    })?;
    if let Some(previous) = previous_owner.filter(|p| *p != user_id) {
        // One browser, another person signed in: the device now belongs to them, and the
        // previous person's alerts must stop appearing on it.
        tracing::info!(
            from = previous,
            to = user_id,
            "push subscription moved to the person now signed in on that browser"
        );
    }
    let sql = format!(
        "INSERT INTO push_subscriptions (user_id, endpoint, p256dh, auth, label, expires_at, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $7) \
         ON CONFLICT (endpoint) DO UPDATE SET user_id = excluded.user_id, p256dh = excluded.p256dh, \
           auth = excluded.auth, label = excluded.label, expires_at = excluded.expires_at, \
           updated_at = excluded.updated_at, last_failure_at = NULL, failures_in_a_row = 0 \
         RETURNING {VIEW_COLUMNS}"
    );
    let view: PushSubscriptionView = on_writer!(db, pool => {
        sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str()))
            .bind(user_id).bind(&s.endpoint).bind(&s.p256dh).bind(&s.auth)
            .bind(&s.label).bind(s.expires_at).bind(now)
            .fetch_one(pool).await
    })?;
    on_writer!(db, pool => {
        sqlx::query(
            "DELETE FROM push_subscriptions WHERE user_id = $1 AND id NOT IN \
             (SELECT id FROM push_subscriptions WHERE user_id = $1 ORDER BY updated_at DESC, id DESC LIMIT $2)")
            .bind(user_id).bind(MAX_SUBSCRIPTIONS_PER_USER)
            .execute(pool).await.map(drop)
    })?;
    Ok((view, previous_owner.is_none()))
}

/// The person's subscriptions, oldest first.
pub async fn list(db: &Db, user_id: i64) -> Result<Vec<PushSubscriptionView>, sqlx::Error> {
    let sql =
        format!("SELECT {VIEW_COLUMNS} FROM push_subscriptions WHERE user_id = $1 ORDER BY id");
    on_reader!(db, pool => {
        sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str())).bind(user_id).fetch_all(pool).await
    })
}

/// Forgets the person's subscription at `endpoint`, if they have one.
pub async fn remove(db: &Db, user_id: i64, endpoint: &str) -> Result<bool, sqlx::Error> {
    let done = on_writer!(db, pool => {
        sqlx::query("DELETE FROM push_subscriptions WHERE user_id = $1 AND endpoint = $2")
            .bind(user_id).bind(endpoint.trim()).execute(pool).await?.rows_affected()
    });
    Ok(done > 0)
}

/// The subscriptions a message to `user_id` goes to now: lapsed ones (by the browser's own
/// expiry) are deleted instead.
pub async fn subscriptions_of(db: &Db, user_id: i64) -> Result<Vec<Subscription>, sqlx::Error> {
    let now = now_ms();
    let all: Vec<(Subscription, Option<i64>)> = on_reader!(db, pool => {
        sqlx::query_as::<_, (i64, i64, String, String, String, Option<i64>, i64, Option<i64>)>(
            "SELECT id, user_id, endpoint, p256dh, auth, last_success_at, failures_in_a_row, expires_at \
             FROM push_subscriptions WHERE user_id = $1 ORDER BY id")
            .bind(user_id).fetch_all(pool).await
    })?
    .into_iter()
    .map(|(id, user_id, endpoint, p256dh, auth, last_success_at, failures_in_a_row, expires_at)| {
        (Subscription { id, user_id, endpoint, p256dh, auth, last_success_at, failures_in_a_row }, expires_at)
    })
    .collect();
    let (live, lapsed): (Vec<_>, Vec<_>) = all
        .into_iter()
        .partition(|(_, expires)| expires.is_none_or(|e| e > now));
    for (sub, _) in lapsed {
        delete_subscription(db, sub.id).await?;
    }
    Ok(live.into_iter().map(|(s, _)| s).collect())
}

/// Deletes a subscription by id (the push service said it is gone, or it lapsed).
pub async fn delete_subscription(db: &Db, id: i64) -> Result<(), sqlx::Error> {
    on_writer!(db, pool => {
        sqlx::query("DELETE FROM push_subscriptions WHERE id = $1").bind(id).execute(pool).await.map(drop)
    })?;
    Ok(())
}

/// Notes an accepted message.
pub(super) async fn record_success(db: &Db, id: i64) -> Result<(), sqlx::Error> {
    on_writer!(db, pool => {
        sqlx::query("UPDATE push_subscriptions SET last_success_at = $2, failures_in_a_row = 0 WHERE id = $1")
            .bind(id).bind(now_ms()).execute(pool).await.map(drop)
    })?;
    Ok(())
}

/// Notes a failed message.
pub(super) async fn record_failure(db: &Db, id: i64) -> Result<(), sqlx::Error> {
    on_writer!(db, pool => {
        sqlx::query("UPDATE push_subscriptions SET last_failure_at = $2, failures_in_a_row = failures_in_a_row + 1 WHERE id = $1")
            .bind(id).bind(now_ms()).execute(pool).await.map(drop)
    })?;
    Ok(())
}
