//! A confusion-matrix picture (PNG) without a plotting library: cells shaded by the row-normalised
//! rate (white = 0, dark blue = 1), each with its count, rows and columns labelled by two-letter
//! class abbreviations in a tiny built-in 3x5 pixel font.

use image::{Rgb, RgbImage};

/// 3x5 glyphs, one row per `u8` (low 3 bits, leftmost pixel = bit 2).
fn glyph(c: char) -> [u8; 5] {
    match c {
        '0' => [7, 5, 5, 5, 7],
        '1' => [2, 6, 2, 2, 7],
        '2' => [7, 1, 7, 4, 7],
        '3' => [7, 1, 3, 1, 7],
        '4' => [5, 5, 7, 1, 1],
        '5' => [7, 4, 7, 1, 7],
        '6' => [7, 4, 7, 5, 7],
        '7' => [7, 1, 1, 2, 2],
        '8' => [7, 5, 7, 5, 7],
        '9' => [7, 5, 7, 1, 7],
        'a' => [2, 5, 7, 5, 5],
        'c' => [7, 4, 4, 4, 7],
        'd' => [6, 5, 5, 5, 6],
        'e' => [7, 4, 6, 4, 7],
        'f' => [7, 4, 6, 4, 4],
        'h' => [5, 5, 7, 5, 5],
        'i' => [7, 2, 2, 2, 7],
        'n' => [6, 5, 5, 5, 5],
        'o' => [7, 5, 5, 5, 7],
        's' => [7, 4, 7, 1, 7],
        'u' => [5, 5, 5, 5, 7],
        _ => [0; 5],
    }
}

const SCALE: u32 = 2;
const CELL: u32 = 36;

fn text(img: &mut RgbImage, x: u32, y: u32, s: &str, colour: Rgb<u8>) {
    for (i, c) in s.chars().enumerate() {
        let rows = glyph(c.to_ascii_lowercase());
        for (r, bits) in rows.iter().enumerate() {
            for b in 0..3u32 {
                if bits & (4 >> b) != 0 {
                    for dy in 0..SCALE {
                        for dx in 0..SCALE {
                            let px = x + (i as u32 * 4 + b) * SCALE + dx;
                            let py = y + r as u32 * SCALE + dy;
                            if px < img.width() && py < img.height() {
                                img.put_pixel(px, py, colour);
                            }
                        }
                    }
                }
            }
        }
    }
}

fn text_width(s: &str) -> u32 {
    (s.chars().count() as u32 * 4).saturating_sub(1) * SCALE
}

/// Draws `confusion[true][predicted]`; `names` label the rows (true, left) and columns
/// (predicted, top) by their first two letters.
pub fn confusion_png(confusion: &[Vec<usize>], names: &[&str]) -> RgbImage {
    let k = confusion.len() as u32;
    let margin = 24;
    let mut img = RgbImage::from_pixel(margin + k * CELL + 4, margin + k * CELL + 4, Rgb([255; 3]));
    let black = Rgb([0, 0, 0]);
    for (i, name) in names.iter().enumerate().take(k as usize) {
        let short: String = name.chars().take(2).collect();
        let w = text_width(&short);
        let at = margin + i as u32 * CELL + (CELL - w) / 2;
        text(&mut img, at, 7, &short, black);
        text(
            &mut img,
            2,
            at - (CELL - w) / 2 + (CELL - 5 * SCALE) / 2,
            &short,
            black,
        );
    }
    for (t, row) in confusion.iter().enumerate() {
        let total = row.iter().sum::<usize>().max(1) as f64;
        for (p, &n) in row.iter().enumerate() {
            let rate = n as f64 / total;
            let shade = |full: f64| (255.0 - rate * (255.0 - full)).round() as u8;
            let fill = Rgb([shade(20.0), shade(60.0), shade(140.0)]);
            let (x0, y0) = (margin + p as u32 * CELL, margin + t as u32 * CELL);
            for y in y0..y0 + CELL {
                for x in x0..x0 + CELL {
                    let edge = x == x0 || y == y0 || x == x0 + CELL - 1 || y == y0 + CELL - 1;
                    img.put_pixel(x, y, if edge { Rgb([200; 3]) } else { fill });
                }
            }
            let label = n.to_string();
            let colour = if rate > 0.5 { Rgb([255; 3]) } else { black };
            let w = text_width(&label);
            text(
                &mut img,
                x0 + (CELL.saturating_sub(w)) / 2,
                y0 + (CELL - 5 * SCALE) / 2,
                &label,
                colour,
            );
        }
    }
    img
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_perfect_diagonal_is_dark_on_the_diagonal_and_white_elsewhere() {
        let confusion = vec![vec![5, 0], vec![0, 9]];
        let img = confusion_png(&confusion, &["anger", "disgust"]);
        assert_eq!(img.dimensions(), (24 + 2 * CELL + 4, 24 + 2 * CELL + 4));
        // A pixel near each cell's corner (inside the border, away from the digits).
        let at = |t: u32, p: u32| *img.get_pixel(24 + p * CELL + 3, 24 + t * CELL + 3);
        assert_eq!(at(0, 0), Rgb([20, 60, 140]));
        assert_eq!(at(1, 1), Rgb([20, 60, 140]));
        assert_eq!(at(0, 1), Rgb([255, 255, 255]));
        // The count "5" is drawn in white at the centre of its dark cell.
        let centre = (24 + CELL / 2 - 3..24 + CELL / 2 + 3)
            .flat_map(|x| (24 + CELL / 2 - 5..24 + CELL / 2 + 5).map(move |y| (x, y)))
            .filter(|&(x, y)| *img.get_pixel(x, y) == Rgb([255; 3]))
            .count();
        assert!(centre > 4, "{centre}");
    }
}
