//! The BlazeFace detector: the converted model under tract against onnxruntime, the Rust decoding
//! against mediapipe's own detections, and its boxes feeding dlib's landmarks.

use edge_fer::blazeface::{BlazeFace, Letterbox, INPUT};
use edge_fer::capture::decode_image;
use edge_fer::detect::{DetectorChoice, FaceFinderConfig};
use edge_fer::{Error, FaceFinder};
use serde_json::Value;

use crate::util::{fixture, repo, with_finder, write_truncated, LANDSCAPE, PORTRAITS};

fn json(path: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(repo(path)).unwrap()).unwrap()
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

fn blazeface_finder() -> FaceFinder {
    FaceFinder::load(&FaceFinderConfig {
        detector: DetectorChoice::BlazeFace(None),
        ..FaceFinderConfig::default()
    })
    .unwrap()
}

#[test]
fn tract_reproduces_onnxruntime_on_the_reference_input() {
    let reference = json("models/blazeface-short-range/reference.json");
    let img = image::open(repo("models/blazeface-short-range/reference-input.png"))
        .unwrap()
        .to_rgb8();
    assert_eq!(img.dimensions(), (INPUT, INPUT));
    let input: Vec<f32> = img
        .as_raw()
        .iter()
        .map(|&v| f32::from(v) / 127.5 - 1.0)
        .collect();
    let (regressors, logits) = BlazeFace::builtin().unwrap().raw(&input).unwrap();
    let want = floats(&reference["scores"]);
    assert_eq!(logits.len(), want.len());
    let worst = logits
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    assert!(worst < 1e-3, "score logits differ by up to {worst}");
    for (anchor, row) in reference["top_anchors"]
        .as_array()
        .unwrap()
        .iter()
        .zip(reference["top_regressors"].as_array().unwrap())
    {
        let at = anchor.as_u64().unwrap() as usize * 16;
        for (got, want) in regressors[at..at + 16].iter().zip(floats(row)) {
            // Offsets are in input pixels (0-128).
            assert!(
                (got - want).abs() < 1e-2,
                "anchor {anchor}: {got} vs {want}"
            );
        }
    }
}

#[test]
fn detections_match_mediapipe_on_the_fixture_photos() {
    let reference = json("models/blazeface-short-range/mediapipe-detections.json");
    let detector = BlazeFace::builtin().unwrap();
    for (name, expected) in reference["photos"].as_object().unwrap() {
        let img = decode_image(&fixture(name)).unwrap();
        let (w, h) = (img.width() as f32, img.height() as f32);
        let found = detector.detect(&img).unwrap();
        let expected = expected.as_array().unwrap();
        assert_eq!(found.len(), expected.len(), "{name}: {found:?}");
        for (got, want) in found.iter().zip(expected) {
            // mediapipe gives the box as (xmin, ymin, width, height) of the photo's size; our
            // resampling differs from its own, so allow 2 % of the longer side.
            let tol = 0.02 * w.max(h);
            let b = floats(&want["box"]);
            let want_box = [b[0] * w, b[1] * h, (b[0] + b[2]) * w, (b[1] + b[3]) * h];
            for (g, e) in got.bbox.iter().zip(want_box) {
                assert!(
                    (g - e).abs() < tol,
                    "{name}: box {:?} vs {want_box:?}",
                    got.bbox
                );
            }
            for (g, e) in got
                .keypoints
                .iter()
                .zip(want["keypoints"].as_array().unwrap())
            {
                let e = floats(e);
                assert!(
                    (g[0] - e[0] * w).abs() < tol && (g[1] - e[1] * h).abs() < tol,
                    "{name}: key point {g:?} vs {e:?}"
                );
            }
            let score = want["score"].as_f64().unwrap() as f32;
            assert!(
                (got.score - score).abs() < 0.05,
                "{name}: {} vs {score}",
                got.score
            );
        }
    }
}

#[test]
fn one_face_on_each_portrait_none_on_the_landscape() {
    let finder = blazeface_finder();
    for name in PORTRAITS {
        let img = decode_image(&fixture(name)).unwrap();
        assert_eq!(finder.find(&img).len(), 1, "{name}");
    }
    let img = decode_image(&fixture(LANDSCAPE)).unwrap();
    assert!(finder.find(&img).is_empty());
}

#[test]
fn mapped_boxes_give_hogs_landmarks() {
    let finder = blazeface_finder();
    let errors: Vec<f32> = PORTRAITS
        .iter()
        .map(|name| {
            let img = decode_image(&fixture(name)).unwrap();
            let by_hog = with_finder(|f| f.find(&img));
            let by_blaze = finder.find(&img);
            by_blaze[0].landmarks.error_against(&by_hog[0].landmarks)
        })
        .collect();
    let mean = errors.iter().sum::<f32>() / errors.len() as f32;
    // The mean over the portraits is the measure; each face must at least be the same
    // face (a box off by a feature's width gives errors of 0.2 and more).
    assert!(mean <= 0.03, "per portrait {errors:?}");
    assert!(errors.iter().all(|&e| e < 0.06), "per portrait {errors:?}");
}

#[test]
fn a_landscape_frame_is_letterboxed_and_mapped_back() {
    // Grace Hopper's portrait, placed off-centre in a wide frame: her face comes back where it
    // was put. (Her face is 25 px wide in the model's input there; much smaller ones are missed.)
    let photo = decode_image(&fixture("grace_hopper_512x512.jpg")).unwrap();
    let mut frame = image::RgbImage::from_pixel(1024, 512, image::Rgb([90, 90, 90]));
    image::imageops::overlay(&mut frame, &photo, 512, 0);
    let detector = BlazeFace::builtin().unwrap();
    let alone = detector.detect(&photo).unwrap();
    let placed = detector.detect(&frame).unwrap();
    assert_eq!((alone.len(), placed.len()), (1, 1));
    assert_eq!(Letterbox::new(1024, 512).pad, (0, 32));
    for (i, (a, p)) in alone[0].bbox.iter().zip(placed[0].bbox).enumerate() {
        let shift = if i % 2 == 0 { 512.0 } else { 0.0 };
        // Within 3 of the model's input pixels (8 frame pixels each here): the face has half the
        // resolution it had alone. A letterbox mistake is off by the padding, 32 input pixels.
        assert!(
            (a + shift - p).abs() < 24.0,
            "{:?} vs {:?}",
            alone[0].bbox,
            placed[0].bbox
        );
    }
}

#[test]
fn a_truncated_model_is_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("blazeface.onnx");
    write_truncated(&repo("models/blazeface-short-range/model.onnx"), &path, 2);
    let err = BlazeFace::load(&path).unwrap_err();
    assert!(matches!(err, Error::ModelLoad { .. }), "{err:?}");
    assert!(err.to_string().contains("blazeface.onnx"), "{err}");
}

#[test]
fn a_model_of_another_shape_is_refused_naming_the_file() {
    // The expression model: one 64x64 grey input and one output.
    let path = repo("models/fer2013-mini-xception/model.onnx");
    let err = BlazeFace::load(&path).unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, Error::ModelLoad { .. }), "{err:?}");
    assert!(
        message.contains("fer2013-mini-xception/model.onnx"),
        "{message}"
    );
    assert!(message.contains("outputs"), "{message}");
    let missing = BlazeFace::load(&repo("models/none.onnx")).unwrap_err();
    assert!(matches!(missing, Error::MissingModel { .. }), "{missing:?}");
}
