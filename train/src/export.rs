//! `train export`: the inference path of a trained LA-Net (stem, layer1, the expression branch's
//! layers 2-4, pooling, classifier) to ONNX, with the model card the runtime reads. Nothing of
//! the landmark branch, the key encoder or the history bank is exported: inference costs exactly
//! a plain ResNet.
//!
//! The ONNX file comes from burn-onnx's capture exporter (opset 18) traced at two batch sizes so
//! the batch axis is symbolic; its input and output are then renamed `images` and `logits`. Before
//! anything is written, the exported file is loaded by the runtime's own classifier (tract) and
//! its logits are compared with burn's on real crops.

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::prelude::*;
use burn_onnx::export::{AxisSpec, InputSpec as OnnxInput, OnnxExporter};
use edge_fer::classify::argmax;
use edge_fer::model_card::{ModelCard, OutputKind, OutputSpec};
use onnx_ir::{Message, ModelProto};
use serde::Serialize;

use anyhow::Context;

use crate::augment::Plan;
use crate::config::TrainingConfig;
use crate::data::Expression;
use crate::eval::load_model;
use crate::faces::datasets;
use crate::model::lanet::{ExpressionNet, LaNet};
use crate::prepare::Cache;
use crate::run_dir::RunDir;
use crate::training::{input_spec, make_batch, normalisation, CachedCrop};

/// The graph's input name.
pub const INPUT_NAME: &str = "images";
/// The graph's output name (logits; the runtime applies softmax, as the card says).
pub const OUTPUT_NAME: &str = "logits";

/// What an export wrote and how closely tract reproduces burn.
#[derive(Debug, Clone, Serialize)]
pub struct ExportReport {
    /// The checkpoint exported.
    pub checkpoint: PathBuf,
    /// The card written.
    pub card: PathBuf,
    /// The ONNX file's sha256 (also in the card).
    pub sha256: String,
    /// Largest |burn - tract| logit difference over the parity crops, per batch size checked.
    pub max_abs_diff: Vec<(usize, f32)>,
    /// Whether every crop got the same argmax from both.
    pub same_argmax: bool,
}

