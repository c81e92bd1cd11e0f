//! Forward-pass benchmark: VGG16 and ResNet50 (or the `--arch` names in `BENCH_MODELS`,
//! comma-separated) at 224x224 with random weights, on the CPU or the device named by
//! `BENCH_DEVICE` (e.g. `cuda:0`), medians of several runs, beside the machine's
//! matrix-multiply rate.
//!
//!     cargo run --release --example bench_forward [-- RUNS]
//!
//! The PyTorch side of the comparison: `python scripts/bench_forward_torch.py`.

mod common;

use anyhow::Result;
use candle_core::Tensor;
use common::{arg_or, models, time_runs};
use convscope::model::{Keep, Model};

fn main() -> Result<()> {
    let runs = arg_or(5)?;
    let dev = common::device()?;
    let n = 2048;
    let a = Tensor::randn(0f32, 1.0, (n, n), &dev)?;
    let b = Tensor::randn(0f32, 1.0, (n, n), &dev)?;
    let t = time_runs(runs, || {
        a.matmul(&b)?;
        dev.synchronize()?;
        Ok(())
    })?;
    println!(
        "matmul {n}x{n}: median {:.1} ms, {:.0} GFLOP/s",
        t * 1e3,
        2.0 * (n as f64).powi(3) / t / 1e9
    );
    for name in models(&["vgg16", "resnet50"]) {
        let graph = Model::random(&name, 224, 0, &dev)?.graph;
        let x = Tensor::randn(0f32, 1.0, (1, 3, 224, 224), &dev)?;
        let t = time_runs(runs, || {
            graph.forward(&x, &Keep::Only(vec![]))?;
            dev.synchronize()?;
            Ok(())
        })?;
        println!(
            "{name} forward 1x3x224x224: median {:.1} ms over {runs} runs",
            t * 1e3
        );
    }
    Ok(())
}
