//! Web Push: waking a phone or browser whose WebSocket is closed.
//!
//! The staff app's service worker subscribes with the deployment's VAPID public key
//! (`GET /push/vapid-public-key`) and registers the browser's `PushSubscription` for its
//! signed-in user (`POST /push/subscriptions`, idempotent on the endpoint); each person manages
//! only their own subscriptions. [`send_to_user`] encrypts a payload for every subscription of a
//! person (RFC 8291, aes128gcm), signs a VAPID token for the push service's origin (RFC 8292)
//! and posts it, forgetting subscriptions the push service says are gone (404, 410).
//!
//! Native apps register their FCM or APNs token per installation instead
//! (`PUT /me/devices/{device_id}`, see [`devices`]); [`NativePush`] wakes them beside web push.
//!
//! The `web-push` crate builds each message (encryption, VAPID token, headers) without its own
//! HTTP client (its clients are isahc or hyper 0.14); messages go out through one shared
//! `reqwest` client, the same stack as the rest of the server, with a timeout, no redirects and
//! a bound on requests in flight.

mod apns;
pub mod devices;
mod fcm;
mod native;
mod send;
mod store;

use std::net::IpAddr;

use axum::extract::State;
use axum::http::StatusCode;
use base64::Engine;
use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use reqwest::Url;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use devices::{NativeDeviceView, NewNativeDevice, Platform};
pub use native::{NativeError, NativeMessage, NativeOutcome, NativePush, NativeSetupError};
pub use send::{
    MAX_PAYLOAD_BYTES, PushError, PushFailure, PushOptions, PushOutcome, PushSetupError, Pusher,
    Urgency, send_to_subscription, send_to_user,
};
pub use store::{Subscription, delete_subscription, subscriptions_of};

use crate::AppState;
use crate::config::Settings;
use crate::db::Timestamp;
use crate::error::{AppError, AppResult, Issue, Json};
use crate::policy::{Action, Actor, authorize};

/// Most subscriptions one person keeps; registering another forgets the least recently
/// registered, so a phone reinstalled many times cannot multiply every alert.
pub const MAX_SUBSCRIPTIONS_PER_USER: i64 = 10;

/// Longest endpoint URL accepted (real ones are 150 to 400 characters).
const MAX_ENDPOINT_LEN: usize = 2048;

/// A subscription as its owner sees it (the browser keeps the keys; they are not echoed).
#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct PushSubscriptionView {
    /// Id.
    pub id: i64,
    /// The push service URL that wakes this browser.
    pub endpoint: String,
    /// The owner's name for the device, e.g. "work phone".
    pub label: Option<String>,
    /// When the browser said the subscription lapses, if it did.
    pub expires_at: Option<Timestamp>,
    /// First registered.
    pub created_at: Timestamp,
    /// Last registered again (apps re-register at start).
    pub updated_at: Timestamp,
    /// Last time the push service accepted a message for it (updated at most hourly).
    pub last_success_at: Option<Timestamp>,
    /// Last time sending to it failed.
    pub last_failure_at: Option<Timestamp>,
    /// Failures since the last success.
    pub failures_in_a_row: i64,
}

/// The browser's `PushSubscription.toJSON()`, plus an optional label.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPushSubscription {
    /// The push service URL (https).
    pub endpoint: Option<String>,
    /// The browser's own expiry, milliseconds since the epoch, or null.
    #[serde(rename = "expirationTime")]
    pub expiration_time: Option<f64>,
    /// The browser's keys.
    pub keys: Option<NewPushKeys>,
    /// A name for the device, at most 100 characters.
    pub label: Option<String>,
}

/// `PushSubscription.keys`: base64url, as browsers give them.
#[derive(Debug, Deserialize, ToSchema)]
pub struct NewPushKeys {
    /// The browser's P-256 public key, an uncompressed point (65 bytes).
    pub p256dh: Option<String>,
    /// The browser's authentication secret (16 bytes).
    pub auth: Option<String>,
}

/// Body of `DELETE /push/subscriptions`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RemovePushSubscription {
    /// The endpoint of the subscription to forget.
    pub endpoint: String,
}

