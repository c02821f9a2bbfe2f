//! Media sessions end to end: the API asks `applianced` for a session, the platform INVITEs the
//! simulated camera (`applianced sim-device`), which streams real H.264 (GStreamer's test
//! pattern through x264) as MPEG-PS over RTP with the offered SSRC; the built-in RTP endpoint
//! checks the SSRC, demultiplexes the PS and counts frames; BYE (from the API, from a playback's
//! end, or because the stream stopped) releases the SSRC and the port.
//!
//! Not covered here: ZLMediaKit as the receiving endpoint and viewers' URLs (the media server
//! issue), and CANCEL of a ringing INVITE (the simulator answers at once; the platform's CANCEL
//! handling is tested sans-IO in `appliance-gb28181`).

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use appliance_tests::{Daemon, DaemonOptions, binary, wait_for};
use serde_json::Value;

const DEVICE: &str = "34020000001320000001";
const CHANNEL: &str = "34020000001310000001";

/// A running simulated camera and where its log goes.
struct Sim {
    child: Child,
    log: PathBuf,
}

impl Sim {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn daemon_options<'a>(dir: &'a Path, env: &[(&str, &str)]) -> DaemonOptions<'a> {
    let mut options = DaemonOptions::new(dir);
    options.env = vec![("APPLIANCE_SIP__PASSWORD".into(), "sim-secret".into())];
    options
        .env
        .extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    options
}

