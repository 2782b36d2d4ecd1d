//! LA-Net's losses: the KL to the LDE targets, Adaptive Wing for the landmark heatmaps, and the
//! expression-landmark contrastive loss.

use burn::prelude::*;
use burn::tensor::activation::log_softmax;
use burn::tensor::TensorData;

/// `KL(targets || softmax(logits))` with "batchmean" reduction:
/// `sum_i sum_c t_ic (ln t_ic - log_softmax(logits)_ic) / N`, with `0 ln 0 = 0`.
///
/// `targets` is not detached: in LA-Net the gradient also flows through the target into the
/// logits and the pair scorers.
///
/// # Shapes
/// `targets`, `logits` `[N, C]` -> `[1]`.
pub fn kl_batchmean(targets: Tensor<2>, logits: Tensor<2>) -> Tensor<1> {
    let [n, _] = logits.dims();
    let log_t = targets.clone().clamp_min(1e-30).log();
    (targets * (log_t - log_softmax(logits, 1)))
        .sum()
        .div_scalar(n as f64)
}

/// Adaptive Wing loss parameters (Wang, Bo and Fuxin 2019), LA-Net's defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdaptiveWing {
    /// alpha: the exponent is `alpha - y`.
    pub alpha: f64,
    /// omega: the loss scale.
    pub omega: f64,
    /// epsilon: the error scale inside the log.
    pub epsilon: f64,
    /// theta: the error at which the loss turns linear.
    pub theta: f64,
}

impl Default for AdaptiveWing {
    fn default() -> Self {
        AdaptiveWing {
            alpha: 2.1,
            omega: 14.0,
            epsilon: 1.0,
            theta: 0.5,
        }
    }
}

impl AdaptiveWing {
    /// The element-wise loss, before weighting: with `d = |y - p|` and `e = alpha - y`,
    /// `omega ln(1 + (d/epsilon)^e)` where `d < theta`, else `A d - C` with
    /// `A = omega e (theta/epsilon)^(e-1) / (epsilon (1 + (theta/epsilon)^e))` and
    /// `C = theta A - omega ln(1 + (theta/epsilon)^e)`, which joins the two smoothly.
    ///
    /// # Shapes
    /// `pred`, `target` `[B, L, H, W]` -> same.
    pub fn elementwise(&self, pred: Tensor<4>, target: Tensor<4>) -> Tensor<4> {
        let d = (target.clone() - pred).abs();
        let e = target.neg().add_scalar(self.alpha);
        let ratio = self.theta / self.epsilon;
        let near = d
            .clone()
            .div_scalar(self.epsilon)
            .powf(e.clone())
            .add_scalar(1.0)
            .log()
            .mul_scalar(self.omega);
        // (theta/epsilon)^e and ^(e-1) as exp(e ln r): the exponent varies per element.
        let r_e = e.clone().mul_scalar(ratio.ln()).exp();
        let r_e1 = e.clone().sub_scalar(1.0).mul_scalar(ratio.ln()).exp();
        let a = (e * r_e1).mul_scalar(self.omega / self.epsilon) / r_e.clone().add_scalar(1.0);
        let c = a.clone().mul_scalar(self.theta) - r_e.add_scalar(1.0).log().mul_scalar(self.omega);
        let far = a * d.clone() - c;
        far.mask_where(d.lower_elem(self.theta), near)
    }

    /// The weighted loss, averaged over all `B * L * H * W` elements.
    ///
    /// # Shapes
    /// `pred`, `target`, `weight` `[B, L, H, W]` -> `[1]`.
    pub fn loss(&self, pred: Tensor<4>, target: Tensor<4>, weight: Tensor<4>) -> Tensor<1> {
        (self.elementwise(pred, target) * weight).mean()
    }
}

/// Pseudo-labels for the expression-landmark contrastive loss: the argmax class of a sample's
/// LDE target when its probability is at least `threshold`, else an id of its own,
/// `-(dataset_index + 1)`, which can equal neither a class nor another sample's id.
///
/// (The reference implementation uses `-dataset_index`, so sample 0's id collides with class 0.)
pub fn pseudo_labels(
    targets: &[f32],
    classes: usize,
    dataset_indices: &[usize],
    threshold: f32,
) -> Vec<i64> {
    targets
        .chunks(classes)
        .zip(dataset_indices)
        .map(|(row, &idx)| {
            let (best, p) =
                row.iter()
                    .enumerate()
                    .fold((0, f32::MIN), |b, (i, &v)| if v > b.1 { (i, v) } else { b });
            if p >= threshold {
                best as i64
            } else {
                -(idx as i64 + 1)
            }
        })
        .collect()
}

/// One direction of the expression-landmark contrastive loss (MoCo-style, supervised positives).
///
/// For anchor `i` and each positive `j` (same pseudo-label, `i` itself included) the logits are
/// `[q_i . k_j, q_i . e_l for queue entries l] / tau`, with queue entries of `i`'s own label
/// removed (they are not negatives); the loss is `-log softmax(...)[0]`, averaged over `i`'s
/// positives, then over anchors. Keys and queue carry no gradient. Memory is `N x N + N x Q`: the
/// queue's log-sum-exp is computed once per anchor and combined with each positive's logit.
///
/// # Shapes
/// `queries`, `keys` `[N, D]` (L2-normalised), `queue` `[Q, D]`; labels `N` and `Q` long -> `[1]`.
pub fn contrastive_direction(
    queries: Tensor<2>,
    keys: Tensor<2>,
    queue: Tensor<2>,
    labels: &[i64],
    queue_labels: &[i64],
    temperature: f64,
) -> Tensor<1> {
    let device = queries.device();
    let (n, q) = (labels.len(), queue_labels.len());
    let same = |a: &[i64], b: &[i64]| -> Vec<f32> {
        a.iter()
            .flat_map(|x| b.iter().map(move |y| f32::from(u8::from(x == y))))
            .collect()
    };
    let positives: Tensor<2> =
        Tensor::from_data(TensorData::new(same(labels, labels), [n, n]), &device);
    let excluded: Tensor<2> =
        Tensor::from_data(TensorData::new(same(labels, queue_labels), [n, q]), &device);

    let pos = queries
        .clone()
        .matmul(keys.detach().transpose())
        .div_scalar(temperature); // [N, N]
    let neg = (queries.matmul(queue.detach().transpose()) - excluded.mul_scalar(1e10))
        .div_scalar(temperature); // [N, Q]
                                  // log-sum-exp over the queue, per anchor, stabilised by its row maximum.
    let neg_max = neg.clone().max_dim(1).detach(); // [N, 1]
    let neg_lse = (neg - neg_max.clone()).exp().sum_dim(1).log() + neg_max; // [N, 1]
                                                                            // log(exp(pos_ij) + exp(neg_lse_i)), stabilised per anchor by the largest term of its row
                                                                            // (logits are bounded by 1/tau, so no term underflows against it). [N, N] op [N, 1]
                                                                            // broadcasts.
    let m = pos.clone().max_dim(1).max_pair(neg_lse.clone()).detach(); // [N, 1]
    let lse = ((pos.clone() - m.clone()).exp() + (neg_lse - m.clone()).exp()).log() + m;
    let per_pair = lse - pos; // [N, N]
    let per_anchor = (per_pair * positives.clone()).sum_dim(1) / positives.sum_dim(1);
    per_anchor.mean()
}
