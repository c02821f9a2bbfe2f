//! Skill configs: what a skill watches for, where, how sure it must be, and when it is armed.
//!
//! A config is one flat JSON object tagged by `"skill"`; the common fields sit beside the
//! kind's own:
//!
//! ```json
//! {"skill": "intrusion", "model": "yolox_nano", "classes": ["person"], "min_confidence": 0.5,
//!  "min_dwell_s": 0.5, "zones": [{"name": "gate", "polygon": [[0.5,0],[1,0],[1,1],[0.5,1]]}]}
//! ```
//!
//! [`SkillConfig::from_json`] reads one and checks it, and every error names the field it is
//! about (`zones[0].polygon: a zone needs at least 3 points`), since a person fixes it in a form
//! that [`json_schema`] describes. Coordinates are normalised (see [`crate::geometry`]).

use std::collections::HashSet;
use std::fmt;

use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use crate::geometry::{Point, polygon_area};
use crate::schedule::Schedule;

/// A config that cannot be used, with the path of the field at fault (`zones[0].polygon`,
/// empty for the document as a whole).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub path: String,
    pub message: String,
}

impl ConfigError {
    fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl std::error::Error for ConfigError {}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// A skill's config: the fields every skill has and those of its kind.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "Skill config")]
pub struct SkillConfig {
    #[serde(flatten)]
    pub common: CommonConfig,
    #[serde(flatten)]
    pub kind: SkillKind,
}

fn default_true() -> bool {
    true
}
fn default_min_confidence() -> f32 {
    0.5
}
fn default_cooldown_s() -> f64 {
    10.0
}
fn default_sample_fps() -> f64 {
    2.0
}
fn default_min_text_confidence() -> f32 {
    0.8
}

/// The fields every skill has.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CommonConfig {
    /// A name for people, carried in the skill's events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// A disabled skill keeps its config but raises nothing.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// The detector, by its name in the model registry.
    #[schemars(length(min = 1))]
    pub model: String,
    /// The detector classes the skill looks at, e.g. `["person"]` or `["car", "truck"]`.
    #[schemars(length(min = 1))]
    pub classes: Vec<String>,
    /// Objects the detector was less sure of are ignored.
    #[serde(default = "default_min_confidence")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub min_confidence: f32,
    /// Seconds the condition must hold before an event: an object in a zone, on the far side of
    /// a line, a crowd at its size, a face or plate in view. Filters out passers-by and flicker.
    /// Loitering waits `max_dwell_s` instead.
    #[serde(default)]
    #[schemars(range(min = 0.0))]
    pub min_dwell_s: f64,
    /// Seconds after an event during which the same object in the same zone or on the same line
    /// raises no other: a stay or crossing that would have is dropped, since it is the same
    /// object flickering across a border. For crowds, per zone: a crowd still there when the
    /// cooldown ends is reported then.
    #[serde(default = "default_cooldown_s")]
    #[schemars(range(min = 0.0))]
    pub cooldown_s: f64,
    /// When the skill is armed, in the box's local time; absent: always.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<Schedule>,
    /// Frames per second the skill needs analysed. More follows fast objects better and costs
    /// accelerator time.
    #[serde(default = "default_sample_fps")]
    #[schemars(extend("exclusiveMinimum" = 0))]
    pub sample_fps: f64,
}

/// What a skill does, with the fields of that kind.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(tag = "skill", rename_all = "snake_case")]
pub enum SkillKind {
    /// An object of the classes inside a zone for at least `min_dwell_s`: one event per entry.
    Intrusion(ZonesConfig),
    /// An object's reference point crossing a line: one event per crossing.
    LineCrossing(LineCrossingConfig),
    /// An object staying in a zone longer than `max_dwell_s`: one event per stay.
    Loitering(LoiteringConfig),
    /// At least `min_count` objects in a zone for `min_dwell_s`; re-armed once the count drops.
    Crowd(CrowdConfig),
    /// A smoking detection (a detector with such a class) held `min_dwell_s`: one per track.
    Smoking(DetectionConfig),
    /// A phone-use detection held `min_dwell_s`: one per track.
    Phone(DetectionConfig),
    /// A face recognised in a library, or (optionally) one that was not.
    FaceRecognition(FaceRecognitionConfig),
    /// A number plate read confidently, with the list it is on.
    PlateRecognition(PlateRecognitionConfig),
}

