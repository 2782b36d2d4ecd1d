//! The faces a run trains and tests on: synthetic faces aligned in memory (the equivalent of
//! `train prepare`; plain, blends of two classes, or identities for pretraining) or a prepared
//! cache read crop by crop, with their clean labels; the noisy training labels and the held-out
//! noisy validation split; the batches cut from them; and predictions over a whole set.

use std::borrow::Cow;

use burn::prelude::*;

use crate::augment::Plan;
use crate::config::TrainingConfig;
use crate::data::noise::{inject, Noise, NoiseKind, NoisyLabels};
use crate::data::sampler::shuffle;
use crate::data::synthetic::{annotated_label, blend_stream, identity_stream, stream, Look};
use crate::data::Expression;
use crate::model::lanet::LaNet;
use crate::prepare::Cache;
use crate::rng::SplitMix64;
use crate::training::{align_face, make_batch, Batch, CachedCrop};

enum Store {
    Memory(Vec<CachedCrop>),
    Cache(Box<Cache>, Vec<usize>),
}

/// Aligned faces with their clean labels, in memory or read from a cache when used.
pub struct FaceSet {
    store: Store,
    /// Clean labels, canonical indices (identity numbers for a pretraining set).
    pub labels: Vec<usize>,
    /// The labels the data gives, before any injected noise: the clean ones, except for blends,
    /// whose label an annotator drew from their true distribution.
    pub given: Vec<usize>,
    /// The true label distributions, when known: annotators' votes (FERPlus), or a synthetic
    /// blend set's truth (one-hot for its pure faces).
    pub votes: Option<Vec<Vec<f32>>>,
    /// Which faces are ambiguous by construction (a synthetic blend set's blends): what the
    /// label-distribution scores average over. `None`: every face with votes.
    pub ambiguous: Option<Vec<bool>>,
    /// Class count.
    pub classes: usize,
    /// Side of the square crops.
    pub size: u32,
}

