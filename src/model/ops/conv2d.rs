//! The convolution (PyTorch's `nn.Conv2d`, with per-axis geometry): its forward pass and its
//! input gradient, which is itself a convolution. On the CPU both run through the engine's own
//! kernels ([`crate::model::cpu`]); elsewhere through candle's `conv2d` (cuDNN/cuBLAS on CUDA).

use candle_core::{bail, Result, Tensor};

use super::geometry::{Axis, Window};
use super::{spatial, Backward, Operation};
use crate::model::cpu;
use crate::model::strided::{pad_or_crop, zero_dilate};

#[derive(Debug, Clone)]
pub struct Conv2d {
    /// `(out_channels, in_channels / groups, kh, kw)`, contiguous.
    pub weight: Tensor,
    /// `(out_channels,)`.
    pub bias: Option<Tensor>,
    /// Stride, dilation and padding per axis; the kernel sizes are the weight's.
    pub window: Window,
    pub groups: usize,
}

impl Conv2d {
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
        Ok(Conv2d {
            weight,
            bias,
            window: Window {
                h: axis(kh),
                w: axis(kw),
            },
            groups,
        })
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

    /// Gradient w.r.t. the input of spatial size `(h, w)`: the output gradient, zero-dilated by
    /// the stride and padded, convolved with the flipped, transposed kernel.
    pub fn input_grad(&self, g: &Tensor, (h, w): (usize, usize)) -> Result<Tensor> {
        let (_, _, gh, gw) = g.dims4()?;
        // Padding before and after along one axis, negative where the input must be cropped.
        let pads = |a: &Axis, size: usize, gsize: usize| {
            let span = (a.dilation * (a.kernel - 1)) as isize;
            let dilated = (gsize as isize - 1) * a.stride as isize + 1;
            (
                span - a.before as isize,
                size as isize - dilated + a.before as isize,
            )
        };
        let (ah, aw) = (self.window.h, self.window.w);
        let ((top, bottom), (left, right)) = (pads(&ah, h, gh), pads(&aw, w, gw));
        let mut transposed = Conv2d {
            weight: self.transposed_kernel()?,
            bias: None,
            window: Window {
                h: Axis {
                    stride: 1,
                    before: 0,
                    after: 0,
                    ..ah
                },
                w: Axis {
                    stride: 1,
                    before: 0,
                    after: 0,
                    ..aw
                },
            },
            groups: self.groups,
        };
        if (ah.stride, aw.stride) == (1, 1) && top >= 0 && [bottom, left, right] == [top; 3] {
            // The same padding on every side: the kernel pads as it reads, no copy.
            let p = top as usize;
            for a in [&mut transposed.window.h, &mut transposed.window.w] {
                (a.before, a.after) = (p, p);
            }
            return transposed.apply(g);
        }
        let dilated = zero_dilate(&g.contiguous()?, (ah.stride, aw.stride))?;
        let x = pad_or_crop(&dilated, 2, top, bottom)?;
        let x = pad_or_crop(&x, 3, left, right)?.contiguous()?;
        transposed.apply(&x)
    }

    /// The kernel of the transposed convolution: `(C_in, C_out / groups, kh, kw)`, flipped.
    fn transposed_kernel(&self) -> Result<Tensor> {
        let (co, ci_g, kh, kw) = self.weight.dims4()?;
        let g = self.groups;
        self.weight
            .reshape((g, co / g, ci_g, kh, kw))?
            .transpose(1, 2)?
            .reshape((g * ci_g, co / g, kh, kw))?
            .flip(&[2, 3])?
            .contiguous()
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

    fn vjp(&self, at: &Backward, grad: &Tensor) -> Result<Vec<Tensor>> {
        Ok(vec![self.input_grad(grad, at.input_size(0))?])
    }
}
