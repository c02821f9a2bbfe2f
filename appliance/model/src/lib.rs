//! Domain types shared by every appliance crate.
//!
//! These are the shapes that cross crate boundaries and the wire (REST API, uplink messages):
//! events, media references, ids and timestamps. No IO lives here.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

mod id;
mod timestamp;

pub use id::{EventId, IdAllocator, ParseEventIdError, SEQUENCE_BITS};
pub use timestamp::{ParseTimestampError, Timestamp};

/// Longest camera id, channel id or event type the store accepts (bytes). GB28181 ids are 20
/// digits; the bound keeps index keys small.
pub const MAX_ID_LEN: usize = 64;
/// Largest serialised `attributes` object an event may carry (bytes).
pub const MAX_ATTRIBUTES_LEN: usize = 64 * 1024;
/// Most media references one event may carry.
pub const MAX_MEDIA_PER_EVENT: usize = 16;

/// Who raised an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EventSource {
    /// An AI skill running on the box (intrusion, line crossing, …).
    Skill,
    /// A camera or NVR: GB28181 alarms, online/offline transitions.
    Device,
    /// The appliance itself: start-up, storage, uplink.
    System,
}

/// How urgent an event is, lowest first. GB28181 alarm priorities 4…1 map to minor…critical.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Minor,
    Major,
    Critical,
}

/// What a media file shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MediaKind {
    /// A still image, usually JPEG.
    Snapshot,
    /// A short video clip around the event.
    Clip,
}

/// A media file stored on the box, addressed by the SHA-256 of its content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MediaRef {
    pub kind: MediaKind,
    /// MIME type served with the file, e.g. `image/jpeg`.
    pub content_type: String,
    /// Lower-case hex SHA-256 of the file content; also its name on disk.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
}

/// Who acknowledged an event, and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Ack {
    pub at: Timestamp,
    /// Free-form name of the operator or system that acknowledged it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
}

/// An event as stored and served.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Event {
    pub id: EventId,
    /// The camera (GB28181 device id, or a local name) the event is about.
    pub camera_id: String,
    /// The channel of that camera or NVR, where it has several.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel_id: Option<String>,
    pub source: EventSource,
    /// What happened, e.g. `intrusion`, `line_crossing`, `device.offline`.
    #[serde(rename = "type")]
    pub kind: String,
    pub severity: Severity,
    /// When it started, by the clock of whoever observed it. Events are ordered by this time.
    pub start_time: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_time: Option<Timestamp>,
    /// Skill- or device-specific details (zone, track id, confidence, alarm method, …).
    #[schema(value_type = Object)]
    pub attributes: Map<String, Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ack: Option<Ack>,
    pub media: Vec<MediaRef>,
    /// When the appliance stored it.
    pub recorded_at: Timestamp,
}

/// An event to be stored; the store assigns the id and `recorded_at`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewEvent {
    pub camera_id: String,
    #[serde(default)]
    pub channel_id: Option<String>,
    pub source: EventSource,
    #[serde(rename = "type")]
    pub kind: String,
    pub severity: Severity,
    /// Defaults to the time it is stored.
    #[serde(default)]
    pub start_time: Option<Timestamp>,
    #[serde(default)]
    pub end_time: Option<Timestamp>,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub attributes: Map<String, Value>,
    /// References returned by the store's media writer; the files must exist.
    #[serde(default)]
    pub media: Vec<MediaRef>,
}

/// Why a [`NewEvent`] cannot be stored. Names the offending field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidEvent {
    pub field: &'static str,
    pub reason: String,
}

impl fmt::Display for InvalidEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid event field `{}`: {}", self.field, self.reason)
    }
}

impl std::error::Error for InvalidEvent {}

fn check_id(field: &'static str, value: &str) -> Result<(), InvalidEvent> {
    let reason = if value.is_empty() {
        "must not be empty".to_string()
    } else if value.len() > MAX_ID_LEN {
        format!(
            "is {} bytes long, at most {MAX_ID_LEN} allowed",
            value.len()
        )
    } else if value.chars().any(char::is_control) {
        "must not contain control characters".to_string()
    } else {
        return Ok(());
    };
    Err(InvalidEvent { field, reason })
}

