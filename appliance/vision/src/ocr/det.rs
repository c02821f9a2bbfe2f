//! Text-line detection with DB (Differentiable Binarization, PP-OCRv4 det): the model paints,
//! per pixel, the probability that it is text. Text lines are the connected regions of that map
//! above a threshold; DB trains them shrunk, so each region's minimum-area rectangle is grown
//! back ("unclipped") by a margin proportional to its size. Rotated rectangles, not axis-aligned
//! boxes, so a tilted plate is cut out straight and the recogniser sees a level line.

use std::borrow::Cow;

use image::{Rgb, RgbImage, imageops};

use super::{Result, check_not_empty, checked_output, ppocr_normalisation};
use crate::geometry::{BBox, Point};
use crate::preprocess::Normalisation;
use crate::runtime::{Input, Model};

/// How frames become the detector's input and how its map becomes boxes.
#[derive(Debug, Clone, PartialEq)]
pub struct DetectorOptions {
    pub normalisation: Normalisation,
    /// The short side is scaled up to at least this many pixels: at low resolution DB splits a
    /// line at wide gaps (the 420×110 Latin plate crop comes back as "KA" and "4521" at its own
    /// size, as one line from 352 on) and tiny inputs return nothing. RapidOCR uses 736 for
    /// documents; 352 keeps 640×360 scenes at their own size, where the reference results were
    /// made, and twice the short side costs 3–4 times the detector time.
    pub min_side: u32,
    /// The long side is scaled down to at most this many pixels (rounded up to a multiple of
    /// 32), bounding the time of full-resolution frames; wins over `min_side`.
    pub max_side: u32,
    /// Probability above which a pixel of the map counts as text.
    pub pixel_threshold: f32,
    /// Mean probability a region's pixels need to be kept as a text line.
    pub box_threshold: f32,
    /// The unclip margin is `area · unclip_ratio / perimeter` of the region's rectangle (DB's
    /// training shrink, inverted; RapidOCR uses 1.6, PaddleOCR 1.5).
    pub unclip_ratio: f32,
    /// Regions whose rectangle is thinner than this many map pixels are noise, not text.
    pub min_size: f32,
}

impl Default for DetectorOptions {
    fn default() -> Self {
        Self {
            normalisation: ppocr_normalisation(),
            min_side: 352,
            max_side: 1280,
            pixel_threshold: 0.3,
            box_threshold: 0.5,
            unclip_ratio: 1.6,
            min_size: 3.0,
        }
    }
}

/// A text line found in an image, in its pixels.
#[derive(Debug, Clone, PartialEq)]
pub struct TextBox {
    /// The line's rectangle (a parallelogram when the input was resized unevenly), corners
    /// clockwise from the text's top-left: top-left, top-right, bottom-right, bottom-left. The
    /// top edge runs along the text, within 45° of the horizontal.
    pub quad: [Point; 4],
    /// The axis-aligned bounds of `quad`, within the image.
    pub bbox: BBox,
    /// Mean text probability of the region's pixels.
    pub score: f32,
}

impl TextBox {
    /// The line cut out of `image` and straightened: the quad mapped onto an upright image of its
    /// own size, sampled bilinearly. A line at least 1.5 times taller than wide is vertical text
    /// and is turned 90° anticlockwise, so it reads left to right as the recogniser expects.
    pub fn crop(&self, image: &RgbImage) -> RgbImage {
        let (image_w, image_h) = image.dimensions();
        if image_w == 0 || image_h == 0 {
            return RgbImage::new(0, 0);
        }
        let [tl, tr, br, bl] = self.quad;
        let distance = |a: Point, b: Point| (a.x - b.x).hypot(a.y - b.y);
        // No line is longer than the image's half perimeter; bounds a hand-made quad too.
        let limit = (image_w + image_h) as f32;
        let size = |a: f32, b: f32| a.max(b).round().clamp(1.0, limit) as u32;
        let width = size(distance(tl, tr), distance(bl, br));
        let height = size(distance(tl, bl), distance(tr, br));
        let along = ((tr.x - tl.x) / width as f32, (tr.y - tl.y) / width as f32);
        let down = ((bl.x - tl.x) / height as f32, (bl.y - tl.y) / height as f32);
        let straight = RgbImage::from_fn(width, height, |u, v| {
            let (u, v) = (u as f32 + 0.5, v as f32 + 0.5);
            // Pixel centres sit at +0.5: the quad's corners are pixel edges.
            let x = tl.x + u * along.0 + v * down.0 - 0.5;
            let y = tl.y + u * along.1 + v * down.1 - 0.5;
            bilinear(image, x, y)
        });
        if height as f32 >= 1.5 * width as f32 {
            imageops::rotate270(&straight)
        } else {
            straight
        }
    }
}

