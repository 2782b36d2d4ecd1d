//! The fixed anchor grid BlazeFace's outputs are offsets from.
//!
//! BlazeFace is a single-shot detector: each of its outputs belongs to one anchor, a point on a
//! feature map, and predicts a box and key points relative to it. The grid follows the SSD anchor
//! scheme MediaPipe publishes for the short-range model: four layers of strides 8, 16, 16 and 16
//! on a 128x128 input, two anchors per cell and layer (aspect ratio 1 plus the interpolated
//! scale), centres at the cell's middle (offset 0.5). With a fixed anchor size the anchors' widths
//! and heights are all 1, so only the centres matter. Consecutive layers of one stride share a
//! feature map; their anchors are interleaved per cell, in the order the model emits them.

/// The anchor layout of an SSD-style detector with fixed-size anchors.
#[derive(Debug, Clone, PartialEq)]
pub struct AnchorGrid {
    /// Input side in pixels (the input is square).
    pub input: u32,
    /// One stride per layer; consecutive equal strides share a feature map.
    pub strides: Vec<u32>,
    /// Anchors per cell contributed by each layer.
    pub per_layer: u32,
    /// Where in its cell an anchor's centre sits, in cells (0.5: the middle).
    pub offset: f32,
}

impl AnchorGrid {
    /// The short-range BlazeFace layout: 128 px, strides 8, 16, 16, 16, two anchors per layer.
    pub fn short_range() -> Self {
        AnchorGrid {
            input: 128,
            strides: vec![8, 16, 16, 16],
            per_layer: 2,
            offset: 0.5,
        }
    }

    /// The anchor centres, `[x, y]` as fractions of the input side, in output order.
    pub fn centres(&self) -> Vec<[f32; 2]> {
        let mut centres = Vec::new();
        let mut layer = 0;
        while layer < self.strides.len() {
            let stride = self.strides[layer];
            let shared = self.strides[layer..]
                .iter()
                .take_while(|&&s| s == stride)
                .count() as u32;
            let cells = self.input.div_ceil(stride);
            for y in 0..cells {
                for x in 0..cells {
                    let centre = [
                        (x as f32 + self.offset) / cells as f32,
                        (y as f32 + self.offset) / cells as f32,
                    ];
                    for _ in 0..shared * self.per_layer {
                        centres.push(centre);
                    }
                }
            }
            layer += shared as usize;
        }
        centres
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_range_grid_by_hand() {
        let c = AnchorGrid::short_range().centres();
        // 16x16 cells x 2 anchors (stride 8) + 8x8 cells x 3 layers x 2 anchors (stride 16).
        assert_eq!(c.len(), 16 * 16 * 2 + 8 * 8 * 6);
        assert_eq!(c.len(), 896);
        // The first cell's two anchors, then the second cell's, at 1/32 and 3/32.
        assert_eq!(c[0], [0.03125, 0.03125]);
        assert_eq!(c[1], [0.03125, 0.03125]);
        assert_eq!(c[2], [0.09375, 0.03125]);
        // The second row of the stride-8 map starts at index 32.
        assert_eq!(c[32], [0.03125, 0.09375]);
        assert_eq!(c[511], [0.96875, 0.96875]);
        // The stride-16 map: six anchors per cell, centres at (x + 0.5) / 8.
        for anchor in &c[512..518] {
            assert_eq!(*anchor, [0.0625, 0.0625]);
        }
        assert_eq!(c[518], [0.1875, 0.0625]);
        assert_eq!(c[895], [0.9375, 0.9375]);
    }

    #[test]
    fn a_side_that_does_not_divide_rounds_the_map_up() {
        let grid = AnchorGrid {
            input: 10,
            strides: vec![4],
            per_layer: 1,
            offset: 0.5,
        };
        let c = grid.centres();
        // ceil(10 / 4) = 3 cells a side.
        assert_eq!(c.len(), 9);
        assert_eq!(c[0], [1.0 / 6.0, 1.0 / 6.0]);
        assert_eq!(c[8], [5.0 / 6.0, 5.0 / 6.0]);
    }
}
