//! Everything a run depends on, in one burn config: [`TrainingConfig`]. Its defaults (written once,
//! in the `#[config(default = ...)]` attributes below) are the paper's set-up: LA-Net on a
//! ResNet-18, 224x224 aligned faces, 80 epochs of batch 128, Adam at 1e-3 decayed linearly to 0.
//! `train fit` saves the resolved config as the run's `config.json`; `--resume`, `eval`, `export`
//! and `crops` read it back. [`layers`] resolves defaults, then a config file, then flags.

pub mod layers;

use std::path::PathBuf;

use burn::config::Config;
use burn::optim::AdamConfig;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::augment::Augment;
use crate::data::noise::NoiseKind;
use crate::model::lanet::LaNetConfig;
use crate::model::lde::LdeConfig;
use crate::relabel::RelabelRule;

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

/// A run's whole configuration, saved as `config.json` in its folder.
#[derive(Config, Debug)]
pub struct TrainingConfig {
    /// Training method.
    #[config(default = "Method::Lanet")]
    pub method: Method,
    /// The network.
    #[config(default = "LaNetConfig::new()")]
    pub model: LaNetConfig,
    /// A PyTorch ResNet checkpoint with torchvision's names (torchvision's resnet18 weights, or a
    /// face-pretrained ResNet-18) to start the backbone from; the model's width and depth must
    /// match it.
    pub init: Option<PathBuf>,
    /// An earlier run of this tool (its folder, or one of its checkpoint files) to start the
    /// backbone from: the stem and layer1, and its expression layers 2-4 copied into both
    /// branches, as LA-Net's reference loads one pretrained checkpoint into both; the
    /// classifier, the landmark head and every other part start fresh. The backbone's width and
    /// depth must be the run's. The pretraining stand-in (`data.identities`) writes such runs.
    pub init_from: Option<PathBuf>,
    /// Where the faces come from, and the noise put on their training labels.
    #[config(default = "DataConfig::new()")]
    pub data: DataConfig,
    /// Training augmentation.
    #[config(default = "Augment::new()")]
    pub augment: Augment,
    /// Epochs.
    #[config(default = 80)]
    pub epochs: usize,
    /// Batch size (at least 2: BatchNorm and the neighbour search need two faces).
    #[config(default = 128)]
    pub batch: usize,
    /// Initial learning rate, decayed linearly to 0 over the run.
    #[config(default = 1e-3)]
    pub lr: f64,
    /// Adam's settings.
    #[config(default = "AdamConfig::new()")]
    pub optimizer: AdamConfig,
    /// Seed of the initial weights, synthetic data, noise, sampling and augmentation.
    #[config(default = 0)]
    pub seed: u64,
    /// Weights of LA-Net's loss terms beside cross-entropy (whose weight is 1).
    #[config(default = "LossWeights::new()")]
    pub loss: LossWeights,
    /// LA-Net's label distribution estimation.
    #[config(default = "LdeConfig::new()")]
    pub lde: LdeConfig,
    /// LA-Net's expression-landmark contrastive loss (its weight is `loss.contrastive`).
    #[config(default = "ContrastiveConfig::new()")]
    pub contrastive: ContrastiveConfig,
    /// The second method's supervised contrastive loss, when on.
    pub scl: Option<SclConfig>,
    /// The second method's uncertainty-guided relabelling, when on.
    pub uerm: Option<UermConfig>,
}

/// Where a run's faces come from.
#[derive(Config, Debug, PartialEq)]
pub struct DataConfig {
    /// A cache written by `train prepare`; synthetic faces when absent.
    pub cache: Option<PathBuf>,
    /// Another prepared cache to test on; when absent, the `test` (or else `val`) split of
    /// `cache`.
    pub test_cache: Option<PathBuf>,
    /// Synthetic training faces (without a cache).
    #[config(default = 1400)]
    pub train_faces: u64,
    /// Synthetic clean test faces (without a cache).
    #[config(default = 700)]
    pub test_faces: u64,
    /// Synthetic training faces are the blend set: half of them blend two classes' expression
    /// parameters (fear/surprise, anger/disgust, sadness/neutral, happiness/surprise, weights
    /// 0.55, 0.70, 0.85), with that true label distribution and a label drawn from it (the test
    /// faces stay pure).
    #[config(default = false)]
    pub blends: bool,
    /// The pretraining stand-in: synthetic faces of this many people (a pool of face shapes,
    /// expressions drawn at random and never labelled), labelled by person. `model.classes`
    /// must equal it; no noise, blends or cache.
    pub identities: Option<u64>,
    /// Fraction of the training faces held out, with their noisy labels, as a validation split
    /// (never trained on): what an epoch can be selected on without clean labels.
    #[config(default = 0.0)]
    pub validation: f64,
    /// Label noise put on the training labels (seeded by the run's seed).
    pub noise: Option<NoiseConfig>,
}

