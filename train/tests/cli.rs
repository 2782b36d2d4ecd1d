//! The `train` binary end to end: `inspect` on small datasets the tests write, and `synth`.

use std::process::Command;

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
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
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
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
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
