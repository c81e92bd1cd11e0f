//! The layer a batch of filter patterns is optimised for, and how its objective and gradient
//! are computed: in passes of a few images each, through the layer or, where the layer is a
//! convolution, up to the convolution's input followed by each image's own output channel
//! alone.
//!
//! An image's objective reads one channel of the layer's output. When that layer is an
//! ungrouped convolution, the channel is its input convolved with that channel's kernel, so the
//! other channels (511 of VGG16 `features.17`'s 512) need not be computed, nor their share of
//! the gradient: a pass's kernels are stacked into one grouped convolution, one group per
//! image, whose input gradient is the seed for the reverse pass below.
//!
//! On the CPU a pass holds as many images as keep its largest activation within
//! [`PASS_CACHE_BYTES`]: each layer then reads what the one before wrote from the cache rather
//! than from memory (see [`images_per_pass`]).

use std::ops::Range;

use anyhow::Result;
use candle_core::{Device, Tensor};

use super::{floats_per_image, Objective};
use crate::model::ops::{Conv2d, Op};
use crate::model::{Keep, Model, NodeId};

/// The most bytes one activation of a pass may take on the CPU: half the last-level cache of
/// the machine it was measured on (32 MiB). VGG16 `features.17` at 150 px (5.8 MB an image at
/// the widest) in passes of 2 images took 0.92x the time of one pass of 16 and 0.81x the peak
/// memory; passes of 4 and 8, 0.97x and 1.0x.
pub const PASS_CACHE_BYTES: usize = 16 << 20;

/// Images one pass holds for `layer` at `size` pixels: on the CPU, as many as keep the largest
/// activation within [`PASS_CACHE_BYTES`], and at least two (the batched kernels' least, see
/// [`crate::model::cpu::winograd::applies`]); elsewhere all of them.
pub fn images_per_pass(model: &Model, layer: NodeId, size: usize, device: &Device) -> usize {
    if !device.is_cpu() {
        return usize::MAX;
    }
    let largest = floats_per_image(model, layer, size).fold(0.0, f64::max) * 4.0;
    ((PASS_CACHE_BYTES as f64 / largest.max(1.0)) as usize).max(2)
}

/// Where one chunk's objective is evaluated.
pub struct Target<'a> {
    model: &'a Model,
    objective: Objective,
    /// The node the passes stop at: the layer itself, or the convolution's input.
    stop: NodeId,
    /// What a pass taken for the gradient keeps (see [`crate::model::Graph::kept_for_gradient`]).
    keep: Keep,
    passes: Vec<Pass<'a>>,
}

/// The images one pass computes.
struct Pass<'a> {
    images: Range<usize>,
    /// Image `b` of the pass targets `channels[b]`.
    channels: &'a [usize],
    /// Each image's output channel of the layer as a convolution of the stop node's output.
    own_channels: Option<Conv2d>,
}

impl<'a> Target<'a> {
    /// The objective of `layer`'s `channels`, image `b` targeting `channels[b]`, in passes of
    /// `per_pass` images or a few more (see [`images_per_pass`]).
    pub fn new(
        model: &'a Model,
        layer: NodeId,
        channels: &'a [usize],
        objective: Objective,
        per_pass: usize,
    ) -> Result<Target<'a>> {
        let graph = &model.graph;
        let node = graph.node(layer);
        // The one layer with a shortcut; every other takes the pass through it.
        let conv = if let (Op::Conv2d(conv), &[input]) = (&node.op, node.inputs.as_slice()) {
            (conv.groups == 1 && objective.reads_one_channel()).then_some((conv, input))
        } else {
            None
        };
        let stop = conv.map_or(layer, |(_, input)| input);
        let passes = even_ranges(channels.len(), per_pass)
            .map(|images| {
                let channels = &channels[images.clone()];
                Ok(Pass {
                    images,
                    channels,
                    own_channels: conv.map(|(c, _)| stacked(c, channels)).transpose()?,
                })
            })
            .collect::<Result<_>>()?;
        Ok(Target {
            model,
            objective,
            stop,
            keep: graph.kept_for_gradient(graph.input(), stop)?,
            passes,
        })
    }

    /// The node the passes stop at: the layer, or the input of a convolution.
    pub fn stop(&self) -> NodeId {
        self.stop
    }

    /// Images per pass, in order.
    pub fn pass_sizes(&self) -> Vec<usize> {
        self.passes.iter().map(|p| p.images.len()).collect()
    }

    /// Objective values and `d objective / d input` for a batch of model inputs.
    pub fn objective_and_gradient(&self, x: &Tensor) -> Result<(Vec<f32>, Tensor)> {
        let g = &self.model.graph;
        let mut values = Vec::with_capacity(x.dim(0)?);
        let mut grads = Vec::with_capacity(self.passes.len());
        for pass in &self.passes {
            let x = x.narrow(0, pass.images.start, pass.images.len())?;
            let acts = g.forward_to(&x, self.stop, &self.keep)?;
            let out = acts.get(self.stop).expect("the stop node is kept");
            let seed = match &pass.own_channels {
                None => {
                    let seed = self.seed(pass, out)?;
                    values.extend(Objective::values(out, &seed)?);
                    seed
                }
                Some(conv) => {
                    let (own, own_seed) = self.own(conv, out)?;
                    values.extend(Objective::values(&own, &own_seed)?);
                    let (b, c, h, w) = out.dims4()?;
                    let grouped = own_seed.reshape((1, b, own.dim(2)?, own.dim(3)?))?;
                    conv.input_grad(&grouped, (h, w))?.reshape((b, c, h, w))?
                }
            };
            grads.push(g.gradient(&acts, g.input(), self.stop, &seed)?);
        }
        Ok((values, Tensor::cat(&grads, 0)?))
    }

    /// Objective values only.
    pub fn objective(&self, x: &Tensor) -> Result<Vec<f32>> {
        let mut values = Vec::with_capacity(x.dim(0)?);
        for pass in &self.passes {
            let x = x.narrow(0, pass.images.start, pass.images.len())?;
            let acts = self
                .model
                .graph
                .forward_to(&x, self.stop, &Keep::Only(vec![]))?;
            let out = acts.get(self.stop).expect("the stop node is kept");
            values.extend(match &pass.own_channels {
                None => Objective::values(out, &self.seed(pass, out)?)?,
                Some(conv) => {
                    let (own, own_seed) = self.own(conv, out)?;
                    Objective::values(&own, &own_seed)?
                }
            });
        }
        Ok(values)
    }

    /// The objective's seed at the layer's output `out` of `pass`.
    fn seed(&self, pass: &Pass, out: &Tensor) -> Result<Tensor> {
        self.objective.seed(out.dims(), pass.channels, out.device())
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

/// `0..n` in ranges of `size` or a little more, as many as `n / size` allows (at least one):
/// 13 by 2 is 3+2+2+2+2+2, never a range of one where `size` is more.
fn even_ranges(n: usize, size: usize) -> impl Iterator<Item = Range<usize>> {
    let count = (n / size.max(1)).max(1);
    let (base, extra) = (n / count, n % count);
    (0..count).map(move |k| {
        let start = k * base + k.min(extra);
        start..start + base + usize::from(k < extra)
    })
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
