//! Synthetic faces: drawn faces whose 68 landmarks are known exactly and whose expression is
//! carried only by geometry, so every part of training runs without a dataset.
//!
//! A face is built in a unit frame from dlib's 68-point layout: jaw arc, brows, nose, eyes as
//! hexagons, lips as two curves. The expression sets the mouth curve (corners up or down), its
//! opening and width, the upper lip, the brows' height and inner tilt and the eye opening; every
//! parameter is jittered per face so classes overlap a little, as real expressions do. Nuisance
//! variation that must not matter: identity (face width and height, eye spacing, feature heights),
//! in-plane rotation, yaw (horizontal foreshortening), scale, position, skin/background colours, a
//! lighting gradient and pixel noise. The same `(seed, index)` always gives the same face.
//!
//! Two variants serve the noisy-label benchmark. *Identities* ([`Identity`], [`identity_stream`]):
//! a fixed pool of face shapes, so a network can be pretrained to tell people apart without ever
//! seeing an expression label, the stand-in for the face-recognition checkpoint LA-Net's
//! reference starts from. *Blends* ([`Look::Blend`], [`blend_stream`]): the expression parameters
//! of two classes interpolated before the jitter, a face whose true label distribution is known,
//! the ambiguity real expressions have (fear/surprise, anger/disgust, sadness/neutral).

use image::{Rgb, RgbImage};

use super::Expression;
use crate::rng::SplitMix64;

/// One synthetic face.
#[derive(Debug, Clone)]
pub struct SyntheticFace {
    /// The picture.
    pub image: RgbImage,
    /// The 68 landmarks in image pixels (dlib order).
    pub landmarks: [[f32; 2]; 68],
    /// The expression its geometry carries.
    pub label: Expression,
}

/// What a face's expression geometry shows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Look {
    /// One class's geometry.
    Pure(Expression),
    /// `alpha * major + (1 - alpha) * minor`, parameter by parameter (`alpha` in 0.5-1).
    Blend {
        /// The class with weight `alpha`: the face's clean label.
        major: Expression,
        /// The other class.
        minor: Expression,
        /// The major class's weight.
        alpha: f32,
    },
}

impl Look {
    /// The clean label: the class with the larger weight.
    pub fn label(&self) -> Expression {
        match *self {
            Look::Pure(e) | Look::Blend { major: e, .. } => e,
        }
    }

    /// The true label distribution over `classes` classes: one-hot for a pure face,
    /// `alpha` / `1 - alpha` on the blend's two classes.
    pub fn truth(&self, classes: usize) -> Vec<f32> {
        let mut t = vec![0.0; classes];
        match *self {
            Look::Pure(e) => t[e.index()] = 1.0,
            Look::Blend {
                major,
                minor,
                alpha,
            } => {
                t[major.index()] = alpha;
                t[minor.index()] = 1.0 - alpha;
            }
        }
        t
    }

    fn shape(&self) -> Shape {
        match *self {
            Look::Pure(e) => shape_of(e),
            Look::Blend {
                major,
                minor,
                alpha,
            } => shape_of(major).mix(&shape_of(minor), alpha),
        }
    }
}

/// A person's face shape, in face-width units: what stays when the expression changes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Identity {
    face_w: f32,
    face_h: f32,
    eye_dx: f32,
    eye_y: f32,
    mouth_y: f32,
    brow_gap: f32,
}

impl Identity {
    /// Draws a shape from the ranges every synthetic face's identity comes from.
    fn draw(u: &mut impl FnMut(f32, f32) -> f32) -> Identity {
        let (face_w, face_h) = (u(0.92, 1.08), u(0.92, 1.1));
        let eye_dx = u(0.18, 0.22);
        let (eye_y, mouth_y, brow_gap) = (u(-0.14, -0.1), u(0.28, 0.33), u(0.09, 0.12));
        Identity {
            face_w,
            face_h,
            eye_dx,
            eye_y,
            mouth_y,
            brow_gap,
        }
    }

