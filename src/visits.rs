//! Visits: a person's stay in front of the kiosk, summarised in one record when it ends.
//!
//! A visit may span several tracks: when tracking loses a face (it turned away, someone walked
//! past) and picks it up again, the new track starts near where the old one ended, and if that is
//! within the visit timeout it rejoins the same visit. A visit ends when none of its tracks has
//! been seen for the timeout, or when the input ends (end of the files, `--max-frames`, a stop
//! signal): [`Visits::finish`].
//!
//! Time is the frames' own clock ([`crate::capture::Frame::time_s`]): a frame lasts until the
//! next one, so a face seen on N frames of a 30 frames/s source stayed N / 30 s.

use serde::Serialize;

use crate::classify::argmax;
use crate::detect::FaceBox;

/// How visits are delimited.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VisitConfig {
    /// Seconds without any of a visit's tracks after which the visit ends; a new track within
    /// this time, near where one of its tracks ended, rejoins it. In (0, 3600].
    pub timeout_s: f64,
    /// How far, in widths of the ended track's last box, a new track's centre may be from that
    /// box's centre to rejoin its visit.
    pub rejoin_within: f32,
    /// One frame's length at the source's nominal rate, seconds: the first frame's length (it has
    /// no previous frame to measure it by).
    pub frame_s: f64,
}

impl Default for VisitConfig {
    /// A 3 s timeout (a face turned away or hidden for a moment stays one visit), rejoining
    /// within one face width, 30 frames/s.
    fn default() -> Self {
        VisitConfig {
            timeout_s: 3.0,
            rejoin_within: 1.0,
            frame_s: 1.0 / crate::capture::DEFAULT_FRAME_RATE,
        }
    }
}

impl VisitConfig {
    /// Checks the ranges; the message names the setting.
    ///
    /// # Errors
    /// A description of the value out of range.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.timeout_s > 0.0 && self.timeout_s <= 3600.0) {
            return Err(format!(
                "visit timeout {} s is out of range: give (0, 3600] seconds",
                self.timeout_s
            ));
        }
        if !(self.frame_s > 0.0 && self.frame_s.is_finite()) {
            return Err(format!("frame length {} s is out of range", self.frame_s));
        }
        if !(self.rejoin_within >= 0.0 && self.rejoin_within.is_finite()) {
            return Err(format!(
                "rejoin distance {} face widths is out of range",
                self.rejoin_within
            ));
        }
        Ok(())
    }
}

/// One face in one frame, as visits need it.
#[derive(Debug, Clone, Copy)]
pub struct Sighting<'a> {
    /// Its track.
    pub track: u64,
    /// Its box.
    pub bbox: FaceBox,
    /// Whether it was turned towards the screen.
    pub looking: bool,
    /// This frame's probabilities, not smoothed, in the card's label order.
    pub probs: &'a [f32],
}

/// One ended visit: what the `--visits` lines hold.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VisitRecord {
    /// The visit's number, from 1, in the order visits started.
    pub visit: u64,
    /// Where its frames came from.
    pub source: String,
    /// The first track of the visit.
    pub track: u64,
    /// Every track that was part of it, in the order they appeared.
    pub tracks: Vec<u64>,
    /// When it started: the first frame it was seen on, seconds on the frames' clock.
    pub start: f64,
    /// When it ended: the end of the last frame it was seen on.
    pub end: f64,
    /// `end - start`, seconds.
    pub dwell_s: f64,
    /// Seconds of frames on which the face was turned towards the screen.
    pub looking_s: f64,
    /// Frames it was seen on.
    pub frames: u64,
    /// Frames on which it was looking.
    pub looking_frames: u64,
    /// The mean of each label's (unsmoothed) probability over the frames where it was looking,
    /// keyed by label in the card's order; `null` when it never looked.
    pub probs: Option<serde_json::Map<String, serde_json::Value>>,
    /// The label with the largest mean probability; `null` when it never looked.
    pub dominant: Option<String>,
}

#[derive(Debug)]
struct Visit {
    id: u64,
    tracks: Vec<u64>,
    start: f64,
    /// End of the last frame it was seen on.
    end: f64,
    /// The box the visit's face was last seen in.
    last_box: FaceBox,
    frames: u64,
    looking_s: f64,
    looking_frames: u64,
    sums: Vec<f64>,
}

/// Turns the faces of successive frames into visits. One per source; frames in order.
#[derive(Debug)]
pub struct Visits {
    config: VisitConfig,
    labels: Vec<String>,
    source: String,
    /// A frame's length when there is no previous frame to measure it by.
    nominal_frame_s: f64,
    previous_time: Option<f64>,
    open: Vec<Visit>,
    next_id: u64,
}

impl Visits {
    /// No visits yet. `labels` are the model's, in order.
    pub fn new(config: VisitConfig, labels: Vec<String>) -> Self {
        Visits {
            config,
            labels,
            source: String::new(),
            nominal_frame_s: config.frame_s,
            previous_time: None,
            open: Vec::new(),
            next_id: 1,
        }
    }

