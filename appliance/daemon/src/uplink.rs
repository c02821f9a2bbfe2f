//! Wires the uplink (`appliance-uplink`) into the daemon: the box's id upstream, one sender per
//! configured upstream (`[uplink.mqtt]`, `[uplink.kafka]`), pruning the outbox entries every
//! upstream has delivered, their status for health, metrics and the API, telemetry every
//! `uplink.telemetry_interval`, the cloud's commands over MQTT (`commands.rs` runs them), and the
//! media of the events delivered over MQTT, sent over MQTT or, with `[uplink.s3]`, to a bucket.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use appliance_config::{KafkaUplinkConfig, MqttUplinkConfig, S3UplinkConfig, UplinkConfig};
use appliance_model::Timestamp;
use appliance_store::EventStore;
use appliance_uplink::Publisher;
use appliance_uplink::kafka::{
    KafkaConfig, KafkaPublisher, KafkaSecurity, KafkaTls, SaslMechanism,
};
use appliance_uplink::media::{MediaOptions, MediaStatus, MediaStatusHandle, MediaUploader};
use appliance_uplink::mqtt::{Downlink, MqttConfig, MqttPublisher, MqttSideChannel};
use appliance_uplink::s3::{S3Client, S3Config};
use appliance_uplink::sender::{Sender, SenderOptions, StatusHandle, UplinkStatus};
use appliance_uplink::telemetry::{CameraCounts, Collector, Telemetry};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::commands::Commands;
use crate::sip::SipHandle;

/// How often delivered outbox entries are pruned and the metrics refreshed.
const HOUSEKEEPING: Duration = Duration::from_secs(10);
/// How long a Kafka message may wait for its acknowledgement before the batch is retried.
const KAFKA_MESSAGE_TIMEOUT: Duration = Duration::from_secs(30);

/// The running upstreams and the latest telemetry.
#[derive(Clone, Default)]
pub struct Uplinks {
    statuses: Arc<Vec<StatusHandle>>,
    /// The media uploader's status (with MQTT only; to S3 with `[uplink.s3]`).
    media: Option<MediaStatusHandle>,
    telemetry: Arc<Mutex<Option<Telemetry>>>,
}

impl Uplinks {
    pub fn statuses(&self) -> Vec<UplinkStatus> {
        self.statuses.iter().map(StatusHandle::snapshot).collect()
    }

    pub fn media(&self) -> Option<MediaStatus> {
        self.media.as_ref().map(MediaStatusHandle::snapshot)
    }

