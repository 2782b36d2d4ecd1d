//! Following faces between detections, on a real portrait drifting across 640x480 frames, with
//! the real dlib models.

use std::sync::{Mutex, OnceLock};

use edge_fer::detect::DetectorChoice;
use edge_fer::track::{TrackConfig, Tracker};
use edge_fer::{FaceFinder, FaceFinderConfig};
use image::RgbImage;

use crate::util::{edge_fer, fixture, json_lines, stderr, with_finder, LANDSCAPE};

/// What a camera runs with by default: BlazeFace, detecting every 5th frame (HOG would detect at
/// 480 px).
const CAMERA_DEFAULTS: TrackConfig = TrackConfig {
    detect_every: 5,
    detect_width: 480,
    end_ghosts: true,
};

fn with_blazeface<T>(f: impl FnOnce(&FaceFinder) -> T) -> T {
    static FINDER: OnceLock<Mutex<FaceFinder>> = OnceLock::new();
    let finder = FINDER.get_or_init(|| {
        Mutex::new(
            FaceFinder::load(&FaceFinderConfig {
                detector: DetectorChoice::BlazeFace(None),
                ..FaceFinderConfig::default()
            })
            .expect("loading BlazeFace and the landmarks"),
        )
    });
    let guard = finder.lock().unwrap_or_else(|e| e.into_inner());
    f(&guard)
}

/// The landscape photo stretched to 640x480: a wall with texture behind the visitor.
fn landscape() -> RgbImage {
    let img = image::open(fixture(LANDSCAPE)).unwrap().to_rgb8();
    image::imageops::resize(&img, 640, 480, image::imageops::FilterType::Triangle)
}

/// Frame `i` over `background`: the drifting portrait, or the background alone.
fn over(background: &RgbImage, portrait: &RgbImage, i: i64, face: bool) -> RgbImage {
    let mut frame = background.clone();
    if face {
        image::imageops::overlay(&mut frame, portrait, 60 + 3 * i, 40 + i);
    }
    frame
}

/// Frame `i` of Grace Hopper's portrait (360 px, face ~190 px) drifting 3 px right and 1 px down
/// per frame over grey; `None` for the face gives an empty frame (the visitor walked away).
fn frame(portrait: &RgbImage, i: i64, face: bool) -> RgbImage {
    let mut frame = RgbImage::from_pixel(640, 480, image::Rgb([90, 90, 90]));
    if face {
        image::imageops::overlay(&mut frame, portrait, 60 + 3 * i, 40 + i);
    }
    frame
}

fn portrait() -> RgbImage {
    let img = image::open(fixture("grace_hopper_512x512.jpg"))
        .unwrap()
        .to_rgb8();
    image::imageops::resize(&img, 360, 360, image::imageops::FilterType::Triangle)
}

fn mean_distance(a: &edge_fer::Landmarks, b: &edge_fer::Landmarks) -> f32 {
    a.0.iter()
        .zip(&b.0)
        .map(|(p, q)| (p[0] - q[0]).hypot(p[1] - q[1]))
        .sum::<f32>()
        / 68.0
}

#[test]
fn a_moving_face_keeps_its_track_and_its_landmarks_between_detections() {
    let portrait = portrait();
    let mut tracker = Tracker::new(TrackConfig {
        detect_every: 4,
        detect_width: 480,
        end_ghosts: true,
    });
    with_finder(|finder| {
        for i in 0..12 {
            let rgb = frame(&portrait, i, true);
            let (faces, _) = tracker.update(finder, &rgb);
            assert_eq!(faces.len(), 1, "frame {i}");
            let f = &faces[0];
            assert_eq!(f.track, 1, "frame {i}: one face, one track");
            assert_eq!(
                f.detected,
                i % 4 == 0,
                "frame {i}: detected only every 4th frame"
            );
            // What a fresh detection (at the same width) finds in the same frame.
            let truth = &finder.find_downscaled(&rgb, 480).0[0];
            let d = mean_distance(&f.face.landmarks, &truth.landmarks);
            assert!(
                d < 3.0,
                "frame {i}: landmarks {d:.2} px from a fresh detection"
            );
            let iou = f.face.bbox.iou(&truth.bbox);
            assert!(
                iou > 0.7,
                "frame {i}: box IoU {iou:.2} with a fresh detection"
            );
        }
    });
}

