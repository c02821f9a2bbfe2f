//! Faces: detection (BlazeFace for close range, CenterFace for full frames), alignment onto the
//! usual 112×112 template, and the MobileFaceNet descriptor that compares faces.
//!
//! A face is a `geometry::Detection` of class 0 whose landmarks are the detector's keypoints, so
//! faces flow through the same NMS, overlays and events as objects. The decoders are plain
//! functions over `runtime::Output`s, testable on synthetic tensors; the layouts and formulas are
//! those of `shared/models.md` §2a, §2b and §3.

use image::{Rgb, RgbImage};
use serde::{Deserialize, Serialize};

use crate::detect::{above, batch_is_free, nms, run_images, tensor_dims};
use crate::geometry::{BBox, Detection, Point};
use crate::preprocess::{self, ChannelOrder, Layout, Normalisation};
use crate::runtime::{Input, Model, Output, RuntimeError, TensorInfo};

/// Which face detector a model is: they differ in input and in every output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FaceFamily {
    /// MediaPipe BlazeFace front camera: 128×128 NHWC in [-1, 1], 896 anchors, 6 keypoints
    /// (eyes, nose tip, mouth centre, ears). Fast, but only for faces filling much of the frame.
    Blazeface,
    /// CenterFace: any input size in multiples of 32, raw RGB, a stride-4 heatmap, 5 landmarks
    /// (eyes, nose, mouth corners). Finds the small faces of CCTV frames.
    Centerface,
}

impl FaceFamily {
    pub fn name(self) -> &'static str {
        match self {
            FaceFamily::Blazeface => "blazeface",
            FaceFamily::Centerface => "centerface",
        }
    }
}

/// How a face detector is fed and read: what its manifest says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaceSpec {
    pub family: FaceFamily,
    /// Model input size: 128×128 for BlazeFace; for CenterFace the size frames are letterboxed
    /// into (multiples of 32), which bounds the time a frame costs whatever its resolution.
    pub width: u32,
    pub height: u32,
    /// Faces scoring at or below this are dropped.
    pub score_threshold: f32,
    /// Of two overlapping faces the weaker is dropped at this IoU or above (0.3 for both).
    pub nms_iou: f32,
}

#[derive(Debug, thiserror::Error)]
pub enum FaceError {
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// The model's declared inputs or outputs are not those of what it was loaded as.
    #[error("model {model} does not fit {what}: {reason}")]
    Model {
        model: String,
        what: &'static str,
        reason: String,
    },
    /// An output tensor the decoder cannot read.
    #[error("output {name} of shape {shape:?}: {reason}")]
    Output {
        name: String,
        shape: Vec<i64>,
        reason: String,
    },
    /// Landmarks or face crops the caller gave that cannot be used.
    #[error("{0}")]
    Input(String),
}

/// BlazeFace's input side; its anchors are laid out for it.
const BLAZEFACE_SIZE: u32 = 128;
/// BlazeFace's anchor grids: (cells per side, anchors per cell), in output order.
const BLAZEFACE_GRIDS: [(usize, usize); 2] = [(16, 2), (8, 6)];
/// Regressor values per anchor: box centre and size, then six (x, y) keypoints.
const BLAZEFACE_REGRESSORS: usize = 16;
const BLAZEFACE_KEYPOINTS: usize = 6;
/// CenterFace's output stride.
const CENTERFACE_STRIDE: f32 = 4.0;
/// CenterFace's outputs in declared order: heatmap, log size, offset, landmarks; their channels.
const CENTERFACE_CHANNELS: [usize; 4] = [1, 2, 2, 10];

/// The side of an aligned face crop, as the embedder takes it.
pub const ALIGNED_SIZE: u32 = 112;

/// Where the eyes (image left, image right), nose tip and mouth corners (image left, image
/// right) go in a 112×112 aligned crop: the ArcFace template MobileFaceNet was trained with.
pub const TEMPLATE: [Point; 5] = [
    Point {
        x: 38.2946,
        y: 51.6963,
    },
    Point {
        x: 73.5318,
        y: 51.5014,
    },
    Point {
        x: 56.0252,
        y: 71.7366,
    },
    Point {
        x: 41.5493,
        y: 92.3655,
    },
    Point {
        x: 70.7299,
        y: 92.2041,
    },
];

