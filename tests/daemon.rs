//! End-to-end tests of the real `applianced` binary: configuration, lifecycle, systemd
//! notifications and the HTTP API, on ephemeral loopback ports with temporary data directories.

use std::io::Read;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use appliance_model::{EventSource, MediaKind, NewEvent, Severity, Timestamp};
use appliance_store::{EventStore, StoreOptions};
use appliance_tests::{Daemon, DaemonOptions, binary};
use nix::sys::signal::Signal;
use serde_json::{Value, json};

/// An hour ago: inside the default 30-day retention, which the daemon enforces at start.
fn t0() -> i64 {
    Timestamp::now().as_millis() - 3_600_000
}

/// Writes events into a store directory with the store library, as the daemon's producers would.
fn seed(dir: &Path, fill: impl FnOnce(&EventStore)) {
    let options = StoreOptions {
        dir: dir.to_path_buf(),
        cache_capacity: 8 << 20,
        max_commit_group: 64,
    };
    let store = EventStore::open(&options, Arc::default()).expect("store opens");
    fill(&store);
    store.close();
}

fn event(camera: &str, kind: &str, start_ms: i64) -> NewEvent {
    NewEvent {
        camera_id: camera.into(),
        channel_id: Some(format!("{camera}-ch1")),
        source: EventSource::Skill,
        kind: kind.into(),
        severity: Severity::Major,
        start_time: Some(Timestamp::from_millis(start_ms)),
        end_time: None,
        attributes: json!({"zone": "gate"}).as_object().unwrap().clone(),
        media: vec![],
    }
}

fn ids(list: &Value) -> Vec<String> {
    list["items"]
        .as_array()
        .expect("items array")
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn serves_health_on_an_ephemeral_port_and_records_its_start() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path());
    assert_ne!(daemon.addr.port(), 0);
    assert!(daemon.addr.ip().is_loopback());
    let (status, health) = daemon.get("/api/v1/health");
    assert_eq!(status, 200);
    assert_eq!(health["status"], "ok", "{health}");
    assert_eq!(health["subsystems"]["store"]["status"], "ok");
    assert_eq!(
        health["subsystems"]["http"]["details"]["listen"],
        daemon.addr.to_string()
    );
    let (_, list) = daemon.get("/api/v1/events?camera=appliance");
    assert_eq!(list["items"][0]["type"], "system.start");
    assert_eq!(list["items"][0]["source"], "system");
}

#[test]
fn lists_filters_and_pages_events() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = t0();
    seed(dir.path(), |store| {
        let events = (0..120)
            .map(|i| {
                let camera = if i % 3 == 0 {
                    "34020000001320000001"
                } else {
                    "34020000001320000002"
                };
                let kind = if i % 2 == 0 { "intrusion" } else { "loitering" };
                event(camera, kind, t0 + i * 1000)
            })
            .collect();
        store.append_many(events).wait().unwrap();
    });
    let daemon = Daemon::start(dir.path());

    // Pages over one camera: newest first, no gaps, no repeats, then no cursor.
    let mut seen = Vec::new();
    let mut path = "/api/v1/events?camera=34020000001320000001&limit=15".to_string();
    loop {
        let (status, page) = daemon.get(&path);
        assert_eq!(status, 200, "{page}");
        for item in page["items"].as_array().unwrap() {
            assert_eq!(item["camera_id"], "34020000001320000001");
            seen.push(
                item["start_time"]
                    .as_str()
                    .unwrap()
                    .parse::<Timestamp>()
                    .unwrap()
                    .as_millis(),
            );
        }
        match page["next_cursor"].as_str() {
            Some(cursor) => {
                path =
                    format!("/api/v1/events?camera=34020000001320000001&limit=15&cursor={cursor}")
            }
            None => break,
        }
    }
    let expected: Vec<i64> = (0..120)
        .rev()
        .filter(|i| i % 3 == 0)
        .map(|i| t0 + i * 1000)
        .collect();
    assert_eq!(seen, expected);

    // Type and time range (inclusive) together.
    let since = Timestamp::from_millis(t0 + 10_000);
    let until = Timestamp::from_millis(t0 + 20_000);
    let (_, page) = daemon.get(&format!(
        "/api/v1/events?type=intrusion&since={since}&until={until}"
    ));
    let times: Vec<String> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["start_time"].as_str().unwrap().to_string())
        .collect();
    let expected: Vec<String> = (10..=20)
        .rev()
        .filter(|i| i % 2 == 0)
        .map(|i| Timestamp::from_millis(t0 + i * 1000).to_string())
        .collect();
    assert_eq!(times, expected);

    // Epoch milliseconds work as times too.
    let (_, page) = daemon.get(&format!("/api/v1/events?since={}&limit=1000", t0 + 119_000));
    assert_eq!(
        page["items"].as_array().unwrap().len(),
        2,
        "the last seeded event and the start event"
    );
}

