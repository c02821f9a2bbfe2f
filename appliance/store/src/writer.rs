//! The single writer thread and its group commit.
//!
//! Every mutation goes through one thread. It takes whatever operations are queued (up to the
//! configured group size), builds one `sled::Batch` from all of them, applies it, and then makes it
//! durable with one `flush()` plus one `fdatasync` of sled's data file before answering any of them.
//! Many concurrent writers therefore share one flash write, and no caller hears "stored" before the
//! data is on disk. Being the only writer also makes read-modify-write (ack, retention, id
//! allocation) race-free without locks.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::Receiver;
use std::time::Instant;

use appliance_model::{Event, EventId, IdAllocator, Timestamp};
use tokio::sync::oneshot;

use crate::keys::{self, IdList, Index};
use crate::metrics::RetentionReason;
use crate::record::{Prepared, Record};
use crate::{RetentionPolicy, RetentionReport, Shared, StateChange, StoreError};

/// Upper bound on deletions in one retention pass, so one pass never builds a huge batch; the
/// report says when more is due.
const MAX_DELETES_PER_PASS: u64 = 20_000;

/// sled keeps several copies of live data while it compacts its log; the retention quota counts
/// record bytes times this factor. `just bench store` measures the real ratio (about 2–3×).
pub(crate) const RECORD_DISK_FACTOR: u64 = 3;

pub(crate) type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// `append` answers with one event, `append_many` with all of them.
pub(crate) enum AppendReply {
    One(Reply<Event>),
    Many(Reply<Vec<Event>>),
}

impl AppendReply {
    fn send(self, result: Result<Vec<Event>, StoreError>) {
        // A caller that stopped waiting does not need the answer.
        match self {
            AppendReply::One(reply) => {
                let one =
                    result.map(|events| events.into_iter().next().expect("one event appended"));
                let _ = reply.send(one);
            }
            AppendReply::Many(reply) => {
                let _ = reply.send(result);
            }
        }
    }
}

pub(crate) enum Op {
    /// Events and state changes, applied together.
    Append {
        events: Vec<Prepared>,
        state: Vec<StateChange>,
        reply: AppendReply,
    },
    Ack {
        id: EventId,
        by: Option<String>,
        reply: Reply<Option<Event>>,
    },
    Retention {
        policy: RetentionPolicy,
        now: Timestamp,
        reply: Reply<RetentionReport>,
    },
    /// Removes the outbox groups whose every entry is at or before `through`.
    PruneOutbox { through: u64, reply: Reply<u64> },
}

pub(crate) struct Queued {
    pub op: Op,
    pub enqueued: Instant,
}

/// An answer computed while building the batch, sent once the batch is durable.
enum Answer {
    Append(AppendReply, Vec<Event>),
    Ack(Reply<Option<Event>>, Result<Option<Event>, StoreError>),
    Retention(Reply<RetentionReport>, RetentionReport),
    Pruned(Reply<u64>, u64),
}

pub(crate) struct Writer {
    pub shared: Arc<Shared>,
    pub rx: Receiver<Queued>,
    pub max_group: usize,
    pub next_outbox_seq: u64,
}

impl Writer {
    pub fn run(mut self) {
        while let Ok(first) = self.rx.recv() {
            let mut group = vec![first];
            while group.len() < self.max_group {
                match self.rx.try_recv() {
                    Ok(queued) => group.push(queued),
                    Err(_) => break,
                }
            }
            self.commit_group(group);
        }
        // Every sender is gone: the store is closing. One last barrier for anything sled's
        // background flusher holds.
        if let Err(e) = self.shared.make_durable() {
            tracing::error!(error = %e, "final store flush failed");
        }
    }

