//! Object detectors of the YOLO families: letterbox the frames, run the model, decode its output
//! tensor into boxes, suppress overlaps per class, and map the boxes back to each frame.
//!
//! The decoders (`decode`, `nms`) are plain functions over `f32` slices so every layout can be
//! tested on synthetic tensors without a runtime; `Detector` only glues them to a `Model`.
//!
//! The three families differ only in their output tensor:
//! - YOLOX: `[B, N, 5+C]`, rows over the stride 8, 16 and 32 grids (row-major each), columns
//!   centre offset in cells, log size in cells, objectness, class probabilities;
//! - YOLOv5: `[B, N, 5+C]`, `cx, cy, w, h` in input pixels, objectness, class probabilities;
//! - YOLOv8 (and YOLOv11, same head): `[B, 4+C, N]`, channel-major, `cx, cy, w, h` in input
//!   pixels, class probabilities without objectness.

use std::time::{Duration, Instant};

use image::RgbImage;
use serde::{Deserialize, Serialize};

use crate::geometry::{BBox, Detection};
use crate::preprocess::{self, Normalisation};
use crate::runtime::{Input, Model, Output, RuntimeError};

/// The output layout of a detector (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DetectorFamily {
    Yolox,
    Yolov5,
    /// YOLOv8 and YOLOv11: both export the same anchor-free head.
    Yolov8,
}

impl DetectorFamily {
    pub fn name(self) -> &'static str {
        match self {
            DetectorFamily::Yolox => "yolox",
            DetectorFamily::Yolov5 => "yolov5",
            DetectorFamily::Yolov8 => "yolov8",
        }
    }
}

/// The strides of YOLOX's three output grids, in the order its rows come.
const YOLOX_STRIDES: [u32; 3] = [8, 16, 32];

/// How a detector model is fed and read: what its manifest says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DetectorSpec {
    pub family: DetectorFamily,
    /// Model input size in pixels; frames are letterboxed into it.
    pub width: u32,
    pub height: u32,
    pub normalisation: Normalisation,
    /// Fill of the letterbox margin (YOLOX was trained with 114 grey).
    pub pad: [u8; 3],
    /// Detections scoring at or below this are dropped before NMS.
    pub score_threshold: f32,
    /// Of two overlapping boxes of one class, the weaker is dropped at this IoU or above.
    pub nms_iou: f32,
}

#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// The model's declared inputs or outputs cannot be what the spec says: caught when the
    /// detector is made, not on the first frame.
    #[error("model {model} does not fit a {family} detector: {reason}")]
    Model {
        model: String,
        family: &'static str,
        reason: String,
    },
    /// An output tensor the decoder cannot read: a model that lied about its shape, or a family
    /// mix-up the declared shapes could not reveal (free dimensions).
    #[error("{family} output of shape {shape:?}: {reason}")]
    Output {
        family: &'static str,
        shape: Vec<i64>,
        reason: String,
    },
}

/// Time spent in each stage of one `detect_timed` call, summed over its frames.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StageTimes {
    /// Letterboxing and filling the input tensor.
    pub preprocess: Duration,
    /// The model runs.
    pub inference: Duration,
    /// Decoding, NMS and mapping the boxes back to the frames.
    pub postprocess: Duration,
}

/// The sizes of a tensor of shape `shape`, checked to be of `rank` positive sizes whose product
/// is `len`: the decoders index by these, so a wrong shape must be caught here, not by a panic.
pub(crate) fn tensor_dims(shape: &[i64], rank: usize, len: usize) -> Result<Vec<usize>, String> {
    if shape.len() != rank {
        return Err(format!("expected {rank} dimensions"));
    }
    let dims = shape
        .iter()
        .map(|&d| usize::try_from(d).ok().filter(|&d| d > 0))
        .collect::<Option<Vec<usize>>>()
        .ok_or("a dimension is not positive")?;
    let total = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or("the sizes overflow")?;
    if total != len {
        return Err(format!("holds {total} values, the data has {len}"));
    }
    Ok(dims)
}

/// Whether `score` passes `threshold`; false for NaN, so a broken tensor yields nothing.
pub(crate) fn above(score: f32, threshold: f32) -> bool {
    score > threshold
}

/// Index and value of the largest of `values` (the first on ties; `None` when empty).
fn argmax(values: &[f32]) -> Option<(usize, f32)> {
    values
        .iter()
        .copied()
        .enumerate()
        .fold(None, |best, (i, v)| match best {
            Some((_, b)) if v <= b => best,
            _ => Some((i, v)),
        })
}

