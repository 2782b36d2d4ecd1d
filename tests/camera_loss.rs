//! A camera that goes away mid-run and comes back: the run goes on, reopening it with back-off,
//! and the frames after the outage are processed as before. The camera is a stand-in (there is
//! none here); the pipeline, the models and the reconnection logic are the real ones.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use edge_fer::capture::{decode_image, Backoff, Reconnecting, Synthetic};
use edge_fer::pipeline::{self, PipelineConfig};
use edge_fer::{Classifier, Error, FaceFinder, FaceFinderConfig, FrameSource};

use crate::util::{fixture, Captured};

/// One connection to the stand-in camera: `frames` frames of the same photo, then the device is
/// gone (the source ends, as `CameraSource` does after repeated read failures). Each connection
/// numbers its frames from 0; the wrapper renumbers them.
fn connection(photo: &image::RgbImage, frames: u64) -> Synthetic {
    Synthetic::repeating(photo.clone(), frames)
        .live()
        .named("camera:0")
}

fn unplugged() -> Error {
    Error::Camera {
        index: 0,
        reason: "No such device (os error 19)".into(),
    }
}

#[test]
fn a_lost_camera_is_reopened_with_backoff_and_the_run_goes_on() {
    let image = decode_image(&fixture("biden.jpg")).unwrap();
    // Each outage: how many opens fail before the device is back.
    let mut outages = VecDeque::from([2u32, 3]);
    let mut failing = None::<u32>;
    let attempts = Arc::new(Mutex::new(0u32));
    let counted = Arc::clone(&attempts);
    let photo = image.clone();
    let open = move || -> edge_fer::Result<Box<dyn FrameSource>> {
        *counted.lock().unwrap() += 1;
        let left = failing.get_or_insert_with(|| outages.pop_front().unwrap_or(0));
        if *left > 0 {
            *left -= 1;
            return Err(unplugged());
        }
        failing = None;
        Ok(Box::new(connection(&photo, 5)))
    };
    let stop = Arc::new(AtomicBool::new(false));
    let backoff = Backoff {
        initial: Duration::from_millis(1),
        max: Duration::from_millis(3),
    };
    let first = Box::new(connection(&image, 5));
    let counters = edge_fer::metrics::Counters::default();
    let mut camera = Reconnecting::new(first, open, "camera 0", backoff, Arc::clone(&stop))
        .counting_into(counters.camera_reconnects.clone());

    let out = Captured::default();
    let config = PipelineConfig {
        max_frames: Some(12),
        stop,
        counters: counters.clone(),
        ..PipelineConfig::default()
    };
    let stats = pipeline::run(
        &mut camera,
        Some(FaceFinder::load(&FaceFinderConfig::default()).unwrap()),
        Classifier::builtin().unwrap(),
        Box::new(out.clone()),
        &config,
    )
    .unwrap();

    // 5 frames, lost, 2 failed opens, 5 frames, lost, 3 failed opens, 2 more frames.
    assert_eq!(stats.frames, 12);
    assert!(!stats.stopped);
    assert_eq!(camera.reconnects(), 2);
    // What /metrics reports: the reconnections and the frames, as the run counted them.
    assert_eq!(counters.camera_reconnects.get(), 2);
    assert_eq!(counters.frames.get(), 12);
    assert_eq!(*attempts.lock().unwrap(), 2 + 1 + 3 + 1);
    let ms = |v: &[u64]| {
        v.iter()
            .map(|&m| Duration::from_millis(m))
            .collect::<Vec<_>>()
    };
    // Doubling, capped at 3 ms, and back to 1 ms after a successful reopen.
    assert_eq!(camera.waits(), ms(&[1, 2, 1, 2, 3]));

    let lines = out.lines();
    // A live source may drop a stale frame when detection is busy; those that arrive are in
    // order, numbered across reconnections, and each has its face.
    let frames: Vec<u64> = lines.iter().map(|l| l["frame"].as_u64().unwrap()).collect();
    assert!(frames.windows(2).all(|w| w[0] < w[1]), "{frames:?}");
    assert!(frames.iter().all(|&f| f < 12), "{frames:?}");
    assert!(
        frames.iter().any(|&f| f >= 10),
        "frames after the second outage: {frames:?}"
    );
    for line in &lines {
        assert_eq!(line["faces"].as_array().unwrap().len(), 1, "{line}");
    }
}

#[test]
fn stopping_interrupts_a_long_backoff() {
    let stop = Arc::new(AtomicBool::new(false));
    let backoff = Backoff {
        initial: Duration::from_secs(600),
        max: Duration::from_secs(600),
    };
    let gone = Box::new(connection(&image::RgbImage::new(8, 8), 0));
    let mut camera = Reconnecting::new(
        gone,
        || Err(unplugged()),
        "camera 0",
        backoff,
        Arc::clone(&stop),
    );
    let setter = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            stop.store(true, Ordering::Relaxed);
        })
    };
    let started = Instant::now();
    assert!(camera.next_frame().is_none());
    setter.join().unwrap();
    assert_eq!(camera.waits(), [Duration::from_secs(600)]);
    // Not a timing figure: a wait that ignored the stop would take ten minutes.
    assert!(started.elapsed() < Duration::from_secs(60));
}
