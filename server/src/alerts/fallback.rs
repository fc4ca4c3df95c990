//! Fallback delivery: web push, then SMS, for copies no device has confirmed.
//!
//! An alert carries `fallback_at` (`alert_push_after_secs` after sending): when it comes, the
//! sweeper arms the copies no device has confirmed by giving them a `next_attempt_at` (copies
//! already delivered never enter the schedule, and sending writes no per-copy index entry).
//! The sweeper claims due rows by moving that time
//! forward by a lease (so another node, or this one after a crash, leaves them alone until the
//! lease runs out), tries the next channel, and records the outcome with the next time due:
//! - first, web push to every subscription of the person (high urgency, expiring with the
//!   alert) and, at the same time, FCM or APNs to every native app they registered; the phone
//!   shows the alert and confirms it over HTTP;
//! - then, `alert_sms_after_secs` later and only if the alert allows SMS, the gateway has a
//!   provider and the person a phone number, one SMS (counted in segments for cost);
//! - a confirmed, expired or cancelled copy is never tried again.
//!
//! A sweep claims no more copies than two rounds of calls at the node's bound on requests in
//! flight (`push_concurrency`, `sms_concurrency`) can send, and its lease covers those two
//! rounds, so a claimed copy is never still waiting for its turn when the lease runs out.
//!
//! Each outcome is recorded as its channel answers (outcomes that come back while a commit is
//! under way share the next one), so a crash sends again only the copies whose answer had not
//! been recorded yet: devices deduplicate pushes by alert id; the window for a duplicate SMS is
//! one round trip to the gateway plus one commit, for at most `sms_concurrency` texts.
//!
//! The database failing is never taken for "nothing to do": an alert that cannot be read is not
//! an alert that is gone, and subscriptions that cannot be read are not missing ones. Reads are
//! retried for a moment; copies whose alert still cannot be read go back on the schedule a few
//! seconds later (with the reason in `last_error`); an outcome that cannot be recorded is
//! retried until shortly before the lease runs out, after which the copy is tried again.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use serde_json::json;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::store::{self, KIND_ALERT};
use super::{Alert, Step};
use crate::config::Settings;
use crate::db::{Db, now_ms};
use crate::error::AppError;
use crate::metrics::FallbackLabels;
use crate::push::{NativeMessage, PushError, PushOptions, Urgency};
use crate::{AppState, in_tx, on_reader, on_writer};

/// Most rows claimed per sweep, whatever the bounds on requests in flight.
const BATCH: i64 = 500;
/// Rounds of channel calls, at the node's bound on requests in flight, that one claim covers.
const LEASE_ROUNDS: i64 = 2;
/// How long a claim outlives its rounds of channel calls before another sweep (another node's,
/// or this one's after a crash) may take the row again.
const LEASE_MARGIN_MS: i64 = 20_000;
/// Pause before retrying a channel that failed transiently.
const RETRY_MS: i64 = 30_000;
/// Pause before looking again at a copy whose alert or subscriptions could not be read.
const REREAD_MS: i64 = 5_000;
/// How long a sweep keeps trying a read it cannot work without (the alert, the people) before
/// it puts the copies back on the schedule.
const READ_PATIENCE: Duration = Duration::from_secs(2);
/// First pause between two tries of a failed database call; it doubles up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(20);
/// Longest pause between two tries of a failed database call.
const MAX_PAUSE: Duration = Duration::from_secs(1);
/// Most web-push attempts per copy.
const MAX_PUSH_ATTEMPTS: i64 = 3;
/// Longest SMS text: three GSM-7 segments, so one alert costs at most three per person.
const SMS_MAX_CHARS: usize = 459;

/// Starts the sweeper; it stops when the server shuts down.
pub fn spawn(state: &AppState) {
    let (claim, _) = claim_size(&state.settings);
    crate::sweeper::spawn(
        state,
        "alert fallback",
        usize::try_from(claim).unwrap_or(1),
        |state| async move { sweep(&state).await },
    );
}

