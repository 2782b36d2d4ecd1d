//! One LA-Net training step, and the batches it consumes.
//!
//! A batch is built with the runtime's own preprocessing: each face is warped by
//! `edge_fer::align::align` to the model card's template and normalised by
//! `edge_fer::classify::normalise_into`, and its landmarks follow the same similarity transform
//! into heatmap targets. The step computes CE + w_lm * Adaptive Wing + w_kl * KL(LDE target) and
//! applies one Adam update to the backbone and the LDE pair scorers together (the KL term is what
//! trains the scorers). The contrastive term joins when the momentum encoder and queues land.

use burn::module::Module;
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::prelude::*;
use burn::tensor::activation::log_softmax;
use burn::tensor::TensorData;
use edge_fer::classify::normalise_into;
use edge_fer::model_card::{Alignment, Channels, InputSpec, Layout, Normalise};
use image::RgbImage;

use crate::landmarks::{heatmap_pixel, heatmap_targets, HeatmapConfig};
use crate::loss::{kl_batchmean, AdaptiveWing};
use crate::model::lanet::LaNet;
use crate::model::lde::{HistoryBank, Lde, LdeConfig};

/// ImageNet mean and std of 0-1 RGB values (what torchvision ResNets are trained with); the
/// exported card declares them so the runtime normalises identically.
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// See [`IMAGENET_MEAN`].
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// The backbone and the LDE scorers, optimised together.
#[derive(Module, Debug)]
pub struct TrainModel {
    /// LA-Net.
    pub net: LaNet,
    /// LDE pair scorers.
    pub lde: Lde,
}

/// A training batch.
#[derive(Debug, Clone)]
pub struct Batch {
    /// Normalised aligned faces `[N, 3, S, S]`.
    pub images: Tensor<4>,
    /// Given (possibly noisy) labels.
    pub labels: Vec<usize>,
    /// Dataset indices (rows of the history bank).
    pub indices: Vec<usize>,
    /// Landmark heatmap targets `[N, L, S/4, S/4]`.
    pub heatmaps: Tensor<4>,
    /// Their weight maps, same shape.
    pub heat_weights: Tensor<4>,
}

/// One face for a batch: the frame, its 68 landmarks, its label and dataset index.
pub struct BatchItem<'a> {
    /// The picture the landmarks refer to.
    pub image: &'a RgbImage,
    /// 68 landmarks in its pixels.
    pub landmarks: &'a [[f32; 2]; 68],
    /// Given label.
    pub label: usize,
    /// Dataset index.
    pub index: usize,
}

/// Batch items for synthetic faces, with their position as dataset index.
pub fn synthetic_items(faces: &[crate::data::synthetic::SyntheticFace]) -> Vec<BatchItem<'_>> {
    faces
        .iter()
        .enumerate()
        .map(|(i, f)| BatchItem {
            image: &f.image,
            landmarks: &f.landmarks,
            label: f.label.index(),
            index: i,
        })
        .collect()
}

/// Builds a batch of `size` x `size` crops aligned to `alignment`.
///
/// # Errors
/// A message if a face cannot be aligned (degenerate landmarks).
pub fn make_batch(
    items: &[BatchItem<'_>],
    alignment: &Alignment,
    size: u32,
    device: &Device,
) -> Result<Batch, String> {
    let spec = InputSpec {
        name: "images".into(),
        layout: Layout::Nchw,
        height: size,
        width: size,
        channels: Channels::Rgb,
    };
    let norm = Normalise::MeanStd {
        mean: IMAGENET_MEAN.to_vec(),
        std: IMAGENET_STD.to_vec(),
    };
    let (s, hs) = (size as usize, size as usize / 4);
    let per = 3 * s * s;
    let mut pixels = vec![0.0f32; per * items.len()];
    let (mut heat, mut weight) = (Vec::new(), Vec::new());
    for (item, out) in items.iter().zip(pixels.chunks_mut(per)) {
        let mut crop = RgbImage::new(size, size);
        let landmarks = edge_fer::Landmarks(*item.landmarks);
        let to_crop = edge_fer::align::align(item.image, &landmarks, alignment, &mut crop)
            .map_err(|e| e.to_string())?;
        normalise_into(&crop, &spec, &norm, out).map_err(|e| e.to_string())?;
        let points: Vec<[i64; 2]> = item
            .landmarks
            .iter()
            .map(|&p| {
                let [x, y] = to_crop.apply(p);
                [heatmap_pixel(x, 4.0), heatmap_pixel(y, 4.0)]
            })
            .collect();
        let (h, w) = heatmap_targets(&points, hs, hs, &HeatmapConfig::default());
        heat.extend(h);
        weight.extend(w);
    }
    let n = items.len();
    Ok(Batch {
        images: Tensor::from_data(TensorData::new(pixels, [n, 3, s, s]), device),
        labels: items.iter().map(|i| i.label).collect(),
        indices: items.iter().map(|i| i.index).collect(),
        heatmaps: Tensor::from_data(TensorData::new(heat, [n, 68, hs, hs]), device),
        heat_weights: Tensor::from_data(TensorData::new(weight, [n, 68, hs, hs]), device),
    })
}

/// Loss weights and LDE settings of a step.
#[derive(Debug, Clone)]
pub struct StepConfig {
    /// Weight of the landmark (Adaptive Wing) loss.
    pub landmark_weight: f64,
    /// Weight of the KL loss to the LDE targets.
    pub kl_weight: f64,
    /// LDE settings.
    pub lde: LdeConfig,
    /// Adaptive Wing parameters.
    pub adaptive_wing: AdaptiveWing,
    /// Learning rate.
    pub lr: f64,
}

/// The loss terms of one step, for logging.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepLosses {
    /// Cross-entropy with the given labels.
    pub ce: f32,
    /// Adaptive Wing.
    pub landmark: f32,
    /// KL to the LDE targets.
    pub kl: f32,
    /// The weighted total that was minimised.
    pub total: f32,
}

