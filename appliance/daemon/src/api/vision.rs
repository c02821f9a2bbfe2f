//! `/api/v1/cameras…`, `/api/v1/skills/schema`, `/api/v1/models`: the cameras the skills watch,
//! their skills (JSON, validated against the published schema, applied live), and the model
//! registry. Face and plate libraries are in `libraries.rs`.

use axum::Json;
use axum::extract::{Multipart, Path, State};
use axum::http::StatusCode;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::{ApiError, AppState, json_body};
use crate::vision::catalog::{self, Camera};
use crate::vision::{CameraStatus, Vision};

pub(super) fn vision(state: &AppState) -> &Vision {
    &state.inner.vision
}

#[derive(Serialize, ToSchema)]
pub struct CameraView {
    id: String,
    #[serde(flatten)]
    camera: Camera,
    /// Ids of the camera's skills.
    skills: Vec<String>,
    /// Absent until the camera was started once.
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<CameraStatus>,
}

#[derive(Serialize, ToSchema)]
pub struct CameraList {
    items: Vec<CameraView>,
}

fn camera_view(state: &AppState, id: String, camera: Camera) -> Result<CameraView, ApiError> {
    let skills = catalog::load::<Value>(state.store(), catalog::SKILLS, &format!("{id}/"))?
        .into_iter()
        .map(|(key, _)| key[id.len() + 1..].to_string())
        .collect();
    let status = vision(state).camera_status(&id);
    Ok(CameraView {
        id,
        camera,
        skills,
        status,
    })
}

fn load_camera(state: &AppState, id: &str) -> Result<Camera, ApiError> {
    catalog::get(state.store(), catalog::CAMERAS, id)?
        .ok_or_else(|| ApiError::not_found(format!("no camera {id}")))
}

/// Cameras with their skills and analysis figures.
#[utoipa::path(get, path = "/api/v1/cameras", responses((status = 200, body = CameraList)))]
pub async fn list_cameras(State(state): State<AppState>) -> Result<Json<CameraList>, ApiError> {
    let items = catalog::load::<Camera>(state.store(), catalog::CAMERAS, "")?
        .into_iter()
        .map(|(id, camera)| camera_view(&state, id, camera))
        .collect::<Result<_, _>>()?;
    Ok(Json(CameraList { items }))
}

/// One camera: its source, skills, and figures (frames in, decoded, analysed, dropped, decode
/// time, events, the last error).
#[utoipa::path(
    get,
    path = "/api/v1/cameras/{camera}",
    params(("camera" = String, Path, description = "Camera id")),
    responses((status = 200, body = CameraView), (status = 404, body = super::error::ErrorBody)),
)]
pub async fn get_camera(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<CameraView>, ApiError> {
    let camera = load_camera(&state, &id)?;
    Ok(Json(camera_view(&state, id, camera)?))
}

/// Adds or replaces a camera; its analysis restarts with the new source.
#[utoipa::path(
    put,
    path = "/api/v1/cameras/{camera}",
    params(("camera" = String, Path, description = "Camera id: 1-64 letters, digits, `.`, `_`, `-`")),
    request_body = Camera,
    responses((status = 200, body = CameraView), (status = 400, body = super::error::ErrorBody)),
)]
pub async fn put_camera(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<CameraView>, ApiError> {
    let camera: Camera = json_body(&body)?;
    vision(&state).put_camera(&id, &camera).await?;
    Ok(Json(camera_view(&state, id, camera)?))
}

/// Removes a camera and its skills.
#[utoipa::path(
    delete,
    path = "/api/v1/cameras/{camera}",
    params(("camera" = String, Path, description = "Camera id")),
    responses((status = 204), (status = 404, body = super::error::ErrorBody)),
)]
pub async fn delete_camera(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    vision(&state).delete_camera(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, ToSchema)]
pub struct SkillView {
    id: String,
    /// The config as stored (as given, validated).
    #[schema(value_type = Object)]
    config: Value,
}

#[derive(Serialize, ToSchema)]
pub struct SkillList {
    items: Vec<SkillView>,
}

/// The camera's skills.
#[utoipa::path(
    get,
    path = "/api/v1/cameras/{camera}/skills",
    params(("camera" = String, Path, description = "Camera id")),
    responses((status = 200, body = SkillList), (status = 404, body = super::error::ErrorBody)),
)]
pub async fn list_skills(
    State(state): State<AppState>,
    Path(camera): Path<String>,
) -> Result<Json<SkillList>, ApiError> {
    load_camera(&state, &camera)?;
    let items = catalog::load::<Value>(state.store(), catalog::SKILLS, &format!("{camera}/"))?
        .into_iter()
        .map(|(key, config)| SkillView {
            id: key[camera.len() + 1..].to_string(),
            config,
        })
        .collect();
    Ok(Json(SkillList { items }))
}

