//! What the integration tests share: the real models that `just setup` installs under
//! `.local/models`, the test photos of `shared/images`, and the ONNX Runtime that runs the
//! models. Each test file is a crate of its own and takes this in with `mod support;`.

use std::path::PathBuf;

use appliance_vision::runtime::{Model, Runtime, RuntimeOptions};
use image::RgbImage;

/// `.local/models/<name>/<file>`, which must be there.
pub fn model_file(name: &str, file: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../.local/models")
        .join(name)
        .join(file);
    assert!(
        path.is_file(),
        "{} missing: run `just setup`",
        path.display()
    );
    path
}

/// ONNX Runtime with the default options (the library `just setup` installs, on the CPU).
pub fn runtime() -> Runtime {
    Runtime::load(RuntimeOptions::default()).expect("ONNX Runtime (run `just setup`)")
}

/// A session of `.local/models/<name>/<file>`.
pub fn model(name: &str, file: &str) -> Model {
    runtime().session(&model_file(name, file)).unwrap()
}

/// `shared/images/<name>` as RGB (a greyscale photo repeats its grey in the three channels).
pub fn photo(name: &str) -> RgbImage {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/images")
        .join(name);
    image::open(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .to_rgb8()
}
