//! The MQTT upstream: MQTT 5 over rumqttc, a batch done only when every message got its PUBACK.
//!
//! Why MQTT 5 (`rumqttc::v5`): its PUBACK carries a reason code, so a broker that refuses a
//! message (not authorised for the topic, quota exceeded, payload too large) says so and the batch
//! fails instead of counting as delivered, as a 3.1.1 PUBACK would; its CONNACK says *why* a
//! connection is refused (bad user name or password, not authorised, banned), which is what the
//! daemon's health shows. Both versions track PUBACKs the same way in rumqttc.
//!
//! rumqttc keeps publishes in memory and drops them on a reconnect without a session, so it is
//! never trusted with delivery: each connection is a fresh client and event loop (clean start),
//! an event loop that fails is not polled again (it would reconnect at once, in a tight loop),
//! and the batches in flight fail with it: a batch is settled only on the connection it was
//! submitted on. The [`crate::sender::Sender`] sends the batch again
//! from the outbox after its backoff, on a new connection.
//!
//! Matching PUBACKs to messages: on one connection the event loop takes publishes from its
//! request channel in the order we put them there and reports each as `Outgoing::Publish(pkid)`
//! when it assigns the packet id, so the n-th such report with a packet id is the n-th QoS 1
//! message put in the channel (QoS 0 ones, from the side channel, are reported with pkid 0); a
//! PUBACK names the pkid, and rumqttc reuses a pkid only once it is acknowledged. Two tasks put
//! QoS 1 messages on a connection (the sender's events, the media uploader's files), so the
//! ordinals are the connection's, not the sender's: whoever puts one in the channel holds the
//! connection's `Ordinals` lock until it is there and takes the next ordinal. An event batch
//! therefore knows the exact ordinals of its messages, which need not be consecutive.
//!
//! The side channel ([`MqttSideChannel`]): telemetry and command results go over the events'
//! connection (one connection per box, one presence), at QoS 0 and only while it is up. A
//! snapshot missed while offline is not worth sending later, so nothing is queued and the outbox
//! is not involved; the publisher shares each connection with its side channels once it is
//! established and withdraws it when the connection goes. The media uploader
//! ([`crate::media`]) publishes on it too, at QoS 1, and waits for its own PUBACK.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use appliance_model::Timestamp;
use rumqttc::Outgoing as MqttOutgoing;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{
    ConnectReturnCode, LastWill, Packet, PubAckReason, Publish, PublishProperties,
};
use rumqttc::v5::{AsyncClient, ConnectionError, Event, EventLoop, MqttOptions, StateError};
use rumqttc::{TlsConfiguration, Transport};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::media::MediaQueue;
use crate::schema::StatusMessage;
use crate::{Outgoing, PublishError, Publisher, Ticket, TicketKind};

/// `topic_prefix` when the configuration names none.
pub const DEFAULT_TOPIC_PREFIX: &str = "appliance";
/// How long a connection attempt (TCP, TLS, CONNACK) may take.
const CONNECT_TIMEOUT_S: u64 = 10;
/// Largest packet the box accepts from the broker (advertised in CONNECT). rumqttc's default
/// of 10 KiB drops the connection on a command carrying a photo to enrol (base64 JSON); a 16 MiB
/// photo is about 22 MiB in base64.
const MAX_INCOMING_PACKET: u32 = 24 * 1024 * 1024;

/// How long a batch may wait for its PUBACKs. A broker that stops answering is normally caught
/// sooner by the keep-alive; this bounds the rest.
const ACK_TIMEOUT: Duration = Duration::from_secs(30);
/// Publishes queued towards the event loop before `publish` waits for room.
const REQUEST_CHANNEL: usize = 64;
/// Most unacknowledged publishes on the wire (the broker's receive maximum may lower it). rumqttc
/// allocates a slot per possible packet id up front, so the default (65535) costs megabytes.
/// The sender's pipeline (several batches submitted) may hold more messages than this: the
/// surplus waits in the request channel and `submit` waits for room there, which the driver
/// frees as PUBACKs arrive. That is back-pressure, never a deadlock, and the wire stays busy.
const MAX_IN_FLIGHT: u16 = 100;
/// How long a side-channel message may wait for room among the events queued towards the broker:
/// during a backlog drain the request channel is full most of the time, and a slow link or a
/// broker that stopped answering keeps it full.
const SIDE_CHANNEL_WAIT: Duration = Duration::from_secs(5);

/// `[uplink.mqtt]`, as the daemon hands it over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MqttConfig {
    /// `mqtt://host:port` or `mqtts://host:port` (TLS); the port defaults to 1883 and 8883.
    pub url: String,
    /// Topics are `<topic_prefix>/<device_id>/events` and `…/status`.
    pub topic_prefix: String,
    /// Empty: the device id.
    pub client_id: String,
    pub device_id: String,
    pub username: Option<String>,
    pub password: Option<String>,
    /// PEM CA certificate(s) that sign the broker's certificate; required with `mqtts`, which
    /// trusts nothing else (no system roots on the box).
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate and its key, for brokers that authenticate clients by certificate.
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    /// At least 5 s (rumqttc's floor).
    pub keep_alive: Duration,
}

impl MqttConfig {
    /// A configuration with the defaults: prefix `appliance`, client id = device id, no
    /// credentials, no TLS files, keep-alive 30 s.
    pub fn new(url: impl Into<String>, device_id: impl Into<String>) -> MqttConfig {
        MqttConfig {
            url: url.into(),
            topic_prefix: DEFAULT_TOPIC_PREFIX.to_owned(),
            client_id: String::new(),
            device_id: device_id.into(),
            username: None,
            password: None,
            ca_file: None,
            client_cert: None,
            client_key: None,
            keep_alive: Duration::from_secs(30),
        }
    }
}

