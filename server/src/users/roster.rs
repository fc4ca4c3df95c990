//! Personnel roster import: an org admin uploads the organisation's personnel as CSV or JSON;
//! rows create, update or deactivate people. Every row is checked before anything is written,
//! every bad row is reported with its line and reason, and the import applies in one
//! transaction or not at all.
//!
//! Columns (CSV header or JSON keys): `email` and `name` (required), `phone`, `duty_station`
//! (a duty-station name), `emergency_contact_name`, `emergency_contact_phone`,
//! `preferred_language`, `roles` (`staff;operator`, or a JSON array: replaces the person's roles;
//! empty keeps them, and new people default to staff), `active` (`true`/`false`; empty keeps the
//! person's current state, so an old file never revives people deactivated since; new people
//! are active). With `?deactivate_missing=true`, active members absent from the file are
//! deactivated. An org admin's roster never changes a system admin or an oversight officer
//! (their accounts reach beyond the organisation): a row that would is refused, and
//! `deactivate_missing` passes them over. Every person created, changed or deactivated gets an
//! audit entry of their own, beside the import's summary.

use std::collections::{HashMap, HashSet};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, header};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::store::{
    active_org_admins, lock_organisation, normalize_email, normalize_phone, validate_language,
};
use crate::db::now_ms;
use crate::error::{AppError, AppResult, Issue, Json, Path, Query};
use crate::policy::{Action, Actor, Role, authorize};
use crate::{AppState, in_tx, on_reader};

/// Most rows one upload may hold.
pub const MAX_ROWS: usize = 100_000;

const COLUMNS: [&str; 9] = [
    "email",
    "name",
    "phone",
    "duty_station",
    "emergency_contact_name",
    "emergency_contact_phone",
    "preferred_language",
    "roles",
    "active",
];

/// Options of an import.
#[derive(Debug, Deserialize, IntoParams)]
pub struct RosterQuery {
    /// Check and count, write nothing.
    pub dry_run: Option<bool>,
    /// Deactivate active members who are not in the file.
    pub deactivate_missing: Option<bool>,
}

/// What an import did (or, for a dry run, would do).
#[derive(Debug, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct RosterReport {
    /// Nothing was written.
    pub dry_run: bool,
    /// Rows read.
    pub rows: usize,
    /// People created.
    pub created: usize,
    /// People whose profile or roles changed.
    pub updated: usize,
    /// Rows that matched the stored profile exactly.
    pub unchanged: usize,
    /// People deactivated (by `active=false` or `deactivate_missing`).
    pub deactivated: usize,
}

/// One row as read, before checking; `at` says where it came from.
#[derive(Debug, Default)]
pub(crate) struct RawRow {
    pub(crate) at: String,
    pub(crate) fields: HashMap<String, String>,
}

/// One checked row.
#[derive(Debug, Clone, PartialEq)]
struct Planned {
    email: String,
    name: String,
    phone: Option<String>,
    duty_station_id: Option<i64>,
    ec_name: Option<String>,
    ec_phone: Option<String>,
    language: Option<String>,
    roles: Option<Vec<Role>>,
    /// `None`: the column was absent or empty — keep the person's current state (new people
    /// are active), so re-uploading an old roster does not bring back deactivated people.
    active: Option<bool>,
}

#[derive(Debug, sqlx::FromRow)]
struct Existing {
    id: i64,
    email: String,
    name: String,
    phone: Option<String>,
    duty_station_id: Option<i64>,
    emergency_contact_name: Option<String>,
    emergency_contact_phone: Option<String>,
    preferred_language: String,
    active: bool,
    is_system_admin: bool,
}

/// Routes for the roster upload (with its own, larger body limit).
pub fn routes(max_bytes: usize) -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(import))
        .layer(DefaultBodyLimit::max(max_bytes))
}

/// Import the organisation's personnel roster (CSV or JSON).
#[utoipa::path(post, path = "/organisations/{id}/roster", tag = "people", security(("bearer" = [])),
    params(("id" = i64, Path), RosterQuery),
    request_body(content = String, description = "CSV with a header row (text/csv) or a JSON array of objects (application/json)",
                 content_type = "text/csv"),
    responses((status = 200, body = RosterReport), (status = 403, description = "not allowed to manage this organisation's people"),
              (status = 422, description = "bad rows, each with its line; nothing applied")))]
