//! Head pose from the 68 landmarks, and whether the head is turned towards the screen.
//!
//! Ten landmarks that expressions move least (eye corners, nose, mouth corners, chin) are matched
//! to the same points of a mean face, MediaPipe's canonical face model
//! (`models/mediapipe-canonical-face/`), and the rotation and position of that face that project
//! it best through a pinhole camera are found by Levenberg-Marquardt on the squared reprojection
//! error. The camera is derived from the frame: principal point at its centre, square pixels,
//! focal length given (or the frame's width: a ~53 degree horizontal field of view, ordinary for a
//! webcam). This is head direction, not gaze: the eyes are not looked at.
//!
//! Angles, in degrees, are of the head relative to the line from it to the camera (0, 0, 0: facing
//! the lens, wherever the face is in the frame), applied as yaw, then pitch, then roll about the
//! head's own axes (`R = Ry(yaw) Rx(-pitch) Rz(roll)` with x to the image's right, y up, z
//! towards the camera):
//! - `yaw > 0`: the face turned towards the image's right (the person's own left);
//! - `pitch > 0`: the face tilted up;
//! - `roll > 0`: the head tilted counter-clockwise as the camera sees it (towards the person's
//!   right shoulder).
//!
//! Pure geometry: nothing here knows about the classifier.

use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use crate::detect::Landmarks;

/// The mean face's points, compiled in (see `models/mediapipe-canonical-face/README.md`).
const CANONICAL_POINTS: &str = include_str!("../models/mediapipe-canonical-face/points.json");

/// A head's orientation relative to the camera, in degrees (signs in the module's docs).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pose {
    /// Turn left/right: positive towards the image's right.
    pub yaw: f32,
    /// Nod up/down: positive up.
    pub pitch: f32,
    /// Tilt: positive counter-clockwise as the camera sees it.
    pub roll: f32,
}

impl Serialize for Pose {
    /// To a tenth of a degree: the fit is not better than a degree or two.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let tenths = |v: f32| (v * 10.0).round() / 10.0;
        let mut st = s.serialize_struct("Pose", 3)?;
        st.serialize_field("yaw", &tenths(self.yaw))?;
        st.serialize_field("pitch", &tenths(self.pitch))?;
        st.serialize_field("roll", &tenths(self.roll))?;
        st.end()
    }
}

/// How head poses are fitted and judged.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct PoseConfig {
    /// The camera's focal length in pixels; `None`: the frame's width.
    pub focal: Option<f64>,
    /// When a head counts as turned towards the screen.
    pub attention: Attention,
}

impl PoseConfig {
    /// Checks the ranges; the message names the setting.
    ///
    /// # Errors
    /// A description of the value out of range.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(f) = self.focal {
            if !(f.is_finite() && f > 0.0) {
                return Err(format!(
                    "focal length {f} pixels is out of range: give a positive number"
                ));
            }
        }
        self.attention.validate()
    }

    /// The pose and attention of one face in a `width` x `height` frame; `None` if the fit fails.
    pub fn judge(&self, landmarks: &Landmarks, width: u32, height: u32) -> Option<(Pose, bool)> {
        let head = estimate(landmarks, &Camera::for_frame(width, height, self.focal))?;
        Some((head.angles(), head.looking(&self.attention)))
    }
}

/// A pinhole camera: focal length and principal point, in pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Camera {
    /// Focal length in pixels.
    pub focal: f64,
    /// Principal point, x.
    pub cx: f64,
    /// Principal point, y.
    pub cy: f64,
}

impl Camera {
    /// The camera for a `width` x `height` frame: principal point at the centre of the pixel grid,
    /// focal length `focal` pixels or, if `None`, the frame's width.
    pub fn for_frame(width: u32, height: u32, focal: Option<f64>) -> Self {
        Camera {
            focal: focal.unwrap_or(f64::from(width)),
            cx: (f64::from(width) - 1.0) / 2.0,
            cy: (f64::from(height) - 1.0) / 2.0,
        }
    }

