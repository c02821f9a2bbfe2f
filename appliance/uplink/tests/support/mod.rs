//! Real peers for the uplink tests: a mosquitto broker on a loopback port, a test CA, a
//! subscriber, and an event store in a temporary directory.

use std::fmt::Write as _;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use appliance_model::{EventSource, NewEvent, Severity, Timestamp};
use appliance_store::{EventStore, StoreOptions};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// How the broker listens and whom it lets in.
#[derive(Debug, Clone, Default)]
pub struct BrokerOptions {
    /// (user, password) entries of a password file; empty: anonymous clients are allowed.
    pub users: Vec<(String, String)>,
    /// A second listener with TLS (and client certificates required) on another port.
    pub tls: Option<TlsFiles>,
}

/// PEM files for a TLS listener.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A mosquitto process on 127.0.0.1, killed on drop. Its persistence file lives in its
/// directory, so a broker started again there with [`Mosquitto::restart`] keeps the sessions
/// and subscriptions of the one stopped gracefully before it.
pub struct Mosquitto {
    child: Option<Child>,
    pub port: u16,
    pub tls_port: Option<u16>,
    dir: tempfile::TempDir,
    options: BrokerOptions,
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

impl Mosquitto {
    pub fn start(options: BrokerOptions) -> Mosquitto {
        let tls_port = options.tls.as_ref().map(|_| free_port());
        let mut broker = Mosquitto {
            child: None,
            port: free_port(),
            tls_port,
            dir: tempfile::tempdir().unwrap(),
            options,
        };
        broker.spawn();
        broker
    }

    fn spawn(&mut self) {
        let dir = self.dir.path();
        let mut conf = String::new();
        // As root mosquitto would switch to the `mosquitto` user, who cannot read our files.
        writeln!(conf, "user root").unwrap();
        writeln!(conf, "persistence true").unwrap();
        writeln!(conf, "persistence_location {}/", dir.display()).unwrap();
        writeln!(
            conf,
            "log_dest file {}",
            dir.join("mosquitto.log").display()
        )
        .unwrap();
        writeln!(
            conf,
            "log_type error\nlog_type warning\nlog_type notice\nlog_type information"
        )
        .unwrap();
        // Offline subscribers keep everything: a test counts every message.
        writeln!(conf, "max_queued_messages 0").unwrap();
        writeln!(conf, "per_listener_settings false").unwrap();
        if self.options.users.is_empty() {
            writeln!(conf, "allow_anonymous true").unwrap();
        } else {
            let passwords = dir.join("passwd");
            for (i, (user, password)) in self.options.users.iter().enumerate() {
                let mut cmd = Command::new("mosquitto_passwd");
                cmd.arg("-b");
                if i == 0 {
                    cmd.arg("-c");
                }
                let status = cmd
                    .arg(&passwords)
                    .args([user, password])
                    .status()
                    .expect("mosquitto_passwd runs (apt-get install mosquitto)");
                assert!(status.success());
            }
            writeln!(conf, "allow_anonymous false").unwrap();
            writeln!(conf, "password_file {}", passwords.display()).unwrap();
        }
        writeln!(conf, "listener {} 127.0.0.1", self.port).unwrap();
        if let (Some(tls), Some(port)) = (&self.options.tls, self.tls_port) {
            writeln!(conf, "listener {port} 127.0.0.1").unwrap();
            writeln!(conf, "cafile {}", tls.ca.display()).unwrap();
            writeln!(conf, "certfile {}", tls.cert.display()).unwrap();
            writeln!(conf, "keyfile {}", tls.key.display()).unwrap();
            writeln!(conf, "require_certificate true").unwrap();
        }
        let conf_path = dir.join("mosquitto.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            // Its start-up complaints (a bad line, running as root) come before the log opens.
            .stderr(std::fs::File::create(dir.join("stderr")).unwrap())
            .spawn()
            .expect("mosquitto starts (apt-get install mosquitto)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        for port in std::iter::once(self.port).chain(self.tls_port) {
            while TcpStream::connect(("127.0.0.1", port)).is_err() {
                assert!(
                    Instant::now() < deadline,
                    "mosquitto did not listen on {port}:\n{}{}",
                    std::fs::read_to_string(dir.join("stderr")).unwrap_or_default(),
                    self.log()
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// Stops the broker as a service stop does (SIGTERM: it saves its persistence file).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
            child.wait().unwrap();
        }
    }

    /// Freezes the broker (SIGSTOP): connections stay open, nothing is answered.
    pub fn freeze(&self) {
        self.signal(nix::sys::signal::Signal::SIGSTOP);
    }

    /// Lets a frozen broker go on (SIGCONT).
    pub fn thaw(&self) {
        self.signal(nix::sys::signal::Signal::SIGCONT);
    }

    fn signal(&self, signal: nix::sys::signal::Signal) {
        let child = self.child.as_ref().expect("the broker is running");
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), signal).unwrap();
    }

    /// Starts it again on the same ports, from its persistence file.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    pub fn tls_url(&self) -> String {
        format!(
            "mqtts://127.0.0.1:{}",
            self.tls_port.expect("a TLS listener")
        )
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("mosquitto.log")).unwrap_or_default()
    }

    /// Connections the broker saw so far (accepted or refused).
    pub fn connection_attempts(&self) -> usize {
        self.log().matches("New connection from").count()
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

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

/// An MQTT 3.1.1 subscriber (the cloud side, on another protocol version than the box). With
/// a `persistent` session the broker queues what arrives while it is away, across a graceful
/// broker restart too, so a test sees every message whatever order things reconnect in.
pub struct Subscriber {
    rx: mpsc::UnboundedReceiver<Message>,
    driver: JoinHandle<()>,
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

impl Subscriber {
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
        Subscriber { rx, driver }
    }

    pub async fn next(&mut self, within: Duration) -> Option<Message> {
        tokio::time::timeout(within, self.rx.recv())
            .await
            .ok()
            .flatten()
    }

    /// Messages until `n` have arrived or `within` has passed.
    pub async fn take(&mut self, n: usize, within: Duration) -> Vec<Message> {
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

    /// Whatever else arrives within `within`.
    pub async fn drain(&mut self, within: Duration) -> Vec<Message> {
        let mut out = Vec::new();
        while let Some(message) = self.next(within).await {
            out.push(message);
        }
        out
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
