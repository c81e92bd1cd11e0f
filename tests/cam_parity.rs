//! Class activation maps against pytorch-grad-cam 1.5.x: every method on the reduced VGG16 and
//! ResNet50 (fixtures from scripts/make_cam_fixtures.py), Grad-CAM at `features[-1]` on the
//! reduced models of every torchvision family (scripts/make_family_fixtures.py) and of timm's
//! (scripts/make_timm_fixtures.py).

mod common;

use candle_core::Device;
use common::{expected, fixture};
use convscope::model::Model;
use convscope::viz::cam::{CamMethod, CamSession};

/// A model folder whose model.toml points at a fixture checkpoint, at an input of `(h, w)`.
fn fixture_model(dir: &std::path::Path, file: &str, (h, w): (usize, usize)) -> Model {
    let toml = format!("weights = {:?}\ninput_size = [{h}, {w}]\n", fixture(file),);
    std::fs::write(dir.join("model.toml"), toml).unwrap();
    Model::open(dir, None, &Device::Cpu).unwrap()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Compares every map of `name` in the fixture file `maps`; `count` of them must be there.
fn check(name: &str, maps: &str, count: usize) {
    let d = tempfile::tempdir().unwrap();
    let input = &expected(&format!("{name}_expected.safetensors"))["input"];
    let (_, _, h, w) = input.dims4().unwrap();
    let model = fixture_model(d.path(), &format!("{name}.safetensors"), (h, w));
    check_model(&model, name, maps, count);
}

/// [`check`] for a model opened already (from an ONNX export of the fixture).
fn check_model(model: &Model, name: &str, maps: &str, count: usize) {
    let input = &expected(&format!("{name}_expected.safetensors"))["input"];
    let exp = expected(maps);
    let mut compared = 0;
    let mut sessions = std::collections::HashMap::new();
    let mut keys: Vec<&String> = exp
        .keys()
        .filter(|k| k.starts_with(&format!("{name}/")))
        .collect();
    keys.sort();
    for key in keys {
        let parts: Vec<&str> = key.split('/').collect();
        let (layer, method, class) = (parts[1], parts[2], parts[3].parse::<usize>().unwrap());
        if method == "eigencam_flipped" {
            continue;
        }
        let session = sessions.entry(layer.to_string()).or_insert_with(|| {
            let id = model.graph.find(layer).unwrap();
            CamSession::new(model, input, id).unwrap()
        });
        let m: CamMethod = clap::ValueEnum::from_str(method, true).unwrap();
        let ours = session.compute(m, class).unwrap();
        let theirs: Vec<f32> = exp[key.as_str()].flatten_all().unwrap().to_vec1().unwrap();
        let mut diff = max_abs_diff(&ours.map, &theirs);
        if m == CamMethod::Eigencam {
            let flipped_key = key.replace("/eigencam/", "/eigencam_flipped/");
            let flipped: Vec<f32> = exp[&flipped_key].flatten_all().unwrap().to_vec1().unwrap();
            diff = diff.min(max_abs_diff(&ours.map, &flipped));
        }
        assert!(diff <= 1e-3, "{key}: max difference {diff}");
        compared += 1;
    }
    assert_eq!(compared, count, "{name}: compared {compared} maps");
}

#[test]
fn vgg16_maps_match_pytorch_grad_cam() {
    // Two layers, seven methods, two classes.
    check("vgg16_small", "cam_expected.safetensors", 2 * 7 * 2);
}

#[test]
fn resnet50_maps_match_pytorch_grad_cam() {
    check("resnet50_small", "cam_expected.safetensors", 2 * 7 * 2);
}

#[test]
fn maps_of_an_input_at_another_size_than_the_models_declared() {
    // Opened without a model.toml, the fixture declares VGG16's 224x224 input, and the input
    // here is 64x80: a session takes the layer's sizes from its own pass.
    let model = Model::open(&fixture("vgg16_small.safetensors"), None, &Device::Cpu).unwrap();
    check_model(&model, "vgg16_small", "cam_expected.safetensors", 2 * 7 * 2);
}

/// Every model with maps in the fixture file `maps`, each checked with its two classes.
fn check_all(maps: &str) -> Vec<String> {
    let mut names: Vec<String> = expected(maps)
        .keys()
        .map(|k| k.split('/').next().unwrap().to_string())
        .collect();
    names.sort();
    names.dedup();
    for name in &names {
        check(name, maps, 2);
    }
    names
}

#[test]
fn newer_families_grad_cam_matches_pytorch_grad_cam() {
    // scripts/make_family_fixtures.py: Grad-CAM at each family's default layer.
    let names = check_all("family_cam_expected.safetensors");
    assert_eq!(names.len(), 16, "{names:?}");
}

#[test]
fn timm_models_grad_cam_matches_pytorch_grad_cam() {
    // scripts/make_timm_fixtures.py.
    let names = check_all("timm_cam_expected.safetensors");
    assert_eq!(names.len(), 10, "{names:?}");
}

#[test]
fn onnx_exports_give_pytorch_grad_cam_maps_at_the_same_modules() {
    // scripts/make_onnx_fixtures.py: the fixtures' weights through torch.onnx.export; the maps
    // are those of the PyTorch models, at layers named by module path.
    let onnx = |file: &str| Model::open(&fixture(file), None, &Device::Cpu).unwrap();
    check_model(
        &onnx("resnet50_small.onnx"),
        "resnet50_small",
        "cam_expected.safetensors",
        2 * 7 * 2,
    );
    for (file, name) in [
        ("efficientnet_b0_small.onnx", "efficientnet_b0_small"),
        ("convnext_tiny_small.onnx", "convnext_tiny_small"),
        ("mobilenet_v3_small_small.onnx", "mobilenet_v3_small_small"),
        ("shufflenet_v2_small_dynamo.onnx", "shufflenet_v2_small"),
    ] {
        check_model(&onnx(file), name, "family_cam_expected.safetensors", 2);
    }
}

#[test]
fn overlays_are_what_show_cam_on_image_draws() {
    // scripts/make_overlay_fixtures.py: OpenCV's jet table, and pytorch-grad-cam's
    // show_cam_on_image over an image with a mask, at two image weights.
    use convscope::viz::colormap::Colormap;
    use convscope::viz::overlay::overlay;
    let exp = expected("overlay_expected.safetensors");
    let jet: Vec<u8> = exp["jet"].flatten_all().unwrap().to_vec1().unwrap();
    let ours: Vec<u8> = Colormap::Jet.table().into_iter().flatten().collect();
    assert_eq!(ours, jet, "jet table");
    let (h, w, _) = exp["image"].dims3().unwrap();
    let pixels: Vec<u8> = exp["image"].flatten_all().unwrap().to_vec1().unwrap();
    let image = image::RgbImage::from_raw(w as u32, h as u32, pixels).unwrap();
    let mask: Vec<f32> = exp["mask"].flatten_all().unwrap().to_vec1().unwrap();
    for image_weight in ["0.5", "0.7"] {
        let alpha = 1.0 - image_weight.parse::<f32>().unwrap();
        let drawn = overlay(&image, &mask, (h, w), Colormap::Jet, alpha);
        let want: Vec<u8> = exp[&format!("overlay_{image_weight}")]
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let differing = drawn
            .as_raw()
            .iter()
            .zip(&want)
            .filter(|(a, b)| a != b)
            .count();
        assert_eq!(differing, 0, "image weight {image_weight}: values differ");
    }
}

/// A map of metric_expected.safetensors: its base key, class and values.
type MetricCase = (String, usize, Vec<f32>);

/// The fixture model `name` and its input, and every map of metric_expected.safetensors for it
/// that has a `{base}/{key}` entry: its base key, class and values.
fn metric_cases(
    dir: &std::path::Path,
    exp: &std::collections::HashMap<String, candle_core::Tensor>,
    name: &str,
    key: &str,
) -> (Model, candle_core::Tensor, Vec<MetricCase>) {
    let input = expected(&format!("{name}_expected.safetensors"))["input"].clone();
    let (_, _, h, w) = input.dims4().unwrap();
    let model = fixture_model(dir, &format!("{name}.safetensors"), (h, w));
    let suffix = format!("/{key}");
    let mut bases: Vec<String> = exp
        .keys()
        .filter(|k| k.starts_with(&format!("{name}/")) && k.ends_with(&suffix))
        .map(|k| k.trim_end_matches(&suffix).to_string())
        .collect();
    bases.sort();
    let cases = bases
        .into_iter()
        .map(|base| {
            let class: usize = base.rsplit('/').next().unwrap().parse().unwrap();
            let map: Vec<f32> = exp[&format!("{base}/map")]
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            (base, class, map)
        })
        .collect();
    (model, input, cases)
}

#[test]
fn confidence_metrics_match_pytorch_grad_cam() {
    // scripts/make_metric_fixtures.py: pytorch-grad-cam's CamMultImageConfidenceChange,
    // DropInConfidence and IncreaseInConfidence (softmax targets) on its own maps, which are fed
    // to convscope's metric here so that only the metric is compared.
    use convscope::metrics::confidence::ConfidenceChange;
    let exp = expected("metric_expected.safetensors");
    let scalar = |key: &str| exp[key].to_vec1::<f32>().unwrap()[0];
    let mut compared = 0;
    for name in ["vgg16_small", "resnet50_small"] {
        let d = tempfile::tempdir().unwrap();
        let (model, input, cases) = metric_cases(d.path(), &exp, name, "map");
        let input = &input;
        for (base, class, map) in cases {
            let ours = ConfidenceChange::measure(&model, input, &map, class).unwrap();
            let close = |what: &str, a: f32, b: f32| {
                assert!((a - b).abs() <= 1e-5, "{base} {what}: {a} against {b}");
            };
            close("before", ours.before, scalar(&format!("{base}/before")));
            close("after", ours.after, scalar(&format!("{base}/after")));
            close("drop", ours.drop(), scalar(&format!("{base}/drop")));
            assert_eq!(
                ours.increase(),
                scalar(&format!("{base}/increase")),
                "{base}"
            );
            compared += 1;
        }
    }
    assert_eq!(compared, 2 * 2 * 2 * 2);
}

#[test]
fn road_matches_pytorch_grad_cam() {
    // scripts/make_metric_fixtures.py: pytorch-grad-cam's RemoveMostRelevantFirst and
    // RemoveLeastRelevantFirst with its linear imputer (noise 0) at the percentiles 10..90, on
    // its own Grad-CAM maps.
    use convscope::metrics::road::{impute, percentile, Road, PERCENTILES};
    use rand::SeedableRng;
    let exp = expected("metric_expected.safetensors");
    let (mut compared, mut infillings) = (0, 0);
    for name in ["vgg16_small", "resnet50_small"] {
        let d = tempfile::tempdir().unwrap();
        let (model, input, cases) = metric_cases(d.path(), &exp, name, "morf");
        let input = &input;
        let (_, _, h, w) = input.dims4().unwrap();
        for (base, class, map) in cases {
            let ours = Road::measure(&model, input, &map, class, &PERCENTILES, 0.0, 0).unwrap();
            for (what, got) in [
                ("morf", &ours.most_relevant_first),
                ("lerf", &ours.least_relevant_first),
            ] {
                let want: Vec<f32> = exp[&format!("{base}/{what}")].to_vec1().unwrap();
                for (p, (a, b)) in PERCENTILES.iter().zip(got.iter().zip(&want)) {
                    assert!(
                        (a - b).abs() <= 1e-5,
                        "{base} {what} at {p}: {a} against {b}"
                    );
                }
            }
            // The infilling itself, at the 50th percentile (stored for one map per model).
            let (c, h, w) = (input.dims4().unwrap().1, h, w);
            let pixels: Vec<f32> = input.flatten_all().unwrap().to_vec1().unwrap();
            let inverse: Vec<f32> = map.iter().map(|v| 1.0 - v).collect();
            for (what, order) in [("morf", &map), ("lerf", &inverse)] {
                let Some(want) = exp.get(&format!("{base}/{what}_50_input")) else {
                    continue;
                };
                infillings += 1;
                let threshold = percentile(order, 50.0);
                let known: Vec<bool> = order.iter().map(|&v| v < threshold).collect();
                let mut rng = rand::rngs::StdRng::seed_from_u64(0);
                let ours = impute(&pixels, (c, h, w), &known, 0.0, &mut rng);
                let ours = candle_core::Tensor::from_vec(ours, want.shape(), &Device::Cpu).unwrap();
                common::assert_close(&format!("{base} {what} infilling"), &ours, want, 1e-4);
            }
            compared += 1;
        }
    }
    assert_eq!((compared, infillings), (2 * 2 * 2, 2 * 2));
}

#[test]
fn several_seeds_in_one_reverse_pass_equal_one_at_a_time() {
    // What a class switch among the top classes reads: Graph::gradients repeats the one-image
    // pass per seed. Checked at the default layer (only the head in between) and at a layer
    // with convolutions after it.
    let d = tempfile::tempdir().unwrap();
    let input = &expected("vgg16_small_expected.safetensors")["input"];
    let (_, _, h, w) = input.dims4().unwrap();
    let model = fixture_model(d.path(), "vgg16_small.safetensors", (h, w));
    let g = &model.graph;
    let acts = g
        .forward(input, &convscope::model::graph::Keep::All)
        .unwrap();
    let outputs = g.node(g.output()).shape[1];
    let classes = [3, 0, 7];
    let seed = |c: usize| {
        let mut v = vec![0f32; outputs];
        v[c] = 1.0;
        v
    };
    let seeds: Vec<f32> = classes.iter().flat_map(|&c| seed(c)).collect();
    let seeds =
        candle_core::Tensor::from_vec(seeds, (classes.len(), outputs), &Device::Cpu).unwrap();
    for layer in ["features.29", "features.10"] {
        let id = g.find(layer).unwrap();
        assert_eq!(
            g.convolves_between(id, g.output()).unwrap(),
            layer == "features.10"
        );
        let all = g.gradients(&acts, id, g.output(), &seeds).unwrap();
        for (k, &c) in classes.iter().enumerate() {
            let one = candle_core::Tensor::from_vec(seed(c), (1, outputs), &Device::Cpu).unwrap();
            let alone = g.gradient(&acts, id, g.output(), &one).unwrap();
            let batched = all.get(k).unwrap().unsqueeze(0).unwrap();
            common::assert_close(&format!("{layer} class {c}"), &batched, &alone, 1e-5);
        }
    }
}