async fn import(
    State(state): State<AppState>,
    actor: Actor,
    Path(org_id): Path<i64>,
    Query(q): Query<RosterQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> AppResult<Json<RosterReport>> {
    authorize(&actor, Action::ManagePersonnel { org_id })?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let raw = if content_type.starts_with("application/json") {
        read_json(&body)?
    } else if content_type.starts_with("text/csv") || content_type.starts_with("text/plain") {
        read_csv(&body)?
    } else {
        return Err(AppError::UnsupportedMediaType(
            "send the roster as text/csv or application/json".into(),
        ));
    };
    if raw.is_empty() {
        return Err(AppError::invalid("body", "the roster has no rows"));
    }
    if raw.len() > MAX_ROWS {
        return Err(AppError::invalid(
            "body",
            format!("the roster has {} rows; the limit is {MAX_ROWS}", raw.len()),
        ));
    }
    let stations = duty_station_names(&state).await?;
    let mut issues = Vec::new();
    let mut planned = Vec::with_capacity(raw.len());
    let mut seen = HashMap::new();
    let own_email = actor_email(&state, &actor).await?;
    for row in &raw {
        match check_row(row, &stations, &actor, org_id) {
            Ok(p) => {
                if let Some(first) = seen.insert(p.email.clone(), row.at.clone()) {
                    issues.push(Issue::new(
                        &row.at,
                        format!("email {} appears again (first at {first})", p.email),
                    ));
                } else if p.email == own_email && p.active == Some(false) {
                    issues.push(Issue::new(&row.at, "you cannot deactivate yourself"));
                } else {
                    planned.push((row.at.clone(), p));
                }
            }
            Err(mut errs) => issues.append(&mut errs),
        }
    }
    let emails: Vec<String> = planned.iter().map(|(_, p)| p.email.clone()).collect();
    let elsewhere = emails_in_other_orgs(&state, org_id, &emails).await?;
    for (at, p) in &planned {
        if elsewhere.contains(&p.email) {
            issues.push(Issue::new(
                at,
                format!("{} belongs to another organisation", p.email),
            ));
        }
    }
    if !issues.is_empty() {
        return Err(AppError::Invalid {
            detail: format!(
                "{} of {} rows are invalid; nothing was imported",
                issues.iter().map(|i| &i.at).collect::<HashSet<_>>().len(),
                raw.len()
            ),
            issues,
        });
    }
    let report = apply(
        &state,
        &actor,
        org_id,
        planned,
        q.dry_run.unwrap_or(false),
        q.deactivate_missing.unwrap_or(false),
    )
    .await?;
    // An import can deactivate people and change roles: every open socket re-reads its own.
    // Imports are rare; a recheck is one session read per connection.
    state.hub.recheck_all();
    Ok(Json(report))
}

async fn actor_email(state: &AppState, actor: &Actor) -> AppResult<String> {
    Ok(
        on_reader!(&state.db, pool => sqlx::query_scalar("SELECT email FROM users WHERE id = $1")
        .bind(actor.user_id).fetch_one(pool).await?),
    )
}

pub(crate) fn read_csv(body: &[u8]) -> AppResult<Vec<RawRow>> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .flexible(false)
        .from_reader(body);
    let headers: Vec<String> = reader
        .headers()
        .map_err(|e| AppError::invalid("line 1", format!("unreadable header: {e}")))?
        .iter()
        .map(|h| h.trim_start_matches('\u{feff}').to_lowercase())
        .collect();
    check_columns(headers.iter().map(String::as_str), "line 1")?;
    let mut rows = Vec::new();
    let mut issues = Vec::new();
    // The csv crate's own line counter skips blank lines; count from byte offsets instead so
    // the line named is the one a spreadsheet user sees.
    // A record's position is where the reader resumed, which may sit before skipped blank lines.
    let line_at = |byte: u64| {
        let mut start = usize::try_from(byte).unwrap_or(body.len()).min(body.len());
        while start < body.len() && matches!(body[start], b'\n' | b'\r') {
            start += 1;
        }
        body[..start].iter().filter(|b| **b == b'\n').count() + 1
    };
    for record in reader.records() {
        match record {
            Ok(rec) => {
                let line = rec.position().map_or(0, |p| line_at(p.byte()));
                if rec.iter().all(str::is_empty) {
                    continue;
                }
                rows.push(RawRow {
                    at: format!("line {line}"),
                    fields: headers
                        .iter()
                        .cloned()
                        .zip(rec.iter().map(str::to_string))
                        .filter(|(_, v)| !v.is_empty())
                        .collect(),
                });
            }
            Err(e) => {
                let line = e.position().map_or(0, |p| line_at(p.byte()));
                issues.push(Issue::new(format!("line {line}"), e.to_string()));
            }
        }
    }
    if issues.is_empty() {
        Ok(rows)
    } else {
        Err(AppError::Invalid {
            detail: "the CSV is malformed; nothing was imported".into(),
            issues,
        })
    }
}