/// One output's data checked against `shape_wanted` (the sizes `Some` fixes), of rank
/// `shape_wanted.len()`.
fn output_dims(output: &Output, shape_wanted: &[Option<usize>]) -> Result<Vec<usize>, FaceError> {
    let error = |reason: String| FaceError::Output {
        name: output.name.clone(),
        shape: output.shape.clone(),
        reason,
    };
    let dims = tensor_dims(&output.shape, shape_wanted.len(), output.data.len()).map_err(error)?;
    for (axis, (&got, wanted)) in dims.iter().zip(shape_wanted).enumerate() {
        if let Some(wanted) = wanted
            && got != *wanted
        {
            return Err(error(format!("axis {axis} is {got}, expected {wanted}")));
        }
    }
    Ok(dims)
}

/// Whether a declared shape (`-1` free) can be `wanted`.
fn declared_fits(declared: &[i64], wanted: &[i64]) -> bool {
    declared.len() == wanted.len()
        && declared
            .iter()
            .zip(wanted)
            .all(|(&d, &w)| d < 0 || w < 0 || d == w)
}

/// Index of BlazeFace's outputs: scores of the 16 and 8 grids, then their regressors. Found by
/// shape, not by position: converters do not agree on the order of outputs.
fn blazeface_outputs(shapes: &[&[i64]]) -> Result<[usize; 4], String> {
    let rows = BLAZEFACE_GRIDS.map(|(cells, per_cell)| (cells * cells * per_cell) as i64);
    let wanted = [
        [-1, rows[0], 1],
        [-1, rows[1], 1],
        [-1, rows[0], BLAZEFACE_REGRESSORS as i64],
        [-1, rows[1], BLAZEFACE_REGRESSORS as i64],
    ];
    let mut found = [0; 4];
    for (slot, wanted) in found.iter_mut().zip(&wanted) {
        *slot = shapes
            .iter()
            .position(|shape| declared_fits(shape, wanted))
            .ok_or_else(|| format!("no output of shape {wanted:?}"))?;
    }
    Ok(found)
}

/// The 896 BlazeFace anchor centres in input pixels, in output order: cells row-major, the
/// anchors of a cell consecutive.
fn blazeface_anchors() -> Vec<Point> {
    let side = BLAZEFACE_SIZE as f32;
    let mut anchors = Vec::with_capacity(896);
    for (cells, per_cell) in BLAZEFACE_GRIDS {
        for y in 0..cells {
            for x in 0..cells {
                let centre = Point {
                    x: (x as f32 + 0.5) / cells as f32 * side,
                    y: (y as f32 + 0.5) / cells as f32 * side,
                };
                anchors.extend(std::iter::repeat_n(centre, per_cell));
            }
        }
    }
    anchors
}

/// Decodes BlazeFace's four outputs into faces in input pixels (of the 128×128 square), before
/// NMS. The regressors are offsets in input pixels from the anchor centre (the anchors all have
/// size 1, i.e. the whole input, so the model's `/128` and `·128` cancel).
pub fn decode_blazeface(outputs: &[Output], threshold: f32) -> Result<Vec<Detection>, FaceError> {
    let shapes: Vec<&[i64]> = outputs.iter().map(|o| o.shape.as_slice()).collect();
    let index = blazeface_outputs(&shapes).map_err(|reason| FaceError::Output {
        name: "blazeface".into(),
        shape: Vec::new(),
        reason: format!("{reason} among {shapes:?}"),
    })?;
    let mut scores = Vec::with_capacity(896);
    let mut regressors = Vec::with_capacity(896 * BLAZEFACE_REGRESSORS);
    for (grid, &(cells, per_cell)) in BLAZEFACE_GRIDS.iter().enumerate() {
        let rows = cells * cells * per_cell;
        let score = &outputs[index[grid]];
        output_dims(score, &[Some(1), Some(rows), Some(1)])?;
        scores.extend_from_slice(&score.data);
        let regressor = &outputs[index[2 + grid]];
        output_dims(
            regressor,
            &[Some(1), Some(rows), Some(BLAZEFACE_REGRESSORS)],
        )?;
        regressors.extend_from_slice(&regressor.data);
    }
    let anchors = blazeface_anchors();
    let mut faces = Vec::new();
    for ((logit, r), anchor) in scores
        .iter()
        .zip(regressors.chunks_exact(BLAZEFACE_REGRESSORS))
        .zip(&anchors)
    {
        let score = 1.0 / (1.0 + (-logit).exp());
        if !above(score, threshold) {
            continue;
        }
        let landmarks = (0..BLAZEFACE_KEYPOINTS)
            .map(|k| Point {
                x: anchor.x + r[4 + 2 * k],
                y: anchor.y + r[5 + 2 * k],
            })
            .collect();
        faces.push(Detection {
            bbox: BBox::from_center(anchor.x + r[0], anchor.y + r[1], r[2], r[3]),
            class_id: 0,
            score,
            landmarks,
        });
    }
    Ok(faces)
}

