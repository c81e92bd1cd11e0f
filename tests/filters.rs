//! Filter patterns: batching, reproducibility, progress and cancellation, on the reduced VGG16
//! fixture. (The demo model's 10x test is in tests/demo_model.rs.)

mod common;

use std::sync::atomic::{AtomicBool, Ordering};

use candle_core::{Device, Tensor};
use common::{assert_close, fixture, max_pixel_diff};
use convscope::model::{Keep, Model};
use convscope::viz::filters::{
    images_per_pass, optimise, Cancelled, FilterSettings, Objective, Recipe, Target,
};

fn vgg() -> Model {
    Model::open(&fixture("vgg16_small.safetensors"), None, &Device::Cpu).unwrap()
}

fn settings(recipe: Recipe, steps: usize) -> FilterSettings {
    FilterSettings {
        size: 48,
        steps,
        ..FilterSettings::new(recipe)
    }
}

fn run(
    model: &Model,
    layer: &str,
    channels: &[usize],
    s: &FilterSettings,
) -> Vec<convscope::viz::filters::Pattern> {
    let id = model.graph.find(layer).unwrap();
    optimise(
        model,
        id,
        channels,
        s,
        &mut |_, _| {},
        &AtomicBool::new(false),
    )
    .unwrap()
}

#[test]
fn batched_channels_equal_channels_one_by_one() {
    let model = vgg();
    for recipe in [Recipe::Classic, Recipe::Lucid] {
        let s = settings(recipe, 8);
        let batch = run(&model, "features.7", &[1, 4, 6], &s);
        for p in &batch {
            let alone = run(&model, "features.7", &[p.channel], &s).remove(0);
            let d = max_pixel_diff(&p.image, &alone.image);
            assert!(
                d <= 2,
                "{recipe:?} channel {}: batched and alone differ by {d}",
                p.channel
            );
            assert!(
                (p.end - alone.end).abs() <= 1e-3 * p.end.abs().max(1.0),
                "{recipe:?}: {} vs {}",
                p.end,
                alone.end
            );
        }
        // Memory-budget chunking gives the same pictures as one batch.
        let chunked = run(
            &model,
            "features.7",
            &[1, 4, 6],
            &FilterSettings {
                budget_bytes: 1,
                ..s
            },
        );
        for (a, b) in batch.iter().zip(&chunked) {
            assert!(
                max_pixel_diff(&a.image, &b.image) <= 2,
                "{recipe:?}: chunked result differs"
            );
        }
    }
}

#[test]
fn the_same_seed_gives_the_same_picture_and_another_seed_does_not() {
    let model = vgg();
    let s = settings(Recipe::Lucid, 4);
    let a = run(&model, "features.7", &[2], &s);
    let b = run(&model, "features.7", &[2], &s);
    assert_eq!(a[0].image, b[0].image);
    let c = run(&model, "features.7", &[2], &FilterSettings { seed: 9, ..s });
    assert_ne!(a[0].image, c[0].image);
}

#[test]
fn progress_is_monotone_and_ends_at_the_total() {
    let model = vgg();
    let id = model.graph.find("features.7").unwrap();
    let s = FilterSettings {
        budget_bytes: 1,
        ..settings(Recipe::Classic, 5)
    };
    let mut seen = Vec::new();
    optimise(
        &model,
        id,
        &[0, 1, 2],
        &s,
        &mut |done, total| seen.push((done, total)),
        &AtomicBool::new(false),
    )
    .unwrap();
    // Three chunks of one image (a one-byte budget), five steps each.
    assert_eq!(seen.len(), 15);
    assert!(seen
        .windows(2)
        .all(|w| w[1].0 == w[0].0 + 1 && w[1].1 == w[0].1));
    assert_eq!(seen.last(), Some(&(15, 15)));
}

#[test]
fn cancel_stops_within_one_step() {
    let model = vgg();
    let id = model.graph.find("features.7").unwrap();
    let cancel = AtomicBool::new(false);
    let mut steps = 0;
    let result = optimise(
        &model,
        id,
        &[0, 1],
        &settings(Recipe::Classic, 40),
        &mut |done, _| {
            steps = done;
            if done == 3 {
                cancel.store(true, Ordering::Relaxed);
            }
        },
        &cancel,
    );
    let err = result.unwrap_err();
    assert!(err.downcast_ref::<Cancelled>().is_some(), "{err}");
    assert_eq!(steps, 3, "ran past the cancel");
}

