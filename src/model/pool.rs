//! Pooling with PyTorch's exact semantics and hand-written gradients.
//!
//! Fixed-window pooling is computed as the max (or sum) of `kernel^2` strided views of the padded
//! input, which handles overlapping windows, padding and `ceil_mode` alike (ResNet's stem pool is
//! kernel 3, stride 2, padding 1, which candle's own pooling cannot differentiate). Adaptive
//! average pooling is two small matrix products with PyTorch's bin boundaries.

use candle_core::{Result, Tensor};

use super::cpu;
use super::ops::PoolKind;
use super::strided::{equal_mask, pad_const, strided_view, strided_view_adjoint};

/// Kernel, stride and padding of a square pooling window (PyTorch's `MaxPool2d`/`AvgPool2d`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolGeometry {
    pub kernel: usize,
    pub stride: usize,
    pub padding: usize,
    pub ceil_mode: bool,
}

impl PoolGeometry {
    /// Output length along one axis, with PyTorch's rule that the last window must start inside
    /// the input or its left padding.
    pub fn output_size(&self, size: usize) -> std::result::Result<usize, String> {
        let (k, s, p) = (self.kernel, self.stride, self.padding);
        if k == 0 || s == 0 {
            return Err("pooling kernel and stride must be positive".into());
        }
        if 2 * p > k {
            return Err(format!("pool padding {p} is more than half the kernel {k}"));
        }
        let span = (size + 2 * p)
            .checked_sub(k)
            .ok_or_else(|| format!("input size {size} is smaller than the pool kernel {k}"))?;
        let mut out = if self.ceil_mode {
            span.div_ceil(s)
        } else {
            span / s
        } + 1;
        if self.ceil_mode && (out - 1) * s >= size + p {
            out -= 1;
        }
        Ok(out)
    }

    /// Padded extent needed so that every strided view fits: `(left, right)` for an axis.
    fn padding_for(&self, size: usize, out: usize) -> (usize, usize) {
        let needed = self.kernel - 1 + out * self.stride;
        (self.padding, needed.saturating_sub(size + self.padding))
    }
}

fn padded_input(x: &Tensor, g: &PoolGeometry, fill: f32) -> Result<(Tensor, (usize, usize))> {
    let (_, _, h, w) = x.dims4()?;
    let oh = g.output_size(h).map_err(candle_core::Error::msg)?;
    let ow = g.output_size(w).map_err(candle_core::Error::msg)?;
    let (ht, hb) = g.padding_for(h, oh);
    let (wl, wr) = g.padding_for(w, ow);
    let xp = pad_const(x, 2, ht, hb, fill)?;
    let xp = pad_const(&xp, 3, wl, wr, fill)?;
    Ok((xp, (oh, ow)))
}

/// Divisor of each average-pool window: its size clipped to the padded input (PyTorch's
/// `count_include_pad = true`), shaped `(1, 1, oh, ow)`.
fn avg_divisor(
    g: &PoolGeometry,
    (h, w): (usize, usize),
    (oh, ow): (usize, usize),
    like: &Tensor,
) -> Result<Tensor> {
    let extent = |i: usize, size: usize| {
        let start = (i * g.stride) as isize - g.padding as isize;
        let end = (start + g.kernel as isize).min((size + g.padding) as isize);
        (end - start) as f32
    };
    let vals: Vec<f32> = (0..oh)
        .flat_map(|i| (0..ow).map(move |j| (i, j)))
        .map(|(i, j)| extent(i, h) * extent(j, w))
        .collect();
    Tensor::from_vec(vals, (1, 1, oh, ow), like.device())
}

/// Forward pass of max or average pooling.
pub fn pool_forward(x: &Tensor, kind: PoolKind, g: &PoolGeometry) -> Result<Tensor> {
    let fill = match kind {
        PoolKind::Max => f32::NEG_INFINITY,
        PoolKind::Avg => 0.0,
    };
    if kind == PoolKind::Max && cpu::handles(x) {
        let (_, _, h, w) = x.dims4()?;
        let oh = g.output_size(h).map_err(candle_core::Error::msg)?;
        let ow = g.output_size(w).map_err(candle_core::Error::msg)?;
        return cpu::pool::max_pool(x, g, (oh, ow));
    }
    let (xp, out) = padded_input(x, g, fill)?;
    let mut acc: Option<Tensor> = None;
    for oy in 0..g.kernel {
        for ox in 0..g.kernel {
            let v = strided_view(&xp, (oy, ox), g.stride, out)?;
            acc = Some(match (acc, kind) {
                (None, _) => v,
                (Some(a), PoolKind::Max) => a.maximum(&v)?,
                (Some(a), PoolKind::Avg) => (a + v)?,
            });
        }
    }
    let acc = acc.expect("kernel is at least 1");
    match kind {
        PoolKind::Max => Ok(acc),
        PoolKind::Avg => {
            let (_, _, h, w) = x.dims4()?;
            acc.broadcast_div(&avg_divisor(g, (h, w), out, x)?)
        }
    }
}