    /// Identity `id` of the pool fixed by `seed`.
    pub fn of(seed: u64, id: u64) -> Identity {
        let mut rng = SplitMix64::new(seed ^ 0x1D_E471 ^ id.wrapping_mul(0xA24B_AED4_963E_E407));
        Identity::draw(&mut |lo: f32, hi: f32| lo + (hi - lo) * rng.next_f64() as f32)
    }
}

/// Expression geometry, in face-width units (image y grows downwards).
#[derive(Debug, Clone, Copy)]
struct Shape {
    /// Mouth corners' rise relative to the lip centre (positive = up, a smile).
    curve: f32,
    /// Extra rise of the right corner only (contempt).
    curve_right: f32,
    /// Gap between the inner lips.
    open: f32,
    /// Mouth width factor.
    width: f32,
    /// Upper lip raise (disgust).
    upper_lip: f32,
    /// Brow raise (positive = up).
    brow_raise: f32,
    /// Inner brow ends lowered (positive = down, a frown; negative = raised, worry).
    brow_inner: f32,
    /// Eye opening factor.
    eye_open: f32,
}

impl Shape {
    /// `alpha * self + (1 - alpha) * other`.
    fn mix(&self, other: &Shape, alpha: f32) -> Shape {
        let m = |a: f32, b: f32| alpha * a + (1.0 - alpha) * b;
        Shape {
            curve: m(self.curve, other.curve),
            curve_right: m(self.curve_right, other.curve_right),
            open: m(self.open, other.open),
            width: m(self.width, other.width),
            upper_lip: m(self.upper_lip, other.upper_lip),
            brow_raise: m(self.brow_raise, other.brow_raise),
            brow_inner: m(self.brow_inner, other.brow_inner),
            eye_open: m(self.eye_open, other.eye_open),
        }
    }
}

fn shape_of(e: Expression) -> Shape {
    let s = |curve, open, width, upper_lip, brow_raise, brow_inner, eye_open| Shape {
        curve,
        curve_right: 0.0,
        open,
        width,
        upper_lip,
        brow_raise,
        brow_inner,
        eye_open,
    };
    match e {
        Expression::Neutral => s(0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0),
        Expression::Happiness => s(0.075, 0.035, 1.2, 0.0, 0.01, 0.0, 0.8),
        Expression::Sadness => s(-0.065, 0.0, 0.9, 0.0, 0.0, -0.05, 0.8),
        Expression::Surprise => s(0.0, 0.2, 0.8, 0.0, 0.085, 0.0, 1.5),
        Expression::Fear => s(-0.02, 0.09, 1.25, 0.0, 0.055, -0.045, 1.35),
        Expression::Anger => s(-0.02, 0.0, 0.85, 0.0, -0.045, 0.06, 0.75),
        Expression::Disgust => s(-0.035, 0.025, 0.95, 0.045, -0.025, 0.03, 0.6),
        Expression::Contempt => Shape {
            curve_right: 0.06,
            ..s(0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.95)
        },
    }
}

/// Generates face `index` of the stream fixed by `seed`, `size` x `size` pixels, with the given
/// expression.
pub fn generate(seed: u64, index: u64, size: u32, label: Expression) -> SyntheticFace {
    render(seed, index, size, &Look::Pure(label), None)
}

