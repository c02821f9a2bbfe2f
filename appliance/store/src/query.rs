//! Reads: filtered, newest-first queries with cursor pagination, and the consistency check.

use appliance_model::{Event, EventId, Timestamp};

use crate::keys::{self, IdList, Index};
use crate::record::Record;
use crate::{Shared, StoreError, VerifyReport};

/// Largest page a query returns.
pub const MAX_PAGE_SIZE: usize = 1000;
/// Most index entries one query examines. A query whose filters match rarely returns a short page
/// with a cursor instead of walking the whole store while holding a request open.
const MAX_SCAN: usize = 20_000;

/// Filters for [`crate::EventStore::query`]. Times compare with the event's start time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventQuery {
    pub camera_id: Option<String>,
    pub kind: Option<String>,
    /// Inclusive.
    pub since: Option<Timestamp>,
    /// Inclusive.
    pub until: Option<Timestamp>,
    pub acked: Option<bool>,
    /// Clamped to 1..=[`MAX_PAGE_SIZE`].
    pub limit: usize,
    /// Cursor from a previous page: only events older than this id.
    pub before: Option<EventId>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EventPage {
    pub items: Vec<Event>,
    /// Pass as `before` to get the next page; `None` when the store has no more matches.
    pub next_cursor: Option<EventId>,
}

impl EventQuery {
    /// The most selective index the filters allow; `None`: walk the records themselves.
    fn index(&self) -> Option<Index<'_>> {
        match (&self.camera_id, &self.kind, self.acked) {
            (Some(camera), _, _) => Some(Index::Camera(camera)),
            (None, Some(kind), _) => Some(Index::Type(kind)),
            (None, None, Some(false)) => Some(Index::Unacked),
            (None, None, _) => None,
        }
    }

    fn matches(&self, record: &Record) -> bool {
        self.camera_id
            .as_ref()
            .is_none_or(|c| *c == record.camera_id)
            && self.kind.as_ref().is_none_or(|k| *k == record.kind)
            && self.acked.is_none_or(|acked| acked == record.ack.is_some())
    }

    /// Id bounds from the time range and the cursor: `lower..upper`.
    fn id_range(&self) -> Option<(EventId, EventId)> {
        if self.until.is_some_and(|t| t.as_millis() < 0) {
            return None;
        }
        let lower = self
            .since
            .map_or(EventId::MIN, |t| EventId::first_at(t.as_millis()));
        let until = self
            .until
            .map(|t| EventId::first_at(t.as_millis().saturating_add(1)));
        let upper = [until, self.before].into_iter().flatten().min();
        let upper = upper.unwrap_or(EventId::MAX);
        (lower < upper).then_some((lower, upper))
    }
}

/// Walks candidate ids newest first, loading and filtering their records.
struct Collector<'a> {
    shared: &'a Shared,
    query: &'a EventQuery,
    limit: usize,
    scanned: usize,
    page: EventPage,
}

impl Collector<'_> {
    /// Offers one candidate; returns false when the page is complete.
    fn offer(&mut self, id: EventId, stored: Option<sled::IVec>) -> bool {
        if self.scanned == MAX_SCAN {
            // Everything newer than `id` has been examined.
            self.page.next_cursor = Some(EventId::from_u64(id.as_u64() + 1));
            return false;
        }
        self.scanned += 1;
        let Some(bytes) = stored else {
            self.shared.metrics.corrupt_records.inc();
            tracing::warn!(%id, "index entry without its event skipped");
            return true;
        };
        let event = Record::decode(&bytes).and_then(|r| {
            let keep = self.query.matches(&r);
            keep.then(|| r.to_event(id)).transpose()
        });
        match event {
            Ok(Some(event)) => self.page.items.push(event),
            Ok(None) => {}
            Err(e) => self.shared.count_corrupt(id, &e),
        }
        if self.page.items.len() == self.limit {
            self.page.next_cursor = Some(id);
            return false;
        }
        true
    }
}

pub(crate) fn run(shared: &Shared, query: &EventQuery) -> Result<EventPage, StoreError> {
    let mut collector = Collector {
        shared,
        query,
        limit: query.limit.clamp(1, MAX_PAGE_SIZE),
        scanned: 0,
        page: EventPage {
            items: Vec::new(),
            next_cursor: None,
        },
    };
    let Some((lower, upper)) = query.id_range() else {
        return Ok(collector.page);
    };
    let in_range = |id: &EventId| lower <= *id && *id < upper;
    match query.index() {
        None => {
            let range = keys::event_key(lower)..keys::event_key(upper);
            for item in shared.tree.range(range).rev() {
                let (key, value) = item?;
                if let Some(id) = keys::id_from_tail(&key)
                    && !collector.offer(id, Some(value))
                {
                    break;
                }
            }
        }
        Some(index) => {
            let last = EventId::from_u64(upper.as_u64() - 1);
            let buckets = index.bucket_key(lower)..=index.bucket_key(last);
            'buckets: for item in shared.tree.range(buckets).rev() {
                let (key, value) = item?;
                let Some(ids) = IdList::decode(&value) else {
                    shared.metrics.corrupt_records.inc();
                    tracing::warn!(?key, "unreadable index bucket skipped");
                    continue;
                };
                for id in ids
                    .into_iter()
                    .rev()
                    .map(EventId::from_u64)
                    .filter(in_range)
                {
                    let stored = shared.tree.get(keys::event_key(id))?;
                    if !collector.offer(id, stored) {
                        break 'buckets;
                    }
                }
            }
        }
    }
    Ok(collector.page)
}

