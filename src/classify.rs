//! Expression classification of aligned faces with tract.
//!
//! [`Classifier`] loads an ONNX model and its [`ModelCard`], checks the file's sha256 and that the
//! graph's input/output names and shapes agree with the card (with a symbolic batch axis `N`),
//! then optimises it once for a single image, the plan a frame's faces run on one after the
//! other. Pixels become input values through [`normalise_into`], which training uses too.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use image::RgbImage;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::{Cost, SimplePlan};
use tract_onnx::tract_core::prelude::multithread::Executor;
use tract_onnx::tract_hir::infer::GenericFactoid;
use tract_onnx::tract_hir::internal::DimLike;

use crate::checksum::sha256_hex;
use crate::error::{Error, Result};
use crate::model_card::{Channels, InputSpec, Layout, ModelCard, Normalise, OutputKind};

/// The shipped default model's card (FER2013 mini-Xception), compiled into the binary so that
/// `edge-fer` works from any directory with no model files installed.
pub const BUILTIN_CARD: &str = include_str!("../models/fer2013-mini-xception/model.json");
/// The shipped default model's ONNX bytes.
pub static BUILTIN_ONNX: &[u8] = include_bytes!("../models/fer2013-mini-xception/model.onnx");
/// The name the built-in model's files go by in messages.
pub const BUILTIN_PATH: &str = "<built-in>/fer2013-mini-xception/model.json";

/// A face warped to the model's input size and template, RGB.
#[derive(Debug, Clone, PartialEq)]
pub struct AlignedFace(pub RgbImage);

/// A probability vector over the card's labels, in the card's order.
#[derive(Debug, Clone, PartialEq)]
pub struct Probs(pub Vec<f32>);

/// Index of the largest value: the first of equal ones, and 0 for an empty slice. NaN never wins.
/// The one argmax of the workspace (scores, probabilities, heatmaps).
pub fn argmax(values: &[f32]) -> usize {
    values
        .iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |best, (i, &v)| {
            if v > best.1 {
                (i, v)
            } else {
                best
            }
        })
        .0
}

impl Probs {
    /// Index of the most probable class.
    pub fn argmax(&self) -> usize {
        argmax(&self.0)
    }

    /// Shannon entropy in nats, `-sum p ln p`: 0 for a certain prediction, `ln(classes)` for a
    /// uniform one. A high value flags a face the model is unsure about.
    pub fn entropy(&self) -> f32 {
        -self
            .0
            .iter()
            .filter(|p| **p > 0.0)
            .map(|p| p * p.ln())
            .sum::<f32>()
    }
}

/// Softmax of `logits` in place, shifted by the maximum for numerical stability.
pub fn softmax_in_place(logits: &mut [f32]) {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for v in logits.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    for v in logits.iter_mut() {
        *v /= sum;
    }
}

