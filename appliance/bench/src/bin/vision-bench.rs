//! `vision-bench`: what the appliance's vision costs, measured with the daemon's own pieces in one
//! run, each figure next to the bound it is compared with.
//!
//! 1. Pipeline against raw ONNX Runtime: the detector alone on one prepared tensor (what the
//!    hardware and the runtime can do) against decode → detect → track → skills on every frame of
//!    a clip, with decoding on its own thread as in the daemon.
//! 2. CPU per camera: decoding a 720p camera at the skills' one frame a second, every frame
//!    decoded against keyframes only (and the daemon's default, which measures the GOP first).
//! 3. Alert latency: from a frame's delivery to its event, with an annotated snapshot, durable in
//!    a real event store.
//! 4. Face search: exact search of the face index at 10⁴ and 10⁵ enrolled photos.
//!
//! The clips are made at start from the photos in `shared/images` (beside the checkout) with
//! `appliance_media::clip`, in a fresh temporary directory; the models are those `just setup`
//! installs. The daemon crate cannot be linked, so its pipeline (`daemon/src/vision`) is mirrored
//! here stage by stage. Progress goes to stderr, the markdown report to stdout.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail, ensure};
use appliance_bench::sys::machine;
use appliance_bench::thousands;
use appliance_config::StoreConfig;
use appliance_media::VideoCodec;
use appliance_media::clip::{Background, ClipSpec, ClipWriter, Scene, render_moving_sprite};
use appliance_media::frames::{
    DecoderChoice, FrameSource, FrameSourceSpec, FrameStats, KeyframeMode, Next, pick_decoder,
};
use appliance_model::{EventSource, MediaKind, MediaRef, NewEvent, Severity};
use appliance_skills::config::{SkillConfig, SkillKind, Zone};
use appliance_skills::engine::{SkillEngine, SkillEvent};
use appliance_skills::geometry::BBox;
use appliance_skills::library::face::{DEFAULT_MATCH_THRESHOLD, FaceIndex, synthetic_embedding};
use appliance_skills::track::{Observation, Tracker, TrackerConfig};
use appliance_store::{EventStore, StoreMetrics, StoreOptions};
use appliance_vision::annotate::{OBJECT_COLOUR, OTHER_COLOUR, Shape, ZONE_COLOUR, snapshot_jpeg};
use appliance_vision::detect::{Detector, StageTimes};
use appliance_vision::models::{Analyzer, Models};
use appliance_vision::preprocess::letterbox;
use appliance_vision::registry::{Registry, default_bundled_dirs};
use appliance_vision::runtime::{Input, Provider, Runtime, RuntimeOptions};
use clap::Parser;
use image::RgbImage;
use image::imageops::{self, FilterType};
use nix::sys::resource::{UsageWho, getrusage};
use nix::sys::statfs::{self, TMPFS_MAGIC};

/// The daemon's allocator: frames and tensors are allocated per frame, as there.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The detector every section runs: the appliance's default person detector.
const MODEL: &str = "yolox_nano";
/// Frame rate of both clips, a camera's usual.
const FPS: u32 = 25;
/// The intrusion clip (sections 1 and 3): the size of the end-to-end tests' clips.
const INTRUSION_SIZE: (u32, u32) = (640, 360);
/// The person (the astronaut photo) in the intrusion clip, square.
const PERSON_SIZE: u32 = 200;
/// The intrusion clip's person enters the zone once per this many seconds (see [`entry_path`]).
const ENTRY_PERIOD_S: f64 = 2.0;
/// The CPU clip (section 2): a 720p camera.
const CPU_SIZE: (u32, u32) = (1280, 720);
/// The person in the CPU clip, square.
const CPU_PERSON_SIZE: u32 = 400;
/// Every clip's background, under the noise: the end-to-end tests' grey.
const GREY: [u8; 3] = [90, 100, 90];
/// Sensor noise added to every pixel of every frame, uniform in ±this many levels.
const NOISE: u8 = 8;
/// What a skill samples in the CPU section: one frame a second, where a camera's one-second GOP
/// lets [`KeyframeMode::Auto`] decode keyframes only.
const CPU_SAMPLE_INTERVAL: Duration = Duration::from_secs(1);
/// Decoded frames waiting for the analysis: the daemon's default `queue_per_camera`.
const QUEUE: usize = 2;
/// JPEG quality of the snapshots: the daemon's default `snapshot_quality`.
const SNAPSHOT_QUALITY: u8 = 80;
/// Untimed model runs before the timed ones (first runs allocate and tune).
const WARM_UP_RUNS: u32 = 10;
/// A clip that delivers nothing for this long has failed.
const FRAME_TIMEOUT: Duration = Duration::from_secs(30);
/// Dimension of the face embeddings (MobileFaceNet), as in the daemon.
const FACE_DIMENSION: usize = 192;
const FACE_SEED: u64 = 0x5EED;
/// People returned by the operator's "who could this be" search.
const TOP_K: usize = 5;
/// The skill of sections 1 and 3: the intrusion example of the skill config's docs (the zone is
/// the right half of the picture), but every entry reported (no dwell, no cooldown) so that the
/// clip raises one event per entry, and sampling 5 frames a second to follow the person in and
/// out (the latency section samples at this rate, as the daemon would).
const INTRUSION_SKILL: &str = r#"{"skill": "intrusion", "model": "yolox_nano",
    "classes": ["person"], "min_confidence": 0.5, "min_dwell_s": 0, "cooldown_s": 0,
    "sample_fps": 5, "zones": [{"name": "gate", "polygon": [[0.5, 0], [1, 0], [1, 1], [0.5, 1]]}]}"#;
const CAMERA_ID: &str = "bench-camera";
const SKILL_ID: &str = "bench-intrusion";