    fn commit_group(&mut self, group: Vec<Queued>) {
        let shared = Arc::clone(&self.shared);
        let mut batch = GroupBatch::new(&shared, self.next_outbox_seq);
        let mut answers = Vec::with_capacity(group.len());
        let mut enqueued = Vec::with_capacity(group.len());
        let built: Result<(), StoreError> = group.into_iter().try_for_each(|queued| {
            enqueued.push(queued.enqueued);
            answers.push(match queued.op {
                Op::Append {
                    events,
                    state,
                    reply,
                } => {
                    for change in state {
                        batch.put_state(change);
                    }
                    let stored = events
                        .into_iter()
                        .map(|e| batch.append(e))
                        .collect::<Result<Vec<_>, _>>()?;
                    Answer::Append(reply, stored)
                }
                Op::Ack { id, by, reply } => Answer::Ack(reply, batch.ack(id, by)),
                Op::Retention { policy, now, reply } => {
                    Answer::Retention(reply, batch.retention(&policy, now)?)
                }
                Op::PruneOutbox { through, reply } => {
                    Answer::Pruned(reply, batch.prune_outbox(through)?)
                }
            });
            Ok(())
        });
        let committed = built.and_then(|()| batch.commit());
        let metrics = &self.shared.metrics;
        match committed {
            Ok(outcome) => {
                if outcome.next_outbox_seq > self.next_outbox_seq {
                    let listeners = self
                        .shared
                        .outbox_listeners
                        .lock()
                        .unwrap_or_else(|p| p.into_inner());
                    for listener in listeners.iter() {
                        listener();
                    }
                }
                self.next_outbox_seq = outcome.next_outbox_seq;
                metrics.commit_group_size.observe(answers.len() as f64);
                for at in enqueued {
                    metrics.commit_latency.observe(at.elapsed().as_secs_f64());
                }
                for answer in answers {
                    match answer {
                        Answer::Append(reply, events) => {
                            metrics.events_appended.inc_by(events.len() as u64);
                            reply.send(Ok(events));
                        }
                        Answer::Ack(reply, result) => {
                            let _ = reply.send(result);
                        }
                        Answer::Retention(reply, mut report) => {
                            report.media_files_deleted = outcome.media_files_deleted;
                            metrics.count_deleted(RetentionReason::max_age, report.deleted_max_age);
                            metrics.count_deleted(RetentionReason::quota, report.deleted_quota);
                            metrics.count_deleted(
                                RetentionReason::disk_free,
                                report.deleted_disk_free,
                            );
                            metrics.outbox_dropped.inc_by(report.outbox_dropped);
                            let _ = reply.send(Ok(report));
                        }
                        Answer::Pruned(reply, entries) => {
                            let _ = reply.send(Ok(entries));
                        }
                    }
                }
            }
            Err(e) => {
                tracing::error!(error = %e, operations = answers.len(), "store commit failed");
                let message: Arc<str> = e.to_string().into();
                for answer in answers {
                    let failed = StoreError::Commit(message.clone());
                    match answer {
                        Answer::Append(reply, _) => reply.send(Err(failed)),
                        Answer::Ack(reply, _) => drop(reply.send(Err(failed))),
                        Answer::Retention(reply, _) => drop(reply.send(Err(failed))),
                        Answer::Pruned(reply, _) => drop(reply.send(Err(failed))),
                    }
                }
            }
        }
    }
}

struct CommitOutcome {
    next_outbox_seq: u64,
    media_files_deleted: u64,
}

/// One group's changes: a sled batch plus overlays of the records and index buckets it touched, so
/// later operations in the same group see earlier ones.
struct GroupBatch<'a> {
    shared: &'a Shared,
    batch: sled::Batch,
    dirty: bool,
    /// Records acknowledged or deleted in this group.
    records: HashMap<EventId, Option<Record>>,
    /// Index buckets touched in this group, written back at commit (removed when empty).
    buckets: HashMap<Vec<u8>, Vec<u64>>,
    ids: IdAllocator,
    /// Sequence of the first event appended in this group, and the ids appended, in order.
    outbox_first_seq: u64,
    outbox_ids: Vec<u64>,
    live_bytes: u64,
    live_events: u64,
    released_media: HashSet<[u8; 32]>,
}

impl<'a> GroupBatch<'a> {
    fn new(shared: &'a Shared, next_outbox_seq: u64) -> Self {
        GroupBatch {
            shared,
            batch: sled::Batch::default(),
            dirty: false,
            records: HashMap::new(),
            buckets: HashMap::new(),
            ids: IdAllocator::default(),
            outbox_first_seq: next_outbox_seq,
            outbox_ids: Vec::new(),
            live_bytes: shared.live_bytes.load(Ordering::Relaxed),
            live_events: shared.live_events.load(Ordering::Relaxed),
            released_media: HashSet::new(),
        }
    }

