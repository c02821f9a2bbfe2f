//! Skills end to end on real models and real photos: clips are made here from the photos in
//! `../shared/images` (a person walking through a zone, crossing a line, lingering; a face; a
//! car's plate), encoded as H.264 by GStreamer, and run through `applianced skill test` (the
//! dry run the installers use) and through a running daemon with the clip as a camera.
//!
//! Not covered here: hardware decoders and execution providers (Jetson, RK3588), RTSP cameras
//! (the frame source's own tests cover RTSP failure paths).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use appliance_media::clip::Background;
use appliance_tests::clips::{ClipPlan, make_clip, photo, shared_image};
use appliance_tests::{Daemon, binary, wait_for};
use serde_json::{Value, json};

const GREY: Background<'static> = Background::Fill([90, 100, 90]);

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn skill_test(skill: &Path, input: &Path, extra: &[&str]) -> Output {
    Command::new(binary("applianced"))
        .args(["skill", "test", "--json", "--skill"])
        .arg(skill)
        .arg("--input")
        .arg(input)
        .args(extra)
        .output()
        .expect("applianced runs")
}

/// The events of a successful dry run.
fn events(output: &Output) -> Vec<Value> {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "skill test failed: {stderr}");
    String::from_utf8(output.stdout.clone())
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).expect("one JSON object per line"))
        .collect()
}

/// A 640×360 clip of the astronaut photo (a person, 200×200) walking along `path`.
fn walking_person(dir: &Path, name: &str, seconds: f64, path: &[(f64, f64, f64)]) -> PathBuf {
    let person = photo("astronaut.png", Some((200, 200)));
    make_clip(
        dir,
        name,
        &ClipPlan {
            width: 640,
            height: 360,
            fps: 10,
            seconds,
            background: GREY,
            sprite: &person,
            path,
        },
    )
}

/// A 640×480 clip of a portrait photo (320×320) passing slowly, its face in view throughout.
fn passing_face(dir: &Path, photo_name: &str) -> PathBuf {
    let person = photo(photo_name, Some((320, 320)));
    make_clip(
        dir,
        photo_name,
        &ClipPlan {
            width: 640,
            height: 480,
            fps: 10,
            seconds: 4.0,
            background: GREY,
            sprite: &person,
            path: &[(0.0, 60.0, 80.0), (4.0, 260.0, 80.0)],
        },
    )
}

/// The newest event of `kind`, waited for (a camera analyses its clip within seconds).
fn first_event(daemon: &Daemon, kind: &str) -> Value {
    let mut event = Value::Null;
    let found = wait_for(Duration::from_secs(60), || {
        let (_, page) = daemon.get(&format!("/api/v1/events?type={kind}"));
        match page["items"].as_array().and_then(|items| items.first()) {
            Some(first) => {
                event = first.clone();
                true
            }
            None => false,
        }
    });
    assert!(found, "no {kind} event; log:\n{}", daemon.log());
    event
}

#[test]
fn intrusion_once_per_entry_into_the_zone() {
    let dir = tempfile::tempdir().unwrap();
    // The issue's minimal form: the right half of the image is the zone "gate".
    let skill = write(
        dir.path(),
        "intrusion.json",
        r#"{"skill":"intrusion","model":"yolox_nano","classes":["person"],"min_confidence":0.5,"min_dwell_s":0.5,"zones":[{"name":"gate","polygon":[[0.5,0],[1,0],[1,1],[0.5,1]]}]}"#,
    );
    // Left half, into the zone (feet at x ≈ 0.78), out again, in again once the default
    // 10 s cooldown has passed.
    let clip = walking_person(
        dir.path(),
        "entries",
        15.0,
        &[
            (0.0, 20.0, 150.0),
            (3.0, 400.0, 150.0),
            (5.0, 400.0, 150.0),
            (8.0, 20.0, 150.0),
            (10.0, 20.0, 150.0),
            (13.0, 400.0, 150.0),
            (15.0, 400.0, 150.0),
        ],
    );
    let events = events(&skill_test(&skill, &clip, &[]));
    assert_eq!(events.len(), 2, "one intrusion per entry: {events:#?}");
    for event in &events {
        assert_eq!(event["skill"], "intrusion");
        assert_eq!(event["type"], "intrusion");
        assert_eq!(event["class"], "person");
        assert_eq!(event["zone"], "gate");
        assert!(event["track_id"].is_u64(), "{event}");
        assert!(event["score"].as_f64().unwrap() > 0.5, "{event}");
    }
    let first = events[0]["start_pts_s"].as_f64().unwrap();
    let second = events[1]["start_pts_s"].as_f64().unwrap();
    // Feet cross x = 0.5 (sprite left edge at 220 px) at 2.1 s and again at 11.6 s.
    assert!((1.5..3.5).contains(&first), "first entry at {first}");
    assert!((11.0..13.0).contains(&second), "second entry at {second}");
}

