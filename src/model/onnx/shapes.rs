//! Nodes that only move or describe values: `Transpose` between NCHW and channels-last,
//! `Flatten` and `Reshape` to `(N, features)`, and the shape arithmetic exporters emit
//! (`Shape`, `Gather`, `Unsqueeze`, `Cast`, integer `Add`/`Mul`/`Div`, `Concat` of shapes),
//! folded to constants at load.

use anyhow::{anyhow, bail, Result};

use super::attributes::Attributes;
use super::import::{Layout, Outcome, Value, Walk};
use super::proto::NodeProto;
use super::tensors::Constant;
use crate::model::graph::NodeId;
use crate::model::ops::{Flatten, FlattenChannelsLast, Op};

impl Walk<'_> {
    /// `Transpose` between NCHW and the channels-last view (`perm` `[0, 2, 3, 1]` and back).
    pub(super) fn transpose(&self, node: &NodeProto, a: &Attributes) -> Result<Outcome> {
        let (x, layout) = self.computed_any(node, 0)?;
        Ok(match (a.ints("perm"), layout) {
            (Some([0, 2, 3, 1]), Layout::Nchw) => Outcome::Relayout(x, Layout::Nhwc),
            (Some([0, 3, 1, 2]), Layout::Nhwc) => Outcome::Relayout(x, Layout::Nchw),
            (perm, _) => bail!(
                "transposes with perm {perm:?}; convscope follows (N,C,H,W) to (N,H,W,C) and back"
            ),
        })
    }

    pub(super) fn flatten(&self, node: &NodeProto, a: &Attributes) -> Result<Outcome> {
        let x = self.computed(node, 0)?;
        if a.int("axis", 1) != 1 {
            bail!(
                "flattens from axis {}; convscope flattens after the batch axis",
                a.int("axis", 1)
            );
        }
        Ok(Outcome::Node(
            "flatten",
            Op::Flatten(Flatten),
            vec![x],
            Layout::Nchw,
        ))
    }

    pub(super) fn reshape(&self, node: &NodeProto) -> Result<Outcome> {
        let (x, layout) = self.computed_any(node, 0)?;
        let target = self.constant(node, 1)?;
        let target = target
            .as_ints()
            .ok_or_else(|| anyhow!("has a shape that is not integers"))?;
        if layout == Layout::Nhwc {
            return self.flatten_channels_last(x, target);
        }
        let x = self.computed(node, 0)?;
        if target == [-1] {
            return Ok(Outcome::Relayout(x, Layout::Flat));
        }
        let shape = self.shape(x);
        let features: usize = shape[1..].iter().product();
        // A reshape to (batch, features): Flatten, whatever the batch size the exporter wrote.
        let flat = matches!(target, [n, f] if (*n == -1 || *n == 0 || *n == 1)
            && (*f == -1 || *f as usize == features));
        if flat && shape.len() > 2 {
            return Ok(Outcome::Node(
                "flatten",
                Op::Flatten(Flatten),
                vec![x],
                Layout::Nchw,
            ));
        }
        let same = target.len() == shape.len()
            && target
                .iter()
                .zip(shape)
                .skip(1)
                .all(|(&t, &s)| t == -1 || t == 0 || t as usize == s);
        if same {
            return Ok(Outcome::Alias(self.input_name(node, 0)?));
        }
        bail!("reshapes {shape:?} to {target:?}; convscope reshapes to (batch, features) only")
    }

    /// The shape of a computed value, at a batch of one: a constant.
    pub(super) fn shape_of(&self, node: &NodeProto) -> Result<Outcome> {
        let x = self.computed(node, 0)?;
        let dims: Vec<i64> = self.shape(x).iter().map(|&d| d as i64).collect();
        Ok(Outcome::Const(Constant::ints(vec![dims.len()], dims)))
    }

    /// `Cast`: the same value (shapes are integers either way; images stay `f32`).
    pub(super) fn cast(&self, node: &NodeProto) -> Result<Outcome> {
        Ok(match self.value(node, 0)? {
            Value::Const(c) => Outcome::Const(c.clone()),
            Value::Node(..) => Outcome::Alias(self.input_name(node, 0)?),
        })
    }

    /// `Gather` from a constant shape.
    pub(super) fn gather(&self, node: &NodeProto, a: &Attributes) -> Result<Outcome> {
        if let Value::Node(id, Layout::Flat) = self.value(node, 0)? {
            return self.unflatten(node, *id);
        }
        let data = self.constant(node, 0)?;
        let idx = self.constant(node, 1)?;
        let (Some(values), Some(at)) = (data.as_ints(), idx.as_ints()) else {
            bail!("gathers from values other than a shape");
        };
        if data.dims.len() != 1 || a.int("axis", 0) != 0 {
            bail!(
                "gathers from a {:?} constant; convscope folds 1-D shapes only",
                data.dims
            );
        }
        let picked = at
            .iter()
            .map(|&i| {
                let i = if i < 0 { i + values.len() as i64 } else { i };
                values
                    .get(i as usize)
                    .copied()
                    .ok_or_else(|| anyhow!("index {i} is out of range"))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Outcome::Const(Constant::ints(idx.dims.clone(), picked)))
    }

    /// A reshape of a channels-last value to `(N, features)`: Keras's `Flatten` over a
    /// TensorFlow map, in H, W, C order.
    fn flatten_channels_last(&self, x: NodeId, target: &[i64]) -> Result<Outcome> {
        let shape = self.shape(x);
        let features: usize = shape[1..].iter().product();
        let flat = matches!(target, [n, f] if (*n == -1 || *n == 0 || *n == 1)
            && (*f == -1 || *f as usize == features));
        if !flat || shape.len() != 4 {
            bail!("reshapes a channels-last {shape:?} value to {target:?}; convscope reshapes to (batch, features) only");
        }
        Ok(Outcome::Node(
            "flatten",
            Op::FlattenChannelsLast(FlattenChannelsLast),
            vec![x],
            Layout::Nchw,
        ))
    }

    /// A `Gather` from a flattened value of every element in order, shaped as the value was:
    /// the value itself (the dynamo exporter's `as_strided` of an unchanged tensor).
    fn unflatten(&self, node: &NodeProto, id: NodeId) -> Result<Outcome> {
        let idx = self.constant(node, 1)?;
        let in_order = idx
            .as_ints()
            .is_some_and(|v| v.iter().enumerate().all(|(i, &j)| i as i64 == j));
        if !in_order || idx.dims != self.shape(id) {
            bail!("gathers a {:?} selection from a flattened value; convscope reads back every element in order", idx.dims);
        }
        Ok(Outcome::Relayout(id, Layout::Nchw))
    }

    /// `Unsqueeze` or `Squeeze` of a constant shape (its values are unchanged).
    pub(super) fn unsqueeze(&self, node: &NodeProto, op_type: &str) -> Result<Outcome> {
        if let Value::Node(..) = self.value(node, 0)? {
            return self.squeeze_pooled(node, op_type);
        }
        let c = self.constant(node, 0)?.clone();
        let Some(values) = c.as_ints() else {
            bail!("{op_type} of a weight tensor is not folded by convscope");
        };
        if c.dims.len() > 1 {
            bail!(
                "{op_type} of a {:?} constant is not folded by convscope",
                c.dims
            );
        }
        let dims = if op_type == "Unsqueeze" {
            vec![values.len()]
        } else {
            c.dims.clone()
        };
        Ok(Outcome::Const(Constant::ints(dims, values.to_vec())))
    }

    /// `Squeeze` of the 1x1 axes of a pooled `(N, C, 1, 1)` map: its `(N, C)` view (tf2onnx's
    /// global average pooling).
    fn squeeze_pooled(&self, node: &NodeProto, op_type: &str) -> Result<Outcome> {
        let x = self.computed(node, 0)?;
        let axes: Vec<i64> = match self.optional_constant(node, 1)? {
            Some(c) => c.as_ints().unwrap_or_default().to_vec(),
            None => Attributes::of(node)
                .ints("axes")
                .unwrap_or_default()
                .to_vec(),
        };
        let mut axes: Vec<i64> = axes
            .iter()
            .map(|&a| if a < 0 { a + 4 } else { a })
            .collect();
        axes.sort_unstable();
        match (op_type, self.shape(x), &axes[..]) {
            ("Squeeze", [_, _, 1, 1], [2, 3]) => Ok(Outcome::Node(
                "flatten",
                Op::Flatten(Flatten),
                vec![x],
                Layout::Nchw,
            )),
            (_, shape, _) => bail!(
                "{op_type}s axes {axes:?} of a {shape:?} value; convscope squeezes the 1x1 axes of a pooled map"
            ),
        }
    }

    pub(super) fn all_constant(&self, node: &NodeProto) -> bool {
        node.input
            .iter()
            .all(|i| matches!(self.values.get(i), Some(Value::Const(_))))
    }

    /// Integer arithmetic on shapes (`chunk`'s sizes: `Shape → Gather → Add → Div → Mul`),
    /// folded; a scalar broadcasts.
    pub(super) fn arithmetic(&self, node: &NodeProto, op_type: &str) -> Result<Outcome> {
        let (a, b) = (self.constant(node, 0)?, self.constant(node, 1)?);
        let (Some(x), Some(y)) = (a.as_ints(), b.as_ints()) else {
            bail!("computes with float constants, which convscope does not fold");
        };
        let (dims, n) = if x.len() >= y.len() {
            (&a.dims, x.len())
        } else {
            (&b.dims, y.len())
        };
        if !(x.len() == y.len() || x.len() == 1 || y.len() == 1) {
            bail!("combines {} and {} values", x.len(), y.len());
        }
        let at = |v: &[i64], i: usize| if v.len() == 1 { v[0] } else { v[i] };
        let values = (0..n)
            .map(|i| {
                let (p, q) = (at(x, i), at(y, i));
                match op_type {
                    "Add" => p.checked_add(q),
                    "Sub" => p.checked_sub(q),
                    "Mul" => p.checked_mul(q),
                    _ => p.checked_div(q),
                }
                .ok_or_else(|| anyhow!("computes {p} {op_type} {q}, which has no value"))
            })
            .collect::<Result<Vec<i64>>>()?;
        Ok(Outcome::Const(Constant::ints(dims.clone(), values)))
    }

    pub(super) fn concat_constants(&self, node: &NodeProto, a: &Attributes) -> Result<Outcome> {
        if a.int("axis", 0) != 0 {
            bail!("concatenates constants along axis {}", a.int("axis", 0));
        }
        let mut values = Vec::new();
        for k in 0..node.input.len() {
            let c = self.constant(node, k)?;
            let v = c
                .as_ints()
                .ok_or_else(|| anyhow!("concatenates weights; convscope folds shapes only"))?;
            values.extend_from_slice(v);
        }
        Ok(Outcome::Const(Constant::ints(vec![values.len()], values)))
    }
}
