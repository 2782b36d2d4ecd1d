//! Face alignment: warp a face so its eyes, nose and mouth land on the model's template.
//!
//! Five points are derived from dlib's 68 landmarks (two eye centres, the nose tip, two mouth
//! corners), a similarity transform (rotation, uniform scale, translation) is fitted to the card's
//! template by least squares (Umeyama 1991, without reflection), and the crop is filled by
//! inverse-mapping every output pixel into the frame with bilinear sampling. This is the one
//! preprocessing that training (`train prepare`) and inference both call, so a model sees the same
//! kind of crop in both.
//!
//! Coordinates are pixel-index coordinates: pixel `(i, j)` is at `x = i, y = j`, as dlib reports
//! landmarks.

use image::RgbImage;
use serde::{Deserialize, Serialize};

use crate::detect::Landmarks;
use crate::error::{Error, Result};

/// Where the five alignment points go in the model's input crop.
///
/// The points are, in order: the centre of the eye on the image's left (dlib points 36-41), the
/// centre of the eye on the image's right (42-47), the nose tip (30), the mouth corner on the
/// image's left (48) and on its right (54). Template coordinates are fractions of the crop's width
/// and height (0 = left/top edge, 1 = right/bottom edge). `margin` widens the view: the template is
/// shrunk about the centre so a fraction `margin` of the crop is added on each side.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Alignment {
    /// The five template points, `[x, y]` in crop fractions.
    pub template: [[f32; 2]; 5],
    /// Extra context on each side, as a fraction of the crop (0 = none).
    #[serde(default)]
    pub margin: f32,
}

impl Alignment {
    /// The template in output pixel coordinates for a `width` x `height` crop, margin applied.
    pub fn template_px(&self, width: u32, height: u32) -> [[f32; 2]; 5] {
        let shrink = 1.0 / (1.0 + 2.0 * self.margin);
        self.template.map(|[x, y]| {
            [
                (x + self.margin) * shrink * width as f32,
                (y + self.margin) * shrink * height as f32,
            ]
        })
    }
}

/// A 2-D similarity transform `p' = [[a, -b], [b, a]] p + [tx, ty]`.
///
/// `a = s cos(theta)`, `b = s sin(theta)` for scale `s` and rotation `theta`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Similarity {
    /// `s cos(theta)`.
    pub a: f32,
    /// `s sin(theta)`.
    pub b: f32,
    /// Translation in x.
    pub tx: f32,
    /// Translation in y.
    pub ty: f32,
}

impl Similarity {
    /// Maps a point.
    pub fn apply(&self, [x, y]: [f32; 2]) -> [f32; 2] {
        [
            self.a * x - self.b * y + self.tx,
            self.b * x + self.a * y + self.ty,
        ]
    }

    /// The uniform scale factor `s`.
    pub fn scale(&self) -> f32 {
        self.a.hypot(self.b)
    }

    /// The inverse transform.
    ///
    /// # Errors
    /// [`Error::Invalid`] if the scale is zero (not invertible).
    pub fn inverse(&self) -> Result<Similarity> {
        let det = self.a * self.a + self.b * self.b;
        if det <= f32::EPSILON {
            return Err(Error::Invalid(
                "alignment transform has zero scale".to_string(),
            ));
        }
        let (a, b) = (self.a / det, -self.b / det);
        Ok(Similarity {
            a,
            b,
            tx: -(a * self.tx - b * self.ty),
            ty: -(b * self.tx + a * self.ty),
        })
    }
}

