//! Personnel: profiles, dependants, roles, passwords; roster import and reports live beside.

pub mod reports;
pub mod roster;
pub mod store;

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::password;
use crate::db::Timestamp;
use crate::error::{AppError, AppResult, Json, Path, Query};
use crate::policy::{Action, Actor, Role, authorize};
use crate::{AppState, in_tx, on_reader};

pub use store::{NewPerson, create_person};

/// A person's profile as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Person {
    /// Id.
    pub id: i64,
    /// Organisation the person belongs to.
    pub org_id: i64,
    /// Email, lower-case; also the login name.
    pub email: String,
    /// Full name.
    pub name: String,
    /// Mobile number in E.164 form, for SMS fallback.
    pub phone: Option<String>,
    /// Duty station.
    pub duty_station_id: Option<i64>,
    /// Who to call if something happens to this person.
    pub emergency_contact: Option<EmergencyContact>,
    /// Language for alerts and the app (BCP 47, e.g. `en`, `fr`, `ar`).
    pub preferred_language: String,
    /// False once deactivated; a deactivated person cannot log in.
    pub active: bool,
    /// Operates the whole deployment.
    pub system_admin: bool,
    /// `tracking` or `location_less`.
    pub location_mode: String,
    /// Roles within the organisation.
    pub roles: Vec<Role>,
    /// Eligible dependants, accounted for in roll-calls.
    pub dependants: Vec<Dependant>,
    /// Last login or token refresh.
    pub last_seen_at: Option<Timestamp>,
    /// When the profile was created.
    pub created_at: Timestamp,
    /// When the profile last changed.
    pub updated_at: Timestamp,
}

/// An emergency contact.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct EmergencyContact {
    /// Name.
    pub name: String,
    /// Phone number.
    pub phone: String,
}

/// An eligible dependant of a staff member.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct Dependant {
    /// Id, assigned by the server (roll-call answers name it); ignored on input.
    #[serde(default)]
    pub id: Option<i64>,
    /// Name.
    pub name: String,
    /// E.g. `spouse`, `child`.
    pub relationship: String,
    /// ISO 8601 date, if known.
    pub date_of_birth: Option<String>,
}

/// Fields a person may change on their own profile.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OwnProfileUpdate {
    /// New phone number.
    pub phone: Option<String>,
    /// New emergency contact.
    pub emergency_contact: Option<EmergencyContact>,
    /// New preferred language.
    pub preferred_language: Option<String>,
    /// Replaces the list of dependants.
    pub dependants: Option<Vec<Dependant>>,
}

/// Fields an org admin may change on a member's profile.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProfileUpdate {
    /// New full name.
    pub name: Option<String>,
    /// New phone number.
    pub phone: Option<String>,
    /// New duty station.
    pub duty_station_id: Option<i64>,
    /// New emergency contact.
    pub emergency_contact: Option<EmergencyContact>,
    /// New preferred language.
    pub preferred_language: Option<String>,
    /// Replaces the list of dependants.
    pub dependants: Option<Vec<Dependant>>,
    /// Activate or deactivate; deactivating ends every session of the person.
    pub active: Option<bool>,
}

/// Body of `PUT /me/password`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct PasswordChange {
    /// The password now in use.
    pub current_password: String,
    /// The new password (at least 10 characters).
    pub new_password: String,
}

/// Body of `PUT /users/{id}/password`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct PasswordSet {
    /// The new password (at least 10 characters).
    pub password: String,
}

/// Filters for listing personnel.
#[derive(Debug, Deserialize, IntoParams)]
pub struct PersonnelQuery {
    /// Only people holding this role.
    pub role: Option<Role>,
    /// Only active (true) or deactivated (false) people.
    pub active: Option<bool>,
}

/// Routes for profiles, roles and passwords.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(me, update_me))
        .routes(routes!(change_my_password))
        .routes(routes!(list_personnel, create))
        .routes(routes!(get_person, update_person))
        .routes(routes!(set_password))
        .routes(routes!(grant_role, revoke_role))
        .merge(reports::routes())
}

/// The caller's own profile.
#[utoipa::path(get, path = "/me", tag = "people", security(("bearer" = [])),
    responses((status = 200, body = Person)))]
async fn me(State(state): State<AppState>, actor: Actor) -> AppResult<Json<Person>> {
    Ok(Json(store::load_person(&state.db, actor.user_id).await?))
}

/// Change the caller's contact details, language and dependants.
#[utoipa::path(patch, path = "/me", tag = "people", security(("bearer" = [])),
    request_body = OwnProfileUpdate, responses((status = 200, body = Person), (status = 422, description = "invalid field")))]
async fn update_me(
    State(state): State<AppState>,
    actor: Actor,
    Json(update): Json<OwnProfileUpdate>,
) -> AppResult<Json<Person>> {
    let update = ProfileUpdate {
        phone: update.phone,
        emergency_contact: update.emergency_contact,
        preferred_language: update.preferred_language,
        dependants: update.dependants,
        ..ProfileUpdate::default()
    };
    store::update_person(&state.db, actor.user_id, &update, Some(actor.user_id)).await?;
    Ok(Json(store::load_person(&state.db, actor.user_id).await?))
}

