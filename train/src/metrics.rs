//! What a run records per epoch: one line of `metrics.jsonl` each.

use serde::{Deserialize, Serialize};

/// One epoch's metrics (a line of `metrics.jsonl`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
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
    /// Accuracy on the training batches during the epoch, against the labels trained on (noisy,
    /// or as UERM left them): near 1 once the network has memorised the noise.
    #[serde(default)]
    pub train_accuracy: f64,
    /// Clean test accuracy after the epoch.
    pub test_accuracy: f64,
    /// Accuracy on the held-out validation faces against their noisy labels, when the run holds
    /// some out (`data.validation`).
    #[serde(default)]
    pub val_accuracy: Option<f64>,
    /// kNN purity in expression-feature space: the share of the anchors' K batch neighbours
    /// whose clean label is the anchor's, pooled over the epoch's batches.
    #[serde(default)]
    pub purity_expression: Option<f64>,
    /// The same in landmark-feature space (LA-Net).
    #[serde(default)]
    pub purity_landmark: Option<f64>,
    /// LA-Net: training labels that differ from the clean ones (noise) whose history-bank
    /// argmax is the clean label after the epoch.
    #[serde(default)]
    pub bank_recovered: Option<usize>,
    /// LA-Net: training labels equal to the clean ones whose history-bank argmax moved away.
    #[serde(default)]
    pub bank_lost: Option<usize>,
    /// Learning rate at the epoch's start.
    pub lr: f64,
}

/// The lines of `metrics.jsonl` for `epochs`.
pub fn jsonl(epochs: &[EpochMetrics]) -> String {
    let mut text = String::new();
    for m in epochs {
        text.push_str(&serde_json::to_string(m).expect("metrics serialise"));
        text.push('\n');
    }
    text
}
