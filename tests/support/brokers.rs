//! Real brokers for the uplink's tests, in the crate and end to end: mosquitto (MQTT) and tansu
//! (a Kafka-protocol broker with in-memory storage; `scripts/setup-packages.sh` installs both),
//! each on a loopback port and stopped when dropped. tansu has no TLS of its own: [`TlsFront`]
//! (socat) terminates TLS in front of it.

use std::fmt::Write as _;
use std::fs::File;
use std::io::Write as _;
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use serde_json::Value;

/// How the broker listens and whom it lets in.
#[derive(Debug, Clone, Default)]
pub struct BrokerOptions {
    /// (user, password) entries of a password file; empty: anonymous clients are allowed.
    pub users: Vec<(String, String)>,
    /// A second listener with TLS (and client certificates required) on another port.
    pub tls: Option<TlsFiles>,
    /// `max_packet_size`: the largest packet the broker takes, stated in its CONNACK to MQTT 5
    /// clients.
    pub max_packet_size: Option<u32>,
    /// `message_size_limit`: the largest payload the broker takes, not stated up front; a larger
    /// QoS 1 message from an MQTT 5 client gets a PUBACK with reason 0x95 (packet too large).
    pub message_size_limit: Option<u32>,
    /// The lines of an ACL file (`topic read …`, `topic readwrite …`); before any `user` line
    /// they apply to anonymous clients. A QoS 1 message it denies gets a PUBACK with reason
    /// 0x87 (not authorized).
    pub acl: Vec<String>,
    /// `max_queued_messages` per offline subscriber; `None`: unlimited, so that a test counts
    /// every message. mosquitto 2.0.11 unlimited ends a client's connection right after it
    /// refuses one of its messages by PUBACK: a test of refusals sets a limit.
    pub max_queued_messages: Option<u32>,
    /// `set_tcp_nodelay true`, as the README recommends for deployments: without it the broker's
    /// Nagle holds a burst's later PUBACKs until the client acknowledges the first, which a
    /// client waiting for them delays by 40 ms.
    pub tcp_nodelay: bool,
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
        let queued = self.options.max_queued_messages.unwrap_or(0);
        writeln!(conf, "max_queued_messages {queued}").unwrap();
        writeln!(conf, "per_listener_settings false").unwrap();
        if self.options.tcp_nodelay {
            writeln!(conf, "set_tcp_nodelay true").unwrap();
        }
        if let Some(max) = self.options.max_packet_size {
            writeln!(conf, "max_packet_size {max}").unwrap();
        }
        if let Some(max) = self.options.message_size_limit {
            writeln!(conf, "message_size_limit {max}").unwrap();
        }
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
        if !self.options.acl.is_empty() {
            let acl = dir.join("acl");
            std::fs::write(&acl, self.options.acl.join("\n") + "\n").unwrap();
            writeln!(conf, "acl_file {}", acl.display()).unwrap();
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

pub struct Tansu {
    port: u16,
    /// Require SASL: tansu then knows no user (users are created through an authenticated
    /// connection), so every login fails, which is what the credential tests need.
    authenticate: bool,
    /// The TLS terminator in front of it, whose port tansu advertises; `None`: plaintext.
    front: Option<TlsFront>,
    child: Option<Child>,
    log: tempfile::NamedTempFile,
}

impl Tansu {
    /// On a free port.
    pub fn start() -> Tansu {
        Tansu::start_with(false, None)
    }

    /// On a free port, refusing every SASL login.
    pub fn start_authenticating() -> Tansu {
        Tansu::start_with(true, None)
    }

    /// Behind a [`TlsFront`] with the server certificate of `tls`: tansu listens in plaintext
    /// on its own port and advertises the front's, so that clients, which reconnect to the
    /// advertised listener from the metadata, stay on TLS. [`Tansu::brokers`] is the front.
    pub fn start_behind_tls(tls: &TlsFiles) -> Tansu {
        let port = free_port();
        let front = TlsFront::start(tls, port);
        Tansu::start_with(false, Some((port, front)))
    }

    fn start_with(authenticate: bool, behind: Option<(u16, TlsFront)>) -> Tansu {
        let (port, front) = match behind {
            Some((port, front)) => (port, Some(front)),
            None => (free_port(), None),
        };
        let mut tansu = Tansu {
            port,
            authenticate,
            front,
            child: None,
            log: tempfile::NamedTempFile::new().expect("tansu log file"),
        };
        tansu.spawn();
        tansu
    }

    /// Starts it again on the same port (after [`Tansu::stop`]), with empty storage.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// `host:port` for `bootstrap.servers`: the advertised listener (behind TLS, the front).
    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.advertised_port())
    }

