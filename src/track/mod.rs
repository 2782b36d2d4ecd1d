//! Follows faces from frame to frame so that detection, the expensive step, runs only now and
//! then, and smooths each face's probabilities over time so labels do not flicker.
//!
//! Between detections a face is followed by re-fitting its 68 landmarks (about a millisecond)
//! in the box predicted from its last landmarks: the shape predictor pulls the points onto the
//! face where it has moved to. A fresh detection every `detect_every` frames picks up new faces,
//! drops faces that left, and corrects drift; a follow that looks wrong (the fitted shape jumps
//! or changes size) asks for a detection at once, and so does one that no longer looks like the
//! face that was detected ([`Look`]): the face has left and the landmarks sit on the background,
//! so the track ends on that frame instead of lingering until the next scheduled detection.

mod look;

use std::collections::HashMap;

use image::RgbImage;

use crate::detect::{Face, FaceBox, FaceFinder, Landmarks, StageTimes};
pub use look::Look;

/// Tracking settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrackConfig {
    /// Detect on every Nth frame (1: every frame, no following); the frames between follow the
    /// faces found.
    pub detect_every: u32,
    /// Detect on a copy of the frame scaled to this width (0: full resolution); landmarks are
    /// always fitted at full resolution.
    pub detect_width: u32,
    /// End a followed face's track as soon as it no longer looks like the face detected
    /// ([`Look`], [`SAME_LOOK`]) rather than at the next detection. On by default; off only to
    /// measure what the check costs.
    pub end_ghosts: bool,
}

impl Default for TrackConfig {
    fn default() -> Self {
        TrackConfig {
            detect_every: 1,
            detect_width: 0,
            end_ghosts: true,
        }
    }
}

/// A face in one frame, with the track it belongs to.
#[derive(Debug, Clone, PartialEq)]
pub struct TrackedFace {
    /// Box and landmarks in this frame.
    pub face: Face,
    /// Stable id of this face across frames, from 1.
    pub track: u64,
    /// Whether this frame's box came from the detector (`false`: followed).
    pub detected: bool,
}

/// A followed face whose look correlates less than this with its look when detected is taken to
/// have left. Measured (BENCHMARKS.md, "Ghost tracks"): a face followed across frames stays above
/// 0.8; its landmarks left on a wall or a landscape fall below 0.4.
pub const SAME_LOOK: f32 = 0.6;

/// A detection box this far from the box predicted from the landmarks (intersection over union)
/// is taken to be the same face.
const SAME_FACE_IOU: f32 = 0.3;

#[derive(Debug, Clone)]
struct Track {
    id: u64,
    face: Face,
    /// The detector's box relative to the landmarks' extent, measured when last detected:
    /// centre offset (x, y) and size (w, h), each as a fraction of the extent's width/height.
    fit: [f32; 4],
    /// How the face looked when last detected (`None`: too flat to compare, never checked).
    look: Option<Look>,
}

/// Follows faces across frames. One per source; frames must be given in order.
#[derive(Debug)]
pub struct Tracker {
    config: TrackConfig,
    tracks: Vec<Track>,
    next_id: u64,
    since_detect: u32,
}

impl Tracker {
    /// A tracker with no faces yet.
    pub fn new(config: TrackConfig) -> Self {
        Tracker {
            config,
            tracks: Vec::new(),
            next_id: 1,
            since_detect: 0,
        }
    }

    /// The faces in `frame`, each with its track id, largest first as detected; and the time
    /// spent detecting and fitting landmarks.
    pub fn update(
        &mut self,
        finder: &FaceFinder,
        frame: &RgbImage,
    ) -> (Vec<TrackedFace>, StageTimes) {
        let due = self.tracks.is_empty() || self.since_detect + 1 >= self.config.detect_every;
        if !due {
            let start = std::time::Instant::now();
            if let Some(followed) = self.follow(finder, frame) {
                self.since_detect += 1;
                let times = StageTimes {
                    detect: std::time::Duration::ZERO,
                    landmarks: start.elapsed(),
                };
                return (followed, times);
            }
            tracing::debug!("lost a face while following; detecting");
        }
        let (faces, times) = finder.find_downscaled(frame, self.config.detect_width);
        self.since_detect = 0;
        (self.associate(frame, faces), times)
    }