/// A configuration [`MqttPublisher::new`] cannot use; the message names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("MQTT uplink: {0}")]
pub struct MqttConfigError(String);

/// Where the broker is.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Endpoint {
    tls: bool,
    host: String,
    port: u16,
}

impl Endpoint {
    fn parse(url: &str) -> Result<Endpoint, MqttConfigError> {
        let bad = || {
            MqttConfigError(format!(
                "url `{url}` is not mqtt://host:port or mqtts://host:port"
            ))
        };
        let (tls, rest) = if let Some(rest) = url.strip_prefix("mqtts://") {
            (true, rest)
        } else if let Some(rest) = url.strip_prefix("mqtt://") {
            (false, rest)
        } else {
            return Err(bad());
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let (host, port) = match rest.rsplit_once(':') {
            Some((host, port)) => (host, port.parse().map_err(|_| bad())?),
            None => (rest, if tls { 8883 } else { 1883 }),
        };
        if host.is_empty() || port == 0 || host.contains(['/', '?', '#', '@']) {
            return Err(bad());
        }
        Ok(Endpoint {
            tls,
            host: host.to_owned(),
            port,
        })
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.tls { "mqtts" } else { "mqtt" };
        write!(f, "{scheme}://{}:{}", self.host, self.port)
    }
}

/// The TLS files, read at each connection attempt so that a fixed or renewed file is picked up
/// without a restart, and a missing one shows in the status like any connection failure.
#[derive(Debug, Clone)]
struct TlsFiles {
    ca: PathBuf,
    client: Option<(PathBuf, PathBuf)>,
}

impl TlsFiles {
    fn client_config(&self) -> Result<ClientConfig, String> {
        let mut roots = RootCertStore::empty();
        let (added, _) = roots.add_parsable_certificates(read_certs(&self.ca)?);
        if added == 0 {
            return Err(format!(
                "CA file {} holds no usable certificate",
                self.ca.display()
            ));
        }
        // The provider is named here rather than installed process-wide: nothing else in the
        // daemon has to agree on it.
        let builder =
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .map_err(|e| e.to_string())?
                .with_root_certificates(roots);
        match &self.client {
            None => Ok(builder.with_no_client_auth()),
            Some((cert, key)) => {
                let chain = read_certs(cert)?;
                if chain.is_empty() {
                    return Err(format!(
                        "client certificate file {} holds no certificate",
                        cert.display()
                    ));
                }
                let key = PrivateKeyDer::from_pem_file(key)
                    .map_err(|e| format!("client key file {}: {e}", key.display()))?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| format!("client certificate {}: {e}", cert.display()))
            }
        }
    }
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("certificate file {}: {e}", path.display()))
}

/// An MQTT segment that must not be empty nor hold wildcards or separators of its own.
fn check_topic_part(field: &str, value: &str, may_hold_slash: bool) -> Result<(), MqttConfigError> {
    let forbidden = |c: char| c == '+' || c == '#' || c == '\0' || (!may_hold_slash && c == '/');
    if value.is_empty()
        || value.starts_with('/')
        || value.ends_with('/')
        || value.contains(forbidden)
    {
        return Err(MqttConfigError(format!(
            "{field} `{value}` must be a non-empty MQTT topic level without wildcards{}",
            if may_hold_slash { "" } else { " or `/`" }
        )));
    }
    Ok(())
}

/// The MQTT upstream of a [`crate::sender::Sender`]: events at QoS 1 on
/// `<prefix>/<device id>/events`, presence retained on `…/status`.
pub struct MqttPublisher {
    /// Everything but the TLS transport, which is rebuilt per connection from the files.
    options: MqttOptions,
    endpoint: Endpoint,
    tls: Option<TlsFiles>,
    device_id: String,
    /// `<prefix>/<device id>`.
    device_topic: String,
    events_topic: String,
    status_topic: String,
    connection: Option<Connection>,
    /// Connections made so far: which one a [`Submitted`] batch went on.
    connections: u64,
    /// The established connection, for the side channels.
    shared: SharedLink,
    /// Where the messages the cloud sends us (`<device topic>/cmd/…`) go, and their reader
    /// until the daemon takes it.
    downlink: mpsc::Sender<Downlink>,
    downlink_rx: Option<mpsc::Receiver<Downlink>>,
    /// Where the sender queues delivered events' media, once a
    /// [`crate::media::MediaUploader`] was made for this publisher.
    pub(crate) media: Option<MediaQueue>,
}

/// A message from the cloud on one of our topics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Downlink {
    /// The topic after `<prefix>/<device id>/`, e.g. `cmd/ping`.
    pub suffix: String,
    pub payload: Vec<u8>,
}

/// Downlink messages waiting for the daemon; more are dropped (and logged): the cloud's
/// commands are few, and a flood must not grow memory.
const DOWNLINK_QUEUE: usize = 64;

