//! The resumable training state of a run at an epoch boundary, in one checksummed file
//! (`state-NNN.bin`): the trained modules, the key encoder, Adam's moments, the history bank, the
//! queues, and where the schedule stands. `--resume` loads the newest file that verifies, so a
//! run killed at any moment continues exactly as if it had not stopped.
//!
//! Layout: the magic `EFSTATE1`, then sections (`u32` name length, name, `u64` length, bytes), then
//! the sha256 of everything before it (32 bytes). All integers little-endian.

use sha2::{Digest, Sha256};
use thiserror::Error;

use anyhow::Context;
use burn::module::Module;
use burn::prelude::*;
use serde::{Deserialize, Serialize};

use crate::config::TrainingConfig;
use crate::metrics::EpochMetrics;
use crate::model::lde::HistoryBank;
use crate::model::moco::{Heads, MomentumEncoder, Projection, Queue};
use crate::relabel::PredictionHistory;
use crate::run_dir::RunDir;
use crate::training::{Contrast, TrainModel};

const MAGIC: &[u8; 8] = b"EFSTATE1";

/// What is wrong with a state file.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum StateError {
    /// Not written by [`Sections::to_bytes`].
    #[error("not a training state file (bad magic or too short)")]
    NotAState,
    /// Its bytes differ from what was written.
    #[error("checksum mismatch: the file is truncated or corrupted")]
    Checksum,
    /// A section's length runs past the end (only with a matching checksum: a writer's bug).
    #[error("a section runs past the end")]
    Truncated,
    /// A section name that is not UTF-8.
    #[error("a section name is not UTF-8")]
    BadName,
    /// A section the run needs is not there.
    #[error("no {0:?} section")]
    Missing(String),
    /// A section that should hold `f32` values does not.
    #[error("{0} bytes is not a whole number of f32")]
    NotF32(usize),
}

/// Named byte sections, in order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sections(pub Vec<(String, Vec<u8>)>);

impl Sections {
    /// Adds a section.
    pub fn put(&mut self, name: &str, bytes: Vec<u8>) {
        self.0.push((name.to_string(), bytes));
    }

    /// The bytes of section `name`.
    ///
    /// # Errors
    /// [`StateError::Missing`] if there is no such section.
    pub fn get(&self, name: &str) -> Result<&[u8], StateError> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, b)| b.as_slice())
            .ok_or_else(|| StateError::Missing(name.to_string()))
    }

    /// Serialises with the trailing checksum.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        for (name, bytes) in &self.0 {
            out.extend((name.len() as u32).to_le_bytes());
            out.extend(name.as_bytes());
            out.extend((bytes.len() as u64).to_le_bytes());
            out.extend(bytes);
        }
        let digest = Sha256::digest(&out);
        out.extend(digest);
        out
    }

    /// Parses and verifies bytes written by [`Sections::to_bytes`].
    ///
    /// # Errors
    /// What is wrong: not a state file, or a checksum mismatch (truncated or corrupted).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, StateError> {
        if bytes.len() < MAGIC.len() + 32 || &bytes[..MAGIC.len()] != MAGIC {
            return Err(StateError::NotAState);
        }
        let (body, digest) = bytes.split_at(bytes.len() - 32);
        if Sha256::digest(body).as_slice() != digest {
            return Err(StateError::Checksum);
        }
        let mut at = MAGIC.len();
        let mut take = |n: usize| -> Result<&[u8], StateError> {
            let s = body.get(at..at + n).ok_or(StateError::Truncated)?;
            at += n;
            Ok(s)
        };
        let mut out = Sections::default();
        while let Ok(len) = take(4) {
            let len = u32::from_le_bytes(len.try_into().expect("4 bytes")) as usize;
            let name = String::from_utf8(take(len)?.to_vec()).map_err(|_| StateError::BadName)?;
            let size = u64::from_le_bytes(take(8)?.try_into().expect("8 bytes")) as usize;
            out.put(&name, take(size)?.to_vec());
        }
        Ok(out)
    }
}

/// Little-endian bytes of `f32` values.
pub fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// `f32` values from little-endian bytes.
///
/// # Errors
/// [`StateError::NotF32`] if the length is not a multiple of 4.
pub fn f32_values(bytes: &[u8]) -> Result<Vec<f32>, StateError> {
    if !bytes.len().is_multiple_of(4) {
        return Err(StateError::NotF32(bytes.len()));
    }
    Ok(bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
        .collect())
}