    /// The last telemetry snapshot (taken every `uplink.telemetry_interval`, the first at start).
    pub fn telemetry(&self) -> Option<Telemetry> {
        self.telemetry
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// What the uplink needs from the rest of the daemon.
pub struct Context<'a> {
    pub device_id: &'a str,
    pub store: &'a EventStore,
    pub sip: &'a SipHandle,
    pub vision: &'a crate::vision::Vision,
    pub updates: &'a crate::update::Updates,
    pub exits: &'a crate::lifecycle::ExitRequests,
    /// The configuration without the cloud's settings (`config.set` checks against it).
    pub base_config: Arc<appliance_config::Config>,
    pub data_dir: PathBuf,
    pub started: std::time::Instant,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamLabel {
    upstream: String,
}

#[derive(Default)]
struct UplinkMetrics {
    delivered: Family<UpstreamLabel, Gauge>,
    depth: Family<UpstreamLabel, Gauge>,
    connected: Family<UpstreamLabel, Gauge>,
    oldest_pending_seconds: Family<UpstreamLabel, Gauge>,
}

/// Starts a sender per configured upstream, telemetry and (with MQTT) the command loop; a
/// configuration the upstream's client refuses is an error naming the table.
pub fn start(
    config: &UplinkConfig,
    context: Context<'_>,
    registry: &mut Registry,
    shutdown: &CancellationToken,
) -> anyhow::Result<Uplinks> {
    let Context {
        device_id,
        store,
        sip,
        vision,
        updates,
        exits,
        base_config,
        data_dir,
        started,
    } = context;
    let options = SenderOptions {
        batch: config.batch,
        ..SenderOptions::default()
    };
    let mut statuses = Vec::new();
    let mut side_channel = None;
    let mut media = None;
    if let Some(mqtt) = &config.mqtt {
        let mut publisher =
            MqttPublisher::new(mqtt_config(mqtt, device_id)).context("[uplink.mqtt]")?;
        // Before the publisher goes to its sender: the uploader is what makes it queue media.
        let media_options = MediaOptions {
            max_bytes: mqtt.media_max_bytes.bytes(),
            ..MediaOptions::default()
        };
        let mut uploader =
            MediaUploader::new(store.clone(), &mut publisher, device_id, media_options);
        // The config crate admits `[uplink.s3]` only with `[uplink.mqtt]`: the references to
        // the uploaded objects go on the events' MQTT connection.
        if let Some(s3) = &config.s3 {
            let client = S3Client::new(s3_config(s3, device_id)).context("[uplink.s3]")?;
            uploader = uploader.to_s3(client);
        }
        media = Some(uploader.status());
        tokio::spawn(uploader.run(shutdown.clone()));
        let side = publisher.side_channel();
        let downlink = publisher
            .take_downlink()
            .expect("a new publisher has its downlink");
        let commands = Commands::new(
            store.clone(),
            sip.clone(),
            vision.clone(),
            updates.clone(),
            exits.clone(),
            base_config,
            started,
        );
        tokio::spawn(run_commands(
            commands,
            downlink,
            side.clone(),
            shutdown.clone(),
        ));
        side_channel = Some(side);
        statuses.push(spawn(publisher, device_id, store, &options, shutdown)?);
    }
    if let Some(kafka) = &config.kafka {
        let publisher =
            KafkaPublisher::new(kafka_config(kafka, device_id)?).context("[uplink.kafka]")?;
        statuses.push(spawn(publisher, device_id, store, &options, shutdown)?);
    }
    let uplinks = Uplinks {
        statuses: Arc::new(statuses),
        media,
        telemetry: Arc::default(),
    };
    tokio::spawn(telemetry(
        uplinks.clone(),
        TelemetrySource {
            device_id: device_id.to_owned(),
            sip: sip.clone(),
            data_dir,
            side_channel,
        },
        config.telemetry_interval.get(),
        shutdown.clone(),
    ));
    let metrics = Arc::new(UplinkMetrics::default());
    let sub = registry.sub_registry_with_prefix("appliance_uplink");
    sub.register(
        "delivered",
        "Events the upstream's broker acknowledged since start",
        metrics.delivered.clone(),
    );
    sub.register(
        "depth",
        "Outbox entries waiting for the upstream (counted up to 10,000)",
        metrics.depth.clone(),
    );
    sub.register(
        "connected",
        "1 while the upstream's last attempt reached its broker",
        metrics.connected.clone(),
    );
    sub.register(
        "oldest_pending_seconds",
        "Age of the oldest event the upstream has not delivered",
        metrics.oldest_pending_seconds.clone(),
    );
    if !uplinks.statuses.is_empty() {
        tokio::spawn(housekeeping(
            uplinks.clone(),
            store.clone(),
            metrics,
            shutdown.clone(),
        ));
    }
    Ok(uplinks)
}

/// Runs each command the cloud sends and answers on `…/cmd_result`.
async fn run_commands(
    commands: Commands,
    mut downlink: mpsc::Receiver<Downlink>,
    side: MqttSideChannel,
    shutdown: CancellationToken,
) {
    commands.prune().await;
    loop {
        let message = tokio::select! {
            m = downlink.recv() => m,
            _ = shutdown.cancelled() => return,
        };
        let Some(message) = message else { return };
        let Some(kind) = message.suffix.strip_prefix("cmd/") else {
            continue;
        };
        let result = commands.handle(kind, &message.payload).await;
        // Not durable: the result is stored, and a command sent again gets it again.
        if let Err(e) = side.publish("cmd_result", result.to_json()).await {
            tracing::warn!(command = ?result.id, error = %e, "cannot send a command result");
        }
        commands.after_result().await;
    }
}

/// Where a telemetry snapshot's parts come from.
struct TelemetrySource {
    device_id: String,
    sip: SipHandle,
    data_dir: PathBuf,
    side_channel: Option<MqttSideChannel>,
}

/// Takes a snapshot every `interval` (the first at once), keeps it for the API and sends it on
/// `…/telemetry` when MQTT is configured.
async fn telemetry(
    uplinks: Uplinks,
    source: TelemetrySource,
    interval: Duration,
    shutdown: CancellationToken,
) {
    let mut collector = Collector::system();
    let mut ticker = tokio::time::interval(interval);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        // Reading sysfs blocks (some hwmon sensors take milliseconds).
        let data_dir = source.data_dir.clone();
        let Ok((back, system)) = tokio::task::spawn_blocking(move || {
            let sample = collector.sample(&data_dir);
            (collector, sample)
        })
        .await
        else {
            return;
        };
        collector = back;
        let devices = source.sip.devices();
        let online = devices.iter().filter(|d| d.online).count();
        let cameras = CameraCounts {
            online: u32::try_from(online).unwrap_or(u32::MAX),
            offline: u32::try_from(devices.len() - online).unwrap_or(u32::MAX),
        };
        let summaries = uplinks.statuses().iter().map(Into::into).collect();
        let snapshot = Telemetry::new(
            source.device_id.clone(),
            Timestamp::now(),
            system,
            cameras,
            summaries,
        );
        if let Some(side) = &source.side_channel
            && let Err(e) = side.publish("telemetry", snapshot.to_json()).await
        {
            tracing::debug!(error = %e, "telemetry not sent");
        }
        *uplinks.telemetry.lock().unwrap_or_else(|p| p.into_inner()) = Some(snapshot);
    }
}

fn spawn<P: Publisher>(
    publisher: P,
    device_id: &str,
    store: &EventStore,
    options: &SenderOptions,
    shutdown: &CancellationToken,
) -> anyhow::Result<StatusHandle> {
    let name = publisher.name();
    let sender = Sender::new(store.clone(), publisher, device_id, options.clone())
        .with_context(|| format!("cannot start the {name} uplink"))?;
    let status = sender.status();
    tokio::spawn(sender.run(shutdown.clone()));
    Ok(status)
}

/// Prunes what every upstream delivered and mirrors the statuses into the metrics.
async fn housekeeping(
    uplinks: Uplinks,
    store: EventStore,
    metrics: Arc<UplinkMetrics>,
    shutdown: CancellationToken,
) {
    let mut ticker = tokio::time::interval(HOUSEKEEPING);
    let mut pruned_through = None;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        let statuses = uplinks.statuses();
        for status in &statuses {
            let label = UpstreamLabel {
                upstream: status.name.clone(),
            };
            let gauge = |family: &Family<UpstreamLabel, Gauge>, value: u64| {
                family
                    .get_or_create(&label)
                    .set(i64::try_from(value).unwrap_or(i64::MAX));
            };
            gauge(&metrics.delivered, status.delivered);
            gauge(&metrics.depth, status.depth);
            gauge(&metrics.connected, u64::from(status.connected));
            gauge(
                &metrics.oldest_pending_seconds,
                status.oldest_pending_ms.unwrap_or(0) / 1000,
            );
        }
        // Every upstream must have delivered an entry before it may go.
        let Some(through) = statuses
            .iter()
            .map(|s| s.cursor)
            .collect::<Option<Vec<u64>>>()
            .and_then(|cursors| cursors.into_iter().min())
        else {
            continue;
        };
        if pruned_through == Some(through) {
            continue;
        }
        match store.prune_outbox(through).await {
            Ok(entries) => {
                tracing::debug!(through, entries, "pruned delivered outbox entries");
                pruned_through = Some(through);
            }
            Err(e) => tracing::warn!(error = %e, "cannot prune the outbox"),
        }
    }
}

