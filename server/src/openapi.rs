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
