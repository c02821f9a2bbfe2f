//! Vision in the daemon: cameras decoded by GStreamer (`appliance-media::frames`), one inference
//! worker per model batching frames across cameras (`appliance-vision::batch`), and per camera
//! the skills' analysis (`pipeline`) whose events are committed to the store with an annotated
//! snapshot, so they reach the outbox like every other event.
//!
//! Threads, not tasks: decoding and inference block. A camera has an ingest thread (frames in,
//! queued for each model its skills use; a full queue drops the camera's oldest frame) and an
//! analysis thread (findings in, tracks and skills, events out). Changing a camera or one of its
//! skills restarts that camera's threads; the models stay loaded.

pub mod catalog;
pub mod dry_run;
pub mod edit;
pub mod pipeline;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use appliance_config::VisionConfig;
use appliance_media::frames::{DecoderChoice, FrameSourceSpec, FrameStats, LiveFrames};
use appliance_model::{EventSource, MediaKind, NewEvent, Severity, Timestamp};
use appliance_skills::config::SkillConfig;
use appliance_skills::engine::{EventType, SkillEvent};
use appliance_skills::library::face::FaceIndex;
use appliance_skills::library::plate::PlateLibrary;
use appliance_skills::schedule::Weekday;
use appliance_store::EventStore;
use appliance_vision::annotate::snapshot_jpeg;
use appliance_vision::batch::{BatchQueue, FullQueue};
use appliance_vision::models::{Analyzer, Finding, Models};
use appliance_vision::registry::{Registry, default_bundled_dirs};
use appliance_vision::runtime::{Provider, Runtime, RuntimeOptions};
use image::RgbImage;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use serde::Serialize;
use utoipa::ToSchema;

use catalog::{Camera, Snapshot};
use pipeline::{CameraAnalysis, FACE_DIMENSION, Libraries, Raised, SkillProblem};

/// Seconds of video before and after an event a clip should cover; the media-server issue
/// records clips and fills `attributes.clip.media`.
const CLIP_PRE_S: f64 = 5.0;
const CLIP_POST_S: f64 = 10.0;

/// The runtime and the model registry, made from `[vision]` and the data dir.
pub fn models(config: &VisionConfig, data_dir: &std::path::Path) -> Result<Models, String> {
    let providers = config
        .providers
        .iter()
        .map(|p| match p.as_str() {
            "tensorrt" => Provider::Tensorrt,
            "cuda" => Provider::Cuda,
            "xnnpack" => Provider::Xnnpack,
            "acl" => Provider::Acl,
            _ => Provider::Cpu,
        })
        .collect();
    let runtime = Runtime::load(RuntimeOptions {
        library: (!config.onnxruntime.as_os_str().is_empty()).then(|| config.onnxruntime.clone()),
        providers,
        intra_threads: config.intra_threads,
        engine_cache: Some(data_dir.join("models/.tensorrt-cache")),
    })
    .map_err(|e| e.to_string())?;
    Ok(Models::new(runtime, registry(data_dir)))
}

/// `[vision] decoder`: `auto` or a GStreamer element name.
pub fn decoder_choice(config: &VisionConfig) -> DecoderChoice {
    match config.decoder.as_str() {
        "auto" => DecoderChoice::Auto,
        name => DecoderChoice::Named(name.to_string()),
    }
}

/// Models installed under the data dir, then the bundled ones.
fn registry(data_dir: &std::path::Path) -> Registry {
    Registry::new(data_dir.join("models"), default_bundled_dirs())
}

/// Local weekday and second of the day at `now`, `offset_s` east of UTC (skill schedules).
pub fn local_time(now: SystemTime, offset_s: i32) -> (Weekday, u32) {
    let unix = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
        + offset_s as i64;
    let days = unix.div_euclid(86_400);
    let seconds = unix.rem_euclid(86_400) as u32;
    // 1970-01-01 was a Thursday.
    const WEEK: [Weekday; 7] = [
        Weekday::Thu,
        Weekday::Fri,
        Weekday::Sat,
        Weekday::Sun,
        Weekday::Mon,
        Weekday::Tue,
        Weekday::Wed,
    ];
    (WEEK[days.rem_euclid(7) as usize], seconds)
}

