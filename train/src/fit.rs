//! The training loop: epochs of progressively balanced, augmented batches with a linearly
//! decaying learning rate; after each epoch a metrics line, the backbone's checkpoint and the full
//! resumable state; clean-test accuracy throughout.
//!
//! Data are either synthetic faces (aligned in memory with the runtime's alignment, the
//! equivalent of `train prepare`) or a cache written by `train prepare`. Label noise, if any, is
//! applied to the training labels only; `noise.json` records every flipped sample.

use std::borrow::Cow;
use std::io::Write;
use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::prelude::*;
use serde::{Deserialize, Serialize};

use crate::augment::{Augment, Plan};
use crate::data::noise::{inject, Noise, NoiseKind, NoisyLabels};
use crate::data::sampler::epoch_indices;
use crate::data::synthetic::stream;
use crate::data::Expression;
use crate::loss::AdaptiveWing;
use crate::model::lanet::{LaNet, LaNetConfig};
use crate::model::lde::{HistoryBank, LdeConfig};
use crate::model::moco::Projection;
use crate::model::moco::{Heads, MomentumEncoder, Queue};
use crate::prepare::Cache;
use crate::relabel::{relabel, PredictionHistory, RelabelRule};
use crate::rng::SplitMix64;
use crate::state::{f32_bytes, f32_values, newest_good, state_files, state_path, Sections};
use crate::training::{
    align_face, make_batch, plain_step, probabilities, train_step, AlignedFace, Batch, Contrast,
    PlainStepConfig, StepConfig, StepLosses, TrainModel,
};

/// Which method trains the backbone (SCL, UERM and ARM are switches on top of either).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// Plain cross-entropy (the baseline).
    Ce,
    /// LA-Net: CE + landmark heatmaps + KL to the label-distribution targets + the
    /// expression-landmark contrastive loss.
    Lanet,
}

/// Everything a run depends on; saved as `config.json` in the output folder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FitConfig {
    /// Training method.
    pub method: Method,
    /// A cache written by `train prepare`; synthetic faces when absent.
    pub data: Option<PathBuf>,
    /// Where the clean test faces come from: another cache; when absent, the `test` (or else
    /// `val`) split of `data`.
    pub test_data: Option<PathBuf>,
    /// Synthetic training faces.
    pub train_faces: u64,
    /// Synthetic clean test faces.
    pub test_faces: u64,
    /// Side of the aligned input crops (a multiple of 32).
    pub input_size: u32,
    /// Backbone width (64 = ResNet-18).
    pub width: usize,
    /// Basic blocks per stage (2 = ResNet-18).
    pub blocks: usize,
    /// ResNet-50 (bottleneck blocks 3, 4, 6, 3) instead of basic blocks.
    pub resnet50: bool,
    /// A PyTorch ResNet checkpoint (torchvision names) to start the backbone from.
    pub init: Option<PathBuf>,
    /// The dlib landmark indices the landmark branch predicts (all 68 when absent).
    pub landmark_subset: Option<Vec<usize>>,
    /// Epochs.
    pub epochs: usize,
    /// Batch size.
    pub batch: usize,
    /// Initial learning rate (Adam), decayed linearly to 0.
    pub lr: f64,
    /// Seed of initial weights, data, noise, sampling and augmentation.
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
    /// Contrastive loss weight (0 leaves out the momentum encoder and queues).
    pub contrastive_weight: f64,
    /// Contrastive temperature.
    pub temperature: f64,
    /// LDE-target confidence for a contrastive pseudo-label.
    pub confidence: f32,
    /// Key-encoder momentum.
    pub key_momentum: f64,
    /// Queue length per modality.
    pub queue: usize,
    /// Width of the contrastive embeddings.
    pub embed_dim: usize,
    /// Training augmentation.
    pub augment: Augment,
    /// Weight of the supervised contrastive loss (0 = off).
    pub scl_weight: f64,
    /// Its temperature.
    pub scl_temperature: f64,
    /// UERM: the fraction of the most uncertain training samples that may be relabelled after
    /// each epoch (0 = off).
    pub relabel_fraction: f64,
    /// UERM: how much the top class must beat the current label's probability.
    pub relabel_margin: f32,
    /// UERM: the first epoch (from 1) after which labels may change.
    pub relabel_from: usize,
    /// UERM: epochs of predictions the uncertainty averages.
    pub uncertainty_window: usize,
    /// ARM: de-albino pooling and minibatch affinity sharing.
    pub arm: bool,
    /// ARM's kernel side (0: half the last map's side, rounded up).
    pub arm_kernel: usize,
    /// ARM's kernel stride.
    pub arm_stride: usize,
}

