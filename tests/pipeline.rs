//! The threaded pipeline through the library, with real models: live sources drop stale frames,
//! file sources keep every frame.

use edge_fer::capture::{decode_image, FailedFrame, ImageFiles};
use edge_fer::pipeline::{self, PipelineConfig};
use edge_fer::{Classifier, FaceFinder, FaceFinderConfig, Frame, FrameSource};

use crate::util::{fixture, Captured};

/// Stands in for a camera: delivers the same photo as fast as it is asked, flagged live.
struct FloodingCamera {
    image: image::RgbImage,
    next: u64,
    total: u64,
}

impl FrameSource for FloodingCamera {
    fn next_frame(&mut self) -> Option<Result<Frame, FailedFrame>> {
        if self.next >= self.total {
            return None;
        }
        self.next += 1;
        Some(Ok(Frame {
            rgb: self.image.clone(),
            index: self.next - 1,
            timestamp_ms: 0,
            source: "camera:test".into(),
        }))
    }
    fn is_live(&self) -> bool {
        true
    }
    fn describe(&self) -> String {
        "flooding test camera".into()
    }
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
    let mut camera = FloodingCamera {
        image: decode_image(&fixture("biden.jpg")).unwrap(),
        next: 0,
        total: 60,
    };
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
