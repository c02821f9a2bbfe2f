//! The appliance's own store (sled underneath) behind the benchmark's [`Engine`] trait.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Result;
use appliance_config::StoreConfig;
use appliance_model::{Event, NewEvent};
use appliance_store::{EventQuery, EventStore, StoreMetrics, StoreOptions};

use crate::sys;
use crate::workload::{Engine, EventGen};

/// The store configured as the appliance ships it (the config crate's defaults), in `dir`.
pub fn edge_options(dir: &Path) -> StoreOptions {
    let defaults = StoreConfig::default();
    StoreOptions {
        dir: dir.to_path_buf(),
        cache_capacity: defaults.cache_capacity.bytes(),
        max_commit_group: defaults.max_commit_group,
    }
}

pub fn open_store(dir: &Path) -> Result<EventStore> {
    Ok(EventStore::open(
        &edge_options(dir),
        Arc::new(StoreMetrics::default()),
    )?)
}

/// `count` durable single-event commits, each waited for before the next is submitted.
pub fn sequential_commits(dir: &Path, count: u32) -> Result<()> {
    let store = open_store(dir)?;
    let mut events = EventGen::new(
        u64::from(count),
        appliance_model::Timestamp::now().as_millis(),
    );
    for _ in 0..count {
        store.append(events.next_event()).wait()?;
    }
    store.close();
    Ok(())
}

pub struct SledEngine {
    store: EventStore,
    dir: PathBuf,
}

impl SledEngine {
    pub fn open(dir: &Path) -> Result<SledEngine> {
        Ok(SledEngine {
            store: open_store(dir)?,
            dir: dir.to_path_buf(),
        })
    }
}

impl Engine for SledEngine {
    fn append_durable(&mut self, event: NewEvent) -> Result<Event> {
        Ok(self.store.append(event).wait()?)
    }

    fn append_batch(&mut self, events: Vec<NewEvent>) -> Result<Vec<Event>> {
        Ok(self.store.append_many(events).wait()?)
    }

    fn newest_for_camera(&mut self, camera_id: &str, limit: usize) -> Result<Vec<Event>> {
        let query = EventQuery {
            camera_id: Some(camera_id.to_string()),
            limit,
            ..EventQuery::default()
        };
        Ok(self.store.query(&query)?.items)
    }

    fn close(self) -> Result<u64> {
        self.store.close();
        // Dropping the last handle drops sled's `Db`, which writes out what it still holds.
        drop(self.store);
        sys::dir_size(&self.dir)
    }
}
