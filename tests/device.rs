//! End-to-end tests of the box as a device: claiming, signing in, the admin gate, provisioning,
//! factory reset and HTTPS with the box's own certificate, on the real `applianced` binary.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use appliance_tests::{ADMIN_PASSWORD, Daemon, DaemonOptions, binary};
use nix::sys::signal::Signal;
use serde_json::{Value, json};

fn unclaimed(data_dir: &Path) -> Daemon {
    let mut options = DaemonOptions::new(data_dir);
    options.sign_in = false;
    Daemon::start_with(options)
}

fn password(p: &str) -> String {
    json!({ "password": p }).to_string()
}

fn error_code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("")
}

#[test]
fn an_unclaimed_box_refuses_everything_but_claiming() {
    let dir = tempfile::tempdir().unwrap();
    let mut daemon = unclaimed(dir.path());
    assert_eq!(daemon.get("/api/v1/health").0, 200);
    let (status, body) = daemon.get("/api/v1/events");
    assert_eq!((status, error_code(&body)), (403, "unclaimed"), "{body}");
    let (status, body) = daemon.get("/api/v1/cameras");
    assert_eq!((status, error_code(&body)), (403, "unclaimed"));
    let (status, body) = daemon.post("/api/v1/login", &password(ADMIN_PASSWORD));
    assert_eq!((status, error_code(&body)), (403, "unclaimed"));

    let (status, state) = daemon.get("/api/v1/claim");
    assert_eq!(status, 200);
    assert_eq!(state["claimed"], false);
    let device_id = state["device_id"].as_str().unwrap().to_owned();
    assert!(device_id.starts_with("box-"), "{state}");
    let fingerprint = state["certificate_sha256"].as_str().unwrap().to_owned();
    assert_eq!(fingerprint.len(), 64);

    let (status, body) = daemon.post("/api/v1/claim", &password("short"));
    assert_eq!(
        (status, error_code(&body)),
        (400, "weak_password"),
        "{body}"
    );
    let (status, body) = daemon.post("/api/v1/claim", r#"{"pasword": "long enough really"}"#);
    assert_eq!((status, error_code(&body)), (400, "bad_body"), "{body}");

    daemon.sign_in();
    let (status, again) = daemon.post("/api/v1/claim", &password("another password!"));
    assert_eq!((status, error_code(&again)), (409, "claimed"));
    assert_eq!(daemon.get("/api/v1/events").0, 200);
    assert_eq!(daemon.get("/api/v1/claim").1["claimed"], true);

    // Claimed and kept: a restart on the same data directory keeps the id, the certificate and
    // the password, and sessions from before are gone.
    let (status, _) = daemon.stop_with(Signal::SIGTERM, Duration::from_secs(10));
    assert!(status.success());
    let daemon = Daemon::start(dir.path());
    let (_, state) = daemon.get("/api/v1/claim");
    assert_eq!(state["device_id"], device_id.as_str());
    assert_eq!(state["certificate_sha256"], fingerprint.as_str());
    assert_eq!(daemon.get("/api/v1/events").0, 200);
}

#[test]
fn sessions_are_required_checked_and_ended() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path());
    let anonymous = |path: &str| {
        let result = ureq::get(&daemon.url(path)).call();
        match result {
            Err(ureq::Error::Status(status, response)) => (
                status,
                response.header("www-authenticate").map(str::to_owned),
            ),
            other => panic!("expected an error status, got {other:?}"),
        }
    };
    let (status, challenge) = anonymous("/api/v1/events");
    assert_eq!(status, 401);
    assert!(challenge.unwrap().starts_with("Bearer"));
    let forged = ureq::get(&daemon.url("/api/v1/events"))
        .set("authorization", &format!("Bearer {}", "ab".repeat(32)))
        .call();
    assert!(matches!(forged, Err(ureq::Error::Status(401, _))));

    let (status, body) = daemon.post("/api/v1/login", &password(ADMIN_PASSWORD));
    assert_eq!(status, 200, "{body}");
    let token = body["token"].as_str().unwrap().to_owned();
    assert_eq!(body["expires_in_s"], 12 * 3600);
    let with = |token: &str| {
        ureq::get(&daemon.url("/api/v1/events"))
            .set("authorization", &format!("Bearer {token}"))
            .call()
            .map(|r| r.status())
            .unwrap_or_else(|e| match e {
                ureq::Error::Status(status, _) => status,
                e => panic!("{e}"),
            })
    };
    assert_eq!(with(&token), 200);
    let logout = ureq::post(&daemon.url("/api/v1/logout"))
        .set("authorization", &format!("Bearer {token}"))
        .call()
        .unwrap();
    assert_eq!(logout.status(), 204);
    assert_eq!(with(&token), 401);
}