/// Writes one aligned face into `out` as the model's input values, following the card.
///
/// Grey input takes the luma `0.299 R + 0.587 G + 0.114 B`; then each value `x` in 0-255 becomes
/// `(x / 255 - mean[c]) / std[c]` or `x * scale + offset`. `out` holds one image in the card's
/// layout: `C x H x W` for NCHW, `H x W x C` for NHWC.
///
/// # Errors
/// [`Error::Invalid`] if the face is not the card's input size or `out` has the wrong length.
///
/// # Example
/// ```
/// use edge_fer::classify::normalise_into;
/// use edge_fer::model_card::{Channels, InputSpec, Layout, Normalise};
/// let spec = InputSpec { name: "x".into(), layout: Layout::Nchw, height: 1, width: 2, channels: Channels::Rgb };
/// let face = image::RgbImage::from_raw(2, 1, vec![0, 51, 255, 255, 0, 102]).unwrap();
/// let norm = Normalise::ScaleOffset { scale: 0.5, offset: -1.0 };
/// let mut out = [0.0f32; 6];
/// normalise_into(&face, &spec, &norm, &mut out).unwrap();
/// // Planes R, G, B, each two pixels wide; x * 0.5 - 1.
/// assert_eq!(out, [-1.0, 126.5, 24.5, -1.0, 126.5, 50.0]);
/// ```
pub fn normalise_into(
    face: &RgbImage,
    spec: &InputSpec,
    norm: &Normalise,
    out: &mut [f32],
) -> Result<()> {
    let (w, h) = face.dimensions();
    if (w, h) != (spec.width, spec.height) {
        return Err(Error::Invalid(format!(
            "aligned face is {w}x{h}, the model takes {}x{}",
            spec.width, spec.height
        )));
    }
    let c = spec.channels.count();
    let plane = (w * h) as usize;
    if out.len() != plane * c {
        return Err(Error::Invalid(format!(
            "input buffer holds {} values, one {w}x{h}x{c} image needs {}",
            out.len(),
            plane * c
        )));
    }
    let map = |x: f32, ch: usize| match norm {
        Normalise::MeanStd { mean, std } => (x / 255.0 - mean[ch]) / std[ch],
        Normalise::ScaleOffset { scale, offset } => x * scale + offset,
    };
    for (i, px) in face.pixels().enumerate() {
        let [r, g, b] = px.0.map(f32::from);
        match spec.channels {
            Channels::Gray => out[i] = map(0.299 * r + 0.587 * g + 0.114 * b, 0),
            Channels::Rgb => {
                for (ch, x) in [r, g, b].into_iter().enumerate() {
                    let at = match spec.layout {
                        Layout::Nchw => ch * plane + i,
                        Layout::Nhwc => i * 3 + ch,
                    };
                    out[at] = map(x, ch);
                }
            }
        }
    }
    Ok(())
}

/// An ONNX expression model, validated against its card and optimised once.
#[derive(Debug, Clone)]
pub struct Classifier {
    card: ModelCard,
    card_path: PathBuf,
    /// The model planned for one image. tract picks kernels and packs weights for known shapes
    /// only: this plan runs a face in 1.9 ms where the symbolic-batch plan took 10 ms, and it
    /// also beats fixed batches of 2 and 4 per face (BENCHMARKS.md, "Classifier alone"), so a
    /// frame's faces run one after the other on it.
    plan: Arc<TypedRunnableModel>,
    /// Multiply-adds of one image, from tract's cost model of the batch-1 graph.
    multiply_adds: u64,
    threads: usize,
}

/// From this many multiply-adds per image more threads pay for themselves: a ResNet-18 (1.8 G) ran
/// 1.6-1.9x faster on two threads than on one, the built-in mini-Xception (10.5 M) 10 % slower,
/// its matrix products too small to share out (BENCHMARKS.md, "Classifier threads").
pub const THREADS_FROM_MULTIPLY_ADDS: u64 = 500_000_000;

impl Classifier {
    /// Loads the model described by the card at `card_path` (the ONNX file sits beside it).
    ///
    /// # Errors
    /// [`Error::Io`]/[`Error::Card`] for the card, [`Error::MissingModel`] if the ONNX file is
    /// absent, [`Error::Checksum`] if it is not the file the card describes,
    /// [`Error::ModelLoad`] if tract cannot parse or optimise it, [`Error::CardMismatch`] if its
    /// inputs or outputs disagree with the card.
    pub fn load(card_path: &Path) -> Result<Self> {
        let card = ModelCard::load(card_path)?;
        let model_path = card.model_path(card_path);
        if !model_path.is_file() {
            return Err(Error::MissingModel {
                what: "ONNX model",
                path: model_path,
                hint: format!("the card {} names it in `model`", card_path.display()),
            });
        }
        let bytes = std::fs::read(&model_path).map_err(|e| Error::io(&model_path, e))?;
        Self::from_parts(card, card_path, &model_path, &bytes)
    }

