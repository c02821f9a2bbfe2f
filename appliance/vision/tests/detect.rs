//! YOLOX-nano on the shared test photos, against the numbers of `shared/models.md` §1.

mod support;

use appliance_vision::detect::{DetectError, Detector, DetectorFamily, DetectorSpec};
use appliance_vision::geometry::Detection;
use appliance_vision::preprocess::{ChannelOrder, Layout, Normalisation};
use image::RgbImage;
use support::{model, model_file, photo, runtime};

const PERSON: usize = 0;
const CUP: usize = 41;
const DINING_TABLE: usize = 60;

/// The spec of `appliance/vision/models/yolox_nano.toml`.
fn yolox_spec() -> DetectorSpec {
    DetectorSpec {
        family: DetectorFamily::Yolox,
        width: 416,
        height: 416,
        normalisation: Normalisation {
            channels: ChannelOrder::Bgr,
            layout: Layout::Nchw,
            mean: [0.0; 3],
            std: [1.0; 3],
        },
        pad: [114; 3],
        score_threshold: 0.3,
        nms_iou: 0.45,
    }
}

fn yolox() -> Detector {
    Detector::new(model("yolox_nano", "yolox_nano.onnx"), yolox_spec()).unwrap()
}

fn assert_detection(found: &Detection, class_id: usize, score: f32, bbox: Option<[f32; 4]>) {
    assert_eq!(found.class_id, class_id, "{found:?}");
    // Tight enough to catch RGB fed for BGR (0.918 instead of 0.925 on the astronaut).
    assert!(
        (found.score - score).abs() < 0.005,
        "score {found:?}, expected {score}"
    );
    if let Some(expected) = bbox {
        let got = [found.bbox.x0, found.bbox.y0, found.bbox.x1, found.bbox.y1];
        for (g, e) in got.iter().zip(expected) {
            assert!((g - e).abs() < 2.0, "box {got:?}, expected {expected:?}");
        }
    }
}

#[test]
fn finds_the_person_in_the_astronaut_and_camera_photos() {
    let detector = yolox();
    let astronaut = detector.detect(&[&photo("astronaut.png")]).unwrap();
    assert_eq!(astronaut.len(), 1);
    assert_eq!(astronaut[0].len(), 1, "{:?}", astronaut[0]);
    assert_detection(
        &astronaut[0][0],
        PERSON,
        0.925,
        Some([11.0, 20.0, 368.0, 507.0]),
    );

    // Greyscale: `to_rgb8` repeats the grey in the three channels.
    let camera = detector.detect(&[&photo("camera.png")]).unwrap();
    assert_eq!(camera[0].len(), 1, "{:?}", camera[0]);
    assert_detection(
        &camera[0][0],
        PERSON,
        0.932,
        Some([5.0, 64.0, 302.0, 502.0]),
    );
}

#[test]
fn finds_the_cup_and_the_table_in_the_coffee_photo() {
    let (found, times) = yolox().detect_timed(&[&photo("coffee.png")]).unwrap();
    let found = &found[0];
    assert_eq!(found.len(), 2, "{found:?}");
    assert_detection(&found[0], CUP, 0.899, Some([162.0, 15.0, 422.0, 293.0]));
    assert_detection(&found[1], DINING_TABLE, 0.732, None);
    // Boxes are in the 600x400 frame's pixels, not the model's 416x416.
    assert!(
        found
            .iter()
            .all(|d| d.bbox.x1 <= 600.0 && d.bbox.y1 <= 400.0)
    );
    assert!(times.inference > times.postprocess, "{times:?}");
}

#[test]
fn a_batch_of_frames_gives_what_each_frame_gives_alone() {
    let detector = yolox();
    let photos = [
        photo("astronaut.png"),
        photo("coffee.png"),
        photo("camera.png"),
    ];
    let frames: Vec<&RgbImage> = photos.iter().collect();
    let batch = detector.detect(&frames).unwrap();
    assert_eq!(batch.len(), 3);
    for (frame, together) in frames.iter().zip(&batch) {
        let alone = detector.detect(&[frame]).unwrap();
        assert_eq!(&alone[0], together);
    }
    assert_eq!(
        batch.iter().map(Vec::len).collect::<Vec<_>>(),
        [1, 2, 1],
        "{batch:?}"
    );
    assert!(detector.detect(&[]).unwrap().is_empty());
}

#[test]
fn refuses_a_spec_the_model_does_not_fit() {
    let runtime = runtime();
    let load = || {
        runtime
            .session(&model_file("yolox_nano", "yolox_nano.onnx"))
            .unwrap()
    };
    let yolov8 = DetectorSpec {
        family: DetectorFamily::Yolov8,
        ..yolox_spec()
    };
    let error = Detector::new(load(), yolov8).unwrap_err();
    assert!(matches!(error, DetectError::Model { .. }));
    assert!(error.to_string().contains("YOLOv5 or YOLOX"), "{error}");

    let larger = DetectorSpec {
        width: 640,
        height: 640,
        ..yolox_spec()
    };
    let error = Detector::new(load(), larger).unwrap_err();
    assert!(error.to_string().contains("[1, 3, 416, 416]"), "{error}");

    let nhwc = DetectorSpec {
        normalisation: Normalisation {
            layout: Layout::Nhwc,
            ..yolox_spec().normalisation
        },
        ..yolox_spec()
    };
    assert!(Detector::new(load(), nhwc).is_err());
}
