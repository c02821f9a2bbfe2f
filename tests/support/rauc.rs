//! A real `rauc service` (1.8 on Debian 12) on a private D-Bus, managing a system of files: for
//! `appliance-update`'s tests and the daemon's end-to-end tests. Synchronous and independent of
//! any D-Bus client: the tests connect their own to [`RaucSystem::address`].
//!
//! [`RaucSystem::start`] starts its own `dbus-daemon` on a socket in a temporary directory and a
//! `rauc service` on it (`DBUS_STARTER_BUS_TYPE=session` makes RAUC 1.8 use the session bus
//! named by `DBUS_SESSION_BUS_ADDRESS`). The system it manages lives in the same directory: two
//! `raw` slots that are plain files (`rootfs.0` = A, `rootfs.1` = B), a custom bootloader
//! backend script that keeps the primary slot and each slot's good/bad state in files, the
//! booted slot given by `--override-boot-slot=A` (RAUC 1.8 would otherwise read `rauc.slot=`
//! from `/proc/cmdline`), a keyring made with openssl ([`Pki`]), and bundles built with
//! `rauc bundle` ([`RaucSystem::bundle`]).
//!
//! What the machine must offer for an installation to reach the slots: RAUC mounts a bundle's
//! squashfs on a loop device (root, `/dev/loop-control`), and a `verity` bundle additionally
//! through dm-verity (`/dev/mapper/control`). Where the sandbox and CI have no device-mapper
//! (this one's kernel is built without it), a `verity` installation fails at the mount; the
//! complete path (mount, write, slot status, new primary) needs a `plain` bundle, which needs
//! only the loop device. RAUC 1.8 checks the signature before it mounts, but the compatible
//! only after the mount, from the mounted manifest: a test of the compatible check wants the
//! format this machine can mount ([`mountable_format`]).

use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};

use tempfile::TempDir;

/// The system's `compatible` in `system.conf`: a bundle must carry it to be installed.
pub const COMPATIBLE: &str = "appliance-test";

/// The tools the rig drives; without them there is nothing to test against.
pub fn missing_tool() -> Option<&'static str> {
    ["rauc", "dbus-daemon", "openssl", "mksquashfs"]
        .into_iter()
        .find(|tool| {
            Command::new(tool)
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_err()
        })
}

/// RAUC mounts every bundle's squashfs on a loop device: that needs root and the loop driver.
pub fn can_loop_mount() -> bool {
    let root = fs::read_to_string("/proc/self/status").is_ok_and(|status| {
        status
            .lines()
            .find_map(|line| line.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().nth(1))
            == Some("0")
    });
    root && Path::new("/dev/loop-control").exists()
        && fs::read_to_string("/proc/filesystems").is_ok_and(|fs| fs.contains("squashfs"))
}

/// A `verity` bundle is mounted through dm-verity; RAUC opens this device to set it up.
pub fn has_device_mapper() -> bool {
    Path::new("/dev/mapper/control").exists()
}

/// The bundle format whose installation gets past the mount here: `verity` (what the firmware
/// ships) where device-mapper exists, else `plain`; `None` where no bundle can be mounted.
pub fn mountable_format() -> Option<&'static str> {
    match (can_loop_mount(), has_device_mapper()) {
        (true, true) => Some("verity"),
        (true, false) => Some("plain"),
        (false, _) => None,
    }
}

/// A CA (the keyring RAUC checks against) and a signing certificate it issued.
pub struct Pki {
    /// The CA certificate: the keyring.
    pub ca: PathBuf,
    /// The signer's certificate.
    pub cert: PathBuf,
    /// The signer's private key.
    pub key: PathBuf,
}

impl Pki {
    /// Makes a new CA and signer in `dir/name` (a CA of its own each time: another `name` gives
    /// a PKI whose bundles RAUC refuses).
    pub fn new(dir: &Path, name: &str) -> Self {
        let dir = dir.join(name);
        fs::create_dir_all(&dir).unwrap();
        let path = |file: &str| dir.join(file).to_str().unwrap().to_owned();
        let (ca_key, ca, key, csr, cert) = (
            path("ca.key"),
            path("ca.pem"),
            path("signer.key"),
            path("signer.csr"),
            path("signer.pem"),
        );
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        let ca_subject = format!("/CN={name} CA");
        let signer_subject = format!("/CN={name} signer");
        let mut args = vec!["req", "-x509"];
        args.extend(ec);
        args.extend([
            "-keyout",
            &ca_key,
            "-out",
            &ca,
            "-days",
            "2",
            "-subj",
            &ca_subject,
        ]);
        run("openssl", &args);
        let mut args = vec!["req"];
        args.extend(ec);
        args.extend(["-keyout", &key, "-out", &csr, "-subj", &signer_subject]);
        run("openssl", &args);
        run(
            "openssl",
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                &ca,
                "-CAkey",
                &ca_key,
                "-CAcreateserial",
                "-out",
                &cert,
                "-days",
                "2",
            ],
        );
        Self {
            ca: dir.join("ca.pem"),
            cert: dir.join("signer.pem"),
            key: dir.join("signer.key"),
        }
    }
}

