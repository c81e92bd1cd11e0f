//! Every bad input gets one clear line on stderr and a non-zero exit, never a panic.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use candle_core::{Device, Tensor};
use common::{edited_vgg, fixture};
use convscope::model::StateDict;

struct Failure {
    stderr: String,
}

/// Runs the binary, expecting failure with exactly one line on stderr containing `expect`.
fn fails(args: &[&str], expect: &str) -> Failure {
    fails_with(args, expect, 1)
}

/// [`fails`] with exit code `code`: 2 for a command line that does not parse.
fn fails_with(args: &[&str], expect: &str, code: i32) -> Failure {
    let out = Command::new(env!("CARGO_BIN_EXE_convscope"))
        .args(args)
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success(), "{args:?} succeeded");
    assert_eq!(
        out.status.code(),
        Some(code),
        "{args:?}: exit code {:?}, stderr {stderr}",
        out.status.code()
    );
    assert_eq!(
        stderr.trim_end().lines().count(),
        1,
        "{args:?}: not one line:\n{stderr}"
    );
    assert!(stderr.starts_with("error: "), "{args:?}: {stderr}");
    assert!(
        !stderr.contains("panicked") && !stderr.contains("internal error"),
        "{stderr}"
    );
    assert!(
        stderr.contains(expect),
        "{args:?}: expected '{expect}' in: {stderr}"
    );
    Failure { stderr }
}

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn sample_image(dir: &Path) -> PathBuf {
    let p = dir.join("img.png");
    image::RgbImage::from_fn(40, 30, |x, y| image::Rgb([x as u8 * 5, y as u8 * 7, 90]))
        .save(&p)
        .unwrap();
    p
}

const VGG: &str = "vgg16_small.safetensors";

#[test]
fn command_lines_that_do_not_parse_get_one_line() {
    let d = tmp();
    let img = sample_image(d.path());
    let m = fixture(VGG);
    let (m, img) = (s(&m), s(&img));
    fails_with(
        &["cam", m, img, "--method", "gradcam++"],
        "invalid value 'gradcam++' for '--method <METHOD>'; [possible values: gradcam,",
        2,
    );
    fails_with(
        &["activations", m, img],
        "the following required arguments were not provided: --layer <LAYER>",
        2,
    );
    fails_with(&["cam", m, img, "--alpha", "x"], "invalid value 'x'", 2);
    fails_with(&["predict", "--no-such-flag"], "unexpected argument", 2);
    // A negative class is a value, refused as a class.
    fails(&["cam", m, img, "--class", "-1"], "unknown class '-1'");
}

#[test]
fn missing_model_file() {
    fails(
        &["info", "/no/such/model.safetensors"],
        "cannot open model /no/such/model.safetensors",
    );
}

#[test]
fn empty_checkpoint() {
    let d = tmp();
    let p = write(d.path(), "empty.pth", b"");
    fails(&["info", s(&p)], "is empty");
}

#[test]
fn truncated_checkpoint() {
    let d = tmp();
    let bytes = std::fs::read(fixture(VGG)).unwrap();
    let p = write(d.path(), "cut.safetensors", &bytes[..bytes.len() / 2]);
    fails(
        &["info", s(&p)],
        "is not a readable safetensors or PyTorch checkpoint",
    );
    let bytes = std::fs::read(fixture("vgg16_small.pth")).unwrap();
    let p = write(d.path(), "cut.pth", &bytes[..bytes.len() / 2]);
    fails(&["info", s(&p)], "is not a readable PyTorch checkpoint");
}

