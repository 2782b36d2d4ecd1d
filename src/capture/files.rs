//! Image files and folders of frames.

use std::path::{Path, PathBuf};

use image::RgbImage;

use super::{now_ms, FailedFrame, Frame, FrameSource};
use crate::error::{Error, Result};

/// File extensions a frames folder is searched for (compared case-insensitively).
pub const IMAGE_EXTENSIONS: &[&str] = &["jpg", "jpeg", "png", "bmp", "ppm", "pgm"];

/// Decodes an image file to RGB8, whatever its format says its extension.
///
/// # Errors
/// [`Error::Io`] if the file cannot be read, [`Error::Decode`] if it is not an image or is
/// corrupt or truncated.
pub fn decode_image(path: &Path) -> Result<RgbImage> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    decode_image_bytes(&bytes).map_err(|reason| Error::Decode {
        path: path.to_path_buf(),
        reason,
    })
}

/// Decodes an encoded image held in memory; the error says what is wrong with it.
pub fn decode_image_bytes(bytes: &[u8]) -> std::result::Result<RgbImage, String> {
    let format = image::guess_format(bytes).map_err(|_| {
        "not a recognised image format (expected JPEG, PNG, BMP or PNM)".to_string()
    })?;
    if !format.reading_enabled() {
        return Err(format!(
            "{format:?} images are not supported (expected JPEG, PNG, BMP or PNM)"
        ));
    }
    if format == image::ImageFormat::Jpeg && !jpeg_has_end(bytes) {
        // The JPEG decoder fills a cut-off image with grey and reports success; a face half
        // made of grey would be classified as something, so refuse the file instead.
        return Err("truncated JPEG: no end-of-image marker after the last scan".to_string());
    }
    let image = image::load_from_memory_with_format(bytes, format).map_err(|e| e.to_string())?;
    Ok(image.into_rgb8())
}

/// Whether a JPEG stream has an end-of-image marker (FF D9) after its last start-of-scan (FF DA).
/// Inside entropy-coded data every FF byte is followed by 00 or a restart marker, so an FF D9
/// after the last scan header can only be the real end; an EXIF thumbnail's own end comes before.
fn jpeg_has_end(bytes: &[u8]) -> bool {
    let last_scan = bytes.windows(2).rposition(|w| w == [0xFF, 0xDA]);
    match last_scan {
        Some(at) => bytes[at..].windows(2).any(|w| w == [0xFF, 0xD9]),
        None => false,
    }
}

/// Image files, read one after the other; a folder of frames is the same in name order.
#[derive(Debug, Clone)]
pub struct ImageFiles {
    paths: Vec<PathBuf>,
    next: u64,
    what: String,
    repeat: bool,
    frame_rate: f64,
}

impl ImageFiles {
    /// The given files, in the given order.
    pub fn new(paths: Vec<PathBuf>) -> Self {
        let what = format!("{} image file(s)", paths.len());
        ImageFiles {
            paths,
            next: 0,
            what,
            repeat: false,
            frame_rate: super::DEFAULT_FRAME_RATE,
        }
    }

    /// Times the frames as if taken at `frame_rate` frames per second: frame `i` at
    /// `i / frame_rate` seconds ([`Frame::time_s`]).
    pub fn with_frame_rate(mut self, frame_rate: f64) -> Self {
        self.frame_rate = frame_rate;
        self
    }

    /// The frame rate the frames are timed by.
    pub fn frame_rate(&self) -> f64 {
        self.frame_rate
    }

    /// Starts again from the first file after the last, forever (frame numbers keep counting):
    /// a stand-in camera for demos and tests of the live view.
    pub fn repeating(mut self) -> Self {
        self.repeat = true;
        self
    }

    /// The image files in `dir` (by extension, not recursive), sorted by file name.
    ///
    /// # Errors
    /// [`Error::Io`] if the folder cannot be read, [`Error::EmptyFrames`] if it holds no image
    /// files.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let mut paths = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
            let path = entry.map_err(|e| Error::io(dir, e))?.path();
            let is_image = path
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()));
            if is_image && path.is_file() {
                paths.push(path);
            }
        }
        if paths.is_empty() {
            return Err(Error::EmptyFrames {
                path: dir.to_path_buf(),
            });
        }
        paths.sort();
        let mut files = Self::new(paths);
        files.what = format!("{} frame(s) in {}", files.paths.len(), dir.display());
        Ok(files)
    }

    /// The files this source will read, in order.
    pub fn paths(&self) -> &[PathBuf] {
        &self.paths
    }
}

impl FrameSource for ImageFiles {
    fn next_frame(&mut self) -> Option<Result<Frame, FailedFrame>> {
        let index = self.next;
        let at = if self.repeat && !self.paths.is_empty() {
            index % self.paths.len() as u64
        } else {
            index
        };
        let path = self.paths.get(usize::try_from(at).ok()?)?;
        self.next += 1;
        let timestamp_ms = now_ms();
        let source = path.display().to_string();
        Some(match decode_image(path) {
            Ok(rgb) => Ok(Frame {
                rgb,
                index,
                timestamp_ms,
                time_s: index as f64 / self.frame_rate,
                source,
            }),
            Err(error) => Err(FailedFrame {
                index,
                timestamp_ms,
                source,
                error,
            }),
        })
    }

    fn is_live(&self) -> bool {
        false
    }

    fn len_hint(&self) -> Option<u64> {
        (!self.repeat).then_some(self.paths.len() as u64)
    }

    fn describe(&self) -> String {
        self.what.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folder_is_read_in_name_order_and_skips_non_images() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        let img = RgbImage::new(2, 2);
        for name in ["b.png", "a.PNG", "c.png"] {
            img.save(dir.path().join(name)).unwrap();
        }
        std::fs::write(dir.path().join("notes.txt"), "x").unwrap();
        let files = ImageFiles::from_dir(dir.path())?;
        let names: Vec<_> = files
            .paths()
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["a.PNG", "b.png", "c.png"]);
        Ok(())
    }

    #[test]
    fn truncated_jpeg_is_refused_and_whole_one_decodes() {
        let mut jpeg = Vec::new();
        let img = RgbImage::from_fn(32, 32, |x, y| image::Rgb([x as u8 * 8, y as u8 * 8, 128]));
        img.write_to(
            &mut std::io::Cursor::new(&mut jpeg),
            image::ImageFormat::Jpeg,
        )
        .unwrap();
        assert!(decode_image_bytes(&jpeg).is_ok());
        let err = decode_image_bytes(&jpeg[..jpeg.len() - 40]).unwrap_err();
        assert!(err.contains("truncated JPEG"), "{err}");
        let err = decode_image_bytes(b"hello, not an image").unwrap_err();
        assert!(err.contains("not a recognised image format"), "{err}");
        let err = decode_image_bytes(b"GIF89a and then nothing").unwrap_err();
        assert!(err.contains("Gif images are not supported"), "{err}");
    }

    #[test]
    fn empty_folder_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let err = ImageFiles::from_dir(dir.path()).unwrap_err();
        assert!(matches!(err, Error::EmptyFrames { .. }));
        assert!(err.to_string().contains(&dir.path().display().to_string()));
    }
}
