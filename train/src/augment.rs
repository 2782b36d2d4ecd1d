//! Training-time augmentation of aligned face crops, with their landmarks kept in step:
//! horizontal flip, random resized crop, colour jitter, and random erasing.
//!
//! Coordinates follow the runtime's convention: pixel `i` is centred at `i`, so a crop of side
//! `S` spans `[-0.5, S - 0.5]`. A flip maps `x` to `S - 1 - x` and renumbers the 68 landmarks
//! with [`MIRROR_68`] so that heatmap channel `k` still means the same facial point.

use image::{Rgb, RgbImage};

use crate::rng::SplitMix64;

/// The dlib 68-point index of each point's mirror image (jaw, brows, nose, eyes, mouth).
pub const MIRROR_68: [usize; 68] = {
    let mut m = [0usize; 68];
    let mut i = 0;
    while i < 68 {
        m[i] = i;
        i += 1;
    }
    // Pairs (a, b): a is b seen in a mirror.
    let pairs: [(usize, usize); 29] = [
        (0, 16),
        (1, 15),
        (2, 14),
        (3, 13),
        (4, 12),
        (5, 11),
        (6, 10),
        (7, 9),
        (17, 26),
        (18, 25),
        (19, 24),
        (20, 23),
        (21, 22),
        (31, 35),
        (32, 34),
        (36, 45),
        (37, 44),
        (38, 43),
        (39, 42),
        (40, 47),
        (41, 46),
        (48, 54),
        (49, 53),
        (50, 52),
        (55, 59),
        (56, 58),
        (60, 64),
        (61, 63),
        (65, 67),
    ];
    let mut p = 0;
    while p < pairs.len() {
        m[pairs[p].0] = pairs[p].1;
        m[pairs[p].1] = pairs[p].0;
        p += 1;
    }
    m
};

/// What augmentation does (LA-Net's training augmentation by default); [`Augment::none`] leaves
/// crops untouched.
#[derive(burn::config::Config, Debug, Copy, PartialEq)]
pub struct Augment {
    /// Probability of a horizontal flip.
    #[config(default = 0.5)]
    pub flip: f64,
    /// Area fraction range of the random resized crop (1, 1 turns it off).
    #[config(default = "(0.75, 1.0)")]
    pub scale: (f64, f64),
    /// Aspect ratio range of the crop (width / height), sampled log-uniformly.
    #[config(default = "(3.0 / 4.0, 4.0 / 3.0)")]
    pub ratio: (f64, f64),
    /// Brightness, contrast and saturation factors are drawn from `[1 - j, 1 + j]`.
    #[config(default = 0.4)]
    pub jitter: f64,
    /// Probability of erasing one random rectangle (after normalisation, to 0).
    #[config(default = 0.2)]
    pub erase: f64,
    /// Area fraction range of the erased rectangle (LA-Net's reference: 0.02-0.20; torchvision's
    /// default is 0.02-0.33).
    #[config(default = "(0.02, 0.2)")]
    pub erase_area: (f64, f64),
}

impl Augment {
    /// No augmentation (evaluation).
    pub fn none() -> Self {
        Augment {
            flip: 0.0,
            scale: (1.0, 1.0),
            ratio: (1.0, 1.0),
            jitter: 0.0,
            erase: 0.0,
            erase_area: (0.02, 0.2),
        }
    }
}

/// A rectangle of a crop, in whole pixels: columns `x..x + w`, rows `y..y + h`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rect {
    /// Left column.
    pub x: u32,
    /// Top row.
    pub y: u32,
    /// Width.
    pub w: u32,
    /// Height.
    pub h: u32,
}

/// The random choices for one crop, drawn by [`Plan::draw`] and applied by [`Plan::apply`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Plan {
    /// Mirror the crop.
    pub flip: bool,
    /// The source window `(x0, y0, w, h)` in continuous coordinates (edges, not centres),
    /// resized to the full crop.
    pub window: (f64, f64, f64, f64),
    /// Brightness factor.
    pub brightness: f64,
    /// Contrast factor.
    pub contrast: f64,
    /// Saturation factor.
    pub saturation: f64,
    /// The rectangle to erase after normalisation.
    pub erase: Option<Rect>,
}

