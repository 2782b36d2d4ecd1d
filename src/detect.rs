//! Face detection and 68-point landmarks.
//!
//! [`FaceFinder`] owns the detector (dlib's HOG by default, see [`crate::hog`]; dlib's CNN
//! "mmod" detector; or MediaPipe's BlazeFace run by tract, see [`crate::blazeface`]) and dlib's
//! 68-point shape predictor (run by [`crate::shape_predictor`]), both loaded once per process.
//! Model files are checked by sha256: dlib's deserialiser trusts its input, so the mmod file is
//! checked before dlib reads it, and the landmark model is hashed as it is read. Alignment and
//! classification are other modules' jobs.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use dlib_face_recognition::{FaceDetectorCnn, FaceDetectorTrait, ImageMatrix};
use image::RgbImage;
use serde::Serialize;

use crate::blazeface::{BlazeFace, FrameDetection};
use crate::checksum::{check_known, sha256_file};
use crate::error::{Error, Result};
use crate::hog::HogDetector;
use crate::shape_predictor::ShapePredictor;

/// Where Debian's `libdlib-data` installs the 68-point landmark model.
pub const DEFAULT_LANDMARKS_MODEL: &str = "/usr/share/dlib/shape_predictor_68_face_landmarks.dat";

/// Environment variable that overrides [`DEFAULT_LANDMARKS_MODEL`].
pub const LANDMARKS_MODEL_ENV: &str = "EDGE_FER_LANDMARKS_MODEL";

/// sha256 of dlib's `shape_predictor_68_face_landmarks.dat` (Debian `libdlib-data` 19.24 and
/// dlib-models ship the same bytes).
pub const LANDMARKS_68_SHA256: &str =
    "fbdc2cb80eb9aa7a758672cbfdda32ba6300efe9b6e6c7a299ff7e736b11b92f";

/// sha256 of dlib's `mmod_human_face_detector.dat` (see `models/dlib-mmod-face-detector/`).
pub const MMOD_SHA256: &str = "4cb19393e2fbaf2b1609a9319ad5386618c886a6234ec1b971f3e87c85d87fe6";

/// A face box in frame pixels; `right` and `bottom` are inclusive, as dlib reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct FaceBox {
    /// Left edge.
    pub left: i64,
    /// Top edge.
    pub top: i64,
    /// Right edge.
    pub right: i64,
    /// Bottom edge.
    pub bottom: i64,
}

impl FaceBox {
    /// Area in pixels (0 for an empty box).
    pub fn area(&self) -> i64 {
        (self.right - self.left + 1).max(0) * (self.bottom - self.top + 1).max(0)
    }

    /// Intersection over union with `other`, in [0, 1].
    pub fn iou(&self, other: &FaceBox) -> f32 {
        let inter = FaceBox {
            left: self.left.max(other.left),
            top: self.top.max(other.top),
            right: self.right.min(other.right),
            bottom: self.bottom.min(other.bottom),
        }
        .area();
        let union = self.area() + other.area() - inter;
        if union <= 0 {
            0.0
        } else {
            inter as f32 / union as f32
        }
    }
}

/// The 68 facial landmarks of dlib's model, `[x, y]` in frame pixels, in the iBUG 300-W order
/// (0-16 jaw, 17-26 brows, 27-35 nose, 36-47 eyes, 48-67 mouth).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Landmarks(pub [[f32; 2]; 68]);

impl Landmarks {
    /// The mean distance between these points and `reference`'s, in units of `reference`'s
    /// inter-ocular distance (between the eye centres): the usual landmark error, 0.03 being
    /// a fit a person would not tell apart from the reference.
    pub fn error_against(&self, reference: &Landmarks) -> f32 {
        let [left, right, ..] = crate::align::five_points(reference);
        let iod = (left[0] - right[0]).hypot(left[1] - right[1]);
        let total: f32 = self
            .0
            .iter()
            .zip(&reference.0)
            .map(|(p, q)| (p[0] - q[0]).hypot(p[1] - q[1]))
            .sum();
        total / 68.0 / iod
    }
}

impl Serialize for Landmarks {
    /// Points to a hundredth of a pixel: the fit is sub-pixel, but not to eight digits.
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let hundredths = |v: f32| (v * 100.0).round() / 100.0;
        s.collect_seq(self.0.iter().map(|p| p.map(hundredths)))
    }
}

/// One detected face.
#[derive(Debug, Clone, PartialEq)]
pub struct Face {
    /// The detector's box.
    pub bbox: FaceBox,
    /// The 68 landmarks found in that box.
    pub landmarks: Landmarks,
}

