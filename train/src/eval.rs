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
use crate::data::Expression;
use crate::faces::{datasets, noisy_labels, predict};
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
    /// learned distributions and the votes.
    pub js_divergence: Option<f64>,
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
    let (train, test) = datasets(&config)?;
    let k = test.classes;
    let net = load_model(run, &config, &checkpoint, k, device)?;
    let pred = predict(&net.valid(), &test, config.batch, device)?;
    let names: Vec<&str> = Expression::ALL[..k].iter().map(|e| e.name()).collect();
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
    confusion_png(&confusion, &names, &run.confusion_png())?;
    learning_curve_png(&run.read_metrics()?, &run.learning_curve_png())?;

    let noisy = noisy_labels(&config, &train)?;
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
    let (recovery, js) = if config.method == Method::Lanet {
        let bank = learned_distributions(run)?;
        let best: Vec<usize> = bank.chunks(k).map(argmax).collect();
        let js = train.votes.as_ref().map(|votes| {
            let total: f64 = votes
                .iter()
                .zip(bank.chunks(k))
                .map(|(v, row)| js_divergence(row, v))
                .sum();
            total / votes.len().max(1) as f64
        });
        (Some(recovery_of(&best)), js)
    } else {
        (None, None)
    };
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
    })
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