impl Default for FitConfig {
    fn default() -> Self {
        FitConfig {
            method: Method::Lanet,
            data: None,
            test_data: None,
            train_faces: 1400,
            test_faces: 700,
            input_size: 64,
            width: 8,
            blocks: 1,
            resnet50: false,
            init: None,
            landmark_subset: None,
            epochs: 10,
            batch: 64,
            lr: 1e-3,
            seed: 0,
            noise: None,
            k: 8,
            momentum: 0.9,
            landmark_weight: 1.0,
            kl_weight: 1.0,
            contrastive_weight: 0.1,
            temperature: 0.1,
            confidence: 0.7,
            key_momentum: 0.999,
            queue: 8192,
            embed_dim: 64,
            augment: Augment::default(),
            scl_weight: 0.0,
            scl_temperature: 0.1,
            relabel_fraction: 0.0,
            relabel_margin: 0.2,
            relabel_from: 5,
            uncertainty_window: 3,
            arm: false,
            arm_kernel: 0,
            arm_stride: 1,
        }
    }
}

impl FitConfig {
    /// The backbone this config trains.
    pub fn lanet(&self, classes: usize) -> LaNetConfig {
        LaNetConfig::new()
            .with_classes(classes)
            .with_width(self.width)
            .with_blocks(self.blocks)
            .with_resnet50(self.resnet50)
            .with_landmarks(self.landmark_subset.as_ref().map_or(68, Vec::len))
            .with_arm_map(if self.arm {
                self.input_size as usize / 32
            } else {
                0
            })
            .with_arm_kernel(self.arm_kernel)
            .with_arm_stride(self.arm_stride)
    }

    /// UERM's rule, when it is on.
    pub fn relabel_rule(&self) -> Option<RelabelRule> {
        (self.relabel_fraction > 0.0).then_some(RelabelRule {
            fraction: self.relabel_fraction,
            margin: self.relabel_margin,
        })
    }

    /// A one-line name of what trains: the method and the switches that are on.
    pub fn describe(&self) -> String {
        let mut parts = vec![match self.method {
            Method::Ce => "cross-entropy",
            Method::Lanet => "LA-Net (Wu & Cui, ICCV 2023)",
        }
        .to_string()];
        if self.scl_weight > 0.0 {
            parts.push(format!(
                "SCL (weight {}, tau {})",
                self.scl_weight, self.scl_temperature
            ));
        }
        if let Some(rule) = self.relabel_rule() {
            parts.push(format!(
                "UERM (fraction {}, margin {}, from epoch {}, window {})",
                rule.fraction, rule.margin, self.relabel_from, self.uncertainty_window
            ));
        }
        if self.arm {
            let arm = self.lanet(7).arm().expect("ARM is on");
            parts.push(format!(
                "ARM (de-albino kernel {k}x{k} stride {}, affinity sharing)",
                arm.stride,
                k = arm.kernel_side()
            ));
        }
        parts.join(" + ")
    }

    /// Reads a run's `config.json`.
    ///
    /// # Errors
    /// A message naming the file if it is missing or does not parse.
    pub fn load(dir: &Path) -> Result<FitConfig, String> {
        let path = dir.join("config.json");
        let text = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        serde_json::from_slice(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    fn contrastive(&self) -> bool {
        self.method == Method::Lanet && self.contrastive_weight > 0.0
    }
}

/// One epoch's metrics (a line of `metrics.jsonl`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    /// Mean contrastive loss (LA-Net).
    #[serde(default)]
    pub contrastive: f32,
    /// Mean supervised contrastive loss.
    #[serde(default)]
    pub scl: f32,
    /// Labels UERM changed after the epoch.
    #[serde(default)]
    pub relabelled: usize,
    /// Of those, how many now equal the clean label (known for synthetic noise).
    #[serde(default)]
    pub relabelled_right: usize,
    /// Training labels that differ from the clean ones after the epoch (noise not yet undone,
    /// or a wrong relabel).
    #[serde(default)]
    pub wrong_labels: usize,
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
    /// Per-epoch metrics (including epochs done before a resume).
    pub epochs: Vec<EpochMetrics>,
}

enum Store {
    Memory(Vec<AlignedFace>),
    Cache(Box<Cache>, Vec<usize>),
}

/// Aligned faces with their clean labels, in memory or read from a cache when used.
pub struct FaceSet {
    store: Store,
    /// Clean labels, canonical indices.
    pub labels: Vec<usize>,
    /// Annotators' vote distributions, when the dataset has them.
    pub votes: Option<Vec<Vec<f32>>>,
    /// Class count.
    pub classes: usize,
}

impl FaceSet {
    /// Faces held.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Face `i`.
    ///
    /// # Errors
    /// A message naming the crop file if a cached crop cannot be read.
    pub fn face(&self, i: usize) -> Result<Cow<'_, AlignedFace>, String> {
        match &self.store {
            Store::Memory(faces) => Ok(Cow::Borrowed(&faces[i])),
            Store::Cache(cache, rows) => cache.load(rows[i]).map(Cow::Owned),
        }
    }

