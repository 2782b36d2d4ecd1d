//! The losses: LA-Net's KL to the LDE targets, Adaptive Wing for the landmark heatmaps and
//! expression-landmark contrastive loss, and the supervised contrastive loss of the second
//! method (Khosla et al. 2020).

use burn::prelude::*;
use burn::tensor::activation::log_softmax;
use burn::tensor::TensorData;
use edge_fer::classify::argmax;

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
            let best = argmax(row);
            let p = row[best];
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

    // Scores against the keys [N, N] and against the queue [N, Q].
    let pos = queries
        .clone()
        .matmul(keys.detach().transpose())
        .div_scalar(temperature);
    let neg = (queries.matmul(queue.detach().transpose()) - excluded.mul_scalar(1e10))
        .div_scalar(temperature);
    // log-sum-exp over the queue, per anchor, stabilised by its row maximum. [N, 1]
    let neg_max = neg.clone().max_dim(1).detach();
    let neg_lse = (neg - neg_max.clone()).exp().sum_dim(1).log() + neg_max;
    // log(exp(pos_ij) + exp(neg_lse_i)), stabilised per anchor by the largest term of its row
    // (logits are bounded by 1/tau, so no term underflows against it). [N, N] op [N, 1]
    // broadcasts.
    let m = pos.clone().max_dim(1).max_pair(neg_lse.clone()).detach(); // [N, 1]
    let lse = ((pos.clone() - m.clone()).exp() + (neg_lse - m.clone()).exp()).log() + m;
    let per_pair = lse - pos; // [N, N]
    let per_anchor = (per_pair * positives.clone()).sum_dim(1) / positives.sum_dim(1);
    per_anchor.mean()
}

/// Supervised contrastive loss (Khosla et al. 2020, the `L_out` form) over one batch.
///
/// For anchor `i` with positives `P(i)` (the other samples with its label) the loss is
/// `-1/|P(i)| sum_{p in P(i)} log( exp(z_i . z_p / tau) / sum_{a != i} exp(z_i . z_a / tau) )`,
/// averaged over the anchors that have a positive (0 when none has). The rows of `z` are
/// expected to be L2-normalised.
///
/// # Shapes
/// `z` `[N, D]`, `labels` `N` long -> `[1]`.
pub fn supervised_contrastive(z: Tensor<2>, labels: &[usize], temperature: f64) -> Tensor<1> {
    let device = z.device();
    let n = labels.len();
    let mut positives = vec![0.0f32; n * n];
    let mut diagonal = vec![0.0f32; n * n];
    for i in 0..n {
        diagonal[i * n + i] = 1.0;
        for j in 0..n {
            if i != j && labels[i] == labels[j] {
                positives[i * n + j] = 1.0;
            }
        }
    }
    let positives: Tensor<2> = Tensor::from_data(TensorData::new(positives, [n, n]), &device);
    let diagonal: Tensor<2> = Tensor::from_data(TensorData::new(diagonal, [n, n]), &device);
    let sim = z.clone().matmul(z.transpose()).div_scalar(temperature); // [N, N]
                                                                       // The anchor itself is left out of the denominator; logits are bounded by 1/tau, so one
                                                                       // detached row maximum keeps the exponentials finite.
    let others = sim.clone() - diagonal.mul_scalar(1e10);
    let m = others.clone().max_dim(1).detach(); // [N, 1]
    let lse = (others - m.clone()).exp().sum_dim(1).log() + m; // [N, 1]
    let log_prob = sim - lse; // [N, N]
    let counts = positives.clone().sum_dim(1); // [N, 1]
    let has = counts.clone().greater_elem(0.0).float(); // [N, 1]
    let per_anchor = (log_prob * positives).sum_dim(1).neg() / counts.clamp_min(1.0);
    let anchors = has.clone().sum().clamp_min(1.0);
    (per_anchor * has).sum() / anchors
}

#[cfg(test)]
mod tests {
    use super::*;

    fn z(rows: &[[f32; 2]]) -> Tensor<2> {
        let flat: Vec<f32> = rows.iter().flatten().copied().collect();
        Tensor::from_data(TensorData::new(flat, [rows.len(), 2]), &Device::flex())
    }

    fn scl(rows: &[[f32; 2]], labels: &[usize], tau: f64) -> f32 {
        supervised_contrastive(z(rows), labels, tau).into_scalar::<f32>()
    }

    #[test]
    fn supervised_contrastive_by_hand() {
        // z0 = z1 = (1, 0), z2 = (0, 1); labels 0, 0, 1. Anchor 0: its one positive z1 scores
        // 1/tau, the negative z2 scores 0, so its loss is -ln(e^(1/tau) / (e^(1/tau) + 1)) =
        // ln(1 + e^(-1/tau)); anchor 1 is the same; anchor 2 has no positive and is left out.
        let rows = [[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]];
        let got = scl(&rows, &[0, 0, 1], 1.0);
        assert!((got - 0.313_261_7).abs() < 1e-6, "{got}"); // ln(1 + 1/e)
        let got = scl(&rows, &[0, 0, 1], 0.5);
        assert!((got - 0.126_928).abs() < 1e-6, "{got}"); // ln(1 + e^-2)

        // Three samples of one class at 0, 53.13 and 90 degrees: z0 . z1 = 0.6, z1 . z2 = 0.8,
        // z0 . z2 = 0; tau = 0.5 doubles them. Every other sample is a positive, so each
        // anchor's loss is the mean of ln(sum of its two exps) - score:
        //   anchor 0: scores 1.2, 0:   ln(e^1.2 + 1)     = 1.46330 -> (0.26330 + 1.46330) / 2
        //   anchor 1: scores 1.2, 1.6: ln(e^1.2 + e^1.6) = 2.11302 -> (0.91302 + 0.51302) / 2
        //   anchor 2: scores 0, 1.6:   ln(1 + e^1.6)     = 1.78390 -> (1.78390 + 0.18390) / 2
        // and the batch loss is their mean, 0.85340.
        let rows = [[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]];
        let got = scl(&rows, &[2, 2, 2], 0.5);
        assert!((got - 0.853_399_5).abs() < 1e-5, "{got}");
    }

    #[test]
    fn supervised_contrastive_without_positives_is_zero_and_pulls_classes_together() {
        let rows = [[1.0, 0.0], [0.0, 1.0]];
        assert_eq!(scl(&rows, &[0, 1], 0.1), 0.0);
        // Same labels: moving the pair closer lowers the loss.
        let apart = scl(&[[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]], &[0, 0, 1], 0.1);
        let close = scl(&[[1.0, 0.0], [0.8, 0.6], [-1.0, 0.0]], &[0, 0, 1], 0.1);
        assert!(close < apart, "{close} vs {apart}");
    }
}
