//! The face index and the plate lists through their public API, as the skills and the store use
//! them.

use std::time::Instant;

use appliance_skills::library::face::{
    DEFAULT_MATCH_THRESHOLD, FaceError, FaceIndex, Library, synthetic_embedding,
};
use appliance_skills::library::plate::{
    PlateEntry, PlateLibrary, PlateList, PlateListKind, normalise_plate,
};

const DIM: usize = 192;

/// `base` moved a little in a random direction, like a second photo of the same face; the
/// result is not normalised, as model outputs are not.
fn near(base: &[f32], seed: u64, amount: f32) -> Vec<f32> {
    let noise = synthetic_embedding(base.len(), seed);
    base.iter()
        .zip(&noise)
        .map(|(b, n)| 68.0 * (b + amount * n))
        .collect()
}

/// Three people, Ann with two photos.
fn staff() -> FaceIndex {
    let mut index = FaceIndex::new(DIM).unwrap();
    let ann = synthetic_embedding(DIM, 1);
    index.insert("ann", "ann-front", &ann).unwrap();
    index
        .insert("ann", "ann-glasses", &near(&ann, 11, 0.6))
        .unwrap();
    index
        .insert("bob", "bob-front", &synthetic_embedding(DIM, 2))
        .unwrap();
    index
        .insert("cho", "cho-front", &synthetic_embedding(DIM, 3))
        .unwrap();
    index
}

#[test]
fn search_finds_the_nearest_person_and_their_best_photo() {
    let index = staff();
    assert_eq!(index.len(), 4);
    let ann = synthetic_embedding(DIM, 1);

    let found = index
        .search(&near(&ann, 100, 0.2), DEFAULT_MATCH_THRESHOLD)
        .unwrap()
        .unwrap();
    assert_eq!(
        (found.person_id.as_str(), found.photo_id.as_str()),
        ("ann", "ann-front")
    );
    assert!(found.similarity > 0.95, "{}", found.similarity);

    // Closer to the glasses photo than to the front one: that photo speaks for Ann.
    let glasses = near(&ann, 11, 0.6);
    let found = index
        .search(&near(&glasses, 101, 0.1), DEFAULT_MATCH_THRESHOLD)
        .unwrap()
        .unwrap();
    assert_eq!(found.photo_id, "ann-glasses");

    let bob = index
        .search(&near(&synthetic_embedding(DIM, 2), 102, 0.3), 0.6)
        .unwrap()
        .unwrap();
    assert_eq!(bob.person_id, "bob");

    // top_k: one row per person, best photo each, best person first.
    let ranked = index.top_k(&near(&ann, 103, 0.2), 10).unwrap();
    let people: Vec<&str> = ranked.iter().map(|m| m.person_id.as_str()).collect();
    assert_eq!(people.len(), 3);
    assert_eq!(people[0], "ann");
    assert_eq!(ranked[0].photo_id, "ann-front");
    assert!(
        ranked
            .windows(2)
            .all(|w| w[0].similarity >= w[1].similarity)
    );
    assert_eq!(index.top_k(&ann, 1).unwrap().len(), 1);
    assert!(index.top_k(&ann, 0).unwrap().is_empty());
}

#[test]
fn threshold_is_respected() {
    let index = staff();
    // A stranger: nearly orthogonal to everyone enrolled.
    let stranger = synthetic_embedding(DIM, 999);
    assert_eq!(index.search(&stranger, DEFAULT_MATCH_THRESHOLD), Ok(None));
    let best = index.search(&stranger, -1.0).unwrap().unwrap();
    assert!(best.similarity.abs() < 0.35, "{}", best.similarity);

    // Exactly at the threshold matches; just above it does not.
    let ann = near(&synthetic_embedding(DIM, 1), 104, 0.5);
    let score = index.search(&ann, 0.0).unwrap().unwrap().similarity;
    assert!(index.search(&ann, score).unwrap().is_some());
    assert_eq!(index.search(&ann, score + 1e-4), Ok(None));
}

#[test]
fn removal() {
    let mut index = staff();
    let ann = synthetic_embedding(DIM, 1);
    assert!(index.remove_photo("ann-front"));
    assert!(!index.remove_photo("ann-front"));
    assert_eq!(
        index.search(&ann, 0.6).unwrap().unwrap().photo_id,
        "ann-glasses"
    );
    assert_eq!(index.remove_person("ann"), 1);
    assert_eq!(index.remove_person("ann"), 0);
    assert_eq!(index.search(&ann, 0.6), Ok(None));
    assert_eq!(index.len(), 2);
    // The other rows survive the moves.
    assert_eq!(
        index
            .search(&synthetic_embedding(DIM, 3), 0.99)
            .unwrap()
            .unwrap()
            .photo_id,
        "cho-front"
    );
    // A removed photo id can be enrolled again.
    index.insert("ann", "ann-front", &ann).unwrap();
    assert_eq!(index.search(&ann, 0.99).unwrap().unwrap().person_id, "ann");
}

