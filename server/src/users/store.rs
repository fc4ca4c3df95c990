//! Storage and validation of personnel profiles, shared by the API, the roster import, the CLI
//! and the demo seeder.

use std::collections::HashMap;

use serde::Deserialize;
use utoipa::ToSchema;

use super::{Dependant, EmergencyContact, Person, ProfileUpdate};
use crate::auth::password;
use crate::db::{Db, Timestamp, now_ms};
use crate::error::{AppError, AppResult, Issue, is_unique_violation};
use crate::policy::Role;
use crate::{in_tx, on_reader};

/// A person to create.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPerson {
    /// Email; also the login name.
    pub email: String,
    /// Full name.
    pub name: String,
    /// Initial password; without one the person cannot log in until an admin sets it.
    pub password: Option<String>,
    /// Mobile number (E.164).
    pub phone: Option<String>,
    /// Duty station.
    pub duty_station_id: Option<i64>,
    /// Emergency contact.
    pub emergency_contact: Option<EmergencyContact>,
    /// Preferred language (default `en`).
    pub preferred_language: Option<String>,
    /// Roles in the organisation (default: staff).
    #[serde(default)]
    pub roles: Vec<Role>,
    /// Eligible dependants.
    #[serde(default)]
    pub dependants: Vec<Dependant>,
    /// Makes the person a system admin (system admins only).
    #[serde(default)]
    pub system_admin: bool,
}

/// Normalises an email address, or says why it is not one.
pub fn normalize_email(raw: &str) -> Result<String, String> {
    let email = raw.trim().to_lowercase();
    let valid = email.len() <= 254
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && !domain.contains('@')
                && domain.contains('.')
                && domain.split('.').all(|label| !label.is_empty())
        });
    if valid {
        Ok(email)
    } else {
        Err(format!("{raw:?} is not an email address"))
    }
}

/// Normalises a phone number to E.164 (`+` and 7–15 digits), dropping spaces, dots and dashes.
pub fn normalize_phone(raw: &str) -> Result<String, String> {
    let compact: String = raw
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')'))
        .collect();
    let digits = compact.strip_prefix('+').unwrap_or("");
    if (7..=15).contains(&digits.len()) && digits.chars().all(|c| c.is_ascii_digit()) {
        Ok(compact)
    } else {
        Err(format!(
            "{raw:?} is not an international phone number (+ then 7 to 15 digits)"
        ))
    }
}

/// Checks a BCP 47 language tag of the simple kind we use (`en`, `fr`, `ar`, `pt-BR`).
pub fn validate_language(tag: &str) -> Result<(), String> {
    let mut parts = tag.split('-');
    let primary = parts.next().unwrap_or("");
    let primary_ok =
        (2..=3).contains(&primary.len()) && primary.chars().all(|c| c.is_ascii_lowercase());
    let rest_ok =
        parts.all(|p| (2..=8).contains(&p.len()) && p.chars().all(|c| c.is_ascii_alphanumeric()));
    if primary_ok && rest_ok {
        Ok(())
    } else {
        Err(format!(
            "{tag:?} is not a language tag such as en, fr or ar"
        ))
    }
}

fn validate_name(name: &str) -> Result<(), String> {
    let n = name.trim().chars().count();
    if n == 0 || n > 200 {
        Err("must be 1 to 200 characters".into())
    } else {
        Ok(())
    }
}

fn validate_dependants(deps: &[Dependant], issues: &mut Vec<Issue>) {
    if deps.len() > 50 {
        issues.push(Issue::new("dependants", "at most 50 dependants"));
    }
    for (i, d) in deps.iter().enumerate() {
        if let Err(e) = validate_name(&d.name) {
            issues.push(Issue::new(format!("dependants/{i}/name"), e));
        }
        if d.relationship.trim().is_empty() {
            issues.push(Issue::new(
                format!("dependants/{i}/relationship"),
                "must not be empty",
            ));
        }
        if let Some(dob) = &d.date_of_birth {
            let fmt = time::macros::format_description!("[year]-[month]-[day]");
            if time::Date::parse(dob, &fmt).is_err() {
                issues.push(Issue::new(
                    format!("dependants/{i}/date_of_birth"),
                    "must be a date such as 2015-04-30",
                ));
            }
        }
    }
}