    /// Adds one frame's faces, seen at `time` (seconds on the frames' clock) from `source`;
    /// returns the visits that ended before it (timed out).
    pub fn observe(&mut self, source: &str, time: f64, faces: &[Sighting]) -> Vec<VisitRecord> {
        // A frame lasts until the next; the first, or one after a clock that went back, counts
        // one nominal frame.
        let length = match self.previous_time {
            Some(before) if time > before => time - before,
            _ => self.nominal_frame_s,
        };
        self.previous_time = Some(time);
        if self.source != source {
            self.source = source.to_string();
        }
        let ended = self.end_before(time);
        let present: Vec<u64> = faces.iter().map(|f| f.track).collect();
        for face in faces {
            let index = match self
                .open
                .iter()
                .position(|v| v.tracks.contains(&face.track))
            {
                Some(i) => i,
                None => self.rejoin_or_start(face, time, &present),
            };
            let visit = &mut self.open[index];
            // max: a clock that went back (a camera's, reset) must not shorten the visit.
            visit.end = visit.end.max(time + length);
            visit.last_box = face.bbox;
            visit.frames += 1;
            if face.looking {
                visit.looking_s += length;
                visit.looking_frames += 1;
                for (s, p) in visit.sums.iter_mut().zip(face.probs) {
                    *s += f64::from(*p);
                }
            }
        }
        ended
    }

    /// Ends every open visit (end of input); returns them in the order they started.
    pub fn finish(&mut self) -> Vec<VisitRecord> {
        let open = std::mem::take(&mut self.open);
        open.into_iter().map(|v| self.record(v)).collect()
    }

    /// The visits no track of which has been seen for the timeout before `time`.
    fn end_before(&mut self, time: f64) -> Vec<VisitRecord> {
        let timeout = self.config.timeout_s;
        let (ended, open): (Vec<Visit>, Vec<Visit>) = std::mem::take(&mut self.open)
            .into_iter()
            .partition(|v| time - v.end > timeout);
        self.open = open;
        ended.into_iter().map(|v| self.record(v)).collect()
    }

    /// The open visit a new track continues (none of its tracks in this frame, its face last
    /// seen near this one), or a new visit; its index in `open`.
    fn rejoin_or_start(&mut self, face: &Sighting, time: f64, present: &[u64]) -> usize {
        let centre = |b: &FaceBox| {
            (
                (b.left + b.right) as f32 / 2.0,
                (b.top + b.bottom) as f32 / 2.0,
            )
        };
        let (x, y) = centre(&face.bbox);
        let nearest = self
            .open
            .iter()
            .enumerate()
            .filter(|(_, v)| !v.tracks.iter().any(|t| present.contains(t)))
            .map(|(i, v)| {
                let (vx, vy) = centre(&v.last_box);
                let width = (v.last_box.right - v.last_box.left + 1) as f32;
                (i, (x - vx).hypot(y - vy) / width.max(1.0))
            })
            .filter(|&(_, d)| d <= self.config.rejoin_within)
            .min_by(|a, b| a.1.total_cmp(&b.1));
        if let Some((i, _)) = nearest {
            self.open[i].tracks.push(face.track);
            return i;
        }
        self.open.push(Visit {
            id: self.next_id,
            tracks: vec![face.track],
            start: time,
            end: time,
            last_box: face.bbox,
            frames: 0,
            looking_s: 0.0,
            looking_frames: 0,
            sums: vec![0.0; self.labels.len()],
        });
        self.next_id += 1;
        self.open.len() - 1
    }

