//! Media after metadata: the snapshots and clips of delivered events, uploaded after them.
//!
//! An alert must not wait for its clip, and a big clip must not hold back the events behind it.
//! So the event message goes first, through the outbox like any event, and its media follow on
//! their own queue: when the [`crate::sender::Sender`] of an upstream that uploads media has
//! delivered a batch, the commit that moves its cursor also queues every media file of the
//! batch's events (state namespace [`MEDIA_NAMESPACE`], one entry per file, keys in delivery
//! order). The queue is thus exactly as durable as the cursor: a crash can neither lose a
//! delivered event's media nor queue them twice.
//!
//! A [`MediaUploader`] drains the queue on its own loop and backoff, oldest first. It reads the
//! file and sends it to one of two places:
//!
//! * over MQTT (the default): one binary message on `<prefix>/<device id>/media/<event id>/<n>`
//!   at QoS 1 on the event publisher's connection, done on its PUBACK;
//! * to an S3-compatible bucket ([`MediaUploader::to_s3`], `[uplink.s3]`): a SigV4-signed `PUT`
//!   of `<prefix>/<device id>/<event id>/<n>-<sha256>.<ext>` ([`crate::s3`]), done on a 2xx.
//!
//! Either way it then publishes the file's reference ([`MEDIA_REF_SCHEMA`]: the event, the
//! file's index and hash, and where it now is) on `<prefix>/<device id>/media_ref` at QoS 1 on the
//! events' connection, and only once that is acknowledged removes the entry, durably: so the
//! cloud learns where each of an event's files went, after the event. A file the destination
//! took whose reference then failed is not sent again by this process, only its reference (a
//! restart sends both again). Since the reference needs the MQTT connection, no file starts
//! without one, S3 or not.
//!
//! Events go first: no file starts while the sender holds events it has read but not delivered,
//! so after an outage the whole event backlog drains before the media. Delivery is
//! at-least-once; a repeated file has the same topic or object key and SHA-256, by which the
//! cloud drops duplicates. A file that retention deleted before its upload, or one larger than
//! the configured maximum or the broker's, is skipped, counted and logged: waiting would not
//! bring it back or make it fit, and it must not block the files behind it. Any other failure
//! (broker or object store away, credentials refused) keeps the file at the head of the queue
//! and is retried with backoff; the events are not affected.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use appliance_model::{EventId, MediaKind, MediaRef, Timestamp};
use appliance_store::{EventStore, StateChange, StoreError};
use rumqttc::v5::mqttbytes::v5::PublishProperties;
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;
use utoipa::ToSchema;

use crate::PublishError;
use crate::backoff::Backoff;
use crate::mqtt::{Acknowledged, MqttPublisher, MqttSideChannel};
use crate::s3::S3Client;

/// The store state namespace of the upload queue: key = [`QueuedMedia::key`], value = the
/// [`QueuedMedia`] as JSON.
pub const MEDIA_NAMESPACE: &str = "uplink.media";
/// The `schema` of the message that tells the cloud where a file went.
pub const MEDIA_REF_SCHEMA: &str = "appliance.media_ref.v1";
/// Its topic, after `<prefix>/<device id>/`.
pub const MEDIA_REF_TOPIC: &str = "media_ref";
/// [`MediaOptions::max_bytes`] by default. Brokers cap their packets (often well below this);
/// the broker's own maximum, when its CONNACK states one, applies as well.
pub const DEFAULT_MAX_MEDIA_BYTES: u64 = 16 << 20;

/// One media file of a delivered event, waiting for its upload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuedMedia {
    /// The event's outbox sequence: the queue's order.
    pub seq: u64,
    pub event_id: EventId,
    /// The file's index in the event's `media` list: the last level of its topic.
    pub n: usize,
    pub media: MediaRef,
}

