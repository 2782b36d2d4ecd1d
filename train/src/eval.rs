//! Evaluation of a finished run: rebuild the model from the run's `config.json`, load its newest
//! checkpoint, and report accuracy, per-class accuracy, mean class accuracy and the confusion
//! matrix (also written as `confusion.csv` and `confusion.png` beside the checkpoints, with the
//! run's `learning-curve.png`), and for
//! LA-Net runs how many flipped labels the learned distributions recovered and, with annotator
//! votes, their Jensen-Shannon divergence from them; for UERM runs, how many the relabelling put
//! right.

use std::path::{Path, PathBuf};

use anyhow::Context;
use burn::module::Module;
use burn::prelude::*;
use serde::Serialize;

use edge_fer::classify::argmax;

use crate::config::{Method, TrainingConfig};
use crate::faces::{class_name, predict, run_faces, softmax_of, RunFaces};
use crate::metrics::EpochMetrics;
use crate::model::lanet::LaNet;
use crate::plot::{confusion_png, learning_curve_png};
use crate::run_dir::RunDir;
use crate::state::{current_labels, learned_distributions};

/// What `evaluate` reports.
#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    /// The checkpoint evaluated.
    pub checkpoint: PathBuf,
    /// Overall accuracy.
    pub accuracy: f64,
    /// Accuracy of each class (recall), canonical order.
    pub per_class: Vec<f64>,
    /// Mean of the per-class accuracies.
    pub mean_class_accuracy: f64,
    /// `confusion[true][predicted]` counts.
    pub confusion: Vec<Vec<usize>>,
    /// For LA-Net runs: flipped labels the learned distributions recovered.
    pub recovery: Option<Recovery>,
    /// For UERM runs: flipped labels the relabelling put right (and clean ones it changed).
    pub relabelling: Option<Recovery>,
    /// For ARM runs: the learned de-albino weight of each position of the last feature map
    /// (rows of the map; they start as the window-count profile and sum to 1 at the start).
    pub arm_position_weights: Option<Vec<Vec<f32>>>,
    /// For data with annotator votes (FERPlus): mean Jensen-Shannon divergence between the
    /// learned distributions and the votes (`distributions.learned`; for a blend set, over its
    /// blends).
    pub js_divergence: Option<f64>,
    /// The clean test accuracy of the last epoch, of the best epoch, and of the epoch a
    /// practitioner would pick by the noisy validation split (from `metrics.jsonl`).
    pub epochs: EpochChoice,
    /// For training data whose true label distributions are known (votes, the synthetic blend
    /// set): how close each estimate is to them.
    pub distributions: Option<DistributionScores>,
}

/// The test accuracy at the epochs one might report.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct EpochChoice {
    /// The last epoch.
    pub last: usize,
    /// Its clean test accuracy.
    pub last_accuracy: f64,
    /// The epoch with the best clean test accuracy (the first of equals): an upper bound no
    /// method can select without clean labels.
    pub best: usize,
    /// Its clean test accuracy.
    pub best_accuracy: f64,
    /// The epoch with the best accuracy on the held-out noisy validation split (the first of
    /// equals), when the run held one out: early stopping as practised.
    pub early_stopped: Option<usize>,
    /// Its clean test accuracy.
    pub early_stopped_accuracy: Option<f64>,
}

impl EpochChoice {
    /// From a run's per-epoch metrics; `None` for a run without epochs.
    pub fn of(epochs: &[EpochMetrics]) -> Option<EpochChoice> {
        let last = epochs.last()?;
        // The first epoch of the highest value.
        let first_best = |f: &dyn Fn(&EpochMetrics) -> Option<f64>| {
            epochs
                .iter()
                .filter_map(|e| f(e).map(|v| (e, v)))
                .fold(
                    None,
                    |best: Option<(&EpochMetrics, f64)>, (e, v)| match best {
                        Some((_, b)) if b >= v => best,
                        _ => Some((e, v)),
                    },
                )
                .map(|(e, _)| e)
        };
        let best = first_best(&|e| Some(e.test_accuracy)).unwrap_or(last);
        let stopped = first_best(&|e| e.val_accuracy);
        Some(EpochChoice {
            last: last.epoch,
            last_accuracy: last.test_accuracy,
            best: best.epoch,
            best_accuracy: best.test_accuracy,
            early_stopped: stopped.map(|e| e.epoch),
            early_stopped_accuracy: stopped.map(|e| e.test_accuracy),
        })
    }
}