/// Change the caller's password; other sessions end.
#[utoipa::path(put, path = "/me/password", tag = "people", security(("bearer" = [])),
    request_body = PasswordChange, responses((status = 204), (status = 403, description = "current password wrong")))]
async fn change_my_password(
    State(state): State<AppState>,
    session: crate::auth::Session,
    Json(change): Json<PasswordChange>,
) -> AppResult<StatusCode> {
    password::validate(&change.new_password)?;
    let stored: Option<String> = on_reader!(&state.db, pool => sqlx::query_scalar(
        "SELECT password_hash FROM users WHERE id = $1")
        .bind(session.user_id).fetch_one(pool).await?);
    if !password::verify(stored, change.current_password).await {
        return Err(AppError::Forbidden("the current password is wrong".into()));
    }
    store::set_password(
        &state.db,
        session.user_id,
        change.new_password,
        Some(&session.id),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The organisation's personnel.
#[utoipa::path(get, path = "/organisations/{id}/users", tag = "people", security(("bearer" = [])),
    params(("id" = i64, Path), PersonnelQuery),
    responses((status = 200, body = [Person]), (status = 403, description = "not allowed to list this organisation")))]
async fn list_personnel(
    State(state): State<AppState>,
    actor: Actor,
    Path(org_id): Path<i64>,
    Query(q): Query<PersonnelQuery>,
) -> AppResult<Json<Vec<Person>>> {
    authorize(&actor, Action::ListPersonnel { org_id })?;
    let people = store::list_people(&state.db, org_id).await?;
    Ok(Json(
        people
            .into_iter()
            .filter(|p| q.role.is_none_or(|r| p.roles.contains(&r)))
            .filter(|p| q.active.is_none_or(|a| p.active == a))
            .collect(),
    ))
}

/// Add a person to the organisation.
#[utoipa::path(post, path = "/organisations/{id}/users", tag = "people", security(("bearer" = [])),
    params(("id" = i64, Path)), request_body = NewPerson,
    responses((status = 201, body = Person), (status = 403, description = "not allowed to manage this organisation's people"),
              (status = 409, description = "email in use"), (status = 422, description = "invalid field")))]
async fn create(
    State(state): State<AppState>,
    actor: Actor,
    Path(org_id): Path<i64>,
    Json(new): Json<NewPerson>,
) -> AppResult<(StatusCode, Json<Person>)> {
    authorize(&actor, Action::ManagePersonnel { org_id })?;
    for role in &new.roles {
        authorize(
            &actor,
            Action::AssignRole {
                org_id,
                role: *role,
            },
        )?;
    }
    if new.system_admin && !actor.system_admin {
        return Err(AppError::Forbidden(
            "only a system admin creates system admins".into(),
        ));
    }
    let id = create_person(&state.db, org_id, new, Some(actor.user_id)).await?;
    Ok((
        StatusCode::CREATED,
        Json(store::load_person(&state.db, id).await?),
    ))
}

/// Looks up a person's organisation, or 404.
async fn org_of(state: &AppState, user_id: i64) -> AppResult<i64> {
    let org: Option<i64> = on_reader!(&state.db, pool => sqlx::query_scalar(
        "SELECT org_id FROM users WHERE id = $1")
        .bind(user_id).fetch_optional(pool).await?);
    org.ok_or_else(|| AppError::NotFound(format!("user {user_id} does not exist")))
}

/// The organisation of a person and whether their account reaches beyond it (system admin or
/// oversight), or 404.
async fn account_of(state: &AppState, user_id: i64) -> AppResult<Action> {
    let row: Option<(i64, bool, i64)> = on_reader!(&state.db, pool => sqlx::query_as(
        "SELECT u.org_id, u.is_system_admin, \
         (SELECT COUNT(*) FROM user_roles r WHERE r.user_id = u.id AND r.role = 'oversight') \
         FROM users u WHERE u.id = $1")
        .bind(user_id).fetch_optional(pool).await?);
    let (org_id, system_admin, oversight) =
        row.ok_or_else(|| AppError::NotFound(format!("user {user_id} does not exist")))?;
    Ok(Action::ManageAccount {
        org_id,
        privileged: system_admin || oversight > 0,
    })
}

/// One person's profile.
#[utoipa::path(get, path = "/users/{id}", tag = "people", security(("bearer" = [])),
    params(("id" = i64, Path)),
    responses((status = 200, body = Person), (status = 403, description = "not allowed"), (status = 404, description = "no such user")))]
async fn get_person(
    State(state): State<AppState>,
    actor: Actor,
    Path(user_id): Path<i64>,
) -> AppResult<Json<Person>> {
    let org_id = org_of(&state, user_id).await?;
    authorize(&actor, Action::ViewPerson { org_id, user_id })?;
    Ok(Json(store::load_person(&state.db, user_id).await?))
}

