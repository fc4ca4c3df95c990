//! Settings: built-in defaults, then `vigil.toml` (or `--config FILE`), then `VIGIL_*` variables.

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

/// Every setting of the server, one typed struct; the README's settings table mirrors it.
#[derive(Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// Address the HTTP server listens on.
    pub bind: SocketAddr,
    /// `sqlite://path` (embedded, default) or `postgres://…`.
    pub database_url: String,
    /// URL at which browsers and phones reach this server; used in links (CAP, push).
    pub public_url: String,
    /// Upper bound of the database connection pool.
    pub db_max_connections: u32,
    /// SQLite: when a commit reaches the disk (`PRAGMA synchronous`). `full`: at every commit,
    /// so what the server acknowledged survives a power cut; `normal`: at checkpoints, so it
    /// survives the process being killed but a power cut may lose the last moments. PostgreSQL
    /// ignores it (its own `synchronous_commit` decides).
    pub sqlite_synchronous: SqliteSynchronous,
    /// Lifetime of an access token; short, because it cannot be revoked before it expires.
    pub access_token_ttl_secs: u64,
    /// Lifetime of a login session (its refresh tokens rotate within it).
    pub refresh_token_ttl_days: u64,
    /// Seconds between a `vigil keys rotate` and the new key signing: every node and every
    /// cached JWKS (served with max-age 300) knows the key before any token carries it.
    pub key_publish_secs: u64,
    /// How often a node re-reads the signing keys from the database.
    pub key_reload_secs: u64,
    /// Login attempts in a row without success after which an address locks.
    pub login_max_failures: u32,
    /// How long a locked account stays locked.
    pub login_lockout_secs: u64,
    /// Largest request body accepted on ordinary routes.
    pub max_body_bytes: usize,
    /// Largest roster upload accepted.
    pub roster_max_bytes: usize,
    /// Requests taking longer than this are answered 408 and dropped.
    pub request_timeout_secs: u64,
    /// How long shutdown waits for requests and WebSockets to finish.
    pub shutdown_grace_secs: u64,
    /// Days position history is kept before the background job deletes it.
    pub position_retention_days: u64,
    /// Most fixes accepted in one upload.
    pub max_fixes_per_batch: usize,
    /// How often the newest fix of each moved subject is written to `last_positions`
    /// (write-behind, milliseconds); after a crash they are restored from the history.
    pub position_flush_ms: u64,
    /// NATS server (`nats://host:4222`): set with a `postgres://` database, this server is one
    /// node of a cluster. Empty: a single node.
    pub nats_url: String,
    /// This node's name in a cluster, unique per node; empty: the host name and port.
    pub node_id: String,
    /// Name shared by the nodes of one cluster, prefixing its NATS subjects and stream; empty:
    /// the database's name, so clusters on different databases never mix.
    pub cluster_name: String,
    /// How often a cluster node compares its sockets' streams with storage, so that a
    /// message whose hint was lost still arrives.
    pub cluster_converge_secs: u64,
    /// How long a cluster node's hold on singleton work (sweeps, reminders, retention) lasts
    /// unrenewed: a node that dies hands it on within this time.
    pub lease_secs: u64,
    /// How often the server pings each WebSocket and re-checks its session and roles; three
    /// silent intervals close the connection.
    pub ws_heartbeat_secs: u64,
    /// How often areas whose validity window opened or closed are re-evaluated for the people
    /// inside them.
    pub area_validity_check_secs: u64,
    /// How long an alert applies when its sender gives no expiry.
    pub alert_default_expiry_hours: u64,
    /// Default freshness limit: a position older than this does not count as "inside" an
    /// alert's target (the sender may set another per alert).
    pub alert_position_max_age_secs: i64,
    /// Seconds after sending at which copies no device has confirmed go to web push.
    pub alert_push_after_secs: u64,
    /// Seconds after the push at which copies still unconfirmed go by SMS (if the alert allows).
    pub alert_sms_after_secs: u64,
    /// `text` for people, `json` for log shippers.
    pub log_format: LogFormat,
    /// A `tracing` filter such as `info` or `vigil_server=debug,info`.
    pub log_level: String,
    /// An XYZ raster tile URL template (`https://…/{z}/{x}/{y}.png`) for the console's map;
    /// empty: the built-in offline country outlines only (field offices are often offline).
    pub map_tiles_url: String,
    /// Credit line the tile server's licence asks for, shown on the map.
    pub map_tiles_attribution: String,
    /// The VAPID `sub` claim: a `mailto:` or `https:` contact that push services use to reach
    /// the operator of this deployment about its traffic.
    pub push_subject: String,
    /// Accept `http://` push endpoints on 127.0.0.1, `::1` and `localhost` (tests, local
    /// development); off, so that users cannot point the server at plain-text local services.
    pub push_allow_insecure_localhost: bool,
    /// Most web-push requests in flight at once from this node.
    pub push_concurrency: usize,
    /// Seconds a push service has to answer one message.
    pub push_timeout_secs: u64,
    /// Which SMS gateway sends text messages: `none`, `generic` or `twilio`.
    pub sms_provider: SmsProvider,
    /// Sender of text messages: an E.164 number or an alphanumeric sender id.
    pub sms_from: String,
    /// Seconds the SMS gateway has to answer one message.
    pub sms_timeout_secs: u64,
    /// Most texts in flight to the SMS gateway at once from this node. Gateways throttle
    /// (Twilio answers 429 past its account's concurrency); texts beyond the bound wait their
    /// turn, and the alert fallback claims no more copies at a time than it can send.
    pub sms_concurrency: usize,
    /// Generic gateway: the URL messages are sent to.
    pub sms_generic_url: String,
    /// Generic gateway: `POST`, `PUT` or `GET` (GET sends the form fields as the query string).
    pub sms_generic_method: String,
    /// Generic gateway: one header sent with every message, `Name: value` (a secret).
    pub sms_generic_auth_header: String,
    /// Generic gateway: `json` or `form`, the shape of `sms_generic_body`.
    pub sms_generic_format: SmsBodyFormat,
    /// Generic gateway: the body, with `{to}`, `{from}` and `{text}` placeholders in its values.
    pub sms_generic_body: String,
    /// Generic gateway: JSON pointer to the provider's message id in its answer (empty: none).
    pub sms_generic_id_pointer: String,
    /// Twilio: the account SID.
    pub sms_twilio_account_sid: String,
    /// Twilio: the auth token (a secret).
    pub sms_twilio_auth_token: String,
    /// Twilio: the API base URL (overridden in tests).
    pub sms_twilio_base_url: String,
    /// Firebase Cloud Messaging: path to the service account's JSON key (empty: FCM off).
    pub fcm_service_account_file: String,
    /// Firebase Cloud Messaging: the service account's JSON key itself, instead of a file (a
    /// secret).
    pub fcm_service_account_json: String,
    /// Firebase Cloud Messaging: the API's base URL (overridden in tests).
    pub fcm_base_url: String,
    /// APNs: path to the token-signing key (`AuthKey_XXXXXXXXXX.p8`; empty: APNs off).
    pub apns_key_file: String,
    /// APNs: the key's id (10 characters, shown beside the key in Apple's developer account).
    pub apns_key_id: String,
    /// APNs: the developer team id (10 characters).
    pub apns_team_id: String,
    /// APNs: the app's bundle id, sent as `apns-topic` (a device's `app_id` overrides it).
    pub apns_topic: String,
    /// APNs: the API's base URL (empty: Apple's production or sandbox host; tests set a fake).
    pub apns_base_url: String,
    /// APNs: use Apple's sandbox host (development builds of the app).
    pub apns_sandbox: bool,
}

