//! The bundled demo model on freshly generated held-out data (seeds never used in training):
//! accuracy, two-shape top-2, CAM localisation, and filter patterns.

use std::sync::atomic::AtomicBool;

use candle_core::{Device, Tensor};
use convscope::input::{to_tensor, Fit};
use convscope::model::{Keep, Model};
use convscope::shapes::{Generator, Sample};
use convscope::viz::cam::{default_layer, CamMethod, CamSession};
use convscope::viz::filters::{optimise, FilterSettings, Recipe};

fn demo() -> Model {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/shapes");
    Model::open(&dir, None, &Device::Cpu).unwrap()
}

fn logits(model: &Model, samples: &[Sample]) -> Vec<Vec<f32>> {
    let mut rows = Vec::new();
    for chunk in samples.chunks(50) {
        let xs: Vec<Tensor> = chunk
            .iter()
            .map(|s| to_tensor(&s.image, &model.normalisation, 3, &Device::Cpu).unwrap())
            .collect();
        let x = Tensor::cat(&xs, 0).unwrap();
        let acts = model.graph.forward(&x, &Keep::Only(vec![])).unwrap();
        rows.extend(
            acts.get(model.graph.output())
                .unwrap()
                .to_vec2::<f32>()
                .unwrap(),
        );
    }
    rows
}

fn ranked(row: &[f32]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..row.len()).collect();
    idx.sort_by(|&a, &b| row[b].total_cmp(&row[a]));
    idx
}

#[test]
fn accuracy_on_500_held_out_single_shape_images_is_at_least_95_percent() {
    let model = demo();
    let mut g = Generator::new(1_000_001);
    let samples: Vec<Sample> = (0..500).map(|_| g.single()).collect();
    let correct = logits(&model, &samples)
        .iter()
        .zip(&samples)
        .filter(|(l, s)| ranked(l)[0] == s.objects[0].class)
        .count();
    let acc = correct as f64 / 500.0;
    println!("demo accuracy: {correct}/500 = {:.1}%", acc * 100.0);
    assert!(acc >= 0.95, "accuracy {acc}");
}

#[test]
fn both_classes_of_two_shape_images_are_in_the_top_2() {
    let model = demo();
    let mut g = Generator::new(2_000_002);
    let samples: Vec<Sample> = (0..300).map(|_| g.pair()).collect();
    let hits = logits(&model, &samples)
        .iter()
        .zip(&samples)
        .filter(|(l, s)| {
            let top2 = &ranked(l)[..2];
            s.objects.iter().all(|o| top2.contains(&o.class))
        })
        .count();
    let rate = hits as f64 / samples.len() as f64;
    println!(
        "two-shape top-2: {hits}/{} = {:.1}%",
        samples.len(),
        rate * 100.0
    );
    assert!(rate >= 0.90, "two-shape top-2 rate {rate}");
}

/// Where a map peaks, as `(x, y)` in input pixels.
fn peak(map: &[f32], width: usize) -> (u32, u32) {
    let i = map
        .iter()
        .enumerate()
        .fold(0, |best, (i, &v)| if v > map[best] { i } else { best });
    ((i % width) as u32, (i / width) as u32)
}

/// Share of images whose map for each object's class peaks inside that object's box.
pub fn localisation(
    model: &Model,
    method: CamMethod,
    singles: usize,
    pairs: usize,
    seed: u64,
) -> (f64, f64) {
    let layer = default_layer(model).unwrap();
    let (mut single_hits, mut pair_hits) = (0, 0);
    let mut g = Generator::new(seed);
    for i in 0..singles + pairs {
        let s = if i < singles { g.single() } else { g.pair() };
        let x = to_tensor(&s.image, &model.normalisation, 3, &Device::Cpu).unwrap();
        let mut session = CamSession::new(model, &x, layer).unwrap();
        let all_in = s.objects.iter().all(|o| {
            let map = session.compute(method, o.class).unwrap();
            let (px, py) = peak(&map.map, map.size.1);
            !map.empty && o.bbox.contains(px, py, 0)
        });
        if all_in && i < singles {
            single_hits += 1;
        } else if all_in {
            pair_hits += 1;
        }
    }
    (
        single_hits as f64 / singles as f64,
        pair_hits as f64 / pairs as f64,
    )
}

#[test]
fn grad_cam_and_cam_peaks_lie_in_the_object_boxes() {
    let model = demo();
    assert_eq!(
        model.graph.node(default_layer(&model).unwrap()).name,
        "relu5"
    );
    for method in [CamMethod::Gradcam, CamMethod::Cam] {
        let (single, pair) = localisation(&model, method, 150, 100, 3_000_003);
        println!(
            "{}: single {:.1}%, two shapes {:.1}%",
            method.title(),
            single * 100.0,
            pair * 100.0
        );
        assert!(
            single >= 0.90,
            "{} single-shape localisation {single}",
            method.title()
        );
        assert!(
            pair >= 0.85,
            "{} two-shape localisation {pair}",
            method.title()
        );
    }
}

#[test]
fn filter_patterns_raise_the_channel_mean_tenfold() {
    let model = demo();
    // The pre-activation of the last block (its batch-norm output), as Lucid visualises
    // "pre_relu" layers: a ReLU output that is zero on the start image passes no gradient.
    let layer = model.graph.find("bn5").unwrap();
    let channels: Vec<usize> = (0..8).collect();
    for (recipe, size, steps) in [(Recipe::Classic, 96, 40), (Recipe::Lucid, 48, 256)] {
        let s = FilterSettings {
            size,
            steps,
            ..FilterSettings::new(recipe)
        };
        let patterns = optimise(
            &model,
            layer,
            &channels,
            &s,
            &mut |_, _| {},
            &AtomicBool::new(false),
        )
        .unwrap();
        for p in &patterns {
            println!(
                "{recipe:?} bn5 channel {}: {:.4} -> {:.4}",
                p.channel, p.start, p.end
            );
            // At least ten times the starting value's magnitude gained (the start is often
            // negative before the ReLU, where "10x" alone means nothing).
            assert!(
                p.end - p.start >= 10.0 * p.start.abs().max(0.05),
                "{recipe:?} channel {}: {} -> {}",
                p.channel,
                p.start,
                p.end
            );
        }
    }
}

#[test]
fn the_sample_images_are_predicted_correctly() {
    let model = demo();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/shapes");
    let load = |f: &str| convscope::input::load_image(&dir.join(f), Default::default()).unwrap();
    let single = model
        .predict(&load("single_shape.png"), Fit::Resize)
        .unwrap();
    assert_eq!(model.labels[single.top(1)[0].0], "triangle");
    let pair = model.predict(&load("two_shapes.png"), Fit::Resize).unwrap();
    let mut top2: Vec<&str> = pair
        .top(2)
        .iter()
        .map(|&(i, _)| model.labels[i].as_str())
        .collect();
    top2.sort();
    assert_eq!(top2, ["cross", "square"]);
}
