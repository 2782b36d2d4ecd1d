//! The resumable training state of a run at an epoch boundary, in one checksummed file
//! (`state-NNN.bin`): the trained modules, the key encoder, Adam's moments, the history bank, the
//! queues, and where the schedule stands. `--resume` loads the newest file that verifies, so a
//! run killed at any moment continues exactly as if it had not stopped.
//!
//! Layout: the magic `EFSTATE1`, then sections (`u32` name length, name, `u64` length, bytes), then
//! the sha256 of everything before it (32 bytes). All integers little-endian.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

const MAGIC: &[u8; 8] = b"EFSTATE1";

/// Named byte sections, in order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sections(pub Vec<(String, Vec<u8>)>);

impl Sections {
    /// Adds a section.
    pub fn put(&mut self, name: &str, bytes: Vec<u8>) {
        self.0.push((name.to_string(), bytes));
    }

    /// The bytes of section `name`.
    ///
    /// # Errors
    /// A message if there is no such section.
    pub fn get(&self, name: &str) -> Result<&[u8], String> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, b)| b.as_slice())
            .ok_or_else(|| format!("no {name:?} section"))
    }

    /// Serialises with the trailing checksum.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        for (name, bytes) in &self.0 {
            out.extend((name.len() as u32).to_le_bytes());
            out.extend(name.as_bytes());
            out.extend((bytes.len() as u64).to_le_bytes());
            out.extend(bytes);
        }
        let digest = Sha256::digest(&out);
        out.extend(digest);
        out
    }

    /// Parses and verifies bytes written by [`Sections::to_bytes`].
    ///
    /// # Errors
    /// A message saying what is wrong: not a state file, truncated, or a checksum mismatch.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, String> {
        if bytes.len() < MAGIC.len() + 32 || &bytes[..MAGIC.len()] != MAGIC {
            return Err("not a training state file (bad magic or too short)".into());
        }
        let (body, digest) = bytes.split_at(bytes.len() - 32);
        if Sha256::digest(body).as_slice() != digest {
            return Err("checksum mismatch: the file is truncated or corrupted".into());
        }
        let mut at = MAGIC.len();
        let mut take = |n: usize| -> Result<&[u8], String> {
            let s = body
                .get(at..at + n)
                .ok_or_else(|| "a section runs past the end".to_string())?;
            at += n;
            Ok(s)
        };
        let mut out = Sections::default();
        while let Ok(len) = take(4) {
            let len = u32::from_le_bytes(len.try_into().expect("4 bytes")) as usize;
            let name = String::from_utf8(take(len)?.to_vec()).map_err(|e| e.to_string())?;
            let size = u64::from_le_bytes(take(8)?.try_into().expect("8 bytes")) as usize;
            out.put(&name, take(size)?.to_vec());
        }
        Ok(out)
    }
}

/// Little-endian bytes of `f32` values.
pub fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// `f32` values from little-endian bytes.
///
/// # Errors
/// A message if the length is not a multiple of 4.
pub fn f32_values(bytes: &[u8]) -> Result<Vec<f32>, String> {
    if !bytes.len().is_multiple_of(4) {
        return Err(format!(
            "{} bytes is not a whole number of f32",
            bytes.len()
        ));
    }
    Ok(bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
        .collect())
}

/// The path of epoch `epoch`'s state file in `dir`.
pub fn state_path(dir: &Path, epoch: usize) -> PathBuf {
    dir.join(format!("state-{epoch:03}.bin"))
}

/// The state files in `dir`, newest (highest epoch) first, with their epochs.
pub fn state_files(dir: &Path) -> Vec<(usize, PathBuf)> {
    let mut found: Vec<(usize, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter_map(|p| {
            let name = p.file_name()?.to_str()?;
            let epoch = name
                .strip_prefix("state-")?
                .strip_suffix(".bin")?
                .parse()
                .ok()?;
            Some((epoch, p))
        })
        .collect();
    found.sort_by_key(|f| std::cmp::Reverse(f.0));
    found
}

/// The newest state in `dir` that verifies, with its epoch; corrupt newer files are reported
/// through `tracing::warn` and skipped.
///
/// # Errors
/// A message if `dir` holds no usable state file.
pub fn newest_good(dir: &Path) -> Result<(usize, Sections), String> {
    let files = state_files(dir);
    for (epoch, path) in &files {
        match std::fs::read(path)
            .map_err(|e| e.to_string())
            .and_then(|b| Sections::from_bytes(&b))
        {
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
    Err(if files.is_empty() {
        format!("{} has no state-NNN.bin to resume from", dir.display())
    } else {
        format!("no state file in {} verifies", dir.display())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_round_trip_and_damage_is_detected() {
        let mut s = Sections::default();
        s.put("meta", b"{\"epoch\":3}".to_vec());
        s.put("bank", f32_bytes(&[0.25, -1.5]));
        let bytes = s.to_bytes();
        let back = Sections::from_bytes(&bytes).unwrap();
        assert_eq!(back, s);
        assert_eq!(f32_values(back.get("bank").unwrap()).unwrap(), [0.25, -1.5]);
        assert!(back.get("optim").is_err());

        let truncated = &bytes[..bytes.len() - 5];
        assert!(Sections::from_bytes(truncated)
            .unwrap_err()
            .contains("checksum"));
        let mut flipped = bytes.clone();
        flipped[12] ^= 1;
        assert!(Sections::from_bytes(&flipped)
            .unwrap_err()
            .contains("checksum"));
        assert!(Sections::from_bytes(b"hello")
            .unwrap_err()
            .contains("magic"));
    }

    #[test]
    fn newest_good_skips_a_corrupt_newest_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = Sections::default();
        a.put("meta", b"1".to_vec());
        std::fs::write(state_path(dir.path(), 1), a.to_bytes()).unwrap();
        let mut b = a.clone();
        b.0[0].1 = b"2".to_vec();
        let bytes = b.to_bytes();
        std::fs::write(state_path(dir.path(), 2), &bytes[..bytes.len() / 2]).unwrap();
        let (epoch, got) = newest_good(dir.path()).unwrap();
        assert_eq!((epoch, got), (1, a));
        let empty = tempfile::tempdir().unwrap();
        assert!(newest_good(empty.path()).unwrap_err().contains("no state"));
    }
}
