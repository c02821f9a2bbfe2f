//! Licence plate lists: allow lists (open the barrier), deny lists (alarm) and watch lists
//! (note and notify), and the lookup of an OCR read against them.
//!
//! Plates are compared in a normalised form ([`normalise_plate`]) so that the way a plate was
//! typed into a list (`京A·12345`, `ka 4521`) and the way the OCR reads it (`京A12345`,
//! `KA4521`) meet. On top of exact matches, a lookup reports *fuzzy* matches: plates one
//! commonly confused character away from the read (see [`PlateLibrary::lookup`]).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::{ValidationError, validate_name, validate_note};

/// Longest plate as entered, in characters (separators included).
pub const MAX_PLATE_INPUT_CHARS: usize = 32;
/// Longest normalised plate, in characters. Real plates have 5 to 10; a longer read is OCR noise
/// and cannot match.
pub const MAX_PLATE_CHARS: usize = 16;

/// The form plates are compared in.
///
/// - Full-width ASCII (`ＡＢ１２`, what a CJK input method often types) becomes ASCII, and the
///   ideographic space a space.
/// - Letters are upper-cased: plates are written in capitals, OCR and operators do not always.
/// - Separators are dropped: all whitespace (so the text is trimmed too), `-`, `.`, the middle
///   dots `·` (U+00B7, the Chinese plate separator), `•`, `‧`, `・`, `･`, and the Unicode
///   hyphens and dashes U+2010–U+2015 and U+2212. Control characters are dropped as well. Plates
///   are printed with separators in different places from country to country, and OCR sees or
///   misses them at random, so they carry no identity.
/// - Everything else is kept, in particular CJK characters: the province character of a
///   Chinese plate (`京`, `粤`) is part of the registration, and `京A12345` and `津A12345` are
///   different cars. Other characters are kept rather than guessed at, so that two different
///   inputs never collapse into the same plate by accident.
///
/// `normalise_plate("京A·12345") == "京A12345"`, `normalise_plate(" ka 4521 ") == "KA4521"`.
pub fn normalise_plate(text: &str) -> String {
    let mut plate = String::with_capacity(text.len());
    for c in text.chars() {
        let c = match c {
            // Full-width forms of '!'..='~' sit at a fixed offset from ASCII.
            '\u{FF01}'..='\u{FF5E}' => char::from_u32(u32::from(c) - 0xFEE0).unwrap_or(c),
            '\u{3000}' => ' ',
            _ => c,
        };
        if c.is_whitespace() || c.is_control() || is_separator(c) {
            continue;
        }
        plate.extend(c.to_uppercase());
    }
    plate
}

fn is_separator(c: char) -> bool {
    matches!(
        c,
        '-' | '.' | '\u{00B7}' | '\u{2022}' | '\u{2027}' | '\u{30FB}' | '\u{FF65}' | '\u{2010}'
            ..='\u{2015}' | '\u{2212}'
    )
}

/// Characters an OCR (and a person reading a blurred plate) confuses with each other; a read
/// differing from a listed plate in one of these is a fuzzy match. Only shape confusions
/// between letters and digits, the common OCR errors on plates, are listed.
const CONFUSABLE: [&[char]; 5] = [
    &['0', 'O', 'D', 'Q'],
    &['1', 'I'],
    &['8', 'B'],
    &['5', 'S'],
    &['2', 'Z'],
];

/// What a list is for; the skill decides what a match means (open, alarm, notify).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PlateListKind {
    Allow,
    Deny,
    Watch,
}

/// A named list of plates, as the store persists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlateList {
    /// Shown to the operator and reported in matches; unique in a [`PlateLibrary`].
    pub name: String,
    pub kind: PlateListKind,
    #[serde(default)]
    pub entries: Vec<PlateEntry>,
}

/// One plate on a list, optionally only for a time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlateEntry {
    /// The plate as the operator entered it; shown back as is, compared normalised.
    pub plate: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// First second (Unix time) the entry applies, inclusive; `None`: since always.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_from: Option<i64>,
    /// Last second (Unix time) the entry applies, inclusive, so that `valid_until ==
    /// valid_from` is a (one-second) window and "until 23:59:59" means what it says;
    /// `None`: for ever.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_until: Option<i64>,
}