/// Mean Jensen-Shannon divergence from the true label distributions of the training faces that
/// are ambiguous (a blend set's blends; every face with votes otherwise), of each estimate.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DistributionScores {
    /// Faces scored.
    pub faces: usize,
    /// LA-Net's learned distributions (the history bank at the end of training).
    pub learned: Option<f64>,
    /// The trained network's softmax on the (unaugmented) training faces.
    pub softmax: f64,
    /// The one-hot labels trained on.
    pub one_hot_labels: f64,
    /// A floor reference for blends: half on each class the truth puts weight on (the right
    /// pair, evenly); for other data, uniform over those classes.
    pub even_split: f64,
}

/// Rebuilds the network of `run` (whose config is `config`) for data of `classes` classes and
/// loads `checkpoint` into it.
///
/// # Errors
/// A checkpoint that cannot be read, is damaged or does not fit the config, named.
pub fn load_model(
    run: &RunDir,
    config: &TrainingConfig,
    checkpoint: &Path,
    classes: usize,
    device: &Device,
) -> anyhow::Result<LaNet> {
    let bytes = RunDir::read_checkpoint(checkpoint)?;
    let record = burn::store::ModuleRecord::from_bytes(burn::tensor::Bytes::from_bytes_vec(bytes))
        .map_err(|e| anyhow::anyhow!("{}: not a readable checkpoint: {e}", checkpoint.display()))?;
    let net = config.model_for(classes).init(device);
    let net = net.try_load_record(record).map_err(|e| {
        anyhow::anyhow!(
            "{}: does not match {}: {e}",
            checkpoint.display(),
            run.config_path().display()
        )
    })?;
    Ok(net)
}

/// How well the learned label distributions undid the injected noise.
#[derive(Debug, Clone, Serialize)]
pub struct Recovery {
    /// Training labels the noise flipped.
    pub flipped: usize,
    /// Of those, how many have their clean label as the learned distribution's argmax.
    pub recovered: usize,
    /// Of the labels not flipped, how many the learned distribution moved away from.
    pub lost: usize,
}

/// Evaluates the newest checkpoint of the run in `dir` on its clean test set, and, for LA-Net
/// runs, its learned label distributions against the truth.
///
/// # Errors
/// As [`load_model`], or if `confusion.csv`/`confusion.png` cannot be written.
pub fn evaluate(run: &RunDir, device: &Device) -> anyhow::Result<EvalReport> {
    let checkpoint = run.newest_checkpoint()?;
    let config = run.read_config()?;
    let RunFaces {
        train,
        labels: noisy,
        test,
        ..
    } = run_faces(&config)?;
    let k = test.classes;
    let net = load_model(run, &config, &checkpoint, k, device)?;
    let pred = predict(&net.valid(), &test, config.batch, device)?;
    let names: Vec<String> = (0..k).map(|c| class_name(&config, c)).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut confusion = vec![vec![0usize; k]; k];
    for (&t, &p) in test.labels.iter().zip(&pred) {
        confusion[t][p.min(k - 1)] += 1;
    }
    let per_class: Vec<f64> = confusion
        .iter()
        .enumerate()
        .map(|(c, row)| row[c] as f64 / row.iter().sum::<usize>().max(1) as f64)
        .collect();
    let correct: usize = (0..k).map(|c| confusion[c][c]).sum();
    write_confusion_csv(&run.confusion_csv(), &confusion, &names)?;
    // A picture of hundreds of identities says nothing.
    if config.data.identities.is_none() {
        confusion_png(&confusion, &names, &run.confusion_png())?;
    }
    let metrics = run.read_metrics()?;
    learning_curve_png(&metrics, &run.learning_curve_png())?;
    let epochs = EpochChoice::of(&metrics)
        .with_context(|| format!("{} has no epochs", run.path().display()))?;
    // Compares each training sample's label estimate with its clean label.
    let recovery_of = |estimates: &[usize]| {
        let mut r = Recovery {
            flipped: 0,
            recovered: 0,
            lost: 0,
        };
        for (i, (&now, &clean)) in estimates.iter().zip(&train.labels).enumerate() {
            if noisy.flipped(i) {
                r.flipped += 1;
                r.recovered += usize::from(now == clean);
            } else {
                r.lost += usize::from(now != clean);
            }
        }
        r
    };
    // The history bank only learns under LA-Net; a CE run's bank is its one-hot labels.
    let bank = match config.method {
        Method::Lanet => Some(learned_distributions(run)?),
        Method::Ce => None,
    };
    let distributions = match &train.votes {
        Some(votes) => {
            let softmax = softmax_of(&net.valid(), &train, config.batch, device)?;
            Some(distribution_scores(
                votes,
                train.ambiguous.as_deref(),
                bank.as_deref(),
                &softmax,
                &noisy.labels,
                k,
            ))
        }
        None => None,
    };
    let recovery = bank.map(|bank| {
        let best: Vec<usize> = bank.chunks(k).map(argmax).collect();
        recovery_of(&best)
    });
    // Votes (FERPlus) mark no face as ambiguous: this is the mean over all of them.
    let js = distributions.as_ref().and_then(|d| d.learned);
    let relabelling = match config.uerm {
        Some(_) => Some(recovery_of(&current_labels(run)?)),
        None => None,
    };
    let arm_position_weights = net.arm().map(|arm| {
        let w = arm.position_weights();
        let side = w.dims()[1];
        let values: Vec<f32> = w
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .expect("float weights");
        values.chunks(side).map(<[f32]>::to_vec).collect()
    });
    Ok(EvalReport {
        checkpoint,
        relabelling,
        arm_position_weights,
        accuracy: correct as f64 / test.labels.len().max(1) as f64,
        mean_class_accuracy: per_class.iter().sum::<f64>() / k as f64,
        per_class,
        confusion,
        recovery,
        js_divergence: js,
        epochs,
        distributions,
    })
}

