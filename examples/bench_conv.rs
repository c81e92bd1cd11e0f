//! Per-layer convolution benchmark: every distinct convolution of VGG16 and ResNet50 at
//! 224x224, batch 1 and 8, through the engine's CPU kernel and through candle's `conv2d`,
//! as medians and GFLOP/s. Each layer runs as in a pass, on the thread pool's workers (see
//! `convscope::model::workers`).
//!
//!     cargo run --release --example bench_conv [-- RUNS] [--serve]
//!
//! `--serve` is for `scripts/bench_conv_torch.py`, which times PyTorch on the same shapes
//! layer by layer in turn with this binary: it prints each case as one JSON object per line,
//! then an empty line, then answers each line `INDEX RUNS` read from its input with the
//! engine's median seconds for that case.

mod common;

use anyhow::Result;
use candle_core::{Device, Tensor};
use common::{median, time_runs};
use convscope::model::ops::{Conv2d, Op, Operation};
use convscope::model::workers::on_workers;
use convscope::model::Model;
use std::io::Write;
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
    let (runs, serve) = common::runs_and_flag(3, "--serve");
    // The binary's allocator settings, so that output buffers cost what they cost in a pass.
    convscope::allocator::keep_large_buffers();
    let dev = Device::Cpu;
    let cases = cases(&dev)?;
    let mut all = Vec::new();
    for batch in [1, 8] {
        for case in &cases {
            let mut shape = case.input.clone();
            shape[0] = batch;
            all.push((case, Tensor::randn(0f32, 1.0, shape, &dev)?));
        }
    }
    if serve {
        return serve_cases(&all);
    }
    println!(
        "{:<9} {:<22} {:>5} {:>16} {:>12} {:>10} {:>10}",
        "model", "layer", "batch", "input", "kernel", "ours GF/s", "candle GF/s"
    );
    for (case, x) in &all {
        let c = &case.conv;
        // torchvision's convolutions are square: one stride, padding and dilation.
        let u = c.window.uniform().expect("a uniform window");
        let ours = on_workers(x.device(), || {
            time_runs(runs, || {
                c.apply(x)?;
                Ok(())
            })
        })?;
        let candle = on_workers(x.device(), || {
            time_runs(runs, || {
                x.conv2d(&c.weight, u.padding, u.stride, u.dilation, c.groups)?;
                Ok(())
            })
        })?;
        let (co, cg, kh, kw) = c.weight.dims4()?;
        let s = x.dims();
        let flops = flops(c, x)?;
        println!(
            "{:<9} {:<22} {:>5} {:>16} {:>12} {:>10.0} {:>10.0}",
            case.model,
            case.layer,
            s[0],
            format!("{}x{}x{}", s[1], s[2], s[3]),
            format!("{kh}x{kw}/{} {}->{co}", u.stride, cg * c.groups),
            flops / ours / 1e9,
            flops / candle / 1e9
        );
    }
    println!("matmul 2048x2048: {:.0} GFLOP/s", matmul_rate(runs)?);
    Ok(())
}

/// Multiply-adds of `c` applied to `x`, twice (GFLOP counts both).
fn flops(c: &Conv2d, x: &Tensor) -> Result<f64> {
    let (_, cg, kh, kw) = c.weight.dims4()?;
    let out = c.output_shape(&[x.dims()]).map_err(anyhow::Error::msg)?;
    Ok(2.0 * (out.iter().product::<usize>() * cg * kh * kw) as f64)
}

/// The multiply's own rate on a square problem, the ceiling any layer can reach here.
fn matmul_rate(runs: usize) -> Result<f64> {
    let n = 2048;
    let a = Tensor::randn(0f32, 1.0, (n, n), &Device::Cpu)?;
    let b = Tensor::randn(0f32, 1.0, (n, n), &Device::Cpu)?;
    let mut times = Vec::new();
    for _ in 0..=runs {
        let t = Instant::now();
        a.matmul(&b)?;
        times.push(t.elapsed().as_secs_f64());
    }
    Ok(2.0 * (n as f64).powi(3) / median(times) / 1e9)
}

/// Seconds a served turn runs its layer before timing it: after the other side's turn, this
/// machine's cores run at half speed for a while (measured: ~200 against ~350 GFLOP/s on the
/// same layer after a 0.3 s pause).
const WARM_SECONDS: f64 = 0.3;

/// The cases as JSON, an empty line, then one timing per request line `INDEX RUNS` (and the
/// matmul rate for `matmul RUNS`) until the input ends.
fn serve_cases(all: &[(&Case, Tensor)]) -> Result<()> {
    let mut stdout = std::io::stdout();
    for (case, x) in all {
        let c = &case.conv;
        let u = c.window.uniform().expect("a uniform window");
        writeln!(
            stdout,
            "{{\"model\":\"{}\",\"layer\":\"{}\",\"input\":{:?},\"weight\":{:?},\
             \"stride\":{},\"padding\":{},\"flops\":{}}}",
            case.model,
            case.layer,
            x.dims(),
            c.weight.dims(),
            u.stride,
            u.padding,
            flops(c, x)?
        )?;
    }
    writeln!(stdout)?;
    stdout.flush()?;
    for line in std::io::stdin().lines() {
        let line = line?;
        let mut words = line.split_whitespace();
        let (what, runs) = (words.next(), words.next().map(str::parse::<usize>));
        let seconds = match (what, runs) {
            (Some("matmul"), Some(Ok(runs))) => matmul_rate(runs)?,
            (Some(i), Some(Ok(runs))) => {
                let (case, x) = &all[i.parse::<usize>()?];
                let apply = || {
                    case.conv.apply(x)?;
                    Ok(())
                };
                on_workers(x.device(), || {
                    // A turn starts on cores that may have idled: run for a while first.
                    let start = Instant::now();
                    while start.elapsed().as_secs_f64() < WARM_SECONDS {
                        apply()?;
                    }
                    time_runs(runs, apply)
                })?
            }
            _ => anyhow::bail!("expected `INDEX RUNS` or `matmul RUNS`, got {line:?}"),
        };
        writeln!(stdout, "{seconds}")?;
        stdout.flush()?;
    }
    Ok(())
}