/// Decodes CenterFace's four outputs (heatmap, log size, offset, landmarks; batch 1) into faces
/// in input pixels, before NMS: every cell whose heat passes `threshold` is a face centre.
pub fn decode_centerface(outputs: &[Output], threshold: f32) -> Result<Vec<Detection>, FaceError> {
    let [heat, size, offset, points] = outputs else {
        return Err(FaceError::Output {
            name: "centerface".into(),
            shape: Vec::new(),
            reason: format!("{} outputs, expected 4", outputs.len()),
        });
    };
    let dims = output_dims(heat, &[Some(1), Some(1), None, None])?;
    let (rows, columns) = (dims[2], dims[3]);
    for (output, channels) in [size, offset, points]
        .into_iter()
        .zip(&CENTERFACE_CHANNELS[1..])
    {
        output_dims(
            output,
            &[Some(1), Some(*channels), Some(rows), Some(columns)],
        )?;
    }
    let plane = rows * columns;
    let mut faces = Vec::new();
    for (cell, &score) in heat.data.iter().enumerate() {
        if !above(score, threshold) {
            continue;
        }
        let (i, j) = ((cell / columns) as f32, (cell % columns) as f32);
        let at = |output: &Output, channel: usize| output.data[channel * plane + cell];
        let height = at(size, 0).exp() * CENTERFACE_STRIDE;
        let width = at(size, 1).exp() * CENTERFACE_STRIDE;
        let cx = (j + at(offset, 1) + 0.5) * CENTERFACE_STRIDE;
        let cy = (i + at(offset, 0) + 0.5) * CENTERFACE_STRIDE;
        let bbox = BBox::from_center(cx, cy, width, height);
        let landmarks = (0..5)
            .map(|k| Point {
                x: bbox.x0 + at(points, 2 * k + 1) * width,
                y: bbox.y0 + at(points, 2 * k) * height,
            })
            .collect();
        faces.push(Detection {
            bbox,
            class_id: 0,
            score,
            landmarks,
        });
    }
    Ok(faces)
}

/// A face detector: one model session and how to feed and read it.
#[derive(Debug)]
pub struct FaceDetector {
    model: Model,
    spec: FaceSpec,
}