fn non_empty(value: &str) -> Option<String> {
    (!value.is_empty()).then(|| value.to_owned())
}

fn mqtt_config(config: &MqttUplinkConfig, device_id: &str) -> MqttConfig {
    MqttConfig {
        url: config.url.clone(),
        topic_prefix: config.topic_prefix.clone(),
        client_id: config.client_id.clone(),
        device_id: device_id.to_owned(),
        username: non_empty(&config.username),
        password: non_empty(&config.password),
        ca_file: config.ca_file.clone(),
        client_cert: config.client_cert.clone(),
        client_key: config.client_key.clone(),
        keep_alive: config.keep_alive.get(),
    }
}

fn s3_config(config: &S3UplinkConfig, device_id: &str) -> S3Config {
    S3Config {
        endpoint: config.endpoint.clone(),
        bucket: config.bucket.clone(),
        region: config.region.clone(),
        access_key: config.access_key.clone(),
        secret_key: config.secret_key.clone(),
        prefix: config.prefix.clone(),
        path_style: config.path_style,
        ca_file: config.ca_file.clone(),
        device_id: device_id.to_owned(),
    }
}

fn kafka_config(config: &KafkaUplinkConfig, device_id: &str) -> anyhow::Result<KafkaConfig> {
    let tls = || KafkaTls {
        ca_file: config.ca_file.clone(),
        cert_file: config.cert_file.clone(),
        key_file: config.key_file.clone(),
    };
    let sasl = |tls: Option<KafkaTls>| -> anyhow::Result<KafkaSecurity> {
        let mechanism = match config.sasl_mechanism.as_str() {
            "PLAIN" => SaslMechanism::Plain,
            "SCRAM-SHA-256" => SaslMechanism::ScramSha256,
            "SCRAM-SHA-512" => SaslMechanism::ScramSha512,
            other => anyhow::bail!(
                "[uplink.kafka] sasl_mechanism: `{other}` is not one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 (needed with {})",
                config.security_protocol
            ),
        };
        Ok(KafkaSecurity::Sasl {
            mechanism,
            username: config.username.clone(),
            password: config.password.clone(),
            tls,
        })
    };
    // The config crate admits only these four protocols.
    let security = match config.security_protocol.as_str() {
        "ssl" => KafkaSecurity::Ssl(tls()),
        "sasl_plaintext" => sasl(None)?,
        "sasl_ssl" => sasl(Some(tls()))?,
        _ => KafkaSecurity::Plaintext,
    };
    Ok(KafkaConfig {
        brokers: config.brokers.clone(),
        topic: config.topic.clone(),
        client_id: device_id.to_owned(),
        security,
        message_timeout: KAFKA_MESSAGE_TIMEOUT,
    })
}