    fn project(&self, p: [f64; 3]) -> [f64; 2] {
        [
            self.focal * p[0] / p[2] + self.cx,
            self.focal * p[1] / p[2] + self.cy,
        ]
    }
}

/// When a head counts as turned towards the screen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Attention {
    /// Half-angle of the cone around the direction of the screen, degrees, in (0, 90].
    pub cone: f32,
    /// The pitch, relative to the line to the camera, of a head turned to the middle of the
    /// screen, degrees in [-60, 60]: negative when the camera sits above the screen (people look
    /// below it), positive when below.
    pub pitch_offset: f32,
}

impl Default for Attention {
    /// A 20 degree cone around the camera itself.
    fn default() -> Self {
        Attention {
            cone: 20.0,
            pitch_offset: 0.0,
        }
    }
}

impl Attention {
    /// Checks the ranges; the message names the setting.
    ///
    /// # Errors
    /// A description of the value out of range.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.cone > 0.0 && self.cone <= 90.0) {
            return Err(format!(
                "attention cone {} degrees is out of range: give a half-angle in (0, 90]",
                self.cone
            ));
        }
        if !(-60.0..=60.0).contains(&self.pitch_offset) {
            return Err(format!(
                "attention pitch offset {} degrees is out of range: give [-60, 60]",
                self.pitch_offset
            ));
        }
        Ok(())
    }
}

/// A fitted head: orientation and position in the camera's frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HeadPose {
    /// The head's rotation (model axes: x right, y up, z towards the camera).
    rotation: [[f64; 3]; 3],
    /// The mean face's origin in camera coordinates (x right, y down, z forward), centimetres.
    translation: [f64; 3],
    /// Root-mean-square reprojection error of the fitted points, pixels.
    pub rms_error: f64,
}

impl HeadPose {
    /// The head's rotation relative to the line of sight: as if the camera were turned to look
    /// straight at the head, so that a face looking into the lens has yaw and pitch 0 wherever it
    /// is in the frame.
    fn relative_rotation(&self) -> [[f64; 3]; 3] {
        matmul(transpose(towards(self.translation)), self.rotation)
    }

    /// Yaw, pitch and roll in degrees, relative to the line of sight to the camera.
    pub fn angles(&self) -> Pose {
        let r = self.relative_rotation();
        Pose {
            yaw: r[0][2].atan2(r[2][2]).to_degrees() as f32,
            pitch: r[1][2].clamp(-1.0, 1.0).asin().to_degrees() as f32,
            roll: r[1][0].atan2(r[1][1]).to_degrees() as f32,
        }
    }

    /// The angle, degrees, between where the face points and the middle of the screen: the
    /// line to the camera turned up by `pitch_offset` degrees.
    pub fn off_screen_angle(&self, pitch_offset: f32) -> f32 {
        let r = self.relative_rotation();
        let nose = [r[0][2], r[1][2], r[2][2]];
        let (s, c) = f64::from(pitch_offset).to_radians().sin_cos();
        dot(nose, [0.0, s, c]).clamp(-1.0, 1.0).acos().to_degrees() as f32
    }

    /// Whether the head is turned towards the screen: within `attention`'s cone.
    pub fn looking(&self, attention: &Attention) -> bool {
        self.off_screen_angle(attention.pitch_offset) <= attention.cone
    }
}

/// The rotation (model axes) that turns the model's +z, its line of sight when frontal, to the
/// line from a head at `t` (camera coordinates) to the camera.
fn towards(t: [f64; 3]) -> [[f64; 3]; 3] {
    // The line to the camera in model axes: -t with y and z flipped.
    let u = normalise([-t[0], t[1], t[2]]);
    matmul(
        rot_y(u[0].atan2(u[2])),
        rot_x(-u[1].clamp(-1.0, 1.0).asin()),
    )
}

