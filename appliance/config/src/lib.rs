//! Configuration of `applianced`, the edge video-AI appliance daemon.
//!
//! # File format
//!
//! The configuration is a TOML file, by default [`DEFAULT_CONFIG_PATH`],
//! with eight tables. Every key is optional; a missing key takes its
//! documented default, so an empty file is a valid configuration. This is the
//! complete file with every default (`applianced default-config` prints it,
//! see [`Config::to_toml_string`]):
//!
//! ```toml
//! [http]
//! listen = "127.0.0.1:8080"
//! tls = false
//!
//! [store]
//! data_dir = "var"
//! cache_capacity = "64 MiB"
//! max_commit_group = 1024
//!
//! [retention]
//! max_age = "30days"
//! max_disk = "8 GiB"
//! min_free_disk = "1 GiB"
//! interval = "1m"
//!
//! [log]
//! filter = "info"
//!
//! [sip]
//! listen = "0.0.0.0:5060"
//! platform_id = "34020000002000000001"
//! domain = "3402000000"
//! password = ""
//! heartbeat_interval = "1m"
//! heartbeat_missed = 3
//! min_register_expires = 60
//! max_register_expires = 86400
//! subscriptions = ["catalog", "alarm"]
//!
//! [sip.device_passwords]
//! # "<device id>" = "<password>"
//!
//! [media]
//! rtp_ip = ""
//! rtp_ports = "30000-30499"
//! stream_timeout = "15s"
//!
//! [uplink]
//! device_id = ""
//! batch = 100
//! telemetry_interval = "1m"
//! # [uplink.mqtt], [uplink.kafka] and [uplink.s3]: absent, so off (see `UplinkConfig`)
//!
//! [vision]
//! onnxruntime = ""
//! providers = ["tensorrt", "cuda", "xnnpack", "cpu"]
//! intra_threads = 2
//! decoder = "auto"
//! max_batch = 4
//! queue_per_camera = 2
//! utc_offset = "+00:00"
//! snapshot_quality = 80
//!
//! [device]
//! provisioning_file = "/boot/appliance/provision.toml"
//!
//! [update]
//! rauc_bus = "system"
//! max_bundle = "2 GiB"
//! ```
//!
//! Sizes ([`ByteSize`]) are an integer number of bytes or a string such as
//! `"64 MiB"` or `"1 GB"`; durations ([`Duration`]) are an integer number of
//! seconds or a [`humantime`] string such as `"30d"` or `"1h 30m"`.
//!
//! Unknown keys and invalid or out-of-range values are errors. The message
//! names the file, the line and column, and the dotted key, e.g.
//! `/etc/appliance/appliance.toml:3:11: retention.max_age: invalid duration
//! `forever`: expected number at 0`.
//!
//! # Environment overrides
//!
//! A variable `APPLIANCE_<SECTION>__<KEY>` (note the double underscore)
//! overrides `<key>` in table `<section>`, both lower-cased:
//! `APPLIANCE_HTTP__LISTEN=0.0.0.0:8080`, `APPLIANCE_STORE__DATA_DIR=/data`; a nested table
//! takes one more part: `APPLIANCE_UPLINK__MQTT__URL=mqtts://cloud.example.com:8883`.
//! The value is read as a TOML value when it is one (`1024`, `true`,
//! `"quoted"`) and taken verbatim as a string otherwise (`/data`, `64 MiB`,
//! `30d`), so strings rarely need quoting. Any other variable starting with
//! `APPLIANCE_`, an unknown key, or an invalid value is an error naming the
//! variable. Overrides are applied after the file, and are checked like it.
//!
//! The loaders take the environment as an iterator of pairs (pass
//! `std::env::vars()`), so they are pure and testable.

mod error;
mod units;

pub use error::{ConfigError, Position};
pub use units::{ByteSize, Duration, PortRange};

use serde::{Deserialize, Deserializer, Serialize, de};
use std::collections::BTreeMap;
use std::fmt::Display;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use toml::{Table, Value};

/// Where `applianced` looks for its configuration unless told otherwise.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/appliance/appliance.toml";

/// The settings the central cloud may change on a running box (the `config.set` command): keys
/// that tune it but cannot cut it off or open it up, so no listener, upstream, path, update,
/// provisioning or store key.
pub const CLOUD_SETTINGS: &[&str] = &[
    "retention.max_age",
    "retention.max_disk",
    "retention.min_free_disk",
    "retention.interval",
    "sip.password",
    "sip.heartbeat_interval",
    "sip.heartbeat_missed",
    "uplink.batch",
    "uplink.telemetry_interval",
    "vision.utc_offset",
    "vision.snapshot_quality",
];

/// Prefix of the environment variables that override configuration keys.
const ENV_PREFIX: &str = "APPLIANCE_";

/// The whole configuration. See the [crate documentation](crate) for the
/// file format.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `[http]`: the HTTP API.
    pub http: HttpConfig,
    /// `[store]`: the event and media store.
    pub store: StoreConfig,
    /// `[retention]`: when old events and media are deleted.
    pub retention: RetentionConfig,
    /// `[log]`: logging.
    pub log: LogConfig,
    /// `[sip]`: the GB28181 platform's SIP signalling.
    pub sip: SipConfig,
    /// `[media]`: where device streams are received.
    pub media: MediaConfig,
    /// `[uplink]`: events to the central cloud over MQTT and/or Kafka.
    #[serde(deserialize_with = "checked_uplink")]
    pub uplink: UplinkConfig,
    /// `[vision]`: decoding, ONNX Runtime and the skills' pipeline.
    pub vision: VisionConfig,
    /// `[device]`: this box's provisioning.
    pub device: DeviceConfig,
    /// `[update]`: firmware updates through RAUC.
    pub update: UpdateConfig,
}

/// `[update]`: firmware updates, installed by RAUC (A/B slots) over D-Bus.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpdateConfig {
    /// The D-Bus RAUC is on: `system` (default, the firmware's), a bus address such as
    /// `unix:path=/run/rauc-test/bus`, or empty to turn updates off.
    pub rauc_bus: String,
    /// Largest bundle the API accepts as an upload. Default `2 GiB`; `1 MiB` to `16 GiB`.
    #[serde(deserialize_with = "max_bundle")]
    pub max_bundle: ByteSize,
}

impl Default for UpdateConfig {
    fn default() -> UpdateConfig {
        UpdateConfig {
            rauc_bus: "system".to_owned(),
            max_bundle: ByteSize::gib(2),
        }
    }
}

/// `[device]`: how this box learns who it is on its first start.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeviceConfig {
    /// Provisioning file read on the first start of a data directory (device id, admin password
    /// hash, upstream), checked as untrusted input. Default `/boot/appliance/provision.toml`
    /// (the boot partition an installer can write from any computer); empty: none.
    pub provisioning_file: PathBuf,
}

