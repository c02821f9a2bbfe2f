//! `/api/v1/events…`: list, fetch, media, acknowledge.

use std::str::FromStr;

use appliance_model::{Event, EventId, Timestamp};
use appliance_store::{EventQuery, MAX_PAGE_SIZE};
use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{ApiError, AppState, json_body};

const DEFAULT_PAGE_SIZE: usize = 100;

/// Filters of `GET /api/v1/events`, parsed by hand so that every error names its parameter.
#[derive(Debug, Default, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventFilter {
    /// Only events of this camera.
    camera: Option<String>,
    /// Only events of this type (e.g. `intrusion`).
    #[param(rename = "type")]
    kind: Option<String>,
    /// Only events that started at or after this time (RFC 3339 or epoch milliseconds).
    #[param(value_type = Option<String>)]
    since: Option<Timestamp>,
    /// Only events that started at or before this time.
    #[param(value_type = Option<String>)]
    until: Option<Timestamp>,
    /// `true`: only acknowledged events; `false`: only unacknowledged ones.
    acked: Option<bool>,
    /// Page size, 1 to 1000 (default 100).
    limit: Option<usize>,
    /// `next_cursor` of the previous page.
    #[param(value_type = Option<String>)]
    cursor: Option<EventId>,
}

fn parse<T: FromStr>(name: &str, value: &str) -> Result<T, ApiError>
where
    T::Err: std::fmt::Display,
{
    value.parse().map_err(|e| ApiError::bad_parameter(name, e))
}

impl EventFilter {
    fn from_query(raw: Option<&str>) -> Result<EventFilter, ApiError> {
        let pairs: Vec<(String, String)> =
            serde_urlencoded::from_str(raw.unwrap_or("")).map_err(|e| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "bad_parameter",
                    format!("malformed query string: {e}"),
                )
            })?;
        let mut filter = EventFilter::default();
        for (name, value) in &pairs {
            let already_set = match name.as_str() {
                "camera" => filter.camera.replace(value.clone()).is_some(),
                "type" => filter.kind.replace(value.clone()).is_some(),
                "since" => filter.since.replace(parse(name, value)?).is_some(),
                "until" => filter.until.replace(parse(name, value)?).is_some(),
                "acked" => filter
                    .acked
                    .replace(parse(name, value).map_err(|_| {
                        ApiError::bad_parameter(
                            name,
                            format!("`{value}` is neither true nor false"),
                        )
                    })?)
                    .is_some(),
                "limit" => {
                    let limit: usize = parse(name, value)?;
                    if !(1..=MAX_PAGE_SIZE).contains(&limit) {
                        return Err(ApiError::bad_parameter(
                            name,
                            format!("{limit} is outside 1..={MAX_PAGE_SIZE}"),
                        ));
                    }
                    filter.limit.replace(limit).is_some()
                }
                "cursor" => filter.cursor.replace(parse(name, value)?).is_some(),
                _ => return Err(ApiError::bad_parameter(name, "unknown parameter")),
            };
            if already_set {
                return Err(ApiError::bad_parameter(name, "given more than once"));
            }
        }
        if let (Some(since), Some(until)) = (filter.since, filter.until)
            && since > until
        {
            return Err(ApiError::bad_parameter("until", "is before `since`"));
        }
        Ok(filter)
    }

    fn into_query(self) -> EventQuery {
        EventQuery {
            camera_id: self.camera,
            kind: self.kind,
            since: self.since,
            until: self.until,
            acked: self.acked,
            limit: self.limit.unwrap_or(DEFAULT_PAGE_SIZE),
            before: self.cursor,
        }
    }
}

/// One page of events, newest first.
#[derive(Serialize, ToSchema)]
pub struct EventList {
    items: Vec<Event>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[schema(value_type = Option<String>)]
    next_cursor: Option<EventId>,
}

