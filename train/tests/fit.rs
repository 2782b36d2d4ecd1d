//! A short run of the loop end to end: its files, that it learns, that its checkpoint scores in
//! `eval` exactly as in training, and that an impossible config writes nothing.

mod common;

use burn::prelude::*;
use train::augment::Augment;
use train::config::{layers, TrainingConfig};
use train::fit::fit;
use train::run_dir::RunDir;

/// The tests' small run; six short epochs learn faster without augmentation (augmentation has
/// its own tests).
fn small() -> TrainingConfig {
    common::small().with_augment(Augment::none())
}

#[test]
fn a_short_run_writes_its_files_learns_and_reloads() {
    let dir = tempfile::tempdir().unwrap();
    let run = RunDir::new(dir.path());
    let device = Device::flex().autodiff();
    let config = small();
    let summary = fit(&config, &run, &device, false).unwrap();
    assert_eq!(summary.epochs.len(), 6);
    assert_eq!(run.read_metrics().unwrap(), summary.epochs);
    for e in 1..=6 {
        assert!(run.checkpoint(e).is_file());
    }
    // Only the two newest states are kept.
    let states: Vec<usize> = run.states().iter().map(|s| s.0).collect();
    assert_eq!(states, vec![6, 5]);
    assert_eq!(
        layers::as_map(&run.read_config().unwrap()),
        layers::as_map(&config)
    );
    let noise: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.noise_path()).unwrap()).unwrap();
    assert_eq!(noise["flipped"].as_array().unwrap().len(), summary.flipped);
    assert!(
        summary.epochs[5].loss < summary.epochs[0].loss,
        "{:?}",
        summary.epochs
    );
    assert!(summary.epochs.iter().all(|e| e.contrastive > 0.0));
    // Well above chance (1/7) after six short epochs on clean synthetic faces.
    assert!(summary.test_accuracy > 0.3, "{:?}", summary.epochs);
    // The last checkpoint loads back into a fresh model and scores exactly as in training.
    let report = train::eval::evaluate(&run, &Device::flex()).unwrap();
    assert_eq!(report.checkpoint, run.checkpoint(6));
    assert!(
        (report.accuracy - summary.test_accuracy).abs() < 1e-9,
        "{} vs {}",
        report.accuracy,
        summary.test_accuracy
    );
    assert_eq!(report.confusion.iter().flatten().sum::<usize>(), 70);
    assert!(run.confusion_csv().is_file());
    assert!(run.confusion_png().is_file());
    assert!(run.learning_curve_png().is_file());
    // Training accuracy against the (clean, here) labels trained on rises with the test's.
    let (first, last) = (&summary.epochs[0], &summary.epochs[5]);
    assert!(
        last.train_accuracy > first.train_accuracy && last.train_accuracy <= 1.0,
        "{:?}",
        summary.epochs
    );
}

#[test]
fn an_invalid_config_is_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let run = RunDir::new(dir.path().join("run"));
    let config = small().with_batch(1);
    let err = fit(&config, &run, &Device::flex().autodiff(), false).unwrap_err();
    assert!(err.to_string().contains("batch"), "{err}");
    assert!(!run.path().exists());
}
