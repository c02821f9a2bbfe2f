//! Media to S3 against a real S3-compatible server and a real mosquitto: s3s-fs (the `s3s`
//! crate's file-system server, which checks every request's SigV4 signature against its one
//! access key) on a loopback port, `scripts/setup-packages.sh --test` installs it. Each event
//! goes first, its file then lands in the bucket byte for byte, and its reference follows; a
//! refused or unreachable object store keeps the file queued without holding back any event.

mod media_support;
#[allow(
    dead_code,
    reason = "shared with tests/mqtt.rs; these tests use the store helpers and the subscriber"
)]
mod support;

use media_support::{Running, file_bytes, media_options};
use std::fs::File;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::Duration;

use appliance_model::{Event, MediaKind};
use appliance_store::EventStore;
use appliance_tests::brokers::{BrokerOptions, Mosquitto, wait_until_listening};
use appliance_uplink::media::{MEDIA_NAMESPACE, MEDIA_REF_SCHEMA, MediaUploader};
use appliance_uplink::mqtt::{MqttConfig, MqttPublisher};
use appliance_uplink::s3::{S3Client, S3Config};
use appliance_uplink::sender::Sender;
use rusty_s3::actions::{GetObject, S3Action};
use rusty_s3::{Bucket, Credentials, UrlStyle};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use support::{Message, Subscriber, event, open_store, quick_options};

const DEVICE: &str = "box-1";
const BUCKET: &str = "media";
const ACCESS_KEY: &str = "box-1-key";
const SECRET_KEY: &str = "box-1-secret-0123456789";
const EVENTS: &str = "appliance/box-1/events";
const MEDIA_REF: &str = "appliance/box-1/media_ref";

/// An s3s-fs process on 127.0.0.1 serving a temporary directory, killed on drop. A bucket is a
/// directory of it; [`S3Server::restart`] serves the same one again on the same port.
struct S3Server {
    child: Option<Child>,
    port: u16,
    root: tempfile::TempDir,
    log: tempfile::NamedTempFile,
}

impl S3Server {
    /// With the bucket [`BUCKET`] and the only credentials it takes.
    fn start() -> S3Server {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join(BUCKET)).unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free loopback port")
            .port();
        let mut server = S3Server {
            child: None,
            port,
            root,
            log: tempfile::NamedTempFile::new().unwrap(),
        };
        server.spawn();
        server
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) {
        let out = File::options().append(true).open(self.log.path()).unwrap();
        let child = Command::new("s3s-fs")
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(self.root.path())
            .env("RUST_LOG", "warn")
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect(
                "s3s-fs runs (scripts/setup-packages.sh --test installs it: cargo install s3s-fs)",
            );
        let child = self.child.insert(child);
        wait_until_listening("s3s-fs", child, self.port, self.log.path());
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// The object's bytes and `Content-Type`, by a signed GET as the cloud would read it.
    fn get(&self, key: &str) -> Option<(Vec<u8>, String)> {
        let bucket = Bucket::new(
            self.endpoint().parse().unwrap(),
            UrlStyle::Path,
            BUCKET,
            "us-east-1",
        )
        .unwrap();
        let credentials = Credentials::new(ACCESS_KEY, SECRET_KEY);
        let url = GetObject::new(&bucket, Some(&credentials), key).sign(Duration::from_secs(60));
        match ureq::request_url("GET", &url).call() {
            Ok(response) => {
                let content_type = response.header("content-type").unwrap_or("").to_owned();
                let mut data = Vec::new();
                std::io::Read::read_to_end(&mut response.into_reader(), &mut data).unwrap();
                Some((data, content_type))
            }
            Err(ureq::Error::Status(404, _)) => None,
            Err(e) => panic!("GET {key}: {e}"),
        }
    }

    /// Every object key in the bucket (s3s-fs keeps each as a file under the bucket directory).
    fn keys(&self) -> Vec<String> {
        fn walk(dir: &std::path::Path, base: &std::path::Path, out: &mut Vec<String>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    walk(&path, base, out);
                } else if let Ok(relative) = path.strip_prefix(base) {
                    let key = relative.to_string_lossy().into_owned();
                    // s3s-fs's own bookkeeping beside the objects.
                    if !key.starts_with(".") && !key.contains("/.") {
                        out.push(key);
                    }
                }
            }
        }
        let base: PathBuf = self.root.path().join(BUCKET);
        let mut out = Vec::new();
        walk(&base, &base, &mut out);
        out.sort();
        out
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
}

fn s3_config(server: &S3Server) -> S3Config {
    S3Config::new(server.endpoint(), BUCKET, ACCESS_KEY, SECRET_KEY, DEVICE)
}

/// Stores an event with one snapshot; returns it and the snapshot's bytes.
async fn with_snapshot(store: &EventStore, seed: u64) -> (Event, Vec<u8>) {
    let mut new = event("cam", 0);
    let data = file_bytes(seed, 50_000 + seed as usize);
    new.media.push(
        store
            .put_media(MediaKind::Snapshot, "image/jpeg", &data)
            .unwrap(),
    );
    (store.append(new).await.unwrap(), data)
}