/// The kinds of skill, for events and lookups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Skill {
    Intrusion,
    LineCrossing,
    Loitering,
    Crowd,
    Smoking,
    Phone,
    FaceRecognition,
    PlateRecognition,
}

impl Skill {
    pub const ALL: [Skill; 8] = [
        Skill::Intrusion,
        Skill::LineCrossing,
        Skill::Loitering,
        Skill::Crowd,
        Skill::Smoking,
        Skill::Phone,
        Skill::FaceRecognition,
        Skill::PlateRecognition,
    ];

    /// The `"skill"` tag.
    pub fn as_str(self) -> &'static str {
        match self {
            Skill::Intrusion => "intrusion",
            Skill::LineCrossing => "line_crossing",
            Skill::Loitering => "loitering",
            Skill::Crowd => "crowd",
            Skill::Smoking => "smoking",
            Skill::Phone => "phone",
            Skill::FaceRecognition => "face_recognition",
            Skill::PlateRecognition => "plate_recognition",
        }
    }

    fn from_tag(tag: &str) -> Option<Skill> {
        Skill::ALL.into_iter().find(|s| s.as_str() == tag)
    }
}

impl fmt::Display for Skill {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl SkillKind {
    pub fn skill(&self) -> Skill {
        match self {
            SkillKind::Intrusion(_) => Skill::Intrusion,
            SkillKind::LineCrossing(_) => Skill::LineCrossing,
            SkillKind::Loitering(_) => Skill::Loitering,
            SkillKind::Crowd(_) => Skill::Crowd,
            SkillKind::Smoking(_) => Skill::Smoking,
            SkillKind::Phone(_) => Skill::Phone,
            SkillKind::FaceRecognition(_) => Skill::FaceRecognition,
            SkillKind::PlateRecognition(_) => Skill::PlateRecognition,
        }
    }
}

/// A named area of the image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Zone {
    #[schemars(length(min = 1))]
    pub name: String,
    /// Corners `[x, y]` in order (either way round); at least 3, not all on one line. An object
    /// is in the zone when its reference point (the bottom-centre of its box) is inside or on
    /// the border.
    #[schemars(length(min = 3))]
    pub polygon: Vec<Point>,
}

/// Which crossings of a line count, relative to the line drawn from `from` to `to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LineDirection {
    /// From the left of the line to its right, as seen walking from `from` to `to` on the
    /// displayed image (for a line drawn left to right: downwards).
    LeftToRight,
    /// From the right of the line to its left.
    RightToLeft,
    /// Either way.
    #[default]
    Both,
}

/// A named tripwire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Line {
    #[schemars(length(min = 1))]
    pub name: String,
    pub from: Point,
    pub to: Point,
    #[serde(default)]
    pub direction: LineDirection,
}

