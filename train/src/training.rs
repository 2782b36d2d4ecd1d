//! One LA-Net training step, and the batches it consumes.
//!
//! A batch is built with the runtime's own preprocessing: each face is warped by
//! `edge_fer::align::align` to the model card's template and normalised by
//! `edge_fer::classify::normalise_into`, and its landmarks follow the same similarity transform
//! into heatmap targets. LA-Net's step computes CE + w_lm * Adaptive Wing + w_kl * KL(LDE
//! target) + w_c * expression-landmark contrastive loss and applies one Adam update to the
//! backbone, the LDE pair scorers (the KL term is what trains them) and the projection heads
//! together. The CE baseline's step runs the expression path only. Either adds the supervised
//! contrastive loss when its weight is not 0.

use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::prelude::*;
use burn::tensor::TensorData;
use edge_fer::align::Alignment;
use edge_fer::classify::normalise_into;
use edge_fer::model_card::{Channels, InputSpec, Layout, Normalise};
use image::RgbImage;

use crate::augment::{erase, Plan};
use crate::config::TrainingConfig;
use crate::landmarks::{heatmap_pixel, heatmap_targets, HeatmapConfig};
use crate::loss::{
    contrastive_direction, kl_batchmean, pseudo_labels, supervised_contrastive, AdaptiveWing,
};
use crate::model::lanet::LaNet;
use crate::model::lde::{host_values, knn, HistoryBank, Lde};
use crate::model::moco::{Heads, MomentumEncoder, Projection, Queue};

/// ImageNet mean and std of 0-1 RGB values (what torchvision ResNets are trained with); the
/// exported card declares them so the runtime normalises identically.
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// See [`IMAGENET_MEAN`].
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// The backbone, the LDE scorers and the contrastive projection heads, optimised together.
#[derive(Module, Debug)]
pub struct TrainModel {
    /// LA-Net.
    pub net: LaNet,
    /// LDE pair scorers.
    pub lde: Lde,
    /// Projection heads of the contrastive loss.
    pub heads: Heads,
    /// Projection head of the supervised contrastive loss, when it is on.
    pub scl: Option<Projection>,
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

/// A face warped to the model's input: the crop and its 68 landmarks in crop pixels. This is
/// what `train prepare` caches and what batches are cut from (the runtime's own aligned face is
/// `edge_fer::classify::AlignedFace`).
#[derive(Debug, Clone, PartialEq)]
pub struct CachedCrop {
    /// `S x S` RGB crop.
    pub crop: RgbImage,
    /// The 68 landmarks in the crop's pixels.
    pub landmarks: [[f32; 2]; 68],
}

/// Warps a face to the `size` x `size` crop of `alignment` with the runtime's own alignment
/// (`edge_fer::align::align`), carrying its landmarks along.
///
/// # Errors
/// The runtime's error if the landmarks are degenerate.
pub fn align_face(
    image: &RgbImage,
    landmarks: &[[f32; 2]; 68],
    alignment: &Alignment,
    size: u32,
) -> edge_fer::Result<CachedCrop> {
    let mut crop = RgbImage::new(size, size);
    let to_crop = edge_fer::align::align(
        image,
        &edge_fer::Landmarks(*landmarks),
        alignment,
        &mut crop,
    )?;
    Ok(CachedCrop {
        crop,
        landmarks: landmarks.map(|p| to_crop.apply(p)),
    })
}

/// The input the network is trained on and the exported card declares: `S x S` RGB, NCHW.
pub fn input_spec(size: u32) -> InputSpec {
    InputSpec {
        name: "images".into(),
        layout: Layout::Nchw,
        height: size,
        width: size,
        channels: Channels::Rgb,
    }
}

/// The normalisation the network is trained with (ImageNet mean/std).
pub fn normalisation() -> Normalise {
    Normalise::MeanStd {
        mean: IMAGENET_MEAN.to_vec(),
        std: IMAGENET_STD.to_vec(),
    }
}

/// Builds a batch from aligned faces, each augmented by its plan (use [`Plan::identity`] for
/// evaluation), normalised by the runtime's `normalise_into`, with heatmap targets from the
/// (augmented) landmarks.
///
/// # Panics
/// If `faces`, `labels`, `indices` and `plans` differ in length.
pub fn make_batch(
    faces: &[&CachedCrop],
    labels: Vec<usize>,
    indices: Vec<usize>,
    plans: &[Plan],
    device: &Device,
) -> Batch {
    assert!(
        faces.len() == labels.len() && faces.len() == indices.len() && faces.len() == plans.len()
    );
    let size = faces.first().map_or(32, |f| f.crop.width());
    let (spec, norm) = (input_spec(size), normalisation());
    let (s, hs) = (size as usize, size as usize / 4);
    let per = 3 * s * s;
    let mut pixels = vec![0.0f32; per * faces.len()];
    let (mut heat, mut weight) = (Vec::new(), Vec::new());
    for ((face, plan), out) in faces.iter().zip(plans).zip(pixels.chunks_mut(per)) {
        let (crop, landmarks) = if *plan == Plan::identity(size) {
            (face.crop.clone(), face.landmarks)
        } else {
            plan.apply(&face.crop, &face.landmarks)
        };
        normalise_into(&crop, &spec, &norm, out).expect("crops are built at the input size");
        if let Some(rect) = plan.erase {
            erase(out, size, rect);
        }
        let points: Vec<[i64; 2]> = landmarks
            .iter()
            .map(|&[x, y]| [heatmap_pixel(x, 4.0), heatmap_pixel(y, 4.0)])
            .collect();
        let (h, w) = heatmap_targets(&points, hs, hs, &HeatmapConfig::default());
        heat.extend(h);
        weight.extend(w);
    }
    let n = faces.len();
    Batch {
        images: Tensor::from_data(TensorData::new(pixels, [n, 3, s, s]), device),
        labels,
        indices,
        heatmaps: Tensor::from_data(TensorData::new(heat, [n, 68, hs, hs]), device),
        heat_weights: Tensor::from_data(TensorData::new(weight, [n, 68, hs, hs]), device),
    }
}

/// The loss terms of one step, for logging.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct StepLosses {
    /// Cross-entropy with the given labels.
    pub ce: f32,
    /// Adaptive Wing.
    pub landmark: f32,
    /// KL to the LDE targets.
    pub kl: f32,
    /// Expression-landmark contrastive loss (both directions).
    pub contrastive: f32,
    /// Supervised contrastive loss.
    pub scl: f32,
    /// The weighted total that was minimised.
    pub total: f32,
}

