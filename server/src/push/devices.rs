//! Native app installations and their push tokens: `PUT`, `GET` and `DELETE` under
//! `/me/devices`, and their storage.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::AppState;
use crate::db::{Db, Timestamp, now_ms};
use crate::error::{AppError, AppResult, Issue, Json};
use crate::policy::{Action, Actor, authorize};
use crate::{on_reader, on_writer};

/// Most native devices one person keeps; registering another forgets the least recently
/// registered, so a phone reinstalled many times cannot multiply every alert.
pub const MAX_DEVICES_PER_USER: i64 = 10;

/// The push service a native app is woken through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Platform {
    /// Firebase Cloud Messaging (Android).
    Fcm,
    /// Apple Push Notification service (iOS).
    Apns,
}

impl Platform {
    /// The name stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Platform::Fcm => "fcm",
            Platform::Apns => "apns",
        }
    }

    fn parse(s: &str) -> Option<Platform> {
        match s {
            "fcm" => Some(Platform::Fcm),
            "apns" => Some(Platform::Apns),
            _ => None,
        }
    }
}

/// A native device as its owner sees it (the token is not echoed).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct NativeDeviceView {
    /// The app's id for this installation.
    pub device_id: String,
    /// `fcm` or `apns`.
    pub platform: Platform,
    /// Android package or iOS bundle id, if the app gave one.
    pub app_id: Option<String>,
    /// First registered.
    pub created_at: Timestamp,
    /// Last registered again (apps re-register at start and when the token rotates).
    pub updated_at: Timestamp,
    /// Last time the push service accepted a message for it.
    pub last_success_at: Option<Timestamp>,
    /// Last time sending to it failed.
    pub last_failure_at: Option<Timestamp>,
    /// Failures since the last success.
    pub failures_in_a_row: i64,
}

/// Body of `PUT /me/devices/{device_id}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewNativeDevice {
    /// `fcm` or `apns`.
    pub platform: Option<String>,
    /// The registration token (FCM) or device token in hex (APNs).
    pub token: Option<String>,
    /// Android package or iOS bundle id (APNs: sent as `apns-topic`).
    pub app_id: Option<String>,
}

/// What sending to one device needs.
#[derive(Debug, Clone)]
pub struct NativeDevice {
    /// Row id.
    pub id: i64,
    /// The person it wakes.
    pub user_id: i64,
    /// Its service.
    pub platform: Platform,
    /// Its token.
    pub token: String,
    /// Its app id.
    pub app_id: Option<String>,
}

/// A registration that passed every check.
#[derive(Debug, Clone)]
pub struct ValidDevice {
    /// The installation id.
    pub device_id: String,
    /// Its service.
    pub platform: Platform,
    /// Its token.
    pub token: String,
    /// Its app id.
    pub app_id: Option<String>,
}

/// Checks a registration, naming each bad field.
pub fn validate(device_id: &str, new: &NewNativeDevice) -> AppResult<ValidDevice> {
    let mut issues = Vec::new();
    let id_ok = (1..=128).contains(&device_id.len())
        && device_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b));
    if !id_ok {
        issues.push(Issue::new(
            "device_id",
            "1 to 128 letters, digits, '-', '_', '.' or ':'",
        ));
    }
    let platform = match new.platform.as_deref().map(str::trim) {
        None | Some("") => {
            issues.push(Issue::new("platform", "is required"));
            None
        }
        Some(p) => {
            let parsed = Platform::parse(p);
            if parsed.is_none() {
                issues.push(Issue::new("platform", "must be \"fcm\" or \"apns\""));
            }
            parsed
        }
    };
    let token = new.token.as_deref().map(str::trim).unwrap_or_default();
    if token.is_empty() {
        issues.push(Issue::new("token", "is required"));
    } else {
        match platform {
            // FCM registration tokens are opaque (about 160 characters of base64url and ':').
            Some(Platform::Fcm)
                if token.len() > 4096 || !token.bytes().all(|b| b.is_ascii_graphic()) =>
            {
                issues.push(Issue::new(
                    "token",
                    "an FCM registration token is at most 4096 printable characters",
                ));
            }
            // APNs device tokens are 32 bytes today, given in hex; Apple says they may grow.
            Some(Platform::Apns)
                if !(64..=200).contains(&token.len())
                    || !token.len().is_multiple_of(2)
                    || !token.bytes().all(|b| b.is_ascii_hexdigit()) =>
            {
                issues.push(Issue::new(
                    "token",
                    "an APNs device token is hexadecimal, at least 64 digits",
                ));
            }
            _ => {}
        }
    }
    let app_id = new
        .app_id
        .as_deref()
        .map(str::trim)
        .filter(|a| !a.is_empty());
    if app_id.is_some_and(|a| {
        a.len() > 255
            || !a
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    }) {
        issues.push(Issue::new(
            "app_id",
            "a package or bundle id: at most 255 letters, digits, '-', '_' or '.'",
        ));
    }
    AppError::check(issues)?;
    let platform = platform.ok_or_else(|| AppError::invalid("platform", "is required"))?;
    Ok(ValidDevice {
        device_id: device_id.to_string(),
        platform,
        // APNs tokens are hex, which apps print in either case; one spelling keeps them unique.
        token: if platform == Platform::Apns {
            token.to_ascii_lowercase()
        } else {
            token.to_string()
        },
        app_id: app_id.map(str::to_string),
    })
}

