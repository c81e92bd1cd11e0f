//! A plain chain of layers described in model.toml (`[[layers]]` tables), the format of the
//! bundled demo model. Parameters are named `{layer}.weight`, `{layer}.bias`, ...

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

use super::builder::{Builder, ConvSpec};
use super::Layout;
use crate::model::ops::geometry::Window;
use crate::model::ops::{AdaptiveAvgPool, Dropout, Flatten, Op, Pool, PoolKind};

/// One layer of a sequential model: a unique name and an op with its settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LayerSpec {
    pub name: String,
    #[serde(flatten)]
    pub op: LayerOp,
}

fn one() -> usize {
    1
}

fn yes() -> bool {
    true
}

fn bn_eps() -> f64 {
    1e-5
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum LayerOp {
    Conv2d {
        /// Read from the checkpoint's weight shape when omitted.
        out_channels: Option<usize>,
        /// Read from the checkpoint's weight shape when omitted.
        kernel: Option<usize>,
        #[serde(default = "one")]
        stride: usize,
        #[serde(default)]
        padding: usize,
        #[serde(default = "one")]
        dilation: usize,
        #[serde(default = "one")]
        groups: usize,
        #[serde(default = "yes")]
        bias: bool,
    },
    BatchNorm {
        #[serde(default = "bn_eps")]
        eps: f64,
    },
    Relu,
    MaxPool {
        kernel: usize,
        /// Defaults to the kernel size, as in PyTorch.
        stride: Option<usize>,
        #[serde(default)]
        padding: usize,
        #[serde(default)]
        ceil_mode: bool,
    },
    AvgPool {
        kernel: usize,
        stride: Option<usize>,
        #[serde(default)]
        padding: usize,
        #[serde(default)]
        ceil_mode: bool,
    },
    AdaptiveAvgPool {
        output_size: [usize; 2],
    },
    Flatten,
    Linear {
        /// Read from the checkpoint's weight shape when omitted.
        out_features: Option<usize>,
        #[serde(default = "yes")]
        bias: bool,
    },
    Dropout,
}

/// A model.toml's chain of layers as a layout.
#[derive(Debug, Clone)]
pub struct Sequential(pub Vec<LayerSpec>);

impl Layout for Sequential {
    fn name(&self) -> String {
        format!("sequential ({} layers)", self.0.len())
    }

    fn build(&self, b: &mut Builder) -> Result<()> {
        build(&self.0, b)
    }

    /// None: the general rule (the last spatial layer before flattening) decides.
    fn cam_layer(&self) -> Option<String> {
        None
    }

    fn input_size(&self) -> Option<[usize; 2]> {
        None
    }
}

fn build(layers: &[LayerSpec], b: &mut Builder) -> Result<()> {
    if layers.is_empty() {
        bail!("the model has no layers");
    }
    let mut x = b.last();
    for layer in layers {
        let name = layer.name.as_str();
        let from_weights = |b: &Builder, dim: usize, what: &str| -> Result<usize> {
            match b.weights().shape_of(&format!("{name}.weight")) {
                Some(s) if s.len() > dim => Ok(s[dim]),
                _ => bail!("layer {name}: give {what} in model.toml (no weight to read it from)"),
            }
        };
        x = match &layer.op {
            LayerOp::Conv2d {
                out_channels,
                kernel,
                stride,
                padding,
                dilation,
                groups,
                bias,
            } => {
                let out = match out_channels {
                    Some(c) => *c,
                    None => from_weights(b, 0, "out_channels")?,
                };
                let k = match kernel {
                    Some(k) => *k,
                    None => from_weights(b, 2, "kernel")?,
                };
                let spec = ConvSpec {
                    out_channels: out,
                    window: Window::square(k, *stride, *padding, *dilation),
                    groups: *groups,
                    bias: *bias,
                };
                b.conv(name, x, spec)?
            }
            LayerOp::BatchNorm { eps } => b.batch_norm(name, x, *eps)?,
            LayerOp::Relu => b.relu(name, x)?,
            LayerOp::MaxPool {
                kernel,
                stride,
                padding,
                ceil_mode,
            }
            | LayerOp::AvgPool {
                kernel,
                stride,
                padding,
                ceil_mode,
            } => {
                let kind = if matches!(layer.op, LayerOp::MaxPool { .. }) {
                    PoolKind::Max
                } else {
                    PoolKind::Avg
                };
                let stride = stride.unwrap_or(*kernel);
                b.pool(
                    name,
                    x,
                    Pool::square(kind, *kernel, stride, *padding, *ceil_mode),
                )?
            }
            LayerOp::AdaptiveAvgPool {
                output_size: [h, w],
            } => {
                let pool = AdaptiveAvgPool {
                    out_h: *h,
                    out_w: *w,
                };
                b.op(name, Op::AdaptiveAvgPool(pool), &[x])?
            }
            LayerOp::Flatten => b.op(name, Op::Flatten(Flatten), &[x])?,
            LayerOp::Linear { out_features, bias } => {
                let out = match out_features {
                    Some(o) => *o,
                    None => from_weights(b, 0, "out_features")?,
                };
                b.linear(name, x, out, *bias)?
            }
            LayerOp::Dropout => b.op(name, Op::Dropout(Dropout), &[x])?,
        };
    }
    // A network described layer by layer ends in its class scores.
    b.scores(x);
    Ok(())
}
