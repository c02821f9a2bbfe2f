//! The Kafka upstream: an idempotent producer (rdkafka over a bundled, statically linked
//! librdkafka) whose `publish` returns only once the brokers acknowledged every message of the
//! batch with acks=all.
//!
//! Messages are keyed by camera id, so each camera's events stay in order on one partition. The
//! idempotent producer keeps librdkafka's own retries from duplicating or reordering messages
//! within a batch; a batch that fails is sent again whole by the sender, so the cloud may see an
//! event twice, always with the same event id.

use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, FromClientConfigAndContext, RDKafkaLogLevel};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::types::RDKafkaRespErr;

use crate::{Outgoing, PublishError, Publisher};

/// What `[uplink.kafka]` configures: where the brokers are and how to talk to them.
#[derive(Debug, Clone)]
pub struct KafkaConfig {
    /// Bootstrap brokers, `host:port[,host:port…]`.
    pub brokers: String,
    /// The topic every event goes to; created at connect when the cluster lacks it.
    pub topic: String,
    /// Shown in the brokers' logs and quotas.
    pub client_id: String,
    pub security: KafkaSecurity,
    /// How long a message may wait for its acknowledgement, queueing and librdkafka's retries
    /// included; `publish` fails by then. Also bounds the metadata and topic-creation requests.
    pub message_timeout: Duration,
}

/// Transport security and authentication (librdkafka's `security.protocol`).
#[derive(Clone)]
pub enum KafkaSecurity {
    Plaintext,
    Ssl(KafkaTls),
    /// SASL/PLAIN or SASL/SCRAM, over TLS when `tls` is set. Without TLS the password of
    /// PLAIN crosses the network in clear text.
    Sasl {
        mechanism: SaslMechanism,
        username: String,
        password: String,
        tls: Option<KafkaTls>,
    },
}

/// TLS files, all PEM.
#[derive(Debug, Clone, Default)]
pub struct KafkaTls {
    /// CA certificates that verify the brokers; `None` trusts OpenSSL's default CA store,
    /// which is what a managed cloud cluster with a public certificate needs.
    pub ca_file: Option<PathBuf>,
    /// Client certificate and its key, for brokers that require mutual TLS: both or neither.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaslMechanism {
    Plain,
    ScramSha256,
    ScramSha512,
}

impl SaslMechanism {
    fn as_librdkafka(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

// By hand, so that the password never reaches a log line.
impl fmt::Debug for KafkaSecurity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KafkaSecurity::Plaintext => f.write_str("Plaintext"),
            KafkaSecurity::Ssl(tls) => f.debug_tuple("Ssl").field(tls).finish(),
            KafkaSecurity::Sasl {
                mechanism,
                username,
                tls,
                ..
            } => f
                .debug_struct("Sasl")
                .field("mechanism", mechanism)
                .field("username", username)
                .field("password", &"<redacted>")
                .field("tls", tls)
                .finish(),
        }
    }
}

/// A [`KafkaConfig`] that cannot work: a client certificate without its key, a TLS file that
/// cannot be read, a zero message timeout, a setting librdkafka refuses.
#[derive(Debug, thiserror::Error)]
#[error("kafka configuration: {0}")]
pub struct KafkaConfigError(String);

/// The Kafka [`Publisher`].
pub struct KafkaPublisher {
    producer: FutureProducer<UplinkContext>,
    /// Connection and security settings without the producer's, for the admin client that
    /// creates the topic (an idempotent admin client would ask the broker for a producer id).
    base_config: ClientConfig,
    producer_config: ClientConfig,
    context: UplinkContext,
    topic: String,
    message_timeout: Duration,
    /// The topic was seen in the cluster's metadata (or created): batches may go.
    topic_ready: bool,
    /// When a broker last answered: a batch acknowledged or the topic's metadata.
    last_contact: Option<Instant>,
    /// A batch was handed to the producer and not fully acknowledged (it failed, or the
    /// sender dropped the future): the next one starts on a new producer. See
    /// [`KafkaPublisher::replace_producer`].
    producer_spent: bool,
}

/// Past `message_timeout`, how long `publish` still waits for librdkafka's own verdict: it
/// scans for timed-out messages about once a second. Only if a delivery report never comes
/// does the guard answer [`PublishError::Timeout`].
const REPORT_GRACE: Duration = Duration::from_secs(2);

