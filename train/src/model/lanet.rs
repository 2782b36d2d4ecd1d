//! LA-Net (Wu & Cui, ICCV 2023): a shared ResNet stem and first stage, then an expression branch
//! (stages 2-4, global average pooling, a linear classifier) and a landmark branch (its own copy
//! of stages 2-4, initialised from the same weights, and an FPN-style top-down path to one heatmap
//! per landmark at 1/4 resolution). Inference uses only the expression path.

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};

use super::resnet::{copy_values, Stage, Stem};

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
}

impl LaNetConfig {
    /// A freshly initialised LA-Net. The landmark branch's stages 2-4 start as an exact copy of
    /// the expression branch's, with their own parameters.
    pub fn init(&self, device: &Device) -> LaNet {
        let w = self.width;
        let expr = vec![
            Stage::new(w, 2 * w, self.blocks, 2, device),
            Stage::new(2 * w, 4 * w, self.blocks, 2, device),
            Stage::new(4 * w, 8 * w, self.blocks, 2, device),
        ];
        let landmark = [(w, 2 * w), (2 * w, 4 * w), (4 * w, 8 * w)]
            .iter()
            .zip(&expr)
            .map(|(&(i, o), e)| copy_values(e, Stage::new(i, o, self.blocks, 2, device)))
            .collect();
        let f = self.fpn_channels;
        let lateral = [w, 2 * w, 4 * w, 8 * w]
            .iter()
            .map(|&c| Conv2dConfig::new([c, f], [1, 1]).init(device))
            .collect();
        LaNet {
            stem: Stem::new(w, device),
            layer1: Stage::new(w, w, self.blocks, 1, device),
            expr,
            classifier: LinearConfig::new(8 * w, self.classes).init(device),
            landmark,
            lateral,
            heatmap: Conv2dConfig::new([f, self.landmarks], [1, 1]).init(device),
        }
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

fn global_pool(x: Tensor<4>) -> Tensor<2> {
    let [n, c, _, _] = x.dims();
    x.mean_dim(3).mean_dim(2).reshape([n, c])
}

impl LaNet {
    /// Training forward pass.
    ///
    /// # Shapes
    /// `images` `[N, 3, H, W]` (H, W multiples of 32) -> see [`LaNetOutput`].
    pub fn forward(&self, images: Tensor<4>) -> LaNetOutput {
        let c1 = self.layer1.forward(self.stem.forward(images)); // [N, w, H/4, W/4]
        let expr_map = self.expr.iter().fold(c1.clone(), |x, s| s.forward(x)); // [N, 8w, H/32, W/32]
        let expr_feature = global_pool(expr_map);
        let logits = self.classifier.forward(expr_feature.clone());

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

    /// Inference: the expression path only, as exported to ONNX.
    ///
    /// # Shapes
    /// `[N, 3, H, W]` -> logits `[N, C]`.
    pub fn forward_expression(&self, images: Tensor<4>) -> Tensor<2> {
        let x = self.layer1.forward(self.stem.forward(images));
        let x = self.expr.iter().fold(x, |x, s| s.forward(x));
        self.classifier.forward(global_pool(x))
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