/// Benchmark the vision pipeline against raw ONNX Runtime, decode CPU per camera, alert latency
/// and face search; print a markdown report.
#[derive(Parser)]
#[command(name = "vision-bench", about, version)]
struct Cli {
    /// Timed runs of the raw model on one tensor.
    #[arg(long, default_value_t = 300)]
    raw_iterations: u32,
    /// Frames of the intrusion clip the pipeline analyses (25 per second of video).
    #[arg(long, default_value_t = 500)]
    pipeline_frames: u32,
    /// Raw and pipeline runs, alternated; the median of each is reported (this machine's speed
    /// drifts by tens of percent from minute to minute, so one run of each compares moments,
    /// not the two ways of running the model).
    #[arg(long, default_value_t = 3)]
    rounds: u32,
    /// Length of the 720p clip whose decoding is measured, in seconds.
    #[arg(long, default_value_t = 20)]
    cpu_seconds: u32,
    /// Decodes of that clip per mode; the median is reported.
    #[arg(long, default_value_t = 3)]
    cpu_runs: usize,
    /// Entries into the zone in the latency run: one event each, one every 2 s of real time.
    #[arg(long, default_value_t = 20)]
    entries: u32,
    /// Enrolled photos of each face index searched.
    #[arg(long, value_delimiter = ',', default_values_t = [10_000, 100_000])]
    face_sizes: Vec<usize>,
    /// Searches timed on each face index.
    #[arg(long, default_value_t = 200)]
    face_queries: usize,
    /// ONNX Runtime execution providers in order of preference (tensorrt, cuda, xnnpack, acl,
    /// cpu), as `[vision] providers`.
    #[arg(long, value_delimiter = ',', default_value = "cpu", value_parser = parse_provider)]
    providers: Vec<Provider>,
    /// Threads of the model's session, as `[vision] intra_threads`.
    #[arg(long, default_value_t = 2)]
    intra_threads: usize,
    /// Where to put the clips and the store (a fresh subdirectory is made); default: the system
    /// temp dir.
    #[arg(long)]
    dir: Option<PathBuf>,
}

fn parse_provider(name: &str) -> Result<Provider, String> {
    serde_json::from_value(serde_json::Value::String(name.to_owned()))
        .map_err(|_| format!("`{name}`: one of tensorrt, cuda, xnnpack, acl, cpu"))
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    ensure!(
        cli.raw_iterations > 0 && cli.pipeline_frames > 0 && cli.cpu_seconds > 0,
        "--raw-iterations, --pipeline-frames and --cpu-seconds must be at least 1"
    );
    ensure!(
        cli.cpu_runs > 0 && cli.entries > 0 && cli.face_queries > 0,
        "--cpu-runs, --entries and --face-queries must be at least 1"
    );
    ensure!(
        cli.face_sizes.iter().all(|&n| n > 0),
        "--face-sizes must be positive"
    );
    let started = Instant::now();
    let busy_before = (machine_busy()?, cpu_time()?);
    let mut builder = tempfile::Builder::new();
    builder.prefix("vision-bench-");
    let work = match &cli.dir {
        Some(parent) => {
            std::fs::create_dir_all(parent)?;
            builder.tempdir_in(parent)
        }
        None => builder.tempdir(),
    }
    .context("creating the work directory")?;
    let tmpfs = statfs::statfs(work.path()).is_ok_and(|s| s.filesystem_type() == TMPFS_MAGIC);
    if tmpfs {
        eprintln!(
            "warning: {} is on tmpfs, where fsync is free: the alert latency will look too low",
            work.path().display()
        );
    }
    eprintln!("vision bench: work in {}", work.path().display());

    let runtime = Runtime::load(RuntimeOptions {
        providers: cli.providers.clone(),
        intra_threads: cli.intra_threads,
        ..RuntimeOptions::default()
    })
    .context("loading ONNX Runtime (run `just setup`)")?;
    let library = runtime.library().to_path_buf();
    let models = Models::new(
        runtime,
        Registry::new(work.path().join("models"), default_bundled_dirs()),
    );
    let analyzer = models
        .get(MODEL)
        .with_context(|| format!("loading {MODEL} (run `just setup`)"))?;
    let Analyzer::Objects { detector, labels } = analyzer.as_ref() else {
        bail!("{MODEL} is not an object detector");
    };
    let skill = SkillConfig::from_json(INTRUSION_SKILL.as_bytes())?;
    let decoder = pick_decoder(VideoCodec::H264, &DecoderChoice::Auto)?;

    let astronaut = shared_photo("astronaut.png")?;
    let intrusion_seconds = (f64::from(cli.pipeline_frames) / f64::from(FPS))
        .max(f64::from(cli.entries) * ENTRY_PERIOD_S);
    eprintln!("writing the intrusion clip ({intrusion_seconds:.0} s)");
    let intrusion_clip = work.path().join("intrusion.mp4");
    let person = imageops::resize(&astronaut, PERSON_SIZE, PERSON_SIZE, FilterType::Triangle);
    let path = entry_path(cli.entries);
    write_clip(
        &intrusion_clip,
        &Scene {
            width: INTRUSION_SIZE.0,
            height: INTRUSION_SIZE.1,
            background: Background::Fill(GREY),
            sprite: person.as_raw(),
            sprite_width: PERSON_SIZE,
            sprite_height: PERSON_SIZE,
            path: &path,
        },
        intrusion_seconds,
    )?;

    let (mut raws, mut pipelines) = (Vec::new(), Vec::new());
    for round in 1..=cli.rounds.max(1) {
        eprintln!("round {round}: raw model, {} runs", cli.raw_iterations);
        raws.push(raw_model(detector, &intrusion_clip, cli.raw_iterations)?);
        eprintln!("round {round}: pipeline, {} frames", cli.pipeline_frames);
        pipelines.push(pipeline(
            detector,
            labels,
            &skill,
            &intrusion_clip,
            cli.pipeline_frames,
        )?);
    }
    let raw = median_run(raws, |r| r.total.as_secs_f64() / f64::from(r.iterations));
    let pipeline = median_run(pipelines, |p| p.wall.as_secs_f64() / f64::from(p.frames));

    eprintln!("writing the 720p clip ({} s)", cli.cpu_seconds);
    let cpu_clip = work.path().join("camera-720p.mp4");
    let cpu_person = imageops::resize(
        &astronaut,
        CPU_PERSON_SIZE,
        CPU_PERSON_SIZE,
        FilterType::Triangle,
    );
    let seconds = f64::from(cli.cpu_seconds);
    let across = [
        (0.0, -(CPU_PERSON_SIZE as f64) / 2.0, 200.0),
        (
            seconds,
            CPU_SIZE.0 as f64 - CPU_PERSON_SIZE as f64 / 2.0,
            200.0,
        ),
    ];
    write_clip(
        &cpu_clip,
        &Scene {
            width: CPU_SIZE.0,
            height: CPU_SIZE.1,
            background: Background::Fill(GREY),
            sprite: cpu_person.as_raw(),
            sprite_width: CPU_PERSON_SIZE,
            sprite_height: CPU_PERSON_SIZE,
            path: &across,
        },
        seconds,
    )?;
    let cpu_clip_bytes = std::fs::metadata(&cpu_clip)?.len();
    let mut decoding = Vec::new();
    for mode in [
        KeyframeMode::All,
        KeyframeMode::Keyframes,
        KeyframeMode::Auto,
    ] {
        eprintln!("decoding the 720p clip, {mode:?}: {} runs", cli.cpu_runs);
        decoding.push(decode_cpu(&cpu_clip, mode, cli.cpu_runs)?);
    }

    eprintln!(
        "alert latency: {} entries, {:.0} s in real time",
        cli.entries,
        f64::from(cli.entries) * ENTRY_PERIOD_S
    );
    let latency = alert_latency(
        detector,
        labels,
        &skill,
        &intrusion_clip,
        &work.path().join("store"),
    )?;

    let mut faces = Vec::new();
    for &n in &cli.face_sizes {
        eprintln!("face search: {n} photos, {} queries", cli.face_queries);
        faces.push(face_search(n, cli.face_queries)?);
    }

    let others = (machine_busy()? - busy_before.0).saturating_sub(cpu_time()? - busy_before.1);
    let context = Context {
        machine: machine(),
        others,
        elapsed: started.elapsed(),
        work: format!(
            "{}{}",
            work.path().display(),
            if tmpfs { " (tmpfs: fsync is free)" } else { "" }
        ),
        library,
        providers: detector
            .model()
            .providers()
            .iter()
            .map(|p| p.name())
            .collect::<Vec<_>>()
            .join(", "),
        intra_threads: cli.intra_threads,
        decoder,
        cpu_seconds: cli.cpu_seconds,
        cpu_runs: cli.cpu_runs,
        cpu_clip_bytes,
        entries: cli.entries,
        sample_fps: skill.common.sample_fps,
        face_queries: cli.face_queries,
    };
    let mut out = String::new();
    render_header(&mut out, &context, detector);
    render_throughput(&mut out, &raw, &pipeline, cli.rounds.max(1));
    render_decoding(&mut out, &context, &decoding);
    render_latency(&mut out, &context, &latency);
    render_faces(&mut out, &context, &faces);
    let _ = writeln!(out, "Run took {:.0} s.", context.elapsed.as_secs_f64());
    print!("{out}");
    Ok(())
}

