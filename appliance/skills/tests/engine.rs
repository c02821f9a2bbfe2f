//! Skill engines on simulated tracks: the events each kind raises, once, at the right time.

use std::collections::VecDeque;

use appliance_skills::engine::{CrossingDirection, EventType};
use appliance_skills::{
    BBox, Label, Observation, SkillConfig, SkillEngine, SkillEvent, Track, Tracker, Weekday,
};
use serde_json::{Value, json};

/// A track with its feet at `(x, y)`, a person-sized box above them.
fn track(id: u64, class: &str, (x, y): (f64, f64), first_seen: f64, t: f64) -> Track {
    Track {
        id,
        class: class.to_owned(),
        bbox: BBox::new(x - 0.04, y - 0.3, x + 0.04, y),
        score: 0.9,
        first_seen,
        last_seen: t,
        hits: 2,
        trail: VecDeque::new(),
        best_label: None,
    }
}

fn person(id: u64, at: (f64, f64), t: f64) -> Track {
    track(id, "person", at, 0.0, t)
}

fn engine_for(config: Value) -> SkillEngine {
    SkillEngine::new(
        SkillConfig::from_json(config.to_string().as_bytes())
            .unwrap_or_else(|e| panic!("{config}: {e}")),
    )
}

/// The right half of the image.
fn right_half() -> Value {
    json!([{"name": "gate", "polygon": [[0.5, 0], [1, 0], [1, 1], [0.5, 1]]}])
}

fn intrusion(extra: Value) -> SkillEngine {
    let mut config = json!({"skill": "intrusion", "name": "gate watch", "model": "yolox_nano",
                            "classes": ["person"], "min_confidence": 0.5, "min_dwell_s": 0.5,
                            "zones": right_half()});
    for (k, v) in extra.as_object().unwrap() {
        config[k] = v.clone();
    }
    engine_for(config)
}

/// Runs `engine` over frames every `step` s from 0 to `until`, with the tracks `at(t)` gives.
fn run(
    engine: &mut SkillEngine,
    step: f64,
    until: f64,
    mut at: impl FnMut(f64) -> Vec<Track>,
) -> Vec<SkillEvent> {
    let mut events = Vec::new();
    let mut i = 0;
    loop {
        let t = i as f64 * step;
        if t > until + 1e-9 {
            return events;
        }
        events.extend(engine.on_frame(t, &at(t), None));
        i += 1;
    }
}

#[test]
fn one_intrusion_per_entry() {
    let mut engine = intrusion(json!({}));
    // In at 1 s, out at 5 s, back in at 20 s until 25 s.
    let inside = |t: f64| (1.0..5.0).contains(&t) || (20.0..25.0).contains(&t);
    let events = run(&mut engine, 0.5, 30.0, |t| {
        vec![person(
            7,
            if inside(t) { (0.7, 0.8) } else { (0.3, 0.8) },
            t,
        )]
    });
    assert_eq!(events.len(), 2, "{events:#?}");
    let first = &events[0];
    assert_eq!(first.event_type, EventType::Intrusion);
    assert_eq!(first.skill.as_str(), "intrusion");
    assert_eq!(first.name.as_deref(), Some("gate watch"));
    assert_eq!(first.class, "person");
    assert_eq!(first.track_id, Some(7));
    assert_eq!(first.zone.as_deref(), Some("gate"));
    assert_eq!((first.start_pts_s, first.pts_s), (1.0, 1.5));
    assert_eq!(first.dwell_s, Some(0.5));
    assert_eq!(first.score, 0.9);
    assert_eq!(first.bbox, person(7, (0.7, 0.8), 1.5).bbox);
    assert_eq!((events[1].start_pts_s, events[1].pts_s), (20.0, 20.5));
}

#[test]
fn a_stay_shorter_than_min_dwell_raises_nothing() {
    let mut engine = intrusion(json!({"min_dwell_s": 2}));
    let events = run(&mut engine, 0.5, 10.0, |t| {
        let inside = (1.0..2.5).contains(&t) || (5.0..6.5).contains(&t);
        vec![person(1, if inside { (0.7, 0.8) } else { (0.3, 0.8) }, t)]
    });
    assert!(events.is_empty(), "{events:#?}");
}

