//! Helpers shared by the benchmark and the measuring examples (soak, serve_load): the fixture
//! photos as camera-sized frames, and what the process and machine report about themselves.
//! Each target uses part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// The fixture photos the figures are measured on: three portraits and a faceless landscape.
pub const PHOTOS: [&str; 4] = [
    "astronaut.png",
    "grace_hopper_512x512.jpg",
    "biden.jpg",
    "640px-IceBlockNearJoekullsarlon.jpg",
];

/// A fixture photo, RGB.
pub fn photo(name: &str) -> image::RgbImage {
    image::open(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name),
    )
    .expect("fixture photo")
    .to_rgb8()
}

/// The fixtures fitted (aspect kept, centred on black) into 640x480 frames, written as JPEG
/// files into `dir`.
pub fn frames_640x480(dir: &Path) -> Vec<PathBuf> {
    PHOTOS
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let img = photo(name);
            let scale = (640.0 / img.width() as f32).min(480.0 / img.height() as f32);
            let (w, h) = (
                (img.width() as f32 * scale) as u32,
                (img.height() as f32 * scale) as u32,
            );
            let resized =
                image::imageops::resize(&img, w, h, image::imageops::FilterType::Triangle);
            let mut frame = image::RgbImage::new(640, 480);
            image::imageops::replace(
                &mut frame,
                &resized,
                ((640 - w) / 2) as i64,
                ((480 - h) / 2) as i64,
            );
            let path = dir.join(format!("frame_{i}.jpg"));
            frame.save(&path).expect("write frame");
            path
        })
        .collect()
}

/// Width of Grace Hopper's face in her 512 px fixture portrait.
pub const GRACE_FACE_PX: u32 = 215;

/// The face-size sweep's frame: Grace Hopper's portrait scaled so her face is `px` wide, centred
/// in a grey 640x480 frame.
pub fn face_of_width(px: u32) -> image::RgbImage {
    let portrait = photo("grace_hopper_512x512.jpg");
    let side = 512 * px / GRACE_FACE_PX;
    let scaled =
        image::imageops::resize(&portrait, side, side, image::imageops::FilterType::Triangle);
    let mut frame = image::RgbImage::from_pixel(640, 480, image::Rgb([90, 90, 90]));
    image::imageops::overlay(
        &mut frame,
        &scaled,
        (640 - i64::from(side)) / 2,
        (480 - i64::from(side)) / 2,
    );
    frame
}

/// A `/proc/self/status` field in KiB (`VmRSS:`, `VmHWM:`), 0 if unknown.
pub fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// CPU model, cores available and architecture, for the figures' machine line.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    format!("{cpu}, {cores} cores available, {}", std::env::consts::ARCH)
}
