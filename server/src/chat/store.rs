//! Storage of conversations, their members and receipts, and their messages.

use serde::Serialize;

use super::{ChatMessage, Conversation, Kind, Participant};
use crate::db::{Db, now_ms};
use crate::error::{AppError, AppResult, is_unique_violation};
use crate::policy::Actor;
use crate::{in_tx, on_reader, on_writer};

/// What the policy needs to know about a conversation and one person in it.
#[derive(Debug, Clone, Copy)]
pub struct Standing {
    /// The conversation's organisation.
    pub org_id: i64,
    /// Its kind.
    pub kind: Kind,
    /// The person is a listed member.
    pub member: bool,
    /// It no longer takes messages.
    pub closed: bool,
    /// Its newest sequence number.
    pub last_seq: i64,
}

/// Where a conversation stands for `user_id`; 404 when it does not exist.
pub async fn standing(db: &Db, conversation_id: i64, user_id: i64) -> AppResult<Standing> {
    #[derive(sqlx::FromRow)]
    struct Row {
        org_id: i64,
        kind: String,
        listed: Option<bool>,
        closed_at: Option<i64>,
        last_seq: i64,
    }
    let row: Option<Row> = on_reader!(db, pool => sqlx::query_as(
        "SELECT c.org_id, c.kind, m.listed, c.closed_at, c.last_seq FROM conversations c \
         LEFT JOIN conversation_members m ON m.conversation_id = c.id AND m.user_id = $2 WHERE c.id = $1")
        .bind(conversation_id).bind(user_id).fetch_optional(pool).await?);
    let row = row.ok_or_else(|| not_found(conversation_id))?;
    Ok(Standing {
        org_id: row.org_id,
        kind: Kind::parse(&row.kind).ok_or_else(|| corrupt(conversation_id, "kind"))?,
        member: row.listed.unwrap_or(false),
        closed: row.closed_at.is_some(),
        last_seq: row.last_seq,
    })
}

pub(super) fn not_found(id: i64) -> AppError {
    AppError::NotFound(format!("conversation {id} does not exist"))
}

fn corrupt(id: i64, what: &str) -> AppError {
    AppError::Internal(anyhow::anyhow!(
        "conversation {id}: stored {what} unreadable"
    ))
}

/// Columns of [`Conversation`] as seen by the person bound at `$1`.
const CONVERSATION_SELECT: &str = "SELECT c.id, c.org_id, c.kind, c.ref_id, c.title, c.created_by, c.created_at, \
    c.closed_at, c.last_seq, COALESCE(m.last_read_seq, 0) AS my_last_read_seq, \
    (SELECT COUNT(*) FROM chat_messages x WHERE x.conversation_id = c.id \
       AND x.seq > COALESCE(m.last_read_seq, 0) AND x.sender_id <> $1) AS unread \
    FROM conversations c LEFT JOIN conversation_members m ON m.conversation_id = c.id AND m.user_id = $1";

/// One conversation as `viewer` sees it (their unread count).
pub async fn load(db: &Db, id: i64, viewer: i64) -> AppResult<Conversation> {
    let sql = format!("{CONVERSATION_SELECT} WHERE c.id = $2");
    let row: Option<Conversation> = on_reader!(db, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(viewer).bind(id).fetch_optional(pool).await?);
    row.ok_or_else(|| not_found(id))
}

/// The conversations `viewer` takes part in (as a member, or by role in SOS chats, as the
/// policy's SOS chat participants say), open ones first, newest first.
pub async fn list_mine(db: &Db, viewer: &Actor, limit: i64) -> AppResult<Vec<Conversation>> {
    let reach = crate::policy::sos_chat_participants();
    let sql = format!(
        "{CONVERSATION_SELECT} WHERE COALESCE(m.listed, FALSE) OR (c.kind = 'sos' AND ($2 OR c.org_id = $3)) \
         ORDER BY c.closed_at IS NULL DESC, c.id DESC LIMIT $4"
    );
    // No organisation has id 0: a person whose roles reach no SOS chat matches none.
    let own_org = if reach.reaches(viewer, viewer.org_id) {
        viewer.org_id
    } else {
        0
    };
    Ok(
        on_reader!(db, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(viewer.user_id).bind(reach.reaches_every_org(viewer)).bind(own_org).bind(limit).fetch_all(pool).await?),
    )
}

