//! The typed MANSCDP message: a root, the common header and a body per `CmdType`.
//!
//! Optional fields are `Option` so that "absent" and "present" survive a round trip; `String`
//! fields that a message always carries read as empty when a device leaves them out.

use serde::{Deserialize, Serialize};

use crate::ptz::PtzInstruction;

/// The character set of a body on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Charset {
    /// GB2312, GBK or GB18030 on input. On output the declaration says `GB2312` (what devices
    /// expect) and the bytes are GBK, so characters GBK has beyond GB2312 still get through;
    /// anything else becomes an XML character reference.
    Gb2312,
    /// UTF-8, also what a body without an encoding declaration is taken to be.
    Utf8,
}

/// The root element, i.e. the kind of request or answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Root {
    Query,
    Control,
    Notify,
    Response,
}

impl Root {
    /// The element name as written on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Root::Query => "Query",
            Root::Control => "Control",
            Root::Notify => "Notify",
            Root::Response => "Response",
        }
    }
}

/// One MANSCDP message. `device_id` is the header `DeviceID`: the device or channel addressed
/// by a query or control, or the sender of a notification or response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub root: Root,
    pub sn: u32,
    pub device_id: String,
    pub body: Body,
}

impl Message {
    pub fn new(root: Root, sn: u32, device_id: impl Into<String>, body: Body) -> Self {
        Self {
            root,
            sn,
            device_id: device_id.into(),
            body,
        }
    }

    /// A `<Query>` (platform → device).
    pub fn query(body: Body, sn: u32, device_id: impl Into<String>) -> Self {
        Self::new(Root::Query, sn, device_id, body)
    }

    /// A `<Control>` (platform → device).
    pub fn control(body: Body, sn: u32, device_id: impl Into<String>) -> Self {
        Self::new(Root::Control, sn, device_id, body)
    }

    /// A `<Notify>` (device → platform).
    pub fn notify(body: Body, sn: u32, device_id: impl Into<String>) -> Self {
        Self::new(Root::Notify, sn, device_id, body)
    }

    /// A `<Response>` (device → platform).
    pub fn response(body: Body, sn: u32, device_id: impl Into<String>) -> Self {
        Self::new(Root::Response, sn, device_id, body)
    }
}