/// Change a member's profile or (de)activate them.
#[utoipa::path(patch, path = "/users/{id}", tag = "people", security(("bearer" = [])),
    params(("id" = i64, Path)), request_body = ProfileUpdate,
    responses((status = 200, body = Person), (status = 403, description = "not an org admin of this person's organisation")))]
async fn update_person(
    State(state): State<AppState>,
    actor: Actor,
    Path(user_id): Path<i64>,
    Json(update): Json<ProfileUpdate>,
) -> AppResult<Json<Person>> {
    authorize(&actor, account_of(&state, user_id).await?)?;
    if update.active == Some(false) && user_id == actor.user_id {
        return Err(AppError::Conflict("you cannot deactivate yourself".into()));
    }
    store::update_person(&state.db, user_id, &update, Some(actor.user_id)).await?;
    // A deactivation revoked the sessions: their sockets close now.
    state.hub.recheck(user_id);
    Ok(Json(store::load_person(&state.db, user_id).await?))
}

/// Set a member's password (e.g. the first one); their sessions end.
#[utoipa::path(put, path = "/users/{id}/password", tag = "people", security(("bearer" = [])),
    params(("id" = i64, Path)), request_body = PasswordSet,
    responses((status = 204), (status = 403, description = "not an org admin of this person's organisation")))]
async fn set_password(
    State(state): State<AppState>,
    actor: Actor,
    Path(user_id): Path<i64>,
    Json(body): Json<PasswordSet>,
) -> AppResult<StatusCode> {
    authorize(&actor, account_of(&state, user_id).await?)?;
    password::validate(&body.password)?;
    store::set_password(&state.db, user_id, body.password, None).await?;
    state.hub.recheck(user_id);
    Ok(StatusCode::NO_CONTENT)
}

/// Grant a role to a member of the caller's organisation.
#[utoipa::path(put, path = "/users/{id}/roles/{role}", tag = "people", security(("bearer" = [])),
    params(("id" = i64, Path), ("role" = Role, Path)),
    responses((status = 200, body = Person), (status = 403, description = "not allowed to grant this role here")))]
async fn grant_role(
    State(state): State<AppState>,
    actor: Actor,
    Path((user_id, role)): Path<(i64, Role)>,
) -> AppResult<Json<Person>> {
    let org_id = org_of(&state, user_id).await?;
    authorize(&actor, Action::AssignRole { org_id, role })?;
    in_tx!(&state.db, tx => {
        let added = sqlx::query(
            "INSERT INTO user_roles (user_id, role, granted_by, granted_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (user_id, role) DO NOTHING")
            .bind(user_id).bind(role.as_str()).bind(actor.user_id).bind(crate::db::now_ms())
            .execute(&mut *tx).await?;
        if added.rows_affected() == 1 {
            crate::audit::record(&mut *tx, Some(actor.user_id), Some(org_id), "role.grant",
                &format!("user:{user_id}"), role.as_str()).await?;
        }
    });
    Ok(Json(store::load_person(&state.db, user_id).await?))
}

/// Revoke a role from a member of the caller's organisation; takes effect on their next request.
#[utoipa::path(delete, path = "/users/{id}/roles/{role}", tag = "people", security(("bearer" = [])),
    params(("id" = i64, Path), ("role" = Role, Path)),
    responses((status = 200, body = Person), (status = 403, description = "not allowed to revoke this role here"),
              (status = 409, description = "would leave the organisation without an org admin")))]
async fn revoke_role(
    State(state): State<AppState>,
    actor: Actor,
    Path((user_id, role)): Path<(i64, Role)>,
) -> AppResult<Json<Person>> {
    let org_id = org_of(&state, user_id).await?;
    authorize(&actor, Action::AssignRole { org_id, role })?;
    let outcome: Result<(), AppError> = async {
        in_tx!(&state.db, tx => {
            store::lock_organisation(&mut *tx, org_id).await?;
            let removed = sqlx::query("DELETE FROM user_roles WHERE user_id = $1 AND role = $2")
                .bind(user_id).bind(role.as_str()).execute(&mut *tx).await?;
            if removed.rows_affected() == 0 {
                return Ok(());
            }
            if role == Role::OrgAdmin && store::active_org_admins(&mut *tx, org_id).await? == 0 {
                // Dropping the transaction rolls the removal back.
                return Err(AppError::Conflict(
                    "this is the organisation's last org admin; grant the role to someone else first".into()));
            }
            crate::audit::record(&mut *tx, Some(actor.user_id), Some(org_id), "role.revoke",
                &format!("user:{user_id}"), role.as_str()).await?;
            Ok(())
        })
    }
    .await;
    outcome?;
    // Feeds the role allowed close now on every open socket of the person.
    state.hub.recheck(user_id);
    Ok(Json(store::load_person(&state.db, user_id).await?))
}