#[test]
fn wrong_passwords_are_refused_then_slowed_down() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path());
    let mut statuses = Vec::new();
    for _ in 0..7 {
        let (status, body) = daemon.post("/api/v1/login", &password("not the password"));
        statuses.push((status, error_code(&body).to_owned()));
    }
    let wrong = (401, "wrong_password".to_owned());
    let throttled = (429, "throttled".to_owned());
    assert_eq!(statuses[..6], vec![wrong; 6][..], "{statuses:?}");
    assert_eq!(statuses[6], throttled);
    // Even the right password waits its turn.
    let throttled_right = ureq::post(&daemon.url("/api/v1/login"))
        .set("content-type", "application/json")
        .send_string(&password(ADMIN_PASSWORD));
    match throttled_right {
        Err(ureq::Error::Status(429, response)) => {
            let retry: u64 = response.header("retry-after").unwrap().parse().unwrap();
            assert!((1..=2).contains(&retry), "{retry}");
        }
        other => panic!("expected 429, got {other:?}"),
    }
    std::thread::sleep(Duration::from_millis(2100));
    assert_eq!(
        daemon.post("/api/v1/login", &password(ADMIN_PASSWORD)).0,
        200
    );
}

#[test]
fn changing_the_password_ends_every_session() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path());
    // The status and the error code (none on success: 204 has no body).
    let change = |current: &str, new: &str| {
        let body = json!({ "current_password": current, "new_password": new }).to_string();
        match daemon
            .request("PUT", "/api/v1/system/password")
            .set("content-type", "application/json")
            .send_string(&body)
        {
            Ok(response) => (response.status(), String::new()),
            Err(ureq::Error::Status(status, response)) => {
                let body: Value = response.into_json().unwrap();
                (status, error_code(&body).to_owned())
            }
            Err(e) => panic!("{e}"),
        }
    };
    let expect = |status: u16, code: &str| (status, code.to_owned());
    assert_eq!(
        change("wrong current password", "a brand new password"),
        expect(401, "wrong_password")
    );
    assert_eq!(change(ADMIN_PASSWORD, "tiny"), expect(400, "weak_password"));
    assert_eq!(
        change(ADMIN_PASSWORD, "a brand new password"),
        expect(204, "")
    );
    assert_eq!(daemon.get("/api/v1/events").0, 401, "the old session ended");
    assert_eq!(
        daemon.post("/api/v1/login", &password(ADMIN_PASSWORD)).0,
        401
    );
    assert_eq!(
        daemon
            .post("/api/v1/login", &password("a brand new password"))
            .0,
        200
    );
}

