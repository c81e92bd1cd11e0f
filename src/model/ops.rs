//! Operation kinds of the graph and their forward computation.
//!
//! Every op works on NCHW `f32` tensors (or `(N, features)` after flatten). Weights live inside
//! the op; batch norm is stored folded into a per-channel scale and shift (eval mode).

use candle_core::{Result, Tensor};

pub use super::conv::Conv2d;
use super::cpu;
use super::pool::{self, PoolGeometry};

/// Pooling kinds with a fixed window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolKind {
    Max,
    /// Average with `count_include_pad = true` (PyTorch's default).
    Avg,
}

#[derive(Debug, Clone)]
pub enum Op {
    /// The image fed to the network.
    Input,
    Conv2d(Conv2d),
    /// Eval-mode batch norm as `x * scale + shift`, both `(1, C, 1, 1)`.
    BatchNorm {
        scale: Tensor,
        shift: Tensor,
    },
    Relu,
    Pool {
        kind: PoolKind,
        geometry: PoolGeometry,
    },
    /// PyTorch's `AdaptiveAvgPool2d((h, w))`.
    AdaptiveAvgPool {
        out_h: usize,
        out_w: usize,
    },
    /// `(N, C, H, W) -> (N, C*H*W)`.
    Flatten,
    /// `x @ weight^T + bias`; weight `(out, in)`.
    Linear {
        weight: Tensor,
        bias: Option<Tensor>,
    },
    /// Identity at inference.
    Dropout,
    /// Sum of all inputs (residual connections).
    Add,
    /// Concatenation of all inputs along channels.
    Concat,
}

