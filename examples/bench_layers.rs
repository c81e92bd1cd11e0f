//! Where a forward pass spends its time: every node of a model timed on its own (its inputs
//! from one full forward pass), summed by kind — convolutions split into full, grouped,
//! depthwise and pointwise — with GFLOP/s for the convolutions and the slowest nodes listed.
//!
//!     BENCH_MODELS=efficientnet_b0,convnext_tiny cargo run --release --example bench_layers [-- RUNS] [--json]
//!
//! `--json` prints one object per node for `scripts/bench_layers_torch.py`, which times the
//! same models' modules in PyTorch and prints both side by side, by kind.

mod common;

use std::collections::BTreeMap;

use anyhow::Result;
use candle_core::Tensor;
use common::{models, time_runs};
use convscope::model::ops::Op;
use convscope::model::{Keep, Model};

/// The group a node's time is summed under.
fn category(op: &Op) -> String {
    match op {
        Op::Conv2d(c) => {
            let (co, cg, kh, kw) = c.weight.dims4().unwrap_or((0, 0, 0, 0));
            let ci = cg * c.groups;
            if c.groups > 1 && c.groups == ci && c.groups == co {
                format!("conv depthwise {kh}x{kw}")
            } else if c.groups > 1 {
                "conv grouped".into()
            } else if kh * kw == 1 {
                "conv pointwise".into()
            } else {
                format!("conv {kh}x{kw}")
            }
        }
        other => other.kind().to_string(),
    }
}

/// Multiply-adds times two of a convolution or linear node, zero for the rest.
fn flops(op: &Op, out: &[usize]) -> f64 {
    match op {
        Op::Conv2d(c) => {
            let (_, cg, kh, kw) = c.weight.dims4().unwrap_or((0, 0, 0, 0));
            2.0 * (out.iter().product::<usize>() * cg * kh * kw) as f64
        }
        Op::Linear(l) => 2.0 * l.weight.elem_count() as f64 * out[0] as f64,
        _ => 0.0,
    }
}

fn main() -> Result<()> {
    let (runs, json) = common::runs_and_json(5);
    let dev = common::device()?;
    for name in models(&["efficientnet_b0", "convnext_tiny"]) {
        let model = Model::random(&name, 224, 0, &dev)?;
        let graph = &model.graph;
        let x = Tensor::randn(0f32, 1.0, (1, 3, 224, 224), &dev)?;
        let forward = time_runs(runs, || {
            graph.forward(&x, &Keep::Only(vec![]))?;
            dev.synchronize()?;
            Ok(())
        })?;
        if json {
            println!("{{\"forward\":\"{name}\",\"forward_s\":{forward}}}");
        }
        let acts = graph.forward(&x, &Keep::All)?;
        let mut by_kind: BTreeMap<String, (f64, f64, usize)> = BTreeMap::new();
        let mut nodes = Vec::new();
        for (id, node) in graph.nodes().iter().enumerate().skip(1) {
            let inputs: Vec<&Tensor> = node
                .inputs
                .iter()
                .map(|&i| acts.get(i).expect("kept"))
                .collect();
            let t = time_runs(runs, || {
                node.op.forward(&inputs)?;
                dev.synchronize()?;
                Ok(())
            })?;
            let out = acts.get(id).expect("kept").dims().to_vec();
            let f = flops(&node.op, &out);
            let kind = category(&node.op);
            if json {
                println!(
                    "{{\"model\":\"{name}\",\"layer\":\"{}\",\"category\":\"{kind}\",\
                     \"seconds\":{t},\"flops\":{f}}}",
                    node.name
                );
            }
            let e = by_kind.entry(kind.clone()).or_default();
            e.0 += t;
            e.1 += f;
            e.2 += 1;
            nodes.push((t, node.name.clone(), kind));
        }
        if json {
            continue;
        }
        let total: f64 = by_kind.values().map(|v| v.0).sum();
        println!(
            "{name}: forward {:.1} ms; sum of node medians {:.1} ms",
            forward * 1e3,
            total * 1e3
        );
        let mut kinds: Vec<_> = by_kind.into_iter().collect();
        kinds.sort_by(|a, b| b.1 .0.total_cmp(&a.1 .0));
        for (kind, (t, f, n)) in kinds {
            let rate = if f > 0.0 {
                format!("{:>7.1} GFLOP/s", f / t / 1e9)
            } else {
                String::new()
            };
            println!(
                "  {kind:<26} {n:>4} nodes {:>8.2} ms {:>5.1}% {rate}",
                t * 1e3,
                100.0 * t / total
            );
        }
        nodes.sort_by(|a, b| b.0.total_cmp(&a.0));
        println!("  slowest nodes:");
        for (t, layer, kind) in nodes.iter().take(8) {
            println!("    {layer:<40} {kind:<24} {:>7.2} ms", t * 1e3);
        }
    }
    Ok(())
}
