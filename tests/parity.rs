//! Forward and gradient parity with PyTorch/torchvision on reduced-width VGG16 and ResNet50
//! (fixtures from scripts/make_fixtures.py), AlexNet and SqueezeNet 1.0/1.1
//! (scripts/make_family_fixtures.py).

mod common;

use candle_core::{Device, Tensor};
use common::{
    assert_close, check_forward, check_gradients, expected, fixture, fixture_graph,
    fixture_graph_at, TOL,
};
use convscope::model::ops::{Backward, Operation, Pool, PoolKind};
use convscope::model::{Arch, CheckpointWeights, Keep, StateDict};

#[test]
fn vgg16_forward_matches_torchvision() {
    let (graph, name) = fixture_graph("vgg16_small.safetensors");
    assert_eq!(name, "vgg16");
    check_forward(&graph, &expected("vgg16_small_expected.safetensors"));
}

#[test]
fn resnet50_forward_matches_torchvision() {
    let (graph, name) = fixture_graph("resnet50_small.safetensors");
    assert_eq!(name, "resnet50");
    check_forward(&graph, &expected("resnet50_small_expected.safetensors"));
}

#[test]
fn vgg16_gradients_match_torch() {
    let (graph, _) = fixture_graph("vgg16_small.safetensors");
    check_gradients(&graph, &expected("vgg16_small_expected.safetensors"));
}

#[test]
fn resnet50_gradients_match_torch() {
    let (graph, _) = fixture_graph("resnet50_small.safetensors");
    check_gradients(&graph, &expected("resnet50_small_expected.safetensors"));
}

#[test]
fn newer_families_match_torchvision_and_timm() {
    // (fixture from scripts/make_family_fixtures.py, the name it must be detected as)
    for (file, name) in [
        ("alexnet_small", "alexnet"),
        ("squeezenet1_0_small", "squeezenet1_0"),
        ("squeezenet1_1_small", "squeezenet1_1"),
        ("mobilenet_v2_small", "mobilenet_v2"),
        ("mobilenet_v3_small_small", "mobilenet_v3_small"),
        ("mobilenet_v3_large_small", "mobilenet_v3_large"),
        ("efficientnet_b0_small", "efficientnet_b0"),
        ("efficientnet_v2_s_small", "efficientnet_v2_s"),
        ("convnext_tiny_small", "convnext_tiny"),
        ("densenet121_small", "densenet121"),
        ("resnext50_small", "resnext50_4x4d"),
        ("regnet_y_small", "regnet-like (blocks [1, 3, 6, 6])"),
        ("mnasnet_small", "mnasnet-like"),
        ("shufflenet_v2_small", "shufflenet_v2-like"),
        ("googlenet_small", "googlenet"),
        ("inception_v3_small", "inception_v3"),
        // A fine-tuned head: Dropout, Linear, ReLU, Dropout, Linear at fc.0..4.
        ("resnet50_mlp_head_small", "resnet50"),
        // scripts/make_timm_fixtures.py
        (
            "timm_resnet_d_small",
            "resnet-like (bottleneck blocks [1, 2, 2, 1], deep stem, avg-down)",
        ),
        (
            "timm_resnet_tiered_small",
            "resnet-like (basic blocks [1, 1, 1, 1], deep stem)",
        ),
        (
            "timm_convnext_small",
            "convnext-like (blocks [1, 1, 3, 1], widths [8, 16, 24, 32]) (timm)",
        ),
        (
            "timm_convnext_conv_mlp_small",
            "convnext-like (blocks [1, 1, 2, 1], widths [8, 8, 16, 16]) (timm)",
        ),
        (
            "timm_regnety_small",
            "regnet-like (blocks [1, 1, 2, 2]) (timm)",
        ),
        (
            "timm_regnetx_small",
            "regnet-like (blocks [1, 2, 2, 1]) (timm)",
        ),
        (
            "timm_efficientnet_b0_small",
            "timm efficientnet (blocks [1, 1, 1, 2, 2, 2, 1])",
        ),
        (
            "timm_efficientnetv2_small",
            "timm efficientnet (blocks [1, 2, 2, 2, 3, 5])",
        ),
        (
            "timm_mobilenetv3_large_small",
            "timm mobilenetv3 (blocks [1, 2, 2, 3, 1, 2, 1])",
        ),
        (
            "timm_mobilenetv3_small_small",
            "timm mobilenetv3 (blocks [1, 2, 2, 1, 2, 1])",
        ),
    ] {
        let exp = expected(&format!("{file}_expected.safetensors"));
        let (_, _, h, w) = exp["input"].dims4().unwrap();
        let (graph, detected) = fixture_graph_at(&format!("{file}.safetensors"), (h, w));
        assert_eq!(detected, name);
        check_forward(&graph, &exp);
        check_gradients(&graph, &exp);
    }
}