#[test]
fn coming_back_inside_the_cooldown_raises_nothing() {
    let mut engine = intrusion(json!({"cooldown_s": 10}));
    // Feet flicker across the border: in, out, in within 10 s, staying long the second time.
    let events = run(&mut engine, 0.5, 30.0, |t| {
        let inside = (1.0..3.0).contains(&t) || (4.0..30.0).contains(&t);
        vec![person(1, if inside { (0.7, 0.8) } else { (0.45, 0.8) }, t)]
    });
    assert_eq!(events.len(), 1, "{events:#?}");
    // Without the cooldown, the second entry counts.
    let mut engine = intrusion(json!({"cooldown_s": 0}));
    let events = run(&mut engine, 0.5, 30.0, |t| {
        let inside = (1.0..3.0).contains(&t) || (4.0..30.0).contains(&t);
        vec![person(1, if inside { (0.7, 0.8) } else { (0.45, 0.8) }, t)]
    });
    assert_eq!(events.len(), 2, "{events:#?}");
    // The cooldown is per track: someone else entering meanwhile is reported.
    let mut engine = intrusion(json!({}));
    let events = run(&mut engine, 0.5, 5.0, |t| {
        let mut tracks = vec![person(1, (0.7, 0.8), t)];
        if t >= 2.0 {
            tracks.push(person(2, (0.8, 0.9), t));
        }
        tracks
    });
    let ids: Vec<Option<u64>> = events.iter().map(|e| e.track_id).collect();
    assert_eq!(ids, [Some(1), Some(2)]);
}

#[test]
fn classes_and_min_confidence_filter_tracks() {
    let mut engine = intrusion(json!({"min_confidence": 0.6}));
    let events = run(&mut engine, 0.5, 5.0, |t| {
        let mut unsure = person(2, (0.7, 0.8), t);
        unsure.score = 0.55;
        vec![track(1, "car", (0.7, 0.8), 0.0, t), unsure]
    });
    assert!(events.is_empty(), "{events:#?}");
}

#[test]
fn the_reference_point_is_the_feet() {
    // The box reaches into the zone (x up to 0.53) but the feet (x 0.45) are outside.
    let mut engine = intrusion(json!({"min_dwell_s": 0}));
    let events = run(&mut engine, 0.5, 3.0, |t| {
        let mut wide = person(1, (0.45, 0.8), t);
        wide.bbox.x1 = 0.53;
        wide.bbox.x0 = 0.37;
        vec![wide]
    });
    assert!(events.is_empty());
}

fn line_engine(direction: &str, min_dwell_s: f64) -> SkillEngine {
    // A door drawn top to bottom at x = 0.5 from y 0.2 to 0.9: walking it downwards, the
    // walker's left is the image's right.
    engine_for(
        json!({"skill": "line_crossing", "model": "m", "classes": ["person"],
                  "min_dwell_s": min_dwell_s, "cooldown_s": 0,
                  "lines": [{"name": "door", "from": [0.5, 0.2], "to": [0.5, 0.9],
                             "direction": direction}]}),
    )
}

/// Walks right through the door at 2 s and back left at 6 s.
fn through_and_back(t: f64) -> Vec<Track> {
    let x = if t < 2.0 {
        0.3 + 0.05 * t
    } else if t < 6.0 {
        0.6
    } else {
        0.4
    };
    vec![person(3, (x, 0.8), t)]
}

#[test]
fn line_crossings_in_both_directions() {
    let mut engine = line_engine("both", 0.0);
    let events = run(&mut engine, 0.5, 10.0, through_and_back);
    assert_eq!(events.len(), 2, "{events:#?}");
    assert_eq!(events[0].event_type, EventType::LineCrossing);
    assert_eq!(events[0].line.as_deref(), Some("door"));
    assert_eq!(events[0].zone, None);
    // Image-left to image-right is the line's right to its left.
    assert_eq!(events[0].direction, Some(CrossingDirection::RightToLeft));
    assert_eq!(events[0].pts_s, 2.0);
    assert_eq!(events[1].direction, Some(CrossingDirection::LeftToRight));
    assert_eq!(events[1].pts_s, 6.0);

    for (direction, expected) in [
        ("left_to_right", CrossingDirection::LeftToRight),
        ("right_to_left", CrossingDirection::RightToLeft),
    ] {
        let mut engine = line_engine(direction, 0.0);
        let events = run(&mut engine, 0.5, 10.0, through_and_back);
        assert_eq!(events.len(), 1, "{direction}: {events:#?}");
        assert_eq!(events[0].direction, Some(expected));
    }
}