    fn next_outbox_seq(&self) -> u64 {
        self.outbox_first_seq + self.outbox_ids.len() as u64
    }

    fn insert(&mut self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) {
        self.batch.insert(key.as_ref(), value.as_ref());
        self.dirty = true;
    }

    fn remove(&mut self, key: impl AsRef<[u8]>) {
        self.batch.remove(key.as_ref());
        self.dirty = true;
    }

    /// The bucket of `index` that holds `id`, loaded on first use. An unreadable bucket is counted
    /// and rebuilt from what this group adds: its old entries are lost, its events are not.
    fn bucket(&mut self, index: Index<'_>, id: EventId) -> Result<&mut Vec<u64>, StoreError> {
        let key = index.bucket_key(id);
        if !self.buckets.contains_key(&key) {
            let ids = match self.shared.tree.get(&key)? {
                None => Vec::new(),
                Some(bytes) => IdList::decode(&bytes).unwrap_or_else(|| {
                    self.shared.metrics.corrupt_records.inc();
                    tracing::warn!(?key, "unreadable index bucket rebuilt");
                    Vec::new()
                }),
            };
            self.buckets.insert(key.clone(), ids);
        }
        self.dirty = true;
        Ok(self.buckets.get_mut(&key).expect("bucket just loaded"))
    }

    fn index_add(&mut self, index: Index<'_>, id: EventId) -> Result<(), StoreError> {
        let ids = self.bucket(index, id)?;
        if let Err(at) = ids.binary_search(&id.as_u64()) {
            ids.insert(at, id.as_u64());
        }
        Ok(())
    }

    fn index_remove(&mut self, index: Index<'_>, id: EventId) -> Result<(), StoreError> {
        let ids = self.bucket(index, id)?;
        if let Ok(at) = ids.binary_search(&id.as_u64()) {
            ids.remove(at);
        }
        Ok(())
    }

    /// The record as this group sees it: `Ok(None)` if absent, `Err` if it does not decode.
    fn read(&self, id: EventId) -> Result<Option<Record>, StoreError> {
        if let Some(overlaid) = self.records.get(&id) {
            return Ok(overlaid.clone());
        }
        match self.shared.tree.get(keys::event_key(id))? {
            None => Ok(None),
            Some(bytes) => Record::decode(&bytes).map(Some).map_err(|e| {
                self.shared.count_corrupt(id, &e);
                StoreError::Corrupt {
                    id,
                    reason: e.to_string(),
                }
            }),
        }
    }

    fn allocate_id(&mut self, start_ms: i64) -> Result<EventId, StoreError> {
        let tree = &self.shared.tree;
        self.ids.allocate(start_ms, |ms| {
            let lo = keys::event_key(EventId::first_at(ms));
            let hi = keys::event_key(EventId::from_parts(ms, u16::MAX));
            let highest = tree.range(lo..=hi).next_back().transpose()?;
            Ok(highest
                .and_then(|(key, _)| keys::id_from_tail(&key))
                .map(EventId::sequence))
        })
    }

    fn put_state(&mut self, change: StateChange) {
        let key = keys::state_key(change.namespace, &change.key);
        match change.value {
            Some(value) => self.insert(key, value),
            None => self.remove(key),
        }
    }

    fn append(&mut self, prepared: Prepared) -> Result<Event, StoreError> {
        let Prepared {
            start_ms,
            mut record,
            attributes,
        } = prepared;
        let id = self.allocate_id(start_ms)?;
        record.outbox_seq = self.next_outbox_seq();
        self.outbox_ids.push(id.as_u64());
        let encoded = record.encode();
        self.index_add(Index::Camera(&record.camera_id), id)?;
        self.index_add(Index::Type(&record.kind), id)?;
        self.index_add(Index::Unacked, id)?;
        for sha in record.media_shas() {
            self.insert(keys::media_ref_key(sha, id), []);
        }
        self.live_bytes += footprint(&record, encoded.len());
        self.live_events += 1;
        self.insert(keys::event_key(id), encoded);
        Ok(record.into_event(id, attributes))
    }

