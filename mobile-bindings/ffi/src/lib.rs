//! Vigil's phone SDK as Kotlin, Swift and Python see it: a thin UniFFI layer over `vigil-sdk`.
//!
//! Everything here translates; nothing decides. The SDK's work runs on one tokio runtime owned
//! by this library (an app has no tokio of its own), and every async call is spawned onto it, so
//! that a panic in the core ends that call with [`VigilError::Internal`] instead of crossing
//! the boundary. Listeners are foreign traits; subscribing returns a [`Subscription`] whose
//! task stops when the app drops it.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use tokio::runtime::Runtime;
use tokio::sync::broadcast::error::RecvError;
use vigil_sdk::{Event, Placement, SdkError};

uniffi::setup_scaffolding!();

mod types;

pub use types::{
    AlertPlacement, ClientEvent, GeoFix, Pending, Platform, ReceiptState, RollcallAnswer, SosCase,
    StreamItem, WatchCircle,
};

/// The runtime every client of this process shares (built on first use).
fn runtime() -> Result<&'static Runtime, VigilError> {
    static RUNTIME: OnceLock<Result<Runtime, String>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                // A phone: two workers are plenty for one socket and a small SQLite file.
                .worker_threads(2)
                .thread_name("vigil-sdk")
                .enable_all()
                .build()
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| VigilError::Internal(format!("no runtime: {e}")))
}

/// Runs `work` on the SDK's runtime and waits for it from whatever executor the app uses.
async fn on_runtime<T, F>(work: F) -> Result<T, VigilError>
where
    F: Future<Output = Result<T, SdkError>> + Send + 'static,
    T: Send + 'static,
{
    match runtime()?.spawn(work).await {
        Ok(done) => done.map_err(VigilError::from),
        Err(e) => Err(VigilError::Internal(format!("the SDK task failed: {e}"))),
    }
}

/// Every error the SDK gives the app, one flat enum: the variant says what to do, the message
/// says what happened.
#[derive(Debug, thiserror::Error, uniffi::Error)]
#[uniffi(flat_error)]
pub enum VigilError {
    /// The server address is not acceptable (HTTPS, except to this device).
    #[error("{0}")]
    BadAddress(String),
    /// The phone's storage failed.
    #[error("{0}")]
    Storage(String),
    /// The outbox is full: connect to send what waits.
    #[error("{0}")]
    StorageFull(String),
    /// The network or TLS failed; the connection retries by itself.
    #[error("{0}")]
    Network(String),
    /// The server refused the request; the message is safe to show.
    #[error("{0}")]
    Server(String),
    /// No session: sign in again.
    #[error("signed out: sign in again")]
    SignedOut,
    /// The server sent something this SDK cannot read.
    #[error("{0}")]
    Protocol(String),
    /// The app's secret store failed.
    #[error("{0}")]
    Secrets(String),
    /// A fault inside the SDK; report it.
    #[error("{0}")]
    Internal(String),
}

impl From<SdkError> for VigilError {
    fn from(e: SdkError) -> Self {
        let text = e.to_string();
        match e {
            SdkError::Address(_) => VigilError::BadAddress(text),
            SdkError::Store(vigil_sdk::store::StoreError::Full(_)) => VigilError::StorageFull(text),
            SdkError::Store(_) => VigilError::Storage(text),
            SdkError::Network(_) => VigilError::Network(text),
            SdkError::Server(p) if p.needs_login() => VigilError::SignedOut,
            SdkError::Server(p) => VigilError::Server(format!("{} ({})", p.detail, p.status)),
            SdkError::SignedOut => VigilError::SignedOut,
            SdkError::Protocol(_) | SdkError::Place(_) => VigilError::Protocol(text),
            SdkError::Secrets(_) => VigilError::Secrets(text),
        }
    }
}

/// Why the app's secret store failed.
#[derive(Debug, thiserror::Error, uniffi::Error)]
pub enum SecretError {
    /// The store could not read or write the secret.
    #[error("{reason}")]
    Failed {
        /// What happened, for a log line.
        reason: String,
    },
}

impl From<uniffi::UnexpectedUniFFICallbackError> for SecretError {
    fn from(e: uniffi::UnexpectedUniFFICallbackError) -> Self {
        SecretError::Failed { reason: e.reason }
    }
}

/// The app's secure storage (iOS Keychain, Android Keystore-backed preferences): the SDK keeps
/// the session's refresh token there instead of in its own file.
#[uniffi::export(with_foreign)]
pub trait SecretStore: Send + Sync {
    /// The secret stored under `key`, if any.
    fn get(&self, key: String) -> Result<Option<String>, SecretError>;
    /// Stores `value` under `key`, or deletes it (`None`).
    fn set(&self, key: String, value: Option<String>) -> Result<(), SecretError>;
}

/// The key under which the refresh token is kept in the app's [`SecretStore`].
const TOKEN_KEY: &str = "vigil.refresh_token";

