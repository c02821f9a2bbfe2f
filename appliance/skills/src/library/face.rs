//! The face library: who is enrolled ([`Library`], [`Person`], persisted by the store) and the
//! in-memory index of their face embeddings ([`FaceIndex`]) that a face read is matched against.
//!
//! Search is exact: every enrolled embedding is compared with the query. An appliance holds at
//! most some 10⁵ photos; one pass over 10⁵ × 192 `f32` (77 MB) is a few milliseconds of
//! memory-bound, vectorised dot products, and faces arrive a few per second. An approximate
//! index (HNSW, IVF) would add memory, build time and recall loss for nothing at that size.

use std::collections::HashMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::{ValidationError, validate_id, validate_name, validate_note};

/// The similarity a face read needs to be taken for an enrolled person, unless the library sets
/// its own [`Library::match_threshold`].
///
/// With the appliance's MobileFaceNet (`face_embedding.onnx`) on aligned 112×112 crops, two
/// photos of the same person score about 0.95 (0.986 and 0.946 measured) and two different
/// people about 0.05 (0.044) — see `shared/models.md` §3. 0.6 sits well between the two, leaving
/// room for pose, light and CCTV blur on the same person while staying far above strangers.
/// Square box crops instead of aligned ones score lower for the same person (about 0.9), and
/// mixing the two crop styles between enrolment and lookup drops it to about 0.54: enrol and
/// look up with the same crop style.
pub const DEFAULT_MATCH_THRESHOLD: f32 = 0.6;

/// A face library as the store persists it: its people and how close a face must be to match.
/// The embeddings are not in here; they live in the store next to the enrolment photos and are
/// loaded into a [`FaceIndex`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Library {
    /// Shown to the operator ("Staff", "Banned").
    pub name: String,
    /// Cosine similarity at or above which a face is taken for the best-matching person, in
    /// (0, 1]. See [`DEFAULT_MATCH_THRESHOLD`] for what the numbers mean.
    #[serde(default = "default_match_threshold")]
    pub match_threshold: f32,
    /// The enrolled people, each with a unique id.
    #[serde(default)]
    pub people: Vec<Person>,
}

fn default_match_threshold() -> f32 {
    DEFAULT_MATCH_THRESHOLD
}

/// Someone enrolled in a [`Library`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Person {
    /// Stable id, used by the [`FaceIndex`] and in events (see the id rule on
    /// [`Library::validate`]).
    pub id: String,
    /// Shown to the operator.
    pub name: String,
    /// Free text ("contractor until March").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl Library {
    /// An empty library with the default threshold.
    pub fn new(name: impl Into<String>) -> Library {
        Library {
            name: name.into(),
            match_threshold: DEFAULT_MATCH_THRESHOLD,
            people: Vec::new(),
        }
    }

    /// Checks what an operator can get wrong, reporting the first problem with its field path
    /// (`people[1].id: ...`):
    /// - `name` and each person's `name`: not blank, at most [`MAX_NAME_CHARS`] characters, no
    ///   control characters;
    /// - each person's `id`: 1 to [`MAX_ID_CHARS`] ASCII letters, digits, `-`, `_`, `.`, and
    ///   unique in the library (events and the index refer to people by id);
    /// - `note`: at most [`MAX_NOTE_CHARS`] characters;
    /// - `match_threshold`: a number in (0, 1] — at 0 or below every face would match someone.
    ///
    /// [`MAX_NAME_CHARS`]: super::MAX_NAME_CHARS
    /// [`MAX_ID_CHARS`]: super::MAX_ID_CHARS
    /// [`MAX_NOTE_CHARS`]: super::MAX_NOTE_CHARS
    pub fn validate(&self) -> Result<(), ValidationError> {
        validate_name("name", &self.name)?;
        let threshold = self.match_threshold;
        if !(threshold > 0.0 && threshold <= 1.0) {
            return Err(ValidationError::new(
                "match_threshold",
                format!("must be a cosine similarity in (0, 1], got {threshold}"),
            ));
        }
        let mut seen: HashMap<&str, usize> = HashMap::with_capacity(self.people.len());
        for (i, person) in self.people.iter().enumerate() {
            let prefix = format!("people[{i}]");
            validate_id("id", &person.id).map_err(|e| e.within(&prefix))?;
            validate_name("name", &person.name).map_err(|e| e.within(&prefix))?;
            if let Some(note) = &person.note {
                validate_note("note", note).map_err(|e| e.within(&prefix))?;
            }
            if let Some(first) = seen.insert(&person.id, i) {
                return Err(ValidationError::new(
                    format!("{prefix}.id"),
                    format!("`{}` is already the id of people[{first}]", person.id),
                ));
            }
        }
        Ok(())
    }
}

