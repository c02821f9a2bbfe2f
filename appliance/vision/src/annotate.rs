//! Event snapshots: the frame with the skill's zones or lines and the objects' boxes drawn on
//! it, as JPEG. Drawing is a few thick lines, done here rather than with a drawing crate: the
//! snapshot is the only picture the appliance draws.

use image::codecs::jpeg::JpegEncoder;
use image::{Rgb, RgbImage};

/// Colours of what is drawn.
pub const ZONE_COLOUR: [u8; 3] = [255, 200, 0];
pub const OBJECT_COLOUR: [u8; 3] = [255, 40, 40];
pub const OTHER_COLOUR: [u8; 3] = [80, 220, 80];

/// Something to draw, in normalised coordinates (0..1 of the frame's width and height).
#[derive(Debug, Clone, PartialEq)]
pub enum Shape {
    /// A closed polygon (a zone).
    Polygon {
        points: Vec<[f32; 2]>,
        colour: [u8; 3],
    },
    /// An open polyline (a line to cross).
    Line {
        points: Vec<[f32; 2]>,
        colour: [u8; 3],
    },
    /// A box `[x0, y0, x1, y1]`.
    Box { bbox: [f32; 4], colour: [u8; 3] },
}

/// Draws `shapes` on a copy of `frame` and encodes it as JPEG at `quality` (1–100).
pub fn snapshot_jpeg(
    frame: &RgbImage,
    shapes: &[Shape],
    quality: u8,
) -> Result<Vec<u8>, image::ImageError> {
    let mut canvas = frame.clone();
    let (w, h) = (canvas.width() as f32, canvas.height() as f32);
    let thickness = ((canvas.width().max(canvas.height()) / 320) as i32).max(1);
    let px = |p: &[f32; 2]| (p[0] * w, p[1] * h);
    for shape in shapes {
        match shape {
            Shape::Polygon { points, colour } | Shape::Line { points, colour } => {
                let closed = matches!(shape, Shape::Polygon { .. });
                let segments = points.len().saturating_sub(if closed { 0 } else { 1 });
                for i in 0..segments {
                    let (a, b) = (px(&points[i]), px(&points[(i + 1) % points.len()]));
                    draw_line(&mut canvas, a, b, *colour, thickness);
                }
            }
            Shape::Box { bbox, colour } => {
                let corners = [
                    [bbox[0], bbox[1]],
                    [bbox[2], bbox[1]],
                    [bbox[2], bbox[3]],
                    [bbox[0], bbox[3]],
                ];
                for i in 0..4 {
                    draw_line(
                        &mut canvas,
                        px(&corners[i]),
                        px(&corners[(i + 1) % 4]),
                        *colour,
                        thickness,
                    );
                }
            }
        }
    }
    let mut jpeg = Vec::new();
    JpegEncoder::new_with_quality(&mut jpeg, quality.clamp(1, 100)).encode_image(&canvas)?;
    Ok(jpeg)
}

/// A line `thickness` pixels wide (a square brush stepped along it), clipped to the image.
fn draw_line(canvas: &mut RgbImage, a: (f32, f32), b: (f32, f32), colour: [u8; 3], thickness: i32) {
    if ![a.0, a.1, b.0, b.1].iter().all(|v| v.is_finite()) {
        return;
    }
    let steps = (b.0 - a.0)
        .abs()
        .max((b.1 - a.1).abs())
        .ceil()
        .clamp(1.0, 20_000.0) as i32;
    let (w, h) = (canvas.width() as i32, canvas.height() as i32);
    let half = thickness / 2;
    for step in 0..=steps {
        let t = step as f32 / steps as f32;
        let x = (a.0 + (b.0 - a.0) * t).round() as i32;
        let y = (a.1 + (b.1 - a.1) * t).round() as i32;
        for dy in -half..=half {
            for dx in -half..=half {
                let (px, py) = (x + dx, y + dy);
                if (0..w).contains(&px) && (0..h).contains(&py) {
                    canvas.put_pixel(px as u32, py as u32, Rgb(colour));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_boxes_and_zones_and_encodes_a_jpeg() {
        let frame = RgbImage::from_pixel(320, 240, Rgb([0, 0, 0]));
        let shapes = [
            Shape::Box {
                bbox: [0.25, 0.25, 0.75, 0.75],
                colour: OBJECT_COLOUR,
            },
            Shape::Polygon {
                points: vec![[0.0, 0.0], [0.1, 0.0], [0.1, 0.1]],
                colour: ZONE_COLOUR,
            },
            // Off the frame and degenerate: clipped and skipped, never a panic.
            Shape::Line {
                points: vec![[-5.0, 9.0], [f32::NAN, 2.0]],
                colour: OTHER_COLOUR,
            },
        ];
        let jpeg = snapshot_jpeg(&frame, &shapes, 90).unwrap();
        let decoded = image::load_from_memory(&jpeg).unwrap().to_rgb8();
        assert_eq!(decoded.dimensions(), (320, 240));
        let red = decoded.get_pixel(160, 60);
        assert!(red[0] > 200 && red[1] < 100, "box edge drawn: {red:?}");
        let inside = decoded.get_pixel(160, 120);
        assert!(inside[0] < 30, "inside untouched: {inside:?}");
    }
}
