//! dlib's 68-point shape predictor, read from dlib's own model file and run in Rust.
//!
//! The model is a cascade of regression-tree ensembles (Kazemi and Sullivan, "One millisecond
//! face alignment with an ensemble of regression trees", CVPR 2014): starting from a mean shape
//! placed in the face box, each stage samples a few hundred pixels at points defined relative to
//! the current shape, and each of its trees compares two of those pixels per level and adds the
//! offsets stored in the leaf it reaches.
//!
//! Why not through dlib (which stays for its detectors, and as the tests' reference): dlib's
//! reader takes 1.2 s over the 95 MB file, more than the whole start-up budget, because it reads
//! sixteen million floats a byte at a time through iostreams; and the crate's predictor only takes
//! a path, and a copy of the whole frame in dlib's image type on every call, which costs more than
//! the fit. Here the file is read once, hashed on the way, and a fit reads the frame in place.
//! Same file, same arithmetic in the same order, so the points are dlib's (the tests compare them
//! on the fixture photos), only not rounded to whole pixels.

mod dlib_format;

use std::io::Read;
use std::path::Path;

use image::RgbImage;

use self::dlib_format::{DlibReader, FormatError};
use crate::checksum::{check_known, HashingReader};
use crate::detect::{FaceBox, Landmarks};
use crate::error::{Error, Result};

/// The number of points a [`Landmarks`] holds.
const PARTS: usize = 68;
const SHAPE_LEN: usize = 2 * PARTS;

/// A loaded 68-point shape predictor.
pub struct ShapePredictor {
    /// The mean shape, in coordinates relative to the face box ((0, 0) top left, (1, 1) bottom
    /// right), `x0, y0, x1, y1, ...`.
    initial: Vec<f32>,
    cascades: Vec<Cascade>,
}

/// One stage: where its pixels are sampled, and the trees that read them.
struct Cascade {
    /// For each sampled pixel, the point of the shape it moves with...
    anchors: Vec<usize>,
    /// ...and its offset from that point in the mean shape.
    deltas: Vec<[f32; 2]>,
    forest: Forest,
}

/// A stage's trees, all of one depth, each a complete binary tree stored breadth-first (node
/// `i`'s children are `2i + 1` and `2i + 2`). All splits sit in one array and all leaves in
/// another: a fit walks 7500 trees and reads one leaf of each, and scattered allocations made
/// that walk wait on memory for most of its time.
struct Forest {
    trees: usize,
    /// Splits per tree (`2^depth - 1`).
    splits_per_tree: usize,
    splits: Vec<Split>,
    /// `splits_per_tree + 1` leaves per tree, each [`SHAPE_LEN`] offsets.
    leaves: Vec<f32>,
}

/// Go left when `pixel[a] - pixel[b] > threshold`.
struct Split {
    a: u32,
    b: u32,
    threshold: f32,
}

/// Most entries any list in a shape predictor may declare; far above dlib's 68-point model
/// (15 stages of 500 trees, 400 pixels each) and low enough that a damaged length fails fast.
const MAX_ENTRIES: usize = 1 << 20;

impl ShapePredictor {
    /// Reads the model at `path`, checking its sha256 in the same pass (see
    /// [`check_known`]: a mismatch is an error when `strict`, else a warning).
    ///
    /// # Errors
    /// [`Error::Io`] if the file cannot be read, [`Error::Checksum`] for a strict mismatch (also
    /// when the file does not parse: a damaged copy of the published model is reported as such),
    /// [`Error::ModelLoad`] naming the byte where the file stops being a 68-point shape predictor.
    pub fn load(path: &Path, expected_sha256: &str, strict: bool) -> Result<Self> {
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let hashing = HashingReader::new(file).map_err(|e| Error::io(path, e))?;
        let mut reader = DlibReader::new(hashing);
        let parsed = Self::parse(&mut reader);
        if let Some(e) = reader.take_io_error() {
            return Err(Error::io(path, e));
        }
        let actual = reader
            .into_inner()
            .finish()
            .map_err(|e| Error::io(path, e))?;
        check_known(path, &actual, expected_sha256, strict)?;
        parsed.map_err(|e| not_a_predictor(path, e))
    }