/// Exports the newest (or the given) checkpoint of the run in `run` into the folder `out` as
/// `model.onnx` + `model.json`; `name` names the model in its card.
///
/// # Errors
/// A message naming the file for: a run or checkpoint that does not exist or does not match its
/// config, an export the runtime cannot load, parity worse than 1e-3, or an output folder that
/// cannot be written.
pub fn export(
    run: &RunDir,
    checkpoint: Option<&Path>,
    out: &Path,
    name: &str,
) -> anyhow::Result<ExportReport> {
    let config = run.read_config()?;
    if let Some(people) = config.data.identities {
        anyhow::bail!(
            "{}: a pretraining run classifies {people} synthetic people, not expressions; start an expression run from it with --init-from",
            run.path().display()
        );
    }
    let checkpoint = match checkpoint {
        Some(c) if !c.is_file() => anyhow::bail!("{}: no such checkpoint", c.display()),
        Some(c) => c.to_path_buf(),
        None => run.newest_checkpoint()?,
    };
    let (classes, alignment, data) = match &config.data.cache {
        Some(dir) => {
            let cache = Cache::open(dir)?;
            let s = cache.summary;
            (s.classes, s.alignment, s.source)
        }
        None => (
            7,
            edge_fer::align::Alignment::builtin(),
            format!(
                "synthetic faces (train::data::synthetic), {} for training, seed {}",
                config.data.train_faces, config.seed
            ),
        ),
    };
    let device = Device::flex();
    let net = load_model(run, &config, &checkpoint, classes, &device)?;
    let net = net.valid();
    let size = config.model.input_size;

    // Only the inference path, as its own module: the exporter embeds every weight of the module
    // it is given. It is a deep copy, which also matters because the exporter moves a clone to
    // its capture device and a clone shares BatchNorm's running statistics with `net`.
    let inference = net
        .expression()
        .for_inference(&config.model_for(classes), &device)
        .valid();
    let onnx = to_onnx(&inference, size, &device)?;
    let sha256 = edge_fer::checksum::sha256_hex(&onnx);

    let labels: Vec<String> = Expression::ALL[..classes]
        .iter()
        .map(|e| e.name().to_string())
        .collect();
    let report = crate::eval::evaluate(run, &device).ok();
    let mut provenance = std::collections::BTreeMap::new();
    let mut put = |k: &str, v: serde_json::Value| {
        provenance.insert(k.to_string(), v);
    };
    put(
        "method",
        format!(
            "{}; the export is the expression path alone{}",
            config.describe(),
            if config.model.arm.is_some() {
                ", with ARM's de-albino pooling and its affinity shift folded into the classifier's bias"
            } else {
                ""
            }
        )
        .into(),
    );
    put(
        "backbone",
        format!(
            "{} width {} ({} blocks per stage), {}x{} input",
            if config.model.resnet50 {
                "ResNet-50"
            } else {
                "ResNet (basic blocks)"
            },
            config.model.width,
            if config.model.resnet50 {
                "3,4,6,3".to_string()
            } else {
                config.model.blocks.to_string()
            },
            size,
            size
        )
        .into(),
    );
    put("data", data.into());
    put(
        "noise",
        match &config.data.noise {
            Some(n) => format!("{:?} at {}", n.kind, n.rate).into(),
            None => "none".into(),
        },
    );
    put(
        "training",
        format!(
            "{} epochs, batch {}, Adam lr {} linear to 0, seed {}",
            config.epochs, config.batch, config.lr, config.seed
        )
        .into(),
    );
    put("checkpoint", checkpoint.display().to_string().into());
    if let Some(r) = &report {
        put("eval_accuracy", r.accuracy.into());
        put("eval_mean_class_accuracy", r.mean_class_accuracy.into());
    }
    put(
        "exporter",
        "train export (burn-onnx 0.22 capture exporter, opset 18)".into(),
    );
    let card = ModelCard {
        name: name.to_string(),
        model: "model.onnx".into(),
        sha256: sha256.clone(),
        labels,
        input: edge_fer::model_card::InputSpec {
            name: INPUT_NAME.into(),
            ..input_spec(size)
        },
        normalise: normalisation(),
        output: OutputSpec {
            name: OUTPUT_NAME.into(),
            kind: OutputKind::Logits,
        },
        alignment,
        provenance,
        licence: "MIT OR Apache-2.0 (weights trained by edge-fer's train; check the licence of the training data)".into(),
    };
    let card_text = serde_json::to_string_pretty(&card).expect("a model card serialises");

    // Parity before anything is written: the runtime loads the pair from a scratch folder and
    // must reproduce burn's logits on real crops at batch 1 and batch 4.
    let scratch = tempdir_in(out)?;
    for (file, bytes) in [
        ("model.onnx", onnx.as_slice()),
        ("model.json", card_text.as_bytes()),
    ] {
        let path = scratch.join(file);
        std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
    }
    let parity = check_parity(&net, &scratch.join("model.json"), &config, &device);
    let _ = std::fs::remove_dir_all(&scratch);
    let (max_abs_diff, same_argmax) = parity?;
    // A NaN difference must fail too, hence "not finite or above".
    if max_abs_diff
        .iter()
        .any(|&(_, d)| !d.is_finite() || d > 1e-3)
        || !same_argmax
    {
        anyhow::bail!(
            "the exported model does not reproduce burn's logits (max differences {max_abs_diff:?}, same argmax: {same_argmax}); nothing written"
        );
    }

    for (file, bytes) in [
        ("model.onnx", onnx.as_slice()),
        ("model.json", card_text.as_bytes()),
    ] {
        let path = out.join(file);
        crate::durable::write_atomic(&path, bytes)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(ExportReport {
        checkpoint,
        card: out.join("model.json"),
        sha256,
        max_abs_diff,
        same_argmax,
    })
}

/// A fresh scratch folder inside `out` (created, with `out`, if needed).
fn tempdir_in(out: &Path) -> anyhow::Result<PathBuf> {
    let dir = out.join(format!(".export-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// The ONNX bytes of `net`'s inference path for `size` x `size` RGB input, batch axis symbolic.
///
/// # Errors
/// If burn-onnx cannot capture or lower the graph.
pub fn to_onnx(net: &ExpressionNet, size: u32, device: &Device) -> anyhow::Result<Vec<u8>> {
    let s = size as usize;
    let sample = Tensor::<4>::zeros([2, 3, s, s], device);
    let validation = Tensor::<4>::zeros([3, 3, s, s], device);
    let specs = [OnnxInput::new([
        AxisSpec::dynamic("batch"),
        AxisSpec::Static,
        AxisSpec::Static,
        AxisSpec::Static,
    ])];
    let model = OnnxExporter::new()
        .export_dynamic(net, sample, validation, &specs, |m: &ExpressionNet, x| {
            m.forward(x)
        })
        .map_err(|e| anyhow::anyhow!("ONNX export failed: {e}"))?;
    rename_io(model.as_bytes(), INPUT_NAME, OUTPUT_NAME)
}

/// Renames a one-input, one-output graph's boundary tensors everywhere they are referenced.
fn rename_io(bytes: &[u8], input: &str, output: &str) -> anyhow::Result<Vec<u8>> {
    let mut model = ModelProto::parse_from_bytes(bytes).context("reading the export")?;
    let graph = model.graph.mut_or_insert_default();
    let (Some(old_in), Some(old_out)) = (
        graph.input.first().map(|v| v.name.clone()),
        graph.output.first().map(|v| v.name.clone()),
    ) else {
        anyhow::bail!("the exported graph has no input or output");
    };
    let rename = |name: &mut String| {
        if *name == old_in {
            *name = input.to_string();
        } else if *name == old_out {
            *name = output.to_string();
        }
    };
    for v in graph.input.iter_mut().chain(graph.output.iter_mut()) {
        rename(&mut v.name);
    }
    for v in graph.value_info.iter_mut() {
        rename(&mut v.name);
    }
    for node in graph.node.iter_mut() {
        node.input.iter_mut().for_each(rename);
        node.output.iter_mut().for_each(rename);
    }
    model.producer_name = "edge-fer train".into();
    model.write_to_bytes().context("writing the export")
}

/// Clean test crops of the run (the first `n`).
fn parity_crops(config: &TrainingConfig, n: usize) -> anyhow::Result<Vec<CachedCrop>> {
    let (_, test) = datasets(config)?;
    (0..n.min(test.len()))
        .map(|i| test.face(i).map(|f| f.into_owned()))
        .collect()
}

/// Runs burn and the runtime's classifier on the same crops at batch 1 and 4; returns the
/// largest absolute logit difference per batch size and whether all argmaxes agree.
fn check_parity(
    net: &LaNet,
    card: &Path,
    config: &TrainingConfig,
    device: &Device,
) -> anyhow::Result<(Vec<(usize, f32)>, bool)> {
    let classifier = edge_fer::Classifier::load(card)?;
    let crops = parity_crops(config, 4)?;
    let mut diffs = Vec::new();
    let mut same = true;
    for batch in [1usize, 4] {
        let faces: Vec<&CachedCrop> = crops.iter().take(batch).collect();
        let n = faces.len();
        let size = config.model.input_size;
        let b = make_batch(
            &faces,
            vec![0; n],
            (0..n).collect(),
            &vec![Plan::identity(size); n],
            device,
        );
        let ours: Vec<f32> = net
            .expression()
            .forward(b.images.clone())
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        let input: Vec<f32> = b
            .images
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        let theirs = classifier.run_raw(&input, n)?;
        let k = ours.len() / n.max(1);
        let diff = ours
            .iter()
            .zip(&theirs)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        diffs.push((n, diff));
        for (a, b) in ours.chunks(k).zip(theirs.chunks(k)) {
            same &= argmax(a) == argmax(b);
        }
    }
    Ok((diffs, same))
}

/// Writes the clean test crops of a run as `OUT/<class>/<index>.png` (for `edge-fer --aligned`)
/// and returns how many.
///
/// # Errors
/// A message naming the file that could not be written or read.
pub fn write_test_crops(run: &RunDir, out: &Path) -> anyhow::Result<usize> {
    let config = run.read_config()?;
    let (_, test) = datasets(&config)?;
    for i in 0..test.len() {
        let dir = out.join(crate::faces::class_name(&config, test.labels[i]));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join(format!("{i:06}.png"));
        test.face(i)?
            .crop
            .save(&path)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(test.len())
}