/// Checks an emergency contact and normalises its phone number.
fn validate_contact(c: &mut Option<EmergencyContact>, issues: &mut Vec<Issue>) {
    if let Some(contact) = c {
        if let Err(e) = validate_name(&contact.name) {
            issues.push(Issue::new("emergency_contact/name", e));
        }
        contact.name = contact.name.trim().to_string();
        match normalize_phone(&contact.phone) {
            Ok(p) => contact.phone = p,
            Err(e) => issues.push(Issue::new("emergency_contact/phone", e)),
        }
    }
}

/// Validates every field of a new person, reporting all problems at once.
fn validate_new(p: &mut NewPerson) -> AppResult<()> {
    let mut issues = Vec::new();
    match normalize_email(&p.email) {
        Ok(e) => p.email = e,
        Err(e) => issues.push(Issue::new("email", e)),
    }
    if let Err(e) = validate_name(&p.name) {
        issues.push(Issue::new("name", e));
    }
    p.name = p.name.trim().to_string();
    if let Some(phone) = &p.phone {
        match normalize_phone(phone) {
            Ok(n) => p.phone = Some(n),
            Err(e) => issues.push(Issue::new("phone", e)),
        }
    }
    validate_contact(&mut p.emergency_contact, &mut issues);
    if let Some(lang) = &p.preferred_language
        && let Err(e) = validate_language(lang)
    {
        issues.push(Issue::new("preferred_language", e));
    }
    if let Some(pw) = &p.password
        && let Err(AppError::Invalid { issues: more, .. }) = password::validate(pw)
    {
        issues.extend(more);
    }
    validate_dependants(&p.dependants, &mut issues);
    AppError::check(issues)
}

/// Creates a person in `org_id`; returns the id.
pub async fn create_person(
    db: &Db,
    org_id: i64,
    mut p: NewPerson,
    actor_id: Option<i64>,
) -> AppResult<i64> {
    validate_new(&mut p)?;
    let hash = match p.password.take() {
        Some(pw) => Some(password::hash(pw).await?),
        None => None,
    };
    insert_person(db, org_id, &p, hash, actor_id).await
}

/// Inserts an already validated person with a precomputed password hash.
pub async fn insert_person(
    db: &Db,
    org_id: i64,
    p: &NewPerson,
    password_hash: Option<String>,
    actor_id: Option<i64>,
) -> AppResult<i64> {
    let mut roles = if p.roles.is_empty() {
        vec![Role::Staff]
    } else {
        p.roles.clone()
    };
    roles.sort();
    roles.dedup();
    let now = now_ms();
    let (ec_name, ec_phone) = split_contact(p.emergency_contact.as_ref());
    let result: Result<i64, sqlx::Error> = async {
        in_tx!(db, tx => {
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO users (org_id, email, name, phone, duty_station_id, emergency_contact_name, \
                 emergency_contact_phone, preferred_language, password_hash, is_system_admin, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11) RETURNING id")
                .bind(org_id).bind(&p.email).bind(&p.name).bind(&p.phone).bind(p.duty_station_id)
                .bind(ec_name).bind(ec_phone)
                .bind(p.preferred_language.as_deref().unwrap_or("en"))
                .bind(&password_hash).bind(p.system_admin).bind(now)
                .fetch_one(&mut *tx).await?;
            for role in &roles {
                sqlx::query("INSERT INTO user_roles (user_id, role, granted_by, granted_at) VALUES ($1, $2, $3, $4)")
                    .bind(id).bind(role.as_str()).bind(actor_id).bind(now).execute(&mut *tx).await?;
            }
            for d in &p.dependants {
                sqlx::query("INSERT INTO dependants (user_id, name, relationship, date_of_birth) VALUES ($1, $2, $3, $4)")
                    .bind(id).bind(d.name.trim()).bind(d.relationship.trim()).bind(&d.date_of_birth)
                    .execute(&mut *tx).await?;
            }
            let role_list = roles.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(",");
            crate::audit::record(&mut *tx, actor_id, Some(org_id), "user.create",
                &format!("user:{id}"), &format!("{} roles={role_list}", p.email)).await?;
            Ok(id)
        })
    }
    .await;
    result.map_err(|e| match &e {
        _ if is_unique_violation(&e) => {
            AppError::Conflict(format!("{} is already registered", p.email))
        }
        sqlx::Error::Database(d) if d.is_foreign_key_violation() => {
            AppError::invalid("duty_station_id", "no such duty station")
        }
        _ => e.into(),
    })
}