/// `<prefix>/<device id>/<event id>/<n>-<sha256>.jpg`.
fn object_key(event: &Event) -> String {
    format!(
        "appliance/{DEVICE}/{}/0-{}.jpg",
        event.id, event.media[0].sha256
    )
}

fn queued(store: &EventStore) -> usize {
    store.state_entries(MEDIA_NAMESPACE).unwrap().len()
}

fn last_seq(store: &EventStore) -> u64 {
    store.outbox(None, 100_000).unwrap().last().unwrap().seq
}

impl Running {
    fn start(store: &EventStore, broker: &Mosquitto, s3: S3Config) -> Running {
        let mut publisher = MqttPublisher::new(MqttConfig::new(broker.url(), DEVICE)).unwrap();
        let uploader = MediaUploader::new(store.clone(), &mut publisher, DEVICE, media_options())
            .to_s3(S3Client::new(s3).unwrap());
        let media = uploader.status();
        let sender = Sender::new(store.clone(), publisher, DEVICE, quick_options()).unwrap();
        let events = sender.status();
        let cancel = CancellationToken::new();
        let tasks = vec![
            tokio::spawn(sender.run(cancel.clone())),
            tokio::spawn(uploader.run(cancel.clone())),
        ];
        Running {
            events,
            media,
            cancel,
            tasks,
        }
    }
}

/// The cloud: every message of the box but its presence.
async fn cloud(broker: &Mosquitto) -> Subscriber {
    Subscriber::connect(broker.port, "appliance/box-1/#", "cloud", true).await
}

fn is_box_message(message: &Message) -> bool {
    message.topic == EVENTS || message.topic == MEDIA_REF
}

