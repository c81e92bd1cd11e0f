//! Max and average pooling over a fixed window, with PyTorch's exact semantics (padding,
//! `ceil_mode`, `count_include_pad = true`, the first maximum of a window taking its gradient).
//!
//! On the CPU, the forward pass and max pooling's reverse pass are the engine's kernels. Elsewhere
//! (and for the average's reverse pass) a window is the
//! max (or sum) of `kernel_h * kernel_w` strided views of the padded input, which handles
//! overlapping windows, padding and `ceil_mode` alike and is differentiable by hand (ResNet's
//! stem pool is kernel 3, stride 2, padding 1, which candle's own pooling cannot differentiate).

use candle_core::{Result, Tensor};

use super::geometry::{Axis, Window};
use super::{spatial, Backward, Operation, Reads};
use crate::model::cpu;
use crate::model::strided::{equal_mask, pad_const, strided_view, strided_view_adjoint};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolKind {
    Max,
    /// Average with `count_include_pad = true` (PyTorch's default).
    Avg,
    /// Average over the input elements a window covers, padding left out of the count
    /// (`count_include_pad = false`, ONNX's default).
    AvgExcludingPadding,
}

/// A pooling window (PyTorch's `MaxPool2d`/`AvgPool2d`; dilation is always 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pool {
    pub kind: PoolKind,
    pub window: Window,
    pub ceil_mode: bool,
}

impl Pool {
    /// A square window with padding on every side.
    pub fn square(
        kind: PoolKind,
        kernel: usize,
        stride: usize,
        padding: usize,
        ceil_mode: bool,
    ) -> Pool {
        Pool {
            kind,
            window: Window::square(kernel, stride, padding, 1),
            ceil_mode,
        }
    }

    /// Output size for an input of `(h, w)`.
    pub fn output(&self, (h, w): (usize, usize)) -> std::result::Result<(usize, usize), String> {
        Ok((
            axis_output(&self.window.h, h, self.ceil_mode)?,
            axis_output(&self.window.w, w, self.ceil_mode)?,
        ))
    }

    fn fill(&self) -> f32 {
        match self.kind {
            PoolKind::Max => f32::NEG_INFINITY,
            PoolKind::Avg | PoolKind::AvgExcludingPadding => 0.0,
        }
    }

    /// The input padded so that every window's strided view fits, and the output size.
    fn padded(&self, x: &Tensor) -> Result<(Tensor, (usize, usize))> {
        let (_, _, h, w) = x.dims4()?;
        let (oh, ow) = self.output((h, w)).map_err(candle_core::Error::msg)?;
        let (top, bottom) = padding_for(&self.window.h, h, oh);
        let (left, right) = padding_for(&self.window.w, w, ow);
        let xp = pad_const(x, 2, top, bottom, self.fill())?;
        Ok((pad_const(&xp, 3, left, right, self.fill())?, (oh, ow)))
    }

    /// Divisor of each average-pool window, shaped `(1, 1, oh, ow)`: see [`Pool::divisors`].
    fn divisor(
        &self,
        (h, w): (usize, usize),
        (oh, ow): (usize, usize),
        like: &Tensor,
    ) -> Result<Tensor> {
        Tensor::from_vec(
            self.divisors((h, w), (oh, ow)),
            (1, 1, oh, ow),
            like.device(),
        )?
        .to_dtype(like.dtype())
    }

    /// Divisor of each average-pool window, row-major: its size clipped to the padded input,
    /// or to the input itself when padding is not counted.
    fn divisors(&self, (h, w): (usize, usize), (oh, ow): (usize, usize)) -> Vec<f32> {
        let counted = self.kind == PoolKind::Avg;
        let extent = |a: &Axis, i: usize, size: usize| {
            let start = (i * a.stride) as isize - a.before as isize;
            let end = (start + a.kernel as isize).min((size + a.after) as isize);
            if counted {
                (end - start) as f32
            } else {
                (end.min(size as isize) - start.max(0)) as f32
            }
        };
        let (ah, aw) = (self.window.h, self.window.w);
        (0..oh)
            .flat_map(|i| (0..ow).map(move |j| (i, j)))
            .map(|(i, j)| extent(&ah, i, h) * extent(&aw, j, w))
            .collect()
    }

    fn strides(&self) -> (usize, usize) {
        (self.window.h.stride, self.window.w.stride)
    }
}

/// Output length along one axis, with PyTorch's rule that the last window must start inside the
/// input or its leading padding.
fn axis_output(a: &Axis, size: usize, ceil_mode: bool) -> std::result::Result<usize, String> {
    if a.kernel == 0 || a.stride == 0 {
        return Err("pooling kernel and stride must be positive".into());
    }
    if 2 * a.before > a.kernel || 2 * a.after > a.kernel {
        return Err(format!(
            "pool padding {}/{} is more than half the kernel {}",
            a.before, a.after, a.kernel
        ));
    }
    let span = (size + a.before + a.after)
        .checked_sub(a.kernel)
        .ok_or_else(|| {
            format!(
                "input size {size} is smaller than the pool kernel {}",
                a.kernel
            )
        })?;
    let mut out = if ceil_mode {
        span.div_ceil(a.stride)
    } else {
        span / a.stride
    } + 1;
    if ceil_mode && (out - 1) * a.stride >= size + a.before {
        out -= 1;
    }
    Ok(out)
}

