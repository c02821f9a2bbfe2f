//! `appliance-update` against the real `rauc service` (1.8 on Debian 12) on a private D-Bus:
//! [`appliance_tests::rauc`] runs it, with the system it manages (its docs tell what this
//! machine must offer for an installation to reach the slots).
//!
//! Where the sandbox and CI have no device-mapper (this one's kernel is built without it), the
//! `verity` installation fails at the mount, and the test checks exactly that failure as RAUC
//! reports it; the complete path (mount, write, slot status, new primary) is covered by a
//! `plain` bundle, which needs only the loop device. RAUC 1.8 checks the signature before it
//! mounts (covered with `verity` bundles either way), but the compatible only after the mount,
//! from the mounted manifest: that test uses the format this machine can mount
//! ([`mountable_format`]).

use std::fs;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use appliance_tests::rauc::{
    BundleSpec, COMPATIBLE, Pki, RaucSystem, can_loop_mount, has_device_mapper, image,
    missing_tool, mountable_format,
};
use appliance_update::{
    BootStatus, Error, MarkState, Operation, Rauc, SlotState, SlotStatus, UpdateStatus,
};
use futures_lite::StreamExt;
use sha2::{Digest, Sha256};

/// No step of a test takes more than a few seconds; this only keeps a broken one from hanging.
const PATIENCE: Duration = Duration::from_secs(30);

async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(PATIENCE, future)
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer within {PATIENCE:?}"))
}

macro_rules! rig_or_skip {
    () => {
        match missing_tool() {
            Some(tool) => {
                eprintln!("skipped: `{tool}` is not installed");
                return;
            }
            None => Rig::start().await,
        }
    };
}

/// The RAUC system and a client connected to it. Dropping it stops RAUC and the bus (the
/// system's own drop) and then the client.
struct Rig {
    system: RaucSystem,
    client: Rauc,
}

impl Rig {
    async fn start() -> Self {
        let system = RaucSystem::start();
        let client = Rauc::connect(system.address()).await.unwrap();
        let mut rig = Self { system, client };
        rig.wait_for_rauc().await;
        rig
    }

    /// RAUC is up once it answers on the bus.
    async fn wait_for_rauc(&mut self) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            match self.client.status().await {
                Ok(_) => return,
                Err(e) if Instant::now() > deadline => panic!("RAUC never answered: {e}"),
                Err(_) => {}
            }
            if let Some(exit) = self.system.service_exited() {
                panic!(
                    "rauc service exited with {exit}:\n{}",
                    self.system.rauc_log()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn rauc(&self) -> &Rauc {
        &self.client
    }

    async fn status(&self) -> UpdateStatus {
        within("status", self.rauc().status()).await.unwrap()
    }

    /// Records every value RAUC gives `Operation`, on a connection of its own.
    async fn record_operations(&self) -> Arc<Mutex<Vec<String>>> {
        let connection = zbus::connection::Builder::address(self.system.address())
            .unwrap()
            .build()
            .await
            .unwrap();
        let rule = zbus::MatchRule::builder()
            .msg_type(zbus::message::Type::Signal)
            .sender(appliance_update::SERVICE)
            .unwrap()
            .interface("org.freedesktop.DBus.Properties")
            .unwrap()
            .build();
        let mut stream = zbus::MessageStream::for_match_rule(rule, &connection, None)
            .await
            .unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        tokio::spawn(async move {
            let _connection = connection;
            while let Some(Ok(message)) = stream.next().await {
                let Some(changed) = zbus::fdo::PropertiesChanged::from_message(message) else {
                    continue;
                };
                let args = changed.args().unwrap();
                if let Some(zbus::zvariant::Value::Str(op)) =
                    args.changed_properties.get("Operation")
                {
                    record.lock().unwrap().push(op.to_string());
                }
            }
        });
        seen
    }
}

fn slot<'s>(status: &'s UpdateStatus, name: &str) -> &'s SlotStatus {
    let slots = status.slots.as_ref().expect("slots reported");
    slots
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no slot {name}: {slots:?}"))
}

