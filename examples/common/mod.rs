//! Timing helpers shared by the benchmark examples.
#![allow(dead_code)]

use std::time::Instant;

use anyhow::Result;
use candle_core::Device;

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Median seconds of `runs` calls after one warm-up call.
pub fn time_runs(runs: usize, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    f()?;
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        f()?;
        times.push(t.elapsed().as_secs_f64());
    }
    Ok(median(times))
}

/// The first command-line argument as a number, or `default`.
pub fn arg_or(default: usize) -> Result<usize> {
    Ok(std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(default))
}

/// The device named by `BENCH_DEVICE` (`cpu`, `cuda`, `cuda:N`), the CPU when unset; also tunes
/// the allocator as the binary does, so that benchmarks measure what users run.
pub fn device() -> Result<Device> {
    convscope::allocator::keep_large_buffers();
    convscope::model::device::parse_device(
        &std::env::var("BENCH_DEVICE").unwrap_or_else(|_| "cpu".into()),
    )
}

/// The architectures named by `BENCH_MODELS` (comma-separated `--arch` names), else `default`.
pub fn models(default: &[&str]) -> Vec<String> {
    match std::env::var("BENCH_MODELS") {
        Ok(list) if !list.trim().is_empty() => {
            list.split(',').map(|s| s.trim().to_string()).collect()
        }
        _ => default.iter().map(|s| s.to_string()).collect(),
    }
}

/// The command line of a benchmark that prints JSON for its PyTorch side: the first number is
/// the run count (`default` without one), `--json` asks for JSON.
pub fn runs_and_json(default: usize) -> (usize, bool) {
    runs_and_flag(default, "--json")
}

/// The first number on the command line (the run count, `default` without one), and whether
/// `flag` is there.
pub fn runs_and_flag(default: usize, flag: &str) -> (usize, bool) {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runs = args
        .iter()
        .find_map(|a| a.parse::<usize>().ok())
        .unwrap_or(default);
    (runs, args.iter().any(|a| a == flag))
}
