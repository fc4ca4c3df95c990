//! Storage of alerts and their ledgers, and the first, live delivery.

use crate::stream::{PersonSet, SetParam, store_for_set};
use std::collections::{BTreeMap, HashMap};

use serde::de::DeserializeOwned;
use serde_json::json;

use super::target::{Audience, Reason};
use super::{Alert, InboxItem, LedgerCounts, RecipientRow, Step, Translation, ValidAlert};
use crate::AppState;
use crate::db::{Db, Timestamp, now_ms};
use crate::error::{AppError, AppResult};
use crate::live::StoredMessage;
use crate::policy::Actor;
use crate::{in_tx, on_reader};

/// Message kind of an alert in a person's stream.
pub const KIND_ALERT: &str = "alert";
/// Message kind of a cancellation.
pub const KIND_CANCELLED: &str = "alert_cancelled";

/// An alert about to be stored, from an adviser or an imported CAP document.
#[derive(Debug, Clone)]
pub struct NewAlert {
    /// The organisation it is sent in the name of.
    pub org_id: i64,
    /// The adviser who sent it.
    pub sender_id: Option<i64>,
    /// CAP identifier.
    pub identifier: String,
    /// CAP sender.
    pub cap_sender: String,
    /// CAP `sent` as received, for imports.
    pub cap_sent: Option<String>,
    /// `vigil` or `cap_import`.
    pub source: &'static str,
    /// `alert`, `update` or `cancel`.
    pub msg_type: &'static str,
    /// The alert this one updates.
    pub references_id: Option<i64>,
    /// The checked content.
    pub valid: ValidAlert,
}

const ALERT_COLUMNS: &str = "id, org_id, sender_id, identifier, cap_sender, source, msg_type, references_id, \
    severity, urgency, certainty, category, security_level, default_language, content, target, sms_fallback, \
    recipient_count, counts, created_at, expires_at, cancelled_at";

#[derive(sqlx::FromRow)]
struct AlertRow {
    id: i64,
    org_id: i64,
    sender_id: Option<i64>,
    identifier: String,
    cap_sender: String,
    source: String,
    msg_type: String,
    references_id: Option<i64>,
    severity: String,
    urgency: String,
    certainty: String,
    category: String,
    security_level: Option<i64>,
    default_language: String,
    content: String,
    target: String,
    sms_fallback: bool,
    recipient_count: i64,
    counts: String,
    created_at: i64,
    expires_at: i64,
    cancelled_at: Option<i64>,
}

fn parse_enum<T: DeserializeOwned>(s: &str) -> Option<T> {
    serde_json::from_value(serde_json::Value::String(s.to_string())).ok()
}

fn enum_name<T: serde::Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        _ => String::new(),
    }
}

impl TryFrom<AlertRow> for Alert {
    type Error = AppError;

    fn try_from(r: AlertRow) -> Result<Self, AppError> {
        let corrupt = |what: &str| {
            AppError::Internal(anyhow::anyhow!("alert {}: stored {what} unreadable", r.id))
        };
        Ok(Alert {
            severity: parse_enum(&r.severity).ok_or_else(|| corrupt("severity"))?,
            urgency: parse_enum(&r.urgency).ok_or_else(|| corrupt("urgency"))?,
            certainty: parse_enum(&r.certainty).ok_or_else(|| corrupt("certainty"))?,
            category: parse_enum(&r.category).ok_or_else(|| corrupt("category"))?,
            translations: serde_json::from_str::<BTreeMap<String, Translation>>(&r.content)
                .map_err(|_| corrupt("content"))?,
            target: serde_json::from_str(&r.target).map_err(|_| corrupt("target"))?,
            counts: serde_json::from_str(&r.counts).unwrap_or_default(),
            id: r.id,
            org_id: r.org_id,
            sender_id: r.sender_id,
            identifier: r.identifier,
            cap_sender: r.cap_sender,
            source: r.source,
            msg_type: r.msg_type,
            references_id: r.references_id,
            security_level: r.security_level,
            default_language: r.default_language,
            sms_fallback: r.sms_fallback,
            recipient_count: r.recipient_count,
            created_at: Timestamp(r.created_at),
            expires_at: Timestamp(r.expires_at),
            cancelled_at: r.cancelled_at.map(Timestamp),
        })
    }
}

