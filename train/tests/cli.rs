//! The `train` binary end to end: `inspect` on small datasets the tests write, and `synth`.

use std::process::Command;

mod common;

/// Fails the test with the command's stderr unless it exited 0.
fn succeeded(out: &std::process::Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn train(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_train"))
        .args(args)
        .output()
        .expect("running train")
}

#[test]
fn folder_dataset_counts_skips_and_noise() {
    let dir = tempfile::tempdir().unwrap();
    for (class, n) in [("happy", 30), ("sad", 10), ("bored", 2)] {
        let sub = dir.path().join(class);
        std::fs::create_dir_all(&sub).unwrap();
        for i in 0..n {
            std::fs::write(sub.join(format!("{i:03}.png")), b"png").unwrap();
        }
    }
    let root = dir.path().to_str().unwrap();
    let out = train(&[
        "inspect",
        "--noise",
        "asymmetric",
        "--noise-rate",
        "0.5",
        "--seed",
        "3",
        "folder",
        root,
    ]);
    succeeded(&out);
    let stdout = String::from_utf8(out.stdout).unwrap();
    let train_row = stdout.lines().find(|l| l.starts_with("train")).unwrap();
    let counts: Vec<usize> = train_row
        .split_whitespace()
        .skip(1)
        .map(|c| c.parse().unwrap())
        .collect();
    // anger disgust fear happiness sadness surprise neutral
    assert_eq!(counts, [0, 0, 0, 30, 10, 0, 0]);
    assert!(stdout.contains("40 samples, 1 skipped"), "{stdout}");
    let flipped: usize = stdout
        .lines()
        .find(|l| l.starts_with("noise"))
        .and_then(|l| l.split(": ").nth(1))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert!((8..=32).contains(&flipped), "{stdout}");
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("bored") && stderr.contains("not a class name"),
        "{stderr}"
    );
}

#[test]
fn dataset_with_nothing_usable_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("EmoLabel")).unwrap();
    std::fs::write(
        dir.path().join("EmoLabel/list_patition_label.txt"),
        "train_1.jpg 12\n",
    )
    .unwrap();
    let out = train(&["inspect", "rafdb", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("no usable samples")
            && stderr.contains("list_patition_label.txt:1: label \"12\" is not 1-7"),
        "{stderr}"
    );
}