/// Generates face `index` of the stream fixed by `seed` showing `look`, of `identity` when
/// given (else of a shape drawn for this face alone). Everything but the expression and the
/// identity is drawn as [`generate`] draws it, so the same `(seed, index)` differs only there.
pub fn render(
    seed: u64,
    index: u64,
    size: u32,
    look: &Look,
    identity: Option<&Identity>,
) -> SyntheticFace {
    let label = look.label();
    let mut rng = SplitMix64::new(seed ^ index.wrapping_mul(0xD1B5_4A32_D192_ED03));
    let mut u = |lo: f32, hi: f32| lo + (hi - lo) * rng.next_f64() as f32;

    // Expression, jittered.
    let base = look.shape();
    let shape = Shape {
        curve: base.curve + u(-0.015, 0.015),
        curve_right: base.curve_right + u(-0.01, 0.01),
        open: (base.open + u(-0.01, 0.02)).max(0.0),
        width: base.width * u(0.93, 1.07),
        upper_lip: base.upper_lip + u(0.0, 0.01),
        brow_raise: base.brow_raise + u(-0.015, 0.015),
        brow_inner: base.brow_inner + u(-0.012, 0.012),
        eye_open: base.eye_open * u(0.85, 1.15),
    };
    // Identity: drawn even when given, so that pose and colours stay those of the same index.
    let drawn = Identity::draw(&mut u);
    let Identity {
        face_w,
        face_h,
        eye_dx,
        eye_y,
        mouth_y,
        brow_gap,
    } = identity.copied().unwrap_or(drawn);
    // Pose, scale, position (in pixels).
    let angle = u(-0.26, 0.26); // about +-15 degrees
    let yaw = u(0.85, 1.0);
    let scale = size as f32 * u(0.5, 0.66);
    let (cx, cy) = (size as f32 * u(0.44, 0.56), size as f32 * u(0.46, 0.56));

    let unit = face_points(&shape, face_w, face_h, eye_dx, eye_y, mouth_y, brow_gap);
    let (sin, cos) = angle.sin_cos();
    let place = |[x, y]: [f32; 2]| {
        let (x, y) = (x * yaw * scale, y * scale);
        [cx + x * cos - y * sin, cy + x * sin + y * cos]
    };
    let landmarks = unit.map(place);
    // Forehead: an arc over the brows closes the face outline.
    let forehead: Vec<[f32; 2]> = (1..12)
        .map(|i| {
            let t = std::f32::consts::PI * i as f32 / 12.0;
            place([-0.5 * face_w * t.cos(), -0.05 - 0.5 * face_h * t.sin()])
        })
        .collect();

    // Colours and light.
    let skin = [u(120.0, 235.0), u(80.0, 190.0), u(60.0, 160.0)];
    let background = [u(0.0, 255.0), u(0.0, 255.0), u(0.0, 255.0)];
    let lip = [skin[0] * 0.75, skin[1] * 0.45, skin[2] * 0.5];
    let brow = [u(20.0, 90.0), u(15.0, 70.0), u(10.0, 50.0)];
    let (light_dx, light_dy, light) = (u(-0.4, 0.4), u(-0.4, 0.4), u(0.7, 1.2));
    let noise_sd = u(0.0, 8.0);

    let mut canvas = Canvas::new(size, background);
    let mut outline: Vec<[f32; 2]> = landmarks[0..17].to_vec();
    outline.extend(forehead.iter().rev());
    canvas.fill_polygon(&outline, skin);
    for (from, to) in [(17, 22), (22, 27)] {
        canvas.polyline(&landmarks[from..to], scale * 0.035, brow);
    }
    canvas.polyline(
        &landmarks[27..31],
        scale * 0.015,
        [skin[0] * 0.7, skin[1] * 0.6, skin[2] * 0.6],
    );
    canvas.polyline(
        &landmarks[31..36],
        scale * 0.015,
        [skin[0] * 0.6, skin[1] * 0.5, skin[2] * 0.5],
    );
    for eye in [&landmarks[36..42], &landmarks[42..48]] {
        canvas.fill_polygon(eye, [245.0, 245.0, 240.0]);
        let c = centre(eye);
        let r = (eye[4][1] - eye[2][1]).hypot(eye[4][0] - eye[2][0]) * 0.45;
        canvas.disc(c, r.min(scale * 0.035), [40.0, 30.0, 25.0]);
    }
    canvas.fill_polygon(&landmarks[48..60], lip);
    if shape.open > 0.015 {
        canvas.fill_polygon(&landmarks[60..68], [50.0, 15.0, 20.0]);
    }

    let mut noise = SplitMix64::new(seed ^ index ^ 0x5EED);
    let image = canvas.finish(size, |x, y, v| {
        let shade = light * (1.0 + light_dx * (x - 0.5) + light_dy * (y - 0.5));
        // Approximately normal noise: sum of 4 uniforms, scaled to the wanted sd.
        let n: f32 = (0..4).map(|_| noise.next_f64() as f32).sum::<f32>() - 2.0;
        (v * shade + n * noise_sd * 1.732).clamp(0.0, 255.0)
    });
    SyntheticFace {
        image,
        landmarks,
        label,
    }
}

