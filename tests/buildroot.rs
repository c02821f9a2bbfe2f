//! The Buildroot external tree (`buildroot/`): `scripts/check-buildroot.sh` passes on it, and on
//! a copy with faults put in it fails, naming each of them. Needs shellcheck, genimage,
//! squashfs-tools, dosfstools, mtools and sfdisk (`just setup-test` installs them).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .expect("repository root")
}

/// Runs the lint on the checkout at `root`.
fn lint(root: &Path) -> Output {
    Command::new(repo().join("scripts/check-buildroot.sh"))
        .arg(root)
        .output()
        .expect("run scripts/check-buildroot.sh")
}

fn describe(output: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}--- stderr\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Copies the directory `from` to `to`, leaving out Buildroot's output (`buildroot/output/`).
fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let (source, target) = (entry.path(), to.join(entry.file_name()));
        let kind = entry.file_type().unwrap();
        if kind.is_dir() {
            if entry.file_name() != "output" {
                copy_tree(&source, &target);
            }
        } else if kind.is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(&source).unwrap(), &target).unwrap();
        } else {
            fs::copy(&source, &target).unwrap();
        }
    }
}

/// What the lint reads of a checkout: the external tree, the shell scripts it checks, and the
/// model manifests appliance-models.hash must agree with.
fn copy_checkout(to: &Path) {
    for dir in [
        "buildroot",
        "scripts",
        "rootfs-overlay",
        "appliance/vision/models",
    ] {
        copy_tree(&repo().join(dir), &to.join(dir));
    }
}

fn edit(path: &Path, change: impl FnOnce(String) -> String) {
    let text = fs::read_to_string(path).unwrap();
    let changed = change(text.clone());
    assert_ne!(text, changed, "{} unchanged by the edit", path.display());
    fs::write(path, changed).unwrap();
}

#[test]
fn the_external_tree_passes_its_lint() {
    let output = lint(&repo());
    assert!(output.status.success(), "{}", describe(&output));
    assert!(
        String::from_utf8_lossy(&output.stdout).starts_with("check-buildroot: ok"),
        "{}",
        describe(&output)
    );
}

#[test]
fn the_lint_names_each_fault_in_a_broken_copy() {
    let copy = tempfile::tempdir().unwrap();
    let root = copy.path();
    copy_checkout(root);
    let br = root.join("buildroot");

    // A package without its hash file.
    fs::remove_file(br.join("package/zlmediakit/zlmediakit.hash")).unwrap();
    // A symbol Buildroot does not have, and an overlay that does not exist.
    edit(&br.join("configs/appliance_rk3588_defconfig"), |text| {
        text.replace(
            "/board/common/rootfs-overlay\"",
            "/board/common/no-such-overlay\"",
        ) + "BR2_PACKAGE_NOT_IN_BUILDROOT=y\n"
    });
    // A-B slots of different sizes.
    edit(&br.join("board/qemu/aarch64-virt/genimage.cfg"), |text| {
        let b = text.find("partition rootfs-b").unwrap();
        let size = b + text[b..].find("size = 1G").unwrap();
        format!(
            "{}size = 512M{}",
            &text[..size],
            &text[size + "size = 1G".len()..]
        )
    });
    // A model pinned with a sha256 its manifest does not have.
    let yolox = "e8af074932d4ed7e232278e3055cefcdea3edf178874a3694ae292649fb464dd";
    edit(
        &br.join("package/appliance-models/appliance-models.hash"),
        |text| text.replace(yolox, &"0".repeat(64)),
    );

    let output = lint(root);
    assert!(!output.status.success(), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    for expected in [
        "package/zlmediakit: zlmediakit.hash is missing",
        "configs/appliance_rk3588_defconfig: BR2_PACKAGE_NOT_IN_BUILDROOT is neither defined",
        "configs/appliance_rk3588_defconfig: $(BR2_EXTERNAL_APPLIANCE_PATH)/board/common/no-such-overlay does not exist",
        "qemu/aarch64-virt/disk.img: rootfs-a and rootfs-b differ in size (2097152 and 1048576 sectors)",
        &format!("appliance-models.hash lacks yolox_nano/yolox_nano.onnx with sha256 {yolox}"),
        "appliance-models.hash pins yolox_nano/yolox_nano.onnx as 0000",
    ] {
        assert!(
            stderr.contains(expected),
            "no `{expected}` in\n{}",
            describe(&output)
        );
    }
}
