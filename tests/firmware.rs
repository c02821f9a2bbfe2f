//! Firmware checks with the real tools: the systemd units through `scripts/check-units.sh`
//! (systemd-analyze), the root file system overlay (the daemon's `check-config`, the scripts the
//! units run), and RAUC bundles through `scripts/bundle.sh` (openssl, mksquashfs, rauc) checked
//! against RAUC configured as the box is.

use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use appliance_tests::binary;
use serde_json::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the repository")
        .to_path_buf()
}

/// A command of the repository (`scripts/…`, `rootfs-overlay/…`), with the system directories
/// mkfs.ext4, blkid and friends live in on the PATH even for a user whose PATH lacks them.
fn tool(relative: &str) -> Command {
    let mut command = Command::new(repo().join(relative));
    let path = std::env::var("PATH").unwrap_or_default();
    command.env("PATH", format!("{path}:/usr/sbin:/sbin"));
    command
}

fn run(command: &mut Command) -> Output {
    command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"))
}

fn all_output(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Runs the command, which must succeed; returns its stdout and stderr together.
fn succeeds(command: &mut Command) -> String {
    let output = run(command);
    let text = all_output(&output);
    assert!(output.status.success(), "{command:?} failed:\n{text}");
    text
}

/// Runs the command, which must succeed; returns its stdout alone.
fn stdout_of(command: &mut Command) -> String {
    let output = run(command);
    assert!(
        output.status.success(),
        "{command:?} failed:\n{}",
        all_output(&output)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Runs the command, which must fail; returns its stdout and stderr together.
fn fails(command: &mut Command) -> String {
    let output = run(command);
    let text = all_output(&output);
    assert!(!output.status.success(), "{command:?} succeeded:\n{text}");
    text
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn random_bytes(len: usize) -> Vec<u8> {
    let mut bytes = vec![0; len];
    fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut bytes)
        .unwrap();
    bytes
}

fn sha256(path: &Path) -> String {
    let out = stdout_of(Command::new("sha256sum").arg(path));
    out.split_whitespace().next().unwrap().to_string()
}

// --- systemd units -------------------------------------------------------------------------

/// A copy of `systemd/` in which `edit` changed applianced.service.
fn units_with_daemon_unit(edit: impl FnOnce(String) -> String) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    succeeds(
        Command::new("cp")
            .arg("-r")
            .arg(repo().join("systemd/."))
            .arg(dir.path()),
    );
    let unit = dir.path().join("applianced.service");
    fs::write(&unit, edit(fs::read_to_string(&unit).unwrap())).unwrap();
    dir
}

fn check_units(units: &Path) -> Command {
    let mut command = tool("scripts/check-units.sh");
    command.arg("--units").arg(units);
    command
}

#[test]
fn the_units_pass_the_checks_with_the_daemon_at_most_2_5_exposed() {
    let out = succeeds(&mut tool("scripts/check-units.sh"));
    for label in [
        "applianced.service ",
        "applianced.service + boards/rk3588 ",
        "applianced.service + boards/jetson-orin ",
        "zlmediakit.service ",
    ] {
        let line = out
            .lines()
            .find(|line| line.starts_with(label))
            .unwrap_or_else(|| panic!("no exposure for {label:?} in:\n{out}"));
        let exposure: f64 = line
            .split_whitespace()
            .skip_while(|word| *word != "exposure")
            .nth(1)
            .and_then(|value| value.parse().ok())
            .unwrap_or_else(|| panic!("no figure in {line:?}"));
        assert!(exposure <= 2.5, "{line}");
    }
    // The root oneshots are printed too, not judged.
    for unit in [
        "appliance-firstboot.service",
        "appliance-factory-reset.service",
        "appliance-mark-good.service",
    ] {
        assert!(out.contains(unit), "{unit} missing from:\n{out}");
    }
}

#[test]
fn a_daemon_unit_without_its_sandbox_is_rejected() {
    let hardening = [
        "Protect",
        "Private",
        "Restrict",
        "SystemCall",
        "Capability",
        "AmbientCapabilities",
        "NoNewPrivileges",
        "MemoryDenyWriteExecute",
        "LockPersonality",
        "RemoveIPC",
        "Device",
        "UMask",
    ];
    let units = units_with_daemon_unit(|unit| {
        unit.lines()
            .filter(|line| !hardening.iter().any(|key| line.starts_with(key)))
            .map(|line| format!("{line}\n"))
            .collect()
    });
    let out = fails(&mut check_units(units.path()));
    assert!(
        out.lines().any(
            |line| line.starts_with("check-units: applianced.service: exposure")
                && line.ends_with("is above the limit of 2.5")
        ),
        "{out}"
    );
}

#[test]
fn a_mistyped_executable_is_rejected() {
    let units = units_with_daemon_unit(|unit| {
        unit.replace(
            "ExecStart=/usr/bin/applianced ",
            "ExecStart=/usr/bin/applianced-typo ",
        )
    });
    let out = fails(&mut check_units(units.path()));
    assert!(
        out.contains("Command /usr/bin/applianced-typo is not executable"),
        "{out}"
    );
}

#[test]
fn a_misspelled_directive_is_rejected() {
    // systemd-analyze verify only warns about it, with exit status 0.
    let units = units_with_daemon_unit(|unit| unit.replace("WatchdogSec=30s", "WatchdogSecs=30s"));
    let out = fails(&mut check_units(units.path()));
    assert!(out.contains("Unknown key 'WatchdogSecs'"), "{out}");
}

// --- root file system overlay --------------------------------------------------------------

#[test]
fn the_daemon_accepts_the_box_configuration() {
    let file = repo().join("rootfs-overlay/etc/appliance/appliance.toml");
    let mut command = Command::new(binary("applianced"));
    command.arg("check-config").arg(&file);
    // check-config applies APPLIANCE_* overrides: the file alone is under test.
    for (name, _) in std::env::vars() {
        if name.starts_with("APPLIANCE_") {
            command.env_remove(name);
        }
    }
    succeeds(&mut command);
    let text = fs::read_to_string(&file).unwrap();
    for line in [
        r#"listen = "0.0.0.0:8443""#,
        "tls = true",
        r#"data_dir = "/var/lib/appliance""#,
        r#"listen = "0.0.0.0:5060""#,
    ] {
        assert!(text.lines().any(|l| l == line), "{line} missing");
    }
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files_under(&path, out);
        } else {
            out.push(path);
        }
    }
}