/// `shared/images/<name>` beside the checkout, as RGB.
fn shared_photo(name: &str) -> Result<RgbImage> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/images")
        .join(name);
    ensure!(
        path.is_file(),
        "{} missing: the bench makes its clips from the photos in shared/images beside the \
         checkout",
        path.display()
    );
    Ok(image::open(&path)
        .with_context(|| format!("decoding {}", path.display()))?
        .to_rgb8())
}

/// The intrusion clip's path of the person's top-left corner: `entries` times in and out of
/// the zone (the right half), one entry per [`ENTRY_PERIOD_S`]: 0.4 s outside (feet at 39 % of
/// the width), 0.6 s walking in (feet at 61 %), 0.4 s inside, 0.6 s walking out. Slow enough at
/// 5 frames a second for the tracker to keep the person's track (box overlap about 0.5 from one
/// sampled frame to the next), so each entry is one new stay of the same track.
fn entry_path(entries: u32) -> Vec<(f64, f64, f64)> {
    let (outside, inside, y) = (150.0, 290.0, 100.0);
    let mut path = vec![(0.0, outside, y)];
    for entry in 0..entries {
        let t = f64::from(entry) * ENTRY_PERIOD_S;
        path.extend([
            (t + 0.4, outside, y),
            (t + 1.0, inside, y),
            (t + 1.4, inside, y),
            (t + 2.0, outside, y),
        ]);
    }
    path
}

/// Renders `scene` for `seconds` at [`FPS`], adds sensor noise and encodes it to `path` with a
/// keyframe every second (x264 at its default 2 Mbit/s).
///
/// Why the noise: on a clean synthetic picture the encoder skips the static background in every
/// predicted frame, which then costs the decoder next to nothing, and decoding every frame would
/// look far cheaper against keyframes only than on a real camera. Noise fills the predicted
/// frames as a camera's sensor does, and the encoder spends its bit rate as a camera does.
fn write_clip(path: &Path, scene: &Scene, seconds: f64) -> Result<()> {
    let mut writer = ClipWriter::create(
        path,
        ClipSpec {
            width: scene.width,
            height: scene.height,
            fps: FPS,
            keyframe_interval: FPS,
        },
    )?;
    let mut noise = 0x9E37_79B9_7F4A_7C15_u64;
    for mut frame in render_moving_sprite(scene, FPS, Duration::from_secs_f64(seconds))? {
        add_noise(&mut frame, &mut noise);
        writer.push(&frame)?;
    }
    writer.finish()?;
    Ok(())
}

/// Adds uniform noise in ±[`NOISE`] to every byte, from a xorshift64 generator at `state`.
fn add_noise(pixels: &mut [u8], state: &mut u64) {
    let span = 2 * u64::from(NOISE) + 1;
    for chunk in pixels.chunks_mut(8) {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        let mut bits = *state;
        for pixel in chunk {
            // 8 bits per pixel; the modulo bias of 256 % 17 is irrelevant to noise.
            let offset = (bits & 0xFF) % span;
            bits >>= 8;
            *pixel = (i16::from(*pixel) + offset as i16 - i16::from(NOISE)).clamp(0, 255) as u8;
        }
    }
}

/// A decoded frame handed from the decoding thread to the analysis, and when.
struct Delivered {
    pts: Duration,
    image: RgbImage,
    /// When the decoding thread handed it over: where the alert latency starts.
    at: Instant,
}

