//! `store-bench uplink`: what the durable outbox costs, measured against the best a box without
//! one can do, on the same brokers in the same run.
//!
//! Each drain commits a backlog of events to a fresh [`EventStore`] before the clock starts, then
//! runs the real [`Sender`] with the real publisher until its status shows the cursor at the last
//! outbox sequence. The baselines publish the very same payloads with a plain client of the same
//! library, no store and no cursor. The live runs offer events at a steady rate and time each
//! from the moment it is raised to its arrival at a subscriber.

mod plain;
mod report;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use appliance_model::{NewEvent, Timestamp};
use appliance_store::EventStore;
use appliance_tests::brokers::{BrokerOptions, Mosquitto, Tansu};
use appliance_uplink::kafka::{KafkaConfig, KafkaPublisher, KafkaSecurity};
use appliance_uplink::media::MediaQueue;
use appliance_uplink::mqtt::{MqttConfig, MqttPublisher};
use appliance_uplink::sender::{Sender, SenderOptions, build_batch, cursor_change};
use appliance_uplink::{Outgoing, PublishError, Publisher, Ticket};
use serde_json::Value;
use tempfile::TempDir;
use tokio_util::sync::CancellationToken;

use crate::sled_engine;
use crate::sys;
use crate::workload::{EventGen, Latency};
use report::{Drain, LiveLatency, Row, Tally, Versus};

/// The device id of every run: topics are `appliance/bench-box/…`.
const DEVICE: &str = "bench-box";
const KAFKA_TOPIC: &str = "appliance.events";
/// A mosquitto configuration the MQTT rows run against, and the batch sizes of its drains.
struct MosquittoConfig {
    name: &'static str,
    tcp_nodelay: bool,
    batches: &'static [usize],
}

/// mosquitto as installed, then as the README recommends for deployments. The default
/// configuration skips the small batches, where its 40 ms per batch (footnote ⁵) still shows
/// once the pipeline of batches is shorter than a round of delayed acknowledgements.
const MOSQUITTO_CONFIGS: [MosquittoConfig; 2] = [
    MosquittoConfig {
        name: "default config",
        tcp_nodelay: false,
        batches: &[100, 1000],
    },
    MosquittoConfig {
        name: "set_tcp_nodelay true",
        tcp_nodelay: true,
        batches: &[1, 10, 100, 1000],
    },
];
/// Batch sizes of the Kafka drains: smaller ones only repeat the MQTT rows' point more slowly.
const KAFKA_BATCHES: [usize; 2] = [100, 1000];
/// The batch of the live runs: the daemon's default (`[uplink] batch`).
const LIVE_BATCH: usize = 100;
/// A drain makes at most this many batches, so that the small batches (a cursor commit and a
/// round trip each) take seconds rather than minutes; the report's `events` column says how many
/// each one drained.
const MAX_BATCHES: usize = 1_000;
/// Events per commit while the backlog is written: a busy box's group commits.
const BACKLOG_COMMIT: usize = 100;
/// Events the unreported warm-up publishes first, so that the first measured row does not pay
/// for the broker's and this process's cold start.
const WARM_UP: usize = 1_000;
/// Cursor-like commits timed for the report's fsync figures.
const CURSOR_PROBES: usize = 200;
/// A drain or a live run that takes longer has failed (the sender retries forever).
const RUN_LIMIT: Duration = Duration::from_secs(60);
/// A subscriber that counts a drain's event ids gives up once no message came for this long.
const ARRIVAL_QUIET: Duration = Duration::from_secs(5);
/// The attribute of a live event that says when it was raised, in µs after the run's epoch.
const SENT_KEY: &str = "bench_sent_us";

/// What `store-bench uplink` was asked for.
pub struct Options {
    pub events: usize,
    pub rate: u32,
    pub live_seconds: u32,
    pub seed: u64,
}

