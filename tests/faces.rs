//! Face detection and landmarks on real photos.

use std::path::Path;

use edge_fer::capture::decode_image;
use edge_fer::detect::{DetectorChoice, FaceBox, FaceFinderConfig, Landmarks};
use edge_fer::FaceFinder;

use crate::util::{fixture, repo, with_finder, LANDSCAPE, PORTRAITS};

#[test]
fn one_face_on_each_portrait_none_on_the_landscape() {
    for name in PORTRAITS {
        let img = decode_image(&fixture(name)).unwrap();
        let faces = with_finder(|f| f.find(&img));
        assert_eq!(faces.len(), 1, "{name}: {faces:?}");
    }
    let img = decode_image(&fixture(LANDSCAPE)).unwrap();
    assert!(with_finder(|f| f.find(&img)).is_empty());
}

#[test]
fn landmarks_lie_in_the_box_with_eyes_above_the_mouth() {
    for name in PORTRAITS {
        let img = decode_image(&fixture(name)).unwrap();
        let face = with_finder(|f| f.find(&img)).remove(0);
        let b = face.bbox;
        // dlib's HOG box is tight on the inner face; the jaw and brows may stick out a little.
        let (mx, my) = (
            0.2 * (b.right - b.left) as f32,
            0.2 * (b.bottom - b.top) as f32,
        );
        for (i, [x, y]) in face.landmarks.0.iter().copied().enumerate() {
            assert!(
                x >= b.left as f32 - mx
                    && x <= b.right as f32 + mx
                    && y >= b.top as f32 - my
                    && y <= b.bottom as f32 + my,
                "{name}: landmark {i} ({x}, {y}) far outside {b:?}"
            );
        }
        let mean_y = |r: std::ops::Range<usize>| {
            let n = r.len() as f32;
            face.landmarks.0[r].iter().map(|p| p[1]).sum::<f32>() / n
        };
        let (eyes, mouth) = (mean_y(36..48), mean_y(48..68));
        assert!(eyes < mouth, "{name}: eyes at y={eyes}, mouth at y={mouth}");
        // The eye on the image's left is on the left.
        assert!(face.landmarks.0[36][0] < face.landmarks.0[45][0], "{name}");
    }
}

#[test]
fn cnn_detector_agrees_with_hog_on_a_portrait() {
    let cnn = FaceFinder::load(&FaceFinderConfig {
        detector: DetectorChoice::Mmod(repo(
            "models/dlib-mmod-face-detector/mmod_human_face_detector.dat",
        )),
        ..FaceFinderConfig::default()
    })
    .unwrap();
    let img = decode_image(&fixture("grace_hopper_512x512.jpg")).unwrap();
    let by_cnn = cnn.find(&img);
    let by_hog = with_finder(|f| f.find(&img));
    assert_eq!(by_cnn.len(), 1, "{by_cnn:?}");
    // Different detectors draw different boxes, but on the same face: centres within 15% of width.
    let centre = |b: &edge_fer::detect::FaceBox| {
        (
            (b.left + b.right) as f32 / 2.0,
            (b.top + b.bottom) as f32 / 2.0,
        )
    };
    let (c1, c2) = (centre(&by_cnn[0].bbox), centre(&by_hog[0].bbox));
    let w = (by_hog[0].bbox.right - by_hog[0].bbox.left) as f32;
    assert!(
        (c1.0 - c2.0).abs() < 0.15 * w && (c1.1 - c2.1).abs() < 0.15 * w,
        "{c1:?} vs {c2:?}"
    );
}

#[test]
fn landmarks_in_the_detected_box_equal_the_detectors_own() {
    // Fitting in a known box is the same predictor run: in the detector's box it reproduces the
    // detector's landmarks exactly, and in a box shifted by 6 px the points follow the shift.
    let img = decode_image(&fixture(PORTRAITS[0])).unwrap();
    let face = with_finder(|f| f.find(&img)).remove(0);
    let again = with_finder(|f| f.landmarks_in(&img, face.bbox));
    assert_eq!(again, face.landmarks);
    let mut shifted = face.bbox;
    shifted.left += 6;
    shifted.right += 6;
    let moved = with_finder(|f| f.landmarks_in(&img, shifted));
    let dx: f32 = (0..68)
        .map(|k| moved.0[k][0] - face.landmarks.0[k][0])
        .sum::<f32>()
        / 68.0;
    assert!(
        dx.abs() < 6.0,
        "the fit follows the face, not the box: {dx}"
    );
}

