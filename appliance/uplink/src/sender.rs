//! The drain loop of one upstream: outbox → batch → publisher → cursor.
//!
//! A [`Sender`] reads the outbox after its cursor, in commit order, builds the schema messages,
//! hands them to its [`Publisher`], and only once the publisher settled the batch (the broker
//! acknowledged every message of it and of every batch before it) commits the batch's last
//! sequence as its new cursor, durably, in the store (`uplink.cursor`, key = the publisher's
//! name). A crash anywhere before that commit sends the batch again after the restart; nothing
//! after the cursor is ever skipped. Events that retention deleted before they were sent are
//! skipped and counted, never waited for.
//!
//! Up to [`PIPELINE_DEPTH`] batches are in flight: submitted ([`Publisher::submit`]) and not yet
//! settled ([`Publisher::settle`]). They are settled strictly in order, the cursor committed after
//! each; any error drops every unsettled batch, and the sender reads and submits again from the
//! cursor. A message may therefore arrive twice, always with the same event id, and the first
//! arrival of each event keeps the commit order.
//!
//! The cursor of each upstream is what the daemon's outbox pruning reads: an outbox entry can go
//! once every upstream's cursor has passed it.
//!
//! An upstream that uploads media ([`Publisher::media_queue`]) gets the media of the batch's
//! events queued (`uplink.media`, see [`crate::media`]) in the same commit as the cursor, so a
//! crash neither loses a delivered event's media nor queues them twice.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use appliance_model::Timestamp;
use appliance_store::{EventStore, OutboxEntry, StateChange, StoreError};
use serde::Serialize;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;
use utoipa::ToSchema;

use crate::backoff::Backoff;
use crate::media::QueuedMedia;
use crate::schema::EventMessage;
use crate::{Outgoing, PublishError, Publisher, Ticket};

/// The store state namespace of the cursors: key = publisher name, value = the last delivered
/// outbox sequence as decimal text.
pub const CURSOR_NAMESPACE: &str = "uplink.cursor";
/// `depth` counts outbox entries up to this many; past it the status says "at least".
pub const DEPTH_LIMIT: usize = 10_000;
/// How often `depth` is counted afresh while a backlog drains (in between it is estimated).
const DEPTH_RECOUNT: Duration = Duration::from_secs(1);
/// Most batches submitted to the publisher and not yet settled. More than one, so that the
/// broker has the next batch's messages to answer while the last acknowledgements of a batch are
/// on their way: mosquitto in its default configuration (no `set_tcp_nodelay`) otherwise holds
/// them for a delayed ACK, about 40 ms per batch. A few are enough to keep the link busy; each
/// one more is a batch read ahead of the cursor and sent again after a failure.
const PIPELINE_DEPTH: usize = 4;

/// How a [`Sender`] paces itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SenderOptions {
    /// Most events per publish.
    pub batch: usize,
    /// Idle, look at the outbox (and check the connection) this often even without a commit
    /// notification.
    pub recheck: Duration,
    pub backoff_base: Duration,
    pub backoff_cap: Duration,
    /// Seeds the backoff's jitter, for tests; `None` seeds it from the OS.
    pub seed: Option<u64>,
}

impl Default for SenderOptions {
    fn default() -> SenderOptions {
        SenderOptions {
            batch: 100,
            recheck: Duration::from_secs(1),
            backoff_base: Backoff::BASE,
            backoff_cap: Backoff::CAP,
            seed: None,
        }
    }
}

/// The last delivered outbox sequence of upstream `name`, if it delivered anything yet.
///
/// A value that is not a number (a damaged record) reads as none: the upstream then sends the
/// outbox again from its start, duplicates with the same event ids rather than a loss.
pub fn read_cursor(store: &EventStore, name: &str) -> Result<Option<u64>, StoreError> {
    let Some(value) = store.state(CURSOR_NAMESPACE, name)? else {
        return Ok(None);
    };
    let cursor = std::str::from_utf8(&value)
        .ok()
        .and_then(|text| text.parse().ok());
    if cursor.is_none() {
        tracing::error!(
            upstream = name,
            value = %String::from_utf8_lossy(&value).escape_default(),
            "uplink cursor is unreadable; sending the outbox again from its start"
        );
    }
    Ok(cursor)
}

