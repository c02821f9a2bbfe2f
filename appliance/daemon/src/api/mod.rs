//! The HTTP API (axum). `/api/v1/*` is JSON; `/metrics` is Prometheus text.
//!
//! Routes are grouped so that later layers slot in without touching the handlers: the admin gate
//! ([`admin::require_admin`]) wraps [`protected_routes`], the web UI mounts beside `/api`.

mod admin;
pub mod devices;
mod error;
mod events;
mod libraries;
mod sessions;
mod system;
mod update;
mod vision;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use appliance_store::EventStore;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post, put};
use prometheus_client::registry::Registry;
use utoipa::OpenApi;

pub use error::ApiError;

use crate::device::Device;
use crate::lifecycle::ExitRequests;
use crate::sip::SipHandle;
use crate::update::Updates;
use crate::uplink::Uplinks;
use crate::vision::Vision;

/// Everything handlers share.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<StateInner>,
}

struct StateInner {
    store: EventStore,
    device: Device,
    sip: Option<SipHandle>,
    uplinks: Uplinks,
    vision: Vision,
    updates: Updates,
    exits: ExitRequests,
    registry: Mutex<Registry>,
    http_addr: SocketAddr,
    started: Instant,
}

impl AppState {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: EventStore,
        device: Device,
        sip: Option<SipHandle>,
        uplinks: Uplinks,
        vision: Vision,
        updates: Updates,
        exits: ExitRequests,
        registry: Registry,
        http_addr: SocketAddr,
        started: Instant,
    ) -> AppState {
        AppState {
            inner: Arc::new(StateInner {
                store,
                device,
                sip,
                uplinks,
                vision,
                updates,
                exits,
                registry: Mutex::new(registry),
                http_addr,
                started,
            }),
        }
    }

    fn store(&self) -> &EventStore {
        &self.inner.store
    }

    fn device(&self) -> &Device {
        &self.inner.device
    }

    fn updates(&self) -> &Updates {
        &self.inner.updates
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "applianced API",
        description = "Local REST API of the edge video-AI appliance."
    ),
    paths(
        system::health,
        admin::claim_state,
        admin::claim,
        admin::login,
        admin::logout,
        admin::change_password,
        admin::factory_reset,
        update::status,
        update::install,
        admin::reboot,
        system::uplink,
        system::telemetry,
        events::list_events,
        events::get_event,
        events::get_media,
        events::ack_event,
        devices::list_devices,
        devices::get_device,
        devices::refresh_catalog,
        devices::device_status,
        devices::presets,
        devices::config,
        devices::set_config,
        devices::records,
        devices::ptz,
        devices::control,
        sessions::start_session,
        sessions::list_sessions,
        sessions::get_session,
        sessions::stop_session,
        sessions::control_session,
        vision::list_cameras,
        vision::get_camera,
        vision::put_camera,
        vision::delete_camera,
        vision::list_skills,
        vision::create_skill,
        vision::get_skill,
        vision::put_skill,
        vision::delete_skill,
        vision::skill_schema,
        vision::list_models,
        vision::install_model,
        vision::delete_model,
        libraries::list_libraries,
        libraries::get_library,
        libraries::put_library,
        libraries::delete_library,
        libraries::put_person,
        libraries::delete_person,
        libraries::enrol_photo,
        libraries::delete_photo,
        libraries::list_plate_lists,
        libraries::put_plate_list,
        libraries::delete_plate_list,
    ),
    components(schemas(
        appliance_model::Event,
        appliance_model::EventId,
        appliance_model::Timestamp,
        appliance_model::EventSource,
        appliance_model::Severity,
        appliance_model::MediaRef,
        appliance_model::MediaKind,
        appliance_model::Ack,
        events::EventList,
        events::AckRequest,
        devices::DeviceList,
        devices::Requested,
        devices::DeviceAnswer,
        devices::PtzRequest,
        devices::ControlRequest,
        devices::BasicConfig,
        sessions::StartRequest,
        sessions::SessionView,
        sessions::SessionList,
        sessions::Endpoint,
        sessions::Kind,
        sessions::Transport,
        sessions::ControlRequest,
        appliance_media::receive::ReceiveStats,
        appliance_gb28181::device::Device,
        appliance_gb28181::device::Channel,
        appliance_gb28181::device::DeviceInfo,
        appliance_gb28181::device::Peer,
        appliance_gb28181::device::Transport,
        system::Health,
        admin::ClaimState,
        admin::PasswordBody,
        admin::PasswordChange,
        admin::FactoryResetBody,
        admin::SessionToken,
        admin::ResetAccepted,
        crate::update::UpdateView,
        crate::update::Job,
        crate::update::JobState,
        update::InstallFromUrl,
        system::UplinkList,
        appliance_uplink::sender::UplinkStatus,
        appliance_uplink::media::MediaStatus,
        appliance_uplink::telemetry::Telemetry,
        appliance_uplink::telemetry::SystemSample,
        appliance_uplink::telemetry::MemoryUsage,
        appliance_uplink::telemetry::Temperature,
        appliance_uplink::telemetry::DiskUsage,
        appliance_uplink::telemetry::CameraCounts,
        appliance_uplink::telemetry::UplinkSummary,
        system::Subsystem,
        error::ErrorBody,
        error::ErrorDetail,
        vision::CameraView,
        vision::CameraList,
        vision::SkillView,
        vision::SkillList,
        vision::ModelView,
        vision::ModelList,
        crate::vision::catalog::Camera,
        appliance_media::frames::KeyframeMode,
        crate::vision::CameraStatus,
        libraries::PersonView,
        libraries::LibraryView,
        libraries::LibraryList,
        libraries::LibrarySettings,
        libraries::PersonBody,
        crate::vision::edit::Enrolled,
        libraries::PlateLists,
    ))
)]
pub struct ApiDoc;

