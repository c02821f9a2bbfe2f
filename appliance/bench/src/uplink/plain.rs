//! The baselines, clients of the same libraries as the uplink without its store and cursor (the
//! best a box that keeps nothing can do), and the subscriber that times live events.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use appliance_model::{Event, EventId, NewEvent, Timestamp};
use appliance_uplink::Outgoing;
use appliance_uplink::schema::EventMessage;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
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

/// What a subscriber makes of one message: its payload and when it arrived, counted from the
/// run's epoch (taken before any parsing, which is not part of the trip).
type Read<T> = Box<dyn Fn(&[u8], Duration) -> Option<T> + Send>;

/// An MQTT 5 subscriber at QoS 1 that turns each message into a `T` as it arrives: a live
/// event's latency, or a drained event's id.
pub struct Subscriber<T> {
    pub arrivals: Arrivals<T>,
    driver: JoinHandle<()>,
}

impl<T> Drop for Subscriber<T> {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

impl Subscriber<Duration> {
    /// Latencies: arrival minus the event's [`SENT_KEY`], both counted from `epoch`.
    pub async fn latencies(port: u16, topic: &str, epoch: Instant) -> Result<Self> {
        let read = |payload: &[u8], arrived: Duration| {
            let sent = sent_us(payload)?;
            Some(arrived.saturating_sub(Duration::from_micros(sent)))
        };
        Subscriber::connect(port, topic, "bench-live", epoch, Box::new(read)).await
    }
}

impl Subscriber<String> {
    /// The event id of every message, duplicates included.
    pub async fn event_ids(port: u16, topic: &str) -> Result<Self> {
        let read = |payload: &[u8], _| event_id(payload);
        Subscriber::connect(port, topic, "bench-ids", Instant::now(), Box::new(read)).await
    }
}

impl<T: Send + 'static> Subscriber<T> {
    /// Subscribes to `topic` and waits for the SUBACK.
    async fn connect(
        port: u16,
        topic: &str,
        client_id: &str,
        epoch: Instant,
        read: Read<T>,
    ) -> Result<Self> {
        let (client, event_loop) = AsyncClient::new(mqtt_options(port, client_id), REQUEST_CHANNEL);
        client.subscribe(topic, QoS::AtLeastOnce).await?;
        let (tx, received) = mpsc::unbounded_channel();
        let arrivals = Arrivals(received);
        let (subscribed_tx, subscribed) = oneshot::channel();
        let driver = tokio::spawn(listen(event_loop, client, epoch, read, tx, subscribed_tx));
        let subscriber = Subscriber { arrivals, driver };
        match tokio::time::timeout(RUN_LIMIT, subscribed).await {
            Ok(Ok(())) => Ok(subscriber),
            _ => bail!("the subscriber got no SUBACK"),
        }
    }
}

async fn listen<T>(
    mut event_loop: EventLoop,
    // Dropping the client would end the event loop's request stream.
    _client: AsyncClient,
    epoch: Instant,
    read: Read<T>,
    received: mpsc::UnboundedSender<T>,
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
                if let Some(item) = read(&publish.payload, epoch.elapsed()) {
                    let _ = received.send(item);
                }
            }
            Ok(_) => {}
            Err(_) => return,
        }
    }
}

/// A live event's [`SENT_KEY`] attribute.
fn sent_us(payload: &[u8]) -> Option<u64> {
    serde_json::from_slice::<serde_json::Value>(payload)
        .ok()?
        .pointer(&format!("/event/attributes/{SENT_KEY}"))?
        .as_u64()
}

/// The id of the event in an `appliance.event.v1` message.
pub fn event_id(payload: &[u8]) -> Option<String> {
    serde_json::from_slice::<serde_json::Value>(payload)
        .ok()?
        .pointer("/event/id")?
        .as_str()
        .map(str::to_owned)
}