impl QueuedMedia {
    /// The media of `event`, delivered as outbox sequence `seq`, in the event's order.
    pub fn of_event(
        seq: u64,
        event: &appliance_model::Event,
    ) -> impl Iterator<Item = QueuedMedia> + '_ {
        event
            .media
            .iter()
            .enumerate()
            .map(move |(n, media)| QueuedMedia {
                seq,
                event_id: event.id,
                n,
                media: media.clone(),
            })
    }

    /// `<seq, 20 digits>/<n, 2 digits>`: sorts in delivery order, then in the event's order
    /// (an event has at most 16 media).
    pub fn key(&self) -> String {
        format!("{:020}/{:02}", self.seq, self.n)
    }

    /// The state change that queues it.
    pub fn enqueue(&self) -> StateChange {
        StateChange {
            namespace: MEDIA_NAMESPACE,
            key: self.key(),
            value: Some(serde_json::to_vec(self).expect("a QueuedMedia serialises")),
        }
    }

    /// `media/<event id>/<n>`, after `<prefix>/<device id>/`.
    pub fn topic_suffix(&self) -> String {
        format!("media/{}/{}", self.event_id, self.n)
    }

    /// Its [`MEDIA_REF_SCHEMA`] message, once stored at `url`.
    fn reference(&self, device_id: &str, url: String) -> Vec<u8> {
        let media = &self.media;
        let message = MediaRefMessage {
            schema: MEDIA_REF_SCHEMA,
            device_id,
            event_id: self.event_id,
            n: self.n,
            kind: kind_name(media.kind),
            sha256: &media.sha256,
            content_type: &media.content_type,
            size: media.size,
            url,
        };
        serde_json::to_vec(&message).expect("a media reference serialises")
    }
}

/// `appliance.media_ref.v1`, documented in `docs/uplink-schema.md`.
#[derive(Serialize)]
struct MediaRefMessage<'a> {
    schema: &'static str,
    device_id: &'a str,
    event_id: EventId,
    n: usize,
    kind: &'static str,
    sha256: &'a str,
    content_type: &'a str,
    size: u64,
    /// The object's URL, or for a file sent over MQTT its topic.
    url: String,
}

/// The link from a sender, which queues media, to the uploader that drains them: wakes the
/// uploader, counts what was queued since it last read the queue, and holds the uploader back
/// while the sender has events to deliver. Made by [`MediaUploader::new`]; see
/// [`crate::Publisher::media_queue`].
#[derive(Debug, Clone, Default)]
pub struct MediaQueue(Arc<QueueShared>);

#[derive(Debug, Default)]
struct QueueShared {
    wake: Notify,
    /// Entries queued, by the outbox sequence of each commit's last one, until the uploader has
    /// read past them: so it can tell how many the store holds beyond its copy without
    /// counting the store's entries for each file. A commit is atomic, so it is all in the
    /// uploader's copy or all not.
    recent: Mutex<BTreeMap<u64, u64>>,
    /// Whether the sender has read events it has not delivered yet.
    events_pending: watch::Sender<bool>,
}

impl MediaQueue {
    /// `media` were committed to the queue, in one commit.
    pub(crate) fn enqueued(&self, media: &[QueuedMedia]) {
        if let Some(last) = media.last() {
            *self.recent().entry(last.seq).or_default() += media.len() as u64;
            // notify_one keeps a permit when the uploader is busy, so no commit is missed.
            self.0.wake.notify_one();
        }
    }

    /// Whether the sender holds events it has not delivered: set before it connects and sends
    /// a batch, cleared once it delivered the last one.
    pub(crate) fn events_pending(&self, pending: bool) {
        self.0
            .events_pending
            .send_if_modified(|was| std::mem::replace(was, pending) != pending);
    }

    /// Entries queued after outbox sequence `read` (all with `None`); forgets the others, which
    /// the uploader has read.
    fn queued_after(&self, read: Option<u64>) -> u64 {
        let mut recent = self.recent();
        if let Some(read) = read {
            *recent = recent.split_off(&read.saturating_add(1));
        }
        recent.values().sum()
    }

    fn recent(&self) -> MutexGuard<'_, BTreeMap<u64, u64>> {
        self.0.recent.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Returns once the sender has no events waiting.
    async fn events_delivered(&self) {
        // Never closed: this handle holds the sending side too.
        let _ = self.0.events_pending.subscribe().wait_for(|p| !p).await;
    }
}