impl Default for DeviceConfig {
    fn default() -> DeviceConfig {
        DeviceConfig {
            provisioning_file: PathBuf::from("/boot/appliance/provision.toml"),
        }
    }
}

/// `[http]`: the HTTP API.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Address and port the HTTP API listens on. Default `127.0.0.1:8080`:
    /// loopback only, so exposing the API on the network is a deliberate
    /// choice (`0.0.0.0:8080`).
    #[serde(deserialize_with = "socket_addr")]
    pub listen: SocketAddr,
    /// Serve HTTPS with this box's own certificate (generated on the first start, its
    /// fingerprint shown by `GET /api/v1/claim`) instead of plain HTTP. Default `false`: the
    /// default listener is loopback only; turn it on when the API faces the LAN.
    pub tls: bool,
}

impl Default for HttpConfig {
    fn default() -> HttpConfig {
        HttpConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            tls: false,
        }
    }
}

/// `[store]`: the event and media store.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// Directory holding the database and media files. Default `var`,
    /// relative to the working directory, so a development build runs
    /// without root; the firmware sets `/var/lib/appliance`.
    pub data_dir: PathBuf,
    /// Size of the sled page cache. Default `64 MiB`; between `1 MiB` and
    /// `1 GiB`.
    #[serde(deserialize_with = "cache_capacity")]
    pub cache_capacity: ByteSize,
    /// Most operations one group commit (one flush and `fdatasync`) carries;
    /// larger groups amortise the sync over more writes under load. Default
    /// `1024`; between `1` and `65536`.
    #[serde(deserialize_with = "max_commit_group")]
    pub max_commit_group: usize,
}

impl Default for StoreConfig {
    fn default() -> StoreConfig {
        StoreConfig {
            data_dir: PathBuf::from("var"),
            cache_capacity: ByteSize::mib(64),
            max_commit_group: 1024,
        }
    }
}

/// `[retention]`: when old events and media are deleted.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Events and media older than this are deleted. Default `30d`; at least
    /// `1h`.
    #[serde(deserialize_with = "max_age")]
    pub max_age: Duration,
    /// Disk quota shared by event records and media files; the oldest are
    /// deleted beyond it. Default `8 GiB`; at least `16 MiB`.
    #[serde(deserialize_with = "max_disk")]
    pub max_disk: ByteSize,
    /// The oldest events and media are deleted while the data filesystem has
    /// less than this free. Default `1 GiB`.
    pub min_free_disk: ByteSize,
    /// How often retention runs. Default `60s`; between `1s` and `1d`.
    #[serde(deserialize_with = "interval")]
    pub interval: Duration,
}

impl Default for RetentionConfig {
    fn default() -> RetentionConfig {
        RetentionConfig {
            max_age: Duration::from_secs(30 * DAY),
            max_disk: ByteSize::gib(8),
            min_free_disk: ByteSize::gib(1),
            interval: Duration::from_secs(60),
        }
    }
}

/// `[log]`: logging.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `tracing` env-filter directive, e.g. `info` or
    /// `info,appliance_store=debug`. Default `info`; must not be empty.
    /// `RUST_LOG`, when set, takes precedence (the daemon applies it).
    #[serde(deserialize_with = "filter")]
    pub filter: String,
}

impl Default for LogConfig {
    fn default() -> LogConfig {
        LogConfig {
            filter: "info".to_owned(),
        }
    }
}

/// `[sip]`: the GB28181 platform that cameras and NVRs register to.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SipConfig {
    /// Address and port for SIP over both UDP and TCP. Default `0.0.0.0:5060`:
    /// cameras on the LAN must reach it.
    #[serde(deserialize_with = "socket_addr")]
    pub listen: SocketAddr,
    /// This platform's 20-digit GB28181 id. Default `34020000002000000001`.
    #[serde(deserialize_with = "platform_id")]
    pub platform_id: String,
    /// The 10-digit SIP domain, also the digest realm. Default `3402000000`.
    #[serde(deserialize_with = "domain")]
    pub domain: String,
    /// Password for devices without their own entry in `device_passwords`.
    /// Default empty: then only listed devices may register (no shared
    /// default password on a fresh box).
    pub password: String,
    /// Per-device passwords, `"<device id>" = "<password>"`.
    pub device_passwords: BTreeMap<String, String>,
    /// Keepalive period devices are configured with. Default `60s`; `5s` to `1h`.
    #[serde(deserialize_with = "heartbeat_interval")]
    pub heartbeat_interval: Duration,
    /// Keepalives missed in a row before a device is offline. Default `3`; `1` to `10`.
    #[serde(deserialize_with = "heartbeat_missed")]
    pub heartbeat_missed: u32,
    /// Shortest registration granted (seconds); shorter requests get 423. Default `60`.
    #[serde(deserialize_with = "register_expires")]
    pub min_register_expires: u32,
    /// Longest registration granted (seconds); longer requests are cut to it. Default `86400`.
    #[serde(deserialize_with = "register_expires")]
    pub max_register_expires: u32,
    /// Subscriptions held on every online device: any of `catalog`, `alarm`,
    /// `mobile_position`. Default `["catalog", "alarm"]`; devices that refuse are asked again
    /// an hour later.
    #[serde(deserialize_with = "subscriptions")]
    pub subscriptions: Vec<String>,
}

impl Default for SipConfig {
    fn default() -> SipConfig {
        SipConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], 5060)),
            platform_id: "34020000002000000001".to_owned(),
            domain: "3402000000".to_owned(),
            password: String::new(),
            device_passwords: BTreeMap::new(),
            heartbeat_interval: Duration::from_secs(60),
            heartbeat_missed: 3,
            min_register_expires: 60,
            max_register_expires: DAY as u32,
            subscriptions: vec!["catalog".to_owned(), "alarm".to_owned()],
        }
    }
}

/// `[media]`: the RTP endpoints that receive the streams devices send after an INVITE.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MediaConfig {
    /// The address written into SDP offers, where devices send RTP. Default empty: the local
    /// address the device's SIP traffic reached (right unless NAT sits between them).
    #[serde(deserialize_with = "optional_ip")]
    pub rtp_ip: Option<IpAddr>,
    /// The ports RTP endpoints are taken from (UDP, or TCP for TCP sessions), `"first-last"`
    /// inclusive. Default `"30000-30499"`; ports in use by others are skipped.
    pub rtp_ports: PortRange,
    /// A session whose stream brings nothing for this long is hung up (BYE) and its SSRC and
    /// port released. Default `15s`; `2s` to `10m`.
    #[serde(deserialize_with = "stream_timeout")]
    pub stream_timeout: Duration,
}