pub fn run(options: &Options, dir: Option<&Path>) -> Result<()> {
    ensure!(options.events > 0, "--events must be at least 1");
    ensure!(
        options.rate > 0 && options.live_seconds > 0,
        "--rate and --live-seconds must be at least 1"
    );
    let started = Instant::now();
    let work = sys::work_dir(dir)?;
    let filesystem = sys::filesystem(work.path());
    if filesystem == "tmpfs" {
        eprintln!(
            "warning: {} is on tmpfs, where fsync is free: the cursor commits will look too cheap",
            work.path().display()
        );
    }
    eprintln!(
        "uplink bench: N = {}, seed {}, data in {}",
        options.events,
        options.seed,
        work.path().display()
    );
    let tansu = tansu_version();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let bench = Bench {
        options,
        work: work.path(),
    };
    let (rows, build, cursor_commit) = runtime.block_on(async {
        // The messages of one backlog serve every baseline; the store under it, the cursor
        // probe.
        let backlog = bench.backlog(options.events).await?;
        let started = Instant::now();
        let messages = outgoing(&backlog)?;
        let build = report::Build::of(&messages, started.elapsed());
        let cursor_commit = bench.cursor_commits(&backlog).await?;
        drop(backlog);
        let mut rows = Vec::new();
        bench.mqtt(&messages, &mut rows).await?;
        if tansu.is_some() {
            bench.kafka(&messages, &mut rows).await?;
        }
        anyhow::Ok((rows, build, cursor_commit))
    })?;
    let context = report::Context {
        machine: sys::machine(),
        data_dir: format!("{} ({filesystem})", work.path().display()),
        events: options.events,
        build,
        rate: options.rate,
        live_seconds: options.live_seconds,
        mosquitto: mosquitto_version(),
        tansu,
        cursor_commit,
        elapsed_s: started.elapsed().as_secs_f64(),
    };
    print!("{}", report::render(&context, &rows));
    Ok(())
}

struct Bench<'a> {
    options: &'a Options,
    /// Each store gets its own directory under it.
    work: &'a Path,
}

/// A store holding a committed, undelivered backlog.
struct Backlog {
    store: EventStore,
    /// The outbox sequence of its last event: the drain is done when the cursor reaches it.
    last_seq: u64,
    _dir: TempDir,
}

