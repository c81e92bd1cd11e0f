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
    Activation, Add, BatchNorm, ChannelScale, ChannelShuffle, Function, Gate, Op, Relu,
};

impl Walk<'_> {
    /// The one op of a function the exporter wrote as several nodes ([`super::patterns`]).
    pub(super) fn fused(&self, f: Fused, x: &str) -> Result<Outcome> {
        let (x, layout) = match self.values.get(x) {
            Some(Value::Node(id, layout)) => (*id, *layout),
            _ => bail!("applies {f:?} to a value not computed from the image"),
        };
        let (label, op) = match f {
            Fused::Silu => ("silu", Op::Activation(Activation(Function::Silu))),
            Fused::Gelu => ("gelu", Op::Activation(Activation(Function::Gelu))),
            Fused::Shuffle(groups) => (
                "channel_shuffle",
                Op::ChannelShuffle(ChannelShuffle { groups }),
            ),
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
                let channels = self.shape(*x).get(1).copied().unwrap_or(0);
                if c.len() != channels || c.dims.iter().filter(|&&d| d != 1).count() > 1 {
                    bail!(
                        "multiplies {:?} by a {:?} constant; convscope multiplies by one factor per channel",
                        self.shape(*x),
                        c.dims
                    );
                }
                let scale = self.tensor(c, &[1, channels, 1, 1])?;
                Ok(Outcome::Node("scale", Op::ChannelScale(ChannelScale { scale }), vec![*x], *layout))
            }
            _ => bail!("multiplies values of shapes convscope does not multiply (it computes gates, (N,C,H,W) x (N,C,1,1), and per-channel factors)"),
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
                self.add_per_channel(node, x, layout, &c)
            }
            (Value::Const(_), Value::Const(_)) => {
                bail!("adds two constants, which convscope does not fold")
            }
        }
    }
}

impl Walk<'_> {
    /// `Add` of a constant with one value per channel (per feature of a vector): the bias of the
    /// convolution or matrix product just before it, when nothing else reads that; the shift of
    /// a per-channel factor just before it (a batch norm as TensorFlow graphs write it, `x * a +
    /// b`); else a shift of its own.
    fn add_per_channel(
        &mut self,
        node: &NodeProto,
        x: NodeId,
        layout: Layout,
        c: &Constant,
    ) -> Result<Outcome> {
        let shape = self.shape(x).to_vec();
        let channels = shape[1];
        // Broadcasting puts a 1-D constant along the last axis: the channels of a channels-last
        // value or the features of a vector; an NCHW map needs (C, 1, 1).
        let per_channel = match (layout, shape.len()) {
            (Layout::Nchw, 4) => matches!(c.dims[..], [n, 1, 1] | [1, n, 1, 1] if n == channels),
            (Layout::Nhwc, 4) => {
                matches!(c.dims[..], [n] | [1, 1, n] | [1, 1, 1, n] if n == channels)
            }
            (Layout::Nchw, 2) => matches!(c.dims[..], [n] | [1, n] if n == channels),
            _ => false,
        };
        if !per_channel {
            bail!(
                "adds a {:?} constant to a {shape:?} value; convscope adds one value per channel",
                c.dims
            );
        }
        let read_once = node.input.iter().any(|i| {
            matches!(self.values.get(i), Some(Value::Node(..))) && self.uses.get(i) == Some(&1)
        });
        let just_before = x == self.pending.len() && read_once;
        let values = self.tensor(c, &[channels])?;
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
            _ if shape.len() == 4 => {
                let scale = Tensor::ones((1, channels, 1, 1), DType::F32, self.device)?;
                let shift = values.reshape((1, channels, 1, 1))?;
                let op = Op::BatchNorm(BatchNorm { scale, shift });
                Ok(Outcome::Node("add", op, vec![x], layout))
            }
            _ => bail!("adds a constant to a vector that is not a bias-free matrix product just before it; convscope adds biases only there"),
        }
    }
}

fn gate_shapes(x: &[usize], s: &[usize]) -> bool {
    matches!((x, s), ([n, c, _, _], [sn, sc, 1, 1]) if (n, c) == (sn, sc)) && x != s
}