    /// Re-fits every track's landmarks in its predicted box; `None` if any looks lost.
    fn follow(&mut self, finder: &FaceFinder, frame: &RgbImage) -> Option<Vec<TrackedFace>> {
        let (w, h) = frame.dimensions();
        let predicted = self
            .tracks
            .iter()
            .map(|t| predict_box(&t.face.landmarks, t.fit, w, h))
            .collect::<Option<Vec<_>>>()?;
        let mut moved = Vec::with_capacity(self.tracks.len());
        for (track, landmarks) in self
            .tracks
            .iter()
            .zip(finder.landmarks_in_boxes(frame, &predicted))
        {
            if !plausible(&track.face.landmarks, &landmarks) {
                return None;
            }
            if let Some(reference) = track.look.as_ref().filter(|_| self.config.end_ghosts) {
                let same = Look::of(frame, &landmarks).map_or(0.0, |l| l.similarity(reference));
                if same < SAME_LOOK {
                    tracing::debug!(track = track.id, same, "a followed face looks gone");
                    return None;
                }
            }
            let bbox = predict_box(&landmarks, track.fit, w, h)?;
            moved.push(Face { bbox, landmarks });
        }
        let mut out = Vec::with_capacity(moved.len());
        for (track, face) in self.tracks.iter_mut().zip(moved) {
            track.face = face.clone();
            out.push(TrackedFace {
                face,
                track: track.id,
                detected: false,
            });
        }
        Some(out)
    }

    /// Gives each detected face the id of the track it overlaps most (if enough), else a new id.
    fn associate(&mut self, frame: &RgbImage, faces: Vec<Face>) -> Vec<TrackedFace> {
        let mut old = std::mem::take(&mut self.tracks);
        let mut out = Vec::with_capacity(faces.len());
        for face in faces {
            let best = old
                .iter()
                .enumerate()
                .map(|(i, t)| (i, t.face.bbox.iou(&face.bbox)))
                .filter(|&(_, iou)| iou >= SAME_FACE_IOU)
                .max_by(|a, b| a.1.total_cmp(&b.1));
            let id = match best {
                Some((i, _)) => old.swap_remove(i).id,
                None => {
                    self.next_id += 1;
                    self.next_id - 1
                }
            };
            self.tracks.push(Track {
                id,
                look: Look::of(frame, &face.landmarks),
                face: face.clone(),
                fit: box_fit(&face),
            });
            out.push(TrackedFace {
                face,
                track: id,
                detected: true,
            });
        }
        out
    }
}

/// The landmarks' bounding extent: (min x, min y, max x, max y).
fn extent(landmarks: &Landmarks) -> [f32; 4] {
    landmarks.0.iter().fold(
        [f32::MAX, f32::MAX, f32::MIN, f32::MIN],
        |[x0, y0, x1, y1], &[x, y]| [x0.min(x), y0.min(y), x1.max(x), y1.max(y)],
    )
}

/// How the detector's box sits on the landmarks' extent (see [`Track::fit`]).
fn box_fit(face: &Face) -> [f32; 4] {
    let [x0, y0, x1, y1] = extent(&face.landmarks);
    let (ew, eh) = ((x1 - x0).max(1.0), (y1 - y0).max(1.0));
    let b = &face.bbox;
    let (bw, bh) = ((b.right - b.left + 1) as f32, (b.bottom - b.top + 1) as f32);
    let (bcx, bcy) = (
        (b.left + b.right) as f32 / 2.0,
        (b.top + b.bottom) as f32 / 2.0,
    );
    [
        (bcx - (x0 + x1) / 2.0) / ew,
        (bcy - (y0 + y1) / 2.0) / eh,
        bw / ew,
        bh / eh,
    ]
}