/// Decodes `spec` on its own thread into a channel of [`QUEUE`] frames, like the daemon's ingest
/// thread feeding a model's queue, so decoding overlaps the analysis. The channel blocks when
/// full (every frame is analysed, as in the daemon's dry run) where the daemon drops the oldest.
/// With `pace`, each frame is handed over at its presentation time after the first, as a live
/// camera delivers it; without, as fast as the analysis takes them. The thread ends at the end
/// of the clip or when the receiver is dropped, and returns the source's counters.
fn spawn_decoder(
    spec: FrameSourceSpec,
    pace: bool,
) -> Result<(Receiver<Delivered>, JoinHandle<Result<FrameStats>>)> {
    let (tx, rx) = mpsc::sync_channel(QUEUE);
    let thread = thread::Builder::new()
        .name("decode".into())
        .spawn(move || {
            let mut source = FrameSource::start(spec)?;
            let mut epoch: Option<(Instant, Duration)> = None;
            loop {
                let frame = match source.next_frame(FRAME_TIMEOUT)? {
                    Next::Frame(frame) => frame,
                    Next::Ended => break,
                    Next::Timeout => bail!("no frame for {FRAME_TIMEOUT:?}"),
                };
                if pace {
                    let (start, first) = *epoch.get_or_insert((Instant::now(), frame.pts));
                    let due = start + frame.pts.saturating_sub(first);
                    thread::sleep(due.saturating_duration_since(Instant::now()));
                }
                let at = Instant::now();
                let image = RgbImage::from_raw(frame.width, frame.height, frame.data)
                    .context("a decoded frame of the wrong size")?;
                let delivered = Delivered {
                    pts: frame.pts,
                    image,
                    at,
                };
                if tx.send(delivered).is_err() {
                    break;
                }
            }
            Ok(source.stats())
        })?;
    Ok((rx, thread))
}

fn join(thread: JoinHandle<Result<FrameStats>>) -> Result<FrameStats> {
    thread
        .join()
        .map_err(|_| anyhow!("the decoding thread panicked"))?
}

/// The daemon's analysis of one camera with one skill (`daemon/src/vision/pipeline.rs`): the
/// detections of the skill's classes become observations in normalised coordinates, the
/// tracker makes tracks of them, the skill's engine events.
struct Analysis<'a> {
    detector: &'a Detector,
    labels: &'a [String],
    tracker: Tracker,
    engine: SkillEngine,
}

/// What one frame's analysis took.
struct FrameTimes {
    detector: StageTimes,
    /// Observations, tracker and skill engine.
    tracking: Duration,
}

impl<'a> Analysis<'a> {
    fn new(detector: &'a Detector, labels: &'a [String], skill: &SkillConfig) -> Self {
        Self {
            detector,
            labels,
            tracker: Tracker::new(TrackerConfig::default()),
            engine: SkillEngine::new(skill.clone()),
        }
    }

    fn frame(&mut self, pts: Duration, image: &RgbImage) -> Result<(Vec<SkillEvent>, FrameTimes)> {
        let (mut detections, detector) = self.detector.detect_timed(&[image])?;
        let started = Instant::now();
        let (w, h) = (image.width().max(1) as f64, image.height().max(1) as f64);
        let classes = &self.engine.config().common.classes;
        let observations = detections
            .pop()
            .unwrap_or_default()
            .into_iter()
            .filter_map(|d| {
                let class = self.labels.get(d.class_id)?;
                classes.contains(class).then(|| Observation {
                    bbox: BBox::new(
                        d.bbox.x0 as f64 / w,
                        d.bbox.y0 as f64 / h,
                        d.bbox.x1 as f64 / w,
                        d.bbox.y1 as f64 / h,
                    ),
                    class: class.clone(),
                    score: d.score,
                    label: None,
                })
            })
            .collect();
        let t = pts.as_secs_f64();
        let tracks = self.tracker.update(t, observations);
        // No wall clock for a recording: the schedule is not applied, as in the dry run.
        let events = self.engine.on_frame(t, &tracks, None);
        let times = FrameTimes {
            detector,
            tracking: started.elapsed(),
        };
        Ok((events, times))
    }
}

/// The run whose `key` (time per frame) is the median of the runs.
fn median_run<T>(mut runs: Vec<T>, key: impl Fn(&T) -> f64) -> T {
    runs.sort_by(|a, b| key(a).total_cmp(&key(b)));
    let middle = runs.len() / 2;
    runs.swap_remove(middle)
}

/// The raw model: `Model::run` on one tensor, again and again.
struct RawRun {
    iterations: u32,
    total: Duration,
}

/// The detector's session run on one letterboxed, normalised tensor of the clip's first frame,
/// built once: the runtime's and the hardware's speed with nothing else around it (the tensor
/// goes in and the output tensor comes out as the pipeline's runs do, through `Model::run`).
fn raw_model(detector: &Detector, clip: &Path, iterations: u32) -> Result<RawRun> {
    let (frames, thread) = spawn_decoder(FrameSourceSpec::new(clip.display().to_string()), false)?;
    let first = frames.recv().context("the clip has no frame")?;
    drop(frames);
    join(thread)?;
    let spec = detector.spec();
    let boxed = letterbox(&first.image, spec.width, spec.height, spec.pad);
    let mut tensor = Vec::new();
    spec.normalisation.append(&boxed.image, &mut tensor);
    let shape = spec.normalisation.shape(1, spec.width, spec.height);
    let input = [Input {
        shape: &shape,
        data: &tensor,
    }];
    let model = detector.model();
    for _ in 0..WARM_UP_RUNS {
        model.run(&input)?;
    }
    let started = Instant::now();
    for _ in 0..iterations {
        model.run(&input)?;
    }
    Ok(RawRun {
        iterations,
        total: started.elapsed(),
    })
}

/// The pipeline's figures: sums over the frames analysed.
struct PipelineRun {
    frames: u32,
    /// From the first frame's arrival at the analysis to the end of the last one's skills.
    wall: Duration,
    detector: StageTimes,
    tracking: Duration,
    /// The analysis waiting for the decoder (after the first frame).
    waiting: Duration,
    decode_ms_avg: f64,
    events: usize,
}