fn split_contact(c: Option<&EmergencyContact>) -> (Option<&str>, Option<&str>) {
    (c.map(|c| c.name.as_str()), c.map(|c| c.phone.as_str()))
}

#[derive(sqlx::FromRow)]
struct PersonRow {
    id: i64,
    org_id: i64,
    email: String,
    name: String,
    phone: Option<String>,
    duty_station_id: Option<i64>,
    emergency_contact_name: Option<String>,
    emergency_contact_phone: Option<String>,
    preferred_language: String,
    active: bool,
    is_system_admin: bool,
    location_mode: String,
    last_seen_at: Option<Timestamp>,
    created_at: Timestamp,
    updated_at: Timestamp,
}

#[derive(sqlx::FromRow)]
struct RoleRow {
    user_id: i64,
    role: String,
}

#[derive(sqlx::FromRow)]
struct DependantRow {
    id: i64,
    user_id: i64,
    name: String,
    relationship: String,
    date_of_birth: Option<String>,
}

const PERSON_COLUMNS: &str = "u.id, u.org_id, u.email, u.name, u.phone, u.duty_station_id, \
    u.emergency_contact_name, u.emergency_contact_phone, u.preferred_language, u.active, \
    u.is_system_admin, u.location_mode, u.last_seen_at, u.created_at, u.updated_at";

fn assemble(rows: Vec<PersonRow>, roles: Vec<RoleRow>, deps: Vec<DependantRow>) -> Vec<Person> {
    let mut roles_of: HashMap<i64, Vec<Role>> = HashMap::new();
    for r in roles {
        if let Some(role) = Role::parse(&r.role) {
            roles_of.entry(r.user_id).or_default().push(role);
        }
    }
    let mut deps_of: HashMap<i64, Vec<Dependant>> = HashMap::new();
    for d in deps {
        deps_of.entry(d.user_id).or_default().push(Dependant {
            id: Some(d.id),
            name: d.name,
            relationship: d.relationship,
            date_of_birth: d.date_of_birth,
        });
    }
    rows.into_iter()
        .map(|r| {
            let mut roles = roles_of.remove(&r.id).unwrap_or_default();
            roles.sort();
            Person {
                id: r.id,
                org_id: r.org_id,
                email: r.email,
                name: r.name,
                phone: r.phone,
                duty_station_id: r.duty_station_id,
                emergency_contact: match (r.emergency_contact_name, r.emergency_contact_phone) {
                    (Some(name), Some(phone)) => Some(EmergencyContact { name, phone }),
                    _ => None,
                },
                preferred_language: r.preferred_language,
                active: r.active,
                system_admin: r.is_system_admin,
                location_mode: r.location_mode,
                roles,
                dependants: deps_of.remove(&r.id).unwrap_or_default(),
                last_seen_at: r.last_seen_at,
                created_at: r.created_at,
                updated_at: r.updated_at,
            }
        })
        .collect()
}

/// One person's full profile, or 404.
pub async fn load_person(db: &Db, id: i64) -> AppResult<Person> {
    let (rows, roles, deps) = on_reader!(db, pool => {
        let rows: Vec<PersonRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {PERSON_COLUMNS} FROM users u WHERE u.id = $1")))
            .bind(id).fetch_all(pool).await?;
        let roles: Vec<RoleRow> = sqlx::query_as("SELECT user_id, role FROM user_roles WHERE user_id = $1")
            .bind(id).fetch_all(pool).await?;
        let deps: Vec<DependantRow> = sqlx::query_as(
            "SELECT id, user_id, name, relationship, date_of_birth FROM dependants WHERE user_id = $1 ORDER BY id")
            .bind(id).fetch_all(pool).await?;
        (rows, roles, deps)
    });
    assemble(rows, roles, deps)
        .pop()
        .ok_or_else(|| AppError::NotFound(format!("user {id} does not exist")))
}

