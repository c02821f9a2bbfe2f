//! Health, Prometheus metrics and the OpenAPI document.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use serde::Serialize;
use serde_json::json;
use utoipa::{OpenApi, ToSchema};

use super::{ApiDoc, ApiError, AppState};

/// State of the appliance and each of its subsystems.
#[derive(Serialize, ToSchema)]
pub struct Health {
    /// `ok` when every subsystem is `ok`, `degraded` otherwise.
    status: &'static str,
    version: &'static str,
    uptime_s: u64,
    subsystems: BTreeMap<&'static str, Subsystem>,
}

#[derive(Serialize, ToSchema)]
pub struct Subsystem {
    /// `ok` or `down`.
    status: &'static str,
    /// Subsystem-specific figures.
    #[schema(value_type = Object)]
    details: serde_json::Value,
}

fn status_word(ok: bool) -> &'static str {
    if ok { "ok" } else { "down" }
}

/// Appliance health. Always 200 while the daemon answers; read `status`.
#[utoipa::path(get, path = "/api/v1/health", responses((status = 200, body = Health)))]
pub async fn health(State(state): State<AppState>) -> Json<Health> {
    let store = state.store();
    let usage = store.usage();
    let mut subsystems = BTreeMap::new();
    subsystems.insert(
        "store",
        Subsystem {
            status: status_word(store.is_writable() && usage.is_ok()),
            details: match usage {
                Ok(u) => json!({
                    "dir": store.dir(),
                    "events": u.events,
                    "record_disk_bytes": u.store_disk_bytes,
                    "media_bytes": u.media_bytes,
                }),
                Err(e) => json!({ "error": e.to_string() }),
            },
        },
    );
    subsystems.insert(
        "http",
        Subsystem {
            status: "ok",
            details: json!({ "listen": state.inner.http_addr }),
        },
    );
    if let Some(sip) = &state.inner.sip {
        let devices = sip.devices();
        subsystems.insert(
            "sip",
            Subsystem {
                status: "ok",
                details: json!({
                    "listen": sip.local_addr,
                    "devices": devices.len(),
                    "devices_online": devices.iter().filter(|d| d.online).count(),
                }),
            },
        );
    }
    let uplinks = state.inner.uplinks.statuses();
    if !uplinks.is_empty() {
        // Connecting is fine; an upstream whose last attempt failed is not.
        let failing = uplinks.iter().any(|u| u.last_error.is_some());
        subsystems.insert(
            "uplink",
            Subsystem {
                status: status_word(!failing),
                details: json!({ "upstreams": uplinks }),
            },
        );
    }
    let all_ok = subsystems.values().all(|s| s.status == "ok");
    Json(Health {
        status: if all_ok { "ok" } else { "degraded" },
        version: env!("CARGO_PKG_VERSION"),
        uptime_s: state.inner.started.elapsed().as_secs(),
        subsystems,
    })
}

#[derive(Serialize, ToSchema)]
pub struct UplinkList {
    items: Vec<appliance_uplink::sender::UplinkStatus>,
    /// Media (snapshots, clips) uploaded after their events, over MQTT; absent without MQTT.
    media: Option<appliance_uplink::media::MediaStatus>,
}

/// Each upstream's state (connected, delivered, depth and age of the backlog, last error) and
/// the media uploader's.
#[utoipa::path(get, path = "/api/v1/uplink", responses((status = 200, body = UplinkList)))]
pub async fn uplink(State(state): State<AppState>) -> Json<UplinkList> {
    Json(UplinkList {
        items: state.inner.uplinks.statuses(),
        media: state.inner.uplinks.media(),
    })
}

/// The box's latest telemetry snapshot: uptime, CPU, memory, temperatures, disk, GPU/NPU load,
/// cameras, upstream backlog (what goes to the cloud every `uplink.telemetry_interval`).
#[utoipa::path(
    get,
    path = "/api/v1/telemetry",
    responses(
        (status = 200, body = appliance_uplink::telemetry::Telemetry),
        (status = 503, description = "No snapshot taken yet", body = super::error::ErrorBody),
    ),
)]
pub async fn telemetry(
    State(state): State<AppState>,
) -> Result<Json<appliance_uplink::telemetry::Telemetry>, ApiError> {
    state.inner.uplinks.telemetry().map(Json).ok_or_else(|| {
        ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "starting",
            "no telemetry snapshot yet",
        )
    })
}

/// Prometheus text exposition.
pub async fn metrics(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    state.store().refresh_gauges();
    state.inner.vision.refresh_gauges();
    let mut text = String::new();
    let registry = state
        .inner
        .registry
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    prometheus_client::encoding::text::encode(&mut text, &registry).map_err(ApiError::internal)?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    ))
}

/// The OpenAPI document, generated from the handlers' annotations.
pub async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