/// Everything that changes during training: what a state file holds.
pub struct TrainingState {
    /// The network and the modules trained with it.
    pub model: TrainModel,
    /// The key encoder and queues, when the contrastive loss is on.
    pub contrast: Option<Contrast>,
    /// Adam and its moments.
    pub optim: burn::optim::ModuleOptimizer,
    /// LA-Net's label-distribution history.
    pub bank: HistoryBank,
    /// The training labels as they stand (UERM changes them).
    pub labels: Vec<usize>,
    /// UERM's record of predictions.
    pub predictions: Option<PredictionHistory>,
    /// Epochs done.
    pub epoch: usize,
    /// Optimiser steps done.
    pub step: usize,
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

/// A module's weights as burnpack bytes (what a checkpoint holds).
///
/// # Errors
/// If burn cannot serialise it.
pub fn record_bytes<M: Module>(m: &M, what: &str) -> anyhow::Result<Vec<u8>> {
    m.clone()
        .into_record()
        .into_bytes()
        .map(|b| b.to_vec())
        .map_err(|e| anyhow::anyhow!("serialising the {what}: {e}"))
}

/// `m` with the weights of `bytes` (written by [`record_bytes`]).
///
/// # Errors
/// Bytes that are not a record, or a record of another shape, with `what` named.
pub fn load_module<M: Module>(m: M, bytes: &[u8], what: &str) -> anyhow::Result<M> {
    let record =
        burn::store::ModuleRecord::from_bytes(burn::tensor::Bytes::from_bytes_vec(bytes.to_vec()))
            .map_err(|e| anyhow::anyhow!("{what}: not a readable record: {e}"))?;
    m.try_load_record(record)
        .map_err(|e| anyhow::anyhow!("{what} does not match the run's config: {e}"))
}

impl TrainingState {
    /// The state before the first step: seeded initial weights, one-hot history, empty queues.
    ///
    /// # Errors
    /// A pretrained checkpoint (`init`) that cannot be read or does not fit.
    pub fn fresh(
        config: &TrainingConfig,
        labels: &[usize],
        classes: usize,
        device: &Device,
    ) -> anyhow::Result<Self> {
        // Initial weights come from the device's generator, which is shared by the whole process:
        // seed it and draw every initial weight under one lock, so that two runs in one process
        // (tests, a notebook-style driver) cannot interleave their draws.
        static INIT: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _guard = INIT.lock().unwrap_or_else(|e| e.into_inner());
        device.seed(config.seed);
        let lanet = config.model_for(classes);
        let mut net = lanet.init(device);
        if let Some(path) = &config.init {
            let (loaded, report) = crate::init::from_pytorch(net, path, lanet.resnet50)?;
            tracing::info!(
                applied = report.applied,
                unused = report.unused.len(),
                "backbone initialised from {}",
                path.display()
            );
            net = loaded;
        }
        if let Some(path) = &config.init_from {
            let (loaded, checkpoint) = crate::init::from_run(net, &lanet, path, device)?;
            tracing::info!("backbone initialised from {}", checkpoint.display());
            net = loaded;
        }
        let moco = &config.contrastive;
        let heads = Heads::for_net(&lanet, moco.embed_dim, device);
        let contrast = config.contrastive_on().then(|| Contrast {
            encoder: MomentumEncoder::new(&net, &heads, &lanet, device),
            expr_queue: Queue::new(moco.queue, moco.embed_dim, config.seed ^ 0xE1),
            landmark_queue: Queue::new(moco.queue, moco.embed_dim, config.seed ^ 0x1A),
        });
        let lde = config
            .lde
            .init(lanet.feature_dim(), lanet.fpn_channels, device);
        // Drawn last, so that a run with SCL starts every other weight as the run without.
        let scl = config.scl.as_ref().map(|scl| {
            let d = lanet.feature_dim();
            Projection::new(d, d, scl.embed_dim, device)
        });
        Ok(TrainingState {
            model: TrainModel {
                net,
                lde,
                heads,
                scl,
            },
            contrast,
            optim: config.optimizer.init(),
            bank: HistoryBank::from_labels(labels, classes),
            labels: labels.to_vec(),
            predictions: config
                .uerm
                .as_ref()
                .map(|u| PredictionHistory::new(labels.len(), classes, u.window.max(1))),
            epoch: 0,
            step: 0,
        })
    }