/// Every conversation of an organisation, open ones first, newest first.
pub async fn list_org(
    db: &Db,
    viewer: i64,
    org_id: i64,
    limit: i64,
) -> AppResult<Vec<Conversation>> {
    let sql = format!(
        "{CONVERSATION_SELECT} WHERE c.org_id = $2 ORDER BY c.closed_at IS NULL DESC, c.id DESC LIMIT $3"
    );
    Ok(
        on_reader!(db, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(viewer).bind(org_id).bind(limit).fetch_all(pool).await?),
    )
}

/// Active people who take part in SOS chat `$1` by role without being listed: those the
/// policy's SOS chat participants reach (`$2`: roles within the chat's organisation, `$3`: roles
/// in every organisation, JSON arrays of names), each with one role they take part by.
/// They are found from the role (a few people), never by walking the organisation (tens of
/// thousands): `CROSS JOIN` makes SQLite keep that order, which its planner, without
/// statistics, would not choose.
fn by_role_sql(db: &Db) -> String {
    // Two branches rather than an OR, so each finds its roles through the role index.
    format!(
        "SELECT user_id, MIN(role) AS role FROM ( \
           SELECT u.id AS user_id, r.role AS role FROM user_roles r CROSS JOIN users u CROSS JOIN conversations c \
           WHERE r.role IN ({}) AND u.id = r.user_id AND u.active AND c.id = $1 AND c.kind = 'sos' AND u.org_id = c.org_id \
           UNION ALL \
           SELECT u.id, r.role FROM user_roles r CROSS JOIN users u CROSS JOIN conversations c \
           WHERE r.role IN ({}) AND u.id = r.user_id AND u.active AND c.id = $1 AND c.kind = 'sos' \
         ) AS held GROUP BY user_id",
        db.json_texts(2),
        db.json_texts(3)
    )
}

/// Everyone who takes part in a conversation: who gets its messages.
pub async fn participant_ids(db: &Db, conversation_id: i64) -> AppResult<Vec<i64>> {
    let reach = crate::policy::sos_chat_participants();
    let sql = format!(
        "SELECT user_id FROM conversation_members WHERE conversation_id = $1 AND listed \
         UNION SELECT user_id FROM ({}) AS by_role",
        by_role_sql(db)
    );
    Ok(
        on_reader!(db, pool => sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .bind(conversation_id).bind(reach.own_org_json()).bind(reach.every_org_json()).fetch_all(pool).await?),
    )
}

/// Everyone who takes part, with their receipts, by name: listed members (`via` is `member`),
/// then those taking part by role (`via` is the role).
pub async fn participants(db: &Db, conversation_id: i64) -> AppResult<Vec<Participant>> {
    #[derive(sqlx::FromRow)]
    struct Row {
        user_id: i64,
        name: String,
        via: String,
        last_delivered_seq: i64,
        last_read_seq: i64,
    }
    let reach = crate::policy::sos_chat_participants();
    let sql = format!(
        "SELECT m.user_id, u.name, 'member' AS via, m.last_delivered_seq, m.last_read_seq \
         FROM conversation_members m JOIN users u ON u.id = m.user_id WHERE m.conversation_id = $1 AND m.listed \
         UNION ALL \
         SELECT u.id, u.name, b.role, COALESCE(m.last_delivered_seq, 0), COALESCE(m.last_read_seq, 0) \
         FROM ({}) AS b JOIN users u ON u.id = b.user_id \
         LEFT JOIN conversation_members m ON m.conversation_id = $1 AND m.user_id = u.id \
         WHERE NOT COALESCE(m.listed, FALSE) \
         ORDER BY 2, 1",
        by_role_sql(db)
    );
    let rows: Vec<Row> = on_reader!(db, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(conversation_id).bind(reach.own_org_json()).bind(reach.every_org_json()).fetch_all(pool).await?);
    Ok(rows
        .into_iter()
        .map(|r| Participant {
            user_id: r.user_id,
            name: r.name,
            via: r.via,
            last_delivered_seq: r.last_delivered_seq,
            last_read_seq: r.last_read_seq,
            online: false,
        })
        .collect())
}