#[test]
fn line_crossing_reports_the_direction() {
    let dir = tempfile::tempdir().unwrap();
    // A vertical line drawn bottom to top: walking along it, image-left is its left.
    let skill = write(
        dir.path(),
        "line.json",
        r#"{"skill":"line_crossing","model":"yolox_nano","classes":["person"],
            "cooldown_s":0,"lines":[{"name":"door","from":[0.5,1],"to":[0.5,0],"direction":"both"}]}"#,
    );
    let clip = walking_person(
        dir.path(),
        "crossings",
        10.0,
        &[
            (0.0, 20.0, 150.0),
            (4.0, 420.0, 150.0),
            (6.0, 420.0, 150.0),
            (10.0, 20.0, 150.0),
        ],
    );
    let crossings = events(&skill_test(&skill, &clip, &[]));
    let directions: Vec<&str> = crossings
        .iter()
        .map(|e| e["direction"].as_str().unwrap_or("?"))
        .collect();
    assert_eq!(
        directions,
        ["left_to_right", "right_to_left"],
        "{crossings:#?}"
    );
    assert!(crossings.iter().all(|e| e["line"] == "door"));

    // Only one way counts when the line says so.
    let one_way = write(
        dir.path(),
        "line-in.json",
        r#"{"skill":"line_crossing","model":"yolox_nano","classes":["person"],
            "cooldown_s":0,"lines":[{"name":"door","from":[0.5,1],"to":[0.5,0],"direction":"right_to_left"}]}"#,
    );
    let one_way = events(&skill_test(&one_way, &clip, &[]));
    assert_eq!(one_way.len(), 1, "{one_way:#?}");
    assert_eq!(one_way[0]["direction"], "right_to_left");
}

#[test]
fn loitering_fires_once_the_stay_is_longer_than_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let skill = write(
        dir.path(),
        "loiter.json",
        r#"{"skill":"loitering","model":"yolox_nano","classes":["person"],"max_dwell_s":4,
            "zones":[{"name":"atm","polygon":[[0.5,0],[1,0],[1,1],[0.5,1]]}]}"#,
    );
    // Walks in (feet in the zone from ~1.3 s), lingers until 10 s.
    let clip = walking_person(
        dir.path(),
        "linger",
        10.0,
        &[
            (0.0, 100.0, 150.0),
            (2.0, 400.0, 150.0),
            (10.0, 400.0, 150.0),
        ],
    );
    let events = events(&skill_test(&skill, &clip, &[]));
    assert_eq!(events.len(), 1, "{events:#?}");
    let event = &events[0];
    assert_eq!(event["type"], "loitering");
    let dwell = event["dwell_s"].as_f64().unwrap();
    assert!((4.0..6.0).contains(&dwell), "dwell {dwell}");
    let raised_at = event["pts_s"].as_f64().unwrap();
    let entered = event["start_pts_s"].as_f64().unwrap();
    assert!((5.0..8.0).contains(&raised_at) && entered < 2.5, "{event}");

    // A short visit (about 2 s in the zone) raises nothing.
    let passing = walking_person(
        dir.path(),
        "passing",
        5.0,
        &[
            (0.0, 100.0, 150.0),
            (2.0, 400.0, 150.0),
            (2.5, 400.0, 150.0),
            (4.5, 0.0, 150.0),
        ],
    );
    assert_eq!(events_of(&skill, &passing), 0);
}

fn events_of(skill: &Path, clip: &Path) -> usize {
    events(&skill_test(skill, clip, &[])).len()
}