/// Decode (own thread, every frame: sample interval 0) → `detect_timed` → tracker → skill
/// engine, on the first `frames` frames of the clip. The clock starts when the first frame
/// reaches the analysis, so the decoder's start-up is not counted and each frame is counted
/// once, from its analysis' start to its end.
fn pipeline(
    detector: &Detector,
    labels: &[String],
    skill: &SkillConfig,
    clip: &Path,
    frames: u32,
) -> Result<PipelineRun> {
    let mut analysis = Analysis::new(detector, labels, skill);
    let (rx, thread) = spawn_decoder(FrameSourceSpec::new(clip.display().to_string()), false)?;
    let mut run = PipelineRun {
        frames: 0,
        wall: Duration::ZERO,
        detector: StageTimes::default(),
        tracking: Duration::ZERO,
        waiting: Duration::ZERO,
        decode_ms_avg: 0.0,
        events: 0,
    };
    let mut clock: Option<Instant> = None;
    while run.frames < frames {
        let asked = Instant::now();
        let Ok(frame) = rx.recv() else {
            break;
        };
        match clock {
            Some(_) => run.waiting += asked.elapsed(),
            None => clock = Some(Instant::now()),
        }
        let (events, times) = analysis.frame(frame.pts, &frame.image)?;
        run.frames += 1;
        run.events += events.len();
        run.detector.preprocess += times.detector.preprocess;
        run.detector.inference += times.detector.inference;
        run.detector.postprocess += times.detector.postprocess;
        run.tracking += times.tracking;
    }
    run.wall = clock.map_or(Duration::ZERO, |c| c.elapsed());
    drop(rx);
    run.decode_ms_avg = join(thread)?.decode_ms_avg();
    ensure!(run.frames > 0, "the clip delivered no frame");
    Ok(run)
}

/// User plus system CPU time of this whole process (every thread, GStreamer's included).
fn cpu_time() -> Result<Duration> {
    let usage = getrusage(UsageWho::RUSAGE_SELF)?;
    let seconds = |t: nix::sys::time::TimeVal| {
        Duration::from_secs(t.tv_sec().max(0) as u64)
            + Duration::from_micros(t.tv_usec().max(0) as u64)
    };
    Ok(seconds(usage.user_time()) + seconds(usage.system_time()))
}

/// One decode of the 720p clip to its end.
#[derive(Clone, Copy)]
struct DecodeRun {
    mode: KeyframeMode,
    cpu: Duration,
    /// Of `cpu`, `FrameSource::start`: building the pipeline up to the first frame.
    start_cpu: Duration,
    wall: Duration,
    stats: FrameStats,
}

/// Decodes the clip `runs` times at one frame a second, on this thread with nothing else
/// running, and returns the run of median CPU time. CPU time is the process's (getrusage), so
/// it counts every GStreamer thread (demuxer, parser, libav's decoding threads, the colour
/// conversion) and nothing else runs meanwhile: no inference, the models idle.
fn decode_cpu(clip: &Path, mode: KeyframeMode, runs: usize) -> Result<DecodeRun> {
    let mut results = Vec::with_capacity(runs);
    for _ in 0..runs {
        let spec = FrameSourceSpec {
            keyframe_mode: mode,
            sample_interval: CPU_SAMPLE_INTERVAL,
            ..FrameSourceSpec::new(clip.display().to_string())
        };
        let (cpu_before, started) = (cpu_time()?, Instant::now());
        let mut source = FrameSource::start(spec)?;
        let start_cpu = cpu_time()? - cpu_before;
        loop {
            match source.next_frame(FRAME_TIMEOUT)? {
                Next::Frame(_) => {}
                Next::Ended => break,
                Next::Timeout => bail!("no frame for {FRAME_TIMEOUT:?}"),
            }
        }
        let stats = source.stats();
        drop(source);
        results.push(DecodeRun {
            mode,
            cpu: cpu_time()? - cpu_before,
            start_cpu,
            wall: started.elapsed(),
            stats,
        });
    }
    results.sort_by_key(|run| run.cpu);
    Ok(results[results.len() / 2])
}

/// One event's way from its frame to the store, each part in ms.
struct Alert {
    /// Frame handed over → event durable.
    total: f64,
    /// Frame handed over → the skill engine returned the event: queue, detector, tracker, skill.
    analysis: f64,
    /// Drawing the zone and the box and encoding the JPEG.
    snapshot: f64,
    /// `put_media`: writing the snapshot file and fsyncing it.
    put_media: f64,
    /// `append(..).wait()`: the event's durable commit.
    append: f64,
}

/// The latency section: the intrusion clip replayed at camera speed (frames handed over at their
/// presentation times), decoded as the daemon decodes a camera by default (`KeyframeMode::Auto`,
/// which decodes every frame here: the skill samples faster than the GOP) at the skill's
/// `sample_fps`, analysed as in [`pipeline`], and each event committed as the daemon's
/// `commit_event` does: annotated snapshot JPEG, `put_media`, then `append(event).wait()`, on a
/// real store in `store_dir`.
fn alert_latency(
    detector: &Detector,
    labels: &[String],
    skill: &SkillConfig,
    clip: &Path,
    store_dir: &Path,
) -> Result<Vec<Alert>> {
    let defaults = StoreConfig::default();
    let store = EventStore::open(
        &StoreOptions {
            dir: store_dir.to_path_buf(),
            cache_capacity: defaults.cache_capacity.bytes(),
            max_commit_group: defaults.max_commit_group,
        },
        Arc::new(StoreMetrics::default()),
    )?;
    let zones = match &skill.kind {
        SkillKind::Intrusion(intrusion) => intrusion.zones.as_slice(),
        _ => bail!("the latency skill is an intrusion"),
    };
    let mut analysis = Analysis::new(detector, labels, skill);
    let spec = FrameSourceSpec {
        keyframe_mode: KeyframeMode::Auto,
        sample_interval: Duration::from_secs_f64(1.0 / skill.common.sample_fps),
        ..FrameSourceSpec::new(clip.display().to_string())
    };
    let (rx, thread) = spawn_decoder(spec, true)?;
    let ms = |from: Instant, to: Instant| (to - from).as_secs_f64() * 1e3;
    let mut alerts = Vec::new();
    for frame in rx {
        let (events, _) = analysis.frame(frame.pts, &frame.image)?;
        let analysed = Instant::now();
        for event in events {
            let drawing = Instant::now();
            let jpeg = snapshot_jpeg(&frame.image, &shapes(zones, &event), SNAPSHOT_QUALITY)?;
            let writing = Instant::now();
            let snapshot = store.put_media(MediaKind::Snapshot, "image/jpeg", &jpeg)?;
            let committing = Instant::now();
            store.append(stored_event(&event, snapshot)?).wait()?;
            let done = Instant::now();
            alerts.push(Alert {
                total: ms(frame.at, done),
                analysis: ms(frame.at, analysed),
                snapshot: ms(drawing, writing),
                put_media: ms(writing, committing),
                append: ms(committing, done),
            });
        }
    }
    join(thread)?;
    store.close();
    ensure!(!alerts.is_empty(), "the intrusion clip raised no event");
    Ok(alerts)
}