/// Each YOLOX output row's cell `(gx, gy)` and stride, in row order.
fn yolox_grid(width: u32, height: u32) -> Vec<(f32, f32, f32)> {
    let mut cells = Vec::new();
    for stride in YOLOX_STRIDES {
        for gy in 0..height / stride {
            for gx in 0..width / stride {
                cells.push((gx as f32, gy as f32, stride as f32));
            }
        }
    }
    cells
}

/// Decodes a detector output tensor into one list of detections per batch item, in model-input
/// pixels, before NMS. Scores are the class probability (times objectness for YOLOX/YOLOv5);
/// only those above `spec.score_threshold` are kept.
pub fn decode(
    spec: &DetectorSpec,
    output: &[f32],
    shape: &[i64],
) -> Result<Vec<Vec<Detection>>, DetectError> {
    let error = |reason: String| DetectError::Output {
        family: spec.family.name(),
        shape: shape.to_vec(),
        reason,
    };
    let dims = tensor_dims(shape, 3, output.len()).map_err(error)?;
    let (batch, item_len) = (dims[0], dims[1] * dims[2]);
    let threshold = spec.score_threshold;
    let items = output.chunks_exact(item_len).take(batch);
    match spec.family {
        DetectorFamily::Yolox | DetectorFamily::Yolov5 => {
            let (rows, columns) = (dims[1], dims[2]);
            if columns < 6 {
                return Err(error(format!(
                    "{columns} columns: expected 5 + at least one class"
                )));
            }
            let grid = match spec.family {
                DetectorFamily::Yolox => {
                    let grid = yolox_grid(spec.width, spec.height);
                    if grid.len() != rows {
                        return Err(error(format!(
                            "{rows} rows, but the stride 8/16/32 grids of {}x{} have {}",
                            spec.width,
                            spec.height,
                            grid.len()
                        )));
                    }
                    Some(grid)
                }
                _ => None,
            };
            Ok(items
                .map(|item| {
                    let mut found = Vec::new();
                    for (index, row) in item.chunks_exact(columns).enumerate() {
                        // Class probabilities are at most 1, so a row whose objectness does not
                        // pass cannot either: skipping it spares the argmax on most rows.
                        let objectness = row[4];
                        if !above(objectness, threshold) {
                            continue;
                        }
                        let Some((class_id, probability)) = argmax(&row[5..]) else {
                            continue;
                        };
                        let score = objectness * probability;
                        if !above(score, threshold) {
                            continue;
                        }
                        let bbox = match &grid {
                            Some(grid) => {
                                let (gx, gy, stride) = grid[index];
                                BBox::from_center(
                                    (row[0] + gx) * stride,
                                    (row[1] + gy) * stride,
                                    row[2].exp() * stride,
                                    row[3].exp() * stride,
                                )
                            }
                            None => BBox::from_center(row[0], row[1], row[2], row[3]),
                        };
                        found.push(Detection {
                            bbox,
                            class_id,
                            score,
                            landmarks: Vec::new(),
                        });
                    }
                    found
                })
                .collect())
        }
        DetectorFamily::Yolov8 => {
            let (channels, anchors) = (dims[1], dims[2]);
            if channels < 5 {
                return Err(error(format!(
                    "{channels} channels: expected 4 + at least one class"
                )));
            }
            Ok(items
                .map(|item| {
                    let at = |channel: usize, anchor: usize| item[channel * anchors + anchor];
                    let mut found = Vec::new();
                    for anchor in 0..anchors {
                        let mut best: Option<(usize, f32)> = None;
                        for class_id in 0..channels - 4 {
                            let score = at(4 + class_id, anchor);
                            if best.is_none_or(|(_, b)| score > b) {
                                best = Some((class_id, score));
                            }
                        }
                        let Some((class_id, score)) = best else {
                            continue;
                        };
                        if !above(score, threshold) {
                            continue;
                        }
                        found.push(Detection {
                            bbox: BBox::from_center(
                                at(0, anchor),
                                at(1, anchor),
                                at(2, anchor),
                                at(3, anchor),
                            ),
                            class_id,
                            score,
                            landmarks: Vec::new(),
                        });
                    }
                    found
                })
                .collect())
        }
    }
}

