//! `train prepare`: runs the runtime's own face detection, 68-point landmarks and alignment over a
//! dataset once and caches the aligned crops with their landmarks, so training never detects and
//! trains on exactly the crops the runtime will classify.
//!
//! A cache is a folder: `prepare.json` (what was prepared, how, and what was skipped),
//! `faces.jsonl` (one line per face: crop file, label, split, landmarks in crop pixels, votes) and
//! `crops/NNNNNN.png`.
//!
//! Landmarks come, in order of preference, from the dataset (AffectNet ships 68 points), from
//! fitting dlib's predictor in the dataset's face box, from detection (largest face), or, when
//! nothing is detected in a small pre-cropped face (RAF-DB's aligned 100x100 set, FER2013's 48x48),
//! from fitting in the whole image.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use edge_fer::align::Alignment;
use edge_fer::detect::{FaceBox, FaceFinder};
use image::RgbImage;
use serde::{Deserialize, Serialize};

use crate::data::{ClassSet, Expression, ImageSource, Loaded, Sample, Skipped, Split};
use crate::training::{align_face, CachedCrop};

/// Images at most this large on their longer side are treated as pre-cropped faces: when the
/// detector finds nothing, landmarks are fitted in the whole image.
pub const PRECROPPED_MAX_SIDE: u32 = 160;

/// One cached face (a line of `faces.jsonl`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CachedFace {
    /// The crop, relative to the cache folder.
    pub crop: String,
    /// The dataset's label, canonical name.
    pub label: String,
    /// `train`, `val` or `test`.
    pub split: String,
    /// 68 landmarks in crop pixels.
    pub landmarks: Vec<[f32; 2]>,
    /// Annotators' vote distribution (FERPlus).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub votes: Option<Vec<f32>>,
    /// Where the face came from (file, or file:line for pixels inside a CSV).
    pub source: String,
}

/// How many faces got their landmarks each way.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LandmarkSources {
    /// Shipped with the dataset.
    pub dataset: usize,
    /// Fitted in the dataset's face box.
    pub dataset_box: usize,
    /// Detected.
    pub detected: usize,
    /// Fitted in the whole (pre-cropped) image.
    pub whole_image: usize,
}

/// `prepare.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CacheSummary {
    /// What was prepared (the command's dataset argument).
    pub source: String,
    /// Crop side in pixels.
    pub input_size: u32,
    /// 7 or 8.
    pub classes: usize,
    /// The alignment the crops were made with (the exported card repeats it).
    pub alignment: Alignment,
    /// Faces cached.
    pub faces: usize,
    /// Where their landmarks came from.
    pub landmarks: LandmarkSources,
    /// Everything skipped (by the reader or here), as `file[:line]: reason`.
    pub skipped: Vec<String>,
}