/// Checks a reference against the event's snapshot, uploaded to `server`.
fn check_reference(reference: &Value, event: &Event, server: &S3Server) {
    let media = &event.media[0];
    let expected = serde_json::json!({
        "schema": MEDIA_REF_SCHEMA,
        "device_id": DEVICE,
        "event_id": event.id.to_string(),
        "n": 0,
        "kind": "snapshot",
        "sha256": media.sha256,
        "content_type": "image/jpeg",
        "size": media.size,
        "url": format!("{}/{BUCKET}/{}", server.endpoint(), object_key(event)),
    });
    assert_eq!(reference, &expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_goes_first_then_its_snapshot_lands_in_the_bucket_then_its_reference() {
    let broker = Mosquitto::start(BrokerOptions::default());
    let server = S3Server::start();
    let mut cloud = cloud(&broker).await;
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let (first, first_bytes) = with_snapshot(&store, 1).await;
    let plain = store.append(event("cam", 1)).await.unwrap();
    let (second, second_bytes) = with_snapshot(&store, 2).await;

    let mut running = Running::start(&store, &broker, s3_config(&server));
    let status = running
        .wait_media("uploaded", |s| s.uploaded == 2 && s.queued == 0)
        .await;
    assert_eq!(
        (status.consecutive_failures, status.last_error),
        (0, None),
        "{:#?}",
        running.media.snapshot()
    );
    assert_eq!(queued(&store), 0, "dequeued once referenced");

    let got: Vec<Message> = cloud
        .drain(Duration::from_millis(500))
        .await
        .into_iter()
        .filter(is_box_message)
        .collect();
    let order: Vec<(String, String)> = got
        .iter()
        .map(|m| {
            let json = m.json();
            let id = match m.topic.as_str() {
                EVENTS => json["event"]["id"].as_str().unwrap().to_owned(),
                _ => json["event_id"].as_str().unwrap().to_owned(),
            };
            (m.topic.clone(), id)
        })
        .collect();
    let ids = [&first, &plain, &second].map(|e| e.id.to_string());
    let events: Vec<&str> = order
        .iter()
        .filter(|(topic, _)| topic == EVENTS)
        .map(|(_, id)| id.as_str())
        .collect();
    assert_eq!(events, ids, "every event once, in commit order");
    for (event, bytes) in [(&first, &first_bytes), (&second, &second_bytes)] {
        let id = event.id.to_string();
        let announced = order
            .iter()
            .position(|o| *o == (EVENTS.to_owned(), id.clone()));
        let referenced = order
            .iter()
            .position(|o| *o == (MEDIA_REF.to_owned(), id.clone()));
        assert!(
            announced.is_some() && referenced > announced,
            "the reference after its event: {order:?}"
        );
        let reference = got[referenced.unwrap()].json();
        check_reference(&reference, event, &server);
        let (data, content_type) = server.get(&object_key(event)).expect("the object");
        assert!(data == *bytes, "the object holds the file's bytes");
        assert_eq!(content_type, "image/jpeg");
    }
    assert_eq!(
        server.keys(),
        {
            let mut keys = vec![object_key(&first), object_key(&second)];
            keys.sort();
            keys
        },
        "one object per file, nothing over MQTT"
    );
    assert!(
        !got.iter().any(|m| m.topic.contains("/media/")),
        "no file went over MQTT"
    );
    running.stop().await;
}

/// Wrong credentials: each attempt is refused in words and retried, the file stays queued, the
/// events go on; with the right key (the daemon restarted with its configuration fixed) it goes.
/// (A missing bucket is not tried here: s3s-fs makes the bucket's directory on the first `PUT`,
/// where S3 answers `NoSuchBucket`; the unit tests of `s3.rs` cover that answer's words.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_credentials_keep_the_file_queued_and_the_events_flowing() {
    let broker = Mosquitto::start(BrokerOptions::default());
    let server = S3Server::start();
    let mut cloud = cloud(&broker).await;
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let (event_with_media, bytes) = with_snapshot(&store, 3).await;

    for (config, expected) in [
        (
            S3Config {
                secret_key: "not-the-secret".into(),
                ..s3_config(&server)
            },
            "SignatureDoesNotMatch",
        ),
        (
            S3Config {
                access_key: "nobody".into(),
                ..s3_config(&server)
            },
            "knows no such access key",
        ),
    ] {
        let mut running = Running::start(&store, &broker, config);
        let status = running
            .wait_media("refused twice", |s| s.consecutive_failures >= 2)
            .await;
        let error = status.last_error.unwrap();
        assert!(
            error.contains(expected) && error.contains(&server.endpoint()),
            "{error}"
        );
        assert_eq!((status.uploaded, status.queued), (0, 1));
        // Later events are not held back by the file.
        for n in 0..5 {
            store.append(event("later", n)).await.unwrap();
        }
        let last = last_seq(&store);
        running
            .wait_events("later events delivered", |s| s.cursor == Some(last))
            .await;
        running.stop().await;
        assert_eq!(queued(&store), 1, "kept for later: {expected}");
    }
    assert!(server.keys().is_empty());

    let mut fixed = Running::start(&store, &broker, s3_config(&server));
    fixed
        .wait_media("uploaded", |s| s.uploaded == 1 && s.queued == 0)
        .await;
    let (data, _) = server.get(&object_key(&event_with_media)).unwrap();
    assert!(data == bytes);
    let got = cloud.drain(Duration::from_millis(500)).await;
    let references: Vec<Value> = got
        .iter()
        .filter(|m| m.topic == MEDIA_REF)
        .map(Message::json)
        .collect();
    assert_eq!(references.len(), 1, "{references:?}");
    check_reference(&references[0], &event_with_media, &server);
    let delivered: std::collections::HashSet<String> = got
        .iter()
        .filter(|m| m.topic == EVENTS)
        .map(|m| m.json()["event"]["id"].as_str().unwrap().to_owned())
        .collect();
    let stored: std::collections::HashSet<String> = store
        .outbox(None, 100)
        .unwrap()
        .iter()
        .map(|e| e.id.to_string())
        .collect();
    assert_eq!(delivered, stored, "every event");
    fixed.stop().await;
}

/// The object store away: events flow on, the files wait, each attempt says the connection was
/// refused; once it is back every file is uploaded and referenced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_object_store_down_events_flow_and_media_follow_once_it_is_back() {
    let broker = Mosquitto::start(BrokerOptions::default());
    let mut server = S3Server::start();
    let mut cloud = cloud(&broker).await;
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    server.stop();

    let mut running = Running::start(&store, &broker, s3_config(&server));
    let mut stored = Vec::new();
    for seed in 0..4 {
        stored.push(with_snapshot(&store, 10 + seed).await);
        store.append(event("plain", seed as i64)).await.unwrap();
    }
    let last = last_seq(&store);
    running
        .wait_events("every event delivered", |s| s.cursor == Some(last))
        .await;
    let status = running
        .wait_media("failing", |s| s.consecutive_failures >= 2 && s.queued == 4)
        .await;
    let error = status.last_error.unwrap();
    assert!(error.contains("connection refused"), "{error}");
    assert_eq!((status.uploaded, status.queued), (0, 4));
    let events = cloud.take(8, Duration::from_secs(5)).await;
    assert!(
        events
            .iter()
            .filter(|m| is_box_message(m))
            .all(|m| m.topic == EVENTS),
        "no reference while the store is away"
    );

    server.restart();
    let status = running
        .wait_media("caught up", |s| s.uploaded == 4 && s.queued == 0)
        .await;
    assert_eq!(status.last_error, None);
    for (event, bytes) in &stored {
        let (data, _) = server.get(&object_key(event)).expect("uploaded");
        assert!(data == *bytes);
    }
    let references: Vec<Value> = cloud
        .drain(Duration::from_millis(500))
        .await
        .iter()
        .filter(|m| m.topic == MEDIA_REF)
        .map(Message::json)
        .collect();
    let referenced: Vec<&str> = references
        .iter()
        .map(|r| r["event_id"].as_str().unwrap())
        .collect();
    let expected: Vec<String> = stored.iter().map(|(e, _)| e.id.to_string()).collect();
    assert_eq!(referenced, expected, "in delivery order");
    running.stop().await;
}