impl Default for MediaConfig {
    fn default() -> MediaConfig {
        MediaConfig {
            rtp_ip: None,
            rtp_ports: PortRange {
                first: 30_000,
                last: 30_499,
            },
            stream_timeout: Duration::from_secs(15),
        }
    }
}

/// `[vision]`: how frames are decoded and models run. Cameras and their skills are not here:
/// they are configured live through the API and kept in the store.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct VisionConfig {
    /// The ONNX Runtime library (`libonnxruntime.so`). Default empty: `ORT_DYLIB_PATH`, then
    /// `/usr/lib`, `/usr/local/lib`, then the copy `just setup` puts into a development checkout.
    pub onnxruntime: PathBuf,
    /// Execution providers tried in this order; one this box's ONNX Runtime lacks is skipped
    /// with the reason logged. Default `["tensorrt", "cuda", "xnnpack", "cpu"]`.
    #[serde(deserialize_with = "providers")]
    pub providers: Vec<String>,
    /// Threads of each model's ONNX Runtime session, 1 to 64. Default 2.
    #[serde(deserialize_with = "intra_threads")]
    pub intra_threads: usize,
    /// GStreamer decoder element, or `auto`: the platform's hardware decoder where there is one
    /// (`nvv4l2decoder`, `mppvideodec`, VA-API, V4L2), else `avdec_h264`/`avdec_h265`.
    pub decoder: String,
    /// Most frames (from any cameras) one inference run takes, 1 to 32. Default 4.
    #[serde(deserialize_with = "max_batch")]
    pub max_batch: usize,
    /// Frames waiting for inference per camera, 1 to 64; when full the oldest is dropped (and
    /// counted), so one slow model never holds up decoding. Default 2.
    #[serde(deserialize_with = "queue_per_camera")]
    pub queue_per_camera: usize,
    /// Offset of the box's wall clock from UTC, `+HH:MM` or `-HH:MM`, for skill schedules.
    /// Default `+00:00`.
    #[serde(deserialize_with = "utc_offset")]
    pub utc_offset: String,
    /// JPEG quality of event snapshots, 1 to 100. Default 80.
    #[serde(deserialize_with = "snapshot_quality")]
    pub snapshot_quality: u8,
}

impl Default for VisionConfig {
    fn default() -> VisionConfig {
        VisionConfig {
            onnxruntime: PathBuf::new(),
            providers: ["tensorrt", "cuda", "xnnpack", "cpu"]
                .map(String::from)
                .to_vec(),
            intra_threads: 2,
            decoder: "auto".into(),
            max_batch: 4,
            queue_per_camera: 2,
            utc_offset: "+00:00".into(),
            snapshot_quality: 80,
        }
    }
}

impl VisionConfig {
    /// The schedule offset in seconds east of UTC (validated at load).
    pub fn utc_offset_seconds(&self) -> i32 {
        parse_utc_offset(&self.utc_offset).unwrap_or(0)
    }
}

/// The execution providers `[vision] providers` may name.
pub const EXECUTION_PROVIDERS: [&str; 5] = ["tensorrt", "cuda", "xnnpack", "acl", "cpu"];

/// `+HH:MM` / `-HH:MM` in seconds east of UTC.
fn parse_utc_offset(text: &str) -> Option<i32> {
    let (sign, rest) = match text.as_bytes().first()? {
        b'+' => (1, &text[1..]),
        b'-' => (-1, &text[1..]),
        _ => return None,
    };
    let (hours, minutes) = rest.split_once(':')?;
    if hours.len() != 2 || minutes.len() != 2 {
        return None;
    }
    let (hours, minutes): (i32, i32) = (hours.parse().ok()?, minutes.parse().ok()?);
    (hours <= 14 && minutes < 60).then_some(sign * (hours * 3600 + minutes * 60))
}

/// `[uplink]`: the durable outbox drained to the central cloud. Each upstream is on when its
/// table is present.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct UplinkConfig {
    /// This box's id upstream (MQTT topics, every message's `device_id`): letters, digits, `-`
    /// and `_`, at most 64. Default empty: generated at first start and kept in the store.
    #[serde(deserialize_with = "device_id")]
    pub device_id: String,
    /// Most events per publish. Default `100`; `1` to `10000`.
    #[serde(deserialize_with = "uplink_batch")]
    pub batch: usize,
    /// How often telemetry (uptime, CPU, memory, temperatures, disk, cameras, backlog) goes to
    /// `<topic_prefix>/<device id>/telemetry`. Default `1m`; `5s` to `1h`.
    #[serde(deserialize_with = "telemetry_interval")]
    pub telemetry_interval: Duration,
    /// `[uplink.mqtt]`: absent means no MQTT upstream.
    #[serde(deserialize_with = "checked_table")]
    pub mqtt: Option<MqttUplinkConfig>,
    /// `[uplink.kafka]`: absent means no Kafka upstream.
    #[serde(deserialize_with = "checked_table")]
    pub kafka: Option<KafkaUplinkConfig>,
    /// `[uplink.s3]`: absent means media go over MQTT; present, to this S3-compatible bucket.
    /// Needs `[uplink.mqtt]`: media follow the events delivered over MQTT, and the references
    /// to the uploaded objects go on the events' MQTT connection.
    #[serde(deserialize_with = "checked_table")]
    pub s3: Option<S3UplinkConfig>,
}

impl Default for UplinkConfig {
    fn default() -> UplinkConfig {
        UplinkConfig {
            device_id: String::new(),
            batch: 100,
            telemetry_interval: Duration::from_secs(60),
            mqtt: None,
            kafka: None,
            s3: None,
        }
    }
}

/// `[uplink.mqtt]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MqttUplinkConfig {
    /// `mqtt://host:port` or `mqtts://host:port` (TLS). Required.
    #[serde(deserialize_with = "mqtt_url")]
    pub url: String,
    /// Topics are `<topic_prefix>/<device id>/events`, `…/status`. Default `appliance`.
    #[serde(default = "default_topic_prefix", deserialize_with = "topic_prefix")]
    pub topic_prefix: String,
    /// Default empty: the device id.
    #[serde(default)]
    pub client_id: String,
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub password: String,
    /// PEM CA bundle that signs the broker's certificate (mqtts).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate and key, for brokers that want one.
    #[serde(default)]
    pub client_cert: Option<PathBuf>,
    #[serde(default)]
    pub client_key: Option<PathBuf>,
    /// MQTT keep-alive. Default `30s`; `5s` to `10m`.
    #[serde(default = "default_keep_alive", deserialize_with = "keep_alive")]
    pub keep_alive: Duration,
    /// Largest snapshot or clip uploaded (after its event, over MQTT or to `[uplink.s3]`);
    /// larger ones are skipped and counted. Default `16 MiB`; `64 KiB` to `256 MiB`. On a slow
    /// link a big file holds the events' connection while it goes over MQTT.
    #[serde(
        default = "default_media_max_bytes",
        deserialize_with = "media_max_bytes"
    )]
    pub media_max_bytes: ByteSize,
}

