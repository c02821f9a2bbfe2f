//! The baselines, clients of the same libraries as the uplink without its store and cursor (the
//! best a box that keeps nothing can do), and the subscriber that times live events.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use appliance_model::{Event, EventId, NewEvent, Timestamp};
use appliance_uplink::Outgoing;
use appliance_uplink::schema::EventMessage;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{Packet, PublishProperties};
use rumqttc::v5::{AsyncClient, Event as MqttEvent, EventLoop, MqttOptions};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use super::{RUN_LIMIT, SENT_KEY};

/// The `MqttPublisher`'s limits, so that the baseline has the same window on the wire: queued
/// requests towards the event loop, and unacknowledged publishes.
const REQUEST_CHANNEL: usize = 64;
const IN_FLIGHT: u16 = 100;

fn mqtt_options(port: u16, client_id: &str) -> MqttOptions {
    let mut options = MqttOptions::new(client_id, "127.0.0.1", port);
    options
        .set_keep_alive(Duration::from_secs(30))
        .set_clean_start(true)
        .set_outgoing_inflight_upper_limit(IN_FLIGHT);
    options
}

/// The properties the `MqttPublisher` puts on every event, so that the bytes on the wire are
/// the same.
fn json_properties() -> PublishProperties {
    PublishProperties {
        payload_format_indicator: Some(1),
        content_type: Some("application/json".to_owned()),
        ..PublishProperties::default()
    }
}

/// What the driver of a [`PlainMqtt`] has seen.
#[derive(Debug, Default)]
struct Acks {
    connected: bool,
    acked: u64,
    failed: Option<String>,
}

/// A plain MQTT 5 publisher at QoS 1: publishes go out as soon as the event loop takes them.
pub struct PlainMqtt {
    client: AsyncClient,
    state: watch::Receiver<Acks>,
    driver: JoinHandle<()>,
}

impl Drop for PlainMqtt {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

impl PlainMqtt {
    /// Connects and waits for the CONNACK.
    pub async fn connect(port: u16, client_id: &str) -> Result<PlainMqtt> {
        let (client, event_loop) = AsyncClient::new(mqtt_options(port, client_id), REQUEST_CHANNEL);
        let (report, state) = watch::channel(Acks::default());
        let mut mqtt = PlainMqtt {
            client,
            state,
            driver: tokio::spawn(drive(event_loop, report)),
        };
        mqtt.wait(|a| a.connected, "CONNACK").await?;
        Ok(mqtt)
    }

    pub async fn publish(&self, topic: &str, payload: Vec<u8>) -> Result<()> {
        self.client
            .publish_with_properties(topic, QoS::AtLeastOnce, false, payload, json_properties())
            .await?;
        Ok(())
    }

    async fn wait(&mut self, done: impl Fn(&Acks) -> bool, what: &str) -> Result<()> {
        let waited = self.state.wait_for(|a| done(a) || a.failed.is_some());
        match tokio::time::timeout(RUN_LIMIT, waited).await {
            Ok(Ok(acks)) if done(&acks) => Ok(()),
            Ok(Ok(acks)) => bail!("waiting for {what}: {:?}", acks.failed),
            Ok(Err(_)) => bail!("waiting for {what}: the MQTT driver stopped"),
            Err(_) => bail!("no {what} within {RUN_LIMIT:?}"),
        }
    }

    /// Publishes `messages` back to back; returns the time until the last PUBACK.
    pub async fn drain(&mut self, topic: &str, messages: &[Outgoing]) -> Result<Duration> {
        let started = Instant::now();
        let done = self.state.borrow().acked + messages.len() as u64;
        for message in messages {
            // Cloned like the publisher does: rumqttc takes the payload by value.
            self.publish(topic, message.payload.clone()).await?;
        }
        self.wait(|a| a.acked >= done, "every PUBACK").await?;
        Ok(started.elapsed())
    }
}

/// Polls the event loop, counting PUBACKs, until the connection fails.
async fn drive(mut event_loop: EventLoop, report: watch::Sender<Acks>) {
    loop {
        match event_loop.poll().await {
            Ok(MqttEvent::Incoming(Packet::ConnAck(_))) => {
                report.send_modify(|a| a.connected = true);
            }
            Ok(MqttEvent::Incoming(Packet::PubAck(_))) => report.send_modify(|a| a.acked += 1),
            Ok(_) => {}
            Err(error) => {
                report.send_modify(|a| a.failed = Some(error.to_string()));
                return;
            }
        }
    }
}

/// The `appliance.event.v1` message of `event` as the sender would build it, without a store:
/// the id and `recorded_at` are made up here.
pub fn message(device: &str, seq: u64, event: NewEvent) -> Vec<u8> {
    let now = Timestamp::now();
    let event = Event {
        // A running count stands in for the store's per-millisecond sequence: 16 bits hold a
        // live run.
        id: EventId::from_parts(now.as_millis(), seq as u16),
        camera_id: event.camera_id,
        channel_id: event.channel_id,
        source: event.source,
        kind: event.kind,
        severity: event.severity,
        start_time: event.start_time.unwrap_or(now),
        end_time: event.end_time,
        attributes: event.attributes,
        ack: None,
        media: event.media,
        recorded_at: now,
    };
    EventMessage::new(device, seq, &event).to_json()
}

/// An MQTT 5 subscriber at QoS 1 that turns each live event's arrival into its latency.
pub struct Subscriber {
    latencies: mpsc::UnboundedReceiver<Duration>,
    driver: JoinHandle<()>,
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

impl Subscriber {
    /// Subscribes to `topic` and waits for the SUBACK; latencies are arrival minus the event's
    /// [`SENT_KEY`], both counted from `epoch`.
    pub async fn connect(port: u16, topic: &str, epoch: Instant) -> Result<Subscriber> {
        let (client, event_loop) =
            AsyncClient::new(mqtt_options(port, "bench-subscriber"), REQUEST_CHANNEL);
        client.subscribe(topic, QoS::AtLeastOnce).await?;
        let (tx, latencies) = mpsc::unbounded_channel();
        let (subscribed_tx, subscribed) = oneshot::channel();
        let driver = tokio::spawn(listen(event_loop, client, epoch, tx, subscribed_tx));
        let subscriber = Subscriber { latencies, driver };
        match tokio::time::timeout(RUN_LIMIT, subscribed).await {
            Ok(Ok(())) => Ok(subscriber),
            _ => bail!("the subscriber got no SUBACK"),
        }
    }