/// Adds a skill to a camera (JSON as `/api/v1/skills/schema` describes); it runs at once.
#[utoipa::path(
    post,
    path = "/api/v1/cameras/{camera}/skills",
    params(("camera" = String, Path, description = "Camera id")),
    request_body(content = Object, description = "A skill config, e.g. {\"skill\":\"intrusion\",\"model\":\"yolox_nano\",\"classes\":[\"person\"],\"zones\":[…]}"),
    responses(
        (status = 201, body = SkillView),
        (status = 400, description = "Invalid config; the message names the field", body = super::error::ErrorBody),
        (status = 404, body = super::error::ErrorBody),
    ),
)]
pub async fn create_skill(
    State(state): State<AppState>,
    Path(camera): Path<String>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<SkillView>), ApiError> {
    let id = hex::encode(rand::random::<[u8; 6]>());
    let config = vision(&state).put_skill(&camera, &id, &body).await?;
    Ok((StatusCode::CREATED, Json(SkillView { id, config })))
}

/// One skill's config.
#[utoipa::path(
    get,
    path = "/api/v1/cameras/{camera}/skills/{skill}",
    params(("camera" = String, Path), ("skill" = String, Path)),
    responses((status = 200, body = SkillView), (status = 404, body = super::error::ErrorBody)),
)]
pub async fn get_skill(
    State(state): State<AppState>,
    Path((camera, skill)): Path<(String, String)>,
) -> Result<Json<SkillView>, ApiError> {
    let config = catalog::get::<Value>(
        state.store(),
        catalog::SKILLS,
        &catalog::skill_key(&camera, &skill),
    )?
    .ok_or_else(|| ApiError::not_found(format!("no skill {skill} on camera {camera}")))?;
    Ok(Json(SkillView { id: skill, config }))
}

/// Replaces a skill's config (or creates it under this id); applied live.
#[utoipa::path(
    put,
    path = "/api/v1/cameras/{camera}/skills/{skill}",
    params(("camera" = String, Path), ("skill" = String, Path)),
    request_body(content = Object, description = "A skill config"),
    responses(
        (status = 200, body = SkillView),
        (status = 400, body = super::error::ErrorBody),
        (status = 404, body = super::error::ErrorBody),
    ),
)]
pub async fn put_skill(
    State(state): State<AppState>,
    Path((camera, skill)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Result<Json<SkillView>, ApiError> {
    let config = vision(&state).put_skill(&camera, &skill, &body).await?;
    Ok(Json(SkillView { id: skill, config }))
}

/// Removes a skill; the camera goes on with its others.
#[utoipa::path(
    delete,
    path = "/api/v1/cameras/{camera}/skills/{skill}",
    params(("camera" = String, Path), ("skill" = String, Path)),
    responses((status = 204), (status = 404, body = super::error::ErrorBody)),
)]
pub async fn delete_skill(
    State(state): State<AppState>,
    Path((camera, skill)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    vision(&state).delete_skill(&camera, &skill).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The JSON Schema (draft 2020-12) of skill configs.
#[utoipa::path(
    get,
    path = "/api/v1/skills/schema",
    responses((status = 200, description = "JSON Schema of a skill config", body = Object)),
)]
pub async fn skill_schema() -> Json<Value> {
    Json(appliance_skills::config::json_schema())
}

#[derive(Serialize, ToSchema)]
pub struct ModelView {
    name: String,
    /// `installed` on this box or `bundled` with the firmware.
    #[serde(skip_serializing_if = "Option::is_none")]
    origin: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    task: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    family: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    licence: Option<String>,
    /// Why the model cannot be used (unreadable manifest).
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct ModelList {
    items: Vec<ModelView>,
    /// Why no model can run (ONNX Runtime missing), when so.
    #[serde(skip_serializing_if = "Option::is_none")]
    runtime_error: Option<String>,
}

/// The models skills can name.
#[utoipa::path(get, path = "/api/v1/models", responses((status = 200, body = ModelList)))]
pub async fn list_models(State(state): State<AppState>) -> Result<Json<ModelList>, ApiError> {
    let service = vision(&state).clone();
    let list = tokio::task::spawn_blocking(move || ModelList {
        items: service
            .registry()
            .list()
            .into_iter()
            .map(|(name, entry)| match entry {
                Ok(entry) => model_view(entry),
                Err(error) => ModelView {
                    name,
                    origin: None,
                    task: None,
                    family: None,
                    licence: None,
                    error: Some(error),
                },
            })
            .collect(),
        runtime_error: service.models().err(),
    })
    .await?;
    Ok(Json(list))
}

/// Largest model file (with its manifest and labels) the API takes.
pub const MAX_MODEL_BYTES: usize = 512 * 1024 * 1024;

fn bad_upload(message: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "bad_body",
        format!("upload: {message}"),
    )
}

