//! A multi-object tracker in the style of ByteTrack: detections are matched to tracks by the
//! overlap (IoU) of their boxes with where each track is predicted to be, first the confident
//! detections, then the weak ones, which may only keep an existing track alive. Weak detections
//! are what a detector gives for a person half hidden behind a post; dropping them would end the
//! track and the skills would see a new object (a new intrusion) a frame later.
//!
//! Matching is greedy by descending IoU, ties broken by track then detection order, so the same
//! input always gives the same ids. At the low frame rates skills sample at (a few per second)
//! crowds are small and greedy matching gives the same pairs as the Hungarian method in practice.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::geometry::{BBox, Point};

/// What a second model said about an object: the face it matched or the text it read. Set by the
/// pipeline on the observation the face or plate model ran on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Label {
    /// A face matched in a face library.
    Face {
        person_id: String,
        name: String,
        similarity: f32,
    },
    /// Text read by OCR, e.g. a number plate.
    Text { text: String, confidence: f32 },
}

impl Label {
    /// How sure the model was: similarity of a face, confidence of a text. A NaN counts as 0 so
    /// that it never displaces a real label.
    pub fn strength(&self) -> f32 {
        let value = match self {
            Label::Face { similarity, .. } => *similarity,
            Label::Text { confidence, .. } => *confidence,
        };
        if value.is_nan() { 0.0 } else { value }
    }
}

/// One detection in one frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Observation {
    pub bbox: BBox,
    pub class: String,
    pub score: f32,
    pub label: Option<Label>,
}

/// A confirmed object followed over frames.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Track {
    /// Stable for the life of the track, unique and increasing per [`Tracker`] (from 1). Given
    /// at confirmation, so detections that never became tracks leave no gaps.
    pub id: u64,
    pub class: String,
    /// The box of the latest matched detection. Not moved while the track goes unseen, so an
    /// object lost at a zone's edge does not drift into the zone on a prediction.
    pub bbox: BBox,
    /// The highest score of the detections matched so far: how sure the detector ever was that
    /// this is a `class`. The weak detections that keep a track alive do not lower it.
    pub score: f32,
    /// Time (frame pts, s) of the first and of the latest matched detection; `last_seen` is
    /// before the current frame while the track goes unseen.
    pub first_seen: f64,
    pub last_seen: f64,
    /// Number of matched detections.
    pub hits: u32,
    /// Recent reference points (see [`BBox::reference_point`]) with their times, oldest first,
    /// at most [`TrackerConfig::trail_len`].
    pub trail: VecDeque<(f64, Point)>,
    /// The strongest label seen: highest face similarity or text confidence.
    pub best_label: Option<Label>,
}

/// Tracker tuning. The defaults suit detectors with calibrated scores at 1–10 frames per second.
#[derive(Debug, Clone, PartialEq)]
pub struct TrackerConfig {
    /// Detections at or above this score are matched first and may start tracks.
    pub high_score: f32,
    /// Detections below this are ignored; between the two they may only extend tracks.
    pub low_score: f32,
    /// Least IoU between a track's predicted box and a confident detection to match them.
    pub match_iou: f64,
    /// Least IoU for a weak detection: stricter, since a weak detection alone is not trusted.
    pub low_match_iou: f64,
    /// Matched detections a track needs before it is reported. A new track not matched in the
    /// frame after it appeared is dropped: one-frame false positives never become objects.
    pub min_hits: u32,
    /// Seconds a confirmed track is kept unseen before it is removed.
    pub max_age_s: f64,
    /// Length of [`Track::trail`].
    pub trail_len: usize,
}

impl Default for TrackerConfig {
    fn default() -> Self {
        Self {
            high_score: 0.5,
            low_score: 0.1,
            match_iou: 0.2,
            low_match_iou: 0.5,
            min_hits: 2,
            max_age_s: 2.0,
            trail_len: 32,
        }
    }
}

/// A track with what only the tracker needs.
#[derive(Debug, Clone)]
struct Entry {
    /// `id` is 0 until the track is confirmed.
    track: Track,
    confirmed: bool,
    /// Velocity of the box corners `[x0, y0, x1, y1]` per second, smoothed.
    velocity: [f64; 4],
}

