//! Calibrates `detect::BLAZEFACE_TO_DLIB`: where dlib's shape predictor wants its box, relative to
//! BlazeFace's box on the same face.
//!
//! `cargo run --release --example calibrate_blazeface` runs both detectors on the fixture photos
//! and on the face-size sweep (Grace Hopper's face 60-200 px wide in a 640x480 frame), pairs the
//! boxes that share a face, and prints each pair's ratios, their means (the constants), and how
//! far the 68 landmarks fitted in the mapped box land from those fitted in HOG's box, in
//! inter-ocular distances. Prints figures; nothing is written.

use edge_fer::blazeface::BlazeFace;
use edge_fer::detect::{BoxMapping, FaceBox, BLAZEFACE_TO_DLIB};
use edge_fer::{FaceFinder, FaceFinderConfig, Landmarks};

#[path = "../benches/common/mod.rs"]
mod common;

fn centre_side(b: &FaceBox) -> (f32, f32, f32) {
    (
        (b.left + b.right) as f32 / 2.0,
        (b.top + b.bottom) as f32 / 2.0,
        ((b.right - b.left + 1) + (b.bottom - b.top + 1)) as f32 / 2.0,
    )
}

fn main() {
    let hog = FaceFinder::load(&FaceFinderConfig::default()).expect("dlib models");
    sweep_against_the_portrait(&hog);
    let blaze = BlazeFace::builtin().expect("built-in BlazeFace");
    let mut frames: Vec<(String, image::RgbImage)> = common::PHOTOS
        .iter()
        .map(|name| (name.to_string(), common::photo(name)))
        .collect();
    for px in [60u32, 70, 80, 90, 100, 110, 120, 140, 160, 200] {
        frames.push((format!("sweep {px} px"), common::face_of_width(px)));
    }

    let mut pairs = Vec::new();
    println!("frame                          dx      dy      scale   (HOG box vs BlazeFace box)");
    for (name, frame) in &frames {
        let by_hog = hog.find(frame);
        let by_blaze = blaze.detect(frame).expect("BlazeFace");
        for face in &by_hog {
            let (hx, hy, hs) = centre_side(&face.bbox);
            // The BlazeFace box whose centre is nearest, if it lies inside HOG's box.
            let Some(b) = by_blaze
                .iter()
                .filter(|b| {
                    let (cx, cy) = ((b.bbox[0] + b.bbox[2]) / 2.0, (b.bbox[1] + b.bbox[3]) / 2.0);
                    (cx - hx).abs() < hs / 2.0 && (cy - hy).abs() < hs / 2.0
                })
                .min_by(|a, b| {
                    let d = |d: &&edge_fer::blazeface::FrameDetection| {
                        ((d.bbox[0] + d.bbox[2]) / 2.0 - hx).abs()
                    };
                    d(a).total_cmp(&d(b))
                })
            else {
                println!("{name:<30} HOG only");
                continue;
            };
            let side = ((b.bbox[2] - b.bbox[0]) + (b.bbox[3] - b.bbox[1])) / 2.0;
            let (bx, by) = ((b.bbox[0] + b.bbox[2]) / 2.0, (b.bbox[1] + b.bbox[3]) / 2.0);
            let ratios = [(hx - bx) / side, (hy - by) / side, hs / side];
            println!(
                "{name:<30} {:>7.4} {:>7.4} {:>7.4}   ({hs} px vs {side:.1} px)",
                ratios[0], ratios[1], ratios[2]
            );
            pairs.push((name.clone(), frame, face.clone(), *b, ratios));
        }
        if by_hog.is_empty() && !by_blaze.is_empty() {
            println!("{name:<30} BlazeFace only ({} faces)", by_blaze.len());
        }
    }
    let n = pairs.len() as f32;
    let mean = |k: usize| pairs.iter().map(|p| p.4[k]).sum::<f32>() / n;
    let by_boxes = BoxMapping {
        dx: mean(0),
        dy: mean(1),
        scale: mean(2),
    };
    println!(
        "{} faces found by both: mean dx {:.4}, dy {:.4}, scale {:.4}",
        pairs.len(),
        by_boxes.dx,
        by_boxes.dy,
        by_boxes.scale
    );
    // HOG's boxes come in steps of its image pyramid (each ~1.2x the last), so the box ratios
    // scatter by +-10 %; what matters is where the landmarks land. Search the mapping that puts
    // them nearest HOG's, around the box means.
    let error_of = |mapping: &BoxMapping| {
        pairs
            .iter()
            .map(|(_, frame, face, b, _)| {
                let mapped = mapping.map(b, frame.width(), frame.height());
                hog.landmarks_in(frame, mapped)
                    .error_against(&face.landmarks)
            })
            .sum::<f32>()
            / n
    };
    let mut fitted = by_boxes;
    let mut best = error_of(&fitted);
    for step in [0.04f32, 0.02, 0.01] {
        loop {
            let mut improved = false;
            for (ddx, ddy, ds) in [
                (step, 0.0, 0.0),
                (-step, 0.0, 0.0),
                (0.0, step, 0.0),
                (0.0, -step, 0.0),
                (0.0, 0.0, step),
                (0.0, 0.0, -step),
            ] {
                let trial = BoxMapping {
                    dx: fitted.dx + ddx,
                    dy: fitted.dy + ddy,
                    scale: fitted.scale + ds,
                };
                let e = error_of(&trial);
                if e < best {
                    (best, fitted, improved) = (e, trial, true);
                }
            }
            if !improved {
                break;
            }
        }
    }
    println!(
        "nearest HOG's landmarks: dx {:.4}, dy {:.4}, scale {:.4}",
        fitted.dx, fitted.dy, fitted.scale
    );
    println!(
        "landmarks in the mapped box vs in HOG's box (mean distance / inter-ocular distance):"
    );
    for (label, mapping) in [
        ("box means", by_boxes),
        ("searched", fitted),
        ("BLAZEFACE_TO_DLIB", BLAZEFACE_TO_DLIB),
    ] {
        let errors: Vec<f32> = pairs
            .iter()
            .map(|(_, frame, face, b, _)| {
                let mapped = mapping.map(b, frame.width(), frame.height());
                hog.landmarks_in(frame, mapped)
                    .error_against(&face.landmarks)
            })
            .collect();
        let worst = errors.iter().copied().fold(0.0, f32::max);
        println!(
            "  {label:<18} mean {:.4}, worst {worst:.4}: {:?}",
            errors.iter().sum::<f32>() / errors.len() as f32,
            errors
                .iter()
                .map(|e| (e * 1e4).round() / 1e4)
                .collect::<Vec<_>>()
        );
    }
}