/// Intrusion: the zones watched.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ZonesConfig {
    #[schemars(length(min = 1))]
    pub zones: Vec<Zone>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LineCrossingConfig {
    #[schemars(length(min = 1))]
    pub lines: Vec<Line>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LoiteringConfig {
    #[schemars(length(min = 1))]
    pub zones: Vec<Zone>,
    /// Seconds in a zone after which a stay is loitering.
    #[schemars(extend("exclusiveMinimum" = 0))]
    pub max_dwell_s: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CrowdConfig {
    #[schemars(length(min = 1))]
    pub zones: Vec<Zone>,
    /// Objects in one zone that make a crowd.
    #[schemars(range(min = 1))]
    pub min_count: u32,
}

/// Smoking and phone use: detector classes, optionally only within zones.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DetectionConfig {
    /// Where to look; absent or empty: the whole image.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub zones: Vec<Zone>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FaceRecognitionConfig {
    /// The face library to match against.
    #[schemars(length(min = 1))]
    pub library: String,
    /// Least similarity for a match, stricter than the library's own; absent: every match the
    /// library reports counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub match_threshold: Option<f32>,
    /// Also raise an event, once per track, for a face not matched after `min_dwell_s` (which
    /// must then be above 0: the time recognition gets).
    #[serde(default)]
    pub unknown_faces: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PlateRecognitionConfig {
    /// Plate lists to look the text up in; the event names the first that holds it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lists: Vec<String>,
    /// Least OCR confidence for a reading to count.
    #[serde(default = "default_min_text_confidence")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub min_text_confidence: f32,
}

impl SkillConfig {
    /// Reads and checks a config. Errors name the field: `min_confidence: must be within 0..=1`.
    pub fn from_json(json: &[u8]) -> Result<SkillConfig, ConfigError> {
        let value: Value =
            serde_json::from_slice(json).map_err(|e| ConfigError::new("", e.to_string()))?;
        SkillConfig::from_value(value)
    }

    /// Reads and checks a config already parsed as JSON (e.g. part of a larger document).
    ///
    /// Not a derived `Deserialize`: serde buffers internally tagged and flattened structs, and
    /// the buffered parts lose the path of the field in their errors. So the tag is read first
    /// and the common and the kind's fields are each read from the object with their paths;
    /// fields neither knows are rejected by name.
    pub fn from_value(value: Value) -> Result<SkillConfig, ConfigError> {
        let Value::Object(object) = &value else {
            return Err(ConfigError::new("", "a skill config is a JSON object"));
        };
        let skill = match object.get("skill") {
            None => return Err(ConfigError::new("skill", "missing field")),
            Some(Value::String(tag)) => Skill::from_tag(tag).ok_or_else(|| {
                let known: Vec<String> = Skill::ALL.iter().map(|s| format!("`{s}`")).collect();
                ConfigError::new(
                    "skill",
                    format!(
                        "unknown skill `{tag}`, expected one of {}",
                        known.join(", ")
                    ),
                )
            })?,
            Some(_) => return Err(ConfigError::new("skill", "expected a string")),
        };
        let known = known_fields(skill);
        if let Some(unknown) = object.keys().find(|key| !known.contains(key)) {
            let expected: Vec<String> = known.iter().map(|k| format!("`{k}`")).collect();
            return Err(ConfigError::new(
                unknown.as_str(),
                format!("unknown field, expected one of {}", expected.join(", ")),
            ));
        }
        let common = read(&value)?;
        let kind = match skill {
            Skill::Intrusion => SkillKind::Intrusion(read(&value)?),
            Skill::LineCrossing => SkillKind::LineCrossing(read(&value)?),
            Skill::Loitering => SkillKind::Loitering(read(&value)?),
            Skill::Crowd => SkillKind::Crowd(read(&value)?),
            Skill::Smoking => SkillKind::Smoking(read(&value)?),
            Skill::Phone => SkillKind::Phone(read(&value)?),
            Skill::FaceRecognition => SkillKind::FaceRecognition(read(&value)?),
            Skill::PlateRecognition => SkillKind::PlateRecognition(read(&value)?),
        };
        let config = SkillConfig { common, kind };
        config.validate()?;
        Ok(config)
    }

    pub fn skill(&self) -> Skill {
        self.kind.skill()
    }

    /// The checks types cannot express. Configs built in code can be checked with it too; the
    /// engine does not need them checked, only to be told the mistakes people make.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let c = &self.common;
        if c.name.as_deref().is_some_and(|n| n.trim().is_empty()) {
            return Err(ConfigError::new("name", "must not be blank"));
        }
        if c.model.trim().is_empty() {
            return Err(ConfigError::new("model", "must not be blank"));
        }
        if c.classes.is_empty() {
            return Err(ConfigError::new("classes", "name at least one class"));
        }
        for (i, class) in c.classes.iter().enumerate() {
            if class.trim().is_empty() {
                return Err(ConfigError::new(
                    format!("classes[{i}]"),
                    "must not be blank",
                ));
            }
        }
        unit_interval("min_confidence", c.min_confidence)?;
        non_negative("min_dwell_s", c.min_dwell_s)?;
        non_negative("cooldown_s", c.cooldown_s)?;
        if !(c.sample_fps.is_finite() && c.sample_fps > 0.0) {
            return Err(ConfigError::new("sample_fps", "must be above 0"));
        }
        if let Some(schedule) = &c.schedule {
            validate_schedule(schedule)?;
        }

        match &self.kind {
            SkillKind::Intrusion(k) => validate_zones(&k.zones, true),
            SkillKind::LineCrossing(k) => validate_lines(&k.lines),
            SkillKind::Loitering(k) => {
                validate_zones(&k.zones, true)?;
                if !(k.max_dwell_s.is_finite() && k.max_dwell_s > 0.0) {
                    return Err(ConfigError::new("max_dwell_s", "must be above 0"));
                }
                Ok(())
            }
            SkillKind::Crowd(k) => {
                validate_zones(&k.zones, true)?;
                if k.min_count == 0 {
                    return Err(ConfigError::new("min_count", "must be at least 1"));
                }
                Ok(())
            }
            SkillKind::Smoking(k) | SkillKind::Phone(k) => validate_zones(&k.zones, false),
            SkillKind::FaceRecognition(k) => {
                if k.library.trim().is_empty() {
                    return Err(ConfigError::new("library", "must not be blank"));
                }
                if let Some(threshold) = k.match_threshold {
                    unit_interval("match_threshold", threshold)?;
                }
                if k.unknown_faces && c.min_dwell_s <= 0.0 {
                    return Err(ConfigError::new(
                        "min_dwell_s",
                        "must be above 0 with unknown_faces: it is the time a face gets to be \
                         recognised before it is called unknown",
                    ));
                }
                Ok(())
            }
            SkillKind::PlateRecognition(k) => {
                unit_interval("min_text_confidence", k.min_text_confidence)?;
                let mut seen = HashSet::new();
                for (i, list) in k.lists.iter().enumerate() {
                    if list.trim().is_empty() {
                        return Err(ConfigError::new(format!("lists[{i}]"), "must not be blank"));
                    }
                    if !seen.insert(list) {
                        return Err(ConfigError::new(
                            format!("lists[{i}]"),
                            format!("`{list}` is listed twice"),
                        ));
                    }
                }
                Ok(())
            }
        }
    }
}

/// Validates on the way in, so a config embedded in another document (TOML, an API body) is
/// checked wherever it is read. See [`SkillConfig::from_value`].
impl<'de> Deserialize<'de> for SkillConfig {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        SkillConfig::from_value(value).map_err(serde::de::Error::custom)
    }
}

