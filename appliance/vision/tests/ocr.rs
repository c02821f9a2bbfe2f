//! Plate reading with the real PP-OCR models (`.local/models`, installed by `just setup`) on the
//! rendered plates and scenes of `shared/images`; the expected readings and boxes are the
//! reference results of `shared/models.md` §4.

mod support;

use std::sync::OnceLock;

use appliance_vision::geometry::BBox;
use appliance_vision::ocr::{
    OcrError, PlateReader, RecognizerOptions, TextDetector, TextDirection, TextRecognizer,
};
use image::{RgbImage, imageops};
use support::{model, model_file, photo};

fn recognizer() -> TextRecognizer {
    TextRecognizer::new(model("ppocr_rec", "ch_PP-OCRv4_rec_infer.onnx")).unwrap()
}

fn classifier() -> TextDirection {
    TextDirection::new(model("ppocr_cls", "ch_ppocr_mobile_v2.0_cls_infer.onnx"))
}

/// One reader for all tests: a session takes a while to make, and `Model` serialises runs.
fn reader() -> &'static PlateReader {
    static READER: OnceLock<PlateReader> = OnceLock::new();
    READER.get_or_init(|| {
        PlateReader::new(
            TextDetector::new(model("ppocr_det", "ch_PP-OCRv4_det_infer.onnx")),
            Some(classifier()),
            recognizer(),
        )
    })
}

/// The plate number without the separators the recogniser keeps ('·', ' ').
fn plate_number(text: &str) -> String {
    text.chars().filter(|c| c.is_alphanumeric()).collect()
}

#[test]
fn reads_the_chinese_plate_crop() {
    let (line, times) = reader()
        .read_crop_timed(&photo("plate_cn_jingA12345.png"))
        .unwrap();
    eprintln!("plate_cn crop: {line:?} {times:?}");
    assert_eq!(line.text, "京A·12345");
    assert!(line.confidence > 0.95, "{}", line.confidence);
    assert_eq!(
        line.bbox,
        BBox {
            x0: 0.0,
            y0: 0.0,
            x1: 440.0,
            y1: 140.0
        }
    );
}

#[test]
fn reads_the_latin_plate_crop() {
    let line = reader()
        .read_crop(&photo("plate_latin_KA4521.png"))
        .unwrap();
    assert_eq!(line.text, "KA 4521");
    assert!(line.confidence > 0.95, "{}", line.confidence);
}

#[test]
fn the_classifier_finds_upside_down_plates_and_the_reader_turns_them() {
    let cls = classifier();
    for (name, text) in [
        ("plate_cn_jingA12345.png", "京A·12345"),
        ("plate_latin_KA4521.png", "KA 4521"),
    ] {
        let upright = photo(name);
        let upside_down = imageops::rotate180(&upright);
        let found = cls.classify(&[upright, upside_down.clone()]).unwrap();
        assert_eq!(found[0].angle, 0, "{name}: {found:?}");
        assert_eq!(found[1].angle, 180, "{name}: {found:?}");
        assert!(
            found.iter().all(|o| o.confidence > 0.99),
            "{name}: {found:?}"
        );
        let line = reader().read_crop(&upside_down).unwrap();
        assert_eq!(line.text, text, "{name} turned over");
    }
}

#[test]
fn a_batch_reads_like_one_line_at_a_time() {
    let rec = recognizer();
    let lines = [
        photo("plate_latin_KA4521.png"),
        photo("plate_cn_jingA12345.png"),
        imageops::crop_imm(&photo("plate_cn_jingA12345.png"), 0, 0, 440, 70).to_image(),
    ];
    let batch = rec.recognize(&lines).unwrap();
    assert_eq!(batch[0].text, "KA 4521");
    assert_eq!(batch[1].text, "京A·12345");
    for (line, batched) in lines.iter().zip(&batch) {
        let alone = &rec.recognize(std::slice::from_ref(line)).unwrap()[0];
        assert_eq!(alone.text, batched.text);
        assert!((alone.confidence - batched.confidence).abs() < 0.02);
    }
}

#[test]
fn finds_and_reads_the_chinese_plate_in_the_scene() {
    let (lines, times) = reader().read_timed(&photo("scene_plate_cn.png")).unwrap();
    eprintln!("scene_plate_cn: {lines:?} {times:?}");
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0].text, "京A·12345");
    let reference = BBox {
        x0: 186.0,
        y0: 209.0,
        x1: 457.0,
        y1: 267.0,
    };
    assert!(lines[0].bbox.iou(&reference) > 0.5, "{:?}", lines[0].bbox);
}

