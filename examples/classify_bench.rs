//! The classifier alone, in tract: latency of a model card's ONNX at a given batch size, and the
//! arithmetic it does (multiply-adds counted by tract from the graph) per second, to set beside
//! the CPU's peak. onnxruntime's figure for the same file comes from benches/peers/peers.py.
//!
//! ```sh
//! cargo run --release --example classify_bench -- [CARD|builtin] [--batch 1] [--runs 200] [--profile]
//! ```
//!
//! `--profile` also times each node of tract's optimised plan over the runs (tract's own
//! evaluation hook, `run_plan_with_eval`) and prints where the time goes, by operator and by node.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use edge_fer::model_card::Layout;
use edge_fer::Classifier;
use tract_onnx::prelude::*;

fn main() -> anyhow::Result<()> {
    let mut card = "builtin".to_string();
    let (mut batch, mut runs, mut profile) = (1usize, 200usize, false);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--batch" => batch = args.next().unwrap_or_default().parse()?,
            "--runs" => runs = args.next().unwrap_or_default().parse()?,
            "--profile" => profile = true,
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
    if profile {
        print_profile(&classifier, &shape, &input, runs)?;
    }
    Ok(())
}

/// Times every node of the plan over `runs` runs of one image and prints the totals by operator
/// and the ten slowest nodes, as shares of the whole.
fn print_profile(
    classifier: &Classifier,
    shape: &[usize],
    input: &[f32],
    runs: usize,
) -> anyhow::Result<()> {
    let plan = classifier.plan();
    let mut one = shape.to_vec();
    one[0] = 1;
    let image = Tensor::from_shape(&one, &input[..one.iter().product::<usize>()])?;
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
