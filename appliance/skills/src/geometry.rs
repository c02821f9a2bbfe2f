//! Points, boxes, polygons and lines in normalised image coordinates: 0..1 on both axes, x to the
//! right, y down, origin at the top-left corner. Zones and lines are drawn by people on a snapshot
//! of whatever resolution the camera streams today, so they are stored independent of it; the
//! pipeline divides detector boxes by the frame size before they get here.
//!
//! Every function is total: non-finite coordinates (a detector's NaN) make a point lie in no zone
//! and cross no line instead of panicking.

use std::borrow::Cow;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

/// Below this a cross product counts as zero. Normalised coordinates are at most 1 apart, so this
/// is far below a pixel of any real frame (1/8192² ≈ 1.5e-8) yet above f64 rounding noise.
const EPSILON: f64 = 1e-12;

/// A point in normalised coordinates. Serialised as `[x, y]`, the form zones and lines are
/// written in.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(from = "[f64; 2]", into = "[f64; 2]")]
pub struct Point {
    pub x: f64,
    pub y: f64,
}

impl Point {
    pub const fn new(x: f64, y: f64) -> Self {
        Self { x, y }
    }

    pub fn is_finite(&self) -> bool {
        self.x.is_finite() && self.y.is_finite()
    }

    /// Whether both coordinates are within the frame, edges included.
    pub fn is_normalised(&self) -> bool {
        (0.0..=1.0).contains(&self.x) && (0.0..=1.0).contains(&self.y)
    }
}

/// In configs, where points are drawn on the image, so within it.
impl JsonSchema for Point {
    fn schema_name() -> Cow<'static, str> {
        "Point".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "array",
            "description": "[x, y] as fractions of the image's width and height, from its top-left corner.",
            "items": {"type": "number", "minimum": 0, "maximum": 1},
            "minItems": 2,
            "maxItems": 2,
        })
    }
}

impl From<[f64; 2]> for Point {
    fn from([x, y]: [f64; 2]) -> Self {
        Self { x, y }
    }
}

impl From<Point> for [f64; 2] {
    fn from(p: Point) -> Self {
        [p.x, p.y]
    }
}

/// An axis-aligned box in normalised coordinates, `x0 <= x1` and `y0 <= y1` when built with
/// [`BBox::new`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BBox {
    pub x0: f64,
    pub y0: f64,
    pub x1: f64,
    pub y1: f64,
}

impl BBox {
    /// A box from two corners in any order. NaN stays NaN (rather than `f64::min` picking the
    /// other corner), so [`BBox::is_finite`] still tells a broken box.
    pub fn new(x0: f64, y0: f64, x1: f64, y1: f64) -> Self {
        let (x0, x1) = if x0 > x1 { (x1, x0) } else { (x0, x1) };
        let (y0, y1) = if y0 > y1 { (y1, y0) } else { (y0, y1) };
        Self { x0, y0, x1, y1 }
    }

    pub fn is_finite(&self) -> bool {
        self.x0.is_finite() && self.y0.is_finite() && self.x1.is_finite() && self.y1.is_finite()
    }

    pub fn width(&self) -> f64 {
        (self.x1 - self.x0).max(0.0)
    }

    pub fn height(&self) -> f64 {
        (self.y1 - self.y0).max(0.0)
    }

    pub fn area(&self) -> f64 {
        self.width() * self.height()
    }

    /// Intersection over union; 0 for boxes without area and for non-finite ones.
    pub fn iou(&self, other: &BBox) -> f64 {
        if !(self.is_finite() && other.is_finite()) {
            return 0.0;
        }
        let w = (self.x1.min(other.x1) - self.x0.max(other.x0)).max(0.0);
        let h = (self.y1.min(other.y1) - self.y0.max(other.y0)).max(0.0);
        let intersection = w * h;
        let union = self.area() + other.area() - intersection;
        if union > 0.0 {
            intersection / union
        } else {
            0.0
        }
    }

    /// The point that stands for the object in zones and on lines: the bottom-centre, where a
    /// person's or a vehicle's feet or wheels touch the ground. Zones and lines are drawn on the
    /// ground (a gate, a lawn, a kerb), and a camera looks down at an angle, so the centre of a
    /// standing person's box is a metre above the ground and, seen from the side, can be over a
    /// zone the person is not in; the feet are where they are.
    pub fn reference_point(&self) -> Point {
        Point::new((self.x0 + self.x1) / 2.0, self.y1)
    }

    /// The smallest box holding both.
    pub fn union(&self, other: &BBox) -> BBox {
        BBox {
            x0: self.x0.min(other.x0),
            y0: self.y0.min(other.y0),
            x1: self.x1.max(other.x1),
            y1: self.y1.max(other.y1),
        }
    }
}

/// Twice the signed area of the triangle `a b c`: the z of `(b - a) × (c - a)`. With y down it is
/// positive when `c` lies clockwise of `a → b` as the image is displayed.
fn cross(a: Point, b: Point, c: Point) -> f64 {
    (b.x - a.x) * (c.y - a.y) - (b.y - a.y) * (c.x - a.x)
}

