//! `cargo bench`: per-stage median latencies and end-to-end frames/s on the fixture photos at
//! 640x480, plus peak RSS. Prints figures; asserts nothing about time.
//!
//! Each portrait (and the faceless landscape) is fitted into a 640x480 frame and stored as JPEG,
//! so the decode stage is measured on realistic input. Per-stage figures come from running the
//! stages one after another on one thread; the end-to-end figure comes from the real threaded
//! pipeline over the same files, where stages overlap.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use edge_fer::align::align;
use edge_fer::capture::{decode_image, ImageFiles};
use edge_fer::detect::DetectorChoice;
use edge_fer::pipeline::{self, PipelineConfig};
use edge_fer::pose::PoseConfig;
use edge_fer::track::TrackConfig;
use edge_fer::{AlignedFace, Classifier, FaceFinder, FaceFinderConfig};

mod common;

const ROUNDS: usize = 15;
const MOVING_FRAMES: usize = 150;

fn main() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let frames = common::frames_640x480(dir.path());
    let finder = FaceFinder::load(&FaceFinderConfig::default()).expect("dlib models");
    let classifier = Classifier::builtin().expect("built-in model");

    let (mut decode, mut detect, mut landmarks, mut align_t, mut classify) =
        (vec![], vec![], vec![], vec![], vec![]);
    let mut pose_t = vec![];
    let mut faces_seen = 0;
    let mut per_frame = vec![0; frames.len()];
    for _ in 0..ROUNDS {
        for (i, path) in frames.iter().enumerate() {
            let t = Instant::now();
            let rgb = decode_image(path).expect("decode");
            decode.push(t.elapsed());
            let (faces, times) = finder.find_timed(&rgb);
            detect.push(times.detect);
            per_frame[i] = faces.len();
            if faces.is_empty() {
                continue;
            }
            faces_seen += faces.len();
            landmarks.push(times.landmarks);
            let t = Instant::now();
            for f in &faces {
                std::hint::black_box(PoseConfig::default().judge(
                    &f.landmarks,
                    rgb.width(),
                    rgb.height(),
                ));
            }
            pose_t.push(t.elapsed());
            let t = Instant::now();
            let crops: Vec<AlignedFace> = faces
                .iter()
                .map(|f| {
                    let mut crop = classifier.blank_crop();
                    align(&rgb, &f.landmarks, &classifier.card().alignment, &mut crop)
                        .expect("align");
                    AlignedFace(crop)
                })
                .collect();
            align_t.push(t.elapsed());
            let t = Instant::now();
            classifier.classify(&crops).expect("classify");
            classify.push(t.elapsed());
        }
    }

    // Detection width: HOG on the 640x480 frames at full width and scaled down.
    let mut widths = Vec::new();
    for width in [0u32, 480, 400, 320] {
        let (mut took, mut found) = (Vec::new(), Vec::new());
        for path in &frames {
            let rgb = decode_image(path).expect("decode");
            let mut faces = 0;
            for _ in 0..ROUNDS {
                let (f, times) = finder.find_downscaled(&rgb, width);
                took.push(times.detect);
                faces = f.len();
            }
            found.push(faces);
        }
        widths.push((width, median_ms(&mut took), found));
    }

    // Smallest face found at each detection width: Grace Hopper's portrait scaled so her face is
    // `px` wide, centred in a grey 640x480 frame.
    let sizes = [60u32, 70, 80, 90, 100, 110, 120, 140, 160, 200];
    let sweep: Vec<image::RgbImage> = sizes.iter().map(|&px| common::face_of_width(px)).collect();
    let mut smallest = Vec::new();
    for width in [0u32, 480, 400, 320] {
        let found: Vec<bool> = sweep
            .iter()
            .map(|frame| !finder.find_downscaled(frame, width).0.is_empty())
            .collect();
        smallest.push((width, found));
    }

    // BlazeFace beside HOG: its detection time, faces per fixture frame and the sweep.
    let blaze = FaceFinder::load(&blazeface_config()).expect("BlazeFace");
    let (mut blaze_detect, mut blaze_found) = (Vec::new(), Vec::new());
    for path in &frames {
        let rgb = decode_image(path).expect("decode");
        let mut faces = 0;
        for _ in 0..ROUNDS {
            let (f, times) = blaze.find_timed(&rgb);
            blaze_detect.push(times.detect);
            faces = f.len();
        }
        blaze_found.push(faces);
    }
    let blaze_sweep: Vec<bool> = sweep.iter().map(|f| !blaze.find(f).is_empty()).collect();

    // A moving face: the one-face case tracking is for.
    let moving = make_moving(dir.path());
    let mut runs = Vec::new();
    for (name, blazeface, track, smoothing) in [
        (
            "HOG, detect every frame, full width",
            false,
            TrackConfig::default(),
            None,
        ),
        (
            "HOG, detect every 5th frame at 480 px, follow between (camera default)",
            false,
            TrackConfig {
                detect_every: 5,
                detect_width: 480,
                end_ghosts: true,
            },
            Some(0.5),
        ),
        (
            "BlazeFace, detect every frame",
            true,
            TrackConfig::default(),
            None,
        ),
        (
            "BlazeFace, detect every 5th frame, follow between",
            true,
            TrackConfig {
                detect_every: 5,
                detect_width: 480,
                end_ghosts: true,
            },
            Some(0.5),
        ),
        (
            "the same without the ghost check (a face's look)",
            true,
            TrackConfig {
                detect_every: 5,
                detect_width: 480,
                end_ghosts: false,
            },
            Some(0.5),
        ),
    ] {
        let config = PipelineConfig {
            track,
            smoothing,
            ..PipelineConfig::default()
        };
        let finder = FaceFinder::load(&if blazeface {
            blazeface_config()
        } else {
            FaceFinderConfig::default()
        })
        .expect("detector and dlib models");
        let classifier = Classifier::builtin().expect("built-in model");
        let (stats, elapsed) = timed_run(moving.clone(), finder, classifier, &config);
        runs.push((
            name,
            stats,
            elapsed,
            config.times.report(stats.frames, stats.dropped, elapsed),
        ));
    }

    let repeated: Vec<PathBuf> = (0..ROUNDS).flat_map(|_| frames.iter().cloned()).collect();
    let n = repeated.len();
    let (stats, elapsed) = timed_run(
        repeated.clone(),
        finder,
        classifier,
        &PipelineConfig::default(),
    );
    let (blaze_stats, blaze_elapsed) = timed_run(
        repeated,
        blaze,
        Classifier::builtin().expect("built-in model"),
        &PipelineConfig::default(),
    );

    println!(
        "edge-fer pipeline benchmark: {} fixture frames at 640x480 x {ROUNDS} rounds",
        frames.len()
    );
    println!("machine: {}", common::machine());
    println!("faces per frame: {per_frame:?} (astronaut, Grace Hopper, Biden, landscape)");
    println!("stage medians (one thread, {faces_seen} faces):");
    for (name, times) in [
        ("decode (JPEG)", &mut decode),
        ("detect (HOG)", &mut detect),
        ("landmarks (68)", &mut landmarks),
        ("pose (fit)", &mut pose_t),
        ("align", &mut align_t),
        ("classify (tract)", &mut classify),
    ] {
        println!("  {name:<18} {:>8.2} ms", median_ms(times));
    }
    println!(
        "end to end (threaded pipeline): {n} frames in {:.2} s = {:.1} frames/s, {} faces",
        elapsed.as_secs_f64(),
        n as f64 / elapsed.as_secs_f64(),
        stats.faces
    );
    println!(
        "end to end with BlazeFace (threaded pipeline): {n} frames in {:.2} s = {:.1} frames/s, {} faces",
        blaze_elapsed.as_secs_f64(),
        n as f64 / blaze_elapsed.as_secs_f64(),
        blaze_stats.faces
    );
    println!("detection width on the 640x480 frames (median HOG time incl. scaling; faces found per frame):");
    for (width, ms, found) in &widths {
        println!(
            "  {:<10} {ms:>8.2} ms  faces {found:?}",
            width_label(*width)
        );
    }
    println!("face found, by face width in a 640x480 frame ({sizes:?} px):");
    for (width, found) in &smallest {
        let marks: Vec<&str> = found
            .iter()
            .map(|&f| if f { "yes" } else { "no" })
            .collect();
        println!("  HOG {:<10} {}", width_label(*width), marks.join(" "));
    }
    let marks: Vec<&str> = blaze_sweep
        .iter()
        .map(|&f| if f { "yes" } else { "no" })
        .collect();
    println!("  BlazeFace      {}", marks.join(" "));
    println!(
        "BlazeFace on the 640x480 frames: median {:.2} ms (letterbox, model, decoding), faces {blaze_found:?}",
        median_ms(&mut blaze_detect)
    );
    println!(
        "one moving face, {} frames at 640x480, threaded pipeline:",
        moving.len()
    );
    for (name, stats, elapsed, report) in &runs {
        println!(
            "  {name}: {:.1} frames/s, {} faces",
            stats.frames as f64 / elapsed.as_secs_f64(),
            stats.faces
        );
        println!("    {report}");
    }
    println!(
        "peak RSS: {:.1} MiB",
        common::status_kib("VmHWM:") as f64 / 1024.0
    );
}