    /// `count` synthetic faces from `seed`, aligned like the runtime aligns.
    ///
    /// # Errors
    /// A message if a face cannot be aligned.
    pub fn synthetic(count: u64, seed: u64, size: u32) -> Result<FaceSet, String> {
        let alignment = default_alignment()?;
        let mut faces = Vec::with_capacity(count as usize);
        let mut labels = Vec::with_capacity(count as usize);
        for f in stream(seed, (size * 3 / 2).max(64), 7).take(count as usize) {
            faces.push(align_face(&f.image, &f.landmarks, &alignment, size)?);
            labels.push(f.label.index());
        }
        Ok(FaceSet {
            store: Store::Memory(faces),
            labels,
            votes: None,
            classes: 7,
        })
    }

    /// The faces of `cache` in the given splits (all splits when `splits` is empty).
    pub fn from_cache(cache: &Cache, splits: &[&str]) -> FaceSet {
        let rows: Vec<usize> = (0..cache.faces.len())
            .filter(|&i| splits.is_empty() || splits.contains(&cache.faces[i].split.as_str()))
            .collect();
        let labels = rows
            .iter()
            .map(|&i| {
                Expression::from_name(&cache.faces[i].label)
                    .expect("Cache::open checked the names")
                    .index()
            })
            .collect();
        let votes = rows
            .iter()
            .map(|&i| cache.faces[i].votes.clone())
            .collect::<Option<Vec<_>>>()
            .filter(|v| !v.is_empty());
        FaceSet {
            store: Store::Cache(Box::new(cache.clone()), rows),
            labels,
            votes,
            classes: cache.summary.classes,
        }
    }
}

/// The alignment template training uses: the runtime's default (the built-in model card's).
///
/// # Errors
/// Only if the built-in card were broken.
pub fn default_alignment() -> Result<edge_fer::model_card::Alignment, String> {
    let card =
        edge_fer::ModelCard::from_json(edge_fer::classify::BUILTIN_CARD, Path::new("builtin"))
            .map_err(|e| e.to_string())?;
    Ok(card.alignment)
}

/// The training and clean test faces of a run.
///
/// # Errors
/// A message naming the cache if it cannot be read, is of another crop size, or has no
/// training or test faces.
pub fn datasets(config: &FitConfig) -> Result<(FaceSet, FaceSet), String> {
    let Some(dir) = &config.data else {
        return Ok((
            FaceSet::synthetic(config.train_faces, config.seed, config.input_size)?,
            FaceSet::synthetic(config.test_faces, config.seed ^ 0x7E57, config.input_size)?,
        ));
    };
    let cache = Cache::open(dir)?;
    let size_ok = |c: &Cache| {
        if c.summary.input_size == config.input_size {
            Ok(())
        } else {
            Err(format!(
                "{} holds {s}x{s} crops; the run's input size is {}",
                c.dir.display(),
                config.input_size,
                s = c.summary.input_size
            ))
        }
    };
    size_ok(&cache)?;
    let train = FaceSet::from_cache(&cache, &["train"]);
    let test = match &config.test_data {
        Some(t) => {
            let c = Cache::open(t)?;
            size_ok(&c)?;
            FaceSet::from_cache(&c, &[])
        }
        None => {
            let test = FaceSet::from_cache(&cache, &["test"]);
            if test.is_empty() {
                FaceSet::from_cache(&cache, &["val"])
            } else {
                test
            }
        }
    };
    if train.is_empty() {
        return Err(format!("{} has no training faces", dir.display()));
    }
    if test.is_empty() {
        return Err(format!(
            "{} has no test or val faces; pass --test-data with another prepared cache",
            dir.display()
        ));
    }
    Ok((train, test))
}

/// The training labels after the run's noise (and which were flipped).
///
/// # Errors
/// A message for an invalid noise rate.
pub fn noisy_labels(config: &FitConfig, train: &FaceSet) -> Result<NoisyLabels, String> {
    let clean: Vec<Expression> = train.labels.iter().map(|&l| Expression::ALL[l]).collect();
    // No noise is noise at rate 0: every run records its (possibly empty) flips the same way.
    let (kind, rate) = config.noise.unwrap_or((NoiseKind::Symmetric, 0.0));
    inject(
        &clean,
        train.classes,
        &Noise {
            kind,
            rate,
            seed: config.seed,
        },
    )
}

/// A batch of rows of `set` with the given labels, each augmented by its plan.
fn batch_of(
    set: &FaceSet,
    rows: &[usize],
    labels: &[usize],
    plans: &[Plan],
    device: &Device,
) -> Result<Batch, String> {
    let faces: Vec<Cow<'_, AlignedFace>> = rows
        .iter()
        .map(|&r| set.face(r))
        .collect::<Result<_, _>>()?;
    let refs: Vec<&AlignedFace> = faces.iter().map(|f| f.as_ref()).collect();
    Ok(make_batch(
        &refs,
        rows.iter().map(|&r| labels[r]).collect(),
        rows.to_vec(),
        plans,
        device,
    ))
}

