//! The appliance's embedded event store.
//!
//! * Records and indexes live in one sled tree (see [`keys`] for the layout); each event, its index
//!   entries, its outbox entry and its media references are written in one atomic sled batch.
//! * Media files are content-addressed under `media/`, written and fsynced before the event that
//!   references them is queued; orphans are swept at open.
//! * One writer thread applies all mutations with group commit (see [`writer`]).
//!
//! # Durability
//! [`EventStore::append`], [`EventStore::append_many`], [`EventStore::ack`] and
//! [`EventStore::enforce_retention`] return a [`Commit`] that resolves only after the change is
//! applied, sled's log is flushed, *and* sled's data file has been `fdatasync`ed. sled's own
//! `flush()` ends in `sync_file_range`, which survives a process crash but not a power cut (it
//! neither flushes the device cache nor the file size); the extra `fdatasync` is the power-loss
//! barrier. Operations that arrive while a flush is running share the next one (group commit), so
//! the flash sees one sync per group, not one per event. [`EventStore::put_media`] returns after the
//! file and its directory are fsynced. Reads see only committed data.

mod keys;
mod media;
pub mod metrics;
mod query;
mod record;
#[cfg(test)]
mod tests;
mod writer;

use std::fs::{self, File};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use appliance_model::{Event, EventId, InvalidEvent, MediaKind, MediaRef, NewEvent, Timestamp};
use tokio::sync::oneshot;

use crate::keys::IdList;
use crate::media::MediaFiles;
pub use crate::metrics::StoreMetrics;
pub use crate::query::{EventPage, EventQuery, MAX_PAGE_SIZE};
use crate::record::{DecodeError, Prepared, Record, sha_from_hex};
use crate::writer::{AppendReply, Counters, Op, Queued, Writer};

/// Largest media file accepted (bytes).
pub const MAX_MEDIA_BYTES: usize = 64 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Invalid(#[from] InvalidEvent),
    #[error("media {0} is not in the store; write it with put_media first")]
    MediaMissing(String),
    #[error("media rejected: {0}")]
    MediaRejected(String),
    #[error("the store is closed")]
    Closed,
    #[error("event {id} is unreadable: {reason}")]
    Corrupt { id: EventId, reason: String },
    #[error("commit failed: {0}")]
    Commit(Arc<str>),
    #[error("store I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("sled: {0}")]
    Sled(#[from] sled::Error),
}

/// Where and how to open the store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Holds `records/` (sled) and `media/`.
    pub dir: PathBuf,
    /// sled page-cache size in bytes.
    pub cache_capacity: u64,
    /// Most operations one group commit carries.
    pub max_commit_group: usize,
}

/// What retention enforces; see [`EventStore::enforce_retention`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionPolicy {
    pub max_age: Duration,
    /// Quota shared by event records (counted at sled's space amplification) and media files.
    pub max_disk_bytes: u64,
    /// Delete oldest events while the data filesystem has less free space than this.
    pub min_free_disk_bytes: u64,
}

impl RetentionPolicy {
    fn max_age_ms(&self) -> i64 {
        i64::try_from(self.max_age.as_millis()).unwrap_or(i64::MAX)
    }
}

/// What one retention pass deleted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionReport {
    pub deleted_max_age: u64,
    pub deleted_quota: u64,
    pub deleted_disk_free: u64,
    /// Deleted events that had not been delivered upstream yet.
    pub outbox_dropped: u64,
    pub media_files_deleted: u64,
    /// The pass stopped at its size limit; run another.
    pub more: bool,
}

impl RetentionReport {
    pub fn deleted(&self) -> u64 {
        self.deleted_max_age + self.deleted_quota + self.deleted_disk_free
    }
}

/// Disk use as retention sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub events: u64,
    /// Bytes of records and index keys (before sled's amplification).
    pub record_bytes: u64,
    /// sled's files on disk.
    pub store_disk_bytes: u64,
    pub media_bytes: u64,
}

/// A change to the durable state another subsystem keeps in the store (registered devices,
/// sessions, …): `value: None` deletes the key. Applied in the same atomic commit as the events it
/// is submitted with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateChange {
    pub namespace: &'static str,
    pub key: String,
    pub value: Option<Vec<u8>>,
}

