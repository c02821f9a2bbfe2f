//! The Kafka upstream against a real Kafka-protocol broker: tansu with in-memory storage, one per
//! test on a free loopback port, behind a TLS terminator (socat) for the TLS tests. What it
//! stored is read back with an rdkafka consumer.

#[allow(
    dead_code,
    reason = "shared with tests/mqtt.rs; these tests use only the test CA"
)]
mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use appliance_tests::brokers::Tansu;
use appliance_uplink::kafka::{
    KafkaConfig, KafkaPublisher, KafkaSecurity, KafkaTls, SaslMechanism,
};
use appliance_uplink::{Outgoing, PublishError, Publisher};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use support::TestCa;

const TOPIC: &str = "appliance.events";

fn config(brokers: String, message_timeout: Duration) -> KafkaConfig {
    KafkaConfig {
        brokers,
        topic: TOPIC.into(),
        client_id: "uplink-test".into(),
        security: KafkaSecurity::Plaintext,
        message_timeout,
    }
}

/// `count` events from three cameras, interleaved, sequence numbers from `first`.
fn events(first: u64, count: u64) -> Vec<Outgoing> {
    (first..first + count)
        .map(|seq| Outgoing {
            seq,
            key: format!("cam-{}", seq % 3),
            payload: format!(r#"{{"v":1,"id":"{seq:016x}","type":"person"}}"#).into_bytes(),
        })
        .collect()
}

/// Per camera (message key), its payloads in order.
fn by_camera<'a>(
    messages: impl IntoIterator<Item = (&'a str, &'a [u8])>,
) -> BTreeMap<&'a str, Vec<&'a [u8]>> {
    let mut cameras = BTreeMap::<_, Vec<_>>::new();
    for (key, payload) in messages {
        cameras.entry(key).or_default().push(payload);
    }
    cameras
}

fn sent(events: &[Outgoing]) -> BTreeMap<&str, Vec<&[u8]>> {
    by_camera(
        events
            .iter()
            .map(|e| (e.key.as_str(), e.payload.as_slice())),
    )
}

fn read(messages: &[(String, Vec<u8>)]) -> BTreeMap<&str, Vec<&[u8]>> {
    by_camera(messages.iter().map(|(k, p)| (k.as_str(), p.as_slice())))
}