/// The state the rig starts in: A booted and primary, B free, nothing installed.
fn assert_untouched(status: &UpdateStatus) {
    assert_eq!(status.primary.as_deref(), Some("rootfs.0"));
    let b = slot(status, "rootfs.1");
    assert_eq!(b.state, SlotState::Inactive);
    assert_eq!((&b.bundle_version, b.installed_count), (&None, None));
}

#[tokio::test]
async fn status_reports_the_system_and_both_slots() {
    let rig = rig_or_skip!();
    let status = rig.status().await;

    assert_eq!(status.compatible, COMPATIBLE);
    assert_eq!(status.variant.as_deref(), Some("devkit"));
    assert_eq!(status.boot_slot, "A");
    assert_eq!(status.primary.as_deref(), Some("rootfs.0"));
    assert_eq!(status.operation, Operation::Idle);
    assert_eq!(status.last_error, None);

    let slots = status.slots.as_ref().unwrap();
    assert_eq!(
        slots.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
        ["rootfs.0", "rootfs.1"]
    );
    for (s, bootname, file, state) in [
        (&slots[0], "A", "slotA", SlotState::Booted),
        (&slots[1], "B", "slotB", SlotState::Inactive),
    ] {
        assert_eq!(s.class, "rootfs");
        assert_eq!(s.slot_type.as_deref(), Some("raw"));
        assert_eq!(s.bootname.as_deref(), Some(bootname));
        assert_eq!(Path::new(&s.device), rig.system.path(file));
        assert_eq!(s.state, state);
        assert_eq!(s.boot_status, Some(BootStatus::Good));
        // Nothing installed or activated yet: RAUC leaves those keys out.
        assert_eq!(
            (&s.bundle_version, &s.installed_timestamp, s.activated_count),
            (&None, &None, None)
        );
    }
    assert_eq!(
        status.booted_slot().map(|s| s.name.as_str()),
        Some("rootfs.0")
    );

    let json = serde_json::to_value(&status).unwrap();
    assert_eq!(json["slots"][0]["state"], "booted");
    assert_eq!(json["operation"], "idle");
}

#[tokio::test]
async fn marks_reach_the_bootloader_and_the_status() {
    let rig = rig_or_skip!();
    let rauc = rig.rauc();

    let marked = within("mark bad", rauc.mark(MarkState::Bad, "booted"))
        .await
        .unwrap();
    assert_eq!(
        (marked.slot.as_str(), marked.message.as_str()),
        ("rootfs.0", "marked slot rootfs.0 as bad")
    );
    assert_eq!(rig.system.boot_file("state.A"), "bad");
    assert_eq!(
        slot(&rig.status().await, "rootfs.0").boot_status,
        Some(BootStatus::Bad)
    );

    let marked = within("mark good", rauc.mark(MarkState::Good, "booted"))
        .await
        .unwrap();
    assert_eq!(marked.slot, "rootfs.0");
    assert_eq!(rig.system.boot_file("state.A"), "good");
    assert_eq!(
        slot(&rig.status().await, "rootfs.0").boot_status,
        Some(BootStatus::Good)
    );

    let marked = within("mark active", rauc.mark(MarkState::Active, "other"))
        .await
        .unwrap();
    assert_eq!(
        (marked.slot.as_str(), marked.message.as_str()),
        ("rootfs.1", "activated slot rootfs.1")
    );
    assert_eq!(rig.system.boot_file("primary"), "B");
    let status = rig.status().await;
    assert_eq!(status.primary.as_deref(), Some("rootfs.1"));
    let b = slot(&status, "rootfs.1");
    assert_eq!(b.activated_count, Some(1));
    assert!(
        b.activated_timestamp
            .as_deref()
            .is_some_and(|t| t.ends_with('Z')),
        "{b:?}"
    );
    // Activation changes the next boot, not the running system.
    assert_eq!(status.boot_slot, "A");
    assert_eq!(slot(&status, "rootfs.0").state, SlotState::Booted);

    match within("mark unknown", rauc.mark(MarkState::Good, "rootfs.9")).await {
        Err(Error::Refused {
            method: "Mark",
            message,
        }) => assert!(message.contains("rootfs.9"), "{message}"),
        other => panic!("marking an unknown slot: {other:?}"),
    }
}