impl MqttPublisher {
    /// Checks the configuration; connects on the first [`Publisher::publish`].
    pub fn new(config: MqttConfig) -> Result<MqttPublisher, MqttConfigError> {
        let endpoint = Endpoint::parse(&config.url)?;
        check_topic_part("topic_prefix", &config.topic_prefix, true)?;
        check_topic_part("device_id", &config.device_id, false)?;
        if !(5..=u64::from(u16::MAX)).contains(&config.keep_alive.as_secs()) {
            return Err(MqttConfigError(format!(
                "keep_alive {:?} must be between 5 s and 65535 s",
                config.keep_alive
            )));
        }
        let tls = match (
            endpoint.tls,
            config.ca_file,
            config.client_cert,
            config.client_key,
        ) {
            (false, None, None, None) => None,
            (false, ..) => {
                return Err(MqttConfigError(format!(
                    "ca_file, client_cert and client_key need an mqtts:// url, not `{}`",
                    config.url
                )));
            }
            (true, None, ..) => {
                return Err(MqttConfigError(
                    "mqtts needs ca_file: the box trusts no system roots".to_owned(),
                ));
            }
            (true, Some(ca), None, None) => Some(TlsFiles { ca, client: None }),
            (true, Some(ca), Some(cert), Some(key)) => Some(TlsFiles {
                ca,
                client: Some((cert, key)),
            }),
            (true, Some(_), ..) => {
                return Err(MqttConfigError(
                    "client_cert and client_key go together".to_owned(),
                ));
            }
        };
        let client_id = if config.client_id.is_empty() {
            config.device_id.clone()
        } else {
            config.client_id
        };
        let device_topic = format!("{}/{}", config.topic_prefix, config.device_id);
        let events_topic = format!("{device_topic}/events");
        let status_topic = format!("{device_topic}/status");

        let mut options = MqttOptions::new(client_id, endpoint.host.clone(), endpoint.port);
        options
            .set_keep_alive(config.keep_alive)
            // The outbox, not a broker session, holds what is undelivered.
            .set_clean_start(true)
            .set_connection_timeout(CONNECT_TIMEOUT_S)
            .set_outgoing_inflight_upper_limit(MAX_IN_FLIGHT)
            .set_max_packet_size(Some(MAX_INCOMING_PACKET))
            .set_last_will(LastWill::new(
                &status_topic,
                StatusMessage::offline(&config.device_id).to_json(),
                QoS::AtLeastOnce,
                true,
                None,
            ));
        match (config.username, config.password) {
            (Some(user), password) => {
                options.set_credentials(user, password.unwrap_or_default());
            }
            (None, Some(_)) => {
                return Err(MqttConfigError("password needs a username".to_owned()));
            }
            (None, None) => {}
        }
        let (downlink, downlink_rx) = mpsc::channel(DOWNLINK_QUEUE);
        Ok(MqttPublisher {
            options,
            endpoint,
            tls,
            device_id: config.device_id,
            device_topic,
            events_topic,
            status_topic,
            connection: None,
            connections: 0,
            shared: SharedLink::default(),
            downlink,
            downlink_rx: Some(downlink_rx),
            media: None,
        })
    }

    /// The messages the cloud sends to `<prefix>/<device id>/cmd/+` (subscribed at QoS 1 on
    /// every connection); `None` after the first call.
    pub fn take_downlink(&mut self) -> Option<mpsc::Receiver<Downlink>> {
        self.downlink_rx.take()
    }

    /// A handle that publishes on this publisher's connection while it is up; see
    /// [`MqttSideChannel`].
    pub fn side_channel(&self) -> MqttSideChannel {
        MqttSideChannel {
            device_topic: self.device_topic.clone(),
            endpoint: self.endpoint.to_string(),
            shared: self.shared.clone(),
        }
    }

    /// `<prefix>/<device id>/events`.
    pub fn events_topic(&self) -> &str {
        &self.events_topic
    }

    /// `<prefix>/<device id>/status`.
    pub fn status_topic(&self) -> &str {
        &self.status_topic
    }