/// The alert as a device receives it: the socket's `alert` payload, the push payload and an
/// inbox entry are all this object.
pub fn wire_payload(a: &Alert) -> serde_json::Value {
    json!({
        "alert_id": a.id,
        "identifier": a.identifier,
        "msg_type": a.msg_type,
        "references_id": a.references_id,
        "org_id": a.org_id,
        "severity": a.severity,
        "urgency": a.urgency,
        "certainty": a.certainty,
        "category": a.category,
        "security_level": a.security_level,
        "sent_at": a.created_at,
        "expires_at": a.expires_at,
        "cancelled_at": a.cancelled_at,
        "default_language": a.default_language,
        "translations": a.translations,
    })
}

/// One alert, or 404.
pub async fn load(db: &Db, id: i64) -> AppResult<Alert> {
    let row: Option<AlertRow> = on_reader!(db, pool => sqlx::query_as(sqlx::AssertSqlSafe(
        format!("SELECT {ALERT_COLUMNS} FROM alerts WHERE id = $1"))).bind(id).fetch_optional(pool).await?);
    row.ok_or_else(|| AppError::NotFound(format!("alert {id} does not exist")))?
        .try_into()
}

/// Alerts of `org` (or all), newest first.
pub async fn list(
    db: &Db,
    org: Option<i64>,
    before: Option<i64>,
    limit: i64,
) -> AppResult<Vec<Alert>> {
    let rows: Vec<AlertRow> = on_reader!(db, pool => sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {ALERT_COLUMNS} FROM alerts WHERE ($1 IS NULL OR org_id = $1) AND ($2 IS NULL OR id < $2) \
         ORDER BY id DESC LIMIT $3")))
        .bind(org).bind(before).bind(limit).fetch_all(pool).await?);
    rows.into_iter().map(Alert::try_from).collect()
}

/// Whether `user` is among the alert's recipients.
pub async fn is_recipient(db: &Db, alert_id: i64, user_id: i64) -> AppResult<bool> {
    let found: Option<i64> = on_reader!(db, pool => sqlx::query_scalar(
        "SELECT user_id FROM alert_recipients WHERE alert_id = $1 AND user_id = $2")
        .bind(alert_id).bind(user_id).fetch_optional(pool).await?);
    Ok(found.is_some())
}

/// A page of an alert's ledger.
pub async fn recipients(
    db: &Db,
    alert_id: i64,
    state: Option<&str>,
    after: i64,
    limit: i64,
) -> AppResult<Vec<RecipientRow>> {
    Ok(on_reader!(db, pool => sqlx::query_as(
        "SELECT r.user_id, u.name, u.org_id, r.reasons, r.state, r.channel, r.sent_at, r.delivered_at, r.read_at, \
                r.acknowledged_at, r.push_attempts, r.sms_segments, r.last_error \
         FROM alert_recipients r JOIN users u ON u.id = r.user_id \
         WHERE r.alert_id = $1 AND ($2 IS NULL OR r.state = $2) AND r.user_id > $3 ORDER BY r.user_id LIMIT $4")
        .bind(alert_id).bind(state).bind(after).bind(limit).fetch_all(pool).await?))
}

/// A person's alerts, newest first.
pub async fn inbox(
    db: &Db,
    user_id: i64,
    before: Option<i64>,
    limit: i64,
) -> AppResult<Vec<InboxItem>> {
    #[derive(sqlx::FromRow)]
    struct Row {
        #[sqlx(flatten)]
        alert: AlertRow,
        my_state: String,
        my_reasons: String,
    }
    let cols = joined_alert_columns();
    let rows: Vec<Row> = on_reader!(db, pool => sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {cols}, r.state AS my_state, r.reasons AS my_reasons \
         FROM alert_recipients r JOIN alerts a ON a.id = r.alert_id \
         WHERE r.user_id = $1 AND ($2 IS NULL OR a.id < $2) ORDER BY a.id DESC LIMIT $3")))
        .bind(user_id).bind(before).bind(limit).fetch_all(pool).await?);
    rows.into_iter()
        .map(|r| {
            let alert = Alert::try_from(r.alert)?;
            Ok(InboxItem {
                alert: wire_payload(&alert),
                state: r.my_state,
                reasons: reasons_of(&r.my_reasons),
            })
        })
        .collect()
}