/// `[uplink.kafka]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaUplinkConfig {
    /// Bootstrap brokers, `host:port[,host:port…]`. Required.
    #[serde(deserialize_with = "brokers")]
    pub brokers: String,
    /// Default `appliance.events`; the key of each message is its camera id.
    #[serde(default = "default_kafka_topic")]
    pub topic: String,
    /// `plaintext` (default), `ssl`, `sasl_plaintext` or `sasl_ssl`.
    #[serde(
        default = "default_security_protocol",
        deserialize_with = "security_protocol"
    )]
    pub security_protocol: String,
    /// With SASL: `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`.
    #[serde(default)]
    pub sasl_mechanism: String,
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub password: String,
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    #[serde(default)]
    pub key_file: Option<PathBuf>,
}

/// `[uplink.s3]`: where media go when an S3-compatible object store takes them (AWS S3, MinIO,
/// Ceph RGW, …), signed with AWS Signature Version 4.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct S3UplinkConfig {
    /// `http://host:port` or `https://host:port`, without a path. Required.
    #[serde(deserialize_with = "s3_endpoint")]
    pub endpoint: String,
    /// The bucket, which must exist: 3 to 63 lower-case letters, digits, `.` and `-`. Required.
    #[serde(deserialize_with = "s3_bucket")]
    pub bucket: String,
    /// The SigV4 signing region. Default `us-east-1` (what MinIO expects unless told otherwise).
    #[serde(default = "default_s3_region", deserialize_with = "non_empty")]
    pub region: String,
    /// Required.
    #[serde(deserialize_with = "non_empty")]
    pub access_key: String,
    /// Required.
    #[serde(deserialize_with = "non_empty")]
    pub secret_key: String,
    /// Objects are `<prefix>/<device id>/<event id>/<n>-<sha256>.<ext>`. Default `appliance`.
    #[serde(default = "default_topic_prefix", deserialize_with = "s3_prefix")]
    pub prefix: String,
    /// Path-style URLs (`endpoint/bucket/key`), which MinIO-like servers need; `false`:
    /// virtual-host style (`bucket.endpoint/key`), which AWS prefers. Default `true`.
    #[serde(default = "default_path_style")]
    pub path_style: bool,
    /// PEM CA bundle that signs the endpoint's certificate (https); absent: the Mozilla roots
    /// built into the daemon, which public object stores are signed by.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

/// A table whose keys depend on each other, checked as a whole once its keys are read.
trait CrossChecked {
    fn check(&self) -> Result<(), String>;
}

/// So that `check-config` refuses what the daemon would refuse at start, with the table's
/// position.
fn checked_table<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + CrossChecked,
{
    let table = Option::<T>::deserialize(deserializer)?;
    if let Some(table) = &table {
        table.check().map_err(de::Error::custom)?;
    }
    Ok(table)
}

/// `a` and `b` are both given or both absent.
fn paired(a: &Option<PathBuf>, b: &Option<PathBuf>, names: &str) -> Result<(), String> {
    if a.is_some() == b.is_some() {
        Ok(())
    } else {
        Err(format!("{names} go together: give both or neither"))
    }
}

impl CrossChecked for MqttUplinkConfig {
    fn check(&self) -> Result<(), String> {
        let tls = self.url.starts_with("mqtts://");
        let tls_files = self.ca_file.is_some() || self.client_cert.is_some();
        if !tls && tls_files {
            return Err("ca_file and client_cert need an mqtts:// url".into());
        }
        if tls && self.ca_file.is_none() {
            return Err("an mqtts:// url needs ca_file (the box trusts no system roots)".into());
        }
        if !self.password.is_empty() && self.username.is_empty() {
            return Err("a password needs a username".into());
        }
        paired(
            &self.client_cert,
            &self.client_key,
            "client_cert and client_key",
        )
    }
}

impl CrossChecked for S3UplinkConfig {
    fn check(&self) -> Result<(), String> {
        if self.ca_file.is_some() && !self.endpoint.starts_with("https://") {
            return Err("ca_file needs an https:// endpoint".into());
        }
        let host = self.endpoint.split("://").nth(1).unwrap_or_default();
        let host = host.rsplit_once(':').map_or(host, |(host, _)| host);
        if !self.path_style && (host.parse::<IpAddr>().is_ok() || host.starts_with('[')) {
            return Err(
                "path_style = false puts the bucket in the host name: the endpoint needs a \
                 host name, not an IP address"
                    .into(),
            );
        }
        Ok(())
    }
}

/// `[uplink]` as a whole: the tables that depend on each other.
fn checked_uplink<'de, D: Deserializer<'de>>(deserializer: D) -> Result<UplinkConfig, D::Error> {
    let uplink = UplinkConfig::deserialize(deserializer)?;
    if uplink.s3.is_some() && uplink.mqtt.is_none() {
        return Err(de::Error::custom(
            "[uplink.s3] needs [uplink.mqtt]: media follow the events delivered over MQTT, and \
             their references go on its connection",
        ));
    }
    Ok(uplink)
}

impl CrossChecked for KafkaUplinkConfig {
    fn check(&self) -> Result<(), String> {
        let protocol = self.security_protocol.as_str();
        let sasl = protocol.starts_with("sasl_");
        let tls = protocol.ends_with("ssl");
        if sasl {
            if !KAFKA_SASL_MECHANISMS.contains(&self.sasl_mechanism.as_str()) {
                return Err(format!(
                    "security_protocol {protocol} needs sasl_mechanism, one of {}",
                    KAFKA_SASL_MECHANISMS.join(", ")
                ));
            }
            if self.username.is_empty() {
                return Err(format!("security_protocol {protocol} needs a username"));
            }
        } else if !self.sasl_mechanism.is_empty() {
            return Err("sasl_mechanism needs security_protocol sasl_plaintext or sasl_ssl".into());
        }
        let tls_files = self.ca_file.is_some() || self.cert_file.is_some();
        if !tls && tls_files {
            return Err("ca_file and cert_file need security_protocol ssl or sasl_ssl".into());
        }
        paired(&self.cert_file, &self.key_file, "cert_file and key_file")
    }
}