    /// A new connection: CONNACK, then the retained `online` acknowledged. Waiting for that
    /// PUBACK too means a broker that refuses our topics fails here, before any event goes.
    async fn connect(&self) -> Result<Connection, PublishError> {
        let mut options = self.options.clone();
        if let Some(files) = &self.tls {
            let config = files.client_config().map_err(|e| {
                PublishError::Connection(format!("TLS setup for {}: {e}", self.endpoint))
            })?;
            options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
                Arc::new(config),
            )));
        }
        let incoming = Incoming {
            prefix: format!("{}/", self.device_topic),
            sender: self.downlink.clone(),
        };
        let mut connection = Connection::open(
            options,
            self.endpoint.to_string(),
            self.shared.clone(),
            incoming,
        )
        .await?;
        let online = StatusMessage::online(&self.device_id, Timestamp::now()).to_json();
        let status = connection.enqueue(&self.status_topic, true, online).await?;
        let refused = connection.acked(status + 1).await?;
        if let Some((_, reason)) = refused.iter().find(|(ordinal, _)| *ordinal == status) {
            return Err(PublishError::Rejected(format!(
                "{} refused the status message on {}: {reason}",
                self.endpoint, self.status_topic
            )));
        }
        // A clean start forgets subscriptions: subscribe on every connection. Commands sent
        // while the box was away are the cloud's to send again (each has an expiry).
        let commands = format!("{}/cmd/+", self.device_topic);
        connection
            .client
            .subscribe(&commands, QoS::AtLeastOnce)
            .await
            .map_err(|e| PublishError::Connection(format!("subscribing to {commands}: {e}")))?;
        tracing::info!(broker = %self.endpoint, topic = %self.events_topic, "MQTT uplink connected");
        // Only now: side-channel messages go after the `online` presence, never before it.
        connection.share();
        Ok(connection)
    }

    /// Puts `batch` on the connection (made first if there is none) without waiting for its
    /// PUBACKs. Waits only for room among the publishes queued towards the broker: with several
    /// batches submitted, that is back-pressure from rumqttc's window ([`MAX_IN_FLIGHT`], or the
    /// broker's receive maximum), which the driver task frees as PUBACKs come in.
    async fn send(&mut self, batch: &[Outgoing]) -> Result<Submitted, PublishError> {
        if self.connection.as_ref().is_none_or(Connection::failed) {
            // Gone before a new one opens: two live clients with one id would kick each other.
            self.connection = None;
            self.connection = Some(self.connect().await?);
            self.connections += 1;
        }
        let connection = self.connection.as_mut().expect("connected just above");
        // Ascending, with gaps where the media uploader's files went in between.
        let mut ordinals = Vec::with_capacity(batch.len());
        for message in batch {
            let payload = message.payload.clone();
            ordinals.push(
                connection
                    .enqueue(&self.events_topic, false, payload)
                    .await?,
            );
        }
        Ok(Submitted {
            connection: self.connections,
            ordinals,
            seqs: batch.iter().map(|message| message.seq).collect(),
        })
    }

    /// Waits for the PUBACKs of a batch [`MqttPublisher::send`] put on the connection.
    async fn confirm(&mut self, submitted: Submitted) -> Result<(), PublishError> {
        let (Some(&last), Some(&first_seq)) = (submitted.ordinals.last(), submitted.seqs.first())
        else {
            return Ok(());
        };
        let connection = match self.connection.as_mut() {
            Some(connection) if self.connections == submitted.connection => connection,
            // Its connection failed since (an error settling an earlier batch, say): whatever
            // rumqttc held of the batch went with it.
            _ => {
                return Err(PublishError::Connection(format!(
                    "{}: the connection the batch from seq {first_seq} went on is gone",
                    self.endpoint
                )));
            }
        };
        let refused = connection.acked(last + 1).await?;
        // (index in the batch, reason) of our refused messages; a refused media file is the
        // uploader's business.
        let ordinals = &submitted.ordinals;
        let refused: Vec<_> = refused
            .iter()
            .filter_map(|(ordinal, reason)| Some((ordinals.binary_search(ordinal).ok()?, reason)))
            .collect();
        match refused.first() {
            None => Ok(()),
            Some((index, reason)) => {
                let seq = submitted.seqs[*index];
                Err(PublishError::Rejected(format!(
                    "{} refused {} of {} events on {} (seq {seq}: {reason}; batch from seq {first_seq})",
                    self.endpoint,
                    refused.len(),
                    submitted.seqs.len(),
                    self.events_topic,
                )))
            }
        }
    }

    /// Whatever rumqttc still holds of a failed batch goes with the connection: the sender sends
    /// it again, from the outbox, on a new one. Dropping it closes the socket without
    /// DISCONNECT, so the broker publishes our last will (`offline`).
    fn check<T>(&mut self, result: Result<T, PublishError>) -> Result<T, PublishError> {
        if result.is_err() {
            self.connection = None;
        }
        result
    }
}

/// A batch on one connection, waiting for its PUBACKs: the MQTT [`Ticket`].
#[derive(Debug)]
pub(crate) struct Submitted {
    /// Which of the publisher's connections it went on.
    connection: u64,
    /// The connection's ordinals of its messages, ascending.
    ordinals: Vec<u64>,
    /// The outbox sequences of its messages, for errors.
    seqs: Vec<u64>,
}

impl Publisher for MqttPublisher {
    async fn publish(&mut self, batch: &[Outgoing]) -> Result<(), PublishError> {
        let result = match self.send(batch).await {
            Ok(submitted) => self.confirm(submitted).await,
            Err(error) => Err(error),
        };
        self.check(result)
    }

    async fn submit(&mut self, batch: &[Outgoing]) -> Result<Ticket, PublishError> {
        let result = self.send(batch).await;
        self.check(result)
            .map(|submitted| Ticket(TicketKind::Mqtt(submitted)))
    }

    async fn settle(&mut self, ticket: Ticket) -> Result<(), PublishError> {
        let result = match ticket.0 {
            TicketKind::Mqtt(submitted) => self.confirm(submitted).await,
            TicketKind::Deferred(batch) => return self.publish(&batch).await,
        };
        self.check(result)
    }

    fn name(&self) -> &'static str {
        "mqtt"
    }

    fn media_queue(&self) -> Option<&MediaQueue> {
        self.media.as_ref()
    }
}

/// Publishes telemetry and command results on an [`MqttPublisher`]'s connection, at QoS 0:
/// cheap to clone, usable from any task, never queued while there is no connection.
#[derive(Debug, Clone)]
pub struct MqttSideChannel {
    device_topic: String,
    endpoint: String,
    shared: SharedLink,
}

impl MqttSideChannel {
    /// `<prefix>/<device id>/<suffix>`.
    pub fn topic(&self, suffix: &str) -> String {
        format!("{}/{suffix}", self.device_topic)
    }

