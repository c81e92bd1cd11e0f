//! Per-layer convolution benchmark: every distinct convolution of VGG16 and ResNet50 at
//! 224x224, batch 1 and 8, through the engine's CPU kernel and through candle's `conv2d`,
//! as medians and GFLOP/s.
//!
//!     cargo run --release --example bench_conv [-- RUNS] [--json]
//!
//! `--json` prints one object per line for `scripts/bench_conv_torch.py`, which runs this
//! binary and PyTorch on the same shapes in one go and prints them side by side.

mod common;

use anyhow::Result;
use candle_core::{Device, Tensor};
use common::{median, time_runs};
use convscope::model::ops::{Conv2d, Op};
use convscope::model::Model;
use std::time::Instant;

/// One distinct convolution, with the first layer that has it.
struct Case {
    model: &'static str,
    layer: String,
    input: Vec<usize>,
    conv: Conv2d,
}

fn cases(dev: &Device) -> Result<Vec<Case>> {
    let mut out: Vec<Case> = Vec::new();
    for model in ["vgg16", "resnet50"] {
        let graph = Model::random(model, 224, 0, dev)?.graph;
        for node in graph.nodes() {
            let Op::Conv2d(conv) = &node.op else { continue };
            let input = graph.node(node.inputs[0]).shape.clone();
            let same = |c: &Case| {
                c.input == input
                    && c.conv.weight.dims() == conv.weight.dims()
                    && c.conv.window == conv.window
            };
            if !out.iter().any(same) {
                out.push(Case {
                    model,
                    layer: node.name.clone(),
                    input,
                    conv: conv.clone(),
                });
            }
        }
    }
    Ok(out)
}

fn main() -> Result<()> {
    let (runs, json) = common::runs_and_json(3);
    // The binary's allocator settings, so that output buffers cost what they cost in a pass.
    convscope::allocator::keep_large_buffers();
    let dev = Device::Cpu;
    if !json {
        println!(
            "{:<9} {:<22} {:>5} {:>16} {:>12} {:>10} {:>10}",
            "model", "layer", "batch", "input", "kernel", "ours GF/s", "candle GF/s"
        );
    }
    for batch in [1, 8] {
        for case in cases(&dev)? {
            let c = &case.conv;
            // torchvision's convolutions are square: one stride, padding and dilation.
            let u = c.window.uniform().expect("a uniform window");
            let mut shape = case.input.clone();
            shape[0] = batch;
            let x = Tensor::randn(0f32, 1.0, shape.clone(), &dev)?;
            let out = c.apply(&x)?;
            let (co, cg, kh, kw) = c.weight.dims4()?;
            let flops = 2.0 * (out.elem_count() * cg * kh * kw) as f64;
            let ours = time_runs(runs, || {
                c.apply(&x)?;
                Ok(())
            })?;
            let candle = time_runs(runs, || {
                x.conv2d(&c.weight, u.padding, u.stride, u.dilation, c.groups)?;
                Ok(())
            })?;
            let kernel = format!("{kh}x{kw}/{} {}->{co}", u.stride, cg * c.groups);
            if json {
                println!(
                    "{{\"model\":\"{}\",\"layer\":\"{}\",\"batch\":{batch},\"input\":{:?},\
                     \"weight\":{:?},\"stride\":{},\"padding\":{},\"flops\":{flops},\
                     \"ours_s\":{ours},\"candle_s\":{candle}}}",
                    case.model,
                    case.layer,
                    shape,
                    c.weight.dims(),
                    u.stride,
                    u.padding
                );
            } else {
                println!(
                    "{:<9} {:<22} {:>5} {:>16} {:>12} {:>10.0} {:>10.0}",
                    case.model,
                    case.layer,
                    batch,
                    format!("{}x{}x{}", shape[1], shape[2], shape[3]),
                    kernel,
                    flops / ours / 1e9,
                    flops / candle / 1e9
                );
            }
        }
    }
    // The multiply's own rate on a square problem, the ceiling any layer can reach here.
    let n = 2048;
    let a = Tensor::randn(0f32, 1.0, (n, n), &dev)?;
    let b = Tensor::randn(0f32, 1.0, (n, n), &dev)?;
    let mut times = Vec::new();
    for _ in 0..=runs {
        let t = Instant::now();
        a.matmul(&b)?;
        times.push(t.elapsed().as_secs_f64());
    }
    let peak = 2.0 * (n as f64).powi(3) / median(times) / 1e9;
    if json {
        println!("{{\"matmul_gflops\":{peak}}}");
    } else {
        println!("matmul {n}x{n}: {peak:.0} GFLOP/s");
    }
    Ok(())
}