/// The SASL mechanisms `[uplink.kafka] sasl_mechanism` may name.
pub const KAFKA_SASL_MECHANISMS: [&str; 3] = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"];

fn default_topic_prefix() -> String {
    "appliance".to_owned()
}

fn default_media_max_bytes() -> ByteSize {
    ByteSize::mib(16)
}

fn media_max_bytes<'de, D: Deserializer<'de>>(deserializer: D) -> Result<ByteSize, D::Error> {
    within(
        ByteSize::deserialize(deserializer)?,
        ByteSize(64 * 1024),
        Some(ByteSize::mib(256)),
    )
}

fn default_s3_region() -> String {
    "us-east-1".to_owned()
}

fn default_path_style() -> bool {
    true
}

fn default_keep_alive() -> Duration {
    Duration::from_secs(30)
}

fn default_kafka_topic() -> String {
    "appliance.events".to_owned()
}

fn default_security_protocol() -> String {
    "plaintext".to_owned()
}

const HOUR: u64 = 3_600;
const DAY: u64 = 24 * HOUR;

// Range checks run inside deserialisation, not afterwards, so that their
// errors carry the key path and the position of the value.

fn socket_addr<'de, D: Deserializer<'de>>(deserializer: D) -> Result<SocketAddr, D::Error> {
    let text = String::deserialize(deserializer)?;
    text.parse().map_err(|err| {
        de::Error::custom(format!(
            "invalid socket address `{text}`: {err} (expected e.g. `127.0.0.1:8080`)"
        ))
    })
}

fn cache_capacity<'de, D: Deserializer<'de>>(deserializer: D) -> Result<ByteSize, D::Error> {
    within(
        ByteSize::deserialize(deserializer)?,
        ByteSize::mib(1),
        Some(ByteSize::gib(1)),
    )
}

fn max_bundle<'de, D: Deserializer<'de>>(deserializer: D) -> Result<ByteSize, D::Error> {
    within(
        ByteSize::deserialize(deserializer)?,
        ByteSize::mib(1),
        Some(ByteSize::gib(16)),
    )
}

fn max_commit_group<'de, D: Deserializer<'de>>(deserializer: D) -> Result<usize, D::Error> {
    within(usize::deserialize(deserializer)?, 1, Some(65_536))
}

fn max_age<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    within(
        Duration::deserialize(deserializer)?,
        Duration::from_secs(HOUR),
        None,
    )
}

fn max_disk<'de, D: Deserializer<'de>>(deserializer: D) -> Result<ByteSize, D::Error> {
    within(
        ByteSize::deserialize(deserializer)?,
        ByteSize::mib(16),
        None,
    )
}

fn interval<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    within(
        Duration::deserialize(deserializer)?,
        Duration::from_secs(1),
        Some(Duration::from_secs(DAY)),
    )
}

fn digits<'de, D: Deserializer<'de>>(deserializer: D, count: usize) -> Result<String, D::Error> {
    let text = String::deserialize(deserializer)?;
    if text.len() != count || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(de::Error::custom(format!(
            "must be {count} digits, got `{text}`"
        )));
    }
    Ok(text)
}

fn platform_id<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    digits(deserializer, 20)
}

fn domain<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    digits(deserializer, 10)
}

fn heartbeat_interval<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    within(
        Duration::deserialize(deserializer)?,
        Duration::from_secs(5),
        Some(Duration::from_secs(HOUR)),
    )
}

fn heartbeat_missed<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u32, D::Error> {
    within(u32::deserialize(deserializer)?, 1, Some(10))
}

fn register_expires<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u32, D::Error> {
    within(u32::deserialize(deserializer)?, 10, Some(7 * DAY as u32))
}

/// The subscription kinds `[sip] subscriptions` may name.
pub const SUBSCRIPTION_KINDS: [&str; 3] = ["catalog", "alarm", "mobile_position"];

fn subscriptions<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    let kinds = Vec::<String>::deserialize(deserializer)?;
    if let Some(unknown) = kinds
        .iter()
        .find(|k| !SUBSCRIPTION_KINDS.contains(&k.as_str()))
    {
        return Err(de::Error::custom(format!(
            "`{unknown}` is not one of {}",
            SUBSCRIPTION_KINDS.join(", ")
        )));
    }
    Ok(kinds)
}

fn optional_ip<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<IpAddr>, D::Error> {
    let text = String::deserialize(deserializer)?;
    if text.is_empty() {
        return Ok(None);
    }
    text.parse().map(Some).map_err(|err| {
        de::Error::custom(format!(
            "invalid IP address `{text}`: {err} (expected e.g. `192.168.1.10`, or empty)"
        ))
    })
}

fn stream_timeout<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    within(
        Duration::deserialize(deserializer)?,
        Duration::from_secs(2),
        Some(Duration::from_secs(600)),
    )
}

fn device_id<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    let id = String::deserialize(deserializer)?;
    let valid = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    if id.len() > 64 || !id.chars().all(valid) {
        return Err(de::Error::custom(format!(
            "`{id}`: at most 64 letters, digits, `-` or `_` (it goes into MQTT topics)"
        )));
    }
    Ok(id)
}

fn providers<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    let providers = Vec::<String>::deserialize(deserializer)?;
    if providers.is_empty() {
        return Err(de::Error::custom(
            "name at least one provider, e.g. [\"cpu\"]",
        ));
    }
    for provider in &providers {
        if !EXECUTION_PROVIDERS.contains(&provider.as_str()) {
            return Err(de::Error::custom(format!(
                "unknown execution provider `{provider}` (known: {})",
                EXECUTION_PROVIDERS.join(", ")
            )));
        }
    }
    Ok(providers)
}

fn intra_threads<'de, D: Deserializer<'de>>(deserializer: D) -> Result<usize, D::Error> {
    within(usize::deserialize(deserializer)?, 1, Some(64))
}

fn max_batch<'de, D: Deserializer<'de>>(deserializer: D) -> Result<usize, D::Error> {
    within(usize::deserialize(deserializer)?, 1, Some(32))
}

fn queue_per_camera<'de, D: Deserializer<'de>>(deserializer: D) -> Result<usize, D::Error> {
    within(usize::deserialize(deserializer)?, 1, Some(64))
}

fn snapshot_quality<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u8, D::Error> {
    within(u8::deserialize(deserializer)?, 1, Some(100))
}

fn utc_offset<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    let text = String::deserialize(deserializer)?;
    match parse_utc_offset(&text) {
        Some(_) => Ok(text),
        None => Err(de::Error::custom(format!(
            "`{text}`: expected +HH:MM or -HH:MM, at most 14 hours (e.g. `+08:00`)"
        ))),
    }
}