/// Which detector finds the faces, and the model file where it needs one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum DetectorChoice {
    /// dlib's HOG + linear SVM frontal face detector, compiled in ([`crate::hog`]).
    #[default]
    Hog,
    /// dlib's CNN with max-margin object detection, from this file: slower, more robust to pose.
    Mmod(PathBuf),
    /// MediaPipe's short-range BlazeFace: the built-in model, or this ONNX file.
    BlazeFace(Option<PathBuf>),
}

/// The loaded detector.
enum Detector {
    Hog(HogDetector),
    Cnn(Box<FaceDetectorCnn>),
    BlazeFace(Box<BlazeFace>),
}

/// From a BlazeFace box to the box dlib's shape predictor expects: dlib's predictor was trained
/// on boxes from dlib's own HOG detector, which sit lower and are tighter than BlazeFace's, and
/// the fit depends on it. The centre moves by (`dx`, `dy`) times the BlazeFace box's side and the
/// side is multiplied by `scale`; the box stays square, as HOG's are.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BoxMapping {
    /// Horizontal shift of the centre, in BlazeFace box sides.
    pub dx: f32,
    /// Vertical shift of the centre, in BlazeFace box sides.
    pub dy: f32,
    /// dlib side / BlazeFace side.
    pub scale: f32,
}

/// Calibrated on the faces where both detectors fire (`cargo run --release --example
/// calibrate_blazeface`, see models/blazeface-short-range/README.md): the shift and scale that put
/// the landmarks fitted in the mapped box nearest those fitted in HOG's box.
pub const BLAZEFACE_TO_DLIB: BoxMapping = BoxMapping {
    dx: 0.0592,
    dy: -0.0911,
    scale: 0.9182,
};

impl BoxMapping {
    /// The dlib-convention box for a BlazeFace detection, clipped to a `width x height` frame.
    pub fn map(&self, d: &FrameDetection, width: u32, height: u32) -> FaceBox {
        let [x0, y0, x1, y1] = d.bbox;
        let side = ((x1 - x0) + (y1 - y0)) / 2.0;
        let cx = (x0 + x1) / 2.0 + self.dx * side;
        let cy = (y0 + y1) / 2.0 + self.dy * side;
        let half = self.scale * side / 2.0;
        let clip = |v: f32, max: u32| (v.round() as i64).clamp(0, i64::from(max) - 1);
        FaceBox {
            left: clip(cx - half, width),
            top: clip(cy - half, height),
            right: clip(cx + half, width),
            bottom: clip(cy + half, height),
        }
    }
}

/// Detection and landmark settings.
#[derive(Debug, Clone)]
pub struct FaceFinderConfig {
    /// The 68-point shape predictor file.
    pub landmarks_model: PathBuf,
    /// The face detector.
    pub detector: DetectorChoice,
    /// Keep at most this many faces per frame, largest first.
    pub max_faces: usize,
}

impl Default for FaceFinderConfig {
    fn default() -> Self {
        FaceFinderConfig {
            landmarks_model: std::env::var_os(LANDMARKS_MODEL_ENV)
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_LANDMARKS_MODEL)),
            detector: DetectorChoice::Hog,
            max_faces: 8,
        }
    }
}

/// Finds faces and their 68 landmarks in RGB frames.
pub struct FaceFinder {
    detector: Detector,
    predictor: ShapePredictor,
    max_faces: usize,
}

impl FaceFinder {
    /// Loads the detector and the landmark model.
    ///
    /// The files are checked against the known sha256 of dlib's published models; a file with
    /// another hash is refused if it sits at the default path (it must be a damaged copy) and
    /// accepted with a warning if the user named it (it may be their own model).
    ///
    /// # Errors
    /// [`Error::MissingModel`] if a file does not exist, [`Error::Checksum`] for a damaged default
    /// model, [`Error::ModelLoad`] if dlib cannot read it.
    pub fn load(config: &FaceFinderConfig) -> Result<Self> {
        let lm = &config.landmarks_model;
        if !lm.is_file() {
            return Err(Error::MissingModel {
                what: "landmark model",
                path: lm.clone(),
                hint: format!(
                    "install Debian's libdlib-data (./setup does), or pass --landmarks-model FILE or set {LANDMARKS_MODEL_ENV}"
                ),
            });
        }
        // The landmark model (95 MB, hashed as it is parsed) takes most of the start-up; the
        // detector loads beside it.
        let (predictor, detector) = std::thread::scope(|scope| {
            let detector = scope.spawn(|| load_detector(&config.detector));
            let predictor = load_predictor(lm);
            let detector = detector
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            (predictor, detector)
        });
        let (predictor, detector) = (predictor?, detector?);
        Ok(FaceFinder {
            detector,
            predictor,
            max_faces: config.max_faces,
        })
    }

    /// Finds up to `max_faces` faces, largest first, each with its 68 landmarks.
    pub fn find(&self, frame: &RgbImage) -> Vec<Face> {
        self.find_timed(frame).0
    }

