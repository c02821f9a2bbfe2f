//! Peers for the uplink tests besides the brokers (`appliance_tests::brokers`): a test CA, an
//! MQTT subscriber, and an event store in a temporary directory.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use appliance_model::{EventSource, NewEvent, Severity, Timestamp};
use appliance_store::{EventStore, StoreOptions};
use appliance_tests::brokers::TlsFiles;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// A CA with a server certificate for 127.0.0.1 and a client certificate, as PEM files.
pub struct TestCa {
    /// Holds the files.
    _dir: tempfile::TempDir,
    pub ca: PathBuf,
    pub server: (PathBuf, PathBuf),
    pub client: (PathBuf, PathBuf),
}

impl TestCa {
    pub fn new(name: &str) -> TestCa {
        let dir = tempfile::tempdir().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let write = |file: &str, pem: String| {
            let path = dir.path().join(file);
            std::fs::write(&path, pem).unwrap();
            path
        };
        let leaf = |names: Vec<String>, purpose: ExtendedKeyUsagePurpose, file: &str| {
            let key = KeyPair::generate().unwrap();
            let mut params = CertificateParams::new(names).unwrap();
            params.distinguished_name.push(DnType::CommonName, file);
            params.extended_key_usages = vec![purpose];
            let cert = params.signed_by(&key, &ca).unwrap();
            (
                write(&format!("{file}.crt"), cert.pem()),
                write(&format!("{file}.key"), key.serialize_pem()),
            )
        };
        let server = leaf(
            vec!["127.0.0.1".into(), "localhost".into()],
            ExtendedKeyUsagePurpose::ServerAuth,
            "server",
        );
        let client = leaf(vec![], ExtendedKeyUsagePurpose::ClientAuth, "client");
        let ca_path = write("ca.crt", ca.pem());
        TestCa {
            _dir: dir,
            ca: ca_path,
            server,
            client,
        }
    }

    pub fn listener_files(&self) -> TlsFiles {
        TlsFiles {
            ca: self.ca.clone(),
            cert: self.server.0.clone(),
            key: self.server.1.clone(),
        }
    }
}

/// One message as a subscriber got it.
#[derive(Debug, Clone)]
pub struct Message {
    pub topic: String,
    pub payload: Vec<u8>,
    pub retain: bool,
}

impl Message {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.payload).expect("JSON payload")
    }
}

/// What a subscriber's driver task received, in order; the task stops when this is dropped.
pub struct Inbox<M> {
    rx: mpsc::UnboundedReceiver<M>,
    driver: JoinHandle<()>,
}

impl<M> Drop for Inbox<M> {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

impl<M> Inbox<M> {
    pub fn new(rx: mpsc::UnboundedReceiver<M>, driver: JoinHandle<()>) -> Inbox<M> {
        Inbox { rx, driver }
    }

    pub async fn next(&mut self, within: Duration) -> Option<M> {
        tokio::time::timeout(within, self.rx.recv())
            .await
            .ok()
            .flatten()
    }

    /// Messages until `n` have arrived or `within` has passed.
    pub async fn take(&mut self, n: usize, within: Duration) -> Vec<M> {
        let deadline = tokio::time::Instant::now() + within;
        let mut out = Vec::new();
        while out.len() < n {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(message)) => out.push(message),
                _ => break,
            }
        }
        out
    }

    /// Whatever else arrives, until nothing has for `quiet`.
    pub async fn drain(&mut self, quiet: Duration) -> Vec<M> {
        let mut out = Vec::new();
        while let Some(message) = self.next(quiet).await {
            out.push(message);
        }
        out
    }
}

/// An MQTT 3.1.1 subscriber (the cloud side, on another protocol version than the box). With
/// a `persistent` session the broker queues what arrives while it is away, across a graceful
/// broker restart too, so a test sees every message whatever order things reconnect in.
pub type Subscriber = Inbox<Message>;

impl Inbox<Message> {
    pub async fn connect(port: u16, filter: &str, client_id: &str, persistent: bool) -> Subscriber {
        let mut options = rumqttc::MqttOptions::new(client_id, "127.0.0.1", port);
        options.set_keep_alive(Duration::from_secs(5));
        options.set_clean_session(!persistent);
        let (client, mut event_loop) = rumqttc::AsyncClient::new(options, 100);
        client
            .subscribe(filter, rumqttc::QoS::AtLeastOnce)
            .await
            .unwrap();
        let (tx, rx) = mpsc::unbounded_channel();
        let (subscribed_tx, subscribed) = tokio::sync::oneshot::channel();
        let driver = tokio::spawn(async move {
            // Keeps the client alive as long as the loop runs.
            let _client = client;
            let mut subscribed_tx = Some(subscribed_tx);
            loop {
                match event_loop.poll().await {
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::SubAck(_))) => {
                        if let Some(tx) = subscribed_tx.take() {
                            let _ = tx.send(());
                        }
                    }
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p))) => {
                        let _ = tx.send(Message {
                            topic: p.topic,
                            payload: p.payload.to_vec(),
                            retain: p.retain,
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
            .expect("SUBACK in time")
            .unwrap();
        Inbox::new(rx, driver)
    }
}

pub fn open_store(dir: &Path) -> EventStore {
    let options = StoreOptions {
        dir: dir.to_path_buf(),
        cache_capacity: 8 << 20,
        max_commit_group: 256,
    };
    EventStore::open(&options, Arc::default()).expect("store opens")
}

pub fn event(camera: &str, n: i64) -> NewEvent {
    NewEvent {
        camera_id: camera.into(),
        channel_id: None,
        source: EventSource::Skill,
        kind: "intrusion".into(),
        severity: Severity::Major,
        start_time: Some(Timestamp::from_millis(
            Timestamp::now().as_millis() - 60_000 + n,
        )),
        end_time: None,
        attributes: serde_json::json!({"n": n}).as_object().unwrap().clone(),
        media: vec![],
    }
}

/// Sender options with quick retries, so that outages in tests last seconds.
pub fn quick_options() -> appliance_uplink::sender::SenderOptions {
    appliance_uplink::sender::SenderOptions {
        batch: 100,
        recheck: Duration::from_millis(200),
        backoff_base: Duration::from_millis(100),
        backoff_cap: Duration::from_millis(500),
        seed: Some(7),
    }
}

/// (seq, event id) of every outbox entry, in commit order.
pub fn outbox(store: &EventStore) -> Vec<(u64, String)> {
    store
        .outbox(None, 100_000)
        .unwrap()
        .iter()
        .map(|e| (e.seq, e.id.to_string()))
        .collect()
}

/// Commits `count` events of `camera` in one group.
pub async fn commit(store: &EventStore, camera: &str, count: i64) {
    store
        .append_many((0..count).map(|n| event(camera, n)).collect())
        .await
        .unwrap();
}