/// [`ALERT_COLUMNS`] of `alerts a`, for queries that join the ledger.
fn joined_alert_columns() -> String {
    ALERT_COLUMNS
        .split(", ")
        .map(|c| format!("a.{}", c.trim()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A ledger row's reasons (`inside_area,role`) as a list.
fn reasons_of(stored: &str) -> Vec<String> {
    stored
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// The person's alerts in force (not cancelled, not expired), newest first, at most `limit`,
/// with the reasons they received each.
pub async fn in_force(
    db: &Db,
    user_id: i64,
    now: i64,
    limit: i64,
) -> AppResult<Vec<(Alert, Vec<String>)>> {
    #[derive(sqlx::FromRow)]
    struct Row {
        #[sqlx(flatten)]
        alert: AlertRow,
        my_reasons: String,
    }
    let cols = joined_alert_columns();
    let rows: Vec<Row> = on_reader!(db, pool => sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {cols}, r.reasons AS my_reasons \
         FROM alert_recipients r JOIN alerts a ON a.id = r.alert_id \
         WHERE r.user_id = $1 AND a.cancelled_at IS NULL AND a.expires_at > $2 ORDER BY a.id DESC LIMIT $3")))
        .bind(user_id).bind(now).bind(limit).fetch_all(pool).await?);
    rows.into_iter()
        .map(|r| Ok((Alert::try_from(r.alert)?, reasons_of(&r.my_reasons))))
        .collect()
}

/// An alert's numbered copy in a person's stream is its ledger row (one row per recipient,
/// written once): it is read as a reference that [`expand`] replaces by the alert.
#[derive(Debug)]
pub struct LedgerCopies;

impl crate::stream::Source for LedgerCopies {
    fn select(&self) -> &str {
        "SELECT r.seq, 'alert', '{\"alert_id\":' || CAST(r.alert_id AS TEXT) || '}', a.created_at \
         FROM alert_recipients r JOIN alerts a ON a.id = r.alert_id WHERE r.user_id = $1 AND r.seq > $2"
    }

    fn expand<'a>(
        &'a self,
        db: &'a Db,
        messages: &'a mut [StoredMessage],
    ) -> crate::stream::Expansion<'a> {
        Box::pin(expand(db, messages))
    }
}

/// Replaces the references stored in people's `alert` messages by the alerts themselves.
pub async fn expand(db: &Db, messages: &mut [StoredMessage]) -> Result<(), sqlx::Error> {
    let ids: Vec<i64> = messages
        .iter()
        .filter(|m| m.kind == KIND_ALERT)
        .filter_map(|m| alert_ref(&m.payload))
        .collect();
    if ids.is_empty() {
        return Ok(());
    }
    let sql = format!(
        "SELECT {ALERT_COLUMNS} FROM alerts WHERE id IN ({})",
        db.json_ints(1)
    );
    let set = serde_json::to_string(&ids).unwrap_or_default();
    let rows: Vec<AlertRow> = on_reader!(db, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()))
        .bind(&set).fetch_all(pool).await?);
    let payloads: HashMap<i64, String> = rows
        .into_iter()
        .filter_map(|r| Alert::try_from(r).ok())
        .map(|a| (a.id, wire_payload(&a).to_string()))
        .collect();
    for m in messages.iter_mut().filter(|m| m.kind == KIND_ALERT) {
        if let Some(p) = alert_ref(&m.payload).and_then(|id| payloads.get(&id)) {
            m.payload = p.clone();
        }
    }
    Ok(())
}

/// The alert id of a stored reference `{"alert_id": N}`.
fn alert_ref(payload: &str) -> Option<i64> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Ref {
        alert_id: i64,
    }
    serde_json::from_str::<Ref>(payload)
        .ok()
        .map(|r| r.alert_id)
}

/// Sends an adviser's alert: stores it with its audience, then delivers it live.
pub async fn send(
    state: &AppState,
    actor: &Actor,
    valid: ValidAlert,
    audience: Audience,
    now: i64,
) -> AppResult<Alert> {
    let host = state
        .settings
        .public_url
        .split("://")
        .nth(1)
        .unwrap_or("vigil.invalid")
        .split(['/', ':'])
        .next()
        .unwrap_or("vigil.invalid")
        .to_string();
    let new = NewAlert {
        org_id: actor.org_id,
        sender_id: Some(actor.user_id),
        identifier: uuid::Uuid::new_v4().to_string(),
        cap_sender: format!("org{}@{host}", actor.org_id),
        cap_sent: None,
        source: "vigil",
        msg_type: "alert",
        references_id: None,
        valid,
    };
    insert_and_deliver(state, new, &audience, now).await
}