/// Reads `topic` from the beginning of every partition on a thread of its own, turning each
/// message into a `T`, until `stop` is dropped.
fn kafka_reader<T: Send + 'static>(
    brokers: &str,
    topic: &str,
    epoch: Instant,
    read: Read<T>,
) -> Result<(mpsc::UnboundedReceiver<T>, oneshot::Sender<()>)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "bench-reader")
        .set("enable.auto.commit", "false")
        // Fetches answered as soon as anything is there: the live runs time the trip.
        .set("fetch.wait.max.ms", "10")
        .create()?;
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(5))?;
    let mut partitions = TopicPartitionList::new();
    for partition in metadata.topics()[0].partitions() {
        partitions.add_partition_offset(topic, partition.id(), Offset::Beginning)?;
    }
    // Assigned, not subscribed: no consumer-group rebalance to wait for.
    consumer.assign(&partitions)?;
    let (tx, rx) = mpsc::unbounded_channel();
    let (stop, mut stopped) = oneshot::channel();
    std::thread::spawn(move || {
        while matches!(stopped.try_recv(), Err(oneshot::error::TryRecvError::Empty)) {
            let Some(Ok(message)) = consumer.poll(Duration::from_millis(50)) else {
                continue;
            };
            let arrived = epoch.elapsed();
            if let Some(item) = message.payload().and_then(|p| read(p, arrived)) {
                let _ = tx.send(item);
            }
        }
    });
    Ok((rx, stop))
}

/// A Kafka consumer of a whole topic that turns each message into a `T` as it arrives.
pub struct KafkaReader<T> {
    pub arrivals: Arrivals<T>,
    /// Dropped with the reader, which ends its thread.
    _stop: oneshot::Sender<()>,
}

impl KafkaReader<Duration> {
    /// Latencies: arrival minus the event's [`SENT_KEY`], both counted from `epoch`.
    pub fn latencies(brokers: &str, topic: &str, epoch: Instant) -> Result<Self> {
        let read = |payload: &[u8], arrived: Duration| {
            let sent = sent_us(payload)?;
            Some(arrived.saturating_sub(Duration::from_micros(sent)))
        };
        let (received, stop) = kafka_reader(brokers, topic, epoch, Box::new(read))?;
        Ok(KafkaReader {
            arrivals: Arrivals(received),
            _stop: stop,
        })
    }
}

impl KafkaReader<String> {
    /// The event id of every message, duplicates included.
    pub fn event_ids(brokers: &str, topic: &str) -> Result<Self> {
        let read = |payload: &[u8], _| event_id(payload);
        let (received, stop) = kafka_reader(brokers, topic, Instant::now(), Box::new(read))?;
        Ok(KafkaReader {
            arrivals: Arrivals(received),
            _stop: stop,
        })
    }
}

/// What a subscriber or reader made of the messages, in arrival order.
pub struct Arrivals<T>(mpsc::UnboundedReceiver<T>);

impl<T> Arrivals<T> {
    /// The next `count` messages, failing if they take longer than `within`.
    pub async fn next(&mut self, count: usize, within: Duration) -> Result<Vec<T>> {
        let deadline = tokio::time::Instant::now() + within;
        let mut out = Vec::with_capacity(count);
        while out.len() < count {
            match tokio::time::timeout_at(deadline, self.0.recv()).await {
                Ok(Some(item)) => out.push(item),
                Ok(None) => bail!(
                    "the connection ended after {} of {count} messages",
                    out.len()
                ),
                Err(_) => bail!(
                    "only {} of {count} messages arrived within {within:?}",
                    out.len()
                ),
            }
        }
        Ok(out)
    }

    /// What arrives until `done` holds for the messages so far or `quiet` passes without one.
    pub async fn until(&mut self, quiet: Duration, mut done: impl FnMut(&[T]) -> bool) -> Vec<T> {
        let mut out = Vec::new();
        while !done(&out) {
            match tokio::time::timeout(quiet, self.0.recv()).await {
                Ok(Some(item)) => out.push(item),
                Ok(None) | Err(_) => break,
            }
        }
        out
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
