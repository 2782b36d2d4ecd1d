//! The second method's switches (SCL, UERM, ARM) on top of LA-Net: a run with all of them
//! resumes exactly (UERM's labels and prediction history and ARM's running mean are part of the
//! state), logs its relabels consistently, and evaluates from its checkpoint exactly as it scored
//! in training. One test in its own process, for the reason given in resume.rs.

mod common;

use burn::prelude::*;
use train::augment::Augment;
use train::data::noise::NoiseKind;
use train::fit::{current_labels, fit, FitConfig};
use train::state::state_path;

#[test]
fn a_run_with_every_switch_resumes_exactly_and_logs_its_relabels() {
    let device = Device::flex().autodiff();
    let config = FitConfig {
        train_faces: 140,
        test_faces: 70,
        input_size: 64,
        width: 8,
        epochs: 3,
        batch: 35,
        lr: 3e-3,
        k: 4,
        queue: 140,
        augment: Augment::default(),
        noise: Some((NoiseKind::Symmetric, 0.3)),
        scl_weight: 0.5,
        // Relabel from the first epoch, among every sample, at no margin: a 3-epoch run then
        // changes labels every epoch, so the resumed run has relabels to reproduce.
        relabel_fraction: 1.0,
        relabel_margin: 0.0,
        relabel_from: 1,
        uncertainty_window: 2,
        arm: true,
        ..FitConfig::default()
    };
    let whole = tempfile::tempdir().unwrap();
    let unbroken = fit(&config, whole.path(), &device, false).unwrap();
    assert!(
        unbroken.epochs.iter().all(|e| e.scl > 0.0),
        "{:?}",
        unbroken.epochs
    );
    let relabelled: usize = unbroken.epochs.iter().map(|e| e.relabelled).sum();
    assert!(relabelled > 0, "{:?}", unbroken.epochs);
    for e in &unbroken.epochs {
        assert!(e.relabelled_right <= e.relabelled, "{e:?}");
    }
    // The labels the state keeps are the ones the metrics describe.
    let clean = train::fit::FaceSet::synthetic(140, 0, 64).unwrap().labels;
    let labels = current_labels(whole.path()).unwrap();
    let wrong = labels.iter().zip(&clean).filter(|(a, b)| a != b).count();
    assert_eq!(wrong, unbroken.epochs[2].wrong_labels);
    let report = train::eval::evaluate(whole.path(), &Device::flex()).unwrap();
    assert!((report.accuracy - unbroken.test_accuracy).abs() < 1e-9);
    let r = report
        .relabelling
        .expect("a UERM run reports its relabelling");
    assert_eq!(r.flipped, unbroken.flipped);
    assert_eq!(r.flipped - r.recovered + r.lost, wrong);
    // 64x64 input: a 2x2 last map, so ARM's default kernel is 1x1 and every position weighs
    // the same.
    let weights = report
        .arm_position_weights
        .expect("an ARM run reports its weights");
    assert_eq!(weights.len(), 2);
    assert!(
        weights
            .iter()
            .flatten()
            .all(|&w| w == weights[0][0] && w > 0.0),
        "{weights:?}"
    );

    // Killed after epoch 2, resumed: the same metrics (relabels included), labels and weights.
    let cut = tempfile::tempdir().unwrap();
    fit(&config, cut.path(), &device, false).unwrap();
    std::fs::remove_file(cut.path().join("checkpoint-003.bpk")).unwrap();
    std::fs::remove_file(state_path(cut.path(), 3)).unwrap();
    let resumed = fit(&config, cut.path(), &device, true).unwrap();
    assert_eq!(resumed.epochs, unbroken.epochs);
    assert_eq!(current_labels(cut.path()).unwrap(), labels);
    let (a, b) = (
        common::checkpoint_values(cut.path(), "checkpoint-003.bpk"),
        common::checkpoint_values(whole.path(), "checkpoint-003.bpk"),
    );
    assert!(a == b, "same final weights, ARM's running mean included");
}