/// Keeps only the heatmap channels of `subset` (dlib indices).
fn keep_landmarks(mut batch: Batch, subset: Option<&[usize]>) -> Batch {
    if let Some(subset) = subset {
        let device = batch.heatmaps.device();
        let idx: Tensor<1, Int> = Tensor::from_data(
            burn::tensor::TensorData::new(
                subset.iter().map(|&i| i as i64).collect::<Vec<_>>(),
                [subset.len()],
            ),
            &device,
        );
        batch.heatmaps = batch.heatmaps.select(1, idx.clone());
        batch.heat_weights = batch.heat_weights.select(1, idx);
    }
    batch
}

/// Predicted classes of `net` on `set`, batched (pass a `valid()` module so BatchNorm uses its
/// running statistics).
///
/// # Errors
/// A message naming a crop that cannot be read.
pub fn predict(
    net: &LaNet,
    set: &FaceSet,
    batch: usize,
    device: &Device,
) -> Result<Vec<usize>, String> {
    let n = set.len();
    let mut out = Vec::with_capacity(n);
    for start in (0..n).step_by(batch.max(1)) {
        let rows: Vec<usize> = (start..(start + batch).min(n)).collect();
        let size = set.face(rows[0])?.crop.width();
        let plans = vec![Plan::identity(size); rows.len()];
        let b = batch_of(set, &rows, &set.labels, &plans, device)?;
        let pred = net
            .forward_expression(b.images)
            .argmax(1)
            .into_data()
            .convert::<i64>();
        let pred: Vec<i64> = pred.try_to_vec::<i64>().expect("argmax gives integers");
        out.extend(pred.into_iter().map(|v| v as usize));
    }
    Ok(out)
}

fn accuracy(net: &LaNet, set: &FaceSet, batch: usize, device: &Device) -> Result<f64, String> {
    let pred = predict(net, set, batch, device)?;
    let correct = pred.iter().zip(&set.labels).filter(|(a, b)| a == b).count();
    Ok(correct as f64 / set.len().max(1) as f64)
}

/// Writes `bytes` to `path` atomically: a temporary file beside it, fsync, rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    // The rename itself is only durable once the folder is synced; without it a power cut can
    // bring back the old file (or none) even though the new one was complete.
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// The checksum file beside a checkpoint (`checkpoint-003.bpk.sha256`, `sha256sum -c` format).
pub fn checksum_path(checkpoint: &Path) -> PathBuf {
    let mut name = checkpoint.as_os_str().to_owned();
    name.push(".sha256");
    PathBuf::from(name)
}

/// Writes `bytes` to `path` and its sha256 beside it, both atomically, checksum last.
fn write_checksummed(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_atomic(path, bytes)?;
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let line = format!("{}  {name}\n", edge_fer::checksum::sha256_hex(bytes));
    write_atomic(&checksum_path(path), line.as_bytes())
}

/// Checks `bytes`, read from `path`, against the checksum file beside it, when there is one.
///
/// # Errors
/// A message naming the file if the checksum does not match (a truncated or corrupted file) or
/// the checksum file cannot be read.
pub fn verify_checksum(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let sums = checksum_path(path);
    let text = match std::fs::read_to_string(&sums) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(format!("{}: {e}", sums.display())),
    };
    let want = text.split_whitespace().next().unwrap_or_default();
    if want == edge_fer::checksum::sha256_hex(bytes) {
        Ok(())
    } else {
        Err(format!(
            "{}: checksum mismatch with {}: the file is truncated or corrupted",
            path.display(),
            sums.display()
        ))
    }
}

/// Writes `metrics.jsonl` (atomically): one line per epoch.
fn write_metrics(path: &Path, epochs: &[EpochMetrics]) -> Result<(), String> {
    let mut text = String::new();
    for m in epochs {
        text.push_str(&serde_json::to_string(m).map_err(|e| e.to_string())?);
        text.push('\n');
    }
    write_atomic(path, text.as_bytes()).map_err(|e| format!("{}: {e}", path.display()))
}

/// Everything that changes during training.
struct Run {
    model: TrainModel,
    contrast: Option<Contrast>,
    optim: burn::optim::ModuleOptimizer,
    bank: HistoryBank,
    /// The training labels as they stand (UERM changes them).
    labels: Vec<usize>,
    /// UERM's record of predictions.
    predictions: Option<PredictionHistory>,
    /// Epochs done.
    epoch: usize,
    /// Optimiser steps done.
    step: usize,
}

