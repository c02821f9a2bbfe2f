//! Media after metadata against a real mosquitto and a real store: each event's files follow its
//! message, byte for byte, with their properties; the queue is durable across outages and
//! restarts; files that are gone or too large are skipped and counted.

mod media_support;
#[allow(
    dead_code,
    reason = "shared with tests/mqtt.rs; these tests use only the store helpers"
)]
mod support;

use media_support::{Running, file_bytes, media_options};
use std::collections::{HashMap, HashSet};
use std::time::Duration;

use appliance_model::{Event, MediaKind};
use appliance_store::EventStore;
use appliance_tests::brokers::{BrokerOptions, Mosquitto};
use appliance_uplink::media::{
    MEDIA_NAMESPACE, MEDIA_REF_SCHEMA, MediaOptions, MediaUploader, QueuedMedia,
};
use appliance_uplink::mqtt::{MqttConfig, MqttPublisher};
use appliance_uplink::sender::Sender;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::Packet;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use support::{Inbox, Subscriber, event, open_store, quick_options};

const DEVICE: &str = "box-1";
const EVENTS: &str = "appliance/box-1/events";
const MEDIA: &str = "appliance/box-1/media/#";

const SNAPSHOT: (MediaKind, &str, usize) = (MediaKind::Snapshot, "image/jpeg", 120_000);
const CLIP: (MediaKind, &str, usize) = (MediaKind::Clip, "video/mp4", 400_000);

/// Stores an event with these files; returns it and the files' bytes, in its `media` order.
async fn with_media(
    store: &EventStore,
    camera: &str,
    files: &[(MediaKind, &str, usize)],
    seed: u64,
) -> (Event, Vec<Vec<u8>>) {
    let mut new = event(camera, 0);
    let mut contents = Vec::new();
    for (i, (kind, content_type, len)) in files.iter().enumerate() {
        let data = file_bytes(seed * 100 + i as u64, *len);
        new.media
            .push(store.put_media(*kind, content_type, &data).unwrap());
        contents.push(data);
    }
    (store.append(new).await.unwrap(), contents)
}

impl Running {
    /// With `upload` false the uploader is made (so the sender queues media) but not run.
    fn start(
        store: &EventStore,
        broker: &Mosquitto,
        options: MediaOptions,
        upload: bool,
    ) -> Running {
        let mut publisher = MqttPublisher::new(MqttConfig::new(broker.url(), DEVICE)).unwrap();
        let uploader = MediaUploader::new(store.clone(), &mut publisher, DEVICE, options);
        let media = uploader.status();
        let sender = Sender::new(store.clone(), publisher, DEVICE, quick_options()).unwrap();
        let events = sender.status();
        let cancel = CancellationToken::new();
        let mut tasks = vec![tokio::spawn(sender.run(cancel.clone()))];
        if upload {
            tasks.push(tokio::spawn(uploader.run(cancel.clone())));
        }
        Running {
            events,
            media,
            cancel,
            tasks,
        }
    }
}

/// One message as the cloud got it, with its MQTT 5 properties.
#[derive(Debug, Clone)]
struct Message {
    topic: String,
    payload: Vec<u8>,
    content_type: Option<String>,
    user_properties: HashMap<String, String>,
}

impl Message {
    /// The event id of an event message.
    fn event_id(&self) -> String {
        assert_eq!(self.topic, EVENTS);
        let json: serde_json::Value = serde_json::from_slice(&self.payload).unwrap();
        json["event"]["id"].as_str().unwrap().to_owned()
    }
}

/// The cloud: an MQTT 5 subscriber to the events and the media. With a `persistent` session the
/// broker keeps what arrives while it is away, across a graceful broker restart too.
type Cloud = Inbox<Message>;

