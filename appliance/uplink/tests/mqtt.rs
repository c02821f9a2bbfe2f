//! The MQTT upstream against a real mosquitto and a real store: order, schema, cursor across
//! restarts, broker outages, presence, credentials, TLS and the side channel.

mod support;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use appliance_store::EventStore;
use appliance_uplink::PublishError;
use appliance_uplink::mqtt::{MqttConfig, MqttPublisher, MqttSideChannel};
use appliance_uplink::sender::{Sender, SenderOptions, StatusHandle, UplinkStatus};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use appliance_tests::brokers::{BrokerOptions, Mosquitto};
use support::{Message, Subscriber, TestCa, commit, event, open_store, outbox, quick_options};

const DEVICE: &str = "box-1";
const EVENTS: &str = "appliance/box-1/events";
const STATUS: &str = "appliance/box-1/status";
const TELEMETRY: &str = "appliance/box-1/telemetry";

struct Running {
    status: StatusHandle,
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

impl Running {
    fn start(store: &EventStore, config: MqttConfig, options: SenderOptions) -> Running {
        let publisher = MqttPublisher::new(config).expect("valid MQTT config");
        Running::with(store, publisher, options)
    }

    fn with(store: &EventStore, publisher: MqttPublisher, options: SenderOptions) -> Running {
        let sender = Sender::new(store.clone(), publisher, DEVICE, options).unwrap();
        let status = sender.status();
        let cancel = CancellationToken::new();
        let task = tokio::spawn(sender.run(cancel.clone()));
        Running {
            status,
            cancel,
            task,
        }
    }

    async fn wait(&mut self, what: &str, done: impl FnMut(&UplinkStatus) -> bool) -> UplinkStatus {
        let waited =
            tokio::time::timeout(Duration::from_secs(20), self.status.wait_for(done)).await;
        match waited {
            Ok(Some(status)) => status,
            _ => panic!("{what}: status {:#?}", self.status.snapshot()),
        }
    }

