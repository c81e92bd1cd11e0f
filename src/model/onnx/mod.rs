//! ONNX models: a `.onnx` file's graph (ModelProto, opsets 7 and later) read into the engine's
//! graph, its nodes named by the module paths the exporters record and its initializers used as
//! the ops' weights. The protobuf types are generated once from onnx.proto
//! (scripts/generate_onnx_proto.sh) and committed, so building needs no protoc.

mod attributes;
mod channels;
mod elementwise;
mod import;
mod layers;
mod names;
mod patterns;
mod pooling;
#[allow(clippy::all, clippy::pedantic)]
mod proto;
mod shapes;
mod tensors;

use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use candle_core::Device;
use prost::Message;

pub use import::Imported;

use import::{ImageInput, Layout};

use proto::tensor_shape_proto::dimension::Value as Dim;
use proto::type_proto::Value as TypeValue;

/// Whether `path` names an ONNX model (by its extension).
pub fn is_onnx(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("onnx"))
}

/// Reads the model at `path` and builds its graph; `size` is the input's `[height, width]`
/// where the graph leaves them free (a model.toml's `input_size`).
pub fn open(path: &Path, size: [usize; 2], device: &Device) -> Result<Imported> {
    let len = std::fs::metadata(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .len();
    if len == 0 {
        bail!("{} is empty", path.display());
    }
    crate::model::memory::ensure_fits(len.saturating_mul(2), || path.display().to_string())?;
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let model = proto::ModelProto::decode(bytes.as_slice())
        .map_err(|e| anyhow!("{} is not a readable ONNX model ({e})", path.display()))?;
    drop(bytes);
    let graph = model
        .graph
        .as_ref()
        .ok_or_else(|| anyhow!("{} is an ONNX model without a graph", path.display()))?;
    let folder = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let input = image_input(graph, size).with_context(|| format!("{}", path.display()))?;
    let producer = model.producer_name.as_deref().unwrap_or("");
    import::import(graph, &input, producer, folder, device)
        .with_context(|| format!("{}", path.display()))
}

/// The graph's image input, free sizes taken from `size`: `(N, C, H, W)`, or `(N, H, W, C)`
/// with one or three channels (TensorFlow's layout, which tf2onnx graphs transpose at once).
fn image_input(graph: &proto::GraphProto, size: [usize; 2]) -> Result<ImageInput> {
    let initializers: std::collections::HashSet<&str> = graph
        .initializer
        .iter()
        .filter_map(|t| t.name.as_deref())
        .collect();
    let inputs: Vec<&proto::ValueInfoProto> = graph
        .input
        .iter()
        .filter(|i| !initializers.contains(i.name.as_deref().unwrap_or("")))
        .collect();
    let [input] = inputs[..] else {
        bail!(
            "the graph takes {} inputs; convscope feeds one image",
            inputs.len()
        );
    };
    let name = input.name.clone().unwrap_or_default();
    let dims: Vec<Option<usize>> = match input.r#type.as_ref().and_then(|t| t.value.as_ref()) {
        Some(TypeValue::TensorType(t)) => t
            .shape
            .as_ref()
            .map(|s| {
                s.dim
                    .iter()
                    .map(|d| match d.value {
                        Some(Dim::DimValue(v)) if v > 0 => Some(v as usize),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default(),
        _ => bail!("the graph's input '{name}' is not a tensor"),
    };
    let image = |channels, h: Option<usize>, w: Option<usize>, layout| ImageInput {
        name: name.clone(),
        channels,
        height: h.unwrap_or(size[0]),
        width: w.unwrap_or(size[1]),
        layout,
    };
    match dims[..] {
        [_, h, w, Some(c @ (1 | 3))] if !matches!(h, Some(1 | 3)) => {
            Ok(image(c, h, w, Layout::Nhwc))
        }
        [_, Some(c), h, w] => Ok(image(c, h, w, Layout::Nchw)),
        _ => bail!(
            "the graph's input '{name}' has shape {}; convscope feeds (N, C, H, W) or (N, H, W, C) images",
            show(&dims)
        ),
    }
}

fn show(dims: &[Option<usize>]) -> String {
    let parts: Vec<String> = dims
        .iter()
        .map(|d| d.map_or("?".to_string(), |v| v.to_string()))
        .collect();
    format!("({})", parts.join(", "))
}