impl Plan {
    /// The plan that changes nothing for a crop of side `size`.
    pub fn identity(size: u32) -> Self {
        Plan {
            flip: false,
            window: (0.0, 0.0, f64::from(size), f64::from(size)),
            brightness: 1.0,
            contrast: 1.0,
            saturation: 1.0,
            erase: None,
        }
    }

    /// Draws a plan for a crop of side `size`.
    pub fn draw(config: &Augment, size: u32, rng: &mut SplitMix64) -> Self {
        let s = f64::from(size);
        let flip = rng.next_f64() < config.flip;
        // torchvision's RandomResizedCrop: area and log-uniform aspect ratio; a window that does
        // not fit is retried, then falls back to the whole crop.
        let mut window = (0.0, 0.0, s, s);
        for _ in 0..10 {
            let area = s * s * rng.uniform(config.scale.0, config.scale.1);
            let ratio = rng.uniform(config.ratio.0.ln(), config.ratio.1.ln()).exp();
            let (w, h) = ((area * ratio).sqrt(), (area / ratio).sqrt());
            if w <= s && h <= s {
                window = (rng.uniform(0.0, s - w), rng.uniform(0.0, s - h), w, h);
                break;
            }
        }
        let j = config.jitter;
        let brightness = rng.uniform(1.0 - j, 1.0 + j);
        let contrast = rng.uniform(1.0 - j, 1.0 + j);
        let saturation = rng.uniform(1.0 - j, 1.0 + j);
        let erase = (rng.next_f64() < config.erase)
            .then(|| erase_rect(size, config.erase_area, rng))
            .flatten();
        Plan {
            flip,
            window,
            brightness,
            contrast,
            saturation,
            erase,
        }
    }

    /// Where a point of the source crop lands in the augmented crop.
    pub fn map_point(&self, [x, y]: [f32; 2], size: u32) -> [f32; 2] {
        let s = f64::from(size);
        let (x0, y0, w, h) = self.window;
        let u = (f64::from(x) + 0.5 - x0) * s / w - 0.5;
        let v = (f64::from(y) + 0.5 - y0) * s / h - 0.5;
        let u = if self.flip { s - 1.0 - u } else { u };
        [u as f32, v as f32]
    }

    /// The augmented crop and its landmarks (renumbered when flipped).
    pub fn apply(&self, crop: &RgbImage, landmarks: &[[f32; 2]; 68]) -> (RgbImage, [[f32; 2]; 68]) {
        let size = crop.width();
        let s = f64::from(size);
        let (x0, y0, w, h) = self.window;
        let mut out = RgbImage::new(size, crop.height());
        for v in 0..crop.height() {
            for u in 0..size {
                let su = if self.flip { size - 1 - u } else { u };
                let x = x0 + (f64::from(su) + 0.5) * w / s - 0.5;
                let y = y0 + (f64::from(v) + 0.5) * h / s - 0.5;
                out.put_pixel(u, v, bilinear(crop, x, y));
            }
        }
        jitter(&mut out, self.brightness, self.contrast, self.saturation);
        let mut points = [[0.0f32; 2]; 68];
        for (k, p) in landmarks.iter().enumerate() {
            let target = if self.flip { MIRROR_68[k] } else { k };
            points[target] = self.map_point(*p, size);
        }
        (out, points)
    }
}

/// torchvision's RandomErasing rectangle: area a fraction `area` of the crop, log-uniform aspect
/// 0.3-3.3.
fn erase_rect(size: u32, area: (f64, f64), rng: &mut SplitMix64) -> Option<Rect> {
    let s = f64::from(size);
    for _ in 0..10 {
        let area = s * s * rng.uniform(area.0, area.1);
        let ratio = rng.uniform(0.3f64.ln(), 3.3f64.ln()).exp();
        let (h, w) = (
            (area * ratio).sqrt().round() as u32,
            (area / ratio).sqrt().round() as u32,
        );
        if w >= 1 && h >= 1 && w < size && h < size {
            let x = rng.below(u64::from(size - w + 1)) as u32;
            let y = rng.below(u64::from(size - h + 1)) as u32;
            return Some(Rect { x, y, w, h });
        }
    }
    None
}