    /// The bytes of a state file holding this state and the metrics so far.
    ///
    /// # Errors
    /// If burn cannot serialise a module or the optimiser.
    pub fn save(&self, metrics: &[EpochMetrics]) -> anyhow::Result<Vec<u8>> {
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
            serde_json::to_vec(&meta).expect("the meta section serialises"),
        );
        s.put("model", record_bytes(&self.model, "model")?);
        s.put(
            "optim",
            self.optim
                .into_bytes()
                .map_err(|e| anyhow::anyhow!("serialising the optimiser: {e}"))?
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

    /// This (fresh) state with the contents of a state file, and the metrics it holds.
    ///
    /// # Errors
    /// A section that is missing or does not fit the run's config.
    pub fn restore(
        mut self,
        s: &Sections,
        classes: usize,
    ) -> anyhow::Result<(Self, Vec<EpochMetrics>)> {
        let meta: Meta = serde_json::from_slice(s.get("meta")?).context("the meta section")?;
        self.model = load_module(self.model, s.get("model")?, "model")?;
        self.optim = self
            .optim
            .from_bytes(burn::tensor::Bytes::from_bytes_vec(
                s.get("optim")?.to_vec(),
            ))
            .map_err(|e| anyhow::anyhow!("optimiser state: {e}"))?;
        let rows = f32_values(s.get("bank")?)?;
        anyhow::ensure!(
            rows.len() == self.bank.rows().len(),
            "history bank of {} values; this run's data needs {}",
            rows.len(),
            self.bank.rows().len()
        );
        self.bank = HistoryBank::from_rows(rows, classes);
        if let Some(mut c) = self.contrast.take() {
            let (Some(heads), Some([le, ll])) = (meta.queue_heads, meta.queue_labels) else {
                anyhow::bail!("the state has no queues but the run uses the contrastive loss");
            };
            c.encoder = load_module(c.encoder, s.get("encoder")?, "key encoder")?;
            for (q, name, head, labels) in [
                (&mut c.expr_queue, "expr_queue", heads[0], le),
                (&mut c.landmark_queue, "landmark_queue", heads[1], ll),
            ] {
                let values = f32_values(s.get(name)?)?;
                anyhow::ensure!(
                    values.len() == q.values.len() && labels.len() == q.labels.len(),
                    "{name} has another size than the config's"
                );
                q.values = values;
                q.labels = labels;
                q.head = head;
            }
            self.contrast = Some(c);
        }
        if let Some(labels) = meta.labels {
            anyhow::ensure!(
                labels.len() == self.labels.len() && labels.iter().all(|&l| l < classes),
                "{} saved labels; this run's data has {} samples of {classes} classes",
                labels.len(),
                self.labels.len()
            );
            self.labels = labels;
        }
        if let Some(p) = self.predictions.as_mut() {
            let next = meta
                .predictions_next
                .context("the state has no prediction history but the run uses UERM")?;
            p.restore(f32_values(s.get("predictions")?)?, next)?;
        }
        self.epoch = meta.epoch;
        self.step = meta.step;
        anyhow::ensure!(
            meta.metrics.len() == meta.epoch,
            "{} epochs of metrics for {} epochs done",
            meta.metrics.len(),
            meta.epoch
        );
        Ok((self, meta.metrics))
    }
}

/// The history bank of the run's newest verified state (the learned label distributions).
///
/// # Errors
/// As [`RunDir::newest_good_state`], or if the bank section is missing.
pub fn learned_distributions(run: &RunDir) -> anyhow::Result<Vec<f32>> {
    let (_, s) = run.newest_good_state()?;
    Ok(f32_values(s.get("bank")?)?)
}

/// The training labels as the run's newest verified state has them (after UERM's changes).
///
/// # Errors
/// As [`RunDir::newest_good_state`], or if the state does not record them.
pub fn current_labels(run: &RunDir) -> anyhow::Result<Vec<usize>> {
    let (epoch, s) = run.newest_good_state()?;
    let meta: Meta = serde_json::from_slice(s.get("meta")?).context("the meta section")?;
    meta.labels
        .with_context(|| format!("{} records no labels", run.state(epoch).display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_round_trip_and_damage_is_detected() {
        let mut s = Sections::default();
        s.put("meta", b"{\"epoch\":3}".to_vec());
        s.put("bank", f32_bytes(&[0.25, -1.5]));
        let bytes = s.to_bytes();
        let back = Sections::from_bytes(&bytes).unwrap();
        assert_eq!(back, s);
        assert_eq!(f32_values(back.get("bank").unwrap()).unwrap(), [0.25, -1.5]);
        assert_eq!(back.get("optim"), Err(StateError::Missing("optim".into())));

        let truncated = &bytes[..bytes.len() - 5];
        assert_eq!(Sections::from_bytes(truncated), Err(StateError::Checksum));
        let mut flipped = bytes.clone();
        flipped[12] ^= 1;
        assert_eq!(Sections::from_bytes(&flipped), Err(StateError::Checksum));
        assert_eq!(Sections::from_bytes(b"hello"), Err(StateError::NotAState));
        assert_eq!(f32_values(&[0; 6]), Err(StateError::NotF32(6)));
    }
}