/// List events, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/events",
    params(EventFilter),
    responses(
        (status = 200, body = EventList),
        (status = 400, description = "A parameter is invalid; the message names it", body = super::error::ErrorBody),
    ),
)]
pub async fn list_events(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<EventList>, ApiError> {
    let query = EventFilter::from_query(raw.as_deref())?.into_query();
    let store = state.store().clone();
    let page = tokio::task::spawn_blocking(move || store.query(&query)).await??;
    Ok(Json(EventList {
        items: page.items,
        next_cursor: page.next_cursor,
    }))
}

fn parse_id(raw: &str) -> Result<EventId, ApiError> {
    parse("id", raw)
}

async fn load(state: &AppState, id: EventId) -> Result<Event, ApiError> {
    let store = state.store().clone();
    tokio::task::spawn_blocking(move || store.get(id))
        .await??
        .ok_or_else(|| ApiError::not_found(format!("no event {id}")))
}

/// Fetch one event.
#[utoipa::path(
    get,
    path = "/api/v1/events/{id}",
    params(("id" = String, Path, description = "Event id (16 hex digits)")),
    responses(
        (status = 200, body = Event),
        (status = 400, body = super::error::ErrorBody),
        (status = 404, body = super::error::ErrorBody),
    ),
)]
pub async fn get_event(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Event>, ApiError> {
    Ok(Json(load(&state, parse_id(&id)?).await?))
}

/// Download the `n`th media file (0-based) of an event.
#[utoipa::path(
    get,
    path = "/api/v1/events/{id}/media/{n}",
    params(
        ("id" = String, Path, description = "Event id"),
        ("n" = usize, Path, description = "Index into the event's `media` list"),
    ),
    responses(
        (status = 200, description = "The file, with its content type", content_type = "application/octet-stream"),
        (status = 404, body = super::error::ErrorBody),
    ),
)]
pub async fn get_media(
    State(state): State<AppState>,
    Path((id, n)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    let n: usize = parse("n", &n)?;
    let event = load(&state, id).await?;
    let media = event.media.get(n).ok_or_else(|| {
        ApiError::not_found(format!("event {id} has {} media files", event.media.len()))
    })?;
    let path = state.store().media_path(media).ok_or_else(|| {
        ApiError::internal(format!("media {} of event {id} is missing", media.sha256))
    })?;
    let file = tokio::fs::File::open(&path)
        .await
        .map_err(ApiError::internal)?;
    let content_type = HeaderValue::from_str(&media.content_type)
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    Ok((
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_LENGTH, HeaderValue::from(media.size)),
            // Content-addressed: the bytes behind this URL never change.
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("private, max-age=31536000, immutable"),
            ),
            (
                header::ETAG,
                HeaderValue::from_str(&format!("\"{}\"", media.sha256))
                    .map_err(ApiError::internal)?,
            ),
        ],
        Body::from_stream(tokio_util::io::ReaderStream::new(file)),
    )
        .into_response())
}

/// Body of `POST /api/v1/events/{id}/ack` (optional).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AckRequest {
    /// Who acknowledges; until sign-in exists this is free text.
    by: Option<String>,
}

const MAX_ACK_BY_LEN: usize = 128;

/// Acknowledge an event. Acknowledging twice keeps the first acknowledgement.
#[utoipa::path(
    post,
    path = "/api/v1/events/{id}/ack",
    params(("id" = String, Path, description = "Event id")),
    request_body(content = Option<AckRequest>, description = "Optional; an empty body is fine"),
    responses(
        (status = 200, body = Event),
        (status = 400, body = super::error::ErrorBody),
        (status = 404, body = super::error::ErrorBody),
    ),
)]
pub async fn ack_event(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Event>, ApiError> {
    let id = parse_id(&id)?;
    let request: AckRequest = if body.iter().all(u8::is_ascii_whitespace) {
        AckRequest::default()
    } else {
        json_body(&body)?
    };
    if let Some(by) = &request.by
        && (by.len() > MAX_ACK_BY_LEN || by.chars().any(char::is_control))
    {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_body",
            format!(
                "request body: `by` must be at most {MAX_ACK_BY_LEN} bytes without control characters"
            ),
        ));
    }
    state
        .store()
        .ack(id, request.by)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no event {id}")))
}
