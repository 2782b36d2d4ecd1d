//! What a followed face looks like, to tell it from the background its landmarks were left on.
//!
//! The shape predictor always returns a shape, face or not, so a face that walks away leaves its
//! track re-fitting plausible landmarks on the wall behind until the next detection (a "ghost").
//! A face's look is a small grey patch sampled in the face's own frame (origin between the eye
//! centres, one unit the distance between them), so it does not change as the face moves, turns a
//! little or changes scale; it is taken at each detection and compared with each followed frame's
//! by normalised cross-correlation. 256 samples: microseconds.

use image::RgbImage;

use crate::detect::Landmarks;

/// Samples across and down.
const SIDE: usize = 16;

/// The patch's extent in the face's frame: from one eye-distance left of the eyes' midpoint to
/// one right, and from half an eye-distance above the eyes to 1.6 below (under the mouth).
const ACROSS: (f32, f32) = (-1.0, 1.0);
const DOWN: (f32, f32) = (-0.5, 1.6);

/// A face's grey patch, zero mean and unit norm; `None` for a flat patch (nothing to compare).
#[derive(Debug, Clone, PartialEq)]
pub struct Look(Box<[f32; SIDE * SIDE]>);

impl Look {
    /// The patch under `landmarks` in `frame`; `None` if it is flat or the eyes coincide.
    pub fn of(frame: &RgbImage, landmarks: &Landmarks) -> Option<Look> {
        let centre = |r: std::ops::Range<usize>| {
            let n = r.len() as f32;
            let (x, y) = landmarks.0[r]
                .iter()
                .fold((0.0, 0.0), |(x, y), p| (x + p[0], y + p[1]));
            [x / n, y / n]
        };
        // The person's right eye is on the image's left.
        let (left, right) = (centre(36..42), centre(42..48));
        let across = [right[0] - left[0], right[1] - left[1]];
        if across[0].hypot(across[1]) < 2.0 {
            return None;
        }
        let down = [-across[1], across[0]];
        let origin = [(left[0] + right[0]) / 2.0, (left[1] + right[1]) / 2.0];
        let mut patch = Box::new([0.0f32; SIDE * SIDE]);
        for (i, v) in patch.iter_mut().enumerate() {
            let (col, row) = ((i % SIDE) as f32, (i / SIDE) as f32);
            let u = ACROSS.0 + (ACROSS.1 - ACROSS.0) * (col + 0.5) / SIDE as f32;
            let w = DOWN.0 + (DOWN.1 - DOWN.0) * (row + 0.5) / SIDE as f32;
            *v = grey_at(
                frame,
                origin[0] + u * across[0] + w * down[0],
                origin[1] + u * across[1] + w * down[1],
            );
        }
        let mean = patch.iter().sum::<f32>() / patch.len() as f32;
        patch.iter_mut().for_each(|v| *v -= mean);
        let norm = patch.iter().map(|v| v * v).sum::<f32>().sqrt();
        // Under one grey level of spread per sample: a flat wall, not a face.
        if norm < (patch.len() as f32).sqrt() {
            return None;
        }
        patch.iter_mut().for_each(|v| *v /= norm);
        Some(Look(patch))
    }

    /// Normalised cross-correlation with `other`: 1 for the same patch, about 0 for unrelated ones.
    pub fn similarity(&self, other: &Look) -> f32 {
        self.0.iter().zip(other.0.iter()).map(|(a, b)| a * b).sum()
    }
}

