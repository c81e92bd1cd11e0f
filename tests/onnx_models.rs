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
    for (name, nodes) in [
        ("resnet50_small", "TorchScript"),
        ("efficientnet_b0_small", "TorchScript"),
        ("convnext_tiny_small", "TorchScript"),
        ("mobilenet_v3_small_small", "dynamo"),
    ] {
        let model = Model::open(&fixture(&format!("{name}.onnx")), None, &Device::Cpu)
            .unwrap_or_else(|e| panic!("{name} ({nodes} export): {e:#}"));
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

#[test]
fn weights_in_an_external_file_are_read() {
    let model = Model::open(&fixture("onnx_external/tiny.onnx"), None, &Device::Cpu).unwrap();
    let exp = expected("onnx_external/tiny_expected.safetensors");
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
