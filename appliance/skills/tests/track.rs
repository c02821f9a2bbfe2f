//! The tracker on simulated detections: ids survive crossings and missed frames, and end when an
//! object has been gone longer than `max_age_s`.

use appliance_skills::{BBox, Label, Observation, Track, Tracker, TrackerConfig};

/// A person-sized box (0.08 × 0.3) with its feet at `(x, y)`.
fn person_at(x: f64, y: f64, score: f32) -> Observation {
    Observation {
        bbox: BBox::new(x - 0.04, y - 0.3, x + 0.04, y),
        class: "person".to_owned(),
        score,
        label: None,
    }
}

fn ids(tracks: &[Track]) -> Vec<u64> {
    tracks.iter().map(|t| t.id).collect()
}

#[test]
fn a_track_is_confirmed_after_min_hits_and_keeps_its_id() {
    let mut tracker = Tracker::default();
    assert!(
        tracker
            .update(0.0, vec![person_at(0.3, 0.8, 0.9)])
            .is_empty()
    );
    let tracks = tracker.update(0.5, vec![person_at(0.31, 0.8, 0.9)]);
    assert_eq!(ids(&tracks), [1]);
    let t = &tracks[0];
    assert_eq!((t.first_seen, t.last_seen, t.hits), (0.0, 0.5, 2));
    assert_eq!(t.class, "person");
    assert_eq!(t.trail.len(), 2);
    for i in 2..10 {
        let tracks = tracker.update(
            i as f64 * 0.5,
            vec![person_at(0.3 + i as f64 * 0.01, 0.8, 0.9)],
        );
        assert_eq!(ids(&tracks), [1]);
    }
}

#[test]
fn one_frame_false_positives_never_become_tracks_nor_use_ids() {
    let mut tracker = Tracker::default();
    tracker.update(0.0, vec![person_at(0.2, 0.5, 0.9)]);
    tracker.update(0.5, vec![person_at(0.8, 0.9, 0.9)]);
    tracker.update(1.0, vec![]);
    assert!(tracker.tracks().is_empty());
    tracker.update(1.5, vec![person_at(0.5, 0.7, 0.9)]);
    let tracks = tracker.update(2.0, vec![person_at(0.5, 0.7, 0.9)]);
    assert_eq!(ids(&tracks), [1]);
}

#[test]
fn two_people_crossing_keep_their_ids() {
    let mut tracker = Tracker::default();
    // A walks right, B walks left, slightly different depth and size; they overlap for several
    // frames in the middle.
    let a = |i: usize| {
        let x = 0.2 + 0.04 * i as f64;
        Observation {
            bbox: BBox::new(x - 0.05, 0.45, x + 0.05, 0.8),
            class: "person".to_owned(),
            score: 0.9,
            label: None,
        }
    };
    let b = |i: usize| {
        let x = 0.8 - 0.04 * i as f64;
        Observation {
            bbox: BBox::new(x - 0.045, 0.5, x + 0.045, 0.82),
            class: "person".to_owned(),
            score: 0.85,
            label: None,
        }
    };
    let mut a_id = None;
    let mut b_id = None;
    for i in 0..16 {
        // Detector output order flips halfway, as it does in real life.
        let observations = if i % 2 == 0 {
            vec![a(i), b(i)]
        } else {
            vec![b(i), a(i)]
        };
        let tracks = tracker.update(i as f64 * 0.25, observations);
        if i == 0 {
            continue;
        }
        assert_eq!(tracks.len(), 2, "frame {i}");
        let a_x = 0.2 + 0.04 * i as f64;
        let b_x = 0.8 - 0.04 * i as f64;
        let ta = tracks
            .iter()
            .find(|t| (t.bbox.y0 - 0.45).abs() < 1e-9)
            .unwrap();
        let tb = tracks
            .iter()
            .find(|t| (t.bbox.y0 - 0.5).abs() < 1e-9)
            .unwrap();
        assert!((ta.bbox.reference_point().x - a_x).abs() < 1e-9);
        assert!((tb.bbox.reference_point().x - b_x).abs() < 1e-9);
        assert_eq!(
            *a_id.get_or_insert(ta.id),
            ta.id,
            "A's id changed at frame {i}"
        );
        assert_eq!(
            *b_id.get_or_insert(tb.id),
            tb.id,
            "B's id changed at frame {i}"
        );
    }
    assert_ne!(a_id, b_id);
}

