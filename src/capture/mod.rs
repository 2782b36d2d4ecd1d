//! Frame sources: where frames come from, behind one small trait.
//!
//! Three sources implement [`FrameSource`]: a list of image files ([`ImageFiles`]), a folder of
//! frames read in name order (built with [`ImageFiles::from_dir`]), and a camera through nokhwa
//! ([`CameraSource`]); [`Synthetic`] makes its frames, where tests and examples need a camera and
//! have none. A frame that cannot be read is returned as a [`FailedFrame`] so the pipeline
//! reports it and goes on with the next one; only a source that cannot start at all is an error.
//! A live source that goes away can be wrapped in [`Reconnecting`], which reopens it with back-off.

mod camera;
mod files;
mod reconnect;
mod synthetic;

pub use camera::{list_cameras, CameraConfig, CameraSource};
pub use files::{decode_image, decode_image_bytes, ImageFiles, IMAGE_EXTENSIONS};
pub use reconnect::{Backoff, Reconnecting};
pub use synthetic::Synthetic;

use image::RgbImage;

use crate::error::Error;

/// One frame, as it leaves its source.
#[derive(Debug, Clone)]
pub struct Frame {
    /// The pixels, RGB8.
    pub rgb: RgbImage,
    /// Position in the source, from 0 (counts failed frames too, so indices match file order).
    pub index: u64,
    /// When it was captured or read, milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    /// When it was taken on its source's own clock, seconds: a camera's capture time (since the
    /// Unix epoch), an image file's index divided by the frame rate (`--frame-rate`; never the
    /// time the file was read). Visits are timed by it.
    pub time_s: f64,
    /// Where it came from: the file's path, or `camera:N`.
    pub source: String,
}

/// The frame rate image files and frames folders are taken to have: a camera's usual.
pub const DEFAULT_FRAME_RATE: f64 = 30.0;

/// A frame that could not be read; the run goes on without it.
#[derive(Debug)]
pub struct FailedFrame {
    /// Position in the source.
    pub index: u64,
    /// When the read was attempted, milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    /// Where it came from.
    pub source: String,
    /// Why it failed.
    pub error: Error,
}

/// A source of frames.
///
/// Not `Send`: camera backends are tied to the thread that opened them, so the pipeline reads
/// sources on the calling thread and hands frames to worker threads.
pub trait FrameSource {
    /// The next frame, a frame that failed, or `None` when the source is exhausted.
    fn next_frame(&mut self) -> Option<Result<Frame, FailedFrame>>;

    /// Whether frames arrive in real time (a camera): the pipeline then drops stale frames rather
    /// than fall behind. File sources are not live and never lose a frame.
    fn is_live(&self) -> bool;

    /// How many frames the source will deliver, when that is known (files), for progress bars.
    fn len_hint(&self) -> Option<u64> {
        None
    }

    /// A short description for logs, e.g. `3 image files` or `camera 0 (640x480 @ 30 fps)`.
    fn describe(&self) -> String;
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