#[derive(Serialize, Deserialize)]
struct Meta {
    epoch: usize,
    step: usize,
    /// The metrics of every epoch so far: `metrics.jsonl` is rebuilt from them on resume, so a
    /// kill between writing the state and the metrics line loses nothing.
    #[serde(default)]
    metrics: Vec<EpochMetrics>,
    queue_heads: Option<[usize; 2]>,
    queue_labels: Option<[Vec<i64>; 2]>,
    /// The training labels as they stand.
    #[serde(default)]
    labels: Option<Vec<usize>>,
    /// The prediction history's next slot.
    #[serde(default)]
    predictions_next: Option<usize>,
}

fn record_bytes<M: Module>(m: &M, what: &str) -> Result<Vec<u8>, String> {
    m.clone()
        .into_record()
        .into_bytes()
        .map(|b| b.to_vec())
        .map_err(|e| format!("serialising the {what}: {e}"))
}

fn load_module<M: Module>(m: M, bytes: &[u8], what: &str) -> Result<M, String> {
    let record =
        burn::store::ModuleRecord::from_bytes(burn::tensor::Bytes::from_bytes_vec(bytes.to_vec()))
            .map_err(|e| format!("{what}: {e}"))?;
    m.try_load_record(record)
        .map_err(|e| format!("{what} does not match the run's config: {e}"))
}

impl Run {
    fn fresh(
        config: &FitConfig,
        labels: &[usize],
        classes: usize,
        device: &Device,
    ) -> Result<Self, String> {
        // Initial weights come from the device's generator, which is shared by the whole process:
        // seed it and draw every initial weight under one lock, so that two runs in one process
        // (tests, a notebook-style driver) cannot interleave their draws.
        static INIT: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _guard = INIT.lock().unwrap_or_else(|e| e.into_inner());
        device.seed(config.seed);
        let lanet = config.lanet(classes);
        let mut net = lanet.init(device);
        if let Some(path) = &config.init {
            let (loaded, report) = crate::init::from_pytorch(net, path, config.resnet50)?;
            tracing::info!(
                applied = report.applied,
                unused = report.unused.len(),
                "backbone initialised from {}",
                path.display()
            );
            net = loaded;
        }
        let heads = Heads::for_net(&lanet, config.embed_dim, device);
        let contrast = config.contrastive().then(|| Contrast {
            encoder: MomentumEncoder::new(&net, &heads, &lanet, device),
            expr_queue: Queue::new(config.queue, config.embed_dim, config.seed ^ 0xE1),
            landmark_queue: Queue::new(config.queue, config.embed_dim, config.seed ^ 0x1A),
        });
        let lde = LdeConfig::new(lanet.feature_dim(), lanet.fpn_channels)
            .with_k(config.k)
            .with_momentum(config.momentum);
        let lde = lde.init(device);
        // Drawn last, so that a run with SCL starts every other weight as the run without.
        let scl = (config.scl_weight > 0.0).then(|| {
            let d = lanet.feature_dim();
            Projection::new(d, d, config.embed_dim, device)
        });
        Ok(Run {
            model: TrainModel {
                net,
                lde,
                heads,
                scl,
            },
            contrast,
            optim: burn::optim::AdamConfig::new().init(),
            bank: HistoryBank::from_labels(labels, classes),
            labels: labels.to_vec(),
            predictions: config.relabel_rule().map(|_| {
                PredictionHistory::new(labels.len(), classes, config.uncertainty_window.max(1))
            }),
            epoch: 0,
            step: 0,
        })
    }

    fn save(&self, metrics: &[EpochMetrics]) -> Result<Vec<u8>, String> {
        let mut s = Sections::default();
        let meta = Meta {
            epoch: self.epoch,
            step: self.step,
            metrics: metrics.to_vec(),
            queue_heads: self
                .contrast
                .as_ref()
                .map(|c| [c.expr_queue.head, c.landmark_queue.head]),
            queue_labels: self
                .contrast
                .as_ref()
                .map(|c| [c.expr_queue.labels.clone(), c.landmark_queue.labels.clone()]),
            labels: Some(self.labels.clone()),
            predictions_next: self.predictions.as_ref().map(|p| p.slots().1),
        };
        s.put(
            "meta",
            serde_json::to_vec(&meta).map_err(|e| e.to_string())?,
        );
        s.put("model", record_bytes(&self.model, "model")?);
        s.put(
            "optim",
            self.optim
                .into_bytes()
                .map_err(|e| format!("serialising the optimiser: {e}"))?
                .to_vec(),
        );
        s.put("bank", f32_bytes(self.bank.rows()));
        if let Some(c) = &self.contrast {
            s.put("encoder", record_bytes(&c.encoder, "key encoder")?);
            s.put("expr_queue", f32_bytes(&c.expr_queue.values));
            s.put("landmark_queue", f32_bytes(&c.landmark_queue.values));
        }
        if let Some(p) = &self.predictions {
            s.put("predictions", f32_bytes(p.slots().0));
        }
        Ok(s.to_bytes())
    }

