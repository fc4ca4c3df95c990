//! One error type for every HTTP handler, rendered as RFC 9457 `application/problem+json`.
//!
//! 5xx details are logged, never shown to clients; 4xx details say exactly what was wrong.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// Content type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// A problem a request ran into.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The request is malformed (syntax, wrong parameter types).
    #[error("{0}")]
    BadRequest(String),
    /// The request is well-formed but its content is invalid; `issues` name each bad field or line.
    #[error("{detail}")]
    Invalid {
        /// Summary of what is wrong.
        detail: String,
        /// One entry per bad field or row.
        issues: Vec<Issue>,
    },
    /// Missing, expired or forged credentials.
    #[error("{0}")]
    Unauthorized(String),
    /// Authenticated, but the policy forbids this.
    #[error("{0}")]
    Forbidden(String),
    /// The thing named does not exist (or the caller may not know it exists).
    #[error("{0}")]
    NotFound(String),
    /// The request conflicts with the current state (duplicate email, …).
    #[error("{0}")]
    Conflict(String),
    /// Too many attempts; retry after the given number of seconds.
    #[error("{detail}")]
    TooManyRequests {
        /// What was throttled.
        detail: String,
        /// Seconds until a retry may succeed.
        retry_after_secs: u64,
    },
    /// The body exceeds the route's limit.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// The body's content type is not one the route reads.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// A database failure; never shown to the client.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// Any other server-side failure; never shown to the client.
    #[error("internal error: {0:#}")]
    Internal(#[from] anyhow::Error),
}

/// One specific thing wrong with a request: a field, a row of an upload, a coordinate (the
/// protocol's type, so a socket refusal names its issues as the HTTP 422 does).
pub use vigil_protocol::Issue;

/// The RFC 9457 body.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem; `about:blank` means "see `title`".
    #[serde(rename = "type")]
    pub kind: String,
    /// Short, human-readable summary of the kind of problem.
    pub title: String,
    /// HTTP status code.
    pub status: u16,
    /// What went wrong with this request.
    pub detail: String,
    /// Specific fields or rows at fault, if any.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub issues: Vec<Issue>,
}

/// Shorthand for handler results.
pub type AppResult<T> = Result<T, AppError>;

impl AppError {
    /// The socket's `error` answer for this refusal: the same detail and `issues` as the HTTP
    /// problem, so a client learns as much over the socket as over HTTP. 5xx details are
    /// logged and replaced by "send it again". `conflict` says what a 409 means where it was
    /// raised (location-less mode for positions, a closed conversation for chat).
    pub fn to_socket(
        &self,
        conflict: vigil_protocol::ErrorCode,
        reference: Option<String>,
    ) -> vigil_protocol::ServerMessage {
        use vigil_protocol::ErrorCode;
        let (code, issues) = match self {
            AppError::BadRequest(_) => (ErrorCode::BadMessage, Vec::new()),
            AppError::Invalid { issues, .. } => (ErrorCode::Invalid, issues.clone()),
            AppError::Unauthorized(_) => (ErrorCode::Unauthorized, Vec::new()),
            AppError::Forbidden(_) => (ErrorCode::Forbidden, Vec::new()),
            AppError::NotFound(_) => (ErrorCode::NotFound, Vec::new()),
            AppError::Conflict(_) => (conflict, Vec::new()),
            AppError::TooManyRequests { .. } => (ErrorCode::RateLimited, Vec::new()),
            AppError::PayloadTooLarge(_) | AppError::UnsupportedMediaType(_) => {
                (ErrorCode::Invalid, Vec::new())
            }
            AppError::Database(_) | AppError::Internal(_) => (ErrorCode::ServerError, Vec::new()),
        };
        let detail = if code == ErrorCode::ServerError {
            tracing::error!(error = %self, "ws: a request failed");
            "the server failed to handle this; send it again".to_string()
        } else {
            self.to_string()
        };
        vigil_protocol::ServerMessage::Error {
            code,
            detail,
            reference,
            issues,
        }
    }

    /// An `Invalid` error with a single issue.
    pub fn invalid(at: impl Into<String>, reason: impl Into<String>) -> Self {
        let issue = Issue::new(at, reason);
        AppError::Invalid {
            detail: format!("{}: {}", issue.at, issue.reason),
            issues: vec![issue],
        }
    }

    /// An `Invalid` error naming every issue, its detail listing them all.
    pub fn from_issues(issues: Vec<Issue>) -> Self {
        let detail = issues
            .iter()
            .map(|i| format!("{}: {}", i.at, i.reason))
            .collect::<Vec<_>>()
            .join("; ");
        AppError::Invalid { detail, issues }
    }

