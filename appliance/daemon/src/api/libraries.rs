//! `/api/v1/faces…` and `/api/v1/plates…`: the face libraries (people enrolled from photos:
//! detect → align → embed, embeddings kept in the store) and the plate lists the skills match
//! against. Every change is stored durably, then the in-memory indexes are rebuilt, live.

use appliance_skills::library::face::{DEFAULT_MATCH_THRESHOLD, Library, Person};
use appliance_skills::library::plate::PlateList;
use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::vision::vision;
use super::{ApiError, AppState, json_body, query_params};
use crate::vision::catalog;
use crate::vision::edit::{Enrolled, photos_of};

/// Largest photo accepted for enrolment.
pub const MAX_PHOTO_BYTES: usize = 16 * 1024 * 1024;

#[derive(Serialize, ToSchema)]
pub struct PersonView {
    id: String,
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<String>,
    /// Ids of the enrolled photos.
    photos: Vec<String>,
}

#[derive(Serialize, ToSchema)]
pub struct LibraryView {
    name: String,
    match_threshold: f32,
    people: Vec<PersonView>,
}

#[derive(Serialize, ToSchema)]
pub struct LibraryList {
    items: Vec<LibraryView>,
}

fn library_view(state: &AppState, library: Library) -> Result<LibraryView, ApiError> {
    let photos = photos_of(vision(state), &library.name)?;
    Ok(LibraryView {
        people: library
            .people
            .into_iter()
            .map(|person| PersonView {
                photos: photos
                    .iter()
                    .filter(|(_, photo)| photo.person_id == person.id)
                    .map(|(id, _)| id.clone())
                    .collect(),
                id: person.id,
                name: person.name,
                note: person.note,
            })
            .collect(),
        name: library.name,
        match_threshold: library.match_threshold,
    })
}

/// Face libraries with their people.
#[utoipa::path(get, path = "/api/v1/faces", responses((status = 200, body = LibraryList)))]
pub async fn list_libraries(State(state): State<AppState>) -> Result<Json<LibraryList>, ApiError> {
    let items = catalog::load::<Library>(state.store(), catalog::FACE_LIBRARIES, "")?
        .into_iter()
        .map(|(_, library)| library_view(&state, library))
        .collect::<Result<_, _>>()?;
    Ok(Json(LibraryList { items }))
}

/// One face library.
#[utoipa::path(
    get,
    path = "/api/v1/faces/{library}",
    params(("library" = String, Path)),
    responses((status = 200, body = LibraryView), (status = 404, body = super::error::ErrorBody)),
)]
pub async fn get_library(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<LibraryView>, ApiError> {
    let library = catalog::get(state.store(), catalog::FACE_LIBRARIES, &name)?
        .ok_or_else(|| ApiError::not_found(format!("no face library {name}")))?;
    Ok(Json(library_view(&state, library)?))
}

/// Body of `PUT /api/v1/faces/{library}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LibrarySettings {
    /// Least cosine similarity for a match (0–1]; default 0.6. With the bundled MobileFaceNet
    /// and aligned faces the same person scores about 0.95, different people about 0.05.
    #[serde(default)]
    match_threshold: Option<f32>,
}