/// The zones (the event's highlighted) and the object's box, as the daemon draws them.
fn shapes(zones: &[Zone], event: &SkillEvent) -> Vec<Shape> {
    let mut shapes: Vec<Shape> = zones
        .iter()
        .map(|zone| Shape::Polygon {
            points: zone
                .polygon
                .iter()
                .map(|p| [p.x as f32, p.y as f32])
                .collect(),
            colour: if event.zone.as_deref() == Some(zone.name.as_str()) {
                ZONE_COLOUR
            } else {
                OTHER_COLOUR
            },
        })
        .collect();
    let b = &event.bbox;
    shapes.push(Shape::Box {
        bbox: [b.x0 as f32, b.y0 as f32, b.x1 as f32, b.y1 as f32],
        colour: OBJECT_COLOUR,
    });
    shapes
}

/// The stored event of a skill's detection, as the daemon's `new_event` builds it: the skill
/// event's JSON as attributes, plus the skill and model, the snapshot as media.
fn stored_event(event: &SkillEvent, snapshot: MediaRef) -> Result<NewEvent> {
    let serde_json::Value::Object(mut attributes) = serde_json::to_value(event)? else {
        bail!("a skill event serialises to a JSON object");
    };
    attributes.insert("skill_id".into(), SKILL_ID.into());
    attributes.insert("model".into(), MODEL.into());
    Ok(NewEvent {
        camera_id: CAMERA_ID.into(),
        channel_id: None,
        source: EventSource::Skill,
        kind: "skill.intrusion".into(),
        severity: Severity::Major,
        start_time: None,
        end_time: None,
        attributes,
        media: vec![snapshot],
    })
}

/// One face index's figures.
struct FaceRun {
    photos: usize,
    build: Duration,
    /// Per query, in ms.
    search: Vec<f64>,
    top_k: Vec<f64>,
}

/// `FaceIndex::synthetic(192, photos, seed)`, then `search` at the default threshold and
/// `top_k(5)` timed for `queries` enrolled embeddings spread over the index (each must find its
/// own photo). The cost of an exact search does not depend on the query: it scans every row.
fn face_search(photos: usize, queries: usize) -> Result<FaceRun> {
    let started = Instant::now();
    let index = FaceIndex::synthetic(FACE_DIMENSION, photos, FACE_SEED)?;
    let build = started.elapsed();
    // Untimed: the first scan after the build may still fault pages in.
    index.search(
        &synthetic_embedding(FACE_DIMENSION, FACE_SEED),
        DEFAULT_MATCH_THRESHOLD,
    )?;
    let mut run = FaceRun {
        photos,
        build,
        search: Vec::with_capacity(queries),
        top_k: Vec::with_capacity(queries),
    };
    for i in 0..queries {
        let row = i * photos / queries;
        let query = synthetic_embedding(FACE_DIMENSION, FACE_SEED.wrapping_add(row as u64));
        let expected = format!("synthetic-person-{row}");
        let started = Instant::now();
        let found = index.search(&query, DEFAULT_MATCH_THRESHOLD)?;
        run.search.push(started.elapsed().as_secs_f64() * 1e3);
        ensure!(
            found.is_some_and(|f| f.person_id == expected),
            "search did not find {expected}"
        );
        let started = Instant::now();
        let top = index.top_k(&query, TOP_K)?;
        run.top_k.push(started.elapsed().as_secs_f64() * 1e3);
        ensure!(
            top.first().is_some_and(|f| f.person_id == expected),
            "top_k did not rank {expected} first"
        );
    }
    Ok(run)
}

/// Mean, p50, p95 and max of `values` (p: nearest rank).
struct Summary {
    mean: f64,
    p50: f64,
    p95: f64,
    max: f64,
}

fn summary(values: impl IntoIterator<Item = f64>) -> Summary {
    let mut values: Vec<f64> = values.into_iter().collect();
    values.sort_by(f64::total_cmp);
    let n = values.len().max(1);
    let rank = |p: f64| values.get(((p * n as f64).ceil() as usize).clamp(1, n) - 1);
    Summary {
        mean: values.iter().sum::<f64>() / n as f64,
        p50: rank(0.50).copied().unwrap_or(f64::NAN),
        p95: rank(0.95).copied().unwrap_or(f64::NAN),
        max: values.last().copied().unwrap_or(f64::NAN),
    }
}

/// CPU time the whole machine spent busy since boot (every CPU, every process; `/proc/stat`'s
/// first line less idle and I/O wait, in its fixed 100 ticks a second). It includes the time a
/// hypervisor stole for other machines, which disturbs a run just as much.
fn machine_busy() -> Result<Duration> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    let ticks: Vec<u64> = stat
        .lines()
        .next()
        .and_then(|line| line.strip_prefix("cpu "))
        .context("no cpu line in /proc/stat")?
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    ensure!(ticks.len() >= 5, "a short cpu line in /proc/stat");
    // user nice system idle iowait irq softirq steal…; guest time is counted in user already.
    let busy: u64 = ticks.iter().take(8).sum::<u64>() - ticks[3] - ticks[4];
    Ok(Duration::from_millis(busy * 10))
}

/// What the report says besides the sections' results.
struct Context {
    machine: String,
    /// CPU time other processes used during the run.
    others: Duration,
    elapsed: Duration,
    work: String,
    library: PathBuf,
    providers: String,
    intra_threads: usize,
    decoder: String,
    cpu_seconds: u32,
    cpu_runs: usize,
    cpu_clip_bytes: u64,
    entries: u32,
    /// The intrusion skill's `sample_fps`.
    sample_fps: f64,
    face_queries: usize,
}