/// How a [`MediaUploader`] paces itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaOptions {
    /// Files larger than this are skipped (and counted), never sent.
    pub max_bytes: u64,
    /// How long one file may wait for its PUBACK, or its S3 upload may take; a reference waits
    /// as long for its PUBACK. A file over MQTT travels on the events' connection, so it should
    /// cover the largest file at the slowest uplink.
    pub ack_timeout: Duration,
    /// Idle, look at the queue this often even without being woken.
    pub recheck: Duration,
    pub backoff_base: Duration,
    pub backoff_cap: Duration,
    /// Seeds the backoff's jitter, for tests; `None` seeds it from the OS.
    pub seed: Option<u64>,
}

impl Default for MediaOptions {
    fn default() -> MediaOptions {
        MediaOptions {
            max_bytes: DEFAULT_MAX_MEDIA_BYTES,
            ack_timeout: Duration::from_secs(120),
            recheck: Duration::from_secs(5),
            backoff_base: Backoff::BASE,
            backoff_cap: Backoff::CAP,
            seed: None,
        }
    }
}

/// What the media uploader is doing, for health and the API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct MediaStatus {
    /// Files the broker or the object store took, with their references, since the daemon
    /// started.
    pub uploaded: u64,
    /// Their bytes.
    pub uploaded_bytes: u64,
    /// Files waiting in the queue.
    pub queued: u64,
    /// Files skipped since start because retention deleted them before their upload.
    pub skipped_missing: u64,
    /// Files skipped since start because they are larger than the configured maximum or the
    /// broker takes.
    pub skipped_too_large: u64,
    /// Queue entries skipped since start because they do not decode.
    pub skipped_unreadable: u64,
    /// Failed attempts since the last success.
    pub consecutive_failures: u32,
    /// Why the last attempt failed; `None` once one succeeds.
    pub last_error: Option<String>,
    /// When a file was last uploaded (Unix ms).
    pub last_success_ms: Option<i64>,
}

impl MediaStatus {
    fn new() -> MediaStatus {
        MediaStatus {
            uploaded: 0,
            uploaded_bytes: 0,
            queued: 0,
            skipped_missing: 0,
            skipped_too_large: 0,
            skipped_unreadable: 0,
            consecutive_failures: 0,
            last_error: None,
            last_success_ms: None,
        }
    }
}

/// A cheap, cloneable view of a [`MediaUploader`]'s status.
#[derive(Debug, Clone)]
pub struct MediaStatusHandle(watch::Receiver<MediaStatus>);

impl MediaStatusHandle {
    pub fn snapshot(&self) -> MediaStatus {
        self.0.borrow().clone()
    }

    /// Waits until `done` holds; `None` if the uploader is gone first.
    pub async fn wait_for(
        &mut self,
        done: impl FnMut(&MediaStatus) -> bool,
    ) -> Option<MediaStatus> {
        self.0.wait_for(done).await.ok().map(|s| s.clone())
    }
}

#[derive(Debug, thiserror::Error)]
enum UploadError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("reading media file {path}: {error}")]
    Read { path: String, error: std::io::Error },
    #[error(transparent)]
    Publish(#[from] PublishError),
}

/// What became of a queued file.
enum Done {
    /// The broker or the object store took its bytes, and the broker its reference.
    Uploaded(u64),
    /// Retention deleted the file first.
    Missing,
    /// Why it will never fit.
    TooLarge(String),
}

/// Where a [`MediaUploader`] sends the files.
enum Destination {
    /// Binary messages on the events' connection.
    Mqtt,
    /// Boxed: the client is large and the uploader holds one destination for its life.
    S3(Box<S3Client>),
}

/// Uploads the media queue over an [`MqttPublisher`]'s connection or to S3; see the module
/// documentation.
pub struct MediaUploader {
    store: EventStore,
    side: MqttSideChannel,
    device_id: String,
    destination: Destination,
    /// The queue key of the file the destination has taken while its reference is still to go:
    /// a reference that failed is retried without sending the file again.
    sent: Option<String>,
    queue: MediaQueue,
    options: MediaOptions,
    backoff: Backoff,
    /// The head of the queue as last read, oldest first: (key, value). Read again once done, so
    /// that a backlog is not scanned once per file.
    pending: VecDeque<(String, Vec<u8>)>,
    /// The outbox sequence of the last entry read from the queue so far.
    read_through: Option<u64>,
    status: watch::Sender<MediaStatus>,
}

