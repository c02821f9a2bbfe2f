//! Skill engines: one per configured skill, turning the tracker's tracks into events frame by
//! frame.
//!
//! Rules every kind follows:
//!
//! - A track counts when its class is one of the config's `classes` and its score reaches
//!   `min_confidence`; others are as if absent. Its position is its reference point, the
//!   bottom-centre of its box (see [`crate::geometry::BBox::reference_point`]). A track the
//!   tracker still holds but did not see in this frame counts where it was last seen: the
//!   tracker's `max_age_s` is how long an unseen object is believed to still be there.
//! - Conditions must hold `min_dwell_s` (loitering: `max_dwell_s`) before an event; the event's
//!   `start_pts_s` is when the condition began, `pts_s` the frame that raised it.
//! - While the skill is disabled or outside its schedule it raises nothing and forgets all it
//!   knew. When it is armed again, every condition starts over at that frame: someone already
//!   standing in a zone when the schedule opens raises an intrusion after `min_dwell_s` from
//!   the opening (they are in an armed zone), not at the opening itself, and a loiterer's dwell
//!   counts from the opening. So arming never fires a burst of events for the past.
//! - A new config is applied by building a new engine: its state (who is in which zone since
//!   when) is reset, with the effect just described. Zones and lines may have changed shape or
//!   name, so carried-over state could be wrong in ways that are hard to see.
//! - A frame whose `t` is before the previous one's (the stream started over) resets the state
//!   too, and a non-finite `t` is ignored.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::config::{LineDirection, Skill, SkillConfig, SkillKind, Zone};
use crate::geometry::{BBox, Point, Side, point_in_polygon, segments_intersect, side_of_line};
use crate::schedule::Weekday;
use crate::track::{Label, Track};

/// The kind of an event; a skill may raise more than one (face recognition: recognised or
/// unknown).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventType {
    Intrusion,
    LineCrossing,
    Loitering,
    Crowd,
    Smoking,
    Phone,
    FaceRecognized,
    FaceUnknown,
    PlateRecognized,
}

/// The direction an object crossed a line in, relative to the line drawn from `from` to `to`
/// (see [`LineDirection`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CrossingDirection {
    LeftToRight,
    RightToLeft,
}

impl LineDirection {
    /// Whether a crossing in `direction` is one the line reports.
    pub fn accepts(self, direction: CrossingDirection) -> bool {
        match self {
            LineDirection::Both => true,
            LineDirection::LeftToRight => direction == CrossingDirection::LeftToRight,
            LineDirection::RightToLeft => direction == CrossingDirection::RightToLeft,
        }
    }
}

/// Something a skill saw. Fields that do not apply to the event's type are `None` and left out
/// of the JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SkillEvent {
    pub skill: Skill,
    /// The config's `name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(rename = "type")]
    pub event_type: EventType,
    /// The track's class; for a crowd the classes of the objects counted, sorted, comma
    /// separated.
    pub class: String,
    /// `None` for a crowd, which is about many tracks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub track_id: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<String>,
    /// The track's score; for a crowd the mean of those counted.
    pub score: f32,
    /// When the condition began (frame pts, s).
    pub start_pts_s: f64,
    /// The frame that raised the event.
    pub pts_s: f64,
    /// The track's box; for a crowd the box around all counted.
    pub bbox: BBox,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direction: Option<CrossingDirection>,
    /// Seconds in the zone (intrusion, loitering, smoking, phone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dwell_s: Option<f64>,
    /// Objects in the zone (crowd).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub person_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub person_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub similarity: Option<f32>,
    /// The plate as read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plate: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text_confidence: Option<f32>,
    /// The first of the config's lists that holds the plate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub list: Option<String>,
}

/// Finds plates in the plate lists, which live in [`crate::library`] and change at run time;
/// the engine only knows the names of the lists its config matches against. A closure
/// `Fn(&str, &[String]) -> Option<String>` is one.
pub trait PlateLookup {
    /// The name of the first of `lists` that holds the plate `text`, `None` if none does.
    fn find(&self, text: &str, lists: &[String]) -> Option<String>;
}

impl<F: Fn(&str, &[String]) -> Option<String>> PlateLookup for F {
    fn find(&self, text: &str, lists: &[String]) -> Option<String> {
        self(text, lists)
    }
}

/// The lookup of [`SkillEngine::on_frame`]: plates are on no list.
fn no_lists(_: &str, _: &[String]) -> Option<String> {
    None
}

