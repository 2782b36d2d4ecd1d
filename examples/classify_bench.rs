//! The classifier alone, in tract: latency of a model card's ONNX at a given batch size, and the
//! arithmetic it does (multiply-adds counted by tract from the graph) per second, to set beside
//! the CPU's peak. onnxruntime's figure for the same file comes from benches/peers/peers.py.
//!
//! ```sh
//! cargo run --release --example classify_bench -- [CARD|builtin] [--batch 1] [--runs 200]
//! ```
//!
//! Where the time goes inside tract's plan: `examples/onnx_latency.rs --profile`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use edge_fer::model_card::Layout;
use edge_fer::Classifier;
use tract_onnx::prelude::*;

fn main() -> anyhow::Result<()> {
    let mut card = "builtin".to_string();
    let (mut batch, mut runs) = (1usize, 200usize);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--batch" => batch = args.next().unwrap_or_default().parse()?,
            "--runs" => runs = args.next().unwrap_or_default().parse()?,
            _ => card = a,
        }
    }
    let classifier = if card == "builtin" {
        Classifier::builtin()?
    } else {
        Classifier::load(&PathBuf::from(&card))?
    };
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

    let fma = multiply_adds(&classifier, &shape)?;
    let flops = 2.0 * fma as f64; // one multiply-add = 2 floating-point operations
    println!(
        "tract: {} batch {batch}, {h}x{w}x{c}: median {:.3} ms (p95 {:.3}), {:.1} images/s; \
         {:.3} GFLOP per image; achieved {:.1} GFLOP/s",
        classifier.card().name,
        median * 1e3,
        p95 * 1e3,
        batch as f64 / median,
        flops / batch as f64 / 1e9,
        flops / median / 1e9
    );
    Ok(())
}

/// Multiply-adds of one run at this input shape, summed over the graph's nodes as tract counts
/// them.
fn multiply_adds(classifier: &Classifier, shape: &[usize]) -> anyhow::Result<u64> {
    let card = classifier.card();
    let path = card.model_path(classifier.card_path());
    let onnx = if path.is_file() {
        std::fs::read(&path)?
    } else {
        edge_fer::classify::BUILTIN_ONNX.to_vec()
    };
    let model = tract_onnx::onnx()
        .model_for_read(&mut &onnx[..])?
        .with_input_fact(0, f32::fact(shape).into())?
        .into_typed()?
        .into_decluttered()?;
    let mut total = 0u64;
    for node in model.nodes() {
        let inputs: Vec<TypedFact> = node
            .inputs
            .iter()
            .map(|o| model.outlet_fact(*o).cloned())
            .collect::<TractResult<_>>()?;
        let refs: Vec<&TypedFact> = inputs.iter().collect();
        for (cost, count) in node.op.cost(&refs)? {
            if matches!(cost, tract_onnx::tract_core::ops::Cost::FMA(_)) {
                total += count
                    .as_i64()
                    .ok_or_else(|| anyhow::anyhow!("symbolic cost {count}"))?
                    as u64;
            }
        }
    }
    Ok(total)
}