/// One pending outbox entry, in commit order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboxEntry {
    pub seq: u64,
    pub id: EventId,
}

/// Result of [`EventStore::verify`].
#[derive(Debug, Clone, Default)]
pub struct VerifyReport {
    pub events: u64,
    pub media_files: u64,
    pub problems: Vec<String>,
}

/// A submitted write; resolves when it is durable (or failed). Await it, or call [`Commit::wait`]
/// from a thread that is not running async code.
#[must_use = "a write is only known to be durable once its Commit resolves"]
pub struct Commit<T> {
    rx: oneshot::Receiver<Result<T, StoreError>>,
}

impl<T> Commit<T> {
    fn failed(error: StoreError) -> Commit<T> {
        let (tx, rx) = oneshot::channel();
        let _ = tx.send(Err(error));
        Commit { rx }
    }

    /// Blocks until the write is durable. Must not be called from async code.
    pub fn wait(self) -> Result<T, StoreError> {
        self.rx.blocking_recv().unwrap_or(Err(StoreError::Closed))
    }
}

impl<T> Future for Commit<T> {
    type Output = Result<T, StoreError>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.rx)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(StoreError::Closed)))
    }
}

/// State shared by the handle and the writer thread.
pub(crate) struct Shared {
    db: sled::Db,
    tree: sled::Tree,
    /// sled's log file, opened by us so that commits can `fdatasync` it (same inode).
    data_file: File,
    dir: PathBuf,
    media: MediaFiles,
    metrics: Arc<StoreMetrics>,
    live_bytes: AtomicU64,
    live_events: AtomicU64,
    /// Called by the writer after a durable commit that added outbox entries.
    outbox_listeners: Mutex<Vec<OutboxListener>>,
}

type OutboxListener = Box<dyn Fn() + Send + Sync>;

impl Shared {
    fn make_durable(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        self.data_file.sync_data()?;
        Ok(())
    }

    fn count_corrupt(&self, id: EventId, error: &DecodeError) {
        self.metrics.corrupt_records.inc();
        tracing::warn!(%id, %error, "skipping unreadable event record");
    }

    // statvfs field widths differ between targets (u32 on 32-bit ARM); widen explicitly.
    #[allow(clippy::useless_conversion)]
    fn free_disk_bytes(&self) -> Result<u64, StoreError> {
        let stat = nix::sys::statvfs::statvfs(&self.dir).map_err(std::io::Error::from)?;
        Ok(u64::from(stat.blocks_available()) * u64::from(stat.fragment_size()))
    }

    /// The outbox group that holds `seq`, as (first sequence, ids), if it is still there.
    fn outbox_group(&self, seq: u64) -> Result<Option<(u64, Vec<u64>)>, StoreError> {
        let groups = keys::outbox_key(0)..=keys::outbox_key(seq);
        let Some((key, value)) = self.tree.range(groups).next_back().transpose()? else {
            return Ok(None);
        };
        Ok(keys::outbox_seq(&key).zip(IdList::decode(&value)))
    }

    /// True while the outbox still holds sequence `seq` (it has not been delivered upstream).
    fn in_outbox(&self, seq: u64) -> Result<bool, StoreError> {
        Ok(self
            .outbox_group(seq)?
            .is_some_and(|(first, ids)| seq - first < ids.len() as u64))
    }

    /// The totals of the last commit; zero for a new store.
    fn read_counters(&self) -> Result<Counters, StoreError> {
        match self.tree.get(keys::meta_key(Counters::KEY))? {
            None => Ok(Counters::default()),
            Some(bytes) => Counters::decode(&bytes).ok_or_else(|| {
                StoreError::Io(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "the store's counters record is damaged",
                ))
            }),
        }
    }

    fn load(&self, id: EventId) -> Result<Option<Event>, StoreError> {
        let Some(bytes) = self.tree.get(keys::event_key(id))? else {
            return Ok(None);
        };
        Record::decode(&bytes)
            .and_then(|r| r.to_event(id))
            .map(Some)
            .map_err(|e| {
                self.count_corrupt(id, &e);
                StoreError::Corrupt {
                    id,
                    reason: e.to_string(),
                }
            })
    }
}