/// Prepares `loaded` into `out`.
///
/// # Errors
/// A message naming the file if the cache cannot be written, or if no face could be prepared.
pub fn prepare(
    loaded: &Loaded,
    source: &str,
    classes: ClassSet,
    finder: &FaceFinder,
    alignment: &Alignment,
    size: u32,
    out: &Path,
) -> anyhow::Result<CacheSummary> {
    let io = |p: &Path| format!("writing {}", p.display());
    let crops = out.join("crops");
    std::fs::create_dir_all(&crops).with_context(|| io(&crops))?;
    let list_path = out.join("faces.jsonl");
    let mut list =
        std::io::BufWriter::new(std::fs::File::create(&list_path).with_context(|| io(&list_path))?);
    let mut skipped: Vec<String> = loaded.skipped.iter().map(Skipped::to_string).collect();
    let mut sources = LandmarkSources::default();
    let mut count = 0usize;
    let bar = indicatif::ProgressBar::new(loaded.samples.len() as u64);
    for (i, sample) in loaded.samples.iter().enumerate() {
        bar.inc(1);
        if !classes.contains(sample.label) {
            continue;
        }
        let origin = describe(sample, i);
        let image = match pixels(&sample.image) {
            Ok(img) => img,
            Err(e) => {
                skipped.push(format!("{origin}: {e:#}"));
                continue;
            }
        };
        let Some(landmarks) = landmarks_for(sample, &image, finder, &mut sources) else {
            skipped.push(format!("{origin}: no face found"));
            continue;
        };
        let face = match align_face(&image, &landmarks, alignment, size) {
            Ok(f) => f,
            Err(e) => {
                skipped.push(format!("{origin}: {e:#}"));
                continue;
            }
        };
        let rel = format!("crops/{count:06}.png");
        face.crop
            .save(out.join(&rel))
            .with_context(|| io(&out.join(&rel)))?;
        let line = CachedFace {
            crop: rel,
            label: sample.label.name().to_string(),
            split: split_name(sample.split).to_string(),
            landmarks: face.landmarks.to_vec(),
            votes: sample.votes.clone(),
            source: origin,
        };
        let text = serde_json::to_string(&line)?;
        writeln!(list, "{text}").with_context(|| io(&list_path))?;
        count += 1;
    }
    bar.finish_and_clear();
    list.flush().with_context(|| io(&list_path))?;
    if count == 0 {
        anyhow::bail!(
            "{source}: no face could be prepared ({} skipped; first: {})",
            skipped.len(),
            skipped.first().map_or("none", String::as_str)
        );
    }
    let summary = CacheSummary {
        source: source.to_string(),
        input_size: size,
        classes: classes.count(),
        alignment: alignment.clone(),
        faces: count,
        landmarks: sources,
        skipped,
    };
    let path = out.join("prepare.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&summary)?).with_context(|| io(&path))?;
    Ok(summary)
}

fn describe(sample: &Sample, i: usize) -> String {
    match &sample.image {
        ImageSource::File(p) => p.display().to_string(),
        ImageSource::Gray { .. } => format!("sample {}", i + 1),
    }
}

fn pixels(source: &ImageSource) -> anyhow::Result<RgbImage> {
    match source {
        ImageSource::File(path) => Ok(edge_fer::capture::decode_image(path)?),
        ImageSource::Gray {
            width,
            height,
            pixels,
        } => {
            let gray = image::GrayImage::from_raw(*width, *height, pixels.clone())
                .with_context(|| format!("{} grey values for {width}x{height}", pixels.len()))?;
            Ok(image::DynamicImage::ImageLuma8(gray).to_rgb8())
        }
    }
}

fn landmarks_for(
    sample: &Sample,
    image: &RgbImage,
    finder: &FaceFinder,
    sources: &mut LandmarkSources,
) -> Option<[[f32; 2]; 68]> {
    if let Some(points) = sample.landmarks.as_ref().filter(|p| p.len() == 68) {
        sources.dataset += 1;
        return Some(std::array::from_fn(|k| points[k]));
    }
    if let Some([x, y, w, h]) = sample.face_box {
        sources.dataset_box += 1;
        let b = FaceBox {
            left: x as i64,
            top: y as i64,
            right: (x + w) as i64 - 1,
            bottom: (y + h) as i64 - 1,
        };
        return Some(finder.landmarks_in(image, b).0);
    }
    if let Some(face) = finder.find(image).into_iter().next() {
        sources.detected += 1;
        return Some(face.landmarks.0);
    }
    let (w, h) = image.dimensions();
    if w.max(h) <= PRECROPPED_MAX_SIDE && w >= 16 && h >= 16 {
        sources.whole_image += 1;
        return Some(
            finder
                .landmarks_in(
                    image,
                    FaceBox {
                        left: 0,
                        top: 0,
                        right: i64::from(w) - 1,
                        bottom: i64::from(h) - 1,
                    },
                )
                .0,
        );
    }
    None
}

/// The name of a split in the cache.
pub fn split_name(split: Split) -> &'static str {
    match split {
        Split::Train => "train",
        Split::Val => "val",
        Split::Test => "test",
    }
}

/// A prepared cache, read back.
#[derive(Debug, Clone)]
pub struct Cache {
    /// The folder.
    pub dir: PathBuf,
    /// `prepare.json`.
    pub summary: CacheSummary,
    /// `faces.jsonl`, in order.
    pub faces: Vec<CachedFace>,
}

impl Cache {
    /// Reads a cache's index (the crops are read when used).
    ///
    /// # Errors
    /// A message naming the file (and line) that is missing or does not parse.
    pub fn open(dir: &Path) -> anyhow::Result<Cache> {
        let path = dir.join("prepare.json");
        let text = std::fs::read(&path).with_context(|| {
            format!(
                "{} (is {} a folder written by `train prepare`?)",
                path.display(),
                dir.display()
            )
        })?;
        let summary: CacheSummary =
            serde_json::from_slice(&text).with_context(|| path.display().to_string())?;
        let list = dir.join("faces.jsonl");
        let file = std::fs::File::open(&list).with_context(|| list.display().to_string())?;
        let mut faces = Vec::new();
        for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
            let line = line.with_context(|| format!("{}:{}", list.display(), n + 1))?;
            if line.trim().is_empty() {
                continue;
            }
            let face: CachedFace = serde_json::from_str(&line)
                .with_context(|| format!("{}:{}", list.display(), n + 1))?;
            if face.landmarks.len() != 68 || Expression::from_name(&face.label).is_none() {
                anyhow::bail!(
                    "{}:{}: expected 68 landmarks and a class name, found {} landmarks and {:?}",
                    list.display(),
                    n + 1,
                    face.landmarks.len(),
                    face.label
                );
            }
            faces.push(face);
        }
        Ok(Cache {
            dir: dir.to_path_buf(),
            summary,
            faces,
        })
    }

    /// Reads face `i`'s crop.
    ///
    /// # Errors
    /// A message naming the crop file if it cannot be read or has the wrong size.
    pub fn load(&self, i: usize) -> anyhow::Result<CachedCrop> {
        let f = &self.faces[i];
        let path = self.dir.join(&f.crop);
        let crop = edge_fer::capture::decode_image(&path)?;
        let s = self.summary.input_size;
        if crop.dimensions() != (s, s) {
            anyhow::bail!(
                "{}: {}x{} crop in a {s}x{s} cache",
                path.display(),
                crop.width(),
                crop.height()
            );
        }
        Ok(CachedCrop {
            crop,
            landmarks: std::array::from_fn(|k| f.landmarks[k]),
        })
    }
}
