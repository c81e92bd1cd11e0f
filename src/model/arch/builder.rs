//! Adds layers to a graph, taking each layer's parameters from a [`Weights`] source under its
//! PyTorch name (`{name}.weight`, `{name}.running_mean`, ...).

use anyhow::{anyhow, Result};
use candle_core::Tensor;

use crate::model::graph::{Graph, NodeId};
use crate::model::ops::geometry::{Axis, Window};
use crate::model::ops::{
    Activation, AdaptiveAvgPool, BatchNorm, Conv2d, Dropout, Function, LayerNorm, Linear, Op, Pool,
    Relu,
};
use crate::model::weights::Weights;

/// The most modules a classifier head's Sequential is searched for Linear layers in.
const MAX_HEAD_MODULES: usize = 32;

/// Graph under construction plus its parameter source.
pub struct Builder<'a> {
    graph: Graph,
    weights: &'a mut dyn Weights,
}

/// A convolution layer: output channels, per-axis geometry (kernel included), groups, bias.
#[derive(Debug, Clone, Copy)]
pub struct ConvSpec {
    pub out_channels: usize,
    pub window: Window,
    pub groups: usize,
    pub bias: bool,
}

impl ConvSpec {
    /// A `k`x`k` convolution with stride 1, `padding` on every side, dilation 1, one group.
    pub fn new(out_channels: usize, kernel: usize, padding: usize, bias: bool) -> Self {
        ConvSpec {
            out_channels,
            window: Window::square(kernel, 1, padding, 1),
            groups: 1,
            bias,
        }
    }

    /// A `kh`x`kw` convolution with padding `ph` above and below and `pw` left and right,
    /// stride 1 (Inception's 1x7 and 7x1).
    pub fn rect(
        out_channels: usize,
        (kh, kw): (usize, usize),
        (ph, pw): (usize, usize),
        bias: bool,
    ) -> Self {
        ConvSpec {
            out_channels,
            window: Window {
                h: Axis::new(kh, 1, ph),
                w: Axis::new(kw, 1, pw),
            },
            groups: 1,
            bias,
        }
    }

    /// The same stride along both axes.
    pub fn stride(mut self, stride: usize) -> Self {
        self.window.h.stride = stride;
        self.window.w.stride = stride;
        self
    }

    /// Grouped (depthwise when `groups` is the channel count).
    pub fn groups(mut self, groups: usize) -> Self {
        self.groups = groups;
        self
    }
}

impl<'a> Builder<'a> {
    pub fn new((c, h, w): (usize, usize, usize), weights: &'a mut dyn Weights) -> Self {
        Builder {
            graph: Graph::new(c, h, w),
            weights,
        }
    }

    pub fn finish(self) -> Graph {
        self.graph
    }

    pub fn weights(&self) -> &dyn Weights {
        &*self.weights
    }

    /// Output shape of a node already added.
    pub fn shape(&self, id: NodeId) -> &[usize] {
        &self.graph.node(id).shape
    }

    pub fn last(&self) -> NodeId {
        self.graph.output()
    }

    pub fn op(&mut self, name: &str, op: Op, inputs: &[NodeId]) -> Result<NodeId> {
        self.graph.add(name, op, inputs).map_err(|e| anyhow!(e))
    }

    fn param(&mut self, name: &str, suffix: &str, shape: &[usize]) -> Result<Tensor> {
        self.weights.take(&format!("{name}.{suffix}"), shape)
    }

    /// A parameter by its full state-dict name (a module's own `nn.Parameter`).
    pub fn parameter(&mut self, name: &str, shape: &[usize]) -> Result<Tensor> {
        self.weights.take(name, shape)
    }

    fn channels(&self, input: NodeId) -> usize {
        self.shape(input).get(1).copied().unwrap_or(0)
    }