    fn delete_record(
        &mut self,
        id: EventId,
        record: &Record,
        record_len: usize,
    ) -> Result<bool, StoreError> {
        self.remove(keys::event_key(id));
        self.index_remove(Index::Camera(&record.camera_id), id)?;
        self.index_remove(Index::Type(&record.kind), id)?;
        if record.ack.is_none() {
            self.index_remove(Index::Unacked, id)?;
        }
        for sha in record.media_shas() {
            self.remove(keys::media_ref_key(sha, id));
            self.released_media.insert(*sha);
        }
        self.records.insert(id, None);
        self.live_bytes = self
            .live_bytes
            .saturating_sub(footprint(record, record_len));
        self.live_events = self.live_events.saturating_sub(1);
        self.shared.in_outbox(record.outbox_seq)
    }

    /// Removes the outbox groups delivered through `through` (inclusive); returns how many
    /// entries they held. A group partly delivered stays whole: readers skip by sequence.
    fn prune_outbox(&mut self, through: u64) -> Result<u64, StoreError> {
        let mut removed = 0;
        let groups = keys::outbox_key(0)..=keys::outbox_key(through);
        let mut delivered = Vec::new();
        for item in self.shared.tree.range(groups) {
            let (key, value) = item?;
            let (Some(first), Some(ids)) = (keys::outbox_seq(&key), IdList::decode(&value)) else {
                continue;
            };
            if ids.is_empty() {
                continue;
            }
            if first + ids.len() as u64 - 1 > through {
                break;
            }
            removed += ids.len() as u64;
            delivered.push(key);
        }
        for key in delivered {
            self.remove(key);
        }
        Ok(removed)
    }

    fn ack(&mut self, id: EventId, by: Option<String>) -> Result<Option<Event>, StoreError> {
        let Some(old) = self.read(id)? else {
            return Ok(None);
        };
        let corrupt = |e: crate::record::DecodeError| StoreError::Corrupt {
            id,
            reason: e.to_string(),
        };
        if old.ack.is_some() {
            // Acknowledging twice keeps the first acknowledgement.
            return old.to_event(id).map(Some).map_err(corrupt);
        }
        let mut new = old.clone();
        new.ack = Some((Timestamp::now().as_millis(), by));
        let event = new.to_event(id).map_err(corrupt)?;
        let encoded = new.encode();
        self.live_bytes = (self.live_bytes + footprint(&new, encoded.len()))
            .saturating_sub(footprint(&old, old.encode().len()));
        self.index_remove(Index::Unacked, id)?;
        self.insert(keys::event_key(id), encoded);
        self.records.insert(id, Some(new));
        Ok(Some(event))
    }

    fn retention(
        &mut self,
        policy: &RetentionPolicy,
        now: Timestamp,
    ) -> Result<RetentionReport, StoreError> {
        let mut report = RetentionReport::default();
        let cutoff = EventId::first_at(now.as_millis().saturating_sub(policy.max_age_ms()));
        let free_disk = self.shared.free_disk_bytes()?;
        let quota_usage = |b: &GroupBatch, freed_media: u64| {
            (b.live_bytes * RECORD_DISK_FACTOR + b.shared.media.bytes()).saturating_sub(freed_media)
        };
        let mut freed_media = 0u64;
        let mut freed_total = 0u64;
        let mut media_refs_removed: HashMap<[u8; 32], u64> = HashMap::new();
        let tree = self.shared.tree.clone();
        for item in tree.range(keys::event_key(EventId::MIN)..=keys::event_key(EventId::MAX)) {
            let (key, value) = item?;
            let Some(id) = keys::id_from_tail(&key) else {
                continue;
            };
            let reason = if id < cutoff {
                RetentionReason::max_age
            } else if quota_usage(self, freed_media) > policy.max_disk_bytes {
                RetentionReason::quota
            } else if free_disk.saturating_add(freed_total) < policy.min_free_disk_bytes {
                RetentionReason::disk_free
            } else {
                break;
            };
            if report.deleted() >= MAX_DELETES_PER_PASS {
                report.more = true;
                break;
            }
            let record = match self.records.get(&id) {
                Some(None) => continue,               // already deleted in this group
                Some(Some(record)) => record.clone(), // acknowledged in this group
                None => match Record::decode(&value) {
                    Ok(record) => record,
                    Err(e) => {
                        // Its index entries cannot be found; drop the record itself so it cannot
                        // pin the oldest end of the store forever.
                        self.shared.count_corrupt(id, &e);
                        self.remove(&key);
                        continue;
                    }
                },
            };
            let record_len = record.encode().len();
            freed_total += footprint(&record, record_len) * RECORD_DISK_FACTOR;
            for media in &record.media {
                let removed = media_refs_removed.entry(media.sha256).or_default();
                *removed += 1;
                let refs = tree
                    .scan_prefix(keys::media_ref_prefix(&media.sha256))
                    .count() as u64;
                if *removed == refs {
                    freed_media += media.size;
                    freed_total += media.size;
                }
            }
            if self.delete_record(id, &record, record_len)? {
                report.outbox_dropped += 1;
            }
            match reason {
                RetentionReason::max_age => report.deleted_max_age += 1,
                RetentionReason::quota => report.deleted_quota += 1,
                RetentionReason::disk_free => report.deleted_disk_free += 1,
            }
        }
        Ok(report)
    }

