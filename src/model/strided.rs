//! Strided views built from differentiable-by-hand tensor primitives.
//!
//! candle has no strided slicing and no padded/overlapping pooling backward, so pooling off the
//! CPU is written with these few helpers: constant padding, the view `x[..., oy + s*i, ox + s*j]`,
//! its adjoint (scatter back), and zero dilation.

use candle_core::{Result, Tensor};

/// Pads dimension `dim` with `left`/`right` copies of `value`.
pub fn pad_const(x: &Tensor, dim: usize, left: usize, right: usize, value: f32) -> Result<Tensor> {
    if left == 0 && right == 0 {
        return Ok(x.clone());
    }
    if value == 0.0 {
        return x.pad_with_zeros(dim, left, right);
    }
    let mut parts = Vec::with_capacity(3);
    let mut dims = x.dims().to_vec();
    if left > 0 {
        dims[dim] = left;
        parts.push(Tensor::full(value, dims.as_slice(), x.device())?.to_dtype(x.dtype())?);
    }
    parts.push(x.clone());
    if right > 0 {
        dims[dim] = right;
        parts.push(Tensor::full(value, dims.as_slice(), x.device())?.to_dtype(x.dtype())?);
    }
    Tensor::cat(&parts, dim)
}

/// The view `x[n, c, oy + sh*i, ox + sw*j]` for `i < out_h`, `j < out_w` of an NCHW tensor.
///
/// `x` must be large enough: `oy + sh*out_h <= H` and `ox + sw*out_w <= W`.
pub fn strided_view(
    x: &Tensor,
    (oy, ox): (usize, usize),
    (sh, sw): (usize, usize),
    (out_h, out_w): (usize, usize),
) -> Result<Tensor> {
    let (n, c, _, _) = x.dims4()?;
    let v = x.narrow(2, oy, out_h * sh)?.narrow(3, ox, out_w * sw)?;
    if (sh, sw) == (1, 1) {
        return v.contiguous();
    }
    v.contiguous()?
        .reshape((n, c, out_h, sh, out_w, sw))?
        .narrow(3, 0, 1)?
        .narrow(5, 0, 1)?
        .reshape((n, c, out_h, out_w))
}

/// Inserts `sh - 1` zeros between neighbouring rows and `sw - 1` between neighbouring columns:
/// `(H, W) -> ((H-1)*sh + 1, (W-1)*sw + 1)`.
pub fn zero_dilate(g: &Tensor, (sh, sw): (usize, usize)) -> Result<Tensor> {
    if (sh, sw) == (1, 1) {
        return Ok(g.clone());
    }
    let (n, c, h, w) = g.dims4()?;
    g.reshape((n, c, h, 1, w, 1))?
        .pad_with_zeros(3, 0, sh - 1)?
        .pad_with_zeros(5, 0, sw - 1)?
        .reshape((n, c, h * sh, w * sw))?
        .narrow(2, 0, (h - 1) * sh + 1)?
        .narrow(3, 0, (w - 1) * sw + 1)
}

/// Adjoint of [`strided_view`]: places `g` back at the viewed positions of a zero tensor of
/// spatial size `(h, w)`.
pub fn strided_view_adjoint(
    g: &Tensor,
    (oy, ox): (usize, usize),
    (sh, sw): (usize, usize),
    (h, w): (usize, usize),
) -> Result<Tensor> {
    let (_, _, gh, gw) = g.dims4()?;
    let d = zero_dilate(g, (sh, sw))?;
    let (dh, dw) = ((gh - 1) * sh + 1, (gw - 1) * sw + 1);
    d.pad_with_zeros(2, oy, h - oy - dh)?
        .pad_with_zeros(3, ox, w - ox - dw)
}

/// A `0.0`/`1.0` mask of `a == b`, in `a`'s dtype.
pub fn equal_mask(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    a.eq(b)?.to_dtype(a.dtype())
}
