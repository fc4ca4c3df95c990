//! Login, token refresh and logout; the bearer-token extractor that yields an [`Actor`].
//!
//! Access tokens are short-lived EdDSA JWTs naming a session; every request re-reads the
//! session and the user's roles, so a logout, a deactivation or a revoked role takes effect at
//! once. Refresh tokens rotate on every use and are stored only as SHA-256 hashes; presenting a
//! refresh token twice (a sign of theft) revokes the whole session.

pub mod attempts;
pub mod password;

use axum::extract::{FromRequestParts, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::routing::get;
use axum::{Router, http::header};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, Header, Validation};
use rand::RngCore;
use rand::rngs::OsRng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::db::now_ms;
use crate::error::{AppError, AppResult, Json};
use crate::metrics::LoginLabels;
use crate::policy::{Actor, Role};
use crate::{AppState, in_tx, on_reader, on_writer};

const ISSUER: &str = "vigil";

/// Credentials for `POST /auth/login`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct LoginRequest {
    /// The account's email address (case-insensitive).
    pub email: String,
    /// The account's password.
    pub password: String,
}

/// Tokens issued by login and refresh.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TokenResponse {
    /// Bearer token for `Authorization` headers.
    pub access_token: String,
    /// Single-use token that buys the next access token.
    pub refresh_token: String,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    /// Always `Bearer`.
    pub token_type: String,
}

/// Body of `POST /auth/refresh`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct RefreshRequest {
    /// The refresh token from the previous login or refresh.
    pub refresh_token: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    iss: String,
    sub: String,
    sid: String,
    iat: i64,
    exp: i64,
}

/// Routes under `/api/v1/auth`.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(login))
        .routes(routes!(refresh))
        .routes(routes!(logout))
}

/// `/.well-known/jwks.json`: the public keys that verify access tokens.
pub fn well_known_routes() -> Router<AppState> {
    Router::new().route(
        "/.well-known/jwks.json",
        get(|State(state): State<AppState>| async move {
            (
                [(header::CACHE_CONTROL, "public, max-age=300")],
                axum::Json(state.keys.get().jwks.clone()),
            )
        }),
    )
}

#[derive(sqlx::FromRow)]
struct LoginRow {
    id: i64,
    password_hash: Option<String>,
    active: bool,
}

/// Exchange email and password for tokens.
#[utoipa::path(post, path = "/login", tag = "auth", request_body = LoginRequest,
    responses((status = 200, body = TokenResponse), (status = 401, description = "wrong credentials"),
              (status = 429, description = "account temporarily locked after repeated failures")))]
async fn login(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
    Json(req): Json<LoginRequest>,
) -> AppResult<Json<TokenResponse>> {
    let email = req.email.trim().to_lowercase();
    let now = now_ms();
    let nth = match attempts::begin(&state, &email).await? {
        attempts::Attempt::Check { nth } => nth,
        attempts::Attempt::Locked { until } => {
            count_login(&state, "locked");
            return Err(AppError::TooManyRequests {
                detail: "too many failed logins: this account is locked for a while".into(),
                retry_after_secs: u64::try_from((until - now) / 1000 + 1).unwrap_or(1),
            });
        }
    };
    let row: Option<LoginRow> = on_reader!(&state.db, pool => sqlx::query_as(
        "SELECT id, password_hash, active FROM users WHERE email = $1")
        .bind(&email).fetch_optional(pool).await?);
    // An unknown address is checked against a throwaway hash, so it takes as long.
    let stored = row.as_ref().and_then(|r| r.password_hash.clone());
    let ok = password::verify(stored, req.password).await;
    let Some(user) = row.filter(|r| ok && r.active) else {
        count_login(&state, "failure");
        attempts::failed(&state, &email, nth).await?;
        // Each failure in a row costs a little more time, which slows guessing without
        // letting a stranger lock the account for long.
        let delay = 200 * u64::try_from(nth.clamp(0, 10)).unwrap_or(0);
        tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
        return Err(AppError::Unauthorized(
            "wrong email or password, or the account is deactivated".into(),
        ));
    };
    attempts::succeeded(&state, &email).await?;
    count_login(&state, "success");
    let user_agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.chars().take(200).collect::<String>());
    let session_id = random_token(16);
    let refresh_token = random_token(32);
    let expires =
        now + i64::try_from(state.settings.refresh_token_ttl_days).unwrap_or(30) * 86_400_000;
    in_tx!(&state.db, tx => {
        sqlx::query("UPDATE users SET last_seen_at = $1 WHERE id = $2")
            .bind(now).bind(user.id).execute(&mut *tx).await?;
        sqlx::query("INSERT INTO sessions (id, user_id, created_at, expires_at, user_agent) VALUES ($1, $2, $3, $4, $5)")
            .bind(&session_id).bind(user.id).bind(now).bind(expires).bind(&user_agent)
            .execute(&mut *tx).await?;
        sqlx::query("INSERT INTO refresh_tokens (token_hash, session_id, issued_at) VALUES ($1, $2, $3)")
            .bind(hash_token(&refresh_token)).bind(&session_id).bind(now)
            .execute(&mut *tx).await?;
    });
    tracing::info!(user_id = user.id, "login");
    Ok(Json(tokens(&state, user.id, &session_id, refresh_token)?))
}

