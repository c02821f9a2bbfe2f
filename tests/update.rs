//! Firmware updates through the daemon: `applianced` against the real `rauc service` (Debian's
//! RAUC 1.8 on a private D-Bus, file-backed A/B slots, see `appliance_tests::rauc`): status,
//! installing an uploaded bundle with its outcome as an event, a refused bundle, RAUC absent,
//! and `applianced mark-good`.
//!
//! Not covered here: a `verity` bundle installed end to end (this kernel has no device-mapper,
//! so the installation uses a `plain` bundle, which takes the same path after the mount; the
//! firmware's `system.conf` accepts verity only), installing from a URL (RAUC streams over
//! nbd), and the reboot into the new slot.

use std::process::Command;
use std::time::Duration;

use appliance_tests::rauc::{
    BundleSpec, COMPATIBLE, Pki, RaucSystem, image, missing_tool, mountable_format,
};
use appliance_tests::{Daemon, DaemonOptions, binary, wait_for};
use serde_json::Value;

fn rauc_or_skip() -> Option<RaucSystem> {
    match missing_tool() {
        Some(tool) => {
            eprintln!("skipped: `{tool}` is not installed");
            None
        }
        None => Some(RaucSystem::start()),
    }
}

fn daemon_on(data_dir: &std::path::Path, rauc_bus: &str) -> Daemon {
    let mut options = DaemonOptions::new(data_dir);
    options.env = vec![("APPLIANCE_UPDATE__RAUC_BUS".into(), rauc_bus.into())];
    Daemon::start_with(options)
}

/// `GET /api/v1/system/update` once RAUC answers (it starts beside the daemon).
fn wait_available(daemon: &Daemon) -> Value {
    let mut last = Value::Null;
    let up = wait_for(Duration::from_secs(20), || {
        last = daemon.get("/api/v1/system/update").1;
        last["available"] == true
    });
    assert!(up, "RAUC never answered through the daemon: {last}");
    last
}

fn wait_job_end(daemon: &Daemon) -> Value {
    let mut last = Value::Null;
    let ended = wait_for(Duration::from_secs(30), || {
        last = daemon.get("/api/v1/system/update").1;
        last["job"]["state"] != "running"
    });
    assert!(ended, "the installation never ended: {last}");
    last
}

fn upload(daemon: &Daemon, bundle: &str) -> (u16, Value) {
    daemon.post_bytes(
        "/api/v1/system/update",
        "application/octet-stream",
        &std::fs::read(bundle).unwrap(),
    )
}