/// The contrastive loss's state beside the trained model: the key encoder and both queues.
#[derive(Debug)]
pub struct Contrast {
    /// Momentum copy of the backbone and heads.
    pub encoder: MomentumEncoder,
    /// Past expression keys.
    pub expr_queue: Queue,
    /// Past landmark keys.
    pub landmark_queue: Queue,
}

/// Mean cross-entropy of `logits` against class indices (burn's loss, on logits, unweighted).
///
/// # Shapes
/// `logits` `[N, C]` -> `[1]`.
pub fn cross_entropy(logits: Tensor<2>, labels: &[usize]) -> Tensor<1> {
    let device = logits.device();
    let targets: Tensor<1, Int> = Tensor::from_data(
        TensorData::new(
            labels.iter().map(|&l| l as i64).collect::<Vec<_>>(),
            [labels.len()],
        ),
        &device,
    );
    CrossEntropyLossConfig::new()
        .init(&device)
        .forward(logits, targets)
}

/// What a step returns.
pub struct StepResult {
    /// The updated model.
    pub model: TrainModel,
    /// The step's losses.
    pub losses: StepLosses,
    /// The batch's logits (detached; UERM reads its predictions from them, see
    /// [`probabilities`]).
    pub logits: Tensor<2>,
    /// Each batch row's K nearest neighbours (batch rows) in expression-feature space, and for
    /// LA-Net in landmark-feature space: what the label distributions were built from (for CE,
    /// what they would have been built from). For the purity diagnostics.
    pub neighbours: Vec<Vec<Vec<usize>>>,
}

/// The supervised contrastive loss of the batch (unweighted) and its weight, when the model has
/// its head and the config turns it on.
fn scl_term(
    model: &TrainModel,
    expr_feature: Tensor<2>,
    labels: &[usize],
    config: &TrainingConfig,
) -> Option<(Tensor<1>, f64)> {
    let (head, scl) = (model.scl.as_ref()?, config.scl.as_ref()?);
    let loss = supervised_contrastive(head.forward(expr_feature), labels, scl.temperature);
    Some((loss, scl.weight))
}

/// Softmax of `logits`, `[N, C]` row-major on the host.
pub fn probabilities(logits: Tensor<2>) -> Vec<f32> {
    host_values(&burn::tensor::activation::softmax(logits, 1))
}