/// The body of a message, chosen by `CmdType` and root.
///
/// [`crate::decode`] picks the variant from the pair (root, `CmdType`); [`crate::encode`] writes
/// the variant's `CmdType` under [`Message::root`]. A message round-trips when its root is one
/// that decodes to its variant: the root named in each variant's documentation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Body {
    // ---- device → platform ----
    /// `Keepalive`, any root (devices send `Notify`). `Status` is `OK` from a healthy device.
    Keepalive { status: String },
    /// `Alarm` under `Notify` (or `Response`).
    Alarm(Alarm),
    /// `MobilePosition` under `Notify` (or `Response`). Longitude and latitude are required.
    MobilePosition {
        time: String,
        longitude: f64,
        latitude: f64,
        speed: Option<f64>,
        direction: Option<f64>,
        altitude: Option<f64>,
    },
    /// `Catalog` under `Response`: one page of the channel list. `sum_num` is the total over all
    /// pages; the page's own count is `items.len()`.
    CatalogResponse {
        sum_num: u32,
        items: Vec<CatalogItem>,
    },
    /// `Catalog` under `Notify`: catalog changes, each item with its [`CatalogItem::event`].
    CatalogNotify {
        sum_num: u32,
        items: Vec<CatalogItem>,
    },
    /// `DeviceInfo` under `Response`. `result` is `OK` or `ERROR`.
    DeviceInfoResponse {
        device_name: Option<String>,
        manufacturer: Option<String>,
        model: Option<String>,
        firmware: Option<String>,
        channel: Option<u32>,
        result: String,
    },
    /// `DeviceStatus` under `Response`. `online` is `ONLINE`/`OFFLINE`, `status` the device's
    /// own `OK`/`ERROR`, `record` whether it is recording (`ON`/`OFF`); `alarm_status` holds
    /// (alarm input `DeviceID`, `DutyStatus`) pairs such as `ONDUTY`/`OFFDUTY`/`ALARM`.
    DeviceStatusResponse {
        online: Option<bool>,
        status: Option<String>,
        record: Option<bool>,
        device_time: Option<String>,
        alarm_status: Vec<(String, String)>,
    },
    /// `RecordInfo` under `Response`: one page of recordings; `sum_num` is the total.
    RecordInfoResponse {
        name: Option<String>,
        sum_num: u32,
        items: Vec<RecordItem>,
    },
    /// `PresetQuery` under `Response`. Devices that omit `SumNum` are read from
    /// `PresetList Num=`, then from the number of items.
    PresetQueryResponse { sum_num: u32, items: Vec<Preset> },
    /// `ConfigDownload` under `Response`; only `BasicParam` is modelled.
    ConfigDownloadResponse { basic: Option<BasicParam> },
    /// `MediaStatus` under `Notify`: 121 means a playback or download reached its end.
    MediaStatus { notify_type: u32 },
    /// The answer to a control: `cmd_type` `DeviceControl` or `DeviceConfig` under `Response`,
    /// `result` `OK` or `ERROR`.
    ControlResponse { cmd_type: String, result: String },

    // ---- platform → device ----
    /// `Catalog` under `Query`.
    CatalogQuery,
    /// `DeviceInfo` under `Query`.
    DeviceInfoQuery,
    /// `DeviceStatus` under `Query`.
    DeviceStatusQuery,
    /// `RecordInfo` under `Query`. `record_type` is `all`, `time`, `alarm` or `manual`; some NVRs
    /// answer nothing without it.
    RecordInfoQuery {
        start_time: String,
        end_time: String,
        record_type: Option<String>,
        file_path: Option<String>,
        secrecy: Option<u8>,
    },
    /// `PresetQuery` under `Query`.
    PresetQuery,
    /// `ConfigDownload` under `Query`; `config_type` e.g. `BasicParam`.
    ConfigDownloadQuery { config_type: String },
    /// `MobilePosition` under `Query`; `interval` in seconds.
    MobilePositionQuery { interval: Option<u32> },
    /// `DeviceControl` under `Control`.
    DeviceControl(DeviceControl),
    /// `DeviceConfig` with `BasicParam` under `Control`.
    DeviceConfigBasic(BasicParam),

    /// Any other (root, `CmdType`) pair, e.g. `Broadcast`, an alarm query or a `DeviceControl`
    /// with a command not modelled here: the header still decodes so the caller can answer it.
    Other { cmd_type: String },
}

impl Body {
    /// The `CmdType` this body is written with.
    pub fn cmd_type(&self) -> &str {
        match self {
            Body::Keepalive { .. } => "Keepalive",
            Body::Alarm(_) => "Alarm",
            Body::MobilePosition { .. } | Body::MobilePositionQuery { .. } => "MobilePosition",
            Body::CatalogResponse { .. } | Body::CatalogNotify { .. } | Body::CatalogQuery => {
                "Catalog"
            }
            Body::DeviceInfoResponse { .. } | Body::DeviceInfoQuery => "DeviceInfo",
            Body::DeviceStatusResponse { .. } | Body::DeviceStatusQuery => "DeviceStatus",
            Body::RecordInfoResponse { .. } | Body::RecordInfoQuery { .. } => "RecordInfo",
            Body::PresetQueryResponse { .. } | Body::PresetQuery => "PresetQuery",
            Body::ConfigDownloadResponse { .. } | Body::ConfigDownloadQuery { .. } => {
                "ConfigDownload"
            }
            Body::MediaStatus { .. } => "MediaStatus",
            Body::DeviceControl(_) => "DeviceControl",
            Body::DeviceConfigBasic(_) => "DeviceConfig",
            Body::ControlResponse { cmd_type, .. } | Body::Other { cmd_type } => cmd_type,
        }
    }
}

