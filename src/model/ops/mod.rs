//! The graph's operations, one file per kind: each holds its shape rule, forward pass, input
//! gradient (vector-Jacobian product), attribute text and parameter count, and picks the device
//! path (the engine's CPU kernels or candle's ops) itself, behind the one interface
//! [`Operation`]. [`Op`] is the closed set of kinds; its one `match` names every variant, so a new
//! op is a file, a variant and an arm, and the compiler points at anything else that must learn
//! of it.
//!
//! Every op works on NCHW `f32` tensors (or `(N, features)` after flatten). Weights live inside
//! the op.

pub mod activation;
mod adaptive_avg_pool;
mod add;
mod batch_norm;
mod channel_scale;
mod channel_shuffle;
mod channel_slice;
mod concat;
pub mod conv2d;
mod conv2d_gradient;
mod dropout;
mod flatten;
mod flatten_channels_last;
mod gate;
pub mod geometry;
mod global_max_pool;
mod input;
mod layer_norm;
mod leaky_relu;
mod linear;
mod permute;
pub mod pool;
mod relu;

use candle_core::{Result, Tensor};

pub use activation::{Activation, Function};
pub use adaptive_avg_pool::AdaptiveAvgPool;
pub use add::Add;
pub use batch_norm::BatchNorm;
pub use channel_scale::ChannelScale;
pub use channel_shuffle::ChannelShuffle;
pub use channel_slice::ChannelSlice;
pub use concat::Concat;
pub use conv2d::Conv2d;
pub use dropout::Dropout;
pub use flatten::Flatten;
pub use flatten_channels_last::FlattenChannelsLast;
pub use gate::Gate;
pub use geometry::{Axis, Window};
pub use global_max_pool::GlobalMaxPool;
pub use input::Input;
pub use layer_norm::LayerNorm;
pub use leaky_relu::LeakyRelu;
pub use linear::Linear;
pub use permute::Permute;
pub use pool::{Pool, PoolKind};
pub use relu::Relu;

/// What every op kind provides. No method has a default: a new op states each one.
pub trait Operation {
    /// Short lower-case name of the kind, as shown in the layer tree.
    fn kind(&self) -> &'static str;
    /// Human-readable attributes (kernel, stride, ...), empty when there are none.
    fn attributes(&self) -> String;
    /// Learned parameters, as PyTorch's `parameters()` counts them (buffers such as batch norm's
    /// running statistics are not parameters).
    fn parameter_count(&self) -> usize;
    /// Output shape for the given input shapes (batch dimension included).
    fn output_shape(&self, inputs: &[&[usize]]) -> std::result::Result<Vec<usize>, String>;
    /// The output for these inputs.
    fn forward(&self, inputs: &[&Tensor]) -> Result<Tensor>;
    /// Which values of the forward pass [`Operation::vjp`] reads: a pass taken only for its
    /// gradient keeps these and drops the rest as soon as it can.
    fn reverse_reads(&self) -> Reads;
    /// Gradients w.r.t. each input, given the gradient of the output (weights are constants).
    fn vjp(&self, at: &Backward, grad: &Tensor) -> Result<Vec<Tensor>>;
}

/// The forward values an op's reverse pass reads: its inputs, its output, both or neither.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reads {
    pub inputs: bool,
    pub output: bool,
}

impl Reads {
    pub const NOTHING: Reads = Reads {
        inputs: false,
        output: false,
    };
    pub const INPUTS: Reads = Reads {
        inputs: true,
        output: false,
    };
    pub const OUTPUT: Reads = Reads {
        inputs: false,
        output: true,
    };
    pub const INPUTS_AND_OUTPUT: Reads = Reads {
        inputs: true,
        output: true,
    };
}

/// What the reverse pass knows at a node: the values the forward pass kept and the shapes of
/// the node's inputs at the batch size of the gradient.
pub struct Backward<'a> {
    pub inputs: Vec<Option<&'a Tensor>>,
    pub output: Option<&'a Tensor>,
    pub input_shapes: Vec<Vec<usize>>,
}

impl Backward<'_> {
    /// The kept value of input `k`.
    pub fn input(&self, k: usize) -> Result<&Tensor> {
        self.inputs
            .get(k)
            .copied()
            .flatten()
            .ok_or_else(|| candle_core::Error::msg("its input was not kept by the forward pass"))
    }

    /// The kept output.
    pub fn output(&self) -> Result<&Tensor> {
        self.output
            .ok_or_else(|| candle_core::Error::msg("its output was not kept by the forward pass"))
    }

    /// Height and width of input `k`.
    pub fn input_size(&self, k: usize) -> (usize, usize) {
        let s = &self.input_shapes[k];
        (s[2], s[3])
    }
}

/// One node's operation.
#[derive(Debug, Clone)]
pub enum Op {
    Input(Input),
    Conv2d(Conv2d),
    BatchNorm(BatchNorm),
    Relu(Relu),
    LeakyRelu(LeakyRelu),
    Pool(Pool),
    AdaptiveAvgPool(AdaptiveAvgPool),
    GlobalMaxPool(GlobalMaxPool),
    Flatten(Flatten),
    FlattenChannelsLast(FlattenChannelsLast),
    Linear(Linear),
    Dropout(Dropout),
    Add(Add),
    Concat(Concat),
    Activation(Activation),
    LayerNorm(LayerNorm),
    ChannelScale(ChannelScale),
    Gate(Gate),
    ChannelShuffle(ChannelShuffle),
    Permute(Permute),
    ChannelSlice(ChannelSlice),
}

impl std::ops::Deref for Op {
    type Target = dyn Operation;

    fn deref(&self) -> &Self::Target {
        match self {
            Op::Input(o) => o,
            Op::Conv2d(o) => o,
            Op::BatchNorm(o) => o,
            Op::Relu(o) => o,
            Op::LeakyRelu(o) => o,
            Op::Pool(o) => o,
            Op::AdaptiveAvgPool(o) => o,
            Op::GlobalMaxPool(o) => o,
            Op::Flatten(o) => o,
            Op::FlattenChannelsLast(o) => o,
            Op::Linear(o) => o,
            Op::Dropout(o) => o,
            Op::Add(o) => o,
            Op::Concat(o) => o,
            Op::Activation(o) => o,
            Op::LayerNorm(o) => o,
            Op::ChannelScale(o) => o,
            Op::Gate(o) => o,
            Op::ChannelShuffle(o) => o,
            Op::Permute(o) => o,
            Op::ChannelSlice(o) => o,
        }
    }
}

/// `(N, C, H, W)` of the first input, or an error naming the op.
fn spatial(
    what: &str,
    inputs: &[&[usize]],
) -> std::result::Result<(usize, usize, usize, usize), String> {
    match inputs.first().copied() {
        Some([n, c, h, w]) => Ok((*n, *c, *h, *w)),
        other => Err(format!("{what} needs an (N, C, H, W) input, got {other:?}")),
    }
}

/// The first input's shape, or an error naming the op.
fn first<'a>(what: &str, inputs: &[&'a [usize]]) -> std::result::Result<&'a [usize], String> {
    inputs
        .first()
        .copied()
        .ok_or_else(|| format!("{what} needs an input"))
}
