//! Max pooling on the CPU, forward and backward: one pass over each input plane, planes in
//! parallel. Each window's maximum is its first largest value in row-major order, NaN winning,
//! as in PyTorch; the backward pass sends the window's gradient there.

use std::ops::Range;

use candle_core::{Result, Tensor};
use rayon::prelude::*;

use super::with_data;
use crate::model::ops::geometry::{Axis, Window};

/// The rows (or columns) of window `o` along axis `a`, clipped to the input: padding never wins.
fn window(a: &Axis, o: usize, size: usize) -> Range<usize> {
    let start = (o * a.stride).saturating_sub(a.before);
    let end = (o * a.stride + a.kernel).saturating_sub(a.before).min(size);
    start..end
}

/// Index in `plane` (row width `w`) and value of the window's maximum.
fn argmax(plane: &[f32], w: usize, rows: Range<usize>, cols: Range<usize>) -> (usize, f32) {
    let mut best = (usize::MAX, f32::NEG_INFINITY);
    for y in rows {
        for x in cols.clone() {
            let v = plane[y * w + x];
            if v > best.1 || v.is_nan() && !best.1.is_nan() || best.0 == usize::MAX {
                best = (y * w + x, v);
            }
        }
    }
    best
}

/// Max pooling of `x` (NCHW, f32, on the CPU) to an `(oh, ow)` output.
pub fn max_pool(x: &Tensor, g: &Window, (oh, ow): (usize, usize)) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    let mut out = vec![0f32; n * c * oh * ow];
    with_data(x, |input| {
        out.par_chunks_mut(oh * ow)
            .zip(input.par_chunks(h * w))
            .for_each(|(dst, plane)| {
                for oy in 0..oh {
                    for ox in 0..ow {
                        let (_, v) = argmax(plane, w, window(&g.h, oy, h), window(&g.w, ox, w));
                        dst[oy * ow + ox] = v;
                    }
                }
            });
        Ok(())
    })?;
    Tensor::from_vec(out, (n, c, oh, ow), x.device())
}

/// Gradient of max pooling w.r.t. its input `x`, given the output gradient `grad`.
pub fn max_pool_backward(x: &Tensor, grad: &Tensor, g: &Window) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    let (_, _, oh, ow) = grad.dims4()?;
    let mut dx = vec![0f32; n * c * h * w];
    with_data(x, |input| {
        with_data(grad, |grad| {
            dx.par_chunks_mut(h * w)
                .zip(input.par_chunks(h * w))
                .zip(grad.par_chunks(oh * ow))
                .for_each(|((dst, plane), gp)| {
                    for oy in 0..oh {
                        for ox in 0..ow {
                            let (i, _) = argmax(plane, w, window(&g.h, oy, h), window(&g.w, ox, w));
                            if i != usize::MAX {
                                dst[i] += gp[oy * ow + ox];
                            }
                        }
                    }
                });
            Ok(())
        })
    })?;
    Tensor::from_vec(dx, (n, c, h, w), x.device())
}