#[test]
fn dimension_and_value_errors() {
    let mut index = staff();
    let short = vec![1.0; DIM - 1];
    assert_eq!(
        index.insert("dan", "dan-1", &short),
        Err(FaceError::Dimension {
            expected: DIM,
            actual: DIM - 1
        })
    );
    assert_eq!(
        index.search(&vec![1.0; 512], 0.6),
        Err(FaceError::Dimension {
            expected: DIM,
            actual: 512
        })
    );
    assert!(matches!(
        index.top_k(&[], 3),
        Err(FaceError::Dimension { .. })
    ));
    let mut nan = synthetic_embedding(DIM, 5);
    nan[7] = f32::NAN;
    assert_eq!(
        index.insert("dan", "dan-1", &nan),
        Err(FaceError::NotFinite { index: 7 })
    );
    assert_eq!(
        index.search(&nan, 0.6),
        Err(FaceError::NotFinite { index: 7 })
    );
    assert_eq!(
        index.search(&vec![0.0; DIM], 0.6),
        Err(FaceError::ZeroVector)
    );
    assert_eq!(index.len(), 4);
    assert_eq!(
        index.insert("dan", "dan-1", &nan).unwrap_err().to_string(),
        "embedding value [7] is not a finite number"
    );
}

#[test]
fn library_round_trips_through_json() {
    let library: Library = serde_json::from_str(
        r#"{"name": "Staff", "match_threshold": 0.7,
            "people": [{"id": "p-1", "name": "Ann", "note": "night shift"}]}"#,
    )
    .unwrap();
    assert_eq!(library.validate(), Ok(()));
    let again: Library = serde_json::from_value(serde_json::to_value(&library).unwrap()).unwrap();
    assert_eq!(again, library);
}

#[test]
fn search_of_100k_enrolled_faces_finds_the_planted_one() {
    const COUNT: usize = 100_000;
    let started = Instant::now();
    let mut index = FaceIndex::synthetic(DIM, COUNT, 42).unwrap();
    let planted = synthetic_embedding(DIM, u64::MAX);
    index.insert("planted", "planted-1", &planted).unwrap();
    println!("built {} × {DIM} in {:?}", index.len(), started.elapsed());

    let query = near(&planted, 7, 0.3);
    let runs = 5;
    let started = Instant::now();
    let mut found = None;
    for _ in 0..runs {
        found = index.search(&query, DEFAULT_MATCH_THRESHOLD).unwrap();
    }
    let per_search = started.elapsed() / runs;
    let found = found.unwrap();
    assert_eq!(found.photo_id, "planted-1");
    assert!(found.similarity > 0.9, "{}", found.similarity);
    println!(
        "search of {} × {DIM}: {per_search:?} per query (mean of {runs}, this build's profile)",
        index.len()
    );

    // A row of the synthetic set is found too, and only the planted face passes the threshold
    // for the planted query: random 192-d vectors stay far below it.
    let row = index
        .search(&synthetic_embedding(DIM, 42 + 77_777), 0.99)
        .unwrap()
        .unwrap();
    assert_eq!(row.photo_id, "synthetic-photo-77777");
    let second = &index.top_k(&query, 2).unwrap()[1];
    assert!(second.similarity < 0.5, "{second:?}");
}

fn entry(plate: &str, note: Option<&str>, window: (Option<i64>, Option<i64>)) -> PlateEntry {
    PlateEntry {
        plate: plate.into(),
        note: note.map(Into::into),
        valid_from: window.0,
        valid_until: window.1,
    }
}

const ALWAYS: (Option<i64>, Option<i64>) = (None, None);
/// 2024-01-01T00:00:00Z to 2024-01-31T23:59:59Z.
const JANUARY: (Option<i64>, Option<i64>) = (Some(1_704_067_200), Some(1_706_745_599));

fn plates() -> PlateLibrary {
    PlateLibrary::new(vec![
        PlateList {
            name: "Residents".into(),
            kind: PlateListKind::Allow,
            entries: vec![
                entry("京A·12345", Some("flat 3"), ALWAYS),
                entry("ka 4521", None, ALWAYS),
                entry("粤B-D8800", Some("visitor"), JANUARY),
            ],
        },
        PlateList {
            name: "Banned".into(),
            kind: PlateListKind::Deny,
            entries: vec![entry("KA-4521", Some("unpaid"), ALWAYS)],
        },
        PlateList {
            name: "Police".into(),
            kind: PlateListKind::Watch,
            entries: vec![entry(
                "沪C 5O2Z1",
                Some("stolen"),
                (Some(1_704_067_200), None),
            )],
        },
    ])
    .unwrap()
}

#[test]
fn plate_normalisation_examples() {
    assert_eq!(normalise_plate("京A·12345"), "京A12345");
    assert_eq!(normalise_plate("ka 4521"), "KA4521");
    assert_eq!(normalise_plate("  ＫＡ－４５２１ "), "KA4521");
    assert_eq!(normalise_plate("粤B.d8800"), "粤BD8800");
}

