//! Filter-pattern benchmark: 64 channels of VGG16's `features.17` (block 4's first conv),
//! classic recipe, 40 steps at 150x150, random weights; wall time and peak memory. On the CPU or
//! the device named by `BENCH_DEVICE` (e.g. `cuda:0`).
//!
//!     cargo run --release --example bench_filters [-- CHANNELS]
//!
//! The PyTorch side (one filter at a time, as the classic notebook does):
//! `python scripts/bench_filters_torch.py`.

mod common;

use std::sync::atomic::AtomicBool;
use std::time::Instant;

use anyhow::Result;
use common::arg_or;
use convscope::model::Model;
use convscope::viz::filters::{optimise, FilterSettings, Recipe};

/// Peak resident memory of this process so far, from /proc (Linux).
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn main() -> Result<()> {
    let channels = arg_or(64)?;
    let dev = common::device()?;
    let model = Model::random("vgg16", 224, 0, &dev)?;
    let layer = model.graph.find("features.17")?;
    let before = peak_rss_mib().unwrap_or(0.0);
    let settings = FilterSettings::new(Recipe::Classic);
    let ids: Vec<usize> = (0..channels).collect();
    let t = Instant::now();
    let patterns = optimise(
        &model,
        layer,
        &ids,
        &settings,
        &mut |_, _| {},
        &AtomicBool::new(false),
    )?;
    let secs = t.elapsed().as_secs_f64();
    println!(
        "vgg16 features.17, {} channels, classic, {} steps at {}px: {:.1} s ({:.2} s per channel); peak RSS {:.0} MiB (model alone {:.0} MiB)",
        patterns.len(),
        settings.steps,
        settings.size,
        secs,
        secs / channels as f64,
        peak_rss_mib().unwrap_or(0.0),
        before
    );
    Ok(())
}