impl Entry {
    /// Where the track's box is expected at `t` under constant velocity. Crossing people keep
    /// their ids because each one's predicted box overlaps its own next detection more than the
    /// other's.
    fn predicted(&self, t: f64) -> BBox {
        let dt = (t - self.track.last_seen).max(0.0);
        let b = self.track.bbox;
        let v = self.velocity;
        BBox::new(
            b.x0 + v[0] * dt,
            b.y0 + v[1] * dt,
            b.x1 + v[2] * dt,
            b.y1 + v[3] * dt,
        )
    }
}

/// The association of one frame, over indices into the tracker's entries and the frame's
/// observations.
struct Matching {
    predicted: Vec<BBox>,
    track_matched: Vec<bool>,
    observation_matched: Vec<bool>,
    pairs: Vec<(usize, usize)>,
}

/// Follows objects over frames. Feed it every frame a skill samples, in pts order.
#[derive(Debug, Clone)]
pub struct Tracker {
    config: TrackerConfig,
    entries: Vec<Entry>,
    next_id: u64,
    last_t: Option<f64>,
}

impl Default for Tracker {
    fn default() -> Self {
        Self::new(TrackerConfig::default())
    }
}

impl Tracker {
    pub fn new(config: TrackerConfig) -> Self {
        Self {
            config,
            entries: Vec::new(),
            next_id: 1,
            last_t: None,
        }
    }

    pub fn config(&self) -> &TrackerConfig {
        &self.config
    }

    /// Takes the detections of the frame at `t` seconds and returns the confirmed tracks, by id,
    /// including those not seen in this frame but kept (see [`Track::last_seen`]).
    ///
    /// Detections with a non-finite box or score, or scored below
    /// [`TrackerConfig::low_score`], are ignored. A frame with a non-finite `t` changes nothing.
    /// A `t` before the previous frame's means the stream started over (a camera reconnected,
    /// pts reset): all tracks are dropped, and ids keep increasing.
    pub fn update(&mut self, t: f64, observations: Vec<Observation>) -> Vec<Track> {
        if !t.is_finite() {
            return self.tracks();
        }
        if self.last_t.is_some_and(|last| t < last) {
            self.entries.clear();
        }
        self.last_t = Some(t);

        let max_age = self.config.max_age_s;
        self.entries
            .retain(|e| !e.confirmed || t - e.track.last_seen <= max_age);

        let observations: Vec<Observation> = observations
            .into_iter()
            .filter(|o| o.bbox.is_finite() && o.score.is_finite())
            .filter(|o| o.score >= self.config.low_score)
            .map(|mut o| {
                let b = o.bbox;
                o.bbox = BBox::new(b.x0, b.y0, b.x1, b.y1);
                o
            })
            .collect();
        let (high, low): (Vec<usize>, Vec<usize>) =
            (0..observations.len()).partition(|&i| observations[i].score >= self.config.high_score);

        let mut matching = Matching {
            predicted: self.entries.iter().map(|e| e.predicted(t)).collect(),
            track_matched: vec![false; self.entries.len()],
            observation_matched: vec![false; observations.len()],
            pairs: Vec::new(),
        };
        let all_tracks: Vec<usize> = (0..self.entries.len()).collect();
        self.associate(
            &mut matching,
            &observations,
            &all_tracks,
            &high,
            self.config.match_iou,
        );
        let confirmed_left: Vec<usize> = (0..self.entries.len())
            .filter(|&i| !matching.track_matched[i] && self.entries[i].confirmed)
            .collect();
        self.associate(
            &mut matching,
            &observations,
            &confirmed_left,
            &low,
            self.config.low_match_iou,
        );

        let mut observations: Vec<Option<Observation>> =
            observations.into_iter().map(Some).collect();
        for &(ti, oi) in &matching.pairs {
            if let Some(observation) = observations[oi].take() {
                self.apply(ti, t, observation);
            }
        }

        // Tentative tracks get one chance: unmatched in the frame after they appeared, they go.
        let mut matched = matching.track_matched.iter();
        self.entries
            .retain(|e| matched.next().is_some_and(|&m| m) || e.confirmed);

        for oi in high {
            if let Some(observation) = observations[oi].take() {
                self.start(t, observation);
            }
        }
        self.tracks()
    }

