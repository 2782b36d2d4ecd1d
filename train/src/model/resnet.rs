//! ResNet building blocks (He et al. 2016): the stem and stages of basic or bottleneck blocks that
//! LA-Net's two branches are made of. `width` 64 with 2 basic blocks per stage is ResNet-18; with
//! 3, 4, 6, 3 bottleneck blocks it is ResNet-50; smaller widths give the same architecture at a
//! cost that fits a CPU experiment.

use burn::module::{ModuleMapper, ModuleVisitor, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::activation::relu;
use burn::tensor::TensorData;

fn conv(in_ch: usize, out_ch: usize, kernel: usize, stride: usize, device: &Device) -> Conv2d {
    let pad = kernel / 2;
    Conv2dConfig::new([in_ch, out_ch], [kernel, kernel])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
        .with_bias(false)
        .init(device)
}

/// conv7x7/2 -> BN -> ReLU -> maxpool3x3/2: `[N, 3, H, W]` -> `[N, width, H/4, W/4]`.
#[derive(Module, Debug)]
pub struct Stem {
    conv: Conv2d,
    bn: BatchNorm,
    pool: MaxPool2d,
}

impl Stem {
    /// A stem producing `width` channels.
    pub fn new(width: usize, device: &Device) -> Self {
        Stem {
            conv: conv(3, width, 7, 2, device),
            bn: BatchNormConfig::new(width).init(device),
            pool: MaxPool2dConfig::new([3, 3])
                .with_strides([2, 2])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(),
        }
    }

    /// # Shapes
    /// `[N, 3, H, W]` -> `[N, width, H/4, W/4]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.pool
            .forward(relu(self.bn.forward(self.conv.forward(x))))
    }
}

/// The 1x1 convolution + BN that matches a shortcut to a block's new width or stride.
#[derive(Module, Debug)]
pub struct Downsample {
    conv: Conv2d,
    bn: BatchNorm,
}

impl Downsample {
    /// The projection a block needs when it changes width or stride, else none.
    fn when_needed(in_ch: usize, out_ch: usize, stride: usize, device: &Device) -> Option<Self> {
        (stride != 1 || in_ch != out_ch).then(|| Downsample {
            conv: conv(in_ch, out_ch, 1, stride, device),
            bn: BatchNormConfig::new(out_ch).init(device),
        })
    }
}

/// A block's shortcut: its input, projected when the block changes width or stride.
fn shortcut(downsample: Option<&Downsample>, x: Tensor<4>) -> Tensor<4> {
    match downsample {
        Some(d) => d.bn.forward(d.conv.forward(x)),
        None => x,
    }
}

/// Two 3x3 convolutions with a residual shortcut.
#[derive(Module, Debug)]
pub struct BasicBlock {
    conv1: Conv2d,
    bn1: BatchNorm,
    conv2: Conv2d,
    bn2: BatchNorm,
    downsample: Option<Downsample>,
}