    /// As [`FaceFinder::find`], also returning the time spent detecting and fitting landmarks
    /// (for benchmarks and stage statistics).
    pub fn find_timed(&self, frame: &RgbImage) -> (Vec<Face>, StageTimes) {
        // Largest first, and only those we keep get landmarks.
        let (boxes, detect) = self.detect_only(frame);
        self.with_landmarks(frame, boxes, detect)
    }

    /// The 68 landmarks fitted in each box, at full resolution.
    fn with_landmarks(
        &self,
        frame: &RgbImage,
        boxes: Vec<FaceBox>,
        detect: Duration,
    ) -> (Vec<Face>, StageTimes) {
        let start = Instant::now();
        let landmarks = self.landmarks_in_boxes(frame, &boxes);
        let faces = boxes
            .into_iter()
            .zip(landmarks)
            .map(|(bbox, landmarks)| Face { bbox, landmarks })
            .collect();
        let times = StageTimes {
            detect,
            landmarks: start.elapsed(),
        };
        (faces, times)
    }
}

impl FaceFinder {
    /// As [`FaceFinder::find_timed`], but detecting on a copy of the frame scaled down to
    /// `detect_width` pixels wide (when the frame is wider): HOG's cost grows with the pixel
    /// count, so a 640-wide frame detected at 320 costs about a quarter. The boxes are scaled back
    /// and the landmarks are fitted in the full-resolution frame, so they lose no precision; faces
    /// smaller than about 60 pixels at the detection scale are missed (measured: BENCHMARKS.md).
    pub fn find_downscaled(&self, frame: &RgbImage, detect_width: u32) -> (Vec<Face>, StageTimes) {
        let (w, h) = frame.dimensions();
        // BlazeFace scales every frame to its 128 px input itself.
        let scales_itself = matches!(self.detector, Detector::BlazeFace(_));
        if detect_width == 0 || w <= detect_width || h == 0 || scales_itself {
            return self.find_timed(frame);
        }
        let start = Instant::now();
        let scale = detect_width as f32 / w as f32;
        let small_h = ((h as f32 * scale).round() as u32).max(1);
        let small = image::imageops::resize(
            frame,
            detect_width,
            small_h,
            image::imageops::FilterType::Triangle,
        );
        let (faces, _) = self.detect_only(&small);
        let up = |v: i64| (v as f32 / scale).round() as i64;
        let boxes: Vec<FaceBox> = faces
            .iter()
            .map(|b| FaceBox {
                left: up(b.left).max(0),
                top: up(b.top).max(0),
                right: up(b.right + 1).min(i64::from(w)) - 1,
                bottom: up(b.bottom + 1).min(i64::from(h)) - 1,
            })
            .collect();
        self.with_landmarks(frame, boxes, start.elapsed())
    }

    /// Boxes only, largest first, at most `max_faces`.
    fn detect_only(&self, frame: &RgbImage) -> (Vec<FaceBox>, Duration) {
        let start = Instant::now();
        let mut boxes = match &self.detector {
            Detector::Hog(d) => d.detect(frame),
            Detector::Cnn(d) => dlib_boxes(d.as_ref(), frame),
            Detector::BlazeFace(d) => blazeface_boxes(d, frame),
        };
        boxes.sort_by_key(|b| std::cmp::Reverse(b.area()));
        boxes.truncate(self.max_faces);
        (boxes, start.elapsed())
    }

    /// Fits the 68 landmarks inside a given box, without detecting: for faces whose box is
    /// already known (a dataset's annotation, an aligned crop, a tracked face).
    pub fn landmarks_in(&self, frame: &RgbImage, bbox: FaceBox) -> Landmarks {
        self.landmarks_in_boxes(frame, &[bbox])[0]
    }

    /// As [`FaceFinder::landmarks_in`] for several boxes.
    pub fn landmarks_in_boxes(&self, frame: &RgbImage, boxes: &[FaceBox]) -> Vec<Landmarks> {
        boxes
            .iter()
            .map(|&bbox| self.predictor.predict(frame, bbox))
            .collect()
    }
}

/// dlib's 68-point shape predictor from `path`, its sha256 checked as it is read.
fn load_predictor(path: &Path) -> Result<ShapePredictor> {
    let start = Instant::now();
    let strict = path == Path::new(DEFAULT_LANDMARKS_MODEL);
    let predictor = ShapePredictor::load(path, LANDMARKS_68_SHA256, strict)?;
    tracing::debug!(
        path = %path.display(),
        ms = start.elapsed().as_millis() as u64,
        "landmark model loaded"
    );
    Ok(predictor)
}