pub(crate) fn verify(shared: &Shared) -> Result<VerifyReport, StoreError> {
    let tree = &shared.tree;
    let mut report = VerifyReport::default();
    let mut problem = |p: String| report.problems.push(p);
    let in_bucket = |index: Index<'_>, id: EventId| -> Result<bool, StoreError> {
        Ok(tree
            .get(index.bucket_key(id))?
            .and_then(|v| IdList::decode(&v))
            .is_some_and(|ids| ids.binary_search(&id.as_u64()).is_ok()))
    };
    let mut events = 0u64;
    let mut unacked = 0u64;
    for item in tree.scan_prefix([keys::EVENT]) {
        let (key, value) = item?;
        let Some(id) = keys::id_from_tail(&key) else {
            problem(format!("malformed event key {key:?}"));
            continue;
        };
        events += 1;
        let record = match Record::decode(&value) {
            Ok(r) => r,
            Err(e) => {
                problem(format!("event {id}: {e}"));
                continue;
            }
        };
        for index in [Index::Camera(&record.camera_id), Index::Type(&record.kind)] {
            if !in_bucket(index, id)? {
                problem(format!("event {id}: missing from {index:?}"));
            }
        }
        if record.ack.is_none() {
            unacked += 1;
        }
        if in_bucket(Index::Unacked, id)? != record.ack.is_none() {
            problem(format!(
                "event {id}: unacknowledged index disagrees with its ack"
            ));
        }
        for sha in record.media_shas() {
            if !tree.contains_key(keys::media_ref_key(sha, id))? {
                problem(format!(
                    "event {id}: media reference {} missing",
                    hex::encode(sha)
                ));
            }
            if !shared.media.exists(sha) {
                problem(format!("event {id}: media {} missing", hex::encode(sha)));
            }
        }
    }
    // Every index entry must name a stored event; counting the per-camera entries also catches
    // an event listed twice.
    let mut camera_entries = 0u64;
    let mut unacked_entries = 0u64;
    for tag in [keys::BY_CAMERA, keys::BY_TYPE, keys::UNACKED] {
        for item in tree.scan_prefix([tag]) {
            let (key, value) = item?;
            let Some(ids) = IdList::decode(&value) else {
                problem(format!("index bucket {key:?} is unreadable"));
                continue;
            };
            if ids.is_empty() || !ids.is_sorted_by(|a, b| a < b) {
                problem(format!("index bucket {key:?} is empty or unsorted"));
            }
            match tag {
                keys::BY_CAMERA => camera_entries += ids.len() as u64,
                keys::UNACKED => unacked_entries += ids.len() as u64,
                _ => {}
            }
            for id in ids.into_iter().map(EventId::from_u64) {
                if !tree.contains_key(keys::event_key(id))? {
                    problem(format!(
                        "index bucket {key:?} lists {id}, which is not stored"
                    ));
                }
            }
        }
    }
    if camera_entries != events || unacked_entries != unacked {
        problem(format!(
            "index sizes disagree: {camera_entries} camera entries and {unacked_entries} unacknowledged for {events} events ({unacked} unacknowledged)"
        ));
    }
    for item in tree.scan_prefix([keys::MEDIA_REF]) {
        let (key, _) = item?;
        match keys::id_from_tail(&key) {
            Some(id) if tree.contains_key(keys::event_key(id))? => {}
            _ => problem(format!("media reference {key:?} has no event")),
        }
    }
    for item in tree.scan_prefix([keys::OUTBOX]) {
        let (key, value) = item?;
        if IdList::decode(&value).is_none_or(|ids| ids.is_empty()) {
            problem(format!("outbox group {key:?} is unreadable or empty"));
        }
    }
    let files = shared.media.list()?;
    for sha in &files {
        if tree
            .scan_prefix(keys::media_ref_prefix(sha))
            .next()
            .is_none()
        {
            problem(format!("media file {} has no event", hex::encode(sha)));
        }
    }
    let counted = shared.read_counters()?.live_events;
    if counted != events {
        problem(format!(
            "event counter says {counted}, the store holds {events}"
        ));
    }
    report.events = events;
    report.media_files = files.len() as u64;
    Ok(report)
}