fn transpose(m: [[f64; 3]; 3]) -> [[f64; 3]; 3] {
    std::array::from_fn(|i| std::array::from_fn(|j| m[j][i]))
}

/// The ten model points and the dlib landmark each matches.
fn canonical() -> &'static [(usize, [f64; 3])] {
    #[derive(Deserialize)]
    struct File {
        points: Vec<Point>,
    }
    #[derive(Deserialize)]
    struct Point {
        dlib: usize,
        xyz_cm: [f64; 3],
    }
    static POINTS: OnceLock<Vec<(usize, [f64; 3])>> = OnceLock::new();
    POINTS.get_or_init(|| {
        let file: File = serde_json::from_str(CANONICAL_POINTS)
            .expect("the compiled-in canonical points are checked by the tests");
        file.points.iter().map(|p| (p.dlib, p.xyz_cm)).collect()
    })
}

/// Fits the mean face to `landmarks` seen by `camera`. `None` if the fit does not converge to a
/// head in front of the camera (degenerate landmarks).
pub fn estimate(landmarks: &Landmarks, camera: &Camera) -> Option<HeadPose> {
    let model = canonical();
    let observed: Vec<[f64; 2]> = model
        .iter()
        .map(|&(i, _)| {
            landmarks
                .0
                .get(i)
                .map(|p| [f64::from(p[0]), f64::from(p[1])])
        })
        .collect::<Option<_>>()?;
    let points: Vec<[f64; 3]> = model.iter().map(|&(_, p)| p).collect();
    fit(&points, &observed, camera)
}

/// The pose of `points` (model axes) that best projects them onto `observed`.
fn fit(points: &[[f64; 3]], observed: &[[f64; 2]], camera: &Camera) -> Option<HeadPose> {
    let start = initial_guess(points, observed, camera)?;
    // A turned face can fall into the mirror-image minimum from a frontal start; two more
    // starts turned either way cost microseconds.
    [0.0f64, -35.0, 35.0]
        .iter()
        .filter_map(|&yaw| {
            let rotation = matmul(rot_y(yaw.to_radians()), start.rotation);
            refine(points, observed, camera, HeadPose { rotation, ..start })
        })
        .min_by(|a, b| a.rms_error.total_cmp(&b.rms_error))
}

/// A frontal head at the distance its size in the image implies, rolled as its eye line is.
fn initial_guess(points: &[[f64; 3]], observed: &[[f64; 2]], camera: &Camera) -> Option<HeadPose> {
    let n = points.len() as f64;
    let mean2 = |i: usize| observed.iter().map(|p| p[i]).sum::<f64>() / n;
    let mean3 = |i: usize| points.iter().map(|p| p[i]).sum::<f64>() / n;
    let spread2: f64 = observed
        .iter()
        .map(|p| (p[0] - mean2(0)).hypot(p[1] - mean2(1)))
        .sum::<f64>();
    let spread3: f64 = points
        .iter()
        .map(|p| (p[0] - mean3(0)).hypot(p[1] - mean3(1)))
        .sum::<f64>();
    if spread2 < 1e-6 || spread3 < 1e-6 {
        return None;
    }
    let z = camera.focal * spread3 / spread2;
    // The model's centroid lies at the image centroid; the origin is then offset from it.
    let centre = [
        (mean2(0) - camera.cx) * z / camera.focal,
        (mean2(1) - camera.cy) * z / camera.focal,
        z,
    ];
    // Roll from the line through the two outer eye corners (the points with the extreme x).
    let (left, right) = extreme_x(points);
    let (dx, dy) = (
        observed[right][0] - observed[left][0],
        observed[right][1] - observed[left][1],
    );
    let roll = (-dy).atan2(dx);
    let rotation = rot_z(roll);
    let c = apply(rotation, [mean3(0), mean3(1), mean3(2)]);
    Some(HeadPose {
        rotation,
        translation: [centre[0] - c[0], centre[1] + c[1], centre[2] + c[2]],
        rms_error: f64::INFINITY,
    })
}

