//! Harness for end-to-end tests: runs the real `applianced` binary on an ephemeral loopback port
//! with a temporary data directory, and talks to it over HTTP.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub mod brokers;
pub mod clips;
pub mod rauc;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

/// Path of a binary of this workspace, built into the same target directory as the test.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test>-<hash> → target/<profile>/<name>
    let path = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executable lives in target/<profile>/deps")
        .join(name);
    assert!(
        path.is_file(),
        "{} is missing: run `cargo build --workspace --bins` first (`just test` does)",
        path.display()
    );
    path
}

/// A running `applianced`.
pub struct Daemon {
    child: Child,
    /// The HTTP API.
    pub addr: SocketAddr,
    /// SIP, UDP and TCP.
    pub sip_addr: SocketAddr,
    log: Arc<Mutex<String>>,
    /// The admin session every request carries (`Authorization: Bearer`), once signed in.
    token: Option<String>,
}

/// The admin password the harness claims test boxes with.
pub const ADMIN_PASSWORD: &str = "test admin password";

/// How to start the daemon.
pub struct DaemonOptions<'a> {
    /// `--data-dir`; `None` leaves it to the configuration.
    pub data_dir: Option<&'a Path>,
    /// Extra `--config` file.
    pub config: Option<&'a Path>,
    pub env: Vec<(String, String)>,
    /// Ask for a systemd watchdog with this period, as systemd does: `WATCHDOG_USEC` plus
    /// `WATCHDOG_PID` naming the daemon itself.
    pub watchdog_usec: Option<u64>,
    /// Claim the box with [`ADMIN_PASSWORD`] (or sign in, when its data directory is claimed
    /// already) so that requests pass the admin gate. Default true.
    pub sign_in: bool,
}

impl<'a> DaemonOptions<'a> {
    pub fn new(data_dir: &'a Path) -> Self {
        DaemonOptions {
            data_dir: Some(data_dir),
            config: None,
            env: Vec::new(),
            watchdog_usec: None,
            sign_in: true,
        }
    }
}

impl Daemon {
    pub fn start(data_dir: &Path) -> Daemon {
        Daemon::start_with(DaemonOptions::new(data_dir))
    }

    /// Starts the daemon on 127.0.0.1:0 and waits until it logs the address it bound.
    pub fn start_with(options: DaemonOptions) -> Daemon {
        let mut command = match options.watchdog_usec {
            // `exec` keeps the shell's pid, so $$ is the daemon's pid.
            Some(usec) => {
                let mut sh = Command::new("sh");
                sh.arg("-c")
                    .arg(format!(
                        "WATCHDOG_PID=$$ WATCHDOG_USEC={usec} exec \"$0\" \"$@\""
                    ))
                    .arg(binary("applianced"));
                sh
            }
            None => Command::new(binary("applianced")),
        };
        command.arg("run");
        if let Some(dir) = options.data_dir {
            command.arg("--data-dir").arg(dir);
        }
        if let Some(config) = options.config {
            command.arg("--config").arg(config);
        }
        command
            .env("APPLIANCE_HTTP__LISTEN", "127.0.0.1:0")
            .env("APPLIANCE_SIP__LISTEN", "127.0.0.1:0")
            .env("RUST_LOG", "info")
            // Hermetic: never the machine's /boot/appliance/provision.toml.
            .env("APPLIANCE_DEVICE__PROVISIONING_FILE", "")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("JOURNAL_STREAM")
            .envs(options.env)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("applianced starts");
        let stderr = child.stderr.take().expect("stderr piped");
        let log = Arc::new(Mutex::new(String::new()));
        let (addr_tx, addr_rx) = mpsc::channel();
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                for (name, marker) in [("http", "http_addr="), ("sip", "local_addr=")] {
                    if let Some(addr) = line.split(marker).nth(1) {
                        let _ = addr_tx.send((name, addr.trim().parse::<SocketAddr>()));
                    }
                }
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let (mut http, mut sip) = (None, None);
        while http.is_none() || sip.is_none() {
            match addr_rx.recv_timeout(Duration::from_secs(20)) {
                Ok(("http", Ok(addr))) => http = Some(addr),
                Ok((_, Ok(addr))) => sip = Some(addr),
                other => {
                    let _ = child.kill();
                    panic!(
                        "applianced did not report its addresses ({other:?}); log:\n{}",
                        log.lock().unwrap()
                    );
                }
            }
        }
        let mut daemon = Daemon {
            child,
            addr: http.expect("http address"),
            sip_addr: sip.expect("sip address"),
            log,
            token: None,
        };
        if options.sign_in {
            daemon.sign_in();
        }
        daemon
    }

