//! Fallback delivery: web push, then SMS, for copies no device has confirmed.
//!
//! An alert carries `fallback_at` (`alert_push_after_secs` after sending): when it comes, the
//! sweeper arms the copies no device has confirmed by giving them a `next_attempt_at` (copies
//! already delivered never enter the schedule, and sending writes no per-copy index entry).
//! The sweeper claims due rows by moving that time
//! forward by a lease (so another node, or this one after a crash, leaves them alone until the
//! lease runs out), tries the next channel, and records the outcome with the next time due:
//! - first, web push to every subscription of the person (high urgency, expiring with the
//!   alert); the phone shows the alert and confirms it over HTTP;
//! - then, `alert_sms_after_secs` later and only if the alert allows SMS, the gateway has a
//!   provider and the person a phone number, one SMS (counted in segments for cost);
//! - a confirmed, expired or cancelled copy is never tried again.
//!
//! A crash between a channel accepting a message and the outcome being recorded sends that
//! one copy again after the lease: devices deduplicate pushes by alert id; the window for a
//! duplicate SMS is that one round trip.

use std::collections::HashMap;

use futures_util::future::join_all;
use serde_json::json;

use super::store::{self, KIND_ALERT};
use super::{Alert, Step};
use crate::db::now_ms;
use crate::metrics::FallbackLabels;
use crate::push::{PushOptions, Urgency};
use crate::{AppState, in_tx, on_reader};

/// Rows claimed per sweep.
const BATCH: i64 = 500;
/// How long a claim outlives the slowest channel call before another sweep (another node's,
/// or this one's after a crash) may take the row again.
const LEASE_MARGIN_MS: i64 = 20_000;
/// Pause before retrying a channel that failed transiently.
const RETRY_MS: i64 = 30_000;
/// Most web-push attempts per copy.
const MAX_PUSH_ATTEMPTS: i64 = 3;
/// Longest SMS text: three GSM-7 segments, so one alert costs at most three per person.
const SMS_MAX_CHARS: usize = 459;

/// Starts the sweeper; it stops when the server shuts down.
pub fn spawn(state: &AppState) {
    crate::sweeper::spawn(
        state,
        "alert fallback",
        BATCH as usize,
        |state| async move { sweep(&state).await },
    );
}

#[derive(Debug, sqlx::FromRow)]
struct Due {
    alert_id: i64,
    user_id: i64,
    push_attempts: i64,
    sms_messages: i64,
}

#[derive(Debug, sqlx::FromRow)]
struct Person {
    id: i64,
    phone: Option<String>,
    preferred_language: String,
}

/// What one attempt changed.
#[derive(Debug, Default)]
struct Outcome {
    push_attempts: i64,
    sms_messages: i64,
    sms_segments: i64,
    next: Option<i64>,
    error: Option<String>,
    sent_by: Option<&'static str>,
}

/// Alerts armed per sweep.
const ARM_BATCH: i64 = 20;

/// Puts the unconfirmed copies of alerts whose `fallback_at` has come on the schedule — only
/// those with a channel to try (a push subscription, or a phone number when the alert allows
/// SMS and a gateway is set up); the rest are marked as having none, in one statement rather
/// than a claim and an attempt each. Claiming the alert (clearing `fallback_at`) and arming its
/// copies commit together, so a crash leaves either both or neither, and two nodes never arm
/// one alert twice.
async fn arm(state: &AppState, now: i64) -> Result<(), sqlx::Error> {
    let db = &state.db;
    let due: Vec<(i64, i64, bool)> = on_reader!(db, pool => sqlx::query_as(
        "SELECT id, fallback_at, sms_fallback FROM alerts WHERE fallback_at IS NOT NULL AND fallback_at <= $1 \
         ORDER BY fallback_at LIMIT $2")
        .bind(now).bind(ARM_BATCH).fetch_all(pool).await?);
    let unconfirmed = "alert_id = $1 AND state IN ('queued', 'sent') AND next_attempt_at IS NULL \
        AND push_attempts = 0 AND sms_messages = 0";
    let arm = format!(
        "UPDATE alert_recipients SET next_attempt_at = $2 WHERE {unconfirmed} \
         AND (user_id IN (SELECT user_id FROM push_subscriptions) \
              OR ($3 AND user_id IN (SELECT id FROM users WHERE phone IS NOT NULL)))"
    );
    let none = format!(
        "UPDATE alert_recipients SET last_error = 'no web-push subscription' WHERE {unconfirmed} \
         AND last_error IS NULL"
    );
    for (alert_id, at, sms_fallback) in due {
        let sms = sms_fallback && state.sms.is_enabled();
        in_tx!(db, tx => {
            let claimed = sqlx::query("UPDATE alerts SET fallback_at = NULL WHERE id = $1 AND fallback_at IS NOT NULL")
                .bind(alert_id).execute(&mut *tx).await?.rows_affected();
            if claimed == 1 {
                sqlx::query(sqlx::AssertSqlSafe(arm.clone()))
                    .bind(alert_id).bind(at).bind(sms).execute(&mut *tx).await?;
                sqlx::query(sqlx::AssertSqlSafe(none.clone()))
                    .bind(alert_id).execute(&mut *tx).await?;
            }
            tx.commit().await?;
        });
    }
    Ok(())
}

