//! The model card: the JSON file beside every ONNX model that says how to feed it and read it.
//!
//! One schema for every model (the shipped FER2013 model and those `train export` writes):
//! labels in output order, the input tensor's name, layout, size and channels, the normalisation,
//! the alignment template the face must be warped to, the output's name and kind, provenance,
//! licence and the ONNX file's sha256. Parsing is strict (unknown fields are refused) so that a
//! typo cannot silently fall back to a default. Checking the card against the ONNX graph itself is
//! [`crate::Classifier`]'s job.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::align::Alignment;
use crate::error::{Error, Result};

/// A parsed and validated model card.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelCard {
    /// Short model name, e.g. `fer2013-mini-xception`.
    pub name: String,
    /// The ONNX file, relative to the card's folder.
    pub model: String,
    /// sha256 of the ONNX file, lowercase hex.
    pub sha256: String,
    /// Class labels in the order of the model's output.
    pub labels: Vec<String>,
    /// The input tensor.
    pub input: InputSpec,
    /// How 0-255 pixel values become the model's input values.
    pub normalise: Normalise,
    /// The output tensor.
    pub output: OutputSpec,
    /// Where the face's key points go in the model's input crop.
    pub alignment: Alignment,
    /// Where the model comes from: data, method, noise, metrics, conversion. Free-form.
    pub provenance: BTreeMap<String, serde_json::Value>,
    /// Licence of the weights (name, and the file beside the card that holds the text).
    pub licence: String,
}

/// The model's input tensor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    /// Tensor name in the ONNX graph.
    pub name: String,
    /// Memory layout; the batch axis is always first and dynamic.
    pub layout: Layout,
    /// Height in pixels.
    pub height: u32,
    /// Width in pixels.
    pub width: u32,
    /// Colour channels.
    pub channels: Channels,
}

/// Tensor layout of an image batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Layout {
    /// Batch, channels, height, width (PyTorch, burn).
    #[serde(rename = "NCHW")]
    Nchw,
    /// Batch, height, width, channels (Keras, TensorFlow).
    #[serde(rename = "NHWC")]
    Nhwc,
}

/// Colour channels of the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Channels {
    /// One channel, luma `0.299 R + 0.587 G + 0.114 B` (ITU-R BT.601, as PIL and OpenCV).
    Gray,
    /// Three channels in R, G, B order.
    Rgb,
}

impl Channels {
    /// Number of channels.
    pub fn count(self) -> usize {
        match self {
            Channels::Gray => 1,
            Channels::Rgb => 3,
        }
    }
}

/// Normalisation from 0-255 pixel values to model input values.
///
/// Either `{ "mean": [..], "std": [..] }`: `v = (x / 255 - mean[c]) / std[c]` (ImageNet style),
/// or `{ "scale": s, "offset": o }`: `v = x * s + o`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, untagged)]
pub enum Normalise {
    /// Per-channel mean and standard deviation of the 0-1 pixel values.
    MeanStd {
        /// Per-channel mean, one per input channel.
        mean: Vec<f32>,
        /// Per-channel standard deviation, one per input channel.
        std: Vec<f32>,
    },
    /// One affine map on the 0-255 values.
    ScaleOffset {
        /// Multiplier on the 0-255 value.
        scale: f32,
        /// Added after scaling.
        offset: f32,
    },
}

/// The model's output tensor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputSpec {
    /// Tensor name in the ONNX graph.
    pub name: String,
    /// Whether the output already sums to 1 or still needs a softmax.
    pub kind: OutputKind,
}

/// What the output values are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputKind {
    /// Raw scores; the runtime applies a softmax.
    Logits,
    /// Already a probability vector.
    Probabilities,
}

impl ModelCard {
    /// Reads and validates a card from `path`.
    ///
    /// # Errors
    /// [`Error::Io`] if it cannot be read, [`Error::Card`] if it is not valid JSON, has unknown or
    /// missing fields, or is inconsistent (see [`ModelCard::from_json`]).
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::from_json(&text, path)
    }

    /// Parses and validates a card; `path` is only used in error messages.
    ///
    /// # Errors
    /// [`Error::Card`] naming the problem: JSON syntax (with line and column), an unknown or
    /// missing field, no labels, duplicate labels, a zero input size, normalisation constants that
    /// do not match the channel count or a zero std, a malformed sha256, a negative margin.
    pub fn from_json(text: &str, path: &Path) -> Result<Self> {
        let card: ModelCard = serde_json::from_str(text).map_err(|e| Error::Card {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        card.validate().map_err(|reason| Error::Card {
            path: path.to_path_buf(),
            reason,
        })?;
        Ok(card)
    }

    /// The ONNX file's path, given the card's own path.
    pub fn model_path(&self, card_path: &Path) -> PathBuf {
        card_path
            .parent()
            .unwrap_or_else(|| Path::new("."))
            .join(&self.model)
    }

    fn validate(&self) -> std::result::Result<(), String> {
        if self.labels.is_empty() {
            return Err("`labels` is empty: list the class labels in output order".into());
        }
        for (i, label) in self.labels.iter().enumerate() {
            if label.trim().is_empty() {
                return Err(format!("label {i} is empty"));
            }
            if self.labels[..i].contains(label) {
                return Err(format!("label {label:?} appears twice"));
            }
        }
        if self.input.height == 0 || self.input.width == 0 {
            return Err(format!(
                "input size {}x{} has a zero side",
                self.input.width, self.input.height
            ));
        }
        let channels = self.input.channels.count();
        if let Normalise::MeanStd { mean, std } = &self.normalise {
            if mean.len() != channels || std.len() != channels {
                return Err(format!(
                    "normalise has {} mean and {} std values for {channels} input channel(s)",
                    mean.len(),
                    std.len()
                ));
            }
            if std.iter().any(|s| *s == 0.0 || !s.is_finite()) {
                return Err("normalise std has a zero or non-finite value".into());
            }
        }
        if self.sha256.len() != 64 || !self.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("sha256 {:?} is not 64 hex digits", self.sha256));
        }
        if !(0.0..1.0).contains(&self.alignment.margin) {
            return Err(format!(
                "alignment margin {} is outside [0, 1)",
                self.alignment.margin
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CARD: &str = include_str!("../models/fer2013-mini-xception/model.json");

    fn parse(text: &str) -> Result<ModelCard> {
        ModelCard::from_json(text, Path::new("card.json"))
    }

    #[test]
    fn shipped_card_parses() -> Result<()> {
        let card = parse(CARD)?;
        assert_eq!(card.labels.len(), 7);
        assert_eq!(card.input.layout, Layout::Nhwc);
        assert_eq!(card.input.channels, Channels::Gray);
        Ok(())
    }

    #[test]
    fn unknown_field_is_refused_by_name() {
        let text = CARD.replacen("\"licence\"", "\"colour\": 1, \"licence\"", 1);
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains("unknown field `colour`"), "{err}");
        assert!(err.contains("card.json"), "{err}");
    }

    #[test]
    fn mean_std_must_match_channels() {
        let mut value: serde_json::Value = serde_json::from_str(CARD).unwrap();
        value["normalise"] = serde_json::json!({"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]});
        let err = parse(&value.to_string()).unwrap_err().to_string();
        assert!(err.contains("for 1 input channel"), "{err}");
    }

    #[test]
    fn duplicate_labels_are_refused() {
        let mut value: serde_json::Value = serde_json::from_str(CARD).unwrap();
        value["labels"][1] = value["labels"][0].clone();
        let err = parse(&value.to_string()).unwrap_err().to_string();
        assert!(err.contains("appears twice"), "{err}");
    }
}
