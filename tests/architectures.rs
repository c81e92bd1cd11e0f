//! Architecture detection, the layer tree and name resolution on every supported layout.

mod common;

use candle_core::{DType, Device, Tensor};
use convscope::model::arch::alexnet::AlexNetConfig;
use convscope::model::arch::convnext::ConvNextConfig;
use convscope::model::arch::densenet::DenseNetConfig;
use convscope::model::arch::efficientnet::EfficientNetConfig;
use convscope::model::arch::googlenet::GoogLeNetConfig;
use convscope::model::arch::inception::InceptionConfig;
use convscope::model::arch::mnasnet::MnasNetConfig;
use convscope::model::arch::mobilenet_v2::MobileNetV2Config;
use convscope::model::arch::mobilenet_v3::{MobileNetV3Config, Variant};
use convscope::model::arch::regnet::RegNetConfig;
use convscope::model::arch::shufflenet::ShuffleNetConfig;
use convscope::model::arch::squeezenet::{SqueezeItem, SqueezeNetConfig, Version};
use convscope::model::arch::vgg::VggItem;
use convscope::model::arch::{arch_names, ResNetConfig, VggConfig, FAMILIES};
use convscope::model::tree::layer_tree;
use convscope::model::{Arch, CheckpointWeights, RandomWeights, Weights};

/// A named architecture at a sixteenth of its width (SqueezeNet an eighth), so tests stay small.
fn narrow(name: &str) -> Arch {
    for (n, variant) in [
        ("mobilenet_v3_small", Variant::Small),
        ("mobilenet_v3_large", Variant::Large),
    ] {
        if name == n {
            let mut c = MobileNetV3Config::standard(variant, 10);
            c.stem /= 8;
            for block in &mut c.blocks {
                block.expanded /= 8;
                block.out /= 8;
                block.squeeze = block.squeeze.map(|s| s / 8);
            }
            (c.last_conv, c.hidden) = (c.last_conv / 8, c.hidden / 8);
            return Arch::new(c);
        }
    }
    if let Some(depth) = name.strip_prefix("densenet") {
        let mut c = DenseNetConfig::standard(depth.parse().unwrap(), 10).unwrap();
        (c.init, c.growth, c.bottleneck) = (8, 4, 8);
        c.transitions = c.transitions.map(|t| t / 16);
        return Arch::new(c);
    }
    if name == "inception_v3" {
        let mut c = InceptionConfig::standard(10);
        for w in c.widths.values_mut() {
            *w = (*w / 16).max(4);
        }
        return Arch::new(c);
    }
    if name == "googlenet" {
        let mut c = GoogLeNetConfig::standard(10);
        c.stem = c.stem.map(|w| w / 8);
        c.modules = c.modules.map(|m| m.map(|w| (w / 8).max(1)));
        return Arch::new(c);
    }
    if let Some(c) = ShuffleNetConfig::standard(name, 10) {
        // The widths name the variant.
        return Arch::new(c);
    }
    if let Some(mut c) = MnasNetConfig::standard(name, 10) {
        // The stem's width names the variant.
        for b in c.stacks.iter_mut().flatten() {
            (b.expanded, b.out) = (b.expanded / 4, b.out / 4);
        }
        c.last = 32;
        return Arch::new(c);
    }
    if let Some(mut c) = RegNetConfig::standard(name, 10) {
        // The widths name the variant, so the small ones keep them; the large ones (up to
        // 644M parameters) are narrowed and then detected as a RegNet of that shape.
        if c.stages.iter().flatten().any(|b| b.out > 1000) {
            c.variant = None;
            for b in c.stages.iter_mut().flatten() {
                b.out /= 8;
                b.bottleneck /= 8;
                b.groups = (b.groups / 8).max(1);
                b.squeeze = b.squeeze.map(|s| (s / 8).max(1));
            }
        }
        return Arch::new(c);
    }
    if let Some(mut c) = ConvNextConfig::standard(name, 10) {
        // The first width keeps its value: it tells small, base and large apart.
        c.dims = [c.dims[0], 16, 16, 16];
        return Arch::new(c);
    }
    if let Some(mut c) = EfficientNetConfig::standard(name, 10) {
        // The last conv keeps its width: it tells B1 from B2 (same block counts).
        c.stem /= 8;
        for block in c.stages.iter_mut().flatten() {
            block.expanded /= 8;
            block.out /= 8;
            block.squeeze = block.squeeze.map(|s| (s / 8).max(1));
        }
        return Arch::new(c);
    }
    if name == "mobilenet_v2" {
        let mut c = MobileNetV2Config::standard(10);
        c.stem /= 8;
        for block in &mut c.blocks {
            (block.hidden, block.out) = (block.hidden / 8, block.out / 8);
        }
        c.last /= 8;
        return Arch::new(c);
    }
    if name == "alexnet" {
        let mut c = AlexNetConfig::standard(10);
        c.convs = c.convs.map(|w| w / 16);
        c.hidden = 32;
        return Arch::new(c);
    }
    for (n, version) in [
        ("squeezenet1_0", Version::V1_0),
        ("squeezenet1_1", Version::V1_1),
    ] {
        if name == n {
            let mut c = SqueezeNetConfig::standard(version, 10);
            c.stem /= 8;
            for item in &mut c.features {
                if let SqueezeItem::Fire(s, e) = item {
                    (*s, *e) = (*s / 8, *e / 8);
                }
            }
            return Arch::new(c);
        }
    }
    if let Some(mut c) = VggConfig::standard(name, 10) {
        for item in &mut c.features {
            if let VggItem::Conv(ch) = item {
                *ch /= 16;
            }
        }
        c.hidden = 32;
        return Arch::new(c);
    }
    let mut c = ResNetConfig::standard(name, 10).unwrap_or_else(|| panic!("no narrow {name}"));
    c.stem /= 16;
    if c.groups > 1 {
        // ResNeXt keeps its inner widths: its name is read from them.
        c.widths = c.widths.map(|(a, b)| (a, b / 16));
    } else {
        c.widths = c.widths.map(|(a, b)| (a / 16, b / 16));
    }
    Arch::new(c)
}

