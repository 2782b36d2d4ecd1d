//! The training loop on synthetic data: prepare once, then epochs of balanced batches with a
//! linearly decaying learning rate, a metrics line and a checkpoint per epoch, and clean-test
//! accuracy.
//!
//! Faces are aligned and normalised once up front (the in-memory equivalent of `train prepare`);
//! batches gather rows of the prepared tensors. Label noise, if any, is applied to the training
//! labels only, and the run records which labels it flipped.

use std::io::Write;
use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::prelude::*;
use burn::tensor::TensorData;
use serde::{Deserialize, Serialize};

use crate::data::noise::{inject, Noise, NoiseKind};
use crate::data::sampler::epoch_indices;
use crate::data::synthetic::stream;
use crate::data::Expression;
use crate::loss::AdaptiveWing;
use crate::model::lanet::{LaNet, LaNetConfig};
use crate::model::lde::{HistoryBank, LdeConfig};
use crate::training::{
    cross_entropy, make_batch, synthetic_items, train_step, Batch, StepConfig, TrainModel,
};

/// Which method trains the backbone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// Plain cross-entropy (the baseline).
    Ce,
    /// LA-Net: CE + landmark heatmaps + KL to the label-distribution targets.
    Lanet,
}

/// Everything a run depends on; saved as `config.json` in the output folder.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FitConfig {
    /// Training method.
    pub method: Method,
    /// Synthetic training faces.
    pub train_faces: u64,
    /// Synthetic clean test faces.
    pub test_faces: u64,
    /// Side of the aligned input crops (a multiple of 32).
    pub input_size: u32,
    /// Backbone width (64 = ResNet-18).
    pub width: usize,
    /// Basic blocks per stage.
    pub blocks: usize,
    /// Epochs.
    pub epochs: usize,
    /// Batch size.
    pub batch: usize,
    /// Initial learning rate (Adam), decayed linearly to 0.
    pub lr: f64,
    /// Seed of data, noise and sampling.
    pub seed: u64,
    /// Label noise on the training labels: its kind and rate.
    pub noise: Option<(NoiseKind, f64)>,
    /// LDE neighbours.
    pub k: usize,
    /// LDE history weight.
    pub momentum: f64,
    /// Landmark loss weight.
    pub landmark_weight: f64,
    /// KL loss weight.
    pub kl_weight: f64,
}

impl Default for FitConfig {
    fn default() -> Self {
        FitConfig {
            method: Method::Lanet,
            train_faces: 1400,
            test_faces: 700,
            input_size: 64,
            width: 8,
            blocks: 1,
            epochs: 10,
            batch: 64,
            lr: 1e-3,
            seed: 0,
            noise: None,
            k: 8,
            momentum: 0.9,
            landmark_weight: 1.0,
            kl_weight: 1.0,
        }
    }
}

/// One epoch's metrics (a line of `metrics.jsonl`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EpochMetrics {
    /// Epoch, from 1.
    pub epoch: usize,
    /// Mean total loss.
    pub loss: f32,
    /// Mean cross-entropy.
    pub ce: f32,
    /// Mean landmark loss (LA-Net).
    pub landmark: f32,
    /// Mean KL (LA-Net).
    pub kl: f32,
    /// Clean test accuracy after the epoch.
    pub test_accuracy: f64,
    /// Learning rate at the epoch's start.
    pub lr: f64,
}

/// What a finished run reports.
#[derive(Debug, Clone, Serialize)]
pub struct FitSummary {
    /// Clean test accuracy at the end.
    pub test_accuracy: f64,
    /// Training labels the noise flipped.
    pub flipped: usize,
    /// Per-epoch metrics.
    pub epochs: Vec<EpochMetrics>,
}

/// Prepared (aligned, normalised) faces with their targets, all in memory.
pub(crate) struct Prepared {
    batch: Batch,
    pub(crate) labels: Vec<usize>,
}

pub(crate) fn prepare(
    count: u64,
    seed: u64,
    size: u32,
    device: &Device,
) -> Result<Prepared, String> {
    let card =
        edge_fer::ModelCard::from_json(edge_fer::classify::BUILTIN_CARD, Path::new("builtin"))
            .map_err(|e| e.to_string())?;
    let faces: Vec<_> = stream(seed, (size * 3 / 2).max(64), 7)
        .take(count as usize)
        .collect();
    let items = synthetic_items(&faces);
    let batch = make_batch(&items, &card.alignment, size, device)?;
    Ok(Prepared {
        labels: batch.labels.clone(),
        batch,
    })
}

fn select(p: &Prepared, rows: &[usize], labels: &[usize], device: &Device) -> Batch {
    let idx: Tensor<1, Int> = Tensor::from_data(
        TensorData::new(
            rows.iter().map(|&r| r as i64).collect::<Vec<_>>(),
            [rows.len()],
        ),
        device,
    );
    Batch {
        images: p.batch.images.clone().select(0, idx.clone()),
        labels: rows.iter().map(|&r| labels[r]).collect(),
        indices: rows.to_vec(),
        heatmaps: p.batch.heatmaps.clone().select(0, idx.clone()),
        heat_weights: p.batch.heat_weights.clone().select(0, idx),
    }
}

