//! Text messages: the fallback channel for people without a smartphone or without data.
//!
//! One [`Sms`] gateway, chosen by `sms_provider`: `generic` speaks to any HTTP gateway described
//! by settings (URL, method, one auth header, a body template), `twilio` to Twilio's Messages
//! API. [`Sms::send`] sends one text to one E.164 number and says what it cost in
//! [`segments`]; its [`SmsError`] tells a permanent refusal (bad number, bad credentials: do not
//! retry) from a transient failure (5xx, 429, timeout: retry later). At most `sms_concurrency`
//! texts are in flight to the gateway at once from a node, whoever sends them; the rest wait
//! their turn instead of all leaving at once and being throttled. Nothing here touches the
//! database: the alert ledger counts messages and segments per recipient.

mod segments;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{HeaderName, HeaderValue, RETRY_AFTER};
use reqwest::{Method, StatusCode, Url};
use serde_json::Value;
use tokio::sync::Semaphore;

pub use segments::{SmsEncoding, SmsSegments, segments};

use crate::config::{Settings, SmsBodyFormat, SmsProvider};

/// Longest text accepted, in characters: Twilio's limit, and about the ten segments most
/// networks will reassemble.
pub const MAX_TEXT_CHARS: usize = 1600;

/// A configured SMS gateway (or none); cheap to clone.
#[derive(Clone)]
pub struct Sms {
    gateway: Option<Arc<Gateway>>,
}

struct Gateway {
    http: reqwest::Client,
    /// Texts in flight to the gateway, at most `sms_concurrency`.
    in_flight: Semaphore,
    from: String,
    kind: Provider,
}

enum Provider {
    Generic(Generic),
    Twilio(Twilio),
}

struct Generic {
    url: Url,
    method: Method,
    auth: Option<(HeaderName, HeaderValue)>,
    format: SmsBodyFormat,
    /// The body template, parsed once: placeholders are filled inside its string values, so a
    /// text with quotes or ampersands can never break the document's syntax.
    body: Value,
    id_pointer: Option<String>,
}

struct Twilio {
    messages_url: Url,
    account_sid: String,
    auth_token: String,
}

/// A message the gateway accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmsSent {
    /// The gateway's id for the message, when it gives one (Twilio's `sid`, or the value at
    /// `sms_generic_id_pointer`).
    pub provider_id: Option<String>,
    /// What the text costs.
    pub segments: SmsSegments,
}

/// Why a text was not sent.
#[derive(Debug, thiserror::Error)]
pub enum SmsError {
    /// `sms_provider` is `none`.
    #[error("SMS is not configured (sms_provider = \"none\")")]
    Disabled,
    /// Sending again will not help: the number or text is invalid, or the gateway refused the
    /// request (4xx, including rejected credentials).
    #[error("the SMS was refused{}: {detail}", status_note(*.status))]
    Permanent {
        /// The gateway's HTTP status, when it answered.
        status: Option<u16>,
        /// What was wrong.
        detail: String,
    },
    /// The gateway failed or did not answer (5xx, 408, 429, timeout, connection); a retry may
    /// succeed. After a timeout the gateway may have sent the message all the same.
    #[error("the SMS gateway failed{}: {detail}", status_note(*.status))]
    Transient {
        /// The gateway's HTTP status, when it answered.
        status: Option<u16>,
        /// What happened.
        detail: String,
        /// How long the gateway asked us to wait (`Retry-After`), if it said.
        retry_after: Option<Duration>,
    },
}

fn status_note(status: Option<u16>) -> String {
    status.map(|s| format!(" (HTTP {s})")).unwrap_or_default()
}

impl SmsError {
    /// True when retrying the same message cannot succeed.
    pub fn is_permanent(&self) -> bool {
        !matches!(self, SmsError::Transient { .. })
    }

    /// How long the gateway asked us to wait before trying again.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            SmsError::Transient { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    fn permanent(status: Option<u16>, detail: impl Into<String>) -> Self {
        SmsError::Permanent {
            status,
            detail: detail.into(),
        }
    }
}

/// A setting that makes no sense for the chosen gateway; the server refuses to start with it.
#[derive(Debug, thiserror::Error)]
#[error("invalid SMS settings: {setting}: {reason}")]
pub struct SmsConfigError {
    /// The setting at fault.
    pub setting: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

fn config_error(setting: &'static str, reason: impl Into<String>) -> SmsConfigError {
    SmsConfigError {
        setting,
        reason: reason.into(),
    }
}

impl fmt::Debug for Sms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sms")
            .field("provider", &self.provider())
            .finish_non_exhaustive()
    }
}