/// Why an embedding or an index could not be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FaceError {
    /// An index needs at least one dimension.
    #[error("an embedding needs at least one dimension")]
    ZeroDimension,
    /// The embedding does not have the index's dimension: it comes from another model.
    #[error("embedding has {actual} values, the index holds {expected}-value embeddings")]
    Dimension { expected: usize, actual: usize },
    /// A NaN or infinity, the sign of a broken model output.
    #[error("embedding value [{index}] is not a finite number")]
    NotFinite { index: usize },
    /// An all-zero vector has no direction, so no cosine similarity.
    #[error("embedding is all zeros")]
    ZeroVector,
    /// A photo is enrolled once; remove it first to enrol it again.
    #[error("photo_id: `{0}` is already enrolled")]
    DuplicatePhoto(String),
    /// A person or photo id breaks the id rule.
    #[error(transparent)]
    Invalid(#[from] ValidationError),
}

/// What an enrolled embedding belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaceEntry {
    pub person_id: String,
    pub photo_id: String,
}

/// A face read matched to an enrolled photo.
#[derive(Debug, Clone, PartialEq)]
pub struct FaceMatch {
    pub person_id: String,
    pub photo_id: String,
    /// Cosine similarity of the read and the photo, in [-1, 1].
    pub similarity: f32,
}

/// Enrolled face embeddings, searched exactly by cosine similarity.
///
/// The vectors are L2-normalised on the way in (and the query on each search), so cosine
/// similarity is a plain dot product. They sit in one row-major `Vec<f32>`, one row per photo,
/// with the entries in a parallel `Vec`: a search streams through contiguous memory, which is
/// what makes the exact scan fast (no pointer chasing, hardware prefetch, SIMD). A person may
/// have several photos (front, glasses, winter hat); the best-scoring photo speaks for them.
///
/// Rows are not kept in insertion order: a removal moves the last row into the hole, which
/// costs one row copy instead of shifting the whole matrix.
#[derive(Clone)]
pub struct FaceIndex {
    dimension: usize,
    /// `entries.len() * dimension` values, row `i` belonging to `entries[i]`.
    matrix: Vec<f32>,
    entries: Vec<FaceEntry>,
    /// Row of each photo, to refuse duplicates and remove a photo without a scan.
    rows: HashMap<String, usize>,
}

impl fmt::Debug for FaceIndex {
    // The derived form would print every value of every embedding.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaceIndex")
            .field("dimension", &self.dimension)
            .field("len", &self.entries.len())
            .finish_non_exhaustive()
    }
}

impl FaceIndex {
    /// An empty index for `dimension`-value embeddings (192 for the appliance's MobileFaceNet).
    pub fn new(dimension: usize) -> Result<FaceIndex, FaceError> {
        if dimension == 0 {
            return Err(FaceError::ZeroDimension);
        }
        Ok(FaceIndex {
            dimension,
            matrix: Vec::new(),
            entries: Vec::new(),
            rows: HashMap::new(),
        })
    }

