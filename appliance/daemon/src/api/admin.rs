//! Claiming the box, signing in and out, the admin password, factory reset, and the gate in
//! front of every other route: an unclaimed box answers 403 `unclaimed`, a claimed one wants
//! `Authorization: Bearer <token>` from `POST /api/v1/login`.

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{ApiError, AppState, json_body};
use crate::device::{AdminError, Session};
use crate::lifecycle::Exit;

/// Whether the box is claimed, and what identifies it before trusting it with a password.
#[derive(Serialize, ToSchema)]
pub struct ClaimState {
    claimed: bool,
    device_id: String,
    /// SHA-256 of this box's TLS certificate (DER, hex): compare it with what the browser shows.
    certificate_sha256: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordBody {
    password: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    current_password: String,
    new_password: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FactoryResetBody {
    /// This box's device id, typed again: a reset cannot be undone.
    confirm_device_id: String,
}

/// A factory reset or reboot under way.
#[derive(Serialize, ToSchema)]
pub struct ResetAccepted {
    /// What happens next, for a person.
    message: &'static str,
}

/// A signed-in session.
#[derive(Serialize, ToSchema)]
pub struct SessionToken {
    /// Send as `Authorization: Bearer <token>`.
    token: String,
    expires_in_s: u64,
}

impl From<Session> for SessionToken {
    fn from(session: Session) -> SessionToken {
        SessionToken {
            token: session.token,
            expires_in_s: session.expires_in.as_secs(),
        }
    }
}

impl From<AdminError> for ApiError {
    fn from(error: AdminError) -> ApiError {
        let message = error.to_string();
        match error {
            AdminError::AlreadyClaimed => ApiError::new(StatusCode::CONFLICT, "claimed", message),
            AdminError::Unclaimed => ApiError::new(StatusCode::FORBIDDEN, "unclaimed", message),
            AdminError::WeakPassword(_) => {
                ApiError::new(StatusCode::BAD_REQUEST, "weak_password", message)
            }
            AdminError::WrongPassword => {
                ApiError::new(StatusCode::UNAUTHORIZED, "wrong_password", message)
            }
            AdminError::Throttled(_) => {
                ApiError::new(StatusCode::TOO_MANY_REQUESTS, "throttled", message)
            }
            AdminError::Internal(e) => ApiError::internal(format!("{e:#}")),
        }
    }
}

/// Whether the box is claimed, its id and certificate fingerprint. Open to everyone.
#[utoipa::path(get, path = "/api/v1/claim", responses((status = 200, body = ClaimState)))]
pub async fn claim_state(State(state): State<AppState>) -> Json<ClaimState> {
    let device = state.device();
    Json(ClaimState {
        claimed: device.is_claimed(),
        device_id: device.id().to_owned(),
        certificate_sha256: device.tls().fingerprint.clone(),
    })
}

/// Claims an unclaimed box by setting its admin password (at least 10 characters); signs in.
#[utoipa::path(post, path = "/api/v1/claim", request_body = PasswordBody, responses(
    (status = 201, body = SessionToken),
    (status = 400, description = "Weak password or malformed body", body = super::error::ErrorBody),
    (status = 409, description = "Already claimed", body = super::error::ErrorBody),
))]
pub async fn claim(
    State(state): State<AppState>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<SessionToken>), ApiError> {
    let body: PasswordBody = json_body(&body)?;
    let session = state.device().claim(&body.password).await?;
    Ok((StatusCode::CREATED, Json(session.into())))
}