/// A frame on its way to a model.
struct Job {
    group: usize,
    pts: Duration,
    image: Arc<RgbImage>,
    received: Instant,
    reply: mpsc::Sender<Analysed>,
}

/// A model's findings on a frame, back to the camera's analysis.
struct Analysed {
    group: usize,
    pts: Duration,
    image: Arc<RgbImage>,
    received: Instant,
    findings: Result<Vec<Finding>, String>,
}

/// One model's queue and worker thread.
struct ModelWorker {
    queue: Arc<BatchQueue<Job>>,
    thread: Option<JoinHandle<()>>,
}

impl ModelWorker {
    fn start(
        name: &str,
        analyzer: Arc<Analyzer>,
        queue_per_camera: usize,
        max_batch: usize,
    ) -> Self {
        let queue = Arc::new(BatchQueue::new(queue_per_camera, FullQueue::DropOldest));
        let thread = std::thread::Builder::new()
            .name(format!("infer-{name}"))
            .spawn({
                let queue = queue.clone();
                move || {
                    while let Some(batch) = queue.take_batch(max_batch) {
                        let images: Vec<&RgbImage> =
                            batch.iter().map(|j: &Job| j.image.as_ref()).collect();
                        let result = analyzer.analyse(&images);
                        for (i, job) in batch.iter().enumerate() {
                            let findings = match &result {
                                Ok((findings, _)) => {
                                    Ok(findings.get(i).cloned().unwrap_or_default())
                                }
                                Err(e) => Err(e.to_string()),
                            };
                            let _ = job.reply.send(Analysed {
                                group: job.group,
                                pts: job.pts,
                                image: job.image.clone(),
                                received: job.received,
                                findings,
                            });
                        }
                    }
                }
            })
            .expect("thread spawns");
        Self {
            queue,
            thread: Some(thread),
        }
    }
}