#[test]
fn walking_around_the_end_of_a_line_is_no_crossing() {
    let mut engine = line_engine("both", 0.0);
    // Passes the line's x at y = 0.1, above where the door starts.
    let events = run(&mut engine, 0.5, 5.0, |t| {
        vec![person(1, (0.3 + 0.1 * t, 0.1), t)]
    });
    assert!(events.is_empty(), "{events:#?}");
}

#[test]
fn a_crossing_counts_once_it_lasted_min_dwell() {
    let mut engine = line_engine("both", 1.0);
    let events = run(&mut engine, 0.5, 10.0, through_and_back);
    assert_eq!(events.len(), 2, "{events:#?}");
    // Raised a second after the crossing, dated from it.
    assert_eq!((events[0].start_pts_s, events[0].pts_s), (2.0, 3.0));
    // Stepping over and straight back is nothing.
    let mut engine = line_engine("both", 1.0);
    let events = run(&mut engine, 0.5, 10.0, |t| {
        let x = if (2.0..2.5).contains(&t) { 0.55 } else { 0.45 };
        vec![person(1, (x, 0.8), t)]
    });
    assert!(events.is_empty(), "{events:#?}");
}

#[test]
fn loitering_fires_at_max_dwell_with_the_dwell() {
    let mut engine = engine_for(
        json!({"skill": "loitering", "model": "m", "classes": ["person"],
                                   "zones": right_half(), "max_dwell_s": 30}),
    );
    let events = run(&mut engine, 0.5, 120.0, |t| {
        let x = if t < 10.0 { 0.2 } else { 0.7 };
        vec![person(4, (x, 0.8), t)]
    });
    assert_eq!(events.len(), 1, "{events:#?}");
    let e = &events[0];
    assert_eq!(e.event_type, EventType::Loitering);
    assert_eq!(
        (e.start_pts_s, e.pts_s, e.dwell_s),
        (10.0, 40.0, Some(30.0))
    );
    assert_eq!(e.zone.as_deref(), Some("gate"));
}

fn crowd_engine() -> SkillEngine {
    engine_for(
        json!({"skill": "crowd", "model": "m", "classes": ["person"], "zones": right_half(),
                  "min_count": 3, "min_dwell_s": 1, "cooldown_s": 10}),
    )
}

/// `n` people in the zone, one outside.
fn people_in_zone(n: u64, t: f64) -> Vec<Track> {
    let mut tracks: Vec<Track> = (1..=n)
        .map(|i| person(i, (0.55 + 0.1 * i as f64 % 0.4, 0.8), t))
        .collect();
    tracks.push(person(99, (0.2, 0.8), t));
    tracks
}

#[test]
fn crowd_fires_at_min_count_and_re_arms_when_it_drops() {
    let mut engine = crowd_engine();
    let count = |t: f64| match t {
        t if t < 5.0 => 2,
        t if t < 20.0 => 3,
        t if t < 25.0 => 2,
        t if t < 40.0 => 4,
        _ => 1,
    };
    let events = run(&mut engine, 0.5, 50.0, |t| people_in_zone(count(t), t));
    assert_eq!(events.len(), 2, "{events:#?}");
    let e = &events[0];
    assert_eq!(e.event_type, EventType::Crowd);
    assert_eq!(e.track_id, None);
    assert_eq!(e.count, Some(3));
    assert_eq!(e.zone.as_deref(), Some("gate"));
    assert_eq!(e.class, "person");
    assert_eq!((e.start_pts_s, e.pts_s), (5.0, 6.0));
    assert!(e.bbox.x0 >= 0.5 - 0.04 && e.bbox.x1 <= 1.0);
    assert_eq!((events[1].count, events[1].pts_s), (Some(4), 26.0));
}

#[test]
fn a_crowd_re_forming_inside_the_cooldown_waits_for_it() {
    let mut engine = crowd_engine();
    let count = |t: f64| if (3.0..4.0).contains(&t) { 2 } else { 3 };
    let events = run(&mut engine, 0.5, 30.0, |t| people_in_zone(count(t), t));
    let times: Vec<f64> = events.iter().map(|e| e.pts_s).collect();
    // First at 1 s; it dropped at 3 s and was back at 4 s, so the next comes at 1 + 10 s.
    assert_eq!(times, [1.0, 11.0]);
}