#[test]
fn forward_from_a_cut_point_equals_the_full_pass() {
    let (graph, _) = fixture_graph("resnet50_small.safetensors");
    let exp = expected("resnet50_small_expected.safetensors");
    // Cut inside a block: the residual branch comes from the kept earlier outputs.
    let cut = graph.find("layer3.1.conv2").unwrap();
    let base = graph
        .forward(
            &exp["input"],
            &Keep::Only(graph.frontier(cut).into_iter().chain([cut]).collect()),
        )
        .unwrap();
    let resumed = graph
        .forward_from(&base, cut, base.get(cut).unwrap(), &Keep::Only(vec![]))
        .unwrap();
    assert_close(
        "logits after cut",
        resumed.get(graph.output()).unwrap(),
        &exp["logits"],
        TOL,
    );
}

#[test]
fn the_stem_gradient_matches_torch_through_the_padded_overlapping_pool() {
    let (graph, _) = fixture_graph("resnet50_small.safetensors");
    let exp = expected("resnet50_small_stem.safetensors");
    // The same stem at the stem fixture's (odd) input size.
    let dict = StateDict::load(&fixture("resnet50_small.safetensors"), &Device::Cpu).unwrap();
    let arch = Arch::for_checkpoint(None, &dict).unwrap();
    let (_, _, h, w) = exp["input"].dims4().unwrap();
    let stem_graph = arch
        .build((3, h, w), &mut CheckpointWeights::new(dict, Device::Cpu))
        .unwrap();
    drop(graph);
    let pool = stem_graph.find("maxpool").unwrap();
    let acts = stem_graph.forward(&exp["input"], &Keep::All).unwrap();
    assert_close("stem output", acts.get(pool).unwrap(), &exp["output"], TOL);
    let g = stem_graph
        .gradient(&acts, stem_graph.input(), pool, &exp["cotangent"])
        .unwrap();
    assert_close("stem input gradient", &g, &exp["grad_input"], TOL);
}

#[test]
fn max_pool_ties_send_the_gradient_to_the_first_maximum() {
    let exp = expected("resnet50_small_stem.safetensors");
    let pool = Pool::square(PoolKind::Max, 3, 2, 1, false);
    let x = &exp["ties_input"];
    let y = pool.forward(&[x]).unwrap();
    assert_close("tied pool output", &y, &exp["ties_output"], 0.0);
    let at = Backward {
        inputs: vec![Some(x)],
        output: Some(&y),
        input_shapes: vec![x.dims().to_vec()],
    };
    let grad = pool.vjp(&at, &exp["ties_cotangent"]).unwrap().remove(0);
    assert_close("tied pool gradient", &grad, &exp["ties_grad"], 1e-6);
}

#[test]
fn pth_safetensors_and_nested_dataparallel_checkpoints_give_the_same_outputs() {
    let exp = expected("vgg16_small_expected.safetensors");
    for file in [
        "vgg16_small.safetensors",
        "vgg16_small.pth",
        "vgg16_small_nested.pth",
    ] {
        let (graph, _) = fixture_graph(file);
        let acts = graph.forward(&exp["input"], &Keep::Only(vec![])).unwrap();
        assert_close(file, acts.get(graph.output()).unwrap(), &exp["logits"], TOL);
    }
}