impl FaceDetector {
    /// Checks that the model's declared input and outputs are the family's, at the spec's size.
    pub fn new(model: Model, spec: FaceSpec) -> Result<Self, FaceError> {
        let error = |reason: String| FaceError::Model {
            model: model.name().to_string(),
            what: spec.family.name(),
            reason,
        };
        let input = match model.inputs() {
            [input] => input,
            inputs => return Err(error(format!("{} inputs, expected one", inputs.len()))),
        };
        let (width, height) = (spec.width as i64, spec.height as i64);
        let wanted: [i64; 4] = match spec.family {
            FaceFamily::Blazeface => {
                if (spec.width, spec.height) != (BLAZEFACE_SIZE, BLAZEFACE_SIZE) {
                    return Err(error(format!(
                        "its anchors are laid out for 128x128, the spec says {}x{}",
                        spec.width, spec.height
                    )));
                }
                [-1, height, width, 3]
            }
            FaceFamily::Centerface => {
                if spec.width == 0
                    || spec.height == 0
                    || !spec.width.is_multiple_of(32)
                    || !spec.height.is_multiple_of(32)
                {
                    return Err(error(format!(
                        "input {}x{} in the spec is not in multiples of 32",
                        spec.width, spec.height
                    )));
                }
                [-1, 3, height, width]
            }
        };
        if !declared_fits(&input.shape, &wanted) {
            return Err(error(format!(
                "input {} is {:?}, expected {wanted:?}",
                input.name, input.shape
            )));
        }
        batch_is_free(input.shape[0]).map_err(error)?;
        let outputs = model.outputs();
        match spec.family {
            FaceFamily::Blazeface => {
                let shapes: Vec<&[i64]> = outputs.iter().map(|o| o.shape.as_slice()).collect();
                blazeface_outputs(&shapes).map_err(error)?;
            }
            FaceFamily::Centerface => {
                let fits = outputs.len() == 4
                    && outputs
                        .iter()
                        .zip(CENTERFACE_CHANNELS)
                        .all(|(o, c)| declared_fits(&o.shape, &[-1, c as i64, -1, -1]));
                if !fits {
                    let shapes: Vec<&TensorInfo> = outputs.iter().collect();
                    return Err(error(format!(
                        "outputs {shapes:?}: expected heatmap, size, offset and landmarks with \
                         1, 2, 2 and 10 channels"
                    )));
                }
            }
        }
        Ok(Self { model, spec })
    }

    pub fn spec(&self) -> &FaceSpec {
        &self.spec
    }

    pub fn model(&self) -> &Model {
        &self.model
    }

    /// The faces in `frame`, in its pixels, strongest first, each with the family's landmarks.
    pub fn detect(&self, frame: &RgbImage) -> Result<Vec<Detection>, FaceError> {
        let spec = &self.spec;
        // Letterboxing with black right/bottom margins is the square pad BlazeFace expects and
        // the multiple-of-32 pad CenterFace needs; the kept aspect keeps faces undistorted.
        let boxed = preprocess::letterbox(frame, spec.width, spec.height, [0; 3]);
        let normalisation = match spec.family {
            FaceFamily::Blazeface => Normalisation {
                channels: ChannelOrder::Rgb,
                layout: Layout::Nhwc,
                mean: [127.5; 3],
                std: [127.5; 3],
            },
            FaceFamily::Centerface => Normalisation::default(),
        };
        let mut tensor = Vec::new();
        normalisation.append(&boxed.image, &mut tensor);
        let shape = normalisation.shape(1, spec.width, spec.height);
        let outputs = self.model.run(&[Input {
            shape: &shape,
            data: &tensor,
        }])?;
        let faces = match spec.family {
            FaceFamily::Blazeface => decode_blazeface(&outputs, spec.score_threshold)?,
            FaceFamily::Centerface => decode_centerface(&outputs, spec.score_threshold)?,
        };
        let (width, height) = frame.dimensions();
        let mut faces = nms(faces, spec.nms_iou);
        for face in &mut faces {
            face.bbox = face.bbox.unscale(boxed.scale, width, height);
            // Not clamped: a face cut by the frame edge still aligns by where its eyes would be.
            for point in &mut face.landmarks {
                point.x /= boxed.scale;
                point.y /= boxed.scale;
            }
        }
        Ok(faces)
    }
}

/// A 2-D similarity transform (rotation, uniform scale, translation):
/// `x' = a·x − b·y + tx`, `y' = b·x + a·y + ty`, i.e. scale `√(a²+b²)`, angle `atan2(b, a)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Similarity {
    pub a: f32,
    pub b: f32,
    pub tx: f32,
    pub ty: f32,
}

impl Similarity {
    pub fn apply(&self, p: Point) -> Point {
        Point {
            x: self.a * p.x - self.b * p.y + self.tx,
            y: self.b * p.x + self.a * p.y + self.ty,
        }
    }

    pub fn scale(&self) -> f32 {
        self.a.hypot(self.b)
    }

    /// Rotation in radians, counter-clockwise in x-right/y-up terms (clockwise on screen).
    pub fn angle(&self) -> f32 {
        self.b.atan2(self.a)
    }

