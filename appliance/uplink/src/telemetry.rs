//! The box's health for the cloud: `appliance.telemetry.v1`, sent every few seconds on
//! `<prefix>/<device id>/telemetry` (documented in `docs/uplink-schema.md`).
//!
//! A [`Collector`] reads what the kernel already accounts for (`/proc`, `/sys`); the daemon adds
//! what only it knows (cameras, uplinks) and wraps both in a [`Telemetry`] message.
//!
//! Every source is optional. A box without a GPU, a kernel without a sensor driver, a container
//! without `/sys` or a debugfs only root can read are all normal, so a source that is absent,
//! unreadable or not in the expected format reads as `None` (or an empty list): a sample never
//! fails and never panics.
//!
//! The reads are blocking file IO, and some hwmon sensors sit on I2C and take milliseconds to
//! answer: call [`Collector::sample`] from `spawn_blocking`.

use std::fs;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};

use appliance_model::Timestamp;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::sender::UplinkStatus;

/// `schema` of a [`Telemetry`] message.
pub const TELEMETRY_SCHEMA: &str = "appliance.telemetry.v1";

/// Readings outside this range are a driver's way of saying "no reading" (some report -274 °C
/// for a disabled zone), not a temperature a running box can have.
const PLAUSIBLE_CELSIUS: RangeInclusive<f64> = -100.0..=300.0;

/// One health snapshot: `{"schema":"appliance.telemetry.v1","device_id":…,"at":…,"uptime_s":…,…}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Telemetry {
    /// `appliance.telemetry.v1`.
    pub schema: String,
    pub device_id: String,
    /// When the snapshot was taken.
    pub at: Timestamp,
    /// What the box measured of itself; its fields sit at the top level of the message.
    #[serde(flatten)]
    pub system: SystemSample,
    pub cameras: CameraCounts,
    /// One entry per configured upstream.
    pub uplinks: Vec<UplinkSummary>,
}

impl Telemetry {
    pub fn new(
        device_id: impl Into<String>,
        at: Timestamp,
        system: SystemSample,
        cameras: CameraCounts,
        uplinks: Vec<UplinkSummary>,
    ) -> Telemetry {
        Telemetry {
            schema: TELEMETRY_SCHEMA.to_owned(),
            device_id: device_id.into(),
            at,
            system,
            cameras,
            uplinks,
        }
    }

    pub fn to_json(&self) -> Vec<u8> {
        // Cannot fail: no maps with non-string keys, and the collector keeps floats finite.
        serde_json::to_vec(self).expect("a telemetry message serialises")
    }
}

/// What a [`Collector`] reads from the kernel; `None` where the box cannot tell.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SystemSample {
    /// Seconds since the system booted (`/proc/uptime`).
    pub uptime_s: Option<u64>,
    /// System-wide CPU busy share since the previous sample, 0–100 over all cores; `None` on
    /// the first sample.
    pub cpu_percent: Option<f64>,
    /// The 1-minute load average.
    pub load_1m: Option<f64>,
    pub memory: Option<MemoryUsage>,
    /// Every readable thermal zone and hwmon sensor, in a stable order.
    pub temperatures: Vec<Temperature>,
    /// The file system of the data directory (event store and media).
    pub disk: Option<DiskUsage>,
    /// GPU load, 0–100 (Jetson, RK3588 Mali).
    pub gpu_load_percent: Option<f64>,
    /// NPU load averaged over its cores, 0–100 (RK3588).
    pub npu_load_percent: Option<f64>,
}

/// `/proc/meminfo`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MemoryUsage {
    pub total_bytes: u64,
    /// What can be allocated without swapping (`MemAvailable`, caches included).
    pub available_bytes: u64,
}

/// One temperature sensor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Temperature {
    /// A thermal zone's `type` (`soc-thermal`, `CPU-therm`), or `<hwmon name>/<label>`
    /// (`nvme/Composite`), `<hwmon name>/temp<N>` for an unlabelled hwmon input.
    pub sensor: String,
    pub celsius: f64,
}