#[test]
fn finds_and_reads_the_tilted_latin_plate_in_the_scene() {
    let (lines, times) = reader()
        .read_timed(&photo("scene_plate_latin.png"))
        .unwrap();
    eprintln!("scene_plate_latin: {lines:?} {times:?}");
    let plate = lines
        .iter()
        .find(|line| line.text == "KA 4521")
        .unwrap_or_else(|| panic!("no KA 4521 in {lines:?}"));
    let reference = BBox {
        x0: 180.0,
        y0: 197.0,
        x1: 459.0,
        y1: 279.0,
    };
    assert!(plate.bbox.iou(&reference) > 0.5, "{:?}", plate.bbox);
}

#[test]
fn reads_no_plate_in_a_photo_without_one() {
    let (lines, times) = reader().read_timed(&photo("coffee.png")).unwrap();
    eprintln!("coffee: {lines:?} {times:?}");
    for line in &lines {
        let number = plate_number(&line.text);
        assert!(number != "京A12345" && number != "KA4521", "{line:?}");
    }
}

#[test]
fn finds_the_whole_line_in_small_tight_plate_crops() {
    // Scaled up to the minimum short side, the gap of the Latin plate does not split it into
    // "KA" and "4521", as it does at the crop's own size.
    let plate = photo("plate_latin_KA4521.png");
    let half = imageops::resize(&plate, 210, 55, imageops::FilterType::Triangle);
    for crop in [plate, half] {
        let lines = reader().read(&crop).unwrap();
        assert_eq!(lines.len(), 1, "{:?}: {lines:?}", crop.dimensions());
        assert_eq!(lines[0].text, "KA 4521");
        let bbox = lines[0].bbox;
        assert!(bbox.x0 >= 0.0 && bbox.y0 >= 0.0, "{bbox:?}");
        assert!(
            bbox.x1 <= crop.width() as f32 && bbox.y1 <= crop.height() as f32,
            "{bbox:?}"
        );
    }
}

#[test]
fn empty_images_are_errors_not_panics() {
    let reader = reader();
    for empty in [
        RgbImage::new(0, 0),
        RgbImage::new(0, 48),
        RgbImage::new(48, 0),
    ] {
        assert!(matches!(
            reader.read(&empty),
            Err(OcrError::EmptyImage { .. })
        ));
        assert!(matches!(
            reader.read_crop(&empty),
            Err(OcrError::EmptyImage { .. })
        ));
    }
    // A line of one pixel is not empty: it reads as (almost certainly) nothing, without error.
    reader.read_crop(&RgbImage::new(1, 1)).unwrap();
    reader.read(&RgbImage::new(1, 1)).unwrap();
}

#[test]
fn the_alphabet_is_the_keys_file_and_must_fit_the_model() {
    let keys_path = model_file("ppocr_rec", "ppocr_keys_v1.txt");
    let keys: Vec<String> = std::fs::read_to_string(keys_path)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(keys.len(), 6623);
    assert_eq!(recognizer().alphabet(), keys);
    let short = keys[..100].to_vec();
    let wrong = TextRecognizer::with_alphabet(
        model("ppocr_rec", "ch_PP-OCRv4_rec_infer.onnx"),
        short,
        RecognizerOptions::default(),
    );
    assert!(matches!(wrong, Err(OcrError::Alphabet(_))), "{wrong:?}");
}

#[test]
fn a_model_with_the_wrong_outputs_is_an_error() {
    // The detector's [N, 1, H, W] map is no sequence of class probabilities.
    let det_as_rec = TextRecognizer::with_alphabet(
        model("ppocr_det", "ch_PP-OCRv4_det_infer.onnx"),
        recognizer().alphabet().to_vec(),
        // The detector's sides must be multiples of 32.
        RecognizerOptions {
            height: 64,
            ..Default::default()
        },
    )
    .unwrap();
    let error = det_as_rec.recognize(&[RgbImage::new(64, 64)]).unwrap_err();
    assert!(
        matches!(error, OcrError::UnexpectedOutput { .. }),
        "{error:?}"
    );
}