    /// The inverse transform; `None` when the scale is zero.
    pub fn inverse(&self) -> Option<Similarity> {
        let det = self.a * self.a + self.b * self.b;
        if !det.is_finite() || det <= 0.0 {
            return None;
        }
        let (a, b) = (self.a / det, -self.b / det);
        Some(Similarity {
            a,
            b,
            tx: -(a * self.tx - b * self.ty),
            ty: -(b * self.tx + a * self.ty),
        })
    }
}

/// The similarity transform taking `from` closest to `to` in least squares (Umeyama's method,
/// which in 2-D reduces to a linear fit of `a` and `b` on the centred points; no reflection).
/// `None` with fewer than two pairs, unequal lengths, coincident or non-finite points.
pub fn similarity(from: &[Point], to: &[Point]) -> Option<Similarity> {
    if from.len() != to.len() || from.len() < 2 {
        return None;
    }
    let n = from.len() as f64;
    let mean = |points: &[Point]| {
        let (sx, sy) = points.iter().fold((0.0, 0.0), |(sx, sy), p| {
            (sx + f64::from(p.x), sy + f64::from(p.y))
        });
        (sx / n, sy / n)
    };
    let (fx, fy) = mean(from);
    let (tx, ty) = mean(to);
    let (mut variance, mut dot, mut cross) = (0.0, 0.0, 0.0);
    for (f, t) in from.iter().zip(to) {
        let (sx, sy) = (f64::from(f.x) - fx, f64::from(f.y) - fy);
        let (dx, dy) = (f64::from(t.x) - tx, f64::from(t.y) - ty);
        variance += sx * sx + sy * sy;
        dot += sx * dx + sy * dy;
        cross += sx * dy - sy * dx;
    }
    if !variance.is_finite() || variance <= 1e-12 {
        return None;
    }
    let (a, b) = (dot / variance, cross / variance);
    let transform = Similarity {
        a: a as f32,
        b: b as f32,
        tx: (tx - (a * fx - b * fy)) as f32,
        ty: (ty - (b * fx + a * fy)) as f32,
    };
    [transform.a, transform.b, transform.tx, transform.ty]
        .iter()
        .all(|v| v.is_finite())
        .then_some(transform)
}

/// The aligned 112×112 crop of the face whose detector landmarks are `landmarks`: CenterFace's
/// 5 points map onto `TEMPLATE`; of BlazeFace's 6, the eyes, nose and mouth centre map onto the
/// template's eyes, nose and the midpoint of its mouth corners (the ears have no template point).
pub fn align(frame: &RgbImage, landmarks: &[Point]) -> Result<RgbImage, FaceError> {
    let [left_eye, right_eye, nose, mouth_left, mouth_right] = TEMPLATE;
    let (from, to) = match landmarks.len() {
        5 => (landmarks, TEMPLATE.to_vec()),
        6 => {
            let mouth = Point {
                x: (mouth_left.x + mouth_right.x) / 2.0,
                y: (mouth_left.y + mouth_right.y) / 2.0,
            };
            (&landmarks[..4], vec![left_eye, right_eye, nose, mouth])
        }
        n => {
            return Err(FaceError::Input(format!(
                "{n} landmarks: alignment takes CenterFace's 5 or BlazeFace's 6"
            )));
        }
    };
    let to_frame = similarity(from, &to)
        .and_then(|to_template| to_template.inverse())
        .ok_or_else(|| FaceError::Input(format!("landmarks {landmarks:?} span no face")))?;
    Ok(warp(frame, &to_frame, ALIGNED_SIZE))
}

/// A `size`×`size` image whose pixel centre `(u+½, v+½)` samples `frame` at `to_frame` of it,
/// bilinearly (pixel centres at half-integers on both sides, as the landmarks are); outside the
/// frame is black.
fn warp(frame: &RgbImage, to_frame: &Similarity, size: u32) -> RgbImage {
    RgbImage::from_fn(size, size, |u, v| {
        let p = to_frame.apply(Point {
            x: u as f32 + 0.5,
            y: v as f32 + 0.5,
        });
        sample_bilinear(frame, p.x - 0.5, p.y - 0.5)
    })
}

