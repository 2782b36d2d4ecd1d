//! The audience at a glance, for the kiosk page: who is here now, how many visits the last hour
//! saw and how long they stayed, and how the audience's expressions went over the last minutes.
//!
//! Kept on the frames' clock (a camera's capture time, a file's index / frame rate), so a folder
//! replayed faster than real time still shows its own minutes. Aggregates only: no face is kept.

use std::collections::VecDeque;

use serde::Serialize;

use crate::output::FaceResult;
use crate::visits::VisitRecord;

/// Visits counted: those that ended this recently.
pub const VISIT_WINDOW_S: f64 = 3600.0;
/// The timeline: this many seconds, in buckets of [`BUCKET_S`].
pub const TIMELINE_S: f64 = 300.0;
/// One timeline bucket, seconds.
pub const BUCKET_S: f64 = 5.0;

/// What the page shows; `/audience` serves it as JSON.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// Faces in the latest frame.
    pub present: usize,
    /// Visits that ended within the last hour of the frames' clock.
    pub visits_last_hour: usize,
    /// Their median dwell, seconds (`null` without visits).
    pub median_dwell_s: Option<f64>,
    /// The labels, in the model's order: the order of every `probs` below.
    pub labels: Vec<String>,
    /// Oldest first: each bucket's start (seconds on the frames' clock), the faces seen in it
    /// (face-frames) and their mean probabilities.
    pub timeline: Vec<Bucket>,
}

/// One span of the timeline.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Bucket {
    /// Start, seconds on the frames' clock.
    pub start: f64,
    /// Face-frames in it.
    pub faces: u64,
    /// Mean probability of each label over them.
    pub probs: Vec<f32>,
}

/// Running aggregates of frames and visits.
#[derive(Debug, Default)]
pub struct Audience {
    labels: Vec<String>,
    present: usize,
    latest: f64,
    /// (end, dwell) of recent visits, oldest first.
    visits: VecDeque<(f64, f64)>,
    /// (start, face-frames, sums), oldest first.
    buckets: VecDeque<(f64, u64, Vec<f64>)>,
}

impl Audience {
    /// Adds one frame's faces, taken at `time` on the frames' clock.
    pub fn frame(&mut self, time: f64, faces: &[FaceResult]) {
        self.present = faces.len();
        self.latest = self.latest.max(time);
        if self.labels.is_empty() {
            if let Some(face) = faces.first() {
                self.labels = face.probs.keys().cloned().collect();
                for bucket in &mut self.buckets {
                    bucket.2.resize(self.labels.len(), 0.0);
                }
            }
        }
        let start = (time / BUCKET_S).floor() * BUCKET_S;
        if self.buckets.back().is_none_or(|b| b.0 < start) {
            self.buckets
                .push_back((start, 0, vec![0.0; self.labels.len()]));
        }
        if let Some(bucket) = self.buckets.iter_mut().rev().find(|b| b.0 <= start) {
            for face in faces {
                bucket.1 += 1;
                for (sum, label) in bucket.2.iter_mut().zip(&self.labels) {
                    *sum += face
                        .probs
                        .get(label)
                        .and_then(|v| v.as_f64())
                        .unwrap_or(0.0);
                }
            }
        }
        let oldest = self.latest - TIMELINE_S;
        while self
            .buckets
            .front()
            .is_some_and(|b| b.0 + BUCKET_S <= oldest)
        {
            self.buckets.pop_front();
        }
    }

    /// Adds visits that have ended.
    pub fn visits(&mut self, records: &[VisitRecord]) {
        for r in records {
            self.visits.push_back((r.end, r.dwell_s));
            self.latest = self.latest.max(r.end);
        }
        let oldest = self.latest - VISIT_WINDOW_S;
        while self.visits.front().is_some_and(|v| v.0 < oldest) {
            self.visits.pop_front();
        }
    }