/// Least-squares similarity transform taking `src` points onto `dst` points.
///
/// With centred points `u = src - mean(src)` and `v = dst - mean(dst)`, the minimiser of
/// `sum |T(src_i) - dst_i|^2` is `a = sum(u.v) / sum|u|^2`, `b = sum(u x v) / sum|u|^2`, and the
/// translation maps `mean(src)` onto `mean(dst)`.
///
/// # Errors
/// [`Error::Invalid`] if the slices differ in length, have fewer than two points, or all `src`
/// points coincide.
///
/// # Example
/// ```
/// use edge_fer::align::fit_similarity;
/// // A square scaled by 2 and shifted by (1, 1).
/// let src = [[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]];
/// let dst = [[1.0, 1.0], [3.0, 1.0], [1.0, 3.0]];
/// let t = fit_similarity(&src, &dst).unwrap();
/// assert!((t.a - 2.0).abs() < 1e-6 && t.b.abs() < 1e-6);
/// assert!((t.tx - 1.0).abs() < 1e-6 && (t.ty - 1.0).abs() < 1e-6);
/// ```
pub fn fit_similarity(src: &[[f32; 2]], dst: &[[f32; 2]]) -> Result<Similarity> {
    if src.len() != dst.len() || src.len() < 2 {
        return Err(Error::Invalid(format!(
            "alignment needs two equal sets of at least 2 points, got {} and {}",
            src.len(),
            dst.len()
        )));
    }
    let n = src.len() as f64;
    let mean = |pts: &[[f32; 2]]| {
        let (sx, sy) = pts.iter().fold((0.0f64, 0.0f64), |(sx, sy), p| {
            (sx + p[0] as f64, sy + p[1] as f64)
        });
        [sx / n, sy / n]
    };
    let (ms, md) = (mean(src), mean(dst));
    let (mut dot, mut cross, mut norm) = (0.0f64, 0.0f64, 0.0f64);
    for (s, d) in src.iter().zip(dst) {
        let (ux, uy) = (s[0] as f64 - ms[0], s[1] as f64 - ms[1]);
        let (vx, vy) = (d[0] as f64 - md[0], d[1] as f64 - md[1]);
        dot += ux * vx + uy * vy;
        cross += ux * vy - uy * vx;
        norm += ux * ux + uy * uy;
    }
    if norm <= 1e-12 {
        return Err(Error::Invalid(
            "alignment source points all coincide".to_string(),
        ));
    }
    let (a, b) = (dot / norm, cross / norm);
    Ok(Similarity {
        a: a as f32,
        b: b as f32,
        tx: (md[0] - (a * ms[0] - b * ms[1])) as f32,
        ty: (md[1] - (b * ms[0] + a * ms[1])) as f32,
    })
}

/// The five alignment points of a face, in the order [`Alignment`] documents.
pub fn five_points(landmarks: &Landmarks) -> [[f32; 2]; 5] {
    let p = &landmarks.0;
    let centre = |range: std::ops::Range<usize>| {
        let n = range.len() as f32;
        let (sx, sy) = p[range]
            .iter()
            .fold((0.0, 0.0), |(sx, sy), q| (sx + q[0], sy + q[1]));
        [sx / n, sy / n]
    };
    [centre(36..42), centre(42..48), p[30], p[48], p[54]]
}

/// Warps `frame` with the inverse of `to_crop` into `dst` (whose size is the crop size).
///
/// Each output pixel takes the bilinear interpolation of the frame at its inverse-mapped position;
/// positions outside the frame take the nearest edge pixel, so a face near the border gets
/// stretched edges rather than black bars the model never saw in training.
///
/// # Errors
/// [`Error::Invalid`] if `to_crop` is not invertible or the frame is empty.
pub fn warp_into(frame: &RgbImage, to_crop: &Similarity, dst: &mut RgbImage) -> Result<()> {
    let (fw, fh) = frame.dimensions();
    if fw == 0 || fh == 0 {
        return Err(Error::Invalid(
            "cannot align a face in an empty frame".into(),
        ));
    }
    let inv = to_crop.inverse()?;
    let (maxx, maxy) = ((fw - 1) as f32, (fh - 1) as f32);
    let src = frame.as_raw();
    let stride = fw as usize * 3;
    for (u, v, out) in dst.enumerate_pixels_mut() {
        let [x, y] = inv.apply([u as f32, v as f32]);
        let (x, y) = (x.clamp(0.0, maxx), y.clamp(0.0, maxy));
        let (x0, y0) = (x.floor() as usize, y.floor() as usize);
        let (x1, y1) = ((x0 + 1).min(fw as usize - 1), (y0 + 1).min(fh as usize - 1));
        let (fx, fy) = (x - x0 as f32, y - y0 as f32);
        for c in 0..3 {
            let at = |xx: usize, yy: usize| src[yy * stride + xx * 3 + c] as f32;
            let top = at(x0, y0) * (1.0 - fx) + at(x1, y0) * fx;
            let bottom = at(x0, y1) * (1.0 - fx) + at(x1, y1) * fx;
            out.0[c] = (top * (1.0 - fy) + bottom * fy).round().clamp(0.0, 255.0) as u8;
        }
    }
    Ok(())
}

