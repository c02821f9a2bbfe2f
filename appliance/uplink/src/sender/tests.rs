//! The sender against a real store and a scripted publisher: batches, cursor, status, backoff.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::Mutex;

use appliance_model::{EventSource, NewEvent, Severity};
use appliance_store::{RetentionPolicy, StoreOptions};
use serde_json::Value;

use super::*;

fn open(dir: &Path) -> EventStore {
    let options = StoreOptions {
        dir: dir.to_path_buf(),
        cache_capacity: 8 << 20,
        max_commit_group: 256,
    };
    EventStore::open(&options, Arc::default()).expect("store opens")
}

fn event(camera: &str, start_ms: i64) -> NewEvent {
    NewEvent {
        camera_id: camera.into(),
        channel_id: None,
        source: EventSource::Skill,
        kind: "intrusion".into(),
        severity: Severity::Major,
        start_time: Some(Timestamp::from_millis(start_ms)),
        end_time: None,
        attributes: Default::default(),
        media: vec![],
    }
}

fn now_ms() -> i64 {
    Timestamp::now().as_millis()
}

/// Records what it is asked to publish; fails the calls it is told to.
#[derive(Clone, Default)]
struct Scripted(Arc<Mutex<Script>>);

#[derive(Default)]
struct Script {
    /// Every message acknowledged, in order.
    delivered: Vec<Outgoing>,
    /// Errors for the next calls, in order.
    failures: VecDeque<PublishError>,
    /// Calls with an empty batch (connection checks).
    checks: usize,
}

impl Scripted {
    fn fail_next(&self, error: PublishError) {
        self.0.lock().unwrap().failures.push_back(error);
    }

    fn delivered_seqs(&self) -> Vec<u64> {
        self.0
            .lock()
            .unwrap()
            .delivered
            .iter()
            .map(|o| o.seq)
            .collect()
    }
}

impl Publisher for Scripted {
    async fn publish(&mut self, batch: &[Outgoing]) -> Result<(), PublishError> {
        let mut script = self.0.lock().unwrap();
        if let Some(error) = script.failures.pop_front() {
            return Err(error);
        }
        if batch.is_empty() {
            script.checks += 1;
        }
        script.delivered.extend_from_slice(batch);
        Ok(())
    }

    fn name(&self) -> &'static str {
        "scripted"
    }
}

fn fast() -> SenderOptions {
    SenderOptions {
        batch: 100,
        recheck: Duration::from_secs(3600),
        backoff_base: Duration::from_millis(5),
        backoff_cap: Duration::from_millis(20),
        seed: Some(1),
    }
}

async fn wait(status: &mut StatusHandle, what: &str, done: impl FnMut(&UplinkStatus) -> bool) {
    let reached = tokio::time::timeout(Duration::from_secs(10), status.wait_for(done)).await;
    assert!(
        matches!(reached, Ok(Some(_))),
        "{what}: status {:?}",
        status.snapshot()
    );
}

#[tokio::test]
async fn batches_hold_schema_messages_in_commit_order_and_skip_deleted_events() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let now = now_ms();
    // One event old enough for retention, between two recent ones.
    let stored = store
        .append_many(vec![
            event("cam-a", now - 1000),
            event("cam-b", now - 3 * 3_600_000),
            event("cam-c", now - 500),
        ])
        .await
        .unwrap();
    store
        .enforce_retention(RetentionPolicy {
            max_age: Duration::from_secs(3600),
            max_disk_bytes: u64::MAX,
            min_free_disk_bytes: 0,
        })
        .await
        .unwrap();
    let entries = store.outbox(None, 10).unwrap();
    let batch = build_batch(&store, "box-1", &entries).unwrap().unwrap();

    assert_eq!(batch.entries, 3);
    assert_eq!(batch.through, entries[2].seq);
    assert_eq!(batch.skipped_deleted, 1);
    assert_eq!(batch.skipped_unreadable, 0);
    assert_eq!(batch.oldest_recorded, Some(stored[0].recorded_at));
    let sent: Vec<(u64, &str)> = batch
        .outgoing
        .iter()
        .map(|o| (o.seq, o.key.as_str()))
        .collect();
    assert_eq!(sent, [(entries[0].seq, "cam-a"), (entries[2].seq, "cam-c")]);
    let json: Value = serde_json::from_slice(&batch.outgoing[1].payload).unwrap();
    assert_eq!(json["schema"], "appliance.event.v1");
    assert_eq!(json["device_id"], "box-1");
    assert_eq!(json["seq"], entries[2].seq);
    assert_eq!(json["event"]["id"], stored[2].id.to_string());

    assert_eq!(build_batch(&store, "box-1", &[]).unwrap(), None);
}