/// While idle, how often the connection check (an empty batch, which the sender hands over
/// every second or so) really asks a broker: a metadata request per box per second would add
/// up across a fleet, and librdkafka reconnects by itself when there is something to send.
const IDLE_CHECK_INTERVAL: Duration = Duration::from_secs(30);

/// How long a failure that librdkafka reports at once (no broker reachable) waits for the
/// error callback that says why: it arrives on librdkafka's polling thread, a moment later.
const CAUSE_WAIT: Duration = Duration::from_millis(300);

impl KafkaPublisher {
    /// Builds the producer, which connects in the background; the first `publish` (an empty
    /// batch too) checks that the topic exists. Fails only on settings librdkafka refuses.
    pub fn new(config: KafkaConfig) -> Result<Self, KafkaConfigError> {
        // librdkafka reads a message timeout of 0 as "never".
        if config.message_timeout < Duration::from_millis(1) {
            return Err(KafkaConfigError(format!(
                "message timeout {:?}: at least 1 ms",
                config.message_timeout
            )));
        }
        let base_config = base_config(&config)?;
        let producer_config = producer_config(&base_config, config.message_timeout);
        let context = UplinkContext::default();
        let producer = FutureProducer::from_config_and_context(&producer_config, context.clone())
            .map_err(|e| KafkaConfigError(e.to_string()))?;
        Ok(KafkaPublisher {
            producer,
            base_config,
            producer_config,
            context,
            topic: config.topic,
            message_timeout: config.message_timeout,
            topic_ready: false,
            last_contact: None,
            producer_spent: false,
        })
    }

    /// Drops the producer that still holds (or lost) part of an unacknowledged batch and
    /// starts a new one, which asks the broker for a new producer id. The outbox re-sends the
    /// batch anyway, so librdkafka's leftovers could only add duplicates; and a producer id the
    /// broker has forgotten (its producer state expired while the box was offline, or it was
    /// restarted without it, as tansu is) can leave librdkafka bumping the epoch of the
    /// unknown id over and over, or failing fatally, where a new producer simply works.
    fn replace_producer(&mut self) -> Result<(), PublishError> {
        let producer =
            FutureProducer::from_config_and_context(&self.producer_config, self.context.clone())
                .map_err(|e| PublishError::Connection(format!("new producer: {e}")))?;
        let spent = std::mem::replace(&mut self.producer, producer);
        // Dropping purges librdkafka's queue and joins its threads: up to about a second.
        tokio::task::spawn_blocking(move || drop(spent));
        self.producer_spent = false;
        Ok(())
    }

    /// Looks the topic up in the cluster's metadata and creates it when it is missing: a
    /// cluster that does not auto-create topics (tansu does not) would otherwise fail every
    /// message with "unknown topic" until someone created it by hand.
    async fn ensure_topic(&mut self) -> Result<(), PublishError> {
        let producer = self.producer.clone();
        let topic = self.topic.clone();
        let timeout = self.message_timeout;
        // rd_kafka_metadata blocks for up to `timeout`.
        let lookup = tokio::task::spawn_blocking(move || {
            let metadata = producer.client().fetch_metadata(Some(&topic), timeout)?;
            Ok::<_, KafkaError>(
                metadata
                    .topics()
                    .iter()
                    .find(|t| t.name() == topic)
                    .map(|t| (t.error(), t.partitions().len())),
            )
        })
        .await
        .map_err(|e| PublishError::Connection(format!("metadata lookup panicked: {e}")))?;
        let found = match lookup {
            Ok(found) => found,
            Err(error) => return Err(self.failure(&error, "fetching metadata").await),
        };
        match found {
            Some((None, partitions)) if partitions > 0 => {}
            None | Some((Some(RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART), _)) => {
                self.create_topic().await?
            }
            Some((error, _)) => {
                let cause = error.map_or_else(
                    || "no partitions".to_owned(),
                    |e| RDKafkaErrorCode::from(e).to_string(),
                );
                return Err(PublishError::Connection(format!(
                    "topic {:?} not usable: {cause}",
                    self.topic
                )));
            }
        }
        self.topic_ready = true;
        self.last_contact = Some(Instant::now());
        self.context.clear_error();
        Ok(())
    }

