//! Visits through the binary: a real face in a frames folder, present, away, and back.

use crate::util::{assert_refused, edge_fer, face_frames, fixture, json_lines, stderr};

/// Present for 8 frames, away for `away`, back for 6; at 10 frames/s with a 1 s visit timeout.
fn run(away: usize) -> Vec<serde_json::Value> {
    let pattern: Vec<bool> = [vec![true; 8], vec![false; away], vec![true; 6]].concat();
    let dir = face_frames(&pattern);
    let visits = dir.path().join("visits.jsonl");
    let out = edge_fer(&[
        "--frames",
        dir.path().to_str().unwrap(),
        "--frame-rate",
        "10",
        "--visit-timeout",
        "1",
        "--visits",
        visits.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    // The per-frame lines are as they were: one per frame, no visit records among them.
    let lines = json_lines(&out);
    assert_eq!(lines.len(), pattern.len());
    assert!(lines
        .iter()
        .all(|l| l.get("visit").is_none() && l["faces"].is_array()));
    std::fs::read_to_string(&visits)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn close(a: &serde_json::Value, b: f64) -> bool {
    (a.as_f64().unwrap() - b).abs() < 1e-6
}

#[test]
fn away_longer_than_the_timeout_is_two_visits() {
    let visits = run(15);
    assert_eq!(visits.len(), 2, "{visits:?}");
    let (a, b) = (&visits[0], &visits[1]);
    assert_eq!(
        (a["visit"].as_u64(), a["frames"].as_u64()),
        (Some(1), Some(8)),
        "{a}"
    );
    assert_eq!(
        (b["visit"].as_u64(), b["frames"].as_u64()),
        (Some(2), Some(6)),
        "{b}"
    );
    // Timed by the frame rate: frame i at i / 10 s.
    assert!(
        close(&a["start"], 0.0) && close(&a["end"], 0.8) && close(&a["dwell_s"], 0.8),
        "{a}"
    );
    assert!(close(&b["start"], 2.3) && close(&b["dwell_s"], 0.6), "{b}");
    // A frontal portrait looks at the camera on every frame; its expression summary is there.
    assert!(close(&a["looking_s"], 0.8), "{a}");
    let probs = a["probs"].as_object().unwrap();
    assert_eq!(probs.len(), 7);
    let sum: f64 = probs.values().map(|p| p.as_f64().unwrap()).sum();
    assert!((sum - 1.0).abs() < 1e-4, "{a}");
    let best = probs
        .iter()
        .max_by(|x, y| x.1.as_f64().partial_cmp(&y.1.as_f64()).unwrap())
        .unwrap();
    assert_eq!(a["dominant"].as_str(), Some(best.0.as_str()), "{a}");
    assert_ne!(a["track"], b["track"]);
}

#[test]
fn away_shorter_than_the_timeout_is_one_visit_of_two_tracks() {
    let visits = run(5);
    assert_eq!(visits.len(), 1, "{visits:?}");
    let v = &visits[0];
    assert_eq!(v["frames"].as_u64(), Some(14), "{v}");
    assert_eq!(
        v["tracks"].as_array().unwrap().len(),
        2,
        "the face came back on a new track: {v}"
    );
    // From the first frame to the end of the last, the time away included.
    assert!(close(&v["dwell_s"], 1.9), "{v}");
    assert!(close(&v["looking_s"], 1.4), "{v}");
}

#[test]
fn max_frames_ends_the_visit_with_the_run() {
    let dir = face_frames(&[true; 8]);
    let out = edge_fer(&[
        "--frames",
        dir.path().to_str().unwrap(),
        "--max-frames",
        "5",
        "--visits",
        "-",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    // `-`: the visit's line follows the frames' on standard output.
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 6, "{lines:?}");
    let visit = &lines[5];
    assert_eq!(visit["visit"].as_u64(), Some(1), "{visit}");
    assert_eq!(visit["frames"].as_u64(), Some(5), "{visit}");
    // The default frame rate, 30 frames/s.
    assert!(close(&visit["dwell_s"], 5.0 / 30.0), "{visit}");
}

#[test]
fn bad_visit_settings_are_refused_naming_the_flag() {
    for (flag, value, says) in [
        ("--visit-timeout", "0", "visit timeout 0 s is out of range"),
        (
            "--visit-timeout",
            "-2",
            "out of range: give (0, 3600] seconds",
        ),
        ("--frame-rate", "0", "frame rate 0 is out of range"),
    ] {
        assert_refused(&["--image", "x.png"], flag, value, says);
    }
    let out = edge_fer(&[
        "--image",
        fixture("astronaut.png").to_str().unwrap(),
        "--visits",
        "/nonexistent-dir/visits.jsonl",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("cannot create the visits file /nonexistent-dir/visits.jsonl"),
        "{err}"
    );
}
