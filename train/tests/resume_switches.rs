//! The second method's switches (SCL, UERM, ARM) on top of LA-Net: a run with all of them
//! resumes exactly (UERM's labels and prediction history and ARM's running mean are part of the
//! state), logs its relabels consistently, and evaluates from its checkpoint exactly as it scored
//! in training. One test in its own process, for the reason given in resume.rs.

mod common;

use burn::prelude::*;
use train::config::{DataConfig, NoiseConfig, SclConfig, UermConfig};
use train::data::noise::NoiseKind;
use train::fit::fit;
use train::model::lanet::ArmOptions;
use train::run_dir::RunDir;
use train::state::current_labels;

#[test]
fn a_run_with_every_switch_resumes_exactly_and_logs_its_relabels() {
    let device = Device::flex().autodiff();
    let small = common::small();
    let config = small
        .clone()
        .with_epochs(3)
        .with_model(small.model.clone().with_arm(Some(ArmOptions::new())))
        .with_data(
            DataConfig::new()
                .with_train_faces(140)
                .with_test_faces(70)
                .with_noise(Some(NoiseConfig::new(NoiseKind::Symmetric).with_rate(0.3))),
        )
        .with_scl(Some(SclConfig::new().with_weight(0.5)))
        // Relabel from the first epoch, among every sample, at no margin: a 3-epoch run then
        // changes labels every epoch, so the resumed run has relabels to reproduce.
        .with_uerm(Some(
            UermConfig::new()
                .with_fraction(1.0)
                .with_margin(0.0)
                .with_from(1)
                .with_window(2),
        ));
    let whole_dir = tempfile::tempdir().unwrap();
    let whole = RunDir::new(whole_dir.path());
    let unbroken = fit(&config, &whole, &device, false).unwrap();
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
    let clean = train::faces::FaceSet::synthetic(140, 0, 64).unwrap().labels;
    let labels = current_labels(&whole).unwrap();
    let wrong = labels.iter().zip(&clean).filter(|(a, b)| a != b).count();
    assert_eq!(wrong, unbroken.epochs[2].wrong_labels);
    let report = train::eval::evaluate(&whole, &Device::flex()).unwrap();
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
    let cut_dir = tempfile::tempdir().unwrap();
    let cut = RunDir::new(cut_dir.path());
    fit(&config, &cut, &device, false).unwrap();
    std::fs::remove_file(cut.checkpoint(3)).unwrap();
    std::fs::remove_file(cut.state(3)).unwrap();
    let resumed = fit(&config, &cut, &device, true).unwrap();
    assert_eq!(resumed.epochs, unbroken.epochs);
    assert_eq!(current_labels(&cut).unwrap(), labels);
    let (a, b) = (
        common::checkpoint_values(cut_dir.path(), "checkpoint-003.bpk"),
        common::checkpoint_values(whole_dir.path(), "checkpoint-003.bpk"),
    );
    assert!(a == b, "same final weights, ARM's running mean included");
}