/// SQLite's `synchronous` mode, of the two that are safe in WAL mode.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SqliteSynchronous {
    /// The write-ahead log is synced at checkpoints: a commit survives a crash of the process,
    /// not of the machine (never a corrupt database either way).
    Normal,
    /// The write-ahead log is synced at every commit: a commit survives a power cut.
    Full,
}

/// Which SMS gateway to use.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SmsProvider {
    /// No SMS: people without the app or data are reached by nothing else.
    None,
    /// Any HTTP gateway, described by the `sms_generic_*` settings.
    Generic,
    /// Twilio's Messages API.
    Twilio,
}

/// Shape of the generic SMS gateway's request body.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SmsBodyFormat {
    /// A JSON document.
    Json,
    /// `application/x-www-form-urlencoded` fields.
    Form,
}

/// Shape of log lines.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 8080)),
            database_url: "sqlite://vigil.db".into(),
            public_url: "http://127.0.0.1:8080".into(),
            db_max_connections: 16,
            sqlite_synchronous: SqliteSynchronous::Normal,
            access_token_ttl_secs: 900,
            refresh_token_ttl_days: 30,
            key_publish_secs: 360,
            key_reload_secs: 30,
            login_max_failures: 5,
            login_lockout_secs: 900,
            max_body_bytes: 1024 * 1024,
            roster_max_bytes: 16 * 1024 * 1024,
            request_timeout_secs: 30,
            shutdown_grace_secs: 20,
            position_retention_days: 14,
            max_fixes_per_batch: 1000,
            position_flush_ms: 1000,
            nats_url: String::new(),
            node_id: String::new(),
            cluster_name: String::new(),
            cluster_converge_secs: 5,
            lease_secs: 10,
            ws_heartbeat_secs: 25,
            area_validity_check_secs: 30,
            alert_default_expiry_hours: 24,
            alert_position_max_age_secs: 6 * 3600,
            alert_push_after_secs: 5,
            alert_sms_after_secs: 60,
            log_format: LogFormat::Text,
            log_level: "info".into(),
            map_tiles_url: String::new(),
            map_tiles_attribution: String::new(),
            push_subject: "mailto:webpush-contact@vigil.invalid".into(),
            push_allow_insecure_localhost: false,
            push_concurrency: 32,
            push_timeout_secs: 10,
            sms_provider: SmsProvider::None,
            sms_from: String::new(),
            sms_timeout_secs: 10,
            sms_concurrency: 16,
            sms_generic_url: String::new(),
            sms_generic_method: "POST".into(),
            sms_generic_auth_header: String::new(),
            sms_generic_format: SmsBodyFormat::Json,
            sms_generic_body: r#"{"to": "{to}", "from": "{from}", "text": "{text}"}"#.into(),
            sms_generic_id_pointer: String::new(),
            sms_twilio_account_sid: String::new(),
            sms_twilio_auth_token: String::new(),
            sms_twilio_base_url: "https://api.twilio.com".into(),
            fcm_service_account_file: String::new(),
            fcm_service_account_json: String::new(),
            fcm_base_url: "https://fcm.googleapis.com".into(),
            apns_key_file: String::new(),
            apns_key_id: String::new(),
            apns_team_id: String::new(),
            apns_topic: String::new(),
            apns_base_url: String::new(),
            apns_sandbox: false,
        }
    }
}

