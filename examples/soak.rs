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

use clap::{CommandFactory, Parser};
use edge_fer::capture::{decode_image_bytes, Synthetic};
use edge_fer::pipeline::{self, PipelineConfig};
use edge_fer::{Classifier, FaceFinder, FaceFinderConfig};
use indicatif::{ProgressBar, ProgressStyle};

#[path = "../benches/common/mod.rs"]
mod common;

/// Soak run: many frames through the real pipeline, resident memory sampled as it goes.
#[derive(Debug, Parser)]
#[command(name = "soak")]
struct Options {
    /// Frames to run (at least 10 x --every).
    #[arg(long, default_value_t = 100_000)]
    frames: u64,
    /// Read RSS every N frames.
    #[arg(long, value_name = "N", default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(1..))]
    every: u64,
    /// Frame size.
    #[arg(long, value_name = "WxH", default_value = "320x240", value_parser = parse_size)]
    size: (u32, u32),
    /// The frames are aligned crops: skip detection.
    #[arg(long)]
    aligned: bool,
    /// Also write every RSS sample to FILE (frames,rss_kib,seconds).
    #[arg(long, value_name = "FILE")]
    csv: Option<String>,
}

fn parse_size(v: &str) -> Result<(u32, u32), String> {
    let bad = || format!("{v:?}: expected WxH, e.g. 320x240");
    let (w, h) = v.split_once('x').ok_or_else(bad)?;
    Ok((w.parse().map_err(|_| bad())?, h.parse().map_err(|_| bad())?))
}

fn options() -> Options {
    let o = Options::parse();
    if o.frames < o.every * 10 {
        Options::command()
            .error(
                clap::error::ErrorKind::ValueValidation,
                "--frames must be at least 10 x --every",
            )
            .exit();
    }
    o
}

/// One RSS reading.
#[derive(Clone, Copy)]
struct Sample {
    frames: u64,
    rss_kib: u64,
    seconds: f64,
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
    let jpegs = frames(o.size.0, o.size.1);
    let finder = (!o.aligned)
        .then(|| FaceFinder::load(&FaceFinderConfig::default()).expect("dlib models (./setup)"));
    let classifier = Classifier::builtin().expect("built-in model");

    let bar = ProgressBar::new(o.frames);
    bar.set_style(
        ProgressStyle::with_template("{spinner} {pos}/{len} frames {wide_bar} {per_sec} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let samples = Arc::new(Mutex::new(Vec::new()));
    // Every frame decoded anew from its JPEG bytes; RSS sampled every `every` frames.
    let (recorded, shown, every, started) =
        (Arc::clone(&samples), bar.clone(), o.every, Instant::now());
    let mut source = Synthetic::new(o.frames, move |i| {
        if i.is_multiple_of(every) {
            recorded.lock().unwrap().push(Sample {
                frames: i,
                rss_kib: rss_kib(),
                seconds: started.elapsed().as_secs_f64(),
            });
            shown.set_position(i);
        }
        decode_image_bytes(&jpegs[(i % jpegs.len() as u64) as usize]).expect("the soak's own JPEG")
    })
    .named("soak");
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
        o.size.0,
        o.size.1,
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
