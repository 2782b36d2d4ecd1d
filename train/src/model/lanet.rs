//! LA-Net (Wu & Cui, ICCV 2023): a shared ResNet stem and first stage, then an expression branch
//! (stages 2-4, global average pooling, a linear classifier) and a landmark branch (its own copy
//! of stages 2-4, initialised from the same weights, and an FPN-style top-down path to one heatmap
//! per landmark at 1/4 resolution). Inference uses only the expression path.

use burn::module::Param;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};

use super::arm::{weighted_pool, Arm, ArmConfig};
use super::resnet::{copy_values, Stage, Stem, EXPANSION};

/// LA-Net's shape.
#[derive(Config, Debug)]
pub struct LaNetConfig {
    /// Expression classes (7, or 8 with contempt).
    #[config(default = 7)]
    pub classes: usize,
    /// Channels after the stem; stages use width, 2x, 4x, 8x. 64 is ResNet-18.
    #[config(default = 64)]
    pub width: usize,
    /// Basic blocks per stage (2 is ResNet-18).
    #[config(default = 2)]
    pub blocks: usize,
    /// Landmark heatmaps predicted (68 for dlib's points).
    #[config(default = 68)]
    pub landmarks: usize,
    /// Channels of the FPN maps; the landmark feature is the pooled finest map.
    #[config(default = 64)]
    pub fpn_channels: usize,
    /// ResNet-50's bottleneck blocks, 3, 4, 6, 3 per stage (`blocks` is then ignored).
    #[config(default = false)]
    pub resnet50: bool,
    /// ARM (de-albino pooling and affinity sharing) over a last feature map of this side
    /// (input side / 32); 0 keeps global average pooling.
    #[config(default = 0)]
    pub arm_map: usize,
    /// ARM's kernel side (0: half the map, rounded up).
    #[config(default = 0)]
    pub arm_kernel: usize,
    /// ARM's kernel stride.
    #[config(default = 1)]
    pub arm_stride: usize,
}

impl LaNetConfig {
    /// A freshly initialised LA-Net. The landmark branch's stages 2-4 start as an exact copy of
    /// the expression branch's, with their own parameters.
    pub fn init(&self, device: &Device) -> LaNet {
        let w = self.width;
        let channels = self.stage_channels();
        // Stage i (0 = layer1) takes the previous stage's channels (the stem's for layer1).
        let stage = |i: usize| {
            let input = if i == 0 { w } else { channels[i - 1] };
            let stride = if i == 0 { 1 } else { 2 };
            if self.resnet50 {
                Stage::bottleneck(input, w << i, [3, 4, 6, 3][i], stride, device)
            } else {
                Stage::new(input, w << i, self.blocks, stride, device)
            }
        };
        let expr: Vec<Stage> = (1..4).map(stage).collect();
        let landmark = (1..4)
            .zip(&expr)
            .map(|(i, e)| copy_values(e, stage(i)))
            .collect();
        let f = self.fpn_channels;
        let lateral = channels
            .iter()
            .map(|&c| Conv2dConfig::new([c, f], [1, 1]).init(device))
            .collect();
        LaNet {
            stem: Stem::new(w, device),
            layer1: stage(0),
            expr,
            classifier: LinearConfig::new(self.feature_dim(), self.classes).init(device),
            landmark,
            lateral,
            heatmap: Conv2dConfig::new([f, self.landmarks], [1, 1]).init(device),
            arm: self.arm().map(|arm| arm.init(device)),
        }
    }

    /// ARM's config, when it is on.
    pub fn arm(&self) -> Option<ArmConfig> {
        (self.arm_map > 0).then(|| {
            ArmConfig::new(self.arm_map, self.feature_dim())
                .with_kernel(self.arm_kernel)
                .with_stride(self.arm_stride)
        })
    }
}