/// Space on the file system holding `path`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DiskUsage {
    pub path: String,
    pub total_bytes: u64,
    /// Available to the daemon (the root reserve excluded): what the store's free-space floor
    /// counts too.
    pub free_bytes: u64,
}

/// Cameras by state, filled in by the daemon.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CameraCounts {
    pub online: u32,
    pub offline: u32,
}

/// An upstream's state, from its [`UplinkStatus`].
///
/// A wire type of its own, so that the API's status can change without changing
/// `appliance.telemetry.v1`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct UplinkSummary {
    /// `mqtt`, `kafka`.
    pub name: String,
    pub connected: bool,
    /// Outbox entries not yet delivered, counted up to 10,000.
    pub depth: u64,
    /// How long the oldest undelivered event has waited, in ms; `None` when caught up.
    pub oldest_pending_ms: Option<u64>,
    /// When the broker last acknowledged a batch or answered a connection check (Unix ms).
    pub last_success_ms: Option<i64>,
    /// Events retention deleted before this upstream could send them, since the daemon started.
    pub skipped_deleted: u64,
}

impl From<&UplinkStatus> for UplinkSummary {
    fn from(status: &UplinkStatus) -> UplinkSummary {
        UplinkSummary {
            name: status.name.clone(),
            connected: status.connected,
            depth: status.depth,
            oldest_pending_ms: status.oldest_pending_ms,
            last_success_ms: status.last_success_ms,
            skipped_deleted: status.skipped_deleted,
        }
    }
}

/// Reads a [`SystemSample`] from a `/proc` and a `/sys` tree.
#[derive(Debug, Clone)]
pub struct Collector {
    proc_root: PathBuf,
    sys_root: PathBuf,
    /// The CPU counters of the last sample that had them: CPU use is a difference of two.
    previous_cpu: Option<CpuTimes>,
}

impl Collector {
    /// Reads from these roots instead of `/proc` and `/sys` (tests, a chroot).
    pub fn new(proc_root: PathBuf, sys_root: PathBuf) -> Collector {
        Collector {
            proc_root,
            sys_root,
            previous_cpu: None,
        }
    }

    /// The running system's `/proc` and `/sys`.
    pub fn system() -> Collector {
        Collector::new(PathBuf::from("/proc"), PathBuf::from("/sys"))
    }

    /// Takes a sample; `data_dir` is the directory whose file system `disk` describes.
    pub fn sample(&mut self, data_dir: &Path) -> SystemSample {
        let cpu = read(&self.proc_root.join("stat")).and_then(|text| parse_cpu_times(&text));
        let cpu_percent = self
            .previous_cpu
            .zip(cpu)
            .and_then(|(before, now)| busy_percent(before, now));
        // After an unreadable /proc/stat the next percentage spans both intervals.
        self.previous_cpu = cpu.or(self.previous_cpu);
        SystemSample {
            uptime_s: read(&self.proc_root.join("uptime")).and_then(|text| parse_uptime(&text)),
            cpu_percent,
            load_1m: read(&self.proc_root.join("loadavg")).and_then(|text| parse_load(&text)),
            memory: read(&self.proc_root.join("meminfo")).and_then(|text| parse_meminfo(&text)),
            temperatures: self.temperatures(),
            disk: disk_usage(data_dir),
            gpu_load_percent: self.gpu_load(),
            npu_load_percent: self.npu_load(),
        }
    }

