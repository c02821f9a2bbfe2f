//! From RGB pixels to a model's input tensor: letterboxing (resize keeping the aspect ratio,
//! pad the rest) and the per-model channel order, layout and normalisation.

use fast_image_resize::{FilterType, ResizeAlg, ResizeOptions, Resizer};
use image::{Rgb, RgbImage, imageops};
use serde::{Deserialize, Serialize};

/// Order of the colour channels the model expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ChannelOrder {
    #[default]
    Rgb,
    Bgr,
}

/// Memory layout of one image in the tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// Planar: `[N, 3, H, W]`.
    #[default]
    Nchw,
    /// Interleaved: `[N, H, W, 3]`.
    Nhwc,
}

/// How pixel values (0–255) become tensor values: `(p - mean[c]) / std[c]` per channel, in the
/// model's channel order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Normalisation {
    #[serde(default)]
    pub channels: ChannelOrder,
    #[serde(default)]
    pub layout: Layout,
    #[serde(default = "zero3")]
    pub mean: [f32; 3],
    #[serde(default = "one3")]
    pub std: [f32; 3],
}

fn zero3() -> [f32; 3] {
    [0.0; 3]
}

fn one3() -> [f32; 3] {
    [1.0; 3]
}

impl Default for Normalisation {
    fn default() -> Self {
        Self {
            channels: ChannelOrder::Rgb,
            layout: Layout::Nchw,
            mean: zero3(),
            std: one3(),
        }
    }
}

impl Normalisation {
    /// Appends `image`'s values to `tensor` (one batch item: `3·w·h` values).
    pub fn append(&self, image: &RgbImage, tensor: &mut Vec<f32>) {
        let (w, h) = image.dimensions();
        let plane = (w * h) as usize;
        let start = tensor.len();
        tensor.resize(start + 3 * plane, 0.0);
        let out = &mut tensor[start..];
        // Per model channel: which pixel channel feeds it, and a table of its 256 values, so
        // the loop below is a lookup and a store per value.
        let sources: [usize; 3] = match self.channels {
            ChannelOrder::Rgb => [0, 1, 2],
            ChannelOrder::Bgr => [2, 1, 0],
        };
        let tables: [[f32; 256]; 3] = std::array::from_fn(|c| {
            let scale = 1.0 / self.std[c];
            std::array::from_fn(|p| (p as f32 - self.mean[c]) * scale)
        });
        let pixels = image.as_raw().chunks_exact(3);
        match self.layout {
            Layout::Nchw => {
                let (first, rest) = out.split_at_mut(plane);
                let (second, third) = rest.split_at_mut(plane);
                for (i, pixel) in pixels.enumerate() {
                    first[i] = tables[0][pixel[sources[0]] as usize];
                    second[i] = tables[1][pixel[sources[1]] as usize];
                    third[i] = tables[2][pixel[sources[2]] as usize];
                }
            }
            Layout::Nhwc => {
                for (values, pixel) in out.chunks_exact_mut(3).zip(pixels) {
                    for c in 0..3 {
                        values[c] = tables[c][pixel[sources[c]] as usize];
                    }
                }
            }
        }
    }

    /// The tensor shape of `batch` images of `width`×`height`.
    pub fn shape(&self, batch: usize, width: u32, height: u32) -> [i64; 4] {
        let (b, w, h) = (batch as i64, width as i64, height as i64);
        match self.layout {
            Layout::Nchw => [b, 3, h, w],
            Layout::Nhwc => [b, h, w, 3],
        }
    }
}

/// An image resized into a fixed canvas with its aspect ratio kept, anchored top-left.
#[derive(Debug, Clone)]
pub struct Letterboxed {
    pub image: RgbImage,
    /// Model pixels per source pixel: divide the model's coordinates by it to get the source's.
    pub scale: f32,
}

/// Resizes `source` by `min(width/w, height/h)` into the top-left of a `width`×`height` canvas
/// filled with `pad` (YOLOX pads with 114 grey, BlazeFace with black).
pub fn letterbox(source: &RgbImage, width: u32, height: u32, pad: [u8; 3]) -> Letterboxed {
    let (w, h) = source.dimensions();
    let scale = (width as f32 / w as f32).min(height as f32 / h as f32);
    let new_w = ((w as f32 * scale).round() as u32).clamp(1, width);
    let new_h = ((h as f32 * scale).round() as u32).clamp(1, height);
    let mut canvas = RgbImage::from_pixel(width, height, Rgb(pad));
    if (new_w, new_h) == (w, h) {
        imageops::replace(&mut canvas, source, 0, 0);
    } else {
        imageops::replace(&mut canvas, &resize(source, new_w, new_h), 0, 0);
    }
    Letterboxed {
        image: canvas,
        scale,
    }
}

/// `source` resized to `width`×`height` with a bilinear filter (SIMD, fast_image_resize).
pub fn resize(source: &RgbImage, width: u32, height: u32) -> RgbImage {
    let mut resized = RgbImage::new(width.max(1), height.max(1));
    let options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Bilinear));
    if let Err(error) = Resizer::new().resize(source, &mut resized, &options) {
        // Only a zero-sized source gets here: an empty image of the size asked for is right.
        tracing::debug!(%error, "resize of an empty image");
    }
    resized
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn letterbox_keeps_the_aspect_and_pads_the_rest() {
        let source = RgbImage::from_pixel(200, 100, Rgb([10, 20, 30]));
        let boxed = letterbox(&source, 100, 100, [114, 114, 114]);
        assert_eq!(boxed.scale, 0.5);
        assert_eq!(boxed.image.get_pixel(50, 25), &Rgb([10, 20, 30]));
        assert_eq!(boxed.image.get_pixel(50, 75), &Rgb([114, 114, 114]));
    }

    #[test]
    fn nchw_bgr_planes_and_nhwc_interleaving() {
        let mut image = RgbImage::new(2, 1);
        image.put_pixel(0, 0, Rgb([1, 2, 3]));
        image.put_pixel(1, 0, Rgb([4, 5, 6]));
        let mut planar = Vec::new();
        Normalisation {
            channels: ChannelOrder::Bgr,
            ..Default::default()
        }
        .append(&image, &mut planar);
        assert_eq!(planar, [3.0, 6.0, 2.0, 5.0, 1.0, 4.0]);
        let mut interleaved = vec![-1.0];
        Normalisation {
            layout: Layout::Nhwc,
            mean: [1.0; 3],
            std: [2.0; 3],
            ..Default::default()
        }
        .append(&image, &mut interleaved);
        assert_eq!(interleaved, [-1.0, 0.0, 0.5, 1.0, 1.5, 2.0, 2.5]);
    }
}
