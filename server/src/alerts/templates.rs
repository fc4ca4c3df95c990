//! Reusable alert templates: an organisation's advisers prepare the wording (in every language)
//! and the CAP fields of the alerts they expect to send, and start from them in a crisis.

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AlertInput;
use crate::db::{Db, Timestamp, now_ms};
use crate::error::{AppError, AppResult, Issue, Json, Path};
use crate::policy::{Action, Actor, authorize};
use crate::{AppState, in_tx, on_reader};

/// A stored template.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Template {
    /// Id.
    pub id: i64,
    /// The organisation it belongs to.
    pub org_id: i64,
    /// Name shown in the composer, unique in the organisation.
    pub name: String,
    /// The alert fields it fills in (any of `POST /alerts`'s, but `template_id`).
    pub content: AlertInput,
    /// Last change.
    pub updated_at: Timestamp,
}

/// Body of `POST /alert-templates` and `PUT /alert-templates/{id}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TemplateInput {
    /// Name, 1 to 200 characters.
    pub name: String,
    /// The alert fields to fill in.
    pub content: AlertInput,
}

#[derive(sqlx::FromRow)]
struct Row {
    id: i64,
    org_id: i64,
    name: String,
    content: String,
    updated_at: i64,
}

impl TryFrom<Row> for Template {
    type Error = AppError;

    fn try_from(r: Row) -> Result<Self, AppError> {
        Ok(Template {
            content: serde_json::from_str(&r.content).map_err(|e| {
                AppError::Internal(anyhow::anyhow!(
                    "template {}: stored content unreadable: {e}",
                    r.id
                ))
            })?,
            id: r.id,
            org_id: r.org_id,
            name: r.name,
            updated_at: Timestamp(r.updated_at),
        })
    }
}

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(replace, remove))
}

/// One template, or 404.
pub(super) async fn load(db: &Db, id: i64) -> AppResult<Template> {
    let row: Option<Row> = on_reader!(db, pool => sqlx::query_as(
        "SELECT id, org_id, name, content, updated_at FROM alert_templates WHERE id = $1")
        .bind(id).fetch_optional(pool).await?);
    row.ok_or_else(|| AppError::NotFound(format!("template {id} does not exist")))?
        .try_into()
}

fn checked(input: TemplateInput) -> AppResult<(String, String)> {
    let mut issues = Vec::new();
    let name = input.name.trim().to_string();
    if name.is_empty() || name.chars().count() > 200 {
        issues.push(Issue::new("name", "required, 1 to 200 characters"));
    }
    if input.content.template_id.is_some() {
        issues.push(Issue::new(
            "content/template_id",
            "a template cannot start from another",
        ));
    }
    if let Some(target) = &input.content.target {
        let mut found = Vec::new();
        super::target::check_form(target, &mut found);
        issues.extend(
            found
                .into_iter()
                .map(|i| Issue::new(format!("content/{}", i.at), i.reason)),
        );
    }
    AppError::check(issues)?;
    let content =
        serde_json::to_string(&input.content).map_err(|e| AppError::Internal(e.into()))?;
    Ok((name, content))
}

fn name_taken(e: sqlx::Error, name: &str) -> AppError {
    match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => {
            AppError::Conflict(format!("a template named {name:?} already exists"))
        }
        _ => AppError::from(e),
    }
}

/// The caller's organisation's templates, by name.
#[utoipa::path(get, path = "/alert-templates", tag = "alerts", security(("bearer" = [])),
    responses((status = 200, body = [Template]), (status = 403, description = "not an operator, adviser or org admin")))]
async fn list(State(state): State<AppState>, actor: Actor) -> AppResult<Json<Vec<Template>>> {
    authorize(
        &actor,
        Action::ViewAlerts {
            org_id: Some(actor.org_id),
        },
    )?;
    let rows: Vec<Row> = on_reader!(&state.db, pool => sqlx::query_as(
        "SELECT id, org_id, name, content, updated_at FROM alert_templates WHERE org_id = $1 ORDER BY name")
        .bind(actor.org_id).fetch_all(pool).await?);
    Ok(Json(
        rows.into_iter()
            .map(Template::try_from)
            .collect::<AppResult<_>>()?,
    ))
}