impl MediaUploader {
    /// The uploader of `publisher`'s media, over MQTT (see [`MediaUploader::to_s3`]). From now
    /// on the sender that drives `publisher` queues the media of the events it delivers; make
    /// one uploader per publisher, before its sender starts, and run it for as long as the
    /// sender. `device_id` goes into the references, as into the events.
    pub fn new(
        store: EventStore,
        publisher: &mut MqttPublisher,
        device_id: &str,
        options: MediaOptions,
    ) -> MediaUploader {
        let queue = MediaQueue::default();
        publisher.media = Some(queue.clone());
        let backoff = match options.seed {
            Some(seed) => Backoff::seeded(options.backoff_base, options.backoff_cap, seed),
            None => Backoff::new(options.backoff_base, options.backoff_cap),
        };
        MediaUploader {
            store,
            side: publisher.side_channel(),
            device_id: device_id.to_owned(),
            destination: Destination::Mqtt,
            sent: None,
            queue,
            options,
            backoff,
            pending: VecDeque::new(),
            read_through: None,
            status: watch::channel(MediaStatus::new()).0,
        }
    }

    /// Sends the files to `client`'s bucket instead of over MQTT; their references still go
    /// over MQTT.
    pub fn to_s3(mut self, client: S3Client) -> MediaUploader {
        self.destination = Destination::S3(Box::new(client));
        self
    }

    pub fn status(&self) -> MediaStatusHandle {
        MediaStatusHandle(self.status.subscribe())
    }

    /// Uploads until `cancel`; a file in flight then is sent again next start.
    pub async fn run(mut self, cancel: CancellationToken) {
        let destination = match &self.destination {
            Destination::Mqtt => "mqtt",
            Destination::S3(_) => "s3",
        };
        tracing::info!(
            max_bytes = self.options.max_bytes,
            destination,
            "media uploader started"
        );
        loop {
            let step = tokio::select! {
                biased;
                () = cancel.cancelled() => break,
                step = self.step() => step,
            };
            let pause = match step {
                Ok(true) => continue,
                Ok(false) => {
                    tokio::select! {
                        biased;
                        () = cancel.cancelled() => break,
                        () = self.queue.0.wake.notified() => {}
                        () = tokio::time::sleep(self.options.recheck) => {}
                    }
                    continue;
                }
                Err(error) => {
                    let delay = self.backoff.next_delay();
                    let failures = self.backoff.failures();
                    if failures == 1 {
                        tracing::warn!(%error, ?delay, "media upload failed; retrying");
                    } else {
                        tracing::debug!(%error, ?delay, failures, "media upload still failing");
                    }
                    self.status.send_modify(|s| {
                        s.consecutive_failures = failures;
                        s.last_error = Some(error.to_string());
                    });
                    delay
                }
            };
            tokio::select! {
                biased;
                () = cancel.cancelled() => break,
                () = tokio::time::sleep(pause) => {}
            }
        }
        tracing::info!("media uploader stopped");
    }

    /// Handles the oldest entry; `false` when the queue is empty.
    async fn step(&mut self) -> Result<bool, UploadError> {
        if self.pending.is_empty() {
            self.pending = self.store.state_entries(MEDIA_NAMESPACE)?.into();
            let last = self.pending.back().and_then(|(key, _)| key_seq(key));
            self.read_through = self.read_through.max(last);
        }
        let queued = self.pending.len() as u64 + self.queue.queued_after(self.read_through);
        self.status.send_modify(|s| s.queued = queued);
        let Some((key, value)) = self.pending.front() else {
            return Ok(false);
        };
        let key = key.clone();
        // `None`: an entry that does not decode, which no retry would fix.
        let done = match serde_json::from_slice::<QueuedMedia>(value) {
            Ok(queued) => Some(self.upload(&key, &queued).await?),
            Err(error) => {
                tracing::error!(%key, %error, "dropping an unreadable media queue entry");
                None
            }
        };
        self.store
            .commit(
                Vec::new(),
                vec![StateChange {
                    namespace: MEDIA_NAMESPACE,
                    key,
                    value: None,
                }],
            )
            .await?;
        self.pending.pop_front();
        self.sent = None;
        self.backoff.reset();
        self.status.send_modify(|s| {
            s.queued = s.queued.saturating_sub(1);
            s.consecutive_failures = 0;
            s.last_error = None;
            match done {
                Some(Done::Uploaded(bytes)) => {
                    s.uploaded += 1;
                    s.uploaded_bytes += bytes;
                    s.last_success_ms = Some(Timestamp::now().as_millis());
                }
                Some(Done::Missing) => s.skipped_missing += 1,
                Some(Done::TooLarge(_)) => s.skipped_too_large += 1,
                None => s.skipped_unreadable += 1,
            }
        });
        Ok(true)
    }

