//! Layer normalisation over the channels at every pixel on the CPU (ConvNeXt's), forward and
//! reverse, in one parallel, vectorised pass over blocks of pixels: in NCHW a pixel's channels
//! are a whole plane apart, so each block runs over the channels with its pixels side by side.

use candle_core::{bail, Result, Tensor};
use pulp::{Simd, WithSimd};
use rayon::prelude::*;

use super::{vectorized, with_data, SharedOut};

/// `(x - mean) / sqrt(var + eps) * weight + bias` over the channels of every pixel of `x`
/// (NCHW), with `C` weights and biases.
pub fn forward(x: &Tensor, weight: &[f32], bias: &[f32], eps: f32) -> Result<Tensor> {
    if bias.len() != weight.len() {
        bail!(
            "layer norm with {} weights and {} biases",
            weight.len(),
            bias.len()
        );
    }
    run(x, None, weight, bias, eps)
}

/// The input gradient: `(g' - mean(g') - x̂ mean(g' x̂)) / sqrt(var + eps)` with
/// `g' = grad * weight` and means over channels.
pub fn backward(x: &Tensor, grad: &Tensor, weight: &[f32], eps: f32) -> Result<Tensor> {
    run(x, Some(grad), weight, &[], eps)
}

/// The forward pass, or with `grad` the reverse pass, over every block of pixels.
fn run(
    x: &Tensor,
    grad: Option<&Tensor>,
    weight: &[f32],
    bias: &[f32],
    eps: f32,
) -> Result<Tensor> {
    let dims = x.dims4()?;
    if weight.len() != dims.1 || grad.is_some_and(|g| g.dims() != x.dims()) {
        bail!(
            "layer norm of {} channels applied to {:?}",
            weight.len(),
            x.dims()
        );
    }
    let mut out = vec![0f32; x.elem_count()];
    let shared = SharedOut::new(&mut out);
    let blocks = |x: &[f32], grad: Option<&[f32]>| {
        for_blocks(dims, |start, len| {
            vectorized(Normalise {
                x,
                grad,
                out: shared,
                weight,
                bias,
                eps,
                plane: dims.2 * dims.3,
                start,
                len,
            })
        })
    };
    with_data(x, |x| match grad {
        Some(g) => with_data(g, |g| {
            blocks(x, Some(g));
            Ok(())
        }),
        None => {
            blocks(x, None);
            Ok(())
        }
    })?;
    Tensor::from_vec(out, x.dims(), x.device())
}

/// Calls `f(start, len)` in parallel for blocks of pixels covering every image: `start` is the
/// offset of the block's first pixel in channel 0 of its image.
fn for_blocks((n, c, h, w): (usize, usize, usize, usize), f: impl Fn(usize, usize) + Sync) {
    let plane = h * w;
    let threads = rayon::current_num_threads();
    // At least two blocks per thread in all; long enough to vectorise; short enough that a
    // block's running sums stay in registers and cache.
    let len = plane
        .div_ceil((2 * threads).div_ceil(n))
        .clamp(16, 256)
        .min(plane);
    let per_image = plane.div_ceil(len);
    (0..n * per_image).into_par_iter().for_each(|b| {
        let (image, block) = (b / per_image, b % per_image);
        let first = block * len;
        f(image * c * plane + first, len.min(plane - first));
    });
}

/// One block of pixels: the forward pass, or with `grad` the reverse pass.
struct Normalise<'a> {
    x: &'a [f32],
    grad: Option<&'a [f32]>,
    out: SharedOut,
    weight: &'a [f32],
    bias: &'a [f32],
    eps: f32,
    plane: usize,
    start: usize,
    len: usize,
}

impl<'a> WithSimd for Normalise<'a> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, _: S) {
        let (c, len) = (self.weight.len(), self.len);
        let (start, plane, x) = (self.start, self.plane, self.x);
        let row = |data: &'a [f32], ch: usize| &data[start + ch * plane..][..len];
        let scale = 1.0 / c as f32;
        let mut mean = vec![0f32; len];
        for ch in 0..c {
            for (m, v) in mean.iter_mut().zip(row(x, ch)) {
                *m += v;
            }
        }
        mean.iter_mut().for_each(|m| *m *= scale);
        let mut inv = vec![0f32; len];
        for ch in 0..c {
            for ((s, v), m) in inv.iter_mut().zip(row(x, ch)).zip(&mean) {
                *s += (v - m) * (v - m);
            }
        }
        inv.iter_mut()
            .for_each(|s| *s = 1.0 / (*s * scale + self.eps).sqrt());
        let out = self.out;
        let write = |ch: usize| {
            // SAFETY: blocks cover disjoint pixels, so no other task writes this run.
            unsafe { std::slice::from_raw_parts_mut(out.at(start + ch * plane), len) }
        };
        let Some(grad) = self.grad else {
            for ch in 0..c {
                let (wt, b) = (self.weight[ch], self.bias[ch]);
                for (((o, v), m), s) in write(ch).iter_mut().zip(row(x, ch)).zip(&mean).zip(&inv) {
                    *o = (v - m) * s * wt + b;
                }
            }
            return;
        };
        // Means over channels of g' and of g' x̂.
        let (mut mg, mut mgx) = (vec![0f32; len], vec![0f32; len]);
        for ch in 0..c {
            let wt = self.weight[ch];
            for ((((a, b), v), g), (m, s)) in mg
                .iter_mut()
                .zip(mgx.iter_mut())
                .zip(row(x, ch))
                .zip(row(grad, ch))
                .zip(mean.iter().zip(&inv))
            {
                let gw = g * wt;
                *a += gw;
                *b += gw * (v - m) * s;
            }
        }
        for ch in 0..c {
            let wt = self.weight[ch];
            for ((((o, v), g), (m, s)), (a, b)) in write(ch)
                .iter_mut()
                .zip(row(x, ch))
                .zip(row(grad, ch))
                .zip(mean.iter().zip(&inv))
                .zip(mg.iter().zip(&mgx))
            {
                *o = (g * wt - a * scale - (v - m) * s * b * scale) * s;
            }
        }
    }
}
