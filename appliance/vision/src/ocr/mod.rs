//! Licence-plate text reading with PaddleOCR's PP-OCR models: find text lines (`det`, DB),
//! turn upside-down lines the right way up (`direction`, optional) and read each line
//! (`rec`, CTC). See `shared/models.md` §4 for the tensors and the reference results.
//!
//! Why three models and not one plate model: PP-OCR reads Chinese and Latin plates (and the
//! province characters) with one openly licensed set, and the stages can be used alone: the
//! skills that already have a vehicle or plate box call [`PlateReader::read_crop`] and skip the
//! detector, which is the slowest stage.

mod det;
mod direction;
mod rec;

use std::time::{Duration, Instant};

use image::RgbImage;

pub use det::{DetectorOptions, TextBox, TextDetector};
pub use direction::{DirectionOptions, Orientation, TextDirection};
pub use rec::{Recognition, RecognizerOptions, TextRecognizer, ctc_decode};

use crate::geometry::BBox;
use crate::preprocess::{ChannelOrder, Layout, Normalisation};
use crate::runtime::{Output, RuntimeError};

#[derive(Debug, thiserror::Error)]
pub enum OcrError {
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// A model cannot look at an image without pixels, and a crop of one would be empty too.
    #[error("image of {width}×{height} pixels has nothing to read")]
    EmptyImage { width: u32, height: u32 },
    /// The model returned (or declares) a tensor the post-processing cannot interpret: the wrong
    /// model file behind a name, or a different export of it.
    #[error("{model}: {message}")]
    UnexpectedOutput { model: String, message: String },
    /// The recogniser's symbol table does not fit its output classes.
    #[error("alphabet: {0}")]
    Alphabet(String),
}

pub type Result<T, E = OcrError> = std::result::Result<T, E>;

/// The input normalisation all three PP-OCR models were exported with (RapidOCR 1.4.4): BGR,
/// `(p/255 - 0.5)/0.5`, which is `(p - 127.5)/127.5` on 0–255 values, planar.
pub fn ppocr_normalisation() -> Normalisation {
    Normalisation {
        channels: ChannelOrder::Bgr,
        layout: Layout::Nchw,
        mean: [127.5; 3],
        std: [127.5; 3],
    }
}

/// One line of text read from an image.
#[derive(Debug, Clone, PartialEq)]
pub struct TextLine {
    /// Where the line is, in the pixels of the image given to the reader (the whole image for
    /// [`PlateReader::read_crop`]).
    pub bbox: BBox,
    /// What the recogniser read, verbatim: Chinese plates keep their separator dot ('·') and
    /// Latin plates their gap (' '); strip them before comparing plate numbers.
    pub text: String,
    /// Mean probability of the symbols read, 0 when nothing was read.
    pub confidence: f32,
}

/// Wall time of each stage of one read, for the benchmarks and the per-frame budget.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StageTimes {
    /// Resize, detector run and DB post-processing; zero for [`PlateReader::read_crop`].
    pub detect: Duration,
    /// Straightening each detected (possibly rotated) line into its own image.
    pub crop: Duration,
    /// The direction classifier and the rotation of upside-down lines; zero without one.
    pub classify: Duration,
    /// The recogniser and the CTC decoding.
    pub recognize: Duration,
}

impl StageTimes {
    pub fn total(&self) -> Duration {
        self.detect + self.crop + self.classify + self.recognize
    }
}

/// Reads the text lines of a frame or of a plate crop: detector, optional direction classifier,
/// recogniser.
#[derive(Debug)]
pub struct PlateReader {
    pub det: TextDetector,
    /// Without it, upside-down lines read as garbage; with it every line costs a small extra
    /// run (~2 ms). Cameras mounted the right way up can leave it out.
    pub cls: Option<TextDirection>,
    pub rec: TextRecognizer,
    /// Lines read with a lower confidence are dropped by [`PlateReader::read`]: below it the
    /// recogniser is reading texture, not text (the manifest's `thresholds.score`, 0.5).
    pub min_confidence: f32,
}

impl PlateReader {
    pub fn new(det: TextDetector, cls: Option<TextDirection>, rec: TextRecognizer) -> Self {
        Self {
            det,
            cls,
            rec,
            min_confidence: 0.5,
        }
    }

    /// The text lines of `image` with at least [`Self::min_confidence`], most confident first.
    pub fn read(&self, image: &RgbImage) -> Result<Vec<TextLine>> {
        self.read_timed(image).map(|(lines, _)| lines)
    }

