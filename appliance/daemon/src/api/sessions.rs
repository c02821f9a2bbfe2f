//! `/api/v1/…sessions…`: live video, playback and download sessions asked of a device's channel
//! (INVITE), what has arrived on each, playback control (INFO) and hang-up (BYE / CANCEL).
//!
//! A session is named by its SSRC (10 digits): unique among the sessions held, and the name the
//! stream carries on the wire.

use appliance_gb28181::mansrtsp::PlaybackControl;
use appliance_gb28181::sdp::{MediaTransport, SessionKind};
use appliance_gb28181::session::State as SessionState;
use appliance_media::receive::ReceiveStats;
use appliance_model::Timestamp;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::devices::sip;
use super::{ApiError, AppState, json_body};
use crate::sip::{SessionSnapshot, SipHandle, StartError};

/// Longest download speed multiplier accepted (`a=downloadspeed`).
const MAX_DOWNLOAD_SPEED: u32 = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Live,
    Playback,
    Download,
}

/// How RTP travels, seen from the box: `udp`; `tcp_passive`, the device connects to us (what
/// most devices call TCP); `tcp_active`, we connect to the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Transport {
    #[default]
    Udp,
    TcpPassive,
    TcpActive,
}

impl From<Transport> for MediaTransport {
    fn from(t: Transport) -> MediaTransport {
        match t {
            Transport::Udp => MediaTransport::Udp,
            Transport::TcpPassive => MediaTransport::TcpPassive,
            Transport::TcpActive => MediaTransport::TcpActive,
        }
    }
}

impl From<MediaTransport> for Transport {
    fn from(t: MediaTransport) -> Transport {
        match t {
            MediaTransport::Udp => Transport::Udp,
            MediaTransport::TcpPassive => Transport::TcpPassive,
            MediaTransport::TcpActive => Transport::TcpActive,
        }
    }
}

/// What to ask the channel for.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartRequest {
    kind: Kind,
    #[serde(default)]
    transport: Transport,
    /// Playback and download: the range's start and end (RFC 3339).
    #[schema(value_type = Option<String>, format = DateTime)]
    start: Option<Timestamp>,
    #[schema(value_type = Option<String>, format = DateTime)]
    end: Option<Timestamp>,
    /// Download only: how many times faster than real time the device should send (default 4).
    speed: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Endpoint {
    ip: String,
    port: u16,
    transport: Transport,
}

/// A media session.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionView {
    /// The SSRC, 10 digits: `0…` live, `1…` playback and download.
    id: String,
    device_id: String,
    channel_id: String,
    kind: Kind,
    #[schema(value_type = Option<String>, format = DateTime)]
    start: Option<Timestamp>,
    #[schema(value_type = Option<String>, format = DateTime)]
    end: Option<Timestamp>,
    /// `inviting`, `proceeding` (the device is ringing), `established`, `cancelling`.
    state: &'static str,
    /// Where the box receives the stream.
    endpoint: Endpoint,
    /// Where the device sends from (or listens, TCP active), from its SDP answer.
    device_media: Option<String>,
    /// What has arrived: packets with the agreed SSRC, frames, keyframes, losses.
    received: Option<ReceiveStats>,
    /// Where viewers can watch the stream. Empty with the built-in RTP endpoint, which serves
    /// no viewers; the media server fills it in.
    urls: Vec<String>,
}

#[derive(Serialize, ToSchema)]
pub struct SessionList {
    items: Vec<SessionView>,
}

fn state_name(state: SessionState) -> &'static str {
    match state {
        SessionState::Inviting => "inviting",
        SessionState::Proceeding => "proceeding",
        SessionState::Established => "established",
        SessionState::Cancelling => "cancelling",
    }
}

fn view(snapshot: SessionSnapshot) -> SessionView {
    let SessionSnapshot { session, received } = snapshot;
    let epoch = |s: u64| Timestamp::from_millis(i64::try_from(s).unwrap_or(i64::MAX / 1000) * 1000);
    let (kind, start, end) = match session.kind {
        SessionKind::Play => (Kind::Live, None, None),
        SessionKind::Playback { start, end } => {
            (Kind::Playback, Some(epoch(start)), Some(epoch(end)))
        }
        SessionKind::Download { start, end, .. } => {
            (Kind::Download, Some(epoch(start)), Some(epoch(end)))
        }
    };
    SessionView {
        id: session.ssrc.to_string(),
        device_id: session.target.device_id.clone(),
        channel_id: session.target.channel_id.clone(),
        kind,
        start,
        end,
        state: state_name(session.state()),
        endpoint: Endpoint {
            ip: session.endpoint.ip.to_string(),
            port: session.endpoint.port,
            transport: session.endpoint.transport.into(),
        },
        device_media: session
            .answer
            .as_ref()
            .map(|a| std::net::SocketAddr::new(a.media_ip, a.media_port).to_string()),
        received: received.map(|(_, stats)| stats),
        urls: Vec::new(),
    }
}