impl Drop for ModelWorker {
    fn drop(&mut self) {
        self.queue.close();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A camera's figures, for the API and `/metrics`.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct CameraStatus {
    /// `running`, `idle` (no enabled skill), `disabled`, or `error`.
    pub state: String,
    #[schema(value_type = Object)]
    pub frames: FrameStats,
    /// Frames the models analysed.
    pub inferred: u64,
    /// Frames dropped because the camera's queue to a model was full.
    pub queue_dropped: u64,
    pub events: u64,
    /// Milliseconds from a frame's arrival to its event being stored, last event.
    pub last_alert_latency_ms: Option<f64>,
    #[schema(value_type = Vec<Object>)]
    pub skill_problems: Vec<SkillProblem>,
    pub last_error: Option<String>,
}

struct CameraRunner {
    stop: Arc<AtomicBool>,
    status: Arc<Mutex<CameraStatus>>,
    threads: Vec<JoinHandle<()>>,
}

impl CameraRunner {
    fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

struct Inner {
    config: VisionConfig,
    store: EventStore,
    models: OnceLock<Result<Models, String>>,
    data_dir: PathBuf,
    libraries: Arc<Libraries>,
    workers: Mutex<HashMap<String, Arc<ModelWorker>>>,
    cameras: Mutex<HashMap<String, CameraRunner>>,
    events: AtomicU64,
    /// Serialises read-modify-write edits of the catalog from concurrent API requests.
    edits: tokio::sync::Mutex<()>,
    metrics: VisionMetrics,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CameraStage {
    camera: String,
    stage: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CameraLabel {
    camera: String,
}

/// Per-camera figures in `/metrics`, set from the cameras' status at each scrape.
#[derive(Default)]
struct VisionMetrics {
    frames: Family<CameraStage, Gauge>,
    decode_ms: Family<CameraLabel, Gauge<f64, AtomicU64>>,
    events: Family<CameraLabel, Gauge>,
}

/// The vision service; cheap to clone.
#[derive(Clone)]
pub struct Vision {
    inner: Arc<Inner>,
}

impl Vision {
    pub fn new(
        config: VisionConfig,
        store: EventStore,
        data_dir: PathBuf,
        registry: &mut prometheus_client::registry::Registry,
    ) -> Vision {
        let metrics = VisionMetrics::default();
        let sub = registry.sub_registry_with_prefix("appliance_vision");
        sub.register(
            "camera_frames",
            "Frames per camera and stage: in (reaching the decoder's input), skipped_before_decode (non-key frames not decoded), decoded, delivered (sampled for the skills), dropped (sampled out or replaced by a newer one), inferred (analysed by a model), queue_dropped (dropped waiting for a model)",
            metrics.frames.clone(),
        );
        sub.register(
            "camera_decode_milliseconds",
            "Mean time a frame spends in the decoder, per camera",
            metrics.decode_ms.clone(),
        );
        sub.register(
            "camera_events",
            "Skill events stored per camera since the camera started",
            metrics.events.clone(),
        );
        Vision {
            inner: Arc::new(Inner {
                config,
                store,
                models: OnceLock::new(),
                data_dir,
                libraries: Arc::new(Libraries::default()),
                workers: Mutex::new(HashMap::new()),
                cameras: Mutex::new(HashMap::new()),
                events: AtomicU64::new(0),
                edits: tokio::sync::Mutex::new(()),
                metrics,
            }),
        }
    }

    pub fn store(&self) -> &EventStore {
        &self.inner.store
    }

    /// The models, loading ONNX Runtime on first use; the error says what is missing.
    pub fn models(&self) -> Result<&Models, String> {
        self.inner
            .models
            .get_or_init(|| {
                let models = models(&self.inner.config, &self.inner.data_dir);
                if let Err(e) = &models {
                    tracing::error!(error = %e, "vision unavailable");
                }
                models
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// The model registry (readable without ONNX Runtime).
    pub fn registry(&self) -> Registry {
        registry(&self.inner.data_dir)
    }

    /// After a model was installed or removed: forget the loaded models and restart every
    /// camera, so each loads what the registry now holds (blocking).
    pub fn models_changed(&self) {
        if let Some(Ok(models)) = self.inner.models.get() {
            models.unload_all();
        }
        self.inner
            .workers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        let cameras: Vec<String> = self
            .inner
            .cameras
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect();
        for camera in cameras {
            self.restart_camera(&camera);
        }
    }

    /// Reads libraries and cameras from the store and starts every camera (blocking).
    pub fn start(&self) -> Result<(), appliance_store::StoreError> {
        let snapshot = Snapshot::read(self.store())?;
        self.load_libraries(&snapshot);
        let cameras: Vec<String> = snapshot.cameras.iter().map(|(id, _)| id.clone()).collect();
        for camera in cameras {
            self.restart_camera(&camera);
        }
        Ok(())
    }

    /// Rebuilds the in-memory face indexes and plate lists from the store.
    pub fn reload_libraries(&self) -> Result<(), appliance_store::StoreError> {
        let snapshot = Snapshot::read(self.store())?;
        self.load_libraries(&snapshot);
        Ok(())
    }

    fn load_libraries(&self, snapshot: &Snapshot) {
        let mut faces = HashMap::new();
        for library in &snapshot.face_libraries {
            let mut index = FaceIndex::new(FACE_DIMENSION).expect("a positive dimension");
            for (_, photo_id, photo) in snapshot
                .face_photos
                .iter()
                .filter(|(lib, _, _)| lib == &library.name)
            {
                if let Err(e) = index.insert(&photo.person_id, photo_id, &photo.embedding) {
                    tracing::error!(library = library.name, photo_id, error = %e, "face photo skipped");
                }
            }
            faces.insert(library.name.clone(), (library.clone(), index));
        }
        *self
            .inner
            .libraries
            .faces
            .write()
            .unwrap_or_else(|e| e.into_inner()) = faces;
        match PlateLibrary::new(snapshot.plate_lists.clone()) {
            Ok(plates) => {
                *self
                    .inner
                    .libraries
                    .plates
                    .write()
                    .unwrap_or_else(|e| e.into_inner()) = plates
            }
            Err(e) => tracing::error!(error = %e, "plate lists not loaded"),
        }
    }

    pub fn camera_status(&self, camera: &str) -> Option<CameraStatus> {
        let cameras = self.inner.cameras.lock().unwrap_or_else(|e| e.into_inner());
        cameras.get(camera).map(|runner| {
            runner
                .status
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
        })
    }

    pub fn statuses(&self) -> Vec<(String, CameraStatus)> {
        let cameras = self.inner.cameras.lock().unwrap_or_else(|e| e.into_inner());
        cameras
            .iter()
            .map(|(id, runner)| {
                (
                    id.clone(),
                    runner
                        .status
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .clone(),
                )
            })
            .collect()
    }

    /// Held while an API request reads, changes and writes the catalog.
    pub async fn edit(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.inner.edits.lock().await
    }

    /// Sets the `/metrics` gauges from the cameras' status.
    pub fn refresh_gauges(&self) {
        let metrics = &self.inner.metrics;
        metrics.frames.clear();
        metrics.decode_ms.clear();
        metrics.events.clear();
        for (camera, status) in self.statuses() {
            let frames = &status.frames;
            for (stage, value) in [
                ("in", frames.frames_in),
                ("skipped_before_decode", frames.skipped_before_decode),
                ("decoded", frames.decoded),
                ("delivered", frames.delivered),
                ("dropped", frames.dropped),
                ("inferred", status.inferred),
                ("queue_dropped", status.queue_dropped),
            ] {
                metrics
                    .frames
                    .get_or_create(&CameraStage {
                        camera: camera.clone(),
                        stage,
                    })
                    .set(value as i64);
            }
            let label = CameraLabel { camera };
            metrics
                .decode_ms
                .get_or_create(&label)
                .set(frames.decode_ms_avg());
            metrics
                .events
                .get_or_create(&label)
                .set(status.events as i64);
        }
    }

    /// Stops a camera (if running) and starts it again with its stored config and skills.
    pub fn restart_camera(&self, camera_id: &str) {
        if let Some(runner) = self
            .inner
            .cameras
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(camera_id)
        {
            runner.stop();
        }
        let camera: Option<Camera> = match catalog::get(self.store(), catalog::CAMERAS, camera_id) {
            Ok(camera) => camera,
            Err(e) => {
                tracing::error!(camera_id, error = %e, "cannot read the camera");
                return;
            }
        };
        let Some(camera) = camera else {
            return;
        };
        let runner = self.start_camera(camera_id, &camera);
        self.inner
            .cameras
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(camera_id.to_string(), runner);
    }

    /// Stops every camera and model worker.
    pub fn shutdown(&self) {
        let runners: Vec<CameraRunner> = self
            .inner
            .cameras
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
            .map(|(_, r)| r)
            .collect();
        for runner in runners {
            runner.stop();
        }
        self.inner
            .workers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    fn worker(&self, model: &str, analyzer: &Arc<Analyzer>) -> Arc<ModelWorker> {
        let mut workers = self.inner.workers.lock().unwrap_or_else(|e| e.into_inner());
        workers
            .entry(model.to_string())
            .or_insert_with(|| {
                Arc::new(ModelWorker::start(
                    model,
                    analyzer.clone(),
                    self.inner.config.queue_per_camera,
                    self.inner.config.max_batch,
                ))
            })
            .clone()
    }

    fn start_camera(&self, camera_id: &str, camera: &Camera) -> CameraRunner {
        let status = Arc::new(Mutex::new(CameraStatus::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let set_state = |state: &str, error: Option<String>| {
            let mut s = status.lock().unwrap_or_else(|e| e.into_inner());
            s.state = state.into();
            s.last_error = error;
        };
        let idle = |state: &str, error: Option<String>| {
            set_state(state, error);
            CameraRunner {
                stop: stop.clone(),
                status: status.clone(),
                threads: Vec::new(),
            }
        };
        if !camera.enabled {
            return idle("disabled", None);
        }
        let skills = match self.skills_of(camera_id) {
            Ok(skills) => skills,
            Err(e) => return idle("error", Some(e)),
        };
        if skills.is_empty() {
            return idle("idle", None);
        }
        let models = match self.models() {
            Ok(models) => models,
            Err(e) => return idle("error", Some(e)),
        };
        let (analysis, problems) =
            CameraAnalysis::new(skills, models, self.inner.libraries.clone());
        status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .skill_problems = problems;
        if analysis.is_empty() {
            return idle(
                "error",
                Some("no skill could start; see skill_problems".into()),
            );
        }
        let workers: Vec<Arc<ModelWorker>> = analysis
            .analyzers()
            .iter()
            .map(|(name, analyzer)| self.worker(name, analyzer))
            .collect();
        let mut spec = FrameSourceSpec::new(camera.source.clone());
        spec.decoder = decoder_choice(&self.inner.config);
        spec.keyframe_mode = camera.decode;
        spec.sample_interval = analysis.sample_interval();
        status.lock().unwrap_or_else(|e| e.into_inner()).state = "running".into();
        let (reply, results) = mpsc::channel::<Analysed>();
        let ingest = std::thread::Builder::new()
            .name(format!("cam-{camera_id}"))
            .spawn({
                let (camera_id, stop, status) =
                    (camera_id.to_string(), stop.clone(), status.clone());
                move || ingest(camera_id, spec, workers, reply, stop, status)
            })
            .expect("thread spawns");
        let analyse = std::thread::Builder::new()
            .name(format!("skills-{camera_id}"))
            .spawn({
                let this = self.clone();
                let (camera_id, status) = (camera_id.to_string(), status.clone());
                move || this.analyse(camera_id, analysis, results, status)
            })
            .expect("thread spawns");
        CameraRunner {
            stop,
            status,
            threads: vec![ingest, analyse],
        }
    }

    /// The camera's skills, parsed (they were validated when stored).
    fn skills_of(&self, camera_id: &str) -> Result<Vec<(String, SkillConfig)>, String> {
        let prefix = format!("{camera_id}/");
        let stored: Vec<(String, serde_json::Value)> =
            catalog::load(self.store(), catalog::SKILLS, &prefix).map_err(|e| e.to_string())?;
        Ok(stored
            .into_iter()
            .filter_map(|(key, value)| {
                let id = key[prefix.len()..].to_string();
                match SkillConfig::from_value(value) {
                    Ok(config) => Some((id, config)),
                    Err(e) => {
                        tracing::error!(camera_id, skill = id, error = %e, "stored skill invalid");
                        None
                    }
                }
            })
            .collect())
    }

    fn analyse(
        &self,
        camera_id: String,
        mut analysis: CameraAnalysis,
        results: mpsc::Receiver<Analysed>,
        status: Arc<Mutex<CameraStatus>>,
    ) {
        let offset = self.inner.config.utc_offset_seconds();
        // Ends when the ingest thread (and with it every sender) is gone.
        while let Ok(analysed) = results.recv() {
            let findings = match analysed.findings {
                Ok(findings) => findings,
                Err(e) => {
                    status.lock().unwrap_or_else(|p| p.into_inner()).last_error = Some(e);
                    continue;
                }
            };
            status.lock().unwrap_or_else(|e| e.into_inner()).inferred += 1;
            let image = &analysed.image;
            let raised = analysis.on_findings(
                analysed.group,
                analysed.pts.as_secs_f64(),
                image.dimensions(),
                findings,
                Some(local_time(SystemTime::now(), offset)),
            );
            for raised in raised {
                match self.commit_event(&camera_id, &raised, image, analysed.pts) {
                    Ok(()) => {
                        self.inner.events.fetch_add(1, Ordering::Relaxed);
                        let mut s = status.lock().unwrap_or_else(|e| e.into_inner());
                        s.events += 1;
                        s.last_alert_latency_ms =
                            Some(analysed.received.elapsed().as_secs_f64() * 1000.0);
                    }
                    Err(e) => {
                        tracing::error!(camera_id, error = %e, "skill event not stored");
                        status.lock().unwrap_or_else(|p| p.into_inner()).last_error = Some(e);
                    }
                }
            }
        }
    }

    /// Stores an event with its annotated snapshot (the snapshot first: media before metadata).
    fn commit_event(
        &self,
        camera_id: &str,
        raised: &Raised,
        image: &RgbImage,
        pts: Duration,
    ) -> Result<(), String> {
        let jpeg = snapshot_jpeg(image, &raised.shapes, self.inner.config.snapshot_quality)
            .map_err(|e| e.to_string())?;
        let snapshot = self
            .store()
            .put_media(MediaKind::Snapshot, "image/jpeg", &jpeg)
            .map_err(|e| e.to_string())?;
        // The frame's wall time is "now" less the time it spent in the pipeline; the event
        // began `pts - start_pts` before that frame.
        let held = Duration::from_secs_f64(
            (pts.as_secs_f64() - raised.event.start_pts_s).clamp(0.0, 86_400.0),
        );
        let started =
            Timestamp::from_millis(Timestamp::now().as_millis() - held.as_millis() as i64);
        let event = new_event(camera_id, raised, started, snapshot);
        self.store()
            .append(event)
            .wait()
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

/// The stored event of a skill's detection.
pub fn new_event(
    camera_id: &str,
    raised: &Raised,
    start: Timestamp,
    snapshot: appliance_model::MediaRef,
) -> NewEvent {
    let serde_json::Value::Object(mut attributes) =
        serde_json::to_value(&raised.event).expect("skill events serialise")
    else {
        unreachable!("a struct serialises to an object")
    };
    attributes.insert("skill_id".into(), raised.skill_id.clone().into());
    attributes.insert("model".into(), raised.model.clone().into());
    attributes.insert(
        "clip".into(),
        serde_json::json!({ "pre_s": CLIP_PRE_S, "post_s": CLIP_POST_S, "media": null }),
    );
    NewEvent {
        camera_id: camera_id.to_string(),
        channel_id: None,
        source: EventSource::Skill,
        kind: format!("skill.{}", event_type_name(&raised.event)),
        severity: severity(&raised.event),
        start_time: Some(start),
        end_time: None,
        attributes,
        media: vec![snapshot],
    }
}

fn event_type_name(event: &SkillEvent) -> String {
    serde_json::to_value(event.event_type)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| "unknown".into())
}

fn severity(event: &SkillEvent) -> Severity {
    match event.event_type {
        EventType::FaceRecognized | EventType::PlateRecognized => Severity::Info,
        EventType::Loitering | EventType::Crowd | EventType::FaceUnknown => Severity::Minor,
        _ => Severity::Major,
    }
}

/// The camera's ingest loop: frames from the source (reconnecting with backoff), to every
/// model the camera's skills use.
fn ingest(
    camera_id: String,
    spec: FrameSourceSpec,
    workers: Vec<Arc<ModelWorker>>,
    reply: mpsc::Sender<Analysed>,
    stop: Arc<AtomicBool>,
    status: Arc<Mutex<CameraStatus>>,
) {
    let mut source = LiveFrames::new(spec);
    while !stop.load(Ordering::Relaxed) {
        let frame = source.next_frame(Duration::from_millis(500));
        {
            let mut s = status.lock().unwrap_or_else(|e| e.into_inner());
            s.frames = source.stats();
            s.last_error = source.last_error().map(|e| e.to_string());
        }
        let Some(frame) = frame else {
            continue;
        };
        let received = Instant::now();
        let pts = frame.pts;
        let Some(image) = RgbImage::from_raw(frame.width, frame.height, frame.data) else {
            continue;
        };
        let image = Arc::new(image);
        for (group, worker) in workers.iter().enumerate() {
            let job = Job {
                group,
                pts,
                image: image.clone(),
                received,
                reply: reply.clone(),
            };
            if let Ok(Some(_dropped)) = worker.queue.push(&camera_id, job) {
                status
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .queue_dropped += 1;
            }
        }
    }
    for worker in &workers {
        worker.queue.forget(&camera_id);
    }
}