#[test]
fn a_face_that_leaves_is_gone_by_the_next_detection() {
    let portrait = portrait();
    let mut tracker = Tracker::new(TrackConfig {
        detect_every: 3,
        detect_width: 0,
        end_ghosts: true,
    });
    with_finder(|finder| {
        assert_eq!(
            tracker.update(finder, &frame(&portrait, 0, true)).0.len(),
            1
        );
        // Gone from frame 1 on: following may hold a ghost until the next detection (frame 3),
        // never after it.
        let counts: Vec<usize> = (1..7)
            .map(|i| tracker.update(finder, &frame(&portrait, i, false)).0.len())
            .collect();
        assert!(counts[2..].iter().all(|&c| c == 0), "{counts:?}");
        // Back: a new track.
        let (faces, _) = tracker.update(finder, &frame(&portrait, 7, true));
        assert_eq!(faces.len(), 1);
        assert_eq!(faces[0].track, 2);
    });
}

#[test]
fn with_the_camera_defaults_a_face_that_leaves_ends_its_track_within_two_frames() {
    let portrait = portrait();
    let grey = RgbImage::from_pixel(640, 480, image::Rgb([90, 90, 90]));
    let backgrounds = [("grey", grey), ("landscape", landscape())];
    with_blazeface(|finder| {
        for (name, background) in &backgrounds {
            // Leaving at every phase of the detection cycle.
            for leave in 1..=6 {
                let mut tracker = Tracker::new(CAMERA_DEFAULTS);
                for i in 0..leave {
                    let (faces, _) = tracker.update(finder, &over(background, &portrait, i, true));
                    assert_eq!(faces.len(), 1, "{name}, frame {i}: the face is there");
                    assert_eq!(faces[0].track, 1, "{name}, frame {i}");
                }
                let after: Vec<usize> = (leave..leave + 4)
                    .map(|i| {
                        let frame = over(background, &portrait, i, false);
                        tracker.update(finder, &frame).0.len()
                    })
                    .collect();
                // The first frame without the face may still show it; the second may not.
                assert!(
                    after[1..].iter().all(|&n| n == 0),
                    "{name}: left at frame {leave}, faces in the frames after: {after:?}"
                );
            }
        }
    });
}

#[test]
fn the_cli_prints_track_ids_smoothed_labels_and_stage_stats() {
    let portrait = portrait();
    let dir = tempfile::tempdir().unwrap();
    for i in 0..8 {
        frame(&portrait, i, true)
            .save(dir.path().join(format!("{i:03}.png")))
            .unwrap();
    }
    let out = edge_fer(&[
        "--frames",
        dir.path().to_str().unwrap(),
        "--detect-every",
        "4",
        "--smooth",
        "0.5",
        "--stats",
        "60",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 8);
    for line in &lines {
        let faces = line["faces"].as_array().unwrap();
        assert_eq!(faces.len(), 1, "{line}");
        assert_eq!(faces[0]["track"], 1, "{line}");
        let sum: f64 = faces[0]["probs"]
            .as_object()
            .unwrap()
            .values()
            .map(|v| v.as_f64().unwrap())
            .sum();
        assert!(
            (sum - 1.0).abs() < 1e-4,
            "smoothed probabilities still sum to 1: {sum}"
        );
    }
    let err = stderr(&out);
    assert!(
        err.contains("stages") && err.contains("detect") && err.contains("8 frames"),
        "{err}"
    );
}