/// Padding `(before, after)` along one axis so that every strided view of `out` windows fits.
fn padding_for(a: &Axis, size: usize, out: usize) -> (usize, usize) {
    let needed = a.kernel - 1 + out * a.stride;
    (a.before, needed.saturating_sub(size + a.before))
}

impl Operation for Pool {
    fn kind(&self) -> &'static str {
        match self.kind {
            PoolKind::Max => "maxpool",
            PoolKind::Avg | PoolKind::AvgExcludingPadding => "avgpool",
        }
    }

    fn attributes(&self) -> String {
        format!(
            "{}{}{}",
            self.window.describe(),
            if self.ceil_mode { ", ceil_mode" } else { "" },
            if self.kind == PoolKind::AvgExcludingPadding {
                ", padding not counted"
            } else {
                ""
            }
        )
    }

    fn parameter_count(&self) -> usize {
        0
    }

    fn output_shape(&self, inputs: &[&[usize]]) -> std::result::Result<Vec<usize>, String> {
        let (n, c, h, w) = spatial("pooling", inputs)?;
        let (oh, ow) = self.output((h, w))?;
        Ok(vec![n, c, oh, ow])
    }

    fn forward(&self, inputs: &[&Tensor]) -> Result<Tensor> {
        let x = inputs[0];
        if cpu::handles(x) {
            let (_, _, h, w) = x.dims4()?;
            let out = self.output((h, w)).map_err(candle_core::Error::msg)?;
            let reduce = match self.kind {
                PoolKind::Max => cpu::pool::Reduce::Max,
                PoolKind::Avg | PoolKind::AvgExcludingPadding => {
                    cpu::pool::Reduce::Mean(self.divisors((h, w), out))
                }
            };
            return cpu::pool::pool(x, &self.window, out, &reduce);
        }
        let (xp, out) = self.padded(x)?;
        let mut acc: Option<Tensor> = None;
        for oy in 0..self.window.h.kernel {
            for ox in 0..self.window.w.kernel {
                let v = strided_view(&xp, (oy, ox), self.strides(), out)?;
                acc = Some(match (acc, self.kind) {
                    (None, _) => v,
                    (Some(a), PoolKind::Max) => a.maximum(&v)?,
                    (Some(a), PoolKind::Avg | PoolKind::AvgExcludingPadding) => (a + v)?,
                });
            }
        }
        let acc = acc.expect("kernel is at least 1");
        match self.kind {
            PoolKind::Max => Ok(acc),
            PoolKind::Avg | PoolKind::AvgExcludingPadding => {
                let (_, _, h, w) = x.dims4()?;
                acc.broadcast_div(&self.divisor((h, w), out, x)?)
            }
        }
    }

    fn reverse_reads(&self) -> Reads {
        Reads::INPUTS
    }

    fn vjp(&self, at: &Backward, grad: &Tensor) -> Result<Vec<Tensor>> {
        let x = at.input(0)?;
        if self.kind == PoolKind::Max && cpu::handles(x) {
            return Ok(vec![cpu::pool::max_pool_backward(x, grad, &self.window)?]);
        }
        let (_, _, h, w) = x.dims4()?;
        let (xp, out) = self.padded(x)?;
        let (_, _, hp, wp) = xp.dims4()?;
        let grad = match self.kind {
            PoolKind::Max => grad.clone(),
            PoolKind::Avg | PoolKind::AvgExcludingPadding => {
                grad.broadcast_div(&self.divisor((h, w), out, x)?)?
            }
        };
        // The maxima, computed again from the input rather than kept: the CPU's kernel needs
        // only the input, so the forward pass keeps only that (see `reverse_reads`).
        let y = match self.kind {
            PoolKind::Max => Some(self.forward(&[x])?),
            PoolKind::Avg | PoolKind::AvgExcludingPadding => None,
        };
        let mut taken: Option<Tensor> = None;
        let mut acc = Tensor::zeros(xp.dims(), xp.dtype(), xp.device())?;
        for oy in 0..self.window.h.kernel {
            for ox in 0..self.window.w.kernel {
                let part = match &y {
                    None => grad.clone(),
                    Some(y) => {
                        // The first maximum of each window in row-major order takes it.
                        let v = strided_view(&xp, (oy, ox), self.strides(), out)?;
                        let hit = equal_mask(&v, y)?;
                        let first = match &taken {
                            None => hit.clone(),
                            Some(t) => (&hit * t.affine(-1.0, 1.0)?)?,
                        };
                        taken = Some(match taken {
                            None => hit,
                            Some(t) => t.maximum(&hit)?,
                        });
                        (&grad * first)?
                    }
                };
                acc = (acc + strided_view_adjoint(&part, (oy, ox), self.strides(), (hp, wp))?)?;
            }
        }
        Ok(vec![acc.narrow(2, self.window.h.before, h)?.narrow(
            3,
            self.window.w.before,
            w,
        )?])
    }
}
