//! `/api/v1/devices…`: GB28181 devices registered to this platform.

use appliance_gb28181::device::Device;
use appliance_gb28181::platform::PlatformError;
use std::time::Duration;

use appliance_manscdp::ptz::{Pan, PtzCommand, PtzInstruction, Tilt, Zoom};
use appliance_manscdp::{BasicParam, Body, DeviceControl};
use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{ApiError, AppState, json_body, query_params};
use crate::sip::{QueryError, SipHandle};

#[derive(Serialize, ToSchema)]
pub struct DeviceList {
    items: Vec<Device>,
}

#[derive(Serialize, ToSchema)]
pub struct Requested {
    /// `requested`: the device was asked; its answer updates the device.
    status: &'static str,
}

/// The device was asked; its answer updates the device.
pub(super) const REQUESTED: Requested = Requested {
    status: "requested",
};

pub(super) fn sip(state: &AppState) -> Result<&SipHandle, ApiError> {
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
    sip(&state)?.request(&id, &id, Body::CatalogQuery).await?;
    Ok((StatusCode::ACCEPTED, Json(REQUESTED)))
}

/// How long the API waits for a device's answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// A device's answer to a query, as the device sent it (assembled when paged).
#[derive(Serialize, ToSchema)]
pub struct DeviceAnswer {
    /// False when only part of a paged answer arrived in time.
    complete: bool,
    /// The MANSCDP answer, e.g. `{"DeviceStatusResponse": {…}}` or `{"RecordInfoResponse": {…}}`.
    #[schema(value_type = Object)]
    answer: serde_json::Value,
}

impl From<PlatformError> for ApiError {
    fn from(e: PlatformError) -> ApiError {
        match e {
            PlatformError::UnknownDevice(id) => ApiError::not_found(format!("no device {id}")),
            e @ PlatformError::Offline(_) => {
                ApiError::new(StatusCode::CONFLICT, "offline", e.to_string())
            }
            PlatformError::UnknownSession(id) => ApiError::not_found(format!("no session {id}")),
            e @ PlatformError::NotControllable { .. } => {
                ApiError::new(StatusCode::CONFLICT, "not_controllable", e.to_string())
            }
            e @ PlatformError::InvalidControl(_) => {
                ApiError::new(StatusCode::BAD_REQUEST, "bad_control", e.to_string())
            }
            e @ PlatformError::Build(_) => ApiError::internal(e),
        }
    }
}

async fn ask(
    state: &AppState,
    id: &str,
    target: &str,
    body: Body,
) -> Result<Json<DeviceAnswer>, ApiError> {
    match sip(state)?.query(id, target, body, ANSWER_TIMEOUT).await {
        Ok((answer, complete)) => Ok(Json(DeviceAnswer {
            complete,
            answer: serde_json::to_value(answer).map_err(ApiError::internal)?,
        })),
        Err(QueryError::Platform(e)) => Err(e.into()),
        Err(e @ QueryError::Timeout(_)) => Err(ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "device_timeout",
            e.to_string(),
        )),
    }
}

/// Query parameters naming a channel of the device (the device itself when absent).
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ChannelParam {
    /// 20-digit channel id; defaults to the device.
    channel: Option<String>,
}

/// Ask a device for its status (online, recording, alarm inputs).
#[utoipa::path(
    get,
    path = "/api/v1/devices/{id}/status",
    params(("id" = String, Path, description = "20-digit GB28181 device id")),
    responses(
        (status = 200, body = DeviceAnswer),
        (status = 404, body = super::error::ErrorBody),
        (status = 409, body = super::error::ErrorBody),
        (status = 504, description = "The device did not answer", body = super::error::ErrorBody),
    ),
)]
pub async fn device_status(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<DeviceAnswer>, ApiError> {
    ask(&state, &id, &id, Body::DeviceStatusQuery).await
}

/// Ask a channel for its presets.
#[utoipa::path(
    get,
    path = "/api/v1/devices/{id}/presets",
    params(("id" = String, Path, description = "20-digit GB28181 device id"), ChannelParam),
    responses((status = 200, body = DeviceAnswer), (status = 504, body = super::error::ErrorBody)),
)]
pub async fn presets(
    State(state): State<AppState>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Json<DeviceAnswer>, ApiError> {
    let params: ChannelParam = query_params(raw.as_deref())?;
    let target = params.channel.unwrap_or_else(|| id.clone());
    ask(&state, &id, &target, Body::PresetQuery).await
}

/// Ask a device for its basic configuration (ConfigDownload `BasicParam`: name, registration
/// expiry, keepalive interval and count).
#[utoipa::path(
    get,
    path = "/api/v1/devices/{id}/config",
    params(("id" = String, Path, description = "20-digit GB28181 device id")),
    responses(
        (status = 200, body = DeviceAnswer),
        (status = 404, body = super::error::ErrorBody),
        (status = 409, body = super::error::ErrorBody),
        (status = 504, body = super::error::ErrorBody),
    ),
)]
pub async fn config(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<DeviceAnswer>, ApiError> {
    let query = Body::ConfigDownloadQuery {
        config_type: "BasicParam".into(),
    };
    ask(&state, &id, &id, query).await
}

/// New basic configuration for a device (DeviceConfig `BasicParam`); absent fields are left
/// as they are.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BasicConfig {
    /// Device name, at most 64 characters.
    name: Option<String>,
    /// Registration expiry, 60 to 86400 seconds.
    expiration: Option<u32>,
    /// Keepalive interval, 5 to 3600 seconds.
    heartbeat_interval: Option<u32>,
    /// Keepalives missed before offline, 1 to 10.
    heartbeat_count: Option<u32>,
}

