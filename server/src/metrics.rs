//! Prometheus metrics, owned by the server state (no global registry, so several servers can run
//! in one test process).

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::AppState;

/// Labels of an HTTP request metric.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    /// HTTP method.
    pub method: String,
    /// The route template (never the raw path, which would explode the label set).
    pub route: String,
    /// Response status code.
    pub status: u16,
}

/// Labels of a login attempt.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LoginLabels {
    /// `success`, `failure` or `locked`.
    pub outcome: &'static str,
}

type HistogramFamily = Family<HttpLabels, Histogram, fn() -> Histogram>;

/// Every metric the server exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Requests served.
    pub http_requests: Family<HttpLabels, Counter>,
    /// Time to produce a response.
    pub http_duration: HistogramFamily,
    /// Login attempts by outcome.
    pub logins: Family<LoginLabels, Counter>,
    /// Alerts sent (adviser-composed and imported).
    pub alerts_sent: Counter,
    /// Copies of alerts handed to a fallback channel, by channel and outcome.
    pub alert_fallbacks: Family<FallbackLabels, Counter>,
}

/// Labels of [`Metrics::alert_fallbacks`].
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FallbackLabels {
    /// `push` or `sms`.
    pub channel: &'static str,
    /// `sent`, `failed` or `skipped`.
    pub outcome: &'static str,
}

fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("vigil");
        let http_requests = Family::<HttpLabels, Counter>::default();
        let http_duration: HistogramFamily = Family::new_with_constructor(latency_histogram);
        let logins = Family::<LoginLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests served",
            http_requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time to produce an HTTP response",
            http_duration.clone(),
        );
        registry.register("logins", "Login attempts by outcome", logins.clone());
        let alerts_sent = Counter::default();
        registry.register("alerts_sent", "Alerts sent", alerts_sent.clone());
        let alert_fallbacks = Family::<FallbackLabels, Counter>::default();
        registry.register(
            "alert_fallbacks",
            "Alert copies handed to web push or SMS, by outcome",
            alert_fallbacks.clone(),
        );
        Self {
            registry,
            http_requests,
            http_duration,
            logins,
            alerts_sent,
            alert_fallbacks,
        }
    }
}

impl Metrics {
    /// The registry in Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "encoding metrics");
        }
        out
    }
}

/// Counts and times every request under its route template.
pub async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let method = req.method().to_string();
    let started = Instant::now();
    let res = next.run(req).await;
    let labels = HttpLabels {
        method,
        route,
        status: res.status().as_u16(),
    };
    state.metrics.http_requests.get_or_create(&labels).inc();
    state
        .metrics
        .http_duration
        .get_or_create(&labels)
        .observe(started.elapsed().as_secs_f64());
    res
}

/// `GET /metrics`.
pub async fn export(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
}