    /// Publishes `payload` (JSON) on `<prefix>/<device id>/<suffix>` (`telemetry`, `cmd_result`)
    /// at QoS 0, not retained.
    ///
    /// Without an established connection it fails at once with [`PublishError::Connection`]:
    /// the message is dropped, not kept for later. Otherwise it waits for room among the events
    /// queued on the connection, at most a few seconds ([`PublishError::Timeout`]), and returns
    /// once the message is handed to the connection: QoS 0 has no acknowledgement, so `Ok` does
    /// not mean the broker got it. A suffix with wildcards is [`PublishError::Rejected`].
    pub async fn publish(&self, suffix: &str, payload: Vec<u8>) -> Result<(), PublishError> {
        let link = self.link(suffix)?;
        let mut state = link.state.clone();
        let send = link.client.publish_with_properties(
            self.topic(suffix),
            QoS::AtMostOnce,
            false,
            payload,
            json_properties(),
        );
        tokio::select! {
            biased;
            sent = send => sent.map_err(|_| self.lost(&link)),
            // The event loop stopped with the request channel full: it will never take it.
            _ = state.wait_for(|s| s.failed.is_some()) => Err(self.lost(&link)),
            () = tokio::time::sleep(SIDE_CHANNEL_WAIT) => {
                Err(PublishError::Timeout(SIDE_CHANNEL_WAIT))
            }
        }
    }

    /// Publishes `payload` on `<prefix>/<device id>/<suffix>` at QoS 1, not retained, and
    /// returns once the broker acknowledged it; for the media uploader.
    ///
    /// Like [`MqttSideChannel::publish`] it fails at once without a connection and never
    /// queues; a connection lost before the PUBACK fails it too. A message larger than the
    /// broker takes is [`Acknowledged::TooLarge`], never sent: rumqttc would end the
    /// connection over it.
    pub(crate) async fn publish_acknowledged(
        &self,
        suffix: &str,
        payload: Vec<u8>,
        properties: PublishProperties,
        ack_timeout: Duration,
    ) -> Result<Acknowledged, PublishError> {
        let link = self.link(suffix)?;
        let mut packet = Publish::new(
            self.topic(suffix),
            QoS::AtLeastOnce,
            payload,
            Some(properties),
        );
        // Sized as it goes out: with the packet id that QoS 1 adds.
        packet.pkid = 1;
        let max = link.state.borrow().max_packet_size;
        if let Some(max) = max
            && packet.size() > max as usize
        {
            return Ok(Acknowledged::TooLarge(format!(
                "{} bytes as an MQTT packet; {} takes at most {max}",
                packet.size(),
                self.endpoint
            )));
        }
        // In a task of its own, which ends with the connection at the latest: a caller that gave
        // up halfway could leave the message in the request channel without its ordinal,
        // shifting every later one, and an event batch would take another message's PUBACK for
        // its own.
        let Link {
            client, ordinals, ..
        } = link.clone();
        let topic = self.topic(suffix);
        let queued = tokio::spawn(async move {
            let mut next = ordinals.lock_owned().await;
            let properties = packet.properties.unwrap_or_default();
            client
                .publish_with_properties(topic, QoS::AtLeastOnce, false, packet.payload, properties)
                .await
                .ok()?;
            *next += 1;
            Some(*next - 1)
        });
        let ordinal = queued
            .await
            .ok()
            .flatten()
            .ok_or_else(|| self.lost(&link))?;
        let mut state = link.state.clone();
        let wait = state.wait_for(|s| s.is_acked(ordinal) || s.failed.is_some());
        match tokio::time::timeout(ack_timeout, wait).await {
            Err(_) => Err(PublishError::Timeout(ack_timeout)),
            Ok(Err(_)) => Err(self.lost(&link)),
            Ok(Ok(s)) if s.is_acked(ordinal) => {
                match s.refused.iter().find(|(refused, _)| *refused == ordinal) {
                    Some((_, reason)) => Err(PublishError::Rejected(format!(
                        "{} refused the message on {}: {reason}",
                        self.endpoint,
                        self.topic(suffix)
                    ))),
                    None => Ok(Acknowledged::Yes),
                }
            }
            Ok(Ok(s)) if s.too_large == Some(ordinal) => Ok(Acknowledged::TooLarge(format!(
                "{} refused it as too large",
                self.endpoint
            ))),
            Ok(Ok(s)) => Err(PublishError::Connection(
                s.failed.clone().unwrap_or_default(),
            )),
        }
    }

    /// Returns once the publisher has a connection (at once if it has one now).
    pub(crate) async fn connected(&self) {
        let mut links = self.shared.0.subscribe();
        // Never closed: this handle holds the sending side too.
        let _ = links
            .wait_for(|link| {
                link.as_ref()
                    .is_some_and(|link| link.state.borrow().failed.is_none())
            })
            .await;
    }

    /// The established connection, for a message on `suffix`.
    fn link(&self, suffix: &str) -> Result<Link, PublishError> {
        check_topic_part("topic suffix", suffix, true)
            .map_err(|e| PublishError::Rejected(e.to_string()))?;
        self.shared
            .get()
            .filter(|link| link.state.borrow().failed.is_none())
            .ok_or_else(|| PublishError::Connection(format!("{}: not connected", self.endpoint)))
    }

    fn lost(&self, link: &Link) -> PublishError {
        let why = link.state.borrow().failed.clone();
        PublishError::Connection(
            why.unwrap_or_else(|| format!("{}: connection closed", self.endpoint)),
        )
    }
}

/// How an acknowledged side-channel publish ended, short of an error worth a retry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Acknowledged {
    /// The broker took it.
    Yes,
    /// The broker will never take a message this large: why, in words.
    TooLarge(String),
}

/// The connection a publisher has established, if any, shared with its side channels. A watch,
/// so that the media uploader can wait for the next connection instead of polling for it.
#[derive(Debug, Clone)]
struct SharedLink(Arc<watch::Sender<Option<Link>>>);

impl Default for SharedLink {
    fn default() -> SharedLink {
        SharedLink(Arc::new(watch::channel(None).0))
    }
}