#[test]
fn missed_frames_do_not_change_the_id() {
    let mut tracker = Tracker::default();
    let mut x = 0.2;
    let mut t = 0.0;
    let mut seen = Vec::new();
    for frame in 0..20 {
        // Frames 5 and 10–11 miss the person (occluded); the track is kept meanwhile.
        let missed = frame == 5 || frame == 10 || frame == 11;
        let observations = if missed {
            vec![]
        } else {
            vec![person_at(x, 0.8, 0.9)]
        };
        let tracks = tracker.update(t, observations);
        if frame > 0 {
            assert_eq!(ids(&tracks), [1], "frame {frame}");
            if missed {
                assert!(tracks[0].last_seen < t);
            } else {
                assert_eq!(tracks[0].last_seen, t);
            }
        }
        seen.extend(ids(&tracks));
        x += 0.02;
        t += 0.5;
    }
    assert!(seen.iter().all(|&id| id == 1));
}

#[test]
fn a_track_unseen_past_max_age_is_gone_and_a_new_object_gets_a_new_id() {
    let mut tracker = Tracker::new(TrackerConfig {
        max_age_s: 1.0,
        ..TrackerConfig::default()
    });
    tracker.update(0.0, vec![person_at(0.3, 0.8, 0.9)]);
    assert_eq!(
        ids(&tracker.update(0.5, vec![person_at(0.3, 0.8, 0.9)])),
        [1]
    );
    assert_eq!(ids(&tracker.update(1.0, vec![])), [1]);
    assert_eq!(ids(&tracker.update(1.5, vec![])), [1]);
    assert!(tracker.update(2.0, vec![]).is_empty());
    // Someone at the same place later is someone new.
    tracker.update(2.5, vec![person_at(0.3, 0.8, 0.9)]);
    assert_eq!(
        ids(&tracker.update(3.0, vec![person_at(0.3, 0.8, 0.9)])),
        [2]
    );
}

#[test]
fn weak_detections_keep_tracks_alive_but_start_none() {
    let mut tracker = Tracker::new(TrackerConfig {
        max_age_s: 0.6,
        ..TrackerConfig::default()
    });
    tracker.update(0.0, vec![person_at(0.3, 0.8, 0.9)]);
    tracker.update(0.5, vec![person_at(0.3, 0.8, 0.9)]);
    // Half hidden: scores 0.2–0.3 for longer than max_age.
    for i in 2..8 {
        let tracks = tracker.update(i as f64 * 0.5, vec![person_at(0.3, 0.8, 0.25)]);
        assert_eq!(ids(&tracks), [1]);
        assert_eq!(tracks[0].last_seen, i as f64 * 0.5);
        // The score is the best seen, so skills keep trusting the object.
        assert_eq!(tracks[0].score, 0.9);
    }
    // Weak detections alone never make a track; below low_score they are not even that.
    let mut tracker = Tracker::default();
    for i in 0..5 {
        let tracks = tracker.update(
            i as f64 * 0.5,
            vec![person_at(0.3, 0.8, 0.3), person_at(0.7, 0.8, 0.05)],
        );
        assert!(tracks.is_empty());
    }
}

#[test]
fn classes_are_not_mixed_up() {
    let mut tracker = Tracker::default();
    let car = |score| Observation {
        class: "car".to_owned(),
        ..person_at(0.5, 0.8, score)
    };
    tracker.update(0.0, vec![person_at(0.5, 0.8, 0.9)]);
    tracker.update(0.5, vec![person_at(0.5, 0.8, 0.9)]);
    // Same box, other class: the person goes unseen, the car starts its own track.
    tracker.update(1.0, vec![car(0.9)]);
    let tracks = tracker.update(1.5, vec![car(0.9)]);
    assert_eq!(tracks.len(), 2);
    let person = tracks.iter().find(|t| t.class == "person").unwrap();
    let vehicle = tracks.iter().find(|t| t.class == "car").unwrap();
    assert_eq!((person.id, person.last_seen), (1, 0.5));
    assert_eq!(vehicle.id, 2);
}