impl Bench<'_> {
    /// The MQTT rows against each mosquitto configuration; `messages` are the baselines'.
    async fn mqtt(&self, messages: &[Outgoing], rows: &mut Vec<Row>) -> Result<()> {
        for config in MOSQUITTO_CONFIGS {
            self.mqtt_on(&config, messages, rows).await?;
        }
        Ok(())
    }

    async fn mqtt_on(
        &self,
        config: &MosquittoConfig,
        messages: &[Outgoing],
        rows: &mut Vec<Row>,
    ) -> Result<()> {
        let broker = Mosquitto::start(BrokerOptions {
            tcp_nodelay: config.tcp_nodelay,
            ..BrokerOptions::default()
        });
        let name = config.name;
        let topic = format!("appliance/{DEVICE}/events");
        let events = messages.len();
        let mut client = plain::PlainMqtt::connect(broker.port, "bench-plain").await?;
        eprintln!("mqtt ({name}): warm-up");
        client
            .drain(&topic, &messages[..WARM_UP.min(events)])
            .await?;
        eprintln!("mqtt ({name}): plain client, {events} events");
        let seconds = client.drain(&topic, messages).await?.as_secs_f64();
        eprintln!("  {seconds:.2} s");
        let baseline = Row::baseline(
            &format!(
                "MQTT drain, mosquitto {name}: plain rumqttc v5, QoS 1, no store (baseline) ²"
            ),
            events,
            seconds,
        );
        let baseline_rate = baseline.events_per_s();
        rows.push(baseline);
        // After the baseline: it counts the sender's messages only.
        let mut subscriber = plain::Subscriber::event_ids(broker.port, &topic).await?;
        for &batch in config.batches {
            let events = events.min(MAX_BATCHES * batch);
            eprintln!("mqtt ({name}): sender, batch {batch}, {events} events");
            let backlog = self.backlog(events).await?;
            let expected = event_ids(&backlog)?;
            let publisher = MqttPublisher::new(MqttConfig::new(broker.url(), DEVICE))?;
            let mut drained = drain(backlog, publisher, batch).await?;
            let arrived = subscriber
                .arrivals
                .until(ARRIVAL_QUIET, |ids| ids.len() >= events)
                .await;
            drained.arrivals = Some(Tally::of(&expected, &arrived));
            rows.push(Row::sender(
                &format!("MQTT drain, mosquitto {name}: Sender + MqttPublisher ¹"),
                events,
                &drained,
                baseline_rate,
            ));
        }

        eprintln!("mqtt ({name}): live, plain client");
        let baseline = self.live_plain(&client, broker.port, &topic).await?;
        let baseline_p50 = baseline.p50_ms;
        rows.push(self.live_row(
            &format!("MQTT live, mosquitto {name}: plain rumqttc v5, QoS 1, no store (baseline) ³"),
            None,
            baseline,
            Versus::IsBaseline,
        ));
        eprintln!("mqtt ({name}): live, sender");
        let latency = self.live_mqtt(&broker, &topic).await?;
        rows.push(self.live_row(
            &format!("MQTT live, mosquitto {name}: Sender + MqttPublisher ³"),
            Some(LIVE_BATCH),
            latency,
            Versus::Baseline(baseline_p50),
        ));
        Ok(())
    }

    /// The Kafka rows, on tansu; `messages` are the baseline's.
    async fn kafka(&self, messages: &[Outgoing], rows: &mut Vec<Row>) -> Result<()> {
        let broker = Tansu::start();
        let brokers = broker.brokers();
        // tansu does not create topics on use; the publisher would create it inside its timed
        // drain, and the baseline, which goes first, needs it too.
        plain::create_topic(&brokers, KAFKA_TOPIC).await?;
        let events = messages.len();
        let producer = plain::PlainKafka::new(&brokers)?;
        eprintln!("kafka: warm-up");
        producer
            .drain(KAFKA_TOPIC, &messages[..WARM_UP.min(events)])
            .await?;
        eprintln!("kafka: plain producer, {events} events");
        let seconds = producer.drain(KAFKA_TOPIC, messages).await?.as_secs_f64();
        eprintln!("  {seconds:.2} s");
        let baseline = Row::baseline(
            "Kafka drain: plain FutureProducer, acks=all, no store (baseline) ⁴",
            events,
            seconds,
        );
        let baseline_rate = baseline.events_per_s();
        rows.push(baseline);
        for batch in KAFKA_BATCHES {
            let events = events.min(MAX_BATCHES * batch);
            eprintln!("kafka: sender, batch {batch}, {events} events");
            // A topic per drain, so that its reader counts the drain's messages only.
            let topic = format!("{KAFKA_TOPIC}.batch-{batch}");
            plain::create_topic(&brokers, &topic).await?;
            let backlog = self.backlog(events).await?;
            let expected = event_ids(&backlog)?;
            let publisher = KafkaPublisher::new(kafka_config(&brokers, &topic))?;
            let mut drained = drain(backlog, publisher, batch).await?;
            let mut reader = plain::KafkaReader::event_ids(&brokers, &topic)?;
            let arrived = reader
                .arrivals
                .until(ARRIVAL_QUIET, |ids| ids.len() >= events)
                .await;
            drained.arrivals = Some(Tally::of(&expected, &arrived));
            rows.push(Row::sender(
                "Kafka drain: Sender + KafkaPublisher ⁴",
                events,
                &drained,
                baseline_rate,
            ));
        }
        eprintln!("kafka: live, sender");
        let latency = self.live_kafka(&brokers).await?;
        rows.push(self.live_row(
            "Kafka live: Sender + KafkaPublisher ³ ⁴",
            Some(LIVE_BATCH),
            latency,
            Versus::None,
        ));
        Ok(())
    }

    /// An empty store as the appliance ships it, in its own directory (removed when dropped).
    /// The directory comes first: bound as `(dir, store)`, the store is closed before it goes.
    fn fresh_store(&self) -> Result<(TempDir, EventStore)> {
        let dir = tempfile::Builder::new()
            .prefix("store-")
            .tempdir_in(self.work)?;
        let store = sled_engine::open_store(dir.path())?;
        Ok((dir, store))
    }

    /// `events` events committed to a fresh store, in commits of [`BACKLOG_COMMIT`].
    async fn backlog(&self, events: usize) -> Result<Backlog> {
        let (dir, store) = self.fresh_store()?;
        // Start times end about now, like events raised while the link was down.
        let first_ms = Timestamp::now().as_millis() - i64::try_from(events)?;
        let mut generator = EventGen::new(self.options.seed, first_ms);
        let mut left = events;
        while left > 0 {
            let n = left.min(BACKLOG_COMMIT);
            let chunk = (0..n).map(|_| generator.next_event()).collect();
            store.append_many(chunk).await?;
            left -= n;
        }
        let last_seq = store
            .outbox(None, events)?
            .last()
            .context("the backlog's outbox is empty")?
            .seq;
        Ok(Backlog {
            store,
            last_seq,
            _dir: dir,
        })
    }

    fn live_count(&self) -> usize {
        self.options.rate as usize * self.options.live_seconds as usize
    }

    /// Live events through the store and the sender to mosquitto: latency from the `append`
    /// call (the event's own durable commit included) to the subscriber.
    async fn live_mqtt(&self, broker: &Mosquitto, topic: &str) -> Result<LiveLatency> {
        let publisher = MqttPublisher::new(MqttConfig::new(broker.url(), DEVICE))?;
        let port = broker.port;
        self.live_sender(publisher, async |epoch| {
            plain::Subscriber::latencies(port, topic, epoch).await
        })
        .await
    }

    /// Live events through the store and the sender to tansu, on a topic of their own: latency
    /// from the `append` call to a consumer.
    async fn live_kafka(&self, brokers: &str) -> Result<LiveLatency> {
        let topic = format!("{KAFKA_TOPIC}.live");
        plain::create_topic(brokers, &topic).await?;
        let publisher = KafkaPublisher::new(kafka_config(brokers, &topic))?;
        self.live_sender(publisher, async |epoch| {
            plain::KafkaReader::latencies(brokers, &topic, epoch)
        })
        .await
    }

    /// Live events through a fresh store and a sender over `publisher`; `listen` starts what
    /// receives them once the sender is connected.
    async fn live_sender<P: Publisher, L: Listener>(
        &self,
        publisher: P,
        listen: impl AsyncFnOnce(Instant) -> Result<L>,
    ) -> Result<LiveLatency> {
        let (_dir, store) = self.fresh_store()?;
        let sender = Sender::new(store.clone(), publisher, DEVICE, options(LIVE_BATCH))?;
        let mut status = sender.status();
        let cancel = CancellationToken::new();
        let task = tokio::spawn(sender.run(cancel.clone()));
        // Idle, the sender connects on its first look at the empty outbox.
        let connected = tokio::time::timeout(RUN_LIMIT, status.wait_for(|s| s.connected)).await;
        if !matches!(connected, Ok(Some(_))) {
            bail!("the sender did not connect: {:?}", status.snapshot());
        }
        let epoch = Instant::now();
        let mut listener = listen(epoch).await?;
        let mut commits = Vec::with_capacity(self.live_count());
        self.offer(epoch, async |event| {
            commits.push(store.append(event));
            Ok(())
        })
        .await?;
        for commit in commits {
            commit.await?;
        }
        let latencies = listener.arrivals().next(self.live_count(), RUN_LIMIT).await;
        cancel.cancel();
        task.await?;
        Ok(LiveLatency::of(latencies?))
    }

    /// Live events published straight away by a plain client: latency from the publish call to
    /// the subscriber.
    async fn live_plain(
        &self,
        client: &plain::PlainMqtt,
        port: u16,
        topic: &str,
    ) -> Result<LiveLatency> {
        let epoch = Instant::now();
        let mut subscriber = plain::Subscriber::latencies(port, topic, epoch).await?;
        let mut seq = 0;
        self.offer(epoch, async |event| {
            seq += 1;
            client
                .publish(topic, plain::message(DEVICE, seq, event))
                .await
        })
        .await?;
        Ok(LiveLatency::of(
            subscriber
                .arrivals
                .next(self.live_count(), RUN_LIMIT)
                .await?,
        ))
    }

    /// Hands `rate` events per second for `live_seconds` to `raise`, on an absolute schedule (a
    /// slow hand-over does not delay the ones after it), each stamped with when it was raised.
    async fn offer(
        &self,
        epoch: Instant,
        mut raise: impl AsyncFnMut(NewEvent) -> Result<()>,
    ) -> Result<()> {
        let interval = Duration::from_secs(1) / self.options.rate;
        let mut generator = EventGen::new(self.options.seed, Timestamp::now().as_millis());
        for i in 0..self.live_count() {
            let due = epoch + interval * u32::try_from(i)?;
            tokio::time::sleep_until(due.into()).await;
            let mut event = generator.next_event();
            let sent_us = u64::try_from(epoch.elapsed().as_micros())?;
            event
                .attributes
                .insert(SENT_KEY.to_owned(), Value::from(sent_us));
            raise(event).await?;
        }
        Ok(())
    }

    fn live_row(
        &self,
        scenario: &str,
        batch: Option<usize>,
        latency: LiveLatency,
        versus: Versus,
    ) -> Row {
        Row::live(
            scenario,
            batch,
            self.live_count(),
            f64::from(self.options.live_seconds),
            latency,
            versus,
        )
    }

    /// Times commits of one cursor, as the sender makes after each batch, on a store holding a
    /// backlog.
    async fn cursor_commits(&self, backlog: &Backlog) -> Result<Latency> {
        let mut times = Vec::with_capacity(CURSOR_PROBES);
        for seq in 0..CURSOR_PROBES as u64 {
            let started = Instant::now();
            backlog
                .store
                .commit(Vec::new(), vec![cursor_change("bench-probe", seq)])
                .await?;
            times.push(started.elapsed());
        }
        Ok(Latency::of(times))
    }
}