impl LaNetConfig {
    /// Output channels of layer1-4.
    pub fn stage_channels(&self) -> [usize; 4] {
        let e = if self.resnet50 { EXPANSION } else { 1 };
        [0, 1, 2, 3].map(|i| (self.width << i) * e)
    }

    /// Width of the pooled expression feature (512 for ResNet-18, 2048 for ResNet-50).
    pub fn feature_dim(&self) -> usize {
        self.stage_channels()[3]
    }
}

/// LA-Net's layers.
#[derive(Module, Debug)]
pub struct LaNet {
    stem: Stem,
    layer1: Stage,
    expr: Vec<Stage>,
    classifier: Linear,
    landmark: Vec<Stage>,
    lateral: Vec<Conv2d>,
    heatmap: Conv2d,
    arm: Option<Arm>,
}

/// The inference path alone (stem, layer1, expression layers 2-4, pooling, classifier): what is
/// exported to ONNX, with none of the landmark branch's weights.
#[derive(Module, Debug)]
pub struct ExpressionNet {
    stem: Stem,
    layer1: Stage,
    expr: Vec<Stage>,
    classifier: Linear,
    /// ARM's de-albino position weights `[map, map]`, when the net was trained with ARM (its
    /// affinity shift is folded into the classifier's bias).
    pool_weights: Option<Param<Tensor<2>>>,
}

impl ExpressionNet {
    /// # Shapes
    /// `[N, 3, H, W]` -> logits `[N, C]`.
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        let x = self.layer1.forward(self.stem.forward(images));
        let x = self.expr.iter().fold(x, |x, s| s.forward(x));
        let pooled = match &self.pool_weights {
            Some(w) => weighted_pool(x, w.val()),
            None => global_pool(x),
        };
        self.classifier.forward(pooled)
    }
}

/// Everything the training step needs from one forward pass.
#[derive(Debug, Clone)]
pub struct LaNetOutput {
    /// Class scores `[N, C]`.
    pub logits: Tensor<2>,
    /// Pooled expression feature `[N, 8 width]`.
    pub expr_feature: Tensor<2>,
    /// Pooled landmark feature `[N, fpn_channels]`.
    pub landmark_feature: Tensor<2>,
    /// Landmark heatmaps `[N, landmarks, H/4, W/4]`.
    pub heatmaps: Tensor<4>,
}

/// Global average pooling, as sums and a division: burn-onnx lowers `sum_dim` (not `mean_dim`),
/// and unlike adaptive pooling its gradient is computed deterministically on the CPU backend,
/// which exact resumption relies on.
fn global_pool(x: Tensor<4>) -> Tensor<2> {
    let [n, c, h, w] = x.dims();
    x.sum_dim(3)
        .sum_dim(2)
        .reshape([n, c])
        .div_scalar((h * w) as f64)
}

impl LaNet {
    /// Training forward pass.
    ///
    /// # Shapes
    /// `images` `[N, 3, H, W]` (H, W multiples of 32) -> see [`LaNetOutput`].
    pub fn forward(&self, images: Tensor<4>) -> LaNetOutput {
        let c1 = self.layer1.forward(self.stem.forward(images)); // [N, w, H/4, W/4]
        let expr_map = self.expr.iter().fold(c1.clone(), |x, s| s.forward(x)); // [N, 8w, H/32, W/32]
        let expr_feature = self.pool(expr_map);
        let logits = self.classify(expr_feature.clone());

        // Landmark branch: its own stages 2-4, keeping every scale for the top-down path.
        let mut maps = vec![c1];
        for stage in &self.landmark {
            let next = stage.forward(maps[maps.len() - 1].clone());
            maps.push(next);
        }
        // Top-down: start at the coarsest map, upsample x2 and add the next lateral.
        let mut top = self.lateral[3].forward(maps[3].clone());
        for level in (0..3).rev() {
            let lateral = self.lateral[level].forward(maps[level].clone());
            let [_, _, h, w] = lateral.dims();
            let up = interpolate(
                top,
                InterpolateOptions::new(InterpolateMode::Bilinear).with_output_size([h, w]),
            );
            top = lateral + up;
        } // [N, fpn, H/4, W/4]
        let landmark_feature = global_pool(top.clone());
        let heatmaps = self.heatmap.forward(top);
        LaNetOutput {
            logits,
            expr_feature,
            landmark_feature,
            heatmaps,
        }
    }