    async fn create_topic(&self) -> Result<(), PublishError> {
        let admin: AdminClient<UplinkContext> =
            AdminClient::from_config_and_context(&self.base_config, self.context.clone())
                .map_err(|e| PublishError::Connection(format!("admin client: {e}")))?;
        // -1: the cluster's default partition count and replication factor, which its
        // operators chose; per-camera order holds with any partition count.
        let new_topic = NewTopic::new(&self.topic, -1, TopicReplication::Fixed(-1));
        let options = AdminOptions::new()
            .request_timeout(Some(self.message_timeout))
            .operation_timeout(Some(self.message_timeout));
        let results = match admin.create_topics([&new_topic], &options).await {
            Ok(results) => results,
            Err(error) => return Err(self.failure(&error, "creating the topic").await),
        };
        for result in results {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((name, code)) => {
                    return Err(PublishError::Rejected(format!(
                        "cannot create topic {name:?}: {code}"
                    )));
                }
            }
        }
        tracing::info!(topic = %self.topic, "kafka: created the topic");
        Ok(())
    }

    /// Turns a librdkafka error into a [`PublishError`] that names the cause.
    async fn failure(&self, error: &KafkaError, doing: &str) -> PublishError {
        use RDKafkaErrorCode as Code;
        let Some(code) = error.rdkafka_error_code() else {
            return PublishError::Connection(format!("{doing}: {error}"));
        };
        match code {
            // librdkafka retries a broker that is down or refuses us until the timeout and then
            // reports only the timeout (or, with no broker up at all, only "transport failure");
            // the cause is what its error callback saw meanwhile.
            Code::MessageTimedOut
            | Code::OperationTimedOut
            | Code::RequestTimedOut
            | Code::BrokerTransportFailure
            | Code::AllBrokersDown => match self.context.cause(CAUSE_WAIT).await {
                Some(cause) => PublishError::Connection(format!("{doing}: {error}: {cause}")),
                None if matches!(code, Code::MessageTimedOut) => {
                    PublishError::Timeout(self.message_timeout)
                }
                None => PublishError::Connection(format!("{doing}: {error}")),
            },
            Code::UnknownTopicOrPartition | Code::UnknownTopic | Code::UnknownPartition => {
                PublishError::Rejected(format!("{doing}: topic {:?}: {error}", self.topic))
            }
            Code::Fatal => {
                let reason = self
                    .producer
                    .client()
                    .fatal_error()
                    .map_or_else(String::new, |(code, reason)| format!(": {code}: {reason}"));
                PublishError::Connection(format!("{doing}: fatal producer error{reason}"))
            }
            Code::MessageSizeTooLarge
            | Code::InvalidMessage
            | Code::InvalidMessageSize
            | Code::InvalidRecord
            | Code::TopicAuthorizationFailed
            | Code::PolicyViolation => PublishError::Rejected(format!("{doing}: {error}")),
            _ => PublishError::Connection(format!("{doing}: {error}")),
        }
    }

    async fn send(&mut self, batch: &[Outgoing]) -> Result<(), PublishError> {
        if self.producer_spent {
            self.replace_producer()?;
        }
        if batch.is_empty() {
            // The sender's connection check: a metadata request is a round trip to a broker,
            // and it is what creates a missing topic.
            let recent = self
                .last_contact
                .is_some_and(|at| at.elapsed() < IDLE_CHECK_INTERVAL);
            if !(self.topic_ready && recent) {
                self.ensure_topic().await?;
            }
            return Ok(());
        }
        if !self.topic_ready {
            self.ensure_topic().await?;
        }
        self.producer_spent = true;
        let mut deliveries = Vec::with_capacity(batch.len());
        for message in batch {
            let record = FutureRecord::to(&self.topic)
                .key(message.key.as_str())
                .payload(message.payload.as_slice());
            match self.producer.send_result(record) {
                Ok(delivery) => deliveries.push(delivery),
                // Only local reasons (queue full, a fatal producer error).
                Err((error, _)) => return Err(self.failure(&error, "queueing").await),
            }
        }
        let acknowledged = async {
            for delivery in deliveries {
                match delivery.await {
                    Ok(Ok(_)) => {}
                    Ok(Err((error, _))) => return Err(error),
                    Err(_) => return Err(KafkaError::Canceled),
                }
            }
            Ok(())
        };
        match tokio::time::timeout(self.message_timeout + REPORT_GRACE, acknowledged).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => return Err(self.failure(&error, "delivering").await),
            Err(_) => return Err(PublishError::Timeout(self.message_timeout + REPORT_GRACE)),
        }
        self.producer_spent = false;
        self.last_contact = Some(Instant::now());
        self.context.clear_error();
        Ok(())
    }
}