/// Greedy non-maximum suppression per class: strongest first, a box is dropped when it overlaps
/// a kept box of its class by `iou` or more. Boxes of different classes never suppress each
/// other (a person holding a cup keeps both). The result is sorted by score, ties in input order
/// (the sort is stable), so equal inputs give equal outputs; NaN scores are dropped.
pub fn nms(mut detections: Vec<Detection>, iou: f32) -> Vec<Detection> {
    detections.retain(|d| !d.score.is_nan());
    detections.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut kept: Vec<Detection> = Vec::with_capacity(detections.len());
    for detection in detections {
        let suppressed = kept
            .iter()
            .any(|k| k.class_id == detection.class_id && k.bbox.iou(&detection.bbox) >= iou);
        if !suppressed {
            kept.push(detection);
        }
    }
    kept
}

/// Whether a model with input batch dimension `batch` takes several images in one run:
/// a free (`-1`) batch does, a batch of 1 does not, any other fixed batch is not supported.
pub(crate) fn batch_is_free(batch: i64) -> Result<bool, String> {
    match batch {
        d if d < 0 => Ok(true),
        1 => Ok(false),
        d => Err(format!(
            "fixed batch {d}: only a free batch or a batch of 1 is supported"
        )),
    }
}

/// Runs a model on `count` images laid end to end in `tensor`, each of `item_shape` (batch 1):
/// in one run when `batched`, else one run per image. Each element of the result is one run's
/// outputs; its batch dimension says how many images it covers.
pub(crate) fn run_images(
    model: &Model,
    batched: bool,
    item_shape: [i64; 4],
    tensor: &[f32],
    count: usize,
) -> Result<Vec<Vec<Output>>, RuntimeError> {
    if count == 0 {
        return Ok(Vec::new());
    }
    if batched {
        let mut shape = item_shape;
        shape[0] = count as i64;
        return Ok(vec![model.run(&[Input {
            shape: &shape,
            data: tensor,
        }])?]);
    }
    let item_len = tensor.len() / count;
    tensor
        .chunks(item_len.max(1))
        .take(count)
        .map(|data| {
            model.run(&[Input {
                shape: &item_shape,
                data,
            }])
        })
        .collect()
}

/// A YOLO-family detector: one model session and how to feed and read it.
#[derive(Debug)]
pub struct Detector {
    model: Model,
    spec: DetectorSpec,
    /// Whether frames go through the model together (free batch dimension) or one by one.
    batched: bool,
}

impl Detector {
    /// Checks that the model's declared input is one image tensor of the spec's size and layout,
    /// and that its first output has the family's layout where the declared sizes say so.
    pub fn new(model: Model, spec: DetectorSpec) -> Result<Self, DetectError> {
        let error = |reason: String| DetectError::Model {
            model: model.name().to_string(),
            family: spec.family.name(),
            reason,
        };
        if spec.width == 0 || spec.height == 0 {
            return Err(error(format!(
                "input size {}x{} in the spec",
                spec.width, spec.height
            )));
        }
        if spec.family == DetectorFamily::Yolox
            && !(spec.width.is_multiple_of(32) && spec.height.is_multiple_of(32))
        {
            return Err(error(format!(
                "input size {}x{} is not a multiple of YOLOX's largest stride, 32",
                spec.width, spec.height
            )));
        }
        let input = match model.inputs() {
            [input] => input,
            inputs => {
                return Err(error(format!(
                    "{} inputs, a detector takes one image tensor",
                    inputs.len()
                )));
            }
        };
        let expected = spec.normalisation.shape(1, spec.width, spec.height);
        let fits = input.shape.len() == 4
            && input.shape[1..]
                .iter()
                .zip(&expected[1..])
                .all(|(&declared, &wanted)| declared < 0 || declared == wanted);
        if !fits {
            return Err(error(format!(
                "input {} is {:?}, the spec's size and layout make {:?}",
                input.name, input.shape, expected
            )));
        }
        let batched = batch_is_free(input.shape[0]).map_err(error)?;
        let output = model
            .outputs()
            .first()
            .ok_or_else(|| error("no outputs".into()))?;
        check_output_shape(spec.family, &output.shape, spec.width, spec.height).map_err(
            |reason| {
                error(format!(
                    "output {} {:?}: {reason}",
                    output.name, output.shape
                ))
            },
        )?;
        Ok(Self {
            model,
            spec,
            batched,
        })
    }

    pub fn spec(&self) -> &DetectorSpec {
        &self.spec
    }

