//! RAF-DB basic emotions: `EmoLabel/list_patition_label.txt` (the file name's spelling is the
//! dataset's) with lines `train_00001.jpg 5`, images in `Image/aligned/train_00001_aligned.jpg`.
//!
//! RAF-DB's labels are 1 surprise, 2 fear, 3 disgust, 4 happiness, 5 sadness, 6 anger,
//! 7 neutral; the split is the file name's prefix.

use std::path::Path;

use super::{DataError, Expression, Loaded, Sample, Split};

/// Maps a RAF-DB label (1-7) to the canonical class.
pub fn map_label(raw: u8) -> Option<Expression> {
    use Expression::*;
    Some(match raw {
        1 => Surprise,
        2 => Fear,
        3 => Disgust,
        4 => Happiness,
        5 => Sadness,
        6 => Anger,
        7 => Neutral,
        _ => return None,
    })
}

/// Reads RAF-DB basic from its root folder (the one holding `EmoLabel/` and `Image/`).
///
/// # Errors
/// [`DataError::Io`] if the label list cannot be read, [`DataError::Empty`] if no line is usable.
pub fn read(root: &Path) -> Result<Loaded, DataError> {
    let list = root.join("EmoLabel/list_patition_label.txt");
    let text = std::fs::read_to_string(&list).map_err(|e| DataError::io(&list, e))?;
    let images = root.join("Image/aligned");
    let mut out = Loaded::default();
    for (i, line) in text.lines().enumerate() {
        let n = Some(i as u64 + 1);
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [name, label] = fields[..] else {
            out.skip(
                &list,
                n,
                format!("expected `NAME LABEL`, found {} field(s)", fields.len()),
            );
            continue;
        };
        let Some(label) = label.parse::<u8>().ok().and_then(map_label) else {
            out.skip(&list, n, format!("label {label:?} is not 1-7"));
            continue;
        };
        let split = if name.starts_with("train_") {
            Split::Train
        } else if name.starts_with("test_") {
            Split::Test
        } else {
            out.skip(
                &list,
                n,
                format!("{name:?} starts with neither train_ nor test_"),
            );
            continue;
        };
        let Some(stem) = name.strip_suffix(".jpg") else {
            out.skip(&list, n, format!("{name:?} is not a .jpg name"));
            continue;
        };
        let path = images.join(format!("{stem}_aligned.jpg"));
        if !path.is_file() {
            out.skip(
                &list,
                n,
                format!("aligned image {} is missing", path.display()),
            );
            continue;
        }
        out.samples.push(Sample::file(path, label, split));
    }
    out.non_empty(root)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_maps_and_reports_bad_lines_with_their_numbers() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("EmoLabel")).unwrap();
        std::fs::create_dir_all(root.join("Image/aligned")).unwrap();
        for name in ["train_00001", "train_00002", "test_0001"] {
            std::fs::write(
                root.join(format!("Image/aligned/{name}_aligned.jpg")),
                b"jpg",
            )
            .unwrap();
        }
        std::fs::write(
            root.join("EmoLabel/list_patition_label.txt"),
            "train_00001.jpg 4\ntrain_00002.jpg 6\ntest_0001.jpg 1\ntrain_00003.jpg 2\ntrain_00004.jpg 9\nbroken line here\n",
        )
        .unwrap();
        let loaded = read(root).unwrap();
        let labels: Vec<_> = loaded.samples.iter().map(|s| (s.label, s.split)).collect();
        assert_eq!(
            labels,
            [
                (Expression::Happiness, Split::Train),
                (Expression::Anger, Split::Train),
                (Expression::Surprise, Split::Test)
            ]
        );
        let reasons: Vec<String> = loaded.skipped.iter().map(|s| s.to_string()).collect();
        assert_eq!(reasons.len(), 3, "{reasons:?}");
        assert!(
            reasons[0].contains("list_patition_label.txt:4:") && reasons[0].contains("missing")
        );
        assert!(reasons[1].contains(":5:") && reasons[1].contains("not 1-7"));
        assert!(reasons[2].contains(":6:") && reasons[2].contains("3 field(s)"));
    }

    #[test]
    fn no_usable_line_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("EmoLabel")).unwrap();
        std::fs::write(dir.path().join("EmoLabel/list_patition_label.txt"), "x\n").unwrap();
        let err = read(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("no usable samples") && err.contains(":1:"),
            "{err}"
        );
    }

    #[test]
    fn mapping_matches_the_reference() {
        let golden: serde_json::Value =
            serde_json::from_str(include_str!("../../tests/fixtures/noise.json")).unwrap();
        for raw in 1..=7u8 {
            let want = golden["raf_db_raw_label_to_index"][raw.to_string()]
                .as_u64()
                .unwrap() as usize;
            assert_eq!(map_label(raw).unwrap().index(), want);
        }
    }
}