    /// The figures now.
    pub fn summary(&self) -> Summary {
        let oldest = self.latest - VISIT_WINDOW_S;
        let mut dwell: Vec<f64> = self
            .visits
            .iter()
            .filter(|v| v.0 >= oldest)
            .map(|v| v.1)
            .collect();
        dwell.sort_by(f64::total_cmp);
        let median_dwell_s = match dwell.len() {
            0 => None,
            n if n % 2 == 1 => Some(dwell[n / 2]),
            n => Some((dwell[n / 2 - 1] + dwell[n / 2]) / 2.0),
        };
        Summary {
            present: self.present,
            visits_last_hour: dwell.len(),
            median_dwell_s,
            labels: self.labels.clone(),
            timeline: self
                .buckets
                .iter()
                .map(|(start, faces, sums)| Bucket {
                    start: *start,
                    faces: *faces,
                    probs: sums
                        .iter()
                        .map(|s| (s / (*faces).max(1) as f64) as f32)
                        .collect(),
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::FaceBox;

    fn face(happy: f32) -> FaceResult {
        FaceResult {
            bbox: FaceBox {
                left: 0,
                top: 0,
                right: 9,
                bottom: 9,
            },
            track: Some(1),
            landmarks: None,
            pose: None,
            looking: None,
            label: "happy".into(),
            score: happy,
            probs: [("sad", 1.0 - happy), ("happy", happy)]
                .into_iter()
                .map(|(l, p)| (l.to_string(), serde_json::Value::from(p)))
                .collect(),
            entropy: 0.0,
        }
    }

    fn visit(end: f64, dwell_s: f64) -> VisitRecord {
        VisitRecord {
            visit: 1,
            source: "cam".into(),
            track: 1,
            tracks: vec![1],
            start: end - dwell_s,
            end,
            dwell_s,
            looking_s: 0.0,
            frames: 1,
            looking_frames: 0,
            probs: None,
            dominant: None,
        }
    }

    #[test]
    fn the_timeline_averages_faces_per_bucket_and_keeps_five_minutes() {
        let mut a = Audience::default();
        a.frame(0.0, &[face(1.0), face(0.5)]);
        a.frame(4.9, &[face(0.0)]);
        a.frame(5.0, &[]);
        a.frame(7.0, &[face(0.25)]);
        let s = a.summary();
        assert_eq!(s.labels, ["sad", "happy"]);
        assert_eq!(s.present, 1);
        assert_eq!(s.timeline.len(), 2);
        assert_eq!((s.timeline[0].start, s.timeline[0].faces), (0.0, 3));
        assert!((s.timeline[0].probs[1] - 0.5).abs() < 1e-6, "{s:?}");
        assert!((s.timeline[1].probs[0] - 0.75).abs() < 1e-6, "{s:?}");
        // Six minutes later only the last five are kept.
        a.frame(360.0, &[face(1.0)]);
        let s = a.summary();
        assert_eq!(s.timeline.len(), 1, "{s:?}");
        assert_eq!(s.timeline[0].start, 360.0);
        assert_eq!(s.present, 1);
    }

    #[test]
    fn visits_of_the_last_hour_and_their_median_dwell() {
        let mut a = Audience::default();
        assert_eq!(a.summary().median_dwell_s, None);
        a.visits(&[visit(100.0, 4.0), visit(200.0, 10.0), visit(300.0, 6.0)]);
        let s = a.summary();
        assert_eq!((s.visits_last_hour, s.median_dwell_s), (3, Some(6.0)));
        a.visits(&[visit(400.0, 20.0)]);
        assert_eq!(a.summary().median_dwell_s, Some(8.0));
        // An hour after the first ended, it no longer counts.
        a.frame(100.0 + VISIT_WINDOW_S + 1.0, &[]);
        let s = a.summary();
        assert_eq!((s.visits_last_hour, s.median_dwell_s), (3, Some(10.0)));
    }
}