fn basic_param(config: BasicConfig) -> Result<BasicParam, ApiError> {
    let within = |name: &str, value: Option<u32>, min: u32, max: u32| match value {
        Some(v) if !(min..=max).contains(&v) => Err(ApiError::bad_parameter(
            name,
            format!("must be between {min} and {max}, got {v}"),
        )),
        _ => Ok(value),
    };
    if let Some(name) = &config.name
        && (name.is_empty() || name.chars().count() > 64 || name.chars().any(char::is_control))
    {
        return Err(ApiError::bad_parameter(
            "name",
            "must be 1 to 64 printable characters",
        ));
    }
    let param = BasicParam {
        expiration: within("expiration", config.expiration, 60, 86_400)?,
        heartbeat_interval: within("heartbeat_interval", config.heartbeat_interval, 5, 3_600)?,
        heartbeat_count: within("heartbeat_count", config.heartbeat_count, 1, 10)?,
        name: config.name,
    };
    if param == BasicParam::default() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_body",
            "request body: nothing to change",
        ));
    }
    Ok(param)
}

/// Change a device's basic configuration and wait for its answer.
#[utoipa::path(
    put,
    path = "/api/v1/devices/{id}/config",
    params(("id" = String, Path, description = "20-digit GB28181 device id")),
    request_body = BasicConfig,
    responses(
        (status = 200, body = DeviceAnswer),
        (status = 400, body = super::error::ErrorBody),
        (status = 404, body = super::error::ErrorBody),
        (status = 409, body = super::error::ErrorBody),
        (status = 504, body = super::error::ErrorBody),
    ),
)]
pub async fn set_config(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<DeviceAnswer>, ApiError> {
    let param = basic_param(json_body(&body)?)?;
    ask(&state, &id, &id, Body::DeviceConfigBasic(param)).await
}

/// Recording search on a channel.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RecordSearch {
    /// 20-digit channel id; defaults to the device.
    channel: Option<String>,
    /// Start, device local time `YYYY-MM-DDThh:mm:ss`.
    start: String,
    /// End, device local time `YYYY-MM-DDThh:mm:ss`.
    end: String,
    /// `all` (default), `time`, `alarm` or `manual`.
    #[serde(rename = "type")]
    #[param(rename = "type")]
    record_type: Option<String>,
}

/// `YYYY-MM-DDThh:mm:ss`, the time format MANSCDP uses.
fn check_gb_time(name: &str, value: &str) -> Result<(), ApiError> {
    let shape = value.len() == 19
        && value.bytes().enumerate().all(|(i, b)| match i {
            4 | 7 => b == b'-',
            10 => b == b'T',
            13 | 16 => b == b':',
            _ => b.is_ascii_digit(),
        });
    if shape {
        Ok(())
    } else {
        Err(ApiError::bad_parameter(
            name,
            format!("`{value}` is not YYYY-MM-DDThh:mm:ss"),
        ))
    }
}

/// Ask a device which recordings it has in a time range (answers may span several messages).
#[utoipa::path(
    get,
    path = "/api/v1/devices/{id}/records",
    params(("id" = String, Path, description = "20-digit GB28181 device id"), RecordSearch),
    responses(
        (status = 200, body = DeviceAnswer),
        (status = 400, body = super::error::ErrorBody),
        (status = 504, body = super::error::ErrorBody),
    ),
)]
pub async fn records(
    State(state): State<AppState>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Json<DeviceAnswer>, ApiError> {
    let search: RecordSearch = query_params(raw.as_deref())?;
    check_gb_time("start", &search.start)?;
    check_gb_time("end", &search.end)?;
    let record_type = search.record_type.unwrap_or_else(|| "all".into());
    if !["all", "time", "alarm", "manual"].contains(&record_type.as_str()) {
        return Err(ApiError::bad_parameter(
            "type",
            "must be all, time, alarm or manual",
        ));
    }
    let target = search.channel.unwrap_or_else(|| id.clone());
    let body = Body::RecordInfoQuery {
        start_time: search.start,
        end_time: search.end,
        record_type: Some(record_type),
        file_path: None,
        secrecy: Some(0),
    };
    ask(&state, &id, &target, body).await
}

/// A pan/tilt/zoom or preset command.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PtzRequest {
    /// 20-digit channel id; defaults to the device.
    channel: Option<String>,
    /// `left`, `right`, `up`, `down`, `zoom_in`, `zoom_out`, `stop`, `preset_set`,
    /// `preset_goto` or `preset_delete`.
    action: String,
    /// Speed 0–255 for moves (zoom uses the top 4 bits' worth, 0–15). Default 128.
    speed: Option<u8>,
    /// Preset number 1–255 for the preset actions.
    preset: Option<u8>,
}

