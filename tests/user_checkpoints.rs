//! Checkpoints as users bring them, each through every subcommand: wrappers' prefixes, a
//! fine-tuned Sequential head (one Linear or several), backbones without a head, a one-logit
//! sigmoid classifier, a grayscale model, timm's models (a Hub folder with its config.json, and
//! state dicts of each timm family), and files that are not state dicts. Each command either works or fails with
//! the one line that says why (never a panic, never another message).

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use candle_core::{DType, Device, Tensor};
use common::fixture;
use convscope::model::StateDict;

/// A checkpoint built from a fixture by renaming and editing its tensors.
fn variant(
    dir: &Path,
    name: &str,
    from: &str,
    edit: impl FnOnce(&mut HashMap<String, Tensor>),
) -> PathBuf {
    let mut t = candle_core::safetensors::load(fixture(from), &Device::Cpu).unwrap();
    edit(&mut t);
    let path = dir.join(name);
    StateDict::from_tensors(t).save(&path).unwrap();
    path
}

fn prefixed(prefix: &str) -> impl FnOnce(&mut HashMap<String, Tensor>) + '_ {
    move |t| {
        *t = t
            .drain()
            .map(|(k, v)| (format!("{prefix}{k}"), v))
            .collect();
    }
}

/// What a subcommand must do: succeed, or fail with one line containing the text.
#[derive(Clone, Copy)]
enum Expect {
    Works,
    Fails(&'static str),
}

fn check(args: &[&str], expect: Expect) {
    let out = Command::new(env!("CARGO_BIN_EXE_convscope"))
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    match expect {
        Expect::Works => assert!(out.status.success(), "{args:?}: {stderr}"),
        Expect::Fails(text) => {
            assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
            assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr}");
            assert!(
                stderr.contains(text),
                "{args:?}: expected '{text}' in {stderr}"
            );
        }
    }
}

#[test]
fn users_checkpoints_through_every_subcommand() {
    use Expect::{Fails, Works};
    let d = tempfile::tempdir().unwrap();
    let img = d.path().join("photo.png");
    image::RgbImage::from_fn(90, 70, |x, y| {
        image::Rgb([(x * 2) as u8, (y * 3) as u8, 60])
    })
    .save(&img)
    .unwrap();
    let lightning = variant(
        d.path(),
        "lightning.safetensors",
        "vgg16_small.safetensors",
        |t| {
            prefixed("model.")(t);
            let w = Tensor::ones(10, DType::F32, &Device::Cpu).unwrap();
            t.insert("criterion.weight".into(), w);
        },
    );
    let compiled = variant(
        d.path(),
        "compiled.safetensors",
        "resnet50_small.safetensors",
        prefixed("module._orig_mod."),
    );
    let sequential_head = variant(
        d.path(),
        "dropout_head.safetensors",
        "resnet50_small.safetensors",
        |t| {
            for p in ["weight", "bias"] {
                let v = t.remove(&format!("fc.{p}")).unwrap();
                t.insert(format!("fc.1.{p}"), v);
            }
        },
    );
    let backbone = variant(
        d.path(),
        "backbone.safetensors",
        "resnet50_small.safetensors",
        |t| t.retain(|k, _| !k.starts_with("fc.")),
    );
    let vgg_backbone = variant(
        d.path(),
        "vgg_features.safetensors",
        "vgg16_small.safetensors",
        |t| t.retain(|k, _| !k.starts_with("classifier.")),
    );
    let binary = variant(
        d.path(),
        "binary.safetensors",
        "vgg16_small.safetensors",
        |t| {
            for name in ["classifier.6.weight", "classifier.6.bias"] {
                let one = t[name].narrow(0, 0, 1).unwrap();
                t.insert(name.into(), one);
            }
        },
    );
    let gray = variant(
        d.path(),
        "gray.safetensors",
        "vgg16_small.safetensors",
        |t| {
            let w = t["features.0.weight"].sum_keepdim(1).unwrap();
            t.insert("features.0.weight".into(), w);
        },
    );
    let no_head = "has no classification head";
    let cases: Vec<(PathBuf, &str, [Expect; 5])> = vec![
        (lightning, "features.4", [Works; 5]),
        (compiled, "layer1", [Works; 5]),
        (sequential_head, "layer1", [Works; 5]),
        (
            backbone,
            "layer1",
            [Works, Fails(no_head), Works, Fails(no_head), Works],
        ),
        (
            vgg_backbone,
            "features.4",
            [Works, Fails(no_head), Works, Fails(no_head), Works],
        ),
        (binary, "features.4", [Works; 5]),
        (fixture("timm_hub_small"), "layer2", [Works; 5]),
        (
            fixture("resnet50_mlp_head_small.safetensors"),
            "layer2",
            [Works; 5],
        ),
        (
            fixture("timm_resnet_d_small.safetensors"),
            "conv1.2",
            [Works; 5],
        ),
        (
            fixture("timm_convnext_small.safetensors"),
            "stages.1",
            [Works; 5],
        ),
        (
            fixture("timm_regnety_small.safetensors"),
            "s2.b1.se",
            [Works; 5],
        ),
        (
            fixture("timm_efficientnetv2_small.safetensors"),
            "blocks.1",
            [Works; 5],
        ),
        (
            fixture("timm_mobilenetv3_small_small.safetensors"),
            "blocks.2",
            [Works; 5],
        ),
        (
            gray,
            "features.4",
            [Works, Works, Works, Works, Fails("optimised as RGB images")],
        ),
        (
            fixture("whole_module.pth"),
            "0",
            [Fails("holds a whole pickled"); 5],
        ),
        (
            fixture("torchscript.pt"),
            "0",
            [Fails("is a TorchScript file"); 5],
        ),
    ];
    let out = d.path().join("out.png");
    let (img, out) = (img.to_str().unwrap(), out.to_str().unwrap());
    for (model, layer, expect) in &cases {
        let m = model.to_str().unwrap();
        let commands: [Vec<&str>; 5] = [
            vec!["info", m],
            vec!["predict", m, img],
            vec!["activations", m, img, "--layer", layer, "-o", out],
            vec!["cam", m, img, "-o", out],
            vec![
                "filters",
                m,
                "--layer",
                layer,
                "--steps",
                "1",
                "--channels",
                "0..2",
                "-o",
                out,
            ],
        ];
        for (args, &e) in commands.iter().zip(expect) {
            check(args, e);
        }
    }
}