    /// The default model compiled into the binary.
    ///
    /// # Errors
    /// As [`Classifier::load`]; only a broken build can fail here.
    pub fn builtin() -> Result<Self> {
        let card_path = Path::new(BUILTIN_PATH);
        let card = ModelCard::from_json(BUILTIN_CARD, card_path)?;
        let model_path = card.model_path(card_path);
        Self::from_parts(card, card_path, &model_path, BUILTIN_ONNX)
    }

    /// Validates and prepares a model from a parsed card and the ONNX file's bytes; the paths are
    /// only used in messages.
    ///
    /// # Errors
    /// As [`Classifier::load`].
    pub fn from_parts(
        card: ModelCard,
        card_path: &Path,
        model_path: &Path,
        onnx: &[u8],
    ) -> Result<Self> {
        let actual = sha256_hex(onnx);
        if actual != card.sha256.to_ascii_lowercase() {
            return Err(Error::Checksum {
                path: model_path.to_path_buf(),
                expected: card.sha256.clone(),
                actual,
            });
        }
        let load_err = |e: TractError| Error::ModelLoad {
            path: model_path.to_path_buf(),
            reason: format!("{e:#}"),
        };
        let mismatch = |field: &str, card_value: String, model_value: String| Error::CardMismatch {
            model: model_path.to_path_buf(),
            card: card_path.to_path_buf(),
            field: field.to_string(),
            card_value,
            model_value,
        };

        let mut model = tract_onnx::onnx()
            .model_for_read(&mut &onnx[..])
            .map_err(load_err)?;

        let inputs = model.input_outlets().map_err(load_err)?.to_vec();
        if inputs.len() != 1 {
            return Err(mismatch(
                "number of inputs",
                "1".into(),
                inputs.len().to_string(),
            ));
        }
        let input_name = model.node(inputs[0].node).name.clone();
        if input_name != card.input.name {
            return Err(mismatch("input name", card.input.name.clone(), input_name));
        }
        let expected = input_dims(&card.input);
        let declared: Vec<Option<usize>> = model
            .input_fact(0)
            .map_err(load_err)?
            .shape
            .dims()
            .map(|d| match d {
                GenericFactoid::Only(d) => d.to_usize().ok(),
                GenericFactoid::Any => None,
            })
            .collect();
        let disagrees = !declared.is_empty()
            && (declared.len() != 4
                || declared
                    .iter()
                    .zip(&expected)
                    .skip(1)
                    .any(|(d, e)| d.is_some_and(|d| d != *e)));
        if disagrees {
            let shown: Vec<String> = declared
                .iter()
                .map(|d| d.map_or("?".to_string(), |d| d.to_string()))
                .collect();
            return Err(mismatch(
                "input shape",
                format!(
                    "[N, {}, {}, {}] ({:?})",
                    expected[1], expected[2], expected[3], card.input.layout
                ),
                format!("[{}]", shown.join(", ")),
            ));
        }

        let outputs = model.output_outlets().map_err(load_err)?.to_vec();
        if outputs.len() != 1 {
            return Err(mismatch(
                "number of outputs",
                "1".into(),
                outputs.len().to_string(),
            ));
        }
        let output_name = model
            .outlet_label(outputs[0])
            .map(str::to_string)
            .unwrap_or_else(|| model.node(outputs[0].node).name.clone());
        if output_name != card.output.name {
            return Err(mismatch(
                "output name",
                card.output.name.clone(),
                output_name,
            ));
        }

        let batch = model.sym("N");
        let shape = [
            batch.to_dim(),
            expected[1].to_dim(),
            expected[2].to_dim(),
            expected[3].to_dim(),
        ];
        model
            .set_input_fact(0, InferenceFact::dt_shape(f32::datum_type(), shape))
            .map_err(load_err)?;
        let typed = model
            .into_typed()
            .and_then(|m| m.into_decluttered())
            .map_err(load_err)?;
        let out_shape = typed.output_fact(0).map_err(load_err)?.shape.to_tvec();
        let classes = out_shape.last().and_then(|d| d.to_usize().ok());
        if out_shape.len() != 2 || classes != Some(card.labels.len()) {
            return Err(mismatch(
                "output shape",
                format!("[N, {}] (one value per label)", card.labels.len()),
                format!("{out_shape:?}"),
            ));
        }
        let one = HashMap::from([(batch, 1.to_dim())]);
        let single = typed.set_symbols(&one).map_err(load_err)?;
        let multiply_adds = multiply_adds(&single).map_err(load_err)?;
        let threads = default_threads(multiply_adds);
        let plan = single
            .into_optimized()
            .and_then(|m| m.into_runnable_with_options(&run_options(threads)))
            .map_err(load_err)?;
        Ok(Classifier {
            card,
            card_path: card_path.to_path_buf(),
            plan,
            multiply_adds,
            threads,
        })
    }