/// Adapts the app's store to the core's token keeper.
struct Keeper(Arc<dyn SecretStore>);

impl std::fmt::Debug for Keeper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keeper(app secret store)")
    }
}

impl vigil_sdk::TokenKeeper for Keeper {
    fn load(&self) -> Result<Option<String>, String> {
        self.0.get(TOKEN_KEY.into()).map_err(|e| e.to_string())
    }

    fn save(&self, token: Option<&str>) -> Result<(), String> {
        self.0
            .set(TOKEN_KEY.into(), token.map(str::to_string))
            .map_err(|e| e.to_string())
    }
}

/// What the app implements to hear from the client. Called on an SDK thread, one event at a
/// time and in order; hand the event to the app's own thread and return.
#[uniffi::export(with_foreign)]
pub trait EventListener: Send + Sync {
    /// One event.
    fn on_event(&self, event: ClientEvent);
}

/// A listener's subscription: the listener hears events until this is dropped or cancelled.
#[derive(Debug, uniffi::Object)]
pub struct Subscription {
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

#[uniffi::export]
impl Subscription {
    /// Stops the listener now (dropping the subscription does the same).
    pub fn cancel(&self) {
        if let Some(task) = self
            .task
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
        {
            task.abort();
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.cancel();
    }
}

/// A phone's Vigil client.
#[derive(Debug, uniffi::Object)]
pub struct VigilClient {
    sdk: vigil_sdk::Client,
}

#[uniffi::export]
impl VigilClient {
    /// Opens the client of the server at `server_url` (HTTPS, or HTTP to this device), keeping
    /// its outbox and stream in `data_dir` (the app's private files, excluded from backups)
    /// and the session's token in `secrets` (or, without one, in that same directory).
    #[uniffi::constructor]
    pub async fn open(
        server_url: String,
        data_dir: String,
        secrets: Option<Arc<dyn SecretStore>>,
    ) -> Result<Arc<Self>, VigilError> {
        let keeper = secrets.map(|s| Arc::new(Keeper(s)) as Arc<dyn vigil_sdk::TokenKeeper>);
        let file = PathBuf::from(data_dir).join("vigil-sdk.sqlite");
        let sdk =
            on_runtime(
                async move { vigil_sdk::Client::open_with(&server_url, &file, keeper).await },
            )
            .await?;
        Ok(Arc::new(VigilClient { sdk }))
    }

    /// Signs in with the person's e-mail and password.
    pub async fn login(&self, email: String, password: String) -> Result<(), VigilError> {
        let sdk = self.sdk.clone();
        on_runtime(async move { sdk.login(&email, &password).await }).await
    }

    /// Starts keeping the connection (reconnecting by itself) until [`VigilClient::stop`].
    pub fn start(&self) -> Result<(), VigilError> {
        let _inside = runtime()?.enter();
        drop(self.sdk.start());
        Ok(())
    }

    /// Ends the connection; the outbox keeps what is unsent.
    pub fn stop(&self) {
        self.sdk.stop();
    }

    /// Lets `listener` hear the client's events, starting with every stream message the app
    /// has not had yet; until the returned subscription is dropped.
    pub fn subscribe(
        &self,
        listener: Arc<dyn EventListener>,
    ) -> Result<Arc<Subscription>, VigilError> {
        let rt = runtime()?;
        let mut events = self.sdk.events();
        let sdk = self.sdk.clone();
        let task = rt.spawn(async move {
            // Messages waiting for a listener go out now that there is one.
            let catch_up = sdk.clone();
            tokio::spawn(async move {
                if let Err(e) = catch_up.catch_up().await {
                    tracing::warn!(error = %e, "stored messages not handed over");
                }
            });
            loop {
                let event = match events.recv().await {
                    Ok(e) => ClientEvent::from(e),
                    Err(RecvError::Lagged(missed)) => ClientEvent::Lagged { missed },
                    Err(RecvError::Closed) => return,
                };
                let listener = listener.clone();
                // The app's code may block; keep it off the runtime's workers.
                if tokio::task::spawn_blocking(move || listener.on_event(event))
                    .await
                    .is_err()
                {
                    tracing::warn!("an event listener failed");
                }
            }
        });
        Ok(Arc::new(Subscription {
            task: Mutex::new(Some(task)),
        }))
    }

    /// Records a fix from the operating system: queued for the server (newest first) and
    /// checked on the phone against the alerts in force.
    pub async fn record_fix(&self, fix: GeoFix) -> Result<(), VigilError> {
        let sdk = self.sdk.clone();
        on_runtime(async move { sdk.record_fix(fix.into()).await }).await
    }

    /// The phone is at (`lat`, `lon`), in location-less mode: checked on the phone only,
    /// nothing is sent. Returns where it stands with every alert in force.
    pub fn device_moved(&self, lat: f64, lon: f64) -> Vec<types::PlacementOf> {
        types::placements(self.sdk.device_moved(lat, lon))
    }