/// What a side channel needs of a connection: its client, the order of its QoS 1 messages and
/// whether it still stands.
#[derive(Debug, Clone)]
struct Link {
    client: AsyncClient,
    ordinals: Ordinals,
    state: watch::Receiver<LinkState>,
}

/// The next ordinal of a QoS 1 publish on one connection. Held from before a publish goes into
/// the request channel until it is there, so that ordinals follow the channel's order whichever
/// task publishes; see the module documentation.
type Ordinals = Arc<tokio::sync::Mutex<u64>>;

impl SharedLink {
    fn get(&self) -> Option<Link> {
        self.0.borrow().clone()
    }

    fn set(&self, link: Option<Link>) {
        self.0.send_replace(link);
    }
}

/// What the event loop's driver reports about one connection.
#[derive(Debug, Default)]
struct LinkState {
    /// CONNACK received.
    connected: bool,
    /// The broker's Maximum Packet Size, from its CONNACK: rumqttc ends the connection rather
    /// than send a larger packet.
    max_packet_size: Option<u32>,
    /// Every QoS 1 publish with an ordinal below this got its PUBACK, refused ones included.
    acked_below: u64,
    /// PUBACKs of later ordinals: a broker should answer in order, but need not.
    acked_ahead: BTreeSet<u64>,
    /// (ordinal, reason) of each publish the broker refused.
    refused: Vec<(u64, String)>,
    /// The ordinal of the publish the broker refused as too large by a PUBACK rumqttc cannot
    /// read, which ended the connection.
    too_large: Option<u64>,
    /// Why the connection ended; the driver has stopped.
    failed: Option<String>,
}

impl LinkState {
    fn is_acked(&self, ordinal: u64) -> bool {
        ordinal < self.acked_below || self.acked_ahead.contains(&ordinal)
    }

    fn ack(&mut self, ordinal: u64) {
        self.acked_ahead.insert(ordinal);
        while self.acked_ahead.remove(&self.acked_below) {
            self.acked_below += 1;
        }
    }
}

/// One broker connection: a fresh rumqttc client and event loop, polled by a driver task.
struct Connection {
    client: AsyncClient,
    state: watch::Receiver<LinkState>,
    driver: JoinHandle<()>,
    ordinals: Ordinals,
    /// Where [`Connection::share`] puts it for the side channels.
    shared: SharedLink,
}

impl Drop for Connection {
    fn drop(&mut self) {
        // Withdrawn first, so that no side channel hands a message to a closing connection.
        // Whatever drops it (a failure, the publisher going), it is its publisher's only one.
        self.shared.set(None);
        // The event loop owns the socket: stopping its driver closes the connection.
        self.driver.abort();
    }
}

impl Connection {
    async fn open(
        options: MqttOptions,
        endpoint: String,
        shared: SharedLink,
        incoming: Incoming,
    ) -> Result<Connection, PublishError> {
        let (client, event_loop) = AsyncClient::new(options, REQUEST_CHANNEL);
        let (report, state) = watch::channel(LinkState::default());
        let driver = tokio::spawn(drive(event_loop, report, endpoint, incoming));
        let mut connection = Connection {
            client,
            state,
            driver,
            ordinals: Ordinals::default(),
            shared,
        };
        // The connect attempt is bounded by the event loop's own connection timeout.
        let outcome = connection
            .state
            .wait_for(|s| s.connected || s.failed.is_some())
            .await
            .map(|s| s.failed.clone());
        match outcome {
            Ok(None) => Ok(connection),
            Ok(Some(why)) => Err(PublishError::Connection(why)),
            Err(_) => Err(connection.lost()),
        }
    }

    /// Lets the side channels publish on this connection until it is dropped.
    fn share(&self) {
        self.shared.set(Some(Link {
            client: self.client.clone(),
            ordinals: self.ordinals.clone(),
            state: self.state.clone(),
        }));
    }

    fn failed(&self) -> bool {
        self.state.borrow().failed.is_some()
    }

    /// The error for a connection whose driver has stopped.
    fn lost(&self) -> PublishError {
        PublishError::Connection(
            self.state
                .borrow()
                .failed
                .clone()
                .unwrap_or_else(|| "the MQTT event loop stopped".to_owned()),
        )
    }

    /// Queues one QoS 1 publish; returns its ordinal on this connection. Never abandoned halfway
    /// while the connection lives: the sender drops a step only with its publisher, and so with
    /// this connection.
    async fn enqueue(
        &self,
        topic: &str,
        retain: bool,
        payload: Vec<u8>,
    ) -> Result<u64, PublishError> {
        let mut next = self.ordinals.lock().await;
        self.client
            .publish_with_properties(topic, QoS::AtLeastOnce, retain, payload, json_properties())
            .await
            .map_err(|_| self.lost())?;
        *next += 1;
        Ok(*next - 1)
    }

    /// Waits until every publish of this connection with an ordinal below `end` is
    /// acknowledged; returns the refusals so far.
    async fn acked(&mut self, end: u64) -> Result<Vec<(u64, String)>, PublishError> {
        let wait = self
            .state
            .wait_for(|s| s.acked_below >= end || s.failed.is_some());
        let outcome = match tokio::time::timeout(ACK_TIMEOUT, wait).await {
            Err(_) => return Err(PublishError::Timeout(ACK_TIMEOUT)),
            Ok(outcome) => outcome.map(|s| {
                if s.acked_below >= end {
                    Ok(s.refused.clone())
                } else {
                    Err(s.failed.clone())
                }
            }),
        };
        match outcome {
            Ok(Ok(refused)) => Ok(refused),
            Ok(Err(Some(why))) => Err(PublishError::Connection(why)),
            Ok(Err(None)) | Err(_) => Err(self.lost()),
        }
    }
}