    /// Runs each face on `threads` threads (tract's matrix products on a pool of their own), or,
    /// with `None`, on all cores when the model is large enough for that to pay
    /// ([`THREADS_FROM_MULTIPLY_ADDS`]) and on one otherwise. The optimised plan is kept; only its
    /// executor changes.
    ///
    /// # Errors
    /// [`Error::Invalid`] for 0 threads or if the thread pool cannot be started.
    pub fn with_threads(mut self, threads: Option<usize>) -> Result<Self> {
        if threads == Some(0) {
            return Err(Error::Invalid(
                "the classifier needs at least 1 thread".into(),
            ));
        }
        let threads = threads.unwrap_or_else(|| default_threads(self.multiply_adds));
        // Loading already planned for the default; only another count needs a new plan.
        if threads != self.threads {
            self.plan =
                SimplePlan::new_with_options(self.plan.model().clone(), &run_options(threads))
                    .map_err(|e| Error::Invalid(format!("classifier threads: {e:#}")))?;
            self.threads = threads;
        }
        Ok(self)
    }

    /// How many threads each face runs on.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Multiply-adds of one image (tract's cost model).
    pub fn multiply_adds(&self) -> u64 {
        self.multiply_adds
    }

    /// The model's card.
    pub fn card(&self) -> &ModelCard {
        &self.card
    }

    /// Where the card was read from (or [`BUILTIN_PATH`]).
    pub fn card_path(&self) -> &Path {
        &self.card_path
    }

    /// A blank crop of the model's input size, for [`crate::align::align`] to fill.
    pub fn blank_crop(&self) -> RgbImage {
        RgbImage::new(self.card.input.width, self.card.input.height)
    }

    /// Classifies a frame's faces in one batched run.
    ///
    /// # Errors
    /// [`Error::Invalid`] if a face is not the model's input size; [`Error::Inference`] if tract
    /// fails.
    pub fn classify(&self, faces: &[AlignedFace]) -> Result<Vec<Probs>> {
        if faces.is_empty() {
            return Ok(Vec::new());
        }
        let per = input_dims(&self.card.input)[1..].iter().product::<usize>();
        let mut input = vec![0.0f32; per * faces.len()];
        for (face, chunk) in faces.iter().zip(input.chunks_mut(per)) {
            normalise_into(&face.0, &self.card.input, &self.card.normalise, chunk)?;
        }
        let values = self.run_raw(&input, faces.len())?;
        let k = self.card.labels.len();
        Ok(values
            .chunks(k)
            .map(|row| {
                let mut row = row.to_vec();
                if self.card.output.kind == OutputKind::Logits {
                    softmax_in_place(&mut row);
                }
                Probs(row)
            })
            .collect())
    }