    /// Thermal zones, then hwmon sensors, each by index. A sensor can show up in both (the
    /// thermal framework registers hwmon devices for some zones): the cloud sees both.
    fn temperatures(&self) -> Vec<Temperature> {
        let mut out = Vec::new();
        for zone in numbered_entries(&self.sys_root.join("class/thermal"), "thermal_zone") {
            let Some(celsius) = read(&zone.join("temp")).and_then(|text| millidegrees(&text))
            else {
                continue;
            };
            let sensor = read(&zone.join("type"))
                .map(|text| text.trim().to_owned())
                .filter(|name| !name.is_empty())
                .unwrap_or_else(|| file_name(&zone));
            out.push(Temperature { sensor, celsius });
        }
        for chip in numbered_entries(&self.sys_root.join("class/hwmon"), "hwmon") {
            let name = read(&chip.join("name"))
                .map(|text| text.trim().to_owned())
                .filter(|name| !name.is_empty())
                .unwrap_or_else(|| file_name(&chip));
            for input in numbered_files(&chip, "temp", "_input") {
                let Some(celsius) = read(&input.path).and_then(|text| millidegrees(&text)) else {
                    continue;
                };
                let label = read(&chip.join(format!("temp{}_label", input.index)))
                    .map(|text| text.trim().to_owned())
                    .filter(|label| !label.is_empty())
                    .unwrap_or_else(|| format!("temp{}", input.index));
                out.push(Temperature {
                    sensor: format!("{name}/{label}"),
                    celsius,
                });
            }
        }
        out
    }

    fn gpu_load(&self) -> Option<f64> {
        // Jetson (nvgpu): per mille; the node moved between L4T releases.
        let jetson = ["devices/gpu.0/load", "devices/platform/gpu.0/load"]
            .iter()
            .find_map(|path| read(&self.sys_root.join(path)))
            .and_then(|text| text.trim().parse::<u32>().ok())
            .map(|per_mille| f64::from(per_mille) / 10.0);
        // RK3588 Mali (devfreq): `<percent>@<frequency>Hz`.
        let rockchip = || {
            read(&self.sys_root.join("class/devfreq/fb000000.gpu/load"))
                .and_then(|text| text.trim().split_once('@')?.0.parse::<u32>().ok())
                .map(f64::from)
        };
        jetson
            .or_else(rockchip)
            .filter(|load| (0.0..=100.0).contains(load))
    }

    fn npu_load(&self) -> Option<f64> {
        // The rknpu driver has it in debugfs, or in procfs when built with its procfs option.
        [
            self.sys_root.join("kernel/debug/rknpu/load"),
            self.proc_root.join("rknpu/load"),
        ]
        .iter()
        .find_map(|path| read(path))
        .and_then(|text| parse_npu_load(&text))
    }
}

/// CPU time from the aggregate `cpu` line of `/proc/stat`, in ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CpuTimes {
    /// Idle and waiting for IO.
    idle: u64,
    total: u64,
}

fn parse_cpu_times(stat: &str) -> Option<CpuTimes> {
    let line = stat.lines().find(|line| line.starts_with("cpu "))?;
    // user nice system idle iowait irq softirq steal; guest time is already in user and nice.
    let fields = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(|field| field.parse::<u64>().ok())
        .collect::<Option<Vec<_>>>()?;
    if fields.len() < 4 {
        return None;
    }
    Some(CpuTimes {
        idle: fields[3].checked_add(fields.get(4).copied().unwrap_or(0))?,
        total: fields
            .iter()
            .try_fold(0u64, |sum, &ticks| sum.checked_add(ticks))?,
    })
}

fn busy_percent(before: CpuTimes, now: CpuTimes) -> Option<f64> {
    let total = now.total.checked_sub(before.total).filter(|&t| t > 0)?;
    // iowait may go backwards on tickless kernels, so idle is not trusted to be monotonic.
    let idle = now.idle as f64 - before.idle as f64;
    Some(((total as f64 - idle) / total as f64 * 100.0).clamp(0.0, 100.0))
}

fn parse_uptime(text: &str) -> Option<u64> {
    let seconds = finite(text.split_whitespace().next()?)?;
    (seconds >= 0.0).then_some(seconds as u64)
}

fn parse_load(text: &str) -> Option<f64> {
    finite(text.split_whitespace().next()?).filter(|load| *load >= 0.0)
}

