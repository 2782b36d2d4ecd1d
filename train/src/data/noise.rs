//! Seeded label noise: the controlled corruption the noisy-label experiments train on.
//!
//! Symmetric noise replaces a label, with probability `rate`, by a uniformly chosen *other* class:
//! a shift drawn uniformly from `1..classes` is added modulo `classes` (the rule LA-Net's
//! reference code applies). Asymmetric noise replaces it, with probability `rate`, by the class
//! people most confuse it with: anger -> disgust, disgust -> anger, fear -> surprise,
//! happiness -> neutral, sadness -> neutral, surprise -> anger, neutral -> sadness,
//! contempt -> neutral. Neither has fixed points, so every flip changes the label, and the result
//! keeps the original labels so a run can report which flips it recovered.

use super::Expression;
use crate::rng::SplitMix64;

/// Which noise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NoiseKind {
    /// Uniform over the other classes.
    Symmetric,
    /// Towards the most confusable class ([`asymmetric_target`]).
    Asymmetric,
}

/// A noise setting.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Noise {
    /// Which noise.
    pub kind: NoiseKind,
    /// Probability that a label is flipped, in [0, 1].
    pub rate: f64,
    /// Seed of the draws.
    pub seed: u64,
}

/// Labels after noise, with the originals kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoisyLabels {
    /// The labels to train on.
    pub labels: Vec<Expression>,
    /// The labels before noise.
    pub original: Vec<Expression>,
}

impl NoisyLabels {
    /// Whether sample `i`'s label was flipped.
    pub fn flipped(&self, i: usize) -> bool {
        self.labels[i] != self.original[i]
    }

    /// How many labels were flipped.
    pub fn flip_count(&self) -> usize {
        (0..self.labels.len()).filter(|&i| self.flipped(i)).count()
    }
}

/// The asymmetric-noise target of a class.
pub fn asymmetric_target(e: Expression) -> Expression {
    use Expression::*;
    match e {
        Anger => Disgust,
        Disgust => Anger,
        Fear => Surprise,
        Happiness => Neutral,
        Sadness => Neutral,
        Surprise => Anger,
        Neutral => Sadness,
        Contempt => Neutral,
    }
}

/// A noise setting that cannot be applied.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum NoiseError {
    /// The rate is not a fraction.
    #[error("noise rate {0} is outside [0, 1]")]
    Rate(f64),
    /// The noise rules are defined for 7 or 8 classes.
    #[error("noise needs 7 or 8 classes, not {0}")]
    Classes(usize),
    /// A label outside the class set.
    #[error("label {label} is not among the {classes} classes")]
    Label {
        /// The label.
        label: Expression,
        /// The class count.
        classes: usize,
    },
}

