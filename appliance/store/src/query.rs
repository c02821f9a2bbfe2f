//! Reads: filtered, newest-first queries with cursor pagination, and the consistency check.

use appliance_model::{Event, EventId, Timestamp};

use crate::keys::{self, Index};
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
    /// The most selective index the filters allow.
    fn index(&self) -> Index<'_> {
        match (&self.camera_id, &self.kind, self.acked) {
            (Some(camera), _, _) => Index::Camera(camera),
            (None, Some(kind), _) => Index::Type(kind),
            (None, None, Some(false)) => Index::Unacked,
            (None, None, _) => Index::Events,
        }
    }

    fn matches(&self, record: &Record) -> bool {
        self.camera_id
            .as_ref()
            .is_none_or(|c| *c == record.camera_id)
            && self.kind.as_ref().is_none_or(|k| *k == record.kind)
            && self.acked.is_none_or(|acked| acked == record.ack.is_some())
    }

    /// Exclusive upper bound on ids, from `until` and the cursor.
    fn upper_id(&self) -> Option<EventId> {
        let until = self
            .until
            .map(|t| EventId::first_at(t.as_millis().saturating_add(1)));
        match (until, self.before) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

pub(crate) fn run(shared: &Shared, query: &EventQuery) -> Result<EventPage, StoreError> {
    let index = query.index();
    let limit = query.limit.clamp(1, MAX_PAGE_SIZE);
    let mut page = EventPage {
        items: Vec::new(),
        next_cursor: None,
    };
    if query.until.is_some_and(|t| t.as_millis() < 0) {
        return Ok(page);
    }
    let lower = index.key(
        query
            .since
            .map_or(EventId::MIN, |t| EventId::first_at(t.as_millis())),
    );
    let upper = match query.upper_id() {
        Some(id) => index.key(id),
        None => keys::prefix_end(&index.prefix()),
    };
    if lower >= upper {
        return Ok(page);
    }
    for (scanned, item) in shared.tree.range(lower..upper).rev().enumerate() {
        let (key, value) = item?;
        let Some(id) = keys::id_from_tail(&key) else {
            continue;
        };
        if scanned >= MAX_SCAN {
            // Everything newer than `id` has been examined.
            page.next_cursor = Some(EventId::from_u64(id.as_u64() + 1));
            break;
        }
        let record = if index == Index::Events {
            Record::decode(&value)
        } else {
            match shared.tree.get(Index::Events.key(id))? {
                Some(bytes) => Record::decode(&bytes),
                None => {
                    shared.metrics.corrupt_records.inc();
                    tracing::warn!(%id, "index entry without its event skipped");
                    continue;
                }
            }
        };
        let event = match record.and_then(|r| {
            let keep = query.matches(&r);
            keep.then(|| r.to_event(id)).transpose()
        }) {
            Ok(Some(event)) => event,
            Ok(None) => continue,
            Err(e) => {
                shared.count_corrupt(id, &e);
                continue;
            }
        };
        page.items.push(event);
        if page.items.len() == limit {
            page.next_cursor = Some(id);
            break;
        }
    }
    Ok(page)
}

pub(crate) fn verify(shared: &Shared) -> Result<VerifyReport, StoreError> {
    let tree = &shared.tree;
    let mut report = VerifyReport::default();
    let mut problem = |p: String| report.problems.push(p);
    let event_exists = |id: EventId| tree.contains_key(Index::Events.key(id));
    let mut events = 0u64;
    for item in tree.scan_prefix(Index::Events.prefix()) {
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
        let mut required = vec![
            Index::Camera(&record.camera_id).key(id),
            Index::Type(&record.kind).key(id),
        ];
        if record.ack.is_none() {
            required.push(Index::Unacked.key(id));
        }
        required.extend(record.media_shas().map(|sha| keys::media_ref_key(sha, id)));
        for key in required {
            if !tree.contains_key(&key)? {
                problem(format!("event {id}: index entry {key:?} missing"));
            }
        }
        for sha in record.media_shas() {
            if !shared.media.exists(sha) {
                problem(format!("event {id}: media {} missing", hex::encode(sha)));
            }
        }
    }
    for tag in [
        keys::BY_CAMERA,
        keys::BY_TYPE,
        keys::UNACKED,
        keys::MEDIA_REF,
    ] {
        for item in tree.scan_prefix([tag]) {
            let (key, _) = item?;
            match keys::id_from_tail(&key) {
                Some(id) if event_exists(id)? => {}
                _ => problem(format!("index entry {key:?} has no event")),
            }
        }
    }
    for item in tree.scan_prefix([keys::OUTBOX]) {
        let (key, value) = item?;
        match EventId::from_be_slice(&value) {
            Some(id) if event_exists(id)? => {}
            _ => problem(format!("outbox entry {key:?} has no event")),
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
    let counted = shared.read_meta(crate::writer::META_LIVE_EVENTS)?;
    if counted != events {
        problem(format!(
            "event counter says {counted}, the store holds {events}"
        ));
    }
    report.events = events;
    report.media_files = files.len() as u64;
    Ok(report)
}