#[tokio::test]
async fn bundle_info_checks_the_signature() {
    let rig = rig_or_skip!();
    let image = image(1);
    let good = BundleSpec {
        format: "verity",
        compatible: COMPATIBLE,
        version: "1.2.3",
        image: &image,
    };
    let path = rig.system.bundle("good", &good, rig.system.pki());
    let info = within("info", rig.rauc().bundle_info(&path)).await.unwrap();
    assert_eq!(
        (info.compatible.as_str(), info.version.as_deref()),
        (COMPATIBLE, Some("1.2.3"))
    );

    let rogue = Pki::new(rig.system.dir(), "rogue");
    let path = rig.system.bundle("rogue", &good, &rogue);
    match within("info", rig.rauc().bundle_info(&path)).await {
        // RAUC 1.8's Info says no more than "rauc info error"; its log has the reason.
        Err(Error::Refused { method: "Info", .. }) => {}
        other => panic!("info of a bundle signed by another CA: {other:?}"),
    }
}

/// The whole installation: RAUC checks and mounts the bundle, writes the image into the free
/// slot (B), records it in the slot status and makes B primary. A `plain` bundle, because its
/// mount needs only a loop device (see the module docs).
#[tokio::test]
async fn install_writes_the_free_slot_and_makes_it_primary() {
    let rig = rig_or_skip!();
    let image = image(2);
    let path = rig.system.bundle(
        "plain",
        &BundleSpec {
            format: "plain",
            compatible: COMPATIBLE,
            version: "1.2.3",
            image: &image,
        },
        rig.system.pki(),
    );
    if !can_loop_mount() {
        // Not covered here: everything after the mount. What remains is RAUC's refusal.
        let installation = within("install", rig.rauc().install(&path)).await.unwrap();
        match within("finish", installation.finish()).await {
            Err(Error::InstallFailed { message, .. }) => {
                assert!(message.contains("mount"), "{message}")
            }
            other => panic!("install without loop mounts: {other:?}"),
        }
        eprintln!("not covered: this machine cannot loop-mount, so no bundle reaches a slot");
        return;
    }

    let mut installation = within("install", rig.rauc().install(&path)).await.unwrap();
    let mut steps = Vec::new();
    while let Some(step) = within("progress", installation.next_progress())
        .await
        .unwrap()
    {
        steps.push(step);
    }
    within("finish", installation.finish()).await.unwrap();

    assert_eq!(
        (steps[0].percent, steps[0].message.as_str()),
        (0, "Installing")
    );
    let last = steps.last().unwrap();
    assert_eq!(
        (last.percent, last.message.as_str()),
        (100, "Installing done.")
    );
    assert!(
        steps.windows(2).all(|w| w[0].percent <= w[1].percent),
        "{steps:?}"
    );
    assert!(
        steps
            .iter()
            .any(|s| s.message == "Copying image to rootfs.1"),
        "{steps:?}"
    );

    let status = rig.status().await;
    assert_eq!(
        (status.operation, &status.last_error),
        (Operation::Idle, &None)
    );
    assert_eq!(status.primary.as_deref(), Some("rootfs.1"));
    assert_eq!(status.boot_slot, "A");
    let b = slot(&status, "rootfs.1");
    assert_eq!(b.bundle_compatible.as_deref(), Some(COMPATIBLE));
    assert_eq!(b.bundle_version.as_deref(), Some("1.2.3"));
    assert_eq!(b.bundle_build.as_deref(), Some("20240501"));
    assert_eq!(b.installed_status.as_deref(), Some("ok"));
    assert_eq!(b.installed_count, Some(1));
    assert!(b.installed_timestamp.is_some());
    let sha256: String = Sha256::digest(&image)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        (b.sha256.as_deref(), b.size),
        (Some(sha256.as_str()), Some(image.len() as u64))
    );
    assert_eq!(b.boot_status, Some(BootStatus::Good));
    let a = slot(&status, "rootfs.0");
    assert_eq!((a.state, &a.bundle_version), (SlotState::Booted, &None));

    assert_eq!(rig.system.boot_file("primary"), "B");
    assert_eq!(
        &fs::read(rig.system.path("slotB")).unwrap()[..image.len()],
        &image[..]
    );
    assert!(
        fs::read(rig.system.path("slotA"))
            .unwrap()
            .iter()
            .all(|&b| b == 0),
        "slot A was written"
    );
}

