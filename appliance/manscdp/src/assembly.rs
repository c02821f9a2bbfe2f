//! Platform side of multi-message answers: puts the pages of a `Catalog`, `RecordInfo` or
//! `PresetQuery` response back together.
//!
//! Pages belong together when they share (`DeviceID`, `SN`, kind). An answer is complete once the
//! distinct items received reach `SumNum`. Devices resend pages (their own retries, or a UDP
//! retransmission that arrived as a new transaction), so items are deduplicated: catalog items by
//! `DeviceID`, records by (`DeviceID`, `StartTime`, `EndTime`, `FilePath` or else `Name`), presets
//! by `PresetID`; the first copy is kept.
//!
//! No clock is read here: the caller passes `now` and calls [`MultiPartAssembler::expire`] when
//! [`MultiPartAssembler::next_deadline`] has passed, which returns what arrived so far marked
//! incomplete. Memory is bounded: at most `max_pending` answers are assembled at once, and the
//! oldest is dropped (counted in [`MultiPartAssembler::dropped`]) to make room for a new one, so a
//! device that floods pages with ever new SNs cannot grow the table.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use crate::message::{Body, CatalogItem, Message, Preset, RecordItem};

/// The kinds of answer that arrive in pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum ResponseKind {
    Catalog,
    RecordInfo,
    PresetQuery,
}

/// An answer handed back by the assembler.
#[derive(Debug, Clone, PartialEq)]
pub struct Assembled {
    /// The first page's message with the distinct items of all pages in arrival order, and
    /// `SumNum` the largest any page announced.
    pub message: Message,
    /// False when it timed out before `SumNum` items arrived.
    pub complete: bool,
    /// Messages that contributed, duplicates included.
    pub pages: u32,
}

/// Collects paged answers; see the module documentation.
#[derive(Debug)]
pub struct MultiPartAssembler {
    timeout: Duration,
    max_pending: usize,
    pending: HashMap<Key, Pending>,
    /// Answers recently handed back, so that a late duplicate page does not open a new assembly
    /// which would later expire as a bogus incomplete answer. Kept for one `timeout`.
    finished: HashMap<Key, Instant>,
    dropped: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    device_id: String,
    sn: u32,
    kind: ResponseKind,
}

#[derive(Debug)]
struct Pending {
    /// The first page, its items replaced by the distinct items so far.
    message: Message,
    sum_num: u32,
    seen: HashSet<String>,
    pages: u32,
    created: Instant,
    /// When a page last brought a new item. The timeout runs from here, so a large catalog
    /// that keeps arriving is not cut off, while a stalled one (or one only repeating pages)
    /// expires.
    last_progress: Instant,
}

enum Page {
    Catalog(Vec<CatalogItem>),
    Records(Vec<RecordItem>),
    Presets(Vec<Preset>),
}

impl MultiPartAssembler {
    /// `timeout`: how long without a new item before [`MultiPartAssembler::expire`] gives up on
    /// an answer. `max_pending`: answers assembled at once (at least 1).
    pub fn new(timeout: Duration, max_pending: usize) -> Self {
        Self {
            timeout,
            max_pending: max_pending.max(1),
            pending: HashMap::new(),
            finished: HashMap::new(),
            dropped: 0,
        }
    }

    /// Takes one received message.
    ///
    /// - A page of a `Catalog`, `RecordInfo` or `PresetQuery` response: `Some` with the whole
    ///   answer once it is complete (at once when `SumNum` is 0 or the page holds everything),
    ///   `None` while pages are missing, and `None` for a page of an answer already handed back
    ///   within the last `timeout`.
    /// - Anything else, catalog change notifications included (devices number those freely):
    ///   handed straight back as complete, so every response can be fed through here.
    pub fn add(&mut self, mut message: Message, now: Instant) -> Option<Assembled> {
        let Some((kind, sum_num, page)) = take_page(&mut message.body) else {
            return Some(Assembled {
                message,
                complete: true,
                pages: 1,
            });
        };
        let key = Key {
            device_id: message.device_id.clone(),
            sn: message.sn,
            kind,
        };
        if self.finished.contains_key(&key) {
            return None;
        }
        if !self.pending.contains_key(&key) && self.pending.len() >= self.max_pending {
            self.drop_oldest();
        }
        let mut entry = match self.pending.entry(key) {
            Entry::Occupied(entry) => entry,
            Entry::Vacant(entry) => entry.insert_entry(Pending {
                message,
                sum_num,
                seen: HashSet::new(),
                pages: 0,
                created: now,
                last_progress: now,
            }),
        };
        entry.get_mut().absorb(sum_num, page, now);
        if !entry.get().is_complete() {
            return None;
        }
        let (key, pending) = entry.remove_entry();
        self.remember_finished(key, now);
        Some(pending.into_assembled(true))
    }