/// Indices of the model points with the smallest and the largest x.
fn extreme_x(points: &[[f64; 3]]) -> (usize, usize) {
    let by_x = |a: &(usize, &[f64; 3]), b: &(usize, &[f64; 3])| a.1[0].total_cmp(&b.1[0]);
    let min = points.iter().enumerate().min_by(by_x).map_or(0, |(i, _)| i);
    let max = points.iter().enumerate().max_by(by_x).map_or(0, |(i, _)| i);
    (min, max)
}

/// Levenberg-Marquardt from `start`: rotation updated multiplicatively (`exp(w) R`), translation
/// additively; Jacobian by central differences (six parameters, a few dozen residuals).
fn refine(
    points: &[[f64; 3]],
    observed: &[[f64; 2]],
    camera: &Camera,
    start: HeadPose,
) -> Option<HeadPose> {
    let residuals = |rotation: [[f64; 3]; 3], t: [f64; 3]| -> Option<Vec<f64>> {
        let mut r = Vec::with_capacity(2 * points.len());
        for (p, o) in points.iter().zip(observed) {
            let c = camera_point(rotation, t, *p);
            if c[2] <= 1e-6 {
                return None; // behind the camera
            }
            let [u, v] = camera.project(c);
            r.push(u - o[0]);
            r.push(v - o[1]);
        }
        Some(r)
    };
    let update = |rotation: [[f64; 3]; 3], t: [f64; 3], d: &[f64; 6]| {
        (
            matmul(exp_so3([d[0], d[1], d[2]]), rotation),
            [t[0] + d[3], t[1] + d[4], t[2] + d[5]],
        )
    };
    let cost = |r: &[f64]| r.iter().map(|x| x * x).sum::<f64>();

    let (mut rotation, mut t) = (start.rotation, start.translation);
    let mut r = residuals(rotation, t)?;
    let mut current = cost(&r);
    let mut lambda = 1e-3;
    for _ in 0..100 {
        let steps = [1e-5, 1e-5, 1e-5, 1e-5 * t[2], 1e-5 * t[2], 1e-5 * t[2]];
        let mut jacobian = vec![[0.0f64; 6]; r.len()];
        for (k, &h) in steps.iter().enumerate() {
            let mut d = [0.0; 6];
            d[k] = h;
            let (ra, ta) = update(rotation, t, &d);
            d[k] = -h;
            let (rb, tb) = update(rotation, t, &d);
            let (plus, minus) = (residuals(ra, ta)?, residuals(rb, tb)?);
            for (row, (p, m)) in jacobian.iter_mut().zip(plus.iter().zip(&minus)) {
                row[k] = (p - m) / (2.0 * h);
            }
        }
        let mut jtj = [[0.0f64; 6]; 6];
        let mut jtr = [0.0f64; 6];
        for (row, res) in jacobian.iter().zip(&r) {
            for a in 0..6 {
                jtr[a] += row[a] * res;
                for b in 0..6 {
                    jtj[a][b] += row[a] * row[b];
                }
            }
        }
        let mut accepted = false;
        while lambda < 1e10 {
            let mut a = jtj;
            for (k, row) in a.iter_mut().enumerate() {
                row[k] += lambda * jtj[k][k].max(1e-12);
            }
            let Some(step) = solve6(a, jtr.map(|g| -g)) else {
                lambda *= 10.0;
                continue;
            };
            let (rn, tn) = update(rotation, t, &step);
            if let Some(rr) = residuals(rn, tn) {
                let c = cost(&rr);
                if c < current {
                    let gain = current - c;
                    (rotation, t, r) = (rn, tn, rr);
                    current = c;
                    lambda = (lambda / 10.0).max(1e-9);
                    accepted = true;
                    if gain < 1e-10 * current.max(1e-12) {
                        return Some(pose(rotation, t, current, points.len()));
                    }
                    break;
                }
            }
            lambda *= 10.0;
        }
        if !accepted {
            break; // No step lowers the error: a minimum.
        }
    }
    Some(pose(rotation, t, current, points.len()))
}