    /// ARM's module, when the net has one.
    pub fn arm(&self) -> Option<&Arm> {
        self.arm.as_ref()
    }

    /// Resets the landmark branch's layers 2-4 to copies of the expression branch's (after the
    /// expression path was loaded from pretrained weights).
    pub fn landmark_branch_from_expression(mut self) -> Self {
        let landmark = std::mem::take(&mut self.landmark);
        self.landmark = self
            .expr
            .iter()
            .zip(landmark)
            .map(|(e, l)| copy_values(e, l))
            .collect();
        self
    }

    /// A deep copy of the inference path (`config` must be the one that built `self`).
    pub fn expression_net(&self, config: &LaNetConfig, device: &Device) -> ExpressionNet {
        let fresh = config.init(device);
        ExpressionNet {
            stem: copy_values(&self.stem, fresh.stem),
            layer1: copy_values(&self.layer1, fresh.layer1),
            expr: self
                .expr
                .iter()
                .zip(fresh.expr)
                .map(|(from, into)| copy_values(from, into))
                .collect(),
            classifier: self.inference_classifier(fresh.classifier),
            pool_weights: self
                .arm
                .as_ref()
                .map(|arm| Param::from_tensor(arm.position_weights().detach())),
        }
    }

    /// A copy of the classifier; with ARM, its bias absorbs the inference shift
    /// `alpha * running mean` (`W^T (f + s) + b = W^T f + (W^T s + b)`).
    fn inference_classifier(&self, fresh: Linear) -> Linear {
        let mut classifier = copy_values(&self.classifier, fresh);
        if let Some(arm) = &self.arm {
            let shift = arm.inference_shift().unsqueeze::<2>(); // [1, C_in]
            let folded = shift.matmul(classifier.weight.val()).squeeze_dim::<1>(0); // [C_out]
            let bias = match classifier.bias.take() {
                Some(b) => b.val() + folded,
                None => folded,
            };
            classifier.bias = Some(Param::from_tensor(bias.detach()));
        }
        classifier
    }

    /// The expression path only: what is exported to ONNX (and, on a training device, the CE
    /// baseline's forward pass).
    ///
    /// # Shapes
    /// `[N, 3, H, W]` -> logits `[N, C]`.
    pub fn forward_expression(&self, images: Tensor<4>) -> Tensor<2> {
        self.forward_expression_features(images).1
    }

    /// The expression path, with its pooled feature.
    ///
    /// # Shapes
    /// `[N, 3, H, W]` -> (feature `[N, 8 width]`, logits `[N, C]`).
    pub fn forward_expression_features(&self, images: Tensor<4>) -> (Tensor<2>, Tensor<2>) {
        let x = self.layer1.forward(self.stem.forward(images));
        let x = self.expr.iter().fold(x, |x, s| s.forward(x));
        let feature = self.pool(x);
        let logits = self.classify(feature.clone());
        (feature, logits)
    }

    /// Pooling of the expression branch's last map: ARM's de-albino kernel, or the global mean.
    fn pool(&self, map: Tensor<4>) -> Tensor<2> {
        match &self.arm {
            Some(arm) => arm.pool(map),
            None => global_pool(map),
        }
    }