    fn advertised_port(&self) -> u16 {
        self.front.as_ref().map_or(self.port, |front| front.port)
    }

    /// A client of this broker: `bootstrap.servers`, and behind TLS `security.protocol=ssl`
    /// with the CA that signed the front's certificate.
    pub fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", self.brokers());
        if let Some(front) = &self.front {
            config
                .set("security.protocol", "ssl")
                .set("ssl.ca.location", front.ca.to_str().expect("UTF-8 CA path"));
        }
        config
    }

    /// Reads `count` messages (key, payload) of `topic` from the beginning of every partition,
    /// failing after 15 s.
    pub fn read(&self, topic: &str, count: usize) -> Vec<(String, Vec<u8>)> {
        let consumer: BaseConsumer = self
            .client_config()
            .set("group.id", "test-reader")
            .set("enable.auto.commit", "false")
            .create()
            .expect("consumer");
        let metadata = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(5))
            .expect("topic metadata");
        let mut partitions = TopicPartitionList::new();
        for partition in metadata.topics()[0].partitions() {
            partitions
                .add_partition_offset(topic, partition.id(), Offset::Beginning)
                .expect("partition");
        }
        // Assigned, not subscribed: no consumer-group rebalance to wait for.
        consumer.assign(&partitions).expect("assign");
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut read = Vec::new();
        while read.len() < count {
            assert!(
                Instant::now() < deadline,
                "only {} of {count} messages arrived",
                read.len()
            );
            if let Some(message) = consumer.poll(Duration::from_millis(200)) {
                let message = message.expect("consume");
                read.push((
                    String::from_utf8(message.key().expect("key").to_vec()).expect("UTF-8 key"),
                    message.payload().expect("payload").to_vec(),
                ));
            }
        }
        read
    }

    /// Kills the broker; what it stored is gone.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn spawn(&mut self) {
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let advertised = format!("tcp://127.0.0.1:{}", self.advertised_port());
        let out = File::options()
            .append(true)
            .open(self.log.path())
            .expect("tansu log file");
        let mut command = Command::new("tansu");
        command
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &advertised,
            ])
            .args(["--storage-engine", "memory://tansu/"]);
        if self.authenticate {
            command.arg("--authentication");
        }
        let child = command
            .stdout(out.try_clone().expect("tansu log file"))
            .stderr(out)
            .spawn()
            .expect("tansu runs (scripts/setup-packages.sh installs it: cargo install tansu)");
        let child = self.child.insert(child);
        wait_until_listening("tansu", child, self.port, self.log.path());
    }
}