    /// Reads a model from `bytes` (no checksum): for tests and embedded copies.
    ///
    /// # Errors
    /// [`Error::ModelLoad`], with `name` as the path, where the bytes are not a 68-point model.
    pub fn from_reader(bytes: impl Read, name: &Path) -> Result<Self> {
        Self::parse(&mut DlibReader::new(bytes)).map_err(|e| not_a_predictor(name, e))
    }

    /// dlib's `deserialize(shape_predictor&)`: a version, the mean shape, the forests, then each
    /// stage's anchor indices and pixel offsets; checked so that a fit cannot index out of range.
    fn parse<R: Read>(r: &mut DlibReader<R>) -> Result<Self, FormatError> {
        let fail = |offset, what: String| Err(FormatError { offset, what });
        let at = r.offset();
        let version = r.int()?;
        if version != 1 {
            return fail(at, format!("version {version}, expected 1"));
        }
        let at = r.offset();
        // The mean shape's length says how many points the model has; name it in the error.
        let rows = r.signed(8)?.unsigned_abs();
        if rows != SHAPE_LEN as u64 {
            let points = rows / 2;
            return fail(
                at,
                format!("the model has {points} points; edge-fer needs 68"),
            );
        }
        let cols = r.signed(8)?.unsigned_abs();
        if cols != 1 {
            return fail(
                at,
                format!("mean shape is {rows}x{cols}, expected a column"),
            );
        }
        let initial = (0..SHAPE_LEN)
            .map(|_| r.float())
            .collect::<Result<Vec<f32>, _>>()?;

        let stages = r.length(MAX_ENTRIES, "the cascade")?;
        let mut forests = Vec::with_capacity(stages.min(64));
        for _ in 0..stages {
            let n = r.length(MAX_ENTRIES, "a forest")?;
            let mut forest = Forest {
                trees: n,
                splits_per_tree: 0,
                splits: Vec::new(),
                leaves: Vec::new(),
            };
            for tree in 0..n {
                read_tree(r, tree, &mut forest)?;
            }
            forests.push(forest);
        }

        let at = r.offset();
        if r.length(MAX_ENTRIES, "the anchor lists")? != stages {
            return fail(at, "anchor lists and forests differ in number".into());
        }
        let mut anchors = Vec::with_capacity(stages.min(64));
        for _ in 0..stages {
            let n = r.length(MAX_ENTRIES, "an anchor list")?;
            let mut list = Vec::with_capacity(n.min(4096));
            for _ in 0..n {
                let at = r.offset();
                let a = r.unsigned()?;
                if a >= PARTS as u64 {
                    return fail(at, format!("anchor {a} is not one of the 68 points"));
                }
                list.push(a as usize);
            }
            anchors.push(list);
        }

        let at = r.offset();
        if r.length(MAX_ENTRIES, "the offset lists")? != stages {
            return fail(at, "offset lists and forests differ in number".into());
        }
        let mut cascades = Vec::with_capacity(stages.min(64));
        for (forest, anchors) in forests.into_iter().zip(anchors) {
            let at = r.offset();
            let n = r.length(MAX_ENTRIES, "an offset list")?;
            if n != anchors.len() {
                return fail(at, format!("{n} offsets for {} anchors", anchors.len()));
            }
            let deltas = (0..n)
                .map(|_| Ok([r.float()?, r.float()?]))
                .collect::<Result<Vec<_>, FormatError>>()?;
            if let Some(s) = forest
                .splits
                .iter()
                .find(|s| s.a as usize >= n || s.b as usize >= n)
            {
                return fail(at, format!("a split reads pixel {} of {n}", s.a.max(s.b)));
            }
            cascades.push(Cascade {
                anchors,
                deltas,
                forest,
            });
        }
        Ok(ShapePredictor { initial, cascades })
    }