/// Why the settings could not be read.
#[derive(Debug, thiserror::Error)]
#[error("invalid settings: {0}")]
pub struct SettingsError(#[from] Box<figment::Error>);

impl Settings {
    /// Reads defaults, then the TOML file, then `VIGIL_*` variables. The default `vigil.toml` is
    /// optional; a file named explicitly must exist, so a typo in a path is not silently ignored.
    pub fn load(config_file: Option<&Path>) -> Result<Self, SettingsError> {
        if let Some(path) = config_file
            && !path.is_file()
        {
            return Err(SettingsError(Box::new(figment::Error::from(format!(
                "the settings file {} does not exist",
                path.display()
            )))));
        }
        let file = config_file.unwrap_or(Path::new("vigil.toml"));
        let defaults = Settings::default();
        // Figment reads every variable as TOML-ish data, so `+15551234567` or `0012345` came in
        // as numbers (losing the plus or the zeros) and a text setting refused to load. A
        // setting whose default is text takes its variable verbatim.
        let text: Vec<String> = Figment::from(Serialized::defaults(&defaults))
            .extract::<figment::value::Dict>()
            .map(|d| {
                d.into_iter()
                    .filter(|(_, v)| matches!(v, figment::value::Value::String(..)))
                    .map(|(k, _)| k)
                    .collect()
            })
            .unwrap_or_default();
        let verbatim = text.clone();
        let mut figment = Figment::from(Serialized::defaults(defaults))
            .merge(Toml::file(file))
            // VIGIL_TEST_* belong to the test suite, not to the server.
            .merge(Env::prefixed("VIGIL_").filter(move |k| {
                !k.as_str().starts_with("test_") && !verbatim.iter().any(|t| k.as_str() == t)
            }));
        for key in &text {
            if let Ok(value) = std::env::var(format!("VIGIL_{}", key.to_uppercase())) {
                figment = figment.merge(Serialized::default(key, value));
            }
        }
        figment.extract().map_err(|e| SettingsError(Box::new(e)))
    }
}

/// Hides the password of a database URL so that settings can be logged.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let creds = &url[scheme_end + 3..at];
            match creds.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme_end + 3],
                    &creds[..colon],
                    &url[at..]
                ),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// How a secret setting appears in logs: whether it is set, never its value.