fn blazeface_config() -> FaceFinderConfig {
    FaceFinderConfig {
        detector: DetectorChoice::BlazeFace(None),
        ..FaceFinderConfig::default()
    }
}

/// One portrait (Grace Hopper, face ~190 px) drifting across a 640x480 frame, 2 px right and
/// 1 px down per frame, as JPEG files: a kiosk visitor in front of the camera.
fn make_moving(dir: &Path) -> Vec<PathBuf> {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let img = image::open(fixtures.join("grace_hopper_512x512.jpg"))
        .expect("fixture")
        .to_rgb8();
    let face = image::imageops::resize(&img, 360, 360, image::imageops::FilterType::Triangle);
    (0..MOVING_FRAMES)
        .map(|i| {
            let mut frame = image::RgbImage::from_pixel(640, 480, image::Rgb([90, 90, 90]));
            image::imageops::overlay(&mut frame, &face, 60 + 2 * i as i64, 40 + i as i64 / 2);
            let path = dir.join(format!("moving-{i:03}.jpg"));
            frame.save(&path).expect("writing a frame");
            path
        })
        .collect()
}

/// The threaded pipeline over `paths`, output discarded: its stats and wall time.
fn timed_run(
    paths: Vec<PathBuf>,
    finder: FaceFinder,
    classifier: Classifier,
    config: &PipelineConfig,
) -> (pipeline::Stats, Duration) {
    let mut source = ImageFiles::new(paths);
    let t = Instant::now();
    let stats = pipeline::run(
        &mut source,
        Some(finder),
        classifier,
        Box::new(std::io::sink()),
        config,
    )
    .expect("pipeline");
    (stats, t.elapsed())
}

/// A detection width as printed: 0 is the full frame.
fn width_label(width: u32) -> String {
    if width == 0 {
        "full (640)".to_string()
    } else {
        width.to_string()
    }
}

fn median_ms(times: &mut [Duration]) -> f64 {
    if times.is_empty() {
        return f64::NAN;
    }
    times.sort();
    times[times.len() / 2].as_secs_f64() * 1e3
}
