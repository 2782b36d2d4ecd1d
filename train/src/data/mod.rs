//! Datasets: one canonical label order, the readers, label noise and the sampler.
//!
//! Every reader maps its dataset's own label codes into [`Expression`] explicitly, so a model
//! trained on any of them has the same output order: anger, disgust, fear, happiness, sadness,
//! surprise, neutral (and contempt for 8 classes). That is the order of LA-Net's reference code
//! and of FER2013, hence of the runtime's default model.
//!
//! Readers never stop at a bad line or a missing image: each is recorded as a [`Skipped`] entry
//! (file, line, reason) and the rest is read; only a dataset with no usable sample is an error.

pub mod affectnet;
pub mod ferplus;
pub mod folder;
pub mod noise;
pub mod rafdb;
pub mod replay;
pub mod sampler;
pub mod synthetic;

use std::fmt;
use std::path::{Path, PathBuf};

/// The canonical expression classes, in output order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum Expression {
    /// Anger.
    Anger = 0,
    /// Disgust.
    Disgust = 1,
    /// Fear.
    Fear = 2,
    /// Happiness.
    Happiness = 3,
    /// Sadness.
    Sadness = 4,
    /// Surprise.
    Surprise = 5,
    /// Neutral.
    Neutral = 6,
    /// Contempt (8-class sets only).
    Contempt = 7,
}

impl Expression {
    /// All classes in canonical order.
    pub const ALL: [Expression; 8] = [
        Expression::Anger,
        Expression::Disgust,
        Expression::Fear,
        Expression::Happiness,
        Expression::Sadness,
        Expression::Surprise,
        Expression::Neutral,
        Expression::Contempt,
    ];

    /// The class with canonical index `i`.
    pub fn from_index(i: usize) -> Option<Expression> {
        Self::ALL.get(i).copied()
    }

    /// Canonical index.
    pub fn index(self) -> usize {
        self as usize
    }

    /// Canonical name (the noun: `anger`, `happiness`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Expression::Anger => "anger",
            Expression::Disgust => "disgust",
            Expression::Fear => "fear",
            Expression::Happiness => "happiness",
            Expression::Sadness => "sadness",
            Expression::Surprise => "surprise",
            Expression::Neutral => "neutral",
            Expression::Contempt => "contempt",
        }
    }

    /// Parses a class name as datasets and people write it: the noun or the adjective, any case
    /// (`anger`/`angry`, `happiness`/`happy`, `sadness`/`sad`, `surprise`/`surprised`,
    /// `disgust`/`disgusted`, `fear`/`fearful`/`afraid`, `neutral`, `contempt`/`contemptuous`).
    pub fn from_name(name: &str) -> Option<Expression> {
        Some(match name.trim().to_ascii_lowercase().as_str() {
            "anger" | "angry" => Expression::Anger,
            "disgust" | "disgusted" => Expression::Disgust,
            "fear" | "fearful" | "afraid" | "scared" => Expression::Fear,
            "happiness" | "happy" | "joy" => Expression::Happiness,
            "sadness" | "sad" => Expression::Sadness,
            "surprise" | "surprised" => Expression::Surprise,
            "neutral" => Expression::Neutral,
            "contempt" | "contemptuous" => Expression::Contempt,
            _ => return None,
        })
    }
}

impl fmt::Display for Expression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which classes a model predicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClassSet {
    /// The 7 basic expressions (no contempt).
    #[default]
    Seven,
    /// The 7 plus contempt.
    Eight,
}

impl ClassSet {
    /// Number of classes.
    pub fn count(self) -> usize {
        match self {
            ClassSet::Seven => 7,
            ClassSet::Eight => 8,
        }
    }

    /// Whether `e` belongs to the set.
    pub fn contains(self, e: Expression) -> bool {
        e.index() < self.count()
    }

    /// Class names in output order (for model cards).
    pub fn names(self) -> Vec<&'static str> {
        Expression::ALL[..self.count()]
            .iter()
            .map(|e| e.name())
            .collect()
    }
}

/// Which part of a dataset a sample belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Split {
    /// Training data.
    Train,
    /// Validation data (FERPlus PublicTest).
    Val,
    /// Test data.
    Test,
}

/// Where a sample's pixels are.
#[derive(Debug, Clone, PartialEq)]
pub enum ImageSource {
    /// An image file.
    File(PathBuf),
    /// Grey pixels stored in the dataset file itself (FER2013's CSV), row-major.
    Gray {
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
        /// `width * height` values.
        pixels: Vec<u8>,
    },
}

