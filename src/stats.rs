//! Per-stage latencies of a run, to see where a frame's time goes on a small board: each pipeline
//! thread records how long its step took per frame; a report gives median, 95th percentile and
//! maximum over the most recent frames, with the counts of frames and drops. Every sample also
//! goes into a Prometheus histogram ([`PipelineTimes::histograms`]) for `/metrics`.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};

/// Latencies of one stage: the most recent `WINDOW` in a ring, plus totals over the whole run.
#[derive(Debug)]
pub struct StageTimer {
    inner: Mutex<Window>,
    histogram: Histogram,
}

impl Default for StageTimer {
    fn default() -> Self {
        StageTimer::with_histogram(stage_histogram())
    }
}

/// Histogram buckets from 0.1 ms to ~3.3 s, doubling: a BlazeFace pass on a fast core and a
/// ResNet-18 face on a Pi both land inside.
fn stage_histogram() -> Histogram {
    Histogram::new(exponential_buckets(1e-4, 2.0, 16))
}

/// Recent samples kept per stage (memory stays flat on a run of months).
const WINDOW: usize = 1024;

#[derive(Debug, Default)]
struct Window {
    recent: Vec<Duration>,
    next: usize,
    count: u64,
    max: Duration,
}

/// A stage's figures over its recent window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StageSummary {
    /// Samples recorded over the whole run.
    pub count: u64,
    /// Median of the recent window.
    pub p50: Duration,
    /// 95th percentile of the recent window.
    pub p95: Duration,
    /// Largest over the whole run.
    pub max: Duration,
}

impl StageTimer {
    fn with_histogram(histogram: Histogram) -> Self {
        StageTimer {
            inner: Mutex::default(),
            histogram,
        }
    }

    /// Records one sample.
    pub fn record(&self, took: Duration) {
        self.histogram.observe(took.as_secs_f64());
        let mut w = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if w.recent.len() < WINDOW {
            w.recent.push(took);
        } else {
            let at = w.next;
            w.recent[at] = took;
        }
        w.next = (w.next + 1) % WINDOW;
        w.count += 1;
        w.max = w.max.max(took);
    }

    /// Times `f` and records it.
    pub fn time<T>(&self, f: impl FnOnce() -> T) -> T {
        let start = Instant::now();
        let out = f();
        self.record(start.elapsed());
        out
    }

    /// Median, 95th percentile (nearest rank, over the recent window), maximum and count.
    pub fn summary(&self) -> StageSummary {
        let w = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let mut sorted = w.recent.clone();
        sorted.sort_unstable();
        let rank = |q: f64| -> Duration {
            if sorted.is_empty() {
                return Duration::ZERO;
            }
            let i = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
            sorted[i]
        };
        StageSummary {
            count: w.count,
            p50: rank(0.5),
            p95: rank(0.95),
            max: w.max,
        }
    }
}

/// The `stage` label of [`PipelineTimes::histograms`].
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StageLabel {
    /// capture, detect, landmarks, classify or output.
    pub stage: &'static str,
}

/// The pipeline's stages, in frame order.
#[derive(Debug)]
pub struct PipelineTimes {
    /// Reading (and decoding) a frame from the source.
    pub capture: StageTimer,
    /// Face detection (frames where it ran).
    pub detect: StageTimer,
    /// Landmark fitting (on detection frames) or following (between detections).
    pub landmarks: StageTimer,
    /// Alignment and classification of a frame's faces.
    pub classify: StageTimer,
    /// Writing the frame's result.
    pub output: StageTimer,
    histograms: Family<StageLabel, Histogram>,
}

impl Default for PipelineTimes {
    fn default() -> Self {
        let histograms = Family::<StageLabel, Histogram>::new_with_constructor(stage_histogram);
        // Each timer holds its own handle on its family member (a shared, lock-free histogram).
        let timer = |stage| {
            StageTimer::with_histogram(histograms.get_or_create_owned(&StageLabel { stage }))
        };
        PipelineTimes {
            capture: timer("capture"),
            detect: timer("detect"),
            landmarks: timer("landmarks"),
            classify: timer("classify"),
            output: timer("output"),
            histograms,
        }
    }
}

impl PipelineTimes {
    /// Every stage's latencies in seconds, labelled by stage, for a metrics registry.
    pub fn histograms(&self) -> Family<StageLabel, Histogram> {
        self.histograms.clone()
    }

    /// One line: each stage's median / p95 / max in milliseconds, then frames, drops and rate.
    pub fn report(&self, frames: u64, dropped: u64, elapsed: Duration) -> String {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let stages = [
            ("capture", &self.capture),
            ("detect", &self.detect),
            ("landmarks", &self.landmarks),
            ("classify", &self.classify),
            ("output", &self.output),
        ];
        let parts: Vec<String> = stages
            .iter()
            .map(|(name, t)| {
                let s = t.summary();
                format!(
                    "{name} {:.1}/{:.1}/{:.1} ({}x)",
                    ms(s.p50),
                    ms(s.p95),
                    ms(s.max),
                    s.count
                )
            })
            .collect();
        let rate = frames as f64 / elapsed.as_secs_f64().max(1e-9);
        format!(
            "stages, ms median/p95/max over the last {WINDOW} frames: {}; {frames} frames, {dropped} dropped, {rate:.1} frames/s",
            parts.join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_nearest_rank_and_a_bounded_window() {
        let t = StageTimer::default();
        assert_eq!(t.summary(), StageSummary::default());
        for ms in 1..=20 {
            t.record(Duration::from_millis(ms));
        }
        let s = t.summary();
        assert_eq!(s.count, 20);
        assert_eq!(s.p50, Duration::from_millis(10));
        assert_eq!(s.p95, Duration::from_millis(19));
        assert_eq!(s.max, Duration::from_millis(20));
        // The window forgets old samples; the count and the maximum do not.
        for _ in 0..WINDOW {
            t.record(Duration::from_millis(2));
        }
        let s = t.summary();
        assert_eq!(s.count, 20 + WINDOW as u64);
        assert_eq!(
            (s.p50, s.p95),
            (Duration::from_millis(2), Duration::from_millis(2))
        );
        assert_eq!(s.max, Duration::from_millis(20));
    }
}
