//! The expression-landmark contrastive part of LA-Net, MoCo style (He et al. 2020): projection
//! heads on the two features, a momentum copy of the backbone and heads that produces the keys,
//! and one queue of past keys per modality with their pseudo-labels.
//!
//! Keys carry no gradient; the momentum copy follows the trained model by an exponential moving
//! average (`m = 0.999`) after every step. Queues live on the host: they are small, and keeping
//! them as plain numbers makes their state trivially exact to checkpoint and resume.

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::relu;
use burn::tensor::TensorData;

use super::lanet::{LaNet, LaNetConfig};
use super::resnet::copy_values;

/// Two linear layers with a ReLU between them, then L2 normalisation.
#[derive(Module, Debug)]
pub struct Projection {
    fc1: Linear,
    fc2: Linear,
}

impl Projection {
    /// `input -> hidden -> out`.
    pub fn new(input: usize, hidden: usize, out: usize, device: &Device) -> Self {
        Projection {
            fc1: LinearConfig::new(input, hidden).init(device),
            fc2: LinearConfig::new(hidden, out).init(device),
        }
    }

    /// # Shapes
    /// `[N, input]` -> `[N, out]`, rows of unit length.
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        l2_normalise(self.fc2.forward(relu(self.fc1.forward(x))))
    }
}

/// Rows scaled to unit length (a zero row stays near zero instead of dividing by zero).
pub fn l2_normalise(x: Tensor<2>) -> Tensor<2> {
    let norm = x.clone().powi_scalar(2).sum_dim(1).sqrt().clamp_min(1e-12);
    x / norm
}

/// The projection heads of both modalities.
#[derive(Module, Debug)]
pub struct Heads {
    /// Expression feature (8 x width) -> 64 -> `dim`.
    pub expr: Projection,
    /// Landmark feature (FPN channels) -> 64 -> `dim`.
    pub landmark: Projection,
}

impl Heads {
    /// LA-Net's heads for a backbone built by `config`: `feature_dim -> 64 -> dim` and
    /// `fpn_channels -> 64 -> dim`.
    pub fn for_net(config: &LaNetConfig, dim: usize, device: &Device) -> Self {
        Heads {
            expr: Projection::new(config.feature_dim(), 64, dim, device),
            landmark: Projection::new(config.fpn_channels, 64, dim, device),
        }
    }

    /// Width of the embeddings.
    pub fn dim(&self) -> usize {
        self.expr.fc2.weight.dims()[1]
    }
}

/// The momentum (key) encoder: a copy of the backbone and heads that is never trained directly.
#[derive(Module, Debug)]
pub struct MomentumEncoder {
    /// Backbone copy.
    pub net: LaNet,
    /// Heads copy.
    pub heads: Heads,
}

/// Embedded keys of a batch, both modalities, `[N, dim]` each, unit rows, no gradient.
#[derive(Debug, Clone)]
pub struct Keys {
    /// From the expression feature.
    pub expr: Tensor<2>,
    /// From the landmark feature.
    pub landmark: Tensor<2>,
}

impl MomentumEncoder {
    /// A copy of `net` and `heads` (built by `config` and [`Heads::for_net`]) with the same
    /// values, its own storage (BatchNorm running statistics included), and no gradients.
    pub fn new(net: &LaNet, heads: &Heads, config: &LaNetConfig, device: &Device) -> Self {
        let dim = heads.dim();
        MomentumEncoder {
            net: copy_values(net, config.init(device)).no_grad(),
            heads: copy_values(heads, Heads::for_net(config, dim, device)).no_grad(),
        }
    }

    /// Keys of a batch of images (BatchNorm in training mode, as for the queries).
    pub fn keys(&self, images: Tensor<4>) -> Keys {
        let out = self.net.forward(images);
        Keys {
            expr: self.heads.expr.forward(out.expr_feature).detach(),
            landmark: self.heads.landmark.forward(out.landmark_feature).detach(),
        }
    }

    /// `self = m * self + (1 - m) * online`, for every float value (parameters and BatchNorm
    /// running statistics).
    pub fn follow(&mut self, net: &LaNet, heads: &Heads, m: f64) {
        // Cloning a module only clones handles; the blend replaces every value.
        self.net = ema(net, self.net.clone(), m);
        self.heads = ema(heads, self.heads.clone(), m);
    }
}

fn ema<M: Module>(online: &M, target: M, m: f64) -> M {
    let mut collect = Collect(Vec::new());
    online.visit(&mut collect);
    target.map(&mut Blend {
        values: collect.0.into_iter(),
        m,
    })
}

/// Every float value of a module, flattened, detached.
struct Collect(Vec<Tensor<1>>);

impl ModuleVisitor for Collect {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.0.push(param.val().detach().flatten(0, D - 1));
    }
}

struct Blend {
    values: std::vec::IntoIter<Tensor<1>>,
    m: f64,
}

impl ModuleMapper for Blend {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let online = self
            .values
            .next()
            .expect("ema: modules of the same structure");
        let m = self.m;
        param.map(|old| {
            let shape = old.shape();
            let online: Tensor<D> = online.reshape(shape);
            (old.mul_scalar(m) + online.mul_scalar(1.0 - m)).detach()
        })
    }
}

