//! UERM, the uncertainty estimation and relabelling module of the second method (Yang et al.,
//! Int. J. Neural Systems 2023), as this project builds it (the paper's code is not public).
//!
//! - **Uncertainty**: each training sample's predicted distributions (softmax of the logits in
//!   its training steps, which cost nothing extra) are averaged per epoch, and the epoch means of
//!   the last `window` epochs are averaged again. A sample's uncertainty is the entropy of that
//!   average: it is high both when the network is unsure in every epoch and when it changes its
//!   mind from epoch to epoch, which is how a sample with a wrong label behaves while the
//!   network resists fitting it. We chose this over a learned importance head (as in SCN)
//!   because it adds no parameters and no term to the loss, so it composes with LA-Net and SCL
//!   without retuning their weights.
//! - **Relabelling**, after each epoch from `from_epoch` on: of the `fraction` most uncertain
//!   samples, each whose averaged prediction's top class beats the probability of its current
//!   label by more than `margin` takes that class as its label. Labels can change again later,
//!   back to the given one included. The new labels feed cross-entropy, SCL's positives and the
//!   sampler; LA-Net's history bank keeps its own estimate.

use edge_fer::classify::argmax;

/// When and how much UERM relabels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RelabelRule {
    /// Fraction of the training samples, the most uncertain, that may be relabelled.
    pub fraction: f64,
    /// How much the top class's probability must exceed the current label's.
    pub margin: f32,
}

/// One label changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Relabel {
    /// Training sample.
    pub index: usize,
    /// Label before.
    pub from: usize,
    /// Label after.
    pub to: usize,
}

/// Entropy (nats) of a distribution.
pub fn entropy(p: &[f32]) -> f32 {
    -p.iter()
        .filter(|&&v| v > 0.0)
        .map(|&v| v * v.ln())
        .sum::<f32>()
}

/// Applies the rule to `labels` given each sample's averaged prediction (`None` for a sample
/// never predicted, which is never relabelled) and returns the changes, in sample order.
/// Uncertainty ties are broken by sample index, so the result is deterministic.
pub fn relabel(
    predictions: &[Option<&[f32]>],
    labels: &mut [usize],
    rule: RelabelRule,
) -> Vec<Relabel> {
    let mut ranked: Vec<(f32, usize)> = predictions
        .iter()
        .enumerate()
        .filter_map(|(i, p)| p.map(|p| (entropy(p), i)))
        .collect();
    ranked.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    let take = (rule.fraction.clamp(0.0, 1.0) * labels.len() as f64).ceil() as usize;
    let mut changes: Vec<Relabel> = ranked
        .iter()
        .take(take)
        .filter_map(|&(_, i)| {
            let p = predictions[i]?;
            let best = argmax(p);
            let top = p[best];
            let from = labels[i];
            (best != from && top - p[from] > rule.margin).then_some(Relabel {
                index: i,
                from,
                to: best,
            })
        })
        .collect();
    changes.sort_by_key(|r| r.index);
    for r in &changes {
        labels[r.index] = r.to;
    }
    changes
}

/// Each training sample's predicted distributions over the last `window` epochs.
#[derive(Debug, Clone, PartialEq)]
pub struct PredictionHistory {
    classes: usize,
    window: usize,
    /// This epoch's sums of predicted distributions, `[N, C]`, and how many were added.
    sums: Vec<f32>,
    counts: Vec<u32>,
    /// Epoch means, `window` slots of `[N, C]`; a slot's sample without a prediction is NaN.
    slots: Vec<f32>,
    /// The slot the next epoch fills.
    next: usize,
}

impl PredictionHistory {
    /// An empty history for `samples` samples.
    ///
    /// # Panics
    /// If `window` or `classes` is 0.
    pub fn new(samples: usize, classes: usize, window: usize) -> Self {
        assert!(window > 0 && classes > 0);
        PredictionHistory {
            classes,
            window,
            sums: vec![0.0; samples * classes],
            counts: vec![0; samples],
            slots: vec![f32::NAN; window * samples * classes],
            next: 0,
        }
    }

    fn samples(&self) -> usize {
        self.counts.len()
    }

    /// Adds one step's predicted distributions (`indices.len()` rows of `classes`).
    pub fn record(&mut self, indices: &[usize], probs: &[f32]) {
        let c = self.classes;
        for (&i, row) in indices.iter().zip(probs.chunks(c)) {
            for (s, &p) in self.sums[i * c..(i + 1) * c].iter_mut().zip(row) {
                *s += p;
            }
            self.counts[i] += 1;
        }
    }

    /// Closes the epoch: its means go into the oldest slot.
    pub fn end_epoch(&mut self) {
        let (n, c) = (self.samples(), self.classes);
        let slot = &mut self.slots[self.next * n * c..(self.next + 1) * n * c];
        for i in 0..n {
            let count = self.counts[i];
            for k in 0..c {
                slot[i * c + k] = if count == 0 {
                    f32::NAN
                } else {
                    self.sums[i * c + k] / count as f32
                };
            }
        }
        self.sums.fill(0.0);
        self.counts.fill(0);
        self.next = (self.next + 1) % self.window;
    }