    /// Applies the batch and makes it durable; then deletes media files nothing refers to.
    fn commit(mut self) -> Result<CommitOutcome, StoreError> {
        let mut outcome = CommitOutcome {
            next_outbox_seq: self.next_outbox_seq(),
            media_files_deleted: 0,
        };
        if !self.dirty {
            return Ok(outcome);
        }
        for (key, ids) in std::mem::take(&mut self.buckets) {
            if ids.is_empty() {
                self.batch.remove(key);
            } else {
                self.batch.insert(key, IdList::encode(&ids));
            }
        }
        if !self.outbox_ids.is_empty() {
            self.batch.insert(
                &keys::outbox_key(self.outbox_first_seq),
                IdList::encode(&self.outbox_ids),
            );
        }
        let shared = self.shared;
        let mut batch = self.batch;
        let counters = Counters {
            live_bytes: self.live_bytes,
            live_events: self.live_events,
            next_outbox_seq: outcome.next_outbox_seq,
        };
        batch.insert(keys::meta_key(Counters::KEY), &counters.encode());
        shared.tree.apply_batch(batch)?;
        shared.make_durable()?;
        shared.live_bytes.store(self.live_bytes, Ordering::Relaxed);
        shared
            .live_events
            .store(self.live_events, Ordering::Relaxed);
        for sha in &self.released_media {
            let still_referenced = || {
                shared
                    .tree
                    .scan_prefix(keys::media_ref_prefix(sha))
                    .next()
                    .is_some()
            };
            match shared.media.delete_if_unreferenced(sha, still_referenced) {
                Ok(true) => outcome.media_files_deleted += 1,
                Ok(false) => {}
                // Left for the start-up sweep.
                Err(e) => {
                    tracing::warn!(error = %e, sha = %hex::encode(sha), "media delete failed")
                }
            }
        }
        Ok(outcome)
    }
}

/// Running totals kept in one key, written with every commit (one key, not three: sled's cost is
/// per key).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Counters {
    pub live_bytes: u64,
    pub live_events: u64,
    pub next_outbox_seq: u64,
}

impl Counters {
    pub const KEY: &str = "counters";

    fn encode(&self) -> [u8; 24] {
        let mut out = [0; 24];
        out[..8].copy_from_slice(&self.live_bytes.to_be_bytes());
        out[8..16].copy_from_slice(&self.live_events.to_be_bytes());
        out[16..].copy_from_slice(&self.next_outbox_seq.to_be_bytes());
        out
    }

    pub fn decode(bytes: &[u8]) -> Option<Counters> {
        let field = |i: usize| {
            Some(u64::from_be_bytes(
                bytes.get(i * 8..i * 8 + 8)?.try_into().ok()?,
            ))
        };
        (bytes.len() == 24).then_some(())?;
        Some(Counters {
            live_bytes: field(0)?,
            live_events: field(1)?,
            next_outbox_seq: field(2)?,
        })
    }
}

/// Approximate bytes an event occupies in the tree: its record, its key, its three index ids and
/// its media references.
fn footprint(record: &Record, record_len: usize) -> u64 {
    (9 + record_len + 3 * 8 + record.media.len() * 41) as u64
}