/// `image` at `(x, y)`, interpolated between the four nearest pixels; outside, the nearest edge.
fn bilinear(image: &RgbImage, x: f32, y: f32) -> Rgb<u8> {
    let (w, h) = image.dimensions();
    let x = x.clamp(0.0, (w - 1) as f32);
    let y = y.clamp(0.0, (h - 1) as f32);
    let (x0, y0) = (x.floor() as u32, y.floor() as u32);
    let (x1, y1) = ((x0 + 1).min(w - 1), (y0 + 1).min(h - 1));
    let (fx, fy) = (x - x0 as f32, y - y0 as f32);
    let (a, b) = (image.get_pixel(x0, y0), image.get_pixel(x1, y0));
    let (c, d) = (image.get_pixel(x0, y1), image.get_pixel(x1, y1));
    Rgb(std::array::from_fn(|k| {
        let top = a[k] as f32 * (1.0 - fx) + b[k] as f32 * fx;
        let bottom = c[k] as f32 * (1.0 - fx) + d[k] as f32 * fx;
        (top * (1.0 - fy) + bottom * fy).round() as u8
    }))
}

/// The PP-OCR text detector.
#[derive(Debug)]
pub struct TextDetector {
    model: Model,
    options: DetectorOptions,
}

impl TextDetector {
    pub fn new(model: Model) -> Self {
        Self::with_options(model, DetectorOptions::default())
    }

    pub fn with_options(model: Model, options: DetectorOptions) -> Self {
        Self { model, options }
    }

    pub fn options(&self) -> &DetectorOptions {
        &self.options
    }

    /// The text lines of `image`, top to bottom, then left to right.
    pub fn detect(&self, image: &RgbImage) -> Result<Vec<TextBox>> {
        check_not_empty(image)?;
        let (width, height) = image.dimensions();
        let (input_w, input_h) = input_size(width, height, &self.options);
        let resized = if (input_w, input_h) == (width, height) {
            Cow::Borrowed(image)
        } else {
            Cow::Owned(imageops::resize(
                image,
                input_w,
                input_h,
                imageops::FilterType::Triangle,
            ))
        };
        let normalisation = &self.options.normalisation;
        let mut tensor = Vec::with_capacity(3 * input_w as usize * input_h as usize);
        normalisation.append(&resized, &mut tensor);
        let shape = normalisation.shape(1, input_w, input_h);
        let outputs = self.model.run(&[Input {
            shape: &shape,
            data: &tensor,
        }])?;
        let (map_w, map_h) = (input_w as usize, input_h as usize);
        let map = checked_output(
            self.model.name(),
            &outputs,
            &[Some(1), Some(1), Some(map_h), Some(map_w)],
        )?;
        let scale_x = width as f32 / input_w as f32;
        let scale_y = height as f32 / input_h as f32;
        let to_source = |p: Point| Point {
            x: (p.x * scale_x).clamp(0.0, width as f32),
            y: (p.y * scale_y).clamp(0.0, height as f32),
        };
        let mut boxes: Vec<TextBox> = regions(&map.data, map_w, map_h, &self.options)
            .into_iter()
            .map(|(rect, score)| {
                let quad = rect.corners().map(to_source);
                TextBox {
                    quad,
                    bbox: bounds(&quad),
                    score,
                }
            })
            .collect();
        boxes.sort_by(|a, b| {
            (a.bbox.y0.total_cmp(&b.bbox.y0)).then(a.bbox.x0.total_cmp(&b.bbox.x0))
        });
        Ok(boxes)
    }
}

/// The detector's input size for a `width`×`height` image: scaled by `min_side` and
/// `max_side`, then each side rounded up to a multiple of 32 (the network downsamples by 32).
fn input_size(width: u32, height: u32, options: &DetectorOptions) -> (u32, u32) {
    let (w, h) = (width as f64, height as f64);
    let scale = (options.min_side as f64 / w.min(h))
        .max(1.0)
        .min(options.max_side as f64 / w.max(h));
    // A hair above a multiple of 32 is rounding error, not a reason for 32 more pixels.
    let to_32 = |v: f64| (v / 32.0 - 1e-6).ceil().max(1.0) as u32 * 32;
    (to_32(w * scale), to_32(h * scale))
}

