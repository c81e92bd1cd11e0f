//! The input gradient of a convolution that reads few channels (an image stem's 3): the columns
//! `W^T g` in one matrix multiply per image, `(C_in kh kw) x C_out` by `C_out x pixels`, then
//! each row of columns added back at its tap's input positions (col2im), channels in parallel.
//! The transposed convolution (see [`crate::model::ops::conv2d_gradient`]) would multiply with
//! only `C_in` rows, the shape where `gemm` is slowest (ResNet50's stem: 4.9 ms this way against
//! its forward's 0.8 ms).

use candle_core::{Result, Tensor};
use gemm::Parallelism;
use rayon::prelude::*;

use super::with_data;
use crate::model::ops::geometry::{Axis, Window};

/// Most input channels this path takes: an image's, with room for a few more.
const MAX_CHANNELS: usize = 8;

/// Whether the input gradient of a convolution with this weight and groups is computed here.
pub fn applies(weight: &Tensor, groups: usize) -> bool {
    groups == 1 && weight.dims().len() == 4 && weight.dims()[1] <= MAX_CHANNELS
}

/// Gradient w.r.t. the `(h, w)` input of the convolution by `weight` over `window`, from the
/// output gradient `g` (NCHW, f32, on the CPU).
pub fn input_gradient(
    g: &Tensor,
    weight: &Tensor,
    window: &Window,
    (h, w): (usize, usize),
) -> Result<Tensor> {
    let (n, co, oh, ow) = g.dims4()?;
    let (_, ci, kh, kw) = weight.dims4()?;
    let (taps, pixels) = (ci * kh * kw, oh * ow);
    let mut out = vec![0f32; n * ci * h * w];
    let mut cols = vec![0f32; taps * pixels];
    with_data(g, |grad| {
        with_data(weight, |wt| {
            for (image, out) in out.chunks_exact_mut(ci * h * w).enumerate() {
                // SAFETY: the pointers and strides describe `cols` (taps x pixels), the weight
                // read as its transpose (taps x co) and this image's gradient (co x pixels).
                unsafe {
                    gemm::gemm(
                        taps,
                        pixels,
                        co,
                        cols.as_mut_ptr(),
                        1,
                        pixels as isize,
                        false,
                        wt.as_ptr(),
                        taps as isize,
                        1,
                        grad[image * co * pixels..].as_ptr(),
                        1,
                        pixels as isize,
                        0.0,
                        1.0,
                        false,
                        false,
                        false,
                        Parallelism::Rayon(rayon::current_num_threads()),
                    );
                }
                out.par_chunks_exact_mut(h * w)
                    .zip(cols.par_chunks_exact(kh * kw * pixels))
                    .for_each(|(plane, rows)| {
                        for (tap, row) in rows.chunks_exact(pixels).enumerate() {
                            add_tap(plane, row, window, (tap / kw, tap % kw), (h, w), ow);
                        }
                    });
            }
            Ok(())
        })
    })?;
    Tensor::from_vec(out, (n, ci, h, w), g.device())
}

/// Adds the columns of tap `(i, j)` (one value per output pixel, rows of `ow`) to the input
/// positions the tap read them from.
fn add_tap(
    plane: &mut [f32],
    row: &[f32],
    window: &Window,
    (i, j): (usize, usize),
    (h, w): (usize, usize),
    ow: usize,
) {
    let (ah, aw) = (window.h, window.w);
    let columns = reached(&aw, j, w, ow);
    for (oy, src) in row.chunks_exact(ow).enumerate() {
        let Some(iy) = (oy * ah.stride + i * ah.dilation).checked_sub(ah.before) else {
            continue;
        };
        if iy >= h || columns.is_empty() {
            continue;
        }
        let line = &mut plane[iy * w..][..w];
        let first = columns.start * aw.stride + j * aw.dilation - aw.before;
        let src = &src[columns.clone()];
        if aw.stride == 1 {
            for (d, s) in line[first..first + src.len()].iter_mut().zip(src) {
                *d += s;
            }
        } else {
            for (d, s) in line[first..].iter_mut().step_by(aw.stride).zip(src) {
                *d += s;
            }
        }
    }
}

/// The outputs along axis `a` whose tap `t` falls inside the `size` inputs.
fn reached(a: &Axis, t: usize, size: usize, out: usize) -> std::ops::Range<usize> {
    let offset = t * a.dilation;
    // Output `o` reads input `o * stride + offset - before`.
    let lo = a.before.saturating_sub(offset).div_ceil(a.stride);
    let hi = (size + a.before)
        .saturating_sub(offset)
        .div_ceil(a.stride)
        .min(out);
    lo.min(hi)..hi
}