    /// An index of `count` random unit vectors, for benchmarks and tests: entry `i` is
    /// person `synthetic-person-{i}`, photo `synthetic-photo-{i}`, with the embedding
    /// [`synthetic_embedding`]`(dimension, seed + i)`, so a caller can rebuild any row as a
    /// query. The same arguments always give the same index.
    pub fn synthetic(dimension: usize, count: usize, seed: u64) -> Result<FaceIndex, FaceError> {
        let mut index = FaceIndex::new(dimension)?;
        index.matrix.reserve(count.saturating_mul(dimension));
        index.entries.reserve(count);
        index.rows.reserve(count);
        for i in 0..count {
            let embedding = synthetic_embedding(dimension, seed.wrapping_add(i as u64));
            index.insert(
                format!("synthetic-person-{i}"),
                format!("synthetic-photo-{i}"),
                &embedding,
            )?;
        }
        Ok(index)
    }

    /// The number of values in each embedding.
    pub fn dimension(&self) -> usize {
        self.dimension
    }

    /// The number of enrolled photos.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Enrols one photo's embedding for a person. The embedding may come straight from the
    /// model (MobileFaceNet's are about 68 long); it is stored L2-normalised. Refused, leaving
    /// the index unchanged: ids that break the id rule (see [`Library::validate`]), a photo id
    /// already enrolled, a wrong dimension, NaN or infinite values, an all-zero vector.
    pub fn insert(
        &mut self,
        person_id: impl Into<String>,
        photo_id: impl Into<String>,
        embedding: &[f32],
    ) -> Result<(), FaceError> {
        let (person_id, photo_id) = (person_id.into(), photo_id.into());
        validate_id("person_id", &person_id)?;
        validate_id("photo_id", &photo_id)?;
        let unit = self.normalised(embedding)?;
        if self.rows.contains_key(&photo_id) {
            return Err(FaceError::DuplicatePhoto(photo_id));
        }
        self.rows.insert(photo_id.clone(), self.entries.len());
        self.matrix.extend_from_slice(&unit);
        self.entries.push(FaceEntry {
            person_id,
            photo_id,
        });
        Ok(())
    }

    /// Removes every photo of a person; returns how many there were.
    pub fn remove_person(&mut self, person_id: &str) -> usize {
        let mut removed = 0;
        // Backwards, so that the row moved into a hole has already been looked at.
        for row in (0..self.entries.len()).rev() {
            if self.entries[row].person_id == person_id {
                self.remove_row(row);
                removed += 1;
            }
        }
        removed
    }

    /// Removes one photo; returns whether it was enrolled.
    pub fn remove_photo(&mut self, photo_id: &str) -> bool {
        match self.rows.get(photo_id) {
            Some(&row) => {
                self.remove_row(row);
                true
            }
            None => false,
        }
    }

    /// The enrolled photo most similar to `query`, if its cosine similarity is at least
    /// `threshold` (a NaN threshold matches nothing). The query is checked and normalised like
    /// an enrolled embedding; a query the index cannot compare is an error rather than "no
    /// match", because it means the pipeline feeds the wrong model's output.
    pub fn search(&self, query: &[f32], threshold: f32) -> Result<Option<FaceMatch>, FaceError> {
        let query = self.normalised(query)?;
        let mut best: Option<(f32, usize)> = None;
        for (row, values) in self.matrix.chunks_exact(self.dimension).enumerate() {
            let score = dot(&query, values);
            if best.is_none_or(|(top, _)| score > top) {
                best = Some((score, row));
            }
        }
        Ok(best
            .map(|(score, row)| self.matched(row, score))
            .filter(|found| found.similarity >= threshold))
    }