/// Label noise: its kind and the fraction of training labels it flips.
#[derive(Config, Debug, PartialEq)]
pub struct NoiseConfig {
    /// `symmetric` or `asymmetric`.
    pub kind: NoiseKind,
    /// Fraction of training labels flipped.
    #[config(default = 0.3)]
    pub rate: f64,
}

/// Weights of LA-Net's loss terms.
#[derive(Config, Debug, PartialEq)]
pub struct LossWeights {
    /// The landmark (Adaptive Wing) loss.
    #[config(default = 1.0)]
    pub landmark: f64,
    /// KL to the label-distribution targets.
    #[config(default = 1.0)]
    pub kl: f64,
    /// The expression-landmark contrastive loss (0 leaves out the key encoder and queues).
    #[config(default = 0.1)]
    pub contrastive: f64,
}

/// LA-Net's expression-landmark contrastive loss (MoCo).
#[derive(Config, Debug, PartialEq)]
pub struct ContrastiveConfig {
    /// Temperature.
    #[config(default = 0.1)]
    pub temperature: f64,
    /// Label-distribution confidence at which a sample's pseudo-label is its argmax class.
    #[config(default = 0.7)]
    pub confidence: f32,
    /// Momentum of the key encoder.
    #[config(default = 0.999)]
    pub key_momentum: f64,
    /// Queue length per modality.
    #[config(default = 8192)]
    pub queue: usize,
    /// Width of the embeddings.
    #[config(default = 64)]
    pub embed_dim: usize,
}

/// The supervised contrastive loss (Khosla et al. 2020) on a projection of the expression
/// feature.
#[derive(Config, Debug, PartialEq)]
pub struct SclConfig {
    /// Its weight in the total loss.
    #[config(default = 0.5)]
    pub weight: f64,
    /// Its temperature.
    #[config(default = 0.1)]
    pub temperature: f64,
    /// Width of the projection.
    #[config(default = 64)]
    pub embed_dim: usize,
}

/// UERM: after each epoch, relabel the most uncertain training samples whose top class clearly
/// beats their label.
#[derive(Config, Debug, PartialEq)]
pub struct UermConfig {
    /// Fraction of the most uncertain training samples that may be relabelled (0-1).
    #[config(default = 0.3)]
    pub fraction: f64,
    /// How much the top class's probability must exceed the current label's.
    #[config(default = 0.2)]
    pub margin: f32,
    /// The first epoch (from 1) after which labels may change.
    #[config(default = 5)]
    pub from: usize,
    /// Epochs of predictions the uncertainty averages.
    #[config(default = 3)]
    pub window: usize,
}

impl UermConfig {
    /// The relabelling rule these settings give.
    pub fn rule(&self) -> RelabelRule {
        RelabelRule {
            fraction: self.fraction,
            margin: self.margin,
        }
    }
}

/// A configuration that cannot train, or a config file that cannot be read.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not JSON, or a value has the wrong type.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What serde said.
        message: String,
    },
    /// The file names a setting the config does not have.
    #[error("{path}: unknown setting {key:?} (see `train fit --print-config` for every setting)")]
    UnknownKey {
        /// The file.
        path: PathBuf,
        /// The setting, dotted (`model.widht`).
        key: String,
    },
    /// The settings do not make a run.
    #[error("{0}")]
    Invalid(String),
}

impl TrainingConfig {
    /// Whether the run trains the expression-landmark contrastive loss.
    pub fn contrastive_on(&self) -> bool {
        self.method == Method::Lanet && self.loss.contrastive > 0.0
    }