    /// The 68 points of the face in `bbox` (dlib's inclusive box convention), in frame pixels.
    ///
    /// Pixels are sampled as dlib does: rounded to the nearest pixel, grey as the integer mean of
    /// R, G and B, and 0 outside the frame; so a box partly or wholly outside the frame still
    /// gives 68 points.
    pub fn predict(&self, frame: &RgbImage, bbox: FaceBox) -> Landmarks {
        let (width, height) = (i64::from(frame.width()), i64::from(frame.height()));
        let pixels = frame.as_raw();
        let to_frame = BoxTransform::of(bbox);
        let mut shape = self.initial.clone();
        let (mut features, mut leaves) = (Vec::new(), Vec::new());
        for cascade in &self.cascades {
            let m = similarity(&self.initial, &shape);
            features.clear();
            features.extend(cascade.anchors.iter().zip(&cascade.deltas).map(|(&a, d)| {
                // f32 in dlib's order (matrix times offset, then the anchor), then the box
                // transform in f64, as dlib's types do.
                let x = (m[0][0] * d[0] + m[0][1] * d[1]) + shape[2 * a];
                let y = (m[1][0] * d[0] + m[1][1] * d[1]) + shape[2 * a + 1];
                let [px, py] = to_frame.apply(x, y).map(|v| (v + 0.5).floor() as i64);
                if (0..width).contains(&px) && (0..height).contains(&py) {
                    let i = 3 * (py * width + px) as usize;
                    let sum =
                        u32::from(pixels[i]) + u32::from(pixels[i + 1]) + u32::from(pixels[i + 2]);
                    (sum / 3) as f32
                } else {
                    0.0
                }
            }));
            // Which leaf each tree reaches depends only on the pixels, so all are found first;
            // then the leaves (scattered over 65 MB) are fetched a few trees ahead of the sums,
            // which otherwise wait on memory for most of the fit. The sums keep dlib's order.
            leaves.clear();
            leaves.extend((0..cascade.forest.trees).map(|t| cascade.forest.leaf(t, &features)));
            for (t, leaf) in leaves.iter().enumerate() {
                if let Some(ahead) = leaves.get(t + PREFETCH_AHEAD) {
                    prefetch(cascade.forest.leaf_values(*ahead));
                }
                for (s, offset) in shape.iter_mut().zip(cascade.forest.leaf_values(*leaf)) {
                    *s += offset;
                }
            }
        }
        let mut points = [[0.0f32; 2]; PARTS];
        for (p, xy) in points.iter_mut().zip(shape.chunks_exact(2)) {
            *p = to_frame.apply(xy[0], xy[1]).map(|v| v as f32);
        }
        Landmarks(points)
    }
}

/// Where a file's bytes stop being a 68-point shape predictor, as the library's error.
fn not_a_predictor(path: &Path, e: FormatError) -> Error {
    Error::ModelLoad {
        path: path.to_path_buf(),
        reason: format!("not a dlib 68-point shape predictor: {e}"),
    }
}

impl Forest {
    /// Which leaf of the forest (counting all its trees' leaves) tree `tree` reaches with these
    /// pixels.
    #[inline]
    fn leaf(&self, tree: usize, pixels: &[f32]) -> usize {
        let n = self.splits_per_tree;
        let splits = &self.splits[tree * n..(tree + 1) * n];
        let mut i = 0;
        while let Some(s) = splits.get(i) {
            i = if pixels[s.a as usize] - pixels[s.b as usize] > s.threshold {
                2 * i + 1
            } else {
                2 * i + 2
            };
        }
        tree * (n + 1) + (i - n)
    }

    /// The offsets stored in leaf `leaf`.
    #[inline]
    fn leaf_values(&self, leaf: usize) -> &[f32] {
        &self.leaves[leaf * SHAPE_LEN..(leaf + 1) * SHAPE_LEN]
    }
}

/// How many trees ahead of the sums their leaves are fetched: a few sums' time covers a trip to
/// memory (not tuned; with it a fit took 1.4-2.1 ms instead of 3.5 on x86_64, BENCHMARKS.md).
const PREFETCH_AHEAD: usize = 6;

/// Asks the CPU to start loading `values` into cache, without waiting. Rust has no portable
/// prefetch; where none is written here this does nothing, and the fit is only slower.
#[inline]
fn prefetch(values: &[f32]) {
    for line in values.chunks(16) {
        let ptr = line.as_ptr();
        #[cfg(target_arch = "x86_64")]
        // SAFETY: a prefetch is a hint: it never faults and does not change memory.
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(ptr.cast());
        }
        #[cfg(target_arch = "aarch64")]
        // SAFETY: as above; `prfm` reads nothing into registers and cannot fault.
        unsafe {
            std::arch::asm!("prfm pldl1keep, [{0}]", in(reg) ptr, options(nostack, readonly, preserves_flags));
        }
        #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
        let _ = ptr;
    }
}