fn pose(rotation: [[f64; 3]; 3], translation: [f64; 3], cost: f64, n: usize) -> HeadPose {
    HeadPose {
        rotation,
        translation,
        rms_error: (cost / n as f64).sqrt(),
    }
}

/// A model point in camera coordinates: rotated, y and z flipped (the camera looks along +z with
/// y down; the model faces it along its +z with y up), then moved.
fn camera_point(rotation: [[f64; 3]; 3], t: [f64; 3], p: [f64; 3]) -> [f64; 3] {
    let q = apply(rotation, p);
    [q[0] + t[0], -q[1] + t[1], -q[2] + t[2]]
}

/// Solves the 6x6 system `a x = b` by Gaussian elimination with partial pivoting; `None` if it is
/// singular. (Hand-written: a linear-algebra crate would be a dependency for one 6x6 solve.)
fn solve6(mut a: [[f64; 6]; 6], mut b: [f64; 6]) -> Option<[f64; 6]> {
    for col in 0..6 {
        let pivot = (col..6).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))?;
        if a[pivot][col].abs() < 1e-300 {
            return None;
        }
        a.swap(col, pivot);
        b.swap(col, pivot);
        let (upper, lower) = a.split_at_mut(col + 1);
        let pivot_row = &upper[col];
        for (row, rest) in lower.iter_mut().enumerate() {
            let f = rest[col] / pivot_row[col];
            for (v, p) in rest[col..].iter_mut().zip(&pivot_row[col..]) {
                *v -= f * p;
            }
            b[col + 1 + row] -= f * b[col];
        }
    }
    let mut x = [0.0; 6];
    for row in (0..6).rev() {
        let s: f64 = (row + 1..6).map(|k| a[row][k] * x[k]).sum();
        x[row] = (b[row] - s) / a[row][row];
    }
    x.iter().all(|v| v.is_finite()).then_some(x)
}

/// The rotation by the vector `w` (axis times angle in radians), by Rodrigues' formula.
fn exp_so3(w: [f64; 3]) -> [[f64; 3]; 3] {
    let theta = (w[0] * w[0] + w[1] * w[1] + w[2] * w[2]).sqrt();
    if theta < 1e-12 {
        return [[1.0, -w[2], w[1]], [w[2], 1.0, -w[0]], [-w[1], w[0], 1.0]];
    }
    let [x, y, z] = w.map(|v| v / theta);
    let (s, c) = theta.sin_cos();
    let v = 1.0 - c;
    [
        [c + x * x * v, x * y * v - z * s, x * z * v + y * s],
        [y * x * v + z * s, c + y * y * v, y * z * v - x * s],
        [z * x * v - y * s, z * y * v + x * s, c + z * z * v],
    ]
}

fn rot_x(a: f64) -> [[f64; 3]; 3] {
    let (s, c) = a.sin_cos();
    [[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]]
}

fn rot_y(a: f64) -> [[f64; 3]; 3] {
    let (s, c) = a.sin_cos();
    [[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]]
}