/// Stores an alert with its ledger in one transaction, then hands it to connected devices.
///
/// Each ledger row is also the recipient's numbered copy (see [`crate::live::messages_after`]),
/// so a broadcast writes, per person, one counter bump and one ledger row: three set-based
/// statements plus one per distinct combination of reasons, whatever the audience.
pub async fn insert_and_deliver(
    state: &AppState,
    new: NewAlert,
    audience: &Audience,
    now: i64,
) -> AppResult<Alert> {
    let db = &state.db;
    let all: Vec<i64> = audience.recipients.iter().map(|(id, _)| *id).collect();
    let all_json = serde_json::to_string(&all).unwrap_or_default();
    let mut by_reasons: BTreeMap<u8, Vec<i64>> = BTreeMap::new();
    for (id, bits) in &audience.recipients {
        by_reasons.entry(*bits).or_default().push(*id);
    }
    let groups: Vec<(String, String)> = by_reasons
        .into_iter()
        .map(|(bits, ids)| {
            (
                Reason::names(bits),
                serde_json::to_string(&ids).unwrap_or_default(),
            )
        })
        .collect();
    let counts = serde_json::to_string(&LedgerCounts {
        queued: i64::try_from(audience.recipients.len()).unwrap_or(i64::MAX),
        ..LedgerCounts::default()
    })
    .unwrap_or_default();
    let v = &new.valid;
    let content = serde_json::to_string(&v.translations).unwrap_or_default();
    let target = serde_json::to_string(&v.target).unwrap_or_default();
    let fallback_at =
        now + i64::try_from(state.settings.alert_push_after_secs).unwrap_or(5) * 1_000;
    let bump = format!(
        "UPDATE message_seqs SET seq = seq + 1 WHERE user_id IN ({})",
        db.json_ints(1)
    );
    let ledger = format!(
        "INSERT INTO alert_recipients (alert_id, user_id, reasons, seq, state) \
         SELECT $2, m.user_id, $3, m.seq, 'queued' FROM message_seqs m WHERE m.user_id IN ({})",
        db.json_ints(1)
    );
    let alert_id = in_tx!(db, tx => {
        let alert_id: i64 = sqlx::query_scalar(
            "INSERT INTO alerts (org_id, sender_id, identifier, cap_sender, cap_sent, source, msg_type, references_id, \
             severity, urgency, certainty, category, security_level, default_language, content, target, sms_fallback, \
             recipient_count, counts, created_at, expires_at, fallback_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22) RETURNING id")
            .bind(new.org_id).bind(new.sender_id).bind(&new.identifier).bind(&new.cap_sender).bind(&new.cap_sent)
            .bind(new.source).bind(new.msg_type).bind(new.references_id)
            .bind(enum_name(&v.severity)).bind(enum_name(&v.urgency)).bind(enum_name(&v.certainty)).bind(enum_name(&v.category))
            .bind(v.security_level).bind(&v.default_language).bind(&content).bind(&target).bind(v.sms_fallback)
            .bind(i64::try_from(audience.recipients.len()).unwrap_or(i64::MAX)).bind(&counts).bind(now).bind(v.expires_at)
            .bind(fallback_at)
            .fetch_one(&mut *tx).await?;
        // Each counter stays locked until commit, so a person's numbers commit in order.
        sqlx::query(sqlx::AssertSqlSafe(bump.clone())).bind(&all_json).execute(&mut *tx).await?;
        for (reasons, ids) in &groups {
            sqlx::query(sqlx::AssertSqlSafe(ledger.clone())).bind(ids).bind(alert_id).bind(reasons)
                .execute(&mut *tx).await?;
        }
        crate::audit::record(&mut *tx, new.sender_id, Some(new.org_id), "alert.send", &format!("alert:{alert_id}"),
            &format!("{} recipients; {}", audience.recipients.len(), new.identifier)).await?;
        alert_id
    });
    let alert = load(db, alert_id).await?;
    state.metrics.alerts_sent.inc();
    // The sender's 201 means "committed"; handing copies to sockets runs beside it. A crash
    // in between loses nothing: devices read the ledger when they resume.
    // Every other node hands it to the recipients connected there, from the ledger too.
    state
        .cluster
        .wake(crate::cluster::Wake::Alert { id: alert.id });
    let (task_state, delivered) = (state.clone(), alert.clone());
    tokio::spawn(async move {
        if let Err(e) = deliver_to_connected(&task_state, &delivered, all).await {
            tracing::warn!(alert_id = delivered.id, error = %e, "live delivery failed; devices get it on resume");
        }
    });
    Ok(alert)
}