    fn restore(
        mut self,
        s: &Sections,
        classes: usize,
    ) -> Result<(Self, Vec<EpochMetrics>), String> {
        let meta: Meta = serde_json::from_slice(s.get("meta")?).map_err(|e| e.to_string())?;
        self.model = load_module(self.model, s.get("model")?, "model")?;
        self.optim = self
            .optim
            .from_bytes(burn::tensor::Bytes::from_bytes_vec(
                s.get("optim")?.to_vec(),
            ))
            .map_err(|e| format!("optimiser state: {e}"))?;
        let rows = f32_values(s.get("bank")?)?;
        if rows.len() != self.bank.rows().len() {
            return Err(format!(
                "history bank of {} values; this run's data needs {}",
                rows.len(),
                self.bank.rows().len()
            ));
        }
        self.bank = HistoryBank::from_rows(rows, classes);
        if let Some(mut c) = self.contrast.take() {
            let (Some(heads), Some([le, ll])) = (meta.queue_heads, meta.queue_labels) else {
                return Err("the state has no queues but the run uses the contrastive loss".into());
            };
            c.encoder = load_module(c.encoder, s.get("encoder")?, "key encoder")?;
            for (q, name, head, labels) in [
                (&mut c.expr_queue, "expr_queue", heads[0], le),
                (&mut c.landmark_queue, "landmark_queue", heads[1], ll),
            ] {
                let values = f32_values(s.get(name)?)?;
                if values.len() != q.values.len() || labels.len() != q.labels.len() {
                    return Err(format!("{name} has another size than the config's"));
                }
                q.values = values;
                q.labels = labels;
                q.head = head;
            }
            self.contrast = Some(c);
        }
        if let Some(labels) = meta.labels {
            if labels.len() != self.labels.len() || labels.iter().any(|&l| l >= classes) {
                return Err(format!(
                    "{} saved labels; this run's data has {} samples of {classes} classes",
                    labels.len(),
                    self.labels.len()
                ));
            }
            self.labels = labels;
        }
        if let Some(p) = self.predictions.as_mut() {
            let next = meta
                .predictions_next
                .ok_or("the state has no prediction history but the run uses UERM")?;
            p.restore(f32_values(s.get("predictions")?)?, next)?;
        }
        self.epoch = meta.epoch;
        self.step = meta.step;
        if meta.metrics.len() != meta.epoch {
            return Err(format!(
                "{} epochs of metrics for {} epochs done",
                meta.metrics.len(),
                meta.epoch
            ));
        }
        Ok((self, meta.metrics))
    }
}