/// Every message we publish is UTF-8 JSON.
fn json_properties() -> PublishProperties {
    PublishProperties {
        payload_format_indicator: Some(1),
        content_type: Some("application/json".to_owned()),
        ..PublishProperties::default()
    }
}

/// Where the driver hands the publishes the broker sends us.
struct Incoming {
    /// `<prefix>/<device id>/`: stripped from the topic.
    prefix: String,
    sender: mpsc::Sender<Downlink>,
}

/// Polls the event loop until the connection fails, reporting CONNACK, PUBACKs and the failure.
/// It never polls after an error: that would reconnect at once, and reconnects are the sender's
/// to pace.
async fn drive(
    mut event_loop: EventLoop,
    report: watch::Sender<LinkState>,
    endpoint: String,
    incoming: Incoming,
) {
    // pkid → ordinal of the publish in flight under it.
    let mut in_flight: HashMap<u16, u64> = HashMap::new();
    let mut sent = 0u64;
    loop {
        match event_loop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => report.send_modify(|s| {
                s.connected = true;
                s.max_packet_size = ack.properties.and_then(|p| p.max_packet_size);
            }),
            // pkid 0: a side-channel message at QoS 0, which gets no PUBACK.
            Ok(Event::Outgoing(MqttOutgoing::Publish(pkid))) if pkid != 0 => {
                in_flight.insert(pkid, sent);
                sent += 1;
            }
            Ok(Event::Incoming(Packet::PubAck(ack))) => {
                // Always in flight: rumqttc ends the connection over a PUBACK for any other pkid.
                let Some(ordinal) = in_flight.remove(&ack.pkid) else {
                    continue;
                };
                // "No matching subscribers" is still accepted: the broker has the message.
                let refused = !matches!(
                    ack.reason,
                    PubAckReason::Success | PubAckReason::NoMatchingSubscribers
                );
                report.send_modify(|s| {
                    s.ack(ordinal);
                    if refused {
                        let reason = match ack.properties.and_then(|p| p.reason_string) {
                            Some(text) => format!("{:?} ({text})", ack.reason),
                            None => format!("{:?}", ack.reason),
                        };
                        s.refused.push((ordinal, reason));
                    }
                });
            }
            Ok(Event::Incoming(Packet::Publish(publish))) => {
                let topic = String::from_utf8_lossy(&publish.topic);
                let Some(suffix) = topic.strip_prefix(&incoming.prefix) else {
                    continue;
                };
                let message = Downlink {
                    suffix: suffix.to_owned(),
                    payload: publish.payload.to_vec(),
                };
                if incoming.sender.try_send(message).is_err() {
                    tracing::warn!(%topic, "dropping a downlink message: the queue is full");
                }
            }
            Ok(_) => {}
            Err(error) => {
                let why = describe(&error, &endpoint);
                tracing::debug!(%error, "MQTT event loop stopped");
                report.send_modify(|s| {
                    if refused_as_too_large(&error) {
                        // Brokers answer QoS 1 messages in order: the refused one is the
                        // oldest not acknowledged.
                        s.too_large = Some(s.acked_below);
                    }
                    s.failed = Some(why);
                });
                return;
            }
        }
    }
}

/// Whether the connection ended on a PUBACK with reason 0x95 (packet too large): mosquitto's
/// answer to a message over its `message_size_limit`, which MQTT 5 does not list for PUBACK and
/// rumqttc therefore cannot read.
fn refused_as_too_large(error: &ConnectionError) -> bool {
    matches!(
        error,
        ConnectionError::MqttState(StateError::Deserialization(
            rumqttc::v5::mqttbytes::Error::InvalidConnectReturnCode(0x95)
        ))
    )
}

/// A connection failure in words for the status: which broker, and refused / credentials /
/// TLS / lost.
fn describe(error: &ConnectionError, endpoint: &str) -> String {
    if refused_as_too_large(error) {
        return format!(
            "{endpoint} refused a message as too large (PUBACK reason 0x95) and the connection ended"
        );
    }
    match error {
        ConnectionError::ConnectionRefused(code)
        | ConnectionError::MqttState(StateError::ConnFail { reason: code }) => {
            format!(
                "{endpoint} refused the connection: {}",
                connack_reason(*code)
            )
        }
        ConnectionError::Tls(e) => format!("TLS handshake with {endpoint} failed: {e}"),
        ConnectionError::Io(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            format!("{endpoint}: connection refused (is the broker running?)")
        }
        ConnectionError::Io(e) => format!("{endpoint}: {e}"),
        ConnectionError::Timeout(_) => {
            format!("{endpoint}: no CONNACK within {CONNECT_TIMEOUT_S} s")
        }
        ConnectionError::MqttState(StateError::ServerDisconnect {
            reason_code,
            reason_string,
        }) => format!(
            "{endpoint} disconnected us: {reason_code:?}{}",
            reason_string
                .as_deref()
                .map(|s| format!(" ({s})"))
                .unwrap_or_default()
        ),
        ConnectionError::MqttState(StateError::Io(e)) => {
            format!("connection to {endpoint} lost: {e}")
        }
        ConnectionError::MqttState(StateError::ConnectionAborted) => {
            format!("connection to {endpoint} lost: closed by the broker")
        }
        other => format!("{endpoint}: {other}"),
    }
}

