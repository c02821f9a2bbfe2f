//! What the benchmark reads from the operating system: memory peaks, file sizes, the machine.

use std::fs;
use std::path::Path;

use anyhow::{Context, Result};
use nix::sys::statfs::{self, FsType};
use tempfile::TempDir;

/// Peak resident set size of this process (`VmHWM`), in KiB.
pub fn peak_rss_kib() -> Result<u64> {
    let status = fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().strip_suffix("kB"))
        .and_then(|kib| kib.trim().parse().ok())
        .context("no VmHWM line in /proc/self/status")
}

/// Sum of the (apparent) sizes of all files under `dir`.
pub fn dir_size(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() {
            dir_size(&entry.path())?
        } else {
            meta.len()
        };
    }
    Ok(total)
}

/// A fresh directory for one run, inside `parent` if given (else the system temp dir). Fresh so
/// that a rerun never measures or crash-tests leftovers of an earlier one.
pub fn work_dir(parent: Option<&Path>) -> Result<TempDir> {
    let mut builder = tempfile::Builder::new();
    builder.prefix("store-bench-");
    let dir = match parent {
        Some(parent) => {
            fs::create_dir_all(parent)?;
            builder.tempdir_in(parent)
        }
        None => builder.tempdir(),
    };
    dir.context("creating the work directory")
}

/// Name of the filesystem holding `path`. Durability numbers mean nothing on tmpfs, where
/// `fsync` returns at once, so the report says which one was measured.
pub fn filesystem(path: &Path) -> String {
    let known = [
        (statfs::TMPFS_MAGIC, "tmpfs"),
        (statfs::EXT4_SUPER_MAGIC, "ext2/3/4"),
        (statfs::XFS_SUPER_MAGIC, "xfs"),
        (statfs::BTRFS_SUPER_MAGIC, "btrfs"),
        (statfs::OVERLAYFS_SUPER_MAGIC, "overlayfs"),
    ];
    match statfs::statfs(path) {
        Ok(stat) => {
            let kind: FsType = stat.filesystem_type();
            known
                .iter()
                .find(|(magic, _)| *magic == kind)
                .map_or_else(|| format!("fs magic {:#x}", kind.0), |(_, n)| n.to_string())
        }
        Err(e) => format!("unknown ({e})"),
    }
}

/// One line describing the machine: CPUs, CPU model, kernel.
pub fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .and_then(|rest| rest.split_once(':'))
                .map(|(_, name)| name.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease")
        .map_or_else(|_| "unknown".into(), |k| k.trim().to_string());
    format!("nproc {cpus}, {model}, Linux {kernel}")
}