fn bounds(quad: &[Point; 4]) -> BBox {
    let xs = quad.map(|p| p.x);
    let ys = quad.map(|p| p.y);
    BBox {
        x0: xs.into_iter().fold(f32::INFINITY, f32::min),
        y0: ys.into_iter().fold(f32::INFINITY, f32::min),
        x1: xs.into_iter().fold(f32::NEG_INFINITY, f32::max),
        y1: ys.into_iter().fold(f32::NEG_INFINITY, f32::max),
    }
}

/// The text lines of a `width`×`height` probability map: each kept region's rectangle, grown,
/// in map pixels, with the region's mean probability.
fn regions(
    map: &[f32],
    width: usize,
    height: usize,
    options: &DetectorOptions,
) -> Vec<(Rect, f32)> {
    let (labels, components) = label_components(map, width, height, options.pixel_threshold);
    components
        .iter()
        .enumerate()
        .filter(|(_, component)| component.mean >= options.box_threshold)
        .filter_map(|(index, component)| {
            let hull = convex_hull(outline(&labels, width, index as u32 + 1, component));
            let rect = min_area_rect(&hull)?;
            if rect.short_side() < options.min_size {
                return None;
            }
            let grown = rect.unclip(options.unclip_ratio);
            (grown.short_side() >= options.min_size + 2.0).then_some((grown, component.mean))
        })
        .collect()
}

/// One 8-connected region of map pixels above the threshold.
#[derive(Debug, Clone, PartialEq)]
struct Component {
    /// Inclusive pixel bounds.
    x0: usize,
    y0: usize,
    x1: usize,
    y1: usize,
    pixels: usize,
    /// Mean map value of its pixels.
    mean: f32,
}

/// Labels the 8-connected regions of `map > threshold` (label `k + 1` for `components[k]`, 0
/// for background). A flood fill with an explicit stack: a text line covers thousands of
/// pixels, too deep for recursion.
fn label_components(
    map: &[f32],
    width: usize,
    height: usize,
    threshold: f32,
) -> (Vec<u32>, Vec<Component>) {
    let mut labels = vec![0u32; map.len()];
    let mut components = Vec::new();
    let mut stack = Vec::new();
    // NaN is not text.
    let is_text = |value: f32| value > threshold;
    let cells = map.len().min(width * height);
    for start in 0..cells {
        if labels[start] != 0 || !is_text(map[start]) {
            continue;
        }
        let label = components.len() as u32 + 1;
        let (x, y) = (start % width, start / width);
        let mut component = Component {
            x0: x,
            y0: y,
            x1: x,
            y1: y,
            pixels: 0,
            mean: 0.0,
        };
        let mut sum = 0.0f64;
        labels[start] = label;
        stack.push(start);
        while let Some(index) = stack.pop() {
            let (x, y) = (index % width, index / width);
            component.x0 = component.x0.min(x);
            component.x1 = component.x1.max(x);
            component.y0 = component.y0.min(y);
            component.y1 = component.y1.max(y);
            component.pixels += 1;
            sum += map[index] as f64;
            for ny in y.saturating_sub(1)..=(y + 1).min(height - 1) {
                for nx in x.saturating_sub(1)..=(x + 1).min(width - 1) {
                    let next = ny * width + nx;
                    if labels[next] == 0 && is_text(map[next]) {
                        labels[next] = label;
                        stack.push(next);
                    }
                }
            }
        }
        component.mean = (sum / component.pixels as f64) as f32;
        components.push(component);
    }
    (labels, components)
}

/// The corners of the outermost pixel squares of each row of a region: enough for its convex
/// hull, and a few points per row instead of every pixel.
fn outline(labels: &[u32], width: usize, label: u32, component: &Component) -> Vec<(i64, i64)> {
    let mut points = Vec::new();
    for y in component.y0..=component.y1 {
        let row = &labels[y * width..][component.x0..=component.x1];
        let first = row.iter().position(|&l| l == label);
        let last = row.iter().rposition(|&l| l == label);
        if let (Some(first), Some(last)) = (first, last) {
            let (left, right) = (
                (component.x0 + first) as i64,
                (component.x0 + last + 1) as i64,
            );
            let (top, bottom) = (y as i64, y as i64 + 1);
            points.extend([(left, top), (left, bottom), (right, top), (right, bottom)]);
        }
    }
    points
}