fn uplink_batch<'de, D: Deserializer<'de>>(deserializer: D) -> Result<usize, D::Error> {
    within(usize::deserialize(deserializer)?, 1, Some(10_000))
}

fn telemetry_interval<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    within(
        Duration::deserialize(deserializer)?,
        Duration::from_secs(5),
        Some(Duration::from_secs(HOUR)),
    )
}

fn mqtt_url<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    let url = String::deserialize(deserializer)?;
    let rest = url
        .strip_prefix("mqtt://")
        .or_else(|| url.strip_prefix("mqtts://"))
        .ok_or_else(|| de::Error::custom(format!("`{url}` must start with mqtt:// or mqtts://")))?;
    match rest.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0) => {
            Ok(url)
        }
        _ => Err(de::Error::custom(format!(
            "`{url}` must name a host and a port, e.g. mqtts://cloud.example.com:8883"
        ))),
    }
}

fn topic_prefix<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    let prefix = String::deserialize(deserializer)?;
    if prefix.is_empty() || prefix.contains(['+', '#', '\0']) || prefix.starts_with('/') {
        return Err(de::Error::custom(format!(
            "`{prefix}`: a non-empty MQTT topic without wildcards or a leading `/`"
        )));
    }
    Ok(prefix)
}

fn s3_endpoint<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    let url = String::deserialize(deserializer)?;
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| de::Error::custom(format!("`{url}` must start with http:// or https://")))?;
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    match rest.rsplit_once(':') {
        Some((host, port))
            if !host.is_empty()
                && !host.contains(['/', '?', '#', '@'])
                && port.parse::<u16>().is_ok_and(|p| p > 0) =>
        {
            Ok(url)
        }
        _ => Err(de::Error::custom(format!(
            "`{url}` must name a host and a port and no path, e.g. https://s3.example.com:443"
        ))),
    }
}

/// S3's bucket naming rules, so that a typo is caught before the first upload.
fn s3_bucket<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    let bucket = String::deserialize(deserializer)?;
    let edge_ok = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let valid = (3..=63).contains(&bucket.len())
        && bucket
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-')
        && edge_ok(bucket.chars().next())
        && edge_ok(bucket.chars().last());
    if !valid {
        return Err(de::Error::custom(format!(
            "`{bucket}`: 3 to 63 lower-case letters, digits, `.` and `-`, starting and ending \
             with a letter or digit"
        )));
    }
    Ok(bucket)
}

fn s3_prefix<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    let prefix = String::deserialize(deserializer)?;
    if prefix.is_empty() || prefix.split('/').any(str::is_empty) {
        return Err(de::Error::custom(format!(
            "`{prefix}`: non-empty, without a leading or trailing `/` or `//`"
        )));
    }
    Ok(prefix)
}

fn non_empty<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    let text = String::deserialize(deserializer)?;
    if text.is_empty() {
        return Err(de::Error::custom("must not be empty"));
    }
    Ok(text)
}

fn keep_alive<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    within(
        Duration::deserialize(deserializer)?,
        Duration::from_secs(5),
        Some(Duration::from_secs(600)),
    )
}

fn brokers<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    let brokers = String::deserialize(deserializer)?;
    let valid = |b: &str| {
        b.rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
    };
    if brokers.split(',').all(|b| valid(b.trim())) {
        Ok(brokers)
    } else {
        Err(de::Error::custom(format!(
            "`{brokers}`: expected host:port[,host:port…]"
        )))
    }
}

/// The security protocols `[uplink.kafka] security_protocol` may name (librdkafka's).
pub const KAFKA_SECURITY_PROTOCOLS: [&str; 4] = ["plaintext", "ssl", "sasl_plaintext", "sasl_ssl"];

fn security_protocol<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    let protocol = String::deserialize(deserializer)?;
    if KAFKA_SECURITY_PROTOCOLS.contains(&protocol.as_str()) {
        Ok(protocol)
    } else {
        Err(de::Error::custom(format!(
            "`{protocol}` is not one of {}",
            KAFKA_SECURITY_PROTOCOLS.join(", ")
        )))
    }
}

fn filter<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    let filter = String::deserialize(deserializer)?;
    if filter.trim().is_empty() {
        return Err(de::Error::custom("must not be empty, e.g. \"info\""));
    }
    Ok(filter)
}

/// `value` if it is at least `min` and at most `max` (when given).
fn within<T: PartialOrd + Display, E: de::Error>(value: T, min: T, max: Option<T>) -> Result<T, E> {
    match max {
        Some(max) if value < min || value > max => Err(E::custom(format!(
            "must be between {min} and {max}, got {value}"
        ))),
        None if value < min => Err(E::custom(format!("must be at least {min}, got {value}"))),
        _ => Ok(value),
    }
}

impl Config {
    /// Parses and validates the configuration file contents `text`; `origin`
    /// is the file name used in error messages.
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Config, ConfigError> {
        serde_path_to_error::deserialize(toml::Deserializer::new(text)).map_err(|err| {
            let key = err
                .path()
                .iter()
                .next()
                .is_some()
                .then(|| err.path().to_string());
            ConfigError::in_file(origin, text, key, err.inner())
        })
    }

    /// Reads the configuration file at `path` and applies the `APPLIANCE_*`
    /// overrides found in `env` (pass `std::env::vars()`).
    pub fn load(
        path: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let origin = path.display().to_string();
        // The file alone is validated first so that its errors are reported
        // with their positions; the overrides are then checked one by one.
        let config = Config::from_toml_str(&text, &origin)?;
        let table = text
            .parse::<Table>()
            .map_err(|err| ConfigError::in_file(&origin, &text, None, &err))?;
        config.with_env(table, env)
    }

    /// The defaults with the `APPLIANCE_*` overrides found in `env` applied,
    /// for when there is no configuration file.
    pub fn from_env_only(
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        Config::default().with_env(Table::new(), env)
    }

    /// This configuration with `settings` (dotted key from [`CLOUD_SETTINGS`] → value) applied
    /// and checked as the file's keys are. A key outside that list, or a bad value, is an error
    /// naming it.
    pub fn with_settings(
        &self,
        settings: &std::collections::BTreeMap<String, Value>,
    ) -> Result<Config, ConfigError> {
        let mut table = Table::try_from(self).expect("a configuration serialises to TOML");
        for (key, value) in settings {
            let refuse = |message: String| ConfigError::Setting {
                key: key.clone(),
                message,
            };
            let Some((section, name)) = key
                .split_once('.')
                .filter(|_| CLOUD_SETTINGS.contains(&key.as_str()))
            else {
                return Err(refuse(format!(
                    "not a setting that may be changed (those are {})",
                    CLOUD_SETTINGS.join(", ")
                )));
            };
            table
                .entry(section)
                .or_insert_with(|| Value::Table(Table::new()))
                .as_table_mut()
                .expect("every section is a table")
                .insert(name.to_owned(), value.clone());
        }
        serde_path_to_error::deserialize(Value::Table(table)).map_err(|err| ConfigError::Setting {
            key: err.path().to_string(),
            message: error::describe(err.inner()),
        })
    }