/// The messages the sender would build for the whole backlog.
fn outgoing(backlog: &Backlog) -> Result<Vec<Outgoing>> {
    let entries = backlog.store.outbox(None, usize::MAX)?;
    Ok(build_batch(&backlog.store, DEVICE, &entries)?
        .map(|batch| batch.outgoing)
        .unwrap_or_default())
}

/// The event ids of a backlog, which a drain's subscriber must see.
fn event_ids(backlog: &Backlog) -> Result<Vec<String>> {
    outgoing(backlog)?
        .iter()
        .map(|m| plain::event_id(&m.payload).context("a message without an event id"))
        .collect()
}

/// The bench's `KafkaPublisher` on `topic`.
fn kafka_config(brokers: &str, topic: &str) -> KafkaConfig {
    KafkaConfig {
        brokers: brokers.to_owned(),
        topic: topic.to_owned(),
        client_id: DEVICE.to_owned(),
        security: KafkaSecurity::Plaintext,
        message_timeout: Duration::from_secs(30),
    }
}

/// What receives the live events: an MQTT subscriber or a Kafka consumer.
trait Listener {
    fn arrivals(&mut self) -> &mut plain::Arrivals<Duration>;
}

impl Listener for plain::Subscriber<Duration> {
    fn arrivals(&mut self) -> &mut plain::Arrivals<Duration> {
        &mut self.arrivals
    }
}