/// The state change that records `seq` as the last sequence `name` delivered.
pub fn cursor_change(name: &str, seq: u64) -> StateChange {
    StateChange {
        namespace: CURSOR_NAMESPACE,
        key: name.to_owned(),
        value: Some(seq.to_string().into_bytes()),
    }
}

/// A batch read from the outbox, ready to publish.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// In commit order.
    pub outgoing: Vec<Outgoing>,
    /// The last sequence the batch covers, skipped entries included: the cursor once delivered.
    pub through: u64,
    /// Outbox entries read.
    pub entries: usize,
    /// Entries whose event retention deleted before it was sent.
    pub skipped_deleted: u64,
    /// Entries whose record does not decode (the store counts and logs those as corrupt).
    pub skipped_unreadable: u64,
    /// When the first event of the batch still in the store was stored.
    pub oldest_recorded: Option<Timestamp>,
    /// The media of the batch's events, in commit order and each event's order.
    pub media: Vec<QueuedMedia>,
}

/// Reads the events of `entries` and builds their messages; `None` for no entries.
pub fn build_batch(
    store: &EventStore,
    device_id: &str,
    entries: &[OutboxEntry],
) -> Result<Option<Batch>, StoreError> {
    let Some(last) = entries.last() else {
        return Ok(None);
    };
    let mut batch = Batch {
        outgoing: Vec::with_capacity(entries.len()),
        through: last.seq,
        entries: entries.len(),
        skipped_deleted: 0,
        skipped_unreadable: 0,
        oldest_recorded: None,
        media: Vec::new(),
    };
    for entry in entries {
        match store.get(entry.id) {
            Ok(Some(event)) => {
                batch.oldest_recorded.get_or_insert(event.recorded_at);
                batch.media.extend(QueuedMedia::of_event(entry.seq, &event));
                batch.outgoing.push(Outgoing {
                    seq: entry.seq,
                    payload: EventMessage::new(device_id, entry.seq, &event).to_json(),
                    key: event.camera_id,
                });
            }
            Ok(None) => batch.skipped_deleted += 1,
            Err(StoreError::Corrupt { .. }) => batch.skipped_unreadable += 1,
            Err(e) => return Err(e),
        }
    }
    Ok(Some(batch))
}

/// What an upstream is doing, for health, metrics and the API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct UplinkStatus {
    /// The upstream: `mqtt`, `kafka`.
    pub name: String,
    /// Whether the last attempt reached the broker.
    pub connected: bool,
    /// Events the broker acknowledged since the daemon started.
    pub delivered: u64,
    /// Outbox entries skipped since start because retention deleted their event first.
    pub skipped_deleted: u64,
    /// Outbox entries skipped since start because their event record does not decode.
    pub skipped_unreadable: u64,
    /// The last outbox sequence delivered; a restart resumes after it.
    pub cursor: Option<u64>,
    /// Outbox entries waiting after the cursor, counted up to 10,000.
    pub depth: u64,
    /// How long the oldest undelivered event has been stored, in ms; `None` when caught up.
    pub oldest_pending_ms: Option<u64>,
    /// Failed attempts since the last success.
    pub consecutive_failures: u32,
    /// Why the last attempt failed; `None` once one succeeds.
    pub last_error: Option<String>,
    /// When the broker last acknowledged a batch or, idle, answered a connection check (Unix
    /// ms).
    pub last_success_ms: Option<i64>,
}

/// The status as the sender keeps it: ages are computed when someone looks.
#[derive(Debug, Clone)]
struct Tracker {
    status: UplinkStatus,
    oldest_pending: Option<Timestamp>,
}

