//! Label distribution estimation (LDE): each sample's target distribution is built from its
//! nearest neighbours' predictions, in expression-feature space and in landmark-feature space,
//! weighted by a learned pair scorer, then mixed with the sample's history.
//!
//! Per space and batch (N samples): L2-normalise the features, take the K most cosine-similar
//! *other* samples as neighbours (a constant 0/1 mask), score every ordered pair `(i, j)` with a
//! small MLP on `[first half of fc_in(x_i), second half of fc_in(x_j)]`, keep the scores of the
//! neighbours, normalise each row `w_ij = (a_ij + eps/N) / (sum_j a_ij + eps)`, and aggregate the
//! neighbours' softmax predictions `d = W p`. The current target is the mean of the two spaces'
//! `d`; the training target is `m * history + (1 - m) * current`, and the history bank takes that
//! value (detached). These rules, including the eps/N leak and the asymmetric pair input, follow
//! the reference implementation (commit 74bb121) as documented with its golden values.

use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::{relu, softmax};
use burn::tensor::TensorData;

/// The pair scorer of one feature space.
#[derive(Module, Debug)]
pub struct PairScorer {
    /// Per-sample projection, `D -> D`.
    pub fc_in: Linear,
    /// `D -> D/2`.
    pub fc1: Linear,
    /// `D/2 -> D/4`.
    pub fc2: Linear,
    /// `D/4 -> 2`; the pair score is the softmax's first component.
    pub fc_out: Linear,
}

/// Builds a [`PairScorer`].
#[derive(Config, Debug)]
pub struct PairScorerConfig {
    /// Feature width `D` (even, at least 4).
    pub dim: usize,
}

impl PairScorerConfig {
    /// A scorer with freshly initialised weights.
    pub fn init(&self, device: &Device) -> PairScorer {
        let d = self.dim;
        PairScorer {
            fc_in: LinearConfig::new(d, d).init(device),
            fc1: LinearConfig::new(d, d / 2).init(device),
            fc2: LinearConfig::new(d / 2, d / 4).init(device),
            fc_out: LinearConfig::new(d / 4, 2).init(device),
        }
    }
}

impl PairScorer {
    /// Scores every ordered pair of the batch.
    ///
    /// # Shapes
    /// `features` `[N, D]` -> scores `[N, N]`, row = anchor `i`, column = candidate `j`.
    pub fn forward(&self, features: Tensor<2>) -> Tensor<2> {
        let [n, d] = features.dims();
        let half = d / 2;
        let h = self.fc_in.forward(features); // [N, D]
        let anchor = h
            .clone()
            .narrow(1, 0, half)
            .unsqueeze_dim::<3>(1)
            .expand([n, n, half]);
        let other = h
            .narrow(1, half, d - half)
            .unsqueeze_dim::<3>(0)
            .expand([n, n, d - half]);
        let pairs = Tensor::cat(vec![anchor, other], 2).reshape([n * n, d]); // [N*N, D]
        let x = relu(self.fc1.forward(pairs));
        let x = relu(self.fc2.forward(x));
        let p = softmax(self.fc_out.forward(x), 1); // [N*N, 2]
        p.narrow(1, 0, 1).reshape([n, n])
    }
}

/// The K nearest neighbours of each sample of a batch by cosine similarity, self excluded, most
/// similar first.
///
/// Computed on the host: it carries no gradient, and ties must break the same way on every
/// backend (the lower index first).
///
/// # Shapes
/// `features` `[N, D]` -> `N` lists of `min(k, N - 1)` row indices.
pub fn knn(features: &Tensor<2>, k: usize) -> Vec<Vec<usize>> {
    let [n, d] = features.dims();
    let x = host_values(features);
    let norms: Vec<f32> = x
        .chunks(d)
        .map(|r| r.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12))
        .collect();
    (0..n)
        .map(|i| {
            let mut sims: Vec<(f32, usize)> = (0..n)
                .filter(|&j| j != i)
                .map(|j| {
                    let dot: f32 = x[i * d..(i + 1) * d]
                        .iter()
                        .zip(&x[j * d..(j + 1) * d])
                        .map(|(a, b)| a * b)
                        .sum();
                    (dot / (norms[i] * norms[j]), j)
                })
                .collect();
            sims.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
            sims.iter().take(k).map(|&(_, j)| j).collect()
        })
        .collect()
}

