//! From a model's name to something that analyses frames: the registry entry's manifest picks
//! the runner (object detector, face detector + embedder, plate reader) and its parameters,
//! and each model is loaded once and shared by every camera and skill that names it (one ONNX
//! Runtime session per model).
//!
//! A skill names one model; the models it implies come from the registry by task: a face
//! detector brings the face embedding model, a text detector the text recogniser and, when
//! installed, the direction classifier.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use image::RgbImage;
use serde::Serialize;

use crate::detect::{DetectError, Detector, DetectorFamily, DetectorSpec};
use crate::face::{FaceDetector, FaceEmbedder, FaceError, FaceFamily, FaceSpec, align};
use crate::geometry::BBox;
use crate::ocr::{OcrError, PlateReader, TextDetector, TextDirection, TextRecognizer};
use crate::registry::{ModelEntry, Registry, RegistryError, Task};
use crate::runtime::{Runtime, RuntimeError};

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error(transparent)]
    Detect(#[from] DetectError),
    #[error(transparent)]
    Face(#[from] FaceError),
    #[error(transparent)]
    Ocr(#[from] OcrError),
    #[error("model {model}: {message}")]
    Unusable { model: String, message: String },
}

/// What a model found in a frame, in the frame's pixels.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    pub bbox: BBox,
    pub class: String,
    pub score: f32,
    /// Faces: the L2-normalised embedding of the aligned face.
    #[serde(skip)]
    pub embedding: Option<Vec<f32>>,
    /// Plates: the text read and the recogniser's confidence.
    pub text: Option<(String, f32)>,
}

/// Time per stage of one `analyse` call (all frames of the batch).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Timings {
    pub preprocess: Duration,
    pub inference: Duration,
    pub postprocess: Duration,
}

/// A loaded model, ready to analyse frames.
pub enum Analyzer {
    Objects {
        detector: Detector,
        labels: Vec<String>,
    },
    Faces {
        detector: FaceDetector,
        embedder: FaceEmbedder,
    },
    Plates {
        /// Boxed: three sessions and their options dwarf the other variants.
        reader: Box<PlateReader>,
    },
}

impl std::fmt::Debug for Analyzer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Analyzer::Objects { .. } => "Analyzer::Objects",
            Analyzer::Faces { .. } => "Analyzer::Faces",
            Analyzer::Plates { .. } => "Analyzer::Plates",
        })
    }
}

impl Analyzer {
    /// Findings per frame, in the order of `frames`.
    pub fn analyse(
        &self,
        frames: &[&RgbImage],
    ) -> Result<(Vec<Vec<Finding>>, Timings), ModelError> {
        match self {
            Analyzer::Objects { detector, labels } => {
                let (detections, times) = detector.detect_timed(frames)?;
                let findings = detections
                    .into_iter()
                    .map(|frame| {
                        frame
                            .into_iter()
                            .map(|d| Finding {
                                bbox: d.bbox,
                                class: labels
                                    .get(d.class_id)
                                    .cloned()
                                    .unwrap_or_else(|| format!("class{}", d.class_id)),
                                score: d.score,
                                embedding: None,
                                text: None,
                            })
                            .collect()
                    })
                    .collect();
                Ok((
                    findings,
                    Timings {
                        preprocess: times.preprocess,
                        inference: times.inference,
                        postprocess: times.postprocess,
                    },
                ))
            }
            Analyzer::Faces { detector, embedder } => {
                let mut timings = Timings::default();
                let mut out = Vec::with_capacity(frames.len());
                for frame in frames {
                    let started = Instant::now();
                    let faces = detector.detect(frame)?;
                    let aligned: Vec<RgbImage> = faces
                        .iter()
                        .map(|face| align(frame, &face.landmarks))
                        .collect::<Result<_, _>>()?;
                    let embeddings = if aligned.is_empty() {
                        Vec::new()
                    } else {
                        embedder.embed(&aligned)?
                    };
                    // Detection, alignment and embedding together: faces are few per frame.
                    timings.inference += started.elapsed();
                    out.push(
                        faces
                            .into_iter()
                            .zip(embeddings)
                            .map(|(face, embedding)| Finding {
                                bbox: face.bbox,
                                class: "face".into(),
                                score: face.score,
                                embedding: Some(embedding),
                                text: None,
                            })
                            .collect(),
                    );
                }
                Ok((out, timings))
            }
            Analyzer::Plates { reader } => {
                let mut timings = Timings::default();
                let mut out = Vec::with_capacity(frames.len());
                for frame in frames {
                    let (lines, times) = reader.read_timed(frame)?;
                    timings.inference += times.total();
                    out.push(
                        lines
                            .into_iter()
                            .filter(|line| !line.text.trim().is_empty())
                            .map(|line| Finding {
                                bbox: line.bbox,
                                class: "plate".into(),
                                score: line.confidence,
                                embedding: None,
                                text: Some((line.text, line.confidence)),
                            })
                            .collect(),
                    );
                }
                Ok((out, timings))
            }
        }
    }

    /// Aligned-face embeddings of every face in a photo (face library enrolment), best first.
    pub fn embed_faces(&self, photo: &RgbImage) -> Result<Vec<(f32, Vec<f32>)>, ModelError> {
        let (mut findings, _) = self.analyse(&[photo])?;
        let mut faces: Vec<(f32, Vec<f32>)> = findings
            .pop()
            .unwrap_or_default()
            .into_iter()
            .filter_map(|f| f.embedding.map(|e| (f.score, e)))
            .collect();
        faces.sort_by(|a, b| b.0.total_cmp(&a.0));
        Ok(faces)
    }
}