impl NewEvent {
    /// Checks the bounds the store relies on (id lengths, attribute size, media count and hashes).
    pub fn validate(&self) -> Result<(), InvalidEvent> {
        check_id("camera_id", &self.camera_id)?;
        if let Some(channel) = &self.channel_id {
            check_id("channel_id", channel)?;
        }
        check_id("type", &self.kind)?;
        if let (Some(start), Some(end)) = (self.start_time, self.end_time)
            && end < start
        {
            return Err(InvalidEvent {
                field: "end_time",
                reason: "is before start_time".into(),
            });
        }
        let attributes_len = serde_json::to_string(&self.attributes)
            .map(|s| s.len())
            .unwrap_or(usize::MAX);
        if attributes_len > MAX_ATTRIBUTES_LEN {
            return Err(InvalidEvent {
                field: "attributes",
                reason: format!(
                    "serialises to {attributes_len} bytes, at most {MAX_ATTRIBUTES_LEN} allowed"
                ),
            });
        }
        if self.media.len() > MAX_MEDIA_PER_EVENT {
            return Err(InvalidEvent {
                field: "media",
                reason: format!(
                    "has {} entries, at most {MAX_MEDIA_PER_EVENT} allowed",
                    self.media.len()
                ),
            });
        }
        if let Some(bad) = self.media.iter().find(|m| !is_sha256_hex(&m.sha256)) {
            return Err(InvalidEvent {
                field: "media",
                reason: format!("`{}` is not a lower-case hex SHA-256", bad.sha256),
            });
        }
        Ok(())
    }
}

/// True for exactly 64 lower-case hex digits.
pub fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

impl FromStr for Severity {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        serde_json::from_value(Value::String(s.to_string()))
            .map_err(|_| format!("`{s}` is not one of info, minor, major, critical"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> NewEvent {
        NewEvent {
            camera_id: "34020000001320000001".into(),
            channel_id: None,
            source: EventSource::Skill,
            kind: "intrusion".into(),
            severity: Severity::Major,
            start_time: None,
            end_time: None,
            attributes: Map::new(),
            media: vec![],
        }
    }

    #[test]
    fn validation_names_the_field() {
        assert!(sample().validate().is_ok());
        let mut e = sample();
        e.camera_id.clear();
        assert_eq!(e.validate().unwrap_err().field, "camera_id");
        let mut e = sample();
        e.kind = "x".repeat(MAX_ID_LEN + 1);
        assert_eq!(e.validate().unwrap_err().field, "type");
        let mut e = sample();
        e.start_time = Some(Timestamp::from_millis(2000));
        e.end_time = Some(Timestamp::from_millis(1000));
        assert_eq!(e.validate().unwrap_err().field, "end_time");
        let mut e = sample();
        e.attributes
            .insert("blob".into(), Value::String("x".repeat(MAX_ATTRIBUTES_LEN)));
        assert_eq!(e.validate().unwrap_err().field, "attributes");
        let mut e = sample();
        e.media.push(MediaRef {
            kind: MediaKind::Snapshot,
            content_type: "image/jpeg".into(),
            sha256: "../../etc/passwd".into(),
            size: 1,
        });
        assert_eq!(e.validate().unwrap_err().field, "media");
    }

    #[test]
    fn event_json_uses_type_and_rfc3339() {
        let e = Event {
            id: EventId::from_parts(1_700_000_000_123, 7),
            camera_id: "cam".into(),
            channel_id: None,
            source: EventSource::Device,
            kind: "device.offline".into(),
            severity: Severity::Minor,
            start_time: Timestamp::from_millis(1_700_000_000_123),
            end_time: None,
            attributes: Map::new(),
            ack: None,
            media: vec![],
            recorded_at: Timestamp::from_millis(1_700_000_000_200),
        };
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(json["type"], "device.offline");
        assert_eq!(json["start_time"], "2023-11-14T22:13:20.123Z");
        assert_eq!(json["id"], e.id.to_string());
        let back: Event = serde_json::from_value(json).unwrap();
        assert_eq!(back, e);
    }

    #[test]
    fn severity_parses_by_name() {
        assert_eq!("critical".parse::<Severity>().unwrap(), Severity::Critical);
        assert!("loud".parse::<Severity>().is_err());
        assert!(Severity::Critical > Severity::Info);
    }
}