/// `image` at the fractional pixel index `(x, y)`, neighbours outside it counting as black.
fn sample_bilinear(image: &RgbImage, x: f32, y: f32) -> Rgb<u8> {
    let (width, height) = (image.width() as f32, image.height() as f32);
    let inside = x > -1.0 && y > -1.0 && x < width && y < height;
    if !inside {
        return Rgb([0; 3]);
    }
    let (x0, y0) = (x.floor(), y.floor());
    let (fx, fy) = (x - x0, y - y0);
    let pixel = |px: f32, py: f32| -> [f32; 3] {
        if px < 0.0 || py < 0.0 || px >= width || py >= height {
            [0.0; 3]
        } else {
            image.get_pixel(px as u32, py as u32).0.map(f32::from)
        }
    };
    let (p00, p10) = (pixel(x0, y0), pixel(x0 + 1.0, y0));
    let (p01, p11) = (pixel(x0, y0 + 1.0), pixel(x0 + 1.0, y0 + 1.0));
    Rgb(std::array::from_fn(|c| {
        let top = p00[c] + (p10[c] - p00[c]) * fx;
        let bottom = p01[c] + (p11[c] - p01[c]) * fx;
        (top + (bottom - top) * fy).round().clamp(0.0, 255.0) as u8
    }))
}

/// Cosine similarity of two embeddings (their dot product, as `embed` normalises them): about 1
/// for the same face, about 0 for strangers.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// A face descriptor model (MobileFaceNet): aligned 112×112 RGB crops in, one unit vector each.
#[derive(Debug)]
pub struct FaceEmbedder {
    model: Model,
    /// Whether crops go through the model together (free batch dimension) or one by one.
    batched: bool,
}

impl FaceEmbedder {
    /// Checks that the model takes `[N, 3, 112, 112]` and returns `[N, D]`.
    pub fn new(model: Model) -> Result<Self, FaceError> {
        let error = |reason: String| FaceError::Model {
            model: model.name().to_string(),
            what: "a face embedder",
            reason,
        };
        let size = ALIGNED_SIZE as i64;
        let batched = match model.inputs() {
            [input] if declared_fits(&input.shape, &[-1, 3, size, size]) => {
                batch_is_free(input.shape[0]).map_err(error)?
            }
            inputs => {
                return Err(error(format!(
                    "inputs {inputs:?}, expected one [N, 3, 112, 112]"
                )));
            }
        };
        match model.outputs().first() {
            Some(output) if declared_fits(&output.shape, &[-1, -1]) => {}
            output => return Err(error(format!("output {output:?}, expected [N, D]"))),
        }
        Ok(Self { model, batched })
    }

    pub fn model(&self) -> &Model {
        &self.model
    }

