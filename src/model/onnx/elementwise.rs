//! Elementwise nodes: activations (and the functions fused from several nodes), `Clip`, and
//! `Mul`/`Add` as the engine computes them: gates, per-channel factors, residual sums, biases.

use anyhow::{anyhow, bail, Result};
use candle_core::{DType, Tensor};

use super::attributes::Attributes;
use super::import::{Layout, Outcome, Value, Walk};
use super::patterns::Fused;
use super::proto::NodeProto;
use super::tensors::Constant;
use crate::model::graph::NodeId;
use crate::model::ops::{
    Activation, Add, BatchNorm, ChannelScale, ChannelShuffle, Function, Gate, LayerNorm, LeakyRelu,
    Op, Relu,
};

impl Walk<'_> {
    /// The one op of a function the exporter wrote as several nodes ([`super::patterns`]).
    pub(super) fn fused(&self, f: Fused, x: &str) -> Result<Outcome> {
        let (x, layout) = match self.values.get(x) {
            Some(Value::Node(id, layout)) => (*id, *layout),
            Some(Value::Const(_)) | None => {
                bail!("applies {f:?} to a value not computed from the image")
            }
        };
        let (label, op) = match f {
            Fused::Silu => ("silu", Op::Activation(Activation(Function::Silu))),
            Fused::Hardswish => ("hardswish", Op::Activation(Activation(Function::Hardswish))),
            Fused::Gelu => ("gelu", Op::Activation(Activation(Function::Gelu))),
            Fused::Shuffle(groups) => (
                "channel_shuffle",
                Op::ChannelShuffle(ChannelShuffle { groups }),
            ),
            Fused::LayerNorm { axis, eps } => {
                // Over the channels: the last axis of a channels-last value, or axis 1.
                let channels_axis = match layout {
                    Layout::Nhwc => axis == -1 || axis == 3,
                    Layout::Nchw => axis == 1 || axis == -3,
                    Layout::Flat | Layout::Padded(_) => false,
                };
                if !channels_axis || self.shape(x).len() != 4 {
                    bail!("normalises axis {axis} of a value whose channels are another axis; convscope normalises the channels at every pixel");
                }
                let c = self.shape(x)[1];
                let op = LayerNorm {
                    weight: Tensor::ones((1, c, 1, 1), DType::F32, self.device)?,
                    bias: Tensor::zeros((1, c, 1, 1), DType::F32, self.device)?,
                    eps: eps as f64,
                };
                ("layernorm", Op::LayerNorm(op))
            }
        };
        Ok(Outcome::Node(label, op, vec![x], layout))
    }

    pub(super) fn activation(&self, node: &NodeProto, f: Function) -> Result<Outcome> {
        let op = Op::Activation(Activation(f));
        let (x, layout) = self.computed_any(node, 0)?;
        Ok(Outcome::Node(op.kind(), op, vec![x], layout))
    }

    pub(super) fn relu(&self, node: &NodeProto) -> Result<Outcome> {
        let (x, layout) = self.computed_any(node, 0)?;
        Ok(Outcome::Node("relu", Op::Relu(Relu), vec![x], layout))
    }

    pub(super) fn leaky_relu(&self, node: &NodeProto, a: &Attributes) -> Result<Outcome> {
        let (x, layout) = self.computed_any(node, 0)?;
        let negative_slope = a.float("alpha", 0.01);
        let op = Op::LeakyRelu(LeakyRelu { negative_slope });
        Ok(Outcome::Node("leakyrelu", op, vec![x], layout))
    }

    pub(super) fn clip(&self, node: &NodeProto, a: &Attributes) -> Result<Outcome> {
        let bound = |k: usize, attr: &str, default: f32| -> Result<f32> {
            match self.optional_constant(node, k)? {
                Some(c) => c
                    .to_floats()
                    .first()
                    .copied()
                    .ok_or_else(|| anyhow!("has an empty bound")),
                None => Ok(a.float(attr, default)),
            }
        };
        let (lo, hi) = (
            bound(1, "min", f32::NEG_INFINITY)?,
            bound(2, "max", f32::INFINITY)?,
        );
        let x = self.computed(node, 0)?;
        match (lo, hi) {
            (0.0, 6.0) => self.activation(node, Function::Relu6),
            (0.0, hi) if hi == f32::INFINITY => {
                Ok(Outcome::Node("relu", Op::Relu(Relu), vec![x], Layout::Nchw))
            }
            (lo, hi) => bail!(
                "clips to [{lo}, {hi}]; convscope computes ReLU ([0, inf]) and ReLU6 ([0, 6])"
            ),
        }
    }

    /// `HardSigmoid` with PyTorch's constants, the only ones the engine computes.
    pub(super) fn hard_sigmoid(&self, node: &NodeProto, a: &Attributes) -> Result<Outcome> {
        let (alpha, beta) = (a.float("alpha", 0.2), a.float("beta", 0.5));
        if (alpha - 1.0 / 6.0).abs() > 1e-6 || (beta - 0.5).abs() > 1e-6 {
            bail!("has alpha {alpha} and beta {beta}; convscope computes PyTorch's (1/6, 0.5)");
        }
        self.activation(node, Function::Hardsigmoid)
    }

    /// Opset 20's `Gelu`, exact form.
    pub(super) fn gelu(&self, node: &NodeProto, a: &Attributes) -> Result<Outcome> {
        match a.text("approximate").as_deref() {
            None | Some("none") => self.activation(node, Function::Gelu),
            Some(other) => bail!("has approximate = '{other}'; convscope computes the exact GELU"),
        }
    }

    pub(super) fn mul(&self, node: &NodeProto) -> Result<Outcome> {
        match (self.value(node, 0)?, self.value(node, 1)?) {
            (Value::Node(x, Layout::Nchw), Value::Node(s, Layout::Nchw))
            | (Value::Node(s, Layout::Nchw), Value::Node(x, Layout::Nchw))
                if gate_shapes(self.shape(*x), self.shape(*s)) =>
            {
                Ok(Outcome::Node("gate", Op::Gate(Gate), vec![*x, *s], Layout::Nchw))
            }
            (Value::Node(x, layout), Value::Const(c)) | (Value::Const(c), Value::Node(x, layout)) => {
                let factors = self.per_channel(*x, *layout, c, "multiplies")?;
                self.scale_by(*x, *layout, factors)
            }
            (Value::Node(..), Value::Node(..)) | (Value::Const(_), Value::Const(_)) => bail!("multiplies values of shapes convscope does not multiply (it computes gates, (N,C,H,W) x (N,C,1,1), and per-channel factors)"),
        }
    }

    /// `Add` of two computed values of one shape (residuals), or of a bias to the matrix
    /// product just before it (a `Linear` exported as `MatMul` + `Add`), folded into it.
    pub(super) fn add(&mut self, node: &NodeProto) -> Result<Outcome> {
        match (self.value(node, 0)?, self.value(node, 1)?) {
            (Value::Node(x, lx), Value::Node(y, ly)) => {
                if self.shape(*x) != self.shape(*y) || lx != ly {
                    bail!(
                        "adds shapes {:?} and {:?}; convscope adds equal shapes only",
                        self.shape(*x),
                        self.shape(*y)
                    );
                }
                Ok(Outcome::Node("add", Op::Add(Add), vec![*x, *y], *lx))
            }
            (Value::Node(x, layout), Value::Const(c))
            | (Value::Const(c), Value::Node(x, layout)) => {
                let (x, layout, c) = (*x, *layout, c.clone());
                let shifts = self.per_channel(x, layout, &c, "adds")?;
                self.shift_by(node, x, layout, shifts, "add")
            }
            (Value::Const(_), Value::Const(_)) => {
                bail!("adds two constants, which convscope does not fold")
            }
        }
    }

    /// The values of a constant that broadcasts one value per channel (per feature of a
    /// vector) over `x`, a scalar repeated. Broadcasting puts a 1-D constant along the last
    /// axis: the channels of a channels-last value or the features of a vector; an NCHW map
    /// needs `(C, 1, 1)`.
    fn per_channel(&self, x: NodeId, layout: Layout, c: &Constant, what: &str) -> Result<Vec<f32>> {
        let shape = self.shape(x);
        let channels = shape[1];
        let fits = c.len() == 1
            || match (layout, shape.len()) {
                (Layout::Nchw, 4) => {
                    matches!(c.dims[..], [n, 1, 1] | [1, n, 1, 1] if n == channels)
                }
                (Layout::Nhwc, 4) => {
                    matches!(c.dims[..], [n] | [1, 1, n] | [1, 1, 1, n] if n == channels)
                }
                (Layout::Nchw, 2) => matches!(c.dims[..], [n] | [1, n] if n == channels),
                // Other ranks, and values the graph sees flattened or padded.
                (Layout::Nchw | Layout::Nhwc, _) | (Layout::Flat | Layout::Padded(_), _) => false,
            };
        if !fits {
            bail!(
                "{what} a {:?} constant and a {shape:?} value; convscope takes one value per channel, or one for all",
                c.dims
            );
        }
        let values = c.to_floats();
        Ok(if values.len() == 1 {
            vec![values[0]; channels]
        } else {
            values
        })
    }

    /// `x * factors` per channel: a layer scale (ConvNeXt's), or the scale of a batch norm as
    /// TensorFlow graphs write it (a shift follows).
    pub(super) fn scale_by(&self, x: NodeId, layout: Layout, factors: Vec<f32>) -> Result<Outcome> {
        if self.shape(x).len() != 4 {
            bail!("multiplies a vector by constants; convscope scales the channels of a map");
        }
        let c = factors.len();
        let scale = Tensor::from_vec(factors, (1, c, 1, 1), self.device)?;
        let op = Op::ChannelScale(ChannelScale { scale });
        Ok(Outcome::Node("scale", op, vec![x], layout))
    }

    /// `x + shifts` per channel: the bias of the convolution or matrix product just before it,
    /// when nothing else reads that; the shift of a per-channel factor just before it (a batch
    /// norm as TensorFlow graphs write it, `x * a + b`); else a shift of its own.
    fn shift_by(
        &mut self,
        node: &NodeProto,
        x: NodeId,
        layout: Layout,
        shifts: Vec<f32>,
        label: &'static str,
    ) -> Result<Outcome> {
        let rank = self.shape(x).len();
        let channels = shifts.len();
        let read_once = node.input.iter().any(|i| {
            matches!(self.values.get(i), Some(Value::Node(..))) && self.uses.get(i) == Some(&1)
        });
        let just_before = x == self.pending.len() && read_once;
        let values = Tensor::from_vec(shifts, channels, self.device)?;
        match self.pending.last_mut().map(|p| &mut p.op) {
            Some(Op::Conv2d(conv)) if just_before && conv.bias.is_none() => {
                conv.bias = Some(values);
                Ok(Outcome::Relayout(x, layout))
            }
            Some(Op::Linear(lin)) if just_before && lin.bias.is_none() => {
                lin.bias = Some(values);
                Ok(Outcome::Relayout(x, layout))
            }
            Some(op @ Op::ChannelScale(_)) if just_before => {
                let Op::ChannelScale(ChannelScale { scale }) = op.clone() else {
                    unreachable!("matched above")
                };
                let shift = values.reshape((1, channels, 1, 1))?;
                *op = Op::BatchNorm(BatchNorm { scale, shift });
                Ok(Outcome::Relayout(x, layout))
            }
            _ if rank == 4 => {
                let scale = Tensor::ones((1, channels, 1, 1), DType::F32, self.device)?;
                let shift = values.reshape((1, channels, 1, 1))?;
                let op = Op::BatchNorm(BatchNorm { scale, shift });
                Ok(Outcome::Node(label, op, vec![x], layout))
            }
            _ => bail!("adds constants to a vector that is not a bias-free matrix product just before it; convscope adds biases only there"),
        }
    }

    /// `Sub` of a constant per channel (a mean taken off in the graph).
    pub(super) fn sub(&mut self, node: &NodeProto) -> Result<Outcome> {
        match (self.value(node, 0)?, self.value(node, 1)?) {
            (Value::Node(x, layout), Value::Const(c)) => {
                let (x, layout, c) = (*x, *layout, c.clone());
                let shifts = self.per_channel(x, layout, &c, "subtracts")?;
                let negated = shifts.iter().map(|v| -v).collect();
                self.shift_by(node, x, layout, negated, "sub")
            }
            (Value::Const(_) | Value::Node(..), Value::Node(..)) | (Value::Const(_), Value::Const(_)) => bail!("subtracts values convscope does not subtract (it takes a constant per channel off a layer's output)"),
        }
    }

    /// `Div` by a constant per channel (a std divided out in the graph).
    pub(super) fn div(&self, node: &NodeProto) -> Result<Outcome> {
        match (self.value(node, 0)?, self.value(node, 1)?) {
            (Value::Node(x, layout), Value::Const(c)) => {
                let divisors = self.per_channel(*x, *layout, c, "divides")?;
                if divisors.contains(&0.0) {
                    bail!("divides by zero");
                }
                self.scale_by(*x, *layout, divisors.iter().map(|d| 1.0 / d).collect())
            }
            (Value::Const(_) | Value::Node(..), Value::Node(..)) | (Value::Const(_), Value::Const(_)) => bail!("divides values convscope does not divide (it divides a layer's output by a constant per channel)"),
        }
    }
}

fn gate_shapes(x: &[usize], s: &[usize]) -> bool {
    matches!((x, s), ([n, c, _, _], [sn, sc, 1, 1]) if (n, c) == (sn, sc)) && x != s
}
