//! The layer a batch of filter patterns is optimised for, and how its objective and gradient
//! are computed: by a pass through the layer, or, where the layer is a convolution, by a pass
//! up to the convolution's input followed by each image's own output channel alone.
//!
//! An image's objective reads one channel of the layer's output. When that layer is an
//! ungrouped convolution, the channel is its input convolved with that channel's kernel, so the
//! other channels (511 of VGG16 `features.17`'s 512) need not be computed, nor their share of
//! the gradient: the batch's kernels are stacked into one grouped convolution, one group per
//! image, whose input gradient is the seed for the pass below.

use anyhow::Result;
use candle_core::Tensor;

use super::Objective;
use crate::model::ops::{Conv2d, Op};
use crate::model::{Keep, Model, NodeId};

/// Where one chunk's objective is evaluated.
pub struct Target<'a> {
    model: &'a Model,
    channels: &'a [usize],
    objective: Objective,
    /// The node the passes stop at: the layer itself, or the convolution's input.
    stop: NodeId,
    /// What a pass taken for the gradient keeps (see [`crate::model::Graph::kept_for_gradient`]).
    keep: Keep,
    /// Each image's output channel of the layer as a convolution of `stop`'s output.
    own_channels: Option<Conv2d>,
}

impl<'a> Target<'a> {
    /// The objective of `layer`'s `channels`, image `b` targeting `channels[b]`.
    pub fn new(
        model: &'a Model,
        layer: NodeId,
        channels: &'a [usize],
        objective: Objective,
    ) -> Result<Target<'a>> {
        let graph = &model.graph;
        let node = graph.node(layer);
        let (stop, own_channels) = match (&node.op, objective, node.inputs.as_slice()) {
            (Op::Conv2d(conv), Objective::Channel | Objective::Neuron, &[input])
                if conv.groups == 1 =>
            {
                (input, Some(stacked(conv, channels)?))
            }
            _ => (layer, None),
        };
        Ok(Target {
            model,
            channels,
            objective,
            stop,
            keep: graph.kept_for_gradient(graph.input(), stop)?,
            own_channels,
        })
    }

    /// The node the passes stop at: the layer, or the input of a convolution.
    pub fn stop(&self) -> NodeId {
        self.stop
    }

    /// Objective values and `d objective / d input` for a batch of model inputs.
    pub fn objective_and_gradient(&self, x: &Tensor) -> Result<(Vec<f32>, Tensor)> {
        let g = &self.model.graph;
        let acts = g.forward_to(x, self.stop, &self.keep)?;
        let out = acts.get(self.stop).expect("the stop node is kept");
        let (values, seed) = match &self.own_channels {
            None => {
                let seed = self.seed(out)?;
                (Objective::values(out, &seed)?, seed)
            }
            Some(conv) => {
                let (own, own_seed) = self.own(conv, out)?;
                let (b, c, h, w) = out.dims4()?;
                let grouped = own_seed.reshape((1, b, own.dim(2)?, own.dim(3)?))?;
                let seed = conv.input_grad(&grouped, (h, w))?.reshape((b, c, h, w))?;
                (Objective::values(&own, &own_seed)?, seed)
            }
        };
        Ok((values, g.gradient(&acts, g.input(), self.stop, &seed)?))
    }

    /// Objective values only.
    pub fn objective(&self, x: &Tensor) -> Result<Vec<f32>> {
        let acts = self
            .model
            .graph
            .forward_to(x, self.stop, &Keep::Only(vec![]))?;
        let out = acts.get(self.stop).expect("the stop node is kept");
        match &self.own_channels {
            None => Objective::values(out, &self.seed(out)?),
            Some(conv) => {
                let (own, own_seed) = self.own(conv, out)?;
                Objective::values(&own, &own_seed)
            }
        }
    }

    /// The objective's seed at the layer's output `out`, image `b` at channel `channels[b]`.
    fn seed(&self, out: &Tensor) -> Result<Tensor> {
        self.objective.seed(out.dims(), self.channels, out.device())
    }

    /// Each image's own channel of the layer from the convolution's input `out`, `(B, 1, H,
    /// W)`, and the objective's seed there.
    fn own(&self, conv: &Conv2d, out: &Tensor) -> Result<(Tensor, Tensor)> {
        let (b, c, h, w) = out.dims4()?;
        let own = conv.apply(&out.reshape((1, b * c, h, w))?)?;
        let own = own.reshape((b, 1, own.dim(2)?, own.dim(3)?))?;
        let seed = self.objective.seed(own.dims(), &vec![0; b], out.device())?;
        Ok((own, seed))
    }
}

/// `conv`'s kernels (and biases) of `channels`, one group each: image `b`'s input convolved
/// with channel `channels[b]`'s kernel.
fn stacked(conv: &Conv2d, channels: &[usize]) -> Result<Conv2d> {
    let dev = conv.weight.device();
    let ids = Tensor::from_vec(
        channels.iter().map(|&c| c as u32).collect::<Vec<_>>(),
        channels.len(),
        dev,
    )?;
    let weight = conv.weight.index_select(&ids, 0)?.contiguous()?;
    let bias = conv
        .bias
        .as_ref()
        .map(|b| b.index_select(&ids, 0))
        .transpose()?;
    Ok(Conv2d::new(weight, bias, conv.window, channels.len()))
}