impl FaceSet {
    /// Faces held.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Face `i`.
    ///
    /// # Errors
    /// A cached crop that cannot be read, named.
    pub fn face(&self, i: usize) -> anyhow::Result<Cow<'_, CachedCrop>> {
        match &self.store {
            Store::Memory(faces) => Ok(Cow::Borrowed(&faces[i])),
            Store::Cache(cache, rows) => cache.load(rows[i]).map(Cow::Owned),
        }
    }

    /// Faces in memory with their clean labels as the data gives them.
    fn in_memory(faces: Vec<CachedCrop>, labels: Vec<usize>, classes: usize, size: u32) -> Self {
        FaceSet {
            store: Store::Memory(faces),
            given: labels.clone(),
            labels,
            votes: None,
            ambiguous: None,
            classes,
            size,
        }
    }

    /// `count` synthetic faces from `seed`, aligned like the runtime aligns.
    ///
    /// # Errors
    /// If a face cannot be aligned.
    pub fn synthetic(count: u64, seed: u64, size: u32) -> anyhow::Result<FaceSet> {
        let alignment = edge_fer::align::Alignment::builtin();
        let mut faces = Vec::with_capacity(count as usize);
        let mut labels = Vec::with_capacity(count as usize);
        for f in stream(seed, render_size(size), 7).take(count as usize) {
            faces.push(align_face(&f.image, &f.landmarks, &alignment, size)?);
            labels.push(f.label.index());
        }
        Ok(FaceSet::in_memory(faces, labels, 7, size))
    }

    /// `count` faces of the synthetic blend set from `seed` (half of them blends of two classes,
    /// see [`crate::data::synthetic::blend_look`]), with their truth and annotated labels.
    ///
    /// # Errors
    /// If a face cannot be aligned.
    pub fn blends(count: u64, seed: u64, size: u32) -> anyhow::Result<FaceSet> {
        let alignment = edge_fer::align::Alignment::builtin();
        let (mut faces, mut labels, mut given) = (Vec::new(), Vec::new(), Vec::new());
        let (mut votes, mut ambiguous) = (Vec::new(), Vec::new());
        for (i, (look, f)) in blend_stream(seed, render_size(size))
            .take(count as usize)
            .enumerate()
        {
            faces.push(align_face(&f.image, &f.landmarks, &alignment, size)?);
            labels.push(look.label().index());
            given.push(annotated_label(seed, i as u64, &look).index());
            votes.push(look.truth(7));
            ambiguous.push(matches!(look, Look::Blend { .. }));
        }
        Ok(FaceSet {
            given,
            votes: Some(votes),
            ambiguous: Some(ambiguous),
            ..FaceSet::in_memory(faces, labels, 7, size)
        })
    }

    /// `count` faces of `identities` people (the pool fixed by `pool`), from the identity
    /// stream `seed`, labelled by person: the pretraining stand-in's data.
    ///
    /// # Errors
    /// If a face cannot be aligned.
    pub fn identities(
        count: u64,
        identities: u64,
        seed: u64,
        pool: u64,
        size: u32,
    ) -> anyhow::Result<FaceSet> {
        let alignment = edge_fer::align::Alignment::builtin();
        let (mut faces, mut labels) = (Vec::new(), Vec::new());
        for (id, f) in
            identity_stream(seed, pool, render_size(size), identities).take(count as usize)
        {
            faces.push(align_face(&f.image, &f.landmarks, &alignment, size)?);
            labels.push(id as usize);
        }
        Ok(FaceSet::in_memory(faces, labels, identities as usize, size))
    }

    /// Splits off the faces marked in `held_out` (in memory or cached alike): the rest, then
    /// those.
    pub fn split(self, held_out: &[bool]) -> (FaceSet, FaceSet) {
        let (kept, held) = partition(held_out);
        let take = |rows: &[usize], store: Store| FaceSet {
            store,
            labels: rows.iter().map(|&i| self.labels[i]).collect(),
            given: rows.iter().map(|&i| self.given[i]).collect(),
            votes: self
                .votes
                .as_ref()
                .map(|v| rows.iter().map(|&i| v[i].clone()).collect()),
            ambiguous: self
                .ambiguous
                .as_ref()
                .map(|a| rows.iter().map(|&i| a[i]).collect()),
            classes: self.classes,
            size: self.size,
        };
        let (kept_store, held_store) = match &self.store {
            Store::Memory(faces) => (
                Store::Memory(kept.iter().map(|&i| faces[i].clone()).collect()),
                Store::Memory(held.iter().map(|&i| faces[i].clone()).collect()),
            ),
            Store::Cache(cache, rows) => (
                Store::Cache(cache.clone(), kept.iter().map(|&i| rows[i]).collect()),
                Store::Cache(cache.clone(), held.iter().map(|&i| rows[i]).collect()),
            ),
        };
        (take(&kept, kept_store), take(&held, held_store))
    }

    /// The faces of `cache` in the given splits (all splits when `splits` is empty).
    pub fn from_cache(cache: &Cache, splits: &[&str]) -> FaceSet {
        let rows: Vec<usize> = (0..cache.faces.len())
            .filter(|&i| splits.is_empty() || splits.contains(&cache.faces[i].split.as_str()))
            .collect();
        let labels: Vec<usize> = rows
            .iter()
            .map(|&i| {
                Expression::from_name(&cache.faces[i].label)
                    .expect("Cache::open checked the names")
                    .index()
            })
            .collect();
        let votes = rows
            .iter()
            .map(|&i| cache.faces[i].votes.clone())
            .collect::<Option<Vec<_>>>()
            .filter(|v| !v.is_empty());
        FaceSet {
            store: Store::Cache(Box::new(cache.clone()), rows),
            given: labels.clone(),
            labels,
            votes,
            ambiguous: None,
            classes: cache.summary.classes,
            size: cache.summary.input_size,
        }
    }
}

/// The side synthetic faces are drawn at before alignment to `size`.
fn render_size(size: u32) -> u32 {
    (size * 3 / 2).max(64)
}