fn count_login(state: &AppState, outcome: &'static str) {
    state
        .metrics
        .logins
        .get_or_create(&LoginLabels { outcome })
        .inc();
}

#[derive(sqlx::FromRow)]
struct RefreshRow {
    session_id: String,
    used_at: Option<i64>,
    user_id: i64,
    expires_at: i64,
    revoked_at: Option<i64>,
    active: bool,
}

/// Exchange a refresh token for a new pair; the old refresh token stops working.
#[utoipa::path(post, path = "/refresh", tag = "auth", request_body = RefreshRequest,
    responses((status = 200, body = TokenResponse), (status = 401, description = "unknown, used, expired or revoked token")))]
async fn refresh(
    State(state): State<AppState>,
    Json(req): Json<RefreshRequest>,
) -> AppResult<Json<TokenResponse>> {
    let now = now_ms();
    let hash = hash_token(&req.refresh_token);
    let row: Option<RefreshRow> = on_reader!(&state.db, pool => sqlx::query_as(
        "SELECT r.session_id, r.used_at, s.user_id, s.expires_at, s.revoked_at, u.active \
         FROM refresh_tokens r JOIN sessions s ON s.id = r.session_id JOIN users u ON u.id = s.user_id \
         WHERE r.token_hash = $1")
        .bind(&hash).fetch_optional(pool).await?);
    let invalid = || AppError::Unauthorized("the refresh token is not valid".into());
    let row = row.ok_or_else(invalid)?;
    if row.used_at.is_some() {
        revoke_session(&state, &row.session_id, now).await?;
        state.hub.recheck(row.user_id);
        tracing::warn!(
            user_id = row.user_id,
            "refresh token reused: session revoked"
        );
        return Err(invalid());
    }
    if row.revoked_at.is_some() || row.expires_at <= now || !row.active {
        return Err(invalid());
    }
    let next = random_token(32);
    let claimed = in_tx!(&state.db, tx => {
        // Only one of two concurrent refreshes with the same token may win.
        let done = sqlx::query("UPDATE refresh_tokens SET used_at = $1 WHERE token_hash = $2 AND used_at IS NULL")
            .bind(now).bind(&hash).execute(&mut *tx).await?;
        if done.rows_affected() == 1 {
            sqlx::query("INSERT INTO refresh_tokens (token_hash, session_id, issued_at) VALUES ($1, $2, $3)")
                .bind(hash_token(&next)).bind(&row.session_id).bind(now).execute(&mut *tx).await?;
            sqlx::query("UPDATE users SET last_seen_at = $1 WHERE id = $2")
                .bind(now).bind(row.user_id).execute(&mut *tx).await?;
        }
        done.rows_affected() == 1
    });
    if !claimed {
        return Err(invalid());
    }
    Ok(Json(tokens(&state, row.user_id, &row.session_id, next)?))
}

/// End the caller's session: its refresh token and access tokens stop working.
#[utoipa::path(post, path = "/logout", tag = "auth", security(("bearer" = [])),
    responses((status = 204, description = "session ended"), (status = 401, description = "not signed in")))]
async fn logout(State(state): State<AppState>, session: Session) -> AppResult<StatusCode> {
    revoke_session(&state, &session.id, now_ms()).await?;
    // Open sockets of this session close now, not at their next recheck.
    state.hub.recheck(session.user_id);
    Ok(StatusCode::NO_CONTENT)
}