#[test]
fn no_secret_ships_in_the_overlay_or_the_units() {
    let mut files = Vec::new();
    files_under(&repo().join("rootfs-overlay"), &mut files);
    files_under(&repo().join("systemd"), &mut files);
    assert!(files.len() > 10, "{files:?}");
    let secret_key = |key: &str| {
        let key = key.to_ascii_lowercase();
        ["password", "passwd", "secret", "token", "admin_params"]
            .iter()
            .any(|word| key.contains(word))
    };
    for file in files {
        let name = file.file_name().unwrap().to_string_lossy();
        assert!(
            ![".pem", ".key", ".p12", ".crt"]
                .iter()
                .any(|ext| name.ends_with(ext)),
            "key or certificate file {}",
            file.display()
        );
        let text = String::from_utf8_lossy(&fs::read(&file).unwrap()).into_owned();
        assert!(
            !text.contains("PRIVATE KEY-----"),
            "private key in {}",
            file.display()
        );
        // Configuration files; the scripts' variables are named after what they hold
        // (secret_file=…), and they hold none.
        if mode(&file) & 0o111 != 0 {
            continue;
        }
        for line in text.lines() {
            let line = line.trim();
            if line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            if let Some((key, value)) = line.split_once('=') {
                let value = value.trim().trim_matches('"');
                assert!(
                    !secret_key(key.trim()) || value.is_empty(),
                    "a value for {} in {}",
                    key.trim(),
                    file.display()
                );
            }
        }
    }
}

