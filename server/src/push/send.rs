//! Sending web-push messages: encryption and VAPID through the `web-push` crate, delivery
//! through a shared `reqwest` client.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use reqwest::{StatusCode, Url};
use tokio::sync::Semaphore;
use web_push::{
    ContentEncoding, SubscriptionInfo, VapidSignature, VapidSignatureBuilder, WebPushError,
    WebPushMessageBuilder, request_builder,
};

use super::store::{self, Subscription};
use crate::AppState;
use crate::config::Settings;
use crate::db::now_ms;
use crate::keys::VapidKeys;

/// Largest payload sent, in bytes. RFC 8030 makes push services accept 4096 bytes of encrypted
/// body, which aes128gcm would fill with 3993 bytes of plaintext; the `web-push` crate stops at
/// 3052 to leave room for the legacy `aesgcm` encoding, and that is the limit here. A larger
/// payload is refused with [`PushError::PayloadTooLarge`] before anything is sent: send an id
/// and a title, and let the app fetch the rest.
pub const MAX_PAYLOAD_BYTES: usize = 3052;

/// A VAPID token is reused for this long; it is valid for 12 hours (RFC 8292 allows 24), so a
/// reused one always has more than 11 hours left.
const VAPID_REUSE: Duration = Duration::from_secs(3600);

/// A bookkeeping write after a success happens at most this often per subscription, so a crisis
/// that pushes to everyone does not also queue one database write per message.
const SUCCESS_NOTE_EVERY_MS: i64 = 3_600_000;

/// How the push service should treat a message (RFC 8030 §5.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Urgency {
    /// Deliver when the device is on power and Wi-Fi.
    VeryLow,
    /// Deliver when on power or Wi-Fi.
    Low,
    /// Deliver when not in battery saving.
    #[default]
    Normal,
    /// Deliver now, even on low battery: alerts and SOS.
    High,
}

/// Per-message delivery options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushOptions {
    /// How long the push service keeps the message for an unreachable device; 0 means deliver
    /// now or never.
    pub ttl_secs: u32,
    /// How eagerly to wake the device.
    pub urgency: Urgency,
    /// A newer message with the same topic replaces an undelivered older one (at most 32
    /// base64url characters).
    pub topic: Option<String>,
}

impl Default for PushOptions {
    fn default() -> Self {
        Self {
            ttl_secs: 24 * 3600,
            urgency: Urgency::Normal,
            topic: None,
        }
    }
}

/// What happened to one message to one person.
#[derive(Debug, Default)]
pub struct PushOutcome {
    /// Subscriptions the message was sent to.
    pub attempted: usize,
    /// Accepted by the push service.
    pub sent: usize,
    /// Found gone (404, 410) and deleted.
    pub gone_removed: usize,
    /// Failed for another reason (see `failures`).
    pub failed: usize,
    /// The longest wait a push service asked for (429 or 5xx with `Retry-After`).
    pub retry_after: Option<Duration>,
    /// Each failed subscription, with why.
    pub failures: Vec<PushFailure>,
}

impl PushOutcome {
    /// True when some failure may succeed if tried again later.
    pub fn retryable(&self) -> bool {
        self.failures.iter().any(|f| f.error.is_transient())
    }
}

/// One subscription a message did not reach.
#[derive(Debug)]
pub struct PushFailure {
    /// The subscription.
    pub subscription_id: i64,
    /// Why.
    pub error: PushError,
}