/// The 0/1 mask of `neighbours` (as [`knn`] gives them): row `i` has ones at its neighbours.
///
/// # Shapes
/// `N` lists -> `[N, N]`.
pub fn neighbour_mask(neighbours: &[Vec<usize>], device: &Device) -> Tensor<2> {
    let n = neighbours.len();
    let mut mask = vec![0.0f32; n * n];
    for (i, row) in neighbours.iter().enumerate() {
        for &j in row {
            mask[i * n + j] = 1.0;
        }
    }
    Tensor::from_data(TensorData::new(mask, [n, n]), device)
}

/// kNN purity: the share of the anchors' neighbours whose clean label equals the anchor's,
/// over every anchor with neighbours; `labels[i]` is batch row `i`'s clean label. `None` when no
/// anchor has a neighbour.
///
/// # Example
/// ```
/// use train::model::lde::purity;
/// // Anchor 0's neighbours 1 (same class) and 2 (not); anchor 1's neighbour 0 (same): 2 of 3.
/// let p = purity(&[vec![1, 2], vec![0], vec![]], &[4, 4, 5]).unwrap();
/// assert!((p - 2.0 / 3.0).abs() < 1e-12);
/// ```
pub fn purity(neighbours: &[Vec<usize>], labels: &[usize]) -> Option<f64> {
    let (same, all) = neighbour_counts(neighbours, labels);
    (all > 0).then(|| same as f64 / all as f64)
}

/// Of the neighbour pairs of `neighbours`, how many share the anchor's label, and how many there
/// are (the two sums of [`purity`], to pool over batches).
pub fn neighbour_counts(neighbours: &[Vec<usize>], labels: &[usize]) -> (usize, usize) {
    neighbours
        .iter()
        .enumerate()
        .fold((0, 0), |(same, all), (i, row)| {
            (
                same + row.iter().filter(|&&j| labels[j] == labels[i]).count(),
                all + row.len(),
            )
        })
}

/// A float tensor's values on the host, row-major, detached from any graph.
pub fn host_values(t: &Tensor<2>) -> Vec<f32> {
    t.clone()
        .detach()
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .expect("a float tensor converts to f32 values")
}

/// Masked, row-normalised pair weights `w_ij = (s_ij m_ij + eps/N) / (sum_j s_ij m_ij + eps)`.
///
/// # Shapes
/// `scores`, `mask` `[N, N]` -> `[N, N]`, rows summing to 1.
pub fn pair_weights(scores: Tensor<2>, mask: Tensor<2>, eps: f64) -> Tensor<2> {
    let [_, n] = scores.dims();
    let a = scores * mask;
    let row = a.clone().sum_dim(1).add_scalar(eps); // [N, 1]
    a.add_scalar(eps / n as f64) / row
}

/// The LDE step's settings (the feature widths come from the network, see [`LdeConfig::init`]).
#[derive(Config, Debug, PartialEq)]
pub struct LdeConfig {
    /// Neighbours per sample.
    #[config(default = 8)]
    pub k: usize,
    /// History weight `m` in `m * history + (1 - m) * current`. Each sample's one-hot label
    /// keeps weight `m^epochs`, so short runs need a smaller `m` than the paper's 0.9 over 80.
    #[config(default = 0.9)]
    pub momentum: f64,
    /// Normalisation epsilon.
    #[config(default = 1e-8)]
    pub eps: f64,
}

impl LdeConfig {
    /// The two pair scorers, for expression and landmark features of these widths.
    pub fn init(&self, expr_dim: usize, landmark_dim: usize, device: &Device) -> Lde {
        Lde {
            expr_score: PairScorerConfig::new(expr_dim).init(device),
            landmark_score: PairScorerConfig::new(landmark_dim).init(device),
        }
    }
}

/// The learned part of LDE: one pair scorer per feature space.
#[derive(Module, Debug)]
pub struct Lde {
    /// Scores pairs in expression-feature space.
    pub expr_score: PairScorer,
    /// Scores pairs in landmark-feature space.
    pub landmark_score: PairScorer,
}