fn rot_z(a: f64) -> [[f64; 3]; 3] {
    let (s, c) = a.sin_cos();
    [[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]
}

/// The rotation with these angles (degrees), in the module's convention.
pub fn rotation_from(pose: Pose) -> [[f64; 3]; 3] {
    let r = |d: f32| f64::from(d).to_radians();
    matmul(
        matmul(rot_y(r(pose.yaw)), rot_x(-r(pose.pitch))),
        rot_z(r(pose.roll)),
    )
}

fn matmul(a: [[f64; 3]; 3], b: [[f64; 3]; 3]) -> [[f64; 3]; 3] {
    let mut m = [[0.0; 3]; 3];
    for (i, row) in m.iter_mut().enumerate() {
        for (j, v) in row.iter_mut().enumerate() {
            *v = (0..3).map(|k| a[i][k] * b[k][j]).sum();
        }
    }
    m
}

fn apply(m: [[f64; 3]; 3], p: [f64; 3]) -> [f64; 3] {
    [0, 1, 2].map(|i| m[i][0] * p[0] + m[i][1] * p[1] + m[i][2] * p[2])
}

fn dot(a: [f64; 3], b: [f64; 3]) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

fn normalise(v: [f64; 3]) -> [f64; 3] {
    let n = dot(v, v).sqrt().max(1e-12);
    v.map(|x| x / n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn angles(yaw: f32, pitch: f32, roll: f32) -> Pose {
        Pose { yaw, pitch, roll }
    }

    /// The ten model points posed by `angles` at `t`, projected through `camera`.
    fn project_model(angles: Pose, t: [f64; 3], camera: &Camera) -> (Vec<[f64; 3]>, Vec<[f64; 2]>) {
        let points: Vec<[f64; 3]> = canonical().iter().map(|&(_, p)| p).collect();
        let rotation = matmul(towards(t), rotation_from(angles));
        let observed = points
            .iter()
            .map(|&p| camera.project(camera_point(rotation, t, p)))
            .collect();
        (points, observed)
    }

    #[test]
    fn canonical_points_are_the_extracted_file() {
        assert_eq!(
            crate::checksum::sha256_hex(CANONICAL_POINTS.as_bytes()),
            "0d75ff6d6b5139d4631741c8e81994ecec5f3f337e1dc7bb49159827e6dcd6a6",
            "models/mediapipe-canonical-face/points.json is not the file its README describes"
        );
    }

    #[test]
    fn canonical_points_are_the_ten_documented_ones() {
        let model = canonical();
        let dlib: Vec<usize> = model.iter().map(|&(i, _)| i).collect();
        assert_eq!(dlib, [27, 30, 33, 36, 39, 42, 45, 48, 54, 8]);
        // Symmetric about x = 0: the right eye's outer corner mirrors the left's.
        let (r, l) = (model[3].1, model[6].1);
        assert!(
            (r[0] + l[0]).abs() < 1e-9 && (r[1] - l[1]).abs() < 1e-9,
            "{r:?} {l:?}"
        );
        assert!(r[0] < 0.0, "the subject's right eye is on the image's left");
        // Nose tip nearest the camera, chin lowest.
        assert!(model.iter().all(|&(_, p)| p[2] <= model[1].1[2]));
        assert!(model.iter().all(|&(_, p)| p[1] >= model[9].1[1]));
    }

    #[test]
    fn known_rotations_come_back_within_a_degree() {
        let camera = Camera::for_frame(640, 480, None);
        for (yaw, pitch, roll) in [
            (0.0, 0.0, 0.0),
            (30.0, 0.0, 0.0),
            (-40.0, 10.0, 0.0),
            (0.0, -25.0, 0.0),
            (15.0, 20.0, -12.0),
            (-20.0, -15.0, 25.0),
            (45.0, -10.0, 8.0),
        ] {
            let truth = Pose { yaw, pitch, roll };
            for t in [[0.0, 0.0, 60.0], [-15.0, 8.0, 90.0], [20.0, -10.0, 120.0]] {
                let (points, observed) = project_model(truth, t, &camera);
                let got = fit(&points, &observed, &camera).expect("a fit").angles();
                for (g, e, what) in [
                    (got.yaw, yaw, "yaw"),
                    (got.pitch, pitch, "pitch"),
                    (got.roll, roll, "roll"),
                ] {
                    assert!(
                        (g - e).abs() < 1.0,
                        "{what}: {got:?} for {truth:?} at {t:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn signs_are_as_documented() {
        let camera = Camera::for_frame(640, 480, None);
        // Turned towards the image's right: the nose tip moves right of the eyes' midpoint.
        let (_, turned) = project_model(angles(30.0, 0.0, 0.0), [0.0, 0.0, 60.0], &camera);
        let mid = (turned[3][0] + turned[6][0]) / 2.0;
        assert!(turned[1][0] > mid, "{turned:?}");
        // Tilted up: the nose tip rises (smaller y) relative to the frontal projection.
        let (_, frontal) = project_model(angles(0.0, 0.0, 0.0), [0.0, 0.0, 60.0], &camera);
        let (_, up) = project_model(angles(0.0, 20.0, 0.0), [0.0, 0.0, 60.0], &camera);
        assert!(up[1][1] < frontal[1][1]);
        // Rolled counter-clockwise: the person's left eye (image right) rises above the right.
        let (_, rolled) = project_model(angles(0.0, 0.0, 15.0), [0.0, 0.0, 60.0], &camera);
        assert!(rolled[6][1] < rolled[3][1], "{rolled:?}");
    }

    #[test]
    fn looking_is_a_cone_around_the_screen() {
        let camera = Camera::for_frame(640, 480, None);
        let posed = |yaw: f32, pitch: f32| {
            let (points, observed) =
                project_model(angles(yaw, pitch, 0.0), [0.0, 0.0, 70.0], &camera);
            fit(&points, &observed, &camera).expect("a fit")
        };
        let cone = Attention::default();
        assert!(posed(0.0, 0.0).looking(&cone));
        assert!(posed(15.0, 0.0).looking(&cone));
        assert!(!posed(30.0, 0.0).looking(&cone));
        assert!(!posed(0.0, -30.0).looking(&cone));
        // A camera above the screen: heads 25 degrees down look at it, heads at the camera do not.
        let above = Attention {
            cone: 20.0,
            pitch_offset: -25.0,
        };
        assert!(posed(0.0, -25.0).looking(&above));
        assert!(!posed(0.0, 0.0).looking(&above));
        let angle = posed(0.0, -25.0).off_screen_angle(-25.0);
        assert!(angle < 1.0, "{angle}");
    }

    #[test]
    fn out_of_range_attention_is_refused_naming_the_setting() {
        for bad in [
            Attention {
                cone: 0.0,
                pitch_offset: 0.0,
            },
            Attention {
                cone: 95.0,
                pitch_offset: 0.0,
            },
            Attention {
                cone: f32::NAN,
                pitch_offset: 0.0,
            },
            Attention {
                cone: 20.0,
                pitch_offset: -61.0,
            },
        ] {
            let message = bad.validate().unwrap_err();
            assert!(message.contains("out of range"), "{message}");
        }
        assert!(Attention::default().validate().is_ok());
    }

    #[test]
    fn degenerate_landmarks_give_no_pose() {
        let camera = Camera::for_frame(640, 480, None);
        assert!(estimate(&Landmarks([[100.0, 100.0]; 68]), &camera).is_none());
    }

    #[test]
    fn the_6x6_solver_solves() {
        let mut a = [[0.0; 6]; 6];
        for (i, row) in a.iter_mut().enumerate() {
            for (j, v) in row.iter_mut().enumerate() {
                *v = if i == j {
                    4.0
                } else {
                    1.0 / (1.0 + (i + j) as f64)
                };
            }
        }
        let x = [1.0, -2.0, 0.5, 3.0, 0.0, -1.0];
        let b: [f64; 6] = std::array::from_fn(|i| (0..6).map(|k| a[i][k] * x[k]).sum());
        let got = solve6(a, b).unwrap();
        for (g, e) in got.iter().zip(x) {
            assert!((g - e).abs() < 1e-12);
        }
        assert!(solve6([[0.0; 6]; 6], b).is_none());
    }
}
