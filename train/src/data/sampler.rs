//! The progressively balanced sampler: each epoch draws the dataset's size in samples, with class
//! shares that move linearly from the empirical class frequencies (first epoch) to uniform over
//! the classes present (last epoch).
//!
//! Early epochs see the data as it is; later ones see rare classes (disgust, fear) as often as
//! common ones, without the instability of balancing from the start. Within a class the draw is
//! without replacement, as in LA-Net's reference sampler: a class asked for fewer faces than it
//! has gives distinct ones, a class asked for more gives every face as many whole times as fit
//! and distinct ones for the rest. Drawing with replacement would put duplicates in a batch,
//! which become each other's nearest neighbours in the label-distribution estimation and feed a
//! noisy label back to itself.

use crate::rng::SplitMix64;

/// Class probabilities for `epoch` (0-based) of `epochs`, from per-class sample counts.
///
/// `p_c = (1 - t) n_c / N + t / C'` with `t = epoch / (epochs - 1)` (1 when there is one epoch)
/// and `C'` the number of classes with at least one sample; empty classes get 0.
///
/// # Example
/// ```
/// let p = train::data::sampler::class_probabilities(&[6, 3, 1], 1, 3);
/// // Halfway: 0.5 * [0.6, 0.3, 0.1] + 0.5 * [1/3, 1/3, 1/3].
/// assert!((p[0] - 0.4666667).abs() < 1e-6 && (p[2] - 0.2166667).abs() < 1e-6);
/// ```
pub fn class_probabilities(counts: &[usize], epoch: usize, epochs: usize) -> Vec<f64> {
    let total: usize = counts.iter().sum();
    let present = counts.iter().filter(|&&n| n > 0).count();
    if total == 0 {
        return vec![0.0; counts.len()];
    }
    let t = if epochs <= 1 {
        1.0
    } else {
        (epoch.min(epochs - 1)) as f64 / (epochs - 1) as f64
    };
    counts
        .iter()
        .map(|&n| {
            if n == 0 {
                0.0
            } else {
                (1.0 - t) * n as f64 / total as f64 + t / present as f64
            }
        })
        .collect()
}

/// How many of `total` draws each class gets: `p_c * total` rounded by largest remainder, so the
/// counts sum to `total` exactly and a balanced set's counts are its own (ties go to the lower
/// class index).
pub fn class_quotas(p: &[f64], total: usize) -> Vec<usize> {
    let exact: Vec<f64> = p.iter().map(|&pc| pc * total as f64).collect();
    let mut quotas: Vec<usize> = exact.iter().map(|&x| (x + 1e-9).floor() as usize).collect();
    let mut order: Vec<usize> = (0..p.len()).filter(|&c| p[c] > 0.0).collect();
    order.sort_by(|&a, &b| {
        let frac = |c: usize| exact[c] - quotas[c] as f64;
        frac(b).total_cmp(&frac(a)).then(a.cmp(&b))
    });
    let assigned: usize = quotas.iter().sum();
    for &c in order.iter().cycle().take(total.saturating_sub(assigned)) {
        quotas[c] += 1;
    }
    quotas
}

/// The sample indices of one epoch: `labels.len()` draws, [`class_quotas`] of
/// [`class_probabilities`] per class, each class's draws without replacement (whole passes over
/// the class, then distinct faces for the remainder), shuffled. `labels[i]` is sample `i`'s class
/// index in `0..classes`.
pub fn epoch_indices(
    labels: &[usize],
    classes: usize,
    epoch: usize,
    epochs: usize,
    seed: u64,
) -> Vec<usize> {
    let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); classes];
    for (i, &l) in labels.iter().enumerate() {
        if l < classes {
            by_class[l].push(i);
        }
    }
    let counts: Vec<usize> = by_class.iter().map(Vec::len).collect();
    let quotas = class_quotas(
        &class_probabilities(&counts, epoch, epochs),
        counts.iter().sum(),
    );
    // Different epochs draw differently but reproducibly from one run seed.
    let mut rng = SplitMix64::new(seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut order = Vec::with_capacity(labels.len());
    for (members, &quota) in by_class.iter_mut().zip(&quotas) {
        if members.is_empty() {
            continue;
        }
        for _ in 0..quota / members.len() {
            order.extend_from_slice(members);
        }
        shuffle(members, &mut rng);
        order.extend_from_slice(&members[..quota % members.len()]);
    }
    shuffle(&mut order, &mut rng);
    order
}

