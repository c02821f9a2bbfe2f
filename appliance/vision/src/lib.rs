//! Vision on ONNX Runtime: the runtime loaded at run time (`runtime`), boxes (`geometry`), and
//! per model family the pre-processing that makes its input tensor and the post-processing that
//! turns its output into detections, faces or text. Everything but `runtime` is plain code over
//! pixels and `f32` slices, testable without a runtime; the tests that need one use the real
//! models `just setup` installs and fail with a message saying so when they are missing.

pub mod annotate;
pub mod batch;
pub mod detect;
pub mod face;
pub mod geometry;
pub mod models;
pub mod ocr;
pub mod preprocess;
pub mod registry;
pub mod runtime;
