//! What the platform knows about a registered device, as persisted in the store.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// SIP transport of a device's signalling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Udp,
    Tcp,
}

/// Where a message came from, or goes to: requests to a device go to the source address and
/// transport of its last REGISTER or keepalive (devices sit behind NAT), not to its Contact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub struct Peer {
    pub transport: Transport,
    #[schema(value_type = String)]
    pub addr: SocketAddr,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DeviceInfo {
    pub name: Option<String>,
    pub manufacturer: Option<String>,
    pub model: Option<String>,
    pub firmware: Option<String>,
    pub channel_count: Option<u32>,
}

/// One entry of a device's catalog: a camera channel (or a group, for NVRs and platforms).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Channel {
    pub id: String,
    pub name: Option<String>,
    pub manufacturer: Option<String>,
    pub model: Option<String>,
    pub parent_id: Option<String>,
    pub online: bool,
    pub longitude: Option<f64>,
    pub latitude: Option<f64>,
    pub ptz_type: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Device {
    pub id: String,
    pub peer: Peer,
    /// `host:port` the device addressed us with in its REGISTER request URI; used as our
    /// address in requests to it (we may listen on 0.0.0.0 behind several interfaces).
    pub platform_host: String,
    pub online: bool,
    pub registered_at_ms: i64,
    pub expires_at_ms: i64,
    /// Last REGISTER or keepalive. Persisted only on transitions; after a restart it is reset to
    /// the start time so the device gets a full heartbeat window before it is called offline.
    pub last_seen_ms: i64,
    /// Whether the device writes its MANSCDP bodies in GB2312 (we answer in kind).
    pub gb2312: bool,
    pub info: DeviceInfo,
    pub channels: Vec<Channel>,
    pub catalog_updated_ms: Option<i64>,
    /// Longitude and latitude from MobilePosition notifications.
    pub position: Option<[f64; 2]>,
}