#[test]
fn corrupt_checkpoint() {
    let d = tmp();
    let noise: Vec<u8> = (0..5000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let p = write(d.path(), "noise.safetensors", &noise);
    fails(&["info", s(&p)], "is not a readable");
}

#[test]
fn checkpoint_of_no_known_architecture() {
    let d = tmp();
    let t = Tensor::zeros((4, 3), candle_core::DType::F32, &Device::Cpu).unwrap();
    let p = d.path().join("other.safetensors");
    StateDict::from_tensors([("encoder.proj.weight".to_string(), t)].into())
        .save(&p)
        .unwrap();
    fails(&["info", s(&p)], "matches no known architecture");
}

#[test]
fn missing_weight_is_named() {
    let d = tmp();
    let p = edited_vgg(d.path(), "edited.safetensors", |t| {
        t.remove("classifier.3.weight");
    });
    fails(&["info", s(&p)], "no weight 'classifier.3.weight'");
}

#[test]
fn misshaped_weight_is_named() {
    let d = tmp();
    let p = edited_vgg(d.path(), "edited.safetensors", |t| {
        t.insert(
            "features.2.bias".into(),
            Tensor::zeros(7, candle_core::DType::F32, &Device::Cpu).unwrap(),
        );
    });
    fails(
        &["info", s(&p)],
        "weight 'features.2.bias' has shape [7], expected [4]",
    );
}

#[test]
fn unknown_layer_suggests_nearest_names() {
    let d = tmp();
    let img = sample_image(d.path());
    let f = fails(
        &[
            "activations",
            s(&fixture(VGG)),
            s(&img),
            "--layer",
            "features.288",
            "-o",
            s(&d.path().join("o.png")),
        ],
        "unknown layer 'features.288'",
    );
    assert!(
        f.stderr.contains("did you mean features.28"),
        "{}",
        f.stderr
    );
}

#[test]
fn file_that_is_not_an_image() {
    let d = tmp();
    let p = write(
        d.path(),
        "notes.png",
        b"these are not pixels, just some text in a file",
    );
    fails(&["predict", s(&fixture(VGG)), s(&p)], "not an image");
}

#[test]
fn one_pixel_image() {
    let d = tmp();
    let p = d.path().join("dot.png");
    image::RgbImage::new(1, 1).save(&p).unwrap();
    fails(&["predict", s(&fixture(VGG)), s(&p)], "is 1x1 pixels");
}

/// A PNG whose header claims 20000x20000 RGB pixels (1.2 GB decoded); the data never follows.
fn huge_png_header() -> Vec<u8> {
    let chunk = |kind: &[u8], data: &[u8]| {
        let mut c = (data.len() as u32).to_be_bytes().to_vec();
        c.extend_from_slice(kind);
        c.extend_from_slice(data);
        let mut h = crc32fast::Hasher::new();
        h.update(kind);
        h.update(data);
        c.extend_from_slice(&h.finalize().to_be_bytes());
        c
    };
    let mut ihdr = 20000u32.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&20000u32.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend(chunk(b"IHDR", &ihdr));
    png.extend(chunk(b"IEND", &[]));
    png
}

#[test]
fn huge_image_is_refused_before_decoding() {
    let d = tmp();
    let p = write(d.path(), "huge.png", &huge_png_header());
    fails(
        &["predict", s(&fixture(VGG)), s(&p)],
        "larger than the limit",
    );
}

#[test]
fn unwritable_output_path() {
    let d = tmp();
    let img = sample_image(d.path());
    fails(
        &[
            "activations",
            s(&fixture(VGG)),
            s(&img),
            "--layer",
            "features.4",
            "-o",
            "/no/such/folder/out.png",
        ],
        "cannot write /no/such/folder/out.png",
    );
}

#[test]
fn cuda_without_the_feature_says_how_to_rebuild() {
    if cfg!(feature = "cuda") {
        return;
    }
    fails(
        &["info", s(&fixture(VGG)), "--device", "cuda"],
        "--features cuda",
    );
}

#[test]
fn files_that_are_not_state_dicts_say_what_they_are() {
    // Made by scripts/make_checkpoint_fixtures.py.
    for (file, expect) in [
        (
            "whole_module.pth",
            "holds a whole pickled torch.nn.modules.container.Sequential (torch.save(model)), not a state dict; save model.state_dict() instead",
        ),
        (
            "torchscript.pt",
            "is a TorchScript file (torch.jit.save), not a state dict",
        ),
    ] {
        fails(&["info", s(&fixture(file))], expect);
    }
}

#[test]
fn outputs_never_overwrite_each_other_and_a_late_failure_names_what_was_written() {
    let d = tmp();
    let img = sample_image(d.path());
    let m = fixture(VGG);
    let png = d.path().join("x.png");
    fails(
        &[
            "cam",
            s(&m),
            s(&img),
            "--layer",
            "features.16",
            "-o",
            s(&png),
            "--npy",
            s(&png),
        ],
        "x.png is named for two outputs",
    );
    assert!(
        !png.exists(),
        "nothing is written for a refused command line"
    );
    let unwritable = d.path().join("no/such/folder/x.npy");
    let f = fails(
        &[
            "activations",
            s(&m),
            s(&img),
            "--layer",
            "features.4",
            "-o",
            s(&png),
            "--npy",
            s(&unwritable),
        ],
        "written before this failed: ",
    );
    assert!(f.stderr.contains(s(&png)), "{}", f.stderr);
    assert!(png.is_file());
}

#[test]
fn a_pass_larger_than_the_memory_available_is_refused_before_it_runs() {
    // One 3x3 convolution to 4096 channels at 4096x4096 pixels: 256 GiB of output, more than
    // any machine this runs on has, from a 450 KiB checkpoint.
    let d = tmp();
    let mut tensors = std::collections::HashMap::new();
    let conv = Tensor::zeros((4096, 3, 3, 3), candle_core::DType::F32, &Device::Cpu).unwrap();
    tensors.insert("conv.weight".to_string(), conv);
    let fc = Tensor::zeros((2, 4096), candle_core::DType::F32, &Device::Cpu).unwrap();
    tensors.insert("fc.weight".to_string(), fc);
    StateDict::from_tensors(tensors)
        .save(&d.path().join("w.safetensors"))
        .unwrap();
    std::fs::write(
        d.path().join("model.toml"),
        r#"weights = "w.safetensors"
architecture = "sequential"
input_size = [4096, 4096]
output = "softmax"
[[layers]]
name = "conv"
op = "conv2d"
out_channels = 4096
kernel = 3
padding = 1
bias = false
[[layers]]
name = "gap"
op = "adaptive_avg_pool"
output_size = [1, 1]
[[layers]]
name = "flatten"
op = "flatten"
[[layers]]
name = "fc"
op = "linear"
bias = false
"#,
    )
    .unwrap();
    let img = sample_image(d.path());
    let out = d.path().join("x.png");
    for args in [
        vec!["predict", s(d.path()), s(&img)],
        vec!["cam", s(d.path()), s(&img), "-o", s(&out)],
    ] {
        fails(&args, "of memory available");
    }
    assert!(!out.exists());
}

#[test]
fn a_backbone_without_a_head_serves_its_layers_and_refuses_classes() {
    let d = tmp();
    let img = sample_image(d.path());
    let mut t = candle_core::safetensors::load(fixture("resnet50_small.safetensors"), &Device::Cpu)
        .unwrap();
    t.retain(|k, _| !k.starts_with("fc."));
    let m = d.path().join("backbone.safetensors");
    StateDict::from_tensors(t).save(&m).unwrap();
    let ok = Command::new(env!("CARGO_BIN_EXE_convscope"))
        .args([
            "activations",
            s(&m),
            s(&img),
            "--layer",
            "layer2",
            "-o",
            s(&d.path().join("a.png")),
        ])
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    for args in [
        vec!["predict", s(&m), s(&img)],
        vec!["cam", s(&m), s(&img), "-o", s(&d.path().join("c.png"))],
    ] {
        fails(
            &args,
            "has no classification head (a backbone saved without one)",
        );
    }
}

#[test]
fn filter_channels_past_the_layer_are_refused_as_ranges_and_as_indices() {
    let m = fixture(VGG);
    // features.2 has 4 channels in the reduced fixture.
    fails(
        &[
            "filters",
            s(&m),
            "--layer",
            "features.2",
            "--channels",
            "0..64",
        ],
        "channels 0..64 reach past the layer's 4 channels (0..4)",
    );
    fails(
        &["filters", s(&m), "--layer", "features.2", "--channels", "9"],
        "channel 9 is out of range: the layer has 4 channels",
    );
}

#[test]
fn onnx_files_that_cannot_be_served() {
    let d = tmp();
    let p = write(d.path(), "empty.onnx", b"");
    fails(&["info", s(&p)], "empty.onnx is empty");
    let bytes = std::fs::read(fixture("resnet50_small.onnx")).unwrap();
    let p = write(d.path(), "cut.onnx", &bytes[..bytes.len() / 2]);
    fails(&["info", s(&p)], "cut.onnx is not a readable ONNX model");
    let noise: Vec<u8> = (0..5000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let p = write(d.path(), "noise.onnx", &noise);
    fails(&["info", s(&p)], "noise.onnx is not a readable ONNX model");
    // A node outside the ops convscope computes is named, with its operation.
    fails(
        &["info", s(&fixture("onnx_unsupported_op.onnx"))],
        "ONNX node '/1/Resize' (Resize): is an operation convscope does not compute (Resize)",
    );
    // Graphs no exporter writes (scripts/make_onnx_fixtures.py's broken_graphs).
    fails(
        &["info", s(&fixture("onnx_cycle.onnx"))],
        "reads 'image_or_y' before the node that makes it (the graph has a cycle or is out of order)",
    );
    fails(
        &["info", s(&fixture("onnx_dangling.onnx"))],
        "(Conv): reads 'w', which no node makes",
    );
    fails(
        &["info", s(&fixture("onnx_oversized.onnx"))],
        "tensor 'w': holds 16 bytes for 1000000000000 values of 4 bytes",
    );
    // A size for a graph whose size is fixed, and a size that is none.
    fails(
        &[
            "info",
            "--size",
            "16",
            s(&fixture("onnx_external/tiny.onnx")),
        ],
        "takes 8x8 images (fixed in its graph); --size 16x16 applies to sizes a graph leaves free",
    );
    fails_with(
        &["info", "--size", "0x3", s(&fixture("onnx_free_size.onnx"))],
        "'0x3' is not a size: H or HxW, each 1 to 4096",
        2,
    );
    // Weights outside the model's folder are not read.
    fails(
        &["info", s(&fixture("onnx_external/outside.onnx"))],
        "names external data ../onnx_unsupported_op.onnx, outside the model's folder",
    );
}

#[test]
fn a_cam_at_a_layer_of_one_pixel_says_it_cannot_localise() {
    // The demo model's global average pooling: a 1x1 map is one value everywhere.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let d = tmp();
    let out = d.path().join("cam.png");
    fails(
        &[
            "cam",
            s(&root.join("models/shapes")),
            s(&root.join("models/shapes/two_shapes.png")),
            "--layer",
            "gap",
            "-o",
            s(&out),
        ],
        "Grad-CAM for 'cross' at gap is the same everywhere (1x1): this layer cannot say where",
    );
    assert!(!out.exists(), "no picture of a map that says nothing");
}

#[test]
fn weights_that_name_a_folder_are_not_a_checkpoint() {
    // model.toml's weights pointing at a folder: the checkpoint reader says what it found.
    let d = tmp();
    std::fs::create_dir(d.path().join("weights")).unwrap();
    write(d.path(), "model.toml", b"weights = \"weights\"\n");
    fails(
        &["info", s(d.path())],
        "weights is a folder, not a checkpoint file",
    );
}