/// The JSON Schema (draft 2020-12) of [`SkillConfig`], for the API to publish and forms to be
/// built from. It states types, required fields, defaults and ranges; the few rules it cannot
/// (unique zone names, polygons with area) are [`SkillConfig::validate`]'s.
pub fn json_schema() -> Value {
    schemars::schema_for!(SkillConfig).to_value()
}

/// Reads `T` from `value` with the path of the failing field in the error.
fn read<T: DeserializeOwned>(value: &Value) -> Result<T, ConfigError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        let message = e.into_inner().to_string();
        // serde says "missing field `x`" at the object: name the field itself.
        match message
            .strip_prefix("missing field `")
            .and_then(|rest| rest.strip_suffix('`'))
        {
            Some(field) if path.is_empty() => ConfigError::new(field, "missing field"),
            Some(field) => ConfigError::new(format!("{path}.{field}"), "missing field"),
            None => ConfigError::new(path, message),
        }
    })
}

/// The fields a config of `skill` may have: the tag, the common ones and the kind's, sorted.
fn known_fields(skill: Skill) -> Vec<String> {
    let mut known = field_names::<CommonConfig>();
    known.extend(match skill {
        Skill::Intrusion => field_names::<ZonesConfig>(),
        Skill::LineCrossing => field_names::<LineCrossingConfig>(),
        Skill::Loitering => field_names::<LoiteringConfig>(),
        Skill::Crowd => field_names::<CrowdConfig>(),
        Skill::Smoking | Skill::Phone => field_names::<DetectionConfig>(),
        Skill::FaceRecognition => field_names::<FaceRecognitionConfig>(),
        Skill::PlateRecognition => field_names::<PlateRecognitionConfig>(),
    });
    known.push("skill".to_owned());
    known.sort();
    known
}