#[test]
fn every_named_architecture_is_detected_from_its_checkpoint() {
    for name in arch_names() {
        let mut random = RandomWeights::new(1, Device::Cpu);
        let arch = narrow(name);
        // 64x64, or the family's own size where it needs more (Inception v3).
        let [h, w] = arch.input_size().unwrap_or([64, 64]);
        let built = arch.build((3, h, w), &mut random).unwrap();
        let dict = random.into_state_dict();
        let detected = Arch::for_checkpoint(None, &dict).unwrap();
        if name.starts_with("regnet") && detected.name().starts_with("regnet-like") {
            assert_eq!(detected.name(), narrow(name).name(), "a narrowed {name}");
        } else {
            assert_eq!(detected.name(), name);
        }
        let rebuilt = detected
            .build((3, h, w), &mut CheckpointWeights::new(dict, Device::Cpu))
            .unwrap();
        assert_eq!(rebuilt.parameter_count(), built.parameter_count(), "{name}");
        assert_eq!(rebuilt.nodes().len(), built.nodes().len(), "{name}");
    }
}

#[test]
fn arch_override_uses_the_checkpoint_widths() {
    let mut random = RandomWeights::new(2, Device::Cpu);
    narrow("resnet34").build((3, 64, 64), &mut random).unwrap();
    let dict = random.into_state_dict();
    let forced = Arch::for_checkpoint(Some("resnet34"), &dict).unwrap();
    assert!(forced
        .build(
            (3, 64, 64),
            &mut CheckpointWeights::new(dict.clone(), Device::Cpu)
        )
        .is_ok());
    // Forcing a deeper layout names the first weight the checkpoint lacks.
    let wrong = Arch::for_checkpoint(Some("resnet50"), &dict).unwrap();
    let err = wrong
        .build((3, 64, 64), &mut CheckpointWeights::new(dict, Device::Cpu))
        .unwrap_err();
    assert!(
        format!("{err:#}").contains("layer1.0.conv1.weight"),
        "{err:#}"
    );
}

#[test]
fn torchvision_parameter_counts() {
    // The parameter counts torchvision reports for the full-size models.
    for (name, params) in [
        ("resnet18", 11_689_512),
        ("resnet50", 25_557_032),
        ("vgg16", 138_357_544),
        ("alexnet", 61_100_840),
        ("squeezenet1_0", 1_248_424),
        ("squeezenet1_1", 1_235_496),
        ("mobilenet_v2", 3_504_872),
        ("mobilenet_v3_small", 2_542_856),
        ("mobilenet_v3_large", 5_483_032),
        ("efficientnet_b0", 5_288_548),
        ("efficientnet_v2_s", 21_458_488),
        ("convnext_tiny", 28_589_128),
        ("densenet121", 7_978_856),
        ("densenet161", 28_681_000),
        ("resnext50_32x4d", 25_028_904),
        ("wide_resnet50_2", 68_883_240),
        ("regnet_y_400mf", 4_344_144),
        ("regnet_x_400mf", 5_495_976),
        ("mnasnet1_0", 4_383_312),
        ("shufflenet_v2_x1_0", 2_278_604),
        ("googlenet", 6_624_904),
        ("inception_v3", 23_834_568),
    ] {
        let arch = Arch::standard(name, 1000).unwrap();
        let g = arch
            .build((3, 224, 224), &mut RandomWeights::new(0, Device::Cpu))
            .unwrap();
        assert_eq!(g.parameter_count(), params, "{name}");
    }
}