#[test]
fn nothing_outside_the_schedule_and_a_fresh_start_when_it_opens() {
    // Armed Mondays 18:00 to 06:00.
    let mut engine = intrusion(
        json!({"schedule": [{"days": ["mon"], "start": "18:00", "end": "06:00"}],
                                      "min_dwell_s": 2}),
    );
    let six_pm = 18 * 3600;
    let mut events = Vec::new();
    for i in 0..40 {
        let t = i as f64 * 0.5;
        // Someone stands in the zone from before 18:00; the clock reaches 18:00 at t = 10.
        let local = (Weekday::Mon, six_pm - 10 + i / 2);
        events.extend(engine.on_frame(t, &[person(1, (0.7, 0.8), t)], Some(local)));
    }
    assert_eq!(events.len(), 1, "{events:#?}");
    // Not at the opening: min_dwell after it, dated from it.
    assert_eq!((events[0].start_pts_s, events[0].pts_s), (10.0, 12.0));

    // Tuesday afternoon is off.
    let mut engine =
        intrusion(json!({"schedule": [{"days": ["mon"], "start": "18:00", "end": "06:00"}]}));
    for i in 0..20 {
        let t = i as f64;
        let events = engine.on_frame(
            t,
            &[person(1, (0.7, 0.8), t)],
            Some((Weekday::Tue, 15 * 3600)),
        );
        assert!(events.is_empty());
    }
    assert!(!engine.is_armed(Some((Weekday::Tue, 15 * 3600))));
    assert!(engine.is_armed(Some((Weekday::Tue, 5 * 3600))));
    // Without a local time a scheduled skill runs.
    assert!(engine.is_armed(None));
}

#[test]
fn a_disabled_skill_raises_nothing() {
    let mut engine = intrusion(json!({"enabled": false}));
    let events = run(&mut engine, 0.5, 10.0, |t| vec![person(1, (0.7, 0.8), t)]);
    assert!(events.is_empty());
    assert!(!engine.is_armed(None));
}

#[test]
fn smoking_is_reported_once_per_track_anywhere_without_zones() {
    let mut engine = engine_for(
        json!({"skill": "smoking", "model": "smoke", "classes": ["smoking"],
                                   "min_dwell_s": 1, "cooldown_s": 0}),
    );
    // In view for 20 s with no cooldown: still one event. The person track is not a class of
    // the skill.
    let events = run(&mut engine, 0.5, 20.0, |t| {
        vec![
            track(5, "smoking", (0.3, 0.5), 0.0, t),
            track(6, "person", (0.3, 0.5), 0.0, t),
        ]
    });
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(events[0].event_type, EventType::Smoking);
    assert_eq!(events[0].zone, None);
    assert_eq!((events[0].track_id, events[0].pts_s), (Some(5), 1.0));

    // With zones, only inside them, and once per track even when it leaves and comes back.
    let mut engine = engine_for(
        json!({"skill": "phone", "model": "phone", "classes": ["phone"],
                                   "zones": right_half(), "cooldown_s": 0}),
    );
    let events = run(&mut engine, 0.5, 20.0, |t| {
        let x = if (2.0..4.0).contains(&t) || (10.0..12.0).contains(&t) {
            0.7
        } else {
            0.3
        };
        vec![track(8, "phone", (x, 0.5), 0.0, t)]
    });
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(events[0].event_type, EventType::Phone);
    assert_eq!(events[0].zone.as_deref(), Some("gate"));
    assert_eq!(events[0].pts_s, 2.0);
}

fn face(track: Track, person_id: &str, similarity: f32) -> Track {
    Track {
        best_label: Some(Label::Face {
            person_id: person_id.to_owned(),
            name: format!("{person_id} name"),
            similarity,
        }),
        ..track
    }
}

