//! The administrative audit trail: who granted which role, imported which roster, changed which
//! area. Written in the same transaction as the change it records.

use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::db::{Db, Timestamp, now_ms};
use crate::error::{AppResult, Json, Path, Query};
use crate::policy::{Action, Actor, authorize};
use crate::{AppState, in_tx, on_reader};

/// One audited change.
#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct AuditEntry {
    /// Entry id.
    pub id: i64,
    /// When it happened.
    pub at: Timestamp,
    /// Who did it (absent for the CLI and the demo seeder).
    pub actor_id: Option<i64>,
    /// The organisation concerned.
    pub org_id: Option<i64>,
    /// What was done, e.g. `role.grant`.
    pub action: String,
    /// What it was done to, e.g. `user:42`.
    pub target: String,
    /// Details, e.g. the role.
    pub detail: String,
    /// Its place in the organisation's chain.
    pub chain_seq: Option<i64>,
    /// Its hash, over the one before it and its fields.
    pub hash: Option<String>,
}

/// The hash a chain starts from.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The fields of an entry that its hash covers.
#[derive(Debug, Clone, Copy)]
pub struct Fields<'a> {
    /// When (ms).
    pub at: i64,
    /// Who.
    pub actor_id: Option<i64>,
    /// Which organisation's chain (0: none).
    pub org_id: Option<i64>,
    /// What.
    pub action: &'a str,
    /// To what.
    pub target: &'a str,
    /// Details.
    pub detail: &'a str,
}

impl Fields<'_> {
    /// SHA-256 over the previous hash and the fields with their place in the chain, as JSON
    /// in one fixed order, so that any verifier can recompute it.
    pub fn hash(&self, prev_hash: &str, chain_seq: i64) -> String {
        use sha2::{Digest, Sha256};
        let fields = serde_json::json!([
            chain_seq,
            self.at,
            self.actor_id,
            self.org_id,
            self.action,
            self.target,
            self.detail
        ]);
        let digest = Sha256::new()
            .chain_update(prev_hash.as_bytes())
            .chain_update(b"\n")
            .chain_update(fields.to_string().as_bytes())
            .finalize();
        digest.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn chain(&self) -> i64 {
        self.org_id.unwrap_or(0)
    }
}

/// A place in a chain: its number, the hash before it and its own.
struct Link {
    seq: i64,
    prev: String,
    hash: String,
}