    fn record(&self, v: Visit) -> VisitRecord {
        let looked = v.looking_frames > 0;
        let means: Vec<f32> = v
            .sums
            .iter()
            .map(|s| (s / v.looking_frames.max(1) as f64) as f32)
            .collect();
        VisitRecord {
            visit: v.id,
            source: self.source.clone(),
            track: v.tracks[0],
            start: v.start,
            end: v.end,
            dwell_s: v.end - v.start,
            looking_s: v.looking_s,
            frames: v.frames,
            looking_frames: v.looking_frames,
            probs: looked.then(|| {
                self.labels
                    .iter()
                    .zip(&means)
                    .map(|(l, m)| (l.clone(), serde_json::Value::from(*m)))
                    .collect()
            }),
            dominant: looked.then(|| self.labels[argmax(&means)].clone()),
            tracks: v.tracks,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(left: i64) -> FaceBox {
        FaceBox {
            left,
            top: 100,
            right: left + 99,
            bottom: 199,
        }
    }

    const HAPPY: [f32; 2] = [0.2, 0.8];
    const SAD: [f32; 2] = [0.9, 0.1];

    fn seen(track: u64, left: i64, looking: bool, probs: &[f32]) -> Sighting<'_> {
        Sighting {
            track,
            bbox: at(left),
            looking,
            probs,
        }
    }

    fn visits(timeout_s: f64) -> Visits {
        Visits::new(
            VisitConfig {
                timeout_s,
                rejoin_within: 1.0,
                frame_s: 0.1,
            },
            vec!["sad".into(), "happy".into()],
        )
    }

    #[test]
    fn one_face_for_ten_frames_is_one_visit_of_a_second() {
        let mut v = visits(2.0);
        for i in 0..10 {
            let looking = i < 4;
            let probs = if i < 2 { &HAPPY } else { &SAD };
            assert!(v
                .observe("cam", i as f64 * 0.1, &[seen(1, 0, looking, probs)])
                .is_empty());
        }
        let ended = v.finish();
        assert_eq!(ended.len(), 1);
        let r = &ended[0];
        assert_eq!(
            (r.visit, r.track, r.frames, r.looking_frames),
            (1, 1, 10, 4)
        );
        assert!((r.dwell_s - 1.0).abs() < 1e-9, "{r:?}");
        assert!((r.looking_s - 0.4).abs() < 1e-9, "{r:?}");
        // Looking frames: two happy, two sad -> means (0.55, 0.45).
        let probs = r.probs.as_ref().unwrap();
        assert!((probs["sad"].as_f64().unwrap() - 0.55).abs() < 1e-6);
        assert!((probs["happy"].as_f64().unwrap() - 0.45).abs() < 1e-6);
        assert_eq!(r.dominant.as_deref(), Some("sad"));
        assert_eq!(r.source, "cam");
    }

    #[test]
    fn absent_longer_than_the_timeout_is_two_visits_shorter_is_one() {
        for (gap_frames, expected) in [(25u32, 2usize), (15, 1)] {
            let mut v = visits(2.0);
            let mut records = Vec::new();
            let mut t = 0.0;
            let mut frame = |v: &mut Visits, faces: &[Sighting]| {
                records.extend(v.observe("f", t, faces));
                t += 0.1;
            };
            for _ in 0..10 {
                frame(&mut v, &[seen(1, 0, true, &HAPPY)]);
            }
            for _ in 0..gap_frames {
                frame(&mut v, &[]);
            }
            // A new track, near where track 1 ended.
            for _ in 0..5 {
                frame(&mut v, &[seen(2, 30, true, &HAPPY)]);
            }
            records.extend(v.finish());
            assert_eq!(records.len(), expected, "gap of {gap_frames}: {records:?}");
            if expected == 2 {
                assert_eq!(records[0].frames, 10);
                assert_eq!(records[1].frames, 5);
                assert_eq!(records[1].tracks, [2]);
                assert!((records[0].dwell_s - 1.0).abs() < 1e-9);
                assert!((records[1].dwell_s - 0.5).abs() < 1e-9);
            } else {
                assert_eq!(records[0].tracks, [1, 2]);
                assert_eq!(records[0].frames, 15);
                // From the first frame to the end of the last, the gap included.
                assert!((records[0].dwell_s - 3.0).abs() < 1e-9, "{records:?}");
            }
        }
    }

    #[test]
    fn a_new_track_far_away_or_beside_a_present_one_is_another_visit() {
        let mut v = visits(5.0);
        v.observe("f", 0.0, &[seen(1, 0, true, &HAPPY)]);
        v.observe("f", 0.1, &[]);
        // Far from where track 1 ended: someone else.
        v.observe("f", 0.2, &[seen(2, 400, true, &HAPPY)]);
        // Near track 2, while track 2 is present: someone else too.
        v.observe(
            "f",
            0.3,
            &[seen(2, 400, true, &HAPPY), seen(3, 420, true, &SAD)],
        );
        // Near where track 1 ended: track 1's visit again.
        v.observe("f", 0.4, &[seen(4, 10, true, &HAPPY)]);
        let ended = v.finish();
        let tracks: Vec<Vec<u64>> = ended.iter().map(|r| r.tracks.clone()).collect();
        assert_eq!(tracks, [vec![1, 4], vec![2], vec![3]]);
    }

    #[test]
    fn never_looking_has_no_expression_and_a_clock_going_back_shrinks_nothing() {
        let mut v = visits(2.0);
        v.observe("f", 5.0, &[seen(1, 0, false, &HAPPY)]);
        // The clock went back (a camera's, reset): the visit does not shrink.
        v.observe("f", 0.0, &[seen(1, 0, false, &HAPPY)]);
        let r = &v.finish()[0];
        assert!(r.probs.is_none() && r.dominant.is_none());
        assert_eq!(r.looking_s, 0.0);
        assert_eq!(r.frames, 2);
        assert!((r.dwell_s - 0.1).abs() < 1e-9, "{r:?}");
        let json = serde_json::to_value(r).unwrap();
        assert!(
            json["probs"].is_null() && json["dominant"].is_null(),
            "{json}"
        );
    }

    #[test]
    fn out_of_range_settings_are_refused_naming_them() {
        for timeout_s in [0.0, -1.0, 4000.0, f64::NAN] {
            let bad = VisitConfig {
                timeout_s,
                ..VisitConfig::default()
            };
            assert!(bad.validate().unwrap_err().contains("visit timeout"));
        }
        assert!(VisitConfig::default().validate().is_ok());
    }
}
