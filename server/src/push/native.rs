//! Push to native apps: Firebase Cloud Messaging (Android) and APNs (iOS), beside web push.
//!
//! Both are off unless their settings are given; [`NativePush::from_settings`] checks them at
//! start and names the setting at fault. [`NativePush::send_to_user`] sends one alert to every
//! native device of a person at once, within `push_concurrency` requests in flight, and deletes
//! the devices whose service says the token is gone (FCM `UNREGISTERED`, APNs 410 or
//! `BadDeviceToken`).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use reqwest::header::RETRY_AFTER;
use tokio::sync::Semaphore;

use super::apns::Apns;
use super::devices::{self, NativeDevice, Platform};
use super::fcm::Fcm;
use crate::AppState;
use crate::config::Settings;

/// Why a message did not reach one native device.
#[derive(Debug, thiserror::Error)]
pub enum NativeError {
    /// The service says the token no longer names an app instance; the device was deleted.
    #[error("the device token is gone (HTTP {status} {reason}) and was removed")]
    Gone {
        /// 404, 410 or 400.
        status: u16,
        /// The service's reason (`UNREGISTERED`, `Unregistered`, `BadDeviceToken`).
        reason: String,
    },
    /// The service is throttling this server (429).
    #[error("the push service asks us to slow down (HTTP 429)")]
    RateLimited {
        /// Its `Retry-After`, if given.
        retry_after: Option<Duration>,
    },
    /// The service failed (5xx).
    #[error("the push service failed (HTTP {status})")]
    Unavailable {
        /// The status.
        status: u16,
    },
    /// The service refused the message; sending it again will not help.
    #[error("the push service refused the message (HTTP {status}): {detail}")]
    Rejected {
        /// The status.
        status: u16,
        /// The service's explanation.
        detail: String,
    },
    /// No credentials could be had (token endpoint refused, key unusable).
    #[error("push credentials: {0}")]
    Auth(String),
    /// No answer in time, or no connection.
    #[error("the push service could not be reached: {0}")]
    Unreachable(String),
    /// The device's platform is not set up on this deployment.
    #[error("{0} is not set up on this server")]
    NotConfigured(&'static str),
}

impl NativeError {
    /// True when the same message may succeed later.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            NativeError::RateLimited { .. }
                | NativeError::Unavailable { .. }
                | NativeError::Unreachable(_)
        )
    }
}

/// Settings that keep native push from starting.
#[derive(Debug, thiserror::Error)]
pub enum NativeSetupError {
    /// A setting is missing or unusable.
    #[error("{setting} {why}")]
    Invalid {
        /// The setting at fault.
        setting: &'static str,
        /// What is wrong with it.
        why: String,
    },
}

/// One alert, as a native app is woken with it.
#[derive(Debug, Clone)]
pub struct NativeMessage {
    /// The alert the app fetches.
    pub alert_id: i64,
    /// Its title, in the person's language where there is one.
    pub title: String,
    /// Its body, shortened.
    pub body: String,
    /// CAP severity (`extreme`, `severe`…).
    pub severity: String,
    /// When the alert lapses (Unix ms): the services drop the message after that.
    pub expires_at_ms: i64,
}

impl NativeMessage {
    /// Seconds until the alert lapses, at most FCM's four weeks.
    pub(super) fn ttl_secs(&self) -> i64 {
        ((self.expires_at_ms - crate::db::now_ms()) / 1_000).clamp(0, 28 * 86_400)
    }

    /// The alert's expiry in Unix seconds, as `apns-expiration` wants it.
    pub(super) fn expires_at_secs(&self) -> i64 {
        self.expires_at_ms.div_euclid(1_000)
    }
}

/// What one message to one person's native devices did.
#[derive(Debug, Default)]
pub struct NativeOutcome {
    /// Devices it was sent to.
    pub attempted: usize,
    /// Accepted by the service.
    pub sent: usize,
    /// Tokens found gone and deleted.
    pub gone_removed: usize,
    /// Other failures, with why.
    pub failures: Vec<NativeError>,
}

impl NativeOutcome {
    /// True when some failure may succeed if tried again later.
    pub fn retryable(&self) -> bool {
        self.failures.iter().any(NativeError::is_transient)
    }
}

/// The node's FCM and APNs senders (either may be off). Cheap to clone.
#[derive(Clone)]
pub struct NativePush {
    fcm: Option<Arc<Fcm>>,
    apns: Option<Arc<Apns>>,
    in_flight: Arc<Semaphore>,
}

impl fmt::Debug for NativePush {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NativePush")
            .field(
                "fcm",
                &self.fcm.as_ref().map(|f| f.project_id().to_string()),
            )
            .field("apns", &self.apns.is_some())
            .finish_non_exhaustive()
    }
}