/// Andrew's monotone chain: the hull's vertices in order, without collinear points.
fn convex_hull(mut points: Vec<(i64, i64)>) -> Vec<(i64, i64)> {
    points.sort_unstable();
    points.dedup();
    if points.len() < 3 {
        return points;
    }
    let cross = |o: (i64, i64), a: (i64, i64), b: (i64, i64)| {
        (a.0 - o.0) * (b.1 - o.1) - (a.1 - o.1) * (b.0 - o.0)
    };
    let half = |points: &mut dyn Iterator<Item = (i64, i64)>| {
        let mut chain: Vec<(i64, i64)> = Vec::new();
        for p in points {
            while chain.len() >= 2 && cross(chain[chain.len() - 2], chain[chain.len() - 1], p) <= 0
            {
                chain.pop();
            }
            chain.push(p);
        }
        // The last point starts the other half.
        chain.pop();
        chain
    };
    let mut hull = half(&mut points.iter().copied());
    hull.extend(half(&mut points.iter().rev().copied()));
    hull
}

/// A rectangle at any angle: centre, unit vector along its width, half sizes.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Rect {
    center: Point,
    /// Unit vector along the width, within 45° of the x axis and pointing right.
    axis: Point,
    half_width: f32,
    half_height: f32,
}

impl Rect {
    /// Normalises the axis so that `width` runs along the text (the side nearer the horizontal)
    /// and the corners come out in reading order.
    fn new(center: Point, axis: Point, half_width: f32, half_height: f32) -> Self {
        let (mut axis, mut half_width, mut half_height) = (axis, half_width, half_height);
        if axis.x.abs() < axis.y.abs() {
            axis = Point {
                x: -axis.y,
                y: axis.x,
            };
            std::mem::swap(&mut half_width, &mut half_height);
        }
        if axis.x < 0.0 {
            axis = Point {
                x: -axis.x,
                y: -axis.y,
            };
        }
        Self {
            center,
            axis,
            half_width,
            half_height,
        }
    }

    fn short_side(&self) -> f32 {
        2.0 * self.half_width.min(self.half_height)
    }

    /// Grown on every side by `area · ratio / perimeter`: the margin DB's training shrank the
    /// text regions by (as a polygon offset, whose min-area rectangle this is).
    fn unclip(&self, ratio: f32) -> Self {
        let (w, h) = (self.half_width, self.half_height);
        let margin = if w + h > 0.0 {
            w * h * ratio / (w + h)
        } else {
            0.0
        };
        Self {
            half_width: w + margin,
            half_height: h + margin,
            ..*self
        }
    }

    /// Top-left, top-right, bottom-right, bottom-left (y grows downwards).
    fn corners(&self) -> [Point; 4] {
        let (u, c) = (self.axis, self.center);
        // Perpendicular to the axis, pointing down when the axis points right.
        let v = Point { x: -u.y, y: u.x };
        let at = |a: f32, b: f32| Point {
            x: c.x + a * self.half_width * u.x + b * self.half_height * v.x,
            y: c.y + a * self.half_width * u.y + b * self.half_height * v.y,
        };
        [at(-1.0, -1.0), at(1.0, -1.0), at(1.0, 1.0), at(-1.0, 1.0)]
    }
}