/// Starts installing a `plain` bundle of `image(seed)` and waits until the bootloader script
/// holds RAUC in the middle of it (until `release`); returns the installation and the bundle.
/// `None`, said, where this machine cannot loop-mount: RAUC never gets that far.
async fn held_installation(
    rig: &Rig,
    seed: u32,
    version: &str,
) -> Option<(appliance_update::Installation, String)> {
    let image = image(seed);
    let path = rig.system.bundle(
        "plain",
        &BundleSpec {
            format: "plain",
            compatible: COMPATIBLE,
            version,
            image: &image,
        },
        rig.system.pki(),
    );
    if !can_loop_mount() {
        eprintln!("not covered: this machine cannot loop-mount, so RAUC never gets that far");
        return None;
    }
    rig.system.hold();
    let installation = within("install", rig.rauc().install(&path)).await.unwrap();
    within("held", async {
        while !rig.system.held() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    Some((installation, path))
}

/// While RAUC installs it refuses slot reads and a second installation; `status` still answers
/// with what RAUC does report.
#[tokio::test]
async fn status_and_a_second_install_during_an_installation() {
    let rig = rig_or_skip!();
    let Some((installation, path)) = held_installation(&rig, 3, "2.0").await else {
        return;
    };

    let status = rig.status().await;
    assert_eq!(status.operation, Operation::Installing);
    assert_eq!((&status.slots, &status.primary), (&None, &None));
    assert_eq!(status.compatible, COMPATIBLE);
    assert!(
        status.progress.percent > 0 && status.progress.percent < 100,
        "{:?}",
        status.progress
    );

    match within("second install", rig.rauc().install(&path)).await {
        Err(Error::Refused {
            method: "InstallBundle",
            message,
        }) => {
            assert_eq!(message, "Already processing a different method")
        }
        Ok(_) => panic!("RAUC accepted a second installation"),
        Err(e) => panic!("second install: {e}"),
    }
    // RAUC 1.8 sets `Operation` back to idle when it refuses that second call, although the
    // first installation goes on. `status` then asks for the slots, RAUC refuses, and the
    // status still answers, without them. (Should a later RAUC fix this, the first assertion
    // fails here: the comment in `Rauc::status` and this test want updating then.)
    let status = rig.status().await;
    assert_eq!(status.operation, Operation::Idle);
    assert_eq!((&status.slots, &status.primary), (&None, &None));

    rig.system.release();
    within("finish", installation.finish()).await.unwrap();
    assert_eq!(
        slot(&rig.status().await, "rootfs.1")
            .bundle_version
            .as_deref(),
        Some("2.0")
    );
}

/// RAUC going away mid-installation ends the wait with `ServiceGone` instead of a hang.
#[tokio::test]
async fn rauc_exiting_mid_installation_is_reported() {
    let mut rig = rig_or_skip!();
    let Some((installation, _)) = held_installation(&rig, 4, "3.0").await else {
        return;
    };
    rig.system.kill_service();
    match within("finish", installation.finish()).await {
        Err(Error::ServiceGone) => {}
        other => panic!("finish after RAUC was killed: {other:?}"),
    }
    match within("status", rig.rauc().status()).await {
        Err(Error::Bus(_)) => {}
        other => panic!("status without RAUC on the bus: {other:?}"),
    }
}

/// The format the firmware ships. Where device-mapper exists the installation succeeds; where
/// it does not (this sandbox), RAUC accepts the job, reports it as installing, and fails at
/// the dm-verity mount with an error that says so. Not covered without device-mapper: the
/// dm-verity mount and what follows it for a `verity` bundle (the `plain` test covers the
/// write, status and activation that follow any mount).
#[tokio::test]
async fn install_verity_bundle() {
    let rig = rig_or_skip!();
    let image = image(5);
    let path = rig.system.bundle(
        "verity",
        &BundleSpec {
            format: "verity",
            compatible: COMPATIBLE,
            version: "4.0",
            image: &image,
        },
        rig.system.pki(),
    );
    let operations = rig.record_operations().await;
    let mut installation = within("install", rig.rauc().install(&path)).await.unwrap();
    let first = within("progress", installation.next_progress())
        .await
        .unwrap();
    assert_eq!(first.map(|p| p.message), Some("Installing".to_owned()));
    let outcome = within("finish", installation.finish()).await;
    let status = rig.status().await;
    assert_eq!(status.operation, Operation::Idle);

    if can_loop_mount() && has_device_mapper() {
        outcome.unwrap();
        assert_eq!(
            slot(&status, "rootfs.1").bundle_version.as_deref(),
            Some("4.0")
        );
        assert_eq!(status.primary.as_deref(), Some("rootfs.1"));
    } else {
        let Err(Error::InstallFailed { code, message }) = outcome else {
            panic!("verity install without device-mapper: {outcome:?}")
        };
        assert_ne!(code, 0);
        if has_device_mapper() {
            assert!(message.contains("Failed mounting bundle"), "{message}");
        } else {
            assert_eq!(
                message,
                "Failed mounting bundle: Failed to open /dev/mapper/control: No such file or directory"
            );
        }
        assert_eq!(status.last_error.as_deref(), Some(message.as_str()));
        assert_untouched(&status);
    }
    // Our own subscription may lag the client's by a message or two.
    within("operations", async {
        loop {
            if operations.lock().unwrap().last().map(String::as_str) == Some("idle") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert_eq!(*operations.lock().unwrap(), ["installing", "idle"]);
}

/// A bundle for another product is accepted as a job and fails before anything is written,
/// with RAUC's words for it.
#[tokio::test]
async fn wrong_compatible_fails_clearly() {
    let rig = rig_or_skip!();
    let image = image(6);
    let format = mountable_format();
    let path = rig.system.bundle(
        "other",
        &BundleSpec {
            format: format.unwrap_or("verity"),
            compatible: "other-box",
            version: "1.0",
            image: &image,
        },
        rig.system.pki(),
    );
    let installation = within("install", rig.rauc().install(&path)).await.unwrap();
    let outcome = within("finish", installation.finish()).await;
    let Err(Error::InstallFailed { code, message }) = outcome else {
        panic!("install of another product's bundle: {outcome:?}")
    };
    assert_ne!(code, 0);
    if format.is_none() {
        // RAUC 1.8 reads the compatible from the mounted bundle: without a mount it fails first.
        assert!(message.starts_with("Failed mounting bundle"), "{message}");
        eprintln!(
            "not covered: this machine cannot mount a bundle, RAUC fails before the compatible check"
        );
    } else {
        assert_eq!(
            message,
            format!(
                "Installation error: Compatible mismatch: Expected '{COMPATIBLE}' but bundle \
                 manifest has 'other-box'"
            )
        );
    }
    let status = rig.status().await;
    assert_eq!(status.last_error.as_deref(), Some(message.as_str()));
    assert_untouched(&status);
}

/// A bundle signed by a CA outside the keyring, and a bundle that is not there.
#[tokio::test]
async fn bad_signature_and_missing_bundle_fail_clearly() {
    let rig = rig_or_skip!();
    let image = image(7);
    let rogue = Pki::new(rig.system.dir(), "rogue");
    let path = rig.system.bundle(
        "rogue",
        &BundleSpec {
            format: "verity",
            compatible: COMPATIBLE,
            version: "1.0",
            image: &image,
        },
        &rogue,
    );
    let installation = within("install", rig.rauc().install(&path)).await.unwrap();
    match within("finish", installation.finish()).await {
        Err(Error::InstallFailed { message, .. }) => {
            assert!(
                message.starts_with("signature verification failed"),
                "{message}"
            )
        }
        other => panic!("install of a bundle signed by another CA: {other:?}"),
    }
    assert_untouched(&rig.status().await);

    let missing = rig.system.path("missing.raucb");
    let installation = within("install", rig.rauc().install(missing.to_str().unwrap()))
        .await
        .unwrap();
    match within("finish", installation.finish()).await {
        Err(Error::InstallFailed { message, .. }) => {
            assert!(message.contains("No such file or directory"), "{message}")
        }
        other => panic!("install of a missing bundle: {other:?}"),
    }
}