    /// `Ok` when there are no issues, else [`AppError::from_issues`].
    pub fn check(issues: Vec<Issue>) -> AppResult<()> {
        if issues.is_empty() {
            Ok(())
        } else {
            Err(AppError::from_issues(issues))
        }
    }

    /// The HTTP status this error maps to.
    pub fn status(&self) -> StatusCode {
        match self {
            AppError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AppError::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            AppError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            AppError::Forbidden(_) => StatusCode::FORBIDDEN,
            AppError::NotFound(_) => StatusCode::NOT_FOUND,
            AppError::Conflict(_) => StatusCode::CONFLICT,
            AppError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            AppError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            AppError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            AppError::Database(_) | AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// Builds a problem+json response.
pub fn problem_response(status: StatusCode, detail: String, issues: Vec<Issue>) -> Response {
    let body = Problem {
        kind: "about:blank".into(),
        title: status.canonical_reason().unwrap_or("Error").into(),
        status: status.as_u16(),
        detail,
        issues,
    };
    let json = serde_json::to_vec(&body).unwrap_or_default();
    let mut res = (status, json).into_response();
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    res
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(error = %self, "request failed");
            return problem_response(
                status,
                "The server failed to handle this request; the x-request-id response header \
                 identifies it in the server log."
                    .into(),
                vec![],
            );
        }
        let retry_after = match &self {
            AppError::TooManyRequests {
                retry_after_secs, ..
            } => Some(*retry_after_secs),
            _ => None,
        };
        let detail = self.to_string();
        let issues = match self {
            AppError::Invalid { issues, .. } => issues,
            _ => vec![],
        };
        let mut res = problem_response(status, detail, issues);
        if let Some(secs) = retry_after {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        res
    }
}

impl From<JsonRejection> for AppError {
    fn from(r: JsonRejection) -> Self {
        match r.status() {
            StatusCode::PAYLOAD_TOO_LARGE => AppError::PayloadTooLarge(
                "the request body is larger than this route accepts".into(),
            ),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => AppError::UnsupportedMediaType(
                "expected a body with Content-Type: application/json".into(),
            ),
            StatusCode::UNPROCESSABLE_ENTITY => AppError::invalid("body", r.body_text()),
            _ => AppError::BadRequest(r.body_text()),
        }
    }
}

impl From<PathRejection> for AppError {
    fn from(r: PathRejection) -> Self {
        AppError::BadRequest(r.body_text())
    }
}

impl From<QueryRejection> for AppError {
    fn from(r: QueryRejection) -> Self {
        AppError::BadRequest(r.body_text())
    }
}

/// `axum::Json`, with rejections as problem+json.
#[derive(Debug, FromRequest)]
#[from_request(via(axum::Json), rejection(AppError))]
pub struct Json<T>(pub T);

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// `axum::extract::Path`, with rejections as problem+json.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(AppError))]
pub struct Path<T>(pub T);

/// `axum::extract::Query`, with rejections as problem+json.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(AppError))]
pub struct Query<T>(pub T);

/// True when a database error is a unique-constraint violation (on either backend).
pub fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
}

/// Turns error responses made outside our handlers (unknown route, wrong method, body limit,
/// timeout, panic) into problem+json, so that clients meet one error format everywhere.
pub async fn problem_for_plain_errors(req: Request, next: Next) -> Response {
    let res = next.run(req).await;
    let status = res.status();
    let is_problem = res
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(PROBLEM_JSON.as_bytes()));
    if !(status.is_client_error() || status.is_server_error()) || is_problem {
        return res;
    }
    let (parts, body) = res.into_parts();
    let text = axum::body::to_bytes(body, 4096)
        .await
        .ok()
        .and_then(|b| String::from_utf8(b.to_vec()).ok())
        .filter(|t| !t.trim().is_empty() && !status.is_server_error());
    let detail = text.unwrap_or_else(|| match status {
        StatusCode::NOT_FOUND => "no such route".to_string(),
        StatusCode::METHOD_NOT_ALLOWED => "this route does not take that method".to_string(),
        StatusCode::PAYLOAD_TOO_LARGE => "the request body is too large".to_string(),
        StatusCode::REQUEST_TIMEOUT => "the request took too long".to_string(),
        s => s.canonical_reason().unwrap_or("error").to_string(),
    });
    let mut out = problem_response(status, detail, vec![]);
    for (name, value) in parts.headers.iter() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            out.headers_mut().insert(name.clone(), value.clone());
        }
    }
    out
}
