//! The training loop: epochs of progressively balanced, augmented batches with a linearly
//! decaying learning rate; after each epoch a metrics line, the network's checkpoint and the full
//! resumable state; clean-test accuracy throughout.
//!
//! Label noise, if any, is applied to the training labels only; `noise.json` records every
//! flipped sample. The run's files are [`RunDir`]'s; `learning-curve.png` is redrawn after every
//! epoch, so a long run can be watched as a picture.

use anyhow::Context;
use burn::prelude::*;
use edge_fer::classify::argmax;
use serde::Serialize;

use crate::augment::Plan;
use crate::config::{Method, TrainingConfig};
use crate::data::sampler::epoch_indices;
use crate::faces::{
    accuracy, accuracy_against, batch_of, class_name, keep_landmarks, run_faces, FaceSet, RunFaces,
    TrainLabels,
};
use crate::metrics::EpochMetrics;
use crate::model::lde::{host_values, neighbour_counts};
use crate::plot::learning_curve_png;
use crate::relabel::relabel;
use crate::rng::SplitMix64;
use crate::run_dir::RunDir;
use crate::state::{record_bytes, TrainingState};
use crate::training::{plain_step, probabilities, train_step, StepLosses, StepResult};

/// State files kept: the newest and the one before it, in case the newest is damaged.
const STATES_KEPT: usize = 2;

/// What a finished run reports.
#[derive(Debug, Clone, Serialize)]
pub struct FitSummary {
    /// Clean test accuracy at the end.
    pub test_accuracy: f64,
    /// Training labels the noise flipped.
    pub flipped: usize,
    /// Per-epoch metrics (including epochs done before a resume).
    pub epochs: Vec<EpochMetrics>,
}

/// Trains and writes every file of [`RunDir`] but eval's. With `resume`, continues from the
/// newest state in `run` that verifies (the caller passes the run's saved config, see
/// [`RunDir::read_config`]).
///
/// # Errors
/// An invalid config (before anything is written), I/O failures and bad data naming the file, a
/// state that does not fit, or a non-finite loss (the run stops; the previous epoch's files
/// stay).
pub fn fit(
    config: &TrainingConfig,
    run: &RunDir,
    device: &Device,
    resume: bool,
) -> anyhow::Result<FitSummary> {
    config.validate()?;
    let RunFaces {
        train,
        labels: noisy,
        val,
        val_labels,
        test,
    } = run_faces(config)?;
    anyhow::ensure!(
        train.classes == config.model.classes,
        "the data has {} classes and model.classes is {}: set --classes {}",
        train.classes,
        config.model.classes,
        train.classes
    );
    run.create()?;
    if !resume {
        run.write_config(config)?;
    }
    let labels = noisy.labels.clone();
    let classes = train.classes;
    if !resume {
        run.write_noise(&noise_record(config, &noisy))?;
    }
    // A resumed run's weights come from its state: its starting point is not read again (and
    // may be gone).
    let mut start = config.clone();
    if resume {
        (start.init, start.init_from) = (None, None);
    }
    let mut state = TrainingState::fresh(&start, &labels, classes, device)?;
    let mut epochs: Vec<EpochMetrics> = Vec::new();
    if resume {
        let (epoch, sections) = run.newest_good_state()?;
        // The state carries the metrics of the epochs it covers; any later lines in
        // metrics.jsonl belong to the lost part of the run.
        (state, epochs) = state
            .restore(&sections, classes)
            .with_context(|| run.state(epoch).display().to_string())?;
        eprintln!(
            "train: resuming {} after epoch {} of {}",
            run.path().display(),
            state.epoch,
            config.epochs
        );
    }
    run.write_metrics(&epochs)?;

    let steps_per_epoch = labels.len().div_ceil(config.batch);
    let total_steps = (steps_per_epoch * config.epochs).max(1);
    let bar = indicatif::ProgressBar::new(total_steps as u64);
    bar.set_position(state.step as u64);
    let data = Faces {
        train: &train,
        noisy: &noisy.labels,
        val: val.as_ref().map(|v| (v, val_labels.as_slice())),
        test: &test,
        device,
    };
    for epoch_index in state.epoch..config.epochs {
        let metrics;
        (state, metrics) = epoch(config, state, &data, epoch_index, total_steps, run, &bar)?;
        tracing::info!(
            epoch = metrics.epoch,
            loss = metrics.loss,
            test_accuracy = metrics.test_accuracy,
            relabelled = metrics.relabelled,
            relabelled_right = metrics.relabelled_right,
            wrong_labels = metrics.wrong_labels,
            "epoch done"
        );
        epochs.push(metrics);
        // Checkpoint and state first, metrics last: a metrics line always has its state, and
        // the state holds the metrics.
        run.write_checkpoint(state.epoch, &record_bytes(&state.model.net, "checkpoint")?)?;
        run.write_state(state.epoch, &state.save(&epochs)?, STATES_KEPT)?;
        run.write_metrics(&epochs)?;
        // A picture to watch a long run by; failing to draw it must not stop the training.
        if let Err(e) = learning_curve_png(&epochs, &run.learning_curve_png()) {
            tracing::warn!("{e:#}");
            eprintln!("train: {e:#}");
        }
    }
    bar.finish_and_clear();
    Ok(FitSummary {
        test_accuracy: epochs.last().map_or(0.0, |m| m.test_accuracy),
        flipped: noisy.flip_count(),
        epochs,
    })
}

