//! Real brokers for the uplink's tests, in the crate and end to end: tansu (a Kafka-protocol
//! broker with in-memory storage; `scripts/setup-packages.sh` installs it), each on a loopback
//! port and stopped when dropped.

use std::fs::File;
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

pub struct Tansu {
    port: u16,
    /// Require SASL: tansu then knows no user (users are created through an authenticated
    /// connection), so every login fails, which is what the credential tests need.
    authenticate: bool,
    child: Option<Child>,
    log: tempfile::NamedTempFile,
}

impl Tansu {
    /// On a free port.
    pub fn start() -> Tansu {
        Tansu::start_with(false)
    }

    /// On a free port, refusing every SASL login.
    pub fn start_authenticating() -> Tansu {
        Tansu::start_with(true)
    }

    fn start_with(authenticate: bool) -> Tansu {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free loopback port")
            .port();
        let mut tansu = Tansu {
            port,
            authenticate,
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

    /// `host:port` for `bootstrap.servers`.
    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Reads `count` messages (key, payload) of `topic` from the beginning of every partition,
    /// failing after 15 s.
    pub fn read(&self, topic: &str, count: usize) -> Vec<(String, Vec<u8>)> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", self.brokers())
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
                &url,
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
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if exited.is_some() || Instant::now() > deadline {
                panic!(
                    "tansu did not start on port {} ({exited:?}):\n{}",
                    self.port,
                    std::fs::read_to_string(self.log.path()).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        self.stop();
    }
}
