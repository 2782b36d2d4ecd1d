//! Evaluation of a finished run: rebuild the model from the run's `config.json`, load its newest
//! checkpoint, and report accuracy, per-class accuracy, mean class accuracy and the confusion
//! matrix (also written as `confusion.csv` beside the checkpoints).

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::prelude::*;
use serde::Serialize;

use crate::data::ClassSet;
use crate::fit::{predict, test_set, FitConfig};
use crate::model::lanet::{LaNet, LaNetConfig};

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
}

/// The newest `checkpoint-NNN.bpk` in `dir`.
///
/// # Errors
/// A message naming the folder if it cannot be read or holds no checkpoint.
pub fn latest_checkpoint(dir: &Path) -> Result<PathBuf, String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("checkpoint-") && n.ends_with(".bpk"))
        })
        .max()
        .ok_or_else(|| format!("{} has no checkpoint-NNN.bpk", dir.display()))
}

/// Rebuilds the run's model and loads `checkpoint` into it.
///
/// # Errors
/// A message naming the file if the config or checkpoint cannot be read or does not fit.
pub fn load_model(
    dir: &Path,
    checkpoint: &Path,
    device: &Device,
) -> Result<(FitConfig, LaNet), String> {
    let config_path = dir.join("config.json");
    let text =
        std::fs::read(&config_path).map_err(|e| format!("{}: {e}", config_path.display()))?;
    let config: FitConfig =
        serde_json::from_slice(&text).map_err(|e| format!("{}: {e}", config_path.display()))?;
    let bytes = std::fs::read(checkpoint).map_err(|e| format!("{}: {e}", checkpoint.display()))?;
    let record = burn::store::ModuleRecord::from_bytes(burn::tensor::Bytes::from_bytes_vec(bytes))
        .map_err(|e| format!("{}: not a readable checkpoint: {e}", checkpoint.display()))?;
    let net = LaNetConfig::new()
        .with_width(config.width)
        .with_blocks(config.blocks)
        .init(device);
    let net = net.try_load_record(record).map_err(|e| {
        format!(
            "{}: does not match {}: {e}",
            checkpoint.display(),
            config_path.display()
        )
    })?;
    Ok((config, net))
}

/// Evaluates the newest checkpoint of the run in `dir` on its clean test set.
///
/// # Errors
/// As [`load_model`], or if `confusion.csv` cannot be written.
pub fn evaluate(dir: &Path, device: &Device) -> Result<EvalReport, String> {
    let checkpoint = latest_checkpoint(dir)?;
    let (config, net) = load_model(dir, &checkpoint, device)?;
    let test = test_set(&config, device)?;
    let pred = predict(&net.valid(), &test, config.batch, device);
    let k = ClassSet::Seven.count();
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
    let mut csv = format!("true\\predicted,{}\n", ClassSet::Seven.names().join(","));
    for (c, row) in confusion.iter().enumerate() {
        let cells: Vec<String> = row.iter().map(|n| n.to_string()).collect();
        csv.push_str(&format!(
            "{},{}\n",
            ClassSet::Seven.names()[c],
            cells.join(",")
        ));
    }
    let csv_path = dir.join("confusion.csv");
    std::fs::write(&csv_path, csv).map_err(|e| format!("{}: {e}", csv_path.display()))?;
    Ok(EvalReport {
        checkpoint,
        accuracy: correct as f64 / test.labels.len().max(1) as f64,
        mean_class_accuracy: per_class.iter().sum::<f64>() / k as f64,
        per_class,
        confusion,
    })
}
