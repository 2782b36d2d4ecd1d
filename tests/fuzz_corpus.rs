//! Replays the fuzzers' inputs (fuzz/seeds, the minimised fuzz/corpus and every crash reproducer
//! in fuzz/regressions) through the same calls as the fuzz targets, in the ordinary test suite, so
//! a fixed crash stays fixed without nightly or libFuzzer.

use std::path::PathBuf;

use edge_fer::capture::decode_image_bytes;
use edge_fer::output::{write_result, Format};
use edge_fer::pipeline::process_frame;
use edge_fer::{Classifier, Frame, ModelCard};

use crate::util::{repo, with_finder};

/// Every file under fuzz/{seeds,corpus,regressions}/`target`.
fn inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files = Vec::new();
    for kind in ["seeds", "corpus", "regressions"] {
        let Ok(dir) = std::fs::read_dir(repo(&format!("fuzz/{kind}/{target}"))) else {
            continue;
        };
        for entry in dir.flatten() {
            let path = entry.path();
            if path.is_file() {
                let bytes = std::fs::read(&path).unwrap();
                files.push((path, bytes));
            }
        }
    }
    files.sort();
    files
}

#[test]
fn frame_inputs_give_a_result_line_each() {
    let classifier = Classifier::builtin().unwrap();
    let inputs = inputs("frame");
    assert!(inputs.len() >= 7, "the seeds at least");
    let (mut decoded, mut faces) = (0, 0);
    with_finder(|finder| {
        for (path, bytes) in &inputs {
            let Ok(rgb) = decode_image_bytes(bytes) else {
                continue;
            };
            if u64::from(rgb.width()) * u64::from(rgb.height()) > 1 << 20 {
                continue;
            }
            decoded += 1;
            let frame = Frame {
                rgb,
                index: 0,
                timestamp_ms: 0,
                time_s: 0.0,
                source: path.display().to_string(),
            };
            let result = process_frame(Some(finder), &classifier, frame);
            faces += result.faces.as_ref().map_or(0, Vec::len);
            let mut line = Vec::new();
            write_result(&mut line, &result, Format::Json).unwrap();
            let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
            assert_eq!(v["source"], path.display().to_string());
        }
    });
    // The seed face crop is found; the rest only must not panic.
    assert!(
        decoded >= 7 && faces >= 1,
        "{decoded} decoded, {faces} faces"
    );
}

#[test]
fn model_card_inputs_parse_or_are_refused() {
    let card_path = std::path::Path::new("fuzz/model.json");
    let mut accepted = 0;
    for (_, bytes) in inputs("model_card") {
        let text = String::from_utf8_lossy(&bytes);
        match ModelCard::from_json(&text, card_path) {
            Ok(card) => {
                accepted += 1;
                assert!(!card.labels.is_empty());
                let _ = card
                    .alignment
                    .template_px(card.input.width, card.input.height);
            }
            Err(e) => assert!(e.to_string().contains("fuzz/model.json"), "{e}"),
        }
    }
    assert!(accepted >= 1, "the shipped card is accepted");
}