/// [`DistributionScores`] of the rows of `truth` that `ambiguous` marks (all when `None`):
/// `bank` and `softmax` row-major `[faces, classes]`, `labels` the one-hot labels trained on.
pub fn distribution_scores(
    truth: &[Vec<f32>],
    ambiguous: Option<&[bool]>,
    bank: Option<&[f32]>,
    softmax: &[f32],
    labels: &[usize],
    classes: usize,
) -> DistributionScores {
    let rows: Vec<usize> = (0..truth.len())
        .filter(|&i| ambiguous.is_none_or(|a| a[i]))
        .collect();
    let mean = |estimate: &dyn Fn(usize) -> Vec<f32>| {
        rows.iter()
            .map(|&i| js_divergence(&estimate(i), &truth[i]))
            .sum::<f64>()
            / rows.len().max(1) as f64
    };
    let row = |values: &[f32], i: usize| values[i * classes..(i + 1) * classes].to_vec();
    let one_hot = |i: usize| {
        let mut v = vec![0.0; classes];
        v[labels[i]] = 1.0;
        v
    };
    let even = |i: usize| {
        let support = truth[i].iter().filter(|&&t| t > 0.0).count().max(1) as f32;
        truth[i]
            .iter()
            .map(|&t| if t > 0.0 { 1.0 / support } else { 0.0 })
            .collect()
    };
    DistributionScores {
        faces: rows.len(),
        learned: bank.map(|b| mean(&|i| row(b, i))),
        softmax: mean(&|i| row(softmax, i)),
        one_hot_labels: mean(&one_hot),
        even_split: mean(&even),
    }
}

/// Writes `confusion[true][predicted]` as CSV: a header row of the predicted classes, then one row
/// per true class.
fn write_confusion_csv(
    path: &Path,
    confusion: &[Vec<usize>],
    names: &[&str],
) -> anyhow::Result<()> {
    let write = || -> anyhow::Result<()> {
        let mut csv = csv::Writer::from_path(path)?;
        csv.write_record(std::iter::once("true\\predicted").chain(names.iter().copied()))?;
        for (name, row) in names.iter().zip(confusion) {
            csv.write_record(
                std::iter::once(name.to_string()).chain(row.iter().map(usize::to_string)),
            )?;
        }
        csv.flush()?;
        Ok(())
    };
    write().with_context(|| format!("writing {}", path.display()))
}

