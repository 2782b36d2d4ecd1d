//! FERPlus: FER2013's pixels (`fer2013.csv`: `emotion,pixels,Usage`) relabelled by ten annotators
//! each (`fer2013new.csv`: `Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,
//! fear,contempt,unknown,NF`), row `i` of one annotating row `i` of the other.
//!
//! Label = the majority of the emotion votes. A row is skipped when FERPlus removed the image (no
//! image name), when "unknown" or "NF" (not a face) has more votes than any emotion, when the top
//! emotion votes tie, or when the winner is contempt in the 7-class set. The vote distribution over
//! the class set is kept for evaluating learned label distributions.

use std::path::Path;

use super::{ClassSet, DataError, Expression, ImageSource, Loaded, Sample, Split};

/// FERPlus vote columns in file order, with their canonical classes.
const VOTE_COLUMNS: [(&str, Expression); 8] = [
    ("neutral", Expression::Neutral),
    ("happiness", Expression::Happiness),
    ("surprise", Expression::Surprise),
    ("sadness", Expression::Sadness),
    ("anger", Expression::Anger),
    ("disgust", Expression::Disgust),
    ("fear", Expression::Fear),
    ("contempt", Expression::Contempt),
];

/// Reads FERPlus from the two CSV files.
///
/// # Errors
/// [`DataError::Io`] if a file cannot be read, [`DataError::Format`] if a header lacks a column or
/// the files have different row counts, [`DataError::Empty`] if no row is usable.
pub fn read(fer2013: &Path, ferplus: &Path, classes: ClassSet) -> Result<Loaded, DataError> {
    let pixels_rows = records(fer2013)?;
    let vote_rows = records(ferplus)?;
    if pixels_rows.1.len() != vote_rows.1.len() {
        return Err(DataError::Format {
            path: ferplus.to_path_buf(),
            reason: format!(
                "{} rows, but {} has {}: the files must annotate each other row by row",
                vote_rows.1.len(),
                fer2013.display(),
                pixels_rows.1.len()
            ),
        });
    }
    let col = |header: &csv::StringRecord, name: &str, path: &Path| {
        header
            .iter()
            .position(|h| h.trim() == name)
            .ok_or_else(|| DataError::Format {
                path: path.to_path_buf(),
                reason: format!("header has no {name:?} column"),
            })
    };
    let (ph, prow) = &pixels_rows;
    let (vh, vrow) = &vote_rows;
    let pixels_col = col(ph, "pixels", fer2013)?;
    let usage_col = col(ph, "Usage", fer2013)?;
    let name_col = col(vh, "Image name", ferplus)?;
    let vote_cols = VOTE_COLUMNS
        .iter()
        .map(|(name, _)| col(vh, name, ferplus))
        .collect::<Result<Vec<_>, _>>()?;
    let (unknown_col, nf_col) = (col(vh, "unknown", ferplus)?, col(vh, "NF", ferplus)?);

    let mut out = Loaded::default();
    for ((p, pline), (v, vline)) in prow.iter().zip(vrow) {
        let skip = |out: &mut Loaded, reason: String| out.skip(ferplus, Some(*vline), reason);
        if v.get(name_col).is_none_or(|n| n.trim().is_empty()) {
            skip(&mut out, "image removed by FERPlus (no image name)".into());
            continue;
        }
        let count = |i: usize| v.get(i).and_then(|s| s.trim().parse::<u32>().ok());
        let Some(votes) = vote_cols
            .iter()
            .map(|&i| count(i))
            .collect::<Option<Vec<u32>>>()
        else {
            skip(&mut out, "a vote count is missing or not a number".into());
            continue;
        };
        let (Some(unknown), Some(nf)) = (count(unknown_col), count(nf_col)) else {
            skip(
                &mut out,
                "the unknown/NF count is missing or not a number".into(),
            );
            continue;
        };
        let top = votes.iter().copied().max().unwrap_or(0);
        if top == 0 || unknown > top || nf > top {
            skip(
                &mut out,
                format!(
                    "no emotion majority (top emotion {top}, unknown {unknown}, not a face {nf})"
                ),
            );
            continue;
        }
        let winners: Vec<Expression> = VOTE_COLUMNS
            .iter()
            .zip(&votes)
            .filter(|(_, &n)| n == top)
            .map(|((_, e), _)| *e)
            .collect();
        if winners.len() > 1 {
            let names: Vec<&str> = winners.iter().map(|e| e.name()).collect();
            skip(
                &mut out,
                format!("tie between {} ({top} votes each)", names.join(" and ")),
            );
            continue;
        }
        let label = winners[0];
        if !classes.contains(label) {
            skip(
                &mut out,
                format!(
                    "majority {label} is not in the {}-class set",
                    classes.count()
                ),
            );
            continue;
        }
        let mut distribution = vec![0.0f32; classes.count()];
        for ((_, e), &n) in VOTE_COLUMNS.iter().zip(&votes) {
            if classes.contains(*e) {
                distribution[e.index()] = n as f32;
            }
        }
        let total: f32 = distribution.iter().sum();
        distribution.iter_mut().for_each(|x| *x /= total);

        let pixels: Option<Vec<u8>> = p
            .get(pixels_col)
            .map(|s| {
                s.split_whitespace()
                    .map(|x| x.parse::<u8>().ok())
                    .collect::<Option<Vec<u8>>>()
            })
            .unwrap_or(None);
        let Some(pixels) = pixels.filter(|px| px.len() == 48 * 48) else {
            out.skip(
                fer2013,
                Some(*pline),
                "pixels are not 2304 values in 0-255 (48x48)",
            );
            continue;
        };
        let split = match p.get(usage_col).map(str::trim) {
            Some("Training") => Split::Train,
            Some("PublicTest") => Split::Val,
            Some("PrivateTest") => Split::Test,
            other => {
                out.skip(
                    fer2013,
                    Some(*pline),
                    format!("Usage {other:?} is not Training, PublicTest or PrivateTest"),
                );
                continue;
            }
        };
        out.samples.push(Sample {
            image: ImageSource::Gray {
                width: 48,
                height: 48,
                pixels,
            },
            label,
            split,
            votes: Some(distribution),
            landmarks: None,
            face_box: None,
        });
    }
    out.non_empty(ferplus)
}