impl Listener for plain::KafkaReader<Duration> {
    fn arrivals(&mut self) -> &mut plain::Arrivals<Duration> {
        &mut self.arrivals
    }
}

/// The daemon's sender options at another batch size.
fn options(batch: usize) -> SenderOptions {
    SenderOptions {
        batch,
        ..SenderOptions::default()
    }
}

/// A publisher that adds up the time its non-empty batches spend inside `publish`; otherwise
/// the publisher it wraps.
struct Timed<P> {
    inner: P,
    /// Nanoseconds; shared with the bench, since the sender owns the publisher.
    spent: Arc<AtomicU64>,
}

impl<P: Publisher> Publisher for Timed<P> {
    async fn publish(&mut self, batch: &[Outgoing]) -> Result<(), PublishError> {
        let started = Instant::now();
        let result = self.inner.publish(batch).await;
        // Empty batches are the idle connection checks, not part of a drain.
        if !batch.is_empty() {
            self.spent
                .fetch_add(elapsed_nanos(started), Ordering::Relaxed);
        }
        result
    }

    // The sender pipelines through these; timed like `publish`. With batches overlapping, the
    // sum is time spent publishing, not wall time.
    async fn submit(&mut self, batch: &[Outgoing]) -> Result<Ticket, PublishError> {
        let started = Instant::now();
        let result = self.inner.submit(batch).await;
        self.spent
            .fetch_add(elapsed_nanos(started), Ordering::Relaxed);
        result
    }

