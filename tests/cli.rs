//! The binary end to end: output schema, formats, and bad input.

use std::collections::HashSet;

use crate::util::{
    assert_refused, edge_fer, edit_json, fixture, json_lines, model_copy, repo, stderr,
    write_truncated, LANDSCAPE, PORTRAITS,
};

const LABELS: [&str; 7] = [
    "angry", "disgust", "fear", "happy", "sad", "surprise", "neutral",
];

/// Checks one frame's JSON object against the schema documented in README.md.
fn check_frame_schema(v: &serde_json::Value) {
    assert!(v["source"].is_string(), "{v}");
    assert!(v["frame"].is_u64() && v["timestamp_ms"].is_u64(), "{v}");
    assert!(v["width"].is_u64() && v["height"].is_u64(), "{v}");
    assert!(v.get("error").is_none(), "{v}");
    for face in v["faces"].as_array().expect("faces") {
        let b = &face["box"];
        for k in ["left", "top", "right", "bottom"] {
            assert!(b[k].is_i64(), "box.{k}: {face}");
        }
        let lm = face["landmarks"].as_array().unwrap();
        assert_eq!(lm.len(), 68);
        assert!(lm.iter().all(|p| p
            .as_array()
            .is_some_and(|xy| xy.len() == 2 && xy.iter().all(|c| c.is_number()))));
        let pose = &face["pose"];
        for k in ["yaw", "pitch", "roll"] {
            let angle = pose[k]
                .as_f64()
                .unwrap_or_else(|| panic!("pose.{k}: {face}"));
            assert!((-180.0..=180.0).contains(&angle), "pose.{k}: {face}");
        }
        assert!(face["looking"].is_boolean(), "{face}");
        let probs = face["probs"].as_object().unwrap();
        let keys: Vec<&str> = probs.keys().map(String::as_str).collect();
        assert_eq!(keys, LABELS, "probs keyed by the card's labels, in order");
        let sum: f64 = probs.values().map(|p| p.as_f64().unwrap()).sum();
        assert!((sum - 1.0).abs() < 1e-4, "probabilities sum to {sum}");
        let label = face["label"].as_str().unwrap();
        let best = probs
            .iter()
            .max_by(|a, b| a.1.as_f64().partial_cmp(&b.1.as_f64()).unwrap())
            .unwrap();
        assert_eq!(label, best.0);
        assert!((face["score"].as_f64().unwrap() - best.1.as_f64().unwrap()).abs() < 1e-6);
        let entropy = face["entropy"].as_f64().unwrap();
        assert!(
            (0.0..=(7f64).ln() + 1e-4).contains(&entropy),
            "entropy {entropy}"
        );
    }
}

#[test]
fn json_lines_for_portraits_and_landscape_in_order() {
    let mut args: Vec<String> = vec!["--image".into()];
    for name in PORTRAITS.iter().chain([&LANDSCAPE]) {
        args.push(fixture(name).display().to_string());
    }
    let out = edge_fer(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(out.status.success(), "{}", stderr(&out));
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 4);
    for (i, v) in lines.iter().enumerate() {
        check_frame_schema(v);
        assert_eq!(v["frame"], i as u64);
        let faces = v["faces"].as_array().unwrap().len();
        assert_eq!(faces, usize::from(i < 3), "{}", v["source"]);
    }
    assert!(lines[0]["source"]
        .as_str()
        .unwrap()
        .ends_with("astronaut.png"));
}

#[test]
fn each_detector_finds_the_portraits_faces_and_none_on_the_landscape() {
    let mmod = repo("models/dlib-mmod-face-detector/mmod_human_face_detector.dat");
    let mmod = mmod.to_str().unwrap();
    for detector in [
        vec!["--detector", "blazeface"],
        vec!["--detector", "hog"],
        vec!["--cnn-detector", mmod],
    ] {
        let mut args = detector.clone();
        args.push("--image");
        let files: Vec<String> = PORTRAITS
            .iter()
            .chain([&LANDSCAPE])
            .map(|name| fixture(name).display().to_string())
            .collect();
        args.extend(files.iter().map(String::as_str));
        let out = edge_fer(&args);
        assert!(out.status.success(), "{detector:?}: {}", stderr(&out));
        let faces: Vec<usize> = json_lines(&out)
            .iter()
            .map(|v| {
                check_frame_schema(v);
                v["faces"].as_array().unwrap().len()
            })
            .collect();
        assert_eq!(faces, [1, 1, 1, 0], "{detector:?}");
    }
}