/// The key a browser passes to `pushManager.subscribe` as `applicationServerKey`.
#[derive(Debug, Serialize, ToSchema)]
pub struct VapidPublicKey {
    /// Uncompressed P-256 point, base64url without padding.
    pub public_key: String,
}

/// A subscription that passed every check, keys normalised to unpadded base64url.
#[derive(Debug, Clone)]
pub struct ValidSubscription {
    /// The endpoint.
    pub endpoint: String,
    /// The browser's public key.
    pub p256dh: String,
    /// The browser's auth secret.
    pub auth: String,
    /// The device's label.
    pub label: Option<String>,
    /// Unix milliseconds.
    pub expires_at: Option<i64>,
}

/// Routes under `/api/v1/push`, and native apps' devices under `/api/v1/me/devices`.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(vapid_public_key))
        .routes(routes!(list, register, remove))
        .routes(routes!(devices::list_devices))
        .routes(routes!(devices::register_device, devices::remove_device))
}

/// The deployment's VAPID public key, for `pushManager.subscribe({applicationServerKey})`.
#[utoipa::path(get, path = "/push/vapid-public-key", tag = "push", security(("bearer" = [])),
    responses((status = 200, body = VapidPublicKey)))]
async fn vapid_public_key(
    State(state): State<AppState>,
    _actor: Actor,
) -> AppResult<Json<VapidPublicKey>> {
    Ok(Json(VapidPublicKey {
        public_key: state.keys.get().vapid.public_key.clone(),
    }))
}

/// The caller's own push subscriptions.
#[utoipa::path(get, path = "/push/subscriptions", tag = "push", security(("bearer" = [])),
    responses((status = 200, body = [PushSubscriptionView])))]
async fn list(
    State(state): State<AppState>,
    actor: Actor,
) -> AppResult<Json<Vec<PushSubscriptionView>>> {
    authorize(
        &actor,
        Action::ManagePushSubscriptions {
            user_id: actor.user_id,
        },
    )?;
    Ok(Json(store::list(&state.db, actor.user_id).await?))
}

/// Register this browser's subscription for the caller: 201 when new, 200 when the endpoint was
/// known (its keys and label are replaced; a subscription registered by someone else on this
/// browser moves to the caller).
#[utoipa::path(post, path = "/push/subscriptions", tag = "push", security(("bearer" = [])),
    request_body = NewPushSubscription,
    responses((status = 201, body = PushSubscriptionView), (status = 200, body = PushSubscriptionView),
        (status = 422, description = "invalid field, named in `issues`")))]
async fn register(
    State(state): State<AppState>,
    actor: Actor,
    Json(new): Json<NewPushSubscription>,
) -> AppResult<(StatusCode, Json<PushSubscriptionView>)> {
    authorize(
        &actor,
        Action::ManagePushSubscriptions {
            user_id: actor.user_id,
        },
    )?;
    let valid = validate(&new, &state.settings)?;
    let (view, created) = store::upsert(&state.db, actor.user_id, &valid).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(view)))
}

/// Forget one of the caller's subscriptions (on sign-out, or when the user turns alerts off on
/// this device). 204 whether or not it was registered.
#[utoipa::path(delete, path = "/push/subscriptions", tag = "push", security(("bearer" = [])),
    request_body = RemovePushSubscription,
    responses((status = 204, description = "the endpoint no longer receives the caller's pushes")))]
