//! From BlazeFace's raw outputs to face detections: anchor-relative offsets to boxes and key
//! points, sigmoid scores, and the weighted non-maximum suppression the BlazeFace paper describes.
//!
//! Coordinates here are fractions of the model's square input (0-1, x right, y down); taking them
//! back to frame pixels (the letterbox) is the caller's job.

/// Values per anchor in the regressor output: a box (centre x, centre y, width, height) and six
/// key points (x, y).
pub const VALUES_PER_ANCHOR: usize = 16;
/// Key points per face: right eye, left eye (the subject's), nose tip, mouth centre, right ear
/// tragion, left ear tragion.
pub const KEYPOINTS: usize = 6;

/// A detection in input-relative coordinates.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Detection {
    /// Confidence in 0-1 (the sigmoid of the model's logit).
    pub score: f32,
    /// `[xmin, ymin, xmax, ymax]`.
    pub bbox: [f32; 4],
    /// `[x, y]` of each key point, in the order of [`KEYPOINTS`].
    pub keypoints: [[f32; 2]; KEYPOINTS],
}

impl Detection {
    /// Intersection over union of the two boxes, in [0, 1].
    pub fn iou(&self, other: &Detection) -> f32 {
        let [ax0, ay0, ax1, ay1] = self.bbox;
        let [bx0, by0, bx1, by1] = other.bbox;
        let w = (ax1.min(bx1) - ax0.max(bx0)).max(0.0);
        let h = (ay1.min(by1) - ay0.max(by0)).max(0.0);
        let inter = w * h;
        let union = (ax1 - ax0) * (ay1 - ay0) + (bx1 - bx0) * (by1 - by0) - inter;
        if union <= 0.0 {
            0.0
        } else {
            inter / union
        }
    }
}

/// Decoding settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DecodeOptions {
    /// The input side in pixels: offsets are in input pixels, divided by it.
    pub scale: f32,
    /// Detections scoring below this are dropped.
    pub min_score: f32,
    /// Logits are clipped to +-this before the sigmoid (the published graph's 100).
    pub clip: f32,
}

impl DecodeOptions {
    /// The short-range model's published settings: 128 px, minimum score 0.5, clip 100.
    pub fn short_range() -> Self {
        DecodeOptions {
            scale: 128.0,
            min_score: 0.5,
            clip: 100.0,
        }
    }
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// Decodes every anchor scoring at least `options.min_score`.
///
/// `regressors` holds [`VALUES_PER_ANCHOR`] values per anchor and `logits` one, both in anchor
/// order; `anchors` are the centres of [`super::AnchorGrid::centres`]. Anchors have unit size, so
/// a box's centre is its anchor's centre plus the offset, and its size is the predicted size.
pub fn decode(
    regressors: &[f32],
    logits: &[f32],
    anchors: &[[f32; 2]],
    options: &DecodeOptions,
) -> Vec<Detection> {
    let s = options.scale;
    anchors
        .iter()
        .zip(logits)
        .zip(regressors.chunks_exact(VALUES_PER_ANCHOR))
        .filter_map(|((&[ax, ay], &logit), r)| {
            let score = sigmoid(logit.clamp(-options.clip, options.clip));
            if score < options.min_score || !score.is_finite() {
                return None;
            }
            let (cx, cy) = (r[0] / s + ax, r[1] / s + ay);
            let (w, h) = (r[2] / s, r[3] / s);
            let mut keypoints = [[0.0; 2]; KEYPOINTS];
            for (k, point) in keypoints.iter_mut().enumerate() {
                *point = [r[4 + 2 * k] / s + ax, r[5 + 2 * k] / s + ay];
            }
            Some(Detection {
                score,
                bbox: [cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0],
                keypoints,
            })
        })
        .collect()
}

/// Weighted non-maximum suppression ("blending" in the BlazeFace paper): the best remaining
/// detection and every other one overlapping it by more than `iou_threshold` are merged into one
/// whose box and key points are their score-weighted mean and whose score is the best one's.
/// Averaging the overlapping predictions steadies the box from frame to frame, which plain
/// suppression (keeping the best alone) does not. Returned best first.
pub fn weighted_nms(mut detections: Vec<Detection>, iou_threshold: f32) -> Vec<Detection> {
    detections.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut merged = Vec::new();
    while let Some(&best) = detections.first() {
        let (cluster, rest): (Vec<Detection>, Vec<Detection>) = detections
            .into_iter()
            .partition(|d| d.iou(&best) > iou_threshold || *d == best);
        detections = rest;
        let total: f32 = cluster.iter().map(|d| d.score).sum();
        let mut out = Detection {
            score: best.score,
            bbox: [0.0; 4],
            keypoints: [[0.0; 2]; KEYPOINTS],
        };
        for d in &cluster {
            let w = d.score / total;
            for (o, v) in out.bbox.iter_mut().zip(d.bbox) {
                *o += w * v;
            }
            for (o, v) in out.keypoints.iter_mut().zip(d.keypoints) {
                o[0] += w * v[0];
                o[1] += w * v[1];
            }
        }
        merged.push(out);
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> DecodeOptions {
        DecodeOptions {
            scale: 100.0,
            min_score: 0.5,
            clip: 100.0,
        }
    }

    #[test]
    fn offsets_are_added_to_the_anchor_and_scaled_by_the_input() {
        let mut r = [0.0f32; 32];
        // Anchor 1 at (0.5, 0.25): centre offset (+10, -5) px, size 20 x 40 px on a 100 px input.
        r[16..20].copy_from_slice(&[10.0, -5.0, 20.0, 40.0]);
        // Its first key point 2 px right of the anchor, the last 3 px above it.
        r[20] = 2.0;
        r[31] = -3.0;
        let logits = [-1.0, 2.0]; // sigmoid: 0.269 (dropped), 0.881
        let found = decode(&r, &logits, &[[0.1, 0.1], [0.5, 0.25]], &options());
        assert_eq!(found.len(), 1);
        let d = found[0];
        assert!((d.score - 0.880_797).abs() < 1e-5, "{}", d.score);
        let expected = [0.6 - 0.1, 0.2 - 0.2, 0.6 + 0.1, 0.2 + 0.2];
        for (got, want) in d.bbox.iter().zip(expected) {
            assert!((got - want).abs() < 1e-6, "{:?}", d.bbox);
        }
        assert!((d.keypoints[0][0] - 0.52).abs() < 1e-6);
        assert!((d.keypoints[0][1] - 0.25).abs() < 1e-6);
        assert!((d.keypoints[5][0] - 0.5).abs() < 1e-6);
        assert!((d.keypoints[5][1] - 0.22).abs() < 1e-6);
    }

    #[test]
    fn huge_logits_are_clipped_and_nan_scores_dropped() {
        let r = [0.0f32; 48];
        let logits = [1e30, f32::NAN, -1e30];
        let found = decode(&r, &logits, &[[0.5, 0.5]; 3], &options());
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].score, 1.0);
    }

