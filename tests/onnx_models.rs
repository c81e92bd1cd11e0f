//! Models opened from ONNX files (scripts/make_onnx_fixtures.py: the reduced-width fixtures'
//! own weights, exported by torch.onnx.export and checked with onnxruntime) give the same
//! logits, outputs by module path and gradients as PyTorch: the same expected values the
//! state-dict path is held to.

mod common;

use candle_core::Device;
use common::{check_forward, check_gradients, expected, fixture};
use convscope::model::{Head, Model};

#[test]
fn exported_models_match_pytorch_by_module_path() {
    // (fixture, exporter)
    for (file, nodes) in [
        ("resnet50_small", "TorchScript"),
        ("efficientnet_b0_small", "TorchScript"),
        ("convnext_tiny_small", "TorchScript"),
        ("shufflenet_v2_small", "TorchScript"),
        ("shufflenet_v2_small_dynamo", "dynamo"),
        ("mobilenet_v3_small_small", "dynamo"),
    ] {
        let model = Model::open(&fixture(&format!("{file}.onnx")), None, &Device::Cpu)
            .unwrap_or_else(|e| panic!("{file} ({nodes} export): {e:#}"));
        let name = file.trim_end_matches("_dynamo");
        assert!(model.arch.starts_with("onnx graph"), "{}", model.arch);
        assert_eq!(model.head, Some(Head::Softmax));
        assert_eq!(
            (model.normalisation.height, model.normalisation.width),
            (64, 80)
        );
        let exp = expected(&format!("{name}_expected.safetensors"));
        check_forward(&model.graph, &exp);
        check_gradients(&model.graph, &exp);
    }
}

/// The logits of a small ONNX fixture against onnxruntime's (scripts/make_onnx_fixtures.py).
fn matches_onnxruntime(file: &str, expected_file: &str) {
    let model = Model::open(&fixture(file), None, &Device::Cpu).unwrap();
    let exp = expected(expected_file);
    let logits = model
        .graph
        .forward(&exp["input"], &convscope::model::Keep::All)
        .unwrap();
    common::assert_close(
        "logits",
        logits.get(model.graph.output()).unwrap(),
        &exp["logits"],
        common::TOL,
    );
}

fn run(args: &[&str]) -> std::process::Output {
    common::convscope_ok(args, None)
}

#[test]
fn every_subcommand_serves_an_onnx_model_as_its_state_dict() {
    let d = tempfile::tempdir().unwrap();
    let img = d.path().join("img.png");
    image::RgbImage::from_fn(80, 64, |x, y| {
        image::Rgb([(x * 3) as u8, (y * 4) as u8, 120])
    })
    .save(&img)
    .unwrap();
    let img = img.to_str().unwrap();
    let onnx = fixture("convnext_tiny_small.onnx");
    let onnx = onnx.to_str().unwrap();
    let out = |name: &str| d.path().join(name).to_str().unwrap().to_string();
    let info = String::from_utf8(run(&["info", onnx]).stdout).unwrap();
    assert!(info.contains("onnx graph"), "{info}");
    assert!(info.contains("features"), "{info}");
    run(&["predict", onnx, img]);
    run(&[
        "activations",
        onnx,
        img,
        "--layer",
        "features.3",
        "-o",
        &out("a.png"),
    ]);
    run(&[
        "filters",
        onnx,
        "--layer",
        "features.3",
        "--steps",
        "1",
        "--channels",
        "0..2",
        "-o",
        &out("f.png"),
    ]);
    // The same module by name from both files: the same map (ConvNeXt's block output).
    // (The state dict at the export's input size, 64x80, through a model.toml.)
    let toml = d.path().join("model.toml");
    std::fs::write(
        &toml,
        format!(
            "weights = {:?}\ninput_size = [64, 80]\n",
            fixture("convnext_tiny_small.safetensors")
        ),
    )
    .unwrap();
    for (model, npy) in [(onnx, "onnx.npy"), (toml.to_str().unwrap(), "st.npy")] {
        run(&[
            "cam",
            model,
            img,
            "--layer",
            "features.5",
            "--class",
            "3",
            "--crop",
            "resize",
            "--npy",
            &out(npy),
            "-o",
            &out(&format!("{npy}.png")),
        ]);
    }
    let read = |name: &str| -> Vec<f32> {
        candle_core::Tensor::read_npy(out(name))
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap()
    };
    let (a, b) = (read("onnx.npy"), read("st.npy"));
    assert_eq!(a.len(), b.len());
    assert!(a.iter().any(|&v| v > 0.5), "an empty map proves nothing");
    let worst = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    assert!(worst < 1e-4, "maps differ by {worst}");
}

#[test]
fn weights_in_an_external_file_are_read() {
    matches_onnxruntime(
        "onnx_external/tiny.onnx",
        "onnx_external/tiny_expected.safetensors",
    );
}

#[test]
fn a_flattened_value_read_back_in_order_is_the_value() {
    // The dynamo exporter's as_strided: Reshape to [-1], Gather of every element.
    matches_onnxruntime(
        "onnx_flattened_gather.onnx",
        "onnx_flattened_gather_expected.safetensors",
    );
}