#[test]
fn a_detector_without_its_model_or_with_a_model_it_has_none_of_is_refused() {
    let image = fixture(PORTRAITS[0]);
    let image = image.to_str().unwrap();
    let out = edge_fer(&["--detector", "mmod", "--image", image]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("--detector-model"),
        "{}",
        stderr(&out)
    );
    let out = edge_fer(&[
        "--detector",
        "hog",
        "--detector-model",
        "x.onnx",
        "--image",
        image,
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no model file"), "{}", stderr(&out));
    // A damaged BlazeFace file is named.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("detector.onnx");
    std::fs::write(&bad, b"not a model").unwrap();
    let bad = bad.to_str().unwrap();
    let out = edge_fer(&[
        "--detector",
        "blazeface",
        "--detector-model",
        bad,
        "--image",
        image,
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("detector.onnx") && err.contains("cannot load model"),
        "{err}"
    );
    assert_eq!(err.matches("detector.onnx").count(), 1, "named once: {err}");
}

#[test]
fn text_format_names_the_expression() {
    let img = fixture("biden.jpg");
    let out = edge_fer(&["--format", "text", "--image", img.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(text.contains("biden.jpg #0: face 1 at"), "{text}");
    assert!(text.contains(", looking, yaw "), "{text}");
    assert!(
        LABELS.iter().any(|l| text.contains(&format!(": {l} "))),
        "{text}"
    );
}

#[test]
fn two_faces_in_one_frame_and_max_faces() {
    // A portrait beside its mirror image makes one 1024x512 frame with two faces.
    let dir = tempfile::tempdir().unwrap();
    let a = image::open(fixture("grace_hopper_512x512.jpg"))
        .unwrap()
        .to_rgb8();
    let b = image::imageops::flip_horizontal(&a);
    let mut both = image::RgbImage::new(1024, 512);
    image::imageops::replace(&mut both, &a, 0, 0);
    image::imageops::replace(&mut both, &b, 512, 0);
    let path = dir.path().join("two.png");
    both.save(&path).unwrap();
    let out = edge_fer(&["--image", path.to_str().unwrap()]);
    let v = &json_lines(&out)[0];
    check_frame_schema(v);
    let faces = v["faces"].as_array().unwrap();
    assert_eq!(faces.len(), 2, "{v}");
    let lefts: HashSet<bool> = faces
        .iter()
        .map(|f| f["box"]["left"].as_i64().unwrap() < 512)
        .collect();
    assert_eq!(lefts.len(), 2, "one face on each half");
    let out = edge_fer(&["--max-faces", "1", "--image", path.to_str().unwrap()]);
    assert_eq!(json_lines(&out)[0]["faces"].as_array().unwrap().len(), 1);
}

#[test]
fn frames_folder_is_processed_in_name_order() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(fixture(LANDSCAPE), dir.path().join("frame_002.jpg")).unwrap();
    std::fs::copy(
        fixture("grace_hopper_512x512.jpg"),
        dir.path().join("frame_001.jpg"),
    )
    .unwrap();
    let out = edge_fer(&["--frames", dir.path().to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 2);
    assert!(lines[0]["source"]
        .as_str()
        .unwrap()
        .ends_with("frame_001.jpg"));
    assert_eq!(lines[0]["faces"].as_array().unwrap().len(), 1);
    assert_eq!(lines[1]["faces"].as_array().unwrap().len(), 0);
}

#[test]
fn a_bad_image_is_reported_and_the_others_are_processed() {
    let dir = tempfile::tempdir().unwrap();
    let truncated = dir.path().join("truncated.jpg");
    write_truncated(&fixture("biden.jpg"), &truncated, 3);
    let text = dir.path().join("notes.png");
    std::fs::write(&text, "this is not an image\n").unwrap();
    let good = fixture("grace_hopper_512x512.jpg");
    let out = edge_fer(&[
        "--image",
        truncated.to_str().unwrap(),
        good.to_str().unwrap(),
        text.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 3);
    let err0 = lines[0]["error"]
        .as_str()
        .expect("truncated image reported");
    assert!(
        err0.contains("truncated.jpg") && err0.contains("truncated JPEG"),
        "{err0}"
    );
    check_frame_schema(&lines[1]);
    assert_eq!(lines[1]["faces"].as_array().unwrap().len(), 1);
    let err2 = lines[2]["error"].as_str().unwrap();
    assert!(
        err2.contains("notes.png") && err2.contains("not a recognised image format"),
        "{err2}"
    );
    assert!(
        stderr(&out).contains("2 of 3 frames could not be processed"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn missing_image_file_is_reported_by_name() {
    let out = edge_fer(&["--image", "/nonexistent/face.jpg"]);
    assert_eq!(out.status.code(), Some(2));
    let err = json_lines(&out)[0]["error"].as_str().unwrap().to_string();
    assert!(err.contains("/nonexistent/face.jpg"), "{err}");
}

#[test]
fn missing_landmark_model_is_a_clear_error() {
    let img = fixture("biden.jpg");
    let out = edge_fer(&[
        "--landmarks-model",
        "/nonexistent/lm.dat",
        "--image",
        img.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("landmark model /nonexistent/lm.dat not found"),
        "{err}"
    );
    assert!(err.contains("libdlib-data"), "{err}");
    assert!(out.stdout.is_empty());
}

#[test]
fn truncated_onnx_is_a_clear_error() {
    let (dir, card) = model_copy();
    let onnx = dir.path().join("model.onnx");
    let half = write_truncated(&onnx, &onnx, 2);
    let img = fixture("biden.jpg");
    // First as it is: the checksum no longer matches.
    let out = edge_fer(&[
        "--model",
        card.to_str().unwrap(),
        "--image",
        img.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("checksum mismatch") && err.contains("model.onnx"),
        "{err}"
    );
    // Then with a card that vouches for the truncated file: the parser must refuse it.
    let sha = edge_fer::checksum::sha256_hex(&half);
    edit_json(&card, |v| v["sha256"] = sha.into());
    let out = edge_fer(&[
        "--model",
        card.to_str().unwrap(),
        "--image",
        img.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("cannot load model") && err.contains("model.onnx"),
        "{err}"
    );
}

#[test]
fn card_with_unknown_field_or_missing_labels_is_refused() {
    let img = fixture("biden.jpg");
    let (_dir, card) = model_copy();
    edit_json(&card, |v| v["input"]["colour_space"] = "srgb".into());
    let out = edge_fer(&[
        "--model",
        card.to_str().unwrap(),
        "--image",
        img.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("unknown field `colour_space`") && err.contains("model.json"),
        "{err}"
    );

    let (_dir, card) = model_copy();
    edit_json(&card, |v| {
        v.as_object_mut().unwrap().remove("labels");
    });
    let out = edge_fer(&[
        "--model",
        card.to_str().unwrap(),
        "--image",
        img.to_str().unwrap(),
    ]);
    let err = stderr(&out);
    assert!(
        err.contains("missing field `labels`") && err.contains("model.json"),
        "{err}"
    );
}

#[test]
fn empty_frames_folder_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("readme.txt"), "no frames here").unwrap();
    let out = edge_fer(&["--frames", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("has no image files") && err.contains(dir.path().to_str().unwrap()),
        "{err}"
    );
}

#[test]
fn absent_camera_names_what_was_found_and_suggests_files() {
    let out = edge_fer(&["--camera", "97"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("no camera with index 97: found"), "{err}");
    assert!(err.contains("--image"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

/// edge-fer started on `copies` copies of a portrait, stdout and stderr piped.
fn spawn_on_copies(copies: usize, extra: &[&str]) -> std::process::Child {
    use std::process::{Command, Stdio};
    let img = fixture("grace_hopper_512x512.jpg");
    let mut args: Vec<String> = extra.iter().map(|a| a.to_string()).collect();
    args.push("--image".to_string());
    args.extend(std::iter::repeat_n(img.display().to_string(), copies));
    Command::new(env!("CARGO_BIN_EXE_edge-fer"))
        .args(&args)
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn closed_output_pipe_ends_the_run_quietly() {
    use std::io::BufRead;
    // As in `edge-fer --image ... | head -1`: read one line, then close the pipe.
    let mut child = spawn_on_copies(40, &[]);
    let mut first = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.starts_with('{'), "{first}");
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).is_empty(), "{}", stderr(&out));
}

#[test]
fn sigterm_mid_run_drains_flushes_and_exits_zero() {
    use std::io::BufRead;
    use std::process::Command;
    let total = 400;
    let dir = tempfile::tempdir().unwrap();
    let visits = dir.path().join("visits.jsonl");
    let mut child = spawn_on_copies(total, &["--visits", visits.to_str().unwrap()]);
    let mut reader = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut lines = Vec::new();
    for _ in 0..3 {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        lines.push(line);
    }
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    for line in reader.lines() {
        lines.push(format!("{}\n", line.unwrap()));
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).contains("stopped"), "{}", stderr(&out));
    // Stopped early, and every line that was written is whole, in order, from frame 0.
    assert!(
        lines.len() < total,
        "{} lines: the signal did not stop it",
        lines.len()
    );
    for (i, line) in lines.iter().enumerate() {
        assert!(line.ends_with('\n'), "line {i} is cut: {line:?}");
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["frame"].as_u64(), Some(i as u64));
        assert_eq!(v["faces"].as_array().unwrap().len(), 1);
    }
    // The signal ended the visit too: its record covers every frame written.
    let records: Vec<serde_json::Value> = std::fs::read_to_string(&visits)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["frames"].as_u64(), Some(lines.len() as u64));
}

#[test]
fn aligned_mode_classifies_each_whole_image_without_detection() {
    // The landmark model is never loaded in this mode: a missing one is no error.
    let out = edge_fer(&[
        "--aligned",
        "--landmarks-model",
        "/nonexistent/shape_predictor.dat",
        "--image",
        fixture(PORTRAITS[0]).to_str().unwrap(),
        fixture(LANDSCAPE).to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 2);
    for v in &lines {
        let faces = v["faces"].as_array().unwrap();
        assert_eq!(faces.len(), 1, "{v}");
        let face = &faces[0];
        assert!(face.get("landmarks").is_none(), "{face}");
        let (w, h) = (v["width"].as_i64().unwrap(), v["height"].as_i64().unwrap());
        assert_eq!(face["box"]["right"].as_i64(), Some(w - 1));
        assert_eq!(face["box"]["bottom"].as_i64(), Some(h - 1));
        let sum: f64 = face["probs"]
            .as_object()
            .unwrap()
            .values()
            .map(|p| p.as_f64().unwrap())
            .sum();
        assert!((sum - 1.0).abs() < 1e-4);
    }
    // A camera is not a source of aligned crops.
    let out = edge_fer(&["--aligned", "--camera", "0"]);
    assert_eq!(out.status.code(), Some(2), "clap usage error");
}

#[test]
fn attention_settings_out_of_range_are_refused_naming_the_flag() {
    let image = fixture(PORTRAITS[0]);
    let image = image.to_str().unwrap();
    for (flag, value, says) in [
        (
            "--attention-cone",
            "0",
            "attention cone 0 degrees is out of range",
        ),
        (
            "--attention-cone",
            "120",
            "out of range: give a half-angle in (0, 90]",
        ),
        (
            "--attention-pitch",
            "-75",
            "attention pitch offset -75 degrees is out of range",
        ),
        (
            "--focal-length",
            "-3",
            "focal length -3 pixels is out of range",
        ),
        ("--classifier-threads", "0", "0 is not in 1..=256"),
        ("--classifier-threads", "9999", "9999 is not in 1..=256"),
        ("--attention-cone", "wide", "\"wide\" is not a number"),
    ] {
        assert_refused(&["--image", image], flag, value, says);
    }
    // A narrow cone with the camera far above the screen: the frontal portrait is not looking.
    let out = edge_fer(&[
        "--image",
        image,
        "--attention-cone",
        "10",
        "--attention-pitch",
        "-40",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(json_lines(&out)[0]["faces"][0]["looking"], false);
}

#[test]
fn privacy_mode_leaves_landmarks_out_of_every_line() {
    let mut args = vec!["--privacy".to_string(), "--image".to_string()];
    for name in PORTRAITS {
        args.push(fixture(name).display().to_string());
    }
    let out = edge_fer(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("landmarks"), "{text}");
    for v in json_lines(&out) {
        let face = &v["faces"][0];
        // What is left: the box, the pose and the expression.
        assert!(face["box"].is_object() && face["pose"].is_object(), "{v}");
        assert!(
            face["label"].is_string() && face["probs"].is_object(),
            "{v}"
        );
    }
}