fn event_types(daemon: &Daemon) -> Vec<String> {
    let (_, events) = daemon.get("/api/v1/events");
    events["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn an_uploaded_bundle_is_installed_into_the_free_slot() {
    let Some(rauc) = rauc_or_skip() else { return };
    let Some(format) = mountable_format() else {
        eprintln!("not covered: this machine cannot loop-mount a bundle (root, loop, squashfs)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let daemon = daemon_on(dir.path(), rauc.address());
    let status = wait_available(&daemon);
    assert_eq!(status["rauc"]["compatible"], COMPATIBLE);
    assert_eq!(status["rauc"]["primary"], "rootfs.0");
    let booted: Vec<&Value> = status["rauc"]["slots"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["state"] == "booted")
        .collect();
    assert_eq!(booted.len(), 1, "{status}");
    assert_eq!(booted[0]["name"], "rootfs.0");

    let payload = image(7);
    let spec = BundleSpec {
        format,
        compatible: COMPATIBLE,
        version: "2.0.0",
        image: &payload,
    };
    let bundle = rauc.bundle("good", &spec, rauc.pki());
    // The bootloader script holds RAUC mid-installation until released.
    rauc.hold();
    let (status, job) = upload(&daemon, &bundle);
    assert_eq!(status, 202, "{job}");
    assert_eq!(
        (job["state"].as_str(), job["source"].as_str()),
        (Some("running"), Some("upload"))
    );
    assert!(wait_for(Duration::from_secs(20), || rauc.held()));
    // A second upload while the first installs is refused before its body is kept.
    let (status, busy) = upload(&daemon, &bundle);
    assert_eq!(
        (status, busy["error"]["code"].as_str()),
        (409, Some("busy"))
    );
    let (_, during) = daemon.get("/api/v1/system/update");
    assert_eq!(during["job"]["state"], "running", "{during}");
    rauc.release();

    let done = wait_job_end(&daemon);
    assert_eq!(
        done["job"]["state"],
        "installed",
        "{done}\n{}",
        rauc.rauc_log()
    );
    assert_eq!(done["job"]["progress"]["percent"], 100);
    assert_eq!(
        done["rauc"]["primary"], "rootfs.1",
        "RAUC switched the bootloader"
    );
    let slot_b = done["rauc"]["slots"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "rootfs.1")
        .unwrap()
        .clone();
    assert_eq!(slot_b["bundle_version"], "2.0.0");
    let written = std::fs::read(rauc.path("slotB")).unwrap();
    assert_eq!(
        &written[..payload.len()],
        &payload[..],
        "slot B holds the image"
    );
    let uploads = std::fs::read_dir(dir.path().join("updates"))
        .unwrap()
        .count();
    assert_eq!(
        uploads, 0,
        "each upload is removed once RAUC is done with it"
    );
    assert!(event_types(&daemon).contains(&"system.update.installed".to_owned()));
}

#[test]
fn a_bundle_rauc_refuses_ends_failed_with_its_reason() {
    let Some(rauc) = rauc_or_skip() else { return };
    let dir = tempfile::tempdir().unwrap();
    let daemon = daemon_on(dir.path(), rauc.address());
    wait_available(&daemon);
    // Signed by a CA the box does not trust.
    let stranger = Pki::new(rauc.dir(), "stranger");
    let payload = image(9);
    let spec = BundleSpec {
        format: "verity",
        compatible: COMPATIBLE,
        version: "6.6.6",
        image: &payload,
    };
    let bundle = rauc.bundle("stranger", &spec, &stranger);
    let (status, job) = upload(&daemon, &bundle);
    assert_eq!(status, 202, "{job}");
    let done = wait_job_end(&daemon);
    assert_eq!(done["job"]["state"], "failed", "{done}");
    let error = done["job"]["error"].as_str().unwrap();
    assert!(error.contains("signature verification failed"), "{error}");
    assert_eq!(done["rauc"]["primary"], "rootfs.0", "nothing switched");
    let written = std::fs::read(rauc.path("slotB")).unwrap();
    assert!(written.iter().all(|b| *b == 0), "slot B untouched");
    assert!(event_types(&daemon).contains(&"system.update.failed".to_owned()));

    // Bodies the API refuses before RAUC sees anything.
    let (status, body) = daemon.post("/api/v1/system/update", r#"{"url": "ftp://x/b.raucb"}"#);
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("bad_body"))
    );
    let (status, body) = daemon.post_bytes("/api/v1/system/update", "text/plain", b"x");
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (415, Some("bad_content_type"))
    );
    let (status, body) =
        daemon.post_bytes("/api/v1/system/update", "application/octet-stream", b"");
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("bad_body"))
    );
}

#[test]
fn without_rauc_the_api_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let nowhere = format!("unix:path={}", dir.path().join("no-bus").display());
    let daemon = daemon_on(&dir.path().join("data"), &nowhere);
    let (status, view) = daemon.get("/api/v1/system/update");
    assert_eq!(status, 200);
    assert_eq!(view["available"], false);
    assert!(
        view["error"]
            .as_str()
            .unwrap()
            .contains("cannot reach RAUC"),
        "{view}"
    );
    let (status, body) = daemon.post(
        "/api/v1/system/update",
        r#"{"url": "https://updates.example.com/b.raucb"}"#,
    );
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (503, Some("rauc_unavailable"))
    );
    // Updates off altogether.
    let off = daemon_on(&dir.path().join("off"), "");
    let (_, view) = off.get("/api/v1/system/update");
    assert!(
        view["error"].as_str().unwrap().contains("updates are off"),
        "{view}"
    );
    let (status, _) = off.post("/api/v1/system/update", r#"{"url": "https://x/b.raucb"}"#);
    assert_eq!(status, 503);
}

#[test]
fn mark_good_marks_the_booted_slot_through_rauc() {
    let Some(rauc) = rauc_or_skip() else { return };
    let mark_good = || {
        Command::new(binary("applianced"))
            .arg("mark-good")
            .env("APPLIANCE_UPDATE__RAUC_BUS", rauc.address())
            .env("APPLIANCE_DEVICE__PROVISIONING_FILE", "")
            .output()
            .unwrap()
    };
    std::fs::write(rauc.path("boot/state.A"), "bad\n").unwrap();
    // RAUC may still be starting: the first tries can find it absent.
    let mut output = mark_good();
    let marked = wait_for(Duration::from_secs(20), || {
        output = mark_good();
        output.status.success()
    });
    assert!(marked, "{output:?}\n{}", rauc.rauc_log());
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("rootfs.0"),
        "{output:?}"
    );
    assert_eq!(rauc.boot_file("state.A"), "good");
    let nowhere = Command::new(binary("applianced"))
        .arg("mark-good")
        .env("APPLIANCE_UPDATE__RAUC_BUS", "unix:path=/nonexistent/bus")
        .env("APPLIANCE_DEVICE__PROVISIONING_FILE", "")
        .output()
        .unwrap();
    assert_eq!(nowhere.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&nowhere.stderr).contains("cannot reach RAUC"));
}