pub(crate) fn read_json(body: &[u8]) -> AppResult<Vec<RawRow>> {
    let items: Vec<serde_json::Map<String, serde_json::Value>> = serde_json::from_slice(body)
        .map_err(|e| AppError::invalid("body", format!("expected a JSON array of objects: {e}")))?;
    let mut rows = Vec::with_capacity(items.len());
    let mut issues = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        let at = format!("item {}", i + 1);
        if let Err(AppError::Invalid { issues: more, .. }) =
            check_columns(item.keys().map(String::as_str), &at)
        {
            issues.extend(more);
            continue;
        }
        let mut fields = HashMap::new();
        for (k, v) in item {
            let text = match v {
                serde_json::Value::Null => continue,
                serde_json::Value::String(s) => s,
                serde_json::Value::Bool(b) => b.to_string(),
                serde_json::Value::Array(list) => list
                    .iter()
                    .map(|x| x.as_str().unwrap_or("?").to_string())
                    .collect::<Vec<_>>()
                    .join(";"),
                other => other.to_string(),
            };
            if !text.trim().is_empty() {
                fields.insert(k, text.trim().to_string());
            }
        }
        rows.push(RawRow { at, fields });
    }
    if issues.is_empty() {
        Ok(rows)
    } else {
        Err(AppError::Invalid {
            detail: "unknown columns; nothing was imported".into(),
            issues,
        })
    }
}

fn check_columns<'a>(names: impl Iterator<Item = &'a str>, at: &str) -> AppResult<()> {
    let names: Vec<&str> = names.collect();
    let unknown: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| !COLUMNS.contains(n))
        .collect();
    let mut issues = Vec::new();
    if !unknown.is_empty() {
        issues.push(Issue::new(
            at,
            format!(
                "unknown column(s) {}; the columns are {}",
                unknown.join(", "),
                COLUMNS.join(", ")
            ),
        ));
    }
    if at == "line 1" {
        for required in ["email", "name"] {
            if !names.contains(&required) {
                issues.push(Issue::new(at, format!("the column {required} is missing")));
            }
        }
    }
    if issues.is_empty() {
        Ok(())
    } else {
        Err(AppError::Invalid {
            detail: issues
                .iter()
                .map(|i| i.reason.clone())
                .collect::<Vec<_>>()
                .join("; "),
            issues,
        })
    }
}

