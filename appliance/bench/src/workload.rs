//! The workload both engines run, through the one [`Engine`] trait, and the numbers it yields.
//!
//! Order matters and is the same for both engines: bulk load (batched throughput), then queries
//! against the loaded data, then paced durable commits into the loaded store (a box that has been
//! running for a while, not an empty one), then close and measure the files.

use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use appliance_model::{Event, EventSource, NewEvent, Severity, Timestamp};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::sys;

/// Cameras the events are spread over.
pub const CAMERAS: usize = 16;
const TYPES: [&str; 4] = ["intrusion", "line_crossing", "loitering", "crowd"];
const CLASSES: [&str; 3] = ["person", "car", "bicycle"];
const SEVERITIES: [Severity; 4] = [
    Severity::Info,
    Severity::Minor,
    Severity::Major,
    Severity::Critical,
];
/// Events per transaction in the bulk load.
pub const BATCH: usize = 1_000;
/// Single-event durable commits in the latency run, one per millisecond.
pub const PACED_COMMITS: usize = 5_000;
const COMMIT_INTERVAL: Duration = Duration::from_millis(1);
const QUERIES: usize = 1_000;
const PAGE: usize = 100;

/// GB28181-shaped camera id: centre 34020000, industry 00, type 132 (camera), serial.
pub fn camera_id(index: usize) -> String {
    format!("3402000000132{:07}", index + 1)
}

/// Deterministic stream of realistic skill events: start times rise by 1 ms on average (0–2 ms
/// steps), cameras and types are uniform, attributes serialise to about 130 bytes.
pub struct EventGen {
    rng: StdRng,
    next_ms: i64,
    /// Events generated per camera, so queries know how many a camera can return.
    per_camera: [u64; CAMERAS],
}

impl EventGen {
    pub fn new(seed: u64, first_ms: i64) -> EventGen {
        EventGen {
            rng: StdRng::seed_from_u64(seed),
            next_ms: first_ms,
            per_camera: [0; CAMERAS],
        }
    }

    pub fn next_event(&mut self) -> NewEvent {
        let rng = &mut self.rng;
        let camera = rng.gen_range(0..CAMERAS);
        self.per_camera[camera] += 1;
        let start = self.next_ms;
        self.next_ms += rng.gen_range(0..=2);
        let hundredths = |rng: &mut StdRng| f64::from(rng.gen_range(0..100u8)) / 100.0;
        let class = CLASSES[rng.gen_range(0..CLASSES.len())];
        let attributes = json!({
            "zone": format!("gate-{}", rng.gen_range(1..10)),
            "track": rng.gen_range(1..100_000),
            "confidence": hundredths(rng),
            "bbox": [hundredths(rng), hundredths(rng), hundredths(rng), hundredths(rng)],
            "class": class,
            "frame": rng.gen_range(0..1_000_000),
            "model": "yolox-nano",
        });
        let Value::Object(attributes) = attributes else {
            unreachable!("json! of an object literal is an object")
        };
        NewEvent {
            camera_id: camera_id(camera),
            channel_id: None,
            source: EventSource::Skill,
            kind: TYPES[rng.gen_range(0..TYPES.len())].to_string(),
            severity: SEVERITIES[rng.gen_range(0..SEVERITIES.len())],
            start_time: Some(Timestamp::from_millis(start)),
            end_time: Some(Timestamp::from_millis(start + rng.gen_range(200..5_000))),
            attributes,
            media: vec![],
        }
    }

    fn batch(&mut self, n: usize) -> Vec<NewEvent> {
        (0..n).map(|_| self.next_event()).collect()
    }
}

