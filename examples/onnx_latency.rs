//! Latency of any ONNX file in tract, planned as edge-fer plans its classifier (typed,
//! decluttered, optimised for one fixed input shape, one thread): for the one-node models that
//! `benches/peers/tract_gap` cuts out of the shipped classifier, so that tract and onnxruntime
//! are compared operator by operator on the same file.
//!
//! ```sh
//! cargo run --release --example onnx_latency -- MODEL.onnx 1x8x62x62 [--runs 500]
//! ```

use std::time::{Duration, Instant};

use anyhow::Context;
use tract_onnx::prelude::*;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .context("usage: onnx_latency MODEL.onnx SHAPE [--runs N]")?;
    let shape: Vec<usize> = args
        .next()
        .context("missing SHAPE (like 1x8x62x62)")?
        .split('x')
        .map(str::parse)
        .collect::<Result<_, _>>()
        .context("SHAPE is numbers joined by x")?;
    let mut runs = 500usize;
    while let Some(a) = args.next() {
        if a == "--runs" {
            runs = args.next().unwrap_or_default().parse()?;
        }
    }
    let plan = tract_onnx::onnx()
        .model_for_path(&path)
        .with_context(|| format!("reading {path}"))?
        .with_input_fact(0, f32::fact(&shape).into())?
        .into_typed()?
        .into_decluttered()?
        .into_optimized()?
        .into_runnable()?;
    let input = Tensor::from_shape(&shape, &vec![0.5f32; shape.iter().product()])?;
    let mut state = plan.spawn()?;
    for _ in 0..20 {
        state.run(tvec!(input.clone().into()))?;
    }
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            state.run(tvec!(input.clone().into())).expect("run");
            t.elapsed()
        })
        .collect();
    times.sort_unstable();
    println!(
        "tract {path} {}: median {:.4} ms of {runs}",
        shape
            .iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join("x"),
        times[runs / 2].as_secs_f64() * 1e3
    );
    Ok(())
}