/// How long `open` waits for a previous handle of the same store, in this process, to let go.
const LOCK_WAIT: Duration = Duration::from_secs(5);

/// Opens sled, waiting while its file lock is still held. sled releases the lock only when its
/// background flusher thread notices that the last handle is gone (up to one flush interval after
/// the drop), so reopening a store right after closing it in the same process can find it
/// locked. sled reports this only as an `Other` I/O error with a message, hence the text match.
fn open_sled(config: &sled::Config) -> sled::Result<sled::Db> {
    let deadline = Instant::now() + LOCK_WAIT;
    loop {
        match config.open() {
            Err(sled::Error::Io(e))
                if e.to_string().contains("could not acquire lock")
                    && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            result => return result,
        }
    }
}

/// A handle to the store; cheap to clone.
#[derive(Clone)]
pub struct EventStore {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    tx: Mutex<Option<Sender<Queued>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.close();
    }
}

impl Inner {
    fn close(&self) {
        drop(lock(&self.tx).take());
        if let Some(writer) = lock(&self.writer).take()
            && writer.join().is_err()
        {
            tracing::error!("store writer thread panicked");
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl EventStore {
    /// Opens (creating if needed) the store in `options.dir`, sweeps orphan media files and starts
    /// the writer thread.
    pub fn open(
        options: &StoreOptions,
        metrics: Arc<StoreMetrics>,
    ) -> Result<EventStore, StoreError> {
        let records_dir = options.dir.join("records");
        fs::create_dir_all(&records_dir)?;
        let db = open_sled(
            &sled::Config::new()
                .path(&records_dir)
                .cache_capacity(options.cache_capacity),
        )?;
        let tree = db.open_tree("appliance")?;
        let data_file = File::open(records_dir.join("db"))?;
        let media = MediaFiles::open(&options.dir.join("media"))?;
        let orphans = media.sweep(|sha| {
            // An unreadable reference keeps the file: never delete what might be referenced.
            tree.scan_prefix(keys::media_ref_prefix(sha))
                .next()
                .is_some()
        })?;
        if orphans > 0 {
            tracing::info!(orphans, "removed media files no event refers to");
        }
        metrics.orphan_media_removed.inc_by(orphans);
        let shared = Arc::new(Shared {
            db,
            tree,
            data_file,
            dir: options.dir.clone(),
            media,
            metrics,
            live_bytes: AtomicU64::new(0),
            live_events: AtomicU64::new(0),
            outbox_listeners: Mutex::new(Vec::new()),
        });
        let counters = shared.read_counters()?;
        shared
            .live_bytes
            .store(counters.live_bytes, Ordering::Relaxed);
        shared
            .live_events
            .store(counters.live_events, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel();
        let writer = Writer {
            shared: Arc::clone(&shared),
            rx,
            max_group: options.max_commit_group.max(1),
            next_outbox_seq: counters.next_outbox_seq,
        };
        let handle = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || writer.run())?;
        let store = EventStore {
            inner: Arc::new(Inner {
                shared,
                tx: Mutex::new(Some(tx)),
                writer: Mutex::new(Some(handle)),
            }),
        };
        store.refresh_gauges();
        Ok(store)
    }

    fn shared(&self) -> &Shared {
        &self.inner.shared
    }

    fn submit<T>(&self, make: impl FnOnce(writer::Reply<T>) -> Op) -> Commit<T> {
        let (reply, rx) = oneshot::channel();
        let queued = Queued {
            op: make(reply),
            enqueued: Instant::now(),
        };
        match lock(&self.inner.tx).as_ref() {
            Some(tx) if tx.send(queued).is_ok() => Commit { rx },
            _ => Commit::failed(StoreError::Closed),
        }
    }

    /// Writes a media file (fsynced) and returns its reference for a [`NewEvent`].
    pub fn put_media(
        &self,
        kind: MediaKind,
        content_type: &str,
        data: &[u8],
    ) -> Result<MediaRef, StoreError> {
        if content_type.is_empty()
            || content_type.len() > 127
            || !content_type.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(StoreError::MediaRejected(format!(
                "content type `{}` is not a MIME type",
                content_type.escape_default()
            )));
        }
        if data.len() > MAX_MEDIA_BYTES {
            return Err(StoreError::MediaRejected(format!(
                "{} bytes, at most {MAX_MEDIA_BYTES} allowed",
                data.len()
            )));
        }
        let stored = self.shared().media.put(data)?;
        Ok(MediaRef {
            kind,
            content_type: content_type.to_string(),
            sha256: hex::encode(stored.sha256),
            size: stored.size,
        })
    }

    fn check(&self, event: &NewEvent) -> Result<(), StoreError> {
        event.validate()?;
        match event
            .media
            .iter()
            .find(|m| !sha_from_hex(&m.sha256).is_some_and(|sha| self.shared().media.exists(&sha)))
        {
            Some(missing) => Err(StoreError::MediaMissing(missing.sha256.clone())),
            None => Ok(()),
        }
    }

    /// Stores one event; resolves with the stored event once it is durable.
    pub fn append(&self, event: NewEvent) -> Commit<Event> {
        if let Err(e) = self.check(&event) {
            return Commit::failed(e);
        }
        let prepared = Prepared::new(event, Timestamp::now());
        self.submit(|reply| Op::Append {
            events: vec![prepared],
            state: Vec::new(),
            reply: AppendReply::One(reply),
        })
    }

    /// Stores several events atomically (all or none), in one commit.
    pub fn append_many(&self, events: Vec<NewEvent>) -> Commit<Vec<Event>> {
        self.commit(events, Vec::new())
    }

    /// Stores events and state changes atomically (all or none), in one commit: e.g. a device's
    /// new state together with the event that records the transition.
    pub fn commit(&self, events: Vec<NewEvent>, state: Vec<StateChange>) -> Commit<Vec<Event>> {
        if let Some(e) = events.iter().find_map(|e| self.check(e).err()) {
            return Commit::failed(e);
        }
        let now = Timestamp::now();
        let events = events.into_iter().map(|e| Prepared::new(e, now)).collect();
        self.submit(|reply| Op::Append {
            events,
            state,
            reply: AppendReply::Many(reply),
        })
    }

    /// Acknowledges an event. Resolves to `None` if no such event exists; acknowledging an
    /// acknowledged event returns it unchanged.
    pub fn ack(&self, id: EventId, by: Option<String>) -> Commit<Option<Event>> {
        self.submit(|reply| Op::Ack { id, by, reply })
    }

    /// Deletes, oldest first, events older than the maximum age, then as many as needed to bring
    /// the disk quota and the free-space floor back in bounds. Deleted events leave the outbox too
    /// (counted); media files nobody references any more are removed.
    pub fn enforce_retention(&self, policy: RetentionPolicy) -> Commit<RetentionReport> {
        let now = Timestamp::now();
        self.submit(|reply| Op::Retention { policy, now, reply })
    }

    /// Calls `listener` (on the writer thread: keep it short, e.g. wake a task) after every
    /// durable commit that added outbox entries, so upstream senders need not poll.
    pub fn on_outbox_growth(&self, listener: impl Fn() + Send + Sync + 'static) {
        self.shared()
            .outbox_listeners
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Box::new(listener));
    }

    /// Forgets the outbox entries through sequence `through` (inclusive), once every upstream
    /// has delivered them; resolves to how many entries went. Until then retention counts the
    /// events it deletes as undelivered (`outbox_dropped`).
    pub fn prune_outbox(&self, through: u64) -> Commit<u64> {
        self.submit(|reply| Op::PruneOutbox { through, reply })
    }

    /// One state value.
    pub fn state(&self, namespace: &str, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .shared()
            .tree
            .get(keys::state_key(namespace, key))?
            .map(|v| v.to_vec()))
    }

