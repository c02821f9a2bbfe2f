//! The uplink: the store's durable outbox, drained to the central cloud.
//!
//! The store puts every committed event in its outbox in the same commit. A [`sender::Sender`]
//! per upstream reads the outbox in commit order after its cursor, hands a batch to its
//! [`Publisher`] and moves the cursor (durably, in the store) only once the broker has
//! acknowledged the whole batch. Delivery is therefore at-least-once across crashes, broker
//! outages and reconnects; a message sent twice carries the same event id, by which the cloud
//! drops duplicates. No client library's in-memory queue is trusted: the outbox is the only
//! source of truth.
//!
//! * [`schema`]: the versioned JSON on the wire (documented in `docs/uplink-schema.md`).
//! * [`backoff`]: exponential backoff with full jitter, paced reconnects.
//! * [`sender`]: the drain loop, its cursor and its [`sender::UplinkStatus`].
//! * [`mqtt`]: the MQTT 5 upstream (rumqttc), done only on PUBACK.
//! * [`kafka`]: the Kafka upstream (rdkafka), an idempotent producer, done only on acks=all.
//! * [`media`]: the media of delivered events, queued durably and uploaded after them over MQTT
//!   or to S3 ([`s3`]), each followed by a reference to where it went.
//! * [`telemetry`]: the box's health snapshot (`/proc`, `/sys`), sent best-effort on the MQTT
//!   side channel.

pub mod backoff;
pub mod commands;
pub mod kafka;
pub mod media;
pub mod mqtt;
pub mod s3;
pub mod schema;
pub mod sender;
pub mod telemetry;

use std::future::Future;
use std::time::Duration;

use crate::media::MediaQueue;

/// One event on its way upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// The event's outbox sequence.
    pub seq: u64,
    /// The camera id: the Kafka message key, so each camera's events keep their order.
    pub key: String,
    /// The [`schema`] JSON of the message.
    pub payload: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("not connected: {0}")]
    Connection(String),
    #[error("rejected: {0}")]
    Rejected(String),
    #[error("timed out after {0:?}")]
    Timeout(Duration),
}

/// An upstream broker connection, driven by a [`sender::Sender`].
pub trait Publisher: Send + 'static {
    /// Delivers `batch` in order and returns once the broker acknowledged every message
    /// (MQTT PUBACK at QoS 1; Kafka acks=all); on error the whole batch is sent again later.
    /// An empty batch only checks the connection, making it if needed: the sender calls it
    /// while idle so that status and reconnects do not wait for the next event.
    fn publish(
        &mut self,
        batch: &[Outgoing],
    ) -> impl Future<Output = Result<(), PublishError>> + Send;

    /// Sends `batch` in order without waiting for the broker's acknowledgements; the returned
    /// [`Ticket`] is handed to [`Publisher::settle`], which waits for them. The sender submits
    /// several batches before settling the first, so that the broker always has the next
    /// messages to answer (a broker that delays its last acknowledgements, as mosquitto with
    /// Nagle's algorithm does, then costs no round trip per batch). Tickets are settled in the
    /// order they were submitted; after any error the sender drops every unsettled ticket and
    /// submits their batches again.
    ///
    /// The default keeps the batch in the ticket and sends it only in `settle`, with
    /// [`Publisher::publish`]: one batch at a time, as before.
    fn submit(
        &mut self,
        batch: &[Outgoing],
    ) -> impl Future<Output = Result<Ticket, PublishError>> + Send {
        let ticket = Ticket(TicketKind::Deferred(batch.to_vec()));
        async move { Ok(ticket) }
    }

    /// Returns once the broker acknowledged every message of the ticket's batch, and every
    /// batch submitted before it; an error means the batch (and every later one) must be sent
    /// again.
    fn settle(&mut self, ticket: Ticket) -> impl Future<Output = Result<(), PublishError>> + Send {
        async move {
            match ticket.0 {
                TicketKind::Deferred(batch) => self.publish(&batch).await,
                TicketKind::Mqtt(_) => Err(PublishError::Rejected(
                    "a ticket of another publisher".to_owned(),
                )),
            }
        }
    }

    /// "mqtt", "kafka": for logs, metrics, the cursor's key.
    fn name(&self) -> &'static str;

    /// Where the sender queues the media of the events this upstream delivered, in the commit
    /// that moves its cursor, for an uploader to send after them; `None`: this upstream sends
    /// no media.
    fn media_queue(&self) -> Option<&MediaQueue> {
        None
    }
}

/// A batch [`Publisher::submit`] took, for [`Publisher::settle`].
#[derive(Debug)]
pub struct Ticket(TicketKind);

#[derive(Debug)]
enum TicketKind {
    /// Not sent yet: [`Publisher::settle`]'s default publishes it.
    Deferred(Vec<Outgoing>),
    /// On an MQTT connection, waiting for its PUBACKs.
    Mqtt(mqtt::Submitted),
}