fn load_detector(choice: &DetectorChoice) -> Result<Detector> {
    let start = Instant::now();
    let detector = match choice {
        DetectorChoice::Hog => Detector::Hog(HogDetector::builtin()?),
        DetectorChoice::Mmod(path) => {
            if !path.is_file() {
                return Err(Error::MissingModel {
                    what: "CNN face detector model",
                    path: path.clone(),
                    hint: "it ships in models/dlib-mmod-face-detector/".to_string(),
                });
            }
            check_known(path, &sha256_file(path)?, MMOD_SHA256, false)?;
            Detector::Cnn(Box::new(FaceDetectorCnn::open(path).map_err(|e| {
                Error::ModelLoad {
                    path: path.clone(),
                    reason: e,
                }
            })?))
        }
        DetectorChoice::BlazeFace(path) => Detector::BlazeFace(Box::new(match path {
            Some(path) => BlazeFace::load(path)?,
            None => BlazeFace::builtin()?,
        })),
    };
    tracing::debug!(
        detector = ?choice,
        ms = start.elapsed().as_millis() as u64,
        "face detector loaded"
    );
    Ok(detector)
}

/// A dlib detector's boxes in `frame` (none in an empty frame).
fn dlib_boxes(detector: &impl FaceDetectorTrait, frame: &RgbImage) -> Vec<FaceBox> {
    match dlib_image(frame) {
        Some(matrix) => detector
            .face_locations(&matrix)
            .iter()
            .map(face_box)
            .collect(),
        None => Vec::new(),
    }
}

/// BlazeFace's boxes in `frame`, mapped to the boxes dlib's shape predictor expects.
fn blazeface_boxes(detector: &BlazeFace, frame: &RgbImage) -> Vec<FaceBox> {
    let (w, h) = frame.dimensions();
    match detector.detect(frame) {
        Ok(found) => found
            .iter()
            .map(|f| BLAZEFACE_TO_DLIB.map(f, w, h))
            .collect(),
        // A fixed-shape plan that ran once does not fail on one frame and not the next; should
        // it, this frame has no faces and the run goes on.
        Err(err) => {
            tracing::warn!(error = %err, "BlazeFace failed on a frame");
            Vec::new()
        }
    }
}

/// A copy of `frame` in dlib's image type; `None` for an empty frame.
fn dlib_image(frame: &RgbImage) -> Option<ImageMatrix> {
    let (w, h) = frame.dimensions();
    if w == 0 || h == 0 {
        return None;
    }
    // SAFETY: `frame` is a packed RGB8 buffer of exactly w * h * 3 bytes, which is what
    // ImageMatrix::new reads; it copies the pixels, so the borrow ends with the call.
    Some(unsafe { ImageMatrix::new(w as usize, h as usize, frame.as_raw().as_ptr()) })
}

/// Time spent in each part of [`FaceFinder::find_timed`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StageTimes {
    /// Face detection (including the copy into dlib's image type).
    pub detect: Duration,
    /// Landmark fitting for all kept faces.
    pub landmarks: Duration,
}

// dlib's coordinates are C `long`: 64-bit on aarch64/x86_64 (the conversion is then a no-op) but
// 32-bit on armv7, which the same source must build for.
#[allow(clippy::useless_conversion)]
fn face_box(r: &dlib_face_recognition::Rectangle) -> FaceBox {
    FaceBox {
        left: i64::from(r.left),
        top: i64::from(r.top),
        right: i64::from(r.right),
        bottom: i64::from(r.bottom),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn landmark_error_by_hand() {
        // Eyes 10 px apart; every point of the fit 5 px off (3 right, 4 down): error 5 / 10.
        let mut reference = Landmarks([[0.0; 2]; 68]);
        for p in &mut reference.0[42..48] {
            *p = [10.0, 0.0];
        }
        let mut fit = reference;
        for p in &mut fit.0 {
            *p = [p[0] + 3.0, p[1] + 4.0];
        }
        assert!((fit.error_against(&reference) - 0.5).abs() < 1e-6);
        assert_eq!(reference.error_against(&reference), 0.0);
    }

    #[test]
    fn blazeface_box_mapping_by_hand() {
        let mapping = BoxMapping {
            dx: 0.1,
            dy: -0.2,
            scale: 0.5,
        };
        let d = FrameDetection {
            score: 0.9,
            bbox: [100.0, 100.0, 200.0, 200.0],
            keypoints: [[0.0; 2]; 6],
        };
        // Centre (150, 150) moves by (10, -20); the side halves to 50.
        assert_eq!(
            mapping.map(&d, 640, 480),
            FaceBox {
                left: 135,
                top: 105,
                right: 185,
                bottom: 155
            }
        );
        // Clipped to the frame: centre (10, 470), half side 25, so left -15 and bottom 495.
        let edge = FrameDetection {
            bbox: [-50.0, 440.0, 50.0, 540.0],
            ..d
        };
        let b = mapping.map(&edge, 640, 480);
        assert_eq!((b.left, b.top, b.right, b.bottom), (0, 445, 35, 479));
    }
}