    /// Stops the sender; its connection closes without DISCONNECT, as when the daemon dies.
    async fn stop(self) {
        self.cancel.cancel();
        self.task.await.unwrap();
    }
}

/// (seq, event id) of event messages, checking the envelope of each.
fn received(messages: &[Message]) -> Vec<(u64, String)> {
    messages
        .iter()
        .map(|m| {
            assert_eq!(m.topic, EVENTS);
            let json = m.json();
            assert_eq!(json["schema"], "appliance.event.v1", "{json}");
            assert_eq!(json["device_id"], DEVICE);
            let seq = json["seq"].as_u64().expect("seq");
            let id = json["event"]["id"].as_str().expect("event.id").to_owned();
            (seq, id)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_arrive_in_commit_order_with_schema_v1_and_their_ids() {
    let broker = Mosquitto::start(BrokerOptions::default());
    let mut cloud = Subscriber::connect(broker.port, EVENTS, "cloud", false).await;
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    commit(&store, "cam-a", 40).await;
    store.append(event("cam-b", 0)).await.unwrap();
    commit(&store, "cam-c", 80).await;

    let mut sender = Running::start(
        &store,
        MqttConfig::new(broker.url(), DEVICE),
        quick_options(),
    );
    let got = cloud.take(121, Duration::from_secs(10)).await;
    assert_eq!(
        received(&got),
        outbox(&store),
        "every event once, in commit order"
    );
    let json = got[40].json();
    assert_eq!(json["event"]["camera_id"], "cam-b");
    assert_eq!(json["event"]["type"], "intrusion");
    assert!(got.iter().all(|m| !m.retain));

    let last = outbox(&store).last().unwrap().0;
    let status = sender
        .wait("all delivered", |s| s.cursor == Some(last))
        .await;
    assert_eq!(status.delivered, 121);
    assert!(status.connected);
    assert_eq!((status.depth, status.oldest_pending_ms), (0, None));

    // Events committed while the sender idles go out too, woken by the commit.
    commit(&store, "cam-d", 3).await;
    let more = cloud.take(3, Duration::from_secs(5)).await;
    assert_eq!(received(&more), outbox(&store)[121..]);
    assert!(cloud.drain(Duration::from_millis(300)).await.is_empty());
    sender.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_sender_resumes_after_its_cursor() {
    let broker = Mosquitto::start(BrokerOptions::default());
    let mut cloud = Subscriber::connect(broker.port, EVENTS, "cloud", false).await;
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    commit(&store, "cam", 20).await;
    let sender = Running::start(
        &store,
        MqttConfig::new(broker.url(), DEVICE),
        quick_options(),
    );
    assert_eq!(cloud.take(20, Duration::from_secs(10)).await.len(), 20);
    let mut sender = sender;
    sender.wait("20 delivered", |s| s.delivered == 20).await;
    sender.stop().await;

    // Committed while the daemon is down: sent by the next one, and only those.
    commit(&store, "cam", 10).await;
    let mut restarted = Running::start(
        &store,
        MqttConfig::new(broker.url(), DEVICE),
        quick_options(),
    );
    let got = cloud.take(10, Duration::from_secs(10)).await;
    assert_eq!(received(&got), outbox(&store)[20..]);
    restarted.wait("10 delivered", |s| s.delivered == 10).await;
    assert!(
        cloud.drain(Duration::from_millis(500)).await.is_empty(),
        "nothing acknowledged before the restart is sent again"
    );
    restarted.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_puback_delivers_and_what_was_not_acknowledged_is_sent_again() {
    let broker = Mosquitto::start(BrokerOptions::default());
    let mut cloud = Subscriber::connect(broker.port, EVENTS, "cloud", false).await;
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let mut sender = Running::start(
        &store,
        MqttConfig::new(broker.url(), DEVICE),
        quick_options(),
    );
    sender.wait("connected", |s| s.connected).await;

    // A broker that takes the bytes but answers nothing: no PUBACK, no delivery.
    broker.freeze();
    commit(&store, "cam", 5).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let waiting = sender.status.snapshot();
    assert_eq!(
        (waiting.delivered, waiting.cursor, waiting.depth),
        (0, None, 5),
        "{waiting:#?}"
    );
    assert!(
        waiting.oldest_pending_ms.is_some_and(|ms| ms >= 900),
        "{waiting:#?}"
    );
    // The daemon restarts with that batch unacknowledged.
    sender.stop().await;
    broker.thaw();

    let mut restarted = Running::start(
        &store,
        MqttConfig::new(broker.url(), DEVICE),
        quick_options(),
    );
    let last = outbox(&store).last().unwrap().0;
    restarted
        .wait("caught up", |s| s.cursor == Some(last))
        .await;
    // The frozen broker may still have passed on what it had read before the restart: those
    // copies come first, and every copy carries the event's id.
    let got = received(&cloud.drain(Duration::from_millis(500)).await);
    assert!((5..=10).contains(&got.len()), "{got:?}");
    let expected = outbox(&store);
    let ids: HashMap<u64, String> = expected.iter().cloned().collect();
    assert!(got.iter().all(|(seq, id)| ids[seq] == *id));
    assert_eq!(
        got[got.len() - 5..],
        expected,
        "the new sender sent the whole batch again"
    );
    restarted.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_broker_outage_every_event_arrives_in_order() {
    let mut broker = Mosquitto::start(BrokerOptions::default());
    // A persistent session: the broker keeps the cloud's subscription and queue over its restart.
    let mut cloud = Subscriber::connect(broker.port, EVENTS, "cloud", true).await;
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    for _ in 0..20 {
        commit(&store, "cam", 100).await;
    }
    let mut sender = Running::start(
        &store,
        MqttConfig::new(broker.url(), DEVICE),
        quick_options(),
    );
    sender.wait("draining", |s| s.delivered >= 300).await;

    // Down in the middle of the drain: the batch in flight is not acknowledged.
    broker.stop();
    let at_stop = sender.status.snapshot().delivered;
    assert!(
        at_stop < 2000,
        "the drain was over before the outage ({at_stop} delivered)"
    );
    let down = sender.wait("sees the outage", |s| !s.connected).await;
    assert!(down.last_error.is_some());
    for _ in 0..5 {
        commit(&store, "late", 20).await;
    }
    let refused = sender
        .wait("reconnects refused", |s| {
            s.last_error
                .as_deref()
                .is_some_and(|e| e.contains("connection refused"))
        })
        .await;
    assert!(
        refused.depth > 0 && refused.oldest_pending_ms.is_some(),
        "{refused:#?}"
    );

    broker.restart();
    let expected = outbox(&store);
    let last = expected.last().unwrap().0;
    sender.wait("caught up", |s| s.cursor == Some(last)).await;

    let mut got = Vec::new();
    let mut seen = HashSet::new();
    while seen.len() < expected.len() {
        let Some(message) = cloud.next(Duration::from_secs(10)).await else {
            panic!("{} of {} events arrived", seen.len(), expected.len());
        };
        let (seq, id) = received(std::slice::from_ref(&message)).remove(0);
        seen.insert(seq);
        got.push((seq, id));
    }
    got.extend(received(&cloud.drain(Duration::from_millis(300)).await));
    // Duplicates carry the same id; without them the stream is the outbox, in order.
    let ids: HashMap<u64, String> = expected.iter().cloned().collect();
    assert!(got.iter().all(|(seq, id)| ids[seq] == *id));
    let mut first_time = HashSet::new();
    let deduplicated: Vec<_> = got
        .into_iter()
        .filter(|(seq, _)| first_time.insert(*seq))
        .collect();
    assert_eq!(deduplicated, expected);
    sender.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_is_retained_online_and_the_last_will_says_offline() {
    let broker = Mosquitto::start(BrokerOptions::default());
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    // Nothing to send: the idle sender still connects and says it is online.
    let mut sender = Running::start(
        &store,
        MqttConfig::new(broker.url(), DEVICE),
        quick_options(),
    );
    sender.wait("connected", |s| s.connected).await;

    let mut watcher = Subscriber::connect(broker.port, STATUS, "watcher", false).await;
    let online = watcher
        .next(Duration::from_secs(5))
        .await
        .expect("retained status");
    assert!(online.retain);
    let json = online.json();
    assert_eq!(json["schema"], "appliance.status.v1");
    assert_eq!(json["device_id"], DEVICE);
    assert_eq!(json["state"], "online");
    assert!(json["at"].is_string());

    // The daemon dies: no DISCONNECT, so the broker publishes the will.
    sender.stop().await;
    let offline = watcher
        .next(Duration::from_secs(5))
        .await
        .expect("last will");
    assert_eq!(offline.json()["state"], "offline");
    let mut late = Subscriber::connect(broker.port, STATUS, "late", false).await;
    let retained = late
        .next(Duration::from_secs(5))
        .await
        .expect("retained will");
    assert!(retained.retain);
    assert_eq!(
        retained.json(),
        serde_json::json!({"schema": "appliance.status.v1", "device_id": DEVICE, "state": "offline"})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_a_clear_status_and_reconnects_are_paced() {
    let broker = Mosquitto::start(BrokerOptions {
        users: vec![("box".into(), "right".into())],
        ..BrokerOptions::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    store.append(event("cam", 0)).await.unwrap();
    let mut config = MqttConfig::new(broker.url(), DEVICE);
    config.username = Some("box".into());
    config.password = Some("wrong".into());
    // The production pacing: from up to 1 s, doubling.
    let paced = SenderOptions {
        backoff_base: Duration::from_secs(1),
        backoff_cap: Duration::from_secs(60),
        ..quick_options()
    };
    let mut sender = Running::start(&store, config.clone(), paced);
    let failing = sender.wait("refused", |s| s.last_error.is_some()).await;
    assert!(!failing.connected);
    let error = failing.last_error.unwrap();
    assert!(
        error.contains("refused the connection: not authorized"),
        "{error}"
    );
    assert!(error.contains(&broker.url()), "{error}");

    tokio::time::sleep(Duration::from_secs(3)).await;
    let attempts = broker.connection_attempts();
    assert!(
        (2..=8).contains(&attempts),
        "{attempts} connection attempts in ~3 s"
    );
    let status = sender.status.snapshot();
    // Each attempt the broker saw is a failure the status counts (one may be under way).
    let failures = status.consecutive_failures as usize;
    assert!(
        failures + 1 >= attempts && failures <= attempts,
        "{failures} vs {attempts}"
    );
    assert_eq!((status.cursor, status.depth), (None, 1));
    assert!(!sender.task.is_finished(), "still trying, not crashed");
    sender.stop().await;

    // The same box with the right password gets through: the refusal was the password.
    config.password = Some("right".into());
    let mut fixed = Running::start(&store, config, quick_options());
    fixed.wait("delivered", |s| s.delivered == 1).await;
    fixed.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_test_ca_and_a_clear_error_for_the_wrong_one() {
    let ca = TestCa::new("uplink test CA");
    let broker = Mosquitto::start(BrokerOptions {
        tls: Some(ca.listener_files()),
        ..BrokerOptions::default()
    });
    let mut cloud = Subscriber::connect(broker.port, EVENTS, "cloud", false).await;
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    commit(&store, "cam", 5).await;

    let mut config = MqttConfig::new(broker.tls_url(), DEVICE);
    config.ca_file = Some(ca.ca.clone());
    config.client_cert = Some(ca.client.0.clone());
    config.client_key = Some(ca.client.1.clone());
    let mut sender = Running::start(&store, config.clone(), quick_options());
    let got = cloud.take(5, Duration::from_secs(10)).await;
    assert_eq!(received(&got), outbox(&store));
    sender
        .wait("delivered over TLS", |s| s.delivered == 5)
        .await;
    sender.stop().await;

    // A CA that did not sign the broker's certificate.
    let other = TestCa::new("another CA");
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    config.ca_file = Some(other.ca.clone());
    let mut wrong = Running::start(&store, config, quick_options());
    let status = wrong.wait("refused", |s| s.last_error.is_some()).await;
    let error = status.last_error.unwrap();
    assert!(!status.connected);
    assert!(
        error.contains("TLS handshake with mqtts://127.0.0.1"),
        "{error}"
    );
    assert!(error.contains("UnknownIssuer"), "{error}");
    wrong.stop().await;
}

/// Publishes `{"n": n}` on the side channel until the subscriber has one, or panics; returns
/// the `n` it got. QoS 0 reaches only a subscriber connected at that moment, so a subscriber
/// that reconnects after a broker restart needs more than one try.
async fn telemetry_arrives(side: &MqttSideChannel, watcher: &mut Subscriber) -> u64 {
    for n in 0..50 {
        // Not connected yet is fine: the sender reconnects with its backoff.
        let _ = side
            .publish("telemetry", format!(r#"{{"n":{n}}}"#).into_bytes())
            .await;
        if let Some(message) = watcher.next(Duration::from_millis(200)).await {
            assert_eq!(message.topic, TELEMETRY);
            assert!(!message.retain);
            return message.json()["n"].as_u64().expect("n");
        }
    }
    panic!("no side-channel message arrived");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_side_channel_shares_the_connection_and_never_queues() {
    let mut broker = Mosquitto::start(BrokerOptions::default());
    let mut cloud = Subscriber::connect(broker.port, EVENTS, "cloud", false).await;
    let mut watcher = Subscriber::connect(broker.port, TELEMETRY, "watcher", true).await;
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    for _ in 0..10 {
        commit(&store, "cam", 200).await;
    }
    let publisher = MqttPublisher::new(MqttConfig::new(broker.url(), DEVICE)).unwrap();
    let side = publisher.side_channel();
    assert_eq!(side.topic("telemetry"), TELEMETRY);

    // Before the first connection: refused at once, and not sent once it connects.
    let started = Instant::now();
    let refused = side.publish("telemetry", b"{}".to_vec()).await;
    assert!(
        matches!(refused, Err(PublishError::Connection(_))),
        "{refused:?}"
    );
    assert!(started.elapsed() < Duration::from_millis(100));

    let mut sender = Running::with(&store, publisher, quick_options());
    sender.wait("connected", |s| s.connected).await;
    // Telemetry goes while the backlog drains, on the same connection.
    let sent = side.clone();
    let status = sender.status.clone();
    let side_task = tokio::spawn(async move {
        let delivered_before = status.snapshot().delivered;
        for n in 0..20 {
            sent.publish("telemetry", format!(r#"{{"n":{n}}}"#).into_bytes())
                .await
                .expect("published while connected");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        delivered_before
    });
    let events = cloud.take(2000, Duration::from_secs(20)).await;
    let delivered_before = side_task.await.unwrap();
    assert!(delivered_before < 2000, "the drain was over first");
    assert_eq!(
        received(&events),
        outbox(&store),
        "events unaffected: every one once, in order"
    );
    let side_messages = watcher.drain(Duration::from_millis(500)).await;
    let numbers: Vec<u64> = side_messages
        .iter()
        .map(|m| {
            assert_eq!(m.topic, TELEMETRY);
            m.json()["n"].as_u64().unwrap()
        })
        .collect();
    assert_eq!(
        numbers,
        (0..20).collect::<Vec<_>>(),
        "QoS 0, but on loopback all of them"
    );
    assert!(side_messages.iter().all(|m| !m.retain));
    let status = sender.wait("caught up", |s| s.delivered == 2000).await;
    assert_eq!(status.consecutive_failures, 0);

    // Broker down: the side channel refuses at once instead of queueing.
    broker.stop();
    sender.wait("sees the outage", |s| !s.connected).await;
    let started = Instant::now();
    let refused = side.publish("telemetry", br#"{"n":1000}"#.to_vec()).await;
    assert!(
        matches!(&refused, Err(PublishError::Connection(why)) if why.contains(&broker.url())),
        "{refused:?}"
    );
    assert!(started.elapsed() < Duration::from_millis(100));

    // The same handle publishes on the sender's next connection, and what was refused stays
    // refused: nothing from the outage comes after the restart.
    broker.restart();
    sender.wait("reconnected", |s| s.connected).await;
    let n = telemetry_arrives(&side, &mut watcher).await;
    let later = watcher.drain(Duration::from_millis(300)).await;
    assert!(
        std::iter::once(n)
            .chain(later.iter().map(|m| m.json()["n"].as_u64().unwrap()))
            .all(|n| n < 1000)
    );
    sender.stop().await;
    // The sender's connection is gone with it.
    let refused = side.publish("telemetry", b"{}".to_vec()).await;
    assert!(
        matches!(refused, Err(PublishError::Connection(_))),
        "{refused:?}"
    );
}