/// Waits (10 s at most) until a peer just spawned accepts TCP on `port`; panics with its log if
/// it exits or does not listen in time.
pub fn wait_until_listening(name: &str, child: &mut Child, port: u16, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        let exited = child.try_wait().ok().flatten();
        if exited.is_some() || Instant::now() > deadline {
            panic!(
                "{name} did not start on port {port} ({exited:?}):\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A TLS terminator on a free loopback port: socat (`apt-get install socat`) with a server
/// certificate, forwarding each connection in plaintext to a TCP port on 127.0.0.1. It asks
/// for no client certificate. Killed on drop, with the children it forked per connection.
pub struct TlsFront {
    pub port: u16,
    /// The CA that signed its certificate, for clients.
    pub ca: PathBuf,
    child: Child,
    _log: tempfile::NamedTempFile,
}

impl TlsFront {
    /// Listening on return. socat binds port 0 and logs the port it got, so no other test can
    /// take it between choosing and binding.
    pub fn start(tls: &TlsFiles, target_port: u16) -> TlsFront {
        let log = tempfile::NamedTempFile::new().expect("socat log file");
        let listen = format!(
            "OPENSSL-LISTEN:0,bind=127.0.0.1,reuseaddr,fork,cert={},key={},verify=0",
            tls.cert.display(),
            tls.key.display()
        );
        let mut child = Command::new("socat")
            // Notices: the port it listens on, then each connection and its errors.
            .args(["-d", "-d"])
            .arg(listen)
            .arg(format!("TCP:127.0.0.1:{target_port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log.reopen().expect("socat log file"))
            // Its own group, so that drop ends the per-connection children too.
            .process_group(0)
            .spawn()
            .expect("socat runs (scripts/setup-packages.sh installs it: apt-get install socat)");
        let deadline = Instant::now() + Duration::from_secs(10);
        let port = loop {
            let text = std::fs::read_to_string(log.path()).unwrap_or_default();
            let port = text
                .split("listening on AF=2 127.0.0.1:")
                .nth(1)
                .and_then(|rest| rest.lines().next())
                .and_then(|port| port.trim().parse::<u16>().ok());
            if let Some(port) = port {
                break port;
            }
            let exited = child.try_wait().ok().flatten();
            if exited.is_some() || Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("socat did not listen ({exited:?}):\n{text}");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        wait_until_listening("socat", &mut child, port, log.path());
        TlsFront {
            port,
            ca: tls.ca.clone(),
            child,
            _log: log,
        }
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        let group = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

/// `mosquitto_sub` as the cloud: QoS 1, a persistent session (`-c -i`), one line per message
/// (`topic payload`) appended to a file.
pub struct MqttSubscriber {
    child: Child,
    out: PathBuf,
}

impl MqttSubscriber {
    pub fn start(port: u16, topic: &str, out: &Path) -> MqttSubscriber {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(out)
            .expect("subscriber output");
        let child = Command::new("mosquitto_sub")
            .args(["-h", "127.0.0.1", "-p", &port.to_string()])
            .args(["-t", topic, "-q", "1", "-c", "-i", "cloud-test", "-v"])
            .stdout(file)
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto_sub starts (apt install mosquitto-clients)");
        MqttSubscriber {
            child,
            out: out.to_path_buf(),
        }
    }

    /// Every message received so far (by this and earlier subscribers on the same file), as
    /// (topic, JSON payload), in arrival order.
    pub fn messages(&self) -> Vec<(String, Value)> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .filter_map(|line| {
                let (topic, payload) = line.split_once(' ')?;
                Some((topic.to_string(), serde_json::from_str(payload).ok()?))
            })
            .collect()
    }

    /// The JSON payloads received so far on `topic`, in arrival order.
    pub fn on(&self, topic: &str) -> Vec<Value> {
        self.messages()
            .into_iter()
            .filter(|(t, _)| t == topic)
            .map(|(_, m)| m)
            .collect()
    }
}

/// Publishes one message at QoS 1 with `mosquitto_pub` (the cloud sending a command). The
/// payload goes on stdin (`-s`): a command carrying a file is larger than one argument may be.
pub fn mqtt_publish(port: u16, topic: &str, payload: &str) {
    let mut child = Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(["-t", topic, "-q", "1", "-s"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("mosquitto_pub runs (apt install mosquitto-clients)");
    let mut stdin = child.stdin.take().expect("mosquitto_pub's stdin");
    stdin
        .write_all(payload.as_bytes())
        .expect("payload to mosquitto_pub");
    // Closed: mosquitto_pub reads to the end before it publishes.
    drop(stdin);
    let status = child.wait().expect("mosquitto_pub ends");
    assert!(status.success(), "mosquitto_pub {topic}");
}

impl Drop for MqttSubscriber {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