    /// Hands back, oldest first and marked incomplete, every answer that has had no new item for
    /// `timeout`.
    pub fn expire(&mut self, now: Instant) -> Vec<Assembled> {
        let timeout = self.timeout;
        self.finished
            .retain(|_, at| now.saturating_duration_since(*at) < timeout);
        let stale: Vec<Key> = self
            .pending
            .iter()
            .filter(|(_, pending)| now.saturating_duration_since(pending.last_progress) >= timeout)
            .map(|(key, _)| key.clone())
            .collect();
        let mut expired = Vec::with_capacity(stale.len());
        for key in stale {
            if let Some(pending) = self.pending.remove(&key) {
                self.remember_finished(key, now);
                expired.push(pending);
            }
        }
        expired.sort_by_key(|pending| pending.created);
        expired
            .into_iter()
            .map(|pending| pending.into_assembled(false))
            .collect()
    }

    /// When the next answer times out, for the caller's timer; `None` when nothing is pending.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.pending
            .values()
            .filter_map(|pending| pending.last_progress.checked_add(self.timeout))
            .min()
    }

    /// Answers being assembled now.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Answers discarded so far to stay within `max_pending`.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    fn drop_oldest(&mut self) {
        let oldest = self
            .pending
            .iter()
            .min_by_key(|(_, pending)| pending.created)
            .map(|(key, _)| key.clone());
        if let Some(key) = oldest {
            self.pending.remove(&key);
            self.dropped += 1;
        }
    }

    fn remember_finished(&mut self, key: Key, now: Instant) {
        if self.finished.len() >= self.max_pending {
            let oldest = self
                .finished
                .iter()
                .min_by_key(|(_, at)| **at)
                .map(|(key, _)| key.clone());
            if let Some(oldest) = oldest {
                self.finished.remove(&oldest);
            }
        }
        self.finished.insert(key, now);
    }
}

impl Pending {
    fn absorb(&mut self, sum_num: u32, page: Page, now: Instant) {
        self.pages = self.pages.saturating_add(1);
        // A device that changes its mind about SumNum mid-answer is waited on for the larger
        // number; at worst the answer expires incomplete with everything that did arrive.
        self.sum_num = self.sum_num.max(sum_num);
        let seen = &mut self.seen;
        let added = match (&mut self.message.body, page) {
            (Body::CatalogResponse { items, .. }, Page::Catalog(new)) => {
                add_new(items, new, seen, |item| item.device_id.clone())
            }
            (Body::RecordInfoResponse { items, .. }, Page::Records(new)) => {
                add_new(items, new, seen, |item| {
                    let file = item.file_path.as_ref().or(item.name.as_ref());
                    format!(
                        "{}\u{1f}{}\u{1f}{}\u{1f}{}",
                        item.device_id,
                        item.start_time,
                        item.end_time,
                        file.map_or("", String::as_str)
                    )
                })
            }
            (Body::PresetQueryResponse { items, .. }, Page::Presets(new)) => {
                add_new(items, new, seen, |preset| preset.id.clone())
            }
            // Cannot happen: the kind is part of the key, and the first page set the body.
            _ => false,
        };
        if added {
            self.last_progress = now;
        }
    }

    fn is_complete(&self) -> bool {
        self.seen.len() >= self.sum_num as usize
    }

    fn into_assembled(mut self, complete: bool) -> Assembled {
        match &mut self.message.body {
            Body::CatalogResponse { sum_num, .. }
            | Body::RecordInfoResponse { sum_num, .. }
            | Body::PresetQueryResponse { sum_num, .. } => *sum_num = self.sum_num,
            _ => {}
        }
        Assembled {
            message: self.message,
            complete,
            pages: self.pages,
        }
    }
}

/// Appends the items whose key is new; true if there was any.
fn add_new<T>(
    items: &mut Vec<T>,
    new: Vec<T>,
    seen: &mut HashSet<String>,
    key: impl Fn(&T) -> String,
) -> bool {
    let before = items.len();
    items.extend(new.into_iter().filter(|item| seen.insert(key(item))));
    items.len() > before
}

/// Moves a paged response's items out of `body`, leaving it empty for the caller to refill.
fn take_page(body: &mut Body) -> Option<(ResponseKind, u32, Page)> {
    match body {
        Body::CatalogResponse { sum_num, items } => Some((
            ResponseKind::Catalog,
            *sum_num,
            Page::Catalog(std::mem::take(items)),
        )),
        Body::RecordInfoResponse { sum_num, items, .. } => Some((
            ResponseKind::RecordInfo,
            *sum_num,
            Page::Records(std::mem::take(items)),
        )),
        Body::PresetQueryResponse { sum_num, items } => Some((
            ResponseKind::PresetQuery,
            *sum_num,
            Page::Presets(std::mem::take(items)),
        )),
        _ => None,
    }
}