/// The name of a person, for typing hints.
pub async fn name_of(db: &Db, user_id: i64) -> AppResult<String> {
    let name: Option<String> = on_reader!(db, pool => sqlx::query_scalar("SELECT name FROM users WHERE id = $1")
        .bind(user_id).fetch_optional(pool).await?);
    Ok(name.unwrap_or_default())
}

/// The ids among `ids` that name no user, or (with `org`) no active user of that organisation.
pub async fn unknown_users(db: &Db, ids: &[i64], org: Option<i64>) -> AppResult<Vec<i64>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let set = serde_json::to_string(ids).unwrap_or_default();
    let sql = format!(
        "SELECT id FROM users WHERE id IN ({}) AND ($2 IS NULL OR (org_id = $2 AND active))",
        db.json_ints(1)
    );
    let known: Vec<i64> = on_reader!(db, pool => sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .bind(&set).bind(org).fetch_all(pool).await?);
    Ok(ids
        .iter()
        .copied()
        .filter(|id| !known.contains(id))
        .collect())
}

/// The organisation a conversation's subject belongs to: `Some(None)` for a shared one, `None`
/// when it does not exist.
pub async fn subject_org(db: &Db, kind: Kind, ref_id: i64) -> AppResult<Option<Option<i64>>> {
    let sql = match kind {
        Kind::Area => "SELECT org_id FROM areas WHERE id = $1",
        Kind::DutyStation => "SELECT CAST(NULL AS BIGINT) FROM duty_stations WHERE id = $1",
        Kind::Rollcall => "SELECT org_id FROM rollcalls WHERE id = $1",
        Kind::Sos => "SELECT org_id FROM sos_cases WHERE id = $1",
        Kind::Group => return Ok(None),
    };
    Ok(on_reader!(db, pool => sqlx::query_scalar(sql).bind(ref_id).fetch_optional(pool).await?))
}

/// Active people of `org` assigned to a duty station.
pub async fn assigned_to(db: &Db, org: i64, duty_station: i64) -> AppResult<Vec<i64>> {
    Ok(on_reader!(db, pool => sqlx::query_scalar(
        "SELECT id FROM users WHERE org_id = $1 AND duty_station_id = $2 AND active ORDER BY id")
        .bind(org).bind(duty_station).fetch_all(pool).await?))
}

/// Active people of `org` among `ids`, plus those who follow `area` by hand (location-less
/// staff): an area channel's first members.
pub async fn area_people(db: &Db, org: i64, area: i64, inside: &[i64]) -> AppResult<Vec<i64>> {
    let set = serde_json::to_string(inside).unwrap_or_default();
    let sql = format!(
        "SELECT id FROM users WHERE org_id = $2 AND active AND (id IN ({}) \
         OR id IN (SELECT user_id FROM followed_areas WHERE area_id = $3)) ORDER BY id",
        db.json_ints(1)
    );
    Ok(
        on_reader!(db, pool => sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .bind(&set).bind(org).bind(area).fetch_all(pool).await?),
    )
}

/// A conversation about to be stored.
#[derive(Debug)]
pub struct Insert<'a> {
    /// Its organisation.
    pub org_id: i64,
    /// What it is about.
    pub kind: Kind,
    /// The case, roll-call, area or duty station.
    pub ref_id: Option<i64>,
    /// Checked title.
    pub title: &'a str,
    /// Who opened it.
    pub created_by: Option<i64>,
    /// Listed members.
    pub members: &'a [i64],
}