/// Takes the next place in the entry's chain. Bumping the chain's head first takes its row
/// lock (PostgreSQL) or runs under the write lock (SQLite), so concurrent writers take turns
/// until their transactions end and the chain never forks.
async fn link<C>(conn: &mut C, fields: &Fields<'_>) -> Result<Link, sqlx::Error>
where
    C: sqlx::Connection,
    for<'c> &'c mut C: sqlx::Executor<'c, Database = C::Database>,
    for<'q> <C::Database as sqlx::Database>::Arguments: sqlx::IntoArguments<C::Database>,
    for<'q> i64: sqlx::Encode<'q, C::Database> + sqlx::Type<C::Database>,
    for<'q> &'q str: sqlx::Encode<'q, C::Database> + sqlx::Type<C::Database>,
    for<'r> (i64, String): sqlx::FromRow<'r, <C::Database as sqlx::Database>::Row>,
{
    // One statement takes the next place: a new chain starts at 1 after the genesis hash; an
    // existing head is bumped, and still holds the hash of the entry before.
    let chain = fields.chain();
    let (seq, prev): (i64, String) = sqlx::query_as(
        "INSERT INTO audit_heads (chain, seq, hash) VALUES ($1, 1, $2) \
         ON CONFLICT (chain) DO UPDATE SET seq = audit_heads.seq + 1 RETURNING seq, hash",
    )
    .bind(chain)
    .bind(GENESIS)
    .fetch_one(&mut *conn)
    .await?;
    let hash = fields.hash(&prev, seq);
    sqlx::query("UPDATE audit_heads SET hash = $1 WHERE chain = $2")
        .bind(hash.as_str())
        .bind(chain)
        .execute(&mut *conn)
        .await?;
    Ok(Link { seq, prev, hash })
}

/// Records a change inside the caller's transaction, chained to its organisation's last entry.
pub async fn record<C>(
    conn: &mut C,
    actor_id: Option<i64>,
    org_id: Option<i64>,
    action: &str,
    target: &str,
    detail: &str,
) -> Result<(), sqlx::Error>
where
    C: sqlx::Connection,
    for<'c> &'c mut C: sqlx::Executor<'c, Database = C::Database>,
    for<'q> <C::Database as sqlx::Database>::Arguments: sqlx::IntoArguments<C::Database>,
    for<'q> i64: sqlx::Encode<'q, C::Database> + sqlx::Type<C::Database>,
    for<'q> Option<i64>: sqlx::Encode<'q, C::Database> + sqlx::Type<C::Database>,
    for<'q> &'q str: sqlx::Encode<'q, C::Database> + sqlx::Type<C::Database>,
    for<'r> (i64, String): sqlx::FromRow<'r, <C::Database as sqlx::Database>::Row>,
{
    let fields = Fields {
        at: now_ms(),
        actor_id,
        org_id,
        action,
        target,
        detail,
    };
    let link = link(conn, &fields).await?;
    sqlx::query(
        "INSERT INTO audit_log (at, actor_id, org_id, action, target, detail, chain_seq, prev_hash, hash) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(fields.at)
    .bind(actor_id)
    .bind(org_id)
    .bind(action)
    .bind(target)
    .bind(detail)
    .bind(link.seq)
    .bind(link.prev.as_str())
    .bind(link.hash.as_str())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

#[derive(Debug, Clone, sqlx::FromRow)]
struct StoredEntry {
    id: i64,
    at: i64,
    actor_id: Option<i64>,
    org_id: Option<i64>,
    action: String,
    target: String,
    detail: String,
    chain_seq: Option<i64>,
    prev_hash: Option<String>,
    hash: Option<String>,
}

impl StoredEntry {
    fn fields(&self) -> Fields<'_> {
        Fields {
            at: self.at,
            actor_id: self.actor_id,
            org_id: self.org_id,
            action: &self.action,
            target: &self.target,
            detail: &self.detail,
        }
    }
}

const STORED_COLUMNS: &str =
    "id, at, actor_id, org_id, action, target, detail, chain_seq, prev_hash, hash";

/// Chains the entries written before the chain existed, oldest first (once, at start).
pub async fn chain_earlier_entries(db: &Db) -> Result<usize, sqlx::Error> {
    let done = in_tx!(db, tx => {
        let rows: Vec<StoredEntry> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {STORED_COLUMNS} FROM audit_log WHERE chain_seq IS NULL ORDER BY id")))
            .fetch_all(&mut *tx).await?;
        for row in &rows {
            let link = link(&mut *tx, &row.fields()).await?;
            sqlx::query("UPDATE audit_log SET chain_seq = $1, prev_hash = $2, hash = $3 WHERE id = $4")
                .bind(link.seq).bind(link.prev.as_str()).bind(link.hash.as_str()).bind(row.id)
                .execute(&mut *tx).await?;
        }
        rows.len()
    });
    Ok(done)
}

/// What checking one chain found.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ChainReport {
    /// The organisation (absent: entries of no organisation).
    pub org_id: Option<i64>,
    /// Entries checked.
    pub entries: usize,
    /// The newest entry's hash: keep it elsewhere to prove later that nothing was rewritten.
    pub head_hash: String,
    /// What is wrong, first break first; empty when the chain holds.
    pub problems: Vec<String>,
}

/// Recomputes every chain (or one organisation's) and says where each breaks.
pub async fn verify(db: &Db, org: Option<i64>) -> Result<Vec<ChainReport>, sqlx::Error> {
    let mut chains: Vec<i64> = on_reader!(db, pool => sqlx::query_scalar(
        "SELECT DISTINCT COALESCE(org_id, 0) FROM audit_log UNION SELECT chain FROM audit_heads")
        .fetch_all(pool).await?);
    chains.sort_unstable();
    chains.dedup();
    if let Some(org) = org {
        chains.retain(|c| *c == org);
    }
    let mut reports = Vec::new();
    for chain in chains {
        let rows: Vec<StoredEntry> = on_reader!(db, pool => sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {STORED_COLUMNS} FROM audit_log WHERE COALESCE(org_id, 0) = $1 ORDER BY chain_seq, id")))
            .bind(chain).fetch_all(pool).await?);
        let head: Option<(i64, String)> = on_reader!(db, pool => sqlx::query_as(
            "SELECT seq, hash FROM audit_heads WHERE chain = $1").bind(chain).fetch_optional(pool).await?);
        reports.push(check_chain(chain, &rows, head));
    }
    Ok(reports)
}

fn check_chain(chain: i64, rows: &[StoredEntry], head: Option<(i64, String)>) -> ChainReport {
    let mut problems = Vec::new();
    let mut prev = GENESIS.to_string();
    let mut seq = 0;
    for row in rows {
        let Some(at_seq) = row.chain_seq else {
            problems.push(format!("entry {} is outside the chain", row.id));
            continue;
        };
        if at_seq != seq + 1 {
            problems.push(format!(
                "entries {} to {} are missing before entry {}",
                seq + 1,
                at_seq - 1,
                row.id
            ));
        }
        if row.prev_hash.as_deref() != Some(prev.as_str()) {
            problems.push(format!(
                "entry {} does not follow the one before it",
                row.id
            ));
        }
        let hash = row
            .fields()
            .hash(row.prev_hash.as_deref().unwrap_or(""), at_seq);
        if row.hash.as_deref() != Some(hash.as_str()) {
            problems.push(format!("entry {} was changed after it was written", row.id));
        }
        prev = row.hash.clone().unwrap_or_default();
        seq = at_seq;
    }
    match head {
        Some((head_seq, head_hash)) if head_seq == seq && head_hash == prev => {}
        Some((head_seq, _)) if head_seq > seq => problems.push(format!(
            "entries {} to {head_seq} were removed from the end",
            seq + 1
        )),
        Some(_) => problems.push("the chain's head does not match its newest entry".into()),
        None if rows.is_empty() => {}
        None => problems.push("the chain's head is missing".into()),
    }
    ChainReport {
        org_id: (chain != 0).then_some(chain),
        entries: rows.len(),
        head_hash: prev,
        problems,
    }
}

/// Paging of the audit log.
#[derive(Debug, Deserialize, IntoParams)]
pub struct AuditQuery {
    /// Newest entries first; at most this many (default 100, max 1000).
    pub limit: Option<i64>,
}

/// Routes under `/api/v1/organisations/{id}/audit`.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(export))
        .routes(routes!(verify_chain))
}