/// A zone of a config, or the whole image for smoking and phone skills without zones.
#[derive(Debug, Clone)]
struct Area {
    name: Option<String>,
    polygon: Option<Vec<Point>>,
}

impl Area {
    fn from_zone(zone: &Zone) -> Area {
        Area {
            name: Some(zone.name.clone()),
            polygon: Some(zone.polygon.clone()),
        }
    }

    fn contains(&self, p: Point) -> bool {
        match &self.polygon {
            Some(polygon) => point_in_polygon(p, polygon),
            None => p.is_finite(),
        }
    }
}

/// One track's stay in one area.
#[derive(Debug, Clone, Copy)]
struct Stay {
    since: f64,
    /// The stay raised its event, or was suppressed by the cooldown; either way it is done.
    handled: bool,
}

/// Intrusion, loitering, smoking and phone: a track in an area for a while.
#[derive(Debug, Default)]
struct StayState {
    stays: HashMap<(u64, usize), Stay>,
    /// Time of the last event per track and area, for the cooldown and for skills that raise
    /// one event per track.
    last_event: HashMap<(u64, usize), f64>,
}

/// Where a track is relative to one line.
#[derive(Debug, Clone, Copy)]
struct LineSide {
    side: Side,
    /// Its latest position off the line on that side.
    at: Point,
    /// A crossing waiting to have lasted `min_dwell_s`: when it happened and which way.
    pending: Option<(f64, CrossingDirection)>,
}

#[derive(Debug, Default)]
struct LineState {
    sides: HashMap<(u64, usize), LineSide>,
    last_event: HashMap<(u64, usize), f64>,
}

/// One zone's crowd.
#[derive(Debug, Clone, Copy, Default)]
struct Crowd {
    /// Since when the count has been at least `min_count`.
    since: Option<f64>,
    /// An event was raised for the current crowd; cleared when the count drops.
    fired: bool,
    last_event: Option<f64>,
}

#[derive(Debug, Clone, Copy, Default)]
struct FaceState {
    recognized: bool,
    unknown: bool,
}

/// What an engine remembers between frames, by kind.
#[derive(Debug)]
enum State {
    Stays(StayState),
    Lines(LineState),
    Crowds(Vec<Crowd>),
    Faces(HashMap<u64, FaceState>),
    /// Tracks whose plate was reported.
    Plates(HashSet<u64>),
}

impl State {
    fn new(config: &SkillConfig) -> State {
        match &config.kind {
            SkillKind::Intrusion(_)
            | SkillKind::Loitering(_)
            | SkillKind::Smoking(_)
            | SkillKind::Phone(_) => State::Stays(StayState::default()),
            SkillKind::LineCrossing(_) => State::Lines(LineState::default()),
            SkillKind::Crowd(k) => State::Crowds(vec![Crowd::default(); k.zones.len()]),
            SkillKind::FaceRecognition(_) => State::Faces(HashMap::new()),
            SkillKind::PlateRecognition(_) => State::Plates(HashSet::new()),
        }
    }
}

/// Turns tracks into the events of one skill. See the module docs for the rules.
#[derive(Debug)]
pub struct SkillEngine {
    config: SkillConfig,
    areas: Vec<Area>,
    state: State,
    last_t: Option<f64>,
}

impl SkillEngine {
    /// An engine for `config`, which should have passed [`SkillConfig::validate`]; one that did
    /// not still runs without panicking (a zone with fewer than 3 points holds nothing).
    pub fn new(config: SkillConfig) -> SkillEngine {
        let areas = match &config.kind {
            SkillKind::Intrusion(k) => k.zones.iter().map(Area::from_zone).collect(),
            SkillKind::Loitering(k) => k.zones.iter().map(Area::from_zone).collect(),
            SkillKind::Crowd(k) => k.zones.iter().map(Area::from_zone).collect(),
            SkillKind::Smoking(k) | SkillKind::Phone(k) if k.zones.is_empty() => vec![Area {
                name: None,
                polygon: None,
            }],
            SkillKind::Smoking(k) | SkillKind::Phone(k) => {
                k.zones.iter().map(Area::from_zone).collect()
            }
            SkillKind::LineCrossing(_)
            | SkillKind::FaceRecognition(_)
            | SkillKind::PlateRecognition(_) => Vec::new(),
        };
        SkillEngine {
            state: State::new(&config),
            config,
            areas,
            last_t: None,
        }
    }