/// Signs in with the admin password. After five wrong passwords in a row each attempt waits
/// (429 with `Retry-After`), up to five minutes.
#[utoipa::path(post, path = "/api/v1/login", request_body = PasswordBody, responses(
    (status = 200, body = SessionToken),
    (status = 401, description = "Wrong password", body = super::error::ErrorBody),
    (status = 403, description = "Not claimed yet", body = super::error::ErrorBody),
    (status = 429, description = "Too many wrong passwords", body = super::error::ErrorBody),
))]
pub async fn login(State(state): State<AppState>, body: axum::body::Bytes) -> Response {
    let body: PasswordBody = match json_body(&body) {
        Ok(body) => body,
        Err(e) => return e.into_response(),
    };
    match state.device().login(&body.password).await {
        Ok(session) => Json(SessionToken::from(session)).into_response(),
        Err(AdminError::Throttled(wait)) => {
            let retry = wait.as_secs().max(1).to_string();
            let mut response = ApiError::from(AdminError::Throttled(wait)).into_response();
            if let Ok(value) = HeaderValue::from_str(&retry) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
            response
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// Ends this session.
#[utoipa::path(post, path = "/api/v1/logout", responses((status = 204)))]
pub async fn logout(State(state): State<AppState>, headers: HeaderMap) -> StatusCode {
    if let Some(token) = bearer_token(&headers) {
        state.device().logout(token);
    }
    StatusCode::NO_CONTENT
}

/// Changes the admin password; every session ends (sign in again).
#[utoipa::path(put, path = "/api/v1/system/password", request_body = PasswordChange, responses(
    (status = 204),
    (status = 400, description = "Weak new password", body = super::error::ErrorBody),
    (status = 401, description = "Wrong current password", body = super::error::ErrorBody),
))]
pub async fn change_password(
    State(state): State<AppState>,
    body: axum::body::Bytes,
) -> Result<StatusCode, ApiError> {
    let body: PasswordChange = json_body(&body)?;
    state
        .device()
        .change_password(&body.current_password, &body.new_password)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Factory reset: the daemon restarts and wipes its data directory (events, media, cameras,
/// skills, libraries, keys, the admin password); the box comes back unclaimed with a new
/// identity. The firmware is untouched.
#[utoipa::path(post, path = "/api/v1/system/factory-reset", request_body = FactoryResetBody, responses(
    (status = 202, description = "Restarting to wipe", body = ResetAccepted),
    (status = 400, description = "The device id does not match", body = super::error::ErrorBody),
))]
pub async fn factory_reset(
    State(state): State<AppState>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<ResetAccepted>), ApiError> {
    let body: FactoryResetBody = json_body(&body)?;
    let device = state.device();
    if body.confirm_device_id != device.id() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "not_confirmed",
            "confirm_device_id must be this box's device id",
        ));
    }
    device.factory_reset().await.map_err(ApiError::internal)?;
    let message = "the daemon restarts, wipes its data and comes back unclaimed";
    Ok((StatusCode::ACCEPTED, Json(ResetAccepted { message })))
}

/// Reboots the box: the daemon stops in order (open sessions hung up, the store closed) and
/// systemd reboots (applianced.service's `ExecStopPost`). After an update, the new slot runs.
#[utoipa::path(post, path = "/api/v1/system/reboot", responses(
    (status = 202, description = "Stopping to reboot", body = ResetAccepted),
))]
pub async fn reboot(State(state): State<AppState>) -> (StatusCode, Json<ResetAccepted>) {
    state.inner.exits.request(Exit::Reboot);
    let message = "the daemon stops and the box reboots";
    (StatusCode::ACCEPTED, Json(ResetAccepted { message }))
}

/// The gate in front of the protected routes.
pub async fn require_admin(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let device = state.device();
    if !device.is_claimed() {
        return ApiError::from(AdminError::Unclaimed).into_response();
    }
    match bearer_token(request.headers()) {
        Some(token) if device.authorize(token) => next.run(request).await,
        presented => {
            let message = if presented.is_some() {
                "the session token is unknown or expired: sign in again (POST /api/v1/login)"
            } else {
                "sign in first (POST /api/v1/login) and send Authorization: Bearer <token>"
            };
            let mut response =
                ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message).into_response();
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"applianced\""),
            );
            response
        }
    }
}

fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}
