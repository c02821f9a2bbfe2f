//! `/api/v1/devices…`: GB28181 devices registered to this platform.

use appliance_gb28181::device::Device;
use appliance_gb28181::platform::PlatformError;
use appliance_manscdp::Body;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;

use super::{ApiError, AppState};
use crate::sip::SipHandle;

#[derive(Serialize, ToSchema)]
pub struct DeviceList {
    items: Vec<Device>,
}

#[derive(Serialize, ToSchema)]
pub struct Requested {
    /// `requested`: the device was asked; its answer updates the device.
    status: &'static str,
}

fn sip(state: &AppState) -> Result<&SipHandle, ApiError> {
    state.inner.sip.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "SIP signalling is not running",
        )
    })
}

/// Devices registered to this platform, with their channels and state.
#[utoipa::path(get, path = "/api/v1/devices", responses((status = 200, body = DeviceList)))]
pub async fn list_devices(State(state): State<AppState>) -> Result<Json<DeviceList>, ApiError> {
    Ok(Json(DeviceList {
        items: sip(&state)?.devices(),
    }))
}

/// One device: transport, address, last seen, info and channels.
#[utoipa::path(
    get,
    path = "/api/v1/devices/{id}",
    params(("id" = String, Path, description = "20-digit GB28181 device id")),
    responses((status = 200, body = Device), (status = 404, body = super::error::ErrorBody)),
)]
pub async fn get_device(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Device>, ApiError> {
    sip(&state)?
        .device(&id)
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no device {id}")))
}

/// Ask the device for its catalog again (channels, names, status).
#[utoipa::path(
    post,
    path = "/api/v1/devices/{id}/catalog",
    params(("id" = String, Path, description = "20-digit GB28181 device id")),
    responses(
        (status = 202, body = Requested),
        (status = 404, body = super::error::ErrorBody),
        (status = 409, description = "The device is offline", body = super::error::ErrorBody),
    ),
)]
pub async fn refresh_catalog(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Requested>), ApiError> {
    match sip(&state)?.request(&id, Body::CatalogQuery).await {
        Ok(()) => Ok((
            StatusCode::ACCEPTED,
            Json(Requested {
                status: "requested",
            }),
        )),
        Err(PlatformError::UnknownDevice(_)) => Err(ApiError::not_found(format!("no device {id}"))),
        Err(e @ PlatformError::Offline(_)) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "offline",
            e.to_string(),
        )),
        Err(e @ PlatformError::Build(_)) => Err(ApiError::internal(e)),
    }
}