    async fn upload(&mut self, key: &str, queued: &QueuedMedia) -> Result<Done, UploadError> {
        let media = &queued.media;
        let done = self.send(key, queued).await?;
        match &done {
            Done::Uploaded(bytes) => tracing::debug!(
                event = %queued.event_id, n = queued.n, bytes, "media uploaded"
            ),
            Done::Missing => tracing::info!(
                event = %queued.event_id, n = queued.n, sha256 = %media.sha256,
                "media file deleted by retention before its upload; skipped"
            ),
            Done::TooLarge(why) => tracing::warn!(
                event = %queued.event_id, n = queued.n, sha256 = %media.sha256, size = media.size,
                "media file not uploaded, too large: {why}"
            ),
        }
        Ok(done)
    }

    /// Sends the file under queue key `key`, once connected, then its reference.
    async fn send(&mut self, key: &str, queued: &QueuedMedia) -> Result<Done, UploadError> {
        let media = &queued.media;
        if self.sent.as_deref() != Some(key) {
            let bytes = match self.send_file(queued).await? {
                Done::Uploaded(bytes) => bytes,
                skipped => return Ok(skipped),
            };
            self.sent = Some(key.to_owned());
            tracing::trace!(event = %queued.event_id, n = queued.n, bytes, "media file sent");
        }
        let url = match &self.destination {
            Destination::Mqtt => self.side.topic(&queued.topic_suffix()),
            Destination::S3(client) => {
                client.object_url(&client.object_key(queued.event_id, queued.n, media))
            }
        };
        // A reference retried alone also waits for the connection rather than fail on its own.
        self.side.connected().await;
        let properties = PublishProperties {
            payload_format_indicator: Some(1),
            content_type: Some("application/json".to_owned()),
            ..PublishProperties::default()
        };
        let acknowledged = self
            .side
            .publish_acknowledged(
                MEDIA_REF_TOPIC,
                queued.reference(&self.device_id, url),
                properties,
                self.options.ack_timeout,
            )
            .await?;
        if let Acknowledged::TooLarge(why) = acknowledged {
            // Only a broker misconfigured beyond use takes no message of 300 bytes.
            tracing::warn!(event = %queued.event_id, n = queued.n, "media reference not sent: {why}");
        }
        Ok(Done::Uploaded(media.size))
    }

    /// Reads the file and sends it to the destination, once the events' connection is up.
    async fn send_file(&self, queued: &QueuedMedia) -> Result<Done, UploadError> {
        let media = &queued.media;
        if media.size > self.options.max_bytes {
            return Ok(Done::TooLarge(format!(
                "{} bytes, the configured maximum is {}",
                media.size, self.options.max_bytes
            )));
        }
        let Some(path) = self.store.media_path(media) else {
            return Ok(Done::Missing);
        };
        // Only once connected: the file is read for a connection that can take it (or, to S3,
        // carry its reference), and a broker away for hours is not a string of failures.
        self.side.connected().await;
        let read = {
            let path = path.clone();
            tokio::task::spawn_blocking(move || std::fs::read(path))
                .await
                .unwrap_or_else(|e| Err(std::io::Error::other(e)))
        };
        let data = match read {
            Ok(data) => data,
            // Deleted between the look and the read.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Done::Missing),
            Err(error) => {
                return Err(UploadError::Read {
                    path: path.display().to_string(),
                    error,
                });
            }
        };
        // Events first: a backlog (the one that built up while the broker was away, above all)
        // drains before any file, and this file's bytes do not hold up an alert.
        self.queue.events_delivered().await;
        let bytes = data.len() as u64;
        match &self.destination {
            Destination::Mqtt => {
                let properties = PublishProperties {
                    content_type: Some(media.content_type.clone()),
                    user_properties: vec![
                        ("event_id".to_owned(), queued.event_id.to_string()),
                        ("kind".to_owned(), kind_name(media.kind).to_owned()),
                        ("sha256".to_owned(), media.sha256.clone()),
                    ],
                    ..PublishProperties::default()
                };
                let acknowledged = self
                    .side
                    .publish_acknowledged(
                        &queued.topic_suffix(),
                        data,
                        properties,
                        self.options.ack_timeout,
                    )
                    .await?;
                Ok(match acknowledged {
                    Acknowledged::Yes => Done::Uploaded(bytes),
                    Acknowledged::TooLarge(why) => Done::TooLarge(why),
                })
            }
            Destination::S3(client) => {
                let key = client.object_key(queued.event_id, queued.n, media);
                client
                    .put(&key, &media.content_type, data, self.options.ack_timeout)
                    .await?;
                Ok(Done::Uploaded(bytes))
            }
        }
    }
}