impl Sms {
    /// No gateway: every send answers [`SmsError::Disabled`].
    pub fn disabled() -> Sms {
        Sms { gateway: None }
    }

    /// The gateway the settings describe, checked now so that a misconfiguration stops the
    /// server at start rather than the first alert.
    pub fn from_settings(settings: &Settings) -> Result<Sms, SmsConfigError> {
        let kind = match settings.sms_provider {
            SmsProvider::None => return Ok(Sms::disabled()),
            SmsProvider::Generic => Provider::Generic(Generic::from_settings(settings)?),
            SmsProvider::Twilio => Provider::Twilio(Twilio::from_settings(settings)?),
        };
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(settings.sms_timeout_secs.max(1)))
            // A gateway that redirects is misconfigured; following it would resend credentials.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("vigil/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| config_error("sms_provider", format!("HTTP client: {e}")))?;
        Ok(Sms {
            gateway: Some(Arc::new(Gateway {
                http,
                in_flight: Semaphore::new(settings.sms_concurrency.max(1)),
                from: settings.sms_from.trim().to_string(),
                kind,
            })),
        })
    }

    /// True unless `sms_provider` is `none`.
    pub fn is_enabled(&self) -> bool {
        self.gateway.is_some()
    }

    /// Which gateway this is.
    pub fn provider(&self) -> SmsProvider {
        match self.gateway.as_deref().map(|g| &g.kind) {
            None => SmsProvider::None,
            Some(Provider::Generic(_)) => SmsProvider::Generic,
            Some(Provider::Twilio(_)) => SmsProvider::Twilio,
        }
    }

    /// Sends `text` to `to_e164` (`+` and 7 to 15 digits; spaces and dashes are dropped).
    pub async fn send(&self, to_e164: &str, text: &str) -> Result<SmsSent, SmsError> {
        let gateway = self.gateway.as_deref().ok_or(SmsError::Disabled)?;
        let to = crate::users::store::normalize_phone(to_e164)
            .map_err(|e| SmsError::permanent(None, e))?;
        if text.trim().is_empty() {
            return Err(SmsError::permanent(None, "the text is empty"));
        }
        let chars = text.chars().count();
        if chars > MAX_TEXT_CHARS {
            return Err(SmsError::permanent(
                None,
                format!("the text is {chars} characters; at most {MAX_TEXT_CHARS} are sent"),
            ));
        }
        let request = match &gateway.kind {
            Provider::Generic(g) => g.request(&gateway.http, &gateway.from, &to, text),
            Provider::Twilio(t) => t.request(&gateway.http, &gateway.from, &to, text),
        };
        // Held until the answer is read: the gateway sees at most this many requests at once.
        let permit = gateway
            .in_flight
            .acquire()
            .await
            .map_err(|_| SmsError::Transient {
                status: None,
                detail: "the SMS sender is closed".into(),
                retry_after: None,
            })?;
        let response = request.send().await.map_err(transport_error)?;
        let status = response.status();
        let retry_after = retry_after(response.headers());
        // Gateways answer small documents; a huge one is cut rather than held in memory.
        let body = read_capped(response, 64 * 1024).await;
        drop(permit);
        if !status.is_success() {
            let twilio = matches!(gateway.kind, Provider::Twilio(_));
            return Err(classify(status, retry_after, &body, twilio));
        }
        let provider_id = match &gateway.kind {
            Provider::Generic(g) => g.message_id(&body),
            Provider::Twilio(_) => json_string_at(&body, "/sid"),
        };
        let sent = SmsSent {
            provider_id,
            segments: segments(text),
        };
        tracing::debug!(provider = ?self.provider(), id = ?sent.provider_id, segments = sent.segments.segments, "SMS sent");
        Ok(sent)
    }
}