/// The session named `id` (its SSRC), with its Call-ID.
fn find(sip: &SipHandle, id: &str) -> Result<(String, SessionView), ApiError> {
    sip.sessions()
        .into_iter()
        .find(|s| s.session.ssrc.to_string() == id)
        .map(|s| (s.session.call_id().to_string(), view(s)))
        .ok_or_else(|| ApiError::not_found(format!("no session {id}")))
}

fn session_kind(request: &StartRequest) -> Result<SessionKind, ApiError> {
    let range = || -> Result<(u64, u64), ApiError> {
        let (Some(start), Some(end)) = (request.start, request.end) else {
            return Err(ApiError::bad_parameter(
                "start",
                "playback and download need `start` and `end`",
            ));
        };
        if end <= start {
            return Err(ApiError::bad_parameter("end", "must be after `start`"));
        }
        let seconds = |t: Timestamp, name: &str| {
            u64::try_from(t.as_millis() / 1000)
                .map_err(|_| ApiError::bad_parameter(name, "must be after 1970"))
        };
        Ok((seconds(start, "start")?, seconds(end, "end")?))
    };
    match request.kind {
        Kind::Live => {
            if request.start.is_some() || request.end.is_some() || request.speed.is_some() {
                return Err(ApiError::bad_parameter(
                    "kind",
                    "live takes no `start`, `end` or `speed`",
                ));
            }
            Ok(SessionKind::Play)
        }
        Kind::Playback => {
            if request.speed.is_some() {
                return Err(ApiError::bad_parameter(
                    "speed",
                    "only downloads have a speed; change a playback's speed with control",
                ));
            }
            let (start, end) = range()?;
            Ok(SessionKind::Playback { start, end })
        }
        Kind::Download => {
            let speed = request.speed.unwrap_or(4);
            if !(1..=MAX_DOWNLOAD_SPEED).contains(&speed) {
                return Err(ApiError::bad_parameter(
                    "speed",
                    format!("must be between 1 and {MAX_DOWNLOAD_SPEED}"),
                ));
            }
            let (start, end) = range()?;
            Ok(SessionKind::Download { start, end, speed })
        }
    }
}

impl From<StartError> for ApiError {
    fn from(e: StartError) -> ApiError {
        match e {
            StartError::Platform(e) => e.into(),
            e @ StartError::Media(_) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "no_media_port",
                e.to_string(),
            ),
            e @ StartError::NoRoute => {
                ApiError::new(StatusCode::CONFLICT, "no_route", e.to_string())
            }
            e @ (StartError::Refused(_) | StartError::Ended(_)) => {
                ApiError::new(StatusCode::BAD_GATEWAY, "refused", e.to_string())
            }
            e @ StartError::Timeout => {
                ApiError::new(StatusCode::GATEWAY_TIMEOUT, "device_timeout", e.to_string())
            }
        }
    }
}

/// Ask a channel for live video, a playback or a download. Answers once the device accepted
/// (the stream then flows to `endpoint`), or with the device's refusal.
#[utoipa::path(
    post,
    path = "/api/v1/devices/{id}/channels/{channel}/sessions",
    params(
        ("id" = String, Path, description = "20-digit GB28181 device id"),
        ("channel" = String, Path, description = "20-digit channel id"),
    ),
    request_body = StartRequest,
    responses(
        (status = 201, body = SessionView),
        (status = 400, body = super::error::ErrorBody),
        (status = 404, body = super::error::ErrorBody),
        (status = 409, description = "The device is offline", body = super::error::ErrorBody),
        (status = 502, description = "The device refused", body = super::error::ErrorBody),
        (status = 503, description = "No free RTP port", body = super::error::ErrorBody),
        (status = 504, description = "The device did not answer", body = super::error::ErrorBody),
    ),
)]
pub async fn start_session(
    State(state): State<AppState>,
    Path((id, channel)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<SessionView>), ApiError> {
    let request: StartRequest = json_body(&body)?;
    if channel.len() != 20 || !channel.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::bad_parameter("channel", "must be 20 digits"));
    }
    let kind = session_kind(&request)?;
    let sip = sip(&state)?;
    let call_id = sip
        .start_session(&id, &channel, kind, request.transport.into())
        .await?;
    let snapshot = sip
        .sessions()
        .into_iter()
        .find(|s| s.session.call_id() == call_id)
        // Ended in the instant since it was established (the device hung up at once).
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_GATEWAY,
                "refused",
                "the session ended as soon as it was established",
            )
        })?;
    Ok((StatusCode::CREATED, Json(view(snapshot))))
}