/// zlmediakit-config.sh as zlmediakit.service runs it: state and runtime directories from the
/// environment, the template as its argument.
fn render_media_server_config(state: &Path, runtime: &Path, template: &Path) -> Command {
    let mut command = tool("rootfs-overlay/usr/lib/appliance/zlmediakit-config.sh");
    command
        .arg(template)
        .env("STATE_DIRECTORY", state)
        .env("RUNTIME_DIRECTORY", runtime);
    command
}

#[test]
fn the_media_server_secret_is_made_once_per_box_and_never_shipped() {
    let template = repo().join("rootfs-overlay/etc/zlmediakit/config.ini");
    let (state, runtime) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let secret_file = state.path().join("api-secret");
    let config = runtime.path().join("config.ini");

    succeeds(&mut render_media_server_config(
        state.path(),
        runtime.path(),
        &template,
    ));
    let secret = fs::read_to_string(&secret_file).unwrap();
    assert!(
        secret.len() == 64 && secret.bytes().all(|b| b.is_ascii_hexdigit()),
        "{secret:?}"
    );
    assert_eq!(mode(&secret_file), 0o640, "the daemon's group reads it");
    assert_eq!(mode(&config), 0o600);
    let rendered = fs::read_to_string(&config).unwrap();
    let lines: Vec<&str> = rendered.lines().collect();
    let after = |section: &str| lines[lines.iter().position(|l| *l == section).unwrap() + 1];
    assert_eq!(after("[api]"), format!("secret={secret}"));
    assert_eq!(after("[hook]"), format!("admin_params=secret={secret}"));
    // Everything else is the template, unchanged.
    let rest: String = lines
        .iter()
        .filter(|l| !l.starts_with("secret=") && !l.starts_with("admin_params="))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(rest, fs::read_to_string(&template).unwrap());

    // Kept across starts.
    succeeds(&mut render_media_server_config(
        state.path(),
        runtime.path(),
        &template,
    ));
    assert_eq!(fs::read_to_string(&secret_file).unwrap(), secret);
    // Another box, or this one after a factory reset: another secret.
    let other = tempfile::tempdir().unwrap();
    succeeds(&mut render_media_server_config(
        other.path(),
        runtime.path(),
        &template,
    ));
    assert_ne!(
        fs::read_to_string(other.path().join("api-secret")).unwrap(),
        secret
    );

    // A template that ships a secret is refused.
    let shipped = state.path().join("shipped.ini");
    fs::write(&shipped, "[api]\nsecret=035c73f7\n[hook]\n").unwrap();
    let out = fails(&mut render_media_server_config(
        state.path(),
        runtime.path(),
        &shipped,
    ));
    assert!(out.contains("never shipped"), "{out}");
}

#[test]
fn a_factory_reset_erases_both_data_directories_and_then_its_marker() {
    let data = tempfile::tempdir().unwrap();
    let (appliance, media) = (
        data.path().join("appliance"),
        data.path().join("zlmediakit"),
    );
    fs::create_dir_all(appliance.join("media/ab")).unwrap();
    fs::create_dir_all(media.join("record/rtp")).unwrap();
    fs::write(appliance.join("db"), "events").unwrap();
    fs::write(appliance.join(".identity"), "device id").unwrap();
    fs::write(appliance.join("media/ab/cd"), "jpeg").unwrap();
    fs::write(media.join("api-secret"), "0123").unwrap();
    fs::write(media.join("record/rtp/a.mp4"), "mp4").unwrap();
    let marker = appliance.join(".factory-reset");
    let reset = || {
        let mut command = tool("rootfs-overlay/usr/lib/appliance/factory-reset.sh");
        command.arg(&marker).arg(&appliance).arg(&media);
        command
    };

    // Without a request it refuses, and erases nothing.
    let out = fails(&mut reset());
    assert!(out.contains("no factory reset was requested"), "{out}");
    assert!(appliance.join("db").exists());

    fs::write(&marker, "").unwrap();
    succeeds(&mut reset());
    for dir in [&appliance, &media] {
        assert!(dir.is_dir(), "{} itself stays", dir.display());
        let left: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert!(left.is_empty(), "left behind: {left:?}");
    }
}