/// The training (validation split included) and clean test faces of a run.
///
/// # Errors
/// A cache that cannot be read, is of another crop size, or has no training or test faces,
/// named.
pub fn datasets(config: &TrainingConfig) -> anyhow::Result<(FaceSet, FaceSet)> {
    let (data, size) = (&config.data, config.model.input_size);
    let test_seed = config.seed ^ 0x7E57;
    if let Some(people) = data.identities {
        // A stream of its own (no face of an expression run's streams), the same people in
        // training and test.
        let (seed, pool) = (config.seed ^ 0x1D_0000, config.seed ^ 0x9001);
        return Ok((
            FaceSet::identities(data.train_faces, people, seed, pool, size)?,
            FaceSet::identities(data.test_faces, people, seed ^ 0x7E57, pool, size)?,
        ));
    }
    let Some(dir) = &data.cache else {
        let train = if data.blends {
            FaceSet::blends(data.train_faces, config.seed, size)?
        } else {
            FaceSet::synthetic(data.train_faces, config.seed, size)?
        };
        return Ok((train, FaceSet::synthetic(data.test_faces, test_seed, size)?));
    };
    let cache = Cache::open(dir)?;
    let size_ok = |c: &Cache| {
        anyhow::ensure!(
            c.summary.input_size == size,
            "{} holds {s}x{s} crops; the run's input size is {size}",
            c.dir.display(),
            s = c.summary.input_size
        );
        Ok(())
    };
    size_ok(&cache)?;
    let train = FaceSet::from_cache(&cache, &["train"]);
    let test = match &data.test_cache {
        Some(t) => {
            let c = Cache::open(t)?;
            size_ok(&c)?;
            FaceSet::from_cache(&c, &[])
        }
        None => {
            let test = FaceSet::from_cache(&cache, &["test"]);
            if test.is_empty() {
                FaceSet::from_cache(&cache, &["val"])
            } else {
                test
            }
        }
    };
    anyhow::ensure!(!train.is_empty(), "{} has no training faces", dir.display());
    anyhow::ensure!(
        !test.is_empty(),
        "{} has no test or val faces; pass --test-data with another prepared cache",
        dir.display()
    );
    Ok((train, test))
}

/// Class `c` of the run's data by name: the expression's, or `idC` for a pretraining run's
/// people.
pub fn class_name(config: &TrainingConfig, c: usize) -> String {
    match (config.data.identities, Expression::from_index(c)) {
        (None, Some(e)) => e.name().to_string(),
        _ => format!("id{c}"),
    }
}

/// Training labels as trained on, beside the clean ones.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainLabels {
    /// The labels to train on: the data's, with the run's noise on top.
    pub labels: Vec<usize>,
    /// The clean labels.
    pub clean: Vec<usize>,
}

impl TrainLabels {
    /// Whether sample `i`'s label differs from its clean one (injected noise, or an annotator's
    /// draw on a blend).
    pub fn flipped(&self, i: usize) -> bool {
        self.labels[i] != self.clean[i]
    }

    /// How many labels differ from the clean ones.
    pub fn flip_count(&self) -> usize {
        (0..self.labels.len()).filter(|&i| self.flipped(i)).count()
    }
}

/// The training labels after the run's noise, injected over the labels the data gives.
///
/// # Errors
/// An invalid noise rate, or noise asked for on identity labels.
pub fn noisy_labels(config: &TrainingConfig, train: &FaceSet) -> anyhow::Result<TrainLabels> {
    let noise = config.data.noise.as_ref();
    if config.data.identities.is_some() {
        anyhow::ensure!(
            noise.is_none(),
            "label noise is defined on expressions, not identities"
        );
        return Ok(TrainLabels {
            labels: train.given.clone(),
            clean: train.labels.clone(),
        });
    }
    let given: Vec<Expression> = train.given.iter().map(|&l| Expression::ALL[l]).collect();
    // No noise is noise at rate 0: every run records its (possibly empty) flips the same way.
    let (kind, rate) = noise.map_or((NoiseKind::Symmetric, 0.0), |n| (n.kind, n.rate));
    let noisy: NoisyLabels = inject(
        &given,
        train.classes,
        &Noise {
            kind,
            rate,
            seed: config.seed,
        },
    )?;
    Ok(TrainLabels {
        labels: noisy.labels.iter().map(|e| e.index()).collect(),
        clean: train.labels.clone(),
    })
}