/// An alarm notification. The alarm source is the message's `DeviceID`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Alarm {
    /// `AlarmPriority`: 1 highest … 4 lowest.
    pub priority: Option<u8>,
    /// `AlarmMethod`: 1 phone, 2 device, 3 SMS, 4 GPS, 5 video, 6 device fault, 7 other.
    pub method: Option<u8>,
    /// `AlarmType` (under `Info`, or directly under the root as some devices send it); its meaning
    /// depends on `method`.
    pub alarm_type: Option<u32>,
    /// `AlarmTime` as sent, e.g. `2026-11-24T10:00:00`.
    pub time: Option<String>,
    pub description: Option<String>,
    pub longitude: Option<f64>,
    pub latitude: Option<f64>,
}

/// What happened to a catalog item, in a catalog change notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CatalogEvent {
    Add,
    Del,
    Update,
    On,
    Off,
    /// Video lost.
    Vlost,
    /// Fault.
    Defect,
}

impl CatalogEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            CatalogEvent::Add => "ADD",
            CatalogEvent::Del => "DEL",
            CatalogEvent::Update => "UPDATE",
            CatalogEvent::On => "ON",
            CatalogEvent::Off => "OFF",
            CatalogEvent::Vlost => "VLOST",
            CatalogEvent::Defect => "DEFECT",
        }
    }

    /// Case-insensitive; `None` for anything else.
    pub fn parse(text: &str) -> Option<Self> {
        [
            CatalogEvent::Add,
            CatalogEvent::Del,
            CatalogEvent::Update,
            CatalogEvent::On,
            CatalogEvent::Off,
            CatalogEvent::Vlost,
            CatalogEvent::Defect,
        ]
        .into_iter()
        .find(|event| event.as_str().eq_ignore_ascii_case(text))
    }
}

/// One entry of a `DeviceList`: a channel, alarm input, business group, virtual organisation…
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CatalogItem {
    /// Required: pages are deduplicated by it.
    pub device_id: String,
    /// Only in catalog change notifications.
    pub event: Option<CatalogEvent>,
    pub name: Option<String>,
    pub manufacturer: Option<String>,
    pub model: Option<String>,
    pub owner: Option<String>,
    pub civil_code: Option<String>,
    pub address: Option<String>,
    /// `Parental`: whether the item has children.
    pub parental: Option<bool>,
    pub parent_id: Option<String>,
    pub register_way: Option<u8>,
    pub secrecy: Option<u8>,
    /// `Status`: `ON`/`ONLINE`/`OK` → true, `OFF`/`OFFLINE` → false; written as `ON`/`OFF`.
    pub online: Option<bool>,
    pub longitude: Option<f64>,
    pub latitude: Option<f64>,
    /// `Info/PTZType`: 1 dome, 2 half-dome, 3 fixed, 4 remote-controlled fixed.
    pub ptz_type: Option<u8>,
}

/// One recording in a `RecordList`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RecordItem {
    pub device_id: String,
    pub name: Option<String>,
    pub file_path: Option<String>,
    pub address: Option<String>,
    pub start_time: String,
    pub end_time: String,
    pub secrecy: Option<u8>,
    /// `Type`: `time`, `alarm`, `manual` or `all`.
    pub record_type: Option<String>,
}

/// One preset in a `PresetList`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Preset {
    pub id: String,
    pub name: String,
}

/// `BasicParam` of `ConfigDownload` answers and `DeviceConfig` controls.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BasicParam {
    pub name: Option<String>,
    /// Registration expiry, seconds.
    pub expiration: Option<u32>,
    /// Keepalive interval, seconds.
    pub heartbeat_interval: Option<u32>,
    /// Keepalives missed before the device counts as offline.
    pub heartbeat_count: Option<u32>,
}

/// A `DeviceControl` command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeviceControl {
    /// `PTZCmd`: movement, stop and presets.
    Ptz(PtzInstruction),
    /// `TeleBoot`: reboot.
    TeleBoot,
    /// `GuardCmd`: `SetGuard` (true) or `ResetGuard` (false).
    Guard { set: bool },
    /// `AlarmCmd` `ResetAlarm`, optionally narrowed by `Info/AlarmMethod` and `Info/AlarmType`.
    AlarmReset {
        method: Option<u8>,
        alarm_type: Option<u32>,
    },
    /// `IFameCmd` (sic, the standard's spelling): send a key frame now.
    IFrame,
    /// `RecordCmd`: `Record` (true) or `StopRecord` (false).
    Record { start: bool },
}