/// How many copies one sweep claims, and for how long (milliseconds): no more than
/// [`LEASE_ROUNDS`] rounds of calls at the tighter of the two bounds on requests in flight,
/// each round as long as the slower channel's timeout.
fn claim_size(settings: &Settings) -> (i64, i64) {
    let bound = settings
        .push_concurrency
        .min(settings.sms_concurrency)
        .max(1);
    let claim = i64::try_from(bound)
        .unwrap_or(BATCH)
        .saturating_mul(LEASE_ROUNDS)
        .clamp(1, BATCH);
    let slowest = settings
        .push_timeout_secs
        .max(settings.sms_timeout_secs)
        .max(1);
    let lease = LEASE_ROUNDS * i64::try_from(slowest).unwrap_or(60) * 1_000 + LEASE_MARGIN_MS;
    (claim, lease)
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
              OR user_id IN (SELECT user_id FROM native_push_devices) \
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
        });
    }
    Ok(())
}

/// Claims up to `limit` due copies until `leased_until`.
async fn claim(db: &Db, now: i64, leased_until: i64, limit: i64) -> Result<Vec<Due>, sqlx::Error> {
    Ok(in_tx!(db, tx => {
        sqlx::query_as(
            "UPDATE alert_recipients SET next_attempt_at = $2 \
             WHERE next_attempt_at <= $1 AND (alert_id, user_id) IN ( \
                 SELECT alert_id, user_id FROM alert_recipients \
                 WHERE next_attempt_at IS NOT NULL AND next_attempt_at <= $1 AND state IN ('queued', 'sent') \
                 ORDER BY next_attempt_at LIMIT $3) \
             RETURNING alert_id, user_id, push_attempts, sms_messages")
            .bind(now).bind(leased_until).bind(limit).fetch_all(&mut *tx).await?
    }))
}