#[test]
fn keras_models_through_tf2onnx_give_keras_outputs() {
    // scripts/make_keras_fixtures.py: NHWC inputs, Flatten in H, W, C order, ZeroPadding2D
    // before a strided convolution and a max pool, batch norms as multiply-add, ReLU6,
    // depthwise and residual layers; a final sigmoid (one output) and a softmax.
    let exp = expected("keras_expected.safetensors");
    for (name, head) in [
        ("keras_convnet", Head::Sigmoid),
        ("keras_vgg16", Head::Softmax),
        ("keras_mobilenet", Head::Softmax),
    ] {
        let model = Model::open(&fixture(&format!("{name}.onnx")), None, &Device::Cpu)
            .unwrap_or_else(|e| panic!("{name}: {e:#}"));
        assert_eq!(model.head, Some(head), "{name}");
        let function = if head == Head::Sigmoid {
            "Sigmoid"
        } else {
            "Softmax"
        };
        assert!(
            model
                .arch
                .ends_with(&format!("final {function} applied to predictions only)")),
            "{}",
            model.arch
        );
        assert_eq!(
            model.graph.input_size(),
            (3, 32, 32),
            "{name}: NHWC input read"
        );
        let acts = model
            .graph
            .forward(&exp[&format!("{name}.input")], &convscope::model::Keep::All)
            .unwrap();
        let logits = acts.get(model.graph.output()).unwrap();
        let probabilities = match head {
            Head::Sigmoid => candle_nn::ops::sigmoid(logits).unwrap(),
            _ => candle_nn::ops::softmax_last_dim(logits).unwrap(),
        };
        common::assert_close(
            name,
            &probabilities,
            &exp[&format!("{name}.probabilities")],
            1e-5,
        );
        // Two layers by their Keras names.
        let prefix = format!("{name}.out.");
        let mut compared = 0;
        for (key, want) in &exp {
            let Some(layer) = key.strip_prefix(&prefix) else {
                continue;
            };
            let id = model.graph.find(layer).unwrap();
            common::assert_close(key, acts.get(id).unwrap(), want, common::TOL);
            compared += 1;
        }
        assert_eq!(compared, 2, "{name}");
    }
    // Layers by their Keras names (the model's own scope left out).
    let model = Model::open(&fixture("keras_mobilenet.onnx"), None, &Device::Cpu).unwrap();
    let names = model.graph.layer_names();
    assert!(names.iter().any(|n| n == "block_add"), "{names:?}");
    assert!(
        !names.iter().any(|n| n.starts_with("mobilenet")),
        "{names:?}"
    );
}

#[test]
fn free_sizes_come_from_size_or_the_model_toml() {
    use convscope::model::Overrides;
    let free = fixture("onnx_free_size.onnx");
    let size = |m: &Model| m.graph.input_size();
    assert_eq!(
        size(&Model::open(&free, None, &Device::Cpu).unwrap()),
        (3, 224, 224)
    );
    let asked = Overrides {
        size: Some([16, 20]),
        ..Overrides::default()
    };
    let model = Model::open_with(&free, &asked, &Device::Cpu).unwrap();
    assert_eq!(size(&model), (3, 16, 20));
    assert_eq!(
        (model.normalisation.height, model.normalisation.width),
        (16, 20)
    );
    let d = tempfile::tempdir().unwrap();
    std::fs::write(
        d.path().join("model.toml"),
        format!("weights = {free:?}\ninput_size = [40, 48]\n"),
    )
    .unwrap();
    let model = Model::open(d.path(), None, &Device::Cpu).unwrap();
    assert_eq!(size(&model), (3, 40, 48));
}

#[test]
fn baked_in_normalisation_leaky_relu_and_global_max_pooling() {
    // Sub and Div per channel, LeakyRelu, x * HardSigmoid(x), scalar Mul and Add, average
    // pooling without the padding counted, GlobalMaxPool.
    matches_onnxruntime(
        "onnx_baked_normalisation.onnx",
        "onnx_baked_normalisation_expected.safetensors",
    );
}

#[test]
fn a_resnet_export_has_the_state_dict_graphs_layer_names() {
    // Batch norms kept (scripts/make_onnx_fixtures.py), so every node of the state-dict graph
    // has its counterpart: the same names, ResNet's shared ReLU numbered by call in both.
    let onnx = Model::open(&fixture("resnet50_small.onnx"), None, &Device::Cpu).unwrap();
    let (graph, _) = common::fixture_graph("resnet50_small.safetensors");
    let names = |g: &convscope::model::Graph| -> Vec<String> {
        g.nodes().iter().map(|n| n.name.clone()).collect()
    };
    assert_eq!(names(&onnx.graph), names(&graph));
}

#[test]
fn a_layer_norm_written_as_arithmetic_is_one_layer_norm() {
    // As torch.onnx.export writes ConvNeXt's LayerNorm before opset 17.
    matches_onnxruntime(
        "onnx_layer_norm_arithmetic.onnx",
        "onnx_layer_norm_arithmetic_expected.safetensors",
    );
    let model = Model::open(
        &fixture("onnx_layer_norm_arithmetic.onnx"),
        None,
        &Device::Cpu,
    )
    .unwrap();
    let kinds: Vec<&str> = model.graph.nodes().iter().map(|n| n.op.kind()).collect();
    assert!(kinds.contains(&"layernorm"), "{kinds:?}");
}
