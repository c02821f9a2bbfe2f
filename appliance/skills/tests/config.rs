//! Skill configs: the documented minimal form is accepted, mistakes are rejected naming the
//! field, and the JSON Schema describes every kind.

use appliance_skills::config::{LineDirection, SkillKind};
use appliance_skills::schedule::Weekday;
use appliance_skills::{ConfigError, Skill, SkillConfig, json_schema};
use serde_json::{Value, json};

const MINIMAL: &str = r#"{"skill":"intrusion","model":"yolox_nano","classes":["person"],"min_confidence":0.5,"min_dwell_s":0.5,"zones":[{"name":"gate","polygon":[[0.5,0],[1,0],[1,1],[0.5,1]]}]}"#;

fn error(json: Value) -> ConfigError {
    match SkillConfig::from_json(json.to_string().as_bytes()) {
        Ok(config) => panic!("accepted {json}: {config:?}"),
        Err(e) => e,
    }
}

/// `MINIMAL` with `changes` merged in (a `null` removes the field).
fn minimal_with(changes: Value) -> Value {
    let mut value: Value = serde_json::from_str(MINIMAL).unwrap();
    for (key, v) in changes.as_object().unwrap() {
        if v.is_null() {
            value.as_object_mut().unwrap().remove(key);
        } else {
            value[key] = v.clone();
        }
    }
    value
}

fn zone(name: &str) -> Value {
    json!({"name": name, "polygon": [[0.1, 0.1], [0.4, 0.1], [0.4, 0.4]]})
}

#[test]
fn the_minimal_intrusion_config_is_accepted_with_defaults() {
    let config = SkillConfig::from_json(MINIMAL.as_bytes()).unwrap();
    assert_eq!(config.skill(), Skill::Intrusion);
    let c = &config.common;
    assert_eq!(c.name, None);
    assert!(c.enabled);
    assert_eq!(c.model, "yolox_nano");
    assert_eq!(c.classes, ["person"]);
    assert_eq!((c.min_confidence, c.min_dwell_s), (0.5, 0.5));
    assert_eq!((c.cooldown_s, c.sample_fps), (10.0, 2.0));
    assert_eq!(c.schedule, None);
    let SkillKind::Intrusion(k) = &config.kind else {
        panic!("{config:?}")
    };
    assert_eq!(k.zones[0].name, "gate");
    assert_eq!(k.zones[0].polygon.len(), 4);
    assert_eq!(k.zones[0].polygon[1].x, 1.0);
    // Through serde too, and back again.
    let again: SkillConfig = serde_json::from_str(MINIMAL).unwrap();
    assert_eq!(again, config);
    let written = serde_json::to_vec(&config).unwrap();
    assert_eq!(SkillConfig::from_json(&written).unwrap(), config);
}