/// A first-in-first-out queue of `capacity` unit vectors with their pseudo-labels.
#[derive(Debug, Clone, PartialEq)]
pub struct Queue {
    /// Row-major `[capacity, dim]`.
    pub values: Vec<f32>,
    /// A label per row; [`Queue::EMPTY`] for rows never filled.
    pub labels: Vec<i64>,
    /// Vector width.
    pub dim: usize,
    /// The next row to overwrite.
    pub head: usize,
}

impl Queue {
    /// The label of rows that hold the initial random vectors: equal to no pseudo-label, so they
    /// are always negatives (as MoCo's random initial queue is).
    pub const EMPTY: i64 = i64::MIN;

    /// A queue filled with random unit vectors drawn from `seed`.
    pub fn new(capacity: usize, dim: usize, seed: u64) -> Self {
        let mut rng = crate::rng::SplitMix64::new(seed);
        let mut values = Vec::with_capacity(capacity * dim);
        for _ in 0..capacity {
            let row: Vec<f32> = (0..dim).map(|_| rng.normal() as f32).collect();
            let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
            values.extend(row.into_iter().map(|v| v / norm));
        }
        Queue {
            values,
            labels: vec![Self::EMPTY; capacity],
            dim,
            head: 0,
        }
    }

    /// Rows held.
    pub fn capacity(&self) -> usize {
        self.labels.len()
    }

    /// The queue as a `[capacity, dim]` tensor.
    pub fn tensor(&self, device: &Device) -> Tensor<2> {
        Tensor::from_data(
            TensorData::new(self.values.clone(), [self.capacity(), self.dim]),
            device,
        )
    }

    /// Replaces the oldest rows by `keys` (row-major `[n, dim]`) and their labels.
    pub fn push(&mut self, keys: &[f32], labels: &[i64]) {
        let cap = self.capacity();
        if cap == 0 {
            return;
        }
        for (row, &label) in keys.chunks(self.dim).zip(labels) {
            let at = self.head;
            self.values[at * self.dim..(at + 1) * self.dim].copy_from_slice(row);
            self.labels[at] = label;
            self.head = (at + 1) % cap;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::lanet::LaNetConfig;

    #[test]
    fn queue_overwrites_its_oldest_rows_in_order() {
        let mut q = Queue::new(3, 2, 1);
        for row in q.values.chunks(2) {
            let n: f32 = row.iter().map(|v| v * v).sum();
            assert!((n - 1.0).abs() < 1e-5, "initial rows are unit vectors");
        }
        q.push(&[1.0, 0.0, 0.0, 1.0], &[4, 5]);
        assert_eq!(q.labels, vec![4, 5, Queue::EMPTY]);
        q.push(&[0.6, 0.8, 0.8, 0.6], &[6, 7]);
        assert_eq!(q.labels, vec![7, 5, 6]);
        assert_eq!(&q.values[..2], &[0.8, 0.6]);
        assert_eq!(q.head, 1);
    }

    #[test]
    fn momentum_encoder_starts_equal_and_moves_by_one_minus_m() {
        let device = Device::flex().autodiff();
        let config = LaNetConfig::new()
            .with_width(4)
            .with_blocks(1)
            .with_landmarks(Some(vec![36, 45, 30]))
            .with_fpn_channels(8);
        let net = config.init(&device);
        let heads = Heads::for_net(&config, 4, &device);
        let enc = MomentumEncoder::new(&net, &heads, &config, &device);
        assert_eq!(heads.dim(), 4);
        let first = |h: &Heads| {
            let mut c = Collect(Vec::new());
            h.visit(&mut c);
            c.0.remove(0)
        };
        let (a, b) = (first(&heads), first(&enc.heads));
        assert_eq!(a.clone().into_data(), b.clone().into_data());
        assert!(!enc.heads.expr.fc1.weight.val().is_require_grad());

        // Against an online model whose values are all shifted by +1, one update with m = 0.75
        // moves every value by exactly 0.25.
        let shifted = heads.clone().map(&mut Shift);
        let mut enc = enc;
        enc.follow(&net, &shifted, 0.75);
        let moved = first(&enc.heads);
        let diff = (moved - b)
            .sub_scalar(0.25)
            .abs()
            .max()
            .into_scalar::<f32>();
        assert!(diff < 1e-6, "{diff}");
        // The online heads were not touched.
        assert_eq!(first(&heads).into_data(), a.into_data());
    }

    struct Shift;
    impl ModuleMapper for Shift {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            param.map(|t| t.add_scalar(1.0))
        }
    }

    #[test]
    fn projections_are_unit_length() {
        let device = Device::flex();
        let p = Projection::new(6, 5, 4, &device);
        let x = Tensor::<2>::random([3, 6], burn::tensor::Distribution::Default, &device);
        let y = p.forward(x).powi_scalar(2).sum_dim(1);
        let v: Vec<f32> = y.into_data().convert::<f32>().try_to_vec().unwrap();
        for n in v {
            assert!((n - 1.0).abs() < 1e-5, "{n}");
        }
    }
}
