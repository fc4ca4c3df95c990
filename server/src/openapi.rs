//! The OpenAPI 3.1 document, generated from the handlers' annotations, and the `/api/v1` tree.

use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use utoipa::openapi::OpenApi as Document;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;

use crate::AppState;
use crate::error::Problem;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Vigil API",
        description = "Location and emergency communications for staff in dangerous places. \
                       Every error is application/problem+json (RFC 9457)."
    ),
    modifiers(&BearerAuth),
    components(schemas(Problem))
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, doc: &mut Document) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// Every `/api/v1` route, with its OpenAPI description.
pub fn api_router(state: &AppState) -> OpenApiRouter<AppState> {
    let v1 = OpenApiRouter::new()
        .nest("/auth", crate::auth::routes())
        .merge(crate::orgs::routes())
        .merge(crate::users::routes())
        .merge(crate::users::roster::routes(
            state.settings.roster_max_bytes,
        ))
        .merge(crate::audit::routes())
        .merge(crate::duty_stations::routes())
        .merge(crate::areas::routes())
        .merge(crate::positions::routes())
        .merge(crate::assets::routes())
        .merge(crate::ingest::routes())
        .merge(crate::ws::routes())
        .merge(crate::alerts::routes())
        .merge(crate::chat::routes())
        .merge(crate::sos::routes())
        .merge(crate::rollcall::routes())
        .merge(crate::push::routes());
    OpenApiRouter::with_openapi(ApiDoc::openapi()).nest("/api/v1", v1)
}

/// Adds the answers every route of a kind can give, where its annotation leaves them out: the
/// extractors answer them before the handler runs, so each handler restating them drifts.
/// A malformed body is 400 and a body of the wrong shape 422; a path or query parameter that
/// does not parse is 400; a missing or invalid token is 401. 403 stays with each handler,
/// which alone knows whether it refuses anyone (the policy matrix test holds them to it).
pub fn complete(doc: &mut Document) {
    use utoipa::openapi::path::{Operation, ParameterIn};
    use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};

    fn problem(description: &str) -> RefOr<utoipa::openapi::Response> {
        RefOr::T(
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/problem+json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("Problem")))
                        .build(),
                )
                .build(),
        )
    }
    fn add(op: &mut Operation, status: &str, description: &str) {
        op.responses
            .responses
            .entry(status.to_string())
            .or_insert_with(|| problem(description));
    }
    for item in doc.paths.paths.values_mut() {
        let shared_params = item.parameters.clone().unwrap_or_default();
        for op in [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ]
        .into_iter()
        .flatten()
        {
            let has_params = shared_params
                .iter()
                .chain(op.parameters.iter().flatten())
                .any(|p| {
                    matches!(p, RefOr::T(p) if matches!(p.parameter_in, ParameterIn::Path | ParameterIn::Query))
                });
            if op.request_body.is_some() {
                add(op, "400", "the body is not well-formed");
                add(
                    op,
                    "422",
                    "a field is missing or invalid (`issues` names each)",
                );
            }
            if has_params {
                add(op, "400", "a path or query parameter does not parse");
            }
            if op.security.as_ref().is_some_and(|s| !s.is_empty()) {
                add(op, "401", "no valid access token");
            }
        }
    }
}

/// `GET /api/openapi.json`.
pub fn routes(doc: Arc<Document>) -> Router<AppState> {
    Router::new().route(
        "/api/openapi.json",
        get(move || {
            let doc = doc.clone();
            async move { axum::Json(doc.as_ref().clone()) }
        }),
    )
}