    /// Circles for the operating system to watch around the nearest alert places, within
    /// `platform`'s limit, nearest first.
    pub fn watch_regions(&self, platform: Platform) -> Vec<WatchCircle> {
        let limit = match platform {
            Platform::Ios => vigil_sdk::geofence::IOS_REGION_LIMIT,
            Platform::Android => vigil_sdk::geofence::ANDROID_GEOFENCE_LIMIT,
        };
        self.sdk
            .watch_regions(limit)
            .into_iter()
            .map(WatchCircle::from)
            .collect()
    }

    /// Fetches the alerts in force with their places now (the client also does this on every
    /// connect and alert); returns how many are in force.
    pub async fn refresh_places(&self) -> Result<u32, VigilError> {
        let sdk = self.sdk.clone();
        let count = on_runtime(async move { sdk.refresh_places().await }).await?;
        Ok(u32::try_from(count).unwrap_or(u32::MAX))
    }

    /// Records how far the person got with an alert; sent when connected.
    pub async fn receipt(&self, alert_id: i64, state: ReceiptState) -> Result<(), VigilError> {
        let sdk = self.sdk.clone();
        on_runtime(async move { sdk.receipt(alert_id, state.into()).await }).await
    }

    /// Queues a chat message; returns its client id (a resend is stored once).
    pub async fn send_chat(
        &self,
        conversation_id: i64,
        body: String,
    ) -> Result<String, VigilError> {
        let sdk = self.sdk.clone();
        on_runtime(async move { sdk.send_chat(conversation_id, &body).await }).await
    }

    /// Answers a roll-call for the person, or for one of their dependants; kept until the
    /// server has it.
    pub async fn answer_rollcall(
        &self,
        rollcall_id: i64,
        answer: RollcallAnswer,
        note: Option<String>,
        dependant_id: Option<i64>,
    ) -> Result<(), VigilError> {
        let sdk = self.sdk.clone();
        on_runtime(async move {
            sdk.answer_rollcall(rollcall_id, answer.as_str(), note.as_deref(), dependant_id)
                .await
        })
        .await
    }

    /// Presses SOS, sent at once: an error means the server did not get it (offer a call).
    /// In location-less mode `position` is shared only with `share_location`.
    pub async fn press_sos(
        &self,
        note: Option<String>,
        position: Option<GeoFix>,
        share_location: bool,
    ) -> Result<SosCase, VigilError> {
        let sdk = self.sdk.clone();
        let case = on_runtime(async move {
            sdk.press_sos(note.as_deref(), position.map(Into::into), share_location)
                .await
        })
        .await?;
        Ok(SosCase::from(case))
    }

    /// Switches between tracking and location-less mode.
    pub async fn set_location_less(&self, location_less: bool) -> Result<(), VigilError> {
        let sdk = self.sdk.clone();
        on_runtime(async move { sdk.set_location_less(location_less).await }).await
    }

    /// The areas the person follows in location-less mode.
    pub async fn follow_areas(&self, area_ids: Vec<i64>) -> Result<(), VigilError> {
        let sdk = self.sdk.clone();
        on_runtime(async move { sdk.follow_areas(&area_ids).await }).await
    }

    /// What waits in the outbox.
    pub async fn pending(&self) -> Result<Pending, VigilError> {
        let sdk = self.sdk.clone();
        let (fixes, others) = on_runtime(async move { sdk.pending().await }).await?;
        Ok(Pending { fixes, others })
    }

    /// The stream messages the phone holds after `after_seq`, at most `limit`, in order: for
    /// an app that lost track ([`ClientEvent::Lagged`], or a crash while handling one).
    pub async fn stored_messages(
        &self,
        after_seq: i64,
        limit: i64,
    ) -> Result<Vec<StreamItem>, VigilError> {
        let sdk = self.sdk.clone();
        let list = on_runtime(async move { sdk.stored_messages(after_seq, limit).await }).await?;
        Ok(list.into_iter().map(StreamItem::from).collect())
    }
}

impl From<Placement> for AlertPlacement {
    fn from(p: Placement) -> Self {
        match p {
            Placement::Inside => AlertPlacement::Inside,
            Placement::InRegion => AlertPlacement::InRegion,
            Placement::Everywhere => AlertPlacement::Everywhere,
        }
    }
}

impl From<Event> for ClientEvent {
    fn from(e: Event) -> Self {
        match e {
            Event::Connected => ClientEvent::Connected,
            Event::Disconnected { reason } => ClientEvent::Disconnected { reason },
            Event::SignedOut => ClientEvent::SignedOut,
            Event::Message(m) => ClientEvent::Message {
                message: StreamItem::from(m),
            },
            Event::Refused { reason } => ClientEvent::Refused { reason },
            Event::FixesDropped { count } => ClientEvent::FixesDropped { count },
            Event::Placement {
                alert_id,
                placement,
            } => ClientEvent::Placement {
                alert_id,
                placement: placement.map(AlertPlacement::from),
            },
        }
    }
}
