//! Reminders and SMS escalation for people who have not answered a roll-call.
//!
//! Each person's row carries `next_reminder_at`; a sweeper claims due rows by moving that time
//! forward by a lease (as the alert fallback does), reminds over the socket and web push,
//! texts when `sms_after_secs` has passed, and sets the next time due, if any.

use std::collections::HashMap;

use serde_json::json;

use super::KIND_REMINDER;
use crate::db::now_ms;
use crate::push::{PushOptions, Urgency};
use crate::stream::Note;
use crate::{AppState, in_tx, on_reader};

/// Rows claimed per sweep.
const BATCH: i64 = 500;
/// How long a claim outlives the slowest channel call.
const LEASE_MARGIN_MS: i64 = 20_000;

#[derive(sqlx::FromRow)]
struct Due {
    rollcall_id: i64,
    user_id: i64,
    reminders_sent: i64,
    sms_sent: i64,
}

#[derive(sqlx::FromRow)]
struct Call {
    title: String,
    created_at: i64,
    closed_at: Option<i64>,
    reminder_every_secs: Option<i64>,
    max_reminders: i64,
    sms_after_secs: Option<i64>,
}

/// Starts the sweeper; it stops when the server shuts down.
pub fn spawn(state: &AppState) {
    crate::sweeper::spawn(
        state,
        "roll-call reminders",
        BATCH as usize,
        |state| async move { sweep(&state).await },
    );
}

/// When a person's next reminder or SMS is due after `now`, if ever.
fn next_due(call: &Call, reminders_sent: i64, sms_sent: i64) -> Option<i64> {
    let reminder = call
        .reminder_every_secs
        .filter(|_| reminders_sent < call.max_reminders)
        .map(|every| call.created_at + every * 1_000 * (reminders_sent + 1));
    let sms = call
        .sms_after_secs
        .filter(|_| sms_sent == 0)
        .map(|after| call.created_at + after * 1_000);
    [reminder, sms].into_iter().flatten().min()
}

