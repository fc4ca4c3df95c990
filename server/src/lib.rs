//! Vigil server: location and emergency communications for staff in dangerous places.
//!
//! Layout: one module per capability, each owning its routes, queries and types —
//! [`auth`] (login, tokens, the [`policy::Actor`] extractor), [`orgs`], [`users`] (profiles,
//! roles, roster import, reports), [`duty_stations`], [`areas`] (security areas as GeoJSON),
//! [`positions`] (fixes, location modes, followed areas, the operator view and its access log),
//! [`assets`], [`ingest`] (third-party trackers), [`alerts`] (targeting, the delivery ledger,
//! fallbacks, CAP import and export), [`rollcall`], [`sos`], and the channels [`ws`]/[`live`]
//! (the socket and its hub), [`push`] (web push) and [`sms`]; [`cap`] reads and writes OASIS
//! CAP 1.2; shared plumbing beside them — [`config`], [`db`], [`error`], [`policy`], [`keys`],
//! [`metrics`], [`health`], [`openapi`]; [`web`], the console and staff web app built into the
//! binary; and [`demo`], which seeds a believable deployment.
//!
//! The binary (`vigil`) is a thin CLI over [`start`], [`router`] and [`serve`]; tests and the
//! load generator use the same entry points.

pub mod alerts;
pub mod areas;
pub mod assets;
pub mod audit;
pub mod auth;
pub mod batch;
pub mod cap;
pub mod chat;
pub mod cluster;
pub mod config;
pub mod db;
pub mod demo;
pub mod duty_stations;
pub mod error;
pub mod export;
pub mod health;
pub mod ingest;
pub mod keys;
pub mod live;
pub mod metrics;
pub mod node_lock;
pub mod openapi;
pub mod orgs;
#[cfg(test)]
mod parser_props;
pub mod policy;
pub mod positions;
pub mod push;
pub mod rollcall;
pub mod sms;
pub mod sos;
pub mod stream;
pub mod sweeper;
pub mod users;
pub mod web;
pub mod ws;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, Request, StatusCode};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

pub use config::Settings;
use db::Db;
use keys::{KeyRing, Keys};
use metrics::Metrics;

/// Everything a request handler needs; cheap to clone (every field is shared).
#[derive(Clone, Debug)]
pub struct AppState {
    /// The database.
    pub db: Db,
    /// Settings the server started with.
    pub settings: Arc<Settings>,
    /// Token-signing and web-push keys.
    pub keys: Arc<KeyRing>,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// Areas and positions in memory (R-trees) with geofence memberships, mirrored from the
    /// database.
    pub tracker: areas::SharedTracker,
    /// Live WebSocket connections on this node.
    pub hub: Arc<live::Hub>,
    /// The reader of every person's numbered messages, with the modules' sources plugged in.
    pub stream: stream::Stream,
    /// The single writer of positions (group commit, ordered with mode switches).
    pub positions: positions::PositionWriter,
    /// The single writer of alert delivery steps (batched), which also publishes counts.
    pub ledger: alerts::LedgerWriter,
    /// The single writer of roll-call answers (batched, acknowledged after commit).
    pub answers: rollcall::AnswerWriter,
    /// The writer of the location-access log for live feeds (batched, never dropping).
    pub access_log: positions::access_log::AccessLogWriter,
    /// Cancelled when the server begins to shut down; long-lived tasks (WebSockets) watch it.
    pub shutdown: CancellationToken,
    /// Every background task the server started (writers, sweepers), and the signal that
    /// tells the writers to commit what they hold and end; `serve` waits for all of them.
    pub background: Background,
    /// The web-push sender (VAPID-signed, encrypted, bounded in flight).
    pub push: push::Pusher,
    /// The SMS gateway chosen by `sms_provider` (possibly none).
    pub sms: sms::Sms,
    /// The FCM and APNs senders for native apps (either possibly off).
    pub native_push: push::NativePush,
    /// This node's place in a cluster (nothing on a single node).
    pub cluster: cluster::Cluster,
}

/// The server's background tasks: `serve` joins every one before it returns.
#[derive(Clone, Debug, Default)]
pub struct Background {
    /// Every task started.
    pub tasks: tokio_util::task::TaskTracker,
    /// Cancelled after the last request and socket have finished: writers then refuse new work,
    /// commit what is queued and end. (Sweepers stop earlier, at `AppState::shutdown`.)
    pub stop: CancellationToken,
}

