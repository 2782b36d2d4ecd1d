//! The progressively balanced sampler: each epoch draws the dataset's size in samples, with class
//! probabilities that move linearly from the empirical class frequencies (first epoch) to uniform
//! over the classes present (last epoch), and a uniform choice of sample within the class.
//!
//! Early epochs see the data as it is; later ones see rare classes (disgust, fear) as often as
//! common ones, without the instability of balancing from the start.

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

/// The sample indices of one epoch: `labels.len()` draws with replacement following
/// [`class_probabilities`]. `labels[i]` is sample `i`'s class index in `0..classes`.
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
    let p = class_probabilities(&counts, epoch, epochs);
    // Different epochs draw differently but reproducibly from one run seed.
    let mut rng = SplitMix64::new(seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    (0..labels.len())
        .filter_map(|_| {
            let mut u = rng.next_f64();
            let class = p.iter().position(|&pc| {
                u -= pc;
                u < 0.0
            });
            // Rounding can leave u a hair above 0 after the last class: take the last present one.
            let class = class.or_else(|| counts.iter().rposition(|&n| n > 0))?;
            let members = &by_class[class];
            Some(members[rng.below(members.len() as u64) as usize])
        })
        .collect()
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
}
