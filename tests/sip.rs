//! GB28181 signalling against a real SIP peer: sipp (Debian's `sip-tester`) plays the camera,
//! the real `applianced` is the platform. Scenarios live in `tests/sipp/`.
//!
//! The device simulator (`applianced sim-device`) is tested here against the platform too.
//! Media sessions (INVITE, SSRC, RTP) are tested in `media.rs`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use appliance_tests::{Daemon, DaemonOptions, binary};
use serde_json::Value;

const DEVICE: &str = "34020000001320000001";

fn scenario(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("sipp")
        .join(name)
}

/// A free local UDP port for sipp (it cannot take port 0).
fn free_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs one sipp scenario once against the daemon; `transport` is `u1` (UDP) or `t1` (TCP).
fn sipp(name: &str, daemon: &Daemon, transport: &str) -> Output {
    Command::new("sipp")
        .arg("-sf")
        .arg(scenario(name))
        .arg("-oocsf")
        .arg(scenario("answer_requests.xml"))
        .args(["-m", "1", "-i", "127.0.0.1", "-t", transport, "-nostdin"])
        .args([
            "-timeout",
            "20s",
            "-timeout_error",
            "-max_recv_loops",
            "1000",
        ])
        .arg("-p")
        .arg(free_port().to_string())
        .arg(daemon.sip_addr.to_string())
        .output()
        .expect("sipp runs (just setup installs sip-tester)")
}

fn start_platform(dir: &std::path::Path) -> Daemon {
    let mut options = DaemonOptions::new(dir);
    options.env = vec![(
        "APPLIANCE_SIP__DEVICE_PASSWORDS".to_string(),
        format!("{{ \"{DEVICE}\" = \"cam-secret-1\" }}"),
    )];
    Daemon::start_with(options)
}

fn assert_passed(out: &Output, what: &str, daemon: &Daemon) {
    assert!(
        out.status.success(),
        "{what}: sipp failed ({:?})\nstdout:\n{}\nstderr:\n{}\ndaemon log:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        daemon.log()
    );
}

fn event_types(daemon: &Daemon, camera: &str) -> Vec<String> {
    let (_, list) = daemon.get(&format!("/api/v1/events?camera={camera}"));
    let mut types: Vec<String> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_string())
        .collect();
    types.reverse(); // oldest first
    types
}

#[test]
fn a_camera_registers_reports_its_catalog_keeps_alive_raises_an_alarm_and_unregisters() {
    for transport in ["u1", "t1"] {
        let dir = tempfile::tempdir().unwrap();
        let daemon = start_platform(dir.path());
        let out = sipp("device_lifecycle.xml", &daemon, transport);
        assert_passed(&out, transport, &daemon);

        let (status, device) = daemon.get(&format!("/api/v1/devices/{DEVICE}"));
        assert_eq!(status, 200, "{device}");
        assert_eq!(device["online"], false, "unregistered at the end");
        let expected_transport = if transport == "u1" { "udp" } else { "tcp" };
        assert_eq!(device["peer"]["transport"], expected_transport);
        let channels: Vec<(&str, bool)> = device["channels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| (c["name"].as_str().unwrap(), c["online"].as_bool().unwrap()))
            .collect();
        assert_eq!(channels, [("Gate", true), ("Car park", false)]);

        assert_eq!(
            event_types(&daemon, DEVICE),
            ["device.online", "alarm", "device.offline"],
            "{transport}"
        );
        let (_, alarms) = daemon.get(&format!("/api/v1/events?camera={DEVICE}&type=alarm"));
        let alarm = &alarms["items"][0];
        assert_eq!(alarm["severity"], "critical", "priority 1");
        assert_eq!(alarm["channel_id"], "34020000001310000001");
        assert_eq!(alarm["attributes"]["description"], "Perimeter");
        assert_eq!(alarm["attributes"]["device_time"], "2026-11-24T10:00:00");
    }
}

#[test]
fn a_wrong_password_is_refused_and_unknown_devices_cannot_register() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = start_platform(dir.path());
    // Device …0002 has no password of its own and the box has no default password.
    let out = sipp("wrong_password.xml", &daemon, "u1");
    assert_passed(&out, "unknown device", &daemon);
    let (status, _) = daemon.get("/api/v1/devices/34020000001320000002");
    assert_eq!(status, 404);

    // With a default password set, the wrong one is still refused.
    let dir = tempfile::tempdir().unwrap();
    let mut options = DaemonOptions::new(dir.path());
    options.env = vec![("APPLIANCE_SIP__PASSWORD".into(), "the-default".into())];
    let daemon = Daemon::start_with(options);
    let out = sipp("wrong_password.xml", &daemon, "u1");
    assert_passed(&out, "wrong password", &daemon);
    let (_, metrics) = daemon.get_text("/metrics");
    assert!(metrics.contains("kind=\"auth_failure\""), "{metrics}");
}