/// The header and the records of a CSV file, each with its 1-based line number.
fn records(path: &Path) -> Result<(csv::StringRecord, Vec<(csv::StringRecord, u64)>), DataError> {
    let format = |e: csv::Error| DataError::Format {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let file = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_reader(std::io::BufReader::new(file));
    let header = reader.headers().map_err(format)?.clone();
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(format)?;
        let line = record.position().map_or(0, |p| p.line());
        rows.push((record, line));
    }
    Ok((header, rows))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pixels(v: u8) -> String {
        vec![v.to_string(); 2304].join(" ")
    }

    #[test]
    fn majority_votes_distribution_and_skips() {
        let dir = tempfile::tempdir().unwrap();
        let fer = dir.path().join("fer2013.csv");
        let new = dir.path().join("fer2013new.csv");
        std::fs::write(
            &fer,
            format!(
                "emotion,pixels,Usage\n0,{p},Training\n3,{p},PublicTest\n4,{p},PrivateTest\n2,{p},Training\n6,{p},Training\n1,1 2 3,Training\n",
                p = pixels(7)
            ),
        )
        .unwrap();
        std::fs::write(
            &new,
            "Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF\n\
             Training,fer0.png,1,0,0,0,8,1,0,0,0,0\n\
             PublicTest,fer1.png,0,10,0,0,0,0,0,0,0,0\n\
             PrivateTest,fer2.png,4,0,0,4,0,0,0,0,2,0\n\
             Training,,0,0,0,0,0,0,0,0,0,10\n\
             Training,fer4.png,0,0,0,0,0,0,0,6,4,0\n\
             Training,fer5.png,0,9,0,0,0,0,0,0,1,0\n",
        )
        .unwrap();
        let loaded = read(&fer, &new, ClassSet::Seven).unwrap();
        assert_eq!(loaded.samples.len(), 2);
        let anger = &loaded.samples[0];
        assert_eq!(
            (anger.label, anger.split),
            (Expression::Anger, Split::Train)
        );
        let votes = anger.votes.as_ref().unwrap();
        assert_eq!(votes.len(), 7);
        assert!((votes[Expression::Anger.index()] - 0.8).abs() < 1e-6);
        assert!((votes[Expression::Neutral.index()] - 0.1).abs() < 1e-6);
        assert_eq!(loaded.samples[1].split, Split::Val);
        let reasons: Vec<String> = loaded.skipped.iter().map(|s| s.to_string()).collect();
        assert!(
            reasons[0].contains("fer2013new.csv:4:")
                && reasons[0].contains("tie between neutral and sadness"),
            "{reasons:?}"
        );
        assert!(
            reasons[1].contains(":5:") && reasons[1].contains("removed"),
            "{reasons:?}"
        );
        assert!(
            reasons[2].contains(":6:") && reasons[2].contains("contempt is not in the 7-class set"),
            "{reasons:?}"
        );
        assert!(
            reasons[3].contains("fer2013.csv:7:") && reasons[3].contains("2304"),
            "{reasons:?}"
        );

        let eight = read(&fer, &new, ClassSet::Eight).unwrap();
        assert_eq!(eight.samples.len(), 3);
        assert_eq!(eight.samples[2].label, Expression::Contempt);
    }

    #[test]
    fn row_count_mismatch_is_a_format_error() {
        let dir = tempfile::tempdir().unwrap();
        let fer = dir.path().join("fer2013.csv");
        let new = dir.path().join("fer2013new.csv");
        std::fs::write(
            &fer,
            format!("emotion,pixels,Usage\n0,{},Training\n", pixels(1)),
        )
        .unwrap();
        std::fs::write(&new, "Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF\n").unwrap();
        let err = read(&fer, &new, ClassSet::Seven).unwrap_err().to_string();
        assert!(
            err.contains("0 rows") && err.contains("row by row"),
            "{err}"
        );
    }
}