    /// The latencies of the next `count` events, failing if they take longer than `within`.
    pub async fn latencies(&mut self, count: usize, within: Duration) -> Result<Vec<Duration>> {
        let deadline = tokio::time::Instant::now() + within;
        let mut out = Vec::with_capacity(count);
        while out.len() < count {
            match tokio::time::timeout_at(deadline, self.latencies.recv()).await {
                Ok(Some(latency)) => out.push(latency),
                Ok(None) => bail!(
                    "the subscriber's connection ended after {} of {count} events",
                    out.len()
                ),
                Err(_) => bail!(
                    "only {} of {count} events arrived within {within:?}",
                    out.len()
                ),
            }
        }
        Ok(out)
    }
}

async fn listen(
    mut event_loop: EventLoop,
    // Dropping the client would end the event loop's request stream.
    _client: AsyncClient,
    epoch: Instant,
    latencies: mpsc::UnboundedSender<Duration>,
    subscribed: oneshot::Sender<()>,
) {
    let mut subscribed = Some(subscribed);
    loop {
        match event_loop.poll().await {
            Ok(MqttEvent::Incoming(Packet::SubAck(_))) => {
                if let Some(tx) = subscribed.take() {
                    let _ = tx.send(());
                }
            }
            Ok(MqttEvent::Incoming(Packet::Publish(publish))) => {
                // Before the parsing, which is not part of the trip.
                let arrived = epoch.elapsed();
                let sent = serde_json::from_slice::<serde_json::Value>(&publish.payload)
                    .ok()
                    .and_then(|message| {
                        message
                            .pointer(&format!("/event/attributes/{SENT_KEY}"))
                            .and_then(serde_json::Value::as_u64)
                    });
                if let Some(sent) = sent {
                    let _ = latencies.send(arrived.saturating_sub(Duration::from_micros(sent)));
                }
            }
            Ok(_) => {}
            Err(_) => return,
        }
    }
}

/// Creates `topic` with the cluster's default partitions and replication, as the
/// `KafkaPublisher` does when it finds the topic missing.
pub async fn create_topic(brokers: &str, topic: &str) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()?;
    let new_topic = NewTopic::new(topic, -1, TopicReplication::Fixed(-1));
    for result in admin
        .create_topics([&new_topic], &AdminOptions::new())
        .await?
    {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => bail!("cannot create topic {name:?}: {code}"),
        }
    }
    Ok(())
}

/// A plain producer with the `KafkaPublisher`'s producer settings.
pub struct PlainKafka {
    producer: FutureProducer,
}

impl PlainKafka {
    pub fn new(brokers: &str) -> Result<PlainKafka> {
        let producer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("max.in.flight.requests.per.connection", "5")
            .set("message.timeout.ms", "30000")
            .set("partitioner", "murmur2_random")
            .create()?;
        Ok(PlainKafka { producer })
    }

    /// Produces `messages` back to back; returns the time until the last is acknowledged.
    pub async fn drain(&self, topic: &str, messages: &[Outgoing]) -> Result<Duration> {
        let started = Instant::now();
        let mut deliveries = Vec::with_capacity(messages.len());
        for message in messages {
            let record = FutureRecord::to(topic)
                .key(message.key.as_str())
                .payload(message.payload.as_slice());
            deliveries.push(
                self.producer
                    .send_result(record)
                    .map_err(|(error, _)| error)?,
            );
        }
        for delivery in deliveries {
            delivery.await?.map_err(|(error, _)| error)?;
        }
        Ok(started.elapsed())
    }
}