#[test]
fn wrapped_checkpoints_open_as_the_model_inside() {
    use convscope::model::Model;
    let exp = expected("vgg16_small_expected.safetensors");
    let d = tempfile::tempdir().unwrap();
    let logits = |model: &Model| {
        let acts = model
            .graph
            .forward(&exp["input"], &Keep::Only(vec![]))
            .unwrap();
        acts.get(model.graph.output()).unwrap().clone()
    };
    let rename = |prefix: &'static str, extra: bool| {
        move |t: &mut std::collections::HashMap<String, candle_core::Tensor>| {
            let mut renamed: std::collections::HashMap<_, _> = t
                .drain()
                .map(|(k, v)| (format!("{prefix}{k}"), v))
                .collect();
            if extra {
                // What else a Lightning module holds: a loss's weights, an EMA copy's counter.
                let w = candle_core::Tensor::ones(10, candle_core::DType::F32, &Device::Cpu);
                renamed.insert("criterion.weight".into(), w.unwrap());
            }
            *t = renamed;
        }
    };
    // Lightning (`model.`, beside other modules' tensors), torch.compile (`_orig_mod.`) inside
    // DataParallel (`module.`), a backbone wrapper.
    for (name, prefix, extra) in [
        ("lightning.safetensors", "model.", true),
        ("compiled.safetensors", "module._orig_mod.", false),
        ("backbone.safetensors", "backbone.", false),
    ] {
        let path = common::edited_vgg(d.path(), name, rename(prefix, extra));
        let model = Model::open(&path, None, &Device::Cpu).unwrap();
        assert_eq!(model.arch, "vgg16", "{name}");
        assert_close(name, &logits(&model), &exp["logits"], TOL);
    }
    // Any other prefix, named in model.toml.
    common::edited_vgg(d.path(), "custom.safetensors", rename("net.", true));
    let card = d.path().join("model.toml");
    std::fs::write(
        &card,
        "weights = \"custom.safetensors\"\nprefix = \"net.\"\ninput_size = [64, 80]\n",
    )
    .unwrap();
    let model = Model::open(&card, None, &Device::Cpu).unwrap();
    assert_close("prefix in model.toml", &logits(&model), &exp["logits"], TOL);
    std::fs::write(
        &card,
        "weights = \"custom.safetensors\"\nprefix = \"nope.\"\n",
    )
    .unwrap();
    let err = match Model::open(&card, None, &Device::Cpu) {
        Ok(_) => panic!("a prefix without tensors opened"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("no tensors under the prefix 'nope.'"), "{err}");
}

#[test]
fn fine_tuned_heads_and_backbones_open() {
    use convscope::model::Model;
    let exp = expected("resnet50_small_expected.safetensors");
    let d = tempfile::tempdir().unwrap();
    let original =
        candle_core::safetensors::load(fixture("resnet50_small.safetensors"), &Device::Cpu)
            .unwrap();
    let save = |name: &str, edit: &dyn Fn(&mut std::collections::HashMap<String, Tensor>)| {
        let mut t = original.clone();
        edit(&mut t);
        let path = d.path().join(name);
        StateDict::from_tensors(t).save(&path).unwrap();
        path
    };
    // fc = Sequential(Dropout, Linear): the Linear is `fc.1`.
    let sequential = save("sequential_head.safetensors", &|t| {
        for p in ["weight", "bias"] {
            let v = t.remove(&format!("fc.{p}")).unwrap();
            t.insert(format!("fc.1.{p}"), v);
        }
    });
    let model = Model::open(&sequential, None, &Device::Cpu).unwrap();
    assert_eq!(model.arch, "resnet50");
    let classifier = model.graph.classifier().unwrap();
    assert_eq!(model.graph.node(classifier).name, "fc.1");
    let acts = model
        .graph
        .forward(&exp["input"], &Keep::Only(vec![]))
        .unwrap();
    assert_close(
        "fc.1 head",
        acts.get(model.graph.output()).unwrap(),
        &exp["logits"],
        TOL,
    );
    // A backbone saved without its head: the layers are there, the classes are not.
    let backbone = save("backbone.safetensors", &|t| {
        t.retain(|k, _| !k.starts_with("fc."))
    });
    let model = Model::open(&backbone, None, &Device::Cpu).unwrap();
    assert!(model.head.is_none() && model.labels.is_empty());
    assert_eq!(model.graph.node(model.graph.output()).name, "flatten");
    let acts = model
        .graph
        .forward(&exp["input"], &Keep::Only(vec![]))
        .unwrap();
    assert!(acts.get(model.graph.output()).is_some());
    let err = model.require_head().unwrap_err().to_string();
    assert!(err.contains("has no classification head"), "{err}");
}