/// dlib's `regression_tree` (its splits, then its leaves, each a column of offsets), the
/// `tree`-th of `forest`, whose trees must all have its first tree's depth.
fn read_tree<R: Read>(
    r: &mut DlibReader<R>,
    tree: usize,
    forest: &mut Forest,
) -> Result<(), FormatError> {
    let at = r.offset();
    let n = r.length(MAX_ENTRIES, "a tree's splits")?;
    if tree == 0 {
        forest.splits_per_tree = n;
        forest.splits.reserve(forest.trees.min(4096) * n);
        forest
            .leaves
            .reserve(forest.trees.min(4096) * (n + 1) * SHAPE_LEN);
    } else if n != forest.splits_per_tree {
        return Err(FormatError {
            offset: at,
            what: format!(
                "a tree with {n} splits in a stage of trees with {}",
                forest.splits_per_tree
            ),
        });
    }
    for _ in 0..n {
        // Pixel indices are checked against the stage's pixel count once that is read.
        let a = r.length(u32::MAX as usize, "a split's pixel")? as u32;
        let b = r.length(u32::MAX as usize, "a split's pixel")? as u32;
        forest.splits.push(Split {
            a,
            b,
            threshold: r.float()?,
        });
    }
    let at = r.offset();
    let leaves = r.length(MAX_ENTRIES, "a tree's leaves")?;
    // The walk in `Forest::leaf` ends on a leaf only in a complete tree.
    if leaves != n + 1 || !leaves.is_power_of_two() {
        return Err(FormatError {
            offset: at,
            what: format!("a tree with {n} splits and {leaves} leaves is not complete"),
        });
    }
    for _ in 0..leaves {
        r.column_into(SHAPE_LEN, "a leaf", &mut forest.leaves)?;
    }
    Ok(())
}

/// The linear part of the least-squares similarity transform taking `from` to `to` (two shapes
/// of the same points): `[[a, -b], [b, a]]`, in f64 and then rounded to f32 as dlib does. This is
/// Umeyama's solution, which dlib computes with an SVD, in its closed form for two dimensions.
fn similarity(from: &[f32], to: &[f32]) -> [[f32; 2]; 2] {
    let n = (from.len() / 2) as f64;
    let mean = |s: &[f32]| {
        let (x, y) = s.chunks_exact(2).fold((0.0, 0.0), |(x, y), p| {
            (x + f64::from(p[0]), y + f64::from(p[1]))
        });
        (x / n, y / n)
    };
    let ((fx, fy), (tx, ty)) = (mean(from), mean(to));
    let (mut dot, mut cross, mut norm) = (0.0f64, 0.0f64, 0.0f64);
    for (p, q) in from.chunks_exact(2).zip(to.chunks_exact(2)) {
        let (ax, ay) = (f64::from(p[0]) - fx, f64::from(p[1]) - fy);
        let (bx, by) = (f64::from(q[0]) - tx, f64::from(q[1]) - ty);
        dot += ax * bx + ay * by;
        cross += ax * by - ay * bx;
        norm += ax * ax + ay * ay;
    }
    if norm == 0.0 {
        // dlib's answer for a shape with no extent: no scaling.
        return [[1.0, 0.0], [0.0, 1.0]];
    }
    let (a, b) = ((dot / norm) as f32, (cross / norm) as f32);
    [[a, -b], [b, a]]
}

/// From box-relative coordinates ((0, 0) the top-left pixel, (1, 1) the bottom-right one) to
/// frame pixels: dlib's `unnormalizing_tform`.
struct BoxTransform {
    left: f64,
    top: f64,
    width: f64,
    height: f64,
}

impl BoxTransform {
    fn of(b: FaceBox) -> Self {
        BoxTransform {
            left: b.left as f64,
            top: b.top as f64,
            width: (b.right - b.left) as f64,
            height: (b.bottom - b.top) as f64,
        }
    }

