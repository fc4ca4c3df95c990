//! The server's address as a person types it, and the server's RFC 9457 errors.

/// Why a server address was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    /// Not a URL with a scheme and a host.
    #[error("{0:?} is not a server address such as https://vigil.example.org")]
    Malformed(String),
    /// Plain HTTP to anything but this device: positions and messages would travel unencrypted.
    #[error("{0:?} uses plain http; only https is allowed, except to this device (localhost)")]
    Insecure(String),
}

/// Normalises the server address a user typed: trims, drops a trailing slash, and insists on
/// HTTPS except for loopback (development and tests).
pub fn server_base_url(input: &str) -> Result<String, AddressError> {
    let url = input.trim().trim_end_matches('/');
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| AddressError::Malformed(input.into()))?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    let hostname = host
        .rsplit_once(':')
        .filter(|(_, port)| port.chars().all(|c| c.is_ascii_digit()))
        .map_or(host, |(h, _)| h);
    if hostname.is_empty() || hostname.contains(char::is_whitespace) {
        return Err(AddressError::Malformed(input.into()));
    }
    match scheme.to_ascii_lowercase().as_str() {
        "https" => Ok(url.to_string()),
        "http" if matches!(hostname, "localhost" | "127.0.0.1" | "[::1]") => Ok(url.to_string()),
        "http" => Err(AddressError::Insecure(input.into())),
        _ => Err(AddressError::Malformed(input.into())),
    }
}

/// One field or row the server found at fault.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct ProblemIssue {
    /// Where (a field name, a JSON pointer, `line 12`).
    pub at: String,
    /// What is wrong there.
    pub reason: String,
}

/// An error as the server reports it (`application/problem+json`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct Problem {
    /// HTTP status.
    pub status: u16,
    /// Short summary of the kind of problem.
    pub title: String,
    /// What went wrong with this request; safe to show to the user.
    pub detail: String,
    /// Specific fields at fault.
    #[serde(default)]
    pub issues: Vec<ProblemIssue>,
}

impl Problem {
    /// Reads a problem body; a body that is not one becomes a generic problem with its status.
    pub fn from_body(status: u16, body: &[u8]) -> Problem {
        serde_json::from_slice(body).unwrap_or_else(|_| Problem {
            status,
            title: "Error".into(),
            detail: String::from_utf8_lossy(body).chars().take(500).collect(),
            issues: Vec::new(),
        })
    }

    /// True when signing in again is the way out (expired or revoked session).
    pub fn needs_login(&self) -> bool {
        self.status == 401
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_addresses_must_be_https_except_on_this_device() {
        assert_eq!(
            server_base_url(" https://vigil.example.org/ ").as_deref(),
            Ok("https://vigil.example.org")
        );
        assert!(server_base_url("http://127.0.0.1:8080").is_ok());
        assert!(matches!(
            server_base_url("http://vigil.example.org"),
            Err(AddressError::Insecure(_))
        ));
        assert!(matches!(
            server_base_url("vigil.example.org"),
            Err(AddressError::Malformed(_))
        ));
        assert!(matches!(
            server_base_url("ftp://x.org"),
            Err(AddressError::Malformed(_))
        ));
    }

    #[test]
    fn problems_are_read_with_their_issues() {
        let body = br#"{"type":"about:blank","title":"Unprocessable Entity","status":422,
            "detail":"phone: bad","issues":[{"at":"phone","reason":"bad"}]}"#;
        let p = Problem::from_body(422, body);
        assert_eq!(p.issues[0].at, "phone");
        assert!(!p.needs_login());
        let plain = Problem::from_body(502, b"Bad Gateway");
        assert_eq!(plain.status, 502);
        assert_eq!(plain.detail, "Bad Gateway");
    }
}