/// The minimum-area rectangle around a convex polygon: one of its sides lies along an edge of
/// the hull (rotating calipers, tried edge by edge: hulls of text lines have few vertices).
fn min_area_rect(hull: &[(i64, i64)]) -> Option<Rect> {
    if hull.len() < 3 {
        return None;
    }
    let points: Vec<(f32, f32)> = hull.iter().map(|&(x, y)| (x as f32, y as f32)).collect();
    let mut best: Option<(f32, Rect)> = None;
    for (i, &(ax, ay)) in points.iter().enumerate() {
        let (bx, by) = points[(i + 1) % points.len()];
        let length = (bx - ax).hypot(by - ay);
        if length == 0.0 {
            continue;
        }
        let u = (((bx - ax) / length), ((by - ay) / length));
        let v = (-u.1, u.0);
        let (mut min_u, mut max_u, mut min_v, mut max_v) = (
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::INFINITY,
            f32::NEG_INFINITY,
        );
        for &(x, y) in &points {
            let (pu, pv) = (x * u.0 + y * u.1, x * v.0 + y * v.1);
            min_u = min_u.min(pu);
            max_u = max_u.max(pu);
            min_v = min_v.min(pv);
            max_v = max_v.max(pv);
        }
        let area = (max_u - min_u) * (max_v - min_v);
        if best.as_ref().is_none_or(|(best_area, _)| area < *best_area) {
            let (mid_u, mid_v) = ((min_u + max_u) / 2.0, (min_v + max_v) / 2.0);
            let center = Point {
                x: mid_u * u.0 + mid_v * v.0,
                y: mid_u * u.1 + mid_v * v.1,
            };
            let rect = Rect::new(
                center,
                Point { x: u.0, y: u.1 },
                (max_u - min_u) / 2.0,
                (max_v - min_v) / 2.0,
            );
            best = Some((area, rect));
        }
    }
    best.map(|(_, rect)| rect)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `width`×`height` map, 0 everywhere except `value` over the given inclusive rectangles.
    fn map_with(
        width: usize,
        height: usize,
        blobs: &[(usize, usize, usize, usize, f32)],
    ) -> Vec<f32> {
        let mut map = vec![0.0; width * height];
        for &(x0, y0, x1, y1, value) in blobs {
            for y in y0..=y1 {
                for x in x0..=x1 {
                    map[y * width + x] = value;
                }
            }
        }
        map
    }

    #[test]
    fn components_are_eight_connected_with_their_bounds_and_mean() {
        let mut map = map_with(
            12,
            8,
            &[(1, 1, 4, 2, 0.9), (5, 3, 6, 3, 0.5), (9, 5, 10, 6, 0.8)],
        );
        map[7 * 12] = 0.3; // at the threshold: not text
        let (labels, components) = label_components(&map, 12, 8, 0.3);
        // The second blob touches the first only at a corner: one region.
        assert_eq!(components.len(), 2);
        let first = &components[0];
        assert_eq!((first.x0, first.y0, first.x1, first.y1), (1, 1, 6, 3));
        assert_eq!(first.pixels, 8 + 2);
        assert!((first.mean - (8.0 * 0.9 + 2.0 * 0.5) / 10.0).abs() < 1e-6);
        let second = &components[1];
        assert_eq!((second.x0, second.y0, second.x1, second.y1), (9, 5, 10, 6));
        assert_eq!(labels[6 * 12 + 10], 2);
        assert_eq!(labels[7 * 12], 0);
    }

    #[test]
    fn a_large_region_needs_no_recursion() {
        let (w, h) = (2000, 1000);
        let (_, components) = label_components(&vec![1.0; w * h], w, h, 0.3);
        assert_eq!(components.len(), 1);
        assert_eq!(components[0].pixels, w * h);
    }

    #[test]
    fn an_axis_aligned_region_gives_its_pixel_rectangle() {
        let map = map_with(40, 20, &[(5, 4, 24, 9, 1.0)]);
        let (labels, components) = label_components(&map, 40, 20, 0.3);
        let hull = convex_hull(outline(&labels, 40, 1, &components[0]));
        assert_eq!(hull.len(), 4);
        let rect = min_area_rect(&hull).unwrap();
        let [tl, tr, br, bl] = rect.corners();
        let close = |p: Point, x: f32, y: f32| (p.x - x).abs() < 1e-4 && (p.y - y).abs() < 1e-4;
        assert!(close(tl, 5.0, 4.0) && close(tr, 25.0, 4.0), "{tl:?} {tr:?}");
        assert!(
            close(br, 25.0, 10.0) && close(bl, 5.0, 10.0),
            "{br:?} {bl:?}"
        );
    }

    #[test]
    fn a_tilted_region_gives_a_tilted_rectangle_along_the_text() {
        // A 60×8 bar turned by about 6°: each column stepped down by one pixel every ten.
        let (w, h) = (80, 30);
        let mut map = vec![0.0; w * h];
        for x in 10..70 {
            for y in 0..8 {
                map[(10 + (x - 10) / 10 + y) * w + x] = 1.0;
            }
        }
        let (labels, components) = label_components(&map, w, h, 0.3);
        let rect = min_area_rect(&convex_hull(outline(&labels, w, 1, &components[0]))).unwrap();
        let angle = rect.axis.y.atan2(rect.axis.x).to_degrees();
        assert!((3.0..9.0).contains(&angle), "angle {angle}");
        assert!(rect.half_width > 25.0 && rect.half_height < 6.0, "{rect:?}");
    }

    #[test]
    fn unclip_grows_every_side_by_area_ratio_over_perimeter() {
        let rect = Rect::new(
            Point { x: 50.0, y: 20.0 },
            Point { x: 1.0, y: 0.0 },
            40.0,
            10.0,
        );
        let grown = rect.unclip(1.6);
        // 80×20: area 1600, perimeter 200, margin 12.8 on each side.
        assert!((grown.half_width - 52.8).abs() < 1e-4);
        assert!((grown.half_height - 22.8).abs() < 1e-4);
        assert_eq!(grown.center, rect.center);
        assert_eq!(rect.unclip(0.0), rect);
    }

    #[test]
    fn a_vertical_axis_is_turned_to_run_along_the_long_side_read_left_to_right() {
        let rect = Rect::new(
            Point { x: 0.0, y: 0.0 },
            Point { x: 0.0, y: -1.0 },
            3.0,
            30.0,
        );
        assert_eq!(rect.axis, Point { x: 1.0, y: 0.0 });
        assert_eq!((rect.half_width, rect.half_height), (30.0, 3.0));
        assert_eq!(rect.corners()[0], Point { x: -30.0, y: -3.0 });
    }

    #[test]
    fn regions_drop_weak_and_thin_ones_and_grow_the_rest() {
        let map = map_with(
            64,
            32,
            &[
                (4, 4, 40, 12, 0.9),
                (4, 20, 40, 24, 0.4),
                (50, 4, 60, 5, 0.9),
            ],
        );
        let found = regions(&map, 64, 32, &DetectorOptions::default());
        // The second is too faint on average, the third (2 pixels high) too thin.
        assert_eq!(found.len(), 1);
        let (rect, score) = found[0];
        assert!((score - 0.9).abs() < 1e-6);
        assert!(
            rect.half_width > 18.5 + 3.0 && rect.half_height > 4.5 + 3.0,
            "{rect:?}"
        );
    }

    #[test]
    fn input_size_is_a_multiple_of_32_within_the_side_limits() {
        let options = DetectorOptions::default();
        assert_eq!(input_size(640, 360, &options), (640, 384));
        // Small crops are scaled up to the minimum short side.
        assert_eq!(input_size(440, 140, &options), (1120, 352));
        // Large frames down to the maximum long side.
        assert_eq!(input_size(3840, 2160, &options), (1280, 736));
        // A sliver is bounded by the long side, with at least one 32-pixel row.
        assert_eq!(input_size(100_000, 1, &options), (1280, 32));
    }

    #[test]
    fn crop_straightens_a_quad_and_turns_vertical_lines() {
        let image = RgbImage::from_fn(20, 10, |x, _| Rgb([x as u8 * 10, 0, 0]));
        let line = TextBox {
            quad: [
                Point { x: 2.0, y: 1.0 },
                Point { x: 12.0, y: 1.0 },
                Point { x: 12.0, y: 5.0 },
                Point { x: 2.0, y: 5.0 },
            ],
            bbox: BBox {
                x0: 2.0,
                y0: 1.0,
                x1: 12.0,
                y1: 5.0,
            },
            score: 1.0,
        };
        let crop = line.crop(&image);
        assert_eq!(crop.dimensions(), (10, 4));
        assert_eq!(crop.get_pixel(0, 0), image.get_pixel(2, 1));
        assert_eq!(crop.get_pixel(9, 3), image.get_pixel(11, 4));
        let tall = TextBox {
            quad: [
                Point { x: 2.0, y: 0.0 },
                Point { x: 4.0, y: 0.0 },
                Point { x: 4.0, y: 10.0 },
                Point { x: 2.0, y: 10.0 },
            ],
            ..line.clone()
        };
        assert_eq!(tall.crop(&image).dimensions(), (10, 2));
        assert_eq!(line.crop(&RgbImage::new(0, 0)).dimensions(), (0, 0));
    }
}