/// Gradient of pooling w.r.t. its input `x`, given its output `y` and the output gradient.
/// Max pooling sends each window's gradient to the first maximum in row-major order, as
/// PyTorch does.
pub fn pool_backward(
    x: &Tensor,
    y: &Tensor,
    grad: &Tensor,
    kind: PoolKind,
    g: &PoolGeometry,
) -> Result<Tensor> {
    if kind == PoolKind::Max && cpu::handles(x) {
        return cpu::pool::max_pool_backward(x, grad, g);
    }
    let (_, _, h, w) = x.dims4()?;
    let fill = match kind {
        PoolKind::Max => f32::NEG_INFINITY,
        PoolKind::Avg => 0.0,
    };
    let (xp, out) = padded_input(x, g, fill)?;
    let (_, _, hp, wp) = xp.dims4()?;
    let grad = match kind {
        PoolKind::Max => grad.clone(),
        PoolKind::Avg => grad.broadcast_div(&avg_divisor(g, (h, w), out, x)?)?,
    };
    let mut taken: Option<Tensor> = None;
    let mut acc = Tensor::zeros(xp.dims(), xp.dtype(), xp.device())?;
    for oy in 0..g.kernel {
        for ox in 0..g.kernel {
            let part = match kind {
                PoolKind::Avg => grad.clone(),
                PoolKind::Max => {
                    let v = strided_view(&xp, (oy, ox), g.stride, out)?;
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
            acc = (acc + strided_view_adjoint(&part, (oy, ox), g.stride, (hp, wp))?)?;
        }
    }
    acc.narrow(2, g.padding, h)?.narrow(3, g.padding, w)
}

/// `(out, size)` matrix averaging PyTorch's adaptive bins `[floor(i*n/o), ceil((i+1)*n/o))`.
fn adaptive_matrix(out: usize, size: usize, like: &Tensor) -> Result<Tensor> {
    let mut m = vec![0f32; out * size];
    for i in 0..out {
        let start = i * size / out;
        let end = ((i + 1) * size).div_ceil(out);
        for j in start..end {
            m[i * size + j] = 1.0 / (end - start) as f32;
        }
    }
    Tensor::from_vec(m, (out, size), like.device())
}

/// PyTorch's `adaptive_avg_pool2d`.
pub fn adaptive_avg_pool(x: &Tensor, out_h: usize, out_w: usize) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    if (h, w) == (out_h, out_w) {
        return Ok(x.clone());
    }
    if (out_h, out_w) == (1, 1) {
        return x.mean_keepdim(2)?.mean_keepdim(3);
    }
    let mh = adaptive_matrix(out_h, h, x)?;
    let mw = adaptive_matrix(out_w, w, x)?;
    mh.broadcast_matmul(&x.contiguous()?)?
        .broadcast_matmul(&mw.t()?)
}

/// Gradient of [`adaptive_avg_pool`] w.r.t. its input of spatial size `(h, w)`.
pub fn adaptive_avg_pool_backward(grad: &Tensor, (h, w): (usize, usize)) -> Result<Tensor> {
    let (n, c, out_h, out_w) = grad.dims4()?;
    if (h, w) == (out_h, out_w) {
        return Ok(grad.clone());
    }
    if (out_h, out_w) == (1, 1) {
        return grad
            .broadcast_as((n, c, h, w))?
            .affine(1.0 / (h * w) as f64, 0.0);
    }
    let mh = adaptive_matrix(out_h, h, grad)?;
    let mw = adaptive_matrix(out_w, w, grad)?;
    mh.t()?
        .broadcast_matmul(&grad.contiguous()?)?
        .broadcast_matmul(&mw)
}