#[test]
fn modules_stand_for_their_last_node_and_the_tree_nests_them() {
    let (g, _) = common::fixture_graph("resnet50_small.safetensors");
    assert_eq!(g.node(g.find("layer4").unwrap()).name, "layer4.2.relu3");
    assert_eq!(g.node(g.find("layer2.0").unwrap()).name, "layer2.0.relu3");
    assert_eq!(g.node(g.find("fc").unwrap()).name, "fc");
    assert_eq!(
        g.node(g.find("layer1.0.downsample").unwrap()).name,
        "layer1.0.downsample.1"
    );
    let err = g.find("layer4.9").unwrap_err();
    assert!(
        err.nearest.iter().any(|n| n.starts_with("layer4.")),
        "{err}"
    );

    let tree = layer_tree(&g);
    let labels: Vec<&str> = tree.children.iter().map(|c| c.label.as_str()).collect();
    assert_eq!(
        labels,
        [
            "input", "conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4",
            "avgpool", "flatten", "fc"
        ]
    );
    let layer3 = &tree.children[7];
    assert_eq!(layer3.children.len(), 6);
    assert!(
        !layer3.is_node
            && layer3.children[0]
                .children
                .iter()
                .any(|c| c.label == "downsample")
    );
    assert_eq!(tree.parameters, g.parameter_count());
    let sum: usize = tree.children.iter().map(|c| c.parameters).sum();
    assert_eq!(sum, g.parameter_count());
    // Shapes for the fixture's 64x80 input: layer4 is 2x3 after three stride-2 stages.
    assert_eq!(g.node(g.find("layer4").unwrap()).shape, [1, 128, 2, 3]);
}

#[test]
fn the_readme_lists_every_family_and_unknown_checkpoints_name_them() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    for family in &FAMILIES {
        assert!(
            readme.contains(family.title),
            "README lacks {}",
            family.title
        );
        for name in family.names {
            assert!(readme.contains(name), "README lacks {name}");
        }
    }
    let mut random = RandomWeights::new(3, Device::Cpu);
    random.take("head.weight", &[2, 2]).unwrap();
    let err = Arch::for_checkpoint(None, &random.into_state_dict()).unwrap_err();
    for family in &FAMILIES {
        assert!(format!("{err}").contains(family.title), "{err}");
    }
}

/// One fixture of every family (small widths, PyTorch's weights) and its default CAM layer:
/// features[-1] for VGG, AlexNet, MobileNetV2 and SqueezeNet (there not the class-score map),
/// layer4[-1] for ResNet.
const FAMILY_FIXTURES: [(&str, &str); 23] = [
    ("vgg16_small", "features.30"),
    ("resnet50_small", "layer4.2.relu3"),
    ("alexnet_small", "features.12"),
    ("squeezenet1_0_small", "features.12.cat"),
    ("squeezenet1_1_small", "features.12.cat"),
    ("mobilenet_v2_small", "features.18.2"),
    ("mobilenet_v3_small_small", "features.12.2"),
    ("mobilenet_v3_large_small", "features.16.2"),
    ("efficientnet_b0_small", "features.8.2"),
    ("efficientnet_v2_s_small", "features.7.2"),
    ("convnext_tiny_small", "features.7.2.add"),
    ("densenet121_small", "relu"),
    ("resnext50_small", "layer4.2.relu3"),
    ("regnet_y_small", "trunk_output.block4.block4-5.activation"),
    ("mnasnet_small", "layers.16"),
    ("shufflenet_v2_small", "conv5.2"),
    ("googlenet_small", "inception5b.cat"),
    ("inception_v3_small", "Mixed_7c.cat"),
    ("timm_resnet_d_small", "layer4.0.relu3"),
    ("timm_convnext_small", "stages.3.blocks.0.add"),
    ("timm_regnety_small", "s4.b2.act3"),
    ("timm_efficientnet_b0_small", "bn2.act"),
    ("timm_mobilenetv3_large_small", "blocks.6.0.bn1.act"),
];