fn render_header(out: &mut String, ctx: &Context, detector: &Detector) {
    let spec = detector.spec();
    let library = ctx
        .library
        .canonicalize()
        .unwrap_or_else(|_| ctx.library.clone());
    let _ = writeln!(out, "## Vision: pipeline, decoding, alerts, face search\n");
    let _ = writeln!(out, "- machine: {}", ctx.machine);
    let cores = thread::available_parallelism().map_or(1, |n| n.get());
    let others = ctx.others.as_secs_f64() / ctx.elapsed.as_secs_f64();
    let _ = writeln!(
        out,
        "- other processes used {:.1} CPU s during the run, {:.2} of the {cores} cores on average{}",
        ctx.others.as_secs_f64(),
        others,
        if others > 0.1 {
            ": **the machine was not quiet**, the figures are disturbed"
        } else {
            ""
        }
    );
    let _ = writeln!(
        out,
        "- ONNX Runtime {}, providers used: {} ({} intra-op threads)",
        library.display(),
        ctx.providers,
        ctx.intra_threads
    );
    let _ = writeln!(
        out,
        "- model: {MODEL} ({}×{} input, score > {}, NMS IoU {}); decoder: {} (GStreamer)",
        spec.width, spec.height, spec.score_threshold, spec.nms_iou, ctx.decoder
    );
    let _ = writeln!(
        out,
        "- clips: H.264 (x264 ultrafast, no B-frames, 2 Mbit/s), {FPS} fps, a keyframe every \
         second, the astronaut photo walking over grey with ±{NOISE} levels of sensor noise; \
         work directory {}\n",
        ctx.work
    );
}