impl Op {
    /// Short lower-case name of the op kind, as shown in the layer tree.
    pub fn kind(&self) -> &'static str {
        match self {
            Op::Input => "input",
            Op::Conv2d(_) => "conv2d",
            Op::BatchNorm { .. } => "batchnorm",
            Op::Relu => "relu",
            Op::Pool {
                kind: PoolKind::Max,
                ..
            } => "maxpool",
            Op::Pool {
                kind: PoolKind::Avg,
                ..
            } => "avgpool",
            Op::AdaptiveAvgPool { .. } => "adaptiveavgpool",
            Op::Flatten => "flatten",
            Op::Linear { .. } => "linear",
            Op::Dropout => "dropout",
            Op::Add => "add",
            Op::Concat => "concat",
        }
    }

    /// Human-readable attributes (kernel, stride, ...), empty when there are none.
    pub fn attributes(&self) -> String {
        match self {
            Op::Conv2d(c) => {
                let d = c.weight.dims();
                let mut s = format!(
                    "{}->{}, kernel {}x{}, stride {}, padding {}",
                    d[1] * c.groups,
                    d[0],
                    d[2],
                    d[3],
                    c.stride,
                    c.padding
                );
                if c.dilation != 1 {
                    s += &format!(", dilation {}", c.dilation);
                }
                if c.groups != 1 {
                    s += &format!(", groups {}", c.groups);
                }
                if c.bias.is_none() {
                    s += ", no bias";
                }
                s
            }
            Op::Pool { geometry: g, .. } => format!(
                "kernel {}, stride {}, padding {}{}",
                g.kernel,
                g.stride,
                g.padding,
                if g.ceil_mode { ", ceil_mode" } else { "" }
            ),
            Op::AdaptiveAvgPool { out_h, out_w } => format!("output {out_h}x{out_w}"),
            Op::Linear { weight, .. } => format!("{}->{}", weight.dims()[1], weight.dims()[0]),
            _ => String::new(),
        }
    }

    /// Number of learned parameters, as PyTorch's `parameters()` counts them (batch norm: weight
    /// and bias; its running statistics are buffers).
    pub fn parameter_count(&self) -> usize {
        match self {
            Op::Conv2d(c) => c.weight.elem_count() + c.bias.as_ref().map_or(0, |b| b.elem_count()),
            Op::BatchNorm { scale, .. } => 2 * scale.elem_count(),
            Op::Linear { weight, bias } => {
                weight.elem_count() + bias.as_ref().map_or(0, |b| b.elem_count())
            }
            _ => 0,
        }
    }

    /// Output shape for the given input shapes (batch dimension included).
    pub fn output_shape(&self, inputs: &[&[usize]]) -> std::result::Result<Vec<usize>, String> {
        let first = inputs.first().copied().unwrap_or(&[]);
        let spatial = |what: &str| -> std::result::Result<(usize, usize, usize, usize), String> {
            match first {
                [n, c, h, w] => Ok((*n, *c, *h, *w)),
                other => Err(format!("{what} needs an (N, C, H, W) input, got {other:?}")),
            }
        };
        match self {
            Op::Input | Op::Relu | Op::Dropout => Ok(first.to_vec()),
            Op::Conv2d(c) => {
                let (n, ch, h, w) = spatial("conv2d")?;
                let d = c.weight.dims();
                if d[1] * c.groups != ch {
                    return Err(format!(
                        "conv2d expects {} input channels, got {ch}",
                        d[1] * c.groups
                    ));
                }
                let out = |size: usize, k: usize| {
                    let span = c.dilation * (k - 1) + 1;
                    (size + 2 * c.padding)
                        .checked_sub(span)
                        .map(|v| v / c.stride + 1)
                        .ok_or_else(|| format!("input {h}x{w} is too small for a {k}-wide kernel"))
                };
                Ok(vec![n, d[0], out(h, d[2])?, out(w, d[3])?])
            }
            Op::BatchNorm { scale, .. } => {
                let (_, ch, _, _) = spatial("batchnorm")?;
                if scale.dims()[1] != ch {
                    return Err(format!(
                        "batchnorm expects {} channels, got {ch}",
                        scale.dims()[1]
                    ));
                }
                Ok(first.to_vec())
            }
            Op::Pool { geometry, .. } => {
                let (n, ch, h, w) = spatial("pooling")?;
                let (oh, ow) = (geometry.output_size(h)?, geometry.output_size(w)?);
                Ok(vec![n, ch, oh, ow])
            }
            Op::AdaptiveAvgPool { out_h, out_w } => {
                let (n, ch, _, _) = spatial("adaptive pooling")?;
                Ok(vec![n, ch, *out_h, *out_w])
            }
            Op::Flatten => Ok(vec![first[0], first[1..].iter().product()]),
            Op::Linear { weight, .. } => {
                let (o, i) = (weight.dims()[0], weight.dims()[1]);
                match first {
                    [n, f] if *f == i => Ok(vec![*n, o]),
                    other => Err(format!("linear expects (N, {i}) input, got {other:?}")),
                }
            }
            Op::Add => {
                if inputs.iter().any(|s| *s != first) {
                    return Err(format!("add needs equal shapes, got {inputs:?}"));
                }
                Ok(first.to_vec())
            }
            Op::Concat => {
                let mut out = first.to_vec();
                for s in &inputs[1..] {
                    if s.len() != out.len() || s[0] != out[0] || s[2..] != out[2..] {
                        return Err(format!("concat needs matching shapes, got {inputs:?}"));
                    }
                    out[1] += s[1];
                }
                Ok(out)
            }
        }
    }

    /// Computes the op's output from its inputs.
    pub fn forward(&self, inputs: &[&Tensor]) -> Result<Tensor> {
        let x = inputs[0];
        match self {
            Op::Input | Op::Dropout => Ok(x.clone()),
            Op::Conv2d(c) => c.forward(x),
            Op::BatchNorm { scale, shift } if cpu::handles(x) && x.rank() == 4 => {
                cpu::batch_norm::channel_affine(x, scale, Some(shift))
            }
            Op::BatchNorm { scale, shift } => x.broadcast_mul(scale)?.broadcast_add(shift),
            Op::Relu if cpu::handles(x) => cpu::relu::relu(x),
            Op::Relu => x.relu(),
            Op::Pool { kind, geometry } => pool::pool_forward(x, *kind, geometry),
            Op::AdaptiveAvgPool { out_h, out_w } => pool::adaptive_avg_pool(x, *out_h, *out_w),
            Op::Flatten => x.flatten_from(1),
            Op::Linear { weight, bias } => {
                let y = x.matmul(&weight.t()?)?;
                match bias {
                    Some(b) => y.broadcast_add(b),
                    None => Ok(y),
                }
            }
            Op::Add => {
                let mut acc = x.clone();
                for t in &inputs[1..] {
                    acc = (acc + *t)?;
                }
                Ok(acc)
            }
            Op::Concat => Tensor::cat(inputs, 1),
        }
    }
}
