//! Latency of any ONNX file in tract, planned as edge-fer plans its classifier (typed,
//! decluttered, optimised for one fixed input shape, one thread): for the one-node models that
//! `benches/peers/tract_gap` cuts out of the shipped classifier, so that tract and onnxruntime
//! are compared operator by operator on the same file.
//!
//! ```sh
//! cargo run --release --example onnx_latency -- MODEL.onnx 1x8x62x62 [--runs 500] [--profile]
//! ```
//!
//! `--profile` also times each node of the optimised plan over the runs (tract's own evaluation
//! hook, `run_plan_with_eval`) and prints where the time goes, by operator and the slowest nodes.

use std::time::{Duration, Instant};

use anyhow::Context;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::prelude::multithread::Executor;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .context("usage: onnx_latency MODEL.onnx SHAPE [--runs N] [--profile]")?;
    let shape: Vec<usize> = args
        .next()
        .context("missing SHAPE (like 1x8x62x62)")?
        .split('x')
        .map(str::parse)
        .collect::<Result<_, _>>()
        .context("SHAPE is numbers joined by x")?;
    let (mut runs, mut profile, mut threads) = (500usize, false, 1usize);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--runs" => runs = args.next().unwrap_or_default().parse()?,
            "--threads" => threads = args.next().unwrap_or_default().parse()?,
            "--profile" => profile = true,
            other => anyhow::bail!("unknown argument {other}"),
        }
    }
    let plan = tract_onnx::onnx()
        .model_for_path(&path)
        .with_context(|| format!("reading {path}"))?
        .with_input_fact(0, f32::fact(&shape).into())?
        .into_typed()?
        .into_decluttered()?
        .into_optimized()?
        .into_runnable_with_options(&RunOptions {
            executor: (threads > 1).then(|| Executor::multithread(threads)),
            ..RunOptions::default()
        })?;
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
    if profile {
        print_profile(&plan, &input, runs)?;
    }
    Ok(())
}

/// Times every node of the plan over `runs` runs of `image` and prints the totals by operator
/// and the ten slowest nodes, as shares of the whole.
fn print_profile(
    plan: &Arc<TypedRunnableModel>,
    image: &Tensor,
    runs: usize,
) -> anyhow::Result<()> {
    let mut by_node: std::collections::HashMap<usize, Duration> = Default::default();
    let mut state = plan.spawn()?;
    let mut whole = Duration::ZERO;
    for _ in 0..runs {
        let start = Instant::now();
        state.run_plan_with_eval(
            tvec!(image.clone().into()),
            |ctx, op_state, node, inputs| {
                let t = Instant::now();
                let out = tract_onnx::tract_core::plan::eval(ctx, op_state, node, inputs);
                *by_node.entry(node.id).or_default() += t.elapsed();
                out
            },
        )?;
        whole += start.elapsed();
    }
    let model = plan.model();
    let mut by_op: std::collections::BTreeMap<String, (Duration, usize)> = Default::default();
    for (&id, &t) in &by_node {
        let e = by_op
            .entry(model.node(id).op.name().to_string())
            .or_default();
        e.0 += t;
        e.1 += 1;
    }
    let per_run = |t: Duration| t.as_secs_f64() * 1e3 / runs as f64;
    let in_nodes: Duration = by_node.values().sum();
    println!(
        "profile: {:.3} ms per run, {:.3} ms of it in {} nodes (the rest: the plan's own work)",
        per_run(whole),
        per_run(in_nodes),
        by_node.len()
    );
    let mut ops: Vec<_> = by_op.into_iter().collect();
    ops.sort_by_key(|op| std::cmp::Reverse(op.1 .0));
    for (op, (t, n)) in ops {
        println!(
            "  {op:<24} {n:>4} nodes  {:>7.3} ms  {:>5.1} %",
            per_run(t),
            100.0 * t.as_secs_f64() / whole.as_secs_f64()
        );
    }
    let mut nodes: Vec<_> = by_node.into_iter().collect();
    nodes.sort_by_key(|n| std::cmp::Reverse(n.1));
    println!("  slowest nodes:");
    for (id, t) in nodes.into_iter().take(10) {
        let node = model.node(id);
        let out = model.outlet_fact(OutletId::new(id, 0))?;
        println!(
            "    {:>7.3} ms  {} ({}) -> {:?}",
            per_run(t),
            node.name,
            node.op.name(),
            out.shape
        );
    }
    Ok(())
}