    pub fn model(&self) -> &Model {
        &self.model
    }

    /// Detects objects in each frame; the result has one list per frame, in the frame's pixels,
    /// strongest first.
    pub fn detect(&self, frames: &[&RgbImage]) -> Result<Vec<Vec<Detection>>, DetectError> {
        self.detect_timed(frames).map(|(detections, _)| detections)
    }

    /// `detect`, also returning the time each stage took (the benchmark's breakdown).
    pub fn detect_timed(
        &self,
        frames: &[&RgbImage],
    ) -> Result<(Vec<Vec<Detection>>, StageTimes), DetectError> {
        let spec = &self.spec;
        let started = Instant::now();
        let item_len = 3 * spec.width as usize * spec.height as usize;
        let mut tensor = Vec::with_capacity(item_len * frames.len());
        let scales: Vec<f32> = frames
            .iter()
            .map(|frame| {
                let boxed = preprocess::letterbox(frame, spec.width, spec.height, spec.pad);
                spec.normalisation.append(&boxed.image, &mut tensor);
                boxed.scale
            })
            .collect();
        let preprocessed = Instant::now();

        let item_shape = spec.normalisation.shape(1, spec.width, spec.height);
        let runs = run_images(&self.model, self.batched, item_shape, &tensor, frames.len())?;
        let inferred = Instant::now();

        let mut decoded = Vec::with_capacity(frames.len());
        for outputs in &runs {
            let output = outputs.first().ok_or_else(|| DetectError::Output {
                family: spec.family.name(),
                shape: Vec::new(),
                reason: "the model returned no output".into(),
            })?;
            decoded.extend(decode(spec, &output.data, &output.shape)?);
        }
        if decoded.len() != frames.len() {
            return Err(DetectError::Output {
                family: spec.family.name(),
                shape: runs
                    .first()
                    .and_then(|o| o.first())
                    .map(|o| o.shape.clone())
                    .unwrap_or_default(),
                reason: format!("{} results for {} frames", decoded.len(), frames.len()),
            });
        }
        let detections = decoded
            .into_iter()
            .zip(frames.iter().zip(&scales))
            .map(|(found, (frame, &scale))| {
                let (width, height) = frame.dimensions();
                let mut kept = nms(found, spec.nms_iou);
                for detection in &mut kept {
                    detection.bbox = detection.bbox.unscale(scale, width, height);
                }
                kept
            })
            .collect();
        let done = Instant::now();
        Ok((
            detections,
            StageTimes {
                preprocess: preprocessed - started,
                inference: inferred - preprocessed,
                postprocess: done - inferred,
            },
        ))
    }
}

