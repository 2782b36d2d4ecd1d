//! ARM, the amend-representation module (Shi & Zhu 2021, "Learning to Amend Facial Expression
//! Representation via De-albino and Affinity"), as this project builds it from the paper's
//! description (its code is not used):
//!
//! - **De-albino pooling** replaces global average pooling of the last feature map. One small
//!   kernel, shared by every channel, slides over the map with a stride smaller than itself and
//!   no padding, and the window responses are averaged. Because the windows overlap, a position
//!   in the interior is covered by more windows than one on the border, so the border features,
//!   the ones the backbone's zero padding has eroded ("albino"), count for less from the start;
//!   the kernel then learns how much each offset counts. The operation is linear in the map, so
//!   it equals a weighted sum with one weight per map position ([`Arm::position_weights`]); that
//!   is how it is computed and exported.
//! - **Minibatch affinity sharing**: during training a sample's pooled feature is `f + alpha *
//!   mean(f over the batch)`, with `alpha` learned (it starts at 1). The paper shares the batch
//!   mean at inference too, which would make one face's answer depend on the other faces in the
//!   batch. Here the batch mean is replaced at inference by its running average (kept like
//!   BatchNorm's running mean), a constant that export folds into the classifier's bias, so the
//!   exported graph is the plain network with a weighted pooling.
//!
//! Choices of ours where the paper's description leaves room: the window responses are averaged
//! (not flattened), so the feature keeps its width and the classifier, the neighbour search and
//! the projection heads need no change; the kernel defaults to half the map's side (rounded up)
//! with stride 1, which gives each axis a triangular weight profile.

use burn::module::{Flag, Module, Param, RunningState};
use burn::prelude::*;
use burn::tensor::module::conv_transpose2d;
use burn::tensor::ops::ConvTransposeOptions;

/// The de-albino kernel's shape, for a last feature map of `map x map`.
#[derive(Config, Debug)]
pub struct ArmConfig {
    /// Side of the feature map the kernel slides over (input side / 32 for ResNets).
    pub map: usize,
    /// Channels of that map.
    pub channels: usize,
    /// Kernel side; 0 picks `ceil(map / 2)`.
    #[config(default = 0)]
    pub kernel: usize,
    /// Stride of the kernel.
    #[config(default = 1)]
    pub stride: usize,
    /// Momentum of the running batch-mean feature used at inference (BatchNorm's 0.1).
    #[config(default = 0.1)]
    pub momentum: f64,
}

impl ArmConfig {
    /// The kernel side actually used.
    pub fn kernel_side(&self) -> usize {
        if self.kernel == 0 {
            self.map.div_ceil(2).max(1)
        } else {
            self.kernel
        }
    }

    /// Windows per axis: `(map - kernel) / stride + 1`.
    pub fn windows(&self) -> usize {
        (self.map - self.kernel_side()) / self.stride + 1
    }

    /// A fresh module: a uniform kernel (`1 / k^2`), `alpha = 1`, running mean 0. No random
    /// draws, so switching ARM on leaves every other initial weight of a seeded run unchanged.
    ///
    /// # Panics
    /// If the kernel is larger than the map or the stride is 0.
    pub fn init(&self, device: &Device) -> Arm {
        let k = self.kernel_side();
        assert!(
            k <= self.map && self.stride > 0,
            "ARM kernel {k} (stride {}) on a {}x{} map",
            self.stride,
            self.map,
            self.map
        );
        Arm {
            kernel: Param::from_tensor(Tensor::full([1, 1, k, k], 1.0 / (k * k) as f64, device)),
            alpha: Param::from_tensor(Tensor::ones([1], device)),
            running_mean: RunningState::new(Tensor::zeros([self.channels], device)),
            training: Param::from_bool(true),
            map: self.map,
            stride: self.stride,
            momentum: self.momentum,
        }
    }
}

/// De-albino pooling and minibatch affinity sharing.
#[derive(Module, Debug)]
pub struct Arm {
    /// The de-albino kernel `[1, 1, k, k]`, shared by every channel.
    pub kernel: Param<Tensor<4>>,
    /// Weight of the shared batch mean.
    pub alpha: Param<Tensor<1>>,
    /// Running average of the batch-mean pooled feature `[C]`, used at inference.
    pub running_mean: RunningState<Tensor<1>>,
    /// Cleared by `valid()`: evaluation on a training device (the per-epoch test accuracy) must
    /// neither share the batch mean nor move the running mean, as with BatchNorm.
    pub training: Param<Flag>,
    map: usize,
    stride: usize,
    momentum: f64,
}

