//! Raw bytes through every dataset reader, as if they were a dataset's label files: what the
//! `dataset` fuzz target runs on each input, and what the test suite replays its corpus and crash
//! reproducers with (fuzz/). Every reader must load or refuse with an error; none may panic.

use std::path::Path;

use super::{affectnet, ferplus, rafdb, ClassSet};
use crate::prepare::Cache;

/// Writes `input` as label files under `dir` and reads them back with one reader. The first byte
/// picks it: `% 4` = 0 RAF-DB, 1 FERPlus, 2 AffectNet, 3 a `train prepare` cache; bit 7 asks for
/// 8 classes. FERPlus and the cache take two files, split at the first NUL byte (FERPlus: votes,
/// then FER2013's pixels; the cache: `prepare.json`, then `faces.jsonl`).
///
/// Returns how many samples were read, or the reader's error.
///
/// # Errors
/// Only if the files cannot be written under `dir`.
pub fn read_bytes(input: &[u8], dir: &Path) -> std::io::Result<anyhow::Result<usize>> {
    let Some((&which, bytes)) = input.split_first() else {
        return Ok(Err(anyhow::anyhow!("empty input")));
    };
    let classes = if which & 0x80 == 0 {
        ClassSet::Seven
    } else {
        ClassSet::Eight
    };
    let (first, second) = match bytes.iter().position(|&b| b == 0) {
        Some(cut) => (&bytes[..cut], &bytes[cut + 1..]),
        None => (bytes, &[][..]),
    };
    let write = |rel: &str, data: &[u8]| -> std::io::Result<std::path::PathBuf> {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, data)?;
        Ok(path)
    };
    Ok(match which % 4 {
        0 => {
            write("raf/EmoLabel/list_patition_label.txt", bytes)?;
            // The reader checks each aligned image exists; make (empty) ones for the names the
            // list gives, so inputs get past that check, and only those (fresh each call).
            let images = dir.join("raf/Image/aligned");
            if images.exists() {
                std::fs::remove_dir_all(&images)?;
            }
            std::fs::create_dir_all(&images)?;
            let names = String::from_utf8_lossy(bytes);
            for name in names
                .lines()
                .filter_map(|l| l.split_whitespace().next())
                .take(64)
            {
                let Some(stem) = name.strip_suffix(".jpg") else {
                    continue;
                };
                let file = format!("{stem}_aligned.jpg");
                if stem.len() <= 64 && !file.contains(['/', '\\', '\0']) && !file.starts_with('.') {
                    std::fs::write(images.join(file), b"")?;
                }
            }
            rafdb::read(&dir.join("raf"))
                .map(|l| l.samples.len())
                .map_err(anyhow::Error::from)
        }
        1 => {
            let votes = write("ferplus/fer2013new.csv", first)?;
            let pixels = write("ferplus/fer2013.csv", second)?;
            ferplus::read(&pixels, &votes, classes)
                .map(|l| l.samples.len())
                .map_err(anyhow::Error::from)
        }
        2 => {
            let csv = write("affectnet/training.csv", bytes)?;
            affectnet::read(&csv, &dir.join("affectnet"), classes)
                .map(|l| l.samples.len())
                .map_err(anyhow::Error::from)
        }
        _ => {
            write("cache/prepare.json", first)?;
            write("cache/faces.jsonl", second)?;
            Cache::open(&dir.join("cache")).map(|c| c.faces.len())
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// fuzz/{seeds,corpus,regressions}/dataset, replayed: each loads or is refused, and the seeds
    /// (one valid file per reader) load.
    #[test]
    fn fuzz_inputs_load_or_are_refused() {
        let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
        let dir = tempfile::tempdir().unwrap();
        let mut seeds_loaded = 0;
        let mut total = 0;
        for kind in ["seeds", "corpus", "regressions"] {
            let Ok(entries) = std::fs::read_dir(fuzz.join(kind).join("dataset")) else {
                continue;
            };
            for entry in entries.flatten() {
                let bytes = std::fs::read(entry.path()).unwrap();
                let read = read_bytes(&bytes, dir.path()).unwrap();
                total += 1;
                if kind == "seeds" {
                    assert!(read.is_ok(), "{}: {read:?}", entry.path().display());
                    seeds_loaded += 1;
                }
            }
        }
        assert!(seeds_loaded >= 4, "{seeds_loaded} seeds of {total} inputs");
    }

    #[test]
    fn each_reader_names_its_file_when_refusing() {
        let dir = tempfile::tempdir().unwrap();
        for which in 0..4u8 {
            let err = format!(
                "{:#}",
                read_bytes(&[which, b'x'], dir.path()).unwrap().unwrap_err()
            );
            assert!(err.contains(dir.path().to_str().unwrap()), "{which}: {err}");
        }
    }
}