    /// [`Self::read`] with the time each stage took.
    pub fn read_timed(&self, image: &RgbImage) -> Result<(Vec<TextLine>, StageTimes)> {
        let mut times = StageTimes::default();
        let started = Instant::now();
        let boxes = self.det.detect(image)?;
        times.detect = started.elapsed();

        let started = Instant::now();
        let mut crops: Vec<RgbImage> = boxes.iter().map(|b| b.crop(image)).collect();
        times.crop = started.elapsed();

        let mut lines = self.recognize_crops(&mut crops, &mut times)?;
        for (line, text_box) in lines.iter_mut().zip(&boxes) {
            line.bbox = text_box.bbox;
        }
        lines.retain(|line| !line.text.is_empty() && line.confidence >= self.min_confidence);
        lines.sort_by(|a, b| b.confidence.total_cmp(&a.confidence));
        Ok((lines, times))
    }

    /// Reads an image that is already one text line (a plate crop), without the detector. The
    /// line is returned whatever its confidence: the caller asked for this crop to be read.
    pub fn read_crop(&self, crop: &RgbImage) -> Result<TextLine> {
        self.read_crop_timed(crop).map(|(line, _)| line)
    }

    /// [`Self::read_crop`] with the time each stage took.
    pub fn read_crop_timed(&self, crop: &RgbImage) -> Result<(TextLine, StageTimes)> {
        check_not_empty(crop)?;
        let mut times = StageTimes::default();
        let mut crops = vec![crop.clone()];
        let mut lines = self.recognize_crops(&mut crops, &mut times)?;
        let line = lines.pop().ok_or_else(|| OcrError::UnexpectedOutput {
            model: "ppocr_rec".into(),
            message: "no result for the crop".into(),
        })?;
        Ok((line, times))
    }

    /// Turns the crops the right way up (when there is a classifier) and reads them; the boxes
    /// are the whole crops, for the caller to replace.
    fn recognize_crops(
        &self,
        crops: &mut [RgbImage],
        times: &mut StageTimes,
    ) -> Result<Vec<TextLine>> {
        if let Some(cls) = &self.cls {
            let started = Instant::now();
            cls.correct(crops)?;
            times.classify = started.elapsed();
        }
        let started = Instant::now();
        let read = self.rec.recognize(crops)?;
        times.recognize = started.elapsed();
        Ok(read
            .into_iter()
            .zip(crops.iter())
            .map(|(recognition, crop)| TextLine {
                bbox: BBox {
                    x0: 0.0,
                    y0: 0.0,
                    x1: crop.width() as f32,
                    y1: crop.height() as f32,
                },
                text: recognition.text,
                confidence: recognition.confidence,
            })
            .collect())
    }
}

/// Appends `image` as one batch item `width` pixels wide: the image left-aligned, the rest zero
/// in the normalised space (what PaddleOCR pads lines with, and what the models were trained on).
fn append_padded(
    normalisation: &Normalisation,
    image: &RgbImage,
    width: u32,
    tensor: &mut Vec<f32>,
) {
    let mut item = Vec::new();
    normalisation.append(image, &mut item);
    let (w, h, width) = (
        image.width() as usize,
        image.height() as usize,
        width as usize,
    );
    let start = tensor.len();
    tensor.resize(start + 3 * h * width, 0.0);
    let out = &mut tensor[start..];
    match normalisation.layout {
        Layout::Nchw => {
            let copied = w.min(width);
            for row in 0..3 * h {
                out[row * width..][..copied].copy_from_slice(&item[row * w..][..copied]);
            }
        }
        Layout::Nhwc => {
            let copied = 3 * w.min(width);
            for row in 0..h {
                out[row * 3 * width..][..copied].copy_from_slice(&item[row * 3 * w..][..copied]);
            }
        }
    }
}

fn check_not_empty(image: &RgbImage) -> Result<()> {
    let (width, height) = image.dimensions();
    if width == 0 || height == 0 {
        Err(OcrError::EmptyImage { width, height })
    } else {
        Ok(())
    }
}

/// The first output of a run of `model`, checked to have the dimensions of `shape` (`None`: any
/// size) and as many values as its shape says, so the post-processing can index it freely.
fn checked_output<'a>(
    model: &str,
    outputs: &'a [Output],
    shape: &[Option<usize>],
) -> Result<&'a Output> {
    let error = |message: String| OcrError::UnexpectedOutput {
        model: model.to_string(),
        message,
    };
    let output = outputs
        .first()
        .ok_or_else(|| error("the model returned no output".into()))?;
    let fits = output.shape.len() == shape.len()
        && output
            .shape
            .iter()
            .zip(shape)
            .all(|(&got, want)| got >= 0 && want.is_none_or(|w| got as usize == w));
    let values: i64 = output.shape.iter().product();
    if !fits || values < 0 || values as usize != output.data.len() {
        return Err(error(format!(
            "output {} has shape {:?} with {} values, expected {:?}",
            output.name,
            output.shape,
            output.data.len(),
            shape
        )));
    }
    Ok(output)
}