#[test]
fn landmarks_are_dlibs_own_predictors() {
    // edge-fer runs dlib's model file in Rust (src/shape_predictor); dlib's own predictor, on the
    // same photos and boxes, is the reference: the detected box, boxes shifted and resized
    // around it, and one half outside the frame.
    use dlib_face_recognition::{LandmarkPredictor, LandmarkPredictorTrait};
    let dlib = LandmarkPredictor::open(edge_fer::detect::DEFAULT_LANDMARKS_MODEL).unwrap();
    let (mut points, mut same) = (0usize, 0usize);
    for name in PORTRAITS {
        let img = decode_image(&fixture(name)).unwrap();
        let matrix = dlib_copy(&img);
        let found = with_finder(|f| f.find(&img)).remove(0).bbox;
        let side = found.right - found.left;
        let mut boxes = vec![found];
        for (dx, dy, grow) in [
            (7, -5, 0),
            (-11, 9, 0),
            (0, 0, side / 8),
            (3, 4, -side / 10),
        ] {
            boxes.push(FaceBox {
                left: found.left + dx - grow,
                top: found.top + dy - grow,
                right: found.right + dx + grow,
                bottom: found.bottom + dy + grow,
            });
        }
        boxes.push(FaceBox {
            left: -side / 2,
            top: found.top,
            right: side / 2,
            bottom: found.bottom,
        });
        for b in boxes {
            let ours = with_finder(|f| f.landmarks_in(&img, b));
            let rect = dlib_face_recognition::Rectangle {
                left: b.left as _,
                top: b.top as _,
                right: b.right as _,
                bottom: b.bottom as _,
            };
            let mut theirs = Landmarks([[0.0; 2]; 68]);
            for (dst, p) in theirs
                .0
                .iter_mut()
                .zip(dlib.face_landmarks(&matrix, &rect).iter())
            {
                *dst = [p.x() as f32, p.y() as f32];
            }
            // dlib rounds its points to whole pixels; ours are those points before rounding.
            for (p, q) in ours.0.iter().zip(&theirs.0) {
                points += 1;
                same += usize::from(p[0].round() == q[0] && p[1].round() == q[1]);
            }
        }
    }
    // All of them do on x86_64 (measured); the margin is for a compiler that fuses dlib's
    // multiply-adds (aarch64), where a pixel sampled one step over can turn a split.
    assert!(
        same as f32 >= 0.99 * points as f32,
        "only {same} of {points} points round to dlib's"
    );
}

#[test]
fn a_damaged_landmark_model_is_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let cut = dir.path().join("lm.dat");
    crate::util::write_truncated(
        Path::new(edge_fer::detect::DEFAULT_LANDMARKS_MODEL),
        &cut,
        3,
    );
    let err = FaceFinder::load(&FaceFinderConfig {
        landmarks_model: cut.clone(),
        ..FaceFinderConfig::default()
    })
    .err()
    .expect("a truncated landmark model was accepted")
    .to_string();
    assert!(
        err.contains(&cut.display().to_string()) && err.contains("ends here"),
        "{err}"
    );
}

#[test]
fn hog_boxes_are_dlibs_own() {
    // edge-fer builds dlib's HOG detector from the shipped bytes (src/hog.rs); the crate's
    // FaceDetector (dlib's own constructor) on the same photos is the reference.
    use dlib_face_recognition::{FaceDetector, FaceDetectorTrait};
    let dlib = FaceDetector::new();
    let ours = edge_fer::hog::HogDetector::builtin().unwrap();
    let mut faces = 0;
    for name in PORTRAITS.iter().chain([&LANDSCAPE]) {
        let img = decode_image(&fixture(name)).unwrap();
        let matrix = dlib_copy(&img);
        let theirs: Vec<FaceBox> = dlib
            .face_locations(&matrix)
            .iter()
            // dlib's `long`: i64 here, i32 on armv7.
            .map(
                #[allow(clippy::unnecessary_cast)]
                |r| FaceBox {
                    left: r.left as i64,
                    top: r.top as i64,
                    right: r.right as i64,
                    bottom: r.bottom as i64,
                },
            )
            .collect();
        assert_eq!(ours.detect(&img), theirs, "{name}");
        faces += theirs.len();
    }
    assert!(faces >= PORTRAITS.len(), "dlib found only {faces} faces");
}

#[test]
fn the_shipped_hog_detector_is_a_fresh_export_of_dlibs() {
    let shipped = std::fs::read(repo("models/dlib-hog-frontal/frontal_face_detector.dat")).unwrap();
    let exported = edge_fer::hog::HogDetector::export_dlibs_own().expect("dlib's export");
    assert!(
        shipped == exported,
        "models/dlib-hog-frontal/ differs from dlib's detector: run its export.sh"
    );
    assert_eq!(
        edge_fer::checksum::sha256_hex(&shipped),
        edge_fer::hog::HOG_SHA256
    );
}

/// `img` in dlib's image type, for the tests that run dlib's own code as the reference.
fn dlib_copy(img: &image::RgbImage) -> dlib_face_recognition::ImageMatrix {
    let (w, h) = img.dimensions();
    // SAFETY: a packed RGB8 buffer of w * h * 3 bytes, copied by the call.
    unsafe {
        dlib_face_recognition::ImageMatrix::new(w as usize, h as usize, img.as_raw().as_ptr())
    }
}
