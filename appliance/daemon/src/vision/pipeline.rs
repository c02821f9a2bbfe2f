//! One camera's analysis, the same for the daemon and the dry run: the camera's skills grouped
//! by the model they name (one tracker per group, so every skill on a model sees the same track
//! ids), findings turned into normalised observations (faces looked up in their library), and
//! the skill engines run on the tracks.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use appliance_skills::config::{SkillConfig, SkillKind};
use appliance_skills::engine::{SkillEngine, SkillEvent};
use appliance_skills::geometry::BBox;
use appliance_skills::library::face::{FaceIndex, Library};
use appliance_skills::library::plate::PlateLibrary;
use appliance_skills::schedule::Weekday;
use appliance_skills::track::{Label, Observation, Tracker, TrackerConfig};
use appliance_vision::annotate::{OBJECT_COLOUR, OTHER_COLOUR, Shape, ZONE_COLOUR};
use appliance_vision::models::{Analyzer, Finding, ModelError, Models};

/// Dimension of the face embeddings the libraries hold (MobileFaceNet).
pub const FACE_DIMENSION: usize = 192;

/// The face libraries and plate lists, shared by every camera and changed live by the API.
#[derive(Default)]
pub struct Libraries {
    pub faces: RwLock<HashMap<String, (Library, FaceIndex)>>,
    pub plates: RwLock<PlateLibrary>,
}

impl Libraries {
    /// The face matching `embedding` in `library` at the library's threshold, as a label.
    fn face_label(&self, library: &str, embedding: &[f32]) -> Option<Label> {
        let faces = self.faces.read().unwrap_or_else(|e| e.into_inner());
        let (library, index) = faces.get(library)?;
        let found = index.search(embedding, library.match_threshold).ok()??;
        let name = library
            .people
            .iter()
            .find(|p| p.id == found.person_id)
            .map(|p| p.name.clone())
            .unwrap_or_else(|| found.person_id.clone());
        Some(Label::Face {
            person_id: found.person_id,
            name,
            similarity: found.similarity,
        })
    }

    /// The first of `lists` holding `text` now (exact matches only: a skill's event must not
    /// name a list a different car is on).
    fn plate_list(&self, text: &str, lists: &[String]) -> Option<String> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let plates = self.plates.read().unwrap_or_else(|e| e.into_inner());
        let matches = plates.lookup(text, now);
        lists.iter().find_map(|list| {
            matches
                .iter()
                .find(|m| !m.fuzzy && &m.list == list)
                .map(|m| m.list.clone())
        })
    }
}

/// A skill on a camera.
struct Slot {
    id: String,
    engine: SkillEngine,
}

/// The skills of a camera that share a model (and, for faces, a library).
struct Group {
    model: String,
    library: Option<String>,
    analyzer: Arc<Analyzer>,
    classes: BTreeSet<String>,
    tracker: Tracker,
    slots: Vec<Slot>,
}

/// An event a skill raised, with what to draw on its snapshot.
#[derive(Debug, Clone)]
pub struct Raised {
    pub skill_id: String,
    pub model: String,
    pub event: SkillEvent,
    pub shapes: Vec<Shape>,
}

pub struct CameraAnalysis {
    groups: Vec<Group>,
    libraries: Arc<Libraries>,
    sample_fps: f64,
}

/// Why a skill of a camera is not running.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SkillProblem {
    pub skill_id: String,
    pub error: String,
}

impl CameraAnalysis {
    /// Groups the skills; a skill whose model cannot be loaded is left out and reported.
    pub fn new(
        skills: Vec<(String, SkillConfig)>,
        models: &Models,
        libraries: Arc<Libraries>,
    ) -> (CameraAnalysis, Vec<SkillProblem>) {
        let mut groups: Vec<Group> = Vec::new();
        let mut problems = Vec::new();
        let mut sample_fps: f64 = 0.0;
        for (id, config) in skills {
            if !config.common.enabled {
                continue;
            }
            let library = match &config.kind {
                SkillKind::FaceRecognition(face) => Some(face.library.clone()),
                _ => None,
            };
            let model = config.common.model.clone();
            let analyzer = match models.get(&model) {
                Ok(analyzer) => analyzer,
                Err(error) => {
                    problems.push(SkillProblem {
                        skill_id: id,
                        error: error.to_string(),
                    });
                    continue;
                }
            };
            if let Err(error) = fits(&config, &analyzer) {
                problems.push(SkillProblem {
                    skill_id: id,
                    error: error.to_string(),
                });
                continue;
            }
            sample_fps = sample_fps.max(config.common.sample_fps);
            let classes = config.common.classes.iter().cloned();
            let slot = Slot {
                id,
                engine: SkillEngine::new(config.clone()),
            };
            match groups
                .iter_mut()
                .find(|g| g.model == model && g.library == library)
            {
                Some(group) => {
                    group.classes.extend(classes);
                    group.slots.push(slot);
                }
                None => groups.push(Group {
                    model,
                    library,
                    analyzer,
                    classes: classes.collect(),
                    tracker: Tracker::new(TrackerConfig::default()),
                    slots: vec![slot],
                }),
            }
        }
        (
            CameraAnalysis {
                groups,
                libraries,
                sample_fps,
            },
            problems,
        )
    }

    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// Frames the skills need: one per this interval (the fastest skill's rate); zero for
    /// every frame.
    pub fn sample_interval(&self) -> Duration {
        if self.sample_fps > 0.0 {
            Duration::from_secs_f64(1.0 / self.sample_fps)
        } else {
            Duration::ZERO
        }
    }

