//! Runs the real `store-bench crash` binary: a writer process appending durably is SIGKILLed at
//! random moments, and after every kill the store must reopen with every acknowledged event
//! present and `verify` clean.

use std::path::PathBuf;
use std::process::Command;

const CYCLES: u32 = 5;

/// `store-bench` of the same profile as this test: the test runs from `target/<profile>/deps/`.
fn store_bench() -> PathBuf {
    let test_exe = std::env::current_exe().expect("path of the test executable");
    let profile_dir = test_exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("the test executable lives in target/<profile>/deps");
    let binary = profile_dir.join("store-bench");
    assert!(
        binary.is_file(),
        "{} not found: run `cargo build --workspace --bins` first (the Justfile's test recipe does)",
        binary.display()
    );
    binary
}

#[test]
fn acknowledged_events_survive_sigkill() {
    let dir = tempfile::tempdir().expect("temp dir");
    let output = Command::new(store_bench())
        .args(["crash", "--cycles", &CYCLES.to_string(), "--dir"])
        .arg(dir.path())
        .output()
        .expect("running store-bench");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "store-bench crash failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    // crash test: N cycles, X acknowledged events all present, Y events written in total, 0 problems
    let line = stdout
        .lines()
        .find(|l| l.starts_with("crash test:"))
        .unwrap_or_else(|| panic!("no summary line in:\n{stdout}\n{stderr}"));
    let number_before = |label: &str| -> u64 {
        let (head, _) = line
            .split_once(label)
            .unwrap_or_else(|| panic!("no `{label}` in `{line}`"));
        let number = head.split_whitespace().last().unwrap_or_default();
        number
            .parse()
            .unwrap_or_else(|_| panic!("`{number}` before `{label}` in `{line}` is no number"))
    };
    assert_eq!(number_before(" cycles,"), u64::from(CYCLES), "{line}");
    assert!(
        number_before(" acknowledged events all present") > 0,
        "no event was acknowledged before the kills: {line}"
    );
    assert!(line.ends_with(", 0 problems"), "{line}");
}