/// Creates a face library or changes its threshold.
#[utoipa::path(
    put,
    path = "/api/v1/faces/{library}",
    params(("library" = String, Path)),
    request_body = LibrarySettings,
    responses((status = 200, body = LibraryView), (status = 400, body = super::error::ErrorBody)),
)]
pub async fn put_library(
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<LibraryView>, ApiError> {
    let settings: LibrarySettings = json_body(&body)?;
    let library = vision(&state)
        .edit_library(&name, true, |library| {
            library.match_threshold = settings.match_threshold.unwrap_or(DEFAULT_MATCH_THRESHOLD);
        })
        .await?;
    Ok(Json(library_view(&state, library)?))
}

/// Removes a face library with its people and photos.
#[utoipa::path(
    delete,
    path = "/api/v1/faces/{library}",
    params(("library" = String, Path)),
    responses((status = 204), (status = 404, body = super::error::ErrorBody)),
)]
pub async fn delete_library(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    vision(&state).delete_library(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Body of `PUT /api/v1/faces/{library}/people/{person}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PersonBody {
    name: String,
    #[serde(default)]
    note: Option<String>,
}

/// Adds a person to a library, or renames one.
#[utoipa::path(
    put,
    path = "/api/v1/faces/{library}/people/{person}",
    params(("library" = String, Path), ("person" = String, Path)),
    request_body = PersonBody,
    responses(
        (status = 200, body = LibraryView),
        (status = 400, body = super::error::ErrorBody),
        (status = 404, body = super::error::ErrorBody),
    ),
)]
pub async fn put_person(
    State(state): State<AppState>,
    Path((name, person)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Result<Json<LibraryView>, ApiError> {
    let body: PersonBody = json_body(&body)?;
    let entry = Person {
        id: person.clone(),
        name: body.name,
        note: body.note,
    };
    let library = vision(&state)
        .edit_library(&name, false, |library| {
            match library.people.iter_mut().find(|p| p.id == person) {
                Some(existing) => *existing = entry,
                None => library.people.push(entry),
            }
        })
        .await?;
    Ok(Json(library_view(&state, library)?))
}

/// Removes a person and their photos.
#[utoipa::path(
    delete,
    path = "/api/v1/faces/{library}/people/{person}",
    params(("library" = String, Path), ("person" = String, Path)),
    responses((status = 204), (status = 404, body = super::error::ErrorBody)),
)]
pub async fn delete_person(
    State(state): State<AppState>,
    Path((name, person)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    vision(&state).delete_person(&name, &person).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct EnrolParams {
    /// Face detector to find the face with (a registry model); default `centerface`.
    #[serde(default)]
    model: Option<String>,
}

/// Enrols a photo (JPEG or PNG body) of a person: the most confident face is aligned and
/// embedded; the embedding is stored, the photo is not.
#[utoipa::path(
    post,
    path = "/api/v1/faces/{library}/people/{person}/photos",
    params(("library" = String, Path), ("person" = String, Path), EnrolParams),
    request_body(content = Vec<u8>, content_type = "image/jpeg"),
    responses(
        (status = 201, body = Enrolled),
        (status = 400, description = "Not an image", body = super::error::ErrorBody),
        (status = 404, body = super::error::ErrorBody),
        (status = 422, description = "No face in the photo", body = super::error::ErrorBody),
        (status = 503, description = "ONNX Runtime or the face models are missing", body = super::error::ErrorBody),
    ),
)]
pub async fn enrol_photo(
    State(state): State<AppState>,
    Path((name, person)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<Enrolled>), ApiError> {
    let params: EnrolParams = query_params(query.as_deref())?;
    let enrolled = vision(&state)
        .enrol_photo(&name, &person, body.to_vec(), params.model)
        .await?;
    Ok((StatusCode::CREATED, Json(enrolled)))
}

/// Removes an enrolled photo.
#[utoipa::path(
    delete,
    path = "/api/v1/faces/{library}/photos/{photo}",
    params(("library" = String, Path), ("photo" = String, Path)),
    responses((status = 204), (status = 404, body = super::error::ErrorBody)),
)]
pub async fn delete_photo(
    State(state): State<AppState>,
    Path((name, photo)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    vision(&state).delete_photo(&name, &photo).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, ToSchema)]
pub struct PlateLists {
    #[schema(value_type = Vec<Object>)]
    items: Vec<PlateList>,
}

/// The plate lists.
#[utoipa::path(get, path = "/api/v1/plates", responses((status = 200, body = PlateLists)))]
pub async fn list_plate_lists(State(state): State<AppState>) -> Result<Json<PlateLists>, ApiError> {
    let items = catalog::load::<PlateList>(state.store(), catalog::PLATE_LISTS, "")?
        .into_iter()
        .map(|(_, list)| list)
        .collect();
    Ok(Json(PlateLists { items }))
}

/// Creates or replaces a plate list: `{"kind": "allow"|"deny"|"watch", "entries": [{"plate":
/// "京A·12345", "note": "…", "valid_from": unix s, "valid_until": unix s}]}`. Plates are compared
/// normalised (upper case, separators dropped).
#[utoipa::path(
    put,
    path = "/api/v1/plates/{list}",
    params(("list" = String, Path)),
    request_body(content = Object, description = "The list (its name is the path's)"),
    responses((status = 200, body = Object), (status = 400, body = super::error::ErrorBody)),
)]
pub async fn put_plate_list(
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<PlateList>, ApiError> {
    let mut value: serde_json::Value = json_body(&body)?;
    if let Some(object) = value.as_object_mut() {
        object.insert("name".into(), name.clone().into());
    }
    let list: PlateList = serde_json::from_value(value).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_body",
            format!("request body: {e}"),
        )
    })?;
    let list = vision(&state).edit_plate_list(&name, |_| Ok(list)).await?;
    Ok(Json(list))
}

/// Removes a plate list.
#[utoipa::path(
    delete,
    path = "/api/v1/plates/{list}",
    params(("list" = String, Path)),
    responses((status = 204), (status = 404, body = super::error::ErrorBody)),
)]
pub async fn delete_plate_list(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    vision(&state).delete_plate_list(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}