/// The training, validation (with its noisy labels) and clean test faces, and the device their
/// batches go to.
struct Faces<'a> {
    train: &'a FaceSet,
    /// The training labels as the noise left them (before any relabelling).
    noisy: &'a [usize],
    val: Option<(&'a FaceSet, &'a [usize])>,
    test: &'a FaceSet,
    device: &'a Device,
}

/// The run's record of what the noise did: every training sample whose label is not its clean
/// one (injected noise, or an annotator's draw on a blend), from and to.
fn noise_record(config: &TrainingConfig, noisy: &TrainLabels) -> serde_json::Value {
    let name = |l: usize| class_name(config, l);
    let flips: Vec<serde_json::Value> = (0..noisy.labels.len())
        .filter(|&i| noisy.flipped(i))
        .map(|i| {
            serde_json::json!({
                "index": i,
                "original": name(noisy.clean[i]),
                "noisy": name(noisy.labels[i]),
            })
        })
        .collect();
    serde_json::json!({
        "noise": config.data.noise.as_ref().map(|n| (n.kind, n.rate)),
        "blends": config.data.blends,
        "training_samples": noisy.labels.len(),
        "flipped": flips,
    })
}

/// Neighbour pairs of an epoch that share the anchor's clean label, and all pairs, per space.
#[derive(Debug, Clone, Copy, Default)]
struct PurityCounts {
    same: [usize; 2],
    all: [usize; 2],
}

impl PurityCounts {
    /// Adds a batch's neighbours (batch rows) per space, with its rows' clean labels.
    fn add(&mut self, neighbours: &[Vec<Vec<usize>>], clean: &[usize]) {
        for (space, lists) in neighbours.iter().enumerate().take(2) {
            let (same, all) = neighbour_counts(lists, clean);
            self.same[space] += same;
            self.all[space] += all;
        }
    }

    fn share(&self, space: usize) -> Option<f64> {
        (self.all[space] > 0).then(|| self.same[space] as f64 / self.all[space] as f64)
    }
}

/// How the history bank's argmax stands against the clean labels: flipped labels it has put
/// right, and clean ones it has moved away from.
fn bank_recovery(bank: &[f32], classes: usize, given: &[usize], clean: &[usize]) -> (usize, usize) {
    bank.chunks(classes).zip(given.iter().zip(clean)).fold(
        (0, 0),
        |(recovered, lost), (row, (&g, &c))| {
            let best = argmax(row);
            if g != c {
                (recovered + usize::from(best == c), lost)
            } else {
                (recovered, lost + usize::from(best != c))
            }
        },
    )
}

