//! AffectNet's manually annotated CSV (`training.csv`, `validation.csv`): columns
//! `subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,expression,
//! valence,arousal`, landmarks as `x;y;x;y;...` (68 points), expression codes 0 neutral, 1 happy,
//! 2 sad, 3 surprise, 4 fear, 5 disgust, 6 anger, 7 contempt, 8 none, 9 uncertain, 10 no face.
//!
//! The 7-class set drops codes 7-10, the 8-class set drops 8-10. Images are
//! `IMAGES/<subDirectory_filePath>`; a file whose name contains "valid" is the test split.

use std::path::Path;

use super::{ClassSet, DataError, Expression, ImageSource, Loaded, Sample, Split};

/// Maps an AffectNet expression code to the canonical class (`None` for 8-10).
pub fn map_code(code: u8) -> Option<Expression> {
    use Expression::*;
    Some(match code {
        0 => Neutral,
        1 => Happiness,
        2 => Sadness,
        3 => Surprise,
        4 => Fear,
        5 => Disgust,
        6 => Anger,
        7 => Contempt,
        _ => return None,
    })
}

/// Reads one AffectNet CSV, with images under `images`.
///
/// Missing image files are not checked here (AffectNet has ~300k); `train prepare` reports them.
///
/// # Errors
/// [`DataError::Io`] / [`DataError::Format`] for an unreadable file or header,
/// [`DataError::Empty`] if no row is usable.
pub fn read(csv_path: &Path, images: &Path, classes: ClassSet) -> Result<Loaded, DataError> {
    let format = |e: csv::Error| DataError::Format {
        path: csv_path.to_path_buf(),
        reason: e.to_string(),
    };
    let file = std::fs::File::open(csv_path).map_err(|e| DataError::io(csv_path, e))?;
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_reader(std::io::BufReader::new(file));
    let header = reader.headers().map_err(format)?.clone();
    let col = |name: &str| {
        header
            .iter()
            .position(|h| h.trim() == name)
            .ok_or_else(|| DataError::Format {
                path: csv_path.to_path_buf(),
                reason: format!("header has no {name:?} column"),
            })
    };
    let [path_c, x_c, y_c, w_c, h_c, lm_c, expr_c] = [
        col("subDirectory_filePath")?,
        col("face_x")?,
        col("face_y")?,
        col("face_width")?,
        col("face_height")?,
        col("facial_landmarks")?,
        col("expression")?,
    ];
    let split = if csv_path
        .file_name()
        .is_some_and(|n| n.to_string_lossy().contains("valid"))
    {
        Split::Test
    } else {
        Split::Train
    };
    let mut out = Loaded::default();
    for record in reader.records() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map(|p| p.line());
                out.skip(csv_path, line, format!("unreadable row: {e}"));
                continue;
            }
        };
        let line = record.position().map(|p| p.line());
        let field = |i: usize| record.get(i).map(str::trim).unwrap_or("");
        let Some(code) = field(expr_c).parse::<u8>().ok().filter(|c| *c <= 10) else {
            out.skip(
                csv_path,
                line,
                format!("expression {:?} is not a code 0-10", field(expr_c)),
            );
            continue;
        };
        let Some(label) = map_code(code).filter(|e| classes.contains(*e)) else {
            out.skip(
                csv_path,
                line,
                format!(
                    "expression code {code} is not in the {}-class set",
                    classes.count()
                ),
            );
            continue;
        };
        let nums: Option<Vec<f32>> = [x_c, y_c, w_c, h_c]
            .iter()
            .map(|&i| field(i).parse().ok())
            .collect();
        let Some(face_box) = nums.filter(|b| b[2] > 0.0 && b[3] > 0.0) else {
            out.skip(
                csv_path,
                line,
                "face box is not four numbers with positive size",
            );
            continue;
        };
        let coords: Option<Vec<f32>> = field(lm_c)
            .split(';')
            .map(|s| s.trim().parse().ok())
            .collect();
        let Some(coords) = coords.filter(|c| c.len() == 136) else {
            out.skip(csv_path, line, "facial_landmarks is not 68 x;y pairs");
            continue;
        };
        let rel = field(path_c);
        if rel.is_empty() {
            out.skip(csv_path, line, "empty image path");
            continue;
        }
        out.samples.push(Sample {
            image: ImageSource::File(images.join(rel)),
            label,
            split,
            votes: None,
            landmarks: Some(coords.chunks(2).map(|p| [p[0], p[1]]).collect()),
            face_box: Some([face_box[0], face_box[1], face_box[2], face_box[3]]),
        });
    }
    out.non_empty(csv_path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_boxes_landmarks_and_class_sets() {
        let dir = tempfile::tempdir().unwrap();
        let csv_path = dir.path().join("validation.csv");
        let lm = (0..68)
            .map(|i| format!("{i}.5;{}", i * 2))
            .collect::<Vec<_>>()
            .join(";");
        std::fs::write(
            &csv_path,
            format!(
                "subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,expression,valence,arousal\n\
                 1/a.jpg,10,20,100,100,{lm},1,0.5,0.1\n\
                 1/b.jpg,10,20,100,100,{lm},7,0.5,0.1\n\
                 1/c.jpg,10,20,100,100,{lm},9,0.5,0.1\n\
                 1/d.jpg,10,20,0,100,{lm},6,0.5,0.1\n\
                 1/e.jpg,10,20,100,100,1;2;3,6,0.5,0.1\n\
                 1/f.jpg,10,20,100,100,{lm},x,0.5,0.1\n"
            ),
        )
        .unwrap();
        let seven = read(&csv_path, Path::new("/imgs"), ClassSet::Seven).unwrap();
        assert_eq!(seven.samples.len(), 1);
        let s = &seven.samples[0];
        assert_eq!((s.label, s.split), (Expression::Happiness, Split::Test));
        assert_eq!(s.image, ImageSource::File("/imgs/1/a.jpg".into()));
        assert_eq!(s.face_box, Some([10.0, 20.0, 100.0, 100.0]));
        assert_eq!(s.landmarks.as_ref().unwrap()[3], [3.5, 6.0]);
        let reasons: Vec<String> = seven.skipped.iter().map(|s| s.to_string()).collect();
        assert_eq!(reasons.len(), 5, "{reasons:?}");
        assert!(reasons[0].contains("validation.csv:3:") && reasons[0].contains("code 7"));
        assert!(
            reasons[2].contains("positive size")
                && reasons[3].contains("68")
                && reasons[4].contains("0-10")
        );
        let eight = read(&csv_path, Path::new("/imgs"), ClassSet::Eight).unwrap();
        assert_eq!(eight.samples.len(), 2);
        assert_eq!(eight.samples[1].label, Expression::Contempt);
    }
}