/// Aligns one face: fits the frame's five points to the card's template and warps the crop.
///
/// `dst` must already have the model's input size; it is overwritten. Returns the transform from
/// frame to crop coordinates.
///
/// # Errors
/// [`Error::Invalid`] for degenerate landmarks (all five points coincide) or an empty frame.
pub fn align(
    frame: &RgbImage,
    landmarks: &Landmarks,
    alignment: &Alignment,
    dst: &mut RgbImage,
) -> Result<Similarity> {
    let (w, h) = dst.dimensions();
    let to_crop = fit_similarity(&five_points(landmarks), &alignment.template_px(w, h))?;
    warp_into(frame, &to_crop, dst)?;
    Ok(to_crop)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: [f32; 2], b: [f32; 2]) -> bool {
        (a[0] - b[0]).abs() < 1e-4 && (a[1] - b[1]).abs() < 1e-4
    }

    #[test]
    fn recovers_a_known_rotation_scale_and_shift() -> Result<()> {
        // 90 degrees anticlockwise, scale 3, shift (10, -5): (x, y) -> (-3y + 10, 3x - 5).
        let src = [[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [2.0, 3.0], [-1.0, 4.0]];
        let dst = src.map(|[x, y]| [-3.0 * y + 10.0, 3.0 * x - 5.0]);
        let t = fit_similarity(&src, &dst)?;
        assert!((t.a - 0.0).abs() < 1e-5, "{t:?}");
        assert!((t.b - 3.0).abs() < 1e-5, "{t:?}");
        assert!((t.scale() - 3.0).abs() < 1e-5);
        for (s, d) in src.iter().zip(&dst) {
            assert!(close(t.apply(*s), *d));
        }
        Ok(())
    }

    #[test]
    fn least_squares_splits_the_error_of_an_inconsistent_point() -> Result<()> {
        // Two points mapped exactly and a third pulled 1 px off: identity is no longer exact but
        // the fitted translation moves by a third of the pull (the centroid's shift).
        let src = [[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]];
        let dst = [[0.0, 0.0], [10.0, 0.0], [0.0, 11.0]];
        let t = fit_similarity(&src, &dst)?;
        let c = t.apply([10.0 / 3.0, 10.0 / 3.0]);
        assert!(close(c, [10.0 / 3.0, 11.0 / 3.0]), "{c:?}");
        Ok(())
    }

    #[test]
    fn inverse_undoes_the_transform() -> Result<()> {
        let t = Similarity {
            a: 0.8,
            b: -0.6,
            tx: 4.0,
            ty: 7.0,
        };
        let inv = t.inverse()?;
        for p in [[0.0, 0.0], [3.0, -2.0], [100.0, 50.0]] {
            assert!(close(inv.apply(t.apply(p)), p));
        }
        Ok(())
    }

    #[test]
    fn coincident_points_are_an_error() {
        let p = [[1.0, 1.0]; 3];
        assert!(fit_similarity(&p, &p).is_err());
    }

    #[test]
    fn warp_by_a_shift_moves_pixels_and_interpolates_halfway() -> Result<()> {
        // A 3x1 frame [0, 100, 200] (grey); the crop samples at x + 0.5.
        let mut frame = RgbImage::new(3, 1);
        for (i, v) in [0u8, 100, 200].into_iter().enumerate() {
            frame.put_pixel(i as u32, 0, image::Rgb([v, v, v]));
        }
        let to_crop = Similarity {
            a: 1.0,
            b: 0.0,
            tx: -0.5,
            ty: 0.0,
        };
        let mut dst = RgbImage::new(3, 1);
        warp_into(&frame, &to_crop, &mut dst)?;
        // crop x=0 <- frame 0.5 = 50; x=1 <- 1.5 = 150; x=2 <- 2.5, clamped to the edge = 200.
        let got: Vec<u8> = dst.pixels().map(|p| p.0[0]).collect();
        assert_eq!(got, vec![50, 150, 200]);
        Ok(())
    }

    #[test]
    fn five_points_averages_the_eyes() {
        let mut l = Landmarks([[0.0; 2]; 68]);
        for i in 36..42 {
            l.0[i] = [i as f32, 10.0];
        }
        l.0[30] = [5.0, 6.0];
        let p = five_points(&l);
        assert_eq!(p[0], [38.5, 10.0]);
        assert_eq!(p[2], [5.0, 6.0]);
    }

    #[test]
    fn template_margin_shrinks_about_the_centre() {
        let a = Alignment {
            template: [[0.0, 0.0], [1.0, 0.0], [0.5, 0.5], [0.0, 1.0], [1.0, 1.0]],
            margin: 0.25,
        };
        let px = a.template_px(60, 60);
        // (0 + 0.25) / 1.5 * 60 = 10; (1 + 0.25) / 1.5 * 60 = 50; the centre stays at 30.
        let expected = [
            [10.0, 10.0],
            [50.0, 10.0],
            [30.0, 30.0],
            [10.0, 50.0],
            [50.0, 50.0],
        ];
        for (got, want) in px.iter().zip(expected) {
            assert!(
                (got[0] - want[0]).abs() < 1e-4 && (got[1] - want[1]).abs() < 1e-4,
                "{px:?}"
            );
        }
    }
}
