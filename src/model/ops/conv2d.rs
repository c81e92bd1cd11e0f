//! The convolution (PyTorch's `nn.Conv2d`, with per-axis geometry): its forward pass and its
//! input gradient, which is itself a convolution (in phases, see [`super::conv2d_gradient`]). On the CPU both run through the engine's own
//! kernels ([`crate::model::cpu`]); elsewhere through candle's `conv2d` (cuDNN/cuBLAS on CUDA).

use candle_core::{bail, Result, Tensor};

use std::sync::OnceLock;

use super::conv2d_gradient::{input_gradient, PhaseKernels};
use super::geometry::{Axis, Window};
use super::{spatial, Backward, Operation, Reads};
use crate::model::cpu;

/// A convolution; its fields are read, never changed, once it is made with [`Conv2d::new`]
/// (the input gradient's kernels are made from them on first use and kept).
#[derive(Debug, Clone)]
pub struct Conv2d {
    /// `(out_channels, in_channels / groups, kh, kw)`, contiguous.
    pub weight: Tensor,
    /// `(out_channels,)`.
    pub bias: Option<Tensor>,
    /// Stride, dilation and padding per axis; the kernel sizes are the weight's.
    pub window: Window,
    pub groups: usize,
    gradient_kernels: OnceLock<PhaseKernels>,
    prepared: cpu::Prepared,
}

impl Conv2d {
    pub fn new(weight: Tensor, bias: Option<Tensor>, window: Window, groups: usize) -> Conv2d {
        Conv2d {
            weight,
            bias,
            window,
            groups,
            gradient_kernels: OnceLock::new(),
            prepared: cpu::Prepared::default(),
        }
    }

    /// The same kernel over another window, sharing what the CPU kernels prepared from it
    /// (which does not depend on the window).
    pub fn with_window(&self, window: Window) -> Conv2d {
        Conv2d {
            window,
            gradient_kernels: OnceLock::new(),
            prepared: self.prepared.clone(),
            ..Conv2d::new(self.weight.clone(), self.bias.clone(), window, self.groups)
        }
    }

    /// A convolution with one stride, padding (all sides) and dilation for both axes.
    pub fn square(
        weight: Tensor,
        bias: Option<Tensor>,
        stride: usize,
        padding: usize,
        dilation: usize,
        groups: usize,
    ) -> Result<Conv2d> {
        let (_, _, kh, kw) = weight.dims4()?;
        let axis = |kernel| Axis {
            kernel,
            stride,
            dilation,
            before: padding,
            after: padding,
        };
        let window = Window {
            h: axis(kh),
            w: axis(kw),
        };
        Ok(Conv2d::new(weight, bias, window, groups))
    }

    /// The convolution of `x` (NCHW), bias included.
    pub fn apply(&self, x: &Tensor) -> Result<Tensor> {
        if cpu::handles(x) {
            return cpu::conv2d(
                x,
                &self.weight,
                self.bias.as_ref(),
                &self.window,
                self.groups,
                &self.prepared,
            );
        }
        let (x, u) = match self.window.uniform() {
            Some(u) => (x.clone(), u),
            None => {
                let (h, w) = (self.window.h, self.window.w);
                if h.stride != w.stride || h.dilation != w.dilation {
                    bail!(
                        "conv2d with different strides or dilations for height and width runs on the CPU only"
                    );
                }
                let x = x
                    .pad_with_zeros(2, h.before, h.after)?
                    .pad_with_zeros(3, w.before, w.after)?;
                let square = Window::square(h.kernel, h.stride, 0, h.dilation);
                (x, square.uniform().expect("a square window"))
            }
        };
        let y = x.conv2d(&self.weight, u.padding, u.stride, u.dilation, self.groups)?;
        match &self.bias {
            Some(b) => y.broadcast_add(&b.reshape((1, (), 1, 1))?),
            None => Ok(y),
        }
    }

    /// Gradient w.r.t. the input of spatial size `(h, w)`: the transposed convolution of the
    /// output gradient, phase by phase (see [`super::conv2d_gradient`]); on the CPU, by columns
    /// where the convolution reads few channels (see [`cpu::col2im`]).
    pub fn input_grad(&self, g: &Tensor, size: (usize, usize)) -> Result<Tensor> {
        if cpu::handles(g) && cpu::col2im::applies(&self.weight, self.groups) {
            return cpu::col2im::input_gradient(g, &self.weight, &self.window, size);
        }
        let kernels = match self.gradient_kernels.get() {
            Some(k) => k,
            None => {
                // Two threads may both make them; the first one kept wins, both are equal.
                let _ = self.gradient_kernels.set(PhaseKernels::new(self)?);
                self.gradient_kernels.get().expect("set above")
            }
        };
        input_gradient(self, kernels, g, size)
    }
}

impl Operation for Conv2d {
    fn kind(&self) -> &'static str {
        "conv2d"
    }

    fn attributes(&self) -> String {
        let d = self.weight.dims();
        let mut s = format!(
            "{}->{}, {}",
            d[1] * self.groups,
            d[0],
            self.window.describe()
        );
        if self.groups != 1 {
            s += &format!(", groups {}", self.groups);
        }
        if self.bias.is_none() {
            s += ", no bias";
        }
        s
    }

    fn parameter_count(&self) -> usize {
        self.weight.elem_count() + self.bias.as_ref().map_or(0, |b| b.elem_count())
    }

    fn output_shape(&self, inputs: &[&[usize]]) -> std::result::Result<Vec<usize>, String> {
        let (n, c, h, w) = spatial("conv2d", inputs)?;
        let d = self.weight.dims();
        if d[1] * self.groups != c {
            return Err(format!(
                "conv2d expects {} input channels, got {c}",
                d[1] * self.groups
            ));
        }
        let (oh, ow) = self
            .window
            .output((h, w))
            .map_err(|e| format!("conv2d: {e}"))?;
        Ok(vec![n, d[0], oh, ow])
    }

    fn forward(&self, inputs: &[&Tensor]) -> Result<Tensor> {
        self.apply(inputs[0])
    }

    fn reverse_reads(&self) -> Reads {
        Reads::NOTHING
    }

    fn vjp(&self, at: &Backward, grad: &Tensor) -> Result<Vec<Tensor>> {
        Ok(vec![self.input_grad(grad, at.input_size(0))?])
    }
}