/// Whether `p`, known to be on the infinite line through `a` and `b`, is within their bounds.
fn within_segment(a: Point, b: Point, p: Point) -> bool {
    p.x >= a.x.min(b.x) - EPSILON
        && p.x <= a.x.max(b.x) + EPSILON
        && p.y >= a.y.min(b.y) - EPSILON
        && p.y <= a.y.max(b.y) + EPSILON
}

/// Whether `p` is inside `polygon` by the even-odd rule. A point on an edge or a vertex counts as
/// inside, so someone standing exactly on a zone's border is in the zone and a point on the
/// shared edge of two adjacent zones is in both, rather than in either depending on rounding.
/// Polygons with fewer than three points and non-finite points contain nothing.
pub fn point_in_polygon(p: Point, polygon: &[Point]) -> bool {
    if polygon.len() < 3 || !p.is_finite() {
        return false;
    }
    let mut inside = false;
    let mut j = polygon.len() - 1;
    for (i, &a) in polygon.iter().enumerate() {
        let b = polygon[j];
        if cross(a, b, p).abs() <= EPSILON && within_segment(a, b, p) {
            return true;
        }
        // Half-open in y (one endpoint above, the other at or below), so a ray through a vertex
        // is counted once for the two edges that meet there.
        if (a.y > p.y) != (b.y > p.y) {
            let x = a.x + (p.y - a.y) * (b.x - a.x) / (b.y - a.y);
            if p.x < x {
                inside = !inside;
            }
        }
        j = i;
    }
    inside
}

/// The area of a polygon (shoelace formula, absolute value). Used to reject zones whose points
/// are all on one line.
pub fn polygon_area(polygon: &[Point]) -> f64 {
    if polygon.len() < 3 {
        return 0.0;
    }
    let mut twice = 0.0;
    let mut j = polygon.len() - 1;
    for (i, a) in polygon.iter().enumerate() {
        let b = polygon[j];
        twice += (b.x - a.x) * (b.y + a.y);
        j = i;
    }
    (twice / 2.0).abs()
}

/// Whether segment `a b` and segment `c d` have a point in common, touching and collinear
/// overlap included.
pub fn segments_intersect(a: Point, b: Point, c: Point, d: Point) -> bool {
    if !(a.is_finite() && b.is_finite() && c.is_finite() && d.is_finite()) {
        return false;
    }
    let sign = |v: f64| {
        if v > EPSILON {
            1
        } else if v < -EPSILON {
            -1
        } else {
            0
        }
    };
    let d1 = sign(cross(c, d, a));
    let d2 = sign(cross(c, d, b));
    let d3 = sign(cross(a, b, c));
    let d4 = sign(cross(a, b, d));
    if d1 * d2 < 0 && d3 * d4 < 0 {
        return true;
    }
    (d1 == 0 && within_segment(c, d, a))
        || (d2 == 0 && within_segment(c, d, b))
        || (d3 == 0 && within_segment(a, b, c))
        || (d4 == 0 && within_segment(a, b, d))
}

/// Which side of a directed line a point is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// On the left hand of someone walking the line from `from` to `to`, as the image is
    /// displayed: above a line drawn left to right, right of a line drawn top to bottom.
    Left,
    Right,
    /// On the (infinite) line itself, or not a finite point.
    On,
}