    /// The `k` people most similar to `query`, best first, each with their best photo and no
    /// threshold applied: for an operator's "who could this be" list. Ties keep the lower row.
    pub fn top_k(&self, query: &[f32], k: usize) -> Result<Vec<FaceMatch>, FaceError> {
        let query = self.normalised(query)?;
        if k == 0 {
            return Ok(Vec::new());
        }
        let mut best_per_person: HashMap<&str, (f32, usize)> = HashMap::new();
        for (row, values) in self.matrix.chunks_exact(self.dimension).enumerate() {
            let score = dot(&query, values);
            best_per_person
                .entry(self.entries[row].person_id.as_str())
                .and_modify(|best| {
                    if score > best.0 {
                        *best = (score, row);
                    }
                })
                .or_insert((score, row));
        }
        let mut ranked: Vec<(f32, usize)> = best_per_person.into_values().collect();
        let order = |a: &(f32, usize), b: &(f32, usize)| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1));
        if ranked.len() > k {
            ranked.select_nth_unstable_by(k - 1, order);
            ranked.truncate(k);
        }
        ranked.sort_unstable_by(order);
        Ok(ranked
            .into_iter()
            .map(|(score, row)| self.matched(row, score))
            .collect())
    }

    fn matched(&self, row: usize, score: f32) -> FaceMatch {
        let entry = &self.entries[row];
        FaceMatch {
            person_id: entry.person_id.clone(),
            photo_id: entry.photo_id.clone(),
            // Rounding can put a unit vector's product with itself a hair above 1.
            similarity: score.clamp(-1.0, 1.0),
        }
    }

    /// `embedding` scaled to unit length, after checking it can be.
    fn normalised(&self, embedding: &[f32]) -> Result<Vec<f32>, FaceError> {
        if embedding.len() != self.dimension {
            return Err(FaceError::Dimension {
                expected: self.dimension,
                actual: embedding.len(),
            });
        }
        if let Some(index) = embedding.iter().position(|v| !v.is_finite()) {
            return Err(FaceError::NotFinite { index });
        }
        // In f64: squares of large finite f32 values would overflow f32, tiny ones underflow.
        let norm = embedding
            .iter()
            .map(|&v| f64::from(v) * f64::from(v))
            .sum::<f64>()
            .sqrt();
        if norm == 0.0 {
            return Err(FaceError::ZeroVector);
        }
        Ok(embedding
            .iter()
            .map(|&v| (f64::from(v) / norm) as f32)
            .collect())
    }

    /// Removes `row` by moving the last row into its place.
    fn remove_row(&mut self, row: usize) {
        let last = self.entries.len() - 1;
        let dimension = self.dimension;
        if row != last {
            self.matrix
                .copy_within(last * dimension..(last + 1) * dimension, row * dimension);
        }
        self.matrix.truncate(last * dimension);
        let removed = self.entries.swap_remove(row);
        self.rows.remove(&removed.photo_id);
        if let Some(moved) = self.entries.get(row) {
            self.rows.insert(moved.photo_id.clone(), row);
        }
    }
}

/// The dot product of two equally long slices, shaped for auto-vectorisation: 16 independent
/// `f32` accumulators over fixed-size chunks compile to two 8-lane (AVX) or four 4-lane (SSE,
/// NEON) multiply-adds per chunk with no bounds checks, and the independent sums keep the
/// pipeline busy. Summing in a different order than a sequential loop changes the result only
/// in the last bits, which does not matter for ranking faces.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    const LANES: usize = 16;
    let (a_chunks, a_tail) = a.as_chunks::<LANES>();
    let (b_chunks, b_tail) = b.as_chunks::<LANES>();
    let mut sums = [0.0f32; LANES];
    for (x, y) in a_chunks.iter().zip(b_chunks) {
        for ((sum, x), y) in sums.iter_mut().zip(x).zip(y) {
            *sum += x * y;
        }
    }
    let tail: f32 = a_tail.iter().zip(b_tail).map(|(x, y)| x * y).sum();
    sums.iter().sum::<f32>() + tail
}