#[test]
fn the_daemon_unit_reboots_only_when_the_daemon_asked() {
    // A stand-in systemctl first on the PATH records what it was asked.
    let bin = tempfile::tempdir().unwrap();
    let calls = bin.path().join("calls");
    fs::write(
        bin.path().join("systemctl"),
        format!("#!/bin/sh\necho \"$*\" >> '{}'\n", calls.display()),
    )
    .unwrap();
    fs::set_permissions(
        bin.path().join("systemctl"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let after = |code: &str, status: &str| {
        let mut command = tool("rootfs-overlay/usr/lib/appliance/reboot-if-asked.sh");
        let path = format!(
            "{}:{}",
            bin.path().display(),
            std::env::var("PATH").unwrap()
        );
        command
            .env("PATH", path)
            .env("EXIT_CODE", code)
            .env("EXIT_STATUS", status);
        succeeds(&mut command);
        fs::read_to_string(&calls).unwrap_or_default()
    };
    // A stop, a clean exit, a restart request, a crash: no reboot.
    for (code, status) in [
        ("killed", "TERM"),
        ("exited", "0"),
        ("exited", "75"),
        ("dumped", "SEGV"),
    ] {
        assert_eq!(after(code, status), "", "{code} {status}");
    }
    assert_eq!(after("exited", "76"), "reboot --no-block\n");
    let unit = fs::read_to_string(repo().join("systemd/applianced.service")).unwrap();
    assert!(unit.contains("ExecStopPost=+/usr/lib/appliance/reboot-if-asked.sh"));
    assert!(
        unit.contains("RestartPreventExitStatus=2 76"),
        "no restart before the reboot"
    );
}

/// What blkid finds on a device or image file: (TYPE, LABEL, UUID).
fn probe(path: &Path) -> (String, String, String) {
    let mut command = Command::new("blkid");
    command.env("PATH", "/usr/sbin:/sbin:/usr/bin:/bin");
    let out =
        String::from_utf8(run(command.args(["-p", "-o", "export"]).arg(path)).stdout).unwrap();
    let value = |key: &str| {
        out.lines()
            .find_map(|line| line.strip_prefix(&format!("{key}=")))
            .unwrap_or_default()
            .to_string()
    };
    (value("TYPE"), value("LABEL"), value("UUID"))
}

#[test]
fn first_boot_formats_a_blank_data_partition_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let firstboot = |image: &Path| {
        let mut command = tool("rootfs-overlay/usr/lib/appliance/firstboot-data.sh");
        command.arg(image);
        command
    };

    // A blank partition (an image file: nothing to grow) gets ext4 labelled data.
    let blank = dir.path().join("data.img");
    fs::write(&blank, vec![0u8; 16 << 20]).unwrap();
    succeeds(&mut firstboot(&blank));
    let (fs_type, label, uuid) = probe(&blank);
    assert_eq!((fs_type.as_str(), label.as_str()), ("ext4", "data"));
    // The next boot finds it formatted and leaves it alone.
    let out = succeeds(&mut firstboot(&blank));
    assert!(out.contains("left alone"), "{out}");
    assert_eq!(probe(&blank).2, uuid, "formatted again");

    // Anything blkid recognises is never formatted, whatever it is.
    let content = dir.path().join("content");
    fs::create_dir(&content).unwrap();
    fs::write(content.join("f"), random_bytes(8192)).unwrap();
    let other = dir.path().join("other.img");
    succeeds(
        Command::new("mksquashfs")
            .arg(&content)
            .arg(&other)
            .args(["-quiet", "-noappend"]),
    );
    let before = fs::read(&other).unwrap();
    succeeds(&mut firstboot(&other));
    assert_eq!(fs::read(&other).unwrap(), before);

    // A device it cannot read is an error, not a blank partition.
    fails(&mut firstboot(&dir.path().join("missing")));
}

// --- RAUC bundles --------------------------------------------------------------------------

const COMPATIBLE: &str = "appliance-test";
const VERSION: &str = "1.2.3-test";

/// A signed bundle of a small squashfs root file system, made by scripts/bundle.sh with its
/// development PKI in a temporary directory.
struct Bundle {
    dir: tempfile::TempDir,
    rootfs: PathBuf,
    path: PathBuf,
}

impl Bundle {
    fn pki(&self) -> PathBuf {
        self.dir.path().join("pki")
    }

    fn keyring(&self) -> PathBuf {
        self.pki().join("ca.cert.pem")
    }

    fn make() -> Bundle {
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path().join("tree");
        fs::create_dir_all(tree.join("etc")).unwrap();
        fs::write(tree.join("etc/os-release"), "NAME=appliance\n").unwrap();
        // Incompressible: a verity bundle's payload must be larger than one 4 KiB block.
        fs::write(tree.join("blob"), random_bytes(64 << 10)).unwrap();
        let rootfs = dir.path().join("rootfs.squashfs");
        succeeds(
            Command::new("mksquashfs")
                .arg(&tree)
                .arg(&rootfs)
                .args(["-quiet", "-noappend"]),
        );
        let path = dir.path().join("out/test.raucb");
        let out = stdout_of(
            tool("scripts/bundle.sh")
                .env("BUNDLE_PKI_DIR", dir.path().join("pki"))
                .arg("--rootfs")
                .arg(&rootfs)
                .args(["--compatible", COMPATIBLE, "--version", VERSION, "--out"])
                .arg(&path),
        );
        assert_eq!(out.lines().last(), Some(path.to_str().unwrap()), "{out}");
        Bundle { dir, rootfs, path }
    }

    /// rauc configured as the box is: the overlay's system.conf with this compatible, its slot
    /// status in the temporary directory instead of /var/lib/rauc, and `keyring`.
    fn rauc(&self, keyring: &Path) -> Command {
        let conf = self.dir.path().join("system.conf");
        let template =
            fs::read_to_string(repo().join("rootfs-overlay/etc/rauc/system.conf")).unwrap();
        let status = self.dir.path().join("rauc-status");
        let text = template
            .replace("@APPLIANCE_COMPATIBLE@", COMPATIBLE)
            .replace(
                "data-directory=/var/lib/rauc",
                &format!("data-directory={}", status.display()),
            );
        assert_ne!(text, template);
        fs::write(&conf, text).unwrap();
        let mut command = Command::new("rauc");
        command.arg(format!("--conf={}", conf.display()));
        command.arg(format!("--keyring={}", keyring.display()));
        command
    }

    /// A copy of the bundle with `edit` applied to its bytes.
    fn tampered(&self, name: &str, edit: impl FnOnce(&mut Vec<u8>)) -> PathBuf {
        let mut bytes = fs::read(&self.path).unwrap();
        edit(&mut bytes);
        let path = self.dir.path().join(name);
        fs::write(&path, bytes).unwrap();
        path
    }
}

#[test]
fn a_bundle_verifies_against_its_ca_and_holds_the_image() {
    let bundle = Bundle::make();
    for key in ["ca.key.pem", "signing.key.pem"] {
        assert_eq!(mode(&bundle.pki().join(key)), 0o600, "{key}");
    }

    let out = stdout_of(
        bundle
            .rauc(&bundle.keyring())
            .args(["info", "--output-format=json"])
            .arg(&bundle.path),
    );
    let info: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(info["compatible"], COMPATIBLE);
    assert_eq!(info["version"], VERSION);
    assert_eq!(
        info["images"][0]["rootfs"]["checksum"],
        sha256(&bundle.rootfs).as_str()
    );

    // extract checks the payload against the signed verity root hash, then hands it out.
    let extracted = bundle.dir.path().join("extracted");
    succeeds(
        bundle
            .rauc(&bundle.keyring())
            .arg("extract")
            .arg(&bundle.path)
            .arg(&extracted),
    );
    assert_eq!(
        fs::read(extracted.join("rootfs.img")).unwrap(),
        fs::read(&bundle.rootfs).unwrap()
    );
}

#[test]
fn a_bundle_signed_by_another_ca_is_rejected() {
    let bundle = Bundle::make();
    let other_pki = bundle.dir.path().join("other-pki");
    let out = stdout_of(
        tool("scripts/bundle.sh")
            .env("BUNDLE_PKI_DIR", &other_pki)
            .arg("--init-pki"),
    );
    let other_keyring = other_pki.join("ca.cert.pem");
    assert_eq!(out.lines().last(), Some(other_keyring.to_str().unwrap()));
    let out = fails(bundle.rauc(&other_keyring).arg("info").arg(&bundle.path));
    assert!(out.contains("signature verification failed"), "{out}");
}

#[test]
fn a_tampered_bundle_is_rejected() {
    let bundle = Bundle::make();
    let verifies = |path: &Path| run(bundle.rauc(&bundle.keyring()).arg("info").arg(path));

    // The manifest is inside the signature: another compatible no longer matches it.
    let manifest = bundle.tampered("manifest.raucb", |bytes| {
        let needle = format!("compatible={COMPATIBLE}");
        let at = bytes
            .windows(needle.len())
            .rposition(|w| w == needle.as_bytes())
            .expect("the manifest in the signature");
        bytes[at + needle.len() - 1] ^= 0x01;
    });
    let out = all_output(&verifies(&manifest));
    assert!(out.contains("signature verification failed"), "{out}");

    // The signature value itself: the CMS ends just before the 8-byte size trailer.
    let signature = bundle.tampered("signature.raucb", |bytes| {
        let end = bytes.len() - 8;
        bytes[end - 5] ^= 0x01;
    });
    let out = all_output(&verifies(&signature));
    assert!(out.contains("signature verification failed"), "{out}");

    // The payload. `rauc info` verifies only the signature, which covers the payload through
    // the verity root hash in the manifest; the payload itself is checked as it is read, by
    // dm-verity when installing, and here by extract's userspace verity check.
    let payload = bundle.tampered("payload.raucb", |bytes| bytes[1000] ^= 0x01);
    let extracted = bundle.dir.path().join("tampered-payload");
    let out = fails(
        bundle
            .rauc(&bundle.keyring())
            .arg("extract")
            .arg(&payload)
            .arg(&extracted),
    );
    assert!(out.contains("bundle payload is corrupted"), "{out}");
}

#[test]
fn the_box_refuses_plain_bundles() {
    let bundle = Bundle::make();
    let content = bundle.dir.path().join("plain");
    fs::create_dir(&content).unwrap();
    fs::copy(&bundle.rootfs, content.join("rootfs.img")).unwrap();
    fs::write(
        content.join("manifest.raucm"),
        format!(
            "[update]\ncompatible={COMPATIBLE}\nversion={VERSION}\n\n[bundle]\nformat=plain\n\n\
             [image.rootfs]\nfilename=rootfs.img\n"
        ),
    )
    .unwrap();
    let plain = bundle.dir.path().join("plain.raucb");
    succeeds(
        Command::new("rauc")
            .arg("bundle")
            .arg(format!(
                "--cert={}",
                bundle.pki().join("signing.cert.pem").display()
            ))
            .arg(format!(
                "--key={}",
                bundle.pki().join("signing.key.pem").display()
            ))
            .arg(&content)
            .arg(&plain),
    );
    let out = fails(bundle.rauc(&bundle.keyring()).arg("info").arg(&plain));
    assert!(out.contains("Bundle format 'plain' not allowed"), "{out}");
}

#[test]
fn bundle_needs_the_boxes_compatible_and_makes_no_pki_before_it_has_it() {
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    let rootfs = dir.path().join("rootfs.squashfs");
    fs::write(&rootfs, random_bytes(8192)).unwrap();
    let out = fails(
        tool("scripts/bundle.sh")
            .env("BUNDLE_PKI_DIR", &pki)
            .arg("--rootfs")
            .arg(&rootfs),
    );
    assert!(
        out.contains("--compatible is required with --rootfs"),
        "{out}"
    );
    let out = fails(tool("scripts/bundle.sh").env("BUNDLE_PKI_DIR", &pki).args([
        "--rootfs",
        "/nonexistent.squashfs",
        "--compatible",
        COMPATIBLE,
    ]));
    assert!(out.contains("is not a non-empty file"), "{out}");
    assert!(
        !pki.exists(),
        "a PKI was made for a bundle that was never built"
    );
}
