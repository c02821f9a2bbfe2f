//! The on-disk encoding of one event: a version byte, then postcard.
//!
//! postcard is compact (an event is about a third of its JSON size) but not self-describing, so the
//! leading version byte is what lets a later release read older records. The start time is not
//! stored: it is the id's time.

use appliance_model::{
    Ack, Event, EventId, EventSource, MediaKind, MediaRef, NewEvent, Severity, Timestamp,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

const VERSION: u8 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Record {
    pub camera_id: String,
    pub channel_id: Option<String>,
    pub source: EventSource,
    pub kind: String,
    pub severity: Severity,
    pub end_ms: Option<i64>,
    /// JSON text: postcard cannot encode `serde_json::Value`.
    pub attributes_json: String,
    pub ack: Option<(i64, Option<String>)>,
    pub media: Vec<MediaRecord>,
    pub recorded_ms: i64,
    /// Where this event sits in the outbox, so retention can tell whether it was delivered.
    pub outbox_seq: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct MediaRecord {
    pub kind: MediaKind,
    pub content_type: String,
    pub sha256: [u8; 32],
    pub size: u64,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum DecodeError {
    #[error("empty record")]
    Empty,
    #[error("unknown record version {0}")]
    Version(u8),
    #[error("undecodable record: {0}")]
    Postcard(#[from] postcard::Error),
    #[error("attributes are not a JSON object: {0}")]
    Attributes(String),
}

impl Record {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![VERSION];
        // Serialising owned strings, vectors and enums into a Vec cannot fail.
        postcard::to_io(self, &mut out).expect("postcard encodes records into memory");
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Record, DecodeError> {
        match bytes.split_first() {
            None => Err(DecodeError::Empty),
            Some((&VERSION, rest)) => Ok(postcard::from_bytes(rest)?),
            Some((&other, _)) => Err(DecodeError::Version(other)),
        }
    }

    pub fn media_shas(&self) -> impl Iterator<Item = &[u8; 32]> {
        self.media.iter().map(|m| &m.sha256)
    }

    pub fn to_event(&self, id: EventId) -> Result<Event, DecodeError> {
        let attributes: Map<String, Value> = serde_json::from_str(&self.attributes_json)
            .map_err(|e| DecodeError::Attributes(e.to_string()))?;
        Ok(self.clone().into_event(id, attributes))
    }

    /// The event this record stores, given its already parsed attributes.
    pub fn into_event(self, id: EventId, attributes: Map<String, Value>) -> Event {
        Event {
            id,
            camera_id: self.camera_id,
            channel_id: self.channel_id,
            source: self.source,
            kind: self.kind,
            severity: self.severity,
            start_time: Timestamp::from_millis(id.millis()),
            end_time: self.end_ms.map(Timestamp::from_millis),
            attributes,
            ack: self.ack.map(|(at, by)| Ack {
                at: Timestamp::from_millis(at),
                by,
            }),
            media: self
                .media
                .into_iter()
                .map(|m| MediaRef {
                    kind: m.kind,
                    content_type: m.content_type,
                    sha256: hex::encode(m.sha256),
                    size: m.size,
                })
                .collect(),
            recorded_at: Timestamp::from_millis(self.recorded_ms),
        }
    }
}

/// A validated [`NewEvent`] turned into its record on the submitting thread, so that JSON work
/// stays off the single writer thread. The writer fills in the id and outbox sequence.
pub(crate) struct Prepared {
    pub start_ms: i64,
    pub record: Record,
    pub attributes: Map<String, Value>,
}

impl Prepared {
    /// `event` must have passed `NewEvent::validate` (media hashes are valid hex).
    pub fn new(event: NewEvent, now: Timestamp) -> Prepared {
        let attributes_json =
            serde_json::to_string(&event.attributes).expect("a JSON map serialises to a string");
        Prepared {
            start_ms: event.start_time.unwrap_or(now).as_millis(),
            record: Record {
                camera_id: event.camera_id,
                channel_id: event.channel_id,
                source: event.source,
                kind: event.kind,
                severity: event.severity,
                end_ms: event.end_time.map(Timestamp::as_millis),
                attributes_json,
                ack: None,
                media: event
                    .media
                    .into_iter()
                    .map(|m| MediaRecord {
                        kind: m.kind,
                        sha256: sha_from_hex(&m.sha256).unwrap_or_default(),
                        content_type: m.content_type,
                        size: m.size,
                    })
                    .collect(),
                recorded_ms: now.as_millis(),
                outbox_seq: 0,
            },
            attributes: event.attributes,
        }
    }
}

/// Parses a validated hex SHA-256 (see `appliance_model::is_sha256_hex`).
pub(crate) fn sha_from_hex(hex_digest: &str) -> Option<[u8; 32]> {
    let mut sha = [0u8; 32];
    hex::decode_to_slice(hex_digest, &mut sha).ok()?;
    Some(sha)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> Record {
        Record {
            camera_id: "34020000001320000001".into(),
            channel_id: Some("34020000001310000001".into()),
            source: EventSource::Skill,
            kind: "intrusion".into(),
            severity: Severity::Major,
            end_ms: Some(1_700_000_005_000),
            attributes_json: r#"{"zone":"gate","confidence":0.91}"#.into(),
            ack: None,
            media: vec![MediaRecord {
                kind: MediaKind::Snapshot,
                content_type: "image/jpeg".into(),
                sha256: [7; 32],
                size: 1234,
            }],
            recorded_ms: 1_700_000_000_500,
            outbox_seq: 42,
        }
    }

    #[test]
    fn round_trips() {
        let r = record();
        assert_eq!(Record::decode(&r.encode()).unwrap(), r);
        let event = r
            .to_event(EventId::from_parts(1_700_000_000_000, 1))
            .unwrap();
        assert_eq!(event.attributes["zone"], "gate");
        assert_eq!(event.media[0].sha256, "07".repeat(32));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(matches!(Record::decode(&[]), Err(DecodeError::Empty)));
        assert!(matches!(
            Record::decode(&[9, 1, 2]),
            Err(DecodeError::Version(9))
        ));
        let mut bytes = record().encode();
        bytes.truncate(bytes.len() / 2);
        assert!(Record::decode(&bytes).is_err());
        let mut bad = record();
        bad.attributes_json = "[1,2]".into();
        assert!(bad.to_event(EventId::MIN).is_err());
    }
}