fn secret(value: &str) -> &'static str {
    if value.is_empty() { "(unset)" } else { "***" }
}

/// The scheme and host of a URL, without credentials, path or query.
fn url_host_only(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return secret(url).to_string();
    };
    let rest = &url[scheme_end + 3..];
    let host_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let host = &rest[..host_end];
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    format!("{}{host}/…", &url[..scheme_end + 3])
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("bind", &self.bind)
            .field("database_url", &redact_url(&self.database_url))
            .field("public_url", &self.public_url)
            .field("db_max_connections", &self.db_max_connections)
            .field("sqlite_synchronous", &self.sqlite_synchronous)
            .field("access_token_ttl_secs", &self.access_token_ttl_secs)
            .field("refresh_token_ttl_days", &self.refresh_token_ttl_days)
            .field("key_publish_secs", &self.key_publish_secs)
            .field("key_reload_secs", &self.key_reload_secs)
            .field("login_max_failures", &self.login_max_failures)
            .field("login_lockout_secs", &self.login_lockout_secs)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("roster_max_bytes", &self.roster_max_bytes)
            .field("request_timeout_secs", &self.request_timeout_secs)
            .field("shutdown_grace_secs", &self.shutdown_grace_secs)
            .field("position_retention_days", &self.position_retention_days)
            .field("max_fixes_per_batch", &self.max_fixes_per_batch)
            .field("position_flush_ms", &self.position_flush_ms)
            .field("nats_url", &redact_url(&self.nats_url))
            .field("node_id", &self.node_id)
            .field("cluster_name", &self.cluster_name)
            .field("cluster_converge_secs", &self.cluster_converge_secs)
            .field("lease_secs", &self.lease_secs)
            .field("ws_heartbeat_secs", &self.ws_heartbeat_secs)
            .field("area_validity_check_secs", &self.area_validity_check_secs)
            .field(
                "alert_default_expiry_hours",
                &self.alert_default_expiry_hours,
            )
            .field(
                "alert_position_max_age_secs",
                &self.alert_position_max_age_secs,
            )
            .field("alert_push_after_secs", &self.alert_push_after_secs)
            .field("alert_sms_after_secs", &self.alert_sms_after_secs)
            .field("log_format", &self.log_format)
            .field("log_level", &self.log_level)
            .field("map_tiles_url", &self.map_tiles_url)
            .field("map_tiles_attribution", &self.map_tiles_attribution)
            .field("push_subject", &self.push_subject)
            .field(
                "push_allow_insecure_localhost",
                &self.push_allow_insecure_localhost,
            )
            .field("push_concurrency", &self.push_concurrency)
            .field("push_timeout_secs", &self.push_timeout_secs)
            .field("sms_provider", &self.sms_provider)
            .field("sms_from", &self.sms_from)
            .field("sms_timeout_secs", &self.sms_timeout_secs)
            .field("sms_concurrency", &self.sms_concurrency)
            // The URL and body of a generic gateway often carry credentials (Kannel's
            // `password=`), so only the host is shown.
            .field("sms_generic_url", &url_host_only(&self.sms_generic_url))
            .field("sms_generic_method", &self.sms_generic_method)
            .field(
                "sms_generic_auth_header",
                &secret(&self.sms_generic_auth_header),
            )
            .field("sms_generic_format", &self.sms_generic_format)
            .field("sms_generic_body", &secret(&self.sms_generic_body))
            .field("sms_generic_id_pointer", &self.sms_generic_id_pointer)
            .field("sms_twilio_account_sid", &self.sms_twilio_account_sid)
            .field(
                "sms_twilio_auth_token",
                &secret(&self.sms_twilio_auth_token),
            )
            .field("sms_twilio_base_url", &self.sms_twilio_base_url)
            .field("fcm_service_account_file", &self.fcm_service_account_file)
            .field(
                "fcm_service_account_json",
                &secret(&self.fcm_service_account_json),
            )
            .field("fcm_base_url", &self.fcm_base_url)
            .field("apns_key_file", &self.apns_key_file)
            .field("apns_key_id", &self.apns_key_id)
            .field("apns_team_id", &self.apns_team_id)
            .field("apns_topic", &self.apns_topic)
            .field("apns_base_url", &self.apns_base_url)
            .field("apns_sandbox", &self.apns_sandbox)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_password_but_keeps_user_and_host() {
        assert_eq!(
            redact_url("postgres://vigil:s3cret@db:5432/vigil"),
            "postgres://vigil:***@db:5432/vigil"
        );
        assert_eq!(redact_url("sqlite://vigil.db"), "sqlite://vigil.db");
        let s = Settings {
            database_url: "postgres://u:pw@h/d".into(),
            ..Settings::default()
        };
        assert!(!format!("{s:?}").contains("pw@"));
        let s = Settings {
            sms_generic_url: "https://u:pw@sms.example/send?password=hunter2".into(),
            sms_generic_body: "password=hunter2&to={to}".into(),
            sms_twilio_auth_token: "tok3n".into(),
            ..Settings::default()
        };
        let shown = format!("{s:?}");
        for secret in ["hunter2", "pw", "tok3n"] {
            assert!(!shown.contains(secret), "{secret} leaked into {shown}");
        }
        assert!(shown.contains("https://sms.example/"));
    }

    #[test]
    fn the_shipped_example_settings_file_parses_and_a_missing_one_is_an_error() {
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../ops/vigil.toml.example");
        let s = Settings::load(Some(&example)).expect("ops/vigil.toml.example is valid");
        assert_eq!(
            s.access_token_ttl_secs,
            Settings::default().access_token_ttl_secs
        );
        let documented: std::collections::BTreeMap<String, figment::value::Value> =
            Figment::from(Toml::file(&example)).extract().expect("toml");
        let known = serde_json::to_value(Settings::default()).expect("json");
        let known: Vec<&String> = known.as_object().expect("object").keys().collect();
        let documented: Vec<&String> = documented.keys().collect();
        let mut known_sorted = known.clone();
        known_sorted.sort();
        assert_eq!(
            documented, known_sorted,
            "ops/vigil.toml.example documents every setting"
        );
        let err = Settings::load(Some(Path::new("/nonexistent/vigil.toml"))).expect_err("missing");
        assert!(err.to_string().contains("does not exist"));
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's own test-jail error type
    fn environment_overrides_file_and_defaults() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "vigil.toml",
                "bind = \"127.0.0.1:9000\"\nlogin_max_failures = 3",
            )?;
            jail.set_env("VIGIL_LOGIN_MAX_FAILURES", "7");
            jail.set_env("VIGIL_TEST_POSTGRES_URL", "postgres://ignored");
            let s = Settings::load(None).map_err(|e| e.to_string())?;
            assert_eq!(s.bind.port(), 9000);
            assert_eq!(s.login_max_failures, 7);
            assert_eq!(s.access_token_ttl_secs, 900);
            Ok(())
        });
    }

    /// A phone number or a numeric token in the environment is text, not a number: figment
    /// reads `+15551234567` as an integer, which refused to start the server.
    #[test]
    #[allow(clippy::result_large_err)] // figment's own test-jail error type
    fn numeric_looking_text_settings_stay_text() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("VIGIL_SMS_FROM", "+15551234567");
            jail.set_env("VIGIL_SMS_TWILIO_AUTH_TOKEN", "0012345");
            jail.set_env("VIGIL_SMS_TWILIO_ACCOUNT_SID", "1.5");
            let s = Settings::load(None).map_err(|e| e.to_string())?;
            assert_eq!(s.sms_from, "+15551234567");
            assert_eq!(s.sms_twilio_auth_token, "0012345");
            assert_eq!(s.sms_twilio_account_sid, "1.5");
            Ok(())
        });
    }
}