fn run(program: &str, args: &[&str]) {
    let out = Command::new(program).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// 64 KiB that are not zeros, so a write to a (zeroed) slot shows.
pub fn image(seed: u32) -> Vec<u8> {
    let mut x = seed;
    (0..64 * 1024)
        .map(|_| {
            x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (x >> 24) as u8
        })
        .collect()
}

/// What goes into a bundle: its manifest's `[bundle] format`, `compatible` and `version`, and
/// the image for the `rootfs` slot class.
pub struct BundleSpec<'a> {
    /// `plain` or `verity`.
    pub format: &'a str,
    pub compatible: &'a str,
    pub version: &'a str,
    pub image: &'a [u8],
}

/// The bus, RAUC, and the system RAUC manages, in one temporary directory. Dropping it stops
/// RAUC and the bus and unmounts whatever RAUC left mounted.
///
/// The directory holds `slotA` and `slotB` (1 MiB of zeros each), `boot/` (the bootloader's
/// state: `primary`, `state.A`, `state.B`; see [`RaucSystem::boot_file`]), `system.conf`,
/// `bootloader.sh`, the keyring's [`Pki`] in `appliance/`, `rauc.log` and the bundles built.
pub struct RaucSystem {
    dir: TempDir,
    address: String,
    /// `dbus-daemon`.
    bus: Child,
    /// `rauc service`.
    service: Child,
    pki: Pki,
}

impl RaucSystem {
    /// Creates the system, starts the bus and `rauc service` on it. RAUC answers on the bus a
    /// moment later: wait for it with a client (and [`RaucSystem::service_exited`] to stop
    /// waiting when it died).
    pub fn start() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("rauc-test")
            .tempdir()
            .unwrap();
        let d = dir.path();
        let boot = d.join("boot");
        fs::create_dir_all(&boot).unwrap();
        fs::create_dir_all(d.join("mnt")).unwrap();
        fs::write(boot.join("primary"), "A\n").unwrap();
        fs::write(boot.join("state.A"), "good\n").unwrap();
        fs::write(boot.join("state.B"), "good\n").unwrap();
        for slot in ["slotA", "slotB"] {
            fs::write(d.join(slot), vec![0u8; 1024 * 1024]).unwrap();
        }
        // RAUC's custom bootloader backend protocol (1.8): `get-primary`, `set-primary
        // <bootname>`, `get-state <bootname>`, `set-state <bootname> good|bad`. `hold` makes
        // marking a slot bad (the first thing RAUC does to the target slot of an installation)
        // wait until `release` appears: a way to catch RAUC in the middle of an installation.
        // `set-primary` also makes the slot good, as barebox and U-Boot setups do by resetting
        // its boot attempts: RAUC marks the target bad before writing it and, for a custom
        // backend, only calls `set-primary` afterwards.
        let backend = d.join("bootloader.sh");
        fs::write(
            &backend,
            format!(
                r#"#!/bin/sh
boot='{boot}'
case "$1" in
get-primary) cat "$boot/primary" ;;
set-primary) echo "$2" > "$boot/primary"; echo good > "$boot/state.$2" ;;
get-state) cat "$boot/state.$2" ;;
set-state)
    if [ "$3" = bad ] && [ -e "$boot/hold" ]; then
        touch "$boot/held"
        i=0
        # Not past RAUC's end (a test kills it mid-installation) nor 30 s.
        while [ ! -e "$boot/release" ] && kill -0 "$PPID" 2>/dev/null && [ $i -lt 300 ]; do
            sleep 0.1; i=$((i+1))
        done
    fi
    echo "$3" > "$boot/state.$2" ;;
