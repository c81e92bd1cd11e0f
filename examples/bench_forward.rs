//! Forward-pass benchmark: VGG16 and ResNet50 at 224x224 on the CPU with random weights,
//! medians of several runs, beside the machine's matrix-multiply rate.
//!
//!     cargo run --release --example bench_forward [-- RUNS]
//!
//! The PyTorch side of the comparison: `python scripts/bench_forward_torch.py`.

use std::time::Instant;

use anyhow::Result;
use candle_core::{Device, Tensor};
use convscope::model::{Arch, Keep, RandomWeights};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn time_runs(runs: usize, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    f()?;
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        f()?;
        times.push(t.elapsed().as_secs_f64());
    }
    Ok(median(times))
}

fn main() -> Result<()> {
    let runs: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(5);
    let dev = Device::Cpu;
    let n = 2048;
    let a = Tensor::randn(0f32, 1.0, (n, n), &dev)?;
    let b = Tensor::randn(0f32, 1.0, (n, n), &dev)?;
    let t = time_runs(runs, || {
        a.matmul(&b)?;
        Ok(())
    })?;
    println!(
        "matmul {n}x{n}: median {:.1} ms, {:.0} GFLOP/s",
        t * 1e3,
        2.0 * (n as f64).powi(3) / t / 1e9
    );
    for name in ["vgg16", "resnet50"] {
        let arch = Arch::standard(name, 1000)?;
        let graph = arch.build((3, 224, 224), &mut RandomWeights::new(0, dev.clone()))?;
        let x = Tensor::randn(0f32, 1.0, (1, 3, 224, 224), &dev)?;
        let t = time_runs(runs, || {
            graph.forward(&x, &Keep::Only(vec![]))?;
            Ok(())
        })?;
        println!(
            "{name} forward 1x3x224x224: median {:.1} ms over {runs} runs",
            t * 1e3
        );
    }
    Ok(())
}