/// Mean cross-entropy of `logits` against class indices.
///
/// # Shapes
/// `logits` `[N, C]` -> `[1]`.
pub fn cross_entropy(logits: Tensor<2>, labels: &[usize]) -> Tensor<1> {
    let [n, c] = logits.dims();
    let mut one_hot = vec![0.0f32; n * c];
    for (i, &l) in labels.iter().enumerate() {
        one_hot[i * c + l] = 1.0;
    }
    let one_hot: Tensor<2> = Tensor::from_data(TensorData::new(one_hot, [n, c]), &logits.device());
    (one_hot * log_softmax(logits, 1))
        .sum()
        .neg()
        .div_scalar(n as f64)
}

/// One optimisation step; updates the history bank with the step's targets.
pub fn train_step(
    model: TrainModel,
    optim: &mut ModuleOptimizer,
    bank: &mut HistoryBank,
    batch: &Batch,
    config: &StepConfig,
) -> (TrainModel, StepLosses) {
    let device = batch.images.device();
    let out = model.net.forward(batch.images.clone());
    let ce = cross_entropy(out.logits.clone(), &batch.labels);
    let landmark = config.adaptive_wing.loss(
        out.heatmaps,
        batch.heatmaps.clone(),
        batch.heat_weights.clone(),
    );
    let lde = model.lde.forward(
        out.expr_feature,
        out.landmark_feature,
        out.logits.clone(),
        bank.gather(&batch.indices, &device),
        &config.lde,
    );
    bank.update(&batch.indices, &lde.targets);
    let kl = kl_batchmean(lde.targets, out.logits);
    let total = ce.clone()
        + landmark.clone().mul_scalar(config.landmark_weight)
        + kl.clone().mul_scalar(config.kl_weight);
    let scalar = |t: &Tensor<1>| t.clone().into_scalar::<f32>();
    let losses = StepLosses {
        ce: scalar(&ce),
        landmark: scalar(&landmark),
        kl: scalar(&kl),
        total: scalar(&total),
    };
    let grads = GradientsParams::from_grads(total.backward(), &model);
    (optim.step(config.lr, model, grads), losses)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::synthetic::stream;
    use crate::model::lanet::LaNetConfig;

    #[test]
    fn steps_on_one_batch_reduce_the_loss() {
        let device = Device::flex().autodiff();
        device.seed(3);
        let faces: Vec<_> = stream(11, 96, 7).take(16).collect();
        let items = synthetic_items(&faces);
        let card = edge_fer::ModelCard::from_json(
            edge_fer::classify::BUILTIN_CARD,
            std::path::Path::new("builtin"),
        )
        .unwrap();
        let batch = make_batch(&items, &card.alignment, 64, &device).unwrap();
        assert_eq!(batch.images.dims(), [16, 3, 64, 64]);
        assert_eq!(batch.heatmaps.dims(), [16, 68, 16, 16]);

        let net = LaNetConfig::new()
            .with_width(8)
            .with_blocks(1)
            .with_fpn_channels(16)
            .init(&device);
        let config = StepConfig {
            landmark_weight: 1.0,
            kl_weight: 1.0,
            lde: LdeConfig::new(64, 16).with_k(4),
            adaptive_wing: AdaptiveWing::default(),
            lr: 1e-3,
        };
        let mut model = TrainModel {
            net,
            lde: config.lde.init(&device),
        };
        let mut optim = burn::optim::AdamConfig::new().init();
        let mut bank = HistoryBank::from_labels(&batch.labels, 7);
        let mut history = Vec::new();
        for _ in 0..12 {
            let (next, losses) = train_step(model, &mut optim, &mut bank, &batch, &config);
            model = next;
            assert!(
                losses.total.is_finite() && losses.ce.is_finite() && losses.kl.is_finite(),
                "{losses:?}"
            );
            history.push(losses);
        }
        let (first, last) = (history[0], history[history.len() - 1]);
        assert!(last.total < 0.8 * first.total, "{first:?} -> {last:?}");
        assert!(last.ce < first.ce, "{first:?} -> {last:?}");
        assert!(last.landmark < first.landmark, "{first:?} -> {last:?}");
    }
}
