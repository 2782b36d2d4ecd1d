//! Soak run: feeds many frames through the real threaded pipeline and samples the process's
//! resident memory as it goes, to show memory stays flat over a long run (a kiosk runs for
//! months). A command, not a test: 100,000 frames take tens of minutes.
//!
//! ```sh
//! cargo run --release --example soak -- [--frames 100000] [--every 1000] [--size 320x240]
//!                                        [--aligned] [--csv rss.csv]
//! ```
//!
//! Frames: the four fixture photos scaled and cropped to fill `--size` frames, JPEG-encoded once; every frame
//! is decoded again from its bytes, so decoding, detection, landmarks, alignment, classification
//! and JSON output all run per frame (`--aligned` skips detection). The output is counted and
//! discarded. RSS (`VmRSS`) is read every `--every` frames; after a warm-up (the first 10% of the
//! frames) a least-squares line through the samples gives the slope, printed in KiB per 10,000
//! frames. "flat" means the fitted growth over the whole post-warm-up run is under 1 MiB.

use std::io::Write;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use edge_fer::capture::{decode_image_bytes, FailedFrame};
use edge_fer::pipeline::{self, PipelineConfig};
use edge_fer::{Classifier, FaceFinder, FaceFinderConfig, Frame, FrameSource};
use indicatif::{ProgressBar, ProgressStyle};

#[path = "../benches/common/mod.rs"]
mod common;

struct Options {
    frames: u64,
    every: u64,
    width: u32,
    height: u32,
    aligned: bool,
    csv: Option<String>,
}

fn options() -> Options {
    let mut o = Options {
        frames: 100_000,
        every: 1_000,
        width: 320,
        height: 240,
        aligned: false,
        csv: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || {
            args.next()
                .unwrap_or_else(|| usage(&format!("{arg} needs a value")))
        };
        match arg.as_str() {
            "--frames" => o.frames = value().parse().unwrap_or_else(|_| usage("--frames N")),
            "--every" => o.every = value().parse().unwrap_or_else(|_| usage("--every N")),
            "--size" => {
                let v = value();
                let (w, h) = v.split_once('x').unwrap_or_else(|| usage("--size WxH"));
                o.width = w.parse().unwrap_or_else(|_| usage("--size WxH"));
                o.height = h.parse().unwrap_or_else(|_| usage("--size WxH"));
            }
            "--aligned" => o.aligned = true,
            "--csv" => o.csv = Some(value()),
            _ => usage(&format!("unknown argument {arg}")),
        }
    }
    if o.every == 0 || o.frames < o.every * 10 {
        usage("--frames must be at least 10 x --every");
    }
    o
}

fn usage(problem: &str) -> ! {
    eprintln!("soak: {problem}");
    eprintln!("usage: soak [--frames N] [--every N] [--size WxH] [--aligned] [--csv FILE]");
    std::process::exit(2);
}

/// One RSS reading.
#[derive(Clone, Copy)]
struct Sample {
    frames: u64,
    rss_kib: u64,
    seconds: f64,
}

/// Cycles through JPEG-encoded frames, decoding each anew, and samples RSS every `every` frames.
struct Cycling {
    jpegs: Vec<Vec<u8>>,
    next: u64,
    total: u64,
    every: u64,
    started: Instant,
    samples: Arc<Mutex<Vec<Sample>>>,
    bar: ProgressBar,
}

impl FrameSource for Cycling {
    fn next_frame(&mut self) -> Option<Result<Frame, FailedFrame>> {
        if self.next >= self.total {
            return None;
        }
        if self.next.is_multiple_of(self.every) {
            self.samples.lock().unwrap().push(Sample {
                frames: self.next,
                rss_kib: rss_kib(),
                seconds: self.started.elapsed().as_secs_f64(),
            });
            self.bar.set_position(self.next);
        }
        let bytes = &self.jpegs[(self.next % self.jpegs.len() as u64) as usize];
        let rgb = decode_image_bytes(bytes).expect("the soak's own JPEG");
        self.next += 1;
        Some(Ok(Frame {
            rgb,
            index: self.next - 1,
            timestamp_ms: 0,
            source: "soak".into(),
        }))
    }
    fn is_live(&self) -> bool {
        false
    }
    fn describe(&self) -> String {
        format!("{} soak frames", self.total)
    }
}

/// Counts what the pipeline writes and keeps none of it.
#[derive(Clone, Default)]
struct Counting(Arc<Mutex<(u64, u64)>>);