/// The CE baseline's step: the expression path only, cross-entropy, plus the supervised
/// contrastive loss when the model has its head.
pub fn plain_step(
    model: TrainModel,
    optim: &mut ModuleOptimizer,
    batch: &Batch,
    config: &TrainingConfig,
    lr: f64,
) -> StepResult {
    let (feature, logits) = model
        .net
        .expression()
        .forward_features(batch.images.clone());
    let detached = logits.clone().detach();
    let feature_detached = feature.clone().detach();
    let ce = cross_entropy(logits, &batch.labels);
    let mut losses = StepLosses {
        ce: ce.clone().into_scalar::<f32>(),
        ..StepLosses::default()
    };
    let mut total = ce;
    if let Some((scl, weight)) = scl_term(&model, feature, &batch.labels, config) {
        losses.scl = scl.clone().into_scalar::<f32>();
        total = total + scl.mul_scalar(weight);
    }
    losses.total = total.clone().into_scalar::<f32>();
    let neighbours = vec![knn(&feature_detached, config.lde.k)];
    let grads = GradientsParams::from_grads(total.backward(), &model);
    StepResult {
        model: optim.step(lr, model, grads),
        losses,
        logits: detached,
        neighbours,
    }
}

/// One LA-Net optimisation step at learning rate `lr`, with the loss weights, LDE and
/// contrastive settings of `config`; updates the history bank with the step's targets and, when
/// `contrast` is given, the key encoder and queues.
pub fn train_step(
    model: TrainModel,
    optim: &mut ModuleOptimizer,
    bank: &mut HistoryBank,
    contrast: Option<&mut Contrast>,
    batch: &Batch,
    config: &TrainingConfig,
    lr: f64,
) -> StepResult {
    let device = batch.images.device();
    let (weights, moco) = (&config.loss, &config.contrastive);
    let out = model.net.forward(batch.images.clone());
    let detached = out.logits.clone().detach();
    let ce = cross_entropy(out.logits.clone(), &batch.labels);
    let landmark = AdaptiveWing::default().loss(
        out.heatmaps,
        batch.heatmaps.clone(),
        batch.heat_weights.clone(),
    );
    let lde = model.lde.forward(
        out.expr_feature.clone(),
        out.landmark_feature.clone(),
        out.logits.clone(),
        bank.gather(&batch.indices, &device),
        &config.lde,
    );
    bank.update(&batch.indices, &lde.targets);
    let classes = out.logits.dims()[1];
    let kl = kl_batchmean(lde.targets.clone(), out.logits);
    let mut total = ce.clone()
        + landmark.clone().mul_scalar(weights.landmark)
        + kl.clone().mul_scalar(weights.kl);
    let scalar = |t: &Tensor<1>| t.clone().into_scalar::<f32>();
    let mut scl_value = 0.0;
    if let Some((scl, weight)) = scl_term(&model, out.expr_feature.clone(), &batch.labels, config) {
        scl_value = scalar(&scl);
        total = total + scl.mul_scalar(weight);
    }
    let mut pushed = None;
    let mut contrastive_value = 0.0;
    if let Some(state) = contrast {
        // MoCo order: move the key encoder towards the current weights, then embed the keys.
        state
            .encoder
            .follow(&model.net, &model.heads, moco.key_momentum);
        let keys = state.encoder.keys(batch.images.clone());
        let labels = pseudo_labels(
            &host_values(&lde.targets),
            classes,
            &batch.indices,
            moco.confidence,
        );
        let q_expr = model.heads.expr.forward(out.expr_feature);
        let q_landmark = model.heads.landmark.forward(out.landmark_feature);
        let loss = contrastive_direction(
            q_expr,
            keys.landmark.clone(),
            state.landmark_queue.tensor(&device),
            &labels,
            &state.landmark_queue.labels,
            moco.temperature,
        ) + contrastive_direction(
            q_landmark,
            keys.expr.clone(),
            state.expr_queue.tensor(&device),
            &labels,
            &state.expr_queue.labels,
            moco.temperature,
        );
        contrastive_value = scalar(&loss);
        total = total + loss.mul_scalar(weights.contrastive);
        pushed = Some((state, keys, labels));
    }
    let losses = StepLosses {
        ce: scalar(&ce),
        landmark: scalar(&landmark),
        kl: scalar(&kl),
        contrastive: contrastive_value,
        scl: scl_value,
        total: scalar(&total),
    };
    let grads = GradientsParams::from_grads(total.backward(), &model);
    if let Some((state, keys, labels)) = pushed {
        state.expr_queue.push(&host_values(&keys.expr), &labels);
        state
            .landmark_queue
            .push(&host_values(&keys.landmark), &labels);
    }
    let [expr_neighbours, landmark_neighbours] = lde.neighbours;
    StepResult {
        model: optim.step(lr, model, grads),
        losses,
        logits: detached,
        neighbours: vec![expr_neighbours, landmark_neighbours],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ContrastiveConfig, SclConfig};
    use crate::data::synthetic::stream;
    use crate::model::lanet::LaNetConfig;
    use crate::model::lde::LdeConfig;

    #[test]
    fn steps_on_one_batch_reduce_every_loss() {
        let device = Device::flex().autodiff();
        device.seed(3);
        let alignment = Alignment::builtin();
        let faces: Vec<CachedCrop> = stream(11, 96, 7)
            .take(16)
            .map(|f| align_face(&f.image, &f.landmarks, &alignment, 64).unwrap())
            .collect();
        let labels: Vec<usize> = stream(11, 96, 7)
            .take(16)
            .map(|f| f.label.index())
            .collect();
        let refs: Vec<&CachedCrop> = faces.iter().collect();
        let batch = make_batch(
            &refs,
            labels.clone(),
            (0..16).collect(),
            &vec![Plan::identity(64); 16],
            &device,
        );
        assert_eq!(batch.images.dims(), [16, 3, 64, 64]);
        assert_eq!(batch.heatmaps.dims(), [16, 68, 16, 16]);

        let lanet = LaNetConfig::new()
            .with_width(8)
            .with_blocks(1)
            .with_fpn_channels(16);
        let net = lanet.init(&device);
        let heads = Heads::for_net(&lanet, 16, &device);
        let config = TrainingConfig::new()
            .with_contrastive(ContrastiveConfig::new().with_key_momentum(0.99))
            .with_lde(LdeConfig::new().with_k(4))
            .with_scl(Some(SclConfig::new().with_weight(0.5)));
        let mut contrast = Contrast {
            encoder: MomentumEncoder::new(&net, &heads, &lanet, &device),
            expr_queue: Queue::new(40, 16, 1),
            landmark_queue: Queue::new(40, 16, 2),
        };
        let mut model = TrainModel {
            net,
            lde: config.lde.init(64, 16, &device),
            heads,
            scl: Some(Projection::new(64, 64, 16, &device)),
        };
        let mut optim = burn::optim::AdamConfig::new().init();
        let mut bank = HistoryBank::from_labels(&batch.labels, 7);
        let mut history = Vec::new();
        for _ in 0..12 {
            let StepResult {
                model: next,
                losses,
                logits,
                neighbours,
            } = train_step(
                model,
                &mut optim,
                &mut bank,
                Some(&mut contrast),
                &batch,
                &config,
                1e-3,
            );
            model = next;
            assert_eq!(neighbours.len(), 2);
            assert!(neighbours
                .iter()
                .all(|space| space.len() == 16 && space.iter().all(|row| row.len() == 4)));
            assert!(losses.total.is_finite(), "{losses:?}");
            assert_eq!(probabilities(logits).len(), 16 * 7);
            history.push(losses);
        }
        let (first, last) = (history[0], history[history.len() - 1]);
        assert!(last.total < 0.8 * first.total, "{first:?} -> {last:?}");
        assert!(last.ce < first.ce, "{first:?} -> {last:?}");
        assert!(last.landmark < first.landmark, "{first:?} -> {last:?}");
        assert!(first.contrastive > 0.0, "{first:?}");
        assert!(last.scl < first.scl, "{first:?} -> {last:?}");
        assert!(
            last.contrastive < first.contrastive,
            "{first:?} -> {last:?}"
        );
        // 12 steps of 16 keys went through the 40-row queues: all rows hold keys now, the newest
        // at the rows before the head.
        assert_eq!(contrast.expr_queue.head, (12 * 16) % 40);
        assert!(contrast
            .expr_queue
            .labels
            .iter()
            .all(|&l| l != Queue::EMPTY));
    }

    #[test]
    fn cross_entropy_by_hand() {
        // Rows (0, ln 3) and (ln 2, ln 2): softmax (1/4, 3/4) and (1/2, 1/2). Labels 1 and 0:
        // the mean of -ln(3/4) and -ln(1/2).
        let device = Device::flex();
        let logits = Tensor::<2>::from_data(
            TensorData::new(vec![0.0f32, 3f32.ln(), 2f32.ln(), 2f32.ln()], [2, 2]),
            &device,
        );
        let got = cross_entropy(logits, &[1, 0]).into_scalar::<f32>();
        let want = -0.5 * ((0.75f32).ln() + (0.5f32).ln());
        assert!((got - want).abs() < 1e-6, "{got} vs {want}");
    }
}