    /// Every (key, value) of a state namespace, in key order.
    pub fn state_entries(&self, namespace: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let prefix = keys::state_prefix(namespace);
        let mut out = Vec::new();
        for item in self.shared().tree.scan_prefix(&prefix) {
            let (key, value) = item?;
            let name = String::from_utf8_lossy(&key[prefix.len()..]).into_owned();
            out.push((name, value.to_vec()));
        }
        Ok(out)
    }

    pub fn get(&self, id: EventId) -> Result<Option<Event>, StoreError> {
        self.shared().load(id)
    }

    /// Events matching `query`, newest first.
    pub fn query(&self, query: &EventQuery) -> Result<EventPage, StoreError> {
        query::run(self.shared(), query)
    }

    /// Path of a media file of this store, if it exists.
    pub fn media_path(&self, media: &MediaRef) -> Option<PathBuf> {
        let sha = sha_from_hex(&media.sha256)?;
        let path = self.shared().media.path_of(&sha);
        path.is_file().then_some(path)
    }

    /// Up to `limit` outbox entries after sequence `after` (exclusive), in commit order. An entry
    /// whose event retention has deleted since is still listed; its event is gone.
    pub fn outbox(&self, after: Option<u64>, limit: usize) -> Result<Vec<OutboxEntry>, StoreError> {
        let start = after.map_or(0, |seq| seq.saturating_add(1));
        let shared = self.shared();
        // The group holding `start` may begin before it.
        let from = match shared.outbox_group(start)? {
            Some((first, _)) => first,
            None => start,
        };
        let end = keys::prefix_end(&[keys::OUTBOX]);
        let mut out = Vec::new();
        for item in shared.tree.range(keys::outbox_key(from).to_vec()..end) {
            let (key, value) = item?;
            let (Some(first), Some(ids)) = (keys::outbox_seq(&key), IdList::decode(&value)) else {
                shared.metrics.corrupt_records.inc();
                continue;
            };
            let entries = (first..).zip(ids).filter(|(seq, _)| *seq >= start);
            for (seq, id) in entries {
                if out.len() == limit {
                    return Ok(out);
                }
                out.push(OutboxEntry {
                    seq,
                    id: EventId::from_u64(id),
                });
            }
        }
        Ok(out)
    }

