//! Liveness, readiness and metrics, for load balancers and Prometheus.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;

use crate::AppState;
use crate::error::problem_response;

/// `/healthz`, `/readyz` and `/metrics`.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(crate::metrics::export))
}

async fn ready(State(state): State<AppState>) -> axum::response::Response {
    use axum::response::IntoResponse;
    if state.shutdown.is_cancelled() {
        return problem_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "the server is shutting down".into(),
            vec![],
        );
    }
    if state.db.ping().await {
        match state.cluster.readiness() {
            Ok(None) => "ready".into_response(),
            Ok(Some(note)) => format!("ready ({note})").into_response(),
            Err(why) => problem_response(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("this cluster node is not ready: {why}"),
                vec![],
            ),
        }
    } else {
        problem_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "the database does not answer".into(),
            vec![],
        )
    }
}