/// An event store under test. Every write must be durable (survive a power cut) when it returns.
pub trait Engine {
    /// Stores one event in its own commit.
    fn append_durable(&mut self, event: NewEvent) -> Result<Event>;
    /// Stores `events` atomically in one commit.
    fn append_batch(&mut self, events: Vec<NewEvent>) -> Result<Vec<Event>>;
    /// The newest `limit` events of one camera, newest first, fully decoded.
    fn newest_for_camera(&mut self, camera_id: &str, limit: usize) -> Result<Vec<Event>>;
    /// Shuts down cleanly and returns the bytes the engine's files occupy.
    fn close(self) -> Result<u64>;
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Latency {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Latency {
    pub fn of(mut samples: Vec<Duration>) -> Latency {
        samples.sort_unstable();
        // Nearest-rank percentile.
        let at = |p: f64| {
            let rank = (p * samples.len() as f64).ceil() as usize;
            samples[rank.clamp(1, samples.len()) - 1].as_secs_f64() * 1e3
        };
        Latency {
            p50_ms: at(0.50),
            p99_ms: at(0.99),
            max_ms: at(1.0),
        }
    }
}

/// What one engine measured; the engine child prints it as one JSON line.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EngineResult {
    pub events_stored: u64,
    pub commit: Latency,
    pub batched_events_per_s: f64,
    pub query: Latency,
    pub disk_bytes: u64,
    /// Sum over stored events of their JSON length.
    pub logical_bytes: u64,
    /// Peak resident set of the process, which runs this one engine only.
    pub peak_rss_kib: u64,
}

fn json_len(event: &Event) -> Result<u64> {
    Ok(serde_json::to_string(event)?.len() as u64)
}

/// Runs the whole workload on `engine`, loading `events` events in batches first.
pub fn drive(mut engine: impl Engine, events: u64, seed: u64) -> Result<EngineResult> {
    ensure!(events > 0, "the bulk load needs at least one event");
    let total = events + PACED_COMMITS as u64;
    // Start times end near now, like a store that has been filling up until today.
    let first_ms = Timestamp::now().as_millis() - i64::try_from(total)?;
    let mut generator = EventGen::new(seed, first_ms);
    let mut logical_bytes = 0;

    let mut writing = Duration::ZERO;
    let mut loaded = 0u64;
    while loaded < events {
        let n = BATCH.min(usize::try_from(events - loaded)?);
        // Generated outside the timed region: only the engine's work counts.
        let batch = generator.batch(n);
        let started = Instant::now();
        let stored = engine.append_batch(batch)?;
        writing += started.elapsed();
        ensure!(stored.len() == n, "batch of {n} stored {}", stored.len());
        for event in &stored {
            logical_bytes += json_len(event)?;
        }
        let before = loaded;
        loaded += n as u64;
        if loaded / 100_000 > before / 100_000 {
            eprintln!("  loaded {loaded} events");
        }
    }
    let batched_events_per_s = events as f64 / writing.as_secs_f64();

    let mut rng = StdRng::seed_from_u64(seed.wrapping_add(1));
    let mut query_times = Vec::with_capacity(QUERIES);
    for _ in 0..QUERIES {
        let camera = rng.gen_range(0..CAMERAS);
        let id = camera_id(camera);
        let started = Instant::now();
        let page = engine.newest_for_camera(&id, PAGE)?;
        query_times.push(started.elapsed());
        let expected = PAGE.min(usize::try_from(generator.per_camera[camera])?);
        ensure!(
            page.len() == expected,
            "query for {id} returned {} events, expected {expected}",
            page.len()
        );
        ensure!(
            page.iter().all(|e| e.camera_id == id)
                && page.windows(2).all(|w| w[0].start_time >= w[1].start_time),
            "query for {id} returned other cameras' events or not newest first"
        );
    }
    eprintln!("  {QUERIES} queries done");

    let mut commit_times = Vec::with_capacity(PACED_COMMITS);
    let schedule = Instant::now();
    for i in 0..PACED_COMMITS {
        let event = generator.next_event();
        // An absolute schedule: a slow commit is not followed by a longer pause, so the offered
        // load stays at 1,000 events/s instead of drifting down to what the engine sustains.
        let due = schedule + COMMIT_INTERVAL * u32::try_from(i)?;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            thread::sleep(wait);
        }
        let started = Instant::now();
        let stored = engine.append_durable(event)?;
        commit_times.push(started.elapsed());
        logical_bytes += json_len(&stored)?;
    }
    eprintln!("  {PACED_COMMITS} paced durable commits done");

    let disk_bytes = engine.close().context("closing the engine")?;
    Ok(EngineResult {
        events_stored: total,
        commit: Latency::of(commit_times),
        batched_events_per_s,
        query: Latency::of(query_times),
        disk_bytes,
        logical_bytes,
        peak_rss_kib: sys::peak_rss_kib()?,
    })
}