#[tokio::test]
async fn cursors_round_trip_and_a_damaged_one_starts_over() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    assert_eq!(read_cursor(&store, "mqtt").unwrap(), None);
    store
        .commit(Vec::new(), vec![cursor_change("mqtt", 41)])
        .await
        .unwrap();
    assert_eq!(read_cursor(&store, "mqtt").unwrap(), Some(41));
    assert_eq!(read_cursor(&store, "kafka").unwrap(), None);
    assert_eq!(
        store.state(CURSOR_NAMESPACE, "mqtt").unwrap().unwrap(),
        b"41"
    );
    let damaged = StateChange {
        value: Some(b"4x".to_vec()),
        ..cursor_change("mqtt", 0)
    };
    store.commit(Vec::new(), vec![damaged]).await.unwrap();
    assert_eq!(read_cursor(&store, "mqtt").unwrap(), None);
}

#[test]
fn status_bookkeeping() {
    let mut tracker = Tracker::new("mqtt", Some(9));
    let batch = Batch {
        outgoing: vec![
            Outgoing {
                seq: 10,
                key: "c".into(),
                payload: vec![],
            };
            3
        ],
        through: 14,
        entries: 5,
        skipped_deleted: 1,
        skipped_unreadable: 1,
        oldest_recorded: Some(Timestamp::from_millis(1_000)),
        media: Vec::new(),
    };
    tracker.sending(&batch, 250);
    let at = |ms| tracker.snapshot(Timestamp::from_millis(ms));
    assert_eq!(at(4_000).oldest_pending_ms, Some(3_000));
    assert_eq!(at(4_000).depth, 250);
    assert_eq!(at(4_000).cursor, Some(9));

    tracker.failed(
        &SendError::Publish(PublishError::Connection("refused".into())),
        2,
    );
    let s = tracker.snapshot(Timestamp::from_millis(5_000));
    assert!(!s.connected);
    assert_eq!(s.consecutive_failures, 2);
    assert_eq!(s.last_error.as_deref(), Some("not connected: refused"));
    assert_eq!(s.oldest_pending_ms, Some(4_000), "still waiting");

    tracker.delivered(&batch, false, Timestamp::from_millis(6_000));
    let s = tracker.snapshot(Timestamp::from_millis(6_000));
    assert!(s.connected);
    assert_eq!(
        (s.delivered, s.skipped_deleted, s.skipped_unreadable),
        (3, 1, 1)
    );
    assert_eq!(s.cursor, Some(14));
    assert_eq!(s.depth, 245);
    assert_eq!((s.consecutive_failures, s.last_error), (0, None));
    assert_eq!(s.last_success_ms, Some(6_000));

    tracker.failed(
        &SendError::Publish(PublishError::Rejected("quota".into())),
        1,
    );
    assert!(tracker.snapshot(Timestamp::from_millis(7_000)).connected);

    tracker.delivered(&batch, true, Timestamp::from_millis(8_000));
    let s = tracker.snapshot(Timestamp::from_millis(9_000));
    assert_eq!((s.depth, s.oldest_pending_ms, s.delivered), (0, None, 6));
}

