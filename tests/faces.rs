//! Face detection and landmarks on real photos.

use edge_fer::capture::decode_image;
use edge_fer::detect::{DetectorChoice, FaceFinderConfig};
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