impl Publisher for KafkaPublisher {
    async fn publish(&mut self, batch: &[Outgoing]) -> Result<(), PublishError> {
        let result = self.send(batch).await;
        if result.is_err() {
            // Look again before the next batch: the topic may be gone (a broker that lost its
            // storage, a deleted topic), and the metadata request is a cheap first contact.
            self.topic_ready = false;
        }
        result
    }

    fn name(&self) -> &'static str {
        "kafka"
    }
}

/// Connection, security and logging: what the producer and the admin client share.
fn base_config(config: &KafkaConfig) -> Result<ClientConfig, KafkaConfigError> {
    let mut client = ClientConfig::new();
    client
        .set("bootstrap.servers", &config.brokers)
        .set("client.id", &config.client_id)
        // Brokers close idle connections (Kafka after 10 minutes); librdkafka reconnects on
        // demand, and reporting each close as an error would make it the "cause" of the next
        // unrelated failure.
        .set("log.connection.close", "false")
        // After an outage, be back within a second or two rather than librdkafka's 10 s
        // backoff ceiling: the outbox backlog is waiting, and it is one connection per broker.
        .set("reconnect.backoff.max.ms", "2000")
        // Our context turns every librdkafka line into a debug event anyway (see
        // `UplinkContext::log`); below warning they are only protocol chatter.
        .set_log_level(RDKafkaLogLevel::Warning);
    let (protocol, tls) = match &config.security {
        KafkaSecurity::Plaintext => ("plaintext", None),
        KafkaSecurity::Ssl(tls) => ("ssl", Some(tls)),
        KafkaSecurity::Sasl {
            mechanism,
            username,
            password,
            tls,
        } => {
            client
                .set("sasl.mechanism", mechanism.as_librdkafka())
                .set("sasl.username", username)
                .set("sasl.password", password);
            match tls {
                Some(tls) => ("sasl_ssl", Some(tls)),
                None => ("sasl_plaintext", None),
            }
        }
    };
    client.set("security.protocol", protocol);
    if let Some(tls) = tls {
        if let Some(ca) = &tls.ca_file {
            client.set("ssl.ca.location", tls_file("CA file", ca)?);
        }
        match (&tls.cert_file, &tls.key_file) {
            (Some(cert), Some(key)) => {
                client
                    .set("ssl.certificate.location", tls_file("certificate", cert)?)
                    .set("ssl.key.location", tls_file("key file", key)?);
            }
            (None, None) => {}
            _ => {
                return Err(KafkaConfigError(
                    "a client certificate needs its key file and a key its certificate".into(),
                ));
            }
        }
    }
    Ok(client)
}

fn producer_config(base: &ClientConfig, message_timeout: Duration) -> ClientConfig {
    let timeout_ms = message_timeout.as_millis().min(i32::MAX as u128);
    // librdkafka's ceiling for a request's timeout: 900 s.
    let request_timeout_ms = timeout_ms.min(900_000);
    let mut client = base.clone();
    client
        // Broker-side deduplication by producer id and sequence number: librdkafka's internal
        // retries after a lost acknowledgement neither duplicate nor reorder messages.
        .set("enable.idempotence", "true")
        // Done means written to every in-sync replica (idempotence requires it too).
        .set("acks", "all")
        // The broker keeps the sequence state of only the last 5 batches per producer and
        // partition; with more in flight it could not tell a retry from a gap, so idempotence
        // requires at most 5.
        .set("max.in.flight.requests.per.connection", "5")
        // Also bounds the queueing time, so a broker that is down fails the batch in time.
        .set("message.timeout.ms", timeout_ms.to_string())
        // With idempotence a request in flight is never abandoned before its own timeout:
        // keep that within the message timeout too.
        .set("request.timeout.ms", request_timeout_ms.to_string())
        // The Java client's partitioner: a camera's events land on the partition any other
        // Kafka client would choose for the same key.
        .set("partitioner", "murmur2_random")
        // The outbox already batches, and `publish` waits for a whole batch: librdkafka's
        // default 5 ms linger would be paid once per batch for nothing (`just bench uplink`
        // measured 1.26 s against 0.10 s for 20,000 events in batches of 100).
        .set("linger.ms", "0");
    client
}