    #[inline]
    fn apply(&self, x: f32, y: f32) -> [f64; 2] {
        [
            self.left + f64::from(x) * self.width,
            self.top + f64::from(y) * self.height,
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn similarity_by_hand() {
        // A square scaled by 2 and turned 90 degrees anticlockwise (x, y) -> (-2y, 2x), then
        // moved: the linear part is [[0, -2], [2, 0]] whatever the translation.
        let from = [0.0, 0.0, 1.0, 0.0, 1.0, 1.0, 0.0, 1.0];
        let to = [5.0, 5.0, 5.0, 7.0, 3.0, 7.0, 3.0, 5.0];
        assert_eq!(similarity(&from, &to), [[0.0, -2.0], [2.0, 0.0]]);
        assert_eq!(similarity(&from, &from), [[1.0, 0.0], [0.0, 1.0]]);
        // All points in one place: identity, not a division by zero.
        assert_eq!(similarity(&[1.0; 8], &to), [[1.0, 0.0], [0.0, 1.0]]);
    }

    #[test]
    fn box_transform_by_hand() {
        let t = BoxTransform::of(FaceBox {
            left: 10,
            top: 20,
            right: 110,
            bottom: 70,
        });
        assert_eq!(t.apply(0.0, 0.0), [10.0, 20.0]);
        assert_eq!(t.apply(1.0, 1.0), [110.0, 70.0]);
        assert_eq!(t.apply(0.5, 0.25), [60.0, 32.5]);
    }

    /// A one-stage, one-tree model: the tree compares pixel 0 (at point 0) with pixel 1 (at
    /// point 1) and moves every point by +0.1 or -0.1 of the box.
    fn tiny_model() -> ShapePredictor {
        let mut initial = vec![0.0f32; SHAPE_LEN];
        initial[2] = 1.0; // point 1 at (1, 0): the box's top-right pixel
        ShapePredictor {
            initial,
            cascades: vec![Cascade {
                anchors: vec![0, 1],
                deltas: vec![[0.0, 0.0], [0.0, 0.0]],
                forest: Forest {
                    trees: 1,
                    splits_per_tree: 1,
                    splits: vec![Split {
                        a: 0,
                        b: 1,
                        threshold: 10.0,
                    }],
                    leaves: [vec![0.1f32; SHAPE_LEN], vec![-0.1f32; SHAPE_LEN]].concat(),
                },
            }],
        }
    }

    #[test]
    fn a_tree_reads_the_pixels_it_names() {
        let model = tiny_model();
        let bbox = FaceBox {
            left: 0,
            top: 0,
            right: 10,
            bottom: 10,
        };
        // Top-left pixel bright: 200 - 0 > 10 goes left (+0.1 of the 10 px box = +1 px).
        let mut frame = RgbImage::new(11, 11);
        frame.put_pixel(0, 0, image::Rgb([200, 200, 200]));
        let p = model.predict(&frame, bbox);
        assert_eq!(p.0[0], [1.0, 1.0]);
        assert_eq!(p.0[1], [11.0, 1.0]);
        // Grey is the integer mean: (20 + 0 + 11) / 3 = 10, not above the threshold: right.
        frame.put_pixel(0, 0, image::Rgb([20, 0, 11]));
        assert_eq!(model.predict(&frame, bbox).0[0], [-1.0, -1.0]);
        // A box outside the frame reads zeros (0 - 0 > 10 is false) and does not panic.
        let away = FaceBox {
            left: 500,
            top: 500,
            right: 510,
            bottom: 510,
        };
        assert_eq!(model.predict(&frame, away).0[0], [499.0, 499.0]);
    }

    #[test]
    fn a_damaged_model_is_refused_with_where() {
        let name = Path::new("bad.dat");
        for (bytes, says) in [
            (&[0x01, 0x02][..], "version 2"),
            (&[0x01, 0x01, 0x81, 0x0a, 0x81, 0x01][..], "5 points"),
            (&[0x01, 0x01, 0x81, 0x88][..], "ends here"),
        ] {
            let err = ShapePredictor::from_reader(bytes, name)
                .err()
                .expect("damaged model accepted")
                .to_string();
            assert!(err.contains("bad.dat") && err.contains(says), "{err}");
        }
    }
}