*) echo "unsupported: $*" >&2; exit 1 ;;
esac
"#,
                boot = boot.display()
            ),
        )
        .unwrap();
        fs::set_permissions(&backend, fs::Permissions::from_mode(0o755)).unwrap();
        let pki = Pki::new(d, "appliance");
        let conf = d.join("system.conf");
        fs::write(
            &conf,
            format!(
                "[system]\ncompatible={COMPATIBLE}\nvariant-name=devkit\nbootloader=custom\n\
                 statusfile={dir}/status.raucs\n\n\
                 [keyring]\npath={ca}\n\n\
                 [handlers]\nbootloader-custom-backend={backend}\n\n\
                 [slot.rootfs.0]\ndevice={dir}/slotA\ntype=raw\nbootname=A\n\n\
                 [slot.rootfs.1]\ndevice={dir}/slotB\ntype=raw\nbootname=B\n",
                dir = d.display(),
                ca = pki.ca.display(),
                backend = backend.display(),
            ),
        )
        .unwrap();

        let mut bus = Command::new("dbus-daemon")
            .args(["--session", "--nofork", "--print-address"])
            .arg(format!("--address=unix:path={}", d.join("bus").display()))
            .stdout(Stdio::piped())
            .stderr(fs::File::create(d.join("dbus.log")).unwrap())
            .spawn()
            .unwrap();
        // The address is printed once the daemon listens.
        let mut address = String::new();
        BufReader::new(bus.stdout.take().unwrap())
            .read_line(&mut address)
            .unwrap();
        let address = address.trim().to_owned();
        assert!(
            address.starts_with("unix:"),
            "dbus-daemon printed {address:?}"
        );

        let log = fs::File::create(d.join("rauc.log")).unwrap();
        let service = Command::new("rauc")
            .arg("service")
            .arg(format!("--conf={}", conf.display()))
            .arg(format!("--mount={}", d.join("mnt").display()))
            .arg("--override-boot-slot=A")
            .arg("--debug")
            .env("DBUS_STARTER_BUS_TYPE", "session")
            .env("DBUS_SESSION_BUS_ADDRESS", &address)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        Self {
            dir,
            address,
            bus,
            service,
            pki,
        }
    }

    /// The D-Bus address RAUC is on (`unix:path=…`).
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The temporary directory everything lives in.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `name` in the directory (`slotB`, `boot`, `system.conf`, …).
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The keyring's CA and a signer it trusts.
    pub fn pki(&self) -> &Pki {
        &self.pki
    }

    /// What `rauc service --debug` wrote so far.
    pub fn rauc_log(&self) -> String {
        fs::read_to_string(self.path("rauc.log")).unwrap_or_default()
    }

    /// A bootloader file, trimmed: `primary` (a bootname) or `state.A` / `state.B` (`good` or
    /// `bad`).
    pub fn boot_file(&self, name: &str) -> String {
        fs::read_to_string(self.path("boot").join(name))
            .unwrap()
            .trim()
            .to_owned()
    }

    /// From now on the bootloader script holds when RAUC marks a slot bad, which an
    /// installation does first to its target slot, until [`RaucSystem::release`].
    pub fn hold(&self) {
        fs::write(self.path("boot").join("hold"), "").unwrap();
    }

    /// Whether the bootloader script is (or was) holding: RAUC is mid-installation.
    pub fn held(&self) -> bool {
        self.path("boot").join("held").exists()
    }

    /// Lets a held (and any later) installation go on.
    pub fn release(&self) {
        fs::write(self.path("boot").join("release"), "").unwrap();
    }

    /// Builds a bundle signed by `pki` and returns its (absolute) path.
    pub fn bundle(&self, name: &str, spec: &BundleSpec<'_>, pki: &Pki) -> String {
        let content = self.path(&format!("{name}.content"));
        fs::create_dir_all(&content).unwrap();
        fs::write(content.join("rootfs.img"), spec.image).unwrap();
        fs::write(
            content.join("manifest.raucm"),
            format!(
                "[update]\ncompatible={}\nversion={}\ndescription=test bundle\nbuild=20240501\n\n\
                 [bundle]\nformat={}\n\n[image.rootfs]\nfilename=rootfs.img\n",
                spec.compatible, spec.version, spec.format
            ),
        )
        .unwrap();
        let out = self.path(&format!("{name}.raucb"));
        run(
            "rauc",
            &[
                "bundle",
                &format!("--cert={}", pki.cert.display()),
                &format!("--key={}", pki.key.display()),
                content.to_str().unwrap(),
                out.to_str().unwrap(),
            ],
        );
        out.to_str().unwrap().to_owned()
    }

    /// `Some` once `rauc service` has exited, with how.
    pub fn service_exited(&mut self) -> Option<ExitStatus> {
        self.service.try_wait().unwrap()
    }

    /// Kills `rauc service` (SIGKILL) and waits for it: RAUC gone from the bus, as after a crash.
    pub fn kill_service(&mut self) {
        self.service.kill().unwrap();
        self.service.wait().unwrap();
    }
}

impl Drop for RaucSystem {
    fn drop(&mut self) {
        // Lets a held bootloader script finish instead of outliving RAUC.
        let _ = fs::write(self.path("boot").join("release"), "");
        let _ = self.service.kill();
        let _ = self.service.wait();
        // A RAUC killed mid-installation leaves its bundle mounted under our directory.
        let mounts = fs::read_to_string("/proc/mounts").unwrap_or_default();
        let dir = self.dir.path().to_str().unwrap_or_default().to_owned();
        for mountpoint in mounts.lines().filter_map(|line| line.split(' ').nth(1)) {
            if mountpoint.starts_with(&dir) {
                let _ = Command::new("umount").arg("-l").arg(mountpoint).status();
            }
        }
        let _ = self.bus.kill();
        let _ = self.bus.wait();
        if std::thread::panicking() {
            eprintln!("--- rauc service log ---\n{}", self.rauc_log());
        }
    }
}
