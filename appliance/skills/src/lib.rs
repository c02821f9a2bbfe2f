//! Skills as plain code: no sockets, no threads, no clock of their own. The daemon's vision
//! pipeline feeds them observations (normalised boxes with class and score, plus a face identity
//! or plate text where a model gave one) with the frame's timestamp, and they return events.
//!
//! Per camera, each sampled frame goes through:
//!
//! 1. [`track::Tracker::update`]: the frame's detections become tracks with stable ids;
//! 2. [`engine::SkillEngine::on_frame`], once per configured skill: the tracks become events.
//!
//! Skill configs ([`config::SkillConfig`]) are JSON, checked with errors that name the field,
//! and described by [`config::json_schema`]. All coordinates are normalised (0..1, see
//! [`geometry`]) and all times are frame timestamps in seconds, given by the caller.

pub mod config;
pub mod engine;
pub mod geometry;
pub mod library;
pub mod schedule;
pub mod track;

pub use config::{ConfigError, Skill, SkillConfig, SkillKind, json_schema};
pub use engine::{EventType, PlateLookup, SkillEngine, SkillEvent};
pub use geometry::{BBox, Point};
pub use schedule::Weekday;
pub use track::{Label, Observation, Track, Tracker, TrackerConfig};