/// Stores a conversation with its members (unknown ids are skipped); returns its id.
pub async fn insert(db: &Db, new: Insert<'_>) -> AppResult<i64> {
    let now = now_ms();
    let set = serde_json::to_string(new.members).unwrap_or_default();
    let add = add_members_sql(db);
    let id = in_tx!(db, tx => {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO conversations (org_id, kind, ref_id, title, created_by, created_at, last_seq) \
             VALUES ($1, $2, $3, $4, $5, $6, 0) RETURNING id")
            .bind(new.org_id).bind(new.kind.as_str()).bind(new.ref_id).bind(new.title).bind(new.created_by).bind(now)
            .fetch_one(&mut *tx).await?;
        sqlx::query(sqlx::AssertSqlSafe(add)).bind(&set).bind(id).bind(now).execute(&mut *tx).await?;
        crate::audit::record(&mut *tx, new.created_by, Some(new.org_id), "chat.open", &format!("conversation:{id}"),
            &format!("{} {:?}; {} members", new.kind.as_str(), new.title, new.members.len())).await?;
        id
    });
    Ok(id)
}

/// Adds (or re-lists) the people in the JSON array `$1` to conversation `$2` at time `$3`.
fn add_members_sql(db: &Db) -> String {
    format!(
        "INSERT INTO conversation_members (conversation_id, user_id, joined_at, last_delivered_seq, last_read_seq, listed) \
         SELECT $2, u.id, $3, 0, 0, TRUE FROM users u WHERE u.id IN ({}) \
         ON CONFLICT (conversation_id, user_id) DO UPDATE SET listed = TRUE",
        db.json_ints(1)
    )
}

/// Lists people as members; returns those who were not listed before.
pub async fn add_members(
    db: &Db,
    conversation_id: i64,
    users: &[i64],
    actor_id: Option<i64>,
    org_id: i64,
) -> AppResult<Vec<i64>> {
    let set = serde_json::to_string(users).unwrap_or_default();
    let add = add_members_sql(db);
    let listed_already = format!(
        "SELECT user_id FROM conversation_members WHERE conversation_id = $2 AND listed AND user_id IN ({})",
        db.json_ints(1)
    );
    let now = now_ms();
    let added = in_tx!(db, tx => {
        let before: Vec<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(listed_already))
            .bind(&set).bind(conversation_id).fetch_all(&mut *tx).await?;
        sqlx::query(sqlx::AssertSqlSafe(add)).bind(&set).bind(conversation_id).bind(now).execute(&mut *tx).await?;
        let mut added: Vec<i64> = users.iter().copied().filter(|u| !before.contains(u)).collect();
        added.sort_unstable();
        added.dedup();
        if !added.is_empty() {
            crate::audit::record(&mut *tx, actor_id, Some(org_id), "chat.members.add",
                &format!("conversation:{conversation_id}"), &people(&added)).await?;
        }
        added
    });
    Ok(added)
}

/// Names a few people for the audit log, or counts many.
fn people(ids: &[i64]) -> String {
    if ids.len() <= 20 {
        format!("users {ids:?}")
    } else {
        format!("{} users", ids.len())
    }
}

/// Takes people off a conversation's members; returns those who were listed.
pub async fn remove_members(
    db: &Db,
    conversation_id: i64,
    users: &[i64],
    actor_id: Option<i64>,
    org_id: i64,
) -> AppResult<Vec<i64>> {
    let set = serde_json::to_string(users).unwrap_or_default();
    let sql = format!(
        "DELETE FROM conversation_members WHERE conversation_id = $2 AND listed AND user_id IN ({}) RETURNING user_id",
        db.json_ints(1)
    );
    let removed = in_tx!(db, tx => {
        let mut removed: Vec<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(&set).bind(conversation_id).fetch_all(&mut *tx).await?;
        removed.sort_unstable();
        if !removed.is_empty() {
            crate::audit::record(&mut *tx, actor_id, Some(org_id), "chat.members.remove",
                &format!("conversation:{conversation_id}"), &people(&removed)).await?;
        }
        removed
    });
    Ok(removed)
}