/// Jensen-Shannon divergence (natural log, so at most ln 2) between two distributions, each
/// renormalised to sum 1 first.
pub fn js_divergence(p: &[f32], q: &[f32]) -> f64 {
    let norm = |v: &[f32]| {
        let s: f64 = v.iter().map(|&x| f64::from(x.max(0.0))).sum();
        v.iter()
            .map(|&x| f64::from(x.max(0.0)) / s.max(1e-12))
            .collect::<Vec<f64>>()
    };
    let (p, q) = (norm(p), norm(q));
    let kl = |a: &[f64], m: &[f64]| -> f64 {
        a.iter()
            .zip(m)
            .filter(|(x, _)| **x > 0.0)
            .map(|(x, y)| x * (x / y).ln())
            .sum()
    };
    let m: Vec<f64> = p.iter().zip(&q).map(|(a, b)| 0.5 * (a + b)).collect();
    0.5 * kl(&p, &m) + 0.5 * kl(&q, &m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn epoch(epoch: usize, test: f64, val: Option<f64>) -> EpochMetrics {
        EpochMetrics {
            epoch,
            test_accuracy: test,
            val_accuracy: val,
            ..EpochMetrics::default()
        }
    }

    #[test]
    fn epoch_choice_reads_last_best_and_early_stopped() {
        let epochs = [
            epoch(1, 0.5, Some(0.4)),
            epoch(2, 0.8, Some(0.6)),
            epoch(3, 0.7, Some(0.7)),
            epoch(4, 0.8, Some(0.7)),
            epoch(5, 0.6, Some(0.5)),
        ];
        let c = EpochChoice::of(&epochs).unwrap();
        assert_eq!((c.last, c.last_accuracy), (5, 0.6));
        // The first of equal bests: epoch 2 (test), epoch 3 (validation).
        assert_eq!((c.best, c.best_accuracy), (2, 0.8));
        assert_eq!(
            (c.early_stopped, c.early_stopped_accuracy),
            (Some(3), Some(0.7))
        );
        let without = EpochChoice::of(&[epoch(1, 0.5, None)]).unwrap();
        assert_eq!(without.early_stopped, None);
        assert!(EpochChoice::of(&[]).is_none());
    }

    #[test]
    fn distribution_scores_by_hand() {
        // Face 0 a blend (0.7, 0.3) on classes 0 and 1, face 1 pure (not scored).
        let truth = vec![vec![0.7, 0.3, 0.0], vec![0.0, 0.0, 1.0]];
        let ambiguous = [true, false];
        let bank = [0.7, 0.3, 0.0, 0.0, 0.0, 1.0];
        let softmax = [0.2, 0.8, 0.0, 0.0, 0.0, 1.0];
        let s = distribution_scores(&truth, Some(&ambiguous), Some(&bank), &softmax, &[0, 2], 3);
        assert_eq!(s.faces, 1);
        assert!(s.learned.unwrap().abs() < 1e-12, "the bank is the truth");
        let js = |p: &[f32]| js_divergence(p, &truth[0]);
        assert!((s.softmax - js(&[0.2, 0.8, 0.0])).abs() < 1e-12);
        assert!((s.one_hot_labels - js(&[1.0, 0.0, 0.0])).abs() < 1e-12);
        assert!((s.even_split - js(&[0.5, 0.5, 0.0])).abs() < 1e-12);
        // (0.5, 0.5) is nearer (0.7, 0.3) than the one-hot label is.
        assert!(s.even_split < s.one_hot_labels);
    }

    #[test]
    fn js_divergence_by_hand() {
        // Identical: 0. Disjoint: ln 2. p = (1, 0), q = (1/2, 1/2): m = (3/4, 1/4),
        // KL(p||m) = ln(4/3), KL(q||m) = 1/2 ln(2/3) + 1/2 ln 2, JS = half their sum.
        assert!(js_divergence(&[0.3, 0.7], &[3.0, 7.0]).abs() < 1e-12);
        assert!((js_divergence(&[1.0, 0.0], &[0.0, 1.0]) - 2f64.ln()).abs() < 1e-12);
        let want = 0.5 * (4f64 / 3.0).ln() + 0.25 * ((2f64 / 3.0).ln() + 2f64.ln());
        assert!((js_divergence(&[1.0, 0.0], &[0.5, 0.5]) - want).abs() < 1e-12);
    }
}