    /// The classifier, after ARM's affinity sharing when ARM is on.
    fn classify(&self, feature: Tensor<2>) -> Tensor<2> {
        match &self.arm {
            Some(arm) => self.classifier.forward(arm.share(feature)),
            None => self.classifier.forward(feature),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_and_inference_path_agree() {
        let device = Device::flex();
        let config = LaNetConfig::new()
            .with_width(8)
            .with_blocks(1)
            .with_landmarks(5)
            .with_fpn_channels(16);
        let model = config.init(&device);
        let images = Tensor::<4>::random(
            [2, 3, 64, 64],
            burn::tensor::Distribution::Normal(0.0, 1.0),
            &device,
        );
        let out = model.forward(images.clone());
        assert_eq!(out.logits.dims(), [2, 7]);
        assert_eq!(out.expr_feature.dims(), [2, 64]);
        assert_eq!(out.landmark_feature.dims(), [2, 16]);
        assert_eq!(out.heatmaps.dims(), [2, 5, 16, 16]);
        // The inference path computes the same logits.
        let diff = (model.forward_expression(images) - out.logits)
            .abs()
            .max()
            .into_scalar::<f32>();
        assert!(diff < 1e-5, "{diff}");
    }

    #[test]
    fn with_arm_a_faces_logits_do_not_depend_on_the_rest_of_the_batch() {
        let device = Device::flex().autodiff();
        let config = LaNetConfig::new()
            .with_width(4)
            .with_blocks(1)
            .with_landmarks(3)
            .with_fpn_channels(8)
            .with_arm_map(3);
        let model = config.init(&device);
        let noise = burn::tensor::Distribution::Normal(0.0, 1.0);
        // Training forward passes move BatchNorm's and ARM's running means away from their
        // initial values, so the check below sees both in use.
        for _ in 0..3 {
            let _ = model.forward(Tensor::<4>::random([6, 3, 96, 96], noise, &device));
        }
        let net = model.valid();
        let plain = Device::flex();
        let images = Tensor::<4>::random([4, 3, 96, 96], noise, &plain);
        let batch = net.forward_expression(images.clone());
        // During training the shared batch mean does couple the faces.
        let coupled = model.forward_expression(Tensor::from_data(images.to_data(), &device));
        let exported = net.expression_net(&config, &plain);
        let exported_batch = exported.forward(images.clone());
        for i in 0..4 {
            let one = images.clone().narrow(0, i, 1);
            let alone = net.forward_expression(one.clone());
            let row = batch.clone().narrow(0, i, 1);
            let diff = (alone.clone() - row.clone())
                .abs()
                .max()
                .into_scalar::<f32>();
            assert!(
                diff < 1e-5,
                "face {i}: batch of 1 vs batch of 4 differ by {diff}"
            );
            // The export's folded copy (position weights, affinity in the bias) agrees.
            let diff = (exported.forward(one) - alone)
                .abs()
                .max()
                .into_scalar::<f32>();
            assert!(diff < 1e-5, "face {i}: export copy differs by {diff}");
            let diff = (exported_batch.clone().narrow(0, i, 1) - row)
                .abs()
                .max()
                .into_scalar::<f32>();
            assert!(
                diff < 1e-5,
                "face {i}: export copy in a batch differs by {diff}"
            );
        }
        let host = |t: Tensor<2>| {
            t.into_data()
                .convert::<f32>()
                .try_into_vec::<f32>()
                .unwrap()
        };
        let train_diff = host(coupled)
            .iter()
            .zip(host(batch))
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(
            train_diff > 1e-4,
            "training used the batch mean: {train_diff}"
        );
    }

    #[test]
    fn full_width_expression_paths_have_torchvisions_parameter_counts() {
        use burn::module::Module;
        // torchvision's resnet18 / resnet50 without their 1000-class fc: 11,689,512 - 513,000
        // and 25,557,032 - 2,049,000 parameters. burn also counts BatchNorm's running mean and
        // variance: 2 more per BatchNorm channel, of which ResNet-18 has 64 + 4 x 64 +
        // 5 x (128 + 256 + 512) = 4,800 and ResNet-50 64 + 1,408 + 3,584 + 10,240 + 11,264 = 26,560.
        let device = Device::flex();
        for (config, want) in [
            (LaNetConfig::new(), 11_176_512 + 2 * 4_800),
            (
                LaNetConfig::new().with_resnet50(true),
                23_508_032 + 2 * 26_560,
            ),
        ] {
            let m = config.init(&device);
            let trunk = m.stem.num_params()
                + m.layer1.num_params()
                + m.expr.iter().map(Module::num_params).sum::<usize>();
            assert_eq!(trunk, want);
            assert_eq!(m.classifier.num_params(), config.feature_dim() * 7 + 7);
        }
    }

    #[test]
    fn resnet50_shapes() {
        let device = Device::flex();
        let config = LaNetConfig::new()
            .with_width(4)
            .with_resnet50(true)
            .with_landmarks(5)
            .with_fpn_channels(8);
        let model = config.init(&device);
        let images = Tensor::<4>::random(
            [2, 3, 64, 64],
            burn::tensor::Distribution::Normal(0.0, 1.0),
            &device,
        );
        let out = model.forward(images);
        assert_eq!(config.feature_dim(), 4 * 8 * 4);
        assert_eq!(out.expr_feature.dims(), [2, 128]);
        assert_eq!(out.landmark_feature.dims(), [2, 8]);
        assert_eq!(out.heatmaps.dims(), [2, 5, 16, 16]);
    }

    #[test]
    fn landmark_branch_starts_as_a_copy_with_its_own_parameters() {
        use burn::module::Module;
        let device = Device::flex();
        let model = LaNetConfig::new()
            .with_width(4)
            .with_blocks(1)
            .init(&device);
        let (e, l) = (&model.expr[0], &model.landmark[0]);
        let x = Tensor::<4>::random(
            [1, 4, 8, 8],
            burn::tensor::Distribution::Normal(0.0, 1.0),
            &device,
        );
        let diff = (e.forward(x.clone()) - l.forward(x))
            .abs()
            .max()
            .into_scalar::<f32>();
        assert_eq!(diff, 0.0, "same initial weights");
        let mut ids = Vec::new();
        model.visit(&mut IdCollector(&mut ids));
        let unique: std::collections::HashSet<_> = ids.iter().collect();
        assert!(ids.len() > 20);
        assert_eq!(unique.len(), ids.len(), "every parameter has its own id");
    }

    #[test]
    fn copied_branch_receives_its_own_gradients() {
        use burn::module::Module;
        let device = Device::flex().autodiff();
        let model = LaNetConfig::new()
            .with_width(4)
            .with_blocks(1)
            .with_landmarks(3)
            .init(&device);
        let images = Tensor::<4>::random(
            [2, 3, 32, 32],
            burn::tensor::Distribution::Normal(0.0, 1.0),
            &device,
        );
        // The heatmaps depend on the landmark branch only (after the shared stem and stage 1).
        let grads = model.forward(images).heatmaps.sum().backward();
        let (mut landmark, mut expr) = (GradCount(&grads, 0), GradCount(&grads, 0));
        model.landmark[0].visit(&mut landmark);
        model.expr[0].visit(&mut expr);
        assert!(
            landmark.1 >= 6,
            "{} landmark-branch parameters got gradients",
            landmark.1
        );
        assert_eq!(
            expr.1, 0,
            "the expression branch is not on the heatmaps' path"
        );
    }

    struct GradCount<'a>(&'a burn::tensor::Gradients, usize);
    impl burn::module::ModuleVisitor for GradCount<'_> {
        fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<D>>) {
            self.1 += usize::from(param.val().grad(self.0).is_some());
        }
    }

    struct IdCollector<'a>(&'a mut Vec<String>);
    impl burn::module::ModuleVisitor for IdCollector<'_> {
        fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<D>>) {
            self.0.push(param.id.to_string());
        }
    }
}