/// Closes a conversation; 404 when it does not exist, 409 when it is closed already.
pub async fn close(db: &Db, conversation_id: i64, actor_id: Option<i64>) -> AppResult<i64> {
    let now = now_ms();
    in_tx!(db, tx => {
        let org: Option<i64> = sqlx::query_scalar(
            "UPDATE conversations SET closed_at = $2 WHERE id = $1 AND closed_at IS NULL RETURNING org_id")
            .bind(conversation_id).bind(now).fetch_optional(&mut *tx).await?;
        let Some(org) = org else {
            let exists: Option<i64> = sqlx::query_scalar("SELECT id FROM conversations WHERE id = $1")
                .bind(conversation_id).fetch_optional(&mut *tx).await?;
            return Err(match exists {
                Some(_) => AppError::Conflict(format!("conversation {conversation_id} is closed already")),
                None => not_found(conversation_id),
            });
        };
        crate::audit::record(&mut *tx, actor_id, Some(org), "chat.close", &format!("conversation:{conversation_id}"), "").await?;
    });
    Ok(now)
}

const MESSAGE_SELECT: &str = "SELECT m.conversation_id, m.seq, m.sender_id, u.name AS sender_name, m.client_id, m.body, \
    m.created_at AS sent_at FROM chat_messages m JOIN users u ON u.id = m.sender_id";

/// Messages of a conversation after `after`, oldest first, at most `limit`.
pub async fn messages_after(
    db: &Db,
    conversation_id: i64,
    after: i64,
    limit: i64,
) -> AppResult<Vec<ChatMessage>> {
    let sql = format!(
        "{MESSAGE_SELECT} WHERE m.conversation_id = $1 AND m.seq > $2 ORDER BY m.seq LIMIT $3"
    );
    Ok(
        on_reader!(db, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(conversation_id).bind(after).bind(limit).fetch_all(pool).await?),
    )
}

/// What storing a message did.
#[derive(Debug)]
pub struct Stored {
    /// The message (the original one for a duplicate).
    pub message: ChatMessage,
    /// The client id was used before: nothing new was stored.
    pub duplicate: bool,
}

/// Stores a message with the conversation's next sequence number, unless its sender stored one
/// with the same client id before. A closed conversation refuses new messages (409).
pub async fn insert_message(
    db: &Db,
    conversation_id: i64,
    sender_id: i64,
    client_id: &str,
    body: &str,
) -> AppResult<Stored> {
    match try_insert_message(db, conversation_id, sender_id, client_id, body).await {
        // Two copies racing on PostgreSQL: the loser's insert trips the unique key; the
        // winner's row is the answer.
        Err(AppError::Database(e)) if is_unique_violation(&e) => {
            match find_by_client_id(db, conversation_id, sender_id, client_id).await? {
                Some(message) => Ok(Stored {
                    message,
                    duplicate: true,
                }),
                None => Err(AppError::Database(e)),
            }
        }
        other => other,
    }
}

async fn find_by_client_id(
    db: &Db,
    conversation_id: i64,
    sender_id: i64,
    client_id: &str,
) -> AppResult<Option<ChatMessage>> {
    let sql = format!(
        "{MESSAGE_SELECT} WHERE m.conversation_id = $1 AND m.sender_id = $2 AND m.client_id = $3"
    );
    Ok(
        on_writer!(db, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(conversation_id).bind(sender_id).bind(client_id).fetch_optional(pool).await?),
    )
}