    /// Runs the model on an already normalised batch of `batch` images (the card's layout) and
    /// returns the raw output, `batch x labels` values, row-major.
    ///
    /// # Errors
    /// [`Error::Invalid`] if `input` is not `batch` images long; [`Error::Inference`] if tract
    /// fails.
    pub fn run_raw(&self, input: &[f32], batch: usize) -> Result<Vec<f32>> {
        let mut shape = input_dims(&self.card.input);
        shape[0] = batch;
        if input.len() != shape.iter().product::<usize>() {
            return Err(Error::Invalid(format!(
                "input has {} values, a batch of {batch} needs {}",
                input.len(),
                shape.iter().product::<usize>()
            )));
        }
        let infer = |e: TractError| Error::Inference(format!("{e:#}"));
        shape[0] = 1;
        let mut values = Vec::with_capacity(batch * self.card.labels.len());
        for image in input.chunks(input.len() / batch.max(1)) {
            let tensor = Tensor::from_shape(&shape, image).map_err(infer)?;
            let out = self.plan.run(tvec!(tensor.into())).map_err(infer)?;
            let view = out[0].to_plain_array_view::<f32>().map_err(infer)?;
            values.extend(view.iter().copied());
        }
        Ok(values)
    }
}

/// All cores for a model large enough for more threads to pay ([`THREADS_FROM_MULTIPLY_ADDS`]),
/// one otherwise.
fn default_threads(multiply_adds: u64) -> usize {
    if multiply_adds >= THREADS_FROM_MULTIPLY_ADDS {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        1
    }
}

/// A plan's options for `threads` threads: a pool of its own beyond one.
fn run_options(threads: usize) -> RunOptions {
    RunOptions {
        executor: (threads > 1).then(|| Executor::multithread_with_name(threads, "classify")),
        ..RunOptions::default()
    }
}

/// The multiply-adds of one run of `model` (every node's cost as tract counts it).
fn multiply_adds(model: &TypedModel) -> TractResult<u64> {
    let mut total = 0u64;
    for node in model.nodes() {
        let inputs = model.node_input_facts(node.id)?;
        for (cost, count) in node.op.cost(&inputs)? {
            if matches!(cost, Cost::FMA(_)) {
                total += count.to_usize().unwrap_or(0) as u64;
            }
        }
    }
    Ok(total)
}

/// The input tensor's dimensions for one image, batch first (set to 1).
fn input_dims(spec: &InputSpec) -> [usize; 4] {
    let (h, w, c) = (
        spec.height as usize,
        spec.width as usize,
        spec.channels.count(),
    );
    match spec.layout {
        Layout::Nchw => [1, c, h, w],
        Layout::Nhwc => [1, h, w, c],
    }
}