/// Why a push was not delivered.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// The payload exceeds [`MAX_PAYLOAD_BYTES`] (or the push service said 413).
    #[error("the payload is {len} bytes; web push carries at most {max}")]
    PayloadTooLarge {
        /// Its size.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The options cannot be sent (a topic that is not 1 to 32 base64url characters).
    #[error("invalid push options: {0}")]
    InvalidOptions(String),
    /// The subscription no longer exists at the push service (404 or 410); it was deleted.
    #[error("the subscription is gone (HTTP {status}) and was removed")]
    Gone {
        /// 404 or 410.
        status: u16,
    },
    /// The push service is throttling this server (429).
    #[error("the push service asks us to slow down (HTTP 429)")]
    RateLimited {
        /// Its `Retry-After`, if given.
        retry_after: Option<Duration>,
    },
    /// The push service failed (5xx).
    #[error("the push service failed (HTTP {status})")]
    Unavailable {
        /// The status.
        status: u16,
        /// Its `Retry-After`, if given.
        retry_after: Option<Duration>,
    },
    /// The push service refused the message (400, 401/403 for a VAPID key that does not match
    /// the subscription, …); sending it again will not help.
    #[error("the push service refused the message (HTTP {status}): {detail}")]
    Rejected {
        /// The status.
        status: u16,
        /// The service's explanation.
        detail: String,
    },
    /// No answer in time, or no connection.
    #[error("the push service could not be reached: {0}")]
    Unreachable(String),
    /// The stored subscription cannot be used (endpoint no longer allowed, keys unusable).
    #[error("the subscription cannot be used: {0}")]
    BadSubscription(String),
    /// The database failed.
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

impl PushError {
    /// True when the same message may succeed later (429, 5xx, unreachable).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            PushError::RateLimited { .. }
                | PushError::Unavailable { .. }
                | PushError::Unreachable(_)
        )
    }

    /// How long the push service asked us to wait.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            PushError::RateLimited { retry_after } | PushError::Unavailable { retry_after, .. } => {
                *retry_after
            }
            _ => None,
        }
    }
}

/// Settings that keep the push sender from starting.
#[derive(Debug, thiserror::Error)]
pub enum PushSetupError {
    /// `push_subject` is not a `mailto:` or `https:` URI.
    #[error("push_subject must be a mailto: or https: URI, not {0:?}")]
    Subject(String),
    /// The HTTP client could not be built.
    #[error("push HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

/// The node's web-push sender: one HTTP client, a bound on requests in flight and a cache of
/// VAPID tokens per push-service origin. Cheap to clone.
#[derive(Clone)]
pub struct Pusher {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    in_flight: Semaphore,
    subject: String,
    vapid_private: String,
    /// Signing costs more than encrypting; one token per origin serves every message to it.
    tokens: Mutex<HashMap<String, (VapidSignature, Instant)>>,
}

impl fmt::Debug for Pusher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pusher")
            .field("subject", &self.inner.subject)
            .field("available", &self.inner.in_flight.available_permits())
            .finish_non_exhaustive()
    }
}

