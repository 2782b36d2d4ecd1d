//! Per-frame results and the two ways they are written: JSON lines for programs, text for people;
//! and the [`Sink`]s the pipeline hands them to.
//!
//! The JSON schema (one object per line, per frame, in frame order) is documented in README.md
//! under "Output"; [`FrameResult`] is its single definition.

mod sink;

use std::io::Write;

pub use sink::{Finished, Lines, Sink, VisitsSink};

use serde::Serialize;

use crate::detect::{FaceBox, Landmarks};
use crate::pose::Pose;

/// What the pipeline found in one frame: faces, or the error that stopped the frame.
#[derive(Debug, Clone, Serialize)]
pub struct FrameResult {
    /// Where the frame came from: a file path or `camera:N`.
    pub source: String,
    /// The frame's index in its source, from 0.
    pub frame: u64,
    /// Capture or read time, milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    /// Frame width in pixels (absent for a failed frame).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    /// Frame height in pixels (absent for a failed frame).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    /// The faces, largest first (empty when none was found; absent for a failed frame).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub faces: Option<Vec<FaceResult>>,
    /// Why the frame could not be processed (absent on success).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One face's result.
#[derive(Debug, Clone, Serialize)]
pub struct FaceResult {
    /// The detector's box in frame pixels (inclusive edges).
    #[serde(rename = "box")]
    pub bbox: FaceBox,
    /// The face's track: the same number in every frame while it is followed (absent with
    /// `--aligned`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub track: Option<u64>,
    /// The 68 landmarks, `[x, y]` in frame pixels (absent with `--aligned`: nothing is detected).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub landmarks: Option<Landmarks>,
    /// Head pose, degrees (absent with `--aligned`, or when the fit fails; signs in README.md).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pose: Option<Pose>,
    /// Whether the head is turned towards the screen, within the attention cone (absent with
    /// `pose`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub looking: Option<bool>,
    /// The most probable label.
    pub label: String,
    /// Its probability.
    pub score: f32,
    /// The full probability vector keyed by label, in the model card's order.
    pub probs: serde_json::Map<String, serde_json::Value>,
    /// Shannon entropy of `probs` in nats (0 = certain, ln(labels) = uniform).
    pub entropy: f32,
}

/// How results are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// One JSON object per frame per line.
    #[default]
    Json,
    /// One human-readable line per face (or per frame without faces).
    Text,
}

/// Writes one frame's result and flushes, so a consumer sees each frame as it is done.
///
/// # Errors
/// The writer's I/O error (a closed pipe shows up here as [`std::io::ErrorKind::BrokenPipe`]).
pub fn write_result(
    out: &mut dyn Write,
    result: &FrameResult,
    format: Format,
) -> std::io::Result<()> {
    match format {
        Format::Json => {
            serde_json::to_writer(&mut *out, result)?;
            out.write_all(b"\n")?;
        }
        Format::Text => write_text(out, result)?,
    }
    out.flush()
}

fn write_text(out: &mut dyn Write, r: &FrameResult) -> std::io::Result<()> {
    let head = format!("{} #{}", r.source, r.frame);
    if let Some(error) = &r.error {
        return writeln!(out, "{head}: error: {error}");
    }
    let faces = r.faces.as_deref().unwrap_or_default();
    if faces.is_empty() {
        return writeln!(out, "{head}: no face");
    }
    for (i, f) in faces.iter().enumerate() {
        let b = &f.bbox;
        let attention = match (f.pose, f.looking) {
            (Some(p), Some(looking)) => format!(
                ", {}, yaw {:.0} pitch {:.0}",
                if looking { "looking" } else { "looking away" },
                p.yaw,
                p.pitch
            ),
            _ => String::new(),
        };
        writeln!(
            out,
            "{head}: face {} at ({}, {}) {}x{}: {} {:.0}% (entropy {:.2}){attention}",
            i + 1,
            b.left,
            b.top,
            b.right - b.left + 1,
            b.bottom - b.top + 1,
            f.label,
            f.score * 100.0,
            f.entropy
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_frame_has_error_and_no_faces() {
        let r = FrameResult {
            source: "a.jpg".into(),
            frame: 3,
            timestamp_ms: 1,
            width: None,
            height: None,
            faces: None,
            error: Some("cannot decode image a.jpg: bad".into()),
        };
        let mut buf = Vec::new();
        write_result(&mut buf, &r, Format::Json).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&buf).unwrap();
        assert_eq!(v["frame"], 3);
        assert!(v.get("faces").is_none());
        assert!(v["error"].as_str().unwrap().contains("a.jpg"));
        let mut text = Vec::new();
        write_result(&mut text, &r, Format::Text).unwrap();
        assert_eq!(
            String::from_utf8(text).unwrap(),
            "a.jpg #3: error: cannot decode image a.jpg: bad\n"
        );
    }
}