/// Trains and writes into `out`: `config.json`, `metrics.jsonl`, `checkpoint-NNN.bpk` (with its
/// sha256 in `checkpoint-NNN.bpk.sha256`; the
/// backbone, burnpack) and `state-NNN.bin` (everything needed to resume; the two newest are
/// kept). With `resume`, continues from the newest state in `out` that verifies (the caller
/// passes the run's saved config, see [`FitConfig::load`]).
///
/// # Errors
/// A message naming the file for I/O failures, bad data, an invalid noise setting, a state that
/// does not fit, or a non-finite loss (the run stops; the previous epoch's files stay).
pub fn fit(
    config: &FitConfig,
    out: &Path,
    device: &Device,
    resume: bool,
) -> Result<FitSummary, String> {
    let io = |p: &Path, e: std::io::Error| format!("{}: {e}", p.display());
    if !config.input_size.is_multiple_of(32) || config.input_size == 0 {
        return Err(format!(
            "input size {} is not a positive multiple of 32",
            config.input_size
        ));
    }
    if let Some(subset) = &config.landmark_subset {
        if subset.is_empty() || subset.iter().any(|&i| i >= 68) {
            return Err(format!(
                "landmark subset {subset:?}: give dlib indices 0-67, at least one"
            ));
        }
    }
    if config.batch < 2 {
        return Err("a batch needs at least 2 faces".into());
    }
    if !(0.0..=1.0).contains(&config.relabel_fraction) || config.relabel_margin < 0.0 {
        return Err(format!(
            "relabel fraction {} and margin {}: give a fraction in 0-1 and a margin >= 0",
            config.relabel_fraction, config.relabel_margin
        ));
    }
    if config.relabel_rule().is_some()
        && (config.relabel_from == 0 || config.uncertainty_window == 0)
    {
        return Err("UERM needs --relabel-from and --uncertainty-window of at least 1".into());
    }
    if let Some(arm) = config.lanet(7).arm() {
        if arm.kernel_side() > arm.map || arm.stride == 0 {
            return Err(format!(
                "ARM kernel {} stride {} does not fit the {m}x{m} last feature map of a {} input",
                arm.kernel_side(),
                arm.stride,
                config.input_size,
                m = arm.map
            ));
        }
    }
    std::fs::create_dir_all(out).map_err(|e| io(out, e))?;
    let config_path = out.join("config.json");
    if !resume {
        write_atomic(
            &config_path,
            &serde_json::to_vec_pretty(config).map_err(|e| e.to_string())?,
        )
        .map_err(|e| io(&config_path, e))?;
    }

    let (train, test) = datasets(config)?;
    let noisy = noisy_labels(config, &train)?;
    let labels: Vec<usize> = noisy.labels.iter().map(|e| e.index()).collect();
    let classes = train.classes;
    if !resume {
        // The run's record of what the noise did: every flipped training sample, from and to.
        let flips: Vec<serde_json::Value> = (0..labels.len())
            .filter(|&i| noisy.flipped(i))
            .map(|i| {
                serde_json::json!({
                    "index": i,
                    "original": noisy.original[i].name(),
                    "noisy": noisy.labels[i].name(),
                })
            })
            .collect();
        let path = out.join("noise.json");
        let record = serde_json::json!({ "noise": config.noise, "training_samples": labels.len(), "flipped": flips });
        write_atomic(
            &path,
            &serde_json::to_vec_pretty(&record).map_err(|e| e.to_string())?,
        )
        .map_err(|e| io(&path, e))?;
    }
    let mut run = Run::fresh(config, &labels, classes, device)?;
    let metrics_path = out.join("metrics.jsonl");
    let mut epochs: Vec<EpochMetrics> = Vec::new();
    if resume {
        let (epoch, sections) = newest_good(out)?;
        // The state carries the metrics of the epochs it covers; any later lines in
        // metrics.jsonl belong to the lost part of the run.
        (run, epochs) = run
            .restore(&sections, classes)
            .map_err(|e| format!("{}: {e}", state_path(out, epoch).display()))?;
        eprintln!(
            "train: resuming {} after epoch {} of {}",
            out.display(),
            run.epoch,
            config.epochs
        );
    }
    write_metrics(&metrics_path, &epochs)?;

    let lanet = config.lanet(classes);
    let lde = LdeConfig::new(lanet.feature_dim(), lanet.fpn_channels)
        .with_k(config.k)
        .with_momentum(config.momentum);
    let steps_per_epoch = labels.len().div_ceil(config.batch);
    let total_steps = (steps_per_epoch * config.epochs).max(1);
    let bar = indicatif::ProgressBar::new(total_steps as u64);
    bar.set_position(run.step as u64);
    // Linear decay from the initial rate to 0 over the whole run.
    let lr_at = |step: usize| config.lr * (1.0 - step as f64 / total_steps as f64);
    let mut step_config = StepConfig {
        landmark_weight: config.landmark_weight,
        kl_weight: config.kl_weight,
        contrastive_weight: config.contrastive_weight,
        temperature: config.temperature,
        confidence: config.confidence,
        key_momentum: config.key_momentum,
        lde,
        adaptive_wing: AdaptiveWing::default(),
        lr: config.lr,
        scl_weight: config.scl_weight,
        scl_temperature: config.scl_temperature,
    };
    for epoch in run.epoch..config.epochs {
        let order = epoch_indices(&run.labels, classes, epoch, config.epochs, config.seed);
        let mut rng = SplitMix64::new(
            config.seed ^ 0xA6_6E17 ^ (epoch as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15),
        );
        let epoch_lr = lr_at(run.step);
        let mut sums = StepLosses::default();
        let mut batches = 0;
        for rows in order.chunks(config.batch) {
            if rows.len() < 2 {
                continue; // BatchNorm and the neighbour search need two samples
            }
            let lr = lr_at(run.step);
            step_config.lr = lr;
            let plans: Vec<Plan> = rows
                .iter()
                .map(|_| Plan::draw(&config.augment, config.input_size, &mut rng))
                .collect();
            let batch = keep_landmarks(
                batch_of(&train, rows, &run.labels, &plans, device)?,
                config.landmark_subset.as_deref(),
            );
            let model = run.model;
            let (next, losses, logits) = if config.method == Method::Ce {
                let plain = PlainStepConfig {
                    lr,
                    scl_weight: config.scl_weight,
                    scl_temperature: config.scl_temperature,
                };
                plain_step(model, &mut run.optim, &batch, &plain)
            } else {
                train_step(
                    model,
                    &mut run.optim,
                    &mut run.bank,
                    run.contrast.as_mut(),
                    &batch,
                    &step_config,
                )
            };
            run.model = next;
            if let Some(p) = run.predictions.as_mut() {
                p.record(&batch.indices, &probabilities(logits));
            }
            if !losses.total.is_finite() {
                let kept = state_files(out)
                    .first()
                    .map_or_else(|| "none yet".to_string(), |(_, p)| p.display().to_string());
                return Err(format!(
                    "loss became {} at epoch {} step {} ({losses:?}); stopped without saving this epoch. Last good state: {kept}; lower --lr and resume with --resume",
                    losses.total,
                    epoch + 1,
                    run.step
                ));
            }
            sums.total += losses.total;
            sums.ce += losses.ce;
            sums.landmark += losses.landmark;
            sums.kl += losses.kl;
            sums.contrastive += losses.contrastive;
            sums.scl += losses.scl;
            batches += 1;
            run.step += 1;
            bar.inc(1);
        }
        run.epoch = epoch + 1;
        let (mut relabelled, mut relabelled_right) = (0, 0);
        if let (Some(p), Some(rule)) = (run.predictions.as_mut(), config.relabel_rule()) {
            p.end_epoch();
            if epoch + 1 >= config.relabel_from {
                let averaged = p.averaged();
                let views: Vec<Option<&[f32]>> = averaged.iter().map(|a| a.as_deref()).collect();
                let changes = relabel(&views, &mut run.labels, rule);
                relabelled = changes.len();
                relabelled_right = changes
                    .iter()
                    .filter(|c| c.to == train.labels[c.index])
                    .count();
            }
        }
        let wrong_labels = run
            .labels
            .iter()
            .zip(&train.labels)
            .filter(|(a, b)| a != b)
            .count();
        let n = batches.max(1) as f32;
        let metrics = EpochMetrics {
            epoch: epoch + 1,
            loss: sums.total / n,
            ce: sums.ce / n,
            landmark: sums.landmark / n,
            kl: sums.kl / n,
            contrastive: sums.contrastive / n,
            scl: sums.scl / n,
            relabelled,
            relabelled_right,
            wrong_labels,
            test_accuracy: accuracy(&run.model.net.valid(), &test, config.batch, device)?,
            lr: epoch_lr,
        };
        tracing::info!(
            epoch = epoch + 1,
            loss = metrics.loss,
            test_accuracy = metrics.test_accuracy,
            relabelled,
            relabelled_right,
            wrong_labels,
            "epoch done"
        );
        epochs.push(metrics);
        // Checkpoint and state first, metrics last: a metrics line always has its state, and
        // the state holds the metrics.
        let checkpoint: PathBuf = out.join(format!("checkpoint-{:03}.bpk", epoch + 1));
        write_checksummed(&checkpoint, &record_bytes(&run.model.net, "checkpoint")?)
            .map_err(|e| io(&checkpoint, e))?;
        let state = state_path(out, epoch + 1);
        write_atomic(&state, &run.save(&epochs)?).map_err(|e| io(&state, e))?;
        for (_, old) in state_files(out).into_iter().skip(2) {
            let _ = std::fs::remove_file(old);
        }
        write_metrics(&metrics_path, &epochs)?;
    }
    bar.finish_and_clear();
    Ok(FitSummary {
        test_accuracy: epochs.last().map_or(0.0, |m| m.test_accuracy),
        flipped: noisy.flip_count(),
        epochs,
    })
}