/// The sweep's faces are Grace Hopper's portrait scaled, so the landmarks HOG fits on the
/// portrait itself (face 215 px), scaled the same way, are a reference neither detector's box
/// decides. Prints each detector's landmark error against it, by face width.
fn sweep_against_the_portrait(hog: &FaceFinder) {
    let blaze = FaceFinder::load(&FaceFinderConfig {
        detector: edge_fer::detect::DetectorChoice::BlazeFace(None),
        ..FaceFinderConfig::default()
    })
    .expect("models");
    let portrait = common::photo("grace_hopper_512x512.jpg");
    let reference = hog.find(&portrait)[0].landmarks;
    println!("sweep: landmark error against the scaled portrait's (inter-ocular distances)");
    println!("  face px   HOG      BlazeFace (mapped box)");
    for px in [60u32, 70, 80, 90, 100, 110, 120, 140, 160, 200] {
        let side = 512 * px / common::GRACE_FACE_PX;
        let (ox, oy) = ((640 - side as i64) / 2, (480 - side as i64) / 2);
        let k = side as f32 / 512.0;
        let scaled = Landmarks(
            reference
                .0
                .map(|[x, y]| [x * k + ox as f32, y * k + oy as f32]),
        );
        let frame = common::face_of_width(px);
        let cell = |f: &FaceFinder| match f.find(&frame).first() {
            Some(face) => format!("{:.4}", face.landmarks.error_against(&scaled)),
            None => "-".to_string(),
        };
        println!("  {px:<9} {:<8} {}", cell(hog), cell(&blaze));
    }
}
