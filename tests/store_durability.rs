//! The store's durability promise, checked at the system-call level: every durable commit ends in
//! an `fdatasync` of sled's data file (sled's own flush is `sync_file_range`, which a power cut can
//! undo). Runs the real `store-bench commits` under strace.

use std::process::Command;

use appliance_tests::binary;

#[test]
fn every_durable_commit_fdatasyncs_the_store_file() {
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("trace");
    let commits = 25;
    let out = Command::new("strace")
        .args([
            "-f",
            "-qq",
            "-y",
            "-e",
            "trace=fdatasync,fsync,sync_file_range",
            "-o",
        ])
        .arg(&trace)
        .arg(binary("store-bench"))
        .args(["commits", "--count", &commits.to_string(), "--dir"])
        .arg(dir.path().join("store"))
        .output()
        .expect("strace runs (just setup installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("committed {commits}")
    );
    let trace = std::fs::read_to_string(&trace).unwrap();
    let barriers = trace
        .lines()
        .filter(|l| l.contains("fdatasync(") && l.contains("/records/db>") && l.contains("= 0"))
        .count();
    // At least one per commit (closing the store adds one more).
    assert!(
        barriers >= commits,
        "{barriers} fdatasync calls on the store file for {commits} commits:\n{trace}"
    );
}