impl PlateEntry {
    /// Whether the entry applies at `now_unix` (seconds).
    pub fn is_valid_at(&self, now_unix: i64) -> bool {
        self.valid_from.is_none_or(|from| from <= now_unix)
            && self.valid_until.is_none_or(|until| now_unix <= until)
    }

    /// Checks the entry on its own, with field names relative to the entry.
    fn validate(&self) -> Result<(), ValidationError> {
        let chars = self.plate.chars().count();
        if chars > MAX_PLATE_INPUT_CHARS {
            return Err(ValidationError::new(
                "plate",
                format!("is {chars} characters long, at most {MAX_PLATE_INPUT_CHARS} are allowed"),
            ));
        }
        let normalised = normalise_plate(&self.plate);
        if normalised.is_empty() {
            return Err(ValidationError::new(
                "plate",
                "must not be empty (separators and spaces alone do not count)",
            ));
        }
        let chars = normalised.chars().count();
        if chars > MAX_PLATE_CHARS {
            return Err(ValidationError::new(
                "plate",
                format!(
                    "`{normalised}` has {chars} characters without separators, at most \
                     {MAX_PLATE_CHARS} are allowed"
                ),
            ));
        }
        if let Some(note) = &self.note {
            validate_note("note", note)?;
        }
        if let (Some(from), Some(until)) = (self.valid_from, self.valid_until)
            && until < from
        {
            return Err(ValidationError::new(
                "valid_until",
                format!("is before valid_from ({until} < {from})"),
            ));
        }
        Ok(())
    }
}

impl PlateList {
    /// Checks the list, reporting the first problem with its field path (`entries[2].plate:
    /// ...`): a blank or over-long `name`; per entry a `plate` that is empty once normalised
    /// or too long, a `note` over [`MAX_NOTE_CHARS`](super::MAX_NOTE_CHARS), a `valid_until`
    /// before `valid_from`; and the same plate (normalised) twice. A plate has one entry per
    /// list: two entries with different windows would make "when does it apply" depend on
    /// reading both, so the window is widened instead.
    pub fn validate(&self) -> Result<(), ValidationError> {
        validate_name("name", &self.name)?;
        let mut seen: HashMap<String, usize> = HashMap::with_capacity(self.entries.len());
        for (i, entry) in self.entries.iter().enumerate() {
            let prefix = format!("entries[{i}]");
            entry.validate().map_err(|e| e.within(&prefix))?;
            let normalised = normalise_plate(&entry.plate);
            if let Some(first) = seen.get(&normalised) {
                return Err(ValidationError::new(
                    format!("{prefix}.plate"),
                    format!("`{normalised}` is already on the list as entries[{first}]"),
                ));
            }
            seen.insert(normalised, i);
        }
        Ok(())
    }
}

/// A plate read found on a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlateMatch {
    /// The list's name.
    pub list: String,
    pub kind: PlateListKind,
    /// The listed plate as entered, which may differ from the read (separators, and for a
    /// fuzzy match one character).
    pub plate: String,
    pub note: Option<String>,
    /// The read differs from the listed plate in one commonly confused character (see
    /// [`PlateLibrary::lookup`]).
    pub fuzzy: bool,
}

/// Validated plate lists with an index from normalised plate to entries, so that a lookup costs
/// a handful of hash probes however long the lists are.
#[derive(Debug, Clone, Default)]
pub struct PlateLibrary {
    lists: Vec<PlateList>,
    /// Normalised plate → (list, entry) positions.
    index: HashMap<String, Vec<(usize, usize)>>,
}