/// The detector-like box for these landmarks, clipped to the frame; `None` if nothing is left.
fn predict_box(landmarks: &Landmarks, fit: [f32; 4], width: u32, height: u32) -> Option<FaceBox> {
    let [x0, y0, x1, y1] = extent(landmarks);
    let (ew, eh) = (x1 - x0, y1 - y0);
    let (cx, cy) = ((x0 + x1) / 2.0 + fit[0] * ew, (y0 + y1) / 2.0 + fit[1] * eh);
    // Edges are inclusive: a box n pixels wide spans centre +- (n - 1) / 2.
    let (hw, hh) = ((fit[2] * ew - 1.0) / 2.0, (fit[3] * eh - 1.0) / 2.0);
    let b = FaceBox {
        left: ((cx - hw).round() as i64).max(0),
        top: ((cy - hh).round() as i64).max(0),
        right: ((cx + hw).round() as i64).min(i64::from(width) - 1),
        bottom: ((cy + hh).round() as i64).min(i64::from(height) - 1),
    };
    // A face mostly outside the frame cannot be followed.
    (b.right - b.left >= 16 && b.bottom - b.top >= 16).then_some(b)
}

/// Whether `now` can be the face `before` was, one frame later: the shape kept its size within
/// 30% and moved less than half its width.
fn plausible(before: &Landmarks, now: &Landmarks) -> bool {
    let [a0, b0, a1, b1] = extent(before);
    let [c0, d0, c1, d1] = extent(now);
    let (w0, w1) = ((a1 - a0).max(1.0), (c1 - c0).max(1.0));
    let ratio = w1 / w0;
    let shift = (((c0 + c1) - (a0 + a1)) / 2.0).hypot(((d0 + d1) - (b0 + b1)) / 2.0);
    (1.0 / 1.3..=1.3).contains(&ratio) && shift < 0.5 * w0
}

/// Exponential smoothing of each track's probabilities: `p = a * new + (1 - a) * p`. `a = 1`
/// turns it off. Tracks not seen for a while are forgotten.
#[derive(Debug)]
pub struct Smoother {
    alpha: f32,
    tracks: HashMap<u64, (Vec<f32>, u64)>,
    frame: u64,
}

/// A track unseen for this many frames starts afresh if it comes back.
const FORGET_AFTER: u64 = 30;

impl Smoother {
    /// `alpha` in (0, 1]: the weight of the newest frame.
    pub fn new(alpha: f32) -> Self {
        Smoother {
            alpha: alpha.clamp(f32::MIN_POSITIVE, 1.0),
            tracks: HashMap::new(),
            frame: 0,
        }
    }

    /// Call once per frame, before [`Smoother::smooth`] for its faces.
    pub fn next_frame(&mut self) {
        self.frame += 1;
        let now = self.frame;
        self.tracks
            .retain(|_, (_, seen)| now - *seen <= FORGET_AFTER);
    }