    pub fn config(&self) -> &SkillConfig {
        &self.config
    }

    /// Whether the skill is enabled and `local_time` (local weekday, seconds since local
    /// midnight) is in its schedule. Without a local time (the clock is not set yet) a
    /// scheduled skill runs: a missed intrusion is worse than one outside hours.
    pub fn is_armed(&self, local_time: Option<(Weekday, u32)>) -> bool {
        if !self.config.common.enabled {
            return false;
        }
        match (&self.config.common.schedule, local_time) {
            (Some(schedule), Some((day, seconds))) => schedule.contains(day, seconds),
            _ => true,
        }
    }

    /// The events of the frame at `t` (pts, s) given the tracker's tracks. Plates are reported
    /// without a list; use [`SkillEngine::on_frame_with`] to look them up.
    pub fn on_frame(
        &mut self,
        t: f64,
        tracks: &[Track],
        local_time: Option<(Weekday, u32)>,
    ) -> Vec<SkillEvent> {
        self.on_frame_with(t, tracks, local_time, &no_lists)
    }

    /// [`SkillEngine::on_frame`], looking plates up with `plates`.
    pub fn on_frame_with(
        &mut self,
        t: f64,
        tracks: &[Track],
        local_time: Option<(Weekday, u32)>,
        plates: &dyn PlateLookup,
    ) -> Vec<SkillEvent> {
        if !t.is_finite() {
            return Vec::new();
        }
        let armed = self.is_armed(local_time);
        if self.last_t.is_some_and(|last| t < last) || !armed {
            self.state = State::new(&self.config);
        }
        self.last_t = Some(t);
        if !armed {
            return Vec::new();
        }

        let common = &self.config.common;
        let tracks: Vec<&Track> = tracks
            .iter()
            .filter(|track| {
                common.classes.contains(&track.class)
                    && track.score >= common.min_confidence
                    && track.bbox.is_finite()
            })
            .collect();
        let mut events = Vec::new();
        let frame = Frame {
            config: &self.config,
            areas: &self.areas,
            t,
            tracks: &tracks,
        };
        match (&mut self.state, &self.config.kind) {
            (State::Stays(state), SkillKind::Intrusion(_)) => frame.stays(
                state,
                StayRule::detection(&self.config, EventType::Intrusion, false),
                &mut events,
            ),
            (State::Stays(state), SkillKind::Loitering(k)) => frame.stays(
                state,
                StayRule {
                    event_type: EventType::Loitering,
                    threshold_s: k.max_dwell_s,
                    once_per_track: false,
                },
                &mut events,
            ),
            (State::Stays(state), SkillKind::Smoking(_)) => frame.stays(
                state,
                StayRule::detection(&self.config, EventType::Smoking, true),
                &mut events,
            ),
            (State::Stays(state), SkillKind::Phone(_)) => frame.stays(
                state,
                StayRule::detection(&self.config, EventType::Phone, true),
                &mut events,
            ),
            (State::Lines(state), SkillKind::LineCrossing(k)) => {
                frame.lines(state, &k.lines, &mut events)
            }
            (State::Crowds(state), SkillKind::Crowd(k)) => {
                frame.crowds(state, k.min_count, &mut events)
            }
            (State::Faces(state), SkillKind::FaceRecognition(k)) => {
                frame.faces(state, k.match_threshold, k.unknown_faces, &mut events)
            }
            (State::Plates(state), SkillKind::PlateRecognition(k)) => {
                frame.plates(state, &k.lists, k.min_text_confidence, plates, &mut events)
            }
            // `State::new` made the state from the same kind.
            _ => {}
        }
        events
    }
}

/// How a stay becomes an event.
#[derive(Debug, Clone, Copy)]
struct StayRule {
    event_type: EventType,
    threshold_s: f64,
    /// Smoking and phone: one event per track (and zone) however often it comes back.
    once_per_track: bool,
}

impl StayRule {
    /// A rule with `min_dwell_s` as its threshold.
    fn detection(config: &SkillConfig, event_type: EventType, once_per_track: bool) -> StayRule {
        StayRule {
            event_type,
            threshold_s: config.common.min_dwell_s,
            once_per_track,
        }
    }
}

/// One frame's inputs, shared by the kinds' rules.
struct Frame<'a> {
    config: &'a SkillConfig,
    areas: &'a [Area],
    t: f64,
    tracks: &'a [&'a Track],
}