impl NativePush {
    /// The senders the settings ask for; an error names the setting at fault.
    pub fn from_settings(settings: &Settings) -> Result<NativePush, NativeSetupError> {
        let timeout = Duration::from_secs(settings.push_timeout_secs.max(1));
        let file = settings.fcm_service_account_file.trim();
        let inline = settings.fcm_service_account_json.trim();
        let fcm = match (file.is_empty(), inline.is_empty()) {
            (true, true) => None,
            (false, false) => {
                return Err(NativeSetupError::Invalid {
                    setting: "fcm_service_account_file",
                    why: "and fcm_service_account_json are both set; give one".into(),
                });
            }
            (false, true) => {
                let json =
                    std::fs::read_to_string(file).map_err(|e| NativeSetupError::Invalid {
                        setting: "fcm_service_account_file",
                        why: format!("cannot be read ({file}): {e}"),
                    })?;
                Some(Fcm::new(
                    &json,
                    "fcm_service_account_file",
                    &settings.fcm_base_url,
                    http_client(timeout)?,
                )?)
            }
            (true, false) => Some(Fcm::new(
                inline,
                "fcm_service_account_json",
                &settings.fcm_base_url,
                http_client(timeout)?,
            )?),
        };
        let wants_apns = [
            &settings.apns_key_file,
            &settings.apns_key_id,
            &settings.apns_team_id,
            &settings.apns_topic,
        ]
        .iter()
        .any(|v| !v.trim().is_empty());
        let apns = if wants_apns {
            Some(Apns::new(settings, timeout)?)
        } else {
            None
        };
        if let Some(fcm) = &fcm {
            tracing::info!(project = fcm.project_id(), "FCM push enabled");
        }
        if apns.is_some() {
            tracing::info!(sandbox = settings.apns_sandbox, "APNs push enabled");
        }
        Ok(NativePush {
            fcm: fcm.map(Arc::new),
            apns: apns.map(Arc::new),
            in_flight: Arc::new(Semaphore::new(settings.push_concurrency.max(1))),
        })
    }

    /// True when at least one of FCM and APNs is set up.
    pub fn is_enabled(&self) -> bool {
        self.fcm.is_some() || self.apns.is_some()
    }

    /// Sends `message` to every native device of `user_id` whose platform is set up. `Err` only
    /// when the devices could not be read.
    pub async fn send_to_user(
        &self,
        state: &AppState,
        user_id: i64,
        message: &NativeMessage,
    ) -> Result<NativeOutcome, sqlx::Error> {
        if !self.is_enabled() {
            return Ok(NativeOutcome::default());
        }
        let all = devices::devices_of(&state.db, user_id).await?;
        let usable: Vec<&NativeDevice> = all
            .iter()
            .filter(|d| match d.platform {
                Platform::Fcm => self.fcm.is_some(),
                Platform::Apns => self.apns.is_some(),
            })
            .collect();
        let results = join_all(
            usable
                .iter()
                .map(|d| self.send_to_device(state, d, message)),
        )
        .await;
        let mut outcome = NativeOutcome {
            attempted: usable.len(),
            ..NativeOutcome::default()
        };
        for result in results {
            match result {
                Ok(()) => outcome.sent += 1,
                Err(NativeError::Gone { .. }) => outcome.gone_removed += 1,
                Err(e) => outcome.failures.push(e),
            }
        }
        tracing::debug!(
            user_id,
            attempted = outcome.attempted,
            sent = outcome.sent,
            gone = outcome.gone_removed,
            failed = outcome.failures.len(),
            "native push sent"
        );
        Ok(outcome)
    }

    async fn send_to_device(
        &self,
        state: &AppState,
        device: &NativeDevice,
        message: &NativeMessage,
    ) -> Result<(), NativeError> {
        let result = {
            let _permit = self
                .in_flight
                .acquire()
                .await
                .map_err(|_| NativeError::Unreachable("the sender is closed".into()))?;
            match device.platform {
                Platform::Fcm => match &self.fcm {
                    Some(fcm) => fcm.send(&device.token, message).await,
                    None => Err(NativeError::NotConfigured("FCM")),
                },
                Platform::Apns => match &self.apns {
                    Some(apns) => {
                        apns.send(&device.token, device.app_id.as_deref(), message)
                            .await
                    }
                    None => Err(NativeError::NotConfigured("APNs")),
                },
            }
        };
        // The delivery's result is what the caller acts on; a failed bookkeeping write is
        // only logged (a gone token is refused again next time and deleted then).
        let noted = match &result {
            Ok(()) => devices::record_success(&state.db, device.id).await,
            Err(NativeError::Gone { status, reason }) => {
                tracing::info!(device = device.id, user_id = device.user_id, status, %reason,
                    platform = device.platform.as_str(), "native push token gone; removed");
                devices::delete_device(&state.db, device.id).await
            }
            Err(e) => {
                tracing::warn!(device = device.id, user_id = device.user_id, error = %e,
                    platform = device.platform.as_str(), "native push failed");
                devices::record_failure(&state.db, device.id).await
            }
        };
        if let Err(e) = noted {
            tracing::error!(device = device.id, error = %e, "could not note a native push result");
        }
        result
    }
}

fn http_client(timeout: Duration) -> Result<reqwest::Client, NativeSetupError> {
    reqwest::Client::builder()
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("vigil/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| NativeSetupError::Invalid {
            setting: "fcm_base_url",
            why: format!("HTTP client: {e}"),
        })
}

/// A failed answer's `Retry-After` and the start of its body.
pub(super) async fn read_answer(response: reqwest::Response) -> (Option<Duration>, String) {
    let retry_after = response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let detail: String = response
        .text()
        .await
        .unwrap_or_default()
        .chars()
        .take(500)
        .collect();
    (retry_after, detail)
}