/// Bilinear sample at `(x, y)` (pixel centres at integers), edges clamped.
fn bilinear(img: &RgbImage, x: f64, y: f64) -> Rgb<u8> {
    let (w, h) = (img.width() as i64, img.height() as i64);
    let (fx, fy) = (x.floor(), y.floor());
    let (ax, ay) = (x - fx, y - fy);
    let px = |xi: i64, yi: i64| {
        img.get_pixel(xi.clamp(0, w - 1) as u32, yi.clamp(0, h - 1) as u32)
            .0
    };
    let (x0, y0) = (fx as i64, fy as i64);
    let (p00, p10, p01, p11) = (
        px(x0, y0),
        px(x0 + 1, y0),
        px(x0, y0 + 1),
        px(x0 + 1, y0 + 1),
    );
    let mut out = [0u8; 3];
    for c in 0..3 {
        let top = f64::from(p00[c]) * (1.0 - ax) + f64::from(p10[c]) * ax;
        let bottom = f64::from(p01[c]) * (1.0 - ax) + f64::from(p11[c]) * ax;
        out[c] = (top * (1.0 - ay) + bottom * ay).round().clamp(0.0, 255.0) as u8;
    }
    Rgb(out)
}

/// ITU-R 601 luma, as torchvision's grayscale.
fn luma(p: [f64; 3]) -> f64 {
    0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2]
}

/// Brightness (scale), contrast (blend with the mean luma) and saturation (blend with each
/// pixel's luma), in that order, clamped to 0-255 after each.
fn jitter(img: &mut RgbImage, brightness: f64, contrast: f64, saturation: f64) {
    if brightness == 1.0 && contrast == 1.0 && saturation == 1.0 {
        return;
    }
    let mut px: Vec<[f64; 3]> = img
        .pixels()
        .map(|p| p.0.map(|v| (f64::from(v) * brightness).clamp(0.0, 255.0)))
        .collect();
    let mean = px.iter().map(|&p| luma(p)).sum::<f64>() / px.len().max(1) as f64;
    for p in &mut px {
        *p = p.map(|v| (mean + contrast * (v - mean)).clamp(0.0, 255.0));
        let l = luma(*p);
        *p = p.map(|v| (l + saturation * (v - l)).clamp(0.0, 255.0));
    }
    for (dst, p) in img.pixels_mut().zip(px) {
        *dst = Rgb(p.map(|v| v.round() as u8));
    }
}