/// The alert, `None` when it no longer exists; `Err` when it could not be read, which is not
/// the same thing.
async fn load_alert(db: &Db, id: i64) -> Result<Option<Alert>, AppError> {
    match store::load(db, id).await {
        Ok(alert) => Ok(Some(alert)),
        Err(AppError::NotFound(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

async fn load_people(db: &Db, due: &[&Due]) -> Result<HashMap<i64, Person>, sqlx::Error> {
    let ids: Vec<i64> = due.iter().map(|d| d.user_id).collect();
    let sql = format!(
        "SELECT id, phone, preferred_language FROM users WHERE id IN ({})",
        db.json_ints(1)
    );
    let ids = serde_json::to_string(&ids).unwrap_or_default();
    let people: Vec<Person> = on_reader!(db, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()))
        .bind(&ids).fetch_all(pool).await?);
    Ok(people.into_iter().map(|p| (p.id, p)).collect())
}

/// Puts claimed copies back on the schedule at `at` (if this sweep still holds them), noting
/// `why` when given.
async fn release(
    db: &Db,
    copies: &[&Due],
    leased_until: i64,
    at: i64,
    why: Option<&str>,
) -> Result<(), sqlx::Error> {
    let mut by_alert: HashMap<i64, Vec<i64>> = HashMap::new();
    for d in copies {
        by_alert.entry(d.alert_id).or_default().push(d.user_id);
    }
    let sql = format!(
        "UPDATE alert_recipients SET next_attempt_at = $3, last_error = COALESCE($4, last_error) \
         WHERE alert_id = $1 AND next_attempt_at = $2 AND user_id IN ({})",
        db.json_ints(5)
    );
    for (alert_id, users) in by_alert {
        let users = serde_json::to_string(&users).unwrap_or_default();
        on_writer!(db, pool => sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
            .bind(alert_id).bind(leased_until).bind(at).bind(why).bind(&users)
            .execute(pool).await.map(drop))?;
    }
    Ok(())
}

/// Records what a group of attempts changed, in one transaction.
async fn record(db: &Db, group: &[(&Due, Outcome)]) -> Result<(), sqlx::Error> {
    in_tx!(db, tx => {
        for (d, o) in group {
            sqlx::query(
                "UPDATE alert_recipients SET push_attempts = push_attempts + $3, sms_messages = sms_messages + $4, \
                 sms_segments = sms_segments + $5, next_attempt_at = $6, last_error = COALESCE($7, last_error) \
                 WHERE alert_id = $1 AND user_id = $2")
                .bind(d.alert_id).bind(d.user_id).bind(o.push_attempts).bind(o.sms_messages)
                .bind(o.sms_segments).bind(o.next).bind(o.error.as_deref())
                .execute(&mut *tx).await?;
        }
    });
    Ok(())
}

/// Tells the ledger what a recorded group of attempts sent.
fn publish(state: &AppState, group: &[(&Due, Outcome)]) {
    let mut by_channel: HashMap<(i64, &'static str), Vec<i64>> = HashMap::new();
    let mut touched = HashSet::new();
    for (d, o) in group {
        match o.sent_by {
            Some(channel) => by_channel
                .entry((d.alert_id, channel))
                .or_default()
                .push(d.user_id),
            None => {
                touched.insert(d.alert_id);
            }
        }
    }
    for alert_id in touched {
        state.ledger.touch(alert_id);
    }
    for ((alert_id, channel), users) in by_channel {
        state
            .ledger
            .mark(alert_id, users, Step::Sent, Some(channel));
    }
}

/// Runs `op` until it succeeds, pausing a little longer after each failure, for as long as a
/// further try can start before `until` and the server is not shutting down.
async fn retrying<T, E, Fut>(
    state: &AppState,
    until: Instant,
    what: &'static str,
    mut op: impl FnMut() -> Fut,
) -> Result<T, E>
where
    E: std::fmt::Display,
    Fut: Future<Output = Result<T, E>>,
{
    let mut pause = FIRST_PAUSE;
    loop {
        match op().await {
            Ok(v) => return Ok(v),
            Err(e) if Instant::now() + pause < until && !state.shutdown.is_cancelled() => {
                tracing::warn!(error = %e, what, "alert fallback: database call failed; trying again");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(MAX_PAUSE);
            }
            Err(e) => return Err(e),
        }
    }
}

/// Claims and works one batch of due copies; returns how many were claimed.
pub async fn sweep(state: &AppState) -> Result<usize, sqlx::Error> {
    let now = now_ms();
    let db = &state.db;
    let (limit, lease) = claim_size(&state.settings);
    // Copies already on the schedule do not wait for arming, which the next sweep retries.
    if let Err(e) = arm(state, now).await {
        tracing::warn!(error = %e, "could not arm alert fallbacks; retrying at the next sweep");
    }
    let leased_until = now + lease;
    let claimed = claim(db, now, leased_until, limit).await?;
    if claimed.is_empty() {
        return Ok(0);
    }
    let started = Instant::now();
    // Recording may go on until shortly before the lease runs out and another sweep may
    // take the copies again.
    let record_by =
        started + Duration::from_millis(u64::try_from(lease - LEASE_MARGIN_MS / 2).unwrap_or(0));
    let read_by = started + READ_PATIENCE;

    let mut alerts: HashMap<i64, Option<Alert>> = HashMap::new();
    let mut unreadable: HashMap<i64, String> = HashMap::new();
    for d in &claimed {
        if alerts.contains_key(&d.alert_id) || unreadable.contains_key(&d.alert_id) {
            continue;
        }
        match retrying(state, read_by, "read an alert", || {
            load_alert(db, d.alert_id)
        })
        .await
        {
            Ok(alert) => {
                alerts.insert(d.alert_id, alert);
            }
            Err(e) => {
                tracing::error!(alert_id = d.alert_id, error = %e,
                    "could not read an alert for its fallback; its copies stay on the schedule");
                unreadable.insert(d.alert_id, format!("could not read the alert: {e}"));
            }
        }
    }
    for (alert_id, why) in &unreadable {
        let copies: Vec<&Due> = claimed.iter().filter(|d| d.alert_id == *alert_id).collect();
        if let Err(e) = release(db, &copies, leased_until, now + REREAD_MS, Some(why)).await {
            tracing::warn!(alert_id, error = %e, "could not put copies back on the schedule; they are tried again when the lease runs out");
        }
    }
    let due: Vec<&Due> = claimed
        .iter()
        .filter(|d| !unreadable.contains_key(&d.alert_id))
        .collect();
    if due.is_empty() {
        return Ok(claimed.len());
    }
    let people = match retrying(state, read_by, "read the recipients", || {
        load_people(db, &due)
    })
    .await
    {
        Ok(people) => people,
        Err(e) => {
            if let Err(e) = release(db, &due, leased_until, now + REREAD_MS, None).await {
                tracing::warn!(error = %e, "could not put copies back on the schedule; they are tried again when the lease runs out");
            }
            return Err(e);
        }
    };

    let (finished, mut outcomes) = mpsc::unbounded_channel::<(&Due, Outcome)>();
    let (alerts, people) = (&alerts, &people);
    let sending = async move {
        let mut attempts: FuturesUnordered<_> = due
            .iter()
            .map(|d| async move {
                let alert = alerts.get(&d.alert_id).and_then(Option::as_ref);
                (
                    *d,
                    attempt(state, d, alert, people.get(&d.user_id), now).await,
                )
            })
            .collect();
        while let Some(done) = attempts.next().await {
            // Recording failed for good: send nothing more whose outcome would be lost.
            if finished.send(done).is_err() {
                break;
            }
        }
    };
    let recording = async move {
        while let Some(first) = outcomes.recv().await {
            let mut group = vec![first];
            while let Ok(more) = outcomes.try_recv() {
                group.push(more);
            }
            retrying(state, record_by, "record fallback outcomes", || {
                record(db, &group)
            })
            .await?;
            publish(state, &group);
        }
        Ok::<(), sqlx::Error>(())
    };
    let ((), recorded) = tokio::join!(sending, recording);
    recorded?;
    Ok(claimed.len())
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
    let native = NativeMessage {
        alert_id: alert.id,
        title: truncate(&text.title, 200),
        body: truncate(&text.body, 600),
        severity: payload["severity"].as_str().unwrap_or_default().to_string(),
        expires_at_ms: alert.expires_at.0,
    };
    // A database error comes before anything is sent (reading the subscriptions or devices),
    // so trying again at once cannot push twice. Web push and the native services are tried
    // together: a person with both the web app and the native app gets each once.
    let read_by = Instant::now() + READ_PATIENCE;
    let mut pause = FIRST_PAUSE;
    let (web, apps) = loop {
        let (web, apps) = tokio::join!(
            crate::push::send_to_user(state, person.id, &payload, opts.clone()),
            state.native_push.send_to_user(state, person.id, &native),
        );
        let unreadable = matches!(web, Err(PushError::Db(_))) || apps.is_err();
        if unreadable && Instant::now() + pause < read_by && !state.shutdown.is_cancelled() {
            tracing::warn!(
                alert_id = alert.id,
                user_id = person.id,
                "could not read the push subscriptions or devices; trying again"
            );
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(MAX_PAUSE);
            continue;
        }
        break (web, apps);
    };
    let web = match web {
        Err(PushError::Db(e)) => Err(format!("{e}")),
        Ok(r) => Ok(Ok(r)),
        Err(e) => Ok(Err(e)),
    };
    let (web, apps) = match (web, apps) {
        // The subscriptions or devices still could not be read: whatever went out to the
        // rest, the copy is looked at again shortly without using up an attempt (devices
        // deduplicate by alert id).
        (Err(e), _) => return unreadable(alert, person, now, &e),
        (_, Err(e)) => return unreadable(alert, person, now, &e.to_string()),
        (Ok(web), Ok(apps)) => (web, apps),
    };
    let web_sent = web.as_ref().map_or(0, |r| r.sent);
    let web_tried = web.as_ref().map_or(1, |r| r.attempted);
    if web_sent + apps.sent > 0 {
        state
            .metrics
            .alert_fallbacks
            .get_or_create(&label("sent"))
            .inc();
        o.sent_by = Some("push");
    } else if web_tried + apps.attempted == 0 {
        state
            .metrics
            .alert_fallbacks
            .get_or_create(&label("skipped"))
            .inc();
        o.error = Some("no web-push subscription".into());
    } else {
        state
            .metrics
            .alert_fallbacks
            .get_or_create(&label("failed"))
            .inc();
        let retryable = web.as_ref().is_ok_and(|r| r.retryable()) || apps.retryable();
        o.error = match &web {
            Err(e) => Some(format!("push: {e}")),
            Ok(r) => r.failures.first().map(|f| format!("push: {}", f.error)),
        }
        .or_else(|| apps.failures.first().map(|e| format!("push: {e}")));
        if retryable {
            o.next = Some(now + RETRY_MS);
        }
    }
    o
}

fn unreadable(alert: &Alert, person: &Person, now: i64, e: &str) -> Outcome {
    tracing::warn!(alert_id = alert.id, user_id = person.id, error = %e,
        "could not read the push subscriptions or devices; trying again shortly");
    Outcome {
        next: Some(now + REREAD_MS),
        error: Some(format!("push: could not read the subscriptions: {e}")),
        ..Outcome::default()
    }
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
