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
    /// Lifetime of an access token; short, because it cannot be revoked before it expires.
    pub access_token_ttl_secs: u64,
    /// Lifetime of a login session (its refresh tokens rotate within it).
    pub refresh_token_ttl_days: u64,
    /// Failed logins in a row after which the account locks.
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
    /// How often the server pings each WebSocket and re-checks its session and roles; three
    /// silent intervals close the connection.
    pub ws_heartbeat_secs: u64,
    /// How often areas whose validity window opened or closed are re-evaluated for the people
    /// inside them.
    pub area_validity_check_secs: u64,
    /// `text` for people, `json` for log shippers.
    pub log_format: LogFormat,
    /// A `tracing` filter such as `info` or `vigil_server=debug,info`.
    pub log_level: String,
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
            access_token_ttl_secs: 900,
            refresh_token_ttl_days: 30,
            login_max_failures: 5,
            login_lockout_secs: 900,
            max_body_bytes: 1024 * 1024,
            roster_max_bytes: 16 * 1024 * 1024,
            request_timeout_secs: 30,
            shutdown_grace_secs: 20,
            position_retention_days: 14,
            max_fixes_per_batch: 1000,
            ws_heartbeat_secs: 25,
            area_validity_check_secs: 30,
            log_format: LogFormat::Text,
            log_level: "info".into(),
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
        Figment::from(Serialized::defaults(Settings::default()))
            .merge(Toml::file(file))
            // VIGIL_TEST_* belong to the test suite, not to the server.
            .merge(Env::prefixed("VIGIL_").filter(|k| !k.as_str().starts_with("test_")))
            .extract()
            .map_err(|e| SettingsError(Box::new(e)))
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

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("bind", &self.bind)
            .field("database_url", &redact_url(&self.database_url))
            .field("public_url", &self.public_url)
            .field("db_max_connections", &self.db_max_connections)
            .field("access_token_ttl_secs", &self.access_token_ttl_secs)
            .field("refresh_token_ttl_days", &self.refresh_token_ttl_days)
            .field("login_max_failures", &self.login_max_failures)
            .field("login_lockout_secs", &self.login_lockout_secs)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("roster_max_bytes", &self.roster_max_bytes)
            .field("request_timeout_secs", &self.request_timeout_secs)
            .field("shutdown_grace_secs", &self.shutdown_grace_secs)
            .field("position_retention_days", &self.position_retention_days)
            .field("max_fixes_per_batch", &self.max_fixes_per_batch)
            .field("ws_heartbeat_secs", &self.ws_heartbeat_secs)
            .field("area_validity_check_secs", &self.area_validity_check_secs)
            .field("log_format", &self.log_format)
            .field("log_level", &self.log_level)
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
}