/// Everyone in an organisation, by name.
pub async fn list_people(db: &Db, org_id: i64) -> AppResult<Vec<Person>> {
    let (rows, roles, deps) = on_reader!(db, pool => {
        let rows: Vec<PersonRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {PERSON_COLUMNS} FROM users u WHERE u.org_id = $1 ORDER BY u.name, u.id")))
            .bind(org_id).fetch_all(pool).await?;
        let roles: Vec<RoleRow> = sqlx::query_as(
            "SELECT r.user_id, r.role FROM user_roles r JOIN users u ON u.id = r.user_id WHERE u.org_id = $1")
            .bind(org_id).fetch_all(pool).await?;
        let deps: Vec<DependantRow> = sqlx::query_as(
            "SELECT d.id, d.user_id, d.name, d.relationship, d.date_of_birth FROM dependants d \
             JOIN users u ON u.id = d.user_id WHERE u.org_id = $1 ORDER BY d.id")
            .bind(org_id).fetch_all(pool).await?;
        (rows, roles, deps)
    });
    Ok(assemble(rows, roles, deps))
}

/// Applies a profile update, all fields validated first; deactivation ends the person's sessions.
pub async fn update_person(
    db: &Db,
    id: i64,
    u: &ProfileUpdate,
    actor_id: Option<i64>,
) -> AppResult<()> {
    let mut issues = Vec::new();
    if let Some(name) = &u.name
        && let Err(e) = validate_name(name)
    {
        issues.push(Issue::new("name", e));
    }
    let phone = match u.phone.as_deref().map(normalize_phone) {
        Some(Ok(p)) => Some(p),
        Some(Err(e)) => {
            issues.push(Issue::new("phone", e));
            None
        }
        None => None,
    };
    let mut contact = u.emergency_contact.clone();
    validate_contact(&mut contact, &mut issues);
    if let Some(lang) = &u.preferred_language
        && let Err(e) = validate_language(lang)
    {
        issues.push(Issue::new("preferred_language", e));
    }
    if let Some(deps) = &u.dependants {
        validate_dependants(deps, &mut issues);
    }
    AppError::check(issues)?;
    let (ec_name, ec_phone) = split_contact(contact.as_ref());
    let now = now_ms();
    let result: Result<(), UpdateError> = async {
        in_tx!(db, tx => {
            if u.active == Some(false) {
                // The organisation's lock first, as the roster import takes it, so the two never
                // wait on each other in opposite orders.
                let org: i64 = sqlx::query_scalar("SELECT org_id FROM users WHERE id = $1")
                    .bind(id).fetch_one(&mut *tx).await?;
                lock_organisation(&mut *tx, org).await?;
            }
            let org_id: i64 = sqlx::query_scalar(
                "UPDATE users SET name = COALESCE($1, name), phone = COALESCE($2, phone), \
                 duty_station_id = COALESCE($3, duty_station_id), \
                 emergency_contact_name = COALESCE($4, emergency_contact_name), \
                 emergency_contact_phone = COALESCE($5, emergency_contact_phone), \
                 preferred_language = COALESCE($6, preferred_language), active = COALESCE($7, active), \
                 updated_at = $8 WHERE id = $9 RETURNING org_id")
                .bind(u.name.as_deref().map(str::trim)).bind(&phone).bind(u.duty_station_id)
                .bind(ec_name).bind(ec_phone).bind(&u.preferred_language).bind(u.active)
                .bind(now).bind(id).fetch_one(&mut *tx).await?;
            if let Some(deps) = &u.dependants {
                sqlx::query("DELETE FROM dependants WHERE user_id = $1").bind(id).execute(&mut *tx).await?;
                for d in deps {
                    sqlx::query("INSERT INTO dependants (user_id, name, relationship, date_of_birth) VALUES ($1, $2, $3, $4)")
                        .bind(id).bind(d.name.trim()).bind(d.relationship.trim()).bind(&d.date_of_birth)
                        .execute(&mut *tx).await?;
                }
            }
            if u.active == Some(false) {
                let is_admin: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM user_roles WHERE user_id = $1 AND role = 'org_admin'")
                    .bind(id).fetch_one(&mut *tx).await?;
                if is_admin > 0 && active_org_admins(&mut *tx, org_id).await? == 0 {
                    // Dropping the transaction rolls the deactivation back.
                    return Err(LastAdmin.into());
                }
                sqlx::query("UPDATE sessions SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL")
                    .bind(now).bind(id).execute(&mut *tx).await?;
            }
            if let Some(active) = u.active {
                let action = if active { "user.activate" } else { "user.deactivate" };
                crate::audit::record(&mut *tx, actor_id, Some(org_id), action, &format!("user:{id}"), "").await?;
            }
            Ok(())
        })
    }
    .await;
    result.map_err(|e| match e {
        UpdateError::LastAdmin => AppError::Conflict(
            "this is the organisation's last active org admin; make someone else org admin first"
                .into(),
        ),
        UpdateError::Db(sqlx::Error::RowNotFound) => {
            AppError::NotFound(format!("user {id} does not exist"))
        }
        UpdateError::Db(sqlx::Error::Database(d)) if d.is_foreign_key_violation() => {
            AppError::invalid("duty_station_id", "no such duty station")
        }
        UpdateError::Db(e) => e.into(),
    })
}