    pub fn usage(&self) -> Result<Usage, StoreError> {
        let shared = self.shared();
        Ok(Usage {
            events: shared.live_events.load(Ordering::Relaxed),
            record_bytes: shared.live_bytes.load(Ordering::Relaxed),
            store_disk_bytes: shared.db.size_on_disk()?,
            media_bytes: shared.media.bytes(),
        })
    }

    /// Updates the gauges in [`StoreMetrics`] (call before exporting metrics).
    pub fn refresh_gauges(&self) {
        use crate::metrics::{DiskPart, PartLabel};
        let Ok(usage) = self.usage() else { return };
        let metrics = &self.shared().metrics;
        let set = |part, bytes: u64| {
            metrics
                .disk_bytes
                .get_or_create(&PartLabel { part })
                .set(i64::try_from(bytes).unwrap_or(i64::MAX));
        };
        set(DiskPart::records, usage.store_disk_bytes);
        set(DiskPart::media, usage.media_bytes);
        metrics
            .events_stored
            .set(i64::try_from(usage.events).unwrap_or(i64::MAX));
    }

    /// True while the writer thread accepts writes.
    pub fn is_writable(&self) -> bool {
        lock(&self.inner.tx).is_some()
            && lock(&self.inner.writer)
                .as_ref()
                .is_some_and(|w| !w.is_finished())
    }

    /// Stops accepting writes, waits for queued ones to become durable and stops the writer.
    /// Later writes fail with [`StoreError::Closed`]; reads keep working.
    pub fn close(&self) {
        self.inner.close();
    }

    /// Checks every invariant the store promises (records decode, indexes and records agree,
    /// referenced media exist, no unreferenced media). Slow: for tests and diagnostics.
    pub fn verify(&self) -> Result<VerifyReport, StoreError> {
        query::verify(self.shared())
    }

    /// The directory the store lives in.
    pub fn dir(&self) -> &Path {
        &self.shared().dir
    }
}
