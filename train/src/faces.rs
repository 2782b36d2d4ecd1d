//! The faces a run trains and tests on: synthetic faces aligned in memory (the equivalent of
//! `train prepare`) or a prepared cache read crop by crop, with their clean labels; the noisy
//! training labels; the batches cut from them; and predictions over a whole set.

use std::borrow::Cow;

use burn::prelude::*;

use crate::augment::Plan;
use crate::config::TrainingConfig;
use crate::data::noise::{inject, Noise, NoiseKind, NoisyLabels};
use crate::data::synthetic::stream;
use crate::data::Expression;
use crate::model::lanet::LaNet;
use crate::prepare::Cache;
use crate::training::{align_face, make_batch, Batch, CachedCrop};

enum Store {
    Memory(Vec<CachedCrop>),
    Cache(Box<Cache>, Vec<usize>),
}

/// Aligned faces with their clean labels, in memory or read from a cache when used.
pub struct FaceSet {
    store: Store,
    /// Clean labels, canonical indices.
    pub labels: Vec<usize>,
    /// Annotators' vote distributions, when the dataset has them.
    pub votes: Option<Vec<Vec<f32>>>,
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

    /// `count` synthetic faces from `seed`, aligned like the runtime aligns.
    ///
    /// # Errors
    /// If a face cannot be aligned.
    pub fn synthetic(count: u64, seed: u64, size: u32) -> anyhow::Result<FaceSet> {
        let alignment = edge_fer::align::Alignment::builtin();
        let mut faces = Vec::with_capacity(count as usize);
        let mut labels = Vec::with_capacity(count as usize);
        for f in stream(seed, (size * 3 / 2).max(64), 7).take(count as usize) {
            faces.push(align_face(&f.image, &f.landmarks, &alignment, size)?);
            labels.push(f.label.index());
        }
        Ok(FaceSet {
            store: Store::Memory(faces),
            labels,
            votes: None,
            classes: 7,
            size,
        })
    }

    /// The faces of `cache` in the given splits (all splits when `splits` is empty).
    pub fn from_cache(cache: &Cache, splits: &[&str]) -> FaceSet {
        let rows: Vec<usize> = (0..cache.faces.len())
            .filter(|&i| splits.is_empty() || splits.contains(&cache.faces[i].split.as_str()))
            .collect();
        let labels = rows
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
            labels,
            votes,
            classes: cache.summary.classes,
            size: cache.summary.input_size,
        }
    }
}

/// The training and clean test faces of a run.
///
/// # Errors
/// A cache that cannot be read, is of another crop size, or has no training or test faces,
/// named.
pub fn datasets(config: &TrainingConfig) -> anyhow::Result<(FaceSet, FaceSet)> {
    let (data, size) = (&config.data, config.model.input_size);
    let Some(dir) = &data.cache else {
        return Ok((
            FaceSet::synthetic(data.train_faces, config.seed, size)?,
            FaceSet::synthetic(data.test_faces, config.seed ^ 0x7E57, size)?,
        ));
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

/// The training labels after the run's noise (and which were flipped).
///
/// # Errors
/// An invalid noise rate.
pub fn noisy_labels(config: &TrainingConfig, train: &FaceSet) -> anyhow::Result<NoisyLabels> {
    let clean: Vec<Expression> = train.labels.iter().map(|&l| Expression::ALL[l]).collect();
    // No noise is noise at rate 0: every run records its (possibly empty) flips the same way.
    let (kind, rate) = config
        .data
        .noise
        .as_ref()
        .map_or((NoiseKind::Symmetric, 0.0), |n| (n.kind, n.rate));
    Ok(inject(
        &clean,
        train.classes,
        &Noise {
            kind,
            rate,
            seed: config.seed,
        },
    )?)
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
    let pred = predict(net, set, batch, device)?;
    let correct = pred.iter().zip(&set.labels).filter(|(a, b)| a == b).count();
    Ok(correct as f64 / set.len().max(1) as f64)
}