    /// The run's network for data of `classes` classes.
    pub fn model_for(&self, classes: usize) -> LaNetConfig {
        self.model.clone().with_classes(classes)
    }

    /// A one-line name of what trains: the method and the switches that are on.
    pub fn describe(&self) -> String {
        let mut parts = vec![match self.method {
            Method::Ce => "cross-entropy",
            Method::Lanet => "LA-Net (Wu & Cui, ICCV 2023)",
        }
        .to_string()];
        if let Some(scl) = &self.scl {
            parts.push(format!(
                "SCL (weight {}, tau {})",
                scl.weight, scl.temperature
            ));
        }
        if let Some(u) = &self.uerm {
            parts.push(format!(
                "UERM (fraction {}, margin {}, from epoch {}, window {})",
                u.fraction, u.margin, u.from, u.window
            ));
        }
        if let Some(arm) = self.model.arm() {
            parts.push(format!(
                "ARM (de-albino kernel {k}x{k} stride {}, affinity sharing)",
                arm.stride,
                k = arm.kernel_side()
            ));
        }
        parts.join(" + ")
    }

    /// Refuses settings that cannot train, before anything is written.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] saying which setting is wrong and why.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        let size = self.model.input_size;
        if size == 0 || !size.is_multiple_of(32) {
            return invalid(format!(
                "model.input_size {size} is not a positive multiple of 32"
            ));
        }
        if let Some(subset) = &self.model.landmarks {
            if subset.is_empty() || subset.iter().any(|&i| i >= 68) {
                return invalid(format!(
                    "model.landmarks {subset:?}: give dlib indices 0-67, at least one"
                ));
            }
        }
        if self.init.is_some() && self.init_from.is_some() {
            return invalid("init and init_from: give one starting point".into());
        }
        if !(0.0..1.0).contains(&self.data.validation) {
            return invalid(format!(
                "data.validation {}: give a fraction in 0-1 (below 1)",
                self.data.validation
            ));
        }
        if let Some(people) = self.data.identities {
            let data = &self.data;
            if people < 2 || self.model.classes as u64 != people {
                return invalid(format!(
                    "data.identities {people}: needs at least 2 people and model.classes equal to it (it is {})",
                    self.model.classes
                ));
            }
            if data.noise.is_some() || data.blends || data.cache.is_some() {
                return invalid(
                    "data.identities makes its own synthetic faces: no noise, blends or cache"
                        .into(),
                );
            }
        } else if self.model.classes > 8 || self.model.classes < 2 {
            return invalid(format!(
                "model.classes {}: expressions are 7, or 8 with contempt",
                self.model.classes
            ));
        }
        if self.data.blends && (self.data.cache.is_some() || self.model.classes != 7) {
            return invalid("data.blends are synthetic faces of 7 classes: no cache".into());
        }
        for (name, m) in [
            ("contrastive.key_momentum", self.contrastive.key_momentum),
            ("lde.momentum", self.lde.momentum),
        ] {
            if !(0.0..=1.0).contains(&m) {
                return invalid(format!("{name} {m}: give a momentum in 0-1"));
            }
        }
        if self.batch < 2 {
            return invalid("batch: a batch needs at least 2 faces".into());
        }
        if let Some(n) = &self.data.noise {
            if !(0.0..=1.0).contains(&n.rate) {
                return invalid(format!(
                    "data.noise.rate {}: give a fraction in 0-1",
                    n.rate
                ));
            }
        }
        if let Some(u) = &self.uerm {
            if !(0.0..=1.0).contains(&u.fraction) || u.margin < 0.0 {
                return invalid(format!(
                    "relabel fraction {} and margin {}: give a fraction in 0-1 and a margin >= 0",
                    u.fraction, u.margin
                ));
            }
            if u.from == 0 || u.window == 0 {
                return invalid(
                    "UERM needs --relabel-from and --uncertainty-window of at least 1".into(),
                );
            }
        }
        if let Some(arm) = self.model.arm() {
            if arm.kernel_side() > arm.map || arm.stride == 0 {
                return invalid(format!(
                    "ARM kernel {} stride {} does not fit the {m}x{m} last feature map of a {size} input",
                    arm.kernel_side(),
                    arm.stride,
                    m = arm.map
                ));
            }
        }
        Ok(())
    }
}