/// A run's faces, split as it trains on them.
pub struct RunFaces {
    /// The faces trained on.
    pub train: FaceSet,
    /// Their labels (noisy) and clean labels.
    pub labels: TrainLabels,
    /// The held-out validation faces (`data.validation` of the training faces), when asked for.
    pub val: Option<FaceSet>,
    /// The validation faces' labels as the data and the noise left them: what a practitioner
    /// would select an epoch on.
    pub val_labels: Vec<usize>,
    /// The clean test faces.
    pub test: FaceSet,
}

/// The faces of a run: the noise is put on every training face's label, then `data.validation`
/// of them (a seeded choice) are held out with their noisy labels.
///
/// # Errors
/// As [`datasets`] and [`noisy_labels`].
pub fn run_faces(config: &TrainingConfig) -> anyhow::Result<RunFaces> {
    let (train, test) = datasets(config)?;
    let labels = noisy_labels(config, &train)?;
    let fraction = config.data.validation;
    if fraction <= 0.0 {
        return Ok(RunFaces {
            train,
            labels,
            val: None,
            val_labels: Vec::new(),
            test,
        });
    }
    let held_out = held_out(train.len(), fraction, config.seed);
    let (train, val) = train.split(&held_out);
    let pick = |v: &[usize], rows: &[usize]| rows.iter().map(|&i| v[i]).collect::<Vec<_>>();
    let (kept, held) = partition(&held_out);
    Ok(RunFaces {
        labels: TrainLabels {
            labels: pick(&labels.labels, &kept),
            clean: pick(&labels.clean, &kept),
        },
        val_labels: pick(&labels.labels, &held),
        val: Some(val),
        train,
        test,
    })
}

/// The rows `held_out` does not mark, then those it marks, each in order.
fn partition(held_out: &[bool]) -> (Vec<usize>, Vec<usize>) {
    (0..held_out.len()).partition(|&i| !held_out[i])
}

/// Which of `n` faces are held out: `round(fraction * n)` of them, chosen by a seeded shuffle.
pub fn held_out(n: usize, fraction: f64, seed: u64) -> Vec<bool> {
    let mut order: Vec<usize> = (0..n).collect();
    shuffle(&mut order, &mut SplitMix64::new(seed ^ 0x0A11_DA7E));
    let mut out = vec![false; n];
    for &i in &order[..((fraction * n as f64).round() as usize).min(n)] {
        out[i] = true;
    }
    out
}

/// A batch of rows of `set` with the given labels, each augmented by its plan.
pub fn batch_of(
    set: &FaceSet,
    rows: &[usize],
    labels: &[usize],
    plans: &[Plan],
    device: &Device,
) -> anyhow::Result<Batch> {
    let faces: Vec<Cow<'_, CachedCrop>> = rows
        .iter()
        .map(|&r| set.face(r))
        .collect::<Result<_, _>>()?;
    let refs: Vec<&CachedCrop> = faces.iter().map(|f| f.as_ref()).collect();
    Ok(make_batch(
        &refs,
        rows.iter().map(|&r| labels[r]).collect(),
        rows.to_vec(),
        plans,
        device,
    ))
}

/// Keeps only the heatmap channels of `subset` (dlib indices).
pub fn keep_landmarks(mut batch: Batch, subset: Option<&[usize]>) -> Batch {
    if let Some(subset) = subset {
        let device = batch.heatmaps.device();
        let idx: Tensor<1, Int> = Tensor::from_data(
            burn::tensor::TensorData::new(
                subset.iter().map(|&i| i as i64).collect::<Vec<_>>(),
                [subset.len()],
            ),
            &device,
        );
        batch.heatmaps = batch.heatmaps.select(1, idx.clone());
        batch.heat_weights = batch.heat_weights.select(1, idx);
    }
    batch
}