#[test]
fn a_class_logit_can_be_the_objective() {
    let model = vgg();
    let s = FilterSettings {
        objective: Objective::Unit,
        size: 64,
        ..settings(Recipe::Classic, 10)
    };
    let p = run(&model, "classifier.6", &[3], &s);
    assert!(p[0].end > p[0].start, "{} -> {}", p[0].start, p[0].end);
    // A channel objective on a vector output is refused with a clear message.
    let id = model.graph.find("classifier.6").unwrap();
    let err = optimise(
        &model,
        id,
        &[3],
        &settings(Recipe::Classic, 1),
        &mut |_, _| {},
        &AtomicBool::new(false),
    )
    .unwrap_err();
    assert!(err.to_string().contains("use the unit objective"), "{err}");
}

#[test]
fn a_convolutions_objective_from_its_input_equals_a_pass_through_it() {
    let model = vgg();
    let g = &model.graph;
    let x = Tensor::randn(0f32, 1.0, (3, 3, 48, 48), &Device::Cpu).unwrap();
    for (layer, objective, channels) in [
        ("features.7", Objective::Channel, [1, 4, 6]),
        ("features.7", Objective::Neuron, [6, 0, 6]),
        ("features.5", Objective::Channel, [2, 0, 5]),
        ("features.0", Objective::Channel, [3, 1, 2]),
        ("features.8", Objective::Channel, [1, 4, 6]),
    ] {
        let id = g.find(layer).unwrap();
        // The general pass: the whole layer, its seed, the reverse pass from it.
        let acts = g.forward_to(&x, id, &Keep::All).unwrap();
        let out = acts.get(id).unwrap();
        let seed = objective.seed(out.dims(), &channels, out.device()).unwrap();
        let expected = Objective::values(out, &seed).unwrap();
        let expected_grad = g.gradient(&acts, g.input(), id, &seed).unwrap();
        // One pass of three images, three of one, and one of three where two were asked for.
        for (per_pass, sizes) in [(3, vec![3]), (1, vec![1, 1, 1]), (2, vec![3])] {
            let target = Target::new(&model, id, &channels, objective, per_pass).unwrap();
            assert_eq!(target.pass_sizes(), sizes);
            // Convolutions stop at their input, other layers at themselves.
            let conv = layer != "features.8";
            let stop = if conv { g.node(id).inputs[0] } else { id };
            assert_eq!(target.stop(), stop, "{layer}");
            let (values, grad) = target.objective_and_gradient(&x).unwrap();
            assert_eq!(target.objective(&x).unwrap(), values, "{layer}");
            for (v, e) in values.iter().zip(&expected) {
                assert!(
                    (v - e).abs() <= 1e-4 * e.abs().max(1.0),
                    "{layer} {objective:?}, {per_pass} a pass: {v} vs {e}"
                );
            }
            assert_close(
                &format!("{layer} {objective:?} gradient, {per_pass} a pass"),
                &grad,
                &expected_grad,
                1e-4,
            );
        }
    }
    // Passes never hold one image where more were asked for.
    let id = g.find("features.7").unwrap();
    let thirteen = [0; 13];
    let target = Target::new(&model, id, &thirteen, Objective::Channel, 2).unwrap();
    assert_eq!(target.pass_sizes(), [3, 2, 2, 2, 2, 2]);
}

#[test]
fn on_the_cpu_a_pass_holds_what_fits_the_cache() {
    let model = vgg();
    let id = model.graph.find("features.7").unwrap();
    // The reduced fixture's widest activation at 48 px: a few hundred kB an image.
    let n = images_per_pass(&model, id, 48, &Device::Cpu);
    assert!(n > 8, "{n}");
    // Four times the pixels: about a quarter as many images, never fewer than two.
    let quarter = images_per_pass(&model, id, 96, &Device::Cpu);
    assert!((n / 5..=n / 3).contains(&quarter), "{n} then {quarter}");
    assert_eq!(images_per_pass(&model, id, 1024, &Device::Cpu), 2);
}