impl Generic {
    fn from_settings(s: &Settings) -> Result<Generic, SmsConfigError> {
        let url = Url::parse(s.sms_generic_url.trim())
            .map_err(|e| config_error("sms_generic_url", e.to_string()))?;
        if !matches!(url.scheme(), "https" | "http") {
            return Err(config_error("sms_generic_url", "must be an http(s) URL"));
        }
        let method = match s.sms_generic_method.trim().to_ascii_uppercase().as_str() {
            "POST" => Method::POST,
            "PUT" => Method::PUT,
            "GET" => Method::GET,
            other => {
                return Err(config_error(
                    "sms_generic_method",
                    format!("{other:?} is not POST, PUT or GET"),
                ));
            }
        };
        if method == Method::GET && s.sms_generic_format == SmsBodyFormat::Json {
            return Err(config_error(
                "sms_generic_format",
                "a GET request carries its fields in the query string: use \"form\"",
            ));
        }
        let auth = match s.sms_generic_auth_header.trim() {
            "" => None,
            header => {
                let (name, value) = header.split_once(':').ok_or_else(|| {
                    config_error("sms_generic_auth_header", "expected `Name: value`")
                })?;
                let name = HeaderName::from_bytes(name.trim().as_bytes())
                    .map_err(|e| config_error("sms_generic_auth_header", e.to_string()))?;
                let mut value = HeaderValue::from_str(value.trim())
                    .map_err(|e| config_error("sms_generic_auth_header", e.to_string()))?;
                value.set_sensitive(true);
                Some((name, value))
            }
        };
        let body: Value = serde_json::from_str(&s.sms_generic_body).map_err(|e| {
            config_error(
                "sms_generic_body",
                format!(
                    "not a JSON document ({e}); a form body is written as a JSON object of strings"
                ),
            )
        })?;
        if s.sms_generic_format == SmsBodyFormat::Form {
            let flat = body
                .as_object()
                .is_some_and(|o| o.values().all(Value::is_string));
            if !flat {
                return Err(config_error(
                    "sms_generic_body",
                    "a form body is a JSON object whose values are all strings",
                ));
            }
        }
        let template = body.to_string();
        for needed in ["{to}", "{text}"] {
            if !template.contains(needed) {
                return Err(config_error(
                    "sms_generic_body",
                    format!("has no {needed} placeholder"),
                ));
            }
        }
        let id_pointer = match s.sms_generic_id_pointer.trim() {
            "" => None,
            p if p.starts_with('/') => Some(p.to_string()),
            p => {
                return Err(config_error(
                    "sms_generic_id_pointer",
                    format!("{p:?} is not a JSON pointer (it starts with /)"),
                ));
            }
        };
        Ok(Generic {
            url,
            method,
            auth,
            format: s.sms_generic_format,
            body,
            id_pointer,
        })
    }

    fn request(
        &self,
        http: &reqwest::Client,
        from: &str,
        to: &str,
        text: &str,
    ) -> reqwest::RequestBuilder {
        let filled = fill(&self.body, &[("to", to), ("from", from), ("text", text)]);
        let mut req = http.request(self.method.clone(), self.url.clone());
        if let Some((name, value)) = &self.auth {
            req = req.header(name.clone(), value.clone());
        }
        match self.format {
            SmsBodyFormat::Json => req.json(&filled),
            SmsBodyFormat::Form => {
                let fields: Vec<(String, String)> = filled
                    .as_object()
                    .map(|o| {
                        o.iter()
                            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                            .collect()
                    })
                    .unwrap_or_default();
                if self.method == Method::GET {
                    req.query(&fields)
                } else {
                    req.form(&fields)
                }
            }
        }
    }

    fn message_id(&self, body: &str) -> Option<String> {
        let pointer = self.id_pointer.as_deref()?;
        let id = json_string_at(body, pointer);
        if id.is_none() {
            tracing::warn!(
                pointer,
                "the SMS gateway accepted the message but its answer has no id there"
            );
        }
        id
    }
}

impl Twilio {
    fn from_settings(s: &Settings) -> Result<Twilio, SmsConfigError> {
        let sid = s.sms_twilio_account_sid.trim();
        // The SID becomes a path segment: only the characters Twilio uses (AC + 32 hex).
        if sid.is_empty() || !sid.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(config_error(
                "sms_twilio_account_sid",
                "must be the account SID (AC followed by 32 hexadecimal digits)",
            ));
        }
        if s.sms_twilio_auth_token.trim().is_empty() {
            return Err(config_error("sms_twilio_auth_token", "is empty"));
        }
        if s.sms_from.trim().is_empty() {
            return Err(config_error(
                "sms_from",
                "Twilio needs a sender: a Twilio number, an alphanumeric id or a messaging service SID (MG…)",
            ));
        }
        let base = s.sms_twilio_base_url.trim().trim_end_matches('/');
        let messages_url = Url::parse(&format!("{base}/2010-04-01/Accounts/{sid}/Messages.json"))
            .map_err(|e| config_error("sms_twilio_base_url", e.to_string()))?;
        Ok(Twilio {
            messages_url,
            account_sid: sid.to_string(),
            auth_token: s.sms_twilio_auth_token.trim().to_string(),
        })
    }

    fn request(
        &self,
        http: &reqwest::Client,
        from: &str,
        to: &str,
        text: &str,
    ) -> reqwest::RequestBuilder {
        // A messaging service picks the sender itself from its number pool.
        let sender = if is_messaging_service_sid(from) {
            "MessagingServiceSid"
        } else {
            "From"
        };
        http.post(self.messages_url.clone())
            .basic_auth(&self.account_sid, Some(&self.auth_token))
            .form(&[("To", to), (sender, from), ("Body", text)])
    }
}