fn check_row(
    row: &RawRow,
    stations: &HashMap<String, Vec<i64>>,
    actor: &Actor,
    org_id: i64,
) -> Result<Planned, Vec<Issue>> {
    let mut issues = Vec::new();
    let mut bad = |field: &str, reason: String| {
        issues.push(Issue::new(&row.at, format!("{field}: {reason}")));
    };
    let get = |k: &str| row.fields.get(k).map(String::as_str);
    let email = match get("email").map(normalize_email) {
        Some(Ok(e)) => e,
        Some(Err(e)) => {
            bad("email", e);
            String::new()
        }
        None => {
            bad("email", "is required".into());
            String::new()
        }
    };
    let name = get("name").unwrap_or("").to_string();
    if name.is_empty() || name.chars().count() > 200 {
        bad("name", "is required (1 to 200 characters)".into());
    }
    let mut phone_of = |field: &str| match get(field).map(normalize_phone) {
        Some(Ok(p)) => Some(p),
        Some(Err(e)) => {
            bad(field, e);
            None
        }
        None => None,
    };
    let phone = phone_of("phone");
    let ec_phone = phone_of("emergency_contact_phone");
    let duty_station_id = match get("duty_station") {
        Some(s) => match stations.get(&s.to_lowercase()).map(Vec::as_slice) {
            Some([id]) => Some(*id),
            Some([_, _, ..]) => {
                bad(
                    "duty_station",
                    format!(
                        "several duty stations are named {s:?}; write it as \"{s} (CC)\" with the country code"
                    ),
                );
                None
            }
            _ => {
                bad("duty_station", format!("no duty station is named {s:?}"));
                None
            }
        },
        None => None,
    };
    let language = get("preferred_language").map(str::to_string);
    if let Some(Err(e)) = language.as_deref().map(validate_language) {
        bad("preferred_language", e);
    }
    let roles = get("roles").map(|list| {
        let mut roles = Vec::new();
        for name in list
            .split([';', ','])
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            match Role::parse(name) {
                Some(role) => {
                    match crate::policy::authorize(actor, Action::AssignRole { org_id, role }) {
                        Ok(()) => roles.push(role),
                        Err(d) => bad("roles", format!("{name}: {d}")),
                    }
                }
                None => bad(
                    "roles",
                    format!("{name:?} is not a role (staff, operator, adviser, org_admin)"),
                ),
            }
        }
        roles.sort();
        roles.dedup();
        roles
    });
    let active = match get("active").map(str::to_lowercase).as_deref() {
        None => None,
        Some("true" | "yes" | "1" | "y") => Some(true),
        Some("false" | "no" | "0" | "n") => Some(false),
        Some(other) => {
            bad("active", format!("{other:?} is not true or false"));
            None
        }
    };
    if !issues.is_empty() {
        return Err(issues);
    }
    Ok(Planned {
        email,
        name,
        phone,
        duty_station_id,
        ec_name: get("emergency_contact_name").map(str::to_string),
        ec_phone,
        language,
        roles,
        active,
    })
}

/// Duty stations by lower-case name and by "name (cc)"; a name shared by two countries maps
/// to both ids, so the row must say which.
async fn duty_station_names(state: &AppState) -> AppResult<HashMap<String, Vec<i64>>> {
    let rows: Vec<(i64, String, String)> = on_reader!(&state.db, pool =>
        sqlx::query_as("SELECT id, name, country_code FROM duty_stations").fetch_all(pool).await?);
    let mut out: HashMap<String, Vec<i64>> = HashMap::new();
    for (id, name, cc) in rows {
        out.entry(name.to_lowercase()).or_default().push(id);
        out.entry(format!("{} ({})", name, cc).to_lowercase())
            .or_default()
            .push(id);
    }
    Ok(out)
}

async fn emails_in_other_orgs(
    state: &AppState,
    org_id: i64,
    emails: &[String],
) -> AppResult<HashSet<String>> {
    let mut found = HashSet::new();
    for chunk in emails.chunks(500) {
        let rows: Vec<String> = on_reader!(&state.db, pool => {
            let mut qb = sqlx::QueryBuilder::new("SELECT email FROM users WHERE org_id <> ");
            qb.push_bind(org_id).push(" AND email IN (");
            let mut list = qb.separated(", ");
            for e in chunk {
                list.push_bind(e.clone());
            }
            qb.push(")");
            qb.build_query_scalar().fetch_all(pool).await?
        });
        found.extend(rows);
    }
    Ok(found)
}

fn differs(p: &Planned, e: &Existing) -> bool {
    p.name != e.name
        || (p.phone.is_some() && p.phone != e.phone)
        || (p.duty_station_id.is_some() && p.duty_station_id != e.duty_station_id)
        || (p.ec_name.is_some() && p.ec_name != e.emergency_contact_name)
        || (p.ec_phone.is_some() && p.ec_phone != e.emergency_contact_phone)
        || p.language
            .as_ref()
            .is_some_and(|l| *l != e.preferred_language)
        || p.active.is_some_and(|a| a != e.active)
}