async fn sweep(state: &AppState) -> Result<usize, sqlx::Error> {
    let now = now_ms();
    let slowest = state
        .settings
        .push_timeout_secs
        .max(state.settings.sms_timeout_secs);
    let lease = now + i64::try_from(slowest).unwrap_or(60) * 1_000 + LEASE_MARGIN_MS;
    let due: Vec<Due> = in_tx!(&state.db, tx => {
        sqlx::query_as(
            "UPDATE rollcall_people SET next_reminder_at = $2 \
             WHERE next_reminder_at <= $1 AND status = 'no_answer' AND (rollcall_id, user_id, dependant_id) IN ( \
                 SELECT rollcall_id, user_id, dependant_id FROM rollcall_people \
                 WHERE next_reminder_at IS NOT NULL AND next_reminder_at <= $1 ORDER BY next_reminder_at LIMIT $3) \
             RETURNING rollcall_id, user_id, reminders_sent, sms_sent")
            .bind(now).bind(lease).bind(BATCH).fetch_all(&mut *tx).await?
    });
    let claimed = due.len();
    let mut calls: HashMap<i64, Option<Call>> = HashMap::new();
    let mut updates = Vec::with_capacity(due.len());
    let mut notes = Vec::new();
    for d in &due {
        if let std::collections::hash_map::Entry::Vacant(slot) = calls.entry(d.rollcall_id) {
            let call: Option<Call> = on_reader!(&state.db, pool => sqlx::query_as(
                "SELECT title, created_at, closed_at, reminder_every_secs, max_reminders, sms_after_secs FROM rollcalls WHERE id = $1")
                .bind(d.rollcall_id).fetch_optional(pool).await?);
            slot.insert(call);
        }
        let Some(Some(call)) = calls.get(&d.rollcall_id) else {
            updates.push((d.rollcall_id, d.user_id, d.reminders_sent, d.sms_sent, None));
            continue;
        };
        if call.closed_at.is_some() {
            updates.push((d.rollcall_id, d.user_id, d.reminders_sent, d.sms_sent, None));
            continue;
        }
        let (mut reminders, mut sms) = (d.reminders_sent, d.sms_sent);
        let reminder_due = call.reminder_every_secs.is_some_and(|every| {
            reminders < call.max_reminders
                && now >= call.created_at + every * 1_000 * (reminders + 1)
        });
        if reminder_due {
            reminders += 1;
            let payload =
                json!({"rollcall_id": d.rollcall_id, "title": call.title, "reminder": reminders});
            notes.push(Note {
                user_id: d.user_id,
                kind: KIND_REMINDER,
                payload: payload.clone(),
                advisory_of: None,
            });
            let opts = PushOptions {
                ttl_secs: 3_600,
                urgency: Urgency::High,
                topic: Some(format!("rollcall{}", d.rollcall_id)),
            };
            let push = json!({"type": KIND_REMINDER, "rollcall_id": d.rollcall_id, "title": call.title,
                "body": "Are you safe? Please answer the roll-call.", "url": format!("/app/#/rollcalls/{}", d.rollcall_id)});
            if let Err(e) = crate::push::send_to_user(state, d.user_id, &push, opts).await {
                tracing::warn!(error = %e, user = d.user_id, "roll-call reminder push failed");
            }
        }
        let sms_due = call
            .sms_after_secs
            .is_some_and(|after| sms == 0 && now >= call.created_at + after * 1_000);
        if sms_due && state.sms.is_enabled() {
            let phone: Option<Option<String>> = on_reader!(&state.db, pool => sqlx::query_scalar(
                "SELECT phone FROM users WHERE id = $1").bind(d.user_id).fetch_optional(pool).await?);
            if let Some(phone) = phone.flatten() {
                let text = format!(
                    "ROLL-CALL: {}. Are you safe? Answer in the Vigil app or call your operations room.",
                    call.title
                );
                match state.sms.send(&phone, &text).await {
                    Ok(_) => sms = 1,
                    Err(e) if e.is_permanent() => {
                        tracing::warn!(error = %e, user = d.user_id, "roll-call SMS refused");
                        sms = 1;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, user = d.user_id, "roll-call SMS failed; will retry")
                    }
                }
            } else {
                sms = 1;
            }
        } else if sms_due {
            sms = 1;
        }
        let next = next_due(call, reminders, sms).map(|t| t.max(now + 1_000));
        updates.push((d.rollcall_id, d.user_id, reminders, sms, next));
    }
    crate::stream::send_many(&state.db, &state.hub, notes).await?;
    in_tx!(&state.db, tx => {
        for (rollcall_id, user_id, reminders, sms, next) in &updates {
            sqlx::query("UPDATE rollcall_people SET reminders_sent = $3, sms_sent = $4, next_reminder_at = $5 \
                         WHERE rollcall_id = $1 AND user_id = $2 AND dependant_id = 0 AND status = 'no_answer'")
                .bind(*rollcall_id).bind(*user_id).bind(*reminders).bind(*sms).bind(*next).execute(&mut *tx).await?;
        }
    });
    Ok(claimed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(every: Option<i64>, max: i64, sms: Option<i64>) -> Call {
        Call {
            title: "t".into(),
            created_at: 1_000_000,
            closed_at: None,
            reminder_every_secs: every,
            max_reminders: max,
            sms_after_secs: sms,
        }
    }

    #[test]
    fn the_next_reminder_or_text_is_whichever_comes_first() {
        assert_eq!(next_due(&call(Some(60), 3, None), 0, 0), Some(1_060_000));
        assert_eq!(next_due(&call(Some(60), 3, None), 2, 0), Some(1_180_000));
        assert_eq!(next_due(&call(Some(60), 3, None), 3, 0), None);
        assert_eq!(
            next_due(&call(Some(60), 3, Some(90)), 1, 0),
            Some(1_090_000)
        );
        assert_eq!(
            next_due(&call(Some(60), 3, Some(90)), 1, 1),
            Some(1_120_000)
        );
        assert_eq!(next_due(&call(None, 3, Some(90)), 0, 1), None);
    }
}
