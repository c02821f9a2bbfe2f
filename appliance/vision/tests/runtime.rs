//! ONNX Runtime as `just setup` installs it, with the real models (`.local/models`).

// `photo` is for the tests on images; the rest of `support` is used here.
#[allow(dead_code)]
mod support;

use appliance_vision::runtime::{Input, Provider, Runtime, RuntimeOptions};
use support::{model, model_file};

#[test]
fn loads_the_library_and_runs_a_model_with_providers_falling_back_to_the_cpu() {
    let runtime = Runtime::load(RuntimeOptions {
        // Not in the PyPI build: skipped with a logged reason, the CPU takes over.
        providers: vec![Provider::Tensorrt, Provider::Cuda, Provider::Cpu],
        ..Default::default()
    })
    .expect("ONNX Runtime from .local (run `just setup`)");
    let model = runtime
        .session(&model_file("yolox_nano", "yolox_nano.onnx"))
        .unwrap();
    assert_eq!(model.providers(), [Provider::Cpu]);
    assert_eq!(model.inputs()[0].name, "images");
    assert_eq!(model.inputs()[0].shape, [1, 3, 416, 416]);
    let data = vec![114.0; 3 * 416 * 416];
    let outputs = model
        .run(&[Input {
            shape: &[1, 3, 416, 416],
            data: &data,
        }])
        .unwrap();
    assert_eq!(outputs[0].shape, [1, 3549, 85]);
    assert_eq!(outputs[0].data.len(), 3549 * 85);

    let wrong = model.run(&[Input {
        shape: &[1, 3, 416, 416],
        data: &data[..10],
    }]);
    assert!(
        wrong
            .unwrap_err()
            .to_string()
            .contains("does not hold 10 values")
    );
}

#[test]
fn reads_the_alphabet_from_the_recogniser_metadata() {
    let model = model("ppocr_rec", "ch_PP-OCRv4_rec_infer.onnx");
    let alphabet = model
        .metadata("character")
        .expect("PP-OCR keeps its keys there");
    assert_eq!(alphabet.lines().count(), 6623);
}