    /// Applies the overrides in `env` to `table`, the valid TOML that `self`
    /// was read from.
    fn with_env(
        self,
        mut table: Table,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut overrides: Vec<_> = env
            .into_iter()
            .filter(|(var, _)| var.starts_with(ENV_PREFIX))
            .collect();
        // The process environment has no order; sorting makes the reported
        // error the same from one run to the next.
        overrides.sort();
        if overrides.is_empty() {
            return Ok(self);
        }
        let file_table = table.clone();
        let mut applied = Vec::new();
        for (var, raw) in overrides {
            let path = env_key(&var)?;
            apply_override(&mut table, &path, &var, &raw)?;
            applied.push((var, path, raw));
        }
        // Checked once all are applied: a table such as `[uplink.mqtt]` may need several
        // variables together (its `url` and its `password`).
        serde_path_to_error::deserialize(Value::Table(table)).map_err(|err| {
            // Pin the error on a variable that is wrong by itself (an unknown key, a bad value),
            // else on the variables of the table the error is about (a key missing there).
            let alone = applied.iter().find_map(|(var, path, raw)| {
                let mut solo = file_table.clone();
                apply_override(&mut solo, path, var, raw).err().or_else(|| {
                    serde_path_to_error::deserialize::<_, Config>(Value::Table(solo))
                        .err()
                        .filter(|e| !e.inner().to_string().starts_with("missing field"))
                        .map(|e| ConfigError::in_env(var, error::describe(e.inner())))
                })
            });
            alone.unwrap_or_else(|| {
                let at = err.path().to_string();
                let culprit = applied
                    .iter()
                    .map(|(var, path, _)| (var, path.join(".")))
                    .filter(|(_, key)| key.starts_with(&format!("{at}.")))
                    .map(|(var, _)| var.as_str())
                    .next()
                    .unwrap_or(ENV_PREFIX);
                ConfigError::in_env(culprit, error::describe(err.inner()))
            })
        })
    }