#[test]
fn faces_are_matched_to_the_enrolled_person_and_not_another() {
    let dir = tempfile::tempdir().unwrap();
    let skill = write(
        dir.path(),
        "faces.json",
        r#"{"skill":"face_recognition","model":"centerface","classes":["face"],
            "library":"staff","min_confidence":0.5}"#,
    );
    let astronaut = shared_image("astronaut.png");
    let camera = shared_image("camera.png");
    let enrol = [
        "--face".to_string(),
        format!("astronaut={}", astronaut.display()),
        "--face".to_string(),
        format!("cameraman={}", camera.display()),
    ];
    let enrol: Vec<&str> = enrol.iter().map(String::as_str).collect();
    for (sprite, expected) in [("astronaut.png", "astronaut"), ("camera.png", "cameraman")] {
        let clip = passing_face(dir.path(), sprite);
        let events = events(&skill_test(&skill, &clip, &enrol));
        assert!(!events.is_empty(), "{expected}: no face recognised");
        for event in &events {
            assert_eq!(event["type"], "face_recognized", "{event}");
            assert_eq!(event["person_id"], expected, "{event}");
            assert!(event["similarity"].as_f64().unwrap() > 0.6, "{event}");
        }
        // One per track, not one per frame.
        assert_eq!(events.len(), 1, "{events:#?}");
    }
}

#[test]
fn plates_are_read_and_matched_against_the_lists() {
    let dir = tempfile::tempdir().unwrap();
    let skill = write(
        dir.path(),
        "plates.json",
        r#"{"skill":"plate_recognition","model":"ppocr_det","classes":["plate"],
            "lists":["blocked","residents"]}"#,
    );
    let lists = write(
        dir.path(),
        "lists.json",
        &json!([
            {"name": "residents", "kind": "allow", "entries": [{"plate": "KA 4521"}]},
            {"name": "blocked", "kind": "deny", "entries": [{"plate": "京A·12345", "note": "stolen"}]}
        ])
        .to_string(),
    );
    for (scene, plate, list) in [
        ("scene_plate_cn.png", "京A·12345", "blocked"),
        ("scene_plate_latin.png", "KA 4521", "residents"),
    ] {
        // The rendered car scene, still, for 3 s (a one-pixel sprite off the picture).
        let background = photo(scene, None);
        let nothing = image::RgbImage::new(1, 1);
        let clip = make_clip(
            dir.path(),
            scene,
            &ClipPlan {
                width: background.width(),
                height: background.height(),
                fps: 10,
                seconds: 3.0,
                background: Background::Image(background.as_raw()),
                sprite: &nothing,
                path: &[(0.0, -10.0, -10.0)],
            },
        );
        let lists_arg = lists.display().to_string();
        let events = events(&skill_test(&skill, &clip, &["--plates", &lists_arg]));
        assert_eq!(events.len(), 1, "{scene}: {events:#?}");
        assert_eq!(events[0]["type"], "plate_recognized");
        assert_eq!(events[0]["plate"], plate, "{scene}");
        assert_eq!(events[0]["list"], list, "{scene}");
    }
}

#[test]
fn a_bad_skill_is_refused_with_the_field_named() {
    let dir = tempfile::tempdir().unwrap();
    let clip = walking_person(dir.path(), "short", 1.0, &[(0.0, 0.0, 0.0)]);
    for (config, field) in [
        (
            r#"{"skill":"intrusion","model":"yolox_nano","classes":["person"],"zones":[{"name":"z","polygon":[[0,0],[1,0]]}]}"#,
            "zones[0].polygon",
        ),
        (
            r#"{"skill":"intrusion","model":"yolox_nano","classes":["person"],"min_confidence":2,"zones":[{"name":"z","polygon":[[0,0],[1,0],[1,1]]}]}"#,
            "min_confidence",
        ),
        (
            r#"{"skill":"teleport","model":"yolox_nano","classes":["person"]}"#,
            "teleport",
        ),
        (
            r#"{"skill":"intrusion","model":"no_such_model","classes":["person"],"zones":[{"name":"z","polygon":[[0,0],[1,0],[1,1]]}]}"#,
            "no_such_model",
        ),
    ] {
        let skill = write(dir.path(), "bad.json", config);
        let output = skill_test(&skill, &clip, &[]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(field), "{field} not named: {stderr}");
    }
}