    pub fn conv(&mut self, name: &str, input: NodeId, spec: ConvSpec) -> Result<NodeId> {
        // The network takes the channels its first convolution's weight has (1 for a
        // grayscale model), whatever the input was started with.
        if input == 0 && spec.groups == 1 {
            if let Some(&[_, c, _, _]) = self.weights.shape_of(&format!("{name}.weight")).as_deref()
            {
                if c > 0 && c != self.channels(input) {
                    self.graph.set_input_channels(c).map_err(|e| anyhow!(e))?;
                }
            }
        }
        let cin = self.channels(input);
        if spec.groups == 0
            || !cin.is_multiple_of(spec.groups)
            || !spec.out_channels.is_multiple_of(spec.groups)
        {
            anyhow::bail!(
                "layer {name}: {cin} input and {} output channels do not split into {} groups",
                spec.out_channels,
                spec.groups
            );
        }
        let (h, w) = (spec.window.h, spec.window.w);
        let shape = [spec.out_channels, cin / spec.groups, h.kernel, w.kernel];
        let weight = self.param(name, "weight", &shape)?;
        let bias = if spec.bias {
            Some(self.param(name, "bias", &[spec.out_channels])?)
        } else {
            None
        };
        let op = Op::Conv2d(Conv2d::new(weight, bias, spec.window, spec.groups));
        self.op(name, op, &[input])
    }

    /// Eval-mode batch norm folded into a per-channel scale and shift.
    pub fn batch_norm(&mut self, name: &str, input: NodeId, eps: f64) -> Result<NodeId> {
        self.batch_norm_as(name, name, input, eps)
    }

    /// [`Builder::batch_norm`] with the parameters of module `params` in a node named `node`
    /// (timm's `BatchNormAct2d`, whose module path stands for the activation after it).
    pub fn batch_norm_as(
        &mut self,
        node: &str,
        params: &str,
        input: NodeId,
        eps: f64,
    ) -> Result<NodeId> {
        let c = self.channels(input);
        let gamma = self.param(params, "weight", &[c])?;
        let beta = self.param(params, "bias", &[c])?;
        let mean = self.param(params, "running_mean", &[c])?;
        let var = self.param(params, "running_var", &[c])?;
        let scale = (gamma / (var + eps)?.sqrt()?)?;
        let shift = (beta - (&mean * &scale)?)?;
        let op = Op::BatchNorm(BatchNorm {
            scale: scale.reshape((1, c, 1, 1))?,
            shift: shift.reshape((1, c, 1, 1))?,
        });
        self.op(node, op, &[input])
    }

    pub fn relu(&mut self, name: &str, input: NodeId) -> Result<NodeId> {
        self.op(name, Op::Relu(Relu), &[input])
    }

    pub fn activation(&mut self, name: &str, input: NodeId, f: Function) -> Result<NodeId> {
        self.op(name, Op::Activation(Activation(f)), &[input])
    }

    pub fn pool(&mut self, name: &str, input: NodeId, pool: Pool) -> Result<NodeId> {
        self.op(name, Op::Pool(pool), &[input])
    }

    /// A `Linear` applied over the channels at every pixel (channels-last in PyTorch): a 1x1
    /// convolution with the linear layer's `(out, in)` weight.
    pub fn pointwise_linear(&mut self, name: &str, input: NodeId, out: usize) -> Result<NodeId> {
        let cin = self.channels(input);
        let weight = self
            .param(name, "weight", &[out, cin])?
            .reshape((out, cin, 1, 1))?;
        let bias = self.param(name, "bias", &[out])?;
        let conv = Conv2d::new(weight, Some(bias), Window::square(1, 1, 0, 1), 1);
        self.op(name, Op::Conv2d(conv), &[input])
    }

    /// Layer norm over the channels at every pixel (`LayerNorm2d`, or `LayerNorm` between
    /// permutes), weight and bias `(C,)`.
    pub fn layer_norm(&mut self, name: &str, input: NodeId, eps: f64) -> Result<NodeId> {
        let c = self.channels(input);
        let weight = self.param(name, "weight", &[c])?.reshape((1, c, 1, 1))?;
        let bias = self.param(name, "bias", &[c])?.reshape((1, c, 1, 1))?;
        let op = Op::LayerNorm(LayerNorm { weight, bias, eps });
        self.op(name, op, &[input])
    }