    /// Each sample's prediction averaged over the slots that have one (`None` if none has).
    pub fn averaged(&self) -> Vec<Option<Vec<f32>>> {
        let (n, c) = (self.samples(), self.classes);
        (0..n)
            .map(|i| {
                let mut mean = vec![0.0f32; c];
                let mut used = 0;
                for slot in self.slots.chunks(n * c) {
                    let row = &slot[i * c..(i + 1) * c];
                    if row[0].is_nan() {
                        continue;
                    }
                    used += 1;
                    for (m, &v) in mean.iter_mut().zip(row) {
                        *m += v;
                    }
                }
                (used > 0).then(|| mean.into_iter().map(|m| m / used as f32).collect())
            })
            .collect()
    }

    /// The epoch slots and the next slot, for a resumable state (saved between epochs, when
    /// the running sums are empty).
    pub fn slots(&self) -> (&[f32], usize) {
        (&self.slots, self.next)
    }

    /// Restores slots saved by [`PredictionHistory::slots`].
    ///
    /// # Errors
    /// A message if they do not fit this history's size.
    pub fn restore(&mut self, slots: Vec<f32>, next: usize) -> anyhow::Result<()> {
        if slots.len() != self.slots.len() || next >= self.window {
            anyhow::bail!(
                "prediction history of {} values (next slot {next}); this run needs {} in {} slots",
                slots.len(),
                self.slots.len(),
                self.window
            );
        }
        self.slots = slots;
        self.next = next;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relabelling_rule_by_hand() {
        // Averaged predictions over 3 classes and their entropies (nats):
        //   s0 [0.90, 0.05, 0.05] label 0: 0.394 (confident, agrees with its label)
        //   s1 [0.20, 0.50, 0.30] label 0: 1.030; class 1 beats label 0 by 0.30
        //   s2 [0.40, 0.45, 0.15] label 0: 1.010; class 1 beats label 0 by 0.05
        //   s3 [0.34, 0.33, 0.33] label 2: 1.099 (most uncertain); class 0 beats 2 by 0.01
        let p: [&[f32]; 4] = [
            &[0.90, 0.05, 0.05],
            &[0.20, 0.50, 0.30],
            &[0.40, 0.45, 0.15],
            &[0.34, 0.33, 0.33],
        ];
        assert!((entropy(p[1]) - 1.029_653).abs() < 1e-5);
        let preds: Vec<Option<&[f32]>> = p.iter().map(|&r| Some(r)).collect();
        let given = [0, 0, 0, 2];
        let run = |fraction: f64, margin: f32| {
            let mut labels = given;
            let changes = relabel(&preds, &mut labels, RelabelRule { fraction, margin });
            (changes, labels)
        };
        // A quarter: only s3, whose margin (0.01) is too small.
        assert_eq!(run(0.25, 0.2), (vec![], given));
        // Half: s3 and s1; s1 moves to class 1.
        let moved = Relabel {
            index: 1,
            from: 0,
            to: 1,
        };
        assert_eq!(run(0.5, 0.2), (vec![moved], [0, 1, 0, 2]));
        // Three quarters adds s2, whose lead of 0.05 is below the margin.
        assert_eq!(run(0.75, 0.2).0, vec![moved]);
        // Everyone, no margin: s1 and s2 move to 1, s3 to 0; s0 already has its top class.
        // The margin is strict: at 0.01 s3 (lead exactly 0.01) stays.
        assert_eq!(run(1.0, 0.0).1, [0, 1, 1, 0]);
        assert_eq!(run(1.0, 0.01).1, [0, 1, 1, 2]);
        // A sample never predicted is not a candidate.
        let mut labels = given;
        let partial = [None, Some(p[1]), None, None];
        assert_eq!(
            relabel(
                &partial,
                &mut labels,
                RelabelRule {
                    fraction: 1.0,
                    margin: 0.2
                }
            ),
            vec![moved]
        );
    }

    #[test]
    fn history_averages_epoch_means_over_the_window() {
        let mut h = PredictionHistory::new(2, 2, 2);
        // Epoch 1: sample 0 seen twice ([1, 0] and [0.5, 0.5] -> mean [0.75, 0.25]); sample 1
        // not seen.
        h.record(&[0], &[1.0, 0.0]);
        h.record(&[0], &[0.5, 0.5]);
        h.end_epoch();
        assert_eq!(h.averaged(), vec![Some(vec![0.75, 0.25]), None]);
        // Epoch 2: sample 0 [0.25, 0.75], sample 1 [0, 1]: the window holds both epochs.
        h.record(&[0, 1], &[0.25, 0.75, 0.0, 1.0]);
        h.end_epoch();
        assert_eq!(
            h.averaged(),
            vec![Some(vec![0.5, 0.5]), Some(vec![0.0, 1.0])]
        );
        // Epoch 3 replaces epoch 1: sample 0 is now the mean of [0.25, 0.75] and [1, 0].
        h.record(&[0, 1], &[1.0, 0.0, 1.0, 0.0]);
        h.end_epoch();
        assert_eq!(
            h.averaged(),
            vec![Some(vec![0.625, 0.375]), Some(vec![0.5, 0.5])]
        );
        // Saved and restored, it continues identically.
        let (slots, next) = h.slots();
        let mut copy = PredictionHistory::new(2, 2, 2);
        copy.restore(slots.to_vec(), next).unwrap();
        assert_eq!(copy, h);
        assert!(copy.restore(vec![0.0; 3], 0).is_err());
    }
}