/// The clean test set of a run: a different stream of faces than training.
pub(crate) fn test_set(config: &FitConfig, device: &Device) -> Result<Prepared, String> {
    prepare(
        config.test_faces,
        config.seed ^ 0x7E57,
        config.input_size,
        device,
    )
}

/// Predicted classes of `net` on the prepared faces, batched (pass a `valid()` module so
/// BatchNorm uses its running statistics).
pub(crate) fn predict(net: &LaNet, p: &Prepared, batch: usize, device: &Device) -> Vec<usize> {
    let n = p.labels.len();
    let mut out = Vec::with_capacity(n);
    for start in (0..n).step_by(batch.max(1)) {
        let rows: Vec<usize> = (start..(start + batch).min(n)).collect();
        let b = select(p, &rows, &p.labels, device);
        let pred = net
            .forward_expression(b.images)
            .argmax(1)
            .into_data()
            .convert::<i64>();
        let pred: Vec<i64> = pred.try_to_vec::<i64>().expect("argmax gives integers");
        out.extend(pred.into_iter().map(|v| v as usize));
    }
    out
}

/// Accuracy of `net` on the prepared faces.
fn accuracy(net: &LaNet, p: &Prepared, batch: usize, device: &Device) -> f64 {
    let pred = predict(net, p, batch, device);
    let correct = pred.iter().zip(&p.labels).filter(|(a, b)| a == b).count();
    correct as f64 / p.labels.len().max(1) as f64
}

/// Writes `bytes` to `path` atomically: a temporary file beside it, fsync, rename.
fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Trains on synthetic faces and writes `config.json`, `metrics.jsonl` and
/// `checkpoint-NNN.bpk` (the backbone's weights, burnpack) into `out`.
///
/// # Errors
/// A message naming the file for I/O failures, an invalid noise setting, or a non-finite loss
/// (the run stops; the previous epoch's checkpoint stays).
pub fn fit(config: &FitConfig, out: &Path, device: &Device) -> Result<FitSummary, String> {
    let io = |p: &Path, e: std::io::Error| format!("{}: {e}", p.display());
    if !config.input_size.is_multiple_of(32) || config.input_size == 0 {
        return Err(format!(
            "input size {} is not a positive multiple of 32",
            config.input_size
        ));
    }
    std::fs::create_dir_all(out).map_err(|e| io(out, e))?;
    let config_path = out.join("config.json");
    write_atomic(
        &config_path,
        &serde_json::to_vec_pretty(config).map_err(|e| e.to_string())?,
    )
    .map_err(|e| io(&config_path, e))?;

    let train = prepare(config.train_faces, config.seed, config.input_size, device)?;
    let test = test_set(config, device)?;
    let clean: Vec<Expression> = train.labels.iter().map(|&l| Expression::ALL[l]).collect();
    // No noise is noise at rate 0: every run records its (possibly empty) flips the same way.
    let (kind, rate) = config.noise.unwrap_or((NoiseKind::Symmetric, 0.0));
    let noisy = inject(
        &clean,
        7,
        &Noise {
            kind,
            rate,
            seed: config.seed,
        },
    )?;
    let labels: Vec<usize> = noisy.labels.iter().map(|e| e.index()).collect();

    // Initial weights come from the device's generator: seed it so a run is reproducible.

    device.seed(config.seed);

    let net = LaNetConfig::new()
        .with_width(config.width)
        .with_blocks(config.blocks)
        .init(device);
    let lde = LdeConfig::new(8 * config.width, 64)
        .with_k(config.k)
        .with_momentum(config.momentum);
    let mut model = TrainModel {
        net,
        lde: lde.init(device),
    };
    let mut optim = burn::optim::AdamConfig::new().init();
    let mut bank = HistoryBank::from_labels(&labels, 7);
    let (landmark_weight, kl_weight) = match config.method {
        Method::Lanet => (config.landmark_weight, config.kl_weight),
        Method::Ce => (0.0, 0.0),
    };
    let steps_per_epoch = (labels.len() as f64 / config.batch as f64).ceil() as usize;
    let total_steps = (steps_per_epoch * config.epochs).max(1);
    let metrics_path = out.join("metrics.jsonl");
    let mut metrics_file =
        std::fs::File::create(&metrics_path).map_err(|e| io(&metrics_path, e))?;
    let bar = indicatif::ProgressBar::new(total_steps as u64);
    let mut epochs = Vec::new();
    let mut step = 0usize;
    // Linear decay from the initial rate to 0 over the whole run.
    let lr_at = |step: usize| config.lr * (1.0 - step as f64 / total_steps as f64);
    for epoch in 0..config.epochs {
        let order = epoch_indices(&labels, 7, epoch, config.epochs, config.seed);
        let epoch_lr = lr_at(step);
        let mut sums = [0.0f32; 4];
        let mut batches = 0;
        for rows in order.chunks(config.batch) {
            let lr = lr_at(step);
            let step_config = StepConfig {
                landmark_weight,
                kl_weight,
                lde: lde.clone(),
                adaptive_wing: AdaptiveWing::default(),
                lr,
            };
            let batch = select(&train, rows, &labels, device);
            let (next, losses) = if config.method == Method::Ce {
                ce_step(model, &mut optim, &batch, lr)
            } else {
                train_step(model, &mut optim, &mut bank, &batch, &step_config)
            };
            model = next;
            if !losses.total.is_finite() {
                return Err(format!("loss became {} at epoch {} step {step}; the last good checkpoint is kept in {}", losses.total, epoch + 1, out.display()));
            }
            for (s, v) in sums
                .iter_mut()
                .zip([losses.total, losses.ce, losses.landmark, losses.kl])
            {
                *s += v;
            }
            batches += 1;
            step += 1;
            bar.inc(1);
        }
        let n = batches.max(1) as f32;
        let metrics = EpochMetrics {
            epoch: epoch + 1,
            loss: sums[0] / n,
            ce: sums[1] / n,
            landmark: sums[2] / n,
            kl: sums[3] / n,
            test_accuracy: accuracy(&model.net.valid(), &test, config.batch, device),
            lr: epoch_lr,
        };
        writeln!(
            metrics_file,
            "{}",
            serde_json::to_string(&metrics).map_err(|e| e.to_string())?
        )
        .map_err(|e| io(&metrics_path, e))?;
        let bytes = model
            .net
            .clone()
            .into_record()
            .into_bytes()
            .map_err(|e| format!("serialising the checkpoint: {e}"))?;
        let checkpoint: PathBuf = out.join(format!("checkpoint-{:03}.bpk", epoch + 1));
        write_atomic(&checkpoint, &bytes).map_err(|e| io(&checkpoint, e))?;
        tracing::info!(
            epoch = epoch + 1,
            loss = metrics.loss,
            test_accuracy = metrics.test_accuracy,
            "epoch done"
        );
        epochs.push(metrics);
    }
    bar.finish_and_clear();
    Ok(FitSummary {
        test_accuracy: epochs.last().map_or(0.0, |m| m.test_accuracy),
        flipped: noisy.flip_count(),
        epochs,
    })
}

