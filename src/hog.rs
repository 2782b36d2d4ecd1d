//! dlib's HOG face detector, built from its serialised bytes by edge-fer's C++ glue
//! (`src/native/hog.cpp`).
//!
//! dlib's own constructor (`get_frontal_face_detector`, all the dlib-face-recognition crate
//! offers) base64-decodes and decompresses the detector compiled into dlib on every start: 0.6-1 s,
//! the longest part of a start with HOG. The decompressed bytes are shipped instead
//! (`models/dlib-hog-frontal/`, exported from dlib by its `export.sh`, checked by sha256) and
//! deserialised in milliseconds. Detection is dlib's call on the crate's image type, so the boxes
//! are dlib's (the tests compare them with the crate's detector).

use std::ffi::{c_char, c_void, CStr};
use std::path::Path;
use std::ptr::NonNull;
use std::sync::Mutex;

use image::RgbImage;

use crate::checksum::{check_known, sha256_hex};
use crate::detect::FaceBox;
use crate::error::{Error, Result};

/// The detector's bytes, compiled in (155 KB).
const BUILTIN: &[u8] = include_bytes!("../models/dlib-hog-frontal/frontal_face_detector.dat");

/// sha256 of `models/dlib-hog-frontal/frontal_face_detector.dat`.
pub const HOG_SHA256: &str = "f3f7aa833fb4a14a46fc48689f45b98d85ef72d6dfaf8bdc012b7d3c522a5426";

/// Where the built-in detector is said to come from in messages.
const BUILTIN_NAME: &str = "<built-in>/models/dlib-hog-frontal/frontal_face_detector.dat";

extern "C" {
    fn edge_fer_hog_export(out: *mut *mut c_char) -> usize;
    fn edge_fer_native_free(p: *mut c_void);
    fn edge_fer_hog_load(
        bytes: *const c_char,
        len: usize,
        err: *mut c_char,
        err_len: usize,
    ) -> *mut c_void;
    fn edge_fer_hog_free(detector: *mut c_void);
    fn edge_fer_hog_detect(
        detector: *mut c_void,
        rgb: *const u8,
        width: usize,
        height: usize,
        out: *mut i64,
        max: usize,
    ) -> i64;
}

/// dlib's frontal face detector (HOG features, a linear classifier per pose, an image pyramid).
pub struct HogDetector {
    /// dlib's detector keeps scratch buffers between calls, so one call at a time.
    detector: Mutex<NonNull<c_void>>,
}

// SAFETY: the glue's object is owned by this value alone and only used under the lock.
unsafe impl Send for HogDetector {}
// SAFETY: as above: every use goes through the mutex.
unsafe impl Sync for HogDetector {}

impl HogDetector {
    /// The detector compiled into the binary, after its sha256 check.
    ///
    /// # Errors
    /// [`Error::Checksum`] or [`Error::ModelLoad`]: only a broken build can fail here.
    pub fn builtin() -> Result<Self> {
        let name = Path::new(BUILTIN_NAME);
        check_known(name, &sha256_hex(BUILTIN), HOG_SHA256, true)?;
        Self::from_bytes(BUILTIN, name)
    }

    /// A detector from dlib-serialised bytes; `name` is only used in messages.
    ///
    /// # Errors
    /// [`Error::ModelLoad`] with dlib's reason where the bytes are not a HOG face detector.
    pub fn from_bytes(bytes: &[u8], name: &Path) -> Result<Self> {
        let mut err = [0 as c_char; 512];
        // SAFETY: the glue reads `len` bytes from `bytes` and writes a NUL-terminated message of
        // at most `err.len()` bytes into `err`; it catches every C++ exception.
        let ptr = unsafe {
            edge_fer_hog_load(
                bytes.as_ptr().cast(),
                bytes.len(),
                err.as_mut_ptr(),
                err.len(),
            )
        };
        match NonNull::new(ptr) {
            Some(detector) => Ok(HogDetector {
                detector: Mutex::new(detector),
            }),
            None => {
                // SAFETY: the glue wrote a NUL-terminated string (snprintf) into `err`.
                let reason = unsafe { CStr::from_ptr(err.as_ptr()) };
                Err(Error::ModelLoad {
                    path: name.to_path_buf(),
                    reason: format!(
                        "not a dlib HOG face detector: {}",
                        reason.to_string_lossy().trim()
                    ),
                })
            }
        }
    }

