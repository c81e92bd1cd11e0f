//! Grad-CAM benchmark: time to the first map (forward + backward) and per class switch with the
//! forward pass kept, at each model's default CAM layer, for VGG16 and ResNet50 (or the `--arch`
//! names in `BENCH_MODELS`, comma-separated) at 224x224 with random weights, medians; on the CPU
//! or the device named by `BENCH_DEVICE` (e.g. `cuda:0`).
//!
//!     cargo run --release --example bench_cam [-- RUNS]
//!
//! The pytorch-grad-cam side: `python scripts/bench_cam_torch.py`.

mod common;

use std::time::Instant;

use anyhow::Result;
use candle_core::Tensor;
use common::{arg_or, median, models};
use convscope::model::Model;
use convscope::viz::cam::{default_layer, CamMethod, CamSession};

fn main() -> Result<()> {
    let runs = arg_or(5)?;
    let dev = common::device()?;
    for name in models(&["vgg16", "resnet50"]) {
        let model = Model::random(&name, 224, 0, &dev)?;
        let layer = default_layer(&model).expect("a spatial layer");
        let x = Tensor::randn(0f32, 1.0, (1, 3, 224, 224), &dev)?;
        let (mut first, mut switch) = (Vec::new(), Vec::new());
        for run in 0..=runs {
            let t = Instant::now();
            let mut s = CamSession::new(&model, &x, layer)?;
            s.compute(CamMethod::Gradcam, 0)?;
            let t_first = t.elapsed().as_secs_f64();
            let t = Instant::now();
            s.compute(CamMethod::Gradcam, 1 + run)?;
            let t_switch = t.elapsed().as_secs_f64();
            if run > 0 {
                first.push(t_first);
                switch.push(t_switch);
            }
        }
        println!(
            "{name} Grad-CAM at {}: first map median {:.1} ms, class switch median {:.1} ms ({runs} runs)",
            model.graph.node(layer).name,
            median(first) * 1e3,
            median(switch) * 1e3
        );
    }
    Ok(())
}