impl Tracker {
    fn new(name: &str, cursor: Option<u64>) -> Tracker {
        Tracker {
            status: UplinkStatus {
                name: name.to_owned(),
                connected: false,
                delivered: 0,
                skipped_deleted: 0,
                skipped_unreadable: 0,
                cursor,
                depth: 0,
                oldest_pending_ms: None,
                consecutive_failures: 0,
                last_error: None,
                last_success_ms: None,
            },
            oldest_pending: None,
        }
    }

    fn snapshot(&self, now: Timestamp) -> UplinkStatus {
        UplinkStatus {
            oldest_pending_ms: self.oldest_pending.map(|at| {
                u64::try_from(now.as_millis().saturating_sub(at.as_millis())).unwrap_or(0)
            }),
            ..self.status.clone()
        }
    }

    /// A batch is on its way; `depth` includes it.
    fn sending(&mut self, batch: &Batch, depth: u64) {
        self.status.depth = depth;
        if let Some(at) = batch.oldest_recorded {
            self.oldest_pending = Some(at);
        }
    }

    fn succeeded(&mut self, now: Timestamp) {
        let status = &mut self.status;
        status.connected = true;
        status.consecutive_failures = 0;
        status.last_error = None;
        status.last_success_ms = Some(now.as_millis());
    }

    /// `batch` is acknowledged and the cursor committed; `caught_up` when the outbox held no
    /// more than it.
    fn delivered(&mut self, batch: &Batch, caught_up: bool, now: Timestamp) {
        self.succeeded(now);
        let status = &mut self.status;
        status.delivered += batch.outgoing.len() as u64;
        status.skipped_deleted += batch.skipped_deleted;
        status.skipped_unreadable += batch.skipped_unreadable;
        status.cursor = Some(batch.through);
        status.depth = status.depth.saturating_sub(batch.entries as u64);
        if caught_up {
            status.depth = 0;
            self.oldest_pending = None;
        }
    }

    /// Nothing to send, and the connection check passed.
    fn idle(&mut self, now: Timestamp) {
        self.succeeded(now);
        self.status.depth = 0;
        self.oldest_pending = None;
    }

    fn failed(&mut self, error: &SendError, failures: u32) {
        let status = &mut self.status;
        match error {
            SendError::Publish(PublishError::Connection(_) | PublishError::Timeout(_)) => {
                status.connected = false;
            }
            // The broker answered: connected, but it refused.
            SendError::Publish(PublishError::Rejected(_)) => status.connected = true,
            SendError::Store(_) => {}
        }
        status.consecutive_failures = failures;
        status.last_error = Some(error.to_string());
    }
}

/// A cheap, cloneable view of a [`Sender`]'s status.
#[derive(Debug, Clone)]
pub struct StatusHandle(watch::Receiver<Tracker>);

impl StatusHandle {
    pub fn snapshot(&self) -> UplinkStatus {
        self.0.borrow().snapshot(Timestamp::now())
    }

    /// Waits until `done` holds; `None` if the sender is gone first.
    pub async fn wait_for(
        &mut self,
        mut done: impl FnMut(&UplinkStatus) -> bool,
    ) -> Option<UplinkStatus> {
        self.0
            .wait_for(|t| done(&t.snapshot(Timestamp::now())))
            .await
            .ok()
            .map(|t| t.snapshot(Timestamp::now()))
    }
}

#[derive(Debug, thiserror::Error)]
enum SendError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error(transparent)]
    Publish(#[from] PublishError),
}

/// What one step of the loop found.
enum Step {
    /// A full batch went: more may be waiting.
    More,
    /// The outbox is drained (as far as this step saw).
    CaughtUp,
}

/// Drains the outbox to one upstream; see the module documentation.
pub struct Sender<P: Publisher> {
    store: EventStore,
    publisher: P,
    device_id: String,
    options: SenderOptions,
    cursor: Option<u64>,
    backoff: Backoff,
    /// Poked by the store after each commit that grew the outbox.
    wake: Arc<Notify>,
    status: watch::Sender<Tracker>,
    depth_counted: Option<Instant>,
    /// Submitted and not yet settled, in outbox order.
    in_flight: VecDeque<InFlight>,
    /// The last outbox sequence submitted: the next batch is read after it.
    read_to: Option<u64>,
}