/// The CE baseline's step: the same backbone, cross-entropy only.
fn ce_step(
    model: TrainModel,
    optim: &mut burn::optim::ModuleOptimizer,
    batch: &Batch,
    lr: f64,
) -> (TrainModel, crate::training::StepLosses) {
    let logits = model.net.forward_expression(batch.images.clone());
    let ce = cross_entropy(logits, &batch.labels);
    let value = ce.clone().into_scalar::<f32>();
    let grads = burn::optim::GradientsParams::from_grads(ce.backward(), &model);
    let losses = crate::training::StepLosses {
        ce: value,
        landmark: 0.0,
        kl: 0.0,
        total: value,
    };
    (optim.step(lr, model, grads), losses)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_run_writes_config_metrics_and_checkpoints_and_learns() {
        let dir = tempfile::tempdir().unwrap();
        let device = Device::flex().autodiff();
        let config = FitConfig {
            train_faces: 210,
            test_faces: 70,
            input_size: 64,
            width: 8,
            epochs: 6,
            batch: 35,
            lr: 3e-3,
            k: 4,
            ..FitConfig::default()
        };
        let summary = fit(&config, dir.path(), &device).unwrap();
        assert_eq!(summary.epochs.len(), 6);
        let lines = std::fs::read_to_string(dir.path().join("metrics.jsonl")).unwrap();
        assert_eq!(lines.lines().count(), 6);
        for e in 1..=6 {
            assert!(dir.path().join(format!("checkpoint-{e:03}.bpk")).is_file());
        }
        let saved: FitConfig =
            serde_json::from_slice(&std::fs::read(dir.path().join("config.json")).unwrap())
                .unwrap();
        assert_eq!(saved.epochs, 6);
        assert!(
            summary.epochs[5].loss < summary.epochs[0].loss,
            "{:?}",
            summary.epochs
        );
        // Well above chance (1/7) after six short epochs on clean synthetic faces.
        assert!(summary.test_accuracy > 0.3, "{:?}", summary.epochs);
        // The last checkpoint loads back into a fresh model and scores exactly as in training.
        let report = crate::eval::evaluate(dir.path(), &Device::flex()).unwrap();
        assert!(report.checkpoint.ends_with("checkpoint-006.bpk"));
        assert!(
            (report.accuracy - summary.test_accuracy).abs() < 1e-9,
            "{} vs {}",
            report.accuracy,
            summary.test_accuracy
        );
        assert_eq!(report.confusion.iter().flatten().sum::<usize>(), 70);
        assert!(dir.path().join("confusion.csv").is_file());
        // Seeded: the same config gives the same run.
        let again = fit(&config, dir.path(), &device).unwrap();
        assert_eq!(again.test_accuracy, summary.test_accuracy);
        assert_eq!(again.epochs[5].loss, summary.epochs[5].loss);
    }
}