async fn remove(
    State(state): State<AppState>,
    actor: Actor,
    Json(body): Json<RemovePushSubscription>,
) -> AppResult<StatusCode> {
    authorize(
        &actor,
        Action::ManagePushSubscriptions {
            user_id: actor.user_id,
        },
    )?;
    store::remove(&state.db, actor.user_id, &body.endpoint).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Checks a browser subscription, naming each bad field.
pub fn validate(new: &NewPushSubscription, settings: &Settings) -> AppResult<ValidSubscription> {
    let mut issues = Vec::new();
    let endpoint = match new.endpoint.as_deref().map(str::trim) {
        None | Some("") => {
            issues.push(Issue::new("endpoint", "is required"));
            None
        }
        Some(e) => match check_endpoint(e, settings) {
            Ok(()) => Some(e.to_string()),
            Err(reason) => {
                issues.push(Issue::new("endpoint", reason));
                None
            }
        },
    };
    let keys = new.keys.as_ref();
    let p256dh = match keys.and_then(|k| k.p256dh.as_deref()) {
        None => {
            issues.push(Issue::new("keys/p256dh", "is required"));
            None
        }
        Some(raw) => match decode_key(raw, 65) {
            Ok(bytes) if p256::PublicKey::from_sec1_bytes(&bytes).is_ok() && bytes[0] == 4 => {
                Some(URL_SAFE_NO_PAD.encode(bytes))
            }
            Ok(_) => {
                issues.push(Issue::new(
                    "keys/p256dh",
                    "is not an uncompressed point on the P-256 curve",
                ));
                None
            }
            Err(reason) => {
                issues.push(Issue::new("keys/p256dh", reason));
                None
            }
        },
    };
    let auth = match keys.and_then(|k| k.auth.as_deref()) {
        None => {
            issues.push(Issue::new("keys/auth", "is required"));
            None
        }
        Some(raw) => match decode_key(raw, 16) {
            Ok(bytes) => Some(URL_SAFE_NO_PAD.encode(bytes)),
            Err(reason) => {
                issues.push(Issue::new("keys/auth", reason));
                None
            }
        },
    };
    let label = new
        .label
        .as_deref()
        .map(str::trim)
        .filter(|l| !l.is_empty());
    if label.is_some_and(|l| l.chars().count() > 100 || l.chars().any(char::is_control)) {
        issues.push(Issue::new(
            "label",
            "at most 100 characters, without control characters",
        ));
    }
    let expires_at = match new.expiration_time {
        None => None,
        Some(ms) if ms.is_finite() && ms > 0.0 && ms < 1e15 => Some(ms as i64),
        Some(_) => {
            issues.push(Issue::new(
                "expirationTime",
                "must be milliseconds since the epoch, or null",
            ));
            None
        }
    };
    AppError::check(issues)?;
    match (endpoint, p256dh, auth) {
        (Some(endpoint), Some(p256dh), Some(auth)) => Ok(ValidSubscription {
            endpoint,
            p256dh,
            auth,
            label: label.map(str::to_string),
            expires_at,
        }),
        _ => Err(AppError::invalid("body", "incomplete subscription")),
    }
}

/// Base64url (padded or not, as browsers and libraries differ) of exactly `len` bytes.
fn decode_key(raw: &str, len: usize) -> Result<Vec<u8>, String> {
    let raw = raw.trim();
    let bytes = if raw.ends_with('=') {
        URL_SAFE.decode(raw)
    } else {
        URL_SAFE_NO_PAD.decode(raw)
    }
    .map_err(|_| "is not base64url".to_string())?;
    if bytes.len() == len {
        Ok(bytes)
    } else {
        Err(format!("must be {len} bytes, not {}", bytes.len()))
    }
}

/// The rules every endpoint meets, at registration and again before each send (the setting may
/// have changed since): an https URL on a named host. The server posts to whatever URL a user
/// registers, so a plain-http or IP-literal endpoint would let any signed-in user aim it at
/// services inside the deployment's network; real push services (FCM, Mozilla, Apple,
/// Microsoft) are all https on DNS names. `push_allow_insecure_localhost` admits http on the
/// loopback interface, for tests and development.
pub fn check_endpoint(endpoint: &str, settings: &Settings) -> Result<(), String> {
    if endpoint.len() > MAX_ENDPOINT_LEN {
        return Err(format!("at most {MAX_ENDPOINT_LEN} characters"));
    }
    let url = Url::parse(endpoint).map_err(|e| format!("is not a URL: {e}"))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not carry credentials".into());
    }
    let host = url.host_str().ok_or("has no host")?;
    let ip: Option<IpAddr> = host.trim_matches(['[', ']']).parse().ok();
    let loopback = match ip {
        Some(ip) => ip.is_loopback(),
        None => host.eq_ignore_ascii_case("localhost"),
    };
    if loopback {
        return if settings.push_allow_insecure_localhost {
            Ok(())
        } else {
            Err("must be a push service on the internet, not this machine".into())
        };
    }
    if ip.is_some() {
        return Err("must name its host, not an IP address".into());
    }
    if url.scheme() != "https" {
        return Err("must be an https URL".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn browser_keys() -> (String, String) {
        let secret = p256::SecretKey::random(&mut rand::rngs::OsRng);
        let point = p256::elliptic_curve::sec1::ToEncodedPoint::to_encoded_point(
            &secret.public_key(),
            false,
        );
        (
            URL_SAFE_NO_PAD.encode(point.as_bytes()),
            URL_SAFE_NO_PAD.encode([7u8; 16]),
        )
    }

    fn sub(endpoint: &str, p256dh: &str, auth: &str) -> NewPushSubscription {
        NewPushSubscription {
            endpoint: Some(endpoint.into()),
            expiration_time: None,
            keys: Some(NewPushKeys {
                p256dh: Some(p256dh.into()),
                auth: Some(auth.into()),
            }),
            label: None,
        }
    }

    fn issues_of(r: AppResult<ValidSubscription>) -> Vec<String> {
        match r {
            Err(AppError::Invalid { issues, .. }) => issues.into_iter().map(|i| i.at).collect(),
            other => panic!("expected 422, got {other:?}"),
        }
    }

    #[test]
    fn endpoints_must_be_https_on_a_named_host_unless_loopback_is_allowed() {
        let strict = Settings::default();
        let lenient = Settings {
            push_allow_insecure_localhost: true,
            ..Settings::default()
        };
        let ok = "https://fcm.googleapis.com/fcm/send/abc";
        assert_eq!(check_endpoint(ok, &strict), Ok(()));
        for bad in [
            "http://fcm.googleapis.com/fcm/send/abc",
            "https://10.0.0.5/push",
            "https://[fd00::1]/push",
            "http://127.0.0.1:8080/push",
            "https://localhost/push",
            "https://user:pw@push.example/x",
            "not a url",
        ] {
            assert!(check_endpoint(bad, &strict).is_err(), "{bad}");
        }
        assert_eq!(
            check_endpoint("http://127.0.0.1:8080/push", &lenient),
            Ok(())
        );
        assert_eq!(
            check_endpoint("http://localhost:8080/push", &lenient),
            Ok(())
        );
        assert_eq!(check_endpoint("http://[::1]:8080/push", &lenient), Ok(()));
        assert!(check_endpoint("http://10.0.0.5/push", &lenient).is_err());
    }

    #[test]
    fn keys_are_checked_for_length_and_curve_and_normalised() {
        let settings = Settings::default();
        let (p256dh, auth) = browser_keys();
        let padded_auth = URL_SAFE.encode([7u8; 16]);
        let ok = validate(
            &sub("https://push.example/a", &p256dh, &padded_auth),
            &settings,
        )
        .expect("valid");
        assert_eq!(ok.auth, auth);
        let short = URL_SAFE_NO_PAD.encode([4u8; 33]);
        assert_eq!(
            issues_of(validate(
                &sub("https://push.example/a", &short, "AAAA"),
                &settings
            )),
            ["keys/p256dh", "keys/auth"]
        );
        let mut off_curve = vec![4u8];
        off_curve.extend([1u8; 64]);
        assert_eq!(
            issues_of(validate(
                &sub(
                    "https://push.example/a",
                    &URL_SAFE_NO_PAD.encode(off_curve),
                    &auth
                ),
                &settings
            )),
            ["keys/p256dh"]
        );
        let missing = NewPushSubscription {
            endpoint: None,
            expiration_time: Some(-1.0),
            keys: None,
            label: Some("x".repeat(101)),
        };
        assert_eq!(
            issues_of(validate(&missing, &settings)),
            [
                "endpoint",
                "keys/p256dh",
                "keys/auth",
                "label",
                "expirationTime"
            ]
        );
    }
}