/// Shuffles `v` in place (Fisher-Yates) with `rng`.
pub fn shuffle(v: &mut [usize], rng: &mut SplitMix64) {
    for i in (1..v.len()).rev() {
        v.swap(i, rng.below(i as u64 + 1) as usize);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_goes_from_empirical_to_uniform() {
        let counts = [6, 3, 1, 0];
        assert_eq!(class_probabilities(&counts, 0, 3), vec![0.6, 0.3, 0.1, 0.0]);
        let last = class_probabilities(&counts, 2, 3);
        for p in &last[..3] {
            assert!((p - 1.0 / 3.0).abs() < 1e-12);
        }
        assert_eq!(last[3], 0.0);
        for e in 0..3 {
            let s: f64 = class_probabilities(&counts, e, 3).iter().sum();
            assert!((s - 1.0).abs() < 1e-12);
        }
    }

    #[test]
    fn last_epoch_draws_classes_evenly() {
        // 900 of class 0, 100 of class 1: the last epoch should draw them about equally.
        let labels: Vec<usize> = (0..1000).map(|i| usize::from(i >= 900)).collect();
        let first = epoch_indices(&labels, 2, 0, 5, 3);
        let last = epoch_indices(&labels, 2, 4, 5, 3);
        let share = |idx: &[usize]| {
            idx.iter().filter(|&&i| labels[i] == 1).count() as f64 / idx.len() as f64
        };
        assert!((share(&first) - 0.1).abs() < 0.04, "{}", share(&first));
        assert!((share(&last) - 0.5).abs() < 0.05, "{}", share(&last));
        assert_eq!(first.len(), 1000);
        assert_eq!(epoch_indices(&labels, 2, 4, 5, 3), last, "reproducible");
    }

    #[test]
    fn quotas_round_by_largest_remainder() {
        // 10 draws at (0.46, 0.33, 0.21): floors 4, 3, 2 leave one for the largest remainder (0.6
        // of class 0).
        assert_eq!(class_quotas(&[0.46, 0.33, 0.21], 10), vec![5, 3, 2]);
        // Uniform over 3 classes of 10: 3.33 each, the spare draw to the lowest index.
        let third = 1.0 / 3.0;
        assert_eq!(class_quotas(&[third; 3], 10), vec![4, 3, 3]);
        assert_eq!(class_quotas(&[0.5, 0.0, 0.5], 4), vec![2, 0, 2]);
    }

    #[test]
    fn a_balanced_set_gives_every_face_once_an_epoch() {
        let labels: Vec<usize> = (0..700).map(|i| i % 7).collect();
        for epoch in 0..4 {
            let mut order = epoch_indices(&labels, 7, epoch, 4, 1);
            assert_ne!(order[..7], [0, 1, 2, 3, 4, 5, 6], "shuffled");
            order.sort_unstable();
            assert_eq!(order, (0..700).collect::<Vec<_>>(), "epoch {epoch}");
        }
    }

    #[test]
    fn class_shares_follow_the_schedule_without_duplicates_below_quota() {
        // 6 of class 0, 3 of class 1, 1 of class 2; at epoch 1 of 3 the shares are
        // (0.4667, 0.3167, 0.2167) of 10 draws: quotas 5, 3, 2 (largest remainder).
        let labels = [0, 0, 0, 0, 0, 0, 1, 1, 1, 2];
        let order = epoch_indices(&labels, 3, 1, 3, 9);
        let per_class = |c: usize| order.iter().filter(|&&i| labels[i] == c).count();
        assert_eq!((per_class(0), per_class(1), per_class(2)), (5, 3, 2));
        // Class 0 gets 5 of its 6 faces, each once; class 1 all three once; class 2's single
        // face twice (one whole pass per quota).
        let mut zeros: Vec<usize> = order.iter().copied().filter(|&i| labels[i] == 0).collect();
        zeros.sort_unstable();
        zeros.dedup();
        assert_eq!(zeros.len(), 5);
        assert_eq!(order.iter().filter(|&&i| i == 9).count(), 2);
    }
}