#[test]
fn default_cam_layers_are_the_ones_pytorch_grad_cam_suggests() {
    for (file, layer) in FAMILY_FIXTURES {
        let path = common::fixture(&format!("{file}.safetensors"));
        let model = convscope::model::Model::open(&path, None, &Device::Cpu).unwrap();
        let id = convscope::viz::cam::default_layer(&model).unwrap();
        assert_eq!(model.graph.node(id).name, layer, "{file}");
    }
}

#[test]
fn damaged_checkpoints_of_every_family_are_errors_not_panics() {
    use convscope::model::StateDict;
    use std::collections::HashMap;
    // One variant per family; every eleventh weight replaced by a tensor of another rank, and
    // by a convolution weight with a zero kernel.
    let damaged = [
        Tensor::zeros((), DType::F32, &Device::Cpu).unwrap(),
        Tensor::zeros(3, DType::F32, &Device::Cpu).unwrap(),
        Tensor::zeros((2, 3, 0, 0), DType::F32, &Device::Cpu).unwrap(),
    ];
    // A family built only from checkpoints (no `--arch` names) starts from its fixtures.
    let mut starts: Vec<(String, StateDict, [usize; 2])> = FAMILIES
        .iter()
        .filter_map(|family| {
            let name = family.names.first()?;
            let mut random = RandomWeights::new(4, Device::Cpu);
            let arch = narrow(name);
            let size = arch.input_size().unwrap_or([64, 64]);
            arch.build((3, size[0], size[1]), &mut random).unwrap();
            Some((name.to_string(), random.into_state_dict(), size))
        })
        .collect();
    for file in ["timm_efficientnetv2_small", "timm_mobilenetv3_small_small"] {
        let path = common::fixture(&format!("{file}.safetensors"));
        starts.push((
            file.into(),
            StateDict::load(&path, &Device::Cpu).unwrap(),
            [64, 64],
        ));
    }
    assert_eq!(starts.len(), FAMILIES.len() + 1);
    for (name, dict, size) in &starts {
        let [h, w] = *size;
        let mut keys: Vec<String> = dict.names().map(str::to_string).collect();
        keys.sort();
        for key in keys.iter().step_by(11) {
            for bad in &damaged {
                let mut tensors: HashMap<String, Tensor> = keys
                    .iter()
                    .map(|k| (k.clone(), dict.get(k).unwrap().clone()))
                    .collect();
                tensors.insert(key.clone(), bad.clone());
                let broken = StateDict::from_tensors(tensors);
                let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    Arch::for_checkpoint(None, &broken).and_then(|a| {
                        a.build(
                            (3, h, w),
                            &mut CheckpointWeights::new(broken.clone(), Device::Cpu),
                        )
                    })
                }));
                assert!(
                    outcome.is_ok(),
                    "{name}: {key} as {:?} panicked",
                    bad.dims()
                );
            }
        }
    }
}

#[test]
fn a_pass_kept_for_the_gradient_gives_the_gradient_of_a_pass_that_keeps_all() {
    // Every op states what its reverse pass reads (`Operation::reverse_reads`); a pass that
    // keeps only that must give the same input gradient, at another batch size than the build's
    // (the dropped values' shapes come from the pass), and must drop something.
    use convscope::model::Keep;
    for (file, _) in FAMILY_FIXTURES {
        let path = common::fixture(&format!("{file}.safetensors"));
        let model = convscope::model::Model::open(&path, None, &Device::Cpu).unwrap();
        let g = &model.graph;
        let (c, h, w) = g.input_size();
        let x = Tensor::randn(0f32, 1.0, (2, c, h, w), &Device::Cpu).unwrap();
        let Keep::Only(kept) = g.kept_for_gradient(g.input(), g.output()).unwrap() else {
            panic!("{file}: a pass for the gradient keeps a list");
        };
        assert!(kept.len() < g.nodes().len(), "{file} keeps every value");
        let some = g
            .forward_to(&x, g.output(), &Keep::Only(kept.clone()))
            .unwrap();
        let all = g.forward(&x, &Keep::All).unwrap();
        let seed =
            Tensor::randn(0f32, 1.0, all.get(g.output()).unwrap().dims(), &Device::Cpu).unwrap();
        let expected = g.gradient(&all, g.input(), g.output(), &seed).unwrap();
        let got = g.gradient(&some, g.input(), g.output(), &seed).unwrap();
        common::assert_close(file, &got, &expected, 1e-6);
        let dropped = (0..g.nodes().len())
            .filter(|&id| some.get(id).is_none())
            .count();
        assert!(dropped > 0, "{file}: nothing was dropped");
    }
}