impl crate::align::Alignment {
    /// The built-in model's alignment template: what the runtime aligns faces to by default, and
    /// what training aligns its crops to unless a prepared cache says otherwise.
    pub fn builtin() -> Self {
        ModelCard::from_json(BUILTIN_CARD, Path::new(BUILTIN_PATH))
            .expect("the built-in card is checked by the tests")
            .alignment
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_matches_hand_values() {
        let mut v = [0.0f32, (2.0f32).ln()];
        softmax_in_place(&mut v);
        assert!((v[0] - 1.0 / 3.0).abs() < 1e-6 && (v[1] - 2.0 / 3.0).abs() < 1e-6);
    }

    #[test]
    fn entropy_of_uniform_is_ln_k() {
        let p = Probs(vec![0.25; 4]);
        assert!((p.entropy() - 4f32.ln()).abs() < 1e-6);
        assert_eq!(Probs(vec![0.0, 1.0, 0.0]).entropy(), 0.0);
        assert_eq!(Probs(vec![0.1, 0.7, 0.2]).argmax(), 1);
    }

    #[test]
    fn grey_nhwc_uses_bt601_luma_and_scale_offset() -> Result<()> {
        let spec = InputSpec {
            name: "x".into(),
            layout: Layout::Nhwc,
            height: 1,
            width: 2,
            channels: Channels::Gray,
        };
        let face = RgbImage::from_raw(2, 1, vec![255, 0, 0, 100, 100, 100]).unwrap();
        let norm = Normalise::ScaleOffset {
            scale: 2.0 / 255.0,
            offset: -1.0,
        };
        let mut out = [0.0f32; 2];
        normalise_into(&face, &spec, &norm, &mut out)?;
        // Pure red: luma 0.299 * 255 = 76.245 -> 76.245 * 2 / 255 - 1 = -0.402.
        assert!((out[0] - (-0.402)).abs() < 1e-5, "{out:?}");
        // Grey 100 -> 100 * 2 / 255 - 1.
        assert!((out[1] - (200.0 / 255.0 - 1.0)).abs() < 1e-5, "{out:?}");
        Ok(())
    }

    #[test]
    fn rgb_mean_std_nhwc_interleaves() -> Result<()> {
        let spec = InputSpec {
            name: "x".into(),
            layout: Layout::Nhwc,
            height: 1,
            width: 1,
            channels: Channels::Rgb,
        };
        let face = RgbImage::from_raw(1, 1, vec![255, 0, 51]).unwrap();
        let norm = Normalise::MeanStd {
            mean: vec![0.5, 0.5, 0.0],
            std: vec![0.5, 0.25, 0.2],
        };
        let mut out = [0.0f32; 3];
        normalise_into(&face, &spec, &norm, &mut out)?;
        // (1 - .5) / .5 = 1; (0 - .5) / .25 = -2; (0.2 - 0) / 0.2 = 1.
        for (o, e) in out.iter().zip([1.0, -2.0, 1.0]) {
            assert!((o - e).abs() < 1e-6, "{out:?}");
        }
        Ok(())
    }

    #[test]
    fn wrong_crop_size_is_an_error_not_a_panic() {
        let spec = InputSpec {
            name: "x".into(),
            layout: Layout::Nchw,
            height: 2,
            width: 2,
            channels: Channels::Rgb,
        };
        let norm = Normalise::ScaleOffset {
            scale: 1.0,
            offset: 0.0,
        };
        let mut out = [0.0f32; 12];
        assert!(normalise_into(&RgbImage::new(3, 2), &spec, &norm, &mut out).is_err());
    }

    #[test]
    fn builtin_model_loads_and_batches() -> Result<()> {
        let c = Classifier::builtin()?;
        let faces = vec![AlignedFace(c.blank_crop()); 3];
        let probs = c.classify(&faces)?;
        assert_eq!(probs.len(), 3);
        for p in &probs {
            assert_eq!(p.0.len(), 7);
            assert!((p.0.iter().sum::<f32>() - 1.0).abs() < 1e-4);
            assert_eq!(p, &probs[0]);
        }
        Ok(())
    }

    #[test]
    fn threads_follow_the_model_size_and_give_the_same_answer() -> Result<()> {
        let one = Classifier::builtin()?;
        // The built-in model is far below the size where a second thread pays.
        assert!(one.multiply_adds() > 1_000_000, "{}", one.multiply_adds());
        assert!(one.multiply_adds() < THREADS_FROM_MULTIPLY_ADDS);
        assert_eq!(one.threads(), 1);
        let two = one.clone().with_threads(Some(2))?;
        assert_eq!(two.threads(), 2);
        // A face-like gradient, so every channel carries something.
        let crop = RgbImage::from_fn(64, 64, |x, y| {
            image::Rgb([(x * 4) as u8, (y * 4) as u8, 90])
        });
        let faces = [AlignedFace(crop)];
        let (a, b) = (one.classify(&faces)?, two.classify(&faces)?);
        for (p, q) in a[0].0.iter().zip(&b[0].0) {
            assert!((p - q).abs() < 1e-5, "{a:?} vs {b:?}");
        }
        assert!(matches!(one.with_threads(Some(0)), Err(Error::Invalid(_))));
        Ok(())
    }
}
