//! The uplink end to end: `applianced` drains its outbox to a real MQTT broker (mosquitto) while
//! a simulated camera raises alarms; a persistent QoS 1 subscriber (`mosquitto_sub`) plays the
//! cloud. Checks that every stored event arrives, in commit order, across a broker outage and a
//! SIGKILL of the daemon mid-drain, duplicates only with the same event id; and that bad
//! credentials show in health without a crash loop.
//!
//! With Kafka (tansu) as a second upstream, both get every event, Kafka keyed by camera.
//!
//! Cloud commands: a camera and a skill sent on the command topic are applied and acknowledged,
//! and the skill's events come back up; faces and plates are added the same way.
//!
//! Not covered here: TLS (tested in `appliance-uplink` with a generated CA against mosquitto;
//! tansu 0.6 ignores its TLS options), and the disk quota (retention counting undelivered events
//! and the sender's skipping of deleted ones are tested in their crates).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use appliance_tests::brokers::{BrokerOptions, Mosquitto, MqttSubscriber, Tansu, mqtt_publish};
use appliance_tests::{Daemon, DaemonOptions, binary, wait_for};
use nix::sys::signal::Signal;
use serde_json::Value;

const TOPIC: &str = "appliance/+/events";

struct Sim(Child);

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn daemon(dir: &Path, broker_port: u16, extra: &[(&str, &str)]) -> Daemon {
    let mut options = DaemonOptions::new(dir);
    options.env = vec![
        ("APPLIANCE_SIP__PASSWORD".into(), "sim-secret".into()),
        (
            "APPLIANCE_UPLINK__MQTT__URL".into(),
            format!("mqtt://127.0.0.1:{broker_port}"),
        ),
        ("APPLIANCE_UPLINK__DEVICE_ID".into(), "box-test".into()),
    ];
    options
        .env
        .extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Daemon::start_with(options)
}

/// A broker, the cloud subscribed to everything of box `box-test`, and the box in `dir/box`.
fn cloud_and_box(dir: &Path, extra: &[(&str, &str)]) -> (Mosquitto, MqttSubscriber, Daemon) {
    let broker = Mosquitto::start(BrokerOptions::default());
    let cloud = MqttSubscriber::start(broker.port, "appliance/box-test/+", &dir.join("cloud.txt"));
    let daemon = daemon(&dir.join("box"), broker.port, extra);
    (broker, cloud, daemon)
}

