//! Writes that survive a crash or a power cut, and checksums that catch a damaged file.

use std::io::Write;
use std::path::{Path, PathBuf};

use thiserror::Error;

/// Writes `bytes` to `path` atomically: a temporary file beside it, fsync, rename, fsync of the
/// folder.
///
/// # Errors
/// The I/O error (the caller names the file).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    // The rename itself is only durable once the folder is synced; without it a power cut can
    // bring back the old file (or none) even though the new one was complete.
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// The checksum file beside a file (`checkpoint-003.bpk.sha256`, `sha256sum -c` format).
pub fn checksum_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".sha256");
    PathBuf::from(name)
}

/// Writes `bytes` to `path` and its sha256 beside it, both atomically, checksum last.
///
/// # Errors
/// The I/O error.
pub fn write_checksummed(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_atomic(path, bytes)?;
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let line = format!("{}  {name}\n", edge_fer::checksum::sha256_hex(bytes));
    write_atomic(&checksum_path(path), line.as_bytes())
}

/// A file that does not match the checksum beside it.
#[derive(Debug, Error)]
pub enum ChecksumError {
    /// The checksum file exists but cannot be read.
    #[error("{path}: {source}")]
    Read {
        /// The checksum file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The bytes differ from what was written.
    #[error("{file}: checksum mismatch with {sums}: the file is truncated or corrupted")]
    Mismatch {
        /// The damaged file.
        file: PathBuf,
        /// Its checksum file.
        sums: PathBuf,
    },
}

/// Checks `bytes`, read from `path`, against the checksum file beside it, when there is one.
///
/// # Errors
/// [`ChecksumError::Mismatch`] for a truncated or corrupted file, [`ChecksumError::Read`] if the
/// checksum file cannot be read.
pub fn verify_checksum(path: &Path, bytes: &[u8]) -> Result<(), ChecksumError> {
    let sums = checksum_path(path);
    let text = match std::fs::read_to_string(&sums) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => return Err(ChecksumError::Read { path: sums, source }),
    };
    let want = text.split_whitespace().next().unwrap_or_default();
    if want == edge_fer::checksum::sha256_hex(bytes) {
        Ok(())
    } else {
        Err(ChecksumError::Mismatch {
            file: path.to_path_buf(),
            sums,
        })
    }
}