impl Frame<'_> {
    /// An event about `track` with the fields every event has.
    fn event(&self, event_type: EventType, track: &Track, start: f64) -> SkillEvent {
        SkillEvent {
            skill: self.config.skill(),
            name: self.config.common.name.clone(),
            event_type,
            class: track.class.clone(),
            track_id: Some(track.id),
            zone: None,
            line: None,
            score: track.score,
            start_pts_s: start,
            pts_s: self.t,
            bbox: track.bbox,
            direction: None,
            dwell_s: None,
            count: None,
            person_id: None,
            person_name: None,
            similarity: None,
            plate: None,
            text_confidence: None,
            list: None,
        }
    }

    fn present(&self) -> HashSet<u64> {
        self.tracks.iter().map(|track| track.id).collect()
    }

    fn in_cooldown(&self, last_event: Option<&f64>) -> bool {
        last_event.is_some_and(|&last| self.t - last < self.config.common.cooldown_s)
    }

    fn stays(&self, state: &mut StayState, rule: StayRule, events: &mut Vec<SkillEvent>) {
        let t = self.t;
        for track in self.tracks {
            let p = track.bbox.reference_point();
            for (index, area) in self.areas.iter().enumerate() {
                let key = (track.id, index);
                if !area.contains(p) {
                    // Leaving ends the stay; coming back is a new one.
                    state.stays.remove(&key);
                    continue;
                }
                let stay = state.stays.entry(key).or_insert(Stay {
                    since: t,
                    handled: false,
                });
                let dwell = t - stay.since;
                if stay.handled || dwell < rule.threshold_s {
                    continue;
                }
                // A stay that reaches its threshold inside the cooldown is dropped, not delayed:
                // it is the same object back at the same place, e.g. feet flickering across a
                // zone's border.
                stay.handled = true;
                let last = state.last_event.get(&key);
                if (rule.once_per_track && last.is_some()) || self.in_cooldown(last) {
                    continue;
                }
                state.last_event.insert(key, t);
                events.push(SkillEvent {
                    zone: area.name.clone(),
                    dwell_s: Some(dwell),
                    ..self.event(rule.event_type, track, stay.since)
                });
            }
        }
        let present = self.present();
        state.stays.retain(|(id, _), _| present.contains(id));
        state.last_event.retain(|(id, _), _| present.contains(id));
    }

    /// A crossing is the reference point moving from one side of a line to the other through
    /// the drawn segment (walking around its end is not one). Frames with the point exactly on
    /// the line are skipped, so touching the line and going back is no crossing either. The
    /// crossing is reported once the object has stayed on the far side for `min_dwell_s`;
    /// going back before cancels it.
    fn lines(
        &self,
        state: &mut LineState,
        lines: &[crate::config::Line],
        events: &mut Vec<SkillEvent>,
    ) {
        let t = self.t;
        let min_dwell = self.config.common.min_dwell_s;
        for track in self.tracks {
            let p = track.bbox.reference_point();
            for (index, line) in lines.iter().enumerate() {
                let side = side_of_line(line.from, line.to, p);
                if side == Side::On {
                    continue;
                }
                let key = (track.id, index);
                let Some(current) = state.sides.get_mut(&key) else {
                    state.sides.insert(
                        key,
                        LineSide {
                            side,
                            at: p,
                            pending: None,
                        },
                    );
                    continue;
                };
                if side != current.side {
                    let through = segments_intersect(current.at, p, line.from, line.to);
                    current.pending = match current.pending {
                        // Back before the crossing counted: neither counts.
                        Some(_) => None,
                        None if through => Some((
                            t,
                            if current.side == Side::Left {
                                CrossingDirection::LeftToRight
                            } else {
                                CrossingDirection::RightToLeft
                            },
                        )),
                        None => None,
                    };
                    current.side = side;
                }
                current.at = p;
                let Some((since, direction)) = current.pending else {
                    continue;
                };
                if t - since < min_dwell {
                    continue;
                }
                current.pending = None;
                let last = state.last_event.get(&key);
                if !line.direction.accepts(direction) || self.in_cooldown(last) {
                    continue;
                }
                state.last_event.insert(key, t);
                events.push(SkillEvent {
                    line: Some(line.name.clone()),
                    direction: Some(direction),
                    ..self.event(EventType::LineCrossing, track, since)
                });
            }
        }
        let present = self.present();
        state.sides.retain(|(id, _), _| present.contains(id));
        state.last_event.retain(|(id, _), _| present.contains(id));
    }

    /// Counts per zone. An event when the count has been at least `min_count` for
    /// `min_dwell_s`; then none until it has dropped below and the cooldown has passed. A crowd
    /// that re-forms inside the cooldown is reported when the cooldown ends, if still there: it
    /// is a state of the zone, not one object's flicker.
    fn crowds(&self, state: &mut [Crowd], min_count: u32, events: &mut Vec<SkillEvent>) {
        let t = self.t;
        for (crowd, area) in state.iter_mut().zip(self.areas) {
            let members: Vec<&Track> = self
                .tracks
                .iter()
                .copied()
                .filter(|track| area.contains(track.bbox.reference_point()))
                .collect();
            let count = u32::try_from(members.len()).unwrap_or(u32::MAX);
            if count < min_count || members.is_empty() {
                crowd.since = None;
                crowd.fired = false;
                continue;
            }
            let since = *crowd.since.get_or_insert(t);
            if crowd.fired
                || t - since < self.config.common.min_dwell_s
                || self.in_cooldown(crowd.last_event.as_ref())
            {
                continue;
            }
            crowd.fired = true;
            crowd.last_event = Some(t);
            let mut classes: Vec<&str> = members.iter().map(|m| m.class.as_str()).collect();
            classes.sort_unstable();
            classes.dedup();
            let bbox = members
                .iter()
                .map(|m| m.bbox)
                .reduce(|a, b| a.union(&b))
                .unwrap_or(members[0].bbox);
            let score = members.iter().map(|m| m.score).sum::<f32>() / members.len() as f32;
            events.push(SkillEvent {
                class: classes.join(","),
                track_id: None,
                zone: area.name.clone(),
                score,
                bbox,
                count: Some(count),
                ..self.event(EventType::Crowd, members[0], since)
            });
        }
    }

    /// One event per track for a recognised person, once the track has been seen `min_dwell_s`
    /// and its best face match reaches the threshold (without one, any match the face library
    /// reported counts: the pipeline labels a face only when the library matched it). With
    /// `unknown_faces`, a track still unmatched after `min_dwell_s` raises one unknown-face
    /// event; should it be recognised later, that is reported too.
    fn faces(
        &self,
        state: &mut HashMap<u64, FaceState>,
        threshold: Option<f32>,
        unknown_faces: bool,
        events: &mut Vec<SkillEvent>,
    ) {
        let min_dwell = self.config.common.min_dwell_s;
        for track in self.tracks {
            let face = state.entry(track.id).or_default();
            if face.recognized || self.t - track.first_seen < min_dwell {
                continue;
            }
            match &track.best_label {
                Some(Label::Face {
                    person_id,
                    name,
                    similarity,
                }) if threshold.is_none_or(|threshold| *similarity >= threshold) => {
                    face.recognized = true;
                    events.push(SkillEvent {
                        person_id: Some(person_id.clone()),
                        person_name: Some(name.clone()),
                        similarity: Some(*similarity),
                        ..self.event(EventType::FaceRecognized, track, track.first_seen)
                    });
                }
                _ if unknown_faces && !face.unknown => {
                    face.unknown = true;
                    events.push(self.event(EventType::FaceUnknown, track, track.first_seen));
                }
                _ => {}
            }
        }
        let present = self.present();
        state.retain(|id, _| present.contains(id));
    }

    /// One event per track once its best reading reaches `min_text_confidence` and the track
    /// has been seen `min_dwell_s` (time for the OCR to see the plate at its best).
    fn plates(
        &self,
        state: &mut HashSet<u64>,
        lists: &[String],
        min_text_confidence: f32,
        lookup: &dyn PlateLookup,
        events: &mut Vec<SkillEvent>,
    ) {
        for track in self.tracks {
            if state.contains(&track.id)
                || self.t - track.first_seen < self.config.common.min_dwell_s
            {
                continue;
            }
            if let Some(Label::Text { text, confidence }) = &track.best_label
                && *confidence >= min_text_confidence
            {
                state.insert(track.id);
                events.push(SkillEvent {
                    plate: Some(text.clone()),
                    text_confidence: Some(*confidence),
                    list: lookup.find(text, lists),
                    ..self.event(EventType::PlateRecognized, track, track.first_seen)
                });
            }
        }
        let present = self.present();
        state.retain(|id| present.contains(id));
    }
}