/// The runtime, the registry and the models loaded so far.
pub struct Models {
    runtime: Runtime,
    registry: Registry,
    loaded: Mutex<HashMap<String, Arc<Analyzer>>>,
}

impl Models {
    pub fn new(runtime: Runtime, registry: Registry) -> Self {
        Self {
            runtime,
            registry,
            loaded: Mutex::new(HashMap::new()),
        }
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// The analyzer for the model `name`, loaded on first use and shared afterwards.
    pub fn get(&self, name: &str) -> Result<Arc<Analyzer>, ModelError> {
        if let Some(loaded) = self.lock().get(name) {
            return Ok(loaded.clone());
        }
        // Loaded outside the lock: a first load takes a while and other models may be wanted.
        let analyzer = Arc::new(self.load(name)?);
        // Warm-up: the first run allocates, and with TensorRT builds its engines; better here
        // than on a camera's first frame, which would then be late.
        let started = Instant::now();
        if let Err(error) = analyzer.analyse(&[&RgbImage::from_pixel(64, 64, image::Rgb([114; 3]))])
        {
            tracing::warn!(model = name, %error, "warm-up run failed");
        }
        tracing::info!(
            model = name,
            warm_up_ms = started.elapsed().as_millis() as u64,
            "model loaded"
        );
        Ok(self
            .lock()
            .entry(name.to_string())
            .or_insert(analyzer)
            .clone())
    }

    /// Forgets loaded models (after one was installed or removed).
    pub fn unload_all(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Analyzer>>> {
        self.loaded.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn session(&self, entry: &ModelEntry) -> Result<crate::runtime::Model, ModelError> {
        Ok(self.runtime.session(&entry.model_path())?)
    }

    /// The first model in the registry doing `task` (preferring the default name).
    fn companion(&self, task: Task, preferred: &str) -> Result<Option<ModelEntry>, ModelError> {
        match self.registry.get(preferred) {
            Ok(entry) if entry.manifest.task == task => return Ok(Some(entry)),
            Ok(_) | Err(RegistryError::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
        for (name, entry) in self.registry.list() {
            if let Ok(entry) = entry
                && entry.manifest.task == task
            {
                return Ok(Some(self.registry.get(&name)?));
            }
        }
        Ok(None)
    }

    fn load(&self, name: &str) -> Result<Analyzer, ModelError> {
        let entry = self.registry.get(name)?;
        let manifest = &entry.manifest;
        let unusable = |message: String| ModelError::Unusable {
            model: name.to_string(),
            message,
        };
        let score = manifest.thresholds.score;
        let nms_iou = manifest.thresholds.nms_iou;
        match manifest.task {
            Task::Detector => {
                let family = match manifest.family.as_str() {
                    "yolox" => DetectorFamily::Yolox,
                    "yolov5" => DetectorFamily::Yolov5,
                    _ => DetectorFamily::Yolov8,
                };
                let spec = DetectorSpec {
                    family,
                    width: manifest.input.width,
                    height: manifest.input.height,
                    normalisation: manifest.input.normalisation(),
                    pad: manifest.input.pad,
                    score_threshold: score.unwrap_or(0.25),
                    nms_iou: nms_iou.unwrap_or(0.45),
                };
                Ok(Analyzer::Objects {
                    detector: Detector::new(self.session(&entry)?, spec)?,
                    labels: entry.labels()?,
                })
            }
            Task::FaceDetector => {
                let family = match manifest.family.as_str() {
                    "blazeface" => FaceFamily::Blazeface,
                    _ => FaceFamily::Centerface,
                };
                let spec = FaceSpec {
                    family,
                    width: manifest.input.width,
                    height: manifest.input.height,
                    score_threshold: score.unwrap_or(0.5),
                    nms_iou: nms_iou.unwrap_or(0.3),
                };
                let embedding = self
                    .companion(Task::FaceEmbedding, "face_embedding")?
                    .ok_or_else(|| unusable("no face embedding model installed".into()))?;
                Ok(Analyzer::Faces {
                    detector: FaceDetector::new(self.session(&entry)?, spec)?,
                    embedder: FaceEmbedder::new(self.session(&embedding)?)?,
                })
            }
            Task::TextDetector => {
                let recogniser = self
                    .companion(Task::TextRecognizer, "ppocr_rec")?
                    .ok_or_else(|| unusable("no text recogniser installed".into()))?;
                let direction = self.companion(Task::TextDirection, "ppocr_cls")?;
                let detector = TextDetector::new(self.session(&entry)?);
                let direction = match direction {
                    Some(entry) => Some(TextDirection::new(self.session(&entry)?)),
                    None => None,
                };
                let recogniser = TextRecognizer::new(self.session(&recogniser)?)?;
                Ok(Analyzer::Plates {
                    reader: Box::new(PlateReader::new(detector, direction, recogniser)),
                })
            }
            Task::FaceEmbedding | Task::TextRecognizer | Task::TextDirection => {
                Err(unusable(format!(
                    "a {:?} model is used by a skill's main model, not named by a skill",
                    manifest.task
                )))
            }
        }
    }
}
