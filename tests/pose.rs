//! Head pose from dlib's landmarks on real photos.

use edge_fer::capture::decode_image;
use edge_fer::detect::Landmarks;
use edge_fer::pose::{Camera, PoseConfig};

use crate::util::{fixture, with_finder, PORTRAITS};

/// The iBUG 68-point index each point takes in a mirrored image (the person's right eye becomes
/// the image's left eye, and so on).
fn mirrored_index(i: usize) -> usize {
    match i {
        0..=16 => 16 - i,
        17..=26 => 43 - i,
        27..=30 | 33 | 51 | 57 | 62 | 66 => i,
        31..=35 => 66 - i,
        36..=39 => 81 - i,
        40 | 41 => 87 - i,
        42..=45 => 81 - i,
        46 | 47 => 87 - i,
        48..=54 => 102 - i,
        55..=59 => 114 - i,
        60..=64 => 124 - i,
        65 | 67 => 132 - i,
        _ => unreachable!("68 points"),
    }
}

#[test]
fn frontal_portraits_face_the_camera() {
    for name in PORTRAITS {
        let img = decode_image(&fixture(name)).unwrap();
        let face = with_finder(|f| f.find(&img)).remove(0);
        let (pose, looking) = PoseConfig::default()
            .judge(&face.landmarks, img.width(), img.height())
            .unwrap_or_else(|| panic!("{name}: no pose"));
        assert!(
            pose.yaw.abs() < 15.0 && pose.pitch.abs() < 15.0,
            "{name}: {pose:?}"
        );
        assert!(looking, "{name}: {pose:?} not looking");
    }
}

#[test]
fn a_mirrored_photo_turns_the_other_way() {
    for name in PORTRAITS {
        let img = decode_image(&fixture(name)).unwrap();
        let mirror = image::imageops::flip_horizontal(&img);
        let face = with_finder(|f| f.find(&img)).remove(0);
        let seen = with_finder(|f| f.find(&mirror)).remove(0);
        // The mirror's landmarks are the original's, mirrored and renumbered left for right.
        let w = img.width() as f32;
        let expected = Landmarks(std::array::from_fn(|i| {
            let [x, y] = face.landmarks.0[mirrored_index(i)];
            [w - 1.0 - x, y]
        }));
        let error = seen.landmarks.error_against(&expected);
        assert!(error < 0.05, "{name}: mirrored landmarks off by {error}");

        let camera = Camera::for_frame(img.width(), img.height(), None);
        let a = edge_fer::pose::estimate(&face.landmarks, &camera)
            .unwrap()
            .angles();
        let b = edge_fer::pose::estimate(&seen.landmarks, &camera)
            .unwrap()
            .angles();
        assert!(
            (a.yaw + b.yaw).abs() < 3.0,
            "{name}: yaw {a:?} vs mirrored {b:?}"
        );
        assert!(
            (a.roll + b.roll).abs() < 3.0,
            "{name}: roll {a:?} vs mirrored {b:?}"
        );
        assert!(
            (a.pitch - b.pitch).abs() < 3.0,
            "{name}: pitch {a:?} vs mirrored {b:?}"
        );
    }
}

#[test]
fn the_mirror_map_is_an_involution_that_swaps_the_eyes() {
    let mut seen = [false; 68];
    for i in 0..68 {
        let j = mirrored_index(i);
        assert_eq!(mirrored_index(j), i, "{i} -> {j}");
        seen[j] = true;
    }
    assert!(seen.iter().all(|&s| s));
    assert_eq!(mirrored_index(36), 45);
    assert_eq!(mirrored_index(40), 47);
    assert_eq!(mirrored_index(48), 54);
    assert_eq!(mirrored_index(65), 67);
}