fn parse_meminfo(text: &str) -> Option<MemoryUsage> {
    let kib = |key: &str| {
        let line = text
            .lines()
            .find_map(|line| line.strip_prefix(key)?.strip_prefix(':'))?;
        let mut parts = line.split_whitespace();
        let value = parts.next()?.parse::<u64>().ok()?;
        (parts.next()? == "kB").then(|| value.checked_mul(1024))?
    };
    Some(MemoryUsage {
        total_bytes: kib("MemTotal")?,
        available_bytes: kib("MemAvailable")?,
    })
}

/// `NPU load:  Core0: 12%, Core1:  0%, Core2:  0%,` (RK3588) or `NPU load:  12%` (one core).
fn parse_npu_load(text: &str) -> Option<f64> {
    let cores: Vec<f64> = text
        .split_whitespace()
        .filter_map(|token| token.trim_end_matches([',', ';']).strip_suffix('%'))
        .map(|percent| finite(percent).filter(|p| (0.0..=100.0).contains(p)))
        .collect::<Option<_>>()?;
    (!cores.is_empty()).then(|| cores.iter().sum::<f64>() / cores.len() as f64)
}

/// A sysfs temperature: integer millidegrees Celsius.
fn millidegrees(text: &str) -> Option<f64> {
    let celsius = text.trim().parse::<i64>().ok()? as f64 / 1000.0;
    PLAUSIBLE_CELSIUS.contains(&celsius).then_some(celsius)
}

#[allow(
    clippy::useless_conversion,
    reason = "u64 on 64-bit Linux, u32 on 32-bit targets"
)]
fn disk_usage(dir: &Path) -> Option<DiskUsage> {
    let stat = nix::sys::statvfs::statvfs(dir).ok()?;
    let block = u64::from(stat.fragment_size());
    Some(DiskUsage {
        path: dir.display().to_string(),
        total_bytes: u64::from(stat.blocks()).saturating_mul(block),
        free_bytes: u64::from(stat.blocks_available()).saturating_mul(block),
    })
}

/// A float that is a number: `NaN` would go on the wire as `null` and not read back.
fn finite(text: &str) -> Option<f64> {
    text.parse::<f64>().ok().filter(|x| x.is_finite())
}