impl BasicBlock {
    fn new(in_ch: usize, out_ch: usize, stride: usize, device: &Device) -> Self {
        let downsample = Downsample::when_needed(in_ch, out_ch, stride, device);
        BasicBlock {
            conv1: conv(in_ch, out_ch, 3, stride, device),
            bn1: BatchNormConfig::new(out_ch).init(device),
            conv2: conv(out_ch, out_ch, 3, 1, device),
            bn2: BatchNormConfig::new(out_ch).init(device),
            downsample,
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let shortcut = shortcut(self.downsample.as_ref(), x.clone());
        let y = relu(self.bn1.forward(self.conv1.forward(x)));
        let y = self.bn2.forward(self.conv2.forward(y));
        relu(y + shortcut)
    }
}

/// ResNet-50's block: 1x1 reduce, 3x3 (carrying the stride), 1x1 expand to 4x, with a residual
/// shortcut.
#[derive(Module, Debug)]
pub struct Bottleneck {
    conv1: Conv2d,
    bn1: BatchNorm,
    conv2: Conv2d,
    bn2: BatchNorm,
    conv3: Conv2d,
    bn3: BatchNorm,
    downsample: Option<Downsample>,
}

/// Output channels of a bottleneck block per channel of its 3x3 convolution.
pub const EXPANSION: usize = 4;

impl Bottleneck {
    fn new(in_ch: usize, mid: usize, stride: usize, device: &Device) -> Self {
        let out = EXPANSION * mid;
        let downsample = Downsample::when_needed(in_ch, out, stride, device);
        Bottleneck {
            conv1: conv(in_ch, mid, 1, 1, device),
            bn1: BatchNormConfig::new(mid).init(device),
            conv2: conv(mid, mid, 3, stride, device),
            bn2: BatchNormConfig::new(mid).init(device),
            conv3: conv(mid, out, 1, 1, device),
            bn3: BatchNormConfig::new(out).init(device),
            downsample,
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let shortcut = shortcut(self.downsample.as_ref(), x.clone());
        let y = relu(self.bn1.forward(self.conv1.forward(x)));
        let y = relu(self.bn2.forward(self.conv2.forward(y)));
        let y = self.bn3.forward(self.conv3.forward(y));
        relu(y + shortcut)
    }
}

/// A stage: basic blocks (ResNet-18/34) or bottleneck blocks (ResNet-50), the first one changing
/// width and stride. One of the two lists is empty.
#[derive(Module, Debug)]
pub struct Stage {
    blocks: Vec<BasicBlock>,
    bottlenecks: Vec<Bottleneck>,
}

impl Stage {
    /// A stage from `in_ch` to `out_ch` channels, spatial stride `stride`.
    pub fn new(in_ch: usize, out_ch: usize, blocks: usize, stride: usize, device: &Device) -> Self {
        let blocks = (0..blocks.max(1))
            .map(|i| {
                if i == 0 {
                    BasicBlock::new(in_ch, out_ch, stride, device)
                } else {
                    BasicBlock::new(out_ch, out_ch, 1, device)
                }
            })
            .collect();
        Stage {
            blocks,
            bottlenecks: Vec::new(),
        }
    }

    /// A stage of bottleneck blocks from `in_ch` to `EXPANSION * mid` channels.
    pub fn bottleneck(
        in_ch: usize,
        mid: usize,
        blocks: usize,
        stride: usize,
        device: &Device,
    ) -> Self {
        let bottlenecks = (0..blocks.max(1))
            .map(|i| {
                if i == 0 {
                    Bottleneck::new(in_ch, mid, stride, device)
                } else {
                    Bottleneck::new(EXPANSION * mid, mid, 1, device)
                }
            })
            .collect();
        Stage {
            blocks: Vec::new(),
            bottlenecks,
        }
    }

    /// # Shapes
    /// `[N, in, H, W]` -> `[N, out, H/stride, W/stride]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let x = self.blocks.iter().fold(x, |x, b| b.forward(x));
        self.bottlenecks.iter().fold(x, |x, b| b.forward(x))
    }
}

/// Copies every float value (weights, biases and BatchNorm running statistics) of `from` into
/// `into`, which must have the same structure. `into` keeps its own parameter identities and its
/// own running-state storage, so the copy starts from the same weights but trains separately.
/// (`Module::clone` would not do: a clone's BatchNorm running statistics share storage.)
pub fn copy_values<M: Module>(from: &M, into: M) -> M {
    let mut collect = CollectValues(Vec::new());
    from.visit(&mut collect);
    let mut assign = AssignValues(collect.0.into_iter());
    into.map(&mut assign)
}

struct CollectValues(Vec<TensorData>);

impl ModuleVisitor for CollectValues {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.0.push(param.val().to_data());
    }
}

struct AssignValues(std::vec::IntoIter<TensorData>);

impl ModuleMapper for AssignValues {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let data = self
            .0
            .next()
            .expect("copy_values: modules of the same structure");
        // Param::map keeps the parameter's id; the new value must be tracked like the old one
        // (a plain device's tensors never are, an autodiff device's parameters are).
        param.map(|old| {
            let new = Tensor::from_data(data, &old.device());
            if old.is_require_grad() {
                new.require_grad()
            } else {
                new
            }
        })
    }
}