/// Save a template for the caller's organisation.
#[utoipa::path(post, path = "/alert-templates", tag = "alerts", security(("bearer" = [])), request_body = TemplateInput,
    responses((status = 201, body = Template), (status = 403, description = "not an adviser"),
              (status = 409, description = "name taken"), (status = 422, description = "invalid field")))]
async fn create(
    State(state): State<AppState>,
    actor: Actor,
    Json(input): Json<TemplateInput>,
) -> AppResult<(StatusCode, Json<Template>)> {
    let org_id = actor.org_id;
    authorize(&actor, Action::ManageAlertTemplates { org_id })?;
    let (name, content) = checked(input)?;
    let now = now_ms();
    let id: i64 = async {
        in_tx!(&state.db, tx => {
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO alert_templates (org_id, name, content, created_by, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $5) RETURNING id")
                .bind(org_id).bind(&name).bind(&content).bind(actor.user_id).bind(now)
                .fetch_one(&mut *tx).await?;
            crate::audit::record(&mut *tx, Some(actor.user_id), Some(org_id), "alert_template.create",
                &format!("alert_template:{id}"), &name).await?;
            Ok::<i64, sqlx::Error>(id)
        })
    }
    .await
    .map_err(|e| name_taken(e, &name))?;
    Ok((StatusCode::CREATED, Json(load(&state.db, id).await?)))
}

/// Replace a template.
#[utoipa::path(put, path = "/alert-templates/{id}", tag = "alerts", security(("bearer" = [])), params(("id" = i64, Path)),
    request_body = TemplateInput,
    responses((status = 200, body = Template), (status = 403, description = "not an adviser of the template's organisation"),
              (status = 404, description = "no such template"), (status = 409, description = "name taken"), (status = 422, description = "invalid field")))]
async fn replace(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
    Json(input): Json<TemplateInput>,
) -> AppResult<Json<Template>> {
    let current = load(&state.db, id).await?;
    authorize(
        &actor,
        Action::ManageAlertTemplates {
            org_id: current.org_id,
        },
    )?;
    let (name, content) = checked(input)?;
    async {
        in_tx!(&state.db, tx => {
            sqlx::query("UPDATE alert_templates SET name = $2, content = $3, updated_at = $4 WHERE id = $1")
                .bind(id).bind(&name).bind(&content).bind(now_ms()).execute(&mut *tx).await?;
            crate::audit::record(&mut *tx, Some(actor.user_id), Some(current.org_id), "alert_template.update",
                &format!("alert_template:{id}"), &name).await?;
            Ok::<(), sqlx::Error>(())
        })
    }
    .await
    .map_err(|e| name_taken(e, &name))?;
    Ok(Json(load(&state.db, id).await?))
}

/// Delete a template.
#[utoipa::path(delete, path = "/alert-templates/{id}", tag = "alerts", security(("bearer" = [])), params(("id" = i64, Path)),
    responses((status = 204, description = "deleted"), (status = 403, description = "not an adviser of the template's organisation"),
              (status = 404, description = "no such template")))]
async fn remove(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
) -> AppResult<StatusCode> {
    let current = load(&state.db, id).await?;
    authorize(
        &actor,
        Action::ManageAlertTemplates {
            org_id: current.org_id,
        },
    )?;
    in_tx!(&state.db, tx => {
        sqlx::query("DELETE FROM alert_templates WHERE id = $1").bind(id).execute(&mut *tx).await?;
        crate::audit::record(&mut *tx, Some(actor.user_id), Some(current.org_id), "alert_template.delete",
            &format!("alert_template:{id}"), &current.name).await?;
    });
    Ok(StatusCode::NO_CONTENT)
}
