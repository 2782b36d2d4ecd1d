//! MediaPipe's short-range BlazeFace face detector, run by tract.
//!
//! The model (models/blazeface-short-range/, converted from the TFLite file in the `mediapipe`
//! wheel) takes a 128x128 RGB image in [-1, 1] and gives, for each of 896 anchors, a face score
//! and a box with six key points ([`decode`]). A frame is letterboxed into the square input (its
//! aspect kept, the rest padded), so detection costs the same whatever the frame's size; boxes
//! come back in frame pixels. Faces smaller than about an eighth of the frame's longer side are
//! beyond this model (it was made for faces within about 2 m of a phone's front camera).

pub mod anchors;
pub mod decode;

use std::path::Path;
use std::sync::Arc;

use image::RgbImage;
use tract_onnx::prelude::*;

pub use self::anchors::AnchorGrid;
pub use self::decode::{decode, weighted_nms, DecodeOptions, Detection, KEYPOINTS};
use crate::checksum::{check_known, sha256_hex};
use crate::error::{Error, Result};

/// The shipped model's ONNX bytes, compiled into the binary (420 KB).
pub static BUILTIN_ONNX: &[u8] = include_bytes!("../../models/blazeface-short-range/model.onnx");
/// sha256 of [`BUILTIN_ONNX`] (see models/blazeface-short-range/README.md).
pub const SHA256: &str = "4d711ff6b3583d7effaf13f76e3ba7791673dd6eeadf6cf75d5605a3ba811ec4";
/// The name the built-in model goes by in messages.
pub const BUILTIN_PATH: &str = "<built-in>/blazeface-short-range/model.onnx";

/// The input side in pixels.
pub const INPUT: u32 = 128;
/// Overlap above which detections are merged (the published graph's 0.3).
pub const IOU_THRESHOLD: f32 = 0.3;
/// The grey of the letterbox padding: 0 after normalisation, as the published graph pads.
const PAD: f32 = 0.0;

/// A detection in frame pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FrameDetection {
    /// Confidence in 0-1.
    pub score: f32,
    /// `[xmin, ymin, xmax, ymax]` in pixels (not clamped to the frame).
    pub bbox: [f32; 4],
    /// The six key points in pixels, in the order of [`KEYPOINTS`].
    pub keypoints: [[f32; 2]; KEYPOINTS],
}

/// The loaded detector: the plan for one 128x128 image and the anchor centres.
#[derive(Debug, Clone)]
pub struct BlazeFace {
    plan: Arc<TypedRunnableModel>,
    anchors: Vec<[f32; 2]>,
    options: DecodeOptions,
}

impl BlazeFace {
    /// The model compiled into the binary.
    ///
    /// # Errors
    /// [`Error::Checksum`] if the bytes are not the shipped model's, else as
    /// [`BlazeFace::from_bytes`]; only a broken build can fail here.
    pub fn builtin() -> Result<Self> {
        let path = Path::new(BUILTIN_PATH);
        check_known(path, &sha256_hex(BUILTIN_ONNX), SHA256, true)?;
        Self::from_bytes(BUILTIN_ONNX, path)
    }

    /// Loads a BlazeFace ONNX file. A file whose sha256 is not the shipped model's is used with a
    /// warning (it may be the user's own conversion), provided it has the model's inputs and
    /// outputs.
    ///
    /// # Errors
    /// [`Error::MissingModel`] if there is no such file, [`Error::ModelLoad`] naming it if it is
    /// not an ONNX graph tract can run (a truncated file) or has other inputs or outputs than the
    /// short-range BlazeFace (`[1, 128, 128, 3]` in, `[1, 896, 16]` and `[1, 896, 1]` out).
    pub fn load(path: &Path) -> Result<Self> {
        if !path.is_file() {
            return Err(Error::MissingModel {
                what: "BlazeFace model",
                path: path.to_path_buf(),
                hint: "the shipped one is built in: leave out --detector-model".to_string(),
            });
        }
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let detector = Self::from_bytes(&bytes, path)?;
        check_known(path, &sha256_hex(&bytes), SHA256, false)?;
        Ok(detector)
    }