#[test]
fn registered_devices_survive_a_daemon_restart() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = start_platform(dir.path());
    let out = sipp("register_only.xml", &daemon, "u1");
    assert_passed(&out, "register", &daemon);
    let (_, before) = daemon.get(&format!("/api/v1/devices/{DEVICE}"));
    assert_eq!(before["online"], true);
    drop(daemon);

    // Existing platforms show every device offline after their own restart until the next
    // keepalive; this one keeps the registration and its expiry.
    let daemon = start_platform(dir.path());
    let (status, after) = daemon.get(&format!("/api/v1/devices/{DEVICE}"));
    assert_eq!(status, 200);
    assert_eq!(after["online"], true, "{after}");
    assert_eq!(after["expires_at_ms"], before["expires_at_ms"]);
    assert_eq!(after["peer"], before["peer"]);
    assert_eq!(
        event_types(&daemon, DEVICE),
        ["device.online"],
        "no offline/online flap"
    );
}

/// `applianced sim-device` against a running `applianced`.
fn simulate(daemon: &Daemon, transport: &str, extra: &[&str]) -> Output {
    Command::new(binary("applianced"))
        .args(["sim-device", "--platform", &daemon.sip_addr.to_string()])
        .args(["--transport", transport, "--password", "sim-secret"])
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn simulated_devices_register_report_split_catalogs_raise_alarms_and_leave() {
    for transport in ["udp", "tcp"] {
        let dir = tempfile::tempdir().unwrap();
        let mut options = DaemonOptions::new(dir.path());
        options.env = vec![("APPLIANCE_SIP__PASSWORD".into(), "sim-secret".into())];
        let daemon = Daemon::start_with(options);
        let out = simulate(
            &daemon,
            transport,
            &[
                "--count",
                "3",
                "--channels",
                "5",
                "--catalog-page",
                "2",
                "--keepalive",
                "1s",
                "--alarm-every",
                "1s",
                "--duration",
                "3s",
            ],
        );
        assert!(
            out.status.success(),
            "{transport}: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            daemon.log()
        );
        let (_, list) = daemon.get("/api/v1/devices");
        let devices = list["items"].as_array().unwrap();
        assert_eq!(devices.len(), 3, "{transport}: {list}");
        for device in devices {
            let id = device["id"].as_str().unwrap();
            assert_eq!(
                device["online"], false,
                "unregistered when the simulator stopped"
            );
            assert_eq!(
                device["info"]["manufacturer"], "applianced",
                "DeviceInfo answered"
            );
            let channels = device["channels"].as_array().unwrap();
            assert_eq!(
                channels.len(),
                5,
                "{transport} {id}: catalog assembled from 3 messages"
            );
            assert_eq!(channels[0]["name"], "通道1", "GB2312 names decoded");
            let types = event_types(&daemon, id);
            assert_eq!(types.first().map(String::as_str), Some("device.online"));
            assert_eq!(types.last().map(String::as_str), Some("device.offline"));
            assert!(types.iter().any(|t| t == "alarm"), "{types:?}");
        }
    }
}

#[test]
fn the_simulator_reports_a_refused_registration() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path()); // no default password: unknown devices are refused
    let out = simulate(&daemon, "udp", &["--duration", "1s"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("403"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn malformed_input_gets_an_error_or_silence_and_the_daemon_is_unharmed() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = start_platform(dir.path());
    let sip: SocketAddr = daemon.sip_addr;
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut buf = [0u8; 4096];
    // Not SIP at all, a truncated request, binary junk: silence.
    for junk in [
        &b"hello"[..],
        b"REGISTER sip:x SIP/2.0\r\nVia: SIP/2.0/UDP",
        &[0xff, 0x00, 0x13, 0x37],
    ] {
        udp.send_to(junk, sip).unwrap();
        assert!(udp.recv_from(&mut buf).is_err(), "no answer to junk");
    }
    // A MESSAGE whose body is not XML: 400 that says so.
    let bad_body = b"not <xml";
    let request = format!(
        "MESSAGE sip:34020000002000000001@3402000000 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKbad1\r\nFrom: <sip:{DEVICE}@3402000000>;tag=1\r\nTo: <sip:34020000002000000001@3402000000>\r\nCall-ID: bad-body\r\nCSeq: 1 MESSAGE\r\nContent-Type: Application/MANSCDP+xml\r\nMax-Forwards: 70\r\nContent-Length: {len}\r\n\r\n",
        port = udp.local_addr().unwrap().port(),
        len = bad_body.len()
    );
    let mut datagram = request.into_bytes();
    datagram.extend_from_slice(bad_body);
    udp.send_to(&datagram, sip).unwrap();
    // An answer is expected here: allow for a loaded CI machine.
    udp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let (n, _) = udp.recv_from(&mut buf).expect("an answer to a bad body");
    let answer = String::from_utf8_lossy(&buf[..n]);
    assert!(answer.starts_with("SIP/2.0 400"), "{answer}");
    assert!(answer.contains("MANSCDP"), "{answer}");

    // TCP: a huge Content-Length closes that connection only.
    let mut tcp = TcpStream::connect(sip).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    tcp.write_all(b"MESSAGE sip:x SIP/2.0\r\nContent-Length: 99999999999\r\n\r\n")
        .unwrap();
    let mut rest = Vec::new();
    let closed = tcp.read_to_end(&mut rest).is_ok();
    assert!(closed, "the connection with a bad frame is closed");

    // Still serving: a full registration works afterwards, and the API answers.
    let out = sipp("device_lifecycle.xml", &daemon, "u1");
    assert_passed(&out, "after malformed input", &daemon);
    let (_, metrics) = daemon.get_text("/metrics");
    assert!(metrics.contains("kind=\"malformed_message\""), "{metrics}");
    let (_, health): (u16, Value) = daemon.get("/api/v1/health");
    assert_eq!(health["subsystems"]["sip"]["status"], "ok");
}

#[test]
fn the_api_queries_and_controls_a_device_and_waits_for_its_answers() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = DaemonOptions::new(dir.path());
    options.env = vec![("APPLIANCE_SIP__PASSWORD".into(), "sim-secret".into())];
    let daemon = Daemon::start_with(options);
    let mut sim = Command::new(binary("applianced"))
        .args(["sim-device", "--platform", &daemon.sip_addr.to_string()])
        .args([
            "--password",
            "sim-secret",
            "--duration",
            "20s",
            "--catalog-page",
            "1",
        ])
        .stderr(std::fs::File::create(dir.path().join("sim.log")).unwrap())
        .spawn()
        .unwrap();
    let sim_log = || std::fs::read_to_string(dir.path().join("sim.log")).unwrap_or_default();
    let online = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        daemon.get(&format!("/api/v1/devices/{DEVICE}")).1["online"] == true
    });
    assert!(online, "{}", daemon.log());

    let (status, answer) = daemon.get(&format!("/api/v1/devices/{DEVICE}/status"));
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["answer"]["DeviceStatusResponse"]["online"], true);

    let channel = "34020000001310000001";
    let (status, answer) = daemon.get(&format!(
        "/api/v1/devices/{DEVICE}/records?channel={channel}&start=2026-11-24T00:00:00&end=2026-11-24T23:59:59"
    ));
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["complete"], true);
    let records = &answer["answer"]["RecordInfoResponse"]["items"];
    assert_eq!(records[0]["device_id"], channel);
    assert_eq!(records[0]["start_time"], "2026-11-24T00:00:00");

    let (status, answer) = daemon.get(&format!(
        "/api/v1/devices/{DEVICE}/presets?channel={channel}"
    ));
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer["answer"]["PresetQueryResponse"]["items"][1]["name"],
        "Car park"
    );

    let (status, body) = daemon.get(&format!(
        "/api/v1/devices/{DEVICE}/records?start=yesterday&end=2026-11-24T23:59:59"
    ));
    assert_eq!(status, 400);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("`start`"),
        "{body}"
    );
    let (status, body) = daemon.get(&format!(
        "/api/v1/devices/{DEVICE}/records?start=2026-11-24T00:00:00"
    ));
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("bad_parameter")),
        "{body}"
    );

    let config = format!("/api/v1/devices/{DEVICE}/config");
    let (status, answer) = daemon.get(&config);
    assert_eq!(status, 200, "{answer}");
    let basic = &answer["answer"]["ConfigDownloadResponse"]["basic"];
    assert_eq!(basic["name"], format!("sim {DEVICE}"), "{answer}");
    let (status, answer) = daemon.put(&config, r#"{"name": "Gate", "heartbeat_interval": 30}"#);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer["answer"]["ControlResponse"]["result"], "OK",
        "{answer}"
    );
    let (_, answer) = daemon.get(&config);
    let basic = &answer["answer"]["ConfigDownloadResponse"]["basic"];
    assert_eq!(
        (basic["name"].as_str(), basic["heartbeat_interval"].as_u64()),
        (Some("Gate"), Some(30)),
        "{answer}"
    );
    for (body, names) in [
        (r#"{"heartbeat_interval": 1}"#, "heartbeat_interval"),
        (r#"{}"#, "nothing to change"),
        (r#"{"colour": "red"}"#, "colour"),
    ] {
        let (status, answer) = daemon.put(&config, body);
        assert_eq!(status, 400, "{body}: {answer}");
        assert!(
            answer["error"]["message"].as_str().unwrap().contains(names),
            "{answer}"
        );
    }

    let ptz = format!("/api/v1/devices/{DEVICE}/ptz");
    let (status, _) = daemon.post(
        &ptz,
        &format!(r#"{{"channel": "{channel}", "action": "left", "speed": 64}}"#),
    );
    assert_eq!(status, 202);
    let (status, body) = daemon.post(&ptz, r#"{"action": "somersault"}"#);
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("bad_parameter")),
        "{body}"
    );
    let (status, body) = daemon.post(&ptz, r#"{"action": "preset_goto"}"#);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("`preset`"),
        "{status} {body}"
    );
    let control = format!("/api/v1/devices/{DEVICE}/control");
    for command in ["iframe", "guard_on", "alarm_reset"] {
        let (status, body) = daemon.post(&control, &format!(r#"{{"command": "{command}"}}"#));
        assert_eq!(status, 202, "{command}: {body}");
    }
    let (status, body) = daemon.post(&control, r#"{"command": "self_destruct"}"#);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("`command`"),
        "{status} {body}"
    );
    let (status, _) = daemon.get("/api/v1/devices/34020000001329999999/status");
    assert_eq!(status, 404);

    // The platform subscribes to the device's alarms; an alarm on demand (SIGUSR1 to the
    // simulator) then comes as a NOTIFY in that subscription and becomes an event.
    let subscribed = (0..50).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        sim_log()
            .lines()
            .any(|l| l.contains("subscribed") && l.contains("Alarm"))
    });
    assert!(subscribed, "{}", sim_log());
    assert!(!event_types(&daemon, DEVICE).contains(&"alarm".to_string()));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(sim.id() as i32),
        nix::sys::signal::Signal::SIGUSR1,
    )
    .unwrap();
    let alarmed = (0..50).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        event_types(&daemon, DEVICE).contains(&"alarm".to_string())
    });
    assert!(alarmed, "{}", daemon.log());
    assert!(sim_log().contains("alarm sent by NOTIFY"), "{}", sim_log());
    let _ = sim.kill();
    let _ = sim.wait();
}