impl Arm {
    /// The weight of each map position in the pooled feature, `[map, map]`: the mean over
    /// windows of the kernel placed at each window. Positions no window reaches (when the
    /// stride does not divide `map - k`) weigh 0, as they would in the strided convolution.
    pub fn position_weights(&self) -> Tensor<2> {
        let kernel = self.kernel.val();
        let device = kernel.device();
        let k = kernel.dims()[2];
        let windows = (self.map - k) / self.stride + 1;
        // A transposed convolution of a map of ones stamps the kernel at every window.
        let stamped = conv_transpose2d(
            Tensor::ones([1, 1, windows, windows], &device),
            kernel,
            None,
            ConvTransposeOptions::new([self.stride; 2], [0; 2], [0; 2], [1; 2], 1),
        ); // [1, 1, (windows - 1) * stride + k, same]
        let covered = (windows - 1) * self.stride + k;
        let stamped = stamped.reshape([covered, covered]);
        let stamped = if covered < self.map {
            stamped.pad(
                [(0, self.map - covered), (0, self.map - covered)],
                burn::tensor::ops::PadMode::Constant(0.0),
            )
        } else {
            stamped
        };
        stamped.div_scalar((windows * windows) as f64)
    }

    /// De-albino pooling.
    ///
    /// # Shapes
    /// `[N, C, map, map]` -> `[N, C]`.
    pub fn pool(&self, x: Tensor<4>) -> Tensor<2> {
        weighted_pool(x, self.position_weights())
    }

    /// Minibatch affinity sharing: `f + alpha * batch mean` when training (an autodiff device
    /// and a module not made `valid()`), which also moves the running mean; `f + alpha *
    /// running mean` otherwise, so that at inference a face's output does not depend on the
    /// rest of the batch.
    ///
    /// # Shapes
    /// `[N, C]` -> `[N, C]`.
    pub fn share(&self, features: Tensor<2>) -> Tensor<2> {
        let device = features.device();
        let alpha = self.alpha.val().unsqueeze::<2>(); // [1, 1]
        if device.is_autodiff() && self.training.is_enabled() {
            let mean = features.clone().mean_dim(0); // [1, C]
            let running = self.running_mean.value_sync().to_device(&device);
            let running = running.mul_scalar(1.0 - self.momentum).add(
                mean.clone()
                    .detach()
                    .squeeze_dim::<1>(0)
                    .mul_scalar(self.momentum),
            );
            self.running_mean.update(running.detach());
            features + mean * alpha
        } else {
            let running = self
                .running_mean
                .value()
                .to_device(&device)
                .unsqueeze::<2>();
            features + running * alpha
        }
    }

    /// What inference adds to every pooled feature: `alpha * running mean`, `[C]`.
    pub fn inference_shift(&self) -> Tensor<1> {
        self.running_mean.value_sync() * self.alpha.val()
    }
}

