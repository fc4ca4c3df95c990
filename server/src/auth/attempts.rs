//! Login attempt accounting per normalised e-mail, for known and unknown addresses alike.
//!
//! An attempt is counted atomically *before* the password is checked: when the check came
//! first, forty guesses sent at once were all evaluated before any of them was counted. The
//! same row exists for an address no account has, so a stranger cannot tell which accounts
//! exist from the status, the delay or the lockout.

use crate::AppState;
use crate::db::now_ms;
use crate::error::AppResult;
use crate::on_writer;

/// What the login may do with this attempt.
#[derive(Debug, PartialEq, Eq)]
pub enum Attempt {
    /// Check the password; this is the n-th attempt in a row without success.
    Check { nth: i64 },
    /// Refuse without checking, until this time (ms).
    Locked { until: i64 },
}

/// Counts one attempt for `email` and says whether its password may be checked.
pub async fn begin(state: &AppState, email: &str) -> AppResult<Attempt> {
    let now = now_ms();
    let max = i64::from(state.settings.login_max_failures.max(1));
    // One statement, so that concurrent attempts each see a distinct count. A lock that has
    // run out starts the count afresh.
    let (attempts, locked_until): (i64, Option<i64>) = on_writer!(&state.db, pool => sqlx::query_as(
        "INSERT INTO login_attempts (email, attempts, locked_until, last_attempt_at) VALUES ($1, 1, NULL, $2) \
         ON CONFLICT (email) DO UPDATE SET \
           attempts = CASE WHEN login_attempts.locked_until IS NULL THEN login_attempts.attempts + 1 \
                           WHEN login_attempts.locked_until > $2 THEN login_attempts.attempts \
                           ELSE 1 END, \
           locked_until = CASE WHEN login_attempts.locked_until > $2 THEN login_attempts.locked_until ELSE NULL END, \
           last_attempt_at = $2 \
         RETURNING attempts, locked_until")
        .bind(email).bind(now).fetch_one(pool).await?);
    if let Some(until) = locked_until {
        return Ok(Attempt::Locked { until });
    }
    if attempts > max {
        return Ok(Attempt::Locked {
            until: lock(state, email, now).await?,
        });
    }
    Ok(Attempt::Check { nth: attempts })
}

/// Records that the n-th attempt failed; the limit-th failure locks the address.
pub async fn failed(state: &AppState, email: &str, nth: i64) -> AppResult<()> {
    if nth >= i64::from(state.settings.login_max_failures.max(1)) {
        lock(state, email, now_ms()).await?;
        tracing::warn!(email, "login locked after repeated failures");
    }
    Ok(())
}

/// Clears the count after a success, unless a lock started meanwhile (a success never lifts
/// a lock: parallel guesses could otherwise clear it for each other).
pub async fn succeeded(state: &AppState, email: &str) -> AppResult<()> {
    on_writer!(&state.db, pool => sqlx::query(
        "DELETE FROM login_attempts WHERE email = $1 AND locked_until IS NULL")
        .bind(email).execute(pool).await.map(drop))?;
    Ok(())
}

/// Sets the lock if none is set, and returns when it ends.
async fn lock(state: &AppState, email: &str, now: i64) -> AppResult<i64> {
    let until = now + i64::try_from(state.settings.login_lockout_secs).unwrap_or(900) * 1000;
    let until: i64 = on_writer!(&state.db, pool => sqlx::query_scalar(
        "UPDATE login_attempts SET locked_until = COALESCE(locked_until, $1) WHERE email = $2 RETURNING locked_until")
        .bind(until).bind(email).fetch_one(pool).await?);
    Ok(until)
}

/// Drops rows nobody has tried for a lockout period, hourly, so that guessing at random
/// addresses cannot grow the table without end.
pub fn spawn_pruning(state: &AppState) {
    crate::sweeper::every(
        state,
        "login attempt pruning",
        std::time::Duration::from_secs(3600),
        |state| async move {
            let keep = i64::try_from(state.settings.login_lockout_secs).unwrap_or(900) * 1000;
            let now = now_ms();
            on_writer!(&state.db, pool => sqlx::query(
                "DELETE FROM login_attempts WHERE last_attempt_at < $1 AND (locked_until IS NULL OR locked_until < $2)")
                .bind(now - keep).bind(now).execute(pool).await.map(|r| r.rows_affected()))
        },
    );
}
