//! The sender keeps several batches in flight on the MQTT upstream: broker outages while they
//! are unacknowledged lose nothing, and the first arrival of every event keeps the commit order.

#[allow(
    dead_code,
    reason = "shared with tests/mqtt.rs; these tests use the store helpers and the subscriber"
)]
mod support;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use appliance_tests::brokers::{BrokerOptions, Mosquitto};
use appliance_uplink::mqtt::{MqttConfig, MqttPublisher};
use appliance_uplink::sender::{Sender, SenderOptions, StatusHandle, UplinkStatus};
use appliance_uplink::{Outgoing, PublishError, Publisher, Ticket};
use support::{Subscriber, commit, open_store, outbox, quick_options};
use tokio_util::sync::CancellationToken;

const DEVICE: &str = "box-1";
const EVENTS: &str = "appliance/box-1/events";

/// Batches submitted and not settled yet, as the sender sees them: every error drops them all.
#[derive(Clone, Default)]
struct InFlight {
    now: Arc<AtomicUsize>,
    most: Arc<AtomicUsize>,
}

impl InFlight {
    fn submitted(&self) {
        let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(now, Ordering::SeqCst);
    }

    fn get(&self) -> usize {
        self.now.load(Ordering::SeqCst)
    }
}

/// An [`MqttPublisher`] that counts the batches in flight.
struct Watched {
    inner: MqttPublisher,
    in_flight: InFlight,
}

impl Watched {
    fn seen<T>(&self, result: Result<T, PublishError>) -> Result<T, PublishError> {
        if result.is_err() {
            self.in_flight.now.store(0, Ordering::SeqCst);
        }
        result
    }
}

impl Publisher for Watched {
    async fn publish(&mut self, batch: &[Outgoing]) -> Result<(), PublishError> {
        let result = self.inner.publish(batch).await;
        self.seen(result)
    }

    async fn submit(&mut self, batch: &[Outgoing]) -> Result<Ticket, PublishError> {
        let result = self.inner.submit(batch).await;
        if result.is_ok() {
            self.in_flight.submitted();
        }
        self.seen(result)
    }

    async fn settle(&mut self, ticket: Ticket) -> Result<(), PublishError> {
        let result = self.inner.settle(ticket).await;
        if result.is_ok() {
            self.in_flight.now.fetch_sub(1, Ordering::SeqCst);
        }
        self.seen(result)
    }

    fn name(&self) -> &'static str {
        self.inner.name()
    }
}

async fn wait(
    status: &mut StatusHandle,
    what: &str,
    done: impl FnMut(&UplinkStatus) -> bool,
) -> UplinkStatus {
    match tokio::time::timeout(Duration::from_secs(30), status.wait_for(done)).await {
        Ok(Some(status)) => status,
        _ => panic!("{what}: status {:#?}", status.snapshot()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_outages_with_batches_in_flight_lose_nothing_and_keep_the_order() {
    // mosquitto as installed (no `set_tcp_nodelay`): the configuration pipelining is for.
    let mut broker = Mosquitto::start(BrokerOptions::default());
    // A persistent session: the broker keeps the cloud's subscription and queue over restarts.
    let mut cloud = Subscriber::connect(broker.port, EVENTS, "cloud", true).await;
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    for _ in 0..60 {
        commit(&store, "cam", 100).await;
    }
    let in_flight = InFlight::default();
    let publisher = Watched {
        inner: MqttPublisher::new(MqttConfig::new(broker.url(), DEVICE)).unwrap(),
        in_flight: in_flight.clone(),
    };
    let options = SenderOptions {
        batch: 50,
        ..quick_options()
    };
    let sender = Sender::new(store.clone(), publisher, DEVICE, options).unwrap();
    let mut status = sender.status();
    let cancel = CancellationToken::new();
    let task = tokio::spawn(sender.run(cancel.clone()));

    for (outage, from) in [500, 2_000, 3_500].into_iter().enumerate() {
        wait(&mut status, "draining", |s| s.delivered >= from).await;
        // Down while several batches wait for their PUBACKs.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while in_flight.get() < 3 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "never 3 batches in flight"
            );
            tokio::task::yield_now().await;
        }
        broker.stop();
        let at_stop = status.snapshot();
        assert!(
            at_stop.depth > 0,
            "outage {outage}: the drain was over before it: {at_stop:#?}"
        );
        wait(&mut status, "sees the outage", |s| !s.connected).await;
        assert_eq!(in_flight.get(), 0, "every unsettled batch is dropped");
        // Events committed during the outage go after the others.
        commit(&store, "late", 20).await;
        broker.restart();
    }
    let expected = outbox(&store);
    let last = expected.last().unwrap().0;
    let done = wait(&mut status, "caught up", |s| s.cursor == Some(last)).await;
    assert_eq!((done.depth, done.oldest_pending_ms), (0, None));
    assert!(in_flight.most.load(Ordering::SeqCst) >= 3);

    let mut got = Vec::new();
    let mut seen = HashSet::new();
    while seen.len() < expected.len() {
        let Some(message) = cloud.next(Duration::from_secs(10)).await else {
            panic!("{} of {} events arrived", seen.len(), expected.len());
        };
        let json = message.json();
        let seq = json["seq"].as_u64().expect("seq");
        let id = json["event"]["id"].as_str().expect("event.id").to_owned();
        seen.insert(seq);
        got.push((seq, id));
    }
    for message in cloud.drain(Duration::from_millis(300)).await {
        let json = message.json();
        got.push((
            json["seq"].as_u64().unwrap(),
            json["event"]["id"].as_str().unwrap().to_owned(),
        ));
    }
    // Duplicates (the batches in flight at each outage) carry the same id; the first arrival
    // of each event is the outbox, in order.
    let ids: HashMap<u64, String> = expected.iter().cloned().collect();
    assert!(got.iter().all(|(seq, id)| ids[seq] == *id));
    let mut first_time = HashSet::new();
    let deduplicated: Vec<_> = got
        .into_iter()
        .filter(|(seq, _)| first_time.insert(*seq))
        .collect();
    assert_eq!(deduplicated, expected);

    cancel.cancel();
    task.await.unwrap();
}