    /// Prepares the model from its ONNX bytes; `path` is only used in messages.
    ///
    /// # Errors
    /// As [`BlazeFace::load`].
    pub fn from_bytes(onnx: &[u8], path: &Path) -> Result<Self> {
        let refuse = |reason: String| Error::ModelLoad {
            path: path.to_path_buf(),
            reason,
        };
        let load_err = |e: TractError| refuse(format!("{e:#}"));
        let input_shape = [1, INPUT as usize, INPUT as usize, 3];
        let model = tract_onnx::onnx()
            .model_for_read(&mut &onnx[..])
            .map_err(load_err)?;
        if model.inputs.len() != 1 || model.outputs.len() != 2 {
            return Err(refuse(format!(
                "{} inputs and {} outputs; BlazeFace has 1 input and 2 (regressors, classificators)",
                model.inputs.len(),
                model.outputs.len()
            )));
        }
        // Typed with the input shape given, so a model for another input size fails here or in
        // the output check below, not on the first frame.
        let typed = model
            .with_input_fact(0, f32::fact(input_shape).into())
            .and_then(|m| m.into_typed())
            .map_err(|e| {
                refuse(format!(
                    "does not take a {input_shape:?} input (NHWC RGB): {e:#}"
                ))
            })?;
        let anchors = AnchorGrid::short_range().centres();
        let expected = [
            vec![1, anchors.len(), decode::VALUES_PER_ANCHOR],
            vec![1, anchors.len(), 1],
        ];
        for (i, want) in expected.iter().enumerate() {
            let shape = typed.output_fact(i).map_err(load_err)?.shape.as_concrete();
            if shape != Some(want.as_slice()) {
                return Err(refuse(format!(
                    "output {i} has shape {:?}, the short-range BlazeFace gives {want:?}",
                    typed.output_fact(i).map_err(load_err)?.shape
                )));
            }
        }
        let plan = typed
            .into_optimized()
            .and_then(|m| m.into_runnable())
            .map_err(load_err)?;
        Ok(BlazeFace {
            plan,
            anchors,
            options: DecodeOptions::short_range(),
        })
    }

    /// Faces in `frame`, best first, in frame pixels.
    ///
    /// # Errors
    /// [`Error::Inference`] if tract fails.
    pub fn detect(&self, frame: &RgbImage) -> Result<Vec<FrameDetection>> {
        let (w, h) = frame.dimensions();
        if w == 0 || h == 0 {
            return Ok(Vec::new());
        }
        let letterbox = Letterbox::new(w, h);
        let (regressors, logits) = self.raw(&letterbox.input(frame))?;
        let found = decode(&regressors, &logits, &self.anchors, &self.options);
        Ok(weighted_nms(found, IOU_THRESHOLD)
            .into_iter()
            .map(|d| letterbox.detection(&d))
            .collect())
    }

    /// Runs the model on an already prepared input (`INPUT x INPUT x 3`, values in [-1, 1]) and
    /// returns its raw outputs: the regressors (16 values per anchor) and the score logits.
    ///
    /// # Errors
    /// [`Error::Invalid`] for an input of the wrong length, [`Error::Inference`] if tract fails.
    pub fn raw(&self, input: &[f32]) -> Result<(Vec<f32>, Vec<f32>)> {
        let infer = |e: TractError| Error::Inference(format!("{e:#}"));
        let side = INPUT as usize;
        let tensor = Tensor::from_shape(&[1, side, side, 3], input).map_err(|e| {
            Error::Invalid(format!("BlazeFace input of {} values: {e:#}", input.len()))
        })?;
        let out = self.plan.run(tvec!(tensor.into())).map_err(infer)?;
        let regressors = out[0].to_plain_array_view::<f32>().map_err(infer)?;
        let logits = out[1].to_plain_array_view::<f32>().map_err(infer)?;
        Ok((
            regressors.iter().copied().collect(),
            logits.iter().copied().collect(),
        ))
    }
}