fn ptz_instruction(request: &PtzRequest) -> Result<PtzInstruction, ApiError> {
    let speed = request.speed.unwrap_or(128);
    let movement = |pan, tilt, zoom| {
        PtzInstruction::Move(PtzCommand {
            pan,
            tilt,
            zoom,
            pan_speed: speed,
            tilt_speed: speed,
            zoom_speed: speed >> 4,
        })
    };
    let preset = || match request.preset {
        Some(n) if n > 0 => Ok(n),
        _ => Err(ApiError::bad_parameter(
            "preset",
            "preset actions need a preset number 1–255",
        )),
    };
    Ok(match request.action.as_str() {
        "left" => movement(Some(Pan::Left), None, None),
        "right" => movement(Some(Pan::Right), None, None),
        "up" => movement(None, Some(Tilt::Up), None),
        "down" => movement(None, Some(Tilt::Down), None),
        "zoom_in" => movement(None, None, Some(Zoom::In)),
        "zoom_out" => movement(None, None, Some(Zoom::Out)),
        "stop" => PtzInstruction::Stop,
        "preset_set" => PtzInstruction::PresetSet(preset()?),
        "preset_goto" => PtzInstruction::PresetGoto(preset()?),
        "preset_delete" => PtzInstruction::PresetDelete(preset()?),
        other => {
            return Err(ApiError::bad_parameter(
                "action",
                format!("`{other}` is not a PTZ action"),
            ));
        }
    })
}

/// Move a PTZ camera or use its presets (DeviceControl PTZCmd).
#[utoipa::path(
    post,
    path = "/api/v1/devices/{id}/ptz",
    params(("id" = String, Path, description = "20-digit GB28181 device id")),
    request_body = PtzRequest,
    responses(
        (status = 202, body = Requested),
        (status = 400, body = super::error::ErrorBody),
        (status = 404, body = super::error::ErrorBody),
        (status = 409, body = super::error::ErrorBody),
    ),
)]
pub async fn ptz(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<Requested>), ApiError> {
    let request: PtzRequest = json_body(&body)?;
    let instruction = ptz_instruction(&request)?;
    let target = request.channel.clone().unwrap_or_else(|| id.clone());
    sip(&state)?
        .request(
            &id,
            &target,
            Body::DeviceControl(DeviceControl::Ptz(instruction)),
        )
        .await?;
    Ok((StatusCode::ACCEPTED, Json(REQUESTED)))
}

/// A device control other than PTZ.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ControlRequest {
    /// 20-digit channel id; defaults to the device.
    channel: Option<String>,
    /// `teleboot` (reboot), `guard_on`, `guard_off`, `alarm_reset`, `iframe` (request a key
    /// frame), `record_start` or `record_stop`.
    command: String,
}

/// The DeviceControl a control name stands for (the API's and the cloud commands' vocabulary).
pub fn device_control(name: &str) -> Option<DeviceControl> {
    Some(match name {
        "teleboot" => DeviceControl::TeleBoot,
        "guard_on" => DeviceControl::Guard { set: true },
        "guard_off" => DeviceControl::Guard { set: false },
        "alarm_reset" => DeviceControl::AlarmReset {
            method: None,
            alarm_type: None,
        },
        "iframe" => DeviceControl::IFrame,
        "record_start" => DeviceControl::Record { start: true },
        "record_stop" => DeviceControl::Record { start: false },
        _ => return None,
    })
}

/// Reboot a device, arm or disarm it, reset its alarm, ask for a key frame, start or stop its
/// recording (DeviceControl).
#[utoipa::path(
    post,
    path = "/api/v1/devices/{id}/control",
    params(("id" = String, Path, description = "20-digit GB28181 device id")),
    request_body = ControlRequest,
    responses(
        (status = 202, body = Requested),
        (status = 400, body = super::error::ErrorBody),
        (status = 404, body = super::error::ErrorBody),
        (status = 409, body = super::error::ErrorBody),
    ),
)]
pub async fn control(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<Requested>), ApiError> {
    let request: ControlRequest = json_body(&body)?;
    let control = device_control(&request.command).ok_or_else(|| {
        ApiError::bad_parameter(
            "command",
            format!("`{}` is not a device control", request.command),
        )
    })?;
    let target = request.channel.unwrap_or_else(|| id.clone());
    sip(&state)?
        .request(&id, &target, Body::DeviceControl(control))
        .await?;
    Ok((StatusCode::ACCEPTED, Json(REQUESTED)))
}