#[test]
fn bad_parameters_get_400_naming_the_parameter() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path());
    for (query, parameter) in [
        ("limit=0", "limit"),
        ("limit=5000", "limit"),
        ("limit=ten", "limit"),
        ("since=yesterday", "since"),
        ("until=2026-13-01t00:00:00Z", "until"),
        ("acked=maybe", "acked"),
        ("cursor=zz", "cursor"),
        ("colour=red", "colour"),
        ("camera=a&camera=b", "camera"),
        (
            "since=2026-01-02t00:00:00Z&until=2026-01-01t00:00:00Z",
            "until",
        ),
    ] {
        let (status, body) = daemon.get(&format!("/api/v1/events?{query}"));
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(body["error"]["code"], "bad_parameter", "{query}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(&format!("`{parameter}`")),
            "{query}: {message}"
        );
    }
    let (status, body) = daemon.get("/api/v1/events/not-an-id");
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("bad_parameter"))
    );
    let (status, body) = daemon.get("/api/v1/events/0000000000000001");
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
    let (status, body) = daemon.get("/api/v1/nothing-here");
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
    let (status, body) = daemon.post("/api/v1/events", "{}");
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (405, Some("method_not_allowed"))
    );
}

#[test]
fn fetches_an_event_its_media_and_acknowledges_it() {
    let dir = tempfile::tempdir().unwrap();
    let jpeg = b"\xff\xd8\xff\xe0 not really a jpeg".to_vec();
    let mut stored_id = String::new();
    let t0 = t0();
    seed(dir.path(), |store| {
        let snapshot = store
            .put_media(MediaKind::Snapshot, "image/jpeg", &jpeg)
            .unwrap();
        let mut e = event("cam-door", "intrusion", t0);
        e.media.push(snapshot);
        stored_id = store.append(e).wait().unwrap().id.to_string();
    });
    let daemon = Daemon::start(dir.path());

    let (status, event) = daemon.get(&format!("/api/v1/events/{stored_id}"));
    assert_eq!(status, 200);
    assert_eq!(event["camera_id"], "cam-door");
    assert_eq!(event["attributes"]["zone"], "gate");
    assert!(event.get("ack").is_none());

    let response = daemon
        .request("GET", &format!("/api/v1/events/{stored_id}/media/0"))
        .call()
        .unwrap();
    assert_eq!(response.header("content-type"), Some("image/jpeg"));
    let mut body = Vec::new();
    response.into_reader().read_to_end(&mut body).unwrap();
    assert_eq!(body, jpeg);
    let (status, _) = daemon.get_text(&format!("/api/v1/events/{stored_id}/media/1"));
    assert_eq!(status, 404);

    let (_, unacked) = daemon.get("/api/v1/events?acked=false&camera=cam-door");
    assert_eq!(ids(&unacked), [stored_id.clone()]);
    let (status, body) = daemon.post(&format!("/api/v1/events/{stored_id}/ack"), r#"{"by": 7}"#);
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("bad_body"))
    );
    let (status, acked) = daemon.post(
        &format!("/api/v1/events/{stored_id}/ack"),
        r#"{"by": "guard on duty"}"#,
    );
    assert_eq!(status, 200, "{acked}");
    assert_eq!(acked["ack"]["by"], "guard on duty");
    let (_, unacked) = daemon.get("/api/v1/events?acked=false&camera=cam-door");
    assert!(ids(&unacked).is_empty());
    let (_, acked_list) = daemon.get("/api/v1/events?acked=true");
    assert_eq!(ids(&acked_list), [stored_id.clone()]);
    let (status, _) = daemon.post("/api/v1/events/00000000000000ff/ack", "");
    assert_eq!(status, 404);

    // The acknowledgement is durable across a restart.
    let (status, _) = daemon.stop_with(Signal::SIGTERM, Duration::from_secs(10));
    assert!(status.success());
    let daemon = Daemon::start(dir.path());
    let (_, event) = daemon.get(&format!("/api/v1/events/{stored_id}"));
    assert_eq!(event["ack"]["by"], "guard on duty");
}

#[test]
fn sigterm_and_sigint_shut_down_cleanly_and_quickly() {
    for signal in [Signal::SIGTERM, Signal::SIGINT] {
        let dir = tempfile::tempdir().unwrap();
        let daemon = Daemon::start(dir.path());
        let (status, took) = daemon.stop_with(signal, Duration::from_secs(10));
        assert_eq!(status.code(), Some(0), "{signal}");
        assert!(took < Duration::from_secs(5), "{signal} took {took:?}");
        // The store was closed properly: it reopens and the start event is there.
        seed(dir.path(), |store| {
            assert!(store.verify().unwrap().problems.is_empty());
            assert_eq!(store.usage().unwrap().events, 1);
        });
    }
}