/// One epoch (`index` from 0): its steps, then UERM's relabelling and the clean test accuracy.
///
/// # Errors
/// A crop that cannot be read, or a loss that is not finite (naming the last good state).
fn epoch(
    config: &TrainingConfig,
    mut state: TrainingState,
    data: &Faces,
    index: usize,
    total_steps: usize,
    run: &RunDir,
    bar: &indicatif::ProgressBar,
) -> anyhow::Result<(TrainingState, EpochMetrics)> {
    let device = data.device;
    let classes = data.train.classes;
    let size = config.model.input_size;
    // Linear decay from the initial rate to 0 over the whole run.
    let lr_at = |step: usize| config.lr * (1.0 - step as f64 / total_steps as f64);
    let order = epoch_indices(&state.labels, classes, index, config.epochs, config.seed);
    let mut rng = SplitMix64::new(
        config.seed ^ 0xA6_6E17 ^ (index as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15),
    );
    let epoch_lr = lr_at(state.step);
    let mut sums = StepLosses::default();
    let mut batches = 0;
    let (mut trained, mut right) = (0usize, 0usize);
    let mut purity = PurityCounts::default();
    for rows in order.chunks(config.batch) {
        if rows.len() < 2 {
            continue; // BatchNorm and the neighbour search need two samples
        }
        let lr = lr_at(state.step);
        let plans: Vec<Plan> = rows
            .iter()
            .map(|_| Plan::draw(&config.augment, size, &mut rng))
            .collect();
        let batch = keep_landmarks(
            batch_of(data.train, rows, &state.labels, &plans, device)?,
            config.model.landmarks.as_deref(),
        );
        let model = state.model;
        let StepResult {
            model: next,
            losses,
            logits,
            neighbours,
        } = match config.method {
            Method::Ce => plain_step(model, &mut state.optim, &batch, config, lr),
            Method::Lanet => train_step(
                model,
                &mut state.optim,
                &mut state.bank,
                state.contrast.as_mut(),
                &batch,
                config,
                lr,
            ),
        };
        state.model = next;
        let clean: Vec<usize> = batch
            .indices
            .iter()
            .map(|&i| data.train.labels[i])
            .collect();
        purity.add(&neighbours, &clean);
        trained += batch.labels.len();
        right += host_values(&logits)
            .chunks(classes)
            .zip(&batch.labels)
            .filter(|(row, &label)| argmax(row) == label)
            .count();
        if let Some(p) = state.predictions.as_mut() {
            p.record(&batch.indices, &probabilities(logits));
        }
        if !losses.total.is_finite() {
            let kept = run
                .states()
                .first()
                .map_or_else(|| "none yet".to_string(), |(_, p)| p.display().to_string());
            anyhow::bail!(
                "loss became {} at epoch {} step {} ({losses:?}); stopped without saving this epoch. Last good state: {kept}; lower --lr and resume with --resume",
                losses.total,
                index + 1,
                state.step
            );
        }
        sums.total += losses.total;
        sums.ce += losses.ce;
        sums.landmark += losses.landmark;
        sums.kl += losses.kl;
        sums.contrastive += losses.contrastive;
        sums.scl += losses.scl;
        batches += 1;
        state.step += 1;
        bar.inc(1);
    }
    state.epoch = index + 1;
    let (mut relabelled, mut relabelled_right) = (0, 0);
    if let (Some(p), Some(uerm)) = (state.predictions.as_mut(), config.uerm.as_ref()) {
        p.end_epoch();
        if index + 1 >= uerm.from {
            let averaged = p.averaged();
            let views: Vec<Option<&[f32]>> = averaged.iter().map(|a| a.as_deref()).collect();
            let changes = relabel(&views, &mut state.labels, uerm.rule());
            relabelled = changes.len();
            relabelled_right = changes
                .iter()
                .filter(|c| c.to == data.train.labels[c.index])
                .count();
        }
    }
    let wrong_labels = state
        .labels
        .iter()
        .zip(&data.train.labels)
        .filter(|(a, b)| a != b)
        .count();
    let n = batches.max(1) as f32;
    let net = state.model.net.valid();
    let test_accuracy = accuracy(&net, data.test, config.batch, device)?;
    let val_accuracy = match data.val {
        Some((set, labels)) => Some(accuracy_against(&net, set, labels, config.batch, device)?),
        None => None,
    };
    let (bank_recovered, bank_lost) = if config.method == Method::Lanet {
        let (r, l) = bank_recovery(state.bank.rows(), classes, data.noisy, &data.train.labels);
        (Some(r), Some(l))
    } else {
        (None, None)
    };
    let metrics = EpochMetrics {
        epoch: index + 1,
        loss: sums.total / n,
        ce: sums.ce / n,
        landmark: sums.landmark / n,
        kl: sums.kl / n,
        contrastive: sums.contrastive / n,
        scl: sums.scl / n,
        relabelled,
        relabelled_right,
        wrong_labels,
        train_accuracy: right as f64 / trained.max(1) as f64,
        test_accuracy,
        val_accuracy,
        purity_expression: purity.share(0),
        purity_landmark: purity.share(1),
        bank_recovered,
        bank_lost,
        lr: epoch_lr,
    };
    Ok((state, metrics))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bank_recovery_by_hand() {
        // Three faces of 3 classes. Face 0: label 1, clean 0, bank argmax 0 (recovered). Face 1:
        // label = clean = 2, argmax 1 (lost). Face 2: label = clean = 1, argmax 1 (kept).
        let bank = [0.6, 0.4, 0.0, 0.1, 0.5, 0.4, 0.0, 0.9, 0.1];
        assert_eq!(bank_recovery(&bank, 3, &[1, 2, 1], &[0, 2, 1]), (1, 1));
    }

    #[test]
    fn purity_pools_pairs_over_batches_per_space() {
        let mut p = PurityCounts::default();
        // Batch 1: expression space 1 of 2 pairs share the label, landmark space 2 of 2.
        p.add(
            &[vec![vec![1], vec![2]], vec![vec![1], vec![0]]],
            &[0, 0, 1],
        );
        // Batch 2 (expression space only, as CE gives): 1 of 1.
        p.add(&[vec![vec![1], vec![]]], &[3, 3]);
        assert_eq!(p.share(0), Some(2.0 / 3.0));
        assert_eq!(p.share(1), Some(1.0));
        assert_eq!(PurityCounts::default().share(0), None);
    }
}