#[tokio::test]
async fn drains_in_order_survives_failures_and_resumes_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let now = now_ms();
    for chunk in 0..5 {
        let events = (0..50).map(|i| event(&format!("cam-{i}"), now - 10_000 + chunk * 50 + i));
        store.append_many(events.collect()).await.unwrap();
    }
    let publisher = Scripted::default();
    // The first two attempts fail: nothing may be skipped for it.
    publisher.fail_next(PublishError::Connection("refused".into()));
    publisher.fail_next(PublishError::Timeout(Duration::from_secs(1)));
    let sender = Sender::new(store.clone(), publisher.clone(), "box-1", fast()).unwrap();
    let mut status = sender.status();
    let cancel = CancellationToken::new();
    let task = tokio::spawn(sender.run(cancel.clone()));

    wait(&mut status, "all 250 delivered", |s| s.delivered == 250).await;
    let all: Vec<u64> = store
        .outbox(None, 1000)
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(
        publisher.delivered_seqs(),
        all,
        "once each, in commit order"
    );
    let s = status.snapshot();
    assert_eq!(s.cursor, all.last().copied());
    assert_eq!(read_cursor(&store, "scripted").unwrap(), s.cursor);
    assert!(s.connected && s.last_error.is_none() && s.consecutive_failures == 0);
    assert_eq!((s.depth, s.oldest_pending_ms), (0, None));

    // A commit wakes the idle sender (its periodic re-check is an hour away).
    store.append(event("cam-x", now)).await.unwrap();
    wait(&mut status, "woken by the commit", |s| s.delivered == 251).await;
    cancel.cancel();
    task.await.unwrap();

    // "Restart": a new sender on the same store sends only what came after the cursor.
    let late = store.append(event("cam-y", now)).await.unwrap();
    let restarted = Scripted::default();
    let sender = Sender::new(store.clone(), restarted.clone(), "box-1", fast()).unwrap();
    let mut status = sender.status();
    let cancel = CancellationToken::new();
    let task = tokio::spawn(sender.run(cancel.clone()));
    wait(&mut status, "the late event delivered", |s| {
        s.delivered == 1
    })
    .await;
    let sent = restarted.0.lock().unwrap().delivered.clone();
    assert_eq!(sent.len(), 1);
    let json: Value = serde_json::from_slice(&sent[0].payload).unwrap();
    assert_eq!(json["event"]["id"], late.id.to_string());
    cancel.cancel();
    task.await.unwrap();
}

#[tokio::test]
async fn an_unacknowledged_batch_is_sent_again_and_the_status_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store
        .append_many((0..3).map(|i| event("cam", now_ms() + i)).collect())
        .await
        .unwrap();
    let publisher = Scripted::default();
    for _ in 0..3 {
        publisher.fail_next(PublishError::Connection(
            "broker.example: bad password".into(),
        ));
    }
    let sender = Sender::new(store.clone(), publisher.clone(), "box-1", fast()).unwrap();
    let mut status = sender.status();
    let cancel = CancellationToken::new();
    let task = tokio::spawn(sender.run(cancel.clone()));

    wait(&mut status, "failing", |s| s.consecutive_failures == 3).await;
    let s = status.snapshot();
    assert!(!s.connected);
    assert_eq!(
        s.last_error.as_deref(),
        Some("not connected: broker.example: bad password")
    );
    assert_eq!(s.cursor, None, "nothing acknowledged, nothing moved");
    assert_eq!(s.depth, 3);
    assert!(s.oldest_pending_ms.is_some());

    wait(&mut status, "delivered after the failures", |s| {
        s.delivered == 3
    })
    .await;
    assert_eq!(publisher.delivered_seqs().len(), 3);
    cancel.cancel();
    task.await.unwrap();
}

#[tokio::test]
async fn idle_senders_check_the_connection() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let publisher = Scripted::default();
    publisher.fail_next(PublishError::Connection("down".into()));
    let options = SenderOptions {
        recheck: Duration::from_millis(10),
        ..fast()
    };
    let sender = Sender::new(store, publisher.clone(), "box-1", options).unwrap();
    let mut status = sender.status();
    let cancel = CancellationToken::new();
    let task = tokio::spawn(sender.run(cancel.clone()));
    wait(&mut status, "connected while idle", |s| s.connected).await;
    let s = status.snapshot();
    assert!(s.last_success_ms.is_some() && s.last_error.is_none());
    assert_eq!(s.delivered, 0);
    assert!(publisher.0.lock().unwrap().checks >= 1);
    cancel.cancel();
    task.await.unwrap();
}