fn connack_reason(code: ConnectReturnCode) -> String {
    match code {
        ConnectReturnCode::BadUserNamePassword => "bad user name or password".to_owned(),
        // What mosquitto answers to a wrong password too: it does not say which part is wrong.
        ConnectReturnCode::NotAuthorized => {
            "not authorized (check the user name, password or client certificate)".to_owned()
        }
        ConnectReturnCode::ClientIdentifierNotValid | ConnectReturnCode::BadClientId => {
            "client id not accepted".to_owned()
        }
        ConnectReturnCode::Banned => "banned".to_owned(),
        ConnectReturnCode::ServerUnavailable
        | ConnectReturnCode::ServiceUnavailable
        | ConnectReturnCode::ServerBusy => "broker unavailable".to_owned(),
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acknowledgements_count_by_ordinal_in_any_order() {
        let mut state = LinkState::default();
        // A broker that answers 1 and 3 before 0: nothing below 2 is acknowledged yet.
        state.ack(1);
        state.ack(3);
        assert_eq!(state.acked_below, 0);
        assert!(state.is_acked(1) && state.is_acked(3));
        assert!(!state.is_acked(0) && !state.is_acked(2));
        state.ack(0);
        assert_eq!(state.acked_below, 2);
        state.ack(2);
        assert_eq!(state.acked_below, 4);
        assert!(state.acked_ahead.is_empty());
        assert!((0..4).all(|ordinal| state.is_acked(ordinal)) && !state.is_acked(4));
    }

    #[test]
    fn urls() {
        let parse = |url: &str| Endpoint::parse(url).map(|e| e.to_string());
        assert_eq!(parse("mqtt://broker:1884").unwrap(), "mqtt://broker:1884");
        assert_eq!(
            parse("mqtts://10.0.0.1:8884/").unwrap(),
            "mqtts://10.0.0.1:8884"
        );
        assert_eq!(parse("mqtt://broker").unwrap(), "mqtt://broker:1883");
        assert_eq!(parse("mqtts://broker").unwrap(), "mqtts://broker:8883");
        for bad in [
            "tcp://broker:1883",
            "mqtt://:1883",
            "mqtt://broker:0",
            "mqtt://broker:99999",
            "mqtt://user@broker:1883",
            "mqtt://broker:1883/path",
            "broker:1883",
        ] {
            assert!(parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn topics_from_prefix_and_device_id() {
        let mut config = MqttConfig::new("mqtt://127.0.0.1:1883", "box-1");
        config.topic_prefix = "acme/site-7".into();
        let publisher = MqttPublisher::new(config).unwrap();
        assert_eq!(publisher.events_topic(), "acme/site-7/box-1/events");
        assert_eq!(publisher.status_topic(), "acme/site-7/box-1/status");
        assert_eq!(publisher.name(), "mqtt");
    }

    #[tokio::test]
    async fn the_side_channel_refuses_at_once_without_a_connection() {
        let mut config = MqttConfig::new("mqtt://127.0.0.1:1883", "box-1");
        config.topic_prefix = "acme".into();
        let side = MqttPublisher::new(config).unwrap().side_channel();
        assert_eq!(side.topic("telemetry"), "acme/box-1/telemetry");
        // Never connected: no broker is asked, nothing is kept.
        let error = side.publish("telemetry", b"{}".to_vec()).await.unwrap_err();
        assert!(
            matches!(&error, PublishError::Connection(why) if why.contains("not connected")),
            "{error}"
        );
        for bad in ["", "a/+", "#", "/telemetry"] {
            let error = side.publish(bad, b"{}".to_vec()).await.unwrap_err();
            assert!(
                matches!(error, PublishError::Rejected(_)),
                "{bad:?}: {error}"
            );
        }
    }

    #[test]
    fn configurations_that_cannot_work_are_refused_up_front() {
        let base = || MqttConfig::new("mqtts://broker:8883", "box-1");
        let refused = |config: MqttConfig| MqttPublisher::new(config).err().map(|e| e.to_string());
        assert!(refused(base()).unwrap().contains("ca_file"));
        let mut c = base();
        c.ca_file = Some("/ca.pem".into());
        assert_eq!(refused(c.clone()), None);
        c.client_cert = Some("/cert.pem".into());
        assert!(refused(c.clone()).unwrap().contains("go together"));
        c.client_key = Some("/key.pem".into());
        assert_eq!(refused(c), None);

        let mut c = MqttConfig::new("mqtt://broker:1883", "box-1");
        c.ca_file = Some("/ca.pem".into());
        assert!(refused(c).unwrap().contains("mqtts://"));
        for (prefix, device) in [
            ("", "box"),
            ("a/+", "box"),
            ("/a", "box"),
            ("a", "b/c"),
            ("a", "#"),
        ] {
            let mut c = MqttConfig::new("mqtt://broker", device);
            c.topic_prefix = prefix.into();
            assert!(refused(c).is_some(), "{prefix:?} {device:?} accepted");
        }
        let mut c = MqttConfig::new("mqtt://broker", "box");
        c.keep_alive = Duration::from_secs(1);
        assert!(refused(c).unwrap().contains("keep_alive"));
        let mut c = MqttConfig::new("mqtt://broker", "box");
        c.password = Some("secret".into());
        assert!(refused(c).unwrap().contains("username"));
    }

    #[test]
    fn tls_file_problems_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = TlsFiles {
            ca: dir.path().join("missing.pem"),
            client: None,
        };
        let error = missing.client_config().unwrap_err();
        assert!(error.contains("missing.pem"), "{error}");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let error = TlsFiles {
            ca: empty,
            client: None,
        }
        .client_config()
        .unwrap_err();
        assert!(error.contains("no usable certificate"), "{error}");
    }
}