async fn apply(
    state: &AppState,
    actor: &Actor,
    org_id: i64,
    planned: Vec<(String, Planned)>,
    dry_run: bool,
    deactivate_missing: bool,
) -> AppResult<RosterReport> {
    let rows = planned.len();
    let now = now_ms();
    let in_file: HashSet<&str> = planned.iter().map(|(_, p)| p.email.as_str()).collect();
    let mut report = RosterReport {
        dry_run,
        rows,
        created: 0,
        updated: 0,
        unchanged: 0,
        deactivated: 0,
    };
    // An org admin's roster leaves oversight alone; a system admin's roster sets it as listed.
    let keep_oversight = !actor.system_admin;
    let mut refused = Vec::new();
    in_tx!(&state.db, tx => {
        lock_organisation(&mut *tx, org_id).await?;
        let existing: Vec<Existing> = sqlx::query_as(
            "SELECT id, email, name, phone, duty_station_id, emergency_contact_name, emergency_contact_phone, \
             preferred_language, active, is_system_admin FROM users WHERE org_id = $1")
            .bind(org_id).fetch_all(&mut *tx).await?;
        let role_rows: Vec<(i64, String)> = sqlx::query_as(
            "SELECT r.user_id, r.role FROM user_roles r JOIN users u ON u.id = r.user_id WHERE u.org_id = $1")
            .bind(org_id).fetch_all(&mut *tx).await?;
        let mut roles_of: HashMap<i64, Vec<Role>> = HashMap::new();
        for (uid, r) in role_rows {
            if let Some(role) = Role::parse(&r) {
                roles_of.entry(uid).or_default().push(role);
            }
        }
        let privileged = |e: &Existing| {
            e.is_system_admin || roles_of.get(&e.id).is_some_and(|r| r.contains(&Role::Oversight))
        };
        let by_email: HashMap<&str, &Existing> = existing.iter().map(|e| (e.email.as_str(), e)).collect();
        for (at, p) in &planned {
            match by_email.get(p.email.as_str()) {
                None => {
                    let active = p.active.unwrap_or(true);
                    report.created += 1;
                    if !active {
                        report.deactivated += 1;
                    }
                    let id: i64 = sqlx::query_scalar(
                        "INSERT INTO users (org_id, email, name, phone, duty_station_id, emergency_contact_name, \
                         emergency_contact_phone, preferred_language, active, created_at, updated_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10) RETURNING id")
                        .bind(org_id).bind(&p.email).bind(&p.name).bind(&p.phone).bind(p.duty_station_id)
                        .bind(&p.ec_name).bind(&p.ec_phone).bind(p.language.as_deref().unwrap_or("en"))
                        .bind(active).bind(now).fetch_one(&mut *tx).await?;
                    let roles = p.roles.clone().filter(|r| !r.is_empty()).unwrap_or_else(|| vec![Role::Staff]);
                    set_roles(&mut *tx, id, &roles, actor.user_id, now).await?;
                    let list = roles.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(",");
                    crate::audit::record(&mut *tx, Some(actor.user_id), Some(org_id), "user.create",
                        &format!("user:{id}"), &format!("{} roles={list} via roster", p.email)).await?;
                }
                Some(e) => {
                    let mut current = roles_of.get(&e.id).cloned().unwrap_or_default();
                    let held_oversight = current.contains(&Role::Oversight);
                    if keep_oversight {
                        current.retain(|r| *r != Role::Oversight);
                    }
                    current.sort();
                    let role_change = p.roles.as_ref().is_some_and(|r| *r != current);
                    let active = p.active.unwrap_or(e.active);
                    if !differs(p, e) && !role_change {
                        report.unchanged += 1;
                        continue;
                    }
                    if !actor.system_admin && privileged(e) {
                        // Their phone is their SMS fallback and their account reaches beyond the
                        // organisation: only a system admin changes it.
                        refused.push(Issue::new(at, format!(
                            "{} is a system admin or oversight officer; only a system admin can change their account", p.email)));
                        continue;
                    }
                    report.updated += 1;
                    if e.active && !active {
                        report.deactivated += 1;
                        sqlx::query("UPDATE sessions SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL")
                            .bind(now).bind(e.id).execute(&mut *tx).await?;
                        crate::audit::record(&mut *tx, Some(actor.user_id), Some(org_id), "user.deactivate",
                            &format!("user:{}", e.id), "via roster").await?;
                    }
                    sqlx::query(
                        "UPDATE users SET name = $1, phone = COALESCE($2, phone), duty_station_id = COALESCE($3, duty_station_id), \
                         emergency_contact_name = COALESCE($4, emergency_contact_name), \
                         emergency_contact_phone = COALESCE($5, emergency_contact_phone), \
                         preferred_language = COALESCE($6, preferred_language), active = $7, updated_at = $8 WHERE id = $9")
                        .bind(&p.name).bind(&p.phone).bind(p.duty_station_id).bind(&p.ec_name).bind(&p.ec_phone)
                        .bind(&p.language).bind(active).bind(now).bind(e.id).execute(&mut *tx).await?;
                    if let (true, Some(roles)) = (role_change, &p.roles) {
                        let mut roles = roles.clone();
                        if keep_oversight && held_oversight {
                            roles.push(Role::Oversight);
                        }
                        set_roles(&mut *tx, e.id, &roles, actor.user_id, now).await?;
                        let list = roles.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(",");
                        crate::audit::record(&mut *tx, Some(actor.user_id), Some(org_id), "user.roles",
                            &format!("user:{}", e.id), &format!("roles={list} via roster")).await?;
                    }
                }
            }
        }
        if !refused.is_empty() {
            // Dropping the transaction rolls every change back.
            return Err(AppError::Invalid {
                detail: format!("{} row(s) refused; nothing was imported", refused.len()),
                issues: refused,
            });
        }
        if deactivate_missing {
            let absent = existing.iter().filter(|e| {
                e.active && e.id != actor.user_id && !in_file.contains(e.email.as_str())
                    && (actor.system_admin || !privileged(e))
            });
            for e in absent {
                report.deactivated += 1;
                sqlx::query("UPDATE users SET active = FALSE, updated_at = $1 WHERE id = $2")
                    .bind(now).bind(e.id).execute(&mut *tx).await?;
                sqlx::query("UPDATE sessions SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL")
                    .bind(now).bind(e.id).execute(&mut *tx).await?;
                crate::audit::record(&mut *tx, Some(actor.user_id), Some(org_id), "user.deactivate",
                    &format!("user:{}", e.id), "absent from roster").await?;
            }
        }
        if active_org_admins(&mut *tx, org_id).await? == 0 && !actor.system_admin {
            return Err(AppError::Conflict(
                "this roster would leave the organisation without an active org admin; nothing was imported".into()));
        }
        crate::audit::record(&mut *tx, Some(actor.user_id), Some(org_id), "roster.import", &format!("organisation:{org_id}"),
            &format!("rows={} created={} updated={} unchanged={} deactivated={} dry_run={dry_run}",
                report.rows, report.created, report.updated, report.unchanged, report.deactivated)).await?;
        if dry_run {
            // Leaving the body early drops the transaction: a dry run rolls everything back.
            tracing::info!(org_id, ?report, "roster checked (dry run)");
            return Ok(report);
        }
    });
    tracing::info!(org_id, ?report, "roster imported");
    Ok(report)
}