/// A daemon and one simulated camera registered to it.
fn daemon_with_camera(env: &[(&str, &str)], sim_args: &[&str]) -> (Daemon, Sim, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start_with(daemon_options(dir.path(), env));
    let log = dir.path().join("sim.log");
    let sim = Sim {
        child: Command::new(binary("applianced"))
            .args(["sim-device", "--platform", &daemon.sip_addr.to_string()])
            .args(["--password", "sim-secret", "--duration", "60s"])
            .args(sim_args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
        log,
    };
    let online = wait_for(Duration::from_secs(10), || {
        daemon.get(&format!("/api/v1/devices/{DEVICE}")).1["online"] == true
    });
    assert!(online, "the camera did not register:\n{}", daemon.log());
    (daemon, sim, dir)
}

fn start(daemon: &Daemon, body: &str) -> Value {
    let (status, session) = daemon.post(
        &format!("/api/v1/devices/{DEVICE}/channels/{CHANNEL}/sessions"),
        body,
    );
    assert_eq!(status, 201, "{body} → {session}\n{}", daemon.log());
    session
}

/// Waits until the session has received at least `frames` frames; returns its last view.
fn receives(daemon: &Daemon, id: &str, frames: u64) -> Value {
    let mut session = Value::Null;
    let arrived = wait_for(Duration::from_secs(15), || {
        session = daemon.get(&format!("/api/v1/sessions/{id}")).1;
        session["received"]["frames"].as_u64().unwrap_or(0) >= frames
    });
    assert!(arrived, "no frames on {id}: {session}\n{}", daemon.log());
    session
}

/// Waits until the platform holds no SSRC (the gauge follows the one-second clock).
fn ssrcs_released(daemon: &Daemon) {
    let released = wait_for(Duration::from_secs(5), || {
        metric(daemon, "appliance_sip_ssrcs_in_use") == 0.0
    });
    assert!(released, "SSRCs still held:\n{}", daemon.log());
}

fn metric(daemon: &Daemon, name: &str) -> f64 {
    let (_, text) = daemon.get_text("/metrics");
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no metric {name} in\n{text}"))
}

#[test]
fn live_over_udp_and_tcp_arrives_with_the_agreed_ssrc_and_bye_releases_it() {
    let (daemon, _sim, _dir) = daemon_with_camera(&[], &[]);
    for transport in ["udp", "tcp_passive", "tcp_active"] {
        let session = start(
            &daemon,
            &format!(r#"{{"kind":"live","transport":"{transport}"}}"#),
        );
        let id = session["id"].as_str().unwrap().to_string();
        assert_eq!(id.len(), 10, "{session}");
        assert!(id.starts_with('0'), "live SSRCs start with 0: {session}");
        assert_eq!(
            &id[1..6],
            &DEVICE[3..8],
            "SSRC carries the domain: {session}"
        );
        assert_eq!(session["state"], "established");
        assert_eq!(session["endpoint"]["transport"], transport);

        let session = receives(&daemon, &id, 10);
        let received = &session["received"];
        assert!(received["keyframes"].as_u64().unwrap() >= 1, "{session}");
        assert_eq!(received["codec"], "H264", "{session}");
        assert_eq!(received["wrong_ssrc"], 0, "{session}");
        assert_eq!(received["lost"], 0, "loopback loses nothing: {session}");

        if transport == "udp" {
            // RTP with another SSRC on the session's port is counted and kept out.
            let port = session["endpoint"]["port"].as_u64().unwrap() as u16;
            let mut stray = vec![0x80, 96, 0, 1, 0, 0, 0, 0];
            stray.extend_from_slice(&0x1234_5678u32.to_be_bytes());
            stray.extend_from_slice(&[0u8; 100]);
            UdpSocket::bind("127.0.0.1:0")
                .unwrap()
                .send_to(&stray, ("127.0.0.1", port))
                .unwrap();
            let counted = wait_for(Duration::from_secs(5), || {
                daemon.get(&format!("/api/v1/sessions/{id}")).1["received"]["wrong_ssrc"] == 1
            });
            assert!(counted, "a stray SSRC is counted");
        }

        let (status, body) = daemon.delete(&format!("/api/v1/sessions/{id}"));
        assert_eq!(status, 204, "{body}");
        assert_eq!(daemon.get(&format!("/api/v1/sessions/{id}")).0, 404);
        assert_eq!(
            daemon.get("/api/v1/sessions").1["items"],
            serde_json::json!([])
        );
        assert_eq!(metric(&daemon, "appliance_media_endpoints_open"), 0.0);
        ssrcs_released(&daemon);
    }
    assert!(
        metric(&daemon, "appliance_media_rtp_packets_total") > 30.0,
        "packets are counted"
    );
}

#[test]
fn a_playback_is_paused_resumed_and_ends_with_the_recording() {
    let (daemon, _sim, _dir) = daemon_with_camera(&[], &["--playback-length", "6s"]);
    let session = start(
        &daemon,
        r#"{"kind":"playback","start":"2026-11-24T08:00:00Z","end":"2026-11-24T09:00:00Z"}"#,
    );
    let id = session["id"].as_str().unwrap().to_string();
    assert!(
        id.starts_with('1'),
        "playback SSRCs start with 1: {session}"
    );
    assert_eq!(session["start"], "2026-11-24T08:00:00.000Z");
    receives(&daemon, &id, 5);

    let control = |body: &str| daemon.post(&format!("/api/v1/sessions/{id}/control"), body);
    assert_eq!(control(r#"{"action":"pause"}"#).0, 202);
    std::thread::sleep(Duration::from_millis(700));
    let frames = |daemon: &Daemon| {
        daemon.get(&format!("/api/v1/sessions/{id}")).1["received"]["frames"]
            .as_u64()
            .unwrap()
    };
    let paused_at = frames(&daemon);
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(frames(&daemon), paused_at, "nothing arrives while paused");
    assert_eq!(control(r#"{"action":"resume"}"#).0, 202);
    receives(&daemon, &id, paused_at + 5);
    assert_eq!(control(r#"{"action":"speed","speed":2}"#).0, 202);
    assert_eq!(control(r#"{"action":"seek","position_s":120}"#).0, 202);
    let (status, body) = control(r#"{"action":"speed","speed":3}"#);
    assert_eq!(status, 400, "{body}");
    let (status, body) = control(r#"{"action":"rewind"}"#);
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("rewind")
    );

    // The simulated recording ends: MediaStatus 121, the platform hangs up.
    let ended = wait_for(Duration::from_secs(15), || {
        daemon.get(&format!("/api/v1/sessions/{id}")).0 == 404
    });
    assert!(ended, "the playback did not end:\n{}", daemon.log());
    assert_eq!(metric(&daemon, "appliance_media_endpoints_open"), 0.0);
    ssrcs_released(&daemon);
}

#[test]
fn sessions_are_refused_with_reasons() {
    let (daemon, _sim, _dir) = daemon_with_camera(&[], &[]);
    let path = format!("/api/v1/devices/{DEVICE}/channels/{CHANNEL}/sessions");
    for (body, status, says) in [
        (r#"{"kind":"playback"}"#, 400, "`start`"),
        (
            r#"{"kind":"playback","start":"2026-11-24T09:00:00Z","end":"2026-11-24T08:00:00Z"}"#,
            400,
            "`end`",
        ),
        (r#"{"kind":"live","transport":"sctp"}"#, 400, "sctp"),
        (
            r#"{"kind":"download","start":"2026-11-24T08:00:00Z","end":"2026-11-24T09:00:00Z","speed":99}"#,
            400,
            "`speed`",
        ),
        (r#"{"kind":"live""#, 400, "request body"),
    ] {
        let (got, answer) = daemon.post(&path, body);
        assert_eq!(got, status, "{body}: {answer}");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(message.contains(says), "{body}: {message}");
    }
    let (status, _) = daemon.post(
        "/api/v1/devices/34020000001320000099/channels/34020000001310000001/sessions",
        r#"{"kind":"live"}"#,
    );
    assert_eq!(status, 404);
    // Live video cannot be paused.
    let session = start(&daemon, r#"{"kind":"live"}"#);
    let id = session["id"].as_str().unwrap();
    let (status, body) = daemon.post(
        &format!("/api/v1/sessions/{id}/control"),
        r#"{"action":"pause"}"#,
    );
    assert_eq!(status, 409, "{body}");
    assert_eq!(daemon.delete(&format!("/api/v1/sessions/{id}")).0, 204);
    assert_eq!(daemon.delete(&format!("/api/v1/sessions/{id}")).0, 404);
}

#[test]
fn a_stream_that_stops_is_hung_up_and_its_ssrc_released() {
    let (daemon, mut sim, _dir) =
        daemon_with_camera(&[("APPLIANCE_MEDIA__STREAM_TIMEOUT", "2s")], &[]);
    let session = start(&daemon, r#"{"kind":"live"}"#);
    let id = session["id"].as_str().unwrap().to_string();
    receives(&daemon, &id, 5);
    // The camera dies mid-stream.
    sim.child.kill().unwrap();
    sim.child.wait().unwrap();
    let gone = wait_for(Duration::from_secs(10), || {
        daemon.get(&format!("/api/v1/sessions/{id}")).0 == 404
    });
    assert!(gone, "the dead stream was not hung up:\n{}", daemon.log());
    assert_eq!(metric(&daemon, "appliance_media_streams_gone_total"), 1.0);
    assert_eq!(metric(&daemon, "appliance_media_endpoints_open"), 0.0);
    ssrcs_released(&daemon);
}

#[test]
fn sessions_cut_off_by_a_daemon_crash_are_hung_up_by_the_next_start() {
    // The same SIP port before and after: the camera keeps talking to it.
    let port = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let env = [("APPLIANCE_SIP__LISTEN", listen.as_str())];
    let (daemon, sim, dir) = daemon_with_camera(&env, &[]);
    let session = start(&daemon, r#"{"kind":"live"}"#);
    let id = session["id"].as_str().unwrap().to_string();
    receives(&daemon, &id, 5);
    daemon.stop_with(nix::sys::signal::Signal::SIGKILL, Duration::from_secs(5));
    assert!(!sim.log().contains("session ended by BYE"));

    let daemon = Daemon::start_with(daemon_options(dir.path(), &env));
    let hung_up = wait_for(Duration::from_secs(10), || {
        sim.log().contains("session ended by BYE")
    });
    assert!(
        hung_up,
        "the camera still streams for a session nobody holds:\n{}\n{}",
        daemon.log(),
        sim.log()
    );
    assert!(
        daemon.log().contains("sessions_to_hang_up=1"),
        "{}",
        daemon.log()
    );
    assert_eq!(
        daemon.get("/api/v1/sessions").1["items"],
        serde_json::json!([])
    );
    // Hung up once: a second restart finds nothing left to hang up.
    daemon.stop_with(nix::sys::signal::Signal::SIGTERM, Duration::from_secs(5));
    let daemon = Daemon::start_with(daemon_options(dir.path(), &env));
    assert!(
        daemon.log().contains("sessions_to_hang_up=0"),
        "{}",
        daemon.log()
    );
}
