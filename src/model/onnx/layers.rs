//! Layers with weights: convolutions, batch and layer norms, and the matrix products of
//! `Gemm` and `MatMul` (a `Linear`, or a 1x1 convolution on a channels-last value).

use anyhow::{anyhow, bail, Result};

use super::attributes::Attributes;
use super::import::{Layout, Outcome, Walk};
use super::proto::NodeProto;
use candle_core::Tensor;

use super::pooling::{add_padding, padded_size, spatial, window};
use super::tensors::Constant;
use crate::model::ops::{BatchNorm, Conv2d, LayerNorm, Linear, Op, Window};

impl Walk<'_> {
    pub(super) fn conv(&self, node: &NodeProto, a: &Attributes) -> Result<Outcome> {
        let (x, padding) = self.padded(node, 0)?;
        let w = self.constant(node, 1)?;
        let [co, cg, kh, kw] = w.dims[..] else {
            bail!(
                "has a {}-D kernel; convscope computes 2-D convolutions",
                w.dims.len().saturating_sub(2)
            );
        };
        let weight = self.tensor(w, &[co, cg, kh, kw])?;
        let bias = match self.optional_constant(node, 2)? {
            Some(b) if b.len() == co => Some(self.tensor(b, &[co])?),
            Some(b) => bail!("has a bias of {} values for {co} outputs", b.len()),
            None => None,
        };
        let groups = usize::try_from(a.int("group", 1))
            .map_err(|_| anyhow!("has a negative group count"))?;
        let size = padded_size(spatial(self.shape(x))?, padding);
        let mut window = window(a, (kh, kw), size, true)?;
        add_padding(&mut window, padding);
        Ok(Outcome::Node(
            "conv",
            Op::Conv2d(Conv2d::new(weight, bias, window, groups)),
            vec![x],
            Layout::Nchw,
        ))
    }

    /// Eval-mode `BatchNormalization`, folded into a scale and shift per channel.
    pub(super) fn batch_norm(&self, node: &NodeProto, a: &Attributes) -> Result<Outcome> {
        let x = self.computed(node, 0)?;
        let eps = a.float("epsilon", 1e-5);
        let consts: Vec<Vec<f32>> = (1..5)
            .map(|k| self.constant(node, k).map(Constant::to_floats))
            .collect::<Result<_>>()?;
        let (gamma, beta, mean, var) = (&consts[0], &consts[1], &consts[2], &consts[3]);
        let c = gamma.len();
        if [beta.len(), mean.len(), var.len()] != [c, c, c] {
            bail!("has parameters of different lengths");
        }
        let scale: Vec<f32> = (0..c).map(|i| gamma[i] / (var[i] + eps).sqrt()).collect();
        let shift: Vec<f32> = (0..c).map(|i| beta[i] - mean[i] * scale[i]).collect();
        let scale = Tensor::from_vec(scale, (1, c, 1, 1), self.device)?;
        let shift = Tensor::from_vec(shift, (1, c, 1, 1), self.device)?;
        Ok(Outcome::Node(
            "batchnorm",
            Op::BatchNorm(BatchNorm { scale, shift }),
            vec![x],
            Layout::Nchw,
        ))
    }

    /// `LayerNormalization` over the last axis of a channels-last value: the channels at every
    /// pixel.
    pub(super) fn layer_norm(&self, node: &NodeProto, a: &Attributes) -> Result<Outcome> {
        let (x, layout) = self.computed_any(node, 0)?;
        let axis = a.int("axis", -1);
        if layout != Layout::Nhwc || !(axis == -1 || axis == 3) {
            bail!("normalises from axis {axis} of a value convscope does not see channels-last; it normalises the channels at every pixel");
        }
        let c = self.shape(x)[1];
        let weight = self.constant(node, 1)?;
        let bias = self
            .optional_constant(node, 2)?
            .cloned()
            .unwrap_or_else(|| Constant::floats(vec![c], vec![0.0; c]));
        if weight.len() != c || bias.len() != c {
            bail!("has a weight or bias of another length than the {c} channels");
        }
        let op = LayerNorm {
            weight: self.tensor(weight, &[1, c, 1, 1])?,
            bias: self.tensor(&bias, &[1, c, 1, 1])?,
            eps: a.float("epsilon", 1e-5) as f64,
        };
        Ok(Outcome::Node(
            "layernorm",
            Op::LayerNorm(op),
            vec![x],
            Layout::Nhwc,
        ))
    }

    pub(super) fn gemm(&self, node: &NodeProto, a: &Attributes) -> Result<Outcome> {
        let x = self.computed(node, 0)?;
        let b = self.constant(node, 1)?;
        let [r, c] = b.dims[..] else {
            bail!("has a {:?} weight; convscope reads a 2-D weight", b.dims);
        };
        if a.int("transA", 0) != 0 || a.float("alpha", 1.0) != 1.0 || a.float("beta", 1.0) != 1.0 {
            bail!("has transA, alpha or beta other than a Linear layer's");
        }
        let weight = self.tensor(b, &[r, c])?;
        let weight = if a.int("transB", 0) != 0 {
            weight
        } else {
            weight.t()?.contiguous()?
        };
        let out = weight.dims()[0];
        let bias = match self.optional_constant(node, 2)? {
            Some(bc) if bc.len() == out => Some(self.tensor(bc, &[out])?),
            Some(bc) => bail!("has a bias of {} values for {out} outputs", bc.len()),
            None => None,
        };
        Ok(Outcome::Node(
            "linear",
            Op::Linear(Linear { weight, bias }),
            vec![x],
            Layout::Nchw,
        ))
    }

    /// `MatMul` by a constant `(in, out)` matrix: a `Linear` on `(N, features)`, or a 1x1
    /// convolution on a channels-last value (ConvNeXt's pointwise layers).
    pub(super) fn matmul(&self, node: &NodeProto) -> Result<Outcome> {
        let (x, layout) = self.computed_any(node, 0)?;
        let b = self.constant(node, 1)?;
        let [k, n] = b.dims[..] else {
            bail!(
                "multiplies by a {:?} constant; convscope reads a 2-D weight",
                b.dims
            );
        };
        let weight = self.tensor(b, &[k, n])?.t()?.contiguous()?;
        match (layout, self.shape(x).len()) {
            (Layout::Nhwc, 4) => {
                let conv = Conv2d::new(
                    weight.reshape((n, k, 1, 1))?,
                    None,
                    Window::square(1, 1, 0, 1),
                    1,
                );
                Ok(Outcome::Node(
                    "linear",
                    Op::Conv2d(conv),
                    vec![x],
                    Layout::Nhwc,
                ))
            }
            (Layout::Nchw, 2) => Ok(Outcome::Node(
                "linear",
                Op::Linear(Linear { weight, bias: None }),
                vec![x],
                Layout::Nchw,
            )),
            (_, rank) => bail!(
                "multiplies a rank-{rank} value along an axis convscope does not map to channels"
            ),
        }
    }
}