    fn det(score: f32, bbox: [f32; 4], nose: [f32; 2]) -> Detection {
        let mut keypoints = [[0.0; 2]; KEYPOINTS];
        keypoints[2] = nose;
        Detection {
            score,
            bbox,
            keypoints,
        }
    }

    #[test]
    fn iou_by_hand() {
        let a = det(1.0, [0.0, 0.0, 2.0, 2.0], [0.0; 2]);
        let b = det(1.0, [1.0, 0.0, 3.0, 2.0], [0.0; 2]);
        // Overlap 1 x 2 = 2; union 4 + 4 - 2 = 6.
        assert!((a.iou(&b) - 1.0 / 3.0).abs() < 1e-6);
        let far = det(1.0, [5.0, 5.0, 6.0, 6.0], [0.0; 2]);
        assert_eq!(a.iou(&far), 0.0);
    }

    #[test]
    fn overlapping_detections_blend_by_score_and_others_stay() {
        let found = weighted_nms(
            vec![
                det(0.6, [0.2, 0.0, 1.2, 1.0], [0.6, 0.5]),
                // A face elsewhere, between the two overlapping ones in score.
                det(0.7, [3.0, 3.0, 4.0, 4.0], [3.5, 3.5]),
                det(0.9, [0.0, 0.0, 1.0, 1.0], [0.4, 0.5]),
            ],
            0.3,
        );
        assert_eq!(found.len(), 2);
        // IoU of the first pair: 0.8 / 1.2 = 0.67 > 0.3, so they merge with weights 0.6 and 0.4.
        let d = found[0];
        assert_eq!(d.score, 0.9);
        let want = [0.08, 0.0, 1.08, 1.0];
        for (got, want) in d.bbox.iter().zip(want) {
            assert!((got - want).abs() < 1e-6, "{:?}", d.bbox);
        }
        assert!((d.keypoints[2][0] - 0.48).abs() < 1e-6);
        assert_eq!(found[1], det(0.7, [3.0, 3.0, 4.0, 4.0], [3.5, 3.5]));
    }

    #[test]
    fn a_slight_overlap_is_not_merged() {
        let a = det(0.9, [0.0, 0.0, 1.0, 1.0], [0.0; 2]);
        let b = det(0.8, [0.8, 0.0, 1.8, 1.0], [0.0; 2]); // IoU 0.2 / 1.8 = 0.11
        assert_eq!(weighted_nms(vec![b, a], 0.3), vec![a, b]);
        assert!(weighted_nms(Vec::new(), 0.3).is_empty());
    }
}
