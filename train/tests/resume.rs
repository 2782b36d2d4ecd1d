//! Exact resumption inside one process. This file holds a single test on purpose: initial weights
//! come from the process-wide device generator, and tests running beside it in the same process
//! would draw from it concurrently.

mod common;

use burn::prelude::*;
use train::augment::Augment;
use train::data::noise::NoiseKind;
use train::fit::{fit, learned_distributions, FitConfig};
use train::state::state_path;

fn small() -> FitConfig {
    FitConfig {
        train_faces: 210,
        test_faces: 70,
        input_size: 64,
        width: 8,
        epochs: 6,
        batch: 35,
        lr: 3e-3,
        k: 4,
        queue: 140,
        augment: Augment::default(),
        ..FitConfig::default()
    }
}

#[test]
fn resuming_from_a_middle_epoch_gives_the_unbroken_runs_weights() {
    let device = Device::flex().autodiff();
    let config = FitConfig {
        epochs: 3,
        train_faces: 140,
        noise: Some((NoiseKind::Asymmetric, 0.3)),
        ..small()
    };
    let whole = tempfile::tempdir().unwrap();
    let unbroken = fit(&config, whole.path(), &device, false).unwrap();

    // The same run "killed" after epoch 2: its epoch-3 files never got written.
    let cut = tempfile::tempdir().unwrap();
    fit(&config, cut.path(), &device, false).unwrap();
    std::fs::remove_file(cut.path().join("checkpoint-003.bpk")).unwrap();
    std::fs::remove_file(state_path(cut.path(), 3)).unwrap();
    // Killed between writing state-002 and its metrics line: metrics.jsonl has one line.
    let metrics = std::fs::read_to_string(cut.path().join("metrics.jsonl")).unwrap();
    let first: String = metrics.lines().take(1).map(|l| format!("{l}\n")).collect();
    std::fs::write(cut.path().join("metrics.jsonl"), first).unwrap();
    let resumed = fit(&config, cut.path(), &device, true).unwrap();

    assert_eq!(resumed.epochs, unbroken.epochs);
    assert_eq!(
        std::fs::read_to_string(cut.path().join("metrics.jsonl")).unwrap(),
        std::fs::read_to_string(whole.path().join("metrics.jsonl")).unwrap()
    );
    let (a, b) = (
        common::checkpoint_values(cut.path(), "checkpoint-003.bpk"),
        common::checkpoint_values(whole.path(), "checkpoint-003.bpk"),
    );
    assert!(a.len() > 1000);
    assert!(a == b, "same final weights");
    assert_eq!(
        learned_distributions(cut.path()).unwrap(),
        learned_distributions(whole.path()).unwrap()
    );

    // A crash (or a full disk) that leaves the newest state truncated and its checkpoint
    // corrupted: both are caught by their checksums, and --resume falls back to state-002.
    let state3 = state_path(cut.path(), 3);
    let bytes = std::fs::read(&state3).unwrap();
    std::fs::write(&state3, &bytes[..bytes.len() / 2]).unwrap();
    let ckpt3 = cut.path().join("checkpoint-003.bpk");
    let mut bytes = std::fs::read(&ckpt3).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&ckpt3, bytes).unwrap();
    let err = train::eval::load_model(cut.path(), &ckpt3, 7, &device).unwrap_err();
    assert!(err.contains("checksum mismatch"), "{err}");
    assert!(err.contains("checkpoint-003.bpk"), "{err}");
    let again = fit(&config, cut.path(), &device, true).unwrap();
    assert_eq!(again.epochs, unbroken.epochs);
    assert!(train::eval::load_model(cut.path(), &ckpt3, 7, &device).is_ok());
    let c = common::checkpoint_values(cut.path(), "checkpoint-003.bpk");
    assert!(c == b, "the redone epoch gives the unbroken run's weights");
}
