//! sha256 of model files: every model is checked before it is used.

use std::io::Read;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// Lowercase hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Lowercase hex sha256 of the file at `path`, read in chunks (model files can be 100 MB).
///
/// # Errors
/// [`Error::Io`] if the file cannot be read.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

/// A reader that hashes every byte read through it, on a thread of its own, so that a large
/// model file is checked and parsed in one read, and the hash costs the parse no time where a
/// second core is free (sha256 of the 95 MB landmark model: ~0.1 s on x86_64 with SHA-NI, several
/// times that on a Raspberry Pi 4, whose cores lack the SHA instructions).
pub struct HashingReader<R> {
    inner: R,
    chunks: Option<crossbeam_channel::Sender<Vec<u8>>>,
    hasher: Option<std::thread::JoinHandle<String>>,
}

impl<R: Read> HashingReader<R> {
    /// Hashes what is read from `inner`.
    ///
    /// # Errors
    /// The error of starting the hashing thread.
    pub fn new(inner: R) -> std::io::Result<Self> {
        // A few chunks in flight: the parse never waits for the hash, and memory stays bounded.
        let (chunks, received) = crossbeam_channel::bounded::<Vec<u8>>(8);
        let hasher = std::thread::Builder::new()
            .name("sha256".into())
            .spawn(move || {
                let mut hasher = Sha256::new();
                for chunk in received {
                    hasher.update(&chunk);
                }
                hex(&hasher.finalize())
            })?;
        Ok(HashingReader {
            inner,
            chunks: Some(chunks),
            hasher: Some(hasher),
        })
    }

    /// Reads what the caller left to the end, then returns the lowercase hex sha256 of all of it.
    ///
    /// # Errors
    /// The I/O error of that last read.
    pub fn finish(mut self) -> std::io::Result<String> {
        std::io::copy(&mut self, &mut std::io::sink())?;
        drop(self.chunks.take());
        self.hasher
            .take()
            .expect("finish runs once")
            .join()
            .map_err(|_| std::io::Error::other("the sha256 thread panicked"))
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n > 0 {
            if let Some(chunks) = &self.chunks {
                // Fails only if the thread panicked, which `finish` then reports.
                let _ = chunks.send(buf[..n].to_vec());
            }
        }
        Ok(n)
    }
}

/// Accepts a model file whose sha256 is `actual`: it must be `expected` when `strict` (a file at
/// the default path must be the published one, so another hash means a damaged copy); otherwise
/// another hash is a warning (a file the user named may be their own model).
///
/// # Errors
/// [`Error::Checksum`] for a strict mismatch.
pub fn check_known(path: &Path, actual: &str, expected: &str, strict: bool) -> Result<()> {
    if actual == expected {
        return Ok(());
    }
    if strict {
        return Err(Error::Checksum {
            path: path.to_path_buf(),
            expected: expected.to_string(),
            actual: actual.to_string(),
        });
    }
    tracing::warn!(
        path = %path.display(),
        sha256 = %actual,
        "model file is not the one its maker publishes; using it because it was named explicitly"
    );
    Ok(())
}

fn hex(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    #[test]
    fn hashing_reader_hashes_what_is_left_unread_too() {
        let mut r = super::HashingReader::new(&b"abc"[..]).unwrap();
        let mut first = [0u8; 1];
        r.read_exact(&mut first).unwrap();
        assert_eq!(r.finish().unwrap(), super::sha256_hex(b"abc"));
    }

    #[test]
    fn known_vector() {
        // FIPS 180-2 test vector.
        assert_eq!(
            super::sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