/// What a [`Pipelined`] publisher was asked: (first seq of the batch, whether it settled it, the
/// stored cursor then).
type Call = (u64, bool, Option<u64>);

/// A publisher that sends at `submit` and confirms at `settle`, like the MQTT one; fails the
/// settles it is told to.
#[derive(Clone)]
struct Pipelined {
    store: EventStore,
    calls: Arc<Mutex<Vec<Call>>>,
    /// Settles (counted from 1) that fail.
    fail_settles: Arc<Mutex<Vec<usize>>>,
    settles: Arc<Mutex<usize>>,
}

impl Publisher for Pipelined {
    async fn publish(&mut self, batch: &[Outgoing]) -> Result<(), PublishError> {
        assert!(batch.is_empty(), "batches are submitted");
        Ok(())
    }

    async fn submit(&mut self, batch: &[Outgoing]) -> Result<Ticket, PublishError> {
        self.calls.lock().unwrap().push((batch[0].seq, false, None));
        Ok(Ticket(crate::TicketKind::Deferred(batch.to_vec())))
    }

    async fn settle(&mut self, ticket: Ticket) -> Result<(), PublishError> {
        let crate::TicketKind::Deferred(batch) = ticket.0 else {
            unreachable!()
        };
        let cursor = read_cursor(&self.store, "pipelined").unwrap();
        self.calls
            .lock()
            .unwrap()
            .push((batch[0].seq, true, cursor));
        let n = {
            let mut settles = self.settles.lock().unwrap();
            *settles += 1;
            *settles
        };
        if self.fail_settles.lock().unwrap().contains(&n) {
            return Err(PublishError::Connection("lost".into()));
        }
        Ok(())
    }

    fn name(&self) -> &'static str {
        "pipelined"
    }
}

#[tokio::test]
async fn batches_are_pipelined_settled_in_order_and_resent_from_the_cursor_after_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let now = now_ms();
    store
        .append_many((0..70).map(|n| event("cam", now - 70 + n)).collect())
        .await
        .unwrap();
    let seqs: Vec<u64> = store
        .outbox(None, 100)
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect();
    let first = |batch: usize| seqs[batch * 10];
    let through = |batch: usize| Some(seqs[batch * 10 + 9]);
    let publisher = Pipelined {
        store: store.clone(),
        calls: Arc::default(),
        // The second batch fails while the third to fifth are in flight.
        fail_settles: Arc::new(Mutex::new(vec![2])),
        settles: Arc::default(),
    };
    let calls = Arc::clone(&publisher.calls);
    let options = SenderOptions {
        batch: 10,
        ..fast()
    };
    let sender = Sender::new(store.clone(), publisher, "box-1", options).unwrap();
    let mut status = sender.status();
    let cancel = CancellationToken::new();
    let task = tokio::spawn(sender.run(cancel.clone()));
    wait(&mut status, "drained", |s| s.cursor == through(6)).await;
    cancel.cancel();
    task.await.unwrap();

    let submit = |batch| (first(batch), false, None);
    let settle = |batch: usize| {
        let cursor = batch.checked_sub(1).and_then(through);
        (first(batch), true, cursor)
    };
    let expected = vec![
        // Four in flight before the first settles; the cursor moves after each.
        submit(0),
        submit(1),
        submit(2),
        submit(3),
        settle(0),
        submit(4),
        settle(1), // fails: 2 to 4 are dropped unsettled, and everything from 1 goes again
        submit(1),
        submit(2),
        submit(3),
        submit(4),
        settle(1),
        submit(5),
        settle(2),
        submit(6),
        settle(3),
        settle(4),
        settle(5),
        settle(6),
    ];
    assert_eq!(*calls.lock().unwrap(), expected);
    let s = status.snapshot();
    assert_eq!((s.delivered, s.depth, s.oldest_pending_ms), (70, 0, None));
}
