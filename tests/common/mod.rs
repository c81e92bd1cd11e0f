//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use convscope::model::{Arch, CheckpointWeights, Graph, Keep, StateDict};

pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

pub fn expected(name: &str) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(fixture(name), &Device::Cpu).unwrap()
}

/// Fixture input size (height, width).
pub const INPUT: (usize, usize) = (64, 80);

/// Loads a fixture checkpoint and builds its graph at the fixture input size.
pub fn fixture_graph(file: &str) -> (Graph, String) {
    fixture_graph_at(file, INPUT)
}

/// Loads a fixture checkpoint and builds its graph for an input of `(height, width)`.
pub fn fixture_graph_at(file: &str, (h, w): (usize, usize)) -> (Graph, String) {
    // As a bare checkpoint is opened: the model's tensors found inside a wrapper's names.
    let dict = StateDict::load(&fixture(file), &Device::Cpu)
        .unwrap()
        .unwrapped(&|d| convscope::model::arch::detect(d).is_ok());
    let arch = Arch::for_checkpoint(None, &dict).unwrap();
    let mut weights = CheckpointWeights::new(dict, Device::Cpu);
    (arch.build((3, h, w), &mut weights).unwrap(), arch.name())
}

/// Runs the binary in `cwd` (the test's own by default) and returns its output, failing the
/// test with its stderr unless it succeeds.
pub fn convscope_ok(args: &[&str], cwd: Option<&Path>) -> std::process::Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_convscope"));
    command.args(args);
    if let Some(dir) = cwd {
        command.current_dir(dir);
    }
    let out = command.output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `max |a - b| / max |b|`.
pub fn relative_error(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims(), "shapes differ");
    let diff = (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap();
    let scale = b.abs().unwrap().flatten_all().unwrap().max(0).unwrap();
    diff.to_scalar::<f32>().unwrap() / scale.to_scalar::<f32>().unwrap().max(1e-12)
}

pub fn assert_close(what: &str, a: &Tensor, b: &Tensor, tol: f32) {
    let e = relative_error(a, b);
    assert!(e <= tol, "{what}: relative error {e:e} > {tol:e}");
}

/// The reduced VGG16 fixture's tensors, changed by `edit`, saved as `dir/name`.
pub fn edited_vgg(
    dir: &Path,
    name: &str,
    edit: impl FnOnce(&mut HashMap<String, Tensor>),
) -> PathBuf {
    let mut tensors =
        candle_core::safetensors::load(fixture("vgg16_small.safetensors"), &Device::Cpu).unwrap();
    edit(&mut tensors);
    let path = dir.join(name);
    StateDict::from_tensors(tensors).save(&path).unwrap();
    path
}

/// The largest difference of one channel of one pixel between two pictures of the same size.
pub fn max_pixel_diff(a: &image::RgbImage, b: &image::RgbImage) -> u8 {
    assert_eq!(a.dimensions(), b.dimensions());
    a.as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(x, y)| x.abs_diff(*y))
        .max()
        .unwrap()
}

/// Convolution windows whose geometry differs between the axes, with their kernel sizes
/// `(kh, kw)`: Inception's 1x7 and 7x1 with "same" padding, TensorFlow's "same" for an even input
/// and stride 2 (one more after than before), different strides and dilations per axis, and
/// padding on one side only.
pub fn per_axis_windows() -> Vec<(usize, usize, convscope::model::ops::Window)> {
    use convscope::model::ops::{Axis, Window};
    let axis = |kernel, stride, dilation, before, after| Axis {
        kernel,
        stride,
        dilation,
        before,
        after,
    };
    let window = |h, w| Window { h, w };
    vec![
        (1, 7, window(axis(1, 1, 1, 0, 0), axis(7, 1, 1, 3, 3))),
        (7, 1, window(axis(7, 1, 1, 3, 3), axis(1, 1, 1, 0, 0))),
        (3, 3, window(axis(3, 2, 1, 0, 1), axis(3, 2, 1, 0, 1))),
        (3, 3, window(axis(3, 2, 1, 1, 1), axis(3, 1, 2, 2, 2))),
        (1, 1, window(axis(1, 1, 1, 0, 1), axis(1, 1, 1, 1, 0))),
    ]
}

/// Relative tolerance of the parity tests against PyTorch.
pub const TOL: f32 = 1e-4;

/// The logits and every `out.<layer>` of a fixture's expected outputs, by module path.
pub fn check_forward(graph: &Graph, exp: &HashMap<String, Tensor>) {
    let acts = graph.forward(&exp["input"], &Keep::All).unwrap();
    assert_close(
        "logits",
        acts.get(graph.output()).unwrap(),
        &exp["logits"],
        TOL,
    );
    let mut checked = 0;
    for (key, value) in exp {
        if let Some(layer) = key.strip_prefix("out.") {
            let id = graph.find(layer).unwrap();
            assert_close(layer, acts.get(id).unwrap(), value, TOL);
            checked += 1;
        }
    }
    assert!(checked >= 2, "only {checked} intermediate outputs compared");
}

/// The gradients of the expected class's logit w.r.t. the fixture's layer and the input.
pub fn check_gradients(graph: &Graph, exp: &HashMap<String, Tensor>) {
    let acts = graph.forward(&exp["input"], &Keep::All).unwrap();
    let class = exp["class"].to_vec1::<i64>().unwrap()[0] as usize;
    let classes = graph.node(graph.output()).shape[1];
    let mut onehot = vec![0f32; classes];
    onehot[class] = 1.0;
    let seed = Tensor::from_vec(onehot, (1, classes), &Device::Cpu).unwrap();
    let (layer_key, layer_grad) = exp
        .iter()
        .find(|(k, _)| k.starts_with("grad_layer."))
        .unwrap();
    let layer = graph
        .find(layer_key.strip_prefix("grad_layer.").unwrap())
        .unwrap();
    let g = graph.gradient(&acts, layer, graph.output(), &seed).unwrap();
    assert_close("layer gradient", &g, layer_grad, TOL);
    let g = graph
        .gradient(&acts, graph.input(), graph.output(), &seed)
        .unwrap();
    assert_close("input gradient", &g, &exp["grad_input"], TOL);
}