/// The caller's native devices.
#[utoipa::path(get, path = "/me/devices", tag = "push", security(("bearer" = [])),
    responses((status = 200, body = [NativeDeviceView])))]
pub(super) async fn list_devices(
    State(state): State<AppState>,
    actor: Actor,
) -> AppResult<Json<Vec<NativeDeviceView>>> {
    authorize(
        &actor,
        Action::ManagePushSubscriptions {
            user_id: actor.user_id,
        },
    )?;
    Ok(Json(list(&state.db, actor.user_id).await?))
}

/// Register this app installation's push token for the caller: 201 when the device is new,
/// 200 when it was known (token and app id replaced). A token registered by someone else
/// moves to the caller, as the phone is now theirs.
#[utoipa::path(put, path = "/me/devices/{device_id}", tag = "push", security(("bearer" = [])),
    params(("device_id" = String, Path, description = "the app's own id for this installation")),
    request_body = NewNativeDevice,
    responses((status = 201, body = NativeDeviceView), (status = 200, body = NativeDeviceView),
        (status = 422, description = "invalid field, named in `issues`")))]
pub(super) async fn register_device(
    State(state): State<AppState>,
    actor: Actor,
    Path(device_id): Path<String>,
    Json(new): Json<NewNativeDevice>,
) -> AppResult<(StatusCode, Json<NativeDeviceView>)> {
    authorize(
        &actor,
        Action::ManagePushSubscriptions {
            user_id: actor.user_id,
        },
    )?;
    let valid = validate(&device_id, &new)?;
    let (view, created) = upsert(&state.db, actor.user_id, &valid).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(view)))
}

/// Forget one of the caller's devices (at sign-out). 404 when the caller has no such device.
#[utoipa::path(delete, path = "/me/devices/{device_id}", tag = "push", security(("bearer" = [])),
    params(("device_id" = String, Path, description = "the app's own id for this installation")),
    responses((status = 204, description = "the device no longer receives the caller's pushes"),
        (status = 404, description = "the caller has no device with this id")))]
pub(super) async fn remove_device(
    State(state): State<AppState>,
    actor: Actor,
    Path(device_id): Path<String>,
) -> AppResult<StatusCode> {
    authorize(
        &actor,
        Action::ManagePushSubscriptions {
            user_id: actor.user_id,
        },
    )?;
    if remove(&state.db, actor.user_id, &device_id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(AppError::NotFound("device".into()))
    }
}

type ViewRow = (
    String,
    String,
    Option<String>,
    i64,
    i64,
    Option<i64>,
    Option<i64>,
    i64,
);

const VIEW_COLUMNS: &str = "device_id, platform, app_id, created_at, updated_at, \
                            last_success_at, last_failure_at, failures_in_a_row";

fn view(row: ViewRow) -> Option<NativeDeviceView> {
    let (device_id, platform, app_id, created, updated, success, failure, failures) = row;
    Some(NativeDeviceView {
        device_id,
        platform: Platform::parse(&platform)?,
        app_id,
        created_at: Timestamp(created),
        updated_at: Timestamp(updated),
        last_success_at: success.map(Timestamp),
        last_failure_at: failure.map(Timestamp),
        failures_in_a_row: failures,
    })
}

