//! `--init FILE.pth`: start the backbone from a PyTorch ResNet checkpoint (torchvision's, or a
//! face-pretrained one saved with torchvision's parameter names), through burn's PyTorch reader.
//! `--init-from RUN`: start it from an earlier run of this tool ([`from_run`]).
//!
//! torchvision names map onto the expression path (`conv1`/`bn1` -> the stem, `layer1` -> the
//! shared stage, `layer2-4` -> the expression branch, `downsample.0/1` -> the shortcut's conv and
//! BatchNorm); the landmark branch then starts as a copy of layers 2-4, as in LA-Net. The
//! classifier (`fc`) is not loaded: its classes are ImageNet's, not ours.

use anyhow::Context;
use std::path::Path;

use burn::store::{ModuleSnapshot, PytorchStore};

use crate::model::lanet::{LaNet, LaNetConfig};
use crate::run_dir::RunDir;

/// What an initialisation loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitReport {
    /// Tensors loaded into the model.
    pub applied: usize,
    /// Tensors of the file that were not used (`fc`, `num_batches_tracked`).
    pub unused: Vec<String>,
}

/// Loads `path` into `net`'s stem, layer1 and expression layers 2-4 and copies those into the
/// landmark branch.
///
/// # Errors
/// A message naming the file if it cannot be read, if a tensor has another shape than the model
/// (a different width or depth), or if any backbone tensor is missing from it.
pub fn from_pytorch(
    net: LaNet,
    path: &Path,
    bottleneck: bool,
) -> anyhow::Result<(LaNet, InitReport)> {
    if !path.is_file() {
        anyhow::bail!("{}: no such file", path.display());
    }
    let blocks = if bottleneck { "bottlenecks" } else { "blocks" };
    let mut store = PytorchStore::from_file(path)
        .with_key_remapping(r"^conv1\.", "expression.stem.conv.")
        .with_key_remapping(r"^bn1\.", "expression.stem.bn.")
        .with_key_remapping(
            r"^layer1\.(\d+)\.",
            format!("expression.layer1.{blocks}.$1."),
        )
        .with_key_remapping(
            r"^layer2\.(\d+)\.",
            format!("expression.expr.0.{blocks}.$1."),
        )
        .with_key_remapping(
            r"^layer3\.(\d+)\.",
            format!("expression.expr.1.{blocks}.$1."),
        )
        .with_key_remapping(
            r"^layer4\.(\d+)\.",
            format!("expression.expr.2.{blocks}.$1."),
        )
        .with_key_remapping(r"\.downsample\.0\.", ".downsample.conv.")
        .with_key_remapping(r"\.downsample\.1\.", ".downsample.bn.")
        .allow_partial(true);
    let mut net = net;
    let result = net
        .load_from(&mut store)
        .with_context(|| path.display().to_string())?;
    if !result.errors.is_empty() {
        anyhow::bail!(
            "{}: does not fit the configured backbone: {:?}",
            path.display(),
            result.errors
        );
    }
    // Everything of the inference path but the classifier must come from the file.
    let missing: Vec<&str> = result
        .missing
        .iter()
        .map(|(p, _)| p.as_str())
        .filter(|p| {
            ["stem.", "layer1.", "expr."]
                .iter()
                .any(|part| p.starts_with(&format!("expression.{part}")))
        })
        .collect();
    if !missing.is_empty() {
        anyhow::bail!(
            "{}: lacks {} backbone tensors (first: {}); is it a ResNet of this width and depth, saved with torchvision's names?",
            path.display(),
            missing.len(),
            missing[0]
        );
    }
    let report = InitReport {
        applied: result.applied.len(),
        unused: result.unused.clone(),
    };
    Ok((net.landmark_branch_from_expression(), report))
}

/// The run folder and checkpoint `path` names: a run folder (its newest checkpoint) or a
/// checkpoint file inside one.
///
/// # Errors
/// A path that is neither, naming it.
pub fn run_and_checkpoint(path: &Path) -> anyhow::Result<(RunDir, std::path::PathBuf)> {
    if path.is_dir() {
        let run = RunDir::new(path);
        let checkpoint = run.newest_checkpoint()?;
        return Ok((run, checkpoint));
    }
    anyhow::ensure!(
        path.is_file(),
        "{}: no such run folder or checkpoint",
        path.display()
    );
    let folder = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    Ok((RunDir::new(folder), path.to_path_buf()))
}

/// Starts `net` (configured as `model`) from the backbone of the run at `path` (see
/// [`run_and_checkpoint`]), as [`LaNet::with_backbone_of`] describes. Returns the checkpoint
/// used.
///
/// # Errors
/// A run whose config or checkpoint cannot be read, or whose backbone has another width or
/// depth, naming the file.
pub fn from_run(
    net: LaNet,
    model: &LaNetConfig,
    path: &Path,
    device: &burn::prelude::Device,
) -> anyhow::Result<(LaNet, std::path::PathBuf)> {
    let (run, checkpoint) = run_and_checkpoint(path)?;
    let source = run.read_config()?;
    let theirs = &source.model;
    anyhow::ensure!(
        (theirs.width, theirs.blocks, theirs.resnet50)
            == (model.width, model.blocks, model.resnet50),
        "{}: its backbone is width {} blocks {}{}, this run's width {} blocks {}{}",
        run.config_path().display(),
        theirs.width,
        theirs.blocks,
        if theirs.resnet50 { " (ResNet-50)" } else { "" },
        model.width,
        model.blocks,
        if model.resnet50 { " (ResNet-50)" } else { "" },
    );
    let loaded = crate::eval::load_model(&run, &source, &checkpoint, theirs.classes, device)?;
    Ok((net.with_backbone_of(loaded), checkpoint))
}