/// One labelled face.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The pixels.
    pub image: ImageSource,
    /// The label (before any injected noise).
    pub label: Expression,
    /// Train, validation or test.
    pub split: Split,
    /// Annotators' vote distribution over the class set, when the dataset has one (FERPlus).
    pub votes: Option<Vec<f32>>,
    /// Landmarks shipped with the dataset (AffectNet's 68 points), in image pixels.
    pub landmarks: Option<Vec<[f32; 2]>>,
    /// Face box shipped with the dataset: left, top, width, height.
    pub face_box: Option<[f32; 4]>,
}

impl Sample {
    /// A sample from an image file with just a label.
    pub fn file(path: PathBuf, label: Expression, split: Split) -> Self {
        Sample {
            image: ImageSource::File(path),
            label,
            split,
            votes: None,
            landmarks: None,
            face_box: None,
        }
    }
}

/// A line or file a reader could not use, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// The file.
    pub file: PathBuf,
    /// 1-based line number (`None` for a whole file, e.g. an image in a folder tree).
    pub line: Option<u64>,
    /// What was wrong.
    pub reason: String,
}

impl fmt::Display for Skipped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}: {}", self.file.display(), self.reason),
            None => write!(f, "{}: {}", self.file.display(), self.reason),
        }
    }
}

/// What a reader produced: the usable samples and what it skipped.
#[derive(Debug, Clone, Default)]
pub struct Loaded {
    /// Usable samples, in file order.
    pub samples: Vec<Sample>,
    /// Lines or files that were skipped, in file order.
    pub skipped: Vec<Skipped>,
}

impl Loaded {
    fn skip(&mut self, file: &Path, line: Option<u64>, reason: impl Into<String>) {
        self.skipped.push(Skipped {
            file: file.to_path_buf(),
            line,
            reason: reason.into(),
        });
    }

    /// Errors with [`DataError::Empty`] if no sample is usable; otherwise returns `self`.
    pub fn non_empty(self, path: &Path) -> Result<Self, DataError> {
        if self.samples.is_empty() {
            return Err(DataError::Empty {
                path: path.to_path_buf(),
                skipped: self.skipped.len(),
                first: self
                    .skipped
                    .first()
                    .map_or_else(|| "it lists no samples".to_string(), |s| s.to_string()),
            });
        }
        Ok(self)
    }

    /// Sample counts per class (class set size entries), optionally for one split.
    pub fn class_counts(&self, classes: ClassSet, split: Option<Split>) -> Vec<usize> {
        let mut counts = vec![0; classes.count()];
        for s in &self.samples {
            if split.is_none_or(|sp| sp == s.split) && classes.contains(s.label) {
                counts[s.label.index()] += 1;
            }
        }
        counts
    }
}

/// Why a dataset could not be read at all.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A file or folder could not be read.
    #[error("cannot read {}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The dataset's files are not in the expected format as a whole.
    #[error("{}: {reason}", path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Nothing usable was found.
    #[error("{} has no usable samples ({skipped} skipped; first: {first})", path.display())]
    Empty {
        /// The dataset path.
        path: PathBuf,
        /// How many lines/files were skipped.
        skipped: usize,
        /// The first skip reason, or why the list was empty.
        first: String,
    },
}

impl DataError {
    fn io(path: &Path, source: std::io::Error) -> Self {
        DataError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_synonyms_parse() {
        for e in Expression::ALL {
            assert_eq!(Expression::from_name(e.name()), Some(e));
            assert_eq!(Expression::from_index(e.index()), Some(e));
        }
        assert_eq!(Expression::from_name(" Happy"), Some(Expression::Happiness));
        assert_eq!(Expression::from_name("ANGRY"), Some(Expression::Anger));
        assert_eq!(Expression::from_name("bored"), None);
    }

    #[test]
    fn order_matches_the_reference_and_the_runtime_default_model() {
        // LA-Net's reference order (golden noise.json) ...
        let golden: serde_json::Value =
            serde_json::from_str(include_str!("../../tests/fixtures/noise.json")).unwrap();
        let names: Vec<&str> = golden["class_order"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(names, ClassSet::Seven.names());
        // ... and the shipped runtime model's labels (adjectives) name the same classes in order.
        let card =
            edge_fer::ModelCard::from_json(edge_fer::classify::BUILTIN_CARD, Path::new("builtin"))
                .unwrap();
        let parsed: Vec<Expression> = card
            .labels
            .iter()
            .map(|l| Expression::from_name(l).unwrap())
            .collect();
        assert_eq!(parsed, Expression::ALL[..7]);
    }
}
