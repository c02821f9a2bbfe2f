//! Store metrics in Prometheus form. The daemon registers them; the store only updates them.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

/// Why retention deleted an event.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)] // the variant names are the label values
pub enum RetentionReason {
    max_age,
    quota,
    disk_free,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: RetentionReason,
}

#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum DiskPart {
    records,
    media,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartLabel {
    pub part: DiskPart,
}

#[derive(Debug)]
pub struct StoreMetrics {
    /// From the call that submits a write until it is on disk.
    pub commit_latency: Histogram,
    /// Operations that shared one flush.
    pub commit_group_size: Histogram,
    pub events_appended: Counter,
    pub retention_deleted: Family<ReasonLabel, Counter>,
    /// Undelivered outbox entries removed because retention deleted their event.
    pub outbox_dropped: Counter,
    pub corrupt_records: Counter,
    pub orphan_media_removed: Counter,
    pub disk_bytes: Family<PartLabel, Gauge>,
    pub events_stored: Gauge,
}

impl Default for StoreMetrics {
    fn default() -> Self {
        StoreMetrics {
            // 50 µs … ~3.3 s
            commit_latency: Histogram::new(exponential_buckets(0.000_05, 2.0, 17)),
            commit_group_size: Histogram::new(exponential_buckets(1.0, 2.0, 17)),
            events_appended: Counter::default(),
            retention_deleted: Family::default(),
            outbox_dropped: Counter::default(),
            corrupt_records: Counter::default(),
            orphan_media_removed: Counter::default(),
            disk_bytes: Family::default(),
            events_stored: Gauge::default(),
        }
    }
}

impl StoreMetrics {
    pub fn register(&self, registry: &mut Registry) {
        let store = registry.sub_registry_with_prefix("appliance_store");
        store.register_with_unit(
            "commit_latency",
            "Time from submitting a write until it is durable",
            Unit::Seconds,
            self.commit_latency.clone(),
        );
        store.register(
            "commit_group_size",
            "Operations carried by one flush and fdatasync",
            self.commit_group_size.clone(),
        );
        store.register(
            "events_appended",
            "Events stored",
            self.events_appended.clone(),
        );
        store.register(
            "retention_deleted",
            "Events deleted by retention, by reason",
            self.retention_deleted.clone(),
        );
        store.register(
            "outbox_dropped",
            "Undelivered outbox entries dropped because their event was deleted",
            self.outbox_dropped.clone(),
        );
        store.register(
            "corrupt_records",
            "Unreadable records or dangling index entries skipped",
            self.corrupt_records.clone(),
        );
        store.register(
            "orphan_media_removed",
            "Media files without a referencing event removed at start",
            self.orphan_media_removed.clone(),
        );
        store.register_with_unit(
            "disk",
            "Bytes on disk: sled files (records) and media files",
            Unit::Bytes,
            self.disk_bytes.clone(),
        );
        store.register("events", "Events stored now", self.events_stored.clone());
    }

    pub(crate) fn count_deleted(&self, reason: RetentionReason, n: u64) {
        if n > 0 {
            self.retention_deleted
                .get_or_create(&ReasonLabel { reason })
                .inc_by(n);
        }
    }
}