impl PlateLibrary {
    /// Validates the lists (see [`PlateList::validate`]; field paths are prefixed with
    /// `lists[i].`, and list names must be unique, as matches name their list) and indexes
    /// them.
    pub fn new(lists: Vec<PlateList>) -> Result<PlateLibrary, ValidationError> {
        let mut names: HashMap<&str, usize> = HashMap::with_capacity(lists.len());
        for (i, list) in lists.iter().enumerate() {
            let prefix = format!("lists[{i}]");
            list.validate().map_err(|e| e.within(&prefix))?;
            if let Some(first) = names.insert(&list.name, i) {
                return Err(ValidationError::new(
                    format!("{prefix}.name"),
                    format!("`{}` is already the name of lists[{first}]", list.name),
                ));
            }
        }
        let mut index: HashMap<String, Vec<(usize, usize)>> = HashMap::new();
        for (l, list) in lists.iter().enumerate() {
            for (e, entry) in list.entries.iter().enumerate() {
                index
                    .entry(normalise_plate(&entry.plate))
                    .or_default()
                    .push((l, e));
            }
        }
        Ok(PlateLibrary { lists, index })
    }

    /// The lists, as given.
    pub fn lists(&self) -> &[PlateList] {
        &self.lists
    }

    /// Every list entry the plate read `text` matches at `now_unix`, exact matches first, then
    /// by list and entry order. A plate on several lists (deny and allow, say) is reported for
    /// each: which one wins is the skill's policy, not the library's. Entries outside their
    /// validity window do not match.
    ///
    /// Besides exact matches of the normalised text, entries one *confusable* substitution away
    /// are reported with `fuzzy: true`: the read and the plate have the same length and differ
    /// in exactly one position, where both characters are in one of the groups 0/O/D/Q, 1/I,
    /// 8/B, 5/S, 2/Z. These are the shapes OCR mixes up on dirty or blurred plates, and a
    /// watch or deny list should not miss a car for one of them. One substitution only, and
    /// only among these groups: any more and different real plates start to match. A fuzzy
    /// match may be a different car, so a skill that acts on a match (opening a barrier for an
    /// allow list) should require `fuzzy == false`.
    pub fn lookup(&self, text: &str, now_unix: i64) -> Vec<PlateMatch> {
        let read = normalise_plate(text);
        let chars: Vec<char> = read.chars().collect();
        // Also bounds the work on OCR garbage: no entry is longer.
        if chars.is_empty() || chars.len() > MAX_PLATE_CHARS {
            return Vec::new();
        }
        let mut found: Vec<(bool, usize, usize)> = Vec::new();
        let mut collect = |key: &str, fuzzy: bool| {
            for &(l, e) in self.index.get(key).into_iter().flatten() {
                found.push((fuzzy, l, e));
            }
        };
        collect(&read, false);
        let mut variant = chars.clone();
        for (position, &c) in chars.iter().enumerate() {
            let Some(group) = CONFUSABLE.iter().find(|group| group.contains(&c)) else {
                continue;
            };
            for &other in group.iter().filter(|&&other| other != c) {
                variant[position] = other;
                collect(&variant.iter().collect::<String>(), true);
            }
            variant[position] = c;
        }
        found.sort_unstable();
        found
            .into_iter()
            .filter_map(|(fuzzy, l, e)| {
                let list = self.lists.get(l)?;
                let entry = list.entries.get(e)?;
                entry.is_valid_at(now_unix).then(|| PlateMatch {
                    list: list.name.clone(),
                    kind: list.kind,
                    plate: entry.plate.clone(),
                    note: entry.note.clone(),
                    fuzzy,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(plate: &str) -> PlateEntry {
        PlateEntry {
            plate: plate.into(),
            note: None,
            valid_from: None,
            valid_until: None,
        }
    }

    fn list(name: &str, kind: PlateListKind, entries: Vec<PlateEntry>) -> PlateList {
        PlateList {
            name: name.into(),
            kind,
            entries,
        }
    }

    #[test]
    fn normalisation() {
        for (text, plate) in [
            ("京A·12345", "京A12345"),
            ("ka 4521", "KA4521"),
            ("  粤B-D1234\t", "粤BD1234"),
            ("ＡＢ－１２３", "AB123"),
            ("京Ａ　１２３４５", "京A12345"),
            ("m.ab•12‧3・4･5‐6–7−8", "MAB12345678"),
            ("b\u{0}x", "BX"),
            ("a/b", "A/B"),
            ("", ""),
            (" · - ", ""),
        ] {
            assert_eq!(normalise_plate(text), plate, "{text:?}");
        }
    }

    #[test]
    fn validity_window_bounds_are_inclusive() {
        let mut e = entry("A1");
        assert!(e.is_valid_at(i64::MIN) && e.is_valid_at(i64::MAX));
        e.valid_from = Some(100);
        e.valid_until = Some(200);
        assert!(!e.is_valid_at(99));
        assert!(e.is_valid_at(100));
        assert!(e.is_valid_at(200));
        assert!(!e.is_valid_at(201));
        e.valid_until = Some(100);
        assert_eq!(e.validate(), Ok(()));
        assert!(e.is_valid_at(100));
    }

    #[test]
    fn validation_names_the_field() {
        let error_of = |entries: Vec<PlateEntry>| {
            list("Staff", PlateListKind::Allow, entries)
                .validate()
                .unwrap_err()
        };
        let mut late = entry("B2");
        late.valid_from = Some(1_700_003_600);
        late.valid_until = Some(1_700_000_000);
        assert_eq!(
            error_of(vec![entry("A1"), entry("A2"), late]).to_string(),
            "entries[2].valid_until: is before valid_from (1700000000 < 1700003600)"
        );
        assert_eq!(
            error_of(vec![entry("A1"), entry(" -·")]).field,
            "entries[1].plate"
        );
        assert_eq!(
            error_of(vec![entry(&"A".repeat(17))]).field,
            "entries[0].plate"
        );
        assert_eq!(
            error_of(vec![entry(&"A-".repeat(17))]).field,
            "entries[0].plate"
        );
        assert_eq!(
            error_of(vec![entry("京A·12345"), entry("京a 12345")]).to_string(),
            "entries[1].plate: `京A12345` is already on the list as entries[0]"
        );
        let mut noted = entry("A1");
        noted.note = Some("line\u{1b}[31m".into());
        assert_eq!(error_of(vec![noted]).field, "entries[0].note");
        let blank = list(" ", PlateListKind::Deny, vec![]);
        assert_eq!(blank.validate().unwrap_err().field, "name");
    }

    #[test]
    fn library_prefixes_list_errors_and_wants_unique_names() {
        let lists = vec![
            list("Staff", PlateListKind::Allow, vec![entry("A1")]),
            list("Staff", PlateListKind::Deny, vec![entry("B1")]),
        ];
        let error = PlateLibrary::new(lists).unwrap_err();
        assert_eq!(
            error.to_string(),
            "lists[1].name: `Staff` is already the name of lists[0]"
        );
        let lists = vec![list(
            "Staff",
            PlateListKind::Allow,
            vec![entry(""), entry("A1")],
        )];
        assert_eq!(
            PlateLibrary::new(lists).unwrap_err().field,
            "lists[0].entries[0].plate"
        );
    }

    #[test]
    fn lookup_of_long_or_empty_reads_finds_nothing() {
        let library =
            PlateLibrary::new(vec![list("L", PlateListKind::Watch, vec![entry("A0")])]).unwrap();
        assert_eq!(library.lookup("", 0), vec![]);
        assert_eq!(library.lookup("· -", 0), vec![]);
        assert_eq!(library.lookup(&"0".repeat(100_000), 0), vec![]);
        assert_eq!(library.lookup("AO", 0).len(), 1);
        assert_eq!(PlateLibrary::default().lookup("A0", 0), vec![]);
    }

    #[test]
    fn confusable_groups_are_disjoint() {
        let all: Vec<char> = CONFUSABLE
            .iter()
            .flat_map(|group| group.iter().copied())
            .collect();
        for (i, c) in all.iter().enumerate() {
            assert!(!all[i + 1..].contains(c), "{c} is in two groups");
            assert_eq!(normalise_plate(&c.to_string()), c.to_string());
        }
    }
}