#[test]
fn the_best_label_is_the_strongest_seen() {
    let mut tracker = Tracker::default();
    let face = |similarity, person: &str| Observation {
        label: Some(Label::Face {
            person_id: person.to_owned(),
            name: person.to_uppercase(),
            similarity,
        }),
        ..person_at(0.5, 0.8, 0.9)
    };
    tracker.update(0.0, vec![face(0.6, "ann")]);
    tracker.update(0.5, vec![face(0.8, "bob")]);
    tracker.update(1.0, vec![face(0.7, "ann")]);
    tracker.update(1.5, vec![face(f32::NAN, "eve")]);
    let tracks = tracker.update(2.0, vec![person_at(0.5, 0.8, 0.9)]);
    assert_eq!(
        tracks[0].best_label,
        Some(Label::Face {
            person_id: "bob".to_owned(),
            name: "BOB".to_owned(),
            similarity: 0.8
        })
    );
}

#[test]
fn the_trail_is_bounded_and_holds_reference_points() {
    let mut tracker = Tracker::new(TrackerConfig {
        trail_len: 4,
        ..TrackerConfig::default()
    });
    let mut tracks = Vec::new();
    for i in 0..10 {
        tracks = tracker.update(i as f64, vec![person_at(0.1 + 0.02 * i as f64, 0.8, 0.9)]);
    }
    let trail: Vec<(f64, f64)> = tracks[0].trail.iter().map(|(t, p)| (*t, p.x)).collect();
    assert_eq!(trail.len(), 4);
    assert_eq!(trail[0].0, 6.0);
    assert_eq!(trail[3].0, 9.0);
    assert!((trail[3].1 - 0.28).abs() < 1e-9);
    assert!(
        tracks[0]
            .trail
            .iter()
            .all(|(_, p)| (p.y - 0.8).abs() < 1e-9)
    );
}

#[test]
fn broken_input_is_ignored_without_panicking() {
    let mut tracker = Tracker::default();
    let nan_box = Observation {
        bbox: BBox {
            x0: f64::NAN,
            y0: 0.1,
            x1: 0.2,
            y1: f64::INFINITY,
        },
        ..person_at(0.5, 0.5, 0.9)
    };
    let nan_score = person_at(0.5, 0.5, f32::NAN);
    for i in 0..4 {
        let tracks = tracker.update(i as f64, vec![nan_box.clone(), nan_score.clone()]);
        assert!(tracks.is_empty());
    }
    tracker.update(4.0, vec![person_at(0.5, 0.8, 0.9)]);
    assert_eq!(
        ids(&tracker.update(4.5, vec![person_at(0.5, 0.8, 0.9)])),
        [1]
    );
    // A NaN time changes nothing.
    assert_eq!(ids(&tracker.update(f64::NAN, vec![])), [1]);
    assert_eq!(
        ids(&tracker.update(5.0, vec![person_at(0.5, 0.8, 0.9)])),
        [1]
    );
    // Time going back is a new stream: old tracks go, ids go on.
    assert!(
        tracker
            .update(0.0, vec![person_at(0.5, 0.8, 0.9)])
            .is_empty()
    );
    assert_eq!(
        ids(&tracker.update(0.5, vec![person_at(0.5, 0.8, 0.9)])),
        [2]
    );
    // Reversed corners are put right.
    let reversed = Observation {
        bbox: BBox {
            x0: 0.54,
            y0: 0.8,
            x1: 0.46,
            y1: 0.5,
        },
        ..person_at(0.5, 0.8, 0.9)
    };
    let tracks = tracker.update(1.0, vec![reversed]);
    assert_eq!(tracks[0].bbox, BBox::new(0.46, 0.5, 0.54, 0.8));
}

#[test]
fn min_hits_of_one_confirms_at_once() {
    let mut tracker = Tracker::new(TrackerConfig {
        min_hits: 1,
        ..TrackerConfig::default()
    });
    let tracks = tracker.update(
        0.0,
        vec![person_at(0.2, 0.8, 0.9), person_at(0.7, 0.8, 0.9)],
    );
    assert_eq!(ids(&tracks), [1, 2]);
    assert!((tracks[1].bbox.reference_point().x - 0.7).abs() < 1e-9);
}