async fn try_insert_message(
    db: &Db,
    conversation_id: i64,
    sender_id: i64,
    client_id: &str,
    body: &str,
) -> AppResult<Stored> {
    let now = now_ms();
    let find = format!(
        "{MESSAGE_SELECT} WHERE m.conversation_id = $1 AND m.sender_id = $2 AND m.client_id = $3"
    );
    in_tx!(db, tx => {
        // Taking the number first locks the conversation's row until commit: copies of one
        // message arriving together queue here, and the second then finds the first below.
        let taken: Option<(i64, Option<i64>)> = sqlx::query_as(
            "UPDATE conversations SET last_seq = last_seq + 1 WHERE id = $1 RETURNING last_seq, closed_at")
            .bind(conversation_id).fetch_optional(&mut *tx).await?;
        let Some((seq, closed_at)) = taken else {
            return Err(not_found(conversation_id));
        };
        let earlier: Option<ChatMessage> = sqlx::query_as(sqlx::AssertSqlSafe(find))
            .bind(conversation_id).bind(sender_id).bind(client_id).fetch_optional(&mut *tx).await?;
        if let Some(message) = earlier {
            // Dropping the transaction rolls the number back.
            return Ok(Stored { message, duplicate: true });
        }
        if closed_at.is_some() {
            return Err(AppError::Conflict(format!("conversation {conversation_id} is closed: it takes no more messages")));
        }
        sqlx::query(
            "INSERT INTO chat_messages (conversation_id, seq, sender_id, client_id, body, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(conversation_id).bind(seq).bind(sender_id).bind(client_id).bind(body).bind(now)
            .execute(&mut *tx).await?;
        let sender_name: String = sqlx::query_scalar("SELECT name FROM users WHERE id = $1")
            .bind(sender_id).fetch_one(&mut *tx).await?;
        // Whoever writes has read everything before: their own message is not unread to them.
        sqlx::query(
            "INSERT INTO conversation_members (conversation_id, user_id, joined_at, last_delivered_seq, last_read_seq, listed) \
             VALUES ($1, $2, $3, $4, $4, $5) ON CONFLICT (conversation_id, user_id) DO UPDATE SET \
             last_delivered_seq = excluded.last_delivered_seq, last_read_seq = excluded.last_read_seq")
            .bind(conversation_id).bind(sender_id).bind(now).bind(seq).bind(false)
            .execute(&mut *tx).await?;
        Ok(Stored {
            message: ChatMessage {
                conversation_id,
                seq,
                sender_id,
                sender_name,
                client_id: client_id.to_string(),
                body: body.to_string(),
                sent_at: crate::db::Timestamp(now),
            },
            duplicate: false,
        })
    })
}

/// Records that a message reached every participant's stream.
pub async fn mark_fanned_out(db: &Db, conversation_id: i64, seq: i64) -> AppResult<()> {
    on_writer!(db, pool => sqlx::query(
        "UPDATE chat_messages SET fanout_pending = FALSE WHERE conversation_id = $1 AND seq = $2")
        .bind(conversation_id).bind(seq).execute(pool).await.map(|_| ()))?;
    Ok(())
}

/// Messages stored at or before `before` (Unix ms) whose fan-out has not finished, oldest first.
pub async fn pending_fanout(db: &Db, before: i64, limit: i64) -> AppResult<Vec<ChatMessage>> {
    let sql = format!(
        "{MESSAGE_SELECT} WHERE m.fanout_pending AND m.created_at <= $1 ORDER BY m.created_at, m.conversation_id, m.seq LIMIT $2"
    );
    Ok(
        on_reader!(db, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(before).bind(limit).fetch_all(pool).await?),
    )
}

/// How far one person has received and read a conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Receipt {
    /// Highest sequence number delivered to one of their devices.
    pub delivered_seq: i64,
    /// Highest sequence number they read.
    pub read_seq: i64,
}

/// Moves a person's receipts forward to `delivered` and `read` (never back); returns the new
/// receipts when anything moved.
pub async fn advance_receipt(
    db: &Db,
    conversation_id: i64,
    user_id: i64,
    delivered: i64,
    read: i64,
) -> AppResult<Option<Receipt>> {
    let row: Option<(i64, i64)> = on_writer!(db, pool => sqlx::query_as(
        "INSERT INTO conversation_members (conversation_id, user_id, joined_at, last_delivered_seq, last_read_seq, listed) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (conversation_id, user_id) DO UPDATE SET \
         last_delivered_seq = CASE WHEN excluded.last_delivered_seq > conversation_members.last_delivered_seq \
             THEN excluded.last_delivered_seq ELSE conversation_members.last_delivered_seq END, \
         last_read_seq = CASE WHEN excluded.last_read_seq > conversation_members.last_read_seq \
             THEN excluded.last_read_seq ELSE conversation_members.last_read_seq END \
         WHERE excluded.last_delivered_seq > conversation_members.last_delivered_seq \
            OR excluded.last_read_seq > conversation_members.last_read_seq \
         RETURNING last_delivered_seq, last_read_seq")
        .bind(conversation_id).bind(user_id).bind(now_ms()).bind(delivered).bind(read).bind(false)
        .fetch_optional(pool).await?);
    Ok(row.map(|(delivered_seq, read_seq)| Receipt {
        delivered_seq,
        read_seq,
    }))
}