#[test]
fn every_single_linear_head_may_sit_in_a_sequential_or_be_missing() {
    // Families whose head is one Linear: moved to `name.1` (after a Dropout) it is found there;
    // left out, the network is a backbone ending in its pooled features.
    for (file, head) in [
        ("densenet121_small", "classifier"),
        ("googlenet_small", "fc"),
        ("regnet_y_small", "fc"),
        ("shufflenet_v2_small", "fc"),
        ("inception_v3_small", "fc"),
        ("resnext50_small", "fc"),
    ] {
        let exp = expected(&format!("{file}_expected.safetensors"));
        let (_, _, h, w) = exp["input"].dims4().unwrap();
        let original =
            StateDict::load(&fixture(&format!("{file}.safetensors")), &Device::Cpu).unwrap();
        let build = |dict: StateDict| {
            let arch = Arch::for_checkpoint(None, &dict).unwrap();
            let mut weights = CheckpointWeights::new(dict, Device::Cpu);
            arch.build((3, h, w), &mut weights).unwrap()
        };
        let mut moved = std::collections::HashMap::new();
        let mut headless = std::collections::HashMap::new();
        for name in original.names() {
            let t = original.get(name).unwrap().clone();
            match name.strip_prefix(&format!("{head}.")) {
                Some(rest) => {
                    moved.insert(format!("{head}.1.{rest}"), t);
                }
                None => {
                    moved.insert(name.to_string(), t.clone());
                    headless.insert(name.to_string(), t);
                }
            }
        }
        let graph = build(StateDict::from_tensors(moved));
        assert_eq!(
            graph.node(graph.classifier().unwrap()).name,
            format!("{head}.1"),
            "{file}"
        );
        let acts = graph.forward(&exp["input"], &Keep::Only(vec![])).unwrap();
        assert_close(file, acts.get(graph.output()).unwrap(), &exp["logits"], TOL);
        let graph = build(StateDict::from_tensors(headless));
        assert!(graph.classifier().is_none(), "{file}");
        assert_eq!(
            graph.node(graph.output()).shape.len(),
            2,
            "{file}: ends in pooled features"
        );
    }
}

#[test]
fn backbones_saved_without_their_classifier_open_as_backbones() {
    // Families whose classifier is a Sequential (and timm's heads): without any of its tensors
    // the checkpoint is still detected, as the same family, and builds without class scores;
    // every layer before the classifier computes what the full network does.
    for (file, classifier) in [
        ("vgg16_small", "classifier."),
        ("alexnet_small", "classifier."),
        ("squeezenet1_1_small", "classifier."),
        ("mobilenet_v2_small", "classifier."),
        ("mobilenet_v3_large_small", "classifier."),
        ("efficientnet_b0_small", "classifier."),
        ("mnasnet_small", "classifier."),
        ("convnext_tiny_small", "classifier.2."),
        ("timm_convnext_small", "head.fc."),
        ("timm_regnety_small", "head.fc."),
        ("timm_efficientnet_b0_small", "classifier."),
        ("timm_mobilenetv3_small_small", "classifier."),
    ] {
        let exp = expected(&format!("{file}_expected.safetensors"));
        let (_, _, h, w) = exp["input"].dims4().unwrap();
        let original =
            StateDict::load(&fixture(&format!("{file}.safetensors")), &Device::Cpu).unwrap();
        let full_name = Arch::for_checkpoint(None, &original).unwrap().name();
        let headless: std::collections::HashMap<String, candle_core::Tensor> = original
            .names()
            .filter(|k| !k.starts_with(classifier))
            .map(|k| (k.to_string(), original.get(k).unwrap().clone()))
            .collect();
        let dict = StateDict::from_tensors(headless);
        let arch = Arch::for_checkpoint(None, &dict).unwrap();
        assert_eq!(arch.name(), full_name, "{file}");
        let graph = arch
            .build((3, h, w), &mut CheckpointWeights::new(dict, Device::Cpu))
            .unwrap();
        assert!(graph.classifier().is_none(), "{file}");
        let acts = graph.forward(&exp["input"], &Keep::All).unwrap();
        let mut compared = 0;
        for (key, want) in &exp {
            if let Some(layer) = key.strip_prefix("out.") {
                let got = acts.get(graph.find(layer).unwrap()).unwrap();
                assert_close(&format!("{file} {layer}"), got, want, TOL);
                compared += 1;
            }
        }
        assert!(compared >= 2, "{file}: {compared} outputs compared");
    }
}