/// A profile update's failure inside its transaction.
enum UpdateError {
    LastAdmin,
    Db(sqlx::Error),
}

struct LastAdmin;

impl From<LastAdmin> for UpdateError {
    fn from(_: LastAdmin) -> Self {
        UpdateError::LastAdmin
    }
}

impl From<sqlx::Error> for UpdateError {
    fn from(e: sqlx::Error) -> Self {
        UpdateError::Db(e)
    }
}

/// Takes the organisation's row lock for the rest of the transaction. Changes that could leave
/// an organisation without an org admin take it first, so two admins revoking each other at
/// the same moment are serialised (PostgreSQL; SQLite has a single writer anyway).
pub async fn lock_organisation<'c, E, DB>(exec: E, org_id: i64) -> Result<(), sqlx::Error>
where
    E: sqlx::Executor<'c, Database = DB>,
    DB: sqlx::Database,
    <DB as sqlx::Database>::Arguments: sqlx::IntoArguments<DB>,
    for<'q> i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    sqlx::query("UPDATE organisations SET id = id WHERE id = $1")
        .bind(org_id)
        .execute(exec)
        .await?;
    Ok(())
}

/// Active members holding `org_admin` in the organisation.
pub async fn active_org_admins<'c, E, DB>(exec: E, org_id: i64) -> Result<i64, sqlx::Error>
where
    E: sqlx::Executor<'c, Database = DB>,
    DB: sqlx::Database,
    <DB as sqlx::Database>::Arguments: sqlx::IntoArguments<DB>,
    for<'q> i64: sqlx::Encode<'q, DB> + sqlx::Type<DB> + sqlx::Decode<'q, DB>,
    for<'r> (i64,): sqlx::FromRow<'r, DB::Row>,
{
    sqlx::query_scalar(
        "SELECT COUNT(*) FROM user_roles r JOIN users u ON u.id = r.user_id \
         WHERE u.org_id = $1 AND r.role = 'org_admin' AND u.active",
    )
    .bind(org_id)
    .fetch_one(exec)
    .await
}

/// Sets a password and ends the person's other sessions.
pub async fn set_password(
    db: &Db,
    id: i64,
    new_password: String,
    keep_session: Option<&str>,
) -> AppResult<()> {
    let hash = password::hash(new_password).await?;
    in_tx!(db, tx => {
        sqlx::query("UPDATE users SET password_hash = $1, failed_logins = 0, locked_until = NULL, updated_at = $2 WHERE id = $3")
            .bind(&hash).bind(now_ms()).bind(id).execute(&mut *tx).await?;
        // A new password set by an administrator also lifts a login lock.
        sqlx::query("DELETE FROM login_attempts WHERE email = (SELECT email FROM users WHERE id = $1)")
            .bind(id).execute(&mut *tx).await?;
        sqlx::query("UPDATE sessions SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL AND id <> $3")
            .bind(now_ms()).bind(id).bind(keep_session.unwrap_or("")).execute(&mut *tx).await?;
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_phones_and_languages_are_checked() {
        assert_eq!(
            normalize_email(" Amina@WFP.org ").as_deref(),
            Ok("amina@wfp.org")
        );
        assert!(normalize_email("amina").is_err());
        assert!(normalize_email("a b@x.org").is_err());
        assert_eq!(
            normalize_phone("+254 700-123 456").as_deref(),
            Ok("+254700123456")
        );
        assert!(normalize_phone("0700123456").is_err());
        assert!(validate_language("fr").is_ok());
        assert!(validate_language("pt-BR").is_ok());
        assert!(validate_language("French").is_err());
    }
}