    /// dlib's own built-in detector, serialised: what `models/dlib-hog-frontal/export.sh` writes.
    /// Slow (it is the decompression this module avoids); `None` if dlib fails.
    pub fn export_dlibs_own() -> Option<Vec<u8>> {
        let mut out: *mut c_char = std::ptr::null_mut();
        // SAFETY: the glue stores a malloc'd buffer of the returned length in `out`.
        let len = unsafe { edge_fer_hog_export(&mut out) };
        if len == 0 || out.is_null() {
            return None;
        }
        // SAFETY: `out` holds `len` initialised bytes until it is freed below.
        let bytes = unsafe { std::slice::from_raw_parts(out.cast::<u8>(), len) }.to_vec();
        // SAFETY: `out` came from the glue's malloc.
        unsafe { edge_fer_native_free(out.cast()) };
        Some(bytes)
    }

    /// The faces dlib finds in `frame` (none in an empty frame, or if dlib fails).
    pub fn detect(&self, frame: &RgbImage) -> Vec<FaceBox> {
        let (w, h) = frame.dimensions();
        if w == 0 || h == 0 {
            return Vec::new();
        }
        let detector = self.detector.lock().unwrap_or_else(|e| e.into_inner());
        let mut boxes = vec![0i64; 4 * 16];
        loop {
            let max = boxes.len() / 4;
            // SAFETY: `frame` is a packed RGB8 buffer of w * h * 3 bytes; the glue writes at most
            // `max` boxes of four values into `boxes`; the lock keeps calls apart.
            let found = unsafe {
                edge_fer_hog_detect(
                    detector.as_ptr(),
                    frame.as_raw().as_ptr(),
                    w as usize,
                    h as usize,
                    boxes.as_mut_ptr(),
                    max,
                )
            };
            let Ok(found) = usize::try_from(found) else {
                tracing::warn!("dlib's HOG detector failed on a frame");
                return Vec::new();
            };
            if found <= max {
                return boxes[..4 * found]
                    .chunks_exact(4)
                    .map(|b| FaceBox {
                        left: b[0],
                        top: b[1],
                        right: b[2],
                        bottom: b[3],
                    })
                    .collect();
            }
            // More faces than room: rare enough to detect again with room for all.
            boxes = vec![0i64; 4 * found];
        }
    }
}

impl Drop for HogDetector {
    fn drop(&mut self) {
        let detector = self.detector.get_mut().unwrap_or_else(|e| e.into_inner());
        // SAFETY: the pointer came from edge_fer_hog_load and is freed once, here.
        unsafe { edge_fer_hog_free(detector.as_ptr()) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn damaged_bytes_are_refused_naming_the_file() {
        let cut = &BUILTIN[..BUILTIN.len() / 3];
        let err = HogDetector::from_bytes(cut, Path::new("cut.dat"))
            .err()
            .expect("a truncated detector was accepted")
            .to_string();
        assert!(
            err.contains("cut.dat") && err.contains("not a dlib HOG face detector"),
            "{err}"
        );
        assert!(HogDetector::from_bytes(b"", Path::new("empty.dat")).is_err());
    }

    #[test]
    fn the_builtin_detector_loads_and_an_empty_frame_has_no_face() {
        let hog = HogDetector::builtin().unwrap();
        assert!(hog.detect(&RgbImage::new(0, 0)).is_empty());
        assert!(hog.detect(&RgbImage::new(64, 48)).is_empty());
    }
}