/// The side of the directed line `from → to` that `p` is on.
pub fn side_of_line(from: Point, to: Point, p: Point) -> Side {
    // With y down, the cross product is negative for points counter-clockwise of the direction
    // on screen, i.e. on the walker's left.
    let c = cross(from, to, p);
    if c < -EPSILON {
        Side::Left
    } else if c > EPSILON {
        Side::Right
    } else {
        Side::On
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn square() -> Vec<Point> {
        [[0.2, 0.2], [0.6, 0.2], [0.6, 0.6], [0.2, 0.6]]
            .into_iter()
            .map(Point::from)
            .collect()
    }

    #[test]
    fn point_in_polygon_inside_outside_edges_and_vertices() {
        let sq = square();
        assert!(point_in_polygon(Point::new(0.4, 0.4), &sq));
        assert!(!point_in_polygon(Point::new(0.7, 0.4), &sq));
        assert!(!point_in_polygon(Point::new(0.1, 0.2), &sq));
        // Edges and corners are inside.
        assert!(point_in_polygon(Point::new(0.2, 0.4), &sq));
        assert!(point_in_polygon(Point::new(0.6, 0.4), &sq));
        assert!(point_in_polygon(Point::new(0.4, 0.6), &sq));
        assert!(point_in_polygon(Point::new(0.6, 0.6), &sq));
        // A ray through a vertex from outside counts once.
        let diamond: Vec<Point> = [[0.5, 0.1], [0.9, 0.5], [0.5, 0.9], [0.1, 0.5]]
            .into_iter()
            .map(Point::from)
            .collect();
        assert!(!point_in_polygon(Point::new(0.05, 0.5), &diamond));
        assert!(point_in_polygon(Point::new(0.3, 0.5), &diamond));
        assert!(!point_in_polygon(Point::new(0.95, 0.5), &diamond));
    }

    #[test]
    fn concave_polygon_and_degenerate_inputs() {
        // A U shape: the notch is outside.
        let u: Vec<Point> = [
            [0.0, 0.0],
            [0.3, 0.0],
            [0.3, 0.7],
            [0.6, 0.7],
            [0.6, 0.0],
            [0.9, 0.0],
            [0.9, 1.0],
            [0.0, 1.0],
        ]
        .into_iter()
        .map(Point::from)
        .collect();
        assert!(!point_in_polygon(Point::new(0.45, 0.3), &u));
        assert!(point_in_polygon(Point::new(0.45, 0.8), &u));
        assert!(point_in_polygon(Point::new(0.1, 0.3), &u));

        assert!(!point_in_polygon(Point::new(0.4, 0.4), &[]));
        assert!(!point_in_polygon(Point::new(0.4, 0.4), &square()[..2]));
        assert!(!point_in_polygon(Point::new(f64::NAN, 0.4), &square()));
        let mut nan_zone = square();
        nan_zone[1].x = f64::NAN;
        let _ = point_in_polygon(Point::new(0.4, 0.4), &nan_zone);
    }

    #[test]
    fn polygon_area_of_square_and_collinear_points() {
        assert!((polygon_area(&square()) - 0.16).abs() < 1e-12);
        let flat: Vec<Point> = [[0.1, 0.1], [0.5, 0.5], [0.9, 0.9]]
            .into_iter()
            .map(Point::from)
            .collect();
        assert!(polygon_area(&flat) < 1e-12);
    }

    #[test]
    fn segment_intersection_cases() {
        let p = Point::new;
        assert!(segments_intersect(
            p(0.0, 0.0),
            p(1.0, 1.0),
            p(0.0, 1.0),
            p(1.0, 0.0)
        ));
        assert!(!segments_intersect(
            p(0.0, 0.0),
            p(0.4, 0.4),
            p(0.0, 1.0),
            p(1.0, 0.0)
        ));
        // Touching at an endpoint.
        assert!(segments_intersect(
            p(0.0, 0.0),
            p(0.5, 0.5),
            p(0.5, 0.5),
            p(1.0, 0.0)
        ));
        // Collinear, overlapping and disjoint.
        assert!(segments_intersect(
            p(0.0, 0.0),
            p(0.5, 0.0),
            p(0.4, 0.0),
            p(1.0, 0.0)
        ));
        assert!(!segments_intersect(
            p(0.0, 0.0),
            p(0.3, 0.0),
            p(0.4, 0.0),
            p(1.0, 0.0)
        ));
        // Parallel.
        assert!(!segments_intersect(
            p(0.0, 0.0),
            p(1.0, 0.0),
            p(0.0, 0.1),
            p(1.0, 0.1)
        ));
        assert!(!segments_intersect(
            p(f64::NAN, 0.0),
            p(1.0, 1.0),
            p(0.0, 1.0),
            p(1.0, 0.0)
        ));
    }

    #[test]
    fn sides_of_a_directed_line_as_displayed() {
        let p = Point::new;
        // Drawn left to right: above (smaller y) is the walker's left.
        let (from, to) = (p(0.0, 0.5), p(1.0, 0.5));
        assert_eq!(side_of_line(from, to, p(0.5, 0.2)), Side::Left);
        assert_eq!(side_of_line(from, to, p(0.5, 0.8)), Side::Right);
        assert_eq!(side_of_line(from, to, p(0.3, 0.5)), Side::On);
        // Drawn top to bottom: the walker's left is the right of the image.
        let (from, to) = (p(0.5, 0.0), p(0.5, 1.0));
        assert_eq!(side_of_line(from, to, p(0.8, 0.5)), Side::Left);
        assert_eq!(side_of_line(from, to, p(0.2, 0.5)), Side::Right);
        assert_eq!(side_of_line(from, to, p(f64::NAN, 0.5)), Side::On);
    }

    #[test]
    fn bbox_iou_reference_point_and_union() {
        let a = BBox::new(0.0, 0.0, 0.2, 0.2);
        assert_eq!(a.iou(&a), 1.0);
        assert_eq!(a.iou(&BBox::new(0.5, 0.5, 0.6, 0.6)), 0.0);
        let half = BBox::new(0.1, 0.0, 0.3, 0.2);
        assert!((a.iou(&half) - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!(BBox::new(0.2, 0.4, 0.0, 0.0), BBox::new(0.0, 0.0, 0.2, 0.4));
        assert_eq!(
            BBox::new(0.1, 0.2, 0.3, 0.8).reference_point(),
            Point::new(0.2, 0.8)
        );
        assert_eq!(a.union(&half), BBox::new(0.0, 0.0, 0.3, 0.2));
        let nan = BBox::new(f64::NAN, 0.0, 0.1, 0.1);
        assert!(!nan.is_finite());
        assert_eq!(nan.iou(&a), 0.0);
    }
}