/// Opens the database, applies migrations and loads (or makes) the keys.
pub async fn start(settings: Settings) -> anyhow::Result<AppState> {
    let metrics = Arc::new(Metrics::default());
    // Before the database: an SQLite cluster is refused before anything is touched.
    let cluster = cluster::Cluster::join(&settings, &metrics.cluster).await?;
    let db = Db::connect_with(
        &settings.database_url,
        settings.db_max_connections,
        settings.sqlite_synchronous,
    )
    .await?;
    db.migrate().await?;
    let chained = audit::chain_earlier_entries(&db).await?;
    if chained > 0 {
        tracing::info!(
            entries = chained,
            "chained the audit entries written before the chain"
        );
    }
    let keys = Keys::load_or_create(&db).await?;
    let pusher = push::Pusher::new(&settings, &keys.vapid)?;
    let sms_gateway = sms::Sms::from_settings(&settings)?;
    let native_push = push::NativePush::from_settings(&settings)?;
    let area_index = areas::load_index(&db).await?;
    let mut tracker = vigil_geofences::Tracker::with_areas(area_index);
    let skipped = tracker.load(positions::load_latest(&db).await?);
    tracing::info!(
        areas = tracker.areas().len(),
        subjects = tracker.len(),
        skipped,
        "spatial state loaded"
    );
    let tracker = Arc::new(std::sync::RwLock::new(tracker));
    let hub = Arc::new(live::Hub::default());
    let background = Background::default();
    let state = AppState {
        positions: positions::PositionWriter::spawn(
            db.clone(),
            tracker.clone(),
            hub.clone(),
            cluster.clone(),
            Duration::from_millis(settings.position_flush_ms),
        ),
        ledger: alerts::LedgerWriter::spawn(db.clone(), hub.clone(), &background),
        access_log: positions::access_log::AccessLogWriter::spawn(db.clone(), &background),
        answers: rollcall::AnswerWriter::spawn(
            db.clone(),
            hub.clone(),
            tracker.clone(),
            &background,
        ),
        hub,
        // Alerts keep their copies as ledger rows; every other module stores in the stream's
        // own table.
        stream: stream::Stream::new(vec![Box::new(alerts::store::LedgerCopies)]),
        tracker,
        db,
        settings: Arc::new(settings),
        keys: Arc::new(KeyRing::new(keys)),
        metrics,
        shutdown: CancellationToken::new(),
        background,
        push: pusher,
        sms: sms_gateway,
        native_push,
        cluster,
    };
    state.db.spawn_checkpointer(state.shutdown.clone());
    positions::spawn_retention(&state);
    auth::attempts::spawn_pruning(&state);
    keys::spawn_reload(&state);
    positions::spawn_validity_watch(&state);
    alerts::fallback::spawn(&state);
    rollcall::spawn_reminders(&state);
    chat::spawn_fanout_sweep(&state);
    cluster::Cluster::start(&state);
    Ok(state)
}

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The whole HTTP surface: `/api/v1`, health, metrics, the OpenAPI document and JWKS.
pub fn router(state: AppState) -> Router {
    let (api, mut openapi) = openapi::api_router(&state).split_for_parts();
    openapi::complete(&mut openapi);
    let openapi = Arc::new(openapi);
    let timeout = Duration::from_secs(state.settings.request_timeout_secs);
    let body_limit = state.settings.max_body_bytes;
    Router::new()
        .merge(api)
        .merge(health::routes())
        .merge(openapi::routes(openapi))
        .merge(auth::well_known_routes())
        .merge(web::routes(&state.settings))
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::track,
        ))
        .layer(
            ServiceBuilder::new()
                .layer(SetSensitiveRequestHeadersLayer::new([
                    axum::http::header::AUTHORIZATION,
                    axum::http::header::COOKIE,
                ]))
                .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
                .layer(
                    TraceLayer::new_for_http().make_span_with(|req: &Request<_>| {
                        let id = req
                            .headers()
                            .get(REQUEST_ID)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("-");
                        tracing::info_span!("request", id, method = %req.method(), uri = %req.uri().path())
                    }),
                )
                .layer(PropagateRequestIdLayer::new(REQUEST_ID))
                .layer(axum::middleware::from_fn(error::problem_for_plain_errors))
                .layer(CatchPanicLayer::new())
                .layer(TimeoutLayer::with_status_code(
                    StatusCode::REQUEST_TIMEOUT,
                    timeout,
                )),
        )
        .with_state(state)
}

/// Serves until `shutdown` resolves, then stops accepting, lets requests and WebSockets finish
/// for up to `shutdown_grace_secs`, and closes the database.
pub async fn serve(
    state: AppState,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let grace = Duration::from_secs(state.settings.shutdown_grace_secs);
    let token = state.shutdown.clone();
    let db = state.db.clone();
    let positions = state.positions.clone();
    let background = state.background.clone();
    let cluster = state.cluster.clone();
    let app = router(state);
    let stopping = token.clone();
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        shutdown.await;
        tracing::info!("shutting down: draining requests and connections");
        stopping.cancel();
    });
    let mut server = tokio::spawn(async move { server.await });
    tokio::select! {
        joined = &mut server => joined??,
        () = token.cancelled() => match tokio::time::timeout(grace, &mut server).await {
            Ok(joined) => joined??,
            Err(_) => {
                tracing::warn!(?grace, "connections still open after the grace period; closing them");
                server.abort();
            }
        },
    }
    // Last positions are written behind: write the pending ones before the pool closes.
    if let Err(e) = positions.flush().await {
        tracing::error!(error = %e, "flushing last positions at shutdown");
    }
    // Writers commit what they hold and end; sweepers saw `shutdown` already. Every task is
    // joined before the pools close, so nothing acknowledged is left half-written.
    background.stop.cancel();
    background.tasks.close();
    if tokio::time::timeout(grace, background.tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            tasks = background.tasks.len(),
            "background tasks still running after the grace period"
        );
    }
    // Others take this node's singleton work at once, not when its leases run out.
    cluster.release(&db).await;
    db.close().await;
    Ok(())
}
