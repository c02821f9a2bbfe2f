//! Text direction (PP-OCR mobile v2.0 cls): whether a cut-out line is upside down. The
//! recogniser reads an upside-down plate (a camera mounted the other way up, a mirror-mounted
//! view) as garbage; turned 180° it reads normally. The classifier costs ~2 ms a line.

use image::{RgbImage, imageops};

use super::{Result, append_padded, check_not_empty, checked_output, ppocr_normalisation};
use crate::preprocess::Normalisation;
use crate::runtime::{Input, Model};

/// How lines become the classifier's input, and when a line counts as upside down.
#[derive(Debug, Clone, PartialEq)]
pub struct DirectionOptions {
    pub normalisation: Normalisation,
    /// The model's fixed input: lines are resized to `height` keeping their aspect, cut to
    /// `width` when longer and zero-padded when shorter.
    pub width: u32,
    pub height: u32,
    /// P(180°) a line needs to be turned: a wrong turn ruins a line that read well, so only a
    /// confident verdict turns it (PaddleOCR's 0.9).
    pub threshold: f32,
    /// Lines per run.
    pub batch_size: usize,
}

impl Default for DirectionOptions {
    fn default() -> Self {
        Self {
            normalisation: ppocr_normalisation(),
            width: 192,
            height: 48,
            threshold: 0.9,
            batch_size: 8,
        }
    }
}

/// The classifier's verdict on one line.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Orientation {
    /// 0 (upright) or 180 (upside down).
    pub angle: u16,
    /// The probability of that angle.
    pub confidence: f32,
}

/// The PP-OCR text direction classifier.
#[derive(Debug)]
pub struct TextDirection {
    model: Model,
    options: DirectionOptions,
}

impl TextDirection {
    pub fn new(model: Model) -> Self {
        Self::with_options(model, DirectionOptions::default())
    }

    pub fn with_options(model: Model, options: DirectionOptions) -> Self {
        Self { model, options }
    }

    pub fn options(&self) -> &DirectionOptions {
        &self.options
    }

    /// The orientation of each line, in order.
    pub fn classify(&self, lines: &[RgbImage]) -> Result<Vec<Orientation>> {
        for line in lines {
            check_not_empty(line)?;
        }
        let DirectionOptions {
            normalisation,
            width,
            height,
            threshold,
            batch_size,
        } = &self.options;
        let mut orientations = Vec::with_capacity(lines.len());
        for batch in lines.chunks((*batch_size).max(1)) {
            let mut tensor =
                Vec::with_capacity(batch.len() * 3 * *width as usize * *height as usize);
            for line in batch {
                let fitted = scaled_width(line, *height).min(*width);
                let resized =
                    imageops::resize(line, fitted, *height, imageops::FilterType::Triangle);
                append_padded(normalisation, &resized, *width, &mut tensor);
            }
            let shape = normalisation.shape(batch.len(), *width, *height);
            let outputs = self.model.run(&[Input {
                shape: &shape,
                data: &tensor,
            }])?;
            let output =
                checked_output(self.model.name(), &outputs, &[Some(batch.len()), Some(2)])?;
            orientations.extend(output.data.chunks_exact(2).map(|p| {
                if p[1] > *threshold {
                    Orientation {
                        angle: 180,
                        confidence: p[1],
                    }
                } else {
                    Orientation {
                        angle: 0,
                        confidence: p[0],
                    }
                }
            }));
        }
        Ok(orientations)
    }

    /// Classifies the lines and turns the upside-down ones, in place.
    pub fn correct(&self, lines: &mut [RgbImage]) -> Result<Vec<Orientation>> {
        let orientations = self.classify(lines)?;
        for (line, orientation) in lines.iter_mut().zip(&orientations) {
            if orientation.angle == 180 {
                imageops::rotate180_in_place(line);
            }
        }
        Ok(orientations)
    }
}

/// The width of `image` resized to `height` with its aspect kept, rounded up, at least 1.
pub(super) fn scaled_width(image: &RgbImage, height: u32) -> u32 {
    let (w, h) = image.dimensions();
    let scaled = (height as f64 * w as f64 / h.max(1) as f64).ceil();
    scaled.clamp(1.0, u32::MAX as f64) as u32
}