    /// The models to run on each frame, one per group, in group order.
    pub fn analyzers(&self) -> Vec<(String, Arc<Analyzer>)> {
        self.groups
            .iter()
            .map(|g| (g.model.clone(), g.analyzer.clone()))
            .collect()
    }

    /// Feeds group `group`'s findings on the frame at `pts_s` (a `width`×`height` frame) to its
    /// tracker and skills.
    pub fn on_findings(
        &mut self,
        group: usize,
        pts_s: f64,
        (width, height): (u32, u32),
        findings: Vec<Finding>,
        local_time: Option<(Weekday, u32)>,
    ) -> Vec<Raised> {
        let Some(group) = self.groups.get_mut(group) else {
            return Vec::new();
        };
        let (w, h) = (width.max(1) as f64, height.max(1) as f64);
        let libraries = &self.libraries;
        let observations: Vec<Observation> = findings
            .into_iter()
            .filter(|f| group.classes.contains(&f.class))
            .map(|f| {
                let label = match (&f.embedding, &group.library, &f.text) {
                    (Some(embedding), Some(library), _) => libraries.face_label(library, embedding),
                    (_, _, Some((text, confidence))) => Some(Label::Text {
                        text: text.clone(),
                        confidence: *confidence,
                    }),
                    _ => None,
                };
                Observation {
                    bbox: BBox::new(
                        f.bbox.x0 as f64 / w,
                        f.bbox.y0 as f64 / h,
                        f.bbox.x1 as f64 / w,
                        f.bbox.y1 as f64 / h,
                    ),
                    class: f.class,
                    score: f.score,
                    label,
                }
            })
            .collect();
        let tracks = group.tracker.update(pts_s, observations);
        let lookup = |text: &str, lists: &[String]| libraries.plate_list(text, lists);
        let mut raised = Vec::new();
        for slot in &mut group.slots {
            for event in slot
                .engine
                .on_frame_with(pts_s, &tracks, local_time, &lookup)
            {
                let shapes = shapes_of(slot.engine.config(), &event);
                raised.push(Raised {
                    skill_id: slot.id.clone(),
                    model: group.model.clone(),
                    event,
                    shapes,
                });
            }
        }
        raised
    }
}

/// Checks that the skill's model does what the skill needs.
fn fits(config: &SkillConfig, analyzer: &Analyzer) -> Result<(), ModelError> {
    let needs = match (&config.kind, analyzer) {
        (SkillKind::FaceRecognition(_), Analyzer::Faces { .. }) => None,
        (SkillKind::FaceRecognition(_), _) => Some("a face detector"),
        (SkillKind::PlateRecognition(_), Analyzer::Plates { .. }) => None,
        (SkillKind::PlateRecognition(_), _) => Some("a text detector"),
        (_, Analyzer::Objects { .. }) => None,
        _ => Some("an object detector"),
    };
    match needs {
        None => Ok(()),
        Some(what) => Err(ModelError::Unusable {
            model: config.common.model.clone(),
            message: format!("the {} skill needs {what}", config.kind.skill()),
        }),
    }
}

/// The skill's zones or lines and the event's box, for the snapshot.
fn shapes_of(config: &SkillConfig, event: &SkillEvent) -> Vec<Shape> {
    let zones = match &config.kind {
        SkillKind::Intrusion(z) => z.zones.as_slice(),
        SkillKind::Loitering(l) => l.zones.as_slice(),
        SkillKind::Crowd(c) => c.zones.as_slice(),
        SkillKind::Smoking(d) | SkillKind::Phone(d) => d.zones.as_slice(),
        _ => &[],
    };
    let point = |p: &appliance_skills::geometry::Point| [p.x as f32, p.y as f32];
    let mut shapes: Vec<Shape> = zones
        .iter()
        .map(|zone| Shape::Polygon {
            points: zone.polygon.iter().map(point).collect(),
            colour: if event.zone.as_deref() == Some(&zone.name) {
                ZONE_COLOUR
            } else {
                OTHER_COLOUR
            },
        })
        .collect();
    if let SkillKind::LineCrossing(lines) = &config.kind {
        shapes.extend(lines.lines.iter().map(|line| Shape::Line {
            points: vec![point(&line.from), point(&line.to)],
            colour: ZONE_COLOUR,
        }));
    }
    let b = &event.bbox;
    shapes.push(Shape::Box {
        bbox: [b.x0 as f32, b.y0 as f32, b.x1 as f32, b.y1 as f32],
        colour: OBJECT_COLOUR,
    });
    shapes
}