/// A batch submitted to the publisher, waiting to be settled.
struct InFlight {
    batch: Batch,
    /// `None`: every entry of the batch was skipped, nothing went.
    ticket: Option<Ticket>,
    /// Whether the outbox had a whole batch: more may follow it.
    full: bool,
}

impl<P: Publisher> Sender<P> {
    /// Reads the upstream's cursor and subscribes to the store's commits.
    pub fn new(
        store: EventStore,
        publisher: P,
        device_id: impl Into<String>,
        options: SenderOptions,
    ) -> Result<Sender<P>, StoreError> {
        let name = publisher.name();
        let cursor = read_cursor(&store, name)?;
        let wake = Arc::new(Notify::new());
        // Weak: the store keeps its listeners for its lifetime; a dropped sender's costs nothing.
        let listener = Arc::downgrade(&wake);
        store.on_outbox_growth(move || {
            if let Some(wake) = listener.upgrade() {
                // notify_one keeps a permit when the sender is busy, so no commit is missed.
                wake.notify_one();
            }
        });
        let backoff = match options.seed {
            Some(seed) => Backoff::seeded(options.backoff_base, options.backoff_cap, seed),
            None => Backoff::new(options.backoff_base, options.backoff_cap),
        };
        let (status, _) = watch::channel(Tracker::new(name, cursor));
        Ok(Sender {
            store,
            publisher,
            device_id: device_id.into(),
            options: SenderOptions {
                batch: options.batch.max(1),
                ..options
            },
            cursor,
            backoff,
            wake,
            status,
            depth_counted: None,
            in_flight: VecDeque::new(),
            read_to: cursor,
        })
    }

    pub fn status(&self) -> StatusHandle {
        StatusHandle(self.status.subscribe())
    }

    /// Drains until `cancel`; the batches in flight then are abandoned (sent again next start).
    pub async fn run(mut self, cancel: CancellationToken) {
        let name = self.publisher.name();
        tracing::info!(upstream = name, cursor = ?self.cursor, "uplink sender started");
        loop {
            let step = tokio::select! {
                biased;
                () = cancel.cancelled() => break,
                step = self.step() => step,
            };
            let pause = match step {
                Ok(Step::More) => continue,
                Ok(Step::CaughtUp) => {
                    tokio::select! {
                        biased;
                        () = cancel.cancelled() => break,
                        () = self.wake.notified() => {}
                        () = tokio::time::sleep(self.options.recheck) => {}
                    }
                    continue;
                }
                Err(error) => {
                    let delay = self.backoff.next_delay();
                    let failures = self.backoff.failures();
                    // The first failure of a run says what broke; repeats stay quieter.
                    if failures == 1 {
                        tracing::warn!(upstream = name, %error, ?delay, "uplink failed; retrying");
                    } else {
                        tracing::debug!(upstream = name, %error, ?delay, failures, "uplink still failing");
                    }
                    self.status.send_modify(|t| t.failed(&error, failures));
                    delay
                }
            };
            tokio::select! {
                biased;
                () = cancel.cancelled() => break,
                () = tokio::time::sleep(pause) => {}
            }
        }
        tracing::info!(upstream = name, cursor = ?self.cursor, "uplink sender stopped");
    }

    /// One batch settled (or, idle, a connection check); on any error every unsettled batch is
    /// dropped, to be read and sent again from the cursor.
    async fn step(&mut self) -> Result<Step, SendError> {
        let result = self.advance().await;
        if result.is_err() {
            self.in_flight.clear();
            self.read_to = self.cursor;
        }
        result
    }