/// Bilinear BT.601 grey at (x, y); outside the frame the nearest edge pixel.
fn grey_at(frame: &RgbImage, x: f32, y: f32) -> f32 {
    let (w, h) = frame.dimensions();
    let (mx, my) = ((w - 1) as f32, (h - 1) as f32);
    let (x, y) = (x.clamp(0.0, mx), y.clamp(0.0, my));
    let (x0, y0) = (x.floor(), y.floor());
    let (fx, fy) = (x - x0, y - y0);
    let (x0, y0) = (x0 as u32, y0 as u32);
    let (x1, y1) = ((x0 + 1).min(w - 1), (y0 + 1).min(h - 1));
    let g = |x: u32, y: u32| {
        let p = frame.get_pixel(x, y).0;
        0.299 * f32::from(p[0]) + 0.587 * f32::from(p[1]) + 0.114 * f32::from(p[2])
    };
    let top = g(x0, y0) * (1.0 - fx) + g(x1, y0) * fx;
    let bottom = g(x0, y1) * (1.0 - fx) + g(x1, y1) * fx;
    top * (1.0 - fy) + bottom * fy
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bilinear_grey_of_a_two_by_two_image() {
        // Grey 0 | 100 over 200 | 40: the centre is their mean; edges clamp.
        let img = RgbImage::from_fn(2, 2, |x, y| {
            let v = [[0u8, 100], [200, 40]][y as usize][x as usize];
            image::Rgb([v, v, v])
        });
        assert!((grey_at(&img, 0.5, 0.5) - 85.0).abs() < 1e-3);
        assert!((grey_at(&img, 0.5, 0.0) - 50.0).abs() < 1e-3);
        assert!((grey_at(&img, -3.0, 9.0) - 200.0).abs() < 1e-3);
        // BT.601 weights.
        let red = RgbImage::from_pixel(1, 1, image::Rgb([255, 0, 0]));
        assert!((grey_at(&red, 0.0, 0.0) - 76.245).abs() < 1e-3);
    }

    /// Eyes at (100, 100) and (140, 100) (six points each), the rest between them.
    fn eyes_at(dx: f32, dy: f32, scale: f32) -> Landmarks {
        let mut l = [[120.0 * scale + dx, 130.0 * scale + dy]; 68];
        for p in &mut l[36..42] {
            *p = [100.0 * scale + dx, 100.0 * scale + dy];
        }
        for p in &mut l[42..48] {
            *p = [140.0 * scale + dx, 100.0 * scale + dy];
        }
        Landmarks(l)
    }

    /// A smooth pattern with some structure, drawn in scene coordinates.
    fn scene(dx: f32, dy: f32, scale: f32) -> RgbImage {
        RgbImage::from_fn(400, 400, |x, y| {
            let (u, v) = ((x as f32 - dx) / scale, (y as f32 - dy) / scale);
            let g = 128.0 + 60.0 * (u / 9.0).sin() * (v / 13.0).cos() + 0.2 * (u - 120.0);
            let g = g.clamp(0.0, 255.0) as u8;
            image::Rgb([g, g, g])
        })
    }

    #[test]
    fn the_same_face_moved_and_scaled_looks_the_same_and_a_wall_does_not() {
        let a = Look::of(&scene(0.0, 0.0, 1.0), &eyes_at(0.0, 0.0, 1.0)).unwrap();
        let moved = Look::of(&scene(37.0, 21.0, 1.3), &eyes_at(37.0, 21.0, 1.3)).unwrap();
        assert!(a.similarity(&moved) > 0.95, "{}", a.similarity(&moved));
        assert!((a.similarity(&a) - 1.0).abs() < 1e-5);
        // The same landmarks on another part of the pattern: unrelated.
        let elsewhere = Look::of(&scene(-150.0, 80.0, 1.0), &eyes_at(0.0, 0.0, 1.0)).unwrap();
        assert!(
            a.similarity(&elsewhere) < 0.5,
            "{}",
            a.similarity(&elsewhere)
        );
        // A flat wall has no look; nor do eyes on one point.
        let wall = RgbImage::from_pixel(400, 400, image::Rgb([90, 90, 90]));
        assert!(Look::of(&wall, &eyes_at(0.0, 0.0, 1.0)).is_none());
        assert!(Look::of(&scene(0.0, 0.0, 1.0), &Landmarks([[50.0, 50.0]; 68])).is_none());
    }
}