/// A random unit vector of `dimension` values, the same for the same `seed` on every machine:
/// a stand-in for a face embedding in benchmarks and tests. Uniform values in [-1, 1), then
/// normalised; like real embeddings of different people, two of them are nearly orthogonal
/// (cosine about ±0.07 at 192 dimensions). Uses SplitMix64, so no `rand` dependency.
pub fn synthetic_embedding(dimension: usize, seed: u64) -> Vec<f32> {
    let mut state = seed;
    let mut values: Vec<f32> = (0..dimension)
        .map(|_| {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            // The top 24 bits make an f32 in [0, 1) exactly.
            (z >> 40) as f32 / (1u32 << 24) as f32 * 2.0 - 1.0
        })
        .collect();
    let norm = values.iter().map(|v| v * v).sum::<f32>().sqrt();
    if norm > 0.0 {
        values.iter_mut().for_each(|v| *v /= norm);
    }
    values
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive_dot(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    #[test]
    fn dot_matches_a_plain_loop_for_every_tail_length() {
        for len in 0..50 {
            let a = synthetic_embedding(len, 1);
            let b = synthetic_embedding(len, 2);
            assert!((dot(&a, &b) - naive_dot(&a, &b)).abs() < 1e-5, "len {len}");
        }
    }

    #[test]
    fn normalises_values_whose_squares_overflow_or_underflow_f32() {
        let mut index = FaceIndex::new(3).unwrap();
        index.insert("big", "big-1", &[3e38, 0.0, 3e38]).unwrap();
        index.insert("tiny", "tiny-1", &[0.0, 1e-40, 0.0]).unwrap();
        let big = index.search(&[1.0, 0.0, 1.0], 0.99).unwrap().unwrap();
        assert_eq!(big.person_id, "big");
        assert!((big.similarity - 1.0).abs() < 1e-6);
        let tiny = index.search(&[0.0, 5.0, 0.0], 0.99).unwrap().unwrap();
        assert_eq!(tiny.person_id, "tiny");
    }

    #[test]
    fn refused_inserts_leave_the_index_unchanged() {
        let mut index = FaceIndex::new(2).unwrap();
        index.insert("ann", "ann-1", &[1.0, 0.0]).unwrap();
        assert_eq!(
            index.insert("ann", "ann-1", &[0.0, 1.0]),
            Err(FaceError::DuplicatePhoto("ann-1".into()))
        );
        assert_eq!(
            index.insert("ann", "ann-2", &[0.0, 0.0]),
            Err(FaceError::ZeroVector)
        );
        assert_eq!(
            index.insert("ann", "ann-2", &[1.0, f32::INFINITY]),
            Err(FaceError::NotFinite { index: 1 })
        );
        let Err(FaceError::Invalid(error)) = index.insert("", "ann-2", &[1.0, 0.0]) else {
            panic!("an empty person id was accepted");
        };
        assert_eq!(error.field, "person_id");
        let Err(FaceError::Invalid(error)) = index.insert("ann", "a/b", &[1.0, 0.0]) else {
            panic!("a photo id with a slash was accepted");
        };
        assert_eq!(error.field, "photo_id");
        assert_eq!(index.len(), 1);
        assert_eq!(index.matrix.len(), 2);
    }

    #[test]
    fn removal_keeps_rows_and_photo_positions_in_step() {
        let mut index = FaceIndex::new(4).unwrap();
        for (person, photo, seed) in [
            ("a", "a1", 1),
            ("b", "b1", 2),
            ("a", "a2", 3),
            ("c", "c1", 4),
        ] {
            index
                .insert(person, photo, &synthetic_embedding(4, seed))
                .unwrap();
        }
        // Removing the first row moves the last one (c1) into it.
        assert!(index.remove_photo("a1"));
        assert!(!index.remove_photo("a1"));
        assert_eq!(index.rows["c1"], 0);
        for (row, entry) in index.entries.iter().enumerate() {
            assert_eq!(index.rows[&entry.photo_id], row);
        }
        let c1 = index
            .search(&synthetic_embedding(4, 4), 0.99)
            .unwrap()
            .unwrap();
        assert_eq!(c1.photo_id, "c1");
        assert!(index.remove_photo("c1"));
        assert_eq!(index.remove_person("a"), 1);
        assert_eq!(index.len(), 1);
        assert_eq!(index.matrix.len(), 4);
        assert_eq!(index.rows.len(), 1);
        assert_eq!(index.remove_person("b"), 1);
        assert!(index.is_empty());
        assert_eq!(index.search(&synthetic_embedding(4, 2), -1.0), Ok(None));
    }

    #[test]
    fn zero_dimension_and_nan_threshold_are_handled() {
        assert_eq!(FaceIndex::new(0).unwrap_err(), FaceError::ZeroDimension);
        assert_eq!(
            FaceIndex::synthetic(0, 3, 1).unwrap_err(),
            FaceError::ZeroDimension
        );
        let index = FaceIndex::synthetic(8, 3, 1).unwrap();
        assert_eq!(index.search(&synthetic_embedding(8, 1), f32::NAN), Ok(None));
    }

    #[test]
    fn synthetic_index_is_reproducible_and_its_rows_can_be_rebuilt() {
        let a = FaceIndex::synthetic(16, 20, 7).unwrap();
        let b = FaceIndex::synthetic(16, 20, 7).unwrap();
        assert_eq!(a.matrix, b.matrix);
        assert_eq!(a.entries, b.entries);
        let row = a
            .search(&synthetic_embedding(16, 7 + 13), 0.999)
            .unwrap()
            .unwrap();
        assert_eq!(row.photo_id, "synthetic-photo-13");
        assert_eq!(format!("{a:?}"), "FaceIndex { dimension: 16, len: 20, .. }");
    }

    #[test]
    fn library_validation_names_the_field() {
        let person = |id: &str, name: &str| Person {
            id: id.into(),
            name: name.into(),
            note: None,
        };
        let mut library = Library::new("Staff");
        library.people = vec![person("p-1", "Ann"), person("p-2", "Bob")];
        assert_eq!(library.validate(), Ok(()));

        let field = |library: &Library| library.validate().unwrap_err().field;
        let mut broken = library.clone();
        broken.people.push(person("p-1", "Ann again"));
        let error = broken.validate().unwrap_err();
        assert_eq!(
            error.to_string(),
            "people[2].id: `p-1` is already the id of people[0]"
        );

        let mut broken = library.clone();
        broken.people[1].name = "  ".into();
        assert_eq!(field(&broken), "people[1].name");

        let mut broken = library.clone();
        broken.people[0].note = Some("x".repeat(super::super::MAX_NOTE_CHARS + 1));
        assert_eq!(field(&broken), "people[0].note");

        let mut broken = library.clone();
        broken.people[0].id = "x".repeat(super::super::MAX_ID_CHARS + 1);
        assert_eq!(field(&broken), "people[0].id");

        let mut broken = library.clone();
        broken.name = "Staff\u{7}".into();
        assert_eq!(field(&broken), "name");

        for threshold in [0.0, -0.5, 1.01, f32::NAN] {
            let mut broken = library.clone();
            broken.match_threshold = threshold;
            assert_eq!(field(&broken), "match_threshold", "{threshold}");
        }
    }

    #[test]
    fn library_json_defaults_the_threshold_and_refuses_unknown_keys() {
        let library: Library =
            serde_json::from_str(r#"{"name": "Staff", "people": [{"id": "p-1", "name": "Ann"}]}"#)
                .unwrap();
        assert_eq!(library.match_threshold, DEFAULT_MATCH_THRESHOLD);
        assert_eq!(library.people[0].note, None);
        let json = serde_json::to_value(&library).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "name": "Staff",
                "match_threshold": DEFAULT_MATCH_THRESHOLD,
                "people": [{"id": "p-1", "name": "Ann"}],
            })
        );
        assert!(serde_json::from_str::<Library>(r#"{"name": "x", "treshold": 0.5}"#).is_err());
    }
}
