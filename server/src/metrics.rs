//! Prometheus metrics, owned by the server state (no global registry, so several servers can run
//! in one test process).

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
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
    /// This node's WebSocket sessions and its traffic with the rest of a cluster.
    pub cluster: ClusterMetrics,
}

/// Per-node figures of a cluster (zero on a single node, but for `sessions`).
#[derive(Debug, Default, Clone)]
pub struct ClusterMetrics {
    /// WebSocket sessions open on this node.
    pub sessions: Gauge,
    /// Hints (deliveries, revocations, wake-ups) this node sent to the others.
    pub hints_sent: Counter,
    /// Hints this node received from the others.
    pub hints_received: Counter,
    /// Hints not sent because the queue to NATS was full (the others converge from storage).
    pub hints_dropped: Counter,
    /// Tracker changes (fixes, mode switches, areas) this node published.
    pub track_published: Counter,
    /// Tracker changes from other nodes applied here.
    pub track_applied: Counter,
    /// Tracker changes still to apply, as the stream last said (the catch-up lag).
    pub track_lag: Gauge,
    /// 1 while connected to NATS.
    pub nats_connected: Gauge,
    /// 1 once the tracker has caught up with the stream (the node is ready).
    pub caught_up: Gauge,
    /// Times a connection found messages in storage that no hint had brought.
    pub caught_up_from_storage: Counter,
}

impl ClusterMetrics {
    fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("cluster");
        r.register(
            "sessions",
            "WebSocket sessions open on this node",
            self.sessions.clone(),
        );
        r.register(
            "hints_sent",
            "Hints sent to other nodes",
            self.hints_sent.clone(),
        );
        r.register(
            "hints_received",
            "Hints received from other nodes",
            self.hints_received.clone(),
        );
        r.register(
            "hints_dropped",
            "Hints dropped because the queue to NATS was full",
            self.hints_dropped.clone(),
        );
        r.register(
            "track_published",
            "Tracker changes published to the cluster",
            self.track_published.clone(),
        );
        r.register(
            "track_applied",
            "Tracker changes of other nodes applied here",
            self.track_applied.clone(),
        );
        r.register(
            "track_lag",
            "Tracker changes still to apply (catch-up lag)",
            self.track_lag.clone(),
        );
        r.register(
            "nats_connected",
            "1 while connected to NATS",
            self.nats_connected.clone(),
        );
        r.register(
            "caught_up",
            "1 once the tracker has caught up with the cluster",
            self.caught_up.clone(),
        );
        r.register(
            "caught_up_from_storage",
            "Connections that found in storage messages no hint had brought",
            self.caught_up_from_storage.clone(),
        );
    }
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
        let cluster = ClusterMetrics::default();
        cluster.register(&mut registry);
        Self {
            registry,
            http_requests,
            http_duration,
            logins,
            alerts_sent,
            alert_fallbacks,
            cluster,
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
    let sessions = state.hub.connection_count();
    state
        .metrics
        .cluster
        .sessions
        .set(i64::try_from(sessions).unwrap_or(i64::MAX));
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
}