#[test]
fn notifies_systemd_ready_watchdog_and_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let data_dir = dir.path().join("data");
    let mut options = DaemonOptions::new(&data_dir);
    options.env = vec![("NOTIFY_SOCKET".into(), socket_path.display().to_string())];
    options.watchdog_usec = Some(200_000);
    let daemon = Daemon::start_with(options);
    let mut received = Vec::new();
    let mut buf = [0u8; 256];
    while !(received.iter().any(|m: &String| m.contains("READY=1"))
        && received.iter().filter(|m| m.contains("WATCHDOG=1")).count() >= 2)
    {
        let n = socket.recv(&mut buf).expect("a notification within 10 s");
        received.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    let ready_at = received.iter().position(|m| m.contains("READY=1")).unwrap();
    // READY only once the API answers: nothing is sent before the listener is up.
    assert_eq!(daemon.get("/api/v1/health").0, 200);
    assert!(
        ready_at
            <= received
                .iter()
                .position(|m| m.contains("WATCHDOG=1"))
                .unwrap()
                + 1
    );
    let (status, _) = daemon.stop_with(Signal::SIGTERM, Duration::from_secs(10));
    assert!(status.success());
    loop {
        let n = socket.recv(&mut buf).expect("STOPPING=1 after SIGTERM");
        if String::from_utf8_lossy(&buf[..n]).contains("STOPPING=1") {
            break;
        }
    }
}

#[test]
fn metrics_and_openapi_describe_the_running_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path());
    let (status, text) = daemon.get_text("/metrics");
    assert_eq!(status, 200);
    for name in [
        "appliance_store_commit_latency_seconds_bucket",
        "appliance_store_events_appended_total 1",
        "appliance_store_disk_bytes{part=\"records\"}",
        "appliance_store_events 1",
    ] {
        assert!(text.contains(name), "{name} missing from:\n{text}");
    }
    let (status, doc) = daemon.get("/api/v1/openapi.json");
    assert_eq!(status, 200);
    for path in [
        "/api/v1/health",
        "/api/v1/events",
        "/api/v1/events/{id}",
        "/api/v1/events/{id}/media/{n}",
        "/api/v1/events/{id}/ack",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} missing");
    }
    let params: Vec<&str> = doc["paths"]["/api/v1/events"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        params,
        [
            "camera", "type", "since", "until", "acked", "limit", "cursor"
        ]
    );
    assert!(doc["components"]["schemas"]["Event"].is_object());
}

/// `applianced check-config FILE`.
fn check_config(file: &Path) -> std::process::Output {
    Command::new(binary("applianced"))
        .arg("check-config")
        .arg(file)
        .output()
        .unwrap()
}

#[test]
fn check_config_accepts_valid_files_and_names_the_problem_in_bad_ones() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        "[http]\nlisten = \"0.0.0.0:8080\"\n[retention]\nmax_age = \"7d\"\n",
    )
    .unwrap();
    let status = check_config(&good).status;
    assert_eq!(status.code(), Some(0));

    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[http]\nlisten = \"0.0.0.0:8080\"\n\n[retention]\nmax_age = \"forever\"\n",
    )
    .unwrap();
    let out = check_config(&bad);
    assert_eq!(out.status.code(), Some(2));
    let message = String::from_utf8_lossy(&out.stderr);
    assert!(message.contains("bad.toml:5:"), "{message}");
    assert!(message.contains("retention.max_age"), "{message}");

    std::fs::write(&bad, "[htttp]\nlisten = \"0.0.0.0:8080\"\n").unwrap();
    let out = check_config(&bad);
    assert_eq!(out.status.code(), Some(2));
    let message = String::from_utf8_lossy(&out.stderr);
    assert!(
        message.contains("htttp") && message.contains(":1:"),
        "{message}"
    );

    // Environment overrides are checked too, and `run` refuses a bad configuration with exit 2.
    let out = Command::new(binary("applianced"))
        .args(["run", "--data-dir"])
        .arg(dir.path().join("data"))
        .env("APPLIANCE_STORE__CACHE_CAPACITY", "lots")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("APPLIANCE_STORE__CACHE_CAPACITY"));

    let out = Command::new(binary("applianced"))
        .arg("version")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("applianced "));
    // The printed defaults are themselves a valid configuration.
    let defaults = Command::new(binary("applianced"))
        .arg("default-config")
        .output()
        .unwrap();
    let printed = dir.path().join("defaults.toml");
    std::fs::write(&printed, defaults.stdout).unwrap();
    let status = check_config(&printed).status;
    assert_eq!(status.code(), Some(0));
}

#[test]
fn a_config_file_sets_the_listen_address_and_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("from-config");
    let config = dir.path().join("appliance.toml");
    std::fs::write(
        &config,
        format!(
            "[http]\nlisten = \"127.0.0.1:0\"\n[store]\ndata_dir = {:?}\n",
            data.display().to_string()
        ),
    )
    .unwrap();
    let mut options = DaemonOptions::new(&data);
    options.data_dir = None;
    options.config = Some(&config);
    let daemon = Daemon::start_with(options);
    assert_eq!(daemon.get("/api/v1/health").0, 200);
    assert!(
        data.join("records").is_dir(),
        "store created in the configured data dir"
    );
}