    /// The complete configuration as a commented TOML file with every key
    /// and its current value; it parses back to an equal `Config`.
    pub fn to_toml_string(&self) -> String {
        // Destructured so that adding a field fails to compile until it is
        // written out here too.
        let Config {
            http: HttpConfig { listen, tls },
            store:
                StoreConfig {
                    data_dir,
                    cache_capacity,
                    max_commit_group,
                },
            retention:
                RetentionConfig {
                    max_age,
                    max_disk,
                    min_free_disk,
                    interval,
                },
            log: LogConfig { filter },
            sip:
                SipConfig {
                    listen: sip_listen,
                    platform_id,
                    domain,
                    password,
                    device_passwords,
                    heartbeat_interval,
                    heartbeat_missed,
                    min_register_expires,
                    max_register_expires,
                    subscriptions,
                },
            media:
                MediaConfig {
                    rtp_ip,
                    rtp_ports,
                    stream_timeout,
                },
            uplink:
                UplinkConfig {
                    device_id,
                    batch,
                    telemetry_interval,
                    mqtt,
                    kafka,
                    s3,
                },
            vision:
                VisionConfig {
                    onnxruntime,
                    providers,
                    intra_threads,
                    decoder,
                    max_batch,
                    queue_per_camera,
                    utc_offset,
                    snapshot_quality,
                },
            device: DeviceConfig { provisioning_file },
            update:
                UpdateConfig {
                    rauc_bus,
                    max_bundle,
                },
        } = self;
        let upstream = |name: &str, table: Option<String>, example: &str| match table {
            Some(table) => format!("[uplink.{name}]\n{table}"),
            None => format!("# [uplink.{name}] is absent: off. For example:\n{example}"),
        };
        let mqtt = upstream(
            "mqtt",
            mqtt.as_ref()
                .map(|m| toml::to_string(m).expect("the MQTT table serialises")),
            "# [uplink.mqtt]\n# url = \"mqtts://cloud.example.com:8883\"\n# ca_file = \"/etc/appliance/cloud-ca.pem\"\n",
        );
        let kafka = upstream(
            "kafka",
            kafka
                .as_ref()
                .map(|k| toml::to_string(k).expect("the Kafka table serialises")),
            "# [uplink.kafka]\n# brokers = \"kafka.example.com:9093\"\n# security_protocol = \"ssl\"\n",
        );
        let s3 = upstream(
            "s3",
            s3.as_ref()
                .map(|s| toml::to_string(s).expect("the S3 table serialises")),
            "# [uplink.s3] (media to an S3-compatible bucket instead of MQTT; needs [uplink.mqtt])\n# endpoint = \"https://s3.example.com:443\"\n# bucket = \"appliance-media\"\n# access_key = \"…\"\n# secret_key = \"…\"\n",
        );
        let device_passwords: String = device_passwords
            .iter()
            .map(|(id, password)| format!("{} = {}\n", toml_string(id), toml_string(password)))
            .collect();
        format!(
            r#"# applianced configuration.
#
# Every key is optional; `applianced default-config` prints the defaults.
# Sizes are bytes or strings such as "64 MiB"
# or "1 GB"; durations are seconds or strings such as "30d" or "1h 30m".
# A variable APPLIANCE_<SECTION>__<KEY> overrides a key, e.g.
# APPLIANCE_HTTP__LISTEN=0.0.0.0:8080.

[http]
# Address and port the HTTP API listens on (127.0.0.1: local only).
listen = {listen}
# HTTPS with this box's own certificate (made on the first start).
tls = {tls}

[store]
# Directory holding the database and media files.
data_dir = {data_dir}
# Size of the sled page cache, 1 MiB to 1 GiB.
cache_capacity = {cache_capacity}
# Most operations one group commit (flush + fdatasync) carries, 1 to 65536.
max_commit_group = {max_commit_group}

[retention]
# Events and media older than this are deleted; at least 1h.
max_age = {max_age}
# Disk quota shared by event records and media files; at least 16 MiB.
max_disk = {max_disk}
# The oldest events and media are deleted while less than this is free
# on the data filesystem.
min_free_disk = {min_free_disk}
# How often retention runs, 1s to 1d.
interval = {interval}

[log]
# tracing env-filter directive, e.g. "info,appliance_store=debug".
# RUST_LOG, when set, takes precedence.
filter = {filter}

[sip]
# SIP over UDP and TCP for GB28181 cameras and NVRs (must face the LAN).
listen = {sip_listen}
# This platform's 20-digit id and the 10-digit SIP domain (digest realm).
platform_id = {platform_id}
domain = {domain}
# Password for devices not listed below; empty: only listed devices register.
password = {password}
# Keepalive period of the devices, 5s to 1h, and how many may be missed.
heartbeat_interval = {heartbeat_interval}
heartbeat_missed = {heartbeat_missed}
# Registration lifetime bounds in seconds (shorter: 423, longer: cut).
min_register_expires = {min_register_expires}
max_register_expires = {max_register_expires}
# Subscriptions held on every online device: catalog, alarm, mobile_position.
subscriptions = {subscriptions}

[media]
# Address devices send RTP to, written into SDP offers; empty: the local
# address the device's SIP traffic reached (set it when NAT is in between).
rtp_ip = {rtp_ip}
# Ports for RTP endpoints (UDP or TCP), inclusive; ports in use are skipped.
rtp_ports = {rtp_ports}
# A session whose stream brings nothing for this long is hung up, 2s to 10m.
stream_timeout = {stream_timeout}

[uplink]
# This box's id upstream (MQTT topics, every message); empty: generated at
# first start and kept in the store.
device_id = {device_id}
# Most events per publish, 1 to 10000.
batch = {batch}
# How often telemetry goes to <topic_prefix>/<device id>/telemetry (MQTT),
# 5s to 1h.
telemetry_interval = {telemetry_interval}

{mqtt}
{kafka}
{s3}
[vision]
# libonnxruntime.so; empty: ORT_DYLIB_PATH, /usr/lib, /usr/local/lib, or the
# copy `just setup` installs into a development checkout.
onnxruntime = {onnxruntime}
# Execution providers in order of preference (tensorrt, cuda, xnnpack, acl,
# cpu); those this ONNX Runtime lacks are skipped with the reason logged.
providers = {providers}
# Threads of each model's session, 1 to 64.
intra_threads = {intra_threads}
# GStreamer decoder element, or "auto" (hardware where the box has it).
decoder = {decoder}
# Most frames, from any cameras, one inference run takes, 1 to 32.
max_batch = {max_batch}
# Frames waiting per camera, 1 to 64; when full the oldest is dropped.
queue_per_camera = {queue_per_camera}
# The box's offset from UTC for skill schedules, e.g. "+08:00".
utc_offset = {utc_offset}
# JPEG quality of event snapshots, 1 to 100.
snapshot_quality = {snapshot_quality}

[device]
# Read on the first start of a data directory (device id, admin password
# hash, upstream); empty: none.
provisioning_file = {provisioning_file}

[update]
# The D-Bus RAUC is on: "system", a bus address, or "" for no updates.
rauc_bus = {rauc_bus}
# Largest bundle the API accepts as an upload, 1 MiB to 16 GiB.
max_bundle = {max_bundle}

[sip.device_passwords]
# "<device id>" = "<password>"
{device_passwords}"#,
            listen = toml_string(listen),
            // A path read from TOML or the environment is UTF-8, so
            // `display` loses nothing for any configuration that was loaded.
            data_dir = toml_string(data_dir.display()),
            cache_capacity = toml_string(cache_capacity),
            max_age = toml_string(max_age),
            max_disk = toml_string(max_disk),
            min_free_disk = toml_string(min_free_disk),
            interval = toml_string(interval),
            filter = toml_string(filter),
            sip_listen = toml_string(sip_listen),
            platform_id = toml_string(platform_id),
            domain = toml_string(domain),
            password = toml_string(password),
            heartbeat_interval = toml_string(heartbeat_interval),
            subscriptions = Value::Array(subscriptions.iter().map(toml_string).collect()),
            rtp_ip = toml_string(rtp_ip.map(|ip| ip.to_string()).unwrap_or_default()),
            rtp_ports = toml_string(rtp_ports),
            device_id = toml_string(device_id),
            telemetry_interval = toml_string(telemetry_interval),
            stream_timeout = toml_string(stream_timeout),
            onnxruntime = toml_string(onnxruntime.display()),
            provisioning_file = toml_string(provisioning_file.display()),
            rauc_bus = toml_string(rauc_bus),
            max_bundle = toml_string(max_bundle),
            providers = Value::Array(providers.iter().map(toml_string).collect()),
            decoder = toml_string(decoder),
            utc_offset = toml_string(utc_offset),
        )
    }
}

/// `value` as a quoted and escaped TOML string.
fn toml_string(value: impl Display) -> Value {
    Value::String(value.to_string())
}

/// Sets the key at `path` in `table` to the variable's value, making the tables on the way.
fn apply_override(
    table: &mut Table,
    path: &[String],
    var: &str,
    raw: &str,
) -> Result<(), ConfigError> {
    let (key, tables) = path
        .split_last()
        .expect("env_key yields at least two parts");
    let mut table_ref = table;
    for name in tables {
        table_ref = table_ref
            .entry(name.as_str())
            .or_insert_with(|| Value::Table(Table::new()))
            .as_table_mut()
            .ok_or_else(|| ConfigError::in_env(var, format!("`{name}` is not a table")))?;
    }
    table_ref.insert(key.clone(), env_value(raw));
    Ok(())
}

/// Splits `APPLIANCE_<SECTION>__<KEY>` (or `APPLIANCE_<SECTION>__<TABLE>__<KEY>` for a nested
/// table such as `[uplink.mqtt]`) into its lower-cased parts.
fn env_key(var: &str) -> Result<Vec<String>, ConfigError> {
    let parts: Vec<String> = var
        .strip_prefix(ENV_PREFIX)
        .unwrap_or_default()
        .split("__")
        .map(str::to_lowercase)
        .collect();
    if parts.len() < 2 || parts.iter().any(String::is_empty) {
        return Err(ConfigError::in_env(
            var,
            "must be named APPLIANCE_<SECTION>__<KEY> (double underscore), e.g. APPLIANCE_HTTP__LISTEN",
        ));
    }
    Ok(parts)
}

/// Reads an override as TOML when it is a TOML value, so `1024` is an
/// integer, and verbatim otherwise, so paths, addresses and `64 MiB` need no
/// quotes in the shell.
fn env_value(raw: &str) -> Value {
    if let Ok(mut table) = format!("value = {raw}").parse::<Table>()
        && let Some(value) = table.remove("value")
        // Further keys mean `raw` held a newline and more TOML: not one value.
        && table.is_empty()
    {
        return value;
    }
    Value::String(raw.to_owned())
}

#[cfg(test)]
mod tests;
