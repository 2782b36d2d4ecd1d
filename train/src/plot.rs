//! A run's pictures, drawn with plotters into PNG files: the confusion matrix (cells shaded by
//! the row-normalised rate, each with its count) and the learning curve (every loss term, and the
//! training and clean test accuracy, per epoch). Text uses DejaVu Sans Mono, compiled in
//! (assets/README.md), so drawing needs no font installed.

use std::path::Path;
use std::sync::Once;

use anyhow::Context;
use image::RgbImage;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::FontStyle;

use crate::metrics::EpochMetrics;

const FONT: &str = "dejavu-sans-mono";
/// DejaVu Sans Mono (train/assets/README.md has its provenance, licence and sha256).
const FONT_BYTES: &[u8] = include_bytes!("../assets/DejaVuSansMono.ttf");

/// Registers the compiled-in font once per process.
fn font() -> &'static str {
    static REGISTER: Once = Once::new();
    REGISTER.call_once(|| {
        plotters::style::register_font(FONT, FontStyle::Normal, FONT_BYTES)
            .unwrap_or_else(|_| panic!("the compiled-in font is a valid TrueType file"));
    });
    FONT
}

/// Draws on a white `width` x `height` RGB canvas with `draw`, then writes it as a PNG at `path`.
fn png(
    path: &Path,
    (width, height): (u32, u32),
    draw: impl FnOnce(&DrawingArea<BitMapBackend, Shift>) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut pixels = vec![255u8; (width * height * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, (width, height)).into_drawing_area();
        draw(&root)?;
        root.present()
            .map_err(|e| anyhow::anyhow!("drawing: {e}"))?;
    }
    RgbImage::from_raw(width, height, pixels)
        .expect("the buffer is width x height RGB")
        .save(path)
        .with_context(|| format!("writing {}", path.display()))
}

/// Side of one confusion-matrix cell, in pixels.
const CELL: u32 = 60;
/// Room for the class names left of and above the cells.
const MARGIN: u32 = 110;

/// The shade of a cell with row-normalised rate `rate` (white at 0, dark blue at 1).
pub fn cell_colour(rate: f64) -> RGBColor {
    let shade = |full: f64| (255.0 - rate * (255.0 - full)).round() as u8;
    RGBColor(shade(20.0), shade(60.0), shade(140.0))
}

/// Draws `confusion[true][predicted]` into `path`: rows are the true classes (named on the left),
/// columns the predicted ones (named on top).
///
/// # Errors
/// If the PNG cannot be written, naming the file.
pub fn confusion_png(confusion: &[Vec<usize>], names: &[&str], path: &Path) -> anyhow::Result<()> {
    let k = confusion.len() as u32;
    let side = MARGIN + k * CELL + 10;
    png(path, (side, side + 20), |root| {
        let font = font();
        let err = |e| anyhow::anyhow!("drawing the confusion matrix: {e}");
        let label = TextStyle::from((font, 15).into_font()).color(&BLACK);
        root.draw(&Text::new(
            "true (rows) / predicted (columns)",
            (10, 4),
            label.clone(),
        ))
        .map_err(err)?;
        let top = MARGIN + 20;
        for (i, name) in names.iter().enumerate().take(k as usize) {
            let at = i as u32 * CELL;
            // Column names, turned to read upwards so long names fit the cell's width.
            let up = label.transform(FontTransform::Rotate270);
            root.draw(&Text::new(
                name.to_string(),
                ((MARGIN + at + CELL / 2 - 8) as i32, (top - 6) as i32),
                up,
            ))
            .map_err(err)?;
            root.draw(&Text::new(
                name.to_string(),
                (6, (top + at + CELL / 2 - 8) as i32),
                label.clone(),
            ))
            .map_err(err)?;
        }
        for (t, row) in confusion.iter().enumerate() {
            let total = row.iter().sum::<usize>().max(1) as f64;
            for (p, &n) in row.iter().enumerate() {
                let rate = n as f64 / total;
                let (x0, y0) = (
                    (MARGIN + p as u32 * CELL) as i32,
                    (top + t as u32 * CELL) as i32,
                );
                let (x1, y1) = (x0 + CELL as i32 - 1, y0 + CELL as i32 - 1);
                root.draw(&Rectangle::new(
                    [(x0, y0), (x1, y1)],
                    cell_colour(rate).filled(),
                ))
                .map_err(err)?;
                root.draw(&Rectangle::new(
                    [(x0, y0), (x1, y1)],
                    RGBColor(200, 200, 200),
                ))
                .map_err(err)?;
                let colour = if rate > 0.5 { WHITE } else { BLACK };
                let count = n.to_string();
                let style = TextStyle::from((font, 16).into_font()).color(&colour).pos(
                    plotters::style::text_anchor::Pos::new(
                        plotters::style::text_anchor::HPos::Center,
                        plotters::style::text_anchor::VPos::Center,
                    ),
                );
                root.draw(&Text::new(
                    count,
                    (x0 + CELL as i32 / 2, y0 + CELL as i32 / 2),
                    style,
                ))
                .map_err(err)?;
            }
        }
        Ok(())
    })
}

