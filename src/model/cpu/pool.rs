//! Pooling on the CPU, planes in parallel. The forward pass of max and average pooling reads
//! phase planes (see [`Phases`]): one vectorised pass per window tap over all of a plane's
//! outputs. The maximum's reverse pass finds each window's first largest value in row-major
//! order, NaN winning, as in PyTorch, and sends the window's gradient there (2x2 windows of
//! stride 2, which never overlap, a row of windows at a time in one branch-free loop).

use std::ops::Range;

use candle_core::{Result, Tensor};
use pulp::{Simd, WithSimd};
use rayon::prelude::*;

use super::phases::Phases;
use super::{vectorized, with_data};
use crate::model::ops::geometry::{Axis, Window};

/// What a window's values become.
pub enum Reduce {
    /// Their maximum, NaN winning; padding never wins.
    Max,
    /// Their sum divided by each output's divisor (row-major, one per output).
    Mean(Vec<f32>),
}

/// Pooling of `x` (NCHW, f32, on the CPU) over `window` to an `(oh, ow)` output.
pub fn pool(
    x: &Tensor,
    window: &Window,
    (oh, ow): (usize, usize),
    reduce: &Reduce,
) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    let layout = Phases::new((h, w), window, (oh, ow));
    // Each output's factor, in the layout's order of outputs.
    let factors = match reduce {
        Reduce::Max => None,
        Reduce::Mean(divisors) => {
            let mut f = vec![0f32; layout.count()];
            for oy in 0..oh {
                for ox in 0..ow {
                    f[layout.position(oy, ox)] = 1.0 / divisors[oy * ow + ox];
                }
            }
            Some(f)
        }
    };
    let mut out = vec![0f32; n * c * oh * ow];
    with_data(x, |input| {
        out.par_chunks_mut(oh * ow)
            .zip(input.par_chunks(h * w))
            .for_each_init(
                || (Vec::new(), Vec::new()),
                |(phases, flat), (out, src)| {
                    vectorized(Plane {
                        layout: &layout,
                        factors: factors.as_deref(),
                        out,
                        src,
                        phases,
                        flat,
                    })
                },
            );
        Ok(())
    })?;
    Tensor::from_vec(out, (n, c, oh, ow), x.device())
}

/// One output plane from one input plane.
struct Plane<'a> {
    layout: &'a Phases,
    /// The mean's factors; the maximum without.
    factors: Option<&'a [f32]>,
    out: &'a mut [f32],
    src: &'a [f32],
    phases: &'a mut Vec<f32>,
    flat: &'a mut Vec<f32>,
}

impl WithSimd for Plane<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, _: S) {
        let l = self.layout;
        let start = if self.factors.is_some() {
            0.0
        } else {
            f32::NEG_INFINITY
        };
        l.split(self.src, self.phases, start);
        let count = l.count();
        self.flat.clear();
        self.flat.resize(count, start);
        for &read in l.reads() {
            let src = &self.phases[read..][..count];
            if self.factors.is_some() {
                for (a, &v) in self.flat.iter_mut().zip(src) {
                    *a += v;
                }
            } else {
                for (a, &v) in self.flat.iter_mut().zip(src) {
                    *a = if v > *a || v.is_nan() { v } else { *a };
                }
            }
        }
        if let Some(factors) = self.factors {
            for (a, f) in self.flat.iter_mut().zip(factors) {
                *a *= f;
            }
        }
        l.gather(self.flat, self.out);
    }
}

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

/// Gradient of max pooling w.r.t. its input `x`, given the output gradient `grad`.
pub fn max_pool_backward(x: &Tensor, grad: &Tensor, g: &Window) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    let (_, _, oh, ow) = grad.dims4()?;
    let pairs = is_pairs(g) && 2 * oh <= h && 2 * ow <= w;
    let mut dx = vec![0f32; n * c * h * w];
    with_data(x, |input| {
        with_data(grad, |grad| {
            dx.par_chunks_mut(h * w)
                .zip(input.par_chunks(h * w))
                .zip(grad.par_chunks(oh * ow))
                .for_each(|((dst, plane), gp)| {
                    if pairs {
                        for (oy, g) in gp.chunks_exact(ow).enumerate() {
                            let (top, bottom) = dst[2 * oy * w..][..2 * w].split_at_mut(w);
                            vectorized(PairRows {
                                x: (&plane[2 * oy * w..][..w], &plane[(2 * oy + 1) * w..][..w]),
                                dst: (top, bottom),
                                grad: g,
                            });
                        }
                        return;
                    }
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

/// Whether the window is 2x2 with stride 2 and no padding or dilation (VGG's pools, and most
/// networks' between stages): every input is in at most one window.
fn is_pairs(g: &Window) -> bool {
    let pair = |a: &Axis| a.kernel == 2 && a.stride == 2 && a.dilation == 1 && a.before == 0;
    pair(&g.h) && pair(&g.w)
}

/// One output row of 2x2, stride-2 max pooling's reverse pass: each window's gradient goes to
/// its first largest value in row-major order, NaN winning (as [`argmax`] picks it); the other
/// three get zero. Branch-free, so that the compiler vectorises it.
struct PairRows<'a> {
    x: (&'a [f32], &'a [f32]),
    dst: (&'a mut [f32], &'a mut [f32]),
    grad: &'a [f32],
}

impl WithSimd for PairRows<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, _: S) {
        let (top, bottom) = self.x;
        let (dtop, dbottom) = self.dst;
        let rows = top.chunks_exact(2).zip(bottom.chunks_exact(2));
        let dst = dtop.chunks_exact_mut(2).zip(dbottom.chunks_exact_mut(2));
        for (((t, b), (dt, db)), &g) in rows.zip(dst).zip(self.grad) {
            // Does each value beat the best before it (larger, or the first NaN)?
            let beats = |x: f32, best: f32| x > best || x.is_nan() && !best.is_nan();
            let w1 = beats(t[1], t[0]);
            let m1 = if w1 { t[1] } else { t[0] };
            let w2 = beats(b[0], m1);
            let m2 = if w2 { b[0] } else { m1 };
            let w3 = beats(b[1], m2);
            dt[0] = if w1 || w2 || w3 { 0.0 } else { g };
            dt[1] = if w1 && !w2 && !w3 { g } else { 0.0 };
            db[0] = if w2 && !w3 { g } else { 0.0 };
            db[1] = if w3 { g } else { 0.0 };
        }
    }
}