fn render_throughput(out: &mut String, raw: &RawRun, run: &PipelineRun, rounds: u32) {
    let raw_ms = raw.total.as_secs_f64() * 1e3 / f64::from(raw.iterations);
    let raw_fps = 1e3 / raw_ms;
    let frames = f64::from(run.frames);
    let per_frame = |d: Duration| format!("{:.2}", d.as_secs_f64() * 1e3 / frames);
    let pipeline_ms = run.wall.as_secs_f64() * 1e3 / frames;
    let pipeline_fps = 1e3 / pipeline_ms;
    let share = pipeline_fps / raw_fps * 100.0;
    let _ = writeln!(
        out,
        "### 1. Pipeline against raw ONNX Runtime ({MODEL}, {}×{} clip)\n\n\
         {rounds} rounds of each, alternated; each row is its median round.\n",
        INTRUSION_SIZE.0, INTRUSION_SIZE.1
    );
    let _ = writeln!(
        out,
        "| run | frames | frames/s | ms per frame | decode ³ | preprocess | inference | postprocess | tracking + skill | waiting for decode ⁴ | % of raw |"
    );
    let _ = writeln!(
        out,
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
    );
    let _ = writeln!(
        out,
        "| raw `Model::run`, one tensor ¹ | {} | {raw_fps:.1} | {raw_ms:.2} | – | – | {raw_ms:.2} | – | – | – | 100 % |",
        thousands(f64::from(raw.iterations)),
    );
    let _ = writeln!(
        out,
        "| pipeline: decode → detect → track → skill ² | {} | {pipeline_fps:.1} | {pipeline_ms:.2} | {:.2} | {} | {} | {} | {} | {} | {share:.0} % (target ≥ 90 %: {}) |",
        thousands(f64::from(run.frames)),
        run.decode_ms_avg,
        per_frame(run.detector.preprocess),
        per_frame(run.detector.inference),
        per_frame(run.detector.postprocess),
        per_frame(run.tracking),
        per_frame(run.waiting),
        if share >= 90.0 { "met" } else { "**missed**" },
    );
    let _ = writeln!(
        out,
        "
Stage columns: ms per frame, mean over the frames. Intrusion events raised on the way: {events}.

¹ {iterations} timed runs (after {WARM_UP_RUNS} untimed) of the detector's session through \
`Model::run` on one tensor built once from the clip's first decoded frame (letterboxed and \
normalised as the detector does): the runtime and the hardware alone, with nothing else running.
² Every frame of the clip (sample interval 0) decoded by `FrameSource` on its own thread into a \
queue of {QUEUE} (the daemon's `queue_per_camera`), so decoding overlaps the analysis as in the \
daemon; the analysis thread runs `Detector::detect_timed` on each frame, turns the person \
detections into normalised observations, then `Tracker::update` and the intrusion skill's \
`SkillEngine::on_frame`. Frames/s: frames ÷ the time from the first frame's arrival at the \
analysis to the end of the last one's skill; the stage columns split that time. The decoder's \
threads share the CPU with the model's, which is what a box does.
³ `FrameStats::decode_ms_avg`: mean time from an access unit entering the decoder to its picture \
leaving it. That is latency, not CPU: libav decodes several frames at once on a file, so it is \
counted more than once, and it is not part of the frame's analysis time (another thread).
⁴ Time the analysis waited for the next decoded frame: decoding not keeping up.
",
        events = run.events,
        iterations = thousands(f64::from(raw.iterations)),
    );
}

fn render_decoding(out: &mut String, ctx: &Context, runs: &[DecodeRun]) {
    let seconds = f64::from(ctx.cpu_seconds);
    let _ = writeln!(
        out,
        "### 2. CPU per camera: {}×{} at 1 frame/s, every frame decoded against keyframes only\n",
        CPU_SIZE.0, CPU_SIZE.1
    );
    let _ = writeln!(
        out,
        "| decoding (`KeyframeMode`) | access units in | decoded | delivered | wall s | CPU s | of which start-up ms ⁴ | CPU s per s of video = % of one core ⁵ | cameras per core | saving |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let all_cpu = runs
        .iter()
        .find(|r| r.mode == KeyframeMode::All)
        .map(|r| r.cpu.as_secs_f64());
    for run in runs {
        let cpu = run.cpu.as_secs_f64();
        let share = cpu / seconds;
        let mode = match run.mode {
            KeyframeMode::All => "`All`: every access unit, sampled after the decoder ¹",
            KeyframeMode::Keyframes => "`Keyframes`: keyframes only ²",
            KeyframeMode::Auto if run.stats.keyframes_only_now => {
                "`Auto` (the daemon's default): keyframes only once the GOP is measured ³"
            }
            KeyframeMode::Auto => {
                "`Auto` (the daemon's default): **still every frame at the end** ³"
            }
        };
        let _ = writeln!(
            out,
            "| {mode} | {} | {} | {} | {:.2} | {:.3} | {:.0} | {:.4} = {:.2} % | {:.0} | {} |",
            thousands(run.stats.frames_in as f64),
            thousands(run.stats.decoded as f64),
            thousands(run.stats.delivered as f64),
            run.wall.as_secs_f64(),
            cpu,
            run.start_cpu.as_secs_f64() * 1e3,
            share,
            share * 100.0,
            1.0 / share,
            all_cpu.map_or_else(|| "–".into(), |all| format!("{:.1}×", all / cpu)),
        );
    }
    let _ = writeln!(
        out,
        "
A {secs} s clip ({mbit:.2} Mbit/s, a keyframe every {FPS} frames), decoded by `FrameSource` at a \
sample interval of 1 s to its end, with no inference; the median of {runs} runs by CPU time. \
Saving: CPU s of `All` ÷ CPU s of the row.
¹ Every access unit decoded; the sampler drops all but one picture a second after the decoder, \
before colour conversion and scaling.
² Non-key access units are dropped before the decoder, which decodes one picture per GOP.
The clip writer encodes with x264's ultrafast preset, which turns off CABAC and the deblocking \
filter: its pictures decode faster than a camera's Main or High profile stream at the same bit \
rate, so the absolute CPU figures are low for a real camera; the saving, a ratio of the same \
decoder's work on one stream, is less affected.
³ Every access unit until two keyframe intervals have been measured (about 2 s here), then \
keyframes only while the GOP is no longer than the sample interval. Its first seconds cost what \
`All` costs, so on a clip this short it sits a little above `Keyframes`; on a camera running for \
hours it costs what `Keyframes` does.
⁴ CPU time of `FrameSource::start`, which builds the pipeline and returns with the first frame \
decoded: paid once per camera (re)connection, included in the CPU s.
⁵ User + system CPU time of the whole process (getrusage, every GStreamer thread) ÷ the clip's \
length. A file is decoded as fast as possible; a camera delivers the same work over its real \
time, so this is the share of one core one real-time camera costs (start-up included).
",
        secs = ctx.cpu_seconds,
        mbit = ctx.cpu_clip_bytes as f64 * 8.0 / seconds / 1e6,
        runs = ctx.cpu_runs,
    );
}

fn render_latency(out: &mut String, ctx: &Context, alerts: &[Alert]) {
    let _ = writeln!(
        out,
        "### 3. Alert latency: frame delivered → event with snapshot durable ({} events)\n",
        alerts.len()
    );
    let _ = writeln!(out, "| part | p50 ms | p95 ms | max ms |");
    let _ = writeln!(out, "|---|---:|---:|---:|");
    let part = |value: fn(&Alert) -> f64| summary(alerts.iter().map(value));
    let parts = [
        (
            "**total: frame delivered → event durable** ¹",
            part(|a| a.total),
        ),
        (
            "analysis: queue, detector, tracker, skill",
            part(|a| a.analysis),
        ),
        (
            "snapshot: draw zone and box, encode JPEG ²",
            part(|a| a.snapshot),
        ),
        (
            "`put_media`: write and fsync the JPEG",
            part(|a| a.put_media),
        ),
        ("`append(event).wait()`: durable commit", part(|a| a.append)),
    ];
    for (part, s) in parts {
        let _ = writeln!(
            out,
            "| {part} | {:.1} | {:.1} | {:.1} |",
            s.p50, s.p95, s.max
        );
    }
    let _ = writeln!(
        out,
        "
{entries} entries of the person into the intrusion zone (right half, no dwell, no cooldown, so \
one event each), the {w}×{h} clip replayed at camera speed: the decoding thread hands each \
frame over at its presentation time (as a live source delivers it) at the skill's \
{fps} frames/s, and the analysis and commit run as in the daemon. p95 and max \
are nearest-rank over the events.
¹ From the moment the decoding thread hands the frame over (where the daemon's \
`last_alert_latency_ms` starts) to the return of `append(..).wait()`: the event and its snapshot \
survive a power cut. The parts are timed one after the other and add up to the total (a second \
event of the same frame would also wait for the first's commit).
² `annotate::snapshot_jpeg` at quality {SNAPSHOT_QUALITY} (the daemon's default) on the full \
{w}×{h} frame.
",
        entries = ctx.entries,
        fps = ctx.sample_fps,
        w = INTRUSION_SIZE.0,
        h = INTRUSION_SIZE.1,
    );
}

fn render_faces(out: &mut String, ctx: &Context, runs: &[FaceRun]) {
    let _ = writeln!(out, "### 4. Face search: exact scan of the face index\n");
    let _ = writeln!(
        out,
        "| enrolled photos | embeddings | build s | `search` mean ms | p95 ms | scan GB/s ¹ | `top_k({TOP_K})` mean ms | p95 ms |"
    );
    let _ = writeln!(out, "|---:|---:|---:|---:|---:|---:|---:|---:|");
    for run in runs {
        let bytes = (run.photos * FACE_DIMENSION * 4) as f64;
        let search = summary(run.search.iter().copied());
        let top_k = summary(run.top_k.iter().copied());
        let _ = writeln!(
            out,
            "| {} | {:.1} MB | {:.2} | {:.3} | {:.3} | {:.1} | {:.3} | {:.3} |",
            thousands(run.photos as f64),
            bytes / 1e6,
            run.build.as_secs_f64(),
            search.mean,
            search.p95,
            bytes / (search.mean / 1e3) / 1e9,
            top_k.mean,
            top_k.p95,
        );
    }
    let _ = writeln!(
        out,
        "
`FaceIndex::synthetic({FACE_DIMENSION}, n, seed)` (random unit vectors, one person per photo); \
{queries} queries, each an enrolled embedding spread over the index, checked to find its own \
photo. `search` (at the default threshold {DEFAULT_MATCH_THRESHOLD}) is what each face read in \
the pipeline costs; `top_k` the operator's \"who could this be\" list, which also keeps the best \
photo per person in a hash map. Build: making and inserting the n embeddings.
¹ Embedding bytes ÷ mean `search` time: how close the scan comes to the memory bandwidth.
",
        queries = ctx.face_queries,
    );
}