/// The fields of a struct, as its schema lists them (so serde renames are honoured).
fn field_names<T: JsonSchema>() -> Vec<String> {
    schemars::schema_for!(T)
        .get("properties")
        .and_then(Value::as_object)
        .map(|properties| properties.keys().cloned().collect())
        .unwrap_or_default()
}

fn unit_interval(path: &str, value: f32) -> Result<(), ConfigError> {
    if (0.0..=1.0).contains(&value) {
        Ok(())
    } else {
        Err(ConfigError::new(path, "must be within 0..=1"))
    }
}

fn non_negative(path: &str, value: f64) -> Result<(), ConfigError> {
    if value.is_finite() && value >= 0.0 {
        Ok(())
    } else {
        Err(ConfigError::new(path, "must be 0 or more"))
    }
}

fn point(path: &str, p: Point) -> Result<(), ConfigError> {
    if p.is_normalised() {
        Ok(())
    } else {
        Err(ConfigError::new(
            path,
            format!(
                "[{}, {}] is outside the image: coordinates are fractions of its width and \
                 height, 0..=1",
                p.x, p.y
            ),
        ))
    }
}

fn validate_zones(zones: &[Zone], required: bool) -> Result<(), ConfigError> {
    if required && zones.is_empty() {
        return Err(ConfigError::new("zones", "draw at least one zone"));
    }
    let mut names = HashSet::new();
    for (i, zone) in zones.iter().enumerate() {
        if zone.name.trim().is_empty() {
            return Err(ConfigError::new(
                format!("zones[{i}].name"),
                "must not be blank",
            ));
        }
        if !names.insert(zone.name.as_str()) {
            return Err(ConfigError::new(
                format!("zones[{i}].name"),
                format!("another zone is already called `{}`", zone.name),
            ));
        }
        let path = format!("zones[{i}].polygon");
        if zone.polygon.len() < 3 {
            return Err(ConfigError::new(path, "a zone needs at least 3 points"));
        }
        for (j, &p) in zone.polygon.iter().enumerate() {
            point(&format!("{path}[{j}]"), p)?;
        }
        // A millionth of the image is about a pixel at 1 MP: anything smaller is a mistake.
        if polygon_area(&zone.polygon) < 1e-6 {
            return Err(ConfigError::new(
                path,
                "the points are all on one line: the zone has no area",
            ));
        }
    }
    Ok(())
}

fn validate_lines(lines: &[Line]) -> Result<(), ConfigError> {
    if lines.is_empty() {
        return Err(ConfigError::new("lines", "draw at least one line"));
    }
    let mut names = HashSet::new();
    for (i, line) in lines.iter().enumerate() {
        if line.name.trim().is_empty() {
            return Err(ConfigError::new(
                format!("lines[{i}].name"),
                "must not be blank",
            ));
        }
        if !names.insert(line.name.as_str()) {
            return Err(ConfigError::new(
                format!("lines[{i}].name"),
                format!("another line is already called `{}`", line.name),
            ));
        }
        point(&format!("lines[{i}].from"), line.from)?;
        point(&format!("lines[{i}].to"), line.to)?;
        if line.from == line.to {
            return Err(ConfigError::new(
                format!("lines[{i}].to"),
                "a line needs two different points",
            ));
        }
    }
    Ok(())
}

fn validate_schedule(schedule: &Schedule) -> Result<(), ConfigError> {
    if schedule.0.is_empty() {
        return Err(ConfigError::new(
            "schedule",
            "an empty schedule is never armed; leave it out to be armed always",
        ));
    }
    for (i, range) in schedule.0.iter().enumerate() {
        if range.days.is_empty() {
            return Err(ConfigError::new(
                format!("schedule[{i}].days"),
                "name at least one day",
            ));
        }
        if range.start.seconds() >= crate::schedule::SECONDS_PER_DAY {
            return Err(ConfigError::new(
                format!("schedule[{i}].start"),
                "a range starts before 24:00",
            ));
        }
        if range.start == range.end {
            return Err(ConfigError::new(
                format!("schedule[{i}].end"),
                "the range is empty; for a whole day write 00:00 to 24:00",
            ));
        }
    }
    Ok(())
}