/// The organisation's audit trail, newest first.
#[utoipa::path(get, path = "/organisations/{id}/audit", tag = "organisations", security(("bearer" = [])),
    params(("id" = i64, Path), AuditQuery),
    responses((status = 200, body = [AuditEntry]), (status = 403, description = "not an org admin of this organisation or oversight")))]
async fn list(
    State(state): State<AppState>,
    actor: Actor,
    Path(org_id): Path<i64>,
    Query(q): Query<AuditQuery>,
) -> AppResult<Json<Vec<AuditEntry>>> {
    authorize(&actor, Action::ViewOrgReports { org_id })?;
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let rows = on_reader!(&state.db, pool => sqlx::query_as(
        "SELECT id, at, actor_id, org_id, action, target, detail, chain_seq, hash FROM audit_log \
         WHERE org_id = $1 ORDER BY id DESC LIMIT $2")
        .bind(org_id).bind(limit).fetch_all(pool).await?);
    Ok(Json(rows))
}

/// The organisation's whole audit trail as CSV, oldest first, with each entry's place in the
/// chain and its hashes, so that anyone can recompute the chain away from this server.
#[utoipa::path(get, path = "/organisations/{id}/audit/export.csv", tag = "organisations", security(("bearer" = [])),
    params(("id" = i64, Path)),
    responses((status = 200, description = "CSV", content_type = "text/csv", body = String),
              (status = 403, description = "not an org admin of this organisation or oversight")))]
async fn export(
    State(state): State<AppState>,
    actor: Actor,
    Path(org_id): Path<i64>,
) -> AppResult<axum::response::Response> {
    authorize(&actor, Action::ViewOrgReports { org_id })?;
    let rows: Vec<StoredEntry> = on_reader!(&state.db, pool => sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {STORED_COLUMNS} FROM audit_log WHERE org_id = $1 ORDER BY chain_seq, id")))
        .bind(org_id).fetch_all(pool).await?);
    let mut csv = crate::export::Csv::new([
        "id",
        "at",
        "at_ms",
        "actor_id",
        "org_id",
        "action",
        "target",
        "detail",
        "chain_seq",
        "prev_hash",
        "hash",
    ])?;
    let opt = |v: Option<i64>| v.map(|v| v.to_string()).unwrap_or_default();
    for r in rows {
        csv.row([
            r.id.to_string(),
            Timestamp(r.at).to_rfc3339(),
            r.at.to_string(),
            opt(r.actor_id),
            opt(r.org_id),
            r.action,
            r.target,
            r.detail,
            opt(r.chain_seq),
            r.prev_hash.unwrap_or_default(),
            r.hash.unwrap_or_default(),
        ])?;
    }
    csv.attachment(&format!("audit-{org_id}.csv"))
}

/// Recomputes the organisation's audit chain and says whether it holds.
#[utoipa::path(get, path = "/organisations/{id}/audit/verify", tag = "organisations", security(("bearer" = [])),
    params(("id" = i64, Path)),
    responses((status = 200, body = ChainReport),
              (status = 403, description = "not an org admin of this organisation or oversight")))]
async fn verify_chain(
    State(state): State<AppState>,
    actor: Actor,
    Path(org_id): Path<i64>,
) -> AppResult<Json<ChainReport>> {
    authorize(&actor, Action::ViewOrgReports { org_id })?;
    let report = verify(&state.db, Some(org_id))
        .await?
        .pop()
        .unwrap_or(ChainReport {
            org_id: Some(org_id),
            entries: 0,
            head_hash: GENESIS.to_string(),
            problems: Vec::new(),
        });
    Ok(Json(report))
}
