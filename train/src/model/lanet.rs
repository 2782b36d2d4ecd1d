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

/// LA-Net's shape: a ResNet-18 on 224x224 faces, 7 classes, all 68 landmarks by default.
#[derive(Config, Debug, PartialEq)]
pub struct LaNetConfig {
    /// Expression classes (7, or 8 with contempt; must match the data's).
    #[config(default = 7)]
    pub classes: usize,
    /// Side of the aligned input crop (a multiple of 32; a prepared cache must hold this size).
    #[config(default = 224)]
    pub input_size: u32,
    /// Channels after the stem; stages use width, 2x, 4x, 8x. 64 is ResNet-18.
    #[config(default = 64)]
    pub width: usize,
    /// Basic blocks per stage (2 is ResNet-18).
    #[config(default = 2)]
    pub blocks: usize,
    /// ResNet-50's bottleneck blocks, 3, 4, 6, 3 per stage (`blocks` is then ignored).
    #[config(default = false)]
    pub resnet50: bool,
    /// The dlib landmark indices (0-67) the landmark branch predicts heatmaps for; all 68 when
    /// absent (e.g. the eye corners, nose tip and mouth corners `[36, 39, 42, 45, 30, 48, 54]`).
    pub landmarks: Option<Vec<usize>>,
    /// Channels of the FPN maps; the landmark feature is the pooled finest map.
    #[config(default = 64)]
    pub fpn_channels: usize,
    /// ARM (de-albino pooling and affinity sharing) instead of global average pooling.
    pub arm: Option<ArmOptions>,
}

/// ARM's kernel, as a run configures it (its map is the last feature map, input side / 32).
#[derive(Config, Debug, PartialEq)]
pub struct ArmOptions {
    /// De-albino kernel side (0: half the last map's side, rounded up).
    #[config(default = 0)]
    pub kernel: usize,
    /// Kernel stride.
    #[config(default = 1)]
    pub stride: usize,
}

impl LaNetConfig {
    /// A freshly initialised LA-Net. The landmark branch's stages 2-4 start as an exact copy of
    /// the expression branch's, with their own parameters.
    pub fn init(&self, device: &Device) -> LaNet {
        // The draw order (expression stages 2-4, their landmark copies, the laterals, stem,
        // layer1, classifier, heatmap head) fixes which random values each weight of a seeded
        // run gets; keep it.
        let expr: Vec<Stage> = (1..4).map(|i| self.stage(i, device)).collect();
        let landmark = (1..4)
            .zip(&expr)
            .map(|(i, e)| copy_values(e, self.stage(i, device)))
            .collect();
        let f = self.fpn_channels;
        let lateral = self
            .stage_channels()
            .iter()
            .map(|&c| Conv2dConfig::new([c, f], [1, 1]).init(device))
            .collect();
        let stem = Stem::new(self.width, device);
        let layer1 = self.stage(0, device);
        let classifier = self.classifier(device);
        let heatmap = Conv2dConfig::new([f, self.landmark_count()], [1, 1]).init(device);
        LaNet {
            expression: ExpressionNet {
                stem,
                layer1,
                expr,
                classifier,
                arm: self.arm().map(|arm| arm.init(device)),
                pool_weights: None,
            },
            landmark,
            lateral,
            heatmap,
        }
    }

    /// A freshly initialised expression path alone (what [`ExpressionNet::for_inference`] copies
    /// weights into).
    pub fn init_expression(&self, device: &Device) -> ExpressionNet {
        ExpressionNet {
            stem: Stem::new(self.width, device),
            layer1: self.stage(0, device),
            expr: (1..4).map(|i| self.stage(i, device)).collect(),
            classifier: self.classifier(device),
            arm: self.arm().map(|arm| arm.init(device)),
            pool_weights: None,
        }
    }

    /// Stage `i` (0 = layer1), taking the previous stage's channels (the stem's for layer1).
    fn stage(&self, i: usize, device: &Device) -> Stage {
        let w = self.width;
        let input = if i == 0 {
            w
        } else {
            self.stage_channels()[i - 1]
        };
        let stride = if i == 0 { 1 } else { 2 };
        if self.resnet50 {
            Stage::bottleneck(input, w << i, [3, 4, 6, 3][i], stride, device)
        } else {
            Stage::new(input, w << i, self.blocks, stride, device)
        }
    }

    fn classifier(&self, device: &Device) -> Linear {
        LinearConfig::new(self.feature_dim(), self.classes).init(device)
    }

    /// ARM's config, when it is on.
    pub fn arm(&self) -> Option<ArmConfig> {
        self.arm.as_ref().map(|arm| {
            ArmConfig::new(self.input_size as usize / 32, self.feature_dim())
                .with_kernel(arm.kernel)
                .with_stride(arm.stride)
        })
    }

    /// Heatmaps the landmark branch predicts.
    pub fn landmark_count(&self) -> usize {
        self.landmarks.as_ref().map_or(68, Vec::len)
    }

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

/// LA-Net's layers: the expression path, and the landmark branch fed by its first stage.
#[derive(Module, Debug)]
pub struct LaNet {
    expression: ExpressionNet,
    landmark: Vec<Stage>,
    lateral: Vec<Conv2d>,
    heatmap: Conv2d,
}

/// The expression path: stem, layer1, the expression branch's layers 2-4, pooling (global
/// average, or ARM's), the classifier. Inference and export use it alone, without any of the
/// landmark branch's weights.
#[derive(Module, Debug)]
pub struct ExpressionNet {
    stem: Stem,
    layer1: Stage,
    expr: Vec<Stage>,
    classifier: Linear,
    /// ARM as trained: de-albino pooling and affinity sharing.
    arm: Option<Arm>,
    /// ARM folded for inference ([`ExpressionNet::for_inference`]): the de-albino position
    /// weights `[map, map]`; the affinity shift is in the classifier's bias.
    pool_weights: Option<Param<Tensor<2>>>,
}

impl ExpressionNet {
    /// # Shapes
    /// `[N, 3, H, W]` -> logits `[N, C]`.
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        self.forward_features(images).1
    }

