//! The versioned JSON messages the box sends upstream; `docs/uplink-schema.md` is their
//! reference for the cloud side.
//!
//! Every message names its schema in `schema`. A change that a v1 reader would misread gets a new
//! name (`….v2`); adding an optional field does not.

use std::borrow::Cow;

use appliance_model::{Event, Timestamp};
use serde::{Deserialize, Serialize};

/// `schema` of an [`EventMessage`].
pub const EVENT_SCHEMA: &str = "appliance.event.v1";
/// `schema` of a [`StatusMessage`].
pub const STATUS_SCHEMA: &str = "appliance.status.v1";

/// One event: `{"schema":"appliance.event.v1","device_id":…,"seq":…,"event":{…}}`.
///
/// `event` is the same JSON the local API serves. The cloud identifies an event by
/// (`device_id`, `event.id`) and drops repeats: delivery is at-least-once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventMessage<'a> {
    pub schema: Cow<'a, str>,
    pub device_id: Cow<'a, str>,
    /// Outbox sequence: the box's commit order, increasing per device. Gaps are events that
    /// retention deleted before they could be sent.
    pub seq: u64,
    pub event: Cow<'a, Event>,
}

impl<'a> EventMessage<'a> {
    pub fn new(device_id: &'a str, seq: u64, event: &'a Event) -> EventMessage<'a> {
        EventMessage {
            schema: Cow::Borrowed(EVENT_SCHEMA),
            device_id: Cow::Borrowed(device_id),
            seq,
            event: Cow::Borrowed(event),
        }
    }

    pub fn to_json(&self) -> Vec<u8> {
        // Serialising cannot fail: every map in an event has string keys.
        serde_json::to_vec(self).expect("an event message serialises")
    }
}

/// Whether the box is connected to the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceState {
    Online,
    Offline,
}

/// The box's presence, retained on `<prefix>/<device id>/status`: `online` when it connects,
/// `offline` as its last will when the connection is lost without a goodbye.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusMessage {
    pub schema: String,
    pub device_id: String,
    pub state: DeviceState,
    /// When the box connected. Absent from `offline`: the last will is written at connect time
    /// and the broker sends it later, so the box cannot know when.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<Timestamp>,
}

impl StatusMessage {
    pub fn online(device_id: &str, at: Timestamp) -> StatusMessage {
        StatusMessage {
            schema: STATUS_SCHEMA.to_owned(),
            device_id: device_id.to_owned(),
            state: DeviceState::Online,
            at: Some(at),
        }
    }

    pub fn offline(device_id: &str) -> StatusMessage {
        StatusMessage {
            schema: STATUS_SCHEMA.to_owned(),
            device_id: device_id.to_owned(),
            state: DeviceState::Offline,
            at: None,
        }
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a status message serialises")
    }
}

#[cfg(test)]
mod tests {
    use appliance_model::{EventId, EventSource, Severity};
    use serde_json::{Value, json};

    use super::*;

    fn event() -> Event {
        Event {
            id: EventId::from_parts(1_764_000_000_000, 3),
            camera_id: "34020000001320000001".into(),
            channel_id: None,
            source: EventSource::Skill,
            kind: "intrusion".into(),
            severity: Severity::Major,
            start_time: Timestamp::from_millis(1_764_000_000_000),
            end_time: None,
            attributes: json!({"zone": "gate"}).as_object().unwrap().clone(),
            ack: None,
            media: vec![],
            recorded_at: Timestamp::from_millis(1_764_000_000_100),
        }
    }

    #[test]
    fn event_message_wraps_the_api_json_of_the_event() {
        let event = event();
        let json: Value = serde_json::from_slice(&EventMessage::new("box-1", 42, &event).to_json())
            .expect("valid JSON");
        assert_eq!(json["schema"], "appliance.event.v1");
        assert_eq!(json["device_id"], "box-1");
        assert_eq!(json["seq"], 42);
        // The same JSON the local API serves, id included: the cloud's deduplication key.
        assert_eq!(json["event"], serde_json::to_value(&event).unwrap());
        assert_eq!(json["event"]["id"], event.id.to_string());
        assert_eq!(json.as_object().unwrap().len(), 4);
    }

    #[test]
    fn event_message_round_trips() {
        let event = event();
        let bytes = EventMessage::new("box-1", 7, &event).to_json();
        let back: EventMessage<'_> = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(back, EventMessage::new("box-1", 7, &event));
    }

    #[test]
    fn status_messages() {
        let online: Value = serde_json::from_slice(
            &StatusMessage::online("box-1", Timestamp::from_millis(0)).to_json(),
        )
        .unwrap();
        assert_eq!(
            online,
            json!({"schema": "appliance.status.v1", "device_id": "box-1", "state": "online",
                   "at": "1970-01-01T00:00:00.000Z"})
        );
        let offline: Value =
            serde_json::from_slice(&StatusMessage::offline("box-1").to_json()).unwrap();
        assert_eq!(
            offline,
            json!({"schema": "appliance.status.v1", "device_id": "box-1", "state": "offline"})
        );
    }
}