impl Write for Counting {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut c = self.0.lock().unwrap();
        c.0 += buf.len() as u64;
        c.1 += buf.iter().filter(|&&b| b == b'\n').count() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn main() {
    let o = options();
    let jpegs = frames(o.width, o.height);
    let finder = (!o.aligned)
        .then(|| FaceFinder::load(&FaceFinderConfig::default()).expect("dlib models (./setup)"));
    let classifier = Classifier::builtin().expect("built-in model");

    let bar = ProgressBar::new(o.frames);
    bar.set_style(
        ProgressStyle::with_template("{spinner} {pos}/{len} frames {wide_bar} {per_sec} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let samples = Arc::new(Mutex::new(Vec::new()));
    let mut source = Cycling {
        jpegs,
        next: 0,
        total: o.frames,
        every: o.every,
        started: Instant::now(),
        samples: Arc::clone(&samples),
        bar: bar.clone(),
    };
    let out = Counting::default();
    let config = PipelineConfig {
        stop: Arc::new(AtomicBool::new(false)),
        ..PipelineConfig::default()
    };
    let started = Instant::now();
    let stats = pipeline::run(
        &mut source,
        finder,
        classifier,
        Box::new(out.clone()),
        &config,
    )
    .expect("pipeline");
    let seconds = started.elapsed().as_secs_f64();
    bar.finish_and_clear();
    let mut samples = samples.lock().unwrap().clone();
    samples.push(Sample {
        frames: o.frames,
        rss_kib: rss_kib(),
        seconds,
    });

    if let Some(path) = &o.csv {
        let mut text = String::from("frames,rss_kib,seconds\n");
        for s in &samples {
            text.push_str(&format!("{},{},{:.2}\n", s.frames, s.rss_kib, s.seconds));
        }
        std::fs::write(path, text).unwrap_or_else(|e| panic!("{path}: {e}"));
    }
    report(&o, &stats, &out, &samples, seconds);
}

fn report(o: &Options, stats: &pipeline::Stats, out: &Counting, samples: &[Sample], seconds: f64) {
    let (bytes, lines) = *out.0.lock().unwrap();
    let warm = o.frames / 10;
    let after: Vec<&Sample> = samples.iter().filter(|s| s.frames >= warm).collect();
    let xs: Vec<f64> = after.iter().map(|s| s.frames as f64).collect();
    let ys: Vec<f64> = after.iter().map(|s| s.rss_kib as f64).collect();
    let slope = least_squares_slope(&xs, &ys); // KiB per frame
    let span = (o.frames - warm) as f64;
    let (min, max) = ys
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), &y| (a.min(y), b.max(y)));

    println!(
        "soak: {} frames of {}x{} ({}), {:.0} s, {:.1} frames/s; {} faces, {} failed, {} lines ({:.1} MiB) written",
        stats.frames,
        o.width,
        o.height,
        if o.aligned { "aligned, no detection" } else { "detection + landmarks + classification" },
        seconds,
        stats.frames as f64 / seconds,
        stats.faces,
        stats.failed,
        lines,
        bytes as f64 / (1 << 20) as f64
    );
    println!("frames     RSS (MiB)   seconds");
    let step = (samples.len() / 20).max(1);
    for (i, s) in samples.iter().enumerate() {
        if i % step == 0 || i + 1 == samples.len() {
            println!(
                "{:>7} {:>10.1} {:>9.0}",
                s.frames,
                s.rss_kib as f64 / 1024.0,
                s.seconds
            );
        }
    }
    println!(
        "after warm-up (frame {warm} on, {} samples): RSS {:.1}..{:.1} MiB, slope {:+.2} KiB per 10,000 frames, fitted growth {:+.2} MiB over {} frames: {}",
        after.len(),
        min / 1024.0,
        max / 1024.0,
        slope * 10_000.0,
        slope * span / 1024.0,
        o.frames - warm,
        if (slope * span).abs() < 1024.0 { "flat" } else { "NOT flat" }
    );
    println!("machine: {}", common::machine());
}

fn least_squares_slope(xs: &[f64], ys: &[f64]) -> f64 {
    let n = xs.len() as f64;
    if n < 2.0 {
        return 0.0;
    }
    let (mx, my) = (xs.iter().sum::<f64>() / n, ys.iter().sum::<f64>() / n);
    let sxy: f64 = xs.iter().zip(ys).map(|(x, y)| (x - mx) * (y - my)).sum();
    let sxx: f64 = xs.iter().map(|x| (x - mx) * (x - mx)).sum();
    if sxx == 0.0 {
        0.0
    } else {
        sxy / sxx
    }
}

/// The fixture photos, each scaled to cover a `width` x `height` frame and cropped to it (as a
/// kiosk camera frames a person standing in front of it), JPEG-encoded.
fn frames(width: u32, height: u32) -> Vec<Vec<u8>> {
    common::PHOTOS
        .iter()
        .map(|name| {
            let img = common::photo(name);
            let scale =
                (width as f32 / img.width() as f32).max(height as f32 / img.height() as f32);
            let (w, h) = (
                ((img.width() as f32 * scale).ceil() as u32).max(width),
                ((img.height() as f32 * scale).ceil() as u32).max(height),
            );
            let big = image::imageops::resize(&img, w, h, image::imageops::FilterType::Triangle);
            let frame =
                image::imageops::crop_imm(&big, (w - width) / 2, (h - height) / 2, width, height)
                    .to_image();
            let mut bytes = Vec::new();
            image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 90)
                .encode_image(&frame)
                .expect("JPEG encoding");
            bytes
        })
        .collect()
}

fn rss_kib() -> u64 {
    common::status_kib("VmRSS:")
}