/// The outbox sequence in a [`QueuedMedia::key`].
fn key_seq(key: &str) -> Option<u64> {
    key.split_once('/')?.0.parse().ok()
}

/// As in the event JSON.
fn kind_name(kind: MediaKind) -> &'static str {
    match kind {
        MediaKind::Snapshot => "snapshot",
        MediaKind::Clip => "clip",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queued(seq: u64, n: usize) -> QueuedMedia {
        QueuedMedia {
            seq,
            event_id: EventId::from_parts(1_700_000_000_000, 3),
            n,
            media: MediaRef {
                kind: MediaKind::Clip,
                content_type: "video/mp4".into(),
                sha256: "ab".repeat(32),
                size: 10,
            },
        }
    }

    #[test]
    fn keys_sort_in_delivery_order_and_values_round_trip() {
        let entries = [
            queued(9, 0),
            queued(9, 2),
            queued(9, 10),
            queued(10, 0),
            queued(100, 1),
        ];
        let keys: Vec<String> = entries.iter().map(QueuedMedia::key).collect();
        assert!(keys.is_sorted(), "{keys:?}");
        assert_eq!(keys[0], "00000000000000000009/00");
        assert_eq!(key_seq(&keys[4]), Some(100));
        let change = entries[2].enqueue();
        assert_eq!(
            (change.namespace, change.key.as_str()),
            (MEDIA_NAMESPACE, keys[2].as_str())
        );
        let value: QueuedMedia = serde_json::from_slice(&change.value.unwrap()).unwrap();
        assert_eq!(value, entries[2]);
        assert_eq!(value.topic_suffix(), format!("media/{}/10", value.event_id));
    }

    #[test]
    fn the_queue_counts_what_the_uploader_has_not_read() {
        let queue = MediaQueue::default();
        queue.enqueued(&[queued(3, 0), queued(3, 1)]);
        queue.enqueued(&[]);
        queue.enqueued(&[queued(5, 0), queued(7, 0)]);
        assert_eq!(queue.queued_after(None), 4);
        // The uploader read the store after the first commit: it has those in its copy.
        assert_eq!(queue.queued_after(Some(3)), 2);
        assert_eq!(queue.queued_after(Some(7)), 0);
        queue.enqueued(&[queued(9, 0)]);
        assert_eq!(queue.queued_after(Some(7)), 1);
    }

    #[test]
    fn the_media_of_an_event_in_its_order() {
        let clip = queued(0, 0).media;
        let snapshot = MediaRef {
            kind: MediaKind::Snapshot,
            ..clip.clone()
        };
        let event = appliance_model::Event {
            id: EventId::from_parts(1_700_000_000_000, 1),
            camera_id: "cam".into(),
            channel_id: None,
            source: appliance_model::EventSource::Skill,
            kind: "intrusion".into(),
            severity: appliance_model::Severity::Major,
            start_time: Timestamp::from_millis(1_700_000_000_000),
            end_time: None,
            attributes: Default::default(),
            ack: None,
            media: vec![snapshot.clone(), clip.clone()],
            recorded_at: Timestamp::from_millis(1_700_000_000_000),
        };
        let all: Vec<QueuedMedia> = QueuedMedia::of_event(7, &event).collect();
        assert_eq!(all.len(), 2);
        assert_eq!((all[0].seq, all[0].n, &all[0].media), (7, 0, &snapshot));
        assert_eq!(
            (all[1].event_id, all[1].n, &all[1].media),
            (event.id, 1, &clip)
        );
    }
}
