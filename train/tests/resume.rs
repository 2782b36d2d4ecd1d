//! Exact resumption inside one process. This file holds a single test on purpose: initial weights
//! come from the process-wide device generator, and tests running beside it in the same process
//! would draw from it concurrently.

mod common;

use burn::prelude::*;
use train::config::{DataConfig, NoiseConfig};
use train::data::noise::NoiseKind;
use train::fit::fit;
use train::run_dir::RunDir;
use train::state::learned_distributions;

#[test]
fn resuming_from_a_middle_epoch_gives_the_unbroken_runs_weights() {
    let device = Device::flex().autodiff();
    let config = common::small().with_epochs(3).with_data(
        DataConfig::new()
            .with_train_faces(140)
            .with_test_faces(70)
            .with_noise(Some(NoiseConfig::new(NoiseKind::Asymmetric).with_rate(0.3))),
    );
    let whole_dir = tempfile::tempdir().unwrap();
    let whole = RunDir::new(whole_dir.path());
    let unbroken = fit(&config, &whole, &device, false).unwrap();

    // The same run "killed" after epoch 2: its epoch-3 files never got written.
    let cut_dir = tempfile::tempdir().unwrap();
    let cut = RunDir::new(cut_dir.path());
    fit(&config, &cut, &device, false).unwrap();
    std::fs::remove_file(cut.checkpoint(3)).unwrap();
    std::fs::remove_file(cut.state(3)).unwrap();
    // Killed between writing state-002 and its metrics line: metrics.jsonl has one line.
    let metrics = std::fs::read_to_string(cut.metrics_path()).unwrap();
    let first: String = metrics.lines().take(1).map(|l| format!("{l}\n")).collect();
    std::fs::write(cut.metrics_path(), first).unwrap();
    let resumed = fit(&config, &cut, &device, true).unwrap();

    assert_eq!(resumed.epochs, unbroken.epochs);
    assert_eq!(
        std::fs::read_to_string(cut.metrics_path()).unwrap(),
        std::fs::read_to_string(whole.metrics_path()).unwrap()
    );
    let (a, b) = (
        common::checkpoint_values(cut_dir.path(), "checkpoint-003.bpk"),
        common::checkpoint_values(whole_dir.path(), "checkpoint-003.bpk"),
    );
    assert!(a.len() > 1000);
    assert!(a == b, "same final weights");
    assert_eq!(
        learned_distributions(&cut).unwrap(),
        learned_distributions(&whole).unwrap()
    );

    // A crash (or a full disk) that leaves the newest state truncated and its checkpoint
    // corrupted: both are caught by their checksums, and --resume falls back to state-002.
    let state3 = cut.state(3);
    let bytes = std::fs::read(&state3).unwrap();
    std::fs::write(&state3, &bytes[..bytes.len() / 2]).unwrap();
    let ckpt3 = cut.checkpoint(3);
    let mut bytes = std::fs::read(&ckpt3).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&ckpt3, bytes).unwrap();
    let err = train::eval::load_model(&cut, &config, &ckpt3, 7, &device).unwrap_err();
    let err = format!("{err:#}");
    assert!(err.contains("checksum mismatch"), "{err}");
    assert!(err.contains("checkpoint-003.bpk"), "{err}");
    let again = fit(&config, &cut, &device, true).unwrap();
    assert_eq!(again.epochs, unbroken.epochs);
    assert!(train::eval::load_model(&cut, &config, &ckpt3, 7, &device).is_ok());
    let c = common::checkpoint_values(cut_dir.path(), "checkpoint-003.bpk");
    assert!(c == b, "the redone epoch gives the unbroken run's weights");
}