/// A camera raising an alarm every `every`.
fn camera(daemon: &Daemon, every: &str) -> Sim {
    Sim(Command::new(binary("applianced"))
        .args(["sim-device", "--platform", &daemon.sip_addr.to_string()])
        .args(["--password", "sim-secret", "--alarm-every", every])
        .args(["--duration", "60s"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap())
}

/// Every event the daemon holds, by id.
fn stored_ids(daemon: &Daemon) -> BTreeSet<String> {
    let (status, list) = daemon.get("/api/v1/events?limit=1000");
    assert_eq!(status, 200);
    assert!(list["next_cursor"].is_null(), "more than one page");
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect()
}

fn mqtt_status(daemon: &Daemon) -> Value {
    daemon.get("/api/v1/uplink").1["items"][0].clone()
}

/// How long a sender may take to try again after a broker came back: its backoff (full jitter)
/// is capped at 60 s, and a long outage reaches the cap.
const RECONNECT: Duration = Duration::from_secs(75);

/// Waits until the MQTT upstream has delivered everything committed so far.
fn drained(daemon: &Daemon) -> bool {
    wait_for(RECONNECT, || {
        let status = mqtt_status(daemon);
        status["connected"] == true && status["depth"] == 0
    })
}

/// The messages' (seq, event id), checking each is a v1 event message of this box.
fn received(subscriber: &MqttSubscriber) -> Vec<(u64, String)> {
    subscriber
        .messages()
        .into_iter()
        .map(|(topic, message)| {
            assert_eq!(topic, "appliance/box-test/events");
            assert_eq!(message["schema"], "appliance.event.v1", "{message}");
            assert_eq!(message["device_id"], "box-test");
            (
                message["seq"].as_u64().unwrap(),
                message["event"]["id"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Every stored event arrived; a sequence number always names the same event (duplicates
/// only with the same id); after each resend the sequence runs forward again.
fn assert_complete_and_ordered(daemon: &Daemon, subscriber: &MqttSubscriber) {
    // The broker acknowledged everything; give it a moment to hand the last ones to the cloud.
    let stored = stored_ids(daemon);
    wait_for(Duration::from_secs(5), || {
        let arrived: BTreeSet<String> =
            received(subscriber).into_iter().map(|(_, id)| id).collect();
        stored.is_subset(&arrived)
    });
    let messages = &received(subscriber);
    let mut by_seq = BTreeMap::new();
    for (seq, id) in messages {
        let previous = by_seq.insert(*seq, id.clone());
        assert!(
            previous.is_none_or(|p| &p == id),
            "seq {seq} carried two events"
        );
    }
    let arrived: BTreeSet<String> = by_seq.values().cloned().collect();
    let missing: Vec<_> = stored.difference(&arrived).collect();
    assert!(missing.is_empty(), "never arrived: {missing:?}");
    // In order: each event arrives for the first time after every event committed before it
    // (a resend repeats earlier sequence numbers, it never brings a new one out of order).
    let mut seen = BTreeSet::new();
    let mut newest: Option<u64> = None;
    for (seq, _) in messages {
        if seen.insert(*seq) {
            assert!(newest < Some(*seq), "seq {seq} arrived after {newest:?}");
            newest = Some(*seq);
        }
    }
}

#[test]
fn every_event_arrives_in_order_across_a_broker_outage() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Mosquitto::start(BrokerOptions::default());
    let port = broker.port;
    let out = dir.path().join("cloud.txt");
    let subscriber = MqttSubscriber::start(port, TOPIC, &out);
    let daemon = daemon(&dir.path().join("box"), port, &[]);
    let sim = camera(&daemon, "200ms");
    assert!(
        wait_for(Duration::from_secs(15), || received(&subscriber).len() >= 5),
        "nothing arrived:\n{}",
        daemon.log()
    );
    assert_eq!(mqtt_status(&daemon)["connected"], true);

    // The broker goes away while the camera keeps raising alarms.
    drop(subscriber);
    broker.stop();
    let during = stored_ids(&daemon).len();
    assert!(
        wait_for(Duration::from_secs(10), || {
            let status = mqtt_status(&daemon);
            status["connected"] == false && status["depth"].as_u64().unwrap() >= 5
        }),
        "no backlog while the broker is down: {}",
        mqtt_status(&daemon)
    );
    assert!(stored_ids(&daemon).len() > during, "capture goes on");
    let (_, health) = daemon.get("/api/v1/health");
    assert_eq!(health["subsystems"]["uplink"]["status"], "down", "{health}");
    assert_eq!(health["status"], "degraded", "{health}");

    // It returns: the backlog drains, in order, nothing missing.
    broker.restart();
    let subscriber = MqttSubscriber::start(port, TOPIC, &out);
    drop(sim);
    assert!(drained(&daemon), "{}", mqtt_status(&daemon));
    assert_complete_and_ordered(&daemon, &subscriber);
    let (_, health) = daemon.get("/api/v1/health");
    assert_eq!(health["subsystems"]["uplink"]["status"], "ok", "{health}");
    let (_, metrics) = daemon.get_text("/metrics");
    assert!(
        metrics.contains("appliance_uplink_delivered{upstream=\"mqtt\"}"),
        "{metrics}"
    );
}

#[test]
fn a_daemon_killed_mid_drain_resends_only_what_was_not_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    // The broker's port is fixed first; the broker itself comes only once a backlog exists.
    let mut broker = Mosquitto::start(BrokerOptions::default());
    broker.stop();
    let port = broker.port;
    let out = dir.path().join("cloud.txt");
    let box_dir = dir.path().join("box");
    // A backlog builds while there is no broker yet; one event per publish (each waits for its
    // PUBACK and a durable cursor) makes the drain long enough to be cut.
    let batch = [("APPLIANCE_UPLINK__BATCH", "1")];
    let first = daemon(&box_dir, port, &batch);
    let sim = camera(&first, "20ms");
    assert!(wait_for(Duration::from_secs(20), || {
        mqtt_status(&first)["depth"].as_u64().unwrap_or(0) >= 150
    }));
    drop(sim);
    broker.restart();
    let subscriber = MqttSubscriber::start(port, TOPIC, &out);
    let deadline = Instant::now() + RECONNECT;
    while received(&subscriber).is_empty() {
        assert!(Instant::now() < deadline, "nothing arrived");
        std::thread::sleep(Duration::from_millis(5));
    }
    first.stop_with(Signal::SIGKILL, Duration::from_secs(5));
    let before_restart = received(&subscriber).len();

    let second = daemon(&box_dir, port, &batch);
    assert!(drained(&second), "{}", mqtt_status(&second));
    assert_complete_and_ordered(&second, &subscriber);
    let messages = received(&subscriber);
    assert!(
        messages.len() > before_restart,
        "the restarted daemon went on"
    );
    let repeats = messages.len()
        - messages
            .iter()
            .map(|(s, _)| s)
            .collect::<BTreeSet<_>>()
            .len();
    // Only the batches in flight at the kill (acknowledged, perhaps, but the cursor not stored
    // past them) are sent again: the sender keeps at most 4 of these 1-event batches in flight.
    assert!(repeats <= 4, "{repeats} repeats");
}

#[test]
fn wrong_credentials_show_in_health_without_a_crash_loop() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(BrokerOptions {
        users: vec![("cloud".into(), "right".into())],
        ..BrokerOptions::default()
    });
    let port = broker.port;
    let daemon = daemon(
        &dir.path().join("box"),
        port,
        &[
            ("APPLIANCE_UPLINK__MQTT__USERNAME", "cloud"),
            ("APPLIANCE_UPLINK__MQTT__PASSWORD", "wrong"),
        ],
    );
    assert!(
        wait_for(Duration::from_secs(10), || {
            mqtt_status(&daemon)["last_error"].is_string()
        }),
        "{}",
        mqtt_status(&daemon)
    );
    let status = mqtt_status(&daemon);
    let error = status["last_error"].as_str().unwrap().to_lowercase();
    assert!(
        error.contains("not authorized") || error.contains("bad user name or password"),
        "{status}"
    );
    let (_, health) = daemon.get("/api/v1/health");
    assert_eq!(health["subsystems"]["uplink"]["status"], "down");
    assert_eq!(health["status"], "degraded");
    // Backing off, not hammering: a handful of attempts in a few seconds.
    std::thread::sleep(Duration::from_secs(3));
    let failures = mqtt_status(&daemon)["consecutive_failures"]
        .as_u64()
        .unwrap();
    assert!((1..=6).contains(&failures), "{failures} attempts");
    let (status, _) = daemon.get("/api/v1/health");
    assert_eq!(status, 200, "the daemon lives on");
}

#[test]
fn both_upstreams_get_every_event_kafka_keyed_by_camera() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(BrokerOptions::default());
    let port = broker.port;
    let subscriber = MqttSubscriber::start(port, TOPIC, &dir.path().join("cloud.txt"));
    let tansu = Tansu::start();
    let daemon = daemon(
        &dir.path().join("box"),
        port,
        &[
            ("APPLIANCE_UPLINK__KAFKA__BROKERS", tansu.brokers().as_str()),
            ("APPLIANCE_UPLINK__KAFKA__TOPIC", "box.events"),
        ],
    );
    let sim = camera(&daemon, "200ms");
    assert!(wait_for(Duration::from_secs(15), || stored_ids(&daemon)
        .len()
        >= 8));
    drop(sim);
    let all_drained = wait_for(Duration::from_secs(30), || {
        let (_, list) = daemon.get("/api/v1/uplink");
        let items = list["items"].as_array().unwrap().clone();
        items.len() == 2
            && items
                .iter()
                .all(|u| u["connected"] == true && u["depth"] == 0)
    });
    assert!(all_drained, "{}", daemon.get("/api/v1/uplink").1);
    let stored = stored_ids(&daemon);
    assert_complete_and_ordered(&daemon, &subscriber);
    let messages = tansu.read("box.events", stored.len());
    let mut per_camera: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut ids = BTreeSet::new();
    for (key, payload) in &messages {
        let message: Value = serde_json::from_slice(payload).unwrap();
        assert_eq!(message["schema"], "appliance.event.v1");
        assert_eq!(&message["event"]["camera_id"], key, "keyed by camera");
        per_camera
            .entry(key.clone())
            .or_default()
            .push(message["seq"].as_u64().unwrap());
        ids.insert(message["event"]["id"].as_str().unwrap().to_string());
    }
    assert_eq!(ids, stored, "Kafka has every stored event");
    for (camera, seqs) in per_camera {
        assert!(seqs.is_sorted(), "{camera} out of order: {seqs:?}");
    }
}

#[test]
fn telemetry_and_cloud_commands_share_the_mqtt_connection() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, cloud, daemon) = cloud_and_box(
        dir.path(),
        &[("APPLIANCE_UPLINK__TELEMETRY_INTERVAL", "5s")],
    );
    let port = broker.port;
    let _sim = camera(&daemon, "1h");
    let on = |topic: &'static str| {
        let cloud = &cloud;
        move || cloud.on(topic)
    };
    let telemetry = on("appliance/box-test/telemetry");
    let all_results = on("appliance/box-test/cmd_result");

    // Telemetry: at start and every 5 s; the second one sees the camera.
    assert!(
        wait_for(Duration::from_secs(15), || telemetry()
            .iter()
            .any(|t| t["cameras"]["online"] == 1)),
        "{:?}\n{}",
        telemetry(),
        daemon.log()
    );
    let snapshot = telemetry().pop().unwrap();
    assert_eq!(snapshot["schema"], "appliance.telemetry.v1");
    assert_eq!(snapshot["device_id"], "box-test");
    assert!(snapshot["uptime_s"].as_u64().unwrap() > 0, "{snapshot}");
    assert!(snapshot["memory"]["total_bytes"].as_u64().unwrap() > 0);
    assert!(
        snapshot["disk"]["free_bytes"].as_u64().is_some(),
        "{snapshot}"
    );
    assert_eq!(snapshot["uplinks"][0]["name"], "mqtt");
    let (_, uplink) = daemon.get("/api/v1/uplink");
    assert_eq!(
        uplink["media"]["queued"], 0,
        "alarms carry no media: {uplink}"
    );
    let (status, local) = daemon.get("/api/v1/telemetry");
    assert_eq!(status, 200);
    assert_eq!(local["schema"], "appliance.telemetry.v1");

    // Commands: each gets one result; a repeat gets the same one without running again.
    let send = |kind: &str, body: &str| {
        mqtt_publish(port, &format!("appliance/box-test/cmd/{kind}"), body);
    };
    let cmd = |id: &str, kind: &str, params: &str| {
        format!(r#"{{"schema":"appliance.cmd.v1","id":"{id}","type":"{kind}","params":{params}}}"#)
    };
    send("ping", &cmd("c1", "ping", "{}"));
    send(
        "device.catalog",
        &cmd(
            "c2",
            "device.catalog",
            r#"{"device_id":"34020000001320000001"}"#,
        ),
    );
    send(
        "device.control",
        &cmd(
            "c3",
            "device.control",
            r#"{"device_id":"34020000001320000001","command":"explode"}"#,
        ),
    );
    send(
        "ping",
        r#"{"schema":"appliance.cmd.v1","id":"c5","type":"ping","expires_at":"2020-01-01T00:00:00Z"}"#,
    );
    send("ping", "not json");
    send("ping", &cmd("c1", "ping", "{}"));
    assert!(
        wait_for(Duration::from_secs(10), || all_results().len() >= 6),
        "{:?}\n{}",
        all_results(),
        daemon.log()
    );
    let results = all_results();
    let by_id = |id: &str| -> Vec<&Value> { results.iter().filter(|r| r["id"] == id).collect() };
    assert_eq!(by_id("c1").len(), 2);
    assert_eq!(
        by_id("c1")[0],
        by_id("c1")[1],
        "the repeat gets the stored result"
    );
    assert_eq!(by_id("c1")[0]["status"], "ok");
    assert!(by_id("c1")[0]["result"]["version"].is_string());
    assert_eq!(by_id("c2")[0]["status"], "ok", "{results:?}");
    for (id, code) in [("c3", "bad_params"), ("c5", "expired")] {
        assert_eq!(by_id(id)[0]["status"], "rejected", "{id}: {results:?}");
        assert_eq!(by_id(id)[0]["code"], code, "{id}");
    }
    assert!(
        results
            .iter()
            .any(|r| r["id"].is_null() && r["code"] == "malformed"),
        "{results:?}"
    );

    // A reboot: its result goes out, then the daemon stops with the status on which its unit
    // reboots the box (76). The command sent again after the restart gets its stored result
    // and does not reboot again.
    let reboot = cmd("c4", "reboot", "{}");
    send("reboot", &reboot);
    let exit = daemon.wait_exit(Duration::from_secs(15));
    assert_eq!(exit.code(), Some(76));
    let answered = |count: usize| {
        let c4: Vec<Value> = all_results()
            .into_iter()
            .filter(|r| r["id"] == "c4")
            .collect();
        (c4.len() >= count).then_some(c4)
    };
    let c4 = answered(1).expect("the reboot's result left before the daemon stopped");
    assert_eq!(c4[0]["status"], "ok", "{c4:?}");
    assert_eq!(c4[0]["result"]["rebooting"], true);
    let daemon = self::daemon(&dir.path().join("box"), port, &[]);
    send("reboot", &reboot);
    assert!(wait_for(Duration::from_secs(10), || answered(2).is_some()));
    assert_eq!(
        answered(2).unwrap()[1],
        c4[0],
        "the stored result, repeated"
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(daemon.get("/api/v1/health").0, 200, "no second reboot");
}

#[test]
fn a_cloud_setting_is_checked_stored_and_in_force_after_the_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, cloud, daemon) = cloud_and_box(dir.path(), &[]);
    let port = broker.port;
    let on = |topic: &str| cloud.on(topic);
    let result = |id: &str| {
        let mut found = None;
        wait_for(Duration::from_secs(10), || {
            found = on("appliance/box-test/cmd_result")
                .into_iter()
                .find(|r| r["id"] == id);
            found.is_some()
        });
        found.unwrap_or_else(|| panic!("no result for {id}"))
    };
    let set = |id: &str, settings: &str| {
        let body = format!(
            r#"{{"schema":"appliance.cmd.v1","id":"{id}","type":"config.set","params":{{"settings":{settings}}}}}"#
        );
        mqtt_publish(port, "appliance/box-test/cmd/config.set", &body);
        result(id)
    };
    // Refused whole, nothing stored, no restart: a key the cloud may not change, a bad value.
    let listen = set("s1", r#"{"http.listen": "0.0.0.0:80", "uplink.batch": 10}"#);
    assert_eq!(
        (&listen["status"], &listen["code"]),
        (&"error".into(), &"invalid".into())
    );
    assert!(
        listen["message"].as_str().unwrap().contains("http.listen"),
        "{listen}"
    );
    let zero = set("s2", r#"{"uplink.batch": 0}"#);
    assert!(
        zero["message"]
            .as_str()
            .unwrap()
            .starts_with("setting uplink.batch"),
        "{zero}"
    );
    assert_eq!(daemon.get("/api/v1/health").0, 200, "still running");

    // Telemetry goes every minute by default; the cloud makes it every 5 s.
    let ok = set(
        "s3",
        r#"{"uplink.telemetry_interval": "5s", "retention.max_age": "2d"}"#,
    );
    assert_eq!(ok["status"], "ok", "{ok}");
    assert_eq!(ok["result"]["restart"], true);
    assert_eq!(ok["result"]["settings"]["uplink.telemetry_interval"], "5s");
    let exit = daemon.wait_exit(Duration::from_secs(15));
    assert_eq!(exit.code(), Some(75), "restarts to apply them");
    let telemetry_before = on("appliance/box-test/telemetry").len();
    let daemon = self::daemon(&dir.path().join("box"), port, &[]);
    assert!(
        wait_for(Duration::from_secs(20), || {
            on("appliance/box-test/telemetry").len() >= telemetry_before + 3
        }),
        "telemetry every 5 s after the restart\n{}",
        daemon.log()
    );
    assert!(daemon.log().contains("settings from the cloud applied"));
}

#[test]
fn a_skill_sent_as_a_cloud_command_is_applied_and_its_events_come_back_up() {
    use appliance_media::clip::Background;
    use appliance_tests::clips::{ClipPlan, make_clip, photo};
    use base64::Engine as _;

    let dir = tempfile::tempdir().unwrap();
    let (broker, cloud, daemon) = cloud_and_box(dir.path(), &[]);
    let port = broker.port;
    let person = photo("astronaut.png", Some((200, 200)));
    let clip = make_clip(
        dir.path(),
        "gate",
        &ClipPlan {
            width: 640,
            height: 360,
            fps: 10,
            seconds: 5.0,
            background: Background::Fill([90, 100, 90]),
            sprite: &person,
            path: &[(0.0, 20.0, 150.0), (3.0, 400.0, 150.0), (5.0, 400.0, 150.0)],
        },
    );
    let results = || cloud.on("appliance/box-test/cmd_result");
    let send = |id: &str, kind: &str, params: Value| {
        let body = serde_json::json!({
            "schema": "appliance.cmd.v1", "id": id, "type": kind, "params": params
        });
        mqtt_publish(
            port,
            &format!("appliance/box-test/cmd/{kind}"),
            &body.to_string(),
        );
    };
    let result = |id: &str| -> Value {
        let mut found = Value::Null;
        let arrived = wait_for(Duration::from_secs(30), || {
            match results().into_iter().find(|r| r["id"] == id) {
                Some(r) => {
                    found = r;
                    true
                }
                None => false,
            }
        });
        assert!(
            arrived,
            "no result for {id}: {:?}\n{}",
            results(),
            daemon.log()
        );
        found
    };
    // The cloud's subscriber must be in place before the box answers.
    assert!(drained(&daemon), "{}", daemon.log());

    send(
        "k1",
        "camera.set",
        serde_json::json!({
            "camera_id": "gate", "camera": {"source": clip.display().to_string()}
        }),
    );
    assert_eq!(result("k1")["status"], "ok", "{}", daemon.log());
    send(
        "k2",
        "skill.apply",
        serde_json::json!({
            "camera_id": "gate", "skill_id": "gate-intrusion",
            "config": {"skill": "intrusion", "model": "yolox_nano", "classes": ["person"],
                       "zones": [{"name": "gate", "polygon": [[0.5, 0], [1, 0], [1, 1], [0.5, 1]]}]}
        }),
    );
    let applied = result("k2");
    assert_eq!(applied["status"], "ok", "{applied}");
    assert_eq!(applied["result"]["skill_id"], "gate-intrusion");
    let (_, skill) = daemon.get("/api/v1/cameras/gate/skills/gate-intrusion");
    assert_eq!(skill["config"]["zones"][0]["name"], "gate", "{skill}");

    // The skill's event goes up like every event.
    let intrusion = || {
        cloud.messages().into_iter().any(|(topic, m)| {
            topic == "appliance/box-test/events" && m["event"]["type"] == "skill.intrusion"
        })
    };
    assert!(
        wait_for(Duration::from_secs(60), intrusion),
        "{}",
        daemon.log()
    );

    // Faces and plates; refusals name the field.
    // A 256×256 JPEG: the command goes through mosquitto_pub's command line.
    let mut jpeg = Vec::new();
    photo("astronaut.png", Some((256, 256)))
        .write_to(
            &mut std::io::Cursor::new(&mut jpeg),
            image::ImageFormat::Jpeg,
        )
        .unwrap();
    let photo_base64 = base64::engine::general_purpose::STANDARD.encode(jpeg);
    send(
        "k3",
        "face.add",
        serde_json::json!({
            "library": "staff", "person_id": "p1", "name": "Eileen", "photo_base64": photo_base64
        }),
    );
    let added = result("k3");
    assert_eq!(added["status"], "ok", "{added}");
    assert_eq!(added["result"]["enrolled"]["faces"], 1, "{added}");
    send(
        "k4",
        "plate.add",
        serde_json::json!({
            "list": "blocked", "kind": "deny", "entries": [{"plate": "京A·12345"}]
        }),
    );
    assert_eq!(result("k4")["status"], "ok");
    let (_, plates) = daemon.get("/api/v1/plates");
    assert_eq!(
        plates["items"][0]["entries"][0]["plate"], "京A·12345",
        "{plates}"
    );
    send(
        "k5",
        "plate.add",
        serde_json::json!({"list": "new", "entries": []}),
    );
    assert_eq!(result("k5")["code"], "invalid");
    send(
        "k6",
        "skill.apply",
        serde_json::json!({
            "camera_id": "gate", "config": {"skill": "crowd", "model": "yolox_nano",
            "classes": ["person"], "min_count": 0, "zones": []}
        }),
    );
    let refused = result("k6");
    assert_eq!(
        (refused["status"].as_str(), refused["code"].as_str()),
        (Some("error"), Some("invalid"))
    );
    assert!(
        refused["message"].as_str().unwrap().contains("min_count")
            || refused["message"].as_str().unwrap().contains("zones"),
        "{refused}"
    );
    send(
        "k7",
        "skill.apply",
        serde_json::json!({"camera_id": "gate"}),
    );
    assert_eq!(result("k7")["code"], "bad_params");
}