/// How a frame sits in the square input: scaled by `scale` to fit, centred, the rest padded.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Letterbox {
    /// Frame pixels to input pixels.
    pub scale: f32,
    /// The frame's scaled width and height in input pixels.
    pub size: (u32, u32),
    /// Padding left and above, in input pixels.
    pub pad: (u32, u32),
}

impl Letterbox {
    /// The letterbox of a `width x height` frame (both > 0).
    pub fn new(width: u32, height: u32) -> Self {
        let scale = INPUT as f32 / width.max(height) as f32;
        let size = (
            ((width as f32 * scale).round() as u32).clamp(1, INPUT),
            ((height as f32 * scale).round() as u32).clamp(1, INPUT),
        );
        Letterbox {
            scale,
            size,
            pad: ((INPUT - size.0) / 2, (INPUT - size.1) / 2),
        }
    }

    /// The model's input for `frame`: scaled (with a triangle filter, which averages the pixels a
    /// downscale drops), padded, values `x / 127.5 - 1`, NHWC.
    pub fn input(&self, frame: &RgbImage) -> Vec<f32> {
        let small = image::imageops::resize(
            frame,
            self.size.0,
            self.size.1,
            image::imageops::FilterType::Triangle,
        );
        let side = INPUT as usize;
        let mut input = vec![PAD; side * side * 3];
        for (x, y, px) in small.enumerate_pixels() {
            let at = ((y + self.pad.1) as usize * side + (x + self.pad.0) as usize) * 3;
            for (c, v) in px.0.iter().enumerate() {
                input[at + c] = f32::from(*v) / 127.5 - 1.0;
            }
        }
        input
    }

    /// An input-relative point in frame pixels.
    pub fn point(&self, [x, y]: [f32; 2]) -> [f32; 2] {
        let side = INPUT as f32;
        [
            (x * side - self.pad.0 as f32) / self.scale,
            (y * side - self.pad.1 as f32) / self.scale,
        ]
    }

    fn detection(&self, d: &Detection) -> FrameDetection {
        let [x0, y0] = self.point([d.bbox[0], d.bbox[1]]);
        let [x1, y1] = self.point([d.bbox[2], d.bbox[3]]);
        FrameDetection {
            score: d.score,
            bbox: [x0, y0, x1, y1],
            keypoints: d.keypoints.map(|p| self.point(p)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn letterbox_of_a_landscape_frame_by_hand() {
        // 640x480 -> scale 0.2, 128 x 96, 16 px of padding above and below.
        let lb = Letterbox::new(640, 480);
        assert_eq!(lb.scale, 0.2);
        assert_eq!(lb.size, (128, 96));
        assert_eq!(lb.pad, (0, 16));
        // The input's centre is the frame's centre; its top-left corner lies above the frame.
        assert_eq!(lb.point([0.5, 0.5]), [320.0, 240.0]);
        assert_eq!(lb.point([0.0, 0.0]), [0.0, -80.0]);
        assert_eq!(lb.point([1.0, 0.875]), [640.0, 480.0]);
    }

    #[test]
    fn letterbox_input_keeps_pixels_and_pads_with_zero() {
        // A 4x2 frame: scale 32, 128 x 64, padded 32 rows above. Left half black, right white.
        let frame = RgbImage::from_fn(4, 2, |x, _| image::Rgb([if x < 2 { 0 } else { 255 }; 3]));
        let lb = Letterbox::new(4, 2);
        assert_eq!((lb.size, lb.pad), ((128, 64), (0, 32)));
        let input = lb.input(&frame);
        let at = |x: usize, y: usize| input[(y * 128 + x) * 3];
        assert_eq!(at(0, 0), 0.0); // padding
        assert_eq!(at(0, 127), 0.0);
        assert_eq!(at(0, 64), -1.0); // black
        assert_eq!(at(127, 64), 1.0); // white
    }
}