/// A TLS file's path for librdkafka, opened first: librdkafka's own error for a file it
/// cannot read ("ssl.ca.location failed: x509 certificate routines::system lib") names neither
/// the file nor the reason.
fn tls_file<'a>(what: &str, path: &'a Path) -> Result<&'a str, KafkaConfigError> {
    File::open(path).map_err(|e| KafkaConfigError(format!("{what} {}: {e}", path.display())))?;
    path.to_str()
        .ok_or_else(|| KafkaConfigError(format!("{what} {} is not UTF-8", path.display())))
}

/// librdkafka's callbacks: its log lines and its errors outside any single message.
#[derive(Clone, Default)]
struct UplinkContext {
    /// The latest connection-level error (refused, resolver, TLS, SASL), until a batch goes
    /// through: the cause that a timeout alone would not name.
    last_error: Arc<Mutex<Option<String>>>,
}

impl UplinkContext {
    /// The latest error, waiting up to `wait` for one to arrive.
    async fn cause(&self, wait: Duration) -> Option<String> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let last = self
                .last_error
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            if last.is_some() || tokio::time::Instant::now() >= deadline {
                return last;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn clear_error(&self) {
        *self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = None;
    }
}

impl ClientContext for UplinkContext {
    /// While a broker is down librdkafka logs each reconnect attempt. The sender already
    /// reports the failure (status, metrics, a rate-limited log line) from the
    /// [`PublishError`], which names the cause, so librdkafka's own lines are debug events.
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        tracing::debug!(target: "librdkafka", ?level, facility, "{message}");
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::debug!(target: "librdkafka", %error, "{reason}");
        let mut last = self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // "1/1 brokers are down" follows each broker's own failure; keep the one that says why.
        if last.is_none() || error.rdkafka_error_code() != Some(RDKafkaErrorCode::AllBrokersDown) {
            *last = Some(reason.to_owned());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(security: KafkaSecurity) -> KafkaConfig {
        KafkaConfig {
            brokers: "127.0.0.1:9".into(),
            topic: "events".into(),
            client_id: "box-1".into(),
            security,
            message_timeout: Duration::from_secs(5),
        }
    }

    fn refusal(security: KafkaSecurity) -> String {
        match KafkaPublisher::new(config(security)) {
            Ok(_) => panic!("accepted"),
            Err(error) => error.to_string(),
        }
    }

    #[test]
    fn a_client_certificate_needs_its_key() {
        let error = refusal(KafkaSecurity::Ssl(KafkaTls {
            cert_file: Some("/etc/appliance/client.pem".into()),
            ..KafkaTls::default()
        }));
        assert!(error.contains("needs its key"), "{error}");
    }

    #[test]
    fn a_missing_ca_file_is_refused_up_front_and_named() {
        let error = refusal(KafkaSecurity::Ssl(KafkaTls {
            ca_file: Some("/nonexistent/kafka-ca.pem".into()),
            ..KafkaTls::default()
        }));
        assert!(error.contains("/nonexistent/kafka-ca.pem"), "{error}");
    }

    #[test]
    fn every_security_setting_is_one_librdkafka_accepts() {
        let tls = KafkaTls::default();
        for security in [
            KafkaSecurity::Plaintext,
            KafkaSecurity::Ssl(tls.clone()),
            KafkaSecurity::Sasl {
                mechanism: SaslMechanism::Plain,
                username: "box-1".into(),
                password: "secret".into(),
                tls: None,
            },
            KafkaSecurity::Sasl {
                mechanism: SaslMechanism::ScramSha512,
                username: "box-1".into(),
                password: "secret".into(),
                tls: Some(tls.clone()),
            },
        ] {
            KafkaPublisher::new(config(security)).expect("librdkafka takes it");
        }
    }

    #[test]
    fn debug_output_hides_the_password() {
        let security = KafkaSecurity::Sasl {
            mechanism: SaslMechanism::ScramSha256,
            username: "box-1".into(),
            password: "hunter2".into(),
            tls: None,
        };
        let shown = format!("{:?}", config(security));
        assert!(
            shown.contains("box-1") && !shown.contains("hunter2"),
            "{shown}"
        );
    }
}