    /// The pooled feature and the logits.
    ///
    /// # Shapes
    /// `[N, 3, H, W]` -> (feature `[N, 8 width]`, logits `[N, C]`).
    pub fn forward_features(&self, images: Tensor<4>) -> (Tensor<2>, Tensor<2>) {
        self.branch(self.trunk(images))
    }

    /// Stem and layer1, which the landmark branch shares.
    ///
    /// # Shapes
    /// `[N, 3, H, W]` -> `[N, width, H/4, W/4]`.
    fn trunk(&self, images: Tensor<4>) -> Tensor<4> {
        self.layer1.forward(self.stem.forward(images))
    }

    /// Layers 2-4, pooling and the classifier on the trunk's map.
    fn branch(&self, c1: Tensor<4>) -> (Tensor<2>, Tensor<2>) {
        let map = self.expr.iter().fold(c1, |x, s| s.forward(x)); // [N, 8w, H/32, W/32]
        let feature = match (&self.arm, &self.pool_weights) {
            (Some(arm), _) => arm.pool(map),
            (None, Some(w)) => weighted_pool(map, w.val()),
            (None, None) => global_pool(map),
        };
        let logits = match &self.arm {
            Some(arm) => self.classifier.forward(arm.share(feature.clone())),
            None => self.classifier.forward(feature.clone()),
        };
        (feature, logits)
    }

    /// ARM's module, when the net trains with it.
    pub fn arm(&self) -> Option<&Arm> {
        self.arm.as_ref()
    }

    /// A deep copy for inference (`config` must be the one that built `self`): ARM, if any, folded
    /// into position weights and the classifier's bias, so a face's logits do not depend on its
    /// batch. A copy, because a `clone` would share BatchNorm's running statistics.
    pub fn for_inference(&self, config: &LaNetConfig, device: &Device) -> ExpressionNet {
        let mut copy = copy_values(self, config.init_expression(device));
        copy.classifier = self.inference_classifier(copy.classifier);
        copy.pool_weights = copy
            .arm
            .take()
            .map(|arm| Param::from_tensor(arm.position_weights().detach()));
        copy
    }

    /// The classifier `fresh` (a copy of this one); with ARM, its bias absorbs the inference
    /// shift `alpha * running mean` (`W^T (f + s) + b = W^T f + (W^T s + b)`).
    fn inference_classifier(&self, mut classifier: Linear) -> Linear {
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
        let c1 = self.expression.trunk(images); // [N, w, H/4, W/4]
        let (expr_feature, logits) = self.expression.branch(c1.clone());

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

    /// The expression path: what inference runs (and, on a training device, the CE baseline's
    /// forward pass).
    pub fn expression(&self) -> &ExpressionNet {
        &self.expression
    }

    /// ARM's module, when the net has one.
    pub fn arm(&self) -> Option<&Arm> {
        self.expression.arm()
    }

    /// The net with `source`'s backbone: its stem, layer1 and expression layers 2-4 (weights and
    /// BatchNorm statistics), those layers also copied into the landmark branch (weights). The
    /// classifier, ARM, the landmark FPN and heatmap head stay this net's. `source` must have this
    /// net's width and depth (see [`LaNetConfig`]); its class count may differ.
    pub fn with_backbone_of(mut self, source: LaNet) -> Self {
        self.expression.stem = source.expression.stem;
        self.expression.layer1 = source.expression.layer1;
        self.expression.expr = source.expression.expr;
        self.landmark_branch_from_expression()
    }

    /// Resets the landmark branch's layers 2-4 to copies of the expression branch's (after the
    /// expression path was loaded from pretrained weights).
    pub fn landmark_branch_from_expression(mut self) -> Self {
        let landmark = std::mem::take(&mut self.landmark);
        self.landmark = self
            .expression
            .expr
            .iter()
            .zip(landmark)
            .map(|(e, l)| copy_values(e, l))
            .collect();
        self
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
            .with_landmarks(Some((0..5).collect()))
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
        let diff = (model.expression().forward(images) - out.logits)
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
            .with_landmarks(Some(vec![36, 45, 30]))
            .with_fpn_channels(8)
            .with_input_size(96)
            .with_arm(Some(ArmOptions::new()));
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
        let batch = net.expression().forward(images.clone());
        // During training the shared batch mean does couple the faces.
        let coupled = model
            .expression()
            .forward(Tensor::from_data(images.to_data(), &device));
        let exported = net.expression().for_inference(&config, &plain);
        let exported_batch = exported.forward(images.clone());
        for i in 0..4 {
            let one = images.clone().narrow(0, i, 1);
            let alone = net.expression().forward(one.clone());
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
            let trunk = m.expression.stem.num_params()
                + m.expression.layer1.num_params()
                + m.expression
                    .expr
                    .iter()
                    .map(Module::num_params)
                    .sum::<usize>();
            assert_eq!(trunk, want);
            assert_eq!(
                m.expression.classifier.num_params(),
                config.feature_dim() * 7 + 7
            );
        }
    }

    #[test]
    fn resnet50_shapes() {
        let device = Device::flex();
        let config = LaNetConfig::new()
            .with_width(4)
            .with_resnet50(true)
            .with_landmarks(Some((0..5).collect()))
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
        let (e, l) = (&model.expression.expr[0], &model.landmark[0]);
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
            .with_landmarks(Some(vec![36, 45, 30]))
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
        model.expression.expr[0].visit(&mut expr);
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