/// Hands a committed alert to the recipients connected to this node. Only they need their
/// numbers now, read from the committed ledger rows (which never change). Each node of a
/// cluster does this for its own sockets ([`deliver_here`]), so nothing is relayed.
async fn deliver_to_connected(state: &AppState, alert: &Alert, all: Vec<i64>) -> AppResult<()> {
    let online = state.hub.connected_among(all);
    if !online.is_empty() {
        let seqs = seqs_of(&state.db, alert.id, &online).await?;
        let reached =
            state
                .hub
                .deliver_each_here(KIND_ALERT, &wire_payload(alert).to_string(), &seqs);
        if !reached.is_empty() {
            state.ledger.mark(alert.id, reached, Step::Sent, Some("ws"));
        }
    }
    Ok(())
}

/// Hands an alert another node committed to its recipients connected to this one.
pub async fn deliver_here(state: &AppState, alert_id: i64) -> AppResult<()> {
    let alert = load(&state.db, alert_id).await?;
    let here = state.hub.local_people();
    deliver_to_connected(state, &alert, here).await
}

/// The stream numbers of `people`'s copies of an alert.
async fn seqs_of(db: &Db, alert_id: i64, people: &[i64]) -> AppResult<Vec<(i64, i64)>> {
    let sql = format!(
        "SELECT user_id, seq FROM alert_recipients WHERE alert_id = $2 AND user_id IN ({})",
        db.json_ints(1)
    );
    let people = serde_json::to_string(people).unwrap_or_default();
    Ok(
        on_reader!(db, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()))
        .bind(&people).bind(alert_id).fetch_all(pool).await?),
    )
}

/// Cancels an alert: stops its fallbacks and tells every recipient.
pub async fn cancel(state: &AppState, actor: &Actor, alert: Alert) -> AppResult<Alert> {
    let now = now_ms();
    if alert.cancelled_at.is_some() {
        return Err(AppError::Conflict(format!(
            "alert {} is already cancelled",
            alert.id
        )));
    }
    if alert.expires_at.0 <= now {
        return Err(AppError::Conflict(format!(
            "alert {} has expired",
            alert.id
        )));
    }
    let id = alert.id;
    let payload = json!({"alert_id": id, "cancelled_at": Timestamp(now)});
    let text = payload.to_string();
    let set = PersonSet::new(
        "SELECT user_id FROM alert_recipients WHERE alert_id = $1",
        SetParam::Int(id),
    );
    let seqs = in_tx!(&state.db, tx => {
        let changed = sqlx::query("UPDATE alerts SET cancelled_at = $2, fallback_at = NULL WHERE id = $1 AND cancelled_at IS NULL")
            .bind(id).bind(now).execute(&mut *tx).await?.rows_affected();
        if changed == 0 {
            return Err(AppError::Conflict(format!("alert {id} is already cancelled")));
        }
        sqlx::query("UPDATE alert_recipients SET next_attempt_at = NULL WHERE alert_id = $1 AND next_attempt_at IS NOT NULL")
            .bind(id).execute(&mut *tx).await?;
        let seqs = store_for_set(&mut tx, &set, KIND_CANCELLED, &text, now).await?;
        crate::audit::record(&mut *tx, Some(actor.user_id), Some(alert.org_id), "alert.cancel",
            &format!("alert:{id}"), &alert.identifier).await?;
        seqs
    });
    state.hub.deliver_each(KIND_CANCELLED, &text, &seqs);
    load(&state.db, id).await
}

/// Marks an alert replaced by an update: its pending fallbacks stop; devices learn of the
/// update itself, which references it.
pub async fn supersede(db: &Db, id: i64, now: i64) -> AppResult<()> {
    in_tx!(db, tx => {
        sqlx::query("UPDATE alerts SET cancelled_at = COALESCE(cancelled_at, $2), fallback_at = NULL WHERE id = $1")
            .bind(id).bind(now).execute(&mut *tx).await?;
        sqlx::query("UPDATE alert_recipients SET next_attempt_at = NULL WHERE alert_id = $1 AND next_attempt_at IS NOT NULL")
            .bind(id).execute(&mut *tx).await?;
    });
    Ok(())
}