/// What one LDE step computes.
#[derive(Debug, Clone)]
pub struct LdeOutput {
    /// Each sample's neighbours, expression and landmark space (what the masks hold).
    pub neighbours: [Vec<Vec<usize>>; 2],
    /// Neighbour masks, expression and landmark space, `[N, N]`.
    pub masks: [Tensor<2>; 2],
    /// Pair weights, expression and landmark space, `[N, N]`.
    pub weights: [Tensor<2>; 2],
    /// Aggregated neighbour predictions, expression and landmark space, `[N, C]`.
    pub aggregated: [Tensor<2>; 2],
    /// Mean of the two, `[N, C]`.
    pub current: Tensor<2>,
    /// The training targets, `m * history + (1 - m) * current`, `[N, C]` (not detached: the KL
    /// loss trains the pair scorers through them).
    pub targets: Tensor<2>,
}

impl Lde {
    /// One LDE step on a batch.
    ///
    /// # Shapes
    /// `expr` `[N, Du]`, `landmark` `[N, Dv]`, `logits` `[N, C]`, `history` (the bank rows of the
    /// batch) `[N, C]`.
    pub fn forward(
        &self,
        expr: Tensor<2>,
        landmark: Tensor<2>,
        logits: Tensor<2>,
        history: Tensor<2>,
        config: &LdeConfig,
    ) -> LdeOutput {
        let probs = softmax(logits, 1);
        let device = expr.device();
        let neighbours = [knn(&expr, config.k), knn(&landmark, config.k)];
        let masks = [
            neighbour_mask(&neighbours[0], &device),
            neighbour_mask(&neighbours[1], &device),
        ];
        let weights = [
            pair_weights(self.expr_score.forward(expr), masks[0].clone(), config.eps),
            pair_weights(
                self.landmark_score.forward(landmark),
                masks[1].clone(),
                config.eps,
            ),
        ];
        let aggregated = [
            weights[0].clone().matmul(probs.clone()),
            weights[1].clone().matmul(probs),
        ];
        let current = (aggregated[0].clone() + aggregated[1].clone()).mul_scalar(0.5);
        let targets =
            history.mul_scalar(config.momentum) + current.clone().mul_scalar(1.0 - config.momentum);
        LdeOutput {
            neighbours,
            masks,
            weights,
            aggregated,
            current,
            targets,
        }
    }
}

/// Each training sample's label-distribution history, initialised to its one-hot (given, possibly
/// noisy) label. Kept on the host: it is state, not a parameter, and is indexed by dataset row.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryBank {
    classes: usize,
    rows: Vec<f32>,
}

impl HistoryBank {
    /// One one-hot row per dataset sample.
    pub fn from_labels(labels: &[usize], classes: usize) -> Self {
        let mut rows = vec![0.0; labels.len() * classes];
        for (i, &l) in labels.iter().enumerate() {
            rows[i * classes + l.min(classes - 1)] = 1.0;
        }
        HistoryBank { classes, rows }
    }

    /// From raw rows (`len` a multiple of `classes`), e.g. restored from a checkpoint.
    pub fn from_rows(rows: Vec<f32>, classes: usize) -> Self {
        HistoryBank { classes, rows }
    }

    /// All rows, row-major.
    pub fn rows(&self) -> &[f32] {
        &self.rows
    }

    /// The rows of the batch's dataset indices.
    pub fn gather(&self, indices: &[usize], device: &Device) -> Tensor<2> {
        let c = self.classes;
        let data: Vec<f32> = indices
            .iter()
            .flat_map(|&i| self.rows[i * c..(i + 1) * c].iter().copied())
            .collect();
        Tensor::from_data(TensorData::new(data, [indices.len(), c]), device)
    }

    /// Overwrites the batch's rows with `targets` (detached); with duplicate indices the last wins.
    pub fn update(&mut self, indices: &[usize], targets: &Tensor<2>) {
        let c = self.classes;
        let values = host_values(targets);
        for (row, &i) in indices.iter().enumerate() {
            self.rows[i * c..(i + 1) * c].copy_from_slice(&values[row * c..(row + 1) * c]);
        }
    }
}