impl Pusher {
    /// A sender signing with `vapid`, as the settings say.
    pub fn new(settings: &Settings, vapid: &VapidKeys) -> Result<Pusher, PushSetupError> {
        let subject = settings.push_subject.trim();
        let valid_subject = subject
            .strip_prefix("mailto:")
            .is_some_and(|address| address.contains('@'))
            || subject.starts_with("https://");
        if !valid_subject {
            return Err(PushSetupError::Subject(subject.to_string()));
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(settings.push_timeout_secs.max(1)))
            // A push service does not redirect; following one would let an endpoint lead the
            // server somewhere its checks never saw.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("vigil/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Pusher {
            inner: Arc::new(Inner {
                http,
                in_flight: Semaphore::new(settings.push_concurrency.max(1)),
                subject: subject.to_string(),
                vapid_private: vapid.private_key.clone(),
                tokens: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// A VAPID token for `origin`, reused for [`VAPID_REUSE`].
    fn vapid_for(
        &self,
        origin: &str,
        info: &SubscriptionInfo,
    ) -> Result<VapidSignature, PushError> {
        if let Ok(tokens) = self.inner.tokens.lock()
            && let Some((token, made)) = tokens.get(origin)
            && made.elapsed() < VAPID_REUSE
        {
            return Ok(token.clone());
        }
        let mut builder = VapidSignatureBuilder::from_base64(&self.inner.vapid_private, info)
            .map_err(|e| PushError::BadSubscription(format!("VAPID key: {e:?}")))?;
        // The crate's default audience drops the port; RFC 8292 wants the origin, port included.
        builder.add_claim("aud", origin);
        builder.add_claim("sub", self.inner.subject.as_str());
        let token = builder
            .build()
            .map_err(|e| PushError::BadSubscription(format!("VAPID token: {e:?}")))?;
        if let Ok(mut tokens) = self.inner.tokens.lock() {
            tokens.retain(|_, (_, made)| made.elapsed() < VAPID_REUSE);
            tokens.insert(origin.to_string(), (token.clone(), Instant::now()));
        }
        Ok(token)
    }
}

/// Sends `payload` (JSON) to every subscription of `user_id`, at once, within the node's bound
/// on requests in flight. `Err` only when nothing could be tried (payload too large, invalid
/// options, database); per-subscription failures are counted in the [`PushOutcome`]. A person
/// with no subscription gets `attempted: 0`.
pub async fn send_to_user(
    state: &AppState,
    user_id: i64,
    payload: &serde_json::Value,
    opts: PushOptions,
) -> Result<PushOutcome, PushError> {
    let bytes = serde_json::to_vec(payload)
        .map_err(|e| PushError::InvalidOptions(format!("payload: {e}")))?;
    check_message(&bytes, &opts)?;
    let subs = store::subscriptions_of(&state.db, user_id).await?;
    let results = join_all(
        subs.iter()
            .map(|sub| send_to_subscription(state, sub, &bytes, &opts)),
    )
    .await;
    let mut outcome = PushOutcome {
        attempted: subs.len(),
        ..PushOutcome::default()
    };
    for (sub, result) in subs.iter().zip(results) {
        match result {
            Ok(()) => outcome.sent += 1,
            Err(PushError::Gone { .. }) => outcome.gone_removed += 1,
            Err(error) => {
                outcome.failed += 1;
                outcome.retry_after = outcome.retry_after.max(error.retry_after());
                outcome.failures.push(PushFailure {
                    subscription_id: sub.id,
                    error,
                });
            }
        }
    }
    tracing::debug!(
        user_id,
        attempted = outcome.attempted,
        sent = outcome.sent,
        gone = outcome.gone_removed,
        failed = outcome.failed,
        "push sent"
    );
    Ok(outcome)
}

fn check_message(payload: &[u8], opts: &PushOptions) -> Result<(), PushError> {
    if payload.len() > MAX_PAYLOAD_BYTES {
        return Err(PushError::PayloadTooLarge {
            len: payload.len(),
            max: MAX_PAYLOAD_BYTES,
        });
    }
    if let Some(topic) = &opts.topic {
        let ok = (1..=32).contains(&topic.len())
            && topic
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !ok {
            return Err(PushError::InvalidOptions(format!(
                "topic {topic:?} is not 1 to 32 base64url characters"
            )));
        }
    }
    Ok(())
}

/// Sends an encrypted `payload` to one subscription. A 404 or 410 deletes the subscription and
/// answers [`PushError::Gone`].
pub async fn send_to_subscription(
    state: &AppState,
    sub: &Subscription,
    payload: &[u8],
    opts: &PushOptions,
) -> Result<(), PushError> {
    check_message(payload, opts)?;
    let result = deliver(state, sub, payload, opts).await;
    // The delivery's result is what the caller acts on; a failed bookkeeping write is only
    // logged (a gone subscription will answer 410 again next time and be deleted then).
    let noted = match &result {
        Ok(()) => {
            let stale = sub
                .last_success_at
                .is_none_or(|t| now_ms() - t > SUCCESS_NOTE_EVERY_MS);
            if stale || sub.failures_in_a_row > 0 {
                store::record_success(&state.db, sub.id).await
            } else {
                Ok(())
            }
        }
        Err(PushError::Gone { status }) => {
            tracing::info!(
                subscription = sub.id,
                user_id = sub.user_id,
                status,
                "push subscription gone; removed"
            );
            store::delete_subscription(&state.db, sub.id).await
        }
        Err(e) => {
            tracing::warn!(subscription = sub.id, user_id = sub.user_id, error = %e, "push failed");
            store::record_failure(&state.db, sub.id).await
        }
    };
    if let Err(e) = noted {
        tracing::error!(subscription = sub.id, error = %e, "could not note a push result");
    }
    result
}

async fn deliver(
    state: &AppState,
    sub: &Subscription,
    payload: &[u8],
    opts: &PushOptions,
) -> Result<(), PushError> {
    super::check_endpoint(&sub.endpoint, &state.settings).map_err(PushError::BadSubscription)?;
    let origin = Url::parse(&sub.endpoint)
        .map_err(|e| PushError::BadSubscription(e.to_string()))?
        .origin()
        .ascii_serialization();
    let pusher = &state.push;
    // Taken before encrypting, so a crisis holds at most this many messages in memory at once.
    let _permit = pusher
        .inner
        .in_flight
        .acquire()
        .await
        .map_err(|_| PushError::Unreachable("the sender is closed".into()))?;
    let info = SubscriptionInfo::new(
        sub.endpoint.as_str(),
        sub.p256dh.as_str(),
        sub.auth.as_str(),
    );
    let mut message = WebPushMessageBuilder::new(&info);
    message.set_payload(ContentEncoding::Aes128Gcm, payload);
    message.set_ttl(opts.ttl_secs);
    message.set_urgency(match opts.urgency {
        Urgency::VeryLow => web_push::Urgency::VeryLow,
        Urgency::Low => web_push::Urgency::Low,
        Urgency::Normal => web_push::Urgency::Normal,
        Urgency::High => web_push::Urgency::High,
    });
    if let Some(topic) = &opts.topic {
        message.set_topic(topic.clone());
    }
    message.set_vapid_signature(pusher.vapid_for(&origin, &info)?);
    let message = message.build().map_err(|e| match e {
        WebPushError::PayloadTooLarge => PushError::PayloadTooLarge {
            len: payload.len(),
            max: MAX_PAYLOAD_BYTES,
        },
        WebPushError::InvalidTopic => PushError::InvalidOptions("topic".into()),
        other => PushError::BadSubscription(format!("{other:?}")),
    })?;
    let built = request_builder::build_request::<Vec<u8>>(message);
    let mut request = pusher.inner.http.post(sub.endpoint.as_str());
    // The crate's request is http 0.2; its headers (TTL, Urgency, Topic, Content-Encoding,
    // Authorization: vapid …) are copied over, the length is reqwest's to set.
    for (name, value) in built.headers() {
        if name.as_str() != "content-length" {
            request = request.header(name.as_str(), value.as_bytes());
        }
    }
    let request = request.body(built.into_body());

    let response = request.send().await.map_err(|e| {
        PushError::Unreachable(if e.is_timeout() {
            "no answer in time".into()
        } else {
            e.to_string()
        })
    })?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let (retry_after, detail) = super::native::read_answer(response).await;
    Err(match status {
        StatusCode::NOT_FOUND | StatusCode::GONE => PushError::Gone {
            status: status.as_u16(),
        },
        StatusCode::TOO_MANY_REQUESTS => PushError::RateLimited { retry_after },
        StatusCode::PAYLOAD_TOO_LARGE => PushError::PayloadTooLarge {
            len: payload.len(),
            max: MAX_PAYLOAD_BYTES,
        },
        s if s.is_server_error() => PushError::Unavailable {
            status: s.as_u16(),
            retry_after,
        },
        s => PushError::Rejected {
            status: s.as_u16(),
            detail,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oversized_payloads_and_bad_topics_are_refused_before_sending() {
        let opts = PushOptions::default();
        assert!(check_message(&vec![b'a'; MAX_PAYLOAD_BYTES], &opts).is_ok());
        assert!(matches!(
            check_message(&vec![b'a'; MAX_PAYLOAD_BYTES + 1], &opts),
            Err(PushError::PayloadTooLarge {
                len: 3053,
                max: 3052
            })
        ));
        for topic in ["", "has space", &"a".repeat(33), "é"] {
            let opts = PushOptions {
                topic: Some(topic.into()),
                ..PushOptions::default()
            };
            assert!(
                matches!(
                    check_message(b"{}", &opts),
                    Err(PushError::InvalidOptions(_))
                ),
                "{topic:?}"
            );
        }
        let opts = PushOptions {
            topic: Some("alert-42_v2".into()),
            ..PushOptions::default()
        };
        assert!(check_message(b"{}", &opts).is_ok());
    }

    #[test]
    fn the_subject_must_be_a_contact_uri() {
        let vapid = crate::keys::generate_vapid().expect("vapid");
        for bad in ["", "admin@example.org", "mailto:", "http://example.org"] {
            let settings = Settings {
                push_subject: bad.into(),
                ..Settings::default()
            };
            assert!(Pusher::new(&settings, &vapid).is_err(), "{bad:?}");
        }
        assert!(Pusher::new(&Settings::default(), &vapid).is_ok());
    }

    #[test]
    fn only_429_5xx_and_unreachable_are_worth_retrying() {
        let wait = Some(Duration::from_secs(30));
        assert!(PushError::RateLimited { retry_after: wait }.is_transient());
        assert_eq!(
            PushError::Unavailable {
                status: 503,
                retry_after: wait
            }
            .retry_after(),
            wait
        );
        assert!(PushError::Unreachable("timeout".into()).is_transient());
        assert!(!PushError::Gone { status: 410 }.is_transient());
        assert!(
            !PushError::Rejected {
                status: 403,
                detail: String::new()
            }
            .is_transient()
        );
    }
}
