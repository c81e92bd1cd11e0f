//! Per-plane maps and reductions on the CPU (a plane is one channel of one image, `H * W`
//! values), each one parallel, vectorised pass: eval-mode batch norm and layer scale
//! (`x * scale + shift` per channel), the squeeze-and-excitation gate (a factor per plane),
//! global average pooling (a mean per plane) and their reverse passes. candle's broadcast ops
//! take single-threaded passes with a buffer each.

use candle_core::{bail, Result, Tensor};
use pulp::{Simd, WithSimd};
use rayon::prelude::*;

use super::{vectorized, with_data};

/// `x * scale + shift` per plane of `x` (NCHW), where `scale` and `shift` hold one value per
/// channel (`C` values, repeated for every image) or per plane (`N * C`).
pub fn affine(x: &Tensor, scale: &Tensor, shift: Option<&Tensor>) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    let scale = scale.flatten_all()?.to_vec1::<f32>()?;
    let shift = match shift {
        Some(s) => s.flatten_all()?.to_vec1::<f32>()?,
        None => vec![0.0; scale.len()],
    };
    if !(scale.len() == c || scale.len() == n * c) || shift.len() != scale.len() {
        bail!(
            "{} factors for an input of {n} images of {c} channels",
            scale.len()
        );
    }
    let plane = h * w;
    let mut out = vec![0f32; x.elem_count()];
    with_data(x, |v| {
        out.par_chunks_mut(plane)
            .zip(v.par_chunks(plane))
            .with_min_len(min_planes(plane))
            .enumerate()
            .for_each(|(i, (out, x))| {
                let k = i % scale.len();
                vectorized(Affine {
                    out,
                    x,
                    scale: scale[k],
                    shift: shift[k],
                })
            });
        Ok(())
    })?;
    Tensor::from_vec(out, x.dims(), x.device())
}

/// The mean of every plane of `x`, as `(N, C, 1, 1)`.
pub fn means(x: &Tensor) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    let scale = 1.0 / (h * w) as f32;
    let sums = with_data(x, |v| {
        Ok(v.par_chunks(h * w)
            .with_min_len(min_planes(h * w))
            .map(|x| vectorized(Dot { a: x, b: None }) * scale)
            .collect::<Vec<f32>>())
    })?;
    Tensor::from_vec(sums, (n, c, 1, 1), x.device())
}

/// `sum(a * b)` over every plane of `a` and `b` (one shape), as `(N, C, 1, 1)`.
pub fn dots(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let (n, c, h, w) = a.dims4()?;
    if a.dims() != b.dims() {
        bail!("shapes {:?} and {:?} differ", a.dims(), b.dims());
    }
    let sums = with_data(a, |av| {
        with_data(b, |bv| {
            Ok(av
                .par_chunks(h * w)
                .zip(bv.par_chunks(h * w))
                .with_min_len(min_planes(h * w))
                .map(|(a, b)| vectorized(Dot { a, b: Some(b) }))
                .collect::<Vec<f32>>())
        })
    })?;
    Tensor::from_vec(sums, (n, c, 1, 1), a.device())
}

/// Every value of `v` (`(N, C, 1, 1)`) times `factor`, spread over an `h x w` plane.
pub fn spread(v: &Tensor, (h, w): (usize, usize), factor: f32) -> Result<Tensor> {
    let (n, c, _, _) = v.dims4()?;
    let values = v.flatten_all()?.to_vec1::<f32>()?;
    let mut out = vec![0f32; n * c * h * w];
    out.par_chunks_mut(h * w)
        .zip(values.par_iter())
        .with_min_len(min_planes(h * w))
        .for_each(|(plane, &value)| plane.fill(value * factor));
    Tensor::from_vec(out, (n, c, h, w), v.device())
}

/// Planes one task takes at least (see [`super::MIN_TASK_VALUES`]).
fn min_planes(plane: usize) -> usize {
    super::MIN_TASK_VALUES.div_ceil(plane.max(1))
}

/// One plane of [`affine`].
struct Affine<'a> {
    out: &'a mut [f32],
    x: &'a [f32],
    scale: f32,
    shift: f32,
}

impl WithSimd for Affine<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, _: S) {
        for (o, &v) in self.out.iter_mut().zip(self.x) {
            *o = v * self.scale + self.shift;
        }
    }
}

/// Lanes summed side by side, so that the sum is vectorised (a single running sum must keep
/// its order and is not).
const LANES: usize = 16;

/// `sum(a * b)`, or `sum(a)` without `b`.
struct Dot<'a> {
    a: &'a [f32],
    b: Option<&'a [f32]>,
}

impl WithSimd for Dot<'_> {
    type Output = f32;

    #[inline(always)]
    fn with_simd<S: Simd>(self, _: S) -> f32 {
        let mut acc = [0f32; LANES];
        let a = self.a.chunks_exact(LANES);
        let tail: f32 = match self.b {
            Some(b) => {
                let b = b.chunks_exact(LANES);
                let tail = a.remainder().iter().zip(b.remainder()).map(|(x, y)| x * y);
                for (a, b) in a.zip(b) {
                    for i in 0..LANES {
                        acc[i] += a[i] * b[i];
                    }
                }
                tail.sum()
            }
            None => {
                let tail = a.remainder().iter().sum();
                for a in a {
                    for i in 0..LANES {
                        acc[i] += a[i];
                    }
                }
                tail
            }
        };
        acc.iter().sum::<f32>() + tail
    }
}