fn read(path: &Path) -> Option<String> {
    fs::read_to_string(path).ok()
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// `<dir>/<prefix><N>` entries, by N (`thermal_zone10` after `thermal_zone2`).
fn numbered_entries(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    numbered_files(dir, prefix, "")
        .into_iter()
        .map(|entry| entry.path)
        .collect()
}

struct Numbered {
    index: u32,
    path: PathBuf,
}

/// `<dir>/<prefix><N><suffix>` entries, by N.
fn numbered_files(dir: &Path, prefix: &str, suffix: &str) -> Vec<Numbered> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<Numbered> = entries
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let name = entry.file_name();
            let index = name
                .to_str()?
                .strip_prefix(prefix)?
                .strip_suffix(suffix)?
                .parse()
                .ok()?;
            Some(Numbered {
                index,
                path: entry.path(),
            })
        })
        .collect();
    found.sort_by_key(|entry| entry.index);
    found
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    /// A fake `/proc` and `/sys` in a temporary directory.
    struct Tree {
        dir: tempfile::TempDir,
    }

    impl Tree {
        fn new() -> Tree {
            Tree {
                dir: tempfile::tempdir().unwrap(),
            }
        }

        fn write(&self, path: &str, contents: impl AsRef<[u8]>) -> &Tree {
            let path = self.dir.path().join(path);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, contents).unwrap();
            self
        }

        fn collector(&self) -> Collector {
            Collector::new(self.dir.path().join("proc"), self.dir.path().join("sys"))
        }
    }

    const MEMINFO: &str = "MemTotal:        8039440 kB\nMemFree:          912340 kB\n\
                           MemAvailable:    5120000 kB\nBuffers:          102400 kB\n";

    fn temperatures(sample: &SystemSample) -> Vec<(&str, f64)> {
        sample
            .temperatures
            .iter()
            .map(|t| (t.sensor.as_str(), t.celsius))
            .collect()
    }

    #[test]
    fn a_jetson_like_tree() {
        let tree = Tree::new();
        tree.write("proc/uptime", "12345.67 40000.00\n")
            .write("proc/loadavg", "1.25 0.80 0.50 2/345 6789\n")
            .write("proc/meminfo", MEMINFO)
            .write(
                "proc/stat",
                "cpu  100 0 100 700 100 0 0 0 0 0\ncpu0 50 0 50 350 50 0 0 0 0 0\n",
            )
            .write("sys/class/thermal/thermal_zone0/type", "CPU-therm\n")
            .write("sys/class/thermal/thermal_zone0/temp", "45500\n")
            .write("sys/class/thermal/thermal_zone10/type", "Tboard\n")
            .write("sys/class/thermal/thermal_zone10/temp", "38000\n")
            .write("sys/class/thermal/thermal_zone2/type", "GPU-therm\n")
            .write("sys/class/thermal/thermal_zone2/temp", "-2500\n")
            .write("sys/class/thermal/cooling_device0/type", "fan\n")
            .write("sys/class/hwmon/hwmon0/name", "nvme\n")
            .write("sys/class/hwmon/hwmon0/temp1_input", "41850\n")
            .write("sys/class/hwmon/hwmon0/temp1_label", "Composite\n")
            .write("sys/class/hwmon/hwmon0/temp2_input", "43000\n")
            .write("sys/class/hwmon/hwmon0/temp2_max", "84000\n")
            .write("sys/devices/gpu.0/load", "372\n");
        let mut collector = tree.collector();
        let data = tempfile::tempdir().unwrap();
        let first = collector.sample(data.path());
        assert_eq!(first.uptime_s, Some(12345));
        assert_eq!(first.cpu_percent, None, "no previous sample");
        assert_eq!(first.load_1m, Some(1.25));
        assert_eq!(
            first.memory,
            Some(MemoryUsage {
                total_bytes: 8_039_440 * 1024,
                available_bytes: 5_120_000 * 1024,
            })
        );
        assert_eq!(
            temperatures(&first),
            [
                ("CPU-therm", 45.5),
                ("GPU-therm", -2.5),
                ("Tboard", 38.0),
                ("nvme/Composite", 41.85),
                ("nvme/temp2", 43.0),
            ]
        );
        assert_eq!(first.gpu_load_percent, Some(37.2));
        assert_eq!(first.npu_load_percent, None);
        let disk = first.disk.expect("the data directory's file system");
        assert_eq!(disk.path, data.path().display().to_string());
        assert!(disk.total_bytes > 0 && disk.free_bytes <= disk.total_bytes);

        // 400 ticks later, 100 of them idle and 100 in iowait: 50 % busy.
        tree.write("proc/stat", "cpu  200 0 200 800 200 0 0 0 0 0\n");
        assert_eq!(collector.sample(data.path()).cpu_percent, Some(50.0));
        // No time passed: no percentage, rather than a division by zero.
        assert_eq!(collector.sample(data.path()).cpu_percent, None);
    }

    #[test]
    fn an_rk3588_like_tree() {
        let tree = Tree::new();
        tree.write("sys/class/devfreq/fb000000.gpu/load", "27@1000000000Hz\n")
            .write(
                "sys/kernel/debug/rknpu/load",
                "NPU load:  Core0: 12%, Core1:  0%, Core2:  3%,\n",
            )
            .write("sys/class/thermal/thermal_zone0/type", "soc-thermal\n")
            .write("sys/class/thermal/thermal_zone0/temp", "52000\n")
            // The hwmon twin of the same zone, without a label.
            .write("sys/class/hwmon/hwmon1/name", "soc_thermal\n")
            .write("sys/class/hwmon/hwmon1/temp1_input", "52000\n");
        let sample = tree.collector().sample(tree.dir.path());
        assert_eq!(sample.gpu_load_percent, Some(27.0));
        assert_eq!(sample.npu_load_percent, Some(5.0));
        assert_eq!(
            temperatures(&sample),
            [("soc-thermal", 52.0), ("soc_thermal/temp1", 52.0)]
        );
    }

    #[test]
    fn the_npu_load_from_procfs_when_debugfs_has_none() {
        let tree = Tree::new();
        tree.write("proc/rknpu/load", "NPU load:  40%\n");
        assert_eq!(
            tree.collector().sample(tree.dir.path()).npu_load_percent,
            Some(40.0)
        );
    }

    #[test]
    fn nothing_readable_is_nothing_reported() {
        let tree = Tree::new();
        let mut collector = tree.collector();
        for _ in 0..2 {
            let sample = collector.sample(&tree.dir.path().join("no such directory"));
            assert_eq!(sample, SystemSample::default());
        }
    }

    #[test]
    fn malformed_sources_are_skipped_one_by_one() {
        let tree = Tree::new();
        tree.write("proc/uptime", "soon\n")
            .write("proc/loadavg", "NaN 0.1 0.1 1/1 1\n")
            .write("proc/meminfo", "MemTotal: 1000 kB\nMemAvailable: lots kB\n")
            .write("proc/stat", "cpu  1 2 x 4\n")
            .write("proc/rknpu/load", "NPU load: Core0: 250%,\n")
            .write("sys/class/thermal/thermal_zone0/temp", "hot\n")
            .write("sys/class/thermal/thermal_zone1/temp", "-274000\n")
            // A zone without a type is named after its directory.
            .write("sys/class/thermal/thermal_zone2/temp", "30000\n")
            // A zone whose temp is absent (a disabled sensor: EIO or ENODATA when read).
            .write("sys/class/thermal/thermal_zone3/type", "gone\n")
            .write("sys/class/thermal/thermal_zoneX/temp", "30000\n")
            // Not even text.
            .write("sys/class/hwmon/hwmon0/temp1_input", [0xff, 0xfe])
            .write("sys/class/hwmon/hwmon0/temp2_input", "31000\n")
            .write("sys/class/hwmon/hwmon0/temp2_label", "  \n")
            .write("sys/devices/gpu.0/load", "1500\n")
            .write("sys/class/devfreq/fb000000.gpu/load", "27\n");
        let mut collector = tree.collector();
        let sample = collector.sample(tree.dir.path());
        assert_eq!(
            sample,
            SystemSample {
                temperatures: vec![
                    Temperature {
                        sensor: "thermal_zone2".into(),
                        celsius: 30.0
                    },
                    Temperature {
                        sensor: "hwmon0/temp2".into(),
                        celsius: 31.0
                    },
                ],
                disk: sample.disk.clone(),
                ..SystemSample::default()
            }
        );

        // Counters that went backwards (a wrap, a bad read) give no percentage.
        tree.write("proc/stat", "cpu  500 0 500 500 0 0 0 0\n");
        collector.sample(tree.dir.path());
        tree.write("proc/stat", "cpu  400 0 400 400 0 0 0 0\n");
        assert_eq!(collector.sample(tree.dir.path()).cpu_percent, None);
        tree.write("proc/stat", "intr 1 2 3\n");
        assert_eq!(collector.sample(tree.dir.path()).cpu_percent, None);
        // The last readable counters stay the reference.
        tree.write("proc/stat", "cpu  600 0 600 400 0 0 0 0\n");
        assert_eq!(collector.sample(tree.dir.path()).cpu_percent, Some(100.0));
    }

    #[test]
    fn parsers_at_their_edges() {
        assert_eq!(
            parse_cpu_times("cpu  1 2 3 4\n"),
            Some(CpuTimes { idle: 4, total: 10 }),
            "kernels before iowait"
        );
        assert_eq!(parse_cpu_times("cpu  1 2 3\n"), None);
        assert_eq!(parse_cpu_times(&format!("cpu  {} 1 0 0\n", u64::MAX)), None);
        // guest and guest_nice (fields 9, 10) are inside user and nice already.
        assert_eq!(
            parse_cpu_times("cpu  10 0 0 10 0 0 0 0 99 99\n").map(|t| t.total),
            Some(20)
        );
        assert_eq!(
            parse_npu_load("NPU load:  Core0:  0%, Core1:  0%, Core2:  0%,"),
            Some(0.0)
        );
        assert_eq!(parse_npu_load("NPU load:\n"), None);
        assert_eq!(parse_meminfo("MemTotal: 1 MB\nMemAvailable: 1 kB\n"), None);
        assert_eq!(parse_uptime("-1.0 0\n"), None);
        assert_eq!(parse_load("inf 0 0\n"), None);
    }

    #[test]
    fn this_machine() {
        let mut collector = Collector::system();
        let first = collector.sample(Path::new("/"));
        assert!(first.uptime_s.is_some_and(|s| s > 0), "{first:?}");
        let memory = first.memory.expect("/proc/meminfo");
        assert!(memory.total_bytes > 0 && memory.available_bytes <= memory.total_bytes);
        assert!(first.load_1m.is_some());
        assert!(first.disk.is_some_and(|d| d.total_bytes > 0));
        std::thread::sleep(std::time::Duration::from_millis(50));
        let second = collector.sample(Path::new("/"));
        // Some tick has passed on some core in 50 ms, but that is not a promise: only the range.
        assert!(
            second
                .cpu_percent
                .is_none_or(|p| (0.0..=100.0).contains(&p))
        );
    }

    fn message() -> Telemetry {
        Telemetry::new(
            "box-1",
            Timestamp::from_millis(0),
            SystemSample {
                uptime_s: Some(3600),
                cpu_percent: Some(12.5),
                load_1m: Some(0.5),
                memory: Some(MemoryUsage {
                    total_bytes: 8,
                    available_bytes: 4,
                }),
                temperatures: vec![Temperature {
                    sensor: "soc-thermal".into(),
                    celsius: 48.0,
                }],
                disk: Some(DiskUsage {
                    path: "/data".into(),
                    total_bytes: 100,
                    free_bytes: 60,
                }),
                gpu_load_percent: None,
                npu_load_percent: Some(3.0),
            },
            CameraCounts {
                online: 3,
                offline: 1,
            },
            vec![UplinkSummary {
                name: "mqtt".into(),
                connected: true,
                depth: 0,
                oldest_pending_ms: None,
                last_success_ms: Some(1_764_000_000_000),
                skipped_deleted: 0,
            }],
        )
    }

    #[test]
    fn the_message_is_flat_and_reads_back() {
        let message = message();
        let json: Value = serde_json::from_slice(&message.to_json()).unwrap();
        assert_eq!(
            json,
            json!({
                "schema": "appliance.telemetry.v1",
                "device_id": "box-1",
                "at": "1970-01-01T00:00:00.000Z",
                "uptime_s": 3600,
                "cpu_percent": 12.5,
                "load_1m": 0.5,
                "memory": {"total_bytes": 8, "available_bytes": 4},
                "temperatures": [{"sensor": "soc-thermal", "celsius": 48.0}],
                "disk": {"path": "/data", "total_bytes": 100, "free_bytes": 60},
                "gpu_load_percent": null,
                "npu_load_percent": 3.0,
                "cameras": {"online": 3, "offline": 1},
                "uplinks": [{"name": "mqtt", "connected": true, "depth": 0,
                             "oldest_pending_ms": null, "last_success_ms": 1_764_000_000_000_i64,
                             "skipped_deleted": 0}]
            })
        );
        let back: Telemetry = serde_json::from_slice(&message.to_json()).unwrap();
        assert_eq!(back, message);
        // A reader of a later v1 with more fields, or of a box that left a null out, still reads
        // it.
        let mut json = json;
        json["fan_rpm"] = json!(1200);
        json.as_object_mut().unwrap().remove("gpu_load_percent");
        let back: Telemetry = serde_json::from_value(json).unwrap();
        assert_eq!(back, message);
    }
}