/// Faces `0, 1, 2, ...` of the stream fixed by `seed`, labels cycling through the first `classes`
/// expressions in canonical order (a balanced set).
pub fn stream(seed: u64, size: u32, classes: usize) -> impl Iterator<Item = SyntheticFace> {
    (0u64..).map(move |i| {
        generate(
            seed,
            i,
            size,
            Expression::ALL[(i % classes as u64) as usize],
        )
    })
}

/// The expression pairs people confuse that blends are made of (LA-Net's motivating ambiguities,
/// and happiness/surprise, both with raised features).
pub const BLEND_PAIRS: [(Expression, Expression); 4] = [
    (Expression::Fear, Expression::Surprise),
    (Expression::Anger, Expression::Disgust),
    (Expression::Sadness, Expression::Neutral),
    (Expression::Happiness, Expression::Surprise),
];

/// The weights of a blend's major class.
pub const BLEND_ALPHAS: [f32; 3] = [0.55, 0.70, 0.85];

/// What face `index` of a blend stream over 7 classes shows. Classes cycle as in [`stream`];
/// every second run of 7 faces (so half the faces, every class equally) is a blend with its
/// class as the major one, the partner taken from [`BLEND_PAIRS`] (surprise, in two pairs,
/// alternates between fear and happiness) and `alpha` drawn from [`BLEND_ALPHAS`].
pub fn blend_look(seed: u64, index: u64) -> Look {
    let major = Expression::ALL[(index % 7) as usize];
    let cycle = index / 7;
    if cycle.is_multiple_of(2) {
        return Look::Pure(major);
    }
    let partners: Vec<Expression> = BLEND_PAIRS
        .iter()
        .filter_map(|&(a, b)| {
            (a == major)
                .then_some(b)
                .or_else(|| (b == major).then_some(a))
        })
        .collect();
    let minor = partners[(cycle / 2) as usize % partners.len()];
    let mut rng = SplitMix64::new(seed ^ 0xB1E4D ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let alpha = BLEND_ALPHAS[rng.below(BLEND_ALPHAS.len() as u64) as usize];
    Look::Blend {
        major,
        minor,
        alpha,
    }
}

/// The label an annotator gives face `index` of `look`: a draw from its true distribution (the
/// major class with probability `alpha`), so blends carry instance-dependent noise.
pub fn annotated_label(seed: u64, index: u64, look: &Look) -> Expression {
    match *look {
        Look::Pure(e) => e,
        Look::Blend {
            major,
            minor,
            alpha,
        } => {
            let mut rng =
                SplitMix64::new(seed ^ 0xA2_2074 ^ index.wrapping_mul(0xD6E8_FEB8_6659_FD93));
            if rng.next_f64() < f64::from(alpha) {
                major
            } else {
                minor
            }
        }
    }
}

/// Faces `0, 1, 2, ...` of the blend set fixed by `seed`: [`blend_look`]'s faces with their looks.
pub fn blend_stream(seed: u64, size: u32) -> impl Iterator<Item = (Look, SyntheticFace)> {
    (0u64..).map(move |i| {
        let look = blend_look(seed, i);
        (look, render(seed, i, size, &look, None))
    })
}

/// Faces `0, 1, 2, ...` of the identity stream fixed by `seed`: face `i` shows identity
/// `i % identities` of the pool fixed by `seed`, with an expression drawn uniformly from the 7
/// classes (a nuisance here), and is labelled by its identity.
pub fn identity_stream(
    seed: u64,
    pool: u64,
    size: u32,
    identities: u64,
) -> impl Iterator<Item = (u64, SyntheticFace)> {
    let people: Vec<Identity> = (0..identities).map(|id| Identity::of(pool, id)).collect();
    (0u64..).map(move |i| {
        let id = i % identities;
        let mut rng = SplitMix64::new(seed ^ 0x005E_ED1D ^ i.wrapping_mul(0xBF58_476D_1CE4_E5B9));
        let look = Look::Pure(Expression::ALL[rng.below(7) as usize]);
        (id, render(seed, i, size, &look, Some(&people[id as usize])))
    })
}

/// The 68 points in the unit face frame (face width ~1, centred between the eyes and the mouth).
fn face_points(
    s: &Shape,
    fw: f32,
    fh: f32,
    eye_dx: f32,
    eye_y: f32,
    mouth_y: f32,
    brow_gap: f32,
) -> [[f32; 2]; 68] {
    let mut p = [[0.0f32; 2]; 68];
    // Jaw 0-16: half-ellipse from the left temple under the chin to the right.
    for (i, q) in p[0..17].iter_mut().enumerate() {
        let phi = std::f32::consts::PI * (1.0 - i as f32 / 16.0);
        *q = [0.5 * fw * phi.cos(), -0.05 + 0.62 * fh * phi.sin()];
    }
    // Brows 17-21 (image left) and 22-26, outer to inner then inner to outer.
    let brow_y = eye_y - brow_gap - s.brow_raise;
    for i in 0..5 {
        let t = i as f32 / 4.0; // 0 outer .. 1 inner
        let x = eye_dx + 0.1 - 0.2 * t;
        let arch = -0.03 * (std::f32::consts::PI * t).sin();
        let y = brow_y + arch + s.brow_inner * t;
        p[17 + i] = [-x, y];
        p[26 - i] = [x, y];
    }
    // Nose bridge 27-30, nostrils 31-35.
    for i in 0..4 {
        p[27 + i] = [0.0, eye_y + 0.02 + 0.08 * i as f32];
    }
    for i in 0..5 {
        let x = -0.07 + 0.035 * i as f32;
        p[31 + i] = [x, eye_y + 0.28 + 0.015 * (1.0 - (x / 0.07).abs())];
    }
    // Eyes 36-41 and 42-47: outer corner, two upper, inner corner, two lower (dlib order).
    let (ew, eh) = (0.15, 0.055 * s.eye_open);
    for (first, sign) in [(36usize, -1.0f32), (42, 1.0)] {
        let c = sign * eye_dx;
        let (left, right) = (c - ew / 2.0, c + ew / 2.0);
        let pts = [
            [left, eye_y],
            [c - ew / 6.0, eye_y - eh / 2.0],
            [c + ew / 6.0, eye_y - eh / 2.0],
            [right, eye_y],
            [c + ew / 6.0, eye_y + eh / 2.0],
            [c - ew / 6.0, eye_y + eh / 2.0],
        ];
        p[first..first + 6].copy_from_slice(&pts);
    }
    // Mouth: outer 48-59 (left corner, upper lip to the right corner, lower lip back), inner 60-67.
    let half = 0.17 * s.width;
    let corner_y = |right: bool| mouth_y - s.curve - if right { s.curve_right } else { 0.0 };
    // A lip curve through the corners with its centre `mid` below/above them.
    let lip = |t: f32, mid: f32| {
        let x = -half + 2.0 * half * t;
        let bend = 1.0 - (2.0 * t - 1.0).powi(2); // 0 at the corners, 1 at the centre
        let y = corner_y(false) * (1.0 - t) + corner_y(true) * t;
        [
            x,
            y + (mid - (corner_y(false) + corner_y(true)) / 2.0) * bend,
        ]
    };
    let (upper, lower) = (
        mouth_y - 0.035 - s.open / 2.0 - s.upper_lip,
        mouth_y + 0.04 + s.open / 2.0,
    );
    let (upper_in, lower_in) = (
        mouth_y - s.open / 2.0 - s.upper_lip * 0.8,
        mouth_y + s.open / 2.0,
    );
    p[48] = lip(0.0, 0.0);
    for i in 0..5 {
        p[49 + i] = lip((i + 1) as f32 / 6.0, upper);
    }
    p[54] = lip(1.0, 0.0);
    for i in 0..5 {
        p[55 + i] = lip((5 - i) as f32 / 6.0, lower);
    }
    p[60] = lip(0.08, 0.0);
    for i in 0..3 {
        p[61 + i] = lip(0.08 + 0.84 * (i + 1) as f32 / 4.0, upper_in);
    }
    p[64] = lip(0.92, 0.0);
    for i in 0..3 {
        p[65 + i] = lip(0.08 + 0.84 * (3 - i) as f32 / 4.0, lower_in);
    }
    p
}

fn centre(points: &[[f32; 2]]) -> [f32; 2] {
    let n = points.len() as f32;
    let (x, y) = points
        .iter()
        .fold((0.0, 0.0), |(x, y), p| (x + p[0], y + p[1]));
    [x / n, y / n]
}

/// A float RGB canvas with the few drawing operations the faces need.
struct Canvas {
    size: u32,
    pixels: Vec<[f32; 3]>,
}

impl Canvas {
    fn new(size: u32, background: [f32; 3]) -> Self {
        Canvas {
            size,
            pixels: vec![background; (size * size) as usize],
        }
    }

    /// Paints every pixel whose centre passes `inside`, within a bounding box.
    fn paint(&mut self, bbox: [f32; 4], colour: [f32; 3], inside: impl Fn(f32, f32) -> bool) {
        let s = self.size as i64;
        let clamp = |v: f32| (v.floor() as i64).clamp(0, s - 1) as u32;
        for y in clamp(bbox[1])..=clamp(bbox[3]) {
            for x in clamp(bbox[0])..=clamp(bbox[2]) {
                if inside(x as f32, y as f32) {
                    self.pixels[(y * self.size + x) as usize] = colour;
                }
            }
        }
    }

    fn fill_polygon(&mut self, poly: &[[f32; 2]], colour: [f32; 3]) {
        let bbox = bounds(poly, 0.0);
        self.paint(bbox, colour, |x, y| {
            // Even-odd rule.
            let mut inside = false;
            let mut j = poly.len() - 1;
            for i in 0..poly.len() {
                let (a, b) = (poly[i], poly[j]);
                if (a[1] > y) != (b[1] > y) && x < (b[0] - a[0]) * (y - a[1]) / (b[1] - a[1]) + a[0]
                {
                    inside = !inside;
                }
                j = i;
            }
            inside
        });
    }

    fn polyline(&mut self, points: &[[f32; 2]], width: f32, colour: [f32; 3]) {
        let r = (width / 2.0).max(0.6);
        for seg in points.windows(2) {
            let (a, b) = (seg[0], seg[1]);
            self.paint(bounds(seg, r), colour, |x, y| {
                distance_to_segment([x, y], a, b) <= r
            });
        }
    }

    fn disc(&mut self, c: [f32; 2], r: f32, colour: [f32; 3]) {
        self.paint([c[0] - r, c[1] - r, c[0] + r, c[1] + r], colour, |x, y| {
            (x - c[0]).hypot(y - c[1]) <= r
        });
    }

    /// Applies `post(x / size, y / size, value)` to every channel value and quantises.
    fn finish(self, size: u32, mut post: impl FnMut(f32, f32, f32) -> f32) -> RgbImage {
        let s = size as f32;
        RgbImage::from_fn(size, size, |x, y| {
            let v = self.pixels[(y * size + x) as usize];
            let (fx, fy) = (x as f32 / s, y as f32 / s);
            Rgb(v.map(|c| post(fx, fy, c).round() as u8))
        })
    }
}

fn bounds(points: &[[f32; 2]], pad: f32) -> [f32; 4] {
    points
        .iter()
        .fold([f32::MAX, f32::MAX, f32::MIN, f32::MIN], |b, p| {
            [
                b[0].min(p[0] - pad),
                b[1].min(p[1] - pad),
                b[2].max(p[0] + pad),
                b[3].max(p[1] + pad),
            ]
        })
}

fn distance_to_segment(p: [f32; 2], a: [f32; 2], b: [f32; 2]) -> f32 {
    let (dx, dy) = (b[0] - a[0], b[1] - a[1]);
    let len2 = dx * dx + dy * dy;
    let t = if len2 > 0.0 {
        (((p[0] - a[0]) * dx + (p[1] - a[1]) * dy) / len2).clamp(0.0, 1.0)
    } else {
        0.0
    };
    (p[0] - a[0] - t * dx).hypot(p[1] - a[1] - t * dy)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mean_y(p: &[[f32; 2]]) -> f32 {
        p.iter().map(|q| q[1]).sum::<f32>() / p.len() as f32
    }

    #[test]
    fn same_seed_and_index_give_the_same_face() {
        let a = generate(1, 5, 64, Expression::Happiness);
        let b = generate(1, 5, 64, Expression::Happiness);
        assert_eq!(a.image, b.image);
        assert_eq!(a.landmarks, b.landmarks);
        assert_ne!(generate(1, 6, 64, Expression::Happiness).image, a.image);
    }

    #[test]
    fn landmarks_are_in_the_image_and_in_dlib_order() {
        for (i, e) in Expression::ALL.iter().enumerate() {
            let f = generate(3, i as u64, 112, *e);
            for [x, y] in f.landmarks {
                assert!(
                    (0.0..112.0).contains(&x) && (0.0..112.0).contains(&y),
                    "{e}: ({x}, {y})"
                );
            }
            // Eyes above the nose tip above the mouth, brows above the eyes.
            let (brows, eyes) = (mean_y(&f.landmarks[17..27]), mean_y(&f.landmarks[36..48]));
            let (nose, mouth) = (f.landmarks[30][1], mean_y(&f.landmarks[48..68]));
            assert!(brows < eyes && eyes < nose && nose < mouth, "{e}");
        }
    }

    #[test]
    fn the_expression_is_in_the_geometry() {
        // Mouth corners relative to the lip centre, averaged over faces: up for happiness,
        // down for sadness; the mouth is open for surprise and closed for neutral.
        let stat = |e: Expression, f: &dyn Fn(&SyntheticFace) -> f32| {
            (0..20).map(|i| f(&generate(9, i, 112, e))).sum::<f32>() / 20.0
        };
        let corners_up = |f: &SyntheticFace| {
            let l = &f.landmarks;
            let scale = (l[45][0] - l[36][0]).hypot(l[45][1] - l[36][1]);
            ((l[51][1] + l[57][1]) / 2.0 - (l[48][1] + l[54][1]) / 2.0) / scale
        };
        let opening = |f: &SyntheticFace| {
            let l = &f.landmarks;
            let scale = (l[45][0] - l[36][0]).hypot(l[45][1] - l[36][1]);
            (l[66][0] - l[62][0]).hypot(l[66][1] - l[62][1]) / scale
        };
        assert!(
            stat(Expression::Happiness, &corners_up)
                > stat(Expression::Neutral, &corners_up) + 0.05
        );
        assert!(
            stat(Expression::Sadness, &corners_up) < stat(Expression::Neutral, &corners_up) - 0.05
        );
        assert!(stat(Expression::Surprise, &opening) > 0.3);
        assert!(stat(Expression::Neutral, &opening) < 0.1);
    }

    #[test]
    fn drawing_follows_the_landmarks() {
        // The pixel at the centre of an open mouth is the dark mouth colour (before light/noise
        // it is (50, 15, 20)); an eye's centre is dark (the iris).
        let f = generate(4, 0, 112, Expression::Surprise);
        let c = centre(&f.landmarks[60..68]);
        let px = f.image.get_pixel(c[0] as u32, c[1] as u32).0;
        assert!(px[0] < 110 && px[1] < 70, "mouth centre {px:?}");
        let e = centre(&f.landmarks[36..42]);
        let px = f
            .image
            .get_pixel(e[0].round() as u32, e[1].round() as u32)
            .0;
        assert!(px.iter().all(|&v| v < 110), "iris {px:?}");
    }

    #[test]
    fn blend_truth_by_hand() {
        let look = Look::Blend {
            major: Expression::Fear,
            minor: Expression::Surprise,
            alpha: 0.7,
        };
        // Fear is index 2, surprise 5.
        let t = look.truth(7);
        assert_eq!(t, vec![0.0, 0.0, 0.7, 0.0, 0.0, 1.0 - 0.7, 0.0]);
        assert_eq!(look.label(), Expression::Fear);
        assert_eq!(
            Look::Pure(Expression::Neutral).truth(7),
            vec![0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]
        );
        // The geometry is the weighted mean of the two classes' parameters: fear opens the
        // mouth 0.09, surprise 0.2, so 0.7 * 0.09 + 0.3 * 0.2 = 0.123.
        assert!((look.shape().open - 0.123).abs() < 1e-6);
    }

    #[test]
    fn blend_set_is_half_blends_of_the_named_pairs_balanced_over_classes() {
        let looks: Vec<Look> = (0..1400).map(|i| blend_look(4, i)).collect();
        let blends: Vec<&Look> = looks
            .iter()
            .filter(|l| matches!(l, Look::Blend { .. }))
            .collect();
        assert_eq!(blends.len(), 700);
        for e in &Expression::ALL[..7] {
            assert_eq!(looks.iter().filter(|l| l.label() == *e).count(), 200);
        }
        for l in &blends {
            let Look::Blend {
                major,
                minor,
                alpha,
            } = **l
            else {
                unreachable!()
            };
            assert!(BLEND_PAIRS
                .iter()
                .any(|&(a, b)| (a, b) == (major, minor) || (b, a) == (major, minor)));
            assert!(BLEND_ALPHAS.contains(&alpha));
        }
        // Annotators follow the truth: the minority class in about 1 - alpha of the blends.
        let minority = (0..1400u64)
            .filter(|&i| annotated_label(4, i, &looks[i as usize]) != looks[i as usize].label())
            .count() as f64
            / 700.0;
        let expected = 1.0 - (0.55 + 0.70 + 0.85) / 3.0;
        assert!((minority - expected).abs() < 0.05, "{minority}");
    }

    #[test]
    fn identities_keep_their_shape_across_faces() {
        let faces: Vec<(u64, SyntheticFace)> = identity_stream(1, 2, 96, 5).take(10).collect();
        // Faces 0 and 5 show identity 0: the same eye spacing relative to the face width, up
        // to the expression's small effect on the points used (none: eye corners).
        let spacing = |f: &SyntheticFace| {
            let l = &f.landmarks;
            (l[42][0] - l[39][0]).hypot(l[42][1] - l[39][1])
                / (l[16][0] - l[0][0]).hypot(l[16][1] - l[0][1])
        };
        assert_eq!((faces[0].0, faces[5].0), (0, 0));
        assert!((spacing(&faces[0].1) - spacing(&faces[5].1)).abs() < 0.01);
        assert_eq!(Identity::of(2, 3), Identity::of(2, 3));
        assert_ne!(Identity::of(2, 3), Identity::of(2, 4));
        // A given identity changes only the shape: the same index without it draws the same
        // colours (the background corner pixel).
        let own = render(1, 0, 96, &Look::Pure(Expression::Anger), None);
        let given = render(
            1,
            0,
            96,
            &Look::Pure(Expression::Anger),
            Some(&Identity::of(2, 0)),
        );
        assert_eq!(own.image.get_pixel(0, 0), given.image.get_pixel(0, 0));
        assert_ne!(own.landmarks, given.landmarks);
    }

    #[test]
    fn runtime_alignment_puts_the_eyes_on_the_template() {
        // Training aligns synthetic faces with the runtime's own function and their known
        // landmarks; the eye centres must land near the card's template points.
        let alignment = edge_fer::align::Alignment::builtin();
        for (i, e) in Expression::ALL[..7].iter().enumerate() {
            let f = generate(5, i as u64, 112, *e);
            let landmarks = edge_fer::Landmarks(f.landmarks);
            let mut crop = RgbImage::new(64, 64);
            let to_crop =
                edge_fer::align::align(&f.image, &landmarks, &alignment, &mut crop).unwrap();
            let template = alignment.template_px(64, 64);
            let points = edge_fer::align::five_points(&landmarks);
            for k in 0..2 {
                let [x, y] = to_crop.apply(points[k]);
                let d = (x - template[k][0]).hypot(y - template[k][1]);
                assert!(
                    d < 4.0,
                    "{e}: eye {k} at ({x}, {y}), template {:?}",
                    template[k]
                );
            }
        }
    }
}