impl Inbox<Message> {
    async fn connect(port: u16, client_id: &str, persistent: bool) -> Cloud {
        let mut options = rumqttc::v5::MqttOptions::new(client_id, "127.0.0.1", port);
        options
            .set_keep_alive(Duration::from_secs(5))
            .set_clean_start(!persistent)
            // Files of a few hundred KB.
            .set_max_packet_size(Some(4 << 20));
        if persistent {
            options.set_session_expiry_interval(Some(3600));
        }
        let (client, mut event_loop) = rumqttc::v5::AsyncClient::new(options, 100);
        for filter in [EVENTS, MEDIA] {
            client.subscribe(filter, QoS::AtLeastOnce).await.unwrap();
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let (subscribed_tx, subscribed) = tokio::sync::oneshot::channel();
        let driver = tokio::spawn(async move {
            // Keeps the client alive as long as the loop runs.
            let _client = client;
            let mut subscribed_tx = Some(subscribed_tx);
            let mut subacks = 0;
            loop {
                match event_loop.poll().await {
                    Ok(rumqttc::v5::Event::Incoming(Packet::SubAck(_))) => {
                        subacks += 1;
                        if subacks == 2
                            && let Some(tx) = subscribed_tx.take()
                        {
                            let _ = tx.send(());
                        }
                    }
                    Ok(rumqttc::v5::Event::Incoming(Packet::Publish(p))) => {
                        let properties = p.properties.unwrap_or_default();
                        let _ = tx.send(Message {
                            topic: String::from_utf8(p.topic.to_vec()).unwrap(),
                            payload: p.payload.to_vec(),
                            content_type: properties.content_type,
                            user_properties: properties.user_properties.into_iter().collect(),
                        });
                    }
                    Ok(_) => {}
                    // The broker is down: rumqttc reconnects on the next poll.
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(10), subscribed)
            .await
            .expect("SUBACKs in time")
            .unwrap();
        Inbox::new(rx, driver)
    }
}

fn media_topic(event: &Event, n: usize) -> String {
    format!("appliance/box-1/media/{}/{n}", event.id)
}

/// Checks a media message against the event's `n`-th file.
fn check_media(message: &Message, event: &Event, n: usize, contents: &[u8]) {
    let media = &event.media[n];
    assert_eq!(message.topic, media_topic(event, n));
    assert!(
        message.payload == contents,
        "{}: not the file's bytes",
        message.topic
    );
    assert_eq!(
        message.content_type.as_deref(),
        Some(media.content_type.as_str())
    );
    let kind = match media.kind {
        MediaKind::Snapshot => "snapshot",
        MediaKind::Clip => "clip",
    };
    let expected: HashMap<String, String> = [
        ("event_id", event.id.to_string()),
        ("kind", kind.to_owned()),
        ("sha256", media.sha256.clone()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    assert_eq!(message.user_properties, expected, "{}", message.topic);
}

fn queue(store: &EventStore) -> Vec<(String, QueuedMedia)> {
    store
        .state_entries(MEDIA_NAMESPACE)
        .unwrap()
        .into_iter()
        .map(|(key, value)| (key, serde_json::from_slice(&value).unwrap()))
        .collect()
}

fn last_seq(store: &EventStore) -> u64 {
    store.outbox(None, 100_000).unwrap().last().unwrap().seq
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_follow_their_event_byte_for_byte_with_topic_and_properties() {
    let broker = Mosquitto::start(BrokerOptions::default());
    let mut cloud = Cloud::connect(broker.port, "cloud", false).await;
    let mut references =
        Subscriber::connect(broker.port, "appliance/box-1/media_ref", "refs", false).await;
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let first = with_media(&store, "cam-a", &[SNAPSHOT, CLIP], 1).await;
    let plain = store.append(event("cam-b", 0)).await.unwrap();
    let third = with_media(&store, "cam-c", &[SNAPSHOT], 2).await;

    let mut running = Running::start(&store, &broker, media_options(), true);
    let got = cloud.take(6, Duration::from_secs(10)).await;
    assert_eq!(got.len(), 6, "{got:#?}");
    let event_ids: Vec<String> = got
        .iter()
        .filter(|m| m.topic == EVENTS)
        .map(Message::event_id)
        .collect();
    let ids = [&first.0, &plain, &third.0].map(|e| e.id.to_string());
    assert_eq!(event_ids, ids, "every event once, in commit order");
    for (event, contents) in [&first, &third] {
        let announced = got
            .iter()
            .position(|m| m.topic == EVENTS && m.event_id() == event.id.to_string())
            .unwrap();
        for (n, contents) in contents.iter().enumerate() {
            let at = got
                .iter()
                .position(|m| m.topic == media_topic(event, n))
                .unwrap_or_else(|| panic!("{} missing", media_topic(event, n)));
            assert!(at > announced, "{} before its event", media_topic(event, n));
            check_media(&got[at], event, n, contents);
        }
    }

    let status = running
        .wait_media("all uploaded", |s| s.uploaded == 3 && s.queued == 0)
        .await;
    let bytes = SNAPSHOT.2 + CLIP.2 + SNAPSHOT.2;
    assert_eq!(status.uploaded_bytes, bytes as u64);
    assert_eq!(
        (
            status.skipped_missing,
            status.skipped_too_large,
            status.consecutive_failures
        ),
        (0, 0, 0)
    );
    assert!(status.last_success_ms.is_some() && status.last_error.is_none());
    assert!(queue(&store).is_empty(), "the queue drained");
    assert!(cloud.drain(Duration::from_millis(300)).await.is_empty());

    // Each file's reference, in upload order, names its topic.
    let got: Vec<serde_json::Value> = references
        .take(3, Duration::from_secs(5))
        .await
        .iter()
        .map(support::Message::json)
        .collect();
    let expected: Vec<serde_json::Value> = [(&first.0, 0), (&first.0, 1), (&third.0, 0)]
        .into_iter()
        .map(|(event, n)| {
            let media = &event.media[n];
            serde_json::json!({
                "schema": MEDIA_REF_SCHEMA,
                "device_id": DEVICE,
                "event_id": event.id.to_string(),
                "n": n,
                "kind": if n == 0 { "snapshot" } else { "clip" },
                "sha256": media.sha256,
                "content_type": media.content_type,
                "size": media.size,
                "url": media_topic(event, n),
            })
        })
        .collect();
    assert_eq!(got, expected);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_an_outage_during_uploads_the_event_backlog_goes_first_and_no_file_is_lost() {
    let mut broker = Mosquitto::start(BrokerOptions::default());
    let mut cloud = Cloud::connect(broker.port, "cloud", true).await;
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let mut stored = Vec::new();
    for seed in 0..24 {
        stored.push(with_media(&store, "cam", &[CLIP], seed).await);
    }
    let mut running = Running::start(&store, &broker, media_options(), true);
    running.wait_media("uploading", |s| s.uploaded >= 2).await;
    broker.stop();
    let at_stop = running.media.snapshot().uploaded;
    assert!(at_stop < 24, "the uploads were over before the outage");
    let before_outage = cloud.drain(Duration::from_millis(300)).await;
    running
        .wait_events("sees the outage", |s| !s.connected)
        .await;

    // While the broker is away: a backlog of events, a few of them with files.
    let backlog_start = stored.len();
    for _ in 0..5 {
        store
            .append_many((0..100).map(|n| event("late", n)).collect())
            .await
            .unwrap();
    }
    for seed in 100..102 {
        stored.push(with_media(&store, "late", &[SNAPSHOT], seed).await);
    }
    let late_ids: HashSet<String> = store
        .outbox(None, 100_000)
        .unwrap()
        .iter()
        .skip(backlog_start)
        .map(|e| e.id.to_string())
        .collect();
    assert_eq!(late_ids.len(), 502);
    let waiting = running.media.snapshot();
    assert!(waiting.queued > 0, "{waiting:#?}");

    broker.restart();
    let last = last_seq(&store);
    running
        .wait_events("caught up", |s| s.cursor == Some(last))
        .await;
    let status = running
        .wait_media("all uploaded", |s| s.queued == 0 && s.uploaded == 26)
        .await;
    assert_eq!(status.skipped_missing + status.skipped_too_large, 0);
    assert!(queue(&store).is_empty(), "the queue drained");

    // Every event and every file arrived (at least once; a file cut off by the outage again).
    let after_outage = cloud.drain(Duration::from_secs(1)).await;
    let all: Vec<&Message> = before_outage.iter().chain(&after_outage).collect();
    let received_ids: HashSet<String> = all
        .iter()
        .filter(|m| m.topic == EVENTS)
        .map(|m| m.event_id())
        .collect();
    assert!(late_ids.is_subset(&received_ids));
    for (event, contents) in &stored {
        assert!(received_ids.contains(&event.id.to_string()));
        let copies: Vec<&&Message> = all
            .iter()
            .filter(|m| m.topic == media_topic(event, 0))
            .collect();
        assert!(!copies.is_empty(), "{} lost", media_topic(event, 0));
        for copy in copies {
            check_media(copy, event, 0, &contents[0]);
        }
    }
    // The backlog went first: of the files queued before the outage, at most two arrive before
    // the last backlog event: the one the broker had taken as it stopped, and one the uploader
    // may start in the moment between the reconnection and the sender's next read of the
    // outbox (it checks for pending events before each file, not during one).
    let last_late = after_outage
        .iter()
        .rposition(|m| m.topic == EVENTS && late_ids.contains(&m.event_id()))
        .expect("backlog events after the outage");
    let seen_before: HashSet<&str> = before_outage.iter().map(|m| m.topic.as_str()).collect();
    let early_files = after_outage[..last_late]
        .iter()
        .filter(|m| m.topic != EVENTS && !seen_before.contains(m.topic.as_str()))
        .count();
    assert!(
        early_files <= 2,
        "{early_files} files before the event backlog"
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_and_oversized_files_are_skipped_and_counted() {
    let broker = Mosquitto::start(BrokerOptions::default());
    let mut cloud = Cloud::connect(broker.port, "cloud", false).await;
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let (event, contents) = with_media(&store, "cam", &[SNAPSHOT, CLIP, SNAPSHOT], 1).await;
    // Retention got to the first file before its upload.
    std::fs::remove_file(store.media_path(&event.media[0]).unwrap()).unwrap();
    let options = MediaOptions {
        max_bytes: 300_000,
        ..media_options()
    };

    let mut running = Running::start(&store, &broker, options, true);
    let status = running
        .wait_media("done", |s| s.queued == 0 && s.uploaded == 1)
        .await;
    assert_eq!(
        (status.skipped_missing, status.skipped_too_large),
        (1, 1),
        "{status:#?}"
    );
    assert_eq!(status.last_error, None);
    let got = cloud.take(2, Duration::from_secs(5)).await;
    assert_eq!(got[0].event_id(), event.id.to_string());
    check_media(&got[1], &event, 2, &contents[2]);
    assert!(cloud.drain(Duration::from_millis(300)).await.is_empty());
    assert!(queue(&store).is_empty(), "skipped files leave the queue");
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_queue_is_committed_with_the_cursor_and_a_restart_resumes_it() {
    let broker = Mosquitto::start(BrokerOptions::default());
    let mut cloud = Cloud::connect(broker.port, "cloud", false).await;
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let mut stored = Vec::new();
    for seed in 0..3 {
        stored.push(with_media(&store, "cam", &[SNAPSHOT, CLIP], seed).await);
    }

    // The daemon delivers the events and dies before any upload.
    let mut running = Running::start(&store, &broker, media_options(), false);
    let last = last_seq(&store);
    running
        .wait_events("delivered", |s| s.cursor == Some(last))
        .await;
    running.stop().await;
    let outbox = store.outbox(None, 10).unwrap();
    let expected: Vec<(String, String, usize)> = outbox
        .iter()
        .flat_map(|entry| {
            (0..2).map(move |n| (format!("{:020}/{n:02}", entry.seq), entry.id.to_string(), n))
        })
        .collect();
    let queued: Vec<(String, String, usize)> = queue(&store)
        .into_iter()
        .map(|(key, entry)| (key, entry.event_id.to_string(), entry.n))
        .collect();
    assert_eq!(queued, expected, "every file queued, in delivery order");
    let events = cloud.take(3, Duration::from_secs(5)).await;
    assert_eq!(events.len(), 3);
    assert!(events.iter().all(|m| m.topic == EVENTS));
    assert!(cloud.drain(Duration::from_millis(300)).await.is_empty());

    let mut restarted = Running::start(&store, &broker, media_options(), true);
    restarted
        .wait_media("resumed", |s| s.uploaded == 6 && s.queued == 0)
        .await;
    let got = cloud.take(6, Duration::from_secs(5)).await;
    let topics: Vec<&str> = got.iter().map(|m| m.topic.as_str()).collect();
    let expected: Vec<String> = stored
        .iter()
        .flat_map(|(event, _)| (0..2).map(|n| media_topic(event, n)))
        .collect();
    assert_eq!(topics, expected, "in queue order, and no event again");
    for (message, (event, contents)) in got.chunks(2).zip(&stored) {
        check_media(&message[0], event, 0, &contents[0]);
        check_media(&message[1], event, 1, &contents[1]);
    }
    assert!(queue(&store).is_empty());
    restarted.stop().await;
}

/// A broker's own limit, stated in its CONNACK (`max_packet_size`) or only when a message breaks
/// it (`message_size_limit`: PUBACK 0x95, which ends rumqttc's connection): the file is
/// skipped, the files after it go, and the events are unaffected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_over_the_brokers_limit_are_skipped() {
    for stated in [true, false] {
        let limit = Some(200_000);
        let broker = Mosquitto::start(if stated {
            BrokerOptions {
                max_packet_size: limit,
                ..BrokerOptions::default()
            }
        } else {
            BrokerOptions {
                message_size_limit: limit,
                ..BrokerOptions::default()
            }
        });
        let mut cloud = Cloud::connect(broker.port, "cloud", false).await;
        let dir = tempfile::tempdir().unwrap();
        let store = open_store(dir.path());
        let (event, contents) = with_media(&store, "cam", &[SNAPSHOT, CLIP, SNAPSHOT], 1).await;

        let mut running = Running::start(&store, &broker, media_options(), true);
        let status = running
            .wait_media("done", |s| s.queued == 0 && s.uploaded == 2)
            .await;
        assert_eq!(status.skipped_too_large, 1, "stated {stated}: {status:#?}");
        let got = cloud.take(3, Duration::from_secs(5)).await;
        assert_eq!(got.len(), 3, "stated {stated}: {got:#?}");
        assert_eq!(got[0].event_id(), event.id.to_string());
        check_media(&got[1], &event, 0, &contents[0]);
        check_media(&got[2], &event, 2, &contents[2]);
        let events = running.events.snapshot();
        assert_eq!(
            (events.delivered, events.consecutive_failures),
            (1, 0),
            "stated {stated}"
        );
        // A stated limit is never broken; the other costs the box one connection.
        let log = broker.log();
        let box_connections = log.matches(&format!(" as {DEVICE} ")).count();
        assert_eq!(
            box_connections,
            if stated { 1 } else { 2 },
            "stated {stated}: {log}"
        );
        running.stop().await;
    }
}

/// Events that keep coming while files upload share the connection with them: every event once,
/// in order, each file after its event, and no PUBACK taken for another message's (no retry).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_keep_flowing_while_files_upload() {
    let broker = Mosquitto::start(BrokerOptions::default());
    let mut cloud = Cloud::connect(broker.port, "cloud", false).await;
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let mut running = Running::start(&store, &broker, media_options(), true);
    running.wait_events("connected", |s| s.connected).await;
    let mut stored = Vec::new();
    for seed in 0..15 {
        stored.push(with_media(&store, "cam", &[CLIP], seed).await);
        store.append(event("plain", seed as i64)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let last = last_seq(&store);
    let events = running
        .wait_events("delivered", |s| s.cursor == Some(last))
        .await;
    let media = running
        .wait_media("uploaded", |s| s.uploaded == 15 && s.queued == 0)
        .await;
    assert_eq!((events.delivered, events.consecutive_failures), (30, 0));
    assert_eq!(media.consecutive_failures, 0);

    let got = cloud.take(45, Duration::from_secs(10)).await;
    let ids: Vec<String> = got
        .iter()
        .filter(|m| m.topic == EVENTS)
        .map(Message::event_id)
        .collect();
    let expected: Vec<String> = store
        .outbox(None, 100)
        .unwrap()
        .iter()
        .map(|e| e.id.to_string())
        .collect();
    assert_eq!(ids, expected, "every event once, in commit order");
    for (event, contents) in &stored {
        let announced = got
            .iter()
            .position(|m| m.topic == EVENTS && m.event_id() == event.id.to_string())
            .unwrap();
        let at = got
            .iter()
            .position(|m| m.topic == media_topic(event, 0))
            .unwrap();
        assert!(at > announced);
        check_media(&got[at], event, 0, &contents[0]);
    }
    assert!(cloud.drain(Duration::from_millis(300)).await.is_empty());
    running.stop().await;
}

/// A broker that refuses the media topic (PUBACK "not authorized") interleaved with events on
/// one connection: each refusal is the file's, never an event's, so the events flow while the
/// file waits and is tried again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_file_is_retried_and_never_taken_for_an_event() {
    let broker = Mosquitto::start(BrokerOptions {
        acl: [
            "topic readwrite appliance/box-1/events",
            "topic readwrite appliance/box-1/status",
            "topic readwrite appliance/box-1/cmd/#",
            "topic read appliance/box-1/media/#",
        ]
        .map(String::from)
        .to_vec(),
        max_queued_messages: Some(1000),
        ..BrokerOptions::default()
    });
    let mut cloud = Cloud::connect(broker.port, "cloud", false).await;
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    with_media(&store, "cam", &[SNAPSHOT], 1).await;
    let mut running = Running::start(&store, &broker, media_options(), true);
    running
        .wait_media("refused", |s| s.consecutive_failures >= 1)
        .await;
    // Events after the refused file, on the same connection, while it is tried again.
    for n in 0..20 {
        store.append(event("cam", n)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let last = last_seq(&store);
    let events = running
        .wait_events("delivered", |s| s.cursor == Some(last))
        .await;
    assert_eq!((events.delivered, events.consecutive_failures), (21, 0));
    assert_eq!(events.last_error, None);
    let media = running
        .wait_media("tried again", |s| s.consecutive_failures >= 3)
        .await;
    let error = media.last_error.unwrap();
    assert!(error.contains("NotAuthorized"), "{error}");
    assert_eq!((media.uploaded, media.queued), (0, 1));
    assert_eq!(queue(&store).len(), 1, "kept for later");
    let log = broker.log();
    assert_eq!(log.matches(&format!(" as {DEVICE} ")).count(), 1, "{log}");
    let got = cloud.drain(Duration::from_millis(300)).await;
    assert_eq!(got.len(), 21);
    assert!(got.iter().all(|m| m.topic == EVENTS));
    running.stop().await;
}