    async fn advance(&mut self) -> Result<Step, SendError> {
        self.fill().await?;
        let Some(InFlight {
            batch,
            ticket,
            full,
        }) = self.in_flight.pop_front()
        else {
            // Nothing to send: check (or make) the connection anyway, so that the status and a
            // reconnect do not wait for the next event.
            self.publisher.publish(&[]).await?;
            self.recovered();
            self.status.send_modify(|t| t.idle(Timestamp::now()));
            return Ok(Step::CaughtUp);
        };
        if let Some(ticket) = ticket {
            self.publisher.settle(ticket).await?;
        }
        let mut changes = vec![cursor_change(self.publisher.name(), batch.through)];
        let media_queue = self.publisher.media_queue();
        if media_queue.is_some() {
            changes.extend(batch.media.iter().map(QueuedMedia::enqueue));
        }
        self.store.commit(Vec::new(), changes).await?;
        // A batch that was not full is the last one read: nothing is in flight after it.
        let caught_up = !full;
        if let Some(queue) = media_queue {
            queue.enqueued(&batch.media);
            queue.events_pending(!caught_up);
        }
        self.cursor = Some(batch.through);
        self.recovered();
        let next_oldest = self.in_flight.iter().find_map(|f| f.batch.oldest_recorded);
        self.status.send_modify(|t| {
            t.delivered(&batch, caught_up, Timestamp::now());
            if let Some(at) = next_oldest {
                t.oldest_pending = Some(at);
            }
        });
        Ok(if caught_up {
            Step::CaughtUp
        } else {
            Step::More
        })
    }

    /// Reads and submits batches after the last one submitted until [`PIPELINE_DEPTH`] are in
    /// flight or the outbox has no full batch more.
    async fn fill(&mut self) -> Result<(), SendError> {
        while self.in_flight.len() < PIPELINE_DEPTH
            && self.in_flight.back().is_none_or(|last| last.full)
        {
            let entries = self.store.outbox(self.read_to, self.options.batch)?;
            if self.in_flight.is_empty()
                && let Some(queue) = self.publisher.media_queue()
            {
                queue.events_pending(!entries.is_empty());
            }
            let Some(batch) = build_batch(&self.store, &self.device_id, &entries)? else {
                return Ok(());
            };
            let depth = self.depth(entries.len())?;
            let first = self.in_flight.is_empty();
            self.status.send_modify(|t| {
                if first {
                    t.sending(&batch, depth);
                } else {
                    t.status.depth = depth;
                }
            });
            let ticket = if batch.outgoing.is_empty() {
                None
            } else {
                Some(self.publisher.submit(&batch.outgoing).await?)
            };
            self.read_to = Some(batch.through);
            self.in_flight.push_back(InFlight {
                batch,
                ticket,
                full: entries.len() >= self.options.batch,
            });
        }
        Ok(())
    }

    fn recovered(&mut self) {
        if self.backoff.failures() > 0 {
            tracing::info!(upstream = self.publisher.name(), "uplink recovered");
        }
        self.backoff.reset();
    }

    /// Outbox entries after the cursor, the batches in flight and the batch of `read` entries
    /// included: exact when the batch was not full, else counted up to [`DEPTH_LIMIT`] at most once per second and
    /// estimated from the last count in between, so a long drain does not pay a full count per
    /// batch.
    fn depth(&mut self, read: usize) -> Result<u64, StoreError> {
        let read = (read
            + self
                .in_flight
                .iter()
                .map(|f| f.batch.entries)
                .sum::<usize>()) as u64;
        if read < self.options.batch as u64 * (self.in_flight.len() as u64 + 1) {
            return Ok(read);
        }
        if self
            .depth_counted
            .is_some_and(|at| at.elapsed() < DEPTH_RECOUNT)
        {
            return Ok(self.status.borrow().status.depth.max(read));
        }
        self.depth_counted = Some(Instant::now());
        Ok(self.store.outbox(self.cursor, DEPTH_LIMIT)?.len() as u64)
    }
}

#[cfg(test)]
mod tests;