    /// Smooths `probs` (this frame's, for `track`) in place.
    pub fn smooth(&mut self, track: u64, probs: &mut [f32]) {
        let now = self.frame;
        let a = self.alpha;
        match self.tracks.get_mut(&track) {
            Some((state, seen)) if state.len() == probs.len() => {
                for (s, p) in state.iter_mut().zip(probs.iter_mut()) {
                    *s = a * *p + (1.0 - a) * *s;
                    *p = *s;
                }
                *seen = now;
            }
            _ => {
                self.tracks.insert(track, (probs.to_vec(), now));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn square_face(left: f32, top: f32, side: f32) -> Landmarks {
        // Points spread evenly over a side x side square (what matters here is the extent).
        let mut pts = [[0.0f32; 2]; 68];
        for (i, p) in pts.iter_mut().enumerate() {
            let (u, v) = ((i % 9) as f32 / 8.0, (i / 9) as f32 / 7.0);
            *p = [left + u * side, top + v * side];
        }
        Landmarks(pts)
    }

    #[test]
    fn the_box_follows_the_landmarks_with_the_detected_proportions() {
        let landmarks = square_face(100.0, 100.0, 80.0);
        // Detected box: 20% wider than the points, centred, and 10 px lower.
        let face = Face {
            bbox: FaceBox {
                left: 92,
                top: 102,
                right: 188,
                bottom: 198,
            },
            landmarks,
        };
        let fit = box_fit(&face);
        assert!((fit[0] - 0.0).abs() < 1e-6 && (fit[1] - 10.0 / 80.0).abs() < 1e-6);
        assert!((fit[2] - 97.0 / 80.0).abs() < 1e-6);
        // The same face moved by (+30, -20): the box moves with it, same size.
        let moved = square_face(130.0, 80.0, 80.0);
        let b = predict_box(&moved, fit, 640, 480).unwrap();
        assert_eq!(
            (b.left, b.top, b.right, b.bottom),
            (122, 82, 218, 178),
            "{b:?}"
        );
        // Clipped at the frame's edge, and refused when almost nothing is left.
        let edge = predict_box(&square_face(600.0, 10.0, 80.0), fit, 640, 480).unwrap();
        assert_eq!(edge.right, 639);
        assert!(predict_box(&square_face(660.0, 10.0, 80.0), fit, 640, 480).is_none());
    }

    #[test]
    fn a_jump_or_a_change_of_size_is_not_the_same_face() {
        let a = square_face(100.0, 100.0, 80.0);
        assert!(plausible(&a, &square_face(110.0, 95.0, 84.0)));
        assert!(
            !plausible(&a, &square_face(150.0, 100.0, 80.0)),
            "moved 50 px > 40"
        );
        assert!(
            !plausible(&a, &square_face(100.0, 100.0, 120.0)),
            "1.5x larger"
        );
        assert!(
            !plausible(&a, &square_face(100.0, 100.0, 50.0)),
            "0.63x smaller"
        );
    }

    #[test]
    fn detections_keep_the_id_of_the_track_they_overlap() {
        let mut t = Tracker::new(TrackConfig::default());
        let face = |left: i64| Face {
            bbox: FaceBox {
                left,
                top: 100,
                right: left + 99,
                bottom: 199,
            },
            landmarks: square_face(left as f32 + 10.0, 110.0, 80.0),
        };
        let frame = RgbImage::new(640, 480);
        let first = t.associate(&frame, vec![face(0), face(300)]);
        assert_eq!(first.iter().map(|f| f.track).collect::<Vec<_>>(), [1, 2]);
        // Both moved a little, listed in the other order, and a third face arrived.
        let second = t.associate(&frame, vec![face(310), face(500), face(15)]);
        assert_eq!(
            second.iter().map(|f| f.track).collect::<Vec<_>>(),
            [2, 3, 1]
        );
        // The face at 500 left; one far away is new, not track 3.
        let third = t.associate(&frame, vec![face(15), face(320), face(100)]);
        assert_eq!(third.iter().map(|f| f.track).collect::<Vec<_>>(), [1, 2, 4]);
    }

    #[test]
    fn smoothing_is_an_exponential_average_per_track() {
        let mut s = Smoother::new(0.25);
        s.next_frame();
        let mut p = [1.0, 0.0];
        s.smooth(7, &mut p);
        assert_eq!(p, [1.0, 0.0], "a new track starts at its first value");
        s.next_frame();
        let mut p = [0.0, 1.0];
        s.smooth(7, &mut p);
        assert_eq!(p, [0.75, 0.25]);
        let mut other = [0.0, 1.0];
        s.smooth(8, &mut other);
        assert_eq!(other, [0.0, 1.0], "tracks do not mix");
        s.next_frame();
        let mut p = [0.0, 1.0];
        s.smooth(7, &mut p);
        assert_eq!(p, [0.5625, 0.4375]);
        // Unseen for longer than FORGET_AFTER frames: starts afresh.
        for _ in 0..=FORGET_AFTER {
            s.next_frame();
        }
        let mut p = [0.0, 1.0];
        s.smooth(7, &mut p);
        assert_eq!(p, [0.0, 1.0]);
        // alpha 1: off.
        let mut off = Smoother::new(1.0);
        off.next_frame();
        off.smooth(1, &mut [1.0, 0.0]);
        off.next_frame();
        let mut p = [0.2, 0.8];
        off.smooth(1, &mut p);
        assert_eq!(p, [0.2, 0.8]);
    }
}