fn is_messaging_service_sid(from: &str) -> bool {
    from.len() == 34 && from.starts_with("MG") && from[2..].chars().all(|c| c.is_ascii_hexdigit())
}

/// `template` with every `{name}` in its string values replaced, in one pass, so that a text
/// containing `{to}` stays as written.
fn fill(template: &Value, vars: &[(&str, &str)]) -> Value {
    match template {
        Value::String(s) => Value::String(fill_str(s, vars)),
        Value::Array(items) => Value::Array(items.iter().map(|v| fill(v, vars)).collect()),
        Value::Object(fields) => Value::Object(
            fields
                .iter()
                .map(|(k, v)| (k.clone(), fill(v, vars)))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn fill_str(template: &str, vars: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    'scan: while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let tail = &rest[open..];
        for (name, value) in vars {
            if let Some(after) = tail
                .strip_prefix('{')
                .and_then(|t| t.strip_prefix(name))
                .and_then(|t| t.strip_prefix('}'))
            {
                out.push_str(value);
                rest = after;
                continue 'scan;
            }
        }
        out.push('{');
        rest = &tail[1..];
    }
    out.push_str(rest);
    out
}

/// The string (or number) at `pointer` in a JSON `body`.
fn json_string_at(body: &str, pointer: &str) -> Option<String> {
    let doc: Value = serde_json::from_str(body).ok()?;
    match doc.pointer(pointer)? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn transport_error(e: reqwest::Error) -> SmsError {
    if e.is_builder() {
        return SmsError::permanent(None, format!("the request could not be built: {e}"));
    }
    let what = if e.is_timeout() {
        "no answer in time (the gateway may still send it)"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "the connection failed"
    };
    SmsError::Transient {
        status: None,
        detail: format!("{what}: {e}"),
        retry_after: None,
    }
}

fn classify(
    status: StatusCode,
    retry_after: Option<Duration>,
    body: &str,
    twilio: bool,
) -> SmsError {
    // Twilio explains itself: {"code": 21211, "message": "The 'To' number … is not valid"}.
    let explained = twilio
        .then(|| json_string_at(body, "/message"))
        .flatten()
        .map(|message| match json_string_at(body, "/code") {
            Some(code) => format!("Twilio error {code}: {message}"),
            None => message,
        });
    let detail = explained.unwrap_or_else(|| snippet(body));
    let transient = status.is_server_error()
        || status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT;
    if transient {
        SmsError::Transient {
            status: Some(status.as_u16()),
            detail,
            retry_after,
        }
    } else {
        SmsError::permanent(Some(status.as_u16()), detail)
    }
}

fn snippet(body: &str) -> String {
    let trimmed = body.trim();
    if trimmed.is_empty() {
        return "no explanation".into();
    }
    trimmed.chars().take(300).collect()
}

/// `Retry-After` in seconds; an HTTP date is rare from gateways and ignored.
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

async fn read_capped(mut response: reqwest::Response, cap: usize) -> String {
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        let room = cap.saturating_sub(body.len());
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= cap {
            break;
        }
    }
    String::from_utf8_lossy(&body).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn placeholders_are_filled_once_and_only_in_values() {
        let template = json!({"msisdn": "{to}", "sender": "{from}", "body": "Vigil: {text}",
            "meta": {"tags": ["{unknown}", "{to}"]}, "count": 1});
        let filled = fill(
            &template,
            &[
                ("to", "+254700000001"),
                ("from", "VIGIL"),
                ("text", "say {to} \"now\" & go"),
            ],
        );
        assert_eq!(
            filled,
            json!({"msisdn": "+254700000001", "sender": "VIGIL", "body": "Vigil: say {to} \"now\" & go",
                "meta": {"tags": ["{unknown}", "+254700000001"]}, "count": 1})
        );
        assert_eq!(fill_str("{{to}}", &[("to", "x")]), "{x}");
        assert_eq!(fill_str("{", &[("to", "x")]), "{");
    }

    fn generic(tweak: impl FnOnce(&mut Settings)) -> Result<Sms, SmsConfigError> {
        let mut s = Settings {
            sms_provider: SmsProvider::Generic,
            sms_generic_url: "https://sms.example/send".into(),
            ..Settings::default()
        };
        tweak(&mut s);
        Sms::from_settings(&s)
    }

    type Tweak = Box<dyn FnOnce(&mut Settings)>;

    #[test]
    fn misconfigured_gateways_are_refused_at_start_naming_the_setting() {
        assert!(generic(|_| {}).is_ok());
        let cases: Vec<(&str, Tweak)> = vec![
            (
                "sms_generic_url",
                Box::new(|s| s.sms_generic_url = "ftp://x/".into()),
            ),
            (
                "sms_generic_method",
                Box::new(|s| s.sms_generic_method = "PATCH".into()),
            ),
            (
                "sms_generic_format",
                Box::new(|s| s.sms_generic_method = "GET".into()),
            ),
            (
                "sms_generic_auth_header",
                Box::new(|s| s.sms_generic_auth_header = "Bearer x".into()),
            ),
            (
                "sms_generic_body",
                Box::new(|s| s.sms_generic_body = "to={to}".into()),
            ),
            (
                "sms_generic_body",
                Box::new(|s| s.sms_generic_body = r#"{"to": "{to}"}"#.into()),
            ),
            (
                "sms_generic_body",
                Box::new(|s| {
                    s.sms_generic_format = SmsBodyFormat::Form;
                    s.sms_generic_body = r#"{"to": "{to}", "text": "{text}", "n": 1}"#.into();
                }),
            ),
            (
                "sms_generic_id_pointer",
                Box::new(|s| s.sms_generic_id_pointer = "id".into()),
            ),
        ];
        for (setting, tweak) in cases {
            let err = generic(tweak).expect_err(setting);
            assert_eq!(err.setting, setting, "{err}");
        }
        let twilio = |tweak: Tweak| {
            let mut s = Settings {
                sms_provider: SmsProvider::Twilio,
                sms_twilio_account_sid: "AC0123456789abcdef0123456789abcdef".into(),
                sms_twilio_auth_token: "token".into(),
                sms_from: "+15005550006".into(),
                ..Settings::default()
            };
            tweak(&mut s);
            Sms::from_settings(&s)
        };
        assert_eq!(
            twilio(Box::new(|_| {})).map(|s| s.provider()).ok(),
            Some(SmsProvider::Twilio)
        );
        assert_eq!(
            twilio(Box::new(|s| s.sms_twilio_account_sid = "AC/../x".into()))
                .expect_err("sid")
                .setting,
            "sms_twilio_account_sid"
        );
        assert_eq!(
            twilio(Box::new(|s| s.sms_from.clear()))
                .expect_err("from")
                .setting,
            "sms_from"
        );
        assert_eq!(
            twilio(Box::new(|s| s.sms_twilio_auth_token.clear()))
                .expect_err("token")
                .setting,
            "sms_twilio_auth_token"
        );
    }

    #[tokio::test]
    async fn bad_numbers_and_texts_are_permanent_without_touching_the_network() {
        // Port 9 (discard) on loopback: nothing would answer, and nothing is asked.
        let sms = generic(|s| s.sms_generic_url = "http://127.0.0.1:9/".into()).expect("sms");
        for (to, text) in [
            ("0700 000 001", "hello"),
            ("+254700000001", " "),
            ("+254700000001", &"a".repeat(1601)),
        ] {
            let err = sms.send(to, text).await.expect_err("refused");
            assert!(
                err.is_permanent() && matches!(err, SmsError::Permanent { status: None, .. }),
                "{err}"
            );
        }
        let off = Sms::disabled();
        assert!(matches!(
            off.send("+254700000001", "hi").await,
            Err(SmsError::Disabled)
        ));
        assert!(!off.is_enabled());
    }

    #[test]
    fn statuses_split_into_permanent_and_transient() {
        let status = |code| StatusCode::from_u16(code).expect("status");
        for code in [400, 401, 403, 404, 422] {
            assert!(
                classify(status(code), None, "no", false).is_permanent(),
                "{code}"
            );
        }
        for code in [408, 429, 500, 502, 503] {
            let e = classify(status(code), Some(Duration::from_secs(7)), "", false);
            assert!(!e.is_permanent(), "{code}");
            assert_eq!(e.retry_after(), Some(Duration::from_secs(7)));
        }
        let twilio = r#"{"code": 21211, "message": "The 'To' number is not a valid phone number.", "status": 400}"#;
        assert_eq!(
            classify(status(400), None, twilio, true).to_string(),
            "the SMS was refused (HTTP 400): Twilio error 21211: The 'To' number is not a valid phone number."
        );
        assert!(is_messaging_service_sid(
            "MG0123456789abcdef0123456789abcdef"
        ));
        assert!(!is_messaging_service_sid("+15005550006"));
    }
}
