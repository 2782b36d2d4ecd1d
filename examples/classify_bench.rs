//! The classifier alone, in tract: latency of a model card's ONNX at a given batch size, and the
//! arithmetic it does (multiply-adds counted by tract from the graph) per second, to set beside
//! the CPU's peak. onnxruntime's figure for the same file comes from benches/peers/peers.py.
//!
//! ```sh
//! cargo run --release --example classify_bench -- [CARD|builtin] [--batch 1] [--runs 200] [--threads N]
//! ```
//!
//! Where the time goes inside tract's plan: `examples/onnx_latency.rs --profile`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use edge_fer::model_card::Layout;
use edge_fer::Classifier;

fn main() -> anyhow::Result<()> {
    let mut card = "builtin".to_string();
    let (mut batch, mut runs, mut threads) = (1usize, 200usize, None);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--batch" => batch = args.next().unwrap_or_default().parse()?,
            "--runs" => runs = args.next().unwrap_or_default().parse()?,
            "--threads" => threads = Some(args.next().unwrap_or_default().parse()?),
            _ => card = a,
        }
    }
    let classifier = if card == "builtin" {
        Classifier::builtin()?
    } else {
        Classifier::load(&PathBuf::from(&card))?
    }
    .with_threads(threads)?;
    let spec = &classifier.card().input;
    let (h, w, c) = (
        spec.height as usize,
        spec.width as usize,
        spec.channels.count(),
    );
    let shape: Vec<usize> = match spec.layout {
        Layout::Nchw => vec![batch, c, h, w],
        Layout::Nhwc => vec![batch, h, w, c],
    };
    // Deterministic pseudo-random input in [-1, 1].
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let input: Vec<f32> = (0..shape.iter().product::<usize>())
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect();

    for _ in 0..10 {
        classifier.run_raw(&input, batch)?;
    }
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            classifier.run_raw(&input, batch).expect("inference");
            t.elapsed()
        })
        .collect::<Vec<_>>();
    times.sort_unstable();
    let median = times[runs / 2].as_secs_f64();
    let p95 = times[(runs * 95 / 100).min(runs - 1)].as_secs_f64();

    let fma = classifier.multiply_adds() * batch as u64;
    let flops = 2.0 * fma as f64; // one multiply-add = 2 floating-point operations
    println!(
        "tract: {} batch {batch}, {h}x{w}x{c}, {} thread(s): median {:.3} ms (p95 {:.3}), {:.1} images/s; \
         {:.3} GFLOP per image; achieved {:.1} GFLOP/s",
        classifier.card().name,
        classifier.threads(),
        median * 1e3,
        p95 * 1e3,
        batch as f64 / median,
        flops / batch as f64 / 1e9,
        flops / median / 1e9
    );
    Ok(())
}
