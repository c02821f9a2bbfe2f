//! Firmware updates: RAUC's status and installing a bundle, uploaded or from a URL.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use futures_lite::StreamExt as _;
use serde::Deserialize;
use tokio::io::AsyncWriteExt as _;
use utoipa::ToSchema;

use super::{ApiError, AppState, json_body};
use crate::update::{Job, StartError, UpdateView, check_bundle_url};

/// A bundle RAUC fetches itself (streaming, `verity` bundles).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InstallFromUrl {
    /// `http://…` or `https://…`.
    url: String,
}

impl From<StartError> for ApiError {
    fn from(error: StartError) -> ApiError {
        let status = match error {
            StartError::Off | StartError::Unreachable(_) => StatusCode::SERVICE_UNAVAILABLE,
            StartError::Busy => StatusCode::CONFLICT,
            StartError::Refused(_) => StatusCode::UNPROCESSABLE_ENTITY,
        };
        let code = match error {
            StartError::Off => "updates_off",
            StartError::Unreachable(_) => "rauc_unavailable",
            StartError::Busy => "busy",
            StartError::Refused(_) => "refused",
        };
        ApiError::new(status, code, error.to_string())
    }
}

/// RAUC's status (slots, booted and primary slot, bundle versions, progress) and the last
/// installation started here. `available` is false, with the reason, when RAUC does not answer.
#[utoipa::path(get, path = "/api/v1/system/update", responses((status = 200, body = UpdateView)))]
pub async fn status(State(state): State<AppState>) -> Json<UpdateView> {
    Json(state.updates().view().await)
}

/// Installs a bundle: the bundle itself as the body (`application/octet-stream`, up to
/// `update.max_bundle`), or `{"url": "https://…"}` (`application/json`). Returns once RAUC
/// started; follow it with `GET /api/v1/system/update`. A bad bundle (signature, compatible)
/// is refused by RAUC during the installation: the job ends `failed` with RAUC's reason.
#[utoipa::path(post, path = "/api/v1/system/update", request_body(content = InstallFromUrl,
    description = "JSON with a URL, or the bundle as application/octet-stream"), responses(
    (status = 202, body = Job),
    (status = 400, description = "Malformed body", body = super::error::ErrorBody),
    (status = 409, description = "An installation is running", body = super::error::ErrorBody),
    (status = 413, description = "Larger than update.max_bundle", body = super::error::ErrorBody),
    (status = 503, description = "Updates off, or RAUC unreachable", body = super::error::ErrorBody),
))]
pub async fn install(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<Job>), ApiError> {
    let updates = state.updates();
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let job = if content_type.starts_with("application/json") {
        let bytes = axum::body::to_bytes(body, 64 * 1024)
            .await
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_body", e.to_string()))?;
        let request: InstallFromUrl = json_body(&bytes)?;
        check_bundle_url(&request.url)
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_body", e))?;
        updates.install(&request.url, &request.url).await?
    } else if content_type.starts_with("application/octet-stream") {
        // Not gigabytes read only to be refused.
        if updates.is_busy() {
            return Err(StartError::Busy.into());
        }
        let path = updates.new_upload_path();
        receive_bundle(body, &path, updates.max_bundle_bytes()).await?;
        updates
            .install(&path.to_string_lossy(), "upload")
            .await
            .inspect_err(|_| {
                let _ = std::fs::remove_file(&path);
            })?
    } else {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "bad_content_type",
            "send the bundle as application/octet-stream, or {\"url\": …} as application/json",
        ));
    };
    Ok((StatusCode::ACCEPTED, Json(job)))
}

/// Streams an uploaded bundle to `path` (never whole in memory), refusing it past `limit`;
/// fsynced, since RAUC reads it from another process.
async fn receive_bundle(body: Body, path: &std::path::Path, limit: u64) -> Result<(), ApiError> {
    if let Some(dir) = path.parent() {
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(ApiError::internal)?;
    }
    let mut file = tokio::fs::File::create(path)
        .await
        .map_err(ApiError::internal)?;
    let mut stream = body.into_data_stream();
    let mut written = 0u64;
    let outcome = async {
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| {
                ApiError::new(StatusCode::BAD_REQUEST, "bad_body", format!("upload: {e}"))
            })?;
            written += chunk.len() as u64;
            if written > limit {
                return Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "too_large",
                    format!("the bundle is larger than update.max_bundle ({limit} bytes)"),
                ));
            }
            file.write_all(&chunk).await.map_err(ApiError::internal)?;
        }
        if written == 0 {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_body",
                "the upload is empty",
            ));
        }
        file.sync_all().await.map_err(ApiError::internal)
    }
    .await;
    if outcome.is_err() {
        let _ = tokio::fs::remove_file(path).await;
    }
    outcome
}