fn model_view(entry: appliance_vision::registry::ModelEntry) -> ModelView {
    let word =
        |value: serde_json::Result<Value>| value.ok().and_then(|v| v.as_str().map(str::to_string));
    ModelView {
        name: entry.manifest.name.clone(),
        origin: word(serde_json::to_value(entry.origin)),
        task: word(serde_json::to_value(entry.manifest.task)),
        family: Some(entry.manifest.family),
        licence: entry.manifest.licence,
        error: None,
    }
}

/// Installs or replaces a model on this box: `multipart/form-data` with the parts `manifest`
/// (the TOML manifest), `model` (the file) and `labels` (when the manifest names a labels
/// file). Refused unless each file has the manifest's sha256. Cameras restart on the new model.
#[utoipa::path(
    post,
    path = "/api/v1/models",
    request_body(content_type = "multipart/form-data", description = "Parts: manifest, model, labels (optional)"),
    responses(
        (status = 201, body = ModelView),
        (status = 400, description = "Bad manifest, missing part or wrong sha256", body = super::error::ErrorBody),
    ),
)]
pub async fn install_model(
    State(state): State<AppState>,
    mut multipart: Multipart,
) -> Result<(StatusCode, Json<ModelView>), ApiError> {
    let (mut manifest, mut model, mut labels) = (None, None, None);
    while let Some(field) = multipart.next_field().await.map_err(bad_upload)? {
        let name = field.name().unwrap_or_default().to_string();
        let bytes = field.bytes().await.map_err(bad_upload)?;
        match name.as_str() {
            "manifest" => {
                manifest = Some(
                    String::from_utf8(bytes.to_vec())
                        .map_err(|_| bad_upload("manifest: not UTF-8"))?,
                )
            }
            "model" => model = Some(bytes),
            "labels" => labels = Some(bytes),
            other => {
                return Err(bad_upload(format!(
                    "unknown part `{other}` (manifest, model, labels)"
                )));
            }
        }
    }
    let manifest = manifest.ok_or_else(|| bad_upload("the `manifest` part is missing"))?;
    let model = model.ok_or_else(|| bad_upload("the `model` part is missing"))?;
    let service = vision(&state).clone();
    let entry = tokio::task::spawn_blocking(move || {
        let entry = service
            .registry()
            .install(&manifest, &model, labels.as_deref())
            .map_err(|e| match e {
                appliance_vision::registry::RegistryError::Io { .. } => ApiError::internal(e),
                other => ApiError::new(StatusCode::BAD_REQUEST, "invalid_model", other.to_string()),
            })?;
        service.models_changed();
        Ok::<_, ApiError>(entry)
    })
    .await??;
    Ok((StatusCode::CREATED, Json(model_view(entry))))
}

/// Removes a model installed on this box (a bundled model of the same name shows again).
#[utoipa::path(
    delete,
    path = "/api/v1/models/{model}",
    params(("model" = String, Path)),
    responses(
        (status = 204),
        (status = 404, body = super::error::ErrorBody),
        (status = 409, description = "A bundled model cannot be removed", body = super::error::ErrorBody),
    ),
)]
pub async fn delete_model(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let service = vision(&state).clone();
    tokio::task::spawn_blocking(move || {
        use appliance_vision::registry::RegistryError;
        service.registry().remove(&name).map_err(|e| match e {
            RegistryError::NotFound(_) => ApiError::not_found(e.to_string()),
            RegistryError::Bundled { .. } => {
                ApiError::new(StatusCode::CONFLICT, "bundled", e.to_string())
            }
            other => ApiError::internal(other),
        })?;
        service.models_changed();
        Ok::<_, ApiError>(())
    })
    .await??;
    Ok(StatusCode::NO_CONTENT)
}
