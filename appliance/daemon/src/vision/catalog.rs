//! What the staff configure for vision, kept in the store's state namespaces so it survives
//! restarts and is written with the same durability as events: cameras, their skills (the JSON
//! as given, validated), face libraries with their people and enrolled photos (embeddings), and
//! plate lists.

use appliance_media::frames::KeyframeMode;
use appliance_skills::library::face::Library;
use appliance_skills::library::plate::PlateList;
use appliance_store::{EventStore, StateChange, StoreError};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub const CAMERAS: &str = "vision.cameras";
pub const SKILLS: &str = "vision.skills";
pub const FACE_LIBRARIES: &str = "vision.face_libraries";
pub const FACE_PHOTOS: &str = "vision.face_photos";
pub const PLATE_LISTS: &str = "vision.plate_lists";

/// A camera the skills watch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Camera {
    /// For people; defaults to the id.
    #[serde(default)]
    pub name: Option<String>,
    /// Where frames come from: `rtsp://…` (a camera, or the local media server's re-stream of
    /// a GB28181 channel), or a video file path (dry runs and tests).
    pub source: String,
    #[serde(default = "enabled")]
    pub enabled: bool,
    /// How much of the stream is decoded: `auto` (default) decodes keyframes only while the
    /// skills sample no faster than the camera sends keyframes (measured on the stream),
    /// `all` every frame, `keyframes` keyframes only.
    #[serde(default = "auto")]
    pub decode: KeyframeMode,
}

fn enabled() -> bool {
    true
}

fn auto() -> KeyframeMode {
    KeyframeMode::Auto
}

/// Ids in URLs and store keys: 1–64 of letters, digits, `.`, `_`, `-`.
pub fn check_id(what: &str, id: &str) -> Result<(), String> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{what} `{id}`: 1 to 64 letters, digits, `.`, `_` or `-`"
        ))
    }
}

impl Camera {
    pub fn validate(&self) -> Result<(), String> {
        if self.source.trim().is_empty() {
            return Err("source: empty; give rtsp://… or a video file path".into());
        }
        if self.source.len() > 2048 {
            return Err("source: longer than 2048 characters".into());
        }
        if self.name.as_ref().is_some_and(|n| n.chars().count() > 128) {
            return Err("name: longer than 128 characters".into());
        }
        Ok(())
    }
}

/// An enrolled photo: the person it shows and the face's embedding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FacePhoto {
    pub person_id: String,
    pub embedding: Vec<f32>,
    /// The face detector's score on the photo.
    pub score: f32,
}

fn decode<T: serde::de::DeserializeOwned>(namespace: &str, key: &str, bytes: &[u8]) -> Option<T> {
    match serde_json::from_slice(bytes) {
        Ok(value) => Some(value),
        Err(error) => {
            // Written by this code, so only corruption gets here: skip it, say so.
            tracing::error!(namespace, key, %error, "unreadable vision record skipped");
            None
        }
    }
}

/// Every value of a namespace whose key starts with `prefix`, decoded.
pub fn load<T: serde::de::DeserializeOwned>(
    store: &EventStore,
    namespace: &str,
    prefix: &str,
) -> Result<Vec<(String, T)>, StoreError> {
    Ok(store
        .state_entries(namespace)?
        .into_iter()
        .filter(|(key, _)| key.starts_with(prefix))
        .filter_map(|(key, bytes)| decode(namespace, &key, &bytes).map(|v| (key, v)))
        .collect())
}

pub fn get<T: serde::de::DeserializeOwned>(
    store: &EventStore,
    namespace: &str,
    key: &str,
) -> Result<Option<T>, StoreError> {
    Ok(store
        .state(namespace, key)?
        .and_then(|bytes| decode(namespace, key, &bytes)))
}

pub fn put<T: Serialize>(namespace: &'static str, key: String, value: &T) -> StateChange {
    StateChange {
        namespace,
        key,
        value: Some(serde_json::to_vec(value).expect("vision records serialise")),
    }
}

pub fn delete(namespace: &'static str, key: String) -> StateChange {
    StateChange {
        namespace,
        key,
        value: None,
    }
}

/// Commits state changes durably.
pub async fn commit(store: &EventStore, changes: Vec<StateChange>) -> Result<(), StoreError> {
    store.commit(Vec::new(), changes).await.map(|_| ())
}

/// Key of a skill: `<camera>/<skill>`.
pub fn skill_key(camera: &str, skill: &str) -> String {
    format!("{camera}/{skill}")
}

/// Everything the pipeline needs, read at once.
pub struct Snapshot {
    pub cameras: Vec<(String, Camera)>,
    pub face_libraries: Vec<Library>,
    /// (library, photo id, photo)
    pub face_photos: Vec<(String, String, FacePhoto)>,
    pub plate_lists: Vec<PlateList>,
}

impl Snapshot {
    pub fn read(store: &EventStore) -> Result<Snapshot, StoreError> {
        let split = |key: &str| {
            key.split_once('/')
                .map(|(a, b)| (a.to_string(), b.to_string()))
        };
        Ok(Snapshot {
            cameras: load(store, CAMERAS, "")?,
            face_libraries: load::<Library>(store, FACE_LIBRARIES, "")?
                .into_iter()
                .map(|(_, library)| library)
                .collect(),
            face_photos: load::<FacePhoto>(store, FACE_PHOTOS, "")?
                .into_iter()
                .filter_map(|(key, photo)| split(&key).map(|(l, p)| (l, p, photo)))
                .collect(),
            plate_lists: load::<PlateList>(store, PLATE_LISTS, "")?
                .into_iter()
                .map(|(_, list)| list)
                .collect(),
        })
    }
}
