//! The noisy-label benchmark's set-up end to end: a pretraining run on synthetic identities, an
//! expression run on the blend set started from its backbone with a noisy validation split held
//! out, and what `metrics.jsonl` and `eval` report about it.

mod common;

use burn::prelude::*;
use train::augment::Augment;
use train::config::{Method, NoiseConfig, TrainingConfig};
use train::data::noise::NoiseKind;
use train::fit::fit;
use train::run_dir::RunDir;
use train::state::TrainingState;

/// Five people (fewer than the expression classes: labels are people, not expressions), 100
/// faces, two epochs: enough to have a checkpoint to start from.
fn pretraining() -> TrainingConfig {
    let mut config = common::small()
        .with_method(Method::Ce)
        .with_epochs(2)
        .with_augment(Augment::none());
    config.data.identities = Some(5);
    config.data.train_faces = 100;
    config.data.test_faces = 50;
    config.model.classes = 5;
    config
}

#[test]
fn pretraining_on_identities_then_lanet_on_blends_from_its_backbone() {
    let dir = tempfile::tempdir().unwrap();
    let device = Device::flex().autodiff();
    let pre = RunDir::new(dir.path().join("pretrain"));
    fit(&pretraining(), &pre, &device, false).unwrap();
    let report = train::eval::evaluate(&pre, &Device::flex()).unwrap();
    assert_eq!(report.confusion.len(), 5, "one row per person");
    assert!(!pre.confusion_png().exists(), "no picture of people");
    let csv = std::fs::read_to_string(pre.confusion_csv()).unwrap();
    assert!(csv.starts_with("true\\predicted,id0,id1"), "{csv}");
    let err = train::export::export(&pre, None, &dir.path().join("onnx"), "x").unwrap_err();
    assert!(err.to_string().contains("--init-from"), "{err}");

    let mut config = common::small().with_epochs(2).with_augment(Augment::none());
    config.init_from = Some(pre.path().to_path_buf());
    config.data.blends = true;
    config.data.validation = 0.2;
    config.data.noise = Some(NoiseConfig::new(NoiseKind::Symmetric).with_rate(0.2));

    // The backbone starts as the pretraining run's last checkpoint; the classifier does not.
    let source =
        train::eval::load_model(&pre, &pretraining(), &pre.checkpoint(2), 5, &Device::flex())
            .unwrap();
    let labels = vec![0usize; 168];
    let state = TrainingState::fresh(&config, &labels, 7, &device).unwrap();
    let (theirs, ours) = (
        common::values(source.expression()),
        common::values(state.model.net.expression()),
    );
    let feature = 8 * 8; // 8 x width
    let backbone = ours.len() - (feature * 7 + 7);
    assert_eq!(theirs.len() - (feature * 5 + 5), backbone);
    assert_eq!(ours[..backbone], theirs[..backbone]);
    assert_ne!(
        ours[backbone..backbone + 10],
        theirs[backbone..backbone + 10]
    );

    let run = RunDir::new(dir.path().join("blends"));
    let summary = fit(&config, &run, &device, false).unwrap();
    // 210 faces, 42 held out; blends' annotated labels and the injected noise both flip.
    assert!(summary.flipped > 20, "{}", summary.flipped);
    for m in &summary.epochs {
        let val = m.val_accuracy.expect("a validation split was held out");
        assert!((0.0..=1.0).contains(&val));
        for p in [m.purity_expression, m.purity_landmark] {
            let p = p.expect("LA-Net has both spaces");
            assert!((0.0..=1.0).contains(&p), "{m:?}");
        }
        let (recovered, lost) = (m.bank_recovered.unwrap(), m.bank_lost.unwrap());
        assert!(recovered <= summary.flipped && lost <= 168 - summary.flipped);
    }
    let report = train::eval::evaluate(&run, &Device::flex()).unwrap();
    let scores = report
        .distributions
        .expect("the blend set's truth is known");
    // Half the faces are blends; the split keeps about half of them in training.
    assert!((60..110).contains(&scores.faces), "{}", scores.faces);
    let learned = scores.learned.expect("an LA-Net run has a history bank");
    for js in [
        learned,
        scores.softmax,
        scores.one_hot_labels,
        scores.even_split,
    ] {
        assert!((0.0..=std::f64::consts::LN_2).contains(&js), "{scores:?}");
    }
    // The floor reference is closer to the truth than the labels are.
    assert!(scores.even_split < scores.one_hot_labels, "{scores:?}");
    let epochs = report.epochs;
    assert_eq!(epochs.last, 2);
    assert!(epochs.best_accuracy >= epochs.last_accuracy);
    assert!(epochs.early_stopped.is_some());
}

#[test]
fn a_starting_run_of_another_backbone_is_refused_naming_its_config() {
    let dir = tempfile::tempdir().unwrap();
    let device = Device::flex().autodiff();
    let pre = RunDir::new(dir.path().join("pretrain"));
    fit(&pretraining().with_epochs(1), &pre, &device, false).unwrap();
    let mut config = common::small();
    config.model.width = 16;
    config.init_from = Some(pre.checkpoint(1));
    let err = TrainingState::fresh(&config, &[0; 10], 7, &device)
        .err()
        .expect("width 16 cannot start from width 8");
    let text = format!("{err:#}");
    assert!(
        text.contains("config.json") && text.contains("width 8"),
        "{text}"
    );
}

#[test]
fn a_momentum_outside_0_1_is_refused() {
    let mut config = common::small();
    config.contrastive.key_momentum = -2.8;
    let err = config.validate().unwrap_err().to_string();
    assert!(err.contains("contrastive.key_momentum -2.8"), "{err}");
}

#[test]
fn identity_runs_refuse_what_only_expressions_have() {
    let mut config = pretraining();
    config.data.noise = Some(NoiseConfig::new(NoiseKind::Symmetric));
    assert!(config
        .validate()
        .unwrap_err()
        .to_string()
        .contains("no noise"));
    let mut config = pretraining();
    config.model.classes = 7;
    assert!(config
        .validate()
        .unwrap_err()
        .to_string()
        .contains("model.classes"));
}