/// Typed query parameters; a missing, unknown or malformed one is a JSON 400 that names it
/// (axum's `Query` rejection is plain text).
fn query_params<T: serde::de::DeserializeOwned>(raw: Option<&str>) -> Result<T, ApiError> {
    serde_urlencoded::from_str(raw.unwrap_or("")).map_err(|e| {
        ApiError::new(
            axum::http::StatusCode::BAD_REQUEST,
            "bad_parameter",
            format!("query parameters: {e}"),
        )
    })
}

/// A JSON request body; malformed JSON or a wrong field is a JSON 400 that names the problem.
fn json_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            axum::http::StatusCode::BAD_REQUEST,
            "bad_body",
            format!("request body: {e}"),
        )
    })
}

/// Routes behind the admin gate: a claimed box and a signed-in session.
fn protected_routes() -> Router<AppState> {
    Router::new()
        .route("/logout", post(admin::logout))
        .route("/system/password", put(admin::change_password))
        .route("/system/factory-reset", post(admin::factory_reset))
        .route("/system/reboot", post(admin::reboot))
        .route(
            "/system/update",
            get(update::status)
                .post(update::install)
                // Bundles are streamed to disk with `update.max_bundle` as the limit.
                .layer(DefaultBodyLimit::disable()),
        )
        .route("/events", get(events::list_events))
        .route("/uplink", get(system::uplink))
        .route("/telemetry", get(system::telemetry))
        .route("/events/{id}", get(events::get_event))
        .route("/events/{id}/media/{n}", get(events::get_media))
        .route("/events/{id}/ack", post(events::ack_event))
        .route("/devices", get(devices::list_devices))
        .route("/devices/{id}", get(devices::get_device))
        .route("/devices/{id}/catalog", post(devices::refresh_catalog))
        .route("/devices/{id}/status", get(devices::device_status))
        .route("/devices/{id}/presets", get(devices::presets))
        .route(
            "/devices/{id}/config",
            get(devices::config).put(devices::set_config),
        )
        .route("/devices/{id}/records", get(devices::records))
        .route("/devices/{id}/ptz", post(devices::ptz))
        .route("/devices/{id}/control", post(devices::control))
        .route(
            "/devices/{id}/channels/{channel}/sessions",
            post(sessions::start_session),
        )
        .route("/sessions", get(sessions::list_sessions))
        .route(
            "/sessions/{id}",
            get(sessions::get_session).delete(sessions::stop_session),
        )
        .route("/sessions/{id}/control", post(sessions::control_session))
        .route("/cameras", get(vision::list_cameras))
        .route(
            "/cameras/{camera}",
            get(vision::get_camera)
                .put(vision::put_camera)
                .delete(vision::delete_camera),
        )
        .route(
            "/cameras/{camera}/skills",
            get(vision::list_skills).post(vision::create_skill),
        )
        .route(
            "/cameras/{camera}/skills/{skill}",
            get(vision::get_skill)
                .put(vision::put_skill)
                .delete(vision::delete_skill),
        )
        .route("/skills/schema", get(vision::skill_schema))
        .route(
            "/models",
            get(vision::list_models)
                .post(vision::install_model)
                .layer(DefaultBodyLimit::max(vision::MAX_MODEL_BYTES)),
        )
        .route("/models/{model}", delete(vision::delete_model))
        .route("/faces", get(libraries::list_libraries))
        .route(
            "/faces/{library}",
            get(libraries::get_library)
                .put(libraries::put_library)
                .delete(libraries::delete_library),
        )
        .route(
            "/faces/{library}/people/{person}",
            put(libraries::put_person).delete(libraries::delete_person),
        )
        .route(
            "/faces/{library}/people/{person}/photos",
            post(libraries::enrol_photo).layer(DefaultBodyLimit::max(libraries::MAX_PHOTO_BYTES)),
        )
        .route(
            "/faces/{library}/photos/{photo}",
            delete(libraries::delete_photo),
        )
        .route("/plates", get(libraries::list_plate_lists))
        .route(
            "/plates/{list}",
            put(libraries::put_plate_list).delete(libraries::delete_plate_list),
        )
}

pub fn router(state: AppState) -> Router {
    let gate = axum::middleware::from_fn_with_state(state.clone(), admin::require_admin);
    let api = Router::new()
        .route("/health", get(system::health))
        .route("/openapi.json", get(system::openapi))
        .route("/claim", get(admin::claim_state).post(admin::claim))
        .route("/login", post(admin::login))
        .merge(protected_routes().route_layer(gate));
    Router::new()
        .nest("/api/v1", api)
        .route("/metrics", get(system::metrics))
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .with_state(state)
}