#[test]
fn faces_recognised_and_unknown() {
    let mut engine = engine_for(
        json!({"skill": "face_recognition", "model": "scrfd", "classes": ["face"],
                                   "library": "staff", "match_threshold": 0.6, "unknown_faces": true,
                                   "min_dwell_s": 1}),
    );
    let events = run(&mut engine, 0.5, 10.0, |t| {
        let known = track(1, "face", (0.3, 0.5), 0.0, t);
        // Matched from 0.5 s, but only reported once seen for min_dwell.
        let known = if t >= 0.5 {
            face(known, "p-1", 0.8)
        } else {
            known
        };
        // A weak match is no match: unknown after min_dwell.
        let weak = face(track(2, "face", (0.6, 0.5), 2.0, t), "p-2", 0.4);
        // Recognised late, after being called unknown.
        let late = track(3, "face", (0.8, 0.5), 0.0, t);
        let late = if t >= 5.0 {
            face(late, "p-3", 0.9)
        } else {
            late
        };
        let mut tracks = vec![known, late];
        if t >= 2.0 {
            tracks.push(weak);
        }
        tracks
    });
    let summary: Vec<(EventType, Option<u64>, f64, Option<&str>)> = events
        .iter()
        .map(|e| (e.event_type, e.track_id, e.pts_s, e.person_id.as_deref()))
        .collect();
    assert_eq!(
        summary,
        [
            (EventType::FaceRecognized, Some(1), 1.0, Some("p-1")),
            (EventType::FaceUnknown, Some(3), 1.0, None),
            (EventType::FaceUnknown, Some(2), 3.0, None),
            (EventType::FaceRecognized, Some(3), 5.0, Some("p-3")),
        ]
    );
    assert_eq!(events[0].person_name.as_deref(), Some("p-1 name"));
    assert_eq!(events[0].similarity, Some(0.8));
    assert_eq!(events[0].start_pts_s, 0.0);

    // Without a threshold every library match counts; without unknown_faces none is reported.
    let mut engine = engine_for(
        json!({"skill": "face_recognition", "model": "scrfd", "classes": ["face"],
                                   "library": "staff"}),
    );
    let events = run(&mut engine, 0.5, 3.0, |t| {
        vec![
            face(track(1, "face", (0.3, 0.5), 0.0, t), "p-1", 0.3),
            track(2, "face", (0.6, 0.5), 0.0, t),
        ]
    });
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].track_id, Some(1));
}

#[test]
fn plates_with_their_list() {
    let mut engine = engine_for(
        json!({"skill": "plate_recognition", "model": "plates", "classes": ["plate"],
                                   "lists": ["blocked", "staff"], "min_text_confidence": 0.8}),
    );
    let plate = |id: u64, text: &str, confidence: f32, t: f64| Track {
        best_label: Some(Label::Text {
            text: text.to_owned(),
            confidence,
        }),
        ..track(id, "plate", (0.5, 0.5), 0.0, t)
    };
    let lookup = |text: &str, lists: &[String]| {
        assert_eq!(lists, ["blocked", "staff"]);
        (text == "B 123").then(|| "blocked".to_owned())
    };
    let mut events = Vec::new();
    for i in 0..10 {
        let t = i as f64 * 0.5;
        // Track 2's reading gets confident at 2 s.
        let tracks = [
            plate(1, "B 123", 0.9, t),
            plate(2, "X 999", if t < 2.0 { 0.5 } else { 0.85 }, t),
            plate(3, "??", 0.3, t),
        ];
        events.extend(engine.on_frame_with(t, &tracks, None, &lookup));
    }
    let summary: Vec<String> = events
        .iter()
        .map(|e| format!("{:?} {:?} {:?} {}", e.track_id, e.plate, e.list, e.pts_s))
        .collect();
    assert_eq!(
        summary,
        [
            r#"Some(1) Some("B 123") Some("blocked") 0"#,
            r#"Some(2) Some("X 999") None 2"#,
        ]
    );
    assert_eq!(events[0].event_type, EventType::PlateRecognized);
    assert_eq!(events[0].text_confidence, Some(0.9));
}