/// Claims and works one batch of due copies; returns how many were claimed.
pub async fn sweep(state: &AppState) -> Result<usize, sqlx::Error> {
    let now = now_ms();
    let db = &state.db;
    let slowest = state
        .settings
        .push_timeout_secs
        .max(state.settings.sms_timeout_secs);
    let lease = i64::try_from(slowest).unwrap_or(60) * 1_000 + LEASE_MARGIN_MS;
    arm(state, now).await?;
    let due: Vec<Due> = in_tx!(db, tx => {
        let due = sqlx::query_as(
            "UPDATE alert_recipients SET next_attempt_at = $2 \
             WHERE next_attempt_at <= $1 AND (alert_id, user_id) IN ( \
                 SELECT alert_id, user_id FROM alert_recipients \
                 WHERE next_attempt_at IS NOT NULL AND next_attempt_at <= $1 AND state IN ('queued', 'sent') \
                 ORDER BY next_attempt_at LIMIT $3) \
             RETURNING alert_id, user_id, push_attempts, sms_messages")
            .bind(now).bind(now + lease).bind(BATCH).fetch_all(&mut *tx).await?;
        tx.commit().await?;
        due
    });
    if due.is_empty() {
        return Ok(0);
    }
    let mut alerts: HashMap<i64, Option<Alert>> = HashMap::new();
    for d in &due {
        if let std::collections::hash_map::Entry::Vacant(slot) = alerts.entry(d.alert_id) {
            slot.insert(store::load(db, d.alert_id).await.ok());
        }
    }
    let ids: Vec<i64> = due.iter().map(|d| d.user_id).collect();
    let sql = format!(
        "SELECT id, phone, preferred_language FROM users WHERE id IN ({})",
        db.json_ints(1)
    );
    let ids = serde_json::to_string(&ids).unwrap_or_default();
    let people: Vec<Person> = on_reader!(db, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()))
        .bind(&ids).fetch_all(pool).await?);
    let people: HashMap<i64, Person> = people.into_iter().map(|p| (p.id, p)).collect();
    let outcomes = join_all(due.iter().map(|d| {
        let alert = alerts.get(&d.alert_id).and_then(Option::as_ref);
        attempt(state, d, alert, people.get(&d.user_id), now)
    }))
    .await;
    in_tx!(db, tx => {
        for (d, o) in due.iter().zip(&outcomes) {
            sqlx::query(
                "UPDATE alert_recipients SET push_attempts = push_attempts + $3, sms_messages = sms_messages + $4, \
                 sms_segments = sms_segments + $5, next_attempt_at = $6, last_error = COALESCE($7, last_error) \
                 WHERE alert_id = $1 AND user_id = $2")
                .bind(d.alert_id).bind(d.user_id).bind(o.push_attempts).bind(o.sms_messages)
                .bind(o.sms_segments).bind(o.next).bind(o.error.as_deref())
                .execute(&mut *tx).await?;
        }
        tx.commit().await?;
    });
    let mut by_channel: HashMap<(i64, &'static str), Vec<i64>> = HashMap::new();
    for (d, o) in due.iter().zip(&outcomes) {
        match o.sent_by {
            Some(channel) => by_channel
                .entry((d.alert_id, channel))
                .or_default()
                .push(d.user_id),
            None => state.ledger.touch(d.alert_id),
        }
    }
    for ((alert_id, channel), users) in by_channel {
        state
            .ledger
            .mark(alert_id, users, Step::Sent, Some(channel));
    }
    Ok(due.len())
}