/// Registers (or re-registers) a device for `user_id`; true when it is new. Keeps the
/// person's newest [`MAX_DEVICES_PER_USER`].
pub async fn upsert(
    db: &Db,
    user_id: i64,
    d: &ValidDevice,
) -> Result<(NativeDeviceView, bool), sqlx::Error> {
    let now = now_ms();
    let known: Option<i64> = on_reader!(db, pool => {
        sqlx::query_scalar("SELECT id FROM native_push_devices WHERE user_id = $1 AND device_id = $2")
            .bind(user_id).bind(&d.device_id).fetch_optional(pool).await
    })?;
    // The token now belongs to this person's installation; the phone's previous owner (or an
    // older installation id) must stop receiving on it.
    let moved = on_writer!(db, pool => {
        sqlx::query("DELETE FROM native_push_devices WHERE platform = $1 AND token = $2 \
                     AND NOT (user_id = $3 AND device_id = $4)")
            .bind(d.platform.as_str()).bind(&d.token).bind(user_id).bind(&d.device_id)
            .execute(pool).await?.rows_affected()
    });
    if moved > 0 {
        tracing::info!(
            user_id,
            "native push token moved to the person now signed in on that phone"
        );
    }
    let sql = format!(
        "INSERT INTO native_push_devices (user_id, device_id, platform, token, app_id, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $6) \
         ON CONFLICT (user_id, device_id) DO UPDATE SET platform = excluded.platform, \
           token = excluded.token, app_id = excluded.app_id, updated_at = excluded.updated_at, \
           last_failure_at = NULL, failures_in_a_row = 0 \
         RETURNING {VIEW_COLUMNS}"
    );
    let row: ViewRow = on_writer!(db, pool => {
        sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str()))
            .bind(user_id).bind(&d.device_id).bind(d.platform.as_str()).bind(&d.token)
            .bind(&d.app_id).bind(now)
            .fetch_one(pool).await
    })?;
    on_writer!(db, pool => {
        sqlx::query(
            "DELETE FROM native_push_devices WHERE user_id = $1 AND id NOT IN \
             (SELECT id FROM native_push_devices WHERE user_id = $1 ORDER BY updated_at DESC, id DESC LIMIT $2)")
            .bind(user_id).bind(MAX_DEVICES_PER_USER)
            .execute(pool).await.map(drop)
    })?;
    let view = view(row).ok_or_else(|| sqlx::Error::Decode("unknown platform".into()))?;
    Ok((view, known.is_none()))
}

/// The person's devices, oldest first.
pub async fn list(db: &Db, user_id: i64) -> Result<Vec<NativeDeviceView>, sqlx::Error> {
    let sql =
        format!("SELECT {VIEW_COLUMNS} FROM native_push_devices WHERE user_id = $1 ORDER BY id");
    let rows: Vec<ViewRow> = on_reader!(db, pool => {
        sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str())).bind(user_id).fetch_all(pool).await
    })?;
    Ok(rows.into_iter().filter_map(view).collect())
}

/// Forgets the person's device `device_id`, if they have one.
pub async fn remove(db: &Db, user_id: i64, device_id: &str) -> Result<bool, sqlx::Error> {
    let done = on_writer!(db, pool => {
        sqlx::query("DELETE FROM native_push_devices WHERE user_id = $1 AND device_id = $2")
            .bind(user_id).bind(device_id).execute(pool).await?.rows_affected()
    });
    Ok(done > 0)
}

/// What sending to the person's devices needs.
pub async fn devices_of(db: &Db, user_id: i64) -> Result<Vec<NativeDevice>, sqlx::Error> {
    let rows: Vec<(i64, i64, String, String, Option<String>)> = on_reader!(db, pool => {
        sqlx::query_as(
            "SELECT id, user_id, platform, token, app_id FROM native_push_devices \
             WHERE user_id = $1 ORDER BY id")
            .bind(user_id).fetch_all(pool).await
    })?;
    Ok(rows
        .into_iter()
        .filter_map(|(id, user_id, platform, token, app_id)| {
            Some(NativeDevice {
                id,
                user_id,
                platform: Platform::parse(&platform)?,
                token,
                app_id,
            })
        })
        .collect())
}

/// Deletes a device by row id (its service said the token is gone).
pub async fn delete_device(db: &Db, id: i64) -> Result<(), sqlx::Error> {
    on_writer!(db, pool => {
        sqlx::query("DELETE FROM native_push_devices WHERE id = $1").bind(id).execute(pool).await.map(drop)
    })?;
    Ok(())
}

/// Notes an accepted message.
pub(super) async fn record_success(db: &Db, id: i64) -> Result<(), sqlx::Error> {
    on_writer!(db, pool => {
        sqlx::query("UPDATE native_push_devices SET last_success_at = $2, failures_in_a_row = 0 WHERE id = $1")
            .bind(id).bind(now_ms()).execute(pool).await.map(drop)
    })?;
    Ok(())
}

/// Notes a failed message.
pub(super) async fn record_failure(db: &Db, id: i64) -> Result<(), sqlx::Error> {
    on_writer!(db, pool => {
        sqlx::query("UPDATE native_push_devices SET last_failure_at = $2, failures_in_a_row = failures_in_a_row + 1 WHERE id = $1")
            .bind(id).bind(now_ms()).execute(pool).await.map(drop)
    })?;
    Ok(())
}