#[test]
fn a_camera_with_a_skill_raises_events_with_annotated_snapshots() {
    let dir = tempfile::tempdir().unwrap();
    let clip = walking_person(
        dir.path(),
        "camera",
        6.0,
        &[(0.0, 20.0, 150.0), (3.0, 400.0, 150.0), (6.0, 400.0, 150.0)],
    );
    let data = dir.path().join("data");
    let daemon = Daemon::start(&data);

    let (status, body) = daemon.put(
        "/api/v1/cameras/gate-cam",
        &json!({"name": "Gate", "source": clip.display().to_string()}).to_string(),
    );
    assert_eq!(status, 200, "{body}");
    let (status, body) = daemon.post(
        "/api/v1/cameras/gate-cam/skills",
        r#"{"skill":"intrusion","model":"yolox_nano","classes":["person"],"min_dwell_s":0.5,"zones":[{"name":"gate","polygon":[[0.5,0],[1,0],[1,1],[0.5,1]]}]}"#,
    );
    assert_eq!(status, 201, "{body}");
    let skill_id = body["id"].as_str().unwrap().to_string();

    let event = first_event(&daemon, "skill.intrusion");
    assert_eq!(event["camera_id"], "gate-cam");
    assert_eq!(event["source"], "skill");
    assert_eq!(event["attributes"]["zone"], "gate");
    assert_eq!(event["attributes"]["skill_id"], skill_id.as_str());
    assert_eq!(event["attributes"]["model"], "yolox_nano");
    assert!(event["attributes"]["clip"].is_object(), "{event}");
    let id = event["id"].as_str().unwrap();
    let (status, jpeg) = daemon.get_bytes(&format!("/api/v1/events/{id}/media/0"));
    assert_eq!(status, 200);
    let snapshot = image::load_from_memory(&jpeg)
        .expect("the snapshot is an image")
        .to_rgb8();
    assert_eq!(snapshot.dimensions(), (640, 360));

    let (_, camera) = daemon.get("/api/v1/cameras/gate-cam");
    assert_eq!(camera["status"]["state"], "running", "{camera}");
    assert!(
        camera["status"]["inferred"].as_u64().unwrap() > 0,
        "{camera}"
    );
    assert!(
        camera["status"]["events"].as_u64().unwrap() >= 1,
        "{camera}"
    );

    // Changes apply live: a disabled skill stops the camera's analysis, deletion is final.
    let (status, _) = daemon.delete(&format!("/api/v1/cameras/gate-cam/skills/{skill_id}"));
    assert_eq!(status, 204);
    let (_, camera) = daemon.get("/api/v1/cameras/gate-cam");
    assert_eq!(camera["status"]["state"], "idle", "{camera}");
    let (status, schema) = daemon.get("/api/v1/skills/schema");
    assert_eq!(status, 200);
    assert!(schema.to_string().contains("line_crossing"));
}