    /// One L2-normalised embedding per aligned crop (see `align`), in order; the crops run as
    /// one batch when the model allows it.
    pub fn embed(&self, faces: &[RgbImage]) -> Result<Vec<Vec<f32>>, FaceError> {
        if let Some(face) = faces
            .iter()
            .find(|f| f.dimensions() != (ALIGNED_SIZE, ALIGNED_SIZE))
        {
            return Err(FaceError::Input(format!(
                "a {}x{} face crop: the embedder takes 112x112 aligned crops",
                face.width(),
                face.height()
            )));
        }
        let normalisation = Normalisation {
            channels: ChannelOrder::Rgb,
            layout: Layout::Nchw,
            mean: [127.5; 3],
            std: [128.0; 3],
        };
        let mut tensor = Vec::with_capacity(faces.len() * 3 * 112 * 112);
        for face in faces {
            normalisation.append(face, &mut tensor);
        }
        let shape = normalisation.shape(1, ALIGNED_SIZE, ALIGNED_SIZE);
        let runs = run_images(&self.model, self.batched, shape, &tensor, faces.len())?;
        let mut embeddings = Vec::with_capacity(faces.len());
        for outputs in &runs {
            let output = outputs.first().ok_or_else(|| FaceError::Output {
                name: self.model.name().to_string(),
                shape: Vec::new(),
                reason: "no output".into(),
            })?;
            let dims = output_dims(output, &[None, None])?;
            for row in output.data.chunks_exact(dims[1]) {
                let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt();
                // A zero vector stays zero: its cosine with anything is 0, "no match".
                let scale = if norm > 0.0 { 1.0 / norm } else { 0.0 };
                embeddings.push(row.iter().map(|v| v * scale).collect());
            }
        }
        if embeddings.len() != faces.len() {
            return Err(FaceError::Output {
                name: self.model.name().to_string(),
                shape: Vec::new(),
                reason: format!("{} embeddings for {} faces", embeddings.len(), faces.len()),
            });
        }
        Ok(embeddings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn output(name: &str, shape: &[i64], data: Vec<f32>) -> Output {
        Output {
            name: name.into(),
            shape: shape.to_vec(),
            data,
        }
    }

    #[test]
    fn similarity_recovers_a_known_rotation_scale_and_translation() {
        let (scale, angle, tx, ty) = (1.7f32, 0.4f32, 12.5f32, -30.0f32);
        let known = Similarity {
            a: scale * angle.cos(),
            b: scale * angle.sin(),
            tx,
            ty,
        };
        let from: Vec<Point> = TEMPLATE.to_vec();
        let to: Vec<Point> = from.iter().map(|&p| known.apply(p)).collect();
        let fitted = similarity(&from, &to).unwrap();
        assert!((fitted.scale() - scale).abs() < 1e-4, "{fitted:?}");
        assert!((fitted.angle() - angle).abs() < 1e-5, "{fitted:?}");
        assert!((fitted.tx - tx).abs() < 1e-3 && (fitted.ty - ty).abs() < 1e-3);

        let back = fitted.inverse().unwrap();
        for (p, q) in from.iter().zip(&to) {
            let r = back.apply(*q);
            assert!((r.x - p.x).abs() < 1e-3 && (r.y - p.y).abs() < 1e-3);
        }
    }

    #[test]
    fn similarity_is_the_least_squares_fit_of_noisy_points() {
        // Two opposite corners of a square pushed outwards by 20%, the others left: the fit
        // shares the stretch, scale 1.1 (centred dot products 220 over a spread of 200).
        let from = [
            Point { x: 0.0, y: 0.0 },
            Point { x: 10.0, y: 0.0 },
            Point { x: 0.0, y: 10.0 },
            Point { x: 10.0, y: 10.0 },
        ];
        let mut to = from;
        to[0] = Point { x: -1.0, y: -1.0 };
        to[3] = Point { x: 11.0, y: 11.0 };
        let fitted = similarity(&from, &to).unwrap();
        assert!((fitted.scale() - 1.1).abs() < 1e-5, "{fitted:?}");
        assert!(fitted.angle().abs() < 1e-6);
        assert!(similarity(&from[..1], &to[..1]).is_none());
        assert!(similarity(&[from[0], from[0]], &to[..2]).is_none());
        assert!(similarity(&from, &to[..3]).is_none());
    }

    #[test]
    fn alignment_maps_the_landmarks_onto_the_template() {
        // A frame with a white dot at each of five landmarks, scaled ×2 and moved from the
        // template: the aligned crop has the dots back on the template points.
        let mut frame = RgbImage::new(300, 300);
        let landmarks: Vec<Point> = TEMPLATE
            .iter()
            .map(|p| Point {
                x: p.x * 2.0 + 50.0,
                y: p.y * 2.0 + 20.0,
            })
            .collect();
        for p in &landmarks {
            for dy in -2..2 {
                for dx in -2..2 {
                    let (x, y) = ((p.x as i32 + dx) as u32, (p.y as i32 + dy) as u32);
                    frame.put_pixel(x, y, Rgb([255; 3]));
                }
            }
        }
        let aligned = align(&frame, &landmarks).unwrap();
        assert_eq!(aligned.dimensions(), (112, 112));
        for p in TEMPLATE {
            let value = aligned.get_pixel(p.x as u32, p.y as u32)[0];
            assert!(value > 100, "dark at {p:?}: {value}");
        }
        assert_eq!(aligned.get_pixel(5, 5)[0], 0);
        assert!(matches!(
            align(&frame, &landmarks[..3]),
            Err(FaceError::Input(_))
        ));
    }

    #[test]
    fn blazeface_decodes_the_anchor_of_a_confident_logit() {
        let mut scores16 = vec![-10.0; 512];
        let scores8 = vec![-10.0; 384];
        let mut regressors16 = vec![0.0; 512 * 16];
        let regressors8 = vec![0.0; 384 * 16];
        // Cell (x 3, y 2) of the 16 grid, its second anchor: index (2·16 + 3)·2 + 1 = 71,
        // centre ((3.5/16)·128, (2.5/16)·128) = (28, 20).
        scores16[71] = 2.0;
        let r = &mut regressors16[71 * 16..72 * 16];
        r[..4].copy_from_slice(&[1.0, -2.0, 10.0, 12.0]);
        r[4] = -3.0; // right eye x
        r[5] = -4.0;
        let outputs = [
            output("Identity_2:0", &[1, 512, 16], regressors16),
            output("Identity:0", &[1, 512, 1], scores16),
            output("Identity_1:0", &[1, 384, 1], scores8),
            output("Identity_3:0", &[1, 384, 16], regressors8),
        ];
        let faces = decode_blazeface(&outputs, 0.5).unwrap();
        assert_eq!(faces.len(), 1);
        let face = &faces[0];
        assert!((face.score - 1.0 / (1.0 + (-2.0f32).exp())).abs() < 1e-6);
        assert_eq!(
            face.bbox,
            BBox {
                x0: 24.0,
                y0: 12.0,
                x1: 34.0,
                y1: 24.0
            }
        );
        assert_eq!(face.landmarks.len(), 6);
        assert_eq!(face.landmarks[0], Point { x: 25.0, y: 16.0 });
        assert_eq!(face.landmarks[5], Point { x: 28.0, y: 20.0 });

        let truncated = [output("Identity:0", &[1, 512, 1], vec![0.0; 10])];
        assert!(decode_blazeface(&truncated, 0.5).is_err());
    }

    #[test]
    fn centerface_decodes_hot_cells_into_boxes_and_landmarks() {
        let (rows, columns) = (3usize, 4usize);
        let plane = rows * columns;
        let cell = columns + 2; // row 1, column 2
        let mut heat = vec![0.1; plane];
        heat[cell] = 0.9;
        let mut size = vec![0.0; 2 * plane];
        size[cell] = 2.0f32.ln(); // height 8
        size[plane + cell] = 1.0f32.ln(); // width 4
        let mut offset = vec![0.0; 2 * plane];
        offset[cell] = 0.25; // dy
        offset[plane + cell] = 0.5; // dx
        let mut points = vec![0.0; 10 * plane];
        points[cell] = 0.5; // landmark 0 y: half the height down
        points[plane + cell] = 0.25; // landmark 0 x: a quarter of the width across
        let outputs = [
            output("537", &[1, 1, 3, 4], heat),
            output("538", &[1, 2, 3, 4], size),
            output("539", &[1, 2, 3, 4], offset),
            output("540", &[1, 10, 3, 4], points),
        ];
        let faces = decode_centerface(&outputs, 0.5).unwrap();
        assert_eq!(faces.len(), 1);
        // Centre ((2 + 0.5 + 0.5)·4, (1 + 0.25 + 0.5)·4) = (12, 7); 4 wide, 8 high.
        assert_eq!(
            faces[0].bbox,
            BBox {
                x0: 10.0,
                y0: 3.0,
                x1: 14.0,
                y1: 11.0
            }
        );
        assert_eq!(faces[0].landmarks[0], Point { x: 11.0, y: 7.0 });
        assert_eq!(faces[0].landmarks[1], Point { x: 10.0, y: 3.0 });

        let mut mismatched = outputs.clone();
        mismatched[3] = output("540", &[1, 10, 4, 3], vec![0.0; 10 * plane]);
        assert!(decode_centerface(&mismatched, 0.5).is_err());
        assert!(decode_centerface(&outputs[..3], 0.5).is_err());
    }

    #[test]
    fn cosine_of_unit_vectors() {
        assert!((cosine(&[0.6, 0.8], &[0.6, 0.8]) - 1.0).abs() < 1e-6);
        assert_eq!(cosine(&[1.0, 0.0], &[0.0, 1.0]), 0.0);
    }
}
