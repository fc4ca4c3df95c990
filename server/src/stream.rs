//! A person's stream: the numbered messages stored for them before they are pushed, so that a
//! phone that reconnects resumes from its last sequence number without loss or repeat.
//!
//! Every module that talks to people stores through here ([`store_for_set`] inside its own
//! transaction, or [`send_many`]) and reads back through [`Stream::messages_after`]. A module
//! whose copies live in a table of its own (an alert's copy is its ledger row) plugs in a
//! [`Source`] at start-up, so this module names no domain table but `user_messages`.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::db::{Db, Timestamp, now_ms};
use crate::in_tx;
use crate::live::{Hub, StoredMessage};

/// What a [`Source`]'s expansion returns: a boxed future, since sources are trait objects.
pub type Expansion<'a> = Pin<Box<dyn Future<Output = Result<(), sqlx::Error>> + Send + 'a>>;

/// Part of the stream that a module keeps in a table of its own.
pub trait Source: Send + Sync + std::fmt::Debug {
    /// `SELECT seq, kind, payload, created_at` of the rows of person `$1` with `seq > $2`; it
    /// joins the stream's query with `UNION ALL`.
    fn select(&self) -> &str;

    /// Replaces, in place, the rows this source selected (a reference) by what the person
    /// receives; other rows are left alone.
    fn expand<'a>(&'a self, db: &'a Db, messages: &'a mut [StoredMessage]) -> Expansion<'a>;
}

/// The stream's reader: `user_messages` and every plugged-in [`Source`], in sequence order.
#[derive(Debug, Clone)]
pub struct Stream {
    sources: Arc<[Box<dyn Source>]>,
    query: Arc<str>,
}

impl Stream {
    /// A stream made of `user_messages` and `sources`.
    pub fn new(sources: Vec<Box<dyn Source>>) -> Self {
        let mut query = String::from(
            "SELECT seq, kind, payload, created_at FROM user_messages WHERE user_id = $1 AND seq > $2",
        );
        for s in &sources {
            query.push_str(" UNION ALL ");
            query.push_str(s.select());
        }
        query.push_str(" ORDER BY seq LIMIT $3");
        Stream {
            sources: sources.into(),
            query: query.into(),
        }
    }

    /// Stored messages of a person after `after`, oldest first, at most `limit`.
    pub async fn messages_after(
        &self,
        db: &Db,
        user_id: i64,
        after: i64,
        limit: i64,
    ) -> Result<Vec<StoredMessage>, sqlx::Error> {
        let sql = self.query.to_string();
        let mut messages: Vec<StoredMessage> = crate::on_reader!(db, pool => sqlx::query_as(
            sqlx::AssertSqlSafe(sql.clone()))
            .bind(user_id).bind(after).bind(limit).fetch_all(pool).await)?;
        for s in self.sources.iter() {
            s.expand(db, &mut messages).await?;
        }
        Ok(messages)
    }
}

/// A set of people chosen by a sub-select of `user_id`s, whose one parameter is `$1`.
#[derive(Debug, Clone)]
pub struct PersonSet {
    select: String,
    param: SetParam,
}

/// The value bound to a [`PersonSet`]'s `$1`.
#[derive(Debug, Clone)]
pub enum SetParam {
    /// An id (an alert's, a roll-call's).
    Int(i64),
    /// Text, such as a JSON array of ids (see [`Db::json_ints`]).
    Text(String),
}

impl PersonSet {
    /// The people `select` returns (one `user_id` column) with `$1` bound to `param`.
    pub fn new(select: impl Into<String>, param: SetParam) -> Self {
        Self {
            select: select.into(),
            param,
        }
    }
}

/// Stores one message of `kind` for every person in `set`, each with their next sequence
/// number, inside the caller's transaction; returns `(person, seq)`. Two statements whatever
/// the number of people.
pub async fn store_for_set<DB>(
    tx: &mut sqlx::Transaction<'_, DB>,
    set: &PersonSet,
    kind: &str,
    payload: &str,
    now: i64,
) -> Result<Vec<(i64, i64)>, sqlx::Error>
where
    DB: sqlx::Database,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    DB::Arguments: sqlx::IntoArguments<DB>,
    for<'q> i64: sqlx::Encode<'q, DB> + sqlx::Decode<'q, DB> + sqlx::Type<DB>,
    for<'q> String: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    usize: sqlx::ColumnIndex<DB::Row>,
{
    fn bind<'q, DB, O>(
        q: sqlx::query::QueryAs<'q, DB, O, DB::Arguments>,
        p: &SetParam,
    ) -> sqlx::query::QueryAs<'q, DB, O, DB::Arguments>
    where
        DB: sqlx::Database,
        for<'a> i64: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
        for<'a> String: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    {
        match p {
            SetParam::Int(v) => q.bind(*v),
            SetParam::Text(v) => q.bind(v.clone()),
        }
    }
    let bump = format!(
        "UPDATE message_seqs SET seq = seq + 1 WHERE user_id IN ({}) RETURNING user_id, seq",
        set.select
    );
    let seqs: Vec<(i64, i64)> = bind(sqlx::query_as(sqlx::AssertSqlSafe(bump)), &set.param)
        .fetch_all(&mut **tx)
        .await?;
    let insert = format!(
        "INSERT INTO user_messages (user_id, seq, kind, payload, created_at) \
         SELECT user_id, seq, $2, $3, $4 FROM message_seqs WHERE user_id IN ({})",
        set.select
    );
    let insert = sqlx::query(sqlx::AssertSqlSafe(insert));
    let insert = match &set.param {
        SetParam::Int(v) => insert.bind(*v),
        SetParam::Text(v) => insert.bind(v.clone()),
    };
    insert
        .bind(kind.to_string())
        .bind(payload.to_string())
        .bind(now)
        .execute(&mut **tx)
        .await?;
    Ok(seqs)
}