#[test]
fn faces_enrolled_through_the_api_are_recognised_by_a_camera() {
    let dir = tempfile::tempdir().unwrap();
    let clip = passing_face(dir.path(), "astronaut.png");
    let daemon = Daemon::start(&dir.path().join("data"));
    let photo_bytes = |name: &str| std::fs::read(shared_image(name)).unwrap();

    // Enrolment: a library, two people, a photo each; the API refuses what is not a face.
    let (status, body) = daemon.put("/api/v1/faces/staff", r#"{"match_threshold":0.6}"#);
    assert_eq!(status, 200, "{body}");
    for (id, name) in [("p1", "Eileen"), ("p2", "Cameraman")] {
        let (status, body) = daemon.put(
            &format!("/api/v1/faces/staff/people/{id}"),
            &json!({ "name": name }).to_string(),
        );
        assert_eq!(status, 200, "{body}");
    }
    let (status, body) = daemon.post_bytes(
        "/api/v1/faces/staff/people/p1/photos",
        "image/png",
        &photo_bytes("astronaut.png"),
    );
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["faces"], 1);
    let (status, _) = daemon.post_bytes(
        "/api/v1/faces/staff/people/p2/photos",
        "image/png",
        &photo_bytes("camera.png"),
    );
    assert_eq!(status, 201);
    let (status, body) = daemon.post_bytes(
        "/api/v1/faces/staff/people/p2/photos",
        "image/png",
        &photo_bytes("coffee.png"),
    );
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (422, Some("no_face")),
        "{body}"
    );
    let (status, body) = daemon.post_bytes(
        "/api/v1/faces/staff/people/p2/photos",
        "image/png",
        b"not a photo",
    );
    assert_eq!(status, 400, "{body}");
    let (_, library) = daemon.get("/api/v1/faces/staff");
    assert_eq!(
        library["people"][0]["photos"].as_array().unwrap().len(),
        1,
        "{library}"
    );

    // Plate lists are checked as they are stored.
    let (status, body) = daemon.put(
        "/api/v1/plates/blocked",
        r#"{"kind":"deny","entries":[{"plate":"京A·12345","valid_from":20,"valid_until":10}]}"#,
    );
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("entries[0].valid_until"),
        "{body}"
    );
    let (status, _) = daemon.put(
        "/api/v1/plates/blocked",
        r#"{"kind":"deny","entries":[{"plate":"京A·12345"}]}"#,
    );
    assert_eq!(status, 200);

    // A camera with a face skill raises the enrolled person.
    let (status, _) = daemon.put(
        "/api/v1/cameras/door",
        &json!({ "source": clip.display().to_string() }).to_string(),
    );
    assert_eq!(status, 200);
    let (status, body) = daemon.post(
        "/api/v1/cameras/door/skills",
        r#"{"skill":"face_recognition","model":"centerface","classes":["face"],"library":"staff"}"#,
    );
    assert_eq!(status, 201, "{body}");
    let event = first_event(&daemon, "skill.face_recognized");
    assert_eq!(event["attributes"]["person_id"], "p1", "{event}");
    assert_eq!(event["attributes"]["person_name"], "Eileen", "{event}");

    // Invalid skills are refused with the field named, and nothing is stored.
    let (status, body) = daemon.post(
        "/api/v1/cameras/door/skills",
        r#"{"skill":"crowd","model":"yolox_nano","classes":["person"],"min_count":0,"zones":[{"name":"hall","polygon":[[0,0],[1,0],[1,1]]}]}"#,
    );
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("min_count"),
        "{body}"
    );
    let (status, body) = daemon.put("/api/v1/cameras/door", r#"{"source": 5}"#);
    assert_eq!(status, 400, "{body}");
    let (_, skills) = daemon.get("/api/v1/cameras/door/skills");
    assert_eq!(skills["items"].as_array().unwrap().len(), 1, "{skills}");
}

/// A `multipart/form-data` body of named parts.
fn multipart(parts: &[(&str, &[u8])]) -> (String, Vec<u8>) {
    let boundary = "appliance-test-boundary-7d1f";
    let mut body = Vec::new();
    for (name, bytes) in parts {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{name}\"\r\n\
                 Content-Type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

#[test]
fn models_are_installed_only_with_their_checksum() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&dir.path().join("data"));
    let bundled = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.local/models/yolox_nano");
    let model = std::fs::read(bundled.join("yolox_nano.onnx")).unwrap();
    let manifest = std::fs::read_to_string(bundled.join("manifest.toml"))
        .unwrap()
        .replace("name = \"yolox_nano\"", "name = \"people_v2\"");

    let mut truncated = model.clone();
    truncated.truncate(model.len() / 2);
    let (content_type, body) =
        multipart(&[("manifest", manifest.as_bytes()), ("model", &truncated)]);
    let (status, answer) = daemon.post_bytes("/api/v1/models", &content_type, &body);
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("sha256"),
        "{answer}"
    );

    let (content_type, body) = multipart(&[("manifest", manifest.as_bytes()), ("model", &model)]);
    let (status, answer) = daemon.post_bytes("/api/v1/models", &content_type, &body);
    assert_eq!(status, 201, "{answer}");
    assert_eq!(answer["origin"], "installed");
    let (_, models) = daemon.get("/api/v1/models");
    let names: Vec<&str> = models["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"people_v2") && names.contains(&"yolox_nano"),
        "{models}"
    );
    assert!(models.get("runtime_error").is_none(), "{models}");

    let (status, _) = daemon.delete("/api/v1/models/people_v2");
    assert_eq!(status, 204);
    let (status, _) = daemon.delete("/api/v1/models/yolox_nano");
    assert_eq!(status, 409, "bundled models stay");
}
