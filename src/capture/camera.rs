//! A live camera through nokhwa (Video4Linux on Linux).

use nokhwa::pixel_format::RgbFormat;
use nokhwa::utils::{
    ApiBackend, CameraFormat, CameraIndex, FrameFormat, RequestedFormat, RequestedFormatType,
    Resolution,
};
use nokhwa::Camera;

use super::{now_ms, FailedFrame, Frame, FrameSource};
use crate::error::{Error, Result};

/// Consecutive failed reads after which the camera counts as gone and the source ends.
const MAX_CONSECUTIVE_FAILURES: u32 = 25;

/// Which camera and what format to ask it for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CameraConfig {
    /// Camera index (`/dev/videoN` on Linux).
    pub index: u32,
    /// Requested width in pixels; the camera picks its closest mode.
    pub width: u32,
    /// Requested height in pixels.
    pub height: u32,
    /// Requested frames per second.
    pub fps: u32,
}

impl Default for CameraConfig {
    fn default() -> Self {
        CameraConfig {
            index: 0,
            width: 640,
            height: 480,
            fps: 30,
        }
    }
}

/// The cameras the platform backend can see: index and human-readable name.
///
/// A backend that cannot enumerate (no V4L2 devices at all) reports an empty list.
pub fn list_cameras() -> Vec<(u32, String)> {
    let backend = nokhwa::native_api_backend().unwrap_or(ApiBackend::Auto);
    match nokhwa::query(backend) {
        Ok(infos) => infos
            .iter()
            .filter_map(|info| match info.index() {
                CameraIndex::Index(i) => Some((*i, info.human_name())),
                CameraIndex::String(_) => None,
            })
            .collect(),
        Err(e) => {
            tracing::debug!("camera query failed: {e}");
            Vec::new()
        }
    }
}

/// Frames from a camera. Opening checks the camera exists, then starts the stream.
pub struct CameraSource {
    config: CameraConfig,
    camera: Camera,
    next: u64,
    consecutive_failures: u32,
}

impl CameraSource {
    /// Opens the camera and starts streaming.
    ///
    /// # Errors
    /// [`Error::NoCamera`] naming what was found if there is no camera with that index;
    /// [`Error::Camera`] if it exists but cannot be opened (busy, permissions: the user must be in
    /// the `video` group).
    pub fn open(config: CameraConfig) -> Result<Self> {
        let found = list_cameras();
        if !found.iter().any(|(i, _)| *i == config.index) {
            let found = if found.is_empty() {
                "none".to_string()
            } else {
                found
                    .iter()
                    .map(|(i, name)| format!("{i} ({name})"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            return Err(Error::NoCamera {
                index: config.index,
                found,
            });
        }
        let camera_err = |e: nokhwa::NokhwaError| Error::Camera {
            index: config.index,
            reason: e.to_string(),
        };
        let wanted = CameraFormat::new(
            Resolution::new(config.width, config.height),
            FrameFormat::MJPEG,
            config.fps,
        );
        let format = RequestedFormat::new::<RgbFormat>(RequestedFormatType::Closest(wanted));
        let mut camera =
            Camera::new(CameraIndex::Index(config.index), format).map_err(camera_err)?;
        camera.open_stream().map_err(camera_err)?;
        Ok(CameraSource {
            config,
            camera,
            next: 0,
            consecutive_failures: 0,
        })
    }
}

impl FrameSource for CameraSource {
    fn next_frame(&mut self) -> Option<Result<Frame, FailedFrame>> {
        if self.consecutive_failures >= MAX_CONSECUTIVE_FAILURES {
            tracing::error!(
                camera = self.config.index,
                "camera stopped delivering frames; ending capture"
            );
            return None;
        }
        let index = self.next;
        self.next += 1;
        let timestamp_ms = now_ms();
        let source = format!("camera:{}", self.config.index);
        let read = self
            .camera
            .frame()
            .and_then(|buffer| buffer.decode_image::<RgbFormat>());
        Some(match read {
            Ok(rgb) => {
                self.consecutive_failures = 0;
                Ok(Frame {
                    rgb,
                    index,
                    timestamp_ms,
                    time_s: timestamp_ms as f64 / 1000.0,
                    source,
                })
            }
            Err(e) => {
                self.consecutive_failures += 1;
                Err(FailedFrame {
                    index,
                    timestamp_ms,
                    source,
                    error: Error::Camera {
                        index: self.config.index,
                        reason: e.to_string(),
                    },
                })
            }
        })
    }

    fn is_live(&self) -> bool {
        true
    }

    fn describe(&self) -> String {
        let format = self.camera.camera_format();
        format!(
            "camera {} ({}x{} @ {} fps)",
            self.config.index,
            format.resolution().width_x,
            format.resolution().height_y,
            format.frame_rate()
        )
    }
}
