//! The threaded pipeline through the library, with real models: live sources drop stale frames,
//! file sources keep every frame.

use edge_fer::capture::{decode_image, ImageFiles, Synthetic};
use edge_fer::pipeline::{self, PipelineConfig};
use edge_fer::{Classifier, FaceFinder, FaceFinderConfig};

use crate::util::{fixture, Captured};

/// Stands in for a camera: `total` copies of the photo, as fast as they are asked for, live.
fn flooding_camera(photo: &str, total: u64) -> Synthetic {
    Synthetic::repeating(decode_image(&fixture(photo)).unwrap(), total)
        .live()
        .named("camera:test")
}

fn models() -> (FaceFinder, Classifier) {
    (
        FaceFinder::load(&FaceFinderConfig::default()).unwrap(),
        Classifier::builtin().unwrap(),
    )
}

#[test]
fn live_source_drops_stale_frames_and_counts_them() {
    let (finder, classifier) = models();
    let mut camera = flooding_camera("biden.jpg", 60);
    let out = Captured::default();
    let stats = pipeline::run(
        &mut camera,
        Some(finder),
        classifier,
        Box::new(out.clone()),
        &PipelineConfig::default(),
    )
    .unwrap();
    let frames = out.frames();
    assert_eq!(stats.frames, 60);
    // Detection of a 970x2204 frame takes far longer than producing one, so most are dropped.
    assert!(stats.dropped > 0, "{stats:?}");
    assert_eq!(frames.len() as u64 + stats.dropped, 60, "{stats:?}");
    assert!(
        frames.windows(2).all(|w| w[0] < w[1]),
        "frames stay in order: {frames:?}"
    );
    assert_eq!(stats.faces, frames.len() as u64);
}

#[test]
fn file_source_keeps_every_frame_in_order() {
    let (finder, classifier) = models();
    let paths = vec![fixture("grace_hopper_512x512.jpg"); 6];
    let mut files = ImageFiles::new(paths);
    let out = Captured::default();
    let stats = pipeline::run(
        &mut files,
        Some(finder),
        classifier,
        Box::new(out.clone()),
        &PipelineConfig::default(),
    )
    .unwrap();
    assert_eq!(stats.dropped, 0);
    assert_eq!(out.frames(), (0..6).collect::<Vec<u64>>());
    assert_eq!(stats.faces, 6);
}