    /// The confirmed tracks, by id.
    pub fn tracks(&self) -> Vec<Track> {
        let mut tracks: Vec<Track> = self
            .entries
            .iter()
            .filter(|e| e.confirmed)
            .map(|e| e.track.clone())
            .collect();
        tracks.sort_by_key(|t| t.id);
        tracks
    }

    /// Greedy matching of `tracks` to `candidates` (indices into `observations`) of the same
    /// class by descending IoU, at least `min_iou`.
    fn associate(
        &self,
        matching: &mut Matching,
        observations: &[Observation],
        tracks: &[usize],
        candidates: &[usize],
        min_iou: f64,
    ) {
        let mut scored = Vec::new();
        for &ti in tracks {
            for &oi in candidates {
                let observation = &observations[oi];
                if matching.observation_matched[oi]
                    || self.entries[ti].track.class != observation.class
                {
                    continue;
                }
                let iou = matching.predicted[ti].iou(&observation.bbox);
                if iou >= min_iou && iou > 0.0 {
                    scored.push((iou, ti, oi));
                }
            }
        }
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
        for (_, ti, oi) in scored {
            if !matching.track_matched[ti] && !matching.observation_matched[oi] {
                matching.track_matched[ti] = true;
                matching.observation_matched[oi] = true;
                matching.pairs.push((ti, oi));
            }
        }
    }

    fn apply(&mut self, index: usize, t: f64, observation: Observation) {
        let trail_len = self.config.trail_len;
        let min_hits = self.config.min_hits;
        let entry = &mut self.entries[index];
        let track = &mut entry.track;
        let dt = t - track.last_seen;
        if dt > 0.0 {
            let (old, new) = (track.bbox, observation.bbox);
            let measured = [
                (new.x0 - old.x0) / dt,
                (new.y0 - old.y0) / dt,
                (new.x1 - old.x1) / dt,
                (new.y1 - old.y1) / dt,
            ];
            // The first measurement is taken as is; later ones are averaged with the estimate
            // so one jittery box does not throw the prediction off.
            let weight = if track.hits == 1 { 1.0 } else { 0.5 };
            for (v, m) in entry.velocity.iter_mut().zip(measured) {
                *v += weight * (m - *v);
            }
        }
        track.bbox = observation.bbox;
        track.last_seen = t;
        track.hits = track.hits.saturating_add(1);
        track.score = track.score.max(observation.score);
        push_trail(&mut track.trail, trail_len, t, observation.bbox);
        merge_label(&mut track.best_label, observation.label);
        if !entry.confirmed && track.hits >= min_hits {
            self.confirm(index);
        }
    }

    fn start(&mut self, t: f64, observation: Observation) {
        let mut trail = VecDeque::new();
        push_trail(&mut trail, self.config.trail_len, t, observation.bbox);
        self.entries.push(Entry {
            track: Track {
                id: 0,
                class: observation.class,
                bbox: observation.bbox,
                score: observation.score,
                first_seen: t,
                last_seen: t,
                hits: 1,
                trail,
                best_label: None,
            },
            confirmed: false,
            velocity: [0.0; 4],
        });
        let index = self.entries.len() - 1;
        merge_label(&mut self.entries[index].track.best_label, observation.label);
        if self.config.min_hits <= 1 {
            self.confirm(index);
        }
    }

    fn confirm(&mut self, index: usize) {
        let entry = &mut self.entries[index];
        entry.confirmed = true;
        entry.track.id = self.next_id;
        self.next_id += 1;
    }
}

fn push_trail(trail: &mut VecDeque<(f64, Point)>, len: usize, t: f64, bbox: BBox) {
    if len == 0 {
        return;
    }
    while trail.len() >= len {
        trail.pop_front();
    }
    trail.push_back((t, bbox.reference_point()));
}

/// Keeps the stronger of the two labels.
fn merge_label(best: &mut Option<Label>, new: Option<Label>) {
    if let Some(new) = new
        && best.as_ref().is_none_or(|b| new.strength() > b.strength())
    {
        *best = Some(new);
    }
}