/// A line of the learning curve: its name, colour and (epoch, value) points.
type Series = (&'static str, RGBColor, Vec<(i32, f64)>);

/// The series of the learning curve's loss panel: each term the run trained (all zero ones are
/// left out), with its colour.
fn loss_series(epochs: &[EpochMetrics]) -> Vec<Series> {
    type Term = fn(&EpochMetrics) -> f32;
    let terms: [(&str, RGBColor, Term); 6] = [
        ("total", BLACK, |e| e.loss),
        ("ce", RGBColor(31, 119, 180), |e| e.ce),
        ("landmark", RGBColor(255, 127, 14), |e| e.landmark),
        ("kl", RGBColor(44, 160, 44), |e| e.kl),
        ("contrastive", RGBColor(214, 39, 40), |e| e.contrastive),
        ("scl", RGBColor(148, 103, 189), |e| e.scl),
    ];
    terms
        .into_iter()
        .filter(|(_, _, f)| epochs.iter().any(|e| f(e) != 0.0))
        .map(|(name, colour, f)| {
            let points = epochs
                .iter()
                .map(|e| (e.epoch as i32, f64::from(f(e))))
                .collect();
            (name, colour, points)
        })
        .collect()
}

/// The learning curve's accuracy colours: training (against the labels trained on) and clean
/// test.
pub const TRAIN_COLOUR: RGBColor = RGBColor(227, 119, 194);
/// See [`TRAIN_COLOUR`].
pub const TEST_COLOUR: RGBColor = RGBColor(23, 190, 207);
/// See [`TRAIN_COLOUR`].
pub const VAL_COLOUR: RGBColor = RGBColor(188, 189, 34);

/// Draws the learning curve of `epochs` into `path`: the loss terms above, the training and clean
/// test accuracy below, one point per epoch.
///
/// # Errors
/// If the PNG cannot be written, naming the file.
pub fn learning_curve_png(epochs: &[EpochMetrics], path: &Path) -> anyhow::Result<()> {
    png(path, (900, 700), |root| {
        let last = epochs.last().map_or(1, |e| e.epoch).max(1) as i32;
        let (upper, lower) = root.split_vertically(390);
        let losses = loss_series(epochs);
        let top = losses
            .iter()
            .flat_map(|(_, _, p)| p.iter().map(|&(_, y)| y))
            .filter(|y| y.is_finite())
            .fold(0.0f64, f64::max)
            .max(1e-6)
            * 1.05;
        panel(
            &upper,
            "loss per epoch",
            last,
            top,
            losses,
            SeriesLabelPosition::UpperRight,
        )?;
        let accuracy = |f: fn(&EpochMetrics) -> f64| -> Vec<(i32, f64)> {
            epochs.iter().map(|e| (e.epoch as i32, f(e))).collect()
        };
        let mut accuracies = vec![
            (
                "train (labels trained on)",
                TRAIN_COLOUR,
                accuracy(|e| e.train_accuracy),
            ),
            ("clean test", TEST_COLOUR, accuracy(|e| e.test_accuracy)),
        ];
        if epochs.iter().any(|e| e.val_accuracy.is_some()) {
            accuracies.push((
                "validation (noisy labels)",
                VAL_COLOUR,
                accuracy(|e| e.val_accuracy.unwrap_or(0.0)),
            ));
        }
        panel(
            &lower,
            "accuracy per epoch",
            last,
            1.0,
            accuracies,
            SeriesLabelPosition::LowerRight,
        )
    })
}

/// One panel of the learning curve: `series` over epochs 1..`last` and values 0..`top`, with a
/// legend at `legend` (in room left for it right of the last epoch).
fn panel(
    area: &DrawingArea<BitMapBackend<'_>, Shift>,
    caption: &str,
    last: i32,
    top: f64,
    series: Vec<Series>,
    legend: SeriesLabelPosition,
) -> anyhow::Result<()> {
    let font = font();
    let err = |e| anyhow::anyhow!("drawing the learning curve: {e}");
    let mut chart = ChartBuilder::on(area)
        .caption(caption, (font, 20))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(50)
        .build_cartesian_2d(1..last + (last / 3).max(1), 0.0..top)
        .map_err(err)?;
    chart
        .configure_mesh()
        .label_style((font, 13))
        .light_line_style(WHITE)
        .x_desc("epoch")
        .draw()
        .map_err(err)?;
    for (name, colour, points) in series {
        chart
            .draw_series(LineSeries::new(points, colour.stroke_width(2)))
            .map_err(err)?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour));
    }
    chart
        .configure_series_labels()
        .position(legend)
        .label_font((font, 13))
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pixel(img: &RgbImage, x: u32, y: u32) -> RGBColor {
        let p = img.get_pixel(x, y).0;
        RGBColor(p[0], p[1], p[2])
    }

    #[test]
    fn the_compiled_in_font_is_the_one_its_readme_names() {
        assert_eq!(
            edge_fer::checksum::sha256_hex(FONT_BYTES),
            "0f5db4f1749979d961019838b160bec74abdf7f9eca69553fe1aa856bbff49a4"
        );
    }

    #[test]
    fn a_perfect_diagonal_is_dark_on_the_diagonal_and_white_elsewhere() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("confusion.png");
        confusion_png(&[vec![5, 0], vec![0, 9]], &["anger", "disgust"], &path).unwrap();
        let img = image::open(&path).unwrap().to_rgb8();
        assert_eq!(
            img.dimensions(),
            (MARGIN + 2 * CELL + 10, MARGIN + 2 * CELL + 30)
        );
        // A pixel near each cell's corner (inside the border, away from the count).
        let top = MARGIN + 20;
        let at = |t: u32, p: u32| pixel(&img, MARGIN + p * CELL + 4, top + t * CELL + 4);
        assert_eq!(at(0, 0), cell_colour(1.0));
        assert_eq!(at(1, 1), cell_colour(1.0));
        assert_eq!(at(0, 1), cell_colour(0.0));
        assert_eq!(cell_colour(1.0), RGBColor(20, 60, 140));
        // The count is drawn in white at the centre of its dark cell.
        let centre = (0..20)
            .flat_map(|dx| (0..20).map(move |dy| (dx, dy)))
            .filter(|&(dx, dy)| {
                let p = pixel(&img, MARGIN + CELL / 2 - 10 + dx, top + CELL / 2 - 10 + dy);
                p.0 > 200 && p.1 > 200 && p.2 > 200
            })
            .count();
        assert!(centre > 4, "{centre}");
        // The class names are written left of the rows.
        let ink = (0..MARGIN - 10)
            .flat_map(|x| (top..top + CELL).map(move |y| (x, y)))
            .filter(|&(x, y)| pixel(&img, x, y).0 < 100)
            .count();
        assert!(ink > 20, "{ink}");
    }

    #[test]
    fn the_learning_curve_draws_the_terms_the_run_trained_and_both_accuracies() {
        let epochs: Vec<EpochMetrics> = (1..=4)
            .map(|e| EpochMetrics {
                epoch: e,
                loss: 2.0 / e as f32,
                ce: 1.5 / e as f32,
                landmark: 0.0,
                kl: 0.0,
                contrastive: 0.0,
                scl: 0.5 / e as f32,
                relabelled: 0,
                relabelled_right: 0,
                wrong_labels: 0,
                train_accuracy: 0.2 * e as f64,
                test_accuracy: 0.15 * e as f64,
                val_accuracy: Some(0.1 * e as f64),
                lr: 1e-3,
                ..EpochMetrics::default()
            })
            .collect();
        let names: Vec<&str> = loss_series(&epochs).iter().map(|s| s.0).collect();
        assert_eq!(names, ["total", "ce", "scl"]);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("curve.png");
        learning_curve_png(&epochs, &path).unwrap();
        let img = image::open(&path).unwrap().to_rgb8();
        assert_eq!(img.dimensions(), (900, 700));
        let count = |c: RGBColor| img.pixels().filter(|p| p.0 == [c.0, c.1, c.2]).count();
        // Both accuracy lines are drawn (in the lower panel), each a few hundred pixels long.
        for colour in [TRAIN_COLOUR, TEST_COLOUR, VAL_COLOUR] {
            let lower = img
                .enumerate_pixels()
                .filter(|(_, y, p)| *y > 390 && p.0 == [colour.0, colour.1, colour.2])
                .count();
            assert!(lower > 100, "{colour:?}: {lower}");
        }
        assert!(count(RGBColor(148, 103, 189)) > 100, "the scl line");
        assert_eq!(count(RGBColor(44, 160, 44)), 0, "no kl line: it was 0");
    }
}