#[test]
fn factory_reset_wipes_the_data_directory_and_comes_back_unclaimed() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path());
    let (_, before) = daemon.get("/api/v1/claim");
    let camera = json!({ "source": "/nonexistent.mp4", "enabled": false }).to_string();
    assert_eq!(daemon.put("/api/v1/cameras/door", &camera).0, 200);

    let (status, body) = daemon.post(
        "/api/v1/system/factory-reset",
        &json!({ "confirm_device_id": "box-someone-else" }).to_string(),
    );
    assert_eq!((status, error_code(&body)), (400, "not_confirmed"));
    assert_eq!(
        daemon.get("/api/v1/cameras/door").0,
        200,
        "nothing happened"
    );

    let confirm = json!({ "confirm_device_id": before["device_id"] }).to_string();
    let (status, _) = daemon.post("/api/v1/system/factory-reset", &confirm);
    assert_eq!(status, 202);
    // Exits on its own with the status systemd restarts it on (RestartForceExitStatus=75).
    let exit = daemon.wait_exit(Duration::from_secs(15));
    assert_eq!(exit.code(), Some(75));
    assert!(dir.path().join(".factory-reset").exists());

    let mut daemon = unclaimed(dir.path());
    assert!(!dir.path().join(".factory-reset").exists());
    let (_, after) = daemon.get("/api/v1/claim");
    assert_eq!(after["claimed"], false);
    assert_ne!(after["device_id"], before["device_id"], "a new identity");
    assert_ne!(after["certificate_sha256"], before["certificate_sha256"]);
    daemon.sign_in();
    assert_eq!(daemon.get("/api/v1/cameras/door").0, 404, "cameras wiped");
    let (_, events) = daemon.get("/api/v1/events");
    let kinds: Vec<&str> = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["system.start"], "only this start's event survives");
}

#[test]
fn a_reboot_stops_the_daemon_with_the_status_its_unit_reboots_on() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path());
    let (status, body) = daemon.post("/api/v1/system/reboot", "");
    assert_eq!(status, 202, "{body}");
    let exit = daemon.wait_exit(Duration::from_secs(15));
    assert_eq!(exit.code(), Some(76));
    // Nothing was wiped: the box comes back claimed, with its identity.
    let daemon = Daemon::start(dir.path());
    assert_eq!(daemon.get("/api/v1/claim").1["claimed"], true);
}

#[test]
fn the_reset_command_for_a_button_resets_at_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path());
    let (_, before) = daemon.get("/api/v1/claim");
    daemon.stop_with(Signal::SIGTERM, Duration::from_secs(10));
    let output = Command::new(binary("applianced"))
        .args(["factory-reset", "--data-dir"])
        .arg(dir.path())
        .env("APPLIANCE_DEVICE__PROVISIONING_FILE", "")
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let daemon = unclaimed(dir.path());
    let (_, after) = daemon.get("/api/v1/claim");
    assert_eq!(after["claimed"], false);
    assert_ne!(after["device_id"], before["device_id"]);
}

