//! Nodes over the channel axis: `Concat`, `Slice` and `Split` (ShuffleNet's `chunk`).

use anyhow::{anyhow, bail, Result};

use super::attributes::Attributes;
use super::import::{Layout, Outcome, Value, Walk};
use super::proto::NodeProto;
use super::tensors::Constant;
use crate::model::ops::{ChannelSlice, Concat, Op};

impl Walk<'_> {
    /// `Concat` of channels, or of constant shapes.
    pub(super) fn concat(&self, node: &NodeProto, a: &Attributes) -> Result<Outcome> {
        if self.all_constant(node) {
            return self.concat_constants(node, a);
        }
        let rank = self.shape(self.computed(node, 0)?).len() as i64;
        let axis = a.int("axis", 1);
        if axis != 1 && axis != 1 - rank {
            bail!("concatenates along axis {axis}; convscope concatenates channels");
        }
        let inputs = (0..node.input.len())
            .map(|k| self.computed(node, k))
            .collect::<Result<Vec<_>>>()?;
        Ok(Outcome::Node(
            "concat",
            Op::Concat(Concat),
            inputs,
            Layout::Nchw,
        ))
    }

    /// `Slice` along the channels with step 1 (`chunk`), or of a constant shape.
    pub(super) fn slice(&self, node: &NodeProto) -> Result<Outcome> {
        let ints = |k: usize| -> Result<Option<Vec<i64>>> {
            match self.optional_constant(node, k)? {
                Some(c) => Ok(Some(
                    c.as_ints()
                        .ok_or_else(|| anyhow!("has input {k} that is not integers"))?
                        .to_vec(),
                )),
                None => Ok(None),
            }
        };
        let starts = ints(1)?.ok_or_else(|| anyhow!("has no starts"))?;
        let ends = ints(2)?.ok_or_else(|| anyhow!("has no ends"))?;
        let axes = ints(3)?.unwrap_or_else(|| (0..starts.len() as i64).collect());
        let steps = ints(4)?.unwrap_or_else(|| vec![1; starts.len()]);
        let ([start], [end], [axis], [1]) = (&starts[..], &ends[..], &axes[..], &steps[..]) else {
            bail!("slices {axes:?} with steps {steps:?}; convscope slices one axis with step 1");
        };
        // Python-style bounds, clamped to the axis.
        let bound = |v: i64, len: usize| -> usize {
            let v = if v < 0 { v + len as i64 } else { v };
            v.clamp(0, len as i64) as usize
        };
        match self.value(node, 0)? {
            Value::Const(c) => {
                let values = c
                    .as_ints()
                    .filter(|_| c.dims.len() == 1 && *axis == 0)
                    .ok_or_else(|| anyhow!("slices a constant other than a shape"))?;
                let (s, e) = (bound(*start, values.len()), bound(*end, values.len()));
                let picked = values[s..e.max(s)].to_vec();
                Ok(Outcome::Const(Constant::ints(vec![picked.len()], picked)))
            }
            Value::Node(..) => {
                let x = self.computed(node, 0)?;
                let shape = self.shape(x);
                if !(*axis == 1 || *axis == 1 - shape.len() as i64) {
                    bail!("slices axis {axis}; convscope slices channels");
                }
                let (s, e) = (bound(*start, shape[1]), bound(*end, shape[1]));
                if e <= s {
                    bail!("slices no channels ({start}..{end})");
                }
                let op = Op::ChannelSlice(ChannelSlice {
                    start: s,
                    len: e - s,
                });
                Ok(Outcome::Node("chunk", op, vec![x], Layout::Nchw))
            }
        }
    }

    /// `Split` along the channels: one channel slice per output, sizes from the `split` input
    /// (opset 13+) or attribute, else equal parts.
    pub(super) fn split(&mut self, node: &NodeProto) -> Result<()> {
        let a = Attributes::of(node);
        let x = self.computed(node, 0)?;
        let channels = self.shape(x)[1];
        let axis = a.int("axis", 0);
        if !(axis == 1 || axis == 1 - self.shape(x).len() as i64) {
            bail!("splits axis {axis}; convscope splits channels");
        }
        let parts = node.output.len();
        let sizes: Vec<i64> = match self.optional_constant(node, 1)? {
            Some(c) => c
                .as_ints()
                .ok_or_else(|| anyhow!("has split sizes that are not integers"))?
                .to_vec(),
            None => match a.ints("split") {
                Some(v) => v.to_vec(),
                None if parts > 0 && channels.is_multiple_of(parts) => {
                    vec![(channels / parts) as i64; parts]
                }
                None => bail!("splits {channels} channels into {parts} unequal parts"),
            },
        };
        if sizes.len() != parts
            || sizes.iter().sum::<i64>() != channels as i64
            || sizes.iter().any(|&s| s <= 0)
        {
            bail!("splits {channels} channels as {sizes:?} into {parts} outputs");
        }
        let mut start = 0;
        for (out, &len) in node.output.iter().zip(&sizes) {
            let len = len as usize;
            let op = Op::ChannelSlice(ChannelSlice { start, len });
            let id = self.push(node, "chunk", op, vec![x])?;
            self.values
                .insert(out.clone(), Value::Node(id, Layout::Nchw));
            start += len;
        }
        Ok(())
    }
}