    /// The final linear layer, whose outputs are the class scores.
    pub fn classifier(&mut self, name: &str, input: NodeId, classes: usize) -> Result<NodeId> {
        let id = self.linear(name, input, classes, true)?;
        self.scores(id);
        Ok(id)
    }

    /// The classifier where the checkpoint has one (`head`), nothing for a backbone without it.
    /// A `head` whose weights are those of a Sequential of several Linear layers (`fc.0`,
    /// `fc.3`) is built as that chain: each hidden Linear followed by a ReLU as the module right
    /// after it (the checkpoint cannot say which activation it was: ReLU is what fine-tuning
    /// heads use), and the other modules between them, which hold no tensors, as dropouts.
    pub fn head(&mut self, head: Option<&str>, input: NodeId, classes: usize) -> Result<()> {
        let Some(name) = head else {
            return Ok(());
        };
        let chain = self.linear_chain(name);
        let Some((&(last, _), hidden)) = chain.split_last() else {
            self.classifier(name, input, classes)?;
            return Ok(());
        };
        let mut x = input;
        let mut next = 0;
        for &(index, width) in hidden {
            x = self.dropouts(name, next..index, x)?;
            let linear = format!("{name}.{index}");
            let bias = self.weights.shape_of(&format!("{linear}.bias")).is_some();
            x = self.linear(&linear, x, width, bias)?;
            next = index + 1;
            if chain.iter().all(|&(i, _)| i != next) {
                x = self.relu(&format!("{name}.{next}"), x)?;
                next += 1;
            }
        }
        x = self.dropouts(name, next..last, x)?;
        self.classifier(&format!("{name}.{last}"), x, classes)?;
        Ok(())
    }

    /// The Linear layers (index, output width) of a Sequential `name` whose weights the source
    /// has, when it has more than one and no weight for `name` itself.
    fn linear_chain(&self, name: &str) -> Vec<(usize, usize)> {
        if self.weights.shape_of(&format!("{name}.weight")).is_some() {
            return Vec::new();
        }
        let chain: Vec<(usize, usize)> = (0..MAX_HEAD_MODULES)
            .filter_map(
                |i| match self.weights.shape_of(&format!("{name}.{i}.weight"))?[..] {
                    [out, _] => Some((i, out)),
                    _ => None,
                },
            )
            .collect();
        if chain.len() > 1 {
            chain
        } else {
            Vec::new()
        }
    }

    /// Identity nodes `{name}.{i}` for the modules of `indices` in a head (dropouts).
    fn dropouts(
        &mut self,
        name: &str,
        indices: std::ops::Range<usize>,
        mut x: NodeId,
    ) -> Result<NodeId> {
        for i in indices {
            x = self.op(&format!("{name}.{i}"), Op::Dropout(Dropout), &[x])?;
        }
        Ok(x)
    }

    /// Global average pooling to one value per channel (`AdaptiveAvgPool2d(1)`, or a
    /// functional `mean([2, 3])` keeping the dimensions).
    pub fn global_avg_pool(&mut self, name: &str, input: NodeId) -> Result<NodeId> {
        let gap = AdaptiveAvgPool { out_h: 1, out_w: 1 };
        self.op(name, Op::AdaptiveAvgPool(gap), &[input])
    }

    /// Marks `id` as the node whose outputs are the class scores (a network built without one
    /// is a backbone).
    pub fn scores(&mut self, id: NodeId) {
        self.graph.set_classifier(id);
    }

    pub fn linear(&mut self, name: &str, input: NodeId, out: usize, bias: bool) -> Result<NodeId> {
        let features = self.shape(input).get(1).copied().unwrap_or(0);
        let weight = self.param(name, "weight", &[out, features])?;
        let bias = if bias {
            Some(self.param(name, "bias", &[out])?)
        } else {
            None
        };
        self.op(name, Op::Linear(Linear { weight, bias }), &[input])
    }
}
