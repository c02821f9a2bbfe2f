//! The queue in front of one model: frames from many cameras wait in a bounded queue per
//! camera, and the model's worker takes them in batches, round-robin across cameras, so one
//! busy camera cannot starve the others. A full camera queue drops its oldest frame (counted):
//! a slow model then analyses fewer frames instead of stalling every camera's decoding, and
//! what it analyses is always recent.
//!
//! `Block` is for dry runs on files, where every sampled frame must be analysed and the
//! producer may simply wait.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Condvar, Mutex, MutexGuard};

/// What a full camera queue does with a new frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FullQueue {
    DropOldest,
    Block,
}

struct State<J> {
    queues: BTreeMap<String, VecDeque<J>>,
    /// The camera served first in the next batch (rotates).
    next: Option<String>,
    closed: bool,
    dropped: u64,
}

pub struct BatchQueue<J> {
    capacity: usize,
    policy: FullQueue,
    state: Mutex<State<J>>,
    changed: Condvar,
}

impl<J> BatchQueue<J> {
    pub fn new(capacity_per_camera: usize, policy: FullQueue) -> Self {
        Self {
            capacity: capacity_per_camera.max(1),
            policy,
            state: Mutex::new(State {
                queues: BTreeMap::new(),
                next: None,
                closed: false,
                dropped: 0,
            }),
            changed: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<J>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a job of `camera`. Returns the job it dropped to make room (DropOldest), or the
    /// job itself when the queue is closed.
    pub fn push(&self, camera: &str, job: J) -> Result<Option<J>, J> {
        let mut state = self.lock();
        loop {
            if state.closed {
                return Err(job);
            }
            let len = state.queues.get(camera).map_or(0, VecDeque::len);
            if len < self.capacity || self.policy == FullQueue::DropOldest {
                break;
            }
            state = self.changed.wait(state).unwrap_or_else(|e| e.into_inner());
        }
        let queue = state.queues.entry(camera.to_string()).or_default();
        let dropped = if queue.len() >= self.capacity {
            queue.pop_front()
        } else {
            None
        };
        queue.push_back(job);
        if dropped.is_some() {
            state.dropped += 1;
        }
        drop(state);
        self.changed.notify_all();
        Ok(dropped)
    }

    /// Up to `max` jobs, one per camera per round starting after the camera served first last
    /// time; waits while there are none. `None` once closed and drained.
    pub fn take_batch(&self, max: usize) -> Option<Vec<J>> {
        let mut state = self.lock();
        while state.queues.values().all(VecDeque::is_empty) {
            if state.closed {
                return None;
            }
            state = self.changed.wait(state).unwrap_or_else(|e| e.into_inner());
        }
        let mut order: Vec<String> = state.queues.keys().cloned().collect();
        if let Some(next) = &state.next {
            let start = order.iter().position(|c| c >= next).unwrap_or(0);
            order.rotate_left(start);
        }
        let mut batch = Vec::new();
        let mut first_served = None;
        while batch.len() < max.max(1) {
            let mut took = false;
            for camera in &order {
                if batch.len() >= max.max(1) {
                    break;
                }
                if let Some(job) = state.queues.get_mut(camera).and_then(VecDeque::pop_front) {
                    first_served.get_or_insert_with(|| camera.clone());
                    batch.push(job);
                    took = true;
                }
            }
            if !took {
                break;
            }
        }
        // Next time, start after the camera that went first now.
        state.next = first_served.map(|c| format!("{c}\u{0}"));
        state.queues.retain(|_, q| !q.is_empty());
        drop(state);
        self.changed.notify_all();
        Some(batch)
    }

    /// Jobs dropped so far because a camera's queue was full.
    pub fn dropped(&self) -> u64 {
        self.lock().dropped
    }

    /// Removes a camera's waiting jobs (the camera stopped).
    pub fn forget(&self, camera: &str) {
        self.lock().queues.remove(camera);
        self.changed.notify_all();
    }

    /// Refuses new jobs; `take_batch` returns what is left, then `None`.
    pub fn close(&self) {
        self.lock().closed = true;
        self.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn a_full_camera_queue_drops_its_oldest_and_batches_go_round_robin() {
        let queue = BatchQueue::new(2, FullQueue::DropOldest);
        for frame in 0..5 {
            queue.push("busy", ("busy", frame)).unwrap();
        }
        queue.push("quiet", ("quiet", 0)).unwrap();
        assert_eq!(queue.dropped(), 3);
        // One of each camera first, newest frames kept.
        assert_eq!(queue.take_batch(2).unwrap(), [("busy", 3), ("quiet", 0)]);
        assert_eq!(queue.take_batch(8).unwrap(), [("busy", 4)]);
        queue.close();
        assert!(queue.take_batch(8).is_none());
        assert!(queue.push("busy", ("busy", 9)).is_err());
    }

    #[test]
    fn the_first_camera_rotates_so_none_is_starved() {
        let queue = BatchQueue::new(4, FullQueue::DropOldest);
        for camera in ["a", "b", "c"] {
            for frame in 0..2 {
                queue.push(camera, (camera, frame)).unwrap();
            }
        }
        let firsts: Vec<&str> = (0..3).map(|_| queue.take_batch(1).unwrap()[0].0).collect();
        assert_eq!(firsts, ["a", "b", "c"]);
    }

    #[test]
    fn block_waits_for_room_instead_of_dropping() {
        let queue = Arc::new(BatchQueue::new(1, FullQueue::Block));
        queue.push("file", 1).unwrap();
        let producer = {
            let queue = queue.clone();
            std::thread::spawn(move || queue.push("file", 2).unwrap())
        };
        assert_eq!(queue.take_batch(4).unwrap(), [1]);
        assert_eq!(producer.join().unwrap(), None);
        assert_eq!(queue.take_batch(4).unwrap(), [2]);
        assert_eq!(queue.dropped(), 0);
    }
}