/// A message to store and push to one person.
#[derive(Debug, Clone)]
pub struct Note {
    /// The person.
    pub user_id: i64,
    /// The message kind.
    pub kind: &'static str,
    /// The message.
    pub payload: serde_json::Value,
    /// Fill `payload.advisory` with this area's current advisory, read in the same transaction.
    pub advisory_of: Option<i64>,
}

/// Stores many messages in one transaction (each with its person's next sequence number), then
/// pushes them live. The position writer sends a whole group's geofence messages this way.
/// A fixed number of statements whatever the number of messages: one read of the advisories,
/// one counter update and one insert per 1,000 people or messages. Messages to someone the
/// database does not know are dropped.
pub async fn send_many(db: &Db, hub: &Hub, notes: Vec<Note>) -> Result<(), sqlx::Error> {
    /// Rows per statement: 5 parameters a row stays far below SQLite's 32,766.
    const CHUNK: usize = 1000;
    if notes.is_empty() {
        return Ok(());
    }
    let now = now_ms();
    let mut areas: Vec<i64> = notes.iter().filter_map(|n| n.advisory_of).collect();
    areas.sort_unstable();
    areas.dedup();
    let mut counts: std::collections::BTreeMap<i64, i64> = std::collections::BTreeMap::new();
    for n in &notes {
        *counts.entry(n.user_id).or_default() += 1;
    }
    let counts: Vec<(i64, i64)> = counts.into_iter().collect();
    let mut notes = notes;
    let stored: Vec<(i64, StoredMessage)> = in_tx!(db, tx => {
        let mut advisories: HashMap<i64, Option<String>> = HashMap::with_capacity(areas.len());
        for chunk in areas.chunks(CHUNK) {
            let mut qb = sqlx::QueryBuilder::new("SELECT id, advisory FROM areas WHERE id IN (");
            let mut ids = qb.separated(", ");
            for id in chunk {
                ids.push_bind(*id);
            }
            qb.push(")");
            let rows: Vec<(i64, Option<String>)> = qb.build_query_as().persistent(false).fetch_all(&mut *tx).await?;
            advisories.extend(rows);
        }
        // Each person's counter moves by their number of messages and stays locked until
        // commit, so numbers commit in order, without gaps; the first is `new - count + 1`.
        let mut next: HashMap<i64, i64> = HashMap::with_capacity(counts.len());
        for chunk in counts.chunks(CHUNK) {
            let mut qb = sqlx::QueryBuilder::new("UPDATE message_seqs SET seq = seq + v.column2 FROM (");
            qb.push_values(chunk, |mut row, (id, n)| {
                row.push_bind(*id).push_bind(*n);
            });
            qb.push(") AS v WHERE message_seqs.user_id = v.column1 RETURNING message_seqs.user_id, message_seqs.seq");
            let rows: Vec<(i64, i64)> = qb.build_query_as().persistent(false).fetch_all(&mut *tx).await?;
            let added: HashMap<i64, i64> = chunk.iter().copied().collect();
            next.extend(rows.into_iter().map(|(id, seq)| (id, seq - added.get(&id).copied().unwrap_or(1) + 1)));
        }
        let mut stored = Vec::with_capacity(notes.len());
        for note in &mut notes {
            let Some(seq) = next.get_mut(&note.user_id) else {
                continue;
            };
            if let Some(area) = note.advisory_of {
                note.payload["advisory"] = advisories.get(&area).cloned().flatten().into();
            }
            let msg = StoredMessage { seq: *seq, kind: note.kind.to_string(), payload: note.payload.to_string(), created_at: Timestamp(now) };
            *seq += 1;
            stored.push((note.user_id, msg));
        }
        for chunk in stored.chunks(CHUNK) {
            let mut qb = sqlx::QueryBuilder::new("INSERT INTO user_messages (user_id, seq, kind, payload, created_at) ");
            qb.push_values(chunk, |mut row, (user_id, m)| {
                row.push_bind(*user_id).push_bind(m.seq).push_bind(m.kind.as_str()).push_bind(m.payload.as_str()).push_bind(now);
            });
            qb.build().persistent(false).execute(&mut *tx).await?;
        }
        stored
    });
    hub.deliver_many(
        stored
            .into_iter()
            .map(|(user_id, msg)| (user_id, Arc::new(msg)))
            .collect(),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    /// The `live` ↔ `alerts` cycle came from the hub and the stream reading ledger tables; they
    /// may name no domain module or table, so that domains plug in and never the reverse.
    #[test]
    fn the_hub_and_the_stream_name_no_domain() {
        let sources = [
            ("live.rs", include_str!("live.rs")),
            ("stream.rs", include_str!("stream.rs")),
        ];
        let modules = ["alerts", "rollcall", "sos", "chat", "positions", "areas"];
        let mut forbidden: Vec<String> = modules.iter().map(|m| format!("crate::{m}")).collect();
        forbidden.extend(["alert", "rollcall_", "sos_"].map(|t| format!("JOIN {t}")));
        forbidden.push(["alert", "_recipients"].concat());
        for (file, text) in sources {
            for name in &forbidden {
                assert!(!text.contains(name.as_str()), "{file} names {name}");
            }
        }
    }
}
