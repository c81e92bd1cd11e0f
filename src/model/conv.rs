//! The convolution: its weights and geometry, its forward pass and its input gradient. On the
//! CPU both run through the engine's own kernel ([`super::cpu::conv`]); on other devices through
//! candle's `conv2d` (cuDNN/cuBLAS on CUDA).

use candle_core::{Result, Tensor};

use super::cpu;
use super::strided::{pad_or_crop, zero_dilate};

/// A 2-D convolution's weights and geometry (PyTorch's `nn.Conv2d`).
#[derive(Debug, Clone)]
pub struct Conv2d {
    /// `(out_channels, in_channels / groups, kh, kw)`, contiguous.
    pub weight: Tensor,
    /// `(out_channels,)`.
    pub bias: Option<Tensor>,
    pub stride: usize,
    pub padding: usize,
    pub dilation: usize,
    pub groups: usize,
}

impl Conv2d {
    /// The convolution of `x` (NCHW), bias included.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if cpu::handles(x) {
            return cpu::conv2d(x, self);
        }
        let y = x.conv2d(
            &self.weight,
            self.padding,
            self.stride,
            self.dilation,
            self.groups,
        )?;
        match &self.bias {
            Some(b) => y.broadcast_add(&b.reshape((1, (), 1, 1))?),
            None => Ok(y),
        }
    }
}

/// The kernel of the transposed convolution: `(C_in, C_out / groups, kh, kw)`, flipped spatially.
fn transposed_kernel(conv: &Conv2d) -> Result<Tensor> {
    let (co, ci_g, kh, kw) = conv.weight.dims4()?;
    let g = conv.groups;
    conv.weight
        .reshape((g, co / g, ci_g, kh, kw))?
        .transpose(1, 2)?
        .reshape((g * ci_g, co / g, kh, kw))?
        .flip(&[2, 3])?
        .contiguous()
}

/// Gradient of a convolution w.r.t. its input of spatial size `(h, w)`: the output gradient,
/// zero-dilated by the stride and padded, convolved with the flipped, transposed kernel.
pub fn conv_input_grad(g: &Tensor, conv: &Conv2d, (h, w): (usize, usize)) -> Result<Tensor> {
    let (_, _, kh, kw) = conv.weight.dims4()?;
    let (_, _, gh, gw) = g.dims4()?;
    let (s, p, d) = (
        conv.stride as isize,
        conv.padding as isize,
        conv.dilation as isize,
    );
    // Padding before and after along one axis, negative where the input must be cropped.
    let pads = |k: usize, size: usize, gsize: usize| {
        let span = d * (k as isize - 1);
        let dil_len = (gsize as isize - 1) * s + 1;
        (span - p, size as isize - dil_len + p)
    };
    let ((top, bottom), (left, right)) = (pads(kh, h, gh), pads(kw, w, gw));
    let mut transposed = Conv2d {
        weight: transposed_kernel(conv)?,
        bias: None,
        stride: 1,
        padding: 0,
        dilation: conv.dilation,
        groups: conv.groups,
    };
    if conv.stride == 1 && top >= 0 && [bottom, left, right] == [top; 3] {
        // The same padding on every side: the kernel pads as it reads, no copy.
        transposed.padding = top as usize;
        return transposed.forward(g);
    }
    let dilated = zero_dilate(&g.contiguous()?, conv.stride)?;
    let x = pad_or_crop(&dilated, 2, top, bottom)?;
    let x = pad_or_crop(&x, 3, left, right)?.contiguous()?;
    transposed.forward(&x)
}