/// Checks a declared output shape (`-1` for free sizes) against the family's layout. The
/// number of candidate boxes always exceeds the number of classes at a usable input size, which
/// tells `[B, N, 5+C]` from `[B, 4+C, N]` even when the class count is unknown.
fn check_output_shape(
    family: DetectorFamily,
    shape: &[i64],
    width: u32,
    height: u32,
) -> Result<(), String> {
    let &[_, a, b] = shape else {
        return Err("expected 3 dimensions".into());
    };
    let known = |d: i64| (d >= 0).then_some(d);
    match family {
        DetectorFamily::Yolox | DetectorFamily::Yolov5 => {
            if known(b).is_some_and(|columns| columns < 6) {
                return Err("expected [batch, boxes, 5 + classes]".into());
            }
            if let (Some(rows), Some(columns)) = (known(a), known(b))
                && rows <= columns
            {
                return Err("looks like [batch, 4 + classes, boxes]: a YOLOv8 model?".into());
            }
            if family == DetectorFamily::Yolox {
                let cells = yolox_grid(width, height).len() as i64;
                if known(a).is_some_and(|rows| rows != cells) {
                    return Err(format!(
                        "the stride 8/16/32 grids of {width}x{height} have {cells} rows"
                    ));
                }
            }
        }
        DetectorFamily::Yolov8 => {
            if known(a).is_some_and(|channels| channels < 5) {
                return Err("expected [batch, 4 + classes, boxes]".into());
            }
            if let (Some(channels), Some(anchors)) = (known(a), known(b))
                && channels >= anchors
            {
                return Err(
                    "looks like [batch, boxes, 5 + classes]: a YOLOv5 or YOLOX model?".into(),
                );
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(family: DetectorFamily) -> DetectorSpec {
        DetectorSpec {
            family,
            width: 64,
            height: 32,
            normalisation: Normalisation::default(),
            pad: [114; 3],
            score_threshold: 0.3,
            nms_iou: 0.45,
        }
    }

    fn detection(class_id: usize, score: f32, x0: f32, y0: f32, x1: f32, y1: f32) -> Detection {
        Detection {
            bbox: BBox { x0, y0, x1, y1 },
            class_id,
            score,
            landmarks: Vec::new(),
        }
    }

    fn assert_box(bbox: &BBox, expected: [f32; 4]) {
        let got = [bbox.x0, bbox.y0, bbox.x1, bbox.y1];
        assert!(
            got.iter().zip(&expected).all(|(g, e)| (g - e).abs() < 1e-4),
            "{got:?} != {expected:?}"
        );
    }

    #[test]
    fn yolov5_rows_score_objectness_times_the_best_class() {
        // Two images of three rows, two classes: cx, cy, w, h, objectness, p0, p1.
        #[rustfmt::skip]
        let output = [
            10.0, 20.0, 4.0, 6.0, 0.9, 0.2, 0.8, // class 1, 0.72
            30.0, 10.0, 2.0, 2.0, 0.2, 1.0, 0.0, // objectness too low
            5.0, 5.0, 2.0, 2.0, 0.5, 0.5, 0.5,   // 0.25: under the threshold
            1.0, 2.0, 2.0, 2.0, 0.6, 0.9, 0.1,   // image 2: class 0, 0.54
            0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0,
            0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0,
        ];
        let decoded = decode(&spec(DetectorFamily::Yolov5), &output, &[2, 3, 7]).unwrap();
        assert_eq!(decoded.len(), 2);
        assert_eq!(decoded[0].len(), 1);
        assert_eq!(decoded[0][0].class_id, 1);
        assert!((decoded[0][0].score - 0.72).abs() < 1e-6);
        assert_box(&decoded[0][0].bbox, [8.0, 17.0, 12.0, 23.0]);
        assert_eq!(decoded[1].len(), 1);
        assert_eq!(decoded[1][0].class_id, 0);
        assert_box(&decoded[1][0].bbox, [0.0, 1.0, 2.0, 3.0]);
    }

    #[test]
    fn yolov8_reads_channel_major_scores_without_objectness() {
        // [1, 4 + 2, 3]: channel c of anchor i at c * 3 + i.
        #[rustfmt::skip]
        let output = [
            10.0, 50.0, 0.0, // cx
            20.0, 60.0, 0.0, // cy
            4.0, 10.0, 0.0,  // w
            6.0, 20.0, 0.0,  // h
            0.1, 0.95, 0.2,  // class 0
            0.6, 0.05, 0.1,  // class 1
        ];
        let decoded = decode(&spec(DetectorFamily::Yolov8), &output, &[1, 6, 3]).unwrap();
        let found = &decoded[0];
        assert_eq!(found.len(), 2);
        assert_eq!((found[0].class_id, found[0].score), (1, 0.6));
        assert_box(&found[0].bbox, [8.0, 17.0, 12.0, 23.0]);
        assert_eq!((found[1].class_id, found[1].score), (0, 0.95));
        assert_box(&found[1].bbox, [45.0, 50.0, 55.0, 70.0]);
    }

    #[test]
    fn yolox_rows_are_cells_of_the_stride_8_16_32_grids() {
        // 64x32: 8x4 cells at stride 8, 4x2 at 16, 2x1 at 32 = 42 rows of 5 + 1 class.
        let spec = spec(DetectorFamily::Yolox);
        let mut output = vec![0.0; 42 * 6];
        // Row 9: stride 8, cell (1, 1); offset (0.5, 0.5), size e^0 = one cell.
        output[9 * 6..10 * 6].copy_from_slice(&[0.5, 0.5, 0.0, 0.0, 0.9, 0.9]);
        // Row 41: stride 32, cell (1, 0); size e^1 cells.
        output[41 * 6..42 * 6].copy_from_slice(&[0.0, 0.0, 1.0, 1.0, 0.8, 1.0]);
        let decoded = decode(&spec, &output, &[1, 42, 6]).unwrap();
        let found = &decoded[0];
        assert_eq!(found.len(), 2);
        assert_box(&found[0].bbox, [8.0, 8.0, 16.0, 16.0]);
        let half = std::f32::consts::E * 16.0;
        assert_box(&found[1].bbox, [32.0 - half, -half, 32.0 + half, half]);
        assert!((found[1].score - 0.8).abs() < 1e-6);

        let wrong_grid = decode(&spec, &output[..41 * 6], &[1, 41, 6]).unwrap_err();
        assert!(wrong_grid.to_string().contains("have 42"), "{wrong_grid}");
    }

    #[test]
    fn malformed_outputs_are_errors_not_panics() {
        let yolov5 = spec(DetectorFamily::Yolov5);
        let data = vec![0.5; 12];
        for shape in [
            &[1, 2, 6][..], // holds 12 values but...
            &[2, 2, 6],     // ...this needs 24
            &[1, 12],       // rank 2
            &[1, -2, -6],   // negative sizes
            &[1, 0, 12],    // empty
            &[1, 12, 1],    // too few columns
            &[1, 1 << 40, 1 << 40],
        ] {
            let result = decode(&yolov5, &data, shape);
            if shape == [1, 2, 6] {
                assert!(result.is_ok());
            } else {
                assert!(
                    matches!(result, Err(DetectError::Output { .. })),
                    "{shape:?}"
                );
            }
        }
        let yolov8 = spec(DetectorFamily::Yolov8);
        assert!(decode(&yolov8, &data, &[1, 4, 3]).is_err());
        assert!(decode(&yolov8, &[], &[]).is_err());
    }

    #[test]
    fn nms_suppresses_overlaps_within_a_class_only() {
        let detections = vec![
            detection(0, 0.6, 1.0, 1.0, 11.0, 11.0), // overlaps the 0.9 person: dropped
            detection(0, 0.9, 0.0, 0.0, 10.0, 10.0),
            detection(41, 0.5, 0.0, 0.0, 10.0, 10.0), // a cup on the person: kept
            detection(0, 0.7, 20.0, 20.0, 30.0, 30.0), // another person apart: kept
            detection(0, f32::NAN, 0.0, 0.0, 1.0, 1.0),
        ];
        let kept = nms(detections, 0.45);
        let summary: Vec<(usize, f32)> = kept.iter().map(|d| (d.class_id, d.score)).collect();
        assert_eq!(summary, [(0, 0.9), (0, 0.7), (41, 0.5)]);

        // Half overlap (IoU 1/3) survives 0.45 but not 0.3.
        let pair = vec![
            detection(0, 0.9, 0.0, 0.0, 10.0, 10.0),
            detection(0, 0.8, 5.0, 0.0, 15.0, 10.0),
        ];
        assert_eq!(nms(pair.clone(), 0.45).len(), 2);
        assert_eq!(nms(pair, 0.3).len(), 1);
    }

    #[test]
    fn nms_keeps_input_order_on_equal_scores() {
        let a = detection(0, 0.5, 0.0, 0.0, 10.0, 10.0);
        let b = detection(0, 0.5, 1.0, 0.0, 11.0, 10.0);
        assert_eq!(
            nms(vec![a.clone(), b.clone()], 0.5),
            std::slice::from_ref(&a)
        );
        assert_eq!(nms(vec![b.clone(), a], 0.5), [b]);
    }

    #[test]
    fn declared_output_shapes_tell_the_layouts_apart() {
        let yolox_out = [1, 3549, 85];
        assert!(check_output_shape(DetectorFamily::Yolox, &yolox_out, 416, 416).is_ok());
        assert!(check_output_shape(DetectorFamily::Yolox, &yolox_out, 640, 640).is_err());
        assert!(check_output_shape(DetectorFamily::Yolov5, &[-1, -1, 85], 640, 640).is_ok());
        assert!(check_output_shape(DetectorFamily::Yolov8, &yolox_out, 416, 416).is_err());
        assert!(check_output_shape(DetectorFamily::Yolov8, &[1, 84, 8400], 640, 640).is_ok());
        assert!(check_output_shape(DetectorFamily::Yolov5, &[1, 84, 8400], 640, 640).is_err());
        assert!(check_output_shape(DetectorFamily::Yolov8, &[1, 8400], 640, 640).is_err());
    }

    #[test]
    fn families_serialise_lowercase() {
        let family: DetectorFamily = serde_json::from_str("\"yolov8\"").unwrap();
        assert_eq!(family, DetectorFamily::Yolov8);
        assert_eq!(
            serde_json::to_string(&DetectorFamily::Yolox).unwrap(),
            "\"yolox\""
        );
    }
}
