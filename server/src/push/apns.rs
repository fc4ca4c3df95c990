//! Apple Push Notification service: HTTP/2 `POST /3/device/{token}` with token-based
//! authentication (an ES256 provider token signed with the team's `.p8` key).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use serde::Serialize;
use serde_json::json;

use super::native::{NativeError, NativeMessage, NativeSetupError, read_answer};

/// Apple refuses provider tokens older than an hour and throttles ones renewed more often
/// than every twenty minutes; fifty minutes sits between.
const TOKEN_REUSE: Duration = Duration::from_secs(50 * 60);
/// Apple's hosts.
const PRODUCTION: &str = "https://api.push.apple.com";
const SANDBOX: &str = "https://api.sandbox.push.apple.com";

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    iat: u64,
}

/// The APNs sender of one developer team.
pub(super) struct Apns {
    http: reqwest::Client,
    key: EncodingKey,
    key_id: String,
    team_id: String,
    topic: String,
    base_url: String,
    token: Mutex<Option<(String, Instant)>>,
}

impl Apns {
    /// Checks the settings and reads the key; each error names its setting.
    pub(super) fn new(
        settings: &crate::Settings,
        timeout: Duration,
    ) -> Result<Apns, NativeSetupError> {
        let invalid = |setting: &'static str, why: &str| NativeSetupError::Invalid {
            setting,
            why: why.to_string(),
        };
        let ten = |v: &str| v.len() == 10 && v.bytes().all(|b| b.is_ascii_alphanumeric());
        let key_id = settings.apns_key_id.trim();
        let team_id = settings.apns_team_id.trim();
        let topic = settings.apns_topic.trim();
        if settings.apns_key_file.trim().is_empty() {
            return Err(invalid("apns_key_file", "is required when APNs is set up"));
        }
        if !ten(key_id) {
            return Err(invalid("apns_key_id", "must be the key's 10-character id"));
        }
        if !ten(team_id) {
            return Err(invalid("apns_team_id", "must be the 10-character team id"));
        }
        if topic.is_empty() {
            return Err(invalid("apns_topic", "must be the app's bundle id"));
        }
        let pem = std::fs::read(settings.apns_key_file.trim()).map_err(|e| {
            NativeSetupError::Invalid {
                setting: "apns_key_file",
                why: format!("cannot be read: {e}"),
            }
        })?;
        let key = EncodingKey::from_ec_pem(&pem).map_err(|e| NativeSetupError::Invalid {
            setting: "apns_key_file",
            why: format!("is not a .p8 (PKCS#8 P-256) key: {e}"),
        })?;
        let base_url = match settings.apns_base_url.trim().trim_end_matches('/') {
            "" if settings.apns_sandbox => SANDBOX.to_string(),
            "" => PRODUCTION.to_string(),
            other => other.to_string(),
        };
        let url = reqwest::Url::parse(&base_url)
            .map_err(|e| invalid("apns_base_url", &format!("is not a URL: {e}")))?;
        let builder = reqwest::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("vigil/", env!("CARGO_PKG_VERSION")));
        // Apple speaks only HTTP/2, agreed through TLS's ALPN; a plain-http base URL (the test
        // fake) has no ALPN, so HTTP/2 is assumed from the first byte.
        let builder = if url.scheme() == "http" {
            builder.http2_prior_knowledge()
        } else {
            builder
        };
        let http = builder
            .build()
            .map_err(|e| invalid("apns_base_url", &format!("HTTP client: {e}")))?;
        Ok(Apns {
            http,
            key,
            key_id: key_id.to_string(),
            team_id: team_id.to_string(),
            topic: topic.to_string(),
            base_url,
            token: Mutex::new(None),
        })
    }

    /// The provider token, renewed every [`TOKEN_REUSE`].
    fn provider_token(&self) -> Result<String, NativeError> {
        if let Ok(cached) = self.token.lock()
            && let Some((token, made)) = cached.as_ref()
            && made.elapsed() < TOKEN_REUSE
        {
            return Ok(token.clone());
        }
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.key_id.clone());
        let claims = Claims {
            iss: &self.team_id,
            iat: jsonwebtoken::get_current_timestamp(),
        };
        let token = jsonwebtoken::encode(&header, &claims, &self.key)
            .map_err(|e| NativeError::Auth(format!("signing the provider token: {e}")))?;
        if let Ok(mut cached) = self.token.lock() {
            *cached = Some((token.clone(), Instant::now()));
        }
        Ok(token)
    }

    fn forget_token(&self) {
        if let Ok(mut cached) = self.token.lock() {
            *cached = None;
        }
    }

    /// Sends `message` to the device holding `token`; `app_id` is its bundle id, if the app
    /// gave one.
    pub(super) async fn send(
        &self,
        token: &str,
        app_id: Option<&str>,
        message: &NativeMessage,
    ) -> Result<(), NativeError> {
        let provider = self.provider_token()?;
        // `mutable-content` hands the notification to the app's service extension, which
        // fetches the whole alert and confirms it before it is shown.
        let body = json!({
            "aps": {
                "alert": {"title": message.title, "body": message.body},
                "sound": "default",
                "mutable-content": 1,
                "interruption-level": "time-sensitive",
            },
            "type": "alert",
            "alert_id": message.alert_id,
            "severity": message.severity,
        });
        let url = format!("{}/3/device/{token}", self.base_url);
        let response = self
            .http
            .post(url)
            .bearer_auth(&provider)
            .header("apns-topic", app_id.unwrap_or(&self.topic))
            .header("apns-push-type", "alert")
            .header("apns-priority", "10")
            .header("apns-expiration", message.expires_at_secs().to_string())
            .header("apns-collapse-id", format!("alert-{}", message.alert_id))
            .json(&body)
            .send()
            .await
            .map_err(|e| NativeError::Unreachable(e.to_string()))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let (retry_after, detail) = read_answer(response).await;
        let reason = serde_json::from_str::<serde_json::Value>(&detail)
            .ok()
            .and_then(|v| v["reason"].as_str().map(str::to_string))
            .unwrap_or_default();
        if reason == "ExpiredProviderToken" || reason == "InvalidProviderToken" {
            self.forget_token();
        }
        Err(match status {
            StatusCode::GONE => NativeError::Gone {
                status: 410,
                reason,
            },
            StatusCode::BAD_REQUEST if reason == "BadDeviceToken" => NativeError::Gone {
                status: 400,
                reason,
            },
            StatusCode::TOO_MANY_REQUESTS => NativeError::RateLimited { retry_after },
            s if s.is_server_error() => NativeError::Unavailable { status: s.as_u16() },
            s => NativeError::Rejected {
                status: s.as_u16(),
                detail,
            },
        })
    }
}