#[test]
fn exact_lookup_matches_the_normalised_text() {
    let library = plates();
    let found = library.lookup("京A12345", 0);
    assert_eq!(found.len(), 1);
    let hit = &found[0];
    assert_eq!(
        (
            hit.list.as_str(),
            hit.kind,
            hit.plate.as_str(),
            hit.note.as_deref(),
            hit.fuzzy
        ),
        (
            "Residents",
            PlateListKind::Allow,
            "京A·12345",
            Some("flat 3"),
            false
        )
    );
    // The province character is part of the plate.
    assert_eq!(library.lookup("津A12345", 0), vec![]);
}

#[test]
fn deny_and_allow_are_both_reported() {
    let found = plates().lookup("KA4521", 0);
    let seen: Vec<(&str, PlateListKind, bool)> = found
        .iter()
        .map(|m| (m.list.as_str(), m.kind, m.fuzzy))
        .collect();
    assert_eq!(
        seen,
        [
            ("Residents", PlateListKind::Allow, false),
            ("Banned", PlateListKind::Deny, false)
        ]
    );
    assert_eq!(found[0].plate, "ka 4521");
    assert_eq!(found[1].note.as_deref(), Some("unpaid"));
}

#[test]
fn validity_windows() {
    let library = plates();
    let (from, until) = (JANUARY.0.unwrap(), JANUARY.1.unwrap());
    for (now, matches) in [
        (from - 1, false),
        (from, true),
        (from + 86_400 * 10, true),
        (until, true),
        (until + 1, false),
    ] {
        assert_eq!(
            !library.lookup("粤BD8800", now).is_empty(),
            matches,
            "at {now}"
        );
    }
    // Open-ended on one side.
    assert!(library.lookup("沪C5O2Z1", from - 1).is_empty());
    assert_eq!(library.lookup("沪C5O2Z1", i64::MAX).len(), 1);
}

#[test]
fn fuzzy_match_is_flagged() {
    let library = plates();
    let now = JANUARY.0.unwrap();
    // One confusable character away from a listed plate: O read as 0, Z as 2, 1 as I, 8 as B.
    for (read, listed) in [
        ("沪C502Z1", "沪C 5O2Z1"),
        ("沪C5O221", "沪C 5O2Z1"),
        ("沪C5O2ZI", "沪C 5O2Z1"),
        ("粤BDB800", "粤B-D8800"),
        ("京AI2345", "京A·12345"),
    ] {
        let found = library.lookup(read, now);
        assert_eq!(found.len(), 1, "{read}");
        assert_eq!(found[0].plate, listed);
        assert!(found[0].fuzzy, "{read}");
    }
    let hit = &library.lookup("沪C502Z1", now)[0];
    assert_eq!(
        (hit.list.as_str(), hit.kind, hit.note.as_deref()),
        ("Police", PlateListKind::Watch, Some("stolen"))
    );
    // Two substitutions (O→0 and Z→2) are too far.
    assert_eq!(library.lookup("沪C50221", now), vec![]);
    // A substitution outside the confusable groups is no match.
    assert_eq!(library.lookup("京A12346", now), vec![]);
    // Outside the window, no fuzzy match either.
    assert_eq!(library.lookup("粤BDB800", JANUARY.1.unwrap() + 1), vec![]);
}

#[test]
fn exact_matches_come_before_fuzzy_ones() {
    let library = PlateLibrary::new(vec![
        PlateList {
            name: "Allowed".into(),
            kind: PlateListKind::Allow,
            entries: vec![entry("AB150", None, ALWAYS)],
        },
        PlateList {
            name: "Wanted".into(),
            kind: PlateListKind::Deny,
            entries: vec![entry("A8150", None, ALWAYS), entry("AB15O", None, ALWAYS)],
        },
    ])
    .unwrap();
    let found: Vec<(String, bool)> = library
        .lookup("ab150", 0)
        .into_iter()
        .map(|m| (m.plate, m.fuzzy))
        .collect();
    assert_eq!(
        found,
        [
            ("AB150".into(), false),
            ("A8150".into(), true),
            ("AB15O".into(), true)
        ]
    );
}

#[test]
fn plate_lists_as_json() {
    let list: PlateList = serde_json::from_str(
        r#"{"name": "Gate", "kind": "watch",
            "entries": [{"plate": "京A·12345", "valid_until": 1706745599}]}"#,
    )
    .unwrap();
    assert_eq!(list.kind, PlateListKind::Watch);
    assert_eq!(list.entries[0].valid_from, None);
    assert_eq!(list.validate(), Ok(()));
    assert_eq!(serde_json::to_value(PlateListKind::Deny).unwrap(), "deny");
    assert!(serde_json::from_str::<PlateList>(r#"{"name": "x", "kind": "Allow"}"#).is_err());

    let mut broken = list.clone();
    broken.entries[0].valid_from = Some(1_706_745_600);
    let error = PlateLibrary::new(vec![broken]).unwrap_err();
    assert_eq!(
        error.to_string(),
        "lists[0].entries[0].valid_until: is before valid_from (1706745599 < 1706745600)"
    );
}