/// Applies `noise` to `labels` drawn from a set of `classes` classes (7 or 8).
///
/// # Errors
/// If the rate is outside [0, 1], `classes` is not 7 or 8, or a label is outside the class set.
pub fn inject(
    labels: &[Expression],
    classes: usize,
    noise: &Noise,
) -> Result<NoisyLabels, NoiseError> {
    if !(0.0..=1.0).contains(&noise.rate) {
        return Err(NoiseError::Rate(noise.rate));
    }
    if classes != 7 && classes != 8 {
        return Err(NoiseError::Classes(classes));
    }
    if let Some(&label) = labels.iter().find(|l| l.index() >= classes) {
        return Err(NoiseError::Label { label, classes });
    }
    let mut rng = SplitMix64::new(noise.seed);
    let noisy = labels
        .iter()
        .map(|&label| {
            // One draw per sample whatever the outcome, so a sample's fate does not depend on
            // the fates before it beyond the seed.
            if rng.next_f64() >= noise.rate {
                return label;
            }
            match noise.kind {
                NoiseKind::Symmetric => {
                    let shift = 1 + rng.below(classes as u64 - 1) as usize;
                    Expression::from_index((label.index() + shift) % classes).unwrap_or(label)
                }
                NoiseKind::Asymmetric => asymmetric_target(label),
            }
        })
        .collect();
    Ok(NoisyLabels {
        labels: noisy,
        original: labels.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn golden() -> serde_json::Value {
        serde_json::from_str(include_str!("../../tests/fixtures/noise.json")).unwrap()
    }

    fn many(n: usize) -> Vec<Expression> {
        (0..n).map(|i| Expression::ALL[i % 7]).collect()
    }

    #[test]
    fn asymmetric_map_is_the_reference_map() {
        let map = golden()["asymmetric_map"].clone();
        for e in &Expression::ALL[..7] {
            let want = map[e.index().to_string()].as_u64().unwrap() as usize;
            assert_eq!(asymmetric_target(*e).index(), want, "{e}");
        }
        assert_eq!(asymmetric_target(Expression::Contempt), Expression::Neutral);
    }

    #[test]
    fn asymmetric_flips_at_the_rate_and_only_along_the_map() {
        let labels = many(20_000);
        let noisy = inject(
            &labels,
            7,
            &Noise {
                kind: NoiseKind::Asymmetric,
                rate: 0.3,
                seed: 1,
            },
        )
        .unwrap();
        let rate = noisy.flip_count() as f64 / labels.len() as f64;
        // 20k Bernoulli(0.3) draws: standard deviation 0.0032.
        assert!((rate - 0.3).abs() < 0.015, "{rate}");
        for (i, &label) in labels.iter().enumerate() {
            if noisy.flipped(i) {
                assert_eq!(noisy.labels[i], asymmetric_target(label));
            }
        }
    }

    #[test]
    fn symmetric_spreads_flips_uniformly_over_the_other_classes() {
        let labels = vec![Expression::Happiness; 60_000];
        let noisy = inject(
            &labels,
            7,
            &Noise {
                kind: NoiseKind::Symmetric,
                rate: 0.5,
                seed: 9,
            },
        )
        .unwrap();
        let mut to = [0usize; 7];
        for l in &noisy.labels {
            to[l.index()] += 1;
        }
        assert!((to[3] as f64 / 60_000.0 - 0.5).abs() < 0.01, "{to:?}");
        // Each of the 6 other classes gets 1/12 of the samples (5000 expected, sd ~68).
        for (c, &n) in to.iter().enumerate().filter(|(c, _)| *c != 3) {
            assert!((n as i64 - 5000).abs() < 400, "class {c}: {to:?}");
        }
        // The reference's rule: old label + shift in 1..=6, mod 7 (golden list for happiness).
        let allowed = &golden()["symmetric_rule"]["resulting_new_label_for_each_old"]["happiness"];
        assert_eq!(allowed.as_array().unwrap().len(), 6);
    }

    #[test]
    fn same_seed_same_flips_other_seed_other_flips() {
        let labels = many(1000);
        let n = |seed| {
            inject(
                &labels,
                7,
                &Noise {
                    kind: NoiseKind::Symmetric,
                    rate: 0.3,
                    seed,
                },
            )
            .unwrap()
        };
        assert_eq!(n(5), n(5));
        assert_ne!(n(5).labels, n(6).labels);
    }

    #[test]
    fn zero_rate_changes_nothing_and_bad_settings_are_refused() {
        let labels = many(100);
        let noisy = inject(
            &labels,
            7,
            &Noise {
                kind: NoiseKind::Asymmetric,
                rate: 0.0,
                seed: 0,
            },
        )
        .unwrap();
        assert_eq!(noisy.flip_count(), 0);
        assert!(inject(
            &labels,
            7,
            &Noise {
                kind: NoiseKind::Symmetric,
                rate: 1.5,
                seed: 0
            }
        )
        .is_err());
        assert!(inject(
            &[Expression::Contempt],
            7,
            &Noise {
                kind: NoiseKind::Symmetric,
                rate: 0.1,
                seed: 0
            }
        )
        .is_err());
    }
}
