//! A run's folder and every file in it; nothing else builds a run path.
//!
//! | file | written by | what |
//! |---|---|---|
//! | `config.json` | fit | the resolved [`TrainingConfig`] |
//! | `noise.json` | fit | every training label the noise flipped, from and to |
//! | `metrics.jsonl` | fit | one [`EpochMetrics`] line per epoch |
//! | `checkpoint-NNN.bpk` (+ `.sha256`) | fit | the network after epoch NNN (burnpack) |
//! | `state-NNN.bin` | fit | everything `--resume` needs (the two newest are kept) |
//! | `confusion.csv`, `confusion.png` | eval | the clean test set's confusion matrix |
//! | `learning-curve.png` | fit, eval | every loss term and the test accuracy per epoch |

use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::config::{layers, ConfigError, TrainingConfig};
use crate::durable::{verify_checksum, write_atomic, write_checksummed};
use crate::metrics::{jsonl, EpochMetrics};
use crate::state::Sections;

/// A run's output folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunDir {
    root: PathBuf,
}

/// Files named `{prefix}NNN{suffix}` in `dir`, newest (highest NNN) first, with their numbers.
fn numbered(dir: &Path, prefix: &str, suffix: &str) -> Vec<(usize, PathBuf)> {
    let mut found: Vec<(usize, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter_map(|p| {
            let name = p.file_name()?.to_str()?;
            let n = name
                .strip_prefix(prefix)?
                .strip_suffix(suffix)?
                .parse()
                .ok()?;
            Some((n, p))
        })
        .collect();
    found.sort_by_key(|f| std::cmp::Reverse(f.0));
    found
}

impl RunDir {
    /// The run in folder `root` (nothing is read or created yet).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        RunDir { root: root.into() }
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// Creates the folder (and its parents).
    ///
    /// # Errors
    /// The I/O error, naming the folder.
    pub fn create(&self) -> anyhow::Result<()> {
        std::fs::create_dir_all(&self.root)
            .with_context(|| format!("creating {}", self.root.display()))
    }

    /// `config.json`.
    pub fn config_path(&self) -> PathBuf {
        self.root.join("config.json")
    }

    /// The run's config.
    ///
    /// # Errors
    /// As [`layers::resolve`]: a missing file, bad JSON, or a setting this version does not have
    /// (run folders written before the config was one `TrainingConfig` do not load).
    pub fn read_config(&self) -> Result<TrainingConfig, ConfigError> {
        layers::resolve(Some(&self.config_path()))
    }

    /// Writes `config.json`.
    ///
    /// # Errors
    /// The I/O error, naming the file.
    pub fn write_config(&self, config: &TrainingConfig) -> anyhow::Result<()> {
        write(&self.config_path(), layers::to_json(config).as_bytes())
    }

    /// `noise.json`.
    pub fn noise_path(&self) -> PathBuf {
        self.root.join("noise.json")
    }

    /// Writes `noise.json`.
    ///
    /// # Errors
    /// The I/O error, naming the file.
    pub fn write_noise(&self, record: &serde_json::Value) -> anyhow::Result<()> {
        let text = serde_json::to_vec_pretty(record).expect("JSON values serialise");
        write(&self.noise_path(), &text)
    }

    /// `metrics.jsonl`.
    pub fn metrics_path(&self) -> PathBuf {
        self.root.join("metrics.jsonl")
    }

    /// Rewrites `metrics.jsonl` with one line per epoch.
    ///
    /// # Errors
    /// The I/O error, naming the file.
    pub fn write_metrics(&self, epochs: &[EpochMetrics]) -> anyhow::Result<()> {
        write(&self.metrics_path(), jsonl(epochs).as_bytes())
    }

    /// The metrics in `metrics.jsonl`.
    ///
    /// # Errors
    /// A missing file or a line that does not parse, naming the file.
    pub fn read_metrics(&self) -> anyhow::Result<Vec<EpochMetrics>> {
        let path = self.metrics_path();
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        text.lines()
            .enumerate()
            .map(|(i, line)| {
                serde_json::from_str(line)
                    .with_context(|| format!("{} line {}", path.display(), i + 1))
            })
            .collect()
    }

    /// The checkpoint of epoch `epoch` (from 1).
    pub fn checkpoint(&self, epoch: usize) -> PathBuf {
        self.root.join(format!("checkpoint-{epoch:03}.bpk"))
    }

    /// The newest checkpoint.
    ///
    /// # Errors
    /// If the folder cannot be read or holds none, naming it.
    pub fn newest_checkpoint(&self) -> anyhow::Result<PathBuf> {
        std::fs::read_dir(&self.root)
            .with_context(|| format!("reading {}", self.root.display()))?;
        numbered(&self.root, "checkpoint-", ".bpk")
            .into_iter()
            .next()
            .map(|(_, p)| p)
            .with_context(|| format!("{} has no checkpoint-NNN.bpk", self.root.display()))
    }

    /// The bytes of a checkpoint, verified against its checksum file.
    ///
    /// # Errors
    /// A file that cannot be read, or that is truncated or corrupted, named.
    pub fn read_checkpoint(path: &Path) -> anyhow::Result<Vec<u8>> {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        verify_checksum(path, &bytes)?;
        Ok(bytes)
    }

    /// Writes epoch `epoch`'s checkpoint and its checksum.
    ///
    /// # Errors
    /// The I/O error, naming the file.
    pub fn write_checkpoint(&self, epoch: usize, bytes: &[u8]) -> anyhow::Result<()> {
        let path = self.checkpoint(epoch);
        write_checksummed(&path, bytes).with_context(|| format!("writing {}", path.display()))
    }

    /// The resumable state after epoch `epoch`.
    pub fn state(&self, epoch: usize) -> PathBuf {
        self.root.join(format!("state-{epoch:03}.bin"))
    }

    /// The state files, newest (highest epoch) first, with their epochs.
    pub fn states(&self) -> Vec<(usize, PathBuf)> {
        numbered(&self.root, "state-", ".bin")
    }

    /// Writes epoch `epoch`'s state, then removes all but the `keep` newest.
    ///
    /// # Errors
    /// The I/O error, naming the file.
    pub fn write_state(&self, epoch: usize, bytes: &[u8], keep: usize) -> anyhow::Result<()> {
        write(&self.state(epoch), bytes)?;
        for (_, old) in self.states().into_iter().skip(keep) {
            let _ = std::fs::remove_file(old);
        }
        Ok(())
    }

    /// The newest state that verifies, with its epoch; damaged newer files are reported and
    /// skipped.
    ///
    /// # Errors
    /// If the folder holds no state file, or none verifies.
    pub fn newest_good_state(&self) -> anyhow::Result<(usize, Sections)> {
        let files = self.states();
        for (epoch, path) in &files {
            let read = std::fs::read(path)
                .map_err(anyhow::Error::from)
                .and_then(|b| Sections::from_bytes(&b).map_err(anyhow::Error::from));
            match read {
                Ok(s) => return Ok((*epoch, s)),
                Err(e) => {
                    tracing::warn!(
                        "{}: {e}; falling back to the previous state",
                        path.display()
                    );
                    eprintln!(
                        "train: {}: {e}; falling back to the previous state",
                        path.display()
                    );
                }
            }
        }
        if files.is_empty() {
            anyhow::bail!(
                "{} has no state-NNN.bin to resume from",
                self.root.display()
            )
        }
        anyhow::bail!("no state file in {} verifies", self.root.display())
    }

    /// `confusion.csv`.
    pub fn confusion_csv(&self) -> PathBuf {
        self.root.join("confusion.csv")
    }

    /// `confusion.png`.
    pub fn confusion_png(&self) -> PathBuf {
        self.root.join("confusion.png")
    }

    /// `learning-curve.png`.
    pub fn learning_curve_png(&self) -> PathBuf {
        self.root.join("learning-curve.png")
    }
}

/// [`write_atomic`] with the file named in the error.
fn write(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    write_atomic(path, bytes).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newest_good_state_skips_a_corrupt_newest_file() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::new(dir.path());
        let mut a = Sections::default();
        a.put("meta", b"1".to_vec());
        run.write_state(1, &a.to_bytes(), 2).unwrap();
        let mut b = a.clone();
        b.0[0].1 = b"2".to_vec();
        let bytes = b.to_bytes();
        std::fs::write(run.state(2), &bytes[..bytes.len() / 2]).unwrap();
        let (epoch, got) = run.newest_good_state().unwrap();
        assert_eq!((epoch, got), (1, a));
        let empty = RunDir::new(tempfile::tempdir().unwrap().path());
        let err = empty.newest_good_state().unwrap_err().to_string();
        assert!(err.contains("no state"), "{err}");
    }

    #[test]
    fn only_the_newest_states_are_kept_and_checkpoints_sort_by_epoch() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::new(dir.path());
        for e in [1, 2, 10, 3] {
            run.write_state(e, b"x", 2).unwrap();
            run.write_checkpoint(e, b"weights").unwrap();
        }
        let kept: Vec<usize> = run.states().iter().map(|s| s.0).collect();
        assert_eq!(kept, vec![10, 3]);
        assert_eq!(run.newest_checkpoint().unwrap(), run.checkpoint(10));
        assert_eq!(
            RunDir::read_checkpoint(&run.checkpoint(2)).unwrap(),
            b"weights"
        );
        std::fs::write(run.checkpoint(2), b"weightz").unwrap();
        let err = RunDir::read_checkpoint(&run.checkpoint(2)).unwrap_err();
        assert!(err.to_string().contains("checksum mismatch"), "{err}");
    }
}