    async fn settle(&mut self, ticket: Ticket) -> Result<(), PublishError> {
        let started = Instant::now();
        let result = self.inner.settle(ticket).await;
        self.spent
            .fetch_add(elapsed_nanos(started), Ordering::Relaxed);
        result
    }

    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn media_queue(&self) -> Option<&MediaQueue> {
        self.inner.media_queue()
    }
}

fn elapsed_nanos(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// Runs a sender over `backlog` until its cursor reaches the last event.
async fn drain<P: Publisher>(backlog: Backlog, mut publisher: P, batch: usize) -> Result<Drain> {
    // Connected before the clock starts, like the baselines' clients: a reconnect's cost is not
    // the outbox's.
    publisher.publish(&[]).await?;
    let spent = Arc::new(AtomicU64::new(0));
    let publisher = Timed {
        inner: publisher,
        spent: Arc::clone(&spent),
    };
    let sender = Sender::new(backlog.store.clone(), publisher, DEVICE, options(batch))?;
    let mut status = sender.status();
    let cancel = CancellationToken::new();
    let started = Instant::now();
    let task = tokio::spawn(sender.run(cancel.clone()));
    let last = backlog.last_seq;
    let done = tokio::time::timeout(RUN_LIMIT, status.wait_for(|s| s.cursor == Some(last))).await;
    let seconds = started.elapsed().as_secs_f64();
    cancel.cancel();
    task.await?;
    if !matches!(done, Ok(Some(_))) {
        bail!(
            "the sender did not drain {} events within {RUN_LIMIT:?}: {:?}",
            backlog.last_seq,
            status.snapshot()
        );
    }
    eprintln!("  {seconds:.2} s");
    Ok(Drain {
        batch,
        seconds,
        publishing: Duration::from_nanos(spent.load(Ordering::Relaxed)).as_secs_f64(),
        arrivals: None,
    })
}

/// `mosquitto -h`'s first line names the version.
fn mosquitto_version() -> String {
    std::process::Command::new("mosquitto")
        .arg("-h")
        .output()
        .ok()
        .and_then(|out| {
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .next()
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "mosquitto (version unknown)".to_owned())
}

/// `None` when tansu is not installed (`just setup-test` builds it): the Kafka rows are skipped.
fn tansu_version() -> Option<String> {
    let out = std::process::Command::new("tansu")
        .arg("--version")
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}