#[test]
fn every_kind_reads_and_round_trips() {
    let configs = [
        json!({"skill": "line_crossing", "name": "door", "model": "m", "classes": ["person"],
               "lines": [{"name": "door", "from": [0.5, 0], "to": [0.5, 1], "direction": "left_to_right"},
                         {"name": "exit", "from": [0, 0.5], "to": [1, 0.5]}]}),
        json!({"skill": "loitering", "model": "m", "classes": ["person"], "zones": [zone("atm")],
               "max_dwell_s": 60}),
        json!({"skill": "crowd", "model": "m", "classes": ["person"], "zones": [zone("hall")],
               "min_count": 5, "min_dwell_s": 3, "cooldown_s": 60}),
        json!({"skill": "smoking", "model": "smoke", "classes": ["smoking"]}),
        json!({"skill": "phone", "model": "phone", "classes": ["phone"], "zones": [zone("desk")]}),
        json!({"skill": "face_recognition", "model": "scrfd", "classes": ["face"],
               "library": "staff", "match_threshold": 0.6, "unknown_faces": true, "min_dwell_s": 2}),
        json!({"skill": "plate_recognition", "model": "plates", "classes": ["plate"],
               "lists": ["blocked", "staff"], "min_text_confidence": 0.9, "enabled": false,
               "schedule": [{"days": ["sat", "sun"], "start": "00:00", "end": "24:00"},
                            {"days": ["mon"], "start": "22:00", "end": "06:00"}]}),
    ];
    for json in configs {
        let config = SkillConfig::from_json(json.to_string().as_bytes())
            .unwrap_or_else(|e| panic!("{json}: {e}"));
        assert_eq!(config.skill().as_str(), json["skill"]);
        let written = serde_json::to_vec(&config).unwrap();
        assert_eq!(SkillConfig::from_json(&written).unwrap(), config, "{json}");
    }

    let line = SkillConfig::from_json(
        br#"{"skill":"line_crossing","model":"m","classes":["person"],"lines":[{"name":"l","from":[0,0],"to":[1,1]}]}"#,
    )
    .unwrap();
    let SkillKind::LineCrossing(k) = line.kind else {
        panic!()
    };
    assert_eq!(k.lines[0].direction, LineDirection::Both);

    let smoking =
        SkillConfig::from_json(br#"{"skill":"smoking","model":"m","classes":["smoking"]}"#)
            .unwrap();
    let SkillKind::Smoking(k) = smoking.kind else {
        panic!()
    };
    assert!(k.zones.is_empty());

    let plates = SkillConfig::from_json(
        br#"{"skill":"plate_recognition","model":"m","classes":["plate"],"schedule":[{"days":["fri"],"start":"8:00","end":"17:30:15"}]}"#,
    )
    .unwrap();
    let schedule = plates.common.schedule.unwrap();
    assert_eq!(schedule.0[0].days, [Weekday::Fri]);
    assert_eq!(schedule.0[0].end.seconds(), 17 * 3600 + 30 * 60 + 15);
    let SkillKind::PlateRecognition(k) = plates.kind else {
        panic!()
    };
    assert_eq!(k.min_text_confidence, 0.8);
    assert!(k.lists.is_empty());
}

#[test]
fn invalid_configs_are_rejected_naming_the_field() {
    let cases: Vec<(Value, &str, &str)> = vec![
        (
            minimal_with(json!({"zones": [{"name": "gate", "polygon": [[0.5, 0], [1, 0]]}]})),
            "zones[0].polygon",
            "a zone needs at least 3 points",
        ),
        (
            minimal_with(json!({"zones": [{"name": "gate", "polygon": []}]})),
            "zones[0].polygon",
            "at least 3 points",
        ),
        (
            minimal_with(
                json!({"zones": [{"name": "g", "polygon": [[0, 0], [0.5, 0.5], [1, 1]]}]}),
            ),
            "zones[0].polygon",
            "no area",
        ),
        (
            minimal_with(json!({"min_confidence": 1.5})),
            "min_confidence",
            "must be within 0..=1",
        ),
        (
            minimal_with(json!({"min_confidence": -0.1})),
            "min_confidence",
            "0..=1",
        ),
        (
            minimal_with(json!({"min_confidence": "high"})),
            "min_confidence",
            "invalid type",
        ),
        (
            minimal_with(json!({"zones": [{"name": "g", "polygon": [[0, 0], [1.2, 0], [1, 1]]}]})),
            "zones[0].polygon[1]",
            "outside the image",
        ),
        (
            minimal_with(
                json!({"zones": [{"name": "g", "polygon": [[0, 0], [1, -0.01], [1, 1]]}]}),
            ),
            "zones[0].polygon[1]",
            "outside the image",
        ),
        (
            minimal_with(json!({"zones": [{"name": "g", "polygon": [[0, 0], [1, 0, 0], [1, 1]]}]})),
            "zones[0].polygon[1]",
            "invalid length",
        ),
        (
            minimal_with(json!({"classes": []})),
            "classes",
            "at least one class",
        ),
        (
            minimal_with(json!({"classes": ["person", " "]})),
            "classes[1]",
            "blank",
        ),
        (
            minimal_with(json!({"classes": null})),
            "classes",
            "missing field",
        ),
        (
            minimal_with(json!({"model": null})),
            "model",
            "missing field",
        ),
        (minimal_with(json!({"model": ""})), "model", "blank"),
        (
            minimal_with(json!({"zones": []})),
            "zones",
            "at least one zone",
        ),
        (
            minimal_with(json!({"zones": null})),
            "zones",
            "missing field",
        ),
        (
            minimal_with(json!({"zones": [zone("a"), zone("b"), zone("a")]})),
            "zones[2].name",
            "`a`",
        ),
        (
            minimal_with(
                json!({"schedule": [{"days": ["mon", "funday"], "start": "08:00", "end": "18:00"}]}),
            ),
            "schedule[0].days[1]",
            "unknown variant `funday`",
        ),
        (
            minimal_with(json!({"schedule": [{"days": [], "start": "08:00", "end": "18:00"}]})),
            "schedule[0].days",
            "at least one day",
        ),
        (
            minimal_with(
                json!({"schedule": [{"days": ["mon"], "start": "08:00", "end": "25:00"}]}),
            ),
            "schedule[0].end",
            "invalid time of day",
        ),
        (
            minimal_with(
                json!({"schedule": [{"days": ["mon"], "start": "08:00", "end": "08:00"}]}),
            ),
            "schedule[0].end",
            "empty",
        ),
        (
            minimal_with(
                json!({"schedule": [{"days": ["mon"], "start": "24:00", "end": "08:00"}]}),
            ),
            "schedule[0].start",
            "before 24:00",
        ),
        (
            minimal_with(json!({"schedule": []})),
            "schedule",
            "never armed",
        ),
        (
            minimal_with(
                json!({"schedule": [{"days": ["mon"], "start": "08:00", "end": "09:00", "tz": "UTC"}]}),
            ),
            "schedule[0].tz",
            "unknown field `tz`",
        ),
        (minimal_with(json!({"zonez": []})), "zonez", "unknown field"),
        (
            minimal_with(json!({"max_dwell_s": 5})),
            "max_dwell_s",
            "unknown field",
        ),
        (
            minimal_with(
                json!({"zones": [{"name": "g", "polygon": [[0, 0], [1, 0], [1, 1]], "color": "red"}]}),
            ),
            "zones[0].color",
            "unknown field `color`",
        ),
        (
            minimal_with(json!({"skill": "teleport"})),
            "skill",
            "unknown skill `teleport`",
        ),
        (
            minimal_with(json!({"skill": 3})),
            "skill",
            "expected a string",
        ),
        (
            minimal_with(json!({"skill": null})),
            "skill",
            "missing field",
        ),
        (
            minimal_with(json!({"cooldown_s": -1})),
            "cooldown_s",
            "0 or more",
        ),
        (
            minimal_with(json!({"min_dwell_s": -1})),
            "min_dwell_s",
            "0 or more",
        ),
        (
            minimal_with(json!({"sample_fps": 0})),
            "sample_fps",
            "above 0",
        ),
        (minimal_with(json!({"name": ""})), "name", "blank"),
        (
            minimal_with(json!({"enabled": "yes"})),
            "enabled",
            "invalid type",
        ),
        (
            json!({"skill": "line_crossing", "model": "m", "classes": ["p"],
                   "lines": [{"name": "l", "from": [0.2, 0.2], "to": [0.2, 0.2]}]}),
            "lines[0].to",
            "two different points",
        ),
        (
            json!({"skill": "line_crossing", "model": "m", "classes": ["p"],
                   "lines": [{"name": "l", "from": [0.2, 0.2], "to": [0.4, 0.2], "direction": "up"}]}),
            "lines[0].direction",
            "unknown variant `up`",
        ),
        (
            json!({"skill": "line_crossing", "model": "m", "classes": ["p"], "lines": []}),
            "lines",
            "at least one line",
        ),
        (
            json!({"skill": "loitering", "model": "m", "classes": ["p"], "zones": [zone("a")], "max_dwell_s": 0}),
            "max_dwell_s",
            "above 0",
        ),
        (
            json!({"skill": "crowd", "model": "m", "classes": ["p"], "zones": [zone("a")], "min_count": 0}),
            "min_count",
            "at least 1",
        ),
        (
            json!({"skill": "crowd", "model": "m", "classes": ["p"], "zones": [zone("a")], "min_count": -3}),
            "min_count",
            "invalid value",
        ),
        (
            json!({"skill": "face_recognition", "model": "m", "classes": ["face"], "library": "staff",
                   "match_threshold": 2}),
            "match_threshold",
            "0..=1",
        ),
        (
            json!({"skill": "face_recognition", "model": "m", "classes": ["face"], "library": "staff",
                   "unknown_faces": true}),
            "min_dwell_s",
            "unknown_faces",
        ),
        (
            json!({"skill": "face_recognition", "model": "m", "classes": ["face"]}),
            "library",
            "missing field",
        ),
        (
            json!({"skill": "plate_recognition", "model": "m", "classes": ["plate"], "lists": ["a", "a"]}),
            "lists[1]",
            "twice",
        ),
        (
            json!({"skill": "plate_recognition", "model": "m", "classes": ["plate"], "min_text_confidence": 7}),
            "min_text_confidence",
            "0..=1",
        ),
    ];
    for (json, path, message) in cases {
        let e = error(json.clone());
        assert_eq!(e.path, path, "{json}: {e}");
        assert!(e.message.contains(message), "{json}: {e}");
        assert_eq!(e.to_string(), format!("{}: {}", e.path, e.message));
    }
}

#[test]
fn documents_that_are_not_configs_are_rejected() {
    for (bytes, message) in [
        (&b""[..], "EOF"),
        (b"{\"skill\": ", "EOF"),
        (b"[1, 2]", "a skill config is a JSON object"),
        (b"null", "a skill config is a JSON object"),
        (
            b"{\"skill\":\"intrusion\",\"min_confidence\":NaN}",
            "expected value",
        ),
    ] {
        let e = SkillConfig::from_json(bytes).unwrap_err();
        assert_eq!(e.path, "");
        assert!(e.message.contains(message), "{e}");
    }
    // Through serde the error is the same text.
    let e = serde_json::from_str::<SkillConfig>(r#"{"skill":"crowd"}"#).unwrap_err();
    assert!(e.to_string().contains("missing field"), "{e}");
}

#[test]
fn the_json_schema_describes_every_kind() {
    let schema = json_schema();
    // Valid JSON through and through.
    let text = serde_json::to_string(&schema).unwrap();
    assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), schema);
    assert_eq!(
        schema["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
    assert_eq!(schema["type"], "object");
    assert_eq!(schema["unevaluatedProperties"], false);

    let tags: Vec<&str> = schema["oneOf"]
        .as_array()
        .unwrap()
        .iter()
        .map(|variant| variant["properties"]["skill"]["const"].as_str().unwrap())
        .collect();
    let expected: Vec<&str> = Skill::ALL.iter().map(|s| s.as_str()).collect();
    assert_eq!(tags, expected);
    for tag in [
        "intrusion",
        "line_crossing",
        "loitering",
        "crowd",
        "smoking",
        "phone",
        "face_recognition",
        "plate_recognition",
    ] {
        assert!(tags.contains(&tag), "{tag}");
    }

    let properties = &schema["properties"];
    assert_eq!(properties["min_confidence"]["default"], 0.5);
    assert_eq!(properties["min_confidence"]["maximum"], 1.0);
    assert_eq!(properties["enabled"]["default"], true);
    assert_eq!(properties["cooldown_s"]["default"], 10.0);
    let required: Vec<&str> = schema["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert_eq!(required, ["model", "classes"]);
    let defs = &schema["$defs"];
    assert_eq!(defs["Zone"]["properties"]["polygon"]["minItems"], 3);
    assert_eq!(defs["Point"]["items"]["maximum"], 1);
    assert_eq!(defs["Weekday"]["enum"][0], "mon");
    assert!(defs["LineCrossingConfig"]["properties"]["lines"].is_object());
    assert!(
        defs["LoiteringConfig"]["required"]
            .as_array()
            .unwrap()
            .contains(&json!("max_dwell_s"))
    );
}