/// A weighted sum over map positions, one weight per position shared by all channels (global
/// average pooling when every weight is `1 / (H W)`). Written as a product and sums, which both
/// backends differentiate deterministically and burn-onnx exports as `Mul` and `ReduceSum`.
///
/// # Shapes
/// `x` `[N, C, H, W]`, `weights` `[H, W]` -> `[N, C]`.
pub fn weighted_pool(x: Tensor<4>, weights: Tensor<2>) -> Tensor<2> {
    let [n, c, _, _] = x.dims();
    (x * weights.unsqueeze::<4>())
        .sum_dim(3)
        .sum_dim(2)
        .reshape([n, c])
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::module::conv2d;
    use burn::tensor::ops::ConvOptions;
    use burn::tensor::TensorData;

    fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .unwrap()
    }

    fn close(got: &[f32], want: &[f32]) {
        assert_eq!(got.len(), want.len());
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!((g - w).abs() < 1e-6, "position {i}: {g} vs {w}");
        }
    }

    #[test]
    fn uniform_kernel_weighs_the_border_by_window_count() {
        // 4x4 map, 3x3 kernel of 1/9, stride 1: 2x2 windows. Along each axis positions are
        // covered by 1, 2, 2, 1 windows, so a position's weight is (1/4)(1/9) * count_row *
        // count_col: corners 1/36, edges 2/36, the inner four 4/36 (total 1).
        let device = Device::flex();
        let arm = ArmConfig::new(4, 1).with_kernel(3).init(&device);
        let (c, e, i) = (1.0 / 36.0, 2.0 / 36.0, 4.0 / 36.0);
        close(
            &values(arm.position_weights()),
            &[c, e, e, c, e, i, i, e, e, i, i, e, c, e, e, c],
        );
        // The default kernel for a 7x7 map (a 224 input) is 4x4: a 1-2-3-4-3-2-1 profile.
        let arm = ArmConfig::new(7, 1).init(&device);
        let w = values(arm.position_weights());
        let profile = [1.0, 2.0, 3.0, 4.0, 3.0, 2.0, 1.0];
        for (p, got) in w.iter().enumerate() {
            let want = profile[p / 7] * profile[p % 7] / 256.0;
            assert!((got - want).abs() < 1e-7, "{p}: {got} vs {want}");
        }
    }

    #[test]
    fn learned_kernel_weights_by_hand() {
        // 3x3 map, kernel [[1, 2], [3, 4]], stride 1: windows at (0,0), (0,1), (1,0), (1,1).
        // Weight(h, w) = (1/4) * sum of K[h - a][w - b] over the windows (a, b) covering it:
        //   (0,0) K00/4 = 0.25        (0,1) (K00+K01)/4 = 0.75        (0,2) K01/4 = 0.5
        //   (1,0) (K00+K10)/4 = 1     (1,1) (K00+K01+K10+K11)/4 = 2.5 (1,2) (K01+K11)/4 = 1.5
        //   (2,0) K10/4 = 0.75        (2,1) (K10+K11)/4 = 1.75        (2,2) K11/4 = 1
        let device = Device::flex();
        let mut arm = ArmConfig::new(3, 1).with_kernel(2).init(&device);
        arm.kernel = Param::from_tensor(Tensor::from_data(
            TensorData::new(vec![1.0f32, 2.0, 3.0, 4.0], [1, 1, 2, 2]),
            &device,
        ));
        close(
            &values(arm.position_weights()),
            &[0.25, 0.75, 0.5, 1.0, 2.5, 1.5, 0.75, 1.75, 1.0],
        );
        // Stride 2 over a 5x5 map with a 2x2 kernel leaves the last row and column uncovered.
        let arm = ArmConfig::new(5, 1)
            .with_kernel(2)
            .with_stride(2)
            .init(&device);
        let w = values(arm.position_weights());
        assert!(w[4] == 0.0 && w[20] == 0.0 && w[24] == 0.0, "{w:?}");
        assert!((w.iter().sum::<f32>() - 1.0).abs() < 1e-6);
    }

    #[test]
    fn pooling_equals_the_strided_convolution_averaged_over_windows() {
        let device = Device::flex();
        let (n, c, map) = (2, 3, 6);
        let mut arm = ArmConfig::new(map, c)
            .with_kernel(3)
            .with_stride(2)
            .init(&device);
        let kernel = Tensor::<4>::random(
            [1, 1, 3, 3],
            burn::tensor::Distribution::Normal(0.0, 1.0),
            &device,
        );
        arm.kernel = Param::from_tensor(kernel.clone());
        let x = Tensor::<4>::random(
            [n, c, map, map],
            burn::tensor::Distribution::Normal(0.0, 1.0),
            &device,
        );
        // The definition: every channel convolved with the same kernel, no padding, then the
        // mean over the window responses.
        let direct = conv2d(
            x.clone().reshape([n * c, 1, map, map]),
            kernel,
            None,
            ConvOptions::new([2, 2], [0, 0], [1, 1], 1),
        )
        .mean_dim(3)
        .mean_dim(2)
        .reshape([n, c]);
        let (got, want) = (values(arm.pool(x)), values(direct));
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() < 1e-5, "{got:?} vs {want:?}");
        }
    }

    #[test]
    fn affinity_uses_the_batch_in_training_and_the_running_mean_after() {
        let device = Device::flex().autodiff();
        let arm = ArmConfig::new(2, 2).with_momentum(0.5).init(&device);
        let f = Tensor::<2>::from_data(
            TensorData::new(vec![1.0f32, 2.0, 3.0, 6.0], [2, 2]),
            &device,
        );
        // Batch mean (2, 4); alpha 1: each row plus (2, 4).
        close(&values(arm.share(f.clone())), &[3.0, 6.0, 5.0, 10.0]);
        // Running mean 0 -> 0.5 * 0 + 0.5 * (2, 4) = (1, 2).
        let valid = arm.valid();
        close(&values(valid.inference_shift()), &[1.0, 2.0]);
        let one =
            Tensor::<2>::from_data(TensorData::new(vec![1.0f32, 2.0], [1, 2]), &Device::flex());
        close(&values(valid.share(one)), &[2.0, 4.0]);
    }
}