async fn revoke_session(state: &AppState, session_id: &str, now: i64) -> AppResult<()> {
    on_writer!(&state.db, pool => sqlx::query(
        "UPDATE sessions SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
        .bind(now).bind(session_id).execute(pool).await.map(drop))?;
    Ok(())
}

fn tokens(
    state: &AppState,
    user_id: i64,
    session_id: &str,
    refresh_token: String,
) -> AppResult<TokenResponse> {
    let ttl = state.settings.access_token_ttl_secs;
    let now = now_ms() / 1000;
    let claims = Claims {
        iss: ISSUER.into(),
        sub: user_id.to_string(),
        sid: session_id.to_string(),
        iat: now,
        exp: now + i64::try_from(ttl).unwrap_or(900),
    };
    let keys = state.keys.get();
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(keys.kid().to_string());
    let access_token = jsonwebtoken::encode(&header, &claims, keys.encoding())
        .map_err(|e| anyhow::anyhow!("signing token: {e}"))?;
    Ok(TokenResponse {
        access_token,
        refresh_token,
        expires_in: ttl,
        token_type: "Bearer".into(),
    })
}

fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    OsRng.fill_bytes(&mut buf);
    URL_SAFE_NO_PAD.encode(buf)
}

fn hash_token(token: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(token.as_bytes()))
}

/// A verified access token: the session it names and the user it belongs to.
#[derive(Debug, Clone)]
pub struct Session {
    /// Session id.
    pub id: String,
    /// The user.
    pub user_id: i64,
}

/// Verifies a bearer token's signature and expiry (no database access).
pub fn verify_token(state: &AppState, token: &str) -> AppResult<Session> {
    let mut validation = Validation::new(Algorithm::EdDSA);
    validation.set_issuer(&[ISSUER]);
    validation.set_required_spec_claims(&["exp", "sub", "iss"]);
    validation.leeway = crate::keys::TOKEN_LEEWAY_SECS;
    let invalid = || AppError::Unauthorized("the access token is not valid".into());
    // The header names the key; one retired after a rotation (or never ours) is refused.
    let kid = jsonwebtoken::decode_header(token)
        .map_err(|_| invalid())?
        .kid
        .ok_or_else(invalid)?;
    let keys = state.keys.get();
    let key = keys.decoding(&kid).ok_or_else(invalid)?;
    let data =
        jsonwebtoken::decode::<Claims>(token, key, &validation).map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::ExpiredSignature => {
                AppError::Unauthorized("the access token has expired; refresh it".into())
            }
            _ => AppError::Unauthorized("the access token is not valid".into()),
        })?;
    let user_id = data
        .claims
        .sub
        .parse()
        .map_err(|_| AppError::Unauthorized("the access token is not valid".into()))?;
    Ok(Session {
        id: data.claims.sid,
        user_id,
    })
}

/// The token of an `Authorization: Bearer …` header: `Ok(None)` without the header, an error
/// for a header of another kind.
pub fn bearer_token(headers: &axum::http::HeaderMap) -> AppResult<Option<&str>> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(|t| Some(t.trim()))
        .ok_or_else(|| {
            AppError::Unauthorized("the Authorization header is not a Bearer token".into())
        })
}

fn bearer(parts: &Parts) -> AppResult<&str> {
    bearer_token(&parts.headers)?
        .ok_or_else(|| AppError::Unauthorized("missing Authorization: Bearer <token>".into()))
}

impl FromRequestParts<AppState> for Session {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> AppResult<Self> {
        let session = verify_token(state, bearer(parts)?)?;
        load_actor(state, &session).await?;
        Ok(session)
    }
}

impl FromRequestParts<AppState> for Actor {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> AppResult<Self> {
        let session = verify_token(state, bearer(parts)?)?;
        load_actor(state, &session).await
    }
}

#[derive(sqlx::FromRow)]
struct ActorRow {
    org_id: i64,
    is_system_admin: bool,
    active: bool,
    expires_at: i64,
    revoked_at: Option<i64>,
}

/// Reads the session and the user's current roles; refuses ended sessions and inactive users.
pub async fn load_actor(state: &AppState, session: &Session) -> AppResult<Actor> {
    let (row, roles): (Option<ActorRow>, Vec<String>) = on_reader!(&state.db, pool => {
        let row = sqlx::query_as(
            "SELECT u.org_id, u.is_system_admin, u.active, s.expires_at, s.revoked_at \
             FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.id = $1 AND s.user_id = $2")
            .bind(&session.id).bind(session.user_id).fetch_optional(pool).await?;
        let roles = sqlx::query_scalar("SELECT role FROM user_roles WHERE user_id = $1")
            .bind(session.user_id).fetch_all(pool).await?;
        (row, roles)
    });
    let row = row
        .filter(|r| r.active && r.revoked_at.is_none() && r.expires_at > now_ms())
        .ok_or_else(|| AppError::Unauthorized("the session has ended; log in again".into()))?;
    Ok(Actor {
        user_id: session.user_id,
        org_id: row.org_id,
        roles: roles.iter().filter_map(|r| Role::parse(r)).collect(),
        system_admin: row.is_system_admin,
    })
}