/// An argon2id PHC hash of `password` made by another implementation than the daemon's: the
/// reference one's CLI (Debian `argon2`), as an installer's tooling might.
fn argon2id_hash(password: &str) -> String {
    let mut argon2 = Command::new("argon2");
    argon2.args([
        "provisioning-salt",
        "-id",
        "-t",
        "2",
        "-m",
        "15",
        "-p",
        "1",
        "-e",
    ]);
    let output = run_with_stdin(argon2, password);
    assert!(
        output.status.success(),
        "the argon2 CLI (Debian argon2): {output:?}"
    );
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

fn run_with_stdin(mut command: Command, input: &str) -> std::process::Output {
    use std::io::Write as _;
    use std::process::Stdio;
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn provisioning_file(dir: &Path, body: &str) -> std::path::PathBuf {
    let path = dir.join("provision.toml");
    std::fs::write(&path, body).unwrap();
    path
}

fn start_provisioned(data_dir: &Path, file: &Path) -> Daemon {
    let mut options = DaemonOptions::new(data_dir);
    options.sign_in = false;
    options.env = vec![(
        "APPLIANCE_DEVICE__PROVISIONING_FILE".into(),
        file.display().to_string(),
    )];
    Daemon::start_with(options)
}

#[test]
fn a_valid_provisioning_file_names_and_claims_the_box() {
    let dir = tempfile::tempdir().unwrap();
    let hash = argon2id_hash("installer chose this");
    let file = provisioning_file(
        dir.path(),
        &format!(
            "device_id = \"store-0042\"\nadmin_password_hash = \"{hash}\"\n\n[uplink.mqtt]\nurl = \"mqtt://127.0.0.1:1\"\n"
        ),
    );
    let data = dir.path().join("data");
    let daemon = start_provisioned(&data, &file);
    let (_, state) = daemon.get("/api/v1/claim");
    assert_eq!(state["device_id"], "store-0042");
    assert_eq!(state["claimed"], true);
    let (status, body) = daemon.post("/api/v1/login", &password("installer chose this"));
    assert_eq!(status, 200, "{body}");
    let token = body["token"].as_str().unwrap();
    // The provisioned upstream is on (its broker is unreachable, so it says so).
    let uplink: Value = ureq::get(&daemon.url("/api/v1/uplink"))
        .set("authorization", &format!("Bearer {token}"))
        .call()
        .unwrap()
        .into_json()
        .unwrap();
    assert_eq!(uplink["items"][0]["name"], "mqtt", "{uplink}");
}

#[test]
fn a_bad_provisioning_file_is_refused_whole_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let hash = argon2id_hash("installer chose this");
    // A valid hash, but an unknown key: nothing of the file applies.
    let file = provisioning_file(
        dir.path(),
        &format!(
            "device_id = \"store-0042\"\nadmin_password_hash = \"{hash}\"\nadmin = \"root\"\n"
        ),
    );
    let daemon = start_provisioned(&dir.path().join("data"), &file);
    let (_, state) = daemon.get("/api/v1/claim");
    assert_eq!(state["claimed"], false);
    assert_ne!(state["device_id"], "store-0042");
    let log = daemon.log();
    assert!(log.contains("provisioning file refused"), "{log}");
    assert!(log.contains("unknown field `admin`"), "{log}");
    let (_, metrics) = daemon.get_text("/metrics");
    assert!(
        metrics.contains("appliance_provisioning_rejected_total 1"),
        "{metrics}"
    );
}

#[test]
fn https_serves_the_certificate_the_claim_page_announces() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = DaemonOptions::new(dir.path());
    options.sign_in = false;
    options.env = vec![("APPLIANCE_HTTP__TLS".into(), "true".into())];
    let daemon = Daemon::start_with(options);
    let cert = dir.path().join("identity/device.crt");
    let port = daemon.addr.port();
    // curl checks the chain and the name against the box's own certificate.
    let output = Command::new("curl")
        .args(["--silent", "--show-error", "--fail", "--cacert"])
        .arg(&cert)
        .args(["--resolve", &format!("localhost:{port}:127.0.0.1")])
        .arg(format!("https://localhost:{port}/api/v1/claim"))
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let state: Value = serde_json::from_slice(&output.stdout).unwrap();
    let fingerprint = Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
        .arg(&cert)
        .output()
        .unwrap();
    let fingerprint = String::from_utf8(fingerprint.stdout)
        .unwrap()
        .trim()
        .rsplit('=')
        .next()
        .unwrap()
        .replace(':', "")
        .to_lowercase();
    assert_eq!(state["certificate_sha256"], fingerprint.as_str());
    // Plain HTTP on the TLS port gets nothing useful.
    assert!(ureq::get(&daemon.url("/api/v1/claim")).call().is_err());
    let key_mode = std::fs::metadata(dir.path().join("identity/device.key"))
        .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777)
        .unwrap();
    assert_eq!(key_mode, 0o600);
}

#[test]
fn hash_password_makes_what_a_provisioning_file_takes() {
    let hash = |input: &str| {
        let mut command = Command::new(binary("applianced"));
        command.arg("hash-password");
        run_with_stdin(command, input)
    };
    let weak = hash("short\n");
    assert_eq!(weak.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&weak.stderr).contains("at least 10"));
    let output = hash("the installer's pick\n");
    assert!(output.status.success());
    let phc = String::from_utf8(output.stdout).unwrap().trim().to_owned();
    let dir = tempfile::tempdir().unwrap();
    let file = provisioning_file(dir.path(), &format!("admin_password_hash = \"{phc}\"\n"));
    let daemon = start_provisioned(&dir.path().join("data"), &file);
    assert_eq!(daemon.get("/api/v1/claim").1["claimed"], true);
    assert_eq!(
        daemon
            .post("/api/v1/login", &password("the installer's pick"))
            .0,
        200
    );
    assert_eq!(
        daemon
            .post("/api/v1/login", &password("the installer's pic"))
            .0,
        401
    );
}