/// Zeroes `rect` in a normalised `[3, S, S]` crop (planar, row-major).
pub fn erase(pixels: &mut [f32], size: u32, rect: Rect) {
    let s = size as usize;
    for plane in pixels.chunks_mut(s * s) {
        for y in rect.y..rect.y + rect.h {
            let row = y as usize * s;
            plane[row + rect.x as usize..row + (rect.x + rect.w) as usize].fill(0.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn img(w: u32, h: u32, px: &[[u8; 3]]) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| Rgb(px[(y * w + x) as usize]))
    }

    fn points() -> [[f32; 2]; 68] {
        std::array::from_fn(|k| [k as f32 * 0.5, 1.0])
    }

    #[test]
    fn mirror_map_is_an_involution_that_swaps_sides() {
        for k in 0..68 {
            assert_eq!(MIRROR_68[MIRROR_68[k]], k);
        }
        // Jaw ends, outer eye corners and mouth corners swap; the nose ridge and the lips'
        // middle points stay.
        assert_eq!((MIRROR_68[0], MIRROR_68[36], MIRROR_68[48]), (16, 45, 54));
        for k in [27, 28, 29, 30, 33, 51, 57, 62, 66] {
            assert_eq!(MIRROR_68[k], k);
        }
        let fixed = (0..68).filter(|&k| MIRROR_68[k] == k).count();
        assert_eq!(fixed, 68 - 2 * 29);
    }

    #[test]
    fn identity_plan_changes_nothing() {
        let crop = img(
            2,
            2,
            &[[10, 20, 30], [40, 50, 60], [70, 80, 90], [200, 150, 100]],
        );
        let (out, pts) = Plan::identity(2).apply(&crop, &points());
        assert_eq!(out, crop);
        assert_eq!(pts, points());
    }

    #[test]
    fn flip_mirrors_pixels_and_renumbers_landmarks() {
        let crop = img(
            2,
            2,
            &[[10, 20, 30], [40, 50, 60], [70, 80, 90], [200, 150, 100]],
        );
        let plan = Plan {
            flip: true,
            ..Plan::identity(2)
        };
        let (out, pts) = plan.apply(&crop, &points());
        let want = img(
            2,
            2,
            &[[40, 50, 60], [10, 20, 30], [200, 150, 100], [70, 80, 90]],
        );
        assert_eq!(out, want);
        // Point 0 sat at x = 0; in a 2-wide crop it goes to x = 1 and becomes point 16.
        assert_eq!(pts[16], [1.0, 1.0]);
        // Point 16 sat at x = 8 (outside, still mapped): 2 - 1 - 8 = -7, now point 0.
        assert_eq!(pts[0], [-7.0, 1.0]);
    }

    #[test]
    fn window_of_the_left_half_stretches_it_to_the_full_width() {
        // Rows 0, 100, 200, 250; the left half [0, 2) resized to width 4 samples source
        // x = -0.25, 0.25, 0.75, 1.25 -> 0 (clamped), 25, 75, 125.
        let row = [[0; 3], [100; 3], [200; 3], [250; 3]];
        let crop = img(4, 4, &row.repeat(4));
        let plan = Plan {
            window: (0.0, 0.0, 2.0, 4.0),
            ..Plan::identity(4)
        };
        let mut pts = points();
        pts[0] = [0.5, 0.0];
        let (out, mapped) = plan.apply(&crop, &pts);
        let first: Vec<u8> = out.pixels().take(4).map(|p| p.0[0]).collect();
        assert_eq!(first, vec![0, 25, 75, 125]);
        // x = 0.5 -> (0.5 + 0.5 - 0) * 4 / 2 - 0.5 = 1.5; y unchanged by a full-height window.
        assert_eq!(mapped[0], [1.5, 0.0]);
    }

    #[test]
    fn jitter_factors_do_what_they_say() {
        // Brightness 0.5 halves; contrast 0 gives the mean luma everywhere; saturation 0 gives
        // each pixel's luma.
        let mut a = img(2, 1, &[[100, 50, 20], [200, 10, 0]]);
        jitter(&mut a, 0.5, 1.0, 1.0);
        assert_eq!(a, img(2, 1, &[[50, 25, 10], [100, 5, 0]]));

        let mut b = img(2, 1, &[[100, 100, 100], [200, 200, 200]]);
        jitter(&mut b, 1.0, 0.0, 1.0);
        assert_eq!(b, img(2, 1, &[[150; 3], [150; 3]]));

        let mut c = img(1, 1, &[[255, 0, 0]]);
        jitter(&mut c, 1.0, 1.0, 0.0);
        // 0.299 * 255 = 76.245 -> 76.
        assert_eq!(c, img(1, 1, &[[76; 3]]));
    }

    #[test]
    fn erase_zeroes_the_rectangle_in_every_channel() {
        let mut px = vec![1.0f32; 3 * 3 * 3];
        erase(
            &mut px,
            3,
            Rect {
                x: 1,
                y: 0,
                w: 2,
                h: 1,
            },
        );
        for c in 0..3 {
            assert_eq!(
                &px[c * 9..c * 9 + 9],
                &[1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]
            );
        }
    }

    #[test]
    fn drawn_plans_stay_in_range_and_are_seeded() {
        let config = Augment::new();
        let mut a = SplitMix64::new(5);
        let mut b = SplitMix64::new(5);
        let (mut flips, mut erased) = (0, 0);
        for _ in 0..400 {
            let p = Plan::draw(&config, 64, &mut a);
            assert_eq!(p, Plan::draw(&config, 64, &mut b));
            let (x0, y0, w, h) = p.window;
            let area = w * h / (64.0 * 64.0);
            assert!((0.75 - 1e-9..=1.0 + 1e-9).contains(&area), "{area}");
            assert!(x0 >= 0.0 && y0 >= 0.0 && x0 + w <= 64.0 + 1e-9 && y0 + h <= 64.0 + 1e-9);
            assert!((0.6..=1.4).contains(&p.brightness));
            if let Some(r) = p.erase {
                assert!(r.x + r.w <= 64 && r.y + r.h <= 64);
                // The reference's 2-20 % of the area, give or take the rounding of the sides.
                let share = f64::from(r.w * r.h) / (64.0 * 64.0);
                assert!((0.015..=0.22).contains(&share), "{share}");
                erased += 1;
            }
            flips += usize::from(p.flip);
        }
        assert!((150..250).contains(&flips), "{flips}");
        assert!((50..115).contains(&erased), "{erased}");
        let none = Plan::draw(&Augment::none(), 64, &mut a);
        assert_eq!(none, Plan::identity(64));
    }
}