/// Tries the next channel for one copy.
async fn attempt(
    state: &AppState,
    d: &Due,
    alert: Option<&Alert>,
    person: Option<&Person>,
    now: i64,
) -> Outcome {
    let (Some(alert), Some(person)) = (alert, person) else {
        return Outcome::default();
    };
    if alert.cancelled_at.is_some() || alert.expires_at.0 <= now {
        return Outcome::default();
    }
    let sms_ready = alert.sms_fallback
        && state.sms.is_enabled()
        && person.phone.is_some()
        && d.sms_messages == 0;
    let sms_at = now + i64::try_from(state.settings.alert_sms_after_secs).unwrap_or(60) * 1_000;
    if d.push_attempts < MAX_PUSH_ATTEMPTS && (d.push_attempts == 0 || !sms_ready) {
        let mut o = push(state, alert, person, now).await;
        if o.next.is_none() && sms_ready {
            o.next = Some(sms_at);
        }
        return o;
    }
    if sms_ready {
        return sms(
            state,
            alert,
            person,
            person.phone.as_deref().unwrap_or_default(),
            now,
        )
        .await;
    }
    Outcome::default()
}

fn text_for<'a>(alert: &'a Alert, language: &str) -> Option<&'a super::Translation> {
    alert
        .translations
        .get(language)
        .or_else(|| {
            alert
                .translations
                .get(language.split('-').next().unwrap_or(language))
        })
        .or_else(|| alert.translations.get(&alert.default_language))
        .or_else(|| alert.translations.values().next())
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

async fn push(state: &AppState, alert: &Alert, person: &Person, now: i64) -> Outcome {
    let Some(text) = text_for(alert, &person.preferred_language) else {
        return Outcome::default();
    };
    // Web push carries about 3 KB: the phone shows the title and fetches the rest.
    let payload = json!({
        "type": KIND_ALERT,
        "alert_id": alert.id,
        "severity": alert.severity,
        "title": truncate(&text.title, 200),
        "body": truncate(&text.body, 600),
        "url": format!("/app/#/alerts/{}", alert.id),
    });
    let ttl =
        u32::try_from(((alert.expires_at.0 - now) / 1_000).clamp(0, 28 * 86_400)).unwrap_or(86_400);
    let opts = PushOptions {
        ttl_secs: ttl,
        urgency: Urgency::High,
        topic: Some(format!("alert{}", alert.id)),
    };
    let mut o = Outcome {
        push_attempts: 1,
        ..Outcome::default()
    };
    let label = |outcome| FallbackLabels {
        channel: "push",
        outcome,
    };
    match crate::push::send_to_user(state, person.id, &payload, opts).await {
        Ok(r) if r.sent > 0 => {
            state
                .metrics
                .alert_fallbacks
                .get_or_create(&label("sent"))
                .inc();
            o.sent_by = Some("push");
        }
        Ok(r) if r.attempted == 0 => {
            state
                .metrics
                .alert_fallbacks
                .get_or_create(&label("skipped"))
                .inc();
            o.error = Some("no web-push subscription".into());
        }
        Ok(r) => {
            state
                .metrics
                .alert_fallbacks
                .get_or_create(&label("failed"))
                .inc();
            o.error = r.failures.first().map(|f| format!("push: {}", f.error));
            if r.retryable() {
                o.next = Some(now + RETRY_MS);
            }
        }
        Err(e) => {
            state
                .metrics
                .alert_fallbacks
                .get_or_create(&label("failed"))
                .inc();
            o.error = Some(format!("push: {e}"));
        }
    }
    o
}

async fn sms(state: &AppState, alert: &Alert, person: &Person, phone: &str, now: i64) -> Outcome {
    let Some(t) = text_for(alert, &person.preferred_language) else {
        return Outcome::default();
    };
    let detail = t.instructions.as_deref().unwrap_or(&t.body);
    let text = truncate(&format!("{}: {}", t.title, detail), SMS_MAX_CHARS);
    let label = |outcome| FallbackLabels {
        channel: "sms",
        outcome,
    };
    match state.sms.send(phone, &text).await {
        Ok(sent) => {
            state
                .metrics
                .alert_fallbacks
                .get_or_create(&label("sent"))
                .inc();
            Outcome {
                sms_messages: 1,
                sms_segments: i64::try_from(sent.segments.segments).unwrap_or(1),
                sent_by: Some("sms"),
                ..Outcome::default()
            }
        }
        Err(e) => {
            state
                .metrics
                .alert_fallbacks
                .get_or_create(&label("failed"))
                .inc();
            Outcome {
                next: (!e.is_permanent()).then_some(now + RETRY_MS),
                error: Some(format!("sms: {e}")),
                ..Outcome::default()
            }
        }
    }
}
