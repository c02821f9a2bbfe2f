//! Vision on ONNX Runtime: the runtime loaded at run time (`runtime`), boxes (`geometry`), and
//! per model family the pre-processing that makes its input tensor and the post-processing that
//! turns its output into detections, faces or text. Everything but `runtime` is plain code over
//! pixels and `f32` slices, testable without a runtime; the tests that need one use the real
//! models `just setup` installs and skip with a message naming what is missing.

pub mod geometry;
pub mod preprocess;
pub mod runtime;