/// The history bank of the newest verified state in `dir` (the learned label distributions).
///
/// # Errors
/// As [`newest_good`], or if the bank section is missing.
pub fn learned_distributions(dir: &Path) -> Result<Vec<f32>, String> {
    let (_, s) = newest_good(dir)?;
    f32_values(s.get("bank")?)
}

/// The training labels as the newest verified state in `dir` has them (after UERM's changes).
///
/// # Errors
/// As [`newest_good`], or if the state does not record them.
pub fn current_labels(dir: &Path) -> Result<Vec<usize>, String> {
    let (epoch, s) = newest_good(dir)?;
    let meta: Meta = serde_json::from_slice(s.get("meta")?).map_err(|e| e.to_string())?;
    meta.labels
        .ok_or_else(|| format!("{} records no labels", state_path(dir, epoch).display()))
}

#[cfg(test)]
mod tests {
    use super::*;

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
            // Six short epochs learn faster without augmentation; augmentation has its own tests.
            augment: Augment::none(),
            ..FitConfig::default()
        }
    }

    #[test]
    fn a_short_run_writes_its_files_learns_and_reloads() {
        let dir = tempfile::tempdir().unwrap();
        let device = Device::flex().autodiff();
        let config = small();
        let summary = fit(&config, dir.path(), &device, false).unwrap();
        assert_eq!(summary.epochs.len(), 6);
        let lines = std::fs::read_to_string(dir.path().join("metrics.jsonl")).unwrap();
        assert_eq!(lines.lines().count(), 6);
        for e in 1..=6 {
            assert!(dir.path().join(format!("checkpoint-{e:03}.bpk")).is_file());
        }
        // Only the two newest states are kept.
        let states: Vec<usize> = state_files(dir.path()).iter().map(|s| s.0).collect();
        assert_eq!(states, vec![6, 5]);
        assert_eq!(FitConfig::load(dir.path()).unwrap(), config);
        let noise: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("noise.json")).unwrap()).unwrap();
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
        assert!(dir.path().join("confusion.png").is_file());
    }
}