/// Publishes `batch`, which must fail with a connection error within `timeout` (and 3 s of
/// slack); returns the error's text.
async fn connection_failure(
    publisher: &mut KafkaPublisher,
    batch: &[Outgoing],
    timeout: Duration,
) -> String {
    let started = Instant::now();
    let error = publisher.publish(batch).await.expect_err("the batch fails");
    let took = started.elapsed();
    assert!(
        took < timeout + Duration::from_secs(3),
        "failed after {took:?}, timeout {timeout:?}"
    );
    match error {
        PublishError::Connection(cause) => cause,
        other => panic!("expected a connection error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_batch_arrives_in_order_per_camera_with_its_payloads() {
    let tansu = Tansu::start();
    let mut publisher =
        KafkaPublisher::new(config(tansu.brokers(), Duration::from_secs(10))).expect("publisher");
    assert_eq!(publisher.name(), "kafka");

    let batch = events(1, 60);
    publisher.publish(&batch[..45]).await.expect("first batch");
    publisher.publish(&batch[45..]).await.expect("second batch");

    let messages = tansu.read(TOPIC, batch.len());
    assert_eq!(read(&messages), sent(&batch));
}

#[tokio::test]
async fn the_topic_is_created_when_the_broker_lacks_it() {
    let tansu = Tansu::start();
    // tansu, like many managed clusters, does not create topics on first use.
    let probe: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", tansu.brokers())
        .create()
        .expect("probe client");
    let before = probe
        .fetch_metadata(Some(TOPIC), Duration::from_secs(5))
        .expect("metadata");
    assert!(
        before.topics().iter().all(|t| t.partitions().is_empty()),
        "tansu has no topic {TOPIC} yet"
    );

    let mut publisher =
        KafkaPublisher::new(config(tansu.brokers(), Duration::from_secs(10))).expect("publisher");
    // The sender's idle connection check: an empty batch.
    publisher.publish(&[]).await.expect("connect");

    let after = probe
        .fetch_metadata(Some(TOPIC), Duration::from_secs(5))
        .expect("metadata");
    let topic = &after.topics()[0];
    assert_eq!(topic.error(), None);
    assert!(!topic.partitions().is_empty(), "{TOPIC} has partitions");
}

#[tokio::test]
async fn a_broker_that_is_down_fails_the_batch_in_time_and_says_why() {
    let timeout = Duration::from_secs(3);
    let mut tansu = Tansu::start();
    let mut publisher = KafkaPublisher::new(config(tansu.brokers(), timeout)).expect("publisher");
    publisher.publish(&events(1, 3)).await.expect("broker up");

    tansu.stop();
    let cause = connection_failure(&mut publisher, &events(4, 3), timeout).await;
    assert!(cause.contains("Connection refused"), "{cause}");
}

#[tokio::test]
async fn no_broker_at_all_fails_the_connection_check_in_time() {
    // Nothing listens on a port just taken and released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let timeout = Duration::from_secs(3);
    let mut publisher =
        KafkaPublisher::new(config(format!("127.0.0.1:{port}"), timeout)).expect("publisher");
    let cause = connection_failure(&mut publisher, &[], timeout).await;
    assert!(cause.contains("Connection refused"), "{cause}");
}

#[tokio::test]
async fn after_the_broker_restarts_the_next_batch_goes_through() {
    let timeout = Duration::from_secs(3);
    let mut tansu = Tansu::start();
    let mut publisher = KafkaPublisher::new(config(tansu.brokers(), timeout)).expect("publisher");
    publisher.publish(&events(1, 3)).await.expect("broker up");

    tansu.stop();
    publisher
        .publish(&events(4, 3))
        .await
        .expect_err("the broker is down");

    // Same port, empty storage: the topic is gone too and must be created again.
    tansu.restart();
    let again = events(4, 6);
    publisher.publish(&again).await.expect("the broker is back");
    let messages = tansu.read(TOPIC, again.len());
    assert_eq!(read(&messages), sent(&again));
}

#[tokio::test]
async fn refused_credentials_fail_in_time_and_say_so() {
    let tansu = Tansu::start_authenticating();
    let timeout = Duration::from_secs(3);
    let mut config = config(tansu.brokers(), timeout);
    config.security = KafkaSecurity::Sasl {
        mechanism: SaslMechanism::ScramSha256,
        username: "box-1".into(),
        password: "wrong".into(),
        tls: None,
    };
    let mut publisher = KafkaPublisher::new(config).expect("publisher");
    let cause = connection_failure(&mut publisher, &events(1, 3), timeout).await;
    assert!(cause.contains("SASL authentication error"), "{cause}");
}

fn tls_to(ca: &TestCa) -> KafkaSecurity {
    KafkaSecurity::Ssl(KafkaTls {
        ca_file: Some(ca.ca.clone()),
        ..KafkaTls::default()
    })
}

#[tokio::test]
async fn over_tls_with_the_test_ca_a_batch_arrives_in_order() {
    let ca = TestCa::new("kafka test CA");
    let tansu = Tansu::start_behind_tls(&ca.listener_files());
    let mut config = config(tansu.brokers(), Duration::from_secs(10));
    config.security = tls_to(&ca);
    let mut publisher = KafkaPublisher::new(config).expect("publisher");

    let batch = events(1, 30);
    publisher.publish(&batch[..20]).await.expect("first batch");
    publisher.publish(&batch[20..]).await.expect("second batch");

    // Read back over TLS as well: tansu advertises only the TLS front.
    let messages = tansu.read(TOPIC, batch.len());
    assert_eq!(read(&messages), sent(&batch));
}

#[tokio::test]
async fn over_tls_a_ca_that_did_not_sign_the_broker_fails_in_time_and_says_why() {
    let ca = TestCa::new("kafka test CA");
    let tansu = Tansu::start_behind_tls(&ca.listener_files());
    let other = TestCa::new("another CA");
    let timeout = Duration::from_secs(3);
    let mut config = config(tansu.brokers(), timeout);
    config.security = tls_to(&other);
    let mut publisher = KafkaPublisher::new(config).expect("publisher");

    let cause = connection_failure(&mut publisher, &events(1, 3), timeout).await;
    assert!(cause.contains("SSL handshake failed"), "{cause}");
    assert!(cause.contains("certificate verify failed"), "{cause}");
}