/// Every media session held now.
#[utoipa::path(get, path = "/api/v1/sessions", responses((status = 200, body = SessionList)))]
pub async fn list_sessions(State(state): State<AppState>) -> Result<Json<SessionList>, ApiError> {
    let mut items: Vec<SessionView> = sip(&state)?.sessions().into_iter().map(view).collect();
    items.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(Json(SessionList { items }))
}

/// One session, with what has arrived so far.
#[utoipa::path(
    get,
    path = "/api/v1/sessions/{id}",
    params(("id" = String, Path, description = "The session's SSRC (10 digits)")),
    responses((status = 200, body = SessionView), (status = 404, body = super::error::ErrorBody)),
)]
pub async fn get_session(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<SessionView>, ApiError> {
    Ok(Json(find(sip(&state)?, &id)?.1))
}

/// Hang up (BYE; CANCEL while the device has not answered). Its SSRC and port are released.
#[utoipa::path(
    delete,
    path = "/api/v1/sessions/{id}",
    params(("id" = String, Path, description = "The session's SSRC (10 digits)")),
    responses((status = 204), (status = 404, body = super::error::ErrorBody)),
)]
pub async fn stop_session(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let sip = sip(&state)?;
    let (call_id, _) = find(sip, &id)?;
    if !sip.stop_session(&call_id).await {
        return Err(ApiError::not_found(format!("no session {id}")));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// A playback control.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ControlRequest {
    /// `pause`, `resume`, `seek` (with `position_s`) or `speed` (with `speed`: 0.25, 0.5, 1, 2,
    /// 4 or 8).
    action: String,
    /// Seek: seconds from the start of the playback range.
    position_s: Option<u64>,
    speed: Option<f64>,
}

/// Pause, resume, seek or change the speed of a playback (INFO with MANSRTSP).
#[utoipa::path(
    post,
    path = "/api/v1/sessions/{id}/control",
    params(("id" = String, Path, description = "The session's SSRC (10 digits)")),
    request_body = ControlRequest,
    responses(
        (status = 202, body = super::devices::Requested),
        (status = 400, body = super::error::ErrorBody),
        (status = 404, body = super::error::ErrorBody),
        (status = 409, description = "Not an established playback", body = super::error::ErrorBody),
    ),
)]
pub async fn control_session(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<super::devices::Requested>), ApiError> {
    let request: ControlRequest = json_body(&body)?;
    let control = match (request.action.as_str(), request.position_s, request.speed) {
        ("pause", None, None) => PlaybackControl::Pause,
        ("resume", None, None) => PlaybackControl::Resume,
        ("seek", Some(position_s), None) => PlaybackControl::Seek { position_s },
        ("speed", None, Some(speed)) => PlaybackControl::Speed(speed),
        ("seek", None, _) => return Err(ApiError::bad_parameter("position_s", "seek needs it")),
        ("speed", _, None) => return Err(ApiError::bad_parameter("speed", "speed needs it")),
        ("pause" | "resume" | "seek" | "speed", _, _) => {
            return Err(ApiError::bad_parameter(
                "action",
                "only seek takes `position_s` and only speed takes `speed`",
            ));
        }
        (other, _, _) => {
            return Err(ApiError::bad_parameter(
                "action",
                format!("`{other}` is not one of pause, resume, seek, speed"),
            ));
        }
    };
    let sip = sip(&state)?;
    let (call_id, _) = find(sip, &id)?;
    sip.control_session(&call_id, control).await?;
    Ok((StatusCode::ACCEPTED, Json(super::devices::REQUESTED)))
}