/// Predicted classes of `net` on `set`, batched (pass a `valid()` module so BatchNorm uses its
/// running statistics).
///
/// # Errors
/// A crop that cannot be read, named.
pub fn predict(
    net: &LaNet,
    set: &FaceSet,
    batch: usize,
    device: &Device,
) -> anyhow::Result<Vec<usize>> {
    let n = set.len();
    let mut out = Vec::with_capacity(n);
    for start in (0..n).step_by(batch.max(1)) {
        let rows: Vec<usize> = (start..(start + batch).min(n)).collect();
        let plans = vec![Plan::identity(set.size); rows.len()];
        let b = batch_of(set, &rows, &set.labels, &plans, device)?;
        let pred = net
            .expression()
            .forward(b.images)
            .argmax(1)
            .into_data()
            .convert::<i64>();
        let pred: Vec<i64> = pred.try_to_vec::<i64>().expect("argmax gives integers");
        out.extend(pred.into_iter().map(|v| v as usize));
    }
    Ok(out)
}

/// The fraction of `set` that `net` classifies as labelled.
///
/// # Errors
/// As [`predict`].
pub fn accuracy(net: &LaNet, set: &FaceSet, batch: usize, device: &Device) -> anyhow::Result<f64> {
    accuracy_against(net, set, &set.labels, batch, device)
}

/// The fraction of `set` that `net` classifies as `labels` say.
///
/// # Errors
/// As [`predict`].
pub fn accuracy_against(
    net: &LaNet,
    set: &FaceSet,
    labels: &[usize],
    batch: usize,
    device: &Device,
) -> anyhow::Result<f64> {
    let pred = predict(net, set, batch, device)?;
    let correct = pred.iter().zip(labels).filter(|(a, b)| a == b).count();
    Ok(correct as f64 / set.len().max(1) as f64)
}

/// The softmax of `net` on every face of `set`, row-major `[len, classes]` (pass a `valid()`
/// module).
///
/// # Errors
/// A crop that cannot be read, named.
pub fn softmax_of(
    net: &LaNet,
    set: &FaceSet,
    batch: usize,
    device: &Device,
) -> anyhow::Result<Vec<f32>> {
    let mut out = Vec::with_capacity(set.len() * set.classes);
    for start in (0..set.len()).step_by(batch.max(1)) {
        let rows: Vec<usize> = (start..(start + batch).min(set.len())).collect();
        let plans = vec![Plan::identity(set.size); rows.len()];
        let b = batch_of(set, &rows, &set.labels, &plans, device)?;
        out.extend(crate::training::probabilities(
            net.expression().forward(b.images),
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_out_takes_the_rounded_share_reproducibly() {
        let h = held_out(210, 0.2, 3);
        assert_eq!(h.iter().filter(|&&x| x).count(), 42);
        assert_eq!(held_out(210, 0.2, 3), h);
        assert_ne!(held_out(210, 0.2, 4), h);
        assert!(held_out(10, 0.0, 3).iter().all(|&x| !x));
    }

    #[test]
    fn a_split_keeps_each_face_with_its_labels_and_truth() {
        let mut set = FaceSet::blends(14, 2, 32).unwrap();
        set.given[3] = 6;
        let marks: Vec<bool> = (0..14).map(|i| i % 3 == 0).collect();
        let first = set.face(3).unwrap().into_owned();
        let (labels, votes) = (set.labels.clone(), set.votes.clone().unwrap());
        let (kept, held) = set.split(&marks);
        assert_eq!((kept.len(), held.len()), (9, 5));
        // Face 3 is the second held-out one (0, 3, 6, 9, 12).
        assert_eq!(held.face(1).unwrap().into_owned(), first);
        assert_eq!(held.given[1], 6);
        assert_eq!(held.labels[1], labels[3]);
        assert_eq!(held.votes.as_ref().unwrap()[1], votes[3]);
        assert_eq!(kept.labels[0], labels[1]);
    }
}