#[test]
fn a_timm_folder_opens_with_its_config_json() {
    // scripts/make_timm_fixtures.py: save_for_hf's folder, with its own input size (48x64),
    // mean, std and class names (synsets with descriptions), and timm's logits for a PNG of
    // exactly that size (so no resize stands between the two).
    let folder = fixture("timm_hub_small");
    let img = fixture("timm_hub_small.png");
    let (folder, img) = (folder.to_str().unwrap(), img.to_str().unwrap());
    let out = common::convscope_ok(&["predict", "--json", folder, img], None);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ours: Vec<f32> = json["logits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect();
    let theirs = &common::expected("timm_hub_small_expected.safetensors")["logits"];
    let ours = Tensor::new(ours, &Device::Cpu)
        .unwrap()
        .reshape(theirs.shape())
        .unwrap();
    common::assert_close("logits", &ours, theirs, 1e-4);
    let labels: Vec<&str> = json["top"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["label"].as_str().unwrap())
        .collect();
    let mut sorted = labels.clone();
    sorted.sort();
    assert_eq!(sorted, ["cat", "dog", "fox"], "{json}");
    let info = common::convscope_ok(&["info", folder], None);
    let info = String::from_utf8_lossy(&info.stdout);
    assert!(info.contains("input 3x48x64, 3 classes"), "{info}");
    // --size still wins over the config's.
    let sized = common::convscope_ok(&["info", "--size", "64x64", folder], None);
    assert!(String::from_utf8_lossy(&sized.stdout).contains("input 3x64x64"));
    // timm's TensorFlow ports are refused by name: their padding is not in the weights.
    let tf = tempfile::tempdir().unwrap();
    std::fs::copy(
        fixture("timm_efficientnet_b0_small.safetensors"),
        tf.path().join("model.safetensors"),
    )
    .unwrap();
    std::fs::write(
        tf.path().join("config.json"),
        r#"{"architecture": "tf_efficientnet_b0", "pretrained_cfg": {}}"#,
    )
    .unwrap();
    check(
        &["info", tf.path().to_str().unwrap()],
        Expect::Fails("a port from TensorFlow whose \"same\" padding convscope does not build"),
    );
    // A folder with neither a model.toml nor timm's files says what it looked for.
    let empty = tempfile::tempdir().unwrap();
    check(
        &["info", empty.path().to_str().unwrap()],
        Expect::Fails("without a model.toml (or a timm config.json beside model.safetensors)"),
    );
}