#[test]
fn broken_input_raises_nothing_and_does_not_panic() {
    let mut engine = intrusion(json!({"min_dwell_s": 0}));
    let mut nan = person(1, (0.7, 0.8), 0.0);
    nan.bbox.y1 = f64::NAN;
    assert!(engine.on_frame(0.0, &[nan.clone()], None).is_empty());
    assert!(
        engine
            .on_frame(f64::NAN, &[person(2, (0.7, 0.8), 0.0)], None)
            .is_empty()
    );
    assert!(
        engine
            .on_frame(f64::INFINITY, &[person(2, (0.7, 0.8), 0.0)], None)
            .is_empty()
    );
    assert_eq!(
        engine
            .on_frame(1.0, &[person(2, (0.7, 0.8), 1.0)], None)
            .len(),
        1
    );
    // Time going back (a new stream) starts over: the same track id is new again.
    assert_eq!(
        engine
            .on_frame(0.5, &[person(2, (0.7, 0.8), 0.5)], None)
            .len(),
        1
    );

    // Engines built from configs that never went through validation still run.
    for config in [
        json!({"skill": "intrusion", "model": "m", "classes": ["person"],
               "zones": [{"name": "z", "polygon": []}]}),
        json!({"skill": "crowd", "model": "m", "classes": ["person"], "min_count": 0,
               "zones": [{"name": "z", "polygon": [[0, 0], [1, 0], [1, 1]]}]}),
        json!({"skill": "line_crossing", "model": "m", "classes": ["person"],
               "lines": [{"name": "l", "from": [0.5, 0.5], "to": [0.5, 0.5]}]}),
    ] {
        // Read without validation: deserialise the parts by hand.
        let value: Value = config;
        let common = serde_json::from_value(value.clone()).unwrap();
        let kind = match value["skill"].as_str().unwrap() {
            "intrusion" => appliance_skills::SkillKind::Intrusion(
                serde_json::from_value(value.clone()).unwrap(),
            ),
            "crowd" => {
                appliance_skills::SkillKind::Crowd(serde_json::from_value(value.clone()).unwrap())
            }
            _ => appliance_skills::SkillKind::LineCrossing(
                serde_json::from_value(value.clone()).unwrap(),
            ),
        };
        let config = SkillConfig { common, kind };
        assert!(config.validate().is_err());
        let mut engine = SkillEngine::new(config);
        for i in 0..10 {
            let t = i as f64;
            let _ = engine.on_frame(t, &[person(1, (0.2 + 0.1 * t, 0.5), t), nan.clone()], None);
        }
    }
}

#[test]
fn events_serialise_with_only_their_fields() {
    let mut engine = intrusion(json!({"min_dwell_s": 0}));
    let events = engine.on_frame(3.0, &[person(1, (0.7, 0.8), 3.0)], None);
    let value = serde_json::to_value(&events[0]).unwrap();
    assert_eq!(value["skill"], "intrusion");
    assert_eq!(value["type"], "intrusion");
    assert_eq!(value["zone"], "gate");
    assert_eq!(value["track_id"], 1);
    assert_eq!(value["dwell_s"], 0.0);
    for absent in ["line", "direction", "count", "person_id", "plate", "list"] {
        assert!(value.get(absent).is_none(), "{absent} in {value}");
    }
    let back: SkillEvent = serde_json::from_value(value).unwrap();
    assert_eq!(back, events[0]);

    let mut crossing = line_engine("both", 0.0);
    let events = run(&mut crossing, 0.5, 3.0, through_and_back);
    let value = serde_json::to_value(&events[0]).unwrap();
    assert_eq!(value["type"], "line_crossing");
    assert_eq!(value["direction"], "right_to_left");
}

#[test]
fn from_detections_to_events_through_the_tracker() {
    let mut tracker = Tracker::default();
    let mut engine = intrusion(json!({"min_dwell_s": 1}));
    let mut events = Vec::new();
    for i in 0..40 {
        let t = i as f64 * 0.5;
        // Walks right across the image at 0.025 per frame; detector misses every 7th frame.
        let x = 0.1 + 0.025 * i as f64;
        let observations = if i % 7 == 6 {
            vec![]
        } else {
            vec![Observation {
                bbox: BBox::new(x - 0.04, 0.5, x + 0.04, 0.8),
                class: "person".to_owned(),
                score: 0.8,
                label: None,
            }]
        };
        let tracks = tracker.update(t, observations);
        events.extend(engine.on_frame(t, &tracks, None));
    }
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(events[0].track_id, Some(1));
    // Feet cross x = 0.5 at frame 16 (t = 8); one second later.
    assert_eq!((events[0].start_pts_s, events[0].pts_s), (8.0, 9.0));
}
