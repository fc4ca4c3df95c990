//! Firebase Cloud Messaging, HTTP v1 API: an OAuth2 access token from a service account's key
//! (a signed RS256 assertion exchanged at the key's `token_uri`), then one POST per message.

use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::native::{NativeError, NativeMessage, NativeSetupError, read_answer};

/// The scope FCM's send API asks for.
const SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";
/// An access token is dropped this long before Google says it expires, so a message never
/// leaves with a token that lapses on the way.
const TOKEN_MARGIN: Duration = Duration::from_secs(300);

/// The fields of a Google service-account JSON key that signing needs.
#[derive(Deserialize)]
struct ServiceAccount {
    #[serde(rename = "type")]
    kind: Option<String>,
    project_id: String,
    private_key_id: Option<String>,
    private_key: String,
    client_email: String,
    token_uri: String,
}

#[derive(Serialize)]
struct Assertion<'a> {
    iss: &'a str,
    scope: &'a str,
    aud: &'a str,
    iat: u64,
    exp: u64,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    expires_in: Option<u64>,
}

/// The FCM sender of one Firebase project.
pub(super) struct Fcm {
    http: reqwest::Client,
    project_id: String,
    client_email: String,
    key_id: Option<String>,
    key: EncodingKey,
    token_uri: String,
    send_url: String,
    /// One refresh at a time: during a crisis every message waits for the same new token
    /// instead of each asking Google for its own.
    token: tokio::sync::Mutex<Option<(String, Instant)>>,
}

impl Fcm {
    /// Reads the service account's key from `json`, naming `setting` in any error.
    pub(super) fn new(
        json: &str,
        setting: &'static str,
        base_url: &str,
        http: reqwest::Client,
    ) -> Result<Fcm, NativeSetupError> {
        let bad = |why: String| NativeSetupError::Invalid { setting, why };
        let account: ServiceAccount = serde_json::from_str(json)
            .map_err(|e| bad(format!("is not a service-account JSON key: {e}")))?;
        if account
            .kind
            .as_deref()
            .is_some_and(|k| k != "service_account")
        {
            return Err(bad(format!(
                "is a {:?} key, not a service_account key",
                account.kind.unwrap_or_default()
            )));
        }
        if account.project_id.trim().is_empty() || account.client_email.trim().is_empty() {
            return Err(bad("has no project_id or client_email".into()));
        }
        reqwest::Url::parse(&account.token_uri)
            .map_err(|e| bad(format!("has a token_uri that is not a URL: {e}")))?;
        let key = EncodingKey::from_rsa_pem(account.private_key.as_bytes())
            .map_err(|e| bad(format!("has a private_key that is not an RSA PEM key: {e}")))?;
        let base = base_url.trim_end_matches('/');
        reqwest::Url::parse(base).map_err(|e| NativeSetupError::Invalid {
            setting: "fcm_base_url",
            why: format!("is not a URL: {e}"),
        })?;
        Ok(Fcm {
            http,
            send_url: format!("{base}/v1/projects/{}/messages:send", account.project_id),
            project_id: account.project_id,
            client_email: account.client_email,
            key_id: account.private_key_id,
            key,
            token_uri: account.token_uri,
            token: tokio::sync::Mutex::new(None),
        })
    }

    /// The Firebase project messages go to.
    pub(super) fn project_id(&self) -> &str {
        &self.project_id
    }

    /// A cached access token, or a fresh one from the token endpoint.
    async fn access_token(&self) -> Result<String, NativeError> {
        let mut cached = self.token.lock().await;
        if let Some((token, until)) = cached.as_ref()
            && Instant::now() < *until
        {
            return Ok(token.clone());
        }
        let iat = jsonwebtoken::get_current_timestamp();
        let claims = Assertion {
            iss: &self.client_email,
            scope: SCOPE,
            aud: &self.token_uri,
            iat,
            exp: iat + 3600,
        };
        let mut header = Header::new(Algorithm::RS256);
        header.kid = self.key_id.clone();
        let assertion = jsonwebtoken::encode(&header, &claims, &self.key)
            .map_err(|e| NativeError::Auth(format!("signing the assertion: {e}")))?;
        let response = self
            .http
            .post(&self.token_uri)
            .form(&[
                ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                ("assertion", assertion.as_str()),
            ])
            .send()
            .await
            .map_err(|e| NativeError::Unreachable(format!("token endpoint: {e}")))?;
        let status = response.status();
        if !status.is_success() {
            let (_, detail) = read_answer(response).await;
            return Err(if status.is_server_error() {
                NativeError::Unavailable {
                    status: status.as_u16(),
                }
            } else {
                NativeError::Auth(format!("token endpoint answered {status}: {detail}"))
            });
        }
        let answer: TokenAnswer = response
            .json()
            .await
            .map_err(|e| NativeError::Auth(format!("token endpoint's answer: {e}")))?;
        let lifetime = Duration::from_secs(answer.expires_in.unwrap_or(3600));
        let until = Instant::now() + lifetime.saturating_sub(TOKEN_MARGIN);
        *cached = Some((answer.access_token.clone(), until));
        tracing::debug!(project = %self.project_id, ?lifetime, "FCM access token obtained");
        Ok(answer.access_token)
    }

    /// Sends `message` to the app instance holding `token`.
    pub(super) async fn send(
        &self,
        token: &str,
        message: &NativeMessage,
    ) -> Result<(), NativeError> {
        let access = self.access_token().await?;
        let ttl = message.ttl_secs();
        // Data only, so the app's own code runs on arrival, fetches the alert and shows it in
        // the person's language; high priority is what wakes a phone in Doze.
        let body = json!({
            "message": {
                "token": token,
                "data": {
                    "type": "alert",
                    "alert_id": message.alert_id.to_string(),
                    "title": message.title,
                    "body": message.body,
                    "severity": message.severity,
                },
                "android": {
                    "priority": "HIGH",
                    "ttl": format!("{ttl}s"),
                    "collapse_key": format!("alert{}", message.alert_id),
                },
            }
        });
        let response = self
            .http
            .post(&self.send_url)
            .bearer_auth(&access)
            .json(&body)
            .send()
            .await
            .map_err(|e| NativeError::Unreachable(e.to_string()))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let (retry_after, detail) = read_answer(response).await;
        if status == StatusCode::UNAUTHORIZED {
            // Revoked or rotated on Google's side: the next message asks for a new token.
            *self.token.lock().await = None;
        }
        Err(
            if status == StatusCode::NOT_FOUND || detail.contains("UNREGISTERED") {
                NativeError::Gone {
                    status: status.as_u16(),
                    reason: "UNREGISTERED".into(),
                }
            } else if status == StatusCode::TOO_MANY_REQUESTS {
                NativeError::RateLimited { retry_after }
            } else if status.is_server_error() {
                NativeError::Unavailable {
                    status: status.as_u16(),
                }
            } else {
                NativeError::Rejected {
                    status: status.as_u16(),
                    detail,
                }
            },
        )
    }
}