    /// Claims the box with [`ADMIN_PASSWORD`], or signs in with it when it is claimed already;
    /// later requests carry the session.
    pub fn sign_in(&mut self) {
        let body = serde_json::json!({ "password": ADMIN_PASSWORD }).to_string();
        let (mut status, mut answer) = self.post("/api/v1/claim", &body);
        if status == 409 {
            (status, answer) = self.post("/api/v1/login", &body);
        }
        assert!(status == 200 || status == 201, "sign-in: {status} {answer}");
        self.token = Some(answer["token"].as_str().expect("a token").to_owned());
    }

    /// A request to `path` with the session, if any.
    pub fn request(&self, method: &str, path: &str) -> ureq::Request {
        let request = ureq::request(method, &self.url(path));
        match &self.token {
            Some(token) => request.set("authorization", &format!("Bearer {token}")),
            None => request,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// GET returning (status, body text).
    pub fn get_text(&self, path: &str) -> (u16, String) {
        response(self.request("GET", path).call())
    }

    /// GET returning (status, body bytes): media files.
    pub fn get_bytes(&self, path: &str) -> (u16, Vec<u8>) {
        match self.request("GET", path).call() {
            Ok(response) | Err(ureq::Error::Status(_, response)) => {
                let status = response.status();
                let mut bytes = Vec::new();
                std::io::Read::read_to_end(&mut response.into_reader(), &mut bytes)
                    .expect("the body reads");
                (status, bytes)
            }
            Err(e) => panic!("GET {path}: {e}"),
        }
    }

    /// GET returning (status, JSON body).
    pub fn get(&self, path: &str) -> (u16, Value) {
        let (status, text) = self.get_text(path);
        (status, parse_json(&text))
    }

    /// POST a body, returning (status, JSON body).
    pub fn post(&self, path: &str, body: &str) -> (u16, Value) {
        let (status, text) = response(
            self.request("POST", path)
                .set("content-type", "application/json")
                .send_string(body),
        );
        (status, parse_json(&text))
    }

    /// POST raw bytes (a photo), returning (status, JSON body).
    pub fn post_bytes(&self, path: &str, content_type: &str, body: &[u8]) -> (u16, Value) {
        let (status, text) = response(
            self.request("POST", path)
                .set("content-type", content_type)
                .send_bytes(body),
        );
        (status, parse_json(&text))
    }

    /// PUT a JSON body, returning (status, JSON body).
    pub fn put(&self, path: &str, body: &str) -> (u16, Value) {
        let (status, text) = response(
            self.request("PUT", path)
                .set("content-type", "application/json")
                .send_string(body),
        );
        (status, parse_json(&text))
    }

    /// DELETE, returning (status, body text).
    pub fn delete(&self, path: &str) -> (u16, String) {
        response(self.request("DELETE", path).call())
    }

    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Sends `signal` and waits (bounded) for the process to exit.
    pub fn stop_with(self, signal: Signal, within: Duration) -> (ExitStatus, Duration) {
        let sent = Instant::now();
        kill(self.pid(), signal).expect("signal delivered");
        (self.wait_exit(within), sent.elapsed())
    }

    /// Waits (bounded) for the process to exit by itself.
    pub fn wait_exit(mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "applianced did not exit within {within:?}; log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn response(result: Result<ureq::Response, ureq::Error>) -> (u16, String) {
    match result {
        Ok(r) => (r.status(), r.into_string().expect("body")),
        Err(ureq::Error::Status(status, r)) => (status, r.into_string().expect("body")),
        Err(e) => panic!("request failed: {e}"),
    }
}

fn parse_json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// Polls `done` every 100 ms until it holds or `within` passed; returns whether it held.
pub fn wait_for(within: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    done()
}
