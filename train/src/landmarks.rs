//! Landmark heatmap targets for the landmark branch.
//!
//! Each landmark becomes one heatmap at 1/4 of the input resolution: a Gaussian (sigma 1.5)
//! written in a 10x10 window around the landmark's heatmap pixel (offsets -5..=+4, the reference's
//! window), and a weight map of 10 where a 3x3 dilation of the heatmap exceeds 0.2 and 1 elsewhere,
//! so the loss concentrates on the few pixels near the landmark. A landmark whose window misses the
//! map entirely gets an all-zero heatmap and all-one weights.
//!
//! One deliberate difference from the reference implementation (commit 74bb121): it computes the
//! window start by truncation toward zero, which puts the peak one pixel off for coordinates <= 4;
//! here the peak is always at the landmark's pixel.

/// Heatmap settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HeatmapConfig {
    /// Gaussian standard deviation in heatmap pixels.
    pub sigma: f32,
    /// Dilated heatmap values above this get the high weight.
    pub weight_threshold: f32,
    /// The high weight.
    pub weight_value: f32,
}

impl Default for HeatmapConfig {
    fn default() -> Self {
        HeatmapConfig {
            sigma: 1.5,
            weight_threshold: 0.2,
            weight_value: 10.0,
        }
    }
}

/// The heatmap pixel of a landmark at `coord` input pixels, for maps `stride` times smaller:
/// `floor(coord / stride + 0.5)`.
pub fn heatmap_pixel(coord: f32, stride: f32) -> i64 {
    (coord / stride + 0.5).floor() as i64
}

/// Heatmaps and weight maps for `points` (heatmap pixels, `[x, y]`) on an `h` x `w` grid.
///
/// Returns `(heatmaps, weights)`, each `points.len() * h * w` values, landmark-major, row-major.
pub fn heatmap_targets(
    points: &[[i64; 2]],
    h: usize,
    w: usize,
    config: &HeatmapConfig,
) -> (Vec<f32>, Vec<f32>) {
    let plane = h * w;
    let mut heat = vec![0.0f32; points.len() * plane];
    let mut weight = vec![1.0f32; points.len() * plane];
    let two_sigma2 = 2.0 * config.sigma * config.sigma;
    for (l, &[px, py]) in points.iter().enumerate() {
        let map = &mut heat[l * plane..(l + 1) * plane];
        let (x0, y0) = (px - 5, py - 5);
        if x0 >= w as i64 || y0 >= h as i64 || x0 + 10 <= 0 || y0 + 10 <= 0 {
            continue;
        }
        for b in 0..10i64 {
            for a in 0..10i64 {
                let (x, y) = (x0 + a, y0 + b);
                if (0..w as i64).contains(&x) && (0..h as i64).contains(&y) {
                    let d2 = ((a - 5) * (a - 5) + (b - 5) * (b - 5)) as f32;
                    map[y as usize * w + x as usize] = (-d2 / two_sigma2).exp();
                }
            }
        }
        let wmap = &mut weight[l * plane..(l + 1) * plane];
        for y in 0..h {
            for x in 0..w {
                let mut m = 0.0f32;
                for yy in y.saturating_sub(1)..(y + 2).min(h) {
                    for xx in x.saturating_sub(1)..(x + 2).min(w) {
                        m = m.max(map[yy * w + xx]);
                    }
                }
                if m > config.weight_threshold {
                    wmap[y * w + x] = config.weight_value;
                }
            }
        }
    }
    (heat, weight)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peak_lands_on_the_point_even_near_the_border() {
        let points = [[0, 0], [2, 5], [7, 6]];
        let (heat, weight) = heatmap_targets(&points, 8, 8, &HeatmapConfig::default());
        for (l, &[px, py]) in points.iter().enumerate() {
            let map = &heat[l * 64..(l + 1) * 64];
            let best = edge_fer::classify::argmax(map);
            assert_eq!(
                (best % 8, best / 8),
                (px as usize, py as usize),
                "landmark {l}"
            );
            assert_eq!(map[best], 1.0);
            assert_eq!(weight[l * 64 + best], 10.0);
        }
        // One pixel away the Gaussian is exp(-1 / 4.5); three away it is below the 0.2 threshold
        // but the dilation still reaches two pixels out.
        assert!((heat[64 + 5 * 8 + 3] - (-1.0f32 / 4.5).exp()).abs() < 1e-7);
        assert_eq!(weight[64 + 5 * 8 + 4], 10.0, "dilated neighbour");
        assert_eq!(weight[64 + 5 * 8 + 6], 1.0, "outside the dilated blob");
    }

    #[test]
    fn pixel_mapping_rounds_to_nearest() {
        assert_eq!(heatmap_pixel(9.9, 4.0), 2);
        assert_eq!(heatmap_pixel(10.0, 4.0), 3);
        assert_eq!(heatmap_pixel(-3.0, 4.0), -1);
    }
}
