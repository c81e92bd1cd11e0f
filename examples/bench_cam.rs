//! Grad-CAM benchmark: time to the first map (forward + backward) of the top class, then, with
//! the forward pass kept, a switch to another of the top classes and to a class outside them,
//! at each model's default CAM layer, for VGG16 and ResNet50 (or the `--arch` names in
//! `BENCH_MODELS`, comma-separated) at 224x224 with random weights, medians; on the CPU or the
//! device named by `BENCH_DEVICE` (e.g. `cuda:0`).
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
use convscope::viz::cam::{default_layer, top_classes, CamMethod, CamSession, GRADIENTS_AT_ONCE};

fn main() -> Result<()> {
    let runs = arg_or(5)?;
    let dev = common::device()?;
    for name in models(&["vgg16", "resnet50"]) {
        let model = Model::random(&name, 224, 0, &dev)?;
        let layer = default_layer(&model).expect("a spatial layer");
        let x = Tensor::randn(0f32, 1.0, (1, 3, 224, 224), &dev)?;
        let (mut first, mut top, mut other) = (Vec::new(), Vec::new(), Vec::new());
        for run in 0..=runs {
            let t = Instant::now();
            let mut s = CamSession::new(&model, &x, layer)?;
            let best = top_classes(s.logits(), GRADIENTS_AT_ONCE);
            s.compute(CamMethod::Gradcam, best[0])?;
            let t_first = t.elapsed().as_secs_f64();
            let t = Instant::now();
            s.compute(CamMethod::Gradcam, best[1 + run % (best.len() - 1)])?;
            let t_top = t.elapsed().as_secs_f64();
            let outside = (0..s.logits().len())
                .find(|c| !best.contains(c))
                .expect("a class");
            let t = Instant::now();
            s.compute(CamMethod::Gradcam, outside)?;
            let t_other = t.elapsed().as_secs_f64();
            if run > 0 {
                first.push(t_first);
                top.push(t_top);
                other.push(t_other);
            }
        }
        println!(
            "{name} Grad-CAM at {}: first map median {:.1} ms, switch to a top-{GRADIENTS_AT_ONCE} class {:.2} ms, to another class {:.1} ms ({runs} runs)",
            model.graph.node(layer).name,
            median(first) * 1e3,
            median(top) * 1e3,
            median(other) * 1e3
        );
    }
    Ok(())
}
