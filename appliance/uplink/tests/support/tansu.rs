//! A tansu broker (a Kafka-protocol broker with in-memory storage; `scripts/setup-packages.sh`
//! installs it) on a loopback port, killed when dropped.

use std::fs::File;
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

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
