//! CUDA against CPU on cuda:0: logits and every node's output, Grad-CAM and Score-CAM maps, and
//! filter patterns of both recipes with a fixed seed, on the reduced VGG16 and ResNet50
//! fixtures; every node's output on one reduced model of each other family. Built only with `--features cuda` (scripts/build_cuda.sh) and run on a GPU machine
//! by scripts/gpu_check.sh; there is no GPU where the default test suite runs.
#![cfg(feature = "cuda")]

mod common;

use std::sync::atomic::AtomicBool;

use candle_core::{Device, Tensor};
use common::{expected, fixture, max_pixel_diff, relative_error};
use convscope::model::{Keep, Model};
use convscope::viz::cam::{CamMethod, CamSession};
use convscope::viz::filters::{optimise, FilterSettings, Recipe};

const TOLERANCE: f32 = 1e-3;

fn gpu() -> Device {
    Device::new_cuda(0).expect("cuda:0")
}

fn both(file: &str) -> (Model, Model) {
    let path = fixture(file);
    (
        Model::open(&path, None, &Device::Cpu).unwrap(),
        Model::open(&path, None, &gpu()).unwrap(),
    )
}

fn input(name: &str, dev: &Device) -> Tensor {
    expected(&format!("{name}_expected.safetensors"))["input"]
        .to_device(dev)
        .unwrap()
}

fn on_cpu(t: &Tensor) -> Tensor {
    t.to_device(&Device::Cpu).unwrap()
}

/// The reduced model of each architecture family (scripts/make_fixtures.py and
/// scripts/make_family_fixtures.py).
const FAMILY_FIXTURES: [&str; 18] = [
    "vgg16_small",
    "resnet50_small",
    "alexnet_small",
    "squeezenet1_0_small",
    "squeezenet1_1_small",
    "mobilenet_v2_small",
    "mobilenet_v3_small_small",
    "mobilenet_v3_large_small",
    "efficientnet_b0_small",
    "efficientnet_v2_s_small",
    "convnext_tiny_small",
    "densenet121_small",
    "resnext50_small",
    "regnet_y_small",
    "mnasnet_small",
    "shufflenet_v2_small",
    "googlenet_small",
    "inception_v3_small",
];

#[test]
fn forward_activations_and_logits_match() {
    for name in FAMILY_FIXTURES {
        let (cpu, cuda) = both(&format!("{name}.safetensors"));
        let a = cpu
            .graph
            .forward(&input(name, &Device::Cpu), &Keep::All)
            .unwrap();
        let b = cuda
            .graph
            .forward(&input(name, &gpu()), &Keep::All)
            .unwrap();
        let mut worst = (0f32, String::new());
        for (id, node) in cpu.graph.nodes().iter().enumerate() {
            let e = relative_error(&on_cpu(b.get(id).unwrap()), a.get(id).unwrap());
            if e > worst.0 {
                worst = (e, node.name.clone());
            }
        }
        println!("{name}: worst node {} at {:e}", worst.1, worst.0);
        assert!(
            worst.0 <= TOLERANCE,
            "{name}: {} differs by {:e}",
            worst.1,
            worst.0
        );
    }
}

#[test]
fn cam_maps_match() {
    for (name, layer) in [("vgg16_small", "features.23"), ("resnet50_small", "layer3")] {
        let (cpu, cuda) = both(&format!("{name}.safetensors"));
        let id = cpu.graph.find(layer).unwrap();
        let mut a = CamSession::new(&cpu, &input(name, &Device::Cpu), id).unwrap();
        let mut b = CamSession::new(&cuda, &input(name, &gpu()), id).unwrap();
        for method in [
            CamMethod::Gradcam,
            CamMethod::Gradcamplusplus,
            CamMethod::Scorecam,
        ] {
            for class in [0, 3] {
                let (x, y) = (
                    a.compute(method, class).unwrap(),
                    b.compute(method, class).unwrap(),
                );
                let diff = x
                    .map
                    .iter()
                    .zip(&y.map)
                    .map(|(p, q)| (p - q).abs())
                    .fold(0.0, f32::max);
                println!("{name} {layer} {method:?} class {class}: max difference {diff:e}");
                assert!(
                    diff <= TOLERANCE,
                    "{name} {method:?} class {class}: {diff:e}"
                );
            }
        }
    }
}

#[test]
fn filter_patterns_match() {
    let (cpu, cuda) = both("vgg16_small.safetensors");
    let id = cpu.graph.find("features.7").unwrap();
    for recipe in [Recipe::Classic, Recipe::Lucid] {
        let s = FilterSettings {
            size: 48,
            steps: 10,
            seed: 3,
            ..FilterSettings::new(recipe)
        };
        let run = |m: &Model| {
            optimise(m, id, &[1, 5], &s, &mut |_, _| {}, &AtomicBool::new(false)).unwrap()
        };
        for (p, q) in run(&cpu).iter().zip(run(&cuda)) {
            let rel = (p.end - q.end).abs() / p.end.abs().max(1e-6);
            let pixels = max_pixel_diff(&p.image, &q.image);
            println!(
                "{recipe:?} channel {}: objective {:e} relative, pixels {pixels}",
                p.channel, rel
            );
            assert!(
                rel <= TOLERANCE,
                "{recipe:?} channel {}: {} vs {}",
                p.channel,
                p.end,
                q.end
            );
            assert!(
                pixels <= 2,
                "{recipe:?} channel {}: pixels differ by {pixels}",
                p.channel
            );
        }
    }
}
