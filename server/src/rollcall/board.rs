//! The roll-call board: who is safe, needs help, has not answered, or cannot be reached, by
//! organisation and by area.

use std::collections::BTreeMap;

use vigil_protocol::ServerMessage;

use super::Counts;
use crate::AppState;
use crate::db::{Db, Timestamp, now_ms};
use crate::live::Hub;
use crate::on_reader;

/// The status the board shows: a no-answer no device is known to have received is
/// "unreachable".
const STATUS: &str = "CASE WHEN p.status = 'no_answer' AND p.delivered_at IS NULL THEN 'unreachable' ELSE p.status END";

/// Where a roll-call stands (the protocol's type: the live board and the REST answer are the
/// same object, `by_area` included).
pub use vigil_protocol::{AreaCounts, Board};

fn add(board: &mut Board, status: &str, n: i64) {
    board.total += n;
    match status {
        "safe" => board.safe += n,
        "need_help" => board.need_help += n,
        "unreachable" => board.unreachable += n,
        _ => board.no_answer += n,
    }
}

/// The counts and the per-organisation split, straight from storage; returns the roll-call's
/// organisation too.
pub async fn totals(db: &Db, id: i64) -> Result<(i64, Board), sqlx::Error> {
    // Taken before counting, so that `counted_at` promises what a console relies on: every
    // answer acknowledged before it is in these counts (the snapshot is at least this recent).
    let counted_at = now_ms();
    let rows: Vec<(i64, String, i64)> = on_reader!(db, pool => sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT u.org_id, {STATUS} AS s, COUNT(*) FROM rollcall_people p JOIN users u ON u.id = p.user_id \
         WHERE p.rollcall_id = $1 GROUP BY u.org_id, s")))
        .bind(id).fetch_all(pool).await?);
    let org: Option<i64> = on_reader!(db, pool => sqlx::query_scalar("SELECT org_id FROM rollcalls WHERE id = $1")
        .bind(id).fetch_optional(pool).await?);
    let mut board = Board {
        counted_at: Some(Timestamp(counted_at)),
        ..Board::default()
    };
    for (org_id, status, n) in rows {
        add(&mut board, &status, n);
        *board
            .by_organisation
            .entry(org_id)
            .or_default()
            .entry(status)
            .or_default() += n;
    }
    Ok((org.unwrap_or_default(), board))
}

/// The whole board, with the per-area split from the people's current positions.
/// Returns the organisation with it.
pub async fn compute(
    db: &Db,
    tracker: &crate::areas::SharedTracker,
    id: i64,
) -> Result<(i64, Board), sqlx::Error> {
    let (org, mut board) = totals(db, id).await?;
    let rows: Vec<(i64, String)> = on_reader!(db, pool => sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT p.user_id, {STATUS} AS s FROM rollcall_people p WHERE p.rollcall_id = $1")))
        .bind(id).fetch_all(pool).await?);
    let mut by_area: BTreeMap<Option<i64>, Counts> = BTreeMap::new();
    let mut names: BTreeMap<Option<i64>, String> = BTreeMap::new();
    {
        let tracker = crate::areas::read_tracker(tracker);
        for (user, status) in rows {
            let areas = tracker
                .areas_of(user)
                .map(<[i64]>::to_vec)
                .unwrap_or_default();
            if areas.is_empty() {
                *by_area.entry(None).or_default().entry(status).or_default() += 1;
                continue;
            }
            for area in areas {
                names.entry(Some(area)).or_insert_with(|| {
                    tracker
                        .areas()
                        .get(area)
                        .map(|a| a.name.clone())
                        .unwrap_or_default()
                });
                *by_area
                    .entry(Some(area))
                    .or_default()
                    .entry(status.clone())
                    .or_default() += 1;
            }
        }
    }
    board.by_area = by_area
        .into_iter()
        .map(|(area_id, counts)| AreaCounts {
            name: names
                .remove(&area_id)
                .unwrap_or_else(|| "no known position".into()),
            area_id,
            counts,
        })
        .collect();
    Ok((org, board))
}

/// Pushes a board to the consoles following the organisation's operations.
pub fn publish_to(hub: &Hub, org: i64, id: i64, board: &Board) {
    hub.publish_operations(
        org,
        &ServerMessage::RollcallBoard {
            rollcall_id: id,
            board: board.clone(),
        },
    );
}

/// Like [`publish_to`], from a handler.
pub fn publish(state: &AppState, org: i64, id: i64, board: &Board) {
    publish_to(&state.hub, org, id, board);
}