/// Replaces a person's roles.
async fn set_roles<'c, E, DB>(
    exec: &mut E,
    user_id: i64,
    roles: &[Role],
    granted_by: i64,
    now: i64,
) -> Result<(), sqlx::Error>
where
    for<'e> &'e mut E: sqlx::Executor<'e, Database = DB>,
    DB: sqlx::Database,
    <DB as sqlx::Database>::Arguments: sqlx::IntoArguments<DB>,
    for<'q> i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    sqlx::query("DELETE FROM user_roles WHERE user_id = $1")
        .bind(user_id)
        .execute(&mut *exec)
        .await?;
    for role in roles {
        sqlx::query(
            "INSERT INTO user_roles (user_id, role, granted_by, granted_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (user_id, role) DO NOTHING",
        )
        .bind(user_id)
        .bind(role.as_str())
        .bind(granted_by)
        .bind(now)
        .execute(&mut *exec)
        .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_rows_carry_their_line_numbers_and_unknown_columns_are_named() {
        let rows = read_csv(b"email,name,roles\na@x.org,A,staff\n\nb@x.org,B,\n").expect("csv");
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].at, "line 2");
        assert_eq!(rows[1].at, "line 4");
        assert!(!rows[1].fields.contains_key("roles"));
        let err = read_csv(b"email,name,salary\n").expect_err("unknown column");
        assert!(err.to_string().contains("salary"));
        let err = read_csv(b"email,phone\n").expect_err("missing name");
        assert!(err.to_string().contains("name is missing"));
    }
}