#[test]
fn synth_writes_a_dataset_the_folder_reader_reads() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("synthetic");
    let run = train(&[
        "synth",
        "--out",
        out.to_str().unwrap(),
        "--count",
        "16",
        "--size",
        "64",
        "--seed",
        "2",
    ]);
    succeeded(&run);
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(out.join("landmarks.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 16);
    for line in &lines {
        assert_eq!(line["landmarks"].as_array().unwrap().len(), 68);
        let file = out.join(line["file"].as_str().unwrap());
        assert_eq!(image::image_dimensions(&file).unwrap(), (64, 64));
        assert!(line["file"]
            .as_str()
            .unwrap()
            .starts_with(line["label"].as_str().unwrap()));
    }
    let loaded = train::data::folder::read(
        &out,
        train::data::ClassSet::Seven,
        train::data::Split::Train,
    )
    .unwrap();
    assert_eq!(loaded.samples.len(), 16);
    assert_eq!(
        loaded.class_counts(train::data::ClassSet::Seven, None),
        [3, 3, 2, 2, 2, 2, 2]
    );
}

#[test]
fn eval_of_a_folder_without_checkpoints_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = train(&["eval", "--run", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("has no checkpoint-NNN.bpk")
            && stderr.contains(dir.path().to_str().unwrap()),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// A two-epoch fit of a tiny model on a prepared cache (plus `extra` options), then `eval`;
/// both must succeed. Returns the run folder and eval's report.
fn fit_and_eval_on_cache(cache: &str, extra: &[&str]) -> (tempfile::TempDir, serde_json::Value) {
    let run = tempfile::tempdir().unwrap();
    let r = run.path().to_str().unwrap();
    let mut args = vec![
        "fit", "--out", r, "--data", cache, "--size", "64", "--width", "4", "--blocks", "1",
        "--batch", "3", "--epochs", "2", "--k", "2", "--queue", "6",
    ];
    args.extend_from_slice(extra);
    let out = train(&args);
    succeeded(&out);
    assert!(run.path().join("checkpoint-002.bpk").is_file());
    let out = train(&["eval", "--run", r]);
    succeeded(&out);
    let report = serde_json::from_slice(&out.stdout).unwrap();
    (run, report)
}

fn fixture(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures")
        .join(name)
}

#[test]
fn prepare_caches_the_runtimes_own_crops_and_fit_trains_on_them() {
    let data = tempfile::tempdir().unwrap();
    let put = |class: &str, name: &str, from: &str| {
        std::fs::create_dir_all(data.path().join(class)).unwrap();
        std::fs::copy(fixture(from), data.path().join(class).join(name)).unwrap();
    };
    put("happiness", "astronaut.png", "astronaut.png");
    put("neutral", "hopper.jpg", "grace_hopper_512x512.jpg");
    put("sadness", "biden.jpg", "biden.jpg");
    put(
        "anger",
        "landscape.jpg",
        "640px-IceBlockNearJoekullsarlon.jpg",
    );
    std::fs::create_dir_all(data.path().join("fear")).unwrap();
    std::fs::write(
        data.path().join("fear/broken.jpg"),
        b"\xff\xd8\xff\xe0 not a jpeg",
    )
    .unwrap();

    let cache = tempfile::tempdir().unwrap();
    let c = cache.path().to_str().unwrap();
    let out = train(&[
        "prepare",
        "folder",
        data.path().to_str().unwrap(),
        "--out",
        c,
        "--size",
        "64",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("prepared 3 faces"), "{stdout}");
    assert!(stderr.contains("broken.jpg"), "{stderr}");
    assert!(stderr.contains("landscape.jpg: no face found"), "{stderr}");

    let opened = train::prepare::Cache::open(cache.path()).unwrap();
    assert_eq!(opened.faces.len(), 3);
    assert_eq!(opened.summary.skipped.len(), 2);
    assert_eq!(opened.summary.landmarks.detected, 3);
    // One preprocessing for training and inference: the cached crop is exactly what the
    // runtime's detection + alignment makes of the photo.
    let first = opened
        .faces
        .iter()
        .position(|f| f.source.ends_with("astronaut.png"))
        .unwrap();
    let cached = opened.load(first).unwrap();
    let photo = edge_fer::capture::decode_image(&fixture("astronaut.png")).unwrap();
    let finder = edge_fer::FaceFinder::load(&Default::default()).unwrap();
    let face = finder.find(&photo).remove(0);
    let mut crop = image::RgbImage::new(64, 64);
    edge_fer::align::align(
        &photo,
        &face.landmarks,
        &edge_fer::align::Alignment::builtin(),
        &mut crop,
    )
    .unwrap();
    assert!(
        cached.crop == crop,
        "cached crop differs from the runtime's"
    );

    // A short fit on the cache (all of it as test data too: a folder tree has one split).
    let (run, report) = fit_and_eval_on_cache(c, &["--test-data", c]);
    let total: u64 = report["confusion"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r.as_array().unwrap().iter().map(|v| v.as_u64().unwrap()))
        .sum();
    assert_eq!(total, 3);
    assert!(run.path().join("confusion.png").is_file());
}

#[test]
fn prepare_of_a_missing_folder_names_it() {
    let out = train(&["prepare", "folder", "/nonexistent/faces", "--out", "/tmp/x"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("/nonexistent/faces"), "{stderr}");
}

fn small_fit(out: &std::path::Path) -> Vec<String> {
    [
        "fit",
        "--out",
        out.to_str().unwrap(),
        "--train-faces",
        "140",
        "--test-faces",
        "35",
        "--size",
        "64",
        "--width",
        "4",
        "--blocks",
        "1",
        "--batch",
        "35",
        "--epochs",
        "4",
        "--k",
        "4",
        "--queue",
        "70",
        "--noise",
        "symmetric",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Replaces the value after `flag` in `args`.
fn set(args: &mut [String], flag: &str, value: &str) {
    let at = args.iter().position(|a| a == flag).expect(flag);
    args[at + 1] = value.to_string();
}

#[test]
fn a_killed_run_resumes_to_the_same_weights_as_an_unbroken_one() {
    let whole = tempfile::tempdir().unwrap();
    let out = train(
        &small_fit(whole.path())
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    succeeded(&out);

    // The run records what its noise did.
    let noise: serde_json::Value =
        serde_json::from_slice(&std::fs::read(whole.path().join("noise.json")).unwrap()).unwrap();
    let flips = noise["flipped"].as_array().unwrap();
    assert!(
        (30..=55).contains(&flips.len()),
        "30% of 140: {}",
        flips.len()
    );
    assert!(flips.iter().all(|f| f["original"] != f["noisy"]));

    let cut = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_train"))
        .args(small_fit(cut.path()))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while !cut.path().join("state-001.bin").exists() {
        assert!(
            started.elapsed().as_secs() < 300,
            "no state after 5 minutes"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    child.kill().unwrap(); // SIGKILL: no chance to clean up
    child.wait().unwrap();
    assert!(
        !cut.path().join("checkpoint-004.bpk").exists(),
        "the run finished before it could be killed"
    );
    let out = train(&["fit", "--out", cut.path().to_str().unwrap(), "--resume"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("resuming"), "{stderr}");
    assert!(
        common::checkpoint_values(cut.path(), "checkpoint-004.bpk")
            == common::checkpoint_values(whole.path(), "checkpoint-004.bpk")
    );
    let metrics = |d: &std::path::Path| std::fs::read_to_string(d.join("metrics.jsonl")).unwrap();
    assert_eq!(metrics(cut.path()), metrics(whole.path()));
}

#[test]
fn a_diverging_run_stops_with_a_message_and_keeps_its_last_good_state() {
    let dir = tempfile::tempdir().unwrap();
    let mut args = small_fit(dir.path());
    args.extend(["--lr".to_string(), "1e12".to_string()]);
    let out = train(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("loss became"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn resume_without_a_state_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = train(&["fit", "--out", dir.path().to_str().unwrap(), "--resume"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("config.json"), "{stderr}");
}

#[test]
fn ferplus_end_to_end_reports_the_divergence_from_the_annotators_votes() {
    // FER2013-style 48x48 grey faces (the astronaut photo, cropped to her face and shrunk) with
    // FERPlus votes; too small for the detector, so prepare fits landmarks in the whole image.
    let photo = edge_fer::capture::decode_image(&fixture("astronaut.png")).unwrap();
    let face = image::imageops::crop_imm(&photo, 140, 40, 200, 200).to_image();
    let grey = image::DynamicImage::ImageRgb8(face)
        .resize_exact(48, 48, image::imageops::FilterType::Triangle)
        .to_luma8();
    let pixels: Vec<String> = grey.pixels().map(|p| p.0[0].to_string()).collect();
    let pixels = pixels.join(" ");
    let dir = tempfile::tempdir().unwrap();
    let (fer, new) = (
        dir.path().join("fer2013.csv"),
        dir.path().join("fer2013new.csv"),
    );
    let mut fer_text = String::from("emotion,pixels,Usage\n");
    let mut new_text = String::from(
        "Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF\n",
    );
    // (usage, votes over neutral, happiness, surprise, sadness, anger, disgust, fear)
    let rows = [
        ("Training", [7, 3, 0, 0, 0, 0, 0]),
        ("Training", [1, 9, 0, 0, 0, 0, 0]),
        ("Training", [0, 2, 8, 0, 0, 0, 0]),
        ("Training", [2, 0, 0, 8, 0, 0, 0]),
        ("Training", [6, 4, 0, 0, 0, 0, 0]),
        ("Training", [0, 10, 0, 0, 0, 0, 0]),
        ("PublicTest", [8, 2, 0, 0, 0, 0, 0]),
        ("PublicTest", [0, 9, 1, 0, 0, 0, 0]),
    ];
    for (i, (usage, v)) in rows.iter().enumerate() {
        fer_text.push_str(&format!("0,{pixels},{usage}\n"));
        let votes: Vec<String> = v.iter().map(|n| n.to_string()).collect();
        new_text.push_str(&format!("{usage},fer{i}.png,{},0,0,0\n", votes.join(",")));
    }
    std::fs::write(&fer, fer_text).unwrap();
    std::fs::write(&new, new_text).unwrap();

    let cache = tempfile::tempdir().unwrap();
    let c = cache.path().to_str().unwrap();
    let out = train(&[
        "prepare",
        "ferplus",
        fer.to_str().unwrap(),
        new.to_str().unwrap(),
        "--out",
        c,
        "--size",
        "64",
    ]);
    succeeded(&out);
    let opened = train::prepare::Cache::open(cache.path()).unwrap();
    assert_eq!(opened.faces.len(), 8);
    assert_eq!(opened.summary.landmarks.whole_image, 8);
    assert!(opened.faces.iter().all(|f| f.votes.is_some()));

    let (_run, report) = fit_and_eval_on_cache(c, &[]);
    let js = report["js_divergence"].as_f64().unwrap();
    assert!(js > 0.0 && js <= 2f64.ln(), "{js}");
    assert_eq!(report["recovery"]["flipped"].as_u64(), Some(0));
}

#[test]
fn fit_starts_from_a_pytorch_checkpoint_or_names_why_it_cannot() {
    let pth = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/resnet-w4.pth");
    let dir = tempfile::tempdir().unwrap();
    let mut args = small_fit(dir.path());
    args.extend(["--init".to_string(), pth.display().to_string()]);
    set(&mut args, "--epochs", "1");
    let out = train(&args.iter().map(String::as_str).collect::<Vec<_>>());
    succeeded(&out);
    let saved = train::run_dir::RunDir::new(dir.path())
        .read_config()
        .unwrap();
    assert_eq!(saved.init.as_deref(), Some(pth.as_path()));

    // The same file for a wider backbone: refused, naming the file.
    let wide = tempfile::tempdir().unwrap();
    let mut args = small_fit(wide.path());
    args.extend(["--init".into(), pth.display().to_string()]);
    set(&mut args, "--width", "8");
    let out = train(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("resnet-w4.pth") && !stderr.contains("panicked"),
        "{stderr}"
    );
}

#[test]
fn a_landmark_subset_trains_that_many_heatmaps_and_bad_indices_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut args = small_fit(dir.path());
    set(&mut args, "--epochs", "1");
    args.extend(["--landmarks".to_string(), "36,45,30,48,54".to_string()]);
    let out = train(&args.iter().map(String::as_str).collect::<Vec<_>>());
    succeeded(&out);
    let run = train::run_dir::RunDir::new(dir.path());
    let config = run.read_config().unwrap();
    assert_eq!(config.model.landmarks, Some(vec![36, 45, 30, 48, 54]));
    assert_eq!(config.model.landmark_count(), 5);
    // The checkpoint has 5 heatmap channels: it loads into the 5-landmark model.
    train::eval::load_model(
        &run,
        &config,
        &run.checkpoint(1),
        7,
        &burn::prelude::Device::flex(),
    )
    .unwrap();

    let bad = tempfile::tempdir().unwrap();
    let mut args = small_fit(bad.path());
    args.extend(["--landmarks".to_string(), "3,68".to_string()]);
    let out = train(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("0-67"));
}

#[test]
fn second_method_switches_that_cannot_work_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("run");
    let out_arg = out_dir.to_str().unwrap();
    for (extra, wanted) in [
        (
            &["--arm", "--arm-kernel", "5"][..],
            "ARM kernel 5 stride 1 does not fit the 2x2 last feature map of a 64 input",
        ),
        (
            &["--relabel-fraction", "1.5"][..],
            "relabel fraction 1.5 and margin 0.2",
        ),
        (
            &["--relabel-fraction", "0.3", "--uncertainty-window", "0"][..],
            "UERM needs --relabel-from and --uncertainty-window of at least 1",
        ),
    ] {
        let mut args = vec!["fit", "--out", out_arg, "--size", "64", "--width", "8"];
        args.extend(extra);
        let out = train(&args);
        assert_eq!(out.status.code(), Some(1), "{extra:?}");
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert!(stderr.contains(wanted), "{extra:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(!out_dir.exists(), "nothing is written for a refused run");
    }
}

/// `config` as `--print-config` prints it, parsed (through text, as the tests read stdout: an
/// `f32` setting reads back as its shortest decimal).
fn as_printed<T: serde::Serialize>(config: &T) -> serde_json::Value {
    serde_json::from_str(&serde_json::to_string(config).unwrap()).unwrap()
}

/// `train fit --print-config` with `args`, parsed.
fn print_config(args: &[&str]) -> serde_json::Value {
    let mut all = vec!["fit", "--print-config"];
    all.extend_from_slice(args);
    let out = train(&all);
    succeeded(&out);
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn print_config_without_flags_is_the_configs_defaults() {
    let defaults = as_printed(&train::config::TrainingConfig::new());
    assert_eq!(print_config(&[]), defaults);
    // The paper's set-up.
    assert_eq!(defaults["model"]["width"], 64);
    assert_eq!(defaults["model"]["input_size"], 224);
    assert_eq!(defaults["epochs"], 80);
    assert_eq!(defaults["batch"], 128);
}

#[test]
fn a_config_file_and_a_flag_resolve_defaults_then_file_then_flag() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("run.json");
    std::fs::write(
        &file,
        r#"{"epochs": 15, "lr": 0.01, "model": {"width": 8}, "uerm": {"margin": 0.1}}"#,
    )
    .unwrap();
    let f = file.to_str().unwrap();
    let got = print_config(&["--config", f, "--epochs", "3", "--relabel-from", "2"]);
    let mut want = as_printed(&train::config::TrainingConfig::new());
    want["epochs"] = 3.into(); // the flag beats the file
    want["lr"] = 0.01.into(); // the file beats the default
    want["model"]["width"] = 8.into();
    // A section the file turns on starts from its own defaults.
    want["uerm"] = as_printed(&train::config::UermConfig::new());
    want["uerm"]["margin"] = 0.1.into();
    want["uerm"]["from"] = 2.into();
    assert_eq!(got, want);

    // What --print-config prints is a config file that reads back as itself.
    let printed = dir.path().join("printed.json");
    std::fs::write(&printed, serde_json::to_vec(&got).unwrap()).unwrap();
    assert_eq!(print_config(&["--config", printed.to_str().unwrap()]), got);

    // A sub-setting of a section that is off says which switch it needs.
    let out = train(&["fit", "--print-config", "--scl-temperature", "0.2"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--scl-temperature needs --scl-weight"),
        "{stderr}"
    );
}

#[test]
fn an_unknown_setting_in_a_config_file_is_refused_with_the_file_and_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("typo.json");
    std::fs::write(&file, r#"{"epochs": 2, "model": {"widht": 8}}"#).unwrap();
    let run = dir.path().join("run");
    let out = train(&[
        "fit",
        "--config",
        file.to_str().unwrap(),
        "--out",
        run.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(file.to_str().unwrap()) && stderr.contains("\"model.widht\""),
        "{stderr}"
    );
    assert!(!run.exists(), "nothing is written for a refused config");
    // Settings with --resume are refused too: the run's own config.json decides.
    let out = train(&[
        "fit",
        "--out",
        run.to_str().unwrap(),
        "--resume",
        "--epochs",
        "9",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("give no other setting"));
}

#[test]
fn a_closed_standard_output_is_not_an_error() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_train"))
        .args(["fit", "--print-config"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take()); // the reader went away (`| head -0`)
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
